//! The REST transport: URLs, tokens and answers of the data-plane REST API
//! (`docs/protocol.md`: connection strings and URLs, access tokens, REST API), built the way the
//! Azure Management SDK builds them.
//!
//! URL: `<server endpoint>/api/hubs/<hub>/<op>?[application=<app>&]api-version=2022-06-01`, then
//! the operation's own query (`excluded`, `reason`, `ttl`). Path segments and query values are
//! escaped like .NET's `Uri.EscapeDataString` (everything but RFC 3986 unreserved characters).
//! Token: HS256 with the access key, minted per request, `aud` = the audience base
//! (`<scheme>://<host>` of `Endpoint`, no port) + path + the `application` / `api-version`
//! query (the operation's own query is not in `aud`), `nameid` = this client's server name.

use std::fmt::Write as _;
use std::time::Duration;

use bytes::Bytes;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::Method;
use reqwest::header::{CONTENT_TYPE, HeaderValue};

use super::ManagementError;
use crate::ConnectionString;
use crate::protocol::auth::AccessKeys;

/// The api-version of every call (the current SDK's).
pub(super) const API_VERSION: &str = "2022-06-01";

/// `Uri.EscapeDataString`: everything but RFC 3986 "unreserved" is escaped.
const ESCAPED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The content type of send bodies (what the .NET SDK sends).
const JSON_UTF8: &str = "application/json; charset=utf-8";

/// One path segment, escaped. `.` and `..` are refused: every URL parser (reqwest's included)
/// removes them, escaped or not, so they cannot reach the service in a path.
pub(super) fn segment(name: &str) -> Result<String, ManagementError> {
    if name == "." || name == ".." {
        return Err(ManagementError::InvalidArgument(format!(
            "'{name}' cannot be sent as a REST path segment (URL parsers remove dot segments)"
        )));
    }
    Ok(utf8_percent_encode(name, ESCAPED).to_string())
}

/// A hub as the REST API addresses it: lower-cased hub name and application, as the SDK sends
/// them.
#[derive(Clone, Debug)]
pub(super) struct HubAddress {
    /// `/api/hubs/<hub>`, escaped.
    path: String,
    /// `[application=<app>&]api-version=2022-06-01`.
    query: String,
}

impl HubAddress {
    pub(super) fn new(hub: &str, application: Option<&str>) -> Self {
        let hub = hub.to_lowercase();
        let mut query = String::new();
        if let Some(app) = application.filter(|a| !a.is_empty()) {
            let app = app.to_lowercase();
            let _ = write!(query, "application={}&", utf8_percent_encode(&app, ESCAPED));
        }
        query.push_str("api-version=");
        query.push_str(API_VERSION);
        Self {
            path: format!("/api/hubs/{}", utf8_percent_encode(&hub, ESCAPED)),
            query,
        }
    }
}

/// A REST answer: the status and, for errors, the code and message.
#[derive(Debug)]
pub(super) struct Answer {
    pub(super) status: u16,
    code: Option<String>,
    message: String,
}

impl Answer {
    /// An answer as a test wants it.
    #[cfg(test)]
    pub(super) fn for_test(status: u16, code: Option<String>, message: String) -> Self {
        Self {
            status,
            code,
            message,
        }
    }

    fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The answer as an error.
    fn into_error(self) -> ManagementError {
        ManagementError::Service {
            status: self.status,
            code: self.code,
            message: self.message,
        }
    }

    /// `Ok(status)` for a 2xx answer, the error otherwise.
    pub(super) fn success(self) -> Result<u16, ManagementError> {
        if self.is_success() {
            Ok(self.status)
        } else {
            Err(self.into_error())
        }
    }

    /// `true` for a 2xx answer, `false` for a 404 carrying one of `codes`, the error otherwise.
    pub(super) fn found(self, codes: &[&str]) -> Result<bool, ManagementError> {
        if self.is_success() {
            Ok(true)
        } else if self.status == 404
            && self
                .code
                .as_deref()
                .is_some_and(|c| codes.iter().any(|e| e.eq_ignore_ascii_case(c)))
        {
            Ok(false)
        } else {
            Err(self.into_error())
        }
    }
}

/// Sends the REST calls of one [`ManagementClient`](super::ManagementClient).
#[derive(Debug)]
pub(super) struct RestTransport {
    http: reqwest::Client,
    connection_string: ConnectionString,
    keys: AccessKeys,
    server_name: String,
    token_lifetime: Duration,
    health_timeout: Duration,
}

impl RestTransport {
    pub(super) fn new(
        connection_string: ConnectionString,
        server_name: String,
        token_lifetime: Duration,
        request_timeout: Duration,
        health_timeout: Duration,
        ca_file: Option<&std::path::Path>,
    ) -> Result<Self, ManagementError> {
        let roots = crate::tls::reqwest_roots(ca_file).map_err(ManagementError::InvalidArgument)?;
        let http = reqwest::Client::builder()
            .tls_certs_merge(roots)
            .timeout(request_timeout)
            .user_agent(concat!(
                "switchboard-management/",
                env!("CARGO_PKG_VERSION")
            ))
            .build()?;
        Ok(Self {
            http,
            keys: AccessKeys::new(vec![connection_string.access_key().to_owned()]),
            connection_string,
            server_name,
            token_lifetime,
            health_timeout,
        })
    }

