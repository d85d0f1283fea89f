//! Ids and names: the vocabulary every other module may import, and that imports nothing of
//! Switchboard's own.
//!
//! Connection ids, hub, group and user names, server connection ids and transport kinds are
//! newtypes over shared strings (`Arc<str>`: a clone is a reference-count bump), so that a user id
//! is never passed where a group name is expected. The name checks are Azure's.

use std::borrow::Borrow;
use std::fmt;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

macro_rules! name_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(Arc<str>);

        impl $name {
            /// The name as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                Self(s.into())
            }
        }

        impl From<String> for $name {
            fn from(s: String) -> Self {
                Self(s.into())
            }
        }

        impl Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({})"), self.0)
            }
        }
    };
}

name_type!(
    /// A client connection id: 16 random bytes, base64url without padding (22 characters), as
    /// ASP.NET Core makes them ([`ConnectionId::random`]). Public: applications address clients
    /// by it.
    ConnectionId
);
name_type!(
    /// A hub name (the `hub` query value), as given by the client.
    HubName
);
name_type!(
    /// A group name within a hub.
    GroupName
);
name_type!(
    /// A user id, from the token's `asrs.s.uid`, `nameid` or `sub` claim.
    UserId
);
name_type!(
    /// An app server's id (`X-ASRS-Server-Id`): one app server has several server connections.
    ServerId
);

impl ConnectionId {
    /// A fresh random id.
    pub fn random() -> Self {
        Self(random_token().into())
    }
}

/// Process-unique id of one hub-server connection (an app server has several).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServerConnId(pub u64);

impl fmt::Display for ServerConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
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

/// Which transport a connection uses (names as in negotiate).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum TransportKind {
    /// WebSockets.
    WebSockets,
    /// Server-Sent Events (+ POST).
    ServerSentEvents,
    /// Long polling (+ POST).
    LongPolling,
}

impl TransportKind {
    /// The name used in negotiate and in errors.
    pub fn name(self) -> &'static str {
        match self {
            Self::WebSockets => "WebSockets",
            Self::ServerSentEvents => "ServerSentEvents",
            Self::LongPolling => "LongPolling",
        }
    }

    /// The `asrs.s.htt` bit of this transport.
    pub fn bit(self) -> u32 {
        match self {
            Self::WebSockets => 1,
            Self::ServerSentEvents => 2,
            Self::LongPolling => 4,
        }
    }
}

/// A name that breaks Azure's rules for its kind; the text says which rule.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidName(pub String);

impl From<InvalidName> for String {
    fn from(e: InvalidName) -> Self {
        e.0
    }
}

/// Check a hub (or application) name against Azure's pattern
/// ``^[A-Za-z][A-Za-z0-9_`,.[\]]{0,127}$``.
pub fn validate_hub_name(name: &str) -> Result<(), InvalidName> {
    let mut chars = name.chars();
    let ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && name.len() <= 128
        && chars.all(|c| c.is_ascii_alphanumeric() || "_`,.[]".contains(c));
    if ok {
        Ok(())
    } else {
        Err(InvalidName(format!(
            "Invalid hub name '{name}': it must start with a letter and contain at most 128 letters, digits or the characters _`,.[]"
        )))
    }
}

/// Check a group name: 1 to 1024 characters, not only whitespace.
pub fn validate_group_name(name: &str) -> Result<(), InvalidName> {
    if name.trim().is_empty() || name.chars().count() > 1024 {
        Err(InvalidName(format!(
            "Invalid group name '{name}': it must be 1 to 1024 characters and not only whitespace."
        )))
    } else {
        Ok(())
    }
}

/// Check a user id: 1 to 1024 characters.
pub fn validate_user_id(id: &str) -> Result<(), InvalidName> {
    if id.is_empty() || id.chars().count() > 1024 {
        Err(InvalidName(
            "Invalid user id: it must be 1 to 1024 characters.".to_owned(),
        ))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_ids_are_22_url_safe_characters() {
        let a = ConnectionId::random();
        let b = ConnectionId::random();
        assert_ne!(a, b);
        assert_eq!(a.as_str().len(), 22);
        assert!(
            a.as_str()
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        );
    }

    #[test]
    fn names_follow_azure_rules() {
        assert!(validate_hub_name("chat_1").is_ok());
        assert!(validate_hub_name("1chat").is_err());
        assert!(validate_hub_name(&"a".repeat(129)).is_err());
        assert!(validate_group_name("  ").is_err());
        assert!(validate_group_name("g").is_ok());
        assert!(validate_user_id("").is_err());
        assert!(validate_user_id(&"u".repeat(1025)).is_err());
    }

    #[test]
    fn transport_bits_are_distinct() {
        let kinds = [
            TransportKind::WebSockets,
            TransportKind::ServerSentEvents,
            TransportKind::LongPolling,
        ];
        let bits: u32 = kinds.iter().map(|k| k.bit()).sum();
        assert_eq!(bits, 7);
    }
}
