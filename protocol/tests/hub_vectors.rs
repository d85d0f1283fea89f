//! Every entry of `protocol/tests/vectors/hub-protocol.json` (`docs/protocol.md#test-vectors`) run through the
//! protocol module: valid hub messages decode to the vector's neutral `message`, `roundtrip`
//! entries re-encode byte for byte, invalid entries are rejected with the .NET text, and the
//! handshake, framing and negotiate entries go through their own modules. One test per vector
//! group; each collects every failure and prints all failing vector names before failing, and
//! counts what it checked so that no vector can be skipped silently. A last test throws
//! truncations, mutations and random bytes at every decoder.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::OnceLock;

use bytes::{Bytes, BytesMut};
use serde_json::{Map, Value, json};
use switchboard_protocol::*;

const VECTORS: &str = include_str!("vectors/hub-protocol.json");

/// Large enough for every vector.
const MAX_SIZE: usize = 1 << 20;

fn file() -> &'static Value {
    static FILE: OnceLock<Value> = OnceLock::new();
    FILE.get_or_init(|| serde_json::from_str(VECTORS).expect("the vector file is valid JSON"))
}

fn entries(key: &str, tags: &[&str]) -> Vec<&'static Value> {
    file()[key]
        .as_array()
        .expect("vector list")
        .iter()
        .filter(|v| tags.contains(&v["protocol"].as_str().unwrap_or_default()))
        .collect()
}

fn hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex"))
        .collect()
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The wire bytes of an entry: `encoded_text` or `encoded_hex`.
fn input(v: &Value) -> Vec<u8> {
    match (v["encoded_text"].as_str(), v["encoded_hex"].as_str()) {
        (Some(text), _) => text.as_bytes().to_vec(),
        (None, Some(h)) => hex(h),
        _ => Vec::new(),
    }
}

fn label(v: &Value) -> String {
    let name = v["name"]
        .as_str()
        .map(str::to_owned)
        .or_else(|| v["encoded_text"].as_str().map(|t| format!("{t:?}")))
        .or_else(|| v["encoded_hex"].as_str().map(|h| format!("hex {h}")))
        .unwrap_or_default();
    format!(
        "[{} {}] {name}",
        v["protocol"].as_str().unwrap_or("?"),
        v["kind"].as_str().or(v["usage"].as_str()).unwrap_or("?")
    )
}

/// Runs `check` on every entry, collecting failures; asserts the number checked.
fn run_group(
    group: &str,
    list: &[&Value],
    expected: usize,
    check: impl Fn(&Value) -> Result<(), String>,
) {
    let mut failures = Vec::new();
    for v in list {
        match catch_unwind(AssertUnwindSafe(|| check(v))) {
            Ok(Ok(())) => {}
            Ok(Err(why)) => failures.push(format!("{}: {why}", label(v))),
            Err(_) => failures.push(format!("{}: PANICKED", label(v))),
        }
    }
    for f in &failures {
        eprintln!("FAILED {f}");
    }
    assert!(
        failures.is_empty(),
        "{group}: {} of {} vectors failed (listed above)",
        failures.len(),
        list.len()
    );
    assert_eq!(list.len(), expected, "{group}: number of vectors checked");
}

fn protocol_of(tag: &str) -> HubProtocol {
    if tag == "json" {
        HubProtocol::Json
    } else {
        HubProtocol::MessagePack
    }
}

// ---------------------------------------------------------------------------------------------
// Neutral form of a HubMessage (the vectors' `message` shape)
// ---------------------------------------------------------------------------------------------

fn mp_to_neutral(v: &rmpv::Value) -> Value {
    use rmpv::Value as M;
    match v {
        M::Nil => Value::Null,
        M::Boolean(b) => json!(b),
        M::Integer(i) => i
            .as_i64()
            .map(Value::from)
            .or_else(|| i.as_u64().map(Value::from))
            .unwrap_or(Value::Null),
        M::F32(f) => json!(f64::from(*f)),
        M::F64(f) => json!(f),
        M::String(s) => json!(String::from_utf8_lossy(s.as_bytes())),
        M::Binary(b) => json!({ "$bin": to_hex(b) }),
        M::Array(items) => Value::Array(items.iter().map(mp_to_neutral).collect()),
        M::Map(entries) => Value::Object(
            entries
                .iter()
                .map(|(k, v)| {
                    (
                        k.as_str()
                            .map(str::to_owned)
                            .unwrap_or_else(|| k.to_string()),
                        mp_to_neutral(v),
                    )
                })
                .collect(),
        ),
        M::Ext(-1, data) => json!({ "$timestamp": transcode::timestamp_to_iso8601(data) }),
        M::Ext(ty, data) => json!({ "$ext": ty, "data": to_hex(data) }),
    }
}