    /// The request URL and the token audience of `tail` (an escaped path after the hub, e.g.
    /// `/users/alice/:send`) with `extra` query pairs.
    pub(super) fn url_and_audience(
        &self,
        hub: &HubAddress,
        tail: &str,
        extra: &[(&str, &str)],
    ) -> (String, String) {
        let mut url = format!(
            "{}{}{}?{}",
            self.connection_string.server_endpoint(),
            hub.path,
            tail,
            hub.query
        );
        for (name, value) in extra {
            let _ = write!(url, "&{name}={}", utf8_percent_encode(value, ESCAPED));
        }
        let audience = format!(
            "{}{}{}?{}",
            self.connection_string.audience_base(),
            hub.path,
            tail,
            hub.query
        );
        (url, audience)
    }

    /// Mints the token of one request.
    pub(super) fn token(&self, audience: &str) -> String {
        self.keys.mint(
            audience,
            self.token_lifetime.as_secs().max(1),
            &[("nameid", self.server_name.as_str())],
        )
    }

    /// One call: `method` on `tail` of `hub` with `extra` query pairs and an optional JSON
    /// body. Network failures are errors; every HTTP answer is returned.
    pub(super) async fn call(
        &self,
        method: Method,
        hub: &HubAddress,
        tail: &str,
        extra: &[(&str, &str)],
        body: Option<Bytes>,
    ) -> Result<Answer, ManagementError> {
        let (url, audience) = self.url_and_audience(hub, tail, extra);
        let head = method == Method::HEAD;
        let mut request = self
            .http
            .request(method, &url)
            .bearer_auth(self.token(&audience));
        if let Some(body) = body {
            request = request
                .header(CONTENT_TYPE, HeaderValue::from_static(JSON_UTF8))
                .body(body);
        }
        let response = request.send().await?;
        let status = response.status();
        if status.is_success() {
            return Ok(Answer {
                status: status.as_u16(),
                code: None,
                message: String::new(),
            });
        }
        let header_code = response
            .headers()
            .get("x-ms-error-code")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let text = if head {
            String::new()
        } else {
            // The body only explains the error; a failure to read it leaves the status.
            response.text().await.unwrap_or_default()
        };
        let (body_code, body_message) = parse_error_body(&text);
        let message = body_message
            .or_else(|| (!text.trim().is_empty()).then(|| text.trim().to_owned()))
            .unwrap_or_else(|| status.canonical_reason().unwrap_or("error").to_owned());
        Ok(Answer {
            status: status.as_u16(),
            code: header_code.or(body_code),
            message,
        })
    }

    /// `HEAD <server endpoint>/api/health?api-version=2022-06-01` without a token: `true` on a
    /// 2xx answer within the health timeout.
    pub(super) async fn is_healthy(&self) -> bool {
        let url = format!(
            "{}/api/health?api-version={API_VERSION}",
            self.connection_string.server_endpoint()
        );
        let request = self.http.head(url).timeout(self.health_timeout).send();
        matches!(request.await, Ok(r) if r.status().is_success())
    }
}

/// `code` and `message` of a JSON error body (`{"code","message"}`, any key case).
fn parse_error_body(text: &str) -> (Option<String>, Option<String>) {
    let Ok(serde_json::Value::Object(map)) = serde_json::from_str::<serde_json::Value>(text) else {
        return (None, None);
    };
    let get = |name: &str| {
        map.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .and_then(|(_, v)| v.as_str())
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    (get("code"), get("message"))
}

/// The body of a send: `{"target":<target>,"arguments":<args>}`, the arguments serialised
/// once with the SDK's rules (see [`arguments_json`]).
pub(super) fn send_body(target: &str, arguments: &[u8]) -> Bytes {
    let target = serde_json::Value::from(target).to_string();
    let mut body = Vec::with_capacity(target.len() + arguments.len() + 28);
    body.extend_from_slice(b"{\"target\":");
    body.extend_from_slice(target.as_bytes());
    body.extend_from_slice(b",\"arguments\":");
    body.extend_from_slice(arguments);
    body.push(b'}');
    Bytes::from(body)
}

/// Serialises an argument list as JSON, as the hub-server SDK does: anything serialising as a
/// sequence (a tuple, a `Vec`, an array) is the list itself, `()` (JSON `null`) means no
/// arguments, any other value is the single argument.
pub(super) fn arguments_json<A: serde::Serialize + ?Sized>(
    args: &A,
) -> Result<Vec<u8>, ManagementError> {
    let text = serde_json::to_vec(args).map_err(|e| ManagementError::Serialize(e.to_string()))?;
    let trimmed = text.trim_ascii();
    Ok(if trimmed.first() == Some(&b'[') {
        text
    } else if trimmed == b"null" {
        b"[]".to_vec()
    } else {
        let mut wrapped = Vec::with_capacity(text.len() + 2);
        wrapped.push(b'[');
        wrapped.extend_from_slice(&text);
        wrapped.push(b']');
        wrapped
    })
}
