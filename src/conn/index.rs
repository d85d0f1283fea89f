//! Process-wide index of client connections by id, for the paths that address one client
//! directly and must not queue behind a hub actor: hub-server data for a client
//! (`ConnectionData`, `MultiConnectionData`) is pushed straight into that client's outbox.
//! Each connection is held with its hub: a lookup names the hub it is made for and finds only
//! that hub's connections ([`Lookup`]), so a hub server cannot reach another hub's clients.
//!
//! Sharded read-mostly maps; a lookup takes one shard's read lock briefly, never across an
//! `.await`. The index also counts its connections by transport (for the admin overview), so
//! that nobody walks 100k entries to draw a chart.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicUsize, Ordering};

use parking_lot::RwLock;

use crate::id::{ConnectionId, HubName, TransportKind};
use crate::peer::ConnHandle;

/// A connection looked up for one hub.
#[derive(Clone, Debug)]
pub(crate) enum Lookup {
    /// The hub's connection with this id.
    Here(ConnHandle),
    /// A connection of another hub has this id: not to be reached from this hub.
    OtherHub,
    /// No connection has this id.
    Missing,
}

/// Number of shards: a power of two comfortably above the worker count.
const SHARDS: usize = 16;

/// Connections by id.
#[derive(Debug)]
pub(crate) struct ConnectionIndex {
    shards: Vec<RwLock<HashMap<ConnectionId, (HubName, ConnHandle)>>>,
    hasher: RandomState,
    /// Connections by transport: WebSockets, ServerSentEvents, LongPolling, not recorded.
    by_transport: [AtomicUsize; 4],
}

/// Connections held, by transport.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct TransportCounts {
    pub(crate) web_sockets: usize,
    pub(crate) server_sent_events: usize,
    pub(crate) long_polling: usize,
    /// Handles made without a transport (embedding tests).
    pub(crate) other: usize,
}

fn slot(transport: Option<TransportKind>) -> usize {
    match transport {
        Some(TransportKind::WebSockets) => 0,
        Some(TransportKind::ServerSentEvents) => 1,
        Some(TransportKind::LongPolling) => 2,
        None => 3,
    }
}

impl Default for ConnectionIndex {
    fn default() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| RwLock::new(HashMap::new())).collect(),
            hasher: RandomState::new(),
            by_transport: Default::default(),
        }
    }
}

impl ConnectionIndex {
    fn shard(&self, id: &str) -> &RwLock<HashMap<ConnectionId, (HubName, ConnHandle)>> {
        &self.shards[(self.hasher.hash_one(id) as usize) % SHARDS]
    }

    /// Add a connection of `hub`.
    pub(crate) fn insert(&self, hub: HubName, conn: ConnHandle) {
        self.by_transport[slot(conn.transport())].fetch_add(1, Ordering::Relaxed);
        let replaced = self
            .shard(conn.id().as_str())
            .write()
            .insert(conn.id().clone(), (hub, conn));
        if let Some((_, old)) = replaced {
            self.by_transport[slot(old.transport())].fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Remove a connection.
    pub(crate) fn remove(&self, id: &ConnectionId) {
        let removed = self.shard(id.as_str()).write().remove(id);
        if let Some((_, old)) = removed {
            self.by_transport[slot(old.transport())].fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Connections held now, by transport (each count read on its own: a snapshot only while
    /// nothing connects).
    pub(crate) fn by_transport(&self) -> TransportCounts {
        let n = |i: usize| self.by_transport[i].load(Ordering::Relaxed);
        TransportCounts {
            web_sockets: n(0),
            server_sent_events: n(1),
            long_polling: n(2),
            other: n(3),
        }
    }

    /// The connection with this id, looked up for `hub`.
    pub(crate) fn lookup(&self, hub: &str, id: &str) -> Lookup {
        match self.shard(id).read().get(id) {
            Some((h, conn)) if h.as_str() == hub => Lookup::Here(conn.clone()),
            Some(_) => Lookup::OtherHub,
            None => Lookup::Missing,
        }
    }

    /// Connections held now.
    pub(crate) fn len(&self) -> usize {
        self.shards.iter().map(|s| s.read().len()).sum()
    }

    /// Whether no connection is held.
    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::peer::Outbox;
    use crate::protocol::HubProtocol;

    #[test]
    fn insert_lookup_remove() {
        let index = ConnectionIndex::default();
        let c = ConnHandle::new("abc".into(), None, HubProtocol::Json, Outbox::new(1, 1));
        index.insert("chat".into(), c.clone());
        let Lookup::Here(found) = index.lookup("chat", "abc") else {
            panic!("chat's connection is found for chat");
        };
        assert_eq!(found.id(), c.id());
        assert!(matches!(index.lookup("other", "abc"), Lookup::OtherHub));
        assert!(matches!(index.lookup("chat", "xyz"), Lookup::Missing));
        assert_eq!(index.len(), 1);
        index.remove(c.id());
        assert!(matches!(index.lookup("chat", "abc"), Lookup::Missing));
        assert!(index.is_empty());
    }

    #[test]
    fn counts_by_transport() {
        let index = ConnectionIndex::default();
        let ws = |id: &str| {
            ConnHandle::new(id.into(), None, HubProtocol::Json, Outbox::new(1, 1))
                .with_transport(Some(TransportKind::WebSockets))
        };
        let lp = ConnHandle::new("lp".into(), None, HubProtocol::Json, Outbox::new(1, 1))
            .with_transport(Some(TransportKind::LongPolling));
        index.insert("chat".into(), ws("a"));
        index.insert("chat".into(), ws("b"));
        index.insert("chat".into(), lp.clone());
        // The same id again replaces, it does not count twice.
        index.insert("chat".into(), ws("a"));
        let counts = index.by_transport();
        assert_eq!((counts.web_sockets, counts.long_polling), (2, 1));
        index.remove(lp.id());
        index.remove(lp.id());
        assert_eq!(index.by_transport().long_polling, 0);
        assert_eq!(index.by_transport().web_sockets, 2);
    }
}
