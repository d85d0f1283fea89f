//! Counters, HDR latency histograms, per-connection sequence tracking and the final report.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};

use crate::failure::{ErrorKind, ErrorKinds, ErrorTally, Failure};

const SHARDS: usize = 16;

fn new_histogram() -> Histogram<u64> {
    // 1 µs .. 1 h, 3 significant digits.
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds")
}

/// Shared counters of a run. Latencies are recorded in µs into a sharded [`Hist`] (one lock per
/// shard; a connection always uses the same shard) and merged at the end.
pub struct Stats {
    /// Messages sent (invocations or accepted REST requests).
    pub sent: AtomicU64,
    /// Messages received by the clients (duplicates included).
    pub received: AtomicU64,
    /// Errors: failed connects, failed sends, non-2xx answers, broken connections. Count them
    /// with [`error`](Self::error) or [`failure`](Self::failure), which also count their kind.
    pub errors: AtomicU64,
    /// Connections currently up.
    pub connected: AtomicU64,
    /// Connections that came up (completed their handshake) so far.
    pub opened: AtomicU64,
    /// Connections that went down before the end of the run.
    pub dropped: AtomicU64,
    /// Connects completed (S2).
    pub connects: AtomicU64,
    kinds: ErrorTally,
    stop: AtomicBool,
    latency: Hist,
    start: Instant,
}

impl Default for Stats {
    fn default() -> Self {
        Self::new()
    }
}

impl Stats {
    /// Empty stats; the clock starts now.
    pub fn new() -> Self {
        Self {
            sent: AtomicU64::new(0),
            received: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            connected: AtomicU64::new(0),
            opened: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            connects: AtomicU64::new(0),
            kinds: ErrorTally::new(),
            stop: AtomicBool::new(false),
            latency: Hist::new(),
            start: Instant::now(),
        }
    }

    /// Records one latency in µs on shard `shard`.
    pub fn record_us(&self, shard: usize, us: u64) {
        self.latency.record_us(shard, us);
    }

    /// Counts one error of `kind`; `message` (what failed, where, what the broker said) is
    /// called only for the first error of its kind.
    pub fn error(&self, kind: ErrorKind, message: impl FnOnce() -> String) {
        self.errors_n(kind, 1, message);
    }

    /// Counts `n` errors of `kind` (see [`error`](Self::error)).
    pub fn errors_n(&self, kind: ErrorKind, n: u64, message: impl FnOnce() -> String) {
        if n > 0 {
            self.errors.fetch_add(n, Ordering::Relaxed);
            self.kinds.record(kind, n, message);
        }
    }

    /// Counts `e` as one error of its kind ([`crate::failure::kind_of`]).
    pub fn failure(&self, e: &anyhow::Error) -> ErrorKind {
        self.errors.fetch_add(1, Ordering::Relaxed);
        self.kinds.record_error(e)
    }

    /// Counts the errors of `kinds` (counted elsewhere: a worker process) here too.
    pub fn absorb_errors(&self, kinds: &ErrorKinds) {
        for (name, c) in &kinds.0 {
            let kind = ErrorKind::from_name(name).unwrap_or(ErrorKind::Other);
            self.errors_n(kind, c.count, || c.first.clone().unwrap_or_default());
        }
    }

    /// Counts the failed request `what` at `url` (its message is formatted only when its kind
    /// has none yet).
    pub fn request_error(&self, what: &str, url: &str, e: &reqwest::Error) {
        self.error(Failure::request_kind(e), || {
            Failure::request(what, url, e).into_message()
        });
    }

    /// Counts the unexpected answer `resp` to `what` at `url` (401: unauthorized, else an HTTP
    /// status); its body, the broker's message, is read only when its kind has no message yet.
    pub async fn bad_answer(&self, what: &str, url: &str, resp: reqwest::Response) {
        let kind = Failure::status_kind(resp.status().as_u16());
        if self.kinds.wants_message(kind) {
            let f = Failure::answered(what, url, resp).await;
            self.error(kind, || f.into_message());
        } else {
            self.error(kind, String::new);
        }
    }

    /// Counts the outcome of a request whose answer should satisfy `ok` (the status): `true`
    /// when it did, else the error is counted by kind.
    pub async fn answered(
        &self,
        what: &str,
        url: &str,
        r: Result<reqwest::Response, reqwest::Error>,
        ok: impl Fn(u16) -> bool,
    ) -> bool {
        match r {
            Ok(resp) if ok(resp.status().as_u16()) => true,
            Ok(resp) => {
                self.bad_answer(what, url, resp).await;
                false
            }
            Err(e) => {
                self.request_error(what, url, &e);
                false
            }
        }
    }

