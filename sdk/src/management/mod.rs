//! The management client: what the Azure SignalR Management SDK (`ServiceManager` /
//! `ServiceHubContext`) is for serverless apps — send to clients, manage groups, check and close
//! connections, and mint client tokens and negotiate redirects, from an app that serves no hub.
//!
//! ```no_run
//! use std::time::Duration;
//! use switchboard_sdk::management::ManagementClient;
//! use switchboard_sdk::ConnectionString;
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let cs: ConnectionString = "Endpoint=http://127.0.0.1;Port=8080;AccessKey=key;Version=1.0;".parse()?;
//! let mgr = ManagementClient::new(cs)?;
//! let hub = mgr.hub("chat");
//! hub.send_all("newMessage", ("server", "hello"), &[]).await?;
//! hub.add_user_to_group("alice", "admins", None).await?;
//! hub.send_group("admins", "notice", ("maintenance at 10:00",), &[]).await?;
//! if !hub.user_exists("bob").await? {
//!     hub.send_all("offline", ("bob",), &[]).await?;
//! }
//! // The body of the app's own `POST /negotiate` for a client of user alice:
//! let redirect = hub.negotiate(Some("alice"), &[], Duration::from_secs(3600)).to_json();
//! # let _ = redirect; Ok(()) }
//! ```
//!
//! # Transports
//!
//! [`ManagementClient::new`] uses the data-plane REST API (`docs/protocol.md#rest-api`,
//! api-version 2022-06-01): one HTTPS request per operation, each with its own access-key token
//! (`aud` = audience base + path + `?[application=…&]api-version=…`,
//! `docs/protocol.md#access-tokens`), exactly as the SDK's transient mode.
//! [`ManagementClient::persistent`] is the SDK's persistent mode: per hub, one [`HubServer`] of
//! Weak server connections (connection type 2, `docs/protocol.md#connection-types`, accepted in
//! every service mode; [`ManagementOptions::connection_count`], default 1), started on the hub's
//! first operation, over which operations travel as service-protocol messages
//! (`docs/protocol.md#what-the-sdk-sends`):
//!
//! | operation | persistent transport |
//! | --- | --- |
//! | `send_all` (+ excluded), `send_user(s)`, `send_group` (+ excluded), `send_groups`, `send_connection(s)` | BroadcastData, UserData, MultiUserData, GroupBroadcastData, MultiGroupBroadcastData, MultiConnectionData |
//! | `add_to_group`, `remove_from_group`, `remove_from_all_groups` | JoinGroupWithAck, LeaveGroupWithAck (group nil = all) |
//! | `add_user_to_group` (ttl), `remove_user_from_group`, `remove_user_from_all_groups` | UserJoinGroupWithAck (ext ttl), UserLeaveGroupWithAck |
//! | `connection_exists`, `user_exists`, `group_exists`, `is_user_in_group` | Check…WithAck (Ok → true, NotFound → false) |
//! | `close_connection` | Close hub message + CloseConnection (not acknowledged) |
//! | `close_user`, `close_group` | CloseUserConnectionsWithAck, CloseGroupConnectionsWithAck |
//! | `close_all` | **REST** (`POST :closeConnections`): the hub-server SDK has no close-all |
//! | [`ManagementClient::is_healthy`] | **REST** (`HEAD /api/health`) in both transports |
//! | `generate_client_token`, `negotiate` | local (no I/O) in both transports |
//!
//! # Rules
//!
//! * Hub and application names are lower-cased as the SDK does (the service hub is
//!   `<app>_<hub>`); clients must connect to that name, which [`ManagementHub::negotiate`] does.
//! * Arguments (`args: impl Serialize`) follow the hub-server SDK's rule: anything serialising as
//!   a sequence (a tuple, `Vec<serde_json::Value>`, an array) is the argument list, `()` is no
//!   argument, any other value is the single argument. They are serialised once per call (REST:
//!   once as JSON, the same bytes for every request of a multi-target send; persistent: once per
//!   hub protocol).
//! * The REST API has no send to several users, groups or connections: those sends are one
//!   request per recipient, at most [`ManagementOptions::max_concurrent_requests`] at a time,
//!   like the SDK's `Task.WhenAll`; the first failure is returned after all have finished.
//!   An empty recipient list sends nothing.
//! * Names are checked before anything is sent, with the service's rules (hub and application
//!   ``^[A-Za-z][A-Za-z0-9_`,.[\]]{0,127}$``, group 1–1024 characters not only whitespace, user
//!   1–1024 characters, connection id and target non-empty) → [`ManagementError::InvalidArgument`].
//!   Over REST, a user, group or connection id of `.` or `..` is refused too (URL parsers drop
//!   dot segments).
//! * Outcomes the SDK treats as normal are not errors: `add_to_group`, `remove_from_group`,
//!   `remove_from_all_groups` and `close_connection` of a connection that does not exist succeed
//!   (REST 404 `Error.Connection.NotExisted` / `Warning.Connection.NotExisted`, Ack NotFound);
//!   the existence checks answer `false` on a 404 carrying the expected `x-ms-error-code`
//!   (`Warning.Connection.NotExisted`, `Warning.User.NotExisted`, `Warning.Group.NotExisted`,
//!   `Info.User.NotInGroup`) and fail on any other answer.
//! * `ttl` of [`ManagementHub::add_user_to_group`] is sent in whole seconds (rounded down, capped
//!   at `i32::MAX`), as the SDK does; `Some(Duration::ZERO)` adds only the user's current
//!   connections, `None` makes the membership apply to the user's later connections too.
//! * Sends return [`Accepted`]: `Ok` means the service queued the message, not that a client got
//!   it.
//!
//! # Layout
//!
//! This file holds the client, the hub handle and the dispatch of each operation to a transport;
//! `rest` builds URLs, tokens and bodies and reads answers; `persistent` keeps the Weak hub
//! servers; `error` is [`ManagementError`].

