//! Unit tests of the management client's pure parts: URLs, audiences, tokens, bodies, answers,
//! argument checks. End-to-end behaviour against a broker is in `sdk/tests/management.rs`.

use std::time::Duration;

use serde_json::json;

use super::rest::{Answer, HubAddress, RestTransport, arguments_json, segment, send_body};
use super::*;
use crate::protocol::auth::{AccessKeys, Audience};

const CS: &str = "Endpoint=http://127.0.0.1;Port=8080;AccessKey=mgmt-key;Version=1.0;";

fn cs(text: &str) -> ConnectionString {
    text.parse().expect("valid connection string")
}

fn rest() -> RestTransport {
    RestTransport::new(
        cs(CS),
        "mgmt_server".into(),
        Duration::from_secs(60),
        Duration::from_secs(5),
        Duration::from_secs(1),
        None,
    )
    .expect("HTTP client")
}

#[test]
fn urls_and_audiences_follow_the_sdk() {
    let rest = rest();
    let hub = HubAddress::new("Chat", None);
    let (url, aud) = rest.url_and_audience(&hub, "/:send", &[]);
    assert_eq!(
        url,
        "http://127.0.0.1:8080/api/hubs/chat/:send?api-version=2022-06-01"
    );
    assert_eq!(
        aud,
        "http://127.0.0.1/api/hubs/chat/:send?api-version=2022-06-01"
    );

    // Application first, lower-cased; the operation's own query is not in the audience;
    // segments and values escaped like Uri.EscapeDataString.
    let hub = HubAddress::new("Chat", Some("MyApp"));
    let tail = format!("/groups/{}/:send", segment("a b/c?d").unwrap());
    let (url, aud) =
        rest.url_and_audience(&hub, &tail, &[("excluded", "x y"), ("excluded", "z&1")]);
    assert_eq!(
        url,
        "http://127.0.0.1:8080/api/hubs/chat/groups/a%20b%2Fc%3Fd/:send?application=myapp&api-version=2022-06-01&excluded=x%20y&excluded=z%261"
    );
    assert_eq!(
        aud,
        "http://127.0.0.1/api/hubs/chat/groups/a%20b%2Fc%3Fd/:send?application=myapp&api-version=2022-06-01"
    );
    assert_eq!(segment("ü-._~").unwrap(), "%C3%BC-._~");
}

#[test]
fn server_endpoint_is_the_base_and_the_audience_keeps_the_endpoint_host() {
    let rest = RestTransport::new(
        cs("Endpoint=https://svc.example.com;AccessKey=k;ServerEndpoint=http://inner:9000/base"),
        "s".into(),
        Duration::from_secs(60),
        Duration::from_secs(5),
        Duration::from_secs(1),
        None,
    )
    .unwrap();
    let (url, aud) = rest.url_and_audience(&HubAddress::new("h", None), "/users/u/:send", &[]);
    assert_eq!(
        url,
        "http://inner:9000/base/api/hubs/h/users/u/:send?api-version=2022-06-01"
    );
    assert_eq!(
        aud,
        "https://svc.example.com/api/hubs/h/users/u/:send?api-version=2022-06-01"
    );
}

#[test]
fn tokens_are_accepted_by_the_broker_rules() {
    let rest = rest();
    let hub = HubAddress::new("chat", Some("app"));
    let (_, aud) = rest.url_and_audience(&hub, "/connections/c1", &[]);
    let token = rest.token(&aud);
    let keys = AccessKeys::new(vec!["mgmt-key".into()]);
    let id = keys
        .validate(
            &token,
            Audience::Rest {
                path: "/api/hubs/chat/connections/c1",
            },
            0,
        )
        .expect("valid REST token");
    assert_eq!(id.claim("nameid"), Some("mgmt_server"));
    assert!(id.expires_at <= crate::protocol::auth::unix_now() + 60);
    // Minted for one path only.
    assert!(
        keys.validate(
            &token,
            Audience::Rest {
                path: "/api/hubs/chat/connections/c2"
            },
            0
        )
        .is_err()
    );
}

#[test]
fn dot_segments_are_refused() {
    assert!(matches!(
        segment("."),
        Err(ManagementError::InvalidArgument(_))
    ));
    assert!(matches!(
        segment(".."),
        Err(ManagementError::InvalidArgument(_))
    ));
    assert_eq!(segment("...").unwrap(), "...");
}

