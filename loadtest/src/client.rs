//! A minimal SignalR client on tokio-tungstenite: optional negotiate, WebSocket with the access
//! token in the `Authorization` header, the JSON or MessagePack handshake, framed hub messages
//! through the `switchboard::protocol` codecs, and the load payload `[sender, seq, ts_us, pad]`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};

use crate::failure::{ErrorKind, Failure};
use bytes::{Buf, BytesMut};
use futures_util::{SinkExt, StreamExt};
use switchboard::auth::AccessKeys;
use switchboard::protocol::{HubMessage, HubProtocol, RawValue, handshake};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// The target of every load message.
pub const TARGET: &str = "load";
/// Largest hub message the client accepts.
const MAX_MESSAGE: usize = 16 * 1024 * 1024;
/// tokio-tungstenite's read buffer per connection (its default, 128 KiB, is far too large).
const READ_BUFFER: usize = 4096;

/// Microseconds since the Unix epoch.
pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// Where and how clients connect.
#[derive(Clone, Debug)]
pub struct Target {
    /// Broker base URL (`http://127.0.0.1:8080`).
    pub url: String,
    /// Hub name.
    pub hub: String,
    /// Hub protocol.
    pub protocol: HubProtocol,
    /// Access keys used to mint tokens.
    pub keys: AccessKeys,
}

impl Target {
    /// A target for `url`, `hub`, `protocol`, minting with `key`.
    pub fn new(url: &str, key: &str, hub: &str, protocol: HubProtocol) -> Self {
        Self {
            url: url.trim_end_matches('/').to_owned(),
            hub: hub.to_owned(),
            protocol,
            keys: AccessKeys::new(vec![key.to_owned()]),
        }
    }

    fn audience_base(&self) -> String {
        switchboard::auth::audience_base(&self.url)
    }

    /// A client token for the hub, for `user` if given.
    pub fn client_token(&self, user: Option<&str>) -> String {
        let aud = format!("{}/client/?hub={}", self.audience_base(), self.hub);
        match user {
            Some(u) => self.keys.mint(&aud, 3600, &[("nameid", u)]),
            None => self.keys.mint(&aud, 3600, &[]),
        }
    }

    /// A REST token whose audience is `path` (starting with `/api/`); it also covers every
    /// request below that path (`/api/v1/hubs/<hub>` covers the whole hub).
    pub fn rest_token(&self, path: &str) -> String {
        self.keys
            .mint(&format!("{}{path}", self.audience_base()), 3600, &[])
    }

    /// The full URL of REST `path`, with `api-version`.
    pub fn rest_url(&self, path: &str) -> String {
        format!("{}{path}?api-version=2022-06-01", self.url)
    }

    /// A REST token and the full URL for `path` (starting with `/api/`).
    pub fn rest(&self, path: &str) -> (String, String) {
        let token = self
            .keys
            .mint(&format!("{}{path}", self.audience_base()), 3600, &[]);
        (token, format!("{}{path}?api-version=2022-06-01", self.url))
    }
}

/// What `POST /client/negotiate` answered.
#[derive(Clone, Debug)]
pub struct Negotiated {
    /// The connection id (what the REST API names the connection by).
    pub connection_id: String,
    /// The connection token (the `id=` of the transport URL).
    pub connection_token: String,
    /// Whether the broker granted stateful reconnect.
    pub stateful: bool,
}

/// `POST /client/negotiate?hub=..&negotiateVersion=1[&useStatefulReconnect=true]` with the client
/// token `token`.
pub async fn negotiate(
    target: &Target,
    http: &reqwest::Client,
    token: &str,
    stateful: bool,
) -> Result<Negotiated> {
    let mut url = format!(
        "{}/client/negotiate?hub={}&negotiateVersion=1",
        target.url, target.hub
    );
    if stateful {
        url.push_str("&useStatefulReconnect=true");
    }
    let r = match http.post(&url).bearer_auth(token).send().await {
        Ok(r) => r,
        Err(e) => return Err(Failure::request("negotiate", &target.url, &e).into()),
    };
    if !r.status().is_success() {
        return Err(Failure::answered("negotiate", &url, r).await.into());
    }
    let body: serde_json::Value = match r.json().await {
        Ok(b) => b,
        Err(e) => return Err(Failure::request("negotiate's answer", &url, &e).into()),
    };
    let Some(id) = body.get("connectionId").and_then(|v| v.as_str()) else {
        return Err(Failure::new(
            ErrorKind::Protocol,
            format!(
                "negotiate at {} answered without a connection id: {body}",
                target.url
            ),
        )
        .into());
    };
    let token = body
        .get("connectionToken")
        .and_then(|v| v.as_str())
        .unwrap_or(id);
    Ok(Negotiated {
        connection_id: id.to_owned(),
        connection_token: token.to_owned(),
        stateful: body.get("useStatefulReconnect") == Some(&serde_json::Value::Bool(true)),
    })
}

