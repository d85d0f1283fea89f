//! SSE streams and long polls served outside actix-http (issue 15): once an SSE answer's head is
//! out, and while a poll waits, the connection's task owns the socket. Byte-level over raw TCP:
//! the answers of a parked poll, the connection kept for the next requests (pipelined ones
//! too), CORS on answers written outside actix-web, clients that leave, and HTTP/1.0.

mod common;
#[path = "common/raw_http.rs"]
mod raw_http;

use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use common::{JSON_HANDSHAKE, Rest, client_token, json_records, negotiate, start, start_with};
use raw_http::RawResponse;
use serde_json::{Value, json};
use switchboard::{Config, ServiceMode};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// A guard against hanging on any one answer (not a measurement).
const WAIT: Duration = Duration::from_secs(10);

/// A keep-alive HTTP/1.1 connection that reads answers one after another (bytes of the next
/// answer read with one are kept for it).
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    async fn open(base: &str) -> Self {
        let stream = TcpStream::connect(base.trim_start_matches("http://"))
            .await
            .expect("connect");
        Self {
            stream,
            buf: Vec::new(),
        }
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("write");
    }

    async fn fill(&mut self) -> Result<()> {
        let mut chunk = [0u8; 4096];
        let n = self.stream.read(&mut chunk).await.context("read")?;
        if n == 0 {
            bail!(
                "the connection closed (unread: {:?})",
                String::from_utf8_lossy(&self.buf)
            );
        }
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(())
    }

    /// The next answer: its head, and its body by `Content-Length`.
    async fn answer(&mut self) -> RawResponse {
        raw_http::read_next_response(&mut self.stream, &mut self.buf, WAIT)
            .await
            .expect("an answer")
    }

    /// Whether nothing arrives within `quiet` (the broker holds the answer back).
    async fn is_quiet_for(&mut self, quiet: Duration) -> bool {
        self.buf.is_empty() && tokio::time::timeout(quiet, self.fill()).await.is_err()
    }
}

/// A long-polling client's requests on one connection.
struct LongPoll {
    path: String,
    token: String,
    origin: Option<&'static str>,
}

impl LongPoll {
    async fn negotiate(base: &str, hub: &str, token: &str) -> (Self, String) {
        let n = negotiate(base, hub, token, "&negotiateVersion=1").await;
        let path = format!(
            "/client/?hub={hub}&id={}",
            n["connectionToken"].as_str().expect("connectionToken")
        );
        let id = n["connectionId"].as_str().expect("connectionId").to_owned();
        (
            Self {
                path,
                token: token.to_owned(),
                origin: None,
            },
            id,
        )
    }

    fn poll(&self) -> Vec<u8> {
        let origin = self
            .origin
            .map(|o| format!("Origin: {o}\r\n"))
            .unwrap_or_default();
        format!(
            "GET {} HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {}\r\n{origin}\r\n",
            self.path, self.token
        )
        .into_bytes()
    }

    fn post(&self, body: &[u8]) -> Vec<u8> {
        let mut req = format!(
            "POST {} HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {}\r\n\
             Content-Type: text/plain;charset=UTF-8\r\nContent-Length: {}\r\n\r\n",
            self.path,
            self.token,
            body.len()
        )
        .into_bytes();
        req.extend_from_slice(body);
        req
    }

    /// First poll, handshake and its answer on `conn`.
    async fn connect(&self, conn: &mut Conn) {
        conn.send(&self.poll()).await;
        let first = conn.answer().await;
        assert_eq!((first.status, first.body.len()), (200, 0), "first poll");
        conn.send(&self.post(JSON_HANDSHAKE.as_bytes())).await;
        assert_eq!(conn.answer().await.status, 200, "handshake POST");
        conn.send(&self.poll()).await;
        let hs = conn.answer().await;
        assert_eq!(
            (hs.status, &hs.body[..]),
            (200, &b"{}\x1e"[..]),
            "handshake"
        );
    }
}

fn note(n: i64) -> Value {
    json!({ "type": 1, "target": "note", "arguments": [n] })
}

