//! Unit tests for token validation.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use super::*;

const PRIMARY: &str = "primary-key-0123456789abcdefghijklmnopqrstuv";
const SECONDARY: &str = "secondary-key-0123456789abcdefghijklmnopqrs";
const NOW: u64 = 1_800_000_000;

fn keys() -> AccessKeys {
    AccessKeys::new(vec![PRIMARY.into(), SECONDARY.into()])
}

fn sign(alg: Algorithm, key: &str, claims: Value) -> String {
    jsonwebtoken::encode(
        &Header::new(alg),
        &claims,
        &EncodingKey::from_secret(key.as_bytes()),
    )
    .unwrap()
}

fn client_claims(aud: &str) -> Value {
    json!({"aud": aud, "exp": NOW + 3600, "iat": NOW, "nbf": NOW, "nameid": "alice"})
}

const CLIENT: Audience<'static> = Audience::Client { hub: "chat" };

#[test]
fn accepts_sdk_shaped_client_token_with_either_key() {
    for key in [PRIMARY, SECONDARY] {
        let t = sign(
            Algorithm::HS256,
            key,
            client_claims("http://localhost/client/?hub=chat"),
        );
        let id = keys().validate_at(&t, CLIENT, NOW, 30).unwrap();
        assert_eq!(id.user_id.as_deref(), Some("alice"));
        assert_eq!(id.expires_at, NOW + 3600);
    }
}

#[test]
fn accepts_hs512() {
    let t = sign(
        Algorithm::HS512,
        PRIMARY,
        client_claims("https://x.service.signalr.net/client/?hub=Chat"),
    );
    keys().validate_at(&t, CLIENT, NOW, 30).unwrap();
}

#[test]
fn rejects_forged_signature() {
    let t = sign(
        Algorithm::HS256,
        "some-other-key",
        client_claims("http://h/client/?hub=chat"),
    );
    assert_eq!(
        keys().validate_at(&t, CLIENT, NOW, 30),
        Err(AuthError::BadSignature)
    );
    assert_eq!(
        AuthError::BadSignature.to_string(),
        "Unauthorized: the token is not signed with any of this broker's access keys."
    );
}

#[test]
fn rejects_alg_none_and_garbage() {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(client_claims("http://h/client/?hub=chat").to_string());
    let t = format!("{header}.{payload}.");
    assert!(matches!(
        keys().validate_at(&t, CLIENT, NOW, 30),
        Err(AuthError::Malformed(_))
    ));
    for junk in ["", "abc", "a.b.c", "....", "eyJhbGciOiJIUzI1NiJ9.!!!.sig"] {
        assert!(keys().validate_at(junk, CLIENT, NOW, 30).is_err(), "{junk}");
    }
}

#[test]
fn rejects_other_algorithms() {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(client_claims("http://h/client/?hub=chat").to_string());
    let t = format!("{header}.{payload}.c2ln");
    assert!(matches!(
        keys().validate_at(&t, CLIENT, NOW, 30),
        Err(AuthError::Malformed(_))
    ));
}

#[test]
fn expiry_with_skew() {
    let mut c = client_claims("http://h/client/?hub=chat");
    c["exp"] = json!(NOW - 10);
    let t = sign(Algorithm::HS256, PRIMARY, c.clone());
    assert!(
        keys().validate_at(&t, CLIENT, NOW, 30).is_ok(),
        "inside the skew"
    );
    assert_eq!(
        keys().validate_at(&t, CLIENT, NOW, 5),
        Err(AuthError::Expired { secs_ago: 10 })
    );
    assert_eq!(
        AuthError::Expired { secs_ago: 10 }.to_string(),
        "Unauthorized: the access token expired 10 s ago; mint a new one."
    );
    c.as_object_mut().unwrap().remove("exp");
    let t = sign(Algorithm::HS256, PRIMARY, c);
    assert_eq!(
        keys().validate_at(&t, CLIENT, NOW, 30),
        Err(AuthError::MissingExpiry)
    );
}

#[test]
fn not_before() {
    let mut c = client_claims("http://h/client/?hub=chat");
    c["nbf"] = json!(NOW + 600);
    let t = sign(Algorithm::HS256, PRIMARY, c);
    assert_eq!(
        keys().validate_at(&t, CLIENT, NOW, 30),
        Err(AuthError::NotYetValid)
    );
}

