//! A hub server scripted by a test: speaks the service protocol on `/server/?hub=` with the
//! crate's codec (itself checked against the reference vectors).

use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use bytes::{Bytes, BytesMut};
use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::json;
use switchboard::protocol::service::{self, ConnectionType, Extensions, ServiceMessage};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::{now, sign};

const T: Duration = Duration::from_secs(5);

/// A hub server scripted by the test.
pub struct FakeServer {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    buf: BytesMut,
    /// The handshake request of the last client [`Self::accept_client`] took.
    pub last_handshake: Vec<u8>,
}

pub fn server_token(key: &str, hub: &str, server_id: &str) -> String {
    sign(
        key,
        &json!({
            "aud": format!("http://127.0.0.1/server/?hub={hub}"),
            "exp": now() + 600, "iat": now(), "nbf": now(), "nameid": server_id,
        }),
    )
}

impl FakeServer {
    /// Connect and hand-shake; `Err` carries the handshake error text.
    pub async fn connect(
        base: &str,
        key: &str,
        hub: &str,
        server_id: &str,
        kind: ConnectionType,
    ) -> Result<Self> {
        let url = format!(
            "{}/server/?hub={hub}&cid=c-{server_id}",
            base.replacen("http", "ws", 1)
        );
        let mut req = url.into_client_request()?;
        req.headers_mut().insert(
            "Authorization",
            format!("Bearer {}", server_token(key, hub, server_id)).parse()?,
        );
        req.headers_mut()
            .insert("X-ASRS-Server-Id", server_id.parse()?);
        let (ws, _) = tokio_tungstenite::connect_async(req).await?;
        let mut s = Self {
            ws,
            buf: BytesMut::new(),
            last_handshake: Vec::new(),
        };
        s.send(&ServiceMessage::HandshakeRequest {
            version: 1,
            connection_type: kind,
            target: None,
            migration_level: 0,
            extensions: Extensions::default(),
            allow_stateful_reconnects: false,
        })
        .await?;
        match s.next().await? {
            ServiceMessage::HandshakeResponse { error_message, .. } => {
                match error_message.as_deref() {
                    None | Some("") => Ok(s),
                    Some(e) => bail!("{e}"),
                }
            }
            other => bail!("expected a HandshakeResponse, got {other:?}"),
        }
    }

    pub async fn send(&mut self, msg: &ServiceMessage) -> Result<()> {
        self.ws.send(Message::binary(service::encode(msg))).await?;
        Ok(())
    }

    /// Send one WebSocket message as it is (malformed input, raw frames).
    pub async fn send_raw(&mut self, msg: Message) -> Result<()> {
        self.ws.send(msg).await?;
        Ok(())
    }

    /// Read until the service closes the connection: its close frame's code and reason.
    pub async fn next_close(&mut self) -> Result<(u16, String)> {
        loop {
            let frame = tokio::time::timeout(T, self.ws.next())
                .await
                .context("timed out waiting for the close frame")?
                .context("the connection ended without a close frame")??;
            if let Message::Close(close) = frame {
                let close = close.context("a close frame without a status")?;
                return Ok((u16::from(close.code), close.reason.to_string()));
            }
        }
    }

    /// The next message that is not an empty keep-alive Ping.
    pub async fn next(&mut self) -> Result<ServiceMessage> {
        loop {
            let frozen = Bytes::copy_from_slice(&self.buf);
            if let Some((msg, used)) = service::decode(&frozen, 1 << 24)? {
                let _ = self.buf.split_to(used);
                match msg {
                    Some(ServiceMessage::Ping { messages }) if messages.is_empty() => continue,
                    Some(m) => return Ok(m),
                    None => continue,
                }
            }
            let frame = tokio::time::timeout(T, self.ws.next())
                .await
                .context("timed out waiting for the service")?
                .context("service closed the connection")??;
            match frame {
                Message::Binary(b) => self.buf.extend_from_slice(&b),
                Message::Close(_) => bail!("service closed the connection"),
                _ => {}
            }
        }
    }

    /// Accept the next client: expect OpenConnection then its handshake request as data, answer
    /// `{}`. Returns (connection id, OpenConnection claims, query, ext protocol).
    pub async fn accept_client(
        &mut self,
    ) -> Result<(
        String,
        Vec<(String, String)>,
        Option<String>,
        Option<String>,
    )> {
        let (id, claims, query, protocol) = match self.next().await? {
            ServiceMessage::OpenConnection {
                connection_id,
                claims,
                query_string,
                extensions,
                ..
            } => (connection_id, claims, query_string, extensions.protocol),
            other => bail!("expected OpenConnection, got {other:?}"),
        };
        let mut handshake = Vec::new();
        while !handshake.contains(&0x1e) {
            match self.next().await? {
                ServiceMessage::ConnectionData {
                    connection_id,
                    payload,
                    ..
                } if connection_id == id => {
                    handshake.extend_from_slice(&payload);
                }
                other => bail!("expected the client's handshake as ConnectionData, got {other:?}"),
            }
        }
        self.data(&id, b"{}\x1e").await?;
        self.last_handshake = handshake;
        Ok((id, claims, query, protocol))
    }

    pub async fn data(&mut self, id: &str, payload: &[u8]) -> Result<()> {
        self.send(&ServiceMessage::ConnectionData {
            connection_id: id.to_owned(),
            payload: Bytes::copy_from_slice(payload),
            extensions: Extensions::default(),
        })
        .await
    }

    /// The next ConnectionData payload (any connection).
    pub async fn next_data(&mut self) -> Result<(String, Bytes)> {
        match self.next().await? {
            ServiceMessage::ConnectionData {
                connection_id,
                payload,
                ..
            } => Ok((connection_id, payload)),
            other => bail!("expected ConnectionData, got {other:?}"),
        }
    }

    pub async fn expect_ack(&mut self, want_id: i32) -> Result<i32> {
        match self.next().await? {
            ServiceMessage::Ack { ack_id, status, .. } if ack_id == want_id => Ok(status),
            other => bail!("expected Ack {want_id}, got {other:?}"),
        }
    }
}
