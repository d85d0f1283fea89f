//! The [`Engine`] on Redis: each batch is one pipeline on a shared multiplexed connection, and
//! each subscriber is a task that owns a pub/sub connection of its own.
//!
//! This module owns the mapping of [`Command`] to Redis commands and of their answers to
//! [`Reply`], and the reconnection policy. It knows nothing of hubs, groups or nodes.
//!
//! **Reaching Redis.** [`RedisEngine::connect`] parses the URL (a malformed one is an error) and
//! tries one connection, but a Redis that is down at start is not an error: the engine connects
//! lazily. While Redis is unreachable every [`Engine::execute`] tries a new connection and fails
//! with [`EngineError`] within [`RedisEngineConfig::timeout`]; it never hangs. A connection that
//! failed (I/O error, or no answer in time, as on a half-open TCP connection) is dropped and the
//! next batch opens a new one, so after Redis restarts the first batch may fail and the next ones
//! succeed. A failed batch is not retried: it may have run.
//!
//! **Subscribing.** A subscriber keeps the set of channels asked for and reconnects by itself
//! (backoff from [`RedisEngineConfig::reconnect_min`] doubling to
//! [`RedisEngineConfig::reconnect_max`], with jitter), subscribing the whole set again. Its
//! events alternate [`SubscriberEvent::Up`], [`SubscriberEvent::Down`], `Up`… starting with `Up`
//! once it is first connected: no `Down` is reported while it has never been up. It pings its
//! connection every [`RedisEngineConfig::ping_interval`] and a ping unanswered within
//! [`RedisEngineConfig::ping_timeout`] counts as a lost connection (a frozen server, or a TCP
//! connection that stays half-open). A message is forwarded only while its channel is in the set:
//! after [`Subscriber::unsubscribe`] returns, nothing more arrives on those channels.
//!
//! Redis 7.0 or later is needed (`PEXPIREAT … NX` and `GT`).

use std::collections::HashSet;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt as _;
use parking_lot::Mutex;
use redis::aio::{MultiplexedConnection, PubSubSink, PubSubStream};
use redis::{AsyncConnectionConfig, Client, ConnectionAddr, Pipeline, RedisError, Value};
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant, MissedTickBehavior, timeout, timeout_at};

use super::engine::{BoxFuture, Command, Engine, EngineError, Reply, Subscriber, SubscriberEvent};

/// Bound on one batch, one subscription request and one connection attempt: long enough for a
/// loaded Redis across a data centre, short enough that a node notices an outage promptly.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// How often a subscriber pings its connection: pub/sub connections are otherwise silent while
/// no message flows, and a dead one would go unnoticed.
pub const DEFAULT_PING_INTERVAL: Duration = Duration::from_secs(1);

/// How long a ping may go unanswered before the connection counts as lost: three intervals, so
/// that one slow answer from a busy server is not an outage.
pub const DEFAULT_PING_TIMEOUT: Duration = Duration::from_secs(3);

/// First delay before a subscriber reconnects: short, as most losses are a restart or a
/// failover that is over quickly.
pub const DEFAULT_RECONNECT_MIN: Duration = Duration::from_millis(100);

/// Longest delay between a subscriber's reconnection attempts: a node must come back within
/// seconds of Redis, and one attempt every two seconds per node costs Redis nothing.
pub const DEFAULT_RECONNECT_MAX: Duration = Duration::from_secs(2);

/// Channels per `SUBSCRIBE` or `UNSUBSCRIBE`: keeps each command and its confirmations small
/// when a node (re)subscribes many channels at once.
const SUBSCRIBE_CHUNK: usize = 1000;

/// Settings of a [`RedisEngine`]; [`Default`] gives the `DEFAULT_*` constants.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RedisEngineConfig {
    /// Bound on each batch (connecting included), subscription request and connection attempt.
    pub timeout: Duration,
    /// How often a subscriber pings its connection.
    pub ping_interval: Duration,
    /// How long a subscriber's ping may go unanswered before its connection counts as lost.
    pub ping_timeout: Duration,
    /// First delay before a subscriber reconnects (then doubling, with jitter).
    pub reconnect_min: Duration,
    /// Longest delay between a subscriber's reconnection attempts.
    pub reconnect_max: Duration,
}

