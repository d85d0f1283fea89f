//! Default mode over real sockets: a scripted hub server speaks the service protocol on
//! `/server/?hub=` (with the crate's codec, itself checked against the reference vectors), and
//! SignalR clients connect through Switchboard to it.

mod common;

use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use bytes::Bytes;
use common::fake_server::{FakeServer, server_token};
use common::ws::{Data, raw_frame};
use common::{
    Rest, TestClient, client_token, config, json_invocation, now, sign, start, start_with,
};
use serde_json::{Value, json};
use switchboard::ServiceMode;
use switchboard::protocol::service::{self, ConnectionType, Extensions, ServiceMessage};
use switchboard::telemetry::names;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;

const T: Duration = Duration::from_secs(5);

fn payloads(target: &str, args: Value) -> Vec<(String, Bytes)> {
    let json = json_invocation(None, target, args.clone());
    let mp = switchboard::protocol::encode_invocation_json_args(
        switchboard::protocol::HubProtocol::MessagePack,
        target,
        &serde_json::to_vec(&args).unwrap(),
    )
    .unwrap();
    vec![
        ("json".into(), Bytes::from(json)),
        ("messagepack".into(), mp),
    ]
}

/// Connect a client while the fake server accepts it.
async fn connect_via(
    server: &mut FakeServer,
    base: &str,
    key: &str,
    hub: &str,
    user: Option<&str>,
    protocol: &str,
) -> Result<(
    TestClient,
    Vec<(String, String)>,
    Option<String>,
    Option<String>,
)> {
    let token = client_token(key, hub, user);
    let (base, hub, protocol) = (base.to_owned(), hub.to_owned(), protocol.to_owned());
    let client =
        tokio::spawn(async move { TestClient::connect(&base, &hub, &token, &protocol).await });
    let (id, claims, query, proto) = server.accept_client().await?;
    let client = client.await??;
    assert_eq!(client.connection_id(), id);
    Ok((client, claims, query, proto))
}

