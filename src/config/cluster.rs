//! `[cluster]`: several nodes sharing their hubs through Redis.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{ConfigError, MAX_BYTES, MAX_COUNT, MAX_SECS};

/// `[cluster]`: several Switchboard nodes share their hubs through Redis. Every node accepts
/// every request for every hub; see the README's "Running a cluster".
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// The engine: `redis://HOST:PORT[/DB]`, `rediss://…` (TLS) or `unix:///path`. Empty: a
    /// single node (the default; no Redis needed).
    pub redis_url: String,
    /// This node's id, unique in the cluster (letters, digits, `.`, `_`, `-`; at most 64).
    /// Empty: the host name and a random suffix.
    pub node_id: String,
    /// Prefix of every Redis channel and key, so that several clusters can share one Redis.
    pub prefix: String,
    /// How often a node tells the others it is alive.
    pub heartbeat_interval_ms: u64,
    /// A node not heard from for this long is gone: its pending answers are given up.
    pub node_timeout_ms: u64,
    /// How long a question to the other nodes (a group operation, an existence check, a
    /// listing) waits for their answers; then the REST call answers 503.
    pub request_timeout_ms: u64,
    /// Questions to other nodes in flight at once; one more answers 503 at once.
    pub max_pending_requests: usize,
    /// Hub messages waiting to be published, by count; beyond, new ones are delivered on this
    /// node only (counted in `switchboard_cluster_publish_dropped_total`).
    pub max_outgoing_messages: usize,
    /// Hub messages waiting to be published, by bytes.
    pub max_outgoing_bytes: usize,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            redis_url: String::new(),
            node_id: String::new(),
            prefix: "sb".to_owned(),
            heartbeat_interval_ms: 2000,
            node_timeout_ms: 8000,
            request_timeout_ms: 5000,
            max_pending_requests: 10_000,
            max_outgoing_messages: 65_536,
            max_outgoing_bytes: 64 * 1024 * 1024,
        }
    }
}

impl ClusterConfig {
    /// Whether this node joins a cluster.
    pub fn enabled(&self) -> bool {
        !self.redis_url.is_empty()
    }

    /// The node's settings; `node_id` is filled in when empty.
    pub fn settings(&self) -> crate::cluster::ClusterSettings {
        let node_id = if self.node_id.is_empty() {
            default_node_id()
        } else {
            self.node_id.clone()
        };
        crate::cluster::ClusterSettings {
            node_id,
            prefix: self.prefix.clone(),
            heartbeat_interval: Duration::from_millis(self.heartbeat_interval_ms),
            node_timeout: Duration::from_millis(self.node_timeout_ms),
            request_timeout: Duration::from_millis(self.request_timeout_ms),
            max_pending_requests: self.max_pending_requests,
            max_outgoing_messages: self.max_outgoing_messages,
            max_outgoing_bytes: self.max_outgoing_bytes,
        }
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let name_ok = |s: &str| {
            s.len() <= 64
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        };
        if !name_ok(&self.node_id) {
            return Err(ConfigError::new(
                "cluster.node_id",
                "may hold only letters, digits, '.', '_' and '-', at most 64",
            ));
        }
        if self.prefix.is_empty() || !name_ok(&self.prefix) {
            return Err(ConfigError::new(
                "cluster.prefix",
                "must be 1 to 64 letters, digits, '.', '_' or '-'",
            ));
        }
        if !self.redis_url.is_empty()
            && !["redis://", "rediss://", "unix://", "redis+unix://"]
                .iter()
                .any(|p| self.redis_url.starts_with(p))
        {
            return Err(ConfigError::new(
                "cluster.redis_url",
                "must start with redis://, rediss://, unix:// or redis+unix://",
            ));
        }
        let max_ms = MAX_SECS * 1000;
        for (key, value, max) in [
            (
                "cluster.heartbeat_interval_ms",
                self.heartbeat_interval_ms,
                max_ms,
            ),
            ("cluster.node_timeout_ms", self.node_timeout_ms, max_ms),
            (
                "cluster.request_timeout_ms",
                self.request_timeout_ms,
                max_ms,
            ),
            (
                "cluster.max_pending_requests",
                self.max_pending_requests as u64,
                MAX_COUNT,
            ),
            (
                "cluster.max_outgoing_messages",
                self.max_outgoing_messages as u64,
                MAX_COUNT,
            ),
            (
                "cluster.max_outgoing_bytes",
                self.max_outgoing_bytes as u64,
                MAX_BYTES,
            ),
        ] {
            if value == 0 {
                return Err(ConfigError::new(key, "must be greater than 0"));
            }
            if value > max {
                return Err(ConfigError::new(key, format!("must be at most {max}")));
            }
        }
        if self.node_timeout_ms <= self.heartbeat_interval_ms {
            return Err(ConfigError::new(
                "cluster.node_timeout_ms",
                "must be greater than cluster.heartbeat_interval_ms",
            ));
        }
        Ok(())
    }
}

/// `<host name>-<8 random hex digits>`: unique across restarts, recognisable in logs.
fn default_node_id() -> String {
    let host: String = super::host_name()
        .unwrap_or_default()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        .take(40)
        .collect();
    let mut bytes = [0u8; 4];
    let _ = getrandom::fill(&mut bytes);
    let suffix: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    if host.is_empty() {
        format!("node-{suffix}")
    } else {
        format!("{host}-{suffix}")
    }
}
