//! Just enough of engine.io v4 and the socket.io v5 packet format to subscribe over a WebSocket
//! (written from the protocol descriptions; no client library).
//!
//! Over the WebSocket transport every text frame is one engine.io packet: a type digit, then its
//! data. `0` open (JSON handshake: `sid`, `pingInterval`, `pingTimeout`, `maxPayload`), `1` close,
//! `2` ping (the server pings, the client answers `3` pong with the same data), `4` message, `5`
//! upgrade, `6` noop. A message carries a socket.io packet: a type digit (`0` connect, `1`
//! disconnect, `2` event, `3` ack, `4` connect error, `5` binary event, `6` binary ack), for the
//! binary types the attachment count and `-`, then `/namespace,` unless it is `/`, then the ack
//! id digits if any, then the JSON data (`["event", args…]` for an event).

use std::borrow::Cow;

/// The client's "connect to the main namespace" packet.
pub(crate) const CONNECT: &str = "40";

/// One engine.io packet, borrowed from its frame.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Packet<'a> {
    /// Handshake, with its JSON.
    Open(&'a str),
    /// The other side closes.
    Close,
    /// Ping, with its data (answered by a pong carrying the same data).
    Ping(&'a str),
    /// Pong, with its data.
    Pong(&'a str),
    /// A socket.io packet.
    Message(SioPacket<'a>),
    /// Transport upgrade.
    Upgrade,
    /// No operation.
    Noop,
}

/// socket.io packet types.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SioKind {
    /// `0`
    Connect,
    /// `1`
    Disconnect,
    /// `2`
    Event,
    /// `3`
    Ack,
    /// `4`
    ConnectError,
    /// `5`
    BinaryEvent,
    /// `6`
    BinaryAck,
}

/// One socket.io packet.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct SioPacket<'a> {
    /// Packet type.
    pub(crate) kind: SioKind,
    /// Namespace (`/` when absent).
    pub(crate) nsp: &'a str,
    /// Binary attachments that follow (binary types only).
    pub(crate) attachments: u64,
    /// Ack id.
    pub(crate) id: Option<u64>,
    /// JSON data (may be empty).
    pub(crate) data: &'a str,
}

/// Why a frame is not a packet.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Malformed(pub(crate) &'static str);

/// Parses one engine.io packet (one WebSocket text frame).
pub(crate) fn parse(frame: &str) -> Result<Packet<'_>, Malformed> {
    let mut chars = frame.chars();
    let kind = chars.next().ok_or(Malformed("empty frame"))?;
    let rest = chars.as_str();
    Ok(match kind {
        '0' => Packet::Open(rest),
        '1' => Packet::Close,
        '2' => Packet::Ping(rest),
        '3' => Packet::Pong(rest),
        '4' => Packet::Message(parse_sio(rest)?),
        '5' => Packet::Upgrade,
        '6' => Packet::Noop,
        _ => return Err(Malformed("unknown engine.io packet type")),
    })
}

/// Splits the leading ASCII digits off `s`.
fn digits(s: &str) -> (&str, &str) {
    let n = s.bytes().take_while(u8::is_ascii_digit).count();
    s.split_at(n)
}

/// Parses a socket.io packet (the data of an engine.io message).
pub(crate) fn parse_sio(s: &str) -> Result<SioPacket<'_>, Malformed> {
    let mut chars = s.chars();
    let kind = match chars.next().ok_or(Malformed("empty socket.io packet"))? {
        '0' => SioKind::Connect,
        '1' => SioKind::Disconnect,
        '2' => SioKind::Event,
        '3' => SioKind::Ack,
        '4' => SioKind::ConnectError,
        '5' => SioKind::BinaryEvent,
        '6' => SioKind::BinaryAck,
        _ => return Err(Malformed("unknown socket.io packet type")),
    };
    let mut rest = chars.as_str();
    let mut attachments = 0;
    if matches!(kind, SioKind::BinaryEvent | SioKind::BinaryAck) {
        let (n, after) = digits(rest);
        rest = after
            .strip_prefix('-')
            .filter(|_| !n.is_empty())
            .ok_or(Malformed("binary packet without an attachment count"))?;
        attachments = n.parse().map_err(|_| Malformed("attachment count"))?;
    }
    let mut nsp = "/";
    if rest.starts_with('/') {
        let (name, after) = match rest.find(',') {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, ""),
        };
        nsp = name;
        rest = after;
    }
    let (id, data) = digits(rest);
    let id = if id.is_empty() {
        None
    } else {
        Some(id.parse().map_err(|_| Malformed("ack id"))?)
    };
    Ok(SioPacket {
        kind,
        nsp,
        attachments,
        id,
        data,
    })
}

/// `(event name, first argument)` of an event whose first argument is a string, e.g.
/// `["msg","0:1:2:xx"]`. Borrows when nothing needed unescaping.
pub(crate) fn event_str_arg(data: &str) -> Option<(Cow<'_, str>, Cow<'_, str>)> {
    if let Ok((name, arg)) = serde_json::from_str::<(&str, &str)>(data) {
        return Some((Cow::Borrowed(name), Cow::Borrowed(arg)));
    }
    let v: serde_json::Value = serde_json::from_str(data).ok()?;
    let a = v.as_array()?;
    Some((
        Cow::Owned(a.first()?.as_str()?.to_owned()),
        Cow::Owned(a.get(1)?.as_str()?.to_owned()),
    ))
}

