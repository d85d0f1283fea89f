//! The Azure SignalR service protocol, SANS-IO: the binary protocol hub servers ("app servers")
//! speak with the service over `/server/?hub=` (`docs/protocol.md#service-protocol`).
//!
//! A frame is a VarInt length prefix (the same framing as the MessagePack hub protocol,
//! [`framing`]) followed by one MessagePack array whose first element is the type id;
//! [`ServiceMessage`] has one variant per type id 1–40.
//!
//! The reader follows the rules of the SDK's `ServiceProtocol.cs` reader
//! (`docs/protocol.md#framing-and-reader-rules`):
//! * an unknown type id is skipped, never fatal (`Ok(Some((None, consumed)))`);
//! * shorter arrays of older peers are accepted down to each type's minimum length ("min" in
//!   `docs/protocol.md#message-catalogue`), the missing members take their empty values (no
//!   extensions, no headers, `None`, `false`); an array shorter than the minimum is an error
//!   (the SDK would read past the array);
//! * elements beyond those a type defines, and bytes left in the frame after the array, are
//!   ignored;
//! * claim, header and payload maps are read as sequences of pairs: order and duplicates are
//!   kept, and keys are kept as sent (payload and header keys are meant to be compared
//!   case-insensitively, see [`payload_for`]);
//! * the extension map takes integer keys 1–6; the values of unknown keys are skipped;
//! * nil is accepted wherever the model has an `Option`. Where the model has a plain `String`,
//!   nil is an error if the SDK reads the field with `ReadStringNotNull` (ids, group names, list
//!   items, payload keys) or builds a `Claim` from it, and reads as `""` where the SDK accepts a
//!   null (Ping entries, header values, ClientCompletion's `protocol`). A nil map or list reads as
//!   empty, a nil payload as empty bytes;
//! * integers may come in any MessagePack integer form; values outside the field's range
//!   (`Int32`, `UInt64` for the tracing id) are errors;
//! * byte payloads may be `bin` or (MessagePack's old spec) `str`.
//!
//! The writer produces exactly the bytes of the newest SDK writer (the `roundtrip` vectors,
//! `docs/protocol.md#test-vectors`): its array layout for every type (7-item HandshakeRequest,
//! 6-item Ack, ...), the shortest integer forms except ConnectionFlowControl's fixed `d2` int32
//! fields, nil for `None`, `90` / `80` for empty lists and maps, `bin` for payloads and an
//! extension map holding only the present members in key order. Older layouts are read but
//! never written.
//!
//! Decoding never panics: malformed input of any kind is a [`ServiceProtocolError`].

mod message;
mod read;
mod write;

pub use message::*;

use bytes::{Bytes, BytesMut};

use super::Source;
use super::framing::{self, FramingError};

/// Why a service-protocol frame could not be decoded.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum ServiceProtocolError {
    /// The length prefix announces a body larger than the configured maximum.
    #[error("The maximum message size of {max}B was exceeded.")]
    FrameTooLarge {
        /// The configured maximum frame body size in bytes.
        max: usize,
    },
    /// Malformed input; where the SDK's reader has an error text for the case, that text
    /// (`Reading 'ackId' as Int32 failed.`, ...).
    #[error("{0}")]
    InvalidData(String),
}

impl From<FramingError> for ServiceProtocolError {
    fn from(err: FramingError) -> Self {
        Self::InvalidData(err.to_string())
    }
}

/// Parses the next varint-length-prefixed frame at the start of `buf`.
///
/// * `Ok(None)`: the frame is incomplete; wait for more bytes.
/// * `Ok(Some((Some(msg), consumed)))`: a message, and how many bytes of `buf` its frame took
///   (prefix included).
/// * `Ok(Some((None, consumed)))`: a frame of an unknown type id, skipped (never fatal).
///
/// Bytes left inside a frame after the array are ignored. A frame whose body is larger than
/// `max_frame` bytes is [`ServiceProtocolError::FrameTooLarge`], reported as soon as the prefix
/// has arrived. Payloads are copied out of `buf`; see [`decode_bytes`] for zero-copy slices.
pub fn decode(
    buf: &[u8],
    max_frame: usize,
) -> Result<Option<(Option<ServiceMessage>, usize)>, ServiceProtocolError> {
    decode_from(Source::Slice(buf), max_frame)
}

