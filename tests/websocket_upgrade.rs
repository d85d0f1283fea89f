//! The WebSocket upgrade as the bytes on the wire show it: the socket leaves actix-http once the
//! handshake is answered (`src/http/upgrade.rs`). Refusals are whole HTTP answers with their
//! JSON body; bytes a client sends right behind its upgrade request are read as frames; other
//! upgrade requests are answered like any request; hub servers upgrade the same way.

mod common;
#[path = "common/raw_http.rs"]
mod raw_http;

use std::io::Cursor;
use std::time::Duration;

use common::{client_token, start};
use switchboard::ServiceMode;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::{Frame, FrameHeader};

const GUARD: Duration = Duration::from_secs(10);

fn upgrade_request(path_and_query: &str, token: Option<&str>) -> String {
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    format!(
        "GET {path_and_query} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\n\
         Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{auth}\r\n"
    )
}

/// A client's masked text frame.
fn text_frame(payload: &[u8]) -> Vec<u8> {
    let mut frame = Frame::message(payload.to_vec(), OpCode::Data(Data::Text), true);
    frame.header_mut().mask = Some([0x37, 0xfa, 0x21, 0x3d]);
    let mut out = Vec::new();
    frame.format(&mut out).unwrap();
    out
}

/// Read the answer's head; returns it and the bytes after it.
async fn read_head(stream: &mut TcpStream) -> (String, Vec<u8>) {
    let mut buf = Vec::new();
    loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..i + 4]).into_owned();
            return (head, buf[i + 4..].to_vec());
        }
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(GUARD, stream.read(&mut chunk))
            .await
            .expect("an answer")
            .unwrap();
        assert!(
            n > 0,
            "closed before a head: {:?}",
            String::from_utf8_lossy(&buf)
        );
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// The next unmasked server frame's payload, reading more into `buf` as needed.
async fn read_frame(stream: &mut TcpStream, buf: &mut Vec<u8>) -> (OpCode, Vec<u8>) {
    loop {
        let mut cursor = Cursor::new(&buf[..]);
        if let Some((header, len)) = FrameHeader::parse(&mut cursor).unwrap() {
            let start = cursor.position() as usize;
            let end = start + len as usize;
            if buf.len() >= end {
                assert!(header.mask.is_none(), "server frames are not masked");
                let payload = buf[start..end].to_vec();
                buf.drain(..end);
                return (header.opcode, payload);
            }
        }
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(GUARD, stream.read(&mut chunk))
            .await
            .expect("a frame")
            .unwrap();
        assert!(n > 0, "closed before a frame");
        buf.extend_from_slice(&chunk[..n]);
    }
}

#[tokio::test]
async fn a_refused_upgrade_is_a_whole_answer_with_its_json_body_then_the_connection_closes() {
    let (sb, base, _key) = start(ServiceMode::Serverless).await;
    let mut stream = raw_http::connect(&base).await.unwrap();
    raw_http::send(
        &mut stream,
        upgrade_request("/client/?hub=chat", None).as_bytes(),
    )
    .await
    .unwrap();
    let response = raw_http::read_response(&mut stream, GUARD).await.unwrap();
    assert_eq!(response.status, 401);
    assert_eq!(response.header("connection"), Some("close"));
    let body = response.json();
    assert!(
        body["message"].is_string() || body["error"].is_string(),
        "{body}"
    );
    assert!(raw_http::closes_within(&mut stream, GUARD).await);
    sb.stop().await;
}

#[tokio::test]
async fn a_handshake_without_its_key_is_refused_with_400() {
    let (sb, base, key) = start(ServiceMode::Serverless).await;
    let token = client_token(&key, "chat", None);
    let request = upgrade_request("/client/?hub=chat", Some(&token))
        .replace("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", "");
    let mut stream = raw_http::connect(&base).await.unwrap();
    raw_http::send(&mut stream, request.as_bytes())
        .await
        .unwrap();
    let response = raw_http::read_response(&mut stream, GUARD).await.unwrap();
    assert_eq!(response.status, 400);
    assert!(raw_http::closes_within(&mut stream, GUARD).await);
    sb.stop().await;
}

#[tokio::test]
async fn an_upgrade_request_to_another_endpoint_is_answered_like_any_request() {
    let (sb, base, _key) = start(ServiceMode::Serverless).await;
    let mut stream = raw_http::connect(&base).await.unwrap();
    raw_http::send(&mut stream, upgrade_request("/healthz", None).as_bytes())
        .await
        .unwrap();
    let response = raw_http::read_response(&mut stream, GUARD).await.unwrap();
    assert_eq!(response.status, 200);
    assert!(raw_http::closes_within(&mut stream, GUARD).await);
    sb.stop().await;
}

#[tokio::test]
async fn frames_sent_with_the_upgrade_request_are_read() {
    let (sb, base, key) = start(ServiceMode::Serverless).await;
    let token = client_token(&key, "chat", None);
    // The request, the SignalR handshake and a Ping in one write: the frames arrive in the same
    // read as the request's head.
    let mut bytes = upgrade_request("/client/?hub=chat", Some(&token)).into_bytes();
    bytes.extend(text_frame(b"{\"protocol\":\"json\",\"version\":1}\x1e"));
    bytes.extend(text_frame(b"{\"type\":6}\x1e"));
    let mut stream = raw_http::connect(&base).await.unwrap();
    stream.write_all(&bytes).await.unwrap();
    let (head, mut rest) = read_head(&mut stream).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    let head = head.to_ascii_lowercase();
    assert!(head.contains("upgrade: websocket"), "{head}");
    // RFC 6455's example key and its accept value.
    assert!(
        head.contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo="),
        "{head}"
    );
    let (opcode, payload) = read_frame(&mut stream, &mut rest).await;
    assert_eq!(opcode, OpCode::Data(Data::Text));
    assert_eq!(payload, b"{}\x1e", "the handshake's answer");
    sb.stop().await;
}
