//! The data-plane REST API (`docs/protocol.md#rest-api`): what applications and the Azure
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
//! `<app lower>_<hub lower>`; without it, `<hub lower>` (hub names are case-insensitive, see
//! [`canonical_hub_name`](crate::hub::canonical_hub_name)). `api-version` is accepted with any
//! value, or none.
//!
//! | method | path (after `/api/` or `/api/v1/`) | OK | not found |
//! | --- | --- | --- | --- |
//! | GET, HEAD | `health` (no token; the Azure SDK's probe) | 200 | – |
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
//!   [`MembershipTtl::CurrentConnectionsOnly`], `N` = `N` seconds up to
//!   [`MembershipTtl::MAX`] (2147483647, the service protocol's int32); negative, larger or not
//!   an integer is 400.
//! * Adding a user to a group when the hub is not running and `limits.max_hubs` hubs are is
//!   429 `Error.TooManyRequests` (counted in `switchboard_hubs_rejected_total`).
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
//!
//! # Layout
//!
//! `route` resolves a method and path to an operation (pure, no I/O), `body` checks content
//! types and reads and decodes send bodies; this file holds the actix handler, authorization,
//! the dispatch of each operation to the hub and the response helpers.

mod body;
pub(crate) mod fuzz;
mod list;
mod params;
mod route;

use std::time::Duration;

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::{HttpRequest, HttpResponse, ResponseError as _, web};

use self::body::read_message;
use self::list::list_group_connections;
use self::params::{effective_hub, parse_ttl, validate_op};
use self::route::{Op, Query, resolve, route_not_found};
use super::{ApiError, bearer_token};
use crate::auth::Audience;
use crate::close::CloseReason;
use crate::http::logs::{RestTarget, rest_message};
use crate::http::state::{Broker, client_token};
use crate::hub::{ExistsQuery, HubError, HubGone, HubReply, Scope};
use crate::id::{ConnectionId, GroupName, UserId, validate_user_id};
use crate::telemetry::{Metrics, RestOperation};

/// Register the REST routes (one handler for everything under `/api/`).
pub(crate) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/api/{tail:.*}").to(handle));
}

/// Largest `maxpagesize` of the group connection listing.
/// Largest `minutesToExpire` of `:generateToken` (one year).
const MAX_TOKEN_MINUTES: u64 = 365 * 24 * 60;

