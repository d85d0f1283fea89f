//! Connections as the rest of the broker sees them: the fronts that hubs, the REST API and the
//! other connection actors hold, below both the hub and the connection actors (so neither imports
//! the other's internals).
//!
//! A [`ConnHandle`] is a client connection: its id, user, protocol and [`Outbox`]. The hub pushes
//! already encoded frames into the outbox without waiting; only the connection's own task drains
//! it into the socket. A [`ServerConnHandle`] is a hub-server connection and its bounded outbox
//! of service frames.

pub mod outbox;
pub mod server;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

pub use self::outbox::{CloseRequest, DirectWrite, Outbox, PushError, Pushed, Written};
pub use self::server::{ServerConnHandle, ServerGone, ServerOutbox, ServerOutboxBounds};
use crate::close::CloseReason;
use crate::id::{ConnectionId, TransportKind, UserId};
use crate::protocol::HubProtocol;

/// The shared part of a connection, visible to hubs and the REST API.
#[derive(Debug)]
struct ConnShared {
    id: ConnectionId,
    user: Option<UserId>,
    protocol: HubProtocol,
    outbox: Outbox,
    ready: AtomicBool,
    server: Option<ServerConnHandle>,
    /// The transport, for the admin inventory (`None` for handles made without one, in tests).
    /// With `connected_at`, 5 bytes that sit in the struct's padding: the allocation does not
    /// grow (see the `inventory_fields_fit_in_padding` test).
    transport: Option<TransportKind>,
    /// When the handle was made (the client was admitted), in seconds since the Unix epoch.
    connected_at: u32,
    /// Client invocations (server → client with a result) not answered yet:
    /// (invocation id, caller server id). Empty, and unallocated, for almost every client.
    pending_invocations: parking_lot::Mutex<Vec<(String, String)>>,
}

/// A cloneable reference to one client connection.
#[derive(Clone, Debug)]
pub struct ConnHandle(Arc<ConnShared>);

impl ConnHandle {
    /// A handle for a connection with the given outbox bounds.
    pub fn new(
        id: ConnectionId,
        user: Option<UserId>,
        protocol: HubProtocol,
        outbox: Outbox,
    ) -> Self {
        Self(Arc::new(ConnShared {
            id,
            user,
            protocol,
            outbox,
            ready: AtomicBool::new(true),
            server: None,
            transport: None,
            connected_at: unix_secs(),
            pending_invocations: parking_lot::Mutex::new(Vec::new()),
        }))
    }

    /// A handle for a client routed through hub-server connection `server`. It is not
    /// [ready](Self::is_ready) until the server's handshake answer has been queued for it.
    pub fn routed(
        id: ConnectionId,
        user: Option<UserId>,
        protocol: HubProtocol,
        outbox: Outbox,
        server: ServerConnHandle,
    ) -> Self {
        Self(Arc::new(ConnShared {
            id,
            user,
            protocol,
            outbox,
            ready: AtomicBool::new(false),
            server: Some(server),
            transport: None,
            connected_at: unix_secs(),
            pending_invocations: parking_lot::Mutex::new(Vec::new()),
        }))
    }

    /// The same handle, recording its transport. Only for a handle just made (not cloned yet).
    #[must_use]
    pub(crate) fn with_transport(mut self, transport: Option<TransportKind>) -> Self {
        if let Some(shared) = Arc::get_mut(&mut self.0) {
            shared.transport = transport;
        } else {
            debug_assert!(false, "with_transport on a shared handle");
        }
        self
    }

    /// The transport the client connected with, if recorded.
    pub fn transport(&self) -> Option<TransportKind> {
        self.0.transport
    }

    /// When the client was admitted, in seconds since the Unix epoch.
    pub fn connected_at(&self) -> u32 {
        self.0.connected_at
    }

    /// The hub-server connection this client sticks to (Default mode), if any.
    pub fn server(&self) -> Option<&ServerConnHandle> {
        self.0.server.as_ref()
    }

    /// Whether the client completed its handshake and may receive hub messages. Multicast and
    /// REST sends skip clients that are not ready: nothing may precede the handshake answer.
    pub fn is_ready(&self) -> bool {
        self.0.ready.load(Ordering::Acquire)
    }

    /// Remember a client invocation whose caller must hear of it if the client leaves first.
    pub fn track_invocation(&self, invocation_id: String, caller_server_id: String) {
        self.0
            .pending_invocations
            .lock()
            .push((invocation_id, caller_server_id));
    }

    /// The client answered (or the caller gave up on) an invocation.
    pub fn untrack_invocation(&self, invocation_id: &str) {
        self.0
            .pending_invocations
            .lock()
            .retain(|(id, _)| id != invocation_id);
    }

    /// Take the unanswered invocations (when the client leaves).
    pub fn take_pending_invocations(&self) -> Vec<(String, String)> {
        std::mem::take(&mut *self.0.pending_invocations.lock())
    }

    /// Mark the client ready (its handshake answer is queued or written).
    pub fn mark_ready(&self) {
        self.0.ready.store(true, Ordering::Release);
    }

    /// The connection id.
    pub fn id(&self) -> &ConnectionId {
        &self.0.id
    }

    /// The user the connection belongs to, if its token named one.
    pub fn user(&self) -> Option<&UserId> {
        self.0.user.as_ref()
    }

    /// The hub protocol chosen in the handshake.
    pub fn protocol(&self) -> HubProtocol {
        self.0.protocol
    }

    /// The connection's outbox.
    pub fn outbox(&self) -> &Outbox {
        &self.0.outbox
    }

    /// Ask the connection to close: queued messages are written first, then the Close message
    /// `reason` calls for (none for [`CloseReason::ByAppServer`]), then the transport closes.
    pub fn close(&self, reason: CloseReason) {
        self.0.outbox.request_close(CloseRequest {
            reason,
            flush: true,
        });
    }
}

/// Seconds since the Unix epoch, as 32 bits (enough until 2106).
fn unix_secs() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `ConnShared` as it was before the admin inventory's `transport` and `connected_at`.
    #[allow(dead_code)]
    struct WithoutInventory {
        id: ConnectionId,
        user: Option<UserId>,
        protocol: HubProtocol,
        outbox: Outbox,
        ready: AtomicBool,
        server: Option<ServerConnHandle>,
        pending_invocations: parking_lot::Mutex<Vec<(String, String)>>,
    }

    #[test]
    fn inventory_fields_fit_in_padding() {
        assert_eq!(
            size_of::<ConnShared>(),
            size_of::<WithoutInventory>(),
            "an idle connection must not grow for the admin inventory"
        );
    }

    #[test]
    fn transport_and_connect_time_are_recorded() {
        let c = ConnHandle::new("a".into(), None, HubProtocol::Json, Outbox::new(1, 1))
            .with_transport(Some(TransportKind::LongPolling));
        assert_eq!(c.transport(), Some(TransportKind::LongPolling));
        assert!(c.connected_at() > 1_700_000_000);
    }
}
