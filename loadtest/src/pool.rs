//! A pool of receiving connections in this process: WebSocket, Server-Sent Events or long
//! polling, optionally with stateful reconnect. Each receiver tracks the load messages it gets
//! per sender stream ([`Tracker`]: order, gaps, duplicates) and records their latency (payload
//! timestamp → receipt) into a histogram that [`Pool::check`] takes and resets, so a scenario
//! can get per-phase or per-interval figures.
//!
//! Receivers can be steered one by one through [`Slot::control`]: pause reading (a slow
//! consumer), resume reading, or kill the TCP connection and come back with the same
//! connection token (stateful reconnect). A scenario that needs more connections than one
//! process may open spreads a pool over several processes with [`crate::workers::Fleet`].

use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use anyhow::Result;
use serde::{Deserialize, Serialize};
use switchboard::protocol::HubMessage;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinHandle;

use crate::client::{self, Client, ConnectOptions, Negotiated, Target};
use crate::failure::{ErrorKind, ErrorKinds};
use crate::fallback::{HttpConn, HttpTransport};
use crate::stats::{Hist, Stats, Tracker, add_pairs, empty_histogram, histogram_pairs};
use crate::{KEEP_ALIVE, Protocol, Transport};

/// How often a stateful-reconnect receiver acknowledges what it processed.
const ACK_INTERVAL: Duration = Duration::from_millis(100);
/// How long a graceful close may take before the socket is simply dropped.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// What a pool opens.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PoolSpec {
    /// Broker base URL.
    pub url: String,
    /// Access key.
    pub key: String,
    /// Hub.
    pub hub: String,
    /// Hub protocol.
    pub protocol: Protocol,
    /// Receivers to open.
    pub connections: usize,
    /// Connects in flight at once.
    pub parallel: usize,
    /// Negotiate before connecting (always for SSE, long polling and stateful reconnect).
    pub negotiate: bool,
    /// Transport.
    pub transport: Transport,
    /// Stateful reconnect (WebSockets only).
    pub stateful: bool,
    /// Global index of the first receiver (when a pool is one part of several processes).
    pub offset: usize,
    /// Receivers connect as user `<prefix><global index>`.
    pub user_prefix: Option<String>,
    /// `SO_RCVBUF` for receiver 0 only (the slow consumer of S9).
    pub first_recv_buffer: Option<usize>,
}

impl PoolSpec {
    /// A spec from the shared options: `common.connections` WebSocket receivers.
    pub fn from_common(common: &crate::Common) -> Self {
        Self {
            url: common.url.clone(),
            key: common.key.clone(),
            hub: common.hub.clone(),
            protocol: common.protocol,
            connections: common.connections,
            parallel: common.parallel,
            negotiate: common.negotiate,
            transport: Transport::Websockets,
            stateful: false,
            offset: 0,
            user_prefix: None,
            first_recv_buffer: None,
        }
    }

    fn target(&self) -> Target {
        Target::new(&self.url, &self.key, &self.hub, self.protocol.into())
    }
}

/// What every receiver should have received, per sender stream.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Expect {
    /// Nothing (hold scenarios).
    Nothing,
    /// Every receiver gets every stream: `totals[s]` messages from sender `s` (broadcast).
    All(Vec<u64>),
    /// Receiver with global index `i` gets `each[i].1` messages from sender `each[i].0` (one
    /// stream per receiver, as in send-to-user).
    Each(Vec<(u64, u64)>),
    /// Receiver with global index `i` is in group `i / size` and gets `totals[i / size]`
    /// messages from sender `i / size`.
    Groups {
        /// Receivers per group.
        size: usize,
        /// Messages sent to each group.
        totals: Vec<u64>,
    },
}

impl Expect {
    /// `(sender, count)` pairs receiver `index` should have got.
    fn streams(&self, index: usize) -> Vec<(u64, u64)> {
        match self {
            Self::Nothing => Vec::new(),
            Self::All(t) => t.iter().enumerate().map(|(s, &n)| (s as u64, n)).collect(),
            Self::Each(each) => each.get(index).map(|&p| vec![p]).unwrap_or_default(),
            Self::Groups { size, totals } => {
                let g = index / (*size).max(1);
                vec![(g as u64, totals.get(g).copied().unwrap_or(0))]
            }
        }
    }
}

