//! `graycastctl`: the graycast command line, built on the SDK.

use std::io::Read as _;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use futures_util::StreamExt;
use graycast_client::{
    ChangeEvent, Client, Context, Entry, Error, Expect, Filter, GrayPatch, GrayRequest, GrayStatus,
    Guard, HistoryItem, Op, Rule, RuleOp, Step,
};
use graycast_protocol::gray::check_percent;
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

/// Command line for graycast, the real-time configuration center.
///
/// Output is for people by default and JSON with --json. The exit status is 0 on
/// success, 1 when the server refuses or cannot be reached, 2 on a usage error.
#[derive(Parser)]
#[command(name = "graycastctl", version, about, long_about = None)]
struct Cli {
    /// Server base URL.
    #[arg(long, env = "GRAYCAST_SERVER", default_value = "http://127.0.0.1:8080", global = true)]
    server: String,
    /// Access token.
    #[arg(long, env = "GRAYCAST_TOKEN", global = true, hide_env_values = true)]
    token: Option<String>,
    /// PEM certificates to trust for an https:// server, besides the system's roots.
    #[arg(long, env = "GRAYCAST_CA_FILE", global = true)]
    ca_file: Option<std::path::PathBuf>,
    /// Print JSON instead of text (for `watch`: one change message per line).
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    verb: Verb,
}

