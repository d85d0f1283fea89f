//! The hub-server connection as a sans-IO state machine: it holds what one connection knows
//! (handshake done or not, whether something this server sent through the hub may still be queued
//! there, keep-alive times) and answers each event — a decoded message, a tick, a hub answer —
//! with [`Action`]s for the I/O loop in [`super`] to carry out, in order.
//!
//! It must not do I/O: no tokio, no actix, no channels, no awaiting. What it needs to know of the
//! world (a client by id, whether the hub has clients, whether the mode admits this server) it
//! asks through [`World`]; it only counts the metrics of decisions it makes itself.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::close::CloseReason;
use crate::hub::{ExistsQuery, HubGone, Member, MembershipTtl, Scope, SerializedMessage};
use crate::id::{ConnectionId, GroupName, UserId};
use crate::peer::{ConnHandle, ServerConnHandle};
use crate::protocol::service::{self, ConnectionType, Extensions, ServiceMessage, ack_status};
use crate::telemetry::Metrics;

/// The SDK drops a connection after 30 s without receiving anything; ping well within that.
pub(crate) const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(5);
/// The SDK pings every 5 s; a server silent for this long is gone.
pub(crate) const SERVER_TIMEOUT: Duration = Duration::from_secs(30);

/// What the machine may look up around it (read-only, never waits).
pub(crate) trait World {
    /// The client connection with this id, if it is open.
    fn client(&self, id: &str) -> Option<ConnHandle>;
    /// Whether the hub has any client connection now.
    fn hub_has_clients(&self) -> bool;
    /// Whether the service mode admits a hub server of this kind; the refusal text if not.
    fn admit(&self, carries_clients: bool) -> Result<(), String>;
}

/// A typed hub operation (one [`HubHandle`](crate::hub::HubHandle) call) and its arguments.
#[derive(Debug)]
pub(crate) enum HubOp {
    /// Wait until the hub has handled everything queued before.
    Barrier,
    /// `send_all`.
    SendAll(Arc<SerializedMessage>, Vec<ConnectionId>),
    /// `send_user`.
    SendUser(UserId, Arc<SerializedMessage>),
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
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Then {
    /// Nobody waits for it; the connection ends if the hub is gone.
    Nothing,
    /// Queue it in order, then send `Ack(ack_id)` with the answer's status once it arrives
    /// (only that wait runs beside the connection); the connection ends if the hub is gone.
    Ack(i32),
    /// Wait for the member list and hand it to [`ServerMachine::on_members`].
    Members(i32),
    /// Wait for the server ids and hand them to [`ServerMachine::on_server_ids`].
    ServerIds,
    /// Nothing waits for it, and a gone hub does not end the connection.
    Ignore,
}

/// How the connection ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Closing {
    /// The first message was not a HandshakeRequest (policy violation).
    BadHandshake,
    /// The service mode does not admit this server (normal closure after the refusal).
    NotAdmitted,
    /// A message could not be decoded.
    Malformed,
    /// Nothing received for [`SERVER_TIMEOUT`].
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

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Handshake,
    Open,
    Ended,
}

/// One hub-server connection's state.
#[derive(Debug)]
pub(crate) struct ServerMachine<W> {
    world: W,
    metrics: Arc<Metrics>,
    server_id: String,
    phase: Phase,
    /// Something this server sent went through the hub actor and may still be queued there.
    hub_pending: bool,
    last_sent: Instant,
    last_received: Instant,
}

impl<W: World> ServerMachine<W> {
    /// A connection of app server `server_id`, waiting for its HandshakeRequest.
    pub(crate) fn new(server_id: String, world: W, metrics: Arc<Metrics>, now: Instant) -> Self {
        Self {
            world,
            metrics,
            server_id,
            phase: Phase::Handshake,
            hub_pending: false,
            last_sent: now,
            last_received: now,
        }
    }

    /// Whether the handshake was accepted and the connection has not ended.
    #[cfg(test)]
    pub(crate) fn is_open(&self) -> bool {
        self.phase == Phase::Open
    }

    /// Whether something sent through the hub may still be queued there.
    #[cfg(test)]
    pub(crate) fn hub_pending(&self) -> bool {
        self.hub_pending
    }

    /// A frame arrived (input or not): the server is alive.
    pub(crate) fn on_received(&mut self, now: Instant) {
        self.last_received = now;
    }

    /// Frames were written to the socket.
    pub(crate) fn on_sent(&mut self, now: Instant) {
        self.last_sent = now;
    }

