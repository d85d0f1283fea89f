//! The embedding API's hub client: what an application that runs the broker in-process uses to
//! reach its clients — the operations of the REST API and of the management client
//! (`switchboard_sdk::management::ManagementHub`), with the same method names and argument
//! shapes, but as direct calls on the hub actor (no HTTP, no token).
//!
//! This file owns checking names (Azure's rules, [`crate::id`]) and turning `impl Serialize`
//! arguments into a [`SerializedMessage`], once per call. It must not reach into the hub actor's
//! command enum or its state: it only calls the typed methods of [`HubHandle`], and it adds no
//! behaviour of its own beyond validation (what a send or a close does is the hub's business).
//!
//! ```no_run
//! # async fn demo(handle: &switchboard::SwitchboardHandle) -> Result<(), switchboard::HubClientError> {
//! let chat = handle.hub("chat")?;
//! chat.send_all("newMessage", ("server", "hi"), &[]).await?;
//! chat.add_user_to_group("alice", "admins", None).await?;
//! chat.send_group("admins", "notice", ("maintenance at 10:00",), &[]).await?;
//! if !chat.user_exists("bob").await? {
//!     chat.send_user("alice", "offline", ("bob",)).await?;
//! }
//! # Ok(()) }
//! ```

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::close::CloseReason;
use crate::hub::{
    ExistsQuery, HubError, HubGone, HubHandle, HubRegistry, Member, MembershipTtl, Scope,
    SerializedMessage, TooManyHubs, canonical_hub_name,
};
use crate::id::{
    ConnectionId, GroupName, HubName, InvalidName, UserId, validate_group_name, validate_hub_name,
    validate_user_id,
};

