//! S5: groups. (a)/(b) `--groups` groups of `--group-size` negotiated connections, each added
//! with `PUT /api/hubs/{hub}/groups/{g}/connections/{id}`; one sender stream per group (REST
//! group send) from `--senders` clients at `--rate` sends/s in total; every receiver checks its
//! group's stream. (c) `--churn`: `--senders` clients add and remove connections to and from
//! groups (PUT / DELETE) at `--rate` operations/s; the latency of each operation is recorded
//! and, at the end, every group's connection listing must match the memberships the clients
//! left behind.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Result;

use super::{apply_snapshot, pace, per, report, spec_for, staggered};
use crate::failure::{ErrorKind, Failure};
use crate::pool::{Expect, Pool};
use crate::sender::{self, Dest, Plan, Streams, group_name};
use crate::stats::{Hist, Latency, Report, Stats};
use crate::{Common, DRAIN, Transport};

/// Opens `n` negotiated WebSocket receivers in this process (connection ids are needed), at the
/// one `--receiver-url` if given (another node of a cluster: the REST calls stay at `--url`).
async fn open_pool(common: &Common, n: usize, stats: &Arc<Stats>) -> Result<Pool> {
    let mut spec = spec_for(common, Transport::Websockets);
    spec.connections = n;
    spec.negotiate = true;
    match common.receiver_urls.as_slice() {
        [] => {}
        [one] => spec.url = one.clone(),
        _ => anyhow::bail!("s5-groups takes at most one --receiver-url"),
    }
    super::open_pool(spec, stats).await
}

/// PUT or DELETE of connection `id` in group `g`; `Some(µs)` when answered 200 (a failure is
/// counted in `stats`).
async fn membership(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    add: bool,
    stats: &Stats,
) -> Option<u64> {
    let t0 = std::time::Instant::now();
    let req = if add { http.put(url) } else { http.delete(url) };
    let r = req.bearer_auth(token).send().await;
    let what = if add { "group add" } else { "group remove" };
    stats
        .answered(what, url, r, |s| s == 200)
        .await
        .then(|| t0.elapsed().as_micros() as u64)
}

