//! The hub actor's side of a cluster: publishing its operations, asking the other nodes, and
//! applying what they publish to this node's connections (see [`crate::cluster`]).

use std::sync::Arc;

use tokio::time::Instant;

use super::Hub;
use super::fanout::{Tally, deliver};
use crate::close::CloseReason;
use crate::cluster::wire::{HubOp, Query, WireScope};
use crate::hub::{ExistsQuery, GroupName, HubName, Scope, SerializedMessage, UserId};
use crate::id::ConnectionId;

impl Hub {
    /// A hub server's `ClientInvocation` from another node, for a client of this node: as the
    /// server connection does for its own clients, the client's router (when it is another app
    /// server) learns of the invocation, and the client gets it. Whether the client is here.
    pub(super) fn invoke_here(&self, frame: &bytes::Bytes) -> bool {
        use crate::protocol::service::{self, ServiceMessage};
        let Ok(Some((
            Some(ServiceMessage::ClientInvocation {
                invocation_id,
                connection_id,
                caller_server_id,
                payloads,
                ..
            }),
            _,
        ))) = service::decode(frame, usize::MAX)
        else {
            return false;
        };
        let Some(entry) = self
            .connections
            .get(&ConnectionId::from(connection_id.as_str()))
        else {
            return false;
        };
        let conn = &entry.conn;
        if let Some(router) = conn.server().filter(|r| r.server_id() != caller_server_id) {
            conn.track_invocation(invocation_id, caller_server_id);
            let _ = router.try_send_frame(frame.clone());
        }
        let msg = SerializedMessage::from_payload_map(&payloads);
        let mut t = Tally::default();
        deliver(conn, &msg, &mut t, self.direct);
        self.count(t);
        true
    }

    /// Publish a hub message to the other nodes (in a cluster).
    pub(super) fn publish(&self, op: impl FnOnce() -> HubOp) {
        if let Some(cluster) = &self.settings.cluster {
            cluster.publish_message(self.name.as_str(), op());
        }
    }

    /// Answer `found` when it is true or there is no cluster; else ask the other nodes.
    pub(super) fn answer_or_ask(
        &self,
        found: bool,
        reply: crate::hub::Answer<bool>,
        query: impl FnOnce() -> Query,
    ) {
        match &self.settings.cluster {
            Some(cluster) if !found => {
                crate::hub::cluster::ask_bool(cluster, &self.name, query(), reply)
            }
            _ => {
                let _ = reply.send(Ok(found));
            }
        }
    }

    /// An operation from another node: applied to this node's connections, never published.
    pub(super) fn remote(&mut self, origin: String, op: HubOp) {
        match op {
            HubOp::SendAll { msg, excluded } => {
                self.send_all(&SerializedMessage::from_wire(msg), &ids(excluded));
            }
            HubOp::SendConnection { id, msg } => {
                self.send_connection(&ConnectionId::from(id), &SerializedMessage::from_wire(msg));
            }
            HubOp::SendUsers { users, msg } => {
                let users: Vec<UserId> = users.into_iter().map(UserId::from).collect();
                self.send_users(&users, &SerializedMessage::from_wire(msg));
            }
            HubOp::SendGroup {
                group,
                msg,
                excluded,
                excluded_users,
            } => {
                let excluded_users: Vec<UserId> =
                    excluded_users.into_iter().map(UserId::from).collect();
                self.send_group(
                    &GroupName::from(group),
                    &SerializedMessage::from_wire(msg),
                    &ids(excluded),
                    &excluded_users,
                );
            }
            HubOp::SendGroups { groups, msg } => {
                let groups: Vec<GroupName> = groups.into_iter().map(GroupName::from).collect();
                self.send_groups(&groups, &SerializedMessage::from_wire(msg));
            }
            HubOp::CloseConnections {
                scope,
                excluded,
                reason,
            } => {
                let scope = match scope {
                    WireScope::All => Scope::All,
                    WireScope::User(u) => Scope::User(UserId::from(u)),
                    WireScope::Group(g) => Scope::Group(GroupName::from(g)),
                };
                self.close_connections(&scope, &ids(excluded), &CloseReason::ByApplication(reason));
            }
            HubOp::UserJoined {
                user,
                group,
                expires_ms,
                unlimited,
            } => {
                let ttl = crate::hub::cluster::ttl_from_wire(expires_ms, unlimited);
                if let Some(ttl) = ttl {
                    self.add_user_to_group(
                        UserId::from(user),
                        GroupName::from(group),
                        ttl,
                        Instant::now(),
                    );
                }
            }
            HubOp::UserLeft { user, group } => {
                self.remove_user_from_group(&UserId::from(user), &GroupName::from(group));
            }
            HubOp::UserLeftAll { user } => self.remove_user_from_all_groups(&UserId::from(user)),
            HubOp::SendToServer { server_id, frame } => {
                // The node of a linked connection delivers it there itself.
                self.send_to_server(&server_id, &frame, true);
            }
            HubOp::ServerUp { conn, server_id } => self.add_link(origin, conn, server_id, false),
            HubOp::ServerDraining { conn } => self.link_draining(&origin, conn),
            HubOp::ServerDown { conn } => self.drop_link(&origin, conn),
            HubOp::Relay { conn, frames } => self.relay_here(conn, frames),
            HubOp::ConnectionData { id, payload } => {
                self.connection_data(&ConnectionId::from(id), payload);
            }
            HubOp::Query { request, query } => {
                let answer = self.answer_query(query);
                if let Some(cluster) = &self.settings.cluster {
                    cluster.answer(&origin, request, answer);
                }
            }
        }
    }

