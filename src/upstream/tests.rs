//! Unit tests of the pure parts of the upstream module: signatures, request bodies and
//! headers, completion mapping, options. Rule matching and settings parsing are tested in
//! `rules.rs`; the HTTP behaviour in `tests/upstream.rs`.

use bytes::Bytes;

use super::client::{header_value, headers};
use super::*;
use crate::protocol::RawValue;

fn conn() -> UpstreamConnection {
    UpstreamConnection {
        hub: "chat".to_owned(),
        connection_id: "0f9c97a2f0bf4706afe87a14e0797b11".to_owned(),
        user_id: Some("alice".to_owned()),
        claims: vec![
            ("nameid".to_owned(), "alice".to_owned()),
            ("role".to_owned(), "admin".to_owned()),
        ],
        client_query: "?hub=chat&id=abc".to_owned(),
    }
}

#[test]
fn signature_vectors() {
    // The Functions extension's test vectors (docs/protocol.md#upstream-requests).
    let id = "0f9c97a2f0bf4706afe87a14e0797b11";
    let k1 = "7aab239577fd4f24bc919802fb629f5f".to_owned();
    let k2 = "a5f2815d0d0c4b00bd27e832432f91ab".to_owned();
    let s1 = "sha256=7767effcb3946f3e1de039df4b986ef02c110b1469d02c0a06f41b3b727ab561";
    let s2 = "sha256=d4aefb65547a00a9881fa8ac8bd03d0faf77af9da5205d45c6e57cbda4377760";
    assert_eq!(signature(std::slice::from_ref(&k1), id), s1);
    assert_eq!(signature(std::slice::from_ref(&k2), id), s2);
    assert_eq!(
        signature(&[k1.clone(), k2.clone()], id),
        format!("{s1},{s2}")
    );
    assert_eq!(signature(&[k2, k1], id), format!("{s2},{s1}"));
    assert_eq!(signature(&[], id), "");
    // Keys and ids are UTF-8; an empty key is still a key.
    assert_eq!(signature(&["".to_owned()], "").len(), "sha256=".len() + 64);
    assert_ne!(
        signature(&["é".to_owned()], id),
        signature(&["e".to_owned()], id)
    );
}

#[test]
fn connection_event_requests() {
    let c = conn();
    let r = UpstreamRequest::connected("http://u/".to_owned(), &c);
    assert_eq!(r.url, "http://u/");
    assert_eq!(r.category, Category::Connections);
    assert_eq!(r.event, "connected");
    assert_eq!(&r.body[..], b"{\"type\":10}");
    assert_eq!(r.content_type, "application/json");
    assert_eq!(r.hub, "chat");
    assert_eq!(r.connection_id, c.connection_id);
    assert_eq!(r.user_id.as_deref(), Some("alice"));
    assert_eq!(r.claims, c.claims);
    assert_eq!(r.client_query, c.client_query);

    let d = UpstreamRequest::disconnected("http://u/".to_owned(), &c, None);
    assert_eq!(d.event, "disconnected");
    assert_eq!(d.category, Category::Connections);
    assert_eq!(&d.body[..], b"{\"type\":11}");
    assert_eq!(d.content_type, "application/json");

    let e = UpstreamRequest::disconnected("http://u/".to_owned(), &c, Some("bad \"x\"\n é"));
    assert_eq!(
        std::str::from_utf8(&e.body).unwrap(),
        "{\"type\":11,\"error\":\"bad \\\"x\\\"\\n é\"}"
    );
    let parsed: serde_json::Value = serde_json::from_slice(&e.body).unwrap();
    assert_eq!(
        parsed,
        serde_json::json!({"type": 11, "error": "bad \"x\"\n é"})
    );
    let empty = UpstreamRequest::disconnected("http://u/".to_owned(), &c, Some(""));
    assert_eq!(&empty.body[..], b"{\"type\":11,\"error\":\"\"}");
}

