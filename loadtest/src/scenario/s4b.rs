//! S4b: maximum broadcast. The broadcast rate to N receivers is raised step by step (each step
//! `--duration` s, then a drain and a check) until a step's p99 exceeds the limit, a message is
//! lost or duplicated, a receiver drops, or the senders cannot reach the rate; the highest
//! passing step is the result (deliveries/s).

use std::sync::Arc;

use anyhow::Result;

use super::{apply_snapshot, latency_json, open_fleet, per, report, spec_for};
use crate::pool::Expect;
use crate::sender::{self, Dest, Plan, Streams};
use crate::stats::{Report, Stats, empty_histogram};
use crate::{Common, DRAIN, Transport};

/// A step counts as reaching its rate when the senders achieved this share of it.
const RATE_REACHED: f64 = 0.9;

/// The ramp.
#[derive(Clone, Copy, Debug)]
pub struct Ramp {
    /// Concurrent senders.
    pub senders: usize,
    /// Broadcasts/s of the first step.
    pub start_rate: f64,
    /// Multiplier between steps.
    pub factor: f64,
    /// Most steps.
    pub max_steps: usize,
    /// p99 limit in ms.
    pub max_p99_ms: u64,
}

/// Runs S4b.
pub async fn run(common: &Common, ramp: Ramp) -> Result<Report> {
    let stats = Arc::new(Stats::new());
    let _progress = stats.progress(common.quiet);
    let mut fleet = open_fleet(common, spec_for(common, Transport::Websockets), &stats).await?;
    let senders = ramp.senders.max(1);
    let streams = Streams::new(senders);
    let http = sender::http_client(senders)?;
    let target = common.target();
    let mut all = empty_histogram();
    let mut steps = Vec::new();
    let mut best: Option<(f64, f64, u64)> = None; // (rate, deliveries/s, p99)
    let mut prev = crate::pool::Snapshot::default();
    let mut rate = ramp.start_rate.max(0.1);
    let mut stopped = "max steps reached".to_owned();
    let mut seconds = 0.0;
    let mut last = None;
    for step in 0..ramp.max_steps.max(1) {
        let phase = sender::run(
            &target,
            &http,
            &Plan {
                dest: Dest::Broadcast,
                senders,
                rate,
                duration: common.duration(),
                payload_bytes: common.payload_bytes,
            },
            &streams,
            &stats,
        )
        .await?;
        seconds += phase.seconds;
        let snap = fleet.check(&Expect::All(streams.totals()), DRAIN).await?;
        let h = snap.hist();
        let _ = all.add(&h);
        let deliveries = snap.received.saturating_sub(prev.received);
        let lost = snap.lost.saturating_sub(prev.lost);
        let dups = snap.duplicates.saturating_sub(prev.duplicates);
        let dropped = snap.dropped.saturating_sub(prev.dropped);
        let achieved = per(phase.accepted as f64, phase.seconds);
        let p99 = if h.is_empty() {
            0
        } else {
            h.value_at_quantile(0.99)
        };
        let dps = per(deliveries as f64, phase.seconds);
        let failure = if lost > 0 || dups > 0 {
            Some(format!("{lost} lost, {dups} duplicates"))
        } else if dropped > 0 {
            Some(format!("{dropped} receivers dropped"))
        } else if p99 > ramp.max_p99_ms.saturating_mul(1000) {
            Some(format!("p99 {} ms > {} ms", p99 / 1000, ramp.max_p99_ms))
        } else if achieved < RATE_REACHED * rate {
            Some(format!(
                "the senders reached {achieved:.1} of {rate:.1} broadcasts/s (add --senders)"
            ))
        } else {
            None
        };
        steps.push(serde_json::json!({
            "step": step, "target_rate": rate, "broadcasts_per_second": achieved,
            "deliveries_per_second": dps, "deliveries": deliveries, "lost": lost,
            "duplicates": dups, "dropped": dropped, "latency": latency_json(&h),
            "passed": failure.is_none(), "failure": failure,
        }));
        prev = snap.clone();
        last = Some(snap);
        let failure = failure.or_else(|| {
            stats
                .stopping()
                .then(|| "the run failed (see its errors)".to_owned())
        });
        if let Some(f) = failure {
            stopped = f;
            break;
        }
        best = Some((rate, dps, p99));
        rate *= ramp.factor.max(1.01);
    }
    let local = fleet.local().is_some();
    fleet.close().await?;
    let mut r = report(
        "s4b-max",
        common.params(serde_json::json!({
            "senders": senders, "start_rate": ramp.start_rate, "factor": ramp.factor,
            "max_steps": ramp.max_steps, "max_p99_ms": ramp.max_p99_ms,
        })),
        &stats,
        seconds,
    );
    if let Some(snap) = &last {
        apply_snapshot(&mut r, snap, &all, &stats, local);
    }
    r.sent = streams.total();
    r.extra.insert("steps".into(), steps.into());
    r.extra.insert("stopped_because".into(), stopped.into());
    match best {
        Some((rate, dps, p99)) => {
            r.extra.insert("best_rate".into(), rate.into());
            r.extra
                .insert("max_deliveries_per_second".into(), dps.into());
            r.extra.insert("best_step_p99_us".into(), p99.into());
        }
        None => {
            r.extra
                .insert("max_deliveries_per_second".into(), 0.0.into());
        }
    }
    Ok(r)
}
