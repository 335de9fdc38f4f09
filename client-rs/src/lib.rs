//! Rust SDK for [graycast](https://example.invalid/graycast), a real-time configuration
//! center with gray releases.
//!
//! A [`Client`] keeps a local cache of its namespaces, fed over WebSocket by the server's
//! push: every change arrives once, in revision order, and the client resumes from the
//! last revision it applied after any disconnect. Reads ([`Client::get`],
//! [`Client::list`]) never touch the network, so the application keeps running on the
//! last known configuration while the server is down; with a cache file, even a fresh
//! start does. Writers use the REST helpers ([`Client::put`], [`Client::delete`], ...).
//!
//! ```no_run
//! use std::time::Duration;
//! use futures_util::StreamExt;
//! use graycast_client::{Client, Expect, Filter};
//!
//! # async fn demo() -> Result<(), graycast_client::Error> {
//! let client = Client::builder()
//!     .endpoint("http://127.0.0.1:8080")
//!     .namespace("payments")
//!     .label("region", "eu-west")
//!     .cache_file("/var/lib/checkout/graycast-cache.json")
//!     .build()?;
//!
//! // Serve the cache file at once if the server is down; otherwise wait for the first sync.
//! if let Err(err) = client.wait_synced(Duration::from_secs(5)).await {
//!     eprintln!("serving cached configuration ({err}); status: {:?}", client.status());
//! }
//!
//! // Reads hit the local cache.
//! let timeout_ms: u64 = client.get("payments", "timeout_ms")?.unwrap_or(250);
//! println!("timeout {timeout_ms} ms");
//!
//! // Writes go to the server; the change comes back through the push like any other.
//! client.put("payments", "timeout_ms", &300, Expect::Any).await?;
//!
//! // React to changes.
//! let mut changes = Box::pin(client.changes(Filter::key("payments", "timeout_ms")));
//! while let Some(change) = changes.next().await {
//!     println!("revision {}: {:?}", change.revision, change.entry.map(|e| e.value.clone()));
//! }
//! # Ok(())
//! # }
//! ```
//!
//! Gray releases are evaluated locally, with the server's exact algorithm:
//!
//! ```no_run
//! # fn demo(client: &graycast_client::Client) -> Result<(), graycast_client::Error> {
//! use graycast_client::{Context, Variant};
//! let ctx = Context::subject("user-42").attr("region", "eu-west");
//! if let Some(eval) = client.evaluate("payments", "timeout_ms", &ctx) {
//!     println!("{} gets {} ({:?}, bucket {:?})", "user-42", eval.value(), eval.reason, eval.bucket);
//!     let _gray = eval.variant == Variant::Gray;
//! }
//! // Without a subject, the client id is the subject: instance-level gray.
//! let timeout: Option<u64> = client.evaluate_as("payments", "timeout_ms", &Context::instance())?;
//! # Ok(()) }
//! ```
//!
//! Errors say whether they are temporary ([`Error::is_temporary`]): on a temporary error
//! keep serving the cache and try again; a permanent one needs a change on your side.
//!
//! Map of the crate: `client` (the handle, builder and cache reads), `shared` (what the
//! handles and the push loop share: settings, status, the state behind a handle), `push`
//! (the WebSocket and server-sent events loop), `cache` (the cache and its file), `events`
//! (change notifications), `rest` (REST helpers), `error`.

#![warn(missing_docs)]

mod cache;
mod client;
mod error;
mod events;
mod gray;
#[cfg(feature = "openfeature")]
pub mod openfeature;
mod push;
mod requests;
mod rest;
mod shared;
#[cfg(feature = "tls")]
mod tls;
mod typed;

pub use client::{
    Client, ClientBuilder, DEFAULT_BACKOFF_MAX, DEFAULT_BACKOFF_MIN, DEFAULT_TIMEOUT,
};
pub use error::Error;
pub use events::{ChangeEvent, Filter};
pub use gray::{Context, Evaluation};
pub use graycast_protocol::gray::{
    GrayPatch, GrayRequest, GrayStatus, GuardCounts, ReleaseDecision,
};
pub use graycast_protocol::rest::{
    ChangeItem, ChangeList, ConfigList, ExportDocument, ImportReport, KeyRef, NamespaceDescribed,
    NamespaceList, NamespaceSummary, WhoAmI,
};
pub use graycast_protocol::rollout::{Reason, Variant};
pub use graycast_protocol::{Entry, Gray, HistoryItem, Op, Revision};
pub use graycast_protocol::{Guard, Rule, RuleOp, Step};
pub use rest::Expect;
pub use shared::{Status, Transport};
pub use typed::Typed;
