//! `switchboard::upstream` against a real HTTP server (the shared fake upstream, actix-web on
//! 127.0.0.1:0) that records every request: exact `X-ASRS-*` headers, signatures verified on the receiving side, bodies,
//! status → Completion mapping, timeouts, connection failures and event retries, the per-host
//! concurrency bound and the response size cap.
//!
//! The server's behaviour is chosen per request by the `mode` query parameter of the URL:
//! `ok` (200 + `body`), `status` (`code`, body `nope`), `empty` (200, no body), `hold` (wait
//! until the test releases it, then 200), `big` (200 with `n` bytes, Content-Length),
//! `chunked` (200 with `n` bytes, chunked), `big_status` (500 with `n` bytes). Nothing here
//! waits to prove an absence: the concurrency test polls the waiting call by hand.
#![allow(unreachable_pub)]

#[path = "common/fake_upstream.rs"]
mod fake_upstream;

use std::future::Future as _;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use actix_web::HttpResponse;
use bytes::Bytes;
use fake_upstream::{FakeUpstream, Gate, Recorded, assert_signed_with_every_key};
use switchboard::protocol::HubProtocol;
use switchboard::upstream::{
    Category, UpstreamClient, UpstreamConnection, UpstreamError, UpstreamOptions, UpstreamRequest,
    UpstreamResponse, UpstreamRule, UpstreamRules, completion_for,
};

/// The two access keys every request is signed with (the keys of the signature vectors).
const KEYS: [&str; 2] = [
    "7aab239577fd4f24bc919802fb629f5f",
    "a5f2815d0d0c4b00bd27e832432f91ab",
];
/// Upper bound for anything that should happen promptly (a failing test, not a timing claim).
const T: Duration = Duration::from_secs(10);

fn keys() -> Vec<String> {
    KEYS.iter().map(|k| (*k).to_owned()).collect()
}

/// The fake upstream's answer, chosen by the `mode` query parameter (see the top of the file).
async fn answer(r: Recorded, gate: Gate) -> HttpResponse {
    let size = || r.query_param("n").parse::<usize>().expect("n");
    match r.query_param("mode").as_str() {
        "ok" => HttpResponse::Ok().body(r.query_param("body")),
        "status" => {
            let code = r.query_param("code").parse::<u16>().expect("code");
            HttpResponse::build(actix_web::http::StatusCode::from_u16(code).expect("status"))
                .body("nope")
        }
        "empty" => HttpResponse::Ok().finish(),
        "hold" => {
            if gate.wait().await {
                HttpResponse::Ok().body("released")
            } else {
                HttpResponse::ServiceUnavailable().finish()
            }
        }
        "big" => HttpResponse::Ok().body(vec![b'x'; size()]),
        "big_status" => HttpResponse::InternalServerError().body(vec![b'x'; size()]),
        "chunked" => {
            let n = size();
            let chunks: Vec<Result<Bytes, actix_web::Error>> = (0..n)
                .step_by(100)
                .map(|start| Ok(Bytes::from(vec![b'y'; (n - start).min(100)])))
                .collect();
            HttpResponse::Ok().streaming(futures_util::stream::iter(chunks))
        }
        other => HttpResponse::BadRequest().body(format!("unknown mode {other:?}")),
    }
}

fn options() -> UpstreamOptions {
    UpstreamOptions {
        timeout_secs: 5,
        ..UpstreamOptions::default()
    }
}

