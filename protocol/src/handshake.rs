//! The SignalR handshake (`HandshakeProtocol.cs`): the client's `{"protocol":…,"version":…}` +
//! 0x1E request and the server's `{}` / `{"error":…}` + 0x1E response. Always JSON text, whatever
//! hub protocol is being chosen. This module owns parsing and writing both, the protocol/version
//! choice with the .NET failure texts, and the client-side response checks (used by the load
//! generator and tests).
//!
//! Parsing follows .NET: only the first JSON value before the separator is read, property order is
//! free, unknown properties are skipped, duplicate keys → last wins, escapes are honoured. The
//! bytes after the separator are not touched: they are ordinary hub messages.

use bytes::{BufMut, Bytes, BytesMut};

use super::HubProtocol;
use super::framing::{self, RECORD_SEPARATOR, RecordScan};
use super::json::{self, ObjectError, raw_int, raw_str, write_json_string};

/// The success response: exactly `{}` + 0x1E.
pub const RESPONSE_OK: &[u8] = b"{}\x1e";

/// The `{"error":…}` text for a malformed request (bad JSON, missing fields), as .NET writes it.
/// With detailed errors on, .NET appends ` InvalidDataException: <parser message>`; see
/// [`HandshakeError::response_text`].
pub const UNEXPECTED_ERROR: &str = "An unexpected error occurred during connection handshake.";

/// The .NET text for a handshake that did not complete in time or grew past the maximum message
/// size without a separator.
pub const HANDSHAKE_CANCELED: &str = "Handshake was canceled.";

/// A parsed handshake request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HandshakeRequest {
    /// The requested hub protocol name, as sent (see [`HubProtocol::from_name`]).
    pub protocol: String,
    /// The requested protocol version (JS sends 2 with stateful reconnect, 1 otherwise).
    pub version: i64,
}

/// A malformed handshake message. `Display` is the parser message (.NET's
/// `InvalidDataException.Message`, e.g. `Missing required property 'protocol'. Message content: {}`).
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum HandshakeError {
    /// The message could not be parsed.
    #[error("{0}")]
    InvalidData(String),
}

impl HandshakeError {
    /// The text a server puts in the `{"error":…}` response for this failure: the generic .NET
    /// text, followed by ` InvalidDataException: <message>` when `detailed` errors are enabled.
    pub fn response_text(&self, detailed: bool) -> String {
        if detailed {
            format!("{UNEXPECTED_ERROR} InvalidDataException: {self}")
        } else {
            UNEXPECTED_ERROR.to_owned()
        }
    }
}

fn invalid(text: impl Into<String>) -> HandshakeError {
    HandshakeError::InvalidData(text.into())
}

fn object_error(err: ObjectError<String>) -> HandshakeError {
    match err {
        ObjectError::NotAnObject(token) => invalid(json::not_an_object_text(token)),
        ObjectError::Syntax => invalid("Error reading JSON."),
        ObjectError::Property(text) => invalid(text),
    }
}

/// Parses the handshake request at the start of `buf`.
///
/// `Ok(None)` while there is no 0x1E yet (keep reading, within the handshake timeout and the
/// maximum message size — past either, answer [`HANDSHAKE_CANCELED`]). Otherwise the request and
/// the number of bytes it used, separator included; everything after it belongs to the hub
/// protocol. Errors carry the exact .NET parser texts.
pub fn parse_request(buf: &[u8]) -> Result<Option<(HandshakeRequest, usize)>, HandshakeError> {
    parse_request_scanned(buf, &mut RecordScan::default())
}

/// As [`parse_request`], for a buffer that grows between calls: `scan` remembers where the
/// search for the separator stopped, so a request arriving a byte at a time costs linear time.
pub fn parse_request_scanned(
    buf: &[u8],
    scan: &mut RecordScan,
) -> Result<Option<(HandshakeRequest, usize)>, HandshakeError> {
    let Some((body, consumed)) = scan.next_record(buf) else {
        return Ok(None);
    };
    let mut protocol = None;
    let mut version = None;
    json::for_each_property(body, |key, raw| {
        match key {
            "protocol" => protocol = Some(raw_str(raw, "protocol")?.into_owned()),
            "version" => version = raw_int(raw, "version", i32::MIN.into(), i32::MAX.into())?,
            _ => {}
        }
        Ok(())
    })
    .map_err(object_error)?;
    let content = || String::from_utf8_lossy(body);
    let Some(protocol) = protocol else {
        return Err(invalid(format!(
            "Missing required property 'protocol'. Message content: {}",
            content()
        )));
    };
    let Some(version) = version else {
        return Err(invalid(format!(
            "Missing required property 'version'. Message content: {}",
            content()
        )));
    };
    Ok(Some((HandshakeRequest { protocol, version }, consumed)))
}

/// Chooses the hub protocol for a parsed request, with the .NET failure texts (to be sent with
/// [`error_response`]): unknown protocol, unsupported version (.NET accepts `version <= 2`), or a
/// binary protocol on a transport without the Binary transfer format (SSE).
pub fn select_protocol(
    request: &HandshakeRequest,
    binary_supported: bool,
) -> Result<HubProtocol, String> {
    let Some(protocol) = HubProtocol::from_name(&request.protocol) else {
        return Err(format!(
            "The protocol '{}' is not supported.",
            request.protocol
        ));
    };
    if request.version > protocol.max_version() {
        return Err(format!(
            "The server does not support version {} of the '{}' protocol.",
            request.version, request.protocol
        ));
    }
    if protocol.is_binary() && !binary_supported {
        return Err(format!(
            "Cannot use the '{}' protocol on the current transport. The transport does not support 'Binary' transfer format.",
            protocol.name()
        ));
    }
    Ok(protocol)
}

