//! The connection actors: one task per client connection (WebSocket, Server-Sent Events or
//! long polling) and one per hub-server connection, with what they need around them — the
//! process-wide index of client connections, negotiated connections waiting for their transport,
//! the transports, the stateful-reconnect replay buffer and the per-connection upstream worker.
//!
//! What other parts of the broker hold of a connection (its handle and outbox) lives in
//! [`crate::peer`].

pub(crate) mod client;
pub(crate) mod env;
pub(crate) mod index;
pub(crate) mod owner;
pub(crate) mod pending;
pub(crate) mod pipe;
pub(crate) mod server;
pub(crate) mod socket;
pub(crate) mod sse;
pub(crate) mod stateful;
pub(crate) mod stream;
pub(crate) mod tenant;
pub(crate) mod transport;
pub(crate) mod upstream;
pub(crate) mod ws;

#[cfg(test)]
mod tests;
