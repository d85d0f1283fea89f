//! Every entry of `protocol/tests/vectors/service-protocol.json` (`docs/protocol.md#test-vectors`) run through the
//! service-protocol codec (`switchboard_protocol::service`): each `framed_hex` decodes through
//! `decode` and `decode_bytes`, consuming the whole buffer, and each `encoded_hex` through
//! `decode_body`, to the vector's neutral `message`; `roundtrip` entries re-encode byte for byte.
//! Failures are collected and every failing vector name is printed before the test fails; the
//! entries are counted so that none can be skipped silently. Further tests use byte literals
//! (incomplete and oversize frames, unknown types, trailing bytes, leniency rules) and throw
//! truncations, single-byte mutations and seeded random bytes at the decoder.

use std::collections::BTreeSet;
use std::panic::{AssertUnwindSafe, catch_unwind};

use bytes::{Bytes, BytesMut};
use serde_json::{Map, Value, json};
use switchboard_protocol::service::*;

const VECTORS: &str = include_str!("vectors/service-protocol.json");

/// Large enough for every vector.
const MAX: usize = 1 << 20;

fn entries() -> Vec<Value> {
    let file: Value = serde_json::from_str(VECTORS).expect("the vector file is valid JSON");
    file.as_array().expect("a JSON array of entries").clone()
}