fn raw_to_neutral(raw: &RawValue) -> Result<Value, String> {
    match raw {
        RawValue::Json(text) => serde_json::from_slice(text).map_err(|e| format!("raw JSON {e}")),
        RawValue::MessagePack(bytes) => {
            let mut rd = &bytes[..];
            let value =
                rmpv::decode::read_value(&mut rd).map_err(|e| format!("raw MessagePack {e}"))?;
            if !rd.is_empty() {
                return Err(format!("raw MessagePack has {} trailing bytes", rd.len()));
            }
            Ok(mp_to_neutral(&value))
        }
    }
}

fn neutral(msg: &HubMessage) -> Result<Value, String> {
    let mut m = Map::new();
    m.insert("type".into(), json!(msg.type_id()));
    let headers = |m: &mut Map<String, Value>, h: &Headers| {
        if !h.is_empty() {
            m.insert(
                "headers".into(),
                Value::Object(h.iter().map(|(k, v)| (k.clone(), json!(v))).collect()),
            );
        }
    };
    match msg {
        HubMessage::Invocation(inv) | HubMessage::StreamInvocation(inv) => {
            headers(&mut m, &inv.headers);
            if let Some(id) = &inv.invocation_id {
                m.insert("invocationId".into(), json!(id));
            }
            m.insert("target".into(), json!(inv.target));
            m.insert("arguments".into(), raw_to_neutral(&inv.arguments)?);
            if !inv.stream_ids.is_empty() {
                m.insert("streamIds".into(), json!(inv.stream_ids));
            }
        }
        HubMessage::StreamItem(item) => {
            headers(&mut m, &item.headers);
            m.insert("invocationId".into(), json!(item.invocation_id));
            m.insert("item".into(), raw_to_neutral(&item.item)?);
        }
        HubMessage::Completion(c) => {
            headers(&mut m, &c.headers);
            m.insert("invocationId".into(), json!(c.invocation_id));
            match &c.outcome {
                CompletionOutcome::Void => {}
                CompletionOutcome::Result(r) => {
                    m.insert("result".into(), raw_to_neutral(r)?);
                }
                CompletionOutcome::Error(e) => {
                    m.insert("error".into(), json!(e));
                }
            }
        }
        HubMessage::CancelInvocation(c) => {
            headers(&mut m, &c.headers);
            m.insert("invocationId".into(), json!(c.invocation_id));
        }
        HubMessage::Ping => {}
        HubMessage::Close(close) => {
            if let Some(e) = &close.error {
                m.insert("error".into(), json!(e));
            }
            if close.allow_reconnect {
                m.insert("allowReconnect".into(), json!(true));
            }
        }
        HubMessage::Ack { sequence_id } | HubMessage::Sequence { sequence_id } => {
            m.insert("sequenceId".into(), json!(sequence_id));
        }
    }
    Ok(Value::Object(m))
}

/// The vector's expected message without its annotation keys.
fn expected_message(v: &Value) -> Value {
    let mut m = v.clone();
    if let Some(obj) = m.as_object_mut() {
        obj.remove("$ignoredExtraProperties");
    }
    m
}

/// What a value looks like after a trip through JSON: `$bin` → base64, `$timestamp` → ISO text.
fn as_json_value(v: &Value) -> Value {
    use base64::Engine as _;
    match v {
        Value::Object(o) if o.len() == 1 && o.contains_key("$bin") => {
            json!(
                base64::engine::general_purpose::STANDARD
                    .encode(hex(o["$bin"].as_str().unwrap_or_default()))
            )
        }
        Value::Object(o) if o.len() == 1 && o.contains_key("$timestamp") => o["$timestamp"].clone(),
        Value::Object(o) => Value::Object(
            o.iter()
                .map(|(k, v)| (k.clone(), as_json_value(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(as_json_value).collect()),
        other => other.clone(),
    }
}

/// Equality with numbers compared by value (a float32 `42.0` equals a JSON `42`).
fn loose_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| loose_eq(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| loose_eq(v, w)))
        }
        _ => a == b,
    }
}

