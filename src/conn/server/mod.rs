//! The hub-server connection's I/O loop: one task per app-server WebSocket on `/server/?hub=`.
//!
//! It owns the socket, the varint-framed input stream (parsed by length prefix, never by
//! WebSocket frame), the tick and a bounded outbox of encoded service frames; it decodes
//! messages, feeds them to the [`machine::ServerMachine`] and carries out the actions it answers
//! with: hub operations (queued in order; for `*WithAck` messages only the wait for the hub's
//! answer runs beside the loop, then an Ack goes out), pushes into clients' outboxes, replies.
//! It must not decide anything about the protocol itself: that is the machine's.
//!
//! **Backpressure, not drops, towards a hub server.** The outbox is bounded in frames and in
//! bytes ([`ServerOutbox`]; its bytes are room again once a burst is written); client actors
//! wait for room ([`ServerConnHandle::send`]), so a hub server that reads slowly slows the
//! reading of its own clients' sockets, like any TCP proxy. Nothing is dropped: losing a client's
//! bytes would corrupt its stream. Producers that must not wait (the hub actor) use
//! [`ServerConnHandle::try_send_frame`], whose failure is counted in
//! `switchboard_server_outbox_full_total`.
//!
//! **Supervision.** A panic in the actor is caught, logged with the hub and server id and
//! counted (`switchboard_actor_panics_total{actor="server"}`); the [`Registered`] guard takes
//! the connection out of its hub (whose routed clients are then closed) and the slot guard
//! frees its connection slot.

mod edges;
mod log;
pub(crate) mod machine;
pub(crate) mod socket;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};

use self::edges::{Ended, Handshook, close_frame, frame_ready, handshake_actions};
use self::machine::{Action, Closing, HubOp, ServerMachine, Then, World, ack};
use self::socket::{Incoming, ServerSocket};
use super::env::{ConnectionSlot, ServerEnv};
use super::index::Lookup;
use crate::close::{CloseCategory, CloseReason, WsClose};
use crate::hub::{HubError, HubGone, HubHandle, HubReply};
use crate::id::ServerConnId;
use crate::peer::{PushError, ServerConnHandle, ServerOutbox, ServerOutboxBounds};
use crate::protocol::service::{self, ServiceMessage, ServiceProtocolError, ack_status};
use crate::supervise::{ActorKind, supervised};
use crate::telemetry::{Direction, Endpoint, Metrics};

/// Frames a server connection's outbox holds.
const OUTBOX_CAPACITY: usize = 1024;
/// Actions the reused action buffer keeps room for between messages.
const RETAINED_ACTIONS: usize = 16;
/// Time a server has to send its HandshakeRequest.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(15);

/// Test hook: a server whose id starts with this panics right after it registered with its hub.
#[cfg(test)]
pub(crate) const PANIC_AFTER_REGISTRATION: &str = "test-hook-panic-after-registration-";

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
    /// The hub server's address (for the resource logs).
    pub ip: Option<std::net::IpAddr>,
}

/// What the machine looks up: the connection index, the hub's client count, the mode policy.
struct Surroundings {
    env: Arc<ServerEnv>,
    hub: HubHandle,
}

impl World for Surroundings {
    fn client(&self, id: &str) -> Lookup {
        self.env.connections.lookup(self.hub.name().as_str(), id)
    }

    fn hub_has_clients(&self) -> bool {
        self.hub.client_count() > 0
    }

    fn admit(&self, carries_clients: bool) -> Result<(), String> {
        self.env.policy.snapshot().admit_server(carries_clients)
    }

    fn clustered(&self) -> bool {
        self.hub.cluster().is_some()
    }
}

/// Run a hub-server connection until it ends; a panic inside is caught, logged and counted
/// (see the module docs).
pub(crate) async fn run<S: ServerSocket>(ctx: ServerContext, socket: S) {
    let metrics = ctx.env.metrics.clone();
    let (hub, server_id) = (ctx.hub.name().clone(), ctx.server_id.clone());
    let actor = Box::pin(serve_connection(ctx, socket));
    supervised(ActorKind::Server, &metrics, hub.as_str(), &server_id, actor).await;
}