fn alice() -> UpstreamConnection {
    UpstreamConnection {
        hub: "chat".to_owned(),
        connection_id: "0f9c97a2f0bf4706afe87a14e0797b11".to_owned(),
        user_id: Some("alice".to_owned()),
        claims: vec![
            ("asrs.s.uid".to_owned(), "alice".to_owned()),
            ("role".to_owned(), "admin".to_owned()),
            ("role".to_owned(), "user".to_owned()),
        ],
        client_query: "?hub=chat&id=abc%20d".to_owned(),
    }
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut v: Vec<_> = list
        .iter()
        .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
        .collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connected_event_carries_every_header_and_a_verifiable_signature() {
    let mut server = FakeUpstream::start(answer);
    let rules = UpstreamRules::new(&[UpstreamRule::from_template(&format!(
        "{}/hooks/{{hub}}/{{category}}/{{event}}?mode=ok",
        server.base
    ))])
    .unwrap();
    let conn = alice();
    let url = rules
        .resolve(&conn.hub, Category::Connections, "connected")
        .unwrap()
        .unwrap();
    let client = UpstreamClient::new(options()).unwrap();
    let response = client
        .call_event(&UpstreamRequest::connected(url, &conn), &keys())
        .await
        .unwrap();
    assert_eq!(response.status, 200);
    server.arrival().await;

    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    let r = &requests[0];
    assert_eq!(r.method, "POST");
    assert_eq!(r.path, "/hooks/chat/connections/connected");
    assert_eq!(r.query, "mode=ok");
    assert_eq!(
        r.asrs_headers(),
        pairs(&[
            ("x-asrs-connection-id", "0f9c97a2f0bf4706afe87a14e0797b11"),
            ("x-asrs-hub", "chat"),
            ("x-asrs-category", "connections"),
            ("x-asrs-event", "connected"),
            ("x-asrs-user-id", "alice"),
            (
                "x-asrs-user-claims",
                "asrs.s.uid: alice, role: admin, role: user"
            ),
            ("x-asrs-client-query", "?hub=chat&id=abc%20d"),
            (
                "x-asrs-signature",
                "sha256=7767effcb3946f3e1de039df4b986ef02c110b1469d02c0a06f41b3b727ab561,\
                 sha256=d4aefb65547a00a9881fa8ac8bd03d0faf77af9da5205d45c6e57cbda4377760"
            ),
        ])
    );
    assert_signed_with_every_key(r, &keys());
    assert_eq!(r.header_str("content-type"), Some("application/json"));
    assert_eq!(&r.body[..], b"{\"type\":10}");
    assert_eq!(client.stats().requests, 1);
    assert_eq!(client.stats().failures, 0);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnected_event_of_an_anonymous_connection() {
    let mut server = FakeUpstream::start(answer);
    let conn = UpstreamConnection {
        hub: "chat".to_owned(),
        connection_id: "conn-2".to_owned(),
        user_id: None,
        claims: vec![],
        client_query: "?hub=chat".to_owned(),
    };
    let url = format!("{}/events?mode=status&code=204", server.base);
    let client = UpstreamClient::new(options()).unwrap();
    let only_key = vec![KEYS[1].to_owned()];
    let request =
        UpstreamRequest::disconnected(url, &conn, Some("Connection closed with an error."));
    let response = client.call_event(&request, &only_key).await.unwrap();
    assert_eq!(response.status, 204);
    server.arrival().await;

    let r = &server.requests()[0];
    let signature = r.header_str("x-asrs-signature").unwrap().to_owned();
    assert_eq!(
        r.asrs_headers(),
        pairs(&[
            ("x-asrs-connection-id", "conn-2"),
            ("x-asrs-hub", "chat"),
            ("x-asrs-category", "connections"),
            ("x-asrs-event", "disconnected"),
            ("x-asrs-client-query", "?hub=chat"),
            ("x-asrs-signature", &signature),
        ])
    );
    assert_signed_with_every_key(r, &only_key);
    assert_eq!(r.header_str("content-type"), Some("application/json"));
    let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(
        body,
        serde_json::json!({"type": 11, "error": "Connection closed with an error."})
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invocations_in_both_protocols_and_their_completions() {
    let mut server = FakeUpstream::start(answer);
    let conn = alice();
    let client = UpstreamClient::new(options()).unwrap();
    let rules = UpstreamRules::new(&[
        UpstreamRule {
            url_template: format!(
                "{}/m/{{event}}?mode=ok&body=%7B%22type%22%3A3%2C%22invocationId%22%3A%221%22%2C%22result%22%3A42%7D%1E",
                server.base
            ),
            hub_pattern: "chat".to_owned(),
            category_pattern: "messages".to_owned(),
            event_pattern: "send it".to_owned(),
        },
        UpstreamRule {
            url_template: format!("{}/m/{{event}}?mode=empty", server.base),
            hub_pattern: "chat".to_owned(),
            category_pattern: "messages".to_owned(),
            event_pattern: "*".to_owned(),
        },
    ])
    .unwrap();

    // JSON: the upstream's framed Completion goes to the client verbatim.
    let json_body = Bytes::from_static(
        b"{\"type\":1,\"invocationId\":\"1\",\"target\":\"send it\",\"arguments\":[\"hi\"]}",
    );
    let url = rules
        .resolve("chat", Category::Messages, "send it")
        .unwrap()
        .unwrap();
    let request =
        UpstreamRequest::invocation(url, &conn, "send it", HubProtocol::Json, json_body.clone());
    let result = client.call(&request, &keys()).await;
    let completion = completion_for(&result, HubProtocol::Json, "1");
    assert_eq!(
        &completion[..],
        b"{\"type\":3,\"invocationId\":\"1\",\"result\":42}\x1e"
    );
    server.arrival().await;

    // MessagePack: an empty 200 becomes a void Completion.
    let mp_body = Bytes::from_static(b"\x96\x01\x80\xa12\xa5other\x91\xa2hi\x90");
    let url = rules
        .resolve("chat", Category::Messages, "other")
        .unwrap()
        .unwrap();
    let request = UpstreamRequest::invocation(
        url,
        &conn,
        "other",
        HubProtocol::MessagePack,
        mp_body.clone(),
    );
    let result = client.call(&request, &keys()).await;
    assert_eq!(
        result,
        Ok(UpstreamResponse {
            status: 200,
            body: Bytes::new()
        })
    );
    assert_eq!(
        &completion_for(&result, HubProtocol::MessagePack, "2")[..],
        b"\x06\x94\x03\x80\xa12\x02"
    );
    server.arrival().await;

    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    let (json, mp) = (&requests[0], &requests[1]);
    assert_eq!(json.path, "/m/send%20it");
    assert_eq!(json.header_str("x-asrs-event"), Some("send it"));
    assert_eq!(json.header_str("x-asrs-category"), Some("messages"));
    assert_eq!(json.header_str("content-type"), Some("application/json"));
    assert_eq!(json.body, json_body);
    assert_eq!(mp.path, "/m/other");
    assert_eq!(mp.header_str("x-asrs-event"), Some("other"));
    assert_eq!(mp.header_str("content-type"), Some("application/x-msgpack"));
    assert_eq!(mp.body, mp_body);
    for r in &requests {
        assert_signed_with_every_key(r, &keys());
        assert_eq!(r.header_str("x-asrs-user-id"), Some("alice"));
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statuses_are_responses_not_errors() {
    let server = FakeUpstream::start(answer);
    let client = UpstreamClient::new(options()).unwrap();
    let conn = alice();
    for code in [403u16, 404, 500, 302] {
        let url = format!("{}/s?mode=status&code={code}", server.base);
        let request = UpstreamRequest::invocation(
            url,
            &conn,
            "send",
            HubProtocol::Json,
            Bytes::from_static(b"{}"),
        );
        // Not retried, not followed (302 has no Location anyway, and redirects are off).
        let result = client.call_event(&request, &keys()).await;
        assert_eq!(
            result,
            Ok(UpstreamResponse {
                status: code,
                body: Bytes::from_static(b"nope")
            })
        );
        let completion = completion_for(&result, HubProtocol::Json, "9");
        let text = format!(
            "{{\"type\":3,\"invocationId\":\"9\",\"error\":\"Invocation failed, status code {code}\"}}\x1e"
        );
        assert_eq!(String::from_utf8_lossy(&completion), text);
    }
    let stats = client.stats();
    assert_eq!(stats.requests, 4);
    assert_eq!(stats.error_statuses, 4);
    assert_eq!(stats.retries, 0);
    assert_eq!(stats.failures, 0);
    assert_eq!(server.requests().len(), 4);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_past_the_timeout_fails_with_timeout() {
    let mut server = FakeUpstream::start(answer);
    let client = UpstreamClient::new(UpstreamOptions {
        timeout_secs: 1,
        event_retries: 3,
        ..UpstreamOptions::default()
    })
    .unwrap();
    let url = format!("{}/slow?mode=hold", server.base);
    let request = UpstreamRequest::connected(url, &alice());
    // The server never answers; only the client's timeout can end the call. Events do not
    // retry timeouts.
    let result = tokio::time::timeout(T, client.call_event(&request, &keys()))
        .await
        .expect("the upstream timeout should fire well before the test's");
    assert_eq!(result, Err(UpstreamError::Timeout));
    assert_eq!(server.arrival().await, "/slow?mode=hold");
    let stats = client.stats();
    assert_eq!(
        (
            stats.requests,
            stats.timeouts,
            stats.failures,
            stats.retries
        ),
        (1, 1, 1, 0)
    );
    assert_eq!(
        &completion_for(&result, HubProtocol::Json, "1")[..],
        b"{\"type\":3,\"invocationId\":\"1\",\"error\":\"Invocation failed, status code 500\"}\x1e"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_refused_is_retried_for_events_only() {
    // A port that was just bound and released: nothing listens there.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let client = UpstreamClient::new(UpstreamOptions {
        event_retries: 2,
        retry_base_ms: 10,
        ..options()
    })
    .unwrap();
    let url = format!("http://127.0.0.1:{port}/events");
    let request = UpstreamRequest::connected(url, &alice());

    let result = client.call_event(&request, &keys()).await;
    assert!(
        matches!(result, Err(UpstreamError::Connect(_))),
        "{result:?}"
    );
    let stats = client.stats();
    assert_eq!((stats.requests, stats.retries, stats.failures), (3, 2, 3));

    // A plain call is never retried.
    let result = client.call(&request, &keys()).await;
    assert!(
        matches!(result, Err(UpstreamError::Connect(_))),
        "{result:?}"
    );
    let stats = client.stats();
    assert_eq!((stats.requests, stats.retries, stats.failures), (4, 2, 4));
    assert_eq!(
        &completion_for(&result, HubProtocol::Json, "1")[..],
        b"{\"type\":3,\"invocationId\":\"1\",\"error\":\"Invocation failed, status code 500\"}\x1e"
    );

    // With no retries configured, one attempt.
    let once = UpstreamClient::new(UpstreamOptions {
        event_retries: 0,
        ..options()
    })
    .unwrap();
    assert!(matches!(
        once.call_event(&request, &keys()).await,
        Err(UpstreamError::Connect(_))
    ));
    assert_eq!((once.stats().requests, once.stats().retries), (1, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrency_is_bounded_per_host_and_a_full_queue_fails_fast() {
    let mut server = FakeUpstream::start(answer);
    let mut other = FakeUpstream::start(answer);
    let client = UpstreamClient::new(UpstreamOptions {
        max_concurrency_per_host: 2,
        max_queue_per_host: 1,
        timeout_secs: 30,
        ..UpstreamOptions::default()
    })
    .unwrap();
    let conn = alice();
    let base = server.base.clone();
    let hold = |n: usize| {
        UpstreamRequest::invocation(
            format!("{base}/hold/{n}?mode=hold"),
            &conn,
            "send",
            HubProtocol::Json,
            Bytes::from_static(b"{}"),
        )
    };

    // Two requests take both slots and are held by the server.
    let spawn = |request: UpstreamRequest| {
        let client = client.clone();
        tokio::spawn(async move { client.call(&request, &keys()).await })
    };
    let a = spawn(hold(1));
    let b = spawn(hold(2));
    let mut arrived = vec![server.arrival().await, server.arrival().await];
    arrived.sort();
    assert_eq!(arrived, ["/hold/1?mode=hold", "/hold/2?mode=hold"]);

    // A third waits for a slot: polled once, it is pending (queued, not sent).
    let third = hold(3);
    let keys = keys();
    let mut c = Box::pin(client.call(&third, &keys));
    let first_poll = std::future::poll_fn(|cx| Poll::Ready(c.as_mut().poll(cx))).await;
    assert!(first_poll.is_pending(), "{first_poll:?}");

    // A fourth finds the queue full and fails at once, without reaching the server.
    let d = tokio::time::timeout(T, client.call(&hold(4), &keys))
        .await
        .expect("an overloaded call must not wait");
    assert_eq!(d, Err(UpstreamError::Overloaded));
    assert_eq!(
        &completion_for(&d, HubProtocol::Json, "4")[..],
        &b"{\"type\":3,\"invocationId\":\"4\",\"error\":\"Invocation failed, too many pending upstream requests.\"}\x1e"[..]
    );
    assert_eq!(server.requests().len(), 2);

    // The bound is per host: another upstream is unaffected.
    let elsewhere = UpstreamRequest::connected(format!("{}/e?mode=ok", other.base), &conn);
    assert_eq!(
        client.call(&elsewhere, &keys).await.map(|r| r.status),
        Ok(200)
    );
    other.arrival().await;

    // Releasing one held request frees a slot for the queued one.
    server.release(1);
    let c_arrival = tokio::select! {
        arrival = server.arrival() => arrival,
        result = &mut c => panic!("the queued call finished before reaching the server: {result:?}"),
    };
    assert_eq!(c_arrival, "/hold/3?mode=hold");
    server.release(2);
    let c = tokio::time::timeout(T, c)
        .await
        .expect("queued call answers");
    assert_eq!(c.map(|r| r.status), Ok(200));
    for task in [a, b] {
        let result = tokio::time::timeout(T, task)
            .await
            .expect("held call answers")
            .expect("task");
        assert_eq!(result.map(|r| r.body), Ok(Bytes::from_static(b"released")));
    }
    assert_eq!(server.requests().len(), 3);
    let stats = client.stats();
    assert_eq!(
        (stats.requests, stats.overloaded, stats.failures),
        (4, 1, 0)
    );

    // Once drained, the queue accepts again.
    let again = UpstreamRequest::connected(format!("{}/again?mode=ok", server.base), &conn);
    assert_eq!(client.call(&again, &keys).await.map(|r| r.status), Ok(200));
    server.stop().await;
    other.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn response_bodies_are_capped() {
    let server = FakeUpstream::start(answer);
    let client = UpstreamClient::new(UpstreamOptions {
        max_response_size: 1024,
        ..options()
    })
    .unwrap();
    let conn = alice();
    let call = |query: String| {
        let request = UpstreamRequest::invocation(
            format!("{}/r?{query}", server.base),
            &conn,
            "send",
            HubProtocol::Json,
            Bytes::from_static(b"{}"),
        );
        let client = client.clone();
        async move { client.call(&request, &keys()).await }
    };

    // Exactly at the limit is fine, with or without Content-Length.
    let at_limit = call("mode=big&n=1024".to_owned()).await.unwrap();
    assert_eq!((at_limit.status, at_limit.body.len()), (200, 1024));
    let chunked = call("mode=chunked&n=1024".to_owned()).await.unwrap();
    assert_eq!((chunked.status, chunked.body.len()), (200, 1024));
    assert!(chunked.body.iter().all(|&b| b == b'y'));

    // One byte more is too large: announced by Content-Length, or found while reading.
    for query in [
        "mode=big&n=1025",
        "mode=chunked&n=1025",
        "mode=chunked&n=100000",
    ] {
        let result = call(query.to_owned()).await;
        assert_eq!(result, Err(UpstreamError::ResponseTooLarge), "{query}");
        assert_eq!(
            &completion_for(&result, HubProtocol::Json, "5")[..],
            &b"{\"type\":3,\"invocationId\":\"5\",\"error\":\"Invocation failed, response too large.\"}\x1e"[..]
        );
    }

    // The body of another status is ignored, so an oversized one is dropped, not an error.
    let status = call("mode=big_status&n=5000".to_owned()).await;
    assert_eq!(
        status,
        Ok(UpstreamResponse {
            status: 500,
            body: Bytes::new()
        })
    );
    let stats = client.stats();
    assert_eq!(
        (stats.requests, stats.failures, stats.error_statuses),
        (6, 3, 1)
    );
    server.stop().await;
}

#[tokio::test]
async fn the_client_is_shareable() {
    fn assert_send_sync<T: Send + Sync + Clone + 'static>() {}
    assert_send_sync::<UpstreamClient>();
    let client = UpstreamClient::new(UpstreamOptions::default()).unwrap();
    let clone = client.clone();
    let invalid = UpstreamRequest::connected("not a url".to_owned(), &alice());
    assert!(matches!(
        clone.call(&invalid, &keys()).await,
        Err(UpstreamError::Other(_))
    ));
    // Shared counters; an invalid URL is refused before any request is sent.
    assert_eq!(client.stats().requests, 0);
    let _shared: Arc<UpstreamClient> = Arc::new(client);
}

/// Reads one HTTP/1.1 request (head and `Content-Length` body) from `s`; `false` at EOF.
async fn read_request(s: &mut tokio::net::TcpStream) -> bool {
    use tokio::io::AsyncReadExt;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map_or(0, |v| v.trim().parse().unwrap_or(0));
            if buf.len() >= end + 4 + len {
                return true;
            }
        }
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_lost_on_a_kept_alive_connection_the_upstream_closed_is_sent_again() {
    use tokio::io::AsyncWriteExt;
    // The upstream answers the first request on a kept-alive connection, then closes that
    // connection when the next request arrives on it, without answering (as an upstream that
    // restarts or ends idle connections does, racing the broker's reuse). Every later
    // connection is answered normally.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let served = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = served.clone();
    let server = tokio::spawn(async move {
        let mut first = true;
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            let closes_second = std::mem::take(&mut first);
            let counted = counted.clone();
            tokio::spawn(async move {
                let mut n = 0;
                while read_request(&mut s).await {
                    n += 1;
                    if closes_second && n == 2 {
                        return; // dropped: closed without an answer
                    }
                    counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let _ = s
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                        .await;
                }
            });
        }
    });
    let conn = alice();
    let client = UpstreamClient::new(UpstreamOptions {
        retry_base_ms: 10,
        ..options()
    })
    .unwrap();
    let url = format!("{base}/events");
    let connected = UpstreamRequest::connected(url.clone(), &conn);
    assert_eq!(
        client.call_event(&connected, &keys()).await.unwrap().status,
        200
    );
    // The second goes out on the kept-alive connection, which closes: sent again on a new one.
    assert_eq!(
        client.call_event(&connected, &keys()).await.unwrap().status,
        200
    );
    assert_eq!(served.load(std::sync::atomic::Ordering::SeqCst), 2);
    assert_eq!(client.stats().retries, 1);
    server.abort();
}
