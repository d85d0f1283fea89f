//! Who a connection belongs to: its hub and its user, as negotiate saw them. Every request
//! addressed to an existing or negotiated connection (a transport claiming a negotiated id, an
//! SSE or long-polling request, a stateful-reconnect resumption) must come with a client token
//! for the same [`Owner`]; anything else is answered as an unknown id, so that a refusal does not
//! tell whether the id exists.
//!
//! The user id is kept as its SHA-256 digest: every entry has the same small size whatever the
//! token carried, and the maps that hold owners are bounded in bytes by their count.

use sha2::{Digest as _, Sha256};

use crate::auth::Identity;
use crate::id::HubName;

/// A connection's hub and user (`None` for an anonymous connection).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Owner {
    hub: HubName,
    user: Option<[u8; 32]>,
}

impl Owner {
    /// The owner for `hub` and `user`.
    pub(crate) fn new(hub: &str, user: Option<&str>) -> Self {
        Self {
            hub: HubName::from(hub),
            user: user.map(|u| Sha256::digest(u.as_bytes()).into()),
        }
    }

    /// Feed what identifies the owner to a MAC (hub in canonical case, then the user's digest
    /// or the anonymous marker), for tokens that carry their owner's signature.
    pub(crate) fn feed(&self, mac: &mut dyn FnMut(&[u8])) {
        mac(crate::hub::canonical_hub_name(self.hub.as_str()).as_bytes());
        mac(&[0]);
        match &self.user {
            Some(digest) => {
                mac(&[1]);
                mac(digest);
            }
            None => mac(&[2]),
        }
    }

    /// The owner of a request for `hub` authenticated as `identity`.
    pub(crate) fn of(hub: &str, identity: &Identity) -> Self {
        Self::new(hub, identity.user_id.as_deref())
    }
}

/// Why a connection addressed by token or id was not handed out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// No such connection (or it expired).
    Unknown,
    /// The connection exists but belongs to another hub or user: answered as [`Self::Unknown`],
    /// counted in `switchboard_connection_takeover_refused_total`.
    Foreign,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_differ_by_hub_and_by_user_and_anonymous_is_its_own_user() {
        let bob = Owner::new("chat", Some("bob"));
        assert_eq!(bob, Owner::new("chat", Some("bob")));
        assert_ne!(bob, Owner::new("chat", Some("eve")));
        assert_ne!(bob, Owner::new("other", Some("bob")));
        assert_ne!(bob, Owner::new("chat", None));
        assert_eq!(Owner::new("chat", None), Owner::new("chat", None));
        // An empty user id is a user id, not anonymity.
        assert_ne!(Owner::new("chat", Some("")), Owner::new("chat", None));
    }
}
