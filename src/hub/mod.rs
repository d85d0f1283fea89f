//! Hubs: who is connected where.
//!
//! Each hub is an actor (`actor::Hub`, private) that owns the hub's connections, users, groups and
//! user-group memberships, and fans messages out to connection outboxes. The rest of the program
//! holds a [`HubHandle`]; hubs are created on first use through the [`HubRegistry`].

mod actor;
mod cluster;
mod command;
pub(crate) mod inventory;
mod message;

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use parking_lot::RwLock;
use tokio::sync::{mpsc, oneshot};

pub use self::message::SerializedMessage;
use bytes::Bytes;

use self::command::HubCommand;
use crate::close::CloseReason;
use crate::cluster::wire::HubOp;
use crate::cluster::{Cluster, Unreachable};
use crate::id::{ConnectionId, GroupName, HubName, ServerConnId, UserId};
use crate::peer::ConnHandle;
use crate::peer::ServerConnHandle;
use crate::policy::PolicySnapshot;
use crate::protocol::HubProtocol;
use crate::routing::ClientRoute;
use crate::routing::sticky::StickyMode;
use crate::supervise::{ActorKind, supervised};
use crate::telemetry::{HubStats, Metrics};

/// Where a close or send is aimed.
#[derive(Clone, Debug)]
pub enum Scope {
    /// Every connection of the hub.
    All,
    /// Every connection of a user.
    User(UserId),
    /// Every connection in a group.
    Group(GroupName),
}

/// A hub member as listed by [`HubHandle::group_connections`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// The connection id.
    pub connection_id: ConnectionId,
    /// Its user, if any.
    pub user_id: Option<UserId>,
}

/// How long a user-group membership lasts (`ttl` of the REST API).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MembershipTtl {
    /// No ttl: kept for at most a year, and only the most recently updated
    /// `max_user_groups_without_ttl` such groups per user are remembered.
    Unlimited,
    /// `ttl=0`: only the user's current connections join; nothing is remembered.
    CurrentConnectionsOnly,
    /// `ttl=N`: remembered for N seconds, applied to connections the user opens meanwhile.
    /// Longer than [`MembershipTtl::MAX`] counts as that long.
    For(Duration),
}

impl MembershipTtl {
    /// The longest ttl: 2^31 − 1 seconds (about 68 years), the service protocol's int32 `ttl`.
    /// The REST API refuses a longer one (400); the embedding API shortens it to this.
    pub const MAX: Duration = Duration::from_secs(i32::MAX as u64);
}

/// What [`HubHandle::exists`] looks for.
#[derive(Clone, Debug)]
pub enum ExistsQuery {
    /// A connection with this id.
    Connection(ConnectionId),
    /// Any connection of this user.
    User(UserId),
    /// Any connection in this group.
    Group(GroupName),
    /// The user is in the group (a remembered membership or a connection of theirs).
    UserInGroup(UserId, GroupName),
}

/// What the hub needs to admit a client.
#[derive(Clone, Debug)]
pub(crate) struct AdmitRequest {
    /// The connection id.
    pub id: ConnectionId,
    /// The user, if the token named one.
    pub user: Option<UserId>,
    /// The hub protocol from the handshake request.
    pub protocol: HubProtocol,
    /// The transport (recorded on the handle for the admin inventory).
    pub transport: Option<crate::id::TransportKind>,
    /// Outbox bounds: messages.
    pub outbox_max_messages: usize,
    /// Outbox bounds: bytes.
    pub outbox_max_bytes: usize,
    /// The mode policy as the client saw it when it connected.
    pub policy: Arc<PolicySnapshot>,
    /// `asrs.s.sn`: the app server the client negotiated with.
    pub sticky_server: Option<String>,
    /// `asrs.s.ssticky`.
    pub sticky_mode: StickyMode,
}

/// The hub actor is gone: the broker is stopping, or the hub failed (a panic) and the next
/// [`HubRegistry::get_or_create`] starts a fresh one. A hub that retired idle is never gone for
/// a handle holder (see [`HubRegistry`]).
#[derive(Debug, thiserror::Error, Clone, Copy, PartialEq, Eq)]
#[error("the hub is shutting down")]
pub struct HubGone;