#[tokio::test]
async fn a_client_is_proxied_to_its_hub_server_both_ways() -> Result<()> {
    let (sb, base, key) = start(ServiceMode::Default).await;
    let mut server =
        FakeServer::connect(&base, &key, "chat", "srv-1", ConnectionType::Default).await?;
    let (mut client, claims, query, proto) =
        connect_via(&mut server, &base, &key, "chat", Some("alice"), "json").await?;
    // OpenConnection: .NET claim types, the protocol, and no token in the query.
    assert!(
        claims.contains(&(
            "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/nameidentifier".into(),
            "alice".into()
        )),
        "{claims:?}"
    );
    assert_eq!(proto.as_deref(), Some("json"));
    let query = query.unwrap_or_default();
    assert!(query.starts_with("?hub=chat"), "{query}");
    assert!(
        !query.contains("id=") && !query.contains("access_token"),
        "{query}"
    );

    // Client → server: bytes verbatim.
    let inv = json_invocation(None, "Echo", json!(["hi"]));
    client.send_raw(&inv).await?;
    let (id, payload) = server.next_data().await?;
    assert_eq!(id, client.connection_id());
    assert_eq!(&payload[..], &inv[..]);
    // Server → client.
    server
        .data(&id, &json_invocation(None, "echo", json!(["hi back"])))
        .await?;
    assert_eq!(
        client.expect_invocation("echo", T).await?,
        json!(["hi back"])
    );

    // Multicast with a payload map; the client gets its protocol's entry.
    server
        .send(&ServiceMessage::BroadcastData {
            excluded_list: vec![],
            payloads: payloads("all", json!([1])),
            extensions: Extensions::default(),
        })
        .await?;
    assert_eq!(client.expect_invocation("all", T).await?, json!([1]));
    server
        .send(&ServiceMessage::UserData {
            user_id: "alice".into(),
            payloads: payloads("user", json!([2])),
            extensions: Extensions::default(),
        })
        .await?;
    assert_eq!(client.expect_invocation("user", T).await?, json!([2]));
    server
        .send(&ServiceMessage::MultiConnectionData {
            connection_list: vec![id.clone()],
            payloads: payloads("conn", json!([3])),
            extensions: Extensions::default(),
        })
        .await?;
    assert_eq!(client.expect_invocation("conn", T).await?, json!([3]));

    // Groups with acks.
    server
        .send(&ServiceMessage::JoinGroupWithAck {
            connection_id: id.clone(),
            group_name: "g".into(),
            ack_id: 7,
            extensions: Extensions::default(),
        })
        .await?;
    assert_eq!(server.expect_ack(7).await?, 1);
    server
        .send(&ServiceMessage::GroupBroadcastData {
            group_name: "g".into(),
            excluded_list: vec![],
            payloads: payloads("group", json!([4])),
            extensions: Extensions::default(),
            excluded_user_list: vec![],
            caller_user_id: None,
        })
        .await?;
    assert_eq!(client.expect_invocation("group", T).await?, json!([4]));
    server
        .send(&ServiceMessage::CheckUserInGroupWithAck {
            user_id: "alice".into(),
            group_name: "g".into(),
            ack_id: 8,
            extensions: Extensions::default(),
        })
        .await?;
    assert_eq!(server.expect_ack(8).await?, 1);
    server
        .send(&ServiceMessage::CheckConnectionExistenceWithAck {
            connection_id: "nope".into(),
            ack_id: 9,
            extensions: Extensions::default(),
        })
        .await?;
    assert_eq!(server.expect_ack(9).await?, 2);
    server
        .send(&ServiceMessage::LeaveGroupWithAck {
            connection_id: id.clone(),
            group_name: Some("g".into()),
            ack_id: 10,
            extensions: Extensions::default(),
        })
        .await?;
    assert_eq!(server.expect_ack(10).await?, 1);
    server
        .send(&ServiceMessage::CheckGroupExistenceWithAck {
            group_name: "g".into(),
            ack_id: 11,
            extensions: Extensions::default(),
        })
        .await?;
    assert_eq!(server.expect_ack(11).await?, 2);

    // The REST API reaches a routed client directly.
    let rest = Rest::new(&base, &key);
    let r = rest
        .post_json(
            "/api/hubs/chat/:send?api-version=2022-06-01",
            &json!({"target": "rest", "arguments": [5]}),
        )
        .await;
    assert_eq!(r.status, 202);
    assert_eq!(client.expect_invocation("rest", T).await?, json!([5]));

    // The client leaves: the server is told.
    client.close().await;
    match server.next().await? {
        ServiceMessage::CloseConnection { connection_id, .. } => assert_eq!(connection_id, id),
        other => bail!("expected CloseConnection, got {other:?}"),
    }
    sb.stop().await;
    Ok(())
}

#[tokio::test]
async fn messagepack_clients_get_their_payload_entry() -> Result<()> {
    let (sb, base, key) = start(ServiceMode::Default).await;
    let mut server =
        FakeServer::connect(&base, &key, "chat", "srv-1", ConnectionType::Default).await?;
    let (mut client, _, _, proto) =
        connect_via(&mut server, &base, &key, "chat", None, "messagepack").await?;
    assert_eq!(proto.as_deref(), Some("messagepack"));
    server
        .send(&ServiceMessage::BroadcastData {
            excluded_list: vec![],
            payloads: payloads("all", json!(["x", 1.5])),
            extensions: Extensions::default(),
        })
        .await?;
    assert_eq!(client.expect_invocation("all", T).await?, json!(["x", 1.5]));
    sb.stop().await;
    Ok(())
}

#[tokio::test]
async fn the_server_closing_a_client_closes_its_transport() -> Result<()> {
    let (sb, base, key) = start(ServiceMode::Default).await;
    let mut server =
        FakeServer::connect(&base, &key, "chat", "srv-1", ConnectionType::Default).await?;
    let (mut client, _, _, _) = connect_via(&mut server, &base, &key, "chat", None, "json").await?;
    let id = client.connection_id().to_owned();
    server
        .data(&id, b"{\"type\":7,\"error\":\"bye from the hub\"}\x1e")
        .await?;
    server
        .send(&ServiceMessage::CloseConnection {
            connection_id: id.clone(),
            error_message: None,
            headers: vec![],
            extensions: Extensions::default(),
        })
        .await?;
    let close = client.next_close(T).await?;
    assert_eq!(close["error"], "bye from the hub");
    client.wait_closed(T).await?;
    sb.stop().await;
    Ok(())
}

