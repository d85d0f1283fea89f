//! The client endpoint over real sockets: negotiate, the WebSocket transport, the handshake,
//! protocol errors, limits and the slow-consumer policy. Byte-level, with the raw WebSocket of
//! `common::ws`, so that malformed input can be sent.

mod common;

use std::time::Duration;

use common::ws::{
    Data, Ws, connect_json, handshake_json, next_close, next_frame, next_json, next_record,
    next_text, open, open_negotiated, raw_frame,
};
use common::{
    JSON_HANDSHAKE, Rest, client_token, config, expired_client_token, negotiate, negotiate_raw,
    now, rest_token, sign, start, start_with,
};
use futures_util::SinkExt as _;
use serde_json::json;
use switchboard::ServiceMode;
use switchboard::telemetry::names;
use tokio_tungstenite::tungstenite::Message;

/// Broadcasts `n` numbered 60 KiB messages to hub `chat` while `reader` reads them in the
/// background; asserts the reader got every one, in order, and returns it still open.
async fn broadcast_while_one_reads(rest: &Rest, mut reader: Ws, n: usize) -> Ws {
    let reading = tokio::spawn(async move {
        let mut pending = Vec::new();
        let mut seen = Vec::with_capacity(n);
        for _ in 0..n {
            let v = next_json(&mut reader, &mut pending).await;
            seen.push(v["arguments"][0].as_u64().unwrap());
        }
        (seen, reader)
    });
    let payload = "p".repeat(60 * 1024);
    for i in 0..n {
        rest.broadcast("chat", "note", json!([i, payload])).await;
    }
    let (seen, reader) = reading.await.unwrap();
    assert_eq!(
        seen,
        (0..n as u64).collect::<Vec<_>>(),
        "the reading client lost or reordered messages"
    );
    reader
}

#[tokio::test]
async fn negotiate_versions_and_errors() {
    let (sb, base, key) = start(ServiceMode::Serverless).await;
    let tok = client_token(&key, "chat", None);
    let v1 = negotiate(&base, "chat", &tok, "&negotiateVersion=1").await;
    assert_eq!(v1["negotiateVersion"], 1);
    assert_eq!(v1["connectionId"].as_str().unwrap().len(), 22);
    assert_ne!(v1["connectionToken"], v1["connectionId"]);
    assert_eq!(v1["availableTransports"][0]["transport"], "WebSockets");
    assert!(v1.get("useStatefulReconnect").is_none());

    let v0 = negotiate(&base, "chat", &tok, "").await;
    assert_eq!(v0["negotiateVersion"], 0);
    assert!(v0.get("connectionToken").is_none());
    // Version 0: the connection id is the token.
    let id = v0["connectionId"].as_str().unwrap();
    let mut ws = open(&base, &format!("hub=chat&id={id}"), Some(&tok))
        .await
        .unwrap();
    handshake_json(&mut ws).await;

    let high = negotiate(&base, "chat", &tok, "&negotiateVersion=7").await;
    assert_eq!(high["negotiateVersion"], 1);
    let bad = negotiate_raw(&base, "chat", Some(&tok), "&negotiateVersion=abc").await;
    assert_eq!(bad.status, 200);
    let bad = bad.json();
    assert_eq!(
        bad["error"],
        "The client requested an invalid protocol version 'abc'"
    );

    let r = negotiate_raw(&base, "chat", Some("not-a-token"), "").await;
    assert_eq!(r.status, 401);
    assert_eq!(r.headers["content-type"], "application/json");
    // A token signed with another key: said so in plain words.
    let forged = client_token("another-key-that-is-long-enough-0123456789", "chat", None);
    let r = negotiate_raw(&base, "chat", Some(&forged), "").await;
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["code"], "Error.Unauthorized");
    assert_eq!(
        r.json()["message"],
        "Unauthorized: the token is not signed with any of this broker's access keys."
    );
    let r = negotiate_raw(&base, "9bad", Some(&tok), "").await;
    assert_eq!(r.status, 400);
    // A token for another hub does not open this one.
    let r = negotiate_raw(&base, "other", Some(&tok), "").await;
    assert_eq!(r.status, 401);
    let r = reqwest::Client::new()
        .get(format!("{base}/client/negotiate?hub=chat"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    sb.stop().await;
}

#[tokio::test]
async fn cors_preflight_echoes_the_origin() {
    let (sb, base, key) = start(ServiceMode::Serverless).await;
    let r = reqwest::Client::new()
        .request(
            reqwest::Method::OPTIONS,
            format!("{base}/client/negotiate?hub=chat"),
        )
        .header("Origin", "http://app.example")
        .header("Access-Control-Request-Method", "POST")
        .header(
            "Access-Control-Request-Headers",
            "x-requested-with,x-signalr-user-agent,authorization",
        )
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    let h = r.headers();
    assert_eq!(h["access-control-allow-origin"], "http://app.example");
    assert_eq!(h["access-control-allow-credentials"], "true");
    assert_eq!(
        h["access-control-allow-headers"],
        "x-requested-with,x-signalr-user-agent,authorization"
    );
    assert!(
        h["access-control-allow-methods"]
            .to_str()
            .unwrap()
            .contains("POST")
    );
    // The actual response carries them too.
    let r = reqwest::Client::new()
        .post(format!("{base}/client/negotiate?hub=chat"))
        .header("Origin", "http://app.example")
        .bearer_auth(client_token(&key, "chat", None))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        "http://app.example"
    );
    sb.stop().await;
}

