//! S10: soak. An S4-style broadcast held for `--duration` s; every `--interval` s the broker's
//! RSS is sampled and the receivers are checked (deliveries, messages still missing, p99 of the
//! interval). RSS drift is the change from the first sample after the first interval (warm) to
//! the last one.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;

use super::{apply_snapshot, latency_json, open_fleet, per, report, rss_kib, spec_for};
use crate::pool::{Expect, Snapshot};
use crate::sender::{self, Dest, Plan, Streams};
use crate::stats::{Report, Stats, empty_histogram};
use crate::{Common, DRAIN, Transport};

/// How long an interval check waits for messages already sent.
const INTERVAL_WAIT: Duration = Duration::from_millis(500);

/// Runs S10.
pub async fn run(
    common: &Common,
    server_pid: Option<u32>,
    interval: f64,
    senders: usize,
) -> Result<Report> {
    let stats = Arc::new(Stats::new());
    let _progress = stats.progress(common.quiet);
    let rss_idle = server_pid.and_then(rss_kib);
    let mut fleet = open_fleet(common, spec_for(common, Transport::Websockets), &stats).await?;
    let rss_connected = server_pid.and_then(rss_kib);
    let senders = senders.max(1);
    let streams = Streams::new(senders);
    let http = sender::http_client(senders)?;
    let plan = Plan {
        dest: Dest::Broadcast,
        senders,
        rate: common.rate,
        duration: common.duration(),
        payload_bytes: common.payload_bytes,
    };
    let sending = {
        let (target, http, streams, stats) = (
            common.target(),
            http.clone(),
            streams.clone(),
            stats.clone(),
        );
        tokio::spawn(async move { sender::run(&target, &http, &plan, &streams, &stats).await })
    };
    let interval = Duration::from_secs_f64(interval.max(0.1));
    let start = tokio::time::Instant::now();
    let mut samples = Vec::new();
    let mut prev = Snapshot::default();
    let mut all = empty_histogram();
    let mut k = 1u32;
    loop {
        let at = start + interval * k;
        while tokio::time::Instant::now() < at && !sending.is_finished() {
            let left = at.saturating_duration_since(tokio::time::Instant::now());
            tokio::time::sleep(left.min(Duration::from_millis(50))).await;
        }
        if sending.is_finished() {
            break;
        }
        k += 1;
        let snap = fleet
            .check(&Expect::All(streams.totals()), INTERVAL_WAIT)
            .await?;
        let h = snap.hist();
        let _ = all.add(&h);
        let secs = interval.as_secs_f64();
        samples.push(serde_json::json!({
            "t": start.elapsed().as_secs_f64(),
            "server_rss_kib": server_pid.and_then(rss_kib),
            "deliveries_per_second": per(snap.received.saturating_sub(prev.received) as f64, secs),
            "missing_at_check": snap.lost, "duplicates": snap.duplicates,
            "dropped": snap.dropped, "latency": latency_json(&h),
        }));
        prev = snap;
    }
    let phase = sending.await??;
    let snap = fleet.check(&Expect::All(streams.totals()), DRAIN).await?;
    let _ = all.add(snap.hist());
    let rss_end = server_pid.and_then(rss_kib);
    let local = fleet.local().is_some();
    fleet.close().await?;
    let mut r = report(
        "s10-soak",
        common.params(serde_json::json!({
            "server_pid": server_pid, "interval": interval.as_secs_f64(), "senders": senders,
        })),
        &stats,
        phase.seconds,
    );
    apply_snapshot(&mut r, &snap, &all, &stats, local);
    r.sent = streams.total();
    r.extra.insert(
        "deliveries_per_second".into(),
        per(r.received as f64, phase.seconds).into(),
    );
    let rss: Vec<u64> = samples
        .iter()
        .filter_map(|s| s["server_rss_kib"].as_u64())
        .collect();
    if let (Some(first), Some(last)) = (rss.first(), rss.last()) {
        r.extra.insert(
            "rss_drift_percent".into(),
            (per(*last as f64 - *first as f64, *first as f64) * 100.0).into(),
        );
    }
    for (k, v) in [
        ("server_rss_idle_kib", rss_idle),
        ("server_rss_connected_kib", rss_connected),
        ("server_rss_end_kib", rss_end),
    ] {
        if let Some(v) = v {
            r.extra.insert(k.into(), v.into());
        }
    }
    r.extra.insert("intervals".into(), samples.into());
    Ok(r)
}
