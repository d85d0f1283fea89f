//! S2: full connects (negotiate POST + WebSocket + handshake, then close) per second.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use anyhow::Result;

use super::report;
use crate::Common;
use crate::client::Client;
use crate::sender::http_client;
use crate::stats::{Report, Stats};

/// Runs S2.
pub async fn run(common: &Common) -> Result<Report> {
    let stats = Arc::new(Stats::new());
    let _progress = stats.progress(common.quiet);
    let target = Arc::new(common.target());
    let http = http_client(common.parallel)?;
    let total = common.connections as u64;
    let claimed = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + common.duration();
    let start = Instant::now();
    let mut workers = Vec::new();
    for w in 0..common.parallel.max(1) {
        let (target, http, stats, claimed) =
            (target.clone(), http.clone(), stats.clone(), claimed.clone());
        workers.push(tokio::spawn(async move {
            while Instant::now() < deadline
                && !stats.stopping()
                && claimed.fetch_add(1, Ordering::Relaxed) < total
            {
                let t0 = Instant::now();
                match Client::connect(&target, None, Some(&http)).await {
                    Ok(c) => {
                        stats.record_us(w, t0.elapsed().as_micros() as u64);
                        stats.connects.fetch_add(1, Ordering::Relaxed);
                        c.close().await;
                    }
                    Err(e) => {
                        stats.failure(&e);
                    }
                }
            }
        }));
    }
    for w in workers {
        w.await?;
    }
    let secs = start.elapsed().as_secs_f64();
    let mut r = report(
        "s2-connect",
        common.params(serde_json::json!({})),
        &stats,
        secs,
    );
    let connects = stats.connects.load(Ordering::Relaxed);
    r.connected = connects;
    r.expected = total;
    r.extra.insert("connects".into(), connects.into());
    r.extra.insert(
        "connects_per_second".into(),
        (connects as f64 / secs.max(1e-9)).into(),
    );
    Ok(r)
}