    /// The errors counted here, by kind.
    pub fn error_kinds(&self) -> ErrorKinds {
        self.kinds.snapshot()
    }

    /// Counts one connection that came up (it is up now).
    pub fn opened_one(&self) {
        self.connected.fetch_add(1, Ordering::Relaxed);
        self.opened.fetch_add(1, Ordering::Relaxed);
    }

    /// Asks the run's loops to end now (the run has failed: [`crate::verdict`]).
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    /// Whether the run was asked to end.
    pub fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Sleeps `d`, or less when the run is asked to end.
    pub async fn hold(&self, d: Duration) {
        let until = tokio::time::Instant::now() + d;
        while !self.stopping() {
            let left = until.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                break;
            }
            tokio::time::sleep(left.min(Duration::from_millis(100))).await;
        }
    }

    /// Time since the stats were created.
    pub fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }

    /// Every latency recorded here so far, merged.
    pub fn histogram(&self) -> Histogram<u64> {
        self.latency.cumulative()
    }

    /// The latencies recorded here (for the timeline, which reads it without resetting it).
    pub(crate) fn latency(&self) -> &Hist {
        &self.latency
    }

    /// `[sent, received, errors, connects]` now.
    pub(crate) fn counts(&self) -> [u64; 4] {
        [
            Self::get(&self.sent),
            Self::get(&self.received),
            Self::get(&self.errors),
            Self::get(&self.connects),
        ]
    }

    fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }

    /// Starts a progress line (on stderr, hidden when `quiet` or not a terminal) refreshed every
    /// 500 ms with live rates until the returned guard is dropped. The stats also join the
    /// run's timeline, when one is being recorded (`--report`, see [`crate::timeline`]), and
    /// the watch that stops a failing run early ([`crate::verdict`]).
    pub fn progress(self: &std::sync::Arc<Self>, quiet: bool) -> ProgressGuard {
        crate::timeline::watch_stats(self);
        crate::verdict::watch(self);
        let bar = if quiet {
            ProgressBar::hidden()
        } else {
            let b = ProgressBar::new_spinner();
            if let Ok(style) = ProgressStyle::with_template("{spinner} [{elapsed_precise}] {msg}") {
                b.set_style(style);
            }
            b
        };
        let stats = self.clone();
        let b = bar.clone();
        let task = tokio::spawn(async move {
            let mut last = (0u64, 0u64, 0u64, Instant::now());
            let mut tick = tokio::time::interval(Duration::from_millis(500));
            loop {
                tick.tick().await;
                let (sent, recv, conn) = (
                    Self::get(&stats.sent),
                    Self::get(&stats.received),
                    Self::get(&stats.connects),
                );
                let dt = last.3.elapsed().as_secs_f64().max(1e-3);
                b.set_message(format!(
                    "up {} | sent {} ({:.0}/s) | recv {} ({:.0}/s) | connects {} ({:.0}/s) | errors {} dropped {}",
                    Self::get(&stats.connected),
                    sent,
                    (sent - last.0) as f64 / dt,
                    recv,
                    (recv - last.1) as f64 / dt,
                    conn,
                    (conn - last.2) as f64 / dt,
                    Self::get(&stats.errors),
                    Self::get(&stats.dropped),
                ));
                b.tick();
                last = (sent, recv, conn, Instant::now());
            }
        });
        ProgressGuard { bar, task }
    }
}

/// Stops the progress line when dropped.
pub struct ProgressGuard {
    bar: ProgressBar,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for ProgressGuard {
    fn drop(&mut self) {
        self.task.abort();
        self.bar.finish_and_clear();
    }
}

/// A sharded latency histogram (µs) for per-phase and per-interval figures: [`take`](Self::take)
/// returns what was recorded since the previous take. The shards themselves only grow (a take
/// subtracts a baseline instead of resetting them), so the timeline can read the same
/// histogram once a second without disturbing the scenario's own takes.
pub struct Hist {
    shards: Vec<Mutex<Histogram<u64>>>,
    taken: Mutex<Histogram<u64>>,
}

impl Default for Hist {
    fn default() -> Self {
        Self::new()
    }
}

impl Hist {
    /// Empty.
    pub fn new() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(new_histogram())).collect(),
            taken: Mutex::new(new_histogram()),
        }
    }

    /// Records one latency in µs on shard `shard`.
    pub fn record_us(&self, shard: usize, us: u64) {
        if let Ok(mut h) = self.shards[shard % SHARDS].lock() {
            h.saturating_record(us.max(1));
        }
    }

    /// Everything recorded so far, merged.
    pub fn cumulative(&self) -> Histogram<u64> {
        let mut all = new_histogram();
        for s in &self.shards {
            if let Ok(h) = s.lock() {
                let _ = all.add(&*h);
            }
        }
        all
    }

    /// Everything recorded since the last `take`, merged.
    pub fn take(&self) -> Histogram<u64> {
        let Ok(mut taken) = self.taken.lock() else {
            return new_histogram();
        };
        let now = self.cumulative();
        let mut since = now.clone();
        since_baseline(&mut since, &taken);
        *taken = now;
        since
    }
}

