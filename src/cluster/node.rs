//! One node of a cluster: what it publishes, what it hears, whom it waits for.
//!
//! Three tasks per node, all around one engine:
//!
//! * **Publisher.** Everything a node sends to others goes through one ordered queue and leaves
//!   in batches (one engine round trip per batch, commands in queue order): hub messages, the
//!   questions of [`Cluster::query`], membership writes with their announcements, heartbeats.
//!   The order in which a hub actor hands over its operations is the order other nodes receive
//!   them. Hub *messages* count against `max_outgoing_messages`/`max_outgoing_bytes`; when the
//!   queue is full they are dropped and counted (`switchboard_cluster_publish_dropped_total`);
//!   control items (questions, memberships, closes) are never dropped — they are bounded by the
//!   callers that wait for them (at most `max_pending_requests` questions in flight).
//! * **Reader.** Reads the subscriber's events: hub operations go to the local hub actor without
//!   waiting (a full inbox drops a message, counted; a control operation waits in a task of its
//!   own); answers complete waiting questions; heartbeats keep the node table.
//! * **Heartbeat.** Publishes "alive" every `heartbeat_interval`, notices nodes that stopped
//!   (no heartbeat for `node_timeout`), and times out questions.
//!
//! Channels: `{prefix}:h:{hub}` (hub operations, subscribed while the hub runs on this node),
//! `{prefix}:n:{node}` (answers to this node), `{prefix}:ctl` (heartbeats).
//!
//! Delivery between nodes is at most once: what is published while the engine is unreachable,
//! or while a node's subscription is down, is not delivered there (counted).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use super::engine::{Command, Engine, EngineError, Reply, Subscriber, SubscriberEvent};
use super::wire::{self, Answer, Body, Envelope, HubOp, Query, ServerInfo};
use crate::hub::HubHandle;
use crate::telemetry::Metrics;

/// A cluster node's settings.
#[derive(Clone, Debug)]
pub struct ClusterSettings {
    /// This node's id, unique in the cluster.
    pub node_id: String,
    /// Prefix of every channel and key (several clusters can share one Redis).
    pub prefix: String,
    /// How often this node says it is alive.
    pub heartbeat_interval: Duration,
    /// A node not heard from for this long is gone.
    pub node_timeout: Duration,
    /// How long a question waits for the other nodes' answers.
    pub request_timeout: Duration,
    /// Questions in flight at most; one more fails at once.
    pub max_pending_requests: usize,
    /// Hub messages queued for publishing at most (count).
    pub max_outgoing_messages: usize,
    /// Hub messages queued for publishing at most (bytes).
    pub max_outgoing_bytes: usize,
}

impl ClusterSettings {
    /// Defaults for a node called `node_id`.
    pub fn new(node_id: impl Into<String>) -> Self {
        Self {
            node_id: node_id.into(),
            prefix: "sb".to_owned(),
            heartbeat_interval: Duration::from_secs(2),
            node_timeout: Duration::from_secs(8),
            request_timeout: Duration::from_secs(5),
            max_pending_requests: 10_000,
            max_outgoing_messages: 65_536,
            max_outgoing_bytes: 64 * 1024 * 1024,
        }
    }
}

/// Why a cluster-wide answer could not be given.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Unreachable {
    /// The engine is unreachable or failed.
    #[error("the cluster engine is unreachable: {0}")]
    Engine(String),
    /// Some node did not answer in time.
    #[error("other cluster nodes did not answer within {0:?}")]
    Timeout(Duration),
    /// Too many questions in flight on this node.
    #[error("too many cluster requests in flight on this node")]
    Busy,
}

/// How a question's answers combine.
#[derive(Debug)]
enum Fold {
    /// Any node's `true` wins.
    AnyTrue(bool),
    /// Members of every node, merged.
    Members(Vec<(String, Option<String>)>),
    /// Hub-server connections of every node.
    Servers(Vec<ServerInfo>),
}

impl Fold {
    fn add(&mut self, answer: Answer) {
        match (self, answer) {
            (Self::AnyTrue(acc), Answer::Bool(b)) => *acc |= b,
            (Self::Members(acc), Answer::Members(m)) => acc.extend(m),
            (Self::Servers(acc), Answer::Servers(s)) => acc.extend(s),
            // A node answering another kind of question: ignored.
            _ => {}
        }
    }

