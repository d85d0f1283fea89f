//! The hub actor: owns one hub's connections, users, groups and user-group memberships.
//!
//! Every operation on a hub is a [`HubCommand`] processed one at a time, so the maps need no
//! locks. Fan-out pushes the shared encoded bytes into each recipient's outbox without waiting
//! (see `peer::outbox` for what happens when one is full) and adds to the counters once per
//! fan-out, not once per recipient.
//!
//! The actor wakes up on a timer only while it has something timed to do: sweeping expired
//! user-group memberships (every second while there are any), or retiring once idle (see
//! [`HubRegistry`](super::HubRegistry) for the protocol with the registry). A hub busy with
//! connections and no memberships reads its inbox and nothing else.
//!
//! A panic while handling a command is caught here: the hub is then *failed* — it closes
//! every client (with a reconnectable Close message) and hub-server connection it holds,
//! closes its inbox and leaves the registry, so that the next use starts a fresh hub.

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::time::Instant;

use tokio::sync::mpsc;

use self::remote::strings;
use super::{
    ExistsQuery, GroupName, HubCommand, HubName, HubSettings, Member, MembershipTtl,
    RegistryShared, Scope, UserId,
};
use crate::close::CloseReason;
use crate::cluster::wire::{HubOp, Query};
use crate::id::ConnectionId;
use crate::peer::ConnHandle;
use crate::peer::ServerConnHandle;
use crate::supervise::{self, ActorKind};
use crate::telemetry::{HubStats, Metrics};
use indexmap::IndexMap;

/// How long a membership without ttl is remembered at most (Azure: one year).
const UNLIMITED_MEMBERSHIP: Duration = Duration::from_secs(365 * 24 * 3600);

/// How often expired user-group memberships are swept.
const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

#[derive(Debug)]
struct Entry {
    conn: ConnHandle,
    groups: Vec<GroupName>,
}

#[derive(Clone, Copy, Debug)]
struct Membership {
    expires: Instant,
    updated: Instant,
    unlimited: bool,
}

#[derive(Debug)]
struct ServerEntry {
    handle: ServerConnHandle,
    clients: usize,
    shutting_down: bool,
    /// A connection of another node (see [`link`]); `None` for this node's.
    link: Option<link::Link>,
}

/// One hub's state and inbox.
#[derive(Debug)]
pub(super) struct Hub {
    name: HubName,
    rx: mpsc::Receiver<HubCommand>,
    settings: HubSettings,
    metrics: Arc<Metrics>,
    /// This hub's counters (direct writes, group and user counts).
    stats: Arc<HubStats>,
    /// In the order they connected (a removal moves the last into its place): a fan-out walks
    /// their memory in the order it was allocated, not at random.
    connections: IndexMap<ConnectionId, Entry>,
    users: HashMap<UserId, Vec<ConnHandle>>,
    /// Members in the order they joined, as `connections`.
    groups: HashMap<GroupName, IndexMap<ConnectionId, ConnHandle>>,
    user_groups: HashMap<UserId, HashMap<GroupName, Membership>>,
    servers: Vec<ServerEntry>,
    client_count: Arc<AtomicUsize>,
    /// Bumped by every removal of a user-group membership (see `HubCommand::ApplyRemembered`).
    membership_epoch: Arc<AtomicU64>,
    /// Where the hub removes itself when it retires or fails.
    registry: Weak<RegistryShared>,
    /// Since when the hub has had no connection and no membership (`None`: it has some).
    idle_since: Option<Instant>,
    /// When expired memberships are swept next (while there are any).
    next_sweep: Instant,
    /// No other command waits in the inbox and the direct-writing budget allows it: a fan-out
    /// writes straight to the sockets its connections lent (one system call each, no task
    /// woken). Under load it queues instead, so that each connection's task coalesces what
    /// arrives meanwhile (see [`direct`]).
    direct: bool,
    direct_budget: direct::DirectBudget,
}

/// What the actor does after a command or a timer.
#[derive(Debug, PartialEq, Eq)]
enum Next {
    Continue,
    Stop,
}