impl Default for RedisEngineConfig {
    fn default() -> Self {
        Self {
            timeout: DEFAULT_TIMEOUT,
            ping_interval: DEFAULT_PING_INTERVAL,
            ping_timeout: DEFAULT_PING_TIMEOUT,
            reconnect_min: DEFAULT_RECONNECT_MIN,
            reconnect_max: DEFAULT_RECONNECT_MAX,
        }
    }
}

/// The engine on a Redis server; clones share its connection.
#[derive(Clone)]
pub struct RedisEngine {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client,
    description: String,
    config: RedisEngineConfig,
    connection_config: AsyncConnectionConfig,
    /// The connection batches share, opened on demand; the async lock makes concurrent batches
    /// wait for one connection attempt rather than each opening its own. Shared with the
    /// subscribers: when one loses its connection (Redis restarted or unreachable), the batches'
    /// connection is dropped too, so that the first batch after the subscriber is back does not
    /// fail on a connection the server closed long ago.
    slot: Arc<tokio::sync::Mutex<Slot>>,
}

#[derive(Default)]
struct Slot {
    connection: Option<MultiplexedConnection>,
    /// Counts the connections opened, so that a batch drops only the one it saw fail.
    generation: u64,
}

impl fmt::Debug for RedisEngine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisEngine")
            .field("url", &self.inner.description)
            .finish_non_exhaustive()
    }
}

impl RedisEngine {
    /// Connect to `url` (`redis://HOST:PORT[/DB]`, `rediss://…` for TLS, `redis+unix:///PATH`
    /// or `unix:///PATH`, with `?db=N`) with the default settings. See
    /// [`Self::connect_with`].
    pub async fn connect(url: &str) -> Result<Self, EngineError> {
        Self::connect_with(url, RedisEngineConfig::default()).await
    }

    /// Connect to `url` with `config`. Fails only when the URL is malformed; a Redis that cannot
    /// be reached is logged and connected to lazily (the module documentation says how).
    pub async fn connect_with(url: &str, config: RedisEngineConfig) -> Result<Self, EngineError> {
        let client = Client::open(url).map_err(|e| {
            EngineError(format!(
                "invalid Redis URL (expected redis://HOST:PORT[/DB], rediss://… or \
                 redis+unix:///PATH): {e}"
            ))
        })?;
        if let ConnectionAddr::Tcp(host, _) | ConnectionAddr::TcpTls { host, .. } =
            client.get_connection_info().addr()
            && host.is_empty()
        {
            return Err(EngineError(
                "invalid Redis URL: no host (expected redis://HOST:PORT[/DB])".into(),
            ));
        }
        let connection_config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(config.timeout))
            .set_response_timeout(Some(config.timeout));
        let engine = Self {
            inner: Arc::new(Inner {
                client,
                description: redact(url),
                config,
                connection_config,
                slot: Arc::new(tokio::sync::Mutex::new(Slot::default())),
            }),
        };
        let deadline = Instant::now() + engine.inner.config.timeout;
        match timeout_at(deadline, engine.connection()).await {
            Ok(Ok(_)) => tracing::info!(url = %engine.inner.description, "connected to Redis"),
            Ok(Err(e)) => tracing::warn!(
                url = %engine.inner.description, error = %e,
                "Redis unreachable at start: connecting on first use"
            ),
            Err(_) => tracing::warn!(
                url = %engine.inner.description,
                "Redis did not answer at start: connecting on first use"
            ),
        }
        Ok(engine)
    }

    /// The shared connection, opened if there is none.
    async fn connection(&self) -> Result<(u64, MultiplexedConnection), RedisError> {
        let mut slot = self.inner.slot.lock().await;
        if let Some(connection) = &slot.connection {
            return Ok((slot.generation, connection.clone()));
        }
        let connection = self
            .inner
            .client
            .get_multiplexed_async_connection_with_config(&self.inner.connection_config)
            .await?;
        slot.generation += 1;
        slot.connection = Some(connection.clone());
        Ok((slot.generation, connection))
    }

    /// Drop connection `generation` (it failed) so that the next batch opens a new one.
    async fn forget(&self, generation: u64) {
        let mut slot = self.inner.slot.lock().await;
        if slot.generation == generation {
            slot.connection = None;
        }
    }

    fn error(&self, what: impl fmt::Display) -> EngineError {
        EngineError(format!("{}: {what}", self.inner.description))
    }

    async fn run(&self, batch: &[Command]) -> Result<Vec<Reply>, EngineError> {
        let deadline = Instant::now() + self.inner.config.timeout;
        let late = || {
            self.error(format_args!(
                "no answer within {:?}",
                self.inner.config.timeout
            ))
        };
        let (generation, mut connection) = match timeout_at(deadline, self.connection()).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => return Err(self.error(format_args!("cannot connect: {e}"))),
            Err(_) => return Err(late()),
        };
        let pipe = pipeline(batch);
        let values =
            match timeout_at(deadline, pipe.query_async::<Vec<Value>>(&mut connection)).await {
                Ok(Ok(values)) => values,
                Ok(Err(e)) => {
                    if e.is_unrecoverable_error() || e.is_io_error() || e.is_timeout() {
                        self.forget(generation).await;
                    }
                    return Err(self.error(e));
                }
                Err(_) => {
                    // The connection may be half-open: every later batch on it would time out too.
                    self.forget(generation).await;
                    return Err(late());
                }
            };
        if values.len() != batch.len() {
            return Err(self.error(format_args!(
                "{} answers to {} commands",
                values.len(),
                batch.len()
            )));
        }
        batch
            .iter()
            .zip(values)
            .map(|(command, value)| reply(command, value).map_err(|e| self.error(e)))
            .collect()
    }
}

