//! `[network]` at the door: a request of a kind the rules do not allow from its client address
//! gets 403 with a JSON body (counted in `switchboard_network_denied_total{kind=...}`) before
//! any handler runs — WebSocket upgrades included, which go through the same application.
//!
//! The client address is the peer's; from a trusted proxy (`network.trusted_proxies`), the
//! last `X-Forwarded-For` entry that is not a trusted proxy itself. The per-tenant limits use
//! the same address ([`client_ip`]).

use std::net::IpAddr;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::middleware::Next;
use actix_web::{HttpRequest, web};

use super::ApiError;
use crate::config::{NetworkPolicy, RequestKind, parse_address};
use crate::http::state::Broker;
use crate::telemetry::Metrics;

/// The middleware (see the module documentation).
pub(crate) async fn network(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let refusal = match (
        req.app_data::<web::Data<Broker>>(),
        RequestKind::of_path(req.path()),
    ) {
        (Some(shared), Some(kind)) if !shared.network.is_open() => {
            let ip = client_ip(req.request(), shared);
            (!shared.network.allows(kind, ip)).then(|| {
                Metrics::inc(shared.metrics.network_denied(kind));
                let from = ip.map_or_else(|| "an unknown address".to_owned(), |ip| ip.to_string());
                ApiError::new(
                    StatusCode::FORBIDDEN,
                    "Error.Forbidden.NetworkRules",
                    format!(
                        "The network rules do not allow {} requests from {from}.",
                        kind.name()
                    ),
                )
            })
        }
        _ => None,
    };
    match refusal {
        Some(error) => {
            let (http_req, _) = req.into_parts();
            let response = actix_web::ResponseError::error_response(&error);
            Ok(ServiceResponse::new(http_req, response).map_into_right_body())
        }
        None => Ok(next.call(req).await?.map_into_left_body()),
    }
}

/// The client address of `req`: see the module documentation. Without trusted proxies,
/// `throttle.trust_forwarded_for` still takes the last `X-Forwarded-For` entry from any peer
/// (its meaning before `[network]`).
pub(crate) fn client_ip(req: &HttpRequest, shared: &Broker) -> Option<IpAddr> {
    address_of(
        req,
        &shared.network,
        shared.config.throttle.trust_forwarded_for,
    )
}

fn address_of(
    req: &HttpRequest,
    network: &NetworkPolicy,
    trust_forwarded_for: bool,
) -> Option<IpAddr> {
    let peer = req.peer_addr().map(|a| a.ip());
    let forwarded = || {
        req.headers()
            .get_all("x-forwarded-for")
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
    };
    if network.has_proxies() {
        let entries: Vec<&str> = forwarded().collect();
        return peer.map(|peer| network.client_ip(peer, entries.into_iter()));
    }
    if trust_forwarded_for && let Some(last) = forwarded().last().and_then(parse_address) {
        return Some(last);
    }
    peer
}

/// The compiled `[network]` of a configuration that was validated.
pub(crate) fn policy(config: &crate::config::Config) -> NetworkPolicy {
    config.network.policy().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::NetworkConfig;

    fn request(forwarded: &str) -> HttpRequest {
        actix_web::test::TestRequest::default()
            .peer_addr("127.0.0.1:5000".parse().unwrap())
            .insert_header(("x-forwarded-for", forwarded))
            .to_http_request()
    }

    #[test]
    fn the_peer_address_unless_forwarded_for_is_trusted() {
        let open = NetworkPolicy::default();
        let req = request("10.9.9.9, 10.0.0.7");
        assert_eq!(address_of(&req, &open, false), "127.0.0.1".parse().ok());
        assert_eq!(address_of(&req, &open, true), "10.0.0.7".parse().ok());
        let bogus = request("nonsense");
        assert_eq!(address_of(&bogus, &open, true), "127.0.0.1".parse().ok());

        // With trusted proxies the legacy switch does not matter: the peer must be a proxy.
        let proxies = |list: &[&str]| {
            NetworkConfig {
                trusted_proxies: list.iter().map(|p| (*p).to_owned()).collect(),
                ..NetworkConfig::default()
            }
            .policy()
            .unwrap()
        };
        let trusted = proxies(&["127.0.0.1", "10.0.0.0/24"]);
        assert_eq!(address_of(&req, &trusted, false), "10.9.9.9".parse().ok());
        let elsewhere = proxies(&["192.0.2.1"]);
        assert_eq!(address_of(&req, &elsewhere, true), "127.0.0.1".parse().ok());
    }
}
