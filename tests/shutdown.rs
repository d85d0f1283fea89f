//! A graceful stop (SIGTERM, Ctrl-C, `BrokerControl::drain`): readiness and new connections
//! answer 503 at once, clients get a Close message allowing reconnect, the upstream
//! `disconnected` events are delivered before the stop ends, hub servers hear of their clients'
//! closes before their own connection closes, and the binary exits 0.

mod common;
#[path = "common/fake_upstream.rs"]
mod fake_upstream;

use std::process::Stdio;
use std::time::Duration;

use actix_web::HttpResponse;
use anyhow::{Context as _, Result, bail};
use common::fake_server::FakeServer;
use common::{TestClient, client_token, negotiate_raw, start_with};
use fake_upstream::{FakeUpstream, Gate, Recorded};
use serde_json::json;
use switchboard::protocol::service::{ConnectionType, ServiceMessage};
use switchboard::upstream::UpstreamRule;
use switchboard::{Config, ServiceMode};
use tokio::io::{AsyncBufReadExt as _, BufReader};

const T: Duration = Duration::from_secs(5);

/// Holds every `disconnected` event until the test releases it; answers the rest at once.
async fn hold_disconnected(r: Recorded, gate: Gate) -> HttpResponse {
    if r.path.ends_with("/disconnected") {
        gate.wait().await;
    }
    HttpResponse::Ok().finish()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_closes_clients_allowing_reconnect_and_delivers_their_disconnected_events()
-> Result<()> {
    let up = FakeUpstream::start(hold_disconnected);
    let (sb, base, key) = start_with(Config {
        mode: ServiceMode::Serverless,
        upstream: vec![UpstreamRule::from_template(&format!(
            "{}/{{hub}}/{{category}}/{{event}}",
            up.base
        ))],
        ..Config::default()
    })
    .await;
    let token = client_token(&key, "chat", Some("alice"));
    let mut client = TestClient::connect(&base, "chat", &token, "json").await?;
    up.wait_for("/connected").await?;

    let control = sb.control();
    let drain = tokio::spawn(async move { control.drain().await });

    let close = client.next_close(T).await?;
    assert_eq!(close["allowReconnect"], json!(true), "{close}");
    assert_eq!(
        close["error"],
        json!("Switchboard is shutting down."),
        "{close}"
    );

    // The stop waits for the held `disconnected` event; meanwhile this instance takes no one new.
    let event = up.wait_for("/disconnected").await?;
    assert_eq!(
        event.header_str("x-asrs-connection-id"),
        Some(client.connection_id())
    );
    let http = reqwest::Client::new();
    let ready = http.get(format!("{base}/readyz")).send().await?;
    assert_eq!(ready.status().as_u16(), 503);
    assert_eq!(
        ready.json::<serde_json::Value>().await?["status"],
        "stopping"
    );
    let refused = negotiate_raw(&base, "chat", Some(&token), "negotiateVersion=1").await;
    assert_eq!(refused.status, 503, "{}", refused.text());
    assert_eq!(refused.error_code(), Some("Error.ServiceUnavailable"));
    assert!(
        !drain.is_finished(),
        "the stop must wait for the disconnected event"
    );

    up.release(1);
    assert!(
        tokio::time::timeout(T, drain).await??,
        "the stop finished within its timeout"
    );
    sb.stop().await;
    up.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_tells_hub_servers_of_their_clients_before_closing_them() -> Result<()> {
    let (sb, base, key) = start_with(common::config(ServiceMode::Default)).await;
    let mut server =
        FakeServer::connect(&base, &key, "chat", "srv-1", ConnectionType::Default).await?;
    let token = client_token(&key, "chat", Some("bob"));
    let (base2, token2) = (base.clone(), token.clone());
    let client =
        tokio::spawn(async move { TestClient::connect(&base2, "chat", &token2, "json").await });
    let (id, ..) = server.accept_client().await?;
    let mut client = client.await??;

    let control = sb.control();
    let drain = tokio::spawn(async move { control.drain().await });
    let close = client.next_close(T).await?;
    assert_eq!(close["allowReconnect"], json!(true), "{close}");
    // The server hears of the client's close while its own connection is still open.
    loop {
        match server
            .next()
            .await
            .context("the hub server should hear of its client")?
        {
            ServiceMessage::CloseConnection { connection_id, .. } => {
                assert_eq!(connection_id, id);
                break;
            }
            ServiceMessage::ConnectionData { .. } => continue,
            other => bail!("expected CloseConnection, got {other:?}"),
        }
    }
    // Then the server connection itself closes: 1001 (going away) with the reason.
    assert_eq!(
        server.next_close().await?,
        (1001, "Switchboard is shutting down.".to_owned())
    );
    assert!(tokio::time::timeout(T, drain).await??);
    sb.stop().await;
    Ok(())
}

/// The binary on SIGTERM: the client gets its Close (allowing reconnect) and the process exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_closes_clients_and_exits_zero() -> Result<()> {
    let key = common::TEST_KEY;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["serve", "--listen", "127.0.0.1:0", "--mode", "serverless"])
        .args(["--access-key", key])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let stdout = child.stdout.take().context("stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let base = loop {
        let line = tokio::time::timeout(T, lines.next_line())
            .await??
            .context("the broker printed no address")?;
        if let Some(addr) = line.strip_prefix("Listening on ") {
            break addr.to_owned();
        }
    };
    let token = client_token(key, "chat", Some("carol"));
    let mut client = TestClient::connect(&base, "chat", &token, "json").await?;

    let pid = child.id().context("pid")?;
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()?;
    assert!(status.success());
    let close = client.next_close(T).await?;
    assert_eq!(close["allowReconnect"], json!(true), "{close}");
    let exit = tokio::time::timeout(Duration::from_secs(40), child.wait()).await??;
    assert_eq!(exit.code(), Some(0), "{exit:?}");
    Ok(())
}
