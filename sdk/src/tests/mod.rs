//! Unit tests of the SDK against a fake service ([`fake`]): the SDK's server connections talk to
//! a real WebSocket server in the test, which plays the service and its clients and checks every
//! byte the SDK sends.
//!
//! - `lifecycle.rs`: connecting, handshake and headers, reconnects, keep-alive, timeouts,
//!   graceful shutdown, on_connected / on_disconnected, closes.
//! - `invoke.rs`: hub methods, error texts, streaming both ways, ordering, client results.
//! - `send.rs`: multicast sends, groups and acks, existence checks.

mod fake;
mod invoke;
mod lifecycle;
mod send;

use std::time::Duration;

use futures_util::StreamExt as _;
use tokio::sync::mpsc;

use super::{Context, Hub, HubError, HubServer, HubServerOptions, UploadStream};
use crate::protocol::{HubMessage, HubProtocol, Invocation, RawValue};
use fake::FakeService;

/// Options for tests: one connection, quick reconnects.
pub(super) fn test_options() -> HubServerOptions {
    HubServerOptions {
        connection_count: 1,
        server_id: Some("test-server".into()),
        reconnect_base: Duration::from_millis(20),
        reconnect_max: Duration::from_millis(200),
        shutdown_timeout: Duration::from_secs(2),
        ..HubServerOptions::default()
    }
}

/// Hub events the test hub reports.
pub(super) type Events = mpsc::Receiver<String>;

/// A hub with one method per behaviour under test. Connect and disconnect events are reported
/// on the returned channel as `connected <id> <user>` / `disconnected <id> <error>`.
pub(super) fn test_hub() -> (Hub, Events) {
    let (tx, rx) = mpsc::channel(64);
    let on_connected = tx.clone();
    let on_disconnected = tx;
    let hub = Hub::builder()
        .on_connected(move |ctx: Context| {
            let events = on_connected.clone();
            async move {
                let _ = events
                    .send(format!(
                        "connected {} {}",
                        ctx.connection_id(),
                        ctx.user_id().unwrap_or("-")
                    ))
                    .await;
                if ctx.query_value("reject").is_some() {
                    return Err(HubError::new("no entry"));
                }
                Ok(())
            }
        })
        .on_disconnected(move |ctx: Context, error: Option<String>| {
            let events = on_disconnected.clone();
            async move {
                let _ = events
                    .send(format!(
                        "disconnected {} {}",
                        ctx.connection_id(),
                        error.as_deref().unwrap_or("-")
                    ))
                    .await;
            }
        })
        .method("Echo", |_ctx: Context, (text,): (String,)| async move {
            Ok::<_, HubError>(text)
        })
        .method("Add", |_ctx: Context, (a, b): (i64, i64)| async move {
            Ok::<_, HubError>(a + b)
        })
        .method("Void", |_ctx: Context, (): ()| async move {
            Ok::<_, HubError>(())
        })
        .method("Fail", |_ctx: Context, (): ()| async move {
            Err::<(), _>(HubError::new("nope"))
        })
        .method("Internal", |_ctx: Context, (): ()| async move {
            Err::<(), _>(HubError::internal("secret detail"))
        })
        .method("Panic", |_ctx: Context, (): ()| async move {
            if true {
                panic!("boom");
            }
            Ok::<(), HubError>(())
        })
        .method(
            "Slow",
            |_ctx: Context, (ms, tag): (u64, String)| async move {
                tokio::time::sleep(Duration::from_millis(ms)).await;
                Ok::<_, HubError>(tag)
            },
        )
        .method("WhoAmI", |ctx: Context, (): ()| async move {
            Ok::<_, HubError>((
                ctx.connection_id().to_owned(),
                ctx.user_id().map(str::to_owned),
                ctx.claim("role").map(str::to_owned),
                ctx.query_value("tag"),
                ctx.header("user-agent").map(str::to_owned),
                ctx.protocol().name(),
            ))
        })
        .method("AskCaller", |ctx: Context, (): ()| async move {
            let n: i64 = ctx.clients().caller().invoke("GetNumber", (7,)).await?;
            Ok::<_, HubError>(n + 1)
        })
        .method("Abort", |ctx: Context, (): ()| async move {
            ctx.abort().await?;
            Ok::<_, HubError>(())
        })
        .stream_method("Counter", |_ctx: Context, (n,): (u32,)| {
            futures_util::stream::iter(0..n)
        })
        .stream_method("Forever", |_ctx: Context, (): ()| {
            futures_util::stream::unfold(0u64, |n| async move {
                tokio::time::sleep(Duration::from_millis(10)).await;
                Some((n, n + 1))
            })
        })
        .try_stream_method("Broken", |_ctx: Context, (): ()| {
            futures_util::stream::iter(vec![Ok(1), Err(HubError::new("broke"))])
        })
        .upload_method(
            "Sum",
            |_ctx: Context, (start,): (i64,), mut items: UploadStream<i64>| async move {
                let mut sum = start;
                while let Some(item) = items.next().await {
                    sum += item?;
                }
                Ok::<_, HubError>(sum)
            },
        )
        .build();
    (hub, rx)
}

