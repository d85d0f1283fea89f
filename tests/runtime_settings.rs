//! Runtime changes without a restart: the admin endpoint, the `switchboard admin` CLI and
//! SIGHUP reloads; what happens to open connections.

mod common;

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use common::fake_server::FakeServer;
use common::{TestClient, client_token, now, sign, start};
use serde_json::{Value, json};
use switchboard::ServiceMode;
use switchboard::protocol::service::ConnectionType;

const T: Duration = Duration::from_secs(5);

fn admin_token(key: &str) -> String {
    sign(
        key,
        &json!({"aud": "http://127.0.0.1/admin/settings", "exp": now() + 600}),
    )
}

async fn admin(base: &str, key: &str, patch: Option<Value>) -> (u16, Value) {
    let client = reqwest::Client::new();
    let url = format!("{base}/admin/settings");
    let req = match patch {
        Some(p) => client.patch(url).json(&p),
        None => client.get(url),
    };
    let r = req.bearer_auth(admin_token(key)).send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn admin_endpoint_reads_and_changes_mode_and_keys() -> Result<()> {
    let (sb, base, key) = start(ServiceMode::Default).await;
    let (status, settings) = admin(&base, &key, None).await;
    assert_eq!(status, 200);
    assert_eq!(
        settings,
        json!({"mode": "default", "accessKeys": {"count": 1}, "upstream": []})
    );
    // Only admin tokens: a REST or client token is refused.
    let r = reqwest::Client::new()
        .get(format!("{base}/admin/settings"))
        .bearer_auth(client_token(&key, "chat", None))
        .send()
        .await?;
    assert_eq!(r.status(), 401);
    // Bad input is refused as a whole.
    let (status, body) = admin(&base, &key, Some(json!({"mode": "turbo"}))).await;
    assert_eq!(status, 400, "{body}");
    let (status, _) = admin(&base, &key, Some(json!({"accessKeys": []}))).await;
    assert_eq!(status, 400);
    let (status, _) = admin(&base, &key, Some(json!({"colour": "red"}))).await;
    assert_eq!(status, 400);

    // Default mode without a server refuses clients; after switching to Serverless they connect.
    let token = client_token(&key, "chat", None);
    assert!(
        TestClient::connect(&base, "chat", &token, "json")
            .await
            .is_err()
    );
    let (status, settings) = admin(&base, &key, Some(json!({"mode": "serverless"}))).await;
    assert_eq!((status, &settings["mode"]), (200, &json!("serverless")));
    let mut client = TestClient::connect(&base, "chat", &token, "json").await?;

    // Key rotation: the new key works, the old one stops working, open connections stay.
    let new_key = "rotated-key-0123456789abcdefghijklmnopqrstuvwxyz";
    let (status, settings) = admin(&base, &key, Some(json!({"accessKeys": [new_key]}))).await;
    assert_eq!((status, &settings["accessKeys"]["count"]), (200, &json!(1)));
    assert!(
        TestClient::connect(&base, "chat", &client_token(&key, "chat", None), "json")
            .await
            .is_err()
    );
    let _fresh =
        TestClient::connect(&base, "chat", &client_token(new_key, "chat", None), "json").await?;
    let (status, _) = admin(&base, &key, None).await;
    assert_eq!(
        status, 401,
        "the old key no longer opens the admin endpoint"
    );
    let r = common::Rest::new(&base, new_key)
        .post_json(
            "/api/hubs/chat/:send",
            &json!({"target": "after", "arguments": [1]}),
        )
        .await;
    assert_eq!(r.status, 202);
    assert_eq!(client.expect_invocation("after", T).await?, json!([1]));
    sb.stop().await;
    Ok(())
}

#[tokio::test]
async fn switching_to_serverless_closes_hub_servers_and_their_clients() -> Result<()> {
    let (sb, base, key) = start(ServiceMode::Default).await;
    let mut server =
        FakeServer::connect(&base, &key, "chat", "srv-1", ConnectionType::Default).await?;
    let mut weak = FakeServer::connect(&base, &key, "chat", "mgmt", ConnectionType::Weak).await?;
    let token = client_token(&key, "chat", None);
    let base2 = base.clone();
    let task =
        tokio::spawn(async move { TestClient::connect(&base2, "chat", &token, "json").await });
    server.accept_client().await?;
    let mut routed = task.await??;

    let (status, _) = admin(&base, &key, Some(json!({"mode": "serverless"}))).await;
    assert_eq!(status, 200);
    // The server connection is closed, and with it its client.
    let mut server_closed = false;
    for _ in 0..10 {
        match server.next().await {
            Err(_) => {
                server_closed = true;
                break;
            }
            Ok(_) => continue,
        }
    }
    assert!(
        server_closed,
        "the Default server connection must be closed"
    );
    let close = routed.next_close(T).await?;
    assert!(
        close["error"].as_str().unwrap_or("").contains("app server"),
        "{close}"
    );
    // The Weak connection stays and can still send.
    let mut client =
        TestClient::connect(&base, "chat", &client_token(&key, "chat", None), "json").await?;
    weak.send(
        &switchboard::protocol::service::ServiceMessage::BroadcastData {
            excluded_list: vec![],
            payloads: vec![(
                "json".into(),
                bytes::Bytes::from_static(b"{\"type\":1,\"target\":\"w\",\"arguments\":[]}\x1e"),
            )],
            extensions: Default::default(),
        },
    )
    .await?;
    assert_eq!(client.expect_invocation("w", T).await?, json!([]));
    sb.stop().await;
    Ok(())
}

#[test]
fn admin_cli_and_sighup_reload() -> Result<()> {
    let bin = env!("CARGO_BIN_EXE_switchboard");
    let dir = std::env::temp_dir().join(format!("switchboard-reload-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let config = dir.join("switchboard.toml");
    let key = "reload-test-key-0123456789abcdefghijklmnopqr";
    std::fs::write(
        &config,
        format!("listen = \"127.0.0.1:0\"\nmode = \"serverless\"\naccess_keys = [\"{key}\"]\n"),
    )?;
    let mut child = Command::new(bin)
        .args(["serve", "--config", config.to_str().context("path")?])
        .env_remove("SWITCHBOARD_MODE")
        .env_remove("SWITCHBOARD_ACCESS_KEY")
        .env_remove("SWITCHBOARD_LISTEN")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let mut lines = BufReader::new(child.stdout.take().context("stdout")?).lines();
    let listening = lines.next().context("no output")??;
    let url = listening
        .strip_prefix("Listening on ")
        .context("listen line")?
        .to_owned();
    let run = |args: &[&str]| -> Result<Value> {
        let out = Command::new(bin)
            .args([
                "admin",
                "--connection-string",
                &common::connection_string(&url, key),
            ])
            .args(args)
            .output()?;
        if !out.status.success() {
            bail!("admin failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(serde_json::from_slice(&out.stdout)?)
    };
    let result = (|| -> Result<()> {
        assert_eq!(run(&[])?["mode"], "serverless");
        assert_eq!(run(&["--mode", "classic"])?["mode"], "classic");
        let with_upstream = run(&["--set-upstream", "http://127.0.0.1:9/{hub}?code=fn-key-1"])?;
        // Applied, and shown without its query values (a Functions key).
        assert_eq!(
            with_upstream["upstream"][0]["url_template"],
            "http://127.0.0.1:9/{hub}?code=***"
        );
        assert!(!with_upstream.to_string().contains("fn-key-1"));
        assert!(!run(&[])?.to_string().contains("fn-key-1"));
        assert_eq!(run(&["--clear-upstream"])?["upstream"], json!([]));
        // Edit the file and send SIGHUP: the file's mode is applied.
        std::fs::write(
            &config,
            format!("listen = \"127.0.0.1:0\"\nmode = \"default\"\naccess_keys = [\"{key}\"]\n"),
        )?;
        let status = Command::new("kill")
            .args(["-HUP", &child.id().to_string()])
            .status()?;
        assert!(status.success());
        for _ in 0..50 {
            if run(&[])?["mode"] == "default" {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        bail!("SIGHUP did not apply the edited configuration")
    })();
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
    result
}