#[tokio::test]
async fn a_parked_poll_is_answered_in_full_and_its_connection_serves_the_next_requests() {
    let (sb, base, key) = start(ServiceMode::Serverless).await;
    let rest = Rest::new(&base, &key);
    let token = client_token(&key, "park", None);
    let (mut lp, _) = LongPoll::negotiate(&base, "park", &token).await;
    lp.origin = Some("https://app.example");
    let mut conn = Conn::open(&base).await;
    lp.connect(&mut conn).await;

    for round in 1..=3 {
        // Nothing queued: the poll waits.
        conn.send(&lp.poll()).await;
        assert!(conn.is_quiet_for(Duration::from_millis(300)).await);
        rest.broadcast("park", "note", json!([round])).await;
        let a = conn.answer().await;
        assert_eq!(a.status, 200, "round {round}");
        assert_eq!(json_records(&a.body), [note(round)], "round {round}");
        assert_eq!(
            a.header("content-length"),
            Some(a.body.len().to_string().as_str())
        );
        assert_eq!(a.header("content-type"), Some("application/octet-stream"));
        assert_eq!(a.header("cache-control"), Some("no-cache, no-store"));
        assert_eq!(a.header("pragma"), Some("no-cache"));
        assert_eq!(a.header("expires"), Some("Thu, 01 Jan 1970 00:00:00 GMT"));
        assert!(a.header("date").is_some(), "a Date header");
        // The CORS middleware's headers, on an answer written outside actix-web.
        assert_eq!(
            a.header("access-control-allow-origin"),
            Some("https://app.example")
        );
        assert_eq!(a.header("access-control-allow-credentials"), Some("true"));
        assert_eq!(a.header("vary"), Some("Origin"));
    }

    // A client that sends its next request while its poll waits gets the waiting poll's
    // (empty) answer at once; the next poll is then served on the same connection.
    conn.send(&lp.poll()).await;
    assert!(conn.is_quiet_for(Duration::from_millis(300)).await);
    conn.send(&lp.poll()).await;
    let early = conn.answer().await;
    assert_eq!((early.status, early.body.len()), (200, 0));
    rest.broadcast("park", "note", json!([4])).await;
    let late = conn.answer().await;
    assert_eq!(json_records(&late.body), [note(4)]);

    // The connection still serves other requests.
    conn.send(&lp.post(b"{\"type\":6}\x1e")).await;
    assert_eq!(conn.answer().await.status, 200, "POST after parked polls");
    sb.stop().await;
}

#[tokio::test]
async fn a_parked_poll_answers_an_origin_not_listed_without_cors_headers() {
    let (sb, base, key) = start_with(Config {
        mode: ServiceMode::Serverless,
        cors: switchboard::config::CorsConfig {
            allowed_origins: vec!["https://app.example".into()],
        },
        ..Config::default()
    })
    .await;
    let rest = Rest::new(&base, &key);
    let token = client_token(&key, "park", None);
    for (origin, allowed) in [
        ("https://app.example", true),
        ("https://evil.example", false),
    ] {
        let (mut lp, _) = LongPoll::negotiate(&base, "park", &token).await;
        lp.origin = Some(origin);
        let mut conn = Conn::open(&base).await;
        lp.connect(&mut conn).await;
        conn.send(&lp.poll()).await;
        assert!(
            conn.is_quiet_for(Duration::from_millis(300)).await,
            "parked"
        );
        rest.broadcast("park", "note", json!([1])).await;
        let a = conn.answer().await;
        assert_eq!(json_records(&a.body), [note(1)], "{origin}");
        assert_eq!(
            a.header("access-control-allow-origin"),
            allowed.then_some(origin),
            "{origin}"
        );
        assert_eq!(
            a.header("access-control-allow-credentials").is_some(),
            allowed
        );
    }
    sb.stop().await;
}

#[tokio::test]
async fn a_client_that_leaves_a_parked_poll_is_disconnected() {
    let (sb, base, key) = start_with(Config {
        mode: ServiceMode::Serverless,
        limits: switchboard::config::LimitsConfig {
            negotiate_timeout_secs: 1,
            ..Default::default()
        },
        ..Config::default()
    })
    .await;
    let rest = Rest::new(&base, &key);
    let token = client_token(&key, "leave", None);
    let (lp, id) = LongPoll::negotiate(&base, "leave", &token).await;
    let mut conn = Conn::open(&base).await;
    lp.connect(&mut conn).await;
    conn.send(&lp.poll()).await;
    assert!(conn.is_quiet_for(Duration::from_millis(300)).await);
    assert_eq!(rest.connection_status("leave", &id).await, 200);
    // The client goes away with its poll pending: the disconnect timeout (1 s) runs from there.
    drop(conn);
    rest.wait_connection_status("leave", &id, 404, WAIT).await;
    sb.stop().await;
}

#[tokio::test]
async fn an_http_1_0_event_stream_is_not_chunked() {
    let (sb, base, key) = start(ServiceMode::Serverless).await;
    let rest = Rest::new(&base, &key);
    let token = client_token(&key, "old", None);
    let (lp, _) = LongPoll::negotiate(&base, "old", &token).await;
    let mut conn = Conn::open(&base).await;
    conn.send(
        format!(
            "GET {}&access_token={token} HTTP/1.0\r\nAccept: text/event-stream\r\n\r\n",
            lp.path
        )
        .as_bytes(),
    )
    .await;
    let head = conn.answer().await;
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-type"), Some("text/event-stream"));
    assert_eq!(head.header("transfer-encoding"), None);
    let mut post = Conn::open(&base).await;
    post.send(&lp.post(JSON_HANDSHAKE.as_bytes())).await;
    assert_eq!(post.answer().await.status, 200);
    rest.broadcast("old", "note", json!([1])).await;
    let expected = b":\r\ndata: {}\x1e\r\n\r\ndata: {\"type\":1,\"target\":\"note\",\"arguments\":[1]}\x1e\r\n\r\n";
    tokio::time::timeout(WAIT, async {
        while conn.buf.len() < expected.len() {
            conn.fill().await.expect("the stream");
        }
    })
    .await
    .expect("the events in time");
    assert_eq!(
        String::from_utf8_lossy(&conn.buf),
        String::from_utf8_lossy(expected)
    );
    sb.stop().await;
}
