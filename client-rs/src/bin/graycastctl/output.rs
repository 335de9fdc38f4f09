//! What the CLI prints: entries, history, changes and releases for people, and JSON.

use graycast_client::{ChangeEvent, ChangeItem, Entry, Gray, GrayStatus, HistoryItem, Op, RuleOp};
use serde_json::Value;

/// Prints a line to stdout; once stdout is closed (`graycastctl watch | head`), the
/// program ends quietly instead of panicking.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if writeln!(std::io::stdout().lock(), $($arg)*).is_err() {
            std::process::exit(0);
        }
    }};
}
pub(crate) use out;

/// One JSON document on a line.
pub fn print_json<T: serde::Serialize>(value: &T) {
    out!("{}", serde_json::to_string(value).unwrap_or_default());
}

/// `1 key`, `2 keys`.
pub fn plural(count: u64, noun: &str) -> String {
    match (count, noun.strip_suffix('y')) {
        (1, _) => format!("1 {noun}"),
        // entry → entries, key → keys.
        (_, Some(stem)) if !stem.ends_with(['a', 'e', 'i', 'o', 'u']) => {
            format!("{count} {stem}ies")
        }
        _ => format!("{count} {noun}s"),
    }
}

/// One entry of the state a watch starts from: JSON `{"type": "state", "entry"}`, or a
/// line marked `state` for people (not a change: its last change may have been anything).
pub fn print_state(change: &ChangeEvent, json: bool) {
    let Some(entry) = &change.entry else { return };
    if json {
        print_json(&serde_json::json!({ "type": "state", "entry": entry.as_ref() }));
        return;
    }
    let gray =
        entry.gray.as_ref().map(|g| format!(" (gray {})", gray_summary(g))).unwrap_or_default();
    out!(
        "{} state {}/{} = {}{gray}",
        entry.revision,
        entry.namespace,
        entry.key,
        compact(&entry.value)
    );
}

/// A value on one line, cut at 120 characters.
pub fn compact(value: &Value) -> String {
    const LIMIT: usize = 120;
    let text = value.to_string();
    if text.chars().count() > LIMIT {
        format!("{}…", text.chars().take(LIMIT).collect::<String>())
    } else {
        text
    }
}

/// A rule's operator as the API spells it (`in`, `semver_gte`).
pub fn op_name(op: RuleOp) -> String {
    match serde_json::to_value(op) {
        Ok(Value::String(name)) => name,
        _ => format!("{op:?}"),
    }
}

/// `300 to 5% (paused)`: a release in a few words.
pub fn gray_summary(gray: &Gray) -> String {
    let paused = if gray.paused { ", paused" } else { "" };
    format!("{} to {}%{paused}", compact(&gray.value), gray.percent)
}

pub fn print_entry(entry: &Entry) {
    out!("{}/{}", entry.namespace, entry.key);
    out!(
        "  value:    {}",
        serde_json::to_string_pretty(&entry.value)
            .unwrap_or_default()
            .replace('\n', "\n            ")
    );
    out!(
        "  revision: {} (version {}, created at revision {})",
        entry.revision,
        entry.version,
        entry.created_revision
    );
    out!("  updated:  {} by {}", entry.updated_at.to_rfc3339(), entry.updated_by);
    if let Some(gray) = &entry.gray {
        out!("  gray:     {}", gray_summary(gray));
    }
}

pub fn print_history(item: &HistoryItem) {
    let what = match (item.op, &item.gray) {
        (Op::Delete, _) => String::new(),
        (Op::Gray, Some(gray)) => {
            format!("gray {} (stable {})", gray_summary(gray), compact(&item.value))
        }
        (Op::Promote, _) => format!("{} (the gray value, promoted)", compact(&item.value)),
        (Op::Abort, _) => format!("{} (gray release aborted)", compact(&item.value)),
        _ => compact(&item.value),
    };
    let why = [item.comment.as_deref(), item.note.as_deref()]
        .into_iter()
        .flatten()
        .map(|text| format!("\t# {text}"))
        .collect::<String>();
    out!(
        "{}\t{}\t{}\t{}\t{what}{why}",
        item.revision,
        item.op.as_str(),
        item.updated_at.to_rfc3339(),
        item.updated_by,
    );
}

