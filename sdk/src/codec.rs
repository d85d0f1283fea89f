//! Typed values ⇄ hub-protocol raw values, for the SDK: serde types become JSON text
//! (`serde_json`) or MessagePack bytes (`rmp-serde`, structs as maps keyed by field name, like
//! the .NET serializer) and back; argument lists become framed Invocations, once per protocol,
//! in the payload maps of the service protocol (`docs/protocol.md#payload-maps`).
//!
//! This module owns no I/O and no state. The envelope codecs are the crate's own
//! ([`HubProtocol::encode`]); only argument values, results and stream items pass through serde.

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::protocol::service::Payloads;
use crate::protocol::{
    Completion, CompletionOutcome, HubMessage, HubProtocol, Invocation, RawValue, StreamItem,
};

use super::SdkError;

/// The protocols every multicast payload map carries, in this order.
pub(crate) const PROTOCOLS: [HubProtocol; 2] = [HubProtocol::Json, HubProtocol::MessagePack];

/// Serialises one value in `protocol`'s encoding.
pub(crate) fn to_raw<T: Serialize + ?Sized>(
    protocol: HubProtocol,
    value: &T,
) -> Result<RawValue, SdkError> {
    match protocol {
        HubProtocol::Json => serde_json::to_vec(value)
            .map(|v| RawValue::Json(Bytes::from(v)))
            .map_err(|e| SdkError::Serialize(e.to_string())),
        HubProtocol::MessagePack => {
            let mut buf = Vec::new();
            value
                .serialize(&mut rmp_serde::Serializer::new(&mut buf).with_struct_map())
                .map_err(|e| SdkError::Serialize(e.to_string()))?;
            Ok(RawValue::MessagePack(Bytes::from(buf)))
        }
    }
}

/// Deserialises one value from its raw encoding. The error text is serde's.
pub(crate) fn from_raw<T: DeserializeOwned>(raw: &RawValue) -> Result<T, String> {
    match raw {
        RawValue::Json(text) => serde_json::from_slice(text).map_err(|e| e.to_string()),
        RawValue::MessagePack(bytes) => rmp_serde::from_slice(bytes).map_err(|e| e.to_string()),
    }
}

/// Deserialises an argument list (a JSON / MessagePack array) into `A`, usually a tuple.
///
/// An empty array also binds to `()` (serde reads `()` from null only).
pub(crate) fn decode_args<A: DeserializeOwned>(raw: &RawValue) -> Result<A, String> {
    match from_raw::<A>(raw) {
        Ok(args) => Ok(args),
        Err(err) => {
            let empty = match raw {
                RawValue::Json(text) => {
                    let t = text.trim_ascii();
                    t.first() == Some(&b'[') && t[1..].trim_ascii() == b"]"
                }
                RawValue::MessagePack(bytes) => bytes.as_ref() == [0x90],
            };
            if empty {
                let null = match raw {
                    RawValue::Json(_) => RawValue::Json(Bytes::from_static(b"null")),
                    RawValue::MessagePack(_) => RawValue::MessagePack(Bytes::from_static(&[0xc0])),
                };
                from_raw::<A>(&null).map_err(|_| err)
            } else {
                Err(err)
            }
        }
    }
}

/// Serialises an argument list: a tuple (or anything serialising as a sequence) is the list
/// itself, `()` means no arguments, any other value is the single argument.
pub(crate) fn args_to_raw<T: Serialize + ?Sized>(
    protocol: HubProtocol,
    args: &T,
) -> Result<RawValue, SdkError> {
    Ok(match to_raw(protocol, args)? {
        RawValue::Json(text) => {
            let t = text.trim_ascii_start();
            if t.first() == Some(&b'[') {
                RawValue::Json(text)
            } else if t.trim_ascii_end() == b"null" {
                RawValue::Json(Bytes::from_static(b"[]"))
            } else {
                let mut wrapped = Vec::with_capacity(text.len() + 2);
                wrapped.push(b'[');
                wrapped.extend_from_slice(&text);
                wrapped.push(b']');
                RawValue::Json(Bytes::from(wrapped))
            }
        }
        RawValue::MessagePack(bytes) => match bytes.first() {
            Some(0x90..=0x9f | 0xdc | 0xdd) => RawValue::MessagePack(bytes),
            Some(0xc0) => RawValue::MessagePack(Bytes::from_static(&[0x90])),
            _ => {
                let mut wrapped = Vec::with_capacity(bytes.len() + 1);
                wrapped.push(0x91);
                wrapped.extend_from_slice(&bytes);
                RawValue::MessagePack(Bytes::from(wrapped))
            }
        },
    })
}

/// The framed Invocation of `target` with `args` in `protocol` (`invocation_id` set for a
/// client-result call).
pub(crate) fn invocation_frame<T: Serialize + ?Sized>(
    protocol: HubProtocol,
    target: &str,
    invocation_id: Option<&str>,
    args: &T,
) -> Result<Bytes, SdkError> {
    if target.is_empty() {
        return Err(SdkError::Serialize(
            "the target of an invocation must not be empty".into(),
        ));
    }
    let msg = HubMessage::Invocation(Invocation {
        headers: Vec::new(),
        invocation_id: invocation_id.map(str::to_owned),
        target: target.to_owned(),
        arguments: args_to_raw(protocol, args)?,
        stream_ids: Vec::new(),
    });
    Ok(protocol.encode(&msg)?)
}

