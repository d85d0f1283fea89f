//! `switchboard-loadtest`: the load generator for Switchboard's performance scenarios
//! (`docs/performance.md#scenarios`). Every scenario is a subcommand sharing the
//! options of [`Common`]; each returns a [`Report`] (one-screen summary, optional JSON file).
//!
//! | subcommand | scenario |
//! | --- | --- |
//! | `s1-hold` | hold N connections (WebSockets, SSE or long polling) with keep-alive; broker RSS per connection |
//! | `s2-connect` | full connects (negotiate + WebSocket + handshake) per second, connect latency |
//! | `s3-echo` | `EchoReturn` closed-loop against a hub server (Default mode) |
//! | `s3b-echo` | echo inside the service: each client sends to its own connection through the REST API, closed-loop |
//! | `s4-broadcast` | REST broadcasts to N connections at `--rate` from `--senders` concurrent senders |
//! | `s4b-max` | broadcast rate raised step by step until p99 > 1 s or loss; the highest passing step |
//! | `s5-groups` | G groups of K, one sender stream per group; or `--churn`: group add/remove operations/s |
//! | `s6-rest-user` | REST send-to-user from C keep-alive clients |
//! | `s7-upstream` | Serverless invocations through the built-in upstream receiver; upstream calls/s |
//! | `s8-fallback` | SSE and long-polling clients (and optionally WebSockets) under broadcast, per transport |
//! | `s9-slow-consumer` | S4a with one client that stops reading: it is cut, the others are not hurt |
//! | `s10-soak` | S4-style broadcast held for a long time; RSS drift, loss and p99 per interval |
//! | `s11-reconnect` | stateful reconnect of 10 % of the connections during a broadcast: no gap, no duplicate |
//! | `merge` | sums the JSON reports of generator processes run in parallel |
//!
//! Load messages carry `[sender, seq, ts_us, pad]`: every receiver checks order, gaps and
//! duplicates per sender stream ([`Tracker`]) and measures latency from the timestamp into HDR
//! histograms (p50, p99, p99.9). `--workers N` spreads the receivers of S1, S4, S4b, S6, S8 and
//! S10 over N processes ([`workers`], which also shows how to run and `merge` several generator
//! processes by hand), since one process may hold at most 20,000 open files.
//!
//! `--report FILE.svg|FILE.html` draws the run for people: throughput and latency (p50, p90,
//! p99, max) per second, sampled once a second off the hot path ([`timeline`]) and merged over
//! worker processes, drawn by [`render`] (the HTML page adds the summary table).
//!
//! Pointing at a broker: `--connection-string` (or `SWITCHBOARD_CONNECTION_STRING`) in Azure's
//! format, `Endpoint=http://127.0.0.1;Port=8080;AccessKey=<key>;Version=1.0;`, parsed with
//! [`switchboard_sdk::ConnectionString`]: the endpoint (with `Port`) is the broker URL, the
//! access key mints the tokens; an explicit `--url` or `--key` overrides its part. `--url`
//! and `--key` alone work as before.
//!
//! A failing run says so ([`verdict`]): it stops early when no connection came up after the
//! connect phase, or when errors dominate (at least 10 errors, and more errors than successes,
//! over the last 5 s); a finished run with more errors than connections and messages fails too.
//! Errors are counted by kind ([`failure::ErrorKind`]: `unauthorized` with the broker's 401
//! message, `http_status`, `connection_refused` naming the URL, `timeout`, `tls`, `dns`,
//! `closed_by_server` with its Close reason, `protocol`, `check`, `other`), each with its first
//! message, in the summary and in the JSON report (`error_kinds`, `failure`, `stopped_early`);
//! worker processes' kinds are merged into the parent's report.
//!
//! Exit codes of the binary: 0 the run succeeded; 1 the run failed (no connection came up,
//! errors dominated, the broker was unreachable, a file could not be written), with one line
//! `switchboard-loadtest: <why>` on stderr; 2 a usage error (clap's, or the options checked by
//! [`check_usage`] and a connection string that does not parse).

