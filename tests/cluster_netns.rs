//! Cluster mode across network namespaces: Redis and two nodes each on its own address of a
//! private network that the test builds (`ip netns` + veth + a bridge in a namespace of its
//! own), the test's clients on yet another address. Nothing here shares 127.0.0.1: a node that
//! published its loopback address, or a Redis URL that only works locally, fails this test.
//!
//! Needs root and `ip` (iproute2), as on the CI machine; fails with how to get them otherwise.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use common::{Rest, TestClient, client_token, expect, expect_marker};
use serde_json::json;
use tokio::io::{AsyncBufReadExt as _, BufReader};

const V: &str = "api-version=2022-06-01";

/// A private network: a bridge in namespace `<p>sw`, hosts in namespaces `<p>h<i>` at
/// 10.213.<net>.<i>/24, and the test process's own leg at 10.213.<net>.100. Torn down on drop.
struct Network {
    prefix: String,
    net: u8,
    hosts: Vec<u8>,
}

fn ip(args: &[&str]) -> Result<()> {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .context("ip (iproute2) not found: install it with `apt-get install -y iproute2`")?;
    if !out.status.success() {
        bail!(
            "`ip {}` failed: {} (the network-namespace test needs root and iproute2)",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

impl Network {
    fn new() -> Result<Self> {
        let pid = std::process::id();
        let net = (pid % 200) as u8 + 20;
        let n = Self {
            prefix: format!("sb{}", pid % 100_000),
            net,
            hosts: Vec::new(),
        };
        let sw = n.switch();
        ip(&["netns", "add", &sw])?;
        ip(&["-n", &sw, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", &sw, "link", "set", "br0", "up"])?;
        // The test's own leg, in the root namespace.
        let (mine, theirs) = (format!("{}t", n.prefix), format!("{}tb", n.prefix));
        ip(&[
            "link", "add", &mine, "type", "veth", "peer", "name", &theirs,
        ])?;
        ip(&["link", "set", &theirs, "netns", &sw])?;
        ip(&["-n", &sw, "link", "set", &theirs, "master", "br0", "up"])?;
        ip(&["addr", "add", &format!("10.213.{net}.100/24"), "dev", &mine])?;
        ip(&["link", "set", &mine, "up"])?;
        Ok(n)
    }

    fn switch(&self) -> String {
        format!("{}sw", self.prefix)
    }

    fn ns(&self, host: u8) -> String {
        format!("{}h{host}", self.prefix)
    }

    fn addr(&self, host: u8) -> String {
        format!("10.213.{}.{host}", self.net)
    }

    /// A host: its namespace with loopback up and one leg on the bridge.
    fn host(&mut self, host: u8) -> Result<String> {
        let ns = self.ns(host);
        let sw = self.switch();
        ip(&["netns", "add", &ns])?;
        self.hosts.push(host);
        let (inner, outer) = (
            format!("{}e{host}", self.prefix),
            format!("{}b{host}", self.prefix),
        );
        ip(&[
            "link", "add", &inner, "type", "veth", "peer", "name", &outer,
        ])?;
        ip(&["link", "set", &inner, "netns", &ns])?;
        ip(&["link", "set", &outer, "netns", &sw])?;
        ip(&["-n", &sw, "link", "set", &outer, "master", "br0", "up"])?;
        ip(&[
            "-n",
            &ns,
            "addr",
            "add",
            &format!("{}/24", self.addr(host)),
            "dev",
            &inner,
        ])?;
        ip(&["-n", &ns, "link", "set", &inner, "up"])?;
        ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        Ok(ns)
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        for h in self.hosts.clone() {
            let _ = ip(&["netns", "del", &self.ns(h)]);
        }
        let _ = ip(&["netns", "del", &self.switch()]);
        let _ = ip(&["link", "del", &format!("{}t", self.prefix)]);
    }
}

/// `redis-server` inside namespace `ns`, listening on `addr:6379`.
fn spawn_redis(ns: &str, addr: &str) -> Result<tokio::process::Child> {
    if Command::new("redis-server")
        .arg("--version")
        .output()
        .is_err()
    {
        bail!(
            "redis-server not found: install it with `apt-get install -y redis-server` (Debian) — the cluster tests need a real Redis"
        );
    }
    let child = tokio::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            ns,
            "redis-server",
            "--bind",
            addr,
            "--port",
            "6379",
        ])
        .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    Ok(child)
}

/// `switchboard serve --cluster` inside namespace `ns`, listening on `addr:8080`.
async fn spawn_node(ns: &str, addr: &str, redis: &str, id: &str) -> Result<tokio::process::Child> {
    let mut child = tokio::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            ns,
            env!("CARGO_BIN_EXE_switchboard"),
            "serve",
        ])
        .args(["--listen", &format!("{addr}:8080"), "--mode", "serverless"])
        .args(["--access-key", common::TEST_KEY, "--workers", "1"])
        .args([
            "--cluster",
            &format!("redis://{redis}:6379"),
            "--node-id",
            id,
        ])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()?;
    let stdout = child.stdout.take().context("stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    loop {
        let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await??
            .context("the node printed no address")?;
        if line.starts_with("Listening on ") {
            break;
        }
    }
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok(child)
}

async fn nodes_seen(rest: &Rest) -> Option<u64> {
    let text = rest.get("/metrics").await.text();
    text.lines()
        .find_map(|l| l.strip_prefix("switchboard_cluster_nodes ")?.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_and_redis_on_separate_hosts_serve_one_hub() -> Result<()> {
    let mut net = Network::new()?;
    let redis_ns = net.host(1)?;
    let ns_a = net.host(2)?;
    let ns_b = net.host(3)?;
    let (redis, a, b) = (net.addr(1), net.addr(2), net.addr(3));
    let _redis = spawn_redis(&redis_ns, &redis)?;
    // Redis may take a moment; the nodes connect lazily and retry.
    let _node_a = spawn_node(&ns_a, &a, &redis, "host-a").await?;
    let _node_b = spawn_node(&ns_b, &b, &redis, "host-b").await?;
    let (base_a, base_b) = (format!("http://{a}:8080"), format!("http://{b}:8080"));
    let (rest_a, rest_b) = (
        Rest::new(&base_a, common::TEST_KEY),
        Rest::new(&base_b, common::TEST_KEY),
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while nodes_seen(&rest_a).await != Some(1) || nodes_seen(&rest_b).await != Some(1) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the nodes at {a} and {b} did not find each other through Redis at {redis}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let token = client_token(common::TEST_KEY, "chat", Some("ana"));
    let mut on_a = TestClient::connect(&base_a, "chat", &token, "json").await?;
    // Negotiated at b, connected at a: the token crosses hosts too.
    let mut crossed =
        TestClient::connect_via(&base_b, &base_a, "chat", &token, "messagepack").await?;
    rest_b.broadcast("chat", "hello", json!(["from b"])).await;
    expect(&mut on_a, "hello", json!(["from b"])).await;
    expect(&mut crossed, "hello", json!(["from b"])).await;
    let r = rest_b
        .put(&format!(
            "/api/hubs/chat/groups/g/connections/{}?{V}",
            on_a.connection_id()
        ))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = rest_b
        .post_json(
            &format!("/api/hubs/chat/groups/g/:send?{V}"),
            &json!({"target": "group", "arguments": [1]}),
        )
        .await;
    assert_eq!(r.status, 202);
    expect(&mut on_a, "group", json!([1])).await;
    let id = crossed.connection_id().to_owned();
    let r = rest_b
        .post_json(
            &format!("/api/hubs/chat/connections/{id}/:send?{V}"),
            &json!({"target": "marker", "arguments": [id]}),
        )
        .await;
    assert_eq!(r.status, 202);
    expect_marker(&mut crossed).await;
    Ok(())
}
