//! `GET /server/?hub=H&cid=...` with a WebSocket upgrade: a hub server ("app server") connects.
//!
//! The server token comes in `Authorization: Bearer` only (the SDKs never use the query) and
//! must name `/server/?hub=<hub>`. The server's id is `X-ASRS-Server-Id`, else the token's
//! `nameid`, else `cid`. Whether the connection is accepted in the current mode is decided at
//! its handshake (its connection type is only known then).

use actix_web::{HttpRequest, HttpResponse, web};

use super::negotiate::hub_param;
use super::{ApiError, bearer_token, query_value};
use crate::auth::{Audience, AuthError};
use crate::conn::server::{self, ServerContext};
use crate::conn::ws::WsSocket;
use crate::events::ConnectionType;
use crate::http::state::Broker;
use crate::telemetry::Metrics;

/// Register the server endpoint.
pub(crate) fn configure(cfg: &mut web::ServiceConfig) {
    for path in ["/server", "/server/"] {
        cfg.route(path, web::get().to(connect));
    }
}

async fn connect(
    req: HttpRequest,
    shared: web::Data<Broker>,
) -> Result<HttpResponse, actix_web::Error> {
    let hub = hub_param(&req)?;
    let identity = match bearer_token(&req, false) {
        None => Err(AuthError::Missing),
        Some(token) => shared.keys().validate(
            &token,
            Audience::Server { hub: &hub },
            shared.config.limits.token_clock_skew_secs,
        ),
    }
    .map_err(|e| {
        Metrics::inc(&shared.metrics.auth_failures);
        let error = ApiError::from(e);
        super::logs::auth_failed(&shared, &req, ConnectionType::Server, &hub, &error);
        error
    })?;
    let server_id = req
        .headers()
        .get("x-asrs-server-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
        .or(identity.user_id)
        .or_else(|| query_value(&req, "cid"))
        .unwrap_or_else(crate::id::random_token);

    let shared = shared.into_inner();
    let slot = super::reserve_slot(&shared)?;
    let hub = shared.hubs.get_or_create(&hub).map_err(ApiError::from)?;
    let max = shared.config.limits.max_server_message_size;
    let ctx = ServerContext {
        hub,
        env: shared.server_env.clone(),
        server_id,
        slot,
        ip: super::network::client_ip(&req, &shared),
    };
    super::upgrade::accept(&req, move |upgraded| {
        let metrics = ctx.env.metrics.clone();
        let socket = WsSocket::new(upgraded.io, upgraded.read, max, metrics);
        actix_web::rt::spawn(server::run(ctx, socket));
    })
}
