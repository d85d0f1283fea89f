//! The scenarios, one module each, and what they share.

pub mod merge;
pub mod s1;
pub mod s10;
pub mod s11;
pub mod s2;
pub mod s3;
pub mod s3b;
pub mod s4;
pub mod s4b;
pub mod s5;
pub mod s6;
pub mod s7;
pub mod s8;
pub mod s9;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Result;

use crate::pool::{Expect, Pool, PoolSpec, Snapshot};
use crate::stats::{Latency, Report, Stats};
use crate::workers::Fleet;
use crate::{Common, Transport};

/// An empty report of `scenario` with the counters of `stats`.
pub(crate) fn report(
    scenario: &str,
    params: serde_json::Value,
    stats: &Stats,
    seconds: f64,
) -> Report {
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
        error_kinds: stats.error_kinds(),
        failure: None,
        stopped_early: false,
        latency: Latency::of(&stats.histogram()),
        extra: serde_json::Map::new(),
        samples: Vec::new(),
    }
}

/// Fills the receiver side of `r` from a final snapshot (`hist`: every latency of the run).
/// Sender errors (in `stats`) and receiver errors are added.
pub(crate) fn apply_snapshot(
    r: &mut Report,
    snap: &Snapshot,
    hist: &hdrhistogram::Histogram<u64>,
    stats: &Stats,
    local: bool,
) {
    r.connected = snap.connected;
    r.dropped = snap.dropped;
    r.expected = snap.expected;
    r.received = snap.received;
    r.lost = snap.lost;
    r.duplicates = snap.duplicates;
    // A local pool counts its errors in `stats` too.
    r.errors = stats.errors.load(Ordering::Relaxed);
    r.error_kinds = stats.error_kinds();
    if !local {
        r.errors += snap.errors;
        r.error_kinds.absorb(&snap.error_kinds);
    }
    r.latency = Latency::of(hist);
}

/// Opens the receivers of `spec` as `--workers` says. When none came up, the run stops here
/// ([`crate::verdict::require_connections`]), with the worker processes' errors counted in
/// `stats`.
pub(crate) async fn open_fleet(
    common: &Common,
    spec: PoolSpec,
    stats: &Arc<Stats>,
) -> Result<Fleet> {
    let attempts = spec.connections as u64;
    let mut fleet = Fleet::open_at(
        spec,
        common.workers,
        common.worker_exe.as_ref(),
        stats,
        &common.receiver_urls,
    )
    .await?;
    if fleet.connected() == 0 && attempts > 0 {
        if fleet.local().is_none() {
            let snap = fleet.check(&Expect::Nothing, Duration::ZERO).await?;
            stats.absorb_errors(&snap.error_kinds);
        }
        fleet.close().await?;
        return Err(crate::verdict::no_connection(stats, attempts).into());
    }
    Ok(fleet)
}

/// Opens `spec`'s receivers in this process; none up stops the run
/// ([`crate::verdict::require_connections`]).
pub(crate) async fn open_pool(spec: PoolSpec, stats: &Arc<Stats>) -> Result<Pool> {
    let attempts = spec.connections as u64;
    let pool = Pool::open(spec, stats.clone()).await?;
    if pool.connected() == 0 && attempts > 0 {
        pool.close().await;
        return Err(crate::verdict::no_connection(stats, attempts).into());
    }
    Ok(pool)
}

/// A pool spec for `common` on `transport` (SSE is JSON only).
pub(crate) fn spec_for(common: &Common, transport: Transport) -> PoolSpec {
    let mut spec = PoolSpec::from_common(common);
    spec.transport = transport;
    if transport == Transport::Sse {
        spec.protocol = crate::Protocol::Json;
    }
    spec
}

/// VmRSS of `pid` in KiB.
pub(crate) fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Sleeps until the `k`-th send of a paced sender (no pacing when `rate` is 0).
pub(crate) async fn pace(start: tokio::time::Instant, k: u64, rate: f64) {
    if rate > 0.0 {
        tokio::time::sleep_until(start + Duration::from_secs_f64(k as f64 / rate)).await;
    }
}

/// Where paced task `i` of `n`, each sending `rate`/s, starts its schedule: the tasks' phases
/// are spread evenly over one interval. Without it every task fires at the same instants, and
/// a paced run measures bursts of `n` messages instead of a steady rate.
pub(crate) fn staggered(
    start: tokio::time::Instant,
    i: usize,
    n: usize,
    rate: f64,
) -> tokio::time::Instant {
    if rate > 0.0 && n > 0 {
        start + Duration::from_secs_f64(i as f64 / n as f64 / rate)
    } else {
        start
    }
}

/// The value of counter `name` in the broker's `/metrics` (`None` if unreachable or absent).
pub(crate) async fn metric(http: &reqwest::Client, url: &str, name: &str) -> Option<u64> {
    let text = http
        .get(format!("{url}/metrics"))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == name).then(|| v.trim().parse::<f64>().ok().map(|f| f as u64))?
    })
}

/// `a / b`, 0 when `b` is 0.
pub(crate) fn per(a: f64, b: f64) -> f64 {
    if b > 0.0 { a / b } else { 0.0 }
}

/// A JSON value for a latency, `null` when empty.
pub(crate) fn latency_json(h: &hdrhistogram::Histogram<u64>) -> serde_json::Value {
    Latency::of(h)
        .and_then(|l| serde_json::to_value(l).ok())
        .unwrap_or(serde_json::Value::Null)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::staggered;

    #[test]
    fn paced_tasks_start_spread_over_one_interval() {
        let start = tokio::time::Instant::now();
        // 4 tasks at 10/s each: phases 0, 25, 50 and 75 ms.
        let phases: Vec<Duration> = (0..4)
            .map(|i| staggered(start, i, 4, 10.0) - start)
            .collect();
        assert_eq!(
            phases,
            [0, 25, 50, 75].map(Duration::from_millis).to_vec(),
            "evenly spread inside the first 100 ms interval"
        );
        // Unpaced runs (rate 0) start at once.
        assert_eq!(staggered(start, 3, 4, 0.0), start);
    }
}
