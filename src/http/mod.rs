//! actix-web glue only: extract, call into the modules below, respond.
//!
//! | path | module |
//! | --- | --- |
//! | `POST /client/negotiate?hub=` | [`negotiate`] |
//! | `GET /client/?hub=&id=` (WebSocket) | [`client_ws`] |
//! | `GET /server/?hub=&cid=` (WebSocket, hub servers) | [`server_ws`] |
//! | `/api/...`, `/api/v1/...` | [`rest`] |
//! | `/api/health`, `/healthz`, `/readyz`, `/metrics` | [`health`] |
//! | `GET`/`PATCH /admin/settings`, `/admin/overview`, `/admin/hubs/...`, `/admin/servers`, `/admin/console` | [`admin`] |
//! | `GET`/`PATCH /admin/logs`, `GET /admin/trace` | [`logs`] |
//!
//! Browser clients send credentialed, preflighted requests, so every response to a request
//! with an allowed `Origin` (`[cors] allowed_origins`, any by default) carries CORS headers
//! echoing that origin, and `OPTIONS` is answered here.

pub(crate) mod admin;
pub(crate) mod client_http;
pub(crate) mod client_ws;
pub(crate) mod edge;
pub(crate) mod error;
pub(crate) mod health;
pub(crate) mod io;
pub(crate) mod logs;
pub(crate) mod negotiate;
pub(crate) mod network;
pub(crate) mod rest;
pub(crate) mod server_ws;
pub(crate) mod state;
pub(crate) mod throttle;
pub(crate) mod upgrade;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::middleware::{Next, from_fn};
use actix_web::{HttpRequest, HttpResponse, web};

pub(crate) use self::error::ApiError;
use crate::auth::{Audience, AuthError, Identity};
use crate::events::ConnectionType;
use crate::http::state::Broker;
use crate::telemetry::Metrics;

/// Register the public listener's routes (the `App::configure` callback); with `admin_apart`,
/// `/admin` and `/metrics` are the admin listener's only ([`configure_admin`]).
pub(crate) fn configure(cfg: &mut web::ServiceConfig, admin_apart: bool) {
    cfg.service(
        web::scope("")
            .wrap(from_fn(edge::hold_unread_body))
            // Inside CORS: a browser's page can read the 403.
            .wrap(from_fn(network::network))
            .wrap(from_fn(cors))
            .wrap(from_fn(logs::log_request))
            .configure(negotiate::configure)
            .configure(client_ws::configure)
            .configure(server_ws::configure)
            .configure(health::configure)
            .configure(|cfg| {
                if !admin_apart {
                    health::configure_metrics(cfg);
                    admin::configure(cfg);
                    logs::configure(cfg);
                }
            })
            .configure(rest::configure)
            .default_service(web::to(not_found)),
    );
}

/// The admin listener's routes (`admin_listen`): `/admin`, `/metrics`, `/healthz`, `/readyz`.
pub(crate) fn configure_admin(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("")
            .wrap(from_fn(edge::hold_unread_body))
            .wrap(from_fn(logs::log_request))
            .configure(health::configure)
            .configure(health::configure_metrics)
            .configure(admin::configure)
            .configure(logs::configure)
            .default_service(web::to(not_found)),
    );
}

async fn not_found(req: HttpRequest) -> HttpResponse {
    if req.method() == Method::OPTIONS {
        return HttpResponse::NoContent().finish();
    }
    actix_web::ResponseError::error_response(&ApiError::new(
        StatusCode::NOT_FOUND,
        "Error.NotFound",
        format!("No route for {} {}.", req.method(), req.path()),
    ))
}

/// CORS for browsers: echo an allowed origin with credentials (others get no CORS headers, so
/// the browser keeps the answer from the page), answer preflights; and, first of all, the
/// request head limits ([`edge::check_head`]).
async fn cors(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let origin = allowed_origin(req.request());
    // With an origin list the answer depends on the Origin header, allowed or not.
    let any_origin = req.headers().contains_key(header::ORIGIN);
    let requested_headers = req
        .headers()
        .get(header::ACCESS_CONTROL_REQUEST_HEADERS)
        .cloned();
    let preflight = req.method() == Method::OPTIONS
        && req
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    // Heads over the URL and header limits are answered before anything else (preflights too).
    let mut res = if let Err(e) = edge::check_head(req.request()) {
        let (http_req, _) = req.into_parts();
        ServiceResponse::new(http_req, actix_web::ResponseError::error_response(&e))
            .map_into_right_body()
    } else if preflight {
        let (http_req, _) = req.into_parts();
        ServiceResponse::new(http_req, HttpResponse::NoContent().finish()).map_into_right_body()
    } else {
        next.call(req).await?.map_into_left_body()
    };
    if origin.is_none() && any_origin {
        res.headers_mut()
            .insert(header::VARY, HeaderValue::from_static("Origin"));
    }
    if let Some(origin) = origin {
        let h = res.headers_mut();
        allow_origin(h, origin);
        if preflight {
            h.insert(
                header::ACCESS_CONTROL_ALLOW_METHODS,
                HeaderValue::from_static("GET, POST, PUT, DELETE, HEAD, OPTIONS"),
            );
            h.insert(
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                requested_headers.unwrap_or_else(|| {
                    HeaderValue::from_static(
                        "authorization, content-type, x-requested-with, x-signalr-user-agent",
                    )
                }),
            );
            h.insert(
                header::ACCESS_CONTROL_MAX_AGE,
                HeaderValue::from_static("86400"),
            );
        }
    }
    Ok(res)
}