/// An answer a hub actor will give to an operation already queued in its inbox.
///
/// Acknowledged operations return one of these once the operation is queued: operations are
/// processed in the order they were queued, so a caller that must keep its own order (a hub
/// server's messages) queues the next operation at once and waits for answers beside it; a caller
/// that wants the answer now awaits it (`hub.add_to_group(id, g).await?.await?`). Dropping it
/// does not cancel the operation.
/// In a cluster an answer may need other nodes; it then fails with [`HubError::Cluster`] when
/// they cannot be asked.
#[must_use = "the operation is queued either way; await the reply to learn its answer"]
#[derive(Debug)]
pub struct HubReply<T>(oneshot::Receiver<Result<T, Unreachable>>);

impl<T> IntoFuture for HubReply<T> {
    type Output = Result<T, HubError>;
    type IntoFuture = futures_util::future::Map<
        oneshot::Receiver<Result<T, Unreachable>>,
        fn(Result<Result<T, Unreachable>, oneshot::error::RecvError>) -> Result<T, HubError>,
    >;

    fn into_future(self) -> Self::IntoFuture {
        use futures_util::FutureExt as _;
        self.0.map(
            (|r| match r {
                Ok(Ok(v)) => Ok(v),
                Ok(Err(e)) => Err(HubError::Cluster(e)),
                Err(_) => Err(HubError::Gone(HubGone)),
            })
                as fn(
                    Result<Result<T, Unreachable>, oneshot::error::RecvError>,
                ) -> Result<T, HubError>,
        )
    }
}

/// An operation from another node that did not fit in a full inbox (see
/// [`HubHandle::remote`]).
#[derive(Debug)]
pub(crate) struct RemoteOp(Box<HubCommand>);

