//! Stateful reconnect (`docs/protocol.md#stateful-reconnect`) at the byte level, with a raw
//! WebSocket client on tokio-tungstenite: negotiate with `useStatefulReconnect=true`, handshake
//! version 2, drop the TCP connection without a close frame, come back with the same connection
//! token and no handshake, and check the server's `Sequence`, the replay, Ack trimming,
//! de-duplication of the client's replays, the fatal Sequence, the replay-buffer limit,
//! handshake version 1 and the reconnect window; in Default mode the same for a client routed to
//! a scripted hub server, which must see no disconnect inside the window and one after it.
//!
//! Nothing here proves an absence with a sleep: "nothing else came" is always shown by a marker
//! that arrives next (a broadcast, or the Completion error a blocking invocation gets in a
//! Serverless hub without upstream), and messages that get no answer (Ack, Sequence) are known
//! to be processed once the broker's messages-received counter has moved on (bounded polling).

mod common;

use std::time::Duration;

use anyhow::{Context as _, Result, anyhow, bail};
use common::ws::{self, Ws};
use common::{Rest, client_token, config, negotiate};
use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use switchboard::telemetry::names;
use switchboard::{Config, ServiceMode, SwitchboardHandle};
use tokio_tungstenite::tungstenite::{self, Message};

/// How long any single expected event may take.
const T: Duration = Duration::from_secs(5);

const SEQUENCE_TOO_LARGE: &str =
    "Connection closed with an error. Sequence ID greater than amount of messages we've received.";

/// A started broker with what the tests need to talk to it.
struct Broker {
    handle: SwitchboardHandle,
    base: String,
    key: String,
    rest: Rest,
}

impl Broker {
    async fn start(config: Config) -> Self {
        let (handle, base, key) = common::start_with(config).await;
        let rest = Rest::new(&base, &key);
        Self {
            handle,
            base,
            key,
            rest,
        }
    }

    fn token(&self, hub: &str) -> String {
        client_token(&self.key, hub, None)
    }

    /// `POST /client/negotiate?hub=..&negotiateVersion=1[&useStatefulReconnect=true]`.
    async fn negotiate(&self, hub: &str, stateful: bool) -> Value {
        let query = if stateful {
            "&negotiateVersion=1&useStatefulReconnect=true"
        } else {
            "&negotiateVersion=1"
        };
        negotiate(&self.base, hub, &self.token(hub), query).await
    }

    /// Open a WebSocket to `/client/?hub=..&id=<token>` with the client token (no handshake).
    async fn open(&self, hub: &str, connection_token: &str) -> Result<Ws, tungstenite::Error> {
        self.open_with(hub, connection_token, &self.token(hub))
            .await
    }

    /// Open a WebSocket to `/client/?hub=..&id=<connection token>` with client token `token`.
    async fn open_with(
        &self,
        hub: &str,
        connection_token: &str,
        token: &str,
    ) -> Result<Ws, tungstenite::Error> {
        ws::open(
            &self.base,
            &format!("hub={hub}&id={connection_token}"),
            Some(token),
        )
        .await
    }

    /// The upgrade of a reconnect with `connection_token` must be refused with 404.
    async fn expect_reconnect_refused(&self, hub: &str, connection_token: &str) {
        self.expect_reconnect_refused_with(hub, connection_token, &self.token(hub))
            .await;
    }

    /// The upgrade of a reconnect to `hub` with `connection_token` and client token `token` must
    /// be refused with 404 `No Connection with that ID`.
    async fn expect_reconnect_refused_with(&self, hub: &str, connection_token: &str, token: &str) {
        match self.open_with(hub, connection_token, token).await {
            Err(tungstenite::Error::Http(resp)) => {
                let body = resp
                    .body()
                    .as_deref()
                    .map(|b| String::from_utf8_lossy(b).into_owned())
                    .unwrap_or_default();
                assert_eq!(
                    resp.status(),
                    404,
                    "a reconnect with token {connection_token} must get 404, got {}: {body:?}",
                    resp.status()
                );
                // The client library keeps the body only when it came with the head.
                assert!(
                    body.is_empty() || body == "No Connection with that ID",
                    "the unknown id's text, got {body:?}"
                );
            }
            Err(e) => panic!("a reconnect with token {connection_token} must get 404, got {e}"),
            Ok(_) => panic!(
                "a reconnect with token {connection_token} must get 404, but the WebSocket upgrade succeeded"
            ),
        }
    }

    /// Negotiate (stateful when asked), open the WebSocket and complete the handshake.
    async fn connect(&self, hub: &str, protocol: Proto, version: u32) -> Client {
        self.connect_with(hub, protocol, version, self.token(hub))
            .await
    }

    /// [`Self::connect`] with client token `client_token` (reconnects use it too).
    async fn connect_with(
        &self,
        hub: &str,
        protocol: Proto,
        version: u32,
        client_token: String,
    ) -> Client {
        let query = "&negotiateVersion=1&useStatefulReconnect=true";
        let neg = negotiate(&self.base, hub, &client_token, query).await;
        assert_eq!(
            neg["useStatefulReconnect"],
            json!(true),
            "negotiate must offer stateful reconnect: {neg}"
        );
        let connection_id = neg["connectionId"]
            .as_str()
            .expect("connectionId")
            .to_owned();
        let token = neg["connectionToken"]
            .as_str()
            .expect("connectionToken")
            .to_owned();
        let ws = self
            .open_with(hub, &token, &client_token)
            .await
            .unwrap_or_else(|e| panic!("WebSocket upgrade failed: {e}"));
        let mut client = Client {
            ws: Some(ws),
            protocol,
            buf: Vec::new(),
            connection_id,
            token,
            hub: hub.to_owned(),
            client_token,
        };
        let name = match protocol {
            Proto::Json => "json",
            Proto::MessagePack => "messagepack",
        };
        client
            .ws()
            .send(Message::text(format!(
                "{{\"protocol\":\"{name}\",\"version\":{version}}}\x1e"
            )))
            .await
            .expect("send handshake");
        let first = client.next_frame(T).await.expect("handshake response");
        let Frame::Data(first) = first else {
            panic!("expected the handshake response, got {first:?}");
        };
        assert_eq!(
            first,
            b"{}\x1e",
            "the handshake response must come alone: {:?}",
            String::from_utf8_lossy(&first)
        );
        client
    }

