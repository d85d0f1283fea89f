//! Sends and groups against the fake service: each proxy maps to its service message
//! (`docs/protocol.md#what-the-sdk-sends`) with a payload map holding the framed invocation once
//! per protocol; group operations and existence checks wait for the service's Ack.

use std::time::Duration;

use serde_json::json;

use super::fake::FakeConn;
use super::{Harness, completion, invocation, test_options};
use crate::protocol::service::{Payloads, ServiceMessage, ack_status};
use crate::protocol::{HubMessage, HubProtocol};
use crate::{Context, Hub, HubError, HubServerOptions, SdkError};

/// Checks a payload map: `json` and `messagepack` frames of `target(args)`.
fn assert_payloads(payloads: &Payloads, target: &str, args: serde_json::Value) {
    let keys: Vec<&str> = payloads.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, ["json", "messagepack"]);
    for (name, frame) in payloads {
        let p = HubProtocol::from_name(name).unwrap();
        let decoded = p.decode(frame, 1 << 20).unwrap().unwrap();
        assert_eq!(decoded.consumed, frame.len(), "exactly one framed message");
        let Some(HubMessage::Invocation(inv)) = decoded.message else {
            panic!("not an invocation")
        };
        assert_eq!(inv.target, target);
        assert_eq!(inv.invocation_id, None);
        assert_eq!(super::json(&inv.arguments), args, "{name}");
    }
}

async fn next(
    conn: &mut FakeConn,
    what: &str,
    pred: fn(&ServiceMessage) -> bool,
) -> ServiceMessage {
    conn.expect(what, pred).await
}

#[tokio::test]
async fn every_proxy_maps_to_its_service_message() {
    let mut h = Harness::start(test_options()).await;
    let clients = h.server.clients();
    clients.all().send("all", ("a", 1)).await.unwrap();
    clients
        .all_except(["x", "y"])
        .send("allExcept", ())
        .await
        .unwrap();
    clients
        .clients(["c1", "c2"])
        .send("some", "solo")
        .await
        .unwrap();
    clients
        .client("c9")
        .send("one", (vec![1, 2],))
        .await
        .unwrap();
    clients.user("u1").send("user", (1.5,)).await.unwrap();
    clients.users(["u1", "u2"]).send("users", ()).await.unwrap();
    clients.group("g").send("group", ()).await.unwrap();
    clients
        .group_except("g", ["x"])
        .send("groupExcept", ())
        .await
        .unwrap();
    clients
        .groups(["g1", "g2"])
        .send("groups", ())
        .await
        .unwrap();

    let ServiceMessage::BroadcastData { excluded_list, payloads, .. } =
        next(&mut h.conn, "broadcast", |m| matches!(m, ServiceMessage::BroadcastData { excluded_list, .. } if excluded_list.is_empty())).await
    else { unreachable!() };
    assert!(excluded_list.is_empty());
    assert_payloads(&payloads, "all", json!(["a", 1]));
    let ServiceMessage::BroadcastData { excluded_list, payloads, .. } =
        next(&mut h.conn, "broadcast except", |m| matches!(m, ServiceMessage::BroadcastData { excluded_list, .. } if !excluded_list.is_empty())).await
    else { unreachable!() };
    assert_eq!(excluded_list, ["x", "y"]);
    assert_payloads(&payloads, "allExcept", json!([]));
    let ServiceMessage::MultiConnectionData { connection_list, payloads, .. } =
        next(&mut h.conn, "multi connection", |m| matches!(m, ServiceMessage::MultiConnectionData { connection_list, .. } if connection_list.len() == 2)).await
    else { unreachable!() };
    assert_eq!(connection_list, ["c1", "c2"]);
    assert_payloads(&payloads, "some", json!(["solo"]));
    let ServiceMessage::MultiConnectionData { connection_list, payloads, .. } =
        next(&mut h.conn, "one connection", |m| matches!(m, ServiceMessage::MultiConnectionData { connection_list, .. } if connection_list.len() == 1)).await
    else { unreachable!() };
    assert_eq!(connection_list, ["c9"]);
    assert_payloads(&payloads, "one", json!([[1, 2]]));
    let ServiceMessage::UserData {
        user_id, payloads, ..
    } = next(&mut h.conn, "user", |m| {
        matches!(m, ServiceMessage::UserData { .. })
    })
    .await
    else {
        unreachable!()
    };
    assert_eq!(user_id, "u1");
    assert_payloads(&payloads, "user", json!([1.5]));
    let ServiceMessage::MultiUserData {
        user_list,
        payloads,
        ..
    } = next(&mut h.conn, "users", |m| {
        matches!(m, ServiceMessage::MultiUserData { .. })
    })
    .await
    else {
        unreachable!()
    };
    assert_eq!(user_list, ["u1", "u2"]);
    assert_payloads(&payloads, "users", json!([]));
    let ServiceMessage::GroupBroadcastData { group_name, excluded_list, payloads, excluded_user_list, caller_user_id, .. } =
        next(&mut h.conn, "group", |m| matches!(m, ServiceMessage::GroupBroadcastData { excluded_list, .. } if excluded_list.is_empty())).await
    else { unreachable!() };
    assert_eq!((group_name.as_str(), excluded_list.len()), ("g", 0));
    assert!(excluded_user_list.is_empty() && caller_user_id.is_none());
    assert_payloads(&payloads, "group", json!([]));
    let ServiceMessage::GroupBroadcastData { excluded_list, payloads, .. } =
        next(&mut h.conn, "group except", |m| matches!(m, ServiceMessage::GroupBroadcastData { excluded_list, .. } if !excluded_list.is_empty())).await
    else { unreachable!() };
    assert_eq!(excluded_list, ["x"]);
    assert_payloads(&payloads, "groupExcept", json!([]));
    let ServiceMessage::MultiGroupBroadcastData {
        group_list,
        payloads,
        ..
    } = next(&mut h.conn, "groups", |m| {
        matches!(m, ServiceMessage::MultiGroupBroadcastData { .. })
    })
    .await
    else {
        unreachable!()
    };
    assert_eq!(group_list, ["g1", "g2"]);
    assert_payloads(&payloads, "groups", json!([]));
}

