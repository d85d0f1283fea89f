//! A hub's side of the cluster: what a hub actor publishes, asks and writes when its node is
//! part of a cluster (see [`crate::cluster`]).
//!
//! User-group memberships live in the engine, so that they outlive every node and reach
//! connections opened later anywhere: `{prefix}:ug:{hub}:{user}` holds memberships with a ttl
//! (member = group, score = expiry in ms since the Unix epoch) and `{prefix}:ugu:{hub}:{user}`
//! those without (score = when they were added; at most `max_user_groups_without_ttl`, the most
//! recent). A membership change is written and announced in one batch, so that every node that
//! hears the announcement can read the change.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::{Answer, ExistsQuery, HubSettings, Member, MembershipTtl, Scope};
use crate::cluster::engine::{Command, Reply};
use crate::cluster::node::empty_answer;
use crate::cluster::wire::{self, HubOp, Query, WireScope};
use crate::cluster::{Cluster, Unreachable};
use crate::id::{ConnectionId, GroupName, HubName, UserId};

/// How long a membership without ttl is remembered at most (Azure: one year).
const UNLIMITED_MS: i64 = 365 * 24 * 3600 * 1000;

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn ttl_key(cluster: &Cluster, hub: &HubName, user: &str) -> String {
    cluster.key("ug", hub.as_str(), user)
}

fn unlimited_key(cluster: &Cluster, hub: &HubName, user: &str) -> String {
    cluster.key("ugu", hub.as_str(), user)
}

/// The ttl a membership announced by another node (or read from the engine) has here: `None`
/// when it has already expired.
pub(super) fn ttl_from_wire(expires_ms: Option<i64>, unlimited: bool) -> Option<MembershipTtl> {
    match (expires_ms, unlimited) {
        (_, true) => Some(MembershipTtl::Unlimited),
        (None, false) => Some(MembershipTtl::CurrentConnectionsOnly),
        (Some(at), false) => {
            let left = at.saturating_sub(now_ms());
            (left > 0).then(|| MembershipTtl::For(Duration::from_millis(left.unsigned_abs())))
        }
    }
}

pub(super) fn wire_scope(scope: &Scope) -> WireScope {
    match scope {
        Scope::All => WireScope::All,
        Scope::User(u) => WireScope::User(u.as_str().to_owned()),
        Scope::Group(g) => WireScope::Group(g.as_str().to_owned()),
    }
}

/// Run `commands` (ending with an announcement) and answer once they ran.
fn acknowledged(cluster: &Cluster, commands: Vec<Command>, reply: Answer<()>) {
    let rx = cluster.batch(commands);
    tokio::spawn(async move {
        let result = match rx.await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(Unreachable::Engine(e.0)),
            Err(_) => Err(Unreachable::Engine("the cluster node stopped".into())),
        };
        let _ = reply.send(result);
    });
}

/// Publish an operation that must not be lost, answering once it is published.
pub(super) fn publish_acknowledged(
    cluster: &Arc<Cluster>,
    hub: &HubName,
    op: HubOp,
    reply: Answer<()>,
) {
    let publish = cluster.publish_command(hub.as_str(), op);
    acknowledged(cluster, vec![publish], reply);
}

