//! What the hub benchmarks share (`#[path = "common/mod.rs"] mod common;`): a hub registry,
//! connections registered straight into a hub (no sockets), and the 100-byte message they send.
#![allow(dead_code, unreachable_pub)]

use std::sync::Arc;

use bytes::Bytes;
use switchboard::hub::{HubHandle, HubRegistry, HubSettings, SerializedMessage};
use switchboard::id::{ConnectionId, GroupName, UserId};
use switchboard::peer::{ConnHandle, Outbox};
use switchboard::protocol::HubProtocol;
use switchboard::telemetry::Metrics;
use tokio::runtime::Runtime;

/// Outbox bounds that never overflow within a benchmark (outboxes are drained every iteration).
pub const BIG: usize = 1 << 30;

/// A JSON argument array of about 100 bytes.
pub fn arguments_100b() -> Bytes {
    Bytes::from(format!("[42,\"hello\",\"{}\"]", "x".repeat(80)))
}

/// A non-blocking `newMessage` invocation with `args`, encoded lazily once per protocol.
pub fn message(args: &Bytes) -> Arc<SerializedMessage> {
    Arc::new(SerializedMessage::invocation("newMessage", args.clone()))
}

/// A hub registry with the broker's default inbox.
pub fn registry() -> HubRegistry {
    HubRegistry::new(
        HubSettings {
            inbox_capacity: 1024,
            max_user_groups_without_ttl: 1000,
            idle_timeout: std::time::Duration::from_secs(60),
            max_hubs: 10_000,
            cluster: None,
        },
        Arc::new(Metrics::default()),
    )
}

/// Register `n` ready connections, alternating JSON and MessagePack; connection `i` has user
/// `u{i}` and, with `groups > 0`, joins group `g{i % groups}`.
pub fn populate(rt: &Runtime, hub: &HubHandle, n: usize, groups: usize) -> Vec<ConnHandle> {
    rt.block_on(async {
        let mut conns = Vec::with_capacity(n);
        for i in 0..n {
            let protocol = if i % 2 == 0 {
                HubProtocol::Json
            } else {
                HubProtocol::MessagePack
            };
            let conn = ConnHandle::new(
                ConnectionId::random(),
                Some(UserId::from(format!("u{i}"))),
                protocol,
                Outbox::new(BIG, BIG),
            );
            hub.connect(conn.clone()).await.expect("hub alive");
            if groups > 0 {
                let group = GroupName::from(format!("g{}", i % groups));
                let joined = hub
                    .add_to_group(conn.id().clone(), group)
                    .await
                    .expect("hub alive")
                    .await
                    .expect("hub alive");
                assert!(joined, "the connection was just registered");
            }
            conns.push(conn);
        }
        conns
    })
}
