//! The front of one hub-server connection as the rest of the broker sees it: its ids, its kind
//! and its bounded outbox of encoded service frames.
//!
//! **Backpressure, not drops, towards a hub server.** The outbox is bounded in frames and in
//! bytes (`limits.server_outbox_max_bytes`); client actors wait for room
//! ([`ServerConnHandle::send`], counted in `switchboard_server_outbox_waits_total` when they
//! must), so a hub server that reads slowly slows the reading of its own clients' sockets, like
//! any TCP proxy. Producers that must not wait (the hub actor, Acks) use
//! [`ServerConnHandle::try_send_frame`], whose failure the caller counts in
//! `switchboard_server_outbox_full_total`. A frame larger than the byte bound waits for an empty
//! outbox.
//!
//! The bytes are a semaphore's permits: a send takes them (lock-free unless it has to wait), the
//! connection's task gives a whole burst's back at once after writing it ([`ServerOutbox`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use tokio::sync::{Notify, Semaphore, SemaphorePermit, TryAcquireError, mpsc};

use crate::id::{ConnectionId, ServerConnId};
use crate::protocol::service::{self, ConnectionType, Extensions, ServiceMessage};
use crate::telemetry::Metrics;

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

#[derive(Debug)]
struct ServerShared {
    id: ServerConnId,
    server_id: String,
    connection_type: ConnectionType,
    tx: mpsc::Sender<Bytes>,
    close: Notify,
    /// Free bytes of the outbox, as permits.
    room: Semaphore,
    /// The outbox's byte bound (at most `u32::MAX`).
    max_bytes: usize,
    metrics: Arc<Metrics>,
}

impl ServerShared {
    /// The permits a frame of `len` bytes takes: its length, or the whole bound for a larger one.
    fn permits(&self, len: usize) -> u32 {
        u32::try_from(len.min(self.max_bytes)).unwrap_or(u32::MAX)
    }
}

/// The bounds of a hub-server connection's outbox.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServerOutboxBounds {
    /// Frames it holds.
    pub frames: usize,
    /// Bytes it holds (clamped to 1..=`u32::MAX`).
    pub bytes: usize,
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
        let frame = service::encode(msg);
        let n = self.0.permits(frame.len());
        let permit = match self.0.room.try_acquire_many(n) {
            Ok(permit) => permit,
            Err(TryAcquireError::NoPermits) => {
                Metrics::inc(&self.0.metrics.server_outbox_waits);
                self.0.room.acquire_many(n).await.map_err(|_| ServerGone)?
            }
            Err(TryAcquireError::Closed) => return Err(ServerGone),
        };
        self.0.tx.send(frame).await.map_err(|_| ServerGone)?;
        // Given back by the connection's task once the frame is written.
        permit.forget();
        Ok(())
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
    /// frames (bounded by `bounds`), which only the connection's own task reads.
    pub fn new(
        server_id: String,
        connection_type: ConnectionType,
        bounds: ServerOutboxBounds,
        metrics: Arc<Metrics>,
    ) -> (Self, ServerOutbox) {
        let (tx, rx) = mpsc::channel(bounds.frames.max(1));
        let max_bytes = bounds.bytes.clamp(1, u32::MAX as usize);
        let shared = Arc::new(ServerShared {
            id: ServerConnId(NEXT_ID.fetch_add(1, Ordering::Relaxed)),
            server_id,
            connection_type,
            tx,
            close: Notify::new(),
            room: Semaphore::new(max_bytes),
            max_bytes,
            metrics,
        });
        let outbox = ServerOutbox {
            rx,
            shared: shared.clone(),
            taken: 0,
        };
        (Self(shared), outbox)
    }

    /// Resolves once [`close`](Self::close) was called (for the connection's own task).
    pub async fn close_requested(&self) {
        self.0.close.notified().await;
    }

    /// Queue an encoded frame without waiting; `Err` when the outbox is full or closed.
    pub fn try_send_frame(&self, frame: Bytes) -> Result<(), ServerGone> {
        let permit: SemaphorePermit<'_> = self
            .0
            .room
            .try_acquire_many(self.0.permits(frame.len()))
            .map_err(|_| ServerGone)?;
        // On failure the permit goes back as it drops.
        self.0.tx.try_send(frame).map_err(|_| ServerGone)?;
        permit.forget();
        Ok(())
    }
}

/// The receiving end of a hub-server connection's outbox, read by the connection's own task.
/// Dropping it closes the outbox: senders, waiting ones included, get [`ServerGone`].
#[derive(Debug)]
pub struct ServerOutbox {
    rx: mpsc::Receiver<Bytes>,
    shared: Arc<ServerShared>,
    /// Permits of the frames taken and not yet [written](Self::written).
    taken: usize,
}

impl ServerOutbox {
    /// The next frame, waiting for one; `None` once every sender is gone.
    pub async fn recv(&mut self) -> Option<Bytes> {
        let frame = self.rx.recv().await?;
        self.taken += self.shared.permits(frame.len()) as usize;
        Some(frame)
    }

    /// The next frame if one is queued.
    pub fn try_recv(&mut self) -> Option<Bytes> {
        let frame = self.rx.try_recv().ok()?;
        self.taken += self.shared.permits(frame.len()) as usize;
        Some(frame)
    }

    /// The frames taken so far were written: their bytes are room again (once per burst).
    pub fn written(&mut self) {
        if self.taken > 0 {
            self.shared.room.add_permits(self.taken);
            self.taken = 0;
        }
    }
}

impl Drop for ServerOutbox {
    fn drop(&mut self) {
        self.shared.room.close();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn data(len: usize) -> ServiceMessage {
        ServiceMessage::ConnectionData {
            connection_id: "c".into(),
            payload: Bytes::from(vec![b'x'; len]),
            extensions: Extensions::default(),
        }
    }

    #[tokio::test]
    async fn the_outbox_is_bounded_in_bytes_and_senders_wait_for_room() {
        let metrics = Arc::new(Metrics::default());
        let bounds = ServerOutboxBounds {
            frames: 1024,
            bytes: 1000,
        };
        let (server, mut outbox) =
            ServerConnHandle::new("s".into(), ConnectionType::Default, bounds, metrics.clone());
        // Two frames of ~600 bytes do not fit together: the second waits (and is counted),
        // a frame that must not wait is refused.
        server.send(&data(600)).await.unwrap();
        let s2 = server.clone();
        let waiting = tokio::spawn(async move { s2.send(&data(600)).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiting.is_finished());
        assert_eq!(metrics.server_outbox_waits.load(Ordering::Relaxed), 1);
        assert_eq!(
            server.try_send_frame(service::encode(&data(600))),
            Err(ServerGone)
        );
        // Taking the frame is not enough: its bytes are room again once it is written.
        assert!(outbox.recv().await.unwrap().len() > 600);
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiting.is_finished());
        outbox.written();
        waiting.await.unwrap().unwrap();
        // A frame larger than the bound waits for an empty outbox, then goes alone.
        let s2 = server.clone();
        let big = tokio::spawn(async move { s2.send(&data(5000)).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!big.is_finished());
        assert!(outbox.try_recv().is_some());
        outbox.written();
        big.await.unwrap().unwrap();
        assert!(server.try_send_frame(Bytes::from_static(b"x")).is_err());
        // The connection's task going away fails every sender, waiting ones too.
        let s2 = server.clone();
        let waiting = tokio::spawn(async move { s2.send(&data(10)).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(outbox);
        assert_eq!(waiting.await.unwrap(), Err(ServerGone));
        assert_eq!(server.send(&data(1)).await, Err(ServerGone));
    }
}