    /// A second passed: end a silent server, ping when nothing was sent for a while.
    pub(crate) fn on_tick(&mut self, now: Instant) -> Vec<Action> {
        if self.phase != Phase::Open {
            return Vec::new();
        }
        if now.duration_since(self.last_received) >= SERVER_TIMEOUT {
            self.phase = Phase::Ended;
            return vec![Action::Close(Closing::TimedOut)];
        }
        if now.duration_since(self.last_sent) >= KEEP_ALIVE_INTERVAL {
            self.last_sent = now;
            return vec![Action::Send(ServiceMessage::Ping {
                messages: Vec::new(),
            })];
        }
        Vec::new()
    }

    /// Input that is not a readable message: before the handshake, a refusal; after, the end.
    pub(crate) fn on_undecodable(&mut self) -> Vec<Action> {
        match self.phase {
            Phase::Handshake => self.refuse_handshake(),
            Phase::Open => {
                Metrics::inc(&self.metrics.protocol_errors);
                self.phase = Phase::Ended;
                vec![Action::Close(Closing::Malformed)]
            }
            Phase::Ended => Vec::new(),
        }
    }

    /// One decoded message.
    pub(crate) fn on_message(&mut self, msg: ServiceMessage) -> Vec<Action> {
        match self.phase {
            Phase::Handshake => self.handshake(msg),
            Phase::Open => self.message(msg),
            Phase::Ended => Vec::new(),
        }
    }

    /// The answer to a [`Then::Members`] group member query.
    pub(crate) fn on_members(
        &mut self,
        ack_id: i32,
        members: Result<Vec<Member>, HubGone>,
    ) -> Vec<Action> {
        match members {
            Ok(members) => vec![Action::Reply(ServiceMessage::Ack {
                ack_id,
                status: ack_status::OK,
                message: None,
                extensions: Extensions::default(),
                payload: Some(group_members_payload(&members)),
            })],
            Err(HubGone) => {
                self.phase = Phase::Ended;
                vec![Action::Close(Closing::HubGone)]
            }
        }
    }

    /// The answer to a [`Then::ServerIds`] query (the `servers` ping); `unix_now` in seconds.
    pub(crate) fn on_server_ids(
        &mut self,
        ids: Result<Vec<String>, HubGone>,
        unix_now: u64,
    ) -> Vec<Action> {
        match ids {
            Ok(ids) => {
                let list = format!("{unix_now}:{}", ids.join(";"));
                vec![Action::Reply(service::ping(&[("servers", &list)]))]
            }
            Err(HubGone) => Vec::new(),
        }
    }

    fn refuse_handshake(&mut self) -> Vec<Action> {
        self.phase = Phase::Ended;
        vec![
            Action::Send(handshake_response(Some(
                "The first message must be a HandshakeRequest.",
            ))),
            Action::Close(Closing::BadHandshake),
        ]
    }

    fn handshake(&mut self, msg: ServiceMessage) -> Vec<Action> {
        let ServiceMessage::HandshakeRequest {
            connection_type, ..
        } = msg
        else {
            return self.refuse_handshake();
        };
        if let Err(text) = self.world.admit(connection_type.carries_clients()) {
            Metrics::inc(&self.metrics.server_handshakes_failed);
            self.phase = Phase::Ended;
            return vec![
                Action::Send(handshake_response(Some(&text))),
                Action::Close(Closing::NotAdmitted),
            ];
        }
        self.phase = Phase::Open;
        vec![
            Action::Send(handshake_response(None)),
            Action::Open(connection_type),
        ]
    }

