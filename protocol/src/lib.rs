//! The SignalR and Azure SignalR wire protocols, SANS-IO: bytes in, typed messages out, and
//! back. This crate
//! owns the choice of hub protocol ([`HubProtocol`]), the shared error type ([`ProtocolError`]),
//! the pre-encoded frames the connection code sends often, and the client-side checks the JS
//! client applies to what a server sends. Submodules own the framing, the handshake, the JSON
//! and MessagePack codecs, payload transcoding, the negotiate response, the service protocol
//! between the service and hub servers ([`service`]), access-key tokens ([`auth`]) and the ids and
//! names every layer shares ([`id`]).
//!
//! Nothing here performs I/O or imports tokio/actix: codecs take `&[u8]` and append to a
//! `BytesMut`. Argument values, stream items and completion results are never decoded into a
//! value tree on the decode path; they stay raw bytes ([`RawValue`]) and are only transcoded when
//! a message is written in the other protocol.

pub mod auth;
pub mod framing;
#[doc(hidden)]
pub mod fuzzing;
pub mod handshake;
pub mod id;
pub mod json;
pub mod message;
pub mod msgpack;
pub mod negotiate;
pub mod service;
pub mod transcode;

pub use message::*;

use bytes::{Bytes, BytesMut};

use framing::RecordScan;

/// A SignalR hub protocol, as named in the handshake request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HubProtocol {
    /// `json`: UTF-8 JSON text, each message followed by 0x1E.
    Json,
    /// `messagepack`: VarInt length prefix + MessagePack array; needs the Binary transfer format.
    MessagePack,
}

impl HubProtocol {
    /// Looks a protocol up by its handshake name. Case-insensitive, as .NET's
    /// `DefaultHubProtocolResolver` (an `OrdinalIgnoreCase` dictionary).
    pub fn from_name(name: &str) -> Option<Self> {
        if name.eq_ignore_ascii_case("json") {
            Some(Self::Json)
        } else if name.eq_ignore_ascii_case("messagepack") {
            Some(Self::MessagePack)
        } else {
            None
        }
    }

    /// The protocol's handshake name: `json` or `messagepack`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Json => "json",
            Self::MessagePack => "messagepack",
        }
    }

    /// Whether the protocol needs the Binary transfer format (MessagePack cannot run over SSE).
    pub fn is_binary(self) -> bool {
        matches!(self, Self::MessagePack)
    }

    /// The highest handshake `version` the protocol accepts (.NET: `version <= 2` for both;
    /// version 2 enables stateful reconnect).
    pub fn max_version(self) -> i64 {
        2
    }

    /// Parses the next complete framed message at the start of `buf` (JSON: up to 0x1E;
    /// MessagePack: VarInt length prefix + body).
    ///
    /// `Ok(None)` means incomplete: wait for more bytes. A message whose body (without the
    /// separator / prefix) exceeds `max_message_size` is [`ProtocolError::MessageTooLarge`], reported
    /// as soon as the prefix or the unterminated bytes show it. Unknown message types decode as
    /// `Decoded { message: None, .. }` (ignored for forward compatibility, as .NET does).
    ///
    /// Raw values are copied out of `buf`; use [`decode_bytes`](Self::decode_bytes) to share them
    /// with a `Bytes` buffer instead.
    pub fn decode(
        self,
        buf: &[u8],
        max_message_size: usize,
    ) -> Result<Option<Decoded>, ProtocolError> {
        self.decode_from(
            Source::Slice(buf),
            max_message_size,
            &mut RecordScan::default(),
        )
    }

    /// As [`decode`](Self::decode), but the raw values of the message are zero-copy slices of
    /// `buf` (they keep the whole buffer alive).
    pub fn decode_bytes(
        self,
        buf: &Bytes,
        max_message_size: usize,
    ) -> Result<Option<Decoded>, ProtocolError> {
        self.decode_from(
            Source::Shared(buf),
            max_message_size,
            &mut RecordScan::default(),
        )
    }

    /// As [`decode`](Self::decode), for a receive buffer that grows between calls: `scan`
    /// remembers where the search for the end of a JSON message stopped, so a message arriving a
    /// byte at a time costs time linear in its length (see [`RecordScan`] for the contract). One
    /// scan per buffer; MessagePack frames carry their length and need no search.
    pub fn decode_scanned(
        self,
        buf: &[u8],
        max_message_size: usize,
        scan: &mut RecordScan,
    ) -> Result<Option<Decoded>, ProtocolError> {
        self.decode_from(Source::Slice(buf), max_message_size, scan)
    }

    /// [`decode_scanned`](Self::decode_scanned) with zero-copy raw values, as
    /// [`decode_bytes`](Self::decode_bytes).
    pub fn decode_bytes_scanned(
        self,
        buf: &Bytes,
        max_message_size: usize,
        scan: &mut RecordScan,
    ) -> Result<Option<Decoded>, ProtocolError> {
        self.decode_from(Source::Shared(buf), max_message_size, scan)
    }

    fn decode_from(
        self,
        src: Source<'_>,
        max_message_size: usize,
        scan: &mut RecordScan,
    ) -> Result<Option<Decoded>, ProtocolError> {
        match self {
            Self::Json => json::decode_from(src, max_message_size, scan),
            Self::MessagePack => msgpack::decode_from(src, max_message_size),
        }
    }

    /// Appends the framed encoding of `msg` (with its 0x1E / VarInt prefix). Raw values in the
    /// other protocol's encoding are transcoded (JSON text ⇄ MessagePack). On error nothing is
    /// appended.
    pub fn encode_into(self, msg: &HubMessage, out: &mut BytesMut) -> Result<(), ProtocolError> {
        match self {
            Self::Json => json::encode_into(msg, out),
            Self::MessagePack => msgpack::encode_into(msg, out),
        }
    }

    /// The framed encoding of `msg` as one buffer.
    pub fn encode(self, msg: &HubMessage) -> Result<Bytes, ProtocolError> {
        let mut out = BytesMut::new();
        self.encode_into(msg, &mut out)?;
        Ok(out.freeze())
    }
}

