//! The edge of the HTTP layer: tokens are checked before any body is read, a body has
//! `limits.body_timeout_secs` to arrive (else 408 with a JSON error, and the connection is
//! closed), and request heads are held to Azure's limits — URL over 12 KiB → 414, header block
//! over 16 KiB → 431 — tokens included.
//!
//! Byte-level over raw TCP ([`raw_http`]), so that a head can be sent without its body and a body
//! can stall. The durations passed to the helpers only guard against hanging.

mod common;
#[path = "common/raw_http.rs"]
mod raw_http;

use std::time::Duration;

use anyhow::Result;
use serde_json::json;
use switchboard::ServiceMode;

use common::{client_token, config, negotiate, now, rest_token, sign, start_with};
use raw_http::{closes_within, connect, read_response, send};

/// How long a test waits for an answer or a close before failing.
const GUARD: Duration = Duration::from_secs(20);

fn admin_token(key: &str) -> String {
    sign(
        key,
        &json!({"aud": "http://127.0.0.1/admin/settings", "exp": now() + 600}),
    )
}

/// A broker whose bodies have `secs` to arrive.
async fn broker(secs: u64) -> (switchboard::SwitchboardHandle, String, String) {
    let mut c = config(ServiceMode::Serverless);
    c.limits.body_timeout_secs = secs;
    start_with(c).await
}

/// Send `head` (and the start of a body) and return the answer, which must come with the
/// rest of the body still unsent.
async fn answer_to_partial(
    base: &str,
    head: &str,
    partial_body: &str,
) -> Result<(raw_http::RawResponse, tokio::net::TcpStream)> {
    let mut s = connect(base).await?;
    send(&mut s, format!("{head}\r\n{partial_body}").as_bytes()).await?;
    let r = read_response(&mut s, GUARD).await?;
    Ok((r, s))
}

#[tokio::test]
async fn an_unauthenticated_settings_patch_is_refused_before_its_body() -> Result<()> {
    // A body timeout far beyond the guard: only a check made before the body answers in time.
    let (handle, base, _key) = broker(3600).await;
    let framings = [
        ("Content-Length: 100000\r\n", "{\"mode\":"),
        ("Transfer-Encoding: chunked\r\n", "8\r\n{\"mode\":\r\n"),
    ];
    for auth in ["", "Authorization: Bearer not-a-token\r\n"] {
        for (framing, partial) in framings {
            let head = format!(
                "PATCH /admin/settings HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}\
                 Content-Type: application/json\r\n{framing}"
            );
            let (r, mut s) = answer_to_partial(&base, &head, partial).await?;
            assert_eq!(r.status, 401, "{auth:?} {framing:?}: {:?}", r.json());
            assert_eq!(r.json()["code"], "Error.Unauthorized");
            // The unread rest of the body is not waited for.
            assert!(
                closes_within(&mut s, GUARD).await,
                "{auth:?} {framing:?}: the connection stays open"
            );
        }
    }
    assert_eq!(
        handle.control().settings()["mode"],
        "serverless",
        "nothing changed"
    );
    handle.stop().await;
    Ok(())
}

#[tokio::test]
async fn a_body_nobody_reads_does_not_hold_the_connection() -> Result<()> {
    // Negotiate reads no body: a chunked one that never ends is not drained after the answer.
    let (handle, base, key) = broker(3600).await;
    let token = client_token(&key, "chat", None);
    let head = format!(
        "POST /client/negotiate?hub=chat&negotiateVersion=1 HTTP/1.1\r\nHost: 127.0.0.1\r\n\
         Authorization: Bearer {token}\r\nTransfer-Encoding: chunked\r\n"
    );
    let (r, mut s) = answer_to_partial(&base, &head, "2\r\n{}\r\n").await?;
    assert_eq!(r.status, 200);
    assert!(
        closes_within(&mut s, GUARD).await,
        "the connection stays open"
    );
    // A body that is read keeps the connection for the next request, chunked or not.
    let mut s = connect(&base).await?;
    let rest = rest_token(&key, "/api/hubs/chat/:send");
    let body = "{\"target\":\"t\",\"arguments\":[]}";
    for framing in [
        format!("Content-Length: {}\r\n\r\n{body}", body.len()),
        format!(
            "Transfer-Encoding: chunked\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n",
            body.len()
        ),
    ] {
        send(
            &mut s,
            format!(
                "POST /api/hubs/chat/:send HTTP/1.1\r\nHost: 127.0.0.1\r\n\
                 Authorization: Bearer {rest}\r\nContent-Type: application/json\r\n{framing}"
            )
            .as_bytes(),
        )
        .await?;
        let r = read_response(&mut s, GUARD).await?;
        assert_eq!(r.status, 202, "{:?}", String::from_utf8_lossy(&r.body));
        assert_ne!(r.header("connection"), Some("close"));
    }
    handle.stop().await;
    Ok(())
}

/// The 408 of a stalled body: JSON, `Connection: close`, and the broker closes the socket.
async fn assert_timed_out(r: raw_http::RawResponse, mut s: tokio::net::TcpStream, what: &str) {
    assert_eq!(
        r.status,
        408,
        "{what}: {:?}",
        String::from_utf8_lossy(&r.body)
    );
    assert_eq!(r.json()["code"], "Error.RequestTimeout", "{what}");
    assert_eq!(r.header("x-ms-error-code"), Some("Error.RequestTimeout"));
    assert_eq!(r.header("connection"), Some("close"), "{what}");
    assert!(
        closes_within(&mut s, GUARD).await,
        "{what}: the connection stays open"
    );
}

