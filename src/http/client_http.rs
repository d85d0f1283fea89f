//! Server-Sent Events and long polling (`docs/protocol.md#transports`): the HTTP side of
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
use super::{ApiError, authenticate_client, count_refused_connect, query_value};
use crate::conn::client::{self, ClientContext};
use crate::conn::owner::{Owner, Refusal};
use crate::conn::sse::SseSocket;
use crate::conn::stream::Stream;
use crate::conn::transport::{
    HttpEntry, Pipe, PipeError, PipeReceiver, PollOutcome, PollState, Transport,
};
use crate::http::io::Takeover;
use crate::http::state::Broker;
use crate::id::TransportKind;
use crate::telemetry::Metrics;

/// Long-poll timeout (ASP.NET Core's `PollTimeout`).
const POLL_TIMEOUT: Duration = Duration::from_secs(90);
/// POST bodies queued for one connection before a POST waits (in bytes, the bound is
/// `limits.max_message_size`: one POST of the largest size; a second POST arriving while one
/// waits for room is 429).
const INBOUND_CAPACITY: usize = 16;
/// How long actix-http may take to write out what it has before a handler takes the socket (an
/// SSE answer's head, a previous answer before a poll is parked).
const TAKEOVER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a parked poll's answer may take to write: a client that does not read it loses the
/// connection.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

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
    let identity = authenticate_client(&req, &shared, &hub)
        .inspect_err(|e| count_refused_connect(&shared, e))?;
    let owner = Owner::of(&hub, &identity);

    match shared.http.get_for(&token, &owner) {
        Err(Refusal::Unknown) => {}
        Err(Refusal::Foreign) => return Ok(refused(&shared, Refusal::Foreign)),
        Ok(entry) => return Ok(serve_existing(&req, entry, kind, token, &shared).await),
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
    let slot = super::throttle::reserve_client_slot(&shared, &req, &identity)
        .inspect_err(|e| count_refused_connect(&shared, e))?;
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
        ip: super::network::client_ip(&req, &shared),
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
            // Served by the actor on the socket itself once the answer's head is out.
            let Some(takeover) = Takeover::of(&req) else {
                return Err(ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Error.Internal",
                    "Server-Sent Events need an HTTP/1 connection.",
                )
                .into());
            };
            let chunked = req.version() >= actix_web::http::Version::HTTP_11;
            shared.http.insert(
                token.clone(),
                HttpEntry {
                    kind,
                    inbound: inbound_tx,
                    poll: None,
                    owner,
                },
            );
            // Until the actor has the socket, the entry goes with this answer (the client may
            // leave before the head is out).
            let unserved = Unserved(Some((shared.clone(), token)));
            let start = async move {
                let mut unserved = unserved;
                if let Ok(Some(io)) = tokio::time::timeout(TAKEOVER_TIMEOUT, takeover.take()).await
                    && let Some((shared, token)) = unserved.0.take()
                {
                    let events = SseSocket::new(io, chunked);
                    spawn(
                        Transport::ServerSentEvents { inbound, events },
                        shared,
                        token,
                    );
                }
            };
            // The stream's first comment, written by actix-http with the head; the stream ends
            // there for actix-http, which lets the socket go.
            let first = futures_util::stream::once(async {
                Ok::<_, actix_web::Error>(Bytes::from_static(b":\r\n"))
            });
            let handover = futures_util::stream::once(start)
                .filter_map(|()| std::future::ready(None::<Result<Bytes, actix_web::Error>>));
            let mut builder = HttpResponse::Ok();
            builder
                .content_type("text/event-stream")
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
            let mut resp = builder.streaming(first.chain(handover));
            // HTTP/1.0 has no chunks: the stream ends with the connection.
            resp.head_mut().no_chunking(!chunked);
            Ok(resp)
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
    req: &HttpRequest,
    entry: HttpEntry,
    kind: TransportKind,
    token: String,
    shared: &web::Data<Broker>,
) -> HttpResponse {
    match (entry.kind, kind, entry.poll) {
        (TransportKind::LongPolling, TransportKind::LongPolling, Some(poll)) => {
            // A poll that will wait is parked: its task takes the socket from actix-http.
            if !poll.is_ready()
                && let Some(takeover) = parkable(req)
            {
                // Taken once actix-http has written out what it has; a client that does not
                // read that in time waits for its poll here instead.
                if let Ok(Some(io)) = tokio::time::timeout(TAKEOVER_TIMEOUT, takeover.take()).await
                {
                    let origin = super::allowed_origin(req);
                    let shared = shared.clone().into_inner();
                    actix_web::rt::spawn(park(io, poll, token, shared, origin));
                    // Goes nowhere: actix-http no longer has the socket.
                    return HttpResponse::NoContent().finish();
                }
            }
            let outcome = poll.poll(POLL_TIMEOUT).await;
            poll_answer(outcome, &poll, &token, shared)
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

/// The answer to a poll that ended with `outcome`.
fn poll_answer(
    outcome: PollOutcome,
    poll: &PollState,
    token: &str,
    shared: &Broker,
) -> HttpResponse {
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

/// An SSE connection's entry, forgotten when this is dropped before its actor started.
struct Unserved(Option<(Arc<Broker>, String)>);

impl Drop for Unserved {
    fn drop(&mut self) {
        if let Some((shared, token)) = self.0.take() {
            shared.http.remove(&token);
        }
    }
}

/// The connection of `req`, if a poll may be answered outside actix-http and the connection
/// then kept for the next request: HTTP/1.1 without `Connection: close`.
fn parkable(req: &HttpRequest) -> Option<Takeover> {
    let closes = req
        .headers()
        .get(header::CONNECTION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case("close")));
    if req.version() != actix_web::http::Version::HTTP_11 || closes {
        return None;
    }
    Takeover::of(req)
}

/// A parked poll: wait for data (or the poll timeout, or the end of the connection) while
/// holding only the socket, answer, and give the socket back to actix-http for the client's next
/// request. A client that leaves ends the poll; one that sends its next request before the answer
/// gets the answer at once.
async fn park(
    io: Stream,
    poll: Arc<PollState>,
    token: String,
    shared: Arc<Broker>,
    origin: Option<HeaderValue>,
) {
    let outcome = tokio::select! {
        outcome = poll.poll(POLL_TIMEOUT) => outcome,
        sent = io.wait_input() => match sent {
            Ok(true) => poll.poll(Duration::ZERO).await,
            // The client left.
            _ => return,
        },
    };
    let mut answer = poll_answer(outcome, &poll, &token, &shared);
    drop(poll);
    if let Some(origin) = origin {
        super::allow_origin(answer.headers_mut(), origin);
    }
    let written =
        tokio::time::timeout(ANSWER_TIMEOUT, crate::http::io::write_response(&io, answer)).await;
    if matches!(written, Ok(Ok(()))) {
        crate::http::io::serve(io);
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
