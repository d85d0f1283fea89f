//! The client connection actor: one task per client, whatever its transport (WebSocket,
//! Server-Sent Events or long polling, see [`Transport`](super::transport)).
//!
//! It owns the socket, the input buffer, the negotiated protocol and the keep-alive timers. It
//! runs in two phases: the handshake (nothing is sent before the handshake answer, which goes
//! out alone in the first frame), then one `select!` loop over inbound frames, the outbox and a
//! one-second tick. Every way out of the loop goes through the single cleanup at the end of
//! [`run`], which deregisters from the hub and closes the socket.
//!
//! Every way out is a [`CloseReason`](crate::close::CloseReason), which decides the Close message
//! (text, `allowReconnect`) the client gets, if any.

use std::sync::Arc;
use std::time::Instant;

use bytes::{Buf, Bytes, BytesMut};

use super::env::{ClientEnv, ConnectionSlot, ResumableEntry};
use super::stateful::{ReplayBuffer, is_tracked};
use super::transport::{Inbound, Resumption, SendError, Transport};
use super::upstream::{self, UpstreamLink};
use crate::auth::{Identity, dotnet_claim_type};
use crate::close::CloseReason;
use crate::hub::{AdmitError, AdmitRequest, HubHandle};
use crate::id::ConnectionId;
use crate::id::UserId;
use crate::peer::ConnHandle;
use crate::peer::ServerConnHandle;
use crate::protocol::service::{self, Extensions, ServiceMessage};
use crate::protocol::{self, Completion, CompletionOutcome, HubMessage, HubProtocol, handshake};
use crate::routing::sticky::StickyMode;
use crate::routing::{ClientRoute, MessageAction};
use crate::telemetry::Metrics;
use crate::upstream::{UpstreamConnection, unframed_invocation as upstream_body};
use tokio::sync::mpsc;

/// ErrorCompletion text for a client invocation whose client left before answering.
pub(crate) const CLIENT_LEFT_ERROR: &str = "Connection disconnected.";

/// Input buffers larger than this are released once drained, so an idle connection keeps none.
const RETAINED_INPUT_CAPACITY: usize = 4096;

/// Everything a client connection actor starts with.
#[derive(Debug)]
pub(crate) struct ClientContext {
    /// What the actor may reach of the broker.
    pub env: Arc<ClientEnv>,
    /// The hub the client connects to.
    pub hub: HubHandle,
    /// The connection's public id.
    pub connection_id: ConnectionId,
    /// Who the token spoke for.
    pub identity: Identity,
    /// The connect request's headers (for the hub server's OpenConnection).
    pub headers: Vec<(String, Vec<String>)>,
    /// The connect request's query, with `?` (for the hub server's OpenConnection).
    pub query: String,
    /// The connection's slot in the process-wide limit, released when the actor ends.
    pub slot: ConnectionSlot,
    /// Stateful reconnect was negotiated: the connection token and where a reconnecting
    /// WebSocket arrives.
    pub resume: Option<Resume>,
}

/// Where a stateful-reconnect connection's client comes back.
#[derive(Debug)]
pub(crate) struct Resume {
    /// The connection's entry in [`Resumable`](super::env::Resumable), removed when the actor
    /// ends.
    pub entry: ResumableEntry,
    /// Reconnecting WebSockets.
    pub rx: mpsc::Receiver<Resumption>,
}

/// Why the connection loop ended: every way out is a [`CloseReason`], which decides whether a
/// Close message is written before the transport closes.
type Exit = CloseReason;

/// Run a client connection until it ends.
///
/// In three parts, so that an idle connection's task stays small: the handshake and admission
/// ([`open`]) and the cleanup ([`Admitted::close`]) are boxed futures that exist only while
/// they run; the task holds the admitted connection and its serve loop. (As one async fn the
/// task kept every part's state, and the context and transport twice: about 3.7 KB each.)
pub(crate) fn run(ctx: ClientContext, transport: Transport) -> impl Future<Output = ()> {
    // Boxed before the task's future exists, which then captures a pointer instead of both.
    let opening = Box::pin(open(ctx, transport));
    async move {
        let Some(mut admitted) = opening.await else {
            return;
        };
        let exit = admitted.serve().await;
        Box::pin(admitted.close(exit)).await;
    }
}

/// A client past its handshake and admitted to its hub: what serving and closing it need.
struct Admitted {
    env: Arc<ClientEnv>,
    ctx: ClientContext,
    transport: Transport,
    conn: ConnHandle,
    route: ClientRoute,
    protocol: HubProtocol,
    serverless: bool,
    upstream_info: UpstreamConnection,
    resume: Option<mpsc::Receiver<Resumption>>,
    /// The client's handshake request, as it sent it.
    raw_request: Bytes,
    /// Bytes that arrived after the handshake request.
    input: BytesMut,
    _resumable: Option<ResumableEntry>,
}