#[tokio::test]
async fn without_a_hub_server_default_mode_refuses_and_classic_mode_limits() -> Result<()> {
    let (sb, base, key) = start(ServiceMode::Default).await;
    let err = TestClient::connect(&base, "chat", &client_token(&key, "chat", None), "json")
        .await
        .err()
        .context("connect should fail")?;
    assert!(
        err.to_string()
            .contains("However app servers are not connected."),
        "{err}"
    );
    sb.stop().await;

    let (sb, base, key) = start(ServiceMode::Classic).await;
    // No server: a limited serverless client.
    let mut limited =
        TestClient::connect(&base, "chat", &client_token(&key, "chat", None), "json").await?;
    // A server connects; new clients are routed, the earlier one keeps its route.
    let mut server =
        FakeServer::connect(&base, &key, "chat", "srv-1", ConnectionType::Default).await?;
    let (_routed, _, _, _) = connect_via(&mut server, &base, &key, "chat", None, "json").await?;
    limited
        .send_raw(&json_invocation(None, "Send", json!([])))
        .await?;
    let close = limited.next_close(T).await?;
    assert_eq!(
        close["error"],
        "No app server is currently connected to the Azure service."
    );
    sb.stop().await;
    Ok(())
}

#[tokio::test]
async fn serverless_mode_refuses_hub_servers_but_accepts_weak_connections() -> Result<()> {
    let (sb, base, key) = start(ServiceMode::Serverless).await;
    let err = FakeServer::connect(&base, &key, "chat", "srv-1", ConnectionType::Default)
        .await
        .err()
        .context("must be refused")?;
    assert!(
        err.to_string().contains("'Serverless' service mode"),
        "{err}"
    );
    let err = FakeServer::connect(&base, &key, "chat", "srv-1", ConnectionType::OnDemand)
        .await
        .err()
        .context("must be refused")?;
    assert!(
        err.to_string().contains("'Serverless' service mode"),
        "{err}"
    );
    let mut weak = FakeServer::connect(&base, &key, "chat", "mgmt", ConnectionType::Weak).await?;
    // A Weak connection may send.
    let mut client =
        TestClient::connect(&base, "chat", &client_token(&key, "chat", None), "json").await?;
    weak.send(&ServiceMessage::BroadcastData {
        excluded_list: vec![],
        payloads: payloads("weak", json!([1])),
        extensions: Extensions::default(),
    })
    .await?;
    assert_eq!(client.expect_invocation("weak", T).await?, json!([1]));
    assert_eq!(sb.metrics().get(names::server_handshakes_failed), Some(2));
    sb.stop().await;
    Ok(())
}

#[tokio::test]
async fn server_tokens_are_checked() -> Result<()> {
    let (sb, base, key) = start(ServiceMode::Default).await;
    let url = format!("{}/server/?hub=chat&cid=x", base.replacen("http", "ws", 1));
    for token in [
        client_token(&key, "chat", None),         // client audience
        server_token("another key", "chat", "s"), // forged
        server_token(&key, "other", "s"),         // another hub
    ] {
        let mut req = url.clone().into_client_request()?;
        req.headers_mut()
            .insert("Authorization", format!("Bearer {token}").parse()?);
        match tokio_tungstenite::connect_async(req).await {
            Err(tungstenite::Error::Http(r)) => assert_eq!(r.status(), 401),
            other => bail!("expected 401, got {other:?}"),
        }
    }
    sb.stop().await;
    Ok(())
}