    /// Reconnect `client` with its connection token (no negotiate, no handshake). A socket
    /// still in place is dropped first (TCP closed, no close frame), as a network loss would.
    async fn reconnect(&self, client: &mut Client) {
        client.drop_tcp();
        let ws = self
            .open_with(&client.hub, &client.token, &client.client_token)
            .await
            .unwrap_or_else(|e| panic!("the reconnecting WebSocket was refused: {e}"));
        client.ws = Some(ws);
    }

    fn messages_received(&self) -> u64 {
        self.handle
            .metrics()
            .get(names::messages_received)
            .expect("the messages_received counter exists")
    }

    /// Send `msgs` in one frame and wait until the server has processed them (its
    /// messages-received counter moved on by their number): for messages that get no answer,
    /// such as Ack and Sequence. Only one client sends in each test.
    async fn send_processed(&self, client: &mut Client, msgs: &[Value]) {
        let before = self.messages_received();
        client.send_all(msgs).await;
        let want = before + msgs.len() as u64;
        let deadline = tokio::time::Instant::now() + T;
        loop {
            let now = self.messages_received();
            if now >= want {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the server did not process {msgs:?} within {T:?} (messages received {now}, want {want})"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn reconnects(&self) -> u64 {
        self.handle
            .metrics()
            .get(names::reconnects)
            .expect("the reconnects counter exists")
    }

    async fn stop(self) {
        self.handle.stop().await;
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Proto {
    Json,
    MessagePack,
}

/// One WebSocket frame as the tests see it (the payloads of Close and Ended are read through
/// `Debug`, in failure messages).
#[derive(Debug)]
#[allow(dead_code)]
enum Frame {
    Data(Vec<u8>),
    Close(Option<String>),
    Ended(String),
}

/// A raw stateful-reconnect client: it never sends anything the test does not ask for (no
/// Pings, no Acks).
struct Client {
    /// `None` once the socket was dropped.
    ws: Option<Ws>,
    protocol: Proto,
    buf: Vec<u8>,
    connection_id: String,
    token: String,
    hub: String,
    /// The client token it connected (and reconnects) with.
    client_token: String,
}

impl Client {
    fn ws(&mut self) -> &mut Ws {
        self.ws.as_mut().expect("the client has a socket")
    }

    /// Lose the connection without a close frame: the TCP socket is simply closed. Whatever was
    /// received but not read is lost with it.
    fn drop_tcp(&mut self) {
        self.ws = None;
        self.buf.clear();
    }

    async fn next_frame(&mut self, timeout: Duration) -> Result<Frame> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let next = tokio::time::timeout_at(deadline, self.ws().next())
                .await
                .map_err(|_| anyhow!("no WebSocket frame within {timeout:?}"))?;
            return Ok(match next {
                Some(Ok(Message::Text(t))) => Frame::Data(t.as_bytes().to_vec()),
                Some(Ok(Message::Binary(b))) => Frame::Data(b.to_vec()),
                Some(Ok(Message::Close(f))) => Frame::Close(f.map(|f| format!("{f}"))),
                Some(Ok(_)) => continue,
                Some(Err(e)) => Frame::Ended(e.to_string()),
                None => Frame::Ended("end of stream".to_owned()),
            });
        }
    }

    /// Every hub message of the next data frame (the frame must hold complete messages).
    async fn frame_messages(&mut self, timeout: Duration) -> Result<Vec<Value>> {
        match self.next_frame(timeout).await? {
            Frame::Data(d) => {
                let mut out = Vec::new();
                let mut rest = &d[..];
                while !rest.is_empty() {
                    let (msg, used) = decode_one(self.protocol, rest)?
                        .ok_or_else(|| anyhow!("a frame ends mid-message: {:?}", rest))?;
                    out.push(msg);
                    rest = &rest[used..];
                }
                Ok(out)
            }
            other => bail!("expected a data frame, got {other:?}"),
        }
    }

    /// The next hub message of any type.
    async fn next_any(&mut self, timeout: Duration) -> Result<Value> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some((msg, used)) = decode_one(self.protocol, &self.buf)? {
                self.buf.drain(..used);
                return Ok(msg);
            }
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next_frame(left).await? {
                Frame::Data(d) => self.buf.extend_from_slice(&d),
                other => bail!("expected a hub message, got {other:?}"),
            }
        }
    }

    /// The next hub message other than Ping and Ack (the server's Acks come on its own timer).
    async fn next_message(&mut self, timeout: Duration) -> Result<Value> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let msg = self.next_any(left).await?;
            if msg["type"] != json!(6) && msg["type"] != json!(8) {
                return Ok(msg);
            }
        }
    }

    /// The next message must be the invocation `target(args)`.
    async fn expect_invocation(&mut self, target: &str, args: Value) {
        let msg = self
            .next_message(T)
            .await
            .unwrap_or_else(|e| panic!("waiting for {target}({args}): {e:#}"));
        assert_eq!(
            (
                msg["type"].clone(),
                msg["target"].clone(),
                msg["arguments"].clone()
            ),
            (json!(1), json!(target), args.clone()),
            "expected the invocation {target}({args}), got {msg}"
        );
    }

    /// The next message must be the Completion error of a blocking invocation `id`.
    async fn expect_completion_error(&mut self, id: &str) {
        let msg = self
            .next_message(T)
            .await
            .unwrap_or_else(|e| panic!("waiting for the Completion of {id}: {e:#}"));
        assert_eq!(
            msg["type"],
            json!(3),
            "expected a Completion of {id}, got {msg}"
        );
        assert_eq!(
            msg["invocationId"],
            json!(id),
            "expected the Completion of {id}, got {msg}"
        );
        assert!(
            msg["error"].is_string(),
            "expected a Completion error, got {msg}"
        );
    }

    /// The first frame on a reconnected socket must be exactly `Sequence{first}`.
    async fn expect_sequence_first(&mut self, first: i64) {
        let msgs = self
            .frame_messages(T)
            .await
            .unwrap_or_else(|e| panic!("waiting for the Sequence message: {e:#}"));
        assert!(!msgs.is_empty(), "empty first frame");
        assert_eq!(
            msgs[0],
            json!({ "type": 9, "sequenceId": first }),
            "the first message on the new socket must be Sequence {first}; frame: {msgs:?}"
        );
        // Anything after the Sequence in the same frame is read as ordinary messages.
        for m in &msgs[1..] {
            self.buf.extend_from_slice(&encode(self.protocol, m));
        }
    }

    /// Wait for a Close message (skipping Pings and Acks), then for the socket to close.
    async fn expect_close(&mut self) -> Value {
        let msg = self
            .next_message(T)
            .await
            .unwrap_or_else(|e| panic!("waiting for a Close message: {e:#}"));
        assert_eq!(msg["type"], json!(7), "expected a Close message, got {msg}");
        match self.next_frame(T).await {
            Ok(Frame::Close(_) | Frame::Ended(_)) => {}
            other => panic!("expected the socket to close after the Close message, got {other:?}"),
        }
        msg
    }

    async fn send(&mut self, msg: &Value) {
        self.send_all(std::slice::from_ref(msg)).await;
    }

    /// Send `msgs` in one WebSocket frame.
    async fn send_all(&mut self, msgs: &[Value]) {
        let bytes: Vec<u8> = msgs.iter().flat_map(|m| encode(self.protocol, m)).collect();
        let frame = match self.protocol {
            Proto::Json => Message::text(String::from_utf8(bytes).expect("UTF-8")),
            Proto::MessagePack => Message::binary(bytes),
        };
        self.ws().send(frame).await.expect("send to the server");
    }
}