/// Runs S5 (a) / (b).
pub async fn groups(
    common: &Common,
    groups: usize,
    group_size: usize,
    senders: usize,
) -> Result<Report> {
    let (groups, group_size, senders) = (groups.max(1), group_size.max(1), senders.max(1));
    let stats = Arc::new(Stats::new());
    let _progress = stats.progress(common.quiet);
    let pool = open_pool(common, groups * group_size, &stats).await?;
    let target = common.target();
    let hub = &target.hub;
    let token = Arc::new(target.rest_token(&format!("/api/hubs/{hub}")));
    let http = sender::http_client(senders)?;
    // Join every connection to its group, `senders` requests in flight.
    let join_start = std::time::Instant::now();
    let joins: Vec<(usize, String)> = pool
        .slots()
        .iter()
        .filter_map(|s| {
            s.connection_id()
                .map(|id| (s.index / group_size, id.to_owned()))
        })
        .collect();
    let joins = Arc::new(joins);
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..senders {
        let (joins, next, http, token, stats) = (
            joins.clone(),
            next.clone(),
            http.clone(),
            token.clone(),
            stats.clone(),
        );
        let base = target.url.clone();
        let hub = hub.clone();
        tasks.push(tokio::spawn(async move {
            while !stats.stopping() {
                let k = next.fetch_add(1, Ordering::Relaxed) as usize;
                let Some((g, id)) = joins.get(k) else { break };
                let url = format!(
                    "{base}/api/hubs/{hub}/groups/{}/connections/{id}?api-version=2022-06-01",
                    group_name(*g)
                );
                membership(&http, &url, &token, true, &stats).await;
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    let join_secs = join_start.elapsed().as_secs_f64();
    let streams = Streams::new(groups);
    let phase = sender::run(
        &target,
        &http,
        &Plan {
            dest: Dest::Groups,
            senders,
            rate: common.rate,
            duration: common.duration(),
            payload_bytes: common.payload_bytes,
        },
        &streams,
        &stats,
    )
    .await?;
    let snap = pool
        .check(
            &Expect::Groups {
                size: group_size,
                totals: streams.totals(),
            },
            DRAIN,
        )
        .await;
    pool.close().await;
    let mut r = report(
        "s5-groups",
        common.params(serde_json::json!({
            "groups": groups, "group_size": group_size, "senders": senders,
            "connections": groups * group_size,
        })),
        &stats,
        phase.seconds,
    );
    apply_snapshot(&mut r, &snap, &snap.hist(), &stats, true);
    r.sent = streams.total();
    r.extra.insert(
        "joins_per_second".into(),
        per(joins.len() as f64, join_secs).into(),
    );
    r.extra.insert(
        "group_sends_per_second".into(),
        per(r.sent as f64, phase.seconds).into(),
    );
    r.extra.insert(
        "deliveries_per_second".into(),
        per(r.received as f64, phase.seconds).into(),
    );
    Ok(r)
}

/// The connection ids the broker lists for group `g` (following `nextLink`).
pub(crate) async fn listing(
    http: &reqwest::Client,
    target: &crate::Target,
    token: &str,
    g: usize,
) -> Result<HashSet<String>> {
    let mut url = format!(
        "{}&maxpagesize=200",
        target.rest_url(&format!(
            "/api/hubs/{}/groups/{}/connections",
            target.hub,
            group_name(g)
        ))
    );
    let mut ids = HashSet::new();
    loop {
        let r = http
            .get(&url)
            .bearer_auth(token)
            .send()
            .await
            .map_err(|e| Failure::request("group listing", &url, &e))?;
        if r.status().as_u16() != 200 {
            return Err(Failure::answered("group listing", &url, r).await.into());
        }
        let body: serde_json::Value = r
            .json()
            .await
            .map_err(|e| Failure::request("group listing", &url, &e))?;
        for v in body["value"].as_array().into_iter().flatten() {
            if let Some(id) = v["connectionId"].as_str() {
                ids.insert(id.to_owned());
            }
        }
        match body["nextLink"].as_str() {
            Some(next) if !next.is_empty() => {
                // nextLink is built on the public endpoint; keep our own base URL.
                let path = next.find("/api/").map_or(next, |i| &next[i..]);
                url = format!("{}{path}", target.url);
            }
            _ => return Ok(ids),
        }
    }
}

/// Runs S5 (c): join/leave churn.
pub async fn churn(common: &Common, groups: usize, senders: usize) -> Result<Report> {
    let (groups, senders) = (groups.max(1), senders.max(1));
    let stats = Arc::new(Stats::new());
    let _progress = stats.progress(common.quiet);
    let pool = open_pool(common, common.connections, &stats).await?;
    let ids: Vec<String> = pool
        .slots()
        .iter()
        .filter_map(|s| s.connection_id().map(str::to_owned))
        .collect();
    let target = common.target();
    let token = Arc::new(target.rest_token(&format!("/api/hubs/{}", target.hub)));
    let http = sender::http_client(senders)?;
    let hist = Arc::new(Hist::new());
    crate::timeline::watch_hist(&hist);
    let ids = Arc::new(ids);
    let per_sender_rate = common.rate / senders as f64;
    let start = tokio::time::Instant::now();
    let end = start + common.duration();
    let (puts, deletes) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut tasks = Vec::new();
    for k in 0..senders.min(ids.len().max(1)) {
        let (ids, http, token, stats, hist, puts, deletes) = (
            ids.clone(),
            http.clone(),
            token.clone(),
            stats.clone(),
            hist.clone(),
            puts.clone(),
            deletes.clone(),
        );
        let (base, hub) = (target.url.clone(), target.hub.clone());
        let start = staggered(start, k, senders, per_sender_rate);
        tasks.push(tokio::spawn(async move {
            // This client owns connections k, k + senders, …; it walks over (connection,
            // group) pairs and toggles each membership.
            let mine: Vec<usize> = (k..ids.len()).step_by(senders).collect();
            let mut member: HashMap<(usize, usize), bool> = HashMap::new();
            let mut n = 0u64;
            while !mine.is_empty() && tokio::time::Instant::now() < end && !stats.stopping() {
                pace(start, n, per_sender_rate).await;
                let c = mine[(n % mine.len() as u64) as usize];
                let g = ((n / mine.len() as u64) % groups as u64) as usize;
                n += 1;
                let add = !member.get(&(c, g)).copied().unwrap_or(false);
                let url = format!(
                    "{base}/api/hubs/{hub}/groups/{}/connections/{}?api-version=2022-06-01",
                    group_name(g),
                    ids[c]
                );
                if let Some(us) = membership(&http, &url, &token, add, &stats).await {
                    member.insert((c, g), add);
                    hist.record_us(k, us);
                    stats.sent.fetch_add(1, Ordering::Relaxed);
                    if add { &puts } else { &deletes }.fetch_add(1, Ordering::Relaxed);
                }
            }
            member
        }));
    }
    let mut expected: Vec<HashSet<String>> = vec![HashSet::new(); groups];
    for t in tasks {
        for ((c, g), m) in t.await? {
            if m {
                expected[g].insert(ids[c].clone());
            }
        }
    }
    let secs = start.elapsed().as_secs_f64();
    // The broker's view must match what the clients did.
    let mut mismatches = 0u64;
    for (g, want) in expected.iter().enumerate() {
        match listing(&http, &target, &token, g).await {
            Ok(have) => mismatches += have.symmetric_difference(want).count() as u64,
            Err(e) => {
                stats.failure(&e);
            }
        }
    }
    stats.errors_n(ErrorKind::Check, mismatches, || {
        format!(
            "{mismatches} group memberships listed by the broker differ from what the clients did"
        )
    });
    pool.close().await;
    let ops = stats.sent.load(Ordering::Relaxed);
    let mut r = report(
        "s5-groups",
        common.params(serde_json::json!({
            "churn": true, "groups": groups, "senders": senders,
        })),
        &stats,
        secs,
    );
    r.connected = ids.len() as u64;
    r.latency = Latency::of(&hist.take());
    r.extra.insert("operations".into(), ops.into());
    r.extra
        .insert("puts".into(), puts.load(Ordering::Relaxed).into());
    r.extra
        .insert("deletes".into(), deletes.load(Ordering::Relaxed).into());
    r.extra
        .insert("operations_per_second".into(), per(ops as f64, secs).into());
    r.extra
        .insert("membership_mismatches".into(), mismatches.into());
    r.extra.insert(
        "final_memberships".into(),
        expected.iter().map(HashSet::len).sum::<usize>().into(),
    );
    Ok(r)
}
