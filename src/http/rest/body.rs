//! Send bodies of the REST API: the content type (JSON or a MessagePack payload map), reading
//! the body within `limits.max_rest_body_size` (draining what is refused) and decoding it into a
//! [`SerializedMessage`].
//!
//! This module owns the 415/413/400 answers about bodies (and uses the edge's 408 for a body
//! that does not arrive within `limits.body_timeout_secs`). It must not resolve routes, authorize,
//! touch hubs, or re-serialise argument values (the JSON argument text and the framed payloads
//! are kept as sent).

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, web};
use bytes::Bytes;
use futures_util::StreamExt as _;
use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

use crate::http::ApiError;
use crate::http::edge::{self, BodyError};
use crate::http::state::Broker;
use crate::hub::SerializedMessage;
use crate::protocol::{self, HubProtocol};

/// Bytes of an oversized body read and discarded before answering 413, so that the client is
/// still reading when the answer comes (beyond this the connection is simply closed).
const MAX_DRAIN_BYTES: usize = 8 * 1024 * 1024;
/// How long draining an oversized or refused body may take.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// What a send body is encoded as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum BodyKind {
    Json,
    MessagePack,
}

pub(super) fn body_kind(req: &HttpRequest) -> Result<BodyKind, ApiError> {
    let Some(value) = req.headers().get(header::CONTENT_TYPE) else {
        return Ok(BodyKind::Json);
    };
    let text = value.to_str().unwrap_or("");
    let mime = text
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match mime.as_str() {
        "application/json" | "text/json" => Ok(BodyKind::Json),
        m if m.ends_with("+json") => Ok(BodyKind::Json),
        "application/octet-stream"
        | "application/x-msgpack"
        | "application/msgpack"
        | "application/vnd.msgpack" => Ok(BodyKind::MessagePack),
        _ => Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Error.UnsupportedMediaType",
            format!(
                "Unsupported content type '{text}': send 'application/json' or 'application/octet-stream' (a MessagePack payload map)."
            ),
        )),
    }
}

/// Read and decode a send body into a message.
pub(super) async fn read_message(
    req: &HttpRequest,
    payload: web::Payload,
    shared: &Broker,
) -> Result<Arc<SerializedMessage>, ApiError> {
    let kind = match body_kind(req) {
        Ok(kind) => kind,
        Err(e) => {
            drain(payload).await;
            return Err(e);
        }
    };
    let limit = shared.config.limits.max_rest_body_size;
    let body = read_body(req, payload, limit, shared.config.limits.body_timeout()).await?;
    let msg = match kind {
        BodyKind::Json => parse_json_message(&body)?,
        BodyKind::MessagePack => parse_payload_map(&body, limit)?,
    };
    Ok(Arc::new(msg))
}

fn too_large(limit: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "Error.PayloadTooLarge",
        format!("The request body is larger than the limit of {limit} bytes."),
    )
}

async fn read_body(
    req: &HttpRequest,
    mut payload: web::Payload,
    limit: usize,
    timeout: Duration,
) -> Result<Bytes, ApiError> {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<usize>().ok());
    if declared.is_some_and(|len| len > limit) {
        drain(payload).await;
        return Err(too_large(limit));
    }
    match edge::read_body(&mut payload, limit, declared.unwrap_or(0), timeout).await {
        Ok(buf) => Ok(buf.freeze()),
        Err(BodyError::TooLarge(_)) => {
            drain(payload).await;
            Err(too_large(limit))
        }
        Err(BodyError::Read(e)) => Err(ApiError::bad_request(format!(
            "Could not read the request body: {e}"
        ))),
        Err(BodyError::TimedOut(t)) => Err(ApiError::request_timeout(t)),
    }
}

/// Read and discard (a bounded amount of) the rest of a refused body, so that the client,
/// which may still be sending, reads the error answer instead of a reset connection.
async fn drain(mut payload: web::Payload) {
    let discard = async {
        let mut seen = 0usize;
        while let Some(Ok(chunk)) = payload.next().await {
            seen += chunk.len();
            if seen > MAX_DRAIN_BYTES {
                break;
            }
        }
    };
    // Timing out only means the connection is closed after the answer.
    let _ = tokio::time::timeout(DRAIN_TIMEOUT, discard).await;
}

/// The fields of a JSON object in document order, values kept as raw JSON text.
struct Fields<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'de> Deserialize<'de> for Fields<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct FieldsVisitor;
        impl<'de> Visitor<'de> for FieldsVisitor {
            type Value = Fields<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object {\"target\": ..., \"arguments\": [...]}")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut fields = Vec::new();
                while let Some(key) = map.next_key::<Cow<'de, str>>()? {
                    fields.push((key, map.next_value::<&'de RawValue>()?));
                }
                Ok(Fields(fields))
            }
        }
        d.deserialize_map(FieldsVisitor)
    }
}

impl<'a> Fields<'a> {
    /// The last field called `name`, compared case-insensitively.
    fn get(&self, name: &str) -> Option<&'a RawValue> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
    }
}

