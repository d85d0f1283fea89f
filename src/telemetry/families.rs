//! The labelled metric families: connections by endpoint and transport, closes by Azure's
//! close category, traffic by endpoint and direction, REST and upstream calls with latency
//! histograms, and the gauges computed at scrape time (connection quota, server load, groups,
//! users, the per-hub series of [`super::hubs`]).
//!
//! Every series is a pre-allocated relaxed atomic indexed by small enums, so counting never
//! allocates, formats or locks; the label strings are only written by [`Labelled::render`].
//! Callers count once per batch (a socket read, a fan-out), never per recipient.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::hubs::HubRegistry;
use crate::close::CloseCategory;
use crate::id::TransportKind;

/// Which side of the broker a connection or a message is on (Azure's `Endpoint` dimension).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// Client connections.
    Client = 0,
    /// Hub-server (app server) connections.
    Server = 1,
}

impl Endpoint {
    const ALL: [Self; 2] = [Self::Client, Self::Server];

    fn label(self) -> &'static str {
        match self {
            Self::Client => "client",
            Self::Server => "server",
        }
    }
}

/// Into the broker or out of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Received by the broker.
    In = 0,
    /// Sent by the broker.
    Out = 1,
}

impl Direction {
    const ALL: [Self; 2] = [Self::In, Self::Out];

    pub(super) fn label(self) -> &'static str {
        match self {
            Self::In => "in",
            Self::Out => "out",
        }
    }
}

/// A client transport as a label value (index into the per-transport gauges).
fn transport_index(kind: TransportKind) -> usize {
    match kind {
        TransportKind::WebSockets => 0,
        TransportKind::ServerSentEvents => 1,
        TransportKind::LongPolling => 2,
    }
}

const TRANSPORT_LABELS: [&str; 3] = ["websockets", "serversentevents", "longpolling"];

/// The REST API's operations, grouped into a bounded label set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RestOperation {
    /// `GET /api/health`.
    Health = 0,
    /// Sends: broadcast, to a user, a group or a connection.
    Send,
    /// `:closeConnections` and `DELETE …/connections/{id}`.
    CloseConnections,
    /// Existence checks: connection, user, group, user in group.
    CheckExistence,
    /// Adding and removing group members (connections and users).
    GroupMembership,
    /// `GET …/groups/{group}/connections`.
    ListConnections,
    /// `:generateToken`.
    GenerateToken,
    /// Anything else: unknown paths, unsupported operations, preflights.
    Other,
}

impl RestOperation {
    const ALL: [Self; 8] = [
        Self::Health,
        Self::Send,
        Self::CloseConnections,
        Self::CheckExistence,
        Self::GroupMembership,
        Self::ListConnections,
        Self::GenerateToken,
        Self::Other,
    ];

    fn label(self) -> &'static str {
        match self {
            Self::Health => "health",
            Self::Send => "send",
            Self::CloseConnections => "close_connections",
            Self::CheckExistence => "check_existence",
            Self::GroupMembership => "group_membership",
            Self::ListConnections => "list_connections",
            Self::GenerateToken => "generate_token",
            Self::Other => "other",
        }
    }
}

/// The upstream calls, by event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpstreamEvent {
    /// The `connected` system event.
    Connected = 0,
    /// The `disconnected` system event.
    Disconnected,
    /// A client invocation that expects a result (it has an invocation id).
    Invocation,
    /// A client message that expects none (no invocation id).
    Message,
}

impl UpstreamEvent {
    const ALL: [Self; 4] = [
        Self::Connected,
        Self::Disconnected,
        Self::Invocation,
        Self::Message,
    ];

    fn label(self) -> &'static str {
        match self {
            Self::Connected => "connected",
            Self::Disconnected => "disconnected",
            Self::Invocation => "invocation",
            Self::Message => "message",
        }
    }
}

/// Status classes of HTTP answers; the last is "no answer" (transport error, timeout).
const STATUS_LABELS: [&str; 5] = ["2xx", "3xx", "4xx", "5xx", "error"];

/// The status class index of an HTTP status (`None`: no answer).
fn status_index(status: Option<u16>) -> usize {
    match status {
        Some(s) if s < 300 => 0,
        Some(s) if s < 400 => 1,
        Some(s) if s < 500 => 2,
        Some(_) => 3,
        None => 4,
    }
}

