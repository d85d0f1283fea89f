//! The management client (`switchboard_sdk::management`) against the real broker: Switchboard starts on 127.0.0.1:0 in Serverless mode, raw SignalR WebSocket
//! clients (JSON and MessagePack, `tests/common`) connect with the management client's own
//! negotiate redirect, and every operation is checked end to end, over REST and over the
//! persistent (Weak server connection) transport.
//!
//! Absence of a delivery is never shown by waiting: a marker is then sent to the same client by
//! connection id and must be the next message it receives.

#[path = "../../tests/common/mod.rs"]
mod common;

use std::time::Duration;

use common::TestClient;
use common::expect;
use common::management::{Env, T, client, quiet, setup};
use serde_json::json;
use switchboard_sdk::ConnectionString;
use switchboard_sdk::management::{
    Accepted, ManagementClient, ManagementError, ManagementOptions, Transport,
};

/// The next message of `client` is a Close with `reason`, then the socket closes.
async fn expect_close(client: &mut TestClient, reason: &str) {
    let close = client
        .next_close(T)
        .await
        .unwrap_or_else(|e| panic!("{} expected a Close: {e:#}", client.connection_id()));
    assert_eq!(close["error"], json!(reason), "{close}");
    client.wait_closed(T).await.expect("socket closes");
}

