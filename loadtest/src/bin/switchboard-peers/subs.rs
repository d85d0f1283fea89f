//! Nchan and socket.io subscribers, and the hold and broadcast runs against them.
//!
//! Nchan: `ws://HOST/sub?id=CHANNEL`, every published message arrives as one text frame; the
//! publisher POSTs the message body to `http://HOST/pub?id=CHANNEL`. socket.io: engine.io v4
//! straight over WebSocket (`/socket.io/?EIO=4&transport=websocket`), the client joins the main
//! namespace (`40`) and answers the server's pings; messages are `42["msg","<payload>"]`, published
//! with `POST /broadcast` on `bench/peers/socketio/server.js`. Switchboard, for comparing the
//! servers alone (the same receiver code as the peers', not `switchboard-loadtest`'s SignalR
//! clients): `ws://HOST/client/?hub=HUB&access_token=…` without negotiate, the JSON hub protocol's
//! handshake, a Ping every 10 s (the broker drops a client silent for 30 s); each broadcast is an
//! Invocation `{"type":1,"target":"msg","arguments":["<payload>"]}` (several may share a frame),
//! published with the REST API's `POST /api/hubs/HUB/:send`.

use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures_util::{SinkExt, StreamExt};
use switchboard_loadtest::client::now_us;
use switchboard_loadtest::stats::{Latency, Report, Stats};
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, watch};
use tokio::task::{JoinHandle, JoinSet};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::eio::{self, Packet, SioKind};
use crate::payload::{self, Delivery, SeqCheck};
use crate::procfs;
use crate::steps::{MaxRun, Step};
use crate::{BroadcastArgs, PeerArgs};

/// Longest a subscriber may take to connect.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long receivers may take to drain after the last publish (as `switchboard-loadtest`).
const DRAIN: Duration = Duration::from_secs(5);
/// Pause between two broadcast steps.
const STEP_PAUSE: Duration = Duration::from_secs(1);
/// WebSocket read buffer per subscriber (as `switchboard-loadtest`'s client).
const READ_BUFFER: usize = 4096;
/// Broadcasts per step whose time to reach every subscriber is tracked.
const REACH_SLOTS: usize = 1 << 16;
/// The socket.io event the server emits.
const EVENT: &str = "msg";

/// The peer under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Peer {
    /// nginx + Nchan.
    Nchan,
    /// socket.io (Node).
    SocketIo,
    /// Switchboard (Serverless mode: REST in, WebSocket clients out).
    Switchboard,
}

impl Peer {
    /// Name in reports and file names.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Nchan => "nchan",
            Self::SocketIo => "socketio",
            Self::Switchboard => "switchboard",
        }
    }

    /// The default base URL of the peer (as `bench/peers/` starts it).
    pub(crate) fn default_url(self) -> &'static str {
        match self {
            Self::Nchan => "http://127.0.0.1:8081",
            Self::SocketIo => "http://127.0.0.1:3000",
            Self::Switchboard => "http://127.0.0.1:8080",
        }
    }
}

/// Where subscribers connect and where the publisher posts.
#[derive(Clone, Debug)]
pub(crate) struct Target {
    peer: Peer,
    ws_url: String,
    publish_url: String,
    /// The publisher's bearer token (Switchboard's REST API).
    publish_token: Option<String>,
}

