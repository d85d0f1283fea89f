//! `GET /client/?hub=H&id=TOKEN` with a WebSocket upgrade: authenticate, claim the negotiated
//! connection, upgrade, and hand the socket to a client connection actor.
//!
//! Without `id` the upgrade starts a new connection (the clients' `skipNegotiation`, and
//! third-party clients that connect straight to the redirect URL). The token is required on the
//! upgrade too: browsers send it as `access_token`, other clients in `Authorization`. With `id`,
//! the token must be of the hub and user the connection was negotiated for (or, for a
//! stateful-reconnect resumption, opened for); another one gets the unknown id's 404 and is
//! counted in `switchboard_connection_takeover_refused_total`.
//! Server-Sent Events and long polling use the same URL; their requests are handed to
//! [`client_http`](super::client_http).

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};

use super::negotiate::hub_param;
use super::{ApiError, authenticate_client, count_refused_connect, query_value};
use crate::conn::client::{self, ClientContext, Resume};
use crate::conn::owner::{Owner, Refusal};
use crate::conn::transport::Transport;
use crate::conn::ws::{Detached, WsSocket};
use crate::http::state::Broker;
use crate::id::{ConnectionId, TransportKind};
use crate::telemetry::Metrics;

/// Register the client transport routes.
pub(crate) fn configure(cfg: &mut web::ServiceConfig) {
    for path in ["/client", "/client/"] {
        cfg.route(path, web::get().to(connect));
        cfg.route(path, web::to(other_method));
    }
}

/// `<Transport> transport not supported by this end point type` (404), as ASP.NET Core answers
/// a disabled transport.
pub(crate) fn not_supported(kind: TransportKind) -> HttpResponse {
    HttpResponse::NotFound()
        .content_type("text/plain")
        .body(format!(
            "{} transport not supported by this end point type",
            kind.name()
        ))
}

pub(crate) fn plain(status: actix_web::http::StatusCode, text: &'static str) -> HttpResponse {
    HttpResponse::build(status)
        .content_type("text/plain")
        .body(text)
}

/// 404 `No Connection with that ID` (ASP.NET Core's answer for an unknown id).
pub(crate) fn unknown_connection() -> HttpResponse {
    plain(
        actix_web::http::StatusCode::NOT_FOUND,
        "No Connection with that ID",
    )
}

/// The answer to a connection lookup that failed: a connection of another hub or user is
/// answered exactly as an unknown id (the refusal must not tell that the id exists), and counted.
pub(crate) fn refused(shared: &Broker, refusal: Refusal) -> HttpResponse {
    if refusal == Refusal::Foreign {
        Metrics::inc(&shared.metrics.connection_takeover_refused);
    }
    unknown_connection()
}

async fn other_method(
    req: HttpRequest,
    body: web::Payload,
    shared: web::Data<Broker>,
) -> HttpResponse {
    use actix_web::http::Method;
    match *req.method() {
        Method::OPTIONS => HttpResponse::NoContent().finish(),
        Method::POST | Method::DELETE => {
            super::client_http::post_or_delete(req, body, shared).await
        }
        _ => HttpResponse::MethodNotAllowed().finish(),
    }
}

