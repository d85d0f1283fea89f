//! What nodes say to each other over the engine (sans-IO): one [`Envelope`] per engine
//! message, MessagePack-encoded after a version byte.
//!
//! A hub message crosses the bus in the form it arrived in — a target with JSON arguments (REST)
//! or the per-protocol payloads a hub server gave — so that each receiving node encodes it at
//! most once per protocol, as the sending node does.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// The first byte of every message: the wire version. A node drops messages of another version
/// (counted), so that a rolling upgrade that changes the wire is visible, not misparsed.
pub(crate) const VERSION: u8 = 1;

/// One message between nodes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct Envelope {
    /// The sending node's id.
    pub origin: String,
    /// What it says.
    pub body: Body,
}

/// The kinds of messages.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) enum Body {
    /// An operation on a hub, published on the hub's channel to every node running it.
    Hub {
        /// The hub (canonical name).
        hub: String,
        /// The operation.
        op: HubOp,
    },
    /// The answer of one node to a [`HubOp::Query`], published on the asking node's channel.
    Reply {
        /// The query's id on the asking node.
        request: u64,
        /// The answer.
        answer: Answer,
    },
    /// "I am alive", published on the control channel every heartbeat interval.
    Heartbeat,
    /// "I am stopping": other nodes treat the sender as gone at once.
    Leaving,
}

/// A hub message as it crosses the bus.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) enum WireMessage {
    /// A non-blocking invocation with JSON arguments.
    Invocation {
        /// Target.
        target: String,
        /// Arguments as a JSON array.
        arguments_json: Bytes,
    },
    /// Framed messages per protocol.
    Payloads {
        /// JSON form.
        json: Option<Bytes>,
        /// MessagePack form.
        messagepack: Option<Bytes>,
    },
}

/// Operations on a hub that every node running it applies to its own connections.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) enum HubOp {
    /// Broadcast except `excluded`.
    SendAll {
        /// Message.
        msg: WireMessage,
        /// Connection ids to skip.
        excluded: Vec<String>,
    },
    /// Send to one connection.
    SendConnection {
        /// Connection id.
        id: String,
        /// Message.
        msg: WireMessage,
    },
    /// Send to the connections of users.
    SendUsers {
        /// Users.
        users: Vec<String>,
        /// Message.
        msg: WireMessage,
    },
    /// Send to a group except some connections and users.
    SendGroup {
        /// Group.
        group: String,
        /// Message.
        msg: WireMessage,
        /// Connection ids to skip.
        excluded: Vec<String>,
        /// Users to skip.
        excluded_users: Vec<String>,
    },
    /// Send to several groups (a connection in several gets it once).
    SendGroups {
        /// Groups.
        groups: Vec<String>,
        /// Message.
        msg: WireMessage,
    },
    /// Close the connections of a scope except `excluded`.
    CloseConnections {
        /// Which connections.
        scope: WireScope,
        /// Connection ids to keep.
        excluded: Vec<String>,
        /// The application's reason (REST `reason`), `None` for none.
        reason: Option<String>,
    },
    /// A user joined a group: its connections on every node join; `expires_ms` (ms since the
    /// Unix epoch) is when a remembered membership ends, `None` for current connections only.
    UserJoined {
        /// User.
        user: String,
        /// Group.
        group: String,
        /// End of the remembered membership.
        expires_ms: Option<i64>,
        /// The membership has no ttl (counts toward `max_user_groups_without_ttl`).
        unlimited: bool,
    },
    /// A user left a group (its connections leave; its membership is forgotten).
    UserLeft {
        /// User.
        user: String,
        /// Group.
        group: String,
    },
    /// A user left every group.
    UserLeftAll {
        /// User.
        user: String,
    },
    /// An encoded service frame for a connection of app server `server_id` (a client-result
    /// completion going back to its caller): the first node with one delivers it.
    SendToServer {
        /// The app server's id.
        server_id: String,
        /// The encoded frame.
        frame: Bytes,
    },
    /// A connection of an app server that carries clients (Default or OnDemand) is connected
    /// to the sending node: nodes without one route clients to it ([`HubOp::Relay`]).
    ServerUp {
        /// The connection's id on the sending node.
        conn: u64,
        /// The app server's id.
        server_id: String,
    },
    /// The connection is shutting down: it keeps its clients and takes no new ones.
    ServerDraining {
        /// The connection's id on the sending node.
        conn: u64,
    },
    /// The connection is gone: the clients routed to it are closed.
    ServerDown {
        /// The connection's id on the sending node.
        conn: u64,
    },
    /// Encoded service frames (OpenConnection, ConnectionData, CloseConnection, …) of clients of
    /// the sending node for the receiving node's hub-server connection `conn`; published on the
    /// receiving node's channel.
    Relay {
        /// The connection's id on the receiving node.
        conn: u64,
        /// The frames, in order.
        frames: Vec<Bytes>,
    },
    /// A hub server's `ConnectionData` for a client routed to it from another node: the bytes
    /// in the client's own protocol (the first is its handshake answer).
    ConnectionData {
        /// Connection id.
        id: String,
        /// The bytes.
        payload: Bytes,
    },
    /// A question every node answers on the asking node's channel.
    Query {
        /// Id on the asking node.
        request: u64,
        /// The question.
        query: Query,
    },
}