async fn handle(
    req: HttpRequest,
    payload: web::Payload,
    shared: web::Data<Broker>,
) -> HttpResponse {
    let started = std::time::Instant::now();
    let metrics = &shared.metrics;
    Metrics::inc(&metrics.rest_requests);
    let head = req.method() == Method::HEAD;
    // Resolved again by `dispatch`: a pure function over the path, cheap next to a request.
    let operation =
        resolve(req.method(), req.path()).map_or(RestOperation::Other, |route| route.op.metric());
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
    metrics
        .labelled
        .rest_request(operation, resp.status().as_u16(), started.elapsed());
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
    shared: &Broker,
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
            rest_message(shared, req, &hub, RestTarget::All);
            if let Some(h) = shared.hubs.for_operation(&hub)? {
                h.send_all(msg, excluded)
                    .await
                    .map_err(|e| gone(shared, e))?;
            }
            Ok(HttpResponse::Accepted().finish())
        }
        Op::SendUser(user) => {
            let msg = read_message(req, payload, shared).await?;
            rest_message(shared, req, &hub, RestTarget::User(&user));
            if let Some(h) = shared.hubs.for_operation(&hub)? {
                h.send_user(UserId::from(user), msg)
                    .await
                    .map_err(|e| gone(shared, e))?;
            }
            Ok(HttpResponse::Accepted().finish())
        }
        Op::SendGroup(group) => {
            let excluded = query.excluded();
            let msg = read_message(req, payload, shared).await?;
            rest_message(shared, req, &hub, RestTarget::Group(&group));
            if let Some(h) = shared.hubs.for_operation(&hub)? {
                h.send_group(GroupName::from(group), msg, excluded, Vec::new())
                    .await
                    .map_err(|e| gone(shared, e))?;
            }
            Ok(HttpResponse::Accepted().finish())
        }
        Op::SendConnection(id) => {
            let msg = read_message(req, payload, shared).await?;
            rest_message(shared, req, &hub, RestTarget::Connection(&id));
            if let Some(h) = shared.hubs.for_operation(&hub)? {
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
            let existed = match shared.hubs.for_operation(&hub)? {
                Some(h) => {
                    answer(
                        shared,
                        h.close_connection(ConnectionId::from(id.as_str()), reason)
                            .await,
                    )
                    .await?
                }
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
            let added = match shared.hubs.for_operation(&hub)? {
                Some(h) => {
                    answer(
                        shared,
                        h.add_to_group(ConnectionId::from(id.as_str()), GroupName::from(group))
                            .await,
                    )
                    .await?
                }
                None => false,
            };
            if added {
                Ok(HttpResponse::Ok().finish())
            } else {
                Err(connection_missing("Error.Connection.NotExisted", &id))
            }
        }
        Op::RemoveConnectionFromGroup { group, id } => {
            let existed = match shared.hubs.for_operation(&hub)? {
                Some(h) => {
                    answer(
                        shared,
                        h.remove_from_group(
                            ConnectionId::from(id.as_str()),
                            GroupName::from(group),
                        )
                        .await,
                    )
                    .await?
                }
                None => false,
            };
            if existed {
                Ok(HttpResponse::Ok().finish())
            } else {
                Err(connection_missing("Error.Connection.NotExisted", &id))
            }
        }
        Op::RemoveConnectionFromAllGroups(id) => {
            if let Some(h) = shared.hubs.for_operation(&hub)? {
                // Leaving every group is idempotent: a missing connection is in none.
                let _existed = answer(
                    shared,
                    h.remove_from_all_groups(ConnectionId::from(id.as_str()))
                        .await,
                )
                .await?;
            }
            Ok(HttpResponse::Ok().finish())
        }

        Op::AddUserToGroup { user, group } => {
            let ttl = parse_ttl(query.first("ttl"))?;
            answer(
                shared,
                shared
                    .hubs
                    .get_or_create(&hub)?
                    .add_user_to_group(UserId::from(user), GroupName::from(group), ttl)
                    .await,
            )
            .await?;
            Ok(if v1 {
                HttpResponse::Accepted().finish()
            } else {
                HttpResponse::Ok().finish()
            })
        }
        Op::RemoveUserFromGroup { user, group } => {
            if let Some(h) = shared.hubs.for_operation(&hub)? {
                answer(
                    shared,
                    h.remove_user_from_group(UserId::from(user), GroupName::from(group))
                        .await,
                )
                .await?;
            }
            Ok(if v1 {
                HttpResponse::Accepted().finish()
            } else {
                HttpResponse::NoContent().finish()
            })
        }
        Op::RemoveUserFromAllGroups(user) => {
            if let Some(h) = shared.hubs.for_operation(&hub)? {
                answer(
                    shared,
                    h.remove_user_from_all_groups(UserId::from(user)).await,
                )
                .await?;
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
fn authorize(req: &HttpRequest, shared: &Broker) -> Result<(), ApiError> {
    let Some(token) = bearer_token(req, false) else {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "Error.Unauthorized",
            "Unauthorized: no access token was provided; REST calls need 'Authorization: Bearer <token>'.",
        ));
    };
    shared.keys().validate(
        &token,
        Audience::Rest { path: req.path() },
        shared.config.limits.token_clock_skew_secs,
    )?;
    Ok(())
}

/// An existence check: 200, or 404 with the error `missing` makes.
async fn check(
    shared: &Broker,
    hub: &str,
    query: ExistsQuery,
    missing: impl FnOnce() -> ApiError,
) -> Result<HttpResponse, ApiError> {
    let exists = match shared.hubs.for_operation(hub)? {
        Some(h) => answer(shared, h.exists(query).await).await?,
        None => false,
    };
    if exists {
        Ok(HttpResponse::Ok().finish())
    } else {
        Err(missing())
    }
}

async fn close_many(
    shared: &Broker,
    hub: &str,
    scope: Scope,
    query: &Query,
) -> Result<HttpResponse, ApiError> {
    let reason = query
        .first("reason")
        .filter(|r| !r.is_empty())
        .map(str::to_owned);
    if let Some(h) = shared.hubs.for_operation(hub)? {
        answer(
            shared,
            h.close_connections(scope, query.excluded(), CloseReason::ByApplication(reason))
                .await,
        )
        .await?;
    }
    Ok(HttpResponse::NoContent().finish())
}

fn generate_token(shared: &Broker, hub: &str, query: &Query) -> Result<HttpResponse, ApiError> {
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

fn json_response(status: StatusCode, body: &serde_json::Value) -> HttpResponse {
    HttpResponse::build(status)
        .insert_header((
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        ))
        .body(body.to_string())
}

/// A hub operation's queueing and its answer as one result (both fail only when the hub is gone).
/// In a cluster, an answer that needs other nodes that cannot be asked is a 503 saying so.
async fn answer<T>(shared: &Broker, queued: Result<HubReply<T>, HubGone>) -> Result<T, ApiError> {
    match queued {
        Ok(reply) => reply.await.map_err(|e| match e {
            HubError::Gone(e) => gone(shared, e),
            HubError::Cluster(e) => ApiError::from(e),
        }),
        Err(e) => Err(gone(shared, e)),
    }
}

fn gone(shared: &Broker, e: HubGone) -> ApiError {
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
