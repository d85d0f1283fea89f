//! Configuration: the `switchboard.toml` structs, their defaults, layering and validation.
//!
//! Precedence, lowest first: built-in defaults, the TOML file (`--config`), then environment
//! variables and flags (`SWITCHBOARD_LISTEN` / `--listen` and friends; a flag wins over its
//! variable). [`Config::validate`] names the key at fault so that a bad configuration exits with
//! one line. `switchboard.example.toml` at the repository root documents every key; a test keeps
//! it in sync with these structs.

use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::id::TransportKind;
use crate::upstream::{UpstreamOptions, UpstreamRule, UpstreamRules};

mod cors;
mod network;
mod tls;
pub use cors::CorsConfig;
pub use network::{
    Cidr, DefaultAction, NetworkConfig, NetworkPolicy, NetworkRule, RequestKind, parse_address,
};
pub use tls::TlsConfig;

/// How a hub serves its clients (`spec/service-protocol.md` §6).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ServiceMode {
    /// Clients are routed to a connected hub server; with none connected they are refused.
    #[default]
    Default,
    /// No hub servers: applications use the REST API, client events go to upstreams.
    Serverless,
    /// Decided per client at connect time: routed when a hub server is connected, else a
    /// limited serverless connection.
    Classic,
}

impl ServiceMode {
    /// The name used in the configuration and in messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Default => "default",
            Self::Serverless => "serverless",
            Self::Classic => "classic",
        }
    }

    /// The capitalised name Azure uses in its messages (`'Default' service mode`).
    pub fn display_name(self) -> &'static str {
        match self {
            Self::Default => "Default",
            Self::Serverless => "Serverless",
            Self::Classic => "Classic",
        }
    }
}

impl fmt::Display for ServiceMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for ServiceMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "default" => Ok(Self::Default),
            "serverless" => Ok(Self::Serverless),
            "classic" => Ok(Self::Classic),
            other => Err(format!(
                "unknown mode '{other}' (expected default, serverless or classic)"
            )),
        }
    }
}