#[tokio::test]
async fn sends_from_a_hub_method_use_the_callers_scope() {
    let hub = Hub::builder()
        .method("Shout", |ctx: Context, (text,): (String,)| async move {
            ctx.clients()
                .others()
                .send("shout", (ctx.connection_id(), &text))
                .await?;
            ctx.clients().caller().send("echo", (&text,)).await?;
            ctx.clients()
                .others_in_group("room")
                .send("inRoom", ())
                .await?;
            Ok::<_, HubError>(())
        })
        .build();
    let (_tx, events) = tokio::sync::mpsc::channel(1);
    let mut h = Harness::start_with(test_options(), hub, events).await;
    h.conn
        .open_client("me", HubProtocol::MessagePack, &[], "")
        .await;
    h.conn
        .client_send(
            "me",
            HubProtocol::MessagePack,
            &invocation(Some("1"), "Shout", "[\"hey\"]"),
        )
        .await;
    let ServiceMessage::BroadcastData {
        excluded_list,
        payloads,
        ..
    } = next(&mut h.conn, "others", |m| {
        matches!(m, ServiceMessage::BroadcastData { .. })
    })
    .await
    else {
        unreachable!()
    };
    assert_eq!(excluded_list, ["me"]);
    assert_payloads(&payloads, "shout", json!(["me", "hey"]));
    // The caller is local: only its protocol, on its connection, before its Completion.
    let ServiceMessage::MultiConnectionData {
        connection_list,
        payloads,
        ..
    } = next(&mut h.conn, "caller", |m| {
        matches!(m, ServiceMessage::MultiConnectionData { .. })
    })
    .await
    else {
        unreachable!()
    };
    assert_eq!(connection_list, ["me"]);
    assert_eq!(payloads.len(), 1);
    assert_eq!(payloads[0].0, "messagepack");
    let ServiceMessage::GroupBroadcastData {
        group_name,
        excluded_list,
        ..
    } = next(&mut h.conn, "others in group", |m| {
        matches!(m, ServiceMessage::GroupBroadcastData { .. })
    })
    .await
    else {
        unreachable!()
    };
    assert_eq!(
        (group_name.as_str(), excluded_list),
        ("room", vec!["me".to_owned()])
    );
    assert_eq!(
        completion(&h.conn.client_recv("me", HubProtocol::MessagePack).await),
        ("1".into(), json!({}))
    );
}

