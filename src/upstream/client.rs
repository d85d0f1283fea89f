//! The HTTP side of upstream calls: one shared `reqwest::Client`, a bounded concurrency limiter
//! per upstream origin, the per-request timeout, the response size cap, event retries and the
//! counters. Owns no decision about what to send (see the parent module).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use parking_lot::Mutex;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use reqwest::{StatusCode, Url};
use serde::{Deserialize, Serialize};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::{UpstreamRequest, signature};

/// Default seconds per upstream request. Azure's value is unknown and the emulator inherits
/// .NET `HttpClient`'s 100 s; 30 s is the JS client's default server timeout, so a hung upstream
/// stalls a connection no longer than a silent server would.
pub const DEFAULT_TIMEOUT_SECS: u64 = 30;
/// Default requests in flight per upstream origin: enough for a Functions host to scale, small
/// enough that a slow upstream cannot pin thousands of sockets.
pub const DEFAULT_MAX_CONCURRENCY_PER_HOST: usize = 64;
/// Default requests waiting for a slot per upstream origin. Each waiter is one client
/// connection's pending call; with the defaults a full queue drains within
/// 512 / 64 × 30 s ≈ 4 min even if every request times out. More fail fast as Overloaded.
pub const DEFAULT_MAX_QUEUE_PER_HOST: usize = 512;
/// Default retries of a connected/disconnected event whose connection failed.
pub const DEFAULT_EVENT_RETRIES: u32 = 2;
/// Default first back-off before an event retry, in milliseconds (doubled per retry).
pub const DEFAULT_RETRY_BASE_MS: u64 = 500;
/// Largest 200 body accepted (the emulator refuses bodies over 16 MB).
pub const DEFAULT_MAX_RESPONSE_SIZE: usize = 16 * 1024 * 1024;
/// Upper bound of one retry back-off, whatever the base and the retry count.
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(10);

/// Once the limiter map holds this many origins, dead entries are pruned on insert. URL
/// templates may put `{hub}` in the host, so the origin set is client-controlled.
const LIMITER_PRUNE_FLOOR: usize = 64;

/// How upstream calls behave. Every field has a default ([`UpstreamOptions::default`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UpstreamOptions {
    /// Seconds one request may take once it has a concurrency slot (connect, send, the
    /// response headers and the whole body). At least 1.
    pub timeout_secs: u64,
    /// Requests in flight at once per upstream origin (scheme, host, port). At least 1.
    pub max_concurrency_per_host: usize,
    /// Requests allowed to wait for a slot per origin; one more fails with
    /// [`UpstreamError::Overloaded`]. 0 = fail as soon as every slot is busy.
    pub max_queue_per_host: usize,
    /// Retries of a connected/disconnected event whose TCP/TLS connection failed.
    pub event_retries: u32,
    /// Back-off before the first event retry, in milliseconds; doubled per retry, capped at
    /// [`MAX_RETRY_DELAY`].
    pub retry_base_ms: u64,
    /// Largest 200 response body, in bytes. At least 1.
    pub max_response_size: usize,
    /// Upstream calls one client connection may have waiting; beyond that a blocking
    /// invocation is answered with an error at once (see `conn::upstream`). At least 1.
    pub max_queue_per_connection: usize,
    /// Bytes of invocation bodies one client connection may have waiting or in flight; beyond
    /// that as for [`Self::max_queue_per_connection`] (a call always fits when none is held).
    /// At least 1.
    pub max_queue_bytes_per_connection: usize,
}

/// Default of [`UpstreamOptions::max_queue_per_connection`].
pub const DEFAULT_MAX_QUEUE_PER_CONNECTION: usize = 256;
/// Default of [`UpstreamOptions::max_queue_bytes_per_connection`]: four messages of the default
/// maximum size.
pub const DEFAULT_MAX_QUEUE_BYTES_PER_CONNECTION: usize = 4 * 1024 * 1024;

