//! A Jepsen-style fault test: concurrent clients do reads, blind writes and compare-and-set
//! (`If-Match`) on a few keys while the nemesis pauses and kills etcd members and kills
//! graycast nodes; the recorded history (invoke and complete times, timeouts as
//! indeterminate operations) is checked by `graycast_tests::linearizability`:
//! - writes, compare-and-set and final reads per key are linearizable;
//! - no acknowledged write is lost, none is applied twice (each value is unique, and a
//!   key's history holds each at most once), no refused write took effect;
//! - reads on the node written to follow the write (read your writes), and each node's
//!   reads never go back in revision.
//!
//! Bounded: about 60 s of faults on a cluster and 30 s on a single node. The figures of a
//! run are printed (run with `--nocapture`).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use graycast_tests::etcd::{node_with, unique_prefix, EtcdCluster};
use graycast_tests::linearizability::{
    check_linearizable, check_sessions, summary, Call, Op, Outcome,
};
use graycast_tests::TestServer;
use reqwest::StatusCode;
use serde_json::{json, Value};

const KEYS: usize = 5;
const CLIENTS: usize = 9;
/// Time a client gives one operation, retries with its `Idempotency-Key` included.
const OP_DEADLINE: Duration = Duration::from_secs(12);
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(4);
/// A client's pause between operations: enough operations to find faults, few enough for
/// every key's whole history to be read back and checked.
const THINK: Duration = Duration::from_millis(20);
/// Every history item kept, so that each write can be found.
const KEEP_ALL: &[&str] = &["--history-retain", "0"];

/// Where the nodes are now (a restarted node may come back on another port).
type Urls = Arc<RwLock<Vec<String>>>;

struct Recorder {
    start: Instant,
    ops: Mutex<Vec<Op>>,
    /// Attempts answered 503 or 504 or without an answer, which the client sent again.
    retried: std::sync::atomic::AtomicU64,
}

impl Recorder {
    fn now(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }
}

/// The outcome of one HTTP attempt.
enum Attempt {
    Done(Outcome),
    /// Nothing changed (503) or may have (a lost answer, 504): try again with the key.
    Again,
    /// A definite refusal other than a failed condition (a bug for this workload).
    Refused(u16, Value),
}

async fn attempt(
    http: &reqwest::Client,
    url: &str,
    key: &str,
    call: &Call,
    idempotency: &str,
) -> Attempt {
    let path = format!("{url}/v1/configs/jepsen/{key}");
    let request = match call {
        Call::Read => http.get(&path),
        Call::Write { value } => {
            http.put(&path).header("idempotency-key", idempotency).json(&json!({ "value": value }))
        }
        Call::Cas { expect, value } => http
            .put(&path)
            .header("idempotency-key", idempotency)
            .header("if-match", format!("\"{expect}\""))
            .json(&json!({ "value": value })),
    };
    let Ok(response) = request.timeout(ATTEMPT_TIMEOUT).send().await else {
        return Attempt::Again;
    };
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    let revision = body["revision"].as_u64();
    match (call, status) {
        (Call::Read, StatusCode::OK) => Attempt::Done(Outcome::Read(Some((
            body["value"].as_str().unwrap_or_default().to_owned(),
            revision.unwrap_or(0),
        )))),
        (Call::Read, StatusCode::NOT_FOUND) => Attempt::Done(Outcome::Read(None)),
        (_, StatusCode::OK | StatusCode::CREATED) if revision.is_some() => {
            Attempt::Done(Outcome::Written(revision.unwrap_or(0)))
        }
        (Call::Cas { .. }, StatusCode::PRECONDITION_FAILED) => Attempt::Done(Outcome::Refused),
        (_, StatusCode::SERVICE_UNAVAILABLE | StatusCode::GATEWAY_TIMEOUT) => Attempt::Again,
        (_, status) => Attempt::Refused(status.as_u16(), body),
    }
}

