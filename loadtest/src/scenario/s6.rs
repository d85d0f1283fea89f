//! S6: REST send-to-user from C keep-alive clients to N users with one receiver each.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Result;

use super::{apply_snapshot, open_fleet, pace, per, report, spec_for, staggered};
use crate::pool::Expect;
use crate::sender::{http_client, send_load};
use crate::stats::{Report, Stats};
use crate::{Common, DRAIN, Transport, client};

/// Runs S6.
pub async fn run(common: &Common, concurrency: usize) -> Result<Report> {
    let n = common.connections.max(1);
    let c = concurrency.clamp(1, n);
    let stats = Arc::new(Stats::new());
    let _progress = stats.progress(common.quiet);
    let mut spec = spec_for(common, Transport::Websockets);
    spec.connections = n;
    spec.user_prefix = Some("u".to_owned());
    let mut fleet = open_fleet(common, spec, &stats).await?;
    let target = Arc::new(common.target());
    let http = http_client(c)?;
    let sent_per_user: Arc<Vec<AtomicU64>> = Arc::new((0..n).map(|_| AtomicU64::new(0)).collect());
    let pad = Arc::new(client::padding(common.payload_bytes));
    let start = tokio::time::Instant::now();
    let end = start + common.duration();
    let per_sender_rate = common.rate / c as f64;
    let token = Arc::new(target.rest_token(&format!("/api/hubs/{}", target.hub)));
    let mut senders = Vec::new();
    for s in 0..c {
        let (target, http, stats, sent_per_user, pad, token) = (
            target.clone(),
            http.clone(),
            stats.clone(),
            sent_per_user.clone(),
            pad.clone(),
            token.clone(),
        );
        let start = staggered(start, s, c, per_sender_rate);
        senders.push(tokio::spawn(async move {
            let mine: Vec<(usize, String)> = (s..n)
                .step_by(c)
                .map(|j| {
                    let url =
                        target.rest_url(&format!("/api/hubs/{}/users/u{j}/:send", target.hub));
                    (j, url)
                })
                .collect();
            let mut seqs = vec![0u64; mine.len()];
            let mut attempts = 0u64;
            while tokio::time::Instant::now() < end && !stats.stopping() {
                pace(start, attempts, per_sender_rate).await;
                let k = (attempts % mine.len() as u64) as usize;
                attempts += 1;
                let (_, url) = &mine[k];
                if send_load(&http, url, &token, s as u64, seqs[k], &pad, &stats).await {
                    seqs[k] += 1;
                    stats.sent.fetch_add(1, Ordering::Relaxed);
                }
            }
            for (k, (j, _)) in mine.iter().enumerate() {
                sent_per_user[*j].store(seqs[k], Ordering::Relaxed);
            }
        }));
    }
    for s in senders {
        s.await?;
    }
    let secs = start.elapsed().as_secs_f64();
    let sent = stats.sent.load(Ordering::Relaxed);
    let each = (0..n)
        .map(|j| ((j % c) as u64, sent_per_user[j].load(Ordering::Relaxed)))
        .collect();
    let snap = fleet.check(&Expect::Each(each), DRAIN).await?;
    let local = fleet.local().is_some();
    fleet.close().await?;
    let mut r = report(
        "s6-rest-user",
        common.params(serde_json::json!({ "concurrency": c })),
        &stats,
        secs,
    );
    apply_snapshot(&mut r, &snap, &snap.hist(), &stats, local);
    r.sent = sent;
    r.extra
        .insert("requests_per_second".into(), per(sent as f64, secs).into());
    r.extra.insert(
        "deliveries_per_second".into(),
        per(r.received as f64, secs).into(),
    );
    Ok(r)
}