/// One hub message from the start of `bytes`: the JSON shape and the bytes it used.
fn decode_one(protocol: Proto, bytes: &[u8]) -> Result<Option<(Value, usize)>> {
    match protocol {
        Proto::Json => {
            let Some(end) = bytes.iter().position(|b| *b == 0x1e) else {
                return Ok(None);
            };
            let v = serde_json::from_slice(&bytes[..end])
                .with_context(|| format!("bad JSON {:?}", String::from_utf8_lossy(bytes)))?;
            Ok(Some((v, end + 1)))
        }
        Proto::MessagePack => {
            let Some((prefix, len)) = common::msgpack_frame_len(bytes)? else {
                return Ok(None);
            };
            let mut body = &bytes[prefix..prefix + len];
            let v = rmpv::decode::read_value(&mut body).context("bad MessagePack body")?;
            Ok(Some((msgpack_to_json(&v)?, prefix + len)))
        }
    }
}

/// A MessagePack hub message in the JSON protocol's shape: unlike `common`'s (which keeps
/// Completions raw and always names a Close's fields), Completions, Ack and Sequence are mapped
/// and a Close carries only the fields that are set.
fn msgpack_to_json(v: &rmpv::Value) -> Result<Value> {
    let (ty, items) = common::msgpack_message_items(v)?;
    let f = |i: usize| items.get(i).map(common::to_json).unwrap_or(Value::Null);
    Ok(match ty {
        1 => {
            let mut m = json!({ "type": 1, "target": f(3), "arguments": f(4) });
            if !f(2).is_null() {
                m["invocationId"] = f(2);
            }
            m
        }
        3 => {
            let mut m = json!({ "type": 3, "invocationId": f(2) });
            match f(3).as_u64() {
                Some(1) => m["error"] = f(4),
                Some(3) => m["result"] = f(4),
                _ => {}
            }
            m
        }
        6 => json!({ "type": 6 }),
        7 => {
            let mut m = json!({ "type": 7 });
            if !f(1).is_null() {
                m["error"] = f(1);
            }
            if f(2) == json!(true) {
                m["allowReconnect"] = json!(true);
            }
            m
        }
        8 | 9 => json!({ "type": ty, "sequenceId": f(1) }),
        _ => json!({ "type": ty, "raw": common::to_json(v) }),
    })
}

/// Encode a message given in the JSON shape (the few types the tests send or re-buffer).
fn encode(protocol: Proto, msg: &Value) -> Vec<u8> {
    match protocol {
        Proto::Json => format!("{msg}\x1e").into_bytes(),
        Proto::MessagePack => {
            use rmpv::Value as V;
            let s = |v: &Value| V::from(v.as_str().expect("string"));
            let ty = msg["type"].as_u64().expect("type");
            let arr = match ty {
                1 => {
                    let args: Vec<V> = msg["arguments"]
                        .as_array()
                        .expect("arguments")
                        .iter()
                        .map(json_to_msgpack)
                        .collect();
                    let id = if msg["invocationId"].is_string() {
                        s(&msg["invocationId"])
                    } else {
                        V::Nil
                    };
                    vec![
                        V::from(1),
                        V::Map(vec![]),
                        id,
                        s(&msg["target"]),
                        V::Array(args),
                    ]
                }
                3 => {
                    let mut a = vec![V::from(3), V::Map(vec![]), s(&msg["invocationId"])];
                    if msg["error"].is_string() {
                        a.extend([V::from(1), s(&msg["error"])]);
                    } else {
                        a.push(V::from(2));
                    }
                    a
                }
                6 => vec![V::from(6)],
                8 | 9 => vec![
                    V::from(ty),
                    V::from(msg["sequenceId"].as_i64().expect("sequenceId")),
                ],
                other => panic!("the test does not encode type {other}"),
            };
            common::frame_msgpack(&common::msgpack_bytes(&V::Array(arr)))
        }
    }
}

fn json_to_msgpack(v: &Value) -> rmpv::Value {
    use rmpv::Value as V;
    match v {
        Value::Null => V::Nil,
        Value::Bool(b) => V::from(*b),
        Value::Number(n) => n
            .as_i64()
            .map(V::from)
            .unwrap_or_else(|| V::from(n.as_f64().unwrap_or_default())),
        Value::String(s) => V::from(s.as_str()),
        Value::Array(a) => V::Array(a.iter().map(json_to_msgpack).collect()),
        Value::Object(o) => V::Map(
            o.iter()
                .map(|(k, v)| (V::from(k.as_str()), json_to_msgpack(v)))
                .collect(),
        ),
    }
}

/// A blocking invocation of `target` with `id` (the hub has no upstream: it gets a Completion
/// error, which is the marker that everything sent before it was processed).
fn blocking_invocation(id: &str, target: &str) -> Value {
    json!({ "type": 1, "invocationId": id, "target": target, "arguments": [] })
}

// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn negotiate_offers_stateful_reconnect_only_when_asked_in_every_mode() {
    let b = Broker::start(config(ServiceMode::Serverless)).await;
    let asked = b.negotiate("chat", true).await;
    assert_eq!(asked["useStatefulReconnect"], json!(true), "{asked}");
    let not_asked = b.negotiate("chat", false).await;
    assert!(
        not_asked.get("useStatefulReconnect").is_none(),
        "a client that did not ask must get no useStatefulReconnect property: {not_asked}"
    );
    b.stop().await;

    let b = Broker::start(Config {
        mode: ServiceMode::Default,
        ..Config::default()
    })
    .await;
    let default_mode = b.negotiate("chat", true).await;
    assert_eq!(
        default_mode["useStatefulReconnect"],
        json!(true),
        "Default mode offers stateful reconnect too: {default_mode}"
    );
    let not_asked = b.negotiate("chat", false).await;
    assert!(
        not_asked.get("useStatefulReconnect").is_none(),
        "{not_asked}"
    );
    b.stop().await;

    let b = Broker::start(Config {
        stateful_reconnect: false,
        ..config(ServiceMode::Serverless)
    })
    .await;
    let disabled = b.negotiate("chat", true).await;
    assert!(
        disabled.get("useStatefulReconnect").is_none(),
        "stateful_reconnect = false must not offer it: {disabled}"
    );
    b.stop().await;
}

async fn sequence_then_replay(protocol: Proto) {
    let b = Broker::start(config(ServiceMode::Serverless)).await;
    let hub = "replay";
    let mut c = b.connect(hub, protocol, 2).await;
    for i in 0..5 {
        b.rest.broadcast(hub, "m", json!([i])).await;
    }
    for i in 0..5 {
        c.expect_invocation("m", json!([i])).await;
    }
    // Lose the socket (no close frame) and come back with the same token, no handshake: nothing
    // was acknowledged, so Sequence 1 and all five again.
    b.reconnect(&mut c).await;
    c.expect_sequence_first(1).await;
    for i in 0..5 {
        c.expect_invocation("m", json!([i])).await;
    }
    // Later messages continue on the new socket.
    b.rest.broadcast(hub, "m", json!([5])).await;
    c.expect_invocation("m", json!([5])).await;
    assert_eq!(b.reconnects(), 1, "switchboard_stateful_reconnects_total");

    // A second loss, still nothing acknowledged: everything again, in order.
    b.reconnect(&mut c).await;
    c.expect_sequence_first(1).await;
    for i in 0..6 {
        c.expect_invocation("m", json!([i])).await;
    }
    b.rest.broadcast(hub, "m", json!([6])).await;
    c.expect_invocation("m", json!([6])).await;
    assert_eq!(b.reconnects(), 2, "switchboard_stateful_reconnects_total");
    assert_eq!(b.rest.connection_status(hub, &c.connection_id).await, 200);
    b.stop().await;
}

#[tokio::test]
async fn reconnect_without_handshake_gets_sequence_first_then_the_replay_json() {
    sequence_then_replay(Proto::Json).await;
}

#[tokio::test]
async fn reconnect_without_handshake_gets_sequence_first_then_the_replay_messagepack() {
    sequence_then_replay(Proto::MessagePack).await;
}

async fn ack_trims_and_duplicates_are_dropped(protocol: Proto) {
    let b = Broker::start(config(ServiceMode::Serverless)).await;
    let hub = "acks";
    let mut c = b.connect(hub, protocol, 2).await;
    for i in 0..6 {
        b.rest.broadcast(hub, "m", json!([i])).await; // server ids 1..=6
    }
    for i in 0..6 {
        c.expect_invocation("m", json!([i])).await;
    }
    b.send_processed(&mut c, &[json!({ "type": 8, "sequenceId": 4 })])
        .await;
    b.reconnect(&mut c).await;
    // Only what came after the Ack: m(4), m(5).
    c.expect_sequence_first(5).await;
    c.expect_invocation("m", json!([4])).await;
    c.expect_invocation("m", json!([5])).await;

    // Client message 1: a blocking invocation, answered with a Completion error (server id 7);
    // the server acknowledges client message 1 on its one-second timer.
    c.send(&blocking_invocation("a1", "NoSuchTarget")).await;
    c.expect_completion_error("a1").await;
    let ack = loop {
        let m = c
            .next_any(Duration::from_secs(3))
            .await
            .unwrap_or_else(|e| panic!("waiting for the server's Ack of client message 1: {e:#}"));
        if m["type"] != json!(6) {
            break m;
        }
    };
    assert_eq!(ack, json!({ "type": 8, "sequenceId": 1 }));

    // Lost again with 5..=7 unacknowledged.
    b.reconnect(&mut c).await;
    c.expect_sequence_first(5).await;
    c.expect_invocation("m", json!([4])).await;
    c.expect_invocation("m", json!([5])).await;
    c.expect_completion_error("a1").await;

    // The client replays from its message 1: a1 again is a duplicate (dropped, no second
    // Completion), a2 is new (client id 2).
    c.send_all(&[
        json!({ "type": 9, "sequenceId": 1 }),
        blocking_invocation("a1", "NoSuchTarget"),
        blocking_invocation("a2", "NoSuchTarget"),
    ])
    .await;
    c.expect_completion_error("a2").await; // server id 8

    // Ack up to 8, one more message (id 9): the next reconnect replays only that one.
    b.send_processed(&mut c, &[json!({ "type": 8, "sequenceId": 8 })])
        .await;
    b.rest.broadcast(hub, "m", json!([6])).await;
    c.expect_invocation("m", json!([6])).await;
    b.reconnect(&mut c).await;
    c.expect_sequence_first(9).await;
    c.expect_invocation("m", json!([6])).await;
    b.rest.broadcast(hub, "m", json!([7])).await;
    c.expect_invocation("m", json!([7])).await;
    b.stop().await;
}

#[tokio::test]
async fn ack_trims_the_replay_and_client_duplicates_are_dropped_json() {
    ack_trims_and_duplicates_are_dropped(Proto::Json).await;
}

#[tokio::test]
async fn ack_trims_the_replay_and_client_duplicates_are_dropped_messagepack() {
    ack_trims_and_duplicates_are_dropped(Proto::MessagePack).await;
}