#[derive(Subcommand)]
enum Verb {
    /// List the namespaces, or the entries of one namespace.
    ///
    /// Example: graycastctl list payments
    List { namespace: Option<String> },
    /// Show one entry.
    ///
    /// Example: graycastctl get payments timeout_ms
    Get { namespace: String, key: String },
    /// Set a value: JSON text, or @FILE to read it from a file (@- for stdin).
    ///
    /// Examples: graycastctl put payments timeout_ms 250;
    /// graycastctl put payments banner '"hello"'; graycastctl put payments rules @rules.json
    Put {
        namespace: String,
        key: String,
        value: String,
        /// Write only if the entry is at this revision.
        #[arg(long, conflicts_with = "create")]
        if_revision: Option<u64>,
        /// Create only: fail if the key exists.
        #[arg(long)]
        create: bool,
    },
    /// Delete a key.
    ///
    /// Example: graycastctl delete payments timeout_ms --if-revision 42
    Delete {
        namespace: String,
        key: String,
        /// Delete only if the entry is at this revision.
        #[arg(long)]
        if_revision: Option<u64>,
    },
    /// Show the revisions of a key, newest first.
    ///
    /// Example: graycastctl history payments timeout_ms --limit 5
    History {
        namespace: String,
        key: String,
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// Make the value of an earlier revision current again (as a new revision).
    ///
    /// Example: graycastctl rollback payments timeout_ms 41
    Rollback { namespace: String, key: String, revision: u64 },
    /// Print every change of some namespaces as it arrives, until interrupted.
    /// Keeps going across server restarts, resuming where it left off.
    ///
    /// Example: graycastctl watch payments search --json
    Watch {
        #[arg(required = true)]
        namespaces: Vec<String>,
    },
    /// Ask the server which variant and value a subject gets.
    ///
    /// Example: graycastctl release payments timeout_ms user-42 --attr region=eu-west
    Release {
        namespace: String,
        key: String,
        subject: String,
        /// An attribute of the subject, NAME=VALUE (repeatable).
        #[arg(long = "attr", value_name = "NAME=VALUE")]
        attrs: Vec<String>,
    },
    /// Gray releases: start, set, promote, abort, status.
    #[command(subcommand)]
    Gray(GrayVerb),
}

#[derive(Subcommand)]
enum GrayVerb {
    /// Start (or replace) a gray release of an existing key.
    ///
    /// Example: graycastctl gray start payments timeout_ms --value 300 --step 5:300
    /// --step 25:600 --step 100 --auto-promote --guard 0.05:200 --rule region:in:eu-west,eu-north
    Start {
        namespace: String,
        key: String,
        /// The gray value: JSON, or @FILE.
        #[arg(long)]
        value: String,
        /// Initial percent (default: the first step's, else 0).
        #[arg(long)]
        percent: Option<f64>,
        /// Subjects always in gray, comma separated.
        #[arg(long, value_delimiter = ',')]
        allow: Vec<String>,
        /// Subjects never in gray, comma separated.
        #[arg(long, value_delimiter = ',')]
        deny: Vec<String>,
        /// An attribute rule ATTRIBUTE:OP:V1,V2 with OP one of in, not_in, eq, prefix,
        /// semver_gte, semver_lt (repeatable; all must match).
        #[arg(long = "rule", value_name = "ATTR:OP:VALUES")]
        rules: Vec<String>,
        /// A ramp step PERCENT[:HOLD_SECS] (repeatable, in order; only the last may omit the hold).
        #[arg(long = "step", value_name = "PERCENT[:HOLD]")]
        steps: Vec<String>,
        /// Promote when the ramp ends.
        #[arg(long)]
        auto_promote: bool,
        /// Abort automatically: MAX_ERROR_RATE:MIN_SAMPLES, such as 0.05:200.
        #[arg(long, value_name = "RATE:MIN")]
        guard: Option<String>,
        /// Salt of the bucket hash (default NS/KEY).
        #[arg(long)]
        salt: Option<String>,
        /// Start paused.
        #[arg(long)]
        paused: bool,
    },
    /// Change the running release: percent, lists, rules, pause or resume.
    ///
    /// Example: graycastctl gray set payments timeout_ms --percent 50
    Set {
        namespace: String,
        key: String,
        #[arg(long)]
        percent: Option<f64>,
        /// Replace the allow list (comma separated; "" empties it).
        #[arg(long)]
        allow: Option<String>,
        /// Replace the deny list (comma separated; "" empties it).
        #[arg(long)]
        deny: Option<String>,
        /// Replace the rules (repeatable, ATTR:OP:VALUES).
        #[arg(long = "rule", value_name = "ATTR:OP:VALUES")]
        rules: Vec<String>,
        /// Remove every rule.
        #[arg(long, conflicts_with = "rules")]
        clear_rules: bool,
        /// Pause the ramp.
        #[arg(long, conflicts_with = "resume")]
        pause: bool,
        /// Resume the ramp (the current step's hold starts again).
        #[arg(long)]
        resume: bool,
    },
    /// Make the gray value the stable value; the release ends.
    Promote { namespace: String, key: String },
    /// Abort the release; the stable value stays.
    Abort { namespace: String, key: String },
    /// Show the release: percent, step, next step time, guard counts.
    Status { namespace: String, key: String },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("graycastctl: cannot start: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Usage(message)) => {
            eprintln!("graycastctl: {message}");
            ExitCode::from(2)
        }
        Err(Failure::Api(err)) => {
            eprintln!("graycastctl: {err}");
            ExitCode::FAILURE
        }
    }
}

enum Failure {
    Usage(String),
    Api(Error),
}

impl From<Error> for Failure {
    fn from(err: Error) -> Self {
        match err {
            Error::InvalidName { .. } | Error::Config(_) => Failure::Usage(err.to_string()),
            other => Failure::Api(other),
        }
    }
}