    fn finish(self) -> Answer {
        match self {
            Self::AnyTrue(b) => Answer::Bool(b),
            Self::Members(mut m) => {
                m.sort();
                m.dedup_by(|a, b| a.0 == b.0);
                Answer::Members(m)
            }
            Self::Servers(s) => Answer::Servers(s),
        }
    }
}

#[derive(Debug)]
struct Waiting {
    fold: Fold,
    /// Answers still expected: unknown until the publish said how many nodes received it.
    expected: Option<u64>,
    answered: HashSet<String>,
    deadline: Instant,
    reply: oneshot::Sender<Result<Answer, Unreachable>>,
}

impl Waiting {
    fn done(&self) -> bool {
        self.expected
            .is_some_and(|n| self.answered.len() as u64 >= n)
    }
}

/// Something for the publisher.
#[derive(Debug)]
enum Outgoing {
    /// A hub message (droppable; its size counts against the queue's bounds).
    Message { channel: String, payload: Bytes },
    /// A message that must not be dropped (heartbeats, closes, membership announcements that
    /// nobody waits for).
    Control { channel: String, payload: Bytes },
    /// A question: publish it and learn how many nodes received it. `extra` commands run just
    /// before the publish; their replies are folded in by `on_extra`.
    Query {
        request: u64,
        channel: String,
        payload: Bytes,
        extra: Vec<Command>,
        on_extra: fn(&[Reply]) -> Option<Answer>,
    },
    /// Commands whose replies someone waits for, in order.
    Batch {
        commands: Vec<Command>,
        reply: oneshot::Sender<Result<Vec<Reply>, EngineError>>,
    },
}

/// A cluster node. Cheap to share (`Arc`); created with [`Cluster::start`].
pub struct Cluster {
    settings: ClusterSettings,
    engine: Arc<dyn Engine>,
    subscriber: Box<dyn Subscriber>,
    metrics: Arc<Metrics>,
    outgoing: mpsc::UnboundedSender<Outgoing>,
    queued_messages: AtomicUsize,
    queued_bytes: AtomicUsize,
    pending: Mutex<Pending>,
    hubs: Mutex<HashMap<String, HubSubscription>>,
    nodes: Mutex<HashMap<String, Instant>>,
    up: watch::Sender<bool>,
    lookup: OnceLock<HubLookup>,
    on_node_gone: OnceLock<NodeGoneHook>,
}

/// Told the id of a node that left or died (the broker sends hub servers an `offline` ping).
pub(crate) type NodeGoneHook = Box<dyn Fn(&str) + Send + Sync>;

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("node_id", &self.settings.node_id)
            .field("engine", &self.engine.describe())
            .field("up", &self.is_up())
            .finish_non_exhaustive()
    }
}

/// Finds a running hub by canonical name (never starts one).
pub(crate) type HubLookup = Box<dyn Fn(&str) -> Option<HubHandle> + Send + Sync>;

#[derive(Debug, Default)]
struct Pending {
    next: u64,
    waiting: HashMap<u64, Waiting>,
}

#[derive(Debug)]
struct HubSubscription {
    holders: usize,
    subscribed: watch::Sender<bool>,
}

impl Cluster {
    /// Start a node on `engine`: its publisher, reader and heartbeat tasks hold it weakly and
    /// stop once the last `Arc` is dropped.
    pub fn start(
        settings: ClusterSettings,
        engine: Arc<dyn Engine>,
        metrics: Arc<Metrics>,
    ) -> Arc<Self> {
        let (events_tx, events_rx) = mpsc::channel(8192);
        let subscriber = engine.subscriber(events_tx);
        let (out_tx, out_rx) = mpsc::unbounded_channel();
        let (up, _) = watch::channel(false);
        Metrics::set(&metrics.cluster_engine_up, 0);
        let cluster = Arc::new(Self {
            settings,
            engine,
            subscriber,
            metrics,
            outgoing: out_tx,
            queued_messages: AtomicUsize::new(0),
            queued_bytes: AtomicUsize::new(0),
            pending: Mutex::new(Pending::default()),
            hubs: Mutex::new(HashMap::new()),
            nodes: Mutex::new(HashMap::new()),
            up,
            lookup: OnceLock::new(),
            on_node_gone: OnceLock::new(),
        });
        let own = vec![
            cluster.node_channel(&cluster.settings.node_id),
            cluster.ctl_channel(),
        ];
        {
            let c = cluster.clone();
            tokio::spawn(async move {
                // Confirmed or not, the subscriber keeps these and subscribes when it can.
                let _ = c.subscriber.subscribe(own).await;
            });
        }
        tokio::spawn(tasks::publisher(Arc::downgrade(&cluster), out_rx));
        tokio::spawn(tasks::reader(Arc::downgrade(&cluster), events_rx));
        tokio::spawn(tasks::heartbeat(Arc::downgrade(&cluster)));
        cluster
    }

