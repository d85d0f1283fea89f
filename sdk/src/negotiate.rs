//! The app server's own negotiate endpoint (`docs/protocol.md#negotiate`, "The Azure flow"):
//! the Azure redirect answer
//! `{"url":"<client endpoint>/client/?hub=<hub>","accessToken":"<client jwt>"}` that the official
//! clients follow to the service.
//!
//! This module owns only the body of that answer; serving it (`POST /<hub>/negotiate`, CORS) is
//! the app's web framework's job, so it works with any of them.

use std::time::Duration;

use super::connection_string::{ConnectionString, hub_url_name};

/// The JSON body an app server answers a client's `POST …/negotiate` with: the redirect to the
/// service with a freshly minted client token.
///
/// `hub` is lower-cased as the SDK does. The token (HS256 with the access key) has `aud` =
/// `<scheme>://<host>/client/?hub=<hub>`, `exp` = now + `lifetime`, `asrs.s.uid` and `nameid` =
/// `user_id` when given, then `claims` in order (repeat a claim type to give it several values).
///
/// ```
/// use std::time::Duration;
/// use switchboard_sdk::{ConnectionString, negotiate_response};
/// let cs: ConnectionString = "Endpoint=http://127.0.0.1;Port=8080;AccessKey=k;Version=1.0;".parse()?;
/// let body = negotiate_response(&cs, "chat", Some("alice"), &[("role", "admin")], Duration::from_secs(3600));
/// assert!(body.starts_with(r#"{"url":"http://127.0.0.1:8080/client/?hub=chat","accessToken":""#));
/// # Ok::<(), switchboard_sdk::ConnectionStringError>(())
/// ```
pub fn negotiate_response(
    connection_string: &ConnectionString,
    hub: &str,
    user_id: Option<&str>,
    claims: &[(&str, &str)],
    lifetime: Duration,
) -> String {
    negotiate_response_for_app(connection_string, None, hub, user_id, claims, lifetime)
}

/// As [`negotiate_response`], for an app configured with an application name (the hub becomes
/// `<app>_<hub>`, both lower-cased), which must match the hub server's
/// [`application_name`](super::HubServerBuilder::application_name).
pub fn negotiate_response_for_app(
    connection_string: &ConnectionString,
    application_name: Option<&str>,
    hub: &str,
    user_id: Option<&str>,
    claims: &[(&str, &str)],
    lifetime: Duration,
) -> String {
    let hub = hub_url_name(hub, application_name);
    // Written by hand to keep the SDK's property order (`url` first); `Value`'s Display escapes.
    let url = serde_json::Value::String(connection_string.client_url(&hub));
    let token =
        serde_json::Value::String(connection_string.client_token(&hub, user_id, claims, lifetime));
    format!("{{\"url\":{url},\"accessToken\":{token}}}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::auth::{AccessKeys, Audience};

    #[test]
    fn redirect_body() {
        let cs = ConnectionString::parse(
            "Endpoint=http://127.0.0.1;Port=8080;AccessKey=the-key;Version=1.0;",
        )
        .unwrap();
        let body = negotiate_response(
            &cs,
            "Chat",
            Some("bob"),
            &[("role", "a"), ("role", "b")],
            Duration::from_secs(600),
        );
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["url"], "http://127.0.0.1:8080/client/?hub=chat");
        assert_eq!(v.as_object().unwrap().len(), 2);
        let token = v["accessToken"].as_str().unwrap();
        let id = AccessKeys::new(vec!["the-key".into()])
            .validate(token, Audience::Client { hub: "chat" }, 0)
            .unwrap();
        assert_eq!(id.user_id.as_deref(), Some("bob"));
        let roles: Vec<&str> = id
            .claims
            .iter()
            .filter(|(k, _)| k == "role")
            .map(|(_, v)| v.as_str())
            .collect();
        assert_eq!(roles, ["a", "b"]);
        assert!(id.expires_at <= crate::protocol::auth::unix_now() + 600);

        let anonymous = negotiate_response_for_app(
            &cs,
            Some("App"),
            "chat",
            None,
            &[],
            Duration::from_secs(60),
        );
        let v: serde_json::Value = serde_json::from_str(&anonymous).unwrap();
        assert_eq!(v["url"], "http://127.0.0.1:8080/client/?hub=app_chat");
    }
}