impl Engine for RedisEngine {
    fn execute(&self, batch: Vec<Command>) -> BoxFuture<'_, Result<Vec<Reply>, EngineError>> {
        Box::pin(async move {
            if batch.is_empty() {
                return Ok(Vec::new());
            }
            self.run(&batch).await
        })
    }

    fn subscriber(&self, events: mpsc::Sender<SubscriberEvent>) -> Box<dyn Subscriber> {
        let wanted = Arc::new(Mutex::new(HashSet::new()));
        // Unbounded, as the trait makes `unsubscribe` synchronous: requests come from the node's
        // own subscription changes (never one per message) and the task drains them in order.
        let (control_tx, control_rx) = mpsc::unbounded_channel();
        let link = Link {
            client: self.inner.client.clone(),
            description: self.inner.description.clone(),
            config: self.inner.config.clone(),
            batches: Arc::clone(&self.inner.slot),
            wanted: Arc::clone(&wanted),
        };
        tokio::spawn(run_subscriber(link, control_rx, events));
        Box::new(RedisSubscriber {
            control: control_tx,
            wanted,
        })
    }

    fn describe(&self) -> String {
        self.inner.description.clone()
    }
}

/// The batch as one pipeline: one answer per command (helper commands are ignored).
fn pipeline(batch: &[Command]) -> Pipeline {
    let mut pipe = redis::pipe();
    for command in batch {
        match command {
            Command::Publish { channel, payload } => {
                pipe.cmd("PUBLISH").arg(channel).arg(payload.as_ref());
            }
            Command::SetIfAbsent { key, ttl } => {
                let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
                pipe.cmd("SET").arg(key).arg(1).arg("NX").arg("PX").arg(ms);
            }
            Command::SortedAdd {
                key,
                member,
                score,
                expire_at_ms,
            } => {
                pipe.cmd("ZADD").arg(key).arg(*score).arg(member);
                // NX sets the expiry of a new key (GT alone treats "no expiry" as infinite and
                // would never set it); GT only ever makes it later.
                pipe.cmd("PEXPIREAT")
                    .arg(key)
                    .arg(*expire_at_ms)
                    .arg("NX")
                    .ignore();
                pipe.cmd("PEXPIREAT")
                    .arg(key)
                    .arg(*expire_at_ms)
                    .arg("GT")
                    .ignore();
            }
            Command::SortedKeepHighest { key, keep } => {
                let stop = i64::try_from(*keep).map_or(i64::MIN, |k| -1 - k);
                pipe.cmd("ZREMRANGEBYRANK").arg(key).arg(0).arg(stop);
            }
            Command::SortedRemove { key, member } => {
                pipe.cmd("ZREM").arg(key).arg(member);
            }
            Command::SortedRangeFrom { key, min } => {
                pipe.cmd("ZRANGEBYSCORE")
                    .arg(key)
                    .arg(*min)
                    .arg("+inf")
                    .arg("WITHSCORES");
            }
            Command::SortedScore { key, member } => {
                pipe.cmd("ZSCORE").arg(key).arg(member);
            }
            Command::Delete { key } => {
                pipe.cmd("DEL").arg(key);
            }
        }
    }
    pipe
}

