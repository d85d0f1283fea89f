//! [`HubServer`]: the application's handle on its hub server — the N server connections of one
//! hub, started by [`HubServerBuilder::start`] — and the state those connections share.
//!
//! This module owns the options ([`HubServerOptions`]), the choice of server connection for a
//! send, the table of pending acknowledgements (`*WithAck` → Ack, 10 s timeout), the index of the
//! clients routed through this server (connection id → client, for single-client sends, client
//! results and closes) and the table of client-result invocations whose client is routed
//! elsewhere. The connection actors (`connection.rs`) own everything else.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicI32, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::{Mutex, RwLock};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use super::client::ClientInfo;
use super::connection::{self, ConnCommand, Outbox};
use super::connection_string::{ConnectionString, hub_url_name};
use super::context::{HubClients, HubGroups};
use super::hub::Hub;
use super::{SdkError, codec};
use crate::protocol::service::{self, Extensions, ServiceMessage, ack_status};

/// Tunables of a [`HubServer`]. The defaults are the Azure SDK's and ASP.NET Core's.
#[derive(Clone, Debug)]
pub struct HubServerOptions {
    /// Server connections per hub (SDK `InitialHubServerConnectionCount`, 5).
    pub connection_count: usize,
    /// The server id (`X-ASRS-Server-Id`, the token's `nameid`, `callerServerId`); `None` →
    /// `<host name>_<random 32 hex digits>` as the SDK builds it.
    pub server_id: Option<String>,
    /// The SDK's `ApplicationName`: the hub becomes `<app>_<hub>` on the service.
    pub application_name: Option<String>,
    /// Open Weak connections (`connectionType` 2): the service routes no client to them; for an
    /// app that only sends (Management SDK persistent mode). Default false.
    pub weak: bool,
    /// Reconnect back-off base: attempt n waits `base × 2ⁿ` (capped at
    /// [`reconnect_max`](Self::reconnect_max)) plus up to `base` of jitter — the SDK's 1 s, 2 s,
    /// 4 s … 60 s with 1 s of jitter at the default of 1 s.
    pub reconnect_base: Duration,
    /// Longest reconnect delay before jitter (60 s).
    pub reconnect_max: Duration,
    /// Bound on the WebSocket connect and on the wait for the HandshakeResponse (15 s).
    pub handshake_timeout: Duration,
    /// Send a keep-alive Ping `[3]` after this long without sending (5 s).
    pub keep_alive_interval: Duration,
    /// Drop and reconnect a server connection after this long without receiving (30 s).
    pub server_timeout: Duration,
    /// Lifetime of the server-connection token, minted again at each reconnect (1 h).
    pub token_lifetime: Duration,
    /// Send a hub Ping to a client after this long without sending it anything (15 s).
    pub client_keep_alive_interval: Duration,
    /// Close a client that sent nothing for this long, counted once it has sent its first Ping
    /// (30 s).
    pub client_timeout: Duration,
    /// Close a client that has not completed its SignalR handshake after this long (15 s).
    pub client_handshake_timeout: Duration,
    /// Largest hub message a client may send, in bytes (ASP.NET Core's 32 KiB).
    pub max_client_message_size: usize,
    /// Largest service-protocol frame accepted from the service (64 MiB).
    pub max_service_frame: usize,
    /// Capacity of each server connection's outbox, in messages (1024).
    pub outbox_capacity: usize,
    /// How long a send waits for room in a full outbox before failing with
    /// [`SdkError::OutboxFull`] (10 s, ASP.NET Core's transport send timeout). Also bounds each
    /// WebSocket write.
    pub send_timeout: Duration,
    /// How long an acknowledged operation waits for the service's Ack (the SDK's 10 s).
    pub ack_timeout: Duration,
    /// How long a client-result invocation waits for the client (the service's 10 min cap).
    pub client_invocation_timeout: Duration,
    /// Queued invocations per client before the client is closed (64).
    pub client_inbox_capacity: usize,
    /// Buffered items per upload stream before the client is closed (64).
    pub stream_buffer_capacity: usize,
    /// Graceful shutdown: how long [`HubServer::stop`] waits for the service's
    /// `["shutdown","finack"]` (30 s, the SDK's default shutdown timeout). The fin Ping is sent
    /// again every 5 s meanwhile.
    pub shutdown_timeout: Duration,
    /// A PEM file of CA certificates trusted for a `wss://` service besides the system's (whose
    /// `SSL_CERT_FILE` and `SSL_CERT_DIR` apply without it); read at every connect.
    pub ca_file: Option<std::path::PathBuf>,
}