/// One message split off the front of a receive buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decoded {
    /// The message; `None` for a message type this implementation does not know (ignore it).
    pub message: Option<HubMessage>,
    /// How many bytes of the buffer the message occupied, separator / prefix included.
    pub consumed: usize,
}

/// Why bytes could not be decoded or a message could not be encoded.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum ProtocolError {
    /// The message body is larger than the configured maximum (.NET text).
    #[error("The maximum message size of {max}B was exceeded.")]
    MessageTooLarge {
        /// The configured maximum message size in bytes.
        max: usize,
    },
    /// Malformed input; the text is the .NET `InvalidDataException` message where .NET has one.
    #[error("{0}")]
    InvalidData(String),
}

impl ProtocolError {
    /// Shorthand for [`ProtocolError::InvalidData`].
    pub(crate) fn invalid(text: impl Into<String>) -> Self {
        Self::InvalidData(text.into())
    }
}

impl From<framing::FramingError> for ProtocolError {
    fn from(err: framing::FramingError) -> Self {
        Self::InvalidData(err.to_string())
    }
}

/// The pre-encoded framed Ping for `p`: `{"type":6}` + 0x1E, or `02 91 06`.
pub fn ping_frame(p: HubProtocol) -> &'static [u8] {
    match p {
        HubProtocol::Json => b"{\"type\":6}\x1e",
        HubProtocol::MessagePack => b"\x02\x91\x06",
    }
}

/// Encodes a non-blocking Invocation of `target` whose arguments are given as the text of a JSON
/// array (the REST API's form), framed for `p`. For MessagePack the arguments are transcoded.
///
/// The arguments must be one JSON array and the target must not be empty (the JS client rejects
/// an Invocation with an empty target).
pub fn encode_invocation_json_args(
    p: HubProtocol,
    target: &str,
    arguments_json: &[u8],
) -> Result<Bytes, ProtocolError> {
    let mut out = BytesMut::with_capacity(arguments_json.len() + target.len() + 32);
    encode_invocation_json_args_into(p, target, arguments_json, &mut out)?;
    Ok(out.freeze())
}

/// As [`encode_invocation_json_args`], appending to `out` (nothing is appended on error).
pub fn encode_invocation_json_args_into(
    p: HubProtocol,
    target: &str,
    arguments_json: &[u8],
    out: &mut BytesMut,
) -> Result<(), ProtocolError> {
    if target.is_empty() {
        return Err(ProtocolError::invalid(
            "Null or empty target for Invocation message.",
        ));
    }
    match p {
        HubProtocol::Json => json::encode_invocation_json_args_into(target, arguments_json, out),
        HubProtocol::MessagePack => {
            msgpack::encode_invocation_json_args_into(target, arguments_json, out)
        }
    }
}

