//! Azure SignalR connection strings (`docs/protocol.md#connection-strings-and-urls`): parsing with
//! the .NET SDK's rules, the URLs an app server derives from them, and the access-key tokens it
//! mints for its server connections and for its clients (`docs/protocol.md#access-tokens`).
//!
//! This module owns no I/O. The audience of every token is `<scheme>://<host>` of `Endpoint`
//! — no port, no path — even when `ClientEndpoint` / `ServerEndpoint` point elsewhere, exactly
//! as the SDK builds it.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use crate::protocol::auth::AccessKeys;

/// Characters escaped in a query value: everything but RFC 3986 "unreserved".
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// JWT registered claim names the SDK escapes as `asrs.u.<name>` when they come from the app's
/// own claims (`docs/protocol.md#access-tokens`), so a user claim can never overwrite `aud` or
/// `exp`.
const ESCAPED_CLAIMS: &[&str] = &[
    "aud", "exp", "iat", "nbf", "iss", "actort", "acr", "azp", "c_hash", "jti", "nonce",
];

/// Why a connection string was refused.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum ConnectionStringError {
    /// No `Endpoint`, or fewer than two `key=value` properties.
    #[error("connection string is missing the required property 'Endpoint'")]
    MissingEndpoint,
    /// No `AccessKey` (and no `AuthType`).
    #[error("connection string is missing the required property 'AccessKey'")]
    MissingAccessKey,
    /// A key appears twice (keys are case-insensitive).
    #[error("connection string has a duplicate property '{0}'")]
    DuplicateKey(String),
    /// `Endpoint`, `ClientEndpoint` or `ServerEndpoint` is not an absolute http(s) URL.
    #[error("connection string property '{key}' is not an absolute http or https URL: '{value}'")]
    InvalidUrl {
        /// The property.
        key: &'static str,
        /// Its value.
        value: String,
    },
    /// `Port` is not an integer in 1..=65535.
    #[error("connection string property 'Port' must be an integer between 1 and 65535, not '{0}'")]
    InvalidPort(String),
    /// `Version` does not look like `1.x`.
    #[error("connection string property 'Version' is not supported: '{0}' (expected 1.x)")]
    InvalidVersion(String),
    /// `AuthType` asks for Microsoft Entra authentication, which this SDK does not implement.
    #[error(
        "connection string AuthType '{0}' (Microsoft Entra) is not supported; use an AccessKey"
    )]
    UnsupportedAuthType(String),
}

/// An absolute http(s) base URL: scheme, host, optional port, path without trailing `/`.
#[derive(Clone, Debug, PartialEq, Eq)]
struct BaseUrl {
    https: bool,
    /// Lower-cased host; IPv6 literals keep their brackets.
    host: String,
    port: Option<u16>,
    /// Empty or `/segment...` without a trailing slash.
    path: String,
}

impl BaseUrl {
    fn parse(key: &'static str, value: &str) -> Result<Self, ConnectionStringError> {
        let invalid = || ConnectionStringError::InvalidUrl {
            key,
            value: value.to_owned(),
        };
        let trimmed = value.trim().trim_end_matches('/');
        let (scheme, rest) = trimmed.split_once("://").ok_or_else(invalid)?;
        let https = if scheme.eq_ignore_ascii_case("https") {
            true
        } else if scheme.eq_ignore_ascii_case("http") {
            false
        } else {
            return Err(invalid());
        };
        let rest = rest.split(['?', '#']).next().unwrap_or_default();
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
            None => (rest, ""),
        };
        if authority.contains('@') {
            return Err(invalid());
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (addr, after) = v6.split_once(']').ok_or_else(invalid)?;
            let port = match after {
                "" => None,
                p => Some(p.strip_prefix(':').ok_or_else(invalid)?),
            };
            (format!("[{addr}]"), port)
        } else {
            match authority.split_once(':') {
                Some((h, p)) => (h.to_owned(), Some(p)),
                None => (authority.to_owned(), None),
            }
        };
        if host.is_empty() || host.len() <= 2 && host.starts_with('[') {
            return Err(invalid());
        }
        let port = match port {
            None => None,
            Some(p) => Some(
                p.parse::<u16>()
                    .ok()
                    .filter(|p| *p > 0)
                    .ok_or_else(invalid)?,
            ),
        };
        Ok(Self {
            https,
            host: host.to_ascii_lowercase(),
            port,
            path: path.to_owned(),
        })
    }

    fn scheme(&self) -> &'static str {
        if self.https { "https" } else { "http" }
    }

    /// `http(s)://host[:port][/path]`, no trailing slash.
    fn render(&self) -> String {
        self.render_with_scheme(self.scheme())
    }

    /// As [`render`](Self::render) with `ws`/`wss` instead of `http`/`https`.
    fn render_ws(&self) -> String {
        self.render_with_scheme(if self.https { "wss" } else { "ws" })
    }

    fn render_with_scheme(&self, scheme: &str) -> String {
        match self.port {
            Some(port) => format!("{scheme}://{}:{port}{}", self.host, self.path),
            None => format!("{scheme}://{}{}", self.host, self.path),
        }
    }
}

