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
    std::fs::write(
        file("leaf.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    )
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
