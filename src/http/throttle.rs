//! The HTTP side of the per-tenant limits ([`crate::conn::tenant`]): which user, token and client
//! address a client request belongs to, and the 429 answers (Azure's error body, counted in
//! `switchboard_throttled_total{by=...}`).
//!
//! The client address is the socket's peer address; with `throttle.trust_forwarded_for` it is
//! the last entry of the last `X-Forwarded-For` header (what the reverse proxy in front
//! appended), falling back to the peer address when that entry is missing or not an address.

use std::net::{IpAddr, SocketAddr};

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
        client_ip(req, shared.config.throttle.trust_forwarded_for),
    )
}

/// The client address of `req` (see the module documentation).
pub(crate) fn client_ip(req: &HttpRequest, trust_forwarded_for: bool) -> Option<IpAddr> {
    if trust_forwarded_for {
        let forwarded = req
            .headers()
            .get_all("x-forwarded-for")
            .last()
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.rsplit(',').next())
            .and_then(parse_address);
        if forwarded.is_some() {
            return forwarded;
        }
    }
    req.peer_addr().map(|a| a.ip())
}

/// An address as proxies write it: `192.0.2.1`, `2001:db8::1`, with or without a port
/// (`192.0.2.1:4711`, `[2001:db8::1]:4711`).
fn parse_address(text: &str) -> Option<IpAddr> {
    let text = text.trim();
    text.parse::<IpAddr>()
        .ok()
        .or_else(|| text.parse::<SocketAddr>().ok().map(|a| a.ip()))
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
        .map_err(|r| refused(shared, r))
}

/// Reserve a slot for a new client connection, holding the tenant's share of the per-tenant
/// counts until the connection ends; 429 (counted) when the process or the tenant is full.
pub(crate) fn reserve_client_slot(
    shared: &Broker,
    req: &HttpRequest,
    identity: &Identity,
) -> Result<ConnectionSlot, ApiError> {
    let slot = super::reserve_slot(shared)?;
    let tenant = tenant_of(req, shared, identity);
    let lease = shared
        .tenants
        .connect(&tenant)
        .map_err(|r| refused(shared, r))?;
    Ok(slot.with_lease(lease))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_addresses_with_and_without_ports() {
        assert_eq!(parse_address(" 192.0.2.1"), "192.0.2.1".parse().ok());
        assert_eq!(parse_address("192.0.2.1:4711"), "192.0.2.1".parse().ok());
        assert_eq!(parse_address("2001:db8::1"), "2001:db8::1".parse().ok());
        assert_eq!(
            parse_address("[2001:db8::1]:4711"),
            "2001:db8::1".parse().ok()
        );
        assert_eq!(parse_address("unknown"), None);
    }

    #[test]
    fn the_peer_address_unless_forwarded_for_is_trusted() {
        let req = actix_web::test::TestRequest::default()
            .peer_addr("127.0.0.1:5000".parse().unwrap())
            .insert_header(("x-forwarded-for", "10.9.9.9, 10.0.0.7"))
            .to_http_request();
        assert_eq!(client_ip(&req, false), "127.0.0.1".parse().ok());
        assert_eq!(client_ip(&req, true), "10.0.0.7".parse().ok());
        let bogus = actix_web::test::TestRequest::default()
            .peer_addr("127.0.0.1:5000".parse().unwrap())
            .insert_header(("x-forwarded-for", "nonsense"))
            .to_http_request();
        assert_eq!(client_ip(&bogus, true), "127.0.0.1".parse().ok());
    }
}
