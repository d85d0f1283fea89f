//! The MessagePack hub protocol codec (`MessagePackHubProtocolWorker.cs`): VarInt-framed
//! MessagePack arrays ⇄ [`HubMessage`]. This module owns the array layouts
//! (`docs/protocol.md#encodings`), the exact .NET error texts, and the small MessagePack writer
//! and marker walker the transcoder shares.
//!
//! Payload values are never decoded: the reader walks MessagePack markers (with `rmp::Marker`,
//! iteratively, so nesting depth cannot overflow the stack) only to find where a value ends, and
//! keeps its bytes. Like .NET, the reader reads the elements it needs in order and does not hold
//! the array header against them: extra trailing elements are ignored, streamIds are read only
//! when the array has more than 5 elements and allowReconnect only when it has more than 2.
//! The writer emits the .NET forms: 6-element Invocation (nil id, `0x90` for no streams), 4-element
//! void Completion, 3-element Close with an explicit bool, smallest integer and string forms.

use bytes::BytesMut;
use rmp::Marker;

use super::framing::{self, MAX_FRAME_LEN, MAX_VARINT_LEN};
use super::{
    ByteSink, CancelInvocation, Close, Completion, CompletionOutcome, Decoded, Headers, HubMessage,
    Invocation, ProtocolError, RawValue, Source, StreamItem, transcode,
};

/// Splits the next frame off `src` and parses it (see [`HubProtocol::decode`](super::HubProtocol::decode)).
pub(crate) fn decode_from(
    src: Source<'_>,
    max_message_size: usize,
) -> Result<Option<Decoded>, ProtocolError> {
    let buf = src.bytes();
    let Some((len, prefix)) = framing::read_varint(buf)? else {
        return Ok(None);
    };
    if len > max_message_size {
        return Err(ProtocolError::MessageTooLarge {
            max: max_message_size,
        });
    }
    if buf.len() - prefix < len {
        return Ok(None);
    }
    let body = &buf[prefix..prefix + len];
    Ok(Some(Decoded {
        message: parse_body(src, body)?,
        consumed: prefix + len,
    }))
}

/// Parses one MessagePack hub message body (without its VarInt prefix). `Ok(None)` for an
/// unknown message type. Raw values are copied out of `payload`.
pub fn parse_message(payload: &[u8]) -> Result<Option<HubMessage>, ProtocolError> {
    parse_body(Source::Slice(payload), payload)
}

/// Appends `msg` as a VarInt-prefixed MessagePack message. On error nothing is appended.
pub fn encode_into(msg: &HubMessage, out: &mut BytesMut) -> Result<(), ProtocolError> {
    if let Some(len) = payload_len(msg) {
        // Every raw value is already MessagePack: the size is known, write the prefix first.
        let start = out.len();
        out.reserve(len + MAX_VARINT_LEN);
        framing::write_varint(len, out);
        if let Err(err) = write_payload(msg, out) {
            out.truncate(start);
            return Err(err);
        }
        debug_assert_eq!(out.len() - start, len + framing::varint_len(len));
        Ok(())
    } else {
        write_framed(out, |out| write_payload(msg, out))
    }
}

