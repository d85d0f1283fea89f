//! Hub actor tests: routing of sends to outboxes, groups, users, ttl rules, closes.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};

use crate::hub::{
    ExistsQuery, GroupName, HubHandle, HubRegistry, HubSettings, MembershipTtl, Scope,
    SerializedMessage, UserId,
};
use crate::id::ConnectionId;
use crate::peer::{ConnHandle, Outbox};
use crate::protocol::HubProtocol;
use crate::telemetry::{Metrics, names};

fn registry(max_unlimited: usize) -> (HubRegistry, Arc<Metrics>) {
    let metrics = Arc::new(Metrics::default());
    let settings = HubSettings {
        inbox_capacity: 64,
        max_user_groups_without_ttl: max_unlimited,
        idle_timeout: Duration::from_secs(60),
        max_hubs: 100,
        cluster: None,
    };
    (HubRegistry::new(settings, metrics.clone()), metrics)
}

fn conn(id: &str, user: Option<&str>, protocol: HubProtocol) -> ConnHandle {
    ConnHandle::new(
        ConnectionId::from(id),
        user.map(UserId::from),
        protocol,
        Outbox::new(100, 1 << 20),
    )
}

fn drain(c: &ConnHandle) -> Vec<u8> {
    let (mut buf, mut single) = (BytesMut::new(), None);
    c.outbox().drain_into(&mut buf, &mut single);
    match single {
        Some(b) => b.to_vec(),
        None => buf.to_vec(),
    }
}

fn msg(arg: &str) -> Arc<SerializedMessage> {
    Arc::new(SerializedMessage::invocation(
        "t",
        Bytes::from(format!("[\"{arg}\"]")),
    ))
}

/// A round trip through the hub, so every earlier command has been processed.
async fn sync(hub: &HubHandle) {
    hub.exists(ExistsQuery::Connection("sync".into()))
        .await
        .unwrap()
        .await
        .unwrap();
}

fn json_text(arg: &str) -> Vec<u8> {
    format!("{{\"type\":1,\"target\":\"t\",\"arguments\":[\"{arg}\"]}}\x1e").into_bytes()
}

#[tokio::test]
async fn broadcast_encodes_once_per_protocol_and_skips_excluded() {
    let (reg, metrics) = registry(100);
    let hub = reg.get_or_create("chat").unwrap();
    let a = conn("a", None, HubProtocol::Json);
    let b = conn("b", None, HubProtocol::MessagePack);
    let c = conn("c", None, HubProtocol::Json);
    for x in [&a, &b, &c] {
        hub.connect(x.clone()).await.unwrap();
    }
    let m = msg("hi");
    hub.send_all(m.clone(), vec![ConnectionId::from("c")])
        .await
        .unwrap();
    sync(&hub).await;
    assert_eq!(drain(&a), json_text("hi"));
    assert!(!drain(&b).is_empty());
    assert!(
        drain(&c).is_empty(),
        "excluded connection got the broadcast"
    );
    // Both recipients of a protocol share one allocation.
    let j1 = m.bytes_for(HubProtocol::Json).unwrap().as_ptr();
    let j2 = m.bytes_for(HubProtocol::Json).unwrap().as_ptr();
    assert_eq!(j1, j2);
    assert_eq!(metrics.get(names::messages_delivered), Some(2));
}