#[tokio::test]
async fn with_an_origin_list_only_listed_origins_get_cors_headers() {
    let mut c = config(ServiceMode::Serverless);
    c.cors.allowed_origins = vec!["https://app.example".into(), "http://localhost:3000".into()];
    let (sb, base, key) = start_with(c).await;
    let http = reqwest::Client::new();
    let preflight = |origin: &'static str| {
        http.request(
            reqwest::Method::OPTIONS,
            format!("{base}/client/negotiate?hub=chat"),
        )
        .header("Origin", origin)
        .header("Access-Control-Request-Method", "POST")
        .send()
    };
    // Listed (scheme and host in any case): echoed, with credentials.
    let r = preflight("HTTPS://app.example").await.unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        "HTTPS://app.example"
    );
    assert_eq!(r.headers()["access-control-allow-credentials"], "true");
    // Not listed: no CORS header at all, so a browser keeps the answer from the page.
    for origin in [
        "https://evil.example",
        "https://app.example:8443",
        "http://app.example",
    ] {
        let r = preflight(origin).await.unwrap();
        let h = r.headers();
        assert!(
            !h.contains_key("access-control-allow-origin")
                && !h.contains_key("access-control-allow-credentials")
                && !h.contains_key("access-control-allow-methods"),
            "{origin}: {h:?}"
        );
        // The answer depends on the Origin: a cache in front must know.
        assert_eq!(
            h.get("vary").map(|v| v.as_bytes()),
            Some(&b"Origin"[..]),
            "{origin}"
        );
    }
    // The same for the answers themselves: negotiate and the REST API.
    for (origin, allowed) in [
        ("http://localhost:3000", true),
        ("https://evil.example", false),
    ] {
        let r = http
            .post(format!("{base}/client/negotiate?hub=chat"))
            .header("Origin", origin)
            .bearer_auth(client_token(&key, "chat", None))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "the request itself is served: {origin}");
        assert_eq!(
            r.headers().get("access-control-allow-origin").is_some(),
            allowed,
            "{origin}"
        );
        let r = http
            .get(format!("{base}/api/health?api-version=2022-06-01"))
            .header("Origin", origin)
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.headers().get("access-control-allow-origin").is_some(),
            allowed,
            "{origin}"
        );
    }
    sb.stop().await;
}