/// A registered hub-server connection: its place in its hub and its count in
/// `switchboard_server_connections`. Released by [`release`](Self::release) when the
/// connection ends, or by `Drop` when the actor never got there (a panic, a dropped task).
struct Registered {
    hub: HubHandle,
    id: ServerConnId,
    metrics: Arc<Metrics>,
    released: bool,
}

impl Registered {
    /// Leave the hub (waiting for room in its inbox) and the gauges; count the close.
    async fn release(mut self, category: CloseCategory) {
        self.hub.unregister_server(self.id).await;
        Metrics::dec(&self.metrics.server_connections_current);
        self.metrics.labelled.server_closed(category);
        self.released = true;
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        if !self.released {
            self.hub.unregister_server_detached(self.id);
            Metrics::dec(&self.metrics.server_connections_current);
            self.metrics
                .labelled
                .server_closed(CloseCategory::ServiceTransientError);
        }
    }
}

async fn serve_connection<S: ServerSocket>(ctx: ServerContext, mut socket: S) {
    let env = ctx.env.clone();
    let max_frame = env.limits.max_server_message_size;
    let world = Surroundings {
        env: env.clone(),
        hub: ctx.hub.clone(),
    };
    let mut machine = ServerMachine::new(
        ctx.server_id.clone(),
        world,
        env.metrics.clone(),
        Instant::now(),
    );
    let mut input = BytesMut::new();

    // Handshake: the first message must be a HandshakeRequest.
    let deadline = tokio::time::Instant::now() + HANDSHAKE_TIMEOUT;
    let (connection_type, answer) = loop {
        // Payloads copied out: the handshake is small, and the buffer is not frozen (which
        // would copy it whole on every arrival).
        let actions = match service::decode(&input, max_frame) {
            Ok(Some((Some(msg), used))) => {
                input.advance(used);
                machine.on_message(msg)
            }
            Ok(Some((None, _))) => machine.on_undecodable(ServiceProtocolError::InvalidData(
                "The first message must be a HandshakeRequest.".to_owned(),
            )),
            Err(e) => machine.on_undecodable(e),
            Ok(None) => Vec::new(),
        };
        if !actions.is_empty() {
            match handshake_actions(&mut socket, actions).await {
                Handshook::Open(connection_type, answer) => break (connection_type, answer),
                Handshook::Close(close, why) => {
                    let why = why.as_deref().unwrap_or(close.reason.as_str());
                    log::refused(&ctx, why);
                    socket.close(&close).await;
                    return;
                }
                Handshook::Gone => return,
            }
        }
        tokio::select! {
            frame = socket.recv() => match frame {
                Incoming::Data(b) => input.extend_from_slice(&b),
                Incoming::Control => {}
                Incoming::Gone => return,
                Incoming::Invalid(close) => {
                    Metrics::inc(&env.metrics.protocol_errors);
                    socket.close(&close).await;
                    return;
                }
            },
            _ = tokio::time::sleep_until(deadline) => {
                let close = WsClose::new(WsClose::POLICY, "No HandshakeRequest arrived in time.");
                socket.close(&close).await;
                return;
            }
        }
    };

    let bounds = ServerOutboxBounds {
        frames: OUTBOX_CAPACITY,
        bytes: env.limits.server_outbox_max_bytes,
    };
    let (handle, rx) = ServerConnHandle::new(
        ctx.server_id.clone(),
        connection_type,
        bounds,
        env.metrics.clone(),
    );
    if ctx.hub.register_server(handle.clone()).await.is_err() {
        return;
    }
    Metrics::inc(&env.metrics.server_connections_opened);
    Metrics::inc(&env.metrics.server_connections_current);
    log::started(&ctx, connection_type);
    env.metrics.labelled.server_opened();
    let registered = Registered {
        hub: ctx.hub.clone(),
        id: handle.id(),
        metrics: env.metrics.clone(),
        released: false,
    };

    for frame in answer {
        if socket.send(frame).await.is_err() {
            registered.release(CloseCategory::Normal).await;
            log::ended(&ctx, "its socket failed during the handshake", false);
            drop(ctx.slot);
            return;
        }
    }
    #[cfg(test)]
    if ctx.server_id.starts_with(PANIC_AFTER_REGISTRATION) {
        panic!("server test hook: panic after registration");
    }

    let now = Instant::now();
    machine.on_received(now);
    machine.on_sent(now);
    let mut io = ServerIo {
        env: &env,
        hub: &ctx.hub,
        handle: &handle,
        socket: &mut socket,
        machine,
        spare: Vec::new(),
        closing: WsClose::normal(),
        ended: Ended::default(),
        category: CloseCategory::Normal,
        delivered: (0, 0),
    };
    io.serve(rx, input).await;
    let closing = std::mem::replace(&mut io.closing, WsClose::normal());
    let ended = std::mem::take(&mut io.ended);

    registered.release(io.category).await;
    log::ended(&ctx, &ended.why, ended.normal);
    socket.close(&closing).await;
    drop(ctx.slot);
}

