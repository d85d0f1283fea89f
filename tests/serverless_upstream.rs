//! Serverless mode with an upstream: a real HTTP upstream in the test (the shared fake upstream)
//! receives the connected, message and disconnected events of real WebSocket clients, and its
//! answers become the clients' Completions.

mod common;
#[path = "common/fake_upstream.rs"]
mod fake_upstream;

use std::time::Duration;

use actix_web::HttpResponse;
use anyhow::{Context as _, Result};
use common::{TestClient, client_token, client_token_with, json_invocation, now, sign, start_with};
use fake_upstream::{FakeUpstream, Gate, Recorded, hmac_sha256_hex};
use serde_json::{Value, json};
use switchboard::telemetry::names;
use switchboard::upstream::{UpstreamOptions, UpstreamRule};
use switchboard::{Config, ServiceMode};

const T: Duration = Duration::from_secs(5);

/// The fake upstream's answer, chosen by the hub and the event at the end of the path: `deny`
/// refuses connections, `Add` sums its two arguments, `Void` and `Note` answer 204, `Forbidden`
/// 403, `Slow` 204 after 3 s, `Held` 204 once the test releases it.
async fn answer(r: Recorded, gate: Gate) -> HttpResponse {
    let event = r.path.rsplit('/').next().unwrap_or("").to_owned();
    let hub = r.path.split('/').nth(1).unwrap_or("").to_owned();
    match (hub.as_str(), event.as_str()) {
        ("deny", "connected") => HttpResponse::Unauthorized().finish(),
        (_, "connected") | (_, "disconnected") => HttpResponse::Ok().finish(),
        (_, "Add") => {
            // A JSON client's invocation: answer with a framed Completion carrying the sum.
            let inv: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
            let sum = inv["arguments"][0].as_i64().unwrap_or(0)
                + inv["arguments"][1].as_i64().unwrap_or(0);
            let mut out = serde_json::to_vec(
                &json!({"type": 3, "invocationId": inv["invocationId"], "result": sum}),
            )
            .unwrap();
            out.push(0x1e);
            HttpResponse::Ok()
                .content_type("application/json")
                .body(out)
        }
        (_, "Void") | (_, "Note") => HttpResponse::NoContent().finish(),
        (_, "Forbidden") => HttpResponse::Forbidden().finish(),
        (_, "Held") => {
            gate.wait().await;
            HttpResponse::NoContent().finish()
        }
        (_, "Slow") => {
            tokio::time::sleep(Duration::from_secs(3)).await;
            HttpResponse::NoContent().finish()
        }
        _ => HttpResponse::NotFound().finish(),
    }
}