/// The handshake and admission; `None` when the connection ended there.
async fn open(mut ctx: ClientContext, mut transport: Transport) -> Option<Admitted> {
    let env = ctx.env.clone();
    let (mut resume, mut resumable) = match ctx.resume.take() {
        Some(Resume { entry, rx }) => (Some(rx), Some(entry)),
        None => (None, None),
    };
    let limits = &env.limits;
    let mut input = BytesMut::new();

    // Phase 1: the handshake request.
    let deadline = tokio::time::Instant::now() + limits.handshake_timeout();
    let (request, raw_request) = loop {
        match handshake::parse_request(&input) {
            Ok(Some((req, consumed))) => break (req, input.split_to(consumed).freeze()),
            Ok(None) if input.len() > limits.max_message_size => {
                fail_handshake(&env, transport, handshake::HANDSHAKE_CANCELED, None).await;
                return None;
            }
            Ok(None) => {}
            Err(e) => {
                fail_handshake(&env, transport, &e.response_text(true), None).await;
                return None;
            }
        }
        tokio::select! {
                        inbound = transport.recv() => match inbound {
                Inbound::Data(b) => input.extend_from_slice(&b),
                Inbound::Gone | Inbound::Closed => return None,
                Inbound::Invalid(_) => {
                    fail_handshake(&env, transport, handshake::HANDSHAKE_CANCELED, None).await;
                    return None;
                }
            },
            _ = tokio::time::sleep_until(deadline) => {
                fail_handshake(&env, transport, handshake::HANDSHAKE_CANCELED, None).await;
                return None;
            }
        }
    };

    // WebSockets carry binary frames, so every protocol is available.
    let protocol = match handshake::select_protocol(&request, transport.binary_supported()) {
        Ok(p) => p,
        Err(text) => {
            let frame_kind = HubProtocol::from_name(&request.protocol);
            fail_handshake(&env, transport, &text, frame_kind).await;
            return None;
        }
    };

    // Serverless with an upstream: the upstream accepts the client first (its `connected` event).
    let upstream_info = UpstreamConnection {
        hub: ctx.hub.name().as_str().to_owned(),
        connection_id: ctx.connection_id.as_str().to_owned(),
        user_id: ctx.identity.user_id.clone(),
        claims: ctx.identity.claims.clone(),
        client_query: ctx.query.clone(),
    };
    // One snapshot of the mode policy answers every connect-time question.
    let policy = env.policy.snapshot();
    let serverless = policy.is_serverless();
    if serverless && let Err(text) = upstream::send_connected(&env, &upstream_info).await {
        fail_handshake(&env, transport, &text, Some(protocol)).await;
        return None;
    }

    // Stateful reconnect needs handshake version 2 (a lower one turns it off): stop accepting
    // reconnects for this token at once.
    if request.version < 2 && resume.take().is_some() {
        resumable = None;
    }

    // Admission: the hub decides the route in the current mode and registers the client.
    let admit = AdmitRequest {
        id: ctx.connection_id.clone(),
        user: ctx.identity.user_id.as_deref().map(UserId::from),
        protocol,
        outbox_max_messages: limits.outbox_max_messages,
        outbox_max_bytes: limits.outbox_max_bytes,
        policy: policy.clone(),
        sticky_server: ctx.identity.claim("asrs.s.sn").map(str::to_owned),
        sticky_mode: StickyMode::from_claim(ctx.identity.claim("asrs.s.ssticky")),
    };
    let (conn, route) = match ctx.hub.admit(admit).await {
        Ok(admitted) => admitted,
        Err(AdmitError::Refused(text)) => {
            fail_handshake(&env, transport, &text, Some(protocol)).await;
            return None;
        }
        Err(AdmitError::Gone(_)) => return None,
    };
    env.connections.insert(conn.clone());
    Metrics::inc(&env.metrics.connections_opened);
    Metrics::inc(&env.metrics.connections_current);
    tracing::debug!(connection = %ctx.connection_id, hub = %ctx.hub.name(), protocol = protocol.name(), ?route, "client connected");
    if route != ClientRoute::ToServer || conn.server().is_none() {
        // Kept for a hub server's OpenConnection only (the upstream has its own copy).
        ctx.headers = Vec::new();
        ctx.query = String::new();
        ctx.identity.claims = Vec::new();
    }
    Some(Admitted {
        env,
        ctx,
        transport,
        conn,
        route,
        protocol,
        serverless,
        upstream_info,
        resume,
        raw_request,
        input,
        _resumable: resumable,
    })
}

