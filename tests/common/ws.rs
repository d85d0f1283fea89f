//! The client endpoint's WebSocket by hand, for tests that must see (or send) every frame as it
//! is: open the upgrade with any query and token, read frames, do the JSON handshake, split JSON
//! records. [`TestClient`](super::TestClient) is the SignalR client built on the same upgrade.

use std::io;
use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
pub use tokio_tungstenite::tungstenite::protocol::frame::coding::Data;
use tokio_tungstenite::tungstenite::protocol::frame::coding::OpCode;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async};

use super::{JSON_HANDSHAKE, client_token, negotiate};

/// A raw client WebSocket.
pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How long an upgrade may take.
const UPGRADE: Duration = Duration::from_secs(5);
/// How long [`next_frame`] waits.
const FRAME: Duration = Duration::from_secs(10);

/// The WebSocket upgrade of `/client/?<query>`, with `token` (if any) as a bearer
/// `Authorization` header; no handshake. A refusal is `Err(Error::Http(response))`; an upgrade
/// that takes more than 5 s is an `Io` error of kind `TimedOut`.
pub async fn open(base: &str, query: &str, token: Option<&str>) -> Result<Ws, tungstenite::Error> {
    let url = format!("{}/client/?{query}", base.replacen("http", "ws", 1));
    let mut request = url.into_client_request()?;
    if let Some(t) = token {
        let value = HeaderValue::from_str(&format!("Bearer {t}")).expect("a header value");
        request.headers_mut().insert("Authorization", value);
    }
    match tokio::time::timeout(UPGRADE, connect_async(request)).await {
        Ok(upgraded) => upgraded.map(|(ws, _)| ws),
        Err(_) => Err(tungstenite::Error::Io(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("the WebSocket upgrade of /client/?{query} took more than {UPGRADE:?}"),
        ))),
    }
}

/// Negotiate (version 1) with a client token of `key` for `hub` and `user`, and open the
/// WebSocket (no handshake yet). Returns the socket and the connection id.
pub async fn open_negotiated(base: &str, key: &str, hub: &str, user: Option<&str>) -> (Ws, String) {
    let token = client_token(key, hub, user);
    let body = negotiate(base, hub, &token, "&negotiateVersion=1").await;
    let id = body["connectionId"]
        .as_str()
        .expect("connectionId")
        .to_owned();
    let connection_token = body["connectionToken"].as_str().expect("connectionToken");
    let ws = open(
        base,
        &format!("hub={hub}&id={connection_token}"),
        Some(&token),
    )
    .await
    .expect("WebSocket upgrade");
    (ws, id)
}

/// [`open_negotiated`] and a completed JSON handshake.
pub async fn connect_json(base: &str, key: &str, hub: &str, user: Option<&str>) -> (Ws, String) {
    let (mut ws, id) = open_negotiated(base, key, hub, user).await;
    handshake_json(&mut ws).await;
    (ws, id)
}

/// Send the JSON handshake; the answer must be exactly `{}` and its separator.
pub async fn handshake_json(ws: &mut Ws) {
    ws.send(Message::text(JSON_HANDSHAKE))
        .await
        .expect("send the handshake");
    assert_eq!(next_text(ws).await, "{}\x1e");
}

/// The next frame other than WebSocket Ping and Pong (at most 10 s).
pub async fn next_frame(ws: &mut Ws) -> Message {
    loop {
        let m = tokio::time::timeout(FRAME, ws.next())
            .await
            .expect("timed out waiting for a frame")
            .expect("stream ended")
            .expect("websocket error");
        if !matches!(m, Message::Ping(_) | Message::Pong(_)) {
            return m;
        }
    }
}

/// The next frame, which must be a Text frame.
pub async fn next_text(ws: &mut Ws) -> String {
    match next_frame(ws).await {
        Message::Text(t) => t.to_string(),
        other => panic!("expected a text frame, got {other:?}"),
    }
}

/// The next frame as one JSON record (its separator removed).
pub async fn next_record(ws: &mut Ws) -> Value {
    let text = next_text(ws).await;
    serde_json::from_str(text.trim_end_matches('\x1e'))
        .unwrap_or_else(|e| panic!("not one JSON record ({e}): {text:?}"))
}

/// The next JSON hub message other than Ping. `pending` keeps the records of a frame that are
/// not read yet (one `Vec` per socket).
pub async fn next_json(ws: &mut Ws, pending: &mut Vec<Value>) -> Value {
    loop {
        if !pending.is_empty() {
            let v = pending.remove(0);
            if v["type"] != 6 {
                return v;
            }
            continue;
        }
        match next_frame(ws).await {
            Message::Text(t) => {
                for rec in t.split('\x1e').filter(|r| !r.is_empty()) {
                    pending.push(serde_json::from_str(rec).expect("a JSON record"));
                }
            }
            Message::Close(_) => panic!("closed while waiting for a message"),
            other => panic!("unexpected frame {other:?}"),
        }
    }
}

/// The next frame, which must be a close frame with a status: its code and reason.
pub async fn next_close(ws: &mut Ws) -> (u16, String) {
    match next_frame(ws).await {
        Message::Close(Some(frame)) => (u16::from(frame.code), frame.reason.to_string()),
        other => panic!("expected a close frame with a status, got {other:?}"),
    }
}

/// A raw data frame: `opcode` text, binary or continuation, `fin` false when more fragments
/// follow. Its payload need not be UTF-8 (a `Message::Text` must be).
pub fn raw_frame(payload: &[u8], opcode: Data, fin: bool) -> Message {
    Message::Frame(Frame::message(payload.to_vec(), OpCode::Data(opcode), fin))
}
