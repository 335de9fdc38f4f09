//! The health probe: every few seconds each etcd endpoint is asked for its status through a
//! connection of its own, so the metrics say which members answer and whether the cluster
//! has a leader, whatever the node's other requests happen to go through. A member going
//! down is logged once, and once again when it answers.

use std::sync::Arc;
use std::time::{Duration, Instant};

use etcd_client::{Client, ConnectOptions};
use futures_util::future::join_all;
use tokio::sync::watch;

use super::watcher::stopped;
use crate::metrics::{EtcdOp, Metrics};
use crate::streak::Streak;

/// How often every endpoint is probed.
pub(super) const PROBE_EVERY: Duration = Duration::from_secs(5);
/// Time allowed to one probe (connecting included).
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// One endpoint's probe: its connection, once made, and its run of failures.
struct Member {
    endpoint: String,
    client: Option<Client>,
    down: Streak,
}

impl Member {
    /// Asks the endpoint for its status: whether it answered, and with a leader.
    async fn probe(&mut self, options: &ConnectOptions, metrics: &Metrics) -> Result<bool, String> {
        let started = Instant::now();
        let answer = tokio::time::timeout(PROBE_TIMEOUT, async {
            if self.client.is_none() {
                // An endpoint that answers without a leader is up: `reachable` says whether
                // the cluster has one.
                let options =
                    options.clone().with_connect_timeout(PROBE_TIMEOUT).with_require_leader(false);
                let client = Client::connect([&self.endpoint], Some(options))
                    .await
                    .map_err(|e| e.to_string())?;
                self.client = Some(client);
            }
            let Some(client) = self.client.as_mut() else { return Err("no client".to_owned()) };
            client.status().await.map(|status| status.leader() != 0).map_err(|e| e.to_string())
        })
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {PROBE_TIMEOUT:?}")));
        metrics.record_etcd_request(EtcdOp::Status, started.elapsed(), answer.is_ok());
        if answer.is_err() {
            // Connect afresh next time: a member that restarted may have a new address.
            self.client = None;
        }
        answer
    }
}

/// Probes every endpoint every [`PROBE_EVERY`] until the engine stops.
pub(super) async fn probe(
    endpoints: Vec<String>,
    options: ConnectOptions,
    metrics: Arc<Metrics>,
    mut stop: watch::Receiver<bool>,
) {
    let mut members: Vec<Member> = endpoints
        .into_iter()
        .map(|endpoint| Member { endpoint, client: None, down: Streak::default() })
        .collect();
    let mut unreachable = Streak::default();
    loop {
        let answers = join_all(members.iter_mut().map(|member| {
            let (options, metrics) = (&options, &metrics);
            async move {
                let answer = member.probe(options, metrics).await;
                metrics.record_etcd_endpoint(&member.endpoint, answer.is_ok());
                match &answer {
                    Ok(_) => {
                        if let Some(ended) = member.down.succeeded() {
                            tracing::info!(
                                endpoint = %member.endpoint,
                                failed_probes = ended.failures,
                                down_s = ended.lasted.as_secs(),
                                "etcd member answers again"
                            );
                        }
                    }
                    Err(err) if member.down.failed() == 1 => tracing::warn!(
                        endpoint = %member.endpoint,
                        error = %err,
                        "etcd member does not answer (logged again once it does)"
                    ),
                    Err(_) => {}
                }
                answer
            }
        }))
        .await;
        let reachable = answers.iter().any(|answer| matches!(answer, Ok(true)));
        metrics.record_etcd_reachable(reachable);
        if reachable {
            if let Some(ended) = unreachable.succeeded() {
                tracing::info!(
                    failed_probes = ended.failures,
                    down_s = ended.lasted.as_secs(),
                    "etcd is reachable again, with a leader"
                );
            }
        } else if unreachable.failed() == 1 {
            tracing::warn!(
                "no etcd endpoint answers with a leader: writes fail until one does (logged \
                 again once one does)"
            );
        }
        tokio::select! {
            _ = stopped(&mut stop) => return,
            _ = tokio::time::sleep(PROBE_EVERY) => {}
        }
    }
}
