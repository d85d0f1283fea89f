//! Cluster mode on a real Redis: three `switchboard serve --cluster` processes, each on its own
//! port, clients on two of them and every REST call entering at the third; a node killed with
//! SIGKILL mid-traffic; Redis stopped and started again.
//!
//! Needs `redis-server` (`apt-get install -y redis-server`); the test starts its own on a free
//! port and fails with that hint when it is missing.

mod common;

use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context as _, Result};
use common::redis_server::RedisServer;
use common::{Rest, TestClient, client_token, expect, expect_marker};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt as _, BufReader};

const T: Duration = Duration::from_secs(5);
const V: &str = "api-version=2022-06-01";

struct Node {
    child: tokio::process::Child,
    base: String,
    rest: Rest,
    _dir: TempDir,
}

struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `switchboard serve` in Serverless mode, joined to the cluster on `redis`, with short
/// heartbeats so that a dead node is noticed within a second and a half.
async fn spawn_node(redis: &str, id: &str) -> Result<Node> {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!(
        "switchboard-cluster-{}-{n}-{id}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir)?;
    let config = dir.join("switchboard.toml");
    std::fs::write(
        &config,
        format!(
            "mode = \"serverless\"\nworkers = 1\n[cluster]\nredis_url = \"{redis}\"\nnode_id = \"{id}\"\nheartbeat_interval_ms = 200\nnode_timeout_ms = 1500\nrequest_timeout_ms = 3000\n"
        ),
    )?;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["serve", "--config"])
        .arg(&config)
        .args(["--listen", "127.0.0.1:0", "--access-key", common::TEST_KEY])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()?;
    let stdout = child.stdout.take().context("stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let base = loop {
        let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await??
            .context("the node printed no address")?;
        if let Some(addr) = line.strip_prefix("Listening on ") {
            break addr.to_owned();
        }
    };
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let rest = Rest::new(&base, common::TEST_KEY);
    Ok(Node {
        child,
        base,
        rest,
        _dir: TempDir(dir),
    })
}

async fn metric(node: &Node, name: &str) -> u64 {
    let text = node.rest.get("/metrics").await.text();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no metric {name} at {}", node.base))
}

