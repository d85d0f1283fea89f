//! Access-key JWTs: validation per endpoint kind, and minting.
//!
//! Tokens are what the Azure SignalR SDKs mint (`docs/protocol.md#access-tokens`): compact JWS,
//! HS256 or HS512, signed with the UTF-8 bytes of an access key. Any configured key is accepted
//! (primary and secondary, for rotation); `kid` is ignored because the SDK's value is a
//! per-process hash. `exp` is required and checked with a small skew, `nbf` when present.
//!
//! The audience separates endpoint kinds: a client token names `/client/?hub=<hub>`, a server
//! token `/server/?hub=<hub>`, a REST token the REST URL. Only the path (and for client and
//! server tokens the `hub` query value) is compared, case-insensitively and without a trailing
//! slash; scheme, host and port are ignored, because the SDKs derive them from the connection
//! string (without the port), and a reverse proxy may rename the host. Every token is signed with
//! this instance's own key, so the host adds no security.

use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde_json::{Map, Value};

/// Registered JWT claims, which are not user claims.
const REGISTERED_CLAIMS: &[&str] = &["aud", "exp", "iat", "nbf", "iss", "jti"];

/// Claim carrying the user id chosen by the app (preferred).
pub const CLAIM_USER_ID: &str = "asrs.s.uid";
/// Short name of the NameIdentifier claim.
pub const CLAIM_NAME_ID: &str = "nameid";

/// What a token must have been minted for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Audience<'a> {
    /// A client of hub `hub` (`/client/?hub=<hub>`).
    Client {
        /// The hub, compared case-insensitively.
        hub: &'a str,
    },
    /// A hub server connection for hub `hub` (`/server/?hub=<hub>`).
    Server {
        /// The hub, compared case-insensitively.
        hub: &'a str,
    },
    /// The admin endpoint (`/admin/settings`; a token for `/admin` covers it).
    Admin,
    /// A REST call to `path` (the request path, e.g. `/api/hubs/chat/:send`). A token whose
    /// audience is that path or a parent of it under `/api/` is accepted.
    Rest {
        /// The request path.
        path: &'a str,
    },
}

/// Why a token was refused. The text is what the 401 body says.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum AuthError {
    /// No token in the request.
    #[error(
        "Unauthorized: no access token was provided (use 'Authorization: Bearer <token>' or the 'access_token' query parameter)."
    )]
    Missing,
    /// Not a JWT, or a JWT using an algorithm other than HS256/HS512.
    #[error(
        "Unauthorized: the access token is malformed or uses an unsupported algorithm ({0}); expected an HS256 or HS512 JWT."
    )]
    Malformed(String),
    /// The signature matches none of the access keys (Azure: 401, "The signature key was not
    /// found").
    #[error("Unauthorized: the token is not signed with any of this broker's access keys.")]
    BadSignature,
    /// `exp` is in the past.
    #[error("Unauthorized: the access token expired {secs_ago} s ago; mint a new one.")]
    Expired {
        /// How long ago `exp` was, in seconds.
        secs_ago: u64,
    },
    /// `nbf` is in the future.
    #[error("Unauthorized: the access token is not valid yet.")]
    NotYetValid,
    /// `exp` is missing.
    #[error("Unauthorized: the access token has no 'exp' claim.")]
    MissingExpiry,
    /// The audience does not match the endpoint.
    #[error("Unauthorized: the access token audience '{actual}' does not match '{expected}'.")]
    WrongAudience {
        /// What the token says.
        actual: String,
        /// What the endpoint needs.
        expected: String,
    },
}

/// Who a validated token speaks for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Identity {
    /// The user id: `asrs.s.uid`, else `nameid`, else `sub`.
    pub user_id: Option<String>,
    /// Every non-registered claim as (type, value) pairs, arrays flattened, in token order.
    pub claims: Vec<(String, String)>,
    /// `exp`, in seconds since the epoch.
    pub expires_at: u64,
}