/// A parsed Azure SignalR connection string, e.g.
/// `Endpoint=http://127.0.0.1;Port=8080;AccessKey=<key>;Version=1.0;`.
///
/// Rules (`docs/protocol.md#connection-strings-and-urls`): `;`-separated `key=value` properties;
/// empty segments dropped; a segment without `=` ignored; split on the first `=` only; keys
/// case-insensitive; whitespace trimmed; duplicate keys and fewer than two properties are errors.
/// `Endpoint` (http/https) and `AccessKey` (used as UTF-8 bytes, never base64-decoded) are
/// required; `Port` overrides the port of `Endpoint` only; `ClientEndpoint` / `ServerEndpoint`
/// replace the base URL handed to clients / used for server connections. Unknown properties are
/// ignored.
#[derive(Clone, PartialEq, Eq)]
pub struct ConnectionString {
    endpoint: BaseUrl,
    client_endpoint: Option<BaseUrl>,
    server_endpoint: Option<BaseUrl>,
    access_key: String,
    version: Option<String>,
}

impl fmt::Debug for ConnectionString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the access key.
        f.debug_struct("ConnectionString")
            .field("endpoint", &self.endpoint())
            .field("client_endpoint", &self.client_endpoint())
            .field("server_endpoint", &self.server_endpoint())
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

impl FromStr for ConnectionString {
    type Err = ConnectionStringError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl ConnectionString {
    /// Parses a connection string with the SDK's rules (see the type documentation).
    pub fn parse(text: &str) -> Result<Self, ConnectionStringError> {
        let mut props: Vec<(String, &str)> = Vec::new();
        let mut segments = 0;
        for segment in text.split(';') {
            if segment.trim().is_empty() {
                continue;
            }
            segments += 1;
            let Some((key, value)) = segment.split_once('=') else {
                continue;
            };
            let key = key.trim().to_ascii_lowercase();
            if props.iter().any(|(k, _)| *k == key) {
                return Err(ConnectionStringError::DuplicateKey(key));
            }
            props.push((key, value.trim()));
        }
        if segments < 2 {
            return Err(ConnectionStringError::MissingEndpoint);
        }
        let get = |name: &str| props.iter().find(|(k, _)| k == name).map(|(_, v)| *v);

        let endpoint_text = get("endpoint").ok_or(ConnectionStringError::MissingEndpoint)?;
        let mut endpoint = BaseUrl::parse("Endpoint", endpoint_text)?;
        if let Some(port) = get("port") {
            let parsed = port
                .parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| ConnectionStringError::InvalidPort(port.to_owned()))?;
            endpoint.port = Some(parsed);
        }
        if let Some(version) = get("version")
            && !is_supported_version(version)
        {
            return Err(ConnectionStringError::InvalidVersion(version.to_owned()));
        }
        if let Some(auth_type) = get("authtype") {
            return Err(ConnectionStringError::UnsupportedAuthType(
                auth_type.to_owned(),
            ));
        }
        let access_key = get("accesskey").ok_or(ConnectionStringError::MissingAccessKey)?;
        let client_endpoint = get("clientendpoint")
            .map(|v| BaseUrl::parse("ClientEndpoint", v))
            .transpose()?;
        let server_endpoint = get("serverendpoint")
            .map(|v| BaseUrl::parse("ServerEndpoint", v))
            .transpose()?;
        Ok(Self {
            endpoint,
            client_endpoint,
            server_endpoint,
            access_key: access_key.to_owned(),
            version: get("version").map(str::to_owned),
        })
    }

