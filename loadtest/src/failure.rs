//! What went wrong, by kind. Every error a run counts has one [`ErrorKind`]: the HTTP 401 of
//! a wrong access key, another HTTP status, a refused connection, a timeout, TLS, DNS, a
//! connection the broker closed (with its reason), a protocol error, a failed consistency
//! check, or something else. [`Failure`] is an error whose kind was known where it happened
//! (with a message naming what was tried, where, and what the broker said); [`kind_of`]
//! classifies any other error from its source chain (reqwest, tungstenite, I/O, timeouts).
//!
//! Counting stays cheap when failures flood in: an [`ErrorTally`] is one atomic counter per
//! kind, plus the first message of each kind (at most [`SAMPLE_CHARS`] characters), formatted
//! only when that kind has none yet. Successes never touch it.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};
use tokio_tungstenite::tungstenite;

/// Longest message kept as a kind's sample, in characters.
pub const SAMPLE_CHARS: usize = 300;

/// The kinds of errors, as the summary and the JSON report (`error_kinds`) name them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// HTTP 401: the broker refused the token (a wrong access key).
    Unauthorized,
    /// Any other HTTP status where success was expected (404, 429, 503, …).
    HttpStatus,
    /// Nothing accepted the TCP connection.
    ConnectionRefused,
    /// No answer in time (a request, a connect, an echo round trip).
    Timeout,
    /// The TLS handshake failed (an unknown certificate authority, plain HTTP on https://, …).
    Tls,
    /// The broker's host name did not resolve.
    Dns,
    /// The broker closed the connection (a Close message or frame, with its reason, or a reset).
    ClosedByServer,
    /// The broker's answer broke the protocol (a refused handshake, an undecodable message, an
    /// unexpected answer).
    Protocol,
    /// A consistency check after the run failed (group memberships, upstream events).
    Check,
    /// Anything else.
    Other,
}

const KINDS: usize = 10;

impl ErrorKind {
    /// Every kind, in the order of the tally.
    pub const ALL: [Self; KINDS] = [
        Self::Unauthorized,
        Self::HttpStatus,
        Self::ConnectionRefused,
        Self::Timeout,
        Self::Tls,
        Self::Dns,
        Self::ClosedByServer,
        Self::Protocol,
        Self::Check,
        Self::Other,
    ];

    /// The key in the JSON report (`connection_refused`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Unauthorized => "unauthorized",
            Self::HttpStatus => "http_status",
            Self::ConnectionRefused => "connection_refused",
            Self::Timeout => "timeout",
            Self::Tls => "tls",
            Self::Dns => "dns",
            Self::ClosedByServer => "closed_by_server",
            Self::Protocol => "protocol",
            Self::Check => "check",
            Self::Other => "other",
        }
    }

    /// The kind in words (`connection refused`).
    pub fn label(self) -> &'static str {
        match self {
            Self::Unauthorized => "unauthorized",
            Self::HttpStatus => "HTTP error",
            Self::ConnectionRefused => "connection refused",
            Self::Timeout => "timeout",
            Self::Tls => "TLS error",
            Self::Dns => "DNS error",
            Self::ClosedByServer => "closed by the server",
            Self::Protocol => "protocol error",
            Self::Check => "failed check",
            Self::Other => "other error",
        }
    }

    /// What to do about it.
    pub fn hint(self) -> &'static str {
        match self {
            Self::Unauthorized => {
                "the broker does not accept this access key: check --key or --connection-string."
            }
            Self::HttpStatus => {
                "the broker refused the requests: check --url, --hub and the broker's mode and limits."
            }
            Self::ConnectionRefused => {
                "is the broker running at that address? Check --url or --connection-string."
            }
            Self::Timeout => "the broker did not answer in time: is it overloaded or unreachable?",
            Self::Tls => {
                "for a broker whose certificate a private CA signed pass --ca-file; for a \
                 plain-HTTP broker use an http:// URL."
            }
            Self::Dns => "check the host name in --url or --connection-string.",
            Self::ClosedByServer => {
                "the broker closed the connections: see its reason and its log."
            }
            Self::Protocol => {
                "the broker answered something unexpected: check --hub, --protocol and the \
                 broker's mode."
            }
            Self::Check => "see the scenario's figures.",
            Self::Other => "see the first message.",
        }
    }

    /// The kind named `name` (see [`name`](Self::name)).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An error whose kind is known where it happened. Its message names what was tried and