pub mod client;
pub mod failure;
pub mod fallback;
pub mod pool;
pub mod render;
pub mod scenario;
pub mod sender;
pub mod stats;
pub mod timeline;
pub mod tls;
pub mod upstream;
pub mod verdict;
pub mod workers;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Result, bail};
use clap::{Args, Subcommand, ValueEnum};
use serde::{Deserialize, Serialize};

pub use crate::client::{Client, Target};
pub use crate::stats::{Report, Stats, Tracker};

/// Keep-alive ping interval of the clients (the SignalR default).
pub(crate) const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// How long receivers may take to drain after the last send.
pub(crate) const DRAIN: Duration = Duration::from_secs(5);

/// The hub protocol the clients speak.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
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

/// The transport of receiving clients.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
pub enum Transport {
    /// WebSockets.
    Websockets,
    /// Server-Sent Events (text only: JSON).
    Sse,
    /// Long polling.
    LongPolling,
}

impl Transport {
    /// The name used in reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::Websockets => "websockets",
            Self::Sse => "sse",
            Self::LongPolling => "long-polling",
        }
    }
}

/// Options shared by every scenario.
#[derive(Args, Clone, Debug)]
pub struct Common {
    /// The broker's connection string, in Azure's format
    /// (`Endpoint=http://127.0.0.1;Port=8080;AccessKey=<key>;Version=1.0;`): sets the broker URL
    /// (Endpoint with Port) and the access key; an explicit --url or --key wins.
    #[arg(
        long,
        env = "SWITCHBOARD_CONNECTION_STRING",
        hide_env_values = true,
        global = true,
        value_name = "CS"
    )]
    pub connection_string: Option<String>,
    /// Broker base URL (default: the connection string's endpoint, else http://127.0.0.1:8080).
    #[arg(long, default_value = "http://127.0.0.1:8080", global = true)]
    pub url: String,
    /// Where the receivers connect, when not `--url` (repeatable; with `--workers`, worker `w`
    /// connects to the `w mod n`-th; S5 takes one): the nodes of a cluster, with senders and
    /// REST calls at `--url` (S12).
    #[arg(long = "receiver-url", global = true)]
    pub receiver_urls: Vec<String>,
    /// Access key of the broker (tokens are minted with it); required unless the connection
    /// string gives it.
    #[arg(long, default_value = "", hide_default_value = true, global = true)]
    pub key: String,
    /// A PEM file of CA certificates to trust for an https:// broker, besides the system's
    /// (SSL_CERT_FILE and SSL_CERT_DIR apply too).
    #[arg(long = "ca-file", value_name = "FILE", global = true)]
    pub ca_file: Option<PathBuf>,
    /// Hub to use.
    #[arg(long, default_value = "load", global = true)]
    pub hub: String,
    /// Hub protocol of the clients.
    #[arg(long, value_enum, default_value = "json", global = true)]
    pub protocol: Protocol,
    /// Padding bytes in each message's payload.
    #[arg(long, default_value_t = 100, global = true, value_parser = count)]
    pub payload_bytes: usize,
    /// Client connections (S1, S3, S4, S6–S11) or total connects (S2).
    #[arg(long, default_value_t = 1000, global = true, value_parser = count)]
    pub connections: usize,
    /// Messages per second in total (0 = as fast as possible).
    #[arg(long, default_value_t = 0.0, global = true, value_parser = rate)]
    pub rate: f64,
    /// Seconds to run (hold time for S1; the longest run for S2; one step for S4b).
    #[arg(long, default_value_t = 10.0, global = true, value_parser = non_negative)]
    pub duration: f64,
    /// Connections opened concurrently during the ramp (S2: concurrent connecting workers).
    #[arg(long, default_value_t = 200, global = true, value_parser = count)]
    pub parallel: usize,
    /// Negotiate (POST /client/negotiate) before each WebSocket connect (always on for S2 and
    /// for the scenarios that need connection ids or fallback transports).
    #[arg(long, global = true)]
    pub negotiate: bool,
    /// Spread the receivers over this many generator processes (S1, S4, S4b, S6, S8, S10); 0 =
    /// all in this process. Each process may hold at most 20,000 open files.
    #[arg(long, default_value_t = 0, global = true, value_parser = count)]
    pub workers: usize,
    /// The executable started for `--workers` (default: this one).
    #[arg(long, global = true, hide = true)]
    pub worker_exe: Option<PathBuf>,
    /// Write the report as JSON to this file (with `--report`, it holds the per-second samples
    /// too, so `merge --report` can draw the runs of several processes).
    #[arg(long, global = true)]
    pub json_out: Option<PathBuf>,
    /// Write a report with throughput and latency (p50, p90, p99, max) per second to this
    /// file: `.svg` for the charts alone, `.html` for one self-contained page with the charts
    /// and the summary table. Repeatable (`--report run.svg --report run.html`).
    #[arg(long, global = true, value_name = "FILE.svg|FILE.html")]
    pub report: Vec<PathBuf>,
    /// No progress line.
    #[arg(long, global = true)]
    pub quiet: bool,
}