mod error;
mod persistent;
mod rest;

#[cfg(test)]
mod tests;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt as _;
use reqwest::Method;
use serde::{Deserialize, Serialize};

pub use self::error::ManagementError;
use self::persistent::Pool;
use self::rest::{Answer, HubAddress, RestTransport, arguments_json, segment, send_body};
use crate::connection_string::hub_url_name;
use crate::protocol::id::{validate_group_name, validate_hub_name, validate_user_id};
use crate::{ConnectionString, HubServer};

/// How a [`ManagementClient`] reaches the service.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Transport {
    /// One REST request per operation (the SDK's transient mode).
    #[default]
    Rest,
    /// Weak server connections per hub (the SDK's persistent mode); see the module docs for
    /// the operations that still use REST.
    Persistent,
}

/// Tunables of a [`ManagementClient`].
#[derive(Clone, Debug)]
pub struct ManagementOptions {
    /// The transport ([`Transport::Rest`]).
    pub transport: Transport,
    /// Lifetime of each REST token (1 h, the SDK's default).
    pub token_lifetime: Duration,
    /// Bound on each REST request, connect to last byte (100 s, .NET's `HttpClient` default).
    pub request_timeout: Duration,
    /// Bound on the health probe (2 s, the SDK's).
    pub health_timeout: Duration,
    /// Most REST requests in flight for one send to several users, groups or connections (16).
    pub max_concurrent_requests: usize,
    /// Weak server connections per hub in persistent mode (1, the SDK's `ConnectionCount`).
    pub connection_count: usize,
    /// How long a persistent operation waits for a Weak connection to be up (15 s).
    pub connect_timeout: Duration,
    /// A PEM file of CA certificates trusted for an `https://`/`wss://` service besides the
    /// system's (whose `SSL_CERT_FILE` and `SSL_CERT_DIR` apply without it).
    pub ca_file: Option<std::path::PathBuf>,
}

impl Default for ManagementOptions {
    fn default() -> Self {
        Self {
            transport: Transport::Rest,
            token_lifetime: Duration::from_secs(3600),
            request_timeout: Duration::from_secs(100),
            health_timeout: Duration::from_secs(2),
            max_concurrent_requests: 16,
            connection_count: 1,
            connect_timeout: Duration::from_secs(15),
            ca_file: None,
        }
    }
}