/// The whole configuration of one Switchboard instance.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Service mode of every hub.
    pub mode: ServiceMode,
    /// Access keys; the first is the primary, the second the secondary. Tokens signed with any
    /// of them are accepted. Empty: a random key is generated at start and printed.
    pub access_keys: Vec<String>,
    /// The public base URL clients and SDKs use (`Endpoint=` of the connection string).
    /// Empty: `http://` plus the listen address.
    pub public_endpoint: String,
    /// A second listener, plain HTTP, for `/admin` and `/metrics` (and `/healthz`, `/readyz`),
    /// e.g. `127.0.0.1:9090`: the public listener then serves neither. Unset: both on `listen`.
    pub admin_listen: Option<SocketAddr>,
    /// The key `/admin` tokens are signed with instead of the access keys: with it, an access key
    /// no longer opens the admin API, and this key opens nothing else.
    pub admin_key: Option<String>,
    /// Number of HTTP worker threads; 0 = one per core.
    pub workers: usize,
    /// Set `TCP_NODELAY` on accepted sockets (the default). Off, Nagle's algorithm merges frames
    /// written while earlier ones are unacknowledged, and a frame can wait for a client's
    /// delayed ACK (tens of milliseconds, 200 ms on Windows).
    pub tcp_nodelay: bool,
    /// Transports offered to clients (a client token's `asrs.s.htt` claim can narrow them).
    pub transports: Vec<TransportKind>,
    /// Offer stateful reconnect to WebSocket clients that ask for it (in every mode).
    pub stateful_reconnect: bool,
    /// Sizes, timeouts and queue bounds.
    pub limits: LimitsConfig,
    /// Upstream webhooks (Serverless mode), in order: the first matching rule wins.
    pub upstream: Vec<UpstreamRule>,
    /// The local emulator's `settings.json` to read upstream rules from (after `upstream`).
    pub upstream_settings: String,
    /// Upstream HTTP client: timeout, concurrency, retries.
    pub upstream_options: UpstreamOptions,
    /// Per-tenant limits: connections and negotiations per user, token and client address.
    pub throttle: ThrottleConfig,
    /// Cluster mode: several nodes on one Redis serve one set of hubs. Off without `redis_url`.
    pub cluster: ClusterConfig,
    /// Which browser origins may read the broker's answers.
    pub cors: CorsConfig,
    /// HTTPS and WSS on the listener.
    pub tls: TlsConfig,
    /// Which client addresses may make which kinds of request.
    pub network: NetworkConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            admin_listen: None,
            admin_key: None,
            mode: ServiceMode::Default,
            access_keys: Vec::new(),
            public_endpoint: String::new(),
            workers: 0,
            tcp_nodelay: true,
            transports: vec![
                TransportKind::WebSockets,
                TransportKind::ServerSentEvents,
                TransportKind::LongPolling,
            ],
            stateful_reconnect: true,
            limits: LimitsConfig::default(),
            upstream: Vec::new(),
            upstream_settings: String::new(),
            upstream_options: UpstreamOptions::default(),
            throttle: ThrottleConfig::default(),
            cluster: ClusterConfig::default(),
            cors: CorsConfig::default(),
            tls: TlsConfig::default(),
            network: NetworkConfig::default(),
        }
    }
}

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

    fn validate(&self) -> Result<(), ConfigError> {
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
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_default();
    let host: String = host
        .trim()
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

/// Sizes, timeouts and queue bounds. Every queue in Switchboard is bounded by one of these.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Largest hub message a client may send, in bytes (also the handshake and WebSocket
    /// frame limit). Azure's SSE/long-polling limit is 1 MB.
    pub max_message_size: usize,
    /// Largest REST request body, in bytes (Azure: 1 MB).
    pub max_rest_body_size: usize,
    /// Largest service-protocol frame a hub server may send, in bytes (Azure advises < 16 MB).
    pub max_server_message_size: usize,
    /// Messages a connection's outbox may hold before the connection is closed as too slow.
    pub outbox_max_messages: usize,
    /// Bytes a connection's outbox may hold before the connection is closed as too slow.
    pub outbox_max_bytes: usize,
    /// Bytes a hub-server connection's outbox holds; client connections wait for room beyond
    /// it (at most 4 GiB).
    pub server_outbox_max_bytes: usize,
    /// Commands a hub's inbox holds before senders wait.
    pub hub_inbox_capacity: usize,
    /// Client connections this process accepts at once; more get HTTP 429.
    pub max_connections: usize,
    /// Negotiated connections waiting for their transport; more get HTTP 429.
    pub max_pending_negotiations: usize,
    /// Seconds a client has to send its handshake after the transport opens.
    pub handshake_timeout_secs: u64,
    /// Seconds of silence after which the server sends a Ping.
    pub keep_alive_interval_secs: u64,
    /// Seconds without any message from a client (after its first Ping) before it is dropped.
    pub client_timeout_secs: u64,
    /// Seconds a negotiated connection id stays valid without a transport.
    pub negotiate_timeout_secs: u64,
    /// Seconds a blocked socket write may take before the connection is dropped.
    pub send_timeout_secs: u64,
    /// Clock skew tolerated when checking token `exp` and `nbf`, in seconds.
    pub token_clock_skew_secs: u64,
    /// User-group memberships without TTL remembered per user (Azure keeps 100).
    pub max_user_groups_without_ttl: usize,
    /// Bytes of unacknowledged messages kept per stateful-reconnect connection (the reference
    /// default); beyond it the connection is closed.
    pub reconnect_buffer_bytes: usize,
    /// Seconds a stateful-reconnect connection waits for its client to come back.
    pub reconnect_window_secs: u64,
    /// Seconds a graceful stop (SIGTERM, Ctrl-C) may take: closing the clients, delivering
    /// their upstream `disconnected` events, closing the hub servers (Azure's default: 30).
    pub shutdown_timeout_secs: u64,
    /// Hubs this process runs at once; a request that would start one more is refused (429).
    pub max_hubs: usize,
    /// Seconds a hub with no client or hub-server connection and no remembered user-group
    /// membership lives on before it stops and is forgotten.
    pub hub_idle_timeout_secs: u64,
    /// Seconds a request body may take to arrive completely; a slower one gets HTTP 408 and its
    /// connection is closed.
    pub body_timeout_secs: u64,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_message_size: 1024 * 1024,
            max_rest_body_size: 1024 * 1024,
            max_server_message_size: 16 * 1024 * 1024,
            outbox_max_messages: 4096,
            outbox_max_bytes: 1024 * 1024,
            server_outbox_max_bytes: 16 * 1024 * 1024,
            hub_inbox_capacity: 4096,
            max_connections: 19_000,
            max_pending_negotiations: 100_000,
            handshake_timeout_secs: 15,
            keep_alive_interval_secs: 15,
            client_timeout_secs: 30,
            negotiate_timeout_secs: 15,
            send_timeout_secs: 10,
            token_clock_skew_secs: 30,
            max_user_groups_without_ttl: 100,
            reconnect_buffer_bytes: 100_000,
            reconnect_window_secs: 15,
            shutdown_timeout_secs: 30,
            max_hubs: 10_000,
            hub_idle_timeout_secs: 60,
            body_timeout_secs: 10,
        }
    }
}

