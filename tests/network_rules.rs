//! `[network]`: request kinds allowed or denied per client address, answered 403 with a JSON
//! body and counted; `trusted_proxies` deciding whether `X-Forwarded-For` is believed. The
//! official client behind rules that allow only client connections is in
//! `tests/e2e/network.test.mjs`.

mod common;

use std::time::Duration;

use serde_json::Value;
use switchboard::config::{DefaultAction, NetworkConfig, NetworkRule, RequestKind};
use switchboard::telemetry::names;
use switchboard::{ServiceMode, SwitchboardHandle};

use common::TestClient;

const WAIT: Duration = Duration::from_secs(10);

async fn start(network: NetworkConfig) -> (SwitchboardHandle, String, String) {
    let mut config = common::config(ServiceMode::Serverless);
    config.network = network;
    common::start_with(config).await
}

fn rule(cidrs: &[&str], allow: &[RequestKind], deny: &[RequestKind]) -> NetworkRule {
    NetworkRule {
        cidrs: cidrs.iter().map(|c| (*c).to_owned()).collect(),
        allow: allow.to_vec(),
        deny: deny.to_vec(),
    }
}

/// Status and JSON body of a request.
async fn send(request: reqwest::RequestBuilder) -> (u16, Value) {
    let response = tokio::time::timeout(WAIT, request.send())
        .await
        .expect("answered in time")
        .expect("answered");
    let status = response.status().as_u16();
    let body = response.json().await.unwrap_or(Value::Null);
    (status, body)
}

fn assert_refused(answer: &(u16, Value), kind: &str) {
    assert_eq!(answer.0, 403, "{kind}: {}", answer.1);
    assert_eq!(
        answer.1["code"], "Error.Forbidden.NetworkRules",
        "{}",
        answer.1
    );
    let message = answer.1["message"].as_str().unwrap_or("");
    assert!(
        message.contains(kind) && message.contains("127.0.0.1"),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_allowed_kinds_are_served_the_others_get_403_and_are_counted() {
    use RequestKind::*;
    let (handle, base, key) = start(NetworkConfig {
        default_action: DefaultAction::Deny,
        rules: vec![rule(&["127.0.0.0/8", "::1"], &[ClientConnection], &[])],
        ..NetworkConfig::default()
    })
    .await;
    let http = reqwest::Client::new();

    // Client connections: negotiate and the WebSocket.
    let token = common::client_token(&key, "chat", Some("alice"));
    let mut client = TestClient::connect(&base, "chat", &token, "json")
        .await
        .expect("a client connection is allowed");

    // The rest is refused, before authentication.
    let path = "/api/v1/hubs/chat";
    let rest = send(
        http.post(format!("{base}{path}"))
            .bearer_auth(common::rest_token(&key, path))
            .json(&serde_json::json!({ "target": "news", "arguments": [] })),
    )
    .await;
    assert_refused(&rest, "RESTAPI");
    assert_refused(
        &send(http.get(format!("{base}/admin/settings"))).await,
        "Admin",
    );
    assert_refused(&send(http.get(format!("{base}/metrics"))).await, "Metrics");
    assert_refused(
        &send(
            http.get(format!("{base}/server/?hub=chat"))
                .header("connection", "upgrade")
                .header("upgrade", "websocket")
                .header("sec-websocket-version", "13")
                .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
        )
        .await,
        "ServerConnection",
    );
    // Health checks are not governed by the rules.
    assert_eq!(send(http.get(format!("{base}/healthz"))).await.0, 200);
    assert_eq!(send(http.get(format!("{base}/readyz"))).await.0, 200);

    let metrics = handle.metrics();
    assert_eq!(
        metrics.get("switchboard_network_denied_total{kind=\"RESTAPI\"}"),
        Some(1)
    );
    assert_eq!(metrics.get(names::network_denied_admin), Some(1));
    assert_eq!(metrics.get(names::network_denied_metrics), Some(1));
    assert_eq!(metrics.get(names::network_denied_server), Some(1));
    assert_eq!(metrics.get(names::network_denied_client), Some(0));

    // The allowed connection is unharmed: a broadcast through the embedding API reaches it.
    handle
        .hub("chat")
        .unwrap()
        .send_all("news", ("still here",), &[])
        .await
        .unwrap();
    common::expect(&mut client, "news", serde_json::json!(["still here"])).await;
    handle.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_for_decides_only_from_a_trusted_proxy() {
    use RequestKind::*;
    let network = |proxies: &[&str]| NetworkConfig {
        default_action: DefaultAction::Deny,
        rules: vec![rule(&["203.0.113.0/24"], &[RestApi], &[])],
        trusted_proxies: proxies.iter().map(|p| (*p).to_owned()).collect(),
    };
    let http = reqwest::Client::new();
    let path = "/api/v1/hubs/chat";
    let call = |base: &str, key: &str, forwarded: Option<&str>| {
        let mut request = http
            .post(format!("{base}{path}"))
            .bearer_auth(common::rest_token(key, path))
            .json(&serde_json::json!({ "target": "news", "arguments": [] }));
        if let Some(forwarded) = forwarded {
            request = request.header("x-forwarded-for", forwarded);
        }
        request
    };

    // This test's requests come from 127.0.0.1, a trusted proxy here.
    let (handle, base, key) = start(network(&["127.0.0.1/32"])).await;
    assert_eq!(send(call(&base, &key, Some("203.0.113.9"))).await.0, 202);
    // A client cannot slip an allowed address in front of its own.
    let spoofed = send(call(&base, &key, Some("203.0.113.9, 198.51.100.4"))).await;
    assert_eq!(spoofed.0, 403, "{}", spoofed.1);
    assert!(
        spoofed.1["message"]
            .as_str()
            .unwrap_or("")
            .contains("198.51.100.4"),
        "{}",
        spoofed.1
    );
    assert_eq!(send(call(&base, &key, None)).await.0, 403);
    handle.stop().await;

    // Not a trusted proxy: the header is ignored.
    let (handle, base, key) = start(network(&["10.0.0.0/8"])).await;
    let ignored = send(call(&base, &key, Some("203.0.113.9"))).await;
    assert_refused(&ignored, "RESTAPI");
    handle.stop().await;
}

#[test]
fn bad_network_rules_are_refused_at_start_naming_the_key() {
    let mut config = common::config(ServiceMode::Serverless);
    config.access_keys = vec![common::TEST_KEY.to_owned()];
    config.network.rules = vec![rule(
        &["10.0.0.0/8", "10.0.0.1/33"],
        &[RequestKind::Admin],
        &[],
    )];
    let err = switchboard::Switchboard::new(config)
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("invalid configuration: network.rules[0].cidrs[1]: "),
        "{err}"
    );
}
