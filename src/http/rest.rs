//! The data-plane REST API (`spec/service-protocol.md` §4): what applications and the Azure
//! SignalR Management SDK call to send messages, manage groups and close connections.
//!
//! This module owns request parsing (path, query, body), authorization and the mapping of each
//! outcome to a status code and `x-ms-error-code`. It holds no state: every operation is one call
//! on a [`HubHandle`](crate::hub::HubHandle). It must not create a hub for a send or a check
//! (only for adding a user to a group, which has to outlive the call), and it never
//! re-serialises argument values.
//!
//! # Routes
//!
//! Every path below is served under both `/api/` (the api-version 2022-06-01 family, "new") and
//! `/api/v1/` ("v1"), as the emulator does; the prefix chooses the status-code family where the
//! two differ. `{hub}` may be combined with `?application=<app>`: the hub is then
//! `<app lower>_<hub lower>`. `api-version` is accepted with any value, or none.
//!
//! | method | path (after `/api/` or `/api/v1/`) | OK | not found |
//! | --- | --- | --- | --- |
//! | GET, HEAD | `health` (no token; [`super::health`] registers it first, this is the fallback) | 200 | – |
//! | POST | `hubs/{hub}`, `hubs/{hub}/:send` (`excluded`*) | 202 | – |
//! | POST | `hubs/{hub}/:closeConnections` (`excluded`*, `reason`) | 204 | – |
//! | POST | `hubs/{hub}/:generateToken` (`userId`, `minutesToExpire`) | 200 `{"token"}` | – |
//! | POST | `hubs/{hub}/users/{user}`, `…/users/{user}/:send` | 202 | – |
//! | GET, HEAD | `hubs/{hub}/users/{user}` | 200 | 404 `Warning.User.NotExisted` |
//! | POST | `hubs/{hub}/users/{user}/:closeConnections` (`excluded`*, `reason`) | 204 | – |
//! | DELETE | `hubs/{hub}/users/{user}/groups` | new 204, v1 200 | – |
//! | GET, HEAD | `hubs/{hub}/users/{user}/groups/{group}`, `…/groups/{group}/users/{user}` | 200 | 404 `Info.User.NotInGroup` |
//! | PUT | same two forms (`ttl`) | new 200, v1 202 | – |
//! | DELETE | same two forms | new 204, v1 202 | – |
//! | POST | `hubs/{hub}/groups/{group}`, `…/groups/{group}/:send` (`excluded`*) | 202 | – |
//! | GET, HEAD | `hubs/{hub}/groups/{group}` | 200 | 404 `Warning.Group.NotExisted` |
//! | POST | `hubs/{hub}/groups/{group}/:closeConnections` (`excluded`*, `reason`) | 204 | – |
//! | GET | `hubs/{hub}/groups/{group}/connections` (`maxpagesize`, `top`, `continuationToken`) | 200 `{"value","nextLink"?}` | – |
//! | PUT | `hubs/{hub}/groups/{group}/connections/{id}`, `…/connections/{id}/groups/{group}` | 200 | 404 `Error.Connection.NotExisted` |
//! | DELETE | same two forms | 200 | 404 `Error.Connection.NotExisted` |
//! | POST | `hubs/{hub}/connections/{id}`, `…/connections/{id}/:send` | 202 | – |
//! | GET, HEAD | `hubs/{hub}/connections/{id}` | 200 | 404 `Warning.Connection.NotExisted` |
//! | DELETE | `hubs/{hub}/connections/{id}` (`reason`) | new 200, v1 202 | new 404 `Warning.Connection.NotExisted`, v1 202 |
//! | DELETE | `hubs/{hub}/connections/{id}/groups` | 200 | – |
//! | POST | `hubs/{hub}/:execute`, `…/connections/{id}/:invoke`, `…/connections/{id}/streams/{s}/:send` and `/:complete` | 501 | – |
//! | GET | `auth/accessKey` (Microsoft Entra) | 501 | – |
//!
//! `*` `excluded` is a repeated query parameter. Path literals and query names match
//! case-insensitively (as ASP.NET Core routing and binding do); path segments are
//! percent-decoded after splitting, so `%2F` stays inside a group name.
//!
//! # Rules
//!
//! * Auth: `Authorization: Bearer <jwt>` only; audience = the request path (query ignored, see
//!   [`crate::auth`]). Everything except `health` needs a token; a missing, forged or expired
//!   token, or one minted for another path or for a client, is 401. Routing comes first, so an
//!   unknown path is 404 and a wrong method 405 without a token.
//! * Check order: route → token → names (hub, application, group, user, connection id) → query
//!   parameters → content type (415) → body size (413) → body (400).
//! * Send bodies: `application/json` (any parameters; also `text/json` and `*/*+json`; a request
//!   without `Content-Type` is read as JSON) `{"target": "...", "arguments": [...]}` with keys
//!   matched case-insensitively (the last of duplicate keys wins); `target` a non-empty string,
//!   `arguments` an array, absent or null meaning `[]`; other keys are ignored. The argument text
//!   is kept as sent. `application/octet-stream`, `application/x-msgpack` (and
//!   `application/msgpack`, `application/vnd.msgpack`): a MessagePack map of protocol name → bin,
//!   keys case-insensitive; `json` and `messagepack` are used, other protocols ignored; each bin
//!   must decode as one or more complete framed hub messages of its protocol that the JS client
//!   accepts, and at least one of the two must be present.
//! * Every error is JSON (`{"code","message"}` + `x-ms-error-code`, from [`ApiError`]); HEAD
//!   responses carry the status and headers only. The body is read by this module (not by an
//!   actix extractor), so no plain-text actix error can escape; a body over
//!   `limits.max_rest_body_size` is 413 after draining at most a few more megabytes of it, so that
//!   the client can read the answer.
//! * Sends, checks and removals use [`HubRegistry::get`](crate::hub::HubRegistry::get): a hub
//!   nobody used has no members, so a send is 202 and nothing happens. Only adding a user to a
//!   group creates the hub, because that membership applies to connections opened later.
//! * `ttl` (user → group): absent or empty = [`MembershipTtl::Unlimited`], `0` =
//!   [`MembershipTtl::CurrentConnectionsOnly`], `N` = `N` seconds; negative or not an integer is 400.
//! * `rest_requests` counts every request, `rest_errors` every 4xx answer (including the 404s of
//!   checks), `auth_failures` every 401.
//!
//! # Choices where the spec says (inferred) or (unknown)
//!
//! * Sends to a user, group or connection that does not exist are 202 no-ops (spec: inferred).
//! * User-group membership without ttl applies to the user's later connections (spec: inferred);
//!   `ttl=0` only adds the current connections.
//! * DELETE of a connection from a group answers 404 `Error.Connection.NotExisted` when the
//!   connection does not exist (the swagger lists a bare 404; the code is the emulator's).
//!   DELETE `connections/{id}/groups` is always 200 (swagger lists only 200; the current SDK
//!   treats any 404 there as an error).
//! * v1 DELETE `users/{user}/groups` ("200 or 202") answers 200.
//! * A v1 DELETE of a missing connection is 202 (the v1 table lists no 404; the emulator answers 202).
//! * GET is accepted wherever HEAD is (the SDK checks user-in-group with GET).
//! * `:generateToken` mints a client token like the SDK (`nameid` = `userId`) for the effective
//!   hub; `minutesToExpire` must be an integer from 1 to 525600 (one year). The `role` and
//!   `group` parameters of later API versions are ignored.
//! * Group connection listing: `maxpagesize` 1..=200 (default 200), `top` ≥ 1 caps the total over
//!   all pages; both are 400 outside that. The list is ordered by connection id and the
//!   `continuationToken` is the base64url (no padding) of the last id returned; the next page
//!   starts after it. `nextLink` is an absolute URL on the public endpoint carrying
//!   `application`, `api-version`, `maxpagesize`, the remaining `top` and the token.
//! * Error codes of the 4xx answers this module makes up: `Error.InvalidRequest` (400),
//!   `Error.Unauthorized` (401), `Error.NotFound` (404 route), `Error.MethodNotAllowed` (405),
//!   `Error.PayloadTooLarge` (413), `Error.UnsupportedMediaType` (415), `Error.NotImplemented` (501).

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::{HttpRequest, HttpResponse, ResponseError as _, web};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt as _;
use percent_encoding::percent_decode_str;
use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

