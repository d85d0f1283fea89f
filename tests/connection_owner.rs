//! A connection belongs to the hub and user it was negotiated for (issue 13, item 2): with
//! negotiate version 0 the connection token is the public connection id, so every request that
//! addresses a negotiated or open connection — a long poll, an SSE stream, a POST, a DELETE, a
//! WebSocket claiming the id — must come with a token of the same hub and user. Anyone else gets
//! exactly the unknown id's answer (404 `No Connection with that ID`), the refusal is counted in
//! `switchboard_connection_takeover_refused_total`, and the owner's connection is unharmed.
//!
//! Over real sockets: raw HTTP requests for the HTTP transports, a raw WebSocket for the claim.
//! That nothing another user sent reached the owner's connection is shown by ordering, never by
//! waiting: the owner's own blocking invocation is answered first, which it would not be if an
//! earlier invocation had been accepted into the same inbound stream.

mod common;

use std::time::Duration;

use common::{
    JSON_HANDSHAKE, Reply, Rest, client_token, client_token_with, json_records, negotiate,
    send_within, start, ws,
};
use serde_json::{Value, json};
use switchboard::telemetry::names;
use switchboard::{ServiceMode, SwitchboardHandle};

const WAIT: Duration = Duration::from_secs(5);
const HUB: &str = "owned";

/// Negotiate version 0 (no `negotiateVersion`): the answer has no connection token, the id is
/// the token. Returns the connection id.
async fn negotiate_v0(base: &str, token: &str) -> String {
    let n = negotiate(base, HUB, token, "").await;
    assert_eq!(n["negotiateVersion"], json!(0), "{n}");
    assert!(n.get("connectionToken").is_none(), "{n}");
    n["connectionId"].as_str().expect("connectionId").to_owned()
}

/// The transport URL of connection `id` in `hub`.
fn conn_url(base: &str, hub: &str, id: &str) -> String {
    format!("{base}/client/?hub={hub}&id={id}")
}

async fn send(req: reqwest::RequestBuilder, what: &str) -> Reply {
    send_within(req, WAIT, what).await
}

/// A long poll with `token`.
async fn poll(http: &reqwest::Client, url: &str, token: &str) -> Reply {
    send(http.get(url).bearer_auth(token), "long-poll GET").await
}

/// A POST of `body` with `token`.
async fn post(http: &reqwest::Client, url: &str, token: &str, body: &[u8]) -> Reply {
    send(
        http.post(url)
            .bearer_auth(token)
            .header("Content-Type", "text/plain;charset=UTF-8")
            .body(body.to_vec()),
        "POST",
    )
    .await
}

async fn delete(http: &reqwest::Client, url: &str, token: &str) -> Reply {
    send(http.delete(url).bearer_auth(token), "DELETE").await
}

/// An SSE GET with the token in `access_token`; a 200 stream is not read (its body never ends).
async fn sse_status(http: &reqwest::Client, url: &str, token: &str) -> (u16, String) {
    let resp = tokio::time::timeout(
        WAIT,
        http.get(format!("{url}&access_token={token}"))
            .header("Accept", "text/event-stream")
            .send(),
    )
    .await
    .expect("SSE answer within 5 s")
    .expect("SSE GET");
    let status = resp.status().as_u16();
    if status == 200 {
        return (200, String::new());
    }
    (status, resp.text().await.unwrap_or_default())
}

