//! S9: slow consumer. A baseline broadcast phase with every receiver reading, then the same
//! phase while receiver 0 (whose socket has a small `SO_RCVBUF`) stops reading but keeps
//! pinging. The broker must cut it (its outbox is bounded: `limits.outbox_max_messages` /
//! `outbox_max_bytes`, or a socket write blocked for `limits.send_timeout_secs`) while the
//! others lose nothing; their p99 is compared with the baseline's, and their p50 / p99 / max for
//! every second of both phases goes into the report's `timeline`. After the phase the
//! generator waits up to `--cut-wait` s more (no sending) for the cut to show. With
//! `--control` the connection keeps reading: the same two phases without a slow consumer, to
//! tell the slow consumer's effect on the others' p99 from the phases' own difference.
//!
//! Note: on loopback the kernel absorbs megabytes for a non-reading socket (the broker's send
//! buffer grows with the 64 KiB loopback MSS) before the broker's outbox even starts to fill,
//! so at S4a's 750 B/s per connection the cut takes hours; run S9 with bigger payloads, a
//! higher rate or smaller outbox limits to see it within a minute.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};

use super::{apply_snapshot, latency_json, metric, per, report, spec_for};
use crate::pool::{Control, Expect, Pool};
use crate::sender::{self, Dest, Plan, Streams};
use crate::stats::{Report, Stats, empty_histogram};
use crate::{Common, DRAIN, Transport};

/// The broker's counter of connections closed for an overflowing outbox.
pub const OUTBOX_OVERFLOW_METRIC: &str = "switchboard_outbox_overflow_total";
/// How often the slow connection's presence is checked.
const WATCH_EVERY: Duration = Duration::from_millis(100);
/// The timeline's resolution.
const SAMPLE_EVERY: Duration = Duration::from_secs(1);

/// Runs `phase` while taking the receivers' latencies every [`SAMPLE_EVERY`]: one timeline
/// entry per sample (`t` from `since.1`, the phase name `since.0`, deliveries, p50 / p99 / max),
/// every latency also added to `all`. The timeline shows *when* the others' latency moved (the
/// slow consumer's cut, or the phase's own noise).
async fn sampled<T>(
    phase: impl Future<Output = T>,
    pool: &Pool,
    since: (&str, Instant),
    timeline: &mut Vec<serde_json::Value>,
    all: &mut hdrhistogram::Histogram<u64>,
) -> T {
    let sampler = async {
        let mut tick = tokio::time::interval(SAMPLE_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            let h = pool.check(&Expect::Nothing, Duration::ZERO).await.hist();
            let _ = all.add(&h);
            let q = |q: f64| {
                if h.is_empty() {
                    0
                } else {
                    h.value_at_quantile(q)
                }
            };
            timeline.push(serde_json::json!({
                "t": since.1.elapsed().as_secs_f64(), "phase": since.0, "received": h.len(),
                "p50_us": q(0.5), "p99_us": q(0.99), "max_us": h.max(),
            }));
        }
    };
    tokio::select! {
        out = phase => out,
        () = sampler => unreachable!("the sampler never ends"),
    }
}

