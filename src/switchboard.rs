//! The embedding API: build a broker from a [`Config`], start it on a bound listener, and hold
//! a [`SwitchboardHandle`] to reach its hubs ([`SwitchboardHandle::hub`]), inspect or stop it.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
//! let mut config = switchboard::Config::default();
//! config.mode = switchboard::ServiceMode::Serverless;
//! config.access_keys = vec!["my-access-key".into()];
//! let handle = switchboard::Switchboard::new(config)?.start(listener)?;
//! println!("{}", handle.connection_string());
//! handle.hub("chat")?.send_all("newMessage", ("server", "hi"), &[]).await?;
//! handle.stop().await;
//! # Ok(()) }
//! ```

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use actix_web::{App, HttpServer, web};
use parking_lot::RwLock;

use crate::auth::{AccessKeys, audience_base};
use crate::config::{self, Config, ServiceMode};
use crate::conn::index::ConnectionIndex;
use crate::conn::pending::PendingConnections;
use crate::hub::{HubRegistry, HubSettings};
use crate::policy::Policy;
use crate::telemetry::Metrics;
use crate::upstream::{UpstreamClient, UpstreamRule, UpstreamRules};

/// State shared by every HTTP worker and actor of one broker.
#[derive(Debug)]
pub struct Shared {
    /// The configuration the broker started with.
    pub config: Config,
    keys: RwLock<Arc<AccessKeys>>,
    /// The mode policy: the service mode and the upstream rules, as one snapshot.
    pub policy: Policy,
    /// The HTTP client for upstream webhooks.
    pub upstream: UpstreamClient,
    /// The hubs.
    pub hubs: HubRegistry,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// Negotiated connections waiting for their transport.
    pub pending: PendingConnections,
    /// Client connections by id.
    pub connections: ConnectionIndex,
    /// SSE and long-polling connections by connection token.
    pub http: crate::conn::transport::HttpConnections,
    /// Stateful-reconnect connections by connection token: where a reconnecting WebSocket goes.
    pub resumable: parking_lot::Mutex<
        std::collections::HashMap<
            String,
            tokio::sync::mpsc::Sender<crate::conn::transport::Resumption>,
        >,
    >,
    /// Public base URL (no trailing slash).
    pub public_endpoint: String,
    slots: AtomicUsize,
    shutdown: tokio::sync::watch::Sender<bool>,
}

impl Shared {
    /// The current service mode.
    pub fn mode(&self) -> ServiceMode {
        self.policy.mode()
    }

    /// The access keys in force now (they can change at runtime).
    pub fn keys(&self) -> Arc<AccessKeys> {
        self.keys.read().clone()
    }

    /// The upstream rules in force now.
    pub fn upstream_rules(&self) -> Arc<UpstreamRules> {
        self.policy.snapshot().upstream.clone()
    }

    /// Replace the access keys: tokens signed with a key no longer listed stop being accepted
    /// for new requests; open connections stay open.
    pub fn set_keys(&self, keys: AccessKeys) {
        *self.keys.write() = Arc::new(keys);
    }

    /// Change the service mode. Clients keep the routing they were given at connect time;
    /// switching to Serverless closes the hub-server connections that carry clients (their
    /// clients are closed with them), Weak connections stay.
    pub async fn set_mode(&self, mode: ServiceMode) {
        let previous = self.policy.set_mode(mode);
        if previous == mode {
            return;
        }
        tracing::info!(from = %previous, to = %mode, "service mode changed");
        if mode == ServiceMode::Serverless {
            for name in self.hubs.names() {
                if let Some(hub) = self.hubs.get(name.as_str()) {
                    // A hub that is gone has no server connections left.
                    let _ = hub.close_servers(true).await;
                }
            }
        }
    }

    /// Apply a settings change (admin endpoint, SIGHUP). Validated as a whole before anything
    /// changes.
    pub async fn apply(&self, patch: SettingsPatch) -> Result<(), config::ConfigError> {
        if let Some(keys) = &patch.access_keys {
            let candidate = Config {
                access_keys: keys.clone(),
                ..Config::default()
            };
            candidate.validate()?;
            if keys.is_empty() {
                return Err(config::ConfigError {
                    key: "access_keys".into(),
                    message: "at least one access key is required".into(),
                });
            }
        }
        let rules = match &patch.upstream {
            Some(list) => {
                Some(
                    UpstreamRules::new(list).map_err(|message| config::ConfigError {
                        key: "upstream".into(),
                        message,
                    })?,
                )
            }
            None => None,
        };
        if let Some(rules) = rules {
            // Clients decide per message, so new rules apply to open connections' next calls.
            self.policy.set_upstream(rules);
            tracing::info!("upstream rules replaced");
        }
        if let Some(keys) = patch.access_keys {
            self.set_keys(AccessKeys::new(keys));
            tracing::info!("access keys replaced");
        }
        if let Some(mode) = patch.mode {
            self.set_mode(mode).await;
        }
        Ok(())
    }

