//! What hub code works with: the [`Context`] of the calling client, and the proxies that send to
//! clients ([`HubClients`], [`CallerClients`], [`ClientProxy`], [`SingleClientProxy`]) and manage
//! groups ([`HubGroups`]) — the SDK's `Clients` / `Groups`
//! (`docs/protocol.md#what-the-sdk-sends`).
//!
//! A send serialises its arguments once per hub protocol into a payload map
//! (`docs/protocol.md#payload-maps`) and goes to the service as BroadcastData,
//! GroupBroadcastData, MultiGroupBroadcastData, UserData, MultiUserData or MultiConnectionData.
//! Inside a hub call, sends and group operations go out on the caller's own server connection
//! (as the SDK's `ClientConnectionScope` does), so they keep their order with the caller's
//! Completion. A send to one client routed through this server carries only that client's
//! protocol and uses that client's connection.

use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::oneshot;

use super::SdkError;
use super::client::ClientInfo;
use super::codec;
use super::connection::{CloseClient, ConnCommand, Outbox};
use super::server::{HubServer, RemoteOutcome};
use crate::protocol::service::{Extensions, ServiceMessage};
use crate::protocol::{CompletionOutcome, HubMessage, HubProtocol, RawValue};

/// The client whose message is being handled: identity, request data, and the hub's clients and
/// groups. Cheap to clone; valid after the call returns (sends then fail once the client or its
/// connection is gone).
#[derive(Clone)]
pub struct Context {
    server: HubServer,
    pub(crate) client: Arc<ClientInfo>,
}

impl fmt::Debug for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Context")
            .field("connection_id", &self.client.connection_id)
            .field("user_id", &self.client.user_id)
            .field("protocol", &self.client.protocol)
            .finish_non_exhaustive()
    }
}

impl Context {
    pub(crate) fn new(server: HubServer, client: Arc<ClientInfo>) -> Self {
        Self { server, client }
    }

    /// The client's connection id (assigned by the service).
    pub fn connection_id(&self) -> &str {
        &self.client.connection_id
    }

    /// The user id: the token's `asrs.s.uid`, else its NameIdentifier (`nameid`), else `sub`.
    pub fn user_id(&self) -> Option<&str> {
        self.client.user_id.as_deref()
    }

    /// The client's claims, in order, as the service sent them (.NET long claim types, e.g.
    /// `http://schemas.xmlsoap.org/ws/2005/05/identity/claims/nameidentifier`); system claims
    /// (`asrs.s.*`) and JWT registered claims are left out.
    pub fn claims(&self) -> &[(String, String)] {
        &self.client.claims
    }

    /// The first value of claim `claim_type`. A short JWT name (`role`, `nameid`, `email`, ...)
    /// also finds the .NET long type it is mapped to
    /// ([`dotnet_claim_type`](crate::protocol::auth::dotnet_claim_type)), so `claim("role")` reads
    /// `http://schemas.microsoft.com/ws/2008/06/identity/claims/role`.
    pub fn claim(&self, claim_type: &str) -> Option<&str> {
        let long = crate::protocol::auth::dotnet_claim_type(claim_type);
        let find = |name: &str| {
            self.client
                .claims
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        find(claim_type).or_else(|| if long == claim_type { None } else { find(long) })
    }

    /// The HTTP headers of the client's connect request, as the service forwarded them.
    pub fn headers(&self) -> &[(String, Vec<String>)] {
        &self.client.headers
    }

    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.client
            .headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .and_then(|(_, v)| v.first())
            .map(String::as_str)
    }

    /// The query string of the client's connect request (without `?`), as forwarded.
    pub fn query(&self) -> Option<&str> {
        self.client
            .query
            .as_deref()
            .map(|q| q.strip_prefix('?').unwrap_or(q))
    }

    /// The first value of query parameter `name`, percent-decoded.
    pub fn query_value(&self, name: &str) -> Option<String> {
        let query = self.query()?;
        form_urlencoded::parse(query.as_bytes())
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    }

    /// The hub protocol the client chose in its handshake.
    pub fn protocol(&self) -> HubProtocol {
        self.client.protocol
    }

    /// The hub name.
    pub fn hub(&self) -> &str {
        self.server.hub_name()
    }

    /// The hub server (sends and queries outside the caller's scope).
    pub fn server(&self) -> &HubServer {
        &self.server
    }