impl Common {
    /// Defaults for `url` and `key` (for tests and embedding).
    pub fn new(url: &str, key: &str) -> Self {
        Self {
            connection_string: None,
            url: url.to_owned(),
            receiver_urls: Vec::new(),
            key: key.to_owned(),
            ca_file: None,
            hub: "load".to_owned(),
            protocol: Protocol::Json,
            payload_bytes: 100,
            connections: 1000,
            rate: 0.0,
            duration: 10.0,
            parallel: 200,
            negotiate: false,
            workers: 0,
            worker_exe: None,
            json_out: None,
            report: Vec::new(),
            quiet: true,
        }
    }

    /// Applies `--connection-string`, if given: its endpoint (with `Port`) becomes the URL
    /// unless `url_given`, its access key the key unless `key_given`. The error (a string that
    /// does not parse) never quotes the string, which holds the key.
    pub fn apply_connection_string(&mut self, url_given: bool, key_given: bool) -> Result<()> {
        let Some(text) = &self.connection_string else {
            return Ok(());
        };
        let cs = switchboard_sdk::ConnectionString::parse(text)
            .map_err(|e| anyhow::anyhow!("--connection-string: {e}"))?;
        if !url_given {
            self.url = cs.endpoint();
        }
        if !key_given {
            cs.access_key().clone_into(&mut self.key);
        }
        Ok(())
    }

    pub(crate) fn target(&self) -> Target {
        Target::new(&self.url, &self.key, &self.hub, self.protocol.into())
    }

    pub(crate) fn params(&self, extra: serde_json::Value) -> serde_json::Value {
        let mut p = serde_json::json!({
            "url": self.url, "receiver_urls": self.receiver_urls, "hub": self.hub,
            "protocol": switchboard::protocol::HubProtocol::from(self.protocol).name(),
            "payload_bytes": self.payload_bytes, "connections": self.connections,
            "rate": self.rate, "duration": self.duration, "parallel": self.parallel,
            "negotiate": self.negotiate, "workers": self.workers,
        });
        if let (Some(p), serde_json::Value::Object(e)) = (p.as_object_mut(), extra) {
            p.extend(e);
        }
        p
    }