    /// Where running hubs are found (set once, by the broker that owns the hubs).
    pub(crate) fn set_hub_lookup(&self, lookup: HubLookup) {
        let _ = self.lookup.set(lookup);
    }

    /// What to do when another node is gone (set once, by the broker).
    pub(crate) fn set_node_gone_hook(&self, hook: NodeGoneHook) {
        let _ = self.on_node_gone.set(hook);
    }

    /// This node's id.
    pub fn node_id(&self) -> &str {
        &self.settings.node_id
    }

    /// The settings.
    pub fn settings(&self) -> &ClusterSettings {
        &self.settings
    }

    /// Whether the engine is reachable and this node subscribed.
    pub fn is_up(&self) -> bool {
        *self.up.borrow()
    }

    /// Other nodes heard from within the node timeout, sorted.
    pub fn nodes(&self) -> Vec<String> {
        let mut nodes: Vec<String> = self.nodes.lock().keys().cloned().collect();
        nodes.sort();
        nodes
    }

    /// A key for hub `hub` and `parts` (`{prefix}:{kind}:{hub}:{user}`).
    pub(crate) fn key(&self, kind: &str, hub: &str, rest: &str) -> String {
        format!("{}:{kind}:{hub}:{rest}", self.settings.prefix)
    }

    fn hub_channel(&self, hub: &str) -> String {
        format!("{}:h:{hub}", self.settings.prefix)
    }

    fn node_channel(&self, node: &str) -> String {
        format!("{}:n:{node}", self.settings.prefix)
    }

    fn ctl_channel(&self) -> String {
        format!("{}:ctl", self.settings.prefix)
    }

    fn envelope(&self, body: Body) -> Bytes {
        wire::encode(&Envelope {
            origin: self.settings.node_id.clone(),
            body,
        })
    }

    // ---- hubs ----

    /// A hub started on this node: subscribe to its channel (once per running hub).
    pub(crate) fn hub_started(self: &Arc<Self>, hub: &str) {
        let mut hubs = self.hubs.lock();
        let entry = hubs
            .entry(hub.to_owned())
            .or_insert_with(|| HubSubscription {
                holders: 0,
                subscribed: watch::channel(false).0,
            });
        entry.holders += 1;
        if entry.holders == 1 {
            let channel = self.hub_channel(hub);
            let done = entry.subscribed.clone();
            let c = self.clone();
            tokio::spawn(async move {
                if c.subscriber.subscribe(vec![channel]).await.is_ok() {
                    done.send_replace(true);
                }
            });
        }
    }

    /// A hub stopped on this node: unsubscribe when no running hub of that name is left.
    pub(crate) fn hub_stopped(&self, hub: &str) {
        let mut hubs = self.hubs.lock();
        if let Some(entry) = hubs.get_mut(hub) {
            entry.holders = entry.holders.saturating_sub(1);
            if entry.holders == 0 {
                hubs.remove(hub);
                self.subscriber.unsubscribe(vec![self.hub_channel(hub)]);
            }
        }
    }

    /// Wait until this node receives what other nodes publish for `hub` (its subscription is
    /// confirmed), at most `limit`; at once while the engine is down (nothing to wait for).
    pub(crate) async fn hub_ready(&self, hub: &str, limit: Duration) {
        let rx = {
            let hubs = self.hubs.lock();
            match hubs.get(hub) {
                Some(entry) => entry.subscribed.subscribe(),
                None => return,
            }
        };
        let mut rx = rx;
        let mut up = self.up.subscribe();
        let _ = tokio::time::timeout(limit, async {
            tokio::select! {
                _ = rx.wait_for(|s| *s) => {}
                _ = up.wait_for(|u| !*u) => {}
            }
        })
        .await;
    }