    /// The hub's clients, with the caller-relative selections.
    pub fn clients(&self) -> CallerClients {
        CallerClients {
            base: HubClients::new(self.server.clone(), Some(self.client.outbox.clone())),
            caller: self.client.connection_id.clone(),
        }
    }

    /// Group management, on the caller's server connection.
    pub fn groups(&self) -> HubGroups {
        HubGroups::new(self.server.clone(), Some(self.client.outbox.clone()))
    }

    /// Closes the caller (.NET `Context.Abort()`): a plain Close message, then CloseConnection;
    /// `on_disconnected` runs.
    pub async fn abort(&self) -> Result<(), SdkError> {
        self.client
            .outbox
            .send(ConnCommand::CloseClient(CloseClient::by_app(
                &self.client.connection_id,
                None,
            )))
            .await
    }
}

/// Who a [`ClientProxy`] sends to.
#[derive(Clone, Debug)]
enum Target {
    All {
        excluded: Vec<String>,
    },
    Connections(Vec<String>),
    User(String),
    Users(Vec<String>),
    Group {
        group: String,
        excluded: Vec<String>,
    },
    Groups(Vec<String>),
}

fn strings<I, S>(items: I) -> Vec<String>
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    items.into_iter().map(Into::into).collect()
}

/// Selects clients of the hub to send to.
#[derive(Clone)]
pub struct HubClients {
    server: HubServer,
    route: Option<Outbox>,
}

impl fmt::Debug for HubClients {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HubClients").finish_non_exhaustive()
    }
}

impl HubClients {
    pub(crate) fn new(server: HubServer, route: Option<Outbox>) -> Self {
        Self { server, route }
    }

    fn proxy(&self, target: Target) -> ClientProxy {
        ClientProxy {
            server: self.server.clone(),
            route: self.route.clone(),
            target,
        }
    }

    /// Every client of the hub (BroadcastData).
    pub fn all(&self) -> ClientProxy {
        self.proxy(Target::All {
            excluded: Vec::new(),
        })
    }

    /// Every client but the given connections (BroadcastData with an excluded list).
    pub fn all_except<I, S>(&self, excluded: I) -> ClientProxy
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.proxy(Target::All {
            excluded: strings(excluded),
        })
    }

    /// One connection (MultiConnectionData with one id); also offers client results.
    pub fn client(&self, connection_id: impl Into<String>) -> SingleClientProxy {
        SingleClientProxy {
            server: self.server.clone(),
            route: self.route.clone(),
            connection_id: connection_id.into(),
        }
    }

    /// Some connections (MultiConnectionData).
    pub fn clients<I, S>(&self, connection_ids: I) -> ClientProxy
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.proxy(Target::Connections(strings(connection_ids)))
    }

    /// Every connection of a user (UserData).
    pub fn user(&self, user_id: impl Into<String>) -> ClientProxy {
        self.proxy(Target::User(user_id.into()))
    }

    /// Every connection of some users (MultiUserData).
    pub fn users<I, S>(&self, user_ids: I) -> ClientProxy
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.proxy(Target::Users(strings(user_ids)))
    }

    /// Every connection in a group (GroupBroadcastData).
    pub fn group(&self, group: impl Into<String>) -> ClientProxy {
        self.proxy(Target::Group {
            group: group.into(),
            excluded: Vec::new(),
        })
    }

    /// Every connection in a group but the given ones (GroupBroadcastData with an excluded list).
    pub fn group_except<I, S>(&self, group: impl Into<String>, excluded: I) -> ClientProxy
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.proxy(Target::Group {
            group: group.into(),
            excluded: strings(excluded),
        })
    }

    /// Every connection in any of some groups (MultiGroupBroadcastData).
    pub fn groups<I, S>(&self, groups: I) -> ClientProxy
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.proxy(Target::Groups(strings(groups)))
    }
}

/// [`HubClients`] seen from a hub call: adds the caller-relative selections.
#[derive(Clone, Debug)]
pub struct CallerClients {
    base: HubClients,
    caller: String,
}

impl Deref for CallerClients {
    type Target = HubClients;

    fn deref(&self) -> &HubClients {
        &self.base
    }
}

impl CallerClients {
    /// The calling client.
    pub fn caller(&self) -> SingleClientProxy {
        self.base.client(self.caller.clone())
    }

    /// Every client but the caller.
    pub fn others(&self) -> ClientProxy {
        self.base.all_except([self.caller.clone()])
    }