/// Why an answered hub operation has no answer.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum HubError {
    /// The hub actor is gone.
    #[error(transparent)]
    Gone(#[from] HubGone),
    /// The answer needs other cluster nodes, and they could not be asked.
    #[error(transparent)]
    Cluster(#[from] Unreachable),
}

/// Where a hub actor sends an answer that may need other nodes.
pub(crate) type Answer<T> = oneshot::Sender<Result<T, Unreachable>>;

/// Cloneable front of one hub actor: typed operations only. Each waits for room in the hub's
/// bounded inbox (backpressure to the caller) and fails with [`HubGone`] only when the actor has
/// stopped.
#[derive(Clone, Debug)]
pub struct HubHandle {
    name: HubName,
    tx: mpsc::Sender<HubCommand>,
    clients: Arc<AtomicUsize>,
    membership_epoch: Arc<AtomicU64>,
    cluster: Option<Arc<Cluster>>,
    /// The hub's counters (per-hub metrics).
    stats: Arc<HubStats>,
}

impl HubHandle {
    /// The hub's counters, for what its connections count themselves.
    pub fn stats(&self) -> &HubStats {
        &self.stats
    }

    /// The hub's name.
    pub fn name(&self) -> &HubName {
        &self.name
    }

    /// Client connections registered in the hub now.
    pub fn client_count(&self) -> usize {
        self.clients.load(Ordering::Relaxed)
    }

    /// Join a newly registered connection to its user's memberships remembered in the cluster
    /// engine (read after its registration, so that a membership announced meanwhile reaches
    /// it either way). Nothing to do on a single node or for an anonymous connection.
    pub(crate) async fn apply_remembered(&self, conn: &ConnHandle) {
        let (Some(cluster), Some(user)) = (self.cluster(), conn.user()) else {
            return;
        };
        // A removal racing the read makes it stale: read again (a few times at most).
        for _ in 0..4 {
            let epoch = self.membership_epoch.load(Ordering::Relaxed);
            let groups = match cluster::read_remembered(&cluster, &self.name, user).await {
                Ok(groups) => groups,
                Err(e) => {
                    tracing::warn!(hub = %self.name, connection = %conn.id(), error = %e, "remembered user-group memberships not read");
                    return;
                }
            };
            if groups.is_empty() {
                return;
            }
            let id = conn.id().clone();
            match self
                .ask(|reply| HubCommand::ApplyRemembered {
                    id,
                    groups,
                    epoch,
                    reply,
                })
                .await
            {
                Ok(false) => continue,
                Ok(true) | Err(HubGone) => return,
            }
        }
    }

    /// The cluster the hub's node belongs to, if any.
    pub(crate) fn cluster(&self) -> Option<Arc<Cluster>> {
        self.cluster.clone()
    }

    /// Queue a command, waiting while the hub's inbox is full.
    async fn send(&self, cmd: HubCommand) -> Result<(), HubGone> {
        self.tx.send(cmd).await.map_err(|_| HubGone)
    }

    /// Queue a command that answers; the answer comes later.
    async fn queue<T>(
        &self,
        make: impl FnOnce(Answer<T>) -> HubCommand,
    ) -> Result<HubReply<T>, HubGone> {
        let (tx, rx) = oneshot::channel();
        self.send(make(tx)).await?;
        Ok(HubReply(rx))
    }

    /// Queue a command answered by this hub alone, and wait for the answer.
    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> HubCommand,
    ) -> Result<T, HubGone> {
        let (tx, rx) = oneshot::channel();
        self.send(make(tx)).await?;
        rx.await.map_err(|_| HubGone)
    }

    /// Hand an operation from another cluster node to the hub without waiting: `Err` gives the
    /// command back when the inbox is full.
    pub(crate) fn remote(&self, origin: String, op: HubOp) -> Result<(), RemoteOp> {
        match self.tx.try_send(HubCommand::Remote { origin, op }) {
            Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => Ok(()),
            Err(mpsc::error::TrySendError::Full(cmd)) => Err(RemoteOp(Box::new(cmd))),
        }
    }

    /// Queue an operation given back by [`remote`](Self::remote), waiting for room.
    pub(crate) async fn remote_wait(&self, op: RemoteOp) {
        let _ = self.tx.send(*op.0).await;
    }

    /// Wait until the hub has processed every command queued before this call (so that what a
    /// caller sent through the hub is in the recipients' outboxes).
    pub async fn barrier(&self) -> Result<(), HubGone> {
        self.ask(|reply| HubCommand::Barrier { reply }).await
    }

    /// Admit a client: decide its route in the mode of `request` (choosing its hub server in
    /// Default mode), build and register its handle. In a cluster, a hub with no hub server
    /// for the client asks the other nodes for theirs once, and routes the client to one of
    /// them.
    pub(crate) async fn admit(
        &self,
        request: AdmitRequest,
    ) -> Result<(ConnHandle, ClientRoute), AdmitError> {
        let retry = self.cluster.is_some().then(|| request.clone());
        let refused = match self
            .ask(|reply| HubCommand::Admit { request, reply })
            .await?
        {
            Ok(admitted) => return Ok(admitted),
            Err(refused) => refused,
        };
        if let (Some(request), Some(cluster), true) = (retry, &self.cluster, refused.no_server) {
            let servers = cluster::ask_servers(cluster, &self.name).await;
            if !servers.is_empty() {
                self.send(HubCommand::LearnServers { servers }).await?;
                return match self
                    .ask(|reply| HubCommand::Admit { request, reply })
                    .await?
                {
                    Ok(admitted) => Ok(admitted),
                    Err(refused) => Err(AdmitError::Refused(refused.text)),
                };
            }
        }
        Err(AdmitError::Refused(refused.text))
    }

    /// A hub server's bytes for one client in the client's protocol (see
    /// [`HubOp::ConnectionData`](crate::cluster::wire::HubOp::ConnectionData)): to the client
    /// here, or through the cluster to its node.
    pub(crate) async fn connection_data(
        &self,
        id: ConnectionId,
        payload: Bytes,
    ) -> Result<(), HubGone> {
        self.send(HubCommand::ConnectionData { id, payload }).await
    }

    /// Register a connection that completed its handshake; it joins its user's groups.
    pub async fn connect(&self, conn: ConnHandle) -> Result<(), HubGone> {
        self.ask(|reply| HubCommand::Connect { conn, reply }).await
    }

    /// Forget a connection. Waits for room in the inbox rather than dropping the command: a
    /// lost disconnect would leak the connection's entry.
    pub async fn disconnect(&self, id: ConnectionId) {
        // If the hub is gone there is nothing to deregister from.
        let _ = self.send(HubCommand::Disconnect { id }).await;
    }

    /// [`disconnect`](Self::disconnect) from a drop guard (no `.await` there): queued now if
    /// the inbox has room, else by a task that waits for room.
    pub(crate) fn disconnect_detached(&self, id: ConnectionId) {
        self.send_detached(HubCommand::Disconnect { id });
    }

    /// [`unregister_server`](Self::unregister_server) from a drop guard, as
    /// [`disconnect_detached`](Self::disconnect_detached).
    pub(crate) fn unregister_server_detached(&self, id: ServerConnId) {
        self.send_detached(HubCommand::UnregisterServer { id });
    }

    fn send_detached(&self, cmd: HubCommand) {
        match self.tx.try_send(cmd) {
            Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => {}
            Err(mpsc::error::TrySendError::Full(cmd)) => {
                if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                    let tx = self.tx.clone();
                    runtime.spawn(async move {
                        // A hub that stopped meanwhile has nothing left to forget.
                        let _ = tx.send(cmd).await;
                    });
                }
            }
        }
    }

    /// Test hook: make the hub actor panic while handling a command.
    #[cfg(test)]
    pub(crate) async fn panic_for_test(&self) -> Result<(), HubGone> {
        self.send(HubCommand::PanicForTest).await
    }

    /// Wait until the hub actor has stopped reading its inbox.
    #[cfg(test)]
    pub(crate) async fn stopped(&self) {
        self.tx.closed().await;
    }

    /// A hub-server connection completed its handshake: clients may be routed to it.
    pub async fn register_server(&self, server: ServerConnHandle) -> Result<(), HubGone> {
        self.send(HubCommand::RegisterServer { server }).await
    }

    /// A hub-server connection ended: the clients routed through it are closed.
    pub async fn unregister_server(&self, id: ServerConnId) {
        // A hub that is gone has no clients left to close.
        let _ = self.send(HubCommand::UnregisterServer { id }).await;
    }

    /// A hub-server connection announced a graceful shutdown: route no new clients to it.
    pub async fn shutdown_server(&self, id: ServerConnId) -> Result<(), HubGone> {
        self.send(HubCommand::ShutdownServer { id }).await
    }

    /// Close the hub-server connections: only those that carry clients (Weak ones stay), or all.
    pub async fn close_servers(&self, carrying_clients_only: bool) -> Result<(), HubGone> {
        self.send(HubCommand::CloseServers {
            carrying_clients_only,
        })
        .await
    }

    /// A page of what the hub holds on this node (admin inventory).
    pub(crate) async fn inventory(
        &self,
        query: inventory::InventoryQuery,
    ) -> Result<inventory::Inventory, HubGone> {
        self.ask(|reply| HubCommand::Inventory { query, reply })
            .await
    }

    /// The ids of the app servers connected to this hub, distinct and sorted.
    pub async fn server_ids(&self) -> Result<HubReply<Vec<String>>, HubGone> {
        self.queue(|reply| HubCommand::ServerIds { reply }).await
    }

    /// Deliver an encoded service frame to a connection of the app server `server_id`
    /// (client-result completions go back to the caller server); dropped when it has none.
    pub async fn send_to_server(&self, server_id: String, frame: Bytes) -> Result<(), HubGone> {
        self.send(HubCommand::SendToServer { server_id, frame })
            .await
    }

    /// Deliver a hub server's `ClientInvocation` (the encoded frame) to a client that is not on
    /// this node; answers whether another node of the cluster has it (`false` on a single node).
    pub async fn invoke_elsewhere(&self, frame: Bytes) -> Result<HubReply<bool>, HubGone> {
        self.queue(|reply| HubCommand::InvokeElsewhere { frame, reply })
            .await
    }

    /// Broadcast to the hub, except `excluded`.
    pub async fn send_all(
        &self,
        msg: Arc<SerializedMessage>,
        excluded: Vec<ConnectionId>,
    ) -> Result<(), HubGone> {
        self.send(HubCommand::SendAll { msg, excluded }).await
    }

    /// Send to one connection.
    pub async fn send_connection(
        &self,
        id: ConnectionId,
        msg: Arc<SerializedMessage>,
    ) -> Result<(), HubGone> {
        self.send(HubCommand::SendConnection { id, msg }).await
    }

    /// Send to a user's connections.
    pub async fn send_user(
        &self,
        user: UserId,
        msg: Arc<SerializedMessage>,
    ) -> Result<(), HubGone> {
        self.send(HubCommand::SendUser { user, msg }).await
    }

    /// Send to the connections of several users.
    pub async fn send_users(
        &self,
        users: Vec<UserId>,
        msg: Arc<SerializedMessage>,
    ) -> Result<(), HubGone> {
        self.send(HubCommand::SendUsers { users, msg }).await
    }

    /// Send to a group, except the connections `excluded` and the connections of
    /// `excluded_users`.
    pub async fn send_group(
        &self,
        group: GroupName,
        msg: Arc<SerializedMessage>,
        excluded: Vec<ConnectionId>,
        excluded_users: Vec<UserId>,
    ) -> Result<(), HubGone> {
        self.send(HubCommand::SendGroup {
            group,
            msg,
            excluded,
            excluded_users,
        })
        .await
    }

    /// Send to several groups; a connection in several of them gets the message once.
    pub async fn send_groups(
        &self,
        groups: Vec<GroupName>,
        msg: Arc<SerializedMessage>,
    ) -> Result<(), HubGone> {
        self.send(HubCommand::SendGroups { groups, msg }).await
    }

    /// Add a connection to a group; answers `false` if there is no such connection.
    pub async fn add_to_group(
        &self,
        id: ConnectionId,
        group: GroupName,
    ) -> Result<HubReply<bool>, HubGone> {
        self.queue(|reply| HubCommand::AddToGroup { id, group, reply })
            .await
    }

    /// Remove a connection from a group; answers `false` if there is no such connection.
    pub async fn remove_from_group(
        &self,
        id: ConnectionId,
        group: GroupName,
    ) -> Result<HubReply<bool>, HubGone> {
        self.queue(|reply| HubCommand::RemoveFromGroup { id, group, reply })
            .await
    }

    /// Remove a connection from all groups; answers `false` if there is no such connection.
    pub async fn remove_from_all_groups(
        &self,
        id: ConnectionId,
    ) -> Result<HubReply<bool>, HubGone> {
        self.queue(|reply| HubCommand::RemoveFromAllGroups { id, reply })
            .await
    }

    /// Add a user to a group (now and, with a ttl, for connections opened later).
    pub async fn add_user_to_group(
        &self,
        user: UserId,
        group: GroupName,
        ttl: MembershipTtl,
    ) -> Result<HubReply<()>, HubGone> {
        self.queue(|reply| HubCommand::AddUserToGroup {
            user,
            group,
            ttl,
            reply,
        })
        .await
    }

    /// Remove a user (all its connections and its remembered membership) from a group.
    pub async fn remove_user_from_group(
        &self,
        user: UserId,
        group: GroupName,
    ) -> Result<HubReply<()>, HubGone> {
        self.queue(|reply| HubCommand::RemoveUserFromGroup { user, group, reply })
            .await
    }

    /// Remove a user from every group.
    pub async fn remove_user_from_all_groups(&self, user: UserId) -> Result<HubReply<()>, HubGone> {
        self.queue(|reply| HubCommand::RemoveUserFromAllGroups { user, reply })
            .await
    }

    /// Existence check.
    pub async fn exists(&self, query: ExistsQuery) -> Result<HubReply<bool>, HubGone> {
        self.queue(|reply| HubCommand::Exists { query, reply })
            .await
    }

    /// The connections of a group, ordered by connection id.
    pub async fn group_connections(
        &self,
        group: GroupName,
    ) -> Result<HubReply<Vec<Member>>, HubGone> {
        self.queue(|reply| HubCommand::GroupConnections { group, reply })
            .await
    }

    /// Close one connection with an optional reason; answers `false` if there is no such
    /// connection.
    pub async fn close_connection(
        &self,
        id: ConnectionId,
        reason: Option<String>,
    ) -> Result<HubReply<bool>, HubGone> {
        self.queue(|reply| HubCommand::CloseConnection { id, reason, reply })
            .await
    }

    /// Close every connection in `scope` except `excluded`, for `reason`
    /// ([`CloseReason::ByApplication`] for the REST API and hub servers, `Shutdown` for the
    /// broker's own stop).
    pub async fn close_connections(
        &self,
        scope: Scope,
        excluded: Vec<ConnectionId>,
        reason: CloseReason,
    ) -> Result<HubReply<()>, HubGone> {
        self.queue(|reply| HubCommand::CloseConnections {
            scope,
            excluded,
            reason,
            reply,
        })
        .await
    }
}

