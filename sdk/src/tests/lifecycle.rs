//! Connection and client lifecycle against the fake service: upgrade request and handshake,
//! reconnects with back-off, keep-alive and timeouts on both levels, graceful shutdown,
//! on_connected / on_disconnected, and every way a client is closed.

use std::time::Duration;

use super::fake::{FakeService, KEY, WAIT};
use super::{Harness, invocation, test_hub, test_options};
use crate::client::NAME_IDENTIFIER;
use crate::protocol::auth::{AccessKeys, Audience};
use crate::protocol::service::{ConnectionType, Extensions, ServiceMessage};
use crate::protocol::{Close, HubMessage, HubProtocol, handshake};
use crate::{HubServer, HubServerOptions, SdkError};

#[tokio::test]
async fn connects_with_token_headers_and_handshake() {
    let (hub, _events) = test_hub();
    let mut service = FakeService::start(0).await;
    let server = HubServer::builder(service.connection_string(), "Chat", hub)
        .options(HubServerOptions {
            connection_count: 3,
            ..test_options()
        })
        .start()
        .unwrap();
    let mut cids = Vec::new();
    for _ in 0..3 {
        let conn = service.next_conn().await;
        let req = &conn.request;
        let (path, query) = req.path_and_query.split_once('?').unwrap();
        assert_eq!(path, "/server/");
        let (hub_param, cid) = query.split_once('&').unwrap();
        assert_eq!(hub_param, "hub=chat");
        let cid = cid.strip_prefix("cid=").unwrap().to_owned();
        assert_eq!(cid.len(), 36, "a GUID: {cid}");
        cids.push(cid);
        assert_eq!(req.headers["x-asrs-server-id"], "test-server");
        assert_eq!(req.headers["x-requested-with"], "XMLHttpRequest");
        assert!(req.headers["asrs-user-agent"].starts_with("switchboard-sdk/"));
        let token = req.headers["authorization"]
            .strip_prefix("Bearer ")
            .unwrap();
        let id = AccessKeys::new(vec![KEY.into()])
            .validate(token, Audience::Server { hub: "chat" }, 0)
            .unwrap();
        assert_eq!(id.claim("nameid"), Some("test-server"));
        assert_eq!(
            conn.handshake,
            ServiceMessage::HandshakeRequest {
                version: 1,
                connection_type: ConnectionType::Default,
                target: Some(String::new()),
                migration_level: 0,
                extensions: Extensions::default(),
                allow_stateful_reconnects: false,
            }
        );
    }
    cids.sort();
    cids.dedup();
    assert_eq!(cids.len(), 3, "a fresh cid per connection");
    server.wait_connected(3, WAIT).await.unwrap();
    assert_eq!(server.connected_count(), 3);
    assert_eq!(server.server_id(), "test-server");
}

#[tokio::test]
async fn weak_connections_say_so() {
    let (hub, _events) = test_hub();
    let mut service = FakeService::start(0).await;
    let _server = HubServer::builder(service.connection_string(), "chat", hub)
        .options(test_options())
        .weak(true)
        .start()
        .unwrap();
    let conn = service.next_conn().await;
    assert!(matches!(
        conn.handshake,
        ServiceMessage::HandshakeRequest {
            connection_type: ConnectionType::Weak,
            ..
        }
    ));
}