/// Appends a VarInt-prefixed frame whose body `write` produces; the prefix is fixed up once the
/// body's size is known. On error nothing is appended.
pub(crate) fn write_framed(
    out: &mut BytesMut,
    write: impl FnOnce(&mut BytesMut) -> Result<(), ProtocolError>,
) -> Result<(), ProtocolError> {
    let start = out.len();
    out.put(&[0; MAX_VARINT_LEN]);
    let body_start = out.len();
    if let Err(err) = write(out) {
        out.truncate(start);
        return Err(err);
    }
    let body_len = out.len() - body_start;
    if body_len > MAX_FRAME_LEN {
        out.truncate(start);
        return Err(framing::FramingError::MessageOver2Gb.into());
    }
    let (prefix, n) = framing::encode_varint(body_len);
    let end = out.len();
    out.copy_within(body_start..end, start + n);
    out[start..start + n].copy_from_slice(&prefix[..n]);
    out.truncate(end - (MAX_VARINT_LEN - n));
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Reading
// ---------------------------------------------------------------------------------------------

/// A cursor over MessagePack bytes. Every method returns `None` on a type mismatch or on
/// truncated input; callers turn that into the .NET error text for the field.
#[derive(Clone)]
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// A reader at the start of `buf`.
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    /// The bytes not read yet.
    pub(crate) fn remaining(&self) -> &'a [u8] {
        &self.buf[self.pos..]
    }

    /// The next byte, not consumed.
    pub(crate) fn peek(&self) -> Option<u8> {
        self.buf.get(self.pos).copied()
    }

    pub(crate) fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let bytes = self.buf.get(self.pos..end)?;
        self.pos = end;
        Some(bytes)
    }

    pub(crate) fn byte(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.pos += 1;
        Some(b)
    }

    pub(crate) fn be<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }

    pub(crate) fn be_u16(&mut self) -> Option<u16> {
        self.be().map(u16::from_be_bytes)
    }

    pub(crate) fn be_u32(&mut self) -> Option<u32> {
        self.be().map(u32::from_be_bytes)
    }

    /// Any integer form, widened.
    pub(crate) fn int(&mut self) -> Option<i128> {
        let marker = Marker::from_u8(self.peek()?);
        let v = match marker {
            Marker::FixPos(v) => i128::from(v),
            Marker::FixNeg(v) => i128::from(v),
            Marker::U8
            | Marker::U16
            | Marker::U32
            | Marker::U64
            | Marker::I8
            | Marker::I16
            | Marker::I32
            | Marker::I64 => 0,
            _ => return None,
        };
        self.pos += 1;
        match marker {
            Marker::U8 => self.byte().map(i128::from),
            Marker::U16 => self.be_u16().map(i128::from),
            Marker::U32 => self.be_u32().map(i128::from),
            Marker::U64 => self.be().map(u64::from_be_bytes).map(i128::from),
            Marker::I8 => self.be().map(i8::from_be_bytes).map(i128::from),
            Marker::I16 => self.be().map(i16::from_be_bytes).map(i128::from),
            Marker::I32 => self.be().map(i32::from_be_bytes).map(i128::from),
            Marker::I64 => self.be().map(i64::from_be_bytes).map(i128::from),
            _ => Some(v),
        }
    }

    /// A string, or `Some(None)` for nil (MessagePack-CSharp's `ReadString`).
    pub(crate) fn str_or_nil(&mut self) -> Option<Option<&'a str>> {
        let len = match Marker::from_u8(self.peek()?) {
            Marker::Null => {
                self.pos += 1;
                return Some(None);
            }
            Marker::FixStr(n) => {
                self.pos += 1;
                usize::from(n)
            }
            Marker::Str8 => {
                self.pos += 1;
                usize::from(self.byte()?)
            }
            Marker::Str16 => {
                self.pos += 1;
                usize::from(self.be_u16()?)
            }
            Marker::Str32 => {
                self.pos += 1;
                self.be_u32()? as usize
            }
            _ => return None,
        };
        std::str::from_utf8(self.take(len)?).ok().map(Some)
    }

    /// An array header's element count.
    pub(crate) fn array_len(&mut self) -> Option<u32> {
        let len = match Marker::from_u8(self.peek()?) {
            Marker::FixArray(n) => {
                self.pos += 1;
                return Some(u32::from(n));
            }
            Marker::Array16 => {
                self.pos += 1;
                u32::from(self.be_u16()?)
            }
            Marker::Array32 => {
                self.pos += 1;
                self.be_u32()?
            }
            _ => return None,
        };
        Some(len)
    }

    /// A map header's entry count.
    pub(crate) fn map_len(&mut self) -> Option<u32> {
        let len = match Marker::from_u8(self.peek()?) {
            Marker::FixMap(n) => {
                self.pos += 1;
                return Some(u32::from(n));
            }
            Marker::Map16 => {
                self.pos += 1;
                u32::from(self.be_u16()?)
            }
            Marker::Map32 => {
                self.pos += 1;
                self.be_u32()?
            }
            _ => return None,
        };
        Some(len)
    }

    pub(crate) fn bool(&mut self) -> Option<bool> {
        let v = match Marker::from_u8(self.peek()?) {
            Marker::True => true,
            Marker::False => false,
            _ => return None,
        };
        self.pos += 1;
        Some(v)
    }

    /// Skips one complete value (however deeply nested, without recursion) and returns its bytes.
    pub(crate) fn value(&mut self) -> Option<&'a [u8]> {
        let start = self.pos;
        let mut pending: u64 = 1;
        while pending > 0 {
            pending -= 1;
            let marker = Marker::from_u8(self.byte()?);
            let skip = match marker {
                Marker::FixPos(_)
                | Marker::FixNeg(_)
                | Marker::Null
                | Marker::True
                | Marker::False => 0,
                Marker::Reserved => return None,
                Marker::U8 | Marker::I8 => 1,
                Marker::U16 | Marker::I16 => 2,
                Marker::U32 | Marker::I32 | Marker::F32 => 4,
                Marker::U64 | Marker::I64 | Marker::F64 => 8,
                Marker::FixStr(n) => usize::from(n),
                Marker::Str8 | Marker::Bin8 => usize::from(self.byte()?),
                Marker::Str16 | Marker::Bin16 => usize::from(self.be_u16()?),
                Marker::Str32 | Marker::Bin32 => self.be_u32()? as usize,
                Marker::FixExt1 => 2,
                Marker::FixExt2 => 3,
                Marker::FixExt4 => 5,
                Marker::FixExt8 => 9,
                Marker::FixExt16 => 17,
                Marker::Ext8 => usize::from(self.byte()?) + 1,
                Marker::Ext16 => usize::from(self.be_u16()?) + 1,
                Marker::Ext32 => (self.be_u32()? as usize).checked_add(1)?,
                Marker::FixArray(n) => {
                    pending += u64::from(n);
                    0
                }
                Marker::Array16 => {
                    pending += u64::from(self.be_u16()?);
                    0
                }
                Marker::Array32 => {
                    pending += u64::from(self.be_u32()?);
                    0
                }
                Marker::FixMap(n) => {
                    pending += 2 * u64::from(n);
                    0
                }
                Marker::Map16 => {
                    pending += 2 * u64::from(self.be_u16()?);
                    0
                }
                Marker::Map32 => {
                    pending += 2 * u64::from(self.be_u32()?);
                    0
                }
            };
            self.take(skip)?;
            // Every pending value needs at least one more byte.
            if pending > (self.buf.len() - self.pos) as u64 {
                return None;
            }
        }
        Some(&self.buf[start..self.pos])
    }
}