#[tokio::test]
async fn a_stalled_settings_body_with_a_valid_token_gets_408() -> Result<()> {
    let (handle, base, key) = broker(1).await;
    let token = admin_token(&key);
    let head = format!(
        "PATCH /admin/settings HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: 50\r\n"
    );
    let (r, s) = answer_to_partial(&base, &head, "{\"mode\":").await?;
    assert_timed_out(r, s, "PATCH /admin/settings, Content-Length").await;

    // Chunked: the stalled chunk stream is not drained either.
    let head = format!(
        "PATCH /admin/settings HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n"
    );
    let (r, s) = answer_to_partial(&base, &head, "8\r\n{\"mode\":\r\n").await?;
    assert_timed_out(r, s, "PATCH /admin/settings, chunked").await;

    assert_eq!(handle.control().settings()["mode"], "serverless");
    handle.stop().await;
    Ok(())
}

#[tokio::test]
async fn a_stalled_rest_body_gets_408() -> Result<()> {
    let (handle, base, key) = broker(1).await;
    let token = rest_token(&key, "/api/hubs/chat/:send");
    let head = format!(
        "POST /api/hubs/chat/:send?api-version=2022-06-01 HTTP/1.1\r\nHost: 127.0.0.1\r\n\
         Authorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: 60\r\n"
    );
    let (r, s) = answer_to_partial(&base, &head, "{\"target\":\"x\",").await?;
    assert_timed_out(r, s, "REST send").await;
    handle.stop().await;
    Ok(())
}

#[tokio::test]
async fn a_stalled_long_polling_send_gets_408() -> Result<()> {
    let (handle, base, key) = broker(1).await;
    let token = client_token(&key, "chat", Some("u1"));
    let neg = negotiate(&base, "chat", &token, "&negotiateVersion=1").await;
    let id = neg["connectionToken"].as_str().expect("connectionToken");
    let http = reqwest::Client::new();
    let first = http
        .get(format!("{base}/client/?hub=chat&id={id}"))
        .bearer_auth(&token)
        .send()
        .await?;
    assert_eq!(first.status(), 200, "the first poll opens the connection");

    let head = format!(
        "POST /client/?hub=chat&id={id} HTTP/1.1\r\nHost: 127.0.0.1\r\n\
         Authorization: Bearer {token}\r\nContent-Type: text/plain\r\nContent-Length: 40\r\n"
    );
    let (r, s) = answer_to_partial(&base, &head, "{\"protocol\":").await?;
    assert_timed_out(r, s, "long-polling POST").await;
    handle.stop().await;
    Ok(())
}

/// `method path` with `extra` header lines, no body; the answer and the socket.
async fn exchange(
    base: &str,
    request_line: &str,
    extra: &str,
) -> Result<(raw_http::RawResponse, tokio::net::TcpStream)> {
    let head =
        format!("{request_line} HTTP/1.1\r\nHost: 127.0.0.1\r\n{extra}Content-Length: 0\r\n");
    answer_to_partial(base, &head, "").await
}

#[tokio::test]
async fn heads_over_azures_limits_are_refused_with_json() -> Result<()> {
    let (handle, base, key) = broker(10).await;
    let token = client_token(&key, "chat", None);

    // Within the limits: served as usual.
    let (r, _s) = exchange(
        &base,
        "GET /api/health",
        &format!("X-Padding: {}\r\n", "p".repeat(15_000)),
    )
    .await?;
    assert_eq!(r.status, 200);

    // A header block over 16 KiB, by any header or by the token itself.
    for extra in [
        format!("X-Padding: {}\r\n", "p".repeat(20 * 1024)),
        format!("Authorization: Bearer {token}{}\r\n", "A".repeat(20 * 1024)),
    ] {
        let (r, mut s) = exchange(&base, "POST /client/negotiate?hub=chat", &extra).await?;
        assert_eq!(r.status, 431, "{:?}", String::from_utf8_lossy(&r.body));
        assert_eq!(r.json()["code"], "Error.RequestHeaderFieldsTooLarge");
        assert_eq!(r.header("connection"), Some("close"));
        assert!(closes_within(&mut s, GUARD).await);
    }

    // A URL over 12 KiB, here by an access_token query.
    let url = format!(
        "POST /client/negotiate?hub=chat&access_token={token}{}",
        "A".repeat(13 * 1024)
    );
    let (r, mut s) = exchange(&base, &url, "").await?;
    assert_eq!(r.status, 414, "{:?}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["code"], "Error.UriTooLong");
    assert_eq!(r.header("connection"), Some("close"));
    assert!(closes_within(&mut s, GUARD).await);

    // Before any route or token check: also on a WebSocket upgrade and on a preflight.
    let upgrade = format!(
        "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nX-Padding: {}\r\n",
        "p".repeat(20 * 1024)
    );
    let (r, _s) = exchange(&base, "GET /client/?hub=chat", &upgrade).await?;
    assert_eq!(r.status, 431);
    let preflight = format!(
        "Origin: http://example.com\r\nAccess-Control-Request-Method: POST\r\nX-Padding: {}\r\n",
        "p".repeat(20 * 1024)
    );
    let (r, _s) = exchange(&base, "OPTIONS /client/negotiate?hub=chat", &preflight).await?;
    assert_eq!(r.status, 431);
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("http://example.com"),
        "a browser can read the refusal"
    );
    handle.stop().await;
    Ok(())
}

/// Beyond what our check sees, actix-http refuses the head itself: more than 96 headers is 431
/// (without a body), never a silent close.
#[tokio::test]
async fn too_many_headers_get_431_from_actix() -> Result<()> {
    let (handle, base, _key) = broker(10).await;
    let extra: String = (0..100).map(|i| format!("X-H{i}: v\r\n")).collect();
    let (r, _s) = exchange(&base, "GET /api/health", &extra).await?;
    assert_eq!(r.status, 431);
    handle.stop().await;
    Ok(())
}
