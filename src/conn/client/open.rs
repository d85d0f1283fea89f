//! Opening a client connection: the handshake request (parsed from the first bytes, within the
//! handshake timeout), the protocol choice, the upstream's `connected` event in Serverless mode
//! and admission by the hub. The handshake decisions (reading the request, choosing the
//! protocol, the error texts) are pure functions, unit-tested below; [`open`] carries them out.
//!
//! It owns nothing past admission: it hands the admitted state to [`run`](super::run) and must
//! not serve messages or send anything but a failed handshake's answer (a successful one is the
//! serving side's first frame).

use bytes::BytesMut;

use super::write::fail_handshake;
use super::{Admitted, ClientContext, Registration, Resume};
use crate::close::{CloseCategory, CloseReason, WsClose};
use crate::conn::transport::{Inbound, Transport};
use crate::conn::upstream;
use crate::hub::{AdmitError, AdmitRequest};
use crate::id::UserId;
use crate::protocol::HubProtocol;
use crate::protocol::framing::RecordScan;
use crate::protocol::handshake::{self, HandshakeRequest};
use crate::routing::ClientRoute;
use crate::routing::sticky::StickyMode;
use crate::telemetry::{Endpoint, Metrics};
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
    let mut scan = RecordScan::default();

    // Phase 1: the handshake request.
    let deadline = tokio::time::Instant::now() + limits.handshake_timeout();
    let (request, raw_request) = loop {
        match read_request(&input, limits.max_message_size, &mut scan) {
            Request::Complete(req, consumed) => break (req, input.split_to(consumed).freeze()),
            Request::Incomplete => {}
            Request::Fail(text, close) => {
                let category = CloseCategory::BadRequest;
                fail_handshake(&ctx, transport, &text, None, &close, category).await;
                return None;
            }
        }
        tokio::select! {
            inbound = transport.recv() => match inbound {
                Inbound::Data(b) => input.extend_from_slice(&b),
                Inbound::Gone | Inbound::Closed => {
                    // Azure's HandshakeError: the client left before its handshake completed.
                    env.metrics.labelled.close(Endpoint::Client, CloseCategory::HandshakeError);
                    return None;
                }
                Inbound::Invalid(reason) => {
                    Metrics::inc(&env.metrics.protocol_errors);
                    let (text, close) = refused_before_handshake(&reason);
                    fail_handshake(&ctx, transport, text, None, &close, CloseCategory::BadRequest).await;
                    return None;
                }
            },
            _ = tokio::time::sleep_until(deadline) => {
                let normal = WsClose::normal();
                let category = CloseCategory::HandshakeError;
                fail_handshake(&ctx, transport, handshake::HANDSHAKE_CANCELED, None, &normal, category).await;
                return None;
            }
        }
    };

    // WebSockets carry binary frames, so every protocol is available.
    let protocol = match choose_protocol(&request, transport.binary_supported()) {
        Ok(p) => p,
        Err((text, frame_kind)) => {
            let category = CloseCategory::HandshakeError;
            fail_handshake(
                &ctx,
                transport,
                &text,
                frame_kind,
                &WsClose::normal(),
                category,
            )
            .await;
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
        let category = CloseCategory::InvokeUpstreamFailed;
        fail_handshake(
            &ctx,
            transport,
            &text,
            Some(protocol),
            &WsClose::normal(),
            category,
        )
        .await;
        return None;
    }

    // Stateful reconnect needs handshake version 2 (a lower one turns it off): stop accepting
    // reconnects for this token at once.
    if !keeps_stateful(&request) && resume.take().is_some() {
        resumable = None;
    }

    // Admission: the hub decides the route in the current mode and registers the client.
    let admit = AdmitRequest {
        id: ctx.connection_id.clone(),
        user: ctx.identity.user_id.as_deref().map(UserId::from),
        protocol,
        transport: Some(transport.kind()),
        outbox_max_messages: limits.outbox_max_messages,
        outbox_max_bytes: limits.outbox_max_bytes,
        policy: policy.clone(),
        sticky_server: ctx.identity.claim("asrs.s.sn").map(str::to_owned),
        sticky_mode: StickyMode::from_claim(ctx.identity.claim("asrs.s.ssticky")),
    };
    if let Some(cluster) = ctx.hub.cluster() {
        // What other nodes publish for this hub must reach the client from its first message.
        cluster
            .hub_ready(ctx.hub.name().as_str(), std::time::Duration::from_secs(2))
            .await;
    }
    let (conn, route) = match ctx.hub.admit(admit).await {
        Ok(admitted) => admitted,
        Err(AdmitError::Refused(text)) => {
            let category = CloseCategory::NoAvailableServerConnection;
            fail_handshake(
                &ctx,
                transport,
                &text,
                Some(protocol),
                &WsClose::normal(),
                category,
            )
            .await;
            return None;
        }
        Err(AdmitError::Gone(_)) => {
            // The hub failed (or the broker is stopping) while the client shook hands: a fresh
            // hub serves it when it connects again.
            let text = CloseReason::HubFailed.message().unwrap_or_default();
            let category = CloseCategory::ServiceTransientError;
            fail_handshake(
                &ctx,
                transport,
                &text,
                Some(protocol),
                &WsClose::normal(),
                category,
            )
            .await;
            return None;
        }
    };
    let registration =
        Registration::new(env.clone(), ctx.hub.clone(), conn.clone(), transport.kind());
    // In a cluster, the user's remembered group memberships are in the engine.
    ctx.hub.apply_remembered(&conn).await;
    tracing::debug!(connection = %ctx.connection_id, hub = %ctx.hub.name(), protocol = protocol.name(), ?route, "client connected");
    let server = conn.server().filter(|_| route == ClientRoute::ToServer);
    super::log::started(
        &ctx,
        transport.kind(),
        protocol,
        server.map(|s| s.server_id()),
    );
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
        registration,
    })
}

