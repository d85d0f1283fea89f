//! The admin plane apart from the data plane: `admin_listen` (a second listener for `/admin`
//! and `/metrics`, which the public one then does not serve) and `admin_key` (admin tokens
//! signed with their own key). The official client beside a private admin port is in
//! `tests/e2e/admin-plane.test.mjs`.

mod common;

use std::time::Duration;

use serde_json::json;
use switchboard::{ServiceMode, Switchboard, SwitchboardHandle};

const WAIT: Duration = Duration::from_secs(10);

/// A broker with its admin plane on a second listener; the public and admin base URLs and the
/// access key.
fn start_apart(admin_key: Option<&str>) -> (SwitchboardHandle, String, String, String) {
    let public = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let admin = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut config = common::config(ServiceMode::Serverless);
    config.listen = public.local_addr().unwrap();
    config.admin_listen = Some(admin.local_addr().unwrap());
    config.access_keys = vec![common::TEST_KEY.to_owned()];
    config.admin_key = admin_key.map(str::to_owned);
    config.workers = 2;
    let handle = Switchboard::new(config)
        .unwrap()
        .admin_listener(admin)
        .start(public)
        .unwrap();
    let base = format!("http://{}", handle.local_addr());
    let admin = format!("http://{}", handle.admin_addr().expect("an admin listener"));
    (handle, base, admin, common::TEST_KEY.to_owned())
}

async fn status(request: reqwest::RequestBuilder) -> (u16, String) {
    let response = tokio::time::timeout(WAIT, request.send())
        .await
        .expect("answered in time")
        .expect("answered");
    let status = response.status().as_u16();
    (status, response.text().await.unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_and_metrics_are_served_on_the_admin_listener_only() {
    let (handle, base, admin, key) = start_apart(None);
    let http = reqwest::Client::new();
    let admin_token = common::rest_token(&key, "/admin/settings");

    // The public listener: the data plane and health, no admin, no metrics.
    let settings = status(
        http.get(format!("{base}/admin/settings"))
            .bearer_auth(&admin_token),
    )
    .await;
    assert_eq!(settings.0, 404, "{}", settings.1);
    assert!(settings.1.contains("Error.NotFound"), "{}", settings.1);
    assert_eq!(status(http.get(format!("{base}/metrics"))).await.0, 404);
    assert_eq!(status(http.get(format!("{base}/healthz"))).await.0, 200);
    let path = "/api/v1/hubs/chat";
    let rest = http
        .post(format!("{base}{path}"))
        .bearer_auth(common::rest_token(&key, path))
        .json(&json!({ "target": "news", "arguments": [] }));
    assert_eq!(status(rest).await.0, 202);

    // The admin listener: admin, metrics and health, no data plane.
    let settings = status(
        http.get(format!("{admin}/admin/settings"))
            .bearer_auth(&admin_token),
    )
    .await;
    assert_eq!(settings.0, 200, "{}", settings.1);
    assert!(settings.1.contains("\"mode\""), "{}", settings.1);
    let metrics = status(http.get(format!("{admin}/metrics"))).await;
    assert_eq!(metrics.0, 200);
    assert!(metrics.1.contains("# TYPE switchboard_"), "{}", metrics.1);
    assert_eq!(status(http.get(format!("{admin}/readyz"))).await.0, 200);
    let rest = http
        .post(format!("{admin}{path}"))
        .bearer_auth(common::rest_token(&key, path))
        .json(&json!({ "target": "news", "arguments": [] }));
    assert_eq!(
        status(rest).await.0,
        404,
        "the REST API is not on the admin listener"
    );
    let negotiate = http
        .post(format!("{admin}/client/negotiate?hub=chat"))
        .bearer_auth(common::client_token(&key, "chat", None));
    assert_eq!(status(negotiate).await.0, 404);
    handle.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_an_admin_key_only_it_opens_the_admin_api_and_nothing_else() {
    let admin_key = "admin-key-0123456789abcdefghijklmnopqrstuvwxyz";
    let (handle, base, admin, key) = start_apart(Some(admin_key));
    let http = reqwest::Client::new();
    let settings = |signing_key: &str| {
        http.get(format!("{admin}/admin/settings"))
            .bearer_auth(common::rest_token(signing_key, "/admin/settings"))
    };
    let refused = status(settings(&key)).await;
    assert_eq!(
        refused.0, 401,
        "an access key no longer opens /admin: {}",
        refused.1
    );
    assert_eq!(status(settings(admin_key)).await.0, 200);

    let path = "/api/v1/hubs/chat";
    let rest = |signing_key: &str| {
        http.post(format!("{base}{path}"))
            .bearer_auth(common::rest_token(signing_key, path))
            .json(&json!({ "target": "news", "arguments": [] }))
    };
    assert_eq!(
        status(rest(admin_key)).await.0,
        401,
        "the admin key opens nothing else"
    );
    assert_eq!(status(rest(&key)).await.0, 202);
    handle.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_listen_in_the_configuration_is_bound_by_start() {
    let mut config = common::config(ServiceMode::Serverless);
    config.admin_listen = Some("127.0.0.1:0".parse().unwrap());
    let (handle, base, _key) = common::start_with(config).await;
    let admin = handle.admin_addr().expect("the admin listener was bound");
    let http = reqwest::Client::new();
    assert_eq!(
        status(http.get(format!("http://{admin}/metrics"))).await.0,
        200
    );
    assert_eq!(status(http.get(format!("{base}/metrics"))).await.0, 404);
    handle.stop().await;
}
