//! REST senders: several concurrent keep-alive clients, each owning one or more sender
//! *streams* (a broadcast stream, or one stream per group). Every stream numbers its messages
//! 0, 1, 2, … and sends them one at a time, so receivers can check order per stream even with
//! many senders in flight. A number is used up only when the broker answered 202 (a failed
//! send is retried with the same number).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Result;

use crate::client::{self, Target};
use crate::stats::Stats;

/// Where the streams send.
#[derive(Clone, Debug)]
pub enum Dest {
    /// `POST /api/hubs/{hub}/:send`: every stream broadcasts.
    Broadcast,
    /// `POST /api/hubs/{hub}/groups/g<stream>/:send`: stream `g` sends to group `g<g>`.
    Groups,
}

/// The name of group `g` in the scenarios.
pub fn group_name(g: usize) -> String {
    format!("g{g}")
}

/// Per-stream counters of accepted sends, shared with whoever checks the receivers.
#[derive(Debug)]
pub struct Streams {
    sent: Vec<AtomicU64>,
}

impl Streams {
    /// `n` streams, nothing sent.
    pub fn new(n: usize) -> Arc<Self> {
        Arc::new(Self {
            sent: (0..n).map(|_| AtomicU64::new(0)).collect(),
        })
    }

    /// Accepted sends per stream so far.
    pub fn totals(&self) -> Vec<u64> {
        self.sent
            .iter()
            .map(|s| s.load(Ordering::Relaxed))
            .collect()
    }

    /// Accepted sends in total.
    pub fn total(&self) -> u64 {
        self.totals().iter().sum()
    }

    /// Number of streams.
    pub fn len(&self) -> usize {
        self.sent.len()
    }

    /// Whether there is no stream.
    pub fn is_empty(&self) -> bool {
        self.sent.is_empty()
    }
}

/// One sending phase.
#[derive(Clone, Debug)]
pub struct Plan {
    /// Destination.
    pub dest: Dest,
    /// Concurrent HTTP senders (each owns streams `k, k + senders, …`).
    pub senders: usize,
    /// Sends per second over all senders (0 = as fast as possible).
    pub rate: f64,
    /// Length of the phase.
    pub duration: Duration,
    /// Padding of each payload.
    pub payload_bytes: usize,
}

/// What a phase did.
#[derive(Clone, Copy, Debug)]
pub struct Phase {
    /// Seconds it took.
    pub seconds: f64,
    /// Sends accepted in the phase.
    pub accepted: u64,
}

/// A keep-alive HTTP client for `n` concurrent senders.
pub fn http_client(n: usize) -> Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .tls_certs_merge(crate::tls::reqwest_roots())
        .pool_max_idle_per_host(n.max(1))
        .build()?)
}

/// REST broadcasts from `senders` concurrent senders (at least one) at `common.rate` for the
/// run's duration: the streams they numbered, and the phase's figures.
pub async fn broadcast(
    common: &crate::Common,
    senders: usize,
    stats: &Arc<Stats>,
) -> Result<(Arc<Streams>, Phase)> {
    let senders = senders.max(1);
    let streams = Streams::new(senders);
    let http = http_client(senders)?;
    let plan = Plan {
        dest: Dest::Broadcast,
        senders,
        rate: common.rate,
        duration: common.duration(),
        payload_bytes: common.payload_bytes,
    };
    let phase = run(&common.target(), &http, &plan, &streams, stats).await?;
    Ok((streams, phase))
}

/// Runs the phase `plan` on `streams` (continuing their numbering). Errors (non-202 or
/// transport failures) are counted in `stats.errors`, accepted sends in `stats.sent`.
pub async fn run(
    target: &Target,
    http: &reqwest::Client,
    plan: &Plan,
    streams: &Arc<Streams>,
    stats: &Arc<Stats>,
) -> Result<Phase> {
    let senders = plan.senders.clamp(1, streams.len().max(1));
    let pad = Arc::new(client::padding(plan.payload_bytes));
    let before = streams.total();
    let start = tokio::time::Instant::now();
    let end = start + plan.duration;
    let plan_rate = plan.rate;
    let hub = &target.hub;
    let token = Arc::new(target.rest_token(&format!("/api/hubs/{hub}")));
    let mut tasks = Vec::with_capacity(senders);
    for k in 0..senders {
        let mine: Vec<(usize, String)> = (k..streams.len())
            .step_by(senders)
            .map(|s| {
                let path = match plan.dest {
                    Dest::Broadcast => format!("/api/hubs/{hub}/:send"),
                    Dest::Groups => format!("/api/hubs/{hub}/groups/{}/:send", group_name(s)),
                };
                (s, target.rest_url(&path))
            })
            .collect();
        let (http, streams, stats, pad, token) = (
            http.clone(),
            streams.clone(),
            stats.clone(),
            pad.clone(),
            token.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut attempts = 0u64;
            while tokio::time::Instant::now() < end && !stats.stopping() {
                if plan_rate > 0.0 {
                    // One global schedule: send n at n / rate, sender k taking n ≡ k (mod
                    // senders).
                    let n = attempts * senders as u64 + k as u64;
                    let at = start + Duration::from_secs_f64(n as f64 / plan_rate);
                    if at >= end {
                        break;
                    }
                    tokio::time::sleep_until(at).await;
                }
                let (s, url) = &mine[(attempts % mine.len() as u64) as usize];
                attempts += 1;
                let seq = streams.sent[*s].load(Ordering::Relaxed);
                if send_load(&http, url, &token, *s as u64, seq, &pad, &stats).await {
                    streams.sent[*s].fetch_add(1, Ordering::Relaxed);
                    stats.sent.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    if plan.rate > 0.0 {
        // A paced phase lasts its whole duration, even when the last send came earlier.
        stats
            .hold(end.saturating_duration_since(tokio::time::Instant::now()))
            .await;
    }
    Ok(Phase {
        seconds: start.elapsed().as_secs_f64(),
        accepted: streams.total() - before,
    })
}

/// POSTs one load message `[sender, seq, now, pad]` to `url`; `true` when answered 202. A
/// failure is counted in `stats` by kind (the broker's message read only for the first of
/// its kind).
pub async fn send_load(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    sender: u64,
    seq: u64,
    pad: &str,
    stats: &Stats,
) -> bool {
    let body = format!(
        "{{\"target\":\"{}\",\"arguments\":{}}}",
        client::TARGET,
        client::json_arguments(sender, seq, client::now_us(), pad)
    );
    let r = http
        .post(url)
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await;
    match r {
        Ok(r) if r.status().as_u16() == 202 => true,
        r => stats.answered("REST send", url, r, |s| s == 202).await,
    }
}