/// Runs S9.
pub async fn run(
    common: &Common,
    senders: usize,
    baseline_secs: f64,
    slow_rcvbuf: usize,
    cut_wait: f64,
    control: bool,
) -> Result<Report> {
    let stats = Arc::new(Stats::new());
    let _progress = stats.progress(common.quiet);
    let mut spec = spec_for(common, Transport::Websockets);
    spec.negotiate = true;
    spec.first_recv_buffer = Some(slow_rcvbuf);
    spec.connections = common.connections.max(2);
    let pool = super::open_pool(spec, &stats).await?;
    let slow = pool.slots()[0].clone();
    let Some(slow_id) = slow.connection_id().map(str::to_owned) else {
        pool.close().await;
        bail!("the slow connection did not connect");
    };
    let target = common.target();
    let http = sender::http_client(senders.max(1) + 1)?;
    let overflow_before = metric(&http, &target.url, OUTBOX_OVERFLOW_METRIC).await;
    let senders = senders.max(1);
    let streams = Streams::new(senders);
    let plan = |secs: f64| Plan {
        dest: Dest::Broadcast,
        senders,
        rate: common.rate,
        duration: Duration::from_secs_f64(secs.max(0.0)),
        payload_bytes: common.payload_bytes,
    };
    let mut timeline = Vec::new();
    let phase_start = Instant::now();
    // Baseline: everyone reads.
    let mut baseline = empty_histogram();
    let base = sampled(
        sender::run(&target, &http, &plan(baseline_secs), &streams, &stats),
        &pool,
        ("baseline", phase_start),
        &mut timeline,
        &mut baseline,
    )
    .await?;
    let snap1 = pool.check(&Expect::All(streams.totals()), DRAIN).await;
    let _ = baseline.add(snap1.hist());
    // The slow consumer stops reading; watch for the broker cutting it.
    let slow_before = slow.counts(&Expect::Nothing).0;
    slow.exclude();
    if !control {
        slow.control(Control::Pause);
    }
    let paused_at = Instant::now();
    let (stop_watch, mut stopped) = tokio::sync::watch::channel(false);
    let watcher = {
        let http = http.clone();
        let base = target.url.clone();
        let url = target.rest_url(&format!("/api/hubs/{}/connections/{slow_id}", target.hub));
        let token = target.rest_token(&format!("/api/hubs/{}", target.hub));
        tokio::spawn(async move {
            let mut overflow_at = None;
            loop {
                if overflow_at.is_none()
                    && let (Some(b), Some(now)) = (
                        overflow_before,
                        metric(&http, &base, OUTBOX_OVERFLOW_METRIC).await,
                    )
                    && now > b
                {
                    overflow_at = Some(paused_at.elapsed().as_secs_f64());
                }
                let r = http.head(&url).bearer_auth(&token).send().await;
                if matches!(&r, Ok(r) if r.status().as_u16() == 404) {
                    return (Some(paused_at.elapsed().as_secs_f64()), overflow_at);
                }
                tokio::select! {
                    _ = tokio::time::sleep(WATCH_EVERY) => {}
                    _ = stopped.changed() => return (None, overflow_at),
                }
            }
        })
    };
    let mut others = empty_histogram();
    let slow_phase = sampled(
        sender::run(&target, &http, &plan(common.duration), &streams, &stats),
        &pool,
        ("slow", phase_start),
        &mut timeline,
        &mut others,
    )
    .await?;
    let snap2 = pool.check(&Expect::All(streams.totals()), DRAIN).await;
    let _ = others.add(snap2.hist());
    // A cut connection may first have to wait out the broker's send timeout (its Close
    // message cannot be written to a full socket).
    let cut_wait = if control { 0.0 } else { cut_wait.max(0.0) };
    let until = Instant::now() + Duration::from_secs_f64(cut_wait);
    while !watcher.is_finished() && Instant::now() < until && !stats.stopping() {
        tokio::time::sleep(WATCH_EVERY).await;
    }
    let _ = stop_watch.send(true);
    let (cut_after, overflow_after_s) = watcher.await?;
    let overflow_after = metric(&http, &target.url, OUTBOX_OVERFLOW_METRIC).await;
    // Let the slow one read what reached it: it must end (a Close message or the end of the
    // socket) after a gapless prefix of the stream.
    slow.control(Control::Unpause);
    let until = Instant::now() + DRAIN;
    while slow.is_up() && cut_after.is_some() && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A control run's connection kept reading: let it finish reading like the others.
    let everything = Expect::All(streams.totals());
    while control && slow.counts(&everything).3 > 0 && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (slow_received, slow_gaps, slow_dups, _) = slow.counts(&Expect::Nothing);
    let slow_reason = slow.end_reason();
    let slow_ended = slow.is_dropped();
    pool.close().await;

    let mut r = report(
        "s9-slow-consumer",
        common.params(serde_json::json!({
            "senders": senders, "baseline_duration": baseline_secs, "slow_rcvbuf": slow_rcvbuf,
            "cut_wait": cut_wait, "control": control,
        })),
        &stats,
        slow_phase.seconds,
    );
    apply_snapshot(&mut r, &snap2, &others, &stats, true);
    // The slow receiver is left out of the counts (its own drop is the point of the scenario).
    r.sent = streams.total();
    let p99 = |h: &hdrhistogram::Histogram<u64>| {
        if h.is_empty() {
            0
        } else {
            h.value_at_quantile(0.99)
        }
    };
    let (p_base, p_slow) = (p99(&baseline), p99(&others));
    r.extra
        .insert("slow_cut".into(), cut_after.is_some().into());
    r.extra.insert("slow_ended".into(), slow_ended.into());
    r.extra.insert(
        "slow_cut_after_seconds".into(),
        cut_after.map_or(serde_json::Value::Null, Into::into),
    );
    r.extra.insert(
        "slow_overflow_after_seconds".into(),
        overflow_after_s.map_or(serde_json::Value::Null, Into::into),
    );
    r.extra.insert(
        "slow_close_reason".into(),
        slow_reason.map_or(serde_json::Value::Null, Into::into),
    );
    r.extra.insert(
        "slow_paused_at_seconds".into(),
        (paused_at - phase_start).as_secs_f64().into(),
    );
    r.extra.insert("timeline".into(), timeline.into());
    r.extra.insert("slow_received".into(), slow_received.into());
    r.extra.insert("slow_gaps".into(), slow_gaps.into());
    r.extra.insert("slow_duplicates".into(), slow_dups.into());
    if let (Some(b), Some(a)) = (overflow_before, overflow_after) {
        r.extra
            .insert("outbox_overflows".into(), a.saturating_sub(b).into());
    }
    r.extra
        .insert("baseline_latency".into(), latency_json(&baseline));
    r.extra.insert(
        "others_p99_change_percent".into(),
        (per(p_slow as f64 - p_base as f64, p_base as f64) * 100.0).into(),
    );
    r.extra.insert(
        "baseline_deliveries_per_second".into(),
        per(snap1.received as f64, base.seconds).into(),
    );
    r.extra.insert(
        "deliveries_per_second".into(),
        per(
            snap2
                .received
                .saturating_sub(snap1.received.saturating_sub(slow_before)) as f64,
            slow_phase.seconds,
        )
        .into(),
    );
    Ok(r)
}
