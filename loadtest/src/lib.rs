//! `switchboard-loadtest`: the load generator for Switchboard's performance scenarios
//! (`/work/shared/design/performance.md` §5). Every scenario is a subcommand sharing the options
//! of [`Common`]; each returns a [`Report`] (one-screen summary, optional JSON file).
//!
//! - `s1-hold`: hold N connections with keep-alive pings; connected / dropped, broker RSS.
//! - `s2-connect`: full connects (negotiate POST + WebSocket + handshake) per second, with a
//!   connect-latency histogram.
//! - `s3-echo`: clients invoke `EchoReturn(payload)` closed-loop against a hub server (Default
//!   mode); round trips/s and latency.
//! - `s4-broadcast`: N connections; REST broadcasts at `--rate`/s carrying `[sender, seq, ts_us,
//!   pad]`; every connection checks no loss, no duplicate, in order; latency from the timestamp.
//! - `s6-rest-user`: REST send-to-user from C keep-alive clients to N users with one receiver
//!   each; requests/s, deliveries, latency.
//!
//! Latency is measured from the µs timestamp the sender puts in the payload to its receipt, into
//! HDR histograms (p50, p99, p99.9).

pub mod client;
pub mod stats;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use clap::{Args, Subcommand, ValueEnum};
use switchboard::protocol::{CompletionOutcome, HubMessage, Invocation, RawValue};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;

pub use crate::client::{Client, Target};
pub use crate::stats::{Report, Stats, Tracker};

/// Keep-alive ping interval of the clients (the SignalR default).
const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// How long receivers may take to drain after the last send.
const DRAIN: Duration = Duration::from_secs(5);

/// The hub protocol the clients speak.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Protocol {
    /// JSON text frames.
    Json,
    /// MessagePack binary frames.
    Messagepack,
}

impl From<Protocol> for switchboard::protocol::HubProtocol {
    fn from(p: Protocol) -> Self {
        match p {
            Protocol::Json => Self::Json,
            Protocol::Messagepack => Self::MessagePack,
        }
    }
}

/// Options shared by every scenario.
#[derive(Args, Clone, Debug)]
pub struct Common {
    /// Broker base URL.
    #[arg(long, default_value = "http://127.0.0.1:8080", global = true)]
    pub url: String,
    /// Access key of the broker (tokens are minted with it).
    #[arg(long, default_value = "", global = true)]
    pub key: String,
    /// Hub to use.
    #[arg(long, default_value = "load", global = true)]
    pub hub: String,
    /// Hub protocol of the clients.
    #[arg(long, value_enum, default_value = "json", global = true)]
    pub protocol: Protocol,
    /// Padding bytes in each message's payload.
    #[arg(long, default_value_t = 100, global = true)]
    pub payload_bytes: usize,
    /// Client connections (S1, S4, S6) or total connects (S2).
    #[arg(long, default_value_t = 1000, global = true)]
    pub connections: usize,
    /// Messages per second in total (0 = as fast as possible).
    #[arg(long, default_value_t = 0.0, global = true)]
    pub rate: f64,
    /// Seconds to run (hold time for S1; the longest run for S2).
    #[arg(long, default_value_t = 10.0, global = true)]
    pub duration: f64,
    /// Connections opened concurrently during the ramp (S2: concurrent connecting workers).
    #[arg(long, default_value_t = 200, global = true)]
    pub parallel: usize,
    /// Negotiate (POST /client/negotiate) before each WebSocket connect (always on for S2).
    #[arg(long, global = true)]
    pub negotiate: bool,
    /// Write the report as JSON to this file.
    #[arg(long, global = true)]
    pub json_out: Option<PathBuf>,
    /// No progress line.
    #[arg(long, global = true)]
    pub quiet: bool,
}

impl Common {
    /// Defaults for `url` and `key` (for tests and embedding).
    pub fn new(url: &str, key: &str) -> Self {
        Self {
            url: url.to_owned(),
            key: key.to_owned(),
            hub: "load".to_owned(),
            protocol: Protocol::Json,
            payload_bytes: 100,
            connections: 1000,
            rate: 0.0,
            duration: 10.0,
            parallel: 200,
            negotiate: false,
            json_out: None,
            quiet: true,
        }
    }

