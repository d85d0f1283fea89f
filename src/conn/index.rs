//! Process-wide index of client connections by id, for the paths that address one client
//! directly and must not queue behind a hub actor: hub-server data for a client
//! (`ConnectionData`, `MultiConnectionData`) is pushed straight into that client's outbox.
//! Each connection is held with its hub: a lookup names the hub it is made for and finds only
//! that hub's connections ([`Lookup`]), so a hub server cannot reach another hub's clients.
//!
//! Sharded read-mostly maps; a lookup takes one shard's read lock briefly, never across an
//! `.await`.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};

use parking_lot::RwLock;

use crate::id::{ConnectionId, HubName};
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
}

impl Default for ConnectionIndex {
    fn default() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| RwLock::new(HashMap::new())).collect(),
            hasher: RandomState::new(),
        }
    }
}

impl ConnectionIndex {
    fn shard(&self, id: &str) -> &RwLock<HashMap<ConnectionId, (HubName, ConnHandle)>> {
        &self.shards[(self.hasher.hash_one(id) as usize) % SHARDS]
    }

    /// Add a connection of `hub`.
    pub(crate) fn insert(&self, hub: HubName, conn: ConnHandle) {
        self.shard(conn.id().as_str())
            .write()
            .insert(conn.id().clone(), (hub, conn));
    }

    /// Remove a connection.
    pub(crate) fn remove(&self, id: &ConnectionId) {
        self.shard(id.as_str()).write().remove(id);
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
}