/// Where the handshake request stands in the bytes received so far.
#[derive(Debug, PartialEq, Eq)]
enum Request {
    /// The request, and the bytes it took (separator included); the rest is hub messages.
    Complete(HandshakeRequest, usize),
    /// No separator yet: keep reading (within the handshake timeout).
    Incomplete,
    /// Fail the handshake with this text, then close a WebSocket with this frame.
    Fail(String, WsClose),
}

/// Read the handshake request from the start of `input`: more than `max` bytes without one
/// cancels the handshake (.NET's text; the close frame, 1009, says why); a malformed one fails
/// it with the detailed .NET text. `scan` remembers how far `input` was searched, so a request
/// arriving a byte at a time costs linear time.
fn read_request(input: &[u8], max: usize, scan: &mut RecordScan) -> Request {
    match handshake::parse_request_scanned(input, scan) {
        Ok(Some((req, consumed))) => Request::Complete(req, consumed),
        Ok(None) if input.len() > max => Request::Fail(
            handshake::HANDSHAKE_CANCELED.to_owned(),
            CloseReason::MessageTooLarge(format!(
                "The maximum message size of {max}B was exceeded."
            ))
            .websocket_close(),
        ),
        Ok(None) => Request::Incomplete,
        Err(e) => Request::Fail(e.response_text(true), WsClose::normal()),
    }
}

/// The handshake answer and the close frame for input the WebSocket layer refused before the
/// handshake completed: an oversized frame cancels the handshake (as .NET answers an oversized
/// request), anything else is named; the close frame carries the code and the detail.
fn refused_before_handshake(reason: &CloseReason) -> (&str, WsClose) {
    let text = match reason {
        CloseReason::ProtocolError(detail) | CloseReason::InvalidPayload(detail) => detail,
        _ => handshake::HANDSHAKE_CANCELED,
    };
    (text, reason.websocket_close())
}

/// The hub protocol for `request`, or the handshake failure: its text, and the protocol whose
/// frame type carries the answer (a known protocol's, even when it was refused).
fn choose_protocol(
    request: &HandshakeRequest,
    binary_supported: bool,
) -> Result<HubProtocol, (String, Option<HubProtocol>)> {
    handshake::select_protocol(request, binary_supported)
        .map_err(|text| (text, HubProtocol::from_name(&request.protocol)))
}