use super::{ApiError, bearer_token};
use crate::auth::Audience;
use crate::conn::ConnectionId;
use crate::hub::{
    ExistsQuery, GroupName, HubGone, MembershipTtl, Scope, SerializedMessage, UserId,
    validate_group_name, validate_hub_name, validate_user_id,
};
use crate::protocol::{self, HubProtocol};
use crate::switchboard::{Shared, client_token};
use crate::telemetry::Metrics;

/// Register the REST routes (one handler for everything under `/api/`).
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/api/{tail:.*}").to(handle));
}

/// Largest `maxpagesize` of the group connection listing.
const MAX_PAGE_SIZE: usize = 200;
/// Largest `minutesToExpire` of `:generateToken` (one year).
const MAX_TOKEN_MINUTES: u64 = 365 * 24 * 60;
/// Bytes of an oversized body read and discarded before answering 413, so that the client is
/// still reading when the answer comes (beyond this the connection is simply closed).
const MAX_DRAIN_BYTES: usize = 8 * 1024 * 1024;
/// How long draining an oversized or refused body may take.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

async fn handle(
    req: HttpRequest,
    payload: web::Payload,
    shared: web::Data<Shared>,
) -> HttpResponse {
    let metrics = &shared.metrics;
    Metrics::inc(&metrics.rest_requests);
    let head = req.method() == Method::HEAD;
    let resp = match dispatch(&req, payload, &shared).await {
        Ok(resp) => resp,
        Err(err) => {
            tracing::debug!(status = err.status.as_u16(), code = %err.code, path = req.path(), "REST request refused");
            if err.status == StatusCode::UNAUTHORIZED {
                Metrics::inc(&metrics.auth_failures);
            }
            error_response(&err, head)
        }
    };
    if resp.status().is_client_error() {
        Metrics::inc(&metrics.rest_errors);
    }
    resp
}

