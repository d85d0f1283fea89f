//! Criterion benchmarks of the pure routing decisions: `routing::admit_client` (per mode),
//! `routing::route_client_message` (an Invocation per client route), and
//! `routing::sticky::choose_server` over 5 and 50 candidate server connections per sticky mode.

use std::hint::black_box;
use std::time::Duration;

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use switchboard::ServiceMode;
use switchboard::protocol::{HubMessage, Invocation, RawValue};
use switchboard::routing::sticky::{Candidate, StickyMode, choose_server};
use switchboard::routing::{ClientRoute, admit_client, route_client_message};

fn invocation(invocation_id: Option<&str>) -> HubMessage {
    HubMessage::Invocation(Invocation {
        headers: Vec::new(),
        invocation_id: invocation_id.map(str::to_owned),
        target: "SendMessage".to_owned(),
        arguments: RawValue::Json(Bytes::from_static(b"[42,\"hello\"]")),
        stream_ids: Vec::new(),
    })
}

fn admit(c: &mut Criterion) {
    let mut group = c.benchmark_group("admit_client");
    group
        .measurement_time(Duration::from_secs(3))
        .sample_size(20);
    group.throughput(Throughput::Elements(1));
    let cases = [
        ("default_with_server", ServiceMode::Default, true),
        // Rejection allocates the error text.
        ("default_no_server", ServiceMode::Default, false),
        ("serverless", ServiceMode::Serverless, false),
        ("classic_no_server", ServiceMode::Classic, false),
    ];
    for (name, mode, servers) in cases {
        group.bench_function(name, |b| {
            b.iter(|| admit_client(black_box(mode), black_box(servers)));
        });
    }
    group.finish();
}

fn route_message(c: &mut Criterion) {
    let mut group = c.benchmark_group("route_client_message");
    group
        .measurement_time(Duration::from_secs(3))
        .sample_size(20);
    group.throughput(Throughput::Elements(1));
    let blocking = invocation(Some("17"));
    let fire_and_forget = invocation(None);
    let upstream_targets = ["Broadcast", "Echo", "SendMessage"];
    let has_upstream = |t: &str| upstream_targets.contains(&t);
    let no_upstream = |_: &str| false;

    group.bench_function("to_server", |b| {
        b.iter(|| {
            route_client_message(
                black_box(ClientRoute::ToServer),
                "chat",
                black_box(&blocking),
                no_upstream,
            )
        });
    });
    group.bench_function("serverless_to_upstream", |b| {
        let route = ClientRoute::Serverless;
        b.iter(|| {
            route_client_message(black_box(route), "chat", black_box(&blocking), has_upstream)
        });
    });
    group.bench_function("serverless_reject_no_upstream", |b| {
        // Builds the Completion error text.
        let route = ClientRoute::Serverless;
        b.iter(|| {
            route_client_message(black_box(route), "chat", black_box(&blocking), no_upstream)
        });
    });
    group.bench_function("serverless_drop_non_blocking", |b| {
        let route = ClientRoute::Serverless;
        b.iter(|| {
            route_client_message(
                black_box(route),
                "chat",
                black_box(&fire_and_forget),
                no_upstream,
            )
        });
    });
    group.bench_function("ping", |b| {
        let route = ClientRoute::Serverless;
        b.iter(|| {
            route_client_message(
                black_box(route),
                "chat",
                black_box(&HubMessage::Ping),
                has_upstream,
            )
        });
    });
    group.finish();
}

/// `n` server connections with distinct server ids `server-{i}`, uneven client counts, and
/// every 7th connection not routable (shutting down or Weak).
fn candidates(ids: &[String]) -> Vec<Candidate<'_>> {
    ids.iter()
        .enumerate()
        .map(|(i, id)| Candidate {
            server_id: id,
            clients: (i * 37 + 11) % 101,
            routable: i % 7 != 3,
        })
        .collect()
}

fn sticky(c: &mut Criterion) {
    let mut group = c.benchmark_group("choose_server");
    group
        .measurement_time(Duration::from_secs(3))
        .sample_size(20);
    group.throughput(Throughput::Elements(1));
    for n in [5usize, 50] {
        let ids: Vec<String> = (0..n).map(|i| format!("server-{i}")).collect();
        let cands = candidates(&ids);
        let present = ids[n / 2].clone();
        let cases: [(&str, Option<&str>, StickyMode); 4] = [
            ("disabled", None, StickyMode::Disabled),
            ("preferred_present", Some(&present), StickyMode::Preferred),
            (
                "preferred_missing",
                Some("server-gone"),
                StickyMode::Preferred,
            ),
            ("required_present", Some(&present), StickyMode::Required),
        ];
        for (name, server, mode) in cases {
            assert!(choose_server(&cands, server, mode).is_ok(), "{name} {n}");
            group.bench_with_input(BenchmarkId::new(name, n), &cands, |b, cands| {
                b.iter(|| choose_server(black_box(cands), black_box(server), black_box(mode)));
            });
        }
    }
    group.finish();
}

criterion_group!(benches, admit, route_message, sticky);
criterion_main!(benches);