    // ---- publishing ----

    /// Publish a hub operation to the other nodes running `hub` (a hub message: dropped and
    /// counted when the outgoing queue is full).
    pub(crate) fn publish_message(&self, hub: &str, op: HubOp) {
        self.publish_bounded(self.hub_channel(hub), hub, op);
    }

    /// Send clients' service frames to hub-server connection `conn` of `node` (see
    /// [`HubOp::Relay`]); dropped and counted like a hub message when the queue is full.
    pub(crate) fn relay(&self, node: &str, hub: &str, conn: u64, frames: Vec<Bytes>) {
        self.publish_bounded(self.node_channel(node), hub, HubOp::Relay { conn, frames });
    }

    fn publish_bounded(&self, channel: String, hub: &str, op: HubOp) {
        let payload = self.envelope(Body::Hub {
            hub: hub.to_owned(),
            op,
        });
        let len = payload.len();
        let count = self.queued_messages.fetch_add(1, Ordering::Relaxed);
        let bytes = self.queued_bytes.fetch_add(len, Ordering::Relaxed);
        if count >= self.settings.max_outgoing_messages
            || bytes.saturating_add(len) > self.settings.max_outgoing_bytes
        {
            self.queued_messages.fetch_sub(1, Ordering::Relaxed);
            self.queued_bytes.fetch_sub(len, Ordering::Relaxed);
            Metrics::inc(&self.metrics.cluster_publish_dropped);
            return;
        }
        if self
            .outgoing
            .send(Outgoing::Message { channel, payload })
            .is_err()
        {
            self.queued_messages.fetch_sub(1, Ordering::Relaxed);
            self.queued_bytes.fetch_sub(len, Ordering::Relaxed);
        }
    }

    /// Claim a negotiated connection id for its one use across the cluster: `Ok(false)` when
    /// some node claimed it already. The claim is remembered for `ttl` (the token's lifetime).
    pub(crate) async fn claim_once(
        &self,
        connection_id: &str,
        ttl: Duration,
    ) -> Result<bool, Unreachable> {
        let key = format!("{}:used:{connection_id}", self.settings.prefix);
        let rx = self.batch(vec![Command::SetIfAbsent { key, ttl }]);
        match rx.await {
            Ok(Ok(replies)) => Ok(matches!(replies.first(), Some(Reply::Bool(true)))),
            Ok(Err(e)) => Err(Unreachable::Engine(e.0)),
            Err(_) => Err(Unreachable::Engine("the cluster node stopped".into())),
        }
    }

    /// The command that publishes a hub operation, for a [`batch`](Self::batch).
    pub(crate) fn publish_command(&self, hub: &str, op: HubOp) -> Command {
        Command::Publish {
            channel: self.hub_channel(hub),
            payload: self.envelope(Body::Hub {
                hub: hub.to_owned(),
                op,
            }),
        }
    }

    /// Run `commands` in order after everything queued before (and before everything queued
    /// after): membership writes with their announcement.
    pub(crate) fn batch(
        &self,
        commands: Vec<Command>,
    ) -> oneshot::Receiver<Result<Vec<Reply>, EngineError>> {
        let (reply, rx) = oneshot::channel();
        if let Err(mpsc::error::SendError(Outgoing::Batch { reply, .. })) =
            self.outgoing.send(Outgoing::Batch { commands, reply })
        {
            let _ = reply.send(Err(EngineError("the cluster node stopped".into())));
        }
        rx
    }

