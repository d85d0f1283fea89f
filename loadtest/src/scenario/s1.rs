//! S1: hold connections (WebSockets, Server-Sent Events or long polling) with keep-alive;
//! connected / dropped and the broker's RSS per connection.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use anyhow::Result;

use super::{apply_snapshot, open_fleet, report, rss_kib, spec_for};
use crate::pool::Expect;
use crate::sender;
use crate::stats::{Report, Stats};
use crate::{Common, DRAIN, Transport};

/// Requests in flight while joining groups.
const JOIN_PARALLEL: usize = 64;

/// Adds user `h<i>` to group `g<i % groups>` for every `i` (current connections only); failed
/// requests are counted in `stats`.
async fn join_groups(common: &Common, groups: usize, stats: &Arc<Stats>) -> Result<()> {
    let target = common.target();
    let token = Arc::new(target.rest_token(&format!("/api/hubs/{}", target.hub)));
    let http = sender::http_client(JOIN_PARALLEL)?;
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..JOIN_PARALLEL {
        let (target, token, http, next, stats) = (
            target.clone(),
            token.clone(),
            http.clone(),
            next.clone(),
            stats.clone(),
        );
        let n = common.connections;
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n || stats.stopping() {
                    break;
                }
                let url = format!(
                    "{}&ttl=0",
                    target.rest_url(&format!(
                        "/api/hubs/{}/users/h{i}/groups/{}",
                        target.hub,
                        sender::group_name(i % groups)
                    ))
                );
                let r = http.put(&url).bearer_auth(token.as_str()).send().await;
                stats
                    .answered("group join", &url, r, |s| (200..300).contains(&s))
                    .await;
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    Ok(())
}

/// Runs S1.
pub async fn run(
    common: &Common,
    server_pid: Option<u32>,
    transport: Transport,
    groups: usize,
) -> Result<Report> {
    let stats = Arc::new(Stats::new());
    let _progress = stats.progress(common.quiet);
    let rss_before = server_pid.and_then(rss_kib);
    let start = Instant::now();
    let mut spec = spec_for(common, transport);
    if groups > 0 {
        spec.user_prefix = Some("h".to_owned());
    }
    let mut fleet = open_fleet(common, spec, &stats).await?;
    let ramp = start.elapsed().as_secs_f64();
    let up_after_ramp = fleet.connected();
    if groups > 0 {
        join_groups(common, groups, &stats).await?;
    }
    // What the broker lists as group members.
    let mut members = 0u64;
    if groups > 0 {
        let target = common.target();
        let token = target.rest_token(&format!("/api/hubs/{}", target.hub));
        let http = sender::http_client(1)?;
        for g in 0..groups {
            match super::s5::listing(&http, &target, &token, g).await {
                Ok(ids) => members += ids.len() as u64,
                Err(e) => {
                    stats.failure(&e);
                }
            }
        }
    }
    stats.hold(common.duration()).await;
    let rss_after = server_pid.and_then(rss_kib);
    let snap = fleet.check(&Expect::Nothing, DRAIN).await?;
    let local = fleet.local().is_some();
    fleet.close().await?;
    let mut r = report(
        "s1-hold",
        common.params(serde_json::json!({
            "server_pid": server_pid, "transport": transport.name(), "groups": groups,
        })),
        &stats,
        common.duration,
    );
    apply_snapshot(&mut r, &snap, &snap.hist(), &stats, local);
    r.connected = up_after_ramp;
    r.extra.insert("ramp_seconds".into(), ramp.into());
    r.extra.insert(
        "connects_per_second".into(),
        (up_after_ramp as f64 / ramp.max(1e-9)).into(),
    );
    r.extra
        .insert("still_connected_at_end".into(), snap.up.into());
    if groups > 0 {
        r.extra.insert("group_members".into(), members.into());
    }
    if let (Some(b), Some(a)) = (rss_before, rss_after) {
        r.extra.insert("server_rss_before_kib".into(), b.into());
        r.extra.insert("server_rss_after_kib".into(), a.into());
        if snap.up > 0 {
            let per = (a.saturating_sub(b) * 1024) as f64 / snap.up as f64;
            r.extra
                .insert("server_rss_bytes_per_connection".into(), per.into());
        }
    }
    Ok(r)
}