/// Upper bounds (seconds) of the latency histograms' buckets; `+Inf` follows.
pub const LATENCY_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// A latency histogram on atomics: fixed buckets, one increment per observation.
#[derive(Debug, Default)]
pub struct Histogram {
    /// Per bucket (not cumulative); the last is `+Inf`.
    buckets: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    sum_nanos: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    /// Record one observation.
    pub fn observe(&self, elapsed: Duration) {
        let secs = elapsed.as_secs_f64();
        let i = LATENCY_BUCKETS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(LATENCY_BUCKETS.len());
        self.buckets[i].fetch_add(1, Relaxed);
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos.fetch_add(nanos, Relaxed);
        self.count.fetch_add(1, Relaxed);
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.count.load(Relaxed)
    }

    /// Write `_bucket` (cumulative), `_sum` (seconds) and `_count`; `labels` is empty or
    /// `key="value",` pairs ending with a comma.
    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let mut cumulative = 0;
        for (i, bucket) in self.buckets.iter().enumerate() {
            cumulative += bucket.load(Relaxed);
            match LATENCY_BUCKETS.get(i) {
                Some(le) => {
                    let _ = writeln!(out, "{name}_bucket{{{labels}le=\"{le}\"}} {cumulative}");
                }
                None => {
                    let _ = writeln!(out, "{name}_bucket{{{labels}le=\"+Inf\"}} {cumulative}");
                }
            }
        }
        let trimmed = labels.trim_end_matches(',');
        let braces = |s: &str| {
            if s.is_empty() {
                String::new()
            } else {
                format!("{{{s}}}")
            }
        };
        let sum = self.sum_nanos.load(Relaxed) as f64 / 1e9;
        let _ = writeln!(out, "{name}_sum{} {sum}", braces(trimmed));
        // The count is the buckets' total, so that the two never disagree within a scrape.
        let _ = writeln!(out, "{name}_count{} {cumulative}", braces(trimmed));
    }
}

/// The process's CPU time at the previous scrape, for the server load.
#[derive(Debug)]
struct CpuSample {
    at: Instant,
    cpu_secs: f64,
}

/// The labelled families (a part of [`super::Metrics`]).
#[derive(Debug)]
pub struct Labelled {
    /// Open client connections by transport, then hub-server connections (WebSocket only).
    connections: [AtomicU64; 4],
    /// Closes by endpoint and category.
    closes: [[AtomicU64; CloseCategory::ALL.len()]; 2],
    /// Messages by endpoint and direction.
    messages: [[AtomicU64; 2]; 2],
    /// Bytes by endpoint and direction.
    bytes: [[AtomicU64; 2]; 2],
    /// REST answers by operation and status class.
    rest: [[AtomicU64; STATUS_LABELS.len()]; RestOperation::ALL.len()],
    rest_latency: [Histogram; RestOperation::ALL.len()],
    /// Upstream calls by event and status class.
    upstream: [[AtomicU64; STATUS_LABELS.len()]; UpstreamEvent::ALL.len()],
    upstream_latency: [Histogram; UpstreamEvent::ALL.len()],
    /// `limits.max_connections` (0 until the broker sets it).
    connection_limit: AtomicU64,
    cpu: Mutex<Option<CpuSample>>,
    /// Per-hub counters, ranked at scrape time.
    pub hubs: HubRegistry,
}

impl Default for Labelled {
    fn default() -> Self {
        Self {
            connections: Default::default(),
            closes: Default::default(),
            messages: Default::default(),
            bytes: Default::default(),
            rest: Default::default(),
            rest_latency: Default::default(),
            upstream: Default::default(),
            upstream_latency: Default::default(),
            connection_limit: AtomicU64::new(0),
            // The first scrape's load covers the time since the broker started.
            cpu: Mutex::new(process_cpu_secs().map(|cpu_secs| CpuSample {
                at: Instant::now(),
                cpu_secs,
            })),
            hubs: HubRegistry::default(),
        }
    }
}

impl Labelled {
    /// A client connection opened (its handshake done) on `transport`.
    pub fn client_opened(&self, transport: TransportKind) {
        self.connections[transport_index(transport)].fetch_add(1, Relaxed);
    }

