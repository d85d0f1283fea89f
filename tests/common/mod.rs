//! Helpers shared by the integration tests (`mod common;`): start a broker on `127.0.0.1:0`,
//! mint tokens independently of the server's own minting, call the REST API and negotiate with
//! the whole answer read, and a minimal SignalR WebSocket client (negotiate, handshake, JSON and
//! MessagePack framing). The raw WebSocket under it is [`ws`]; a scripted hub server is
//! [`fake_server`]; the management client's side is [`management`]; a real `redis-server` for
//! the cluster tests is [`redis_server`].
//!
//! The client decodes MessagePack with `rmpv` rather than the crate's own codec, so that the
//! tests check the server's bytes against an independent reader. Every hub message is returned
//! as JSON: JSON messages as parsed, MessagePack ones mapped to the same shape
//! (`{"type":1,"target":..,"arguments":[..]}`, `{"type":7,"error":..,"allowReconnect":..}`).
//!
//! `fake_upstream.rs` beside this file is shared too, but declared by the test files that use
//! it rather than here: the SDK's test crates include this module and lack its dependencies.
#![allow(dead_code, unreachable_pub)]

pub mod fake_server;
pub mod management;
pub mod prom;
pub mod redis_server;
pub mod tls;
pub mod ws;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, Result, anyhow, bail};
use futures_util::{SinkExt as _, StreamExt as _};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use switchboard::{Config, ServiceMode, Switchboard, SwitchboardHandle};
use tokio_tungstenite::tungstenite::Message;

/// The JSON protocol's handshake request, with its separator.
pub const JSON_HANDSHAKE: &str = "{\"protocol\":\"json\",\"version\":1}\x1e";

/// The access key every test broker is configured with.
pub const TEST_KEY: &str = "switchboard-test-access-key-0123456789ABCDEFGH";

/// Start a broker in `mode` on 127.0.0.1:0. Returns the handle, the base URL
/// (`http://127.0.0.1:<port>`) and the access key.
pub async fn start(mode: ServiceMode) -> (SwitchboardHandle, String, String) {
    start_with(config(mode)).await
}

/// The default configuration in `mode` (for [`start_with`] after changing a setting or two).
pub fn config(mode: ServiceMode) -> Config {
    Config {
        mode,
        ..Config::default()
    }
}

/// Start a broker with `config` (listen address, keys and workers are set here).
pub async fn start_with(mut config: Config) -> (SwitchboardHandle, String, String) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    config.listen = listener.local_addr().expect("local addr");
    if config.access_keys.is_empty() {
        config.access_keys = vec![TEST_KEY.to_owned()];
    }
    if config.workers == 0 {
        config.workers = 2;
    }
    let key = config.access_keys[0].clone();
    let handle = Switchboard::new(config)
        .expect("valid test config")
        .start(listener)
        .expect("start switchboard");
    let base = format!("http://{}", handle.local_addr());
    (handle, base, key)
}

/// The JSON records (each ending with 0x1E) of `bytes`.
pub fn json_records(bytes: &[u8]) -> Vec<Value> {
    bytes
        .split(|b| *b == 0x1e)
        .filter(|r| !r.is_empty())
        .map(|r| serde_json::from_slice(r).expect("a JSON record"))
        .collect()
}

/// Seconds since the Unix epoch.
/// The connection string of the broker at `url` (`http://127.0.0.1:8080`, a trailing `/`
/// allowed) with `key`, as `switchboard serve` prints it.
pub fn connection_string(url: &str, key: &str) -> String {
    let (scheme, rest) = url.split_once("://").expect("scheme://host:port");
    let (host, port) = rest
        .trim_end_matches('/')
        .rsplit_once(':')
        .expect("host:port");
    format!("Endpoint={scheme}://{host};Port={port};AccessKey={key};Version=1.0;")
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Sign `claims` with `key` (HS256).
pub fn sign(key: &str, claims: &Value) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(key.as_bytes()),
    )
    .expect("sign test token")
}