/// A send the service accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Accepted {
    /// The HTTP status of the REST answer (202; the last one when the send took one request
    /// per recipient). `None` over the persistent transport, where sends are not answered, and
    /// when the recipient list was empty (nothing was sent).
    pub status: Option<u16>,
}

/// The body an app's `POST /negotiate` answers a client with: the Azure redirect to the
/// service, `{"url": "<client endpoint>/client/?hub=<hub>", "accessToken": "<client jwt>"}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NegotiateResponse {
    /// The client URL on the service.
    pub url: String,
    /// The client access token.
    #[serde(rename = "accessToken")]
    pub access_token: String,
}

impl NegotiateResponse {
    /// The JSON body (`url` first, as the SDK writes it).
    pub fn to_json(&self) -> String {
        // Serialising two strings cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// A client of the service's management operations, built from a connection string. Cheap to
/// clone (clones share the HTTP client and, in persistent mode, the Weak connections). Call
/// [`shutdown`](Self::shutdown) to close the persistent connections gracefully; dropping the
/// last clone inside a tokio runtime stops them in the background.
#[derive(Clone)]
pub struct ManagementClient {
    inner: Arc<Inner>,
}

struct Inner {
    connection_string: ConnectionString,
    options: ManagementOptions,
    rest: RestTransport,
    pool: Option<Pool>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        let Some(pool) = &self.pool else { return };
        let servers = pool.take_all();
        if servers.is_empty() {
            return;
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                for server in servers {
                    server.stop().await;
                }
            });
        }
    }
}

impl fmt::Debug for ManagementClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ManagementClient")
            .field("connection_string", &self.inner.connection_string)
            .field("transport", &self.inner.options.transport)
            .finish_non_exhaustive()
    }
}

impl ManagementClient {
    /// A client using the REST transport.
    pub fn new(connection_string: ConnectionString) -> Result<Self, ManagementError> {
        Self::with_options(connection_string, ManagementOptions::default())
    }

    /// A client using the persistent transport (Weak server connections, one hub server per
    /// hub, started on the hub's first operation inside the caller's tokio runtime).
    pub fn persistent(connection_string: ConnectionString) -> Result<Self, ManagementError> {
        Self::with_options(
            connection_string,
            ManagementOptions {
                transport: Transport::Persistent,
                ..ManagementOptions::default()
            },
        )
    }

    /// A client with explicit options.
    pub fn with_options(
        connection_string: ConnectionString,
        options: ManagementOptions,
    ) -> Result<Self, ManagementError> {
        let server_name = format!("management_{}", crate::server::random_hex(16));
        let rest = RestTransport::new(
            connection_string.clone(),
            server_name,
            options.token_lifetime,
            options.request_timeout,
            options.health_timeout,
            options.ca_file.as_deref(),
        )?;
        let pool = (options.transport == Transport::Persistent).then(|| {
            Pool::new(
                connection_string.clone(),
                options.connection_count,
                options.connect_timeout,
                options.ca_file.clone(),
            )
        });
        Ok(Self {
            inner: Arc::new(Inner {
                connection_string,
                options,
                rest,
                pool,
            }),
        })
    }

    /// The transport in use.
    pub fn transport(&self) -> Transport {
        self.inner.options.transport
    }

    /// The options in force.
    pub fn options(&self) -> &ManagementOptions {
        &self.inner.options
    }

    /// The connection string.
    pub fn connection_string(&self) -> &ConnectionString {
        &self.inner.connection_string
    }

    /// The operations on hub `hub` (lower-cased on the wire).
    pub fn hub(&self, hub: &str) -> ManagementHub {
        ManagementHub::new(self.clone(), None, hub)
    }

    /// The operations on hub `hub` of application `application` (the service hub is
    /// `<application>_<hub>`, lower-cased; the SDK's `ApplicationName`).
    pub fn hub_with_application(&self, application: &str, hub: &str) -> ManagementHub {
        ManagementHub::new(self.clone(), Some(application), hub)
    }

    /// Whether the service answers its health probe (`HEAD /api/health`, no token) with a 2xx
    /// status within [`ManagementOptions::health_timeout`].
    pub async fn is_healthy(&self) -> bool {
        self.inner.rest.is_healthy().await
    }

