//! The broker's state as the HTTP layer serves from it: one [`Broker`] per running broker,
//! built by [`Switchboard::start`](crate::Switchboard::start), shared by every actix-web worker
//! and private to the crate. The connection actors never see it: each gets its narrow
//! environment ([`ClientEnv`], [`ServerEnv`]) from here.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::watch;

use crate::auth::{AccessKeys, audience_base};
use crate::close::CloseReason;
use crate::config::{self, Config, ServiceMode};
use crate::conn::env::{ClientEnv, ConnectionSlots, ServerEnv};
use crate::conn::pending::PendingConnections;
use crate::conn::tenant::TenantLimits;
use crate::conn::transport::HttpConnections;
use crate::events::Events;
use crate::hub::{HubRegistry, Scope};
use crate::keyring::KeyRing;
use crate::policy::Policy;
use crate::telemetry::Metrics;
use crate::upstream::{UpstreamRule, UpstreamRules};

/// State shared by every HTTP worker of one broker.
#[derive(Debug)]
pub(crate) struct Broker {
    /// The configuration the broker started with.
    pub(crate) config: Config,
    /// The access keys in force.
    pub(crate) keys: Arc<KeyRing>,
    /// The mode policy: the service mode and the upstream rules, as one snapshot.
    pub(crate) policy: Arc<Policy>,
    /// The hubs.
    pub(crate) hubs: Arc<HubRegistry>,
    /// Counters.
    pub(crate) metrics: Arc<Metrics>,
    /// Negotiated connections waiting for their transport.
    pub(crate) pending: PendingConnections,
    /// SSE and long-polling connections by connection token.
    pub(crate) http: HttpConnections,
    /// The process-wide connection limit.
    pub(crate) slots: Arc<ConnectionSlots>,
    /// The per-tenant limits (`[throttle]`).
    pub(crate) tenants: Arc<TenantLimits>,
    /// What a client connection actor gets.
    pub(crate) client_env: Arc<ClientEnv>,
    /// What a hub-server connection actor gets.
    pub(crate) server_env: Arc<ServerEnv>,
    /// Public base URL (no trailing slash).
    pub(crate) public_endpoint: String,
    /// `true` from the start of a graceful stop: new negotiations and connections get 503.
    shutdown: watch::Sender<bool>,
    /// `true` when the hub-server connections are to close (the last step of a stop).
    servers_stop: watch::Sender<bool>,
    /// The cluster this node belongs to, if any.
    pub(crate) cluster: Option<Arc<crate::cluster::Cluster>>,
    /// The listener's TLS settings, when it serves TLS.
    pub(crate) tls: Option<Arc<crate::tls::TlsListener>>,
    /// `[network]`, compiled.
    pub(crate) network: config::NetworkPolicy,
    /// `admin_key`: what admin tokens are signed with instead of the access keys.
    pub(crate) admin_keys: Option<AccessKeys>,
    /// Resource logs and the live trace.
    pub(crate) events: Arc<Events>,
    /// When the broker started (the admin overview's uptime).
    pub(crate) started: std::time::Instant,
}

/// The parts a [`Broker`] is built from (see [`Switchboard::start`](crate::Switchboard::start)).
pub(crate) struct BrokerParts {
    pub(crate) config: Config,
    pub(crate) keys: Arc<KeyRing>,
    pub(crate) policy: Arc<Policy>,
    pub(crate) hubs: Arc<HubRegistry>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) client_env: Arc<ClientEnv>,
    pub(crate) server_env: Arc<ServerEnv>,
    pub(crate) slots: Arc<ConnectionSlots>,
    pub(crate) public_endpoint: String,
    pub(crate) shutdown: watch::Sender<bool>,
    pub(crate) servers_stop: watch::Sender<bool>,
    pub(crate) cluster: Option<Arc<crate::cluster::Cluster>>,
    pub(crate) tls: Option<Arc<crate::tls::TlsListener>>,
    pub(crate) events: Arc<Events>,
}

impl Broker {
    /// Assemble the state.
    pub(crate) fn new(p: BrokerParts) -> Self {
        let network = super::network::policy(&p.config);
        let admin_keys = p
            .config
            .admin_key
            .clone()
            .map(|key| AccessKeys::new(vec![key]));
        let limits = &p.config.limits;
        Self {
            pending: PendingConnections::new(
                limits.negotiate_timeout(),
                limits.max_pending_negotiations,
            ),
            http: HttpConnections::default(),
            // At most as many keys per second as negotiations may wait.
            tenants: Arc::new(TenantLimits::new(
                p.config.throttle.clone(),
                limits.max_pending_negotiations,
            )),
            config: p.config,
            keys: p.keys,
            policy: p.policy,
            hubs: p.hubs,
            metrics: p.metrics,
            slots: p.slots,
            client_env: p.client_env,
            server_env: p.server_env,
            public_endpoint: p.public_endpoint,
            shutdown: p.shutdown,
            servers_stop: p.servers_stop,
            cluster: p.cluster,
            tls: p.tls,
            network,
            admin_keys,
            events: p.events,
            started: std::time::Instant::now(),
        }
    }
}

impl Broker {
    /// The current service mode.
    pub(crate) fn mode(&self) -> ServiceMode {
        self.policy.mode()
    }

    /// The access keys in force now (they can change at runtime).
    pub(crate) fn keys(&self) -> Arc<AccessKeys> {
        self.keys.current()
    }

    /// The upstream rules in force now.
    pub(crate) fn upstream_rules(&self) -> Arc<UpstreamRules> {
        self.policy.snapshot().upstream.clone()
    }