/// The [`Reply`] to `command` from Redis's answer (RESP2 or RESP3 shapes).
fn reply(command: &Command, value: Value) -> Result<Reply, String> {
    let unexpected = |name: &str, value: &Value| format!("unexpected answer to {name}: {value:?}");
    match command {
        Command::Publish { .. } => match value {
            Value::Int(n) => Ok(Reply::Count(u64::try_from(n).unwrap_or(0))),
            other => Err(unexpected("PUBLISH", &other)),
        },
        Command::SetIfAbsent { .. } => match value {
            Value::Okay => Ok(Reply::Bool(true)),
            Value::SimpleString(s) if s.eq_ignore_ascii_case("OK") => Ok(Reply::Bool(true)),
            Value::Nil => Ok(Reply::Bool(false)),
            other => Err(unexpected("SET NX", &other)),
        },
        Command::SortedAdd { .. }
        | Command::SortedKeepHighest { .. }
        | Command::SortedRemove { .. }
        | Command::Delete { .. } => Ok(Reply::Done),
        Command::SortedRangeFrom { .. } => {
            let Value::Array(items) = value else {
                return Err(unexpected("ZRANGEBYSCORE", &value));
            };
            members(items).ok_or_else(|| "unexpected answer to ZRANGEBYSCORE".to_owned())
        }
        Command::SortedScore { .. } => match value {
            Value::Nil => Ok(Reply::Score(None)),
            other => score(&other)
                .map(|s| Reply::Score(Some(s)))
                .ok_or_else(|| unexpected("ZSCORE", &other)),
        },
    }
}

/// `ZRANGEBYSCORE … WITHSCORES`: a flat list (RESP2) or a list of pairs (RESP3).
fn members(items: Vec<Value>) -> Option<Reply> {
    let mut out = Vec::with_capacity(items.len() / 2);
    if items.iter().all(|v| matches!(v, Value::Array(_))) {
        for item in items {
            let Value::Array(pair) = item else {
                return None;
            };
            let [member, s] = <[Value; 2]>::try_from(pair).ok()?;
            out.push((text(member)?, score(&s)?));
        }
    } else {
        let mut items = items.into_iter();
        while let Some(member) = items.next() {
            let s = items.next()?;
            out.push((text(member)?, score(&s)?));
        }
    }
    Some(Reply::Members(out))
}

fn text(value: Value) -> Option<String> {
    match value {
        Value::BulkString(bytes) => String::from_utf8(bytes).ok(),
        Value::SimpleString(s) | Value::VerbatimString { text: s, .. } => Some(s),
        _ => None,
    }
}

/// A score as an integer: Redis keeps doubles, which hold the cluster's millisecond times
/// exactly.
fn score(value: &Value) -> Option<i64> {
    match value {
        Value::Int(n) => Some(*n),
        Value::Double(d) => Some(*d as i64),
        Value::BulkString(bytes) => {
            let s = std::str::from_utf8(bytes).ok()?;
            s.parse::<i64>()
                .ok()
                .or_else(|| s.parse::<f64>().ok().map(|d| d as i64))
        }
        Value::SimpleString(s) => s.parse::<i64>().ok(),
        _ => None,
    }
}

/// `url` without its password (userinfo or `pass=` query parameter).
fn redact(url: &str) -> String {
    let Some(mut parsed) = redis::parse_redis_url(url) else {
        return "redis (unparsable URL)".to_owned();
    };
    if parsed.password().is_some() {
        // Only fails for URLs that cannot have a password, which this one has.
        let _ = parsed.set_password(None);
    }
    if parsed.query_pairs().any(|(k, _)| k == "pass") {
        let kept: Vec<(String, String)> = parsed
            .query_pairs()
            .filter(|(k, _)| k != "pass")
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        if kept.is_empty() {
            parsed.set_query(None);
        } else {
            parsed.query_pairs_mut().clear().extend_pairs(kept);
        }
    }
    parsed.to_string()
}

