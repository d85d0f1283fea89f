//! A client connection's resource-log events (connectivity; see [`crate::events`]): started,
//! ended with its close category and reason, handshake failed. Each is built only when someone
//! takes it.

use crate::close::{CloseCategory, CloseReason};
use crate::events::{Category, ConnectionType, Event, Events, LogLevel};
use crate::id::TransportKind;
use crate::protocol::{HubMessage, HubProtocol};

use super::ClientContext;

/// A client event of `ctx` at `level`: the connection's fields filled in.
fn client_event<'a>(
    ctx: &'a ClientContext,
    transport: TransportKind,
    level: LogLevel,
    operation: &'static str,
    message: &'a str,
) -> Event<'a> {
    Event {
        connection_id: Some(ctx.connection_id.as_str()),
        connection_type: Some(ConnectionType::Client),
        transport_type: Some(transport.name()),
        hub: Some(ctx.hub.name().as_str()),
        user_id: ctx.identity.user_id.as_deref(),
        ip: ctx.ip,
        ..Event::new(
            Category::Connectivity,
            level,
            operation,
            "Connection",
            message,
        )
    }
}

/// The client completed its handshake and was admitted.
pub(super) fn started(
    ctx: &ClientContext,
    transport: TransportKind,
    protocol: HubProtocol,
    server: Option<&str>,
) {
    let events = &ctx.env.events;
    if !events.enabled(Category::Connectivity, LogLevel::Info) {
        return;
    }
    let message = match server {
        Some(server) => format!(
            "Connection started ({} protocol), routed to app server {server}.",
            protocol.name()
        ),
        None => format!("Connection started ({} protocol).", protocol.name()),
    };
    events.emit(&Event {
        server_id: server,
        ..client_event(
            ctx,
            transport,
            LogLevel::Info,
            "ConnectionStarted",
            &message,
        )
    });
}

/// The connection ended for `reason`: info when it ended normally, a warning otherwise.
pub(super) fn ended(ctx: &ClientContext, transport: TransportKind, reason: &CloseReason) {
    let category = reason.category();
    let level = match category {
        CloseCategory::Normal | CloseCategory::ClosedByAppServer | CloseCategory::ServiceReload => {
            LogLevel::Info
        }
        _ => LogLevel::Warning,
    };
    let events = &ctx.env.events;
    if !events.enabled(Category::Connectivity, level) {
        return;
    }
    let message = format!("Connection ended: {}.", describe(reason));
    events.emit(&Event {
        close_category: Some(category.as_str()),
        ..client_event(ctx, transport, level, "ConnectionEnded", &message)
    });
}

/// The handshake failed with `error` (the text the client got), counted as `category`.
pub(super) fn handshake_failed(
    ctx: &ClientContext,
    transport: TransportKind,
    error: &str,
    category: CloseCategory,
) {
    let events = &ctx.env.events;
    if !events.enabled(Category::Connectivity, LogLevel::Warning) {
        return;
    }
    let message = format!("Handshake failed: {error}");
    events.emit(&Event {
        close_category: Some(category.as_str()),
        ..client_event(
            ctx,
            transport,
            LogLevel::Warning,
            "HandshakeFailed",
            &message,
        )
    });
}

/// Why a connection ended, in words: the Close message's text when there is one.
fn describe(reason: &CloseReason) -> String {
    let text = match reason {
        CloseReason::ClientClosed => "the client closed the connection",
        CloseReason::ByApplication(None) => "closed by the application",
        CloseReason::ByAppServer => "the app server closed the connection",
        CloseReason::SendTimeout => {
            "a write did not finish within limits.send_timeout_secs: the client stopped reading"
        }
        CloseReason::PollBufferFull => {
            "the long-polling buffer overflowed between two polls: the client stopped polling"
        }
        CloseReason::Abandoned => {
            "the client stopped polling, or did not come back within the reconnect window"
        }
        CloseReason::PingTimeout => {
            "the client sent nothing within limits.client_timeout_secs (ping timeout)"
        }
        other => return other.message().unwrap_or_else(|| other.to_string()),
    };
    text.to_owned()
}

/// A hub message from a client the broker serves itself (message tracing). Pings are not
/// traced.
pub(super) fn message(events: &Events, hub: &str, connection: &str, msg: &HubMessage) {
    if !events.enabled(Category::Messaging, LogLevel::Debug) {
        return;
    }
    let (kind, target, invocation) = match msg {
        HubMessage::Invocation(inv) => (
            "Invocation",
            Some(inv.target.as_str()),
            inv.invocation_id.as_deref(),
        ),
        HubMessage::StreamInvocation(inv) => (
            "StreamInvocation",
            Some(inv.target.as_str()),
            inv.invocation_id.as_deref(),
        ),
        HubMessage::StreamItem(_) => ("StreamItem", None, None),
        HubMessage::Completion(_) => ("Completion", None, None),
        HubMessage::CancelInvocation(_) => ("CancelInvocation", None, None),
        HubMessage::Close(_) => ("Close", None, None),
        HubMessage::Ack { .. } => ("Ack", None, None),
        HubMessage::Sequence { .. } => ("Sequence", None, None),
        HubMessage::Ping => return,
    };
    let message = match (target, invocation) {
        (Some(t), Some(id)) => format!("{kind} of {t} (invocation {id}) from the client."),
        (Some(t), None) => format!("{kind} of {t} from the client."),
        _ => format!("{kind} from the client."),
    };
    events.emit(&Event {
        connection_id: Some(connection),
        connection_type: Some(ConnectionType::Client),
        hub: Some(hub),
        message_type: Some(kind),
        target,
        ..Event::new(
            Category::Messaging,
            LogLevel::Debug,
            "MessageReceived",
            "Message",
            &message,
        )
    });
}

/// Bytes from a client forwarded to its hub server (message tracing; the broker does not
/// decode a routed client's messages).
pub(super) fn forwarded(events: &Events, hub: &str, connection: &str, server: &str, bytes: usize) {
    if !events.enabled(Category::Messaging, LogLevel::Debug) {
        return;
    }
    let message = format!("{bytes} bytes from the client forwarded to app server {server}.");
    events.emit(&Event {
        connection_id: Some(connection),
        connection_type: Some(ConnectionType::Client),
        hub: Some(hub),
        server_id: Some(server),
        message_type: Some("ConnectionDataMessage"),
        ..Event::new(
            Category::Messaging,
            LogLevel::Debug,
            "MessageForwarded",
            "Message",
            &message,
        )
    });
}