#[tokio::test]
async fn users_groups_and_disconnect() {
    let (reg, _) = registry(100);
    let hub = reg.get_or_create("chat").unwrap();
    let a1 = conn("a1", Some("alice"), HubProtocol::Json);
    let a2 = conn("a2", Some("alice"), HubProtocol::Json);
    let b = conn("b", Some("bob"), HubProtocol::Json);
    for x in [&a1, &a2, &b] {
        hub.connect(x.clone()).await.unwrap();
    }
    hub.send_user(UserId::from("alice"), msg("u"))
        .await
        .unwrap();
    sync(&hub).await;
    assert_eq!(drain(&a1), json_text("u"));
    assert_eq!(drain(&a2), json_text("u"));
    assert!(drain(&b).is_empty());

    assert!(
        hub.add_to_group("b".into(), GroupName::from("g"))
            .await
            .unwrap()
            .await
            .unwrap()
    );
    assert!(
        !hub.add_to_group("nope".into(), GroupName::from("g"))
            .await
            .unwrap()
            .await
            .unwrap()
    );
    hub.send_group(GroupName::from("g"), msg("g"), vec![], vec![])
        .await
        .unwrap();
    sync(&hub).await;
    assert_eq!(drain(&b), json_text("g"));
    assert!(drain(&a1).is_empty());
    assert!(
        hub.exists(ExistsQuery::Group("g".into()))
            .await
            .unwrap()
            .await
            .unwrap()
    );

    hub.disconnect("b".into()).await;
    assert!(
        !hub.exists(ExistsQuery::Group("g".into()))
            .await
            .unwrap()
            .await
            .unwrap(),
        "empty groups disappear"
    );
    assert!(
        !hub.exists(ExistsQuery::User("bob".into()))
            .await
            .unwrap()
            .await
            .unwrap()
    );
    assert!(
        hub.exists(ExistsQuery::User("alice".into()))
            .await
            .unwrap()
            .await
            .unwrap()
    );
    hub.disconnect("a1".into()).await;
    assert!(
        hub.exists(ExistsQuery::User("alice".into()))
            .await
            .unwrap()
            .await
            .unwrap()
    );
    assert!(
        !hub.exists(ExistsQuery::Connection("a1".into()))
            .await
            .unwrap()
            .await
            .unwrap()
    );
}

#[tokio::test]
async fn user_group_membership_applies_to_later_connections() {
    let (reg, _) = registry(100);
    let hub = reg.get_or_create("chat").unwrap();
    hub.add_user_to_group("carol".into(), "g".into(), MembershipTtl::Unlimited)
        .await
        .unwrap()
        .await
        .unwrap();
    hub.add_user_to_group(
        "dave".into(),
        "g".into(),
        MembershipTtl::CurrentConnectionsOnly,
    )
    .await
    .unwrap()
    .await
    .unwrap();
    assert!(
        hub.exists(ExistsQuery::UserInGroup("carol".into(), "g".into()))
            .await
            .unwrap()
            .await
            .unwrap()
    );
    assert!(
        !hub.exists(ExistsQuery::UserInGroup("dave".into(), "g".into()))
            .await
            .unwrap()
            .await
            .unwrap()
    );
    let c = conn("c", Some("carol"), HubProtocol::Json);
    let d = conn("d", Some("dave"), HubProtocol::Json);
    hub.connect(c.clone()).await.unwrap();
    hub.connect(d.clone()).await.unwrap();
    hub.send_group("g".into(), msg("x"), vec![], vec![])
        .await
        .unwrap();
    sync(&hub).await;
    assert_eq!(drain(&c), json_text("x"));
    assert!(
        drain(&d).is_empty(),
        "ttl=0 remembers nothing for later connections"
    );

    hub.remove_user_from_group("carol".into(), "g".into())
        .await
        .unwrap()
        .await
        .unwrap();
    hub.send_group("g".into(), msg("y"), vec![], vec![])
        .await
        .unwrap();
    sync(&hub).await;
    assert!(drain(&c).is_empty());
    assert!(
        !hub.exists(ExistsQuery::UserInGroup("carol".into(), "g".into()))
            .await
            .unwrap()
            .await
            .unwrap()
    );
}

#[tokio::test(start_paused = true)]
async fn ttl_membership_expires() {
    let (reg, _) = registry(100);
    let hub = reg.get_or_create("chat").unwrap();
    let e = conn("e", Some("erin"), HubProtocol::Json);
    hub.connect(e.clone()).await.unwrap();
    hub.add_user_to_group(
        "erin".into(),
        "g".into(),
        MembershipTtl::For(Duration::from_secs(5)),
    )
    .await
    .unwrap()
    .await
    .unwrap();
    assert!(
        hub.exists(ExistsQuery::UserInGroup("erin".into(), "g".into()))
            .await
            .unwrap()
            .await
            .unwrap()
    );
    tokio::time::sleep(Duration::from_secs(7)).await;
    sync(&hub).await;
    assert!(
        !hub.exists(ExistsQuery::UserInGroup("erin".into(), "g".into()))
            .await
            .unwrap()
            .await
            .unwrap()
    );
    assert!(
        !hub.exists(ExistsQuery::Group("g".into()))
            .await
            .unwrap()
            .await
            .unwrap(),
        "the user's connection left with the membership"
    );
}