/// One client: random operations on random keys through random nodes until `stop`.
async fn client(id: u32, urls: Urls, recorder: Arc<Recorder>, stop: Arc<AtomicBool>) -> u64 {
    let http = reqwest::Client::new();
    let mut seed = 0x9e37_79b9_7f4a_7c15u64 ^ (u64::from(id) << 32);
    let mut random = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let mut seen: HashMap<String, u64> = HashMap::new();
    let mut refused = 0;
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        tokio::time::sleep(THINK).await;
        n += 1;
        let key = format!("k{}", random(KEYS as u64));
        let value = format!("c{id}-{n}");
        let call = match (random(10), seen.get(&key)) {
            (0..=3, _) => Call::Read,
            (4..=6, Some(revision)) => Call::Cas { expect: *revision, value },
            _ => Call::Write { value },
        };
        let node_count = urls.read().map_or(1, |u| u.len()) as u64;
        let mut node = random(node_count) as usize;
        let idempotency = format!("jepsen-{id}-{n}");
        let invoke = recorder.now();
        let deadline = Instant::now() + OP_DEADLINE;
        let mut outcome = Outcome::Unknown;
        let mut first_node = None;
        loop {
            let url = urls.read().map(|u| u[node].clone()).unwrap_or_default();
            match attempt(&http, &url, &key, &call, &idempotency).await {
                Attempt::Done(done) => {
                    outcome = done;
                    break;
                }
                Attempt::Refused(status, body) => {
                    eprintln!("client {id}: {call:?} on {key} refused {status}: {body}");
                    refused += 1;
                    break;
                }
                Attempt::Again => {
                    recorder.retried.fetch_add(1, Ordering::Relaxed);
                }
            }
            if Instant::now() > deadline || matches!(call, Call::Read) {
                break;
            }
            // The key makes the retry safe; the next node may answer.
            first_node.get_or_insert(node);
            node = (node + 1) % node_count as usize;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let complete = recorder.now();
        match &outcome {
            Outcome::Read(Some((_, revision))) | Outcome::Written(revision) => {
                seen.insert(key.clone(), *revision);
            }
            _ => {}
        }
        if matches!(call, Call::Read) && matches!(outcome, Outcome::Unknown) {
            continue;
        }
        // A retried operation's reads and writes were made on the node that answered.
        let op = Op { client: id, node: node as u32, key, invoke, complete, call, outcome };
        recorder.ops.lock().expect("ops").push(op);
    }
    refused
}

/// What a run found.
struct Verdict {
    ops: usize,
    unknown: usize,
    problems: Vec<String>,
}

/// Checks a history against the keys' final state, read through `url` once every node
/// settled, and prints its figures.
async fn verdict(name: &str, recorder: &Recorder, url: &str, faults: usize) -> Verdict {
    let http = reqwest::Client::new();
    let mut ops = recorder.ops.lock().expect("ops").clone();
    let mut problems = Vec::new();
    // Each key's full history: every change, with the value it wrote.
    let mut made: HashMap<String, Vec<(u64, String)>> = HashMap::new();
    for k in 0..KEYS {
        let key = format!("k{k}");
        // Every change of the key, newest first, page by page.
        let mut changes: Vec<(u64, String)> = Vec::new();
        loop {
            let before = changes.last().map_or(String::new(), |(r, _)| format!("&before={r}"));
            let page: Value = http
                .get(format!("{url}/v1/configs/jepsen/{key}/history?limit=1000{before}"))
                .send()
                .await
                .expect("history")
                .json()
                .await
                .expect("history body");
            let items = page["items"].as_array().cloned().unwrap_or_default();
            if items.is_empty() {
                break;
            }
            changes.extend(items.iter().map(|i| {
                (i["revision"].as_u64().unwrap_or(0), i["value"].as_str().unwrap_or("").to_owned())
            }));
        }
        // The final state, read after every fault healed: a last read of each key.
        let at = recorder.now();
        let last = changes.first().map(|(r, v)| (v.clone(), *r));
        ops.push(Op {
            client: u32::MAX,
            node: u32::MAX,
            key: key.clone(),
            invoke: at,
            complete: at,
            call: Call::Read,
            outcome: Outcome::Read(last),
        });
        made.insert(key, changes);
    }
    for (key, changes) in &made {
        let mut values = HashSet::new();
        for (revision, value) in changes {
            if !values.insert(value.clone()) {
                problems.push(format!("{key}: {value} applied twice (again at {revision})"));
            }
        }
    }
    for op in &ops {
        let value = match &op.call {
            Call::Write { value } | Call::Cas { value, .. } => value,
            Call::Read => continue,
        };
        let in_history = made[&op.key].iter().find(|(_, v)| v == value).map(|(r, _)| *r);
        match (&op.outcome, in_history) {
            (Outcome::Written(revision), Some(at)) if *revision != at => problems
                .push(format!("{}: {value} answered at {revision} but made at {at}", op.key)),
            (Outcome::Written(revision), None) => {
                problems.push(format!("{}: {value} acknowledged at {revision} and lost", op.key))
            }
            (Outcome::Refused, Some(at)) => {
                problems.push(format!("{}: {value} refused but made at {at}", op.key))
            }
            _ => {}
        }
    }
    // Reads belong in the linearizability check only where they are promised to be
    // current: the final reads. Reads on nodes are checked per node.
    let (reads, checked): (Vec<Op>, Vec<Op>) =
        ops.iter().cloned().partition(|op| op.call == Call::Read && op.client != u32::MAX);
    if let Err(violation) = check_linearizable(&checked) {
        problems.push(format!("not linearizable: {violation}"));
    }
    let mut sessions: Vec<Op> = reads;
    sessions.extend(checked.into_iter().filter(|op| op.client != u32::MAX));
    problems.extend(check_sessions(&sessions));
    let figures = summary(&ops);
    let retried = recorder.retried.load(Ordering::Relaxed);
    eprintln!(
        "{name}: {figures:?}, attempts sent again {retried}, faults {faults}, problems {}",
        problems.len()
    );
    for problem in problems.iter().take(20) {
        eprintln!("  {problem}");
    }
    Verdict { ops: figures.ops, unknown: figures.unknown, problems }
}

