//! Cluster mode over the in-process engine: three nodes in one process, real sockets and real
//! HTTP, every REST operation entering at a node that holds none of the affected clients. The
//! same scenarios over Redis, as separate processes, are in `tests/cluster_redis.rs`.
//!
//! Absence of a delivery is shown with a marker sent afterwards by connection id: it must be
//! the next message.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Rest, TestClient, client_token, expect, expect_marker};
use serde_json::{Value, json};
use switchboard::cluster::{ClusterSettings, LocalEngine};
use switchboard::{ServiceMode, Switchboard, SwitchboardHandle};

const T: Duration = Duration::from_secs(5);

struct Node {
    handle: SwitchboardHandle,
    base: String,
    rest: Rest,
}

async fn node(engine: &LocalEngine, name: &str) -> Node {
    node_in(engine, name, ServiceMode::Serverless).await
}

async fn node_in(engine: &LocalEngine, name: &str, mode: ServiceMode) -> Node {
    node_with(engine, name, common::config(mode)).await
}

async fn node_with(engine: &LocalEngine, name: &str, mut config: switchboard::Config) -> Node {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    config.listen = listener.local_addr().expect("addr");
    config.access_keys = vec![common::TEST_KEY.to_owned()];
    config.workers = 1;
    let mut settings = ClusterSettings::new(name);
    settings.heartbeat_interval = Duration::from_millis(200);
    settings.node_timeout = Duration::from_millis(1000);
    settings.request_timeout = Duration::from_secs(3);
    let handle = Switchboard::new(config)
        .expect("config")
        .with_cluster(settings, Arc::new(engine.clone()))
        .start(listener)
        .expect("start");
    let base = format!("http://{}", handle.local_addr());
    let rest = Rest::new(&base, common::TEST_KEY);
    Node { handle, base, rest }
}

/// Three nodes that all see each other.
async fn cluster(engine: &LocalEngine) -> Vec<Node> {
    let mut nodes = Vec::new();
    for name in ["a", "b", "c"] {
        nodes.push(node(engine, name).await);
    }
    for n in &nodes {
        wait_for(
            || metric(&n.handle, "switchboard_cluster_nodes") == 2,
            "every node sees two others",
        )
        .await;
    }
    nodes
}

fn metric(handle: &SwitchboardHandle, name: &str) -> u64 {
    handle
        .metrics()
        .get(name)
        .unwrap_or_else(|| panic!("no metric {name}"))
}