    /// Every connection in `group` but the caller.
    pub fn others_in_group(&self, group: impl Into<String>) -> ClientProxy {
        self.base.group_except(group, [self.caller.clone()])
    }
}

/// Sends hub invocations to a selection of clients.
#[derive(Clone)]
pub struct ClientProxy {
    server: HubServer,
    route: Option<Outbox>,
    target: Target,
}

impl fmt::Debug for ClientProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientProxy")
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

impl ClientProxy {
    /// Invokes client method `method` with `args` on every selected client (no answer).
    ///
    /// `args` is the argument list: a tuple (`("bob", 42)`), `()` for none, or a single value
    /// (`"hello"`); to send one array argument wrap it in a 1-tuple (`(vec![1, 2],)`). It is
    /// serialised once as JSON and once as MessagePack. `Ok` means the service has the message
    /// queued, not that any client received it.
    pub async fn send<A: Serialize>(&self, method: &str, args: A) -> Result<(), SdkError> {
        if let Target::Connections(ids) = &self.target
            && let [id] = ids.as_slice()
        {
            return send_to_connection(&self.server, self.route.as_ref(), id, method, &args).await;
        }
        let payloads = codec::invocation_payloads(method, None, &args)?;
        let extensions = Extensions::default();
        let msg = match &self.target {
            Target::All { excluded } => ServiceMessage::BroadcastData {
                excluded_list: excluded.clone(),
                payloads,
                extensions,
            },
            Target::Connections(ids) => ServiceMessage::MultiConnectionData {
                connection_list: ids.clone(),
                payloads,
                extensions,
            },
            Target::User(user) => ServiceMessage::UserData {
                user_id: user.clone(),
                payloads,
                extensions,
            },
            Target::Users(users) => ServiceMessage::MultiUserData {
                user_list: users.clone(),
                payloads,
                extensions,
            },
            Target::Group { group, excluded } => ServiceMessage::GroupBroadcastData {
                group_name: group.clone(),
                excluded_list: excluded.clone(),
                payloads,
                extensions,
                excluded_user_list: Vec::new(),
                caller_user_id: None,
            },
            Target::Groups(groups) => ServiceMessage::MultiGroupBroadcastData {
                group_list: groups.clone(),
                payloads,
                extensions,
            },
        };
        self.server
            .shared
            .outbox_for(self.route.as_ref())?
            .send_message(&msg)
            .await
    }
}

/// MultiConnectionData to one client; only its protocol's payload, on its own connection, when it
/// is routed through this server.
async fn send_to_connection<A: Serialize>(
    server: &HubServer,
    route: Option<&Outbox>,
    connection_id: &str,
    method: &str,
    args: &A,
) -> Result<(), SdkError> {
    let (payloads, outbox) = match server.shared.local_client(connection_id) {
        Some(client) => {
            client.mark_sent();
            let p = client.protocol;
            (
                vec![(
                    p.name().to_owned(),
                    codec::invocation_frame(p, method, None, args)?,
                )],
                server.shared.outbox_for(Some(&client.outbox))?,
            )
        }
        None => (
            codec::invocation_payloads(method, None, args)?,
            server.shared.outbox_for(route)?,
        ),
    };
    outbox
        .send_message(&ServiceMessage::MultiConnectionData {
            connection_list: vec![connection_id.to_owned()],
            payloads,
            extensions: Extensions::default(),
        })
        .await
}

/// One client: sends and client results.
#[derive(Clone)]
pub struct SingleClientProxy {
    server: HubServer,
    route: Option<Outbox>,
    connection_id: String,
}

impl fmt::Debug for SingleClientProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SingleClientProxy")
            .field("connection_id", &self.connection_id)
            .finish_non_exhaustive()
    }
}

/// Removes a pending client-result entry when its caller stops waiting.
struct PendingGuard<'a> {
    server: &'a HubServer,
    client: Option<&'a ClientInfo>,
    invocation_id: &'a str,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        match self.client {
            Some(client) => {
                client.pending.lock().remove(self.invocation_id);
            }
            None => self.server.shared.forget_remote(self.invocation_id),
        }
    }
}

impl SingleClientProxy {
    /// The connection id.
    pub fn connection_id(&self) -> &str {
        &self.connection_id
    }

    /// Invokes client method `method` with `args` (see [`ClientProxy::send`]); no answer.
    pub async fn send<A: Serialize>(&self, method: &str, args: A) -> Result<(), SdkError> {
        send_to_connection(
            &self.server,
            self.route.as_ref(),
            &self.connection_id,
            method,
            &args,
        )
        .await
    }

