//! Hub-server connections of other nodes (Default mode in a cluster).
//!
//! A node with no connection of an app server still serves clients: it routes each to a
//! connection on another node. Each node announces its connections that carry clients on the
//! hub's channel ([`HubOp::ServerUp`], `ServerDraining`, `ServerDown`); a node that has none
//! when a client arrives asks ([`Query::Servers`](crate::cluster::wire::Query::Servers)). Every
//! such connection is a *link* here: a [`ServerConnHandle`] like a local connection's, so the
//! client side (OpenConnection, the byte relay, stateful reconnect, CloseConnection) is the
//! same code, but the link's task publishes the frames to the connection's node
//! ([`HubOp::Relay`]), which puts them into that connection's outbox. What the hub server sends
//! the client comes back through its node's hub as [`HubOp::ConnectionData`] (or the cluster
//! forms of the other sends), in the order the hub server sent it.
//!
//! A hub server therefore sees exactly the service protocol it sees for its own node's
//! clients, the `Asrs-Instance-Id` header naming the client's node. Local connections are
//! preferred; a link is chosen only when no local connection can take the client.
//!
//! Delivery over a link is at-most-once like every cross-node message: frames are dropped (and
//! counted in `switchboard_cluster_publish_dropped_total` or, on the hub server's node,
//! `switchboard_server_outbox_full_total`) when a queue is full, instead of waiting.

use std::sync::Arc;

use bytes::Bytes;

use super::{Hub, ServerEntry};
use crate::cluster::Cluster;
use crate::cluster::wire::{HubOp, ServerInfo};
use crate::id::{HubName, ServerConnId};
use crate::peer::{ServerConnHandle, ServerOutboxBounds};
use crate::protocol::service::ConnectionType;
use crate::telemetry::Metrics;

/// A link's outbox. Its task never waits (publishing is bounded by the node's outgoing queue),
/// so this only has to hold a burst.
const LINK_OUTBOX: ServerOutboxBounds = ServerOutboxBounds {
    frames: 1024,
    bytes: 4 << 20,
};

/// Frames published together at most.
const FRAMES_PER_RELAY: usize = 64;

/// Where a link leads; dropping it stops the link's task.
#[derive(Debug)]
pub(super) struct Link {
    pub(super) node: String,
    pub(super) conn: u64,
    handle: ServerConnHandle,
}

impl Drop for Link {
    fn drop(&mut self) {
        self.handle.close();
    }
}

impl Hub {
    /// Announce a local connection that carries clients to the other nodes.
    pub(super) fn announce_server(&self, handle: &ServerConnHandle) {
        if handle.connection_type().carries_clients() {
            let (conn, server_id) = (handle.id().0, handle.server_id().to_owned());
            self.publish(|| HubOp::ServerUp { conn, server_id });
        }
    }

    /// The local connections that carry clients, as another node's question wants them.
    pub(super) fn local_servers(&self) -> Vec<ServerInfo> {
        let Some(cluster) = &self.settings.cluster else {
            return Vec::new();
        };
        self.servers
            .iter()
            .filter(|e| e.link.is_none() && e.handle.connection_type().carries_clients())
            .map(|e| ServerInfo {
                node: cluster.node_id().to_owned(),
                conn: e.handle.id().0,
                server_id: e.handle.server_id().to_owned(),
                draining: e.shutting_down,
            })
            .collect()
    }

    /// Add links to the connections of other nodes not known yet.
    pub(super) fn learn_servers(&mut self, servers: Vec<ServerInfo>) {
        for s in servers {
            self.add_link(s.node, s.conn, s.server_id, s.draining);
        }
    }

    /// A link to connection `conn` of `node` (once).
    pub(super) fn add_link(&mut self, node: String, conn: u64, server_id: String, draining: bool) {
        let Some(cluster) = self.settings.cluster.clone() else {
            return;
        };
        if node == cluster.node_id() || self.link_position(&node, conn).is_some() {
            return;
        }
        let handle = spawn_link(
            cluster,
            self.name.clone(),
            node.clone(),
            conn,
            server_id,
            self.metrics.clone(),
        );
        tracing::debug!(hub = %self.name, node, conn, server = handle.server_id(), "hub server of another node linked");
        self.servers.push(ServerEntry {
            handle: handle.clone(),
            clients: 0,
            shutting_down: draining,
            link: Some(Link { node, conn, handle }),
        });
    }

    fn link_position(&self, node: &str, conn: u64) -> Option<usize> {
        self.servers.iter().position(|e| {
            e.link
                .as_ref()
                .is_some_and(|l| l.node == node && l.conn == conn)
        })
    }

    /// The link's connection takes no new clients.
    pub(super) fn link_draining(&mut self, node: &str, conn: u64) {
        if let Some(i) = self.link_position(node, conn) {
            self.servers[i].shutting_down = true;
        }
    }

    /// The link's connection is gone: so are the clients routed to it.
    pub(super) fn drop_link(&mut self, node: &str, conn: u64) {
        if let Some(i) = self.link_position(node, conn) {
            let id = self.servers[i].handle.id();
            self.unregister_server(id);
        }
    }

    /// Every link to a node that is gone.
    pub(super) fn drop_links_to(&mut self, node: &str) {
        let ids: Vec<ServerConnId> = self
            .servers
            .iter()
            .filter(|e| e.link.as_ref().is_some_and(|l| l.node == node))
            .map(|e| e.handle.id())
            .collect();
        for id in ids {
            self.unregister_server(id);
        }
    }

    /// Frames another node relays to local connection `conn`; a connection that is gone is
    /// announced as gone again, so that the other node drops its link.
    pub(super) fn relay_here(&self, conn: u64, frames: Vec<Bytes>) {
        let Some(e) = self
            .servers
            .iter()
            .find(|e| e.link.is_none() && e.handle.id().0 == conn)
        else {
            self.publish(|| HubOp::ServerDown { conn });
            return;
        };
        for frame in frames {
            if e.handle.try_send_frame(frame).is_err() {
                Metrics::inc(&self.metrics.server_outbox_full);
            }
        }
    }
}

/// A handle whose frames a task publishes to connection `conn` of `node`, until the handle is
/// closed (when its [`Link`] drops).
fn spawn_link(
    cluster: Arc<Cluster>,
    hub: HubName,
    node: String,
    conn: u64,
    server_id: String,
    metrics: Arc<Metrics>,
) -> ServerConnHandle {
    let (handle, mut outbox) =
        ServerConnHandle::new(server_id, ConnectionType::Default, LINK_OUTBOX, metrics);
    let closing = handle.clone();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                biased;
                () = closing.close_requested() => break,
                frame = outbox.recv() => {
                    let Some(frame) = frame else { break };
                    let mut frames = vec![frame];
                    while frames.len() < FRAMES_PER_RELAY
                        && let Some(f) = outbox.try_recv()
                    {
                        frames.push(f);
                    }
                    cluster.relay(&node, hub.as_str(), conn, frames);
                    outbox.written();
                }
            }
        }
        // Dropping the outbox fails every sender: the clients routed here end.
    });
    handle
}