async fn wait_for(mut cond: impl FnMut() -> bool, what: &str) {
    let deadline = tokio::time::Instant::now() + T;
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn client(node: &Node, hub: &str, user: Option<&str>, protocol: &str) -> TestClient {
    let token = client_token(common::TEST_KEY, hub, user);
    TestClient::connect(&node.base, hub, &token, protocol)
        .await
        .expect("client connects")
}

/// Send `marker(<id>)` to `client` through `node`'s REST API, then expect it as the next message.
async fn marker(node: &Node, hub: &str, client: &mut TestClient) {
    let id = client.connection_id().to_owned();
    let r = node
        .rest
        .post_json(
            &format!("/api/hubs/{hub}/connections/{id}/:send?api-version=2022-06-01"),
            &json!({"target": "marker", "arguments": [id]}),
        )
        .await;
    assert_eq!(r.status, 202, "{}", r.text());
    expect_marker(client).await;
}

fn msg(target: &str, args: Value) -> Value {
    json!({ "target": target, "arguments": args })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sends_entering_at_a_third_node_reach_clients_on_the_other_two() {
    let engine = LocalEngine::new();
    let nodes = cluster(&engine).await;
    let (a, b, c) = (&nodes[0], &nodes[1], &nodes[2]);
    let mut alice_a = client(a, "chat", Some("alice"), "json").await;
    let mut alice_b = client(b, "chat", Some("alice"), "messagepack").await;
    let mut bob_b = client(b, "chat", Some("bob"), "json").await;

    c.rest.broadcast("chat", "all", json!(["hi"])).await;
    for cl in [&mut alice_a, &mut alice_b, &mut bob_b] {
        expect(cl, "all", json!(["hi"])).await;
    }

    // To a user: both of alice's connections, on two nodes; not bob.
    let r = c
        .rest
        .post_json(
            "/api/hubs/chat/users/alice/:send?api-version=2022-06-01",
            &msg("user", json!([1])),
        )
        .await;
    assert_eq!(r.status, 202);
    expect(&mut alice_a, "user", json!([1])).await;
    expect(&mut alice_b, "user", json!([1])).await;
    marker(c, "chat", &mut bob_b).await;

    // To one connection on another node.
    let id = bob_b.connection_id().to_owned();
    let r = c
        .rest
        .post_json(
            &format!("/api/hubs/chat/connections/{id}/:send?api-version=2022-06-01"),
            &msg("one", json!([2])),
        )
        .await;
    assert_eq!(r.status, 202);
    expect(&mut bob_b, "one", json!([2])).await;
    marker(c, "chat", &mut alice_a).await;

    // Broadcast with an excluded connection on another node.
    let excluded = alice_b.connection_id().to_owned();
    let r = c
        .rest
        .post_json(
            &format!("/api/hubs/chat/:send?api-version=2022-06-01&excluded={excluded}"),
            &msg("ex", json!([3])),
        )
        .await;
    assert_eq!(r.status, 202);
    expect(&mut alice_a, "ex", json!([3])).await;
    expect(&mut bob_b, "ex", json!([3])).await;
    marker(c, "chat", &mut alice_b).await;
    assert!(metric(&c.handle, "switchboard_cluster_published_total") >= 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_memberships_existence_and_listing_work_across_nodes() {
    let engine = LocalEngine::new();
    let nodes = cluster(&engine).await;
    let (a, b, c) = (&nodes[0], &nodes[1], &nodes[2]);
    let mut x = client(a, "chat", Some("xena"), "json").await;
    let mut y = client(b, "chat", Some("yuri"), "messagepack").await;
    let (xid, yid) = (x.connection_id().to_owned(), y.connection_id().to_owned());
    let v = "api-version=2022-06-01";

    // Connection → group, asked at the node that holds neither connection.
    for id in [&xid, &yid] {
        let r = c
            .rest
            .put(&format!("/api/hubs/chat/groups/g1/connections/{id}?{v}"))
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let r = c
        .rest
        .put(&format!("/api/hubs/chat/groups/g1/connections/nobody?{v}"))
        .await;
    assert_eq!(r.status, 404, "a connection no node has: {}", r.text());
    let r = c
        .rest
        .post_json(
            &format!("/api/hubs/chat/groups/g1/:send?{v}"),
            &msg("g", json!(["g1"])),
        )
        .await;
    assert_eq!(r.status, 202);
    expect(&mut x, "g", json!(["g1"])).await;
    expect(&mut y, "g", json!(["g1"])).await;

    // Existence, from the third node.
    assert_eq!(
        c.rest
            .head(&format!("/api/hubs/chat/connections/{xid}?{v}"))
            .await
            .status,
        200
    );
    assert_eq!(
        c.rest
            .head(&format!("/api/hubs/chat/connections/none?{v}"))
            .await
            .status,
        404
    );
    assert_eq!(
        c.rest
            .head(&format!("/api/hubs/chat/users/yuri?{v}"))
            .await
            .status,
        200
    );
    assert_eq!(
        c.rest
            .head(&format!("/api/hubs/chat/users/zed?{v}"))
            .await
            .status,
        404
    );
    assert_eq!(
        c.rest
            .head(&format!("/api/hubs/chat/groups/g1?{v}"))
            .await
            .status,
        200
    );
    assert_eq!(
        c.rest
            .head(&format!("/api/hubs/chat/groups/g2?{v}"))
            .await
            .status,
        404
    );

    // The listing merges both nodes, in connection-id order.
    let r = c
        .rest
        .get(&format!("/api/hubs/chat/groups/g1/connections?{v}"))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let mut ids: Vec<String> = r.json()["value"]
        .as_array()
        .expect("value")
        .iter()
        .map(|m| m["connectionId"].as_str().expect("id").to_owned())
        .collect();
    let listed = ids.clone();
    ids.sort();
    assert_eq!(listed, ids, "ordered");
    let mut want = vec![xid.clone(), yid.clone()];
    want.sort();
    assert_eq!(ids, want);

    // Leave, from the third node: only y gets the next group message.
    let r = c
        .rest
        .delete(&format!("/api/hubs/chat/groups/g1/connections/{xid}?{v}"))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = c
        .rest
        .post_json(
            &format!("/api/hubs/chat/groups/g1/:send?{v}"),
            &msg("g", json!(["again"])),
        )
        .await;
    assert_eq!(r.status, 202);
    expect(&mut y, "g", json!(["again"])).await;
    marker(c, "chat", &mut x).await;

    // Close one connection on another node, with a reason.
    let r = c
        .rest
        .delete(&format!("/api/hubs/chat/connections/{yid}?{v}&reason=bye"))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let close = y.next_close(T).await.expect("close");
    assert!(
        close["error"].as_str().is_some_and(|e| e.contains("bye")),
        "{close}"
    );
    let r = c
        .rest
        .delete(&format!("/api/hubs/chat/connections/none?{v}"))
        .await;
    assert_eq!(r.status, 404, "{}", r.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remembered_user_group_memberships_reach_connections_opened_later_on_any_node() {
    let engine = LocalEngine::new();
    let nodes = cluster(&engine).await;
    let (a, b, c) = (&nodes[0], &nodes[1], &nodes[2]);
    let v = "api-version=2022-06-01";
    // Remembered at node c while the user has no connection anywhere.
    let r = c
        .rest
        .put(&format!(
            "/api/hubs/chat/groups/vip/users/ulla?{v}&ttl=3600"
        ))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = c
        .rest
        .put(&format!("/api/hubs/chat/groups/all/users/ulla?{v}"))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        c.rest
            .head(&format!("/api/hubs/chat/groups/vip/users/ulla?{v}"))
            .await
            .status,
        200
    );
    assert_eq!(
        a.rest
            .head(&format!("/api/hubs/chat/groups/vip/users/ulla?{v}"))
            .await
            .status,
        200
    );
    assert_eq!(
        a.rest
            .head(&format!("/api/hubs/chat/groups/vip/users/olaf?{v}"))
            .await
            .status,
        404
    );

    // She connects on b (where the hub may not even run yet): she is in both groups.
    let mut u = client(b, "chat", Some("ulla"), "json").await;
    for g in ["vip", "all"] {
        let r = a
            .rest
            .post_json(
                &format!("/api/hubs/chat/groups/{g}/:send?{v}"),
                &msg("g", json!([g])),
            )
            .await;
        assert_eq!(r.status, 202);
        expect(&mut u, "g", json!([g])).await;
    }

    // Removed at node a: she leaves at once on b, and a later connection does not join.
    let r = a
        .rest
        .delete(&format!("/api/hubs/chat/groups/vip/users/ulla?{v}"))
        .await;
    assert_eq!(r.status, 204, "{}", r.text());
    let r = c
        .rest
        .post_json(
            &format!("/api/hubs/chat/groups/vip/:send?{v}"),
            &msg("g", json!(["late"])),
        )
        .await;
    assert_eq!(r.status, 202);
    marker(c, "chat", &mut u).await;
    let mut u2 = client(a, "chat", Some("ulla"), "messagepack").await;
    let r = b
        .rest
        .post_json(
            &format!("/api/hubs/chat/groups/vip/:send?{v}"),
            &msg("g", json!(["later"])),
        )
        .await;
    assert_eq!(r.status, 202);
    marker(b, "chat", &mut u2).await;
    let r = b
        .rest
        .post_json(
            &format!("/api/hubs/chat/groups/all/:send?{v}"),
            &msg("g", json!(["still"])),
        )
        .await;
    assert_eq!(r.status, 202);
    expect(&mut u2, "g", json!(["still"])).await;
    expect(&mut u, "g", json!(["still"])).await;

    // Removed from every group at node c.
    let r = c
        .rest
        .delete(&format!("/api/hubs/chat/users/ulla/groups?{v}"))
        .await;
    assert_eq!(r.status, 204, "{}", r.text());
    assert_eq!(
        a.rest
            .head(&format!("/api/hubs/chat/groups/all/users/ulla?{v}"))
            .await
            .status,
        404
    );
    let r = c
        .rest
        .post_json(
            &format!("/api/hubs/chat/groups/all/:send?{v}"),
            &msg("g", json!(["gone"])),
        )
        .await;
    assert_eq!(r.status, 202);
    marker(c, "chat", &mut u).await;
    marker(c, "chat", &mut u2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_engine_outage_keeps_local_delivery_fails_cross_node_answers_and_recovers() {
    let engine = LocalEngine::new();
    let nodes = cluster(&engine).await;
    let (a, b) = (&nodes[0], &nodes[1]);
    let v = "api-version=2022-06-01";
    let mut on_a = client(a, "chat", None, "json").await;
    let mut on_b = client(b, "chat", None, "json").await;
    let b_id = on_b.connection_id().to_owned();

    engine.set_down(true);
    for n in &nodes {
        wait_for(
            || metric(&n.handle, "switchboard_cluster_engine_up") == 0,
            "the engine is down everywhere",
        )
        .await;
        let r = n.rest.get("/readyz").await;
        assert_eq!(r.status, 503, "{}", r.text());
        assert_eq!(r.json()["status"], json!("cluster-unavailable"));
    }
    // Local delivery goes on; the publish is counted as failed.
    let failed = metric(&a.handle, "switchboard_cluster_publish_failed_total");
    a.rest.broadcast("chat", "local", json!([1])).await;
    expect(&mut on_a, "local", json!([1])).await;
    wait_for(
        || metric(&a.handle, "switchboard_cluster_publish_failed_total") > failed,
        "the failed publish is counted",
    )
    .await;
    // An answer that needs another node is a 503 that says why.
    let r = a
        .rest
        .head(&format!("/api/hubs/chat/connections/{b_id}?{v}"))
        .await;
    assert_eq!(r.status, 503);
    let r = a
        .rest
        .put(&format!("/api/hubs/chat/groups/g/connections/{b_id}?{v}"))
        .await;
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.error_code(), Some("Error.ClusterUnavailable"));

    engine.set_down(false);
    for n in &nodes {
        wait_for(
            || metric(&n.handle, "switchboard_cluster_engine_up") == 1,
            "the engine is back",
        )
        .await;
        assert_eq!(n.rest.get("/readyz").await.status, 200);
    }
    assert_eq!(
        metric(&a.handle, "switchboard_cluster_engine_lost_total"),
        1
    );
    a.rest.broadcast("chat", "again", json!([2])).await;
    expect(&mut on_a, "again", json!([2])).await;
    expect(&mut on_b, "again", json!([2])).await;
    assert_eq!(
        a.rest
            .head(&format!("/api/hubs/chat/connections/{b_id}?{v}"))
            .await
            .status,
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_node_leaves_and_the_others_notice_at_once() {
    let engine = LocalEngine::new();
    let mut nodes = cluster(&engine).await;
    let c = nodes.pop().expect("c");
    let lost = metric(&nodes[0].handle, "switchboard_cluster_nodes_lost_total");
    c.handle.stop().await;
    for n in &nodes {
        wait_for(
            || metric(&n.handle, "switchboard_cluster_nodes") == 1,
            "the others see one node",
        )
        .await;
    }
    assert_eq!(
        metric(&nodes[0].handle, "switchboard_cluster_nodes_lost_total"),
        lost + 1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_negotiates_at_one_node_and_connects_at_another_once_and_only_as_itself() {
    let engine = LocalEngine::new();
    let nodes = cluster(&engine).await;
    let (a, b, c) = (&nodes[0], &nodes[1], &nodes[2]);
    let token = client_token(common::TEST_KEY, "chat", Some("nina"));
    // Negotiated at a, connected at b: served, and reachable from c.
    let (id, connection_token) = TestClient::negotiate_only(&a.base, "chat", &token)
        .await
        .expect("negotiate");
    assert_ne!(id, connection_token);
    let mut nina = TestClient::open(
        &b.base,
        "chat",
        &token,
        "messagepack",
        id.clone(),
        &connection_token,
    )
    .await
    .expect("another node accepts the token");
    c.rest.broadcast("chat", "hello", json!([1])).await;
    expect(&mut nina, "hello", json!([1])).await;
    marker(c, "chat", &mut nina).await;

    // The same token again, at a third node or at the first: refused (once across the cluster).
    for n in [c, a] {
        let again = TestClient::open(
            &n.base,
            "chat",
            &token,
            "json",
            id.clone(),
            &connection_token,
        )
        .await;
        assert!(
            again.is_err(),
            "a token used at b was accepted again at {}",
            n.base
        );
    }

    // Another user's token with nina's connection token: refused at every node.
    let (id2, connection_token2) = TestClient::negotiate_only(&a.base, "chat", &token)
        .await
        .expect("negotiate");
    let eve = client_token(common::TEST_KEY, "chat", Some("eve"));
    for n in [b, c] {
        let stolen = TestClient::open(
            &n.base,
            "chat",
            &eve,
            "json",
            id2.clone(),
            &connection_token2,
        )
        .await;
        assert!(
            stolen.is_err(),
            "eve took over nina's negotiation at {}",
            n.base
        );
    }
    // ... which nina can still use.
    TestClient::open(&c.base, "chat", &token, "json", id2, &connection_token2)
        .await
        .expect("the owner still can");
}

/// Nodes `a` and `b` in Default mode, seeing each other.
async fn two_default_nodes(engine: &LocalEngine) -> (Node, Node) {
    let a = node_in(engine, "a", ServiceMode::Default).await;
    let b = node_in(engine, "b", ServiceMode::Default).await;
    for n in [&a, &b] {
        wait_for(
            || metric(&n.handle, "switchboard_cluster_nodes") == 1,
            "the nodes see each other",
        )
        .await;
    }
    (a, b)
}

/// A scripted hub server of hub `chat` with one Default connection to `node`.
async fn app(node: &Node, server_id: &str) -> anyhow::Result<common::fake_server::FakeServer> {
    common::fake_server::FakeServer::connect(
        &node.base,
        common::TEST_KEY,
        "chat",
        server_id,
        switchboard::protocol::service::ConnectionType::Default,
    )
    .await
}

fn payloads(target: &str, args: Value) -> Vec<(String, bytes::Bytes)> {
    let json = common::json_invocation(None, target, args.clone());
    let mp = switchboard::protocol::encode_invocation_json_args(
        switchboard::protocol::HubProtocol::MessagePack,
        target,
        &serde_json::to_vec(&args).expect("json"),
    )
    .expect("messagepack");
    vec![
        ("json".into(), bytes::Bytes::from(json)),
        ("messagepack".into(), mp),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hub_servers_messages_through_one_node_reach_its_clients_on_another() -> anyhow::Result<()>
{
    use switchboard::protocol::service::{Extensions, ServiceMessage};
    let engine = LocalEngine::new();
    let (a, b) = two_default_nodes(&engine).await;
    // One app server, a connection to each node (as the SDK's connections land behind a load
    // balancer); a client on b is routed to b's connection.
    let mut via_a = app(&a, "app1").await?;
    let mut via_b = app(&b, "app1").await?;
    let token = client_token(common::TEST_KEY, "chat", Some("carl"));
    let base = b.base.clone();
    let pending =
        tokio::spawn(async move { TestClient::connect(&base, "chat", &token, "json").await });
    let (id, ..) = via_b.accept_client().await?;
    let mut carl = pending.await??;

    // Through a's connection: a broadcast, a message to carl by id, a group join with ack and a
    // group send, then a close.
    via_a
        .send(&ServiceMessage::BroadcastData {
            excluded_list: vec![],
            payloads: payloads("all", json!([1])),
            extensions: Extensions::default(),
        })
        .await?;
    expect(&mut carl, "all", json!([1])).await;
    via_a
        .send(&ServiceMessage::MultiConnectionData {
            connection_list: vec![id.clone()],
            payloads: payloads("direct", json!([2])),
            extensions: Extensions::default(),
        })
        .await?;
    expect(&mut carl, "direct", json!([2])).await;
    via_a
        .send(&ServiceMessage::JoinGroupWithAck {
            connection_id: id.clone(),
            group_name: "g".into(),
            ack_id: 7,
            extensions: Extensions::default(),
        })
        .await?;
    assert_eq!(via_a.expect_ack(7).await?, 1, "found on the other node");
    via_a
        .send(&ServiceMessage::JoinGroupWithAck {
            connection_id: "nobody".into(),
            group_name: "g".into(),
            ack_id: 8,
            extensions: Extensions::default(),
        })
        .await?;
    assert_ne!(via_a.expect_ack(8).await?, 1, "no node has it");
    via_a
        .send(&ServiceMessage::GroupBroadcastData {
            group_name: "g".into(),
            excluded_list: vec![],
            payloads: payloads("group", json!([3])),
            excluded_user_list: vec![],
            caller_user_id: None,
            extensions: Extensions::default(),
        })
        .await?;
    expect(&mut carl, "group", json!([3])).await;
    via_a
        .send(&ServiceMessage::CloseConnection {
            connection_id: id.clone(),
            error_message: None,
            headers: Default::default(),
            extensions: Extensions::default(),
        })
        .await?;
    carl.wait_closed(T).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_results_cross_nodes_both_ways_and_a_missing_client_is_answered()
-> anyhow::Result<()> {
    use switchboard::protocol::service::{Extensions, ServiceMessage};
    let engine = LocalEngine::new();
    let (a, b) = two_default_nodes(&engine).await;
    // app1 is connected to a only, app2 to b only; xavier connects at b and is routed to app2.
    let mut app1 = app(&a, "app1").await?;
    let mut app2 = app(&b, "app2").await?;
    let token = client_token(common::TEST_KEY, "chat", Some("xavier"));
    let base = b.base.clone();
    let pending =
        tokio::spawn(async move { TestClient::connect(&base, "chat", &token, "json").await });
    let (id, ..) = app2.accept_client().await?;
    let mut xavier = pending.await??;

    // app1 (at a) asks xavier (at b) for a result.
    app1.send(&ServiceMessage::ClientInvocation {
        invocation_id: "inv-1".into(),
        connection_id: id.clone(),
        caller_server_id: "app1".into(),
        payloads: vec![(
            "json".into(),
            bytes::Bytes::from_static(
                b"{\"type\":1,\"invocationId\":\"inv-1\",\"target\":\"ask\",\"arguments\":[7]}\x1e",
            ),
        )],
        extensions: Extensions::default(),
    })
    .await?;
    let got = xavier.next_message(T).await?;
    assert_eq!(
        (got["target"].clone(), got["invocationId"].clone()),
        (json!("ask"), json!("inv-1")),
        "{got}"
    );
    // Its router, app2, hears of the invocation so that it can send the answer back.
    match app2.next().await? {
        ServiceMessage::ClientInvocation {
            invocation_id,
            caller_server_id,
            ..
        } => {
            assert_eq!(
                (invocation_id.as_str(), caller_server_id.as_str()),
                ("inv-1", "app1")
            );
        }
        other => panic!("expected the forwarded ClientInvocation at app2, got {other:?}"),
    }
    // The answer: app2 completes it for caller app1, which only b's app2 and a's app1 can route.
    app2.send(&ServiceMessage::ClientCompletion {
        invocation_id: "inv-1".into(),
        connection_id: id.clone(),
        caller_server_id: "app1".into(),
        protocol: "json".into(),
        payload: bytes::Bytes::from_static(
            b"{\"type\":3,\"invocationId\":\"inv-1\",\"result\":42}\x1e",
        ),
        extensions: Extensions::default(),
    })
    .await?;
    match app1.next().await? {
        ServiceMessage::ClientCompletion {
            invocation_id,
            payload,
            ..
        } => {
            assert_eq!(invocation_id, "inv-1");
            assert!(String::from_utf8_lossy(&payload).contains("42"));
        }
        other => panic!("expected the ClientCompletion at app1, got {other:?}"),
    }

    // A client no node has: app1 gets the missing-client ErrorCompletion.
    app1.send(&ServiceMessage::ClientInvocation {
        invocation_id: "inv-2".into(),
        connection_id: "nobody".into(),
        caller_server_id: "app1".into(),
        payloads: vec![(
            "json".into(),
            bytes::Bytes::from_static(
                b"{\"type\":1,\"invocationId\":\"inv-2\",\"target\":\"ask\",\"arguments\":[]}\x1e",
            ),
        )],
        extensions: Extensions::default(),
    })
    .await?;
    match app1.next().await? {
        ServiceMessage::ErrorCompletion {
            invocation_id,
            error,
            ..
        } => {
            assert_eq!(invocation_id, "inv-2");
            assert_eq!(
                error.as_deref(),
                Some("The client connection does not exist.")
            );
        }
        other => panic!("expected an ErrorCompletion at app1, got {other:?}"),
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hub_servers_learn_the_instance_of_each_client_and_hear_when_another_node_is_gone()
-> anyhow::Result<()> {
    use switchboard::protocol::service::ServiceMessage;
    let engine = LocalEngine::new();
    let (a, b) = two_default_nodes(&engine).await;
    let mut app = app(&a, "app").await?;
    let token = client_token(common::TEST_KEY, "chat", None);
    let base = a.base.clone();
    let _pending =
        tokio::spawn(async move { TestClient::connect(&base, "chat", &token, "json").await });
    match app.next().await? {
        ServiceMessage::OpenConnection { headers, .. } => {
            let instance = headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("Asrs-Instance-Id"))
                .map(|(_, v)| v.clone());
            assert_eq!(instance, Some(vec!["a".to_owned()]), "{headers:?}");
        }
        other => panic!("expected OpenConnection, got {other:?}"),
    }
    b.handle.stop().await;
    loop {
        match app.next().await? {
            ServiceMessage::Ping { messages }
                if messages.first().map(String::as_str) == Some("offline") =>
            {
                assert_eq!(messages, vec!["offline".to_owned(), "b".to_owned()]);
                break;
            }
            // The client's handshake data and other pings.
            _ => {}
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_without_the_users_connections_does_not_keep_their_memberships_or_the_hub() {
    let engine = LocalEngine::new();
    let mut config = common::config(ServiceMode::Serverless);
    config.limits.hub_idle_timeout_secs = 1;
    let a = node_with(&engine, "a", config.clone()).await;
    let b = node_with(&engine, "b", config).await;
    for n in [&a, &b] {
        wait_for(
            || metric(&n.handle, "switchboard_cluster_nodes") == 1,
            "the nodes see each other",
        )
        .await;
    }
    let v = "api-version=2022-06-01";
    let r = a
        .rest
        .put(&format!("/api/hubs/chat/groups/vip/users/quinn?{v}"))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    // Neither node holds a connection of quinn's: the hub retires on both (the engine keeps
    // the membership) ...
    for n in [&a, &b] {
        wait_for(
            || metric(&n.handle, "switchboard_hubs") == 0,
            "the idle hub retires",
        )
        .await;
    }
    // ... and the membership still reaches quinn's first connection.
    let mut q = client(&b, "chat", Some("quinn"), "json").await;
    let r = a
        .rest
        .post_json(
            &format!("/api/hubs/chat/groups/vip/:send?{v}"),
            &msg("g", json!([1])),
        )
        .await;
    assert_eq!(r.status, 202);
    expect(&mut q, "g", json!([1])).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_at_a_node_without_a_hub_server_is_served_by_another_nodes_connection()
-> anyhow::Result<()> {
    use switchboard::protocol::service::{Extensions, ServiceMessage};
    let engine = LocalEngine::new();
    let (a, b) = two_default_nodes(&engine).await;
    // With no app server anywhere, a client at b is refused as on one node.
    let token = client_token(common::TEST_KEY, "chat", Some("nobody"));
    let refused = TestClient::connect(&b.base, "chat", &token, "json").await;
    assert!(refused.is_err(), "no app server anywhere: refused");

    // app1 is connected to a only; carl connects at b.
    let mut app = app(&a, "app1").await?;
    let token = client_token(common::TEST_KEY, "chat", Some("carl"));
    let base = b.base.clone();
    let pending =
        tokio::spawn(async move { TestClient::connect(&base, "chat", &token, "json").await });
    // The hub server sees the service protocol it sees for a's own clients; the instance header
    // names b.
    let (id, instance) = match app.next().await? {
        ServiceMessage::OpenConnection {
            connection_id,
            headers,
            ..
        } => {
            let instance = headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("Asrs-Instance-Id"))
                .map(|(_, v)| v.clone());
            (connection_id, instance)
        }
        other => panic!("expected OpenConnection, got {other:?}"),
    };
    assert_eq!(instance, Some(vec!["b".to_owned()]));
    let (data_id, handshake) = app.next_data().await?;
    assert_eq!(data_id, id);
    assert!(handshake.ends_with(b"\x1e"), "{handshake:?}");
    app.data(&id, b"{}\x1e").await?;
    let mut carl = pending.await??;
    assert_eq!(carl.connection_id(), id);

    // Client → hub server, and the hub server's answer back, in order.
    let invocation = common::json_invocation(Some("1"), "hello", json!(["from carl"]));
    carl.send_raw(&invocation).await?;
    let (data_id, payload) = app.next_data().await?;
    assert_eq!(data_id, id);
    assert_eq!(payload.as_ref(), invocation.as_slice());
    for i in 0..20 {
        let reply = common::json_invocation(None, "reply", json!([i]));
        app.data(&id, &reply).await?;
    }
    for i in 0..20 {
        expect(&mut carl, "reply", json!([i])).await;
    }
    // Sends of every kind through a's hub server reach carl at b.
    app.send(&ServiceMessage::BroadcastData {
        excluded_list: vec![],
        payloads: payloads("all", json!([1])),
        extensions: Extensions::default(),
    })
    .await?;
    expect(&mut carl, "all", json!([1])).await;
    app.send(&ServiceMessage::JoinGroupWithAck {
        connection_id: id.clone(),
        group_name: "g".into(),
        ack_id: 3,
        extensions: Extensions::default(),
    })
    .await?;
    assert_eq!(app.expect_ack(3).await?, 1, "found on b");
    app.send(&ServiceMessage::GroupBroadcastData {
        group_name: "g".into(),
        excluded_list: vec![],
        payloads: payloads("group", json!([2])),
        excluded_user_list: vec![],
        caller_user_id: None,
        extensions: Extensions::default(),
    })
    .await?;
    expect(&mut carl, "group", json!([2])).await;
    // REST at a reaches carl too.
    marker(&a, "chat", &mut carl).await;

    // The client leaves: the hub server hears it.
    carl.close().await;
    loop {
        match app.next().await? {
            ServiceMessage::CloseConnection { connection_id, .. } if connection_id == id => break,
            ServiceMessage::ConnectionData { .. } => {}
            other => panic!("expected CloseConnection for {id}, got {other:?}"),
        }
    }

    // The hub server goes away: clients routed to it from b are closed as on one node.
    let token = client_token(common::TEST_KEY, "chat", Some("dave"));
    let base = b.base.clone();
    let pending =
        tokio::spawn(async move { TestClient::connect(&base, "chat", &token, "json").await });
    app.accept_client().await?;
    let mut dave = pending.await??;
    drop(app);
    let close = dave.next_close(T).await?;
    assert!(
        close["error"]
            .as_str()
            .is_some_and(|e| e.contains("app server")),
        "{close}"
    );
    // And with it gone, b refuses again.
    let token = client_token(common::TEST_KEY, "chat", Some("erin"));
    assert!(
        TestClient::connect(&b.base, "chat", &token, "json")
            .await
            .is_err()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_routed_to_a_node_that_dies_are_closed_and_a_draining_server_takes_no_new_ones()
-> anyhow::Result<()> {
    use switchboard::protocol::service::ServiceMessage;
    let engine = LocalEngine::new();
    let (a, b) = two_default_nodes(&engine).await;
    let c = node_in(&engine, "c", ServiceMode::Default).await;
    for n in [&a, &b, &c] {
        wait_for(
            || metric(&n.handle, "switchboard_cluster_nodes") == 2,
            "three nodes",
        )
        .await;
    }
    let mut at_a = app(&a, "app").await?;
    let mut at_c = app(&c, "app").await?;
    // c's connection shuts down (the SDK's "servers shutting down" ping): no new client goes
    // there; a's takes them.
    at_c.send(&ServiceMessage::Ping {
        messages: vec!["shutdown".into(), "fin:0".into()],
    })
    .await?;
    loop {
        match at_c.next().await? {
            ServiceMessage::Ping { messages }
                if messages.first().map(String::as_str) == Some("shutdown") =>
            {
                break;
            }
            _ => {}
        }
    }
    let mut routed = Vec::new();
    for user in ["u1", "u2", "u3"] {
        let token = client_token(common::TEST_KEY, "chat", Some(user));
        let base = b.base.clone();
        let pending =
            tokio::spawn(async move { TestClient::connect(&base, "chat", &token, "json").await });
        at_a.accept_client().await?;
        routed.push(pending.await??);
    }
    // a dies: b closes the clients it routed there.
    a.handle.stop().await;
    for client in &mut routed {
        let close = client.next_close(T).await?;
        assert!(close["error"].as_str().is_some(), "{close}");
    }
    drop(at_c);
    Ok(())
}