    /// Client results (.NET `InvokeAsync<T>`): invokes client method `method` with an
    /// invocation id and waits for the client's Completion, deserialised as `T` (a Completion
    /// without result reads as JSON `null`, so use `()` or `Option<_>` for those).
    ///
    /// A client routed through this server gets the Invocation on its own connection and its
    /// Completion is matched here. Any other client is reached with ClientInvocation
    /// (`docs/protocol.md#client-invocation`); its router server answers with ClientCompletion or
    /// ErrorCompletion. Fails with [`SdkError::ClientError`] when the client answers with an
    /// error (the JS client's `Client didn't provide a result.` included),
    /// [`SdkError::ClientDisconnected`] when it leaves first, and
    /// [`SdkError::InvocationTimeout`] after
    /// [`client_invocation_timeout`](super::HubServerOptions::client_invocation_timeout).
    pub async fn invoke<T: DeserializeOwned, A: Serialize>(
        &self,
        method: &str,
        args: A,
    ) -> Result<T, SdkError> {
        let shared = &self.server.shared;
        let timeout = shared.options.client_invocation_timeout;
        let invocation_id = shared.next_invocation_id();
        if let Some(client) = shared.local_client(&self.connection_id) {
            let frame =
                codec::invocation_frame(client.protocol, method, Some(&invocation_id), &args)?;
            let (tx, rx) = oneshot::channel();
            client.pending.lock().insert(invocation_id.clone(), tx);
            let _guard = PendingGuard {
                server: &self.server,
                client: Some(client.as_ref()),
                invocation_id: &invocation_id,
            };
            if client.is_closed() {
                return Err(SdkError::ClientDisconnected(self.connection_id.clone()));
            }
            client.send_payload(frame).await?;
            let outcome = match tokio::time::timeout(timeout, rx).await {
                Err(_) => return Err(SdkError::InvocationTimeout(timeout)),
                Ok(Err(_)) => return Err(SdkError::ClientDisconnected(self.connection_id.clone())),
                Ok(Ok(outcome)) => outcome,
            };
            return completion_value(outcome);
        }
        let payloads = codec::invocation_payloads(method, Some(&invocation_id), &args)?;
        let rx = shared.register_remote(&invocation_id);
        let _guard = PendingGuard {
            server: &self.server,
            client: None,
            invocation_id: &invocation_id,
        };
        shared
            .outbox_for(self.route.as_ref())?
            .send_message(&ServiceMessage::ClientInvocation {
                invocation_id: invocation_id.clone(),
                connection_id: self.connection_id.clone(),
                caller_server_id: shared.server_id.clone(),
                payloads,
                extensions: Extensions::default(),
            })
            .await?;
        match tokio::time::timeout(timeout, rx).await {
            Err(_) => Err(SdkError::InvocationTimeout(timeout)),
            Ok(Err(_)) => Err(SdkError::ClientDisconnected(self.connection_id.clone())),
            Ok(Ok(RemoteOutcome::Error(error))) => Err(SdkError::ClientError(error)),
            Ok(Ok(RemoteOutcome::Completion { protocol, payload })) => {
                let protocol = HubProtocol::from_name(&protocol).ok_or_else(|| {
                    SdkError::Deserialize(format!("unknown completion protocol '{protocol}'"))
                })?;
                let max = payload.len().max(1);
                match protocol.decode_bytes(&payload, max) {
                    Ok(Some(decoded)) => match decoded.message {
                        Some(HubMessage::Completion(c)) => completion_value(c.outcome),
                        other => Err(SdkError::Deserialize(format!(
                            "the client completion is not a Completion message: {other:?}"
                        ))),
                    },
                    Ok(None) => Err(SdkError::Deserialize(
                        "the client completion is incomplete".into(),
                    )),
                    Err(err) => Err(SdkError::Deserialize(err.to_string())),
                }
            }
        }
    }
}

/// The value of a client's Completion.
fn completion_value<T: DeserializeOwned>(outcome: CompletionOutcome) -> Result<T, SdkError> {
    match outcome {
        CompletionOutcome::Error(error) => Err(SdkError::ClientError(error)),
        CompletionOutcome::Result(raw) => codec::from_raw(&raw).map_err(SdkError::Deserialize),
        CompletionOutcome::Void => {
            codec::from_raw(&RawValue::Json(bytes::Bytes::from_static(b"null")))
                .map_err(SdkError::Deserialize)
        }
    }
}