/// Switchboard's hub for `channel`: hub names are letters, digits and underscores.
fn hub_of(channel: &str) -> String {
    channel
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

impl Target {
    /// The endpoints of `peer` at `base_url`, on `channel` (Nchan; Switchboard's hub), with
    /// `key` Switchboard's access key.
    pub(crate) fn new(peer: Peer, base_url: &str, channel: &str, key: Option<&str>) -> Self {
        let base = base_url.trim_end_matches('/');
        let ws = base.replacen("http", "ws", 1);
        if peer == Peer::Switchboard {
            let hub = hub_of(channel);
            let sb = switchboard_loadtest::client::Target::new(
                base,
                key.unwrap_or_default(),
                &hub,
                switchboard::protocol::HubProtocol::Json,
            );
            let path = format!("/api/hubs/{hub}/:send");
            return Self {
                peer,
                ws_url: format!(
                    "{ws}/client/?hub={hub}&access_token={}",
                    sb.client_token(None)
                ),
                publish_url: sb.rest_url(&path),
                publish_token: Some(sb.rest_token(&path)),
            };
        }
        let (ws_url, publish_url) = match peer {
            Peer::Nchan => (
                format!("{ws}/sub?id={channel}"),
                format!("{base}/pub?id={channel}"),
            ),
            Peer::SocketIo | Peer::Switchboard => (
                format!("{ws}/socket.io/?EIO=4&transport=websocket"),
                format!("{base}/broadcast"),
            ),
        };
        Self {
            peer,
            ws_url,
            publish_url,
            publish_token: None,
        }
    }

    /// The request that publishes `payload`.
    fn publish(&self, http: &reqwest::Client, payload: String) -> reqwest::RequestBuilder {
        match &self.publish_token {
            Some(token) => http
                .post(&self.publish_url)
                .bearer_auth(token)
                .header("content-type", "application/json")
                // The payload is `sender:seq:µs:padding` (digits, colons and `x`): no escaping.
                .body(format!(
                    r#"{{"target":"{EVENT}","arguments":["{payload}"]}}"#
                )),
            None => http
                .post(&self.publish_url)
                .header("content-type", "text/plain")
                .body(payload),
        }
    }
}

/// The JSON hub protocol's handshake request, and the Ping a Switchboard subscriber sends.
const SB_HANDSHAKE: &str = "{\"protocol\":\"json\",\"version\":1}\u{1e}";
const SB_PING: &str = "{\"type\":6}\u{1e}";
/// How often a Switchboard subscriber pings.
const SB_PING_EVERY: Duration = Duration::from_secs(10);

/// The messages of one text frame from `peer`: a Switchboard frame may carry several records
/// (each ending with 0x1E); any other peer's frame is one message.
fn messages(peer: Peer, text: &str) -> impl Iterator<Item = &str> {
    let (whole, records) = match peer {
        Peer::Switchboard => (None, Some(text.split('\u{1e}').filter(|r| !r.is_empty()))),
        _ => (Some(text), None),
    };
    whole.into_iter().chain(records.into_iter().flatten())
}

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The next text frame; answers nothing, skips control frames.
async fn next_text(ws: &mut Ws) -> Result<String> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => return Ok(t.as_str().to_owned()),
            Some(Ok(Message::Close(_))) | None => bail!("closed"),
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(e.into()),
        }
    }
}

/// Opens one subscriber: the WebSocket, and for socket.io the engine.io open packet and the
/// namespace connect.
async fn connect(t: &Target) -> Result<Ws> {
    let config = WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(0);
    let (mut ws, _) =
        tokio_tungstenite::connect_async_with_config(t.ws_url.as_str(), Some(config), false)
            .await
            .context("websocket connect")?;
    if t.peer == Peer::Switchboard {
        ws.send(Message::text(SB_HANDSHAKE)).await?;
        let answer = next_text(&mut ws).await?;
        if !answer.starts_with("{}\u{1e}") {
            bail!("handshake refused: {answer:?}");
        }
    }
    if t.peer == Peer::SocketIo {
        let open = next_text(&mut ws).await?;
        // The open packet carries the session's timers; the server pings every pingInterval
        // and drops a client whose pong is later than pingTimeout.
        match eio::parse(&open) {
            Ok(Packet::Open(json)) if eio::open_timers(json).is_some() => {}
            _ => bail!("expected an engine.io open packet, got {open:?}"),
        }
        ws.send(Message::text(eio::CONNECT)).await?;
        loop {
            let f = next_text(&mut ws).await?;
            match eio::parse(&f) {
                Ok(Packet::Message(m)) if m.kind == SioKind::Connect => break,
                Ok(Packet::Message(m)) if m.kind == SioKind::ConnectError => {
                    bail!("socket.io refused the connection: {}", m.data)
                }
                Ok(Packet::Ping(d)) => ws.send(Message::text(eio::pong(d))).await?,
                Ok(Packet::Close) => bail!("engine.io close during the connect"),
                _ => {}
            }
        }
    }
    Ok(ws)
}

