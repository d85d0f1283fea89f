//! The admin inventory (`/admin/overview`, `/admin/hubs/...`, `/admin/servers`) and the web
//! console's static files, against a real broker with real clients: who may ask, what the
//! answers hold, and that every list is bounded. The console itself in a browser is
//! `tests/e2e/console.test.mjs`.

mod common;

use std::time::Duration;

use serde_json::{Value, json};
use switchboard::ServiceMode;
use switchboard::protocol::service::ConnectionType;

use common::fake_server::FakeServer;
use common::{TEST_KEY, TestClient, client_token, sign};

const WAIT: Duration = Duration::from_secs(10);

fn admin_token(key: &str) -> String {
    sign(
        key,
        &json!({
            "aud": "http://127.0.0.1/admin",
            "exp": common::now() + 600, "iat": common::now(), "nbf": common::now(),
        }),
    )
}

/// `GET base+path` with `token`: (status, body as JSON or Null).
async fn get(base: &str, path: &str, token: Option<&str>) -> (u16, Value) {
    let mut req = reqwest::Client::new().get(format!("{base}{path}"));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let res = tokio::time::timeout(WAIT, req.send())
        .await
        .expect("answered in time")
        .expect("answered");
    let status = res.status().as_u16();
    let text = res.text().await.unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

async fn get_ok(base: &str, path: &str) -> Value {
    let (status, body) = get(base, path, Some(&admin_token(TEST_KEY))).await;
    assert_eq!(status, 200, "{path}: {body}");
    body
}

/// Poll `path` until `pred` holds on its answer.
async fn wait_for(base: &str, path: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let body = get_ok(base, path).await;
        if pred(&body) {
            return body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{path} never matched: {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_admin_endpoint_refuses_a_missing_or_wrong_token() {
    let (handle, base, key) = common::start(ServiceMode::Serverless).await;
    let _client = TestClient::connect(&base, "chat", &client_token(&key, "chat", None), "json")
        .await
        .unwrap();
    let wrong_key = admin_token("another-key-that-is-long-enough-0123456789");
    let client_audience = client_token(&key, "chat", None);
    for path in [
        "/admin/overview",
        "/admin/hubs",
        "/admin/hubs/chat/connections",
        "/admin/hubs/chat/groups",
        "/admin/hubs/chat/users",
        "/admin/hubs/chat/servers",
        "/admin/servers",
    ] {
        for (what, token) in [
            ("no token", None),
            ("a token of another key", Some(wrong_key.as_str())),
            ("a client token", Some(client_audience.as_str())),
        ] {
            let (status, body) = get(&base, path, token).await;
            assert_eq!(status, 401, "{path} with {what}: {body}");
            assert!(body.get("value").is_none(), "{path} with {what}: {body}");
        }
        let (status, body) = get(&base, path, Some(&admin_token(&key))).await;
        assert_eq!(status, 200, "{path}: {body}");
    }
    handle.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_an_admin_key_only_it_opens_the_inventory() {
    let admin_key = "a-separate-admin-key-for-the-admin-plane-0123";
    let mut config = common::config(ServiceMode::Serverless);
    config.admin_key = Some(admin_key.to_owned());
    let (handle, base, key) = common::start_with(config).await;
    let (status, body) = get(&base, "/admin/overview", Some(&admin_token(&key))).await;
    assert_eq!(status, 401, "an access key no longer opens /admin");
    assert_eq!(
        body["message"],
        "Unauthorized: the token is not signed with this broker's admin key."
    );
    let (status, body) = get(&base, "/admin/overview", Some(&admin_token(admin_key))).await;
    assert_eq!(status, 200, "{body}");
    handle.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_inventory_shows_real_clients_with_transport_user_and_groups() {
    let (handle, base, key) = common::start(ServiceMode::Serverless).await;
    let alice = TestClient::connect(
        &base,
        "chat",
        &client_token(&key, "chat", Some("alice")),
        "json",
    )
    .await
    .unwrap();
    let bob = TestClient::connect(
        &base,
        "chat",
        &client_token(&key, "chat", Some("bob")),
        "messagepack",
    )
    .await
    .unwrap();
    let _anon = TestClient::connect(&base, "news", &client_token(&key, "news", None), "json")
        .await
        .unwrap();
    let rest = common::Rest::new(&base, &key);
    let put = rest
        .put(&format!(
            "/api/hubs/chat/groups/vip/connections/{}?api-version=2022-06-01",
            alice.connection_id()
        ))
        .await;
    assert_eq!(put.status, 200, "{}", put.text());

    let overview = wait_for(&base, "/admin/overview", |o| o["clients"]["total"] == 3).await;
    assert_eq!(overview["mode"], "serverless");
    assert_eq!(overview["clients"]["webSockets"], 3, "{overview}");
    assert_eq!(overview["clients"]["longPolling"], 0, "{overview}");
    assert_eq!(overview["hubs"], 2, "{overview}");
    assert_eq!(overview["cluster"], false);
    assert_eq!(overview["version"], env!("CARGO_PKG_VERSION"));
    assert!(
        overview["counters"]["messagesReceived"].is_u64(),
        "{overview}"
    );

    let hubs = get_ok(&base, "/admin/hubs").await;
    assert_eq!(hubs["total"], 2);
    assert_eq!(
        hubs["value"],
        json!([{ "name": "chat", "clients": 2 }, { "name": "news", "clients": 1 }])
    );

    let conns = get_ok(&base, "/admin/hubs/chat/connections").await;
    assert_eq!(conns["total"], 2, "{conns}");
    let find = |id: &str| {
        conns["value"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["connectionId"] == id)
            .cloned()
            .unwrap_or_else(|| panic!("{id} listed in {conns}"))
    };
    let a = find(alice.connection_id());
    assert_eq!(a["transport"], "WebSockets");
    assert_eq!(a["protocol"], "json");
    assert_eq!(a["userId"], "alice");
    assert_eq!(a["groups"], json!(["vip"]));
    assert_eq!(a["server"], Value::Null, "serverless: no hub server");
    let since = a["connectedAt"].as_u64().unwrap();
    assert!(since.abs_diff(common::now() * 1000) < 60_000, "{a}");
    let b = find(bob.connection_id());
    assert_eq!(b["protocol"], "messagepack");
    assert_eq!(b["groups"], json!([]));

    let vip = get_ok(&base, "/admin/hubs/chat/connections?group=vip").await;
    assert_eq!(vip["total"], 1);
    assert_eq!(vip["value"][0]["connectionId"], alice.connection_id());
    let bobs = get_ok(&base, "/admin/hubs/chat/connections?user=bob").await;
    assert_eq!(bobs["value"][0]["connectionId"], bob.connection_id());

    let groups = get_ok(&base, "/admin/hubs/chat/groups").await;
    assert_eq!(
        groups["value"],
        json!([{ "name": "vip", "connections": 1 }])
    );
    let users = get_ok(&base, "/admin/hubs/chat/users").await;
    assert_eq!(
        users["value"],
        json!([{ "userId": "alice", "connections": 1 }, { "userId": "bob", "connections": 1 }])
    );
    let (status, _) = get(
        &base,
        "/admin/hubs/nope/connections",
        Some(&admin_token(&key)),
    )
    .await;
    assert_eq!(status, 404);

    // A client that leaves leaves the inventory.
    bob.close().await;
    wait_for(&base, "/admin/overview", |o| o["clients"]["total"] == 2).await;
    handle.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_are_paged_in_id_order_with_a_total() {
    let (handle, base, key) = common::start(ServiceMode::Serverless).await;
    let mut clients = Vec::new();
    for i in 0..7 {
        let token = client_token(&key, "chat", Some(&format!("user{i}")));
        clients.push(
            TestClient::connect(&base, "chat", &token, "json")
                .await
                .unwrap(),
        );
    }
    let mut expected: Vec<String> = clients
        .iter()
        .map(|c| c.connection_id().to_owned())
        .collect();
    expected.sort();

    let mut seen = Vec::new();
    let mut path = "/admin/hubs/chat/connections?limit=3".to_owned();
    let mut pages = 0;
    loop {
        let page = get_ok(&base, &path).await;
        pages += 1;
        assert!(pages <= 3, "7 connections in pages of 3: {page}");
        assert_eq!(page["total"], 7, "{page}");
        let items = page["value"].as_array().unwrap();
        assert!(items.len() <= 3, "{page}");
        seen.extend(
            items
                .iter()
                .map(|c| c["connectionId"].as_str().unwrap().to_owned()),
        );
        match page["next"].as_str() {
            Some(next) => {
                path = format!("/admin/hubs/chat/connections?limit=3&after={next}");
            }
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, expected, "every connection once, in id order");

    let users = get_ok(&base, "/admin/hubs/chat/users?limit=5").await;
    assert_eq!(users["value"].as_array().unwrap().len(), 5);
    assert_eq!(users["total"], 7);
    assert_eq!(users["next"], "user4");

    let token = sign(
        &key,
        &json!({"aud": "http://127.0.0.1/admin", "exp": common::now() + 60}),
    );
    for bad in ["limit=0", "limit=501", "limit=x"] {
        let (status, body) = get(
            &base,
            &format!("/admin/hubs/chat/connections?{bad}"),
            Some(&token),
        )
        .await;
        assert_eq!(status, 400, "{bad}: {body}");
    }
    handle.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hub_server_connections_and_the_clients_routed_to_them() {
    let (handle, base, key) = common::start(ServiceMode::Default).await;
    let mut server = FakeServer::connect(&base, &key, "chat", "app-1", ConnectionType::Default)
        .await
        .unwrap();
    let _weak = FakeServer::connect(&base, &key, "chat", "app-2", ConnectionType::Weak)
        .await
        .unwrap();
    let token = client_token(&key, "chat", Some("carol"));
    let connecting = tokio::spawn({
        let base = base.clone();
        async move { TestClient::connect(&base, "chat", &token, "json").await }
    });
    server.accept_client().await.unwrap();
    let client = connecting.await.unwrap().unwrap();

    let servers = wait_for(&base, "/admin/servers", |s| s["total"] == 2).await;
    let app1 = servers["value"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["serverId"] == "app-1")
        .cloned()
        .unwrap_or_else(|| panic!("app-1 in {servers}"));
    assert_eq!(app1["hub"], "chat");
    assert_eq!(app1["clients"], 1, "{servers}");
    assert_eq!(app1["connectionType"], "Default");
    let hub_servers = get_ok(&base, "/admin/hubs/chat/servers").await;
    assert_eq!(hub_servers["total"], 2);

    let conns = get_ok(&base, "/admin/hubs/chat/connections").await;
    let c = &conns["value"][0];
    assert_eq!(c["connectionId"], client.connection_id());
    assert_eq!(c["server"]["serverId"], "app-1", "{conns}");
    assert_eq!(c["server"]["connection"], app1["connection"]);

    let overview = get_ok(&base, "/admin/overview").await;
    assert_eq!(overview["serverConnections"], 2, "{overview}");
    handle.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_is_served_without_a_token_under_a_strict_policy() {
    let (handle, base, _key) = common::start(ServiceMode::Serverless).await;
    let http = reqwest::Client::new();
    for (path, content_type, marker) in [
        ("/admin/console", "text/html", "console.js"),
        ("/admin/console/", "text/html", "console.js"),
        (
            "/admin/console/console.js",
            "text/javascript",
            "textContent",
        ),
        ("/admin/console/console.css", "text/css", "@media"),
    ] {
        let res = http.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(res.status().as_u16(), 200, "{path}");
        let headers = res.headers().clone();
        let ct = headers["content-type"].to_str().unwrap();
        assert!(ct.starts_with(content_type), "{path}: {ct}");
        let csp = headers["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("script-src 'self'"), "{csp}");
        assert!(!csp.contains("unsafe-inline"), "{csp}");
        let body = res.text().await.unwrap();
        assert!(body.contains(marker), "{path} holds {marker}");
    }
    let res = http
        .get(format!("{base}/admin/console/../settings"))
        .send()
        .await
        .unwrap();
    assert_ne!(res.status().as_u16(), 200);
    let res = http
        .get(format!("{base}/admin/console/secret.txt"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 404);
    handle.stop().await;
}