/// The payload map of an Invocation: one framed message per protocol, serialised once each.
pub(crate) fn invocation_payloads<T: Serialize + ?Sized>(
    target: &str,
    invocation_id: Option<&str>,
    args: &T,
) -> Result<Payloads, SdkError> {
    PROTOCOLS
        .iter()
        .map(|p| {
            Ok((
                p.name().to_owned(),
                invocation_frame(*p, target, invocation_id, args)?,
            ))
        })
        .collect()
}

/// The framed Completion of `invocation_id`.
pub(crate) fn completion_frame(
    protocol: HubProtocol,
    invocation_id: &str,
    outcome: CompletionOutcome,
) -> Result<Bytes, SdkError> {
    let msg = HubMessage::Completion(Completion {
        headers: Vec::new(),
        invocation_id: invocation_id.to_owned(),
        outcome,
    });
    Ok(protocol.encode(&msg)?)
}

/// The framed StreamItem of `invocation_id`.
pub(crate) fn stream_item_frame(
    protocol: HubProtocol,
    invocation_id: &str,
    item: RawValue,
) -> Result<Bytes, SdkError> {
    let msg = HubMessage::StreamItem(StreamItem {
        headers: Vec::new(),
        invocation_id: invocation_id.to_owned(),
        item,
    });
    Ok(protocol.encode(&msg)?)
}

/// The framed Close message, in every protocol (for a client whose protocol is not known here).
pub(crate) fn close_payloads(
    error: Option<&str>,
    allow_reconnect: bool,
) -> Result<Payloads, SdkError> {
    let msg = HubMessage::Close(crate::protocol::Close {
        error: error.map(str::to_owned),
        allow_reconnect,
    });
    PROTOCOLS
        .iter()
        .map(|p| Ok((p.name().to_owned(), p.encode(&msg)?)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct Point {
        x: i32,
        label: String,
    }

    fn json(raw: &RawValue) -> &[u8] {
        match raw {
            RawValue::Json(t) => t,
            RawValue::MessagePack(_) => panic!("not JSON"),
        }
    }

    fn mp(raw: &RawValue) -> &[u8] {
        match raw {
            RawValue::MessagePack(b) => b,
            RawValue::Json(_) => panic!("not MessagePack"),
        }
    }

    #[test]
    fn argument_lists() {
        fn j<T: Serialize>(v: &T) -> RawValue {
            args_to_raw(HubProtocol::Json, v).unwrap()
        }
        fn m<T: Serialize>(v: &T) -> RawValue {
            args_to_raw(HubProtocol::MessagePack, v).unwrap()
        }
        assert_eq!(json(&j(&("a", 1))), br#"["a",1]"#);
        assert_eq!(json(&j(&())), b"[]");
        assert_eq!(json(&j(&"solo")), br#"["solo"]"#);
        assert_eq!(json(&j(&(vec![1, 2],))), b"[[1,2]]");
        assert_eq!(mp(&m(&("a", 1))), b"\x92\xa1a\x01");
        assert_eq!(mp(&m(&())), b"\x90");
        assert_eq!(mp(&m(&7u8)), b"\x91\x07");
        // Structs are maps keyed by field name, as .NET writes them.
        let p = Point {
            x: 1,
            label: "p".into(),
        };
        assert_eq!(mp(&m(&(&p,))), b"\x91\x82\xa1x\x01\xa5label\xa1p");
    }

    #[test]
    fn decoding_arguments() {
        let raw = RawValue::Json(Bytes::from_static(br#"[{"x":3,"label":"q"}, 5]"#));
        let (p, n): (Point, u32) = decode_args(&raw).unwrap();
        assert_eq!((p.x, p.label.as_str(), n), (3, "q", 5));
        assert!(decode_args::<(String,)>(&raw).is_err());
        assert!(decode_args::<(Point, u32, u32)>(&raw).is_err());
        let () = decode_args(&RawValue::Json(Bytes::from_static(b" [ ] "))).unwrap();
        let () = decode_args(&RawValue::MessagePack(Bytes::from_static(b"\x90"))).unwrap();
        assert!(decode_args::<()>(&RawValue::Json(Bytes::from_static(b"[1]"))).is_err());
        // MessagePack: maps (the .NET and JS form) and arrays both bind a struct.
        let raw = RawValue::MessagePack(Bytes::from_static(b"\x92\x82\xa1x\x01\xa5label\xa1p\x02"));
        let (p, n): (Point, i64) = decode_args(&raw).unwrap();
        assert_eq!((p.x, n), (1, 2));
        let raw = RawValue::MessagePack(Bytes::from_static(b"\x92\xa1a\xa1b"));
        assert!(decode_args::<(String,)>(&raw).is_err());
        assert!(decode_args::<(u32, u32)>(&raw).is_err());
    }

    #[test]
    fn payload_maps() {
        let payloads = invocation_payloads("newMessage", None, &("bob", 2)).unwrap();
        assert_eq!(payloads[0].0, "json");
        assert_eq!(
            &payloads[0].1[..],
            b"{\"type\":1,\"target\":\"newMessage\",\"arguments\":[\"bob\",2]}\x1e"
        );
        assert_eq!(payloads[1].0, "messagepack");
        let decoded = HubProtocol::MessagePack
            .decode(&payloads[1].1, 1 << 20)
            .unwrap()
            .unwrap();
        let Some(HubMessage::Invocation(inv)) = decoded.message else {
            panic!("not an invocation")
        };
        assert_eq!(inv.target, "newMessage");
        assert_eq!(mp(&inv.arguments), b"\x92\xa3bob\x02");
        assert!(invocation_payloads("", None, &()).is_err());
    }
}