impl Default for HubServerOptions {
    fn default() -> Self {
        Self {
            connection_count: 5,
            server_id: None,
            application_name: None,
            weak: false,
            reconnect_base: Duration::from_secs(1),
            reconnect_max: Duration::from_secs(60),
            handshake_timeout: Duration::from_secs(15),
            keep_alive_interval: Duration::from_secs(5),
            server_timeout: Duration::from_secs(30),
            token_lifetime: Duration::from_secs(3600),
            client_keep_alive_interval: Duration::from_secs(15),
            client_timeout: Duration::from_secs(30),
            client_handshake_timeout: Duration::from_secs(15),
            max_client_message_size: 32 * 1024,
            max_service_frame: 64 * 1024 * 1024,
            outbox_capacity: 1024,
            send_timeout: Duration::from_secs(10),
            ack_timeout: Duration::from_secs(10),
            client_invocation_timeout: Duration::from_secs(600),
            client_inbox_capacity: 64,
            stream_buffer_capacity: 64,
            shutdown_timeout: Duration::from_secs(30),
            ca_file: None,
        }
    }
}

/// A service in the same process that a hub server connects to without a network socket: an
/// embedding broker (`switchboard::SwitchboardHandle::serve_hub`). Each server connection is an
/// in-memory byte stream that carries WebSocket frames and the service protocol, exactly as over
/// the network; the service serves the other end.
pub trait LocalService: Send + Sync + 'static {
    /// Open one server connection for hub `hub` (its name on the wire) from app server
    /// `server_id`; the stream's other end is already being served.
    fn open(&self, hub: &str, server_id: &str) -> std::io::Result<tokio::io::DuplexStream>;
}

/// Configures and starts a [`HubServer`].
pub struct HubServerBuilder {
    connection_string: ConnectionString,
    hub_name: String,
    hub: Hub,
    options: HubServerOptions,
    local: Option<Arc<dyn LocalService>>,
}

impl fmt::Debug for HubServerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HubServerBuilder")
            .field("hub", &self.hub_name)
            .field("options", &self.options)
            .field("local", &self.local.is_some())
            .finish_non_exhaustive()
    }
}

impl HubServerBuilder {
    /// Replaces every option.
    pub fn options(mut self, options: HubServerOptions) -> Self {
        self.options = options;
        self
    }

    /// Trust the CA certificates of the PEM file at `path` for a `wss://` service, besides the
    /// system's authorities ([`HubServerOptions::ca_file`]).
    pub fn ca_file(mut self, path: impl Into<std::path::PathBuf>) -> Self {
        self.options.ca_file = Some(path.into());
        self
    }

    /// Sets [`HubServerOptions::connection_count`].
    pub fn connection_count(mut self, count: usize) -> Self {
        self.options.connection_count = count;
        self
    }

    /// Sets [`HubServerOptions::server_id`].
    pub fn server_id(mut self, id: impl Into<String>) -> Self {
        self.options.server_id = Some(id.into());
        self
    }

    /// Sets [`HubServerOptions::application_name`].
    pub fn application_name(mut self, name: impl Into<String>) -> Self {
        self.options.application_name = Some(name.into());
        self
    }

    /// Sets [`HubServerOptions::weak`].
    pub fn weak(mut self, weak: bool) -> Self {
        self.options.weak = weak;
        self
    }

    /// Sets [`HubServerOptions::reconnect_base`].
    pub fn reconnect_base(mut self, base: Duration) -> Self {
        self.options.reconnect_base = base;
        self
    }

    /// Connect to `service` in this process instead of the connection string's endpoint (which
    /// still names the service for tokens and negotiate answers).
    pub fn local(mut self, service: Arc<dyn LocalService>) -> Self {
        self.local = Some(service);
        self
    }