/// A cumulative view of a pool (or a fleet) at a check; `histogram` holds the latencies since
/// the previous check.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Snapshot {
    /// Receivers that completed their handshake.
    pub connected: u64,
    /// Receivers up now.
    pub up: u64,
    /// Receivers that went down before being told to stop.
    pub dropped: u64,
    /// Receivers that never connected.
    pub failed: u64,
    /// Messages received by counted receivers (duplicates included).
    pub received: u64,
    /// Messages counted receivers should have received.
    pub expected: u64,
    /// Messages never received (gaps plus what is missing at the end of each stream).
    pub lost: u64,
    /// Duplicates or out-of-order messages.
    pub duplicates: u64,
    /// Errors (failed connects, undecodable load messages).
    pub errors: u64,
    /// The errors by kind.
    #[serde(default)]
    pub error_kinds: ErrorKinds,
    /// Latency `(µs, count)` pairs recorded since the previous check.
    pub histogram: Vec<(u64, u64)>,
}

impl Snapshot {
    /// Adds `other` (counts summed, histograms merged).
    pub fn absorb(&mut self, other: &Self) {
        self.connected += other.connected;
        self.up += other.up;
        self.dropped += other.dropped;
        self.failed += other.failed;
        self.received += other.received;
        self.expected += other.expected;
        self.lost += other.lost;
        self.duplicates += other.duplicates;
        self.errors += other.errors;
        self.error_kinds.absorb(&other.error_kinds);
        let mut h = empty_histogram();
        add_pairs(&mut h, &self.histogram);
        add_pairs(&mut h, &other.histogram);
        self.histogram = histogram_pairs(&h);
    }

    /// The histogram of this snapshot.
    pub fn hist(&self) -> hdrhistogram::Histogram<u64> {
        let mut h = empty_histogram();
        add_pairs(&mut h, &self.histogram);
        h
    }
}

/// Steering of one receiver.
#[derive(Debug)]
pub enum Control {
    /// Stop reading the socket (it keeps sending keep-alive pings).
    Pause,
    /// Read again.
    Unpause,
    /// Stateful reconnect: drop the TCP connection without a close frame, wait `down`, then
    /// open a new WebSocket with the same connection token.
    Kill {
        /// Time without a connection.
        down: Duration,
    },
}

const CONNECTING: u8 = 0;
const UP: u8 = 1;
const FAILED: u8 = 2;
const DROPPED: u8 = 3;
const STOPPED: u8 = 4;

/// One receiver's shared state.
pub struct Slot {
    /// Global index.
    pub index: usize,
    tracker: Mutex<Tracker>,
    connection_id: OnceLock<String>,
    state: AtomicU8,
    excluded: AtomicBool,
    control: mpsc::UnboundedSender<Control>,
    /// Stateful reconnects that succeeded.
    pub resumes: AtomicU64,
    /// Stateful reconnects that failed (the receiver is then dropped).
    pub resume_failures: AtomicU64,
    /// Replayed messages dropped because they had already been processed (stateful reconnect).
    pub replay_drops: AtomicU64,
    end: Mutex<Option<String>>,
}

impl Slot {
    /// The connection id, once connected with negotiate.
    pub fn connection_id(&self) -> Option<&str> {
        self.connection_id.get().map(String::as_str)
    }

    /// Sends a steering command (ignored once the receiver has ended).
    pub fn control(&self, c: Control) {
        let _ = self.control.send(c);
    }

    /// Leaves this receiver out of every count and latency (the slow consumer).
    pub fn exclude(&self) {
        self.excluded.store(true, Ordering::Relaxed);
    }

    /// Whether it connected at all.
    pub fn connected(&self) -> bool {
        matches!(self.state.load(Ordering::Relaxed), UP | DROPPED | STOPPED)
    }

    /// Whether it is up.
    pub fn is_up(&self) -> bool {
        self.state.load(Ordering::Relaxed) == UP
    }

    /// Whether it went down on its own (or was cut by the broker).
    pub fn is_dropped(&self) -> bool {
        self.state.load(Ordering::Relaxed) == DROPPED
    }

    /// Why it ended (a Close message's error, or the transport error), if it did.
    pub fn end_reason(&self) -> Option<String> {
        self.end.lock().ok().and_then(|e| e.clone())
    }

    /// `(received, gaps, duplicates, missing)` against `expect`.
    pub fn counts(&self, expect: &Expect) -> (u64, u64, u64, u64) {
        let Ok(t) = self.tracker.lock() else {
            return (0, 0, 0, 0);
        };
        let missing = expect
            .streams(self.index)
            .iter()
            .map(|&(s, n)| n.saturating_sub(t.next_from(s)))
            .sum();
        (t.received, t.gaps, t.duplicates, missing)
    }