/// The JSON error, or for HEAD only its status and headers.
fn error_response(err: &ApiError, head: bool) -> HttpResponse {
    let mut resp = if head {
        let mut b = HttpResponse::build(err.status);
        if let Ok(v) = HeaderValue::from_str(&err.code) {
            b.insert_header(("x-ms-error-code", v));
        }
        b.finish()
    } else {
        err.error_response()
    };
    if err.status == StatusCode::UNAUTHORIZED {
        resp.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    resp
}

async fn dispatch(
    req: &HttpRequest,
    payload: web::Payload,
    shared: &Shared,
) -> Result<HttpResponse, ApiError> {
    if req.method() == Method::OPTIONS {
        // Preflights are answered by the CORS middleware; a bare OPTIONS gets the same answer.
        return Ok(HttpResponse::NoContent().finish());
    }
    let route = resolve(req.method(), req.path())?;
    let Some(hub_name) = route.hub.as_deref() else {
        return match route.op {
            Op::Health => Ok(HttpResponse::Ok().finish()),
            Op::Unsupported(what) => {
                authorize(req, shared)?;
                Err(not_implemented(what))
            }
            // Only `health` and `auth/accessKey` have no hub (see `resolve`).
            _ => Err(route_not_found(req.method(), req.path())),
        };
    };
    authorize(req, shared)?;
    let query = Query::parse(req.query_string());
    let hub = effective_hub(hub_name, query.first("application"))?;
    validate_op(&route.op)?;
    let v1 = route.v1;

    match route.op {
        Op::Health => Ok(HttpResponse::Ok().finish()),
        Op::Unsupported(what) => Err(not_implemented(what)),

        Op::Broadcast => {
            let excluded = query.excluded();
            let msg = read_message(req, payload, shared).await?;
            if let Some(h) = shared.hubs.get(&hub) {
                h.send_all(msg, excluded)
                    .await
                    .map_err(|e| gone(shared, e))?;
            }
            Ok(HttpResponse::Accepted().finish())
        }
        Op::SendUser(user) => {
            let msg = read_message(req, payload, shared).await?;
            if let Some(h) = shared.hubs.get(&hub) {
                h.send_user(UserId::from(user), msg)
                    .await
                    .map_err(|e| gone(shared, e))?;
            }
            Ok(HttpResponse::Accepted().finish())
        }
        Op::SendGroup(group) => {
            let excluded = query.excluded();
            let msg = read_message(req, payload, shared).await?;
            if let Some(h) = shared.hubs.get(&hub) {
                h.send_group(GroupName::from(group), msg, excluded)
                    .await
                    .map_err(|e| gone(shared, e))?;
            }
            Ok(HttpResponse::Accepted().finish())
        }
        Op::SendConnection(id) => {
            let msg = read_message(req, payload, shared).await?;
            if let Some(h) = shared.hubs.get(&hub) {
                h.send_connection(ConnectionId::from(id.as_str()), msg)
                    .await
                    .map_err(|e| gone(shared, e))?;
            }
            Ok(HttpResponse::Accepted().finish())
        }

        Op::CloseAll => close_many(shared, &hub, Scope::All, &query).await,
        Op::CloseUser(user) => {
            close_many(shared, &hub, Scope::User(UserId::from(user)), &query).await
        }
        Op::CloseGroup(group) => {
            close_many(shared, &hub, Scope::Group(GroupName::from(group)), &query).await
        }
        Op::CloseConnection(id) => {
            let reason = query
                .first("reason")
                .filter(|r| !r.is_empty())
                .map(str::to_owned);
            let existed = match shared.hubs.get(&hub) {
                Some(h) => h
                    .close_connection(ConnectionId::from(id.as_str()), reason)
                    .await
                    .map_err(|e| gone(shared, e))?,
                None => false,
            };
            match (v1, existed) {
                (true, _) => Ok(HttpResponse::Accepted().finish()),
                (false, true) => Ok(HttpResponse::Ok().finish()),
                (false, false) => Err(connection_missing("Warning.Connection.NotExisted", &id)),
            }
        }

        Op::ConnectionExists(id) => {
            let q = ExistsQuery::Connection(ConnectionId::from(id.as_str()));
            check(shared, &hub, q, || {
                connection_missing("Warning.Connection.NotExisted", &id)
            })
            .await
        }
        Op::UserExists(user) => {
            let err = || {
                ApiError::not_found(
                    "Warning.User.NotExisted",
                    format!("User '{user}' has no connection."),
                )
            };
            check(
                shared,
                &hub,
                ExistsQuery::User(UserId::from(user.as_str())),
                err,
            )
            .await
        }
        Op::GroupExists(group) => {
            let err = || {
                ApiError::not_found(
                    "Warning.Group.NotExisted",
                    format!("Group '{group}' has no connection."),
                )
            };
            check(
                shared,
                &hub,
                ExistsQuery::Group(GroupName::from(group.as_str())),
                err,
            )
            .await
        }
        Op::UserInGroup { user, group } => {
            let q = ExistsQuery::UserInGroup(
                UserId::from(user.as_str()),
                GroupName::from(group.as_str()),
            );
            let err = || {
                ApiError::not_found(
                    "Info.User.NotInGroup",
                    format!("User '{user}' is not in group '{group}'."),
                )
            };
            check(shared, &hub, q, err).await
        }

        Op::AddConnectionToGroup { group, id } => {
            let added = match shared.hubs.get(&hub) {
                Some(h) => h
                    .add_to_group(ConnectionId::from(id.as_str()), GroupName::from(group))
                    .await
                    .map_err(|e| gone(shared, e))?,
                None => false,
            };
            if added {
                Ok(HttpResponse::Ok().finish())
            } else {
                Err(connection_missing("Error.Connection.NotExisted", &id))
            }
        }
        Op::RemoveConnectionFromGroup { group, id } => {
            let existed = match shared.hubs.get(&hub) {
                Some(h) => h
                    .remove_from_group(ConnectionId::from(id.as_str()), GroupName::from(group))
                    .await
                    .map_err(|e| gone(shared, e))?,
                None => false,
            };
            if existed {
                Ok(HttpResponse::Ok().finish())
            } else {
                Err(connection_missing("Error.Connection.NotExisted", &id))
            }
        }
        Op::RemoveConnectionFromAllGroups(id) => {
            if let Some(h) = shared.hubs.get(&hub) {
                // Leaving every group is idempotent: a missing connection is in none.
                let _existed = h
                    .remove_from_all_groups(ConnectionId::from(id.as_str()))
                    .await
                    .map_err(|e| gone(shared, e))?;
            }
            Ok(HttpResponse::Ok().finish())
        }

        Op::AddUserToGroup { user, group } => {
            let ttl = parse_ttl(query.first("ttl"))?;
            shared
                .hubs
                .get_or_create(&hub)
                .add_user_to_group(UserId::from(user), GroupName::from(group), ttl)
                .await
                .map_err(|e| gone(shared, e))?;
            Ok(if v1 {
                HttpResponse::Accepted().finish()
            } else {
                HttpResponse::Ok().finish()
            })
        }
        Op::RemoveUserFromGroup { user, group } => {
            if let Some(h) = shared.hubs.get(&hub) {
                h.remove_user_from_group(UserId::from(user), GroupName::from(group))
                    .await
                    .map_err(|e| gone(shared, e))?;
            }
            Ok(if v1 {
                HttpResponse::Accepted().finish()
            } else {
                HttpResponse::NoContent().finish()
            })
        }
        Op::RemoveUserFromAllGroups(user) => {
            if let Some(h) = shared.hubs.get(&hub) {
                h.remove_user_from_all_groups(UserId::from(user))
                    .await
                    .map_err(|e| gone(shared, e))?;
            }
            Ok(if v1 {
                HttpResponse::Ok().finish()
            } else {
                HttpResponse::NoContent().finish()
            })
        }

        Op::ListGroupConnections(group) => {
            list_group_connections(req, shared, &hub, group, &query).await
        }
        Op::GenerateToken => generate_token(shared, &hub, &query),
    }
}

/// Validate the token: Bearer header only, audience = the request path.
fn authorize(req: &HttpRequest, shared: &Shared) -> Result<(), ApiError> {
    let Some(token) = bearer_token(req, false) else {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "Error.Unauthorized",
            "Unauthorized: no access token was provided; REST calls need 'Authorization: Bearer <token>'.",
        ));
    };
    shared.keys.validate(
        &token,
        Audience::Rest { path: req.path() },
        shared.config.limits.token_clock_skew_secs,
    )?;
    Ok(())
}

/// The hub name the operation applies to: `<app lower>_<hub lower>` with an application.
fn effective_hub(hub: &str, application: Option<&str>) -> Result<String, ApiError> {
    validate_hub_name(hub).map_err(ApiError::bad_request)?;
    match application.filter(|a| !a.is_empty()) {
        None => Ok(hub.to_owned()),
        Some(app) => {
            validate_hub_name(app).map_err(|_| {
                ApiError::bad_request(format!(
                    "Invalid application name '{app}': it must start with a letter and contain at most 128 letters, digits or the characters _`,.[]"
                ))
            })?;
            Ok(format!(
                "{}_{}",
                app.to_ascii_lowercase(),
                hub.to_ascii_lowercase()
            ))
        }
    }
}

fn validate_op(op: &Op) -> Result<(), ApiError> {
    let group = |g: &str| validate_group_name(g).map_err(ApiError::bad_request);
    let user = |u: &str| validate_user_id(u).map_err(ApiError::bad_request);
    let conn = |c: &str| {
        if c.is_empty() {
            Err(ApiError::bad_request(
                "Invalid connection id: it must not be empty.",
            ))
        } else {
            Ok(())
        }
    };
    match op {
        Op::Health | Op::Unsupported(_) | Op::Broadcast | Op::CloseAll | Op::GenerateToken => {
            Ok(())
        }
        Op::SendUser(u) | Op::CloseUser(u) | Op::UserExists(u) | Op::RemoveUserFromAllGroups(u) => {
            user(u)
        }
        Op::SendGroup(g) | Op::CloseGroup(g) | Op::GroupExists(g) | Op::ListGroupConnections(g) => {
            group(g)
        }
        Op::SendConnection(c)
        | Op::CloseConnection(c)
        | Op::ConnectionExists(c)
        | Op::RemoveConnectionFromAllGroups(c) => conn(c),
        Op::UserInGroup { user: u, group: g }
        | Op::AddUserToGroup { user: u, group: g }
        | Op::RemoveUserFromGroup { user: u, group: g } => {
            user(u)?;
            group(g)
        }
        Op::AddConnectionToGroup { group: g, id }
        | Op::RemoveConnectionFromGroup { group: g, id } => {
            group(g)?;
            conn(id)
        }
    }
}