#[tokio::test]
async fn everything_acknowledged_gives_sequence_last_sent_plus_one_and_no_replay() {
    let b = Broker::start(config(ServiceMode::Serverless)).await;
    let hub = "acked";
    let mut c = b.connect(hub, Proto::Json, 2).await;
    for i in 0..3 {
        b.rest.broadcast(hub, "m", json!([i])).await;
    }
    for i in 0..3 {
        c.expect_invocation("m", json!([i])).await;
    }
    b.send_processed(&mut c, &[json!({ "type": 8, "sequenceId": 3 })])
        .await;
    b.reconnect(&mut c).await;
    let first = c.frame_messages(T).await.expect("the Sequence frame");
    assert_eq!(
        first,
        vec![json!({ "type": 9, "sequenceId": 4 })],
        "nothing buffered: Sequence = last sent + 1, alone"
    );
    // Nothing replayed: the next message is the marker sent now.
    b.rest.broadcast(hub, "m", json!(["marker"])).await;
    c.expect_invocation("m", json!(["marker"])).await;
    b.stop().await;
}

#[tokio::test]
async fn a_new_socket_replaces_one_the_server_still_thinks_alive() {
    let b = Broker::start(config(ServiceMode::Serverless)).await;
    let hub = "replace";
    let mut c = b.connect(hub, Proto::Json, 2).await;
    b.rest.broadcast(hub, "m", json!([0])).await;
    c.expect_invocation("m", json!([0])).await;
    // The old socket stays open; a second one arrives with the same token (no 409).
    let mut old = c.ws.take().expect("socket");
    let new = b
        .open(hub, &c.token)
        .await
        .unwrap_or_else(|e| panic!("the replacing WebSocket was refused: {e}"));
    c.ws = Some(new);
    c.expect_sequence_first(1).await;
    c.expect_invocation("m", json!([0])).await;
    // The server closes the old socket.
    let deadline = tokio::time::Instant::now() + T;
    loop {
        match tokio::time::timeout_at(deadline, old.next()).await {
            Err(_) => panic!("the replaced socket was not closed within {T:?}"),
            Ok(Some(Ok(Message::Close(_))) | Some(Err(_)) | None) => break,
            Ok(Some(Ok(Message::Text(t)))) if t.as_str() == "{\"type\":6}\x1e" => {}
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => {}
            Ok(Some(Ok(other))) => panic!("the replaced socket got {other:?}"),
        }
    }
    b.rest.broadcast(hub, "m", json!([1])).await;
    c.expect_invocation("m", json!([1])).await;
    b.stop().await;
}

#[tokio::test]
async fn sequence_greater_than_received_closes_the_connection() {
    let b = Broker::start(config(ServiceMode::Serverless)).await;
    let hub = "seq";
    let mut c = b.connect(hub, Proto::Json, 2).await;
    // Client message 1, processed.
    c.send(&blocking_invocation("s1", "NoSuchTarget")).await;
    c.expect_completion_error("s1").await;
    b.reconnect(&mut c).await;
    c.expect_sequence_first(1).await;
    c.expect_completion_error("s1").await;
    // Sequence 2 = the next expected id: accepted; s2 is processed as client message 2.
    c.send_all(&[
        json!({ "type": 9, "sequenceId": 2 }),
        blocking_invocation("s2", "NoSuchTarget"),
    ])
    .await;
    c.expect_completion_error("s2").await;
    // Sequence 4 > 2 received + 1: fatal.
    c.send(&json!({ "type": 9, "sequenceId": 4 })).await;
    let close = c.expect_close().await;
    assert_eq!(close, json!({ "type": 7, "error": SEQUENCE_TOO_LARGE }));
    b.rest
        .wait_connection_status(hub, &c.connection_id, 404, T)
        .await;
    b.expect_reconnect_refused(hub, &c.token).await;
    b.stop().await;
}

#[tokio::test]
async fn replay_buffer_overflow_closes_the_connection() {
    let b = Broker::start(Config {
        limits: switchboard::config::LimitsConfig {
            reconnect_buffer_bytes: 2000,
            ..Default::default()
        },
        ..config(ServiceMode::Serverless)
    })
    .await;
    let hub = "overflow";
    let mut c = b.connect(hub, Proto::Json, 2).await;
    let payload = "x".repeat(500);
    // ~5 KB in ten messages, never acknowledged: only a few fit in 2000 bytes.
    for i in 0..10 {
        b.rest.broadcast(hub, "m", json!([i, payload])).await;
    }
    let mut received = 0;
    let close = loop {
        let m = c.next_message(T).await.unwrap_or_else(|e| {
            panic!("waiting for the overflow Close after {received} messages: {e:#}")
        });
        match m["type"].as_u64() {
            Some(1) => {
                assert_eq!(
                    m["arguments"],
                    json!([received, payload]),
                    "messages in order"
                );
                received += 1;
            }
            Some(7) => break m,
            _ => panic!("unexpected message {m}"),
        }
    };
    assert!(
        (1..10).contains(&received),
        "some messages fit in the buffer, not all: got {received} before the Close"
    );
    let error = close["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("stateful reconnect buffer limit"),
        "the Close must name the buffer limit: {close}"
    );
    assert_ne!(close["allowReconnect"], json!(true), "{close}");
    match c.next_frame(T).await {
        Ok(Frame::Close(_) | Frame::Ended(_)) => {}
        other => panic!("expected the socket to close after the Close message, got {other:?}"),
    }
    b.rest
        .wait_connection_status(hub, &c.connection_id, 404, T)
        .await;
    b.stop().await;
}

// Broker bug: a connection negotiated with useStatefulReconnect=true stays resumable after a
// version-1 handshake (src/http/client_ws.rs registers it in `resumable` from the negotiate flag
// alone; src/conn/client.rs keeps `resume` although `replay` is None, and `wait_for_resume` only
// checks `resume`). Observed: the reconnect with the token gets 101 instead of 404, the original
// connection then ends (`adopt` returns false) and the new socket gets no frame and no close
// (reset on the client's first send); without a reconnect the lost connection lingers for the
// whole reconnect window (HEAD connections/{id} 200 for ~15 s) instead of ending with its socket.
#[tokio::test]
async fn handshake_version_1_turns_stateful_reconnect_off() {
    let b = Broker::start(config(ServiceMode::Serverless)).await;
    let hub = "v1";
    let mut c = b.connect(hub, Proto::Json, 1).await;
    for i in 0..3 {
        b.rest.broadcast(hub, "m", json!([i])).await;
    }
    for i in 0..3 {
        c.expect_invocation("m", json!([i])).await;
    }
    // Lost without a close frame: with version 1 there is nothing to resume.
    c.drop_tcp();
    b.expect_reconnect_refused(hub, &c.token).await;
    // ...and the connection ends with its socket (not after the 15 s reconnect window).
    b.rest
        .wait_connection_status(hub, &c.connection_id, 404, T)
        .await;
    b.stop().await;
}