    /// A client connection on `transport` closed (after it was opened), for `category`.
    pub fn client_closed(&self, transport: TransportKind, category: CloseCategory) {
        self.connections[transport_index(transport)].fetch_sub(1, Relaxed);
        self.close(Endpoint::Client, category);
    }

    /// A hub-server connection opened.
    pub fn server_opened(&self) {
        self.connections[3].fetch_add(1, Relaxed);
    }

    /// A hub-server connection closed, for `category`.
    pub fn server_closed(&self, category: CloseCategory) {
        self.connections[3].fetch_sub(1, Relaxed);
        self.close(Endpoint::Server, category);
    }

    /// Count a close (or a connection refused before it opened) under `category`.
    pub fn close(&self, endpoint: Endpoint, category: CloseCategory) {
        self.closes[endpoint as usize][category.index()].fetch_add(1, Relaxed);
    }

    /// Count `messages` messages of `bytes` bytes in total.
    #[inline]
    pub fn traffic(&self, endpoint: Endpoint, direction: Direction, messages: u64, bytes: u64) {
        if messages != 0 {
            self.messages[endpoint as usize][direction as usize].fetch_add(messages, Relaxed);
        }
        if bytes != 0 {
            self.bytes[endpoint as usize][direction as usize].fetch_add(bytes, Relaxed);
        }
    }

    /// A REST request answered with `status` after `elapsed`.
    pub fn rest_request(&self, op: RestOperation, status: u16, elapsed: Duration) {
        self.rest[op as usize][status_index(Some(status))].fetch_add(1, Relaxed);
        self.rest_latency[op as usize].observe(elapsed);
    }

    /// An upstream call answered with `status` (`None`: no answer) after `elapsed`.
    pub fn upstream_call(&self, event: UpstreamEvent, status: Option<u16>, elapsed: Duration) {
        self.upstream[event as usize][status_index(status)].fetch_add(1, Relaxed);
        self.upstream_latency[event as usize].observe(elapsed);
    }

    /// Set `limits.max_connections`, the connection quota.
    pub fn set_connection_limit(&self, limit: usize) {
        self.connection_limit.store(limit as u64, Relaxed);
    }