#[tokio::test]
async fn websocket_upgrade_refusals() {
    let (sb, base, key) = start(ServiceMode::Serverless).await;
    let tok = client_token(&key, "chat", None);
    let status = |e: tungstenite::Error| match e {
        tungstenite::Error::Http(r) => r.status().as_u16(),
        other => panic!("expected an HTTP refusal, got {other}"),
    };
    // Unknown connection token.
    assert_eq!(
        status(
            open(&base, "hub=chat&id=nope", Some(&tok))
                .await
                .unwrap_err()
        ),
        404
    );
    // No token at all, a forged one, a REST-audience one.
    assert_eq!(
        status(open(&base, "hub=chat", None).await.unwrap_err()),
        401
    );
    let forged = sign(
        "wrong key",
        &json!({"aud": "http://127.0.0.1/client/?hub=chat", "exp": now() + 60}),
    );
    assert_eq!(
        status(open(&base, "hub=chat", Some(&forged)).await.unwrap_err()),
        401
    );
    let rest = rest_token(&key, "/api/hubs/chat/:send");
    assert_eq!(
        status(open(&base, "hub=chat", Some(&rest)).await.unwrap_err()),
        401
    );
    let expired = expired_client_token(&key, "chat");
    assert_eq!(
        status(open(&base, "hub=chat", Some(&expired)).await.unwrap_err()),
        401
    );
    // The token in the query (browsers) works; no id means a new connection.
    let mut ws = open(&base, &format!("hub=chat&access_token={tok}"), None)
        .await
        .unwrap();
    handshake_json(&mut ws).await;
    // A negotiated token is used once.
    let body = negotiate(&base, "chat", &tok, "&negotiateVersion=1").await;
    let ct = body["connectionToken"].as_str().unwrap();
    let _first = open(&base, &format!("hub=chat&id={ct}"), Some(&tok))
        .await
        .unwrap();
    assert_eq!(
        status(
            open(&base, &format!("hub=chat&id={ct}"), Some(&tok))
                .await
                .unwrap_err()
        ),
        404
    );
    // Plain GETs (long polling / SSE) are not offered yet.
    let r = reqwest::get(format!("{base}/client/?hub=chat"))
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.text().await.unwrap(), "Connection ID required");
    sb.stop().await;
}

#[tokio::test]
async fn handshake_errors_have_the_reference_texts() {
    let (sb, base, key) = start(ServiceMode::Serverless).await;
    let cases = [
        (
            "{\"protocol\":\"foo\",\"version\":1}\u{1e}",
            "The protocol 'foo' is not supported.",
        ),
        (
            "{\"protocol\":\"json\",\"version\":3}\u{1e}",
            "The server does not support version 3 of the 'json' protocol.",
        ),
    ];
    for (request, error) in cases {
        let (mut ws, _) = open_negotiated(&base, &key, "chat", None).await;
        ws.send(Message::text(request)).await.unwrap();
        let answer = next_record(&mut ws).await;
        assert_eq!(answer["error"], error);
        assert!(matches!(next_frame(&mut ws).await, Message::Close(_)));
    }
    let (mut ws, _) = open_negotiated(&base, &key, "chat", None).await;
    ws.send(Message::text("{\"version\":1}\u{1e}"))
        .await
        .unwrap();
    let answer = next_record(&mut ws).await;
    let text = answer["error"].as_str().unwrap();
    assert!(
        text.starts_with("An unexpected error occurred during connection handshake."),
        "{text}"
    );
    assert!(text.contains("protocol"), "{text}");
    sb.stop().await;
}

#[tokio::test]
async fn handshake_timeout() {
    let mut c = config(ServiceMode::Serverless);
    c.limits.handshake_timeout_secs = 1;
    let (sb, base, key) = start_with(c).await;
    let (mut ws, _) = open_negotiated(&base, &key, "chat", None).await;
    let answer = next_text(&mut ws).await;
    assert_eq!(answer, "{\"error\":\"Handshake was canceled.\"}\u{1e}");
    sb.stop().await;
}