#[tokio::test]
async fn a_graceful_close_ends_the_connection() {
    let b = Broker::start(config(ServiceMode::Serverless)).await;
    let hub = "graceful";
    let mut c = b.connect(hub, Proto::Json, 2).await;
    b.rest.broadcast(hub, "m", json!([0])).await;
    c.expect_invocation("m", json!([0])).await;
    c.ws().close(None).await.expect("send the close frame");
    b.rest
        .wait_connection_status(hub, &c.connection_id, 404, T)
        .await;
    b.expect_reconnect_refused(hub, &c.token).await;
    b.stop().await;
}

#[tokio::test]
async fn the_connection_ends_when_the_client_does_not_come_back_within_the_window() {
    let b = Broker::start(Config {
        limits: switchboard::config::LimitsConfig {
            reconnect_window_secs: 1,
            ..Default::default()
        },
        ..config(ServiceMode::Serverless)
    })
    .await;
    let hub = "window";
    let mut c = b.connect(hub, Proto::Json, 2).await;
    b.rest.broadcast(hub, "m", json!([0])).await;
    c.expect_invocation("m", json!([0])).await;
    c.drop_tcp();
    // Kept for the 1 s window, then gone.
    b.rest
        .wait_connection_status(hub, &c.connection_id, 404, Duration::from_secs(6))
        .await;
    b.expect_reconnect_refused(hub, &c.token).await;
    assert_eq!(b.reconnects(), 0);
    b.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Default mode: a client routed to a hub server (a scripted one, speaking the service protocol).
// The broker does the stateful-reconnect part itself: the hub server is asked for a version 1
// connection, never sees Ack or Sequence or the client's duplicates, and sees no disconnect
// while the client is away inside the window (it gets the client's Pings from the broker).

use common::fake_server::FakeServer;
use switchboard::protocol::service::{ConnectionType, ServiceMessage};

/// Default mode, keep-alive every second (so the hub server gets a Ping while the client is
/// away), with `window` seconds to come back.
fn default_mode(window: u64) -> Config {
    Config {
        mode: ServiceMode::Default,
        limits: switchboard::config::LimitsConfig {
            keep_alive_interval_secs: 1,
            reconnect_window_secs: window,
            ..Default::default()
        },
        ..Config::default()
    }
}

/// What the hub server hears of connection `id` next.
#[derive(Debug)]
enum Heard {
    /// Hub messages other than Ping.
    Messages(Vec<Value>),
    /// CloseConnection, with how many Pings came before it.
    Closed(usize),
}

async fn hear(server: &mut FakeServer, protocol: Proto, id: &str) -> Heard {
    let mut pings = 0;
    loop {
        let msg = server
            .next()
            .await
            .unwrap_or_else(|e| panic!("the hub server waiting to hear of {id}: {e:#}"));
        match msg {
            ServiceMessage::ConnectionData {
                connection_id,
                payload,
                ..
            } if connection_id == id => {
                let mut msgs = Vec::new();
                let mut rest = &payload[..];
                while !rest.is_empty() {
                    let (m, used) = decode_one(protocol, rest)
                        .expect("the hub server gets well-formed hub messages")
                        .expect("the hub server gets whole hub messages");
                    rest = &rest[used..];
                    if m["type"] == json!(6) {
                        pings += 1;
                    } else {
                        msgs.push(m);
                    }
                }
                if !msgs.is_empty() {
                    return Heard::Messages(msgs);
                }
            }
            ServiceMessage::CloseConnection { connection_id, .. } if connection_id == id => {
                return Heard::Closed(pings);
            }
            other => panic!("the hub server got an unexpected {other:?}"),
        }
    }
}

fn invocation(target: &str, arg: i64) -> Value {
    json!({ "type": 1, "target": target, "arguments": [arg] })
}

async fn routed_client_survives_a_loss(protocol: Proto) {
    let b = Broker::start(default_mode(15)).await;
    let hub = "routed";
    let mut server = FakeServer::connect(&b.base, &b.key, hub, "srv-1", ConnectionType::Default)
        .await
        .expect("the hub server connects");
    let (mut c, accepted) = tokio::join!(b.connect(hub, protocol, 2), server.accept_client());
    let (id, ..) = accepted.expect("the hub server gets the client");
    assert_eq!(id, c.connection_id);
    let name = match protocol {
        Proto::Json => "json",
        Proto::MessagePack => "messagepack",
    };
    assert_eq!(
        String::from_utf8_lossy(&server.last_handshake),
        format!("{{\"protocol\":\"{name}\",\"version\":1}}\x1e"),
        "the hub server is asked for a version 1 connection: the broker does Ack and Sequence"
    );

    // Hub server → client: ids 1..=3, the last through a REST broadcast the broker fans out
    // itself (sent once the first two arrived: the two paths have no order between them).
    for i in 0..2 {
        server
            .data(&id, &encode(protocol, &invocation("m", i)))
            .await
            .unwrap();
    }
    for i in 0..2 {
        c.expect_invocation("m", json!([i])).await;
    }
    b.rest.broadcast(hub, "m", json!([2])).await;
    c.expect_invocation("m", json!([2])).await;
    // Client → hub server: its Ack stays in the broker; the invocation after it is what the hub
    // server hears next.
    c.send_all(&[json!({ "type": 8, "sequenceId": 2 }), invocation("up", 1)])
        .await;
    match hear(&mut server, protocol, &id).await {
        Heard::Messages(m) => assert_eq!(m, vec![invocation("up", 1)]),
        Heard::Closed(_) => panic!("the hub server saw a disconnect"),
    }

    // The client's socket is lost. The hub server keeps sending and sees no disconnect: it
    // hears the client's Pings from the broker.
    c.drop_tcp();
    for i in 3..5 {
        server
            .data(&id, &encode(protocol, &invocation("m", i)))
            .await
            .unwrap();
    }
    b.rest.broadcast(hub, "m", json!([5])).await;
    let mut pings = 0;
    let deadline = tokio::time::Instant::now() + T;
    while pings == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no Ping reached the hub server"
        );
        match tokio::time::timeout(Duration::from_millis(300), server.next()).await {
            Err(_) => {}
            Ok(Ok(ServiceMessage::ConnectionData {
                connection_id,
                payload,
                ..
            })) if connection_id == id => {
                let (m, _) = decode_one(protocol, &payload).unwrap().unwrap();
                assert_eq!(
                    m["type"],
                    json!(6),
                    "only Pings while the client is away: {m}"
                );
                pings += 1;
            }
            Ok(other) => panic!("while the client is away the hub server got {other:?}"),
        }
    }
    assert_eq!(b.rest.connection_status(hub, &id).await, 200);

    // Back with the same token: Sequence 3 (1 and 2 were acknowledged), then m(2) and what was
    // sent while away, each once: m(3) before m(4) (one path); the broadcast m(5) came another
    // path, so it may sit anywhere among them.
    b.reconnect(&mut c).await;
    c.expect_sequence_first(3).await;
    c.expect_invocation("m", json!([2])).await;
    let mut away = Vec::new();
    for _ in 0..3 {
        let msg = c
            .next_message(T)
            .await
            .unwrap_or_else(|e| panic!("the replay of what was sent while away: {e:#}"));
        assert_eq!(
            (&msg["type"], &msg["target"]),
            (&json!(1), &json!("m")),
            "{msg}"
        );
        away.push(msg["arguments"][0].as_i64().expect("a number"));
    }
    let from_server: Vec<i64> = away.iter().copied().filter(|&n| n != 5).collect();
    assert_eq!(from_server, vec![3, 4], "replayed: {away:?}");
    assert_eq!(
        away.iter().filter(|&&n| n == 5).count(),
        1,
        "replayed: {away:?}"
    );
    // The client replays from its message 1: "up 1" is a duplicate, "up 2" is new. The hub
    // server hears only "up 2".
    c.send_all(&[
        json!({ "type": 9, "sequenceId": 1 }),
        invocation("up", 1),
        invocation("up", 2),
    ])
    .await;
    match hear(&mut server, protocol, &id).await {
        Heard::Messages(m) => assert_eq!(m, vec![invocation("up", 2)]),
        Heard::Closed(_) => panic!("the hub server saw a disconnect"),
    }
    server
        .data(&id, &encode(protocol, &invocation("m", 6)))
        .await
        .unwrap();
    c.expect_invocation("m", json!([6])).await;
    assert_eq!(b.reconnects(), 1, "switchboard_stateful_reconnects_total");
    b.stop().await;
}

