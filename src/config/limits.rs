//! `[limits]`: sizes, timeouts and queue bounds.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Sizes, timeouts and queue bounds. Every queue in Switchboard is bounded by one of these.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Largest hub message a client may send, in bytes (also the handshake and WebSocket
    /// frame limit). Azure's SSE/long-polling limit is 1 MB.
    pub max_message_size: usize,
    /// Largest REST request body, in bytes (Azure: 1 MB).
    pub max_rest_body_size: usize,
    /// Largest service-protocol frame a hub server may send, in bytes (Azure advises < 16 MB).
    pub max_server_message_size: usize,
    /// Messages a connection's outbox may hold before the connection is closed as too slow.
    pub outbox_max_messages: usize,
    /// Bytes a connection's outbox may hold before the connection is closed as too slow.
    pub outbox_max_bytes: usize,
    /// Bytes a hub-server connection's outbox holds; client connections wait for room beyond
    /// it (at most 4 GiB).
    pub server_outbox_max_bytes: usize,
    /// Commands a hub's inbox holds before senders wait.
    pub hub_inbox_capacity: usize,
    /// Client connections this process accepts at once; more get HTTP 429.
    pub max_connections: usize,
    /// Negotiated connections waiting for their transport; more get HTTP 429.
    pub max_pending_negotiations: usize,
    /// Seconds a client has to send its handshake after the transport opens.
    pub handshake_timeout_secs: u64,
    /// Seconds of silence after which the server sends a Ping.
    pub keep_alive_interval_secs: u64,
    /// Seconds without any message from a client (after its first Ping) before it is dropped.
    pub client_timeout_secs: u64,
    /// Seconds a negotiated connection id stays valid without a transport.
    pub negotiate_timeout_secs: u64,
    /// Seconds a blocked socket write may take before the connection is dropped.
    pub send_timeout_secs: u64,
    /// Clock skew tolerated when checking token `exp` and `nbf`, in seconds.
    pub token_clock_skew_secs: u64,
    /// User-group memberships without TTL remembered per user (Azure keeps 100).
    pub max_user_groups_without_ttl: usize,
    /// Bytes of unacknowledged messages kept per stateful-reconnect connection (the reference
    /// default); beyond it the connection is closed.
    pub reconnect_buffer_bytes: usize,
    /// Seconds a stateful-reconnect connection waits for its client to come back.
    pub reconnect_window_secs: u64,
    /// Seconds a graceful stop (SIGTERM, Ctrl-C) may take: closing the clients, delivering
    /// their upstream `disconnected` events, closing the hub servers (Azure's default: 30).
    pub shutdown_timeout_secs: u64,
    /// Hubs this process runs at once; a request that would start one more is refused (429).
    pub max_hubs: usize,
    /// Seconds a hub with no client or hub-server connection and no remembered user-group
    /// membership lives on before it stops and is forgotten.
    pub hub_idle_timeout_secs: u64,
    /// Seconds a request body may take to arrive completely; a slower one gets HTTP 408 and its
    /// connection is closed.
    pub body_timeout_secs: u64,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_message_size: 1024 * 1024,
            max_rest_body_size: 1024 * 1024,
            max_server_message_size: 16 * 1024 * 1024,
            outbox_max_messages: 4096,
            outbox_max_bytes: 1024 * 1024,
            server_outbox_max_bytes: 16 * 1024 * 1024,
            hub_inbox_capacity: 4096,
            max_connections: 19_000,
            max_pending_negotiations: 100_000,
            handshake_timeout_secs: 15,
            keep_alive_interval_secs: 15,
            client_timeout_secs: 30,
            negotiate_timeout_secs: 15,
            send_timeout_secs: 10,
            token_clock_skew_secs: 30,
            max_user_groups_without_ttl: 100,
            reconnect_buffer_bytes: 100_000,
            reconnect_window_secs: 15,
            shutdown_timeout_secs: 30,
            max_hubs: 10_000,
            hub_idle_timeout_secs: 60,
            body_timeout_secs: 10,
        }
    }
}

impl LimitsConfig {
    /// [`Self::handshake_timeout_secs`] as a duration.
    pub fn handshake_timeout(&self) -> Duration {
        Duration::from_secs(self.handshake_timeout_secs)
    }
    /// [`Self::keep_alive_interval_secs`] as a duration.
    pub fn keep_alive_interval(&self) -> Duration {
        Duration::from_secs(self.keep_alive_interval_secs)
    }
    /// [`Self::client_timeout_secs`] as a duration.
    pub fn client_timeout(&self) -> Duration {
        Duration::from_secs(self.client_timeout_secs)
    }
    /// [`Self::negotiate_timeout_secs`] as a duration.
    pub fn negotiate_timeout(&self) -> Duration {
        Duration::from_secs(self.negotiate_timeout_secs)
    }
    /// [`Self::send_timeout_secs`] as a duration.
    pub fn send_timeout(&self) -> Duration {
        Duration::from_secs(self.send_timeout_secs)
    }
    /// [`Self::shutdown_timeout_secs`] as a duration.
    pub fn shutdown_timeout(&self) -> Duration {
        Duration::from_secs(self.shutdown_timeout_secs)
    }
    /// [`Self::hub_idle_timeout_secs`] as a duration.
    pub fn hub_idle_timeout(&self) -> Duration {
        Duration::from_secs(self.hub_idle_timeout_secs)
    }
    /// [`Self::body_timeout_secs`] as a duration.
    pub fn body_timeout(&self) -> Duration {
        Duration::from_secs(self.body_timeout_secs)
    }
}
