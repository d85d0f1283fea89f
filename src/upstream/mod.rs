//! Upstream webhooks (Serverless mode, `docs/protocol.md#upstream-webhooks`): which URL receives
//! a client event, the HTTP request that carries it, and how the answer becomes the client's
//! Completion.
//!
//! This module owns the upstream rules ([`UpstreamRules`], built from `switchboard.toml`
//! `[[upstream]]` entries or the emulator's `settings.json`), the request shape
//! ([`UpstreamRequest`] with the `X-ASRS-*` headers and [`signature`]), one shared HTTP client
//! with a bounded queue per upstream host ([`UpstreamClient`]) and the response mapping
//! ([`completion_for`]). It does not decide *when* to call: the client connection actor resolves
//! a URL, builds the request, awaits [`UpstreamClient::call`] (invocations) or
//! [`UpstreamClient::call_event`] (connected/disconnected) before reading the client's next
//! message (the emulator keeps per-connection order the same way) and writes the Completion.
//!
//! # Choices the public sources leave open
//!
//! - **Pattern case sensitivity**: ordinal (case-sensitive), as the emulator's `HashSet<string>`.
//!   `*` anywhere in a comma list matches everything; items are trimmed. Category items other
//!   than `*`, `connections` and `messages` are rejected at load time instead of never matching.
//! - **Timeout**: 30 s per request ([`DEFAULT_TIMEOUT_SECS`]), covering connect, headers and the
//!   whole body. The emulator inherits .NET `HttpClient`'s 100 s; 30 s matches the JS client's
//!   default server timeout, so a dead upstream holds a connection's message loop no longer than
//!   a silent server would. The timer starts once the request has a concurrency slot; time spent
//!   queued is bounded by the queue size instead. A timeout is a transport failure (as 500).
//! - **Retries**: invocations are never retried (a retry could run a hub method twice).
//!   `connected`/`disconnected` events ([`UpstreamClient::call_event`]) retry only *connection*
//!   failures — the request provably never reached the upstream — [`DEFAULT_EVENT_RETRIES`]
//!   times with exponential back-off from [`DEFAULT_RETRY_BASE_MS`] (×2 per retry, capped at
//!   [`MAX_RETRY_DELAY`], no jitter). Timeouts, other errors and every HTTP status are final.
//! - **Concurrency**: at most [`DEFAULT_MAX_CONCURRENCY_PER_HOST`] requests in flight per
//!   upstream origin (scheme, host, port), at most [`DEFAULT_MAX_QUEUE_PER_HOST`] more waiting;
//!   beyond that a call fails at once with [`UpstreamError::Overloaded`] (never unbounded
//!   memory). For a blocking invocation that becomes the error Completion
//!   [`OVERLOADED_ERROR`]; an overloaded connected/disconnected event is dropped (not retried)
//!   and counted in [`UpstreamStats::overloaded`].
//! - **Redirects** are not followed (a 3xx is a non-200 status): following them would send the
//!   `X-ASRS-Signature` to wherever the upstream points. The emulator's `HttpClient` follows them.
//! - **Empty headers**: `X-ASRS-User-Id`, `X-ASRS-User-Claims`, `X-ASRS-Client-Query` and
//!   `X-ASRS-Signature` are omitted when empty, as the emulator does. Header values are sent as
//!   their UTF-8 bytes; control characters (which HTTP cannot carry) become spaces. Header names
//!   go out lower-case on HTTP/1.1 and HTTP/2 (names are case-insensitive).
//! - **Response bodies**: a 200 body over [`DEFAULT_MAX_RESPONSE_SIZE`] (16 MiB, as in the
//!   emulator) is [`UpstreamError::ResponseTooLarge`]; the body of any other status is ignored
//!   (`docs/protocol.md#upstream-responses`), so an oversized one is dropped rather than
//!   reported.
//! - **Proxies**: the standard `HTTP_PROXY`/`HTTPS_PROXY`/`NO_PROXY` variables are honoured, as
//!   .NET's `HttpClient` does on Linux.

mod client;
mod rules;

#[cfg(test)]
mod tests;

use bytes::{Bytes, BytesMut};
use hmac::{Hmac, KeyInit as _, Mac as _};
use sha2::Sha256;

use crate::protocol::{Completion, CompletionOutcome, HubMessage, HubProtocol, Invocation};

pub use client::{
    DEFAULT_EVENT_RETRIES, DEFAULT_MAX_CONCURRENCY_PER_HOST,
    DEFAULT_MAX_QUEUE_BYTES_PER_CONNECTION, DEFAULT_MAX_QUEUE_PER_CONNECTION,
    DEFAULT_MAX_QUEUE_PER_HOST, DEFAULT_MAX_RESPONSE_SIZE, DEFAULT_RETRY_BASE_MS,
    DEFAULT_TIMEOUT_SECS, MAX_RETRY_DELAY, UpstreamClient, UpstreamError, UpstreamOptions,
    UpstreamResponse, UpstreamStats,
};
pub use rules::{
    DotSegment, UpstreamRule, UpstreamRules, escape_data_string, load_emulator_settings,
    parse_emulator_settings,
};

