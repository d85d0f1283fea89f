//! Hub method invocation against the fake service: results in both protocols, the ASP.NET Core
//! error texts, non-blocking calls, per-client ordering, server-to-client and upload streams,
//! client results (local and through the service).

use std::time::Duration;

use serde_json::json;

use super::{Harness, PROTOCOLS, completion, invocation, test_options};
use crate::protocol::service::{Extensions, ServiceMessage};
use crate::protocol::{
    CancelInvocation, Completion, CompletionOutcome, HubMessage, HubProtocol, Invocation, RawValue,
    StreamItem,
};
use crate::{Context, Hub, HubError, HubServerOptions, SdkError};

fn raw_json(text: &str) -> RawValue {
    RawValue::Json(bytes::Bytes::copy_from_slice(text.as_bytes()))
}

#[tokio::test]
async fn results_in_both_protocols() {
    let mut h = Harness::start(test_options()).await;
    for p in PROTOCOLS {
        let id = format!("c-{}", p.name());
        h.conn.open_client(&id, p, &[], "").await;
        h.conn
            .client_send(&id, p, &invocation(Some("1"), "Echo", "[\"hi\"]"))
            .await;
        h.conn
            .client_send(&id, p, &invocation(Some("2"), "Add", "[40,2]"))
            .await;
        h.conn
            .client_send(&id, p, &invocation(Some("3"), "Void", "[]"))
            .await;
        // Method names are matched case-insensitively, as in .NET.
        h.conn
            .client_send(&id, p, &invocation(Some("4"), "echo", "[\"lower\"]"))
            .await;
        let mut got = Vec::new();
        for _ in 0..4 {
            got.push(completion(&h.conn.client_recv(&id, p).await));
        }
        assert_eq!(
            got,
            vec![
                ("1".into(), json!({"result": "hi"})),
                ("2".into(), json!({"result": 42})),
                ("3".into(), json!({})),
                ("4".into(), json!({"result": "lower"})),
            ],
            "{}",
            p.name()
        );
    }
}

#[tokio::test]
async fn error_texts_match_aspnet_core() {
    let mut h = Harness::start(test_options()).await;
    h.conn.open_client("c1", HubProtocol::Json, &[], "").await;
    let cases = [
        (
            invocation(Some("1"), "Nope", "[]"),
            "Failed to invoke 'Nope' due to an error on the server. HubException: Method does not exist.",
        ),
        (
            invocation(Some("2"), "Add", "[\"x\",1]"),
            "Failed to invoke 'Add' due to an error on the server.",
        ),
        (
            invocation(Some("3"), "Add", "[1]"),
            "Failed to invoke 'Add' due to an error on the server.",
        ),
        (
            invocation(Some("4"), "Fail", "[]"),
            "An unexpected error occurred invoking 'Fail' on the server. HubException: nope",
        ),
        (
            invocation(Some("5"), "Internal", "[]"),
            "An unexpected error occurred invoking 'Internal' on the server.",
        ),
        (
            invocation(Some("6"), "Panic", "[]"),
            "An unexpected error occurred invoking 'Panic' on the server.",
        ),
        (
            invocation(Some("7"), "Counter", "[1]"),
            "The client attempted to invoke the streaming 'Counter' method with a non-streaming invocation.",
        ),
        (
            invocation(Some("8"), "Sum", "[0]"),
            "An unexpected error occurred invoking 'Sum' on the server. HubException: Client sent 0 stream(s), Hub method expects 1.",
        ),
    ];
    for (msg, _) in &cases {
        h.conn.client_send("c1", HubProtocol::Json, msg).await;
    }
    let mut stream = invocation(Some("9"), "Echo", "[\"x\"]");
    if let HubMessage::Invocation(inv) = stream {
        stream = HubMessage::StreamInvocation(inv);
    }
    h.conn.client_send("c1", HubProtocol::Json, &stream).await;
    for (i, (_, text)) in cases.iter().enumerate() {
        let (id, v) = completion(&h.conn.client_recv("c1", HubProtocol::Json).await);
        assert_eq!(id, (i + 1).to_string());
        assert_eq!(v, json!({ "error": text }));
    }
    let (id, v) = completion(&h.conn.client_recv("c1", HubProtocol::Json).await);
    assert_eq!(id, "9");
    assert_eq!(
        v,
        json!({"error": "The client attempted to invoke the non-streaming 'Echo' method with a streaming invocation."})
    );
}