/// A request to a subscriber task.
#[derive(Debug)]
enum Control {
    Subscribe {
        channels: Vec<String>,
        done: oneshot::Sender<Result<(), EngineError>>,
    },
    Unsubscribe {
        channels: Vec<String>,
    },
}

/// The front of a subscriber task.
#[derive(Debug)]
struct RedisSubscriber {
    control: mpsc::UnboundedSender<Control>,
    wanted: Arc<Mutex<HashSet<String>>>,
}

impl Subscriber for RedisSubscriber {
    fn subscribe(&self, channels: Vec<String>) -> BoxFuture<'_, Result<(), EngineError>> {
        self.wanted.lock().extend(channels.iter().cloned());
        let (done, answer) = oneshot::channel();
        let sent = self.control.send(Control::Subscribe { channels, done });
        Box::pin(async move {
            let stopped = || EngineError("subscriber stopped".into());
            if sent.is_err() {
                return Err(stopped());
            }
            answer.await.unwrap_or_else(|_| Err(stopped()))
        })
    }

    fn unsubscribe(&self, channels: Vec<String>) {
        {
            let mut wanted = self.wanted.lock();
            for channel in &channels {
                wanted.remove(channel);
            }
        }
        // A stopped task has nothing left to unsubscribe.
        let _ = self.control.send(Control::Unsubscribe { channels });
    }
}

/// What a subscriber task needs to (re)connect.
struct Link {
    client: Client,
    description: String,
    config: RedisEngineConfig,
    /// The batches' connection (see [`Inner::slot`]).
    batches: Arc<tokio::sync::Mutex<Slot>>,
    /// The channels asked for, shared with the front: changed there at once, so that messages
    /// of an unsubscribed channel stop before Redis confirms.
    wanted: Arc<Mutex<HashSet<String>>>,
}

/// Why a connected subscriber stopped.
enum End {
    /// `events` is closed: the task ends.
    Closed,
    /// The connection is lost: reconnect.
    Lost(String),
}

type PingFuture = Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;

impl Link {
    fn timed_out(&self, what: &str) -> String {
        format!("{what}: no answer within {:?}", self.config.timeout)
    }

    /// A pub/sub connection subscribed to every channel wanted.
    async fn open(&self) -> Result<(PubSubSink, PubSubStream), String> {
        let pubsub = match timeout(self.config.timeout, self.client.get_async_pubsub()).await {
            Ok(Ok(pubsub)) => pubsub,
            Ok(Err(e)) => return Err(format!("cannot connect: {e}")),
            Err(_) => return Err(self.timed_out("cannot connect")),
        };
        let (mut sink, stream) = pubsub.split();
        let channels: Vec<String> = self.wanted.lock().iter().cloned().collect();
        self.send(&mut sink, "SUBSCRIBE", &channels).await?;
        Ok((sink, stream))
    }

    /// `SUBSCRIBE` or `UNSUBSCRIBE` `channels` in chunks, each confirmed in time.
    async fn send(
        &self,
        sink: &mut PubSubSink,
        verb: &str,
        channels: &[String],
    ) -> Result<(), String> {
        for chunk in channels.chunks(SUBSCRIBE_CHUNK) {
            let sent = if verb == "SUBSCRIBE" {
                timeout(self.config.timeout, sink.subscribe(chunk)).await
            } else {
                timeout(self.config.timeout, sink.unsubscribe(chunk)).await
            };
            match sent {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(format!("{verb} failed: {e}")),
                Err(_) => return Err(self.timed_out(verb)),
            }
        }
        Ok(())
    }

    /// Run `control` on the connection; `Err` means the connection is lost (a refused
    /// `SUBSCRIBE`, an ACL denial say, is handled the same way: reconnect and try again).
    async fn control(&self, sink: &mut PubSubSink, control: Control) -> Result<(), String> {
        match control {
            Control::Subscribe { channels, done } => {
                let result = self.send(sink, "SUBSCRIBE", &channels).await;
                // The caller may have stopped waiting.
                let _ = done.send(result.clone().map_err(|e| self.engine_error(&e)));
                result
            }
            Control::Unsubscribe { channels } => {
                // Only what is still unwanted: the channel may have been asked for again since.
                let gone: Vec<String> = {
                    let wanted = self.wanted.lock();
                    channels
                        .into_iter()
                        .filter(|c| !wanted.contains(c))
                        .collect()
                };
                self.send(sink, "UNSUBSCRIBE", &gone).await
            }
        }
    }

