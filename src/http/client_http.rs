//! Server-Sent Events and long polling (`spec/client-protocol.md` §2.2–§2.5): the HTTP side of
//! the two fallback transports. Both are adapters in front of the same client connection actor
//! as WebSockets ([`Transport`]); this module only turns requests into transport events.
//!
//! | request (same URL `/client/?hub=&id=`) | answer |
//! | --- | --- |
//! | `GET`, `Accept: text/event-stream` | the SSE stream (`:\r\n` first, then `data:` events) |
//! | other `GET` | long poll: the first answers 200 empty at once; later ones wait up to 90 s for data (200 with everything queued), 200 empty on timeout, 204 when the connection is over or a newer poll took over |
//! | `POST` | client bytes (200); at most `limits.max_message_size` per request (413) |
//! | `DELETE` | long polling: end the connection (202); SSE: 400 |
//!
//! Missing `id` → 400 `Connection ID required`; unknown id → 404 `No Connection with that ID`;
//! a second SSE stream for a connection → 409; a transport that is not offered → 404
//! `<Transport> transport not supported by this end point type`. Every request carries a valid
//! client token for the hub (SSE: `access_token` query; others: `Authorization`), as Azure
//! re-checks tokens on each HTTP transport request, and of the hub and user the connection was
//! negotiated for: a token of anyone else gets the unknown id's 404 (counted in
//! `switchboard_connection_takeover_refused_total`), since with negotiate version 0 the
//! connection token is the public connection id.

use std::sync::Arc;
use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, web};
use bytes::Bytes;
use futures_util::StreamExt as _;

use super::client_ws::{
    forwarded_headers, forwarded_query, not_supported, plain, refused, unknown_connection,
};
use super::edge::BodyError;
use super::negotiate::hub_param;
use super::{ApiError, authenticate_client, query_value};
use crate::conn::client::{self, ClientContext};
use crate::conn::owner::{Owner, Refusal};
use crate::conn::transport::{
    HttpEntry, Pipe, PipeError, PipeReceiver, PipeSender, PollOutcome, PollState, Transport,
};
use crate::http::state::Broker;
use crate::id::TransportKind;
use crate::telemetry::Metrics;

/// Long-poll timeout (ASP.NET Core's `PollTimeout`).
const POLL_TIMEOUT: Duration = Duration::from_secs(90);
/// POST bodies queued for one connection before a POST waits (in bytes, the bound is
/// `limits.max_message_size`: one POST of the largest size; a second POST arriving while one
/// waits for room is 429).
const INBOUND_CAPACITY: usize = 16;
/// SSE events queued between the actor and the response stream.
const SSE_CAPACITY: usize = 16;

fn is_event_stream(req: &HttpRequest) -> bool {
    req.headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/event-stream"))
}

fn no_cache(resp: &mut actix_web::HttpResponseBuilder) {
    resp.insert_header((
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, no-store"),
    ))
    .insert_header((header::PRAGMA, HeaderValue::from_static("no-cache")))
    .insert_header((
        header::EXPIRES,
        HeaderValue::from_static("Thu, 01 Jan 1970 00:00:00 GMT"),
    ));
}