#[tokio::test]
async fn detailed_errors_add_the_details() {
    let hub = Hub::builder()
        .detailed_errors(true)
        .method("Add", |_ctx: Context, (a, b): (i64, i64)| async move {
            Ok::<_, HubError>(a + b)
        })
        .method("Internal", |_ctx: Context, (): ()| async move {
            Err::<(), _>(HubError::internal("secret detail"))
        })
        .build();
    let (_tx, events) = tokio::sync::mpsc::channel(1);
    let mut h = Harness::start_with(test_options(), hub, events).await;
    h.conn.open_client("c1", HubProtocol::Json, &[], "").await;
    h.conn
        .client_send(
            "c1",
            HubProtocol::Json,
            &invocation(Some("1"), "Add", "[\"x\",1]"),
        )
        .await;
    h.conn
        .client_send(
            "c1",
            HubProtocol::Json,
            &invocation(Some("2"), "Internal", "[]"),
        )
        .await;
    assert_eq!(
        completion(&h.conn.client_recv("c1", HubProtocol::Json).await).1,
        json!({"error": "Failed to invoke 'Add' due to an error on the server. InvalidDataException: Error binding arguments. Make sure that the types of the provided values match the types of the hub method being invoked."})
    );
    assert_eq!(
        completion(&h.conn.client_recv("c1", HubProtocol::Json).await).1,
        json!({"error": "An unexpected error occurred invoking 'Internal' on the server. Exception: secret detail"})
    );
}

#[tokio::test]
async fn non_blocking_invocations_get_no_answer_and_order_is_kept() {
    let mut h = Harness::start(test_options()).await;
    h.conn.open_client("c1", HubProtocol::Json, &[], "").await;
    h.conn
        .client_send("c1", HubProtocol::Json, &invocation(None, "Fail", "[]"))
        .await;
    h.conn
        .client_send("c1", HubProtocol::Json, &invocation(None, "Nope", "[]"))
        .await;
    // A slow call first, a quick one second: .NET runs one invocation at a time per client.
    h.conn
        .client_send(
            "c1",
            HubProtocol::Json,
            &invocation(Some("1"), "Slow", "[150,\"slow\"]"),
        )
        .await;
    h.conn
        .client_send(
            "c1",
            HubProtocol::Json,
            &invocation(Some("2"), "Slow", "[0,\"quick\"]"),
        )
        .await;
    let first = completion(&h.conn.client_recv("c1", HubProtocol::Json).await);
    let second = completion(&h.conn.client_recv("c1", HubProtocol::Json).await);
    assert_eq!(first, ("1".into(), json!({"result": "slow"})));
    assert_eq!(second, ("2".into(), json!({"result": "quick"})));

    // Another client is not held up by this one's slow call.
    h.conn.open_client("c2", HubProtocol::Json, &[], "").await;
    h.conn
        .client_send(
            "c1",
            HubProtocol::Json,
            &invocation(Some("3"), "Slow", "[300,\"slow\"]"),
        )
        .await;
    h.conn
        .client_send(
            "c2",
            HubProtocol::Json,
            &invocation(Some("1"), "Echo", "[\"fast\"]"),
        )
        .await;
    let started = std::time::Instant::now();
    assert_eq!(
        completion(&h.conn.client_recv("c2", HubProtocol::Json).await),
        ("1".into(), json!({"result": "fast"}))
    );
    assert!(started.elapsed() < Duration::from_millis(250));
}

