//! The scenario both SDKs run (protocol/testdata/sdk-scenario.json), here with the Rust SDK
//! against a real server: subscribe, change, gray start, step, resume from a cache, promote,
//! abort. The JavaScript SDK runs the same file in client-js/test/scenario.test.js; both
//! checking the file's expectations is what makes them agree.

use std::path::Path;
use std::time::Duration;

use futures_util::StreamExt;
use graycast_client::{ChangeEvent, Client, Context};
use graycast_tests::{Api, TestServer, DEADLINE};
use serde_json::{json, Value};

fn scenario() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../protocol/testdata/sdk-scenario.json");
    serde_json::from_slice(&std::fs::read(path).expect("the scenario file")).expect("JSON")
}

/// A client of the scenario's namespace keeping its cache in `cache`, and the change
/// events it emits from its start.
fn start(
    server: &TestServer,
    namespace: &str,
    cache: &Path,
) -> (Client, tokio::sync::mpsc::UnboundedReceiver<ChangeEvent>) {
    let client = Client::builder()
        .endpoint(&server.url)
        .namespace(namespace)
        .cache_file(cache)
        .backoff(Duration::from_millis(20), Duration::from_millis(300))
        .build()
        .expect("a client");
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let mut changes = Box::pin(client.changes(graycast_client::Filter::all()));
    tokio::spawn(async move {
        while let Some(change) = changes.next().await {
            if tx.send(change).is_err() {
                break;
            }
        }
    });
    (client, rx)
}

fn context(spec: &Value) -> Context {
    let mut context = Context::subject(spec["subject"].as_str().expect("a subject"));
    for (name, value) in spec["attrs"].as_object().into_iter().flatten() {
        context = context.attr(name, value.as_str().expect("string attributes"));
    }
    context
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rust_sdk_runs_the_shared_scenario() {
    let scenario = scenario();
    let namespace = scenario["namespace"].as_str().unwrap();
    let server = TestServer::start();
    let api = Api::new(&server);
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache.json");
    let mut client: Option<(Client, _)> = None;

    for step in scenario["steps"].as_array().unwrap() {
        let name = step["name"].as_str().unwrap();
        if step["client"] == "stop" {
            let (stopped, _) = client.take().expect("a client to stop");
            let revision = stopped.revision();
            drop(stopped);
            // The cache file is written in the background: resume from all the client had.
            graycast_tests::eventually("the cache file holds the client's revision", || async {
                std::fs::read(&cache)
                    .ok()
                    .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
                    .is_some_and(|file| file["revision"] == json!(revision))
            })
            .await;
        }
        for write in step["writes"].as_array().into_iter().flatten() {
            let method =
                reqwest::Method::from_bytes(write["method"].as_str().unwrap().as_bytes()).unwrap();
            let body = write.get("body").cloned();
            let (status, answer) =
                api.request(method, write["path"].as_str().unwrap(), None, body).await;
            assert!((200..300).contains(&status), "{name}: {write} answered {status} {answer}");
        }
        // The client connects as soon as it is built, and its change stream hears what is
        // applied from the moment it is opened: the server is held (SIGSTOP) meanwhile, so the
        // first sync cannot be applied before the stream listens.
        match step["client"].as_str() {
            Some("start") => {
                let _ = std::fs::remove_file(&cache);
                server.freeze(true);
                client = Some(start(&server, namespace, &cache));
                server.freeze(false);
            }
            Some("resume") => {
                server.freeze(true);
                client = Some(start(&server, namespace, &cache));
                server.freeze(false);
            }
            _ => {}
        }
        let Some(expect) = step.get("expect") else { continue };
        let (sdk, events) = client.as_mut().expect("a running client");
        let (_, listing) = api.get(&format!("/v1/configs/{namespace}")).await.unwrap();
        let revision = listing["revision"].as_u64().unwrap();
        sdk.wait_for_revision(revision, DEADLINE).await.unwrap();

        // The events reach the stream a moment after the cache: take as many as expected (an
        // extra one would show up in the next step's).
        let wanted = expect["events"].as_array().map_or(0, Vec::len);
        let mut seen = Vec::new();
        while seen.len() < wanted {
            match tokio::time::timeout(DEADLINE, events.recv()).await {
                Ok(Some(event)) => seen.push(event),
                _ => break,
            }
        }
        while let Ok(event) = events.try_recv() {
            seen.push(event);
        }
        seen.sort_by_key(|e| e.revision);
        let seen: Vec<Value> = seen.iter().map(|e| json!([e.op.as_str(), e.key])).collect();
        assert_eq!(Value::Array(seen), expect["events"], "{name}: the change events");

        for (key, by_context) in expect["values"].as_object().unwrap() {
            for (who, want) in by_context.as_object().unwrap() {
                let ctx = context(&scenario["contexts"][who]);
                let eval = sdk.evaluate(namespace, key, &ctx).expect("the key is cached");
                let mut got = json!({
                    "value": eval.value(),
                    "variant": eval.variant,
                    "reason": eval.reason,
                });
                if want.get("bucket").is_some() {
                    got["bucket"] = json!(eval.bucket);
                }
                assert_eq!(&got, want, "{name}: {key} for {who}");
            }
        }
    }
}