    pub(crate) fn duration(&self) -> Duration {
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
        /// Transport of the held connections (SSE and long polling always negotiate).
        #[arg(long, value_enum, default_value = "websockets")]
        transport: Transport,
        /// Each connection joins one of this many groups after the ramp (it connects as user
        /// `h<index>`, added with `PUT /api/hubs/{hub}/users/h<index>/groups/g<index % N>?ttl=0`);
        /// 0 = no group.
        #[arg(long, default_value_t = 0, value_parser = count)]
        groups: usize,
    },
    /// S2: `--connections` full connects (negotiate + WebSocket + handshake, then close) from
    /// `--parallel` workers, at most `--duration` s.
    S2Connect,
    /// S3: `--connections` clients invoke `EchoReturn(payload)` closed-loop (one in flight
    /// each; `--rate` > 0 paces them) for `--duration` s. Needs a hub server for `--hub` such as
    /// `cargo run --example echo` (hub `echo`) with the broker in Default mode.
    S3Echo,
    /// S3b: echo inside the service (Serverless mode, no app server): each of `--connections`
    /// clients sends its payload to its own connection with `POST
    /// /api/v1/hubs/{hub}/connections/{id}` and waits for it on its socket, closed-loop
    /// (`--rate` > 0 paces them); round trips/s and latency.
    S3bEcho,
    /// S4: `--connections` receivers; REST broadcasts at `--rate`/s for `--duration` s from
    /// `--senders` concurrent senders (one sequence each).
    S4Broadcast {
        /// Concurrent REST senders, each with its own sequence stream.
        #[arg(long, default_value_t = 1, value_parser = count)]
        senders: usize,
    },
    /// S4b: maximum broadcast. Steps of `--duration` s from `--start-rate` broadcasts/s,
    /// multiplied by `--factor` each step, until p99 > `--max-p99-ms`, a loss, or the senders
    /// cannot reach the rate; reports the highest passing step (deliveries/s).
    S4bMax {
        /// Concurrent REST senders, each with its own sequence stream.
        #[arg(long, default_value_t = 8, value_parser = count)]
        senders: usize,
        /// Broadcasts per second of the first step.
        #[arg(long, default_value_t = 5.0, value_parser = non_negative)]
        start_rate: f64,
        /// Rate multiplier between steps.
        #[arg(long, default_value_t = 1.5, value_parser = non_negative)]
        factor: f64,
        /// Most steps.
        #[arg(long, default_value_t = 15, value_parser = count)]
        max_steps: usize,
        /// A step fails when its p99 exceeds this (Azure's criterion: 1 s).
        #[arg(long, default_value_t = 1000)]
        max_p99_ms: u64,
    },
    /// S5: `--groups` groups of `--group-size` connections (negotiated, added with REST PUT
    /// groups/{g}/connections/{id}); one sender stream per group (REST group send) at `--rate`
    /// sends/s in total from `--senders` clients. With `--churn`: `--connections` connections
    /// and `--groups` groups; `--senders` clients add and remove connections to and from groups
    /// (PUT/DELETE) at `--rate` operations/s (0 = max); operations/s and their latency; the final
    /// membership is checked against the group listing.
    S5Groups {
        /// Groups.
        #[arg(long, default_value_t = 1000, value_parser = count)]
        groups: usize,
        /// Connections per group (not with --churn).
        #[arg(long, default_value_t = 10, value_parser = count)]
        group_size: usize,
        /// Concurrent REST clients.
        #[arg(long, default_value_t = 16, value_parser = count)]
        senders: usize,
        /// Join/leave churn instead of group sends.
        #[arg(long)]
        churn: bool,
    },
    /// S6: REST send-to-user from `--concurrency` keep-alive clients to `--connections` users
    /// (one receiver each) for `--duration` s, at `--rate`/s in total (0 = max).
    S6RestUser {
        /// Concurrent HTTP clients.
        #[arg(long, default_value_t = 64, value_parser = count)]
        concurrency: usize,
    },
    /// S7: Serverless mode with the built-in upstream receiver on `--upstream-listen`:
    /// `--connections` clients invoke `Echo` closed-loop (`--rate` > 0 paces them); the
    /// receiver answers with the payload. Upstream calls/s (invocations + connected +
    /// disconnected), latency client → upstream and client → Completion. Start the broker with
    /// `switchboard serve --mode serverless --access-key KEY --upstream
    /// "http://127.0.0.1:18090/upstream/{hub}/{category}/{event}"` (the command is printed).
    S7Upstream {
        /// Where the upstream receiver listens.
        #[arg(long, default_value = "127.0.0.1:18090")]
        upstream_listen: std::net::SocketAddr,
        /// Threads of the upstream receiver.
        #[arg(long, default_value_t = 2, value_parser = count)]
        upstream_workers: usize,
    },
    /// S8: `--sse` Server-Sent Events and `--long-polling` long-polling clients (and
    /// `--websockets` WebSocket clients for comparison) under REST broadcast at `--rate`/s for
    /// `--duration` s; deliveries/s, loss, duplicates and latency per transport. SSE clients
    /// always speak JSON (SSE is text only).
    S8Fallback {
        /// SSE clients (default: --connections).
        #[arg(long, value_parser = count)]
        sse: Option<usize>,
        /// Long-polling clients (default: --connections).
        #[arg(long, value_parser = count)]
        long_polling: Option<usize>,
        /// WebSocket clients for comparison.
        #[arg(long, default_value_t = 0, value_parser = count)]
        websockets: usize,
        /// Concurrent REST senders.
        #[arg(long, default_value_t = 1, value_parser = count)]
        senders: usize,
    },
    /// S9: slow consumer. A baseline S4-style broadcast phase, then the same phase while one
    /// connection (with a small receive buffer) stops reading. Reports whether and when the
    /// broker cut it (the connection disappears from the REST API; the outbox-overflow counter
    /// at /metrics), and the others' p99 against the baseline; the others must lose nothing.
    S9SlowConsumer {
        /// Concurrent REST senders.
        #[arg(long, default_value_t = 1, value_parser = count)]
        senders: usize,
        /// Seconds of the baseline phase (default: --duration).
        #[arg(long, value_parser = non_negative)]
        baseline_duration: Option<f64>,
        /// SO_RCVBUF of the slow connection's socket.
        #[arg(long, default_value_t = 4096, value_parser = count)]
        slow_rcvbuf: usize,
        /// Seconds to wait after the slow phase for the broker to cut the slow connection
        /// (it may first wait out `limits.send_timeout_secs`).
        #[arg(long, default_value_t = 15.0, value_parser = non_negative)]
        cut_wait: f64,
        /// Control run: the "slow" connection keeps reading, so the others' p99 change shows
        /// what the two phases differ by without a slow consumer.
        #[arg(long)]
        control: bool,
    },
    /// S10: soak. Broadcast at `--rate`/s to `--connections` for `--duration` s; every
    /// `--interval` s sample the broker's RSS (`--server-pid`), deliveries, loss and p99.
    S10Soak {
        /// The broker's pid (RSS samples).
        #[arg(long)]
        server_pid: Option<u32>,
        /// Seconds between samples.
        #[arg(long, default_value_t = 10.0, value_parser = non_negative)]
        interval: f64,
        /// Concurrent REST senders.
        #[arg(long, default_value_t = 1, value_parser = count)]
        senders: usize,
    },
    /// S11: stateful reconnect. `--connections` clients negotiate with
    /// `useStatefulReconnect=true` (handshake version 2, Acks); during an S4-style broadcast,
    /// `--fraction` of them lose their TCP connection and come back with the same connection
    /// token after `--down-ms`; every client must see every message once, in order.
    S11Reconnect {
        /// Share of the connections that are killed and resumed.
        #[arg(long, default_value_t = 0.1, value_parser = non_negative)]
        fraction: f64,
        /// Milliseconds without a connection.
        #[arg(long, default_value_t = 500)]
        down_ms: u64,
        /// When the kills happen, as a share of --duration.
        #[arg(long, default_value_t = 0.3, value_parser = non_negative)]
        kill_at: f64,
        /// Concurrent REST senders.
        #[arg(long, default_value_t = 1, value_parser = count)]
        senders: usize,
    },
    /// Merge the JSON reports of generator processes run in parallel (see --json-out): counts
    /// are summed, rates added, latency percentiles are the worst of the inputs.
    Merge {
        /// Report files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Internal: a receiver process of `--workers` (speaks a line protocol on stdin/stdout).
    #[command(hide = true)]
    Worker {
        /// The receivers to open (JSON).
        #[arg(long)]
        spec: String,
        /// Record a timeline for the parent's `--report`.
        #[arg(long)]
        timeline: bool,
    },
}

/// The largest number of seconds, or rate, an option takes (about 31 years).
const MAX_NUMBER: f64 = 1e9;
/// The largest count an option takes (connections, senders, bytes, …).
const MAX_COUNT: usize = 100_000_000;

/// A number from 0 to [`MAX_NUMBER`] (for the seconds, rates and shares of the options).
fn non_negative(s: &str) -> std::result::Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if (0.0..=MAX_NUMBER).contains(&v) => Ok(v),
        Ok(_) => Err(format!("must be a number from 0 to {MAX_NUMBER:e}")),
        Err(e) => Err(e.to_string()),
    }
}