impl Default for UpstreamOptions {
    fn default() -> Self {
        Self {
            timeout_secs: DEFAULT_TIMEOUT_SECS,
            max_concurrency_per_host: DEFAULT_MAX_CONCURRENCY_PER_HOST,
            max_queue_per_host: DEFAULT_MAX_QUEUE_PER_HOST,
            event_retries: DEFAULT_EVENT_RETRIES,
            retry_base_ms: DEFAULT_RETRY_BASE_MS,
            max_response_size: DEFAULT_MAX_RESPONSE_SIZE,
            max_queue_per_connection: DEFAULT_MAX_QUEUE_PER_CONNECTION,
            max_queue_bytes_per_connection: DEFAULT_MAX_QUEUE_BYTES_PER_CONNECTION,
        }
    }
}

impl UpstreamOptions {
    /// Checks the bounds; the error names the field.
    pub fn validate(&self) -> Result<(), String> {
        if self.timeout_secs == 0 {
            return Err("timeout_secs: must be at least 1".to_owned());
        }
        if self.max_queue_per_connection == 0 {
            return Err("max_queue_per_connection: must be at least 1".to_owned());
        }
        if self.max_queue_bytes_per_connection == 0 {
            return Err("max_queue_bytes_per_connection: must be at least 1".to_owned());
        }
        if self.max_concurrency_per_host == 0 {
            return Err("max_concurrency_per_host: must be at least 1".to_owned());
        }
        if self.max_concurrency_per_host > Semaphore::MAX_PERMITS {
            return Err("max_concurrency_per_host: too large".to_owned());
        }
        if self.max_response_size == 0 {
            return Err("max_response_size: must be at least 1".to_owned());
        }
        Ok(())
    }

    /// [`Self::timeout_secs`] as a duration.
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_secs)
    }

    /// The back-off before retry number `retry` (1-based).
    pub(super) fn retry_delay(&self, retry: u32) -> Duration {
        let factor = 1u64 << retry.saturating_sub(1).min(20);
        Duration::from_millis(self.retry_base_ms.saturating_mul(factor)).min(MAX_RETRY_DELAY)
    }
}

/// An upstream answer: the status and the body (empty for statuses other than 200 whose body
/// exceeded the size limit; see the module docs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpstreamResponse {
    /// The HTTP status code.
    pub status: u16,
    /// The response body.
    pub body: Bytes,
}

/// Why an upstream call produced no response.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum UpstreamError {
    /// The request took longer than [`UpstreamOptions::timeout_secs`].
    #[error("upstream request timed out")]
    Timeout,
    /// No connection could be made (refused, DNS, TLS handshake, …).
    #[error("cannot connect to upstream: {0}")]
    Connect(String),
    /// The connection closed before any response: typically a kept-alive connection that the
    /// upstream closed (a restart, its idle timeout) just as the request went out on it.
    #[error("upstream closed the connection before answering: {0}")]
    Closed(String),
    /// Too many requests already wait for this upstream host.
    #[error("upstream overloaded: too many requests waiting for this host")]
    Overloaded,
    /// A 200 body exceeded [`UpstreamOptions::max_response_size`].
    #[error("upstream response too large")]
    ResponseTooLarge,
    /// Any other failure (invalid URL, protocol error, connection reset mid-response, …).
    #[error("upstream request failed: {0}")]
    Other(String),
}

/// Counters since the client was created, for metrics. Every field only grows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UpstreamStats {
    /// HTTP requests sent (every attempt that got a concurrency slot, retries included).
    pub requests: u64,
    /// Attempts that ended without a usable response: timeouts, connection and other errors,
    /// bodies over the limit (timeouts are also counted in `timeouts`).
    pub failures: u64,
    /// Attempts that timed out.
    pub timeouts: u64,
    /// Calls refused because the host's queue was full (not counted in `requests`).
    pub overloaded: u64,
    /// Event retries made by [`UpstreamClient::call_event`].
    pub retries: u64,
    /// Responses with a status outside 200–299.
    pub error_statuses: u64,
}

#[derive(Default)]
struct Counters {
    requests: AtomicU64,
    failures: AtomicU64,
    timeouts: AtomicU64,
    overloaded: AtomicU64,
    retries: AtomicU64,
    error_statuses: AtomicU64,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// The concurrency bound of one upstream origin.
struct HostLimiter {
    permits: Arc<Semaphore>,
    waiting: AtomicUsize,
}

/// Decrements the waiter count however the wait ends (permit, error or the caller dropping the
/// future).
struct WaitingGuard<'a>(&'a AtomicUsize);