    /// Spawns the server connections (one tokio task each) and returns at once; they connect,
    /// and reconnect after failures, in the background (see [`HubServer::wait_connected`]).
    /// Must be called inside a tokio runtime.
    pub fn start(self) -> Result<HubServer, SdkError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| SdkError::NoRuntime)?;
        let mut options = self.options;
        options.connection_count = options.connection_count.max(1);
        let server_id = options.server_id.clone().unwrap_or_else(default_server_id);
        let url_hub = hub_url_name(&self.hub_name, options.application_name.as_deref());
        let (shutdown, _) = watch::channel(false);
        let (connected, _) = watch::channel(0usize);
        let shared = Arc::new(ServerShared {
            hub: self.hub,
            hub_name: self.hub_name,
            url_hub,
            invocation_prefix: random_hex(6),
            server_id,
            connection_string: self.connection_string,
            local_service: self.local,
            slots: (0..options.connection_count)
                .map(|_| RwLock::new(None))
                .collect(),
            options,
            rr: AtomicUsize::new(0),
            connected,
            acks: Mutex::new(HashMap::new()),
            next_ack: AtomicI32::new(1),
            local: RwLock::new(HashMap::new()),
            remote: Mutex::new(HashMap::new()),
            next_invocation: AtomicU64::new(0),
            shutdown,
            epoch: Instant::now(),
            tasks: Mutex::new(Vec::new()),
        });
        let tasks: Vec<JoinHandle<()>> = (0..shared.slots.len())
            .map(|slot| runtime.spawn(connection::run(shared.clone(), slot)))
            .collect();
        *shared.tasks.lock() = tasks;
        Ok(HubServer { shared })
    }
}

/// A running hub server: the server connections of one hub, and the application's way to send
/// to clients, manage groups and query the service outside of a hub method. Cheap to clone;
/// call [`stop`](Self::stop) to shut it down gracefully (dropping the handles does not stop the
/// connection tasks).
#[derive(Clone)]
pub struct HubServer {
    pub(crate) shared: Arc<ServerShared>,
}

impl fmt::Debug for HubServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HubServer")
            .field("hub", &self.shared.hub_name)
            .field("server_id", &self.shared.server_id)
            .field("connected", &self.connected_count())
            .finish_non_exhaustive()
    }
}

impl HubServer {
    /// Starts configuring a hub server for hub `hub_name` (lower-cased on the wire, as the SDK
    /// does) served by `hub`.
    pub fn builder(
        connection_string: ConnectionString,
        hub_name: &str,
        hub: Hub,
    ) -> HubServerBuilder {
        HubServerBuilder {
            connection_string,
            hub_name: hub_name.to_owned(),
            hub,
            options: HubServerOptions::default(),
            local: None,
        }
    }

    /// The server id sent to the service.
    pub fn server_id(&self) -> &str {
        &self.shared.server_id
    }

    /// The hub name, as given to [`builder`](Self::builder).
    pub fn hub_name(&self) -> &str {
        &self.shared.hub_name
    }

    /// The options in force.
    pub fn options(&self) -> &HubServerOptions {
        &self.shared.options
    }

    /// Sends to clients of the hub (all, users, groups, connections).
    pub fn clients(&self) -> HubClients {
        HubClients::new(self.clone(), None)
    }

    /// Adds and removes connections and users to and from groups.
    pub fn groups(&self) -> HubGroups {
        HubGroups::new(self.clone(), None)
    }

    /// Whether connection `connection_id` is connected to the hub (CheckConnectionExistenceWithAck).
    pub async fn connection_exists(&self, connection_id: &str) -> Result<bool, SdkError> {
        self.shared
            .ack_request(None, |ack_id| {
                ServiceMessage::CheckConnectionExistenceWithAck {
                    connection_id: connection_id.to_owned(),
                    ack_id,
                    extensions: Extensions::default(),
                }
            })
            .await
    }

    /// Whether user `user_id` has a connection to the hub (CheckUserExistenceWithAck).
    pub async fn user_exists(&self, user_id: &str) -> Result<bool, SdkError> {
        self.shared
            .ack_request(None, |ack_id| ServiceMessage::CheckUserExistenceWithAck {
                user_id: user_id.to_owned(),
                ack_id,
                extensions: Extensions::default(),
            })
            .await
    }

    /// Whether group `group` has a connection (CheckGroupExistenceWithAck).
    pub async fn group_exists(&self, group: &str) -> Result<bool, SdkError> {
        self.groups().exists(group).await
    }