    fn engine_error(&self, what: &str) -> EngineError {
        EngineError(format!("{}: {what}", self.description))
    }

    /// Forward messages and serve requests until the connection is lost or `events` closes.
    async fn connected(
        &self,
        mut sink: PubSubSink,
        mut stream: PubSubStream,
        control: &mut mpsc::UnboundedReceiver<Control>,
        control_open: &mut bool,
        events: &mpsc::Sender<SubscriberEvent>,
    ) -> End {
        let interval = self.config.ping_interval.max(Duration::from_millis(1));
        let mut ticks = tokio::time::interval_at(Instant::now() + interval, interval);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut ping: Option<PingFuture> = None;
        loop {
            tokio::select! {
                biased;
                () = events.closed() => return End::Closed,
                result = wait(&mut ping), if ping.is_some() => {
                    ping = None;
                    if let Err(e) = result {
                        return End::Lost(e);
                    }
                }
                request = control.recv(), if *control_open => match request {
                    None => *control_open = false,
                    Some(request) => {
                        if let Err(e) = self.control(&mut sink, request).await {
                            return End::Lost(e);
                        }
                    }
                },
                message = stream.next() => {
                    let Some(message) = message else {
                        return End::Lost("connection closed".into());
                    };
                    let Ok(channel) = message.get_channel::<String>() else {
                        continue;
                    };
                    if !self.wanted.lock().contains(&channel) {
                        continue;
                    }
                    let payload = Bytes::copy_from_slice(message.get_payload_bytes());
                    if events.send(SubscriberEvent::Message { channel, payload }).await.is_err() {
                        return End::Closed;
                    }
                }
                _ = ticks.tick(), if ping.is_none() => {
                    let mut pinger = sink.clone();
                    let deadline = self.config.ping_timeout;
                    ping = Some(Box::pin(async move {
                        match timeout(deadline, pinger.ping::<Value>()).await {
                            Ok(Ok(_)) => Ok(()),
                            Ok(Err(e)) => Err(format!("PING failed: {e}")),
                            Err(_) => Err(format!("no answer to PING within {deadline:?}")),
                        }
                    }));
                }
            }
        }
    }
}

/// The pending ping's outcome (never resolves without one).
async fn wait(ping: &mut Option<PingFuture>) -> Result<(), String> {
    match ping {
        Some(ping) => ping.await,
        None => std::future::pending().await,
    }
}

/// `delay` scaled by a random factor in [0.5, 1): reconnecting nodes spread out.
fn jitter(delay: Duration) -> Duration {
    let r = getrandom::u32().unwrap_or(0) % 1000;
    delay.mul_f64(0.5 + f64::from(r) / 2000.0)
}