/// What a text frame means to a subscriber.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Incoming<'a> {
    /// A broadcast payload.
    Payload(Cow<'a, str>),
    /// Answer with this frame (socket.io pong).
    Reply(String),
    /// The server ends the session.
    Closed,
    /// Nothing to do.
    Ignore,
    /// Not understood.
    Bad,
}

/// Classifies one message (see [`messages`]) from `peer`.
pub(crate) fn classify(peer: Peer, text: &str) -> Incoming<'_> {
    match peer {
        Peer::Nchan => Incoming::Payload(Cow::Borrowed(text)),
        // What the broker writes for a REST broadcast, scanned rather than parsed (the other
        // peers' receivers parse nothing either).
        Peer::Switchboard => match text.strip_prefix("{\"type\":") {
            Some(rest) if rest.starts_with("1,") => {
                let args = format!("\"target\":\"{EVENT}\",\"arguments\":[\"");
                match rest[2..]
                    .strip_prefix(args.as_str())
                    .and_then(|a| a.strip_suffix("\"]}"))
                {
                    Some(p) => Incoming::Payload(Cow::Borrowed(p)),
                    None => Incoming::Bad,
                }
            }
            Some(rest) if rest.starts_with('6') => Incoming::Ignore,
            Some(rest) if rest.starts_with('7') => Incoming::Closed,
            _ => Incoming::Bad,
        },
        Peer::SocketIo => match eio::parse(text) {
            Ok(Packet::Ping(d)) => Incoming::Reply(eio::pong(d)),
            Ok(Packet::Close) => Incoming::Closed,
            Ok(Packet::Message(m)) => match m.kind {
                SioKind::Event if m.nsp == "/" => match eio::event_str_arg(m.data) {
                    Some((name, arg)) if name == EVENT => Incoming::Payload(arg),
                    Some(_) => Incoming::Ignore,
                    None => Incoming::Bad,
                },
                SioKind::Disconnect => Incoming::Closed,
                _ => Incoming::Ignore,
            },
            Ok(_) => Incoming::Ignore,
            Err(_) => Incoming::Bad,
        },
    }
}

/// Subscribers of a run.
struct Subscribers {
    /// Connection-level figures: connected, dropped, connect errors, connect-time histogram.
    conn: Arc<Stats>,
    /// The stats of the current broadcast step (received, latency, bad frames).
    current: Arc<RwLock<Arc<Stats>>>,
    /// Per broadcast of the current step (by sequence number, the first [`REACH_SLOTS`]): the
    /// latest latency of any subscriber, i.e. how long it took to reach them all.
    reach: Arc<Vec<AtomicU64>>,
    /// One sequence check per connected subscriber.
    trackers: Arc<Mutex<Vec<Arc<Mutex<SeqCheck>>>>>,
    tasks: Vec<JoinHandle<()>>,
    done: watch::Sender<bool>,
    /// Time to open them all.
    ramp: Duration,
}