/// A `GET` without WebSocket upgrade: an SSE stream or a long poll.
pub(crate) async fn get(
    req: HttpRequest,
    shared: web::Data<Broker>,
) -> Result<HttpResponse, actix_web::Error> {
    let Some(token) = query_value(&req, "id") else {
        return Ok(plain(StatusCode::BAD_REQUEST, "Connection ID required"));
    };
    let kind = if is_event_stream(&req) {
        TransportKind::ServerSentEvents
    } else {
        TransportKind::LongPolling
    };
    let hub = hub_param(&req)?;
    let identity = authenticate_client(&req, &shared, &hub)?;
    let owner = Owner::of(&hub, &identity);

    match shared.http.get_for(&token, &owner) {
        Err(Refusal::Unknown) => {}
        Err(Refusal::Foreign) => return Ok(refused(&shared, Refusal::Foreign)),
        Ok(entry) => return Ok(serve_existing(entry, kind, &token, &shared).await),
    }

    // A new connection: claim the negotiated id.
    if !shared.config.transports.contains(&kind) {
        return Ok(not_supported(kind));
    }
    let allowed = identity
        .claim("asrs.s.htt")
        .and_then(|v| v.parse::<u32>().ok())
        .unwrap_or(u32::MAX);
    if allowed & kind.bit() == 0 {
        return Ok(not_supported(kind));
    }
    let pending = match shared.pending.claim(&token, &owner) {
        Ok(p) => p,
        Err(refusal) => return Ok(refused(&shared, refusal)),
    };
    let shared = shared.into_inner();
    let slot = super::throttle::reserve_client_slot(&shared, &req, &identity)?;
    // Pipes rather than tokio channels: an idle connection's queues hold no memory.
    let limits = &shared.config.limits;
    let inbound_tx = Arc::new(Pipe::new(INBOUND_CAPACITY, limits.max_message_size));
    let inbound = PipeReceiver(inbound_tx.clone());
    let ctx = ClientContext {
        hub: shared.hubs.get_or_create(&hub).map_err(ApiError::from)?,
        env: shared.client_env.clone(),
        connection_id: pending.connection_id,
        identity,
        headers: forwarded_headers(&req),
        query: forwarded_query(&req),
        slot,
        resume: None,
    };
    let spawn = |transport: Transport, shared: Arc<Broker>, token: String| {
        let long_polling = matches!(transport, Transport::LongPolling { .. });
        // Boxed here, the connection's future is not also kept beside the context and the
        // transport it was made from in this task's own future.
        let serve = Box::pin(client::run(ctx, transport));
        actix_web::rt::spawn(async move {
            serve.await;
            let linger = long_polling
                && shared
                    .http
                    .get(&token)
                    .and_then(|e| e.poll)
                    .is_some_and(|p| {
                        // What the connection queued last (its Close message) is still to be
                        // polled, or the client ended it with DELETE and may poll once more (204).
                        !p.is_finished() || p.is_terminated()
                    });
            if linger {
                // Until a poll answers 204, or the disconnect timeout.
                tokio::time::sleep(shared.config.limits.negotiate_timeout()).await;
            }
            shared.http.remove(&token);
        });
    };
    match kind {
        TransportKind::ServerSentEvents => {
            let pipe = Arc::new(Pipe::new(SSE_CAPACITY, limits.outbox_max_bytes));
            let (events, rx) = (PipeSender(pipe.clone()), PipeReceiver(pipe));
            shared.http.insert(
                token.clone(),
                HttpEntry {
                    kind,
                    inbound: inbound_tx,
                    poll: None,
                    owner,
                },
            );
            spawn(
                Transport::ServerSentEvents { inbound, events },
                shared.clone(),
                token,
            );
            let first = futures_util::stream::once(async {
                Ok::<_, actix_web::Error>(Bytes::from_static(b":\r\n"))
            });
            let rest = futures_util::stream::unfold(rx, |mut rx| async move {
                rx.recv().await.map(|b| (Ok::<_, actix_web::Error>(b), rx))
            });
            let mut resp = HttpResponse::Ok();
            resp.content_type("text/event-stream")
                .insert_header((
                    header::CACHE_CONTROL,
                    HeaderValue::from_static("no-cache,no-store"),
                ))
                .insert_header((header::PRAGMA, HeaderValue::from_static("no-cache")))
                .insert_header((
                    header::CONTENT_ENCODING,
                    HeaderValue::from_static("identity"),
                ))
                .insert_header(("X-Accel-Buffering", HeaderValue::from_static("no")));
            Ok(resp.streaming(first.chain(rest)))
        }
        _ => {
            let poll = Arc::new(PollState::new(shared.config.limits.outbox_max_bytes));
            shared.http.insert(
                token.clone(),
                HttpEntry {
                    kind,
                    inbound: inbound_tx,
                    poll: Some(poll.clone()),
                    owner,
                },
            );
            spawn(
                Transport::LongPolling { inbound, poll },
                shared.clone(),
                token,
            );
            // The first poll answers at once (the JS client requires 200 here).
            let mut resp = HttpResponse::Ok();
            no_cache(&mut resp);
            Ok(resp.content_type("application/octet-stream").finish())
        }
    }
}