/// `h` minus `baseline`, an earlier state of the same histogram (so every count is at least the
/// baseline's).
pub(crate) fn since_baseline(h: &mut Histogram<u64>, baseline: &Histogram<u64>) {
    if !baseline.is_empty() {
        // Cannot fail: `baseline` is an earlier state of `h` with the same bounds.
        let _ = h.subtract(baseline);
    }
}

/// An empty histogram with the bounds every histogram of the load generator uses (1 µs .. 1 h).
pub fn empty_histogram() -> Histogram<u64> {
    new_histogram()
}

/// `(value, count)` pairs of `h` (to ship a histogram between processes as JSON).
pub fn histogram_pairs(h: &Histogram<u64>) -> Vec<(u64, u64)> {
    h.iter_recorded()
        .map(|v| (v.value_iterated_to(), v.count_at_value()))
        .collect()
}

/// Adds `pairs` (from [`histogram_pairs`]) to `h`.
pub fn add_pairs(h: &mut Histogram<u64>, pairs: &[(u64, u64)]) {
    for &(v, n) in pairs {
        let _ = h.record_n(v.max(1), n);
    }
}

/// Per-connection sequence check: for each sender the next expected sequence number.
#[derive(Default, Debug)]
pub struct Tracker {
    next: HashMap<u64, u64>,
    /// Messages received, duplicates included.
    pub received: u64,
    /// Sequence numbers skipped (a later one arrived first).
    pub gaps: u64,
    /// Messages whose sequence number was below the expected one (duplicate or out of order).
    pub duplicates: u64,
}

impl Tracker {
    /// Accounts for message `seq` from `sender`.
    pub fn on_message(&mut self, sender: u64, seq: u64) {
        self.received += 1;
        let next = self.next.entry(sender).or_insert(0);
        if seq == *next {
            *next += 1;
        } else if seq > *next {
            self.gaps += seq - *next;
            *next = seq + 1;
        } else {
            self.duplicates += 1;
        }
    }

    /// Next expected sequence number from `sender`.
    pub fn next_from(&self, sender: u64) -> u64 {
        self.next.get(&sender).copied().unwrap_or(0)
    }
}

/// Latency percentiles in µs.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Latency {
    /// Samples.
    pub count: u64,
    /// Median.
    pub p50_us: u64,
    /// 90th percentile.
    #[serde(default)]
    pub p90_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// 99.9th percentile.
    pub p999_us: u64,
    /// Maximum.
    pub max_us: u64,
    /// Mean.
    pub mean_us: f64,
}

impl Latency {
    /// Percentiles of `h`, `None` when it is empty.
    pub fn of(h: &Histogram<u64>) -> Option<Self> {
        (!h.is_empty()).then(|| Self {
            count: h.len(),
            p50_us: h.value_at_quantile(0.5),
            p90_us: h.value_at_quantile(0.9),
            p99_us: h.value_at_quantile(0.99),
            p999_us: h.value_at_quantile(0.999),
            max_us: h.max(),
            mean_us: h.mean(),
        })
    }
}

/// The result of one scenario run.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// Scenario name (`s4-broadcast`).
    pub scenario: String,
    /// The options it ran with.
    pub params: serde_json::Value,
    /// Seconds measured (sending phase, or hold time).
    pub seconds: f64,
    /// Connections that completed their handshake.
    pub connected: u64,
    /// Connections lost before the end.
    pub dropped: u64,
    /// Messages sent (accepted REST requests or invocations).
    pub sent: u64,
    /// Messages the clients should have received.
    pub expected: u64,
    /// Messages received (duplicates included).
    pub received: u64,
    /// Messages never received.
    pub lost: u64,
    /// Duplicate or out-of-order messages.
    pub duplicates: u64,
    /// Errors of any kind.
    pub errors: u64,
    /// The errors by kind (`unauthorized`, `connection_refused`, …: see
    /// [`crate::failure::ErrorKind`]), each with its count and the first one's message.
    pub error_kinds: ErrorKinds,
    /// Why the run failed (`None`: it did not; see [`crate::verdict`] for the rules).
    pub failure: Option<String>,
    /// Whether it stopped before its end because it had failed.
    pub stopped_early: bool,
    /// Latency (payload timestamp → receipt, or connect time for S2).
    pub latency: Option<Latency>,
    /// Scenario-specific figures (rates, RSS).
    pub extra: serde_json::Map<String, serde_json::Value>,
    /// Per-second samples of the run (only with `--report`; see [`crate::timeline`]).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub samples: Vec<crate::timeline::Sample>,
}

