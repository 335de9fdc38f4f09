//! Operations: export and import between servers, backups.

use std::process::Command;

use graycast_tests::{cli_binary, Api, TestServer};
use serde_json::{json, Value};

fn ctl(server: &TestServer, args: &[&str]) -> std::process::Output {
    Command::new(cli_binary()).arg("--server").arg(&server.url).args(args).output().unwrap()
}

/// What an entry is, leaving out what an import cannot carry over (revisions, times,
/// authors): value and gray release (its start time and schedule aside).
fn essence(entry: &Value) -> Value {
    let mut gray = entry["gray"].clone();
    if let Some(gray) = gray.as_object_mut() {
        gray.remove("started_at");
        gray.remove("next_step_at");
    }
    json!({"namespace": entry["namespace"], "key": entry["key"], "value": entry["value"], "gray": gray})
}

fn essences(document: &Value) -> Vec<Value> {
    document["entries"].as_array().expect("entries").iter().map(essence).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_imported_into_an_empty_server_reproduces_it() {
    let source = TestServer::start();
    let api = Api::new(&source);
    api.put_ok("payments", "timeout_ms", json!(250)).await;
    api.put_ok("payments", "big", json!(12345678901234567890u64)).await;
    api.put_ok("payments", "ordered", json!({"z": 1, "a": [1.5, null, "x"]})).await;
    api.put_ok("search", "boost", json!(1.25)).await;
    let gray = json!({
        "value": 300, "allow": ["qa"], "deny": ["vip"],
        "rules": [{"attribute": "region", "op": "in", "values": ["eu-west"]}],
        "steps": [{"percent": 5, "hold_secs": 600}, {"percent": 50, "hold_secs": 600}, {"percent": 100}],
        "auto_promote": true, "guard": {"max_error_rate": 0.05, "min_samples": 100}, "salt": "s1"
    });
    let (status, body) = api
        .request(reqwest::Method::PUT, "/v1/configs/payments/timeout_ms/gray", None, Some(gray))
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = api
        .request(
            reqwest::Method::PATCH,
            "/v1/configs/payments/timeout_ms/gray",
            None,
            Some(json!({"percent": 12.5, "paused": true})),
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = api
        .request(
            reqwest::Method::PUT,
            "/v1/namespaces/empty-yet",
            None,
            Some(json!({"description": "Described before its first key"})),
        )
        .await;
    assert_eq!(status, 200);

    // graycastctl export > dump.json; graycastctl import dump.json (on an empty server).
    let dir = tempfile::tempdir().unwrap();
    let dump = dir.path().join("dump.json");
    let exported = ctl(&source, &["export"]);
    assert!(exported.status.success(), "{}", String::from_utf8_lossy(&exported.stderr));
    std::fs::write(&dump, &exported.stdout).unwrap();
    let document: Value = serde_json::from_slice(&exported.stdout).unwrap();
    assert_eq!(document["entries"].as_array().unwrap().len(), 5, "4 keys and a description");

    let target = TestServer::start();
    let dry = ctl(&target, &["--json", "import", dump.to_str().unwrap(), "--dry-run"]);
    let report: Value = serde_json::from_slice(&dry.stdout).unwrap();
    assert_eq!(
        (report["dry_run"].clone(), report["added"].as_array().unwrap().len()),
        (json!(true), 5)
    );
    assert_eq!(report["revision"], 0, "a dry run writes nothing");
    let done = ctl(&target, &["import", dump.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&done.stdout);
    assert!(done.status.success(), "{text}{}", String::from_utf8_lossy(&done.stderr));
    assert!(text.contains("5 added, 0 changed, 0 removed, 0 unchanged"), "{text}");

    let again: Value = serde_json::from_slice(&ctl(&target, &["export"]).stdout).unwrap();
    assert_eq!(essences(&again), essences(&document));
    // Digits and key order survive the trip; the release is at the same step, paused.
    let target_api = Api::new(&target);
    let (_, big) = target_api.get("/v1/configs/payments/big").await.unwrap();
    assert_eq!(big["value"].to_string(), "12345678901234567890");
    let (_, ordered) = target_api.get("/v1/configs/payments/ordered").await.unwrap();
    assert_eq!(ordered["value"].to_string(), r#"{"z":1,"a":[1.5,null,"x"]}"#);
    let (_, list) = target_api.get("/v1/namespaces").await.unwrap();
    assert_eq!(list["namespaces"][0]["name"], "empty-yet");
    let (_, history) = target_api.get("/v1/configs/payments/timeout_ms/history").await.unwrap();
    assert_eq!(history["items"][0]["comment"], "import");

    // Importing the same document again changes nothing.
    let report: Value =
        serde_json::from_slice(&ctl(&target, &["--json", "import", dump.to_str().unwrap()]).stdout)
            .unwrap();
    assert_eq!(report["unchanged"].as_array().unwrap().len(), 5, "{report}");
    assert!(
        report["added"].as_array().unwrap().is_empty()
            && report["changed"].as_array().unwrap().is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_into_a_live_server_diffs_prunes_and_refuses_bad_documents_whole() {
    let server = TestServer::start();
    let api = Api::new(&server);
    api.put_ok("app", "same", json!(1)).await;
    api.put_ok("app", "changed", json!(1)).await;
    api.put_ok("app", "extra", json!(1)).await;
    let (status, _) = api
        .request(
            reqwest::Method::PUT,
            "/v1/configs/app/changed/gray",
            None,
            Some(json!({"value": 2, "percent": 5})),
        )
        .await;
    assert_eq!(status, 200);
    let (_, mut document) = api.get("/v1/export").await.unwrap();
    let entries = document["entries"].as_array_mut().unwrap();
    entries.retain(|e| e["key"] != "extra");
    for entry in entries.iter_mut() {
        if entry["key"] == "changed" {
            entry["gray"] = Value::Null; // the document has no release: the import ends it
        }
    }
    entries.push(json!({
        "namespace": "app", "key": "new", "value": [1, 2], "revision": 1, "created_revision": 1,
        "version": 1, "updated_at": "2026-12-01T00:00:00Z", "updated_by": "someone", "gray": null
    }));
    let import = |query: &'static str, body: Value| {
        let api = &api;
        async move {
            api.request(reqwest::Method::POST, &format!("/v1/import{query}"), None, Some(body))
                .await
        }
    };
    let before = api.get("/v1/namespaces").await.unwrap().1["revision"].clone();
    let (status, report) = import("?dry_run=true&prune=true", document.clone()).await;
    assert_eq!(status, 200, "{report}");
    let names = |list: &Value| -> Vec<String> {
        list.as_array()
            .unwrap()
            .iter()
            .map(|k| format!("{}/{}", k["namespace"].as_str().unwrap(), k["key"].as_str().unwrap()))
            .collect()
    };
    assert_eq!(names(&report["added"]), ["app/new"]);
    assert_eq!(names(&report["changed"]), ["app/changed"]);
    assert_eq!(names(&report["unchanged"]), ["app/same"]);
    assert_eq!(names(&report["removed"]), ["app/extra"]);
    assert_eq!(api.get("/v1/namespaces").await.unwrap().1["revision"], before, "dry run");

    // A bad entry anywhere refuses the whole document, before anything is written.
    let mut bad = document.clone();
    bad["entries"].as_array_mut().unwrap().push(json!({
        "namespace": "app", "key": "zz", "value": 1, "revision": 1, "created_revision": 1, "version": 1,
        "updated_at": "2026-12-01T00:00:00Z", "updated_by": "x",
        "gray": {"value": 2, "percent": 150.0, "salt": "s", "started_at": "2026-12-01T00:00:00Z"}
    }));
    let (status, body) = import("", bad).await;
    assert_eq!((status, body["error"]["code"].as_str()), (422, Some("invalid_value")), "{body}");
    assert_eq!(api.get("/v1/namespaces").await.unwrap().1["revision"], before);
    // Well-formed JSON that is no export document is an invalid document; broken JSON is 400.
    let (status, _) = import("", json!({"revision": 1})).await;
    assert_eq!(status, 422);
    // A bad name inside a well-formed document makes the document invalid (found by
    // schemathesis: it was a 400, which the schema does not allow for a valid body).
    let mut unnamed = document.clone();
    unnamed["entries"].as_array_mut().unwrap().push(json!({
        "namespace": "", "key": "k", "value": 1, "revision": 1, "created_revision": 1, "version": 1,
        "updated_at": "2026-12-01T00:00:00Z", "updated_by": "x", "gray": null
    }));
    let (status, body) = import("?dry_run=true", unnamed).await;
    assert_eq!((status, body["error"]["code"].as_str()), (422, Some("invalid_value")), "{body}");
    // So does a timestamp that is not one (schemathesis again: `"next_step_at": ""`).
    let mut untimely = document.clone();
    untimely["entries"][0]["updated_at"] = json!("");
    let (status, body) = import("?dry_run=true", untimely).await;
    assert_eq!((status, body["error"]["code"].as_str()), (422, Some("invalid_value")), "{body}");

    let (status, report) = import("?prune=true", document).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(api.get("/v1/configs/app/extra").await.unwrap().0, 404);
    assert_eq!(api.get("/v1/configs/app/changed").await.unwrap().1["gray"], Value::Null);
    assert_eq!(api.get("/v1/configs/app/new").await.unwrap().1["value"], json!([1, 2]));
}

/// Backups restore exactly (issue 24, item 5): the export names its format, an import refuses
/// a format it does not read, and a running ramp comes back with its clocks as they were
/// (its `started_at` and the time of its next step), not started over at the import.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_restores_a_ramp_with_its_clocks_and_refuses_unknown_formats() {
    let source = TestServer::start();
    let api = Api::new(&source);
    api.put_ok("pay", "limit", json!(5)).await;
    let ramp = json!({"value": 7, "steps": [{"percent": 5, "hold_secs": 3600}, {"percent": 100}]});
    let (status, started) =
        api.request(reqwest::Method::PUT, "/v1/configs/pay/limit/gray", None, Some(ramp)).await;
    assert_eq!(status, 200, "{started}");
    let (_, document) = api.get("/v1/export").await.unwrap();
    assert_eq!(document["format"], 1);

    let target = TestServer::start();
    let target_api = Api::new(&target);
    let import = |doc: Value| {
        let target_api = &target_api;
        async move { target_api.request(reqwest::Method::POST, "/v1/import", None, Some(doc)).await }
    };
    let mut future = document.clone();
    future["format"] = json!(2);
    let (status, answer) = import(future).await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (422, Some("invalid_value")),
        "{answer}"
    );
    assert!(answer["error"]["message"].as_str().unwrap().contains("format 2"), "{answer}");
    let (status, answer) = import(document.clone()).await;
    assert_eq!(status, 200, "{answer}");
    let (_, restored) = target_api.get("/v1/configs/pay/limit").await.unwrap();
    for clock in ["started_at", "next_step_at"] {
        assert_eq!(restored["gray"][clock], started["gray"][clock], "{clock}: {restored}");
    }
    // A document written before formats were numbered reads as format 1.
    let mut older = document;
    older.as_object_mut().unwrap().remove("format");
    let (status, answer) = import(older).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["unchanged"].as_array().map(Vec::len), Some(1), "{answer}");
}