#[tokio::test]
async fn clients_stick_to_servers_and_a_dropped_server_drops_only_its_clients() -> Result<()> {
    let (sb, base, key) = start(ServiceMode::Default).await;
    let mut a = FakeServer::connect(&base, &key, "chat", "srv-a", ConnectionType::Default).await?;
    let mut b = FakeServer::connect(&base, &key, "chat", "srv-b", ConnectionType::Default).await?;
    // Fewest clients first: the clients alternate between the two servers.
    let mut on_a = Vec::new();
    let mut on_b = Vec::new();
    for i in 0..6 {
        let token = client_token(&key, "chat", None);
        let base2 = base.clone();
        let task =
            tokio::spawn(async move { TestClient::connect(&base2, "chat", &token, "json").await });
        // Whichever server is told of the client accepts it.
        let accepted = tokio::select! {
            r = a.accept_client() => { let (id, ..) = r?; ("a", id) }
            r = b.accept_client() => { let (id, ..) = r?; ("b", id) }
        };
        let client = task.await??;
        assert_eq!(client.connection_id(), accepted.1, "client {i}");
        if accepted.0 == "a" {
            on_a.push(client)
        } else {
            on_b.push(client)
        }
    }
    assert_eq!((on_a.len(), on_b.len()), (3, 3));
    // Each client's bytes go to its own server, every time.
    for round in 0..3 {
        for c in on_a.iter_mut() {
            c.send_raw(&json_invocation(None, "Ping", json!([round])))
                .await?;
            assert_eq!(a.next_data().await?.0, c.connection_id());
        }
        for c in on_b.iter_mut() {
            c.send_raw(&json_invocation(None, "Ping", json!([round])))
                .await?;
            assert_eq!(b.next_data().await?.0, c.connection_id());
        }
    }
    // Server a goes away: its clients get a Close with an error, b's clients stay.
    drop(a);
    for c in on_a.iter_mut() {
        let close = c.next_close(T).await?;
        assert!(
            close["error"].as_str().unwrap_or("").contains("app server"),
            "{close}"
        );
    }
    let rest = Rest::new(&base, &key);
    rest.post_json(
        "/api/hubs/chat/:send",
        &json!({"target": "still", "arguments": []}),
    )
    .await;
    for c in on_b.iter_mut() {
        assert_eq!(c.expect_invocation("still", T).await?, json!([]));
    }
    sb.stop().await;
    Ok(())
}

#[tokio::test]
async fn ping_sub_protocol() -> Result<()> {
    let (sb, base, key) = start(ServiceMode::Default).await;
    let mut a = FakeServer::connect(&base, &key, "chat", "srv-a", ConnectionType::Default).await?;
    let mut b = FakeServer::connect(&base, &key, "chat", "srv-b", ConnectionType::Default).await?;
    a.send(&service::ping(&[("echo", "42")])).await?;
    match a.next().await? {
        ServiceMessage::Ping { messages } => assert_eq!(messages, ["echo", "42"]),
        other => bail!("{other:?}"),
    }
    a.send(&service::ping(&[("status", "1")])).await?;
    match a.next().await? {
        ServiceMessage::Ping { messages } => assert_eq!(messages, ["status", "0"]),
        other => bail!("{other:?}"),
    }
    a.send(&service::ping(&[("servers", "")])).await?;
    match a.next().await? {
        ServiceMessage::Ping { messages } => {
            assert_eq!(messages[0], "servers");
            assert!(messages[1].ends_with(":srv-a;srv-b"), "{messages:?}");
        }
        other => bail!("{other:?}"),
    }
    // Graceful shutdown: acknowledged, and new clients go to the other server.
    a.send(&service::ping(&[("shutdown", "fin:0")])).await?;
    match a.next().await? {
        ServiceMessage::Ping { messages } => assert_eq!(messages, ["shutdown", "finack"]),
        other => bail!("{other:?}"),
    }
    let mut clients = Vec::new();
    for _ in 0..2 {
        let (c, ..) = connect_via(&mut b, &base, &key, "chat", None, "json").await?;
        clients.push(c);
    }
    sb.stop().await;
    Ok(())
}