impl LimitsConfig {
    /// [`Self::handshake_timeout_secs`] as a duration.
    pub fn handshake_timeout(&self) -> Duration {
        Duration::from_secs(self.handshake_timeout_secs)
    }
    /// [`Self::keep_alive_interval_secs`] as a duration.
    pub fn keep_alive_interval(&self) -> Duration {
        Duration::from_secs(self.keep_alive_interval_secs)
    }
    /// [`Self::client_timeout_secs`] as a duration.
    pub fn client_timeout(&self) -> Duration {
        Duration::from_secs(self.client_timeout_secs)
    }
    /// [`Self::negotiate_timeout_secs`] as a duration.
    pub fn negotiate_timeout(&self) -> Duration {
        Duration::from_secs(self.negotiate_timeout_secs)
    }
    /// [`Self::send_timeout_secs`] as a duration.
    pub fn send_timeout(&self) -> Duration {
        Duration::from_secs(self.send_timeout_secs)
    }
    /// [`Self::shutdown_timeout_secs`] as a duration.
    pub fn shutdown_timeout(&self) -> Duration {
        Duration::from_secs(self.shutdown_timeout_secs)
    }
    /// [`Self::hub_idle_timeout_secs`] as a duration.
    pub fn hub_idle_timeout(&self) -> Duration {
        Duration::from_secs(self.hub_idle_timeout_secs)
    }
    /// [`Self::body_timeout_secs`] as a duration.
    pub fn body_timeout(&self) -> Duration {
        Duration::from_secs(self.body_timeout_secs)
    }
}