/// The hub's refusal of a client.
#[derive(Clone, Debug)]
pub(crate) struct Refused {
    /// The handshake error.
    pub text: String,
    /// No hub server could take the client (in a cluster, worth asking the other nodes).
    pub no_server: bool,
}

/// Why a client was not admitted.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum AdmitError {
    /// The hub refused it; the text is the handshake error.
    #[error("{0}")]
    Refused(String),
    /// The hub actor has stopped.
    #[error(transparent)]
    Gone(#[from] HubGone),
}

/// Settings every hub actor shares.
#[derive(Clone, Debug)]
pub struct HubSettings {
    /// Capacity of each hub's inbox.
    pub inbox_capacity: usize,
    /// User-group memberships without ttl remembered per user.
    pub max_user_groups_without_ttl: usize,
    /// How long a hub with no connections and no remembered memberships lives on.
    pub idle_timeout: Duration,
    /// Hubs running at once; one more is [`TooManyHubs`].
    pub max_hubs: usize,
    /// The cluster this node belongs to, if any.
    pub cluster: Option<Arc<Cluster>>,
}

/// A new hub was refused: `limits.max_hubs` hubs are running.
#[derive(Debug, thiserror::Error, Clone, Copy, PartialEq, Eq)]
#[error(
    "this Switchboard instance already runs its maximum of {max} hubs (limits.max_hubs); no new hub can start"
)]
pub struct TooManyHubs {
    /// The limit.
    pub max: usize,
}