    /// The service endpoint with `Port` applied, without trailing slash
    /// (`http://127.0.0.1:8080`).
    pub fn endpoint(&self) -> String {
        self.endpoint.render()
    }

    /// The base URL handed to clients: `ClientEndpoint`, else [`endpoint`](Self::endpoint).
    pub fn client_endpoint(&self) -> String {
        self.client_endpoint
            .as_ref()
            .unwrap_or(&self.endpoint)
            .render()
    }

    /// The base URL of server connections: `ServerEndpoint`, else [`endpoint`](Self::endpoint).
    pub fn server_endpoint(&self) -> String {
        self.server_endpoint
            .as_ref()
            .unwrap_or(&self.endpoint)
            .render()
    }

    /// The access key (the HMAC secret, as UTF-8 bytes).
    pub fn access_key(&self) -> &str {
        &self.access_key
    }

    /// The `Version` property, when given.
    pub fn version(&self) -> Option<&str> {
        self.version.as_deref()
    }

    /// The audience base of every token: `<scheme>://<host>` of `Endpoint`, without port or
    /// path.
    pub fn audience_base(&self) -> String {
        format!("{}://{}", self.endpoint.scheme(), self.endpoint.host)
    }

    /// The WebSocket URL of one server connection:
    /// `ws(s)://<server endpoint>/server/?hub=<hub>&cid=<cid>`. `hub` is used as given (see
    /// [`hub_url_name`]).
    pub fn server_connection_url(&self, hub: &str, cid: &str) -> String {
        let base = self.server_endpoint.as_ref().unwrap_or(&self.endpoint);
        format!(
            "{}/server/?hub={}&cid={}",
            base.render_ws(),
            utf8_percent_encode(hub, QUERY_VALUE),
            utf8_percent_encode(cid, QUERY_VALUE)
        )
    }

    /// The client redirect URL: `<client endpoint>/client/?hub=<hub>`.
    pub fn client_url(&self, hub: &str) -> String {
        format!(
            "{}/client/?hub={}",
            self.client_endpoint(),
            utf8_percent_encode(hub, QUERY_VALUE)
        )
    }

    /// The `aud` of a server-connection token: `<scheme>://<host>/server/?hub=<hub>`.
    pub fn server_audience(&self, hub: &str) -> String {
        format!("{}/server/?hub={hub}", self.audience_base())
    }

    /// The `aud` of a client token: `<scheme>://<host>/client/?hub=<hub>`.
    pub fn client_audience(&self, hub: &str) -> String {
        format!("{}/client/?hub={hub}", self.audience_base())
    }

    /// Mints the token of a server connection (HS256 with the access key): `aud` =
    /// [`server_audience`](Self::server_audience), `exp` = now + `lifetime`, `nameid` =
    /// `server_id`.
    pub fn server_token(&self, hub: &str, server_id: &str, lifetime: Duration) -> String {
        AccessKeys::new(vec![self.access_key.clone()]).mint(
            &self.server_audience(hub),
            lifetime.as_secs(),
            &[("nameid", server_id)],
        )
    }