/// `pingInterval` and `pingTimeout` (ms) of an open packet's JSON.
pub(crate) fn open_timers(json: &str) -> Option<(u64, u64)> {
    let v: serde_json::Value = serde_json::from_str(json).ok()?;
    Some((
        v.get("pingInterval")?.as_u64()?,
        v.get("pingTimeout")?.as_u64()?,
    ))
}

/// The pong answering a ping with `data`.
pub(crate) fn pong(data: &str) -> String {
    format!("3{data}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sio<'a>(
        kind: SioKind,
        nsp: &'a str,
        attachments: u64,
        id: Option<u64>,
        data: &'a str,
    ) -> SioPacket<'a> {
        SioPacket {
            kind,
            nsp,
            attachments,
            id,
            data,
        }
    }

    #[test]
    fn engine_io_packets() {
        let open = r#"0{"sid":"lv_VI97HAXpY6yYWAAAC","upgrades":[],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}"#;
        let Ok(Packet::Open(json)) = parse(open) else {
            panic!("not an open packet");
        };
        assert_eq!(open_timers(json), Some((25000, 20000)));
        assert_eq!(parse("1"), Ok(Packet::Close));
        assert_eq!(parse("2"), Ok(Packet::Ping("")));
        assert_eq!(parse("2probe"), Ok(Packet::Ping("probe")));
        assert_eq!(pong("probe"), "3probe");
        assert_eq!(parse("3"), Ok(Packet::Pong("")));
        assert_eq!(parse("5"), Ok(Packet::Upgrade));
        assert_eq!(parse("6"), Ok(Packet::Noop));
        assert!(parse("").is_err());
        assert!(parse("7").is_err());
        assert!(parse("x").is_err());
        assert!(parse("4").is_err());
        assert!(parse("49").is_err());
    }

    #[test]
    fn socket_io_packets() {
        let p = |s| match parse(s) {
            Ok(Packet::Message(m)) => m,
            other => panic!("{s}: {other:?}"),
        };
        assert_eq!(p("40"), sio(SioKind::Connect, "/", 0, None, ""));
        assert_eq!(
            p(r#"40{"sid":"wZX3oN0bSVIhsaknAAAI"}"#),
            sio(
                SioKind::Connect,
                "/",
                0,
                None,
                r#"{"sid":"wZX3oN0bSVIhsaknAAAI"}"#
            )
        );
        assert_eq!(p("41"), sio(SioKind::Disconnect, "/", 0, None, ""));
        assert_eq!(
            p("41/admin,"),
            sio(SioKind::Disconnect, "/admin", 0, None, "")
        );
        assert_eq!(
            p(r#"42["msg","0:1:2:xx"]"#),
            sio(SioKind::Event, "/", 0, None, r#"["msg","0:1:2:xx"]"#)
        );
        assert_eq!(
            p(r#"42/admin,13["msg",1]"#),
            sio(SioKind::Event, "/admin", 0, Some(13), r#"["msg",1]"#)
        );
        assert_eq!(p("4312[]"), sio(SioKind::Ack, "/", 0, Some(12), "[]"));
        assert_eq!(
            p(r#"44{"message":"Not authorized"}"#),
            sio(
                SioKind::ConnectError,
                "/",
                0,
                None,
                r#"{"message":"Not authorized"}"#
            )
        );
        assert_eq!(
            p(r#"451-["up",{"_placeholder":true,"num":0}]"#),
            sio(
                SioKind::BinaryEvent,
                "/",
                1,
                None,
                r#"["up",{"_placeholder":true,"num":0}]"#
            )
        );
        assert_eq!(
            p(r#"462-/ns,7[{"_placeholder":true,"num":0}]"#),
            sio(
                SioKind::BinaryAck,
                "/ns",
                2,
                Some(7),
                r#"[{"_placeholder":true,"num":0}]"#
            )
        );
        assert!(parse("45[]").is_err(), "binary event without a count");
        assert!(parse("45x-[]").is_err());
    }

    #[test]
    fn event_arguments() {
        let (name, arg) = event_str_arg(r#"["msg","0:1:2:xx"]"#).expect("event");
        assert!(matches!(name, Cow::Borrowed("msg")));
        assert!(matches!(arg, Cow::Borrowed("0:1:2:xx")));
        // Escapes force a copy but still parse.
        let (_, arg) = event_str_arg(r#"["msg","a\"b\u00e9"]"#).expect("event");
        assert_eq!(arg, "a\"bé");
        // Extra arguments are ignored.
        let (_, arg) = event_str_arg(r#"["msg","x",{"y":1}]"#).expect("event");
        assert_eq!(arg, "x");
        assert_eq!(event_str_arg(r#"["msg",1]"#), None);
        assert_eq!(event_str_arg(r#"["msg"]"#), None);
        assert_eq!(event_str_arg("{}"), None);
        assert_eq!(event_str_arg(""), None);
    }
}
