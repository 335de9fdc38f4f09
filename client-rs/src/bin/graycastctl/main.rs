//! `graycastctl`: the graycast command line, built on the SDK.
//!
//! `args` is the command line, `parse` reads what the user typed, `output` prints for
//! people and as JSON, `watch` follows changes; this file runs the verbs and turns every
//! failure into a message with a hint and an exit status.

mod args;
mod output;
mod parse;
mod request;
mod watch;

use std::process::ExitCode;

use clap::Parser;
use graycast_client::{Client, ClientBuilder, Context, Error, Expect, GrayPatch, GrayRequest};
use graycast_protocol::gray::check_percent;
use serde_json::json;

use args::{Cli, GrayVerb, Verb};
use output::{
    compact, gray_summary, out, plural, print_change_item, print_entry, print_gray_status,
    print_history, print_json,
};
use parse::{kind_of, list, parse_guard, parse_rule, parse_step, read_value, same_kind};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("graycastctl: cannot start: {err}");
            return ExitCode::FAILURE;
        }
    };
    let context =
        Reporting { json: cli.json, server: cli.server.clone(), token: cli.token.is_some() };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => context.report(&failure),
    }
}

/// Why a verb failed: the user's mistake (exit 2) or the server's refusal or absence (1).
pub enum Failure {
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

/// What error reports need to know of the command line.
struct Reporting {
    json: bool,
    server: String,
    token: bool,
}

impl Reporting {
    /// Prints a failure (JSON on stdout with `--json`, else a message and a hint on
    /// stderr) and gives the exit status.
    fn report(&self, failure: &Failure) -> ExitCode {
        let reclassified;
        let failure = match failure {
            Failure::Api(Error::Transport(text)) if plain_http_answer(text) => {
                reclassified = Failure::Api(Error::Tls(text.clone()));
                &reclassified
            }
            other => other,
        };
        let (status, code, message, exit) = match failure {
            Failure::Usage(message) => (None, "usage".to_owned(), message.clone(), 2),
            Failure::Api(err) => (
                err.status(),
                err.code().map_or_else(|| error_kind(err).to_owned(), str::to_owned),
                err.to_string(),
                1,
            ),
        };
        let hint = match failure {
            Failure::Usage(_) => None,
            Failure::Api(err) => self.hint(err),
        };
        if self.json {
            let mut error = json!({"code": code, "message": message});
            if let Some(status) = status {
                error["status"] = json!(status);
            }
            if let Some(hint) = &hint {
                error["hint"] = json!(hint);
            }
            print_json(&json!({ "error": error }));
        } else {
            eprintln!("graycastctl: {message}");
            if let Some(hint) = hint {
                eprintln!("hint: {hint}");
            }
        }
        ExitCode::from(exit)
    }

