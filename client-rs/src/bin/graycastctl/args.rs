//! The command line: global options, verbs and their arguments.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// graycastctl: read, change, watch and gray-release the configuration of a graycast
/// server.
///
/// Output is for people by default and JSON with --json (errors too: {"error": {...}} on
/// stdout). The exit status is 0 on success, 1 when the server refuses or cannot be
/// reached, 2 for a mistake on the command line.
#[derive(Parser)]
#[command(name = "graycastctl", bin_name = "graycastctl", version, long_about = None, about = "graycastctl: read, change, watch and gray-release the configuration of a graycast server")]
pub struct Cli {
    /// The server's URL (http://, https://, or host:port; a trailing /v1 is dropped), or
    /// several, comma-separated: a request goes to the next when one is unreachable or
    /// unavailable, as the SDK does.
    #[arg(
        long,
        env = "GRAYCAST_SERVER",
        default_value = "http://127.0.0.1:8080",
        value_name = "URL",
        value_parser = server_url,
        global = true
    )]
    pub server: String,
    /// The access token, when the server has tokens.
    #[arg(
        long,
        env = "GRAYCAST_TOKEN",
        global = true,
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub token: Option<String>,
    /// PEM certificates to trust for an https:// server, besides the system's roots.
    #[arg(long, env = "GRAYCAST_CA_FILE", global = true, value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
    /// Print JSON instead of text (for `watch`: one change message per line).
    #[arg(long, global = true)]
    pub json: bool,
    /// Seconds allowed for each request, and for `watch` to first connect.
    #[arg(long, global = true, default_value_t = 10, value_name = "SECONDS",
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub timeout: u64,
    /// Why you make this change, kept in history and the audit feed (for changes only).
    #[arg(long, global = true, value_name = "TEXT")]
    pub comment: Option<String>,
    #[command(subcommand)]
    pub verb: Verb,
}