impl Hub {
    /// A hub with no connections, reading `rx`.
    #[allow(clippy::too_many_arguments)] // each is a distinct piece of the hub's surroundings
    pub(super) fn new(
        name: HubName,
        rx: mpsc::Receiver<HubCommand>,
        settings: HubSettings,
        metrics: Arc<Metrics>,
        stats: Arc<HubStats>,
        client_count: Arc<AtomicUsize>,
        membership_epoch: Arc<AtomicU64>,
        registry: Weak<RegistryShared>,
    ) -> Self {
        Self {
            membership_epoch,
            registry,
            idle_since: None,
            next_sweep: Instant::now(),
            direct: false,
            direct_budget: direct::DirectBudget::new(Instant::now()),
            name,
            rx,
            settings,
            metrics,
            stats,
            connections: IndexMap::new(),
            users: HashMap::new(),
            groups: HashMap::new(),
            user_groups: HashMap::new(),
            servers: Vec::new(),
            client_count,
        }
    }

    /// Process commands until the hub retires idle, fails, or every handle is dropped.
    pub(super) async fn run(mut self) {
        if let Some(cluster) = &self.settings.cluster {
            cluster.hub_started(self.name.as_str());
        }
        let _subscription =
            remote::ClusterSubscription(self.settings.cluster.clone(), self.name.clone());
        let timer = tokio::time::sleep(Duration::ZERO);
        tokio::pin!(timer);
        let mut armed: Option<Instant> = None;
        loop {
            let wake = self.wake_at();
            if wake != armed {
                if let Some(at) = wake {
                    timer.as_mut().reset(at);
                }
                armed = wake;
            }
            let next = tokio::select! {
                cmd = self.rx.recv() => match cmd {
                    Some(cmd) => self.guarded(|hub| {
                        let backlog = !hub.rx.is_empty();
                        hub.direct = hub.direct_budget.allows(Instant::now(), backlog);
                        let started = hub.direct.then(Instant::now);
                        hub.handle(cmd);
                        if let Some(started) = started {
                            hub.direct_budget.spend(started.elapsed());
                        }
                        Next::Continue
                    }),
                    None => Next::Stop,
                },
                () = &mut timer, if armed.is_some() => {
                    armed = None;
                    let now = Instant::now();
                    self.guarded(|hub| hub.on_timer(now))
                }
            };
            if next == Next::Stop {
                break;
            }
        }
        self.stats.set_sizes(0, 0);
        tracing::debug!(hub = %self.name, "hub actor stopped");
    }

    /// Run `step`; a panic inside it fails the hub.
    fn guarded(&mut self, step: impl FnOnce(&mut Self) -> Next) -> Next {
        match std::panic::catch_unwind(AssertUnwindSafe(|| step(self))) {
            Ok(next) => {
                // Two stores, read only by a scrape (`switchboard_groups`, `switchboard_users`).
                self.stats.set_sizes(self.groups.len(), self.users.len());
                next
            }
            Err(payload) => {
                supervise::report(
                    ActorKind::Hub,
                    &self.metrics,
                    self.name.as_str(),
                    "",
                    payload.as_ref(),
                );
                self.fail();
                Next::Stop
            }
        }
    }

    /// After a panic: close what the hub holds (the maps may be half-updated, but every
    /// connection in them is one to close), stop accepting commands and leave the registry.
    fn fail(&mut self) {
        for e in self.connections.values() {
            e.conn.close(CloseReason::HubFailed);
        }
        for e in &self.servers {
            e.handle.close();
        }
        self.rx.close();
        if let Some(registry) = self.registry.upgrade() {
            let mut hubs = registry.hubs.write();
            if self.is_registered_in(&hubs) {
                hubs.remove(&self.name);
            }
        }
    }

    /// Whether the registry's entry for this hub's name is this actor.
    fn is_registered_in(&self, hubs: &HashMap<HubName, super::HubHandle>) -> bool {
        hubs.get(&self.name)
            .is_some_and(|h| Arc::ptr_eq(&h.clients, &self.client_count))
    }

