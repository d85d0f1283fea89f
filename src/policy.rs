//! The mode policy: the one owner of the decisions that depend on the service mode.
//!
//! [`Policy`] holds the service mode and the upstream rules, both changeable at runtime, as one
//! immutable [`PolicySnapshot`] that is replaced as a whole. A client connection takes one
//! snapshot when it connects and answers every connect-time question from it (does the upstream
//! hear of it, which mode admits it), so a mode change while it connects cannot give it half of
//! each mode. Its messages are routed with the snapshot current at each message (new upstream
//! rules apply to open connections' next calls), but with the route fixed at connect time.
//!
//! The decisions themselves are the pure, table-tested functions of [`routing`]; the hub actor
//! carries out admission atomically with its own view of the connected hub servers (Default and
//! Classic modes need one), and the connection actors carry out the per-message actions.

use std::sync::Arc;

use parking_lot::RwLock;

use crate::config::ServiceMode;
use crate::protocol::HubMessage;
use crate::routing::{self, Admission, ClientRoute, MessageAction};
use crate::upstream::{Category, UpstreamRules};

/// The settings every mode decision reads, as of one moment.
#[derive(Debug)]
pub(crate) struct PolicySnapshot {
    /// The service mode.
    pub mode: ServiceMode,
    /// The upstream rules (Serverless mode's webhooks).
    pub upstream: Arc<UpstreamRules>,
}

impl PolicySnapshot {
    /// Whether clients are served without a hub server and hear of the upstream.
    pub(crate) fn is_serverless(&self) -> bool {
        self.mode == ServiceMode::Serverless
    }

    /// May a client connect, and how is it served, given whether a hub server that carries
    /// clients is connected to its hub.
    pub(crate) fn admit_client(&self, servers_connected: bool) -> Admission {
        routing::admit_client(self.mode, servers_connected)
    }

    /// May a hub-server connection of this kind connect.
    pub(crate) fn admit_server(&self, carries_clients: bool) -> Result<(), String> {
        routing::admit_server(self.mode, carries_clients)
    }

    /// What happens to `msg` from a client of `hub` served as `route`.
    pub(crate) fn route_message(
        &self,
        route: ClientRoute,
        hub: &str,
        msg: &HubMessage,
    ) -> MessageAction {
        routing::route_client_message(route, hub, msg, |target| {
            self.upstream
                .resolve(hub, Category::Messages, target)
                .is_some()
        })
    }
}

/// The current [`PolicySnapshot`], replaced as a whole when the mode or the rules change.
#[derive(Debug)]
pub(crate) struct Policy {
    current: RwLock<Arc<PolicySnapshot>>,
}

impl Policy {
    /// A policy starting in `mode` with `upstream`.
    pub(crate) fn new(mode: ServiceMode, upstream: UpstreamRules) -> Self {
        Self {
            current: RwLock::new(Arc::new(PolicySnapshot {
                mode,
                upstream: Arc::new(upstream),
            })),
        }
    }

    /// The settings as of now; hold it for as long as one decision must see one state.
    pub(crate) fn snapshot(&self) -> Arc<PolicySnapshot> {
        self.current.read().clone()
    }

    /// The service mode now.
    pub(crate) fn mode(&self) -> ServiceMode {
        self.current.read().mode
    }

    /// Switch the mode; returns the previous one.
    pub(crate) fn set_mode(&self, mode: ServiceMode) -> ServiceMode {
        let mut current = self.current.write();
        let previous = current.mode;
        *current = Arc::new(PolicySnapshot {
            mode,
            upstream: current.upstream.clone(),
        });
        previous
    }

    /// Replace the upstream rules.
    pub(crate) fn set_upstream(&self, upstream: UpstreamRules) {
        let mut current = self.current.write();
        *current = Arc::new(PolicySnapshot {
            mode: current.mode,
            upstream: Arc::new(upstream),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_keeps_its_mode_across_a_change() {
        let policy = Policy::new(ServiceMode::Serverless, UpstreamRules::default());
        let before = policy.snapshot();
        assert_eq!(
            policy.set_mode(ServiceMode::Default),
            ServiceMode::Serverless
        );
        assert!(before.is_serverless());
        assert_eq!(
            before.admit_client(false),
            Admission::Accept(ClientRoute::Serverless)
        );
        let after = policy.snapshot();
        assert_eq!(after.mode, ServiceMode::Default);
        assert!(matches!(after.admit_client(false), Admission::Reject(_)));
        assert!(after.admit_server(true).is_ok());
        assert!(before.admit_server(true).is_err());
    }

    #[test]
    fn new_upstream_rules_keep_the_mode() {
        let policy = Policy::new(ServiceMode::Classic, UpstreamRules::default());
        policy.set_upstream(UpstreamRules::default());
        assert_eq!(policy.mode(), ServiceMode::Classic);
    }
}