/// As [`decode`], but the payload [`Bytes`] of the message (ConnectionData, payload maps,
/// ClientCompletion, Ack) are zero-copy slices of `buf`: the hot path forwarding client data.
pub fn decode_bytes(
    buf: &Bytes,
    max_frame: usize,
) -> Result<Option<(Option<ServiceMessage>, usize)>, ServiceProtocolError> {
    decode_from(Source::Shared(buf), max_frame)
}

/// Decodes one unframed body (the MessagePack array, without its length prefix). `Ok(None)` for
/// an unknown type id. Bytes after the array are ignored.
pub fn decode_body(body: &[u8]) -> Result<Option<ServiceMessage>, ServiceProtocolError> {
    read::parse_body(Source::Slice(body), body)
}

fn decode_from(
    src: Source<'_>,
    max_frame: usize,
) -> Result<Option<(Option<ServiceMessage>, usize)>, ServiceProtocolError> {
    let buf = src.bytes();
    let Some((len, prefix)) = framing::read_varint(buf)? else {
        return Ok(None);
    };
    if len > max_frame {
        return Err(ServiceProtocolError::FrameTooLarge { max: max_frame });
    }
    let Some(body) = buf.get(prefix..).and_then(|rest| rest.get(..len)) else {
        return Ok(None);
    };
    Ok(Some((read::parse_body(src, body)?, prefix + len)))
}

/// Appends the framed encoding of `msg` (VarInt prefix + body), byte for byte what the current
/// Azure SDK writer produces. Bodies are written once, straight into `out` (their size is
/// measured first). A body over 2 GiB − 1 cannot be framed; callers bound payload sizes far below.
pub fn encode_into(msg: &ServiceMessage, out: &mut BytesMut) {
    write::encode_into(msg, out);
}

/// The framed encoding of `msg` as one buffer (see [`encode_into`]).
pub fn encode(msg: &ServiceMessage) -> Bytes {
    let mut out = BytesMut::new();
    encode_into(msg, &mut out);
    out.freeze()
}

/// Builds a `Ping { messages }` of the Ping sub-protocol from key/value pairs:
/// `ping(&[("status", "1")])` is `[3, "status", "1"]`; `ping(&[])` is the keep-alive `[3]`.
pub fn ping(pairs: &[(&str, &str)]) -> ServiceMessage {
    let mut messages = Vec::with_capacity(pairs.len() * 2);
    for (key, value) in pairs {
        messages.push((*key).to_owned());
        messages.push((*value).to_owned());
    }
    ServiceMessage::Ping { messages }
}

/// The value of the first `key` in a Ping's flat key/value list (as the SDK's
/// `RuntimeServicePingMessages.TryGetValue`: exact comparison; a trailing odd entry is no pair).
pub fn ping_value<'a>(messages: &'a [String], key: &str) -> Option<&'a str> {
    messages
        .chunks_exact(2)
        .find(|pair| pair[0] == key)
        .map(|pair| pair[1].as_str())
}