/// Remember the membership in the engine and announce it.
pub(super) fn add_user_to_group(
    cluster: &Arc<Cluster>,
    hub: &HubName,
    user: &UserId,
    group: &GroupName,
    ttl: MembershipTtl,
    settings: &HubSettings,
    reply: Answer<()>,
) {
    let now = now_ms();
    let mut commands = Vec::new();
    let (expires_ms, unlimited) = match ttl {
        MembershipTtl::CurrentConnectionsOnly => (None, false),
        MembershipTtl::Unlimited => {
            commands.push(Command::SortedRemove {
                key: ttl_key(cluster, hub, user.as_str()),
                member: group.as_str().to_owned(),
            });
            commands.push(Command::SortedAdd {
                key: unlimited_key(cluster, hub, user.as_str()),
                member: group.as_str().to_owned(),
                score: now,
                expire_at_ms: now.saturating_add(UNLIMITED_MS),
            });
            commands.push(Command::SortedKeepHighest {
                key: unlimited_key(cluster, hub, user.as_str()),
                keep: settings.max_user_groups_without_ttl,
            });
            (Some(now.saturating_add(UNLIMITED_MS)), true)
        }
        MembershipTtl::For(d) => {
            let ms = i64::try_from(d.min(MembershipTtl::MAX).as_millis()).unwrap_or(i64::MAX);
            let at = now.saturating_add(ms);
            commands.push(Command::SortedRemove {
                key: unlimited_key(cluster, hub, user.as_str()),
                member: group.as_str().to_owned(),
            });
            commands.push(Command::SortedAdd {
                key: ttl_key(cluster, hub, user.as_str()),
                member: group.as_str().to_owned(),
                score: at,
                expire_at_ms: at,
            });
            (Some(at), false)
        }
    };
    commands.push(cluster.publish_command(
        hub.as_str(),
        HubOp::UserJoined {
            user: user.as_str().to_owned(),
            group: group.as_str().to_owned(),
            expires_ms,
            unlimited,
        },
    ));
    acknowledged(cluster, commands, reply);
}

/// Forget the membership (of one group, or of all with `None`) in the engine and announce it.
pub(super) fn remove_user_from_group(
    cluster: &Arc<Cluster>,
    hub: &HubName,
    user: &UserId,
    group: Option<&GroupName>,
    reply: Answer<()>,
) {
    let keys = [
        ttl_key(cluster, hub, user.as_str()),
        unlimited_key(cluster, hub, user.as_str()),
    ];
    let mut commands: Vec<Command> = match group {
        Some(g) => keys
            .into_iter()
            .map(|key| Command::SortedRemove {
                key,
                member: g.as_str().to_owned(),
            })
            .collect(),
        None => keys
            .into_iter()
            .map(|key| Command::Delete { key })
            .collect(),
    };
    let op = match group {
        Some(g) => HubOp::UserLeft {
            user: user.as_str().to_owned(),
            group: g.as_str().to_owned(),
        },
        None => HubOp::UserLeftAll {
            user: user.as_str().to_owned(),
        },
    };
    commands.push(cluster.publish_command(hub.as_str(), op));
    acknowledged(cluster, commands, reply);
}

/// Ask the other nodes a yes/no question this node answered with no.
pub(super) fn ask_bool(cluster: &Arc<Cluster>, hub: &HubName, query: Query, reply: Answer<bool>) {
    ask_bool_with(cluster, hub, query, Vec::new(), |_| None, reply);
}

fn ask_bool_with(
    cluster: &Arc<Cluster>,
    hub: &HubName,
    query: Query,
    extra: Vec<Command>,
    on_extra: fn(&[Reply]) -> Option<wire::Answer>,
    reply: Answer<bool>,
) {
    let local = empty_answer(&query);
    let rx = cluster.query(hub.as_str(), query, local, extra, on_extra);
    tokio::spawn(async move {
        let result = match rx.await {
            Ok(Ok(wire::Answer::Bool(b))) => Ok(b),
            Ok(Ok(wire::Answer::Members(m))) => Ok(!m.is_empty()),
            Ok(Ok(wire::Answer::Servers(s))) => Ok(!s.is_empty()),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(Unreachable::Engine("the cluster node stopped".into())),
        };
        let _ = reply.send(result);
    });
}

/// The hub-server connections of the other nodes (none when they cannot be asked).
pub(super) async fn ask_servers(cluster: &Arc<Cluster>, hub: &HubName) -> Vec<wire::ServerInfo> {
    let rx = cluster.query(
        hub.as_str(),
        Query::Servers,
        wire::Answer::Servers(Vec::new()),
        Vec::new(),
        |_| None,
    );
    match rx.await {
        Ok(Ok(wire::Answer::Servers(servers))) => servers,
        _ => Vec::new(),
    }
}