    /// Ask every node running `hub` (this one included, which answers with `local`) and combine
    /// the answers; `extra` commands run in the same batch, before the question is published,
    /// and `on_extra` turns their replies into one more answer.
    pub(crate) fn query(
        &self,
        hub: &str,
        query: Query,
        local: Answer,
        extra: Vec<Command>,
        on_extra: fn(&[Reply]) -> Option<Answer>,
    ) -> oneshot::Receiver<Result<Answer, Unreachable>> {
        let (reply, rx) = oneshot::channel();
        Metrics::inc(&self.metrics.cluster_requests);
        if !self.is_up() {
            Metrics::inc(&self.metrics.cluster_request_failures);
            let _ = reply.send(Err(Unreachable::Engine("not connected".into())));
            return rx;
        }
        let mut fold = match &local {
            Answer::Bool(_) => Fold::AnyTrue(false),
            Answer::Members(_) => Fold::Members(Vec::new()),
            Answer::Servers(_) => Fold::Servers(Vec::new()),
        };
        fold.add(local);
        let request = {
            let mut pending = self.pending.lock();
            if pending.waiting.len() >= self.settings.max_pending_requests {
                drop(pending);
                Metrics::inc(&self.metrics.cluster_request_failures);
                let _ = reply.send(Err(Unreachable::Busy));
                return rx;
            }
            pending.next += 1;
            let request = pending.next;
            pending.waiting.insert(
                request,
                Waiting {
                    fold,
                    expected: None,
                    answered: HashSet::new(),
                    deadline: Instant::now() + self.settings.request_timeout,
                    reply,
                },
            );
            request
        };
        let payload = self.envelope(Body::Hub {
            hub: hub.to_owned(),
            op: HubOp::Query { request, query },
        });
        let channel = self.hub_channel(hub);
        if self
            .outgoing
            .send(Outgoing::Query {
                request,
                channel,
                payload,
                extra,
                on_extra,
            })
            .is_err()
        {
            self.fail_request(
                request,
                Unreachable::Engine("the cluster node stopped".into()),
            );
        }
        rx
    }

    /// Answer another node's question.
    pub(crate) fn answer(&self, node: &str, request: u64, answer: Answer) {
        let payload = self.envelope(Body::Reply { request, answer });
        let channel = self.node_channel(node);
        let _ = self.outgoing.send(Outgoing::Control { channel, payload });
    }

    fn fail_request(&self, request: u64, why: Unreachable) {
        let waiting = self.pending.lock().waiting.remove(&request);
        if let Some(w) = waiting {
            Metrics::inc(&self.metrics.cluster_request_failures);
            let _ = w.reply.send(Err(why));
        }
    }

    /// Record one node's answer (or the number of nodes that will answer) and complete the
    /// question when every answer is in.
    fn on_answer(
        &self,
        request: u64,
        node: Option<&str>,
        answer: Option<Answer>,
        expected: Option<u64>,
    ) {
        let mut pending = self.pending.lock();
        let Some(w) = pending.waiting.get_mut(&request) else {
            return;
        };
        if let Some(node) = node
            && !w.answered.insert(node.to_owned())
        {
            return;
        }
        if let Some(answer) = answer {
            w.fold.add(answer);
        }
        if expected.is_some() {
            w.expected = expected;
        }
        if w.done()
            && let Some(w) = pending.waiting.remove(&request)
        {
            let _ = w.reply.send(Ok(w.fold.finish()));
        }
    }

    /// A node is gone: questions still waiting expect one answer less from it (its
    /// connections are gone, so it could only have said no).
    fn node_gone(&self, node: &str) {
        if self.nodes.lock().remove(node).is_none() {
            return;
        }
        Metrics::inc(&self.metrics.cluster_nodes_lost);
        Metrics::set(&self.metrics.cluster_nodes, self.nodes.lock().len() as u64);
        tracing::warn!(node, "cluster node gone");
        if let Some(hook) = self.on_node_gone.get() {
            hook(node);
        }
        let mut pending = self.pending.lock();
        let mut finished = Vec::new();
        for (id, w) in &mut pending.waiting {
            if !w.answered.contains(node) {
                if let Some(n) = w.expected.as_mut() {
                    *n = n.saturating_sub(1);
                }
                if w.done() {
                    finished.push(*id);
                }
            }
        }
        for id in finished {
            if let Some(w) = pending.waiting.remove(&id) {
                let _ = w.reply.send(Ok(w.fold.finish()));
            }
        }
    }

    /// Tell the other nodes this one is stopping, and wait (briefly) until it is published.
    pub async fn leave(&self) {
        let payload = self.envelope(Body::Leaving);
        let rx = self.batch(vec![Command::Publish {
            channel: self.ctl_channel(),
            payload,
        }]);
        let _ = tokio::time::timeout(Duration::from_secs(1), rx).await;
    }