async fn wait_metric(node: &Node, name: &str, want: u64, limit: Duration) {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let got = metric(node, name).await;
        if got == want {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{name} at {} is {got} after {limit:?}, expected {want}",
            node.base
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn wait_ready(node: &Node, status: u16) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let got = node.rest.get("/readyz").await.status;
        if got == status {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "/readyz at {} answers {got}, expected {status}",
            node.base
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn three_nodes(redis: &RedisServer) -> Result<Vec<Node>> {
    let mut nodes = Vec::new();
    for id in ["node-a", "node-b", "node-c"] {
        nodes.push(spawn_node(&redis.url(), id).await?);
    }
    for n in &nodes {
        wait_metric(n, "switchboard_cluster_nodes", 2, Duration::from_secs(10)).await;
        wait_ready(n, 200).await;
    }
    Ok(nodes)
}

async fn client(node: &Node, user: Option<&str>, protocol: &str) -> TestClient {
    let token = client_token(common::TEST_KEY, "chat", user);
    TestClient::connect(&node.base, "chat", &token, protocol)
        .await
        .expect("client connects")
}

async fn marker(node: &Node, client: &mut TestClient) {
    let id = client.connection_id().to_owned();
    let r = node
        .rest
        .post_json(
            &format!("/api/hubs/chat/connections/{id}/:send?{V}"),
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
async fn three_processes_serve_one_hub_and_survive_a_killed_node() -> Result<()> {
    let redis = RedisServer::start();
    let mut nodes = three_nodes(&redis).await?;
    let mut x = client(&nodes[0], Some("xena"), "json").await;
    let mut y = client(&nodes[1], Some("yuri"), "messagepack").await;
    let (xid, yid) = (x.connection_id().to_owned(), y.connection_id().to_owned());
    let c = &nodes[2];

    c.rest.broadcast("chat", "all", json!(["hi"])).await;
    expect(&mut x, "all", json!(["hi"])).await;
    expect(&mut y, "all", json!(["hi"])).await;

    // A remembered membership written at c, a connection added to a group at c.
    let r = c
        .rest
        .put(&format!("/api/hubs/chat/groups/vip/users/yuri?{V}&ttl=600"))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = c
        .rest
        .put(&format!("/api/hubs/chat/groups/vip/connections/{xid}?{V}"))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = c
        .rest
        .post_json(
            &format!("/api/hubs/chat/groups/vip/:send?{V}"),
            &msg("vip", json!([1])),
        )
        .await;
    assert_eq!(r.status, 202);
    expect(&mut x, "vip", json!([1])).await;
    expect(&mut y, "vip", json!([1])).await;
    assert_eq!(
        c.rest
            .head(&format!("/api/hubs/chat/connections/{yid}?{V}"))
            .await
            .status,
        200
    );
    assert_eq!(
        c.rest
            .head(&format!("/api/hubs/chat/users/xena?{V}"))
            .await
            .status,
        200
    );
    assert_eq!(
        c.rest
            .head(&format!("/api/hubs/chat/groups/vip/users/yuri?{V}"))
            .await
            .status,
        200
    );

    // Node b dies without a word: the others notice within the node timeout, and what enters
    // at c still reaches a.
    nodes[1].child.start_kill()?;
    let _ = nodes[1].child.wait().await;
    y.wait_closed(T)
        .await
        .expect("the killed node's client is cut off");
    for n in [&nodes[0], &nodes[2]] {
        wait_metric(n, "switchboard_cluster_nodes", 1, Duration::from_secs(5)).await;
    }
    let c = &nodes[2];
    assert_eq!(
        c.rest
            .head(&format!("/api/hubs/chat/connections/{yid}?{V}"))
            .await
            .status,
        404
    );
    c.rest.broadcast("chat", "after", json!([2])).await;
    expect(&mut x, "after", json!([2])).await;

    // yuri's membership outlived the node: a new connection of his on a joins vip.
    let mut y2 = client(&nodes[0], Some("yuri"), "json").await;
    let r = c
        .rest
        .post_json(
            &format!("/api/hubs/chat/groups/vip/:send?{V}"),
            &msg("vip", json!([3])),
        )
        .await;
    assert_eq!(r.status, 202);
    expect(&mut x, "vip", json!([3])).await;
    expect(&mut y2, "vip", json!([3])).await;
    marker(c, &mut y2).await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_stopped_turns_nodes_unready_and_restarted_brings_cross_node_delivery_back()
-> Result<()> {
    let mut redis = RedisServer::start();
    let nodes = three_nodes(&redis).await?;
    let mut x = client(&nodes[0], None, "json").await;
    let mut y = client(&nodes[1], None, "messagepack").await;
    let yid = y.connection_id().to_owned();

    redis.stop();
    for n in &nodes {
        wait_ready(n, 503).await;
    }
    // Local delivery goes on; an answer that needs another node is a 503 saying why.
    nodes[0].rest.broadcast("chat", "local", json!([1])).await;
    expect(&mut x, "local", json!([1])).await;
    let r = nodes[0]
        .rest
        .put(&format!("/api/hubs/chat/groups/g/connections/{yid}?{V}"))
        .await;
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.error_code(), Some("Error.ClusterUnavailable"));
    marker(&nodes[1], &mut y).await;

    redis.restart();
    for n in &nodes {
        wait_ready(n, 200).await;
        assert!(metric(n, "switchboard_cluster_engine_lost_total").await >= 1);
    }
    for n in &nodes {
        wait_metric(n, "switchboard_cluster_nodes", 2, Duration::from_secs(10)).await;
    }
    nodes[2].rest.broadcast("chat", "back", json!([2])).await;
    expect(&mut x, "back", json!([2])).await;
    expect(&mut y, "back", json!([2])).await;
    Ok(())
}