/// No operation refused for no reason, and no problem found.
fn assert_sound(verdict: &Verdict, refused: u64) {
    assert_eq!(refused, 0, "writes refused for no reason");
    assert!(
        verdict.problems.is_empty(),
        "{} problems, first: {:?}",
        verdict.problems.len(),
        verdict.problems.first()
    );
}

/// Runs `CLIENTS` clients against the nodes for `run`, while `nemesis` does its faults;
/// returns the recorder and the count of refusals no fault explains.
async fn run_clients(
    urls: Urls,
    run: Duration,
    nemesis: impl std::future::Future<Output = usize>,
) -> (Arc<Recorder>, u64, usize) {
    let recorder = Arc::new(Recorder {
        start: Instant::now(),
        ops: Mutex::new(Vec::new()),
        retried: std::sync::atomic::AtomicU64::new(0),
    });
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..CLIENTS as u32)
        .map(|id| tokio::spawn(client(id, urls.clone(), recorder.clone(), stop.clone())))
        .collect();
    let faults = nemesis.await;
    tokio::time::sleep(run.saturating_sub(recorder.start.elapsed())).await;
    stop.store(true, Ordering::Relaxed);
    let mut refused = 0;
    for client in clients {
        refused += client.await.expect("client");
    }
    (recorder, refused, faults)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_nodes_on_three_etcd_members_under_pauses_and_kills() {
    let mut cluster = EtcdCluster::start(3);
    let prefix = unique_prefix();
    // Each node lists the members in another order, so their watches start apart.
    let orders = [[0, 1, 2], [1, 2, 0], [2, 0, 1]];
    let mut nodes: Vec<Option<TestServer>> = orders
        .iter()
        .map(|order| Some(node_with(&cluster.endpoints_of(order), &prefix, KEEP_ALL)))
        .collect();
    let urls: Urls = Arc::new(RwLock::new(nodes.iter().flatten().map(|n| n.url.clone()).collect()));
    let run = Duration::from_secs(60);
    let nemesis_urls = urls.clone();
    let started = Instant::now();
    let nemesis = async {
        let mut faults = 0;
        let mut round = 0usize;
        while started.elapsed() + Duration::from_secs(12) < run {
            let member = round % 3;
            tokio::time::sleep(Duration::from_secs(2)).await;
            match round % 3 {
                0 => {
                    cluster.pause(member, true);
                    tokio::time::sleep(Duration::from_secs(6)).await;
                    cluster.pause(member, false);
                }
                1 => {
                    cluster.kill(member);
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    cluster.restart(member);
                }
                _ => {
                    let victim = round % nodes.len();
                    let Some(mut node) = nodes[victim].take() else { continue };
                    node.kill9();
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    let node = tokio::task::spawn_blocking(move || {
                        node.start_again();
                        node
                    })
                    .await
                    .expect("restarts");
                    if let Ok(mut urls) = nemesis_urls.write() {
                        urls[victim] = node.url.clone();
                    }
                    nodes[victim] = Some(node);
                }
            }
            faults += 1;
            round += 1;
        }
        faults
    };
    let (recorder, refused, faults) = run_clients(urls.clone(), run, nemesis).await;
    cluster.wait_healthy(3);
    let url = urls.read().expect("urls")[0].clone();
    let verdict = verdict("cluster", &recorder, &url, faults).await;
    assert_sound(&verdict, refused);
    let failed = verdict.unknown as f64 / verdict.ops.max(1) as f64;
    assert!(failed <= 0.001, "{} of {} operations had no outcome", verdict.unknown, verdict.ops);
    drop(nodes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_single_node_under_kill_9() {
    let server = Arc::new(Mutex::new(TestServer::start_with(KEEP_ALL)));
    let urls: Urls = Arc::new(RwLock::new(vec![server.lock().expect("server").url.clone()]));
    let run = Duration::from_secs(30);
    let started = Instant::now();
    let nemesis_urls = urls.clone();
    let nemesis_server = server.clone();
    let nemesis = async move {
        let mut faults = 0;
        while started.elapsed() + Duration::from_secs(5) < run {
            tokio::time::sleep(Duration::from_secs(3)).await;
            let server = nemesis_server.clone();
            let url = tokio::task::spawn_blocking(move || {
                let mut server = server.lock().expect("server");
                server.kill9();
                std::thread::sleep(Duration::from_millis(500));
                server.start_again();
                server.url.clone()
            })
            .await
            .expect("restarts");
            if let Ok(mut urls) = nemesis_urls.write() {
                urls[0] = url;
            }
            faults += 1;
        }
        faults
    };
    let (recorder, refused, faults) = run_clients(urls.clone(), run, nemesis).await;
    let url = urls.read().expect("urls")[0].clone();
    let verdict = verdict("single node", &recorder, &url, faults).await;
    assert_sound(&verdict, refused);
}
