//! The embedding API's hub client (`SwitchboardHandle::hub` → `HubClient`) end to end: a broker
//! on 127.0.0.1:0, real JSON and MessagePack WebSocket clients, and every operation checked by
//! what the clients receive or what the hub answers. These tests drive the broker only through
//! the public embedding API; they must not reach into `shared()`.
//!
//! Absence of a delivery is never shown by waiting: a marker is then sent to the same client by
//! connection id and must be the next message it receives ([`quiet`]).

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::{TestClient, client_token, expect};
use serde_json::{Value, json};
use switchboard::hub::{Member, MembershipTtl};
use switchboard::{HubClient, HubClientError, ServiceMode, SwitchboardHandle};

const T: Duration = Duration::from_secs(5);
const HUB: &str = "chat";

struct Env {
    handle: SwitchboardHandle,
    base: String,
    key: String,
    hub: HubClient,
}

async fn setup() -> Env {
    let (handle, base, key) = common::start(ServiceMode::Serverless).await;
    let hub = handle.hub(HUB).expect("valid hub name");
    Env {
        handle,
        base,
        key,
        hub,
    }
}

impl Env {
    /// A client of the hub for `user`, speaking `protocol`.
    async fn client(&self, user: Option<&str>, protocol: &str) -> TestClient {
        let token = client_token(&self.key, HUB, user);
        TestClient::connect(&self.base, HUB, &token, protocol)
            .await
            .unwrap_or_else(|e| panic!("{protocol} client of {user:?} connects: {e:#}"))
    }
}

/// Nothing is queued for `client`: a marker sent to it now is the next message it gets.
async fn quiet(hub: &HubClient, client: &mut TestClient) {
    let id = client.connection_id().to_owned();
    hub.send_connection(&id, "marker", (id.as_str(),))
        .await
        .expect("marker send");
    common::expect_marker(client).await;
}