/// where, and what the broker said (it has no source: everything is in the message).
#[derive(Debug)]
pub struct Failure {
    kind: ErrorKind,
    message: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {}

impl Failure {
    /// A failure of `kind`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    /// Its kind.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// `what` at `url` answered `status` with `body`: [`ErrorKind::Unauthorized`] for 401,
    /// [`ErrorKind::HttpStatus`] otherwise. The message carries the broker's words: the
    /// `message` of a JSON error body, else the body's text, else `error_code` (the
    /// `x-ms-error-code` header).
    pub fn status(
        what: &str,
        url: &str,
        status: u16,
        body: &[u8],
        error_code: Option<&str>,
    ) -> Self {
        let kind = Self::status_kind(status);
        let reason = http_reason(status);
        let said = body_message(body).or_else(|| error_code.map(str::to_owned));
        // "401 Unauthorized: Unauthorized: the token…" says it once.
        let said = said.map(|m| match m.strip_prefix(reason.trim_start()) {
            Some(rest) if !reason.is_empty() && rest.starts_with(": ") => rest[2..].to_owned(),
            _ => m,
        });
        let message = match said {
            Some(said) => format!(
                "{what} at {} answered {status}{reason}: {said}",
                short_url(url)
            ),
            None => format!("{what} at {} answered {status}{reason}", short_url(url)),
        };
        Self::new(kind, message)
    }

    /// A non-success answer `resp` to `what` at `url` (reads its body).
    pub async fn answered(what: &str, url: &str, resp: reqwest::Response) -> Self {
        let status = resp.status().as_u16();
        let code = resp
            .headers()
            .get("x-ms-error-code")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = resp.bytes().await.unwrap_or_default();
        Self::status(what, url, status, &body, code.as_deref())
    }

    /// The kind of a failed request (cheap: no message is formatted).
    pub fn request_kind(e: &reqwest::Error) -> ErrorKind {
        reqwest_kind(e)
    }

    /// The kind of an HTTP answer with `status` (401: unauthorized).
    pub fn status_kind(status: u16) -> ErrorKind {
        if status == 401 {
            ErrorKind::Unauthorized
        } else {
            ErrorKind::HttpStatus
        }
    }

    /// Its message.
    pub fn into_message(self) -> String {
        self.message
    }

    /// `what` at `url` failed in reqwest.
    pub fn request(what: &str, url: &str, e: &reqwest::Error) -> Self {
        let kind = reqwest_kind(e);
        let url = short_url(url);
        let message = match kind {
            ErrorKind::ConnectionRefused | ErrorKind::Timeout => format!("{what} at {url}"),
            _ => format!("{what} at {url}: {}", innermost(e)),
        };
        Self::new(kind, message)
    }