    /// What to do about an error, when there is something to say.
    fn hint(&self, err: &Error) -> Option<String> {
        // Hints name the first server; the others are tried the same way.
        let server = self.server.split(',').next().unwrap_or_default();
        match err {
            // A plain-HTTP server answering the TLS handshake.
            Error::Tls(text) if plain_http_answer(text) && server.starts_with("https://") => {
                Some(format!(
                    "the server speaks plain HTTP, not HTTPS: use --server {}",
                    server.replacen("https://", "http://", 1)
                ))
            }
            Error::Transport(text) if text.contains("invalid HTTP version") => Some(format!(
                "the server speaks HTTPS: use --server {}",
                server.replacen("http://", "https://", 1)
            )),
            Error::Transport(_) | Error::Timeout(_) => Some(format!(
                "is graycast running at {server}? Point --server (or GRAYCAST_SERVER) at it"
            )),
            Error::Tls(text) if text.contains("CaUsedAsEndEntity") => Some(
                "the server presents a CA certificate as its own (basicConstraints CA:TRUE, as \
                 `openssl req -x509` makes): give --tls-cert a leaf certificate signed by that CA \
                 (basicConstraints=CA:FALSE, the server's name in subjectAltName), and keep the \
                 CA for --ca-file"
                    .into(),
            ),
            Error::Tls(text) if text.contains("NotValidForName") || text.contains("not valid for name") => Some(format!(
                "the server's certificate is not for the host name in {server}: connect with a \
                 name or address its subjectAltName lists"
            )),
            Error::Tls(_) => Some(
                "trust the server's certificate authority with --ca-file (or GRAYCAST_CA_FILE)"
                    .into(),
            ),
            Error::Server { status: 401, .. } if !self.token => Some(
                "this server needs an access token: pass --token (or set GRAYCAST_TOKEN)".into(),
            ),
            Error::Server { status: 401, .. } => Some(
                "the server does not know this token: check --token (or GRAYCAST_TOKEN)".into(),
            ),
            Error::Server { code, .. } if code == "approval_required" => Some(
                "this namespace is under a policy: propose the change with `graycastctl request \
                 create put NAMESPACE KEY VALUE` (or `--ops @FILE`) and have someone else approve it"
                    .into(),
            ),
            Error::Server { status: 403, .. } => Some(
                "the token lacks the role or namespace for this; `graycastctl whoami` shows what it may do"
                    .into(),
            ),
            Error::Server { code, .. } if code == "revision_mismatch" => Some(
                "someone changed it meanwhile (or it exists already): read it again and retry".into(),
            ),
            _ => None,
        }
    }
}

/// Whether a connection failed because the server answered the TLS handshake with
/// something else, most likely plain HTTP: rustls reads the answer as a record of an
/// invalid content type ("received corrupt message of type InvalidContentType"), OpenSSL
/// as "wrong version number".
fn plain_http_answer(text: &str) -> bool {
    text.contains("InvalidContentType")
        || text.contains("corrupt message")
        || text.contains("wrong version number")
}

/// A code for errors that did not come from the server.
fn error_kind(err: &Error) -> &'static str {
    match err {
        Error::Transport(_) | Error::Timeout(_) => "unreachable",
        Error::Tls(_) => "tls",
        Error::Protocol(_) => "protocol",
        Error::Decode { .. } => "decode",
        _ => "error",
    }
}

