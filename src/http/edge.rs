//! Limits at the edge of the HTTP layer, applied before a handler reads a request body.
//!
//! | what | limit | answer |
//! | --- | --- | --- |
//! | URL (path and query, tokens included) | 12 KiB ([`MAX_URL_BYTES`]) | 414 |
//! | header block (names, values, `: ` and line ends; tokens included) | 16 KiB ([`MAX_HEADER_BYTES`]) | 431 |
//! | the whole request head | 128 KiB, or more than 96 headers (actix-http's own limits) | 431 from actix-http, without a body |
//! | time for the head | 5 s (actix-web's `client_request_timeout`) | 408 from actix-http |
//! | time for the body | `limits.body_timeout_secs` | 408 |
//!
//! The two size limits are Azure's for HTTP/1.1 clients. Every handler authenticates from the
//! head and only then reads a body, through [`read_body`]; a body that is not complete in time
//! is answered 408 with a JSON error and the connection is closed.
//!
//! A body still arriving when its answer is written (refused before it was read, or timed out)
//! closes the connection: [`hold_unread_body`] keeps the body's stream alive until the answer is
//! out, because actix-http would otherwise drain a dropped chunked body for as long as the
//! client keeps it open — after a `Connection: close` answer without any timer.

use std::cell::RefCell;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use actix_web::body::{BodySize, BoxBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::error::PayloadError;
use actix_web::http::{StatusCode, header};
use actix_web::middleware::Next;
use actix_web::{HttpMessage as _, HttpRequest, web};
use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt as _};

use super::ApiError;

/// Longest request URL (path and query), in bytes.
pub(crate) const MAX_URL_BYTES: usize = 12 * 1024;
/// Largest header block, in bytes.
pub(crate) const MAX_HEADER_BYTES: usize = 16 * 1024;

/// 414 or 431 when the request head is over Azure's limits.
pub(crate) fn check_head(req: &HttpRequest) -> Result<(), ApiError> {
    let url = req.uri().path_and_query().map_or(0, |pq| pq.as_str().len());
    if url > MAX_URL_BYTES {
        return Err(ApiError::new(
            StatusCode::URI_TOO_LONG,
            "Error.UriTooLong",
            format!(
                "The request URL is {url} bytes long; the limit is {MAX_URL_BYTES} bytes (path and query)."
            ),
        ));
    }
    let headers: usize = req
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum();
    if headers > MAX_HEADER_BYTES {
        return Err(ApiError::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "Error.RequestHeaderFieldsTooLarge",
            format!(
                "The request headers are {headers} bytes long; the limit is {MAX_HEADER_BYTES} bytes."
            ),
        ));
    }
    Ok(())
}

/// Whether a request announces a body (a non-zero `Content-Length`, or `Transfer-Encoding`).
fn has_body(req: &ServiceRequest) -> bool {
    let headers = req.headers();
    headers.contains_key(header::TRANSFER_ENCODING)
        || headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim() != "0")
}

/// Middleware: hand the handler the request body through a shared reader and keep the body
/// alive until the answer is written, so that a body the handler left unread closes the
/// connection (actix-http's rule for an unread, undropped body) instead of being drained.
pub(crate) async fn hold_unread_body(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    if !has_body(&req) {
        return Ok(next.call(req).await?.map_into_left_body());
    }
    let held = Rc::new(RefCell::new(req.take_payload()));
    let reader: Pin<Box<dyn Stream<Item = Result<Bytes, PayloadError>>>> =
        Box::pin(SharedPayload(held.clone()));
    req.set_payload(Payload::from(reader));
    let res = next.call(req).await?;
    Ok(res
        .map_body(|_, body| HoldingBody {
            body: body.boxed(),
            _held: held,
        })
        .map_into_right_body())
}

/// The handler's reader of a held body.
struct SharedPayload(Rc<RefCell<Payload>>);

impl Stream for SharedPayload {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        Pin::new(&mut *self.0.borrow_mut()).poll_next(cx)
    }
}

/// A response body that keeps the request's body alive until it is written.
struct HoldingBody {
    body: BoxBody,
    _held: Rc<RefCell<Payload>>,
}

impl MessageBody for HoldingBody {
    type Error = Box<dyn std::error::Error>;

    fn size(&self) -> BodySize {
        self.body.size()
    }

    fn poll_next(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, Self::Error>>> {
        Pin::new(&mut self.body).poll_next(cx)
    }
}

/// Why a body could not be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BodyError {
    /// More than the limit arrived.
    #[error("the request body is larger than the limit of {0} bytes")]
    TooLarge(usize),
    /// The body was not complete within the timeout.
    #[error("the request body was not received within {} s", .0.as_secs())]
    TimedOut(Duration),
    /// The transfer broke (a malformed chunk, a reset).
    #[error("could not read the request body: {0}")]
    Read(#[from] PayloadError),
}

/// Read a whole body of at most `limit` bytes, which must arrive within `timeout` (a timeout is
/// answered with [`ApiError::request_timeout`]). `expected` is the size to allocate for at first
/// (the declared length, or 0). On [`BodyError::TooLarge`] the rest is left unread in `payload`.
pub(crate) async fn read_body(
    payload: &mut web::Payload,
    limit: usize,
    expected: usize,
    timeout: Duration,
) -> Result<BytesMut, BodyError> {
    let read = async {
        let mut buf = BytesMut::with_capacity(expected.min(limit));
        while let Some(chunk) = payload.next().await {
            let chunk = chunk?;
            if buf.len() + chunk.len() > limit {
                return Err(BodyError::TooLarge(limit));
            }
            buf.extend_from_slice(&chunk);
        }
        Ok(buf)
    };
    tokio::time::timeout(timeout, read)
        .await
        .unwrap_or(Err(BodyError::TimedOut(timeout)))
}

#[cfg(test)]
mod tests {
    use actix_web::test::TestRequest;

    use super::*;

    #[test]
    fn url_and_header_limits() {
        let ok = TestRequest::get()
            .uri(&format!(
                "/client/?hub=h&access_token={}",
                "a".repeat(12_000)
            ))
            .insert_header(("authorization", "b".repeat(16_000)))
            .to_http_request();
        assert_eq!(check_head(&ok), Ok(()));
        let long_url = TestRequest::get()
            .uri(&format!(
                "/client/?hub=h&access_token={}",
                "a".repeat(12_300)
            ))
            .to_http_request();
        assert_eq!(
            check_head(&long_url).unwrap_err().status,
            StatusCode::URI_TOO_LONG
        );
        let big_headers = TestRequest::get()
            .uri("/")
            .insert_header(("authorization", "b".repeat(10_000)))
            .insert_header(("x-more", "c".repeat(7_000)))
            .to_http_request();
        assert_eq!(
            check_head(&big_headers).unwrap_err().status,
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
        );
    }
}
