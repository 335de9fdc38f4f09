//! The README's examples, run as written: the shell walkthrough in order against a fresh
//! server, and the SDK example against another. Every `sh` block of the README is either
//! run here or named below with the reason it is not, so an example cannot rot unnoticed.

use std::path::{Path, PathBuf};
use std::process::Command;

use graycast_tests::etcd::{node_on, unique_prefix, EtcdCluster};
use graycast_tests::{cli_binary, eventually, server_binary, Api, TestServer};

/// Headings whose `sh` blocks form the walkthrough, in README order.
const WALKTHROUGH: [&str; 6] =
    ["Try it", "Gray releases", "Typed configs", "Change requests", "CLI", "Operations"];

/// The heading of the backups: an export restored into a fresh server, and an etcd
/// snapshot, each run by its own test.
const BACKUP: &str = "Backups";

/// The heading of the TLS recipe, run by its own test.
const TLS: &str = "TLS";

/// Headings whose `sh` blocks the walkthrough does not run, and why.
const NOT_RUN: [(&str, &str); 4] = [
    (
        BACKUP,
        "run by the_export_restores_into_a_fresh_server_as_written (two servers) and \
         the_etcd_backup_restores_as_written (a real etcd)",
    ),
    (TLS, "run by the_tls_recipe_runs_as_written, with the openssl CLI"),
    (
        "Two commands (on a fresh machine with Rust)",
        "they are this test suite and the release build",
    ),
    (
        "Distributed mode (etcd)",
        "scripts/test.sh runs scripts/cluster.sh; the second command needs etcd hosts",
    ),
];

/// A fenced block of the README: its language and the `##` heading it is under.
struct Block {
    heading: String,
    lang: String,
    text: String,
}

fn readme() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md");
    std::fs::read_to_string(path).expect("README.md")
}

fn blocks(text: &str) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut heading = String::new();
    let mut open: Option<Block> = None;
    for line in text.lines() {
        match &mut open {
            Some(block) if line.starts_with("```") => {
                blocks.push(std::mem::replace(
                    block,
                    Block { heading: String::new(), lang: String::new(), text: String::new() },
                ));
                open = None;
            }
            Some(block) => {
                block.text.push_str(line);
                block.text.push('\n');
            }
            None if line.starts_with("```") => {
                open = Some(Block {
                    heading: heading.clone(),
                    lang: line.trim_start_matches('`').trim().to_owned(),
                    text: String::new(),
                })
            }
            None if line.starts_with("## ") => heading = line[3..].trim().to_owned(),
            None => {}
        }
    }
    blocks
}

/// The walkthrough as one bash script for a server at `address` (`host:port`): curl fails
/// on an error status; `watch` and the event stream, which run until interrupted, run for a
/// few seconds.
fn script(blocks: &[&Block], address: &str) -> String {
    let mut script = String::from(
        "set -euo pipefail\n\
         curl() { command curl --fail-with-body --silent --show-error \"$@\"; echo; }\n",
    );
    for block in blocks {
        script.push_str(&format!("echo '=== {}'\n", block.heading));
        for line in block.text.replace("localhost:8080", address).lines() {
            if line.starts_with("curl -N ") {
                // The event stream runs until interrupted too.
                let (command, _comment) = line.split_once("  #").unwrap_or((line, ""));
                script.push_str(&format!("timeout 2 {command} || [ $? -eq 124 ]\n"));
            } else if line.starts_with("graycastctl watch ") {
                let (command, _comment) = line.split_once("  #").unwrap_or((line, ""));
                script.push_str(&format!("timeout 3 {command} || [ $? -eq 124 ]\n"));
            } else {
                script.push_str(line);
                script.push('\n');
            }
        }
    }
    script
}

#[test]
fn every_shell_example_is_run_or_named_with_a_reason() {
    for block in blocks(&readme()).iter().filter(|b| b.lang == "sh") {
        let known = WALKTHROUGH.contains(&block.heading.as_str())
            || NOT_RUN.iter().any(|(heading, _)| *heading == block.heading);
        assert!(
            known,
            "a sh block under {:?} is neither run nor excused:\n{}",
            block.heading, block.text
        );
    }
}