#[tokio::test]
async fn default_mode_routed_client_comes_back_and_the_hub_server_sees_no_disconnect_json() {
    routed_client_survives_a_loss(Proto::Json).await;
}

#[tokio::test]
async fn default_mode_routed_client_comes_back_and_the_hub_server_sees_no_disconnect_messagepack() {
    routed_client_survives_a_loss(Proto::MessagePack).await;
}

#[tokio::test]
async fn default_mode_the_hub_server_sees_the_disconnect_when_the_window_expires() {
    let b = Broker::start(default_mode(2)).await;
    let hub = "routed_window";
    let mut server = FakeServer::connect(&b.base, &b.key, hub, "srv-1", ConnectionType::Default)
        .await
        .expect("the hub server connects");
    let (mut c, accepted) = tokio::join!(b.connect(hub, Proto::Json, 2), server.accept_client());
    let (id, ..) = accepted.expect("the hub server gets the client");
    server
        .data(&id, &encode(Proto::Json, &invocation("m", 0)))
        .await
        .unwrap();
    c.expect_invocation("m", json!([0])).await;
    let lost = tokio::time::Instant::now();
    c.drop_tcp();
    // Pings first (every second), then the disconnect, once the 2 s window is over.
    let pings = match hear(&mut server, Proto::Json, &id).await {
        Heard::Closed(pings) => pings,
        Heard::Messages(m) => panic!("the hub server heard {m:?} from a lost client"),
    };
    assert!(
        pings >= 1,
        "the hub server hears the client's Pings (every second) until the window is over"
    );
    assert!(
        lost.elapsed() >= Duration::from_secs(2),
        "the hub server saw the disconnect after {:?}, inside the 2 s window",
        lost.elapsed()
    );
    b.rest.wait_connection_status(hub, &id, 404, T).await;
    b.expect_reconnect_refused(hub, &c.token).await;
    b.stop().await;
}

