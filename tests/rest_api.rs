//! The data-plane REST API end to end: status codes, error codes and bodies of every endpoint
//! family, and real deliveries to JSON and MessagePack WebSocket clients.
//!
//! Absence of a delivery is never shown by waiting: a later marker is sent to the same client
//! and must be the next message it receives.

mod common;

use std::time::Duration;

use common::{Rest, TestClient, client_token, now, rest_token, sign, token_claims};
use reqwest::Method;
use serde_json::{Value, json};
use switchboard::ServiceMode;

const T: Duration = Duration::from_secs(5);

fn metric(handle: &switchboard::SwitchboardHandle, name: &str) -> u64 {
    handle
        .metrics()
        .get(name)
        .unwrap_or_else(|| panic!("no metric {name}"))
}

/// Assert a JSON error answer: status, `x-ms-error-code`, and the same code in the body.
fn assert_error(reply: &common::Reply, status: u16, code: &str) {
    assert_eq!(
        reply.status,
        status,
        "status of {reply:?} / {}",
        reply.text()
    );
    assert_eq!(
        reply.error_code(),
        Some(code),
        "x-ms-error-code of {}",
        reply.text()
    );
    assert!(
        reply
            .content_type()
            .is_some_and(|c| c.starts_with("application/json")),
        "content type of {reply:?}"
    );
    let body = reply.json();
    assert_eq!(body["code"], json!(code), "{body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
}

/// Assert a HEAD 404: status, code header, no body.
fn assert_head_missing(reply: &common::Reply, code: &str) {
    assert_eq!(reply.status, 404, "{reply:?}");
    assert_eq!(reply.error_code(), Some(code), "{reply:?}");
    assert!(reply.body.is_empty(), "HEAD answer with a body: {reply:?}");
}

fn msg(target: &str, args: Value) -> Value {
    json!({ "target": target, "arguments": args })
}

async fn json_client(base: &str, key: &str, hub: &str, user: Option<&str>) -> TestClient {
    TestClient::connect(base, hub, &client_token(key, hub, user), "json")
        .await
        .expect("JSON client connects")
}

async fn msgpack_client(base: &str, key: &str, hub: &str, user: Option<&str>) -> TestClient {
    TestClient::connect(base, hub, &client_token(key, hub, user), "messagepack")
        .await
        .expect("MessagePack client connects")
}

/// Send a marker to `client` by connection id and assert it is the next message it gets:
/// proof that nothing else was queued for it before.
async fn assert_nothing_before_marker(rest: &Rest, hub: &str, client: &mut TestClient) {
    let id = client.connection_id().to_owned();
    let r = rest
        .post_json(
            &format!("/api/hubs/{hub}/connections/{id}/:send"),
            &msg("marker", json!([id])),
        )
        .await;
    assert_eq!(r.status, 202);
    let next = client.next_message(T).await.expect("marker arrives");
    assert_eq!(next["type"], json!(1), "{next}");
    assert_eq!(
        next["target"],
        json!("marker"),
        "expected only the marker, got {next}"
    );
    assert_eq!(next["arguments"], json!([id]));
}

// ---------------------------------------------------------------------------------------------
// Health, routing, auth

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_needs_no_token() {
    let (handle, base, key) = common::start(ServiceMode::Default).await;
    let rest = Rest::new(&base, &key);
    for path in [
        "/api/health?api-version=2022-06-01",
        "/api/v1/health",
        "/api/health",
    ] {
        for method in [Method::HEAD, Method::GET] {
            let r = rest.call_with_token(method.clone(), path, None, None).await;
            assert_eq!(r.status, 200, "{method} {path}");
        }
    }
    handle.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_routes_and_methods_answer_json() {
    let (handle, base, key) = common::start(ServiceMode::Default).await;
    let rest = Rest::new(&base, &key);
    let r = rest
        .post_json("/api/hubs/chat/:bogus", &msg("m", json!([])))
        .await;
    assert_error(&r, 404, "Error.NotFound");
    let r = rest.get("/api/hubs/chat/:send").await;
    assert_error(&r, 405, "Error.MethodNotAllowed");
    let r = rest.put("/api/hubs/chat/users/u1").await;
    assert_error(&r, 405, "Error.MethodNotAllowed");
    handle.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tokens_are_401() {
    let (handle, base, key) = common::start(ServiceMode::Default).await;
    let rest = Rest::new(&base, &key);
    let path = "/api/hubs/chat/:send";
    let body = Some((
        "application/json",
        msg("m", json!([])).to_string().into_bytes(),
    ));
    let failures_before = metric(&handle, "switchboard_auth_failures_total");
    let errors_before = metric(&handle, "switchboard_rest_errors_total");

    let n = now();
    let forged = sign(
        "not-the-key",
        &json!({ "aud": format!("http://127.0.0.1{path}"), "exp": n + 3600, "iat": n }),
    );
    let expired = sign(
        &key,
        &json!({ "aud": format!("http://127.0.0.1{path}"), "exp": n - 3600, "iat": n - 7200 }),
    );
    let client_aud = client_token(&key, "chat", Some("u"));
    let other_path = rest_token(&key, "/api/hubs/other/:send");
    let cases: [(&str, Option<&str>); 6] = [
        ("none", None),
        ("garbage", Some("not.a.jwt")),
        ("forged", Some(&forged)),
        ("expired", Some(&expired)),
        ("client audience", Some(&client_aud)),
        ("other path", Some(&other_path)),
    ];
    for (what, token) in cases {
        let r = rest
            .call_with_token(Method::POST, path, token, body.clone())
            .await;
        assert_eq!(r.status, 401, "{what}: {}", r.text());
        assert_error(&r, 401, "Error.Unauthorized");
        if what == "forged" {
            assert_eq!(
                r.json()["message"],
                "Unauthorized: the token is not signed with any of this broker's access keys."
            );
        }
    }
    // A token in the query is not accepted for REST.
    let token = rest_token(&key, path);
    let r = rest
        .call_with_token(
            Method::POST,
            &format!("{path}?access_token={token}"),
            None,
            body.clone(),
        )
        .await;
    assert_error(&r, 401, "Error.Unauthorized");
    // HEAD refusals have no body but the code header.
    let r = rest
        .call_with_token(Method::HEAD, "/api/hubs/chat/users/u", None, None)
        .await;
    assert_eq!(r.status, 401);
    assert_eq!(r.error_code(), Some("Error.Unauthorized"));
    assert!(r.body.is_empty());

    assert!(metric(&handle, "switchboard_auth_failures_total") >= failures_before + 8);
    assert!(metric(&handle, "switchboard_rest_errors_total") >= errors_before + 8);

    // The SDK's audience: the full URL with application and api-version in the query.
    let q = "?application=app&api-version=2022-06-01";
    let sdk = rest_token(&key, &format!("{path}{q}"));
    let r = rest
        .call_with_token(
            Method::POST,
            &format!("{path}{q}"),
            Some(&sdk),
            body.clone(),
        )
        .await;
    assert_eq!(r.status, 202, "{}", r.text());
    // A v1 token: the URL without the query.
    let r = rest
        .call(Method::POST, "/api/v1/hubs/chat?excluded=a", body)
        .await;
    assert_eq!(r.status, 202, "{}", r.text());
    handle.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_are_counted() {
    let (handle, base, key) = common::start(ServiceMode::Default).await;
    let rest = Rest::new(&base, &key);
    let requests = metric(&handle, "switchboard_rest_requests_total");
    let errors = metric(&handle, "switchboard_rest_errors_total");
    assert_eq!(
        rest.post_json("/api/hubs/chat/:send", &msg("m", json!([])))
            .await
            .status,
        202
    );
    assert_eq!(rest.head("/api/hubs/chat/users/nobody").await.status, 404);
    assert_eq!(
        rest.post_json("/api/hubs/1chat/:send", &msg("m", json!([])))
            .await
            .status,
        400
    );
    assert_eq!(
        metric(&handle, "switchboard_rest_requests_total"),
        requests + 3
    );
    assert_eq!(metric(&handle, "switchboard_rest_errors_total"), errors + 2);
    handle.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsupported_operations_are_501() {
    let (handle, base, key) = common::start(ServiceMode::Default).await;
    let rest = Rest::new(&base, &key);
    for path in [
        "/api/hubs/chat/:execute?api-version=2024-12-01",
        "/api/hubs/chat/connections/c1/:invoke?api-version=2024-12-01",
        "/api/hubs/chat/connections/c1/streams/s1/:send",
        "/api/hubs/chat/connections/c1/streams/s1/:complete",
    ] {
        let r = rest.post_json(path, &json!([])).await;
        assert_error(&r, 501, "Error.NotImplemented");
        assert!(
            r.json()["message"]
                .as_str()
                .unwrap()
                .contains("not supported"),
            "{}",
            r.text()
        );
    }
    let r = rest.get("/api/auth/accessKey?api-version=2022-06-01").await;
    assert_error(&r, 501, "Error.NotImplemented");
    // Still authenticated first.
    let r = rest
        .call_with_token(Method::POST, "/api/hubs/chat/:execute", None, None)
        .await;
    assert_eq!(r.status, 401);
    handle.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Validation and bodies

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_names_are_400() {
    let (handle, base, key) = common::start(ServiceMode::Default).await;
    let rest = Rest::new(&base, &key);
    let long_user = "u".repeat(1025);
    let long_group = "g".repeat(1025);
    let sends = [
        "/api/hubs/1chat/:send".to_owned(),
        "/api/hubs/chat-room/:send".to_owned(),
        "/api/hubs/chat/:send?application=my-app".to_owned(),
        "/api/hubs/chat/:send?application=9app".to_owned(),
        "/api/hubs/chat/groups/%20%20/:send".to_owned(),
        format!("/api/hubs/chat/groups/{long_group}/:send"),
        format!("/api/hubs/chat/users/{long_user}/:send"),
        "/api/hubs/chat/connections//:send".to_owned(),
        "/api/v1/hubs/1chat".to_owned(),
    ];
    for path in &sends {
        let r = rest.post_json(path, &msg("m", json!([]))).await;
        assert_error(&r, 400, "Error.InvalidRequest");
    }
    for (method, path) in [
        (Method::PUT, "/api/hubs/chat/groups/%20/connections/c1"),
        (Method::PUT, "/api/hubs/chat/users/u1/groups/%09"),
        (Method::GET, "/api/hubs/chat/groups/%20/connections"),
        (Method::DELETE, "/api/hubs/chat/connections//groups"),
        (Method::POST, "/api/hubs/_chat/:generateToken"),
    ] {
        let r = rest.call(method.clone(), path, None).await;
        assert_error(&r, 400, "Error.InvalidRequest");
    }
    handle.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_bodies_are_checked() {
    let (handle, base, key) = common::start(ServiceMode::Default).await;
    let rest = Rest::new(&base, &key);
    let path = "/api/hubs/chat/:send";
    let post = |ct: &'static str, body: Vec<u8>| {
        let rest = rest.clone();
        async move { rest.call(Method::POST, path, Some((ct, body))).await }
    };

    // Accepted shapes.
    for (ct, body) in [
        ("application/json", r#"{"target":"m","arguments":[1,"a"]}"#),
        (
            "application/json; charset=utf-8",
            r#"{"Target":"m","Arguments":[{"x":[1,2]}]}"#,
        ),
        ("application/json", r#"{"TARGET":"m"}"#),
        (
            "application/json",
            r#"{"target":"m","arguments":null,"extra":true}"#,
        ),
        ("", r#"{"target":"m","arguments":[]}"#),
    ] {
        let r = post(ct, body.as_bytes().to_vec()).await;
        assert_eq!(r.status, 202, "{ct} {body}: {}", r.text());
        assert!(r.body.is_empty());
    }

    // Refused shapes: 400 with a message naming the problem.
    for (body, needle) in [
        ("", "empty"),
        ("{", "valid"),
        ("[1,2]", "valid"),
        (r#"{"arguments":[]}"#, "target"),
        (r#"{"target":""}"#, "target"),
        (r#"{"target":null}"#, "target"),
        (r#"{"target":42}"#, "target"),
        (r#"{"target":"m","arguments":{"a":1}}"#, "arguments"),
        (r#"{"target":"m","arguments":"x"}"#, "arguments"),
    ] {
        let r = post("application/json", body.as_bytes().to_vec()).await;
        assert_error(&r, 400, "Error.InvalidRequest");
        let message = r.json()["message"].as_str().unwrap().to_owned();
        assert!(message.contains(needle), "{body}: {message}");
    }

    // Unsupported media types.
    for ct in [
        "text/plain",
        "application/x-www-form-urlencoded",
        "application/xml",
    ] {
        let r = post(ct, br#"{"target":"m"}"#.to_vec()).await;
        assert_error(&r, 415, "Error.UnsupportedMediaType");
    }

    // Too large: the default limit is 1 MB.
    let mut big = br#"{"target":"m","arguments":[""#.to_vec();
    big.extend(std::iter::repeat_n(b'x', 1024 * 1024));
    big.extend_from_slice(br#""]}"#);
    let r = post("application/json", big).await;
    assert_error(&r, 413, "Error.PayloadTooLarge");

    // MessagePack payload maps: malformed ones are 400.
    let json_payload = br#"{"type":1,"target":"m","arguments":[1]}"#.to_vec();
    let mut json_framed = json_payload.clone();
    json_framed.push(0x1e);
    for body in [
        vec![0xc1],       // never-used byte
        vec![0x91, 0x01], // an array, not a map
        vec![0x80],       // no payload at all
        common::msgpack_bytes(&rmpv::Value::Map(vec![(
            "json".into(),
            rmpv::Value::String(String::from_utf8(json_framed.clone()).unwrap().into()),
        )])), // a str, not a bin
        common::msgpack_bytes(&rmpv::Value::Map(vec![(
            "json".into(),
            rmpv::Value::Binary(json_payload.clone()),
        )])), // no record separator
        common::msgpack_bytes(&rmpv::Value::Map(vec![(
            "messagepack".into(),
            rmpv::Value::Binary(vec![0x05, 0x01, 0x02]),
        )])), // truncated frame
    ] {
        let r = post("application/octet-stream", body.clone()).await;
        assert_error(&r, 400, "Error.InvalidRequest");
    }
    let good = common::msgpack_bytes(&rmpv::Value::Map(vec![(
        "JSON".into(),
        rmpv::Value::Binary(json_framed),
    )]));
    for ct in ["application/octet-stream", "application/x-msgpack"] {
        let r = post(ct, good.clone()).await;
        assert_eq!(r.status, 202, "{ct}: {}", r.text());
    }
    handle.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_body_with_smaller_limit_and_stats() {
    let mut config = switchboard::Config {
        mode: ServiceMode::Serverless,
        ..switchboard::Config::default()
    };
    config.limits.max_rest_body_size = 100;
    let (handle, base, key) = common::start_with(config).await;
    let rest = Rest::new(&base, &key);
    let ok = msg("m", json!(["a".repeat(40)]));
    assert_eq!(
        rest.post_json("/api/hubs/chat/:send", &ok).await.status,
        202
    );
    let big = msg("m", json!(["a".repeat(100)]));
    let r = rest.post_json("/api/hubs/chat/:send", &big).await;
    assert_error(&r, 413, "Error.PayloadTooLarge");
    // The connection is still usable afterwards for a new request.
    assert_eq!(
        rest.post_json("/api/hubs/chat/:send", &ok).await.status,
        202
    );
    handle.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Status codes without clients

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sends_to_an_unused_hub_are_accepted_and_create_nothing() {
    let (handle, base, key) = common::start(ServiceMode::Serverless).await;
    let rest = Rest::new(&base, &key);
    let m = msg("m", json!([1]));
    for path in [
        "/api/hubs/ghost/:send?excluded=a&excluded=b",
        "/api/hubs/ghost/users/u1/:send",
        "/api/hubs/ghost/groups/g1/:send",
        "/api/hubs/ghost/connections/c1/:send",
        "/api/v1/hubs/ghost",
        "/api/v1/hubs/ghost/users/u1",
        "/api/v1/hubs/ghost/groups/g1",
        "/api/v1/hubs/ghost/connections/c1",
    ] {
        let r = rest.post_json(path, &m).await;
        assert_eq!(r.status, 202, "{path}: {}", r.text());
        assert!(r.body.is_empty());
    }
    for path in [
        "/api/hubs/ghost/connections/c1",
        "/api/hubs/ghost/users/u1",
        "/api/hubs/ghost/groups/g1",
    ] {
        assert_eq!(rest.head(path).await.status, 404);
    }
    assert_eq!(
        rest.post_empty("/api/hubs/ghost/:closeConnections")
            .await
            .status,
        204
    );
    assert!(
        !handle.hub_names().iter().any(|h| h == "ghost"),
        "a send or check created the hub"
    );
    handle.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_found_answers_carry_the_sdk_codes() {
    let (handle, base, key) = common::start(ServiceMode::Serverless).await;
    let rest = Rest::new(&base, &key);

    let r = rest
        .head("/api/hubs/chat/connections/nope?api-version=2022-06-01")
        .await;
    assert_head_missing(&r, "Warning.Connection.NotExisted");
    let r = rest.head("/api/hubs/chat/users/nobody").await;
    assert_head_missing(&r, "Warning.User.NotExisted");
    let r = rest.head("/api/hubs/chat/groups/empty").await;
    assert_head_missing(&r, "Warning.Group.NotExisted");
    let r = rest.head("/api/hubs/chat/users/nobody/groups/empty").await;
    assert_head_missing(&r, "Info.User.NotInGroup");

    // GET (the SDK's user-in-group check, and v1) answers with a JSON body.
    let r = rest.get("/api/hubs/chat/users/nobody/groups/empty").await;
    assert_error(&r, 404, "Info.User.NotInGroup");
    let r = rest
        .get("/api/v1/hubs/chat/groups/empty/users/nobody")
        .await;
    assert_error(&r, 404, "Info.User.NotInGroup");
    let r = rest.get("/api/v1/hubs/chat/connections/nope").await;
    assert_error(&r, 404, "Warning.Connection.NotExisted");
    let r = rest.get("/api/v1/hubs/chat/users/nobody").await;
    assert_error(&r, 404, "Warning.User.NotExisted");
    let r = rest.get("/api/v1/hubs/chat/groups/empty").await;
    assert_error(&r, 404, "Warning.Group.NotExisted");

    // Connection-group management of a missing connection.
    for path in [
        "/api/hubs/chat/groups/g/connections/nope",
        "/api/v1/hubs/chat/groups/g/connections/nope",
        "/api/v1/hubs/chat/connections/nope/groups/g",
    ] {
        let r = rest.put(path).await;
        assert_error(&r, 404, "Error.Connection.NotExisted");
        let r = rest.delete(path).await;
        assert_error(&r, 404, "Error.Connection.NotExisted");
    }
    // Closing a missing connection: new API 404, v1 202.
    let r = rest
        .delete("/api/hubs/chat/connections/nope?reason=bye")
        .await;
    assert_error(&r, 404, "Warning.Connection.NotExisted");
    let r = rest
        .delete("/api/v1/hubs/chat/connections/nope?reason=bye")
        .await;
    assert_eq!(r.status, 202);
    // Leaving all groups is idempotent.
    assert_eq!(
        rest.delete("/api/hubs/chat/connections/nope/groups")
            .await
            .status,
        200
    );
    handle.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn management_status_codes_per_family() {
    let (handle, base, key) = common::start(ServiceMode::Serverless).await;
    let rest = Rest::new(&base, &key);

    for path in [
        "/api/hubs/chat/:closeConnections?excluded=a&reason=r",
        "/api/hubs/chat/users/u1/:closeConnections",
        "/api/hubs/chat/groups/g1/:closeConnections?excluded=a&excluded=b",
        "/api/v1/hubs/chat/:closeConnections",
    ] {
        let r = rest.post_empty(path).await;
        assert_eq!(r.status, 204, "{path}: {}", r.text());
    }

    // User-group membership: new family 200 / 204 / 204, v1 202 / 202 / 200.
    assert_eq!(
        rest.put("/api/hubs/chat/users/u1/groups/g1?api-version=2022-06-01")
            .await
            .status,
        200
    );
    assert_eq!(
        rest.get("/api/hubs/chat/users/u1/groups/g1").await.status,
        200
    );
    assert_eq!(
        rest.head("/api/hubs/chat/groups/g1/users/u1").await.status,
        200
    );
    assert_eq!(
        rest.delete("/api/hubs/chat/users/u1/groups/g1")
            .await
            .status,
        204
    );
    assert_eq!(
        rest.get("/api/hubs/chat/users/u1/groups/g1").await.status,
        404
    );

    assert_eq!(
        rest.put("/api/v1/hubs/chat/groups/g2/users/u2")
            .await
            .status,
        202
    );
    assert_eq!(
        rest.get("/api/v1/hubs/chat/users/u2/groups/g2")
            .await
            .status,
        200
    );
    assert_eq!(
        rest.delete("/api/v1/hubs/chat/users/u2/groups/g2")
            .await
            .status,
        202
    );
    assert_eq!(
        rest.get("/api/v1/hubs/chat/users/u2/groups/g2")
            .await
            .status,
        404
    );

    assert_eq!(
        rest.put("/api/hubs/chat/users/u3/groups/g3?ttl=60")
            .await
            .status,
        200
    );
    assert_eq!(
        rest.put("/api/hubs/chat/users/u3/groups/g4").await.status,
        200
    );
    assert_eq!(
        rest.delete("/api/hubs/chat/users/u3/groups").await.status,
        204
    );
    assert_eq!(
        rest.get("/api/hubs/chat/users/u3/groups/g3").await.status,
        404
    );
    assert_eq!(
        rest.get("/api/hubs/chat/users/u3/groups/g4").await.status,
        404
    );
    assert_eq!(
        rest.put("/api/v1/hubs/chat/users/u3/groups/g3")
            .await
            .status,
        202
    );
    assert_eq!(
        rest.delete("/api/v1/hubs/chat/users/u3/groups")
            .await
            .status,
        200
    );
    assert_eq!(
        rest.get("/api/hubs/chat/users/u3/groups/g3").await.status,
        404
    );

    // ttl=0 remembers nothing for later connections.
    assert_eq!(
        rest.put("/api/hubs/chat/users/u4/groups/g4?ttl=0")
            .await
            .status,
        200
    );
    assert_eq!(
        rest.get("/api/hubs/chat/users/u4/groups/g4").await.status,
        404
    );

    for ttl in ["-1", "abc", "1.5", "9999999999999999999999"] {
        let r = rest
            .put(&format!("/api/hubs/chat/users/u5/groups/g5?ttl={ttl}"))
            .await;
        assert_error(&r, 400, "Error.InvalidRequest");
    }

    // The application prefix addresses `<app>_<hub>`, lower-cased.
    assert_eq!(
        rest.put("/api/hubs/Chat/users/u6/groups/g6?application=MyApp")
            .await
            .status,
        200
    );
    assert!(handle.hub_names().iter().any(|h| h == "myapp_chat"));
    assert_eq!(
        rest.get("/api/hubs/chat/users/u6/groups/g6?application=myapp")
            .await
            .status,
        200
    );
    assert_eq!(
        rest.get("/api/hubs/chat/users/u6/groups/g6").await.status,
        404
    );
    handle.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn membership_ttl_expires() {
    let (handle, base, key) = common::start(ServiceMode::Serverless).await;
    let rest = Rest::new(&base, &key);
    assert_eq!(
        rest.put("/api/hubs/chat/users/erin/groups/short?ttl=1")
            .await
            .status,
        200
    );
    assert_eq!(
        rest.get("/api/hubs/chat/users/erin/groups/short")
            .await
            .status,
        200
    );
    // Waiting is the point here: the membership must be gone after its ttl.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let r = rest.get("/api/hubs/chat/users/erin/groups/short").await;
    assert_error(&r, 404, "Info.User.NotInGroup");

    // And a connection opened after expiry is not in the group.
    let mut erin = json_client(&base, &key, "chat", Some("erin")).await;
    let r = rest
        .post_json("/api/hubs/chat/groups/short/:send", &msg("late", json!([])))
        .await;
    assert_eq!(r.status, 202);
    assert_nothing_before_marker(&rest, "chat", &mut erin).await;
    erin.close().await;
    handle.stop().await;
}

// ---------------------------------------------------------------------------------------------
// generateToken

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generate_token_mints_client_tokens() {
    let (handle, base, key) = common::start(ServiceMode::Serverless).await;
    let rest = Rest::new(&base, &key);

    let r = rest
        .post_empty(
            "/api/hubs/chat/:generateToken?userId=alice&minutesToExpire=5&api-version=2024-12-01",
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        r.content_type()
            .is_some_and(|c| c.starts_with("application/json"))
    );
    let token = r.json()["token"].as_str().expect("token").to_owned();
    let claims = token_claims(&token);
    assert!(
        claims["aud"]
            .as_str()
            .unwrap()
            .ends_with("/client/?hub=chat"),
        "{claims}"
    );
    assert_eq!(claims["nameid"], json!("alice"));
    let lifetime = claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap();
    assert_eq!(lifetime, 300, "{claims}");

    // Defaults: one hour, no user.
    let r = rest.post_empty("/api/hubs/chat/:generateToken").await;
    assert_eq!(r.status, 200);
    let claims = token_claims(r.json()["token"].as_str().unwrap());
    assert_eq!(
        claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
        3600
    );
    assert!(claims.get("nameid").is_none(), "{claims}");

    // With an application: the token is for `<app>_<hub>`.
    let r = rest
        .post_empty("/api/hubs/Chat/:generateToken?application=App&userId=bob")
        .await;
    assert_eq!(r.status, 200);
    let app_token = r.json()["token"].as_str().unwrap().to_owned();
    assert!(
        token_claims(&app_token)["aud"]
            .as_str()
            .unwrap()
            .ends_with("/client/?hub=app_chat")
    );

    for bad in ["0", "-5", "abc", "1.5"] {
        let r = rest
            .post_empty(&format!(
                "/api/hubs/chat/:generateToken?minutesToExpire={bad}"
            ))
            .await;
        assert_error(&r, 400, "Error.InvalidRequest");
    }
    let r = rest
        .post_empty(&format!(
            "/api/hubs/chat/:generateToken?userId={}",
            "u".repeat(1025)
        ))
        .await;
    assert_error(&r, 400, "Error.InvalidRequest");

    // The client endpoint accepts the minted token, and the user id is the token's.
    let mut alice = TestClient::connect(&base, "chat", &token, "json")
        .await
        .expect("connect");
    let r = rest
        .post_json(
            "/api/hubs/chat/users/alice/:send",
            &msg("hi", json!(["alice"])),
        )
        .await;
    assert_eq!(r.status, 202);
    assert_eq!(
        alice.expect_invocation("hi", T).await.unwrap(),
        json!(["alice"])
    );
    let mut bob = TestClient::connect(&base, "app_chat", &app_token, "messagepack")
        .await
        .expect("connect with app token");
    let r = rest
        .post_json(
            "/api/hubs/chat/users/bob/:send?application=app",
            &msg("hi", json!(["bob"])),
        )
        .await;
    assert_eq!(r.status, 202);
    assert_eq!(
        bob.expect_invocation("hi", T).await.unwrap(),
        json!(["bob"])
    );
    alice.close().await;
    bob.close().await;
    handle.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Deliveries

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcast_reaches_json_and_messagepack_clients_with_exact_arguments() {
    let (handle, base, key) = common::start(ServiceMode::Serverless).await;
    let rest = Rest::new(&base, &key);
    let mut a = json_client(&base, &key, "chat", Some("alice")).await;
    let mut b = msgpack_client(&base, &key, "chat", Some("bob")).await;

    let args = json!([1, -2, "two", {"three": [3, {"four": null}]}, null, true, false, [], {}, 12345678901_u64, "ü\"\\"]);
    let r = rest
        .post_json(
            "/api/hubs/chat/:send?api-version=2022-06-01",
            &msg("everyone", args.clone()),
        )
        .await;
    assert_eq!(r.status, 202, "{}", r.text());
    assert!(r.body.is_empty());
    assert_eq!(a.expect_invocation("everyone", T).await.unwrap(), args);
    assert_eq!(b.expect_invocation("everyone", T).await.unwrap(), args);

    // The argument text is relayed as sent (a JSON client sees the exact bytes' values,
    // PascalCase keys work, and no arguments means an empty array).
    let raw = r#"{"Target":"raw","Arguments":[ 1.5 , "x" ]}"#;
    let r = rest
        .call(
            Method::POST,
            "/api/v1/hubs/chat",
            Some(("application/json; charset=utf-8", raw.into())),
        )
        .await;
    assert_eq!(r.status, 202);
    assert_eq!(
        a.expect_invocation("raw", T).await.unwrap(),
        json!([1.5, "x"])
    );
    assert_eq!(
        b.expect_invocation("raw", T).await.unwrap(),
        json!([1.5, "x"])
    );
    let r = rest
        .post_json("/api/hubs/chat/:send", &json!({"target": "noargs"}))
        .await;
    assert_eq!(r.status, 202);
    assert_eq!(a.expect_invocation("noargs", T).await.unwrap(), json!([]));
    assert_eq!(b.expect_invocation("noargs", T).await.unwrap(), json!([]));

    // excluded (repeated) skips those connections only.
    let path = format!(
        "/api/hubs/chat/:send?excluded={}&excluded=unknown",
        a.connection_id()
    );
    assert_eq!(
        rest.post_json(&path, &msg("not-a", json!([]))).await.status,
        202
    );
    assert_eq!(b.expect_invocation("not-a", T).await.unwrap(), json!([]));
    assert_nothing_before_marker(&rest, "chat", &mut a).await;
    let path = format!("/api/v1/hubs/chat?excluded={}", b.connection_id());
    assert_eq!(
        rest.post_json(&path, &msg("not-b", json!([]))).await.status,
        202
    );
    assert_eq!(a.expect_invocation("not-b", T).await.unwrap(), json!([]));
    assert_nothing_before_marker(&rest, "chat", &mut b).await;

    // Another hub's broadcast does not reach them.
    assert_eq!(
        rest.post_json("/api/hubs/other/:send", &msg("other", json!([])))
            .await
            .status,
        202
    );
    assert_nothing_before_marker(&rest, "chat", &mut a).await;
    assert_nothing_before_marker(&rest, "chat", &mut b).await;
    a.close().await;
    b.close().await;
    handle.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_and_connection_sends_and_checks() {
    let (handle, base, key) = common::start(ServiceMode::Serverless).await;
    let rest = Rest::new(&base, &key);
    let mut a1 = json_client(&base, &key, "chat", Some("alice")).await;
    let mut a2 = msgpack_client(&base, &key, "chat", Some("alice")).await;
    let mut b = json_client(&base, &key, "chat", Some("bob")).await;

    // Checks now succeed.
    assert_eq!(rest.head("/api/hubs/chat/users/alice").await.status, 200);
    assert_eq!(rest.get("/api/v1/hubs/chat/users/bob").await.status, 200);
    let path = format!("/api/hubs/chat/connections/{}", a2.connection_id());
    assert_eq!(rest.head(&path).await.status, 200);
    let path = format!("/api/v1/hubs/chat/connections/{}", b.connection_id());
    assert_eq!(rest.get(&path).await.status, 200);

    // User sends: both of alice's connections, not bob.
    let r = rest
        .post_json(
            "/api/hubs/chat/users/alice/:send",
            &msg("to-alice", json!([{"n": 1}])),
        )
        .await;
    assert_eq!(r.status, 202);
    assert_eq!(
        a1.expect_invocation("to-alice", T).await.unwrap(),
        json!([{"n": 1}])
    );
    assert_eq!(
        a2.expect_invocation("to-alice", T).await.unwrap(),
        json!([{"n": 1}])
    );
    assert_nothing_before_marker(&rest, "chat", &mut b).await;
    let r = rest
        .post_json("/api/v1/hubs/chat/users/bob", &msg("to-bob", json!(["v1"])))
        .await;
    assert_eq!(r.status, 202);
    assert_eq!(
        b.expect_invocation("to-bob", T).await.unwrap(),
        json!(["v1"])
    );
    assert_nothing_before_marker(&rest, "chat", &mut a1).await;
    assert_nothing_before_marker(&rest, "chat", &mut a2).await;

    // Connection sends: only that connection.
    let path = format!("/api/v1/hubs/chat/connections/{}", a2.connection_id());
    assert_eq!(
        rest.post_json(&path, &msg("only-a2", json!([2])))
            .await
            .status,
        202
    );
    assert_eq!(
        a2.expect_invocation("only-a2", T).await.unwrap(),
        json!([2])
    );
    assert_nothing_before_marker(&rest, "chat", &mut a1).await;
    a1.close().await;
    a2.close().await;
    b.close().await;
    handle.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_add_send_exclude_remove() {
    let (handle, base, key) = common::start(ServiceMode::Serverless).await;
    let rest = Rest::new(&base, &key);
    let mut a = json_client(&base, &key, "chat", Some("alice")).await;
    let mut b = msgpack_client(&base, &key, "chat", Some("bob")).await;
    let mut c = json_client(&base, &key, "chat", None).await;
    let (ida, idb) = (a.connection_id().to_owned(), b.connection_id().to_owned());

    // Group names may hold characters that need escaping.
    let group = "room%201%2Fa"; // "room 1/a"
    let r = rest
        .put(&format!("/api/hubs/chat/groups/{group}/connections/{ida}"))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = rest
        .put(&format!(
            "/api/v1/hubs/chat/connections/{idb}/groups/{group}"
        ))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        rest.head(&format!("/api/hubs/chat/groups/{group}"))
            .await
            .status,
        200
    );
    assert_eq!(
        rest.get(&format!("/api/hubs/chat/users/alice/groups/{group}"))
            .await
            .status,
        200
    );

    let r = rest
        .post_json(
            &format!("/api/hubs/chat/groups/{group}/:send"),
            &msg("g", json!(["x"])),
        )
        .await;
    assert_eq!(r.status, 202);
    assert_eq!(a.expect_invocation("g", T).await.unwrap(), json!(["x"]));
    assert_eq!(b.expect_invocation("g", T).await.unwrap(), json!(["x"]));
    assert_nothing_before_marker(&rest, "chat", &mut c).await;

    // excluded on a group send.
    let r = rest
        .post_json(
            &format!("/api/v1/hubs/chat/groups/{group}?excluded={ida}"),
            &msg("g2", json!([])),
        )
        .await;
    assert_eq!(r.status, 202);
    assert_eq!(b.expect_invocation("g2", T).await.unwrap(), json!([]));
    assert_nothing_before_marker(&rest, "chat", &mut a).await;

    // Remove alice: she no longer receives group messages.
    let r = rest
        .delete(&format!("/api/hubs/chat/groups/{group}/connections/{ida}"))
        .await;
    assert_eq!(r.status, 200);
    let r = rest
        .post_json(
            &format!("/api/hubs/chat/groups/{group}/:send"),
            &msg("g3", json!([])),
        )
        .await;
    assert_eq!(r.status, 202);
    assert_eq!(b.expect_invocation("g3", T).await.unwrap(), json!([]));
    assert_nothing_before_marker(&rest, "chat", &mut a).await;

    // Bob leaves every group.
    let r = rest
        .delete(&format!("/api/hubs/chat/connections/{idb}/groups"))
        .await;
    assert_eq!(r.status, 200);
    let r = rest.head(&format!("/api/hubs/chat/groups/{group}")).await;
    assert_head_missing(&r, "Warning.Group.NotExisted");
    let r = rest
        .post_json(
            &format!("/api/hubs/chat/groups/{group}/:send"),
            &msg("g4", json!([])),
        )
        .await;
    assert_eq!(r.status, 202);
    assert_nothing_before_marker(&rest, "chat", &mut b).await;
    a.close().await;
    b.close().await;
    c.close().await;
    handle.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_groups_apply_to_current_and_later_connections() {
    let (handle, base, key) = common::start(ServiceMode::Serverless).await;
    let rest = Rest::new(&base, &key);

    // Before carol connects: remembered (no ttl) for her later connections.
    assert_eq!(
        rest.put("/api/hubs/chat/users/carol/groups/vip")
            .await
            .status,
        200
    );
    // dave with ttl=0 before connecting: nothing remembered.
    assert_eq!(
        rest.put("/api/hubs/chat/users/dave/groups/vip?ttl=0")
            .await
            .status,
        200
    );
    // frank with a ttl long enough to cover the test.
    assert_eq!(
        rest.put("/api/v1/hubs/chat/groups/vip/users/frank?ttl=600")
            .await
            .status,
        202
    );

    let mut carol = json_client(&base, &key, "chat", Some("carol")).await;
    let mut dave = msgpack_client(&base, &key, "chat", Some("dave")).await;
    let mut frank = msgpack_client(&base, &key, "chat", Some("frank")).await;

    let r = rest
        .post_json("/api/hubs/chat/groups/vip/:send", &msg("vip", json!([1])))
        .await;
    assert_eq!(r.status, 202);
    assert_eq!(carol.expect_invocation("vip", T).await.unwrap(), json!([1]));
    assert_eq!(frank.expect_invocation("vip", T).await.unwrap(), json!([1]));
    assert_nothing_before_marker(&rest, "chat", &mut dave).await;

    // ttl=0 with dave connected adds his current connection.
    assert_eq!(
        rest.put("/api/hubs/chat/users/dave/groups/vip?ttl=0")
            .await
            .status,
        200
    );
    let r = rest
        .post_json("/api/hubs/chat/groups/vip/:send", &msg("vip2", json!([2])))
        .await;
    assert_eq!(r.status, 202);
    assert_eq!(
        carol.expect_invocation("vip2", T).await.unwrap(),
        json!([2])
    );
    assert_eq!(dave.expect_invocation("vip2", T).await.unwrap(), json!([2]));
    assert_eq!(
        frank.expect_invocation("vip2", T).await.unwrap(),
        json!([2])
    );

    // Removing carol removes her connection and her remembered membership.
    assert_eq!(
        rest.delete("/api/hubs/chat/users/carol/groups/vip")
            .await
            .status,
        204
    );
    let mut carol2 = json_client(&base, &key, "chat", Some("carol")).await;
    let r = rest
        .post_json("/api/hubs/chat/groups/vip/:send", &msg("vip3", json!([3])))
        .await;
    assert_eq!(r.status, 202);
    assert_eq!(dave.expect_invocation("vip3", T).await.unwrap(), json!([3]));
    assert_eq!(
        frank.expect_invocation("vip3", T).await.unwrap(),
        json!([3])
    );
    assert_nothing_before_marker(&rest, "chat", &mut carol).await;
    assert_nothing_before_marker(&rest, "chat", &mut carol2).await;

    // frank leaves all groups.
    assert_eq!(
        rest.delete("/api/hubs/chat/users/frank/groups")
            .await
            .status,
        204
    );
    let r = rest
        .post_json("/api/hubs/chat/groups/vip/:send", &msg("vip4", json!([4])))
        .await;
    assert_eq!(r.status, 202);
    assert_eq!(dave.expect_invocation("vip4", T).await.unwrap(), json!([4]));
    assert_nothing_before_marker(&rest, "chat", &mut frank).await;
    for c in [carol, carol2, dave, frank] {
        c.close().await;
    }
    handle.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_connections_sends_the_reason() {
    let (handle, base, key) = common::start(ServiceMode::Serverless).await;
    let rest = Rest::new(&base, &key);
    let mut a = json_client(&base, &key, "chat", Some("alice")).await;
    let mut b = msgpack_client(&base, &key, "chat", Some("bob")).await;
    let mut v1 = json_client(&base, &key, "chat", Some("vic")).await;

    // New API: 200 and the reason as the Close error.
    let r = rest
        .delete(&format!(
            "/api/hubs/chat/connections/{}?reason=Kicked%20out",
            a.connection_id()
        ))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let close = a.next_close(T).await.unwrap();
    assert_eq!(close["error"], json!("Kicked out"), "{close}");
    assert_ne!(close["allowReconnect"], json!(true), "{close}");
    a.wait_closed(T).await.unwrap();

    // v1: 202.
    let r = rest
        .delete(&format!(
            "/api/v1/hubs/chat/connections/{}?reason=bye",
            v1.connection_id()
        ))
        .await;
    assert_eq!(r.status, 202);
    assert_eq!(v1.next_close(T).await.unwrap()["error"], json!("bye"));

    // The connection is gone afterwards.
    let r = rest
        .head(&format!("/api/hubs/chat/connections/{}", b.connection_id()))
        .await;
    assert_eq!(r.status, 200);
    let r = rest
        .post_empty("/api/hubs/chat/users/bob/:closeConnections?reason=all%20gone")
        .await;
    assert_eq!(r.status, 204);
    let close = b.next_close(T).await.unwrap();
    assert_eq!(close["error"], json!("all gone"), "{close}");
    b.wait_closed(T).await.unwrap();

    // Poll until the hub noticed; this waits for presence of the 404, not absence.
    let path = format!("/api/hubs/chat/connections/{}", a.connection_id());
    let mut status = 0;
    for _ in 0..50 {
        status = rest.head(&path).await.status;
        if status == 404 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status, 404);
    handle.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_connections_in_scopes_with_exclusions() {
    let (handle, base, key) = common::start(ServiceMode::Serverless).await;
    let rest = Rest::new(&base, &key);
    let mut a = json_client(&base, &key, "chat", Some("alice")).await;
    let mut b = json_client(&base, &key, "chat", Some("bob")).await;
    let mut c = msgpack_client(&base, &key, "chat", Some("carl")).await;
    let mut d = json_client(&base, &key, "chat", Some("dora")).await;
    let idc = c.connection_id().to_owned();
    assert_eq!(
        rest.put(&format!("/api/hubs/chat/groups/g/connections/{idc}"))
            .await
            .status,
        200
    );
    let idd = d.connection_id().to_owned();
    assert_eq!(
        rest.put(&format!("/api/hubs/chat/groups/g/connections/{idd}"))
            .await
            .status,
        200
    );

    // Group close, excluding dora.
    let r = rest
        .post_empty(&format!(
            "/api/hubs/chat/groups/g/:closeConnections?excluded={idd}&reason=group"
        ))
        .await;
    assert_eq!(r.status, 204);
    assert_eq!(c.next_close(T).await.unwrap()["error"], json!("group"));
    assert_nothing_before_marker(&rest, "chat", &mut d).await;

    // Hub-wide close, excluding alice.
    let r = rest
        .post_empty(&format!(
            "/api/hubs/chat/:closeConnections?excluded={}&reason=hub",
            a.connection_id()
        ))
        .await;
    assert_eq!(r.status, 204);
    assert_eq!(b.next_close(T).await.unwrap()["error"], json!("hub"));
    assert_eq!(d.next_close(T).await.unwrap()["error"], json!("hub"));
    assert_nothing_before_marker(&rest, "chat", &mut a).await;
    a.close().await;
    handle.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payload_maps_are_delivered_per_protocol_without_reserialisation() {
    let (handle, base, key) = common::start(ServiceMode::Serverless).await;
    let rest = Rest::new(&base, &key);
    let mut j = json_client(&base, &key, "chat", Some("j")).await;
    let mut m = msgpack_client(&base, &key, "chat", Some("m")).await;

    // Different arguments per protocol prove each client gets its own payload as given.
    let mut json_payload = br#"{"type":1,"target":"bin","arguments":["from-json",1]}"#.to_vec();
    json_payload.push(0x1e);
    use rmpv::Value as V;
    let mp = V::Array(vec![
        V::from(1),
        V::Map(vec![]),
        V::Nil,
        V::from("bin"),
        V::Array(vec![V::from("from-msgpack"), V::from(2)]),
    ]);
    let mp_payload = common::frame_msgpack(&common::msgpack_bytes(&mp));
    let body = common::msgpack_bytes(&V::Map(vec![
        (V::from("json"), V::Binary(json_payload.clone())),
        (V::from("messagepack"), V::Binary(mp_payload.clone())),
        (V::from("blazorpack"), V::Binary(vec![1, 2, 3])),
    ]));
    for ct in ["application/octet-stream", "application/x-msgpack"] {
        let r = rest
            .call(
                Method::POST,
                "/api/hubs/chat/:send",
                Some((ct, body.clone())),
            )
            .await;
        assert_eq!(r.status, 202, "{}", r.text());
        assert_eq!(
            j.expect_invocation("bin", T).await.unwrap(),
            json!(["from-json", 1])
        );
        assert_eq!(
            m.expect_invocation("bin", T).await.unwrap(),
            json!(["from-msgpack", 2])
        );
    }

    // A map with only a JSON payload reaches only JSON clients.
    let only_json =
        common::msgpack_bytes(&V::Map(vec![(V::from("Json"), V::Binary(json_payload))]));
    let r = rest
        .call(
            Method::POST,
            "/api/hubs/chat/users/m/:send",
            Some(("application/octet-stream", only_json.clone())),
        )
        .await;
    assert_eq!(r.status, 202);
    assert_nothing_before_marker(&rest, "chat", &mut m).await;
    let r = rest
        .call(
            Method::POST,
            "/api/hubs/chat/users/j/:send",
            Some(("application/octet-stream", only_json)),
        )
        .await;
    assert_eq!(r.status, 202);
    assert_eq!(
        j.expect_invocation("bin", T).await.unwrap(),
        json!(["from-json", 1])
    );
    j.close().await;
    m.close().await;
    handle.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_connections_are_listed_in_pages() {
    let (handle, base, key) = common::start(ServiceMode::Serverless).await;
    let rest = Rest::new(&base, &key);

    // Empty group (and unused hub).
    let r = rest
        .get("/api/hubs/chat/groups/g/connections?api-version=2024-12-01")
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json(), json!({ "value": [] }));

    let mut clients = Vec::new();
    for i in 0..5 {
        let user = format!("user{i}");
        let c = if i == 4 {
            json_client(&base, &key, "chat", None).await
        } else {
            json_client(&base, &key, "chat", Some(&user)).await
        };
        let r = rest
            .put(&format!(
                "/api/hubs/chat/groups/g/connections/{}",
                c.connection_id()
            ))
            .await;
        assert_eq!(r.status, 200);
        clients.push((c, (i != 4).then_some(user)));
    }
    let _outsider = json_client(&base, &key, "chat", Some("outsider")).await;
    let mut expected: Vec<Value> = clients
        .iter()
        .map(|(c, u)| match u {
            Some(u) => json!({ "connectionId": c.connection_id(), "userId": u }),
            None => json!({ "connectionId": c.connection_id() }),
        })
        .collect();
    expected.sort_by(|a, b| a["connectionId"].as_str().cmp(&b["connectionId"].as_str()));

    // One page holds everything by default.
    let r = rest.get("/api/hubs/chat/groups/g/connections").await;
    assert_eq!(r.json(), json!({ "value": expected }));

    // Pages of two, following nextLink.
    let mut seen = Vec::new();
    let mut url =
        "/api/hubs/chat/groups/g/connections?maxpagesize=2&api-version=2024-12-01".to_owned();
    let mut pages = 0;
    loop {
        let r = rest.get(&url).await;
        assert_eq!(r.status, 200, "{url}: {}", r.text());
        let body = r.json();
        let value = body["value"].as_array().unwrap().clone();
        assert!(value.len() <= 2);
        seen.extend(value);
        pages += 1;
        match body.get("nextLink").and_then(Value::as_str) {
            Some(link) => {
                assert!(
                    link.starts_with(&format!("{base}/api/hubs/chat/groups/g/connections?")),
                    "{link}"
                );
                assert!(link.contains("api-version=2024-12-01"), "{link}");
                url = link[base.len()..].to_owned();
            }
            None => break,
        }
        assert!(pages < 10, "too many pages");
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, expected);

    // top caps the total.
    let r = rest
        .get("/api/hubs/chat/groups/g/connections?maxpagesize=2&top=3")
        .await;
    let body = r.json();
    assert_eq!(body["value"], json!(expected[..2]));
    let link = body["nextLink"].as_str().expect("nextLink").to_owned();
    let r = rest.get(&link[base.len()..]).await;
    let body = r.json();
    assert_eq!(body["value"], json!(expected[2..3]));
    assert!(body.get("nextLink").is_none(), "{body}");

    for bad in [
        "maxpagesize=0",
        "maxpagesize=201",
        "maxpagesize=x",
        "top=0",
        "top=-1",
        "continuationToken=%21%21",
    ] {
        let r = rest
            .get(&format!("/api/hubs/chat/groups/g/connections?{bad}"))
            .await;
        assert_error(&r, 400, "Error.InvalidRequest");
    }
    for (c, _) in clients {
        c.close().await;
    }
    handle.stop().await;
}
