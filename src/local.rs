//! Hubs served in the same process: the SDK's [`Hub`](switchboard_sdk::Hub), attached to an
//! embedded broker without a network socket ([`SwitchboardHandle::hub_server`]).
//!
//! Each server connection is an in-memory byte stream (bounded: [`PIPE_BYTES`] each way) that
//! carries WebSocket frames with the service protocol inside, exactly as on the network, so the
//! hub-server connection actor and the SDK are the same code either way. The connection is
//! trusted (the application embedding the broker opens it), so it needs no token; it holds a
//! connection slot like any other and is admitted by the mode policy like any app server
//! (Default and Classic modes route clients to it; Serverless mode refuses it).
//!
//! [`SwitchboardHandle::hub_server`]: crate::SwitchboardHandle::hub_server

use std::io;
use std::sync::Arc;

use switchboard_sdk::LocalService;
use tokio::io::DuplexStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};

use crate::conn::server::socket::LocalSocket;
use crate::conn::server::{self, ServerContext};
use crate::http::state::Broker;
use crate::id::validate_hub_name;
use crate::telemetry::Metrics;

/// Bytes buffered in each direction of one in-process server connection: what a socket's send
/// and receive buffers would hold; a full pipe is backpressure, as on a socket.
pub(crate) const PIPE_BYTES: usize = 256 * 1024;

/// The embedded broker as the SDK's [`LocalService`].
pub(crate) struct LocalBroker(pub(crate) Arc<Broker>);

impl LocalService for LocalBroker {
    fn open(&self, hub: &str, server_id: &str) -> io::Result<DuplexStream> {
        let broker = &self.0;
        validate_hub_name(hub).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        if *broker.shutdown_signal().borrow() {
            return Err(io::Error::other("the broker is stopping"));
        }
        let Some(slot) = broker.slots.try_reserve() else {
            Metrics::inc(&broker.metrics.connections_rejected_limit);
            return Err(io::Error::other(
                "the connection limit of this Switchboard instance was reached",
            ));
        };
        let hub = broker
            .hubs
            .get_or_create(hub)
            .map_err(|e| io::Error::other(e.to_string()))?;
        let (ours, theirs) = tokio::io::duplex(PIPE_BYTES);
        let ctx = ServerContext {
            env: broker.server_env.clone(),
            hub,
            server_id: server_id.to_owned(),
            slot,
            // In process: no address.
            ip: None,
        };
        let max = broker.config.limits.max_server_message_size;
        tokio::spawn(async move {
            let config = WebSocketConfig::default().max_message_size(Some(max));
            let ws = WebSocketStream::from_raw_socket(ours, Role::Server, Some(config)).await;
            server::run(ctx, LocalSocket::new(ws)).await;
        });
        Ok(theirs)
    }
}
