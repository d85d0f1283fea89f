//! Negotiated connections waiting for their transport.
//!
//! `POST /client/negotiate` registers a connection token here with its [`Owner`]; the transport
//! request (`id=`) claims it with a token for the same owner. A claim by anyone else leaves the
//! entry in place for its owner. Entries expire after `negotiate_timeout` (clients re-negotiate for each
//! fallback transport, so abandoned negotiations are normal) and the map is capped at
//! `max_pending_negotiations`: when full, negotiate answers 429 rather than growing.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::owner::{Owner, Refusal};
use crate::id::ConnectionId;

/// What negotiate established for a connection.
#[derive(Clone, Debug)]
pub(crate) struct Pending {
    /// The public connection id.
    pub connection_id: ConnectionId,
    /// The hub and user negotiate was called for.
    pub owner: Owner,
    /// Negotiated `useStatefulReconnect`.
    pub stateful_reconnect: bool,
    created: Instant,
}

/// Pending connections keyed by connection token.
#[derive(Debug)]
pub(crate) struct PendingConnections {
    map: Mutex<HashMap<String, Pending>>,
    ttl: Duration,
    capacity: usize,
}

/// The pending map is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("too many pending negotiations")]
pub(crate) struct PendingFull;

impl PendingConnections {
    /// An empty map whose entries live `ttl`, holding at most `capacity`.
    pub(crate) fn new(ttl: Duration, capacity: usize) -> Self {
        Self {
            map: Mutex::new(HashMap::new()),
            ttl,
            capacity,
        }
    }

    /// Register a negotiated connection under `token`.
    pub(crate) fn insert(
        &self,
        token: String,
        connection_id: ConnectionId,
        owner: Owner,
        stateful_reconnect: bool,
    ) -> Result<(), PendingFull> {
        let now = Instant::now();
        let mut map = self.map.lock();
        if map.len() >= self.capacity {
            map.retain(|_, p| now.duration_since(p.created) < self.ttl);
            if map.len() >= self.capacity {
                return Err(PendingFull);
            }
        }
        map.insert(
            token,
            Pending {
                connection_id,
                owner,
                stateful_reconnect,
                created: now,
            },
        );
        Ok(())
    }

    /// Take the entry for `token` if it exists, has not expired and belongs to `owner`; an
    /// entry of another owner stays where it is.
    pub(crate) fn claim(&self, token: &str, owner: &Owner) -> Result<Pending, Refusal> {
        let mut map = self.map.lock();
        let p = map.get(token).ok_or(Refusal::Unknown)?;
        if p.created.elapsed() >= self.ttl {
            map.remove(token);
            return Err(Refusal::Unknown);
        }
        if p.owner != *owner {
            return Err(Refusal::Foreign);
        }
        map.remove(token).ok_or(Refusal::Unknown)
    }

    /// Drop expired entries; returns how many remain.
    pub(crate) fn sweep(&self) -> usize {
        let now = Instant::now();
        let mut map = self.map.lock();
        map.retain(|_, p| now.duration_since(p.created) < self.ttl);
        if map.is_empty() && map.capacity() > 1024 {
            *map = HashMap::new();
        }
        map.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn anon() -> Owner {
        Owner::new("h", None)
    }

    #[test]
    fn claim_once_and_capacity() {
        let p = PendingConnections::new(Duration::from_secs(60), 2);
        p.insert("a".into(), ConnectionId::random(), anon(), false)
            .unwrap();
        p.insert("b".into(), ConnectionId::random(), anon(), false)
            .unwrap();
        assert_eq!(
            p.insert("c".into(), ConnectionId::random(), anon(), false),
            Err(PendingFull)
        );
        assert!(p.claim("a", &anon()).is_ok());
        assert_eq!(
            p.claim("a", &anon()).map(|_| ()),
            Err(Refusal::Unknown),
            "a token is used once"
        );
        p.insert("c".into(), ConnectionId::random(), anon(), false)
            .unwrap();
    }

    #[test]
    fn expired_entries_are_not_claimed() {
        let p = PendingConnections::new(Duration::from_millis(0), 10);
        p.insert("a".into(), ConnectionId::random(), anon(), false)
            .unwrap();
        assert_eq!(p.claim("a", &anon()).map(|_| ()), Err(Refusal::Unknown));
        p.insert("b".into(), ConnectionId::random(), anon(), false)
            .unwrap();
        assert_eq!(p.sweep(), 0);
    }

    #[test]
    fn only_the_owner_claims_and_a_foreign_claim_leaves_the_entry() {
        let p = PendingConnections::new(Duration::from_secs(60), 10);
        let bob = Owner::new("h", Some("bob"));
        p.insert("t".into(), ConnectionId::from("id"), bob.clone(), false)
            .unwrap();
        for other in [
            Owner::new("h", Some("eve")),
            Owner::new("h", None),
            Owner::new("other", Some("bob")),
        ] {
            assert_eq!(
                p.claim("t", &other).map(|_| ()),
                Err(Refusal::Foreign),
                "{other:?}"
            );
        }
        let claimed = p.claim("t", &bob).expect("bob claims his negotiation");
        assert_eq!(claimed.connection_id.as_str(), "id");
    }
}