/// The open connection: the socket, the machine, and what its actions reach.
struct ServerIo<'a, S> {
    env: &'a ServerEnv,
    hub: &'a HubHandle,
    handle: &'a ServerConnHandle,
    socket: &'a mut S,
    machine: ServerMachine<Surroundings>,
    /// The action buffer, reused from message to message.
    spare: Vec<Action>,
    /// The close frame the socket gets when the connection ends (normal unless the server's
    /// input was refused).
    closing: WsClose,
    /// Why the connection ended, for the resource logs.
    ended: Ended,
    /// What the close is counted as.
    category: CloseCategory,
    /// Messages and bytes handed to client outboxes since the last count (counted once per
    /// read, not per message).
    delivered: (u64, u64),
}

impl<S: ServerSocket> ServerIo<'_, S> {
    async fn serve(&mut self, mut rx: ServerOutbox, mut input: BytesMut) {
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
                // The Ref the wait answers with is not Send: drop it inside.
                () = async { let _ = shutdown.wait_for(|stop| *stop).await; } => {
                    self.closing = WsClose::going_away();
                    self.ended.why = "the broker is stopping".into();
                    self.category = CloseCategory::ServiceReload;
                    return;
                }
                _ = self.handle.close_requested() => {
                    tracing::info!(server = self.handle.server_id(), "closing hub server connection (service mode changed)");
                    self.ended.why = "the service mode changed and no longer takes hub servers".into();
                    return;
                }
                frame = rx.recv() => {
                    let Some(first) = frame else { return };
                    // Coalesce whatever else is queued into one WebSocket frame.
                    let mut frames = 1;
                    let frame = match rx.try_recv() {
                        None => first,
                        Some(second) => {
                            out.extend_from_slice(&first);
                            out.extend_from_slice(&second);
                            frames += 1;
                            while out.len() < 256 * 1024 {
                                match rx.try_recv() {
                                    Some(more) => {
                                        out.extend_from_slice(&more);
                                        frames += 1;
                                    }
                                    None => break,
                                }
                            }
                            out.split().freeze()
                        }
                    };
                    self.env.metrics.labelled.traffic(Endpoint::Server, Direction::Out, frames, frame.len() as u64);
                    let timeout = self.env.limits.send_timeout();
                    match tokio::time::timeout(timeout, self.socket.send(frame)).await {
                        Ok(Ok(())) => {
                            // The burst's bytes are room in the outbox again.
                            rx.written();
                            self.machine.on_sent(Instant::now());
                        }
                        Ok(Err(_)) => {
                            self.ended = Ended::abnormal("a write to its socket failed");
                            return;
                        }
                        Err(_elapsed) => {
                            Metrics::inc(&self.env.metrics.send_timeouts);
                            self.ended = Ended::abnormal(
                                "a write did not finish within limits.send_timeout_secs: the hub server stopped reading",
                            );
                            self.category = CloseCategory::SlowClient;
                            return;
                        }
                    }
                    if out.capacity() > 512 * 1024 {
                        out = BytesMut::new();
                    }
                }
                frame = self.socket.recv() => {
                    match frame {
                        Incoming::Data(b) => {
                            self.env.metrics.labelled.traffic(Endpoint::Server, Direction::In, 0, b.len() as u64);
                            input.extend_from_slice(&b);
                        }
                        Incoming::Control => continue,
                        Incoming::Gone => return,
                        Incoming::Invalid(close) => {
                            tracing::warn!(server = self.handle.server_id(), code = close.code, reason = %close.reason, "hub server input refused");
                            Metrics::inc(&self.env.metrics.protocol_errors);
                            self.ended = Ended::abnormal(format!("its input was refused: {}", close.reason));
                            self.category = CloseCategory::BadRequest;
                            self.closing = close;
                            return;
                        }
                    }
                    self.machine.on_received(Instant::now());
                    if !self.process_input(&mut input).await {
                        return;
                    }
                }
                _ = tick.tick() => {
                    let actions = self.machine.on_tick(Instant::now());
                    if !self.apply(actions).await {
                        return;
                    }
                }
            }
        }
    }

    /// Handle every complete frame in `input`; false when the connection must end.
    async fn process_input(&mut self, input: &mut BytesMut) -> bool {
        if !frame_ready(input, self.env.limits.max_server_message_size) {
            return true;
        }
        let max_frame = self.env.limits.max_server_message_size;
        // Freeze the buffer so that payloads are zero-copy slices of it.
        let buf = input.split().freeze();
        let mut offset = 0;
        let mut messages = 0;
        let ok = 'frames: {
            while offset < buf.len() {
                let rest = buf.slice(offset..);
                match service::decode_bytes(&rest, max_frame) {
                    Ok(Some((msg, used))) => {
                        offset += used;
                        messages += 1;
                        if let Some(msg) = msg {
                            log::message(
                                &self.env.events,
                                self.hub.name().as_str(),
                                self.handle.server_id(),
                                &msg,
                            );
                            let spare = std::mem::take(&mut self.spare);
                            let actions = self.machine.on_message_with(msg, spare);
                            if !self.apply(actions).await {
                                break 'frames false;
                            }
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        tracing::warn!(server = self.handle.server_id(), error = %e, "malformed message from hub server");
                        let actions = self.machine.on_undecodable(e);
                        break 'frames self.apply(actions).await;
                    }
                }
            }
            input.extend_from_slice(&buf[offset..]);
            true
        };
        // Counted once per read (the bytes when they arrived), with what the read's messages
        // handed to clients.
        let labelled = &self.env.metrics.labelled;
        labelled.traffic(Endpoint::Server, Direction::In, messages, 0);
        let (delivered, bytes) = std::mem::take(&mut self.delivered);
        if delivered != 0 {
            labelled.traffic(Endpoint::Client, Direction::Out, delivered, bytes);
            self.hub.stats().traffic(Direction::Out, delivered, bytes);
        }
        ok
    }

    /// Carry out the machine's actions in order; false when the connection must end. The
    /// emptied buffer is kept for the next message.
    async fn apply(&mut self, actions: Vec<Action>) -> bool {
        let mut queue = VecDeque::from(actions);
        while let Some(action) = queue.pop_front() {
            match action {
                Action::Send(msg) => {
                    if self.socket.send(service::encode(&msg)).await.is_err() {
                        return false;
                    }
                }
                Action::Open(_) => {}
                Action::Hub(op, then) => match self.hub_op(op, then).await {
                    Ok(more) => {
                        for action in more.into_iter().rev() {
                            queue.push_front(action);
                        }
                    }
                    Err(HubGone) => return false,
                },
                Action::Deliver(conn, bytes) => {
                    let metrics = &self.env.metrics;
                    let len = bytes.len() as u64;
                    match conn.outbox().push(bytes) {
                        Ok(()) => {
                            Metrics::inc(&metrics.messages_delivered);
                            self.delivered.0 += 1;
                            self.delivered.1 += len;
                        }
                        Err(PushError::Full) => Metrics::inc(&metrics.outbox_overflow),
                        Err(PushError::Closed) => Metrics::inc(&metrics.outbox_dropped),
                    }
                    if !conn.is_ready() {
                        conn.mark_ready();
                    }
                }
                Action::Invoke(conn, bytes) => {
                    let _ = conn.outbox().push(bytes);
                }
                Action::Track(conn, invocation_id, caller) => {
                    conn.track_invocation(invocation_id, caller)
                }
                Action::Untrack(conn, invocation_id) => conn.untrack_invocation(&invocation_id),
                Action::Forward(router, frame) => {
                    let _ = router.try_send_frame(frame);
                }
                Action::CloseClient(conn) => conn.close(CloseReason::ByAppServer),
                Action::Reply(msg) => self.reply(&msg),
                Action::Close(closing) => {
                    if closing == Closing::TimedOut {
                        tracing::warn!(server = self.handle.server_id(), "hub server timed out");
                    }
                    self.category = match closing {
                        Closing::TimedOut => CloseCategory::PingTimeout,
                        Closing::Malformed(_) | Closing::BadHandshake => CloseCategory::BadRequest,
                        Closing::HubGone => CloseCategory::ServiceTransientError,
                        Closing::NotAdmitted => CloseCategory::Normal,
                    };
                    self.closing = close_frame(&closing);
                    self.ended = match &closing {
                        Closing::HubGone => Ended::abnormal("its hub failed"),
                        _ => Ended::abnormal(self.closing.reason.clone()),
                    };
                    return false;
                }
            }
        }
        // Empty, with its capacity: the next message's actions go here (unless a message to many
        // clients grew it; that capacity is not kept).
        let spare = Vec::from(queue);
        if spare.capacity() <= RETAINED_ACTIONS {
            self.spare = spare;
        }
        true
    }

    /// Queue an answer to this server without waiting on the hub.
    fn reply(&self, msg: &ServiceMessage) {
        if self.handle.try_send_frame(service::encode(msg)).is_err() {
            Metrics::inc(&self.env.metrics.server_outbox_full);
        }
    }

    /// Queue one hub operation and deal with its answer as `then` says; the actions the machine
    /// answers a waited-for answer with, or `HubGone` when the connection must end.
    async fn hub_op(&mut self, op: HubOp, then: Then) -> Result<Vec<Action>, HubGone> {
        let hub = self.hub;
        let queued = match op {
            HubOp::Barrier => hub.barrier().await.map(|()| Queued::Done),
            HubOp::SendAll(msg, excluded) => hub.send_all(msg, excluded).await.map(done),
            HubOp::SendUser(user, msg) => hub.send_user(user, msg).await.map(done),
            HubOp::SendConnection(id, msg) => hub.send_connection(id, msg).await.map(done),
            HubOp::ConnectionData(id, payload) => hub.connection_data(id, payload).await.map(done),
            HubOp::SendUsers(users, msg) => hub.send_users(users, msg).await.map(done),
            HubOp::SendGroup(group, msg, excluded, excluded_users) => hub
                .send_group(group, msg, excluded, excluded_users)
                .await
                .map(done),
            HubOp::SendGroups(groups, msg) => hub.send_groups(groups, msg).await.map(done),
            HubOp::SendToServer(id, frame) => hub.send_to_server(id, frame).await.map(done),
            HubOp::InvokeElsewhere(frame) => {
                let reply = match hub.invoke_elsewhere(frame).await {
                    Ok(reply) => reply,
                    Err(gone) => return Err(gone),
                };
                if let Then::Invocation(error) = then {
                    let handle = self.handle.clone();
                    let metrics = self.env.metrics.clone();
                    tokio::spawn(async move {
                        if !matches!(reply.await, Ok(true))
                            && handle.try_send_frame(service::encode(&error)).is_err()
                        {
                            Metrics::inc(&metrics.server_outbox_full);
                        }
                    });
                }
                return Ok(Vec::new());
            }
            HubOp::AddToGroup(id, g) => hub.add_to_group(id, g).await.map(Queued::Found),
            HubOp::RemoveFromGroup(id, g) => hub.remove_from_group(id, g).await.map(Queued::Found),
            HubOp::RemoveFromAllGroups(id) => {
                hub.remove_from_all_groups(id).await.map(Queued::Found)
            }
            HubOp::AddUserToGroup(user, g, ttl) => hub
                .add_user_to_group(user, g, ttl)
                .await
                .map(Queued::Finished),
            HubOp::RemoveUserFromGroup(user, g) => hub
                .remove_user_from_group(user, g)
                .await
                .map(Queued::Finished),
            HubOp::RemoveUserFromAllGroups(user) => hub
                .remove_user_from_all_groups(user)
                .await
                .map(Queued::Finished),
            HubOp::Exists(query) => hub.exists(query).await.map(Queued::Found),
            HubOp::CloseConnection(id, reason) => {
                hub.close_connection(id, reason).await.map(Queued::Found)
            }
            HubOp::CloseConnections(scope, excluded, reason) => hub
                .close_connections(scope, excluded, reason)
                .await
                .map(Queued::Finished),
            HubOp::GroupConnections(group) => {
                let members = match hub.group_connections(group).await {
                    Ok(reply) => reply.await,
                    Err(gone) => Err(gone.into()),
                };
                let Then::Members(ack_id) = then else {
                    return match members {
                        Err(HubError::Gone(gone)) => Err(gone),
                        _ => Ok(Vec::new()),
                    };
                };
                return Ok(self.machine.on_members(ack_id, members));
            }
            HubOp::ServerIds => {
                let ids = match hub.server_ids().await {
                    Ok(reply) => reply.await.map_err(|_| HubGone),
                    Err(gone) => Err(gone),
                };
                return Ok(self.machine.on_server_ids(ids, crate::auth::unix_now()));
            }
            HubOp::ShutdownServer => hub.shutdown_server(self.handle.id()).await.map(done),
        };
        match (queued, then) {
            (Err(HubGone), Then::Ignore) => Ok(Vec::new()),
            (Err(HubGone), _) => Err(HubGone),
            (Ok(queued), Then::Ack(ack_id)) => {
                self.ack_later(ack_id, queued);
                Ok(Vec::new())
            }
            // Without an ack nobody waits for the answer.
            (Ok(_), _) => Ok(Vec::new()),
        }
    }

    /// Turn the hub's answer to an operation already queued (in this server's order) into an
    /// Ack; only the wait for the answer runs beside the loop, so data keeps flowing.
    fn ack_later(&self, ack_id: i32, queued: Queued) {
        let handle = self.handle.clone();
        let metrics = self.env.metrics.clone();
        tokio::spawn(async move {
            let status = match queued {
                Queued::Done => Ok(ack_status::OK),
                Queued::Found(reply) => reply.await.map(found_status),
                Queued::Finished(reply) => reply.await.map(|()| ack_status::OK),
            }
            .unwrap_or(ack_status::INTERNAL_SERVER_ERROR);
            if handle
                .try_send_frame(service::encode(&ack(ack_id, status)))
                .is_err()
            {
                Metrics::inc(&metrics.server_outbox_full);
            }
        });
    }
}

/// A hub operation in the hub's queue, and what its answer will be.
enum Queued {
    /// Nothing to answer.
    Done,
    /// Found / not found (a missing connection, a user not in the group).
    Found(HubReply<bool>),
    /// Done, once the hub got to it.
    Finished(HubReply<()>),
}

fn done((): ()) -> Queued {
    Queued::Done
}

/// The Ack status of a found / not found answer.
fn found_status(found: bool) -> i32 {
    if found {
        ack_status::OK
    } else {
        ack_status::NOT_FOUND
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_whole_or_refused_frame_is_ready() {
        assert!(!frame_ready(b"", 16));
        // The prefix is not complete yet.
        assert!(!frame_ready(&[0x80], 1 << 20));
        // 3 bytes announced, 2 arrived; then all 3.
        assert!(!frame_ready(&[0x03, 1, 2], 16));
        assert!(frame_ready(&[0x03, 1, 2, 3], 16));
        // Too large or malformed prefixes are decoded at once (and refused).
        assert!(frame_ready(&[0x11], 16));
        assert!(frame_ready(&[0xff, 0xff, 0xff, 0xff, 0xff], 16));
    }
}