#[tokio::test]
async fn default_mode_without_hub_server_refuses_with_azure_text() {
    let (sb, base, key) = start(ServiceMode::Default).await;
    let (mut ws, _) = open_negotiated(&base, &key, "chat", None).await;
    ws.send(Message::text(JSON_HANDSHAKE)).await.unwrap();
    let answer = next_record(&mut ws).await;
    assert_eq!(
        answer["error"],
        "SignalR Service is now in 'Default' service mode. Current mode works as a proxy that routes client traffic to the connected app servers. However app servers are not connected."
    );
    assert_eq!(sb.metrics().get(names::handshakes_failed), Some(1));
    sb.stop().await;
}

#[tokio::test]
async fn messagepack_handshake_answer_is_binary_and_invocations_get_an_error_completion() {
    let (sb, base, key) = start(ServiceMode::Serverless).await;
    let (mut ws, _) = open_negotiated(&base, &key, "chat", None).await;
    // The JS client sends the handshake as text and the messages as binary; here the handshake
    // and a blocking Invocation share one frame.
    let mut frame = b"{\"protocol\":\"messagepack\",\"version\":1}\x1e".to_vec();
    // [1, {}, "7", "Go", []]
    let body = [0x95, 0x01, 0x80, 0xa1, b'7', 0xa2, b'G', b'o', 0x90];
    frame.push(body.len() as u8);
    frame.extend_from_slice(&body);
    ws.send(Message::binary(frame)).await.unwrap();
    match next_frame(&mut ws).await {
        Message::Binary(b) => assert_eq!(&b[..], b"{}\x1e"),
        other => panic!("expected a binary handshake answer, got {other:?}"),
    }
    let completion = match next_frame(&mut ws).await {
        Message::Binary(b) => b,
        other => panic!("expected a binary Completion, got {other:?}"),
    };
    let decoded = switchboard::protocol::HubProtocol::MessagePack
        .decode(&completion, 1 << 20)
        .unwrap()
        .unwrap();
    match decoded.message {
        Some(switchboard::protocol::HubMessage::Completion(c)) => {
            assert_eq!(c.invocation_id, "7");
            match c.outcome {
                switchboard::protocol::CompletionOutcome::Error(e) => {
                    assert!(e.contains("no upstream"), "{e}")
                }
                other => panic!("expected an error completion, got {other:?}"),
            }
        }
        other => panic!("expected a Completion, got {other:?}"),
    }
    assert_eq!(sb.metrics().get(names::invocations_rejected), Some(1));
    sb.stop().await;
}

#[tokio::test]
async fn non_blocking_invocations_are_dropped_and_counted() {
    let (sb, base, key) = start(ServiceMode::Serverless).await;
    let (mut ws, _) = connect_json(&base, &key, "chat", None).await;
    ws.send(Message::text(
        "{\"type\":1,\"target\":\"x\",\"arguments\":[]}\u{1e}{\"type\":6}\u{1e}",
    ))
    .await
    .unwrap();
    // A blocking one afterwards proves the first was processed (in order) without an answer.
    ws.send(Message::text(
        "{\"type\":1,\"invocationId\":\"1\",\"target\":\"x\",\"arguments\":[]}\u{1e}",
    ))
    .await
    .unwrap();
    let mut pending = Vec::new();
    let v = next_json(&mut ws, &mut pending).await;
    assert_eq!(v["type"], 3);
    assert_eq!(v["invocationId"], "1");
    assert_eq!(sb.metrics().get(names::messages_dropped_no_route), Some(1));
    sb.stop().await;
}