/// `Content-Type` of connection events and JSON-protocol invocations.
pub const JSON_CONTENT_TYPE: &str = "application/json";
/// `Content-Type` of MessagePack-protocol invocations.
pub const MESSAGEPACK_CONTENT_TYPE: &str = "application/x-msgpack";
/// Event name of the connection-opened event.
pub const CONNECTED_EVENT: &str = "connected";
/// Event name of the connection-closed event.
pub const DISCONNECTED_EVENT: &str = "disconnected";
/// Completion error for a blocking invocation rejected because too many upstream requests
/// already wait for the same upstream host ([`UpstreamError::Overloaded`]). Not an Azure text
/// (Azure's behaviour is unknown); worded like the emulator's other `Invocation failed, …`
/// texts.
pub const OVERLOADED_ERROR: &str = "Invocation failed, too many pending upstream requests.";
/// Completion error for a 200 body over the size limit (the emulator's text).
pub const TOO_LARGE_ERROR: &str = "Invocation failed, response too large.";

/// The `{category}` of an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Category {
    /// `connected` and `disconnected`.
    Connections,
    /// Client invocations; the event is the invocation target.
    Messages,
}

impl Category {
    /// `connections` or `messages`, as in URLs, patterns and `X-ASRS-Category`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Connections => "connections",
            Self::Messages => "messages",
        }
    }
}

/// What every upstream request says about the client connection. Built once per connection by
/// the connection actor; each request copies it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UpstreamConnection {
    /// The hub, as the client named it.
    pub hub: String,
    /// The client connection id (signed in `X-ASRS-Signature`).
    pub connection_id: String,
    /// The user id; `None` (or empty) for an anonymous connection.
    pub user_id: Option<String>,
    /// The user's claims, `(type, value)` in token order, duplicates kept.
    pub claims: Vec<(String, String)>,
    /// The client's connect query string with its leading `?` (empty when there was none).
    pub client_query: String,
}

/// Everything one upstream call needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpstreamRequest {
    /// The resolved absolute URL ([`UpstreamRules::resolve`]).
    pub url: String,
    /// `X-ASRS-Hub`.
    pub hub: String,
    /// `X-ASRS-Category`.
    pub category: Category,
    /// `X-ASRS-Event`: `connected`, `disconnected` or the invocation target.
    pub event: String,
    /// `X-ASRS-Connection-Id`, also the signed message of `X-ASRS-Signature`.
    pub connection_id: String,
    /// `X-ASRS-User-Id`; omitted when `None` or empty.
    pub user_id: Option<String>,
    /// `X-ASRS-User-Claims` (`type: value`, joined with `, `); omitted when empty.
    pub claims: Vec<(String, String)>,
    /// `X-ASRS-Client-Query`, with the leading `?` (added when missing); omitted when empty.
    pub client_query: String,
    /// The request body.
    pub body: Bytes,
    /// `Content-Type`: [`JSON_CONTENT_TYPE`] or [`MESSAGEPACK_CONTENT_TYPE`].
    pub content_type: &'static str,
}

impl UpstreamRequest {
    fn new(
        url: String,
        conn: &UpstreamConnection,
        category: Category,
        event: &str,
        body: Bytes,
        content_type: &'static str,
    ) -> Self {
        Self {
            url,
            hub: conn.hub.clone(),
            category,
            event: event.to_owned(),
            connection_id: conn.connection_id.clone(),
            user_id: conn.user_id.clone(),
            claims: conn.claims.clone(),
            client_query: conn.client_query.clone(),
            body,
            content_type,
        }
    }

    /// The `connections`/`connected` event: `application/json` body `{"type":10}`.
    pub fn connected(url: String, conn: &UpstreamConnection) -> Self {
        Self::new(
            url,
            conn,
            Category::Connections,
            CONNECTED_EVENT,
            Bytes::from_static(b"{\"type\":10}"),
            JSON_CONTENT_TYPE,
        )
    }

    /// The `connections`/`disconnected` event: `application/json` body `{"type":11}`, or
    /// `{"type":11,"error":"<text>"}` when the connection closed with an error.
    pub fn disconnected(url: String, conn: &UpstreamConnection, error: Option<&str>) -> Self {
        let body = match error {
            None => Bytes::from_static(b"{\"type\":11}"),
            Some(error) => {
                let escaped = serde_json::Value::from(error).to_string();
                Bytes::from(format!("{{\"type\":11,\"error\":{escaped}}}"))
            }
        };
        Self::new(
            url,
            conn,
            Category::Connections,
            DISCONNECTED_EVENT,
            body,
            JSON_CONTENT_TYPE,
        )
    }