    /// No connection, no hub server of this node, no remembered membership (groups exist only
    /// with connections; links to other nodes' hub servers are learnt again when needed).
    fn is_idle(&self) -> bool {
        self.connections.is_empty()
            && self.servers.iter().all(|e| e.link.is_some())
            && self.user_groups.is_empty()
    }

    /// When the timer must fire next: the next membership sweep while there are memberships,
    /// the end of the idle period while idle, else never.
    fn wake_at(&mut self) -> Option<Instant> {
        if !self.user_groups.is_empty() {
            self.idle_since = None;
            return Some(self.next_sweep);
        }
        if !self.is_idle() {
            self.idle_since = None;
            return None;
        }
        let since = *self.idle_since.get_or_insert_with(Instant::now);
        since.checked_add(self.settings.idle_timeout)
    }

    fn on_timer(&mut self, now: Instant) -> Next {
        if !self.user_groups.is_empty() {
            if now >= self.next_sweep {
                self.expire_memberships(now);
                self.next_sweep = now + SWEEP_INTERVAL;
            }
            return Next::Continue;
        }
        let idle_over = self
            .idle_since
            .and_then(|since| since.checked_add(self.settings.idle_timeout))
            .is_some_and(|end| end <= now);
        if self.is_idle() && idle_over {
            if self.retire() {
                return Next::Stop;
            }
            // Someone holds a handle or just queued a command: look again later.
            self.idle_since = Some(now);
        }
        Next::Continue
    }

    /// Leave the registry if nobody but the registry holds a handle and nothing is queued;
    /// whether the hub left (see [`HubRegistry`](super::HubRegistry) for why this cannot
    /// race with a caller).
    fn retire(&mut self) -> bool {
        let Some(registry) = self.registry.upgrade() else {
            // The broker is gone.
            return true;
        };
        let mut hubs = registry.hubs.write();
        if !self.is_registered_in(&hubs) {
            // Not reachable through the registry any more.
            return true;
        }
        let outside = hubs.get(&self.name).map_or(0, |h| h.tx.strong_count() - 1);
        if outside > 0 || !self.rx.is_empty() {
            return false;
        }
        let removed = hubs.remove(&self.name);
        drop(hubs);
        drop(removed);
        Metrics::inc(&self.metrics.hubs_dropped_idle);
        tracing::debug!(hub = %self.name, "idle hub retired");
        true
    }