    /// The settings that can change at runtime, as the admin endpoint shows them (keys are not
    /// shown, only how many there are).
    pub fn settings_view(&self) -> serde_json::Value {
        serde_json::json!({
            "mode": self.mode().as_str(),
            "accessKeys": { "count": self.keys().all().len() },
            "upstream": self.upstream_rules().rules(),
        })
    }

    /// Reserve a connection slot; `None` when `limits.max_connections` is reached.
    pub fn try_reserve_connection(self: &Arc<Self>) -> Option<ConnectionSlot> {
        let max = self.config.limits.max_connections;
        let mut cur = self.slots.load(Ordering::Relaxed);
        loop {
            if cur >= max {
                return None;
            }
            match self.slots.compare_exchange_weak(
                cur,
                cur + 1,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Some(ConnectionSlot(self.clone())),
                Err(now) => cur = now,
            }
        }
    }

    /// Close every client (with a Close message allowing reconnect) and every hub-server
    /// connection, for a graceful stop.
    pub async fn close_all(&self) {
        let _ = self.shutdown.send(true);
        for name in self.hubs.names() {
            if let Some(hub) = self.hubs.get(name.as_str()) {
                // A hub that is already gone has no connections left to close.
                let _ = hub
                    .close_connections(
                        crate::hub::Scope::All,
                        Vec::new(),
                        crate::close::CloseReason::Shutdown,
                    )
                    .await;
            }
        }
    }

    /// A receiver that turns `true` when the broker is stopping.
    pub fn shutdown_signal(&self) -> tokio::sync::watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    /// Client connections holding a slot now.
    pub fn connection_count(&self) -> usize {
        self.slots.load(Ordering::Relaxed)
    }
}

/// A change to the runtime settings; absent fields stay as they are.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SettingsPatch {
    /// New service mode.
    pub mode: Option<ServiceMode>,
    /// New access keys (primary first); replaces all of them.
    pub access_keys: Option<Vec<String>>,
    /// New upstream rules; replaces all of them (`[]` removes every upstream).
    pub upstream: Option<Vec<UpstreamRule>>,
}

impl SettingsPatch {
    /// The runtime-changeable part of a configuration (keys only when it names some).
    pub fn from_config(config: &Config) -> Result<Self, config::ConfigError> {
        Ok(Self {
            mode: Some(config.mode),
            access_keys: (!config.access_keys.is_empty()).then(|| config.access_keys.clone()),
            upstream: Some(config.upstream_rule_list()?),
        })
    }
}

/// A reserved connection slot, released on drop.
#[derive(Debug)]
pub struct ConnectionSlot(Arc<Shared>);

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.0.slots.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A configured, not yet started broker.
#[derive(Debug)]
pub struct Switchboard {
    config: Config,
    keys: AccessKeys,
    upstream_rules: UpstreamRules,
    upstream_client: UpstreamClient,
}

impl Switchboard {
    /// Validate `config`; generate an access key when none is configured.
    pub fn new(config: Config) -> Result<Self, std::io::Error> {
        config
            .validate()
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string()))?;
        let keys = if config.access_keys.is_empty() {
            AccessKeys::new(vec![generate_access_key()])
        } else {
            AccessKeys::new(config.access_keys.clone())
        };
        let invalid = |e: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, e);
        let upstream_rules = config
            .upstream_rules()
            .map_err(|e| invalid(e.to_string()))?;
        let upstream_client =
            UpstreamClient::new(config.upstream_options.clone()).map_err(invalid)?;
        Ok(Self {
            config,
            keys,
            upstream_rules,
            upstream_client,
        })
    }

    /// The access keys in force (the generated one when none was configured).
    pub fn access_keys(&self) -> &AccessKeys {
        &self.keys
    }

    /// Serve on an already bound listener. Must be called inside a tokio runtime; the server
    /// runs on its own worker threads until [`SwitchboardHandle::stop`].
    pub fn start(self, listener: TcpListener) -> std::io::Result<SwitchboardHandle> {
        let local_addr = listener.local_addr()?;
        let limits = &self.config.limits;
        let metrics = Arc::new(Metrics::default());
        let shared = Arc::new(Shared {
            public_endpoint: self.config.public_endpoint_or(local_addr),
            keys: RwLock::new(Arc::new(self.keys)),
            policy: Policy::new(self.config.mode, self.upstream_rules),
            upstream: self.upstream_client,
            hubs: HubRegistry::new(
                HubSettings {
                    inbox_capacity: limits.hub_inbox_capacity,
                    max_user_groups_without_ttl: limits.max_user_groups_without_ttl,
                },
                metrics.clone(),
            ),
            pending: PendingConnections::new(
                limits.negotiate_timeout(),
                limits.max_pending_negotiations,
            ),
            connections: ConnectionIndex::default(),
            http: Default::default(),
            resumable: Default::default(),
            metrics,
            slots: AtomicUsize::new(0),
            shutdown: tokio::sync::watch::channel(false).0,
            config: self.config,
        });

        let workers = match shared.config.workers {
            0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
            n => n,
        };
        let data = web::Data::from(shared.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .configure(crate::http::configure)
        })
        .workers(workers)
        // Per worker; the process-wide cap is limits.max_connections (and the fd limit).
        .max_connections(shared.config.limits.max_connections.max(1024))
        .backlog(4096)
        // TCP_NODELAY by default, as Kestrel: with Nagle's algorithm a frame written while the
        // previous one is unacknowledged waits for the client's delayed ACK, which after any
        // client message (a keep-alive ping) measured +20 ms on the others' p99 (BENCHMARKS.md).
        // Saturated broadcast throughput measured the same either way within noise.
        .tcp_nodelay(shared.config.tcp_nodelay)
        .shutdown_timeout(5)
        .disable_signals()
        .listen(listener)?
        .run();
        let server_handle = server.handle();
        let join = tokio::spawn(server);

        let sweeper_shared = shared.clone();
        let sweeper = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                sweeper_shared.pending.sweep();
            }
        });

        Ok(SwitchboardHandle {
            local_addr,
            shared,
            server: server_handle,
            join,
            sweeper,
        })
    }
}