impl Admitted {
    /// Serve the client until the connection ends.
    async fn serve(&mut self) -> Exit {
        let Self {
            env,
            ctx,
            transport,
            conn,
            route,
            protocol,
            serverless,
            upstream_info,
            resume,
            raw_request,
            input,
            ..
        } = self;
        let (env, conn, upstream_info) = (&*env, &*conn, &*upstream_info);
        let (route, protocol, serverless) = (*route, *protocol, *serverless);
        let limits = &env.limits;
        let input = std::mem::take(input);
        match (route, conn.server().cloned()) {
            (ClientRoute::ToServer, Some(server)) => {
                // Stateful reconnect of a routed client is the broker's: it numbers, buffers and
                // replays, so the hub server is asked for a plain (version 1) connection and never
                // sees Ack or Sequence, nor the client's socket coming and going inside the window.
                let stateful = resume.take().map(|r| {
                    Stateful::new(
                        ReplayBuffer::new(protocol, limits.reconnect_buffer_bytes),
                        r,
                        true,
                    )
                });
                let raw_request = if stateful.is_some() {
                    handshake_v1(protocol)
                } else {
                    std::mem::take(raw_request)
                };
                // The hub server answers the handshake: announce the client, then hand over every
                // byte it sent, starting with the handshake request.
                let ok = Box::pin(async {
                    let open = ServiceMessage::OpenConnection {
                        connection_id: ctx.connection_id.as_str().to_owned(),
                        claims: std::mem::take(&mut ctx.identity.claims)
                            .into_iter()
                            .map(|(k, v)| (dotnet_claim_type(&k).to_owned(), v))
                            .collect(),
                        headers: std::mem::take(&mut ctx.headers),
                        query_string: Some(std::mem::take(&mut ctx.query)),
                        extensions: Extensions {
                            protocol: Some(protocol.name().to_owned()),
                            ..Extensions::default()
                        },
                    };
                    server.send(&open).await.is_ok()
                        && server
                            .send_data(&ctx.connection_id, raw_request)
                            .await
                            .is_ok()
                })
                .await;
                if ok {
                    let mut relay = Relay {
                        env,
                        conn,
                        server: &server,
                        protocol,
                        stateful,
                    };
                    // Bytes that arrived with the handshake are the client's first messages.
                    relay.serve(transport, input).await
                } else {
                    CloseReason::AppServerGone
                }
            }
            _ => {
                *raw_request = Bytes::new();
                if write_frame(
                    transport,
                    protocol,
                    Bytes::from_static(handshake::RESPONSE_OK),
                    env,
                )
                .await
                .is_err()
                {
                    CloseReason::ClientClosed
                } else {
                    let mut actor = Actor {
                        env,
                        hub_name: ctx.hub.name().as_str(),
                        conn,
                        protocol,
                        route,
                        last_sent: Instant::now(),
                        last_received: Instant::now(),
                        timeout_armed: false,
                        upstream: None,
                        upstream_info,
                        stateful: resume.take().map(|r| {
                            Stateful::new(
                                ReplayBuffer::new(protocol, limits.reconnect_buffer_bytes),
                                r,
                                false,
                            )
                        }),
                    };
                    let exit = actor.serve(transport, input).await;
                    if serverless {
                        let error = exit.message();
                        // The upstream hears of the disconnect after the connection's last call.
                        match actor.upstream.take() {
                            Some(link) => Box::pin(link.disconnected(error)).await,
                            None => {
                                let (env, info) = (env.clone(), upstream_info.clone());
                                tokio::spawn(async move {
                                    upstream::send_disconnected(&env, &info, error.as_deref())
                                        .await;
                                });
                            }
                        }
                    }
                    exit
                }
            }
        }
    }

