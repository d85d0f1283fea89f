//! Configuration: the `switchboard.toml` structs, their defaults, layering and validation.
//!
//! Precedence, lowest first: built-in defaults, the TOML file (`--config`), then environment
//! variables and flags (`SWITCHBOARD_LISTEN` / `--listen` and friends; a flag wins over its
//! variable). [`Config::validate`] names the key at fault so that a bad configuration exits with
//! one line; a file that does not parse, or holds a value of the wrong type or an unknown key,
//! is named with the line and column and what to write instead (`diagnose.rs`). `switchboard.example.toml` at the repository root documents every key; a test keeps
//! it in sync with these structs.

use std::fmt;
use std::net::SocketAddr;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::id::TransportKind;
use crate::upstream::{UpstreamOptions, UpstreamRule, UpstreamRules};

mod cluster;
mod cors;
mod diagnose;
mod host;
mod limits;
mod logs;
mod metrics;
mod network;
mod tls;
pub use cluster::ClusterConfig;
pub use cors::CorsConfig;
pub use host::{host_name, parse_listen};
pub use limits::LimitsConfig;
pub use logs::{LogFormat, LogLevel, LogsConfig};
pub use metrics::MetricsConfig;
pub use network::{
    Cidr, DefaultAction, NetworkConfig, NetworkPolicy, NetworkRule, RequestKind, parse_address,
};
pub use tls::TlsConfig;

/// How a hub serves its clients (`docs/protocol.md#service-modes`).
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
    /// Address to listen on: `127.0.0.1:8080`, `[::]:8080` or a name like `localhost:8080`.
    #[serde(deserialize_with = "host::deserialize_listen")]
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
    #[serde(deserialize_with = "host::deserialize_listen_opt")]
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
    /// Resource logs: format and each category's level.
    pub logs: LogsConfig,
    /// What `/metrics` says about individual hubs.
    pub metrics: MetricsConfig,
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
            logs: LogsConfig::default(),
            metrics: MetricsConfig::default(),
        }
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

/// A configuration problem, naming the key at fault, or for a file that does not parse, the
/// file, line and column.
#[derive(Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// Dotted key path, e.g. `limits.max_message_size`. Empty when the message names its place
    /// itself: `switchboard.toml: line 3, column 8: string values must be quoted: ...`.
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

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "invalid configuration: {}: {}", self.key, self.message)
        }
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Parse TOML text; errors give the line and column, and the key at fault, in plain words.
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        diagnose::parse(text).map_err(|p| diagnose::error(None, text, &p))
    }

    /// Read and parse a TOML file; errors start with the file's name, then as
    /// [`from_toml`](Self::from_toml)'s.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError::new("config", format!("cannot read {}: {e}", path.display()))
        })?;
        let origin = path.display().to_string();
        diagnose::parse(&text).map_err(|p| diagnose::error(Some(&origin), &text, &p))
    }

    /// Check values that parse but make no sense.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.cluster.validate()?;
        self.cors.validate()?;
        self.tls.validate()?;
        self.network.validate()?;
        self.logs.validate()?;
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
    fn bounds(&self) -> [(&'static str, u64, u64, u64); 31] {
        let l = &self.limits;
        let t = &self.throttle;
        // usize → u64 never truncates on the platforms Switchboard builds for.
        let n = |v: usize| v as u64;
        [
            ("workers", n(self.workers), 0, MAX_WORKERS),
            (
                "metrics.top_hubs",
                n(self.metrics.top_hubs),
                0,
                metrics::MAX_TOP_HUBS,
            ),
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
    /// Listening on every interface (`0.0.0.0`, `[::]`), the host is this machine's name, which
    /// other machines may know it by (set `public_endpoint` if they use another).
    pub fn public_endpoint_or(&self, bound: SocketAddr) -> String {
        if self.public_endpoint.is_empty() {
            let scheme = if self.tls.enabled() { "https" } else { "http" };
            if bound.ip().is_unspecified()
                && let Some(host) = host_name()
            {
                format!("{scheme}://{host}:{}", bound.port())
            } else {
                format!("{scheme}://{bound}")
            }
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
        assert!(err.message.contains("limits.max_message_size:"), "{err}");
        let err = Config::from_toml("mode = \"turbo\"\n").unwrap_err();
        assert!(err.message.contains(" mode: "), "{err}");
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
