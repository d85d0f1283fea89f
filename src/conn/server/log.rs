//! A hub-server connection's resource-log events (see [`crate::events`]): connected,
//! disconnected, refused (connectivity) and the messages it sends (messaging, `debug`).

use crate::events::{Category, ConnectionType, Event, Events, LogLevel};
use crate::protocol::service::{ConnectionType as ConnectionKind, ServiceMessage as M};

use super::ServerContext;

/// A server event of `ctx`: the connection's fields filled in.
fn server_event<'a>(
    ctx: &'a ServerContext,
    category: Category,
    level: LogLevel,
    operation: &'static str,
    collection: &'static str,
    message: &'a str,
) -> Event<'a> {
    Event {
        connection_id: Some(ctx.server_id.as_str()),
        connection_type: Some(ConnectionType::Server),
        transport_type: Some("WebSockets"),
        hub: Some(ctx.hub.name().as_str()),
        server_id: Some(ctx.server_id.as_str()),
        ip: ctx.ip,
        ..Event::new(category, level, operation, collection, message)
    }
}

/// The hub server completed its handshake (`kind`: its connection type).
pub(super) fn started(ctx: &ServerContext, kind: ConnectionKind) {
    let events = &ctx.env.events;
    if events.enabled(Category::Connectivity, LogLevel::Info) {
        let message = format!("Hub server connection started ({kind:?} connection).");
        events.emit(&server_event(
            ctx,
            Category::Connectivity,
            LogLevel::Info,
            "ServerConnectionStarted",
            "Connection",
            &message,
        ));
    }
}

/// The hub server's connection ended for `why`; `normal` when nothing went wrong.
pub(super) fn ended(ctx: &ServerContext, why: &str, normal: bool) {
    let level = if normal {
        LogLevel::Info
    } else {
        LogLevel::Warning
    };
    let events = &ctx.env.events;
    if events.enabled(Category::Connectivity, level) {
        let message = format!("Hub server connection ended: {why}.");
        events.emit(&server_event(
            ctx,
            Category::Connectivity,
            level,
            "ServerConnectionEnded",
            "Connection",
            &message,
        ));
    }
}

/// The hub server's handshake was refused with `why`.
pub(super) fn refused(ctx: &ServerContext, why: &str) {
    let events = &ctx.env.events;
    if events.enabled(Category::Connectivity, LogLevel::Warning) {
        let message = format!("Hub server handshake refused: {why}");
        events.emit(&server_event(
            ctx,
            Category::Connectivity,
            LogLevel::Warning,
            "ServerConnectionRefused",
            "Connection",
            &message,
        ));
    }
}

/// A message from the hub server (message tracing): its kind, its tracing id, and the
/// connection, user or group it is for. Pings are not traced.
pub(super) fn message(events: &Events, hub: &str, server_id: &str, msg: &M) {
    if matches!(msg, M::Ping { .. }) || !events.enabled(Category::Messaging, LogLevel::Debug) {
        return;
    }
    let (connection, user, group) = addressee(msg);
    let message = match (connection, user, group) {
        (Some(c), _, _) => format!(
            "{} from the hub server for connection {c}.",
            msg.type_name()
        ),
        (_, Some(u), _) => format!("{} from the hub server for user {u}.", msg.type_name()),
        (_, _, Some(g)) => format!("{} from the hub server for group {g}.", msg.type_name()),
        _ => format!("{} from the hub server.", msg.type_name()),
    };
    events.emit(&Event {
        connection_id: connection,
        user_id: user,
        group_name: group,
        connection_type: Some(ConnectionType::Server),
        message_type: Some(msg.type_name()),
        message_tracing_id: msg.extensions().and_then(|e| e.tracing_id),
        hub: Some(hub),
        server_id: Some(server_id),
        ..Event::new(
            Category::Messaging,
            LogLevel::Debug,
            "MessageReceived",
            "Message",
            &message,
        )
    });
}

/// The one connection, user or group a message is for, when it names one.
fn addressee(msg: &M) -> (Option<&str>, Option<&str>, Option<&str>) {
    match msg {
        M::JoinGroup {
            connection_id,
            group_name,
            ..
        }
        | M::JoinGroupWithAck {
            connection_id,
            group_name,
            ..
        } => (Some(connection_id), None, Some(group_name)),
        M::LeaveGroup {
            connection_id,
            group_name,
            ..
        }
        | M::LeaveGroupWithAck {
            connection_id,
            group_name,
            ..
        } => (Some(connection_id), None, group_name.as_deref()),
        M::UserJoinGroup {
            user_id,
            group_name,
            ..
        }
        | M::UserJoinGroupWithAck {
            user_id,
            group_name,
            ..
        }
        | M::CheckUserInGroupWithAck {
            user_id,
            group_name,
            ..
        } => (None, Some(user_id), Some(group_name)),
        M::UserLeaveGroup {
            user_id,
            group_name,
            ..
        }
        | M::UserLeaveGroupWithAck {
            user_id,
            group_name,
            ..
        } => (None, Some(user_id), group_name.as_deref()),
        M::ConnectionData { connection_id, .. }
        | M::CloseConnection { connection_id, .. }
        | M::CloseConnectionWithAck { connection_id, .. }
        | M::CheckConnectionExistenceWithAck { connection_id, .. }
        | M::ClientInvocation { connection_id, .. }
        | M::ClientCompletion { connection_id, .. }
        | M::ErrorCompletion { connection_id, .. } => (Some(connection_id), None, None),
        M::UserData { user_id, .. }
        | M::CheckUserExistenceWithAck { user_id, .. }
        | M::CloseUserConnectionsWithAck { user_id, .. } => (None, Some(user_id), None),
        M::GroupBroadcastData { group_name, .. }
        | M::CheckGroupExistenceWithAck { group_name, .. }
        | M::CloseGroupConnectionsWithAck { group_name, .. } => (None, None, Some(group_name)),
        _ => (None, None, None),
    }
}