    /// Stops the persistent transport's hub servers gracefully (each Weak connection sends
    /// `shutdown fin`); a later persistent operation starts them again. Nothing to do for REST.
    pub async fn shutdown(&self) {
        if let Some(pool) = &self.inner.pool {
            for server in pool.take_all() {
                server.stop().await;
            }
        }
    }
}

/// Who a send goes to.
#[derive(Clone, Copy, Debug)]
enum To<'a> {
    All(&'a [&'a str]),
    User(&'a str),
    Users(&'a [&'a str]),
    Group(&'a str, &'a [&'a str]),
    Groups(&'a [&'a str]),
    Connection(&'a str),
    Connections(&'a [&'a str]),
}

/// The management operations on one hub (the SDK's `ServiceHubContext`). Cheap to clone.
#[derive(Clone)]
pub struct ManagementHub {
    client: ManagementClient,
    hub: String,
    application: Option<String>,
    service_hub: String,
    address: HubAddress,
    /// Why the hub or application name is invalid, reported by every operation.
    invalid: Option<String>,
}

impl fmt::Debug for ManagementHub {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ManagementHub")
            .field("hub", &self.service_hub)
            .field("transport", &self.client.transport())
            .finish_non_exhaustive()
    }
}

fn invalid(message: impl Into<String>) -> ManagementError {
    ManagementError::InvalidArgument(message.into())
}

fn check_user(user: &str) -> Result<(), ManagementError> {
    validate_user_id(user).map_err(invalid)
}

fn check_group(group: &str) -> Result<(), ManagementError> {
    validate_group_name(group).map_err(invalid)
}

fn check_connection(id: &str) -> Result<(), ManagementError> {
    if id.is_empty() {
        Err(invalid("the connection id must not be empty"))
    } else {
        Ok(())
    }
}

/// The REST `ttl` query value: whole seconds, capped at `i32::MAX` like the SDK's `int`.
fn ttl_seconds(ttl: Duration) -> u64 {
    ttl.as_secs().min(i32::MAX as u64)
}

impl ManagementHub {
    fn new(client: ManagementClient, application: Option<&str>, hub: &str) -> Self {
        let application = application.filter(|a| !a.is_empty()).map(str::to_owned);
        let invalid = validate_hub_name(hub).err().map(|e| e.0).or_else(|| {
            application
                .as_deref()
                .and_then(|a| validate_hub_name(a).err())
                .map(|e| e.0.replacen("hub name", "application name", 1))
        });
        Self {
            service_hub: hub_url_name(hub, application.as_deref()),
            address: HubAddress::new(hub, application.as_deref()),
            client,
            hub: hub.to_owned(),
            application,
            invalid,
        }
    }

    /// The hub name on the service: lower-cased, `<application>_` prefixed when given.
    pub fn name(&self) -> &str {
        &self.service_hub
    }

    /// The client this hub belongs to.
    pub fn client(&self) -> &ManagementClient {
        &self.client
    }

    fn check(&self) -> Result<(), ManagementError> {
        match &self.invalid {
            Some(message) => Err(invalid(message.clone())),
            None => Ok(()),
        }
    }

    fn rest(&self) -> &RestTransport {
        &self.client.inner.rest
    }

    /// The Weak hub server, when the transport is persistent.
    async fn server(&self) -> Result<Option<HubServer>, ManagementError> {
        match &self.client.inner.pool {
            Some(pool) => Ok(Some(
                pool.server(&self.hub, self.application.as_deref()).await?,
            )),
            None => Ok(None),
        }
    }

    async fn call(
        &self,
        method: Method,
        tail: &str,
        extra: &[(&str, &str)],
        body: Option<Bytes>,
    ) -> Result<Answer, ManagementError> {
        self.rest()
            .call(method, &self.address, tail, extra, body)
            .await
    }

    // ----- sends -------------------------------------------------------------------------

    /// Invokes `target` with `args` on every client of the hub but the `excluded` connection
    /// ids (REST `POST /:send?excluded=…`; BroadcastData).
    pub async fn send_all<A: Serialize>(
        &self,
        target: &str,
        args: A,
        excluded: &[&str],
    ) -> Result<Accepted, ManagementError> {
        self.send(To::All(excluded), target, &args).await
    }