async fn broker(upstream_base: &str) -> (switchboard::SwitchboardHandle, String, String) {
    start_with(Config {
        mode: ServiceMode::Serverless,
        upstream: vec![UpstreamRule::from_template(&format!(
            "{upstream_base}/{{hub}}/api/{{category}}/{{event}}"
        ))],
        upstream_options: UpstreamOptions {
            timeout_secs: 1,
            ..UpstreamOptions::default()
        },
        ..Config::default()
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_invocations_and_answers() -> Result<()> {
    let up = FakeUpstream::start(answer);
    let (sb, base, key) = broker(&up.base).await;
    let token = client_token_with(&key, "calc", &json!({"nameid": "ann", "role": "admin"}));
    let mut client = TestClient::connect(&base, "calc", &token, "json").await?;
    let id = client.connection_id().to_owned();

    // connected: the upstream headers, signature checked here with the key.
    let connected = up.wait_for("/calc/api/connections/connected").await?;
    assert_eq!(
        connected.header_str("x-asrs-connection-id"),
        Some(id.as_str())
    );
    assert_eq!(connected.header_str("x-asrs-hub"), Some("calc"));
    assert_eq!(connected.header_str("x-asrs-category"), Some("connections"));
    assert_eq!(connected.header_str("x-asrs-event"), Some("connected"));
    assert_eq!(connected.header_str("x-asrs-user-id"), Some("ann"));
    assert_eq!(
        connected.header_str("x-asrs-signature"),
        Some(format!("sha256={}", hmac_sha256_hex(&key, &id)).as_str())
    );
    let claims = connected
        .header_str("x-asrs-user-claims")
        .context("claims")?;
    assert!(
        claims.contains("role: admin") && claims.contains("nameid: ann"),
        "{claims}"
    );
    assert!(
        connected
            .header_str("x-asrs-client-query")
            .context("query")?
            .starts_with("?hub=calc")
    );
    assert_eq!(&connected.body[..], br#"{"type":10}"#);

    // A blocking invocation: the upstream's 200 body is the client's Completion, verbatim.
    client
        .send_raw(&json_invocation(Some("1"), "Add", json!([2, 3])))
        .await?;
    let done = client.next_message(T).await?;
    assert_eq!(done, json!({"type": 3, "invocationId": "1", "result": 5}));
    let add = up.wait_for("/calc/api/messages/Add").await?;
    assert_eq!(add.header_str("content-type"), Some("application/json"));
    let body: Value = serde_json::from_slice(&add.body)?;
    assert_eq!(body["target"], "Add");
    assert_eq!(
        add.body.last(),
        Some(&b'}'),
        "the body is unframed (no 0x1e)"
    );

    // 204 → a void completion; 403 → the Azure error text; a timeout → as 500.
    client
        .send_raw(&json_invocation(Some("2"), "Void", json!([])))
        .await?;
    assert_eq!(
        client.next_message(T).await?,
        json!({"type": 3, "invocationId": "2"})
    );
    client
        .send_raw(&json_invocation(Some("3"), "Forbidden", json!([])))
        .await?;
    assert_eq!(
        client.next_message(T).await?["error"],
        "Invocation failed, status code 403"
    );
    client
        .send_raw(&json_invocation(Some("4"), "Slow", json!([])))
        .await?;
    assert_eq!(
        client.next_message(T).await?["error"],
        "Invocation failed, status code 500"
    );

    // Non-blocking invocations reach the upstream in order and get no answer.
    for i in 0..40 {
        client
            .send_raw(&json_invocation(None, "Note", json!([i])))
            .await?;
    }
    client
        .send_raw(&json_invocation(Some("5"), "Void", json!([])))
        .await?;
    assert_eq!(
        client.next_message(T).await?,
        json!({"type": 3, "invocationId": "5"})
    );
    let notes: Vec<i64> = up
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("/Note"))
        .map(|r| {
            serde_json::from_slice::<Value>(&r.body).unwrap()["arguments"][0]
                .as_i64()
                .unwrap()
        })
        .collect();
    assert_eq!(notes, (0..40).collect::<Vec<_>>());

    // disconnected comes last.
    client.close().await;
    let disconnected = up.wait_for("/calc/api/connections/disconnected").await?;
    assert_eq!(&disconnected.body[..], br#"{"type":11}"#);
    assert_eq!(
        up.requests().last().map(|r| r.path.clone()),
        Some(disconnected.path)
    );
    assert!(sb.metrics().get(names::upstream_calls).unwrap_or(0) >= 46);
    sb.stop().await;
    up.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messagepack_bodies_and_refused_connections() -> Result<()> {
    let up = FakeUpstream::start(answer);
    let (sb, base, key) = broker(&up.base).await;
    let mut client = TestClient::connect(
        &base,
        "calc",
        &client_token(&key, "calc", None),
        "messagepack",
    )
    .await?;
    // [1, {}, "9", "Void", []]
    let body = [
        0x95, 0x01, 0x80, 0xa1, b'9', 0xa4, b'V', b'o', b'i', b'd', 0x90,
    ];
    client.send_raw(&common::frame_msgpack(&body)).await?;
    // A void Completion: [3, {}, "9", 2].
    let done = client.next_message(T).await?;
    assert_eq!(done["raw"], json!([3, {}, "9", 2]), "{done}");
    let void = up.wait_for("/calc/api/messages/Void").await?;
    assert_eq!(
        void.header_str("content-type"),
        Some("application/x-msgpack")
    );
    assert_eq!(
        void.body[0], 0x96,
        "the .NET 6-element Invocation, without the length prefix"
    );
    assert!(
        void.header_str("x-asrs-user-id").is_none(),
        "anonymous: no user id header"
    );

    // The upstream refuses the connected event of hub "deny": the handshake fails.
    let err = TestClient::connect(&base, "deny", &client_token(&key, "deny", None), "json")
        .await
        .err()
        .context("a refused connected event must fail the handshake")?;
    assert!(
        err.to_string()
            .contains("The upstream refused the connection (status code 401)."),
        "{err}"
    );
    assert_eq!(
        sb.metrics().get(names::upstream_refused_connections),
        Some(1)
    );
    sb.stop().await;
    up.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_rules_change_at_runtime() -> Result<()> {
    let up = FakeUpstream::start(answer);
    let (sb, base, key) = start_with(Config {
        mode: ServiceMode::Serverless,
        ..Config::default()
    })
    .await;
    let mut client =
        TestClient::connect(&base, "calc", &client_token(&key, "calc", None), "json").await?;
    client
        .send_raw(&json_invocation(Some("1"), "Add", json!([1, 1])))
        .await?;
    let before = client.next_message(T).await?;
    assert!(
        before["error"]
            .as_str()
            .unwrap_or("")
            .contains("no upstream is configured"),
        "{before}"
    );
    // Add a rule through the admin endpoint; the open connection's next call uses it.
    let template = format!("{}/{{hub}}/api/{{category}}/{{event}}", up.base);
    let r = reqwest::Client::new()
        .patch(format!("{base}/admin/settings"))
        .bearer_auth(sign(
            &key,
            &json!({"aud": "http://127.0.0.1/admin", "exp": now() + 60}),
        ))
        .json(&json!({"upstream": [{"url_template": template}]}))
        .send()
        .await?;
    assert_eq!(r.status(), 200);
    let settings: Value = r.json().await?;
    assert_eq!(settings["upstream"][0]["url_template"], template);
    client
        .send_raw(&json_invocation(Some("2"), "Add", json!([1, 1])))
        .await?;
    assert_eq!(client.next_message(T).await?["result"], 2);
    assert!(up.wait_for("/calc/api/messages/Add").await.is_ok());
    sb.stop().await;
    up.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_upstream_queue_answers_with_an_error_and_is_counted() -> Result<()> {
    let up = FakeUpstream::start(answer);
    let (sb, base, key) = start_with(Config {
        mode: ServiceMode::Serverless,
        upstream: vec![UpstreamRule::from_template(&format!(
            "{}/{{hub}}/api/{{category}}/{{event}}",
            up.base
        ))],
        upstream_options: UpstreamOptions {
            timeout_secs: 5,
            max_queue_per_connection: 2,
            ..UpstreamOptions::default()
        },
        ..Config::default()
    })
    .await;
    let mut client =
        TestClient::connect(&base, "calc", &client_token(&key, "calc", None), "json").await?;
    // One call in flight (held 3 s by the upstream), two waiting; the rest are refused at once.
    let mut burst = Vec::new();
    for i in 0..6 {
        burst.extend_from_slice(&json_invocation(Some(&i.to_string()), "Slow", json!([])));
    }
    client.send_raw(&burst).await?;
    let mut refused = Vec::new();
    let mut answered = Vec::new();
    for _ in 0..6 {
        let m = client.next_message(Duration::from_secs(15)).await?;
        let id = m["invocationId"].as_str().unwrap_or("").to_owned();
        if m.get("error").and_then(Value::as_str)
            == Some(
                "Invocation failed: too many invocations of this connection are waiting for the upstream.",
            )
        {
            refused.push(id);
        } else {
            assert!(m.get("error").is_none(), "{m}");
            answered.push(id);
        }
    }
    assert!(!refused.is_empty(), "some calls must be refused");
    assert!(
        answered.len() >= 2,
        "the queued calls must be answered: {answered:?}"
    );
    assert_eq!(
        sb.metrics().get(names::upstream_queue_full),
        Some(refused.len() as u64)
    );
    sb.stop().await;
    up.stop().await;
    Ok(())
}

/// An invocation target stays one segment of the upstream URL's path: `/`, `?`, `#` and `%` are
/// escaped, and `.` or `..`, which no escape keeps in place, are not sent at all (the client
/// gets an error Completion saying why, counted as rejected); the path never moves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invocation_targets_stay_one_path_segment() -> Result<()> {
    let up = FakeUpstream::start(answer);
    let (sb, base, key) = broker(&up.base).await;
    let mut client =
        TestClient::connect(&base, "calc", &client_token(&key, "calc", None), "json").await?;
    up.wait_for("/calc/api/connections/connected").await?;

    for (i, target) in [".", ".."].into_iter().enumerate() {
        let id = i.to_string();
        client
            .send_raw(&json_invocation(Some(&id), target, json!([])))
            .await?;
        assert_eq!(
            client.next_message(T).await?,
            json!({
                "type": 3,
                "invocationId": id,
                "error": format!(
                    "Invocation failed: the target '{target}' cannot be sent to the upstream: \
                     '.' and '..' cannot be one segment of an upstream URL's path."
                ),
            })
        );
    }
    assert_eq!(sb.metrics().get(names::invocations_rejected), Some(2));

    // Everything else arrives escaped, in the event's own segment (the fake answers 404).
    client
        .send_raw(&json_invocation(Some("2"), "a/../b?c#d%", json!([])))
        .await?;
    assert_eq!(
        client.next_message(T).await?["error"],
        "Invocation failed, status code 404"
    );
    let escaped = up.wait_for("/messages/a%2F..%2Fb%3Fc%23d%25").await?;
    assert_eq!(escaped.path, "/calc/api/messages/a%2F..%2Fb%3Fc%23d%25");
    assert_eq!(escaped.query, "");
    client
        .send_raw(&json_invocation(Some("3"), "Void", json!([])))
        .await?;
    assert_eq!(
        client.next_message(T).await?,
        json!({"type": 3, "invocationId": "3"})
    );
    let paths: Vec<String> = up.requests().into_iter().map(|r| r.path).collect();
    assert_eq!(
        paths,
        [
            "/calc/api/connections/connected",
            "/calc/api/messages/a%2F..%2Fb%3Fc%23d%25",
            "/calc/api/messages/Void",
        ]
    );
    sb.stop().await;
    up.stop().await;
    Ok(())
}

/// The upstream queue is bounded in bytes too: with one large call in flight, the next ones do
/// not fit and are refused at once (counted), though far fewer than the call bound wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_upstream_queue_is_bounded_in_bytes() -> Result<()> {
    let up = FakeUpstream::start(answer);
    let (sb, base, key) = start_with(Config {
        mode: ServiceMode::Serverless,
        upstream: vec![UpstreamRule::from_template(&format!(
            "{}/{{hub}}/api/{{category}}/{{event}}",
            up.base
        ))],
        upstream_options: UpstreamOptions {
            max_queue_bytes_per_connection: 64 * 1024,
            ..UpstreamOptions::default()
        },
        ..Config::default()
    })
    .await;
    let mut client =
        TestClient::connect(&base, "calc", &client_token(&key, "calc", None), "json").await?;
    let big = "x".repeat(40 * 1024);
    // The first fits the empty queue and is held by the upstream; 40 + 40 KiB do not fit 64.
    for id in ["0", "1", "2"] {
        client
            .send_raw(&json_invocation(Some(id), "Held", json!([big])))
            .await?;
    }
    for id in ["1", "2"] {
        assert_eq!(
            client.next_message(T).await?,
            json!({
                "type": 3,
                "invocationId": id,
                "error": "Invocation failed: too many invocations of this connection are waiting for the upstream.",
            })
        );
    }
    assert_eq!(sb.metrics().get(names::upstream_queue_full), Some(2));
    // Once the held call is answered its bytes are free again.
    up.wait_for("/calc/api/messages/Held").await?;
    up.release(1);
    assert_eq!(
        client.next_message(T).await?,
        json!({"type": 3, "invocationId": "0"})
    );
    client
        .send_raw(&json_invocation(Some("3"), "Void", json!([big])))
        .await?;
    assert_eq!(
        client.next_message(T).await?,
        json!({"type": 3, "invocationId": "3"})
    );
    sb.stop().await;
    up.stop().await;
    Ok(())
}
