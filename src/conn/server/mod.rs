//! The hub-server connection actor: one task per app-server WebSocket on `/server/?hub=`.
//!
//! It owns the socket, the varint-framed input stream (parsed by length prefix, never by
//! WebSocket frame), the keep-alive timers and a bounded outbox of encoded service frames. It
//! forwards data for clients straight into their outboxes (through the connection index), turns
//! multicast, group and existence messages into hub commands, and answers `*WithAck` messages
//! with an Ack once the hub has answered.
//!
//! **Backpressure, not drops, towards a hub server.** The outbox is a bounded channel; client
//! actors wait for room ([`ServerConnHandle::send`]), so a hub server that reads slowly slows the
//! reading of its own clients' sockets, like any TCP proxy. Nothing is dropped: losing a client's
//! bytes would corrupt its stream. Producers that must not wait (the hub actor) use
//! [`ServerConnHandle::try_send_frame`], whose failure is counted in
//! `switchboard_server_outbox_full_total`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_ws::{AggregatedMessage, AggregatedMessageStream, CloseCode, Session};
use bytes::{Buf, Bytes, BytesMut};
use futures_util::StreamExt;
use tokio::sync::mpsc;

use super::env::{ConnectionSlot, ServerEnv};
use crate::close::CloseReason;
use crate::hub::{
    ExistsQuery, HubGone, HubHandle, HubReply, MembershipTtl, Scope, SerializedMessage,
};
use crate::id::{ConnectionId, GroupName, UserId};
use crate::peer::ServerConnHandle;
use crate::protocol::service::{self, Extensions, ServiceMessage, ack_status};
use crate::telemetry::Metrics;

/// Frames a server connection's outbox holds.
const OUTBOX_CAPACITY: usize = 1024;
/// The SDK drops a connection after 30 s without receiving anything; ping well within that.
const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(5);
/// The SDK pings every 5 s; a server silent for this long is gone.
const SERVER_TIMEOUT: Duration = Duration::from_secs(30);
/// Time a server has to send its HandshakeRequest.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(15);

/// Everything a server connection actor starts with.
#[derive(Debug)]
pub(crate) struct ServerContext {
    /// Broker state.
    pub env: Arc<ServerEnv>,
    /// The hub.
    pub hub: HubHandle,
    /// `X-ASRS-Server-Id` (or the token's `nameid`).
    pub server_id: String,
    /// The connection's slot in the process-wide limit.
    pub slot: ConnectionSlot,
}

/// Run a hub-server connection until it ends.
pub(crate) async fn run(
    ctx: ServerContext,
    mut session: Session,
    mut stream: AggregatedMessageStream,
) {
    let env = ctx.env.clone();
    let max_frame = env.limits.max_server_message_size;
    let mut input = BytesMut::new();

    // Handshake: the first message must be a HandshakeRequest.
    let deadline = tokio::time::Instant::now() + HANDSHAKE_TIMEOUT;
    let connection_type = loop {
        let frozen = input.clone().freeze();
        match service::decode_bytes(&frozen, max_frame) {
            Ok(Some((
                Some(ServiceMessage::HandshakeRequest {
                    connection_type, ..
                }),
                used,
            ))) => {
                input.advance(used);
                break connection_type;
            }
            Ok(Some((_, _))) | Err(_) => {
                let _ = reply_handshake(
                    &mut session,
                    Some("The first message must be a HandshakeRequest."),
                )
                .await;
                let _ = session.close(Some(CloseCode::Policy.into())).await;
                return;
            }
            Ok(None) => {}
        }
        tokio::select! {
            frame = stream.next() => match frame {
                Some(Ok(AggregatedMessage::Binary(b))) => input.extend_from_slice(&b),
                Some(Ok(AggregatedMessage::Text(t))) => input.extend_from_slice(t.as_bytes()),
                Some(Ok(AggregatedMessage::Ping(p))) => {
                    if session.pong(&p).await.is_err() {
                        return;
                    }
                }
                Some(Ok(AggregatedMessage::Pong(_))) => {}
                _ => return,
            },
            _ = tokio::time::sleep_until(deadline) => {
                let _ = session.close(Some(CloseCode::Policy.into())).await;
                return;
            }
        }
    };
    if let Err(text) = env
        .policy
        .snapshot()
        .admit_server(connection_type.carries_clients())
    {
        Metrics::inc(&env.metrics.server_handshakes_failed);
        let _ = reply_handshake(&mut session, Some(&text)).await;
        let _ = session.close(Some(CloseCode::Normal.into())).await;
        return;
    }
    if reply_handshake(&mut session, None).await.is_err() {
        return;
    }

    let (handle, rx) =
        ServerConnHandle::new(ctx.server_id.clone(), connection_type, OUTBOX_CAPACITY);
    if ctx.hub.register_server(handle.clone()).await.is_err() {
        return;
    }
    Metrics::inc(&env.metrics.server_connections_opened);
    Metrics::inc(&env.metrics.server_connections_current);

    let mut actor = ServerActor {
        env: &env,
        hub: &ctx.hub,
        handle: &handle,
        last_sent: Instant::now(),
        last_received: Instant::now(),
        hub_pending: false,
    };
    actor.serve(&mut session, &mut stream, rx, input).await;

    ctx.hub.unregister_server(handle.id()).await;
    Metrics::dec(&env.metrics.server_connections_current);
    let _ = session.close(Some(CloseCode::Normal.into())).await;
    drop(ctx.slot);
}