    /// Invokes `target` with `args` on every connection of `user` (UserData).
    pub async fn send_user<A: Serialize>(
        &self,
        user: &str,
        target: &str,
        args: A,
    ) -> Result<Accepted, ManagementError> {
        self.send(To::User(user), target, &args).await
    }

    /// Invokes `target` with `args` on every connection of the `users` (REST: one request per
    /// user; MultiUserData).
    pub async fn send_users<A: Serialize>(
        &self,
        users: &[&str],
        target: &str,
        args: A,
    ) -> Result<Accepted, ManagementError> {
        self.send(To::Users(users), target, &args).await
    }

    /// Invokes `target` with `args` on every connection in `group` but the `excluded` ones
    /// (GroupBroadcastData).
    pub async fn send_group<A: Serialize>(
        &self,
        group: &str,
        target: &str,
        args: A,
        excluded: &[&str],
    ) -> Result<Accepted, ManagementError> {
        self.send(To::Group(group, excluded), target, &args).await
    }

    /// Invokes `target` with `args` on every connection in any of the `groups` (REST: one
    /// request per group, so a connection in two groups gets it twice, as with the SDK;
    /// MultiGroupBroadcastData).
    pub async fn send_groups<A: Serialize>(
        &self,
        groups: &[&str],
        target: &str,
        args: A,
    ) -> Result<Accepted, ManagementError> {
        self.send(To::Groups(groups), target, &args).await
    }

    /// Invokes `target` with `args` on one connection (MultiConnectionData).
    pub async fn send_connection<A: Serialize>(
        &self,
        connection_id: &str,
        target: &str,
        args: A,
    ) -> Result<Accepted, ManagementError> {
        self.send(To::Connection(connection_id), target, &args)
            .await
    }

    /// Invokes `target` with `args` on some connections (REST: one request per connection;
    /// MultiConnectionData).
    pub async fn send_connections<A: Serialize>(
        &self,
        connection_ids: &[&str],
        target: &str,
        args: A,
    ) -> Result<Accepted, ManagementError> {
        self.send(To::Connections(connection_ids), target, &args)
            .await
    }

    async fn send<A: Serialize>(
        &self,
        to: To<'_>,
        target: &str,
        args: &A,
    ) -> Result<Accepted, ManagementError> {
        self.check()?;
        if target.is_empty() {
            return Err(invalid("the target must not be empty"));
        }
        match to {
            To::All(_) => {}
            To::User(u) => check_user(u)?,
            To::Users(us) => us.iter().try_for_each(|u| check_user(u))?,
            To::Group(g, _) => check_group(g)?,
            To::Groups(gs) => gs.iter().try_for_each(|g| check_group(g))?,
            To::Connection(c) => check_connection(c)?,
            To::Connections(cs) => cs.iter().try_for_each(|c| check_connection(c))?,
        }
        if matches!(to, To::Users([]) | To::Groups([]) | To::Connections([])) {
            return Ok(Accepted { status: None });
        }
        if let Some(server) = self.server().await? {
            let clients = server.clients();
            let proxy = match to {
                To::All(excluded) => clients.all_except(excluded.iter().copied()),
                To::User(user) => clients.user(user),
                To::Users(users) => clients.users(users.iter().copied()),
                To::Group(group, excluded) => clients.group_except(group, excluded.iter().copied()),
                To::Groups(groups) => clients.groups(groups.iter().copied()),
                To::Connection(id) => clients.clients([id]),
                To::Connections(ids) => clients.clients(ids.iter().copied()),
            };
            proxy.send(target, args).await?;
            return Ok(Accepted { status: None });
        }

        let body = send_body(target, &arguments_json(args)?);
        let each = |prefix: &str, names: &[&str]| -> Result<Vec<String>, ManagementError> {
            names
                .iter()
                .map(|n| Ok(format!("/{prefix}/{}/:send", segment(n)?)))
                .collect()
        };
        let (tails, excluded): (Vec<String>, &[&str]) = match to {
            To::All(excluded) => (vec!["/:send".to_owned()], excluded),
            To::User(user) => (each("users", &[user])?, &[]),
            To::Users(users) => (each("users", users)?, &[]),
            To::Group(group, excluded) => (each("groups", &[group])?, excluded),
            To::Groups(groups) => (each("groups", groups)?, &[]),
            To::Connection(id) => (each("connections", &[id])?, &[]),
            To::Connections(ids) => (each("connections", ids)?, &[]),
        };
        let extra: Vec<(&str, &str)> = excluded.iter().map(|e| ("excluded", *e)).collect();
        let limit = self.client.inner.options.max_concurrent_requests.max(1);
        let results: Vec<Result<u16, ManagementError>> = futures_util::stream::iter(&tails)
            .map(|tail| {
                let body = body.clone();
                let extra = &extra;
                async move {
                    self.call(Method::POST, tail, extra, Some(body))
                        .await?
                        .success()
                }
            })
            .buffer_unordered(limit)
            .collect()
            .await;
        let mut status = None;
        for result in results {
            status = Some(result?);
        }
        Ok(Accepted { status })
    }

