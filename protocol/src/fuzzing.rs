//! Entry points for the fuzz targets in `fuzz/` and for the test that replays their corpora
//! (`tests/fuzz_corpus.rs` of the broker); not a stable API.
//!
//! Each function takes arbitrary bytes and runs one parser of untrusted input on them, the way
//! the broker or a client calls it. Beyond "never panics", each checks properties that hold for
//! every input, by panicking when one does not (which the fuzzer reports as a crash):
//! what a decoder accepts re-encodes, and the encoding is stable after one round; the copying and
//! the zero-copy decoders agree; a decoder never reports more bytes consumed than it was given.
//! These functions hold no parsing logic of their own.
//!
//! Where a target needs more than one input (a size limit, a selector, several strings), it
//! takes them from the input itself: the first byte, or parts separated by NUL bytes
//! ([`parts`]), so that a corpus entry is still one file.

use bytes::{Bytes, BytesMut};

use crate::auth::{self, AccessKeys, Audience};
use crate::framing::{self, RECORD_SEPARATOR};
use crate::id::validate_hub_name;
use crate::service::{self, ServiceMessage};
use crate::{HubMessage, HubProtocol, handshake, negotiate};

/// Splits `data` at its first `N - 1` NUL bytes; missing parts are empty.
pub fn parts<const N: usize>(data: &[u8]) -> [&[u8]; N] {
    let mut out = [&data[..0]; N];
    let mut rest = data;
    for slot in out.iter_mut().take(N - 1) {
        match rest.iter().position(|&b| b == 0) {
            Some(i) => {
                *slot = &rest[..i];
                rest = &rest[i + 1..];
            }
            None => {
                *slot = rest;
                rest = &rest[rest.len()..];
            }
        }
    }
    out[N - 1] = rest;
    out
}

/// The first byte as a size limit (bit 7 set: 1 MiB, else 16 × the low bits, so that small
/// limits and the too-large paths are reached too) and the rest of the input.
fn size_limit(data: &[u8]) -> (usize, &[u8]) {
    match data.split_first() {
        None => (1 << 20, data),
        Some((&b, rest)) if b & 0x80 != 0 => (1 << 20, rest),
        Some((&b, rest)) => (usize::from(b) * 16, rest),
    }
}

// ---------------------------------------------------------------------------------------------
// Hub protocols

/// JSON hub messages as a client sends them: the first byte is the size limit, the rest a
/// stream of messages decoded one after the other (see [`hub_messages`]).
pub fn hub_json(data: &[u8]) {
    hub_messages(HubProtocol::Json, data);
}

/// MessagePack hub messages as a client sends them (see [`hub_messages`]).
pub fn hub_messagepack(data: &[u8]) {
    hub_messages(HubProtocol::MessagePack, data);
}

/// Decodes messages off the front of the input until it is used up or fails, with both
/// decoders (copying and zero-copy), which must agree; every decoded message re-encodes (see
/// [`check_reencoding`]). The input is also parsed whole as one unframed message body.
fn hub_messages(p: HubProtocol, data: &[u8]) {
    let (max, input) = size_limit(data);
    let shared = Bytes::copy_from_slice(input);
    let mut offset = 0;
    while offset < input.len() {
        let rest = &input[offset..];
        let copied = p.decode(rest, max);
        assert_eq!(copied, p.decode_bytes(&shared.slice(offset..), max));
        match copied {
            Ok(Some(decoded)) => {
                assert!(
                    decoded.consumed > 0 && decoded.consumed <= rest.len(),
                    "consumed {} of {}",
                    decoded.consumed,
                    rest.len()
                );
                if let Some(msg) = &decoded.message {
                    check_reencoding(p, msg);
                    let _ = crate::validate_for_js_client(msg);
                }
                offset += decoded.consumed;
            }
            Ok(None) | Err(_) => break,
        }
    }
    let unframed = match p {
        HubProtocol::Json => crate::json::parse_message(input),
        HubProtocol::MessagePack => crate::msgpack::parse_message(input),
    };
    if let Ok(Some(msg)) = unframed {
        check_reencoding(p, &msg);
    }
}

/// The other hub protocol.
fn other(p: HubProtocol) -> HubProtocol {
    match p {
        HubProtocol::Json => HubProtocol::MessagePack,
        HubProtocol::MessagePack => HubProtocol::Json,
    }
}

