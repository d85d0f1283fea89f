//! The JSON hub protocol codec (`JsonHubProtocol.cs`): record-separated JSON objects ⇄
//! [`HubMessage`]. This module owns the envelope (property names, order, required fields and the
//! exact .NET error texts) and the JSON string escaping shared by the handshake and negotiate
//! writers.
//!
//! Payload values (`arguments`, `item`, `result`) are never decoded: the reader borrows each as a
//! `serde_json` `&RawValue` and keeps its exact text, the writer copies raw JSON text through and
//! transcodes MessagePack values. Readers accept any property order (the JS client writes `type`
//! last), skip unknown properties and ignore anything after the first JSON value of a record, as
//! .NET does. Writers use the .NET property order (`docs/protocol.md#encodings`).

use std::borrow::Cow;
use std::fmt;

use bytes::BytesMut;
use serde::de::{self, DeserializeSeed, Deserializer as _, MapAccess, Visitor};
use serde_json::value::RawValue as JsonRaw;

use super::framing::{RECORD_SEPARATOR, RecordScan};
use super::{
    ByteSink, CancelInvocation, Close, Completion, CompletionOutcome, Decoded, Headers, HubMessage,
    Invocation, ProtocolError, RawValue, Source, StreamItem, transcode,
};

/// Splits the next record off `src` and parses it (see [`HubProtocol::decode`](super::HubProtocol::decode)).
pub(crate) fn decode_from(
    src: Source<'_>,
    max_message_size: usize,
    scan: &mut RecordScan,
) -> Result<Option<Decoded>, ProtocolError> {
    let buf = src.bytes();
    match scan.next_record(buf) {
        None if buf.len() > max_message_size => Err(ProtocolError::MessageTooLarge {
            max: max_message_size,
        }),
        None => Ok(None),
        Some((body, _)) if body.len() > max_message_size => Err(ProtocolError::MessageTooLarge {
            max: max_message_size,
        }),
        Some((body, consumed)) => Ok(Some(Decoded {
            message: parse_body(src, body)?,
            consumed,
        })),
    }
}

/// Parses one JSON hub message (the record without its 0x1E). `Ok(None)` for an unknown message
/// type. Raw values are copied out of `body`.
pub fn parse_message(body: &[u8]) -> Result<Option<HubMessage>, ProtocolError> {
    parse_body(Source::Slice(body), body)
}

/// Appends `msg` as JSON followed by 0x1E. On error nothing is appended.
pub fn encode_into(msg: &HubMessage, out: &mut BytesMut) -> Result<(), ProtocolError> {
    let start = out.len();
    out.reserve(estimate_len(msg));
    match write_message(msg, out) {
        Ok(()) => {
            out.put_byte(RECORD_SEPARATOR);
            Ok(())
        }
        Err(err) => {
            out.truncate(start);
            Err(err)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Reading
// ---------------------------------------------------------------------------------------------

/// Why a JSON object could not be walked.
#[derive(Debug)]
pub(crate) enum ObjectError<E> {
    /// The first JSON value is not an object; carries the .NET token name (`Array`, `Null`, …).
    NotAnObject(&'static str),
    /// The text is not valid JSON (.NET: "Error reading JSON.").
    Syntax,
    /// The property callback failed.
    Property(E),
}

/// Walks the properties of the JSON object at the start of `text`, in order, calling `f` with the
/// unescaped property name and the raw value. Stops at the first error of `f`. Whatever follows
/// the object is ignored (.NET reads only the first JSON value).
pub(crate) fn for_each_property<'a, E, F>(text: &'a [u8], mut f: F) -> Result<(), ObjectError<E>>
where
    F: FnMut(&str, &'a JsonRaw) -> Result<(), E>,
{
    let first = text
        .iter()
        .copied()
        .find(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'));
    if first != Some(b'{') {
        let mut de = serde_json::Deserializer::from_slice(text);
        return match <&JsonRaw as serde::Deserialize>::deserialize(&mut de) {
            Ok(raw) => Err(ObjectError::NotAnObject(top_level_token_name(raw))),
            Err(_) => Err(ObjectError::Syntax),
        };
    }
    let mut failure = None;
    let mut de = serde_json::Deserializer::from_slice(text);
    let result = de.deserialize_map(PropertyVisitor {
        f: &mut f,
        failure: &mut failure,
    });
    match (result, failure) {
        (_, Some(err)) => Err(ObjectError::Property(err)),
        (Ok(()), None) => Ok(()),
        (Err(_), None) => Err(ObjectError::Syntax),
    }
}

struct PropertyVisitor<'v, F, E> {
    f: &'v mut F,
    failure: &'v mut Option<E>,
}

impl<'de, F, E> Visitor<'de> for PropertyVisitor<'_, F, E>
where
    F: FnMut(&str, &'de JsonRaw) -> Result<(), E>,
{
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key_seed(KeySeed)? {
            let value: &'de JsonRaw = map.next_value()?;
            if let Err(err) = (self.f)(&key, value) {
                *self.failure = Some(err);
                return Err(de::Error::custom("property rejected"));
            }
        }
        Ok(())
    }
}

/// A property name, borrowed from the input when it has no escapes.
struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Cow<'de, str>;

    fn deserialize<D: serde::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(KeyVisitor)
    }
}

struct KeyVisitor;

impl<'de> Visitor<'de> for KeyVisitor {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a property name")
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v.to_owned()))
    }
}