/// The one form of a hub name that the registry, the pending negotiations and the upstream
/// rules use: ASCII lower case. Azure's SDKs lower-case hub names before they reach the
/// service and token audiences compare them case-insensitively, so `Chat` and `chat` are one hub.
/// (Hub names are ASCII by Azure's rule, [`crate::id::validate_hub_name`].)
pub fn canonical_hub_name(name: &str) -> Cow<'_, str> {
    if name.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(name.to_ascii_lowercase())
    } else {
        Cow::Borrowed(name)
    }
}

/// Finds hub actors by name, starting them on first use, and forgets them when they stop.
///
/// Names are [canonical](canonical_hub_name): `Chat` and `chat` are one hub. At most
/// [`HubSettings::max_hubs`] hubs run at once.
///
/// # How a hub leaves
///
/// A hub stops in two ways, and is removed from the registry by its own actor both times:
///
/// * **Idle.** A hub with no client, no hub-server connection and no remembered user-group
///   membership for [`HubSettings::idle_timeout`] retires, but only when nobody outside the
///   registry holds a [`HubHandle`] to it: it takes the registry's write lock, checks that the
///   registry's handle is the only one left and that its inbox is empty, and removes its entry
///   before releasing the lock. Handles are only handed out under the registry's lock, so once
///   the check passes nobody can get one or send anything; a caller that got its handle before
///   the check keeps the hub alive by holding it (the hub looks again one idle period later).
///   No caller ever sees [`HubGone`] because a hub retired.
/// * **Failed.** A hub whose actor panics closes every connection it holds (they may reconnect),
///   closes its inbox and removes its entry; callers that still hold its handle get
///   [`HubGone`], and the next [`get_or_create`](Self::get_or_create) starts a fresh hub. A
///   handle whose inbox is closed is never handed out.
#[derive(Debug)]
pub struct HubRegistry {
    shared: Arc<RegistryShared>,
}

