//! S3b: echo inside the service, with no app server. The broker has no hub-method routing of
//! its own in Serverless mode (client invocations go to an upstream), so each client sends its
//! payload to its own connection through the REST API (`POST
//! /api/v1/hubs/{hub}/connections/{id}`) and waits for it on its socket: one round trip in
//! flight per client.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use anyhow::Result;
use switchboard::protocol::HubMessage;

use super::s3::{ECHO_TIMEOUT, closed, connect_all};
use super::{pace, report, staggered};
use crate::client::{self, Client};
use crate::failure::ErrorKind;
use crate::sender::{http_client, send_load};
use crate::stats::{Report, Stats, Tracker};
use crate::{Common, KEEP_ALIVE};

/// Waits for load message `(sender, seq)`; `Ok(Some(ts))` when it came.
async fn wait_for(
    client: &mut Client,
    tracker: &mut Tracker,
    sender: u64,
    seq: u64,
) -> Result<Option<u64>> {
    loop {
        match client.next_message().await? {
            Some(HubMessage::Invocation(inv)) if inv.target == client::TARGET => {
                let Some((s, q, ts)) = client::parse_load(&inv.arguments) else {
                    return Ok(None);
                };
                tracker.on_message(s, q);
                if s == sender && q == seq {
                    return Ok(Some(ts));
                }
                if s != sender || q > seq {
                    return Ok(None);
                }
            }
            Some(HubMessage::Close(c)) => return Err(closed(Some(c.error), client).into()),
            None => return Err(closed(None, client).into()),
            Some(_) => {}
        }
    }
}

/// Runs S3b.
pub async fn run(common: &Common) -> Result<Report> {
    let stats = Arc::new(Stats::new());
    let _progress = stats.progress(common.quiet);
    let clients = connect_all(common, &stats, true).await?;
    let target = common.target();
    let token = Arc::new(target.rest_token(&format!("/api/v1/hubs/{}", target.hub)));
    let http = http_client(clients.len())?;
    let pad = Arc::new(client::padding(common.payload_bytes));
    let n = clients.len();
    let per_client_rate = common.rate / n.max(1) as f64;
    let start = tokio::time::Instant::now();
    let end = start + common.duration();
    let mut tasks = Vec::with_capacity(n);
    for (i, mut client) in clients.into_iter().enumerate() {
        let start = staggered(start, i, n, per_client_rate);
        let Some(id) = client.connection_id().map(str::to_owned) else {
            stats.error(ErrorKind::Protocol, || {
                "a client has no connection id (negotiate gave none)".to_owned()
            });
            continue;
        };
        let url = target.rest_url(&format!("/api/v1/hubs/{}/connections/{id}", target.hub));
        let (stats, pad, token, http) = (stats.clone(), pad.clone(), token.clone(), http.clone());
        tasks.push(tokio::spawn(async move {
            let mut tracker = Tracker::default();
            let mut seq = 0u64;
            let mut ping = tokio::time::Instant::now();
            let sender = i as u64;
            while tokio::time::Instant::now() < end && !stats.stopping() {
                pace(start, seq, per_client_rate).await;
                if ping.elapsed() >= KEEP_ALIVE {
                    ping = tokio::time::Instant::now();
                    if client.ping().await.is_err() {
                        stats.dropped.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                }
                if !send_load(&http, &url, &token, sender, seq, &pad, &stats).await {
                    continue;
                }
                stats.sent.fetch_add(1, Ordering::Relaxed);
                let this = seq;
                seq += 1;
                match tokio::time::timeout(
                    ECHO_TIMEOUT,
                    wait_for(&mut client, &mut tracker, sender, this),
                )
                .await
                {
                    Ok(Ok(Some(ts))) => {
                        stats.received.fetch_add(1, Ordering::Relaxed);
                        stats.record_us(i, client::now_us().saturating_sub(ts));
                    }
                    Ok(Ok(None)) => stats.error(ErrorKind::Protocol, || {
                        format!(
                            "client {sender} got another load message than its own {this} \
                             (undecodable, someone else's, or out of order)"
                        )
                    }),
                    Ok(Err(e)) => {
                        stats.failure(&e);
                        stats.dropped.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                    Err(_) => {
                        stats.error(ErrorKind::Timeout, || {
                            format!(
                                "a message sent to its own connection did not come back within {} s",
                                ECHO_TIMEOUT.as_secs()
                            )
                        });
                        stats.dropped.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                }
            }
            client.close().await;
            (sender, seq, tracker)
        }));
    }
    let mut done = Vec::with_capacity(tasks.len());
    for t in tasks {
        done.push(t.await?);
    }
    let secs = start.elapsed().as_secs_f64();
    let mut r = report(
        "s3b-echo",
        common.params(serde_json::json!({})),
        &stats,
        secs,
    );
    for (sender, sent, tr) in &done {
        r.connected += 1;
        r.expected += sent;
        r.duplicates += tr.duplicates;
        r.lost += tr.gaps + sent.saturating_sub(tr.next_from(*sender));
    }
    r.extra.insert(
        "round_trips_per_second".into(),
        (r.received as f64 / secs.max(1e-9)).into(),
    );
    Ok(r)
}