/// Decodes `framed`, which must be exactly one known message.
fn decode_one(p: HubProtocol, framed: &Bytes) -> HubMessage {
    match p.decode(framed, usize::MAX) {
        Ok(Some(decoded)) if decoded.consumed == framed.len() => decoded
            .message
            .unwrap_or_else(|| panic!("our own {p:?} encoding has an unknown type: {framed:?}")),
        other => panic!("our own {p:?} encoding {framed:?} does not decode whole: {other:?}"),
    }
}

/// A decoded message encodes in its own protocol; that encoding decodes back, and encoding the
/// result gives the same bytes (the encoders may normalise once, e.g. an empty error, never
/// twice). In the other protocol (payloads transcoded) encoding may fail, but what it writes
/// decodes, to a message of the same type, target and headers (unless a header or stream id is
/// empty, which MessagePack does not allow).
fn check_reencoding(p: HubProtocol, msg: &HubMessage) {
    let framed = p
        .encode(msg)
        .unwrap_or_else(|e| panic!("a decoded {p:?} message does not re-encode: {e}: {msg:?}"));
    let again = decode_one(p, &framed);
    let framed_again = p.encode(&again).expect("a re-decoded message encodes");
    assert_eq!(framed, framed_again, "{p:?} encoding is not stable");

    // MessagePack refuses empty header keys and values and empty stream ids, JSON accepts them
    // (both as .NET's); the broker never moves a client's message from one protocol to the other.
    let q = other(p);
    if q == HubProtocol::MessagePack && has_empty_strings(msg) {
        return;
    }
    if let Ok(cross) = q.encode(msg) {
        let crossed = decode_one(q, &cross);
        assert_eq!(envelope(msg), envelope(&crossed), "{p:?} → {q:?}");
    }
}

/// An empty header key or value, or an empty stream id.
fn has_empty_strings(msg: &HubMessage) -> bool {
    let (_, _, headers, stream_ids) = envelope(msg);
    headers.is_some_and(|h| h.iter().any(|(k, v)| k.is_empty() || v.is_empty()))
        || stream_ids.iter().any(String::is_empty)
}

/// What survives a change of protocol unchanged: type, target, headers and stream ids.
fn envelope(msg: &HubMessage) -> (u8, Option<&str>, Option<&crate::Headers>, &[String]) {
    match msg {
        HubMessage::Invocation(i) | HubMessage::StreamInvocation(i) => (
            msg.type_id(),
            Some(&i.target),
            Some(&i.headers),
            &i.stream_ids,
        ),
        HubMessage::StreamItem(i) => (msg.type_id(), None, Some(&i.headers), &[]),
        HubMessage::Completion(c) => (msg.type_id(), None, Some(&c.headers), &[]),
        HubMessage::CancelInvocation(c) => (msg.type_id(), None, Some(&c.headers), &[]),
        _ => (msg.type_id(), None, None, &[]),
    }
}

// ---------------------------------------------------------------------------------------------
// Handshake

/// The handshake request (server side) and response (client side). A parsed request re-encodes
/// to the same request; any error text survives `error_response` → `parse_response`.
pub fn handshake(data: &[u8]) {
    match handshake::parse_request(data) {
        Ok(Some((req, consumed))) => {
            assert!(consumed > 0 && consumed <= data.len());
            assert_eq!(data[consumed - 1], RECORD_SEPARATOR);
            let _ = handshake::select_protocol(&req, true);
            let _ = handshake::select_protocol(&req, false);
            let encoded = handshake::encode_request(&req.protocol, req.version);
            assert_eq!(
                handshake::parse_request(&encoded),
                Ok(Some((req, encoded.len())))
            );
        }
        Ok(None) => assert!(!data.contains(&RECORD_SEPARATOR)),
        Err(e) => {
            let _ = e.response_text(true);
        }
    }
    let _ = handshake::parse_response(data);
    let _ = handshake::parse_response_in_frame(data);

    let text = String::from_utf8_lossy(data);
    let response = handshake::error_response(&text);
    assert_eq!(
        handshake::parse_response(&response),
        Ok(Some((Some(text.into_owned()), response.len())))
    );
}

// ---------------------------------------------------------------------------------------------
// Framing

