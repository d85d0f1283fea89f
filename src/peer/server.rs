//! The front of one hub-server connection as the rest of the broker sees it: its ids, its kind
//! and its bounded outbox of encoded service frames.
//!
//! **Backpressure, not drops, towards a hub server.** The outbox is a bounded channel; client
//! actors wait for room ([`ServerConnHandle::send`]), so a hub server that reads slowly slows the
//! reading of its own clients' sockets, like any TCP proxy. Producers that must not wait (the hub
//! actor, Acks) use [`ServerConnHandle::try_send_frame`], whose failure the caller counts in
//! `switchboard_server_outbox_full_total`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use tokio::sync::{Notify, mpsc};

use crate::id::{ConnectionId, ServerConnId};
use crate::protocol::service::{self, ConnectionType, Extensions, ServiceMessage};

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

#[derive(Debug)]
struct ServerShared {
    id: ServerConnId,
    server_id: String,
    connection_type: ConnectionType,
    tx: mpsc::Sender<Bytes>,
    close: Notify,
}

/// The server connection is gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the hub server connection is closed")]
pub struct ServerGone;

/// Cloneable front of one hub-server connection.
#[derive(Clone, Debug)]
pub struct ServerConnHandle(Arc<ServerShared>);

impl ServerConnHandle {
    /// Process-unique id of this connection.
    pub fn id(&self) -> ServerConnId {
        self.0.id
    }

    /// The app server's id (`X-ASRS-Server-Id`); several connections share it.
    pub fn server_id(&self) -> &str {
        &self.0.server_id
    }

    /// Default, OnDemand or Weak.
    pub fn connection_type(&self) -> ConnectionType {
        self.0.connection_type
    }

    /// Queue a message, waiting for room (backpressure).
    pub async fn send(&self, msg: &ServiceMessage) -> Result<(), ServerGone> {
        self.0
            .tx
            .send(service::encode(msg))
            .await
            .map_err(|_| ServerGone)
    }

    /// Queue a client's bytes as ConnectionData, waiting for room.
    pub async fn send_data(
        &self,
        connection_id: &ConnectionId,
        payload: Bytes,
    ) -> Result<(), ServerGone> {
        self.send(&ServiceMessage::ConnectionData {
            connection_id: connection_id.as_str().to_owned(),
            payload,
            extensions: Extensions::default(),
        })
        .await
    }

    /// Ask the connection to close (its clients are closed with it).
    pub fn close(&self) {
        self.0.close.notify_one();
    }

    /// A new connection of app server `server_id` and the receiving end of its outbox of encoded
    /// frames (`capacity` frames), which only the connection's own task reads.
    pub fn new(
        server_id: String,
        connection_type: ConnectionType,
        capacity: usize,
    ) -> (Self, mpsc::Receiver<Bytes>) {
        let (tx, rx) = mpsc::channel(capacity);
        let handle = Self(Arc::new(ServerShared {
            id: ServerConnId(NEXT_ID.fetch_add(1, Ordering::Relaxed)),
            server_id,
            connection_type,
            tx,
            close: Notify::new(),
        }));
        (handle, rx)
    }

    /// Resolves once [`close`](Self::close) was called (for the connection's own task).
    pub async fn close_requested(&self) {
        self.0.close.notified().await;
    }

    /// Queue an encoded frame without waiting.
    pub fn try_send_frame(&self, frame: Bytes) -> Result<(), ServerGone> {
        self.0.tx.try_send(frame).map_err(|_| ServerGone)
    }
}
