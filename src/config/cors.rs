//! `[cors]`: which browser origins may read the broker's answers (Azure SignalR Service's CORS
//! setting, `allowedOrigins`).

use serde::{Deserialize, Serialize};

use super::ConfigError;

/// `[cors]`: the origins whose pages may call the broker from a browser (negotiate, the
/// transports, the REST API).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CorsConfig {
    /// `scheme://host[:port]` origins, or `*` for any (Azure's default). A request from an
    /// origin not listed gets no CORS headers, so a browser does not let its page read the
    /// answer; a listed origin is echoed with `Access-Control-Allow-Credentials: true`, which
    /// the SignalR clients' credentialed negotiate needs.
    pub allowed_origins: Vec<String>,
}

impl Default for CorsConfig {
    fn default() -> Self {
        Self {
            allowed_origins: vec!["*".to_owned()],
        }
    }
}

impl CorsConfig {
    /// Whether a page of `origin` (the request's `Origin` header) may read the answer.
    pub fn allows(&self, origin: &[u8]) -> bool {
        let origin = origin.strip_suffix(b"/").unwrap_or(origin);
        self.allowed_origins.iter().any(|allowed| {
            allowed == "*" || {
                let allowed = allowed.as_bytes();
                let allowed = allowed.strip_suffix(b"/").unwrap_or(allowed);
                allowed.eq_ignore_ascii_case(origin)
            }
        })
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        for (i, origin) in self.allowed_origins.iter().enumerate() {
            if origin != "*" && !is_origin(origin) {
                return Err(ConfigError::new(
                    format!("cors.allowed_origins[{i}]"),
                    format!(
                        "'{origin}' is not \"*\" or an origin like https://app.example.com or \
                         http://localhost:3000 (scheme, host and port only)"
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// `http(s)://host[:port]`, with nothing after the authority but an optional `/`.
fn is_origin(s: &str) -> bool {
    let Some(rest) = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"))
    else {
        return false;
    };
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    !authority.is_empty()
        && authority
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cors(origins: &[&str]) -> CorsConfig {
        CorsConfig {
            allowed_origins: origins.iter().map(|o| (*o).to_owned()).collect(),
        }
    }

    #[test]
    fn any_origin_by_default_only_listed_ones_with_a_list() {
        assert!(CorsConfig::default().allows(b"https://anything.example"));
        let c = cors(&["https://app.example.com", "http://localhost:3000/"]);
        assert!(c.allows(b"https://app.example.com"));
        assert!(
            c.allows(b"HTTPS://APP.example.com"),
            "scheme and host ignore case"
        );
        assert!(
            c.allows(b"http://localhost:3000"),
            "a trailing slash is ignored"
        );
        assert!(!c.allows(b"https://app.example.com:8443"), "another port");
        assert!(!c.allows(b"http://app.example.com"), "another scheme");
        assert!(!c.allows(b"https://evil.example.com"));
        assert!(!c.allows(b"https://app.example.com.evil.example"));
        assert!(!c.allows(b"null"));
        assert!(
            !cors(&[]).allows(b"https://app.example.com"),
            "an empty list allows none"
        );
    }

    #[test]
    fn only_origins_are_accepted() {
        for ok in [
            "*",
            "https://a.example",
            "http://localhost:3000",
            "http://[::1]:80/",
        ] {
            assert!(cors(&[ok]).validate().is_ok(), "{ok}");
        }
        for bad in [
            "",
            "a.example",
            "https://a.example/path",
            "ftp://a.example",
            "https://*.a.example",
            "https://",
        ] {
            let err = cors(&[bad]).validate().unwrap_err();
            assert_eq!(err.key, "cors.allowed_origins[0]", "{bad}");
        }
    }
}
