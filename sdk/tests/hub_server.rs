//! The Rust hub-server SDK (`switchboard_sdk`) against the real broker: Switchboard starts on
//! 127.0.0.1:0 in Default mode, a hub server built with the SDK connects to `/server/?hub=`, and
//! raw WebSocket SignalR clients (JSON and MessagePack, from `tests/common`) negotiate with the
//! token of [`negotiate_response`] and talk to the hub through the broker.
//!
//! Covered end to end: echo in both protocols, on_connected / on_disconnected with the user id
//! from the token, broadcast / others / caller, groups, user sends, server-to-client and upload
//! streams, client results (local and routed through the service to another hub server),
//! existence checks, app-side closes and graceful stop.

#[path = "../../tests/common/mod.rs"]
mod common;

use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use common::TestClient;
use futures_util::StreamExt as _;
use serde_json::{Value, json};
use switchboard::protocol::{
    CancelInvocation, Completion, CompletionOutcome, HubMessage, HubProtocol, Invocation, RawValue,
    StreamItem,
};
use switchboard::{ServiceMode, SwitchboardHandle};
use switchboard_sdk::{
    ConnectionString, Context, Hub, HubError, HubServer, UploadStream, negotiate_response,
};
use tokio::sync::mpsc;

const T: Duration = Duration::from_secs(5);

/// The test hub: events (`connected <user>`, `disconnected <user>`) go to the channel.
fn hub(events: mpsc::Sender<String>) -> Hub {
    let on_connected = events.clone();
    let on_disconnected = events;
    Hub::builder()
        .on_connected(move |ctx: Context| {
            let events = on_connected.clone();
            async move {
                let _ = events
                    .send(format!("connected {}", ctx.user_id().unwrap_or("-")))
                    .await;
                Ok(())
            }
        })
        .on_disconnected(move |ctx: Context, _error: Option<String>| {
            let events = on_disconnected.clone();
            async move {
                let _ = events
                    .send(format!("disconnected {}", ctx.user_id().unwrap_or("-")))
                    .await;
            }
        })
        .method("Echo", |_ctx: Context, (text,): (String,)| async move {
            Ok::<_, HubError>(text)
        })
        .method("WhoAmI", |ctx: Context, (): ()| async move {
            Ok::<_, HubError>((
                ctx.connection_id().to_owned(),
                ctx.user_id().map(str::to_owned),
                ctx.claim("role").map(str::to_owned),
            ))
        })
        .method("Broadcast", |ctx: Context, (text,): (String,)| async move {
            ctx.clients()
                .all()
                .send("newMessage", (ctx.user_id(), &text))
                .await?;
            Ok::<_, HubError>(())
        })
        .method("Others", |ctx: Context, (text,): (String,)| async move {
            ctx.clients().others().send("fromOther", (&text,)).await?;
            ctx.clients().caller().send("fromSelf", (&text,)).await?;
            Ok::<_, HubError>(())
        })
        .method("Join", |ctx: Context, (group,): (String,)| async move {
            Ok::<_, HubError>(ctx.groups().add(ctx.connection_id(), &group).await?)
        })
        .method("Leave", |ctx: Context, (group,): (String,)| async move {
            Ok::<_, HubError>(ctx.groups().remove(ctx.connection_id(), &group).await?)
        })
        .method(
            "ToGroup",
            |ctx: Context, (group, text): (String, String)| async move {
                ctx.clients()
                    .group(&group)
                    .send("groupMessage", (&group, &text))
                    .await?;
                Ok::<_, HubError>(())
            },
        )
        .method("AskCaller", |ctx: Context, (): ()| async move {
            let n: i64 = ctx.clients().caller().invoke("GetNumber", ()).await?;
            Ok::<_, HubError>(n * 2)
        })
        .method("Fail", |_ctx: Context, (): ()| async move {
            Err::<(), _>(HubError::new("nope"))
        })
        .stream_method("Counter", |_ctx: Context, (n,): (u32,)| {
            futures_util::stream::iter(0..n)
        })
        .stream_method("Forever", |_ctx: Context, (): ()| {
            futures_util::stream::unfold(0u64, |n| async move {
                tokio::time::sleep(Duration::from_millis(20)).await;
                Some((n, n + 1))
            })
        })
        .upload_method(
            "Sum",
            |_ctx: Context, (): (), mut items: UploadStream<i64>| async move {
                let mut sum = 0;
                while let Some(item) = items.next().await {
                    sum += item?;
                }
                Ok::<_, HubError>(sum)
            },
        )
        .build()
}

struct Setup {
    _broker: SwitchboardHandle,
    base: String,
    cs: ConnectionString,
    server: HubServer,
    events: mpsc::Receiver<String>,
}