/// The .NET name of a top-level token (`SystemTextJsonExtensions.GetTokenString`).
fn top_level_token_name(raw: &JsonRaw) -> &'static str {
    match raw.get().as_bytes().first() {
        Some(b'{') => "Object",
        Some(b'[') => "Array",
        Some(b'"') => "String",
        Some(b't') => "True",
        Some(b'f') => "False",
        Some(b'n') => "Null",
        _ => "Number",
    }
}

/// `Unexpected JSON Token Type '<token>'. Expected a JSON Object.`
pub(crate) fn not_an_object_text(token: &str) -> String {
    format!("Unexpected JSON Token Type '{token}'. Expected a JSON Object.")
}

/// Whether a raw value is JSON `null`.
pub(crate) fn is_null(raw: &JsonRaw) -> bool {
    raw.get() == "null"
}

/// Reads a raw value that must be a string (.NET `ReadAsString`: `null` is an error too).
pub(crate) fn raw_str<'a>(raw: &'a JsonRaw, field: &str) -> Result<Cow<'a, str>, String> {
    let text = raw.get();
    if !text.starts_with('"') {
        return Err(format!("Expected '{field}' to be of type String."));
    }
    if !text.contains('\\') && text.len() >= 2 {
        return Ok(Cow::Borrowed(&text[1..text.len() - 1]));
    }
    serde_json::from_str::<String>(text)
        .map(Cow::Owned)
        .map_err(|_| "Error reading JSON.".to_owned())
}

/// Reads a raw value that must be a number or `null` (.NET `ReadAsInt32`/`ReadAsInt64`), as an
/// integer in `[min, max]`.
pub(crate) fn raw_int(
    raw: &JsonRaw,
    field: &str,
    min: i64,
    max: i64,
) -> Result<Option<i64>, String> {
    let text = raw.get();
    if is_null(raw) {
        return Ok(None);
    }
    if !text.starts_with(|c: char| c == '-' || c.is_ascii_digit()) {
        return Err(format!("Expected '{field}' to be of type Number."));
    }
    match text.parse::<i64>() {
        Ok(v) if (min..=max).contains(&v) => Ok(Some(v)),
        _ => Err(format!(
            "The '{field}' value {text} is not an integer in the supported range."
        )),
    }
}

/// Reads a raw value that must be `true` or `false` (.NET `ReadAsBoolean`).
pub(crate) fn raw_bool(raw: &JsonRaw, field: &str) -> Result<bool, String> {
    match raw.get() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(format!("Expected '{field}' to be true or false.")),
    }
}

/// The properties of one hub message envelope, as read.
#[derive(Default)]
struct Envelope<'a> {
    ty: Option<i32>,
    headers: Headers,
    invocation_id: Option<String>,
    target: Option<String>,
    arguments: Option<&'a JsonRaw>,
    stream_ids: Vec<String>,
    item: Option<&'a JsonRaw>,
    result: Option<&'a JsonRaw>,
    error: Option<String>,
    allow_reconnect: bool,
    sequence_id: Option<i64>,
}

