//! The client connection actor: one task per WebSocket client.
//!
//! It owns the socket, the input buffer, the negotiated protocol and the keep-alive timers. It
//! runs in two phases: the handshake (nothing is sent before the handshake answer, which goes
//! out alone in the first frame), then one `select!` loop over inbound frames, the outbox and a
//! one-second tick. Every way out of the loop goes through the single cleanup at the end of
//! [`run`], which deregisters from the hub and closes the socket.
//!
//! Close policy (what the client sees):
//! - protocol error or oversized message: Close `Connection closed with an error. <detail>`,
//!   no reconnect (the same bytes would fail again);
//! - client silent for `client_timeout` after its first Ping: Close
//!   `Connection closed with an error.` with `allowReconnect` (as ASP.NET Core);
//! - outbox overflow: Close with the overflow reason and `allowReconnect`;
//! - REST close: Close with the given reason.

use std::sync::Arc;
use std::time::Instant;

use actix_ws::{AggregatedMessage, AggregatedMessageStream, CloseCode, Session};
use bytes::{Buf, Bytes, BytesMut};
use bytestring::ByteString;
use futures_util::StreamExt;

use super::{CloseRequest, ConnHandle, ConnectionId, Outbox};
use crate::auth::Identity;
use crate::hub::{HubHandle, UserId};
use crate::protocol::{
    self, Close, Completion, CompletionOutcome, HubMessage, HubProtocol, handshake,
};
use crate::routing::{self, Admission, ClientRoute, MessageAction};
use crate::switchboard::{ConnectionSlot, Shared};
use crate::telemetry::Metrics;

/// Input buffers larger than this are released once drained, so an idle connection keeps none.
const RETAINED_INPUT_CAPACITY: usize = 4096;

/// Everything a client connection actor starts with.
#[derive(Debug)]
pub struct ClientContext {
    /// Broker state.
    pub shared: Arc<Shared>,
    /// The hub the client connects to.
    pub hub: HubHandle,
    /// The connection's public id.
    pub connection_id: ConnectionId,
    /// Who the token spoke for.
    pub identity: Identity,
    /// The connection's slot in the process-wide limit, released when the actor ends.
    pub slot: ConnectionSlot,
}

/// Why the connection loop ended.
enum Exit {
    /// The client closed or the socket failed: nothing more to send.
    Gone,
    /// Send this Close message, then close the socket.
    Close(Close),
}

