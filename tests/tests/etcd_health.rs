//! Operations on etcd: what a node says of etcd's health in `/metrics` (checked by
//! promtool) and in its log, through a member's outage and a whole cluster's.
//!
//! Issue 24: nothing in `/metrics` was about etcd but lease grants and session restarts,
//! and during an etcd outage every node logged `session ended … tcp connect error` every
//! 2 s for the whole outage.

use std::process::{Command, Stdio};

use graycast_tests::etcd::{node, unique_prefix, EtcdCluster};
use graycast_tests::{eventually, TestServer};

/// The node's `/metrics` text.
async fn scrape(server: &TestServer) -> String {
    reqwest::get(format!("{}/metrics", server.url)).await.unwrap().text().await.unwrap()
}

/// A sample's value, `name` with its labels as rendered.
fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(&format!("{name} "))?.parse().ok())
}

fn endpoint_up(endpoint: &str) -> String {
    format!("graycast_etcd_endpoint_up{{endpoint=\"{endpoint}\"}}")
}

/// Lines of the node's log that contain `text`.
fn logged(server: &TestServer, text: &str) -> usize {
    logged_since(server, 0, text)
}

/// Lines of the node's log from byte `from` on that contain `text`.
fn logged_since(server: &TestServer, from: usize, text: &str) -> usize {
    let log = server.log_text();
    log.get(from..).unwrap_or_default().lines().filter(|line| line.contains(text)).count()
}

fn promtool_check(text: &str) {
    let mut check = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian: prometheus; scripts/test.sh installs it)");
    use std::io::Write as _;
    check.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let done = check.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&done.stdout),
        String::from_utf8_lossy(&done.stderr)
    );
    assert!(done.status.success() && said.trim().is_empty(), "promtool check metrics: {said}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_health_is_measured_and_an_outage_is_logged_once_and_once_on_recovery() {
    let mut cluster = EtcdCluster::start(3);
    let endpoints = cluster.endpoint_list();
    let server = node(&cluster, &unique_prefix());

    // Healthy: every endpoint up, reachable, a lease, etcd's requests timed, promtool happy.
    eventually("every endpoint is probed up", || async {
        let text = scrape(&server).await;
        sample(&text, "graycast_etcd_reachable") == Some(1.0)
            && sample(&text, "graycast_etcd_lease_held") == Some(1.0)
            && endpoints.iter().all(|e| sample(&text, &endpoint_up(e)) == Some(1.0))
    })
    .await;
    graycast_tests::Api::new(&server).put_ok("health", "k", serde_json::json!(1)).await;
    let text = scrape(&server).await;
    for op in ["write", "read", "lease", "watch", "status"] {
        let count = format!("graycast_etcd_request_duration_seconds_count{{op=\"{op}\"}}");
        assert!(sample(&text, &count).is_some_and(|n| n >= 1.0), "{count} in:\n{text}");
    }
    assert_eq!(sample(&text, "graycast_etcd_request_errors_total{op=\"write\"}"), Some(0.0));
    assert!(text.contains("graycast_build_info{"), "{text}");
    promtool_check(&text);

    // One member down: that endpoint is down, the cluster still reachable.
    cluster.stop(2);
    eventually("the stopped member is probed down", || async {
        let text = scrape(&server).await;
        sample(&text, &endpoint_up(&endpoints[2])) == Some(0.0)
            && sample(&text, "graycast_etcd_reachable") == Some(1.0)
    })
    .await;
    assert_eq!(logged(&server, "etcd member does not answer"), 1, "{}", server.log_text());
    // Through two more probe rounds of the member that is down, the node's session holds (it
    // ended every 2 s while its requests went to the dead member): at most the one that
    // was on it ends.
    let restarts = |text: &str| sample(text, "graycast_etcd_session_restarts_total");
    let probes =
        |text: &str| sample(text, "graycast_etcd_request_duration_seconds_count{op=\"status\"}");
    let text = scrape(&server).await;
    let (restarts_then, probes_then) = (restarts(&text), probes(&text).unwrap_or_default());
    eventually("two more probe rounds", || async {
        probes(&scrape(&server).await).is_some_and(|n| n >= probes_then + 6.0)
    })
    .await;
    let restarted =
        restarts(&scrape(&server).await).unwrap_or_default() - restarts_then.unwrap_or_default();
    assert!(
        restarted <= 1.0,
        "{restarted} session restarts with one member down:\n{}",
        server.log_text()
    );

    // All of etcd down: unreachable, no lease; the session fails again and again.
    let outage = server.log_text().len();
    cluster.stop_all();
    eventually("the node finds etcd unreachable", || async {
        let text = scrape(&server).await;
        sample(&text, "graycast_etcd_reachable") == Some(0.0)
            && sample(&text, "graycast_etcd_lease_held") == Some(0.0)
            && sample(&text, "graycast_etcd_session_restarts_total").is_some_and(|n| n >= 4.0)
    })
    .await;
    let text = scrape(&server).await;
    assert!(
        sample(&text, "graycast_etcd_request_errors_total{op=\"lease\"}").is_some_and(|n| n >= 4.0),
        "{text}"
    );
    promtool_check(&text);
    // Each failing thing logged once, not once per retry.
    for (what, times) in [
        ("the node's etcd session ended", 1),
        ("no etcd endpoint answers with a leader", 1),
        ("etcd member does not answer", 2),
        ("the etcd watch broke", 1),
    ] {
        let seen = logged_since(&server, outage, what);
        assert_eq!(seen, times, "{what:?} since the outage:\n{}", server.log_text());
    }

    // Losing the lead is said (once at most: the node may have been between sessions).
    assert!(
        logged_since(&server, outage, "this node no longer leads") <= 1,
        "{}",
        server.log_text()
    );

    // Back: each logs its recovery once, with how many failures it saw.
    cluster.restart_all();
    eventually("the node has etcd and a lease again", || async {
        let text = scrape(&server).await;
        sample(&text, "graycast_etcd_reachable") == Some(1.0)
            && sample(&text, "graycast_etcd_lease_held") == Some(1.0)
            && endpoints.iter().all(|e| sample(&text, &endpoint_up(e)) == Some(1.0))
            && logged(&server, "etcd member answers again") == 3
    })
    .await;
    for what in ["etcd is reachable again", "the etcd watch answers again"] {
        let seen = logged_since(&server, outage, what);
        assert_eq!(seen, 1, "{what:?} since the outage:\n{}", server.log_text());
    }
    // A session may end once more while the members come back (its keep-alive on one that
    // is still starting); each end is paired with one recovery, never logged per retry.
    let ended = logged_since(&server, outage, "the node's etcd session ended");
    let held = logged_since(&server, outage, "the node's etcd session holds a lease again");
    assert!(
        held >= 1 && ended <= 2 && ended == held,
        "{ended} ended, {held} held:\n{}",
        server.log_text()
    );
    let recovered = server
        .log_text()
        .lines()
        .find(|l| l.contains("holds a lease again"))
        .unwrap_or_default()
        .to_owned();
    assert!(recovered.contains("sessions_ended="), "{recovered}");
}
