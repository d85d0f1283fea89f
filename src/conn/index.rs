//! Process-wide index of client connections by id, for the paths that address one client
//! directly and must not queue behind a hub actor: hub-server data for a client
//! (`ConnectionData`, `MultiConnectionData`) is pushed straight into that client's outbox.
//!
//! Sharded read-mostly maps; a lookup takes one shard's read lock briefly, never across an
//! `.await`.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};

use parking_lot::RwLock;

use crate::id::ConnectionId;
use crate::peer::ConnHandle;

/// Number of shards: a power of two comfortably above the worker count.
const SHARDS: usize = 16;

/// Connections by id.
#[derive(Debug)]
pub(crate) struct ConnectionIndex {
    shards: Vec<RwLock<HashMap<ConnectionId, ConnHandle>>>,
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
    fn shard(&self, id: &str) -> &RwLock<HashMap<ConnectionId, ConnHandle>> {
        &self.shards[(self.hasher.hash_one(id) as usize) % SHARDS]
    }

    /// Add a connection.
    pub(crate) fn insert(&self, conn: ConnHandle) {
        self.shard(conn.id().as_str())
            .write()
            .insert(conn.id().clone(), conn);
    }

    /// Remove a connection.
    pub(crate) fn remove(&self, id: &ConnectionId) {
        self.shard(id.as_str()).write().remove(id);
    }

    /// The connection with this id.
    pub(crate) fn get(&self, id: &str) -> Option<ConnHandle> {
        self.shard(id).read().get(id).cloned()
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
    fn insert_get_remove() {
        let index = ConnectionIndex::default();
        let c = ConnHandle::new("abc".into(), None, HubProtocol::Json, Outbox::new(1, 1));
        index.insert(c.clone());
        assert_eq!(
            index.get("abc").map(|h| h.id().clone()),
            Some(c.id().clone())
        );
        assert_eq!(index.len(), 1);
        index.remove(c.id());
        assert!(index.get("abc").is_none());
        assert!(index.is_empty());
    }
}