async fn setup() -> Setup {
    let (broker, base, _key) = common::start(ServiceMode::Default).await;
    let cs = ConnectionString::parse(&broker.connection_string()).expect("connection string");
    let (tx, events) = mpsc::channel(64);
    let server = HubServer::builder(cs.clone(), "chat", hub(tx))
        .connection_count(2)
        .server_id("app-1")
        .start()
        .expect("start the hub server");
    server
        .wait_connected(2, T)
        .await
        .expect("server connections up");
    Setup {
        _broker: broker,
        base,
        cs,
        server,
        events,
    }
}

impl Setup {
    /// A client of hub `chat`, negotiated through `negotiate_response` as the JS client would.
    async fn client(&self, user: &str, protocol: &str, claims: &[(&str, &str)]) -> Result<Client> {
        let body = negotiate_response(
            &self.cs,
            "chat",
            Some(user),
            claims,
            Duration::from_secs(600),
        );
        let redirect: Value = serde_json::from_str(&body)?;
        let url = redirect["url"].as_str().context("url")?;
        if url != format!("{}/client/?hub=chat", self.base) {
            bail!("unexpected redirect {url}");
        }
        let token = redirect["accessToken"].as_str().context("accessToken")?;
        let inner = TestClient::connect(&self.base, "chat", token, protocol).await?;
        let protocol = HubProtocol::from_name(protocol).context("protocol")?;
        Ok(Client { inner, protocol })
    }

    async fn event(&mut self) -> String {
        tokio::time::timeout(T, self.events.recv())
            .await
            .expect("a hub event in time")
            .expect("events open")
    }
}

struct Client {
    inner: TestClient,
    protocol: HubProtocol,
}

fn raw(json_text: &str) -> RawValue {
    RawValue::Json(bytes::Bytes::copy_from_slice(json_text.as_bytes()))
}

impl Client {
    fn id(&self) -> String {
        self.inner.connection_id().to_owned()
    }

    async fn send(&mut self, msg: &HubMessage) -> Result<()> {
        let bytes = self.protocol.encode(msg)?;
        self.inner.send_raw(&bytes).await
    }

    async fn invoke(&mut self, id: Option<&str>, target: &str, args: &str) -> Result<()> {
        self.send(&HubMessage::Invocation(Invocation {
            headers: vec![],
            invocation_id: id.map(str::to_owned),
            target: target.into(),
            arguments: raw(args),
            stream_ids: vec![],
        }))
        .await
    }

    /// The next message other than Ping, with MessagePack completions and stream items in the
    /// JSON shape.
    async fn next(&mut self) -> Result<Value> {
        let msg = self.inner.next_message(T).await?;
        let Some(items) = msg.get("raw").and_then(Value::as_array) else {
            return Ok(msg);
        };
        let at = |i: usize| items.get(i).cloned().unwrap_or(Value::Null);
        Ok(match msg["type"].as_u64() {
            Some(2) => json!({"type": 2, "invocationId": at(2), "item": at(3)}),
            Some(3) => match at(3).as_u64() {
                Some(1) => json!({"type": 3, "invocationId": at(2), "error": at(4)}),
                Some(3) => json!({"type": 3, "invocationId": at(2), "result": at(4)}),
                _ => json!({"type": 3, "invocationId": at(2)}),
            },
            _ => msg,
        })
    }
}

#[tokio::test]
async fn echo_identity_and_lifecycle_in_both_protocols() -> Result<()> {
    let mut s = setup().await;
    for protocol in ["json", "messagepack"] {
        let mut c = s.client("alice", protocol, &[("role", "admin")]).await?;
        assert_eq!(s.event().await, "connected alice");
        c.invoke(Some("1"), "Echo", "[\"hello\"]").await?;
        assert_eq!(
            c.next().await?,
            json!({"type": 3, "invocationId": "1", "result": "hello"})
        );
        c.invoke(Some("2"), "WhoAmI", "[]").await?;
        assert_eq!(
            c.next().await?,
            json!({"type": 3, "invocationId": "2", "result": [c.id(), "alice", "admin"]})
        );
        c.invoke(Some("3"), "Fail", "[]").await?;
        assert_eq!(
            c.next().await?["error"],
            "An unexpected error occurred invoking 'Fail' on the server. HubException: nope"
        );
        c.invoke(Some("4"), "Missing", "[]").await?;
        assert_eq!(
            c.next().await?["error"],
            "Failed to invoke 'Missing' due to an error on the server. HubException: Method does not exist."
        );
        assert!(s.server.connection_exists(&c.id()).await?);
        c.inner.close().await;
        assert_eq!(s.event().await, "disconnected alice");
    }
    assert!(!s.server.connection_exists("no-such-connection").await?);
    assert!(!s.server.user_exists("nobody").await?);
    Ok(())
}