    /// `what` at `url` failed in tungstenite (an HTTP answer other than 101 keeps its status
    /// and the broker's message).
    pub fn websocket(what: &str, url: &str, e: &tungstenite::Error) -> Self {
        if let tungstenite::Error::Http(resp) = e {
            let code = resp
                .headers()
                .get("x-ms-error-code")
                .and_then(|v| v.to_str().ok());
            let body = resp.body().as_deref().unwrap_or_default();
            return Self::status(what, url, resp.status().as_u16(), body, code);
        }
        let kind = ws_kind(e);
        let url = short_url(url);
        let message = match kind {
            ErrorKind::ConnectionRefused | ErrorKind::Timeout => format!("{what} at {url}"),
            _ => format!("{what} at {url}: {}", innermost(e)),
        };
        Self::new(kind, message)
    }
}

/// `url` without its query (tokens and `api-version` say nothing about a failure).
fn short_url(url: &str) -> &str {
    url.split('?').next().unwrap_or(url)
}

/// " Unauthorized" for 401, "" for statuses without a canonical reason.
fn http_reason(status: u16) -> String {
    reqwest::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .map(|r| format!(" {r}"))
        .unwrap_or_default()
}

/// The broker's words in an error body: the `message` of a JSON body, else its text.
fn body_message(body: &[u8]) -> Option<String> {
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(body)
        && let Some(m) = v.get("message").and_then(|m| m.as_str())
    {
        return Some(m.to_owned());
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    (!text.is_empty()).then(|| truncate(text, SAMPLE_CHARS))
}

/// The deepest message of an error chain, looking inside I/O errors (a refused connect, a
/// resolver's or TLS library's error).
fn innermost(e: &(dyn std::error::Error + 'static)) -> String {
    let mut last = e.to_string();
    let mut cur = Some(e);
    while let Some(c) = cur {
        last = c.to_string();
        if let Some(io) = c.downcast_ref::<std::io::Error>()
            && let Some(inner) = io.get_ref()
        {
            return inner.to_string();
        }
        cur = c.source();
    }
    last
}

/// The kind of an error chain's I/O or TLS cause, if it has one.
fn cause_kind(e: &(dyn std::error::Error + 'static)) -> Option<ErrorKind> {
    let mut cur = Some(e);
    while let Some(c) = cur {
        if c.is::<rustls::Error>() {
            return Some(ErrorKind::Tls);
        }
        if let Some(io) = c.downcast_ref::<std::io::Error>() {
            if let Some(inner) = io.get_ref()
                && let Some(k) = cause_kind(inner)
            {
                return Some(k);
            }
            use std::io::ErrorKind as Io;
            match io.kind() {
                Io::ConnectionRefused => return Some(ErrorKind::ConnectionRefused),
                Io::TimedOut => return Some(ErrorKind::Timeout),
                Io::ConnectionReset
                | Io::ConnectionAborted
                | Io::BrokenPipe
                | Io::UnexpectedEof => return Some(ErrorKind::ClosedByServer),
                _ => {}
            }
            // The resolver's errors have no kind of their own.
            if io.to_string().contains("failed to lookup address") {
                return Some(ErrorKind::Dns);
            }
        }
        cur = c.source();
    }
    None
}

fn reqwest_kind(e: &reqwest::Error) -> ErrorKind {
    if let Some(status) = e.status() {
        return if status.as_u16() == 401 {
            ErrorKind::Unauthorized
        } else {
            ErrorKind::HttpStatus
        };
    }
    if e.is_timeout() {
        return ErrorKind::Timeout;
    }
    if e.is_dns() {
        return ErrorKind::Dns;
    }
    if let Some(k) = cause_kind(e) {
        return k;
    }
    if e.is_decode() {
        ErrorKind::Protocol
    } else {
        ErrorKind::Other
    }
}

fn ws_kind(e: &tungstenite::Error) -> ErrorKind {
    use tungstenite::Error as W;
    match e {
        W::Http(resp) if resp.status().as_u16() == 401 => ErrorKind::Unauthorized,
        W::Http(_) => ErrorKind::HttpStatus,
        W::Tls(_) => ErrorKind::Tls,
        W::ConnectionClosed | W::AlreadyClosed => ErrorKind::ClosedByServer,
        W::Io(io) => cause_kind(io).unwrap_or(ErrorKind::Other),
        W::Protocol(_) | W::Capacity(_) | W::Utf8(_) | W::AttackAttempt | W::HttpFormat(_) => {
            ErrorKind::Protocol
        }
        _ => ErrorKind::Other,
    }
}

/// The kind of any error: a [`Failure`]'s own, else from the first cause it recognizes.
pub fn kind_of(e: &anyhow::Error) -> ErrorKind {
    for cause in e.chain() {
        if let Some(f) = cause.downcast_ref::<Failure>() {
            return f.kind;
        }
        if let Some(r) = cause.downcast_ref::<reqwest::Error>() {
            return reqwest_kind(r);
        }
        if let Some(w) = cause.downcast_ref::<tungstenite::Error>() {
            return ws_kind(w);
        }
        if cause.is::<tokio::time::error::Elapsed>() {
            return ErrorKind::Timeout;
        }
        if cause.is::<switchboard::protocol::ProtocolError>()
            || cause.is::<switchboard::protocol::handshake::HandshakeError>()
        {
            return ErrorKind::Protocol;
        }
        if let Some(k) = cause_kind(cause) {
            return k;
        }
    }
    ErrorKind::Other
}

/// `text` cut to at most `max` characters (with "…" when cut).
pub fn truncate(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        None => text.to_owned(),
        Some((i, _)) => format!("{}…", &text[..i]),
    }
}

/// Error counters by kind, shared by the tasks of a run.
pub struct ErrorTally {
    counts: [AtomicU64; KINDS],
    first: [OnceLock<String>; KINDS],
}

impl Default for ErrorTally {
    fn default() -> Self {
        Self::new()
    }
}

impl ErrorTally {
    /// Nothing counted.
    pub fn new() -> Self {
        Self {
            counts: std::array::from_fn(|_| AtomicU64::new(0)),
            first: std::array::from_fn(|_| OnceLock::new()),
        }
    }

    /// Counts `n` errors of `kind`; `message` is called only while the kind has no message
    /// (an empty one is not kept).
    pub fn record(&self, kind: ErrorKind, n: u64, message: impl FnOnce() -> String) {
        let i = kind.index();
        self.counts[i].fetch_add(n, Ordering::Relaxed);
        if self.first[i].get().is_none() {
            let m = message();
            if !m.is_empty() {
                let _ = self.first[i].set(one_line(&truncate(&m, SAMPLE_CHARS)));
            }
        }
    }

    /// Whether `kind` has no message yet (the next error of that kind would give it one).
    pub fn wants_message(&self, kind: ErrorKind) -> bool {
        self.first[kind.index()].get().is_none()
    }

    /// Counts `e` under its kind ([`kind_of`]); the message is its chain joined with ": ".
    pub fn record_error(&self, e: &anyhow::Error) -> ErrorKind {
        let kind = kind_of(e);
        self.record(kind, 1, || format!("{e:#}"));
        kind
    }

    /// The counts so far (kinds with none left out).
    pub fn snapshot(&self) -> ErrorKinds {
        let mut out = ErrorKinds::default();
        for kind in ErrorKind::ALL {
            let count = self.counts[kind.index()].load(Ordering::Relaxed);
            if count > 0 {
                out.0.insert(
                    kind.name().to_owned(),
                    KindCount {
                        count,
                        first: self.first[kind.index()].get().cloned(),
                    },
                );
            }
        }
        out
    }
}

/// `text` on one line (line breaks and the indentation after them become one space).
pub fn one_line(text: &str) -> String {
    if !text.contains(['\n', '\r']) {
        return text.to_owned();
    }
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// How many errors of one kind, and the first one's message.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KindCount {
    /// Errors of this kind.
    pub count: u64,
    /// The first one's message (at most [`SAMPLE_CHARS`] characters).
    #[serde(default)]
    pub first: Option<String>,
}

/// Errors by kind name ([`ErrorKind::name`]), as reports carry them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ErrorKinds(pub BTreeMap<String, KindCount>);

impl ErrorKinds {
    /// Adds `other`'s counts (a kind's first message is kept when it has one already).
    pub fn absorb(&mut self, other: &Self) {
        for (name, c) in &other.0 {
            let mine = self.0.entry(name.clone()).or_default();
            mine.count += c.count;
            if mine.first.is_none() {
                mine.first.clone_from(&c.first);
            }
        }
    }

    /// Errors of every kind.
    pub fn total(&self) -> u64 {
        self.0.values().map(|c| c.count).sum()
    }

    /// Whether no error was counted.
    pub fn is_empty(&self) -> bool {
        self.total() == 0
    }

    /// The kinds, most frequent first.
    pub fn by_count(&self) -> Vec<(&str, &KindCount)> {
        let mut v: Vec<(&str, &KindCount)> = self
            .0
            .iter()
            .filter(|(_, c)| c.count > 0)
            .map(|(k, c)| (k.as_str(), c))
            .collect();
        v.sort_by(|a, b| b.1.count.cmp(&a.1.count).then(a.0.cmp(b.0)));
        v
    }

    /// One line: `56 connection refused: negotiate at http://127.0.0.1:1, 3 timeout: …`.
    pub fn describe(&self) -> String {
        self.by_count()
            .iter()
            .map(|(name, c)| {
                let label: &str = match ErrorKind::from_name(name) {
                    Some(k) => k.label(),
                    None => name,
                };
                match &c.first {
                    Some(first) => format!("{} {label}: {first}", c.count),
                    None => format!("{} {label}", c.count),
                }
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// What to do about the most frequent kind.
    pub fn hint(&self) -> Option<&'static str> {
        self.by_count()
            .first()
            .and_then(|(name, _)| ErrorKind::from_name(name))
            .map(ErrorKind::hint)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tally_counts_by_kind_and_keeps_the_first_message_bounded() {
        let t = ErrorTally::new();
        let long = "x".repeat(500);
        t.record(ErrorKind::Timeout, 1, || long.clone());
        t.record(ErrorKind::Timeout, 2, || {
            unreachable!("only the first is formatted")
        });
        t.record(ErrorKind::Unauthorized, 1, || "a\n  b".to_owned());
        let s = t.snapshot();
        assert_eq!(s.total(), 4);
        assert_eq!(s.0["timeout"].count, 3);
        let first = s.0["timeout"].first.as_deref().expect("first");
        assert_eq!(
            first.chars().count(),
            SAMPLE_CHARS + 1,
            "SAMPLE_CHARS characters and …"
        );
        assert_eq!(s.0["unauthorized"].first.as_deref(), Some("a b"));
        assert!(
            s.describe().starts_with("3 timeout: xxx"),
            "{}",
            s.describe()
        );
        let mut merged = s.clone();
        merged.absorb(&s);
        assert_eq!(merged.0["timeout"].count, 6);
        assert_eq!(merged.hint(), Some(ErrorKind::Timeout.hint()));
    }

    #[test]
    fn statuses_carry_the_brokers_message() {
        let body = br#"{"code":"Error.Unauthorized","message":"Unauthorized: bad key."}"#;
        let f = Failure::status(
            "negotiate",
            "http://h:1/client/negotiate?hub=x",
            401,
            body,
            None,
        );
        assert_eq!(f.kind(), ErrorKind::Unauthorized);
        assert_eq!(
            f.to_string(),
            "negotiate at http://h:1/client/negotiate answered 401 Unauthorized: bad key."
        );
        let f = Failure::status("POST", "http://h:1/x", 503, b"", Some("Error.Busy"));
        assert_eq!(f.kind(), ErrorKind::HttpStatus);
        assert!(
            f.to_string()
                .ends_with("503 Service Unavailable: Error.Busy"),
            "{f}"
        );
    }

    #[test]
    fn io_causes_are_classified() {
        let refused =
            anyhow::Error::from(std::io::Error::from(std::io::ErrorKind::ConnectionRefused))
                .context("connect");
        assert_eq!(kind_of(&refused), ErrorKind::ConnectionRefused);
        let reset = anyhow::Error::from(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
        assert_eq!(kind_of(&reset), ErrorKind::ClosedByServer);
        let failure = anyhow::Error::from(Failure::new(ErrorKind::Check, "1 mismatch"));
        assert_eq!(kind_of(&failure), ErrorKind::Check);
        assert_eq!(kind_of(&anyhow::anyhow!("what")), ErrorKind::Other);
    }
}
