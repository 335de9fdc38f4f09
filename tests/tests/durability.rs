//! Durability end to end: `kill -9` under write load, and graceful shutdown.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use graycast_tests::{Api, TestServer};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_write_load_loses_no_acknowledged_write() {
    let mut server = TestServer::start();
    const WRITERS: usize = 16;
    const KILL_AFTER: usize = 400;
    // For each writer: the last value and revision the server acknowledged.
    type Acked = Vec<Option<(u64, u64)>>;
    let acked: Arc<Mutex<Acked>> = Arc::new(Mutex::new(vec![None; WRITERS]));

    let total = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let api = Api::new(&server);
        let (acked, total, stop) = (acked.clone(), total.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                match api.put("crash", &format!("w{w}"), json!(i)).await {
                    Ok((status, body)) if status == 200 || status == 201 => {
                        let revision = body["revision"].as_u64().expect("revision");
                        acked.lock().unwrap()[w] = Some((i, revision));
                        total.fetch_add(1, Ordering::Relaxed);
                    }
                    // The server died mid-request: this write was never acknowledged.
                    _ => break,
                }
            }
        }));
    }
    // Kill once enough writes were acknowledged, while the writers are still going.
    let deadline = std::time::Instant::now() + graycast_tests::DEADLINE;
    while total.load(Ordering::Relaxed) < KILL_AFTER {
        assert!(std::time::Instant::now() < deadline, "writes too slow");
        tokio::task::yield_now().await;
    }
    // Every answer a writer records, before or after this point, was sent by the server
    // after its commit, so every recorded acknowledgement must survive.
    server.kill9();
    stop.store(true, Ordering::Relaxed);

    for task in tasks {
        task.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();

    server.start_again();
    let api = Api::new(&server);
    let mut max_revision = 0;
    for (w, last) in acked.iter().enumerate() {
        let Some((value, revision)) = last else { continue };
        let (status, entry) = api.get(&format!("/v1/configs/crash/w{w}")).await.unwrap();
        assert_eq!(status, 200, "writer {w}'s key is gone after the crash");
        let stored = entry["value"].as_u64().unwrap();
        // A write in flight at the kill may have committed without its answer arriving.
        assert!(stored >= *value, "writer {w}: acknowledged {value}, found {stored}");
        assert!(entry["revision"].as_u64().unwrap() >= *revision);
        max_revision = max_revision.max(entry["revision"].as_u64().unwrap());
    }
    assert!(acked.iter().filter(|a| a.is_some()).count() == WRITERS);
    let next = api.put_ok("crash", "after", json!("restart")).await;
    assert!(next > max_revision, "revision {next} reused after the crash (max {max_revision})");
    // History survived too.
    let (_, history) = api.get("/v1/configs/crash/w0/history?limit=1000").await.unwrap();
    assert!(history["items"].as_array().unwrap().len() as u64 >= acked[0].unwrap().0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_acknowledged_writes_and_exits_cleanly() {
    let mut server = TestServer::start();
    let api = Api::new(&server);
    let mut last = 0;
    for i in 0..50 {
        last = api.put_ok("term", &format!("k{}", i % 7), json!(i)).await;
    }
    let code = tokio::task::spawn_blocking(move || {
        let code = server.terminate();
        (code, server)
    })
    .await
    .unwrap();
    assert_eq!(code.0, Some(0));
    let mut server = code.1;
    server.start_again();
    let api = Api::new(&server);
    let (_, namespaces) = api.get("/v1/namespaces").await.unwrap();
    assert_eq!(namespaces["revision"], json!(last));
    assert_eq!(api.get("/v1/configs/term/k0").await.unwrap().1["value"], json!(49));
}

#[test]
fn refuses_to_serve_beyond_loopback_without_tokens() {
    let output = std::process::Command::new(graycast_tests::server_binary())
        .args(["--listen", "0.0.0.0:0", "--store", "memory"])
        .output()
        .expect("runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("without access tokens"), "{stderr}");
}