impl<'a> Envelope<'a> {
    fn property(&mut self, key: &str, raw: &'a JsonRaw) -> Result<(), String> {
        match key {
            "type" => {
                let ty = raw_int(raw, "type", i32::MIN.into(), i32::MAX.into())?
                    .ok_or_else(|| "Expected 'type' to be of type Number.".to_owned())?;
                // In range by construction.
                self.ty = Some(ty as i32);
            }
            "invocationId" => self.invocation_id = Some(raw_str(raw, "invocationId")?.into_owned()),
            "target" => self.target = Some(raw_str(raw, "target")?.into_owned()),
            "error" => self.error = Some(raw_str(raw, "error")?.into_owned()),
            "allowReconnect" => self.allow_reconnect = raw_bool(raw, "allowReconnect")?,
            "sequenceId" => self.sequence_id = raw_int(raw, "sequenceId", i64::MIN, i64::MAX)?,
            "result" => self.result = Some(raw),
            "item" => self.item = Some(raw),
            "arguments" => {
                if !raw.get().starts_with('[') {
                    return Err("Expected 'arguments' to be of type Array.".to_owned());
                }
                self.arguments = Some(raw);
            }
            "streamIds" => self.stream_ids = read_stream_ids(raw)?,
            "headers" => self.headers = read_headers(raw)?,
            _ => {}
        }
        Ok(())
    }
}

fn read_stream_ids(raw: &JsonRaw) -> Result<Vec<String>, String> {
    if !raw.get().starts_with('[') {
        return Err("Expected 'streamIds' to be of type Array.".to_owned());
    }
    let items: Vec<&JsonRaw> =
        serde_json::from_str(raw.get()).map_err(|_| "Error reading JSON.".to_owned())?;
    items
        .into_iter()
        .map(|item| {
            if is_null(item) {
                Err("Null value for 'streamIds' is not valid.".to_owned())
            } else {
                raw_str(item, "streamIds").map(Cow::into_owned)
            }
        })
        .collect()
}

fn read_headers(raw: &JsonRaw) -> Result<Headers, String> {
    if !raw.get().starts_with('{') {
        return Err("Expected 'headers' to be of type StartObject.".to_owned());
    }
    let mut headers = Headers::new();
    let walked = for_each_property(raw.get().as_bytes(), |key, value| {
        if !value.get().starts_with('"') {
            return Err(format!("Expected header '{key}' to be of type String."));
        }
        let value = raw_str(value, key)?;
        headers.push((key.to_owned(), value.into_owned()));
        Ok(())
    });
    match walked {
        Ok(()) => Ok(headers),
        Err(ObjectError::Property(text)) => Err(text),
        Err(_) => Err("Error reading JSON.".to_owned()),
    }
}

fn parse_body(src: Source<'_>, body: &[u8]) -> Result<Option<HubMessage>, ProtocolError> {
    let mut env = Envelope::default();
    match for_each_property(body, |key, raw| env.property(key, raw)) {
        Ok(()) => {}
        Err(ObjectError::NotAnObject(token)) => {
            return Err(ProtocolError::InvalidData(not_an_object_text(token)));
        }
        Err(ObjectError::Syntax) => return Err(ProtocolError::invalid("Error reading JSON.")),
        Err(ObjectError::Property(text)) => return Err(ProtocolError::InvalidData(text)),
    }
    let raw = |r: &JsonRaw| RawValue::Json(src.bytes_of(r.get().as_bytes()));
    let missing =
        |name: &str| ProtocolError::InvalidData(format!("Missing required property '{name}'."));
    let required_id = |id: Option<String>| match id {
        Some(id) if !id.is_empty() => Ok(id),
        _ => Err(missing("invocationId")),
    };
    let Some(ty) = env.ty else {
        return Err(missing("type"));
    };
    let message = match ty {
        1 | 4 => {
            let Some(target) = env.target else {
                return Err(missing("target"));
            };
            let invocation_id = if ty == 4 {
                Some(required_id(env.invocation_id)?)
            } else {
                env.invocation_id.filter(|id| !id.is_empty())
            };
            if ty == 1 && target.is_empty() {
                return Err(missing("target"));
            }
            let Some(arguments) = env.arguments else {
                return Err(missing("arguments"));
            };
            if target.is_empty() {
                return Err(missing("target"));
            }
            let inv = Invocation {
                headers: env.headers,
                invocation_id,
                target,
                arguments: raw(arguments),
                stream_ids: env.stream_ids,
            };
            if ty == 1 {
                HubMessage::Invocation(inv)
            } else {
                HubMessage::StreamInvocation(inv)
            }
        }
        2 => {
            let invocation_id = required_id(env.invocation_id)?;
            let Some(item) = env.item else {
                return Err(missing("item"));
            };
            HubMessage::StreamItem(StreamItem {
                headers: env.headers,
                invocation_id,
                item: raw(item),
            })
        }
        3 => {
            let invocation_id = required_id(env.invocation_id)?;
            let outcome = match (env.error, env.result) {
                (Some(_), Some(_)) => {
                    return Err(ProtocolError::invalid(
                        "The 'error' and 'result' properties are mutually exclusive.",
                    ));
                }
                (Some(error), None) => CompletionOutcome::Error(error),
                (None, Some(result)) => CompletionOutcome::Result(raw(result)),
                (None, None) => CompletionOutcome::Void,
            };
            HubMessage::Completion(Completion {
                headers: env.headers,
                invocation_id,
                outcome,
            })
        }
        5 => {
            let invocation_id = required_id(env.invocation_id)?;
            HubMessage::CancelInvocation(CancelInvocation {
                headers: env.headers,
                invocation_id,
            })
        }
        6 => HubMessage::Ping,
        7 => HubMessage::Close(Close {
            error: env.error,
            allow_reconnect: env.allow_reconnect,
        }),
        8 | 9 => {
            let Some(sequence_id) = env.sequence_id else {
                return Err(missing("sequenceId"));
            };
            if ty == 8 {
                HubMessage::Ack { sequence_id }
            } else {
                HubMessage::Sequence { sequence_id }
            }
        }
        // Future protocol versions may add message types; ignore them (as .NET and JS do).
        _ => return Ok(None),
    };
    Ok(Some(message))
}