impl Drop for WaitingGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl HostLimiter {
    async fn acquire(&self, max_queue: usize) -> Result<OwnedSemaphorePermit, UpstreamError> {
        // tokio's semaphore hands released permits to queued waiters first, so a free permit
        // here never jumps the queue.
        if let Ok(permit) = self.permits.clone().try_acquire_owned() {
            return Ok(permit);
        }
        if self.waiting.fetch_add(1, Ordering::AcqRel) >= max_queue {
            self.waiting.fetch_sub(1, Ordering::AcqRel);
            return Err(UpstreamError::Overloaded);
        }
        let _guard = WaitingGuard(&self.waiting);
        self.permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| UpstreamError::Other("upstream limiter closed".to_owned()))
    }
}

/// Limiters by origin. Entries are weak: a limiter lives while some call holds it, so an idle
/// origin costs one dead map entry until the next prune.
struct Limiters {
    by_origin: HashMap<String, Weak<HostLimiter>>,
    prune_at: usize,
}

struct Inner {
    http: reqwest::Client,
    options: UpstreamOptions,
    timeout: Duration,
    limiters: Mutex<Limiters>,
    counters: Counters,
}

/// The upstream HTTP client: one connection pool shared by every hub and connection. Cheap to
/// clone (an `Arc` inside); `Send + Sync`.
#[derive(Clone)]
pub struct UpstreamClient {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for UpstreamClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamClient")
            .field("options", &self.inner.options)
            .finish_non_exhaustive()
    }
}

impl UpstreamClient {
    /// Builds the client. Fails on invalid options or when the TLS backend cannot start.
    pub fn new(options: UpstreamOptions) -> Result<Self, String> {
        options.validate()?;
        let timeout = options.timeout();
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(timeout)
            .pool_max_idle_per_host(options.max_concurrency_per_host)
            .user_agent(concat!("switchboard/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot build the upstream HTTP client: {}", error_chain(&e)))?;
        Ok(Self {
            inner: Arc::new(Inner {
                http,
                options,
                timeout,
                limiters: Mutex::new(Limiters {
                    by_origin: HashMap::new(),
                    prune_at: LIMITER_PRUNE_FLOOR,
                }),
                counters: Counters::default(),
            }),
        })
    }

    /// The options the client was built with.
    pub fn options(&self) -> &UpstreamOptions {
        &self.inner.options
    }

    /// Sends one request: `POST request.url` with the `X-ASRS-*` upstream headers (signed with
    /// every key in `keys`) and `Content-Type`. Waits for a concurrency slot of the URL's origin
    /// (or fails at once with [`UpstreamError::Overloaded`] when the queue is full), then
    /// applies the timeout to the exchange and reads the body up to the size limit. Never
    /// retries; any HTTP status is `Ok`.
    pub async fn call(
        &self,
        request: &UpstreamRequest,
        keys: &[String],
    ) -> Result<UpstreamResponse, UpstreamError> {
        let url = Url::parse(&request.url)
            .map_err(|e| UpstreamError::Other(format!("invalid upstream URL: {e}")))?;
        let headers = headers(request, keys);
        let limiter = self.limiter(&url);
        let counters = &self.inner.counters;
        let _permit = match limiter.acquire(self.inner.options.max_queue_per_host).await {
            Ok(permit) => permit,
            Err(err) => {
                if err == UpstreamError::Overloaded {
                    bump(&counters.overloaded);
                }
                tracing::debug!(hub = %request.hub, event = %request.event, "upstream: {err}");
                return Err(err);
            }
        };
        bump(&counters.requests);
        let exchange = self.exchange(url, headers, request.body.clone());
        let result = match tokio::time::timeout(self.inner.timeout, exchange).await {
            Ok(result) => result,
            Err(_elapsed) => Err(UpstreamError::Timeout),
        };
        match &result {
            Ok(response) if !(200..300).contains(&response.status) => {
                bump(&counters.error_statuses);
            }
            Ok(_) => {}
            Err(err) => {
                bump(&counters.failures);
                if *err == UpstreamError::Timeout {
                    bump(&counters.timeouts);
                }
                tracing::debug!(hub = %request.hub, event = %request.event, "upstream: {err}");
            }
        }
        result
    }