#[tokio::test]
async fn broadcast_others_and_caller() -> Result<()> {
    let mut s = setup().await;
    let mut a = s.client("alice", "json", &[]).await?;
    let mut b = s.client("bob", "messagepack", &[]).await?;
    s.event().await;
    s.event().await;
    a.invoke(Some("1"), "Broadcast", "[\"hi all\"]").await?;
    // The broadcast and the caller's Completion take different paths through the service, so
    // the caller may see them in either order (as with Azure).
    let mut seen = vec![a.next().await?, a.next().await?];
    seen.sort_by_key(|m| m["type"].as_u64());
    assert_eq!(
        seen,
        [
            json!({"type": 1, "target": "newMessage", "arguments": ["alice", "hi all"]}),
            json!({"type": 3, "invocationId": "1"}),
        ]
    );
    assert_eq!(
        b.inner.expect_invocation("newMessage", T).await?,
        json!(["alice", "hi all"])
    );

    b.invoke(None, "Others", "[\"psst\"]").await?;
    assert_eq!(
        a.inner.expect_invocation("fromOther", T).await?,
        json!(["psst"])
    );
    assert_eq!(
        b.inner.expect_invocation("fromSelf", T).await?,
        json!(["psst"])
    );

    // From the app, outside any hub call.
    s.server
        .clients()
        .all()
        .send("notice", ("server", 1))
        .await?;
    for c in [&mut a, &mut b] {
        assert_eq!(
            c.inner.expect_invocation("notice", T).await?,
            json!(["server", 1])
        );
    }
    s.server.clients().client(b.id()).send("direct", ()).await?;
    assert_eq!(b.inner.expect_invocation("direct", T).await?, json!([]));
    Ok(())
}

#[tokio::test]
async fn groups_and_users() -> Result<()> {
    let s = setup().await;
    let mut a = s.client("alice", "json", &[]).await?;
    let mut b = s.client("bob", "messagepack", &[]).await?;
    let mut b2 = s.client("bob", "json", &[]).await?;

    a.invoke(Some("1"), "Join", "[\"room\"]").await?;
    assert_eq!(a.next().await?["result"], true);
    b.invoke(Some("1"), "Join", "[\"room\"]").await?;
    assert_eq!(b.next().await?["result"], true);
    assert!(s.server.group_exists("room").await?);

    b2.invoke(None, "ToGroup", "[\"room\",\"hello room\"]")
        .await?;
    for c in [&mut a, &mut b] {
        assert_eq!(
            c.inner.expect_invocation("groupMessage", T).await?,
            json!(["room", "hello room"])
        );
    }
    a.invoke(Some("2"), "Leave", "[\"room\"]").await?;
    assert_eq!(a.next().await?["result"], true);
    s.server
        .clients()
        .group("room")
        .send("afterLeave", ())
        .await?;
    assert_eq!(b.inner.expect_invocation("afterLeave", T).await?, json!([]));

    // User sends reach every connection of the user, and only those.
    s.server.clients().user("bob").send("forBob", (1,)).await?;
    assert_eq!(b.inner.expect_invocation("forBob", T).await?, json!([1]));
    assert_eq!(b2.inner.expect_invocation("forBob", T).await?, json!([1]));
    s.server
        .clients()
        .users(["alice"])
        .send("forAlice", ())
        .await?;
    assert_eq!(a.inner.expect_invocation("forAlice", T).await?, json!([]));
    assert!(s.server.user_exists("bob").await?);

    // Groups managed from the app.
    assert!(s.server.groups().add(&b2.id(), "vip").await?);
    s.server.clients().group("vip").send("vipOnly", ()).await?;
    assert_eq!(b2.inner.expect_invocation("vipOnly", T).await?, json!([]));
    Ok(())
}

