//! Every way a client connection ends, in one enum: [`CloseReason`] knows the text of the Close
//! message the client gets, whether it may reconnect, whether a Close message is sent at all, and
//! the category a metric or a log counts it under.
//!
//! Texts are Azure's or ASP.NET Core's where they have one (the ping timeout's bare
//! `Connection closed with an error.`, the Default-mode and Classic-mode errors); the rest are
//! Switchboard's own and documented in the README.

use std::fmt;

/// Close error for clients whose hub server went away (Azure's text is not documented).
const APP_SERVER_GONE: &str = "Connection closed with an error. The app server this client was connected to has disconnected.";

/// Close error for a client whose outbox overflowed.
const SLOW_CLIENT: &str =
    "Connection closed because it could not keep up: its outbox limit was exceeded.";

/// Close error when the stateful-reconnect replay buffer is over its limit.
const RECONNECT_BUFFER_FULL: &str = "Connection closed with an error. The stateful reconnect buffer limit was exceeded: the client did not acknowledge messages in time.";

/// Close error for a Classic-mode client (connected while no app server was) that sends an
/// invocation (Azure's text).
pub const NO_APP_SERVER: &str = "No app server is currently connected to the Azure service.";

/// Close error for clients of a hub whose actor failed (it starts afresh on the next use).
const HUB_FAILED: &str =
    "Connection closed with an error. The hub failed on the service and is restarted; reconnect.";

/// Close error sent to clients when the broker stops (with `allowReconnect: true`: this
/// instance is going away, not the service).
const SHUTDOWN: &str = "Switchboard is shutting down.";

/// Prefix of every close caused by what the client sent (ASP.NET Core's text).
const ERROR_PREFIX: &str = "Connection closed with an error.";

/// Why a client connection ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CloseReason {
    /// The client said goodbye (a Close message) or its transport ended: nothing is sent.
    ClientClosed,
    /// Closed by the application (REST API, management client, embedding API, a hub server's
    /// close with ack) with its optional text; no reconnect.
    ByApplication(Option<String>),
    /// The hub server closed the client and already sent it its own Close message: only the
    /// transport closes.
    ByAppServer,
    /// The client sent something malformed; the detail says what. No reconnect (the same bytes
    /// would fail again).
    ProtocolError(String),
    /// The client sent a message over `limits.max_message_size`; no reconnect.
    MessageTooLarge(String),
    /// The client sent a WebSocket text frame that is not UTF-8; no reconnect.
    InvalidPayload(String),
    /// The client could not keep up: its outbox overflowed. It may reconnect.
    SlowClient,
    /// A long-polling client's buffer overflowed between two polls: nothing more, not even a
    /// Close message, can be queued for it.
    PollBufferFull,
    /// A write did not complete within `limits.send_timeout`: the client stopped reading. No
    /// Close message can reach it.
    SendTimeout,
    /// The client was silent for `limits.client_timeout` after its first Ping. It may
    /// reconnect (as ASP.NET Core).
    PingTimeout,
    /// A long-polling client stopped polling, or a stateful client did not come back within
    /// its window: nothing is sent.
    Abandoned,
    /// The hub server the client sticks to went away. It may reconnect (to another server).
    AppServerGone,
    /// A Classic-mode client connected while no app server was, and sent an invocation.
    NoAppServer,
    /// The stateful-reconnect replay buffer is over its limit; no reconnect.
    ReconnectBufferFull,
    /// The broker is stopping.
    Shutdown,
    /// The client's hub actor failed (a panic); a fresh hub serves the client when it
    /// reconnects.
    HubFailed,
}

/// The category a close is counted and logged under: Azure SignalR Service's
/// `ConnectionCloseCategory` dimension (its `ConnectionCloseCount` metric), whose names in
/// snake case are the `category` label of `switchboard_connection_closes_total`. A fixed, small
/// set, so it can be a metric label. Azure also counts connections refused before or during
/// the handshake (unauthorized, throttled, no app server); so does Switchboard.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CloseCategory {
    /// The client ended it (a Close message, or its transport ended).
    Normal,
    /// Refused by a connection limit or a per-tenant throttle (HTTP 429).
    Throttled,
    /// The client stopped sending (pings), or stopped polling.
    PingTimeout,
    /// No app server to serve the client (Default mode without a hub server, a Classic-mode
    /// client's invocation).
    NoAvailableServerConnection,
    /// The upstream refused the client's `connected` event, or could not be reached.
    InvokeUpstreamFailed,
    /// The client could not keep up (outbox overflow, send timeout).
    SlowClient,
    /// The handshake did not complete: no handshake in time, a protocol that cannot be served,
    /// or the client left during it.
    HandshakeError,
    /// The app server the client was routed to went away.
    ServerConnectionClosed,
    /// Something failed inside the broker (a hub actor's panic).
    ServiceTransientError,
    /// Malformed or oversized input.
    BadRequest,
    /// The application closed it: the app server, the REST API or the embedding API.
    ClosedByAppServer,
    /// The broker is stopping (Azure's name for an instance going away).
    ServiceReload,
    /// Refused for a missing, invalid or expired token (HTTP 401).
    Unauthorized,
}