#[tokio::test]
async fn malformed_message_closes_only_that_connection() {
    let (sb, base, key) = start(ServiceMode::Serverless).await;
    let (mut bad, _) = connect_json(&base, &key, "chat", None).await;
    let (mut good, _) = connect_json(&base, &key, "chat", None).await;
    bad.send(Message::text("{\"type\":\"one\"}\u{1e}"))
        .await
        .unwrap();
    let close = next_record(&mut bad).await;
    assert_eq!(close["type"], 7);
    let error = close["error"].as_str().unwrap();
    assert!(
        error.starts_with("Connection closed with an error."),
        "{error}"
    );
    // The close frame says it too: 1002 (protocol error), with the detail as its reason.
    let (code, reason) = next_close(&mut bad).await;
    assert_eq!(code, 1002);
    assert!(!reason.is_empty() && error.ends_with(&reason), "{reason}");

    Rest::new(&base, &key)
        .broadcast("chat", "note", json!(["still here"]))
        .await;
    let mut pending = Vec::new();
    let v = next_json(&mut good, &mut pending).await;
    assert_eq!(v["arguments"], json!(["still here"]));
    assert_eq!(sb.metrics().get(names::protocol_errors), Some(1));
    sb.stop().await;
}

#[tokio::test]
async fn oversized_messages_close_the_connection() {
    let mut c = config(ServiceMode::Serverless);
    c.limits.max_message_size = 1024;
    let (sb, base, key) = start_with(c).await;
    // One record bigger than the limit, in a frame under it... (split over frames)
    let (mut ws, _) = connect_json(&base, &key, "chat", None).await;
    let big = format!(
        "{{\"type\":1,\"target\":\"x\",\"arguments\":[\"{}\"]",
        "a".repeat(1000)
    );
    ws.send(Message::text(big.clone())).await.unwrap();
    ws.send(Message::text(big)).await.unwrap();
    let too_big = "The maximum message size of 1024B was exceeded.";
    let close = next_record(&mut ws).await;
    assert_eq!(
        close,
        json!({"type": 7, "error": format!("Connection closed with an error. {too_big}")})
    );
    assert_eq!(next_close(&mut ws).await, (1009, too_big.to_owned()));
    // ... one WebSocket frame over the limit (the WebSocket layer refuses it) ...
    let (mut ws, _) = connect_json(&base, &key, "chat", None).await;
    ws.send(Message::text("x".repeat(4096))).await.unwrap();
    let close = next_record(&mut ws).await;
    assert_eq!(
        close,
        json!({"type": 7, "error": format!("Connection closed with an error. {too_big}")})
    );
    assert_eq!(next_close(&mut ws).await, (1009, too_big.to_owned()));
    // ... and one message in continuation frames, each under the limit, adding up to more.
    let (mut ws, _) = connect_json(&base, &key, "chat", None).await;
    ws.send(raw_frame(&[b'x'; 600], Data::Text, false))
        .await
        .unwrap();
    ws.send(raw_frame(&[b'x'; 600], Data::Continue, true))
        .await
        .unwrap();
    let close = next_record(&mut ws).await;
    assert_eq!(
        close,
        json!({"type": 7, "error": format!("Connection closed with an error. {too_big}")})
    );
    assert_eq!(next_close(&mut ws).await, (1009, too_big.to_owned()));
    assert_eq!(sb.metrics().get(names::protocol_errors), Some(3));
    sb.stop().await;
}