// ---------------------------------------------------------------------------------------------
// Writing
// ---------------------------------------------------------------------------------------------

/// A capacity hint for the encoding of `msg`.
fn estimate_len(msg: &HubMessage) -> usize {
    let raw_len = |r: &RawValue| match r {
        RawValue::Json(b) => b.len(),
        RawValue::MessagePack(b) => b.len() * 2,
    };
    64 + match msg {
        HubMessage::Invocation(i) | HubMessage::StreamInvocation(i) => {
            i.target.len() + raw_len(&i.arguments)
        }
        HubMessage::StreamItem(i) => raw_len(&i.item),
        HubMessage::Completion(Completion {
            outcome: CompletionOutcome::Result(r),
            ..
        }) => raw_len(r),
        _ => 0,
    }
}

/// Appends the JSON text of `msg` without the record separator, in .NET property order.
pub fn write_message<S: ByteSink>(msg: &HubMessage, out: &mut S) -> Result<(), ProtocolError> {
    match msg {
        HubMessage::Invocation(inv) => write_invocation(1, inv, out)?,
        HubMessage::StreamInvocation(inv) => write_invocation(4, inv, out)?,
        HubMessage::StreamItem(item) => {
            write_common(2, &item.headers, Some(&item.invocation_id), out);
            out.put(b",\"item\":");
            write_raw(&item.item, out)?;
        }
        HubMessage::Completion(c) => {
            write_common(3, &c.headers, Some(&c.invocation_id), out);
            match &c.outcome {
                CompletionOutcome::Error(error) if !error.is_empty() => {
                    out.put(b",\"error\":");
                    write_json_string(error, out);
                }
                CompletionOutcome::Result(result) => {
                    out.put(b",\"result\":");
                    write_raw(result, out)?;
                }
                // .NET writes neither property for a void completion or an empty error.
                CompletionOutcome::Error(_) | CompletionOutcome::Void => {}
            }
        }
        HubMessage::CancelInvocation(c) => write_common(5, &c.headers, Some(&c.invocation_id), out),
        HubMessage::Ping => out.put(b"{\"type\":6"),
        HubMessage::Close(close) => {
            out.put(b"{\"type\":7");
            if let Some(error) = &close.error {
                out.put(b",\"error\":");
                write_json_string(error, out);
            }
            if close.allow_reconnect {
                out.put(b",\"allowReconnect\":true");
            }
        }
        HubMessage::Ack { sequence_id } | HubMessage::Sequence { sequence_id } => {
            out.put(if matches!(msg, HubMessage::Ack { .. }) {
                b"{\"type\":8"
            } else {
                b"{\"type\":9"
            });
            out.put(b",\"sequenceId\":");
            write_i64(*sequence_id, out);
        }
    }
    out.put_byte(b'}');
    Ok(())
}

