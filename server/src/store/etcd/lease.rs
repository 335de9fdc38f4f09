//! This node's lease (for its ephemeral keys) and its campaign to lead (ramps and the
//! guard run on the leader only).

use std::sync::Arc;
use std::time::Duration;

use etcd_client::Client;
use tokio::sync::watch;

use super::keys::Keys;
use super::watcher::stopped;
use super::write::never_sent;
use super::{retry, EtcdOptions, RETRY_MAX, RETRY_MIN};
use crate::metrics::{EtcdOp, Metrics};
use crate::streak::Streak;

/// The node's two etcd clients: with the request timeout, and without it for calls that
/// block until something happens (the campaign).
pub(super) struct Clients {
    pub(super) timed: Client,
    pub(super) patient: Client,
}

/// The node's session: its lease (renewed every third of its TTL) and its campaign to lead.
pub(super) async fn session(
    clients: Clients,
    metrics: Arc<Metrics>,
    keys: Keys,
    options: EtcdOptions,
    leader: Arc<watch::Sender<bool>>,
    lease_tx: Arc<watch::Sender<Option<i64>>>,
    mut stop: watch::Receiver<bool>,
) {
    let Clients { timed: client, patient } = clients;
    let mut wait = RETRY_MIN;
    // Sessions that ended in a row, without a lease held since: logged once, and once more
    // when a lease is held again.
    let mut ended = Streak::default();
    loop {
        let held = tokio::select! {
            _ = stopped(&mut stop) => {
                // Leaving: give the lead up at once rather than after the lease's TTL.
                let lease = *lease_tx.borrow();
                if let Some(lease) = lease {
                    let _ = client.clone().lease_revoke(lease).await;
                }
                let _ = leader.send(false);
                return;
            }
            held = hold_lease(&client, &patient, &metrics, &keys, &options, (&leader, &lease_tx), &mut ended) => held,
        };
        metrics.record_etcd_session_restart();
        if leader.send_replace(false) {
            tracing::warn!(node = %options.node, "this node no longer leads ramps and the guard (its etcd session ended)");
        }
        lease_tx.send_replace(None);
        if let Err(reason) = held {
            if ended.failed() == 1 {
                tracing::warn!(
                    reason,
                    "the node's etcd session ended; starting another (logged again once one holds)"
                );
            } else {
                tracing::debug!(reason, "the node's etcd session ended again");
            }
        }
        tokio::select! {
            _ = stopped(&mut stop) => return,
            _ = tokio::time::sleep(wait) => {}
        }
        wait = (wait * 2).min(RETRY_MAX);
    }
}

/// Grants a lease, keeps it alive, and campaigns with it; returns when the lease is lost.
pub(super) async fn hold_lease(
    client: &Client,
    patient: &Client,
    metrics: &Metrics,
    keys: &Keys,
    options: &EtcdOptions,
    (leader, lease_tx): (&watch::Sender<bool>, &watch::Sender<Option<i64>>),
    ended: &mut Streak,
) -> Result<(), String> {
    let mut client = client.clone();
    let ttl = options.lease_ttl.max(2);
    // A grant sent to a member that is down fails at once: the next attempt goes to
    // another (a grant repeated after a lost answer only leaves a lease to expire).
    let lease = retry(metrics, EtcdOp::Lease, || {
        let mut client = client.clone();
        async move { client.lease_grant(ttl, None).await }
    })
    .await
    .map_err(|e| e.to_string())?
    .id();
    metrics.record_etcd_lease_grant();
    lease_tx.send_replace(Some(lease));
    // The keep-alive stream, like the grant, may first be sent to a member that is down.
    let (mut keeper, mut answers) = retry(metrics, EtcdOp::Lease, || {
        let mut client = client.clone();
        async move { client.lease_keep_alive(lease).await }
    })
    .await
    .map_err(|e| e.to_string())?;
    let keep_alive = async move {
        let every = Duration::from_millis((ttl as u64 * 1000) / 3);
        loop {
            keeper.keep_alive().await.map_err(|e| e.to_string())?;
            match tokio::time::timeout(every, answers.message()).await {
                Ok(Ok(Some(answer))) if answer.ttl() > 0 => {
                    // The session holds once its lease is kept alive, not merely granted.
                    if let Some(ended) = ended.succeeded() {
                        tracing::info!(
                            sessions_ended = ended.failures,
                            without_lease_s = ended.lasted.as_secs(),
                            "the node's etcd session holds a lease again"
                        );
                    }
                }
                Ok(Ok(Some(_))) => return Err::<(), String>("the lease expired".into()),
                Ok(Ok(None)) => return Err("the keep-alive stream ended".into()),
                Ok(Err(err)) => return Err(err.to_string()),
                Err(_) => return Err("no keep-alive answer in time".into()),
            }
            tokio::time::sleep(every).await;
        }
    };
    // Campaigning blocks until this node leads: the patient client has no request timeout.
    let mut campaigner = patient.clone();
    let name = keys.election();
    let node = options.node.clone();
    let campaign = async move {
        // Blocks until this node leads; the lease keeps the lead, and losing it loses it.
        let mut attempt = 0;
        loop {
            match campaigner.campaign(name.clone(), node.clone(), lease).await {
                Ok(answer) => return Ok(answer),
                // It never reached a member (the balancer picked one that is down): another
                // attempt goes to another, rather than ending a session that holds.
                Err(err) if never_sent(&err) && attempt < 4 => {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(50 * attempt)).await;
                }
                Err(err) => return Err(err.to_string()),
            }
        }
    };
    tokio::pin!(keep_alive);
    tokio::select! {
        lost = &mut keep_alive => return lost,
        won = campaign => {
            won?;
            tracing::info!(node = %options.node, "this node leads ramps and the guard");
            let _ = leader.send(true);
        }
    }
    let lost = keep_alive.await;
    let _ = client.lease_revoke(lease).await;
    lost
}