#[test]
fn audience_per_endpoint_kind() {
    let ok = |aud: &str, want: Audience<'_>| {
        let t = sign(Algorithm::HS256, PRIMARY, client_claims(aud));
        keys().validate_at(&t, want, NOW, 30).is_ok()
    };
    // Client tokens.
    assert!(ok("http://127.0.0.1/client/?hub=chat", CLIENT));
    assert!(ok("http://127.0.0.1:8080/client?hub=CHAT", CLIENT));
    assert!(!ok("http://127.0.0.1/client/?hub=other", CLIENT));
    assert!(!ok("http://127.0.0.1/server/?hub=chat", CLIENT));
    // A client token opens no REST call and no server connection.
    let rest = Audience::Rest {
        path: "/api/hubs/chat/:send",
    };
    assert!(!ok("http://127.0.0.1/client/?hub=chat", rest));
    assert!(!ok(
        "http://127.0.0.1/client/?hub=chat",
        Audience::Server { hub: "chat" }
    ));
    assert!(ok(
        "http://127.0.0.1/server/?hub=chat",
        Audience::Server { hub: "chat" }
    ));
    // REST: the request URL (query ignored), or a parent path under /api/.
    assert!(ok(
        "http://127.0.0.1/api/hubs/chat/:send?api-version=2022-06-01",
        rest
    ));
    assert!(ok("http://127.0.0.1/api/hubs/chat", rest));
    assert!(!ok("http://127.0.0.1/api/hubs/cha", rest));
    assert!(!ok("http://127.0.0.1/api/hubs/other/:send", rest));
    assert!(!ok("http://127.0.0.1/", rest));
    let v1 = Audience::Rest {
        path: "/api/v1/hubs/chat/users/bob",
    };
    assert!(ok("http://localhost/api/v1/hubs/chat/users/bob", v1));
    assert!(ok("http://localhost/api/v1/hubs/chat/users/bob/", v1));
}

#[test]
fn user_id_resolution_and_claims() {
    let claims = json!({
        "aud": "http://h/client/?hub=chat", "exp": NOW + 60,
        "asrs.s.uid": "u1", "nameid": "u2", "role": ["a", "b"]
    });
    let t = sign(Algorithm::HS256, PRIMARY, claims);
    let id = keys().validate_at(&t, CLIENT, NOW, 30).unwrap();
    assert_eq!(id.user_id.as_deref(), Some("u1"));
    let roles: Vec<_> = id
        .claims
        .iter()
        .filter(|(k, _)| k == "role")
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(roles, ["a", "b"]);
    assert!(id.claims.iter().all(|(k, _)| k != "aud" && k != "exp"));

    let t = sign(
        Algorithm::HS256,
        PRIMARY,
        json!({"aud": "http://h/client/?hub=chat", "exp": NOW + 60, "sub": "s"}),
    );
    assert_eq!(
        keys()
            .validate_at(&t, CLIENT, NOW, 30)
            .unwrap()
            .user_id
            .as_deref(),
        Some("s")
    );
    let t = sign(
        Algorithm::HS256,
        PRIMARY,
        json!({"aud": "http://h/client/?hub=chat", "exp": NOW + 60}),
    );
    assert_eq!(
        keys().validate_at(&t, CLIENT, NOW, 30).unwrap().user_id,
        None
    );
}

#[test]
fn minted_tokens_validate() {
    let k = keys();
    let t = k.mint(
        "http://127.0.0.1/client/?hub=chat",
        3600,
        &[("nameid", "bob"), ("role", "x"), ("role", "y")],
    );
    let id = k.validate(&t, CLIENT, 0).unwrap();
    assert_eq!(id.user_id.as_deref(), Some("bob"));
    assert_eq!(id.claims.iter().filter(|(k, _)| k == "role").count(), 2);
}

#[test]
fn a_lifetime_too_long_for_the_clock_saturates() {
    let k = keys();
    let t = k.mint("http://127.0.0.1/client/?hub=chat", u64::MAX, &[]);
    k.validate(&t, CLIENT, 0)
        .expect("a token that never expires is valid");
}