    fn target(&self) -> Target {
        Target::new(&self.url, &self.key, &self.hub, self.protocol.into())
    }

    fn params(&self, extra: serde_json::Value) -> serde_json::Value {
        let mut p = serde_json::json!({
            "url": self.url, "hub": self.hub,
            "protocol": switchboard::protocol::HubProtocol::from(self.protocol).name(),
            "payload_bytes": self.payload_bytes, "connections": self.connections,
            "rate": self.rate, "duration": self.duration, "parallel": self.parallel,
            "negotiate": self.negotiate,
        });
        if let (Some(p), serde_json::Value::Object(e)) = (p.as_object_mut(), extra) {
            p.extend(e);
        }
        p
    }

    fn duration(&self) -> Duration {
        Duration::from_secs_f64(self.duration.max(0.0))
    }
}

/// The scenarios.
#[derive(Subcommand, Clone, Debug)]
pub enum Scenario {
    /// S1: hold `--connections` connections for `--duration` s with keep-alive pings.
    S1Hold {
        /// The broker's pid: report its VmRSS before and after (from /proc/<pid>/status).
        #[arg(long)]
        server_pid: Option<u32>,
    },
    /// S2: `--connections` full connects (negotiate + WebSocket + handshake, then close) from
    /// `--parallel` workers, at most `--duration` s.
    S2Connect,
    /// S3: `--connections` clients invoke `EchoReturn(payload)` closed-loop (one in flight
    /// each; `--rate` > 0 paces them) for `--duration` s. Needs a hub server for `--hub` such as
    /// `cargo run --example echo` (hub `echo`) with the broker in Default mode.
    S3Echo,
    /// S4: `--connections` receivers; REST broadcasts at `--rate`/s for `--duration` s.
    S4Broadcast,
    /// S6: REST send-to-user from `--concurrency` keep-alive clients to `--connections` users
    /// (one receiver each) for `--duration` s, at `--rate`/s in total (0 = max).
    S6RestUser {
        /// Concurrent HTTP clients.
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
    },
}

/// Runs `scenario`, returning its report.
pub async fn run(common: &Common, scenario: &Scenario) -> Result<Report> {
    if common.key.is_empty() {
        bail!("--key is required (the broker's access key)");
    }
    match scenario {
        Scenario::S1Hold { server_pid } => s1_hold(common, *server_pid).await,
        Scenario::S2Connect => s2_connect(common).await,
        Scenario::S3Echo => s3_echo(common).await,
        Scenario::S4Broadcast => s4_broadcast(common).await,
        Scenario::S6RestUser { concurrency } => s6_rest_user(common, *concurrency).await,
    }
}

fn report(scenario: &str, params: serde_json::Value, stats: &Stats, seconds: f64) -> Report {
    Report {
        scenario: scenario.to_owned(),
        params,
        seconds,
        connected: 0,
        dropped: stats.dropped.load(Ordering::Relaxed),
        sent: stats.sent.load(Ordering::Relaxed),
        expected: 0,
        received: stats.received.load(Ordering::Relaxed),
        lost: 0,
        duplicates: 0,
        errors: stats.errors.load(Ordering::Relaxed),
        latency: stats::Latency::of(&stats.histogram()),
        extra: serde_json::Map::new(),
    }
}

fn http_client(pool: usize) -> Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .pool_max_idle_per_host(pool.max(1))
        .build()?)
}