/// Decodes every frame of `bytes`; an incomplete tail is an error.
fn decode_all(p: HubProtocol, bytes: &[u8]) -> Result<Vec<Option<HubMessage>>, String> {
    let mut pos = 0;
    let mut out = Vec::new();
    while pos < bytes.len() {
        match p.decode(&bytes[pos..], MAX_SIZE) {
            Ok(Some(d)) if d.consumed > 0 => {
                out.push(d.message);
                pos += d.consumed;
            }
            Ok(Some(_)) => return Err("decoder consumed nothing".into()),
            Ok(None) => return Err(format!("incomplete at byte {pos}")),
            Err(e) => return Err(format!("decode error: {e}")),
        }
    }
    Ok(out)
}

/// The JS client's receive path: every frame complete (it does not buffer across transport
/// messages), then the JS client's message checks.
fn js_client_receive(p: HubProtocol, bytes: &[u8]) -> Result<Vec<HubMessage>, ProtocolError> {
    let mut pos = 0;
    let mut out = Vec::new();
    if bytes.is_empty() {
        return Err(ProtocolError::InvalidData("Invalid payload.".into()));
    }
    while pos < bytes.len() {
        let Some(d) = p.decode(&bytes[pos..], MAX_SIZE)? else {
            return Err(ProtocolError::InvalidData("Message is incomplete.".into()));
        };
        pos += d.consumed;
        if let Some(msg) = d.message {
            validate_for_js_client(&msg)?;
            out.push(msg);
        }
    }
    Ok(out)
}