/// An existence check: 200, or 404 with the error `missing` makes.
async fn check(
    shared: &Shared,
    hub: &str,
    query: ExistsQuery,
    missing: impl FnOnce() -> ApiError,
) -> Result<HttpResponse, ApiError> {
    let exists = match shared.hubs.get(hub) {
        Some(h) => h.exists(query).await.map_err(|e| gone(shared, e))?,
        None => false,
    };
    if exists {
        Ok(HttpResponse::Ok().finish())
    } else {
        Err(missing())
    }
}

async fn close_many(
    shared: &Shared,
    hub: &str,
    scope: Scope,
    query: &Query,
) -> Result<HttpResponse, ApiError> {
    let reason = query
        .first("reason")
        .filter(|r| !r.is_empty())
        .map(str::to_owned);
    if let Some(h) = shared.hubs.get(hub) {
        h.close_connections(scope, query.excluded(), reason)
            .await
            .map_err(|e| gone(shared, e))?;
    }
    Ok(HttpResponse::NoContent().finish())
}

fn generate_token(shared: &Shared, hub: &str, query: &Query) -> Result<HttpResponse, ApiError> {
    let user = query.first("userId").filter(|u| !u.is_empty());
    if let Some(u) = user {
        validate_user_id(u).map_err(ApiError::bad_request)?;
    }
    let minutes = match query.first("minutesToExpire").filter(|m| !m.is_empty()) {
        None => 60,
        Some(m) => match m.trim().parse::<u64>() {
            Ok(n) if (1..=MAX_TOKEN_MINUTES).contains(&n) => n,
            _ => {
                return Err(ApiError::bad_request(format!(
                    "Invalid minutesToExpire '{m}': it must be an integer from 1 to {MAX_TOKEN_MINUTES}."
                )));
            }
        },
    };
    let token = client_token(shared, hub, user, Duration::from_secs(minutes * 60));
    Ok(json_response(
        StatusCode::OK,
        &serde_json::json!({ "token": token }),
    ))
}

async fn list_group_connections(
    req: &HttpRequest,
    shared: &Shared,
    hub: &str,
    group: String,
    query: &Query,
) -> Result<HttpResponse, ApiError> {
    let page_size = match query.first("maxpagesize").filter(|v| !v.is_empty()) {
        None => MAX_PAGE_SIZE,
        Some(v) => match v.trim().parse::<usize>() {
            Ok(n) if (1..=MAX_PAGE_SIZE).contains(&n) => n,
            _ => {
                return Err(ApiError::bad_request(format!(
                    "Invalid maxpagesize '{v}': it must be an integer from 1 to {MAX_PAGE_SIZE}."
                )));
            }
        },
    };
    let top = match query.first("top").filter(|v| !v.is_empty()) {
        None => None,
        Some(v) => match v.trim().parse::<usize>() {
            Ok(n) if n >= 1 => Some(n),
            _ => {
                return Err(ApiError::bad_request(format!(
                    "Invalid top '{v}': it must be a positive integer."
                )));
            }
        },
    };
    let after =
        match query.first("continuationToken").filter(|v| !v.is_empty()) {
            None => None,
            Some(t) => Some(decode_continuation(t).ok_or_else(|| {
                ApiError::bad_request(format!("Invalid continuationToken '{t}'."))
            })?),
        };

    let members = match shared.hubs.get(hub) {
        Some(h) => h
            .group_connections(GroupName::from(group))
            .await
            .map_err(|e| gone(shared, e))?,
        None => Vec::new(),
    };
    let start = match &after {
        Some(last) => members.partition_point(|m| m.connection_id.as_str() <= last.as_str()),
        None => 0,
    };
    let limit = top.map_or(page_size, |t| t.min(page_size));
    let end = members.len().min(start + limit);
    let page = &members[start..end];
    let remaining_top = top.map(|t| t - page.len());
    let more = end < members.len() && remaining_top != Some(0);

    let value: Vec<serde_json::Value> = page
        .iter()
        .map(|m| {
            let mut item = serde_json::Map::new();
            item.insert("connectionId".into(), m.connection_id.as_str().into());
            if let Some(u) = &m.user_id {
                item.insert("userId".into(), u.as_str().into());
            }
            serde_json::Value::Object(item)
        })
        .collect();
    let mut body = serde_json::Map::new();
    body.insert("value".into(), value.into());
    if more && let Some(last) = page.last() {
        let mut q = form_urlencoded::Serializer::new(String::new());
        for name in ["application", "api-version"] {
            if let Some(v) = query.first(name) {
                q.append_pair(name, v);
            }
        }
        q.append_pair("maxpagesize", &page_size.to_string());
        if let Some(t) = remaining_top {
            q.append_pair("top", &t.to_string());
        }
        q.append_pair(
            "continuationToken",
            &URL_SAFE_NO_PAD.encode(last.connection_id.as_str()),
        );
        let link = format!("{}{}?{}", shared.public_endpoint, req.path(), q.finish());
        body.insert("nextLink".into(), link.into());
    }
    Ok(json_response(
        StatusCode::OK,
        &serde_json::Value::Object(body),
    ))
}

fn decode_continuation(token: &str) -> Option<String> {
    let bytes = URL_SAFE_NO_PAD.decode(token.trim_end_matches('=')).ok()?;
    String::from_utf8(bytes).ok()
}

fn parse_ttl(ttl: Option<&str>) -> Result<MembershipTtl, ApiError> {
    match ttl.map(str::trim).filter(|t| !t.is_empty()) {
        None => Ok(MembershipTtl::Unlimited),
        Some(t) => match t.parse::<u64>() {
            Ok(0) => Ok(MembershipTtl::CurrentConnectionsOnly),
            Ok(n) => Ok(MembershipTtl::For(Duration::from_secs(n))),
            Err(_) => Err(ApiError::bad_request(format!(
                "Invalid ttl '{t}': it must be a non-negative integer number of seconds."
            ))),
        },
    }
}

fn json_response(status: StatusCode, body: &serde_json::Value) -> HttpResponse {
    HttpResponse::build(status)
        .insert_header((
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        ))
        .body(body.to_string())
}

fn gone(shared: &Shared, e: HubGone) -> ApiError {
    Metrics::inc(&shared.metrics.hub_unavailable);
    ApiError::from(e)
}

fn connection_missing(code: &str, id: &str) -> ApiError {
    ApiError::not_found(code, format!("Connection '{id}' does not exist."))
}

fn not_implemented(what: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_IMPLEMENTED,
        "Error.NotImplemented",
        format!("{what} is not supported yet by Switchboard."),
    )
}

fn route_not_found(method: &Method, path: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "Error.NotFound",
        format!("No REST API at {method} {path}."),
    )
}

// ---------------------------------------------------------------------------------------------
// Bodies