/// `{"target": "...", "arguments": [...]}` → an Invocation with the argument text as sent.
pub(super) fn parse_json_message(body: &[u8]) -> Result<SerializedMessage, ApiError> {
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request(
            "The request body is empty: send {\"target\": \"<method>\", \"arguments\": [...]}.",
        ));
    }
    let fields: Fields<'_> = serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request(format!(
            "The request body is not a valid payload message: {e}"
        ))
    })?;
    let target = match fields.get("target") {
        None => None,
        Some(raw) => serde_json::from_str::<Option<String>>(raw.get())
            .map_err(|_| ApiError::bad_request("The 'target' property must be a string."))?,
    };
    let target = match target {
        None => return Err(ApiError::bad_request("The 'target' property is required.")),
        Some(t) if t.is_empty() => {
            return Err(ApiError::bad_request(
                "The 'target' property must not be empty.",
            ));
        }
        Some(t) => t,
    };
    let arguments = match fields.get("arguments") {
        None => Bytes::from_static(b"[]"),
        Some(raw) if raw.get() == "null" => Bytes::from_static(b"[]"),
        Some(raw) if raw.get().starts_with('[') => Bytes::copy_from_slice(raw.get().as_bytes()),
        Some(_) => {
            return Err(ApiError::bad_request(
                "The 'arguments' property must be a JSON array.",
            ));
        }
    };
    Ok(SerializedMessage::invocation(target, arguments))
}

/// A MessagePack map protocol name → bin of complete framed hub messages.
pub(super) fn parse_payload_map(
    body: &[u8],
    max_message_size: usize,
) -> Result<SerializedMessage, ApiError> {
    let bad =
        |what: String| ApiError::bad_request(format!("Invalid MessagePack payload map: {what}"));
    let mut rd = body;
    let entries =
        rmp::decode::read_map_len(&mut rd).map_err(|e| bad(format!("expected a map ({e})")))?;
    let mut json = None;
    let mut messagepack = None;
    for _ in 0..entries {
        let key_len = rmp::decode::read_str_len(&mut rd)
            .map_err(|e| bad(format!("keys must be strings ({e})")))?
            as usize;
        let key = take(&mut rd, key_len).ok_or_else(|| bad("truncated key".into()))?;
        let key = std::str::from_utf8(key).map_err(|_| bad("a key is not UTF-8".into()))?;
        let value_len = rmp::decode::read_bin_len(&mut rd)
            .map_err(|e| bad(format!("the value of '{key}' must be a bin ({e})")))?
            as usize;
        let value =
            take(&mut rd, value_len).ok_or_else(|| bad(format!("truncated value of '{key}'")))?;
        if let Some(p) = HubProtocol::from_name(key) {
            check_framed_messages(p, value, max_message_size)
                .map_err(|e| bad(format!("the '{key}' payload: {e}")))?;
            let slot = match p {
                HubProtocol::Json => &mut json,
                HubProtocol::MessagePack => &mut messagepack,
            };
            *slot = Some(Bytes::copy_from_slice(value));
        }
    }
    if !rd.is_empty() {
        return Err(bad(format!("{} bytes after the map", rd.len())));
    }
    if json.is_none() && messagepack.is_none() {
        return Err(bad(
            "it has neither a 'json' nor a 'messagepack' payload".into()
        ));
    }
    Ok(SerializedMessage::from_payloads(json, messagepack))
}

fn take<'a>(rd: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    if rd.len() < n {
        return None;
    }
    let (head, tail) = rd.split_at(n);
    *rd = tail;
    Some(head)
}

/// `bytes` must be one or more complete framed messages of `p` that the JS client accepts.
fn check_framed_messages(
    p: HubProtocol,
    bytes: &[u8],
    max_message_size: usize,
) -> Result<(), String> {
    if bytes.is_empty() {
        return Err("it is empty".into());
    }
    let mut rest = bytes;
    while !rest.is_empty() {
        match p.decode(rest, max_message_size) {
            Ok(Some(decoded)) if decoded.consumed > 0 => {
                if let Some(msg) = &decoded.message {
                    protocol::validate_for_js_client(msg).map_err(|e| e.to_string())?;
                }
                rest = &rest[decoded.consumed.min(rest.len())..];
            }
            Ok(_) => return Err("it ends with an incomplete message".into()),
            Err(e) => return Err(e.to_string()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_bodies() {
        assert!(parse_json_message(br#"{"target":"m","arguments":[1,"a",{"b":null}]}"#).is_ok());
        assert!(parse_json_message(br#"{"Target":"m","Arguments":[]}"#).is_ok());
        assert!(parse_json_message(br#"{"target":"m"}"#).is_ok());
        assert!(parse_json_message(br#"{"target":"m","arguments":null}"#).is_ok());
        for bad in [
            &b""[..],
            b"  ",
            b"[]",
            b"{",
            br#"{"arguments":[]}"#,
            br#"{"target":null}"#,
            br#"{"target":""}"#,
            br#"{"target":5}"#,
            br#"{"target":"m","arguments":{}}"#,
            br#"{"target":"m","arguments":"x"}"#,
        ] {
            let e = parse_json_message(bad)
                .err()
                .unwrap_or_else(|| panic!("{:?}", String::from_utf8_lossy(bad)));
            assert_eq!(e.status, StatusCode::BAD_REQUEST);
        }
    }

    #[test]
    fn payload_map_shape_errors() {
        // Not a map; a non-bin value; trailing bytes; no known protocol.
        for bad in [
            &[0x90u8][..],
            &[0x81, 0xa4, b'j', b's', b'o', b'n', 0x01],
            &[0x80, 0x00],
            &[0x80],
        ] {
            let e = parse_payload_map(bad, 1 << 20)
                .err()
                .unwrap_or_else(|| panic!("{bad:?}"));
            assert_eq!(e.status, StatusCode::BAD_REQUEST);
        }
    }
}
