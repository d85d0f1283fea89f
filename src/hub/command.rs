//! The messages into a hub actor, one variant per typed operation of [`HubHandle`](super::HubHandle).
//! Private to the hub: nothing outside builds them, so no caller needs a dummy reply channel.

use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::oneshot;

use super::{
    AdmitRequest, Answer, ExistsQuery, Member, MembershipTtl, Refused, Scope, SerializedMessage,
};
use crate::close::CloseReason;
use crate::cluster::wire::{HubOp, ServerInfo};
use crate::id::{ConnectionId, GroupName, ServerConnId, UserId};
use crate::peer::{ConnHandle, ServerConnHandle};
use crate::routing::ClientRoute;

/// Messages into a hub actor: private to the hub, whose handle offers typed operations.
#[derive(Debug)]
pub(super) enum HubCommand {
    /// Register a connection that completed its handshake; it joins its user's groups.
    Connect {
        /// The connection.
        conn: ConnHandle,
        /// Answered once the connection is registered.
        reply: oneshot::Sender<()>,
    },
    /// Admit a client that completed its handshake request: decide its route in the current
    /// mode (choosing its hub server in Default mode), build and register its handle.
    Admit {
        /// Who is connecting and with what.
        request: AdmitRequest,
        /// The registered handle and its route, or the handshake error text.
        reply: oneshot::Sender<Result<(ConnHandle, ClientRoute), Refused>>,
    },
    /// A hub-server connection completed its handshake.
    RegisterServer {
        /// The server connection.
        server: ServerConnHandle,
    },
    /// A hub-server connection ended: the clients routed through it are closed.
    UnregisterServer {
        /// Its id.
        id: ServerConnId,
    },
    /// A hub-server connection announced a graceful shutdown: route no new clients to it.
    ShutdownServer {
        /// Its id.
        id: ServerConnId,
    },
    /// A page of what the hub holds, for the admin inventory (this node's only).
    Inventory {
        /// What to list.
        query: super::inventory::InventoryQuery,
        /// The page.
        reply: oneshot::Sender<super::inventory::Inventory>,
    },
    /// The ids of the app servers connected to this hub.
    ServerIds {
        /// Distinct server ids, sorted.
        reply: Answer<Vec<String>>,
    },
    /// Deliver an encoded service frame to any connection of the app server `server_id`
    /// (client-result completions go back to the caller server).
    SendToServer {
        /// The app server's id.
        server_id: String,
        /// The encoded frame.
        frame: Bytes,
    },
    /// Deliver a hub server's `ClientInvocation` (encoded) to a client on another node;
    /// answers whether some node has the client.
    InvokeElsewhere {
        /// The encoded frame.
        frame: Bytes,
        /// Whether a node delivered it.
        reply: Answer<bool>,
    },
    /// Another node of the cluster is gone: tell this hub's servers (`["offline", node]`).
    NodeGone {
        /// The node's id.
        node: String,
    },
    /// Send to the connections of several users.
    SendUsers {
        /// Recipients.
        users: Vec<UserId>,
        /// The message.
        msg: Arc<SerializedMessage>,
    },
    /// Send to the connections of several groups; a connection in several of them gets the
    /// message once.
    SendGroups {
        /// Recipients.
        groups: Vec<GroupName>,
        /// The message.
        msg: Arc<SerializedMessage>,
    },
    /// Close the hub-server connections (only those that carry clients, or all).
    CloseServers {
        /// Keep Weak connections.
        carrying_clients_only: bool,
    },
    /// Answered once every command queued before it has been processed.
    Barrier {
        /// Done.
        reply: oneshot::Sender<()>,
    },
    /// Forget a connection (it ended).
    Disconnect {
        /// The connection that ended.
        id: ConnectionId,
    },
    /// Send to every connection except `excluded`.
    SendAll {
        /// The message.
        msg: Arc<SerializedMessage>,
        /// Connection ids to skip.
        excluded: Vec<ConnectionId>,
    },
    /// Send to one connection.
    SendConnection {
        /// Recipient.
        id: ConnectionId,
        /// The message.
        msg: Arc<SerializedMessage>,
    },
    /// Send to every connection of a user.
    SendUser {
        /// Recipient.
        user: UserId,
        /// The message.
        msg: Arc<SerializedMessage>,
    },
    /// Send to every connection in a group except `excluded`.
    SendGroup {
        /// Recipients.
        group: GroupName,
        /// The message.
        msg: Arc<SerializedMessage>,
        /// Connection ids to skip.
        excluded: Vec<ConnectionId>,
        /// Users whose connections are skipped.
        excluded_users: Vec<UserId>,
    },
    /// Add a connection to a group; answers whether the connection exists.
    AddToGroup {
        /// Member.
        id: ConnectionId,
        /// Group.
        group: GroupName,
        /// Whether the connection exists.
        reply: Answer<bool>,
    },
    /// Remove a connection from a group; answers whether the connection exists.
    RemoveFromGroup {
        /// Member.
        id: ConnectionId,
        /// Group.
        group: GroupName,
        /// Whether the connection exists.
        reply: Answer<bool>,
    },
    /// Remove a connection from all its groups; answers whether the connection exists.
    RemoveFromAllGroups {
        /// Member.
        id: ConnectionId,
        /// Whether the connection exists.
        reply: Answer<bool>,
    },
    /// Add a user to a group (now and, with a ttl, for connections opened later).
    AddUserToGroup {
        /// Member.
        user: UserId,
        /// Group.
        group: GroupName,
        /// Membership duration.
        ttl: MembershipTtl,
        /// Done.
        reply: Answer<()>,
    },
    /// Remove a user (all its connections and its remembered membership) from a group.
    RemoveUserFromGroup {
        /// Member.
        user: UserId,
        /// Group.
        group: GroupName,
        /// Done.
        reply: Answer<()>,
    },
    /// Remove a user from every group.
    RemoveUserFromAllGroups {
        /// Member.
        user: UserId,
        /// Done.
        reply: Answer<()>,
    },
    /// Existence checks.
    Exists {
        /// What to look for.
        query: ExistsQuery,
        /// The answer.
        reply: Answer<bool>,
    },
    /// List the connections of a group.
    GroupConnections {
        /// Group.
        group: GroupName,
        /// Members in connection-id order.
        reply: Answer<Vec<Member>>,
    },
    /// Close one connection; answers whether it existed.
    CloseConnection {
        /// Which.
        id: ConnectionId,
        /// Close error text (the REST `reason`).
        reason: Option<String>,
        /// Whether it existed.
        reply: Answer<bool>,
    },
    /// Test hook: the actor panics while handling it.
    #[cfg(test)]
    PanicForTest,
    /// Close every connection in a scope except `excluded`.
    CloseConnections {
        /// Which.
        scope: Scope,
        /// Connection ids to keep.
        excluded: Vec<ConnectionId>,
        /// Why.
        reason: CloseReason,
        /// Done.
        reply: Answer<()>,
    },
    /// An operation from another cluster node: applied to this node's connections only.
    /// Hub-server connections of other nodes, as they answered [`Query::Servers`].
    ///
    /// [`Query::Servers`]: crate::cluster::wire::Query::Servers
    LearnServers {
        /// The connections.
        servers: Vec<ServerInfo>,
    },
    /// A hub server's bytes for one client, in the client's protocol (its first are the
    /// handshake answer): to a client of this node, else published.
    ConnectionData {
        /// The client.
        id: ConnectionId,
        /// The bytes.
        payload: Bytes,
    },
    Remote {
        /// The node it came from.
        origin: String,
        /// The operation.
        op: HubOp,
    },
    /// Memberships read from the cluster engine for a connection that just registered: it
    /// joins those groups, unless a membership was removed since `epoch` (then the caller reads
    /// again).
    ApplyRemembered {
        /// The connection.
        id: ConnectionId,
        /// Its user's remembered groups: (group, expiry in ms since the Unix epoch, unlimited).
        groups: Vec<(GroupName, i64, bool)>,
        /// The hub's removal epoch the caller read before reading the engine.
        epoch: u64,
        /// Applied (`true`) or stale (`false`).
        reply: oneshot::Sender<bool>,
    },
}