impl CloseCategory {
    /// Every category, in the order they are rendered.
    pub const ALL: [Self; 13] = [
        Self::Normal,
        Self::Throttled,
        Self::PingTimeout,
        Self::NoAvailableServerConnection,
        Self::InvokeUpstreamFailed,
        Self::SlowClient,
        Self::HandshakeError,
        Self::ServerConnectionClosed,
        Self::ServiceTransientError,
        Self::BadRequest,
        Self::ClosedByAppServer,
        Self::ServiceReload,
        Self::Unauthorized,
    ];

    /// The label value: Azure's name in snake case.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Normal => "normal",
            Self::Throttled => "throttled",
            Self::PingTimeout => "ping_timeout",
            Self::NoAvailableServerConnection => "no_available_server_connection",
            Self::InvokeUpstreamFailed => "invoke_upstream_failed",
            Self::SlowClient => "slow_client",
            Self::HandshakeError => "handshake_error",
            Self::ServerConnectionClosed => "server_connection_closed",
            Self::ServiceTransientError => "service_transient_error",
            Self::BadRequest => "bad_request",
            Self::ClosedByAppServer => "closed_by_app_server",
            Self::ServiceReload => "service_reload",
            Self::Unauthorized => "unauthorized",
        }
    }

    /// Azure's name (`ConnectionCloseCategory` dimension value).
    pub fn azure_name(self) -> &'static str {
        match self {
            Self::Normal => "Normal",
            Self::Throttled => "Throttled",
            Self::PingTimeout => "PingTimeout",
            Self::NoAvailableServerConnection => "NoAvailableServerConnection",
            Self::InvokeUpstreamFailed => "InvokeUpstreamFailed",
            Self::SlowClient => "SlowClient",
            Self::HandshakeError => "HandshakeError",
            Self::ServerConnectionClosed => "ServerConnectionClosed",
            Self::ServiceTransientError => "ServiceTransientError",
            Self::BadRequest => "BadRequest",
            Self::ClosedByAppServer => "ClosedByAppServer",
            Self::ServiceReload => "ServiceReload",
            Self::Unauthorized => "Unauthorized",
        }
    }

    /// Its index in [`Self::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

impl CloseReason {
    /// The error text of the Close message (`None`: a Close without error, or none at all).
    pub fn message(&self) -> Option<String> {
        match self {
            Self::ClientClosed
            | Self::ByAppServer
            | Self::SendTimeout
            | Self::PollBufferFull
            | Self::Abandoned
            | Self::ByApplication(None) => None,
            Self::ByApplication(Some(text)) => Some(text.clone()),
            Self::ProtocolError(detail)
            | Self::MessageTooLarge(detail)
            | Self::InvalidPayload(detail) => Some(format!("{ERROR_PREFIX} {detail}")),
            Self::PingTimeout => Some(ERROR_PREFIX.to_owned()),
            Self::SlowClient => Some(SLOW_CLIENT.to_owned()),
            Self::AppServerGone => Some(APP_SERVER_GONE.to_owned()),
            Self::NoAppServer => Some(NO_APP_SERVER.to_owned()),
            Self::ReconnectBufferFull => Some(RECONNECT_BUFFER_FULL.to_owned()),
            Self::Shutdown => Some(SHUTDOWN.to_owned()),
            Self::HubFailed => Some(HUB_FAILED.to_owned()),
        }
    }

    /// The Close message's `allowReconnect`.
    pub fn allow_reconnect(&self) -> bool {
        matches!(
            self,
            Self::SlowClient
                | Self::PingTimeout
                | Self::AppServerGone
                | Self::HubFailed
                | Self::Shutdown
        )
    }