fn is_websocket_upgrade(req: &HttpRequest) -> bool {
    req.headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

async fn connect(
    req: HttpRequest,
    shared: web::Data<Broker>,
) -> Result<HttpResponse, actix_web::Error> {
    let id = query_value(&req, "id");
    if !is_websocket_upgrade(&req) {
        return super::client_http::get(req, shared).await;
    }
    if !shared
        .config
        .transports
        .contains(&TransportKind::WebSockets)
    {
        return Ok(not_supported(TransportKind::WebSockets));
    }
    let hub = hub_param(&req)?;
    let identity = authenticate_client(&req, &shared, &hub)
        .inspect_err(|e| count_refused_connect(&shared, e))?;
    let owner = Owner::of(&hub, &identity);

    // The resumable entry (a guard) is dropped with `resume` on every early return below: a
    // refused slot or upgrade leaves nothing behind.
    let mut resume = None;
    let connection_id = match id {
        Some(token) => match claim(&shared, &token, &owner).await {
            Ok((connection_id, stateful)) => {
                if stateful {
                    let (tx, rx) = tokio::sync::mpsc::channel(1);
                    let entry = shared.client_env.resumable.insert(token, owner, tx);
                    resume = Some(Resume { entry, rx });
                }
                connection_id
            }
            Err(Refusal::Foreign) => return Ok(refused(&shared, Refusal::Foreign)),
            Err(Refusal::Unknown) => {
                return resume_connection(&req, &shared, &token, &owner).await;
            }
        },
        None => {
            // Connecting without negotiate counts as a negotiation.
            super::throttle::admit_negotiation(&shared, &req, &identity)
                .inspect_err(|e| count_refused_connect(&shared, e))?;
            ConnectionId::random()
        }
    };

    let shared = shared.into_inner();
    let slot = super::throttle::reserve_client_slot(&shared, &req, &identity)
        .inspect_err(|e| count_refused_connect(&shared, e))?;
    let hub_handle = shared
        .hubs
        .get_or_create(&hub)
        .map_err(ApiError::from)
        .inspect_err(|e| count_refused_connect(&shared, e))?;

    let max = shared.config.limits.max_message_size;
    let ctx = ClientContext {
        env: shared.client_env.clone(),
        hub: hub_handle,
        connection_id,
        identity,
        headers: forwarded_headers(&req),
        query: forwarded_query(&req),
        ip: super::network::client_ip(&req, &shared),
        slot,
        resume,
    };
    // The actor starts once the handshake's answer is written; until then `ctx` holds the slot.
    super::upgrade::accept(&req, move |upgraded| {
        let metrics = ctx.env.metrics.clone();
        let socket = WsSocket::new(upgraded.io, upgraded.read, max, metrics);
        actix_web::rt::spawn(client::run(ctx, Transport::WebSocket(socket)));
    })
}

/// A stateful-reconnect client coming back with its token: no negotiate, no handshake; the new
/// socket replaces the lost one. Only a token of the hub and user the connection was opened for
/// may resume it.
async fn resume_connection(
    req: &HttpRequest,
    shared: &Broker,
    token: &str,
    owner: &Owner,
) -> Result<HttpResponse, actix_web::Error> {
    let resumable = match shared.client_env.resumable.get(token, owner) {
        Ok(tx) => tx,
        Err(refusal) => return Ok(refused(shared, refusal)),
    };
    super::upgrade::accept(req, move |upgraded| {
        // The connection's actor may run on another worker thread: the socket moves there.
        // If the connection ended meanwhile (or is already resuming), dropping the socket
        // closes it.
        if let Ok(detached) = Detached::new(upgraded.io, upgraded.read) {
            let _ = resumable.try_send(detached);
        }
    })
}

/// The connect request's headers as a hub server sees them in OpenConnection: every header but
/// `Authorization` (the token's claims travel as claims) and the WebSocket handshake's own.
pub(crate) fn forwarded_headers(req: &HttpRequest) -> Vec<(String, Vec<String>)> {
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    for (name, value) in req.headers() {
        let name = name.as_str();
        if name == "authorization" || name.starts_with("sec-websocket-") {
            continue;
        }
        let Ok(value) = value.to_str() else { continue };
        match out.iter_mut().find(|(n, _)| n == name) {
            Some((_, values)) => values.push(value.to_owned()),
            None => out.push((name.to_owned(), vec![value.to_owned()])),
        }
    }
    out
}

/// The connect request's query (with its leading `?`), without `access_token` and `id`: the
/// hub server must not see the client's token or connection token. Names are compared as the
/// broker reads them (percent- and `+`-decoded) and ignoring case, so that no spelling of either
/// gets through.
pub(crate) fn forwarded_query(req: &HttpRequest) -> String {
    let kept: Vec<&str> = req
        .query_string()
        .split('&')
        .filter(|p| {
            let key = form_urlencoded::parse(p.as_bytes()).next().map(|(k, _)| k);
            key.is_some_and(|k| {
                !k.eq_ignore_ascii_case("access_token") && !k.eq_ignore_ascii_case("id")
            })
        })
        .collect();
    if kept.is_empty() {
        String::new()
    } else {
        format!("?{}", kept.join("&"))
    }
}

/// Claim the negotiated connection `token` stands for: the id and whether it negotiated
/// stateful reconnect. On a single node that is the pending entry negotiate left here. In a
/// cluster the token may come from another node's negotiate: a signed token of the same owner
/// is accepted too, and either way the id is used once across the cluster (while the engine is
/// unreachable, once per node).
async fn claim(
    shared: &Broker,
    token: &str,
    owner: &Owner,
) -> Result<(ConnectionId, bool), Refusal> {
    let local = shared.pending.claim(token, owner);
    let Some(cluster) = &shared.cluster else {
        return local.map(|p| (p.connection_id, p.stateful_reconnect));
    };
    let claimed = match local {
        Ok(p) => (p.connection_id, p.stateful_reconnect),
        Err(Refusal::Foreign) => return Err(Refusal::Foreign),
        Err(Refusal::Unknown) => {
            let keys = shared.keys();
            match crate::cluster::token::verify(keys.all(), token, owner, crate::auth::unix_now()) {
                Some(v) => (v.connection_id, v.stateful_reconnect),
                None => return Err(Refusal::Unknown),
            }
        }
    };
    let ttl = shared.config.limits.negotiate_timeout();
    match cluster.claim_once(claimed.0.as_str(), ttl).await {
        Ok(true) => Ok(claimed),
        Ok(false) => Err(Refusal::Unknown),
        Err(e) => {
            tracing::debug!(error = %e, "connection token claimed on this node only");
            Ok(claimed)
        }
    }
}

#[cfg(test)]
mod tests {
    use actix_web::test::TestRequest;

    use super::forwarded_query;

    fn forwarded(query: &str) -> String {
        forwarded_query(
            &TestRequest::get()
                .uri(&format!("/client/?{query}"))
                .to_http_request(),
        )
    }

    #[test]
    fn the_forwarded_query_drops_the_token_and_the_connection_token() {
        assert_eq!(
            forwarded("hub=chat&id=c1&access_token=t&x=1&&"),
            "?hub=chat&x=1"
        );
        assert_eq!(forwarded("id=c1&access_token=t"), "");
    }

    #[test]
    fn every_spelling_of_token_and_id_is_dropped() {
        // The broker reads `access%5Ftoken` as the token and `ID` as the connection token.
        assert_eq!(
            forwarded("hub=chat&access%5Ftoken=t&ACCESS_TOKEN=u&ID=c1&%69d=c2&i%64=c3&keep=1"),
            "?hub=chat&keep=1"
        );
    }
}