    /// The single cleanup every admitted connection reaches.
    async fn close(self, exit: Exit) {
        let Self {
            env,
            ctx,
            mut transport,
            conn,
            protocol,
            ..
        } = self;
        env.connections.remove(&ctx.connection_id);
        ctx.hub.disconnect(ctx.connection_id.clone()).await;
        for (invocation_id, caller_server_id) in conn.take_pending_invocations() {
            let error = ServiceMessage::ErrorCompletion {
                invocation_id,
                connection_id: ctx.connection_id.as_str().to_owned(),
                caller_server_id: caller_server_id.clone(),
                error: Some(CLIENT_LEFT_ERROR.to_owned()),
                extensions: Extensions::default(),
            };
            // A hub that is gone has no server to tell.
            let _ = ctx
                .hub
                .send_to_server(caller_server_id, service::encode(&error))
                .await;
        }
        if let Some(server) = conn.server() {
            let error = exit.message();
            // A server that is gone already knows.
            let _ = server
                .send(&ServiceMessage::CloseConnection {
                    connection_id: ctx.connection_id.as_str().to_owned(),
                    error_message: error,
                    headers: Vec::new(),
                    extensions: Extensions::default(),
                })
                .await;
        }
        Metrics::inc(&env.metrics.connections_closed);
        Metrics::dec(&env.metrics.connections_current);
        if let Some(close) = exit.close_message()
            && let Ok(frame) = protocol.encode(&HubMessage::Close(close))
        {
            // The client may already be gone; the transport is closed below either way.
            let _ = write_frame(&mut transport, protocol, frame, &env).await;
        }
        transport.close(env.limits.send_timeout()).await;
        tracing::debug!(connection = %ctx.connection_id, reason = %exit, "client disconnected");
        drop(ctx.slot);
    }
}

/// Answer the handshake with an error and close the transport.
async fn fail_handshake(
    env: &ClientEnv,
    mut transport: Transport,
    error: &str,
    protocol: Option<HubProtocol>,
) {
    Metrics::inc(&env.metrics.handshakes_failed);
    tracing::debug!(error, "handshake failed");
    let frame = handshake::error_response(error);
    // The handshake answer goes out in the frame type of the chosen protocol.
    let _ = write_frame(
        &mut transport,
        protocol.unwrap_or(HubProtocol::Json),
        frame,
        env,
    )
    .await;
    transport.close(env.limits.send_timeout()).await;
}

/// Write one frame (text for JSON, binary for MessagePack) within the send timeout. A write that
/// times out (the client stopped reading) is counted; the caller then ends the connection.
async fn write_frame(
    transport: &mut Transport,
    protocol: HubProtocol,
    bytes: Bytes,
    env: &ClientEnv,
) -> Result<(), CloseReason> {
    Metrics::inc(&env.metrics.socket_writes);
    match transport
        .send(protocol, bytes, env.limits.send_timeout())
        .await
    {
        Ok(()) => Ok(()),
        Err(SendError::TimedOut) => {
            Metrics::inc(&env.metrics.send_timeouts);
            Err(CloseReason::SendTimeout)
        }
        // The long-polling form of an outbox overflow.
        Err(SendError::Full) => {
            Metrics::inc(&env.metrics.outbox_overflow);
            Err(CloseReason::PollBufferFull)
        }
        Err(SendError::Closed) => Err(CloseReason::ClientClosed),
    }
}

/// One burst taken from a connection's outbox: what to write, then whether to close.
struct Burst {
    /// One frame for the socket: the frame that goes alone, or the coalesced buffer.
    frame: Option<Bytes>,
    /// A close was requested; it comes after the frame.
    close: Option<CloseReason>,
}

/// Drain the connection's outbox into one frame. `out` is the coalescing buffer kept between
/// bursts: a frame that goes alone is passed on without a copy, several are one `Bytes` split
/// off `out`, and a buffer grown past [`RETAINED_INPUT_CAPACITY`] is released so an idle
/// connection keeps none.
fn drain_outbox(conn: &ConnHandle, out: &mut BytesMut) -> Burst {
    let mut single = None;
    let drained = conn.outbox().drain_into(out, &mut single);
    let frame = match single {
        Some(f) => Some(f),
        None if !out.is_empty() => Some(out.split().freeze()),
        None => None,
    };
    if out.capacity() > RETAINED_INPUT_CAPACITY {
        *out = BytesMut::new();
    }
    Burst {
        frame,
        close: drained.close.map(|c| c.reason),
    }
}

struct Actor<'a> {
    env: &'a Arc<ClientEnv>,
    hub_name: &'a str,
    conn: &'a ConnHandle,
    protocol: HubProtocol,
    route: ClientRoute,
    last_sent: Instant,
    last_received: Instant,
    timeout_armed: bool,
    /// The connection's upstream worker, started at its first upstream call.
    upstream: Option<UpstreamLink>,
    upstream_info: &'a UpstreamConnection,
    /// Stateful reconnect: numbering, the replay buffer, where the client's next socket arrives.
    stateful: Option<Stateful>,
}