/// VarInt length prefixes, binary frames and text records: splitting the input into frames and
/// records (each split consumes something and stays inside the input) and writing each body back
/// (which splits to the same body).
pub fn framing(data: &[u8]) {
    if let Ok(Some((len, used))) = framing::read_varint(data) {
        assert!((1..=framing::MAX_VARINT_LEN).contains(&used));
        assert!(len <= framing::MAX_FRAME_LEN);
        assert!(framing::varint_len(len) <= used);
        let mut out = BytesMut::new();
        framing::write_varint(len, &mut out);
        assert_eq!(framing::read_varint(&out), Ok(Some((len, out.len()))));
        assert_eq!(out.len(), framing::varint_len(len));
    }

    let mut rest = data;
    while let Ok(Some((body, consumed))) = framing::next_binary_frame(rest) {
        assert!(consumed > 0 && consumed <= rest.len() && body.len() < consumed);
        assert_eq!(body, &rest[consumed - body.len()..consumed]);
        let mut out = BytesMut::new();
        framing::write_binary_frame(body, &mut out);
        assert_eq!(
            framing::next_binary_frame(&out),
            Ok(Some((body, out.len())))
        );
        rest = &rest[consumed..];
    }

    let mut rest = data;
    while let Some((record, consumed)) = framing::next_text_record(rest) {
        assert_eq!(consumed, record.len() + 1);
        assert!(!record.contains(&RECORD_SEPARATOR));
        assert_eq!(record, &rest[..record.len()]);
        let mut out = BytesMut::new();
        framing::write_text_record(record, &mut out);
        assert_eq!(framing::next_text_record(&out), Some((record, out.len())));
        rest = &rest[consumed..];
    }
    assert!(!rest.contains(&RECORD_SEPARATOR));
}

// ---------------------------------------------------------------------------------------------
// Service protocol

/// Service-protocol frames as a hub server sends them: the first byte is the frame size limit,
/// the rest frames decoded one after the other with both decoders (which must agree). Every
/// decoded message re-encodes stably (see `check_service_roundtrip`). The input is also parsed
/// whole as one unframed body.
pub fn service_protocol(data: &[u8]) {
    let (max, input) = size_limit(data);
    let shared = Bytes::copy_from_slice(input);
    let mut offset = 0;
    while offset < input.len() {
        let rest = &input[offset..];
        let copied = service::decode(rest, max);
        assert_eq!(copied, service::decode_bytes(&shared.slice(offset..), max));
        match copied {
            Ok(Some((msg, consumed))) => {
                assert!(consumed > 0 && consumed <= rest.len());
                if let Some(msg) = msg {
                    check_service_roundtrip(&msg);
                }
                offset += consumed;
            }
            Ok(None) | Err(_) => break,
        }
    }
    if let Ok(Some(msg)) = service::decode_body(input) {
        check_service_roundtrip(&msg);
    }
}