impl Subscribers {
    /// Opens `n` subscribers, `parallel` connecting at a time; returns when each is up or failed.
    async fn open(target: &Target, n: usize, parallel: usize, quiet: bool) -> Result<Self> {
        let conn = Arc::new(Stats::new());
        let current = Arc::new(RwLock::new(Arc::new(Stats::new())));
        let reach: Arc<Vec<AtomicU64>> =
            Arc::new((0..REACH_SLOTS).map(|_| AtomicU64::new(0)).collect());
        let trackers = Arc::new(Mutex::new(Vec::with_capacity(n)));
        let (done, _) = watch::channel(false);
        let target = Arc::new(target.clone());
        let sem = Arc::new(Semaphore::new(parallel.max(1)));
        let settled = Arc::new(AtomicU64::new(0));
        let progress = conn.progress(quiet);
        let start = Instant::now();
        let mut tasks = Vec::with_capacity(n);
        for i in 0..n {
            let permit = sem.clone().acquire_owned().await?;
            let reach = reach.clone();
            let (target, conn, current, trackers, settled) = (
                target.clone(),
                conn.clone(),
                current.clone(),
                trackers.clone(),
                settled.clone(),
            );
            let mut done = done.subscribe();
            tasks.push(tokio::spawn(async move {
                let t0 = Instant::now();
                let ws = tokio::time::timeout(CONNECT_TIMEOUT, connect(&target)).await;
                drop(permit);
                let Ok(Ok(mut ws)) = ws else {
                    conn.errors.fetch_add(1, Ordering::Relaxed);
                    settled.fetch_add(1, Ordering::Relaxed);
                    return;
                };
                conn.record_us(i, t0.elapsed().as_micros() as u64);
                conn.connects.fetch_add(1, Ordering::Relaxed);
                conn.connected.fetch_add(1, Ordering::Relaxed);
                let tracker = Arc::new(Mutex::new(SeqCheck::default()));
                if let Ok(mut all) = trackers.lock() {
                    all.push(tracker.clone());
                }
                settled.fetch_add(1, Ordering::Relaxed);
                let on_payload = |p: &str| {
                    let now = now_us();
                    let Ok(stats) = current.read().map(|s| s.clone()) else {
                        return;
                    };
                    match payload::parse(p) {
                        Some((sender, seq, ts)) => {
                            if let Ok(mut t) = tracker.lock() {
                                t.on_message(sender, seq);
                            }
                            stats.received.fetch_add(1, Ordering::Relaxed);
                            let latency = now.saturating_sub(ts);
                            stats.record_us(i, latency);
                            if let Some(slot) = reach.get(seq as usize) {
                                slot.fetch_max(latency, Ordering::Relaxed);
                            }
                        }
                        None => {
                            stats.errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                };
                let pings = target.peer == Peer::Switchboard;
                let mut ping = tokio::time::interval_at(
                    tokio::time::Instant::now() + SB_PING_EVERY,
                    SB_PING_EVERY,
                );
                let ok = 'run: loop {
                    tokio::select! {
                        m = ws.next() => match m {
                            Some(Ok(Message::Text(t))) => {
                                for m in messages(target.peer, t.as_str()) {
                                    match classify(target.peer, m) {
                                        Incoming::Payload(p) => on_payload(&p),
                                        Incoming::Reply(r) => {
                                            if ws.send(Message::text(r)).await.is_err() {
                                                break 'run false;
                                            }
                                        }
                                        Incoming::Closed => break 'run false,
                                        Incoming::Ignore => {}
                                        Incoming::Bad => {
                                            if let Ok(s) = current.read() {
                                                s.errors.fetch_add(1, Ordering::Relaxed);
                                            }
                                        }
                                    }
                                }
                            }
                            Some(Ok(Message::Close(_)) | Err(_)) | None => break false,
                            Some(Ok(_)) => {}
                        },
                        _ = ping.tick(), if pings => {
                            if ws.send(Message::text(SB_PING)).await.is_err() {
                                break false;
                            }
                        }
                        _ = done.changed() => break true,
                    }
                };
                conn.connected.fetch_sub(1, Ordering::Relaxed);
                if ok {
                    let _ = tokio::time::timeout(Duration::from_secs(1), ws.close(None)).await;
                } else {
                    conn.dropped.fetch_add(1, Ordering::Relaxed);
                }
            }));
        }
        while settled.load(Ordering::Relaxed) < n as u64 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let ramp = start.elapsed();
        drop(progress);
        Ok(Self {
            conn,
            current,
            reach,
            trackers,
            tasks,
            done,
            ramp,
        })
    }

    fn up(&self) -> u64 {
        self.conn.connected.load(Ordering::Relaxed)
    }

    fn trackers(&self) -> Vec<Arc<Mutex<SeqCheck>>> {
        self.trackers.lock().map(|t| t.clone()).unwrap_or_default()
    }

    /// Closes every subscriber and waits for them.
    async fn close(self) {
        let _ = self.done.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

/// The server processes whose memory and CPU are reported.
fn server_pids(a: &PeerArgs) -> Vec<u32> {
    let mut pids = a.server_pid.clone();
    if let Some(parent) = a.server_children_of {
        pids.extend(procfs::children(parent));
    }
    pids
}

fn params(peer: Peer, a: &PeerArgs, url: &str, extra: serde_json::Value) -> serde_json::Value {
    let mut p = serde_json::json!({
        "peer": peer.name(), "url": url, "channel": a.channel, "payload_bytes": a.payload_bytes,
        "connections": a.connections, "duration": a.duration, "parallel": a.parallel,
        "server_pids": server_pids(a),
    });
    if let (Some(p), serde_json::Value::Object(e)) = (p.as_object_mut(), extra) {
        p.extend(e);
    }
    p
}

fn empty_report(scenario: String, params: serde_json::Value, seconds: f64) -> Report {
    Report::empty(scenario, params, seconds)
}

/// `<peer>-hold`: opens `--connections` subscribers, holds them `--duration` s; connect time, drops,
/// and the server's RSS per connection (before/after, summed over the server pids).
pub(crate) async fn hold(peer: Peer, a: &PeerArgs) -> Result<Report> {
    let url = a
        .url
        .clone()
        .unwrap_or_else(|| peer.default_url().to_owned());
    let target = Target::new(peer, &url, &a.channel, a.key.as_deref());
    procfs::check_nofile(a.connections as u64 + 64);
    let pids = server_pids(a);
    let rss_before = procfs::rss_sum_kib(&pids);
    let subs = Subscribers::open(&target, a.connections, a.parallel, a.quiet).await?;
    let up_after_ramp = subs.up();
    let ramp = subs.ramp.as_secs_f64();
    tokio::time::sleep(Duration::from_secs_f64(a.duration.max(0.0))).await;
    let rss_after = procfs::rss_sum_kib(&pids);
    let still_up = subs.up();
    let conn = subs.conn.clone();
    subs.close().await;
    let mut r = empty_report(
        format!("{}-hold", peer.name()),
        params(peer, a, &url, serde_json::json!({})),
        a.duration,
    );
    r.connected = up_after_ramp;
    r.dropped = conn.dropped.load(Ordering::Relaxed);
    r.errors = conn.errors.load(Ordering::Relaxed);
    // The connect time of each connection (WebSocket upgrade, plus the namespace connect for
    // socket.io).
    r.latency = Latency::of(&conn.histogram());
    r.extra.insert("ramp_seconds".into(), ramp.into());
    r.extra.insert(
        "connects_per_second".into(),
        (up_after_ramp as f64 / ramp.max(1e-9)).into(),
    );
    r.extra
        .insert("still_connected_at_end".into(), still_up.into());
    r.extra.insert("server_processes".into(), pids.len().into());
    if let (Some(b), Some(after)) = (rss_before, rss_after) {
        r.extra.insert("server_rss_before_kib".into(), b.into());
        r.extra.insert("server_rss_after_kib".into(), after.into());
        if still_up > 0 {
            let per = (after.saturating_sub(b) * 1024) as f64 / still_up as f64;
            r.extra
                .insert("server_rss_bytes_per_connection".into(), per.into());
        }
    }
    Ok(r)
}

/// Sleeps until the `k`-th publish of a sender paced at `rate`/s.
async fn pace(start: tokio::time::Instant, k: u64, rate: f64) {
    if rate > 0.0 {
        tokio::time::sleep_until(start + Duration::from_secs_f64(k as f64 / rate)).await;
    }
}

/// Publishes `sender`'s messages at `rate`/s for `duration` (as fast as possible when `rate` is
/// 0), each stamped when its request is issued, with at most `inflight` requests outstanding (1 =
/// one after the other, as `switchboard-loadtest s4-broadcast`). Returns the messages issued, the
/// sequence numbers the server refused, and the publishing window in seconds: `duration`, or
/// longer when the last publish could only be issued later (a publisher that fell behind issues
/// fewer than `rate × duration` in that window).
#[allow(clippy::too_many_arguments)]
async fn publish(
    http: &reqwest::Client,
    target: &Target,
    sender: u64,
    rate: f64,
    duration: Duration,
    pad: &str,
    inflight: usize,
    stats: &Arc<Stats>,
) -> (u64, Vec<u64>, f64) {
    let sem = Arc::new(Semaphore::new(inflight.max(1)));
    let failed = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = JoinSet::new();
    let start = tokio::time::Instant::now();
    let end = start + duration;
    let mut seq = 0u64;
    let mut last_issue = Duration::ZERO;
    while tokio::time::Instant::now() < end {
        // Exactly rate × duration publishes are scheduled inside the window.
        if rate > 0.0 && seq as f64 >= rate * duration.as_secs_f64() {
            break;
        }
        pace(start, seq, rate).await;
        let Ok(permit) = sem.clone().acquire_owned().await else {
            break;
        };
        let req = target.publish(http, payload::encode(sender, seq, now_us(), pad));
        let (stats, failed, q) = (stats.clone(), failed.clone(), seq);
        tasks.spawn(async move {
            let ok = match req.send().await {
                Ok(res) => {
                    let ok = res.status().is_success();
                    // Read the answer so the keep-alive connection is reused.
                    let _ = res.bytes().await;
                    ok
                }
                Err(_) => false,
            };
            drop(permit);
            if ok {
                stats.sent.fetch_add(1, Ordering::Relaxed);
            } else {
                stats.errors.fetch_add(1, Ordering::Relaxed);
                if let Ok(mut f) = failed.lock() {
                    f.push(q);
                }
            }
        });
        seq += 1;
        last_issue = start.elapsed();
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
    let failed = failed.lock().map(|f| f.clone()).unwrap_or_default();
    (seq, failed, duration.max(last_issue).as_secs_f64())
}

/// One broadcast step: publishes as `sender` at `rate`/s for `duration`, drains, and accounts
/// every subscriber's deliveries.
#[allow(clippy::too_many_arguments)]
async fn step(
    subs: &Subscribers,
    http: &reqwest::Client,
    target: &Target,
    sender: u64,
    rate: f64,
    duration: Duration,
    pad: &str,
    inflight: usize,
    pids: &[u32],
    mut r: Report,
) -> Result<Report> {
    let stats = Arc::new(Stats::new());
    if let Ok(mut c) = subs.current.write() {
        *c = stats.clone();
    }
    for slot in subs.reach.iter() {
        slot.store(0, Ordering::Relaxed);
    }
    let checks = subs.trackers();
    let up = subs.up();
    let cpu_before = procfs::cpu_sum_us(pids);
    let (issued, failed, secs) =
        publish(http, target, sender, rate, duration, pad, inflight, &stats).await;
    let seq = issued - failed.len() as u64;
    let expected = seq * checks.len() as u64;
    let until = Instant::now() + DRAIN;
    while stats.received.load(Ordering::Relaxed) < expected && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let cpu_after = procfs::cpu_sum_us(pids);
    let mut d = Delivery::default();
    let mut invalid = 0;
    for c in &checks {
        if let Ok(c) = c.lock() {
            d += c.delivery(sender, issued, &failed);
            invalid += c.invalid;
        }
    }
    let (lost, duplicates) = (d.lost, d.duplicates);
    r.seconds = secs;
    r.connected = up.min(subs.up());
    r.dropped = subs.conn.dropped.load(Ordering::Relaxed);
    r.sent = seq;
    r.expected = expected;
    r.received = stats.received.load(Ordering::Relaxed);
    r.lost = lost;
    r.duplicates = duplicates;
    r.errors =
        stats.errors.load(Ordering::Relaxed) + subs.conn.errors.load(Ordering::Relaxed) + invalid;
    r.latency = Latency::of(&stats.histogram());
    r.extra
        .insert("target_broadcasts_per_second".into(), rate.into());
    // How long each broadcast took to reach every subscriber: median and p99 over broadcasts.
    let mut reach: Vec<u64> = (0..issued.min(REACH_SLOTS as u64))
        .filter(|q| !failed.contains(q))
        .map(|q| subs.reach[q as usize].load(Ordering::Relaxed))
        .collect();
    reach.sort_unstable();
    if !reach.is_empty() {
        let at = |q: f64| reach[((reach.len() - 1) as f64 * q).round() as usize];
        r.extra
            .insert("broadcast_reach_p50_us".into(), at(0.5).into());
        r.extra
            .insert("broadcast_reach_p99_us".into(), at(0.99).into());
    }
    // Messages that arrived after one published later (possible with several publishes in flight).
    r.extra.insert("reordered".into(), d.reordered.into());
    r.extra
        .insert("publishes_in_flight".into(), inflight.into());
    r.extra.insert(
        "broadcasts_per_second".into(),
        (seq as f64 / secs.max(1e-9)).into(),
    );
    r.extra.insert(
        "deliveries_per_second".into(),
        (r.received as f64 / secs.max(1e-9)).into(),
    );
    if let (Some((u0, s0)), Some((u1, s1))) = (cpu_before, cpu_after) {
        let (user, sys) = (u1.saturating_sub(u0), s1.saturating_sub(s0));
        if r.received > 0 {
            r.extra.insert(
                "server_cpu_us_per_delivery".into(),
                ((user + sys) as f64 / r.received as f64).into(),
            );
        }
        r.extra.insert(
            "server_cpu_system_share".into(),
            (sys as f64 / (user + sys).max(1) as f64).into(),
        );
    }
    Ok(r)
}

/// `<peer>-broadcast`: `--connections` subscribers; one step at `--rate` broadcasts/s, or with
/// `--max` the steps of `--steps` (deliveries/s) until one fails the S4b rule. Returns the report
/// as JSON (a `stats::Report` for one step, a [`MaxRun`] with `--max`) and its summary.
pub(crate) async fn broadcast(
    peer: Peer,
    a: &PeerArgs,
    b: &BroadcastArgs,
) -> Result<(serde_json::Value, String)> {
    let url = a
        .url
        .clone()
        .unwrap_or_else(|| peer.default_url().to_owned());
    let target = Target::new(peer, &url, &a.channel, a.key.as_deref());
    procfs::check_nofile(a.connections as u64 + 64);
    if !b.max && b.rate <= 0.0 {
        bail!("give --rate (broadcasts/s) or --max");
    }
    let pids = server_pids(a);
    let subs = Subscribers::open(&target, a.connections, a.parallel, a.quiet).await?;
    let n = a.connections as u64;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(1)
        .build()?;
    let pad = "x".repeat(a.payload_bytes);
    let duration = Duration::from_secs_f64(a.duration.max(0.1));
    let scenario = format!("{}-broadcast", peer.name());
    let up = subs.up().max(1) as f64;
    let result = if b.max {
        let mut steps = Vec::new();
        for (k, &target_deliveries) in b.steps.iter().enumerate() {
            let rate = target_deliveries / up;
            let r = empty_report(
                scenario.clone(),
                params(
                    peer,
                    a,
                    &url,
                    serde_json::json!({ "rate": rate, "step": k, "publishers": b.publishers,
                        "target_deliveries_per_second": target_deliveries }),
                ),
                0.0,
            );
            let r = step(
                &subs,
                &http,
                &target,
                k as u64,
                rate,
                duration,
                &pad,
                b.publishers,
                &pids,
                r,
            )
            .await?;
            let s = Step::judged(target_deliveries, rate, n, serde_json::to_value(&r)?);
            if !a.quiet {
                eprintln!("{}", s.line());
            }
            let pass = s.pass;
            steps.push(s);
            if !pass {
                break;
            }
            tokio::time::sleep(STEP_PAUSE).await;
        }
        let run = MaxRun::new(
            format!("{scenario}-max"),
            peer.name(),
            params(
                peer,
                a,
                &url,
                serde_json::json!({ "steps": b.steps, "step_duration": a.duration, "publishers": b.publishers }),
            ),
            n,
            steps,
        );
        let summary = run.summary();
        (serde_json::to_value(&run)?, summary)
    } else {
        let r = empty_report(
            scenario,
            params(
                peer,
                a,
                &url,
                serde_json::json!({ "rate": b.rate, "publishers": b.publishers }),
            ),
            0.0,
        );
        let r = step(
            &subs,
            &http,
            &target,
            0,
            b.rate,
            duration,
            &pad,
            b.publishers,
            &pids,
            r,
        )
        .await?;
        let verdict = payload::judge(&serde_json::to_value(&r)?, n, b.rate);
        let mut summary = r.summary();
        summary.push_str(&format!(
            "  S4b rule: {}\n",
            if verdict.pass {
                "pass".to_owned()
            } else {
                format!("FAIL ({})", verdict.reason)
            }
        ));
        (serde_json::to_value(&r)?, summary)
    };
    subs.close().await;
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_of_each_peer() {
        let n = Target::new(Peer::Nchan, "http://127.0.0.1:8081/", "c1", None);
        assert_eq!(n.ws_url, "ws://127.0.0.1:8081/sub?id=c1");
        assert_eq!(n.publish_url, "http://127.0.0.1:8081/pub?id=c1");
        let s = Target::new(Peer::SocketIo, "http://127.0.0.1:3000", "ignored", None);
        assert_eq!(
            s.ws_url,
            "ws://127.0.0.1:3000/socket.io/?EIO=4&transport=websocket"
        );
        assert_eq!(s.publish_url, "http://127.0.0.1:3000/broadcast");
    }

    #[test]
    fn frames_are_classified_per_peer() {
        let p = payload::encode(0, 1, 2, "xx");
        assert_eq!(
            classify(Peer::Nchan, &p),
            Incoming::Payload(Cow::Borrowed("0:1:2:xx"))
        );
        let sio = format!(r#"42["msg","{p}"]"#);
        assert_eq!(
            classify(Peer::SocketIo, &sio),
            Incoming::Payload(Cow::Borrowed("0:1:2:xx"))
        );
        assert_eq!(
            classify(Peer::SocketIo, "2"),
            Incoming::Reply("3".to_owned())
        );
        assert_eq!(classify(Peer::SocketIo, "1"), Incoming::Closed);
        assert_eq!(classify(Peer::SocketIo, "41"), Incoming::Closed);
        assert_eq!(classify(Peer::SocketIo, "6"), Incoming::Ignore);
        assert_eq!(
            classify(Peer::SocketIo, r#"42["other","x"]"#),
            Incoming::Ignore
        );
        assert_eq!(
            classify(Peer::SocketIo, r#"42/chat,["msg","x"]"#),
            Incoming::Ignore
        );
        assert_eq!(classify(Peer::SocketIo, r#"42["msg",3]"#), Incoming::Bad);
        let frame = format!(
            "{{\"type\":1,\"target\":\"msg\",\"arguments\":[\"{p}\"]}}\u{1e}{{\"type\":6}}\u{1e}"
        );
        let got: Vec<_> = messages(Peer::Switchboard, &frame)
            .map(|m| classify(Peer::Switchboard, m))
            .collect();
        assert_eq!(
            got,
            [
                Incoming::Payload(Cow::Borrowed("0:1:2:xx")),
                Incoming::Ignore
            ]
        );
        assert_eq!(
            classify(Peer::Switchboard, r#"{"type":7,"error":"x"}"#),
            Incoming::Closed
        );
        assert_eq!(
            classify(
                Peer::Switchboard,
                r#"{"type":1,"target":"other","arguments":[]}"#
            ),
            Incoming::Bad
        );
        assert_eq!(messages(Peer::Nchan, "a\u{1e}b").count(), 1);
        assert_eq!(classify(Peer::SocketIo, "9"), Incoming::Bad);
    }
}
