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

/// The heading of the etcd backup, run by its own test.
const BACKUP: &str = "Backing up etcd";

/// Headings whose `sh` blocks are not run here, and why.
const NOT_RUN: [(&str, &str); 3] = [
    (BACKUP, "run by the_etcd_backup_restores_as_written, against a real etcd"),
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
    let backup: Vec<&Block> =
        all.iter().filter(|b| b.lang == "sh" && b.heading == BACKUP).collect();
    assert_eq!(backup.len(), 1, "one sh block under {BACKUP:?}");
    let cluster = EtcdCluster::start(1);
    let prefix = unique_prefix();
    let before = graycast_tests::etcd::node(&cluster, &prefix);
    Api::new(&before).put_ok("backup", "k", serde_json::json!("saved")).await;
    drop(before);

    let dir = tempfile::tempdir().unwrap();
    let restored = format!("http://127.0.0.1:{}", free_port());
    let peer = format!("http://127.0.0.1:{}", free_port());
    // The block starts etcd in the background; the test stops it afterwards.
    let script = format!("set -e\n{}\necho $! > etcd.pid\n", backup[0].text);
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