impl Identity {
    /// The first value of claim `name`.
    pub fn claim(&self, name: &str) -> Option<&str> {
        self.claims
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// The set of access keys tokens may be signed with.
#[derive(Clone)]
pub struct AccessKeys {
    keys: Vec<String>,
}

impl std::fmt::Debug for AccessKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AccessKeys({} keys)", self.keys.len())
    }
}

impl AccessKeys {
    /// Keys in order: primary first. At least one key is required.
    pub fn new(keys: Vec<String>) -> Self {
        assert!(!keys.is_empty(), "at least one access key is required");
        Self { keys }
    }

    /// The primary key (used to mint tokens).
    pub fn primary(&self) -> &str {
        &self.keys[0]
    }

    /// All keys, primary first.
    pub fn all(&self) -> &[String] {
        &self.keys
    }

    /// Validate `token` for `audience` at time `now` (seconds since the epoch).
    pub fn validate_at(
        &self,
        token: &str,
        audience: Audience<'_>,
        now: u64,
        skew_secs: u64,
    ) -> Result<Identity, AuthError> {
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| AuthError::Malformed(e.to_string()))?;
        if !matches!(header.alg, Algorithm::HS256 | Algorithm::HS512) {
            return Err(AuthError::Malformed(format!("{:?}", header.alg)));
        }
        let mut validation = Validation::new(header.alg);
        // Time and audience are checked below against our own clock and rules.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();

        let mut claims: Option<Map<String, Value>> = None;
        for key in &self.keys {
            match jsonwebtoken::decode::<Map<String, Value>>(
                token,
                &DecodingKey::from_secret(key.as_bytes()),
                &validation,
            ) {
                Ok(data) => {
                    claims = Some(data.claims);
                    break;
                }
                Err(e) if matches!(e.kind(), jsonwebtoken::errors::ErrorKind::InvalidSignature) => {
                    continue;
                }
                Err(e) => return Err(AuthError::Malformed(e.to_string())),
            }
        }
        let claims = claims.ok_or(AuthError::BadSignature)?;

        let exp = claims
            .get("exp")
            .and_then(Value::as_f64)
            .ok_or(AuthError::MissingExpiry)? as u64;
        if exp.saturating_add(skew_secs) <= now {
            return Err(AuthError::Expired {
                secs_ago: now.saturating_sub(exp),
            });
        }
        if let Some(nbf) = claims.get("nbf").and_then(Value::as_f64)
            && (nbf as u64) > now.saturating_add(skew_secs)
        {
            return Err(AuthError::NotYetValid);
        }
        let aud = match claims.get("aud") {
            Some(Value::String(s)) => vec![s.as_str()],
            Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        if !aud.iter().any(|a| audience_matches(a, audience)) {
            return Err(AuthError::WrongAudience {
                actual: aud.join(" "),
                expected: expected_audience(audience),
            });
        }

        let mut flat = Vec::with_capacity(claims.len());
        for (k, v) in &claims {
            if REGISTERED_CLAIMS.contains(&k.as_str()) {
                continue;
            }
            match v {
                Value::Array(items) => {
                    for item in items {
                        flat.push((k.clone(), value_text(item)));
                    }
                }
                other => flat.push((k.clone(), value_text(other))),
            }
        }
        let mut identity = Identity {
            user_id: None,
            claims: flat,
            expires_at: exp,
        };
        identity.user_id = [CLAIM_USER_ID, CLAIM_NAME_ID, "sub"]
            .iter()
            .find_map(|c| identity.claim(c).filter(|v| !v.is_empty()))
            .map(str::to_owned);
        Ok(identity)
    }

    /// Validate `token` for `audience` now.
    pub fn validate(
        &self,
        token: &str,
        audience: Audience<'_>,
        skew_secs: u64,
    ) -> Result<Identity, AuthError> {
        self.validate_at(token, audience, unix_now(), skew_secs)
    }

