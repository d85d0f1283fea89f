//! The I/O edge: one actor per client connection, and the outbox that feeds it.
//!
//! A [`ConnHandle`] is what the rest of the program holds for a connection: its id, user,
//! protocol and [`Outbox`]. The hub pushes already encoded frames into the outbox without
//! waiting; only the connection's own task ([`client::run`]) drains it into the socket.

pub mod client;
pub mod outbox;
pub mod pending;

use std::borrow::Borrow;
use std::fmt;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

pub use self::outbox::{CloseRequest, Outbox, PushError};
use crate::hub::UserId;
use crate::protocol::HubProtocol;

/// A client connection id: 16 random bytes, base64url without padding (22 characters), as
/// ASP.NET Core makes them. Public: applications address clients by it.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnectionId(Arc<str>);

impl ConnectionId {
    /// A fresh random id.
    pub fn random() -> Self {
        Self(random_token().into())
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<&str> for ConnectionId {
    fn from(s: &str) -> Self {
        Self(s.into())
    }
}

impl Borrow<str> for ConnectionId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ConnectionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ConnectionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ConnectionId({})", self.0)
    }
}

/// 16 cryptographically random bytes as base64url without padding: URL-safe, because the JS
/// client appends `id=<token>` to URLs without encoding it.
pub fn random_token() -> String {
    let mut bytes = [0u8; 16];
    // The OS random source failing is not recoverable for a server that mints secrets.
    getrandom::fill(&mut bytes).expect("the operating system's random number generator failed");
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The shared part of a connection, visible to hubs and the REST API.
#[derive(Debug)]
struct ConnShared {
    id: ConnectionId,
    user: Option<UserId>,
    protocol: HubProtocol,
    outbox: Outbox,
}

/// A cloneable reference to one client connection.
#[derive(Clone, Debug)]
pub struct ConnHandle(Arc<ConnShared>);

impl ConnHandle {
    /// A handle for a connection with the given outbox bounds.
    pub fn new(
        id: ConnectionId,
        user: Option<UserId>,
        protocol: HubProtocol,
        outbox: Outbox,
    ) -> Self {
        Self(Arc::new(ConnShared {
            id,
            user,
            protocol,
            outbox,
        }))
    }

    /// The connection id.
    pub fn id(&self) -> &ConnectionId {
        &self.0.id
    }

    /// The user the connection belongs to, if its token named one.
    pub fn user(&self) -> Option<&UserId> {
        self.0.user.as_ref()
    }

    /// The hub protocol chosen in the handshake.
    pub fn protocol(&self) -> HubProtocol {
        self.0.protocol
    }

    /// The connection's outbox.
    pub fn outbox(&self) -> &Outbox {
        &self.0.outbox
    }

    /// Ask the connection to close: queued messages are written first, then a Close message
    /// carrying `error`, then the transport closes.
    pub fn close(&self, error: Option<String>, allow_reconnect: bool) {
        self.0.outbox.request_close(CloseRequest {
            error,
            allow_reconnect,
            flush: true,
        });
    }
}
