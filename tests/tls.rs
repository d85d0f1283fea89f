//! TLS on the listener (`[tls]`, `--tls-cert`/`--tls-key`): HTTPS and WSS with a certificate
//! from a CA minted here, plain HTTP on the TLS port, certificate reloads, bad files.
//! The official JavaScript client over `wss://`, SSE and long polling over `https://` are in
//! `tests/e2e/tls.test.mjs`.

mod common;

use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use switchboard::config::TlsConfig;
use switchboard::telemetry::names;
use switchboard::{ServiceMode, Switchboard, SwitchboardHandle};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;

use common::tls::{Issued, TestCa, temp_dir};

const WAIT: Duration = Duration::from_secs(10);

fn tls_config(issued: &Issued) -> TlsConfig {
    TlsConfig {
        cert_file: Some(issued.cert.clone()),
        key_file: Some(issued.key.clone()),
    }
}

/// A serverless broker serving TLS with `issued`; its `https://127.0.0.1:<port>` base.
async fn start_tls(issued: &Issued) -> (SwitchboardHandle, String, String) {
    let mut config = common::config(ServiceMode::Serverless);
    config.tls = tls_config(issued);
    // Room for the large messages of the first test while its client does not read.
    config.limits.outbox_max_bytes = 16 * 1024 * 1024;
    let (handle, _, key) = common::start_with(config).await;
    let base = format!("https://{}", handle.local_addr());
    (handle, base, key)
}

type Wss =
    tokio_tungstenite::WebSocketStream<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>;

/// Negotiate over HTTPS and open the client's WebSocket over TLS (JSON protocol, handshake
/// done).
async fn connect_wss(
    ca: &TestCa,
    handle: &SwitchboardHandle,
    base: &str,
    key: &str,
    hub: &str,
) -> Wss {
    let token = common::client_token(key, hub, Some("alice"));
    let negotiated: Value = ca
        .http()
        .post(format!(
            "{base}/client/negotiate?hub={hub}&negotiateVersion=1"
        ))
        .bearer_auth(&token)
        .send()
        .await
        .expect("negotiate over https")
        .json()
        .await
        .expect("negotiate JSON");
    let id = negotiated["connectionToken"]
        .as_str()
        .expect("connection token");
    // A small window: the broker's socket fills after a few hundred kilobytes unread.
    let tls = ca
        .connect_with_window(handle.local_addr(), Some(32 * 1024))
        .await
        .expect("TLS handshake");
    let port = handle.local_addr().port();
    let mut request = format!("wss://localhost:{port}/client/?hub={hub}&id={id}")
        .into_client_request()
        .expect("request");
    request.headers_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("header"),
    );
    let (mut ws, _) = tokio_tungstenite::client_async(request, tls)
        .await
        .expect("WebSocket upgrade over TLS");
    ws.send(Message::text(common::JSON_HANDSHAKE))
        .await
        .expect("handshake");
    let answer = tokio::time::timeout(WAIT, ws.next())
        .await
        .expect("handshake answer in time")
        .expect("handshake answer")
        .expect("handshake answer frame");
    assert_eq!(answer.into_text().expect("text").as_str(), "{}\u{1e}");
    ws
}

/// The next invocation's arguments (pings skipped).
async fn next_invocation(ws: &mut Wss) -> Value {
    loop {
        let frame = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("a message in time")
            .expect("the stream is open")
            .expect("a frame");
        let text = frame.into_text().expect("a text frame");
        for record in common::json_records(text.as_bytes()) {
            if record["type"] == 1 {
                return record["arguments"].clone();
            }
        }
    }
}

