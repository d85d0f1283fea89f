//! A message encoded once per hub protocol and shared by every recipient.
//!
//! The REST API builds a [`SerializedMessage`] from a target and JSON arguments; hub servers
//! (Default mode) hand over a payload map that already holds the bytes per protocol. The hub asks
//! for the bytes of each recipient's protocol; the first request encodes, later ones clone the
//! same `Bytes` (a reference-count bump). At most two encodings exist per message.

use std::sync::OnceLock;

use bytes::Bytes;

use crate::cluster::wire::WireMessage;
use crate::protocol::{self, HubProtocol};

#[derive(Debug)]
enum Source {
    /// A non-blocking invocation with arguments given as a JSON array.
    Invocation {
        target: String,
        arguments_json: Bytes,
    },
    /// Ready-made framed messages per protocol (a payload map).
    Payloads,
}

/// A hub message with lazily computed, shared encodings.
#[derive(Debug)]
pub struct SerializedMessage {
    source: Source,
    json: OnceLock<Option<Bytes>>,
    messagepack: OnceLock<Option<Bytes>>,
}

impl SerializedMessage {
    /// A non-blocking Invocation of `target` with `arguments_json` (a JSON array).
    pub fn invocation(target: impl Into<String>, arguments_json: Bytes) -> Self {
        Self {
            source: Source::Invocation {
                target: target.into(),
                arguments_json,
            },
            json: OnceLock::new(),
            messagepack: OnceLock::new(),
        }
    }

    /// Complete framed messages per protocol; a protocol without an entry cannot be delivered.
    pub fn from_payloads(json: Option<Bytes>, messagepack: Option<Bytes>) -> Self {
        Self {
            source: Source::Payloads,
            json: OnceLock::from(json),
            messagepack: OnceLock::from(messagepack),
        }
    }

    /// From a hub server's payload map (protocol name → framed message; names compared
    /// case-insensitively). Protocols other than `json` and `messagepack` are ignored.
    pub fn from_payload_map(payloads: &[(String, Bytes)]) -> Self {
        let find = |name: &str| {
            payloads
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.clone())
        };
        Self::from_payloads(find("json"), find("messagepack"))
    }

    /// The framed bytes for `protocol`, encoding them on first use. `None` when the message
    /// has no form in that protocol (it is then not delivered to such clients).
    pub fn bytes_for(&self, protocol: HubProtocol) -> Option<&Bytes> {
        let cell = match protocol {
            HubProtocol::Json => &self.json,
            HubProtocol::MessagePack => &self.messagepack,
        };
        cell.get_or_init(|| match &self.source {
            Source::Invocation {
                target,
                arguments_json,
            } => protocol::encode_invocation_json_args(protocol, target, arguments_json).ok(),
            Source::Payloads => None,
        })
        .as_ref()
    }

    /// The message as it crosses to other cluster nodes: the form it was made from.
    pub(crate) fn to_wire(&self) -> WireMessage {
        match &self.source {
            Source::Invocation {
                target,
                arguments_json,
            } => WireMessage::Invocation {
                target: target.clone(),
                arguments_json: arguments_json.clone(),
            },
            Source::Payloads => WireMessage::Payloads {
                json: self.json.get().cloned().flatten(),
                messagepack: self.messagepack.get().cloned().flatten(),
            },
        }
    }

    /// A message from another cluster node.
    pub(crate) fn from_wire(wire: WireMessage) -> Self {
        match wire {
            WireMessage::Invocation {
                target,
                arguments_json,
            } => Self::invocation(target, arguments_json),
            WireMessage::Payloads { json, messagepack } => Self::from_payloads(json, messagepack),
        }
    }
}