    /// One message of an open connection.
    fn message(&mut self, msg: ServiceMessage) -> Vec<Action> {
        use ServiceMessage as M;
        let mut out = Vec::new();
        // Keep this server's order: messages that go straight to a client wait until what the
        // server sent earlier through the hub (broadcasts, group sends, membership changes) is
        // in the outboxes, so `await Clients.All.SendAsync(..); return x;` reaches the caller
        // in that order.
        let direct = matches!(
            msg,
            M::ConnectionData { .. }
                | M::MultiConnectionData { .. }
                | M::CloseConnection { .. }
                | M::ClientInvocation { .. }
        );
        if direct && self.hub_pending {
            out.push(Action::Hub(HubOp::Barrier, Then::Nothing));
            self.hub_pending = false;
        } else if !direct && !matches!(msg, M::Ping { .. }) {
            self.hub_pending = true;
        }
        let mut hub = |op, then| out.push(Action::Hub(op, then));
        match msg {
            M::Ping { messages } => return self.ping(&messages, out),
            M::ConnectionData {
                connection_id,
                payload,
                ..
            } => self.to_client(&connection_id, |_| Some(payload.clone()), &mut out),
            M::MultiConnectionData {
                connection_list,
                payloads,
                ..
            } => {
                let msg = SerializedMessage::from_payload_map(&payloads);
                for id in &connection_list {
                    self.to_client(id, |p| msg.bytes_for(p).cloned(), &mut out);
                }
            }
            M::CloseConnection { connection_id, .. } => {
                if let Some(conn) = self.world.client(&connection_id) {
                    out.push(Action::CloseClient(conn));
                }
            }
            M::UserData {
                user_id, payloads, ..
            } => hub(
                HubOp::SendUser(user_id.into(), shared(&payloads)),
                Then::Nothing,
            ),
            M::MultiUserData {
                user_list,
                payloads,
                ..
            } => {
                let users = user_list.into_iter().map(UserId::from).collect();
                hub(HubOp::SendUsers(users, shared(&payloads)), Then::Nothing)
            }
            M::BroadcastData {
                excluded_list,
                payloads,
                ..
            } => hub(
                HubOp::SendAll(shared(&payloads), ids(&excluded_list)),
                Then::Nothing,
            ),
            M::GroupBroadcastData {
                group_name,
                excluded_list,
                payloads,
                excluded_user_list,
                ..
            } => hub(
                HubOp::SendGroup(
                    group_name.into(),
                    shared(&payloads),
                    ids(&excluded_list),
                    excluded_user_list.into_iter().map(UserId::from).collect(),
                ),
                Then::Nothing,
            ),
            M::MultiGroupBroadcastData {
                group_list,
                payloads,
                ..
            } => {
                let groups = group_list.into_iter().map(GroupName::from).collect();
                hub(HubOp::SendGroups(groups, shared(&payloads)), Then::Nothing)
            }
            // Without an ack nobody waits for the answer.
            M::JoinGroup {
                connection_id,
                group_name,
                ..
            } => hub(join(&connection_id, group_name), Then::Nothing),
            M::LeaveGroup {
                connection_id,
                group_name,
                ..
            } => hub(leave(&connection_id, group_name), Then::Nothing),
            M::UserJoinGroup {
                user_id,
                group_name,
                extensions,
            } => hub(user_join(user_id, group_name, &extensions), Then::Nothing),
            M::UserLeaveGroup {
                user_id,
                group_name,
                ..
            } => hub(user_leave(user_id, group_name), Then::Nothing),
            M::JoinGroupWithAck {
                connection_id,
                group_name,
                ack_id,
                ..
            } => hub(join(&connection_id, group_name), Then::Ack(ack_id)),
            M::LeaveGroupWithAck {
                connection_id,
                group_name,
                ack_id,
                ..
            } => hub(leave(&connection_id, group_name), Then::Ack(ack_id)),
            M::UserJoinGroupWithAck {
                user_id,
                group_name,
                ack_id,
                extensions,
            } => hub(
                user_join(user_id, group_name, &extensions),
                Then::Ack(ack_id),
            ),
            M::UserLeaveGroupWithAck {
                user_id,
                group_name,
                ack_id,
                ..
            } => hub(user_leave(user_id, group_name), Then::Ack(ack_id)),
            M::CheckUserInGroupWithAck {
                user_id,
                group_name,
                ack_id,
                ..
            } => {
                let query = ExistsQuery::UserInGroup(user_id.into(), group_name.into());
                hub(HubOp::Exists(query), Then::Ack(ack_id))
            }
            M::CheckGroupExistenceWithAck {
                group_name, ack_id, ..
            } => hub(
                HubOp::Exists(ExistsQuery::Group(group_name.into())),
                Then::Ack(ack_id),
            ),
            M::CheckConnectionExistenceWithAck {
                connection_id,
                ack_id,
                ..
            } => {
                let query = ExistsQuery::Connection(connection_id.as_str().into());
                hub(HubOp::Exists(query), Then::Ack(ack_id))
            }
            M::CheckUserExistenceWithAck {
                user_id, ack_id, ..
            } => hub(
                HubOp::Exists(ExistsQuery::User(user_id.into())),
                Then::Ack(ack_id),
            ),
            M::CloseConnectionWithAck {
                connection_id,
                reason,
                ack_id,
                ..
            } => {
                let id = ConnectionId::from(connection_id.as_str());
                hub(HubOp::CloseConnection(id, reason), Then::Ack(ack_id))
            }
            M::CloseConnectionsWithAck {
                reason,
                ack_id,
                excluded_list,
                ..
            } => hub(
                close_many(Scope::All, &excluded_list, reason),
                Then::Ack(ack_id),
            ),
            M::CloseUserConnectionsWithAck {
                user_id,
                reason,
                ack_id,
                excluded_list,
                ..
            } => hub(
                close_many(Scope::User(user_id.into()), &excluded_list, reason),
                Then::Ack(ack_id),
            ),
            M::CloseGroupConnectionsWithAck {
                group_name,
                reason,
                ack_id,
                excluded_list,
                ..
            } => hub(
                close_many(Scope::Group(group_name.into()), &excluded_list, reason),
                Then::Ack(ack_id),
            ),
            M::ClientInvocation {
                invocation_id,
                connection_id,
                caller_server_id,
                payloads,
                extensions,
            } => {
                // Deliver the invocation to the client; when the client is routed through
                // another server, that server (the router) must learn of it so that it sends the
                // client's answer back to the caller.
                let msg = SerializedMessage::from_payload_map(&payloads);
                if let Some(conn) = self.world.client(&connection_id) {
                    let router = conn
                        .server()
                        .filter(|router| router.server_id() != caller_server_id)
                        .cloned();
                    if let Some(router) = router {
                        // The caller hears of the client leaving from us, not from its router.
                        out.push(Action::Track(
                            conn.clone(),
                            invocation_id.clone(),
                            caller_server_id.clone(),
                        ));
                        let forward = M::ClientInvocation {
                            invocation_id,
                            connection_id: connection_id.clone(),
                            caller_server_id,
                            payloads,
                            extensions,
                        };
                        out.push(Action::Forward(router, service::encode(&forward)));
                    }
                    if let Some(bytes) = msg.bytes_for(conn.protocol()) {
                        out.push(Action::Invoke(conn.clone(), bytes.clone()));
                    }
                } else {
                    out.push(Action::Reply(M::ErrorCompletion {
                        invocation_id,
                        connection_id,
                        caller_server_id,
                        error: Some("The client connection does not exist.".to_owned()),
                        extensions: Extensions::default(),
                    }));
                }
            }
            completion @ (M::ClientCompletion { .. } | M::ErrorCompletion { .. }) => {
                let (M::ClientCompletion {
                    caller_server_id,
                    invocation_id,
                    connection_id,
                    ..
                }
                | M::ErrorCompletion {
                    caller_server_id,
                    invocation_id,
                    connection_id,
                    ..
                }) = &completion
                else {
                    return out;
                };
                let caller = caller_server_id.clone();
                if let Some(conn) = self.world.client(connection_id) {
                    out.push(Action::Untrack(conn, invocation_id.clone()));
                }
                if caller != self.server_id {
                    let frame = service::encode(&completion);
                    out.push(Action::Hub(
                        HubOp::SendToServer(caller, frame),
                        Then::Nothing,
                    ));
                }
            }
            M::AccessKeyRequest { kid, .. } => out.push(Action::Reply(M::AccessKeyResponse {
                kid,
                access_key: None,
                error_type: Some("NotSupportedException".to_owned()),
                error_message: Some(
                    "Switchboard does not issue access keys for Microsoft Entra identities; \
                     use an access key in the connection string."
                        .to_owned(),
                ),
                extensions: Extensions::default(),
            })),
            M::GroupMemberQuery {
                group_name, ack_id, ..
            } => hub(
                HubOp::GroupConnections(group_name.into()),
                Then::Members(ack_id),
            ),
            // Handshake repeats, service-to-server messages and flow control: nothing to do.
            _ => {}
        }
        out
    }