async fn reply_handshake(session: &mut Session, error: Option<&str>) -> Result<(), ()> {
    let msg = ServiceMessage::HandshakeResponse {
        error_message: Some(error.unwrap_or("").to_owned()),
        extensions: Extensions::default(),
        connection_id: None,
    };
    session.binary(service::encode(&msg)).await.map_err(|_| ())
}

struct ServerActor<'a> {
    env: &'a ServerEnv,
    hub: &'a HubHandle,
    handle: &'a ServerConnHandle,
    last_sent: Instant,
    last_received: Instant,
    /// Something this server sent went through the hub actor and may still be queued there.
    hub_pending: bool,
}

impl ServerActor<'_> {
    async fn serve(
        &mut self,
        session: &mut Session,
        stream: &mut AggregatedMessageStream,
        mut rx: mpsc::Receiver<Bytes>,
        mut input: BytesMut,
    ) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut out = BytesMut::new();
        let mut shutdown = self.env.shutdown.clone();
        if !self.process_input(&mut input).await {
            return;
        }
        loop {
            tokio::select! {
                biased;
                _ = shutdown.wait_for(|stop| *stop) => return,
                _ = self.handle.close_requested() => {
                    tracing::info!(server = self.handle.server_id(), "closing hub server connection (service mode changed)");
                    return;
                }
                frame = rx.recv() => {
                    let Some(first) = frame else { return };
                    // Coalesce whatever else is queued into one WebSocket frame.
                    let frame = match rx.try_recv() {
                        Err(_) => first,
                        Ok(second) => {
                            out.extend_from_slice(&first);
                            out.extend_from_slice(&second);
                            while out.len() < 256 * 1024 {
                                match rx.try_recv() {
                                    Ok(more) => out.extend_from_slice(&more),
                                    Err(_) => break,
                                }
                            }
                            out.split().freeze()
                        }
                    };
                    let timeout = self.env.limits.send_timeout();
                    match tokio::time::timeout(timeout, session.binary(frame)).await {
                        Ok(Ok(())) => self.last_sent = Instant::now(),
                        Ok(Err(_)) => return,
                        Err(_elapsed) => {
                            Metrics::inc(&self.env.metrics.send_timeouts);
                            return;
                        }
                    }
                    if out.capacity() > 512 * 1024 {
                        out = BytesMut::new();
                    }
                }
                frame = stream.next() => {
                    match frame {
                        Some(Ok(AggregatedMessage::Binary(b))) => input.extend_from_slice(&b),
                        Some(Ok(AggregatedMessage::Text(t))) => input.extend_from_slice(t.as_bytes()),
                        Some(Ok(AggregatedMessage::Ping(p))) => {
                            if session.pong(&p).await.is_err() {
                                return;
                            }
                            continue;
                        }
                        Some(Ok(AggregatedMessage::Pong(_))) => continue,
                        _ => return,
                    }
                    self.last_received = Instant::now();
                    if !self.process_input(&mut input).await {
                        return;
                    }
                }
                _ = tick.tick() => {
                    let now = Instant::now();
                    if now.duration_since(self.last_received) >= SERVER_TIMEOUT {
                        tracing::warn!(server = self.handle.server_id(), "hub server timed out");
                        return;
                    }
                    if now.duration_since(self.last_sent) >= KEEP_ALIVE_INTERVAL {
                        let ping = service::encode(&ServiceMessage::Ping { messages: Vec::new() });
                        if session.binary(ping).await.is_err() {
                            return;
                        }
                        self.last_sent = now;
                    }
                }
            }
        }
    }

    /// Handle every complete frame in `input`; false when the connection must end.
    async fn process_input(&mut self, input: &mut BytesMut) -> bool {
        if input.is_empty() {
            return true;
        }
        let max_frame = self.env.limits.max_server_message_size;
        // Freeze the buffer so that payloads are zero-copy slices of it.
        let buf = input.split().freeze();
        let mut offset = 0;
        while offset < buf.len() {
            let rest = buf.slice(offset..);
            match service::decode_bytes(&rest, max_frame) {
                Ok(Some((msg, used))) => {
                    offset += used;
                    if let Some(msg) = msg
                        && !self.handle(msg).await
                    {
                        return false;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(server = self.handle.server_id(), error = %e, "malformed message from hub server");
                    Metrics::inc(&self.env.metrics.protocol_errors);
                    return false;
                }
            }
        }
        input.extend_from_slice(&buf[offset..]);
        true
    }

    /// Queue an answer to this server without waiting on the hub.
    fn reply(&self, msg: &ServiceMessage) {
        if self.handle.try_send_frame(service::encode(msg)).is_err() {
            Metrics::inc(&self.env.metrics.server_outbox_full);
        }
    }

    /// Turn the hub's answer to an operation already queued (in this server's order) into an
    /// Ack; only the wait for the answer runs beside the actor, so data keeps flowing. `false`
    /// when the hub is gone.
    fn ack_later<T: AckStatus + Send + 'static>(
        &self,
        ack_id: i32,
        queued: Result<HubReply<T>, HubGone>,
    ) -> bool {
        let Ok(reply) = queued else {
            return false;
        };
        let handle = self.handle.clone();
        let metrics = self.env.metrics.clone();
        tokio::spawn(async move {
            let status = match reply.await {
                Ok(answer) => answer.ack_status(),
                Err(HubGone) => ack_status::INTERNAL_SERVER_ERROR,
            };
            if handle
                .try_send_frame(service::encode(&ack(ack_id, status)))
                .is_err()
            {
                Metrics::inc(&metrics.server_outbox_full);
            }
        });
        true
    }

    /// Close the connections of `scope` except `excluded`, then Ack.
    async fn close_with_ack(
        &self,
        ack_id: i32,
        scope: Scope,
        excluded: &[String],
        reason: Option<String>,
    ) -> bool {
        let excluded = excluded
            .iter()
            .map(|s| ConnectionId::from(s.as_str()))
            .collect();
        let queued = self
            .hub
            .close_connections(scope, excluded, CloseReason::ByApplication(reason))
            .await;
        self.ack_later(ack_id, queued)
    }

    /// Handle one message; false when the connection must end.
    async fn handle(&mut self, msg: ServiceMessage) -> bool {
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
            if self.hub.barrier().await.is_err() {
                return false;
            }
            self.hub_pending = false;
        } else if !direct && !matches!(msg, M::Ping { .. }) {
            self.hub_pending = true;
        }
        let hub = self.hub;
        let sent = match msg {
            M::Ping { messages } => {
                self.ping(&messages).await;
                Ok(())
            }
            M::ConnectionData {
                connection_id,
                payload,
                ..
            } => {
                self.to_client(&connection_id, |_| Some(payload.clone()));
                Ok(())
            }
            M::MultiConnectionData {
                connection_list,
                payloads,
                ..
            } => {
                let msg = SerializedMessage::from_payload_map(&payloads);
                for id in &connection_list {
                    self.to_client(id, |p| msg.bytes_for(p).cloned());
                }
                Ok(())
            }
            M::CloseConnection { connection_id, .. } => {
                if let Some(conn) = self.env.connections.get(&connection_id) {
                    conn.close(CloseReason::ByAppServer);
                }
                Ok(())
            }
            M::UserData {
                user_id, payloads, ..
            } => {
                let msg = Arc::new(SerializedMessage::from_payload_map(&payloads));
                hub.send_user(UserId::from(user_id), msg).await
            }
            M::MultiUserData {
                user_list,
                payloads,
                ..
            } => {
                let msg = Arc::new(SerializedMessage::from_payload_map(&payloads));
                let users = user_list.into_iter().map(UserId::from).collect();
                hub.send_users(users, msg).await
            }
            M::BroadcastData {
                excluded_list,
                payloads,
                ..
            } => {
                let msg = Arc::new(SerializedMessage::from_payload_map(&payloads));
                let excluded = excluded_list
                    .iter()
                    .map(|s| ConnectionId::from(s.as_str()))
                    .collect();
                hub.send_all(msg, excluded).await
            }
            M::GroupBroadcastData {
                group_name,
                excluded_list,
                payloads,
                excluded_user_list,
                ..
            } => {
                let msg = Arc::new(SerializedMessage::from_payload_map(&payloads));
                hub.send_group(
                    GroupName::from(group_name),
                    msg,
                    excluded_list
                        .iter()
                        .map(|s| ConnectionId::from(s.as_str()))
                        .collect(),
                    excluded_user_list.into_iter().map(UserId::from).collect(),
                )
                .await
            }
            M::MultiGroupBroadcastData {
                group_list,
                payloads,
                ..
            } => {
                let msg = Arc::new(SerializedMessage::from_payload_map(&payloads));
                let groups = group_list.into_iter().map(GroupName::from).collect();
                hub.send_groups(groups, msg).await
            }
            M::JoinGroup {
                connection_id,
                group_name,
                ..
            } => {
                // Without an ack nobody waits for the answer.
                hub.add_to_group(connection_id.as_str().into(), group_name.into())
                    .await
                    .map(drop)
            }
            M::LeaveGroup {
                connection_id,
                group_name,
                ..
            } => {
                let id = ConnectionId::from(connection_id.as_str());
                match group_name {
                    Some(g) => hub.remove_from_group(id, g.into()).await.map(drop),
                    None => hub.remove_from_all_groups(id).await.map(drop),
                }
            }
            M::UserJoinGroup {
                user_id,
                group_name,
                extensions,
            } => hub
                .add_user_to_group(user_id.into(), group_name.into(), ttl_of(&extensions))
                .await
                .map(drop),
            M::UserLeaveGroup {
                user_id,
                group_name,
                ..
            } => match group_name {
                Some(g) => hub
                    .remove_user_from_group(user_id.into(), g.into())
                    .await
                    .map(drop),
                None => hub
                    .remove_user_from_all_groups(user_id.into())
                    .await
                    .map(drop),
            },
            M::JoinGroupWithAck {
                connection_id,
                group_name,
                ack_id,
                ..
            } => {
                let queued = hub
                    .add_to_group(connection_id.as_str().into(), group_name.into())
                    .await;
                return self.ack_later(ack_id, queued);
            }
            M::LeaveGroupWithAck {
                connection_id,
                group_name,
                ack_id,
                ..
            } => {
                let id = ConnectionId::from(connection_id.as_str());
                let queued = match group_name {
                    Some(g) => hub.remove_from_group(id, g.into()).await,
                    None => hub.remove_from_all_groups(id).await,
                };
                return self.ack_later(ack_id, queued);
            }
            M::UserJoinGroupWithAck {
                user_id,
                group_name,
                ack_id,
                extensions,
            } => {
                let queued = hub
                    .add_user_to_group(user_id.into(), group_name.into(), ttl_of(&extensions))
                    .await;
                return self.ack_later(ack_id, queued);
            }
            M::UserLeaveGroupWithAck {
                user_id,
                group_name,
                ack_id,
                ..
            } => {
                let queued = match group_name {
                    Some(g) => hub.remove_user_from_group(user_id.into(), g.into()).await,
                    None => hub.remove_user_from_all_groups(user_id.into()).await,
                };
                return self.ack_later(ack_id, queued);
            }
            M::CheckUserInGroupWithAck {
                user_id,
                group_name,
                ack_id,
                ..
            } => {
                let query = ExistsQuery::UserInGroup(user_id.into(), group_name.into());
                let queued = hub.exists(query).await;
                return self.ack_later(ack_id, queued);
            }
            M::CheckGroupExistenceWithAck {
                group_name, ack_id, ..
            } => {
                let query = ExistsQuery::Group(group_name.into());
                let queued = hub.exists(query).await;
                return self.ack_later(ack_id, queued);
            }
            M::CheckConnectionExistenceWithAck {
                connection_id,
                ack_id,
                ..
            } => {
                let query = ExistsQuery::Connection(connection_id.as_str().into());
                let queued = hub.exists(query).await;
                return self.ack_later(ack_id, queued);
            }
            M::CheckUserExistenceWithAck {
                user_id, ack_id, ..
            } => {
                let query = ExistsQuery::User(user_id.into());
                let queued = hub.exists(query).await;
                return self.ack_later(ack_id, queued);
            }
            M::CloseConnectionWithAck {
                connection_id,
                reason,
                ack_id,
                ..
            } => {
                let id = ConnectionId::from(connection_id.as_str());
                let queued = hub.close_connection(id, reason).await;
                return self.ack_later(ack_id, queued);
            }
            M::CloseConnectionsWithAck {
                reason,
                ack_id,
                excluded_list,
                ..
            } => {
                return self
                    .close_with_ack(ack_id, Scope::All, &excluded_list, reason)
                    .await;
            }
            M::CloseUserConnectionsWithAck {
                user_id,
                reason,
                ack_id,
                excluded_list,
                ..
            } => {
                let scope = Scope::User(user_id.into());
                return self
                    .close_with_ack(ack_id, scope, &excluded_list, reason)
                    .await;
            }
            M::CloseGroupConnectionsWithAck {
                group_name,
                reason,
                ack_id,
                excluded_list,
                ..
            } => {
                let scope = Scope::Group(group_name.into());
                return self
                    .close_with_ack(ack_id, scope, &excluded_list, reason)
                    .await;
            }
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
                if let Some(conn) = self.env.connections.get(&connection_id) {
                    let routed_elsewhere = conn
                        .server()
                        .is_some_and(|router| router.server_id() != caller_server_id);
                    if routed_elsewhere {
                        // The caller hears of the client leaving from us, not from its router.
                        conn.track_invocation(invocation_id.clone(), caller_server_id.clone());
                    }
                    if let Some(router) = conn.server()
                        && routed_elsewhere
                    {
                        let forward = ServiceMessage::ClientInvocation {
                            invocation_id,
                            connection_id: connection_id.clone(),
                            caller_server_id,
                            payloads,
                            extensions,
                        };
                        let _ = router.try_send_frame(service::encode(&forward));
                    }
                    if let Some(bytes) = msg.bytes_for(conn.protocol()) {
                        let _ = conn.outbox().push(bytes.clone());
                    }
                } else {
                    self.reply(&ServiceMessage::ErrorCompletion {
                        invocation_id,
                        connection_id,
                        caller_server_id,
                        error: Some("The client connection does not exist.".to_owned()),
                        extensions: Extensions::default(),
                    });
                }
                Ok(())
            }
            completion @ (M::ClientCompletion { .. } | M::ErrorCompletion { .. }) => {
                let (caller, invocation, connection) = match &completion {
                    M::ClientCompletion {
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
                    } => (
                        caller_server_id.clone(),
                        invocation_id.as_str(),
                        connection_id.as_str(),
                    ),
                    _ => (String::new(), "", ""),
                };
                if let Some(conn) = self.env.connections.get(connection) {
                    conn.untrack_invocation(invocation);
                }
                if caller != self.handle.server_id() {
                    hub.send_to_server(caller, service::encode(&completion))
                        .await
                } else {
                    Ok(())
                }
            }
            M::AccessKeyRequest { kid, .. } => {
                self.reply(&ServiceMessage::AccessKeyResponse {
                    kid,
                    access_key: None,
                    error_type: Some("NotSupportedException".to_owned()),
                    error_message: Some("Switchboard does not issue access keys for Microsoft Entra identities; use an access key in the connection string.".to_owned()),
                    extensions: Extensions::default(),
                });
                Ok(())
            }
            M::GroupMemberQuery {
                group_name, ack_id, ..
            } => {
                let members = match hub.group_connections(GroupName::from(group_name)).await {
                    Ok(reply) => reply.await,
                    Err(gone) => Err(gone),
                };
                match members {
                    Ok(members) => self.reply(&ServiceMessage::Ack {
                        ack_id,
                        status: ack_status::OK,
                        message: None,
                        extensions: Extensions::default(),
                        payload: Some(group_members_payload(&members)),
                    }),
                    Err(_) => return false,
                }
                Ok(())
            }
            // Handshake repeats, service-to-server messages and flow control: nothing to do.
            _ => Ok(()),
        };
        sent.is_ok()
    }

    /// Push bytes for one client, chosen by its protocol; the first frame a server sends a
    /// client is its handshake answer, after which the client is ready for multicasts.
    fn to_client(
        &self,
        connection_id: &str,
        bytes_for: impl Fn(crate::protocol::HubProtocol) -> Option<Bytes>,
    ) {
        let Some(conn) = self.env.connections.get(connection_id) else {
            Metrics::inc(&self.env.metrics.outbox_dropped);
            return;
        };
        match bytes_for(conn.protocol()) {
            Some(bytes) => {
                match conn.outbox().push(bytes) {
                    Ok(()) => Metrics::inc(&self.env.metrics.messages_delivered),
                    Err(crate::peer::PushError::Full) => {
                        Metrics::inc(&self.env.metrics.outbox_overflow)
                    }
                    Err(crate::peer::PushError::Closed) => {
                        Metrics::inc(&self.env.metrics.outbox_dropped)
                    }
                }
                if !conn.is_ready() {
                    conn.mark_ready();
                }
            }
            None => Metrics::inc(&self.env.metrics.outbox_dropped),
        }
    }

    async fn ping(&mut self, messages: &[String]) {
        if messages.is_empty() {
            return;
        }
        let key = messages[0].as_str();
        let value = messages.get(1).map(String::as_str).unwrap_or("");
        match key {
            "status" => {
                let has_clients = self.hub.client_count() > 0;
                self.reply(&service::ping(&[(
                    "status",
                    if has_clients { "1" } else { "0" },
                )]));
            }
            "servers" => {
                if let Ok(reply) = self.hub.server_ids().await
                    && let Ok(ids) = reply.await
                {
                    let ticks = crate::auth::unix_now();
                    let list = format!("{ticks}:{}", ids.join(";"));
                    self.reply(&service::ping(&[("servers", &list)]));
                }
            }
            "shutdown" if value.starts_with("fin") => {
                // A hub that is gone routes no new clients anyway.
                let _ = self.hub.shutdown_server(self.handle.id()).await;
                self.reply(&service::ping(&[("shutdown", "finack")]));
            }
            "echo" => self.reply(&service::ping(&[("echo", value)])),
            _ => {}
        }
    }
}

/// The Ack status an answer of the hub becomes.
trait AckStatus {
    fn ack_status(self) -> i32;
}

impl AckStatus for bool {
    /// Found / not found (a missing connection, a user not in the group).
    fn ack_status(self) -> i32 {
        if self {
            ack_status::OK
        } else {
            ack_status::NOT_FOUND
        }
    }
}

impl AckStatus for () {
    fn ack_status(self) -> i32 {
        ack_status::OK
    }
}

fn ack(ack_id: i32, status: i32) -> ServiceMessage {
    ServiceMessage::Ack {
        ack_id,
        status,
        message: None,
        extensions: Extensions::default(),
        payload: None,
    }
}

fn ttl_of(ext: &Extensions) -> MembershipTtl {
    match ext.ttl {
        None => MembershipTtl::Unlimited,
        Some(t) if t <= 0 => MembershipTtl::CurrentConnectionsOnly,
        Some(t) => MembershipTtl::For(Duration::from_secs(t as u64)),
    }
}

/// The GroupMemberQuery answer: `[[[connectionId, userId|nil], …], continuationToken|nil]`.
fn group_members_payload(members: &[crate::hub::Member]) -> Bytes {
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