    /// As [`call`](Self::call) for connected/disconnected events: a connection failure
    /// ([`UpstreamError::Connect`]) or a connection closed before any response
    /// ([`UpstreamError::Closed`]) is retried up to [`UpstreamOptions::event_retries`] times
    /// with exponential back-off (so an event may reach an upstream that closed without
    /// answering twice; invocations are never retried). HTTP statuses, timeouts and other
    /// errors are returned as they are.
    pub async fn call_event(
        &self,
        request: &UpstreamRequest,
        keys: &[String],
    ) -> Result<UpstreamResponse, UpstreamError> {
        let mut retry = 0;
        loop {
            match self.call(request, keys).await {
                Err(UpstreamError::Connect(_) | UpstreamError::Closed(_))
                    if retry < self.inner.options.event_retries =>
                {
                    retry += 1;
                    bump(&self.inner.counters.retries);
                    tokio::time::sleep(self.inner.options.retry_delay(retry)).await;
                }
                result => return result,
            }
        }
    }

    /// The counters so far.
    pub fn stats(&self) -> UpstreamStats {
        let c = &self.inner.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        UpstreamStats {
            requests: get(&c.requests),
            failures: get(&c.failures),
            timeouts: get(&c.timeouts),
            overloaded: get(&c.overloaded),
            retries: get(&c.retries),
            error_statuses: get(&c.error_statuses),
        }
    }

    fn limiter(&self, url: &Url) -> Arc<HostLimiter> {
        let origin = url.origin().ascii_serialization();
        let mut limiters = self.inner.limiters.lock();
        if let Some(limiter) = limiters.by_origin.get(&origin).and_then(Weak::upgrade) {
            return limiter;
        }
        let limiter = Arc::new(HostLimiter {
            permits: Arc::new(Semaphore::new(self.inner.options.max_concurrency_per_host)),
            waiting: AtomicUsize::new(0),
        });
        if limiters.by_origin.len() >= limiters.prune_at {
            limiters.by_origin.retain(|_, l| l.strong_count() > 0);
            limiters.prune_at = (limiters.by_origin.len() * 2).max(LIMITER_PRUNE_FLOOR);
        }
        limiters.by_origin.insert(origin, Arc::downgrade(&limiter));
        limiter
    }

    async fn exchange(
        &self,
        url: Url,
        headers: HeaderMap,
        body: Bytes,
    ) -> Result<UpstreamResponse, UpstreamError> {
        let mut response = self
            .inner
            .http
            .post(url)
            .headers(headers)
            .body(body)
            .send()
            .await
            .map_err(classify)?;
        let status = response.status();
        let max = self.inner.options.max_response_size;
        let announced = response.content_length();
        let too_large = announced.is_some_and(|len| len > max as u64);
        if status != StatusCode::OK {
            // The body of any other status is ignored; keep it when it is small enough to be
            // worth logging, drop it (without reading it) otherwise.
            let body = if too_large {
                Bytes::new()
            } else {
                read_capped(&mut response, max, announced)
                    .await
                    .unwrap_or_default()
            };
            return Ok(UpstreamResponse {
                status: status.as_u16(),
                body,
            });
        }
        if too_large {
            return Err(UpstreamError::ResponseTooLarge);
        }
        let body = read_capped(&mut response, max, announced).await?;
        Ok(UpstreamResponse {
            status: status.as_u16(),
            body,
        })
    }
}