#[tokio::test]
async fn a_ttl_beyond_the_clock_is_the_longest_ttl_and_the_hub_keeps_working() {
    let (reg, _) = registry(100);
    let hub = reg.get_or_create("chat").unwrap();
    for (user, ttl) in [
        ("u1", Duration::MAX),
        ("u2", Duration::from_secs(u64::MAX)),
        ("u3", MembershipTtl::MAX),
    ] {
        hub.add_user_to_group(user.into(), "g".into(), MembershipTtl::For(ttl))
            .await
            .expect("the hub is alive")
            .await
            .expect("the hub answered");
        assert!(
            hub.exists(ExistsQuery::UserInGroup(user.into(), "g".into()))
                .await
                .unwrap()
                .await
                .unwrap()
        );
    }
    let c = conn("c", Some("u1"), HubProtocol::Json);
    hub.connect(c.clone()).await.unwrap();
    hub.send_group("g".into(), msg("still here"), vec![], vec![])
        .await
        .unwrap();
    sync(&hub).await;
    assert_eq!(drain(&c), json_text("still here"));
}

#[tokio::test]
async fn only_the_most_recent_unlimited_memberships_are_kept() {
    let (reg, _) = registry(2);
    let hub = reg.get_or_create("chat").unwrap();
    for g in ["g1", "g2", "g3"] {
        hub.add_user_to_group("fay".into(), g.into(), MembershipTtl::Unlimited)
            .await
            .unwrap()
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert!(
        !hub.exists(ExistsQuery::UserInGroup("fay".into(), "g1".into()))
            .await
            .unwrap()
            .await
            .unwrap()
    );
    assert!(
        hub.exists(ExistsQuery::UserInGroup("fay".into(), "g3".into()))
            .await
            .unwrap()
            .await
            .unwrap()
    );
}

#[tokio::test]
async fn close_connections_by_scope() {
    let (reg, _) = registry(100);
    let hub = reg.get_or_create("chat").unwrap();
    let a = conn("a", Some("u"), HubProtocol::Json);
    let b = conn("b", Some("u"), HubProtocol::Json);
    let c = conn("c", None, HubProtocol::Json);
    for x in [&a, &b, &c] {
        hub.connect(x.clone()).await.unwrap();
    }
    hub.close_connections(
        Scope::User("u".into()),
        vec!["b".into()],
        crate::close::CloseReason::ByApplication(Some("bye".into())),
    )
    .await
    .unwrap()
    .await
    .unwrap();
    assert!(a.outbox().is_closing());
    assert!(!b.outbox().is_closing());
    assert!(!c.outbox().is_closing());
    assert!(
        hub.close_connection("c".into(), None)
            .await
            .unwrap()
            .await
            .unwrap()
    );
    assert!(
        !hub.close_connection("zzz".into(), None)
            .await
            .unwrap()
            .await
            .unwrap()
    );
    assert!(c.outbox().is_closing());
}

#[tokio::test]
async fn slow_consumer_overflow_is_counted_and_isolated() {
    let (reg, metrics) = registry(100);
    let hub = reg.get_or_create("chat").unwrap();
    let slow = ConnHandle::new(
        "slow".into(),
        None,
        HubProtocol::Json,
        Outbox::new(3, 1 << 20),
    );
    let fast = conn("fast", None, HubProtocol::Json);
    hub.connect(slow.clone()).await.unwrap();
    hub.connect(fast.clone()).await.unwrap();
    for i in 0..5 {
        hub.send_all(msg(&i.to_string()), vec![]).await.unwrap();
        if i < 4 {
            // The fast one keeps up.
            sync(&hub).await;
            assert_eq!(drain(&fast), json_text(&i.to_string()));
        }
    }
    sync(&hub).await;
    assert!(slow.outbox().is_closing());
    assert_eq!(metrics.get(names::outbox_overflow), Some(1));
    assert_eq!(drain(&fast), json_text("4"));
}

#[tokio::test]
async fn group_listing_is_sorted() {
    let (reg, _) = registry(100);
    let hub = reg.get_or_create("chat").unwrap();
    for id in ["z", "m", "a"] {
        hub.connect(conn(id, Some("u"), HubProtocol::Json))
            .await
            .unwrap();
        hub.add_to_group(id.into(), "g".into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    let ids: Vec<String> = hub
        .group_connections("g".into())
        .await
        .unwrap()
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.connection_id.to_string())
        .collect();
    assert_eq!(ids, ["a", "m", "z"]);
}
