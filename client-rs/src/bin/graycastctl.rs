//! `graycastctl`: the graycast command line, built on the SDK.

use std::io::Read as _;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use futures_util::StreamExt;
use graycast_client::{ChangeEvent, Client, Entry, Error, Expect, Filter, HistoryItem, Op};
use serde_json::Value;

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
    let json = cli.json;
    match cli.verb {
        Verb::List { namespace: None } => {
            let list = builder.build()?.fetch_namespaces().await?;
            if json {
                print_json(&list);
            } else {
                for ns in &list.namespaces {
                    println!("{}\t{} keys", ns.name, ns.keys);
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
                    println!(
                        "{}\t{}\t(revision {})",
                        entry.key,
                        compact(&entry.value),
                        entry.revision
                    );
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
                println!(
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
                println!("deleted {namespace}/{key} (revision {revision})");
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
                println!(
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
    }
    Ok(())
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
            _ = tokio::signal::ctrl_c() => return Ok(()),
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
    println!("{}", serde_json::to_string(value).unwrap_or_default());
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
    println!("{}/{}", entry.namespace, entry.key);
    println!(
        "  value:    {}",
        serde_json::to_string_pretty(&entry.value)
            .unwrap_or_default()
            .replace('\n', "\n            ")
    );
    println!(
        "  revision: {} (version {}, created at revision {})",
        entry.revision, entry.version, entry.created_revision
    );
    println!("  updated:  {} by {}", entry.updated_at.to_rfc3339(), entry.updated_by);
    if let Some(gray) = &entry.gray {
        println!("  gray:     {} at {}%", compact(&gray.value), gray.percent);
    }
}

fn print_history(item: &HistoryItem) {
    let value = if item.op == Op::Delete { String::new() } else { compact(&item.value) };
    println!(
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
        Some(entry) => println!(
            "{} {} {}/{} = {}",
            change.revision,
            change.op.as_str(),
            change.namespace,
            change.key,
            compact(&entry.value)
        ),
        None => println!(
            "{} {} {}/{}",
            change.revision,
            change.op.as_str(),
            change.namespace,
            change.key
        ),
    }
}