/// An existence check this node answered with no: ask the other nodes (and, for a user in a
/// group, the remembered memberships in the engine).
pub(super) fn ask_exists(
    cluster: &Arc<Cluster>,
    hub: &HubName,
    query: &ExistsQuery,
    reply: Answer<bool>,
) {
    match query {
        ExistsQuery::Connection(id) => ask_bool(
            cluster,
            hub,
            Query::ConnectionExists {
                id: id.as_str().to_owned(),
            },
            reply,
        ),
        ExistsQuery::User(u) => ask_bool(
            cluster,
            hub,
            Query::UserExists {
                user: u.as_str().to_owned(),
            },
            reply,
        ),
        ExistsQuery::Group(g) => ask_bool(
            cluster,
            hub,
            Query::GroupExists {
                group: g.as_str().to_owned(),
            },
            reply,
        ),
        ExistsQuery::UserInGroup(u, g) => {
            let extra = vec![
                Command::SortedScore {
                    key: ttl_key(cluster, hub, u.as_str()),
                    member: g.as_str().to_owned(),
                },
                Command::SortedScore {
                    key: unlimited_key(cluster, hub, u.as_str()),
                    member: g.as_str().to_owned(),
                },
            ];
            fn remembered(replies: &[Reply]) -> Option<wire::Answer> {
                let now = now_ms();
                let with_ttl = matches!(replies.first(), Some(Reply::Score(Some(at))) if *at > now);
                let without = matches!(replies.get(1), Some(Reply::Score(Some(_))));
                Some(wire::Answer::Bool(with_ttl || without))
            }
            ask_bool_with(
                cluster,
                hub,
                Query::UserInGroup {
                    user: u.as_str().to_owned(),
                    group: g.as_str().to_owned(),
                },
                extra,
                remembered,
                reply,
            );
        }
    }
}

/// A group listing: this node's members and every other node's, merged in connection-id order.
pub(super) fn ask_members(
    cluster: &Arc<Cluster>,
    hub: &HubName,
    group: &GroupName,
    local: Vec<Member>,
    reply: Answer<Vec<Member>>,
) {
    let local = wire::Answer::Members(
        local
            .into_iter()
            .map(|m| {
                (
                    m.connection_id.as_str().to_owned(),
                    m.user_id.map(|u| u.as_str().to_owned()),
                )
            })
            .collect(),
    );
    let query = Query::GroupMembers {
        group: group.as_str().to_owned(),
    };
    let rx = cluster.query(hub.as_str(), query, local, Vec::new(), |_| None);
    tokio::spawn(async move {
        let result = match rx.await {
            Ok(Ok(wire::Answer::Members(members))) => Ok(members
                .into_iter()
                .map(|(id, user)| Member {
                    connection_id: ConnectionId::from(id),
                    user_id: user.map(UserId::from),
                })
                .collect()),
            Ok(Ok(wire::Answer::Bool(_) | wire::Answer::Servers(_))) => Ok(Vec::new()),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(Unreachable::Engine("the cluster node stopped".into())),
        };
        let _ = reply.send(result);
    });
}

/// The remembered memberships of `user` in `hub`, read from the engine: (group, expiry in ms,
/// without ttl).
pub(crate) async fn read_remembered(
    cluster: &Cluster,
    hub: &HubName,
    user: &UserId,
) -> Result<Vec<(GroupName, i64, bool)>, Unreachable> {
    let now = now_ms();
    let rx = cluster.batch(vec![
        Command::SortedRangeFrom {
            key: ttl_key(cluster, hub, user.as_str()),
            min: now.saturating_add(1),
        },
        Command::SortedRangeFrom {
            key: unlimited_key(cluster, hub, user.as_str()),
            min: i64::MIN,
        },
    ]);
    let replies = match rx.await {
        Ok(Ok(replies)) => replies,
        Ok(Err(e)) => return Err(Unreachable::Engine(e.0)),
        Err(_) => return Err(Unreachable::Engine("the cluster node stopped".into())),
    };
    let mut out = Vec::new();
    if let Some(Reply::Members(with_ttl)) = replies.first() {
        out.extend(
            with_ttl
                .iter()
                .map(|(g, at)| (GroupName::from(g.as_str()), *at, false)),
        );
    }
    if let Some(Reply::Members(without)) = replies.get(1) {
        out.extend(without.iter().map(|(g, added)| {
            (
                GroupName::from(g.as_str()),
                added.saturating_add(UNLIMITED_MS),
                true,
            )
        }));
    }
    Ok(out)
}