pub fn print_change(change: &ChangeEvent, json: bool) {
    if json {
        print_json(&change.to_message());
        return;
    }
    let head =
        format!("{} {} {}/{}", change.revision, change.op.as_str(), change.namespace, change.key);
    let why = [change.comment.as_deref(), change.note.as_deref()]
        .into_iter()
        .flatten()
        .map(|text| format!("  # {text}"))
        .collect::<String>();
    match &change.entry {
        None => out!("{head}{why}"),
        Some(entry) => match (&entry.gray, change.op) {
            (Some(gray), _) => {
                out!("{head} = {} (gray {}){why}", compact(&entry.value), gray_summary(gray))
            }
            (None, Op::Abort) => {
                out!("{head} = {} (gray release aborted){why}", compact(&entry.value))
            }
            (None, Op::Promote) => {
                out!("{head} = {} (the gray value, promoted){why}", compact(&entry.value))
            }
            (None, _) => out!("{head} = {}{why}", compact(&entry.value)),
        },
    }
}

pub fn print_change_item(item: &ChangeItem) {
    let remote = item.remote.as_deref().map(|r| format!(" from {r}")).unwrap_or_default();
    let why = [item.comment.as_deref(), item.note.as_deref()]
        .into_iter()
        .flatten()
        .map(|text| format!("  # {text}"))
        .collect::<String>();
    out!(
        "{}\t{}\t{} {}/{}\tby {}{remote}{why}",
        item.revision,
        item.updated_at.to_rfc3339(),
        item.op.as_str(),
        item.namespace,
        item.key,
        item.updated_by
    );
}

pub fn print_gray_status(status: &GrayStatus) {
    let gray = &status.gray;
    out!("{}/{} gray release (revision {})", status.namespace, status.key, status.revision);
    out!("  value:     {}", compact(&gray.value));
    out!("  percent:   {}%{}", gray.percent, if gray.paused { " (paused)" } else { "" });
    if !gray.steps.is_empty() {
        let steps: Vec<String> = gray.steps.iter().map(|s| format!("{}%", s.percent)).collect();
        out!("  step:      {} of {} [{}]", gray.step + 1, gray.steps.len(), steps.join(" → "));
        match gray.next_step_at {
            Some(at) => out!("  next step: {}", at.to_rfc3339()),
            None if gray.paused => out!("  next step: none while paused"),
            None => out!(
                "  next step: none{}",
                if gray.auto_promote { "" } else { " (promote by hand)" }
            ),
        }
    }
    if !gray.allow.is_empty() || !gray.deny.is_empty() {
        out!(
            "  allow:     {}; deny: {}",
            plural(gray.allow.len() as u64, "subject"),
            plural(gray.deny.len() as u64, "subject")
        );
    }
    for rule in &gray.rules {
        out!("  rule:      {} {} {}", rule.attribute, op_name(rule.op), rule.values.join(","));
    }
    let counts = &status.counts;
    match &gray.guard {
        Some(guard) => out!(
            "  guard:     abort above {} errors over at least {} gray outcomes",
            guard.max_error_rate,
            guard.min_samples
        ),
        None => out!("  guard:     none"),
    }
    out!(
        "  outcomes:  gray {} ok / {} errors ({:.2}%), stable {} ok / {} errors ({:.2}%)",
        counts.gray.ok,
        counts.gray.errors,
        counts.gray.error_rate() * 100.0,
        counts.stable.ok,
        counts.stable.errors,
        counts.stable.error_rate() * 100.0
    );
    out!("  started:   {}", gray.started_at.to_rfc3339());
}
