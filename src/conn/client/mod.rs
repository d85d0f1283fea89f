//! The client connection actor: one task per client, whatever its transport (WebSocket,
//! Server-Sent Events or long polling, see [`Transport`](super::transport)).
//!
//! This module owns the actor's life: [`run`] opens the connection ([`open`](mod@open):
//! handshake and admission), serves it — itself ([`served`], whose decisions are the sans-IO
//! [`state`]) or as a relay to the client's hub server ([`relay`]), either one optionally wrapped
//! for stateful reconnect ([`stateful`]) — and ends it in the single cleanup
//! ([`Admitted::close`]), which deregisters from the hub and closes the socket. Socket writes and
//! the outbox drain are in [`write`](mod@write). Nothing is sent before the
//! handshake answer, which goes out alone in the first frame. This module decides no protocol
//! question itself and holds no per-message state: an idle connection's task holds only the
//! admitted state and its serve loop.
//!
//! Every way out is a [`CloseReason`], which decides the Close message
//! (text, `allowReconnect`) the client gets, if any.
//!
//! What an admitted client holds outside its task (its index entry, its place in the hub, its
//! hub server's view of it, the open-connections gauge) is a [`Registration`], released step by
//! step by the cleanup, and by its `Drop` when the cleanup never ran: a panic (caught and
//! counted by [`supervised`], see [`run`]) or a dropped task. The connection slot and the
//! stateful-reconnect entry are released by their own guards.

use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};

use super::env::{ClientEnv, ConnectionSlot, ResumableEntry};
use super::stateful::ReplayBuffer;
use super::transport::{Resumption, Transport};
use super::upstream;
use crate::auth::{Identity, dotnet_claim_type};
use crate::close::{CloseCategory, CloseReason};
use crate::hub::HubHandle;
use crate::id::{ConnectionId, TransportKind};
use crate::peer::ConnHandle;
use crate::protocol::service::{self, Extensions, ServiceMessage};
use crate::protocol::{HubMessage, HubProtocol, handshake};
use crate::routing::ClientRoute;
use crate::supervise::{ActorKind, supervised};
use crate::telemetry::Metrics;
use crate::upstream::UpstreamConnection;
use tokio::sync::mpsc;

mod log;
mod open;
mod relay;
mod served;
mod state;
mod stateful;
mod write;

use open::open;
use relay::{Relay, handshake_v1};
use served::Actor;
use state::ServedState;
use stateful::Stateful;
use write::write_frame;

/// ErrorCompletion text for a client invocation whose client left before answering.
pub(crate) const CLIENT_LEFT_ERROR: &str = "Connection disconnected.";

/// Input buffers larger than this are released once drained, so an idle connection keeps none.
const RETAINED_INPUT_CAPACITY: usize = 4096;

/// CloseConnection error a hub server gets for a client whose actor failed (a panic).
const CONNECTION_FAILED: &str =
    "Connection closed with an error. The connection failed on the service.";

/// Test hook: a connection whose id starts with this panics right after its admission.
#[cfg(test)]
pub(crate) const PANIC_AFTER_ADMISSION: &str = "test-hook-panic-after-admission-";

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
    /// The client's address (as the network rules and per-tenant limits see it), for the
    /// resource logs.
    pub ip: Option<std::net::IpAddr>,
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
/// ([`open()`]) and the cleanup ([`Admitted::close`]) are boxed futures that exist only while
/// they run; the task holds the admitted connection and its serve loop. (As one async fn the
/// task kept every part's state, and the context and transport twice: about 3.7 KB each.) The
/// admitted part is boxed as well, once, so that the supervision around it does not copy it.
///
/// A panic anywhere in it is caught, logged with the hub and connection id and counted
/// (`switchboard_actor_panics_total{actor="client"}`); the [`Registration`] and the other
/// guards release what the connection held.
pub(crate) fn run(ctx: ClientContext, transport: Transport) -> impl Future<Output = ()> {
    let env = ctx.env.clone();
    let (hub, id) = (ctx.hub.name().clone(), ctx.connection_id.clone());
    // Boxed before the task's future exists, which then captures a pointer instead of both.
    let opening = Box::pin(open(ctx, transport));
    // Boxed too: `supervised` and this block would each hold it by value (7.5 KB together,
    // three times the actor).
    let actor = Box::pin(async move {
        let Some(mut admitted) = opening.await else {
            return;
        };
        let exit = admitted.serve().await;
        Box::pin(admitted.close(exit)).await;
    });
    async move {
        supervised(
            ActorKind::Client,
            &env.metrics,
            hub.as_str(),
            id.as_str(),
            actor,
        )
        .await;
    }
}