#[tokio::test]
async fn client_results_reach_the_caller_server_and_a_leaving_client_fails_them() -> Result<()> {
    let (sb, base, key) = start(ServiceMode::Default).await;
    let mut router =
        FakeServer::connect(&base, &key, "chat", "srv-router", ConnectionType::Default).await?;
    let (mut client, ..) = connect_via(&mut router, &base, &key, "chat", None, "json").await?;
    let id = client.connection_id().to_owned();
    // Another app server (here a Weak one) asks the client for a result.
    let mut caller =
        FakeServer::connect(&base, &key, "chat", "srv-caller", ConnectionType::Weak).await?;
    let invocation = br#"{"type":1,"invocationId":"inv-1","target":"GetAnswer","arguments":[]}"#;
    let mut framed = invocation.to_vec();
    framed.push(0x1e);
    caller
        .send(&ServiceMessage::ClientInvocation {
            invocation_id: "inv-1".into(),
            connection_id: id.clone(),
            caller_server_id: "srv-caller".into(),
            payloads: vec![("json".into(), Bytes::from(framed))],
            extensions: Extensions::default(),
        })
        .await?;
    // The client gets the invocation; its router learns of it.
    let msg = client.next_message(T).await?;
    assert_eq!(msg["invocationId"], "inv-1");
    match router.next().await? {
        ServiceMessage::ClientInvocation {
            invocation_id,
            caller_server_id,
            ..
        } => {
            assert_eq!(
                (invocation_id.as_str(), caller_server_id.as_str()),
                ("inv-1", "srv-caller")
            );
        }
        other => bail!("expected the forwarded ClientInvocation, got {other:?}"),
    }
    // The router sends the completion on: the caller gets it.
    router
        .send(&ServiceMessage::ClientCompletion {
            invocation_id: "inv-1".into(),
            connection_id: id.clone(),
            caller_server_id: "srv-caller".into(),
            protocol: "json".into(),
            payload: Bytes::from_static(
                b"{\"type\":3,\"invocationId\":\"inv-1\",\"result\":42}\x1e",
            ),
            extensions: Extensions::default(),
        })
        .await?;
    match caller.next().await? {
        ServiceMessage::ClientCompletion { invocation_id, .. } => {
            assert_eq!(invocation_id, "inv-1")
        }
        other => bail!("expected ClientCompletion, got {other:?}"),
    }
    // A second invocation the client never answers: when it leaves, the caller hears of it.
    caller
        .send(&ServiceMessage::ClientInvocation {
            invocation_id: "inv-2".into(),
            connection_id: id.clone(),
            caller_server_id: "srv-caller".into(),
            payloads: vec![("json".into(), Bytes::from_static(b"{\"type\":1,\"invocationId\":\"inv-2\",\"target\":\"X\",\"arguments\":[]}\x1e"))],
            extensions: Extensions::default(),
        })
        .await?;
    assert_eq!(client.next_message(T).await?["invocationId"], "inv-2");
    client.close().await;
    match caller.next().await? {
        ServiceMessage::ErrorCompletion {
            invocation_id,
            error,
            ..
        } => {
            assert_eq!(invocation_id, "inv-2");
            assert_eq!(error.as_deref(), Some("Connection disconnected."));
        }
        other => bail!("expected ErrorCompletion, got {other:?}"),
    }
    sb.stop().await;
    Ok(())
}

