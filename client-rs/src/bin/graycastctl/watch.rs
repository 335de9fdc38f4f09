//! `graycastctl watch`: the current entries, then every change as it arrives.

use std::time::Duration;

use futures_util::{FutureExt, StreamExt};
use graycast_client::{Client, ClientBuilder, Error, Filter};

use crate::output::{print_change, print_json, print_state};
use crate::Failure;

/// Prints the entries of `namespaces`, then their changes; gives up when the first sync
/// takes longer than `first_sync`.
pub async fn watch(
    builder: ClientBuilder,
    namespaces: Vec<String>,
    json: bool,
    first_sync: Duration,
) -> Result<(), Failure> {
    let client = builder.namespaces(namespaces.iter().cloned()).build()?;
    // Subscribe to the events before the first sync, so the snapshot's entries print.
    let mut changes = std::pin::pin!(client.changes(Filter::all()));
    let mut interrupted = std::pin::pin!(tokio::signal::ctrl_c());
    let first = wait_first_sync(&client, first_sync);
    tokio::pin!(first);
    // Print what arrives while waiting for the first sync: the snapshot's entries, marked
    // as the state, not as changes (an entry's last change may have been a rollback or an
    // abort).
    loop {
        tokio::select! {
            change = changes.next() => match change {
                Some(change) => print_state(&change, json),
                None => return Ok(()),
            },
            synced = &mut first => {
                synced?;
                // The snapshot's entries were sent before the sync was told: print the
                // rest of them before saying where the state ends.
                while let Some(Some(change)) = changes.next().now_or_never() {
                    print_state(&change, json);
                }
                break;
            }
            _ = &mut interrupted => return Ok(()),
        }
    }
    if json {
        // Where the state ends and the changes begin.
        print_json(&serde_json::json!({ "type": "synced", "revision": client.revision() }));
    }
    eprintln!("graycastctl: watching {} at revision {}", namespaces.join(", "), client.revision());
    let mut status = client.status_changes();
    let mut was_synced = true;
    loop {
        tokio::select! {
            change = changes.next() => match change {
                Some(change) => print_change(&change, json),
                None => return Ok(()),
            },
            changed = status.changed() => {
                if changed.is_err() {
                    return Ok(());
                }
                let now = status.borrow_and_update().clone();
                // A refusal (the token was revoked, the namespace forbidden) ends the watch.
                if let Some(failure) = now.failure {
                    return Err(Failure::Api(failure));
                }
                // Connection changes go to stderr, so that stdout stays the change stream.
                if was_synced && !now.synced {
                    eprintln!(
                        "graycastctl: connection lost ({}); reconnecting",
                        now.last_error.unwrap_or_default()
                    );
                } else if !was_synced && now.synced {
                    eprintln!("graycastctl: reconnected at revision {}", now.revision);
                }
                was_synced = now.synced;
            }
            _ = &mut interrupted => return Ok(()),
        }
    }
}

/// Waits for the first sync: a refusal or an unreachable server ends the watch.
async fn wait_first_sync(client: &Client, limit: Duration) -> Result<(), Failure> {
    match client.wait_synced(limit).await {
        Ok(()) => Ok(()),
        Err(Error::Timeout(_)) => {
            let status = client.status();
            let cause = status.last_error.unwrap_or_else(|| "no answer".into());
            Err(Failure::Api(Error::Transport(format!(
                "no connection within {} s: {cause}",
                limit.as_secs()
            ))))
        }
        Err(err) => Err(Failure::Api(err)),
    }
}
