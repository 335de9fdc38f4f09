//! The push wing: the path of a committed change from the store's feed to each
//! subscriber's socket.
//!
//! - [`hub`]: fed by the store on a thread of its own; appends each change, encoded once,
//!   to the queue of every subscriber of its namespace; keeps the recent changes for
//!   replays and the last snapshot of each subscription for sharing.
//! - [`wire`]: the one place where push messages are encoded (change, snapshot, progress,
//!   error).
//! - [`frame`]: WebSocket frames, written and read (the size checked on the header).
//! - [`outbound`]: one connection's output queue, bounded in bytes, with the catch-up
//!   ordering rules.
//! - [`selection`]: what a subscription covers (namespaces, and for `*` what its token
//!   may read).
//! - [`clients`]: the connection count against its limit, and the clients `/v1/clients`
//!   lists.
//! - [`session`]: one subscriber connection: subscribe, catch up (replay or snapshot), live
//!   changes, heartbeat and progress, acks and reports.
//! - [`socket`]: the sockets sessions run on (a plain TCP one is shared with the hub,
//!   which writes into it while nothing is queued).
//! - [`websocket`]: the upgrade of `/v1/watch`, on the raw connection.
//! - [`sse`]: the same session as server-sent events (`/v1/events`).

pub mod clients;
pub mod frame;
pub mod hub;
pub mod nack;
pub mod outbound;
pub mod selection;
pub mod session;
pub mod socket;
pub mod sse;
pub mod websocket;
pub mod wire;