#[test]
fn arguments_follow_the_sdk_rule() {
    let text = |v: Vec<u8>| String::from_utf8(v).unwrap();
    assert_eq!(text(arguments_json(&(1, "x")).unwrap()), r#"[1,"x"]"#);
    assert_eq!(text(arguments_json(&()).unwrap()), "[]");
    assert_eq!(text(arguments_json(&"hello").unwrap()), r#"["hello"]"#);
    assert_eq!(
        text(arguments_json(&json!({"a": 1})).unwrap()),
        r#"[{"a":1}]"#
    );
    assert_eq!(
        text(arguments_json(&vec![json!(1), json!(null)]).unwrap()),
        "[1,null]"
    );
    assert_eq!(text(arguments_json(&(vec![1, 2],)).unwrap()), "[[1,2]]");
    let raw: Vec<Box<serde_json::value::RawValue>> =
        serde_json::from_str(r#"[ {"z":1,"a":2} , 1.50 ]"#).unwrap();
    assert_eq!(
        text(arguments_json(&raw).unwrap()),
        r#"[{"z":1,"a":2},1.50]"#
    );

    let body = send_body("new \"msg\"", b"[1]");
    assert_eq!(&body[..], br#"{"target":"new \"msg\"","arguments":[1]}"#);
    let parsed: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(parsed, json!({"target": "new \"msg\"", "arguments": [1]}));
}

#[test]
fn errors_carry_status_code_and_message() {
    let err = ManagementError::Service {
        status: 401,
        code: Some("Error.Unauthorized".into()),
        message: "Unauthorized: bad".into(),
    };
    assert_eq!(err.status(), Some(401));
    assert_eq!(err.error_code(), Some("Error.Unauthorized"));
    assert_eq!(
        err.to_string(),
        "the service answered 401 (Error.Unauthorized): Unauthorized: bad"
    );
    let bare = ManagementError::Service {
        status: 500,
        code: None,
        message: "Internal Server Error".into(),
    };
    assert_eq!(
        bare.to_string(),
        "the service answered 500: Internal Server Error"
    );
    assert_eq!(ManagementError::InvalidArgument("x".into()).status(), None);
}

#[test]
fn answers_map_expected_not_found_to_false() {
    let answer =
        |status, code: Option<&str>| Answer::for_test(status, code.map(str::to_owned), "m".into());
    assert!(
        answer(200, None)
            .found(&["Warning.User.NotExisted"])
            .unwrap()
    );
    assert!(
        !answer(404, Some("Warning.User.NotExisted"))
            .found(&["Warning.User.NotExisted"])
            .unwrap()
    );
    let other = answer(404, Some("Error.NotFound"))
        .found(&["Warning.User.NotExisted"])
        .unwrap_err();
    assert_eq!(other.error_code(), Some("Error.NotFound"));
    assert!(
        answer(404, None)
            .found(&["Warning.User.NotExisted"])
            .is_err()
    );
    assert!(answer(401, None).found(&[]).is_err());
    assert_eq!(answer(202, None).success().unwrap(), 202);
    assert_eq!(answer(400, None).success().unwrap_err().status(), Some(400));
}

#[tokio::test]
async fn invalid_names_are_refused_before_any_request() {
    // Nothing listens on port 9: any request would be a connection error, not InvalidArgument.
    let mgr = ManagementClient::new(cs("Endpoint=http://127.0.0.1;Port=9;AccessKey=k")).unwrap();
    let bad = mgr.hub("1chat");
    let err = bad.send_all("t", (), &[]).await.unwrap_err();
    assert!(
        matches!(err, ManagementError::InvalidArgument(ref m) if m.contains("hub name")),
        "{err}"
    );
    let bad_app = mgr.hub_with_application("my app", "chat");
    let err = bad_app.user_exists("u").await.unwrap_err();
    assert!(
        matches!(err, ManagementError::InvalidArgument(ref m) if m.contains("application name")),
        "{err}"
    );

    let hub = mgr.hub("chat");
    for err in [
        hub.send_all("", (), &[]).await.unwrap_err(),
        hub.send_user("", "t", ()).await.unwrap_err(),
        hub.send_groups(&["ok", " "], "t", ()).await.unwrap_err(),
        hub.send_connection("", "t", ()).await.unwrap_err(),
        hub.add_to_group("c", "").await.unwrap_err(),
        hub.close_connection("", None).await.unwrap_err(),
        hub.is_user_in_group("", "g").await.unwrap_err(),
        hub.send_user("..", "t", ()).await.unwrap_err(),
    ] {
        assert!(matches!(err, ManagementError::InvalidArgument(_)), "{err}");
    }
    // Empty recipient lists send nothing.
    assert_eq!(
        hub.send_users(&[], "t", ()).await.unwrap(),
        Accepted { status: None }
    );
    // A real request to a closed port is an HTTP error.
    let err = hub.send_all("t", (), &[]).await.unwrap_err();
    assert!(matches!(err, ManagementError::Http(_)), "{err}");
    assert!(!mgr.is_healthy().await);
}

#[test]
fn hub_names_client_tokens_and_negotiate() {
    let mgr = ManagementClient::new(cs(CS)).unwrap();
    assert_eq!(mgr.transport(), Transport::Rest);
    let hub = mgr.hub_with_application("App", "Chat");
    assert_eq!(hub.name(), "app_chat");

    let token = hub.generate_client_token(
        Some("alice"),
        &[("role", "admin")],
        Duration::from_secs(600),
    );
    let keys = AccessKeys::new(vec!["mgmt-key".into()]);
    let id = keys
        .validate(&token, Audience::Client { hub: "app_chat" }, 0)
        .expect("client token");
    assert_eq!(id.user_id.as_deref(), Some("alice"));
    assert_eq!(id.claim("role"), Some("admin"));

    let neg = hub.negotiate(None, &[], Duration::from_secs(60));
    assert_eq!(neg.url, "http://127.0.0.1:8080/client/?hub=app_chat");
    let body: serde_json::Value = serde_json::from_str(&neg.to_json()).unwrap();
    assert_eq!(body["url"], json!(neg.url));
    assert_eq!(body["accessToken"], json!(neg.access_token));
    assert!(neg.to_json().starts_with(r#"{"url":"#));
    let anonymous = keys
        .validate(&neg.access_token, Audience::Client { hub: "app_chat" }, 0)
        .unwrap();
    assert_eq!(anonymous.user_id, None);

    assert!(!format!("{mgr:?}").contains("mgmt-key"));
    assert_eq!(ttl_seconds(Duration::from_millis(2500)), 2);
    assert_eq!(ttl_seconds(Duration::from_secs(u64::MAX)), i32::MAX as u64);
}
