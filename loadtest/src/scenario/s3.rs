//! S3: clients invoke `EchoReturn(payload)` closed-loop against a hub server (Default mode).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Result;
use switchboard::protocol::{CompletionOutcome, HubMessage, Invocation, RawValue};
use tokio::sync::Semaphore;

use super::{pace, report, staggered};
use crate::client::{self, Client, ConnectOptions};
use crate::failure::{ErrorKind, Failure};
use crate::sender::http_client;
use crate::stats::{Report, Stats, Tracker};
use crate::{Common, KEEP_ALIVE};

/// Timeout of one echo round trip.
pub(crate) const ECHO_TIMEOUT: Duration = Duration::from_secs(10);

/// Connects `common.connections` clients, at most `common.parallel` at a time (negotiating
/// when `negotiate`); failures are counted as errors, and none up stops the run
/// ([`crate::verdict::require_connections`]).
pub(crate) async fn connect_all(
    common: &Common,
    stats: &Arc<Stats>,
    negotiate: bool,
) -> Result<Vec<Client>> {
    let target = Arc::new(common.target());
    let http = if negotiate {
        Some(http_client(common.parallel)?)
    } else {
        None
    };
    let sem = Arc::new(Semaphore::new(common.parallel.max(1)));
    let mut tasks = Vec::with_capacity(common.connections);
    for _ in 0..common.connections {
        let permit = sem.clone().acquire_owned().await?;
        let (target, http) = (target.clone(), http.clone());
        tasks.push(tokio::spawn(async move {
            let c = Client::connect_with(
                &target,
                ConnectOptions {
                    http: http.as_ref(),
                    ..ConnectOptions::default()
                },
            )
            .await;
            drop(permit);
            c
        }));
    }
    let mut clients = Vec::with_capacity(tasks.len());
    for t in tasks {
        match t.await? {
            Ok(c) => {
                stats.opened_one();
                clients.push(c);
            }
            Err(e) => {
                stats.failure(&e);
            }
        }
    }
    crate::verdict::require_connections(stats, clients.len() as u64, common.connections as u64)?;
    Ok(clients)
}

/// One blocking invocation of `target`: the Completion's result, or what it said instead
/// (`Err(None)` for a void completion, `Err(Some(error))` for an error).
pub(crate) async fn invoke_once(
    client: &mut Client,
    target: &str,
    id: &str,
    args: RawValue,
) -> Result<Result<RawValue, Option<String>>> {
    client
        .send(&HubMessage::Invocation(Invocation {
            headers: Vec::new(),
            invocation_id: Some(id.to_owned()),
            target: target.to_owned(),
            arguments: args,
            stream_ids: Vec::new(),
        }))
        .await?;
    loop {
        match client.next_message().await? {
            Some(HubMessage::Completion(c)) if c.invocation_id == id => {
                return Ok(match c.outcome {
                    CompletionOutcome::Result(v) => Ok(v),
                    CompletionOutcome::Void => Err(None),
                    CompletionOutcome::Error(e) => Err(Some(e)),
                });
            }
            Some(HubMessage::Close(c)) => return Err(closed(Some(c.error), client).into()),
            None => return Err(closed(None, client).into()),
            Some(_) => {}
        }
    }
}

/// The broker closed `client`'s connection: with the Close message's error (`close`), else the
/// close frame's reason.
pub(crate) fn closed(close: Option<Option<String>>, client: &Client) -> Failure {
    let reason = match close {
        Some(Some(error)) => format!(" with a Close message: {error}"),
        Some(None) => " with a Close message".to_owned(),
        None => client.closed_because(),
    };
    Failure::new(
        ErrorKind::ClosedByServer,
        format!("the broker closed the connection{reason}"),
    )
}

