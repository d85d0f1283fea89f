//! S7: Serverless mode with the built-in upstream receiver. Clients invoke `Echo` closed-loop;
//! the broker POSTs each invocation to the receiver, whose answer (the payload) becomes the
//! client's Completion. Connected and disconnected events go to the same receiver.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use super::s3::{closed_loop, connect_all};
use super::{latency_json, per};
use crate::Common;
use crate::client;
use crate::failure::ErrorKind;
use crate::stats::{Report, Stats};
use crate::upstream::{Receiver, url_template};

/// How long the disconnected events may take to arrive after the clients closed.
const EVENTS_WAIT: Duration = Duration::from_secs(10);

/// The broker command this scenario needs.
pub fn broker_command(common: &Common, upstream: SocketAddr) -> String {
    let listen = common
        .url
        .split_once("://")
        .map_or(common.url.as_str(), |(_, r)| r)
        .trim_end_matches('/');
    format!(
        "switchboard serve --listen {listen} --mode serverless --access-key {} --upstream \"{}\"",
        common.key,
        url_template(upstream)
    )
}

/// Runs S7.
pub async fn run(common: &Common, listen: SocketAddr, workers: usize) -> Result<Report> {
    let receiver = Receiver::bind(listen, workers).with_context(|| {
        format!("starting the upstream receiver on {listen} (choose another --upstream-listen)")
    })?;
    if !common.quiet {
        eprintln!(
            "s7-upstream: upstream receiver on {}; the broker must run as:\n  {}",
            receiver.addr,
            broker_command(common, receiver.addr)
        );
    }
    let counters = receiver.counters.clone();
    let stats = Arc::new(Stats::new());
    let _progress = stats.progress(common.quiet);
    let ramp_start = Instant::now();
    let clients = connect_all(common, &stats, common.negotiate).await?;
    let ramp = ramp_start.elapsed().as_secs_f64();
    let up = clients.len() as u64;
    let connected_events = counters.connected.load(Ordering::Relaxed);
    if up > 0 && connected_events == 0 {
        receiver.stop().await;
        anyhow::bail!(
            "the upstream receiver got no connected event: start the broker as `{}`",
            broker_command(common, listen)
        );
    }
    let calls_before = counters.calls();
    let invocations_before = counters.invocations.load(Ordering::Relaxed);
    let mut r = closed_loop(
        common,
        "s7-upstream",
        clients,
        &stats,
        "Echo",
        client::load_arguments,
        client::parse_load,
    )
    .await?;
    let secs = r.seconds;
    let invocations = counters.invocations.load(Ordering::Relaxed) - invocations_before;
    let calls = counters.calls() - calls_before;
    // Every client closed: its disconnected event must arrive.
    let until = Instant::now() + EVENTS_WAIT;
    while counters.disconnected.load(Ordering::Relaxed) < counters.connected.load(Ordering::Relaxed)
        && Instant::now() < until
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let connected = counters.connected.load(Ordering::Relaxed);
    let disconnected = counters.disconnected.load(Ordering::Relaxed);
    let upstream_latency = counters.latency.take();
    let receiver_errors =
        counters.errors.load(Ordering::Relaxed) + counters.unsigned.load(Ordering::Relaxed);
    receiver.stop().await;
    // Events missing at the upstream are errors.
    stats.errors_n(ErrorKind::Check, receiver_errors, || {
        format!("the upstream receiver got {receiver_errors} requests it could not understand or that were unsigned")
    });
    let missing = up.abs_diff(connected) + connected.abs_diff(disconnected);
    stats.errors_n(ErrorKind::Check, missing, || {
        format!(
            "upstream events missing: {up} clients, {connected} connected and {disconnected} \
             disconnected events"
        )
    });
    r.errors = stats.errors.load(Ordering::Relaxed);
    r.error_kinds = stats.error_kinds();
    r.params = common.params(serde_json::json!({
        "upstream_listen": listen.to_string(), "upstream_workers": workers,
    }));
    r.extra
        .insert("upstream_invocations".into(), invocations.into());
    r.extra.insert(
        "upstream_invocations_per_second".into(),
        per(invocations as f64, secs).into(),
    );
    r.extra.insert(
        "upstream_calls_per_second".into(),
        per(calls as f64, secs).into(),
    );
    r.extra.insert("connected_events".into(), connected.into());
    r.extra
        .insert("disconnected_events".into(), disconnected.into());
    r.extra.insert(
        "connected_events_per_second".into(),
        per(connected_events as f64, ramp).into(),
    );
    r.extra.insert(
        "latency_client_to_upstream".into(),
        latency_json(&upstream_latency),
    );
    r.extra
        .insert("upstream_receiver_errors".into(), receiver_errors.into());
    Ok(r)
}
