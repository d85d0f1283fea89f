//! Server-Sent Events and long polling over real sockets (`docs/protocol.md#transports`): the
//! transport list of negotiate and how configuration and the `asrs.s.htt` claim narrow
//! it, the byte-level shape of both transports, every status code of the HTTP transport
//! endpoints, the message size limit, the abandoned-poll timeout and tokens.
//!
//! The clients here are raw `reqwest` requests, so that every header, status and byte the broker
//! writes is checked as it is on the wire.

mod common;

use std::collections::VecDeque;
use std::time::Duration;

use common::{
    JSON_HANDSHAKE, Reply, Rest, TEST_KEY, client_token, client_token_with, expired_client_token,
    negotiate, negotiate_raw, now, send_within, start, start_with,
};
use serde_json::{Value, json};
use switchboard::id::TransportKind;
use switchboard::telemetry::names;
use switchboard::{Config, ServiceMode};

/// The longest any single expected answer may take.
const WAIT: Duration = Duration::from_secs(5);
const API: &str = "api-version=2022-06-01";
/// What negotiate asks for here: version 1.
const V1: &str = "&negotiateVersion=1";

/// Send `req` and read the whole answer within [`WAIT`].
async fn send(req: reqwest::RequestBuilder, what: &str) -> Reply {
    send_within(req, WAIT, what).await
}

/// The JSON records (0x1E-terminated) of `bytes`; every byte must belong to a complete record.
fn records(bytes: &[u8]) -> Vec<Value> {
    assert_eq!(
        bytes.last(),
        Some(&0x1e),
        "a JSON payload must end with a record separator: {:?}",
        String::from_utf8_lossy(bytes)
    );
    bytes[..bytes.len() - 1]
        .split(|b| *b == 0x1e)
        .map(|r| {
            serde_json::from_slice(r).unwrap_or_else(|e| {
                panic!("bad JSON record ({e}): {:?}", String::from_utf8_lossy(r))
            })
        })
        .collect()
}

/// The negotiated connection URL and ids of one client.
struct Negotiated {
    url: String,
    connection_id: String,
    token: String,
}

/// Negotiate (version 1); the connection URL and ids.
async fn negotiated(base: &str, hub: &str, token: &str) -> Negotiated {
    let n = negotiate(base, hub, token, V1).await;
    Negotiated {
        url: format!(
            "{base}/client/?hub={hub}&id={}",
            n["connectionToken"].as_str().expect("connectionToken")
        ),
        connection_id: n["connectionId"].as_str().expect("connectionId").to_owned(),
        token: token.to_owned(),
    }
}

/// A raw long-polling client: `GET` polls, `POST` sends, `DELETE` ends; token in the header.
#[derive(Clone)]
struct Lp {
    http: reqwest::Client,
    url: String,
    token: String,
    connection_id: String,
}

impl Lp {
    fn new(http: &reqwest::Client, n: &Negotiated) -> Self {
        Self {
            http: http.clone(),
            url: n.url.clone(),
            token: n.token.clone(),
            connection_id: n.connection_id.clone(),
        }
    }

    /// One poll, answered within `limit`.
    async fn poll_within(&self, limit: Duration) -> Reply {
        // The JS client adds a `_` cache buster to every poll; the server ignores it.
        let url = format!("{}&_={}", self.url, now());
        send_within(
            self.http.get(url).bearer_auth(&self.token),
            limit,
            "long-poll GET",
        )
        .await
    }

    async fn poll(&self) -> Reply {
        self.poll_within(WAIT).await
    }

    async fn post(&self, body: &[u8]) -> Reply {
        send(
            self.http
                .post(&self.url)
                .bearer_auth(&self.token)
                .header("Content-Type", "text/plain;charset=UTF-8")
                .body(body.to_vec()),
            "POST",
        )
        .await
    }

    async fn delete(&self) -> Reply {
        send(
            self.http.delete(&self.url).bearer_auth(&self.token),
            "DELETE",
        )
        .await
    }

    /// Poll until a poll carries data (200 with a body); returns its JSON records.
    async fn next_records(&self) -> Vec<Value> {
        let a = self.poll().await;
        assert_eq!(a.status, 200, "poll: {}", a.text());
        assert!(!a.body.is_empty(), "the poll timed out without data");
        records(&a.body)
    }
}

/// A poll in the background (it may wait up to 20 s).
fn spawn_poll(lp: &Lp) -> tokio::task::JoinHandle<Reply> {
    let lp = lp.clone();
    tokio::spawn(async move { lp.poll_within(Duration::from_secs(20)).await })
}

/// Negotiate, first poll, JSON handshake: a connected long-polling client.
async fn connect_lp(http: &reqwest::Client, base: &str, hub: &str, token: &str) -> Lp {
    let n = negotiated(base, hub, token).await;
    let lp = Lp::new(http, &n);
    let first = lp.poll().await;
    assert_eq!((first.status, first.body.len()), (200, 0), "first poll");
    assert_eq!(
        lp.post(JSON_HANDSHAKE.as_bytes()).await.status,
        200,
        "handshake POST"
    );
    let hs = lp.poll().await;
    assert_eq!(
        (hs.status, hs.text()),
        (200, "{}\x1e".to_owned()),
        "handshake answer"
    );
    lp
}

/// A raw SSE client: the event stream plus POSTs for sending.
struct Sse {
    resp: reqwest::Response,
    buf: Vec<u8>,
    pending: VecDeque<Value>,
    post: Lp,
}

impl Sse {
    /// `GET` with `Accept: text/event-stream` and the token in `access_token`, as EventSource
    /// sends it. Returns the response (status and headers not yet checked).
    async fn open_raw(http: &reqwest::Client, n: &Negotiated) -> reqwest::Response {
        tokio::time::timeout(
            WAIT,
            http.get(format!("{}&access_token={}", n.url, n.token))
                .header("Accept", "text/event-stream")
                .send(),
        )
        .await
        .expect("the SSE response headers within 5 s")
        .expect("SSE GET")
    }