#[test]
fn invocation_requests_and_bodies() {
    let inv = Invocation {
        headers: vec![],
        invocation_id: Some("1".to_owned()),
        target: "send".to_owned(),
        arguments: RawValue::Json(Bytes::from_static(b"[\"hi\",2]")),
        stream_ids: vec![],
    };
    let json = unframed_invocation(HubProtocol::Json, &inv).unwrap();
    assert_eq!(
        &json[..],
        b"{\"type\":1,\"invocationId\":\"1\",\"target\":\"send\",\"arguments\":[\"hi\",2]}"
    );
    let mp = unframed_invocation(HubProtocol::MessagePack, &inv).unwrap();
    // [1, {}, "1", "send", ["hi", 2], []] without the VarInt prefix.
    assert_eq!(&mp[..], b"\x96\x01\x80\xa11\xa4send\x92\xa2hi\x02\x90");
    // Both are exactly what the framed encoders write, minus the framing.
    let framed = HubProtocol::Json
        .encode(&HubMessage::Invocation(inv.clone()))
        .unwrap();
    assert_eq!(&framed[..framed.len() - 1], &json[..]);
    let framed = HubProtocol::MessagePack
        .encode(&HubMessage::Invocation(inv.clone()))
        .unwrap();
    assert_eq!(&framed[1..], &mp[..]);
    assert_eq!(usize::from(framed[0]), mp.len());

    let c = conn();
    let r =
        UpstreamRequest::invocation("http://u/".to_owned(), &c, "send", HubProtocol::Json, json);
    assert_eq!(r.category, Category::Messages);
    assert_eq!(r.event, "send");
    assert_eq!(r.content_type, "application/json");
    let r = UpstreamRequest::invocation(
        "http://u/".to_owned(),
        &c,
        "send",
        HubProtocol::MessagePack,
        mp.clone(),
    );
    assert_eq!(r.content_type, "application/x-msgpack");
    assert_eq!(r.body, mp);
    assert_eq!(Category::Connections.as_str(), "connections");
    assert_eq!(Category::Messages.as_str(), "messages");
}

fn header<'a>(map: &'a reqwest::header::HeaderMap, name: &str) -> Option<&'a [u8]> {
    let all: Vec<_> = map.get_all(name).iter().collect();
    assert!(all.len() <= 1, "{name} appears {} times", all.len());
    all.first().map(|v| v.as_bytes())
}

#[test]
fn request_headers() {
    // The signature vectors' keys; conn() uses the vectors' connection id.
    let keys = vec![
        "7aab239577fd4f24bc919802fb629f5f".to_owned(),
        "a5f2815d0d0c4b00bd27e832432f91ab".to_owned(),
    ];
    let c = conn();
    let r = UpstreamRequest::connected("http://u/".to_owned(), &c);
    let map = headers(&r, &keys);
    let expect: [(&str, &[u8]); 9] = [
        ("x-asrs-connection-id", b"0f9c97a2f0bf4706afe87a14e0797b11"),
        ("x-asrs-hub", b"chat"),
        ("x-asrs-category", b"connections"),
        ("x-asrs-event", b"connected"),
        ("x-asrs-user-id", b"alice"),
        ("x-asrs-user-claims", b"nameid: alice, role: admin"),
        ("x-asrs-client-query", b"?hub=chat&id=abc"),
        (
            "x-asrs-signature",
            b"sha256=7767effcb3946f3e1de039df4b986ef02c110b1469d02c0a06f41b3b727ab561,\
              sha256=d4aefb65547a00a9881fa8ac8bd03d0faf77af9da5205d45c6e57cbda4377760",
        ),
        ("content-type", b"application/json"),
    ];
    for (name, value) in expect {
        assert_eq!(header(&map, name), Some(value), "{name}");
    }
    assert_eq!(map.len(), expect.len());

    // Anonymous, no claims, no query, no keys: those headers are omitted.
    let anonymous = UpstreamConnection {
        user_id: None,
        claims: vec![],
        client_query: String::new(),
        ..conn()
    };
    let r = UpstreamRequest::invocation(
        "http://u/".to_owned(),
        &anonymous,
        "send",
        HubProtocol::MessagePack,
        Bytes::new(),
    );
    let map = headers(&r, &[]);
    for name in [
        "x-asrs-user-id",
        "x-asrs-user-claims",
        "x-asrs-client-query",
        "x-asrs-signature",
    ] {
        assert_eq!(header(&map, name), None, "{name}");
    }
    assert_eq!(header(&map, "x-asrs-category"), Some(&b"messages"[..]));
    assert_eq!(header(&map, "x-asrs-event"), Some(&b"send"[..]));
    assert_eq!(
        header(&map, "content-type"),
        Some(&b"application/x-msgpack"[..])
    );
    let empty_user = UpstreamConnection {
        user_id: Some(String::new()),
        client_query: "hub=chat".to_owned(),
        ..conn()
    };
    let map = headers(
        &UpstreamRequest::connected("http://u/".to_owned(), &empty_user),
        &[],
    );
    assert_eq!(header(&map, "x-asrs-user-id"), None);
    assert_eq!(header(&map, "x-asrs-client-query"), Some(&b"?hub=chat"[..]));
}