    /// Mints a client token the way the SDK's negotiate handler does: HS256, `aud` =
    /// [`client_audience`](Self::client_audience), `exp` = now + `lifetime`, `asrs.s.uid` and
    /// `nameid` = `user_id` when given, then `claims` in order. An app claim named like a JWT
    /// registered claim (`aud`, `exp`, ...) is renamed `asrs.u.<name>`, as the SDK does.
    pub fn client_token(
        &self,
        hub: &str,
        user_id: Option<&str>,
        claims: &[(&str, &str)],
        lifetime: Duration,
    ) -> String {
        let escaped: Vec<(String, &str)> = claims
            .iter()
            .map(|(k, v)| {
                if ESCAPED_CLAIMS.contains(k) {
                    (format!("asrs.u.{k}"), *v)
                } else {
                    ((*k).to_owned(), *v)
                }
            })
            .collect();
        let mut all: Vec<(&str, &str)> = Vec::with_capacity(escaped.len() + 2);
        if let Some(user) = user_id {
            all.push(("asrs.s.uid", user));
            if !claims.iter().any(|(k, _)| *k == "nameid") {
                all.push(("nameid", user));
            }
        }
        all.extend(escaped.iter().map(|(k, v)| (k.as_str(), *v)));
        AccessKeys::new(vec![self.access_key.clone()]).mint(
            &self.client_audience(hub),
            lifetime.as_secs(),
            &all,
        )
    }
}

/// The hub name the SDK puts in URLs and audiences: lower-cased, prefixed with
/// `<application name lower-cased>_` when an application name is configured.
pub fn hub_url_name(hub: &str, application_name: Option<&str>) -> String {
    match application_name {
        Some(app) if !app.is_empty() => format!("{}_{}", app, hub).to_lowercase(),
        _ => hub.to_lowercase(),
    }
}