/// Per-tenant limits, in the spirit of Azure's application-firewall rules (ThrottleByUserId,
/// ThrottleByJwtSignature) plus one per client address: how many client connections one user,
/// one token or one address may hold at once, and how many negotiations each may start per
/// second. Beyond a limit, negotiate and connect answer HTTP 429. `0` means no limit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ThrottleConfig {
    /// Client connections one user id (`asrs.s.uid`, `nameid` or `sub`) may hold at once.
    pub max_connections_per_user: usize,
    /// Client connections one token (its JWT signature) may hold at once.
    pub max_connections_per_token: usize,
    /// Client connections one client address may hold at once (IPv6: per /64).
    pub max_connections_per_ip: usize,
    /// Negotiations (and connects without one) one user id may start per second.
    pub max_negotiations_per_sec_per_user: u32,
    /// Negotiations (and connects without one) one token may start per second.
    pub max_negotiations_per_sec_per_token: u32,
    /// Negotiations (and connects without one) one client address may start per second.
    pub max_negotiations_per_sec_per_ip: u32,
    /// Take the client address from the last `X-Forwarded-For` entry (the one a reverse proxy in
    /// front of Switchboard appended) instead of the socket's peer address. Only for a broker
    /// that is reachable through that proxy alone: otherwise clients choose their address.
    pub trust_forwarded_for: bool,
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        Self {
            max_connections_per_user: 1000,
            max_connections_per_token: 0,
            max_connections_per_ip: 0,
            max_negotiations_per_sec_per_user: 100,
            max_negotiations_per_sec_per_token: 0,
            max_negotiations_per_sec_per_ip: 0,
            trust_forwarded_for: false,
        }
    }
}

/// Upper bound of every `*_secs` setting: one day. Longer timeouts serve no purpose, and the
/// bound keeps every deadline computed from them (`now + timeout`) far from overflowing.
pub const MAX_SECS: u64 = 24 * 3600;

/// Upper bound of every byte size: 2 GiB − 1 (the hub protocol's framing limit, and more than
/// any single buffer should ever hold).
pub const MAX_BYTES: u64 = i32::MAX as u64;

/// Upper bound of every count (connections, queue capacities, hubs, memberships): 2^24.
pub const MAX_COUNT: u64 = 1 << 24;

/// Upper bound of `workers`.
pub const MAX_WORKERS: u64 = 1024;

/// A configuration problem, naming the key at fault.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid configuration: {key}: {message}")]
pub struct ConfigError {
    /// Dotted key path, e.g. `limits.max_message_size`.
    pub key: String,
    /// What is wrong with it.
    pub message: String,
}

impl ConfigError {
    pub(crate) fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            message: message.into(),
        }
    }
}