/// A REST token the way the SDKs mint one: `aud` = audience base (no port) + `url_path`, valid
/// for an hour. `url_path` may carry a query (the current SDK puts `application` and
/// `api-version` in the audience).
pub fn rest_token(key: &str, url_path: &str) -> String {
    let n = now();
    sign(
        key,
        &json!({
            "aud": format!("http://127.0.0.1{url_path}"),
            "exp": n + 3600,
            "iat": n,
            "nbf": n,
            "nameid": "test-server",
        }),
    )
}

/// A client token for `hub` (and `user` as `nameid`), valid for an hour.
pub fn client_token(key: &str, hub: &str, user: Option<&str>) -> String {
    let claims = match user {
        Some(u) => json!({ "nameid": u }),
        None => json!({}),
    };
    client_token_with(key, hub, &claims)
}

/// A client token for `hub`, valid for an hour, with `claims` (an object) added or replacing
/// the standard ones.
pub fn client_token_with(key: &str, hub: &str, claims: &Value) -> String {
    let n = now();
    let mut c = json!({
        "aud": format!("http://127.0.0.1/client/?hub={hub}"),
        "exp": n + 3600,
        "iat": n,
        "nbf": n,
    });
    for (k, v) in claims.as_object().expect("claims object") {
        c[k] = v.clone();
    }
    sign(key, &c)
}

/// A client token for `hub` that expired an hour ago.
pub fn expired_client_token(key: &str, hub: &str) -> String {
    let n = now();
    sign(
        key,
        &json!({
            "aud": format!("http://127.0.0.1/client/?hub={hub}"),
            "exp": n - 3600,
            "iat": n - 7200,
            "nbf": n - 7200,
        }),
    )
}

/// The JSON claims of a JWT (no signature check).
pub fn token_claims(token: &str) -> Value {
    use base64::Engine as _;
    let payload = token.split('.').nth(1).expect("a JWT has three parts");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .expect("base64url payload");
    serde_json::from_slice(&bytes).expect("JSON claims")
}

/// A REST caller: mints a token for each request's path.
#[derive(Clone)]
pub struct Rest {
    pub http: reqwest::Client,
    pub base: String,
    pub key: String,
}

/// A REST answer, read completely.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Vec<u8>,
}

impl Reply {
    /// Header `name` as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Status and body text, for `assert_eq!` against `(status, "text")`.
    pub fn status_text(&self) -> (u16, String) {
        (self.status, self.text())
    }

    /// The `x-ms-error-code` header.
    pub fn error_code(&self) -> Option<&str> {
        self.headers
            .get("x-ms-error-code")
            .and_then(|v| v.to_str().ok())
    }

    /// The `Content-Type` header.
    pub fn content_type(&self) -> Option<&str> {
        self.headers
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
    }