    /// A `messages` event for an Invocation of `target`. `body_unframed` is the client's
    /// Invocation in its protocol without framing (see [`unframed_invocation`]); the content
    /// type follows `protocol`.
    pub fn invocation(
        url: String,
        conn: &UpstreamConnection,
        target: &str,
        protocol: HubProtocol,
        body_unframed: Bytes,
    ) -> Self {
        Self::new(
            url,
            conn,
            Category::Messages,
            target,
            body_unframed,
            content_type(protocol),
        )
    }
}

/// The upstream `Content-Type` for a hub protocol.
pub fn content_type(protocol: HubProtocol) -> &'static str {
    match protocol {
        HubProtocol::Json => JSON_CONTENT_TYPE,
        HubProtocol::MessagePack => MESSAGEPACK_CONTENT_TYPE,
    }
}

/// Encodes `invocation` in `protocol` without framing, as the upstream body
/// (`docs/protocol.md#upstream-requests`): the JSON object without its trailing 0x1E, or the
/// MessagePack array without its VarInt prefix (re-serialised from the parsed message, as the
/// emulator does).
pub fn unframed_invocation(
    protocol: HubProtocol,
    invocation: &Invocation,
) -> Result<Bytes, crate::protocol::ProtocolError> {
    let message = HubMessage::Invocation(invocation.clone());
    let mut out = BytesMut::new();
    match protocol {
        HubProtocol::Json => crate::protocol::json::write_message(&message, &mut out)?,
        HubProtocol::MessagePack => crate::protocol::msgpack::write_payload(&message, &mut out)?,
    }
    Ok(out.freeze())
}

/// `X-ASRS-Signature`: `sha256=<hex>` for each key, comma-separated, lower-case hex of
/// HMAC-SHA256(key = UTF-8 access key, message = UTF-8 connection id). Empty when there are no
/// keys (the header is then omitted).
///
/// Items are joined with a bare `,`: newer Functions extensions trim items, older ones split on
/// `,` without trimming, and both compare the hex case-insensitively.
pub fn signature(keys: &[String], connection_id: &str) -> String {
    let mut out = String::with_capacity(keys.len() * 72);
    for (i, key) in keys.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str("sha256=");
        // HMAC accepts keys of any length; this cannot fail.
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key.as_bytes()) else {
            continue;
        };
        mac.update(connection_id.as_bytes());
        for byte in mac.finalize().into_bytes() {
            out.push(char::from(HEX[usize::from(byte >> 4)]));
            out.push(char::from(HEX[usize::from(byte & 0x0f)]));
        }
    }
    out
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// How a blocking invocation's upstream answer becomes the client's Completion
/// (`docs/protocol.md#upstream-responses`), framed in `protocol`:
///
/// | Upstream result | Completion |
/// | --- | --- |
/// | 200 with a body | the body verbatim (it must already be a framed Completion in the client's protocol) |
/// | 200 with an empty body, 204 | void Completion for `invocation_id` |
/// | any other status `N` | error `Invocation failed, status code N` |
/// | timeout, connection or other transport error | as status 500 |
/// | [`UpstreamError::ResponseTooLarge`] | error [`TOO_LARGE_ERROR`] |
/// | [`UpstreamError::Overloaded`] | error [`OVERLOADED_ERROR`] |
pub fn completion_for(
    result: &Result<UpstreamResponse, UpstreamError>,
    protocol: HubProtocol,
    invocation_id: &str,
) -> Bytes {
    let outcome = match result {
        Ok(response) if response.status == 200 && !response.body.is_empty() => {
            return response.body.clone();
        }
        Ok(response) if response.status == 200 || response.status == 204 => CompletionOutcome::Void,
        Ok(response) => status_error(response.status),
        Err(UpstreamError::ResponseTooLarge) => {
            CompletionOutcome::Error(TOO_LARGE_ERROR.to_owned())
        }
        Err(UpstreamError::Overloaded) => CompletionOutcome::Error(OVERLOADED_ERROR.to_owned()),
        Err(
            UpstreamError::Timeout
            | UpstreamError::Connect(_)
            | UpstreamError::Closed(_)
            | UpstreamError::Other(_),
        ) => status_error(500),
    };
    let message = HubMessage::Completion(Completion {
        headers: Vec::new(),
        invocation_id: invocation_id.to_owned(),
        outcome,
    });
    let mut out = BytesMut::with_capacity(64 + invocation_id.len());
    // A Completion with a string id and a void/error outcome always encodes; should it ever
    // fail, the empty buffer means "nothing to send" rather than a half-written frame.
    let _ = protocol.encode_into(&message, &mut out);
    out.freeze()
}

fn status_error(status: u16) -> CompletionOutcome {
    CompletionOutcome::Error(format!("Invocation failed, status code {status}"))
}