/// The request's `Origin`, if the broker's `[cors]` setting lets that origin read answers.
pub(crate) fn allowed_origin(req: &HttpRequest) -> Option<HeaderValue> {
    let origin = req.headers().get(header::ORIGIN)?;
    let allowed = match req.app_data::<web::Data<Broker>>() {
        Some(broker) => broker.config.cors.allows(origin.as_bytes()),
        // Not served by the broker's app (no state): nothing to decide with, allow nothing.
        None => false,
    };
    allowed.then(|| origin.clone())
}

/// Let `origin` read the answer (with credentials): what [`cors`] adds to every answer to a
/// request with an allowed `Origin`, and what an answer written outside actix-web adds itself.
pub(crate) fn allow_origin(h: &mut header::HeaderMap, origin: HeaderValue) {
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    h.insert(
        header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
        HeaderValue::from_static("true"),
    );
    h.insert(header::VARY, HeaderValue::from_static("Origin"));
}

/// The bearer token of a request: the `Authorization: Bearer` header, else (when
/// `allow_query`) the last `access_token` query value.
pub(crate) fn bearer_token(req: &HttpRequest, allow_query: bool) -> Option<String> {
    if let Some(v) = req.headers().get(header::AUTHORIZATION)
        && let Ok(s) = v.to_str()
    {
        let s = s.trim();
        if s.len() > 7 && s[..7].eq_ignore_ascii_case("bearer ") {
            return Some(s[7..].trim().to_owned());
        }
    }
    if allow_query {
        return form_urlencoded::parse(req.query_string().as_bytes())
            .filter(|(k, _)| k == "access_token")
            .map(|(_, v)| v.into_owned())
            .last();
    }
    None
}

/// The values of query parameter `name`, decoded with form rules (`+` is a space).
pub(crate) fn query_values(req: &HttpRequest, name: &str) -> Vec<String> {
    form_urlencoded::parse(req.query_string().as_bytes())
        .filter(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
        .collect()
}

/// The first value of query parameter `name`, compared case-insensitively.
pub(crate) fn query_value(req: &HttpRequest, name: &str) -> Option<String> {
    form_urlencoded::parse(req.query_string().as_bytes())
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.into_owned())
}

/// Validate the client token of a negotiate or transport request for `hub` (header first, then
/// the `access_token` query); failures are counted and answered 401.
pub(crate) fn authenticate_client(
    req: &HttpRequest,
    shared: &Broker,
    hub: &str,
) -> Result<Identity, ApiError> {
    let result = match bearer_token(req, true) {
        None => Err(AuthError::Missing),
        Some(token) => shared.keys().validate(
            &token,
            Audience::Client { hub },
            shared.config.limits.token_clock_skew_secs,
        ),
    };
    result.map_err(|e| {
        Metrics::inc(&shared.metrics.auth_failures);
        let error = ApiError::from(e);
        logs::auth_failed(shared, req, ConnectionType::Client, hub, &error);
        error
    })
}

/// Count a refused client connect request as Azure does, under the close category of its
/// status: 401 `unauthorized`, 429 `throttled`, 503 (stopping) `service_reload`.
pub(crate) fn count_refused_connect(shared: &Broker, err: &ApiError) {
    use crate::close::CloseCategory;
    let category = match err.status {
        StatusCode::UNAUTHORIZED => CloseCategory::Unauthorized,
        StatusCode::TOO_MANY_REQUESTS => CloseCategory::Throttled,
        StatusCode::SERVICE_UNAVAILABLE => CloseCategory::ServiceReload,
        _ => return,
    };
    shared
        .metrics
        .labelled
        .close(crate::telemetry::Endpoint::Client, category);
}

/// Reserve a slot in the process-wide connection limit, or answer 429 (counted); 503 once a
/// graceful stop has begun.
pub(crate) fn reserve_slot(shared: &Broker) -> Result<crate::conn::env::ConnectionSlot, ApiError> {
    refuse_if_stopping(shared)?;
    shared.slots.try_reserve().ok_or_else(|| {
        Metrics::inc(&shared.metrics.connections_rejected_limit);
        ApiError::too_many("The connection limit of this Switchboard instance was reached.")
    })
}

/// 503 once a graceful stop has begun: no new negotiations or connections on this instance.
pub(crate) fn refuse_if_stopping(shared: &Broker) -> Result<(), ApiError> {
    if shared.is_stopping() {
        return Err(ApiError::unavailable());
    }
    Ok(())
}