#[tokio::test]
async fn sticky_claims_choose_the_negotiating_server() -> Result<()> {
    let (sb, base, key) = start(ServiceMode::Default).await;
    let mut a = FakeServer::connect(&base, &key, "chat", "srv-a", ConnectionType::Default).await?;
    let mut b = FakeServer::connect(&base, &key, "chat", "srv-b", ConnectionType::Default).await?;
    let sticky_token = |server: &str, mode: &str| {
        sign(
            &key,
            &json!({
                "aud": "http://127.0.0.1/client/?hub=chat", "exp": now() + 600,
                "asrs.s.sn": server, "asrs.s.ssticky": mode,
            }),
        )
    };
    // Three clients that must reach srv-b, although srv-a has fewer clients each time.
    let mut kept = Vec::new();
    for mode in ["Required", "Preferred", "Required"] {
        let token = sticky_token("srv-b", mode);
        let base2 = base.clone();
        let task =
            tokio::spawn(async move { TestClient::connect(&base2, "chat", &token, "json").await });
        let (id, ..) = b.accept_client().await?;
        let client = task.await??;
        assert_eq!(client.connection_id(), id);
        kept.push(client);
    }
    // Preferred with an unknown server falls back; Required fails the handshake.
    let token = sticky_token("srv-gone", "Preferred");
    let base2 = base.clone();
    let task =
        tokio::spawn(async move { TestClient::connect(&base2, "chat", &token, "json").await });
    a.accept_client().await?;
    kept.push(task.await??);
    let err = TestClient::connect(&base, "chat", &sticky_token("srv-gone", "Required"), "json")
        .await
        .err()
        .context("a Required server that is not connected must fail the handshake")?;
    assert!(err.to_string().contains("srv-gone"), "{err}");
    sb.stop().await;
    Ok(())
}

#[tokio::test]
async fn a_servers_messages_reach_a_client_in_the_order_it_sent_them() -> Result<()> {
    let (sb, base, key) = start(ServiceMode::Default).await;
    let mut server =
        FakeServer::connect(&base, &key, "chat", "srv-1", ConnectionType::Default).await?;
    let (mut client, ..) = connect_via(&mut server, &base, &key, "chat", Some("u"), "json").await?;
    let id = client.connection_id().to_owned();
    // Hub-routed sends (broadcast, user, group) interleaved with direct data to the client.
    server
        .send(&ServiceMessage::JoinGroup {
            connection_id: id.clone(),
            group_name: "g".into(),
            extensions: Extensions::default(),
        })
        .await?;
    for i in 0..30 {
        let routed = match i % 3 {
            0 => ServiceMessage::BroadcastData {
                excluded_list: vec![],
                payloads: payloads("m", json!([i, "hub"])),
                extensions: Extensions::default(),
            },
            1 => ServiceMessage::UserData {
                user_id: "u".into(),
                payloads: payloads("m", json!([i, "hub"])),
                extensions: Extensions::default(),
            },
            _ => ServiceMessage::GroupBroadcastData {
                group_name: "g".into(),
                excluded_list: vec![],
                payloads: payloads("m", json!([i, "hub"])),
                extensions: Extensions::default(),
                excluded_user_list: vec![],
                caller_user_id: None,
            },
        };
        server.send(&routed).await?;
        server
            .data(&id, &json_invocation(None, "m", json!([i, "direct"])))
            .await?;
    }
    for i in 0..30 {
        assert_eq!(
            client.expect_invocation("m", T).await?,
            json!([i, "hub"]),
            "message {i}"
        );
        assert_eq!(
            client.expect_invocation("m", T).await?,
            json!([i, "direct"]),
            "message {i}"
        );
    }
    sb.stop().await;
    Ok(())
}