    /// Whether the client gets a Close message of ours before its transport closes (not when
    /// it left, cannot be reached, or its hub server sent its own).
    pub fn sends_close_message(&self) -> bool {
        !matches!(
            self,
            Self::ClientClosed
                | Self::ByAppServer
                | Self::SendTimeout
                | Self::PollBufferFull
                | Self::Abandoned
        )
    }

    /// The category it is counted under.
    pub fn category(&self) -> CloseCategory {
        match self {
            Self::ClientClosed => CloseCategory::Normal,
            Self::ByApplication(_) | Self::ByAppServer => CloseCategory::ClosedByAppServer,
            Self::ProtocolError(_)
            | Self::MessageTooLarge(_)
            | Self::InvalidPayload(_)
            | Self::ReconnectBufferFull => CloseCategory::BadRequest,
            Self::SlowClient | Self::SendTimeout | Self::PollBufferFull => {
                CloseCategory::SlowClient
            }
            Self::PingTimeout | Self::Abandoned => CloseCategory::PingTimeout,
            Self::AppServerGone => CloseCategory::ServerConnectionClosed,
            Self::NoAppServer => CloseCategory::NoAvailableServerConnection,
            Self::Shutdown => CloseCategory::ServiceReload,
            Self::HubFailed => CloseCategory::ServiceTransientError,
        }
    }

    /// The hub Close message to send, if any.
    pub fn close_message(&self) -> Option<crate::protocol::Close> {
        self.sends_close_message().then(|| crate::protocol::Close {
            error: self.message(),
            allow_reconnect: self.allow_reconnect(),
        })
    }

    /// The WebSocket close frame that ends the transport: what the client sent wrong, as a
    /// status code with the detail as its reason (1002 protocol error, 1007 text that is not
    /// UTF-8, 1009 message too big); 1000 without a reason for every other end.
    pub fn websocket_close(&self) -> WsClose {
        match self {
            Self::ProtocolError(detail) => WsClose::new(WsClose::PROTOCOL_ERROR, detail),
            Self::InvalidPayload(detail) => WsClose::new(WsClose::INVALID_PAYLOAD, detail),
            Self::MessageTooLarge(detail) => WsClose::new(WsClose::TOO_BIG, detail),
            _ => WsClose::normal(),
        }
    }

    /// A decode failure of what the client sent.
    pub fn from_protocol_error(error: &crate::protocol::ProtocolError) -> Self {
        match error {
            crate::protocol::ProtocolError::MessageTooLarge { .. } => {
                Self::MessageTooLarge(error.to_string())
            }
            crate::protocol::ProtocolError::InvalidData(_) => {
                Self::ProtocolError(error.to_string())
            }
        }
    }
}

/// A WebSocket close frame (RFC 6455 §5.5.1, §7.4): a status code and a reason of at most 123
/// bytes, so that the frame fits a control frame's 125.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WsClose {
    /// The status code.
    pub code: u16,
    /// Why, for the peer's logs; empty for none.
    pub reason: String,
}

impl WsClose {
    /// Normal closure.
    pub const NORMAL: u16 = 1000;
    /// This end is going away (the broker is stopping).
    pub const GOING_AWAY: u16 = 1001;
    /// The peer broke the protocol (malformed frame or message).
    pub const PROTOCOL_ERROR: u16 = 1002;
    /// A text frame that is not UTF-8.
    pub const INVALID_PAYLOAD: u16 = 1007;
    /// The peer broke a policy (a hub server whose first message is not a HandshakeRequest).
    pub const POLICY: u16 = 1008;
    /// A message too big to process.
    pub const TOO_BIG: u16 = 1009;
    /// The longest reason a close frame carries.
    pub const MAX_REASON: usize = 123;

    /// A close frame with `code` and `reason`, cut to [`Self::MAX_REASON`] bytes at a character
    /// boundary.
    pub fn new(code: u16, reason: &str) -> Self {
        let mut end = reason.len().min(Self::MAX_REASON);
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        Self {
            code,
            reason: reason[..end].to_owned(),
        }
    }

    /// 1001 with the shutdown text: what a hub server's connection closes with when the broker
    /// stops.
    pub fn going_away() -> Self {
        Self::new(Self::GOING_AWAY, SHUTDOWN)
    }