    /// Open the stream and check its headers and its first bytes (`:\r\n`).
    async fn open(http: &reqwest::Client, n: &Negotiated) -> Self {
        let resp = Self::open_raw(http, n).await;
        assert_eq!(resp.status().as_u16(), 200, "SSE GET status");
        let mut sse = Self {
            resp,
            buf: Vec::new(),
            pending: VecDeque::new(),
            post: Lp::new(http, n),
        };
        sse.fill_to(3).await;
        assert_eq!(
            &sse.buf[..3],
            b":\r\n",
            "the stream must start with the comment line"
        );
        sse.buf.drain(..3);
        sse
    }

    /// Read until the buffer holds at least `n` bytes.
    async fn fill_to(&mut self, n: usize) {
        while self.buf.len() < n {
            let chunk = tokio::time::timeout(WAIT, self.resp.chunk())
                .await
                .unwrap_or_else(|_| {
                    panic!(
                        "no SSE bytes within {WAIT:?}; buffered: {:?}",
                        String::from_utf8_lossy(&self.buf)
                    )
                })
                .expect("SSE read")
                .unwrap_or_else(|| {
                    panic!(
                        "the SSE stream ended; buffered: {:?}",
                        String::from_utf8_lossy(&self.buf)
                    )
                });
            self.buf.extend_from_slice(&chunk);
        }
    }

    /// The next complete event, raw (`data: ...\r\n` lines and the blank line).
    async fn next_event_raw(&mut self) -> Vec<u8> {
        loop {
            if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                return self.buf.drain(..end + 4).collect();
            }
            let want = self.buf.len() + 1;
            self.fill_to(want).await;
        }
    }

    /// The payload of the next event: its `data: ` lines without the prefix.
    async fn next_data(&mut self) -> Vec<u8> {
        let raw = self.next_event_raw().await;
        let body = &raw[..raw.len() - 4];
        let mut out = Vec::new();
        for (i, line) in body.split(|b| *b == b'\n').enumerate() {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let data = line
                .strip_prefix(b"data: ")
                .unwrap_or_else(|| panic!("not a data line: {:?}", String::from_utf8_lossy(&raw)));
            if i > 0 {
                out.push(b'\n');
            }
            out.extend_from_slice(data);
        }
        out
    }

    /// The next hub message other than Ping.
    async fn next_message(&mut self) -> Value {
        loop {
            while let Some(m) = self.pending.pop_front() {
                if m["type"] != 6 {
                    return m;
                }
            }
            let data = self.next_data().await;
            self.pending.extend(records(&data));
        }
    }

    /// The stream must end (after any remaining bytes) within 5 s.
    async fn expect_end(&mut self) -> Vec<u8> {
        let mut rest = std::mem::take(&mut self.buf);
        loop {
            let chunk = tokio::time::timeout(WAIT, self.resp.chunk())
                .await
                .unwrap_or_else(|_| {
                    panic!(
                        "the SSE stream did not end within {WAIT:?}; got {:?}",
                        String::from_utf8_lossy(&rest)
                    )
                })
                .expect("SSE read");
            match chunk {
                Some(c) => rest.extend_from_slice(&c),
                None => return rest,
            }
        }
    }
}

fn no_upstream(hub: &str, target: &str) -> String {
    format!(
        "Invocation failed: hub '{hub}' is in Serverless mode and no upstream is configured to handle '{target}'."
    )
}