async fn run(cli: Cli) -> Result<(), Failure> {
    if cli.comment.is_some() && !cli.verb.changes() {
        return Err(Failure::Usage(
            "--comment goes with a change (put, delete, rollback, describe, gray …)".into(),
        ));
    }
    let timeout = std::time::Duration::from_secs(cli.timeout);
    let mut builder = Client::builder().timeout(timeout);
    for endpoint in cli.server.split(',') {
        builder = builder.endpoint(endpoint);
    }
    if let Some(token) = &cli.token {
        builder = builder.token(token);
    }
    if let Some(ca_file) = &cli.ca_file {
        builder = builder.ca_file(ca_file);
    }
    let json = cli.json;
    let comment = cli.comment;
    // A handle for REST calls, carrying the comment of a change.
    let rest = |builder: ClientBuilder| -> Result<Client, Failure> {
        let client = builder.build()?;
        Ok(match &comment {
            Some(comment) => client.with_comment(comment.clone()),
            None => client,
        })
    };
    match cli.verb {
        Verb::List { namespace: None } => {
            let list = rest(builder)?.fetch_namespaces().await?;
            if json {
                print_json(&list);
            } else {
                for ns in &list.namespaces {
                    let about =
                        ns.description.as_deref().map(|d| format!("\t{d}")).unwrap_or_default();
                    out!("{}\t{}{about}", ns.name, plural(ns.keys, "key"));
                }
                eprintln!("revision {}", list.revision);
            }
        }
        Verb::List { namespace: Some(namespace) } => {
            let client = rest(builder)?;
            let list = client.fetch_namespace(&namespace).await?;
            if list.entries.is_empty() {
                check_namespace_exists(&client, &namespace).await?;
            }
            if json {
                print_json(&list);
            } else {
                for entry in &list.entries {
                    let gray = entry
                        .gray
                        .as_ref()
                        .map(|g| format!("\t(gray {})", gray_summary(g)))
                        .unwrap_or_default();
                    out!(
                        "{}\t{}\t(revision {}){gray}",
                        entry.key,
                        compact(&entry.value),
                        entry.revision
                    );
                }
            }
        }
        Verb::Get { namespace, key } => {
            let client = rest(builder)?;
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
        Verb::Put { namespace, key, value, if_revision, create, type_change } => {
            let value = read_value(&value)?;
            let expect = match (if_revision, create) {
                (Some(revision), _) => Expect::Revision(revision),
                (None, true) => Expect::Absent,
                (None, false) => Expect::Any,
            };
            let client = rest(builder)?;
            if !type_change && !create {
                if let Some(current) = client.fetch(&namespace, &key).await? {
                    if !same_kind(&current.value, &value) {
                        return Err(Failure::Usage(format!(
                            "{namespace}/{key} holds {} and the new value is {}; the services \
                             reading it expect {0}. Pass --type-change if you mean to change its type",
                            kind_of(&current.value),
                            kind_of(&value)
                        )));
                    }
                }
            }
            let entry = client.put(&namespace, &key, &value, expect).await?;
            if json {
                print_json(&entry);
            } else {
                let what = if entry.version == 1 { "created" } else { "updated" };
                out!(
                    "{what} {namespace}/{key} = {} (revision {}, version {})",
                    compact(&entry.value),
                    entry.revision,
                    entry.version
                );
            }
        }
        Verb::Delete { namespace, key, if_revision } => {
            let expect = if_revision.map_or(Expect::Any, Expect::Revision);
            let revision = rest(builder)?.delete(&namespace, &key, expect).await?;
            if json {
                print_json(&json!({ "revision": revision }));
            } else {
                out!("deleted {namespace}/{key} (revision {revision})");
            }
        }
        Verb::History { namespace, key, limit } => {
            let items = rest(builder)?.history(&namespace, &key, Some(limit), None).await?;
            if json {
                print_json(&json!({ "items": items }));
            } else {
                for item in &items {
                    print_history(item);
                }
            }
        }
        Verb::Rollback { namespace, key, revision } => {
            let entry = rest(builder)?.rollback(&namespace, &key, revision).await?;
            if json {
                print_json(&entry);
            } else {
                out!(
                    "rolled {namespace}/{key} back to the value of revision {revision}: {} (revision {})",
                    compact(&entry.value),
                    entry.revision,
                );
            }
        }
        Verb::Watch { namespaces } => watch::watch(builder, namespaces, json, timeout).await?,
        Verb::Changes { namespace, key, since, limit } => {
            let page = rest(builder)?
                .fetch_changes(since, Some(limit), namespace.as_deref(), key.as_deref())
                .await?;
            if json {
                print_json(&page);
            } else {
                for item in &page.items {
                    print_change_item(item);
                }
                if let Some(next) = page.next {
                    eprintln!("more: graycastctl changes --since {next}");
                }
            }
        }
        Verb::Describe { namespace, description } => {
            let described = rest(builder)?.describe_namespace(&namespace, &description).await?;
            if json {
                print_json(&described);
            } else {
                match &described.description {
                    Some(text) => out!("{namespace}: {text} (revision {})", described.revision),
                    None => {
                        out!("{namespace} has no description (revision {})", described.revision)
                    }
                }
            }
        }
        Verb::Whoami => {
            let me = rest(builder)?.whoami().await?;
            if json {
                print_json(&me);
            } else {
                out!("{} ({}) on {}", me.name, me.role, me.namespaces.join(", "));
            }
        }
        Verb::Export => {
            let document = rest(builder)?.export().await?;
            print_json(&document);
            if !json {
                eprintln!(
                    "exported {} at revision {}",
                    plural(document.entries.len() as u64, "entry"),
                    document.revision
                );
            }
        }
        Verb::Import { file, dry_run, prune } => {
            let text = if file == "-" {
                let mut text = String::new();
                std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
                    .map_err(|e| Failure::Usage(format!("cannot read stdin: {e}")))?;
                text
            } else {
                std::fs::read_to_string(&file)
                    .map_err(|e| Failure::Usage(format!("cannot read {file}: {e}")))?
            };
            let document = serde_json::from_str(&text)
                .map_err(|e| Failure::Usage(format!("{file} is not an export document ({e})")))?;
            let report = rest(builder)?.import(&document, dry_run, prune).await?;
            if json {
                print_json(&report);
            } else {
                let verb = if dry_run { " (a dry run: nothing written)" } else { "" };
                for (what, keys) in [
                    ("added", &report.added),
                    ("changed", &report.changed),
                    ("removed", &report.removed),
                ] {
                    for key in keys {
                        out!("{what}\t{}/{}", key.namespace, key.key);
                    }
                }
                out!(
                    "{} added, {} changed, {} removed, {} unchanged, revision {}{verb}",
                    report.added.len(),
                    report.changed.len(),
                    report.removed.len(),
                    report.unchanged.len(),
                    report.revision,
                );
            }
        }
        Verb::Release { namespace, key, subject, attrs } => {
            let mut context = Context::subject(subject);
            for attr in &attrs {
                let (name, value) = attr
                    .split_once('=')
                    .ok_or_else(|| Failure::Usage(format!("--attr {attr:?} is not NAME=VALUE")))?;
                context = context.attr(name, value);
            }
            let decision = rest(builder)?.release(&namespace, &key, &context).await?;
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
        Verb::Gray(verb) => gray(rest(builder)?, verb, json).await?,
        Verb::Request(verb) => request::request(rest(builder)?, verb, json).await?,
    }
    Ok(())
}

/// An empty listing of a namespace nobody ever wrote is most likely a typo: say so.
async fn check_namespace_exists(client: &Client, namespace: &str) -> Result<(), Failure> {
    let known = client.fetch_namespaces().await?;
    if known.namespaces.iter().any(|n| n.name == namespace) {
        return Ok(());
    }
    let closest = known
        .namespaces
        .iter()
        .map(|n| (edit_distance(&n.name, namespace), &n.name))
        .filter(|(distance, _)| *distance <= 2.max(namespace.len() / 3))
        .min();
    let suggestion = closest.map(|(_, name)| format!("; did you mean {name}?")).unwrap_or_default();
    Err(Failure::Api(Error::Server {
        status: 404,
        code: "not_found".into(),
        message: format!("namespace {namespace} has no keys and no description{suggestion}"),
    }))
}

/// The Levenshtein distance of two names.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1).min(row[j] + 1).min(diagonal + usize::from(ca != *cb));
            diagonal = above;
        }
    }
    row[b.len()]
}