/// The entry of a payload map for hub protocol `protocol`, compared case-insensitively as the
/// SDK's payload dictionary does (first match).
pub fn payload_for<'a>(payloads: &'a Payloads, protocol: &str) -> Option<&'a Bytes> {
    payloads
        .iter()
        .find(|(key, _)| key.eq_ignore_ascii_case(protocol))
        .map(|(_, bytes)| bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(body: &[u8]) -> Vec<u8> {
        let mut out = BytesMut::new();
        framing::write_binary_frame(body, &mut out);
        out.to_vec()
    }

    #[test]
    fn keep_alive_ping() {
        assert_eq!(&encode(&ping(&[]))[..], [0x02, 0x91, 0x03]);
        assert_eq!(
            decode(&[0x02, 0x91, 0x03], 16),
            Ok(Some((Some(ServiceMessage::Ping { messages: vec![] }), 3)))
        );
    }

    #[test]
    fn ping_pairs() {
        let msg = ping(&[("status", "1"), ("clientcount", "3")]);
        let ServiceMessage::Ping { messages } = &msg else {
            panic!("not a ping")
        };
        assert_eq!(ping_value(messages, "status"), Some("1"));
        assert_eq!(ping_value(messages, "clientcount"), Some("3"));
        assert_eq!(ping_value(messages, "1"), None);
        assert_eq!(ping_value(messages, "servers"), None);
        assert_eq!(ping_value(&["odd".to_owned()], "odd"), None);
        let bytes = encode(&msg);
        assert_eq!(decode(&bytes, 1024), Ok(Some((Some(msg), bytes.len()))));
    }

    #[test]
    fn handshake_response_of_the_minimum_service() {
        // The minimal success answer to any HandshakeRequest: [2, "", {}, nil]
        // (docs/protocol.md#service-handshake).
        let msg = ServiceMessage::HandshakeResponse {
            error_message: Some(String::new()),
            extensions: Extensions::default(),
            connection_id: None,
        };
        assert_eq!(&encode(&msg)[..], [0x05, 0x94, 0x02, 0xa0, 0x80, 0xc0]);
    }

    #[test]
    fn incomplete_and_oversize_frames() {
        let body = [0x93, 0x26, 0xa1, b'c', 0x80];
        let framed = frame(&body);
        for cut in 0..framed.len() {
            assert_eq!(decode(&framed[..cut], 1024), Ok(None), "cut at {cut}");
        }
        assert_eq!(
            decode(&framed, 4),
            Err(ServiceProtocolError::FrameTooLarge { max: 4 })
        );
        // Detected from the prefix alone.
        assert_eq!(
            decode(&[0x80, 0x01], 127),
            Err(ServiceProtocolError::FrameTooLarge { max: 127 })
        );
        assert!(decode(&[0xff, 0xff, 0xff, 0xff, 0xff], usize::MAX).is_err());
    }

    #[test]
    fn unknown_types_are_skipped() {
        let framed = frame(&[0x92, 0x29, 0xc0]);
        assert_eq!(decode(&framed, 1024), Ok(Some((None, 4))));
        assert_eq!(decode_body(&[0x91, 0xcd, 0x01, 0x00]), Ok(None));
        assert_eq!(decode_body(&[0x91, 0xff]), Ok(None));
    }

    #[test]
    fn zero_copy_payloads() {
        let msg = ServiceMessage::ConnectionData {
            connection_id: "c".into(),
            payload: Bytes::from_static(b"hello"),
            extensions: Extensions::default(),
        };
        let buf = encode(&msg);
        let Ok(Some((Some(ServiceMessage::ConnectionData { payload, .. }), n))) =
            decode_bytes(&buf, 1024)
        else {
            panic!("not decoded")
        };
        assert_eq!(n, buf.len());
        assert_eq!(&payload[..], b"hello");
        let offset = buf.len() - 1 - 5;
        assert_eq!(payload.as_ptr(), buf[offset..].as_ptr());
    }

    #[test]
    fn payload_lookup_ignores_case() {
        let payloads: Payloads = vec![
            ("Json".into(), Bytes::from_static(b"j")),
            ("messagepack".into(), Bytes::from_static(b"m")),
        ];
        assert_eq!(
            payload_for(&payloads, "json").map(|b| &b[..]),
            Some(&b"j"[..])
        );
        assert_eq!(
            payload_for(&payloads, "MessagePack").map(|b| &b[..]),
            Some(&b"m"[..])
        );
        assert_eq!(payload_for(&payloads, "blazorpack"), None);
    }
}