fn transports_of(negotiate: &Value) -> Vec<&str> {
    negotiate["availableTransports"]
        .as_array()
        .expect("availableTransports")
        .iter()
        .map(|t| t["transport"].as_str().expect("transport name"))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// negotiate and narrowing

#[tokio::test]
async fn negotiate_lists_websockets_sse_and_long_polling_in_order() {
    let (sb, base, key) = start(ServiceMode::Serverless).await;
    let n = negotiate(&base, "chat", &client_token(&key, "chat", None), V1).await;
    assert_eq!(
        n["availableTransports"],
        json!([
            { "transport": "WebSockets", "transferFormats": ["Text", "Binary"] },
            { "transport": "ServerSentEvents", "transferFormats": ["Text"] },
            { "transport": "LongPolling", "transferFormats": ["Text", "Binary"] },
        ])
    );
    sb.stop().await;
}

#[tokio::test]
async fn the_transports_setting_narrows_negotiate_and_refuses_the_others() {
    let (sb, base, key) = start_with(Config {
        mode: ServiceMode::Serverless,
        transports: vec![TransportKind::LongPolling, TransportKind::WebSockets],
        ..Config::default()
    })
    .await;
    let http = reqwest::Client::new();
    let tok = client_token(&key, "chat", None);
    let n = negotiate(&base, "chat", &tok, V1).await;
    // In the configured order.
    assert_eq!(
        n["availableTransports"],
        json!([
            { "transport": "LongPolling", "transferFormats": ["Text", "Binary"] },
            { "transport": "WebSockets", "transferFormats": ["Text", "Binary"] },
        ])
    );

    // SSE is not offered: its GET is refused with the ASP.NET Core text, the id stays usable.
    let neg = negotiated(&base, "chat", &tok).await;
    let resp = Sse::open_raw(&http, &neg).await;
    assert_eq!(resp.status().as_u16(), 404);
    assert_eq!(
        resp.text().await.unwrap(),
        "ServerSentEvents transport not supported by this end point type"
    );
    let lp = Lp::new(&http, &neg);
    let first = lp.poll().await;
    assert_eq!((first.status, first.body.len()), (200, 0));

    // Only SSE configured: long polling and WebSockets are refused.
    let (sb2, base2, _) = start_with(Config {
        mode: ServiceMode::Serverless,
        transports: vec![TransportKind::ServerSentEvents],
        ..Config::default()
    })
    .await;
    let n = negotiate(&base2, "chat", &tok, V1).await;
    assert_eq!(transports_of(&n), ["ServerSentEvents"]);
    let neg = negotiated(&base2, "chat", &tok).await;
    assert_eq!(
        Lp::new(&http, &neg).poll().await.status_text(),
        (
            404,
            "LongPolling transport not supported by this end point type".to_owned()
        )
    );
    let ws = send(
        http.get(&neg.url)
            .bearer_auth(&tok)
            .header("Connection", "Upgrade")
            .header("Upgrade", "websocket")
            .header("Sec-WebSocket-Version", "13")
            .header("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
        "WebSocket upgrade",
    )
    .await;
    assert_eq!(
        ws.status_text(),
        (
            404,
            "WebSockets transport not supported by this end point type".to_owned()
        )
    );
    sb.stop().await;
    sb2.stop().await;
}

#[tokio::test]
async fn the_htt_claim_narrows_negotiate_and_connect() {
    let (sb, base, _) = start(ServiceMode::Serverless).await;
    let http = reqwest::Client::new();
    let cases: [(&str, &[&str]); 5] = [
        ("1", &["WebSockets"]),
        ("2", &["ServerSentEvents"]),
        ("4", &["LongPolling"]),
        ("6", &["ServerSentEvents", "LongPolling"]),
        ("7", &["WebSockets", "ServerSentEvents", "LongPolling"]),
    ];
    for (htt, expected) in cases {
        let tok = client_token_with(TEST_KEY, "chat", &json!({ "asrs.s.htt": htt }));
        let n = negotiate(&base, "chat", &tok, V1).await;
        assert_eq!(transports_of(&n), expected, "asrs.s.htt = {htt}");
    }

    // htt = 4: only long polling; an SSE connect is refused, long polling works.
    let tok = client_token_with(TEST_KEY, "chat", &json!({ "asrs.s.htt": "4" }));
    let neg = negotiated(&base, "chat", &tok).await;
    let resp = Sse::open_raw(&http, &neg).await;
    assert_eq!(resp.status().as_u16(), 404);
    assert_eq!(
        resp.text().await.unwrap(),
        "ServerSentEvents transport not supported by this end point type"
    );
    let lp = connect_lp(&http, &base, "chat", &tok).await;
    assert_eq!(
        Rest::new(&base, TEST_KEY)
            .connection_status("chat", &lp.connection_id)
            .await,
        200
    );

    // htt = 2: only SSE; a long poll is refused.
    let tok = client_token_with(TEST_KEY, "chat", &json!({ "asrs.s.htt": "2" }));
    let neg = negotiated(&base, "chat", &tok).await;
    assert_eq!(
        Lp::new(&http, &neg).poll().await.status_text(),
        (
            404,
            "LongPolling transport not supported by this end point type".to_owned()
        )
    );
    let mut sse = Sse::open(&http, &neg).await;
    assert_eq!(sse.post.post(JSON_HANDSHAKE.as_bytes()).await.status, 200);
    assert_eq!(sse.next_data().await, b"{}\x1e");
    sb.stop().await;
}

// ---------------------------------------------------------------------------------------------
// long polling

#[tokio::test]
async fn long_polling_byte_level() {
    let (sb, base, key) = start(ServiceMode::Serverless).await;
    let http = reqwest::Client::new();
    let rest = Rest::new(&base, &key);
    let hub = "lp";
    let neg = negotiated(&base, hub, &client_token(&key, hub, Some("ann"))).await;
    let lp = Lp::new(&http, &neg);

    // The first poll answers at once: 200, empty, octet-stream, never cached.
    let first = lp.poll().await;
    assert_eq!(first.status, 200);
    assert!(first.body.is_empty(), "first poll body: {:?}", first.text());
    assert_eq!(
        first.header("content-type"),
        Some("application/octet-stream")
    );
    assert_eq!(first.header("content-length"), Some("0"));
    assert_eq!(first.header("cache-control"), Some("no-cache, no-store"));
    assert_eq!(first.header("pragma"), Some("no-cache"));
    assert_eq!(
        first.header("expires"),
        Some("Thu, 01 Jan 1970 00:00:00 GMT")
    );

    // The handshake by POST, its answer by the next poll.
    let posted = lp.post(JSON_HANDSHAKE.as_bytes()).await;
    assert_eq!((posted.status, posted.body.len()), (200, 0));
    let hs = lp.poll().await;
    assert_eq!(hs.status, 200);
    assert_eq!(hs.body, b"{}\x1e");
    assert_eq!(hs.header("content-type"), Some("application/octet-stream"));
    assert_eq!(hs.header("content-length"), Some("3"));
    assert_eq!(hs.header("cache-control"), Some("no-cache, no-store"));
    assert_eq!(hs.header("pragma"), Some("no-cache"));
    assert_eq!(hs.header("expires"), Some("Thu, 01 Jan 1970 00:00:00 GMT"));
    assert_eq!(rest.connection_status(hub, &lp.connection_id).await, 200);

    // A REST broadcast arrives in one poll.
    rest.broadcast(hub, "note", json!(["hello", 1, { "deep": [true, null] }]))
        .await;
    assert_eq!(
        lp.next_records().await,
        [
            json!({ "type": 1, "target": "note", "arguments": ["hello", 1, { "deep": [true, null] }] })
        ]
    );

    // Several messages queued while nobody polls come in ONE response, in order.
    rest.broadcast(hub, "note", json!([1])).await;
    let to_user = rest
        .post_json(
            &format!("/api/hubs/{hub}/users/ann/:send?{API}"),
            &json!({ "target": "note", "arguments": [2] }),
        )
        .await;
    assert_eq!(to_user.status, 202, "send to user: {}", to_user.text());
    let to_conn = rest
        .post_json(
            &format!(
                "/api/hubs/{hub}/connections/{}/:send?{API}",
                lp.connection_id
            ),
            &json!({ "target": "note", "arguments": [3] }),
        )
        .await;
    assert_eq!(
        to_conn.status,
        202,
        "send to connection: {}",
        to_conn.text()
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let batch = lp.poll().await;
    assert_eq!(batch.status, 200);
    assert_eq!(
        batch.header("content-length"),
        Some(batch.body.len().to_string().as_str())
    );
    assert_eq!(
        records(&batch.body),
        [
            json!({ "type": 1, "target": "note", "arguments": [1] }),
            json!({ "type": 1, "target": "note", "arguments": [2] }),
            json!({ "type": 1, "target": "note", "arguments": [3] }),
        ]
    );

    // Client messages: two in one POST, and one split over two POSTs; long polling gets no
    // keep-alive Pings, so the next poll holds exactly the Completions.
    let two = b"{\"type\":1,\"invocationId\":\"1\",\"target\":\"Add\",\"arguments\":[1,2]}\x1e{\"type\":6}\x1e{\"type\":1,\"invocationId\":\"2\",\"target\":\"Mul\",\"arguments\":[]}\x1e";
    assert_eq!(lp.post(two).await.status, 200);
    assert_eq!(
        lp.post(b"{\"type\":1,\"invocationId\":\"3\",\"tar")
            .await
            .status,
        200
    );
    assert_eq!(
        lp.post(b"get\":\"Sub\",\"arguments\":[]}\x1e").await.status,
        200
    );
    let mut got = Vec::new();
    while got.len() < 3 {
        got.extend(lp.next_records().await);
    }
    assert_eq!(
        got,
        [
            json!({ "type": 3, "invocationId": "1", "error": no_upstream(hub, "Add") }),
            json!({ "type": 3, "invocationId": "2", "error": no_upstream(hub, "Mul") }),
            json!({ "type": 3, "invocationId": "3", "error": no_upstream(hub, "Sub") }),
        ]
    );
    sb.stop().await;
}

#[tokio::test]
async fn long_polling_carries_messagepack() {
    let (sb, base, key) = start(ServiceMode::Serverless).await;
    let http = reqwest::Client::new();
    let rest = Rest::new(&base, &key);
    let neg = negotiated(&base, "bin", &client_token(&key, "bin", None)).await;
    let lp = Lp::new(&http, &neg);
    assert_eq!(lp.poll().await.status, 200);
    assert_eq!(
        lp.post(b"{\"protocol\":\"messagepack\",\"version\":1}\x1e")
            .await
            .status,
        200
    );
    // The handshake answer is JSON text even for MessagePack.
    assert_eq!(lp.poll().await.body, b"{}\x1e");
    rest.broadcast("bin", "note", json!(["x", 7])).await;
    let a = lp.poll().await;
    assert_eq!(a.status, 200);
    assert_eq!(a.header("content-type"), Some("application/octet-stream"));
    // One VarInt-framed message: [1, {}, nil, "note", ["x", 7]].
    let len = usize::from(a.body[0]);
    assert!(
        a.body[0] < 0x80 && a.body.len() == 1 + len,
        "frame: {:?}",
        a.body
    );
    let mut body = &a.body[1..];
    let msg = rmpv::decode::read_value(&mut body).expect("MessagePack body");
    // The .NET 6-element form (no stream ids).
    assert_eq!(
        common::to_json(&msg),
        json!([1, {}, null, "note", ["x", 7], []])
    );
    sb.stop().await;
}

#[tokio::test]
async fn a_second_poll_supersedes_the_pending_one() {
    let (sb, base, key) = start(ServiceMode::Serverless).await;
    let http = reqwest::Client::new();
    let rest = Rest::new(&base, &key);
    let lp = connect_lp(&http, &base, "sup", &client_token(&key, "sup", None)).await;

    let first = tokio::spawn({
        let lp = lp.clone();
        async move { lp.poll_within(Duration::from_secs(20)).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!first.is_finished(), "a poll without data must wait");
    let second = tokio::spawn({
        let lp = lp.clone();
        async move { lp.poll_within(Duration::from_secs(20)).await }
    });
    let first = tokio::time::timeout(WAIT, first)
        .await
        .expect("the first poll to end once the second arrived")
        .unwrap();
    assert_eq!((first.status, first.body.len()), (204, 0));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        !second.is_finished(),
        "the second poll must be the one waiting"
    );

    rest.broadcast("sup", "note", json!(["after"])).await;
    let second = tokio::time::timeout(WAIT, second)
        .await
        .expect("the second poll to get the broadcast")
        .unwrap();
    assert_eq!(second.status, 200);
    assert_eq!(
        records(&second.body),
        [json!({ "type": 1, "target": "note", "arguments": ["after"] })]
    );
    // The connection is still up.
    assert_eq!(rest.connection_status("sup", &lp.connection_id).await, 200);
    sb.stop().await;
}

#[tokio::test]
async fn delete_ends_a_long_polling_connection() {
    let (sb, base, key) = start(ServiceMode::Serverless).await;
    let http = reqwest::Client::new();
    let lp = connect_lp(&http, &base, "del", &client_token(&key, "del", None)).await;

    let pending = spawn_poll(&lp);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let deleted = lp.delete().await;
    assert_eq!((deleted.status, deleted.body.len()), (202, 0));
    assert_eq!(deleted.header("content-type"), Some("text/plain"));
    let pending = tokio::time::timeout(WAIT, pending)
        .await
        .expect("the pending poll to end after DELETE")
        .unwrap();
    assert_eq!((pending.status, pending.body.len()), (204, 0));
    let next = lp.poll().await;
    assert_eq!(
        (next.status, next.body.len()),
        (204, 0),
        "the poll after DELETE"
    );
    sb.stop().await;
}

#[tokio::test]
async fn delete_disposes_the_connection_at_once() {
    let (sb, base, key) = start(ServiceMode::Serverless).await;
    let http = reqwest::Client::new();
    let rest = Rest::new(&base, &key);
    let lp = connect_lp(&http, &base, "del2", &client_token(&key, "del2", None)).await;
    assert_eq!(lp.delete().await.status, 202);
    // ASP.NET Core disposes and removes the connection on DELETE: a later POST is 404
    // (an unknown or disposed id), and the hub no longer lists it (the JS client's stop()).
    let posted = lp
        .post(b"{\"type\":1,\"target\":\"note\",\"arguments\":[]}\x1e")
        .await;
    assert_eq!(
        posted.status_text(),
        (404, "No Connection with that ID".to_owned()),
        "POST after DELETE"
    );
    rest.wait_connection_status("del2", &lp.connection_id, 404, Duration::from_secs(3))
        .await;
    sb.stop().await;
}

#[tokio::test]
async fn rest_close_reaches_a_pending_poll() {
    let (sb, base, key) = start(ServiceMode::Serverless).await;
    let http = reqwest::Client::new();
    let rest = Rest::new(&base, &key);
    let lp = connect_lp(&http, &base, "kick", &client_token(&key, "kick", None)).await;
    let pending = spawn_poll(&lp);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = rest
        .delete(&format!(
            "/api/hubs/kick/connections/{}?reason=bye%20now&{API}",
            lp.connection_id
        ))
        .await;
    assert_eq!(r.status, 200);
    let got = tokio::time::timeout(WAIT, pending)
        .await
        .expect("the pending poll to get the Close message")
        .unwrap();
    assert_eq!(got.status, 200);
    assert_eq!(
        records(&got.body),
        [json!({ "type": 7, "error": "bye now" })]
    );
    rest.wait_connection_status("kick", &lp.connection_id, 404, Duration::from_secs(3))
        .await;
    sb.stop().await;
}

#[tokio::test]
async fn a_close_between_polls_is_delivered_by_the_next_poll() {
    let (sb, base, key) = start(ServiceMode::Serverless).await;
    let http = reqwest::Client::new();
    let rest = Rest::new(&base, &key);
    let lp = connect_lp(&http, &base, "kick2", &client_token(&key, "kick2", None)).await;
    let r = rest
        .post_json(
            &format!(
                "/api/hubs/kick2/connections/{}/:send?{API}",
                lp.connection_id
            ),
            &json!({ "target": "note", "arguments": ["last words"] }),
        )
        .await;
    assert_eq!(r.status, 202);
    let r = rest
        .delete(&format!(
            "/api/hubs/kick2/connections/{}?reason=bye%20now&{API}",
            lp.connection_id
        ))
        .await;
    assert_eq!(r.status, 200);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let got = lp.poll().await;
    assert_eq!(
        got.status,
        200,
        "the poll after the close: {:?}",
        got.text()
    );
    assert_eq!(
        records(&got.body),
        [
            json!({ "type": 1, "target": "note", "arguments": ["last words"] }),
            json!({ "type": 7, "error": "bye now" }),
        ]
    );
    let end = lp.poll().await;
    assert_eq!(
        (end.status, end.body.len()),
        (204, 0),
        "the poll after the last data"
    );
    sb.stop().await;
}

#[tokio::test]
async fn a_long_polling_client_that_stops_polling_is_disconnected() {
    let (sb, base, key) = start_with(Config {
        mode: ServiceMode::Serverless,
        limits: switchboard::config::LimitsConfig {
            negotiate_timeout_secs: 1,
            ..Default::default()
        },
        ..Config::default()
    })
    .await;
    let http = reqwest::Client::new();
    let rest = Rest::new(&base, &key);
    let tok = client_token(&key, "idle", None);

    // A client that keeps a poll open stays connected well past the timeout.
    let keeper = connect_lp(&http, &base, "idle", &tok).await;
    let held = tokio::spawn({
        let lp = keeper.clone();
        async move { lp.poll_within(Duration::from_secs(20)).await }
    });
    // A client that stops polling after the handshake.
    let quitter = connect_lp(&http, &base, "idle", &tok).await;
    assert_eq!(
        rest.connection_status("idle", &quitter.connection_id).await,
        200
    );
    let started = tokio::time::Instant::now();
    rest.wait_connection_status("idle", &quitter.connection_id, 404, Duration::from_secs(5))
        .await;
    let gone_after = started.elapsed();
    assert!(
        gone_after >= Duration::from_millis(700),
        "disconnected after only {gone_after:?} (timeout 1 s)"
    );
    // Its id is unknown now.
    assert_eq!(
        quitter.poll().await.status_text(),
        (404, "No Connection with that ID".to_owned())
    );

    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        rest.connection_status("idle", &keeper.connection_id).await,
        200,
        "a client with a pending poll must stay connected"
    );
    rest.broadcast("idle", "note", json!(["still here"])).await;
    let held = tokio::time::timeout(WAIT, held)
        .await
        .expect("the held poll")
        .unwrap();
    assert_eq!(held.status, 200);
    assert_eq!(
        records(&held.body),
        [json!({ "type": 1, "target": "note", "arguments": ["still here"] })]
    );
    sb.stop().await;
}

#[tokio::test]
async fn a_long_polling_client_whose_poll_buffer_overflows_is_closed_and_counted() {
    let (sb, base, key) = start_with(Config {
        mode: ServiceMode::Serverless,
        limits: switchboard::config::LimitsConfig {
            outbox_max_bytes: 4096,
            ..Default::default()
        },
        ..Config::default()
    })
    .await;
    let http = reqwest::Client::new();
    let rest = Rest::new(&base, &key);
    let tok = client_token(&key, "full", None);
    let lp = connect_lp(&http, &base, "full", &tok).await;
    // Nobody polls: three 2 KB messages do not fit a 4 KB poll buffer.
    let payload = "p".repeat(2048);
    for i in 0..3 {
        rest.broadcast("full", "note", json!([i, payload])).await;
    }
    rest.wait_connection_status("full", &lp.connection_id, 404, WAIT)
        .await;
    assert_eq!(sb.metrics().get(names::outbox_overflow), Some(1));
    assert_eq!(sb.metrics().get(names::send_timeouts), Some(0));
    sb.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Server-Sent Events

#[tokio::test]
async fn sse_byte_level() {
    let (sb, base, key) = start(ServiceMode::Serverless).await;
    let http = reqwest::Client::new();
    let rest = Rest::new(&base, &key);
    let neg = negotiated(&base, "sse", &client_token(&key, "sse", None)).await;
    let resp = Sse::open_raw(&http, &neg).await;
    assert_eq!(resp.status().as_u16(), 200);
    let h = resp.headers();
    let hv = |name: &str| h.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    assert_eq!(hv("content-type").as_deref(), Some("text/event-stream"));
    assert_eq!(hv("cache-control").as_deref(), Some("no-cache,no-store"));
    assert_eq!(hv("pragma").as_deref(), Some("no-cache"));
    assert_eq!(hv("content-encoding").as_deref(), Some("identity"));
    let mut sse = Sse {
        resp,
        buf: Vec::new(),
        pending: VecDeque::new(),
        post: Lp::new(&http, &neg),
    };
    // `:\r\n` is flushed before anything else (before the handshake even arrives).
    sse.fill_to(3).await;
    assert_eq!(sse.buf, b":\r\n");
    sse.buf.clear();

    assert_eq!(sse.post.post(JSON_HANDSHAKE.as_bytes()).await.status, 200);
    assert_eq!(sse.next_event_raw().await, b"data: {}\x1e\r\n\r\n");

    rest.broadcast("sse", "note", json!(["a b", 2.5, { "k": "line1\nline2" }]))
        .await;
    let raw = sse.next_event_raw().await;
    assert!(
        raw.starts_with(b"data: ") && raw.ends_with(b"\x1e\r\n\r\n"),
        "event {:?}",
        String::from_utf8_lossy(&raw)
    );
    // One data line: JSON escapes the newline.
    assert_eq!(raw.iter().filter(|b| **b == b'\n').count(), 2);
    assert_eq!(
        records(&raw[6..raw.len() - 4]),
        [
            json!({ "type": 1, "target": "note", "arguments": ["a b", 2.5, { "k": "line1\nline2" }] })
        ]
    );

    // Client messages by POST; the blocking one gets its Completion as an event.
    let body = b"{\"type\":6}\x1e{\"type\":1,\"invocationId\":\"9\",\"target\":\"Add\",\"arguments\":[1]}\x1e";
    assert_eq!(sse.post.post(body).await.status, 200);
    assert_eq!(
        sse.next_message().await,
        json!({ "type": 3, "invocationId": "9", "error": no_upstream("sse", "Add") })
    );

    // A REST close: the Close message as an event, then the stream ends.
    let r = rest
        .delete(&format!(
            "/api/hubs/sse/connections/{}?reason=done&{API}",
            neg.connection_id
        ))
        .await;
    assert_eq!(r.status, 200);
    let close = sse.next_message().await;
    assert_eq!(close["type"], 7, "{close}");
    assert!(
        close["error"].as_str().is_some_and(|e| e.contains("done")),
        "close message {close} must carry the reason"
    );
    let rest_bytes = sse.expect_end().await;
    assert!(
        rest_bytes.is_empty(),
        "after the Close: {:?}",
        String::from_utf8_lossy(&rest_bytes)
    );
    rest.wait_connection_status("sse", &neg.connection_id, 404, Duration::from_secs(3))
        .await;
    sb.stop().await;
}

#[tokio::test]
async fn sse_sends_keep_alive_pings_and_long_polling_does_not() {
    let (sb, base, key) = start_with(Config {
        mode: ServiceMode::Serverless,
        limits: switchboard::config::LimitsConfig {
            keep_alive_interval_secs: 1,
            client_timeout_secs: 30,
            ..Default::default()
        },
        ..Config::default()
    })
    .await;
    let http = reqwest::Client::new();
    let tok = client_token(&key, "ka", None);
    let neg = negotiated(&base, "ka", &tok).await;
    let mut sse = Sse::open(&http, &neg).await;
    assert_eq!(sse.post.post(JSON_HANDSHAKE.as_bytes()).await.status, 200);
    assert_eq!(sse.next_event_raw().await, b"data: {}\x1e\r\n\r\n");
    assert_eq!(
        sse.next_event_raw().await,
        b"data: {\"type\":6}\x1e\r\n\r\n"
    );

    let lp = connect_lp(&http, &base, "ka", &tok).await;
    let t = tokio::time::Instant::now();
    let quiet = tokio::spawn({
        let lp = lp.clone();
        async move { lp.poll_within(Duration::from_secs(20)).await }
    });
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(
        !quiet.is_finished(),
        "a long poll returned within {:?} without any message sent: {:?}",
        t.elapsed(),
        quiet.await.map(|a| a.text())
    );
    quiet.abort();
    sb.stop().await;
}

/// The broker learns at once that an SSE client dropped its stream (no Close message: tab
/// closed, process killed): the connection's task owns the stream's socket and sees it end, as
/// ASP.NET Core notices the aborted request. The keep-alive interval is long here, so a failed
/// keep-alive write cannot be what tells it.
#[tokio::test]
async fn an_sse_client_that_closes_its_stream_is_disconnected_at_once() {
    let (sb, base, key) = start_with(Config {
        mode: ServiceMode::Serverless,
        limits: switchboard::config::LimitsConfig {
            keep_alive_interval_secs: 60,
            client_timeout_secs: 120,
            ..Default::default()
        },
        ..Config::default()
    })
    .await;
    let http = reqwest::Client::new();
    let rest = Rest::new(&base, &key);
    let neg = negotiated(&base, "gone", &client_token(&key, "gone", None)).await;
    let mut sse = Sse::open(&http, &neg).await;
    assert_eq!(sse.post.post(JSON_HANDSHAKE.as_bytes()).await.status, 200);
    assert_eq!(sse.next_data().await, b"{}\x1e");
    assert_eq!(
        rest.connection_status("gone", &neg.connection_id).await,
        200
    );
    drop(sse);
    rest.wait_connection_status("gone", &neg.connection_id, 404, WAIT)
        .await;
    sb.stop().await;
}

#[tokio::test]
async fn messagepack_over_sse_is_refused_in_the_handshake() {
    let (sb, base, key) = start(ServiceMode::Serverless).await;
    let http = reqwest::Client::new();
    let neg = negotiated(&base, "mp", &client_token(&key, "mp", None)).await;
    let mut sse = Sse::open(&http, &neg).await;
    assert_eq!(
        sse.post
            .post(b"{\"protocol\":\"messagepack\",\"version\":1}\x1e")
            .await
            .status,
        200
    );
    let raw = sse.next_event_raw().await;
    assert_eq!(
        String::from_utf8_lossy(&raw),
        "data: {\"error\":\"Cannot use the 'messagepack' protocol on the current transport. The transport does not support 'Binary' transfer format.\"}\x1e\r\n\r\n"
    );
    let rest_bytes = sse.expect_end().await;
    assert!(
        rest_bytes.is_empty(),
        "after the handshake error: {:?}",
        String::from_utf8_lossy(&rest_bytes)
    );
    sb.stop().await;
}

// ---------------------------------------------------------------------------------------------
// status codes

#[tokio::test]
async fn missing_and_unknown_ids() {
    let (sb, base, key) = start(ServiceMode::Serverless).await;
    let http = reqwest::Client::new();
    let tok = client_token(&key, "ids", None);
    let no_id = format!("{base}/client/?hub=ids");
    let unknown = format!("{base}/client/?hub=ids&id=no-such-token");
    for (url, expected) in [
        (&no_id, (400, "Connection ID required")),
        (&unknown, (404, "No Connection with that ID")),
    ] {
        let expected = (expected.0, expected.1.to_owned());
        let lp_get = send(http.get(url.as_str()).bearer_auth(&tok), "GET").await;
        assert_eq!(lp_get.status_text(), expected, "long-poll GET {url}");
        let sse_get = send(
            http.get(format!("{url}&access_token={tok}"))
                .header("Accept", "text/event-stream"),
            "SSE GET",
        )
        .await;
        assert_eq!(sse_get.status_text(), expected, "SSE GET {url}");
        let post = send(http.post(url.as_str()).bearer_auth(&tok).body("{}"), "POST").await;
        assert_eq!(post.status_text(), expected, "POST {url}");
        let delete = send(http.delete(url.as_str()).bearer_auth(&tok), "DELETE").await;
        assert_eq!(delete.status_text(), expected, "DELETE {url}");
    }
    // An id negotiated for another hub is unknown here.
    let other = negotiated(&base, "other", &client_token(&key, "other", None)).await;
    let token_part = other.url.split("&id=").nth(1).unwrap();
    let a = send(
        http.get(format!("{base}/client/?hub=ids&id={token_part}"))
            .bearer_auth(&tok),
        "GET",
    )
    .await;
    assert_eq!(
        a.status_text(),
        (404, "No Connection with that ID".to_owned())
    );
    // Other methods are not allowed.
    let put = send(http.put(unknown.as_str()).bearer_auth(&tok), "PUT").await;
    assert_eq!(put.status, 405);
    sb.stop().await;
}

#[tokio::test]
async fn misuse_of_an_sse_connection() {
    let (sb, base, key) = start(ServiceMode::Serverless).await;
    let http = reqwest::Client::new();
    let tok = client_token(&key, "mis", None);
    let neg = negotiated(&base, "mis", &tok).await;
    let mut sse = Sse::open(&http, &neg).await;
    assert_eq!(sse.post.post(JSON_HANDSHAKE.as_bytes()).await.status, 200);
    assert_eq!(sse.next_data().await, b"{}\x1e");

    assert_eq!(
        sse.post.delete().await.status_text(),
        (
            400,
            "Cannot terminate this connection using the DELETE endpoint.".to_owned()
        )
    );
    let second = Sse::open_raw(&http, &neg).await;
    assert_eq!(second.status().as_u16(), 409, "a second SSE stream");
    drop(second);
    assert_eq!(
        sse.post.poll().await.status_text(),
        (400, "Cannot change transports mid-connection".to_owned())
    );
    // The first stream is unaffected.
    let rest = Rest::new(&base, &key);
    rest.broadcast("mis", "note", json!([1])).await;
    assert_eq!(
        sse.next_message().await,
        json!({ "type": 1, "target": "note", "arguments": [1] })
    );

    // And the other way round: an SSE GET on a long-polling connection.
    let lp = connect_lp(&http, &base, "mis", &tok).await;
    let n = Negotiated {
        url: lp.url.clone(),
        connection_id: lp.connection_id.clone(),
        token: tok.clone(),
    };
    let resp = Sse::open_raw(&http, &n).await;
    assert_eq!(resp.status().as_u16(), 400);
    assert_eq!(
        resp.text().await.unwrap(),
        "Cannot change transports mid-connection"
    );
    sb.stop().await;
}

#[tokio::test]
async fn a_post_over_the_message_size_limit_is_413() {
    let (sb, base, key) = start_with(Config {
        mode: ServiceMode::Serverless,
        limits: switchboard::config::LimitsConfig {
            max_message_size: 4096,
            ..Default::default()
        },
        ..Config::default()
    })
    .await;
    let http = reqwest::Client::new();
    let lp = connect_lp(&http, &base, "big", &client_token(&key, "big", None)).await;
    let big = format!(
        "{{\"type\":1,\"target\":\"note\",\"arguments\":[\"{}\"]}}\x1e",
        "x".repeat(5000)
    );
    let a = lp.post(big.as_bytes()).await;
    assert_eq!(a.status, 413);
    assert_eq!(a.header("content-type"), Some("application/json"));
    assert_eq!(
        serde_json::from_slice::<Value>(&a.body).expect("JSON body"),
        json!({
            "code": "Error.PayloadTooLarge",
            "message": "The maximum message size of 4096B was exceeded.",
        })
    );
    // A body of exactly the limit is accepted, and the connection keeps working.
    let head = "{\"type\":1,\"target\":\"note\",\"arguments\":[\"";
    let tail = "\"]}\x1e";
    let exact = format!("{head}{}{tail}", "y".repeat(4096 - head.len() - tail.len()));
    assert_eq!(exact.len(), 4096);
    assert_eq!(lp.post(exact.as_bytes()).await.status, 200);
    let inv = b"{\"type\":1,\"invocationId\":\"1\",\"target\":\"Echo\",\"arguments\":[]}\x1e";
    assert_eq!(lp.post(inv).await.status, 200);
    assert_eq!(
        lp.next_records().await,
        [json!({ "type": 3, "invocationId": "1", "error": no_upstream("big", "Echo") })]
    );
    sb.stop().await;
}

/// Input refused after the handshake ends the connection with a Close message saying why, on
/// the HTTP transports too: a malformed message, and a message that grows past the limit over
/// several POSTs (each under it).
#[tokio::test]
async fn refused_input_by_post_ends_in_a_close_message() {
    let (sb, base, key) = start_with(Config {
        mode: ServiceMode::Serverless,
        limits: switchboard::config::LimitsConfig {
            max_message_size: 1024,
            ..Default::default()
        },
        ..Config::default()
    })
    .await;
    let http = reqwest::Client::new();
    let token = client_token(&key, "bad", None);
    let closes_with = |error: &str| json!({ "type": 7, "error": format!("Connection closed with an error. {error}") });

    // Long polling, malformed: the next poll carries the Close message, the one after is 204.
    let lp = connect_lp(&http, &base, "bad", &token).await;
    assert_eq!(lp.post(b"{\"type\":\"one\"}\x1e").await.status, 200);
    let close = lp.next_records().await;
    assert_eq!(close.len(), 1, "{close:?}");
    assert_eq!(close[0]["type"], 7);
    assert!(
        close[0]["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("Connection closed with an error. ")),
        "{close:?}"
    );
    assert_eq!(lp.poll().await.status, 204);

    // Long polling, one message over the limit in two POSTs.
    let lp = connect_lp(&http, &base, "bad", &token).await;
    let half = format!(
        "{{\"type\":1,\"target\":\"x\",\"arguments\":[\"{}",
        "a".repeat(700)
    );
    assert_eq!(lp.post(half.as_bytes()).await.status, 200);
    assert_eq!(lp.post(half.as_bytes()).await.status, 200);
    assert_eq!(
        lp.next_records().await,
        [closes_with(
            "The maximum message size of 1024B was exceeded."
        )]
    );

    // Server-Sent Events, malformed: the Close message is the last event, then the stream ends.
    let n = negotiated(&base, "bad", &token).await;
    let mut sse = Sse::open(&http, &n).await;
    assert_eq!(sse.post.post(JSON_HANDSHAKE.as_bytes()).await.status, 200);
    assert_eq!(sse.next_data().await, b"{}\x1e");
    assert_eq!(sse.post.post(b"[1,2]\x1e").await.status, 200);
    let close = sse.next_message().await;
    assert_eq!(close["type"], 7, "{close}");
    assert!(
        close["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("Connection closed with an error. ")),
        "{close}"
    );
    assert!(sse.expect_end().await.is_empty());
    assert_eq!(sb.metrics().get(names::protocol_errors), Some(3));
    sb.stop().await;
}

#[tokio::test]
async fn tokens_are_checked_on_every_http_transport_request() {
    let (sb, base, key) = start(ServiceMode::Serverless).await;
    let http = reqwest::Client::new();
    let good = client_token(&key, "tok", None);
    let expired = expired_client_token(TEST_KEY, "tok");
    let other_hub = client_token(&key, "elsewhere", None);

    assert_eq!(negotiate_raw(&base, "tok", None, V1).await.status, 401);
    assert_eq!(
        negotiate_raw(&base, "tok", Some(&expired), V1).await.status,
        401
    );

    // A negotiated long-polling id: every request needs a valid token of its own.
    let neg = negotiated(&base, "tok", &good).await;
    for (label, tok) in [
        ("none", None),
        ("expired", Some(&expired)),
        ("other hub", Some(&other_hub)),
    ] {
        let with = |req: reqwest::RequestBuilder| match tok {
            Some(t) => req.bearer_auth(t),
            None => req,
        };
        let a = send(with(http.get(&neg.url)), "GET").await;
        assert_eq!(a.status, 401, "first poll, token {label}: {}", a.text());
        let a = send(
            with(http.get(&neg.url)).header("Accept", "text/event-stream"),
            "SSE GET",
        )
        .await;
        assert_eq!(a.status, 401, "SSE GET, token {label}: {}", a.text());
    }
    // The refusals did not use up the id.
    let lp = connect_lp_from(&http, &neg).await;
    for (label, tok) in [("none", None), ("expired", Some(&expired))] {
        let with = |req: reqwest::RequestBuilder| match tok {
            Some(t) => req.bearer_auth(t),
            None => req,
        };
        let a = send(with(http.get(&lp.url)), "GET").await;
        assert_eq!(a.status, 401, "poll, token {label}: {}", a.text());
        let a = send(with(http.post(&lp.url)).body("{\"type\":6}\x1e"), "POST").await;
        assert_eq!(a.status, 401, "POST, token {label}: {}", a.text());
        let a = send(with(http.delete(&lp.url)), "DELETE").await;
        assert_eq!(a.status, 401, "DELETE, token {label}: {}", a.text());
    }
    let body: Value = serde_json::from_slice(
        &send(http.get(&lp.url).bearer_auth(&expired), "GET")
            .await
            .body,
    )
    .expect("a JSON 401 body");
    assert_eq!(body["code"], "Error.Unauthorized");
    // Still connected.
    let rest = Rest::new(&base, &key);
    assert_eq!(rest.connection_status("tok", &lp.connection_id).await, 200);

    // SSE: the token in the access_token query, as EventSource sends it.
    let neg = negotiated(&base, "tok", &good).await;
    let expired_neg = Negotiated {
        url: neg.url.clone(),
        connection_id: neg.connection_id.clone(),
        token: expired.clone(),
    };
    assert_eq!(
        Sse::open_raw(&http, &expired_neg).await.status().as_u16(),
        401
    );
    let mut sse = Sse::open(&http, &neg).await;
    assert_eq!(sse.post.post(JSON_HANDSHAKE.as_bytes()).await.status, 200);
    assert_eq!(sse.next_data().await, b"{}\x1e");
    sb.stop().await;
}

/// The first poll and the JSON handshake on an already negotiated id.
async fn connect_lp_from(http: &reqwest::Client, n: &Negotiated) -> Lp {
    let lp = Lp::new(http, n);
    let first = lp.poll().await;
    assert_eq!(
        (first.status, first.body.len()),
        (200, 0),
        "first poll: {}",
        first.text()
    );
    assert_eq!(lp.post(JSON_HANDSHAKE.as_bytes()).await.status, 200);
    assert_eq!(lp.poll().await.body, b"{}\x1e");
    lp
}
