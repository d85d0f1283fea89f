//! Registry tests: one hub per name in any case, the bound on the number of hubs, idle hubs
//! retiring (on tokio's paused clock, and under concurrent use on a real one), and a hub that
//! panics being counted, closing its connections and starting afresh on its next use.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};

use super::{ExistsQuery, HubGone, HubRegistry, HubSettings, MembershipTtl, TooManyHubs};
use crate::close::CloseReason;
use crate::hub::SerializedMessage;
use crate::id::ConnectionId;
use crate::peer::{ConnHandle, Outbox};
use crate::protocol::HubProtocol;
use crate::telemetry::{Metrics, names};

fn registry(idle_timeout: Duration, max_hubs: usize) -> (HubRegistry, Arc<Metrics>) {
    let metrics = Arc::new(Metrics::default());
    let settings = HubSettings {
        inbox_capacity: 64,
        max_user_groups_without_ttl: 100,
        idle_timeout,
        max_hubs,
        cluster: None,
    };
    (HubRegistry::new(settings, metrics.clone()), metrics)
}

fn conn(id: &str) -> ConnHandle {
    ConnHandle::new(
        ConnectionId::from(id),
        None,
        HubProtocol::Json,
        Outbox::new(100, 1 << 20),
    )
}

fn msg(arg: &str) -> Arc<SerializedMessage> {
    Arc::new(SerializedMessage::invocation(
        "t",
        Bytes::from(format!("[\"{arg}\"]")),
    ))
}

fn drain(c: &ConnHandle) -> (Vec<u8>, Option<CloseReason>) {
    let (mut buf, mut single) = (BytesMut::new(), None);
    let drained = c.outbox().drain_into(&mut buf, &mut single);
    let bytes = match single {
        Some(b) => b.to_vec(),
        None => buf.to_vec(),
    };
    (bytes, drained.close.map(|c| c.reason))
}

fn json_text(arg: &str) -> Vec<u8> {
    format!("{{\"type\":1,\"target\":\"t\",\"arguments\":[\"{arg}\"]}}\x1e").into_bytes()
}

/// Wait (in 100 ms steps, at most 1000 s of the test's clock) until `cond` holds.
async fn eventually(what: &str, cond: impl Fn() -> bool) {
    for _ in 0..10_000 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("never happened: {what}");
}

#[tokio::test]
async fn case_variants_are_one_hub() {
    let (reg, metrics) = registry(Duration::from_secs(60), 10);
    let upper = reg.get_or_create("Chat").unwrap();
    let lower = reg.get_or_create("chat").unwrap();
    assert_eq!(upper.name().as_str(), "chat");
    let c = conn("c");
    upper.connect(c.clone()).await.unwrap();
    lower.send_all(msg("hi"), vec![]).await.unwrap();
    reg.get("CHAT").unwrap().barrier().await.unwrap();
    assert_eq!(drain(&c).0, json_text("hi"));
    assert_eq!(
        reg.names()
            .iter()
            .map(|n| n.as_str().to_owned())
            .collect::<Vec<_>>(),
        ["chat"]
    );
    assert_eq!(metrics.get(names::hubs_current), Some(1));
}

#[tokio::test]
async fn the_number_of_hubs_is_bounded() {
    let (reg, metrics) = registry(Duration::from_secs(60), 2);
    let _a = reg.get_or_create("a").unwrap();
    let _b = reg.get_or_create("b").unwrap();
    assert_eq!(reg.get_or_create("c").unwrap_err(), TooManyHubs { max: 2 });
    assert_eq!(metrics.get(names::hubs_rejected), Some(1));
    assert!(!reg.has_room_for("c"));
    // A running hub is reached whatever the bound, in any case.
    assert!(reg.has_room_for("A"));
    reg.get_or_create("A").unwrap().barrier().await.unwrap();
    assert!(reg.get("c").is_none());
    assert_eq!(metrics.get(names::hubs_current), Some(2));
}