/// A `GET` for a connection that already has its transport: a long poll, or a refusal (a second
/// SSE stream, a change of transport).
async fn serve_existing(
    entry: HttpEntry,
    kind: TransportKind,
    token: &str,
    shared: &Broker,
) -> HttpResponse {
    match (entry.kind, kind, entry.poll) {
        (TransportKind::LongPolling, TransportKind::LongPolling, Some(poll)) => {
            let outcome = poll.poll(POLL_TIMEOUT).await;
            if outcome == PollOutcome::Done && poll.is_finished() && !poll.is_terminated() {
                // The client has been told the connection is over.
                shared.http.remove(token);
            }
            let mut resp = match outcome {
                PollOutcome::Data(data) => {
                    let mut r = HttpResponse::Ok();
                    r.content_type("application/octet-stream");
                    no_cache(&mut r);
                    return r.body(data);
                }
                PollOutcome::Timeout => HttpResponse::Ok(),
                PollOutcome::Done => HttpResponse::NoContent(),
            };
            no_cache(&mut resp);
            resp.content_type("application/octet-stream").finish()
        }
        (TransportKind::ServerSentEvents, TransportKind::ServerSentEvents, _) => {
            HttpResponse::Conflict().finish()
        }
        _ => plain(
            StatusCode::BAD_REQUEST,
            "Cannot change transports mid-connection",
        ),
    }
}

/// `POST` (client bytes) and `DELETE` (end a long-polling connection).
pub(crate) async fn post_or_delete(
    req: HttpRequest,
    mut body: web::Payload,
    shared: web::Data<Broker>,
) -> HttpResponse {
    let Some(token) = query_value(&req, "id") else {
        return plain(StatusCode::BAD_REQUEST, "Connection ID required");
    };
    let hub = match hub_param(&req) {
        Ok(h) => h,
        Err(e) => return actix_web::ResponseError::error_response(&e),
    };
    let identity = match authenticate_client(&req, &shared, &hub) {
        Ok(identity) => identity,
        Err(e) => return actix_web::ResponseError::error_response(&e),
    };
    let entry = match shared.http.get_for(&token, &Owner::of(&hub, &identity)) {
        Ok(entry) => entry,
        Err(refusal) => return refused(&shared, refusal),
    };
    if req.method() == actix_web::http::Method::DELETE {
        return match entry.poll {
            Some(poll) => {
                // The connection ends now: later POSTs find no connection, a later poll 204.
                poll.terminate();
                HttpResponse::Accepted().content_type("text/plain").finish()
            }
            None => plain(
                StatusCode::BAD_REQUEST,
                "Cannot terminate this connection using the DELETE endpoint.",
            ),
        };
    }
    if entry.poll.as_ref().is_some_and(|p| p.is_terminated()) {
        return unknown_connection();
    }
    // Read the body, bounded by the message size limit (Azure: 1 MB on these transports) and
    // by the body timeout.
    let max = shared.config.limits.max_message_size;
    let timeout = shared.config.limits.body_timeout();
    let data = match super::edge::read_body(&mut body, max, 0, timeout).await {
        Ok(data) => data,
        Err(BodyError::TooLarge(_)) => {
            return actix_web::ResponseError::error_response(&ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "Error.PayloadTooLarge",
                format!("The maximum message size of {max}B was exceeded."),
            ));
        }
        Err(BodyError::Read(_)) => {
            return plain(StatusCode::BAD_REQUEST, "Could not read the request body.");
        }
        Err(BodyError::TimedOut(t)) => {
            return actix_web::ResponseError::error_response(&ApiError::request_timeout(t));
        }
    };
    if !data.is_empty() {
        match entry.inbound.send(data.freeze()).await {
            Ok(()) => {}
            Err(PipeError::Closed(_)) => return unknown_connection(),
            Err(PipeError::Busy(_)) => {
                Metrics::inc(&shared.metrics.inbound_busy);
                return actix_web::ResponseError::error_response(&ApiError::too_many(
                    "The connection is still processing an earlier request: send one at a time.",
                ));
            }
        }
    }
    HttpResponse::Ok().content_type("text/plain").finish()
}