#[tokio::test]
async fn refused_handshakes_are_retried_with_backoff() {
    let (hub, _events) = test_hub();
    let mut service = FakeService::start(3).await;
    let started = std::time::Instant::now();
    let server = HubServer::builder(service.connection_string(), "chat", hub)
        .options(test_options())
        .start()
        .unwrap();
    let _conn = service.next_conn().await;
    server.wait_connected(1, WAIT).await.unwrap();
    assert_eq!(service.refusals_left(), 0);
    // Three failures: 20 + 40 + 80 ms of back-off at least.
    assert!(
        started.elapsed() >= Duration::from_millis(140),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn start_needs_a_runtime_and_wait_times_out() {
    let (hub, _events) = test_hub();
    let cs =
        crate::ConnectionString::parse("Endpoint=http://127.0.0.1;Port=1;AccessKey=k").unwrap();
    let builder = HubServer::builder(cs.clone(), "chat", hub.clone());
    let result = std::thread::spawn(move || builder.start().map(|_| ()))
        .join()
        .unwrap();
    assert_eq!(result, Err(SdkError::NoRuntime));

    let server = HubServer::builder(cs, "chat", hub)
        .options(test_options())
        .start()
        .unwrap();
    assert_eq!(
        server.wait_connected(1, Duration::from_millis(100)).await,
        Err(SdkError::ConnectTimeout(Duration::from_millis(100)))
    );
    assert_eq!(
        server.clients().all().send("x", ()).await,
        Err(SdkError::NotConnected)
    );
    server.stop().await;
    assert_eq!(
        server.clients().all().send("x", ()).await,
        Err(SdkError::Stopped)
    );
}

#[tokio::test]
async fn keep_alive_echo_and_server_timeout() {
    let mut h = Harness::start(HubServerOptions {
        keep_alive_interval: Duration::from_millis(40),
        server_timeout: Duration::from_millis(400),
        ..test_options()
    })
    .await;
    // Silence from the SDK's side is filled with [3] pings.
    assert!(!h.conn.sees(Duration::from_millis(250), |_| true).await);
    assert!(
        h.conn.keep_alives >= 2,
        "{} keep-alives",
        h.conn.keep_alives
    );
    // Echo pings come back unchanged.
    let echo = ServiceMessage::Ping {
        messages: vec!["echo".into(), "123".into()],
    };
    h.conn.send(&echo).await;
    h.conn.expect("echo", |m| *m == echo).await;
    // The fake service now says nothing: after 400 ms the SDK drops and reconnects.
    let started = std::time::Instant::now();
    let _second = h.service.next_conn().await;
    assert!(started.elapsed() >= Duration::from_millis(200));
    h.server.wait_connected(1, WAIT).await.unwrap();
}

#[tokio::test]
async fn graceful_shutdown_waits_for_finack() {
    let mut h = Harness::start(test_options()).await;
    h.conn.open_client("c1", HubProtocol::Json, &[], "").await;
    assert_eq!(h.event().await, "connected c1 -");
    let server = h.server.clone();
    let stop = tokio::spawn(async move { server.stop().await });
    let fin = ServiceMessage::Ping {
        messages: vec!["shutdown".into(), "fin:0".into()],
    };
    h.conn.expect("fin", |m| *m == fin).await;
    assert!(!stop.is_finished());
    h.conn
        .send(&ServiceMessage::Ping {
            messages: vec!["shutdown".into(), "finack".into()],
        })
        .await;
    h.conn.closed().await;
    tokio::time::timeout(WAIT, stop).await.unwrap().unwrap();
    assert_eq!(h.event().await, "disconnected c1 -");
    assert_eq!(h.server.connected_count(), 0);
}

#[tokio::test]
async fn shutdown_without_finack_is_bounded() {
    let h = Harness::start(HubServerOptions {
        shutdown_timeout: Duration::from_millis(200),
        ..test_options()
    })
    .await;
    let started = std::time::Instant::now();
    h.server.stop().await;
    assert!(started.elapsed() >= Duration::from_millis(150));
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn client_identity_and_disconnect_from_the_service() {
    let mut h = Harness::start(test_options()).await;
    h.conn
        .open_client(
            "c1",
            HubProtocol::Json,
            &[
                (NAME_IDENTIFIER, "alice"),
                ("role", "admin"),
                ("asrs.s.aut", "Bearer"),
            ],
            "?hub=chat&tag=x%20y",
        )
        .await;
    assert_eq!(h.event().await, "connected c1 alice");
    h.conn
        .client_send(
            "c1",
            HubProtocol::Json,
            &invocation(Some("1"), "WhoAmI", "[]"),
        )
        .await;
    let (_, v) = super::completion(&h.conn.client_recv("c1", HubProtocol::Json).await);
    assert_eq!(
        v["result"],
        serde_json::json!(["c1", "alice", "admin", "x y", "test", "json"])
    );
    assert_eq!(h.server.local_connection_ids(), vec!["c1".to_owned()]);
    h.conn
        .send(&ServiceMessage::CloseConnection {
            connection_id: "c1".into(),
            error_message: Some("transport failed".into()),
            headers: vec![],
            extensions: Extensions::default(),
        })
        .await;
    assert_eq!(h.event().await, "disconnected c1 transport failed");
    assert!(h.server.local_connection_ids().is_empty());
}

#[tokio::test]
async fn failed_on_connected_closes_without_on_disconnected() {
    let mut h = Harness::start(test_options()).await;
    h.conn
        .open_client("c1", HubProtocol::Json, &[], "reject=1")
        .await;
    assert_eq!(h.event().await, "connected c1 -");
    let close = h.conn.client_recv("c1", HubProtocol::Json).await;
    assert_eq!(
        close,
        HubMessage::Close(Close {
            error: Some("Connection closed with an error. HubException: no entry".into()),
            allow_reconnect: false,
        })
    );
    h.conn
        .expect("CloseConnection", |m| {
            matches!(m, ServiceMessage::CloseConnection { connection_id, error_message, .. }
                if connection_id == "c1" && error_message.as_deref() == Some("no entry"))
        })
        .await;
    assert!(
        tokio::time::timeout(Duration::from_millis(200), h.events.recv())
            .await
            .is_err(),
        "no on_disconnected after a failed on_connected"
    );
}

#[tokio::test]
async fn handshake_failures_answer_with_the_aspnet_texts() {
    let mut h = Harness::start(test_options()).await;
    let cases: [(&str, &[u8], &str); 3] = [
        (
            "a",
            b"{\"protocol\":\"xml\",\"version\":1}\x1e",
            "The protocol 'xml' is not supported.",
        ),
        (
            "b",
            b"{\"protocol\":\"json\",\"version\":3}\x1e",
            "The server does not support version 3 of the 'json' protocol.",
        ),
        ("c", b"{\"version\":1}\x1e", handshake::UNEXPECTED_ERROR),
    ];
    for (id, request, text) in cases {
        h.conn
            .send(&ServiceMessage::OpenConnection {
                connection_id: id.into(),
                claims: vec![],
                headers: vec![],
                query_string: None,
                extensions: Extensions::default(),
            })
            .await;
        h.conn
            .client_bytes(id, bytes::Bytes::from_static(request))
            .await;
        let answer = h.conn.client_payload(id).await;
        assert_eq!(answer, handshake::error_response(text));
        h.conn
            .expect("CloseConnection", |m| {
                matches!(m, ServiceMessage::CloseConnection { connection_id, .. } if connection_id == id)
            })
            .await;
    }
}

#[tokio::test]
async fn handshake_split_across_data_and_followed_by_messages() {
    let mut h = Harness::start(test_options()).await;
    h.conn
        .send(&ServiceMessage::OpenConnection {
            connection_id: "c1".into(),
            claims: vec![],
            headers: vec![],
            query_string: None,
            extensions: Extensions::default(),
        })
        .await;
    let mut bytes = handshake::encode_request("json", 1).to_vec();
    bytes.extend_from_slice(
        &HubProtocol::Json
            .encode(&invocation(Some("1"), "Echo", "[\"hi\"]"))
            .unwrap(),
    );
    let (a, b) = bytes.split_at(10);
    h.conn
        .client_bytes("c1", bytes::Bytes::copy_from_slice(a))
        .await;
    h.conn
        .client_bytes("c1", bytes::Bytes::copy_from_slice(b))
        .await;
    assert_eq!(
        &h.conn.client_payload("c1").await[..],
        handshake::RESPONSE_OK
    );
    let (id, v) = super::completion(&h.conn.client_recv("c1", HubProtocol::Json).await);
    assert_eq!((id.as_str(), v), ("1", serde_json::json!({"result": "hi"})));
}

/// Client bytes come as the client's transport cut them: here one byte per ConnectionData, so
/// every message waits in the client's buffer until it is whole (then a second one starts in the
/// same chunk as the end of the first).
#[tokio::test]
async fn messages_arriving_a_byte_at_a_time() {
    for protocol in [HubProtocol::Json, HubProtocol::MessagePack] {
        let mut h = Harness::start(test_options()).await;
        h.conn
            .send(&ServiceMessage::OpenConnection {
                connection_id: "c1".into(),
                claims: vec![],
                headers: vec![],
                query_string: None,
                extensions: Extensions::default(),
            })
            .await;
        let mut bytes = handshake::encode_request(protocol.name(), 1).to_vec();
        for id in ["1", "2"] {
            bytes.extend_from_slice(
                &protocol
                    .encode(&invocation(Some(id), "Echo", &format!("[\"hi {id}\"]")))
                    .unwrap(),
            );
        }
        let (first, last) = bytes.split_at(bytes.len() - 3);
        for byte in first {
            h.conn
                .client_bytes("c1", bytes::Bytes::copy_from_slice(&[*byte]))
                .await;
        }
        h.conn
            .client_bytes("c1", bytes::Bytes::copy_from_slice(last))
            .await;
        assert_eq!(
            &h.conn.client_payload("c1").await[..],
            handshake::RESPONSE_OK
        );
        for id in ["1", "2"] {
            let (got, v) = super::completion(&h.conn.client_recv("c1", protocol).await);
            assert_eq!(got, id, "{}", protocol.name());
            assert_eq!(v, serde_json::json!({"result": format!("hi {id}")}));
        }
    }
}

#[tokio::test]
async fn client_handshake_timeout() {
    let mut h = Harness::start(HubServerOptions {
        client_handshake_timeout: Duration::from_millis(100),
        ..test_options()
    })
    .await;
    h.conn
        .send(&ServiceMessage::OpenConnection {
            connection_id: "slow".into(),
            claims: vec![],
            headers: vec![],
            query_string: None,
            extensions: Extensions::default(),
        })
        .await;
    let answer = h.conn.client_payload("slow").await;
    assert_eq!(
        answer,
        handshake::error_response(handshake::HANDSHAKE_CANCELED)
    );
}

#[tokio::test]
async fn client_keep_alive_and_timeout() {
    let mut h = Harness::start(HubServerOptions {
        client_keep_alive_interval: Duration::from_millis(60),
        client_timeout: Duration::from_millis(300),
        ..test_options()
    })
    .await;
    for p in super::PROTOCOLS {
        let id = format!("c-{}", p.name());
        h.conn.open_client(&id, p, &[], "").await;
        assert!(h.event().await.starts_with("connected"));
        // Idle: the SDK pings the client.
        assert_eq!(h.conn.client_recv(&id, p).await, HubMessage::Ping);
        // Timeout counts only after the client's first Ping.
        h.conn.client_send(&id, p, &HubMessage::Ping).await;
        let started = std::time::Instant::now();
        loop {
            match h.conn.client_recv(&id, p).await {
                HubMessage::Ping => continue,
                other => {
                    assert_eq!(
                        other,
                        HubMessage::Close(Close {
                            error: Some("Connection closed with an error.".into()),
                            allow_reconnect: true,
                        })
                    );
                    break;
                }
            }
        }
        assert!(started.elapsed() >= Duration::from_millis(250));
        let event = h.event().await;
        assert!(event.starts_with(&format!("disconnected {id} ")), "{event}");
    }
}

#[tokio::test]
async fn client_close_message_and_app_abort() {
    let mut h = Harness::start(test_options()).await;
    h.conn.open_client("c1", HubProtocol::Json, &[], "").await;
    assert_eq!(h.event().await, "connected c1 -");
    h.conn
        .client_send(
            "c1",
            HubProtocol::Json,
            &HubMessage::Close(Close::default()),
        )
        .await;
    h.conn
        .expect("CloseConnection", |m| {
            matches!(m, ServiceMessage::CloseConnection { connection_id, error_message, .. }
                if connection_id == "c1" && error_message.as_deref() == Some(""))
        })
        .await;
    assert_eq!(h.event().await, "disconnected c1 -");

    // Context::abort: a plain Close, then CloseConnection.
    h.conn
        .open_client("c2", HubProtocol::MessagePack, &[], "")
        .await;
    assert_eq!(h.event().await, "connected c2 -");
    h.conn
        .client_send(
            "c2",
            HubProtocol::MessagePack,
            &invocation(None, "Abort", "[]"),
        )
        .await;
    assert_eq!(
        h.conn.client_recv("c2", HubProtocol::MessagePack).await,
        HubMessage::Close(Close::default())
    );
    h.conn
        .expect("CloseConnection", |m| {
            matches!(m, ServiceMessage::CloseConnection { connection_id, .. } if connection_id == "c2")
        })
        .await;
    assert_eq!(h.event().await, "disconnected c2 -");

    // HubServer::close_connection of a local client, with a reason.
    h.conn.open_client("c3", HubProtocol::Json, &[], "").await;
    assert_eq!(h.event().await, "connected c3 -");
    h.server.close_connection("c3", Some("bye")).await.unwrap();
    assert_eq!(
        h.conn.client_recv("c3", HubProtocol::Json).await,
        HubMessage::Close(Close {
            error: Some("bye".into()),
            allow_reconnect: false
        })
    );
    h.conn
        .expect("CloseConnection", |m| {
            matches!(m, ServiceMessage::CloseConnection { connection_id, error_message, .. }
                if connection_id == "c3" && error_message.as_deref() == Some("bye"))
        })
        .await;
    assert_eq!(h.event().await, "disconnected c3 -");

    // A client routed elsewhere: Close payloads through MultiConnectionData, then CloseConnection.
    h.server.close_connection("remote", None).await.unwrap();
    h.conn
        .expect("Close to remote", |m| {
            matches!(m, ServiceMessage::MultiConnectionData { connection_list, payloads, .. }
                if connection_list == &["remote".to_owned()] && payloads.len() == 2)
        })
        .await;
    h.conn
        .expect("CloseConnection remote", |m| {
            matches!(m, ServiceMessage::CloseConnection { connection_id, .. } if connection_id == "remote")
        })
        .await;
}

#[tokio::test]
async fn lost_connection_disconnects_its_clients_and_reconnects() {
    let mut h = Harness::start(test_options()).await;
    h.conn.open_client("c1", HubProtocol::Json, &[], "").await;
    assert_eq!(h.event().await, "connected c1 -");
    h.conn.hang_up().await;
    let event = h.event().await;
    assert!(
        event.starts_with("disconnected c1 The server connection to the service was lost"),
        "{event}"
    );
    let _again = h.service.next_conn().await;
    h.server.wait_connected(1, WAIT).await.unwrap();
}

#[tokio::test]
async fn offline_instance_drops_its_clients() {
    let mut h = Harness::start(test_options()).await;
    h.conn
        .send(&ServiceMessage::OpenConnection {
            connection_id: "c1".into(),
            claims: vec![],
            headers: vec![("Asrs-Instance-Id".into(), vec!["inst-1".into()])],
            query_string: None,
            extensions: Extensions::default(),
        })
        .await;
    h.conn
        .client_bytes("c1", handshake::encode_request("json", 1))
        .await;
    assert_eq!(
        &h.conn.client_payload("c1").await[..],
        handshake::RESPONSE_OK
    );
    assert_eq!(h.event().await, "connected c1 -");
    h.conn
        .send(&ServiceMessage::Ping {
            messages: vec!["offline".into(), "inst-1".into()],
        })
        .await;
    assert_eq!(
        h.event().await,
        "disconnected c1 Service instance 'inst-1' is offline."
    );
}

#[tokio::test]
async fn migrated_clients_skip_the_handshake() {
    let mut h = Harness::start(test_options()).await;
    h.conn
        .send(&ServiceMessage::OpenConnection {
            connection_id: "m1".into(),
            claims: vec![],
            headers: vec![("Asrs-Migrate-From".into(), vec!["other-server".into()])],
            query_string: None,
            extensions: Extensions {
                protocol: Some("messagepack".into()),
                ..Extensions::default()
            },
        })
        .await;
    assert_eq!(h.event().await, "connected m1 -");
    h.conn
        .client_send(
            "m1",
            HubProtocol::MessagePack,
            &invocation(Some("1"), "Add", "[1,2]"),
        )
        .await;
    let (_, v) = super::completion(&h.conn.client_recv("m1", HubProtocol::MessagePack).await);
    assert_eq!(v, serde_json::json!({"result": 3}));
}