/// What a send body is encoded as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BodyKind {
    Json,
    MessagePack,
}

fn body_kind(req: &HttpRequest) -> Result<BodyKind, ApiError> {
    let Some(value) = req.headers().get(header::CONTENT_TYPE) else {
        return Ok(BodyKind::Json);
    };
    let text = value.to_str().unwrap_or("");
    let mime = text
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match mime.as_str() {
        "application/json" | "text/json" => Ok(BodyKind::Json),
        m if m.ends_with("+json") => Ok(BodyKind::Json),
        "application/octet-stream"
        | "application/x-msgpack"
        | "application/msgpack"
        | "application/vnd.msgpack" => Ok(BodyKind::MessagePack),
        _ => Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Error.UnsupportedMediaType",
            format!(
                "Unsupported content type '{text}': send 'application/json' or 'application/octet-stream' (a MessagePack payload map)."
            ),
        )),
    }
}

/// Read and decode a send body into a message.
async fn read_message(
    req: &HttpRequest,
    payload: web::Payload,
    shared: &Shared,
) -> Result<Arc<SerializedMessage>, ApiError> {
    let kind = match body_kind(req) {
        Ok(kind) => kind,
        Err(e) => {
            drain(payload).await;
            return Err(e);
        }
    };
    let limit = shared.config.limits.max_rest_body_size;
    let body = read_body(req, payload, limit).await?;
    let msg = match kind {
        BodyKind::Json => parse_json_message(&body)?,
        BodyKind::MessagePack => parse_payload_map(&body, limit)?,
    };
    Ok(Arc::new(msg))
}

fn too_large(limit: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "Error.PayloadTooLarge",
        format!("The request body is larger than the limit of {limit} bytes."),
    )
}

async fn read_body(
    req: &HttpRequest,
    mut payload: web::Payload,
    limit: usize,
) -> Result<Bytes, ApiError> {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<usize>().ok());
    if declared.is_some_and(|len| len > limit) {
        drain(payload).await;
        return Err(too_large(limit));
    }
    let mut buf = BytesMut::with_capacity(declared.unwrap_or(0));
    while let Some(chunk) = payload.next().await {
        let chunk = chunk
            .map_err(|e| ApiError::bad_request(format!("Could not read the request body: {e}")))?;
        if buf.len() + chunk.len() > limit {
            drain(payload).await;
            return Err(too_large(limit));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

/// Read and discard (a bounded amount of) the rest of a refused body, so that the client,
/// which may still be sending, reads the error answer instead of a reset connection.
async fn drain(mut payload: web::Payload) {
    let discard = async {
        let mut seen = 0usize;
        while let Some(Ok(chunk)) = payload.next().await {
            seen += chunk.len();
            if seen > MAX_DRAIN_BYTES {
                break;
            }
        }
    };
    // Timing out only means the connection is closed after the answer.
    let _ = tokio::time::timeout(DRAIN_TIMEOUT, discard).await;
}

/// The fields of a JSON object in document order, values kept as raw JSON text.
struct Fields<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'de> Deserialize<'de> for Fields<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct FieldsVisitor;
        impl<'de> Visitor<'de> for FieldsVisitor {
            type Value = Fields<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object {\"target\": ..., \"arguments\": [...]}")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut fields = Vec::new();
                while let Some(key) = map.next_key::<Cow<'de, str>>()? {
                    fields.push((key, map.next_value::<&'de RawValue>()?));
                }
                Ok(Fields(fields))
            }
        }
        d.deserialize_map(FieldsVisitor)
    }
}

impl<'a> Fields<'a> {
    /// The last field called `name`, compared case-insensitively.
    fn get(&self, name: &str) -> Option<&'a RawValue> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
    }
}

/// `{"target": "...", "arguments": [...]}` → an Invocation with the argument text as sent.
fn parse_json_message(body: &[u8]) -> Result<SerializedMessage, ApiError> {
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request(
            "The request body is empty: send {\"target\": \"<method>\", \"arguments\": [...]}.",
        ));
    }
    let fields: Fields<'_> = serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request(format!(
            "The request body is not a valid payload message: {e}"
        ))
    })?;
    let target = match fields.get("target") {
        None => None,
        Some(raw) => serde_json::from_str::<Option<String>>(raw.get())
            .map_err(|_| ApiError::bad_request("The 'target' property must be a string."))?,
    };
    let target = match target {
        None => return Err(ApiError::bad_request("The 'target' property is required.")),
        Some(t) if t.is_empty() => {
            return Err(ApiError::bad_request(
                "The 'target' property must not be empty.",
            ));
        }
        Some(t) => t,
    };
    let arguments = match fields.get("arguments") {
        None => Bytes::from_static(b"[]"),
        Some(raw) if raw.get() == "null" => Bytes::from_static(b"[]"),
        Some(raw) if raw.get().starts_with('[') => Bytes::copy_from_slice(raw.get().as_bytes()),
        Some(_) => {
            return Err(ApiError::bad_request(
                "The 'arguments' property must be a JSON array.",
            ));
        }
    };
    Ok(SerializedMessage::invocation(target, arguments))
}

/// A MessagePack map protocol name → bin of complete framed hub messages.
fn parse_payload_map(body: &[u8], max_message_size: usize) -> Result<SerializedMessage, ApiError> {
    let bad =
        |what: String| ApiError::bad_request(format!("Invalid MessagePack payload map: {what}"));
    let mut rd = body;
    let entries =
        rmp::decode::read_map_len(&mut rd).map_err(|e| bad(format!("expected a map ({e})")))?;
    let mut json = None;
    let mut messagepack = None;
    for _ in 0..entries {
        let key_len = rmp::decode::read_str_len(&mut rd)
            .map_err(|e| bad(format!("keys must be strings ({e})")))?
            as usize;
        let key = take(&mut rd, key_len).ok_or_else(|| bad("truncated key".into()))?;
        let key = std::str::from_utf8(key).map_err(|_| bad("a key is not UTF-8".into()))?;
        let value_len = rmp::decode::read_bin_len(&mut rd)
            .map_err(|e| bad(format!("the value of '{key}' must be a bin ({e})")))?
            as usize;
        let value =
            take(&mut rd, value_len).ok_or_else(|| bad(format!("truncated value of '{key}'")))?;
        if let Some(p) = HubProtocol::from_name(key) {
            check_framed_messages(p, value, max_message_size)
                .map_err(|e| bad(format!("the '{key}' payload: {e}")))?;
            let slot = match p {
                HubProtocol::Json => &mut json,
                HubProtocol::MessagePack => &mut messagepack,
            };
            *slot = Some(Bytes::copy_from_slice(value));
        }
    }
    if !rd.is_empty() {
        return Err(bad(format!("{} bytes after the map", rd.len())));
    }
    if json.is_none() && messagepack.is_none() {
        return Err(bad(
            "it has neither a 'json' nor a 'messagepack' payload".into()
        ));
    }
    Ok(SerializedMessage::from_payloads(json, messagepack))
}