/// A running broker.
#[derive(Debug)]
pub struct SwitchboardHandle {
    local_addr: SocketAddr,
    shared: Arc<Shared>,
    server: actix_web::dev::ServerHandle,
    join: tokio::task::JoinHandle<std::io::Result<()>>,
    sweeper: tokio::task::JoinHandle<()>,
}

impl SwitchboardHandle {
    /// The address the broker listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Base URL, e.g. `http://127.0.0.1:8080`.
    pub fn endpoint(&self) -> &str {
        &self.shared.public_endpoint
    }

    /// The connection string an Azure SignalR SDK uses for this broker.
    pub fn connection_string(&self) -> String {
        config::connection_string(&self.shared.public_endpoint, self.shared.keys().primary())
    }

    /// The shared state (metrics, hubs, keys).
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// The operations on hub `name` (sends, groups, existence checks, closes) — what the REST
    /// API and the management client offer, as direct calls. Fails only when `name` breaks
    /// Azure's hub-name rule ([`crate::id::validate_hub_name`]); the hub starts on the first
    /// operation.
    pub fn hub(&self, name: &str) -> Result<crate::HubClient, crate::HubClientError> {
        crate::embed::HubClient::new(self.shared.clone(), name)
    }

    /// The counters.
    pub fn metrics(&self) -> &Metrics {
        &self.shared.metrics
    }

    /// Mint a client access token for `hub` (and `user`), valid `lifetime`.
    pub fn client_token(&self, hub: &str, user: Option<&str>, lifetime: Duration) -> String {
        client_token(&self.shared, hub, user, lifetime)
    }

    /// Stop accepting, close connections, and wait for the server to finish.
    pub async fn stop(self) {
        self.sweeper.abort();
        self.shared.close_all().await;
        self.server.stop(true).await;
        // The server's own result only reports what already went wrong while serving.
        let _ = self.join.await;
    }

    /// Wait until the server stops (for the binary: forever, or until a signal stops it).
    pub async fn wait(self) -> std::io::Result<()> {
        let result = self.join.await.unwrap_or(Ok(()));
        self.sweeper.abort();
        result
    }

    /// A handle that can stop the server from elsewhere (signal handlers).
    pub fn server_handle(&self) -> actix_web::dev::ServerHandle {
        self.server.clone()
    }
}

/// Mint a client token the way the Azure SDK does: audience `<endpoint>/client/?hub=<hub>`
/// (host without port), `nameid` = user.
pub fn client_token(shared: &Shared, hub: &str, user: Option<&str>, lifetime: Duration) -> String {
    let aud = format!(
        "{}/client/?hub={hub}",
        audience_base(&shared.public_endpoint)
    );
    let claims: Vec<(&str, &str)> = user.map(|u| vec![("nameid", u)]).unwrap_or_default();
    shared.keys().mint(&aud, lifetime.as_secs(), &claims)
}

/// A random 44-character access key (32 random bytes, base64), the shape Azure uses.
pub fn generate_access_key() -> String {
    use base64::Engine as _;
    let mut bytes = [0u8; 32];
    // The OS random source failing is not recoverable for a server that mints secrets.
    getrandom::fill(&mut bytes).expect("the operating system's random number generator failed");
    base64::engine::general_purpose::STANDARD.encode(bytes)
}