    fn handle(&mut self, cmd: HubCommand) {
        match cmd {
            HubCommand::Connect { conn, reply } => {
                self.connect(conn);
                // The caller may have given up waiting; the registration stands either way.
                let _ = reply.send(());
            }
            HubCommand::Admit { request, reply } => {
                let result = self.admit(request);
                if let (Err(_), Ok((conn, _))) = (reply.send(result.clone()), &result) {
                    // The client went away while waiting: undo the registration.
                    self.disconnect(&conn.id().clone());
                }
            }
            HubCommand::RegisterServer { server } => {
                tracing::info!(hub = %self.name, server = server.server_id(), kind = ?server.connection_type(), "hub server connected");
                self.announce_server(&server);
                self.servers.push(ServerEntry {
                    handle: server,
                    clients: 0,
                    shutting_down: false,
                    link: None,
                });
            }
            HubCommand::UnregisterServer { id } => self.unregister_server(id),
            HubCommand::ShutdownServer { id } => {
                if let Some(e) = self.servers.iter_mut().find(|e| e.handle.id() == id) {
                    e.shutting_down = true;
                    if e.link.is_none() && e.handle.connection_type().carries_clients() {
                        let conn = id.0;
                        self.publish(|| HubOp::ServerDraining { conn });
                    }
                }
            }
            HubCommand::LearnServers { servers } => self.learn_servers(servers),
            HubCommand::ConnectionData { id, payload } => {
                if !self.connection_data(&id, payload.clone()) {
                    self.publish(|| HubOp::ConnectionData {
                        id: id.as_str().to_owned(),
                        payload,
                    });
                }
            }
            HubCommand::ServerIds { reply } => {
                let mut ids: Vec<String> = self
                    .servers
                    .iter()
                    .map(|e| e.handle.server_id().to_owned())
                    .collect();
                ids.sort();
                ids.dedup();
                let _ = reply.send(Ok(ids));
            }
            HubCommand::Remote { origin, op } => self.remote(origin, op),
            HubCommand::Inventory { query, reply } => {
                // The admin console may have gone away; nothing to undo.
                let _ = reply.send(self.inventory(query));
            }
            HubCommand::ApplyRemembered {
                id,
                groups,
                epoch,
                reply,
            } => {
                let fresh = self.membership_epoch.load(Ordering::Relaxed) == epoch;
                if fresh {
                    self.apply_remembered(&id, groups);
                }
                let _ = reply.send(fresh);
            }
            HubCommand::SendToServer { server_id, frame } => {
                // The first connection of that server with room takes it; none here: perhaps
                // one on another node (else dropped).
                if !self.send_to_server(&server_id, &frame, false) {
                    self.publish(|| HubOp::SendToServer { server_id, frame });
                }
            }
            HubCommand::NodeGone { node } => {
                self.drop_links_to(&node);
                let frame = crate::protocol::service::encode(&crate::protocol::service::ping(&[(
                    "offline",
                    node.as_str(),
                )]));
                for e in self.servers.iter().filter(|e| e.link.is_none()) {
                    let _ = e.handle.try_send_frame(frame.clone());
                }
            }
            HubCommand::InvokeElsewhere { frame, reply } => match &self.settings.cluster {
                Some(cluster) => super::cluster::ask_bool(
                    cluster,
                    &self.name,
                    Query::ClientInvocation { frame },
                    reply,
                ),
                None => {
                    let _ = reply.send(Ok(false));
                }
            },
            HubCommand::SendUsers { users, msg } => {
                self.send_users(&users, &msg);
                self.publish(|| HubOp::SendUsers {
                    users: strings(&users),
                    msg: msg.to_wire(),
                });
            }
            HubCommand::SendGroups { groups, msg } => {
                self.send_groups(&groups, &msg);
                self.publish(|| HubOp::SendGroups {
                    groups: strings(&groups),
                    msg: msg.to_wire(),
                });
            }
            HubCommand::CloseServers {
                carrying_clients_only,
            } => {
                for e in &self.servers {
                    if !carrying_clients_only || e.handle.connection_type().carries_clients() {
                        e.handle.close();
                    }
                }
            }
            HubCommand::Barrier { reply } => {
                let _ = reply.send(());
            }
            #[cfg(test)]
            HubCommand::PanicForTest => panic!("hub test hook: PanicForTest"),
            HubCommand::Disconnect { id } => self.disconnect(&id),
            HubCommand::SendAll { msg, excluded } => {
                self.send_all(&msg, &excluded);
                self.publish(|| HubOp::SendAll {
                    msg: msg.to_wire(),
                    excluded: strings(&excluded),
                });
            }
            HubCommand::SendConnection { id, msg } => {
                // A connection of this node is nowhere else.
                if !self.send_connection(&id, &msg) {
                    self.publish(|| HubOp::SendConnection {
                        id: id.as_str().to_owned(),
                        msg: msg.to_wire(),
                    });
                }
            }
            HubCommand::SendUser { user, msg } => {
                let users = [user];
                self.send_users(&users, &msg);
                self.publish(|| HubOp::SendUsers {
                    users: strings(&users),
                    msg: msg.to_wire(),
                });
            }
            HubCommand::SendGroup {
                group,
                msg,
                excluded,
                excluded_users,
            } => {
                self.send_group(&group, &msg, &excluded, &excluded_users);
                self.publish(|| HubOp::SendGroup {
                    group: group.as_str().to_owned(),
                    msg: msg.to_wire(),
                    excluded: strings(&excluded),
                    excluded_users: strings(&excluded_users),
                });
            }
            HubCommand::AddToGroup { id, group, reply } => {
                let found = self.join(&id, group.clone());
                self.answer_or_ask(found, reply, || Query::AddToGroup {
                    id: id.as_str().to_owned(),
                    group: group.as_str().to_owned(),
                });
            }
            HubCommand::RemoveFromGroup { id, group, reply } => {
                let existed = self.connections.contains_key(&id);
                self.leave(&id, &group);
                self.answer_or_ask(existed, reply, || Query::RemoveFromGroup {
                    id: id.as_str().to_owned(),
                    group: group.as_str().to_owned(),
                });
            }
            HubCommand::RemoveFromAllGroups { id, reply } => {
                let found = self.remove_from_all_groups(&id);
                self.answer_or_ask(found, reply, || Query::RemoveFromAllGroups {
                    id: id.as_str().to_owned(),
                });
            }
            HubCommand::AddUserToGroup {
                user,
                group,
                ttl,
                reply,
            } => {
                let now = Instant::now();
                self.add_user_to_group(user.clone(), group.clone(), ttl, now);
                match &self.settings.cluster {
                    Some(cluster) => super::cluster::add_user_to_group(
                        cluster,
                        &self.name,
                        &user,
                        &group,
                        ttl,
                        &self.settings,
                        reply,
                    ),
                    None => {
                        let _ = reply.send(Ok(()));
                    }
                }
            }
            HubCommand::RemoveUserFromGroup { user, group, reply } => {
                self.remove_user_from_group(&user, &group);
                match &self.settings.cluster {
                    Some(cluster) => super::cluster::remove_user_from_group(
                        cluster,
                        &self.name,
                        &user,
                        Some(&group),
                        reply,
                    ),
                    None => {
                        let _ = reply.send(Ok(()));
                    }
                }
            }
            HubCommand::RemoveUserFromAllGroups { user, reply } => {
                self.remove_user_from_all_groups(&user);
                match &self.settings.cluster {
                    Some(cluster) => super::cluster::remove_user_from_group(
                        cluster, &self.name, &user, None, reply,
                    ),
                    None => {
                        let _ = reply.send(Ok(()));
                    }
                }
            }
            HubCommand::Exists { query, reply } => {
                let found = self.exists(&query, Instant::now());
                match (&self.settings.cluster, found) {
                    (Some(cluster), false) => {
                        super::cluster::ask_exists(cluster, &self.name, &query, reply);
                    }
                    _ => {
                        let _ = reply.send(Ok(found));
                    }
                }
            }
            HubCommand::GroupConnections { group, reply } => {
                let members = self.group_members(&group);
                match &self.settings.cluster {
                    Some(cluster) => {
                        super::cluster::ask_members(cluster, &self.name, &group, members, reply);
                    }
                    None => {
                        let _ = reply.send(Ok(members));
                    }
                }
            }
            HubCommand::CloseConnection { id, reason, reply } => {
                let found = self.close_connection(&id, reason.clone());
                self.answer_or_ask(found, reply, || Query::CloseConnection {
                    id: id.as_str().to_owned(),
                    reason,
                });
            }
            HubCommand::CloseConnections {
                scope,
                excluded,
                reason,
                reply,
            } => {
                self.close_connections(&scope, &excluded, &reason);
                // The broker's own stop closes this node's connections only.
                match (&self.settings.cluster, reason) {
                    (Some(cluster), CloseReason::ByApplication(reason)) => {
                        let op = HubOp::CloseConnections {
                            scope: super::cluster::wire_scope(&scope),
                            excluded: strings(&excluded),
                            reason,
                        };
                        super::cluster::publish_acknowledged(cluster, &self.name, op, reply);
                    }
                    _ => {
                        let _ = reply.send(Ok(()));
                    }
                }
            }
        }
    }