    /// Closes a client: the hub Close message (with `reason` as its error) and then
    /// CloseConnection. A client routed through this server also leaves its hub
    /// (`on_disconnected` runs) at once.
    pub async fn close_connection(
        &self,
        connection_id: &str,
        reason: Option<&str>,
    ) -> Result<(), SdkError> {
        self.shared
            .close_connection(None, connection_id, reason)
            .await
    }

    /// Closes every connection of `user_id` (CloseUserConnectionsWithAck); `false` if the user
    /// had none.
    pub async fn close_user_connections(
        &self,
        user_id: &str,
        reason: Option<&str>,
    ) -> Result<bool, SdkError> {
        self.shared
            .ack_request(None, |ack_id| ServiceMessage::CloseUserConnectionsWithAck {
                user_id: user_id.to_owned(),
                reason: reason.map(str::to_owned),
                ack_id,
                excluded_list: Vec::new(),
                extensions: Extensions::default(),
            })
            .await
    }

    /// Closes every connection in `group` (CloseGroupConnectionsWithAck); `false` if the group
    /// had none.
    pub async fn close_group_connections(
        &self,
        group: &str,
        reason: Option<&str>,
    ) -> Result<bool, SdkError> {
        self.shared
            .ack_request(None, |ack_id| {
                ServiceMessage::CloseGroupConnectionsWithAck {
                    group_name: group.to_owned(),
                    reason: reason.map(str::to_owned),
                    ack_id,
                    excluded_list: Vec::new(),
                    extensions: Extensions::default(),
                }
            })
            .await
    }

    /// How many server connections have completed their handshake and are up now.
    pub fn connected_count(&self) -> usize {
        *self.shared.connected.borrow()
    }

    /// Waits until at least `count` server connections are up (capped at the configured number).
    pub async fn wait_connected(&self, count: usize, timeout: Duration) -> Result<(), SdkError> {
        let want = count.min(self.shared.slots.len());
        let mut rx = self.shared.connected.subscribe();
        match tokio::time::timeout(timeout, rx.wait_for(|n| *n >= want)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) => Err(SdkError::Stopped),
            Err(_) => Err(SdkError::ConnectTimeout(timeout)),
        }
    }

    /// The ids of the clients routed through this server right now (handshake completed).
    pub fn local_connection_ids(&self) -> Vec<String> {
        self.shared.local.read().keys().cloned().collect()
    }

    /// Graceful shutdown: every server connection sends `["shutdown","fin:0"]`, waits (at most
    /// [`HubServerOptions::shutdown_timeout`]) for `["shutdown","finack"]`, then closes; the
    /// clients routed through it leave (`on_disconnected` runs). Returns once every connection
    /// task has ended. Later sends fail.
    pub async fn stop(&self) {
        self.shared.shutdown.send_replace(true);
        let tasks = std::mem::take(&mut *self.shared.tasks.lock());
        let bound = self.shared.options.shutdown_timeout + self.shared.options.send_timeout;
        for task in tasks {
            let abort = task.abort_handle();
            if tokio::time::timeout(bound, task).await.is_err() {
                abort.abort();
            }
        }
    }

    /// The hub definition.
    pub(crate) fn hub(&self) -> &Hub {
        &self.shared.hub
    }
}

/// An Ack as the service sent it.
#[derive(Debug)]
struct AckReply {
    status: i32,
    message: Option<String>,
}

/// A caller waiting for an Ack, and the connection the request went out on (its acks fail when
/// that connection drops).
struct AckWaiter {
    slot: usize,
    tx: oneshot::Sender<AckReply>,
}

/// The answer to a client-result invocation whose client is routed through another server.
#[derive(Debug)]
pub(crate) enum RemoteOutcome {
    /// ClientCompletion: the client's Completion, framed in `protocol`.
    Completion {
        /// The client's hub protocol name.
        protocol: String,
        /// The framed Completion message.
        payload: Bytes,
    },
    /// ErrorCompletion: the error text.
    Error(String),
}