/// Whether a negotiated stateful reconnect survives the handshake: it needs version 2.
fn keeps_stateful(request: &HandshakeRequest) -> bool {
    request.version >= 2
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(protocol: &str, version: i64) -> HandshakeRequest {
        HandshakeRequest {
            protocol: protocol.to_owned(),
            version,
        }
    }

    #[test]
    fn the_request_is_read_up_to_its_separator() {
        let input = b"{\"protocol\":\"json\",\"version\":2}\x1e{\"type\":6}\x1e";
        assert_eq!(
            read_request(input, 1024, &mut RecordScan::default()),
            Request::Complete(request("json", 2), 32)
        );
        assert_eq!(
            read_request(b"{\"protocol\":", 1024, &mut RecordScan::default()),
            Request::Incomplete
        );
    }

    /// A request arriving a byte at a time: each arrival looks at its new byte only.
    #[test]
    fn a_request_arriving_a_byte_at_a_time_costs_linear_work() {
        let padded = format!(
            "{{\"protocol\":\"json\",\"version\":1{}}}\x1e",
            " ".repeat(20_000)
        );
        let n = padded.len();
        let mut scan = RecordScan::default();
        for end in 1..n {
            assert_eq!(
                read_request(&padded.as_bytes()[..end], 1 << 20, &mut scan),
                Request::Incomplete
            );
        }
        assert_eq!(
            read_request(padded.as_bytes(), 1 << 20, &mut scan),
            Request::Complete(request("json", 1), n)
        );
        assert_eq!(scan.examined(), n as u64);
    }

    #[test]
    fn too_much_without_a_request_cancels_the_handshake() {
        assert_eq!(
            read_request(&[b' '; 17], 16, &mut RecordScan::default()),
            Request::Fail(
                "Handshake was canceled.".to_owned(),
                WsClose::new(1009, "The maximum message size of 16B was exceeded.")
            )
        );
    }

    #[test]
    fn a_malformed_request_fails_with_the_detailed_dotnet_text() {
        assert_eq!(
            read_request(
                b"{\"protocol\":\"json\"}\x1e",
                1024,
                &mut RecordScan::default()
            ),
            Request::Fail(
                "An unexpected error occurred during connection handshake. InvalidDataException: \
                 Missing required property 'version'. Message content: {\"protocol\":\"json\"}"
                    .to_owned(),
                WsClose::normal()
            )
        );
    }

    #[test]
    fn websocket_refusals_before_the_handshake_say_why() {
        let too_big =
            CloseReason::MessageTooLarge("The maximum message size of 16B was exceeded.".into());
        assert_eq!(
            refused_before_handshake(&too_big),
            (
                "Handshake was canceled.",
                WsClose::new(1009, "The maximum message size of 16B was exceeded.")
            )
        );
        let not_utf8 = CloseReason::InvalidPayload("A text frame is not valid UTF-8.".into());
        assert_eq!(
            refused_before_handshake(&not_utf8),
            (
                "A text frame is not valid UTF-8.",
                WsClose::new(1007, "A text frame is not valid UTF-8.")
            )
        );
    }

    #[test]
    fn the_protocol_choice_and_its_failures() {
        assert_eq!(
            choose_protocol(&request("messagepack", 1), true),
            Ok(HubProtocol::MessagePack)
        );
        assert_eq!(
            choose_protocol(&request("xml", 1), true),
            Err(("The protocol 'xml' is not supported.".to_owned(), None))
        );
        assert_eq!(
            choose_protocol(&request("json", 3), true),
            Err((
                "The server does not support version 3 of the 'json' protocol.".to_owned(),
                Some(HubProtocol::Json)
            ))
        );
        // Server-Sent Events carry text only; the refusal goes out in the requested frame type.
        assert_eq!(
            choose_protocol(&request("messagepack", 1), false),
            Err((
                "Cannot use the 'messagepack' protocol on the current transport. The transport \
                 does not support 'Binary' transfer format."
                    .to_owned(),
                Some(HubProtocol::MessagePack)
            ))
        );
    }

    #[test]
    fn stateful_reconnect_needs_version_2() {
        assert!(keeps_stateful(&request("json", 2)));
        assert!(!keeps_stateful(&request("json", 1)));
    }
}