/// Checks a message the way the JS client checks what it receives (`JsonHubProtocol.ts`,
/// `MessagePackHubProtocol.ts`), returning the JS client's error text. A server must never send a
/// message that fails this: the JS client would drop the connection.
///
/// It rejects an empty target, an empty-string invocation id (`Some("")`) on an Invocation and an
/// empty id on StreamItem, Completion and CancelInvocation. Everything else our encoders write
/// is accepted by the JS client (they always write `item`, never write both `result` and `error`,
/// and write ids as strings).
pub fn validate_for_js_client(msg: &HubMessage) -> Result<(), ProtocolError> {
    match msg {
        HubMessage::Invocation(inv) | HubMessage::StreamInvocation(inv)
            if inv.target.is_empty() || inv.invocation_id.as_deref() == Some("") =>
        {
            return Err(ProtocolError::invalid(
                "Invalid payload for Invocation message.",
            ));
        }
        HubMessage::StreamItem(item) if item.invocation_id.is_empty() => {
            return Err(ProtocolError::invalid(
                "Invalid payload for StreamItem message.",
            ));
        }
        HubMessage::Completion(c) if c.invocation_id.is_empty() => {
            return Err(ProtocolError::invalid(
                "Invalid payload for Completion message.",
            ));
        }
        HubMessage::CancelInvocation(c) if c.invocation_id.is_empty() => {
            return Err(ProtocolError::invalid(
                "Invalid payload for CancelInvocation message.",
            ));
        }
        _ => {}
    }
    Ok(())
}

/// Where decoded raw values come from: a borrowed slice (values are copied) or a shared `Bytes`
/// buffer (values are zero-copy sub-slices).
#[derive(Clone, Copy)]
pub(crate) enum Source<'a> {
    /// Copy values out.
    Slice(&'a [u8]),
    /// Slice values out of the shared buffer.
    Shared(&'a Bytes),
}

impl<'a> Source<'a> {
    /// The whole input.
    pub(crate) fn bytes(&self) -> &'a [u8] {
        match *self {
            Self::Slice(s) => s,
            Self::Shared(b) => b.as_ref(),
        }
    }

    /// An owned handle on `sub`, which must lie inside [`bytes`](Self::bytes) (it is copied
    /// otherwise, never a panic).
    pub(crate) fn bytes_of(&self, sub: &[u8]) -> Bytes {
        if let Self::Shared(buf) = *self {
            let base = buf.as_ptr() as usize;
            let start = (sub.as_ptr() as usize).wrapping_sub(base);
            if let Some(end) = start.checked_add(sub.len())
                && end <= buf.len()
            {
                return buf.slice(start..end);
            }
        }
        Bytes::copy_from_slice(sub)
    }
}

/// An output buffer the writers and transcoders append to: `Vec<u8>` or `BytesMut`.
pub trait ByteSink {
    /// Appends bytes.
    fn put(&mut self, bytes: &[u8]);
    /// Appends one byte.
    fn put_byte(&mut self, byte: u8);
    /// How many bytes the buffer holds.
    fn written(&self) -> usize;
    /// The buffer's contents, mutable (used to patch headers written after their contents).
    fn contents_mut(&mut self) -> &mut [u8];
    /// Shortens the buffer to `len` bytes (used to undo a failed write).
    fn truncate_to(&mut self, len: usize);
}

impl ByteSink for Vec<u8> {
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
    fn put_byte(&mut self, byte: u8) {
        self.push(byte);
    }
    fn written(&self) -> usize {
        self.len()
    }
    fn contents_mut(&mut self) -> &mut [u8] {
        self.as_mut_slice()
    }
    fn truncate_to(&mut self, len: usize) {
        self.truncate(len);
    }
}