/// How [`Client::connect_with`] connects.
#[derive(Clone, Copy, Debug, Default)]
pub struct ConnectOptions<'a> {
    /// User id put in the client token (`nameid`).
    pub user: Option<&'a str>,
    /// Negotiate first through this HTTP client (needed to learn the connection id).
    pub http: Option<&'a reqwest::Client>,
    /// Ask for stateful reconnect (negotiate `useStatefulReconnect=true`, handshake version 2).
    /// Needs `http`.
    pub stateful: bool,
    /// `SO_RCVBUF` of the socket (a small one makes a non-reading client back up quickly).
    pub recv_buffer: Option<usize>,
}

/// One connected SignalR client.
pub struct Client {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    protocol: HubProtocol,
    buf: BytesMut,
    negotiated: Option<Negotiated>,
    /// The reason of the broker's close frame, once one came.
    close_reason: Option<String>,
}

impl Client {
    /// Connect (negotiating first through `http` if given), and complete the handshake.
    pub async fn connect(
        target: &Target,
        user: Option<&str>,
        http: Option<&reqwest::Client>,
    ) -> Result<Self> {
        Self::connect_with(
            target,
            ConnectOptions {
                user,
                http,
                ..ConnectOptions::default()
            },
        )
        .await
    }

    /// Connect as `options` say and complete the handshake (version 2 when stateful reconnect
    /// was granted).
    pub async fn connect_with(target: &Target, options: ConnectOptions<'_>) -> Result<Self> {
        let token = target.client_token(options.user);
        let negotiated = match options.http {
            Some(http) => Some(negotiate(target, http, &token, options.stateful).await?),
            None if options.stateful => bail!("stateful reconnect needs negotiate"),
            None => None,
        };
        let ws = open_ws(
            target,
            &token,
            negotiated.as_ref().map(|n| n.connection_token.as_str()),
            options.recv_buffer,
        )
        .await?;
        let version = if negotiated.as_ref().is_some_and(|n| n.stateful) {
            2
        } else {
            1
        };
        let mut client = Self {
            ws,
            protocol: target.protocol,
            buf: BytesMut::new(),
            negotiated,
            close_reason: None,
        };
        let request = handshake::encode_request(target.protocol.name(), version);
        if let Err(e) = client
            .ws
            .send(Message::text(
                String::from_utf8_lossy(&request).into_owned(),
            ))
            .await
        {
            return Err(Failure::websocket("handshake", &target.url, &e).into());
        }
        loop {
            match handshake::parse_response(&client.buf) {
                Ok(Some((error, consumed))) => {
                    client.buf.advance(consumed);
                    if let Some(e) = error {
                        return Err(Failure::new(
                            ErrorKind::Protocol,
                            format!("the broker at {} refused the handshake: {e}", target.url),
                        )
                        .into());
                    }
                    return Ok(client);
                }
                Ok(None) => {}
                Err(e) => {
                    return Err(Failure::new(
                        ErrorKind::Protocol,
                        format!("handshake answer from {}: {e}", target.url),
                    )
                    .into());
                }
            }
            match client.read_frame().await {
                Ok(true) => {}
                Ok(false) => {
                    return Err(Failure::new(
                        ErrorKind::ClosedByServer,
                        format!(
                            "the broker at {} closed the connection during the handshake{}",
                            target.url,
                            client.closed_because()
                        ),
                    )
                    .into());
                }
                Err(e) => {
                    return Err(e.context(format!("handshake with {}", target.url)));
                }
            }
        }
    }

    /// Stateful reconnect: a new WebSocket for the same connection (`id=<connection token>`),
    /// without negotiate or handshake. The broker then sends `Sequence` and replays.
    pub async fn resume(
        target: &Target,
        negotiated: &Negotiated,
        user: Option<&str>,
        recv_buffer: Option<usize>,
    ) -> Result<Self> {
        let token = target.client_token(user);
        let ws = open_ws(
            target,
            &token,
            Some(&negotiated.connection_token),
            recv_buffer,
        )
        .await?;
        Ok(Self {
            ws,
            protocol: target.protocol,
            buf: BytesMut::new(),
            negotiated: Some(negotiated.clone()),
            close_reason: None,
        })
    }

    /// What negotiate answered (`None` without negotiate).
    pub fn negotiated(&self) -> Option<&Negotiated> {
        self.negotiated.as_ref()
    }

    /// The connection id, known when the client negotiated.
    pub fn connection_id(&self) -> Option<&str> {
        self.negotiated.as_ref().map(|n| n.connection_id.as_str())
    }