#[tokio::test]
async fn a_text_frame_that_is_not_utf8_is_refused_with_1007() {
    let (sb, base, key) = start(ServiceMode::Serverless).await;
    let not_utf8 = "A text frame is not valid UTF-8.";
    // After the handshake: a Close message, then the close frame.
    let (mut ws, _) = connect_json(&base, &key, "chat", None).await;
    ws.send(raw_frame(b"{\"type\":6}\x1e\xff\xfe", Data::Text, true))
        .await
        .unwrap();
    let close = next_record(&mut ws).await;
    assert_eq!(
        close,
        json!({"type": 7, "error": format!("Connection closed with an error. {not_utf8}")})
    );
    assert_eq!(next_close(&mut ws).await, (1007, not_utf8.to_owned()));
    // Before it: the handshake's error answer, then the close frame.
    let (mut ws, _) = open_negotiated(&base, &key, "chat", None).await;
    ws.send(raw_frame(b"{\"protocol\":\"\xc3\x28\"}", Data::Text, true))
        .await
        .unwrap();
    assert_eq!(next_record(&mut ws).await, json!({ "error": not_utf8 }));
    assert_eq!(next_close(&mut ws).await, (1007, not_utf8.to_owned()));
    assert_eq!(sb.metrics().get(names::protocol_errors), Some(2));
    sb.stop().await;
}

