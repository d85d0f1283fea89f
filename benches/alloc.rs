//! Allocations per delivered message, counted (not timed) with dhat's heap statistics.
//!
//! The same in-process set-up as `benches/fanout.rs` (a real hub actor, N registered ready
//! connections, half JSON and half MessagePack): each round sends one ~100 B invocation, waits
//! for the hub's barrier, and drains every outbox the way a connection actor does before its
//! socket write. Printed per shape: heap allocations per delivery and bytes allocated per
//! delivery, for the send (encode once per protocol + queue into every outbox) and for the drain
//! (what the write path allocates). Run with `cargo bench --bench alloc`.
//!
//! Numbers are counts, so they are the same on every machine and run.

#[path = "common/mod.rs"]
mod common;

use bytes::BytesMut;
use common::{arguments_100b, message, populate, registry};
use switchboard::hub::HubHandle;
use switchboard::id::{GroupName, UserId};
use switchboard::peer::ConnHandle;
use tokio::runtime::Runtime;

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

const ROUNDS: u64 = 50;

fn drain_all(conns: &[ConnHandle], buf: &mut BytesMut) -> usize {
    let mut frames = 0;
    for c in conns {
        let mut single = None;
        frames += c.outbox().drain_into(buf, &mut single).frames;
        // What the actor writes: the single frame as is, or the coalesced buffer.
        let written = single.unwrap_or_else(|| buf.split().freeze());
        std::hint::black_box(written);
    }
    frames
}

/// (blocks, bytes) allocated while `f` runs.
fn count<R>(f: impl FnOnce() -> R) -> (u64, u64, R) {
    let before = dhat::HeapStats::get();
    let r = f();
    let after = dhat::HeapStats::get();
    (
        after.total_blocks - before.total_blocks,
        after.total_bytes - before.total_bytes,
        r,
    )
}

/// Run `burst` × `send` ROUNDS times against `conns`, each round followed by a barrier and a
/// drain (with `burst > 1` every drain coalesces `burst` frames into one write); print the
/// per-delivery allocations of both halves.
fn measure<F, Fut>(
    rt: &Runtime,
    name: &str,
    hub: &HubHandle,
    conns: &[ConnHandle],
    per_send: usize,
    burst: usize,
    send: F,
) where
    F: Fn() -> Fut,
    Fut: Future<Output = ()>,
{
    let mut buf = BytesMut::with_capacity(4096);
    // One warm-up round: first-use allocations (hash map growth, buffers) are not per message.
    let per_round = per_send * burst;
    rt.block_on(async {
        send().await;
        hub.barrier().await.expect("hub alive");
    });
    drain_all(conns, &mut buf);
    let (mut send_blocks, mut send_bytes, mut drain_blocks, mut drain_bytes) = (0, 0, 0, 0);
    for _ in 0..ROUNDS {
        let (blocks, bytes, ()) = count(|| {
            rt.block_on(async {
                for _ in 0..burst {
                    send().await;
                }
                hub.barrier().await.expect("hub alive");
            })
        });
        send_blocks += blocks;
        send_bytes += bytes;
        let (blocks, bytes, frames) = count(|| drain_all(conns, &mut buf));
        assert_eq!(frames, per_round, "{name}: every recipient got the frame");
        drain_blocks += blocks;
        drain_bytes += bytes;
    }
    let deliveries = (ROUNDS * per_round as u64) as f64;
    println!(
        "{name:<40} {per_round:>6} | send: {:>6.3} allocs {:>7.1} B | drain+write: {:>6.3} allocs {:>7.1} B  (per delivery)",
        send_blocks as f64 / deliveries,
        send_bytes as f64 / deliveries,
        drain_blocks as f64 / deliveries,
        drain_bytes as f64 / deliveries,
    );
}

fn main() {
    let _profiler = dhat::Profiler::builder().testing().build();
    // A current-thread runtime: every allocation of the hub actor happens inside `count`.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let registry = registry();
    let args = arguments_100b();
    println!("allocations per delivered message (100 B invocation, half JSON / half MessagePack)");
    for n in [1_000usize, 10_000] {
        let hub = rt
            .block_on(async { registry.get_or_create(&format!("all{n}")) })
            .expect("within max_hubs");
        let conns = populate(&rt, &hub, n, 10);
        measure(
            &rt,
            &format!("send_all to {n}"),
            &hub,
            &conns,
            n,
            1,
            || async {
                hub.send_all(message(&args), Vec::new())
                    .await
                    .expect("hub alive");
            },
        );
        measure(
            &rt,
            &format!("send_all to {n}, 8 coalesced per write"),
            &hub,
            &conns,
            n,
            8,
            || async {
                hub.send_all(message(&args), Vec::new())
                    .await
                    .expect("hub alive");
            },
        );
        let group = GroupName::from("g3");
        let members: Vec<ConnHandle> = conns.iter().skip(3).step_by(10).cloned().collect();
        measure(
            &rt,
            &format!("send_group (1 of 10) of {n}"),
            &hub,
            &members,
            n / 10,
            1,
            || async {
                hub.send_group(group.clone(), message(&args), Vec::new(), Vec::new())
                    .await
                    .expect("hub alive");
            },
        );
        let user = UserId::from("u7");
        let one = vec![conns[7].clone()];
        measure(
            &rt,
            &format!("send_user among {n}"),
            &hub,
            &one,
            1,
            1,
            || async {
                hub.send_user(user.clone(), message(&args))
                    .await
                    .expect("hub alive");
            },
        );
        measure(
            &rt,
            &format!("send_connection among {n}"),
            &hub,
            &one,
            1,
            1,
            || async {
                hub.send_connection(conns[7].id().clone(), message(&args))
                    .await
                    .expect("hub alive");
            },
        );
    }
}