    /// Whether the connection uses stateful reconnect.
    pub fn is_stateful(&self) -> bool {
        self.negotiated.as_ref().is_some_and(|n| n.stateful)
    }

    /// Drops the TCP connection without a close frame (a network loss, as the broker sees it).
    pub fn abort(self) {
        drop(self);
    }

    /// `": <reason>"` of the broker's close frame, or `""` (for messages).
    pub fn closed_because(&self) -> String {
        self.close_reason
            .as_deref()
            .map(|r| format!(": {r}"))
            .unwrap_or_default()
    }

    /// Reads one WebSocket frame into the buffer; `false` when the connection ended.
    async fn read_frame(&mut self) -> Result<bool> {
        loop {
            match self.ws.next().await {
                Some(Ok(Message::Text(t))) => {
                    self.buf.extend_from_slice(t.as_bytes());
                    return Ok(true);
                }
                Some(Ok(Message::Binary(b))) => {
                    self.buf.extend_from_slice(&b);
                    return Ok(true);
                }
                Some(Ok(Message::Close(frame))) => {
                    self.close_reason = frame.map(|f| {
                        if f.reason.is_empty() {
                            format!("close code {}", u16::from(f.code))
                        } else {
                            format!("{} (close code {})", f.reason, u16::from(f.code))
                        }
                    });
                    return Ok(false);
                }
                None => return Ok(false),
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e.into()),
            }
        }
    }

    /// The next hub message; `None` when the connection ended. Cancel-safe only between frames
    /// (a frame is fully buffered before it is decoded).
    pub async fn next_message(&mut self) -> Result<Option<HubMessage>> {
        loop {
            if let Some(d) = self.protocol.decode(&self.buf, MAX_MESSAGE)? {
                self.buf.advance(d.consumed);
                if let Some(m) = d.message {
                    return Ok(Some(m));
                }
                continue;
            }
            if !self.read_frame().await? {
                return Ok(None);
            }
        }
    }

    /// Sends one hub message.
    pub async fn send(&mut self, msg: &HubMessage) -> Result<()> {
        let bytes = self.protocol.encode(msg)?;
        let frame = match self.protocol {
            HubProtocol::Json => Message::text(String::from_utf8(bytes.to_vec())?),
            HubProtocol::MessagePack => Message::binary(bytes),
        };
        self.ws.send(frame).await?;
        Ok(())
    }

    /// Sends a keep-alive ping.
    pub async fn ping(&mut self) -> Result<()> {
        self.send(&HubMessage::Ping).await
    }

    /// Closes the WebSocket (best effort, bounded to one second).
    pub async fn close(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(1), self.ws.close(None)).await;
    }
}

/// The WebSocket upgrade to `/client/?hub=..[&id=..]` with the client token in `Authorization`.
async fn open_ws(
    target: &Target,
    token: &str,
    id: Option<&str>,
    recv_buffer: Option<usize>,
) -> Result<WebSocketStream<MaybeTlsStream<TcpStream>>> {
    let mut ws_url = format!(
        "{}/client/?hub={}",
        target.url.replacen("http", "ws", 1),
        target.hub
    );
    if let Some(id) = id {
        ws_url.push_str("&id=");
        ws_url.push_str(id);
    }
    let mut req = ws_url
        .as_str()
        .into_client_request()
        .with_context(|| format!("the WebSocket URL of {}", target.url))?;
    req.headers_mut()
        .insert("Authorization", format!("Bearer {token}").parse()?);
    let failed = |e: tokio_tungstenite::tungstenite::Error| -> anyhow::Error {
        Failure::websocket("WebSocket connect", &target.url, &e).into()
    };
    let config = WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(0);
    let ws = match recv_buffer {
        None => {
            // TCP_NODELAY, as browsers and Node's `ws` set on WebSockets.
            tokio_tungstenite::connect_async_tls_with_config(
                req,
                Some(config),
                true,
                crate::tls::connector(),
            )
            .await
            .map_err(failed)?
            .0
        }
        Some(size) => {
            let url = reqwest::Url::parse(&target.url).context("broker URL")?;
            let host = url.host_str().unwrap_or("127.0.0.1");
            let port = url.port_or_known_default().unwrap_or(80);
            let io = |e: std::io::Error| failed(e.into());
            let addr = tokio::net::lookup_host((host, port))
                .await
                .map_err(io)?
                .next()
                .with_context(|| format!("no address for {}", target.url))?;
            let socket = if addr.is_ipv4() {
                tokio::net::TcpSocket::new_v4()?
            } else {
                tokio::net::TcpSocket::new_v6()?
            };
            socket.set_recv_buffer_size(size as u32)?;
            let stream = socket.connect(addr).await.map_err(io)?;
            stream.set_nodelay(true)?;
            tokio_tungstenite::client_async_tls_with_config(
                req,
                stream,
                Some(config),
                crate::tls::connector(),
            )
            .await
            .map_err(failed)?
            .0
        }
    };
    Ok(ws)
}