    /// Whether the connection existed.
    fn remove_from_all_groups(&mut self, id: &ConnectionId) -> bool {
        let groups = match self.connections.get_mut(id) {
            Some(e) => std::mem::take(&mut e.groups),
            None => return false,
        };
        for g in groups {
            self.remove_group_member(&g, id);
        }
        true
    }

    fn remove_user_from_all_groups(&mut self, user: &UserId) {
        self.membership_epoch.fetch_add(1, Ordering::Relaxed);
        let mut groups: Vec<GroupName> = self
            .user_groups
            .remove(user)
            .map(|m| m.into_keys().collect())
            .unwrap_or_default();
        for conn in self.users.get(user).into_iter().flatten() {
            if let Some(e) = self.connections.get(conn.id()) {
                groups.extend(e.groups.iter().cloned());
            }
        }
        groups.sort();
        groups.dedup();
        for g in groups {
            self.remove_user_from_group(user, &g);
        }
    }

    fn group_members(&self, group: &GroupName) -> Vec<Member> {
        let mut members: Vec<Member> = self
            .groups
            .get(group)
            .into_iter()
            .flatten()
            .map(|(id, conn)| Member {
                connection_id: id.clone(),
                user_id: conn.user().cloned(),
            })
            .collect();
        members.sort_by(|a, b| a.connection_id.cmp(&b.connection_id));
        members
    }