#[test]
fn header_values_carry_utf8_and_drop_control_characters() {
    assert_eq!(header_value("plain").as_bytes(), b"plain");
    assert_eq!(header_value("José 日本").as_bytes(), "José 日本".as_bytes());
    assert_eq!(header_value("a\r\nb\0c\x7fd\te").as_bytes(), b"a  b c d\te");
    assert_eq!(header_value("").as_bytes(), b"");
}

fn ok(status: u16, body: &'static [u8]) -> Result<UpstreamResponse, UpstreamError> {
    Ok(UpstreamResponse {
        status,
        body: Bytes::from_static(body),
    })
}

#[test]
fn completion_table_json() {
    let p = HubProtocol::Json;
    let void = b"{\"type\":3,\"invocationId\":\"7\"}\x1e";
    let error =
        |text: &str| format!("{{\"type\":3,\"invocationId\":\"7\",\"error\":\"{text}\"}}\x1e");
    let framed = b"{\"type\":3,\"invocationId\":\"7\",\"result\":42}\x1e";
    let table: Vec<(Result<UpstreamResponse, UpstreamError>, Vec<u8>)> = vec![
        (ok(200, framed), framed.to_vec()),
        // Verbatim, even when it is not a Completion at all.
        (ok(200, b"anything"), b"anything".to_vec()),
        (ok(200, b""), void.to_vec()),
        (ok(204, b""), void.to_vec()),
        (ok(204, b"ignored"), void.to_vec()),
        (
            ok(201, b"x"),
            error("Invocation failed, status code 201").into_bytes(),
        ),
        (
            ok(403, b""),
            error("Invocation failed, status code 403").into_bytes(),
        ),
        (
            ok(404, framed),
            error("Invocation failed, status code 404").into_bytes(),
        ),
        (
            ok(500, b""),
            error("Invocation failed, status code 500").into_bytes(),
        ),
        (
            ok(302, b""),
            error("Invocation failed, status code 302").into_bytes(),
        ),
        (
            Err(UpstreamError::Timeout),
            error("Invocation failed, status code 500").into_bytes(),
        ),
        (
            Err(UpstreamError::Connect("refused".to_owned())),
            error("Invocation failed, status code 500").into_bytes(),
        ),
        (
            Err(UpstreamError::Other("reset".to_owned())),
            error("Invocation failed, status code 500").into_bytes(),
        ),
        (
            Err(UpstreamError::ResponseTooLarge),
            error("Invocation failed, response too large.").into_bytes(),
        ),
        (
            Err(UpstreamError::Overloaded),
            error("Invocation failed, too many pending upstream requests.").into_bytes(),
        ),
    ];
    for (result, want) in table {
        let got = completion_for(&result, p, "7");
        assert_eq!(
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(&want),
            "{result:?}"
        );
    }
}