fn hex(text: &str) -> Vec<u8> {
    assert!(text.len().is_multiple_of(2), "odd hex length");
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex"))
        .collect()
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The element count of the MessagePack array at the start of `body`.
fn array_header(body: &[u8]) -> Option<u64> {
    match *body.first()? {
        b @ 0x90..=0x9f => Some(u64::from(b & 0x0f)),
        0xdc => Some(u64::from(u16::from_be_bytes(
            body.get(1..3)?.try_into().ok()?,
        ))),
        0xdd => Some(u64::from(u32::from_be_bytes(
            body.get(1..5)?.try_into().ok()?,
        ))),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------
// ServiceMessage → the vectors' neutral JSON
// ---------------------------------------------------------------------------------------------

fn direction(type_id: u8) -> &'static str {
    match type_id {
        3 | 5 | 6 | 34..=36 | 39 => "both",
        2 | 4 | 15 | 20 | 22 | 29 | 37 => "service->server",
        38 => "service->server (inferred)",
        _ => "server->service",
    }
}

fn ext_json(e: &Extensions) -> Value {
    let mut m = Map::new();
    if let Some(v) = e.tracing_id {
        m.insert("tracingId".into(), json!(v));
    }
    if let Some(v) = e.ttl {
        m.insert("ttl".into(), json!(v));
    }
    if let Some(v) = &e.protocol {
        m.insert("protocol".into(), json!(v));
    }
    if let Some(v) = &e.filter {
        m.insert("filter".into(), json!(v));
    }
    if let Some(v) = e.data_message_type {
        m.insert("dataMessageType".into(), json!(v));
    }
    if let Some(v) = e.is_partial {
        m.insert("isPartial".into(), json!(v));
    }
    Value::Object(m)
}

fn payloads_json(p: &Payloads) -> Value {
    Value::Object(
        p.iter()
            .map(|(k, v)| (k.clone(), json!(to_hex(v))))
            .collect(),
    )
}

fn headers_json(h: &Headers) -> Value {
    Value::Object(h.iter().map(|(k, v)| (k.clone(), json!(v))).collect())
}

fn claims_json(c: &Claims) -> Value {
    json!(c.iter().map(|(t, v)| json!([t, v])).collect::<Vec<_>>())
}

/// The named fields of `msg` in the newest writer's array order (element 1 onwards).
fn fields(msg: &ServiceMessage) -> Vec<(&'static str, Value)> {
    use ServiceMessage as M;
    let ext = |e: &Extensions| ("extensions", ext_json(e));
    match msg {
        M::HandshakeRequest {
            version,
            connection_type,
            target,
            migration_level,
            extensions,
            allow_stateful_reconnects,
        } => vec![
            ("version", json!(version)),
            ("connectionType", json!(connection_type.code())),
            ("target", json!(target)),
            ("migrationLevel", json!(migration_level)),
            ext(extensions),
            ("allowStatefulReconnects", json!(allow_stateful_reconnects)),
        ],
        M::HandshakeResponse {
            error_message,
            extensions,
            connection_id,
        } => vec![
            ("errorMessage", json!(error_message)),
            ext(extensions),
            ("connectionId", json!(connection_id)),
        ],
        M::Ping { messages } => vec![("messages", json!(messages))],
        M::OpenConnection {
            connection_id,
            claims,
            headers,
            query_string,
            extensions,
        } => vec![
            ("connectionId", json!(connection_id)),
            ("claims", claims_json(claims)),
            ("headers", headers_json(headers)),
            ("queryString", json!(query_string)),
            ext(extensions),
        ],
        M::CloseConnection {
            connection_id,
            error_message,
            headers,
            extensions,
        } => vec![
            ("connectionId", json!(connection_id)),
            ("errorMessage", json!(error_message)),
            ("headers", headers_json(headers)),
            ext(extensions),
        ],
        M::ConnectionData {
            connection_id,
            payload,
            extensions,
        } => vec![
            ("connectionId", json!(connection_id)),
            ("payload", json!(to_hex(payload))),
            ext(extensions),
        ],
        M::MultiConnectionData {
            connection_list,
            payloads,
            extensions,
        } => vec![
            ("connectionList", json!(connection_list)),
            ("payloads", payloads_json(payloads)),
            ext(extensions),
        ],
        M::UserData {
            user_id,
            payloads,
            extensions,
        } => vec![
            ("userId", json!(user_id)),
            ("payloads", payloads_json(payloads)),
            ext(extensions),
        ],
        M::MultiUserData {
            user_list,
            payloads,
            extensions,
        } => vec![
            ("userList", json!(user_list)),
            ("payloads", payloads_json(payloads)),
            ext(extensions),
        ],
        M::BroadcastData {
            excluded_list,
            payloads,
            extensions,
        } => vec![
            ("excludedList", json!(excluded_list)),
            ("payloads", payloads_json(payloads)),
            ext(extensions),
        ],
        M::JoinGroup {
            connection_id,
            group_name,
            extensions,
        } => vec![
            ("connectionId", json!(connection_id)),
            ("groupName", json!(group_name)),
            ext(extensions),
        ],
        M::LeaveGroup {
            connection_id,
            group_name,
            extensions,
        } => vec![
            ("connectionId", json!(connection_id)),
            ("groupName", json!(group_name)),
            ext(extensions),
        ],
        M::GroupBroadcastData {
            group_name,
            excluded_list,
            payloads,
            extensions,
            excluded_user_list,
            caller_user_id,
        } => vec![
            ("groupName", json!(group_name)),
            ("excludedList", json!(excluded_list)),
            ("payloads", payloads_json(payloads)),
            ext(extensions),
            ("excludedUserList", json!(excluded_user_list)),
            ("callerUserId", json!(caller_user_id)),
        ],
        M::MultiGroupBroadcastData {
            group_list,
            payloads,
            extensions,
        } => vec![
            ("groupList", json!(group_list)),
            ("payloads", payloads_json(payloads)),
            ext(extensions),
        ],
        M::ServiceError { error_message } => vec![("errorMessage", json!(error_message))],
        M::UserJoinGroup {
            user_id,
            group_name,
            extensions,
        } => vec![
            ("userId", json!(user_id)),
            ("groupName", json!(group_name)),
            ext(extensions),
        ],
        M::UserLeaveGroup {
            user_id,
            group_name,
            extensions,
        } => vec![
            ("userId", json!(user_id)),
            ("groupName", json!(group_name)),
            ext(extensions),
        ],
        M::JoinGroupWithAck {
            connection_id,
            group_name,
            ack_id,
            extensions,
        } => vec![
            ("connectionId", json!(connection_id)),
            ("groupName", json!(group_name)),
            ("ackId", json!(ack_id)),
            ext(extensions),
        ],
        M::LeaveGroupWithAck {
            connection_id,
            group_name,
            ack_id,
            extensions,
        } => vec![
            ("connectionId", json!(connection_id)),
            ("groupName", json!(group_name)),
            ("ackId", json!(ack_id)),
            ext(extensions),
        ],
        M::Ack {
            ack_id,
            status,
            message,
            extensions,
            payload,
        } => vec![
            ("ackId", json!(ack_id)),
            ("status", json!(status)),
            ("message", json!(message)),
            ext(extensions),
            ("payload", json!(payload.as_ref().map(|p| to_hex(p)))),
        ],
        M::CheckUserInGroupWithAck {
            user_id,
            group_name,
            ack_id,
            extensions,
        } => vec![
            ("userId", json!(user_id)),
            ("groupName", json!(group_name)),
            ("ackId", json!(ack_id)),
            ext(extensions),
        ],
        M::ServiceEvent {
            object_type,
            id,
            kind,
            message,
            extensions,
        } => vec![
            ("objectType", json!(object_type)),
            ("id", json!(id)),
            ("kind", json!(kind)),
            ("message", json!(message)),
            ext(extensions),
        ],
        M::CheckGroupExistenceWithAck {
            group_name,
            ack_id,
            extensions,
        } => vec![
            ("groupName", json!(group_name)),
            ("ackId", json!(ack_id)),
            ext(extensions),
        ],
        M::CheckConnectionExistenceWithAck {
            connection_id,
            ack_id,
            extensions,
        } => vec![
            ("connectionId", json!(connection_id)),
            ("ackId", json!(ack_id)),
            ext(extensions),
        ],
        M::CheckUserExistenceWithAck {
            user_id,
            ack_id,
            extensions,
        } => vec![
            ("userId", json!(user_id)),
            ("ackId", json!(ack_id)),
            ext(extensions),
        ],
        M::UserJoinGroupWithAck {
            user_id,
            group_name,
            ack_id,
            extensions,
        } => vec![
            ("userId", json!(user_id)),
            ("groupName", json!(group_name)),
            ("ackId", json!(ack_id)),
            ext(extensions),
        ],
        M::UserLeaveGroupWithAck {
            user_id,
            group_name,
            ack_id,
            extensions,
        } => vec![
            ("userId", json!(user_id)),
            ("groupName", json!(group_name)),
            ("ackId", json!(ack_id)),
            ext(extensions),
        ],
        M::AccessKeyRequest {
            token,
            kid,
            extensions,
        } => vec![
            ("token", json!(token)),
            ("kid", json!(kid)),
            ext(extensions),
        ],
        M::AccessKeyResponse {
            kid,
            access_key,
            error_type,
            error_message,
            extensions,
        } => vec![
            ("kid", json!(kid)),
            ("accessKey", json!(access_key)),
            ("errorType", json!(error_type)),
            ("errorMessage", json!(error_message)),
            ext(extensions),
        ],
        M::CloseConnectionWithAck {
            connection_id,
            reason,
            ack_id,
            extensions,
        } => vec![
            ("connectionId", json!(connection_id)),
            ("reason", json!(reason)),
            ("ackId", json!(ack_id)),
            ext(extensions),
        ],
        M::CloseConnectionsWithAck {
            reason,
            ack_id,
            excluded_list,
            extensions,
        } => vec![
            ("reason", json!(reason)),
            ("ackId", json!(ack_id)),
            ("excludedList", json!(excluded_list)),
            ext(extensions),
        ],
        M::CloseUserConnectionsWithAck {
            user_id,
            reason,
            ack_id,
            excluded_list,
            extensions,
        } => vec![
            ("userId", json!(user_id)),
            ("reason", json!(reason)),
            ("ackId", json!(ack_id)),
            ("excludedList", json!(excluded_list)),
            ext(extensions),
        ],
        M::CloseGroupConnectionsWithAck {
            group_name,
            reason,
            ack_id,
            excluded_list,
            extensions,
        } => vec![
            ("groupName", json!(group_name)),
            ("reason", json!(reason)),
            ("ackId", json!(ack_id)),
            ("excludedList", json!(excluded_list)),
            ext(extensions),
        ],
        M::ClientInvocation {
            invocation_id,
            connection_id,
            caller_server_id,
            payloads,
            extensions,
        } => vec![
            ("invocationId", json!(invocation_id)),
            ("connectionId", json!(connection_id)),
            ("callerServerId", json!(caller_server_id)),
            ("payloads", payloads_json(payloads)),
            ext(extensions),
        ],
        M::ClientCompletion {
            invocation_id,
            connection_id,
            caller_server_id,
            protocol,
            payload,
            extensions,
        } => vec![
            ("invocationId", json!(invocation_id)),
            ("connectionId", json!(connection_id)),
            ("callerServerId", json!(caller_server_id)),
            ("protocol", json!(protocol)),
            ("payload", json!(to_hex(payload))),
            ext(extensions),
        ],
        M::ErrorCompletion {
            invocation_id,
            connection_id,
            caller_server_id,
            error,
            extensions,
        } => vec![
            ("invocationId", json!(invocation_id)),
            ("connectionId", json!(connection_id)),
            ("callerServerId", json!(caller_server_id)),
            ("error", json!(error)),
            ext(extensions),
        ],
        M::ServiceMapping {
            invocation_id,
            connection_id,
            instance_id,
            extensions,
        } => vec![
            ("invocationId", json!(invocation_id)),
            ("connectionId", json!(connection_id)),
            ("instanceId", json!(instance_id)),
            ext(extensions),
        ],
        M::ConnectionReconnect {
            connection_id,
            extensions,
        } => vec![("connectionId", json!(connection_id)), ext(extensions)],
        M::ConnectionFlowControl {
            connection_id,
            connection_type,
            operation,
            extensions,
        } => vec![
            ("connectionId", json!(connection_id)),
            ("connectionType", json!(connection_type)),
            ("operation", json!(operation)),
            ext(extensions),
        ],
        M::GroupMemberQuery {
            extensions,
            group_name,
            ack_id,
            max,
            continuation_token,
        } => vec![
            ext(extensions),
            ("groupName", json!(group_name)),
            ("ackId", json!(ack_id)),
            ("max", json!(max)),
            ("continuationToken", json!(continuation_token)),
        ],
    }
}

/// The element count of the array the newest writer produces for `msg`.
fn newest_array_length(msg: &ServiceMessage) -> u64 {
    match msg {
        ServiceMessage::Ping { messages } => 1 + messages.len() as u64,
        _ => 1 + fields(msg).len() as u64,
    }
}

/// The value a member takes when a shorter legacy array ends before it.
fn is_empty_value(v: &Value) -> bool {
    match v {
        Value::Null | Value::Bool(false) => true,
        Value::Number(n) => n.as_i64() == Some(0),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => false,
    }
}

const META: [&str; 4] = ["type", "type_name", "direction", "array_length"];

/// Compares a decoded message with an entry's neutral `message`; `Err` describes the mismatches.
fn check_message(msg: &ServiceMessage, expected: &Value) -> Result<(), String> {
    let mut problems = Vec::new();
    let exp = expected.as_object().ok_or("message is not an object")?;
    if exp.get("type") != Some(&json!(msg.type_id())) {
        problems.push(format!("type {} ≠ {:?}", msg.type_id(), exp.get("type")));
    }
    if exp.get("type_name") != Some(&json!(msg.type_name())) {
        problems.push(format!(
            "type_name {} ≠ {:?}",
            msg.type_name(),
            exp.get("type_name")
        ));
    }
    if exp.get("direction") != Some(&json!(direction(msg.type_id()))) {
        problems.push(format!("direction ≠ {:?}", exp.get("direction")));
    }
    let array_length = exp
        .get("array_length")
        .and_then(Value::as_u64)
        .ok_or("no array_length")?;
    let ours = fields(msg);
    let present: BTreeSet<&str> = exp
        .keys()
        .map(String::as_str)
        .filter(|k| !META.contains(k))
        .collect();
    // The members an array of `array_length` elements holds: a prefix of the newest layout.
    let in_array: BTreeSet<&str> = match msg {
        ServiceMessage::Ping { .. } => BTreeSet::from(["messages"]),
        _ => ours
            .iter()
            .take(array_length.saturating_sub(1) as usize)
            .map(|(k, _)| *k)
            .collect(),
    };
    if present != in_array {
        problems.push(format!(
            "an array of {array_length} holds {in_array:?}, the vector names {present:?}"
        ));
    }
    for (key, value) in &ours {
        match exp.get(*key) {
            Some(want) if want != value => problems.push(format!("{key}: {value} ≠ {want}")),
            Some(_) => {}
            None if !is_empty_value(value) => problems.push(format!(
                "{key} absent from the vector but decoded as {value}"
            )),
            None => {}
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

/// Runs one entry; `Err` lists what failed.
fn check_entry(v: &Value) -> Result<(), String> {
    let kind = v["kind"].as_str().ok_or("no kind")?;
    let framed = hex(v["framed_hex"].as_str().ok_or("no framed_hex")?);
    let body = hex(v["encoded_hex"].as_str().ok_or("no encoded_hex")?);
    let expected = &v["message"];
    let mut problems = Vec::new();

    // The vector itself: framed = VarInt(len(body)) + body; the array header = array_length.
    let mut prefix = BytesMut::new();
    switchboard_protocol::framing::write_varint(body.len(), &mut prefix);
    if framed[..] != [&prefix[..], &body[..]].concat()[..] {
        problems.push("framed_hex is not the framed encoded_hex".to_owned());
    }
    let array_length = expected["array_length"].as_u64();
    if array_header(&body) != array_length {
        problems.push(format!(
            "array header {:?} ≠ array_length {array_length:?}",
            array_header(&body)
        ));
    }

    let decoded = match decode(&framed, MAX) {
        Ok(Some((Some(msg), n))) if n == framed.len() => Some(msg),
        other => {
            problems.push(format!("decode: {other:?}"));
            None
        }
    };
    let shared = Bytes::from(framed.clone());
    match decode_bytes(&shared, MAX) {
        Ok(Some((Some(msg), n))) if n == framed.len() && Some(&msg) == decoded.as_ref() => {}
        other => problems.push(format!("decode_bytes: {other:?}")),
    }
    match decode_body(&body) {
        Ok(Some(msg)) if Some(&msg) == decoded.as_ref() => {}
        other => problems.push(format!("decode_body: {other:?}")),
    }

    if let Some(msg) = &decoded {
        if let Err(e) = check_message(msg, expected) {
            problems.push(e);
        }
        let encoded = encode(msg);
        let newest = Some(newest_array_length(msg)) == array_length;
        match kind {
            "roundtrip" if newest => {
                if encoded[..] != framed[..] {
                    problems.push(format!(
                        "encode: {} ≠ {}",
                        to_hex(&encoded),
                        to_hex(&framed)
                    ));
                }
            }
            // An older layout can only be read: re-encoding must give the newest layout with the
            // same content. (No `roundtrip` entry of the current file has an older layout: the
            // 5-item Ack and the 6-item HandshakeRequest are `parse_only`, the 2024 round-trip
            // vectors of those types having been replaced by the 37152ed9 ones; this arm keeps a
            // future file with such an entry meaningful instead of unsatisfiable.)
            "roundtrip" | "parse_only" => {
                match decode(&encoded, MAX) {
                    Ok(Some((Some(again), n)))
                        if n == encoded.len() && again == as_written(msg) => {}
                    other => problems.push(format!("re-encoded {}: {other:?}", to_hex(&encoded))),
                }
                let re_len = decode_body_len(&encoded);
                if re_len != Some(newest_array_length(msg)) {
                    problems.push(format!("re-encoded array length {re_len:?}"));
                }
            }
            other => problems.push(format!("unknown kind {other}")),
        }
    }

    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n    "))
    }
}

/// `msg` as the writer puts it on the wire: like the SDK, it writes a HandshakeRequest's target
/// as `""` for a Default connection and never as nil (a 2-item legacy request has no target).
fn as_written(msg: &ServiceMessage) -> ServiceMessage {
    let mut msg = msg.clone();
    if let ServiceMessage::HandshakeRequest {
        connection_type,
        target,
        ..
    } = &mut msg
        && (*connection_type == ConnectionType::Default || target.is_none())
    {
        *target = Some(String::new());
    }
    msg
}

/// The array length of a framed encoding.
fn decode_body_len(framed: &[u8]) -> Option<u64> {
    let (_, prefix) = switchboard_protocol::framing::read_varint(framed).ok()??;
    array_header(framed.get(prefix..)?)
}

#[test]
fn every_vector() {
    let entries = entries();
    let mut failures = Vec::new();
    let (mut roundtrip, mut parse_only) = (0, 0);
    let mut type_ids = BTreeSet::new();
    for v in &entries {
        let name = v["name"].as_str().unwrap_or("<unnamed>");
        match v["kind"].as_str() {
            Some("roundtrip") => roundtrip += 1,
            Some("parse_only") => parse_only += 1,
            _ => {}
        }
        if let Some(t) = v["message"]["type"].as_u64() {
            type_ids.insert(t);
        }
        if let Err(e) = check_entry(v) {
            failures.push(format!("{name}:\n    {e}"));
        }
    }
    for f in &failures {
        eprintln!("FAILED {f}");
    }
    assert!(
        failures.is_empty(),
        "{} of {} vectors failed",
        failures.len(),
        entries.len()
    );
    assert_eq!(entries.len(), 125, "vector count");
    assert_eq!((roundtrip, parse_only), (79, 46), "roundtrip / parse_only");
    assert_eq!(type_ids, (1..=40).collect(), "every type id 1–40");
}

/// All vectors back to back in one buffer, read the way a connection reads its byte stream.
#[test]
fn vectors_as_one_stream() {
    let entries = entries();
    let mut stream = Vec::new();
    for v in &entries {
        stream.extend(hex(v["framed_hex"].as_str().unwrap()));
    }
    let stream = Bytes::from(stream);
    let mut offset = 0;
    let mut count = 0;
    while offset < stream.len() {
        let rest = stream.slice(offset..);
        let (msg, n) = decode_bytes(&rest, MAX).unwrap().unwrap();
        assert!(msg.is_some());
        offset += n;
        count += 1;
    }
    assert_eq!(count, entries.len());
    // Cut anywhere: a prefix of a frame is "incomplete", never an error.
    let first = hex(entries[0]["framed_hex"].as_str().unwrap());
    for cut in 0..first.len() {
        assert_eq!(decode(&first[..cut], MAX), Ok(None));
    }
}

#[test]
fn payloads_are_zero_copy_slices() {
    // ConnectionData conn5, payload 01..07.
    let buf = Bytes::from(hex("129406a5636f6e6e35c4070102030405060780"));
    let Ok(Some((Some(ServiceMessage::ConnectionData { payload, .. }), 19))) =
        decode_bytes(&buf, MAX)
    else {
        panic!("not decoded")
    };
    assert_eq!(payload.as_ptr(), buf[11..].as_ptr());
    // MultiConnectionData: both payload map entries.
    let buf = Bytes::from(hex(
        "34940792a5636f6e6e36a5636f6e6e3782a46a736f6ec40702030405060701ab6d6573736167657061636bc4070304050607010280",
    ));
    let Ok(Some((Some(ServiceMessage::MultiConnectionData { payloads, .. }), _))) =
        decode_bytes(&buf, MAX)
    else {
        panic!("not decoded")
    };
    let range = buf.as_ptr_range();
    for (_, p) in &payloads {
        assert!(range.contains(&p.as_ptr()));
    }
    assert_eq!(
        payload_for(&payloads, "MESSAGEPACK").map(|p| to_hex(p)),
        Some("03040506070102".to_owned())
    );
}

// ---------------------------------------------------------------------------------------------
// Byte literals
// ---------------------------------------------------------------------------------------------

#[test]
fn incomplete_prefix() {
    assert_eq!(decode(&[], MAX), Ok(None));
    assert_eq!(decode(&[0x80], MAX), Ok(None));
    assert_eq!(decode(&[0xff, 0xff, 0xff, 0xff], usize::MAX), Ok(None));
    assert_eq!(decode_bytes(&Bytes::from_static(&[0x81]), MAX), Ok(None));
}

#[test]
fn incomplete_body() {
    assert_eq!(decode(&[0x02], MAX), Ok(None));
    assert_eq!(decode(&[0x02, 0x91], MAX), Ok(None));
    assert_eq!(decode(&[0x80, 0x01, 0x91, 0x03], MAX), Ok(None));
    assert_eq!(
        decode(&[0x02, 0x91, 0x03], MAX),
        Ok(Some((Some(ServiceMessage::Ping { messages: vec![] }), 3)))
    );
}

#[test]
fn frame_too_large() {
    let too_large = Err(ServiceProtocolError::FrameTooLarge { max: 2 });
    assert_eq!(decode(&[0x03, 0x92, 0x03], 2), too_large);
    // From the prefix alone, before any of the body has arrived.
    assert_eq!(decode(&[0x03], 2), too_large);
    assert_eq!(
        decode(&[0x80, 0x80, 0x01], 1 << 13),
        Err(ServiceProtocolError::FrameTooLarge { max: 1 << 13 })
    );
    assert_eq!(decode(&[0x02], 2), Ok(None));
    // A prefix over 2 GiB is malformed whatever the limit.
    assert!(matches!(
        decode(&[0xff, 0xff, 0xff, 0xff, 0x08], usize::MAX),
        Err(ServiceProtocolError::InvalidData(_))
    ));
    assert_eq!(
        ServiceProtocolError::FrameTooLarge { max: 2 }.to_string(),
        "The maximum message size of 2B was exceeded."
    );
}

#[test]
fn unknown_types_are_skipped() {
    // Type 41 (RefreshAuth, layout unknown), 255, a negative id and a uint64 id.
    for body in [
        &[0x94, 0x29, 0xa1, b'x', 0x80, 0xc0][..],
        &[0x91, 0xcc, 0xff],
        &[0x92, 0xff, 0xc0],
        &[0x91, 0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
        &[0x92, 0x00, 0x01],
    ] {
        let mut framed = vec![body.len() as u8];
        framed.extend_from_slice(body);
        let n = framed.len();
        framed.extend_from_slice(&[0x02, 0x91, 0x03]);
        assert_eq!(decode(&framed, MAX), Ok(Some((None, n))), "{body:02x?}");
        assert_eq!(decode_body(body), Ok(None));
        // The stream goes on with the next frame.
        assert!(matches!(
            decode(&framed[n..], MAX),
            Ok(Some((Some(ServiceMessage::Ping { .. }), 3)))
        ));
    }
    // Not an array, or a type id that is not an integer: malformed, not unknown.
    assert!(decode_body(&[0x03]).is_err());
    assert!(decode_body(&[0x91, 0xa1, b'3']).is_err());
    assert!(decode_body(&[0x90]).is_err());
    assert!(decode_body(&[]).is_err());
    assert!(decode(&[0x00], MAX).is_err());
}

#[test]
fn trailing_bytes_and_items_are_ignored() {
    // A Ping frame with 3 bytes after the array.
    let framed = [0x05, 0x91, 0x03, 0xa2, b'e', b'x'];
    assert_eq!(
        decode(&framed, MAX),
        Ok(Some((Some(ServiceMessage::Ping { messages: vec![] }), 6)))
    );
    // A JoinGroup with two items more than it defines (array of 6).
    let body = [
        0x96, 0x0b, 0xa1, b'c', 0xa1, b'g', 0x81, 0x01, 0x05, 0xc3, 0x92, 0x01, 0x02,
    ];
    assert_eq!(
        decode_body(&body),
        Ok(Some(ServiceMessage::JoinGroup {
            connection_id: "c".into(),
            group_name: "g".into(),
            extensions: Extensions {
                tracing_id: Some(5),
                ..Extensions::default()
            },
        }))
    );
    // The array announces more items than the frame holds: the reader stops at what it needs.
    assert!(matches!(
        decode_body(&[0x9f, 0x0b, 0xa1, b'c', 0xa1, b'g', 0x80]),
        Ok(Some(ServiceMessage::JoinGroup { .. }))
    ));
}

#[test]
fn legacy_arrays_below_the_minimum_are_rejected() {
    // JoinGroup needs 3 elements; HandshakeRequest 2; GroupMemberQuery 6.
    assert!(decode_body(&[0x92, 0x0b, 0xa1, b'c']).is_err());
    assert!(decode_body(&[0x91, 0x01]).is_err());
    assert!(decode_body(&[0x95, 0x28, 0x80, 0xa1, b'g', 0x01, 0x0a]).is_err());
    // A 3-item HandshakeRequest reads only the version (as the SDK: connectionType and target
    // come together from 4 items on).
    assert_eq!(
        decode_body(&[0x93, 0x01, 0x01, 0x02]),
        Ok(Some(ServiceMessage::HandshakeRequest {
            version: 1,
            connection_type: ConnectionType::Default,
            target: None,
            migration_level: 0,
            extensions: Extensions::default(),
            allow_stateful_reconnects: false,
        }))
    );
}

#[test]
fn extension_map() {
    // ConnectionData with ext {9: [1, {"a": 2}], 1: uint64 max, 7: "x", 6: false, 5: 4, 3: nil}.
    let mut body = vec![0x94, 0x06, 0xa1, b'c', 0xc4, 0x00, 0x86];
    body.extend([0x09, 0x92, 0x01, 0x81, 0xa1, b'a', 0x02]);
    body.extend([0x01, 0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
    body.extend([0x07, 0xa1, b'x', 0x06, 0xc2, 0x05, 0x04, 0x03, 0xc0]);
    let msg = decode_body(&body).unwrap().unwrap();
    let want = Extensions {
        tracing_id: Some(u64::MAX),
        is_partial: Some(false),
        data_message_type: Some(4),
        ..Extensions::default()
    };
    assert_eq!(msg.extensions(), Some(&want));
    // Written back with only the known present members, in key order.
    let encoded = encode(&msg);
    assert_eq!(
        to_hex(&encoded[encoded.len() - 15..]),
        "8301cfffffffffffffffff050406c2"
    );
    // A negative tracing id, a non-integer key and a truncated unknown value are errors.
    assert!(decode_body(&[0x93, 0x26, 0xa1, b'c', 0x81, 0x01, 0xff]).is_err());
    assert!(decode_body(&[0x93, 0x26, 0xa1, b'c', 0x81, 0xa1, b'k', 0x01]).is_err());
    assert!(decode_body(&[0x93, 0x26, 0xa1, b'c', 0x81, 0x09, 0x92, 0x01]).is_err());
    // ttl beyond Int32.
    assert!(decode_body(&[0x93, 0x26, 0xa1, b'c', 0x81, 0x02, 0xce, 0x80, 0, 0, 0]).is_err());
}

#[test]
fn nil_and_alternative_forms() {
    // A nil connection id is an error (ReadStringNotNull); a nil group on LeaveGroup is "all".
    assert!(decode_body(&[0x93, 0x0b, 0xc0, 0xa1, b'g']).is_err());
    assert_eq!(
        decode_body(&[0x93, 0x0c, 0xa1, b'c', 0xc0]),
        Ok(Some(ServiceMessage::LeaveGroup {
            connection_id: "c".into(),
            group_name: None,
            extensions: Extensions::default(),
        }))
    );
    // Nil payload → empty; payload as old-spec str; ints in wide forms.
    assert_eq!(
        decode_body(&[0x93, 0x06, 0xa1, b'c', 0xc0]),
        Ok(Some(ServiceMessage::ConnectionData {
            connection_id: "c".into(),
            payload: Bytes::new(),
            extensions: Extensions::default(),
        }))
    );
    assert!(matches!(
        decode_body(&[0x93, 0x06, 0xa1, b'c', 0xa2, 0x01, 0x02]),
        Ok(Some(ServiceMessage::ConnectionData { payload, .. })) if payload[..] == [1, 2]
    ));
    assert!(matches!(
        decode_body(&[0x94, 0x17, 0xa1, b'g', 0xd3, 0, 0, 0, 0, 0, 0, 0, 9, 0x80]),
        Ok(Some(ServiceMessage::CheckGroupExistenceWithAck {
            ack_id: 9,
            ..
        }))
    ));
    // Nil maps and lists read as empty; nil header values as "".
    assert_eq!(
        decode_body(&[
            0x95, 0x04, 0xa1, b'c', 0xc0, 0x81, 0xa1, b'h', 0x91, 0xc0, 0xc0
        ]),
        Ok(Some(ServiceMessage::OpenConnection {
            connection_id: "c".into(),
            claims: vec![],
            headers: vec![("h".into(), vec![String::new()])],
            query_string: None,
            extensions: Extensions::default(),
        }))
    );
    // Nil claim values are rejected (.NET's Claim does not take null).
    assert!(decode_body(&[0x93, 0x04, 0xa1, b'c', 0x81, 0xa1, b't', 0xc0]).is_err());
    // Duplicate claims and payload keys are kept in order.
    let Ok(Some(ServiceMessage::OpenConnection { claims, .. })) = decode_body(&[
        0x93, 0x04, 0xa1, b'c', 0x82, 0xa1, b'r', 0xa1, b'a', 0xa1, b'r', 0xa1, b'b',
    ]) else {
        panic!("not decoded")
    };
    assert_eq!(
        claims,
        [
            ("r".to_owned(), "a".to_owned()),
            ("r".to_owned(), "b".to_owned())
        ]
    );
    // Wrong types: a string ack id, an int connection id, invalid UTF-8.
    assert!(decode_body(&[0x94, 0x17, 0xa1, b'g', 0xa1, b'1', 0x80]).is_err());
    assert!(decode_body(&[0x93, 0x0b, 0x01, 0xa1, b'g']).is_err());
    assert!(decode_body(&[0x93, 0x0b, 0xa1, 0xff, 0xa1, b'g']).is_err());
}

#[test]
fn writer_forms() {
    // ConnectionFlowControl keeps its fixed int32 fields even for small values.
    let msg = ServiceMessage::ConnectionFlowControl {
        connection_id: "c".into(),
        connection_type: 1,
        operation: 3,
        extensions: Extensions::default(),
    };
    assert_eq!(to_hex(&encode(&msg)), "0f9527a163d200000001d20000000380");
    // Ack without payload: nil in the 6th slot; negative and large ints in shortest forms.
    let msg = ServiceMessage::Ack {
        ack_id: -1,
        status: 70_000,
        message: None,
        extensions: Extensions::default(),
        payload: None,
    };
    assert_eq!(to_hex(&encode(&msg)), "0b9614ffce00011170c080c0");
    // encode_into appends.
    let mut out = BytesMut::from(&b"xy"[..]);
    encode_into(&ping(&[("echo", "1")]), &mut out);
    assert_eq!(to_hex(&out), "7879099303a46563686fa131");
}

// ---------------------------------------------------------------------------------------------
// Robustness
// ---------------------------------------------------------------------------------------------

/// Decodes `input` every way; panics are caught and reported with the input.
fn must_not_panic(input: &[u8], failures: &mut Vec<String>) {
    let result = catch_unwind(AssertUnwindSafe(|| {
        for max in [MAX, 8] {
            if let Ok(Some((Some(msg), n))) = decode(input, max) {
                assert!(n <= input.len());
                // Whatever decodes re-encodes to something that decodes.
                let again = encode(&msg);
                assert!(matches!(decode(&again, MAX), Ok(Some((Some(_), _)))));
            }
        }
        let _ = decode_bytes(&Bytes::copy_from_slice(input), MAX);
        let _ = decode_body(input);
    }));
    if result.is_err() {
        failures.push(to_hex(input));
    }
}

#[test]
fn truncations_mutations_and_random_input_never_panic() {
    let mut failures = Vec::new();
    let mut inputs = 0usize;
    for v in entries() {
        let framed = hex(v["framed_hex"].as_str().unwrap());
        for cut in 0..=framed.len() {
            must_not_panic(&framed[..cut], &mut failures);
            inputs += 1;
        }
        let mut mutated = framed.clone();
        for i in 0..framed.len() {
            for b in 0..=255u8 {
                mutated[i] = b;
                must_not_panic(&mutated, &mut failures);
                inputs += 1;
            }
            mutated[i] = framed[i];
        }
    }
    // Seeded random bodies: valid prefix, an array header, a known type id, random bytes.
    let mut state: u64 = 0x5eed_1234_abcd_ef01;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for i in 0..5000 {
        let len = (next() % 48) as usize;
        let mut body: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        if i % 2 == 0 && body.len() >= 2 {
            body[0] = 0x90 | (next() % 16) as u8;
            body[1] = (next() % 42) as u8;
        }
        let mut framed = BytesMut::new();
        switchboard_protocol::framing::write_binary_frame(&body, &mut framed);
        must_not_panic(&framed, &mut failures);
        must_not_panic(&body, &mut failures);
        inputs += 2;
    }
    for f in failures.iter().take(20) {
        eprintln!("PANIC on {f}");
    }
    assert!(failures.is_empty(), "{} inputs panicked", failures.len());
    assert!(inputs > 900_000, "{inputs} inputs");
}

/// Hostile counts cannot make the reader allocate or loop beyond the input.
#[test]
fn huge_announced_counts_fail_fast() {
    let bodies: [&[u8]; 5] = [
        // Ping announcing 2^32 − 1 elements.
        &[0xdd, 0xff, 0xff, 0xff, 0xff, 0x03, 0xa1, b'a'],
        // OpenConnection claims map of 2^32 − 1 entries.
        &[0x93, 0x04, 0xa1, b'c', 0xdf, 0xff, 0xff, 0xff, 0xff],
        // BroadcastData excluded list of 2^32 − 1 items.
        &[0x93, 0x0a, 0xdd, 0xff, 0xff, 0xff, 0xff],
        // An extension map of 2^32 − 1 entries.
        &[0x93, 0x26, 0xa1, b'c', 0xdf, 0xff, 0xff, 0xff, 0xff],
        // A bin32 payload longer than the input.
        &[0x93, 0x06, 0xa1, b'c', 0xc6, 0xff, 0xff, 0xff, 0xff, 0x00],
    ];
    for body in bodies {
        assert!(decode_body(body).is_err(), "{body:02x?}");
    }
}