    /// This node's answer to another node's question (acting on it where it asks to).
    pub(super) fn answer_query(&mut self, query: Query) -> crate::cluster::wire::Answer {
        use crate::cluster::wire::Answer;
        let now = Instant::now();
        match query {
            Query::AddToGroup { id, group } => {
                Answer::Bool(self.join(&ConnectionId::from(id), GroupName::from(group)))
            }
            Query::RemoveFromGroup { id, group } => {
                let id = ConnectionId::from(id);
                let existed = self.connections.contains_key(&id);
                self.leave(&id, &GroupName::from(group));
                Answer::Bool(existed)
            }
            Query::RemoveFromAllGroups { id } => {
                Answer::Bool(self.remove_from_all_groups(&ConnectionId::from(id)))
            }
            Query::CloseConnection { id, reason } => {
                Answer::Bool(self.close_connection(&ConnectionId::from(id), reason))
            }
            Query::ConnectionExists { id } => {
                Answer::Bool(self.exists(&ExistsQuery::Connection(ConnectionId::from(id)), now))
            }
            Query::UserExists { user } => {
                Answer::Bool(self.exists(&ExistsQuery::User(UserId::from(user)), now))
            }
            Query::GroupExists { group } => {
                Answer::Bool(self.exists(&ExistsQuery::Group(GroupName::from(group)), now))
            }
            Query::UserInGroup { user, group } => Answer::Bool(self.exists(
                &ExistsQuery::UserInGroup(UserId::from(user), GroupName::from(group)),
                now,
            )),
            Query::ClientInvocation { frame } => Answer::Bool(self.invoke_here(&frame)),
            Query::Servers => Answer::Servers(self.local_servers()),
            Query::GroupMembers { group } => Answer::Members(
                self.group_members(&GroupName::from(group))
                    .into_iter()
                    .map(|m| {
                        (
                            m.connection_id.as_str().to_owned(),
                            m.user_id.map(|u| u.as_str().to_owned()),
                        )
                    })
                    .collect(),
            ),
        }
    }

    /// Memberships read from the engine for a newly registered connection.
    pub(super) fn apply_remembered(
        &mut self,
        id: &ConnectionId,
        groups: Vec<(GroupName, i64, bool)>,
    ) {
        let Some(user) = self
            .connections
            .get(id)
            .and_then(|e| e.conn.user().cloned())
        else {
            return;
        };
        let now = Instant::now();
        for (group, expires_ms, unlimited) in groups {
            if let Some(ttl) = crate::hub::cluster::ttl_from_wire(Some(expires_ms), unlimited) {
                self.add_user_to_group(user.clone(), group, ttl, now);
            }
        }
    }
}

/// Ids as strings, for the wire.
pub(super) fn strings<T: AsRef<str>>(items: &[T]) -> Vec<String> {
    items.iter().map(|i| i.as_ref().to_owned()).collect()
}

pub(super) fn ids(items: Vec<String>) -> Vec<ConnectionId> {
    items.into_iter().map(ConnectionId::from).collect()
}

/// Unsubscribes the hub's cluster channel when the actor ends, however it ends.
pub(super) struct ClusterSubscription(
    pub(super) Option<Arc<crate::cluster::Cluster>>,
    pub(super) HubName,
);

impl Drop for ClusterSubscription {
    fn drop(&mut self) {
        if let Some(cluster) = &self.0 {
            cluster.hub_stopped(self.1.as_str());
        }
    }
}
