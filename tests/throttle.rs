//! Per-tenant limits (`[throttle]`): concurrent client connections per user id and per token,
//! and negotiations per second per client address, answered 429 with Azure's error body and
//! counted in `switchboard_throttled_total{by=...}`; other tenants are not affected, and a
//! connection that ends gives its place back.

mod common;

use std::time::Duration;

use anyhow::Result;
use serde_json::json;
use switchboard::ServiceMode;
use tokio_tungstenite::tungstenite;

use common::{
    Reply, TestClient, client_token, client_token_with, config, negotiate, negotiate_raw,
    send_within, start_with, ws,
};

/// How long a test waits for something before failing.
const GUARD: Duration = Duration::from_secs(20);

fn assert_throttled(r: &Reply, subject: &str) {
    assert_eq!(r.status, 429, "{}", r.text());
    assert_eq!(r.error_code(), Some("Error.TooManyRequests"));
    let body = r.json();
    assert_eq!(body["code"], "Error.TooManyRequests");
    let message = body["message"].as_str().unwrap_or("");
    assert!(message.contains(subject), "{message}");
}

/// The HTTP status of a refused WebSocket upgrade.
fn refused_upgrade(result: Result<ws::Ws, tungstenite::Error>) -> u16 {
    match result {
        Err(tungstenite::Error::Http(resp)) => resp.status().as_u16(),
        Err(e) => panic!("the upgrade failed otherwise: {e}"),
        Ok(_) => panic!("the upgrade was accepted"),
    }
}

#[tokio::test]
async fn a_user_at_its_connection_limit_is_refused_while_others_connect() -> Result<()> {
    let mut c = config(ServiceMode::Serverless);
    c.throttle.max_connections_per_user = 2;
    let (handle, base, key) = start_with(c).await;
    let alice = client_token(&key, "chat", Some("alice"));
    let bob = client_token(&key, "chat", Some("bob"));

    let a1 = TestClient::connect(&base, "chat", &alice, "json").await?;
    // Two negotiations while one place is left: the place is taken at connect, once.
    let n1 = negotiate(&base, "chat", &alice, "&negotiateVersion=1").await;
    let n2 = negotiate(&base, "chat", &alice, "&negotiateVersion=1").await;
    let a2 = ws::open(
        &base,
        &format!("hub=chat&id={}", n1["connectionToken"].as_str().unwrap()),
        Some(&alice),
    )
    .await?;
    let third = ws::open(
        &base,
        &format!("hub=chat&id={}", n2["connectionToken"].as_str().unwrap()),
        Some(&alice),
    )
    .await;
    assert_eq!(refused_upgrade(third), 429);

    // Negotiate, and a connect that skips negotiate, refuse the user now.
    let r = negotiate_raw(&base, "chat", Some(&alice), "&negotiateVersion=1").await;
    assert_throttled(&r, "this user");
    assert_eq!(
        refused_upgrade(ws::open(&base, "hub=chat", Some(&alice)).await),
        429
    );

    // Another user is not affected.
    let b1 = TestClient::connect(&base, "chat", &bob, "json").await?;
    assert_eq!(
        handle
            .metrics()
            .get("switchboard_throttled_total{by=\"user\"}"),
        Some(3)
    );

    // A connection that ends gives its place back.
    a1.close().await;
    let deadline = tokio::time::Instant::now() + GUARD;
    loop {
        let r = negotiate_raw(&base, "chat", Some(&alice), "&negotiateVersion=1").await;
        if r.status == 200 {
            break;
        }
        assert_throttled(&r, "this user");
        assert!(
            tokio::time::Instant::now() < deadline,
            "alice's place never came back"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let a3 = TestClient::connect(&base, "chat", &alice, "json").await?;
    drop((a2, a3, b1));
    handle.stop().await;
    Ok(())
}

#[tokio::test]
async fn one_token_holds_at_most_its_connections() -> Result<()> {
    let mut c = config(ServiceMode::Serverless);
    c.throttle.max_connections_per_token = 1;
    let (handle, base, key) = start_with(c).await;
    let token = client_token(&key, "chat", None);
    let first = TestClient::connect(&base, "chat", &token, "json").await?;
    let r = negotiate_raw(&base, "chat", Some(&token), "&negotiateVersion=1").await;
    assert_throttled(&r, "this access token");
    // The same (anonymous) client with a token of its own, told apart by a random claim as
    // Azure advises for ThrottleByJwtSignature.
    let other = client_token_with(&key, "chat", &json!({"nonce": "7f3c"}));
    let second = TestClient::connect(&base, "chat", &other, "json").await?;
    assert_eq!(
        handle
            .metrics()
            .get("switchboard_throttled_total{by=\"signature\"}"),
        Some(1)
    );
    drop((first, second));
    handle.stop().await;
    Ok(())
}

/// Negotiate as a new user each time (so only the address limit can refuse), with
/// `forwarded_for` as `X-Forwarded-For`.
async fn negotiate_from(base: &str, key: &str, n: usize, forwarded_for: &str) -> Reply {
    let token = client_token(key, "chat", Some(&format!("user{n}")));
    let req = reqwest::Client::new()
        .post(format!(
            "{base}/client/negotiate?hub=chat&negotiateVersion=1"
        ))
        .bearer_auth(token)
        .header("x-forwarded-for", forwarded_for);
    send_within(req, GUARD, "negotiate").await
}

/// Negotiate from `forwarded_for` until refused; returns how many were admitted first.
async fn negotiate_until_refused(base: &str, key: &str, forwarded_for: &str) -> usize {
    for n in 0..200 {
        let r = negotiate_from(base, key, n, forwarded_for).await;
        if r.status != 200 {
            assert_throttled(&r, "this client address");
            return n;
        }
    }
    panic!("200 negotiations from one address in a row were admitted");
}

#[tokio::test]
async fn negotiations_per_second_per_address_ignore_forwarded_for_by_default() -> Result<()> {
    let mut c = config(ServiceMode::Serverless);
    c.throttle.max_negotiations_per_sec_per_ip = 3;
    let (handle, base, key) = start_with(c).await;
    // A client that names a new address in every request is still one peer address.
    let mut admitted = 0;
    let mut refused = false;
    for n in 0..200 {
        let r = negotiate_from(&base, &key, n, &format!("10.0.{}.{}", n / 250, n % 250)).await;
        if r.status != 200 {
            assert_throttled(&r, "this client address");
            refused = true;
            break;
        }
        admitted += 1;
    }
    assert!(refused, "the address was never limited");
    assert!(admitted >= 3, "only {admitted} admitted before the refusal");
    assert!(
        handle
            .metrics()
            .get("switchboard_throttled_total{by=\"ip\"}")
            .is_some_and(|n| n >= 1)
    );
    handle.stop().await;
    Ok(())
}

#[tokio::test]
async fn negotiations_per_second_per_forwarded_address_when_trusted() -> Result<()> {
    let mut c = config(ServiceMode::Serverless);
    c.throttle.max_negotiations_per_sec_per_ip = 3;
    c.throttle.trust_forwarded_for = true;
    let (handle, base, key) = start_with(c).await;
    let admitted = negotiate_until_refused(&base, &key, "192.0.2.1, 10.0.0.1").await;
    assert!(admitted >= 3, "only {admitted} admitted before the refusal");
    // Another client behind the same proxy is not affected.
    let r = negotiate_from(&base, &key, 5000, "192.0.2.1, 10.0.0.2").await;
    assert_eq!(r.status, 200, "{}", r.text());
    handle.stop().await;
    Ok(())
}