impl Actor<'_> {
    async fn serve(&mut self, transport: &mut Transport, mut input: BytesMut) -> Exit {
        let limits = &self.env.limits;
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut out = BytesMut::new();

        // Bytes that arrived with the handshake are ordinary messages.
        if let Some(exit) = self.process_input(&mut input) {
            return exit;
        }
        loop {
            tokio::select! {
                biased;
                Some(resumption) = next_resumption(&mut self.stateful) => {
                    if let Some(st) = &mut self.stateful
                        && !Box::pin(st.adopt(transport, resumption, self.protocol, self.env)).await
                    {
                        return CloseReason::ClientClosed;
                    }
                }
                _ = self.conn.outbox().ready() => {
                    let burst = drain_outbox(self.conn, &mut out);
                    if let Some(frame) = burst.frame {
                        if let Some(st) = &mut self.stateful
                            && let Err(exit) = st.record(&frame)
                        {
                            return exit;
                        }
                        if let Err(lost) = write_frame(transport, self.protocol, frame, self.env).await {
                            // A stateful client gets what was lost on its next socket.
                            if let Err(exit) = self.wait_for_resume(transport, lost).await {
                                return exit;
                            }
                        }
                        self.last_sent = Instant::now();
                    }
                    if let Some(reason) = burst.close {
                        return reason;
                    }
                }
                inbound = transport.recv() => {
                                        match inbound {
                        Inbound::Data(b) => input.extend_from_slice(&b),
                        Inbound::Closed => return CloseReason::ClientClosed,
                        Inbound::Gone => {
                            if let Err(exit) = self.wait_for_resume(transport, CloseReason::ClientClosed).await {
                                return exit;
                            }
                            continue;
                        }
                        Inbound::Invalid(detail) => {
                            Metrics::inc(&self.env.metrics.protocol_errors);
                            return CloseReason::ProtocolError(detail);
                        }
                    }
                    self.last_received = Instant::now();
                    if let Some(exit) = self.process_input(&mut input) {
                        return exit;
                    }
                }
                _ = tick.tick() => {
                    let now = Instant::now();
                    if self.timeout_armed && now.duration_since(self.last_received) >= limits.client_timeout() {
                        Metrics::inc(&self.env.metrics.client_timeouts);
                        return CloseReason::PingTimeout;
                    }
                                        if transport.is_abandoned(limits.negotiate_timeout()) {
                        return CloseReason::Abandoned;
                    }
                    if let Some(st) = &mut self.stateful
                        && let Err(lost) = st.send_ack(transport, self.protocol, self.env).await
                        && let Err(exit) = self.wait_for_resume(transport, lost).await
                    {
                        return exit;
                    }
                    if transport.sends_pings() && now.duration_since(self.last_sent) >= limits.keep_alive_interval() {
                        let ping = Bytes::from_static(protocol::ping_frame(self.protocol));
                        if let Err(lost) = write_frame(transport, self.protocol, ping, self.env).await {
                            return lost;
                        }
                        self.last_sent = now;
                    }
                }
            }
        }
    }

    /// After the socket was lost (`lost` says how): a stateful client may come back within the
    /// window; any other ends here.
    async fn wait_for_resume(
        &mut self,
        transport: &mut Transport,
        lost: CloseReason,
    ) -> Result<(), Exit> {
        match &mut self.stateful {
            Some(st) => {
                Box::pin(st.wait_and_resume(transport, self.conn, self.env, self.protocol, None))
                    .await
            }
            None => Err(lost),
        }
    }

    /// Decode and act on every complete message in `input`.
    fn process_input(&mut self, input: &mut BytesMut) -> Option<Exit> {
        let max = self.env.limits.max_message_size;
        let mut received = 0u64;
        let exit = loop {
            match self.protocol.decode(input, max) {
                Ok(Some(decoded)) => {
                    input.advance(decoded.consumed);
                    received += 1;
                    if let Some(msg) = decoded.message
                        && let Some(exit) = self.handle(msg)
                    {
                        break Some(exit);
                    }
                }
                Ok(None) => break None,
                Err(e) => {
                    Metrics::inc(&self.env.metrics.protocol_errors);
                    break Some(CloseReason::from_protocol_error(&e));
                }
            }
        };
        Metrics::add(&self.env.metrics.messages_received, received);
        if input.is_empty() && input.capacity() > RETAINED_INPUT_CAPACITY {
            *input = BytesMut::new();
        }
        exit
    }

    fn handle(&mut self, msg: HubMessage) -> Option<Exit> {
        if let Some(st) = &mut self.stateful {
            match st.on_receive(&msg) {
                Ok(true) => {}
                Ok(false) => return None,
                Err(exit) => return Some(exit),
            }
        }
        if matches!(msg, HubMessage::Ping) {
            // ASP.NET Core starts the client timeout at the first Ping: older clients never ping.
            self.timeout_armed = true;
        }
        // The route is fixed at connect time; the upstream rules are the current ones.
        let action = self
            .env
            .policy
            .snapshot()
            .route_message(self.route, self.hub_name, &msg);
        match action {
            MessageAction::ToUpstream => {
                let HubMessage::Invocation(inv) = msg else {
                    return None;
                };
                let Ok(body) = upstream_body(self.protocol, &inv) else {
                    return None;
                };
                let link = self.upstream.get_or_insert_with(|| {
                    UpstreamLink::start(
                        self.env.clone(),
                        self.conn.clone(),
                        self.upstream_info.clone(),
                    )
                });
                if link
                    .invoke(inv.target, inv.invocation_id.clone(), body)
                    .is_err()
                {
                    Metrics::inc(&self.env.metrics.upstream_queue_full);
                    if let Some(id) = inv.invocation_id {
                        upstream::push_error(
                            self.conn,
                            self.protocol,
                            &id,
                            upstream::QUEUE_FULL_ERROR.to_owned(),
                        );
                    }
                }
                None
            }
            MessageAction::Liveness => None,
            MessageAction::EndConnection => Some(CloseReason::ClientClosed),
            // This actor serves clients without a hub server; a routed client is a `Relay`.
            MessageAction::Drop | MessageAction::ToServer => {
                Metrics::inc(&self.env.metrics.messages_dropped_no_route);
                None
            }
            MessageAction::RejectInvocation(error) => {
                Metrics::inc(&self.env.metrics.invocations_rejected);
                let invocation_id = match msg {
                    HubMessage::Invocation(inv) | HubMessage::StreamInvocation(inv) => {
                        inv.invocation_id.unwrap_or_default()
                    }
                    _ => return None,
                };
                let completion = HubMessage::Completion(Completion {
                    headers: Vec::new(),
                    invocation_id,
                    outcome: CompletionOutcome::Error(error),
                });
                if let Ok(frame) = self.protocol.encode(&completion) {
                    // Queued behind earlier deliveries to keep order; an overflow closes the
                    // connection through the outbox.
                    let _ = self.conn.outbox().push(frame);
                }
                None
            }
            MessageAction::Close(reason) => Some(reason),
        }
    }
}

