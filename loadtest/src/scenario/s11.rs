//! S11: stateful reconnect during a broadcast. Every client negotiates with
//! `useStatefulReconnect=true`, shakes hands with version 2 and acknowledges what it processed
//! (Ack every 100 ms). At `--kill-at` × `--duration`, `--fraction` of them lose their TCP
//! connection (no close frame), stay away `--down-ms`, then open a new WebSocket with the same
//! connection token; the broker sends `Sequence` and replays what was not acknowledged, and the
//! client drops what it had already processed. Every client must see every message once, in
//! order.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;

use super::{apply_snapshot, metric, per, report, spec_for};
use crate::pool::{Control, Expect};
use crate::sender::{self, Dest, Plan, Streams};
use crate::stats::{Report, Stats};
use crate::{Common, DRAIN, Transport};

/// The broker's counter of resumed connections.
pub const RECONNECTS_METRIC: &str = "switchboard_stateful_reconnects_total";

/// Which connections are killed, when, and for how long.
#[derive(Clone, Copy, Debug)]
pub struct Kills {
    /// Share of the connections.
    pub fraction: f64,
    /// Time without a connection.
    pub down: Duration,
    /// When, as a share of the sending phase.
    pub at: f64,
}

/// Runs S11.
pub async fn run(common: &Common, kills: Kills, senders: usize) -> Result<Report> {
    let stats = Arc::new(Stats::new());
    let _progress = stats.progress(common.quiet);
    let mut spec = spec_for(common, Transport::Websockets);
    spec.negotiate = true;
    spec.stateful = true;
    let pool = super::open_pool(spec, &stats).await?;
    let target = common.target();
    let senders = senders.max(1);
    let http = sender::http_client(senders + 1)?;
    let reconnects_before = metric(&http, &target.url, RECONNECTS_METRIC).await;
    let streams = Streams::new(senders);
    let plan = Plan {
        dest: Dest::Broadcast,
        senders,
        rate: common.rate,
        duration: common.duration(),
        payload_bytes: common.payload_bytes,
    };
    let sending = {
        let (target, http, streams, stats) =
            (target.clone(), http.clone(), streams.clone(), stats.clone());
        tokio::spawn(async move { sender::run(&target, &http, &plan, &streams, &stats).await })
    };
    stats
        .hold(common.duration().mul_f64(kills.at.clamp(0.0, 1.0)))
        .await;
    let up: Vec<_> = pool.slots().iter().filter(|s| s.is_up()).cloned().collect();
    let n_kill = ((up.len() as f64 * kills.fraction).round() as usize).min(up.len());
    let victims: Vec<_> = (0..n_kill)
        .map(|k| up[k * up.len() / n_kill.max(1)].clone())
        .collect();
    for v in &victims {
        v.control(Control::Kill { down: kills.down });
    }
    let phase = sending.await??;
    let expect = Expect::All(streams.totals());
    let snap = pool.check(&expect, DRAIN + kills.down).await;
    let reconnects_after = metric(&http, &target.url, RECONNECTS_METRIC).await;
    let ordering = std::sync::atomic::Ordering::Relaxed;
    let (mut resumed, mut failures, mut v_lost, mut v_dups, mut v_received) = (0, 0, 0, 0, 0);
    for v in &victims {
        resumed += v.resumes.load(ordering);
        failures += v.resume_failures.load(ordering);
        let (received, gaps, dups, missing) = v.counts(&expect);
        v_received += received;
        v_lost += gaps + missing;
        v_dups += dups;
    }
    let replay_drops: u64 = pool
        .slots()
        .iter()
        .map(|s| s.replay_drops.load(ordering))
        .sum();
    let reasons: Vec<String> = victims
        .iter()
        .filter(|v| v.is_dropped())
        .filter_map(|v| v.end_reason())
        .take(5)
        .collect();
    pool.close().await;
    let mut r = report(
        "s11-reconnect",
        common.params(serde_json::json!({
            "fraction": kills.fraction, "down_ms": kills.down.as_millis() as u64,
            "kill_at": kills.at, "senders": senders,
        })),
        &stats,
        phase.seconds,
    );
    apply_snapshot(&mut r, &snap, &snap.hist(), &stats, true);
    r.sent = streams.total();
    r.extra
        .insert("killed".into(), (victims.len() as u64).into());
    r.extra.insert("resumed".into(), resumed.into());
    r.extra.insert("resume_failures".into(), failures.into());
    r.extra.insert("resumed_received".into(), v_received.into());
    r.extra.insert("resumed_lost".into(), v_lost.into());
    r.extra.insert("resumed_duplicates".into(), v_dups.into());
    r.extra
        .insert("replayed_messages_dropped".into(), replay_drops.into());
    if let (Some(b), Some(a)) = (reconnects_before, reconnects_after) {
        r.extra
            .insert("broker_reconnects".into(), a.saturating_sub(b).into());
    }
    if !reasons.is_empty() {
        r.extra.insert("resumed_end_reasons".into(), reasons.into());
    }
    r.extra.insert(
        "deliveries_per_second".into(),
        per(r.received as f64, phase.seconds).into(),
    );
    Ok(r)
}
