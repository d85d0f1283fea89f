//! Hubs against hostile or careless input, end to end: a `ttl` the clock cannot hold is a 400
//! and the hub keeps working; hub names in any case are one hub; the number of hubs is bounded
//! (429 with Azure's error body); idle hubs stop, are counted and start again on their next use.

mod common;

use std::time::Duration;

use common::{Rest, TestClient, client_token};
use serde_json::json;
use switchboard::ServiceMode;

const T: Duration = Duration::from_secs(5);

fn metric(handle: &switchboard::SwitchboardHandle, name: &str) -> u64 {
    handle
        .metrics()
        .get(name)
        .unwrap_or_else(|| panic!("no metric {name}"))
}

/// Assert a JSON error answer in Azure's shape: status, `x-ms-error-code`, `{"code","message"}`.
fn assert_error(reply: &common::Reply, status: u16, code: &str) {
    assert_eq!(reply.status, status, "{}", reply.text());
    assert_eq!(reply.error_code(), Some(code), "{}", reply.text());
    let body = reply.json();
    assert_eq!(body["code"], json!(code), "{body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
}

async fn client(base: &str, key: &str, hub: &str, user: Option<&str>) -> TestClient {
    TestClient::connect(base, hub, &client_token(key, hub, user), "json")
        .await
        .expect("client connects")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_range_ttls_are_400_and_the_hub_keeps_working() {
    let (handle, base, key) = common::start(ServiceMode::Serverless).await;
    let rest = Rest::new(&base, &key);
    let mut alice = client(&base, &key, "chat", Some("alice")).await;

    for ttl in [
        "18446744073709551615",
        "2147483648",
        "99999999999999999999999",
        "-1",
        "abc",
    ] {
        for path in [
            format!("/api/hubs/chat/users/alice/groups/g?ttl={ttl}"),
            format!("/api/v1/hubs/chat/groups/g/users/alice?ttl={ttl}"),
        ] {
            let r = rest.put(&path).await;
            assert_error(&r, 400, "Error.InvalidRequest");
            assert!(r.text().contains("ttl"), "{}", r.text());
        }
    }
    // The longest ttl Azure's protocol can carry is accepted.
    let r = rest
        .put("/api/hubs/chat/users/alice/groups/g?ttl=2147483647")
        .await;
    assert_eq!(r.status, 200, "{}", r.text());

    // The hub still serves: a group send and a broadcast reach the client.
    let r = rest
        .post_json(
            "/api/hubs/chat/groups/g/:send",
            &json!({"target": "group", "arguments": [1]}),
        )
        .await;
    assert_eq!(r.status, 202);
    assert_eq!(
        alice.expect_invocation("group", T).await.unwrap(),
        json!([1])
    );
    rest.broadcast("chat", "all", json!([2])).await;
    assert_eq!(alice.expect_invocation("all", T).await.unwrap(), json!([2]));

    assert_eq!(metric(&handle, "switchboard_hub_unavailable_total"), 0);
    let text = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains("switchboard_actor_panics_total{actor=\"hub\"} 0\n"),
        "{text}"
    );
    alice.close().await;
    handle.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hub_names_in_any_case_are_one_hub() {
    let (handle, base, key) = common::start(ServiceMode::Serverless).await;
    let rest = Rest::new(&base, &key);
    // A token for `Chat` used on `?hub=Chat`, and one for `chat` on `?hub=chat`.
    let mut upper = client(&base, &key, "Chat", Some("u")).await;
    let mut lower = client(&base, &key, "chat", Some("l")).await;
    // A token minted for one spelling is good for another.
    let mut mixed = TestClient::connect(&base, "CHAT", &client_token(&key, "chat", None), "json")
        .await
        .expect("a token for 'chat' connects to 'CHAT'");

    for (hub, n) in [("chat", 1), ("CHAT", 2), ("Chat", 3)] {
        rest.broadcast(hub, "all", json!([n])).await;
        for c in [&mut upper, &mut lower, &mut mixed] {
            assert_eq!(c.expect_invocation("all", T).await.unwrap(), json!([n]));
        }
    }
    // A group membership made through one spelling applies through another.
    let r = rest.put("/api/hubs/CHAT/users/l/groups/g").await;
    assert_eq!(r.status, 200);
    assert_eq!(
        rest.get("/api/hubs/chat/users/l/groups/g").await.status,
        200
    );
    assert_eq!(handle.hub_names(), ["chat"]);
    for c in [upper, lower, mixed] {
        c.close().await;
    }
    handle.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_hub_beyond_max_hubs_is_429() {
    let mut config = common::config(ServiceMode::Serverless);
    config.limits.max_hubs = 1;
    let (handle, base, key) = common::start_with(config).await;
    let rest = Rest::new(&base, &key);
    let mut a = client(&base, &key, "a", None).await;

    let r = common::negotiate_raw(&base, "b", Some(&client_token(&key, "b", None)), "").await;
    assert_error(&r, 429, "Error.TooManyRequests");
    assert!(r.text().contains("limits.max_hubs"), "{}", r.text());
    let r = rest.put("/api/hubs/b/users/u/groups/g").await;
    assert_error(&r, 429, "Error.TooManyRequests");
    assert_eq!(metric(&handle, "switchboard_hubs_rejected_total"), 2);
    // Sends and checks on a hub that does not run start none and are not refused.
    rest.broadcast("b", "x", json!([])).await;
    assert_eq!(rest.get("/api/hubs/b/users/u/groups/g").await.status, 404);

    // The running hub, in any spelling, is still reachable.
    let r = common::negotiate_raw(&base, "A", Some(&client_token(&key, "A", None)), "").await;
    assert_eq!(r.status, 200, "{}", r.text());
    rest.broadcast("A", "ok", json!([1])).await;
    assert_eq!(a.expect_invocation("ok", T).await.unwrap(), json!([1]));
    assert_eq!(handle.hub_names(), ["a"]);
    a.close().await;
    handle.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_hubs_stop_and_start_again_on_their_next_use() {
    let mut config = common::config(ServiceMode::Serverless);
    config.limits.hub_idle_timeout_secs = 1;
    let (handle, base, key) = common::start_with(config).await;
    let rest = Rest::new(&base, &key);

    // A remembered membership starts the hub; a connection keeps it.
    let r = rest.put("/api/hubs/tmp/users/u/groups/g?ttl=1").await;
    assert_eq!(r.status, 200);
    assert_eq!(handle.hub_names(), ["tmp"]);
    let c = client(&base, &key, "tmp", Some("u")).await;
    c.close().await;

    // Once the membership expired and the client left, the hub stops and is forgotten.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !handle.hub_names().is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the idle hub never stopped: {:?}",
            handle.hub_names()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(metric(&handle, "switchboard_hubs_dropped_idle_total"), 1);

    // Its next use starts it again, and it works.
    let mut c = client(&base, &key, "tmp", Some("u")).await;
    assert_eq!(handle.hub_names(), ["tmp"]);
    rest.broadcast("tmp", "back", json!([1])).await;
    assert_eq!(c.expect_invocation("back", T).await.unwrap(), json!([1]));
    c.close().await;
    handle.stop().await;
}