/// The next reconnecting WebSocket, or never when the connection is not stateful.
async fn next_resumption(stateful: &mut Option<Stateful>) -> Option<Resumption> {
    match stateful {
        Some(st) => st.rx.recv().await,
        None => std::future::pending().await,
    }
}

/// The handshake request a routed stateful client's hub server gets: version 1, because the
/// broker, not the hub server, does the Ack/Sequence part of the protocol.
fn handshake_v1(protocol: HubProtocol) -> Bytes {
    Bytes::from(format!(
        "{{\"protocol\":\"{}\",\"version\":1}}\x1e",
        protocol.name()
    ))
}

/// A stateful-reconnect connection (`spec/client-protocol.md` §5.3): the numbering and replay
/// buffer ([`ReplayBuffer`]) and where the client's next WebSocket arrives. The same state
/// serves a client the broker answers itself and a client routed to a hub server.
struct Stateful {
    replay: ReplayBuffer,
    rx: mpsc::Receiver<Resumption>,
    /// A routed client: the hub server's handshake answer, the first bytes it sends, is not a
    /// numbered message; `true` until it went by.
    awaiting_handshake_answer: bool,
}

impl Stateful {
    fn new(replay: ReplayBuffer, rx: mpsc::Receiver<Resumption>, routed: bool) -> Self {
        Self {
            replay,
            rx,
            awaiting_handshake_answer: routed,
        }
    }

    /// Record a frame about to be written to the client; the exit when the replay buffer is
    /// over its limit.
    fn record(&mut self, frame: &Bytes) -> Result<(), Exit> {
        let numbered = if self.awaiting_handshake_answer {
            // The answer is JSON text ending at the first record separator, whatever the
            // protocol; it may share a frame with the first messages.
            let Some(end) = frame
                .iter()
                .position(|&b| b == protocol::framing::RECORD_SEPARATOR)
            else {
                return Ok(());
            };
            self.awaiting_handshake_answer = false;
            frame.slice(end + 1..)
        } else {
            frame.clone()
        };
        if numbered.is_empty() || self.replay.on_send(&numbered).is_ok() {
            Ok(())
        } else {
            Err(CloseReason::ReconnectBufferFull)
        }
    }

