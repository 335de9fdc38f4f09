//! The graycast server: a real-time configuration center with gray releases.
//!
//! Map of the crate, by the path of a write and of a push:
//! - [`config`]: command-line flags, environment variables and the `--config` file.
//! - [`app`]: the actix-web app ([`build_app`]) and the lifecycle ([`run`]).
//! - [`state`]: the state handlers and sessions share, and who is calling
//!   ([`state::authorize`]).
//! - [`routes`]: REST handlers, one module per resource: HTTP in, calls and answers out.
//! - [`store`]: the durable revisioned store (redb, memory or etcd), its group-committing
//!   writer, the live cache and the feed of committed changes.
//! - [`push`]: the path of a change from the feed to each subscriber's socket (hub,
//!   encoding, queues, sessions, WebSocket and server-sent events).
//! - [`gray`]: the ramp scheduler and the guard of running gray releases.
//! - [`auth`]: access tokens, roles and namespace patterns.
//! - [`protect`]: browser-origin protection (Host allowlist, cross-origin refusal).
//! - [`error`]: the API error type, its row of the protocol's error table, its JSON body.
//! - [`request_id`]: each request's id; [`middleware`] puts it in the request's log span,
//!   its answer and its error body, and gives every error answer the JSON error body.
//! - [`metrics`]: counters, histograms and gauges, rendered for Prometheus.
//! - [`streak`]: a failure that repeats, logged when it starts and when it ends.
//! - [`reload`]: SIGHUP reloads of the token file and the TLS certificate.
//! - [`openapi`]: the generated OpenAPI document.
//!
//! A write travels: handler → [`store::Store::write`] → writer thread (batch, persist,
//! update cache) → feed → [`push::hub`] thread (encode once, queue per subscriber) →
//! [`push::session`] → socket.

pub mod app;
pub mod auth;
pub mod config;
pub mod error;
pub mod gray;
pub mod metrics;
pub mod middleware;
pub mod openapi;
pub mod policy;
pub mod protect;
pub mod push;
pub mod reload;
pub mod request_id;
pub mod requests;
pub mod routes;
pub mod schema;
pub mod state;
pub mod store;
pub mod streak;

pub use app::{build_app, run};
pub use config::{Config, LogFormat};
pub use state::AppState;
