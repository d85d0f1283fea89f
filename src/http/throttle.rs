//! The HTTP side of the per-tenant limits ([`crate::conn::tenant`]): which user, token and client
//! address a client request belongs to, and the 429 answers (Azure's error body, counted in
//! `switchboard_throttled_total{by=...}`).
//!
//! The client address is [`super::network::client_ip`]'s: the socket's peer address, or from
//! a trusted proxy (`network.trusted_proxies`) the client it forwarded for; without trusted
//! proxies, `throttle.trust_forwarded_for` takes the last `X-Forwarded-For` entry from any peer.

use actix_web::HttpRequest;

use super::{ApiError, bearer_token};
use crate::auth::Identity;
use crate::conn::env::ConnectionSlot;
use crate::conn::tenant::{By, Refusal, Tenant};
use crate::http::state::Broker;
use crate::telemetry::Metrics;

/// The tenant of an authenticated client request.
fn tenant_of(req: &HttpRequest, shared: &Broker, identity: &Identity) -> Tenant {
    let token = bearer_token(req, true);
    // The signature is the JWT's third part (what Azure's ThrottleByJwtSignature counts by).
    let signature = token.as_deref().and_then(|t| t.rsplit('.').next());
    shared.tenants.tenant(
        identity.user_id.as_deref(),
        signature,
        super::network::client_ip(req, shared),
    )
}

/// The 429 for a refusal, counted.
fn refused(shared: &Broker, refusal: Refusal) -> ApiError {
    let counter = match refusal {
        Refusal::Connections(by, _) | Refusal::Rate(by, _) => match by {
            By::User => &shared.metrics.throttled_user,
            By::Token => &shared.metrics.throttled_signature,
            By::Ip => &shared.metrics.throttled_ip,
        },
        Refusal::Busy => &shared.metrics.connections_rejected_limit,
    };
    Metrics::inc(counter);
    let mut message = refusal.to_string();
    if let Some(first) = message.get_mut(..1) {
        first.make_ascii_uppercase();
    }
    ApiError::too_many(format!("{message}."))
}

/// Admit a negotiation (or a connect that skipped negotiation): the tenant is under its
/// negotiation rates and could still open a connection; refusals are 429.
pub(crate) fn admit_negotiation(
    shared: &Broker,
    req: &HttpRequest,
    identity: &Identity,
) -> Result<(), ApiError> {
    let tenant = tenant_of(req, shared, identity);
    shared
        .tenants
        .check_connections(&tenant)
        .and_then(|()| shared.tenants.negotiate(&tenant))
        .map_err(|r| logged(shared, req, identity, refused(shared, r)))
}

/// `error` (a 429), in the resource logs.
fn logged(shared: &Broker, req: &HttpRequest, identity: &Identity, error: ApiError) -> ApiError {
    super::logs::throttled(shared, req, identity.user_id.as_deref(), &error);
    error
}

/// Reserve a slot for a new client connection, holding the tenant's share of the per-tenant
/// counts until the connection ends; 429 (counted) when the process or the tenant is full.
pub(crate) fn reserve_client_slot(
    shared: &Broker,
    req: &HttpRequest,
    identity: &Identity,
) -> Result<ConnectionSlot, ApiError> {
    let slot = super::reserve_slot(shared).map_err(|e| {
        if e.status == actix_web::http::StatusCode::TOO_MANY_REQUESTS {
            logged(shared, req, identity, e)
        } else {
            e
        }
    })?;
    let tenant = tenant_of(req, shared, identity);
    let lease = shared
        .tenants
        .connect(&tenant)
        .map_err(|r| logged(shared, req, identity, refused(shared, r)))?;
    Ok(slot.with_lease(lease))
}