    /// A message from the client: `Ok(false)` when it is stateful-reconnect bookkeeping (Ack,
    /// Sequence) or a duplicate of one processed before the reconnect.
    fn on_receive(&mut self, msg: &HubMessage) -> Result<bool, Exit> {
        match msg {
            HubMessage::Ack { sequence_id } => {
                self.replay.on_ack(*sequence_id);
                Ok(false)
            }
            HubMessage::Sequence { sequence_id } => self
                .replay
                .on_sequence(*sequence_id)
                .map(|()| false)
                .map_err(CloseReason::ProtocolError),
            m if is_tracked(m) => Ok(self.replay.on_receive_tracked()),
            _ => Ok(true),
        }
    }

    /// Acknowledge what arrived since the last Ack, if anything did.
    async fn send_ack(
        &mut self,
        transport: &mut Transport,
        protocol: HubProtocol,
        env: &ClientEnv,
    ) -> Result<(), CloseReason> {
        let Some(ack) = self.replay.take_ack() else {
            return Ok(());
        };
        let Ok(frame) = protocol.encode(&HubMessage::Ack { sequence_id: ack }) else {
            return Ok(());
        };
        write_frame(transport, protocol, frame, env).await
    }

    /// After the socket was lost: wait up to the reconnect window for the client's next
    /// WebSocket, then switch to it and replay. Meanwhile what is queued for the client moves
    /// into the replay buffer, whose limit bounds the wait as well, and a routed client's hub
    /// server gets a Ping from it every keep-alive interval, so the hub server sees no
    /// disconnect (nor a client timeout) inside the window.
    async fn wait_and_resume(
        &mut self,
        transport: &mut Transport,
        conn: &ConnHandle,
        env: &ClientEnv,
        protocol: HubProtocol,
        server: Option<&ServerConnHandle>,
    ) -> Result<(), Exit> {
        let limits = &env.limits;
        let deadline = tokio::time::Instant::now()
            + std::time::Duration::from_secs(limits.reconnect_window_secs);
        let period = limits.keep_alive_interval();
        let mut keep_alive = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        let mut out = BytesMut::new();
        loop {
            tokio::select! {
                biased;
                resumption = self.rx.recv() => {
                    let Some(resumption) = resumption else {
                        return Err(CloseReason::ClientClosed);
                    };
                    return if self.adopt(transport, resumption, protocol, env).await {
                        Ok(())
                    } else {
                        Err(CloseReason::ClientClosed)
                    };
                }
                _ = conn.outbox().ready() => {
                    let burst = drain_outbox(conn, &mut out);
                    if let Some(frame) = burst.frame {
                        self.record(&frame)?;
                    }
                    if let Some(reason) = burst.close {
                        return Err(reason);
                    }
                }
                _ = keep_alive.tick(), if server.is_some() => {
                    if let Some(server) = server {
                        let ping = Bytes::from_static(protocol::ping_frame(protocol));
                        if server.send_data(conn.id(), ping).await.is_err() {
                            return Err(CloseReason::AppServerGone);
                        }
                    }
                }
                // The client did not come back within its window.
                _ = tokio::time::sleep_until(deadline) => return Err(CloseReason::Abandoned),
            }
        }
    }

    /// Switch to the client's new WebSocket (replacing the old one, even if it still looks
    /// alive), send `Sequence` and replay everything unacknowledged.
    async fn adopt(
        &mut self,
        transport: &mut Transport,
        (session, inbound): Resumption,
        protocol: HubProtocol,
        env: &ClientEnv,
    ) -> bool {
        let old = std::mem::replace(transport, Transport::Bridged { session, inbound });
        old.close(env.limits.send_timeout()).await;
        let (first, frames) = self.replay.resume();
        let Ok(sequence) = protocol.encode(&HubMessage::Sequence { sequence_id: first }) else {
            return false;
        };
        if write_frame(transport, protocol, sequence, env)
            .await
            .is_err()
        {
            return false;
        }
        for frame in frames {
            if write_frame(transport, protocol, frame, env).await.is_err() {
                return false;
            }
        }
        Metrics::inc(&env.metrics.reconnects);
        true
    }
}

/// A client routed to a hub server: a byte relay in both directions. The hub server answers the
/// handshake, sends the keep-alive pings and times the client out, so a plain relay parses
/// nothing. A stateful-reconnect client's messages are parsed, to take out Ack and Sequence and
/// the duplicates a reconnect brings (see [`Stateful`]).
struct Relay<'a> {
    env: &'a ClientEnv,
    conn: &'a ConnHandle,
    server: &'a ServerConnHandle,
    protocol: HubProtocol,
    stateful: Option<Stateful>,
}

