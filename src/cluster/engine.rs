//! The engine under a cluster: publish/subscribe plus a few shared keys, behind one trait.
//!
//! Switchboard's cluster needs two things from its engine: pub/sub channels (fan-out between
//! nodes, requests and replies, heartbeats) and a little shared state with expiry (user-group
//! memberships, single-use connection tokens). [`Engine`] names exactly these as a small command
//! set that Redis runs natively ([`super::redis::RedisEngine`]) and that an in-process map
//! implements for unit tests ([`super::local::LocalEngine`]: several nodes in one process, no
//! Redis). Another engine (NATS with its key-value store) would implement the same trait.
//!
//! Commands are executed in batches: a batch is one round trip (a Redis pipeline) and runs in
//! order, so a node that writes a key and then publishes in one batch knows every subscriber
//! that sees the message can read the key.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;

/// A boxed future, as the object-safe [`Engine`] returns.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One command of a batch. Keys and channels are full names (the cluster adds its prefix).
#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    /// `PUBLISH channel payload`: answers [`Reply::Count`], the subscribers that received it.
    Publish {
        /// Channel name.
        channel: String,
        /// Message.
        payload: Bytes,
    },
    /// `SET key 1 NX PX ttl`: answers [`Reply::Bool`], whether the key was absent (and is now
    /// set).
    SetIfAbsent {
        /// Key.
        key: String,
        /// Expiry.
        ttl: Duration,
    },
    /// `ZADD key score member`, then `PEXPIREAT key expire_at_ms` when that is later than the
    /// key's expiry (the key lives as long as its longest entry): answers [`Reply::Done`].
    SortedAdd {
        /// Key.
        key: String,
        /// Member.
        member: String,
        /// Score (an expiry or update time, in ms since the Unix epoch).
        score: i64,
        /// When the whole key may expire, in ms since the Unix epoch.
        expire_at_ms: i64,
    },
    /// `ZREMRANGEBYRANK key 0 -(keep+1)`: keep the `keep` highest-scored members; answers
    /// [`Reply::Done`].
    SortedKeepHighest {
        /// Key.
        key: String,
        /// Members to keep.
        keep: usize,
    },
    /// `ZREM key member`: answers [`Reply::Done`].
    SortedRemove {
        /// Key.
        key: String,
        /// Member.
        member: String,
    },
    /// `ZRANGEBYSCORE key min +inf WITHSCORES`: answers [`Reply::Members`] in score order.
    SortedRangeFrom {
        /// Key.
        key: String,
        /// Lowest score included.
        min: i64,
    },
    /// `ZSCORE key member`: answers [`Reply::Score`].
    SortedScore {
        /// Key.
        key: String,
        /// Member.
        member: String,
    },
    /// `DEL key`: answers [`Reply::Done`].
    Delete {
        /// Key.
        key: String,
    },
}

/// The answer to one [`Command`], in batch order.
#[derive(Clone, Debug, PartialEq)]
pub enum Reply {
    /// The command has no answer.
    Done,
    /// A count.
    Count(u64),
    /// Yes or no.
    Bool(bool),
    /// A score, if the member exists.
    Score(Option<i64>),
    /// Members with scores.
    Members(Vec<(String, i64)>),
}

/// The engine cannot be reached (or answered with an error): the batch may or may not have run.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("cluster engine unavailable: {0}")]
pub struct EngineError(pub String);

/// What a subscriber reports, in order.
#[derive(Clone, Debug, PartialEq)]
pub enum SubscriberEvent {
    /// A message on a subscribed channel.
    Message {
        /// Channel name.
        channel: String,
        /// Message.
        payload: Bytes,
    },
    /// The subscription connection is lost: messages published from now until [`Self::Up`]
    /// are not received.
    Down,
    /// Connected and subscribed to every channel asked for (first connect, or after
    /// [`Self::Down`]).
    Up,
}

/// Commands to a running subscriber (see [`Engine::subscriber`]).
pub trait Subscriber: Send + Sync + fmt::Debug {
    /// Subscribe to `channels`; resolves once the engine confirmed the subscription (so that a
    /// message published afterwards is received), or with an error while the engine is
    /// unreachable (the subscription is then made when it returns).
    fn subscribe(&self, channels: Vec<String>) -> BoxFuture<'_, Result<(), EngineError>>;

    /// Unsubscribe from `channels` (not waiting for the engine).
    fn unsubscribe(&self, channels: Vec<String>);
}

/// An engine: batches of commands, and one subscriber per node.
pub trait Engine: Send + Sync + fmt::Debug + 'static {
    /// Run `batch` in order in one round trip; one reply per command.
    fn execute(&self, batch: Vec<Command>) -> BoxFuture<'_, Result<Vec<Reply>, EngineError>>;

    /// Start a subscriber that reports to `events` (waiting for room there: the node reads it
    /// without blocking). It reconnects by itself and resubscribes every channel it holds,
    /// reporting [`SubscriberEvent::Down`] and [`SubscriberEvent::Up`]. It stops when `events`
    /// is closed.
    fn subscriber(&self, events: mpsc::Sender<SubscriberEvent>) -> Box<dyn Subscriber>;

    /// A short description for logs (`redis://host:port/db`, `in-process`), without secrets.
    fn describe(&self) -> String;
}
