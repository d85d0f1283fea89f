//! Opening a client connection: the handshake request (parsed from the first bytes, within the
//! handshake timeout), the protocol choice, the upstream's `connected` event in Serverless mode
//! and admission by the hub.
//!
//! It owns nothing past admission: it hands the admitted state to [`run`](super::run) and must
//! not serve messages or send anything but a failed handshake's answer (a successful one is the
//! serving side's first frame).

use bytes::BytesMut;

use super::write::fail_handshake;
use super::{Admitted, ClientContext, Resume};
use crate::conn::transport::{Inbound, Transport};
use crate::conn::upstream;
use crate::hub::{AdmitError, AdmitRequest};
use crate::id::UserId;
use crate::protocol::{HubProtocol, handshake};
use crate::routing::ClientRoute;
use crate::routing::sticky::StickyMode;
use crate::telemetry::Metrics;
use crate::upstream::UpstreamConnection;

/// The handshake and admission; `None` when the connection ended there.
pub(super) async fn open(mut ctx: ClientContext, mut transport: Transport) -> Option<Admitted> {
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