    /// Write every family; `connections` is the number of open connections (clients and hub
    /// servers) for the quota. A `scrape` also ranks the hubs and samples the CPU, which starts
    /// their next window; a lookup ([`Metrics::get`](super::Metrics::get)) must not, or a
    /// console polling the counters would shift Prometheus's windows.
    pub(super) fn render(&self, out: &mut String, connections: u64, scrape: bool) {
        family(
            out,
            "switchboard_connections_by_transport",
            "gauge",
            "Connections open now, by endpoint (client, server) and transport.",
        );
        for (i, transport) in TRANSPORT_LABELS.iter().enumerate() {
            let _ = writeln!(
                out,
                "switchboard_connections_by_transport{{endpoint=\"client\",transport=\"{transport}\"}} {}",
                self.connections[i].load(Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "switchboard_connections_by_transport{{endpoint=\"server\",transport=\"websockets\"}} {}",
            self.connections[3].load(Relaxed)
        );

        family(
            out,
            "switchboard_connection_closes_total",
            "counter",
            "Connections closed, and connect attempts refused, by endpoint and Azure's ConnectionCloseCategory (snake case).",
        );
        for endpoint in Endpoint::ALL {
            for category in CloseCategory::ALL {
                let _ = writeln!(
                    out,
                    "switchboard_connection_closes_total{{endpoint=\"{}\",category=\"{}\"}} {}",
                    endpoint.label(),
                    category.as_str(),
                    self.closes[endpoint as usize][category.index()].load(Relaxed)
                );
            }
        }

        for (name, help, values) in [
            (
                "switchboard_messages_total",
                "Hub messages received from (in) and sent to (out) clients and hub servers.",
                &self.messages,
            ),
            (
                "switchboard_bytes_total",
                "Bytes of hub messages received from (in) and sent to (out) clients and hub servers.",
                &self.bytes,
            ),
        ] {
            family(out, name, "counter", help);
            for endpoint in Endpoint::ALL {
                for direction in Direction::ALL {
                    let _ = writeln!(
                        out,
                        "{name}{{endpoint=\"{}\",direction=\"{}\"}} {}",
                        endpoint.label(),
                        direction.label(),
                        values[endpoint as usize][direction as usize].load(Relaxed)
                    );
                }
            }
        }

        family(
            out,
            "switchboard_rest_responses_total",
            "counter",
            "REST API requests answered, by operation and status class.",
        );
        for op in RestOperation::ALL {
            for (s, status) in STATUS_LABELS.iter().enumerate().take(4) {
                let _ = writeln!(
                    out,
                    "switchboard_rest_responses_total{{operation=\"{}\",status=\"{status}\"}} {}",
                    op.label(),
                    self.rest[op as usize][s].load(Relaxed)
                );
            }
        }
        family(
            out,
            "switchboard_rest_request_duration_seconds",
            "histogram",
            "Time from a REST request's arrival to its answer, by operation.",
        );
        for op in RestOperation::ALL {
            self.rest_latency[op as usize].render(
                out,
                "switchboard_rest_request_duration_seconds",
                &format!("operation=\"{}\",", op.label()),
            );
        }

        family(
            out,
            "switchboard_upstream_requests_total",
            "counter",
            "Upstream webhook calls, by event and status class (error: no answer).",
        );
        for event in UpstreamEvent::ALL {
            for (s, status) in STATUS_LABELS.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "switchboard_upstream_requests_total{{event=\"{}\",status=\"{status}\"}} {}",
                    event.label(),
                    self.upstream[event as usize][s].load(Relaxed)
                );
            }
        }
        family(
            out,
            "switchboard_upstream_request_duration_seconds",
            "histogram",
            "Time from an upstream call's start to its answer (or failure), by event.",
        );
        for event in UpstreamEvent::ALL {
            self.upstream_latency[event as usize].render(
                out,
                "switchboard_upstream_request_duration_seconds",
                &format!("event=\"{}\",", event.label()),
            );
        }

        let limit = self.connection_limit.load(Relaxed);
        let quota = if limit == 0 {
            0.0
        } else {
            connections as f64 / limit as f64
        };
        family(
            out,
            "switchboard_connection_quota_utilization_ratio",
            "gauge",
            "Open connections (clients and hub servers) divided by limits.max_connections, 0 to 1.",
        );
        let _ = writeln!(
            out,
            "switchboard_connection_quota_utilization_ratio {quota}"
        );

        if scrape {
            self.render_cpu(out);
            self.hubs.render(out);
        }
    }

    /// `process_cpu_seconds_total` and the server load since the previous scrape.
    fn render_cpu(&self, out: &mut String) {
        let Some(cpu_secs) = process_cpu_secs() else {
            return;
        };
        let now = Instant::now();
        let load = {
            let mut last = self.cpu.lock();
            let load = last.as_ref().map_or(0.0, |prev| {
                let wall = now.duration_since(prev.at).as_secs_f64();
                let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
                if wall > 0.0 {
                    ((cpu_secs - prev.cpu_secs) / wall / cores).clamp(0.0, 1.0)
                } else {
                    0.0
                }
            });
            *last = Some(CpuSample { at: now, cpu_secs });
            load
        };
        family(
            out,
            "process_cpu_seconds_total",
            "counter",
            "User and system CPU time spent by the broker process, in seconds.",
        );
        let _ = writeln!(out, "process_cpu_seconds_total {cpu_secs}");
        family(
            out,
            "switchboard_server_load_ratio",
            "gauge",
            "CPU used by the broker process since the previous scrape, as a share of all cores (0 to 1; Azure's Server Load).",
        );
        let _ = writeln!(out, "switchboard_server_load_ratio {load}");
    }
}

/// Write a family's `HELP` and `TYPE` lines.
pub(super) fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Clock ticks per second of `/proc/<pid>/stat` times: `USER_HZ`, 100 on every Linux ABI.
const USER_HZ: f64 = 100.0;

/// The process's user + system CPU time in seconds (`None` off Linux).
fn process_cpu_secs() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    parse_cpu_secs(&stat)
}