    /// Replace the access keys: tokens signed with a key no longer listed stop being accepted
    /// for new requests; open connections stay open.
    pub(crate) fn set_keys(&self, keys: AccessKeys) {
        self.keys.replace(keys);
    }

    /// Change the service mode. Clients keep the routing they were given at connect time;
    /// switching to Serverless closes the hub-server connections that carry clients (their
    /// clients are closed with them), Weak connections stay.
    pub(crate) async fn set_mode(&self, mode: ServiceMode) {
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
    pub(crate) async fn apply(&self, patch: SettingsPatch) -> Result<(), config::ConfigError> {
        if let Some(rules) = patch.check()? {
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
    pub(crate) fn settings_view(&self) -> serde_json::Value {
        serde_json::json!({
            "mode": self.mode().as_str(),
            "accessKeys": { "count": self.keys().all().len() },
            // Query values may be keys (Functions' `code=`): never shown.
            "upstream": self
                .upstream_rules()
                .rules()
                .iter()
                .map(UpstreamRule::redacted)
                .collect::<Vec<_>>(),
        })
    }

    /// A graceful stop, bounded by `limits.shutdown_timeout_secs`; `false` when the time ran
    /// out first (whatever is left is closed without waiting).
    ///
    /// 1. From now on new negotiations and connections get 503, `/readyz` 503 (the REST API
    ///    keeps serving, so applications can still send their last messages).
    /// 2. Every client gets a Close message with `allowReconnect: true` — this instance is going
    ///    away, not the service — and its hub server hears of it (`CloseConnection`). Clients that
    ///    finish their handshake meanwhile are closed on the next round.
    /// 3. The upstream `disconnected` events (and calls still queued before them) are delivered.
    /// 4. The hub-server connections close (WebSocket close 1001 with the reason).
    pub(crate) async fn drain(&self) -> bool {
        self.shutdown.send_replace(true);
        let timeout = self.config.limits.shutdown_timeout();
        let done = tokio::time::timeout(timeout, self.drain_steps())
            .await
            .is_ok();
        self.servers_stop.send_replace(true);
        if let Some(cluster) = &self.cluster {
            // The other nodes stop waiting for this one's answers at once.
            cluster.leave().await;
        }
        if !done {
            tracing::warn!(
                clients = self.client_env.connections.len(),
                timeout_secs = timeout.as_secs(),
                "graceful stop ran out of time; closing what is left"
            );
        }
        done
    }

    async fn drain_steps(&self) {
        const POLL: Duration = Duration::from_millis(20);
        // Rounds of closes: a client admitted after a round is caught by the next one.
        const ROUND: u32 = 25;
        let mut polls = 0u32;
        while !self.client_env.connections.is_empty() {
            if polls.is_multiple_of(ROUND) {
                self.close_clients().await;
            }
            polls += 1;
            tokio::time::sleep(POLL).await;
        }
        let tasks = &self.client_env.upstream_tasks;
        tasks.close();
        tasks.wait().await;
        self.servers_stop.send_replace(true);
        while self
            .metrics
            .server_connections_current
            .load(Ordering::Relaxed)
            > 0
        {
            tokio::time::sleep(POLL).await;
        }
    }

    /// Close every client of every hub with the shutdown Close message.
    async fn close_clients(&self) {
        for name in self.hubs.names() {
            if let Some(hub) = self.hubs.get(name.as_str()) {
                // A hub that is already gone has no connections left to close.
                let _ = hub
                    .close_connections(Scope::All, Vec::new(), CloseReason::Shutdown)
                    .await;
            }
        }
    }

    /// Whether a graceful stop has begun.
    pub(crate) fn is_stopping(&self) -> bool {
        *self.shutdown.borrow()
    }

    /// A receiver that turns `true` when the broker is stopping.
    pub(crate) fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    /// Connections (clients and hub servers) holding a slot now.
    pub(crate) fn connection_count(&self) -> usize {
        self.slots.held()
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
    /// Checks the change as a whole (keys as the configuration checks them, at least one;
    /// upstream rules compiled) and returns the compiled upstream rules it brings, if any.
    pub(crate) fn check(&self) -> Result<Option<UpstreamRules>, config::ConfigError> {
        if let Some(keys) = &self.access_keys {
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
        match &self.upstream {
            Some(list) => {
                UpstreamRules::new(list)
                    .map(Some)
                    .map_err(|message| config::ConfigError {
                        key: "upstream".into(),
                        message,
                    })
            }
            None => Ok(None),
        }
    }

    /// The runtime-changeable part of a configuration (keys only when it names some).
    pub fn from_config(config: &Config) -> Result<Self, config::ConfigError> {
        Ok(Self {
            mode: Some(config.mode),
            access_keys: (!config.access_keys.is_empty()).then(|| config.access_keys.clone()),
            upstream: Some(config.upstream_rule_list()?),
        })
    }
}

/// Mint a client token the way the Azure SDK does: audience `<endpoint>/client/?hub=<hub>`
/// (host without port), `nameid` = user.
pub(crate) fn client_token(
    shared: &Broker,
    hub: &str,
    user: Option<&str>,
    lifetime: Duration,
) -> String {
    let aud = format!(
        "{}/client/?hub={hub}",
        audience_base(&shared.public_endpoint)
    );
    let claims: Vec<(&str, &str)> = user.map(|u| vec![("nameid", u)]).unwrap_or_default();
    shared.keys().mint(&aud, lifetime.as_secs(), &claims)
}