async fn run(cli: Cli) -> Result<(), Failure> {
    let mut builder = Client::builder().endpoint(&cli.server);
    if let Some(token) = &cli.token {
        builder = builder.token(token);
    }
    if let Some(ca_file) = &cli.ca_file {
        builder = builder.ca_file(ca_file);
    }
    let json = cli.json;
    match cli.verb {
        Verb::List { namespace: None } => {
            let list = builder.build()?.fetch_namespaces().await?;
            if json {
                print_json(&list);
            } else {
                for ns in &list.namespaces {
                    out!("{}\t{} keys", ns.name, ns.keys);
                }
                eprintln!("revision {}", list.revision);
            }
        }
        Verb::List { namespace: Some(namespace) } => {
            let list = builder.build()?.fetch_namespace(&namespace).await?;
            if json {
                print_json(&list);
            } else {
                for entry in &list.entries {
                    out!("{}\t{}\t(revision {})", entry.key, compact(&entry.value), entry.revision);
                }
            }
        }
        Verb::Get { namespace, key } => {
            let client = builder.build()?;
            let entry = client.fetch(&namespace, &key).await?.ok_or_else(|| {
                Failure::Api(Error::Server {
                    status: 404,
                    code: "not_found".into(),
                    message: format!("key {namespace}/{key} not found"),
                })
            })?;
            if json {
                print_json(&entry);
            } else {
                print_entry(&entry);
            }
        }
        Verb::Put { namespace, key, value, if_revision, create } => {
            let value = read_value(&value)?;
            let expect = match (if_revision, create) {
                (Some(revision), _) => Expect::Revision(revision),
                (None, true) => Expect::Absent,
                (None, false) => Expect::Any,
            };
            let entry = builder.build()?.put(&namespace, &key, &value, expect).await?;
            if json {
                print_json(&entry);
            } else {
                out!(
                    "{}/{} = {} (revision {}, version {})",
                    namespace,
                    key,
                    compact(&entry.value),
                    entry.revision,
                    entry.version
                );
            }
        }
        Verb::Delete { namespace, key, if_revision } => {
            let expect = if_revision.map_or(Expect::Any, Expect::Revision);
            let revision = builder.build()?.delete(&namespace, &key, expect).await?;
            if json {
                print_json(&serde_json::json!({ "revision": revision }));
            } else {
                out!("deleted {namespace}/{key} (revision {revision})");
            }
        }
        Verb::History { namespace, key, limit } => {
            let items = builder.build()?.history(&namespace, &key, Some(limit), None).await?;
            if json {
                print_json(&serde_json::json!({ "items": items }));
            } else {
                for item in &items {
                    print_history(item);
                }
            }
        }
        Verb::Rollback { namespace, key, revision } => {
            let entry = builder.build()?.rollback(&namespace, &key, revision).await?;
            if json {
                print_json(&entry);
            } else {
                out!(
                    "{}/{} = {} (revision {}, rolled back to {})",
                    namespace,
                    key,
                    compact(&entry.value),
                    entry.revision,
                    revision
                );
            }
        }
        Verb::Watch { namespaces } => watch(builder, namespaces, json).await?,
        Verb::Release { namespace, key, subject, attrs } => {
            let mut context = Context::subject(subject);
            for attr in &attrs {
                let (name, value) = attr
                    .split_once('=')
                    .ok_or_else(|| Failure::Usage(format!("--attr {attr:?} is not NAME=VALUE")))?;
                context = context.attr(name, value);
            }
            let decision = builder.build()?.release(&namespace, &key, &context).await?;
            if json {
                print_json(&decision);
            } else {
                let bucket = decision.bucket.map(|b| format!(", bucket {b}")).unwrap_or_default();
                out!(
                    "{} ({}{bucket}): {}",
                    decision.variant.as_str(),
                    decision.reason.as_str(),
                    compact(&decision.value)
                );
            }
        }
        Verb::Gray(verb) => gray(builder.build()?, verb, json).await?,
    }
    Ok(())
}