fn take<'a>(rd: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    if rd.len() < n {
        return None;
    }
    let (head, tail) = rd.split_at(n);
    *rd = tail;
    Some(head)
}

/// `bytes` must be one or more complete framed messages of `p` that the JS client accepts.
fn check_framed_messages(
    p: HubProtocol,
    bytes: &[u8],
    max_message_size: usize,
) -> Result<(), String> {
    if bytes.is_empty() {
        return Err("it is empty".into());
    }
    let mut rest = bytes;
    while !rest.is_empty() {
        match p.decode(rest, max_message_size) {
            Ok(Some(decoded)) if decoded.consumed > 0 => {
                if let Some(msg) = &decoded.message {
                    protocol::validate_for_js_client(msg).map_err(|e| e.to_string())?;
                }
                rest = &rest[decoded.consumed.min(rest.len())..];
            }
            Ok(_) => return Err("it ends with an incomplete message".into()),
            Err(e) => return Err(e.to_string()),
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Queries

/// Decoded query pairs; names compare case-insensitively.
struct Query(Vec<(String, String)>);

impl Query {
    fn parse(query: &str) -> Self {
        Self(
            form_urlencoded::parse(query.as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    fn first(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The repeated `excluded` parameter (empty values dropped).
    fn excluded(&self) -> Vec<ConnectionId> {
        self.0
            .iter()
            .filter(|(k, v)| k.eq_ignore_ascii_case("excluded") && !v.is_empty())
            .map(|(_, v)| ConnectionId::from(v.as_str()))
            .collect()
    }
}

// ---------------------------------------------------------------------------------------------
// Routing (pure)

/// A resolved REST operation. Names are percent-decoded, not yet validated.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Op {
    Health,
    /// Out of scope; the text names the feature.
    Unsupported(&'static str),
    Broadcast,
    SendUser(String),
    SendGroup(String),
    SendConnection(String),
    CloseAll,
    CloseUser(String),
    CloseGroup(String),
    CloseConnection(String),
    ConnectionExists(String),
    UserExists(String),
    GroupExists(String),
    UserInGroup {
        user: String,
        group: String,
    },
    AddConnectionToGroup {
        group: String,
        id: String,
    },
    RemoveConnectionFromGroup {
        group: String,
        id: String,
    },
    RemoveConnectionFromAllGroups(String),
    AddUserToGroup {
        user: String,
        group: String,
    },
    RemoveUserFromGroup {
        user: String,
        group: String,
    },
    RemoveUserFromAllGroups(String),
    ListGroupConnections(String),
    GenerateToken,
}

/// An operation and where it applies.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Route {
    /// Reached through `/api/v1/` (v1 status codes).
    v1: bool,
    /// The hub segment as given (`None` for `health` and `auth/accessKey`).
    hub: Option<String>,
    op: Op,
}

/// The methods the router distinguishes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum M {
    Get,
    Head,
    Post,
    Put,
    Delete,
    Other,
}

/// `:action` segments.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Action {
    Send,
    CloseConnections,
    GenerateToken,
    Execute,
    Invoke,
    Complete,
}

fn action(segment: &str) -> Option<Action> {
    let name = segment.strip_prefix(':')?;
    [
        ("send", Action::Send),
        ("closeConnections", Action::CloseConnections),
        ("generateToken", Action::GenerateToken),
        ("execute", Action::Execute),
        ("invoke", Action::Invoke),
        ("complete", Action::Complete),
    ]
    .into_iter()
    .find(|(n, _)| n.eq_ignore_ascii_case(name))
    .map(|(_, a)| a)
}

fn is(segment: &str, literal: &str) -> bool {
    segment.eq_ignore_ascii_case(literal)
}

/// Map `method path` (the raw, still percent-encoded path starting with `/api/`) to a route;
/// 404 for an unknown path, 405 (with the allowed methods) for a known path.
fn resolve(method: &Method, raw_path: &str) -> Result<Route, ApiError> {
    let not_found = || route_not_found(method, raw_path);
    let rest = raw_path.strip_prefix("/api/").ok_or_else(not_found)?;
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let mut segments = Vec::new();
    for s in rest.split('/') {
        let decoded = percent_decode_str(s).decode_utf8().map_err(|_| {
            ApiError::bad_request(format!(
                "The path segment '{s}' is not valid percent-encoded UTF-8."
            ))
        })?;
        segments.push(decoded.into_owned());
    }
    let v1 = segments.first().is_some_and(|s| is(s, "v1"));
    let segs: Vec<&str> = segments
        .iter()
        .skip(usize::from(v1))
        .map(String::as_str)
        .collect();
    let m = match *method {
        Method::GET => M::Get,
        Method::HEAD => M::Head,
        Method::POST => M::Post,
        Method::PUT => M::Put,
        Method::DELETE => M::Delete,
        _ => M::Other,
    };
    let (hub, op) = match route_segments(&segs, m) {
        Ok(found) => found,
        Err(Miss::Path) => return Err(not_found()),
        Err(Miss::Method(allowed)) => {
            return Err(ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "Error.MethodNotAllowed",
                format!("{method} is not allowed on {raw_path}; allowed: {allowed}."),
            ));
        }
    };
    Ok(Route { v1, hub, op })
}

/// Why no route matched.
#[derive(Debug, PartialEq, Eq)]
enum Miss {
    Path,
    Method(&'static str),
}

fn route_segments(segs: &[&str], m: M) -> Result<(Option<String>, Op), Miss> {
    use Action as A;
    let get = matches!(m, M::Get | M::Head);
    let s = |x: &str| x.to_owned();
    match segs {
        [h] if is(h, "health") => {
            return if get {
                Ok((None, Op::Health))
            } else {
                Err(Miss::Method("GET, HEAD"))
            };
        }
        [a, k] if is(a, "auth") && is(k, "accessKey") => {
            return if get {
                Ok((
                    None,
                    Op::Unsupported("Microsoft Entra access key retrieval"),
                ))
            } else {
                Err(Miss::Method("GET"))
            };
        }
        [h, _, ..] if is(h, "hubs") => {}
        _ => return Err(Miss::Path),
    }
    let hub = segs[1].to_owned();
    let rest = &segs[2..];
    let post = |op: Op| {
        if m == M::Post {
            Ok(op)
        } else {
            Err(Miss::Method("POST"))
        }
    };

    let op = match rest {
        [] => post(Op::Broadcast),
        [a] => match action(a).ok_or(Miss::Path)? {
            A::Send => post(Op::Broadcast),
            A::CloseConnections => post(Op::CloseAll),
            A::GenerateToken => post(Op::GenerateToken),
            A::Execute => post(Op::Unsupported("The :execute operation")),
            A::Invoke | A::Complete => Err(Miss::Path),
        },

        [k, u] if is(k, "users") => match m {
            M::Post => Ok(Op::SendUser(s(u))),
            M::Get | M::Head => Ok(Op::UserExists(s(u))),
            _ => Err(Miss::Method("POST, GET, HEAD")),
        },
        [k, u, a] if is(k, "users") && a.starts_with(':') => match action(a).ok_or(Miss::Path)? {
            A::Send => post(Op::SendUser(s(u))),
            A::CloseConnections => post(Op::CloseUser(s(u))),
            _ => Err(Miss::Path),
        },
        [k, u, g] if is(k, "users") && is(g, "groups") => match m {
            M::Delete => Ok(Op::RemoveUserFromAllGroups(s(u))),
            _ => Err(Miss::Method("DELETE")),
        },
        [k, u, g, group] if is(k, "users") && is(g, "groups") => user_group(m, s(u), s(group)),
        [k, group, u, user] if is(k, "groups") && is(u, "users") => {
            user_group(m, s(user), s(group))
        }

        [k, g] if is(k, "groups") => match m {
            M::Post => Ok(Op::SendGroup(s(g))),
            M::Get | M::Head => Ok(Op::GroupExists(s(g))),
            _ => Err(Miss::Method("POST, GET, HEAD")),
        },
        [k, g, a] if is(k, "groups") && a.starts_with(':') => match action(a).ok_or(Miss::Path)? {
            A::Send => post(Op::SendGroup(s(g))),
            A::CloseConnections => post(Op::CloseGroup(s(g))),
            _ => Err(Miss::Path),
        },
        [k, g, c] if is(k, "groups") && is(c, "connections") => match m {
            M::Get => Ok(Op::ListGroupConnections(s(g))),
            _ => Err(Miss::Method("GET")),
        },
        [k, g, c, id] if is(k, "groups") && is(c, "connections") => {
            connection_group(m, s(g), s(id))
        }

        [k, c] if is(k, "connections") => match m {
            M::Post => Ok(Op::SendConnection(s(c))),
            M::Get | M::Head => Ok(Op::ConnectionExists(s(c))),
            M::Delete => Ok(Op::CloseConnection(s(c))),
            _ => Err(Miss::Method("POST, GET, HEAD, DELETE")),
        },
        [k, c, a] if is(k, "connections") && a.starts_with(':') => {
            match action(a).ok_or(Miss::Path)? {
                A::Send => post(Op::SendConnection(s(c))),
                A::Invoke => post(Op::Unsupported("Client invocation over REST (:invoke)")),
                _ => Err(Miss::Path),
            }
        }
        [k, c, g] if is(k, "connections") && is(g, "groups") => match m {
            M::Delete => Ok(Op::RemoveConnectionFromAllGroups(s(c))),
            _ => Err(Miss::Method("DELETE")),
        },
        [k, c, g, group] if is(k, "connections") && is(g, "groups") => {
            connection_group(m, s(group), s(c))
        }
        [k, _, st, _, a] if is(k, "connections") && is(st, "streams") => match action(a)
            .ok_or(Miss::Path)?
        {
            A::Send | A::Complete => post(Op::Unsupported("Sending to client streams over REST")),
            _ => Err(Miss::Path),
        },
        _ => Err(Miss::Path),
    }?;
    Ok((Some(hub), op))
}

fn user_group(m: M, user: String, group: String) -> Result<Op, Miss> {
    match m {
        M::Get | M::Head => Ok(Op::UserInGroup { user, group }),
        M::Put => Ok(Op::AddUserToGroup { user, group }),
        M::Delete => Ok(Op::RemoveUserFromGroup { user, group }),
        _ => Err(Miss::Method("GET, HEAD, PUT, DELETE")),
    }
}

fn connection_group(m: M, group: String, id: String) -> Result<Op, Miss> {
    match m {
        M::Put => Ok(Op::AddConnectionToGroup { group, id }),
        M::Delete => Ok(Op::RemoveConnectionFromGroup { group, id }),
        _ => Err(Miss::Method("PUT, DELETE")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(method: Method, path: &str) -> Route {
        resolve(&method, path).unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    fn op(method: Method, path: &str) -> Op {
        route(method, path).op
    }

    #[test]
    fn resolves_every_new_style_route() {
        let s = String::from;
        let table = [
            (Method::HEAD, "/api/health", Op::Health),
            (Method::POST, "/api/hubs/chat/:send", Op::Broadcast),
            (
                Method::POST,
                "/api/hubs/chat/:closeConnections",
                Op::CloseAll,
            ),
            (
                Method::POST,
                "/api/hubs/chat/:generateToken",
                Op::GenerateToken,
            ),
            (
                Method::HEAD,
                "/api/hubs/chat/connections/c1",
                Op::ConnectionExists(s("c1")),
            ),
            (
                Method::DELETE,
                "/api/hubs/chat/connections/c1",
                Op::CloseConnection(s("c1")),
            ),
            (
                Method::POST,
                "/api/hubs/chat/connections/c1/:send",
                Op::SendConnection(s("c1")),
            ),
            (
                Method::DELETE,
                "/api/hubs/chat/connections/c1/groups",
                Op::RemoveConnectionFromAllGroups(s("c1")),
            ),
            (
                Method::HEAD,
                "/api/hubs/chat/groups/g",
                Op::GroupExists(s("g")),
            ),
            (
                Method::POST,
                "/api/hubs/chat/groups/g/:send",
                Op::SendGroup(s("g")),
            ),
            (
                Method::POST,
                "/api/hubs/chat/groups/g/:closeConnections",
                Op::CloseGroup(s("g")),
            ),
            (
                Method::GET,
                "/api/hubs/chat/groups/g/connections",
                Op::ListGroupConnections(s("g")),
            ),
            (
                Method::PUT,
                "/api/hubs/chat/groups/g/connections/c1",
                Op::AddConnectionToGroup {
                    group: s("g"),
                    id: s("c1"),
                },
            ),
            (
                Method::DELETE,
                "/api/hubs/chat/groups/g/connections/c1",
                Op::RemoveConnectionFromGroup {
                    group: s("g"),
                    id: s("c1"),
                },
            ),
            (
                Method::HEAD,
                "/api/hubs/chat/users/u",
                Op::UserExists(s("u")),
            ),
            (
                Method::POST,
                "/api/hubs/chat/users/u/:send",
                Op::SendUser(s("u")),
            ),
            (
                Method::POST,
                "/api/hubs/chat/users/u/:closeConnections",
                Op::CloseUser(s("u")),
            ),
            (
                Method::DELETE,
                "/api/hubs/chat/users/u/groups",
                Op::RemoveUserFromAllGroups(s("u")),
            ),
            (
                Method::GET,
                "/api/hubs/chat/users/u/groups/g",
                Op::UserInGroup {
                    user: s("u"),
                    group: s("g"),
                },
            ),
            (
                Method::PUT,
                "/api/hubs/chat/users/u/groups/g",
                Op::AddUserToGroup {
                    user: s("u"),
                    group: s("g"),
                },
            ),
            (
                Method::DELETE,
                "/api/hubs/chat/users/u/groups/g",
                Op::RemoveUserFromGroup {
                    user: s("u"),
                    group: s("g"),
                },
            ),
        ];
        for (method, path, expected) in table {
            let r = route(method.clone(), path);
            assert_eq!(r.op, expected, "{method} {path}");
            assert!(!r.v1);
            let v1_path = path.replacen("/api/", "/api/v1/", 1);
            let r = route(method.clone(), &v1_path);
            assert_eq!(r.op, expected, "{method} {v1_path}");
            assert!(r.v1);
        }
    }

    #[test]
    fn resolves_v1_and_emulator_forms() {
        let s = String::from;
        assert_eq!(op(Method::POST, "/api/v1/hubs/chat"), Op::Broadcast);
        assert_eq!(op(Method::POST, "/api/v1/hubs/chat/"), Op::Broadcast);
        assert_eq!(
            op(Method::POST, "/api/v1/hubs/chat/users/u"),
            Op::SendUser(s("u"))
        );
        assert_eq!(
            op(Method::POST, "/api/v1/hubs/chat/groups/g"),
            Op::SendGroup(s("g"))
        );
        assert_eq!(
            op(Method::POST, "/api/v1/hubs/chat/connections/c"),
            Op::SendConnection(s("c"))
        );
        assert_eq!(
            op(Method::GET, "/api/v1/hubs/chat/connections/c"),
            Op::ConnectionExists(s("c"))
        );
        assert_eq!(
            op(Method::PUT, "/api/v1/hubs/chat/groups/g/users/u"),
            Op::AddUserToGroup {
                user: s("u"),
                group: s("g")
            }
        );
        assert_eq!(
            op(Method::PUT, "/api/v1/hubs/chat/connections/c/groups/g"),
            Op::AddConnectionToGroup {
                group: s("g"),
                id: s("c")
            }
        );
        assert_eq!(op(Method::GET, "/api/v1/health"), Op::Health);
        assert_eq!(
            route(Method::POST, "/api/v1/hubs/chat").hub.as_deref(),
            Some("chat")
        );
    }

    #[test]
    fn decodes_segments_after_splitting_and_ignores_literal_case() {
        let s = String::from;
        assert_eq!(
            op(Method::POST, "/api/hubs/chat/groups/a%2Fb%20c/:send"),
            Op::SendGroup(s("a/b c"))
        );
        assert_eq!(
            op(Method::POST, "/api/HUBS/chat/Groups/g/:SEND"),
            Op::SendGroup(s("g"))
        );
        assert_eq!(
            op(Method::POST, "/api/hubs/chat/users/u%3A1/%3Asend"),
            Op::SendUser(s("u:1"))
        );
        assert_eq!(
            op(Method::POST, "/api/hubs/chat/connections//:send"),
            Op::SendConnection(s(""))
        );
    }

    #[test]
    fn out_of_scope_operations_are_unsupported() {
        for path in [
            "/api/hubs/chat/:execute",
            "/api/hubs/chat/connections/c/:invoke",
            "/api/hubs/chat/connections/c/streams/s/:send",
            "/api/hubs/chat/connections/c/streams/s/:complete",
        ] {
            assert!(
                matches!(op(Method::POST, path), Op::Unsupported(_)),
                "{path}"
            );
        }
    }

    #[test]
    fn unknown_paths_are_404_and_wrong_methods_405() {
        for path in [
            "/api/hubs",
            "/api/nothing",
            "/api/hubs/chat/:bogus",
            "/api/hubs/chat/users/u/x",
            "/api/v2/hubs/chat",
        ] {
            let e = resolve(&Method::POST, path).unwrap_err();
            assert_eq!(e.status, StatusCode::NOT_FOUND, "{path}");
        }
        for (method, path) in [
            (Method::GET, "/api/hubs/chat/:send"),
            (Method::PUT, "/api/hubs/chat/users/u"),
            (Method::POST, "/api/health"),
            (Method::GET, "/api/hubs/chat/groups/g/connections/c"),
        ] {
            let e = resolve(&method, path).unwrap_err();
            assert_eq!(e.status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
        }
    }

    #[test]
    fn ttl_values() {
        assert_eq!(parse_ttl(None).unwrap(), MembershipTtl::Unlimited);
        assert_eq!(parse_ttl(Some("")).unwrap(), MembershipTtl::Unlimited);
        assert_eq!(
            parse_ttl(Some("0")).unwrap(),
            MembershipTtl::CurrentConnectionsOnly
        );
        assert_eq!(
            parse_ttl(Some("30")).unwrap(),
            MembershipTtl::For(Duration::from_secs(30))
        );
        assert!(parse_ttl(Some("-1")).is_err());
        assert!(parse_ttl(Some("1.5")).is_err());
        assert!(parse_ttl(Some("abc")).is_err());
    }

    #[test]
    fn effective_hub_names() {
        assert_eq!(effective_hub("Chat", None).unwrap(), "Chat");
        assert_eq!(effective_hub("Chat", Some("")).unwrap(), "Chat");
        assert_eq!(effective_hub("Chat", Some("MyApp")).unwrap(), "myapp_chat");
        assert!(effective_hub("1chat", None).is_err());
        assert!(effective_hub("chat", Some("my-app")).is_err());
    }

    #[test]
    fn json_bodies() {
        assert!(parse_json_message(br#"{"target":"m","arguments":[1,"a",{"b":null}]}"#).is_ok());
        assert!(parse_json_message(br#"{"Target":"m","Arguments":[]}"#).is_ok());
        assert!(parse_json_message(br#"{"target":"m"}"#).is_ok());
        assert!(parse_json_message(br#"{"target":"m","arguments":null}"#).is_ok());
        for bad in [
            &b""[..],
            b"  ",
            b"[]",
            b"{",
            br#"{"arguments":[]}"#,
            br#"{"target":null}"#,
            br#"{"target":""}"#,
            br#"{"target":5}"#,
            br#"{"target":"m","arguments":{}}"#,
            br#"{"target":"m","arguments":"x"}"#,
        ] {
            let e = parse_json_message(bad)
                .err()
                .unwrap_or_else(|| panic!("{:?}", String::from_utf8_lossy(bad)));
            assert_eq!(e.status, StatusCode::BAD_REQUEST);
        }
    }

    #[test]
    fn payload_map_shape_errors() {
        // Not a map; a non-bin value; trailing bytes; no known protocol.
        for bad in [
            &[0x90u8][..],
            &[0x81, 0xa4, b'j', b's', b'o', b'n', 0x01],
            &[0x80, 0x00],
            &[0x80],
        ] {
            let e = parse_payload_map(bad, 1 << 20)
                .err()
                .unwrap_or_else(|| panic!("{bad:?}"));
            assert_eq!(e.status, StatusCode::BAD_REQUEST);
        }
    }

    #[test]
    fn continuation_tokens_roundtrip() {
        let t = URL_SAFE_NO_PAD.encode("abc_-Z");
        assert_eq!(decode_continuation(&t).as_deref(), Some("abc_-Z"));
        assert_eq!(decode_continuation("!!"), None);
    }
}