#[tokio::test]
async fn an_oversized_frame_before_the_handshake_cancels_it_with_1009() {
    let mut c = config(ServiceMode::Serverless);
    c.limits.max_message_size = 1024;
    let (sb, base, key) = start_with(c).await;
    let (mut ws, _) = open_negotiated(&base, &key, "chat", None).await;
    ws.send(Message::text(" ".repeat(2048))).await.unwrap();
    assert_eq!(
        next_record(&mut ws).await,
        json!({ "error": "Handshake was canceled." })
    );
    assert_eq!(
        next_close(&mut ws).await,
        (
            1009,
            "The maximum message size of 1024B was exceeded.".to_owned()
        )
    );
    sb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcasts_to_idle_websockets_are_written_by_the_hub_whole_and_in_order() {
    let (sb, base, key) = start(ServiceMode::Serverless).await;
    let (mut a, _) = connect_json(&base, &key, "chat", None).await;
    let (mut b, _) = connect_json(&base, &key, "chat", None).await;
    let rest = Rest::new(&base, &key);
    // One at a time, as a chat sends, each received before the next is sent: the hub's inbox
    // holds nothing else, and the clients' tasks are back waiting with their sockets lent (had
    // all twenty been sent at once, a task slowed by a busy machine could still be writing the
    // first ones when the last arrived, and none would be written directly).
    let (mut pending_a, mut pending_b) = (Vec::new(), Vec::new());
    for i in 0..20 {
        rest.broadcast("chat", "m", json!([i])).await;
        for (ws, pending) in [(&mut a, &mut pending_a), (&mut b, &mut pending_b)] {
            let v = next_json(ws, pending).await;
            assert_eq!(
                (v["target"].as_str(), &v["arguments"]),
                (Some("m"), &json!([i]))
            );
        }
    }
    let direct = sb.metrics().get(names::direct_writes).unwrap_or(0);
    assert!(direct > 0, "no broadcast was written directly");
    assert!(sb.metrics().get(names::socket_writes).unwrap_or(0) >= direct);
    sb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_consumer_is_cut_off_without_harming_others() {
    let mut c = config(ServiceMode::Serverless);
    c.limits.outbox_max_bytes = 256 * 1024;
    // Only the outbox limit may cut the slow client here: on a loaded machine the broadcasts
    // can outlast the default send timeout, which would cut it first (without a Close message).
    c.limits.send_timeout_secs = 600;
    let (sb, base, key) = start_with(c).await;
    let (mut slow, _) = connect_json(&base, &key, "chat", None).await;
    let (fast, _) = connect_json(&base, &key, "chat", None).await;
    let _fast = broadcast_while_one_reads(&Rest::new(&base, &key), fast, 300).await;
    assert_eq!(sb.metrics().get(names::outbox_overflow), Some(1));
    // The slow client, once it reads, finds a Close naming the reason after what was in flight.
    let mut pending = Vec::new();
    let close = loop {
        let v = next_json(&mut slow, &mut pending).await;
        if v["type"] == 7 {
            break v;
        }
        assert_eq!(v["type"], 1);
    };
    assert!(
        close["error"].as_str().unwrap().contains("outbox limit"),
        "{close}"
    );
    assert_eq!(close["allowReconnect"], true);
    sb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_cut_by_the_send_timeout() {
    let mut c = config(ServiceMode::Serverless);
    // The outbox is big enough that only the send timeout can cut the stalled client.
    c.limits.outbox_max_bytes = 256 * 1024 * 1024;
    c.limits.outbox_max_messages = 1_000_000;
    c.limits.send_timeout_secs = 1;
    let (sb, base, key) = start_with(c).await;
    let (stalled, _) = connect_json(&base, &key, "chat", None).await;
    let (fast, _) = connect_json(&base, &key, "chat", None).await;
    // 12 MiB: more than the kernel buffers of a socket nobody reads on loopback. The reading
    // client stays connected: the count below must fall to 1 by the stalled one.
    let _fast = broadcast_while_one_reads(&Rest::new(&base, &key), fast, 200).await;
    // The stalled client's write times out: it is counted and the connection ends (its Close
    // message cannot be written either, and waits at most the same timeout).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while sb.metrics().get(names::connections_current) != Some(1) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the stalled client was not cut: {:?}",
            sb.metrics().get(names::send_timeouts)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(sb.metrics().get(names::send_timeouts), Some(1));
    assert_eq!(sb.metrics().get(names::outbox_overflow), Some(0));
    drop(stalled);
    sb.stop().await;
}

#[tokio::test]
async fn metrics_endpoint_renders_counters() {
    let (sb, base, key) = start(ServiceMode::Serverless).await;
    let (_ws, _) = connect_json(&base, &key, "chat", None).await;
    let text = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains("switchboard_connections_opened_total 1\n"),
        "{text}"
    );
    assert!(text.contains("switchboard_connections 1\n"), "{text}");
    let r = reqwest::Client::new()
        .head(format!("{base}/api/health?api-version=2022-06-01"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    sb.stop().await;
}

#[tokio::test]
async fn keep_alive_pings_and_client_timeout() {
    let mut c = config(ServiceMode::Serverless);
    c.limits.keep_alive_interval_secs = 1;
    c.limits.client_timeout_secs = 3;
    let (sb, base, key) = start_with(c).await;
    let (mut ws, _) = connect_json(&base, &key, "chat", None).await;
    // Idle: the server pings.
    assert_eq!(next_text(&mut ws).await, "{\"type\":6}\u{1e}");
    // A client that never pinged is not timed out (ASP.NET Core arms the timeout at the first
    // Ping); once it pings and falls silent, it is closed with reconnect allowed.
    ws.send(Message::text("{\"type\":6}\u{1e}")).await.unwrap();
    let close = loop {
        let text = next_text(&mut ws).await;
        if text != "{\"type\":6}\u{1e}" {
            break text;
        }
    };
    assert_eq!(
        close,
        "{\"type\":7,\"error\":\"Connection closed with an error.\",\"allowReconnect\":true}\u{1e}"
    );
    assert_eq!(sb.metrics().get(names::client_timeouts), Some(1));
    sb.stop().await;
}

#[tokio::test]
async fn many_hubs_are_isolated() {
    let (sb, base, key) = start(ServiceMode::Serverless).await;
    let (mut a, _) = connect_json(&base, &key, "alpha", None).await;
    let (mut b, _) = connect_json(&base, &key, "beta", None).await;
    let rest = Rest::new(&base, &key);
    rest.broadcast("alpha", "note", json!(["to alpha"])).await;
    rest.broadcast("beta", "note", json!(["to beta"])).await;
    let (mut pa, mut pb) = (Vec::new(), Vec::new());
    assert_eq!(
        next_json(&mut a, &mut pa).await["arguments"],
        json!(["to alpha"])
    );
    assert_eq!(
        next_json(&mut b, &mut pb).await["arguments"],
        json!(["to beta"])
    );
    sb.stop().await;
}