/// A WebSocket upgrade request for `url` with `token`, made with a plain HTTP client so that a
/// refusal's body can be read; an accepted upgrade answers 101.
async fn upgrade(http: &reqwest::Client, url: &str, token: &str) -> Reply {
    let resp = tokio::time::timeout(
        WAIT,
        http.get(url)
            .bearer_auth(token)
            .header("Connection", "Upgrade")
            .header("Upgrade", "websocket")
            .header("Sec-WebSocket-Version", "13")
            .header("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
            .send(),
    )
    .await
    .expect("upgrade answer within 5 s")
    .expect("upgrade request");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = if status == 101 {
        Vec::new()
    } else {
        resp.bytes().await.map(|b| b.to_vec()).unwrap_or_default()
    };
    Reply {
        status,
        headers,
        body,
    }
}

/// The refusal must be the unknown id's answer, byte for byte.
fn assert_unknown(reply: &Reply, what: &str) {
    assert_eq!(
        (reply.status, reply.content_type(), reply.text().as_str()),
        (404, Some("text/plain"), "No Connection with that ID"),
        "{what} must be answered as for an unknown id"
    );
}

fn takeovers_refused(sb: &SwitchboardHandle) -> u64 {
    sb.metrics()
        .get(names::connection_takeover_refused)
        .expect("the takeover counter exists")
}

/// A blocking invocation of a target no upstream handles: it is answered by a Completion error.
fn blocking(id: &str) -> Vec<u8> {
    common::json_invocation(Some(id), "Nowhere", json!([]))
}

/// Poll (as `token`) until a poll carries data; its records.
async fn next_records(http: &reqwest::Client, url: &str, token: &str) -> Vec<Value> {
    let a = poll(http, url, token).await;
    assert_eq!(a.status, 200, "poll: {}", a.text());
    assert!(!a.body.is_empty(), "the poll timed out without data");
    json_records(&a.body)
}

#[tokio::test]
async fn another_user_cannot_take_over_a_long_polling_connection_negotiated_with_version_0() {
    let (sb, base, key) = start(ServiceMode::Serverless).await;
    let http = reqwest::Client::new();
    let bob = client_token(&key, HUB, Some("bob"));
    let eve = client_token(&key, HUB, Some("eve"));
    let anonymous = client_token(&key, HUB, None);
    let id = negotiate_v0(&base, &bob).await;
    let url = conn_url(&base, HUB, &id);
    let unknown = poll(&http, &conn_url(&base, HUB, "no-such-id"), &eve).await;
    assert_unknown(&unknown, "an unknown id");
    assert_eq!(takeovers_refused(&sb), 0, "an unknown id is no takeover");

    // Before bob's first request nobody else claims his negotiated id, on any transport.
    for (who, token) in [("eve", &eve), ("an anonymous client", &anonymous)] {
        assert_unknown(
            &poll(&http, &url, token).await,
            &format!("{who}'s first poll"),
        );
        let (status, text) = sse_status(&http, &url, token).await;
        assert_eq!(
            (status, text.as_str()),
            (404, "No Connection with that ID"),
            "{who}'s SSE stream"
        );
        assert_unknown(
            &upgrade(&http, &url, token).await,
            &format!("{who}'s WebSocket"),
        );
    }
    assert_eq!(takeovers_refused(&sb), 6);

    // Bob claims it: first poll, handshake.
    let first = poll(&http, &url, &bob).await;
    assert_eq!(
        (first.status, first.body.len()),
        (200, 0),
        "bob's first poll"
    );
    assert_eq!(
        post(&http, &url, &bob, JSON_HANDSHAKE.as_bytes())
            .await
            .status,
        200
    );
    assert_eq!(poll(&http, &url, &bob).await.text(), "{}\x1e");

    // Now eve and the anonymous client can neither send as bob, nor read his messages, nor end
    // his connection, nor open a stream on it.
    for (who, token) in [("eve", &eve), ("an anonymous client", &anonymous)] {
        let evil = post(&http, &url, token, &blocking("evil")).await;
        assert_unknown(&evil, &format!("{who}'s POST"));
        assert_unknown(&poll(&http, &url, token).await, &format!("{who}'s poll"));
        assert_unknown(
            &delete(&http, &url, token).await,
            &format!("{who}'s DELETE"),
        );
        let (status, text) = sse_status(&http, &url, token).await;
        assert_eq!(
            (status, text.as_str()),
            (404, "No Connection with that ID"),
            "{who}'s SSE stream"
        );
    }
    // Bob's own token for another hub, with that hub's URL: the id is unknown there.
    let elsewhere = client_token(&key, "elsewhere", Some("bob"));
    let there = conn_url(&base, "elsewhere", &id);
    assert_unknown(
        &poll(&http, &there, &elsewhere).await,
        "a poll from another hub",
    );
    assert_unknown(
        &post(&http, &there, &elsewhere, &blocking("evil")).await,
        "a POST from another hub",
    );
    assert_eq!(takeovers_refused(&sb), 6 + 8 + 2);

    // Bob's connection is unharmed: his invocation is the first one answered (eve's would have
    // been answered before it), and a message sent to him reaches him.
    assert_eq!(
        post(&http, &url, &bob, &blocking("bob-1")).await.status,
        200
    );
    let answer = next_records(&http, &url, &bob).await;
    assert_eq!(answer.len(), 1, "{answer:?}");
    assert_eq!(
        (answer[0]["type"].clone(), answer[0]["invocationId"].clone()),
        (json!(3), json!("bob-1")),
        "{answer:?}"
    );
    let rest = Rest::new(&base, &key);
    let sent = rest
        .post_json(
            &format!("/api/hubs/{HUB}/connections/{id}/:send?api-version=2022-06-01"),
            &json!({ "target": "note", "arguments": ["for bob"] }),
        )
        .await;
    assert_eq!(sent.status, 202, "{}", sent.text());
    assert_eq!(
        next_records(&http, &url, &bob).await,
        [json!({ "type": 1, "target": "note", "arguments": ["for bob"] })]
    );

    // The same user with another token of his (other claims) is still bob.
    let bob_again = client_token_with(&key, HUB, &json!({ "nameid": "bob", "role": "renewed" }));
    assert_eq!(
        post(&http, &url, &bob_again, &blocking("bob-2"))
            .await
            .status,
        200
    );
    let answer = next_records(&http, &url, &bob).await;
    assert_eq!(answer[0]["invocationId"], json!("bob-2"), "{answer:?}");
    assert_eq!(delete(&http, &url, &bob_again).await.status, 202);
    sb.stop().await;
}

#[tokio::test]
async fn another_user_cannot_take_over_an_sse_connection_negotiated_with_version_0() {
    let (sb, base, key) = start(ServiceMode::Serverless).await;
    let http = reqwest::Client::new();
    let bob = client_token(&key, HUB, Some("bob"));
    let eve = client_token(&key, HUB, Some("eve"));
    let id = negotiate_v0(&base, &bob).await;
    let url = conn_url(&base, HUB, &id);
    let mut stream = http
        .get(format!("{url}&access_token={bob}"))
        .header("Accept", "text/event-stream")
        .send()
        .await
        .expect("bob's SSE GET");
    assert_eq!(stream.status().as_u16(), 200);
    assert_eq!(
        post(&http, &url, &bob, JSON_HANDSHAKE.as_bytes())
            .await
            .status,
        200
    );

    // A second stream, a long poll, a POST from eve: all answered as for an unknown id (not 409
    // nor 400, which would tell the id exists).
    let (status, text) = sse_status(&http, &url, &eve).await;
    assert_eq!((status, text.as_str()), (404, "No Connection with that ID"));
    assert_unknown(&poll(&http, &url, &eve).await, "eve's poll");
    assert_unknown(
        &post(&http, &url, &eve, &blocking("evil")).await,
        "eve's POST",
    );
    assert_eq!(takeovers_refused(&sb), 3);

    // Bob's stream: the handshake answer, then the answer to his own invocation first.
    assert_eq!(
        post(&http, &url, &bob, &blocking("bob-1")).await.status,
        200
    );
    let mut got = Vec::new();
    let mut buf = Vec::new();
    while got.len() < 2 {
        let chunk = tokio::time::timeout(WAIT, stream.chunk())
            .await
            .expect("SSE bytes within 5 s")
            .expect("SSE read")
            .expect("the stream goes on");
        buf.extend_from_slice(&chunk);
        if buf.starts_with(b":\r\n") {
            // The comment line that opens the stream.
            buf.drain(..3);
        }
        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let event: Vec<u8> = buf.drain(..end + 4).collect();
            let data = event[..end]
                .strip_prefix(b"data: ")
                .unwrap_or_else(|| panic!("not a data event: {event:?}"))
                .to_vec();
            got.extend(
                json_records(&data)
                    .into_iter()
                    .filter(|m| m["type"] != json!(6)),
            );
        }
    }
    assert_eq!(got[0], json!({}), "the handshake answer");
    assert_eq!(
        (got[1]["type"].clone(), got[1]["invocationId"].clone()),
        (json!(3), json!("bob-1")),
        "{got:?}"
    );
    sb.stop().await;
}

