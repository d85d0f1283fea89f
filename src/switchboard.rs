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
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use actix_http::{HttpService, KeepAlive, Protocol};
use actix_service::{
    IntoServiceFactory, Service, ServiceFactory, ServiceFactoryExt, fn_factory, fn_service,
    map_config,
};
use actix_web::dev::AppConfig;
use actix_web::{App, web};
use futures_util::future::Either;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_util::task::TaskTracker;

use crate::auth::AccessKeys;
use crate::cluster::{Cluster, ClusterSettings, Engine};
use crate::config::{self, Config};
use crate::conn::env::{ClientEnv, ConnectionSlots, ServerEnv};
use crate::conn::index::ConnectionIndex;
use crate::conn::stream::Stream;
use crate::events::Events;
use crate::http::io::HttpIo;
pub use crate::http::state::SettingsPatch;
use crate::http::state::{Broker, BrokerParts, client_token};
use crate::hub::{HubRegistry, HubSettings};
use crate::keyring::KeyRing;
use crate::policy::Policy;
use crate::telemetry::Metrics;
use crate::tls::TlsListener;
use crate::upstream::{UpstreamClient, UpstreamRules};

/// A configured, not yet started broker.
#[derive(Debug)]
pub struct Switchboard {
    config: Config,
    keys: AccessKeys,
    upstream_rules: UpstreamRules,
    upstream_client: UpstreamClient,
    cluster: Option<(ClusterSettings, Arc<dyn Engine>)>,
    tls: Option<Arc<TlsListener>>,
    admin_listener: Option<TcpListener>,
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
        let tls = TlsListener::load(&config.tls)
            .map_err(|e| invalid(e.to_string()))?
            .map(Arc::new);
        Ok(Self {
            config,
            keys,
            upstream_rules,
            upstream_client,
            cluster: None,
            tls,
            admin_listener: None,
        })
    }

    /// Join a cluster: this node shares its hubs with every other node on `engine` (Redis
    /// for `switchboard serve --cluster`, [`crate::cluster::LocalEngine`] for several nodes in
    /// one process). Without this the broker is a single node.
    #[must_use]
    pub fn with_cluster(mut self, settings: ClusterSettings, engine: Arc<dyn Engine>) -> Self {
        self.cluster = Some((settings, engine));
        self
    }

    /// Join the cluster the configuration names (`[cluster] redis_url`), connecting to its
    /// Redis; nothing to do without one. [`start`](Self::start) refuses a configuration that
    /// names a cluster the broker has not joined.
    pub async fn join_configured_cluster(self) -> Result<Self, std::io::Error> {
        if !self.config.cluster.enabled() || self.cluster.is_some() {
            return Ok(self);
        }
        let engine = crate::cluster::RedisEngine::connect(&self.config.cluster.redis_url)
            .await
            .map_err(|e| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!("cluster.redis_url: {e}"),
                )
            })?;
        let settings = self.config.cluster.settings();
        Ok(self.with_cluster(settings, Arc::new(engine)))
    }

    /// Serve `/admin` and `/metrics` (with `/healthz` and `/readyz`) on `listener`, plain HTTP,
    /// and not on the public listener. Without it, [`start`](Self::start) binds the
    /// configuration's `admin_listen`, if any.
    #[must_use]
    pub fn admin_listener(mut self, listener: TcpListener) -> Self {
        self.admin_listener = Some(listener);
        self
    }

    /// The cluster node's id and engine, once joined.
    pub fn cluster_node(&self) -> Option<(String, String)> {
        self.cluster
            .as_ref()
            .map(|(settings, engine)| (settings.node_id.clone(), engine.describe()))
    }

    /// The access keys in force (the generated one when none was configured).
    pub fn access_keys(&self) -> &AccessKeys {
        &self.keys
    }

    /// Serve on an already bound listener. Must be called inside a tokio runtime; the server
    /// runs on its own worker threads until [`SwitchboardHandle::stop`].
    pub fn start(self, listener: TcpListener) -> std::io::Result<SwitchboardHandle> {
        if self.config.cluster.enabled() && self.cluster.is_none() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "the configuration names a cluster (cluster.redis_url): call Switchboard::join_configured_cluster first",
            ));
        }
        let local_addr = listener.local_addr()?;
        // `admin_listen` without a listener given: bound here.
        let admin_listener = match (self.admin_listener, self.config.admin_listen) {
            (Some(admin), _) => Some(admin),
            (None, Some(addr)) => Some(TcpListener::bind(addr)?),
            (None, None) => None,
        };
        let admin_addr = match &admin_listener {
            Some(admin) => Some(admin.local_addr()?),
            None => None,
        };
        let limits = self.config.limits.clone();
        let metrics = Arc::new(Metrics::default());
        metrics
            .labelled
            .set_connection_limit(limits.max_connections);
        metrics.labelled.hubs.set_top(self.config.metrics.top_hubs);
        let keys = Arc::new(KeyRing::new(self.keys));
        let policy = Arc::new(Policy::new(self.config.mode, self.upstream_rules));
        let connections = Arc::new(ConnectionIndex::default());
        let shutdown = watch::channel(false).0;
        let events = Arc::new(Events::new(
            &self.config.logs,
            self.cluster
                .as_ref()
                .map_or("local", |(settings, _)| settings.node_id.as_str()),
        ));
        let servers_stop = watch::channel(false).0;
        let cluster = match self.cluster {
            Some((settings, engine)) => Some(Cluster::start(settings, engine, metrics.clone())),
            None => {
                Metrics::set(&metrics.cluster_engine_up, 1);
                None
            }
        };
        let hubs = Arc::new(HubRegistry::new(
            HubSettings {
                inbox_capacity: limits.hub_inbox_capacity,
                max_user_groups_without_ttl: limits.max_user_groups_without_ttl,
                idle_timeout: limits.hub_idle_timeout(),
                max_hubs: limits.max_hubs,
                cluster: cluster.clone(),
            },
            metrics.clone(),
        ));
        if let Some(cluster) = &cluster {
            cluster.set_hub_lookup(hubs.weak_lookup());
            cluster.set_node_gone_hook(hubs.node_gone_hook());
        }
        // Each actor gets what it uses, and nothing else.
        let client_env = Arc::new(ClientEnv {
            limits: limits.clone(),
            metrics: metrics.clone(),
            policy: policy.clone(),
            connections: connections.clone(),
            resumable: Arc::default(),
            upstream: self.upstream_client,
            keys: keys.clone(),
            upstream_queue: self.config.upstream_options.max_queue_per_connection,
            upstream_tasks: TaskTracker::new(),
            upstream_queue_bytes: self.config.upstream_options.max_queue_bytes_per_connection,
            events: events.clone(),
        });
        let server_env = Arc::new(ServerEnv {
            limits: limits.clone(),
            metrics: metrics.clone(),
            policy: policy.clone(),
            connections,
            shutdown: servers_stop.subscribe(),
            events: events.clone(),
        });
        let shared = Arc::new(Broker::new(BrokerParts {
            public_endpoint: self.config.public_endpoint_or(local_addr),
            slots: Arc::new(ConnectionSlots::new(limits.max_connections)),
            config: self.config,
            keys,
            policy,
            hubs,
            metrics,
            client_env,
            server_env,
            shutdown,
            servers_stop,
            cluster,
            tls: self.tls.clone(),
            events,
        }));

        let workers = match shared.config.workers {
            0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
            n => n,
        };
        let data = web::Data::from(shared.clone());
        let admin_data = data.clone();
        let admin_apart = admin_addr.is_some();
        let make_app = move || {
            App::new()
                .app_data(data.clone())
                .configure(|cfg| crate::http::configure(cfg, admin_apart))
        };
        let nodelay = shared.config.tcp_nodelay;
        let tls = self.tls;
        let tls_metrics = shared.metrics.clone();
        let server = actix_server::Server::build()
            .workers(workers)
            // actix counts the sockets it serves HTTP on, per worker: a WebSocket leaves it at the
            // upgrade (its client slot bounds it), SSE and long polling stay. Each worker may
            // hold its share of limits.max_connections plus a small reserve for plain HTTP
            // requests, so that a full broker still answers /readyz, /metrics, the REST API and
            // the 429s (the open-files limit is the real ceiling).
            .max_concurrent_connections(per_worker_connections(
                shared.config.limits.max_connections,
                workers,
            ))
            .backlog(4096)
            // The connections are closed by `drain` first; this bounds what is left (REST
            // requests).
            .shutdown_timeout(shared.config.limits.shutdown_timeout_secs.min(5))
            .disable_signals()
            .listen("switchboard", listener, move || {
                let app = IntoServiceFactory::<_, actix_http::Request>::into_factory(make_app())
                    .map_err(|err| err.error_response());
                let http = HttpService::build()
                    // actix-web's defaults.
                    .keep_alive(KeepAlive::default())
                    .client_request_timeout(Duration::from_secs(5))
                    .client_disconnect_timeout(Duration::from_secs(1))
                    .local_addr(local_addr)
                    // A handler may take the connection's stream (SSE streams, long polls).
                    .on_connect_ext(|io: &HttpIo, ext: &mut actix_http::Extensions| {
                        ext.insert(io.takeover());
                    })
                    .upgrade(crate::http::upgrade::service(make_app.clone()))
                    .finish(map_config(app, |_| AppConfig::default()));
                let tls = tls.clone();
                let tls_metrics = tls_metrics.clone();
                fn_factory(move || {
                    let service = http.new_service(());
                    let tls = tls.clone();
                    let tls_metrics = tls_metrics.clone();
                    async move {
                        let service = Rc::new(service.await?);
                        let again = service.clone();
                        let serve_again: Rc<crate::http::io::ServeFn> =
                            Rc::new(move |stream: Stream| {
                                let peer = stream.peer_addr().ok();
                                let serve =
                                    again.call((HttpIo::new(stream), Protocol::Http1, peer));
                                actix_web::rt::spawn(serve);
                            });
                        crate::http::io::set_worker_service(&serve_again);
                        Ok::<_, ()>(fn_service(move |io: TcpStream| {
                            let _keep = &serve_again;
                            // TCP_NODELAY by default, as Kestrel: with Nagle's algorithm a frame
                            // written while the previous one is unacknowledged waits for the
                            // client's delayed ACK, which after any client message (a keep-alive
                            // ping) measured +20 ms on the others' p99 (BENCHMARKS.md).
                            // Saturated broadcast throughput measured the same either way within
                            // noise.
                            let _ = io.set_nodelay(nodelay);
                            let peer = io.peer_addr().ok();
                            let Some(tls) = tls.clone() else {
                                let io = HttpIo::new(Stream::plain(io));
                                return Either::Left(service.call((io, Protocol::Http1, peer)));
                            };
                            // Boxed: the handshake's state is not kept in every connection's
                            // future.
                            let service = service.clone();
                            let metrics = tls_metrics.clone();
                            Either::Right(Box::pin(async move {
                                match tls.accept(io).await {
                                    Ok(stream) => {
                                        let io = HttpIo::new(stream);
                                        service.call((io, Protocol::Http1, peer)).await
                                    }
                                    Err(e) => {
                                        Metrics::inc(&metrics.tls_handshake_failures);
                                        tracing::debug!(?peer, error = %e, "TLS handshake failed");
                                        Ok(())
                                    }
                                }
                            }))
                        }))
                    }
                })
            })?;
        let server = match admin_listener {
            Some(admin) => server.listen("switchboard-admin", admin, move || {
                let app = App::new()
                    .app_data(admin_data.clone())
                    .configure(crate::http::configure_admin);
                let app = IntoServiceFactory::<_, actix_http::Request>::into_factory(app)
                    .map_err(|err| err.error_response());
                HttpService::build()
                    .keep_alive(KeepAlive::default())
                    .client_request_timeout(Duration::from_secs(5))
                    .client_disconnect_timeout(Duration::from_secs(1))
                    .finish(map_config(app, |_| AppConfig::default()))
                    .tcp()
            })?,
            None => server,
        }
        .run();
        let server_handle = server.handle();
        let join = tokio::spawn(server);

        let sweeper_shared = shared.clone();
        let sweeper = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                sweeper_shared.pending.sweep();
                sweeper_shared.tenants.sweep();
            }
        });

        Ok(SwitchboardHandle {
            local_addr,
            admin_addr,
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
    admin_addr: Option<SocketAddr>,
    shared: Arc<Broker>,
    server: actix_web::dev::ServerHandle,
    join: tokio::task::JoinHandle<std::io::Result<()>>,
    sweeper: tokio::task::JoinHandle<()>,
}

impl SwitchboardHandle {
    /// The address the broker listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The address of the admin listener, if there is one ([`Switchboard::admin_listener`]).
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    /// Base URL, e.g. `http://127.0.0.1:8080`.
    pub fn endpoint(&self) -> &str {
        &self.shared.public_endpoint
    }

    /// The connection string an Azure SignalR SDK uses for this broker.
    pub fn connection_string(&self) -> String {
        config::connection_string(&self.shared.public_endpoint, self.shared.keys().primary())
    }

    /// A cloneable handle for what may change or happen while the broker runs: settings
    /// patches (mode, keys, upstream rules) and a graceful close of every connection.
    pub fn control(&self) -> BrokerControl {
        BrokerControl(self.shared.clone())
    }

    /// The operations on hub `name` (sends, groups, existence checks, closes) — what the REST
    /// API and the management client offer, as direct calls. Fails only when `name` breaks
    /// Azure's hub-name rule ([`crate::id::validate_hub_name`]); the hub starts on the first
    /// operation.
    pub fn hub(&self, name: &str) -> Result<crate::HubClient, crate::HubClientError> {
        crate::embed::HubClient::new(
            self.shared.hubs.clone(),
            self.shared.shutdown_signal(),
            name,
        )
    }

    /// A hub server for hub `name` served in this process by `hub` (the SDK's hub builder: its
    /// methods, connect and disconnect handlers, streams and client results), attached without a
    /// network socket. Configure it further (connection count, server id, timeouts) and
    /// [`start`](switchboard_sdk::HubServerBuilder::start) it; it connects like an app server,
    /// so clients of `name` are routed to it in Default and Classic modes (Serverless mode
    /// refuses app servers). Fails only when this broker's connection string does not parse.
    pub fn hub_server(
        &self,
        name: &str,
        hub: switchboard_sdk::Hub,
    ) -> Result<switchboard_sdk::HubServerBuilder, switchboard_sdk::SdkError> {
        let cs: switchboard_sdk::ConnectionString = self
            .connection_string()
            .parse()
            .map_err(switchboard_sdk::SdkError::ConnectionString)?;
        Ok(switchboard_sdk::HubServer::builder(cs, name, hub)
            .local(Arc::new(crate::local::LocalBroker(self.shared.clone()))))
    }

    /// The names of the hubs running now, in their lower-case canonical form, sorted. A hub
    /// starts on its first client, hub server, group membership or embedding-API operation (a
    /// REST send to a hub that does not run starts none) and stops after
    /// `limits.hub_idle_timeout_secs` without any of them.
    pub fn hub_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .shared
            .hubs
            .names()
            .iter()
            .map(|n| n.as_str().to_owned())
            .collect();
        names.sort();
        names
    }

    /// The counters.
    pub fn metrics(&self) -> &Metrics {
        &self.shared.metrics
    }

    /// The resource logs and the live trace: change a category's level, or watch events as
    /// they happen ([`Events::watch`]).
    pub fn events(&self) -> &Arc<Events> {
        &self.shared.events
    }

    /// Mint a client access token for `hub` (and `user`), valid `lifetime`.
    pub fn client_token(&self, hub: &str, user: Option<&str>, lifetime: Duration) -> String {
        client_token(&self.shared, hub, user, lifetime)
    }

    /// A graceful stop ([`BrokerControl::drain`]), then wait for the server to finish.
    pub async fn stop(self) {
        self.sweeper.abort();
        self.shared.drain().await;
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

/// The runtime controls of a running broker (see [`SwitchboardHandle::control`]).
#[derive(Clone, Debug)]
pub struct BrokerControl(Arc<Broker>);

impl BrokerControl {
    /// Apply a settings change, validated as a whole before anything changes. Switching to
    /// Serverless closes the hub-server connections that carry clients.
    pub async fn apply(&self, patch: SettingsPatch) -> Result<(), config::ConfigError> {
        self.0.apply(patch).await
    }

    /// The runtime settings as the admin endpoint shows them (keys only counted).
    pub fn settings(&self) -> serde_json::Value {
        self.0.settings_view()
    }

    /// Read the TLS certificate and key again (the files `tls` names): new connections are
    /// served with them, those already up keep theirs. Nothing changes when a file is bad, or
    /// when the broker serves plain HTTP (TLS is decided at start).
    pub fn reload_tls(&self, tls: &config::TlsConfig) -> Result<(), config::ConfigError> {
        match &self.0.tls {
            Some(listener) => listener.reload(tls),
            None if !tls.enabled() => Ok(()),
            None => Err(config::ConfigError::new(
                "tls.cert_file",
                "TLS cannot be turned on while the broker runs (restart it)",
            )),
        }
    }

    /// A graceful stop of every connection, bounded by `limits.shutdown_timeout_secs`: new
    /// negotiations and connections get 503 (and `/readyz` too) from now on; every client gets
    /// a Close message with `allowReconnect: true` (this instance is going away, not the
    /// service) and its hub server hears of it; the upstream `disconnected` events are
    /// delivered; then the hub-server connections close. `false` when the time ran out first.
    /// The HTTP server keeps running (the REST API answers) until it is stopped.
    pub async fn drain(&self) -> bool {
        self.0.drain().await
    }
}

/// Sockets each worker keeps beyond its share of `max_connections` for plain HTTP requests
/// (health checks, metrics, REST calls, refused negotiations) when every connection slot is held.
const HTTP_RESERVE_PER_WORKER: usize = 64;

/// Each worker's cap on sockets served as HTTP (actix caps them per worker): its share of
/// `max_connections` (rounded up) plus [`HTTP_RESERVE_PER_WORKER`]. All workers together hold at
/// most `max_connections + workers × (HTTP_RESERVE_PER_WORKER + 1)` sockets.
fn per_worker_connections(max_connections: usize, workers: usize) -> usize {
    max_connections.div_ceil(workers.max(1)) + HTTP_RESERVE_PER_WORKER
}

/// A random 44-character access key (32 random bytes, base64), the shape Azure uses.
pub fn generate_access_key() -> String {
    use base64::Engine as _;
    let mut bytes = [0u8; 32];
    // The OS random source failing is not recoverable for a server that mints secrets.
    getrandom::fill(&mut bytes).expect("the operating system's random number generator failed");
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::{HTTP_RESERVE_PER_WORKER, per_worker_connections};

    #[test]
    fn worker_connection_caps_add_up_to_the_limit_and_a_small_reserve() {
        for (max, workers) in [(19_000, 2), (19_000, 3), (10, 4), (7, 7), (100_000, 16)] {
            let each = per_worker_connections(max, workers);
            let reserve = workers * HTTP_RESERVE_PER_WORKER;
            assert!(
                each * workers >= max + reserve,
                "{max} over {workers}: {each} each"
            );
            assert!(
                each * workers < max + reserve + workers,
                "{max} over {workers}: {each} each"
            );
        }
    }
}