#[test]
fn the_walkthrough_runs_in_order_on_a_fresh_server() {
    assert!(
        Command::new("jq").arg("--version").output().is_ok_and(|o| o.status.success()),
        "the CLI walkthrough needs jq (Debian: apt-get install jq; scripts/test.sh installs it)"
    );
    let text = readme();
    let all = blocks(&text);
    let walkthrough: Vec<&Block> = all
        .iter()
        .filter(|b| b.lang == "sh" && WALKTHROUGH.contains(&b.heading.as_str()))
        .collect();
    let headings: Vec<&str> = walkthrough.iter().map(|b| b.heading.as_str()).collect();
    assert_eq!(headings, WALKTHROUGH, "one sh block per walkthrough section, in order");

    let server = TestServer::start();
    let address = server.url.trim_start_matches("http://").to_owned();
    // `graycastctl` on the PATH, as after `cargo install`.
    let bin = tempfile::tempdir().unwrap();
    link(&cli_binary(), &bin.path().join("graycastctl"));
    let path = format!("{}:{}", bin.path().display(), std::env::var("PATH").unwrap_or_default());
    let output = Command::new("bash")
        .arg("-c")
        .arg(script(&walkthrough, &address))
        .env("PATH", path)
        // Files the walkthrough writes (backup.json) go to a temp dir.
        .current_dir(bin.path())
        .env("GRAYCAST_SERVER", &server.url)
        .env_remove("GRAYCAST_TOKEN")
        .output()
        .expect("bash runs");
    let (stdout, stderr) =
        (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(
        output.status.success(),
        "the walkthrough failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    // What the steps say they do happened.
    // Every conditional write of the walkthrough, run in order, goes through.
    assert!(!stdout.contains("revision_mismatch"), "{stdout}");
    for expected in [
        "Timeouts and limits of the payment service",
        "started a gray release of payments/timeout_ms: 350 to 5% (stable 250)",
        "promoted payments/timeout_ms: the gray value 350 is now the stable value",
        "\"code\":\"schema_violation\"",
        "\"code\":\"approval_required\"",
        "\"state\":\"open\"",
        "anonymous (admin) on *",
        "event: snapshot\nid: ",
        "0 added, 0 changed, 0 removed,",
        "(a dry run: nothing written)",
        "graycast_writes_total ",
    ] {
        assert!(stdout.contains(expected), "{expected:?} missing from:\n{stdout}");
    }
}

#[test]
fn the_sdk_example_is_the_quickstart_and_runs() {
    let text = readme();
    let all = blocks(&text);
    let rust: Vec<&Block> = all.iter().filter(|b| b.lang == "rust").collect();
    assert_eq!(rust.len(), 1, "one Rust example, the quickstart");
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../client-rs/examples/quickstart.rs");
    let file = std::fs::read_to_string(path).expect("quickstart.rs");
    assert_eq!(rust[0].text, file, "the README's Rust example is client-rs/examples/quickstart.rs");

    let server = TestServer::start();
    // The example keeps its cache file in the temp dir; a fresh one per run, so a
    // cache left by an earlier server cannot leak into this one.
    let tmp = tempfile::tempdir().unwrap();
    let output = Command::new(quickstart_binary())
        .env("GRAYCAST_SERVER", &server.url)
        .env("TMPDIR", tmp.path())
        .output()
        .expect("the quickstart runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "stdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("user-42 gets timeout_ms = 250"), "{stdout}");
    assert!(stdout.contains("pushed: revision 1 timeout_ms = Some(Number(300))"), "{stdout}");
    assert!(stdout.contains("Some(\"tuned by the quickstart\")"), "{stdout}");
}

fn quickstart_binary() -> PathBuf {
    server_binary().with_file_name(format!("quickstart-under-test{}", std::env::consts::EXE_SUFFIX))
}

fn link(target: &Path, link: &Path) {
    #[cfg(unix)]
    std::os::unix::fs::symlink(target, link).expect("symlink");
    #[cfg(not(unix))]
    std::fs::copy(target, link).map(|_| ()).expect("copy");
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// The README's etcd backup, run as written: a snapshot of a member holding a node's
/// state, restored into a new etcd, which a new node serves the state from.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_etcd_backup_restores_as_written() {
    let text = readme();
    let all = blocks(&text);
    let backup = backup_block(&all, "etcdctl");
    let cluster = EtcdCluster::start(1);
    let prefix = unique_prefix();
    let before = graycast_tests::etcd::node(&cluster, &prefix);
    Api::new(&before).put_ok("backup", "k", serde_json::json!("saved")).await;
    drop(before);

    let dir = tempfile::tempdir().unwrap();
    let restored = format!("http://127.0.0.1:{}", free_port());
    let peer = format!("http://127.0.0.1:{}", free_port());
    // The block starts etcd in the background; the test stops it afterwards.
    let script = format!("set -e\n{}\necho $! > etcd.pid\n", backup.text);
    let output = Command::new("bash")
        .arg("-c")
        .arg(script)
        .current_dir(dir.path())
        .env("ETCD", cluster.endpoints())
        .env("RESTORED", &restored)
        .env("RESTORED_PEER", &peer)
        .output()
        .expect("bash runs");
    let pid = std::fs::read_to_string(dir.path().join("etcd.pid")).unwrap_or_default();
    let stop = || {
        let _ = Command::new("kill").arg("-KILL").arg(pid.trim()).status();
    };
    if !output.status.success() {
        stop();
        panic!(
            "the backup failed\nstdout:\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    drop(cluster);
    let after = node_on(&restored, &prefix);
    let api = Api::new(&after);
    eventually("the restored state is served", || async {
        api.get("/v1/configs/backup/k").await.is_ok_and(|(s, b)| s == 200 && b["value"] == "saved")
    })
    .await;
    drop(after);
    stop();
}

/// The one `sh` block under "Backups" that mentions `marker`; there are two, the export
/// and the etcd snapshot.
fn backup_block<'a>(all: &'a [Block], marker: &str) -> &'a Block {
    let under: Vec<&Block> = all.iter().filter(|b| b.lang == "sh" && b.heading == BACKUP).collect();
    assert_eq!(under.len(), 2, "two sh blocks under {BACKUP:?}: the export and the etcd snapshot");
    let found: Vec<&Block> = under.into_iter().filter(|b| b.text.contains(marker)).collect();
    assert_eq!(found.len(), 1, "one sh block under {BACKUP:?} with {marker:?}");
    found[0]
}

/// A temp dir with `graycast` and `graycastctl` in it, as after `cargo install`, and the
/// `PATH` that finds them first.
fn installed() -> (tempfile::TempDir, String) {
    let bin = tempfile::tempdir().unwrap();
    link(&server_binary(), &bin.path().join("graycast"));
    link(&cli_binary(), &bin.path().join("graycastctl"));
    let path = format!("{}:{}", bin.path().display(), std::env::var("PATH").unwrap_or_default());
    (bin, path)
}

/// A README block as a bash script that stops at the first failure (curl too, on an error
/// status), run in `dir` with at most `seconds`; environment variables of graycast and
/// graycastctl that the block does not set are cleared.
fn run_block(
    text: &str,
    dir: &Path,
    path: &str,
    env: &[(&str, &str)],
    seconds: u32,
) -> std::process::Output {
    let script = format!(
        "set -euo pipefail\n\
         curl() {{ command curl --fail-with-body --silent --show-error \"$@\"; echo; }}\n{text}"
    );
    let mut command = Command::new("timeout");
    command.arg(seconds.to_string()).arg("bash").arg("-c").arg(script).current_dir(dir);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("GRAYCAST_") {
            command.env_remove(name);
        }
    }
    command.env("PATH", path).envs(env.iter().copied());
    command.output().expect("bash runs")
}

fn said(output: &std::process::Output) -> String {
    format!(
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// The README's export and restore, run as written: a server holding entries and a gray
/// release halfway through its ramp is exported, and the export imported into a fresh
/// server, which then serves the same values and the same release, its ramp's clocks
/// (`started_at`, `next_step_at`) included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_export_restores_into_a_fresh_server_as_written() {
    let text = readme();
    let all = blocks(&text);
    let block = backup_block(&all, "graycastctl export");
    assert!(block.text.contains("import"), "the block restores what it exported");

    let source = TestServer::start();
    let api = Api::new(&source);
    let keys = [
        ("shop", "banner", serde_json::json!("Welcome")),
        ("shop", "limits", serde_json::json!({"cart": 50, "big": 12345678901234567890u64})),
        ("payments", "timeout_ms", serde_json::json!(250)),
        ("payments", "retries", serde_json::json!([1, 2, 3])),
    ];
    for (ns, key, value) in &keys {
        api.put_ok(ns, key, value.clone()).await;
    }
    // A ramp with a short first step, so that it has moved to its second step (and its
    // clock differs from its start) before the export.
    let (status, body) = api
        .request(
            reqwest::Method::PUT,
            "/v1/configs/payments/timeout_ms/gray",
            None,
            Some(serde_json::json!({
                "value": 300, "allow": ["qa-user"], "deny": ["vip"],
                "rules": [{"attribute": "region", "op": "in", "values": ["eu-west"]}],
                "steps": [{"percent": 5, "hold_secs": 1}, {"percent": 25, "hold_secs": 3600},
                          {"percent": 100}],
                "auto_promote": true, "guard": {"max_error_rate": 0.05, "min_samples": 200}
            })),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    eventually("the ramp reaches its second step", || async {
        api.get("/v1/configs/payments/timeout_ms")
            .await
            .is_ok_and(|(_, b)| b["gray"]["step"] == 1 && b["gray"]["next_step_at"].is_string())
    })
    .await;

    let restored = TestServer::start();
    let (_bin, path) = installed();
    let dir = tempfile::tempdir().unwrap();
    let output = run_block(
        &block.text,
        dir.path(),
        &path,
        &[("GRAYCAST_SERVER", source.url.as_str()), ("RESTORED_SERVER", restored.url.as_str())],
        120,
    );
    assert!(output.status.success(), "the export and restore failed\n{}", said(&output));

    let after = Api::new(&restored);
    for (ns, key, value) in &keys {
        let path = format!("/v1/configs/{ns}/{key}");
        let (_, before) = api.get(&path).await.unwrap();
        let (status, now) = after.get(&path).await.unwrap();
        assert_eq!(status, 200, "{ns}/{key} restored: {now}");
        assert_eq!(&now["value"], value, "{ns}/{key}");
        assert_eq!(now["value"], before["value"], "{ns}/{key}");
        // The whole gray section: value, percent, salt, lists, rules, steps, the step it is
        // at, guard, and the clocks.
        assert_eq!(now["gray"], before["gray"], "{ns}/{key}'s gray release");
    }
    let (_, gray) = after.get("/v1/configs/payments/timeout_ms").await.unwrap();
    let gray = &gray["gray"];
    assert_eq!(gray["value"], 300, "{gray}");
    assert_eq!(gray["step"], 1, "{gray}");
    assert!(gray["started_at"].is_string() && gray["next_step_at"].is_string(), "{gray}");
    assert_ne!(gray["started_at"], gray["next_step_at"], "{gray}");
}

/// Kills the server a README block started in the background (its pid in a file) when the
/// test ends, passed or not.
struct Background(PathBuf);

impl Background {
    fn pid(&self) -> Option<String> {
        std::fs::read_to_string(&self.0).ok().map(|p| p.trim().to_owned()).filter(|p| !p.is_empty())
    }

    fn alive(&self) -> bool {
        self.pid().is_some_and(|pid| {
            Command::new("kill").args(["-0", &pid]).status().is_ok_and(|s| s.success())
        })
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Some(pid) = self.pid() {
            let _ = Command::new("kill").args(["-KILL", &pid]).status();
        }
    }
}

/// The README's TLS recipe, run as written (on a free port instead of 8443): the openssl
/// commands make a CA and a leaf it signed, the server serves HTTPS with the leaf, curl
/// and graycastctl reach it trusting the CA, and SIGHUP reloads a renewed leaf.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tls_recipe_runs_as_written() {
    let text = readme();
    let all = blocks(&text);
    let recipe: Vec<&Block> = all.iter().filter(|b| b.lang == "sh" && b.heading == TLS).collect();
    assert_eq!(recipe.len(), 1, "one sh block under {TLS:?}");
    let recipe = recipe[0].text.as_str();
    for step in ["openssl req -x509", "CA:FALSE", "extendedKeyUsage=serverAuth", "--tls-cert"] {
        assert!(recipe.contains(step), "the recipe has {step:?}");
    }
    assert!(recipe.contains(":8443"), "the recipe serves on port 8443");
    let port = free_port();
    let (_bin, path) = installed();
    let dir = tempfile::tempdir().unwrap();
    let server = Background(dir.path().join("graycast.pid"));
    let output = run_block(
        &recipe.replace(":8443", &format!(":{port}")),
        dir.path(),
        &path,
        &[("GRAYCAST_LOG", "info")],
        180,
    );
    let log = std::fs::read_to_string(dir.path().join("graycast.log")).unwrap_or_default();
    assert!(
        output.status.success(),
        "the TLS recipe failed\n{}\nserver log:\n{log}",
        said(&output)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    // curl's /healthz over HTTPS, and graycastctl's whoami over HTTPS.
    assert!(stdout.contains(r#"{"status":"ok"}"#), "{}", said(&output));
    assert!(stdout.contains("anonymous (admin)"), "{}", said(&output));
    assert!(log.contains(&format!("listening on https://127.0.0.1:{port}")), "{log}");

    // The SIGHUP at the end reloaded the renewed certificate, and the server still serves
    // it, trusted through the same CA.
    let ca = std::fs::read(dir.path().join("ca.pem")).unwrap();
    let http = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
        .build()
        .unwrap();
    let metrics = format!("https://localhost:{port}/metrics");
    eventually("the SIGHUP reload is counted", || async {
        let text = match http.get(&metrics).send().await {
            Ok(response) => response.text().await.unwrap_or_default(),
            Err(_) => return false,
        };
        text.lines().any(|l| l == "graycast_reloads_total 1")
    })
    .await;
    assert!(server.alive(), "SIGHUP does not stop the server");
    let renewed = std::fs::read(dir.path().join("server.pem")).unwrap();
    let served = Command::new("openssl")
        .args(["s_client", "-connect", &format!("127.0.0.1:{port}"), "-servername", "localhost"])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("openssl runs");
    let served = String::from_utf8_lossy(&served.stdout).into_owned();
    let renewed = String::from_utf8_lossy(&renewed).into_owned();
    assert_eq!(first_pem(&served), first_pem(&renewed), "the renewed leaf is served");
}

/// The first PEM certificate in `text`.
fn first_pem(text: &str) -> &str {
    let start = text.find("-----BEGIN CERTIFICATE-----").expect("a certificate");
    let end = text.find("-----END CERTIFICATE-----").expect("its end");
    &text[start..end]
}

/// The configuration table lists every flag `graycast --help` prints, each with its
/// environment variable and its default, and no flag the server does not have; and it is
/// one table (a blank line once cut it in two).
#[test]
fn the_configuration_table_lists_every_flag_of_help() {
    let help = Command::new(server_binary()).arg("--help").output().expect("graycast --help");
    assert!(help.status.success(), "{}", String::from_utf8_lossy(&help.stderr));
    let help = String::from_utf8_lossy(&help.stdout).into_owned();
    let flags = help_flags(&help);
    assert!(flags.len() > 20, "flags parsed from --help: {flags:?}\n{help}");

    let text = readme();
    let section: Vec<&str> = text
        .lines()
        .skip_while(|l| *l != "## Configuration")
        .skip(1)
        .take_while(|l| !l.starts_with("## "))
        .collect();
    let rows: Vec<(usize, &str)> =
        section.iter().copied().enumerate().filter(|(_, l)| l.starts_with('|')).collect();
    assert!(!rows.is_empty(), "a table under \"## Configuration\"");
    let (first, last) = (rows[0].0, rows[rows.len() - 1].0);
    assert_eq!(
        last - first + 1,
        rows.len(),
        "the configuration table is one table, no blank line in it"
    );
    let rows: Vec<&str> = rows.into_iter().map(|(_, l)| l).collect();

    for flag in &flags {
        let name = format!("`{}`", flag.name);
        let row = rows
            .iter()
            .find(|r| r.split('|').nth(1).is_some_and(|cell| cell.contains(&name)))
            .unwrap_or_else(|| {
                panic!("{} is missing from README's configuration table", flag.name)
            });
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        if let Some(env) = &flag.env {
            assert!(
                cells[1].contains(&format!("{name} [`{env}`]")),
                "the table names {env} beside {}: {row}",
                flag.name
            );
        }
        if let Some(default) = &flag.default {
            assert!(
                cells[2].contains(default.as_str()),
                "the table gives {}'s default {default:?}: {row}",
                flag.name
            );
        }
    }
    // And nothing more: every flag the table names is one the server has.
    for row in rows.iter().skip(2) {
        let cell = row.split('|').nth(1).unwrap_or_default();
        for name in cell.split('`').filter(|part| part.starts_with("--")) {
            assert!(
                flags.iter().any(|f| f.name == name),
                "the table lists {name}, which graycast --help does not print"
            );
        }
    }
}

/// A flag of `--help`: its long name, environment variable and default.
#[derive(Debug)]
struct HelpFlag {
    name: String,
    env: Option<String>,
    default: Option<String>,
}

/// The long flags of clap's `--help` (without `--help` and `--version`): a flag's line is
/// indented less than its description, which says `[env: NAME=…]` and `[default: …]`.
fn help_flags(help: &str) -> Vec<HelpFlag> {
    let mut flags: Vec<HelpFlag> = Vec::new();
    for line in help.lines() {
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        if indent > 0 && indent <= 6 && trimmed.starts_with('-') {
            // `--name <VALUE>`, or `-n, --name`.
            let long =
                if trimmed.starts_with("--") { trimmed } else { trimmed.get(4..).unwrap_or("") };
            let name: String =
                long.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '-').collect();
            if name.starts_with("--") {
                flags.push(HelpFlag { name, env: None, default: None });
            }
        }
        let Some(flag) = flags.last_mut() else { continue };
        let bracket = |tag: &str| {
            let start = line.find(tag)? + tag.len();
            Some(line[start..].chars().take_while(|c| *c != ']').collect::<String>())
        };
        if let Some(env) = bracket("[env: ") {
            flag.env = Some(env.split('=').next().unwrap_or_default().to_owned());
        }
        if let Some(default) = bracket("[default: ") {
            flag.default = Some(default);
        }
    }
    flags.retain(|f| f.name != "--help" && f.name != "--version");
    flags
}

/// The OpenFeature snippets (Node and Python, through the published OFREP providers of
/// `tests/ofrep`), run as written against a server holding the walkthrough's key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openfeature_snippets_run_as_written() {
    let text = readme();
    let all = blocks(&text);
    let heading = "Use it from any language (OpenFeature)";
    let snippet = |lang: &str| {
        let found: Vec<&Block> =
            all.iter().filter(|b| b.heading == heading && b.lang == lang).collect();
        assert_eq!(found.len(), 1, "one {lang} block under {heading:?}");
        found[0].text.clone()
    };
    let server = TestServer::start();
    Api::new(&server).put_ok("payments", "timeout_ms", serde_json::json!(250)).await;
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("ofrep");
    // The Node snippet beside the npm packages it imports; the Python one anywhere.
    let js = dir.join(format!("readme-{}.mjs", std::process::id()));
    std::fs::write(&js, snippet("js")).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let py = tmp.path().join("readme.py");
    std::fs::write(&py, snippet("python")).unwrap();
    for (program, script) in [("node", &js), ("python3", &py)] {
        let output = Command::new(program)
            .arg(script)
            .env("GRAYCAST_SERVER", &server.url)
            .output()
            .expect("runs");
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        if program == "node" {
            let _ = std::fs::remove_file(&js);
        }
        assert!(
            output.status.success() && stdout.contains("user-42 gets timeout_ms = 250"),
            "{program}: {stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}