/// Closed-loop invocations of `method` by every client for `--duration` s: `args(i, seq, ts)`
/// builds the arguments, `payload(result)` finds the load payload in the result. Returns the
/// filled report (sent, received, lost, errors, latency = round trip).
pub(crate) async fn closed_loop(
    common: &Common,
    scenario: &str,
    clients: Vec<Client>,
    stats: &Arc<Stats>,
    method: &'static str,
    args: fn(switchboard::protocol::HubProtocol, u64, u64, u64, &str) -> RawValue,
    payload: fn(&RawValue) -> Option<(u64, u64, u64)>,
) -> Result<Report> {
    let protocol = switchboard::protocol::HubProtocol::from(common.protocol);
    let pad = Arc::new(client::padding(common.payload_bytes));
    let n = clients.len();
    let per_client_rate = common.rate / n.max(1) as f64;
    let start = tokio::time::Instant::now();
    let end = start + common.duration();
    let mut tasks = Vec::with_capacity(n);
    for (i, mut client) in clients.into_iter().enumerate() {
        let (stats, pad) = (stats.clone(), pad.clone());
        let start = staggered(start, i, n, per_client_rate);
        tasks.push(tokio::spawn(async move {
            let mut tracker = Tracker::default();
            let mut seq = 0u64;
            let mut ping = tokio::time::Instant::now();
            while tokio::time::Instant::now() < end && !stats.stopping() {
                pace(start, seq, per_client_rate).await;
                if ping.elapsed() >= KEEP_ALIVE {
                    ping = tokio::time::Instant::now();
                    if client.ping().await.is_err() {
                        stats.dropped.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                }
                let a = args(protocol, i as u64, seq, client::now_us(), &pad);
                stats.sent.fetch_add(1, Ordering::Relaxed);
                let id = seq.to_string();
                seq += 1;
                match tokio::time::timeout(ECHO_TIMEOUT, invoke_once(&mut client, method, &id, a))
                    .await
                {
                    Ok(Ok(Ok(v))) => match payload(&v) {
                        Some((sender, q, ts)) if sender == i as u64 => {
                            tracker.on_message(sender, q);
                            stats.received.fetch_add(1, Ordering::Relaxed);
                            stats.record_us(i, client::now_us().saturating_sub(ts));
                        }
                        _ => stats.error(ErrorKind::Protocol, || {
                            format!("{method} returned something else than its payload")
                        }),
                    },
                    Ok(Ok(Err(error))) => stats.error(ErrorKind::Protocol, || match error {
                        Some(e) => format!("{method} completed with an error: {e}"),
                        None => format!("{method} completed without a result"),
                    }),
                    Ok(Err(e)) => {
                        stats.failure(&e);
                        stats.dropped.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                    Err(_) => {
                        stats.error(ErrorKind::Timeout, || {
                            format!("{method} had no answer within {} s", ECHO_TIMEOUT.as_secs())
                        });
                        stats.dropped.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                }
            }
            client.close().await;
            (seq, tracker)
        }));
    }
    let mut done = Vec::with_capacity(tasks.len());
    for t in tasks {
        done.push(t.await?);
    }
    let secs = start.elapsed().as_secs_f64();
    let mut r = report(scenario, common.params(serde_json::json!({})), stats, secs);
    for (i, (sent, tr)) in done.iter().enumerate() {
        r.connected += 1;
        r.expected += sent;
        r.lost += tr.gaps + sent.saturating_sub(tr.next_from(i as u64));
        r.duplicates += tr.duplicates;
    }
    r.extra.insert(
        "round_trips_per_second".into(),
        (r.received as f64 / secs.max(1e-9)).into(),
    );
    Ok(r)
}

fn echo_payload(v: &RawValue) -> Option<(u64, u64, u64)> {
    client::parse_load(v)
}

/// Runs S3.
pub async fn run(common: &Common) -> Result<Report> {
    let stats = Arc::new(Stats::new());
    let _progress = stats.progress(common.quiet);
    let clients = connect_all(common, &stats, common.negotiate).await?;
    closed_loop(
        common,
        "s3-echo",
        clients,
        &stats,
        "EchoReturn",
        client::echo_arguments,
        echo_payload,
    )
    .await
}