    /// Normal closure without a reason.
    pub fn normal() -> Self {
        Self {
            code: Self::NORMAL,
            reason: String::new(),
        }
    }
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.message() {
            Some(text) => write!(f, "{} ({text})", self.category().as_str()),
            None => f.write_str(self.category().as_str()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_reason_knows_its_text_reconnect_and_category() {
        let cases = [
            (CloseReason::ClientClosed, None, false, false, "normal"),
            (
                CloseReason::ByApplication(Some("bye".into())),
                Some("bye"),
                false,
                true,
                "closed_by_app_server",
            ),
            (
                CloseReason::ByApplication(None),
                None,
                false,
                true,
                "closed_by_app_server",
            ),
            (
                CloseReason::ByAppServer,
                None,
                false,
                false,
                "closed_by_app_server",
            ),
            (
                CloseReason::ProtocolError("bad".into()),
                Some("Connection closed with an error. bad"),
                false,
                true,
                "bad_request",
            ),
            (
                CloseReason::PingTimeout,
                Some("Connection closed with an error."),
                true,
                true,
                "ping_timeout",
            ),
            (
                CloseReason::SlowClient,
                Some(SLOW_CLIENT),
                true,
                true,
                "slow_client",
            ),
            (
                CloseReason::InvalidPayload("bad text".into()),
                Some("Connection closed with an error. bad text"),
                false,
                true,
                "bad_request",
            ),
            (CloseReason::SendTimeout, None, false, false, "slow_client"),
            (
                CloseReason::PollBufferFull,
                None,
                false,
                false,
                "slow_client",
            ),
            (CloseReason::Abandoned, None, false, false, "ping_timeout"),
            (
                CloseReason::AppServerGone,
                Some(APP_SERVER_GONE),
                true,
                true,
                "server_connection_closed",
            ),
            (
                CloseReason::NoAppServer,
                Some(NO_APP_SERVER),
                false,
                true,
                "no_available_server_connection",
            ),
            (
                CloseReason::Shutdown,
                Some(SHUTDOWN),
                true,
                true,
                "service_reload",
            ),
            (
                CloseReason::HubFailed,
                Some(HUB_FAILED),
                true,
                true,
                "service_transient_error",
            ),
        ];
        for (reason, text, reconnect, sends, category) in cases {
            assert_eq!(reason.message().as_deref(), text, "{reason:?}");
            assert_eq!(reason.allow_reconnect(), reconnect, "{reason:?}");
            assert_eq!(reason.sends_close_message(), sends, "{reason:?}");
            assert_eq!(reason.category().as_str(), category, "{reason:?}");
            assert_eq!(reason.close_message().is_some(), sends, "{reason:?}");
        }
    }

    #[test]
    fn refused_input_closes_the_websocket_with_a_code_and_a_reason() {
        let cases = [
            (CloseReason::ProtocolError("bad frame".into()), 1002),
            (CloseReason::InvalidPayload("not UTF-8".into()), 1007),
            (CloseReason::MessageTooLarge("too big".into()), 1009),
        ];
        for (reason, code) in cases {
            let close = reason.websocket_close();
            assert_eq!(close.code, code, "{reason:?}");
            assert!(reason.message().unwrap().ends_with(&close.reason));
        }
        for reason in [
            CloseReason::ClientClosed,
            CloseReason::SlowClient,
            CloseReason::PingTimeout,
            CloseReason::ByApplication(Some("bye".into())),
        ] {
            assert_eq!(reason.websocket_close(), WsClose::normal(), "{reason:?}");
        }
        // A close frame's reason fits a control frame, cut at a character boundary.
        let long = WsClose::new(1002, &"é".repeat(100));
        assert_eq!(long.reason.len(), 122);
        assert_eq!(WsClose::new(1002, &"x".repeat(200)).reason.len(), 123);
    }

    #[test]
    fn oversized_messages_are_their_own_reason() {
        let e = crate::protocol::ProtocolError::MessageTooLarge { max: 10 };
        assert_eq!(
            CloseReason::from_protocol_error(&e),
            CloseReason::MessageTooLarge("The maximum message size of 10B was exceeded.".into())
        );
    }

    #[test]
    fn categories_are_listed_in_index_order_with_distinct_labels() {
        for (i, c) in CloseCategory::ALL.iter().enumerate() {
            assert_eq!(c.index(), i, "{c:?}");
            assert_eq!(
                c.as_str(),
                snake(c.azure_name()),
                "the label is Azure's name in snake case"
            );
        }
    }

    fn snake(name: &str) -> String {
        let mut out = String::new();
        for (i, ch) in name.chars().enumerate() {
            if ch.is_ascii_uppercase() && i > 0 {
                out.push('_');
            }
            out.push(ch.to_ascii_lowercase());
        }
        out
    }
}