/// `--rate`: 0 (as fast as possible), or from 0.001 to [`MAX_NUMBER`] per second.
fn rate(s: &str) -> std::result::Result<f64, String> {
    match non_negative(s)? {
        v if v == 0.0 || v >= 0.001 => Ok(v),
        _ => Err("must be 0 (as fast as possible) or at least 0.001 per second".to_owned()),
    }
}

/// A count from 0 to [`MAX_COUNT`].
fn count(s: &str) -> std::result::Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(v) if v <= MAX_COUNT => Ok(v),
        Ok(_) => Err(format!("must be at most {MAX_COUNT}")),
        Err(e) => Err(e.to_string()),
    }
}

/// Whether `url` is an absolute http:// or https:// URL with a host.
fn http_url(url: &str) -> bool {
    reqwest::Url::parse(url)
        .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some())
}

impl Scenario {
    /// The name reports carry (`s4-broadcast`).
    pub fn name(&self) -> &'static str {
        match self {
            Self::S1Hold { .. } => "s1-hold",
            Self::S2Connect => "s2-connect",
            Self::S3Echo => "s3-echo",
            Self::S3bEcho => "s3b-echo",
            Self::S4Broadcast { .. } => "s4-broadcast",
            Self::S4bMax { .. } => "s4b-max",
            Self::S5Groups { .. } => "s5-groups",
            Self::S6RestUser { .. } => "s6-rest-user",
            Self::S7Upstream { .. } => "s7-upstream",
            Self::S8Fallback { .. } => "s8-fallback",
            Self::S9SlowConsumer { .. } => "s9-slow-consumer",
            Self::S10Soak { .. } => "s10-soak",
            Self::S11Reconnect { .. } => "s11-reconnect",
            Self::Merge { .. } => "merge",
            Self::Worker { .. } => "worker",
        }
    }

    /// Whether `--workers` can spread its receivers.
    fn spreads(&self) -> bool {
        matches!(
            self,
            Self::S1Hold { .. }
                | Self::S4Broadcast { .. }
                | Self::S4bMax { .. }
                | Self::S6RestUser { .. }
                | Self::S8Fallback { .. }
                | Self::S10Soak { .. }
        )
    }
}