    fn set_up(&self, up: bool) {
        let was = self.up.send_replace(up);
        Metrics::set(&self.metrics.cluster_engine_up, u64::from(up));
        if was && !up {
            Metrics::inc(&self.metrics.cluster_engine_lost);
            tracing::warn!(engine = %self.engine.describe(), "cluster engine connection lost: delivering locally only");
            // Answers published while the subscription is down are lost: fail the waits now.
            let waiting: Vec<Waiting> = self
                .pending
                .lock()
                .waiting
                .drain()
                .map(|(_, w)| w)
                .collect();
            for w in waiting {
                Metrics::inc(&self.metrics.cluster_request_failures);
                let _ = w
                    .reply
                    .send(Err(Unreachable::Engine("connection lost".into())));
            }
        } else if !was && up {
            tracing::info!(engine = %self.engine.describe(), node = %self.settings.node_id, "cluster engine connected");
            // `Up` means subscribed to every channel asked for, including hubs whose own
            // subscribe failed while the engine was unreachable.
            for entry in self.hubs.lock().values() {
                entry.subscribed.send_replace(true);
            }
            // Nodes could not be heard while down: give them a full timeout from now.
            let now = Instant::now();
            for seen in self.nodes.lock().values_mut() {
                *seen = now;
            }
        }
    }

    fn on_event(&self, event: SubscriberEvent) {
        match event {
            SubscriberEvent::Up => self.set_up(true),
            SubscriberEvent::Down => self.set_up(false),
            SubscriberEvent::Message { channel, payload } => self.on_message(&channel, &payload),
        }
    }

    fn on_message(&self, channel: &str, payload: &[u8]) {
        let envelope = match wire::decode(payload) {
            Ok(e) => e,
            Err(e) => {
                Metrics::inc(&self.metrics.cluster_malformed);
                tracing::debug!(channel, error = %e, "cluster message dropped");
                return;
            }
        };
        let own = envelope.origin == self.settings.node_id;
        if !own {
            Metrics::inc(&self.metrics.cluster_received);
        }
        match envelope.body {
            Body::Heartbeat if !own => {
                let new = self
                    .nodes
                    .lock()
                    .insert(envelope.origin.clone(), Instant::now())
                    .is_none();
                if new {
                    Metrics::set(&self.metrics.cluster_nodes, self.nodes.lock().len() as u64);
                    tracing::info!(node = %envelope.origin, "cluster node joined");
                }
            }
            Body::Leaving if !own => self.node_gone(&envelope.origin),
            Body::Heartbeat | Body::Leaving => {}
            Body::Reply { request, answer } => {
                self.on_answer(request, Some(&envelope.origin), Some(answer), None);
            }
            Body::Hub { hub, op } => {
                if own {
                    // Our own question came back: this node answered it already (the local
                    // answer); count it as this node's answer.
                    if let HubOp::Query { request, .. } = op {
                        self.on_answer(request, Some(&envelope.origin), None, None);
                    }
                    return;
                }
                self.to_hub(&hub, envelope.origin, op);
            }
        }
    }

    /// Hand a remote operation to the local hub (never waiting in the reader).
    fn to_hub(&self, hub: &str, origin: String, op: HubOp) {
        let handle = self.lookup.get().and_then(|lookup| lookup(hub));
        let Some(handle) = handle else {
            // The hub does not run here, so none of its connections are here.
            if let HubOp::Query { request, query } = op {
                self.answer(&origin, request, empty_answer(&query));
            }
            return;
        };
        let droppable = matches!(
            op,
            HubOp::SendAll { .. }
                | HubOp::SendConnection { .. }
                | HubOp::SendUsers { .. }
                | HubOp::SendGroup { .. }
                | HubOp::SendGroups { .. }
                | HubOp::ConnectionData { .. }
                | HubOp::Relay { .. }
        );
        if let Err(cmd) = handle.remote(origin, op) {
            if droppable {
                Metrics::inc(&self.metrics.cluster_inbound_dropped);
            } else {
                tokio::spawn(async move {
                    handle.remote_wait(cmd).await;
                });
            }
        }
    }
}

/// What a node without the connection answers.
pub(crate) fn empty_answer(query: &Query) -> Answer {
    match query {
        Query::GroupMembers { .. } => Answer::Members(Vec::new()),
        Query::Servers => Answer::Servers(Vec::new()),
        _ => Answer::Bool(false),
    }
}

mod tasks;