fn failed(what: &str) -> ProtocolError {
    ProtocolError::InvalidData(format!("Reading {what} failed."))
}

fn read_i32(r: &mut Reader<'_>, field: &str) -> Result<i32, ProtocolError> {
    r.int()
        .and_then(|v| i32::try_from(v).ok())
        .ok_or_else(|| failed(&format!("'{field}' as Int32")))
}

fn read_string<'a>(r: &mut Reader<'a>, field: &str) -> Result<Option<&'a str>, ProtocolError> {
    r.str_or_nil()
        .ok_or_else(|| failed(&format!("'{field}' as String")))
}

/// `ReadInvocationId` + the non-empty check of the message types that require an id.
fn read_required_id(r: &mut Reader<'_>, message_name: &str) -> Result<String, ProtocolError> {
    match read_string(r, "invocationId")? {
        Some(id) if !id.is_empty() => Ok(id.to_owned()),
        _ => Err(ProtocolError::InvalidData(format!(
            "Null or empty invocation ID for {message_name} message."
        ))),
    }
}

fn read_headers(r: &mut Reader<'_>) -> Result<Headers, ProtocolError> {
    let count = r
        .map_len()
        .ok_or_else(|| failed("map length for 'headers'"))?;
    let mut headers = Headers::new();
    for i in 0..count {
        let key = read_string(r, &format!("headers[{i}].Key"))?.unwrap_or_default();
        if key.is_empty() {
            return Err(ProtocolError::invalid("Null or empty key in header."));
        }
        let value = read_string(r, &format!("headers[{i}].Value"))?.unwrap_or_default();
        if value.is_empty() {
            return Err(ProtocolError::invalid("Null or empty value in header."));
        }
        headers.push((key.to_owned(), value.to_owned()));
    }
    Ok(headers)
}

fn read_stream_ids(r: &mut Reader<'_>) -> Result<Vec<String>, ProtocolError> {
    let count = r
        .array_len()
        .ok_or_else(|| failed("array length for 'streamIds'"))?;
    let mut ids = Vec::new();
    for _ in 0..count {
        match read_string(r, "streamIds")? {
            Some(id) if !id.is_empty() => ids.push(id.to_owned()),
            _ => {
                return Err(ProtocolError::invalid(
                    "Null or empty value in streamIds received.",
                ));
            }
        }
    }
    Ok(ids)
}

