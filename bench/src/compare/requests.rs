//! `requests`: what four-eyes costs a change's way to its subscribers. graycast alone, on
//! one node, N subscribers of the namespace: first plain PUTs (time from sending the PUT to
//! the last subscriber's receipt), then the same updates as approved change requests under
//! a policy (time from sending the approval, then the apply, to the last receipt; and from
//! sending the apply alone), side by side.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::servers::start_graycast;
use super::settings::Settings;
use super::subscribers::subscribe_all;
use crate::{ms, percentile};

type Receipts = mpsc::UnboundedReceiver<(usize, Instant)>;

/// Waits until all `n` subscribers received update `update`; the last receipt's time.
async fn delivered(arrived: &mut Receipts, update: usize, n: usize) -> Result<Instant> {
    let mut count = 0;
    let mut last = Instant::now();
    while count < n {
        let (got, at) = tokio::time::timeout(Duration::from_secs(30), arrived.recv())
            .await
            .context("an update did not reach every subscriber within 30 s")?
            .context("the subscribers are gone")?;
        if got == update {
            count += 1;
            last = at;
        }
    }
    Ok(last)
}

async fn ok(response: reqwest::Response) -> Result<Value> {
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        bail!("{status}: {body}");
    }
    Ok(body)
}

pub(super) async fn run(settings: &Settings) -> Result<()> {
    let (n, updates) = (settings.subscribers, settings.updates);
    let server = start_graycast(&settings.graycast_bin, n)?;
    let base = format!("http://{}", server.address);
    let http = reqwest::Client::new();
    let (arrivals, mut arrived) = mpsc::unbounded_channel();
    subscribe_all(&server, n, &arrivals).await?;
    drop(arrivals);
    let key = format!("{base}/v1/configs/compare/k");

    let mut plain = Vec::with_capacity(updates);
    for update in 0..updates {
        let sent = Instant::now();
        ok(http.put(&key).json(&json!({ "value": update })).send().await?).await?;
        plain.push(delivered(&mut arrived, update, n).await? - sent);
    }
    let policy =
        json!({"policies": [{"namespaces": ["compare"], "approvals": 1, "self_approval": true}]});
    ok(http.put(format!("{base}/v1/policies")).json(&policy).send().await?).await?;
    let (mut approved, mut applied) = (Vec::new(), Vec::new());
    for i in 0..updates {
        let update = updates + i;
        let ops =
            json!([{"op": "put", "namespace": "compare", "key": "k", "body": {"value": update}}]);
        let request = ok(http
            .post(format!("{base}/v1/change-requests"))
            .json(&json!({ "ops": ops }))
            .send()
            .await?)
        .await?;
        let path = format!("{base}/v1/change-requests/{}", request["id"].as_str().unwrap_or(""));
        let sent = Instant::now();
        let approve = json!({ "digest": request["digest"] });
        ok(http.post(format!("{path}/approve")).json(&approve).send().await?).await?;
        let apply_sent = Instant::now();
        ok(http.post(format!("{path}/apply")).json(&json!({})).send().await?).await?;
        let last = delivered(&mut arrived, update, n).await?;
        approved.push(last - sent);
        applied.push(last - apply_sent);
    }
    for list in [&mut plain, &mut approved, &mut applied] {
        list.sort();
    }
    println!("requests: {n} subscribers, {updates} updates each way, one node\n");
    println!("| to the last of {n} subscribers | p50 | p99 |");
    println!("|---|---|---|");
    for (what, list) in [
        ("plain PUT", &plain),
        ("change request: approve, apply", &approved),
        ("change request: apply alone", &applied),
    ] {
        println!("| {what} | {} | {} |", ms(percentile(list, 0.5)), ms(percentile(list, 0.99)));
    }
    Ok(())
}