/// A decoded message encodes; that encoding decodes, and encoding the result gives the same bytes
/// (the writer may normalise once, e.g. a missing `target` written as `""`, never twice).
fn check_service_roundtrip(msg: &ServiceMessage) {
    let _ = (
        msg.type_id(),
        msg.type_name(),
        msg.extensions(),
        msg.ack_id(),
    );
    if let ServiceMessage::Ping { messages } = msg {
        let _ = service::ping_value(messages, "servers");
    }
    let framed = service::encode(msg);
    let again = match service::decode(&framed, usize::MAX) {
        Ok(Some((Some(again), consumed))) if consumed == framed.len() => again,
        other => panic!("our own service encoding {framed:?} does not decode: {other:?}"),
    };
    assert_eq!(
        service::encode(&again),
        framed,
        "service encoding is not stable: {msg:?} → {again:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Access-key tokens

/// The primary and secondary access keys tokens are checked against.
const KEYS: [&str; 2] = ["fuzz-primary-access-key", "fuzz-secondary-access-key"];
/// The clock the token checks run at (2023-11-14).
const NOW: u64 = 1_700_000_000;
/// The tolerated clock skew.
const SKEW: u64 = 30;

/// Access-key JWTs. The first byte selects: the audience kind (bits 0–1: client, server,
/// admin, REST), whether the token is taken as is (bit 2 clear: parts = token, hub or REST path)
/// or built and signed here from a raw header and claims text (bit 2 set: parts = header,
/// claims, hub or path; bit 3: HS512, bit 4: signed with the secondary key) so that the checks
/// after the signature are reached. A validated identity is consistent with the clock; a token
/// minted for a valid hub name validates.
pub fn jwt(data: &[u8]) {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let keys = AccessKeys::new(KEYS.iter().map(|k| (*k).to_owned()).collect());
    let [a, b, c] = parts::<3>(rest);
    let (token, target) = if selector & 0b100 == 0 {
        (String::from_utf8_lossy(a).into_owned(), b)
    } else {
        (signed_token(selector, a, b), c)
    };
    let target = String::from_utf8_lossy(target);
    let audience = match selector & 0b11 {
        0 => Audience::Client { hub: &target },
        1 => Audience::Server { hub: &target },
        2 => Audience::Admin,
        _ => Audience::Rest { path: &target },
    };
    if let Ok(identity) = keys.validate_at(&token, audience, NOW, SKEW) {
        assert!(identity.expires_at.saturating_add(SKEW) > NOW);
        if let Some(user) = &identity.user_id {
            assert!(!user.is_empty());
            assert!(identity.claims.iter().any(|(_, v)| v == user));
        }
        for (name, _) in &identity.claims {
            let _ = auth::dotnet_claim_type(name);
        }
    }
    let _ = auth::audience_base(&target);

    if validate_hub_name(&target).is_ok() {
        let user = String::from_utf8_lossy(a);
        let claims: &[(&str, &str)] = &[(auth::CLAIM_NAME_ID, &user)];
        for (aud, audience) in [
            (
                format!("http://localhost/client/?hub={target}"),
                Audience::Client { hub: &target },
            ),
            (
                format!("https://example.com/server/?hub={target}"),
                Audience::Server { hub: &target },
            ),
        ] {
            let minted = keys.mint(&aud, 60, claims);
            let identity = keys
                .validate(&minted, audience, SKEW)
                .unwrap_or_else(|e| panic!("a minted token for {aud} is refused: {e}"));
            assert_eq!(
                identity.user_id.as_deref(),
                Some(&*user).filter(|u| !u.is_empty())
            );
        }
    }
}

/// `base64url(header).base64url(claims).signature`, signed with one of [`KEYS`].
fn signed_token(selector: u8, header: &[u8], claims: &[u8]) -> String {
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use jsonwebtoken::{Algorithm, EncodingKey};

    let message = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(claims)
    );
    let alg = if selector & 0b1000 == 0 {
        Algorithm::HS256
    } else {
        Algorithm::HS512
    };
    let key = KEYS[usize::from(selector & 0b1_0000 != 0)];
    let signature = jsonwebtoken::crypto::sign(
        message.as_bytes(),
        &EncodingKey::from_secret(key.as_bytes()),
        alg,
    )
    .expect("HMAC signing cannot fail");
    format!("{message}.{signature}")
}

// ---------------------------------------------------------------------------------------------
// Negotiate

/// The negotiate query values (`negotiateVersion`, `useStatefulReconnect`) and, client side, a
/// negotiate response: what the parser accepts writes back out to text that parses to the same
/// response (unless it had an empty `url`, `error`, `connectionId` or `connectionToken`, which
/// the writer leaves out).
pub fn negotiate(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Ok(version) = negotiate::negotiate_version_from_query(Some(&text)) {
        assert!(version <= 1);
    }
    let _ = negotiate::stateful_reconnect_from_query(Some(&text));
    if let Ok(parsed) = negotiate::parse_negotiate_response(&text) {
        let _ = parsed.connect_id();
        let written = parsed.to_json();
        match negotiate::parse_negotiate_response(&written) {
            Ok(again) => assert_eq!(again.to_json(), written),
            // As .NET's, the parser takes a present `url`, `error`, `connectionId` or
            // `connectionToken`, even empty, as given, and the writer leaves empty strings out.
            Err(e) => assert!(
                parsed.url.as_deref() == Some("")
                    || parsed.error.as_deref() == Some("")
                    || parsed.connection_token.as_deref() == Some("")
                    || parsed.connection_id.as_deref() == Some(""),
                "{written} does not parse back: {e}"
            ),
        }
    }
}