/// Polls `check` until it answers `want` (the hub forgets a closed connection just after the
/// socket closes).
async fn eventually(what: &str, want: bool, check: impl AsyncFn() -> bool) {
    let deadline = tokio::time::Instant::now() + T;
    while check().await != want {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what} never became {want}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// Sends

/// Every send kind, over `mgr`'s transport, to JSON and MessagePack clients, with exact
/// arguments and exclusions.
async fn check_sends(env: &Env, mgr: &ManagementClient) {
    let hub = mgr.hub("Chat");
    assert_eq!(hub.name(), "chat");
    let mut a = client(env, &hub, Some("alice"), "json").await;
    let mut b = client(env, &hub, Some("bob"), "messagepack").await;
    let mut c = client(env, &hub, Some("carol"), "json").await;
    let mut d = client(env, &hub, None, "messagepack").await;
    let (ia, ib, ic, id) = (
        a.connection_id().to_owned(),
        b.connection_id().to_owned(),
        c.connection_id().to_owned(),
        d.connection_id().to_owned(),
    );
    let rest_status = (mgr.transport() == Transport::Rest).then_some(202);

    // Broadcast with an exclusion; a tuple of mixed values.
    let args = (1, "x", json!({"k": [true, null]}), 2.5, -7_i64);
    let sent = hub
        .send_all("all", &args, &[ic.as_str()])
        .await
        .expect("send_all");
    assert_eq!(
        sent,
        Accepted {
            status: rest_status
        }
    );
    let want = json!([1, "x", {"k": [true, null]}, 2.5, -7]);
    for x in [&mut a, &mut b, &mut d] {
        expect(x, "all", want.clone()).await;
    }
    quiet(&hub, &mut c).await;

    // One user; a single non-sequence value is the single argument.
    hub.send_user("alice", "user", "hi")
        .await
        .expect("send_user");
    expect(&mut a, "user", json!(["hi"])).await;
    for x in [&mut b, &mut c, &mut d] {
        quiet(&hub, x).await;
    }

    // Several users; a Vec<Value> is the argument list.
    let sent = hub
        .send_users(
            &["alice", "bob", "nobody"],
            "users",
            vec![json!(1), json!("two")],
        )
        .await
        .expect("send_users");
    assert_eq!(sent.status, rest_status);
    expect(&mut a, "users", json!([1, "two"])).await;
    expect(&mut b, "users", json!([1, "two"])).await;
    quiet(&hub, &mut c).await;
    quiet(&hub, &mut d).await;

    // Groups, with an exclusion.
    hub.add_to_group(&ia, "g1").await.expect("add a");
    hub.add_to_group(&ib, "g1").await.expect("add b");
    hub.add_to_group(&ic, "g2").await.expect("add c");
    hub.send_group("g1", "group", (3,), &[ib.as_str()])
        .await
        .expect("send_group");
    expect(&mut a, "group", json!([3])).await;
    for x in [&mut b, &mut c, &mut d] {
        quiet(&hub, x).await;
    }

    // Several groups; `()` means no argument.
    hub.send_groups(&["g1", "g2"], "groups", ())
        .await
        .expect("send_groups");
    for x in [&mut a, &mut b, &mut c] {
        expect(x, "groups", json!([])).await;
    }
    quiet(&hub, &mut d).await;

    // One connection, then some; a 1-tuple carrying an array.
    hub.send_connection(&id, "one", (vec![1, 2],))
        .await
        .expect("send_connection");
    expect(&mut d, "one", json!([[1, 2]])).await;
    hub.send_connections(&[ia.as_str(), id.as_str()], "some", (true, "é"))
        .await
        .expect("send_connections");
    expect(&mut a, "some", json!([true, "é"])).await;
    expect(&mut d, "some", json!([true, "é"])).await;
    quiet(&hub, &mut b).await;
    quiet(&hub, &mut c).await;

    // Sends to nobody are accepted.
    hub.send_user("nobody", "x", ())
        .await
        .expect("send to a missing user");
    hub.send_group("empty", "x", (), &[])
        .await
        .expect("send to an empty group");
    hub.send_connection("missing", "x", ())
        .await
        .expect("send to a missing connection");
    for x in [&mut a, &mut b, &mut c, &mut d] {
        quiet(&hub, x).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_sends_reach_exactly_the_addressed_clients() {
    let env = setup().await;
    let mgr = ManagementClient::new(env.cs.clone()).expect("client");
    assert_eq!(mgr.transport(), Transport::Rest);
    check_sends(&env, &mgr).await;
    env.handle.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persistent_sends_reach_exactly_the_addressed_clients() {
    let env = setup().await;
    let mgr = ManagementClient::persistent(env.cs.clone()).expect("client");
    assert_eq!(mgr.transport(), Transport::Persistent);
    check_sends(&env, &mgr).await;
    mgr.shutdown().await;
    env.handle.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Groups, user groups, checks

async fn check_groups(env: &Env, mgr: &ManagementClient) {
    let hub = mgr.hub("chat");
    let mut a = client(env, &hub, Some("alice"), "json").await;
    let mut a2 = client(env, &hub, Some("alice"), "messagepack").await;
    let mut b = client(env, &hub, Some("bob"), "json").await;
    let (ia, ib) = (a.connection_id().to_owned(), b.connection_id().to_owned());

    // Connection → group, then out again.
    assert!(!hub.group_exists("g").await.expect("group_exists"));
    hub.add_to_group(&ia, "g").await.expect("add_to_group");
    assert!(hub.group_exists("g").await.expect("group_exists"));
    hub.send_group("g", "in", (1,), &[]).await.expect("send");
    expect(&mut a, "in", json!([1])).await;
    hub.remove_from_group(&ia, "g")
        .await
        .expect("remove_from_group");
    assert!(!hub.group_exists("g").await.expect("group_exists"));
    hub.send_group("g", "out", (), &[]).await.expect("send");
    quiet(&hub, &mut a).await;

    // Out of every group at once.
    hub.add_to_group(&ia, "g1").await.expect("add g1");
    hub.add_to_group(&ia, "g2").await.expect("add g2");
    hub.add_to_group(&ib, "g2").await.expect("add b g2");
    hub.remove_from_all_groups(&ia)
        .await
        .expect("remove_from_all_groups");
    hub.send_groups(&["g1", "g2"], "left", ())
        .await
        .expect("send");
    expect(&mut b, "left", json!([])).await;
    quiet(&hub, &mut a).await;
    assert!(!hub.group_exists("g1").await.expect("group_exists"));

    // Missing connections are not errors (as in the SDK).
    hub.add_to_group("no-such-connection", "g")
        .await
        .expect("add missing");
    hub.remove_from_group("no-such-connection", "g")
        .await
        .expect("remove missing");
    hub.remove_from_all_groups("no-such-connection")
        .await
        .expect("remove all missing");
    assert!(!hub.group_exists("g").await.expect("group_exists"));

    // User → group: every connection of the user, and the ones it opens later.
    hub.add_user_to_group("alice", "team", None)
        .await
        .expect("add_user_to_group");
    assert!(hub.is_user_in_group("alice", "team").await.expect("check"));
    assert!(!hub.is_user_in_group("bob", "team").await.expect("check"));
    let mut a3 = client(env, &hub, Some("alice"), "json").await;
    hub.send_group("team", "team", ("t",), &[])
        .await
        .expect("send");
    for x in [&mut a, &mut a2, &mut a3] {
        expect(x, "team", json!(["t"])).await;
    }
    quiet(&hub, &mut b).await;
    hub.remove_user_from_group("alice", "team")
        .await
        .expect("remove_user_from_group");
    assert!(!hub.is_user_in_group("alice", "team").await.expect("check"));
    hub.send_group("team", "gone", (), &[]).await.expect("send");
    for x in [&mut a, &mut a2, &mut a3, &mut b] {
        quiet(&hub, x).await;
    }

    // With a ttl, then out of every group.
    hub.add_user_to_group("bob", "t1", Some(Duration::from_secs(3600)))
        .await
        .expect("add with ttl");
    hub.add_user_to_group("bob", "t2", None).await.expect("add");
    assert!(hub.is_user_in_group("bob", "t1").await.expect("check"));
    hub.send_groups(&["t1"], "ttl", (1,)).await.expect("send");
    expect(&mut b, "ttl", json!([1])).await;
    hub.remove_user_from_all_groups("bob")
        .await
        .expect("remove_user_from_all_groups");
    assert!(!hub.is_user_in_group("bob", "t1").await.expect("check"));
    assert!(!hub.is_user_in_group("bob", "t2").await.expect("check"));
    hub.send_groups(&["t1", "t2"], "none", ())
        .await
        .expect("send");
    quiet(&hub, &mut b).await;

    // ttl 0: only the user's current connections.
    hub.add_user_to_group("bob", "now", Some(Duration::ZERO))
        .await
        .expect("add ttl 0");
    let mut b2 = client(env, &hub, Some("bob"), "messagepack").await;
    hub.send_group("now", "now", (), &[]).await.expect("send");
    expect(&mut b, "now", json!([])).await;
    quiet(&hub, &mut b2).await;

    // Existence checks.
    assert!(hub.connection_exists(&ia).await.expect("check"));
    assert!(
        !hub.connection_exists("no-such-connection")
            .await
            .expect("check")
    );
    assert!(hub.user_exists("alice").await.expect("check"));
    assert!(!hub.user_exists("nobody").await.expect("check"));
    assert!(hub.group_exists("now").await.expect("check"));
    assert!(!hub.group_exists("never").await.expect("check"));
    assert!(!hub.is_user_in_group("nobody", "now").await.expect("check"));
    // A hub nobody used has nothing.
    let other = mgr.hub("other");
    assert!(!other.connection_exists(&ia).await.expect("check"));
    assert!(!other.user_exists("alice").await.expect("check"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_groups_user_groups_and_checks() {
    let env = setup().await;
    let mgr = ManagementClient::new(env.cs.clone()).expect("client");
    check_groups(&env, &mgr).await;
    env.handle.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persistent_groups_user_groups_and_checks() {
    let env = setup().await;
    let mgr = ManagementClient::persistent(env.cs.clone()).expect("client");
    check_groups(&env, &mgr).await;
    mgr.shutdown().await;
    env.handle.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Closes

async fn check_closes(env: &Env, mgr: &ManagementClient) {
    let hub = mgr.hub("chat");
    let mut a = client(env, &hub, Some("alice"), "json").await;
    let mut b1 = client(env, &hub, Some("bob"), "messagepack").await;
    let mut b2 = client(env, &hub, Some("bob"), "json").await;
    let mut g1 = client(env, &hub, Some("gina"), "json").await;
    let mut g2 = client(env, &hub, None, "messagepack").await;
    let mut k = client(env, &hub, None, "json").await;
    let mut x = client(env, &hub, None, "messagepack").await;

    // One connection, with a reason.
    let ia = a.connection_id().to_owned();
    hub.close_connection(&ia, Some("bye, alice"))
        .await
        .expect("close_connection");
    expect_close(&mut a, "bye, alice").await;
    eventually("connection_exists(a)", false, async || {
        hub.connection_exists(&ia).await.expect("check")
    })
    .await;
    hub.close_connection(&ia, None)
        .await
        .expect("closing a missing connection");

    // Every connection of a user.
    hub.close_user("bob", Some("user closed"))
        .await
        .expect("close_user");
    expect_close(&mut b1, "user closed").await;
    expect_close(&mut b2, "user closed").await;

    // Every connection of a group.
    for c in [&g1, &g2] {
        hub.add_to_group(c.connection_id(), "doomed")
            .await
            .expect("add");
    }
    hub.close_group("doomed", Some("group closed"))
        .await
        .expect("close_group");
    expect_close(&mut g1, "group closed").await;
    expect_close(&mut g2, "group closed").await;

    // Everyone but one (REST in both transports).
    let ik = k.connection_id().to_owned();
    hub.close_all(Some("all closed"), &[ik.as_str()])
        .await
        .expect("close_all");
    expect_close(&mut x, "all closed").await;
    quiet(&hub, &mut k).await;
    assert!(hub.connection_exists(&ik).await.expect("check"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_closes_carry_the_reason() {
    let env = setup().await;
    let mgr = ManagementClient::new(env.cs.clone()).expect("client");
    check_closes(&env, &mgr).await;
    env.handle.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persistent_closes_carry_the_reason() {
    let env = setup().await;
    let mgr = ManagementClient::persistent(env.cs.clone()).expect("client");
    check_closes(&env, &mgr).await;
    mgr.shutdown().await;
    env.handle.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Applications, health, errors

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn application_hubs_are_separate() {
    let env = setup().await;
    for mgr in [
        ManagementClient::new(env.cs.clone()).expect("client"),
        ManagementClient::persistent(env.cs.clone()).expect("client"),
    ] {
        let app_hub = mgr.hub_with_application("MyApp", "Chat");
        assert_eq!(app_hub.name(), "myapp_chat");
        let plain = mgr.hub("chat");
        let mut in_app = client(&env, &app_hub, Some("u"), "json").await;
        let mut plain_client = client(&env, &plain, Some("u"), "messagepack").await;
        app_hub.send_all("app", (1,), &[]).await.expect("send");
        expect(&mut in_app, "app", json!([1])).await;
        quiet(&plain, &mut plain_client).await;
        plain.send_user("u", "plain", (2,)).await.expect("send");
        expect(&mut plain_client, "plain", json!([2])).await;
        quiet(&app_hub, &mut in_app).await;
        assert!(app_hub.user_exists("u").await.expect("check"));
        assert!(
            app_hub
                .connection_exists(in_app.connection_id())
                .await
                .expect("check")
        );
        assert!(
            !app_hub
                .connection_exists(plain_client.connection_id())
                .await
                .expect("check")
        );
        mgr.shutdown().await;
        in_app.close().await;
        plain_client.close().await;
    }
    env.handle.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_follows_the_broker() {
    let env = setup().await;
    let mgr = ManagementClient::new(env.cs.clone()).expect("client");
    assert!(mgr.is_healthy().await);
    let persistent = ManagementClient::persistent(env.cs.clone()).expect("client");
    assert!(persistent.is_healthy().await);
    env.handle.stop().await;
    assert!(!mgr.is_healthy().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_refusals_are_typed_errors() {
    let env = setup().await;
    let port = env.handle.local_addr().port();
    let wrong: ConnectionString =
        format!("Endpoint=http://127.0.0.1;Port={port};AccessKey=not-the-key;Version=1.0;")
            .parse()
            .unwrap();
    let mgr = ManagementClient::new(wrong).expect("client");
    let hub = mgr.hub("chat");

    let err = hub.send_all("t", (), &[]).await.unwrap_err();
    assert_eq!(err.status(), Some(401), "{err}");
    assert_eq!(err.error_code(), Some("Error.Unauthorized"), "{err}");
    assert!(
        err.to_string()
            .contains("the token is not signed with any of this broker's access keys"),
        "{err}"
    );
    // A check refused for another reason than "not found" is an error, not `false`
    // (HEAD: the code comes from the header, the message from the status).
    let err = hub.connection_exists("c").await.unwrap_err();
    assert!(
        matches!(err, ManagementError::Service { status: 401, ref code, .. } if code.as_deref() == Some("Error.Unauthorized")),
        "{err}"
    );
    let err = hub.user_exists("u").await.unwrap_err();
    assert_eq!(err.status(), Some(401));
    // Invalid names never reach the service.
    let err = hub.send_group(" ", "t", (), &[]).await.unwrap_err();
    assert!(matches!(err, ManagementError::InvalidArgument(_)), "{err}");

    // Persistent: the Weak connection is refused (bad token), so the operation times out.
    let persistent = ManagementClient::with_options(
        format!("Endpoint=http://127.0.0.1;Port={port};AccessKey=not-the-key;")
            .parse()
            .unwrap(),
        ManagementOptions {
            transport: Transport::Persistent,
            connect_timeout: Duration::from_millis(300),
            ..ManagementOptions::default()
        },
    )
    .expect("client");
    let err = persistent.hub("chat").user_exists("u").await.unwrap_err();
    assert!(matches!(err, ManagementError::Persistent(_)), "{err}");
    persistent.shutdown().await;
    env.handle.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_service_is_an_http_error() {
    // Bind and drop a listener: nothing listens on that port any more.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cs: ConnectionString = format!("Endpoint=http://127.0.0.1;Port={port};AccessKey=k;")
        .parse()
        .unwrap();
    let mgr = ManagementClient::new(cs).expect("client");
    assert!(!mgr.is_healthy().await);
    let err = mgr.hub("chat").send_all("t", (), &[]).await.unwrap_err();
    assert!(matches!(err, ManagementError::Http(_)), "{err}");
    assert!(
        err.to_string()
            .starts_with(&format!("connection refused at http://127.0.0.1:{port}")),
        "{err}"
    );
}