/// `^1\.\d+(?:[\w-.]+)?$`
fn is_supported_version(v: &str) -> bool {
    let Some(rest) = v.strip_prefix("1.") else {
        return false;
    };
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    digits > 0
        && rest[digits..]
            .chars()
            .all(|c| c.is_alphanumeric() || c == '_' || c == '-' || c == '.')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<ConnectionString, ConnectionStringError> {
        ConnectionString::parse(s)
    }

    #[test]
    fn switchboard_and_emulator_strings() {
        let cs = parse("Endpoint=http://127.0.0.1;Port=8080;AccessKey=abc=;Version=1.0;").unwrap();
        assert_eq!(cs.endpoint(), "http://127.0.0.1:8080");
        assert_eq!(cs.access_key(), "abc=");
        assert_eq!(cs.version(), Some("1.0"));
        assert_eq!(cs.audience_base(), "http://127.0.0.1");
        assert_eq!(
            cs.server_connection_url("chat", "c1"),
            "ws://127.0.0.1:8080/server/?hub=chat&cid=c1"
        );
        assert_eq!(
            cs.client_url("chat"),
            "http://127.0.0.1:8080/client/?hub=chat"
        );
        assert_eq!(
            cs.server_audience("chat"),
            "http://127.0.0.1/server/?hub=chat"
        );

        let emu = parse(
            "Endpoint=http://localhost;Port=8888;AccessKey=ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789ABCDEFGH;Version=1.0;",
        )
        .unwrap();
        assert_eq!(emu.endpoint(), "http://localhost:8888");
    }

    #[test]
    fn syntax_rules() {
        // Case-insensitive keys, whitespace, empty segments, segments without '=', '=' in values.
        let cs =
            parse(" endpoint = HTTPS://Svc.Example.COM/ ;; junk ; accesskey = a=b=c ;").unwrap();
        assert_eq!(cs.endpoint(), "https://svc.example.com");
        assert_eq!(cs.access_key(), "a=b=c");
        assert_eq!(
            cs.server_connection_url("chat", "x"),
            "wss://svc.example.com/server/?hub=chat&cid=x"
        );
        assert_eq!(
            parse("Endpoint=http://a;endpoint=http://b;AccessKey=k"),
            Err(ConnectionStringError::DuplicateKey("endpoint".into()))
        );
        assert_eq!(
            parse("Endpoint=http://a"),
            Err(ConnectionStringError::MissingEndpoint)
        );
        assert_eq!(
            parse("AccessKey=k;Version=1.0"),
            Err(ConnectionStringError::MissingEndpoint)
        );
        assert_eq!(
            parse("Endpoint=http://a;Version=1.0"),
            Err(ConnectionStringError::MissingAccessKey)
        );
        assert!(matches!(
            parse("Endpoint=ftp://a;AccessKey=k"),
            Err(ConnectionStringError::InvalidUrl {
                key: "Endpoint",
                ..
            })
        ));
        assert!(matches!(
            parse("Endpoint=a.example;AccessKey=k"),
            Err(ConnectionStringError::InvalidUrl { .. })
        ));
        assert_eq!(
            parse("Endpoint=http://a;AccessKey=k;Port=0"),
            Err(ConnectionStringError::InvalidPort("0".into()))
        );
        assert_eq!(
            parse("Endpoint=http://a;AccessKey=k;Port=70000"),
            Err(ConnectionStringError::InvalidPort("70000".into()))
        );
        assert_eq!(
            parse("Endpoint=http://a;AccessKey=k;Version=2.0"),
            Err(ConnectionStringError::InvalidVersion("2.0".into()))
        );
        assert!(parse("Endpoint=http://a;AccessKey=k;Version=1.0-preview").is_ok());
        assert!(parse("Endpoint=http://a;AccessKey=k;Version=1.").is_err());
        assert!(matches!(
            parse("Endpoint=http://a;AuthType=aad;ClientId=x"),
            Err(ConnectionStringError::UnsupportedAuthType(_))
        ));
    }

    #[test]
    fn port_overrides_only_the_endpoint() {
        let cs = parse(
            "Endpoint=http://svc:1000;Port=2000;AccessKey=k;ClientEndpoint=https://gw:3000/base/;ServerEndpoint=http://inner:4000",
        )
        .unwrap();
        assert_eq!(cs.endpoint(), "http://svc:2000");
        assert_eq!(
            cs.client_url("chat"),
            "https://gw:3000/base/client/?hub=chat"
        );
        assert_eq!(
            cs.server_connection_url("chat", "c"),
            "ws://inner:4000/server/?hub=chat&cid=c"
        );
        // The audience is always built on Endpoint without port.
        assert_eq!(cs.client_audience("chat"), "http://svc/client/?hub=chat");
    }

    #[test]
    fn ipv6_and_hub_names() {
        let cs = parse("Endpoint=http://[::1];Port=9000;AccessKey=k").unwrap();
        assert_eq!(cs.endpoint(), "http://[::1]:9000");
        assert_eq!(hub_url_name("Chat", None), "chat");
        assert_eq!(hub_url_name("Chat", Some("MyApp")), "myapp_chat");
        assert_eq!(
            cs.server_connection_url("a b", "c"),
            "ws://[::1]:9000/server/?hub=a%20b&cid=c"
        );
    }

    #[test]
    fn debug_hides_the_key() {
        let cs = parse("Endpoint=http://a;AccessKey=secret-key").unwrap();
        assert!(!format!("{cs:?}").contains("secret-key"));
    }

    #[test]
    fn tokens() {
        use crate::protocol::auth::Audience;
        let cs = parse("Endpoint=http://127.0.0.1;Port=8080;AccessKey=key-1;").unwrap();
        let keys = AccessKeys::new(vec!["key-1".into()]);
        let server = cs.server_token("chat", "host_abc", Duration::from_secs(3600));
        let id = keys
            .validate(&server, Audience::Server { hub: "chat" }, 0)
            .unwrap();
        assert_eq!(id.claim("nameid"), Some("host_abc"));

        let client = cs.client_token(
            "chat",
            Some("alice"),
            &[("role", "admin"), ("aud", "evil")],
            Duration::from_secs(60),
        );
        let id = keys
            .validate(&client, Audience::Client { hub: "chat" }, 0)
            .unwrap();
        assert_eq!(id.user_id.as_deref(), Some("alice"));
        assert_eq!(id.claim("nameid"), Some("alice"));
        assert_eq!(id.claim("role"), Some("admin"));
        assert_eq!(id.claim("asrs.u.aud"), Some("evil"));
        assert!(
            keys.validate(&client, Audience::Server { hub: "chat" }, 0)
                .is_err()
        );
    }
}
