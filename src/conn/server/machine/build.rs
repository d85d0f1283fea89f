//! The pieces the hub-server connection machine builds its answers from: hub operations out of
//! message fields, the handshake answer, Acks and the GroupMemberQuery payload. Pure functions.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::HubOp;
use crate::close::CloseReason;
use crate::hub::{Member, MembershipTtl, Scope, SerializedMessage};
use crate::id::ConnectionId;
use crate::protocol::service::{Extensions, ServiceMessage};

/// The HandshakeResponse: an empty error message when accepted.
pub(super) fn handshake_response(error: Option<&str>) -> ServiceMessage {
    ServiceMessage::HandshakeResponse {
        error_message: Some(error.unwrap_or("").to_owned()),
        extensions: Extensions::default(),
        connection_id: None,
    }
}

/// An Ack without payload.
pub(crate) fn ack(ack_id: i32, status: i32) -> ServiceMessage {
    ServiceMessage::Ack {
        ack_id,
        status,
        message: None,
        extensions: Extensions::default(),
        payload: None,
    }
}

pub(super) fn shared(payloads: &[(String, Bytes)]) -> Arc<SerializedMessage> {
    Arc::new(SerializedMessage::from_payload_map(payloads))
}

pub(super) fn ids(list: &[String]) -> Vec<ConnectionId> {
    list.iter()
        .map(|s| ConnectionId::from(s.as_str()))
        .collect()
}

pub(super) fn join(connection_id: &str, group: String) -> HubOp {
    HubOp::AddToGroup(connection_id.into(), group.into())
}

pub(super) fn leave(connection_id: &str, group: Option<String>) -> HubOp {
    let id = ConnectionId::from(connection_id);
    match group {
        Some(g) => HubOp::RemoveFromGroup(id, g.into()),
        None => HubOp::RemoveFromAllGroups(id),
    }
}

pub(super) fn user_join(user: String, group: String, ext: &Extensions) -> HubOp {
    HubOp::AddUserToGroup(user.into(), group.into(), ttl_of(ext))
}

pub(super) fn user_leave(user: String, group: Option<String>) -> HubOp {
    match group {
        Some(g) => HubOp::RemoveUserFromGroup(user.into(), g.into()),
        None => HubOp::RemoveUserFromAllGroups(user.into()),
    }
}

pub(super) fn close_many(scope: Scope, excluded: &[String], reason: Option<String>) -> HubOp {
    HubOp::CloseConnections(scope, ids(excluded), CloseReason::ByApplication(reason))
}

pub(super) fn ttl_of(ext: &Extensions) -> MembershipTtl {
    match ext.ttl {
        None => MembershipTtl::Unlimited,
        Some(t) if t <= 0 => MembershipTtl::CurrentConnectionsOnly,
        Some(t) => MembershipTtl::For(Duration::from_secs(t as u64)),
    }
}

/// The GroupMemberQuery answer: `[[[connectionId, userId|nil], …], continuationToken|nil]`.
pub(super) fn group_members_payload(members: &[Member]) -> Bytes {
    let mut out = Vec::with_capacity(16 + members.len() * 32);
    // Writing MessagePack into a Vec cannot fail.
    let _ = rmp::encode::write_array_len(&mut out, 2);
    let _ = rmp::encode::write_array_len(&mut out, members.len() as u32);
    for m in members {
        let _ = rmp::encode::write_array_len(&mut out, 2);
        let _ = rmp::encode::write_str(&mut out, m.connection_id.as_str());
        match &m.user_id {
            Some(u) => {
                let _ = rmp::encode::write_str(&mut out, u.as_str());
            }
            None => {
                let _ = rmp::encode::write_nil(&mut out);
            }
        }
    }
    let _ = rmp::encode::write_nil(&mut out);
    Bytes::from(out)
}