#[tokio::test]
async fn default_mode_replay_buffer_overflow_while_away_closes_and_tells_the_hub_server() {
    let mut config = default_mode(15);
    config.limits.reconnect_buffer_bytes = 1_000;
    let b = Broker::start(config).await;
    let hub = "routed_overflow";
    let mut server = FakeServer::connect(&b.base, &b.key, hub, "srv-1", ConnectionType::Default)
        .await
        .expect("the hub server connects");
    let (mut c, accepted) = tokio::join!(b.connect(hub, Proto::Json, 2), server.accept_client());
    let (id, ..) = accepted.expect("the hub server gets the client");
    c.drop_tcp();
    // 20 × ~100 B, never acknowledged: over the 1,000 B limit while the client is away.
    let big = json!({ "type": 1, "target": "m", "arguments": ["x".repeat(80)] });
    for _ in 0..20 {
        server.data(&id, &encode(Proto::Json, &big)).await.unwrap();
    }
    match hear(&mut server, Proto::Json, &id).await {
        Heard::Closed(_) => {}
        Heard::Messages(m) => panic!("the hub server heard {m:?} from a lost client"),
    }
    b.rest.wait_connection_status(hub, &id, 404, T).await;
    b.expect_reconnect_refused(hub, &c.token).await;
    b.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Who may resume, and what a refused upgrade leaves behind.

/// `switchboard_connection_takeover_refused_total`.
fn takeovers_refused(b: &Broker) -> u64 {
    b.handle
        .metrics()
        .get(names::connection_takeover_refused)
        .expect("the takeover counter exists")
}

#[tokio::test]
async fn negotiate_version_0_offers_no_stateful_reconnect_and_its_id_cannot_resume() {
    let b = Broker::start(config(ServiceMode::Serverless)).await;
    let hub = "v0";
    let token = client_token(&b.key, hub, Some("bob"));
    // Without negotiateVersion the answer is version 0: the token is the public connection id.
    let neg = negotiate(&b.base, hub, &token, "&useStatefulReconnect=true").await;
    assert_eq!(neg["negotiateVersion"], json!(0), "{neg}");
    assert!(
        neg.get("useStatefulReconnect").is_none(),
        "version 0 must not offer stateful reconnect: {neg}"
    );
    let id = neg["connectionId"]
        .as_str()
        .expect("connectionId")
        .to_owned();
    let ws = b.open_with(hub, &id, &token).await.expect("the upgrade");
    let mut c = Client {
        ws: Some(ws),
        protocol: Proto::Json,
        buf: Vec::new(),
        connection_id: id.clone(),
        token: id.clone(),
        hub: hub.to_owned(),
        client_token: token.clone(),
    };
    // Handshake version 2, as a client that asked for stateful reconnect sends it.
    c.ws()
        .send(Message::text("{\"protocol\":\"json\",\"version\":2}\x1e"))
        .await
        .expect("send handshake");
    assert!(matches!(c.next_frame(T).await, Ok(Frame::Data(d)) if d == b"{}\x1e"));
    b.rest.broadcast(hub, "m", json!([1])).await;
    c.expect_invocation("m", json!([1])).await;
    // Lost: the connection is not resumable, with the id in the URL as a version-0 client has it.
    c.drop_tcp();
    b.expect_reconnect_refused_with(hub, &id, &token).await;
    b.rest.wait_connection_status(hub, &id, 404, T).await;
    b.stop().await;
}

#[tokio::test]
async fn only_a_token_of_the_same_hub_and_user_resumes_a_connection() {
    let b = Broker::start(config(ServiceMode::Serverless)).await;
    let hub = "owned";
    let bob = client_token(&b.key, hub, Some("bob"));
    let mut c = b.connect_with(hub, Proto::Json, 2, bob).await;
    b.rest.broadcast(hub, "m", json!([1])).await;
    c.expect_invocation("m", json!([1])).await;
    c.drop_tcp();
    // Bob is away. Valid tokens of someone else present his connection token: another user of
    // the hub, an anonymous client, and bob himself for another hub (with that hub's URL).
    let eve = client_token(&b.key, hub, Some("eve"));
    let anonymous = client_token(&b.key, hub, None);
    let bob_elsewhere = client_token(&b.key, "elsewhere", Some("bob"));
    b.expect_reconnect_refused_with(hub, &c.token, &eve).await;
    b.expect_reconnect_refused_with(hub, &c.token, &anonymous)
        .await;
    b.expect_reconnect_refused_with("elsewhere", &c.token, &bob_elsewhere)
        .await;
    assert_eq!(takeovers_refused(&b), 3);
    // An unknown token is refused the same way, and not counted.
    b.expect_reconnect_refused_with(hub, "no-such-token", &eve)
        .await;
    assert_eq!(takeovers_refused(&b), 3);
    assert_eq!(b.reconnects(), 0);

    // Bob comes back with a fresh token of his own (same user, other claims): the replay is his.
    b.rest.broadcast(hub, "m", json!([2])).await;
    c.client_token =
        common::client_token_with(&b.key, hub, &json!({ "nameid": "bob", "role": "renewed" }));
    b.reconnect(&mut c).await;
    c.expect_sequence_first(1).await;
    c.expect_invocation("m", json!([1])).await;
    c.expect_invocation("m", json!([2])).await;
    assert_eq!(b.reconnects(), 1);
    b.stop().await;
}

#[tokio::test]
async fn a_stateful_connect_refused_for_a_full_broker_leaves_nothing_resumable() {
    let mut cfg = config(ServiceMode::Serverless);
    cfg.limits.max_connections = 1;
    let b = Broker::start(cfg).await;
    let hub = "full";
    let neg = b.negotiate(hub, true).await;
    let token = neg["connectionToken"]
        .as_str()
        .expect("connectionToken")
        .to_owned();
    // Another client takes the only connection slot meanwhile (handshake version 1: not
    // stateful, so it is gone as soon as its socket is).
    let other = b.connect(hub, Proto::Json, 1).await;
    match b.open(hub, &token).await {
        Err(tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 429),
        Err(e) => panic!("a connect to a full broker must get 429, got {e}"),
        Ok(_) => panic!("a connect to a full broker must get 429, but it was upgraded"),
    }
    // Room again once the other client has left.
    let other_id = other.connection_id.clone();
    drop(other);
    b.rest.wait_connection_status(hub, &other_id, 404, T).await;
    wait_for_room(&b, hub).await;
    // The refused connect used the negotiation up and registered nothing to resume.
    b.expect_reconnect_refused(hub, &token).await;
    b.stop().await;
}

#[tokio::test]
async fn a_stateful_connect_whose_upgrade_fails_leaves_nothing_resumable() {
    let b = Broker::start(config(ServiceMode::Serverless)).await;
    let hub = "broken";
    let neg = b.negotiate(hub, true).await;
    let token = neg["connectionToken"]
        .as_str()
        .expect("connectionToken")
        .to_owned();
    // An upgrade request the WebSocket layer refuses (no `Connection: Upgrade`, no key).
    let status = broken_upgrade(&b, hub, &token).await;
    assert_eq!(status, 400, "a malformed upgrade is refused");
    b.expect_reconnect_refused(hub, &token).await;
    b.stop().await;
}

/// Send `GET /client/?hub=..&id=..` with `Upgrade: websocket` but without the rest of a
/// WebSocket handshake, over a raw socket; the status of the answer.
async fn broken_upgrade(b: &Broker, hub: &str, connection_token: &str) -> u16 {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let addr = b.base.trim_start_matches("http://");
    let mut socket = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let request = format!(
        "GET /client/?hub={hub}&id={connection_token} HTTP/1.1\r\nHost: {addr}\r\n\
         Upgrade: websocket\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
        b.token(hub)
    );
    socket
        .write_all(request.as_bytes())
        .await
        .expect("send the request");
    let mut answer = Vec::new();
    tokio::time::timeout(T, socket.read_to_end(&mut answer))
        .await
        .expect("an answer within 5 s")
        .expect("read the answer");
    let text = String::from_utf8_lossy(&answer);
    text.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {text:?}"))
}

/// Wait (bounded) until the broker has a free connection slot: negotiate stops answering 429.
async fn wait_for_room(b: &Broker, hub: &str) {
    let deadline = tokio::time::Instant::now() + T;
    loop {
        let a =
            common::negotiate_raw(&b.base, hub, Some(&b.token(hub)), "&negotiateVersion=1").await;
        if a.status == 200 {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the broker is still full after {T:?}: {} {}",
            a.status,
            a.text()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