/// The registry's state, shared with the hub actors (weakly) so that they can remove
/// themselves.
#[derive(Debug)]
struct RegistryShared {
    hubs: RwLock<HashMap<HubName, HubHandle>>,
    settings: HubSettings,
    metrics: Arc<Metrics>,
}

impl HubRegistry {
    /// An empty registry.
    pub fn new(settings: HubSettings, metrics: Arc<Metrics>) -> Self {
        Self {
            shared: Arc::new(RegistryShared {
                hubs: RwLock::new(HashMap::new()),
                settings,
                metrics,
            }),
        }
    }

    /// The hub called `name` (any case), if it is running.
    pub fn get(&self, name: &str) -> Option<HubHandle> {
        let name = canonical_hub_name(name);
        self.shared
            .hubs
            .read()
            .get(name.as_ref())
            .filter(|h| !h.tx.is_closed())
            .cloned()
    }

    /// The hub an operation on `name` goes to: the running hub, or none (nothing to reach) on
    /// a single node; in a cluster always a hub (started if needed), since other nodes may hold
    /// its connections.
    pub fn for_operation(&self, name: &str) -> Result<Option<HubHandle>, TooManyHubs> {
        if self.shared.settings.cluster.is_some() {
            self.get_or_create(name).map(Some)
        } else {
            Ok(self.get(name))
        }
    }