impl Config {
    /// Parse TOML text; errors name the key at fault.
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        let de = toml::Deserializer::parse(text).map_err(|e| {
            ConfigError::new("(file)", e.message().replace('\n', " ").trim().to_owned())
        })?;
        serde_path_to_error::deserialize(de).map_err(|e| {
            let key = e.path().to_string();
            let message = e
                .into_inner()
                .message()
                .replace('\n', " ")
                .trim()
                .to_owned();
            ConfigError::new(if key == "." { "(file)".into() } else { key }, message)
        })
    }

    /// Read and parse a TOML file.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError::new("config", format!("cannot read {}: {e}", path.display()))
        })?;
        Self::from_toml(&text)
    }

    /// Check values that parse but make no sense.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.cluster.validate()?;
        self.cors.validate()?;
        self.tls.validate()?;
        self.network.validate()?;
        let l = &self.limits;
        for (i, key) in self.access_keys.iter().enumerate() {
            if key.trim().is_empty() {
                return Err(ConfigError::new(
                    format!("access_keys[{i}]"),
                    "must not be empty",
                ));
            }
            if key.contains(';') {
                return Err(ConfigError::new(
                    format!("access_keys[{i}]"),
                    "must not contain ';' (it would break the connection string)",
                ));
            }
        }
        if let Some(key) = &self.admin_key
            && (key.trim().is_empty() || key.contains(';'))
        {
            return Err(ConfigError::new(
                "admin_key",
                "must not be empty or contain ';'",
            ));
        }
        if self
            .admin_listen
            .is_some_and(|admin| admin == self.listen && admin.port() != 0)
        {
            return Err(ConfigError::new(
                "admin_listen",
                "must differ from listen (it is a second listener)",
            ));
        }
        if !self.public_endpoint.is_empty() {
            let ok = (self.public_endpoint.starts_with("http://")
                || self.public_endpoint.starts_with("https://"))
                && self.public_endpoint.len() > "https://".len();
            if !ok {
                return Err(ConfigError::new(
                    "public_endpoint",
                    "must be an absolute http:// or https:// URL",
                ));
            }
        }
        for (key, value, min, max) in self.bounds() {
            if value < min {
                return Err(ConfigError::new(key, "must be greater than 0"));
            }
            if value > max {
                return Err(ConfigError::new(
                    key,
                    format!("must be at most {max} (got {value})"),
                ));
            }
        }
        self.upstream_options
            .validate()
            .map_err(|m| ConfigError::new("upstream_options", m))?;
        self.upstream_rules()?;
        if self.transports.is_empty() {
            return Err(ConfigError::new(
                "transports",
                "at least one transport is required",
            ));
        }
        if l.keep_alive_interval_secs >= l.client_timeout_secs {
            return Err(ConfigError::new(
                "limits.keep_alive_interval_secs",
                "must be smaller than limits.client_timeout_secs",
            ));
        }
        Ok(())
    }

    /// Every numeric setting with its key, its smallest and its largest allowed value.
    fn bounds(&self) -> [(&'static str, u64, u64, u64); 30] {
        let l = &self.limits;
        let t = &self.throttle;
        // usize → u64 never truncates on the platforms Switchboard builds for.
        let n = |v: usize| v as u64;
        [
            ("workers", n(self.workers), 0, MAX_WORKERS),
            (
                "limits.max_message_size",
                n(l.max_message_size),
                1,
                MAX_BYTES,
            ),
            (
                "limits.max_rest_body_size",
                n(l.max_rest_body_size),
                1,
                MAX_BYTES,
            ),
            (
                "limits.max_server_message_size",
                n(l.max_server_message_size),
                1,
                MAX_BYTES,
            ),
            (
                "limits.outbox_max_messages",
                n(l.outbox_max_messages),
                1,
                MAX_COUNT,
            ),
            (
                "limits.outbox_max_bytes",
                n(l.outbox_max_bytes),
                1,
                MAX_BYTES,
            ),
            (
                "limits.hub_inbox_capacity",
                n(l.hub_inbox_capacity),
                1,
                MAX_COUNT,
            ),
            ("limits.max_connections", n(l.max_connections), 1, MAX_COUNT),
            (
                "limits.max_pending_negotiations",
                n(l.max_pending_negotiations),
                1,
                MAX_COUNT,
            ),
            (
                "limits.handshake_timeout_secs",
                l.handshake_timeout_secs,
                1,
                MAX_SECS,
            ),
            (
                "limits.keep_alive_interval_secs",
                l.keep_alive_interval_secs,
                1,
                MAX_SECS,
            ),
            (
                "limits.client_timeout_secs",
                l.client_timeout_secs,
                1,
                MAX_SECS,
            ),
            (
                "limits.negotiate_timeout_secs",
                l.negotiate_timeout_secs,
                1,
                MAX_SECS,
            ),
            ("limits.send_timeout_secs", l.send_timeout_secs, 1, MAX_SECS),
            (
                "limits.token_clock_skew_secs",
                l.token_clock_skew_secs,
                0,
                MAX_SECS,
            ),
            (
                "limits.max_user_groups_without_ttl",
                n(l.max_user_groups_without_ttl),
                0,
                MAX_COUNT,
            ),
            (
                "limits.reconnect_buffer_bytes",
                n(l.reconnect_buffer_bytes),
                0,
                MAX_BYTES,
            ),
            (
                "limits.reconnect_window_secs",
                l.reconnect_window_secs,
                0,
                MAX_SECS,
            ),
            ("limits.max_hubs", n(l.max_hubs), 1, MAX_COUNT),
            (
                "limits.server_outbox_max_bytes",
                n(l.server_outbox_max_bytes),
                1,
                MAX_BYTES,
            ),
            (
                "limits.shutdown_timeout_secs",
                l.shutdown_timeout_secs,
                1,
                MAX_SECS,
            ),
            ("limits.body_timeout_secs", l.body_timeout_secs, 1, MAX_SECS),
            (
                "throttle.max_connections_per_user",
                n(t.max_connections_per_user),
                0,
                MAX_COUNT,
            ),
            (
                "throttle.max_connections_per_token",
                n(t.max_connections_per_token),
                0,
                MAX_COUNT,
            ),
            (
                "throttle.max_connections_per_ip",
                n(t.max_connections_per_ip),
                0,
                MAX_COUNT,
            ),
            (
                "throttle.max_negotiations_per_sec_per_user",
                u64::from(t.max_negotiations_per_sec_per_user),
                0,
                MAX_COUNT,
            ),
            (
                "throttle.max_negotiations_per_sec_per_token",
                u64::from(t.max_negotiations_per_sec_per_token),
                0,
                MAX_COUNT,
            ),
            (
                "throttle.max_negotiations_per_sec_per_ip",
                u64::from(t.max_negotiations_per_sec_per_ip),
                0,
                MAX_COUNT,
            ),
            (
                "limits.hub_idle_timeout_secs",
                l.hub_idle_timeout_secs,
                1,
                MAX_SECS,
            ),
            (
                "upstream_options.timeout_secs",
                self.upstream_options.timeout_secs,
                // Its lower bound is checked by `UpstreamOptions::validate`.
                0,
                MAX_SECS,
            ),
        ]
    }

    /// Every upstream rule: `upstream` entries, then those of `upstream_settings` (read now).
    pub fn upstream_rule_list(&self) -> Result<Vec<UpstreamRule>, ConfigError> {
        let mut rules = self.upstream.clone();
        if !self.upstream_settings.is_empty() {
            let more = crate::upstream::load_emulator_settings(Path::new(&self.upstream_settings))
                .map_err(|m| ConfigError::new("upstream_settings", m))?;
            rules.extend(more);
        }
        Ok(rules)
    }

    /// The compiled upstream rules.
    pub fn upstream_rules(&self) -> Result<UpstreamRules, ConfigError> {
        UpstreamRules::new(&self.upstream_rule_list()?).map_err(|m| ConfigError::new("upstream", m))
    }

    /// The public endpoint, defaulting to `http://<listen>` (`https://` with TLS on).
    pub fn public_endpoint_or(&self, bound: SocketAddr) -> String {
        if self.public_endpoint.is_empty() {
            let scheme = if self.tls.enabled() { "https" } else { "http" };
            format!("{scheme}://{bound}")
        } else {
            self.public_endpoint.trim_end_matches('/').to_owned()
        }
    }
}