/// `{"type":N[,"headers":{…}][,"invocationId":"…"]` (the object is left open).
fn write_common<S: ByteSink>(ty: u8, headers: &Headers, invocation_id: Option<&str>, out: &mut S) {
    out.put(b"{\"type\":");
    out.put_byte(b'0' + ty);
    if !headers.is_empty() {
        out.put(b",\"headers\":{");
        for (i, (key, value)) in headers.iter().enumerate() {
            if i > 0 {
                out.put_byte(b',');
            }
            write_json_string(key, out);
            out.put_byte(b':');
            write_json_string(value, out);
        }
        out.put_byte(b'}');
    }
    if let Some(id) = invocation_id.filter(|id| !id.is_empty()) {
        out.put(b",\"invocationId\":");
        write_json_string(id, out);
    }
}

fn write_invocation<S: ByteSink>(
    ty: u8,
    inv: &Invocation,
    out: &mut S,
) -> Result<(), ProtocolError> {
    write_common(ty, &inv.headers, inv.invocation_id.as_deref(), out);
    out.put(b",\"target\":");
    write_json_string(&inv.target, out);
    out.put(b",\"arguments\":");
    write_raw(&inv.arguments, out)?;
    if !inv.stream_ids.is_empty() {
        out.put(b",\"streamIds\":[");
        for (i, id) in inv.stream_ids.iter().enumerate() {
            if i > 0 {
                out.put_byte(b',');
            }
            write_json_string(id, out);
        }
        out.put_byte(b']');
    }
    Ok(())
}

/// Appends a raw value as JSON: JSON text verbatim, MessagePack transcoded.
fn write_raw<S: ByteSink>(value: &RawValue, out: &mut S) -> Result<(), ProtocolError> {
    match value {
        RawValue::Json(text) => {
            out.put(text);
            Ok(())
        }
        RawValue::MessagePack(bytes) => transcode::msgpack_to_json(bytes, out),
    }
}

/// Appends `v` in decimal.
pub(crate) fn write_i64<S: ByteSink>(v: i64, out: &mut S) {
    let mut buf = [0u8; 20];
    let mut n = v.unsigned_abs();
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    if v < 0 {
        out.put_byte(b'-');
    }
    out.put(&buf[i..]);
}

/// Appends `s` as a JSON string the way System.Text.Json's relaxed encoder (the SignalR default)
/// writes it: `"` and `\` escaped, `\b \f \n \r \t` short escapes, other control characters
/// (C0, DEL, C1), U+2028/U+2029 and characters outside the BMP as `\uXXXX` (uppercase hex,
/// surrogate pairs). Other non-ASCII text is written raw.
pub fn write_json_string<S: ByteSink>(s: &str, out: &mut S) {
    out.put_byte(b'"');
    let bytes = s.as_bytes();
    if bytes
        .iter()
        .all(|&b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
    {
        out.put(bytes);
    } else {
        let mut plain_from = 0;
        for (i, c) in s.char_indices() {
            let escape: Option<&[u8]> = match c {
                '"' => Some(b"\\\""),
                '\\' => Some(b"\\\\"),
                '\n' => Some(b"\\n"),
                '\r' => Some(b"\\r"),
                '\t' => Some(b"\\t"),
                '\u{8}' => Some(b"\\b"),
                '\u{c}' => Some(b"\\f"),
                _ => None,
            };
            let needs_hex = escape.is_none()
                && (c < ' '
                    || ('\u{7f}'..='\u{9f}').contains(&c)
                    || c == '\u{2028}'
                    || c == '\u{2029}'
                    || c > '\u{ffff}');
            if escape.is_none() && !needs_hex {
                continue;
            }
            out.put(&bytes[plain_from..i]);
            plain_from = i + c.len_utf8();
            if let Some(esc) = escape {
                out.put(esc);
            } else {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    write_u_escape(*unit, out);
                }
            }
        }
        out.put(&bytes[plain_from..]);
    }
    out.put_byte(b'"');
}

fn write_u_escape<S: ByteSink>(unit: u16, out: &mut S) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.put(&[
        b'\\',
        b'u',
        HEX[usize::from(unit >> 12)],
        HEX[usize::from((unit >> 8) & 0xf)],
        HEX[usize::from((unit >> 4) & 0xf)],
        HEX[usize::from(unit & 0xf)],
    ]);
}

/// See [`super::encode_invocation_json_args_into`]: `{"type":1,"target":"…","arguments":[…]}␞`.
pub(crate) fn encode_invocation_json_args_into(
    target: &str,
    arguments_json: &[u8],
    out: &mut BytesMut,
) -> Result<(), ProtocolError> {
    let args = validate_json_array(arguments_json)?;
    out.reserve(args.len() + target.len() + 40);
    out.put(b"{\"type\":1,\"target\":");
    write_json_string(target, out);
    out.put(b",\"arguments\":");
    out.put(args.as_bytes());
    out.put(b"}\x1e");
    Ok(())
}