    /// The hub called `name` (any case), started if needed; refused when starting it would
    /// exceed [`HubSettings::max_hubs`] (counted in `switchboard_hubs_rejected_total`). Must be
    /// called inside a tokio runtime.
    pub fn get_or_create(&self, name: &str) -> Result<HubHandle, TooManyHubs> {
        if let Some(h) = self.get(name) {
            return Ok(h);
        }
        let name = canonical_hub_name(name);
        let shared = &self.shared;
        let mut hubs = shared.hubs.write();
        match hubs.get(name.as_ref()) {
            Some(h) if !h.tx.is_closed() => return Ok(h.clone()),
            // A hub that failed and has not removed itself yet: replaced below.
            Some(_) => {}
            None if hubs.len() >= shared.settings.max_hubs => {
                Metrics::inc(&shared.metrics.hubs_rejected);
                return Err(TooManyHubs {
                    max: shared.settings.max_hubs,
                });
            }
            None => {}
        }
        let name = HubName::from(name.as_ref());
        let (tx, rx) = mpsc::channel(shared.settings.inbox_capacity);
        let clients = Arc::new(AtomicUsize::new(0));
        let membership_epoch = Arc::new(AtomicU64::new(0));
        let stats = shared
            .metrics
            .labelled
            .hubs
            .register(name.as_str(), clients.clone());
        let hub = actor::Hub::new(
            name.clone(),
            rx,
            shared.settings.clone(),
            shared.metrics.clone(),
            stats.clone(),
            clients.clone(),
            membership_epoch.clone(),
            Arc::downgrade(shared),
        );
        let metrics = shared.metrics.clone();
        Metrics::inc(&metrics.hubs_current);
        let log_name = name.clone();
        tokio::spawn(async move {
            supervised(ActorKind::Hub, &metrics, log_name.as_str(), "", hub.run()).await;
            Metrics::dec(&metrics.hubs_current);
        });
        let handle = HubHandle {
            name: name.clone(),
            tx,
            clients,
            membership_epoch,
            cluster: shared.settings.cluster.clone(),
            stats,
        };
        hubs.insert(name, handle.clone());
        Ok(handle)
    }

    /// A lookup of running hubs by canonical name that does not keep the registry alive (for
    /// the cluster's reader).
    pub(crate) fn weak_lookup(&self) -> crate::cluster::node::HubLookup {
        let shared = Arc::downgrade(&self.shared);
        Box::new(move |name: &str| {
            let shared = shared.upgrade()?;
            let hubs = shared.hubs.read();
            hubs.get(name).filter(|h| !h.tx.is_closed()).cloned()
        })
    }

    /// A hook for the cluster: another node is gone, so every running hub tells its servers.
    pub(crate) fn node_gone_hook(&self) -> crate::cluster::node::NodeGoneHook {
        let shared = Arc::downgrade(&self.shared);
        Box::new(move |node: &str| {
            let Some(shared) = shared.upgrade() else {
                return;
            };
            let hubs: Vec<HubHandle> = shared.hubs.read().values().cloned().collect();
            for hub in hubs {
                hub.send_detached(HubCommand::NodeGone {
                    node: node.to_owned(),
                });
            }
        })
    }

    /// Whether `name` (any case) could be used now: it runs, or one more hub may start.
    pub fn has_room_for(&self, name: &str) -> bool {
        let hubs = self.shared.hubs.read();
        hubs.len() < self.shared.settings.max_hubs
            || hubs.contains_key(canonical_hub_name(name).as_ref())
    }

    /// Names of the hubs running now.
    pub fn names(&self) -> Vec<HubName> {
        self.shared
            .hubs
            .read()
            .iter()
            .filter(|(_, h)| !h.tx.is_closed())
            .map(|(name, _)| name.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests;