impl Relay<'_> {
    async fn serve(&mut self, transport: &mut Transport, mut input: BytesMut) -> Exit {
        let mut out = BytesMut::new();
        let mut received = 0u64;
        let abandoned_after = self.env.limits.negotiate_timeout();
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let exit = 'relay: {
            if !input.is_empty()
                && let Err(exit) = self.forward(input.split().freeze(), &mut input).await
            {
                break 'relay exit;
            }
            loop {
                tokio::select! {
                    biased;
                    Some(resumption) = next_resumption(&mut self.stateful) => {
                        if let Some(st) = &mut self.stateful
                            && !Box::pin(st.adopt(transport, resumption, self.protocol, self.env)).await
                        {
                            break 'relay CloseReason::ClientClosed;
                        }
                    }
                    _ = self.conn.outbox().ready() => {
                        let burst = drain_outbox(self.conn, &mut out);
                        if let Some(frame) = burst.frame {
                            if let Some(st) = &mut self.stateful
                                && let Err(exit) = st.record(&frame)
                            {
                                break 'relay exit;
                            }
                            if let Err(lost) = write_frame(transport, self.protocol, frame, self.env).await
                                && let Err(exit) = self.wait_for_resume(transport, lost).await
                            {
                                break 'relay exit;
                            }
                        }
                        if let Some(reason) = burst.close {
                            break 'relay reason;
                        }
                    }
                    _ = tick.tick() => {
                        // A long-polling client that stopped polling is gone.
                        if transport.is_abandoned(abandoned_after) {
                            break 'relay CloseReason::Abandoned;
                        }
                        if let Some(st) = &mut self.stateful
                            && let Err(lost) = st.send_ack(transport, self.protocol, self.env).await
                            && let Err(exit) = self.wait_for_resume(transport, lost).await
                        {
                            break 'relay exit;
                        }
                    }
                    inbound = transport.recv() => {
                        let bytes = match inbound {
                            Inbound::Data(b) => b,
                            Inbound::Closed => break 'relay CloseReason::ClientClosed,
                            Inbound::Gone => match self.wait_for_resume(transport, CloseReason::ClientClosed).await {
                                Ok(()) => continue,
                                Err(exit) => break 'relay exit,
                            },
                            Inbound::Invalid(detail) => {
                                Metrics::inc(&self.env.metrics.protocol_errors);
                                break 'relay CloseReason::ProtocolError(detail);
                            }
                        };
                        received += 1;
                        if let Err(exit) = self.forward(bytes, &mut input).await {
                            break 'relay exit;
                        }
                    }
                }
            }
        };
        Metrics::add(&self.env.metrics.messages_received, received);
        exit
    }

    /// Hand client bytes to the hub server. A stateful client's bytes are collected into
    /// `input` and only its complete, new hub messages go on, in one ConnectionData.
    async fn forward(&mut self, bytes: Bytes, input: &mut BytesMut) -> Result<(), Exit> {
        let bytes = match &mut self.stateful {
            None => bytes,
            Some(st) => {
                input.extend_from_slice(&bytes);
                let max = self.env.limits.max_message_size;
                let mut keep = BytesMut::new();
                loop {
                    match self.protocol.decode(input, max) {
                        Ok(Some(decoded)) => {
                            let raw = input.split_to(decoded.consumed);
                            let new = match &decoded.message {
                                Some(msg) => st.on_receive(msg)?,
                                None => true,
                            };
                            if new {
                                keep.extend_from_slice(&raw);
                            }
                        }
                        Ok(None) => break,
                        Err(e) => {
                            Metrics::inc(&self.env.metrics.protocol_errors);
                            return Err(CloseReason::from_protocol_error(&e));
                        }
                    }
                }
                if input.is_empty() && input.capacity() > RETAINED_INPUT_CAPACITY {
                    *input = BytesMut::new();
                }
                if keep.is_empty() {
                    return Ok(());
                }
                keep.freeze()
            }
        };
        // Waiting here is the backpressure from a slow hub server.
        self.server
            .send_data(self.conn.id(), bytes)
            .await
            .map_err(|_| CloseReason::AppServerGone)
    }

    /// After the socket was lost (`lost` says how): a stateful client may come back within the
    /// window, while the hub server keeps seeing a live client; any other ends here.
    async fn wait_for_resume(
        &mut self,
        transport: &mut Transport,
        lost: CloseReason,
    ) -> Result<(), Exit> {
        match &mut self.stateful {
            Some(st) => {
                Box::pin(st.wait_and_resume(
                    transport,
                    self.conn,
                    self.env,
                    self.protocol,
                    Some(self.server),
                ))
                .await
            }
            None => Err(lost),
        }
    }
}
