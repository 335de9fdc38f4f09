//! Wire types and name validation shared by the graycast server and its clients.
//!
//! This crate is the executable form of the public contract: every
//! JSON shape that crosses the network is defined here once, so the server, the
//! Rust SDK and the tests cannot drift apart. It performs no I/O and has no async.
//!
//! Map of the crate:
//! - [`name`]: validation of namespace and key names.
//! - [`entry`]: the data model: [`Entry`], the gray section, history items.
//! - [`rest`]: request and response bodies of the REST API, and the error body.
//! - [`ws`]: the messages of the WebSocket push protocol in both directions.
//! - [`rollout`]: the rollout evaluation every implementation shares.
//! - [`gray`]: gray release inputs (start, patch, report) and their validation.
//! - [`value`]: the limits every value obeys (nesting depth, compact size).
//! - [`error`]: the one table of error codes, HTTP statuses and WebSocket close codes.

#![warn(missing_docs)]

pub mod entry;
pub mod error;
pub mod gray;
pub mod name;
pub mod rest;
pub mod rollout;
pub mod value;
pub mod ws;

pub use entry::{Entry, Gray, Guard, HistoryItem, Op, Rule, RuleOp, Step};
pub use error::{ErrorCode, ErrorKind, ERRORS};
pub use name::{validate_name, NameError};
pub use rest::{ErrorBody, ErrorDetail};
pub use rollout::{evaluate, Decision, Reason, Variant};
pub use ws::{ClientHello, ClientMessage, ServerMessage};

/// A revision of the whole store: one counter for every change of every key,
/// strictly increasing, never reused.
pub type Revision = u64;