/// utime + stime from the text of `/proc/<pid>/stat` (fields 14 and 15; the command name in
/// field 2 may hold spaces and parentheses, so fields are counted after its last `)`).
fn parse_cpu_secs(stat: &str) -> Option<f64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    // `rest` starts at field 3 (state): utime is the 12th field of it, stime the 13th.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime + stime) as f64 / USER_HZ)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_time_is_read_after_the_command_name() {
        let stat =
            "4242 (a (weird) name) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 150 0 0 20 0 9 0 1 2 3";
        assert_eq!(parse_cpu_secs(stat), Some(4.0));
        assert_eq!(parse_cpu_secs("garbage"), None);
        assert!(process_cpu_secs().is_some(), "Linux has /proc/self/stat");
    }

    #[test]
    fn histogram_buckets_are_cumulative_and_count_matches() {
        let h = Histogram::default();
        h.observe(Duration::from_micros(500));
        h.observe(Duration::from_millis(20));
        h.observe(Duration::from_secs(60));
        let mut out = String::new();
        h.render(&mut out, "x_seconds", "op=\"a\",");
        assert!(
            out.contains("x_seconds_bucket{op=\"a\",le=\"0.001\"} 1\n"),
            "{out}"
        );
        assert!(
            out.contains("x_seconds_bucket{op=\"a\",le=\"0.025\"} 2\n"),
            "{out}"
        );
        assert!(
            out.contains("x_seconds_bucket{op=\"a\",le=\"30\"} 2\n"),
            "{out}"
        );
        assert!(
            out.contains("x_seconds_bucket{op=\"a\",le=\"+Inf\"} 3\n"),
            "{out}"
        );
        assert!(out.contains("x_seconds_count{op=\"a\"} 3\n"), "{out}");
        assert!(out.contains("x_seconds_sum{op=\"a\"} 60.0205\n"), "{out}");
    }

    #[test]
    fn status_classes() {
        assert_eq!(status_index(Some(200)), 0);
        assert_eq!(status_index(Some(204)), 0);
        assert_eq!(status_index(Some(302)), 1);
        assert_eq!(status_index(Some(404)), 2);
        assert_eq!(status_index(Some(503)), 3);
        assert_eq!(status_index(None), 4);
    }

    #[test]
    fn closes_and_connections_by_label() {
        let l = Labelled::default();
        l.client_opened(TransportKind::ServerSentEvents);
        l.client_opened(TransportKind::ServerSentEvents);
        l.client_closed(TransportKind::ServerSentEvents, CloseCategory::PingTimeout);
        l.close(Endpoint::Client, CloseCategory::Unauthorized);
        l.traffic(Endpoint::Server, Direction::Out, 3, 120);
        let mut out = String::new();
        l.render(&mut out, 5, true);
        for line in [
            "switchboard_connections_by_transport{endpoint=\"client\",transport=\"serversentevents\"} 1\n",
            "switchboard_connections_by_transport{endpoint=\"client\",transport=\"websockets\"} 0\n",
            "switchboard_connection_closes_total{endpoint=\"client\",category=\"ping_timeout\"} 1\n",
            "switchboard_connection_closes_total{endpoint=\"client\",category=\"unauthorized\"} 1\n",
            "switchboard_connection_closes_total{endpoint=\"server\",category=\"normal\"} 0\n",
            "switchboard_messages_total{endpoint=\"server\",direction=\"out\"} 3\n",
            "switchboard_bytes_total{endpoint=\"server\",direction=\"out\"} 120\n",
            "switchboard_connection_quota_utilization_ratio 0\n",
        ] {
            assert!(out.contains(line), "{line} missing from\n{out}");
        }
        l.set_connection_limit(10);
        let mut out = String::new();
        l.render(&mut out, 5, true);
        assert!(out.contains("switchboard_connection_quota_utilization_ratio 0.5\n"));
        assert!(out.contains("switchboard_server_load_ratio "));
        assert!(out.contains("process_cpu_seconds_total "));
    }

    #[test]
    fn a_lookup_starts_no_new_scrape_window() {
        let l = Labelled::default();
        let window = l.cpu.lock().as_ref().map(|s| s.at);
        let mut out = String::new();
        l.render(&mut out, 0, false);
        assert!(out.contains("switchboard_connections_by_transport"));
        assert!(
            !out.contains("switchboard_server_load_ratio"),
            "a lookup neither samples the CPU nor ranks the hubs"
        );
        assert_eq!(
            l.cpu.lock().as_ref().map(|s| s.at),
            window,
            "the CPU window is left to the scrapes"
        );
    }
}