    // ----- groups ------------------------------------------------------------------------

    /// Adds a connection to a group (REST `PUT /groups/{g}/connections/{c}`;
    /// JoinGroupWithAck). A connection that does not exist is not an error (as in the SDK).
    pub async fn add_to_group(
        &self,
        connection_id: &str,
        group: &str,
    ) -> Result<(), ManagementError> {
        self.check()?;
        check_connection(connection_id)?;
        check_group(group)?;
        if let Some(server) = self.server().await? {
            server.groups().add(connection_id, group).await?;
            return Ok(());
        }
        let tail = format!(
            "/groups/{}/connections/{}",
            segment(group)?,
            segment(connection_id)?
        );
        self.call(Method::PUT, &tail, &[], None)
            .await?
            .found(&["Error.Connection.NotExisted"])
            .map(drop)
    }

    /// Removes a connection from a group (REST `DELETE /groups/{g}/connections/{c}`;
    /// LeaveGroupWithAck). A connection that does not exist is not an error.
    pub async fn remove_from_group(
        &self,
        connection_id: &str,
        group: &str,
    ) -> Result<(), ManagementError> {
        self.check()?;
        check_connection(connection_id)?;
        check_group(group)?;
        if let Some(server) = self.server().await? {
            server.groups().remove(connection_id, group).await?;
            return Ok(());
        }
        let tail = format!(
            "/groups/{}/connections/{}",
            segment(group)?,
            segment(connection_id)?
        );
        self.call(Method::DELETE, &tail, &[], None)
            .await?
            .found(&[
                "Error.Connection.NotExisted",
                "Warning.Connection.NotExisted",
            ])
            .map(drop)
    }

    /// Removes a connection from every group (REST `DELETE /connections/{c}/groups`;
    /// LeaveGroupWithAck without a group).
    pub async fn remove_from_all_groups(&self, connection_id: &str) -> Result<(), ManagementError> {
        self.check()?;
        check_connection(connection_id)?;
        if let Some(server) = self.server().await? {
            server.groups().remove_from_all(connection_id).await?;
            return Ok(());
        }
        let tail = format!("/connections/{}/groups", segment(connection_id)?);
        self.call(Method::DELETE, &tail, &[], None)
            .await?
            .found(&[
                "Warning.Connection.NotExisted",
                "Error.Connection.NotExisted",
            ])
            .map(drop)
    }

    /// Adds a user — its current connections and, unless `ttl` is zero, the ones it opens
    /// later — to a group, for `ttl` when given (REST `PUT /users/{u}/groups/{g}?ttl=`;
    /// UserJoinGroupWithAck).
    pub async fn add_user_to_group(
        &self,
        user: &str,
        group: &str,
        ttl: Option<Duration>,
    ) -> Result<(), ManagementError> {
        self.check()?;
        check_user(user)?;
        check_group(group)?;
        let ttl = ttl.map(ttl_seconds);
        if let Some(server) = self.server().await? {
            server
                .groups()
                .add_user(user, group, ttl.map(Duration::from_secs))
                .await?;
            return Ok(());
        }
        let tail = format!("/users/{}/groups/{}", segment(user)?, segment(group)?);
        let ttl_text = ttl.map(|t| t.to_string());
        let extra: Vec<(&str, &str)> = ttl_text.iter().map(|t| ("ttl", t.as_str())).collect();
        self.call(Method::PUT, &tail, &extra, None)
            .await?
            .success()
            .map(drop)
    }