/// Reads the body, failing as soon as it passes `max` bytes.
async fn read_capped(
    response: &mut reqwest::Response,
    max: usize,
    announced: Option<u64>,
) -> Result<Bytes, UpstreamError> {
    let mut body = BytesMut::with_capacity(announced.map_or(0, |n| n as usize).min(max));
    while let Some(chunk) = response.chunk().await.map_err(classify)? {
        if body.len() + chunk.len() > max {
            return Err(UpstreamError::ResponseTooLarge);
        }
        if body.is_empty() && chunk.len() == announced.unwrap_or(u64::MAX) as usize {
            // The whole body in one chunk: keep it without a copy.
            return Ok(chunk);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

fn classify(err: reqwest::Error) -> UpstreamError {
    // reqwest names the URL in its errors, and an upstream URL's query may hold a key (Azure
    // Functions' `code=`): these texts reach logs and a refused client's handshake error.
    let err = err.without_url();
    if err.is_timeout() {
        UpstreamError::Timeout
    } else if err.is_connect() {
        UpstreamError::Connect(error_chain(&err))
    } else if closed_before_response(&err) {
        UpstreamError::Closed(error_chain(&err))
    } else {
        UpstreamError::Other(error_chain(&err))
    }
}

/// Whether hyper gave up because the connection closed before a response began.
fn closed_before_response(err: &reqwest::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = source {
        if e.downcast_ref::<hyper::Error>()
            .is_some_and(hyper::Error::is_incomplete_message)
        {
            return true;
        }
        source = e.source();
    }
    false
}

/// The error and its sources, `: `-joined (reqwest's own text alone says only "error sending
/// request").
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

const X_ASRS_CONNECTION_ID: HeaderName = HeaderName::from_static("x-asrs-connection-id");
const X_ASRS_HUB: HeaderName = HeaderName::from_static("x-asrs-hub");
const X_ASRS_CATEGORY: HeaderName = HeaderName::from_static("x-asrs-category");
const X_ASRS_EVENT: HeaderName = HeaderName::from_static("x-asrs-event");
const X_ASRS_USER_ID: HeaderName = HeaderName::from_static("x-asrs-user-id");
const X_ASRS_USER_CLAIMS: HeaderName = HeaderName::from_static("x-asrs-user-claims");
const X_ASRS_CLIENT_QUERY: HeaderName = HeaderName::from_static("x-asrs-client-query");
const X_ASRS_SIGNATURE: HeaderName = HeaderName::from_static("x-asrs-signature");

/// The upstream headers of `request` (`docs/protocol.md#upstream-requests`).
pub(super) fn headers(request: &UpstreamRequest, keys: &[String]) -> HeaderMap {
    let mut map = HeaderMap::with_capacity(9);
    map.insert(X_ASRS_CONNECTION_ID, header_value(&request.connection_id));
    map.insert(X_ASRS_HUB, header_value(&request.hub));
    map.insert(
        X_ASRS_CATEGORY,
        HeaderValue::from_static(request.category.as_str()),
    );
    map.insert(X_ASRS_EVENT, header_value(&request.event));
    if let Some(user) = request.user_id.as_deref().filter(|u| !u.is_empty()) {
        map.insert(X_ASRS_USER_ID, header_value(user));
    }
    if !request.claims.is_empty() {
        let mut claims = String::new();
        for (i, (kind, value)) in request.claims.iter().enumerate() {
            if i > 0 {
                claims.push_str(", ");
            }
            claims.push_str(kind);
            claims.push_str(": ");
            claims.push_str(value);
        }
        map.insert(X_ASRS_USER_CLAIMS, header_value(&claims));
    }
    if !request.client_query.is_empty() {
        let value = if request.client_query.starts_with('?') {
            header_value(&request.client_query)
        } else {
            header_value(&format!("?{}", request.client_query))
        };
        map.insert(X_ASRS_CLIENT_QUERY, value);
    }
    if !keys.is_empty() {
        map.insert(
            X_ASRS_SIGNATURE,
            header_value(&signature(keys, &request.connection_id)),
        );
    }
    map.insert(CONTENT_TYPE, header_value(request.content_type));
    map
}

/// `text` as a header value: its UTF-8 bytes, with the control characters HTTP cannot carry
/// (everything below 0x20 but tab, and DEL) replaced by spaces.
pub(super) fn header_value(text: &str) -> HeaderValue {
    let invalid = |b: u8| (b < 0x20 && b != b'\t') || b == 0x7f;
    let bytes = text.as_bytes();
    let result = if bytes.iter().any(|&b| invalid(b)) {
        let cleaned: Vec<u8> = bytes
            .iter()
            .map(|&b| if invalid(b) { b' ' } else { b })
            .collect();
        HeaderValue::from_bytes(&cleaned)
    } else {
        HeaderValue::from_bytes(bytes)
    };
    // Every remaining byte is valid in a header value; the fallback is unreachable.
    result.unwrap_or_else(|_| HeaderValue::from_static(""))
}