    /// Whether the connection existed.
    fn close_connection(&self, id: &ConnectionId, reason: Option<String>) -> bool {
        match self.connections.get(id) {
            Some(e) => {
                e.conn.close(CloseReason::ByApplication(reason));
                true
            }
            None => false,
        }
    }

    fn close_connections(&self, scope: &Scope, excluded: &[ConnectionId], reason: &CloseReason) {
        let targets: Vec<&ConnHandle> = match scope {
            Scope::All => self.connections.values().map(|e| &e.conn).collect(),
            Scope::User(u) => self.users.get(u).into_iter().flatten().collect(),
            Scope::Group(g) => self
                .groups
                .get(g)
                .into_iter()
                .flat_map(|m| m.values())
                .collect(),
        };
        for conn in targets {
            if !excluded.contains(conn.id()) {
                conn.close(reason.clone());
            }
        }
    }

    fn connect(&mut self, conn: ConnHandle) {
        let id = conn.id().clone();
        let previous = self.connections.insert(
            id.clone(),
            Entry {
                conn: conn.clone(),
                groups: Vec::new(),
            },
        );
        if previous.is_none() {
            self.client_count.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(user) = conn.user().cloned() {
            self.users.entry(user.clone()).or_default().push(conn);
            let now = Instant::now();
            let groups: Vec<GroupName> = self
                .user_groups
                .get(&user)
                .into_iter()
                .flatten()
                .filter(|(_, m)| m.expires > now)
                .map(|(g, _)| g.clone())
                .collect();
            for g in groups {
                self.join(&id, g);
            }
        }
    }

    fn disconnect(&mut self, id: &ConnectionId) {
        let Some(entry) = self.connections.swap_remove(id) else {
            return;
        };
        self.client_count.fetch_sub(1, Ordering::Relaxed);
        if let Some(server) = entry.conn.server()
            && let Some(e) = self
                .servers
                .iter_mut()
                .find(|e| e.handle.id() == server.id())
        {
            e.clients = e.clients.saturating_sub(1);
        }
        for g in &entry.groups {
            self.remove_group_member(g, id);
        }
        if let Some(user) = entry.conn.user()
            && let Some(conns) = self.users.get_mut(user)
        {
            conns.retain(|c| c.id() != id);
            if conns.is_empty() {
                self.users.remove(user);
                if self.settings.cluster.is_some() {
                    // The engine remembers the user's memberships (see `add_user_to_group`).
                    self.user_groups.remove(user);
                }
            }
        }
    }

    /// Add a connection to a group; false if the connection does not exist.
    fn join(&mut self, id: &ConnectionId, group: GroupName) -> bool {
        let Some(entry) = self.connections.get_mut(id) else {
            return false;
        };
        if !entry.groups.contains(&group) {
            entry.groups.push(group.clone());
            self.groups
                .entry(group)
                .or_default()
                .insert(id.clone(), entry.conn.clone());
        }
        true
    }

    fn leave(&mut self, id: &ConnectionId, group: &GroupName) {
        if let Some(entry) = self.connections.get_mut(id) {
            entry.groups.retain(|g| g != group);
        }
        self.remove_group_member(group, id);
    }

    fn remove_group_member(&mut self, group: &GroupName, id: &ConnectionId) {
        if let Some(members) = self.groups.get_mut(group) {
            members.swap_remove(id);
            if members.is_empty() {
                self.groups.remove(group);
            }
        }
    }

    fn user_connection_ids(&self, user: &UserId) -> Vec<ConnectionId> {
        self.users
            .get(user)
            .into_iter()
            .flatten()
            .map(|c| c.id().clone())
            .collect()
    }

    fn add_user_to_group(
        &mut self,
        user: UserId,
        group: GroupName,
        ttl: MembershipTtl,
        now: Instant,
    ) {
        for id in self.user_connection_ids(&user) {
            self.join(&id, group.clone());
        }
        if self.settings.cluster.is_some() && !self.users.contains_key(&user) {
            // In a cluster the engine remembers it; this node reads it when the user connects
            // here (so a hub without the user's connections can still retire).
            return;
        }
        let (expires, unlimited) = match ttl {
            MembershipTtl::CurrentConnectionsOnly => return,
            MembershipTtl::Unlimited => (expiry(now, UNLIMITED_MEMBERSHIP), true),
            MembershipTtl::For(d) => (expiry(now, d), false),
        };
        let memberships = self.user_groups.entry(user).or_default();
        memberships.insert(
            group,
            Membership {
                expires,
                updated: now,
                unlimited,
            },
        );
        // Remember only the most recently updated memberships without ttl.
        let unlimited_count = memberships.values().filter(|m| m.unlimited).count();
        if unlimited_count > self.settings.max_user_groups_without_ttl {
            let mut by_age: Vec<(Instant, GroupName)> = memberships
                .iter()
                .filter(|(_, m)| m.unlimited)
                .map(|(g, m)| (m.updated, g.clone()))
                .collect();
            by_age.sort();
            for (_, g) in by_age
                .into_iter()
                .take(unlimited_count - self.settings.max_user_groups_without_ttl)
            {
                memberships.remove(&g);
            }
        }
    }

    fn remove_user_from_group(&mut self, user: &UserId, group: &GroupName) {
        self.membership_epoch.fetch_add(1, Ordering::Relaxed);
        if let Some(m) = self.user_groups.get_mut(user) {
            m.remove(group);
            if m.is_empty() {
                self.user_groups.remove(user);
            }
        }
        for id in self.user_connection_ids(user) {
            self.leave(&id, group);
        }
    }

    /// Drop memberships whose ttl ran out; the user's connections leave those groups.
    fn expire_memberships(&mut self, now: Instant) {
        let mut expired = Vec::new();
        for (user, groups) in &self.user_groups {
            for (group, m) in groups {
                if m.expires <= now {
                    expired.push((user.clone(), group.clone()));
                }
            }
        }
        for (user, group) in expired {
            self.remove_user_from_group(&user, &group);
        }
    }

    fn exists(&self, query: &ExistsQuery, now: Instant) -> bool {
        match query {
            ExistsQuery::Connection(id) => self.connections.contains_key(id),
            ExistsQuery::User(u) => self.users.contains_key(u),
            ExistsQuery::Group(g) => self.groups.contains_key(g),
            ExistsQuery::UserInGroup(u, g) => {
                let remembered = self
                    .user_groups
                    .get(u)
                    .and_then(|m| m.get(g))
                    .is_some_and(|m| m.expires > now);
                remembered
                    || self.users.get(u).into_iter().flatten().any(|c| {
                        self.connections
                            .get(c.id())
                            .is_some_and(|e| e.groups.contains(g))
                    })
            }
        }
    }
}

/// When a membership of `ttl` added `now` expires: `ttl` is shortened to
/// [`MembershipTtl::MAX`], and an instant the clock cannot represent counts as a year.
fn expiry(now: Instant, ttl: Duration) -> Instant {
    now.checked_add(ttl.min(MembershipTtl::MAX))
        .or_else(|| now.checked_add(UNLIMITED_MEMBERSHIP))
        .unwrap_or(now)
}

mod direct;
mod fanout;
mod inventory;
mod link;
mod remote;
mod servers;
#[cfg(test)]
mod tests;