    /// Bytes for one client, chosen by its protocol; the first frame a server sends a client is
    /// its handshake answer, after which the client is ready for multicasts.
    fn to_client(
        &self,
        connection_id: &str,
        bytes_for: impl Fn(crate::protocol::HubProtocol) -> Option<Bytes>,
        out: &mut Vec<Action>,
    ) {
        let Some(conn) = self.world.client(connection_id) else {
            Metrics::inc(&self.metrics.outbox_dropped);
            return;
        };
        match bytes_for(conn.protocol()) {
            Some(bytes) => out.push(Action::Deliver(conn, bytes)),
            None => Metrics::inc(&self.metrics.outbox_dropped),
        }
    }

    /// The `ping` sub-protocol: `status`, `servers`, `shutdown` (fin) and `echo`.
    fn ping(&mut self, messages: &[String], mut out: Vec<Action>) -> Vec<Action> {
        let Some(key) = messages.first() else {
            return out;
        };
        let value = messages.get(1).map(String::as_str).unwrap_or("");
        match key.as_str() {
            "status" => {
                let status = if self.world.hub_has_clients() {
                    "1"
                } else {
                    "0"
                };
                out.push(Action::Reply(service::ping(&[("status", status)])));
            }
            "servers" => out.push(Action::Hub(HubOp::ServerIds, Then::ServerIds)),
            "shutdown" if value.starts_with("fin") => {
                // A hub that is gone routes no new clients anyway.
                out.push(Action::Hub(HubOp::ShutdownServer, Then::Ignore));
                out.push(Action::Reply(service::ping(&[("shutdown", "finack")])));
            }
            "echo" => out.push(Action::Reply(service::ping(&[("echo", value)]))),
            _ => {}
        }
        out
    }
}