async fn broadcast(ca: &TestCa, base: &str, key: &str, hub: &str, args: Value) {
    let path = format!("/api/v1/hubs/{hub}");
    let status = ca
        .http()
        .post(format!("{base}{path}"))
        .bearer_auth(common::rest_token(key, &path))
        .json(&json!({ "target": "news", "arguments": args }))
        .send()
        .await
        .expect("REST over https")
        .status();
    assert_eq!(status, 202);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_and_wss_serve_rest_negotiate_and_websocket_clients() {
    let dir = temp_dir("sb-tls");
    let ca = TestCa::new("Switchboard test CA");
    let issued = ca.issue(&dir, "server");
    let (handle, base, key) = start_tls(&issued).await;
    assert_eq!(handle.endpoint(), base, "the public endpoint says https");
    assert!(
        handle
            .connection_string()
            .starts_with("Endpoint=https://127.0.0.1;Port="),
        "{}",
        handle.connection_string()
    );
    let health = ca
        .http()
        .get(format!("{base}/healthz"))
        .send()
        .await
        .expect("health over https");
    assert_eq!(health.status(), 200);

    let mut ws = connect_wss(&ca, &handle, &base, &key, "chat").await;
    broadcast(&ca, &base, &key, "chat", json!(["hello over TLS"])).await;
    assert_eq!(next_invocation(&mut ws).await, json!(["hello over TLS"]));

    // Messages far larger than the socket's buffers, sent while the client does not read:
    // the broker's writes stop half-way with ciphertext left in the session, and must go on
    // from there, whole and in order.
    let big: String = (0..300_000)
        .map(|i| (b'a' + (i % 26) as u8) as char)
        .collect();
    for i in 0..24 {
        broadcast(&ca, &base, &key, "chat", json!([i, big])).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    for i in 0..24 {
        assert_eq!(
            next_invocation(&mut ws).await,
            json!([i, big]),
            "message {i}"
        );
    }
    handle.stop().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_on_the_tls_port_gets_a_400_that_says_https() {
    let dir = temp_dir("sb-tls");
    let ca = TestCa::new("Switchboard test CA");
    let (handle, _, _) = start_tls(&ca.issue(&dir, "server")).await;
    let mut tcp = tokio::net::TcpStream::connect(handle.local_addr())
        .await
        .expect("connect");
    tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .expect("request");
    let mut answer = String::new();
    tokio::time::timeout(WAIT, tcp.read_to_string(&mut answer))
        .await
        .expect("answered and closed in time")
        .expect("read");
    assert!(answer.starts_with("HTTP/1.1 400 "), "{answer}");
    assert!(answer.contains("application/json"), "{answer}");
    let body: Value = serde_json::from_str(answer.split("\r\n\r\n").nth(1).expect("a body"))
        .expect("a JSON body");
    assert!(
        body["message"].as_str().unwrap_or("").contains("https://"),
        "{body}"
    );
    drop(tcp);
    let deadline = tokio::time::Instant::now() + WAIT;
    while handle.metrics().get(names::tls_handshake_failures) != Some(1) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the refusal is not counted in tls_handshake_failures"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The broker still serves TLS.
    let health = ca
        .http()
        .get(format!("https://{}/healthz", handle.local_addr()))
        .send()
        .await
        .expect("health over https");
    assert_eq!(health.status(), 200);
    handle.stop().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reloaded_certificate_serves_new_connections_and_keeps_the_old_ones() {
    let dir = temp_dir("sb-tls");
    let first = TestCa::new("first CA");
    let second = TestCa::new("second CA");
    let (handle, base, key) = start_tls(&first.issue(&dir, "first")).await;
    let mut ws = connect_wss(&first, &handle, &base, &key, "chat").await;

    // A certificate that does not fit its key changes nothing.
    let a = first.issue(&dir, "a");
    let b = first.issue(&dir, "b");
    let mismatched = TlsConfig {
        cert_file: Some(a.cert),
        key_file: Some(b.key),
    };
    let err = handle.control().reload_tls(&mismatched).unwrap_err();
    assert_eq!(err.key, "tls.key_file", "{err}");
    assert!(first.connect(handle.local_addr()).await.is_ok());

    handle
        .control()
        .reload_tls(&tls_config(&second.issue(&dir, "second")))
        .expect("reload");
    assert!(
        first.connect(handle.local_addr()).await.is_err(),
        "a new connection still gets the first certificate"
    );
    assert!(second.connect(handle.local_addr()).await.is_ok());
    broadcast(&second, &base, &key, "chat", json!(["after the reload"])).await;
    assert_eq!(
        next_invocation(&mut ws).await,
        json!(["after the reload"]),
        "the connection made before the reload goes on"
    );
    handle.stop().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn bad_certificate_files_are_refused_at_start_naming_the_setting() {
    let dir = temp_dir("sb-tls");
    let ca = TestCa::new("Switchboard test CA");
    let good = ca.issue(&dir, "good");
    let other = ca.issue(&dir, "other");
    let garbage = dir.join("garbage.pem");
    std::fs::write(&garbage, "not a certificate\n").unwrap();
    let cases = [
        (
            Some(garbage.clone()),
            Some(good.key.clone()),
            "tls.cert_file",
        ),
        (Some(good.cert.clone()), Some(garbage), "tls.key_file"),
        (Some(good.cert.clone()), Some(other.key), "tls.key_file"),
        (
            Some(dir.join("missing.pem")),
            Some(good.key.clone()),
            "tls.cert_file",
        ),
        (Some(good.cert), None, "tls.key_file"),
    ];
    for (cert_file, key_file, key) in cases {
        let mut config = common::config(ServiceMode::Serverless);
        config.access_keys = vec![common::TEST_KEY.to_owned()];
        config.tls = TlsConfig {
            cert_file,
            key_file,
        };
        let err = Switchboard::new(config).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!("invalid configuration: {key}: ")),
            "{key}: {err}"
        );
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hub_server_and_the_management_client_connect_over_tls_with_a_ca_file() {
    use switchboard_sdk::management::{ManagementClient, ManagementOptions};
    use switchboard_sdk::{ConnectionString, Context, Hub, HubError, HubServer};

    let dir = temp_dir("sb-tls");
    let ca = TestCa::new("Switchboard test CA");
    let ca_file = ca.write_pem(&dir, "ca.pem");
    let mut config = common::config(ServiceMode::Default);
    config.tls = tls_config(&ca.issue(&dir, "server"));
    let (handle, _, key) = common::start_with(config).await;
    let base = format!("https://{}", handle.local_addr());
    let cs = ConnectionString::parse(&handle.connection_string()).expect("connection string");
    let hub = || {
        Hub::builder()
            .method("Echo", |ctx: Context, (text,): (String,)| async move {
                ctx.clients().caller().send("news", (&text,)).await?;
                Ok::<_, HubError>(())
            })
            .build()
    };

    // Without the CA file the service's certificate is not trusted: no connection comes up.
    let untrusting = HubServer::builder(cs.clone(), "chat", hub())
        .connection_count(1)
        .start()
        .expect("start");
    assert!(
        untrusting
            .wait_connected(1, Duration::from_millis(1500))
            .await
            .is_err()
    );
    untrusting.stop().await;

    let server = HubServer::builder(cs.clone(), "chat", hub())
        .connection_count(1)
        .ca_file(&ca_file)
        .start()
        .expect("start");
    server
        .wait_connected(1, WAIT)
        .await
        .expect("a server connection over wss://");

    // A client routed to that hub server over TLS, both ways.
    let mut ws = connect_wss(&ca, &handle, &base, &key, "chat").await;
    let invocation = json!({ "type": 1, "target": "Echo", "arguments": ["ping over TLS"] });
    ws.send(Message::text(format!("{invocation}\u{1e}")))
        .await
        .expect("invoke");
    assert_eq!(next_invocation(&mut ws).await, json!(["ping over TLS"]));

    // The management client's REST calls over https://.
    let management = ManagementClient::with_options(
        cs,
        ManagementOptions {
            ca_file: Some(ca_file),
            ..ManagementOptions::default()
        },
    )
    .expect("management client");
    management
        .hub("chat")
        .send_all("news", ("from the management client",), &[])
        .await
        .expect("send over https");
    assert_eq!(
        next_invocation(&mut ws).await,
        json!(["from the management client"])
    );
    server.stop().await;
    handle.stop().await;
    let _ = std::fs::remove_dir_all(dir);
}