#[tokio::test]
async fn streams_both_ways() -> Result<()> {
    let s = setup().await;
    for protocol in ["json", "messagepack"] {
        let mut c = s.client("alice", protocol, &[]).await?;
        c.send(&HubMessage::StreamInvocation(Invocation {
            headers: vec![],
            invocation_id: Some("s1".into()),
            target: "Counter".into(),
            arguments: raw("[3]"),
            stream_ids: vec![],
        }))
        .await?;
        for n in 0..3 {
            assert_eq!(
                c.next().await?,
                json!({"type": 2, "invocationId": "s1", "item": n})
            );
        }
        assert_eq!(c.next().await?, json!({"type": 3, "invocationId": "s1"}));

        c.send(&HubMessage::StreamInvocation(Invocation {
            headers: vec![],
            invocation_id: Some("s2".into()),
            target: "Forever".into(),
            arguments: raw("[]"),
            stream_ids: vec![],
        }))
        .await?;
        assert_eq!(c.next().await?["type"], 2);
        c.send(&HubMessage::CancelInvocation(CancelInvocation {
            headers: vec![],
            invocation_id: "s2".into(),
        }))
        .await?;
        loop {
            let msg = c.next().await?;
            if msg["type"] == 3 {
                assert_eq!(msg, json!({"type": 3, "invocationId": "s2"}));
                break;
            }
        }

        c.send(&HubMessage::Invocation(Invocation {
            headers: vec![],
            invocation_id: Some("u1".into()),
            target: "Sum".into(),
            arguments: raw("[]"),
            stream_ids: vec!["up".into()],
        }))
        .await?;
        for n in [5, 6, 7] {
            c.send(&HubMessage::StreamItem(StreamItem {
                headers: vec![],
                invocation_id: "up".into(),
                item: raw(&n.to_string()),
            }))
            .await?;
        }
        c.send(&HubMessage::Completion(Completion {
            headers: vec![],
            invocation_id: "up".into(),
            outcome: CompletionOutcome::Void,
        }))
        .await?;
        assert_eq!(
            c.next().await?,
            json!({"type": 3, "invocationId": "u1", "result": 18})
        );
    }
    Ok(())
}

/// Answers the next server-to-client invocation of `target` with `result`.
async fn answer(c: &mut Client, target: &str, result: &str) -> Result<()> {
    let msg = c.next().await?;
    if msg["type"] != 1 || msg["target"] != target {
        bail!("expected an invocation of {target}, got {msg}");
    }
    let id = msg["invocationId"]
        .as_str()
        .context("client results carry an id")?;
    c.send(&HubMessage::Completion(Completion {
        headers: vec![],
        invocation_id: id.to_owned(),
        outcome: CompletionOutcome::Result(raw(result)),
    }))
    .await
}

#[tokio::test]
async fn client_results_local_and_through_another_server() -> Result<()> {
    let s = setup().await;
    for protocol in ["json", "messagepack"] {
        let mut c = s.client("alice", protocol, &[]).await?;
        c.invoke(Some("1"), "AskCaller", "[]").await?;
        answer(&mut c, "GetNumber", "21").await?;
        assert_eq!(
            c.next().await?,
            json!({"type": 3, "invocationId": "1", "result": 42})
        );

        let server = s.server.clone();
        let id = c.id();
        let call = tokio::spawn(async move {
            server
                .clients()
                .client(id)
                .invoke::<String, _>("Name", ())
                .await
        });
        answer(&mut c, "Name", "\"alice's client\"").await?;
        assert_eq!(call.await??, "alice's client");
    }

    // A second app server asks a client that is routed to the first one: ClientInvocation
    // through the service, the first server answers as router with ClientCompletion.
    let (tx, _other_events) = mpsc::channel(8);
    let other = HubServer::builder(s.cs.clone(), "chat", hub(tx))
        .connection_count(1)
        .server_id("app-2")
        .start()?;
    other.wait_connected(1, T).await?;
    let mut pinned = s
        .client(
            "carol",
            "json",
            &[("asrs.s.sn", "app-1"), ("asrs.s.ssticky", "Required")],
        )
        .await?;
    let id = pinned.id();
    assert!(s.server.local_connection_ids().contains(&id));
    let call = tokio::spawn(async move {
        other
            .clients()
            .client(id)
            .invoke::<i64, _>("GetNumber", ())
            .await
    });
    answer(&mut pinned, "GetNumber", "99").await?;
    assert_eq!(call.await??, 99);
    Ok(())
}

#[tokio::test]
async fn app_closes_and_graceful_stop() -> Result<()> {
    let mut s = setup().await;
    let mut a = s.client("alice", "json", &[]).await?;
    assert_eq!(s.event().await, "connected alice");
    s.server.close_connection(&a.id(), Some("kicked")).await?;
    let close = a.inner.next_close(T).await?;
    assert_eq!(close["error"], "kicked");
    a.inner.wait_closed(T).await?;
    assert_eq!(s.event().await, "disconnected alice");

    let mut b = s.client("bob", "messagepack", &[]).await?;
    assert_eq!(s.event().await, "connected bob");
    tokio::time::timeout(Duration::from_secs(10), s.server.stop()).await?;
    assert_eq!(s.event().await, "disconnected bob");
    // The broker closes the clients of a hub server that left.
    let close = b.inner.next_close(T).await?;
    assert_eq!(close["type"], 7);
    assert_eq!(s.server.connected_count(), 0);
    Ok(())
}