/// Why a [`HubClient`] operation was refused or failed. Nothing is sent when an operation
/// fails with one of these.
#[derive(Debug, thiserror::Error)]
pub enum HubClientError {
    /// A hub name, group name, user id, connection id or target that the service refuses
    /// (Azure's rules; the text says which).
    #[error(transparent)]
    InvalidName(#[from] InvalidName),
    /// The arguments could not be serialised to JSON.
    #[error("the arguments could not be serialised to JSON: {0}")]
    Serialize(#[source] serde_json::Error),
    /// The arguments serialised to a JSON value that is not an array (the argument list).
    #[error(
        "the arguments must serialise to a JSON array (a tuple, an array or a Vec), not to {found}; \
         pass a single argument as a one-element tuple `(value,)` and no argument as `[(); 0]`"
    )]
    NotAnArray {
        /// What they serialised to: `"an object"`, `"a string"`, `"null"`, …
        found: &'static str,
    },
    /// The broker is stopping or stopped: nothing reaches its hubs any more. (Also, once, for
    /// an operation that raced with its hub failing; the next operation starts a fresh hub.)
    #[error("the broker is stopped")]
    HubGone,
    /// The hub is not running and `limits.max_hubs` hubs are.
    #[error(transparent)]
    TooManyHubs(#[from] TooManyHubs),
    /// The answer needs other cluster nodes, and they could not be asked.
    #[error(transparent)]
    Cluster(#[from] crate::cluster::Unreachable),
}

impl From<HubGone> for HubClientError {
    fn from(_: HubGone) -> Self {
        Self::HubGone
    }
}

impl From<HubError> for HubClientError {
    fn from(e: HubError) -> Self {
        match e {
            HubError::Gone(_) => Self::HubGone,
            HubError::Cluster(e) => Self::Cluster(e),
        }
    }
}

/// The REST API's and the management client's `ttl` shape: `None` remembers the membership
/// for the user's later connections too ([`MembershipTtl::Unlimited`]), `Some(Duration::ZERO)`
/// adds only the user's current connections ([`MembershipTtl::CurrentConnectionsOnly`]), and
/// `Some(d)` remembers it for `d` ([`MembershipTtl::For`]; at most [`MembershipTtl::MAX`]).
impl From<Option<Duration>> for MembershipTtl {
    fn from(ttl: Option<Duration>) -> Self {
        match ttl {
            None => Self::Unlimited,
            Some(d) if d.is_zero() => Self::CurrentConnectionsOnly,
            Some(d) => Self::For(d),
        }
    }
}

/// The operations on one hub of an embedded broker, from
/// [`SwitchboardHandle::hub`](crate::SwitchboardHandle::hub). Cheap to clone; clones share the
/// hub.
///
/// The methods mirror `switchboard_sdk::management::ManagementHub` (names, argument order and
/// shapes), so code can move between an embedded broker and a remote one. The differences:
///
/// * Arguments must serialise to a JSON array — a tuple, an array or a `Vec` — which is the
///   argument list; any other value is [`HubClientError::NotAnArray`] (the management client
///   wraps a single value instead). They are serialised once per call, and the hub encodes them
///   at most once per hub protocol its recipients speak.
/// * Operations on a connection answer whether the connection exists (`bool`) where the
///   management client, bound by the SDK, answers `()`.
/// * Sends return once the hub has queued the message, which is then ordered before anything
///   sent to the hub later; `Ok` does not mean a client received it.
/// * `send_users`, `send_groups` and `send_connections` queue one send per recipient, as the
///   REST transport does: a connection in two of the `groups` gets the message twice.
///
/// Every operation checks its names first (hub names when the client is made; group names
/// with [`validate_group_name`], user ids with [`validate_user_id`]; connection ids and targets
/// must not be empty) and fails with [`HubClientError::InvalidName`] before anything is sent.
/// Once the broker is stopping every operation fails with [`HubClientError::HubGone`].
#[derive(Clone, Debug)]
pub struct HubClient {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    hubs: Arc<HubRegistry>,
    name: HubName,
    /// Turns `true` when the broker starts stopping.
    stopping: tokio::sync::watch::Receiver<bool>,
}

impl HubClient {
    /// The client of hub `name` among `hubs`, failing once `stopping` turns `true`; the name is
    /// checked here.
    pub(crate) fn new(
        hubs: Arc<HubRegistry>,
        stopping: tokio::sync::watch::Receiver<bool>,
        name: &str,
    ) -> Result<Self, HubClientError> {
        validate_hub_name(name)?;
        Ok(Self {
            inner: Arc::new(Inner {
                stopping,
                hubs,
                name: HubName::from(canonical_hub_name(name).as_ref()),
            }),
        })
    }

    /// The hub's name in its canonical, lower-case form (hub names are case-insensitive:
    /// clients of `/client/?hub=Chat` and of `?hub=chat` are in this one hub).
    pub fn name(&self) -> &str {
        self.inner.name.as_str()
    }

    /// The hub actor, started if needed (inside the caller's runtime); looked up for each
    /// operation, so that an idle hub can retire between operations and a failed one is
    /// replaced. [`HubClientError::HubGone`] once the broker is stopping.
    fn hub(&self) -> Result<HubHandle, HubClientError> {
        if *self.inner.stopping.borrow() {
            return Err(HubClientError::HubGone);
        }
        Ok(self.inner.hubs.get_or_create(self.name())?)
    }

    // ----- sends -------------------------------------------------------------------------

    /// Invokes `target` with `args` on every client of the hub but the `excluded` connection
    /// ids (REST `POST /:send?excluded=…`).
    pub async fn send_all<A: Serialize>(
        &self,
        target: &str,
        args: A,
        excluded: &[&str],
    ) -> Result<(), HubClientError> {
        let msg = message(target, &args)?;
        self.hub()?.send_all(msg, connection_ids(excluded)).await?;
        Ok(())
    }

    /// Invokes `target` with `args` on every connection of `user`.
    pub async fn send_user<A: Serialize>(
        &self,
        user: &str,
        target: &str,
        args: A,
    ) -> Result<(), HubClientError> {
        validate_user_id(user)?;
        let msg = message(target, &args)?;
        self.hub()?.send_user(UserId::from(user), msg).await?;
        Ok(())
    }

    /// Invokes `target` with `args` on every connection of the `users` (one hub operation, one
    /// encoding per protocol). An empty list sends nothing.
    pub async fn send_users<A: Serialize>(
        &self,
        users: &[&str],
        target: &str,
        args: A,
    ) -> Result<(), HubClientError> {
        users.iter().try_for_each(|u| validate_user_id(u))?;
        let msg = message(target, &args)?;
        let users = users.iter().map(|u| UserId::from(*u)).collect();
        self.hub()?.send_users(users, msg).await?;
        Ok(())
    }

    /// Invokes `target` with `args` on every connection in `group` but the `excluded` ones.
    pub async fn send_group<A: Serialize>(
        &self,
        group: &str,
        target: &str,
        args: A,
        excluded: &[&str],
    ) -> Result<(), HubClientError> {
        validate_group_name(group)?;
        let msg = message(target, &args)?;
        self.hub()?
            .send_group(
                GroupName::from(group),
                msg,
                connection_ids(excluded),
                Vec::new(),
            )
            .await?;
        Ok(())
    }

    /// Invokes `target` with `args` on every connection in any of the `groups`; a connection in
    /// several of them gets it once (as a hub server's multi-group send). An empty list sends
    /// nothing.
    pub async fn send_groups<A: Serialize>(
        &self,
        groups: &[&str],
        target: &str,
        args: A,
    ) -> Result<(), HubClientError> {
        groups.iter().try_for_each(|g| validate_group_name(g))?;
        let msg = message(target, &args)?;
        let groups = groups.iter().map(|g| GroupName::from(*g)).collect();
        self.hub()?.send_groups(groups, msg).await?;
        Ok(())
    }

    /// Invokes `target` with `args` on one connection.
    pub async fn send_connection<A: Serialize>(
        &self,
        connection_id: &str,
        target: &str,
        args: A,
    ) -> Result<(), HubClientError> {
        check_connection(connection_id)?;
        let msg = message(target, &args)?;
        self.hub()?
            .send_connection(ConnectionId::from(connection_id), msg)
            .await?;
        Ok(())
    }

    /// Invokes `target` with `args` on some connections (one send per connection, all sharing
    /// one encoding). An empty list sends nothing.
    pub async fn send_connections<A: Serialize>(
        &self,
        connection_ids: &[&str],
        target: &str,
        args: A,
    ) -> Result<(), HubClientError> {
        connection_ids
            .iter()
            .try_for_each(|c| check_connection(c))?;
        let msg = message(target, &args)?;
        let hub = self.hub()?;
        for id in connection_ids {
            hub.send_connection(ConnectionId::from(*id), msg.clone())
                .await?;
        }
        Ok(())
    }

    // ----- groups ------------------------------------------------------------------------

    /// Adds a connection to a group; `false` when there is no such connection (REST
    /// `PUT /groups/{g}/connections/{c}`).
    pub async fn add_to_group(
        &self,
        connection_id: &str,
        group: &str,
    ) -> Result<bool, HubClientError> {
        check_connection(connection_id)?;
        validate_group_name(group)?;
        Ok(self
            .hub()?
            .add_to_group(ConnectionId::from(connection_id), GroupName::from(group))
            .await?
            .await?)
    }

    /// Removes a connection from a group; `false` when there is no such connection (REST
    /// `DELETE /groups/{g}/connections/{c}`).
    pub async fn remove_from_group(
        &self,
        connection_id: &str,
        group: &str,
    ) -> Result<bool, HubClientError> {
        check_connection(connection_id)?;
        validate_group_name(group)?;
        Ok(self
            .hub()?
            .remove_from_group(ConnectionId::from(connection_id), GroupName::from(group))
            .await?
            .await?)
    }

    /// Removes a connection from every group; `false` when there is no such connection (REST
    /// `DELETE /connections/{c}/groups`).
    pub async fn remove_from_all_groups(
        &self,
        connection_id: &str,
    ) -> Result<bool, HubClientError> {
        check_connection(connection_id)?;
        Ok(self
            .hub()?
            .remove_from_all_groups(ConnectionId::from(connection_id))
            .await?
            .await?)
    }

    /// Adds a user — its current connections and, unless `ttl` is zero, the ones it opens
    /// later — to a group (REST `PUT /users/{u}/groups/{g}?ttl=`). `ttl` is the management
    /// client's `Option<Duration>` (see [`MembershipTtl`]'s `From<Option<Duration>>`) or a
    /// [`MembershipTtl`].
    pub async fn add_user_to_group(
        &self,
        user: &str,
        group: &str,
        ttl: impl Into<MembershipTtl>,
    ) -> Result<(), HubClientError> {
        validate_user_id(user)?;
        validate_group_name(group)?;
        self.hub()?
            .add_user_to_group(UserId::from(user), GroupName::from(group), ttl.into())
            .await?
            .await?;
        Ok(())
    }

    /// Removes a user — its connections and its remembered membership — from a group (REST
    /// `DELETE /users/{u}/groups/{g}`).
    pub async fn remove_user_from_group(
        &self,
        user: &str,
        group: &str,
    ) -> Result<(), HubClientError> {
        validate_user_id(user)?;
        validate_group_name(group)?;
        self.hub()?
            .remove_user_from_group(UserId::from(user), GroupName::from(group))
            .await?
            .await?;
        Ok(())
    }

    /// Removes a user from every group (REST `DELETE /users/{u}/groups`).
    pub async fn remove_user_from_all_groups(&self, user: &str) -> Result<(), HubClientError> {
        validate_user_id(user)?;
        self.hub()?
            .remove_user_from_all_groups(UserId::from(user))
            .await?
            .await?;
        Ok(())
    }

    /// The connections in a group, ordered by connection id (REST
    /// `GET /groups/{g}/connections`, without paging).
    pub async fn group_connections(&self, group: &str) -> Result<Vec<Member>, HubClientError> {
        validate_group_name(group)?;
        Ok(self
            .hub()?
            .group_connections(GroupName::from(group))
            .await?
            .await?)
    }

    // ----- checks ------------------------------------------------------------------------

    /// Whether a connection is connected to the hub (REST `HEAD /connections/{c}`).
    pub async fn connection_exists(&self, connection_id: &str) -> Result<bool, HubClientError> {
        check_connection(connection_id)?;
        self.exists(ExistsQuery::Connection(ConnectionId::from(connection_id)))
            .await
    }

    /// Whether a user has a connection to the hub (REST `HEAD /users/{u}`).
    pub async fn user_exists(&self, user: &str) -> Result<bool, HubClientError> {
        validate_user_id(user)?;
        self.exists(ExistsQuery::User(UserId::from(user))).await
    }

    /// Whether a group has a connection (REST `HEAD /groups/{g}`).
    pub async fn group_exists(&self, group: &str) -> Result<bool, HubClientError> {
        validate_group_name(group)?;
        self.exists(ExistsQuery::Group(GroupName::from(group)))
            .await
    }

    /// Whether a user is in a group: a remembered membership or a connection of theirs in it
    /// (REST `HEAD /users/{u}/groups/{g}`).
    pub async fn is_user_in_group(&self, user: &str, group: &str) -> Result<bool, HubClientError> {
        validate_user_id(user)?;
        validate_group_name(group)?;
        self.exists(ExistsQuery::UserInGroup(
            UserId::from(user),
            GroupName::from(group),
        ))
        .await
    }

    async fn exists(&self, query: ExistsQuery) -> Result<bool, HubClientError> {
        Ok(self.hub()?.exists(query).await?.await?)
    }

    // ----- closes ------------------------------------------------------------------------

    /// Closes a connection; the client gets a Close message whose error is `reason`. `false`
    /// when there is no such connection (REST `DELETE /connections/{c}?reason=`).
    pub async fn close_connection(
        &self,
        connection_id: &str,
        reason: Option<&str>,
    ) -> Result<bool, HubClientError> {
        check_connection(connection_id)?;
        Ok(self
            .hub()?
            .close_connection(ConnectionId::from(connection_id), reason.map(str::to_owned))
            .await?
            .await?)
    }

    /// Closes every connection of the hub but the `excluded` ones (REST
    /// `POST /:closeConnections?excluded=…&reason=`).
    pub async fn close_all(
        &self,
        reason: Option<&str>,
        excluded: &[&str],
    ) -> Result<(), HubClientError> {
        self.close(Scope::All, reason, excluded).await
    }

    /// Closes every connection of a user (REST `POST /users/{u}/:closeConnections?reason=`).
    pub async fn close_user(&self, user: &str, reason: Option<&str>) -> Result<(), HubClientError> {
        validate_user_id(user)?;
        self.close(Scope::User(UserId::from(user)), reason, &[])
            .await
    }

    /// Closes every connection in a group (REST `POST /groups/{g}/:closeConnections?reason=`).
    pub async fn close_group(
        &self,
        group: &str,
        reason: Option<&str>,
    ) -> Result<(), HubClientError> {
        validate_group_name(group)?;
        self.close(Scope::Group(GroupName::from(group)), reason, &[])
            .await
    }

    async fn close(
        &self,
        scope: Scope,
        reason: Option<&str>,
        excluded: &[&str],
    ) -> Result<(), HubClientError> {
        self.hub()?
            .close_connections(
                scope,
                connection_ids(excluded),
                CloseReason::ByApplication(reason.map(str::to_owned)),
            )
            .await?
            .await?;
        Ok(())
    }
}

/// A connection id must not be empty (the REST API's rule).
fn check_connection(id: &str) -> Result<(), InvalidName> {
    if id.is_empty() {
        Err(InvalidName(
            "Invalid connection id: it must not be empty.".to_owned(),
        ))
    } else {
        Ok(())
    }
}

fn connection_ids(ids: &[&str]) -> Vec<ConnectionId> {
    ids.iter().map(|id| ConnectionId::from(*id)).collect()
}

/// The Invocation of `target` with `args`, serialised once as a JSON array.
fn message<A: Serialize>(target: &str, args: &A) -> Result<Arc<SerializedMessage>, HubClientError> {
    if target.is_empty() {
        return Err(InvalidName("Invalid target: it must not be empty.".to_owned()).into());
    }
    let json = serde_json::to_vec(args).map_err(HubClientError::Serialize)?;
    let found = match json.first() {
        Some(b'[') => None,
        Some(b'{') => Some("an object"),
        Some(b'"') => Some("a string"),
        Some(b'n') => Some("null"),
        Some(b't' | b'f') => Some("a boolean"),
        _ => Some("a number"),
    };
    if let Some(found) = found {
        return Err(HubClientError::NotAnArray { found });
    }
    Ok(Arc::new(SerializedMessage::invocation(target, json.into())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arguments(args: impl Serialize) -> Result<(), HubClientError> {
        message("t", &args).map(drop)
    }

    #[test]
    fn sequences_are_argument_lists() {
        assert!(arguments(("a", 1)).is_ok());
        assert!(arguments([1, 2]).is_ok());
        assert!(arguments(Vec::<u8>::new()).is_ok());
        assert!(arguments([(); 0]).is_ok());
        assert!(arguments(serde_json::json!([{"a": 1}])).is_ok());
    }

    #[test]
    fn other_values_are_refused_with_what_they_are() {
        let found = |args: serde_json::Value| match arguments(args) {
            Err(HubClientError::NotAnArray { found }) => found,
            other => panic!("expected NotAnArray, got {other:?}"),
        };
        assert_eq!(found(serde_json::json!({"a": 1})), "an object");
        assert_eq!(found(serde_json::json!("x")), "a string");
        assert_eq!(found(serde_json::json!(null)), "null");
        assert_eq!(found(serde_json::json!(true)), "a boolean");
        assert_eq!(found(serde_json::json!(-1.5)), "a number");
        assert!(matches!(
            arguments(()),
            Err(HubClientError::NotAnArray { found: "null" })
        ));
    }

    #[test]
    fn an_empty_target_is_an_invalid_name() {
        assert!(matches!(
            message("", &("x",)),
            Err(HubClientError::InvalidName(_))
        ));
    }

    #[test]
    fn ttl_shapes() {
        assert_eq!(MembershipTtl::from(None), MembershipTtl::Unlimited);
        assert_eq!(
            MembershipTtl::from(Some(Duration::ZERO)),
            MembershipTtl::CurrentConnectionsOnly
        );
        assert_eq!(
            MembershipTtl::from(Some(Duration::from_secs(5))),
            MembershipTtl::For(Duration::from_secs(5))
        );
    }
}