async fn gray(client: Client, verb: GrayVerb, json: bool) -> Result<(), Failure> {
    let entry = match verb {
        GrayVerb::Start {
            namespace,
            key,
            value,
            percent,
            allow,
            deny,
            rules,
            steps,
            auto_promote,
            guard,
            salt,
            paused,
        } => {
            if let Some(percent) = percent {
                check_percent("--percent", percent).map_err(|e| Failure::Usage(e.to_string()))?;
            }
            let request = GrayRequest {
                value: read_value(&value)?,
                percent,
                salt,
                allow,
                deny,
                rules: rules.iter().map(|r| parse_rule(r)).collect::<Result<_, _>>()?,
                steps: steps.iter().map(|s| parse_step(s)).collect::<Result<_, _>>()?,
                auto_promote,
                guard: guard.as_deref().map(parse_guard).transpose()?,
                paused,
                comment: None,
            };
            client.gray_start(&namespace, &key, &request).await?
        }
        GrayVerb::Set {
            namespace,
            key,
            percent,
            allow,
            deny,
            rules,
            clear_rules,
            pause,
            resume,
        } => {
            if let Some(percent) = percent {
                check_percent("--percent", percent).map_err(|e| Failure::Usage(e.to_string()))?;
            }
            let list = |text: String| -> Vec<String> {
                text.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect()
            };
            let rules = if clear_rules {
                Some(Vec::new())
            } else if rules.is_empty() {
                None
            } else {
                Some(rules.iter().map(|r| parse_rule(r)).collect::<Result<_, _>>()?)
            };
            let patch = GrayPatch {
                percent,
                allow: allow.map(list),
                deny: deny.map(list),
                rules,
                paused: if pause {
                    Some(true)
                } else if resume {
                    Some(false)
                } else {
                    None
                },
                comment: None,
            };
            client.gray_patch(&namespace, &key, &patch).await?
        }
        GrayVerb::Promote { namespace, key } => client.gray_promote(&namespace, &key).await?,
        GrayVerb::Abort { namespace, key } => client.gray_abort(&namespace, &key).await?,
        GrayVerb::Status { namespace, key } => {
            let status = client.gray_status(&namespace, &key).await?;
            if json {
                print_json(&status);
            } else {
                print_gray_status(&status);
            }
            return Ok(());
        }
    };
    if json {
        print_json(&entry);
    } else {
        print_entry(&entry);
    }
    Ok(())
}

fn parse_rule(text: &str) -> Result<Rule, Failure> {
    let usage = || Failure::Usage(format!("--rule {text:?} is not ATTRIBUTE:OP:V1,V2"));
    let (attribute, rest) = text.split_once(':').ok_or_else(usage)?;
    let (op, values) = rest.split_once(':').ok_or_else(usage)?;
    let op: RuleOp = serde_json::from_value(Value::String(op.to_owned())).map_err(|_| {
        Failure::Usage(format!(
            "rule op {op:?} is not one of in, not_in, eq, prefix, semver_gte, semver_lt"
        ))
    })?;
    Ok(Rule {
        attribute: attribute.to_owned(),
        op,
        values: values.split(',').map(str::to_owned).collect(),
    })
}

fn parse_step(text: &str) -> Result<Step, Failure> {
    let usage = || Failure::Usage(format!("--step {text:?} is not PERCENT[:HOLD_SECS]"));
    let (percent, hold) = match text.split_once(':') {
        Some((percent, hold)) => (percent, Some(hold.parse::<u64>().map_err(|_| usage())?)),
        None => (text, None),
    };
    let percent: f64 = percent.parse().map_err(|_| usage())?;
    check_percent("--step percent", percent).map_err(|e| Failure::Usage(e.to_string()))?;
    Ok(Step { percent, hold_secs: hold })
}

fn parse_guard(text: &str) -> Result<Guard, Failure> {
    let usage = || Failure::Usage(format!("--guard {text:?} is not MAX_ERROR_RATE:MIN_SAMPLES"));
    let (rate, min) = text.split_once(':').ok_or_else(usage)?;
    Ok(Guard {
        max_error_rate: rate.parse().map_err(|_| usage())?,
        min_samples: min.parse().map_err(|_| usage())?,
    })
}