    /// Removes a user from a group (REST `DELETE /users/{u}/groups/{g}`; UserLeaveGroupWithAck).
    pub async fn remove_user_from_group(
        &self,
        user: &str,
        group: &str,
    ) -> Result<(), ManagementError> {
        self.check()?;
        check_user(user)?;
        check_group(group)?;
        if let Some(server) = self.server().await? {
            server.groups().remove_user(user, group).await?;
            return Ok(());
        }
        let tail = format!("/users/{}/groups/{}", segment(user)?, segment(group)?);
        self.call(Method::DELETE, &tail, &[], None)
            .await?
            .success()
            .map(drop)
    }

    /// Removes a user from every group (REST `DELETE /users/{u}/groups`; UserLeaveGroupWithAck
    /// without a group).
    pub async fn remove_user_from_all_groups(&self, user: &str) -> Result<(), ManagementError> {
        self.check()?;
        check_user(user)?;
        if let Some(server) = self.server().await? {
            server.groups().remove_user_from_all(user).await?;
            return Ok(());
        }
        let tail = format!("/users/{}/groups", segment(user)?);
        self.call(Method::DELETE, &tail, &[], None)
            .await?
            .success()
            .map(drop)
    }

    // ----- checks ------------------------------------------------------------------------

    /// Whether a connection is connected to the hub (REST `HEAD /connections/{c}`, 404
    /// `Warning.Connection.NotExisted` → false; CheckConnectionExistenceWithAck).
    pub async fn connection_exists(&self, connection_id: &str) -> Result<bool, ManagementError> {
        self.check()?;
        check_connection(connection_id)?;
        if let Some(server) = self.server().await? {
            return Ok(server.connection_exists(connection_id).await?);
        }
        let tail = format!("/connections/{}", segment(connection_id)?);
        self.call(Method::HEAD, &tail, &[], None)
            .await?
            .found(&["Warning.Connection.NotExisted"])
    }

    /// Whether a user has a connection to the hub (REST `HEAD /users/{u}`, 404
    /// `Warning.User.NotExisted` → false; CheckUserExistenceWithAck).
    pub async fn user_exists(&self, user: &str) -> Result<bool, ManagementError> {
        self.check()?;
        check_user(user)?;
        if let Some(server) = self.server().await? {
            return Ok(server.user_exists(user).await?);
        }
        let tail = format!("/users/{}", segment(user)?);
        self.call(Method::HEAD, &tail, &[], None)
            .await?
            .found(&["Warning.User.NotExisted"])
    }

    /// Whether a group has a connection (REST `HEAD /groups/{g}`, 404 `Warning.Group.NotExisted`
    /// → false; CheckGroupExistenceWithAck).
    pub async fn group_exists(&self, group: &str) -> Result<bool, ManagementError> {
        self.check()?;
        check_group(group)?;
        if let Some(server) = self.server().await? {
            return Ok(server.group_exists(group).await?);
        }
        let tail = format!("/groups/{}", segment(group)?);
        self.call(Method::HEAD, &tail, &[], None)
            .await?
            .found(&["Warning.Group.NotExisted"])
    }

    /// Whether a user is in a group (REST `HEAD /users/{u}/groups/{g}`, 404
    /// `Info.User.NotInGroup` → false; CheckUserInGroupWithAck).
    pub async fn is_user_in_group(&self, user: &str, group: &str) -> Result<bool, ManagementError> {
        self.check()?;
        check_user(user)?;
        check_group(group)?;
        if let Some(server) = self.server().await? {
            return Ok(server.groups().is_user_in_group(user, group).await?);
        }
        let tail = format!("/users/{}/groups/{}", segment(user)?, segment(group)?);
        self.call(Method::HEAD, &tail, &[], None)
            .await?
            .found(&["Info.User.NotInGroup"])
    }

    // ----- closes ------------------------------------------------------------------------