/// The options' mistakes that only show together (a usage error, before anything runs): no
/// access key, a URL that is not http(s), `--workers` or several `--receiver-url` where they do
/// not apply, a `--report` file that is neither `.svg` nor `.html`.
pub fn check_usage(common: &Common, scenario: &Scenario) -> Result<()> {
    for path in &common.report {
        render::Format::of(path)?;
    }
    if matches!(scenario, Scenario::Merge { .. } | Scenario::Worker { .. }) {
        return Ok(());
    }
    if common.key.is_empty() {
        bail!("--key or --connection-string is required (the broker's access key)");
    }
    if !http_url(&common.url) {
        bail!(
            "--url '{}' is not an http:// or https:// URL (e.g. http://127.0.0.1:8080)",
            common.url
        );
    }
    if let Some(bad) = common.receiver_urls.iter().find(|u| !http_url(u)) {
        bail!("--receiver-url '{bad}' is not an http:// or https:// URL");
    }
    if common.workers > 0 && !scenario.spreads() {
        bail!(
            "--workers applies to s1-hold, s4-broadcast, s4b-max, s6-rest-user, s8-fallback and \
             s10-soak; run several processes and `merge` their reports for the others"
        );
    }
    if common.receiver_urls.len() > 1 {
        if matches!(scenario, Scenario::S5Groups { .. }) {
            bail!("s5-groups takes at most one --receiver-url");
        }
        if common.workers == 0 {
            bail!("several --receiver-url need --workers (one process per node at least)");
        }
    }
    Ok(())
}

