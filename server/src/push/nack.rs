//! Values clients' applications rejected (`nack`, on the WebSocket or `POST /v1/nacks`):
//! counted per key and revision for `/v1/clients`, and for a running release's guard.

use graycast_protocol::gray::ReportRequest;
use graycast_protocol::rollout::Variant;
use graycast_protocol::ws::Nack;

use crate::error::{check_names, ApiError};
use crate::gray::guard;
use crate::state::AppState;

/// Checks and records a nack; with `reports` (the caller may report), a gray release's
/// guard counts it as an error of the rejected variant.
pub fn record(state: &AppState, nack: &Nack, client: &str, reports: bool) -> Result<(), ApiError> {
    // Names inside the message are part of it: an invalid one makes it invalid (422).
    check_names(&nack.namespace, Some(&nack.key))
        .map_err(|e| ApiError::InvalidValue(format!("a nack of {e}")))?;
    if nack.error.len() > MAX_NACK_ERROR_BYTES || client.is_empty() || client.len() > 256 {
        return Err(ApiError::InvalidValue(format!(
            "a nack's error is at most {MAX_NACK_ERROR_BYTES} bytes and its client 1 to 256"
        )));
    }
    let first =
        state.hub.clients.reject(&nack.namespace, &nack.key, nack.revision, client, &nack.error);
    let Some(entry) = state.store.get(&nack.namespace, &nack.key) else { return Ok(()) };
    let Some(gray) =
        entry.gray.as_ref().filter(|_| first && reports && entry.revision == nack.revision)
    else {
        return Ok(());
    };
    let variant = nack.variant.unwrap_or(Variant::Gray);
    let report = ReportRequest { variant, ok: 0, errors: 1, release: Some(gray.started_at) };
    let (store, guards) = (state.store.clone(), state.guards.clone());
    let (namespace, key, reporter) =
        (nack.namespace.clone(), nack.key.clone(), format!("nack from {client}"));
    actix_web::rt::spawn(async move {
        if let Err(err) = guard::report(&store, &guards, &namespace, &key, &report, &reporter).await
        {
            tracing::warn!(namespace, key, error = %err, "cannot count a nack for the guard");
        }
    });
    Ok(())
}

/// Most bytes of a nack's reason.
pub const MAX_NACK_ERROR_BYTES: usize = 1024;