#[tokio::test]
async fn groups_wait_for_the_ack() {
    let hub = Hub::builder()
        .method("Join", |ctx: Context, (group,): (String,)| async move {
            Ok::<_, HubError>(ctx.groups().add(ctx.connection_id(), &group).await?)
        })
        .build();
    let (_tx, events) = tokio::sync::mpsc::channel(1);
    let mut h = Harness::start_with(
        HubServerOptions {
            ack_timeout: Duration::from_millis(200),
            ..test_options()
        },
        hub,
        events,
    )
    .await;
    h.conn.open_client("c1", HubProtocol::Json, &[], "").await;
    h.conn
        .client_send(
            "c1",
            HubProtocol::Json,
            &invocation(Some("1"), "Join", "[\"room\"]"),
        )
        .await;
    let join = h
        .conn
        .ack_next("join", ack_status::OK, |m| {
            matches!(m, ServiceMessage::JoinGroupWithAck { .. })
        })
        .await;
    assert!(
        matches!(join, ServiceMessage::JoinGroupWithAck { ref connection_id, ref group_name, .. }
        if connection_id == "c1" && group_name == "room")
    );
    assert_eq!(
        completion(&h.conn.client_recv("c1", HubProtocol::Json).await),
        ("1".into(), json!({"result": true}))
    );

    let groups = h.server.groups();
    let call = tokio::spawn(async move { groups.remove("c1", "room").await });
    h.conn
        .ack_next("leave", ack_status::NOT_FOUND, |m| {
            matches!(
                m,
                ServiceMessage::LeaveGroupWithAck {
                    group_name: Some(_),
                    ..
                }
            )
        })
        .await;
    assert_eq!(call.await.unwrap(), Ok(false));

    let groups = h.server.groups();
    let call = tokio::spawn(async move { groups.remove_from_all("c1").await });
    h.conn
        .ack_next("leave all", 4, |m| {
            matches!(
                m,
                ServiceMessage::LeaveGroupWithAck {
                    group_name: None,
                    ..
                }
            )
        })
        .await;
    assert_eq!(
        call.await.unwrap(),
        Err(SdkError::AckFailed {
            status: 4,
            message: String::new()
        })
    );

    // No answer: the 200 ms ack timeout.
    assert_eq!(
        h.server.groups().add("c1", "late").await,
        Err(SdkError::AckTimeout(Duration::from_millis(200)))
    );

    let groups = h.server.groups();
    let call = tokio::spawn(async move {
        (
            groups
                .add_user("u1", "g", Some(Duration::from_secs(60)))
                .await,
            groups.remove_user("u1", "g").await,
            groups.remove_user_from_all("u1").await,
            groups.is_user_in_group("u1", "g").await,
            groups.exists("g").await,
        )
    });
    let add = h
        .conn
        .ack_next("user join", ack_status::OK, |m| {
            matches!(m, ServiceMessage::UserJoinGroupWithAck { .. })
        })
        .await;
    assert!(
        matches!(add, ServiceMessage::UserJoinGroupWithAck { ref extensions, .. } if extensions.ttl == Some(60))
    );
    h.conn
        .ack_next("user leave", ack_status::OK, |m| {
            matches!(
                m,
                ServiceMessage::UserLeaveGroupWithAck {
                    group_name: Some(_),
                    ..
                }
            )
        })
        .await;
    h.conn
        .ack_next("user leave all", ack_status::OK, |m| {
            matches!(
                m,
                ServiceMessage::UserLeaveGroupWithAck {
                    group_name: None,
                    ..
                }
            )
        })
        .await;
    h.conn
        .ack_next("user in group", ack_status::NOT_FOUND, |m| {
            matches!(m, ServiceMessage::CheckUserInGroupWithAck { .. })
        })
        .await;
    h.conn
        .ack_next("group exists", ack_status::OK, |m| {
            matches!(m, ServiceMessage::CheckGroupExistenceWithAck { .. })
        })
        .await;
    assert_eq!(
        call.await.unwrap(),
        (Ok(true), Ok(true), Ok(true), Ok(false), Ok(true))
    );
}

