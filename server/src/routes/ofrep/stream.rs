//! The event stream a bulk answer names (OFREP ADR 0008): server-sent events that tell a
//! provider to fetch its flags again, one after each commit in scope, at most one per
//! 100 ms, `id` the revision (so `Last-Event-ID` finds out what was missed). A browser's
//! `EventSource` sends no headers: the URL carries a short-lived ticket (`ticket.rs`).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use graycast_protocol::Revision;

use super::ticket::{self, TICKET_LIFETIME_SECS};
use super::{base_namespace, caller, query};
use crate::auth::{Access, Tokens};
use crate::error::ApiError;
use crate::state::{AppState, Caller};

/// Seconds a provider keeps the stream open while its page is hidden.
pub const INACTIVITY_DELAY_SECS: u64 = 120;
/// Events come at most this often; changes in between are told by the next one.
const COALESCE: Duration = Duration::from_millis(100);
/// A comment line this often keeps proxies from closing an idle stream.
const HEARTBEAT: Duration = Duration::from_secs(15);

/// Streams open now, against the subscriber limit.
static OPEN: AtomicUsize = AtomicUsize::new(0);

/// The stream's URI for a bulk answer: under the base, with a fresh ticket when the server
/// has tokens. `since` is the revision the answer is as of: a change after it and before
/// the stream connects is told at once.
pub fn url(state: &AppState, base: Option<&str>, secret: Option<&str>, since: Revision) -> String {
    let path = match base {
        Some(namespace) => format!("/ns/{namespace}/ofrep/v1/events?since={since}"),
        None => format!("/ofrep/v1/events?since={since}"),
    };
    match (state.tokens().as_deref(), secret) {
        (Some(_), Some(secret)) => {
            let expires = chrono::Utc::now().timestamp() + TICKET_LIFETIME_SECS;
            format!("{path}&ticket={}", ticket::issue(&Tokens::hash(secret), expires))
        }
        _ => path,
    }
}

/// Counts an open stream until dropped.
struct Open;

impl Drop for Open {
    fn drop(&mut self) {
        OPEN.fetch_sub(1, Ordering::AcqRel);
    }
}

/// What a stream needs between events.
struct Streaming {
    state: web::Data<AppState>,
    caller: Caller,
    base: Option<String>,
    /// The last revision told.
    told: Revision,
    told_at: Instant,
    beat_at: Instant,
    started: bool,
    shutdown: tokio::sync::watch::Receiver<bool>,
    _open: Open,
}

impl Streaming {
    /// The revision of the last change in scope this node applied.
    fn changed(&self) -> Revision {
        let store = &self.state.store;
        match (&self.base, &self.caller) {
            (Some(namespace), _) => store.changed_in(std::slice::from_ref(namespace)),
            (None, Caller::Open) => store.revision(),
            (None, Caller::Token(p)) if p.role == crate::auth::Role::Admin => store.revision(),
            (None, _) => {
                let (_, all) = store.namespaces();
                let readable: Vec<String> = all
                    .into_iter()
                    .map(|(ns, _)| ns)
                    .filter(|ns| self.caller.may(Access::Read, Some(ns)).is_ok())
                    .collect();
                store.changed_in(&readable)
            }
        }
    }

    /// The next piece of the stream: an event, a heartbeat, or the end.
    async fn next(mut self) -> Option<(Result<web::Bytes, actix_web::Error>, Streaming)> {
        if !self.started {
            self.started = true;
            // A stream resumed behind the current state is told at once.
            let behind = self.changed() > self.told;
            let mut first = String::from("retry: 1000\n\n");
            if behind {
                self.told = self.changed();
                self.told_at = Instant::now();
                first.push_str(&event(self.told));
            }
            return Some((Ok(web::Bytes::from(first)), self));
        }
        loop {
            let changed = self.changed();
            if changed > self.told {
                let wait = (self.told_at + COALESCE).saturating_duration_since(Instant::now());
                tokio::time::sleep(wait).await;
                self.told = self.changed().max(changed);
                self.told_at = Instant::now();
                self.beat_at = self.told_at;
                let piece = web::Bytes::from(event(self.told));
                return Some((Ok(piece), self));
            }
            let applied = self.state.store.revision();
            let until_beat = (self.beat_at + HEARTBEAT).saturating_duration_since(Instant::now());
            tokio::select! {
                _ = self.shutdown.wait_for(|stop| *stop) => return None,
                _ = self.state.store.wait_applied(applied + 1, until_beat) => {}
            }
            if self.beat_at.elapsed() >= HEARTBEAT {
                self.beat_at = Instant::now();
                return Some((Ok(web::Bytes::from_static(b": keep-alive\n\n")), self));
            }
        }
    }
}

fn event(revision: Revision) -> String {
    format!(
        "id: {revision}\nevent: message\ndata: {{\"type\":\"refetchEvaluation\",\"lastModified\":{revision}}}\n\n"
    )
}

/// `GET .../events[?ticket=...]`: the stream of refetch events.
pub async fn events(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let base = base_namespace(&req);
    let ticket = query(&req, "ticket");
    let tokens = state.tokens();
    let caller = match (ticket.as_deref(), tokens.as_deref()) {
        (Some(ticket), Some(tokens)) => {
            let principal = ticket::check(tokens, ticket, chrono::Utc::now().timestamp())
                .ok_or_else(|| {
                    ApiError::Unauthorized(
                        "the stream's ticket is not valid or has expired; fetch the flags again \
                         for a fresh one"
                            .into(),
                    )
                })?;
            let caller = Caller::Token(principal);
            if let Some(namespace) = &base {
                caller.may(Access::Read, Some(namespace))?;
            }
            caller
        }
        _ => caller(&state, &req, base.as_deref())?,
    };
    if OPEN.fetch_add(1, Ordering::AcqRel) >= state.subscriber_limit {
        OPEN.fetch_sub(1, Ordering::AcqRel);
        return Err(ApiError::Unavailable("too many open event streams; try again later".into()));
    }
    let open = Open;
    // Where the client is: the last event it got, else the revision of the answer that
    // named the stream.
    let last_event = req
        .headers()
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<Revision>().ok())
        .or_else(|| query(&req, "since")?.parse().ok());
    let mut streaming = Streaming {
        state: state.clone(),
        caller,
        base,
        told: 0,
        told_at: Instant::now() - COALESCE,
        beat_at: Instant::now(),
        started: false,
        shutdown: state.shutdown.clone(),
        _open: open,
    };
    // Without either, the provider fetches on connecting: nothing to tell yet.
    streaming.told = last_event.unwrap_or_else(|| streaming.changed());
    let body = futures_util::stream::unfold(streaming, Streaming::next);
    let response = HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "text/event-stream"))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(body);
    Ok(response)
}