/// The JSON arguments of a load message: `[sender, seq, ts_us, "xxx…"]`.
pub fn json_arguments(sender: u64, seq: u64, ts_us: u64, pad: &str) -> String {
    format!("[{sender},{seq},{ts_us},\"{pad}\"]")
}

/// The arguments of `EchoReturn(payload)` with payload `[sender, seq, ts_us, pad]`, in the
/// client's protocol.
pub fn echo_arguments(
    protocol: HubProtocol,
    sender: u64,
    seq: u64,
    ts_us: u64,
    pad: &str,
) -> RawValue {
    match protocol {
        HubProtocol::Json => {
            RawValue::Json(format!("[{}]", json_arguments(sender, seq, ts_us, pad)).into())
        }
        HubProtocol::MessagePack => {
            let mut out = Vec::with_capacity(pad.len() + 32);
            // Writing to a Vec cannot fail.
            let _ = rmp::encode::write_array_len(&mut out, 1);
            let _ = rmp::encode::write_array_len(&mut out, 4);
            let _ = rmp::encode::write_uint(&mut out, sender);
            let _ = rmp::encode::write_uint(&mut out, seq);
            let _ = rmp::encode::write_uint(&mut out, ts_us);
            let _ = rmp::encode::write_str(&mut out, pad);
            RawValue::MessagePack(out.into())
        }
    }
}

/// The load payload `[sender, seq, ts_us, pad]` as a whole arguments array (four arguments) in
/// `protocol`: what [`parse_load`] reads back.
pub fn load_arguments(
    protocol: HubProtocol,
    sender: u64,
    seq: u64,
    ts_us: u64,
    pad: &str,
) -> RawValue {
    match protocol {
        HubProtocol::Json => RawValue::Json(json_arguments(sender, seq, ts_us, pad).into()),
        HubProtocol::MessagePack => {
            let mut out = Vec::with_capacity(pad.len() + 32);
            // Writing to a Vec cannot fail.
            let _ = rmp::encode::write_array_len(&mut out, 4);
            let _ = rmp::encode::write_uint(&mut out, sender);
            let _ = rmp::encode::write_uint(&mut out, seq);
            let _ = rmp::encode::write_uint(&mut out, ts_us);
            let _ = rmp::encode::write_str(&mut out, pad);
            RawValue::MessagePack(out.into())
        }
    }
}

/// A padding string of `n` bytes.
pub fn padding(n: usize) -> String {
    "x".repeat(n)
}

/// `(sender, seq, ts_us)` of a load message's arguments, in either encoding.
pub fn parse_load(args: &RawValue) -> Option<(u64, u64, u64)> {
    match args {
        RawValue::Json(b) => {
            let (s, q, t, _): (u64, u64, u64, serde::de::IgnoredAny) =
                serde_json::from_slice(b).ok()?;
            Some((s, q, t))
        }
        RawValue::MessagePack(b) => {
            let mut rd: &[u8] = b;
            if rmp::decode::read_array_len(&mut rd).ok()? < 3 {
                return None;
            }
            let s = rmp::decode::read_int(&mut rd).ok()?;
            let q = rmp::decode::read_int(&mut rd).ok()?;
            let t = rmp::decode::read_int(&mut rd).ok()?;
            Some((s, q, t))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn load_arguments_parse_in_both_encodings() {
        let json = json_arguments(3, 42, 1_700_000_000_000_000, &padding(5));
        assert_eq!(
            parse_load(&RawValue::Json(Bytes::from(json))),
            Some((3, 42, 1_700_000_000_000_000))
        );
        let mut mp = Vec::new();
        rmp::encode::write_array_len(&mut mp, 4).expect("vec");
        rmp::encode::write_uint(&mut mp, 3).expect("vec");
        rmp::encode::write_uint(&mut mp, 42).expect("vec");
        rmp::encode::write_uint(&mut mp, 1_700_000_000_000_000).expect("vec");
        rmp::encode::write_str(&mut mp, "xxxxx").expect("vec");
        assert_eq!(
            parse_load(&RawValue::MessagePack(Bytes::from(mp))),
            Some((3, 42, 1_700_000_000_000_000))
        );
        assert_eq!(
            parse_load(&RawValue::Json(Bytes::from_static(b"[\"a\"]"))),
            None
        );
        for p in [HubProtocol::Json, HubProtocol::MessagePack] {
            assert_eq!(
                parse_load(&load_arguments(p, 9, 8, 7, "pad")),
                Some((9, 8, 7))
            );
        }
    }
}
