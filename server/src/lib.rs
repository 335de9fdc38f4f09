//! The graycast server: a real-time configuration center with gray releases.
//!
//! Map of the crate:
//! - [`config`]: command-line flags and environment variables.
//! - [`app`]: shared state, the actix-web app ([`build_app`]) and the lifecycle ([`run`]).
//! - [`store`]: the durable revisioned store (redb or memory), its group-committing
//!   writer and the live cache.
//! - [`hub`]: fan-out of committed changes to subscribers; registry of clients.
//! - [`session`]: one WebSocket subscriber's loop.
//! - [`outbound`]: a subscriber connection's output queue, bounded in bytes.
//! - [`frame`]: WebSocket frames, read with their size checked from the header.
//! - [`scheduler`]: moves gray release ramps on when their step is due.
//! - [`guard`]: outcome counts of gray releases and the automatic abort.
//! - [`routes`]: REST handlers, one module per resource.
//! - [`auth`]: access tokens, roles and namespace patterns (SPEC §7).
//! - [`protect`]: browser-origin protection (Host allowlist, cross-origin refusal).
//! - [`error`]: the API error type and its JSON rendering.
//! - [`request_id`]: each request's id, in its log span, its answer and its error body.
//! - [`metrics`]: counters, histograms and gauges, rendered for Prometheus.
//! - [`openapi`]: the generated OpenAPI document.
//!
//! A write travels: handler → [`store::Store::write`] → writer thread (batch, persist,
//! update cache) → feed → hub thread (serialize once, queue per subscriber) → session.

pub mod app;
pub mod auth;
pub mod config;
pub mod error;
pub mod frame;
pub mod guard;
pub mod hub;
pub mod metrics;
pub mod openapi;
pub mod outbound;
pub mod protect;
pub mod request_id;
pub mod routes;
pub mod scheduler;
pub mod selection;
pub mod session;
pub mod store;

pub use app::{build_app, run, AppState};
pub use config::{Config, LogFormat};