impl Report {
    /// A report with every count zero and no latency, to fill in.
    pub fn empty(scenario: String, params: serde_json::Value, seconds: f64) -> Self {
        Self {
            scenario,
            params,
            seconds,
            connected: 0,
            dropped: 0,
            sent: 0,
            expected: 0,
            received: 0,
            lost: 0,
            duplicates: 0,
            errors: 0,
            error_kinds: ErrorKinds::default(),
            failure: None,
            stopped_early: false,
            latency: None,
            extra: serde_json::Map::new(),
            samples: Vec::new(),
        }
    }

    /// The one-screen summary.
    pub fn summary(&self) -> String {
        let mut s = format!(
            "{} ({:.1} s)\n  connections: {} up, {} dropped\n  sent {}  expected {}  received {}  lost {}  duplicates {}  errors {}\n",
            self.scenario,
            self.seconds,
            self.connected,
            self.dropped,
            self.sent,
            self.expected,
            self.received,
            self.lost,
            self.duplicates,
            self.errors
        );
        if let Some(l) = &self.latency {
            s.push_str(&format!(
                "  latency (µs): p50 {}  p99 {}  p99.9 {}  max {}  mean {:.0}  (n = {})\n",
                l.p50_us, l.p99_us, l.p999_us, l.max_us, l.mean_us, l.count
            ));
        }
        for (k, v) in &self.extra {
            match v {
                serde_json::Value::Number(n) if n.is_f64() => {
                    s.push_str(&format!("  {k}: {:.1}\n", n.as_f64().unwrap_or(0.0)));
                }
                // Steps and intervals: one line each.
                serde_json::Value::Array(items) if items.iter().any(|i| i.is_object()) => {
                    s.push_str(&format!("  {k}:\n"));
                    for i in items {
                        s.push_str(&format!("    - {i}\n"));
                    }
                }
                _ => s.push_str(&format!("  {k}: {v}\n")),
            }
        }
        let kinds = self.error_kinds.by_count();
        if !kinds.is_empty() {
            s.push_str("  errors by kind:\n");
            for (name, c) in kinds {
                match &c.first {
                    Some(first) => {
                        s.push_str(&format!("    {name}: {} (first: {first})\n", c.count))
                    }
                    None => s.push_str(&format!("    {name}: {}\n", c.count)),
                }
            }
        }
        if let Some(f) = &self.failure {
            s.push_str(&format!("  FAILED: {f}\n"));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracker_counts_gaps_and_duplicates_per_sender() {
        let mut t = Tracker::default();
        for (sender, seq) in [(0, 0), (0, 1), (1, 0), (0, 3), (0, 3), (0, 2), (1, 1)] {
            t.on_message(sender, seq);
        }
        assert_eq!(t.received, 7);
        assert_eq!(t.gaps, 1); // 0:2 skipped when 0:3 arrived
        assert_eq!(t.duplicates, 2); // 0:3 again, then the late 0:2
        assert_eq!(t.next_from(0), 4);
        assert_eq!(t.next_from(1), 2);
        assert_eq!(t.next_from(7), 0);
    }

    #[test]
    fn hist_take_resets_and_pairs_round_trip() {
        let h = Hist::new();
        for v in 1..=100u64 {
            h.record_us(v as usize, v * 10);
        }
        let first = h.take();
        assert_eq!(first.len(), 100);
        assert!(h.take().is_empty());
        let mut copy = empty_histogram();
        add_pairs(&mut copy, &histogram_pairs(&first));
        assert_eq!(copy.len(), 100);
        assert_eq!(copy.max(), first.max());
        assert_eq!(copy.value_at_quantile(0.5), first.value_at_quantile(0.5));
    }

    #[test]
    fn latency_percentiles_from_sharded_histograms() {
        let s = Stats::new();
        assert!(Latency::of(&s.histogram()).is_none());
        for v in 1..=1000u64 {
            s.record_us(v as usize, v);
        }
        let l = Latency::of(&s.histogram()).expect("samples");
        assert_eq!(l.count, 1000);
        assert!((499..=501).contains(&l.p50_us), "{l:?}");
        assert!((989..=991).contains(&l.p99_us), "{l:?}");
        assert_eq!(l.max_us, 1000);
    }
}