/// Run a client connection until it ends.
pub async fn run(ctx: ClientContext, mut session: Session, mut stream: AggregatedMessageStream) {
    let shared = ctx.shared.clone();
    let limits = &shared.config.limits;
    let mut input = BytesMut::new();

    // Phase 1: the handshake.
    let deadline = tokio::time::Instant::now() + limits.handshake_timeout();
    let request = loop {
        match handshake::parse_request(&input) {
            Ok(Some((req, consumed))) => {
                input.advance(consumed);
                break req;
            }
            Ok(None) if input.len() > limits.max_message_size => {
                return fail_handshake(&shared, session, "Handshake was canceled.", None).await;
            }
            Ok(None) => {}
            Err(e) => {
                let text = format!(
                    "An unexpected error occurred during connection handshake. InvalidDataException: {e}"
                );
                return fail_handshake(&shared, session, &text, None).await;
            }
        }
        tokio::select! {
            frame = stream.next() => match frame {
                Some(Ok(AggregatedMessage::Text(t))) => input.extend_from_slice(t.as_bytes()),
                Some(Ok(AggregatedMessage::Binary(b))) => input.extend_from_slice(&b),
                Some(Ok(AggregatedMessage::Ping(p))) => {
                    if session.pong(&p).await.is_err() {
                        return;
                    }
                }
                Some(Ok(AggregatedMessage::Pong(_))) => {}
                Some(Ok(AggregatedMessage::Close(_))) | None => return,
                Some(Err(_)) => {
                    return fail_handshake(&shared, session, "Handshake was canceled.", None).await;
                }
            },
            _ = tokio::time::sleep_until(deadline) => {
                return fail_handshake(&shared, session, "Handshake was canceled.", None).await;
            }
        }
    };

    // WebSockets carry binary frames, so every protocol is available.
    let protocol = match handshake::select_protocol(&request, true) {
        Ok(p) => p,
        Err(text) => {
            let frame_kind = HubProtocol::from_name(&request.protocol);
            return fail_handshake(&shared, session, &text, frame_kind).await;
        }
    };
    let route = match routing::admit_client(shared.mode(), false, false) {
        Admission::Accept(route) => route,
        Admission::Reject(text) => {
            return fail_handshake(&shared, session, &text, Some(protocol)).await;
        }
    };
    if write_frame(
        &mut session,
        protocol,
        Bytes::from_static(handshake::RESPONSE_OK),
        &shared,
    )
    .await
    .is_err()
    {
        return;
    }

    // Phase 2: registered with the hub, serving messages.
    let conn = ConnHandle::new(
        ctx.connection_id.clone(),
        ctx.identity.user_id.as_deref().map(UserId::from),
        protocol,
        Outbox::new(limits.outbox_max_messages, limits.outbox_max_bytes),
    );
    if ctx.hub.connect(conn.clone()).await.is_err() {
        return;
    }
    Metrics::inc(&shared.metrics.connections_opened);
    Metrics::inc(&shared.metrics.connections_current);
    tracing::debug!(connection = %ctx.connection_id, hub = %ctx.hub.name(), protocol = protocol.name(), "client connected");

    let mut actor = Actor {
        shared: &shared,
        hub_name: ctx.hub.name().as_str(),
        conn: &conn,
        protocol,
        route,
        last_sent: Instant::now(),
        last_received: Instant::now(),
        timeout_armed: false,
    };
    let exit = actor.serve(&mut session, &mut stream, input).await;

    ctx.hub.disconnect(ctx.connection_id.clone()).await;
    Metrics::inc(&shared.metrics.connections_closed);
    Metrics::dec(&shared.metrics.connections_current);
    if let Exit::Close(close) = exit {
        if let Ok(frame) = protocol.encode(&HubMessage::Close(close)) {
            // The client may already be gone; the socket is closed below either way.
            let _ = write_frame(&mut session, protocol, frame, &shared).await;
        }
        let _ = session.close(Some(CloseCode::Normal.into())).await;
    }
    tracing::debug!(connection = %ctx.connection_id, "client disconnected");
    drop(ctx.slot);
}

/// Answer the handshake with an error and close the socket.
async fn fail_handshake(
    shared: &Shared,
    mut session: Session,
    error: &str,
    protocol: Option<HubProtocol>,
) {
    Metrics::inc(&shared.metrics.handshakes_failed);
    tracing::debug!(error, "handshake failed");
    let frame = handshake::error_response(error);
    // The handshake answer goes out in the frame type of the chosen protocol.
    let _ = write_frame(
        &mut session,
        protocol.unwrap_or(HubProtocol::Json),
        frame,
        shared,
    )
    .await;
    let _ = session.close(Some(CloseCode::Normal.into())).await;
}

/// Write one frame (text for JSON, binary for MessagePack) within the send timeout.
async fn write_frame(
    session: &mut Session,
    protocol: HubProtocol,
    bytes: Bytes,
    shared: &Shared,
) -> Result<(), ()> {
    let timeout = shared.config.limits.send_timeout();
    let result = if protocol.is_binary() {
        tokio::time::timeout(timeout, session.binary(bytes)).await
    } else {
        let text = ByteString::try_from(bytes).map_err(|_| ())?;
        tokio::time::timeout(timeout, session.text(text)).await
    };
    Metrics::inc(&shared.metrics.socket_writes);
    match result {
        Ok(Ok(())) => Ok(()),
        _ => Err(()),
    }
}

struct Actor<'a> {
    shared: &'a Shared,
    hub_name: &'a str,
    conn: &'a ConnHandle,
    protocol: HubProtocol,
    route: ClientRoute,
    last_sent: Instant,
    last_received: Instant,
    timeout_armed: bool,
}

