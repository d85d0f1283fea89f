//! The hub-server connection as a sans-IO state machine: it holds what one connection knows
//! (handshake done or not, whether something this server sent through the hub may still be queued
//! there, keep-alive times) and answers each event — a decoded message, a tick, a hub answer —
//! with [`Action`]s for the I/O loop in [`super`] to carry out, in order.
//!
//! It must not do I/O: no tokio, no actix, no channels, no awaiting. What it needs to know of the
//! world (a client by id, whether the hub has clients, whether the mode admits this server) it
//! asks through [`World`]; it only counts the metrics of decisions it makes itself.
//!
//! A hub server reaches only its own hub's clients: a message that addresses a client by id
//! (`ConnectionData`, `MultiConnectionData`, `CloseConnection`, `ClientInvocation`, completions)
//! and names a client of another hub is ignored as if the id were unknown, and counted in
//! `switchboard_server_cross_hub_refused_total`. (Everything else a server sends goes through its
//! own hub's actor, which knows only its own connections.)

mod action;
mod build;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

pub(crate) use self::action::{Action, Closing, HubOp, Then};
pub(crate) use self::build::ack;
use self::build::{
    close_many, group_members_payload, handshake_response, ids, join, leave, shared, user_join,
    user_leave,
};
pub(crate) use crate::conn::index::Lookup;
use crate::hub::{ExistsQuery, HubError, HubGone, Member, Scope, SerializedMessage};
use crate::id::{ConnectionId, GroupName, UserId};
use crate::peer::ConnHandle;
use crate::protocol::service::{
    self, Extensions, ServiceMessage, ServiceProtocolError, ack_status,
};
use crate::telemetry::Metrics;

/// The SDK drops a connection after 30 s without receiving anything; ping well within that.
pub(crate) const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(5);
/// The SDK pings every 5 s; a server silent for this long is gone.
pub(crate) const SERVER_TIMEOUT: Duration = Duration::from_secs(30);

/// What the machine may look up around it (read-only, never waits).
pub(crate) trait World {
    /// The client connection with this id, looked up for this server's hub.
    fn client(&self, id: &str) -> Lookup;
    /// Whether the hub has any client connection now.
    fn hub_has_clients(&self) -> bool;
    /// Whether the service mode admits a hub server of this kind; the refusal text if not.
    fn admit(&self, carries_clients: bool) -> Result<(), String>;
    /// Whether this node is part of a cluster: a client missing here may be on another node.
    fn clustered(&self) -> bool {
        false
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Handshake,
    Open,
    Ended,
}

/// The error a `ClientInvocation` for a missing client is answered with.
const NO_CLIENT: &str = "The client connection does not exist.";

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

    /// Input that is not a readable message (`error` says why): before the handshake, a
    /// refusal; after, the end.
    pub(crate) fn on_undecodable(&mut self, error: ServiceProtocolError) -> Vec<Action> {
        match self.phase {
            Phase::Handshake => self.refuse_handshake(),
            Phase::Open => {
                Metrics::inc(&self.metrics.protocol_errors);
                self.phase = Phase::Ended;
                vec![Action::Close(Closing::Malformed(error))]
            }
            Phase::Ended => Vec::new(),
        }
    }

    /// One decoded message.
    pub(crate) fn on_message(&mut self, msg: ServiceMessage) -> Vec<Action> {
        self.on_message_with(msg, Vec::new())
    }

    /// One decoded message, its actions appended to `out` (an empty buffer the loop reuses, so
    /// a message of an open connection allocates no action list).
    pub(crate) fn on_message_with(&mut self, msg: ServiceMessage, out: Vec<Action>) -> Vec<Action> {
        match self.phase {
            Phase::Handshake => self.handshake(msg),
            Phase::Open => self.message(msg, out),
            Phase::Ended => out,
        }
    }