#[tokio::test]
async fn a_hub_server_cannot_reach_the_clients_of_another_hub() -> Result<()> {
    let (sb, base, key) = start(ServiceMode::Default).await;
    let mut server_a =
        FakeServer::connect(&base, &key, "hub_a", "srv-a", ConnectionType::Default).await?;
    let mut server_b =
        FakeServer::connect(&base, &key, "hub_b", "srv-b", ConnectionType::Default).await?;
    let (mut client_b, ..) =
        connect_via(&mut server_b, &base, &key, "hub_b", Some("bob"), "json").await?;
    let id_b = client_b.connection_id().to_owned();

    // Hub A's server addresses hub B's client by id in every way that names a connection.
    let invocation = |id: &str| ServiceMessage::ClientInvocation {
        invocation_id: format!("inv-{id}"),
        connection_id: id.to_owned(),
        caller_server_id: "srv-a".into(),
        payloads: payloads("evil", json!(["invoke"])),
        extensions: Extensions::default(),
    };
    server_a
        .data(&id_b, &json_invocation(None, "evil", json!(["data"])))
        .await?;
    server_a
        .send(&ServiceMessage::MultiConnectionData {
            connection_list: vec![id_b.clone()],
            payloads: payloads("evil", json!(["multi"])),
            extensions: Extensions::default(),
        })
        .await?;
    server_a.send(&invocation(&id_b)).await?;
    server_a
        .send(&ServiceMessage::ClientCompletion {
            invocation_id: "inv-b".into(),
            connection_id: id_b.clone(),
            caller_server_id: "srv-b".into(),
            protocol: "json".into(),
            payload: Bytes::from_static(
                b"{\"type\":3,\"invocationId\":\"inv-b\",\"result\":1}\x1e",
            ),
            extensions: Extensions::default(),
        })
        .await?;
    server_a
        .send(&ServiceMessage::CloseConnection {
            connection_id: id_b.clone(),
            error_message: Some("taken".into()),
            headers: vec![],
            extensions: Extensions::default(),
        })
        .await?;
    // The invocation is answered as for a client that does not exist; a second one for an
    // unknown id, answered after it, shows that everything before was processed.
    server_a.send(&invocation("nobody")).await?;
    for want in [format!("inv-{id_b}"), "inv-nobody".to_owned()] {
        match server_a.next().await? {
            ServiceMessage::ErrorCompletion {
                invocation_id,
                error,
                ..
            } => {
                assert_eq!(invocation_id, want);
                assert_eq!(
                    error.as_deref(),
                    Some("The client connection does not exist.")
                );
            }
            other => bail!("expected the ErrorCompletion of {want}, got {other:?}"),
        }
    }
    assert_eq!(
        sb.metrics().get(names::server_cross_hub_refused),
        Some(5),
        "data, multi-connection data, invocation, completion and close, each counted"
    );
    // Hub B's client got none of it and is still open: the next thing it gets is its own
    // server's message.
    server_b
        .data(&id_b, &json_invocation(None, "own", json!([1])))
        .await?;
    assert_eq!(client_b.expect_invocation("own", T).await?, json!([1]));
    sb.stop().await;
    Ok(())
}

/// Every refusal of a hub server's input says why in the close frame: a WebSocket frame over
/// `limits.max_server_message_size` (1009), a service frame announcing more (1009), a malformed
/// message (1002), a text frame that is not UTF-8 (1007).
#[tokio::test]
async fn refused_hub_server_input_closes_with_a_code_and_a_reason() -> Result<()> {
    let mut c = config(ServiceMode::Default);
    c.limits.max_server_message_size = 1024;
    let (sb, base, key) = start_with(c).await;
    let too_big = "The maximum message size of 1024B was exceeded.".to_owned();
    let connect = || FakeServer::connect(&base, &key, "chat", "s1", ConnectionType::Default);

    let mut s = connect().await?;
    s.send_raw(Message::binary(vec![0u8; 4096])).await?;
    assert_eq!(s.next_close().await?, (1009, too_big.clone()));

    // A varint prefix announcing 2048 bytes, in a small frame.
    let mut s = connect().await?;
    s.send_raw(Message::binary(vec![0x80, 0x10, 0x95])).await?;
    assert_eq!(s.next_close().await?, (1009, too_big.clone()));

    // A complete frame whose body is not a service message (a MessagePack string).
    let mut s = connect().await?;
    s.send_raw(Message::binary(vec![0x02, 0xa1, b'x'])).await?;
    let (code, reason) = s.next_close().await?;
    assert_eq!(code, 1002);
    assert!(reason.starts_with("Malformed message: "), "{reason}");

    let mut s = connect().await?;
    s.send_raw(raw_frame(b"\xff\xfe", Data::Text, true)).await?;
    assert_eq!(
        s.next_close().await?,
        (1007, "A text frame is not valid UTF-8.".to_owned())
    );
    assert_eq!(sb.metrics().get(names::protocol_errors), Some(4));
    sb.stop().await;
    Ok(())
}
