//! Writing to a client: one frame within the send timeout ([`write_frame`]), a failed
//! handshake's answer ([`fail_handshake`]) and one burst from the outbox ([`drain_outbox`]).
//!
//! It owns no connection state and decides nothing about the protocol: callers decide what to
//! write and what a failed write means for the connection.

use bytes::{Bytes, BytesMut};

use super::{ClientContext, RETAINED_INPUT_CAPACITY};
use crate::close::{CloseCategory, CloseReason, WsClose};
use crate::conn::env::ClientEnv;
use crate::conn::transport::{SendError, Transport};
use crate::peer::ConnHandle;
use crate::protocol::{HubProtocol, handshake};
use crate::telemetry::{Direction, Endpoint, HubStats, Metrics};

/// Answer the handshake with an error and close the transport with `close` (a WebSocket's
/// close frame); counted as a close of `category`.
pub(super) async fn fail_handshake(
    ctx: &ClientContext,
    mut transport: Transport,
    error: &str,
    protocol: Option<HubProtocol>,
    close: &WsClose,
    category: CloseCategory,
) {
    let env = &*ctx.env;
    Metrics::inc(&env.metrics.handshakes_failed);
    env.metrics.labelled.close(Endpoint::Client, category);
    tracing::debug!(error, "handshake failed");
    super::log::handshake_failed(ctx, transport.kind(), error, category);
    let frame = handshake::error_response(error);
    // The handshake answer goes out in the frame type of the chosen protocol.
    let _ = write_frame(
        &mut transport,
        protocol.unwrap_or(HubProtocol::Json),
        frame,
        env,
    )
    .await;
    transport.close(close, env.limits.send_timeout()).await;
}

/// Write one frame (text for JSON, binary for MessagePack) within the send timeout. A write that
/// times out (the client stopped reading) is counted; the caller then ends the connection.
pub(super) async fn write_frame(
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
pub(super) struct Burst {
    /// One frame for the socket: the frame that goes alone, or the coalesced buffer.
    pub(super) frame: Option<Bytes>,
    /// A close was requested; it comes after the frame.
    pub(super) close: Option<CloseReason>,
}

/// Count hub messages a client sent (once per read): `messages` in `bytes` bytes.
#[inline]
pub(super) fn count_in(env: &ClientEnv, hub: &HubStats, messages: u64, bytes: u64) {
    Metrics::add(&env.metrics.messages_received, messages);
    env.metrics
        .labelled
        .traffic(Endpoint::Client, Direction::In, messages, bytes);
    hub.traffic(Direction::In, messages, bytes);
}

/// Drain the connection's outbox into one frame. `out` is the coalescing buffer kept between
/// bursts: a frame that goes alone is passed on without a copy, several are one `Bytes` split
/// off `out`, and a buffer grown past [`RETAINED_INPUT_CAPACITY`] is released so an idle
/// connection keeps none.
pub(super) fn drain_outbox(conn: &ConnHandle, out: &mut BytesMut) -> Burst {
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