/// State shared by the connection tasks of one hub server and the handles the app holds.
pub(crate) struct ServerShared {
    pub(crate) hub: Hub,
    pub(crate) hub_name: String,
    /// The hub name used on the wire (lower-cased, application-prefixed).
    pub(crate) url_hub: String,
    pub(crate) server_id: String,
    pub(crate) connection_string: ConnectionString,
    /// The broker in this process to connect to instead of the network, if any.
    pub(crate) local_service: Option<Arc<dyn LocalService>>,
    pub(crate) options: HubServerOptions,
    /// Prefix of the client-result invocation ids of this process.
    invocation_prefix: String,
    /// The outbox of each connection slot while its connection is up.
    slots: Vec<RwLock<Option<Outbox>>>,
    rr: AtomicUsize,
    connected: watch::Sender<usize>,
    acks: Mutex<HashMap<i32, AckWaiter>>,
    next_ack: AtomicI32,
    /// Clients routed through this server (handshake completed), by connection id.
    pub(crate) local: RwLock<HashMap<String, Arc<ClientInfo>>>,
    remote: Mutex<HashMap<String, oneshot::Sender<RemoteOutcome>>>,
    next_invocation: AtomicU64,
    pub(crate) shutdown: watch::Sender<bool>,
    /// Time origin of the clients' millisecond clocks.
    pub(crate) epoch: Instant,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl ServerShared {
    /// A connection slot came up with `outbox`.
    pub(crate) fn slot_up(&self, slot: usize, outbox: Outbox) {
        if let Some(s) = self.slots.get(slot) {
            *s.write() = Some(outbox);
            self.connected.send_modify(|n| *n += 1);
        }
    }

    /// A connection slot went down: its outbox is gone and its pending acks fail.
    pub(crate) fn slot_down(&self, slot: usize) {
        if let Some(s) = self.slots.get(slot)
            && s.write().take().is_some()
        {
            self.connected.send_modify(|n| *n = n.saturating_sub(1));
        }
        // Dropping the senders fails the waiters with `ConnectionClosed`.
        self.acks.lock().retain(|_, w| w.slot != slot);
    }

    /// The outbox of some connected slot, round-robin.
    pub(crate) fn any_outbox(&self) -> Result<Outbox, SdkError> {
        if *self.shutdown.borrow() {
            return Err(SdkError::Stopped);
        }
        let n = self.slots.len();
        let start = self.rr.fetch_add(1, Ordering::Relaxed);
        for i in 0..n {
            if let Some(outbox) = self.slots[(start + i) % n].read().as_ref()
                && !outbox.is_closed()
            {
                return Ok(outbox.clone());
            }
        }
        Err(SdkError::NotConnected)
    }

    /// `route` if it is still open, else any connected outbox.
    pub(crate) fn outbox_for(&self, route: Option<&Outbox>) -> Result<Outbox, SdkError> {
        match route {
            Some(o) if !o.is_closed() => Ok(o.clone()),
            _ => self.any_outbox(),
        }
    }

    /// The client `connection_id` if it is routed through this server.
    pub(crate) fn local_client(&self, connection_id: &str) -> Option<Arc<ClientInfo>> {
        self.local.read().get(connection_id).cloned()
    }

    /// Sends the message `build(ack_id)` and waits for its Ack: `Ok(true)` for status Ok,
    /// `Ok(false)` for NotFound, an error otherwise or after [`HubServerOptions::ack_timeout`].
    pub(crate) async fn ack_request(
        &self,
        route: Option<&Outbox>,
        build: impl FnOnce(i32) -> ServiceMessage,
    ) -> Result<bool, SdkError> {
        let outbox = self.outbox_for(route)?;
        let ack_id = loop {
            let id = self.next_ack.fetch_add(1, Ordering::Relaxed);
            if id > 0 {
                break id;
            }
            // Wrapped around: restart at 1 (0 and negatives are never used).
            let _ = self.next_ack.compare_exchange(
                id.wrapping_add(1),
                1,
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
        };
        let (tx, rx) = oneshot::channel();
        self.acks.lock().insert(
            ack_id,
            AckWaiter {
                slot: outbox.slot(),
                tx,
            },
        );
        let _guard = AckGuard {
            shared: self,
            ack_id,
        };
        outbox
            .send(ConnCommand::Frame(service::encode(&build(ack_id))))
            .await?;
        let timeout = self.options.ack_timeout;
        match tokio::time::timeout(timeout, rx).await {
            Err(_) => Err(SdkError::AckTimeout(timeout)),
            Ok(Err(_)) => Err(SdkError::ConnectionClosed),
            Ok(Ok(reply)) => match reply.status {
                ack_status::OK => Ok(true),
                ack_status::NOT_FOUND => Ok(false),
                ack_status::TIMEOUT => Err(SdkError::AckTimeout(timeout)),
                status => Err(SdkError::AckFailed {
                    status,
                    message: reply.message.unwrap_or_default(),
                }),
            },
        }
    }

    /// Hands an Ack from the service to its waiter (unknown ids are late answers: ignored).
    pub(crate) fn resolve_ack(&self, ack_id: i32, status: i32, message: Option<String>) {
        if let Some(waiter) = self.acks.lock().remove(&ack_id) {
            // The waiter may have timed out and gone: nothing to do then.
            let _ = waiter.tx.send(AckReply { status, message });
        }
    }

    /// A fresh client-result invocation id, unique in this process.
    pub(crate) fn next_invocation_id(&self) -> String {
        let n = self.next_invocation.fetch_add(1, Ordering::Relaxed);
        format!("{}-{n}", self.invocation_prefix)
    }

    /// Registers a client-result invocation whose client is routed elsewhere.
    pub(crate) fn register_remote(&self, invocation_id: &str) -> oneshot::Receiver<RemoteOutcome> {
        let (tx, rx) = oneshot::channel();
        self.remote.lock().insert(invocation_id.to_owned(), tx);
        rx
    }

    /// Forgets a remote invocation (its caller gave up).
    pub(crate) fn forget_remote(&self, invocation_id: &str) {
        self.remote.lock().remove(invocation_id);
    }

    /// Hands a ClientCompletion / ErrorCompletion to the caller waiting for it.
    pub(crate) fn resolve_remote(&self, invocation_id: &str, outcome: RemoteOutcome) {
        if let Some(tx) = self.remote.lock().remove(invocation_id) {
            // The caller may have given up: nothing to do then.
            let _ = tx.send(outcome);
        }
    }

    /// Closes a client from the app: Close + CloseConnection (see [`HubServer::close_connection`]).
    pub(crate) async fn close_connection(
        &self,
        route: Option<&Outbox>,
        connection_id: &str,
        reason: Option<&str>,
    ) -> Result<(), SdkError> {
        if let Some(client) = self.local_client(connection_id) {
            return client
                .outbox
                .send(ConnCommand::CloseClient(connection::CloseClient::by_app(
                    connection_id,
                    reason,
                )))
                .await;
        }
        let outbox = self.outbox_for(route)?;
        let close = ServiceMessage::MultiConnectionData {
            connection_list: vec![connection_id.to_owned()],
            payloads: codec::close_payloads(reason, false)?,
            extensions: Extensions::default(),
        };
        outbox
            .send(ConnCommand::Frame(service::encode(&close)))
            .await?;
        let end = ServiceMessage::CloseConnection {
            connection_id: connection_id.to_owned(),
            error_message: Some(reason.unwrap_or_default().to_owned()),
            headers: Vec::new(),
            extensions: Extensions::default(),
        };
        outbox.send(ConnCommand::Frame(service::encode(&end))).await
    }
}

/// Removes an ack waiter when its caller stops waiting (timeout, cancellation).
struct AckGuard<'a> {
    shared: &'a ServerShared,
    ack_id: i32,
}

impl Drop for AckGuard<'_> {
    fn drop(&mut self) {
        self.shared.acks.lock().remove(&self.ack_id);
    }
}

/// `<host name>_<32 hex digits>`, the shape of the SDK's server id.
fn default_server_id() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
                .filter(|h| !h.is_empty())
        })
        .unwrap_or_else(|| "switchboard-sdk".to_owned());
    format!("{host}_{}", random_hex(16))
}

/// `n` random bytes as lower-case hex (falls back to a clock-derived value if the OS random
/// source fails: these are identifiers, not secrets).
pub(crate) fn random_hex(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    if getrandom::fill(&mut bytes).is_err() {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = (seed >> ((i % 16) * 8)) as u8 ^ (i as u8).wrapping_mul(31);
        }
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A random GUID in the `D` format (`xxxxxxxx-xxxx-4xxx-8xxx-xxxxxxxxxxxx`).
pub(crate) fn random_guid() -> String {
    let hex = random_hex(16);
    format!(
        "{}-{}-4{}-8{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[13..16],
        &hex[17..20],
        &hex[20..32]
    )
}