#[tokio::test]
async fn existence_checks_and_bulk_closes() {
    let mut h = Harness::start(test_options()).await;
    let server = h.server.clone();
    let call = tokio::spawn(async move {
        (
            server.connection_exists("c1").await,
            server.user_exists("u1").await,
            server.group_exists("g1").await,
            server.close_user_connections("u1", Some("why")).await,
            server.close_group_connections("g1", None).await,
        )
    });
    let check = h
        .conn
        .ack_next("connection", ack_status::OK, |m| {
            matches!(m, ServiceMessage::CheckConnectionExistenceWithAck { .. })
        })
        .await;
    assert!(
        matches!(check, ServiceMessage::CheckConnectionExistenceWithAck { ref connection_id, .. } if connection_id == "c1")
    );
    h.conn
        .ack_next("user", ack_status::NOT_FOUND, |m| {
            matches!(m, ServiceMessage::CheckUserExistenceWithAck { .. })
        })
        .await;
    h.conn
        .ack_next("group", ack_status::NOT_FOUND, |m| {
            matches!(m, ServiceMessage::CheckGroupExistenceWithAck { .. })
        })
        .await;
    let close = h
        .conn
        .ack_next("close user", ack_status::OK, |m| {
            matches!(m, ServiceMessage::CloseUserConnectionsWithAck { .. })
        })
        .await;
    assert!(
        matches!(close, ServiceMessage::CloseUserConnectionsWithAck { ref reason, .. } if reason.as_deref() == Some("why"))
    );
    h.conn
        .ack_next("close group", ack_status::OK, |m| {
            matches!(m, ServiceMessage::CloseGroupConnectionsWithAck { .. })
        })
        .await;
    assert_eq!(
        call.await.unwrap(),
        (Ok(true), Ok(false), Ok(false), Ok(true), Ok(true))
    );
}

#[tokio::test]
async fn acks_fail_when_their_connection_drops() {
    let mut h = Harness::start(test_options()).await;
    let server = h.server.clone();
    let call = tokio::spawn(async move { server.connection_exists("c1").await });
    h.conn
        .expect("check", |m| {
            matches!(m, ServiceMessage::CheckConnectionExistenceWithAck { .. })
        })
        .await;
    drop(h.conn);
    assert_eq!(
        tokio::time::timeout(Duration::from_secs(2), call)
            .await
            .unwrap()
            .unwrap(),
        Err(SdkError::ConnectionClosed)
    );
}

#[tokio::test]
async fn sends_spread_over_connections() {
    let (hub, _events) = super::test_hub();
    let mut service = super::fake::FakeService::start(0).await;
    let server = crate::HubServer::builder(service.connection_string(), "chat", hub)
        .options(HubServerOptions {
            connection_count: 2,
            ..test_options()
        })
        .start()
        .unwrap();
    let mut a = service.next_conn().await;
    let mut b = service.next_conn().await;
    server.wait_connected(2, super::fake::WAIT).await.unwrap();
    for _ in 0..4 {
        server.clients().all().send("x", ()).await.unwrap();
    }
    for conn in [&mut a, &mut b] {
        for _ in 0..2 {
            conn.expect("broadcast", |m| {
                matches!(m, ServiceMessage::BroadcastData { .. })
            })
            .await;
        }
    }
}