fn check_hub_message_vector(v: &Value) -> Result<(), String> {
    let tag = v["protocol"].as_str().unwrap_or_default();
    let p = protocol_of(tag);
    let other = if p == HubProtocol::Json {
        HubProtocol::MessagePack
    } else {
        HubProtocol::Json
    };
    let bytes = input(v);
    let expected: Vec<Value> = match (&v["message"], &v["messages"]) {
        (Value::Object(_), _) => vec![expected_message(&v["message"])],
        (_, Value::Array(list)) => list.iter().map(expected_message).collect(),
        _ => return Err("no message".into()),
    };
    let decoded = decode_all(p, &bytes)?;
    if decoded.len() != expected.len() {
        return Err(format!(
            "decoded {} messages, expected {}",
            decoded.len(),
            expected.len()
        ));
    }
    let mut messages = Vec::new();
    for (got, want) in decoded.into_iter().zip(&expected) {
        let msg = got.ok_or("decoded as an unknown message type")?;
        let n = neutral(&msg)?;
        if &n != want {
            return Err(format!("decoded {n}\n   expected {want}"));
        }
        validate_for_js_client(&msg).map_err(|e| format!("JS client would reject it: {e}"))?;
        messages.push(msg);
    }
    // The zero-copy path decodes the same messages.
    let shared = Bytes::from(bytes.clone());
    let first = p
        .decode_bytes(&shared, MAX_SIZE)
        .map_err(|e| e.to_string())?
        .ok_or("decode_bytes: incomplete")?;
    if first.message.as_ref() != Some(&messages[0]) {
        return Err("decode_bytes differs from decode".into());
    }
    // The body-only parser agrees.
    if let Some(payload) = v["payload_hex"].as_str() {
        let parsed = msgpack::parse_message(&hex(payload)).map_err(|e| e.to_string())?;
        if parsed.as_ref() != Some(&messages[0]) {
            return Err("msgpack::parse_message differs from decode".into());
        }
    }
    if v["usage"] == "roundtrip" {
        let mut out = BytesMut::new();
        for msg in &messages {
            p.encode_into(msg, &mut out)
                .map_err(|e| format!("encode: {e}"))?;
        }
        if out[..] != bytes[..] {
            return Err(format!(
                "re-encoded\n   {}\n   expected\n   {}",
                String::from_utf8_lossy(&out).escape_debug(),
                String::from_utf8_lossy(&bytes).escape_debug()
            ));
        }
    }
    // Through the other protocol and back: the same message, with values as that protocol
    // represents them.
    for (msg, want) in messages.iter().zip(&expected) {
        let encoded = other
            .encode(msg)
            .map_err(|e| format!("encode as {}: {e}", other.name()))?;
        let back = decode_all(other, &encoded)?;
        let [Some(back)] = back.as_slice() else {
            return Err(format!("{} re-decode gave {back:?}", other.name()));
        };
        let n = neutral(back)?;
        let mut want = if other == HubProtocol::Json {
            as_json_value(want)
        } else {
            want.clone()
        };
        if other == HubProtocol::MessagePack && want["type"] == 7 && want["error"] == "" {
            // The .NET MessagePack writer (and ours) writes nil for an empty Close error.
            want.as_object_mut().map(|o| o.remove("error"));
        }
        if !loose_eq(&n, &want) {
            return Err(format!("via {}: {n}\n   expected {want}", other.name()));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Valid vectors
// ---------------------------------------------------------------------------------------------

#[test]
fn json_valid_vectors() {
    run_group(
        "json valid",
        &entries("vectors", &["json"]),
        76,
        check_hub_message_vector,
    );
}

#[test]
fn messagepack_valid_vectors() {
    run_group(
        "messagepack valid",
        &entries("vectors", &["messagepack"]),
        76,
        check_hub_message_vector,
    );
}

#[test]
fn handshake_valid_vectors() {
    run_group(
        "handshake valid",
        &entries("vectors", &["handshake", "handshake+messagepack"]),
        14,
        |v| {
            let bytes = input(v);
            if v["protocol"] == "handshake+messagepack" {
                // The JS client reads the response from the first frame, then hub messages after it.
                let (error, used) =
                    handshake::parse_response_in_frame(&bytes).map_err(|e| e.to_string())?;
                let list = v["messages"].as_array().ok_or("messages")?;
                if error.is_some() || list[0] != json!({ "handshakeResponse": {} }) {
                    return Err(format!("handshake response error {error:?}"));
                }
                let rest = decode_all(HubProtocol::MessagePack, &bytes[used..])?;
                let [Some(msg)] = rest.as_slice() else {
                    return Err(format!("messages after the handshake: {rest:?}"));
                };
                let n = neutral(msg)?;
                return if n == list[1] {
                    Ok(())
                } else {
                    Err(format!("decoded {n}"))
                };
            }
            let message = &v["message"];
            if let Some(req) = message.get("handshakeRequest") {
                let (parsed, used) = handshake::parse_request(&bytes)
                    .map_err(|e| e.to_string())?
                    .ok_or("incomplete")?;
                if used != bytes.len() {
                    return Err(format!("consumed {used} of {}", bytes.len()));
                }
                if json!({ "protocol": parsed.protocol, "version": parsed.version }) != *req {
                    return Err(format!("parsed {parsed:?}"));
                }
                if v["usage"] == "client-emitted"
                    && handshake::encode_request(&parsed.protocol, parsed.version)[..] != bytes[..]
                {
                    return Err("encode_request differs".into());
                }
                Ok(())
            } else if let Some(resp) = message.get("handshakeResponse") {
                let (error, used) = handshake::parse_response(&bytes)
                    .map_err(|e| e.to_string())?
                    .ok_or("incomplete")?;
                if used != bytes.len()
                    || error.as_deref() != resp.get("error").and_then(Value::as_str)
                {
                    return Err(format!("parsed error {error:?}, used {used}"));
                }
                if v["usage"] == "roundtrip" && bytes != handshake::RESPONSE_OK {
                    return Err("RESPONSE_OK differs".into());
                }
                if let Some(text) = error.as_deref().filter(|e| !e.is_empty())
                    && handshake::error_response(text)[..] != bytes[..]
                {
                    return Err("error_response differs".into());
                }
                Ok(())
            } else {
                Err("unknown handshake vector shape".into())
            }
        },
    );
}

#[test]
fn framing_valid_vectors() {
    run_group(
        "framing valid",
        &entries("vectors", &["binary-framing", "text-framing"]),
        11,
        |v| {
            let bytes = input(v);
            let message = &v["message"];
            if let Some(len) = message.get("length").and_then(Value::as_u64) {
                let len = len as usize;
                if framing::read_varint(&bytes) != Ok(Some((len, bytes.len()))) {
                    return Err(format!(
                        "read_varint gave {:?}",
                        framing::read_varint(&bytes)
                    ));
                }
                let mut out = BytesMut::new();
                framing::write_varint(len, &mut out);
                return if out[..] == bytes[..] {
                    Ok(())
                } else {
                    Err(format!("write_varint gave {}", to_hex(&out)))
                };
            }
            let binary = v["protocol"] == "binary-framing";
            let expected: Vec<Vec<u8>> = if binary {
                message["payloads_hex"]
                    .as_array()
                    .ok_or("payloads_hex")?
                    .iter()
                    .map(|p| hex(p.as_str().unwrap_or_default()))
                    .collect()
            } else {
                message["payloads"]
                    .as_array()
                    .ok_or("payloads")?
                    .iter()
                    .map(|p| p.as_str().unwrap_or_default().as_bytes().to_vec())
                    .collect()
            };
            let mut got = Vec::new();
            let mut pos = 0;
            loop {
                let next = if binary {
                    framing::next_binary_frame(&bytes[pos..]).map_err(|e| e.to_string())?
                } else {
                    framing::next_text_record(&bytes[pos..])
                };
                let Some((body, used)) = next else { break };
                got.push(body.to_vec());
                pos += used;
            }
            if got != expected {
                return Err(format!("frames {got:?}"));
            }
            let remaining = message
                .get("remaining_unparsed")
                .and_then(Value::as_str)
                .unwrap_or_default();
            if &bytes[pos..] != remaining.as_bytes() {
                return Err(format!("left {:?}", String::from_utf8_lossy(&bytes[pos..])));
            }
            if v["usage"] == "roundtrip" {
                let mut out = BytesMut::new();
                for body in &expected {
                    if binary {
                        framing::write_binary_frame(body, &mut out);
                    } else {
                        framing::write_text_record(body, &mut out);
                    }
                }
                if out[..] != bytes[..] {
                    return Err(format!("re-framed {}", to_hex(&out)));
                }
            }
            Ok(())
        },
    );
}

fn parsed_to_neutral(p: &negotiate::ParsedNegotiateResponse) -> Value {
    let mut m = Map::new();
    if p.negotiate_version != 0 {
        m.insert("negotiateVersion".into(), json!(p.negotiate_version));
    }
    for (key, value) in [
        ("connectionId", &p.connection_id),
        ("connectionToken", &p.connection_token),
        ("url", &p.url),
        ("accessToken", &p.access_token),
        ("error", &p.error),
    ] {
        if let Some(value) = value {
            m.insert(key.into(), json!(value));
        }
    }
    if p.use_stateful_reconnect {
        m.insert("useStatefulReconnect".into(), json!(true));
    }
    if let Some(list) = &p.available_transports {
        let list: Vec<Value> = list
            .iter()
            .map(|t| json!({ "transport": t.transport, "transferFormats": t.transfer_formats }))
            .collect();
        m.insert("availableTransports".into(), Value::Array(list));
    }
    Value::Object(m)
}

const NEGOTIATE_KEYS: [&str; 8] = [
    "negotiateVersion",
    "connectionId",
    "connectionToken",
    "url",
    "accessToken",
    "error",
    "useStatefulReconnect",
    "availableTransports",
];

#[test]
fn negotiate_valid_vectors() {
    run_group(
        "negotiate valid",
        &entries("vectors", &["negotiate"]),
        8,
        |v| {
            let text = v["encoded_text"].as_str().ok_or("encoded_text")?;
            let message = &v["message"];
            if v["usage"] == "roundtrip" {
                // The response object as .NET writes it; built as the client-side struct (which can
                // hold the `null` transport name of one vector) and, when it fits, as the server struct.
                let transports: Vec<negotiate::ParsedTransport> = message["availableTransports"]
                    .as_array()
                    .ok_or("availableTransports")?
                    .iter()
                    .map(|t| negotiate::ParsedTransport {
                        transport: t["transport"].as_str().map(str::to_owned),
                        transfer_formats: t["transferFormats"]
                            .as_array()
                            .map(|f| {
                                f.iter()
                                    .filter_map(Value::as_str)
                                    .map(str::to_owned)
                                    .collect()
                            })
                            .unwrap_or_default(),
                    })
                    .collect();
                let version = message["negotiateVersion"]
                    .as_i64()
                    .ok_or("negotiateVersion")?;
                let parsed = negotiate::ParsedNegotiateResponse {
                    negotiate_version: version as i32,
                    connection_id: message["connectionId"].as_str().map(str::to_owned),
                    available_transports: Some(transports.clone()),
                    ..Default::default()
                };
                if parsed.to_json() != text {
                    return Err(format!("wrote {}", parsed.to_json()));
                }
                if transports.is_empty() {
                    let server = negotiate::NegotiateResponse {
                        negotiate_version: version as u32,
                        connection_id: message["connectionId"]
                            .as_str()
                            .unwrap_or_default()
                            .to_owned(),
                        ..Default::default()
                    };
                    if server.to_json() != text {
                        return Err(format!("NegotiateResponse wrote {}", server.to_json()));
                    }
                }
                Ok(())
            } else {
                let parsed = negotiate::parse_negotiate_response(text)?;
                let mut want = message["parsed"].clone();
                if let Some(obj) = want.as_object_mut() {
                    obj.retain(|k, _| NEGOTIATE_KEYS.contains(&k.as_str()));
                }
                let got = parsed_to_neutral(&parsed);
                if got != want {
                    return Err(format!("parsed {got}\n   expected {want}"));
                }
                Ok(())
            }
        },
    );
}

// ---------------------------------------------------------------------------------------------
// Invalid vectors
// ---------------------------------------------------------------------------------------------

fn expect_error_text<E: std::fmt::Display>(
    result: Result<impl std::fmt::Debug, E>,
    v: &Value,
) -> Result<(), String> {
    let want = v["error"].as_str().ok_or("vector has no error text")?;
    match result {
        Err(e) if e.to_string() == want => Ok(()),
        Err(e) => Err(format!(
            "rejected with {:?}, .NET says {want:?}",
            e.to_string()
        )),
        Ok(got) => Err(format!("accepted: {got:?}")),
    }
}

fn check_invalid_hub_message(v: &Value) -> Result<(), String> {
    let p = protocol_of(v["protocol"].as_str().unwrap_or_default());
    let bytes = input(v);
    match v["kind"].as_str().unwrap_or_default() {
        "parse-error" => {
            expect_error_text(p.decode(&bytes, MAX_SIZE), v)?;
            if let Some(payload) = v["payload_hex"].as_str() {
                expect_error_text(msgpack::parse_message(&hex(payload)), v)?;
            }
            Ok(())
        }
        "binding-failure" => {
            let error = v["error"].as_str().unwrap_or_default();
            if error.starts_with("Reading array length for 'arguments'") {
                // Visible at envelope level (no argument array): the broker cannot forward it,
                // so it rejects it with the .NET text.
                expect_error_text(p.decode(&bytes, MAX_SIZE), v)
            } else {
                // Argument count/type mismatches depend on the hub method's signature, which the
                // broker does not know: the envelope is valid and is forwarded; the hub server's
                // SignalR runtime binds the arguments and answers with the Completion error.
                match p.decode(&bytes, MAX_SIZE) {
                    Ok(Some(Decoded {
                        message: Some(HubMessage::Invocation(_) | HubMessage::StreamInvocation(_)),
                        consumed,
                    })) if consumed == bytes.len() => Ok(()),
                    other => Err(format!("envelope should decode, got {other:?}")),
                }
            }
        }
        "js-client-rejects" => {
            // What the JS client throws if a server sent this; our client-side path (complete
            // frames + decode + validate_for_js_client) must reject it too. The texts differ
            // (ours are the .NET ones) and are not compared.
            match js_client_receive(p, &bytes) {
                Err(_) => Ok(()),
                Ok(msgs) => Err(format!("client path accepted {msgs:?}")),
            }
        }
        other => Err(format!("unexpected kind {other}")),
    }
}

#[test]
fn json_invalid_vectors() {
    run_group(
        "json invalid",
        &entries("invalid", &["json"]),
        56,
        check_invalid_hub_message,
    );
}

#[test]
fn messagepack_invalid_vectors() {
    run_group(
        "messagepack invalid",
        &entries("invalid", &["messagepack"]),
        55,
        check_invalid_hub_message,
    );
}

#[test]
fn handshake_invalid_vectors() {
    run_group(
        "handshake invalid",
        &entries("invalid", &["handshake"]),
        18,
        |v| {
            let bytes = input(v);
            match v["kind"].as_str().unwrap_or_default() {
                "request-parse-error" => expect_error_text(handshake::parse_request(&bytes), v),
                "request-incomplete" => match handshake::parse_request(&bytes) {
                    Ok(None) => Ok(()),
                    other => Err(format!("expected Ok(None), got {other:?}")),
                },
                "response-parse-error (.NET client)" => {
                    expect_error_text(handshake::parse_response(&bytes), v)
                }
                "response-parse-error (JS client)" => {
                    expect_error_text(handshake::parse_response_in_frame(&bytes), v)
                }
                other => Err(format!("unexpected kind {other}")),
            }
        },
    );
}

#[test]
fn framing_invalid_vectors() {
    run_group(
        "framing invalid",
        &entries("invalid", &["binary-framing", "text-framing"]),
        8,
        |v| {
            let bytes = input(v);
            match v["kind"].as_str().unwrap_or_default() {
                "parse-error" => {
                    expect_error_text(framing::read_varint(&bytes), v)?;
                    expect_error_text(HubProtocol::MessagePack.decode(&bytes, usize::MAX), v)
                }
                "incomplete" => match (
                    framing::next_binary_frame(&bytes),
                    HubProtocol::MessagePack.decode(&bytes, usize::MAX),
                ) {
                    (Ok(None), Ok(None)) => Ok(()),
                    other => Err(format!("expected incomplete, got {other:?}")),
                },
                other => Err(format!("unexpected kind {other}")),
            }
        },
    );
}

#[test]
fn negotiate_invalid_vectors() {
    run_group(
        "negotiate invalid",
        &entries("invalid", &["negotiate"]),
        10,
        |v| {
            let text = v["encoded_text"].as_str().ok_or("encoded_text")?;
            match v["kind"].as_str().unwrap_or_default() {
                "response-parse-error (.NET client)" | "response-parse-error (all clients)" => {
                    expect_error_text(negotiate::parse_negotiate_response(text), v)
                }
                "server-error-response" => {
                    // The server side: the request's negotiateVersion query value → error → body.
                    let request = v["request"].as_str().ok_or("request")?;
                    let query = request.split_once('?').map(|(_, q)| q).unwrap_or_default();
                    let raw = query
                        .split('&')
                        .find_map(|kv| kv.strip_prefix("negotiateVersion="));
                    let error = negotiate::negotiate_version_from_query(raw)
                        .err()
                        .ok_or("version accepted")?;
                    if Some(error.as_str()) != v["error"].as_str() {
                        return Err(format!("error text {error:?}"));
                    }
                    let body = negotiate::error_response(&error);
                    if body != text {
                        return Err(format!("body {body}"));
                    }
                    // And the client reads the error back out.
                    let parsed = negotiate::parse_negotiate_response(&body)?;
                    if parsed.error.as_deref() == Some(error.as_str()) {
                        Ok(())
                    } else {
                        Err("client parse".into())
                    }
                }
                other => Err(format!("unexpected kind {other}")),
            }
        },
    );
}

/// Every entry of the file belongs to exactly one of the groups above, with the counts of
/// `docs/protocol.md#test-vectors`.
#[test]
fn vector_file_totals() {
    let valid = file()["vectors"].as_array().expect("vectors");
    let invalid = file()["invalid"].as_array().expect("invalid");
    assert_eq!(valid.len(), 185);
    assert_eq!(invalid.len(), 147);
    let count = |list: &[Value], tags: &[&str]| {
        list.iter()
            .filter(|v| tags.contains(&v["protocol"].as_str().unwrap_or_default()))
            .count()
    };
    let valid_groups = [
        (&["json"][..], 76),
        (&["messagepack"][..], 76),
        (&["handshake", "handshake+messagepack"][..], 14),
        (&["binary-framing", "text-framing"][..], 11),
        (&["negotiate"][..], 8),
    ];
    let invalid_groups = [
        (&["json"][..], 56),
        (&["messagepack"][..], 55),
        (&["handshake"][..], 18),
        (&["binary-framing", "text-framing"][..], 8),
        (&["negotiate"][..], 10),
    ];
    for (tags, n) in valid_groups {
        assert_eq!(count(valid, tags), n, "valid {tags:?}");
    }
    for (tags, n) in invalid_groups {
        assert_eq!(count(invalid, tags), n, "invalid {tags:?}");
    }
    assert_eq!(valid_groups.iter().map(|g| g.1).sum::<usize>(), valid.len());
    assert_eq!(
        invalid_groups.iter().map(|g| g.1).sum::<usize>(),
        invalid.len()
    );
}

// ---------------------------------------------------------------------------------------------
// Decoders never panic
// ---------------------------------------------------------------------------------------------

/// Feeds `bytes` to every decoder (and re-encodes whatever decodes). Panics propagate.
fn feed_everything(bytes: &[u8]) {
    for p in [HubProtocol::Json, HubProtocol::MessagePack] {
        for max in [MAX_SIZE, 8] {
            if let Ok(Some(Decoded {
                message: Some(msg), ..
            })) = p.decode(bytes, max)
            {
                let _ = HubProtocol::Json.encode(&msg);
                let _ = HubProtocol::MessagePack.encode(&msg);
                let _ = validate_for_js_client(&msg);
            }
        }
        let _ = p.decode_bytes(&Bytes::copy_from_slice(bytes), MAX_SIZE);
    }
    let _ = json::parse_message(bytes);
    if let Ok(Some(msg)) = msgpack::parse_message(bytes) {
        let _ = HubProtocol::Json.encode(&msg);
    }
    let _ = framing::read_varint(bytes);
    let _ = framing::next_binary_frame(bytes);
    let _ = framing::next_text_record(bytes);
    let _ = handshake::parse_request(bytes);
    let _ = handshake::parse_response(bytes);
    let _ = handshake::parse_response_in_frame(bytes);
    if let Ok(text) = std::str::from_utf8(bytes) {
        let _ = negotiate::parse_negotiate_response(text);
    }
    let _ = transcode::msgpack_to_json(bytes, &mut Vec::new());
    let _ = transcode::json_to_msgpack(bytes, &mut Vec::new());
    let _ = transcode::timestamp_to_iso8601(bytes);
    for p in [HubProtocol::Json, HubProtocol::MessagePack] {
        let _ = encode_invocation_json_args(p, "t", bytes);
    }
}

/// A small deterministic PRNG (xorshift64*), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

#[test]
fn decoders_never_panic() {
    let mut inputs: Vec<(String, Vec<u8>)> = Vec::new();
    for key in ["vectors", "invalid"] {
        for v in file()[key].as_array().expect("list") {
            inputs.push((label(v), input(v)));
            if let Some(payload) = v["payload_hex"].as_str() {
                inputs.push((format!("{} (payload)", label(v)), hex(payload)));
            }
        }
    }
    let mut failures = Vec::new();
    let mut rng = Rng(0x5eed_1234_abcd_ef01);
    let interesting = [
        0x00, 0xff, 0x1e, 0x7f, 0x80, 0x90, 0x9f, 0xc0, 0xc1, 0xc4, 0xd6, 0xdb, 0xdd, 0xdf, b'"',
        b'{', b'[', b'\\',
    ];
    let mut runs = 0usize;
    for (name, bytes) in &inputs {
        let mut variants: Vec<Vec<u8>> = (0..=bytes.len()).map(|n| bytes[..n].to_vec()).collect();
        variants.extend((0..bytes.len()).map(|n| bytes[n..].to_vec()));
        // Every position of short inputs; about 48 spread positions of long ones.
        let step = (bytes.len() / 48).max(1);
        for i in (0..bytes.len()).step_by(step) {
            for &b in &interesting {
                let mut m = bytes.clone();
                m[i] = b;
                variants.push(m);
            }
            let mut flipped = bytes.clone();
            flipped[i] ^= 1 << (rng.next() % 8);
            variants.push(flipped);
        }
        for variant in variants {
            runs += 1;
            if catch_unwind(AssertUnwindSafe(|| feed_everything(&variant))).is_err() {
                failures.push(format!("{name}: input {}", to_hex(&variant)));
            }
        }
    }
    for _ in 0..20_000 {
        let len = (rng.next() % 64) as usize;
        let mut bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        // Half of them look like a MessagePack frame of a known type.
        if rng.next().is_multiple_of(2) {
            let body: Vec<u8> = [0x90 | (rng.next() % 8) as u8, (rng.next() % 10) as u8]
                .into_iter()
                .chain(bytes)
                .collect();
            bytes = [body.len() as u8].into_iter().chain(body).collect();
        }
        runs += 1;
        if catch_unwind(AssertUnwindSafe(|| feed_everything(&bytes))).is_err() {
            failures.push(format!("random input {}", to_hex(&bytes)));
        }
    }
    for f in &failures {
        eprintln!("PANICKED {f}");
    }
    assert!(
        failures.is_empty(),
        "{} of {runs} inputs panicked (listed above)",
        failures.len()
    );
}
