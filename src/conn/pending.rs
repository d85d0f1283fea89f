//! Negotiated connections waiting for their transport.
//!
//! `POST /client/negotiate` registers a connection token here; the transport request (`id=`)
//! takes it out. Entries expire after `negotiate_timeout` (clients re-negotiate for each
//! fallback transport, so abandoned negotiations are normal) and the map is capped at
//! `max_pending_negotiations`: when full, negotiate answers 429 rather than growing.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::id::ConnectionId;

/// What negotiate established for a connection.
#[derive(Clone, Debug)]
pub(crate) struct Pending {
    /// The public connection id.
    pub connection_id: ConnectionId,
    /// The hub from the negotiate URL.
    pub hub: String,
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
        hub: String,
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
                hub,
                stateful_reconnect,
                created: now,
            },
        );
        Ok(())
    }

    /// Take the entry for `token` if it exists and has not expired.
    pub(crate) fn take(&self, token: &str) -> Option<Pending> {
        let p = self.map.lock().remove(token)?;
        (p.created.elapsed() < self.ttl).then_some(p)
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

    #[test]
    fn take_once_and_capacity() {
        let p = PendingConnections::new(Duration::from_secs(60), 2);
        p.insert("a".into(), ConnectionId::random(), "h".into(), false)
            .unwrap();
        p.insert("b".into(), ConnectionId::random(), "h".into(), false)
            .unwrap();
        assert_eq!(
            p.insert("c".into(), ConnectionId::random(), "h".into(), false),
            Err(PendingFull)
        );
        assert!(p.take("a").is_some());
        assert!(p.take("a").is_none(), "a token is used once");
        p.insert("c".into(), ConnectionId::random(), "h".into(), false)
            .unwrap();
    }

    #[test]
    fn expired_entries_are_not_taken() {
        let p = PendingConnections::new(Duration::from_millis(0), 10);
        p.insert("a".into(), ConnectionId::random(), "h".into(), false)
            .unwrap();
        assert!(p.take("a").is_none());
        p.insert("b".into(), ConnectionId::random(), "h".into(), false)
            .unwrap();
        assert_eq!(p.sweep(), 0);
    }
}
