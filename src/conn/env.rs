//! What the connection actors get from the broker, and nothing else: each actor holds an
//! `Arc` of its environment instead of the whole broker state, so what it can reach is written
//! here.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use parking_lot::Mutex;
use tokio::sync::{mpsc, watch};
use tokio_util::task::TaskTracker;

use super::index::ConnectionIndex;
use super::owner::{Owner, Refusal};
use super::tenant::TenantLease;
use super::transport::Resumption;
use crate::config::LimitsConfig;
use crate::events::Events;
use crate::keyring::KeyRing;
use crate::policy::Policy;
use crate::telemetry::Metrics;
use crate::upstream::UpstreamClient;

/// A client connection actor's environment.
#[derive(Debug)]
pub(crate) struct ClientEnv {
    /// Limits and timeouts.
    pub limits: LimitsConfig,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// The mode policy (mode and upstream rules).
    pub policy: Arc<Policy>,
    /// Client connections by id: a connection registers itself here once admitted.
    pub connections: Arc<ConnectionIndex>,
    /// Where a stateful-reconnect connection's client comes back.
    pub resumable: Arc<Resumable>,
    /// Upstream webhooks: the HTTP client, and the keys that sign the calls.
    pub upstream: UpstreamClient,
    /// The access keys in force (upstream signatures).
    pub keys: Arc<KeyRing>,
    /// Queued upstream calls per connection (`upstream_options.max_queue_per_connection`).
    pub upstream_queue: usize,
    /// The upstream work that outlives a connection (its worker, its `disconnected` event): a
    /// graceful stop waits for it, so that no `disconnected` event is lost.
    pub upstream_tasks: TaskTracker,
    /// Bytes of queued upstream calls per connection
    /// (`upstream_options.max_queue_bytes_per_connection`).
    pub upstream_queue_bytes: usize,
    /// Resource logs and the live trace.
    pub events: Arc<Events>,
}

/// A hub-server connection actor's environment.
#[derive(Debug)]
pub(crate) struct ServerEnv {
    /// Limits and timeouts.
    pub limits: LimitsConfig,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// The mode policy (which hub servers a mode accepts).
    pub policy: Arc<Policy>,
    /// Client connections by id: data a hub server sends for one client goes straight there.
    pub connections: Arc<ConnectionIndex>,
    /// Turns `true` when the broker closes its hub-server connections: the last step of a
    /// graceful stop, after the clients have gone (their closes must still reach the servers).
    pub shutdown: watch::Receiver<bool>,
    /// Resource logs and the live trace.
    pub events: Arc<Events>,
}

/// Stateful-reconnect connections by connection token: where a reconnecting WebSocket goes, and
/// whose it is. Bounded by the connections themselves: one entry (a token, an [`Owner`] and a
/// channel sender, a fixed size) per stateful connection that holds a connection slot, removed
/// when its guard is dropped — when its actor ends, or earlier when the upgrade or the slot was
/// refused, or the handshake turned stateful reconnect off (see [`ResumableEntry`]).
#[derive(Debug, Default)]
pub(crate) struct Resumable(Mutex<HashMap<String, (Owner, mpsc::Sender<Resumption>)>>);

impl Resumable {
    /// Register a connection's token; the entry goes when the returned guard is dropped.
    pub(crate) fn insert(
        self: &Arc<Self>,
        token: String,
        owner: Owner,
        tx: mpsc::Sender<Resumption>,
    ) -> ResumableEntry {
        self.0.lock().insert(token.clone(), (owner, tx));
        ResumableEntry(self.clone(), token)
    }

    /// Where the connection with this token waits for its client, if it does and belongs to
    /// `owner`.
    pub(crate) fn get(
        &self,
        token: &str,
        owner: &Owner,
    ) -> Result<mpsc::Sender<Resumption>, Refusal> {
        match self.0.lock().get(token) {
            None => Err(Refusal::Unknown),
            Some((o, _)) if o != owner => Err(Refusal::Foreign),
            Some((_, tx)) => Ok(tx.clone()),
        }
    }

    /// Entries held now.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.0.lock().len()
    }

    /// Stop accepting reconnects for this token.
    pub(crate) fn remove(&self, token: &str) {
        self.0.lock().remove(token);
    }
}

/// Removes a connection from [`Resumable`] when dropped (its actor ended).
#[derive(Debug)]
pub(crate) struct ResumableEntry(Arc<Resumable>, String);

impl Drop for ResumableEntry {
    fn drop(&mut self) {
        self.0.remove(&self.1);
    }
}

/// The process-wide connection limit (`limits.max_connections`), counted by slots.
#[derive(Debug)]
pub(crate) struct ConnectionSlots {
    held: AtomicUsize,
    max: usize,
}

impl ConnectionSlots {
    /// Room for `max` connections.
    pub(crate) fn new(max: usize) -> Self {
        Self {
            held: AtomicUsize::new(0),
            max,
        }
    }

    /// Reserve a slot; `None` when the limit is reached.
    pub(crate) fn try_reserve(self: &Arc<Self>) -> Option<ConnectionSlot> {
        let mut cur = self.held.load(Ordering::Relaxed);
        loop {
            if cur >= self.max {
                return None;
            }
            match self
                .held
                .compare_exchange_weak(cur, cur + 1, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => return Some(ConnectionSlot(self.clone(), None)),
                Err(now) => cur = now,
            }
        }
    }

    /// Slots held now.
    pub(crate) fn held(&self) -> usize {
        self.held.load(Ordering::Relaxed)
    }
}

/// A reserved connection slot, released on drop, with the tenant's share of the per-tenant
/// counts when the connection is a client's (given back with the slot).
#[derive(Debug)]
pub(crate) struct ConnectionSlot(Arc<ConnectionSlots>, Option<TenantLease>);

impl ConnectionSlot {
    /// The slot, also holding `lease` until the connection ends.
    pub(crate) fn with_lease(mut self, lease: TenantLease) -> Self {
        self.1 = Some(lease);
        self
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.0.held.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_bounded_and_released_on_drop() {
        let slots = Arc::new(ConnectionSlots::new(2));
        let a = slots.try_reserve().expect("first");
        let _b = slots.try_reserve().expect("second");
        assert!(slots.try_reserve().is_none());
        drop(a);
        assert_eq!(slots.held(), 1);
        assert!(slots.try_reserve().is_some());
    }

    #[test]
    fn a_resumable_entry_goes_with_its_guard() {
        let registry = Arc::new(Resumable::default());
        let (tx, _rx) = mpsc::channel(1);
        let owner = Owner::new("h", Some("bob"));
        let entry = registry.insert("t".into(), owner.clone(), tx);
        assert!(registry.get("t", &owner).is_ok());
        drop(entry);
        assert_eq!(registry.get("t", &owner).err(), Some(Refusal::Unknown));
        assert_eq!(registry.len(), 0);
    }

    #[test]
    fn only_the_owner_resumes() {
        let registry = Arc::new(Resumable::default());
        let (tx, _rx) = mpsc::channel(1);
        let _entry = registry.insert("t".into(), Owner::new("h", Some("bob")), tx);
        for other in [
            Owner::new("h", Some("eve")),
            Owner::new("h", None),
            Owner::new("other", Some("bob")),
        ] {
            assert_eq!(
                registry.get("t", &other).err(),
                Some(Refusal::Foreign),
                "{other:?}"
            );
        }
    }
}