impl ByteSink for BytesMut {
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
    fn put_byte(&mut self, byte: u8) {
        self.extend_from_slice(&[byte]);
    }
    fn written(&self) -> usize {
        self.len()
    }
    fn contents_mut(&mut self) -> &mut [u8] {
        self.as_mut()
    }
    fn truncate_to(&mut self, len: usize) {
        self.truncate(len);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_names() {
        assert_eq!(HubProtocol::from_name("json"), Some(HubProtocol::Json));
        assert_eq!(HubProtocol::from_name("JSON"), Some(HubProtocol::Json));
        assert_eq!(
            HubProtocol::from_name("MessagePack"),
            Some(HubProtocol::MessagePack)
        );
        assert_eq!(HubProtocol::from_name("msgpack"), None);
        assert_eq!(HubProtocol::Json.name(), "json");
        assert_eq!(HubProtocol::MessagePack.name(), "messagepack");
        assert!(HubProtocol::MessagePack.is_binary());
        assert!(!HubProtocol::Json.is_binary());
    }

    #[test]
    fn ping_frames_match_the_encoders() {
        for p in [HubProtocol::Json, HubProtocol::MessagePack] {
            assert_eq!(&p.encode(&HubMessage::Ping).unwrap()[..], ping_frame(p));
        }
    }

    #[test]
    fn json_args_invocation() {
        let json = encode_invocation_json_args(HubProtocol::Json, "send", b" [1,\"a\"] ").unwrap();
        assert_eq!(
            &json[..],
            b"{\"type\":1,\"target\":\"send\",\"arguments\":[1,\"a\"]}\x1e"
        );
        let mp =
            encode_invocation_json_args(HubProtocol::MessagePack, "send", b"[1,\"a\"]").unwrap();
        assert_eq!(&mp[..], b"\x0e\x96\x01\x80\xc0\xa4send\x92\x01\xa1a\x90");
        for p in [HubProtocol::Json, HubProtocol::MessagePack] {
            assert!(encode_invocation_json_args(p, "send", b"{}").is_err());
            assert!(encode_invocation_json_args(p, "send", b"[1").is_err());
            assert!(encode_invocation_json_args(p, "", b"[]").is_err());
            let decoded = p
                .decode(&encode_invocation_json_args(p, "t", b"[]").unwrap(), 1024)
                .unwrap()
                .unwrap();
            assert!(matches!(decoded.message, Some(HubMessage::Invocation(_))));
        }
    }

    #[test]
    fn shared_decode_is_zero_copy() {
        let buf = Bytes::from_static(b"{\"type\":2,\"invocationId\":\"1\",\"item\":[1,2,3]}\x1e");
        let decoded = HubProtocol::Json.decode_bytes(&buf, 1024).unwrap().unwrap();
        let Some(HubMessage::StreamItem(item)) = decoded.message else {
            panic!("not an item")
        };
        let RawValue::Json(raw) = item.item else {
            panic!("not JSON")
        };
        assert_eq!(&raw[..], b"[1,2,3]");
        let offset = buf.len() - b"[1,2,3]}\x1e".len();
        assert_eq!(raw.as_ptr(), buf[offset..].as_ptr());
    }

    #[test]
    fn scanned_decoding_matches_plain_decoding_byte_by_byte() {
        for p in [HubProtocol::Json, HubProtocol::MessagePack] {
            let mut stream = encode_invocation_json_args(p, "t", b"[1,\"two\"]")
                .unwrap()
                .to_vec();
            stream.extend_from_slice(&p.encode(&HubMessage::Ping).unwrap());
            let (mut buf, mut scan, mut plain, mut scanned) =
                (Vec::new(), RecordScan::default(), Vec::new(), Vec::new());
            for &byte in stream.iter() {
                buf.push(byte);
                while let Some(d) = p.decode_scanned(&buf, 1024, &mut scan).unwrap() {
                    assert_eq!(Ok(Some(d.clone())), p.decode(&buf, 1024));
                    scanned.push(d.message);
                    buf.drain(..d.consumed);
                }
            }
            let mut rest = &stream[..];
            while let Some(d) = p.decode(rest, 1024).unwrap() {
                plain.push(d.message);
                rest = &rest[d.consumed..];
            }
            assert_eq!(scanned, plain, "{}", p.name());
            assert_eq!(scanned.len(), 2);
        }
        // The size limit holds for scanned input too.
        let mut scan = RecordScan::default();
        assert_eq!(
            HubProtocol::Json.decode_scanned(&[b' '; 17], 16, &mut scan),
            Err(ProtocolError::MessageTooLarge { max: 16 })
        );
    }

    #[test]
    fn oversize_messages_fail_before_they_are_complete() {
        let too_large = Err(ProtocolError::MessageTooLarge { max: 16 });
        // JSON: 17 bytes and no separator yet.
        assert_eq!(HubProtocol::Json.decode(&[b' '; 17], 16), too_large);
        assert_eq!(HubProtocol::Json.decode(&[b' '; 16], 16), Ok(None));
        // MessagePack: the prefix announces 17 bytes; none of the body has arrived.
        assert_eq!(HubProtocol::MessagePack.decode(&[17], 16), too_large);
        assert_eq!(HubProtocol::MessagePack.decode(&[16], 16), Ok(None));
        assert_eq!(
            ProtocolError::MessageTooLarge { max: 16 }.to_string(),
            "The maximum message size of 16B was exceeded."
        );
    }

    #[test]
    fn js_client_checks() {
        let inv = |id: Option<&str>, target: &str| {
            HubMessage::Invocation(Invocation {
                headers: vec![],
                invocation_id: id.map(str::to_owned),
                target: target.to_owned(),
                arguments: RawValue::Json(Bytes::from_static(b"[]")),
                stream_ids: vec![],
            })
        };
        assert!(validate_for_js_client(&inv(None, "a")).is_ok());
        assert!(validate_for_js_client(&inv(Some("1"), "a")).is_ok());
        assert!(validate_for_js_client(&inv(Some(""), "a")).is_err());
        assert!(validate_for_js_client(&inv(None, "")).is_err());
        assert!(validate_for_js_client(&HubMessage::Ping).is_ok());
    }
}