    /// The body as JSON (panics with the body text otherwise).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {:?}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Send `req` and read the whole answer within `limit` (panics naming `what` otherwise).
pub async fn send_within(req: reqwest::RequestBuilder, limit: Duration, what: &str) -> Reply {
    tokio::time::timeout(limit, async {
        let resp = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("{what}: request failed: {e}"));
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp
            .bytes()
            .await
            .unwrap_or_else(|e| panic!("{what}: reading the body failed: {e}"))
            .to_vec();
        Reply {
            status,
            headers,
            body,
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{what}: no answer within {limit:?}"))
}

/// `POST /client/negotiate?hub=<hub><query>` (`query` adds `&negotiateVersion=1` and the like)
/// with `token` (if any) as a bearer token; the whole answer, within 5 s.
pub async fn negotiate_raw(base: &str, hub: &str, token: Option<&str>, query: &str) -> Reply {
    let url = format!("{base}/client/negotiate?hub={hub}{query}");
    let mut req = reqwest::Client::new().post(&url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    send_within(req, Duration::from_secs(5), &format!("negotiate {url}")).await
}

/// As [`negotiate_raw`] with a token; the answer must be 200 and JSON, which is returned.
pub async fn negotiate(base: &str, hub: &str, token: &str, query: &str) -> Value {
    let a = negotiate_raw(base, hub, Some(token), query).await;
    assert_eq!(a.status, 200, "negotiate ?hub={hub}{query}: {}", a.text());
    a.json()
}

impl Rest {
    pub fn new(base: &str, key: &str) -> Self {
        Self {
            http: reqwest::Client::new(),
            base: base.to_owned(),
            key: key.to_owned(),
        }
    }

    /// `method path_and_query` with a token for the path, optional body and content type.
    pub async fn call(
        &self,
        method: reqwest::Method,
        path_and_query: &str,
        body: Option<(&str, Vec<u8>)>,
    ) -> Reply {
        let path = path_and_query.split('?').next().unwrap_or(path_and_query);
        let token = rest_token(&self.key, path);
        self.call_with_token(method, path_and_query, Some(&token), body)
            .await
    }

    /// As [`call`](Self::call) with an explicit token (or none).
    pub async fn call_with_token(
        &self,
        method: reqwest::Method,
        path_and_query: &str,
        token: Option<&str>,
        body: Option<(&str, Vec<u8>)>,
    ) -> Reply {
        let url = format!("{}{}", self.base, path_and_query);
        let mut req = self.http.request(method, &url);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some((content_type, bytes)) = body {
            if !content_type.is_empty() {
                req = req.header(reqwest::header::CONTENT_TYPE, content_type);
            }
            req = req.body(bytes);
        }
        let resp = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("request to {url} failed: {e}"));
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.bytes().await.map(|b| b.to_vec()).unwrap_or_default();
        Reply {
            status,
            headers,
            body,
        }
    }

    /// POST a JSON body.
    pub async fn post_json(&self, path_and_query: &str, body: &Value) -> Reply {
        self.call(
            reqwest::Method::POST,
            path_and_query,
            Some(("application/json", body.to_string().into_bytes())),
        )
        .await
    }

    pub async fn get(&self, path_and_query: &str) -> Reply {
        self.call(reqwest::Method::GET, path_and_query, None).await
    }

    pub async fn head(&self, path_and_query: &str) -> Reply {
        self.call(reqwest::Method::HEAD, path_and_query, None).await
    }

    pub async fn put(&self, path_and_query: &str) -> Reply {
        self.call(reqwest::Method::PUT, path_and_query, None).await
    }

    pub async fn delete(&self, path_and_query: &str) -> Reply {
        self.call(reqwest::Method::DELETE, path_and_query, None)
            .await
    }

    pub async fn post_empty(&self, path_and_query: &str) -> Reply {
        self.call(reqwest::Method::POST, path_and_query, None).await
    }

    /// Broadcast `target(args)` to every client of `hub`; the answer must be 202.
    pub async fn broadcast(&self, hub: &str, target: &str, args: Value) {
        let r = self
            .post_json(
                &format!("/api/hubs/{hub}/:send?api-version=2022-06-01"),
                &json!({ "target": target, "arguments": args }),
            )
            .await;
        assert_eq!(
            r.status,
            202,
            "broadcast answered {}: {}",
            r.status,
            r.text()
        );
    }

    /// The status of `HEAD connections/{id}` (200 while the connection exists, 404 after).
    pub async fn connection_status(&self, hub: &str, id: &str) -> u16 {
        self.head(&format!(
            "/api/hubs/{hub}/connections/{id}?api-version=2022-06-01"
        ))
        .await
        .status
    }

    /// Poll `HEAD connections/{id}` until it answers `status` (at most `limit`).
    pub async fn wait_connection_status(&self, hub: &str, id: &str, status: u16, limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let got = self.connection_status(hub, id).await;
            if got == status {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "HEAD connections/{id} still answers {got} after {limit:?}, expected {status}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// A JSON Invocation of `target(args)`, blocking when it has an `id`, with its separator.
pub fn json_invocation(id: Option<&str>, target: &str, args: Value) -> Vec<u8> {
    let mut msg = json!({"type": 1, "target": target, "arguments": args});
    if let Some(id) = id {
        msg["invocationId"] = json!(id);
    }
    let mut out = serde_json::to_vec(&msg).expect("JSON");
    out.push(0x1e);
    out
}

/// The hub protocol a [`TestClient`] speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Json,
    MessagePack,
}

/// A minimal SignalR client over WebSockets.
pub struct TestClient {
    ws: ws::Ws,
    protocol: Protocol,
    connection_id: String,
    buf: Vec<u8>,
    closed: bool,
}

impl TestClient {
    /// Negotiate (`POST /client/negotiate?hub=..&negotiateVersion=1` with the token), open the
    /// WebSocket with the `Authorization` header, and complete the handshake for `protocol`
    /// (`"json"` or `"messagepack"`).
    pub async fn connect(base: &str, hub: &str, token: &str, protocol: &str) -> Result<Self> {
        Self::connect_via(base, base, hub, token, protocol).await
    }

    /// [`connect`](Self::connect) with negotiate at `negotiate_base` and the WebSocket at
    /// `ws_base` (another node of a cluster, as without load-balancer affinity).
    pub async fn connect_via(
        negotiate_base: &str,
        ws_base: &str,
        hub: &str,
        token: &str,
        protocol: &str,
    ) -> Result<Self> {
        let (connection_id, connection_token) =
            Self::negotiate_only(negotiate_base, hub, token).await?;
        Self::open(
            ws_base,
            hub,
            token,
            protocol,
            connection_id,
            &connection_token,
        )
        .await
    }

    /// Negotiate only: the connection id and the connection token.
    pub async fn negotiate_only(base: &str, hub: &str, token: &str) -> Result<(String, String)> {
        let http = reqwest::Client::new();
        let hub_q: String = form_urlencoded::byte_serialize(hub.as_bytes()).collect();
        let resp = http
            .post(format!(
                "{base}/client/negotiate?hub={hub_q}&negotiateVersion=1"
            ))
            .bearer_auth(token)
            .send()
            .await
            .context("negotiate request")?;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        if !status.is_success() {
            bail!("negotiate answered {status}: {text}");
        }
        let neg: Value = serde_json::from_str(&text).context("negotiate JSON")?;
        if let Some(err) = neg.get("error") {
            bail!("negotiate error: {err}");
        }
        let connection_id = neg["connectionId"]
            .as_str()
            .ok_or_else(|| anyhow!("no connectionId in {neg}"))?
            .to_owned();
        let connection_token = neg["connectionToken"]
            .as_str()
            .unwrap_or(&connection_id)
            .to_owned();
        Ok((connection_id, connection_token))
    }

    /// Open the WebSocket for a negotiated connection and complete the handshake.
    pub async fn open(
        base: &str,
        hub: &str,
        token: &str,
        protocol: &str,
        connection_id: String,
        connection_token: &str,
    ) -> Result<Self> {
        let proto = match protocol {
            "json" => Protocol::Json,
            "messagepack" => Protocol::MessagePack,
            other => bail!("unknown protocol {other}"),
        };
        let hub_q: String = form_urlencoded::byte_serialize(hub.as_bytes()).collect();
        let ws = ws::open(
            base,
            &format!("hub={hub_q}&id={connection_token}"),
            Some(token),
        )
        .await
        .context("WebSocket upgrade")?;
        let mut client = Self {
            ws,
            protocol: proto,
            connection_id,
            buf: Vec::new(),
            closed: false,
        };
        let handshake = format!("{{\"protocol\":\"{protocol}\",\"version\":1}}\x1e");
        client
            .ws
            .send(Message::text(handshake))
            .await
            .context("send handshake")?;
        // The handshake response must come whole in the first frame.
        let first = client
            .next_frame(Duration::from_secs(5))
            .await
            .context("handshake response")?;
        let Some(end) = first.iter().position(|b| *b == 0x1e) else {
            bail!(
                "handshake response without separator: {:?}",
                String::from_utf8_lossy(&first)
            );
        };
        let response: Value =
            serde_json::from_slice(&first[..end]).context("handshake response JSON")?;
        if response != json!({}) {
            bail!("handshake refused: {response}");
        }
        client.buf.extend_from_slice(&first[end + 1..]);
        Ok(client)
    }

    /// The connection id from negotiate.
    pub fn connection_id(&self) -> &str {
        &self.connection_id
    }

    /// The protocol in use.
    pub fn protocol(&self) -> Protocol {
        self.protocol
    }

    /// Send bytes as they are (a Text frame for JSON, Binary for MessagePack).
    pub async fn send_raw(&mut self, bytes: &[u8]) -> Result<()> {
        let msg = match self.protocol {
            Protocol::Json => Message::text(String::from_utf8(bytes.to_vec())?),
            Protocol::MessagePack => Message::binary(bytes.to_vec()),
        };
        self.ws.send(msg).await?;
        Ok(())
    }

    /// The next hub message other than Ping, within `timeout`.
    pub async fn next_message(&mut self, timeout: Duration) -> Result<Value> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let msg = self.next_any(left).await?;
            if msg["type"] != json!(6) {
                return Ok(msg);
            }
        }
    }

    /// The next message must be an Invocation of `target`; returns its arguments.
    pub async fn expect_invocation(&mut self, target: &str, timeout: Duration) -> Result<Value> {
        let msg = self.next_message(timeout).await?;
        if msg["type"] != json!(1) || msg["target"] != json!(target) {
            bail!("expected an invocation of {target}, got {msg}");
        }
        Ok(msg["arguments"].clone())
    }

    /// Wait for the Close message (skipping Pings; any other message is an error) and return it.
    pub async fn next_close(&mut self, timeout: Duration) -> Result<Value> {
        let msg = self.next_message(timeout).await?;
        if msg["type"] != json!(7) {
            bail!("expected a Close message, got {msg}");
        }
        Ok(msg)
    }

    /// Wait until the server closes the WebSocket (messages before that are discarded).
    pub async fn wait_closed(&mut self, timeout: Duration) -> Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next_frame(left).await {
                Ok(_) => continue,
                Err(e) if self.closed => {
                    let _ = e;
                    return Ok(());
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Close the WebSocket.
    pub async fn close(mut self) {
        // The server may already be gone; nothing to report then.
        let _ = self.ws.close(None).await;
    }

    /// The next hub message of any type, within `timeout`.
    async fn next_any(&mut self, timeout: Duration) -> Result<Value> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(msg) = self.parse_one()? {
                return Ok(msg);
            }
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let frame = self.next_frame(left).await?;
            self.buf.extend_from_slice(&frame);
        }
    }

    /// The payload of the next data frame.
    async fn next_frame(&mut self, timeout: Duration) -> Result<Vec<u8>> {
        if self.closed {
            bail!("the WebSocket is closed");
        }
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let next = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .map_err(|_| anyhow!("no message within {timeout:?}"))?;
            match next {
                Some(Ok(Message::Text(t))) => return Ok(t.as_bytes().to_vec()),
                Some(Ok(Message::Binary(b))) => return Ok(b.to_vec()),
                Some(Ok(Message::Close(frame))) => {
                    self.closed = true;
                    bail!("the WebSocket was closed: {frame:?}");
                }
                Some(Ok(_)) => continue,
                Some(Err(e)) => {
                    self.closed = true;
                    bail!("WebSocket error: {e}");
                }
                None => {
                    self.closed = true;
                    bail!("the WebSocket ended");
                }
            }
        }
    }

    /// Split one message off the buffer, if complete.
    fn parse_one(&mut self) -> Result<Option<Value>> {
        match self.protocol {
            Protocol::Json => {
                let Some(end) = self.buf.iter().position(|b| *b == 0x1e) else {
                    return Ok(None);
                };
                let body: Vec<u8> = self.buf.drain(..=end).collect();
                let value = serde_json::from_slice(&body[..end]).with_context(|| {
                    format!("bad JSON message {:?}", String::from_utf8_lossy(&body))
                })?;
                Ok(Some(value))
            }
            Protocol::MessagePack => {
                let Some((prefix, len)) = msgpack_frame_len(&self.buf)? else {
                    return Ok(None);
                };
                let frame: Vec<u8> = self.buf.drain(..prefix + len).collect();
                let mut body = &frame[prefix..];
                let value = rmpv::decode::read_value(&mut body).context("bad MessagePack body")?;
                Ok(Some(msgpack_message_to_json(&value)?))
            }
        }
    }
}

/// The type id and the items of a MessagePack hub message (an array led by its type).
pub fn msgpack_message_items(v: &rmpv::Value) -> Result<(u64, &[rmpv::Value])> {
    let items = v
        .as_array()
        .ok_or_else(|| anyhow!("a hub message must be an array: {v}"))?;
    let ty = items
        .first()
        .and_then(rmpv::Value::as_u64)
        .ok_or_else(|| anyhow!("no type id: {v}"))?;
    Ok((ty, items))
}

/// A MessagePack hub message in the JSON shape.
fn msgpack_message_to_json(v: &rmpv::Value) -> Result<Value> {
    let (ty, items) = msgpack_message_items(v)?;
    let field = |i: usize| items.get(i).map(to_json).unwrap_or(Value::Null);
    Ok(match ty {
        1 | 4 => {
            let mut m = json!({ "type": ty, "target": field(3), "arguments": field(4) });
            if !field(2).is_null() {
                m["invocationId"] = field(2);
            }
            m
        }
        6 => json!({ "type": 6 }),
        7 => json!({ "type": 7, "error": field(1), "allowReconnect": field(2) }),
        _ => json!({ "type": ty, "raw": to_json(v) }),
    })
}

/// A MessagePack value as JSON (bin as an array of byte values).
pub fn to_json(v: &rmpv::Value) -> Value {
    use rmpv::Value as V;
    match v {
        V::Nil => Value::Null,
        V::Boolean(b) => json!(b),
        V::Integer(i) => i
            .as_u64()
            .map(Value::from)
            .or_else(|| i.as_i64().map(Value::from))
            .unwrap_or(Value::Null),
        V::F32(f) => json!(f),
        V::F64(f) => json!(f),
        V::String(s) => json!(s.as_str().unwrap_or_default()),
        V::Binary(b) => json!(b),
        V::Array(items) => Value::Array(items.iter().map(to_json).collect()),
        V::Map(entries) => Value::Object(
            entries
                .iter()
                .map(|(k, v)| {
                    let key = match k {
                        V::String(s) => s.as_str().unwrap_or_default().to_owned(),
                        other => other.to_string(),
                    };
                    (key, to_json(v))
                })
                .collect(),
        ),
        V::Ext(..) => Value::Null,
    }
}

/// The VarInt length prefix at the start of `bytes`: `(prefix length, body length)` once the
/// whole message is there, `None` before.
pub fn msgpack_frame_len(bytes: &[u8]) -> Result<Option<(usize, usize)>> {
    let mut len = 0usize;
    let mut prefix = 0usize;
    loop {
        let Some(&b) = bytes.get(prefix) else {
            return Ok(None);
        };
        len |= usize::from(b & 0x7f) << (7 * prefix);
        prefix += 1;
        if b & 0x80 == 0 {
            break;
        }
        if prefix >= 5 {
            bail!("bad VarInt prefix");
        }
    }
    if bytes.len() < prefix + len {
        return Ok(None);
    }
    Ok(Some((prefix, len)))
}

/// Frame a MessagePack body with its VarInt length prefix.
pub fn frame_msgpack(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 5);
    let mut len = body.len();
    loop {
        let mut b = (len & 0x7f) as u8;
        len >>= 7;
        if len > 0 {
            b |= 0x80;
        }
        out.push(b);
        if len == 0 {
            break;
        }
    }
    out.extend_from_slice(body);
    out
}

/// Encode an rmpv value.
pub fn msgpack_bytes(v: &rmpv::Value) -> Vec<u8> {
    let mut out = Vec::new();
    rmpv::encode::write_value(&mut out, v).expect("encode MessagePack");
    out
}

/// How long the marker helpers wait for a message.
const MARKER_WAIT: Duration = Duration::from_secs(5);

/// The next message of `client` is an invocation of `target` with exactly `args`.
pub async fn expect(client: &mut TestClient, target: &str, args: Value) {
    let got = client
        .expect_invocation(target, MARKER_WAIT)
        .await
        .unwrap_or_else(|e| panic!("{} expected {target}: {e:#}", client.connection_id()));
    assert_eq!(
        got,
        args,
        "arguments of {target} at {}",
        client.connection_id()
    );
}

/// The next message of `client` is the marker `marker(<its connection id>)` that the caller
/// just sent it by connection id: nothing else was queued for it before the marker. This is how
/// the tests show the absence of a delivery without waiting a fixed time.
pub async fn expect_marker(client: &mut TestClient) {
    let id = client.connection_id().to_owned();
    let next = client
        .next_message(MARKER_WAIT)
        .await
        .expect("marker arrives");
    assert_eq!(
        (next["type"].clone(), next["target"].clone()),
        (json!(1), json!("marker")),
        "expected only the marker at {id}, got {next}"
    );
    assert_eq!(next["arguments"], json!([id]));
}