async fn gray(client: Client, verb: GrayVerb, json: bool) -> Result<(), Failure> {
    let (entry, said) = match verb {
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
            let entry = client.gray_start(&namespace, &key, &request).await?;
            let said = entry.gray.as_ref().map(|gray| {
                let steps: Vec<String> = gray.steps.iter().map(|s| format!("{}%", s.percent)).collect();
                let ramp = if steps.is_empty() { String::new() } else { format!(", ramp {}", steps.join(" → ")) };
                format!(
                    "started a gray release of {namespace}/{key}: {} (stable {}){ramp} (revision {})",
                    gray_summary(gray),
                    compact(&entry.value),
                    entry.revision
                )
            });
            (entry, said)
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
            let rules = if clear_rules {
                Some(Vec::new())
            } else if rules.is_empty() {
                None
            } else {
                Some(rules.iter().map(|r| parse_rule(r)).collect::<Result<_, _>>()?)
            };
            let patch = GrayPatch {
                percent,
                allow: allow.as_deref().map(list),
                deny: deny.as_deref().map(list),
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
            let entry = client.gray_patch(&namespace, &key, &patch).await?;
            let said = entry.gray.as_ref().map(|gray| {
                format!(
                    "changed the gray release of {namespace}/{key}: {} (revision {})",
                    gray_summary(gray),
                    entry.revision
                )
            });
            (entry, said)
        }
        GrayVerb::Promote { namespace, key } => {
            let entry = client.gray_promote(&namespace, &key).await?;
            let said = format!(
                "promoted {namespace}/{key}: the gray value {} is now the stable value (revision {})",
                compact(&entry.value),
                entry.revision
            );
            (entry, Some(said))
        }
        GrayVerb::Abort { namespace, key } => {
            let entry = client.gray_abort(&namespace, &key).await?;
            let said = format!(
                "aborted the gray release of {namespace}/{key}: everyone gets the stable value {} (revision {})",
                compact(&entry.value),
                entry.revision
            );
            (entry, Some(said))
        }
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
    } else if let Some(said) = said {
        out!("{said}");
    } else {
        print_entry(&entry);
    }
    Ok(())
}