fn parse_body(src: Source<'_>, payload: &[u8]) -> Result<Option<HubMessage>, ProtocolError> {
    let mut r = Reader::new(payload);
    let item_count = r
        .array_len()
        .ok_or_else(|| failed("array length for 'message'"))?;
    let ty = read_i32(&mut r, "messageType")?;
    let value = |r: &mut Reader<'_>, field: &str| match r.value() {
        Some(bytes) => Ok(RawValue::MessagePack(src.bytes_of(bytes))),
        None => Err(failed(&format!("'{field}'"))),
    };
    let message = match ty {
        1 | 4 => {
            let name = if ty == 1 {
                "Invocation"
            } else {
                "StreamInvocation"
            };
            let headers = read_headers(&mut r)?;
            let invocation_id = if ty == 1 {
                // An empty id is a non-blocking invocation, like nil.
                read_string(&mut r, "invocationId")?
                    .filter(|id| !id.is_empty())
                    .map(str::to_owned)
            } else {
                Some(read_required_id(&mut r, name)?)
            };
            let target = match read_string(&mut r, "target")? {
                Some(target) if !target.is_empty() => target.to_owned(),
                _ => {
                    return Err(ProtocolError::InvalidData(format!(
                        "Null or empty target for {name} message."
                    )));
                }
            };
            // .NET reports a missing or non-array argument list as a binding failure; without the
            // hub's signatures a broker can only reject it (the envelope is unusable).
            if !matches!(
                r.peek().map(Marker::from_u8),
                Some(Marker::FixArray(_) | Marker::Array16 | Marker::Array32)
            ) {
                return Err(failed("array length for 'arguments'"));
            }
            let arguments = value(&mut r, "arguments")?;
            let stream_ids = if item_count > 5 {
                read_stream_ids(&mut r)?
            } else {
                Vec::new()
            };
            let inv = Invocation {
                headers,
                invocation_id,
                target,
                arguments,
                stream_ids,
            };
            if ty == 1 {
                HubMessage::Invocation(inv)
            } else {
                HubMessage::StreamInvocation(inv)
            }
        }
        2 => {
            let headers = read_headers(&mut r)?;
            let invocation_id = read_required_id(&mut r, "StreamItem")?;
            let item = value(&mut r, "item")?;
            HubMessage::StreamItem(StreamItem {
                headers,
                invocation_id,
                item,
            })
        }
        3 => {
            let headers = read_headers(&mut r)?;
            let invocation_id = read_required_id(&mut r, "Completion")?;
            let outcome = match read_i32(&mut r, "resultKind")? {
                1 => match read_string(&mut r, "error")? {
                    Some(error) => CompletionOutcome::Error(error.to_owned()),
                    // .NET: a nil error is a completion with neither error nor result.
                    None => CompletionOutcome::Void,
                },
                2 => CompletionOutcome::Void,
                3 => CompletionOutcome::Result(value(&mut r, "result")?),
                _ => return Err(ProtocolError::invalid("Invalid invocation result kind.")),
            };
            HubMessage::Completion(Completion {
                headers,
                invocation_id,
                outcome,
            })
        }
        5 => {
            let headers = read_headers(&mut r)?;
            let invocation_id = read_required_id(&mut r, "CancelInvocation")?;
            HubMessage::CancelInvocation(CancelInvocation {
                headers,
                invocation_id,
            })
        }
        6 => HubMessage::Ping,
        7 => {
            let error = read_string(&mut r, "error")?.map(str::to_owned);
            let allow_reconnect = if item_count > 2 {
                r.bool()
                    .ok_or_else(|| failed("'allowReconnect' as Boolean"))?
            } else {
                false
            };
            HubMessage::Close(Close {
                error,
                allow_reconnect,
            })
        }
        8 | 9 => {
            let sequence_id = r
                .int()
                .and_then(|v| i64::try_from(v).ok())
                .ok_or_else(|| failed("'sequenceId' as Int64"))?;
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

/// Appends an array header.
pub(crate) fn write_array_len<S: ByteSink>(n: u32, out: &mut S) {
    match n {
        0..=15 => out.put_byte(0x90 | n as u8),
        16..=0xffff => {
            out.put_byte(0xdc);
            out.put(&(n as u16).to_be_bytes());
        }
        _ => {
            out.put_byte(0xdd);
            out.put(&n.to_be_bytes());
        }
    }
}

/// Appends a map header.
pub(crate) fn write_map_len<S: ByteSink>(n: u32, out: &mut S) {
    match n {
        0..=15 => out.put_byte(0x80 | n as u8),
        16..=0xffff => {
            out.put_byte(0xde);
            out.put(&(n as u16).to_be_bytes());
        }
        _ => {
            out.put_byte(0xdf);
            out.put(&n.to_be_bytes());
        }
    }
}

/// The size of an array or map header.
fn container_header_len(n: usize) -> usize {
    match n {
        0..=15 => 1,
        16..=0xffff => 3,
        _ => 5,
    }
}

/// Appends a string in its smallest form (fixstr, str8, str16, str32).
pub(crate) fn write_str<S: ByteSink>(s: &str, out: &mut S) {
    let n = s.len();
    match n {
        0..=31 => out.put_byte(0xa0 | n as u8),
        32..=0xff => out.put(&[0xd9, n as u8]),
        0x100..=0xffff => {
            out.put_byte(0xda);
            out.put(&(n as u16).to_be_bytes());
        }
        _ => {
            out.put_byte(0xdb);
            out.put(&(n as u32).to_be_bytes());
        }
    }
    out.put(s.as_bytes());
}

fn str_len(s: &str) -> usize {
    s.len()
        + match s.len() {
            0..=31 => 1,
            32..=0xff => 2,
            0x100..=0xffff => 3,
            _ => 5,
        }
}

/// Appends an unsigned integer in its smallest form.
pub(crate) fn write_uint<S: ByteSink>(v: u64, out: &mut S) {
    match v {
        0..=0x7f => out.put_byte(v as u8),
        0x80..=0xff => out.put(&[0xcc, v as u8]),
        0x100..=0xffff => {
            out.put_byte(0xcd);
            out.put(&(v as u16).to_be_bytes());
        }
        0x1_0000..=0xffff_ffff => {
            out.put_byte(0xce);
            out.put(&(v as u32).to_be_bytes());
        }
        _ => {
            out.put_byte(0xcf);
            out.put(&v.to_be_bytes());
        }
    }
}

/// Appends a signed integer in its smallest form (non-negative values use the unsigned forms, as
/// MessagePack-CSharp does).
pub(crate) fn write_sint<S: ByteSink>(v: i64, out: &mut S) {
    match v {
        0.. => write_uint(v as u64, out),
        -32..=-1 => out.put_byte(v as i8 as u8),
        -128..=-33 => out.put(&[0xd0, v as i8 as u8]),
        -32768..=-129 => {
            out.put_byte(0xd1);
            out.put(&(v as i16).to_be_bytes());
        }
        -2_147_483_648..=-32769 => {
            out.put_byte(0xd2);
            out.put(&(v as i32).to_be_bytes());
        }
        _ => {
            out.put_byte(0xd3);
            out.put(&v.to_be_bytes());
        }
    }
}

fn sint_len(v: i64) -> usize {
    match v {
        -32..=0x7f => 1,
        -128..=0xff => 2,
        -32768..=0xffff => 3,
        -2_147_483_648..=0xffff_ffff => 5,
        _ => 9,
    }
}

/// Appends a float64.
pub(crate) fn write_f64<S: ByteSink>(v: f64, out: &mut S) {
    out.put_byte(0xcb);
    out.put(&v.to_be_bytes());
}

/// Appends nil.
pub(crate) fn write_nil<S: ByteSink>(out: &mut S) {
    out.put_byte(0xc0);
}

/// Appends a bool.
pub(crate) fn write_bool<S: ByteSink>(v: bool, out: &mut S) {
    out.put_byte(if v { 0xc3 } else { 0xc2 });
}

fn write_headers<S: ByteSink>(headers: &Headers, out: &mut S) {
    write_map_len(headers.len() as u32, out);
    for (key, value) in headers {
        write_str(key, out);
        write_str(value, out);
    }
}

fn headers_len(headers: &Headers) -> usize {
    container_header_len(headers.len())
        + headers
            .iter()
            .map(|(k, v)| str_len(k) + str_len(v))
            .sum::<usize>()
}

fn write_raw<S: ByteSink>(value: &RawValue, out: &mut S) -> Result<(), ProtocolError> {
    match value {
        RawValue::MessagePack(bytes) => {
            out.put(bytes);
            Ok(())
        }
        RawValue::Json(text) => transcode::json_to_msgpack(text, out),
    }
}

fn raw_len(value: &RawValue) -> Option<usize> {
    match value {
        RawValue::MessagePack(bytes) => Some(bytes.len()),
        RawValue::Json(_) => None,
    }
}

/// Appends the MessagePack body of `msg` (no length prefix), in the .NET layouts.
pub fn write_payload<S: ByteSink>(msg: &HubMessage, out: &mut S) -> Result<(), ProtocolError> {
    match msg {
        HubMessage::Invocation(inv) | HubMessage::StreamInvocation(inv) => {
            write_array_len(6, out);
            write_uint(u64::from(msg.type_id()), out);
            write_headers(&inv.headers, out);
            match inv.invocation_id.as_deref() {
                Some(id) if !id.is_empty() => write_str(id, out),
                _ => write_nil(out),
            }
            write_str(&inv.target, out);
            write_raw(&inv.arguments, out)?;
            write_array_len(inv.stream_ids.len() as u32, out);
            for id in &inv.stream_ids {
                write_str(id, out);
            }
        }
        HubMessage::StreamItem(item) => {
            write_array_len(4, out);
            write_uint(2, out);
            write_headers(&item.headers, out);
            write_str(&item.invocation_id, out);
            write_raw(&item.item, out)?;
        }
        HubMessage::Completion(c) => {
            let (len, kind) = match &c.outcome {
                CompletionOutcome::Error(_) => (5, 1),
                CompletionOutcome::Void => (4, 2),
                CompletionOutcome::Result(_) => (5, 3),
            };
            write_array_len(len, out);
            write_uint(3, out);
            write_headers(&c.headers, out);
            write_str(&c.invocation_id, out);
            write_uint(kind, out);
            match &c.outcome {
                CompletionOutcome::Error(error) => write_str(error, out),
                CompletionOutcome::Result(result) => write_raw(result, out)?,
                CompletionOutcome::Void => {}
            }
        }
        HubMessage::CancelInvocation(c) => {
            write_array_len(3, out);
            write_uint(5, out);
            write_headers(&c.headers, out);
            write_str(&c.invocation_id, out);
        }
        HubMessage::Ping => out.put(&[0x91, 0x06]),
        HubMessage::Close(close) => {
            write_array_len(3, out);
            write_uint(7, out);
            match close.error.as_deref() {
                Some(error) if !error.is_empty() => write_str(error, out),
                // .NET writes nil for an empty error.
                _ => write_nil(out),
            }
            write_bool(close.allow_reconnect, out);
        }
        HubMessage::Ack { sequence_id } | HubMessage::Sequence { sequence_id } => {
            write_array_len(2, out);
            write_uint(u64::from(msg.type_id()), out);
            write_sint(*sequence_id, out);
        }
    }
    Ok(())
}

/// The exact size of [`write_payload`]'s output, when every raw value is already MessagePack.
fn payload_len(msg: &HubMessage) -> Option<usize> {
    let len = match msg {
        HubMessage::Invocation(inv) | HubMessage::StreamInvocation(inv) => {
            let id = match inv.invocation_id.as_deref() {
                Some(id) if !id.is_empty() => str_len(id),
                _ => 1,
            };
            2 + headers_len(&inv.headers)
                + id
                + str_len(&inv.target)
                + raw_len(&inv.arguments)?
                + container_header_len(inv.stream_ids.len())
                + inv.stream_ids.iter().map(|s| str_len(s)).sum::<usize>()
        }
        HubMessage::StreamItem(item) => {
            2 + headers_len(&item.headers) + str_len(&item.invocation_id) + raw_len(&item.item)?
        }
        HubMessage::Completion(c) => {
            3 + headers_len(&c.headers)
                + str_len(&c.invocation_id)
                + match &c.outcome {
                    CompletionOutcome::Error(error) => str_len(error),
                    CompletionOutcome::Void => 0,
                    CompletionOutcome::Result(result) => raw_len(result)?,
                }
        }
        HubMessage::CancelInvocation(c) => 2 + headers_len(&c.headers) + str_len(&c.invocation_id),
        HubMessage::Ping => 2,
        HubMessage::Close(close) => {
            3 + match close.error.as_deref() {
                Some(error) if !error.is_empty() => str_len(error),
                _ => 1,
            }
        }
        HubMessage::Ack { sequence_id } | HubMessage::Sequence { sequence_id } => {
            2 + sint_len(*sequence_id)
        }
    };
    Some(len)
}

/// See [`super::encode_invocation_json_args_into`]: `[1, {}, nil, target, [args…], []]`.
pub(crate) fn encode_invocation_json_args_into(
    target: &str,
    arguments_json: &[u8],
    out: &mut BytesMut,
) -> Result<(), ProtocolError> {
    out.reserve(arguments_json.len() + target.len() + 16);
    write_framed(out, |out| {
        out.put(&[0x96, 0x01, 0x80, 0xc0]);
        write_str(target, out);
        let args_start = out.len();
        transcode::json_to_msgpack(arguments_json, out)?;
        if !matches!(
            Marker::from_u8(out[args_start]),
            Marker::FixArray(_) | Marker::Array16 | Marker::Array32
        ) {
            return Err(ProtocolError::invalid(
                "The arguments must be a JSON array.",
            ));
        }
        out.put_byte(0x90);
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(payload: &[u8]) -> Vec<u8> {
        let mut out = BytesMut::new();
        framing::write_binary_frame(payload, &mut out);
        out.to_vec()
    }

    #[test]
    fn integers_use_the_smallest_form() {
        let enc = |v: i64| {
            let mut out = Vec::new();
            write_sint(v, &mut out);
            assert_eq!(out.len(), sint_len(v), "{v}");
            out
        };
        assert_eq!(enc(42), [0x2a]);
        assert_eq!(enc(146), [0xcc, 0x92]);
        assert_eq!(enc(-1), [0xff]);
        assert_eq!(enc(-33), [0xd0, 0xdf]);
        assert_eq!(enc(65_536), [0xce, 0, 1, 0, 0]);
        assert_eq!(enc(i64::MIN).len(), 9);
        assert_eq!(enc(i64::MAX).len(), 9);
        let mut r = Reader::new(&[0xd3, 0x80, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(r.int(), Some(i128::from(i64::MIN)));
    }

    #[test]
    fn framed_writer_fixes_up_long_prefixes() {
        let long = "x".repeat(300);
        let msg = HubMessage::Completion(Completion {
            headers: vec![],
            invocation_id: "1".into(),
            outcome: CompletionOutcome::Result(RawValue::Json(
                format!("\"{long}\"").into_bytes().into(),
            )),
        });
        let mut out = BytesMut::from(&b"prefix"[..]);
        encode_into(&msg, &mut out).unwrap();
        assert_eq!(&out[..6], b"prefix");
        let decoded = decode_from(Source::Slice(&out[6..]), usize::MAX)
            .unwrap()
            .unwrap();
        assert_eq!(decoded.consumed, out.len() - 6);
        let Some(HubMessage::Completion(c)) = decoded.message else {
            panic!("not a completion")
        };
        let CompletionOutcome::Result(RawValue::MessagePack(v)) = c.outcome else {
            panic!("no result")
        };
        assert_eq!(&v[..3], &[0xda, 0x01, 0x2c]);
    }

    #[test]
    fn deep_nesting_does_not_recurse() {
        let mut payload = vec![0x94, 0x02, 0x80, 0xa1, b'x'];
        payload.extend(std::iter::repeat_n(0x91, 100_000));
        payload.push(0xc0);
        let decoded = decode_from(Source::Slice(&frame(&payload)), usize::MAX)
            .unwrap()
            .unwrap();
        assert!(matches!(decoded.message, Some(HubMessage::StreamItem(_))));
        // Truncated: the pending count exceeds the remaining bytes.
        payload.pop();
        assert!(decode_from(Source::Slice(&frame(&payload)), usize::MAX).is_err());
    }

    #[test]
    fn huge_declared_lengths_fail_fast() {
        // An item claiming 2^32-1 array elements in 3 bytes.
        let payload = [0x94, 0x02, 0x80, 0xa1, b'x', 0xdd, 0xff, 0xff, 0xff, 0xff];
        assert!(parse_message(&payload).is_err());
        let too_big = [0xff, 0xff, 0xff, 0x07];
        assert_eq!(
            decode_from(Source::Slice(&too_big), 1024),
            Err(ProtocolError::MessageTooLarge { max: 1024 })
        );
    }
}