#[tokio::test]
async fn a_negotiated_id_is_claimed_by_its_owners_websocket_only() {
    let (sb, base, key) = start(ServiceMode::Serverless).await;
    let http = reqwest::Client::new();
    let bob = client_token(&key, HUB, Some("bob"));
    let eve = client_token(&key, HUB, Some("eve"));
    let id = negotiate_v0(&base, &bob).await;
    let url = conn_url(&base, HUB, &id);
    assert_unknown(&upgrade(&http, &url, &eve).await, "eve's WebSocket");
    assert_eq!(takeovers_refused(&sb), 1);

    // Bob's WebSocket still claims the id, and a message sent to it arrives.
    let mut socket = ws::open(&base, &format!("hub={HUB}&id={id}"), Some(&bob))
        .await
        .expect("bob's upgrade");
    ws::handshake_json(&mut socket).await;
    Rest::new(&base, &key)
        .post_json(
            &format!("/api/hubs/{HUB}/connections/{id}/:send?api-version=2022-06-01"),
            &json!({ "target": "note", "arguments": [1] }),
        )
        .await;
    let mut pending = Vec::new();
    assert_eq!(
        ws::next_json(&mut socket, &mut pending).await,
        json!({ "type": 1, "target": "note", "arguments": [1] })
    );
    sb.stop().await;
}

#[tokio::test]
async fn an_anonymous_connection_stays_anonymous() {
    let (sb, base, key) = start(ServiceMode::Serverless).await;
    let http = reqwest::Client::new();
    let anonymous = client_token(&key, HUB, None);
    let id = negotiate_v0(&base, &anonymous).await;
    let url = conn_url(&base, HUB, &id);
    // A token with a user id may not address it.
    let bob = client_token(&key, HUB, Some("bob"));
    assert_unknown(&poll(&http, &url, &bob).await, "bob's first poll");
    assert_eq!(takeovers_refused(&sb), 1);
    // Another anonymous token may: anonymous clients cannot be told apart.
    let other_anonymous = client_token_with(&key, HUB, &json!({ "role": "guest" }));
    let first = poll(&http, &url, &other_anonymous).await;
    assert_eq!((first.status, first.body.len()), (200, 0));
    assert_eq!(
        post(&http, &url, &anonymous, JSON_HANDSHAKE.as_bytes())
            .await
            .status,
        200
    );
    assert_eq!(poll(&http, &url, &anonymous).await.text(), "{}\x1e");
    sb.stop().await;
}
