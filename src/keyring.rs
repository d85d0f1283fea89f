//! The access keys in force: read by every request that checks or mints a token and by the
//! upstream signer, replaced as a whole at runtime (admin endpoint, SIGHUP).

use std::sync::Arc;

use parking_lot::RwLock;

use crate::auth::AccessKeys;

/// The current [`AccessKeys`], replaceable at runtime.
#[derive(Debug)]
pub(crate) struct KeyRing(RwLock<Arc<AccessKeys>>);

impl KeyRing {
    /// A key ring holding `keys`.
    pub(crate) fn new(keys: AccessKeys) -> Self {
        Self(RwLock::new(Arc::new(keys)))
    }

    /// The keys in force now.
    pub(crate) fn current(&self) -> Arc<AccessKeys> {
        self.0.read().clone()
    }

    /// Replace the keys: tokens signed with a key no longer listed stop being accepted for new
    /// requests; open connections stay open.
    pub(crate) fn replace(&self, keys: AccessKeys) {
        *self.0.write() = Arc::new(keys);
    }
}