    /// Mint a token with the primary key, as the Azure SDKs do: HS256, `aud`, `exp`, `iat`,
    /// `nbf`, then `claims` in order (a repeated claim type becomes an array).
    pub fn mint(&self, aud: &str, lifetime_secs: u64, claims: &[(&str, &str)]) -> String {
        let now = unix_now();
        let mut map = Map::new();
        map.insert("aud".into(), Value::from(aud));
        // A lifetime too long for the clock is as long as it can be.
        map.insert("exp".into(), Value::from(now.saturating_add(lifetime_secs)));
        map.insert("iat".into(), Value::from(now));
        map.insert("nbf".into(), Value::from(now));
        for (k, v) in claims {
            match map.get_mut(*k) {
                Some(Value::Array(items)) => items.push(Value::from(*v)),
                Some(existing) => {
                    let first = existing.take();
                    *existing = Value::Array(vec![first, Value::from(*v)]);
                }
                None => {
                    map.insert((*k).to_owned(), Value::from(*v));
                }
            }
        }
        // Encoding a JSON map with an HMAC key cannot fail.
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &map,
            &EncodingKey::from_secret(self.primary().as_bytes()),
        )
        .unwrap_or_default()
    }
}

fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The .NET claim type a hub server expects for a JWT claim name: the inbound mapping ASP.NET
/// Core applies to tokens (`nameid` → `…/nameidentifier` and so on). Other names pass unchanged.
pub fn dotnet_claim_type(name: &str) -> &str {
    match name {
        "nameid" | "sub" => "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/nameidentifier",
        "unique_name" | "name" => "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name",
        "role" | "roles" => "http://schemas.microsoft.com/ws/2008/06/identity/claims/role",
        "email" => "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress",
        "given_name" => "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/givenname",
        "family_name" => "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/surname",
        "upn" => "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn",
        "gender" => "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/gender",
        "birthdate" => "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/dateofbirth",
        "actort" => "http://schemas.xmlsoap.org/ws/2009/09/identity/claims/actor",
        other => other,
    }
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Split an audience URL (or bare path) into its lower-cased path without trailing slash and
/// its query.
fn split_audience(aud: &str) -> (String, &str) {
    let without_scheme = match aud.find("://") {
        Some(i) => {
            let rest = &aud[i + 3..];
            match rest.find(['/', '?']) {
                Some(j) => &rest[j..],
                None => "",
            }
        }
        None => aud,
    };
    let (path, query) = without_scheme
        .split_once('?')
        .unwrap_or((without_scheme, ""));
    let path = path.trim_end_matches('/').to_ascii_lowercase();
    (path, query)
}

fn hub_query_matches(query: &str, hub: &str) -> bool {
    form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k.eq_ignore_ascii_case("hub"))
        .is_some_and(|(_, v)| v.eq_ignore_ascii_case(hub))
}

fn audience_matches(aud: &str, expected: Audience<'_>) -> bool {
    let (path, query) = split_audience(aud);
    match expected {
        Audience::Client { hub } => path == "/client" && hub_query_matches(query, hub),
        Audience::Server { hub } => path == "/server" && hub_query_matches(query, hub),
        Audience::Admin => path == "/admin" || path == "/admin/settings",
        Audience::Rest { path: request } => {
            let request = request.trim_end_matches('/').to_ascii_lowercase();
            path.starts_with("/api/")
                && (request == path
                    || (request.starts_with(&path) && request.as_bytes()[path.len()] == b'/'))
        }
    }
}

fn expected_audience(expected: Audience<'_>) -> String {
    match expected {
        Audience::Client { hub } => format!("<endpoint>/client/?hub={hub}"),
        Audience::Server { hub } => format!("<endpoint>/server/?hub={hub}"),
        Audience::Admin => "<endpoint>/admin/settings".to_owned(),
        Audience::Rest { path } => format!("<endpoint>{path}"),
    }
}

/// `scheme://host` of an endpoint, without port or path: the SDKs' audience base.
pub fn audience_base(endpoint: &str) -> String {
    let (scheme, rest) = endpoint.split_once("://").unwrap_or(("http", endpoint));
    let authority = rest.split('/').next().unwrap_or(rest);
    let host = match authority.rsplit_once(':') {
        Some((h, p)) if p.chars().all(|c| c.is_ascii_digit()) => h,
        _ => authority,
    };
    format!("{scheme}://{host}")
}

#[cfg(test)]
mod tests;