    /// Closes a connection; the client gets a Close message whose error is `reason` (REST
    /// `DELETE /connections/{c}?reason=`; Close + CloseConnection). A connection that does not
    /// exist is not an error.
    pub async fn close_connection(
        &self,
        connection_id: &str,
        reason: Option<&str>,
    ) -> Result<(), ManagementError> {
        self.check()?;
        check_connection(connection_id)?;
        if let Some(server) = self.server().await? {
            server.close_connection(connection_id, reason).await?;
            return Ok(());
        }
        let tail = format!("/connections/{}", segment(connection_id)?);
        let extra: Vec<(&str, &str)> = reason.iter().map(|r| ("reason", *r)).collect();
        self.call(Method::DELETE, &tail, &extra, None)
            .await?
            .found(&["Warning.Connection.NotExisted"])
            .map(drop)
    }

    /// Closes every connection of the hub but the `excluded` ones (REST
    /// `POST /:closeConnections?excluded=…&reason=`, in both transports).
    pub async fn close_all(
        &self,
        reason: Option<&str>,
        excluded: &[&str],
    ) -> Result<(), ManagementError> {
        self.check()?;
        let mut extra: Vec<(&str, &str)> = excluded.iter().map(|e| ("excluded", *e)).collect();
        extra.extend(reason.map(|r| ("reason", r)));
        self.call(Method::POST, "/:closeConnections", &extra, None)
            .await?
            .success()
            .map(drop)
    }

    /// Closes every connection of a user (REST `POST /users/{u}/:closeConnections?reason=`;
    /// CloseUserConnectionsWithAck).
    pub async fn close_user(
        &self,
        user: &str,
        reason: Option<&str>,
    ) -> Result<(), ManagementError> {
        self.check()?;
        check_user(user)?;
        if let Some(server) = self.server().await? {
            server.close_user_connections(user, reason).await?;
            return Ok(());
        }
        let tail = format!("/users/{}/:closeConnections", segment(user)?);
        let extra: Vec<(&str, &str)> = reason.iter().map(|r| ("reason", *r)).collect();
        self.call(Method::POST, &tail, &extra, None)
            .await?
            .success()
            .map(drop)
    }

    /// Closes every connection in a group (REST `POST /groups/{g}/:closeConnections?reason=`;
    /// CloseGroupConnectionsWithAck).
    pub async fn close_group(
        &self,
        group: &str,
        reason: Option<&str>,
    ) -> Result<(), ManagementError> {
        self.check()?;
        check_group(group)?;
        if let Some(server) = self.server().await? {
            server.close_group_connections(group, reason).await?;
            return Ok(());
        }
        let tail = format!("/groups/{}/:closeConnections", segment(group)?);
        let extra: Vec<(&str, &str)> = reason.iter().map(|r| ("reason", *r)).collect();
        self.call(Method::POST, &tail, &extra, None)
            .await?
            .success()
            .map(drop)
    }

    // ----- client tokens -----------------------------------------------------------------

    /// Mints a client access token for this hub, locally, as the SDK does: HS256 with the
    /// access key, `aud` = `<scheme>://<host>/client/?hub=<hub>`, `exp` = now + `lifetime`,
    /// `asrs.s.uid` and `nameid` = `user` when given, then `claims` in order (a claim named
    /// like a JWT registered claim becomes `asrs.u.<name>`).
    pub fn generate_client_token(
        &self,
        user: Option<&str>,
        claims: &[(&str, &str)],
        lifetime: Duration,
    ) -> String {
        self.client
            .inner
            .connection_string
            .client_token(&self.service_hub, user, claims, lifetime)
    }

    /// The redirect a serverless app's `POST /negotiate` answers: the client URL of this hub on
    /// the service (`ClientEndpoint` when the connection string has one) and a token from
    /// [`generate_client_token`](Self::generate_client_token).
    pub fn negotiate(
        &self,
        user: Option<&str>,
        claims: &[(&str, &str)],
        lifetime: Duration,
    ) -> NegotiateResponse {
        NegotiateResponse {
            url: self
                .client
                .inner
                .connection_string
                .client_url(&self.service_hub),
            access_token: self.generate_client_token(user, claims, lifetime),
        }
    }
}