fn print_gray_status(status: &GrayStatus) {
    let gray = &status.gray;
    out!("{}/{} gray release (revision {})", status.namespace, status.key, status.revision);
    out!("  value:     {}", compact(&gray.value));
    out!("  percent:   {}%{}", gray.percent, if gray.paused { " (paused)" } else { "" });
    if !gray.steps.is_empty() {
        let steps: Vec<String> = gray.steps.iter().map(|s| format!("{}%", s.percent)).collect();
        out!("  step:      {} of {} [{}]", gray.step + 1, gray.steps.len(), steps.join(" → "));
        match gray.next_step_at {
            Some(at) => out!("  next step: {}", at.to_rfc3339()),
            None => out!(
                "  next step: none{}",
                if gray.auto_promote { "" } else { " (promote by hand)" }
            ),
        }
    }
    if !gray.allow.is_empty() || !gray.deny.is_empty() {
        out!("  allow:     {} subjects; deny: {} subjects", gray.allow.len(), gray.deny.len());
    }
    for rule in &gray.rules {
        out!("  rule:      {} {:?} {}", rule.attribute, rule.op, rule.values.join(","));
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

async fn watch(
    builder: graycast_client::ClientBuilder,
    namespaces: Vec<String>,
    json: bool,
) -> Result<(), Failure> {
    let client = builder.namespaces(namespaces.iter().cloned()).build()?;
    let mut changes = std::pin::pin!(client.changes(Filter::all()));
    let mut status = tokio::time::interval(Duration::from_millis(500));
    let mut was_connected = None;
    // One future for the whole watch, so that a ctrl-c arriving mid-print is not lost.
    let mut interrupted = std::pin::pin!(tokio::signal::ctrl_c());
    loop {
        tokio::select! {
            change = changes.next() => match change {
                Some(change) => print_change(&change, json),
                None => return Ok(()),
            },
            _ = status.tick() => {
                // Connection changes go to stderr so that stdout stays the change stream.
                let now = client.status();
                if was_connected != Some(now.synced) {
                    if now.synced {
                        eprintln!("graycastctl: watching {} at revision {}", namespaces.join(", "), now.revision);
                    } else if was_connected.is_some() {
                        eprintln!("graycastctl: connection lost ({}); reconnecting", now.last_error.unwrap_or_default());
                    }
                    was_connected = Some(now.synced);
                }
            }
            _ = &mut interrupted => return Ok(()),
        }
    }
}

fn read_value(arg: &str) -> Result<Value, Failure> {
    let text = match arg.strip_prefix('@') {
        Some("-") => {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .map_err(|e| Failure::Usage(format!("cannot read the value from stdin: {e}")))?;
            text
        }
        Some(path) => std::fs::read_to_string(path)
            .map_err(|e| Failure::Usage(format!("cannot read the value from {path}: {e}")))?,
        None => arg.to_owned(),
    };
    serde_json::from_str(&text).map_err(|e| {
        Failure::Usage(format!(
            "the value is not JSON ({e}); quote text as JSON, for example '\"hello\"'"
        ))
    })
}

fn print_json<T: serde::Serialize>(value: &T) {
    out!("{}", serde_json::to_string(value).unwrap_or_default());
}

fn compact(value: &Value) -> String {
    const LIMIT: usize = 120;
    let text = value.to_string();
    if text.chars().count() > LIMIT {
        format!("{}…", text.chars().take(LIMIT).collect::<String>())
    } else {
        text
    }
}

fn print_entry(entry: &Entry) {
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
        let paused = if gray.paused { ", paused" } else { "" };
        out!("  gray:     {} at {}%{paused}", compact(&gray.value), gray.percent);
    }
}

fn print_history(item: &HistoryItem) {
    let value = if item.op == Op::Delete { String::new() } else { compact(&item.value) };
    out!(
        "{}\t{}\t{}\t{}\t{}",
        item.revision,
        item.op.as_str(),
        item.updated_at.to_rfc3339(),
        item.updated_by,
        value
    );
}

fn print_change(change: &ChangeEvent, json: bool) {
    if json {
        print_json(&change.to_message());
        return;
    }
    match &change.entry {
        Some(entry) => out!(
            "{} {} {}/{} = {}",
            change.revision,
            change.op.as_str(),
            change.namespace,
            change.key,
            compact(&entry.value)
        ),
        None => {
            out!("{} {} {}/{}", change.revision, change.op.as_str(), change.namespace, change.key)
        }
    }
}