/// Spawns one receiver per entry of `users` (`None` = anonymous), connecting at most `parallel`
/// at a time; each runs until `done` fires and returns its tracker (`None` if it never connected).
/// Returns once every connection is up or has failed.
async fn open_receivers(
    common: &Common,
    users: Vec<Option<String>>,
    stats: &Arc<Stats>,
    done: &watch::Sender<bool>,
) -> Result<Vec<JoinHandle<Option<Tracker>>>> {
    let target = Arc::new(common.target());
    let http = if common.negotiate {
        Some(http_client(common.parallel)?)
    } else {
        None
    };
    let sem = Arc::new(Semaphore::new(common.parallel.max(1)));
    let n = users.len() as u64;
    let settled = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::with_capacity(users.len());
    for (i, user) in users.into_iter().enumerate() {
        let permit = sem.clone().acquire_owned().await?;
        let (target, stats, http, settled) =
            (target.clone(), stats.clone(), http.clone(), settled.clone());
        let mut done = done.subscribe();
        tasks.push(tokio::spawn(async move {
            let connected = Client::connect(&target, user.as_deref(), http.as_ref()).await;
            drop(permit);
            settled.fetch_add(1, Ordering::Relaxed);
            let Ok(mut client) = connected else {
                stats.errors.fetch_add(1, Ordering::Relaxed);
                return None;
            };
            stats.connected.fetch_add(1, Ordering::Relaxed);
            let mut tracker = Tracker::default();
            let mut ping =
                tokio::time::interval_at(tokio::time::Instant::now() + KEEP_ALIVE, KEEP_ALIVE);
            let ok = loop {
                tokio::select! {
                    m = client.next_message() => match m {
                        Ok(Some(HubMessage::Invocation(inv))) if inv.target == client::TARGET => {
                            let now = client::now_us();
                            match client::parse_load(&inv.arguments) {
                                Some((sender, seq, ts)) => {
                                    tracker.on_message(sender, seq);
                                    stats.received.fetch_add(1, Ordering::Relaxed);
                                    stats.record_us(i, now.saturating_sub(ts));
                                }
                                None => { stats.errors.fetch_add(1, Ordering::Relaxed); }
                            }
                        }
                        Ok(Some(HubMessage::Close(_)) | None) | Err(_) => break false,
                        Ok(Some(_)) => {}
                    },
                    _ = ping.tick() => if client.ping().await.is_err() { break false },
                    _ = done.changed() => break true,
                }
            };
            stats.connected.fetch_sub(1, Ordering::Relaxed);
            if ok {
                client.close().await;
            } else {
                stats.dropped.fetch_add(1, Ordering::Relaxed);
            }
            Some(tracker)
        }));
    }
    while settled.load(Ordering::Relaxed) < n {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(tasks)
}

/// VmRSS of `pid` in KiB.
fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

async fn s1_hold(common: &Common, server_pid: Option<u32>) -> Result<Report> {
    let stats = Arc::new(Stats::new());
    let _progress = stats.progress(common.quiet);
    let rss_before = server_pid.and_then(rss_kib);
    let (done, _) = watch::channel(false);
    let start = Instant::now();
    let tasks = open_receivers(common, vec![None; common.connections], &stats, &done).await?;
    let ramp = start.elapsed().as_secs_f64();
    let up_after_ramp = stats.connected.load(Ordering::Relaxed);
    tokio::time::sleep(common.duration()).await;
    let rss_after = server_pid.and_then(rss_kib);
    let still_up = stats.connected.load(Ordering::Relaxed);
    let _ = done.send(true);
    for t in tasks {
        let _ = t.await;
    }
    let mut r = report(
        "s1-hold",
        common.params(serde_json::json!({ "server_pid": server_pid })),
        &stats,
        common.duration,
    );
    r.connected = up_after_ramp;
    r.extra.insert("ramp_seconds".into(), ramp.into());
    r.extra.insert(
        "connects_per_second".into(),
        (up_after_ramp as f64 / ramp.max(1e-9)).into(),
    );
    r.extra
        .insert("still_connected_at_end".into(), still_up.into());
    if let (Some(b), Some(a)) = (rss_before, rss_after) {
        r.extra.insert("server_rss_before_kib".into(), b.into());
        r.extra.insert("server_rss_after_kib".into(), a.into());
        if still_up > 0 {
            let per = (a.saturating_sub(b) * 1024) as f64 / still_up as f64;
            r.extra
                .insert("server_rss_bytes_per_connection".into(), per.into());
        }
    }
    Ok(r)
}

async fn s2_connect(common: &Common) -> Result<Report> {
    let stats = Arc::new(Stats::new());
    let _progress = stats.progress(common.quiet);
    let target = Arc::new(common.target());
    let http = http_client(common.parallel)?;
    let total = common.connections as u64;
    let claimed = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + common.duration();
    let start = Instant::now();
    let mut workers = Vec::new();
    for w in 0..common.parallel.max(1) {
        let (target, http, stats, claimed) =
            (target.clone(), http.clone(), stats.clone(), claimed.clone());
        workers.push(tokio::spawn(async move {
            while Instant::now() < deadline && claimed.fetch_add(1, Ordering::Relaxed) < total {
                let t0 = Instant::now();
                match Client::connect(&target, None, Some(&http)).await {
                    Ok(c) => {
                        stats.record_us(w, t0.elapsed().as_micros() as u64);
                        stats.connects.fetch_add(1, Ordering::Relaxed);
                        c.close().await;
                    }
                    Err(_) => {
                        stats.errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    for w in workers {
        w.await?;
    }
    let secs = start.elapsed().as_secs_f64();
    let mut r = report(
        "s2-connect",
        common.params(serde_json::json!({})),
        &stats,
        secs,
    );
    let connects = stats.connects.load(Ordering::Relaxed);
    r.connected = connects;
    r.expected = total;
    r.extra.insert("connects".into(), connects.into());
    r.extra.insert(
        "connects_per_second".into(),
        (connects as f64 / secs.max(1e-9)).into(),
    );
    Ok(r)
}

/// Sleeps until the `k`-th send of a paced sender (no pacing when `rate` is 0).
async fn pace(start: tokio::time::Instant, k: u64, rate: f64) {
    if rate > 0.0 {
        tokio::time::sleep_until(start + Duration::from_secs_f64(k as f64 / rate)).await;
    }
}

/// Waits until `stats.received` reaches `expected` or the drain time is over.
async fn drain(stats: &Stats, expected: u64) {
    let until = Instant::now() + DRAIN;
    while stats.received.load(Ordering::Relaxed) < expected && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Sums the trackers: `sent_to(i)` is what receiver `i` should have got from sender
/// `sender_of(i)`. Fills `connected`, `expected`, `lost`, `duplicates` of `r`.
async fn settle(
    r: &mut Report,
    tasks: Vec<JoinHandle<Option<Tracker>>>,
    sent_to: impl Fn(usize) -> u64,
    sender_of: impl Fn(usize) -> u64,
) -> Result<()> {
    for (i, t) in tasks.into_iter().enumerate() {
        let Some(tr) = t.await? else { continue };
        r.connected += 1;
        let sent = sent_to(i);
        r.expected += sent;
        r.lost += tr.gaps + sent.saturating_sub(tr.next_from(sender_of(i)));
        r.duplicates += tr.duplicates;
    }
    Ok(())
}

async fn s4_broadcast(common: &Common) -> Result<Report> {
    let stats = Arc::new(Stats::new());
    let _progress = stats.progress(common.quiet);
    let (done, _) = watch::channel(false);
    let tasks = open_receivers(common, vec![None; common.connections], &stats, &done).await?;
    let up = stats.connected.load(Ordering::Relaxed);
    let target = common.target();
    let (token, url) = target.rest(&format!("/api/hubs/{}/:send", target.hub));
    let http = http_client(1)?;
    let pad = client::padding(common.payload_bytes);
    let start = tokio::time::Instant::now();
    let end = start + common.duration();
    let (mut seq, mut attempts) = (0u64, 0u64);
    while tokio::time::Instant::now() < end {
        pace(start, attempts, common.rate).await;
        attempts += 1;
        let body = format!(
            "{{\"target\":\"{}\",\"arguments\":{}}}",
            client::TARGET,
            client::json_arguments(0, seq, client::now_us(), &pad)
        );
        let r = http
            .post(&url)
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await;
        match r {
            Ok(r) if r.status().as_u16() == 202 => {
                seq += 1;
                stats.sent.fetch_add(1, Ordering::Relaxed);
            }
            _ => {
                stats.errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    let secs = start.elapsed().as_secs_f64();
    drain(&stats, seq * up).await;
    let _ = done.send(true);
    let mut r = report(
        "s4-broadcast",
        common.params(serde_json::json!({})),
        &stats,
        secs,
    );
    settle(&mut r, tasks, |_| seq, |_| 0).await?;
    r.received = stats.received.load(Ordering::Relaxed);
    r.errors = stats.errors.load(Ordering::Relaxed);
    r.extra.insert(
        "broadcasts_per_second".into(),
        (seq as f64 / secs.max(1e-9)).into(),
    );
    r.extra.insert(
        "deliveries_per_second".into(),
        (r.received as f64 / secs.max(1e-9)).into(),
    );
    Ok(r)
}

async fn s6_rest_user(common: &Common, concurrency: usize) -> Result<Report> {
    let n = common.connections.max(1);
    let c = concurrency.clamp(1, n);
    let stats = Arc::new(Stats::new());
    let _progress = stats.progress(common.quiet);
    let (done, _) = watch::channel(false);
    let users: Vec<Option<String>> = (0..n).map(|j| Some(format!("u{j}"))).collect();
    let tasks = open_receivers(common, users, &stats, &done).await?;
    let target = Arc::new(common.target());
    let http = http_client(c)?;
    let sent_per_user: Arc<Vec<AtomicU64>> = Arc::new((0..n).map(|_| AtomicU64::new(0)).collect());
    let pad = Arc::new(client::padding(common.payload_bytes));
    let start = tokio::time::Instant::now();
    let end = start + common.duration();
    let per_sender_rate = common.rate / c as f64;
    let mut senders = Vec::new();
    for s in 0..c {
        let (target, http, stats, sent_per_user, pad) = (
            target.clone(),
            http.clone(),
            stats.clone(),
            sent_per_user.clone(),
            pad.clone(),
        );
        senders.push(tokio::spawn(async move {
            let mine: Vec<(usize, String, String)> = (s..n)
                .step_by(c)
                .map(|j| {
                    let (tok, url) =
                        target.rest(&format!("/api/hubs/{}/users/u{j}/:send", target.hub));
                    (j, tok, url)
                })
                .collect();
            let mut seqs = vec![0u64; mine.len()];
            let mut attempts = 0u64;
            while tokio::time::Instant::now() < end {
                pace(start, attempts, per_sender_rate).await;
                let k = (attempts % mine.len() as u64) as usize;
                attempts += 1;
                let (_, tok, url) = &mine[k];
                let body = format!(
                    "{{\"target\":\"{}\",\"arguments\":{}}}",
                    client::TARGET,
                    client::json_arguments(s as u64, seqs[k], client::now_us(), &pad)
                );
                let r = http
                    .post(url)
                    .bearer_auth(tok)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await;
                match r {
                    Ok(r) if r.status().as_u16() == 202 => {
                        seqs[k] += 1;
                        stats.sent.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => {
                        stats.errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            for (k, (j, _, _)) in mine.iter().enumerate() {
                sent_per_user[*j].store(seqs[k], Ordering::Relaxed);
            }
        }));
    }
    for s in senders {
        s.await?;
    }
    let secs = start.elapsed().as_secs_f64();
    let sent = stats.sent.load(Ordering::Relaxed);
    drain(&stats, sent).await;
    let _ = done.send(true);
    let mut r = report(
        "s6-rest-user",
        common.params(serde_json::json!({ "concurrency": c })),
        &stats,
        secs,
    );
    settle(
        &mut r,
        tasks,
        |j| sent_per_user[j].load(Ordering::Relaxed),
        |j| (j % c) as u64,
    )
    .await?;
    r.received = stats.received.load(Ordering::Relaxed);
    r.errors = stats.errors.load(Ordering::Relaxed);
    r.extra.insert(
        "requests_per_second".into(),
        (sent as f64 / secs.max(1e-9)).into(),
    );
    r.extra.insert(
        "deliveries_per_second".into(),
        (r.received as f64 / secs.max(1e-9)).into(),
    );
    Ok(r)
}

/// Timeout of one echo round trip.
const ECHO_TIMEOUT: Duration = Duration::from_secs(10);

/// Connects `n` clients, at most `parallel` at a time; failures are counted as errors.
async fn connect_all(common: &Common, stats: &Arc<Stats>) -> Result<Vec<Client>> {
    let target = Arc::new(common.target());
    let http = if common.negotiate {
        Some(http_client(common.parallel)?)
    } else {
        None
    };
    let sem = Arc::new(Semaphore::new(common.parallel.max(1)));
    let mut tasks = Vec::with_capacity(common.connections);
    for _ in 0..common.connections {
        let permit = sem.clone().acquire_owned().await?;
        let (target, http) = (target.clone(), http.clone());
        tasks.push(tokio::spawn(async move {
            let c = Client::connect(&target, None, http.as_ref()).await;
            drop(permit);
            c
        }));
    }
    let mut clients = Vec::with_capacity(tasks.len());
    for t in tasks {
        match t.await? {
            Ok(c) => {
                stats.connected.fetch_add(1, Ordering::Relaxed);
                clients.push(c);
            }
            Err(_) => {
                stats.errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    Ok(clients)
}

/// One `EchoReturn` round trip; `Ok(false)` when the answer was wrong or missing.
async fn echo_once(client: &mut Client, id: &str, args: RawValue) -> Result<Option<RawValue>> {
    client
        .send(&HubMessage::Invocation(Invocation {
            headers: Vec::new(),
            invocation_id: Some(id.to_owned()),
            target: "EchoReturn".to_owned(),
            arguments: args,
            stream_ids: Vec::new(),
        }))
        .await?;
    loop {
        match client.next_message().await? {
            Some(HubMessage::Completion(c)) if c.invocation_id == id => {
                return Ok(match c.outcome {
                    CompletionOutcome::Result(v) => Some(v),
                    _ => None,
                });
            }
            Some(HubMessage::Close(_)) | None => bail!("connection closed"),
            Some(_) => {}
        }
    }
}

async fn s3_echo(common: &Common) -> Result<Report> {
    let stats = Arc::new(Stats::new());
    let _progress = stats.progress(common.quiet);
    let clients = connect_all(common, &stats).await?;
    let protocol = switchboard::protocol::HubProtocol::from(common.protocol);
    let pad = Arc::new(client::padding(common.payload_bytes));
    let per_client_rate = common.rate / clients.len().max(1) as f64;
    let start = tokio::time::Instant::now();
    let end = start + common.duration();
    let mut tasks = Vec::with_capacity(clients.len());
    for (i, mut client) in clients.into_iter().enumerate() {
        let (stats, pad) = (stats.clone(), pad.clone());
        tasks.push(tokio::spawn(async move {
            let mut tracker = Tracker::default();
            let mut seq = 0u64;
            let mut ping = tokio::time::Instant::now();
            while tokio::time::Instant::now() < end {
                pace(start, seq, per_client_rate).await;
                if ping.elapsed() >= KEEP_ALIVE {
                    ping = tokio::time::Instant::now();
                    if client.ping().await.is_err() {
                        stats.dropped.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                }
                let args = client::echo_arguments(protocol, i as u64, seq, client::now_us(), &pad);
                stats.sent.fetch_add(1, Ordering::Relaxed);
                let id = seq.to_string();
                seq += 1;
                match tokio::time::timeout(ECHO_TIMEOUT, echo_once(&mut client, &id, args)).await {
                    Ok(Ok(Some(v))) => match client::parse_load(&v) {
                        Some((sender, q, ts)) if sender == i as u64 => {
                            tracker.on_message(sender, q);
                            stats.received.fetch_add(1, Ordering::Relaxed);
                            stats.record_us(i, client::now_us().saturating_sub(ts));
                        }
                        _ => {
                            stats.errors.fetch_add(1, Ordering::Relaxed);
                        }
                    },
                    Ok(Ok(None)) => {
                        stats.errors.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(Err(_)) | Err(_) => {
                        stats.errors.fetch_add(1, Ordering::Relaxed);
                        stats.dropped.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                }
            }
            client.close().await;
            (seq, tracker)
        }));
    }
    let mut sent_by = Vec::with_capacity(tasks.len());
    let mut trackers = Vec::with_capacity(tasks.len());
    for t in tasks {
        let (seq, tr) = t.await?;
        sent_by.push(seq);
        trackers.push(tokio::spawn(async move { Some(tr) }));
    }
    let secs = start.elapsed().as_secs_f64();
    let mut r = report(
        "s3-echo",
        common.params(serde_json::json!({})),
        &stats,
        secs,
    );
    settle(&mut r, trackers, |i| sent_by[i], |i| i as u64).await?;
    r.extra.insert(
        "round_trips_per_second".into(),
        (r.received as f64 / secs.max(1e-9)).into(),
    );
    Ok(r)
}
