//! S4: REST broadcasts at `--rate` to N receivers from `--senders` concurrent senders, each
//! with its own sequence stream; no loss, no duplicate, in order per stream; latency.

use std::sync::Arc;

use anyhow::Result;

use super::{apply_snapshot, open_fleet, per, report, spec_for};
use crate::pool::Expect;
use crate::sender;
use crate::stats::{Report, Stats};
use crate::{Common, DRAIN, Transport};

/// Runs S4.
pub async fn run(common: &Common, senders: usize) -> Result<Report> {
    let stats = Arc::new(Stats::new());
    let _progress = stats.progress(common.quiet);
    let mut fleet = open_fleet(common, spec_for(common, Transport::Websockets), &stats).await?;
    let (streams, phase) = sender::broadcast(common, senders, &stats).await?;
    let snap = fleet.check(&Expect::All(streams.totals()), DRAIN).await?;
    let local = fleet.local().is_some();
    fleet.close().await?;
    let mut r = report(
        "s4-broadcast",
        common.params(serde_json::json!({ "senders": senders })),
        &stats,
        phase.seconds,
    );
    apply_snapshot(&mut r, &snap, &snap.hist(), &stats, local);
    r.sent = streams.total();
    r.extra.insert(
        "broadcasts_per_second".into(),
        per(r.sent as f64, phase.seconds).into(),
    );
    r.extra.insert(
        "deliveries_per_second".into(),
        per(r.received as f64, phase.seconds).into(),
    );
    Ok(r)
}