    /// The answer to a [`Then::Members`] group member query.
    pub(crate) fn on_members(
        &mut self,
        ack_id: i32,
        members: Result<Vec<Member>, HubError>,
    ) -> Vec<Action> {
        match members {
            Ok(members) => vec![Action::Reply(ServiceMessage::Ack {
                ack_id,
                status: ack_status::OK,
                message: None,
                extensions: Extensions::default(),
                payload: Some(group_members_payload(&members)),
            })],
            Err(HubError::Cluster(e)) => vec![Action::Reply(ServiceMessage::Ack {
                ack_id,
                status: ack_status::INTERNAL_SERVER_ERROR,
                message: Some(e.to_string()),
                extensions: Extensions::default(),
                payload: None,
            })],
            Err(HubError::Gone(_)) => {
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
    fn message(&mut self, msg: ServiceMessage, mut out: Vec<Action>) -> Vec<Action> {
        use ServiceMessage as M;
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
            } => {
                // The bytes are in the client's own protocol. A client of another node was
                // routed here over a link: its node's hub delivers them.
                let here = self.to_client(&connection_id, |_| Some(payload.clone()), &mut out);
                if !here {
                    out.push(Action::Hub(
                        HubOp::ConnectionData(ConnectionId::from(connection_id.as_str()), payload),
                        Then::Nothing,
                    ));
                }
            }
            M::MultiConnectionData {
                connection_list,
                payloads,
                ..
            } => {
                let msg = Arc::new(SerializedMessage::from_payload_map(&payloads));
                for id in &connection_list {
                    if !self.to_client(id, |p| msg.bytes_for(p).cloned(), &mut out) {
                        // Perhaps on another node: the hub publishes it there.
                        out.push(Action::Hub(
                            HubOp::SendConnection(ConnectionId::from(id.as_str()), msg.clone()),
                            Then::Nothing,
                        ));
                    }
                }
            }
            M::CloseConnection { connection_id, .. } => match self.world.client(&connection_id) {
                Lookup::Here(conn) => out.push(Action::CloseClient(conn)),
                Lookup::OtherHub => Metrics::inc(&self.metrics.server_cross_hub_refused),
                Lookup::Missing if self.world.clustered() => out.push(Action::Hub(
                    HubOp::CloseConnection(ConnectionId::from(connection_id.as_str()), None),
                    Then::Nothing,
                )),
                Lookup::Missing => {}
            },
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
                // A client of another hub gets the same answer as a missing one.
                if let Some(conn) = self.own_client(&connection_id) {
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
                } else if self.world.clustered()
                    && matches!(self.world.client(&connection_id), Lookup::Missing)
                {
                    // Perhaps on another node: it delivers there, or nobody has the client.
                    let frame = service::encode(&M::ClientInvocation {
                        invocation_id: invocation_id.clone(),
                        connection_id: connection_id.clone(),
                        caller_server_id: caller_server_id.clone(),
                        payloads,
                        extensions,
                    });
                    out.push(Action::Hub(
                        HubOp::InvokeElsewhere(frame),
                        Then::Invocation(Box::new(M::ErrorCompletion {
                            invocation_id,
                            connection_id,
                            caller_server_id,
                            error: Some(NO_CLIENT.to_owned()),
                            extensions: Extensions::default(),
                        })),
                    ));
                } else {
                    out.push(Action::Reply(M::ErrorCompletion {
                        invocation_id,
                        connection_id,
                        caller_server_id,
                        error: Some(NO_CLIENT.to_owned()),
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
                match self.world.client(connection_id) {
                    Lookup::Here(conn) => out.push(Action::Untrack(conn, invocation_id.clone())),
                    // A client that left may still have a caller waiting; one of another hub
                    // is none of this server's business.
                    Lookup::Missing => {}
                    Lookup::OtherHub => {
                        Metrics::inc(&self.metrics.server_cross_hub_refused);
                        return out;
                    }
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
    /// its handshake answer, after which the client is ready for multicasts. `false` when the
    /// client is not on this node but may be on another node of the cluster.
    fn to_client(
        &self,
        connection_id: &str,
        bytes_for: impl Fn(crate::protocol::HubProtocol) -> Option<Bytes>,
        out: &mut Vec<Action>,
    ) -> bool {
        let conn = match self.world.client(connection_id) {
            Lookup::Here(conn) => conn,
            Lookup::OtherHub => {
                Metrics::inc(&self.metrics.server_cross_hub_refused);
                return true;
            }
            Lookup::Missing if self.world.clustered() => return false,
            Lookup::Missing => {
                Metrics::inc(&self.metrics.outbox_dropped);
                return true;
            }
        };
        match bytes_for(conn.protocol()) {
            Some(bytes) => out.push(Action::Deliver(conn, bytes)),
            None => Metrics::inc(&self.metrics.outbox_dropped),
        }
        true
    }

    /// This hub's client with this id; a client of another hub is counted and not returned.
    fn own_client(&self, connection_id: &str) -> Option<ConnHandle> {
        match self.world.client(connection_id) {
            Lookup::Here(conn) => Some(conn),
            Lookup::OtherHub => {
                Metrics::inc(&self.metrics.server_cross_hub_refused);
                None
            }
            Lookup::Missing => None,
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

#[cfg(test)]
mod tests;