#[tokio::test]
async fn server_to_client_streams_and_cancel() {
    let mut h = Harness::start(test_options()).await;
    for p in PROTOCOLS {
        let id = format!("c-{}", p.name());
        h.conn.open_client(&id, p, &[], "").await;
        let HubMessage::Invocation(mut inv) = invocation(Some("s1"), "Counter", "[3]") else {
            unreachable!()
        };
        h.conn
            .client_send(&id, p, &HubMessage::StreamInvocation(inv.clone()))
            .await;
        for expected in 0..3 {
            let HubMessage::StreamItem(item) = h.conn.client_recv(&id, p).await else {
                panic!("expected an item")
            };
            assert_eq!(item.invocation_id, "s1");
            assert_eq!(super::json(&item.item), json!(expected));
        }
        assert_eq!(
            completion(&h.conn.client_recv(&id, p).await),
            ("s1".into(), json!({}))
        );

        // An endless stream, cancelled by the client: a void Completion ends it.
        inv.invocation_id = Some("s2".into());
        inv.target = "Forever".into();
        inv.arguments = raw_json("[]");
        h.conn
            .client_send(&id, p, &HubMessage::StreamInvocation(inv.clone()))
            .await;
        assert!(matches!(
            h.conn.client_recv(&id, p).await,
            HubMessage::StreamItem(_)
        ));
        // The same id again while it runs.
        h.conn
            .client_send(&id, p, &HubMessage::StreamInvocation(inv))
            .await;
        h.conn
            .client_send(
                &id,
                p,
                &HubMessage::CancelInvocation(CancelInvocation {
                    headers: vec![],
                    invocation_id: "s2".into(),
                }),
            )
            .await;
        let mut in_use = false;
        loop {
            match h.conn.client_recv(&id, p).await {
                HubMessage::StreamItem(_) => {}
                HubMessage::Completion(c) if c.outcome == CompletionOutcome::Void => break,
                HubMessage::Completion(c) => {
                    assert_eq!(
                        c.outcome,
                        CompletionOutcome::Error("Invocation ID 's2' is already in use.".into())
                    );
                    in_use = true;
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        assert!(in_use);

        // A stream that fails.
        let HubMessage::Invocation(mut broken) = invocation(Some("s3"), "Broken", "[]") else {
            unreachable!()
        };
        broken.stream_ids.clear();
        h.conn
            .client_send(&id, p, &HubMessage::StreamInvocation(broken))
            .await;
        assert!(matches!(
            h.conn.client_recv(&id, p).await,
            HubMessage::StreamItem(_)
        ));
        assert_eq!(
            completion(&h.conn.client_recv(&id, p).await).1,
            json!({"error": "An error occurred on the server while streaming results. HubException: broke"})
        );
    }
}

#[tokio::test]
async fn upload_streams_feed_the_method() {
    let mut h = Harness::start(test_options()).await;
    for p in PROTOCOLS {
        let id = format!("c-{}", p.name());
        h.conn.open_client(&id, p, &[], "").await;
        h.conn
            .client_send(
                &id,
                p,
                &HubMessage::Invocation(Invocation {
                    headers: vec![],
                    invocation_id: Some("7".into()),
                    target: "Sum".into(),
                    arguments: raw_json("[100]"),
                    stream_ids: vec!["0".into()],
                }),
            )
            .await;
        for n in 1..=3 {
            h.conn
                .client_send(
                    &id,
                    p,
                    &HubMessage::StreamItem(StreamItem {
                        headers: vec![],
                        invocation_id: "0".into(),
                        item: raw_json(&n.to_string()),
                    }),
                )
                .await;
        }
        // Other invocations still run while the upload is open.
        h.conn
            .client_send(&id, p, &invocation(Some("8"), "Echo", "[\"meanwhile\"]"))
            .await;
        assert_eq!(
            completion(&h.conn.client_recv(&id, p).await),
            ("8".into(), json!({"result": "meanwhile"}))
        );
        h.conn
            .client_send(
                &id,
                p,
                &HubMessage::Completion(Completion {
                    headers: vec![],
                    invocation_id: "0".into(),
                    outcome: CompletionOutcome::Void,
                }),
            )
            .await;
        assert_eq!(
            completion(&h.conn.client_recv(&id, p).await),
            ("7".into(), json!({"result": 106}))
        );

        // The client ends its stream with an error: the method sees it.
        h.conn
            .client_send(
                &id,
                p,
                &HubMessage::Invocation(Invocation {
                    headers: vec![],
                    invocation_id: Some("9".into()),
                    target: "Sum".into(),
                    arguments: raw_json("[0]"),
                    stream_ids: vec!["1".into()],
                }),
            )
            .await;
        h.conn
            .client_send(
                &id,
                p,
                &HubMessage::Completion(Completion {
                    headers: vec![],
                    invocation_id: "1".into(),
                    outcome: CompletionOutcome::Error("client gave up".into()),
                }),
            )
            .await;
        assert_eq!(
            completion(&h.conn.client_recv(&id, p).await).1,
            json!({"error": "An unexpected error occurred invoking 'Sum' on the server. HubException: client gave up"})
        );
    }
}

#[tokio::test]
async fn client_results_from_a_hub_method_and_from_the_app() {
    let mut h = Harness::start(test_options()).await;
    for p in PROTOCOLS {
        let id = format!("c-{}", p.name());
        h.conn.open_client(&id, p, &[], "").await;
        h.conn
            .client_send(&id, p, &invocation(Some("1"), "AskCaller", "[]"))
            .await;
        let HubMessage::Invocation(ask) = h.conn.client_recv(&id, p).await else {
            panic!("expected the server's invocation")
        };
        assert_eq!(ask.target, "GetNumber");
        assert_eq!(super::json(&ask.arguments), json!([7]));
        let inv_id = ask.invocation_id.clone().expect("an invocation id");
        h.conn
            .client_send(
                &id,
                p,
                &HubMessage::Completion(Completion {
                    headers: vec![],
                    invocation_id: inv_id,
                    outcome: CompletionOutcome::Result(raw_json("41")),
                }),
            )
            .await;
        assert_eq!(
            completion(&h.conn.client_recv(&id, p).await),
            ("1".into(), json!({"result": 42}))
        );

        // From the app, with an error answer.
        let server = h.server.clone();
        let target = id.clone();
        let call = tokio::spawn(async move {
            server
                .clients()
                .client(target)
                .invoke::<String, _>("Question", ("why",))
                .await
        });
        let HubMessage::Invocation(ask) = h.conn.client_recv(&id, p).await else {
            panic!("expected the server's invocation")
        };
        h.conn
            .client_send(
                &id,
                p,
                &HubMessage::Completion(Completion {
                    headers: vec![],
                    invocation_id: ask.invocation_id.unwrap(),
                    outcome: CompletionOutcome::Error("Client didn't provide a result.".into()),
                }),
            )
            .await;
        assert_eq!(
            call.await.unwrap(),
            Err(SdkError::ClientError(
                "Client didn't provide a result.".into()
            ))
        );
    }

    // The client leaves before answering.
    let server = h.server.clone();
    let call = tokio::spawn(async move {
        server
            .clients()
            .client("c-json")
            .invoke::<i32, _>("Never", ())
            .await
    });
    let _ = h.conn.client_recv("c-json", HubProtocol::Json).await;
    h.conn
        .send(&ServiceMessage::CloseConnection {
            connection_id: "c-json".into(),
            error_message: None,
            headers: vec![],
            extensions: Extensions::default(),
        })
        .await;
    assert_eq!(
        call.await.unwrap(),
        Err(SdkError::ClientDisconnected("c-json".into()))
    );
}

#[tokio::test]
async fn client_results_through_the_service() {
    let mut h = Harness::start(HubServerOptions {
        client_invocation_timeout: Duration::from_millis(300),
        ..test_options()
    })
    .await;
    // Caller role: the client is routed elsewhere.
    let server = h.server.clone();
    let call = tokio::spawn(async move {
        server
            .clients()
            .client("elsewhere")
            .invoke::<i64, _>("GetNumber", ())
            .await
    });
    let msg = h
        .conn
        .expect("ClientInvocation", |m| {
            matches!(m, ServiceMessage::ClientInvocation { .. })
        })
        .await;
    let ServiceMessage::ClientInvocation {
        invocation_id,
        connection_id,
        caller_server_id,
        payloads,
        ..
    } = msg
    else {
        unreachable!()
    };
    assert_eq!(connection_id, "elsewhere");
    assert_eq!(caller_server_id, "test-server");
    assert_eq!(payloads.len(), 2);
    let completion_bytes = HubProtocol::MessagePack
        .encode(&HubMessage::Completion(Completion {
            headers: vec![],
            invocation_id: invocation_id.clone(),
            outcome: CompletionOutcome::Result(raw_json("5")),
        }))
        .unwrap();
    h.conn
        .send(&ServiceMessage::ClientCompletion {
            invocation_id,
            connection_id,
            caller_server_id,
            protocol: "messagepack".into(),
            payload: completion_bytes,
            extensions: Extensions::default(),
        })
        .await;
    assert_eq!(call.await.unwrap(), Ok(5));

    // ErrorCompletion, and a timeout.
    let server = h.server.clone();
    let call = tokio::spawn(async move {
        server
            .clients()
            .client("elsewhere")
            .invoke::<i64, _>("GetNumber", ())
            .await
    });
    let ServiceMessage::ClientInvocation { invocation_id, .. } = h
        .conn
        .expect("ClientInvocation", |m| {
            matches!(m, ServiceMessage::ClientInvocation { .. })
        })
        .await
    else {
        unreachable!()
    };
    h.conn
        .send(&ServiceMessage::ErrorCompletion {
            invocation_id,
            connection_id: "elsewhere".into(),
            caller_server_id: "test-server".into(),
            error: Some("Connection disconnected.".into()),
            extensions: Extensions::default(),
        })
        .await;
    assert_eq!(
        call.await.unwrap(),
        Err(SdkError::ClientError("Connection disconnected.".into()))
    );
    assert_eq!(
        h.server
            .clients()
            .client("elsewhere")
            .invoke::<i64, _>("GetNumber", ())
            .await,
        Err(SdkError::InvocationTimeout(Duration::from_millis(300)))
    );

    // Router role: another server's invocation of a local client; the Completion goes back
    // to the caller server as ClientCompletion / ErrorCompletion.
    h.conn.open_client("r1", HubProtocol::Json, &[], "").await;
    h.conn
        .send(&ServiceMessage::ClientInvocation {
            invocation_id: "other-1".into(),
            connection_id: "r1".into(),
            caller_server_id: "other-server".into(),
            payloads: vec![],
            extensions: Extensions::default(),
        })
        .await;
    h.conn
        .client_send(
            "r1",
            HubProtocol::Json,
            &HubMessage::Completion(Completion {
                headers: vec![],
                invocation_id: "other-1".into(),
                outcome: CompletionOutcome::Result(raw_json("\"ok\"")),
            }),
        )
        .await;
    let msg = h
        .conn
        .expect("ClientCompletion", |m| {
            matches!(m, ServiceMessage::ClientCompletion { .. })
        })
        .await;
    assert_eq!(
        msg,
        ServiceMessage::ClientCompletion {
            invocation_id: "other-1".into(),
            connection_id: "r1".into(),
            caller_server_id: "other-server".into(),
            protocol: "json".into(),
            payload: bytes::Bytes::from_static(
                b"{\"type\":3,\"invocationId\":\"other-1\",\"result\":\"ok\"}\x1e"
            ),
            extensions: Extensions::default(),
        }
    );
}
