//! The hub messages of the SignalR hub protocol (`HubProtocol.md`), independent of their encoding.
//!
//! Argument values, stream items and completion results are opaque to a broker: they are kept as
//! [`RawValue`]s, the exact bytes they had on the wire, so that relaying a message never re-encodes
//! its payload. Only the envelope (type, ids, target, headers) is decoded.

use bytes::Bytes;

/// Hub message headers (types 1–5), in wire order. Duplicate keys are kept as they came.
pub type Headers = Vec<(String, String)>;

/// A value kept in the encoding it arrived in: JSON text or MessagePack bytes.
///
/// Invocation arguments are one `RawValue` holding the whole array (`[1,"Foo"]` in JSON,
/// `92 01 a3 46 6f 6f` in MessagePack).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RawValue {
    /// UTF-8 JSON text of exactly one JSON value.
    Json(Bytes),
    /// The bytes of exactly one MessagePack value.
    MessagePack(Bytes),
}

/// Type 1 (Invocation) and type 4 (StreamInvocation).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invocation {
    /// Headers, usually empty.
    pub headers: Headers,
    /// `None` for a non-blocking invocation (the callee must not answer). An empty string on the
    /// wire counts as `None` for type 1. Always `Some` for a StreamInvocation.
    pub invocation_id: Option<String>,
    /// The method name, case-sensitive.
    pub target: String,
    /// The whole argument array.
    pub arguments: RawValue,
    /// Upload stream ids; empty when there are none.
    pub stream_ids: Vec<String>,
}

/// Type 2.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamItem {
    /// Headers, usually empty.
    pub headers: Headers,
    /// The stream (or streaming invocation) this item belongs to.
    pub invocation_id: String,
    /// The item; may be a JSON `null` / MessagePack nil.
    pub item: RawValue,
}

/// What a Completion reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CompletionOutcome {
    /// A void method finished (MessagePack result kind 2, JSON with neither `result` nor `error`).
    Void,
    /// A method returned a value (which may be null).
    Result(RawValue),
    /// A method failed with this message.
    Error(String),
}

/// Type 3.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Completion {
    /// Headers, usually empty.
    pub headers: Headers,
    /// The invocation this completes.
    pub invocation_id: String,
    /// Void, a value or an error.
    pub outcome: CompletionOutcome,
}

/// Type 5.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CancelInvocation {
    /// Headers, usually empty.
    pub headers: Headers,
    /// The streaming invocation to cancel.
    pub invocation_id: String,
}

/// Type 7.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Close {
    /// Why the connection is closing; `None` for a normal close.
    pub error: Option<String>,
    /// Whether the client should reconnect automatically.
    pub allow_reconnect: bool,
}

/// One hub message, named after the `HubProtocol.md` section it implements.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HubMessage {
    /// Type 1: call a method.
    Invocation(Invocation),
    /// Type 2: one item of a stream.
    StreamItem(StreamItem),
    /// Type 3: the end of an invocation or stream.
    Completion(Completion),
    /// Type 4: call a streaming method.
    StreamInvocation(Invocation),
    /// Type 5: cancel a streaming invocation.
    CancelInvocation(CancelInvocation),
    /// Type 6: keep-alive.
    Ping,
    /// Type 7: the connection is closing.
    Close(Close),
    /// Type 8: stateful reconnect acknowledgement.
    Ack {
        /// Highest sequence id received.
        sequence_id: i64,
    },
    /// Type 9: stateful reconnect resume point.
    Sequence {
        /// Sequence id of the next message replayed.
        sequence_id: i64,
    },
}

impl HubMessage {
    /// The numeric message type written on the wire.
    pub fn type_id(&self) -> u8 {
        match self {
            Self::Invocation(_) => 1,
            Self::StreamItem(_) => 2,
            Self::Completion(_) => 3,
            Self::StreamInvocation(_) => 4,
            Self::CancelInvocation(_) => 5,
            Self::Ping => 6,
            Self::Close(_) => 7,
            Self::Ack { .. } => 8,
            Self::Sequence { .. } => 9,
        }
    }
}
