//! This node's lease (for its ephemeral keys) and its campaign to lead (ramps and the
//! guard run on the leader only).

use std::sync::Arc;
use std::time::Duration;

use etcd_client::Client;
use tokio::sync::watch;

use super::keys::Keys;
use super::watcher::stopped;
use super::{EtcdOptions, RETRY_MAX, RETRY_MIN};
use crate::metrics::Metrics;

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
            held = hold_lease(&client, &patient, &metrics, &keys, &options, &leader, &lease_tx) => held,
        };
        metrics.record_etcd_session_restart();
        let _ = leader.send(false);
        lease_tx.send_replace(None);
        if let Err(reason) = held {
            tracing::warn!(reason, "the node's etcd session ended; starting another");
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
    leader: &watch::Sender<bool>,
    lease_tx: &watch::Sender<Option<i64>>,
) -> Result<(), String> {
    let mut client = client.clone();
    let ttl = options.lease_ttl.max(2);
    let lease = client.lease_grant(ttl, None).await.map_err(|e| e.to_string())?.id();
    metrics.record_etcd_lease_grant();
    lease_tx.send_replace(Some(lease));
    let (mut keeper, mut answers) =
        client.lease_keep_alive(lease).await.map_err(|e| e.to_string())?;
    let keep_alive = async move {
        let every = Duration::from_millis((ttl as u64 * 1000) / 3);
        loop {
            keeper.keep_alive().await.map_err(|e| e.to_string())?;
            match tokio::time::timeout(every, answers.message()).await {
                Ok(Ok(Some(answer))) if answer.ttl() > 0 => {}
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
        campaigner.campaign(name, node, lease).await.map_err(|e| e.to_string())
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