/// The subscriber task: connect, serve, reconnect with backoff, until `events` closes.
async fn run_subscriber(
    link: Link,
    mut control: mpsc::UnboundedReceiver<Control>,
    events: mpsc::Sender<SubscriberEvent>,
) {
    let mut control_open = true;
    let mut delay = link.config.reconnect_min;
    let mut failures = 0u32;
    loop {
        // Connect; requests arriving meanwhile wait for the outcome.
        let mut deferred = Vec::new();
        let opened = {
            let attempt = link.open();
            tokio::pin!(attempt);
            loop {
                tokio::select! {
                    biased;
                    () = events.closed() => return,
                    opened = &mut attempt => break opened,
                    request = control.recv(), if control_open => match request {
                        None => control_open = false,
                        Some(request) => deferred.push(request),
                    },
                }
            }
        };
        let connected = match opened {
            Ok((mut sink, stream)) => {
                let mut result = Ok(());
                for request in deferred.drain(..) {
                    match &result {
                        Ok(()) => result = link.control(&mut sink, request).await,
                        Err(e) => fail(request, &link.engine_error(e)),
                    }
                }
                result.map(|()| (sink, stream))
            }
            Err(e) => {
                let error = link.engine_error(&e);
                for request in deferred.drain(..) {
                    fail(request, &error);
                }
                Err(e)
            }
        };
        match connected {
            Ok((sink, stream)) => {
                tracing::info!(url = %link.description, "Redis subscriber up");
                if events.send(SubscriberEvent::Up).await.is_err() {
                    return;
                }
                failures = 0;
                delay = link.config.reconnect_min;
                match link
                    .connected(sink, stream, &mut control, &mut control_open, &events)
                    .await
                {
                    End::Closed => return,
                    End::Lost(e) => {
                        tracing::warn!(url = %link.description, error = %e, "Redis subscriber down");
                        link.batches.lock().await.connection = None;
                        if events.send(SubscriberEvent::Down).await.is_err() {
                            return;
                        }
                    }
                }
            }
            Err(e) => {
                failures = failures.saturating_add(1);
                if failures == 1 {
                    tracing::warn!(url = %link.description, error = %e, "Redis subscriber cannot connect; retrying");
                } else {
                    tracing::debug!(url = %link.description, error = %e, failures, "Redis subscriber cannot connect; retrying");
                }
            }
        }
        // Back off; requests meanwhile fail at once (the set keeps their channels).
        let sleep = tokio::time::sleep(jitter(delay));
        tokio::pin!(sleep);
        delay = (delay * 2).min(link.config.reconnect_max.max(link.config.reconnect_min));
        loop {
            tokio::select! {
                biased;
                () = events.closed() => return,
                () = &mut sleep => break,
                request = control.recv(), if control_open => match request {
                    None => control_open = false,
                    Some(request) => {
                        fail(request, &link.engine_error("not connected (reconnecting)"));
                    }
                },
            }
        }
    }
}

/// Answer `request` with `error` (an unsubscribe needs no answer: the set already changed).
fn fail(request: Control, error: &EngineError) {
    if let Control::Subscribe { done, .. } = request {
        // The caller may have stopped waiting.
        let _ = done.send(Err(error.clone()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_drops_passwords() {
        assert_eq!(
            redact("redis://user:secret@127.0.0.1:6379/2"),
            "redis://user@127.0.0.1:6379/2"
        );
        assert_eq!(
            redact("rediss://:secret@redis.example:6380"),
            "rediss://redis.example:6380"
        );
        assert_eq!(
            redact("redis+unix:///run/redis.sock?db=3&pass=secret"),
            "redis+unix:///run/redis.sock?db=3"
        );
        assert_eq!(
            redact("unix:///run/redis.sock?pass=secret"),
            "unix:///run/redis.sock"
        );
        assert_eq!(redact("redis://10.0.0.1"), "redis://10.0.0.1");
    }

    #[test]
    fn scores_and_members_in_both_protocols() {
        let bulk = |s: &str| Value::BulkString(s.as_bytes().to_vec());
        assert_eq!(score(&bulk("1700000000123")), Some(1_700_000_000_123));
        assert_eq!(score(&bulk("-5")), Some(-5));
        assert_eq!(score(&bulk("2.5e3")), Some(2500));
        assert_eq!(score(&Value::Double(42.0)), Some(42));
        let resp2 = vec![bulk("a"), bulk("1"), bulk("b"), bulk("2")];
        let resp3 = vec![
            Value::Array(vec![bulk("a"), Value::Double(1.0)]),
            Value::Array(vec![bulk("b"), Value::Double(2.0)]),
        ];
        let expected = Reply::Members(vec![("a".into(), 1), ("b".into(), 2)]);
        assert_eq!(members(resp2), Some(expected.clone()));
        assert_eq!(members(resp3), Some(expected));
        assert_eq!(members(vec![bulk("a")]), None);
        assert_eq!(members(Vec::new()), Some(Reply::Members(Vec::new())));
    }

    #[test]
    fn keep_highest_ranks() {
        let pipe = pipeline(&[Command::SortedKeepHighest {
            key: "k".into(),
            keep: 0,
        }]);
        let packed = String::from_utf8_lossy(&pipe.get_packed_pipeline()).into_owned();
        assert!(packed.contains("ZREMRANGEBYRANK\r\n$1\r\nk\r\n$1\r\n0\r\n$2\r\n-1\r\n"));
    }
}