impl Actor<'_> {
    async fn serve(
        &mut self,
        session: &mut Session,
        stream: &mut AggregatedMessageStream,
        mut input: BytesMut,
    ) -> Exit {
        let limits = &self.shared.config.limits;
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
                _ = self.conn.outbox().ready() => {
                    let mut single = None;
                    let drained = self.conn.outbox().drain_into(&mut out, &mut single);
                    let frame = match single {
                        Some(f) => Some(f),
                        None if !out.is_empty() => Some(out.split().freeze()),
                        None => None,
                    };
                    if let Some(frame) = frame {
                        if write_frame(session, self.protocol, frame, self.shared).await.is_err() {
                            return Exit::Gone;
                        }
                        self.last_sent = Instant::now();
                    }
                    if out.capacity() > RETAINED_INPUT_CAPACITY {
                        out = BytesMut::new();
                    }
                    if let Some(CloseRequest { error, allow_reconnect, .. }) = drained.close {
                        return Exit::Close(Close { error, allow_reconnect });
                    }
                }
                frame = stream.next() => {
                    match frame {
                        Some(Ok(AggregatedMessage::Text(t))) => input.extend_from_slice(t.as_bytes()),
                        Some(Ok(AggregatedMessage::Binary(b))) => input.extend_from_slice(&b),
                        Some(Ok(AggregatedMessage::Ping(p))) => {
                            if session.pong(&p).await.is_err() {
                                return Exit::Gone;
                            }
                            continue;
                        }
                        Some(Ok(AggregatedMessage::Pong(_))) => continue,
                        Some(Ok(AggregatedMessage::Close(_))) | None => return Exit::Gone,
                        Some(Err(e)) => {
                            Metrics::inc(&self.shared.metrics.protocol_errors);
                            let detail = match e {
                                actix_http::ws::ProtocolError::Overflow => format!(
                                    "The maximum message size of {}B was exceeded.",
                                    limits.max_message_size
                                ),
                                other => format!("WebSocket protocol error: {other}"),
                            };
                            return Exit::Close(error_close(&detail));
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
                        Metrics::inc(&self.shared.metrics.client_timeouts);
                        return Exit::Close(Close {
                            error: Some("Connection closed with an error.".to_owned()),
                            allow_reconnect: true,
                        });
                    }
                    if now.duration_since(self.last_sent) >= limits.keep_alive_interval() {
                        let ping = Bytes::from_static(protocol::ping_frame(self.protocol));
                        if write_frame(session, self.protocol, ping, self.shared).await.is_err() {
                            return Exit::Gone;
                        }
                        self.last_sent = now;
                    }
                }
            }
        }
    }

    /// Decode and act on every complete message in `input`.
    fn process_input(&mut self, input: &mut BytesMut) -> Option<Exit> {
        let max = self.shared.config.limits.max_message_size;
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
                    Metrics::inc(&self.shared.metrics.protocol_errors);
                    break Some(Exit::Close(error_close(&e.to_string())));
                }
            }
        };
        Metrics::add(&self.shared.metrics.messages_received, received);
        if input.is_empty() && input.capacity() > RETAINED_INPUT_CAPACITY {
            *input = BytesMut::new();
        }
        exit
    }

    fn handle(&mut self, msg: HubMessage) -> Option<Exit> {
        if matches!(msg, HubMessage::Ping) {
            // ASP.NET Core starts the client timeout at the first Ping: older clients never ping.
            self.timeout_armed = true;
        }
        match routing::route_client_message(self.route, self.hub_name, &msg) {
            MessageAction::Liveness => None,
            MessageAction::EndConnection => Some(Exit::Gone),
            MessageAction::Drop => {
                Metrics::inc(&self.shared.metrics.messages_dropped_no_route);
                None
            }
            MessageAction::RejectInvocation(error) => {
                Metrics::inc(&self.shared.metrics.invocations_rejected);
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
            MessageAction::Close(error) => Some(Exit::Close(Close {
                error: Some(error),
                allow_reconnect: false,
            })),
        }
    }
}

fn error_close(detail: &str) -> Close {
    Close {
        error: Some(format!("Connection closed with an error. {detail}")),
        allow_reconnect: false,
    }
}
