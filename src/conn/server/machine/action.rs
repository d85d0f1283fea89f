//! What the hub-server connection machine answers with: [`Action`]s for the I/O loop and the
//! typed hub operations ([`HubOp`]) they carry. Plain data: nothing here runs anything.

use std::sync::Arc;

use bytes::Bytes;

use crate::close::CloseReason;
use crate::hub::{ExistsQuery, MembershipTtl, Scope, SerializedMessage};
use crate::id::{ConnectionId, GroupName, UserId};
use crate::peer::{ConnHandle, ServerConnHandle};
use crate::protocol::service::{ConnectionType, ServiceMessage, ServiceProtocolError};

/// A typed hub operation (one [`HubHandle`](crate::hub::HubHandle) call) and its arguments.
#[derive(Debug)]
pub(crate) enum HubOp {
    /// Wait until the hub has handled everything queued before.
    Barrier,
    /// `send_all`.
    SendAll(Arc<SerializedMessage>, Vec<ConnectionId>),
    /// `send_user`.
    SendUser(UserId, Arc<SerializedMessage>),
    /// `send_connection` (to a client on another node of the cluster).
    SendConnection(ConnectionId, Arc<SerializedMessage>),
    /// `connection_data`: bytes in the client's protocol for a client on another node (routed
    /// to this connection over a link).
    ConnectionData(ConnectionId, Bytes),
    /// `send_users`.
    SendUsers(Vec<UserId>, Arc<SerializedMessage>),
    /// `send_group`: group, message, excluded connections, excluded users.
    SendGroup(
        GroupName,
        Arc<SerializedMessage>,
        Vec<ConnectionId>,
        Vec<UserId>,
    ),
    /// `send_groups`.
    SendGroups(Vec<GroupName>, Arc<SerializedMessage>),
    /// `send_to_server`: another server's id and an encoded frame for it.
    SendToServer(String, Bytes),
    /// `invoke_elsewhere`: an encoded `ClientInvocation` for a client on another node.
    InvokeElsewhere(Bytes),
    /// `add_to_group` (answers found / not found).
    AddToGroup(ConnectionId, GroupName),
    /// `remove_from_group` (answers found / not found).
    RemoveFromGroup(ConnectionId, GroupName),
    /// `remove_from_all_groups` (answers found / not found).
    RemoveFromAllGroups(ConnectionId),
    /// `add_user_to_group`.
    AddUserToGroup(UserId, GroupName, MembershipTtl),
    /// `remove_user_from_group`.
    RemoveUserFromGroup(UserId, GroupName),
    /// `remove_user_from_all_groups`.
    RemoveUserFromAllGroups(UserId),
    /// `exists` (answers found / not found).
    Exists(ExistsQuery),
    /// `close_connection` (answers found / not found).
    CloseConnection(ConnectionId, Option<String>),
    /// `close_connections`: scope, excluded connections, reason.
    CloseConnections(Scope, Vec<ConnectionId>, CloseReason),
    /// `group_connections`.
    GroupConnections(GroupName),
    /// `server_ids`.
    ServerIds,
    /// `shutdown_server` for this connection.
    ShutdownServer,
}

/// What becomes of a hub operation's answer.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Then {
    /// Nobody waits for it; the connection ends if the hub is gone.
    Nothing,
    /// Queue it in order, then send `Ack(ack_id)` with the answer's status once it arrives
    /// (only that wait runs beside the connection); the connection ends if the hub is gone.
    Ack(i32),
    /// Wait for the member list and hand it to [`ServerMachine::on_members`](super::ServerMachine::on_members).
    Members(i32),
    /// Wait for the server ids and hand them to [`ServerMachine::on_server_ids`](super::ServerMachine::on_server_ids).
    ServerIds,
    /// Nothing waits for it, and a gone hub does not end the connection.
    Ignore,
    /// Wait beside the connection for whether some node delivered the invocation; if none did,
    /// answer the server with this `ErrorCompletion`.
    Invocation(Box<ServiceMessage>),
}

/// How the connection ends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Closing {
    /// The first message was not a HandshakeRequest (policy violation).
    BadHandshake,
    /// The service mode does not admit this server (normal closure after the refusal).
    NotAdmitted,
    /// A message could not be decoded, or its frame is over the size limit: the close frame
    /// says which.
    Malformed(ServiceProtocolError),
    /// Nothing received for [`SERVER_TIMEOUT`](super::SERVER_TIMEOUT).
    TimedOut,
    /// The hub answered that it is gone.
    HubGone,
}

/// What the I/O loop must do, in order.
#[derive(Debug)]
pub(crate) enum Action {
    /// Write this message to the socket now (handshake answer, keep-alive ping).
    Send(ServiceMessage),
    /// The handshake was accepted: register this connection with the hub.
    Open(ConnectionType),
    /// Queue a hub operation, in this server's order.
    Hub(HubOp, Then),
    /// Data for one client: push into its outbox, count the outcome, mark it ready.
    Deliver(ConnHandle, Bytes),
    /// A client invocation for one client: push into its outbox, nothing counted.
    Invoke(ConnHandle, Bytes),
    /// The client must tell the caller (invocation id, caller server id) if it leaves.
    Track(ConnHandle, String, String),
    /// The invocation was answered.
    Untrack(ConnHandle, String),
    /// An encoded frame for the server a client is routed through (dropped if full).
    Forward(ServerConnHandle, Bytes),
    /// Close this client (the app server asked).
    CloseClient(ConnHandle),
    /// Queue an answer to this server without waiting.
    Reply(ServiceMessage),
    /// End the connection.
    Close(Closing),
}