/// The HandshakeResponse: an empty error message when accepted.
fn handshake_response(error: Option<&str>) -> ServiceMessage {
    ServiceMessage::HandshakeResponse {
        error_message: Some(error.unwrap_or("").to_owned()),
        extensions: Extensions::default(),
        connection_id: None,
    }
}

/// An Ack without payload.
pub(crate) fn ack(ack_id: i32, status: i32) -> ServiceMessage {
    ServiceMessage::Ack {
        ack_id,
        status,
        message: None,
        extensions: Extensions::default(),
        payload: None,
    }
}

fn shared(payloads: &[(String, Bytes)]) -> Arc<SerializedMessage> {
    Arc::new(SerializedMessage::from_payload_map(payloads))
}

fn ids(list: &[String]) -> Vec<ConnectionId> {
    list.iter()
        .map(|s| ConnectionId::from(s.as_str()))
        .collect()
}

fn join(connection_id: &str, group: String) -> HubOp {
    HubOp::AddToGroup(connection_id.into(), group.into())
}

fn leave(connection_id: &str, group: Option<String>) -> HubOp {
    let id = ConnectionId::from(connection_id);
    match group {
        Some(g) => HubOp::RemoveFromGroup(id, g.into()),
        None => HubOp::RemoveFromAllGroups(id),
    }
}

fn user_join(user: String, group: String, ext: &Extensions) -> HubOp {
    HubOp::AddUserToGroup(user.into(), group.into(), ttl_of(ext))
}

fn user_leave(user: String, group: Option<String>) -> HubOp {
    match group {
        Some(g) => HubOp::RemoveUserFromGroup(user.into(), g.into()),
        None => HubOp::RemoveUserFromAllGroups(user.into()),
    }
}

fn close_many(scope: Scope, excluded: &[String], reason: Option<String>) -> HubOp {
    HubOp::CloseConnections(scope, ids(excluded), CloseReason::ByApplication(reason))
}

fn ttl_of(ext: &Extensions) -> MembershipTtl {
    match ext.ttl {
        None => MembershipTtl::Unlimited,
        Some(t) if t <= 0 => MembershipTtl::CurrentConnectionsOnly,
        Some(t) => MembershipTtl::For(Duration::from_secs(t as u64)),
    }
}

/// The GroupMemberQuery answer: `[[[connectionId, userId|nil], …], continuationToken|nil]`.
fn group_members_payload(members: &[Member]) -> Bytes {
    let mut out = Vec::with_capacity(16 + members.len() * 32);
    // Writing MessagePack into a Vec cannot fail.
    let _ = rmp::encode::write_array_len(&mut out, 2);
    let _ = rmp::encode::write_array_len(&mut out, members.len() as u32);
    for m in members {
        let _ = rmp::encode::write_array_len(&mut out, 2);
        let _ = rmp::encode::write_str(&mut out, m.connection_id.as_str());
        match &m.user_id {
            Some(u) => {
                let _ = rmp::encode::write_str(&mut out, u.as_str());
            }
            None => {
                let _ = rmp::encode::write_nil(&mut out);
            }
        }
    }
    let _ = rmp::encode::write_nil(&mut out);
    Bytes::from(out)
}

#[cfg(test)]
mod tests;