/// The connection string an Azure SignalR SDK uses to reach this instance
/// (`Endpoint=http://127.0.0.1;Port=8080;AccessKey=...;Version=1.0;`).
pub fn connection_string(endpoint: &str, access_key: &str) -> String {
    let (scheme, rest) = endpoint.split_once("://").unwrap_or(("http", endpoint));
    let authority = rest.split('/').next().unwrap_or(rest);
    // Split a trailing ":port" off the authority (IPv6 literals keep their brackets).
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !p.contains(']') && p.chars().all(|c| c.is_ascii_digit()) => (h, Some(p)),
        _ => (authority, None),
    };
    match port {
        Some(port) => {
            format!("Endpoint={scheme}://{host};Port={port};AccessKey={access_key};Version=1.0;")
        }
        None => format!("Endpoint={scheme}://{host};AccessKey={access_key};Version=1.0;"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        Config::default().validate().unwrap();
    }

    #[test]
    fn unknown_key_names_the_key() {
        let err = Config::from_toml("[limits]\nmax_mesage_size = 3\n").unwrap_err();
        assert!(err.message.contains("max_mesage_size"), "{err}");
    }

    #[test]
    fn wrong_type_names_the_key() {
        let err = Config::from_toml("[limits]\nmax_message_size = \"big\"\n").unwrap_err();
        assert_eq!(err.key, "limits.max_message_size", "{err}");
        let err = Config::from_toml("mode = \"turbo\"\n").unwrap_err();
        assert_eq!(err.key, "mode", "{err}");
    }

    #[test]
    fn validate_names_the_key() {
        let mut c = Config::default();
        c.limits.outbox_max_bytes = 0;
        assert_eq!(c.validate().unwrap_err().key, "limits.outbox_max_bytes");
        let mut c = Config::default();
        c.limits.body_timeout_secs = 0;
        assert_eq!(c.validate().unwrap_err().key, "limits.body_timeout_secs");
        let mut c = Config::default();
        c.limits.keep_alive_interval_secs = 40;
        assert_eq!(
            c.validate().unwrap_err().key,
            "limits.keep_alive_interval_secs"
        );
        let c = Config {
            access_keys: vec!["a;b".into()],
            ..Config::default()
        };
        assert_eq!(c.validate().unwrap_err().key, "access_keys[0]");
        let c = Config {
            public_endpoint: "ftp://x".into(),
            ..Config::default()
        };
        assert_eq!(c.validate().unwrap_err().key, "public_endpoint");
    }

    #[test]
    fn values_beyond_their_upper_bound_name_the_key_and_the_limit() {
        let huge = |set: fn(&mut Config)| {
            let mut c = Config::default();
            set(&mut c);
            c.validate().unwrap_err()
        };
        let e = huge(|c| c.limits.client_timeout_secs = u64::MAX);
        assert_eq!(e.key, "limits.client_timeout_secs");
        assert_eq!(
            e.message,
            format!("must be at most 86400 (got {})", u64::MAX)
        );
        let e = huge(|c| c.limits.hub_inbox_capacity = usize::MAX);
        assert_eq!(e.key, "limits.hub_inbox_capacity");
        assert!(e.message.contains("at most 16777216"), "{e}");
        let e = huge(|c| c.limits.outbox_max_bytes = usize::MAX);
        assert_eq!(e.key, "limits.outbox_max_bytes");
        assert!(e.message.contains("at most 2147483647"), "{e}");
        for (set, key) in [
            (
                (|c: &mut Config| c.limits.reconnect_window_secs = u64::MAX) as fn(&mut Config),
                "limits.reconnect_window_secs",
            ),
            (
                |c| c.limits.token_clock_skew_secs = u64::MAX,
                "limits.token_clock_skew_secs",
            ),
            (|c| c.limits.max_hubs = usize::MAX, "limits.max_hubs"),
            (|c| c.limits.max_hubs = 0, "limits.max_hubs"),
            (
                |c| c.limits.hub_idle_timeout_secs = u64::MAX,
                "limits.hub_idle_timeout_secs",
            ),
            (|c| c.workers = usize::MAX, "workers"),
            (
                |c| c.upstream_options.timeout_secs = u64::MAX,
                "upstream_options.timeout_secs",
            ),
        ] {
            assert_eq!(huge(set).key, key);
        }
        // The bounds themselves are allowed.
        let mut c = Config::default();
        c.limits.send_timeout_secs = MAX_SECS;
        c.limits.client_timeout_secs = MAX_SECS;
        c.limits.max_connections = MAX_COUNT as usize;
        c.limits.max_rest_body_size = MAX_BYTES as usize;
        c.validate().unwrap();
    }

    #[test]
    fn connection_string_shapes() {
        assert_eq!(
            connection_string("http://127.0.0.1:8080", "K"),
            "Endpoint=http://127.0.0.1;Port=8080;AccessKey=K;Version=1.0;"
        );
        assert_eq!(
            connection_string("https://sb.example.com", "K"),
            "Endpoint=https://sb.example.com;AccessKey=K;Version=1.0;"
        );
        assert_eq!(
            connection_string("http://[::1]:9000", "K"),
            "Endpoint=http://[::1];Port=9000;AccessKey=K;Version=1.0;"
        );
    }
}