/// What an admitted client holds outside its own task: its entry in the connection index, its
/// place in its hub, its hub server's view of it (routed clients) and its count in
/// `switchboard_connections`. The cleanup releases each step and marks it done; `Drop`
/// releases whatever is left, so a client whose actor panicked or whose task was dropped
/// leaves nothing behind (its hub server is told with a Close it cannot wait for).
#[derive(Debug)]
struct Registration {
    env: Arc<ClientEnv>,
    hub: HubHandle,
    conn: ConnHandle,
    transport: TransportKind,
    left_hub: bool,
    server_told: bool,
    counted: bool,
}

impl Registration {
    /// Register an admitted client: index entry and open-connections gauge (the hub registered
    /// it when it admitted it).
    fn new(
        env: Arc<ClientEnv>,
        hub: HubHandle,
        conn: ConnHandle,
        transport: TransportKind,
    ) -> Self {
        env.connections.insert(hub.name().clone(), conn.clone());
        Metrics::inc(&env.metrics.connections_opened);
        Metrics::inc(&env.metrics.connections_current);
        env.metrics.labelled.client_opened(transport);
        Self {
            env,
            hub,
            conn,
            transport,
            left_hub: false,
            server_told: false,
            counted: false,
        }
    }

    /// Leave the index and the hub (waiting for room in the hub's inbox).
    async fn leave_hub(&mut self) {
        self.env.connections.remove(self.conn.id());
        self.hub.disconnect(self.conn.id().clone()).await;
        self.left_hub = true;
    }

    /// Count the connection closed, under `category`.
    fn count_closed(&mut self, category: CloseCategory) {
        Metrics::inc(&self.env.metrics.connections_closed);
        Metrics::dec(&self.env.metrics.connections_current);
        self.env
            .metrics
            .labelled
            .client_closed(self.transport, category);
        self.counted = true;
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        if !self.left_hub {
            self.env.connections.remove(self.conn.id());
            self.hub.disconnect_detached(self.conn.id().clone());
        }
        if !self.server_told
            && let Some(server) = self.conn.server()
        {
            let close = ServiceMessage::CloseConnection {
                connection_id: self.conn.id().as_str().to_owned(),
                error_message: Some(CONNECTION_FAILED.to_owned()),
                headers: Vec::new(),
                extensions: Extensions::default(),
            };
            if server.try_send_frame(service::encode(&close)).is_err() {
                Metrics::inc(&self.env.metrics.server_outbox_full);
            }
        }
        if !self.counted {
            // The actor panicked, or its task was dropped.
            self.count_closed(CloseCategory::ServiceTransientError);
        }
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
    registration: Registration,
}

impl Admitted {
    /// Serve the client until the connection ends.
    async fn serve(&mut self) -> Exit {
        #[cfg(test)]
        if self
            .ctx
            .connection_id
            .as_str()
            .starts_with(PANIC_AFTER_ADMISSION)
        {
            panic!("client test hook: panic after admission");
        }
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
                    let mut headers = std::mem::take(&mut ctx.headers);
                    if let Some(cluster) = ctx.hub.cluster() {
                        // The service instance holding the client: an `offline` ping for it
                        // tells the SDK the client is gone.
                        headers.push((
                            "Asrs-Instance-Id".to_owned(),
                            vec![cluster.node_id().to_owned()],
                        ));
                    }
                    let open = ServiceMessage::OpenConnection {
                        connection_id: ctx.connection_id.as_str().to_owned(),
                        claims: std::mem::take(&mut ctx.identity.claims)
                            .into_iter()
                            .map(|(k, v)| (dotnet_claim_type(&k).to_owned(), v))
                            .collect(),
                        headers,
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
                        hub_name: ctx.hub.name().as_str(),
                        hub: ctx.hub.stats(),
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
                        hub: ctx.hub.stats(),
                        hub_name: ctx.hub.name().as_str(),
                        conn,
                        protocol,
                        state: ServedState::new(route, Instant::now()),
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
                                let (tasks, info) =
                                    (env.upstream_tasks.clone(), upstream_info.clone());
                                let env = env.clone();
                                tasks.spawn(async move {
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
            mut registration,
            ..
        } = self;
        let kind = transport.kind();
        registration.leave_hub().await;
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
        registration.server_told = true;
        registration.count_closed(exit.category());
        if let Some(close) = exit.close_message()
            && let Ok(frame) = protocol.encode(&HubMessage::Close(close))
        {
            // The client may already be gone; the transport is closed below either way.
            let _ = write_frame(&mut transport, protocol, frame, &env).await;
        }
        transport
            .close(&exit.websocket_close(), env.limits.send_timeout())
            .await;
        tracing::debug!(connection = %ctx.connection_id, reason = %exit, "client disconnected");
        log::ended(&ctx, kind, &exit);
        drop(ctx.slot);
    }
}