/// The MessagePack completions, read back with `rmpv` (independent of the crate's codec).
#[test]
fn completion_table_messagepack() {
    use rmpv::Value;
    let p = HubProtocol::MessagePack;
    let decode = |bytes: &Bytes| -> Value {
        let (len, prefix) = crate::protocol::framing::read_varint(bytes)
            .unwrap()
            .unwrap();
        assert_eq!(prefix + len, bytes.len(), "one whole frame");
        rmpv::decode::read_value(&mut &bytes[prefix..]).unwrap()
    };
    let header = || vec![Value::from(3), Value::Map(vec![]), Value::from("id-1")];
    let void = Value::Array([header(), vec![Value::from(2)]].concat());
    let error =
        |text: &str| Value::Array([header(), vec![Value::from(1), Value::from(text)]].concat());

    assert_eq!(decode(&completion_for(&ok(200, b""), p, "id-1")), void);
    assert_eq!(decode(&completion_for(&ok(204, b""), p, "id-1")), void);
    assert_eq!(
        decode(&completion_for(&ok(403, b""), p, "id-1")),
        error("Invocation failed, status code 403")
    );
    assert_eq!(
        decode(&completion_for(&Err(UpstreamError::Timeout), p, "id-1")),
        error("Invocation failed, status code 500")
    );
    assert_eq!(
        decode(&completion_for(
            &Err(UpstreamError::ResponseTooLarge),
            p,
            "id-1"
        )),
        error(TOO_LARGE_ERROR)
    );
    assert_eq!(
        decode(&completion_for(&Err(UpstreamError::Overloaded), p, "id-1")),
        error(OVERLOADED_ERROR)
    );
    let framed = Bytes::from_static(b"\x06\x94\x03\x80\xa11\x02");
    assert_eq!(
        completion_for(
            &Ok(UpstreamResponse {
                status: 200,
                body: framed.clone()
            }),
            p,
            "id-1"
        ),
        framed
    );
    // The crate's own decoder agrees.
    let decoded = p
        .decode(&completion_for(&ok(500, b""), p, "id-1"), 1024)
        .unwrap()
        .unwrap();
    assert_eq!(
        decoded.message,
        Some(HubMessage::Completion(Completion {
            headers: vec![],
            invocation_id: "id-1".to_owned(),
            outcome: CompletionOutcome::Error("Invocation failed, status code 500".to_owned()),
        }))
    );
}

#[test]
fn options() {
    let d = UpstreamOptions::default();
    assert_eq!(d.timeout_secs, 30);
    assert_eq!(d.max_response_size, 16 * 1024 * 1024);
    assert_eq!(d.validate(), Ok(()));
    for (bad, field) in [
        (
            UpstreamOptions {
                timeout_secs: 0,
                ..d.clone()
            },
            "timeout_secs",
        ),
        (
            UpstreamOptions {
                max_concurrency_per_host: 0,
                ..d.clone()
            },
            "max_concurrency_per_host",
        ),
        (
            UpstreamOptions {
                max_response_size: 0,
                ..d.clone()
            },
            "max_response_size",
        ),
    ] {
        let err = bad.validate().unwrap_err();
        assert!(err.starts_with(field), "{err}");
        assert!(UpstreamClient::new(bad).is_err());
    }
    assert!(
        UpstreamOptions {
            max_queue_per_host: 0,
            ..d.clone()
        }
        .validate()
        .is_ok()
    );

    let parsed: UpstreamOptions = toml::from_str("timeout_secs = 5\nevent_retries = 0\n").unwrap();
    assert_eq!(
        parsed,
        UpstreamOptions {
            timeout_secs: 5,
            event_retries: 0,
            ..UpstreamOptions::default()
        }
    );
    assert!(toml::from_str::<UpstreamOptions>("timeout = 5\n").is_err());
}

#[test]
fn retry_back_off_doubles_and_is_capped() {
    let o = UpstreamOptions {
        retry_base_ms: 500,
        ..UpstreamOptions::default()
    };
    let ms = |n| o.retry_delay(n).as_millis();
    assert_eq!(
        [ms(1), ms(2), ms(3), ms(4), ms(5)],
        [500, 1000, 2000, 4000, 8000]
    );
    assert_eq!(o.retry_delay(6), MAX_RETRY_DELAY);
    assert_eq!(o.retry_delay(u32::MAX), MAX_RETRY_DELAY);
    let huge = UpstreamOptions {
        retry_base_ms: u64::MAX,
        ..UpstreamOptions::default()
    };
    assert_eq!(huge.retry_delay(3), MAX_RETRY_DELAY);
}

#[test]
fn error_texts() {
    assert_eq!(
        UpstreamError::Timeout.to_string(),
        "upstream request timed out"
    );
    assert_eq!(
        UpstreamError::Connect("refused".to_owned()).to_string(),
        "cannot connect to upstream: refused"
    );
}
