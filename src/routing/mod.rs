//! Pure routing decisions, table-tested: may a client connect in a service mode, and where does
//! each of its messages go.
//!
//! The connection and hub actors ask these functions and carry out the answer; they hold no
//! state and do no I/O. [`sticky`] chooses the hub-server connection a client sticks to.
//! Upstreams (Serverless mode) arrive with their own issue and slot in as new variants.

pub mod sticky;

use crate::close::CloseReason;
use crate::config::ServiceMode;
use crate::protocol::HubMessage;

/// Azure's handshake error for a Default-mode hub without a connected app server.
pub const NO_SERVER_DEFAULT_MODE: &str = "SignalR Service is now in 'Default' service mode. Current mode works as a proxy that routes client traffic to the connected app servers. However app servers are not connected.";

/// How a connected client is served, fixed at connect time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientRoute {
    /// Default mode, or Classic mode with a hub server connected: every byte goes to the hub
    /// server the client sticks to, which also answers the handshake.
    ToServer,
    /// Serverless mode: the service is the hub; invocations go to an upstream when a rule
    /// matches them (rules are looked up per message: they can change at runtime).
    Serverless,
    /// Classic mode with no app server at connect time: receives REST sends only.
    ServerlessLimited,
}

/// The answer to a client's handshake.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Admission {
    /// Complete the handshake and serve the client this way.
    Accept(ClientRoute),
    /// Fail the handshake with this error text.
    Reject(String),
}

/// Decide whether a client may connect to a hub in `mode`.
pub fn admit_client(mode: ServiceMode, servers_connected: bool) -> Admission {
    match (mode, servers_connected) {
        (ServiceMode::Serverless, _) => Admission::Accept(ClientRoute::Serverless),
        (ServiceMode::Default | ServiceMode::Classic, true) => {
            Admission::Accept(ClientRoute::ToServer)
        }
        (ServiceMode::Default, false) => Admission::Reject(NO_SERVER_DEFAULT_MODE.to_owned()),
        (ServiceMode::Classic, false) => Admission::Accept(ClientRoute::ServerlessLimited),
    }
}

/// Whether a hub-server connection of this kind is accepted in `mode`
/// (`docs/protocol.md#connection-types`): Weak connections (send-only) in every mode,
/// connections that carry clients everywhere but Serverless.
pub fn admit_server(mode: ServiceMode, carries_clients: bool) -> Result<(), String> {
    if mode == ServiceMode::Serverless && carries_clients {
        Err(SERVERLESS_REFUSES_SERVERS.to_owned())
    } else {
        Ok(())
    }
}

/// Handshake error for a hub server that connects to a Serverless instance.
pub const SERVERLESS_REFUSES_SERVERS: &str = "SignalR Service is in 'Serverless' service mode: app server connections that carry clients are not accepted (Weak connections that only send messages are).";

/// What to do with one message a client sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MessageAction {
    /// Keep-alive only; nothing to forward.
    Liveness,
    /// The client said goodbye: end the connection without a Close message of ours.
    EndConnection,
    /// Answer the invocation with an error Completion carrying this text.
    RejectInvocation(String),
    /// Nothing can handle it: drop it (counted).
    Drop,
    /// Close the connection for this reason.
    Close(CloseReason),
    /// Forward to the client's hub server.
    ToServer,
    /// POST to the matching upstream (Serverless mode).
    ToUpstream,
}

/// Completion error for a streaming invocation in a serverless hub: upstreams take invocations
/// only.
pub const STREAMING_NOT_UPSTREAMED: &str =
    "Invocation failed: streaming invocations are not forwarded to upstreams in Serverless mode.";

/// Decide what happens to `msg` from a client served as `route` on hub `hub`.
/// `has_upstream(target)` tells whether an upstream rule matches `messages/<target>` for this
/// hub now (rules can change at runtime, so they are consulted per message).
pub fn route_client_message(
    route: ClientRoute,
    hub: &str,
    msg: &HubMessage,
    has_upstream: impl Fn(&str) -> bool,
) -> MessageAction {
    match msg {
        HubMessage::Ping => return MessageAction::Liveness,
        HubMessage::Close(_) => return MessageAction::EndConnection,
        _ => {}
    }
    match route {
        ClientRoute::ToServer => MessageAction::ToServer,
        ClientRoute::Serverless => match msg {
            HubMessage::Invocation(inv) if has_upstream(&inv.target) => MessageAction::ToUpstream,
            HubMessage::StreamInvocation(inv) if has_upstream(&inv.target) => {
                // Upstreams receive Invocation messages only (docs/protocol.md#upstream-requests).
                MessageAction::RejectInvocation(STREAMING_NOT_UPSTREAMED.to_owned())
            }
            HubMessage::Invocation(inv) | HubMessage::StreamInvocation(inv) => {
                match &inv.invocation_id {
                    Some(_) => MessageAction::RejectInvocation(no_upstream_error(hub, &inv.target)),
                    None => MessageAction::Drop,
                }
            }
            _ => MessageAction::Drop,
        },
        ClientRoute::ServerlessLimited => match msg {
            HubMessage::Invocation(_)
            | HubMessage::StreamInvocation(_)
            | HubMessage::StreamItem(_)
            | HubMessage::Completion(_)
            | HubMessage::CancelInvocation(_) => MessageAction::Close(CloseReason::NoAppServer),
            _ => MessageAction::Drop,
        },
    }
}

/// Completion error for a blocking invocation in a serverless hub without upstream.
pub fn no_upstream_error(hub: &str, target: &str) -> String {
    format!(
        "Invocation failed: hub '{hub}' is in Serverless mode and no upstream is configured to handle '{target}'."
    )
}

#[cfg(test)]
mod tests;