/// The failure response `{"error":"<text>"}` + 0x1E, with JSON escaping.
pub fn error_response(error: &str) -> Bytes {
    let mut out = BytesMut::with_capacity(error.len() + 16);
    out.put_slice(b"{\"error\":");
    write_json_string(error, &mut out);
    out.put_slice(b"}\x1e");
    out.freeze()
}

/// The request a client sends: `{"protocol":"<name>","version":<n>}` + 0x1E.
pub fn encode_request(protocol: &str, version: i64) -> Bytes {
    let mut out = BytesMut::with_capacity(protocol.len() + 32);
    out.put_slice(b"{\"protocol\":");
    write_json_string(protocol, &mut out);
    out.put_slice(b",\"version\":");
    json::write_i64(version, &mut out);
    out.put_slice(b"}\x1e");
    out.freeze()
}

/// Client side: parses the handshake response at the start of `buf` the way the .NET client does.
///
/// `Ok(None)` while there is no 0x1E yet; otherwise the server's error (`None` on success) and
/// the bytes used, separator included. A message with a `type` property is not a handshake
/// response (`Expected a handshake response from the server.`); `error` must be a string.
pub fn parse_response(buf: &[u8]) -> Result<Option<(Option<String>, usize)>, HandshakeError> {
    let Some((body, consumed)) = framing::next_text_record(buf) else {
        return Ok(None);
    };
    let mut error = None;
    json::for_each_property(body, |key, raw| {
        match key {
            "type" => return Err("Expected a handshake response from the server.".to_owned()),
            "error" => error = Some(raw_str(raw, "error")?.into_owned()),
            _ => {}
        }
        Ok(())
    })
    .map_err(object_error)?;
    Ok(Some((error, consumed)))
}

/// Client side, JS semantics: the response must be wholly inside the first transport frame the
/// client receives. A frame without 0x1E fails with the JS client's `Message is incomplete.`
/// Returns the server's error and the bytes used; the rest of the frame holds hub messages.
pub fn parse_response_in_frame(frame: &[u8]) -> Result<(Option<String>, usize), HandshakeError> {
    if !frame.contains(&RECORD_SEPARATOR) {
        return Err(invalid("Message is incomplete."));
    }
    parse_response(frame)?.ok_or_else(|| invalid("Message is incomplete."))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_and_trailing_bytes() {
        let buf = b"{\"protocol\":\"json\",\"version\":1}\x1e{\"type\":6}\x1e";
        let (req, used) = parse_request(buf).unwrap().unwrap();
        assert_eq!(
            req,
            HandshakeRequest {
                protocol: "json".into(),
                version: 1
            }
        );
        assert_eq!(&buf[used..], b"{\"type\":6}\x1e");
        assert_eq!(parse_request(b"{\"protocol\":\"json\"").unwrap(), None);
        assert_eq!(&encode_request("json", 1)[..], &buf[..used]);
    }

    #[test]
    fn third_party_shapes() {
        // signalrcore: spaces and version 0.
        let (req, _) = parse_request(b"{\"protocol\": \"json\", \"version\": 0}\x1e")
            .unwrap()
            .unwrap();
        assert_eq!(select_protocol(&req, true), Ok(HubProtocol::Json));
        let err = parse_request(b"{\"protocol\":\"json\",\"version\":null}\x1e").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("Missing required property 'version'.")
        );
    }

    #[test]
    fn protocol_selection_texts() {
        let req = |p: &str, v| HandshakeRequest {
            protocol: p.into(),
            version: v,
        };
        assert_eq!(
            select_protocol(&req("MessagePack", 2), true),
            Ok(HubProtocol::MessagePack)
        );
        assert_eq!(
            select_protocol(&req("foo", 1), true).unwrap_err(),
            "The protocol 'foo' is not supported."
        );
        assert_eq!(
            select_protocol(&req("json", 3), true).unwrap_err(),
            "The server does not support version 3 of the 'json' protocol."
        );
        assert_eq!(
            select_protocol(&req("messagepack", 1), false).unwrap_err(),
            "Cannot use the 'messagepack' protocol on the current transport. The transport does not support 'Binary' transfer format."
        );
    }

    #[test]
    fn responses() {
        assert_eq!(
            &error_response("a \"b\"")[..],
            b"{\"error\":\"a \\\"b\\\"\"}\x1e"
        );
        assert_eq!(parse_response(RESPONSE_OK).unwrap(), Some((None, 3)));
        assert_eq!(
            parse_response(&error_response("x")).unwrap(),
            Some((Some("x".into()), 14))
        );
        assert_eq!(
            parse_response_in_frame(b"{}").unwrap_err().to_string(),
            "Message is incomplete."
        );
        let err = invalid("Missing required property 'protocol'. Message content: {}");
        assert_eq!(err.response_text(false), UNEXPECTED_ERROR);
        assert_eq!(
            err.response_text(true),
            "An unexpected error occurred during connection handshake. InvalidDataException: Missing required property 'protocol'. Message content: {}"
        );
    }
}