/// A started fake service, a hub server connected to it, and the hub's events.
pub(super) struct Harness {
    pub(super) service: FakeService,
    pub(super) server: HubServer,
    pub(super) conn: fake::FakeConn,
    pub(super) events: Events,
}

impl Harness {
    /// Starts everything with `options` (the test hub) and accepts the first connection.
    pub(super) async fn start(options: HubServerOptions) -> Self {
        let (hub, events) = test_hub();
        Self::start_with(options, hub, events).await
    }

    /// As [`start`](Self::start) with another hub.
    pub(super) async fn start_with(options: HubServerOptions, hub: Hub, events: Events) -> Self {
        let mut service = FakeService::start(0).await;
        let server = HubServer::builder(service.connection_string(), "Chat", hub)
            .options(options)
            .start()
            .unwrap();
        let conn = service.next_conn().await;
        server
            .wait_connected(1, fake::WAIT)
            .await
            .expect("connected");
        Self {
            service,
            server,
            conn,
            events,
        }
    }

    /// The next hub event.
    pub(super) async fn event(&mut self) -> String {
        tokio::time::timeout(fake::WAIT, self.events.recv())
            .await
            .expect("a hub event in time")
            .expect("events open")
    }
}

/// A blocking or non-blocking Invocation.
pub(super) fn invocation(id: Option<&str>, target: &str, args_json: &str) -> HubMessage {
    HubMessage::Invocation(Invocation {
        headers: vec![],
        invocation_id: id.map(str::to_owned),
        target: target.into(),
        arguments: RawValue::Json(bytes::Bytes::copy_from_slice(args_json.as_bytes())),
        stream_ids: vec![],
    })
}

/// The JSON view of a raw value (MessagePack transcoded).
pub(super) fn json(raw: &RawValue) -> serde_json::Value {
    let text = match raw {
        RawValue::Json(t) => t.to_vec(),
        RawValue::MessagePack(b) => {
            let mut out = Vec::new();
            crate::protocol::transcode::msgpack_to_json(b, &mut out).unwrap();
            out
        }
    };
    serde_json::from_slice(&text).unwrap()
}

/// The outcome of a Completion as JSON: `{"result": v}`, `{"error": e}` or `{}`.
pub(super) fn completion(msg: &HubMessage) -> (String, serde_json::Value) {
    use crate::protocol::CompletionOutcome;
    let HubMessage::Completion(c) = msg else {
        panic!("not a completion: {msg:?}")
    };
    let v = match &c.outcome {
        CompletionOutcome::Void => serde_json::json!({}),
        CompletionOutcome::Result(raw) => serde_json::json!({ "result": json(raw) }),
        CompletionOutcome::Error(e) => serde_json::json!({ "error": e }),
    };
    (c.invocation_id.clone(), v)
}

/// Whether `p` is a JSON client (for tests run with both protocols).
pub(super) const PROTOCOLS: [HubProtocol; 2] = [HubProtocol::Json, HubProtocol::MessagePack];
