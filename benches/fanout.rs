//! Criterion benchmarks of in-process fan-out through the real hub actor.
//!
//! A tokio runtime runs a `HubRegistry` hub with N registered connections (half JSON, half
//! MessagePack, outboxes large enough never to overflow). Each iteration sends one ~100 B
//! non-blocking Invocation (a fresh `SerializedMessage`, so the once-per-protocol encode is part
//! of the cost) and waits on `HubHandle::barrier`, i.e. until every frame is in its outbox; then
//! every outbox is drained with `Outbox::drain_into`. Throughput is in deliveries
//! (`Throughput::Elements(recipients)`).
//!
//! - `fanout_send_all/{hub}/{N}`: `send_all` + barrier timed; the drain is not timed.
//! - `fanout_send_all_drain/{N}`: `send_all` + barrier + draining every outbox, all timed.
//! - `fanout_groups/...`: 10,000 connections in 10 groups of 1,000; `send_group` to one group
//!   (1,000 deliveries) and `SendGroups` to all ten (10,000 deliveries, de-duplicated).
//! - `encode/...`: `SerializedMessage::bytes_for` alone, first call (encodes) and a cached call.

#[path = "common/mod.rs"]
mod common;

use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use common::{arguments_100b, message, populate, registry};
use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use switchboard::hub::{HubHandle, SerializedMessage};
use switchboard::id::GroupName;
use switchboard::peer::ConnHandle;
use switchboard::protocol::HubProtocol;
use tokio::runtime::Runtime;

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// Drain every outbox; returns the frames taken (to check nothing was lost).
fn drain_all(conns: &[ConnHandle], buf: &mut BytesMut) -> usize {
    let mut frames = 0;
    for c in conns {
        let mut single = None;
        buf.clear();
        frames += c.outbox().drain_into(buf, &mut single).frames;
        black_box(single);
    }
    frames
}

/// Time `iters` runs of `send` + barrier; drain outside the timed region unless `timed_drain`.
fn run_fanout<F, Fut>(
    rt: &Runtime,
    hub: &HubHandle,
    conns: &[ConnHandle],
    expected: usize,
    iters: u64,
    timed_drain: bool,
    send: F,
) -> Duration
where
    F: Fn() -> Fut,
    Fut: Future<Output = ()>,
{
    let mut buf = BytesMut::with_capacity(4096);
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let start = Instant::now();
        rt.block_on(async {
            send().await;
            hub.barrier().await.expect("hub alive");
        });
        if timed_drain {
            let frames = drain_all(conns, &mut buf);
            total += start.elapsed();
            assert_eq!(frames, expected, "every recipient got the frame");
        } else {
            total += start.elapsed();
            let frames = drain_all(conns, &mut buf);
            assert_eq!(frames, expected, "every recipient got the frame");
        }
    }
    total
}

fn fanout_all(c: &mut Criterion) {
    let rt = runtime();
    let args = arguments_100b();
    let mut group = c.benchmark_group("fanout_send_all");
    group
        .measurement_time(Duration::from_secs(3))
        .sample_size(20);
    let mut hubs = Vec::new();
    for n in [1_000usize, 10_000] {
        let registry = registry();
        let hub = rt
            .block_on(async { registry.get_or_create(&format!("all{n}")) })
            .expect("within max_hubs");
        let conns = populate(&rt, &hub, n, 0);
        group.throughput(Throughput::Elements(n as u64));
        group.bench_function(BenchmarkId::from_parameter(n), |b| {
            b.iter_custom(|iters| {
                run_fanout(&rt, &hub, &conns, n, iters, false, || async {
                    hub.send_all(message(&args), Vec::new())
                        .await
                        .expect("hub alive");
                })
            });
        });
        hubs.push((registry, hub, conns, n));
    }
    group.finish();

    let mut group = c.benchmark_group("fanout_send_all_drain");
    group
        .measurement_time(Duration::from_secs(3))
        .sample_size(20);
    for (_registry, hub, conns, n) in &hubs {
        group.throughput(Throughput::Elements(*n as u64));
        group.bench_function(BenchmarkId::from_parameter(n), |b| {
            b.iter_custom(|iters| {
                run_fanout(&rt, hub, conns, *n, iters, true, || async {
                    hub.send_all(message(&args), Vec::new())
                        .await
                        .expect("hub alive");
                })
            });
        });
    }
    group.finish();
    drop(hubs);
}

fn fanout_groups(c: &mut Criterion) {
    let rt = runtime();
    let args = arguments_100b();
    let registry = registry();
    let hub = rt
        .block_on(async { registry.get_or_create("groups") })
        .expect("within max_hubs");
    let conns = populate(&rt, &hub, 10_000, 10);
    let mut group = c.benchmark_group("fanout_groups");
    group
        .measurement_time(Duration::from_secs(3))
        .sample_size(20);

    group.throughput(Throughput::Elements(1_000));
    group.bench_function("send_group_1_of_10x1000", |b| {
        let target = GroupName::from("g3");
        b.iter_custom(|iters| {
            run_fanout(&rt, &hub, &conns, 1_000, iters, false, || async {
                hub.send_group(target.clone(), message(&args), Vec::new(), Vec::new())
                    .await
                    .expect("hub alive");
            })
        });
    });

    group.throughput(Throughput::Elements(10_000));
    group.bench_function("send_groups_10x1000", |b| {
        let targets: Vec<GroupName> = (0..10).map(|g| GroupName::from(format!("g{g}"))).collect();
        b.iter_custom(|iters| {
            run_fanout(&rt, &hub, &conns, 10_000, iters, false, || async {
                hub.send_groups(targets.clone(), message(&args))
                    .await
                    .expect("hub alive");
            })
        });
    });
    group.finish();
}

fn encode(c: &mut Criterion) {
    let args = arguments_100b();
    let mut group = c.benchmark_group("encode");
    group
        .measurement_time(Duration::from_secs(3))
        .sample_size(20);
    for p in [HubProtocol::Json, HubProtocol::MessagePack] {
        group.bench_function(BenchmarkId::new("bytes_for_first", p.name()), |b| {
            b.iter_batched(
                || SerializedMessage::invocation("newMessage", args.clone()),
                |msg| {
                    black_box(msg.bytes_for(black_box(p)).expect("encodes").len());
                    msg
                },
                BatchSize::SmallInput,
            );
        });
        group.bench_function(BenchmarkId::new("bytes_for_cached", p.name()), |b| {
            let msg = SerializedMessage::invocation("newMessage", args.clone());
            let _ = msg.bytes_for(p);
            b.iter(|| black_box(msg.bytes_for(black_box(p)).expect("encodes").clone()));
        });
    }
    group.finish();
}

criterion_group!(benches, encode, fanout_all, fanout_groups);
criterion_main!(benches);