/// Group membership of connections and users, acknowledged by the service (10 s timeout).
#[derive(Clone)]
pub struct HubGroups {
    server: HubServer,
    route: Option<Outbox>,
}

impl fmt::Debug for HubGroups {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HubGroups").finish_non_exhaustive()
    }
}

impl HubGroups {
    pub(crate) fn new(server: HubServer, route: Option<Outbox>) -> Self {
        Self { server, route }
    }

    async fn ack(&self, build: impl FnOnce(i32) -> ServiceMessage) -> Result<bool, SdkError> {
        self.server
            .shared
            .ack_request(self.route.as_ref(), build)
            .await
    }

    /// Adds a connection to a group (JoinGroupWithAck). `Ok(false)`: the service reports the
    /// connection does not exist.
    pub async fn add(&self, connection_id: &str, group: &str) -> Result<bool, SdkError> {
        self.ack(|ack_id| ServiceMessage::JoinGroupWithAck {
            connection_id: connection_id.to_owned(),
            group_name: group.to_owned(),
            ack_id,
            extensions: Extensions::default(),
        })
        .await
    }

    /// Removes a connection from a group (LeaveGroupWithAck). `Ok(false)`: not found.
    pub async fn remove(&self, connection_id: &str, group: &str) -> Result<bool, SdkError> {
        self.ack(|ack_id| ServiceMessage::LeaveGroupWithAck {
            connection_id: connection_id.to_owned(),
            group_name: Some(group.to_owned()),
            ack_id,
            extensions: Extensions::default(),
        })
        .await
    }

    /// Removes a connection from every group (LeaveGroupWithAck without a group).
    pub async fn remove_from_all(&self, connection_id: &str) -> Result<bool, SdkError> {
        self.ack(|ack_id| ServiceMessage::LeaveGroupWithAck {
            connection_id: connection_id.to_owned(),
            group_name: None,
            ack_id,
            extensions: Extensions::default(),
        })
        .await
    }

    /// Adds a user (all its connections, present and future) to a group
    /// (UserJoinGroupWithAck), for `ttl` when given.
    pub async fn add_user(
        &self,
        user_id: &str,
        group: &str,
        ttl: Option<std::time::Duration>,
    ) -> Result<bool, SdkError> {
        let ttl = ttl.map(|d| i32::try_from(d.as_secs()).unwrap_or(i32::MAX));
        self.ack(|ack_id| ServiceMessage::UserJoinGroupWithAck {
            user_id: user_id.to_owned(),
            group_name: group.to_owned(),
            ack_id,
            extensions: Extensions {
                ttl,
                ..Extensions::default()
            },
        })
        .await
    }

    /// Removes a user from a group (UserLeaveGroupWithAck).
    pub async fn remove_user(&self, user_id: &str, group: &str) -> Result<bool, SdkError> {
        self.ack(|ack_id| ServiceMessage::UserLeaveGroupWithAck {
            user_id: user_id.to_owned(),
            group_name: Some(group.to_owned()),
            ack_id,
            extensions: Extensions::default(),
        })
        .await
    }

    /// Removes a user from every group (UserLeaveGroupWithAck without a group).
    pub async fn remove_user_from_all(&self, user_id: &str) -> Result<bool, SdkError> {
        self.ack(|ack_id| ServiceMessage::UserLeaveGroupWithAck {
            user_id: user_id.to_owned(),
            group_name: None,
            ack_id,
            extensions: Extensions::default(),
        })
        .await
    }

    /// Whether a user is in a group (CheckUserInGroupWithAck).
    pub async fn is_user_in_group(&self, user_id: &str, group: &str) -> Result<bool, SdkError> {
        self.ack(|ack_id| ServiceMessage::CheckUserInGroupWithAck {
            user_id: user_id.to_owned(),
            group_name: group.to_owned(),
            ack_id,
            extensions: Extensions::default(),
        })
        .await
    }

    /// Whether a group has any connection (CheckGroupExistenceWithAck).
    pub async fn exists(&self, group: &str) -> Result<bool, SdkError> {
        self.ack(|ack_id| ServiceMessage::CheckGroupExistenceWithAck {
            group_name: group.to_owned(),
            ack_id,
            extensions: Extensions::default(),
        })
        .await
    }
}