    fn expected(&self, expect: &Expect) -> u64 {
        expect.streams(self.index).iter().map(|&(_, n)| n).sum()
    }
}

/// Receivers of this process.
pub struct Pool {
    slots: Vec<Arc<Slot>>,
    tasks: Vec<JoinHandle<()>>,
    stop: watch::Sender<bool>,
    stats: Arc<Stats>,
    hist: Arc<Hist>,
}

/// Everything a receiver task needs.
struct Ctx {
    target: Target,
    spec: PoolSpec,
    http: Option<reqwest::Client>,
    stats: Arc<Stats>,
    hist: Arc<Hist>,
}

impl Pool {
    /// Opens `spec.connections` receivers, at most `spec.parallel` connecting at a time, and
    /// returns once each is up or has failed. Counters go to `stats` (live progress).
    pub async fn open(spec: PoolSpec, stats: Arc<Stats>) -> Result<Self> {
        let needs_http = spec.negotiate || spec.stateful || spec.transport != Transport::Websockets;
        let http = if needs_http {
            Some(
                reqwest::Client::builder()
                    .tls_certs_merge(crate::tls::reqwest_roots())
                    .pool_max_idle_per_host(spec.connections + spec.parallel)
                    .build()?,
            )
        } else {
            None
        };
        let hist = Arc::new(Hist::new());
        crate::timeline::watch_hist(&hist);
        let ctx = Arc::new(Ctx {
            target: spec.target(),
            spec: spec.clone(),
            http,
            stats: stats.clone(),
            hist: hist.clone(),
        });
        let (stop, _) = watch::channel(false);
        let sem = Arc::new(Semaphore::new(spec.parallel.max(1)));
        let settled = Arc::new(AtomicU64::new(0));
        let mut slots = Vec::with_capacity(spec.connections);
        let mut tasks = Vec::with_capacity(spec.connections);
        for i in 0..spec.connections {
            let (tx, rx) = mpsc::unbounded_channel();
            let slot = Arc::new(Slot {
                index: spec.offset + i,
                tracker: Mutex::new(Tracker::default()),
                connection_id: OnceLock::new(),
                state: AtomicU8::new(CONNECTING),
                excluded: AtomicBool::new(false),
                control: tx,
                resumes: AtomicU64::new(0),
                resume_failures: AtomicU64::new(0),
                replay_drops: AtomicU64::new(0),
                end: Mutex::new(None),
            });
            slots.push(slot.clone());
            let permit = sem.clone().acquire_owned().await?;
            let (ctx, settled, stop) = (ctx.clone(), settled.clone(), stop.subscribe());
            tasks.push(tokio::spawn(async move {
                let conn = connect(&ctx, &slot, i).await;
                drop(permit);
                settled.fetch_add(1, Ordering::Relaxed);
                match conn {
                    Ok(conn) => {
                        slot.state.store(UP, Ordering::Relaxed);
                        ctx.stats.opened_one();
                        receive(&ctx, &slot, conn, rx, stop).await;
                    }
                    Err(e) => {
                        slot.state.store(FAILED, Ordering::Relaxed);
                        ctx.stats.failure(&e);
                        if let Ok(mut end) = slot.end.lock() {
                            *end = Some(format!("{e:#}"));
                        }
                    }
                }
            }));
        }
        while settled.load(Ordering::Relaxed) < spec.connections as u64 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(Self {
            slots,
            tasks,
            stop,
            stats,
            hist,
        })
    }

    /// The receivers.
    pub fn slots(&self) -> &[Arc<Slot>] {
        &self.slots
    }

    /// Receivers that completed their handshake.
    pub fn connected(&self) -> u64 {
        self.slots.iter().filter(|s| s.connected()).count() as u64
    }

