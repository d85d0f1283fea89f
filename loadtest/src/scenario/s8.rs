//! S8: fallback transports under broadcast. Server-Sent Events and long-polling clients (and
//! WebSocket clients for comparison) receive REST broadcasts; loss, duplicates, deliveries/s and
//! latency per transport.

use std::sync::Arc;

use anyhow::Result;

use super::{apply_snapshot, latency_json, open_fleet, per, report, spec_for};
use crate::pool::{Expect, Snapshot};
use crate::sender;
use crate::stats::{Report, Stats, empty_histogram};
use crate::{Common, DRAIN, Transport};

/// Runs S8.
pub async fn run(
    common: &Common,
    sse: usize,
    long_polling: usize,
    websockets: usize,
    senders: usize,
) -> Result<Report> {
    let stats = Arc::new(Stats::new());
    let _progress = stats.progress(common.quiet);
    let mut fleets = Vec::new();
    for (transport, n) in [
        (Transport::Sse, sse),
        (Transport::LongPolling, long_polling),
        (Transport::Websockets, websockets),
    ] {
        if n == 0 {
            continue;
        }
        let mut spec = spec_for(common, transport);
        spec.connections = n;
        fleets.push((transport, open_fleet(common, spec, &stats).await?));
    }
    let (streams, phase) = sender::broadcast(common, senders, &stats).await?;
    let expect = Expect::All(streams.totals());
    let mut total = Snapshot::default();
    let mut all = empty_histogram();
    let mut per_transport = serde_json::Map::new();
    let mut local = true;
    for (transport, mut fleet) in fleets {
        let snap = fleet.check(&expect, DRAIN).await?;
        local &= fleet.local().is_some();
        fleet.close().await?;
        let h = snap.hist();
        let _ = all.add(&h);
        per_transport.insert(
            transport.name().into(),
            serde_json::json!({
                "connected": snap.connected, "dropped": snap.dropped,
                "expected": snap.expected, "received": snap.received, "lost": snap.lost,
                "duplicates": snap.duplicates,
                "deliveries_per_second": per(snap.received as f64, phase.seconds),
                "latency": latency_json(&h),
            }),
        );
        // (In-process pools share one error counter: apply_snapshot then reads it directly.)
        total.absorb(&Snapshot {
            histogram: Vec::new(),
            ..snap
        });
    }
    let mut r = report(
        "s8-fallback",
        common.params(serde_json::json!({
            "sse": sse, "long_polling": long_polling, "websockets": websockets,
            "senders": senders, "sse_protocol": "json",
        })),
        &stats,
        phase.seconds,
    );
    apply_snapshot(&mut r, &total, &all, &stats, local);
    r.sent = streams.total();
    r.extra.insert(
        "broadcasts_per_second".into(),
        per(r.sent as f64, phase.seconds).into(),
    );
    r.extra.insert(
        "deliveries_per_second".into(),
        per(r.received as f64, phase.seconds).into(),
    );
    r.extra.insert("transports".into(), per_transport.into());
    Ok(r)
}