/// Checks that `text` is exactly one JSON array (surrounding whitespace allowed) and returns it
/// without the whitespace.
pub(crate) fn validate_json_array(text: &[u8]) -> Result<&str, ProtocolError> {
    let raw: &JsonRaw = serde_json::from_slice(text)
        .map_err(|_| ProtocolError::invalid("The arguments are not valid JSON."))?;
    if !raw.get().starts_with('[') {
        return Err(ProtocolError::invalid(
            "The arguments must be a JSON array.",
        ));
    }
    Ok(raw.get())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Option<HubMessage>, ProtocolError> {
        parse_message(text.as_bytes())
    }

    #[test]
    fn escapes_like_system_text_json() {
        let mut out = Vec::new();
        write_json_string("a\"b\\c\n\u{1}\u{7f}é\u{2028}😀<>&'+", &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "\"a\\\"b\\\\c\\n\\u0001\\u007Fé\\u2028\\uD83D\\uDE00<>&'+\""
        );
    }

    #[test]
    fn property_order_is_free_and_type_may_come_last() {
        let msg = parse(r#"{"target":"t","arguments":[1],"invocationId":"0","type":1}"#)
            .unwrap()
            .unwrap();
        let HubMessage::Invocation(inv) = msg else {
            panic!("not an invocation")
        };
        assert_eq!(inv.invocation_id.as_deref(), Some("0"));
        assert_eq!(
            inv.arguments,
            RawValue::Json(bytes::Bytes::from_static(b"[1]"))
        );
    }

    #[test]
    fn empty_invocation_id_is_none_and_unknown_types_are_ignored() {
        let msg = parse(r#"{"type":1,"invocationId":"","target":"t","arguments":[]}"#)
            .unwrap()
            .unwrap();
        let HubMessage::Invocation(inv) = msg else {
            panic!("not an invocation")
        };
        assert_eq!(inv.invocation_id, None);
        assert_eq!(parse(r#"{"type":42,"x":[1,{"a":2}]}"#).unwrap(), None);
    }

    #[test]
    fn errors_have_dotnet_texts() {
        let err = |t: &str| parse(t).unwrap_err().to_string();
        assert_eq!(
            err(r#"{"type":null}"#),
            "Expected 'type' to be of type Number."
        );
        assert_eq!(
            err(r#"{"type":1,"target":"t","arguments":[],"streamIds":{}}"#),
            "Expected 'streamIds' to be of type Array."
        );
        assert_eq!(
            err(r#"{"type":7,"allowReconnect":1}"#),
            "Expected 'allowReconnect' to be true or false."
        );
        assert_eq!(
            err(r#"{"type":1,"headers":[]}"#),
            "Expected 'headers' to be of type StartObject."
        );
        assert!(err(r#"{"type":9999999999}"#).contains("type"));
        assert_eq!(err(""), "Error reading JSON.");
    }

    #[test]
    fn escaped_headers_and_strings_roundtrip() {
        let text = "{\"type\":5,\"headers\":{\"K\\n\":\"V\\\"\"},\"invocationId\":\"\\u0031\"}";
        let msg = parse(text).unwrap().unwrap();
        let HubMessage::CancelInvocation(c) = &msg else {
            panic!("not a cancel")
        };
        assert_eq!(c.headers, vec![("K\n".to_owned(), "V\"".to_owned())]);
        assert_eq!(c.invocation_id, "1");
        let mut out = Vec::new();
        write_message(&msg, &mut out).unwrap();
        assert_eq!(
            out,
            b"{\"type\":5,\"headers\":{\"K\\n\":\"V\\\"\"},\"invocationId\":\"1\"}"
        );
    }

    #[test]
    fn deeply_nested_arguments_do_not_overflow_the_stack() {
        let deep = format!(
            "{{\"type\":1,\"target\":\"t\",\"arguments\":[{}{}]}}",
            "[".repeat(200_000),
            "]".repeat(200_000)
        );
        // Either outcome is fine; returning at all is the point.
        let _ = parse(&deep);
        let _ = parse(&deep[..deep.len() / 2]);
    }

    #[test]
    fn integers_are_written_in_decimal() {
        for v in [0, 7, -1, 102_020, i64::MIN, i64::MAX] {
            let mut out = Vec::new();
            write_i64(v, &mut out);
            assert_eq!(String::from_utf8(out).unwrap(), v.to_string());
        }
    }
}