/// A scope of connections.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) enum WireScope {
    /// The whole hub.
    All,
    /// A user's connections.
    User(String),
    /// A group's connections.
    Group(String),
}

/// Questions about connections that only the node holding them can answer (and act on).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) enum Query {
    /// Add the connection to a group: whether it exists.
    AddToGroup {
        /// Connection id.
        id: String,
        /// Group.
        group: String,
    },
    /// Remove the connection from a group: whether it exists.
    RemoveFromGroup {
        /// Connection id.
        id: String,
        /// Group.
        group: String,
    },
    /// Remove the connection from all its groups: whether it exists.
    RemoveFromAllGroups {
        /// Connection id.
        id: String,
    },
    /// Close the connection: whether it existed.
    CloseConnection {
        /// Connection id.
        id: String,
        /// The application's reason.
        reason: Option<String>,
    },
    /// Whether the connection exists.
    ConnectionExists {
        /// Connection id.
        id: String,
    },
    /// Whether any connection of the user exists.
    UserExists {
        /// User.
        user: String,
    },
    /// Whether any connection is in the group.
    GroupExists {
        /// Group.
        group: String,
    },
    /// Whether a connection of the user is in the group.
    UserInGroup {
        /// User.
        user: String,
        /// Group.
        group: String,
    },
    /// The connections in a group.
    GroupMembers {
        /// Group.
        group: String,
    },
    /// Deliver a hub server's `ClientInvocation` (the encoded frame) to its client: whether
    /// the client is here.
    ClientInvocation {
        /// The encoded service frame.
        frame: Bytes,
    },
    /// The connections of app servers that carry clients on each node.
    Servers,
}

/// A hub-server connection that carries clients, as a node describes its own.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ServerInfo {
    /// The node it is connected to.
    pub node: String,
    /// Its id on that node.
    pub conn: u64,
    /// The app server's id.
    pub server_id: String,
    /// Shutting down: it takes no new clients.
    pub draining: bool,
}

/// One node's answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) enum Answer {
    /// Yes or no.
    Bool(bool),
    /// Group members: (connection id, user id).
    Members(Vec<(String, Option<String>)>),
    /// Hub-server connections.
    Servers(Vec<ServerInfo>),
}

/// Why bytes from the bus were not a message.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DecodeError {
    /// Empty, or of another wire version.
    #[error("cluster message of wire version {0:?}, expected {VERSION}")]
    Version(Option<u8>),
    /// Not a valid envelope.
    #[error("malformed cluster message: {0}")]
    Malformed(#[from] rmp_serde::decode::Error),
}

/// Encode an envelope.
pub(crate) fn encode(envelope: &Envelope) -> Bytes {
    let mut out = vec![VERSION];
    // Writing to a Vec fails only on a value serde cannot represent; every field here can.
    if rmp_serde::encode::write(&mut out, envelope).is_err() {
        out.truncate(1);
    }
    Bytes::from(out)
}

/// Decode an envelope.
pub(crate) fn decode(bytes: &[u8]) -> Result<Envelope, DecodeError> {
    match bytes.split_first() {
        Some((&VERSION, rest)) => Ok(rmp_serde::from_slice(rest)?),
        Some((&v, _)) => Err(DecodeError::Version(Some(v))),
        None => Err(DecodeError::Version(None)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes_round_trip_and_foreign_versions_are_refused() {
        let samples = [
            Body::Hub {
                hub: "chat".into(),
                op: HubOp::SendGroup {
                    group: "g".into(),
                    msg: WireMessage::Payloads {
                        json: Some(Bytes::from_static(b"{\"type\":1}\x1e")),
                        messagepack: None,
                    },
                    excluded: vec!["c1".into()],
                    excluded_users: vec![],
                },
            },
            Body::Hub {
                hub: "chat".into(),
                op: HubOp::Query {
                    request: 7,
                    query: Query::UserInGroup {
                        user: "u".into(),
                        group: "g".into(),
                    },
                },
            },
            Body::Reply {
                request: u64::MAX,
                answer: Answer::Members(vec![("c".into(), None), ("d".into(), Some("u".into()))]),
            },
            Body::Heartbeat,
            Body::Leaving,
        ];
        for body in samples {
            let env = Envelope {
                origin: "node-a".into(),
                body,
            };
            let bytes = encode(&env);
            assert_eq!(bytes[0], VERSION);
            assert_eq!(decode(&bytes).unwrap(), env);
            let mut other = bytes.to_vec();
            other[0] = VERSION + 1;
            assert!(matches!(decode(&other), Err(DecodeError::Version(Some(_)))));
            assert!(matches!(
                decode(&bytes[..bytes.len() / 2]),
                Err(DecodeError::Malformed(_))
            ));
        }
        assert!(matches!(decode(b""), Err(DecodeError::Version(None))));
    }
}
