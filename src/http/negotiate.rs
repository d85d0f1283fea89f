//! `POST /client/negotiate?hub=H`: the second negotiate of the Azure flow, answered by the
//! service itself (`docs/protocol.md#negotiate`).
//!
//! The request must carry a client token for the hub (Bearer header, or the `access_token`
//! query as a fallback). Version 0 and 1 are answered as ASP.NET Core does; a version error is
//! HTTP 200 with `{"error": ...}` so that clients show the text. The negotiated connection waits
//! in `Broker::pending` for its transport, recorded with the hub and user of the token
//! ([`Owner`]): only a token of the same hub and user can claim it.
//!
//! Stateful reconnect is offered with version 1 only: with version 0 the connection token is
//! the public connection id, which a hub server or anyone it told could present to take over a
//! resumable connection.

use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, web};

use super::{ApiError, authenticate_client, query_value};
use crate::conn::owner::Owner;
use crate::http::state::Broker;
use crate::hub::{TooManyHubs, canonical_hub_name};
use crate::id::{ConnectionId, TransportKind, random_token, validate_hub_name};
use crate::protocol::negotiate::{AvailableTransport, NegotiateResponse, error_response};
use crate::telemetry::Metrics;

/// Register the negotiate route.
pub(crate) fn configure(cfg: &mut web::ServiceConfig) {
    for path in ["/client/negotiate", "/client/negotiate/"] {
        cfg.route(path, web::post().to(negotiate));
        cfg.route(
            path,
            web::method(actix_web::http::Method::OPTIONS).to(HttpResponse::NoContent),
        );
        cfg.route(path, web::to(method_not_allowed));
    }
}

async fn method_not_allowed() -> HttpResponse {
    HttpResponse::MethodNotAllowed().finish()
}

/// The `hub` query value, validated, in its [canonical](crate::hub::canonical_hub_name) form.
pub(crate) fn hub_param(req: &HttpRequest) -> Result<String, ApiError> {
    let hubs = super::query_values(req, "hub");
    match hubs.as_slice() {
        [] => Err(ApiError::bad_request(
            "The 'hub' query parameter is required.",
        )),
        [hub] => {
            validate_hub_name(hub).map_err(ApiError::bad_request)?;
            Ok(canonical_hub_name(hub).into_owned())
        }
        _ => Err(ApiError::bad_request(
            "The 'hub' query parameter must be given once.",
        )),
    }
}

async fn negotiate(req: HttpRequest, shared: web::Data<Broker>) -> Result<HttpResponse, ApiError> {
    super::refuse_if_stopping(&shared)?;
    let hub = hub_param(&req)?;
    let identity = authenticate_client(&req, &shared, &hub)?;

    let version = match negotiate_version(query_value(&req, "negotiateVersion").as_deref()) {
        Ok(version) => version,
        Err(text) => return Ok(json_ok(error_response(&text))),
    };

    if shared.connection_count() >= shared.config.limits.max_connections {
        Metrics::inc(&shared.metrics.connections_rejected_limit);
        return Err(ApiError::too_many(
            "The connection limit of this Switchboard instance was reached.",
        ));
    }
    super::throttle::admit_negotiation(&shared, &req, &identity)?;

    // The hub starts when the transport connects; refuse now rather than after the redirect.
    if !shared.hubs.has_room_for(&hub) {
        Metrics::inc(&shared.metrics.hubs_rejected);
        return Err(ApiError::from(TooManyHubs {
            max: shared.config.limits.max_hubs,
        }));
    }

    let allowed = identity
        .claim("asrs.s.htt")
        .and_then(|v| v.parse::<u32>().ok())
        .unwrap_or(u32::MAX);
    // In the configured order, narrowed by the token's `asrs.s.htt` bits.
    let transports: Vec<AvailableTransport> = shared
        .config
        .transports
        .iter()
        .filter(|t| allowed & t.bit() != 0)
        .map(|t| match t {
            TransportKind::WebSockets => AvailableTransport::web_sockets(),
            TransportKind::ServerSentEvents => AvailableTransport::server_sent_events(),
            TransportKind::LongPolling => AvailableTransport::long_polling(),
        })
        .collect();

    // Stateful reconnect when asked and allowed, in every mode (the broker keeps the replay
    // buffer also for clients routed to a hub server), and only with a secret connection token.
    let stateful = shared.config.stateful_reconnect
        && version >= 1
        && crate::protocol::negotiate::stateful_reconnect_from_query(
            query_value(&req, "useStatefulReconnect").as_deref(),
        );
    let connection_id = ConnectionId::random();
    let owner = Owner::of(&hub, &identity);
    let connection_token = match (version >= 1, &shared.cluster) {
        // In a cluster any node's WebSocket endpoint can verify the token.
        (true, Some(_)) => crate::cluster::token::mint(
            shared.keys().primary(),
            &connection_id,
            &owner,
            crate::auth::unix_now()
                .saturating_add(shared.config.limits.negotiate_timeout().as_secs()),
            stateful,
        ),
        (true, None) => random_token(),
        (false, _) => connection_id.as_str().to_owned(),
    };
    if shared
        .pending
        .insert(
            connection_token.clone(),
            connection_id.clone(),
            owner,
            stateful,
        )
        .is_err()
    {
        Metrics::inc(&shared.metrics.connections_rejected_limit);
        return Err(ApiError::too_many(
            "Too many negotiated connections are waiting for a transport.",
        ));
    }
    Metrics::inc(&shared.metrics.negotiations);

    let body = NegotiateResponse {
        negotiate_version: version,
        connection_id: connection_id.as_str().to_owned(),
        connection_token: (version >= 1).then_some(connection_token),
        use_stateful_reconnect: stateful,
        available_transports: transports,
        url: None,
        access_token: None,
        error: None,
    }
    .to_json();
    Ok(json_ok(body))
}

/// The negotiate version agreed for the `negotiateVersion` query value: absent → 0, above 1 → 1;
/// negative or not an integer → the error text to answer with (HTTP 200, `{"error": ...}`).
pub(crate) fn negotiate_version(raw: Option<&str>) -> Result<u32, String> {
    let Some(raw) = raw else {
        return Ok(0);
    };
    match raw.parse::<i64>() {
        Ok(v) if v < 0 => Err(format!(
            "The client requested version '{v}', but the server does not support this version."
        )),
        Ok(v) => Ok(v.min(1) as u32),
        Err(_) => Err(format!(
            "The client requested an invalid protocol version '{raw}'"
        )),
    }
}

fn json_ok(body: String) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        ))
        .body(body)
}