/// Runs `scenario`, returning its report; with `--report`, the report carries the run's
/// per-second samples ([`timeline`]; write the file with [`render::write`]).
///
/// A run that fails ([`verdict`]: no connection came up, or errors dominate) still returns its
/// report, with `failure` set (and `stopped_early` when it was cut short); an `Err` is a run
/// that could not be made at all (bad options, a port in use, an unreadable file).
pub async fn run(common: &Common, scenario: &Scenario) -> Result<Report> {
    check_usage(common, scenario)?;
    if let Scenario::Merge { files } = scenario {
        return scenario::merge::run(files);
    }
    let record = !common.report.is_empty();
    if record {
        timeline::start()?;
    }
    let result = verdict::supervise(
        scenario.name(),
        common.params(serde_json::json!({})),
        run_scenario(common, scenario),
    )
    .await;
    let samples = if record {
        timeline::finish()
    } else {
        Vec::new()
    };
    let mut report = result?;
    report.samples = samples;
    Ok(report)
}

async fn run_scenario(common: &Common, scenario: &Scenario) -> Result<Report> {
    use crate::scenario::*;
    match scenario {
        Scenario::S1Hold {
            server_pid,
            transport,
            groups,
        } => s1::run(common, *server_pid, *transport, *groups).await,
        Scenario::S2Connect => s2::run(common).await,
        Scenario::S3Echo => s3::run(common).await,
        Scenario::S3bEcho => s3b::run(common).await,
        Scenario::S4Broadcast { senders } => s4::run(common, *senders).await,
        Scenario::S4bMax {
            senders,
            start_rate,
            factor,
            max_steps,
            max_p99_ms,
        } => {
            s4b::run(
                common,
                s4b::Ramp {
                    senders: *senders,
                    start_rate: *start_rate,
                    factor: *factor,
                    max_steps: *max_steps,
                    max_p99_ms: *max_p99_ms,
                },
            )
            .await
        }
        Scenario::S5Groups {
            groups,
            group_size,
            senders,
            churn,
        } => {
            if *churn {
                s5::churn(common, *groups, *senders).await
            } else {
                s5::groups(common, *groups, *group_size, *senders).await
            }
        }
        Scenario::S6RestUser { concurrency } => s6::run(common, *concurrency).await,
        Scenario::S7Upstream {
            upstream_listen,
            upstream_workers,
        } => s7::run(common, *upstream_listen, *upstream_workers).await,
        Scenario::S8Fallback {
            sse,
            long_polling,
            websockets,
            senders,
        } => {
            s8::run(
                common,
                sse.unwrap_or(common.connections),
                long_polling.unwrap_or(common.connections),
                *websockets,
                *senders,
            )
            .await
        }
        Scenario::S9SlowConsumer {
            senders,
            baseline_duration,
            slow_rcvbuf,
            cut_wait,
            control,
        } => {
            s9::run(
                common,
                *senders,
                baseline_duration.unwrap_or(common.duration),
                *slow_rcvbuf,
                *cut_wait,
                *control,
            )
            .await
        }
        Scenario::S10Soak {
            server_pid,
            interval,
            senders,
        } => s10::run(common, *server_pid, *interval, *senders).await,
        Scenario::S11Reconnect {
            fraction,
            down_ms,
            kill_at,
            senders,
        } => {
            s11::run(
                common,
                s11::Kills {
                    fraction: *fraction,
                    down: Duration::from_millis(*down_ms),
                    at: *kill_at,
                },
                *senders,
            )
            .await
        }
        Scenario::Merge { .. } => bail!("merge is handled by run"),
        Scenario::Worker { .. } => {
            bail!("the worker mode is started by --workers, not run as a scenario")
        }
    }
}
