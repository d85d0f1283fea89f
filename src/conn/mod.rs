//! The connection actors: one task per client connection (WebSocket, Server-Sent Events or
//! long polling) and one per hub-server connection, with what they need around them — the
//! process-wide index of client connections, negotiated connections waiting for their transport,
//! the transports, the stateful-reconnect replay buffer and the per-connection upstream worker.
//!
//! What other parts of the broker hold of a connection (its handle and outbox) lives in
//! [`crate::peer`].

pub mod client;
pub mod env;
pub mod index;
pub mod pending;
pub mod server;
pub mod stateful;
pub mod transport;
pub mod upstream;