/// The next message of `client` is a Close whose error is `reason`.
async fn expect_close(client: &mut TestClient, reason: Option<&str>) {
    let close = client
        .next_close(T)
        .await
        .unwrap_or_else(|e| panic!("{} expected a Close: {e:#}", client.connection_id()));
    assert_eq!(
        close.get("error").cloned().unwrap_or(Value::Null),
        json!(reason),
        "Close at {}: {close}",
        client.connection_id()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_all_reaches_json_and_messagepack_clients_alike_but_not_the_excluded() {
    let env = setup().await;
    let mut json_client = env.client(Some("alice"), "json").await;
    let mut msgpack_client = env.client(Some("bob"), "messagepack").await;
    let mut excluded = env.client(Some("carol"), "json").await;

    let args = (
        "server",
        42,
        -7,
        2.5,
        true,
        None::<u8>,
        vec![1, 2, 3],
        json!({ "nested": { "text": "hi" } }),
    );
    let expected = json!([
        "server",
        42,
        -7,
        2.5,
        true,
        null,
        [1, 2, 3],
        { "nested": { "text": "hi" } }
    ]);
    let excluded_id = excluded.connection_id().to_owned();
    env.hub
        .send_all("newMessage", args, &[excluded_id.as_str()])
        .await
        .expect("send_all");
    expect(&mut json_client, "newMessage", expected.clone()).await;
    expect(&mut msgpack_client, "newMessage", expected).await;
    quiet(&env.hub, &mut excluded).await;

    // A Vec is an argument list too, and no exclusion reaches everyone.
    env.hub
        .send_all("list", vec!["a", "b"], &[])
        .await
        .expect("send_all of a Vec");
    for client in [&mut json_client, &mut msgpack_client, &mut excluded] {
        expect(client, "list", json!(["a", "b"])).await;
    }
    env.handle.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_sends_reach_only_that_users_connections() {
    let env = setup().await;
    let mut alice_json = env.client(Some("alice"), "json").await;
    let mut alice_msgpack = env.client(Some("alice"), "messagepack").await;
    let mut bob = env.client(Some("bob"), "json").await;
    let mut carol = env.client(Some("carol"), "messagepack").await;
    let mut anonymous = env.client(None, "json").await;

    env.hub
        .send_user("alice", "toAlice", ("for", "alice"))
        .await
        .expect("send_user");
    expect(&mut alice_json, "toAlice", json!(["for", "alice"])).await;
    expect(&mut alice_msgpack, "toAlice", json!(["for", "alice"])).await;
    for other in [&mut bob, &mut carol, &mut anonymous] {
        quiet(&env.hub, other).await;
    }

    env.hub
        .send_users(&["bob", "carol", "nobody"], "toSome", (1,))
        .await
        .expect("send_users");
    expect(&mut bob, "toSome", json!([1])).await;
    expect(&mut carol, "toSome", json!([1])).await;
    env.hub
        .send_users(&[], "toNone", (2,))
        .await
        .expect("send_users to nobody");
    for other in [
        &mut alice_json,
        &mut alice_msgpack,
        &mut anonymous,
        &mut bob,
    ] {
        quiet(&env.hub, other).await;
    }
    env.handle.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_and_connection_sends_reach_only_their_recipients() {
    let env = setup().await;
    let mut a = env.client(Some("a"), "json").await;
    let mut b = env.client(Some("b"), "messagepack").await;
    let mut c = env.client(Some("c"), "json").await;
    let mut d = env.client(Some("d"), "messagepack").await;
    let [ida, idb, idc, idd] = [&a, &b, &c, &d].map(|x| x.connection_id().to_owned());
    for (id, group) in [(&ida, "g1"), (&idb, "g1"), (&idc, "g2")] {
        assert!(env.hub.add_to_group(id, group).await.expect("add_to_group"));
    }

    env.hub
        .send_group("g1", "toG1", ("g1",), &[idb.as_str()])
        .await
        .expect("send_group");
    expect(&mut a, "toG1", json!(["g1"])).await;
    for other in [&mut b, &mut c, &mut d] {
        quiet(&env.hub, other).await;
    }

    // a is in both groups: it gets the message once.
    assert!(
        env.hub
            .add_to_group(&ida, "g2")
            .await
            .expect("add_to_group")
    );
    env.hub
        .send_groups(&["g1", "g2"], "toBoth", ("both",))
        .await
        .expect("send_groups");
    for member in [&mut a, &mut b, &mut c] {
        expect(member, "toBoth", json!(["both"])).await;
        quiet(&env.hub, member).await;
    }
    quiet(&env.hub, &mut d).await;
    assert!(
        env.hub
            .remove_from_group(&ida, "g2")
            .await
            .expect("remove_from_group")
    );

    env.hub
        .send_connections(&[ida.as_str(), idd.as_str()], "direct", [10, 20])
        .await
        .expect("send_connections");
    expect(&mut a, "direct", json!([10, 20])).await;
    expect(&mut d, "direct", json!([10, 20])).await;
    env.hub
        .send_connection(&idc, "one", ("c",))
        .await
        .expect("send_connection");
    expect(&mut c, "one", json!(["c"])).await;
    for other in [&mut a, &mut b, &mut d] {
        quiet(&env.hub, other).await;
    }
    env.handle.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_membership_and_existence_checks() {
    let env = setup().await;
    let hub = &env.hub;
    let mut a = env.client(Some("alice"), "json").await;
    let id = a.connection_id().to_owned();

    assert!(hub.connection_exists(&id).await.expect("check"));
    assert!(
        !hub.connection_exists("no-such-connection")
            .await
            .expect("check")
    );
    assert!(hub.user_exists("alice").await.expect("check"));
    assert!(!hub.user_exists("nobody").await.expect("check"));
    assert!(!hub.group_exists("g").await.expect("check"));

    assert!(hub.add_to_group(&id, "g").await.expect("add"));
    assert!(hub.group_exists("g").await.expect("check"));
    assert!(hub.is_user_in_group("alice", "g").await.expect("check"));
    assert_eq!(
        hub.group_connections("g").await.expect("list"),
        vec![Member {
            connection_id: id.as_str().into(),
            user_id: Some("alice".into()),
        }]
    );
    assert!(hub.remove_from_group(&id, "g").await.expect("remove"));
    assert!(!hub.group_exists("g").await.expect("check"));
    assert!(!hub.is_user_in_group("alice", "g").await.expect("check"));
    assert_eq!(hub.group_connections("g").await.expect("list"), vec![]);
    hub.send_group("g", "left", ("g",), &[])
        .await
        .expect("send");
    quiet(hub, &mut a).await;

    // A connection that does not exist joins and leaves nothing.
    assert!(
        !hub.add_to_group("no-such-connection", "g")
            .await
            .expect("add")
    );
    assert!(!hub.group_exists("g").await.expect("check"));
    assert!(
        !hub.remove_from_group("no-such-connection", "g")
            .await
            .expect("remove")
    );
    assert!(
        !hub.remove_from_all_groups("no-such-connection")
            .await
            .expect("remove")
    );

    assert!(hub.add_to_group(&id, "g1").await.expect("add"));
    assert!(hub.add_to_group(&id, "g2").await.expect("add"));
    assert!(hub.remove_from_all_groups(&id).await.expect("remove all"));
    assert!(!hub.group_exists("g1").await.expect("check"));
    assert!(!hub.group_exists("g2").await.expect("check"));
    hub.send_groups(&["g1", "g2"], "left", ("all",))
        .await
        .expect("send");
    quiet(hub, &mut a).await;
    env.handle.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_membership_with_and_without_ttl() {
    let env = setup().await;
    let hub = &env.hub;
    let mut alice = env.client(Some("alice"), "messagepack").await;

    // No ttl: the connected user's connections join, and the membership is remembered.
    hub.add_user_to_group("alice", "admins", None)
        .await
        .expect("add user");
    assert!(
        hub.is_user_in_group("alice", "admins")
            .await
            .expect("check")
    );
    assert!(hub.group_exists("admins").await.expect("check"));
    hub.send_group("admins", "notice", ("x",), &[])
        .await
        .expect("send");
    expect(&mut alice, "notice", json!(["x"])).await;
    hub.remove_user_from_group("alice", "admins")
        .await
        .expect("remove user");
    assert!(
        !hub.is_user_in_group("alice", "admins")
            .await
            .expect("check")
    );
    hub.send_group("admins", "notice", ("y",), &[])
        .await
        .expect("send");
    quiet(hub, &mut alice).await;

    // ttl zero: only current connections, nothing remembered for a user without one.
    hub.add_user_to_group("offline", "g", Some(Duration::ZERO))
        .await
        .expect("add user");
    assert!(!hub.is_user_in_group("offline", "g").await.expect("check"));
    // A ttl (either shape) is remembered, and applies to a connection opened later.
    hub.add_user_to_group("later", "g", Some(Duration::from_secs(600)))
        .await
        .expect("add user");
    hub.add_user_to_group("other", "h", MembershipTtl::For(Duration::from_secs(600)))
        .await
        .expect("add user");
    assert!(hub.is_user_in_group("later", "g").await.expect("check"));
    assert!(hub.is_user_in_group("other", "h").await.expect("check"));
    let mut later = env.client(Some("later"), "json").await;
    hub.send_group("g", "welcome", ("later",), &[])
        .await
        .expect("send");
    expect(&mut later, "welcome", json!(["later"])).await;

    hub.add_user_to_group("later", "h", None)
        .await
        .expect("add user");
    hub.remove_user_from_all_groups("later")
        .await
        .expect("remove user from all");
    assert!(!hub.is_user_in_group("later", "g").await.expect("check"));
    assert!(!hub.is_user_in_group("later", "h").await.expect("check"));
    assert!(hub.is_user_in_group("other", "h").await.expect("check"));
    hub.send_groups(&["g", "h"], "gone", ("later",))
        .await
        .expect("send");
    quiet(hub, &mut later).await;
    env.handle.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closes_deliver_a_close_with_the_reason() {
    let env = setup().await;
    let hub = &env.hub;
    let mut one = env.client(Some("u1"), "json").await;
    let mut plain = env.client(Some("u2"), "messagepack").await;
    let mut alice_1 = env.client(Some("alice"), "json").await;
    let mut alice_2 = env.client(Some("alice"), "messagepack").await;
    let mut grouped = env.client(Some("g"), "messagepack").await;
    let mut rest_1 = env.client(Some("r1"), "json").await;
    let mut rest_2 = env.client(None, "messagepack").await;
    let mut kept = env.client(Some("k"), "json").await;

    assert!(
        hub.close_connection(one.connection_id(), Some("bye now"))
            .await
            .expect("close")
    );
    expect_close(&mut one, Some("bye now")).await;
    assert!(
        hub.close_connection(plain.connection_id(), None)
            .await
            .expect("close")
    );
    expect_close(&mut plain, None).await;
    assert!(
        !hub.close_connection("no-such-connection", Some("x"))
            .await
            .expect("close")
    );

    hub.close_user("alice", Some("user closed"))
        .await
        .expect("close user");
    expect_close(&mut alice_1, Some("user closed")).await;
    expect_close(&mut alice_2, Some("user closed")).await;

    assert!(
        hub.add_to_group(grouped.connection_id(), "gg")
            .await
            .expect("add")
    );
    hub.close_group("gg", Some("group closed"))
        .await
        .expect("close group");
    expect_close(&mut grouped, Some("group closed")).await;

    let kept_id = kept.connection_id().to_owned();
    hub.close_all(Some("all closed"), &[kept_id.as_str()])
        .await
        .expect("close all");
    expect_close(&mut rest_1, Some("all closed")).await;
    expect_close(&mut rest_2, Some("all closed")).await;
    quiet(hub, &mut kept).await;
    env.handle.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_names_and_arguments_are_typed_errors_and_send_nothing() {
    let env = setup().await;
    let hub = &env.hub;
    let mut client = env.client(Some("alice"), "json").await;
    let id = client.connection_id().to_owned();

    for bad in ["", "9chat", "chat room", "chat/x", &"h".repeat(129)] {
        assert!(
            matches!(env.handle.hub(bad), Err(HubClientError::InvalidName(_))),
            "hub name {bad:?}"
        );
    }
    let long = "u".repeat(1025);
    let invalid_name = |r: Result<(), HubClientError>, what: &str| {
        assert!(
            matches!(r, Err(HubClientError::InvalidName(_))),
            "{what}: {r:?}"
        );
    };
    invalid_name(hub.send_user("", "t", ("x",)).await, "empty user");
    invalid_name(hub.send_user(&long, "t", ("x",)).await, "long user");
    invalid_name(hub.send_users(&["alice", ""], "t", ("x",)).await, "users");
    invalid_name(hub.send_group("  ", "t", ("x",), &[]).await, "blank group");
    invalid_name(hub.send_groups(&["g", ""], "t", ("x",)).await, "groups");
    invalid_name(hub.send_connection("", "t", ("x",)).await, "connection");
    invalid_name(hub.send_all("", ("x",), &[]).await, "empty target");
    invalid_name(
        hub.add_to_group(&id, "").await.map(drop),
        "add to empty group",
    );
    invalid_name(hub.add_to_group("", "g").await.map(drop), "add empty id");
    invalid_name(hub.add_user_to_group("", "g", None).await, "add empty user");
    invalid_name(
        hub.is_user_in_group("alice", "").await.map(drop),
        "empty group check",
    );
    invalid_name(hub.close_user("", None).await, "close empty user");
    invalid_name(hub.close_group("", None).await, "close empty group");
    assert!(!hub.group_exists("g").await.expect("check"));

    let not_an_array = |r: Result<(), HubClientError>, expected: &str| match r {
        Err(HubClientError::NotAnArray { found }) => assert_eq!(found, expected),
        other => panic!("expected NotAnArray({expected}), got {other:?}"),
    };
    not_an_array(hub.send_all("t", "single", &[]).await, "a string");
    not_an_array(hub.send_all("t", json!({ "a": 1 }), &[]).await, "an object");
    not_an_array(hub.send_all("t", (), &[]).await, "null");
    not_an_array(hub.send_user("alice", "t", 5).await, "a number");
    not_an_array(hub.send_connection(&id, "t", true).await, "a boolean");
    let unserialisable = (HashMap::from([((1, 2), 3)]),);
    let r = hub.send_connection(&id, "t", unserialisable).await;
    assert!(matches!(r, Err(HubClientError::Serialize(_))), "{r:?}");

    quiet(hub, &mut client).await;
    env.handle.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operations_after_stop_fail_with_hub_gone() {
    let env = setup().await;
    let hub = env.hub.clone();
    hub.send_all("before", ("x",), &[])
        .await
        .expect("send while running");
    env.handle.stop().await;
    let r = hub.send_all("after", ("x",), &[]).await;
    assert!(matches!(r, Err(HubClientError::HubGone)), "{r:?}");
    let r = hub.user_exists("alice").await;
    assert!(matches!(r, Err(HubClientError::HubGone)), "{r:?}");
    let r = env.hub.close_all(None, &[]).await;
    assert!(matches!(r, Err(HubClientError::HubGone)), "{r:?}");
}

/// A hub served in this process by the SDK's `Hub` (no socket): a real client connects to the
/// broker, is routed to it, gets its on_connected greeting, invokes a method and gets the
/// answer; the hub server's own sends reach it; its disconnect is seen.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hub_served_in_process_answers_real_clients() {
    use switchboard_sdk::{Context, Hub, HubError};
    let (handle, base, key) = common::start(ServiceMode::Default).await;
    let (events_tx, mut events) = tokio::sync::mpsc::channel::<String>(8);
    let hub = Hub::builder()
        .on_connected(|ctx: Context| async move {
            ctx.clients()
                .caller()
                .send("welcome", ("in process",))
                .await?;
            Ok(())
        })
        .on_disconnected(move |ctx: Context, _error: Option<String>| {
            let events = events_tx.clone();
            async move {
                let _ = events
                    .send(format!("gone {}", ctx.user_id().unwrap_or("-")))
                    .await;
            }
        })
        .method("Echo", |_ctx: Context, (text,): (String,)| async move {
            Ok::<_, HubError>(text)
        })
        .build();
    let server = handle
        .hub_server(HUB, hub)
        .expect("hub server")
        .connection_count(2)
        .start()
        .expect("start");
    server
        .wait_connected(2, T)
        .await
        .expect("both in-process server connections come up");

    let token = client_token(&key, HUB, Some("alice"));
    let mut client = TestClient::connect(&base, HUB, &token, "json")
        .await
        .expect("client connects through the in-process hub server");
    expect(&mut client, "welcome", json!(["in process"])).await;
    client
        .send_raw(
            b"{\"type\":1,\"invocationId\":\"1\",\"target\":\"Echo\",\"arguments\":[\"hi\"]}\x1e",
        )
        .await
        .expect("invoke");
    let answer = client.next_message(T).await.expect("completion");
    assert_eq!(
        (
            answer["type"].clone(),
            answer["invocationId"].clone(),
            answer["result"].clone()
        ),
        (json!(3), json!("1"), json!("hi")),
        "{answer}"
    );
    server
        .clients()
        .all()
        .send("news", ("from the app",))
        .await
        .expect("send from the hub server");
    expect(&mut client, "news", json!(["from the app"])).await;
    client.close().await;
    assert_eq!(
        tokio::time::timeout(T, events.recv())
            .await
            .expect("disconnect seen"),
        Some("gone alice".to_owned())
    );
    server.stop().await;
    handle.stop().await;
}

/// Serverless mode refuses app servers that carry clients, in process as on the network.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serverless_mode_refuses_a_hub_served_in_process() {
    let env = setup().await;
    let hub = switchboard_sdk::Hub::builder().build();
    let server = env
        .handle
        .hub_server(HUB, hub)
        .expect("hub server")
        .connection_count(1)
        .start()
        .expect("start");
    let deadline = tokio::time::Instant::now() + T;
    while env
        .handle
        .metrics()
        .get("switchboard_server_handshakes_failed_total")
        == Some(0)
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the in-process server connection was never refused"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(server.connected_count(), 0);
    server.stop().await;
    env.handle.stop().await;
}
