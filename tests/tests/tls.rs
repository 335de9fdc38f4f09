//! TLS (issue 8): the server serves HTTPS and WSS with `--tls-cert`/`--tls-key`; the SDK
//! and the CLI speak `https://` with the system's roots or a CA file.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use graycast_client::{Client, Expect};
use graycast_tests::{cli_binary, TestServer, DEADLINE};
use serde_json::json;

/// A test CA and a certificate it signed for `localhost` and 127.0.0.1, made by the
/// `openssl` CLI: (CA certificate, server certificate, server key).
fn certificates(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    certificates_for(dir, "DNS:localhost,IP:127.0.0.1")
}

/// As [`certificates`], the leaf for the names `san` (a subjectAltName value).
fn certificates_for(dir: &Path, san: &str) -> (PathBuf, PathBuf, PathBuf) {
    let file = |name: &str| dir.join(name);
    let openssl = |args: &[&str]| {
        let status = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .stderr(std::process::Stdio::null())
            .status()
            .expect("openssl runs");
        assert!(status.success(), "openssl {args:?}");
    };
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    openssl(
        &[
            &["req", "-x509"][..],
            &ec,
            &["-days", "2", "-subj", "/CN=graycast test CA"],
            &["-keyout", "ca.key", "-out", "ca.pem"],
        ]
        .concat(),
    );
    openssl(
        &[&["req"][..], &ec, &["-subj", "/CN=localhost", "-keyout", "key.pem", "-out", "leaf.csr"]]
            .concat(),
    );
    std::fs::write(file("leaf.ext"), format!("subjectAltName={san}\nbasicConstraints=CA:FALSE\n"))
        .unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        "leaf.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "leaf.ext",
        "-out",
        "cert.pem",
    ]);
    (file("ca.pem"), file("cert.pem"), file("key.pem"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_and_wss_with_a_ca_file() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = certificates(dir.path());
    let server = TestServer::start_with(&[
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ]);
    assert!(server.url.starts_with("https://127.0.0.1:"), "{}", server.url);

    // REST over HTTPS, trusting the certificate.
    let pem = std::fs::read(&ca).unwrap();
    let http = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
        .build()
        .unwrap();
    let response = http
        .put(format!("{}/v1/configs/secure/k", server.url))
        .json(&json!({"value": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    // Plain HTTP on the TLS port gets nowhere.
    let plain = server.url.replacen("https://", "http://", 1);
    assert!(reqwest::get(format!("{plain}/healthz"))
        .await
        .map_or(true, |r| !r.status().is_success()));

    // The SDK: push over WSS and writes over HTTPS.
    let client = Client::builder()
        .endpoint(&server.url)
        .ca_file(&ca)
        .namespace("secure")
        .backoff(Duration::from_millis(20), Duration::from_millis(200))
        .build()
        .unwrap();
    client.wait_synced(DEADLINE).await.unwrap();
    assert_eq!(client.get::<u64>("secure", "k").unwrap(), Some(1));
    let change = client.put("secure", "k", &2, Expect::Any).await.unwrap();
    client.wait_for_revision(change.revision, DEADLINE).await.unwrap();
    assert_eq!(client.get::<u64>("secure", "k").unwrap(), Some(2));

    // Without the CA, the certificate is not trusted: a permanent error, not a hang.
    let untrusted = Client::builder().endpoint(&server.url).build().unwrap();
    let err = untrusted.fetch_namespaces().await.expect_err("an untrusted certificate");
    assert!(err.to_string().to_lowercase().contains("certificate"), "{err}");

    // The CLI, with and without `--ca-file`.
    let ctl = |extra: &[&str]| {
        Command::new(cli_binary())
            .args(["--server", &server.url])
            .args(extra)
            .args(["--json", "get", "secure", "k"])
            .output()
            .unwrap()
    };
    let ok = ctl(&["--ca-file", ca.to_str().unwrap()]);
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    let got: serde_json::Value = serde_json::from_slice(&ok.stdout).unwrap();
    assert_eq!(got["value"], 2);
    let refused = ctl(&[]);
    assert_eq!(refused.status.code(), Some(1));
}

/// A client trusting only the CA `ca`.
fn trusting(ca: &Path) -> reqwest::Client {
    let pem = std::fs::read(ca).unwrap();
    reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
        .build()
        .unwrap()
}

/// The status of `GET /v1/whoami` with `secret`, over a connection trusting `ca`; `None`
/// when the TLS handshake fails.
async fn whoami(ca: &Path, secret: &str, url: &str) -> Option<u16> {
    let response = trusting(ca).get(format!("{url}/v1/whoami")).bearer_auth(secret).send().await;
    response.map(|r| r.status().as_u16()).ok()
}

/// The reload failures the server counted.
async fn reload_failures(ca: &Path, secret: &str, url: &str) -> Option<String> {
    let response = trusting(ca).get(format!("{url}/metrics")).bearer_auth(secret).send().await;
    let text = response.ok()?.text().await.ok()?;
    text.lines().find(|l| l.starts_with("graycast_reload_failures_total ")).map(str::to_owned)
}

fn hangup(server: &TestServer) {
    let pid = server.pid().expect("running").to_string();
    assert!(Command::new("kill").args(["-HUP", &pid]).status().unwrap().success());
}

/// SIGHUP (issue 24, item 1): the token file and the TLS certificate are read again; new
/// requests and handshakes use them at once, open connections stay, and a file that does
/// not load keeps the previous one in service and counts a failed reload.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_tokens_and_the_certificate_and_keeps_connections() {
    let dir = tempfile::tempdir().unwrap();
    let (first, second) = (dir.path().join("first"), dir.path().join("second"));
    std::fs::create_dir_all(&first).unwrap();
    std::fs::create_dir_all(&second).unwrap();
    let (ca1, cert1, key1) = certificates(&first);
    let (ca2, cert2, key2) = certificates(&second);
    let (cert, key) = (dir.path().join("server.pem"), dir.path().join("server.key"));
    std::fs::copy(&cert1, &cert).unwrap();
    std::fs::copy(&key1, &key).unwrap();
    let tokens = graycast_tests::token_file(dir.path(), &[("old", "old-secret", "admin", &["*"])]);
    let mut server = TestServer::start_with(&[
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
        "--tokens",
        tokens.to_str().unwrap(),
    ]);
    let url = server.url.clone();
    // A subscriber connected before the reload, over the first certificate.
    let client = Client::builder()
        .endpoint(&url)
        .ca_file(&ca1)
        .token("old-secret")
        .namespace("app")
        .backoff(Duration::from_millis(20), Duration::from_millis(200))
        .build()
        .unwrap();
    client.wait_synced(DEADLINE).await.unwrap();
    assert_eq!(whoami(&ca1, "new-secret", &url).await, Some(401));

    // New tokens and a new certificate, then SIGHUP.
    graycast_tests::token_file(
        dir.path(),
        &[("old", "old-secret", "admin", &["*"]), ("new", "new-secret", "read", &["*"])],
    );
    std::fs::copy(&cert2, &cert).unwrap();
    std::fs::copy(&key2, &key).unwrap();
    hangup(&server);
    graycast_tests::eventually("the new token and certificate serve", || async {
        whoami(&ca2, "new-secret", &url).await == Some(200)
    })
    .await;
    assert_eq!(whoami(&ca1, "old-secret", &url).await, None, "the old certificate is gone");
    assert!(server.is_running(), "SIGHUP does not stop the server");
    // The subscriber of before the reload is still connected and still pushed to.
    let change = client.put("app", "k", &1, Expect::Any).await.unwrap();
    client.wait_for_revision(change.revision, DEADLINE).await.unwrap();
    assert!(client.status().connected);

    // A token file that does not load keeps the tokens in service, and says so.
    std::fs::write(&tokens, "not a token file").unwrap();
    hangup(&server);
    graycast_tests::eventually("a failed reload is counted", || async {
        reload_failures(&ca2, "old-secret", &url).await.as_deref()
            == Some("graycast_reload_failures_total 1")
    })
    .await;
    assert_eq!(whoami(&ca2, "new-secret", &url).await, Some(200));
    server.terminate();
}

/// The CLI says what is wrong with TLS, and the fix: a CA certificate served as the
/// server's own (the one-line `openssl req -x509` certificate), and plain HTTP to the TLS
/// port (issue 24, item 4).
#[test]
fn the_cli_explains_tls_mistakes() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, _, _) = certificates(dir.path());
    let ca_key = dir.path().join("ca.key");
    let server = TestServer::start_with(&[
        "--tls-cert",
        ca.to_str().unwrap(),
        "--tls-key",
        ca_key.to_str().unwrap(),
    ]);
    let ctl = |url: &str| {
        Command::new(cli_binary())
            .args(["--server", url, "--ca-file", ca.to_str().unwrap(), "whoami"])
            .output()
            .unwrap()
    };
    let as_ca = ctl(&server.url);
    let said = String::from_utf8_lossy(&as_ca.stderr);
    assert_eq!(as_ca.status.code(), Some(1), "{said}");
    assert!(said.contains("hint: the server presents a CA certificate as its own"), "{said}");
    let plain = ctl(&server.url.replacen("https://", "http://", 1));
    let said = String::from_utf8_lossy(&plain.stderr);
    assert!(said.contains("hint: the server speaks HTTPS: use --server https://"), "{said}");

    // A certificate for another name than the one connected to.
    let other = tempfile::tempdir().unwrap();
    let (ca, cert, key) = certificates_for(other.path(), "DNS:config.example.com");
    let server = TestServer::start_with(&[
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ]);
    let mismatch = Command::new(cli_binary())
        .args(["--server", &server.url, "--ca-file", ca.to_str().unwrap(), "whoami"])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&mismatch.stderr);
    assert!(said.contains("hint: the server's certificate is not for the host name"), "{said}");
}