#[derive(Subcommand)]
pub enum Verb {
    /// List the namespaces, or the entries of one namespace.
    ///
    /// Example: graycastctl list payments
    List {
        /// The namespace whose entries to list; without it, the namespaces.
        namespace: Option<String>,
    },
    /// Show one entry.
    ///
    /// Example: graycastctl get payments timeout_ms
    Get {
        /// The namespace, such as payments.
        namespace: String,
        /// The key in the namespace, such as timeout_ms.
        key: String,
    },
    /// Set a value: JSON text, or @FILE to read it from a file (@- for stdin).
    ///
    /// A value of another JSON type than the current one (a string where a number was) is
    /// refused unless --type-change is given: the services reading the key expect its type.
    ///
    /// Examples: graycastctl put payments timeout_ms 250;
    /// graycastctl put payments banner '"hello"'; graycastctl put payments rules @rules.json
    Put {
        /// The namespace, such as payments.
        namespace: String,
        /// The key in the namespace, such as timeout_ms.
        key: String,
        /// The new value as JSON: 250, true, '"text"' (a string needs JSON quotes inside
        /// shell quotes), '{"a": 1}'; or @FILE to read it from a file, @- from stdin.
        value: String,
        /// Write only if the entry is at this revision.
        #[arg(long, conflicts_with = "create", value_name = "REVISION")]
        if_revision: Option<u64>,
        /// Create only: fail if the key exists.
        #[arg(long)]
        create: bool,
        /// Allow a value of another JSON type than the current one.
        #[arg(long)]
        type_change: bool,
    },
    /// Delete a key.
    ///
    /// Example: graycastctl delete payments timeout_ms --if-revision 42
    Delete {
        /// The namespace, such as payments.
        namespace: String,
        /// The key in the namespace, to delete.
        key: String,
        /// Delete only if the entry is at this revision.
        #[arg(long, value_name = "REVISION")]
        if_revision: Option<u64>,
    },
    /// Show the revisions of a key, newest first.
    ///
    /// Example: graycastctl history payments timeout_ms --limit 5
    History {
        /// The namespace, such as payments.
        namespace: String,
        /// The key in the namespace, such as timeout_ms.
        key: String,
        /// Most revisions to show.
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// Make the value of an earlier revision current again (as a new revision).
    ///
    /// Example: graycastctl rollback payments timeout_ms 41
    Rollback {
        /// The namespace, such as payments.
        namespace: String,
        /// The key in the namespace, such as timeout_ms.
        key: String,
        /// The revision whose value becomes current again (`graycastctl history` lists
        /// them).
        revision: u64,
    },
    /// Print every change of some namespaces as it arrives, until interrupted.
    ///
    /// Starts with the current entries, marked as the state (`state` lines; with --json,
    /// `{"type": "state", "entry"}` lines, then `{"type": "synced", "revision"}`), then
    /// prints each change (`{"type": "change", ...}`) and keeps going across server
    /// restarts, resuming where it left off. Ends with status 1 when the server cannot be
    /// reached at first or refuses (a missing or wrong token).
    ///
    /// Example: graycastctl watch payments search --json
    Watch {
        /// The namespaces to watch (one or more).
        #[arg(required = true)]
        namespaces: Vec<String>,
    },
    /// The audit feed: who changed what, when, from where and why, oldest first.
    ///
    /// Without --since, the recent changes. Example: graycastctl changes --namespace payments
    Changes {
        /// Only this namespace.
        #[arg(long)]
        namespace: Option<String>,
        /// Only this key.
        #[arg(long)]
        key: Option<String>,
        /// Changes after this revision.
        #[arg(long, value_name = "REVISION")]
        since: Option<u64>,
        /// Most changes to show (1 to 1000).
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// Say what a namespace is for ("" removes the description).
    ///
    /// Example: graycastctl describe payments "Timeouts and limits of the payment service"
    Describe {
        /// The namespace, such as payments.
        namespace: String,
        /// What the namespace is for, in a sentence ("" removes the description).
        description: String,
    },
    /// Show who the server takes your token for: name, role, namespaces.
    Whoami,
    /// Print every namespace, entry, gray release and description as one JSON document.
    ///
    /// Example: graycastctl export > backup.json
    Export,
    /// Bring the server to the state of an export (changed keys only, each a revision
    /// commented "import").
    ///
    /// Example: graycastctl import backup.json --dry-run
    Import {
        /// The document (`graycastctl export`), or - for stdin.
        file: String,
        /// Say what would change; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Also delete the keys the document does not have.
        #[arg(long)]
        prune: bool,
    },
    /// Ask the server which variant and value a subject gets.
    ///
    /// Example: graycastctl release payments timeout_ms user-42 --attr region=eu-west
    Release {
        /// The namespace, such as payments.
        namespace: String,
        /// The key in the namespace, such as timeout_ms.
        key: String,
        /// Who asks: a user, session or host id (the same subject always gets the same
        /// variant).
        subject: String,
        /// An attribute of the subject, NAME=VALUE (repeatable).
        #[arg(long = "attr", value_name = "NAME=VALUE")]
        attrs: Vec<String>,
    },
    /// Gray releases: start, set, promote, abort, status.
    #[command(subcommand)]
    Gray(GrayVerb),
    /// Change requests, for namespaces under a policy: create, list, show, approve, reject,
    /// apply, cancel.
    #[command(subcommand)]
    Request(RequestVerb),
}

#[derive(Subcommand)]
pub enum RequestVerb {
    /// Propose a change: put NAMESPACE KEY VALUE, or delete NAMESPACE KEY, or --ops @FILE
    /// for any ops (`[{"op", "namespace", "key", "body"}]`, as the REST API takes them).
    ///
    /// Examples: graycastctl request create put prod-pay limit 500 --comment "sale";
    /// graycastctl request create --ops @ops.json --apply-at 2026-12-24T06:00:00Z
    Create {
        /// put or delete (or nothing, with --ops).
        op: Option<String>,
        /// The namespace, such as prod-pay.
        namespace: Option<String>,
        /// The key in the namespace.
        key: Option<String>,
        /// The new value, as JSON (put), or @FILE.
        value: Option<String>,
        /// The ops as JSON, or @FILE (@- for stdin).
        #[arg(long, value_name = "JSON|@FILE", conflicts_with = "op")]
        ops: Option<String>,
        /// When the server applies it once approved (RFC 3339, such as 2026-12-24T06:00:00Z).
        #[arg(long, value_name = "TIME")]
        apply_at: Option<String>,
    },
    /// List change requests, newest first.
    ///
    /// Example: graycastctl request list --state open
    List {
        /// Only requests in this state: open, approved, applied, rejected, cancelled, stale.
        #[arg(long)]
        state: Option<String>,
    },
    /// Show a request: its ops, base revisions, digest, approvals and history.
    Show {
        /// The request's id.
        id: String,
    },
    /// Approve a request's content, named by the digest `show` printed (an edit since is
    /// new content, which this approval does not cover).
    Approve {
        /// The request's id.
        id: String,
        /// The digest you read with `graycastctl request show`.
        #[arg(long)]
        digest: String,
    },
    /// Reject a request.
    Reject {
        /// The request's id.
        id: String,
        /// Why.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Apply an approved request: all its ops or none.
    Apply {
        /// The request's id.
        id: String,
    },
    /// Cancel a request (its author, or an admin).
    Cancel {
        /// The request's id.
        id: String,
    },
}

#[derive(Subcommand)]
pub enum GrayVerb {
    /// Start (or replace) a gray release of an existing key.
    ///
    /// Example: graycastctl gray start payments timeout_ms --value 300 --step 5:10m
    /// --step 25:1h --step 100 --auto-promote --guard 0.05:200 --rule region:in:eu-west,eu-north
    Start {
        /// The namespace, such as payments.
        namespace: String,
        /// The key in the namespace, which must exist.
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
        /// A ramp step PERCENT[:HOLD], the hold as 90 (seconds), 30s, 10m, 2h or 1d
        /// (repeatable, in order; only the last may omit the hold).
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
        /// The namespace, such as payments.
        namespace: String,
        /// The key in the namespace, such as timeout_ms.
        key: String,
        /// The percent of subjects that get the gray value (0 to 100).
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
    Promote {
        /// The namespace, such as payments.
        namespace: String,
        /// The key in the namespace, such as timeout_ms.
        key: String,
    },
    /// Abort the release; the stable value stays.
    Abort {
        /// The namespace, such as payments.
        namespace: String,
        /// The key in the namespace, such as timeout_ms.
        key: String,
    },
    /// Show the release: percent, step, next step time, guard counts.
    Status {
        /// The namespace, such as payments.
        namespace: String,
        /// The key in the namespace, such as timeout_ms.
        key: String,
    },
}

/// `--server`: the URL without trailing slashes or a trailing `/v1` (the API's prefix,
/// which the client adds itself), so that `http://host:8080/v1` works too.
fn server_url(text: &str) -> Result<String, String> {
    let urls: Result<Vec<String>, String> = text.split(',').map(one_server_url).collect();
    Ok(urls?.join(","))
}

fn one_server_url(text: &str) -> Result<String, String> {
    let text = text.trim();
    let (scheme, rest) = match text.find("://") {
        Some(at) => text.split_at(at + 3),
        None => ("", text),
    };
    let rest = rest.trim_end_matches('/');
    let rest = rest.strip_suffix("/v1").unwrap_or(rest).trim_end_matches('/');
    if rest.is_empty() || rest.starts_with('/') {
        return Err(format!("{text:?} names no server; give http://HOST:PORT"));
    }
    Ok(format!("{scheme}{rest}"))
}

impl Verb {
    /// Whether the verb changes something (and so may carry a --comment).
    pub fn changes(&self) -> bool {
        match self {
            Verb::Put { .. }
            | Verb::Delete { .. }
            | Verb::Rollback { .. }
            | Verb::Describe { .. } => true,
            Verb::Gray(GrayVerb::Status { .. }) => false,
            Verb::Gray(_) => true,
            Verb::Request(RequestVerb::Create { .. }) => true,
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::server_url;

    #[test]
    fn server_urls() {
        for given in [
            "http://h:8080",
            "http://h:8080/",
            "http://h:8080/v1",
            "http://h:8080/v1/",
            "http://h:8080//v1//",
        ] {
            assert_eq!(server_url(given).as_deref(), Ok("http://h:8080"), "{given}");
        }
        assert_eq!(server_url("h:8080/v1").as_deref(), Ok("h:8080"));
        assert_eq!(server_url("https://h/graycast/v1").as_deref(), Ok("https://h/graycast"));
        assert_eq!(server_url("http://h/v10").as_deref(), Ok("http://h/v10"));
        assert!(server_url("http://").is_err());
        assert_eq!(
            server_url("http://a:1/v1, b:2,https://c").as_deref(),
            Ok("http://a:1,b:2,https://c")
        );
        assert!(server_url("http://a:1,").is_err());
        assert!(server_url("/v1").is_err());
    }
}