#[tokio::test(start_paused = true)]
async fn an_idle_hub_retires_and_makes_room() {
    let (reg, metrics) = registry(Duration::from_secs(10), 1);
    let hub = reg.get_or_create("chat").unwrap();
    hub.barrier().await.unwrap();
    assert!(reg.get_or_create("news").is_err(), "one hub at most");
    drop(hub);
    eventually("the idle hub leaves the registry", || {
        reg.names().is_empty()
    })
    .await;
    eventually("its actor stops", || {
        metrics.get(names::hubs_current) == Some(0)
    })
    .await;
    assert_eq!(metrics.get(names::hubs_dropped_idle), Some(1));
    // Its place is free.
    reg.get_or_create("news").unwrap().barrier().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn handles_connections_servers_and_memberships_keep_a_hub() {
    let (reg, metrics) = registry(Duration::from_secs(10), 10);

    // A held handle: the holder may still send, so the hub stays.
    let hub = reg.get_or_create("chat").unwrap();
    tokio::time::sleep(Duration::from_secs(35)).await;
    hub.barrier().await.expect("a held hub never goes away");
    assert!(reg.get("chat").is_some());

    // A connection.
    let c = conn("c");
    hub.connect(c.clone()).await.unwrap();
    drop(hub);
    tokio::time::sleep(Duration::from_secs(35)).await;
    let hub = reg.get("chat").expect("a hub with a connection stays");
    hub.disconnect("c".into()).await;

    // A remembered membership, until it expires.
    hub.add_user_to_group(
        "u".into(),
        "g".into(),
        MembershipTtl::For(Duration::from_secs(100)),
    )
    .await
    .unwrap()
    .await
    .unwrap();
    drop(hub);
    tokio::time::sleep(Duration::from_secs(50)).await;
    let hub = reg.get("chat").expect("a hub with a membership stays");
    assert!(
        hub.exists(ExistsQuery::UserInGroup("u".into(), "g".into()))
            .await
            .unwrap()
            .await
            .unwrap()
    );
    drop(hub);
    assert_eq!(metrics.get(names::hubs_dropped_idle), Some(0));
    eventually("the hub retires once the membership expired", || {
        reg.get("chat").is_none()
    })
    .await;
    assert_eq!(metrics.get(names::hubs_dropped_idle), Some(1));
}

/// Tasks on two threads take the hub from the registry and use it — some only after holding
/// it unused for longer than the idle time, some to register a connection and find it again
/// through the next handle — while the hub retires whenever nobody holds it (idle time 1 ms).
/// No operation ever finds the hub gone, and no connection is lost with a retiring hub.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hub_never_retires_under_a_caller() {
    let (reg, metrics) = registry(Duration::from_millis(1), 10);
    let reg = Arc::new(reg);
    let mut tasks = Vec::new();
    for t in 0..4 {
        let reg = reg.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..150 {
                if t % 2 == 0 {
                    // Got the handle, then busy elsewhere while the hub is idle.
                    let hub = reg.get_or_create("chat").unwrap();
                    tokio::time::sleep(Duration::from_millis(3)).await;
                    hub.barrier().await.expect("never gone");
                    drop(hub);
                    tokio::time::sleep(Duration::from_millis(2)).await;
                    continue;
                }
                let id = format!("c{t}-{i}");
                let hub = reg.get_or_create("chat").unwrap();
                hub.connect(conn(&id)).await.expect("never gone");
                drop(hub);
                tokio::task::yield_now().await;
                let hub = reg.get_or_create("chat").unwrap();
                let found = hub
                    .exists(ExistsQuery::Connection(id.as_str().into()))
                    .await
                    .expect("never gone")
                    .await
                    .expect("never gone");
                assert!(found, "{id} registered in a hub that retired under it");
                hub.disconnect(id.as_str().into()).await;
                hub.barrier().await.expect("never gone");
                drop(hub);
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }));
    }
    for t in tasks {
        t.await.expect("no task failed");
    }
    eventually("the last hub retires", || reg.names().is_empty()).await;
    assert!(
        metrics.get(names::hubs_dropped_idle).unwrap() > 1,
        "the hub retired between uses"
    );
    assert_eq!(metrics.get(names::hub_unavailable), Some(0));
}

#[tokio::test]
async fn a_hub_that_panics_is_counted_closes_its_clients_and_starts_afresh() {
    let (reg, metrics) = registry(Duration::from_secs(60), 10);
    let hub = reg.get_or_create("chat").unwrap();
    let c = conn("c");
    hub.connect(c.clone()).await.unwrap();

    hub.panic_for_test().await.unwrap();
    hub.stopped().await;
    assert_eq!(metrics.get(names::actor_panics_hub), Some(1));
    assert_eq!(
        drain(&c).1,
        Some(CloseReason::HubFailed),
        "its client is told to reconnect"
    );
    assert_eq!(hub.barrier().await, Err(HubGone));
    assert!(
        reg.get("chat").is_none(),
        "a failed hub is never handed out"
    );

    // The next use starts a fresh hub that works.
    let fresh = reg.get_or_create("chat").unwrap();
    let d = conn("d");
    fresh.connect(d.clone()).await.unwrap();
    fresh.send_all(msg("again"), vec![]).await.unwrap();
    fresh.barrier().await.unwrap();
    assert_eq!(drain(&d).0, json_text("again"));
    assert_eq!(metrics.get(names::actor_panics_hub), Some(1));
}