    /// Waits (at most `wait`) until every counted receiver that is still up has everything
    /// `expect` says, then returns the cumulative counts and the latencies since the last check.
    pub async fn check(&self, expect: &Expect, wait: Duration) -> Snapshot {
        let until = tokio::time::Instant::now() + wait;
        loop {
            let complete = self
                .slots
                .iter()
                .filter(|s| s.is_up() && !s.excluded.load(Ordering::Relaxed))
                .all(|s| s.counts(expect).3 == 0);
            if complete || tokio::time::Instant::now() >= until {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let mut snap = Snapshot::default();
        for s in &self.slots {
            if s.excluded.load(Ordering::Relaxed) {
                continue;
            }
            match s.state.load(Ordering::Relaxed) {
                CONNECTING | FAILED => {
                    snap.failed += 1;
                    continue;
                }
                UP => snap.up += 1,
                DROPPED => snap.dropped += 1,
                _ => {}
            }
            snap.connected += 1;
            let (received, gaps, dups, missing) = s.counts(expect);
            snap.received += received;
            snap.expected += s.expected(expect);
            snap.lost += gaps + missing;
            snap.duplicates += dups;
        }
        snap.errors = self.stats.errors.load(Ordering::Relaxed);
        snap.error_kinds = self.stats.error_kinds();
        snap.histogram = histogram_pairs(&self.hist.take());
        snap
    }

    /// Closes every receiver (gracefully) and waits for them.
    pub async fn close(self) {
        let _ = self.stop.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

/// A receiving connection on any transport.
enum Conn {
    Ws(Box<Client>),
    Http(Box<HttpConn>),
}

impl Conn {
    async fn next_message(&mut self) -> Result<Option<HubMessage>> {
        match self {
            Self::Ws(c) => c.next_message().await,
            Self::Http(c) => c.next_message().await,
        }
    }

    async fn send(&mut self, msg: &HubMessage) -> Result<()> {
        match self {
            Self::Ws(c) => c.send(msg).await,
            Self::Http(c) => c.send(msg).await,
        }
    }

    async fn ping(&mut self) -> Result<()> {
        match self {
            Self::Ws(c) => c.ping().await,
            Self::Http(c) => c.ping().await,
        }
    }

    async fn close(self) {
        match self {
            Self::Ws(c) => {
                let _ = tokio::time::timeout(CLOSE_TIMEOUT, (*c).close()).await;
            }
            Self::Http(c) => {
                let _ = tokio::time::timeout(CLOSE_TIMEOUT, (*c).close()).await;
            }
        }
    }
}

fn user_of(ctx: &Ctx, slot: &Slot) -> Option<String> {
    ctx.spec
        .user_prefix
        .as_ref()
        .map(|p| format!("{p}{}", slot.index))
}

async fn connect(ctx: &Ctx, slot: &Slot, local: usize) -> Result<Conn> {
    let user = user_of(ctx, slot);
    let conn = match ctx.spec.transport {
        Transport::Websockets => {
            let c = Client::connect_with(
                &ctx.target,
                ConnectOptions {
                    user: user.as_deref(),
                    http: ctx.http.as_ref(),
                    stateful: ctx.spec.stateful,
                    recv_buffer: ctx.spec.first_recv_buffer.filter(|_| local == 0),
                },
            )
            .await?;
            if ctx.spec.stateful && !c.is_stateful() {
                anyhow::bail!("the broker did not grant stateful reconnect");
            }
            if let Some(id) = c.connection_id() {
                let _ = slot.connection_id.set(id.to_owned());
            }
            Conn::Ws(Box::new(c))
        }
        Transport::Sse | Transport::LongPolling => {
            let kind = if ctx.spec.transport == Transport::Sse {
                HttpTransport::ServerSentEvents
            } else {
                HttpTransport::LongPolling
            };
            let http = ctx
                .http
                .as_ref()
                .ok_or_else(|| anyhow::anyhow!("no HTTP client"))?;
            let c = HttpConn::connect(&ctx.target, kind, http, user.as_deref()).await?;
            let _ = slot.connection_id.set(c.negotiated().connection_id.clone());
            Conn::Http(Box::new(c))
        }
    };
    Ok(conn)
}

async fn next_opt(conn: &mut Option<Conn>) -> Result<Option<HubMessage>> {
    match conn {
        Some(c) => c.next_message().await,
        None => std::future::pending().await,
    }
}

/// Stateful-reconnect numbering on the receiving side (`docs/protocol.md#stateful-reconnect`).
#[derive(Default)]
struct Numbering {
    /// Number of the last tracked message received.
    last: u64,
    /// Highest number processed.
    processed: u64,
    /// Highest number acknowledged.
    acked: u64,
}

async fn receive(
    ctx: &Ctx,
    slot: &Slot,
    conn: Conn,
    mut control: mpsc::UnboundedReceiver<Control>,
    mut stop: watch::Receiver<bool>,
) {
    let stateful = ctx.spec.stateful;
    let negotiated: Option<Negotiated> = match &conn {
        Conn::Ws(c) => c.negotiated().cloned(),
        Conn::Http(_) => None,
    };
    let user = user_of(ctx, slot);
    let mut conn = Some(conn);
    let mut numbering = Numbering::default();
    let mut paused = false;
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + KEEP_ALIVE, KEEP_ALIVE);
    let mut ack = tokio::time::interval(ACK_INTERVAL);
    ack.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let reason: Option<String> = loop {
        tokio::select! {
            biased;
            _ = stop.changed() => {
                if let Some(c) = conn.take() {
                    c.close().await;
                }
                slot.state.store(STOPPED, Ordering::Relaxed);
                ctx.stats.connected.fetch_sub(1, Ordering::Relaxed);
                return;
            }
            c = control.recv() => match c {
                Some(Control::Pause) => paused = true,
                Some(Control::Unpause) => paused = false,
                Some(Control::Kill { down }) => {
                    let Some(n) = negotiated.as_ref().filter(|_| stateful) else { continue };
                    // The socket dies without a close frame.
                    drop(conn.take());
                    tokio::time::sleep(down).await;
                    match Client::resume(&ctx.target, n, user.as_deref(), None).await {
                        Ok(mut c) => {
                            // Our side of the resume: we sent no tracked message, so 1.
                            if c.send(&HubMessage::Sequence { sequence_id: 1 }).await.is_err() {
                                slot.resume_failures.fetch_add(1, Ordering::Relaxed);
                                break Some("resumed socket failed".to_owned());
                            }
                            slot.resumes.fetch_add(1, Ordering::Relaxed);
                            conn = Some(Conn::Ws(Box::new(c)));
                        }
                        Err(e) => {
                            slot.resume_failures.fetch_add(1, Ordering::Relaxed);
                            break Some(format!("resume failed: {e:#}"));
                        }
                    }
                }
                None => {}
            },
            m = next_opt(&mut conn), if !paused => match m {
                Ok(Some(msg)) => {
                    if let Err(reason) = on_message(ctx, slot, msg, stateful, &mut numbering) {
                        break Some(reason);
                    }
                }
                Ok(None) => break Some("connection ended".to_owned()),
                Err(e) => break Some(format!("{e:#}")),
            },
            _ = ping.tick() => {
                if let Some(c) = conn.as_mut()
                    && let Err(e) = c.ping().await
                {
                    break Some(format!("ping failed: {e:#}"));
                }
            }
            _ = ack.tick(), if stateful => {
                if numbering.processed > numbering.acked
                    && let Some(c) = conn.as_mut()
                {
                    let id = numbering.processed;
                    if c.send(&HubMessage::Ack { sequence_id: id as i64 }).await.is_ok() {
                        numbering.acked = id;
                    }
                }
            }
        }
    };
    if let Ok(mut end) = slot.end.lock() {
        *end = reason;
    }
    slot.state.store(DROPPED, Ordering::Relaxed);
    ctx.stats.connected.fetch_sub(1, Ordering::Relaxed);
    ctx.stats.dropped.fetch_add(1, Ordering::Relaxed);
}

/// Handles one message; `Err(reason)` ends the receiver.
fn on_message(
    ctx: &Ctx,
    slot: &Slot,
    msg: HubMessage,
    stateful: bool,
    numbering: &mut Numbering,
) -> Result<(), String> {
    let tracked = (1..=5).contains(&msg.type_id());
    if stateful && tracked {
        numbering.last += 1;
        if numbering.last <= numbering.processed {
            slot.replay_drops.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        }
        numbering.processed = numbering.last;
    }
    match msg {
        HubMessage::Invocation(inv) if inv.target == client::TARGET => {
            let now = client::now_us();
            match client::parse_load(&inv.arguments) {
                Some((sender, seq, ts)) => {
                    if let Ok(mut t) = slot.tracker.lock() {
                        t.on_message(sender, seq);
                    }
                    if !slot.excluded.load(Ordering::Relaxed) {
                        ctx.stats.received.fetch_add(1, Ordering::Relaxed);
                        ctx.hist.record_us(slot.index, now.saturating_sub(ts));
                    }
                }
                None => {
                    ctx.stats.error(ErrorKind::Protocol, || {
                        format!(
                            "an undecodable load message from {}: {}",
                            ctx.target.url,
                            crate::failure::truncate(&format!("{:?}", inv.arguments), 100)
                        )
                    });
                }
            }
        }
        HubMessage::Sequence { sequence_id } if stateful => {
            let id = u64::try_from(sequence_id).unwrap_or(0);
            if id == 0 || id > numbering.processed + 1 {
                return Err(format!(
                    "Sequence {sequence_id} after {} processed messages",
                    numbering.processed
                ));
            }
            numbering.last = id - 1;
        }
        HubMessage::Close(c) => {
            return Err(c.error.unwrap_or_else(|| "closed by the broker".to_owned()));
        }
        _ => {}
    }
    Ok(())
}
