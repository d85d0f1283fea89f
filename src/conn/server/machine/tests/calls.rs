//! The hub-server connection machine's unit tests for calls between servers and clients:
//! client invocations and completions, the `ping` sub-protocol, access keys and group member
//! queries.

use bytes::Bytes;

use super::*;

fn invocation(caller: &str) -> M {
    M::ClientInvocation {
        invocation_id: "inv".into(),
        connection_id: "c1".into(),
        caller_server_id: caller.into(),
        payloads: json("call"),
        extensions: Extensions::default(),
    }
}

#[test]
fn client_invocation_for_a_client_routed_elsewhere_is_tracked_and_forwarded() {
    let (router, _rx) = router_handle();
    let (mut m, _) = open(with_client(Some(router)));
    let actions = m.on_message(invocation(SELF_ID));
    let [
        Action::Track(_, inv, caller),
        Action::Forward(to, frame),
        Action::Invoke(conn, bytes),
    ] = &actions[..]
    else {
        panic!("{actions:?}")
    };
    assert_eq!((inv.as_str(), caller.as_str()), ("inv", SELF_ID));
    assert_eq!(to.server_id(), "router");
    assert_eq!(frame, &service::encode(&invocation(SELF_ID)));
    assert_eq!(conn.id().as_str(), "c1");
    assert_eq!(&bytes[..], b"call");
}

#[test]
fn client_invocation_from_the_router_itself_is_only_delivered() {
    let (router, _rx) = router_handle();
    let (mut m, _) = open(with_client(Some(router)));
    let actions = m.on_message(invocation("router"));
    assert!(matches!(&actions[..], [Action::Invoke(..)]));
}

#[test]
fn client_invocation_for_a_missing_client_answers_an_error_completion() {
    let (mut m, _) = open(fake());
    let actions = m.on_message(invocation("caller"));
    let [
        M::ErrorCompletion {
            error,
            caller_server_id,
            ..
        },
    ] = &reply_of(&actions)[..]
    else {
        panic!("{actions:?}")
    };
    assert_eq!(caller_server_id, "caller");
    assert!(error.is_some());
}

#[test]
fn completions_untrack_and_go_to_another_caller() {
    let (mut m, _) = open(with_client(None));
    let completion = M::ClientCompletion {
        invocation_id: "inv".into(),
        connection_id: "c1".into(),
        caller_server_id: "other".into(),
        protocol: "json".into(),
        payload: Bytes::from_static(b"r"),
        extensions: Extensions::default(),
    };
    let actions = m.on_message(completion.clone());
    let [
        Action::Untrack(_, inv),
        Action::Hub(HubOp::SendToServer(to, frame), Then::Nothing),
    ] = &actions[..]
    else {
        panic!("{actions:?}")
    };
    assert_eq!((inv.as_str(), to.as_str()), ("inv", "other"));
    assert_eq!(frame, &service::encode(&completion));
    // Our own invocation: nothing to forward.
    let actions = m.on_message(M::ErrorCompletion {
        invocation_id: "inv".into(),
        connection_id: "c1".into(),
        caller_server_id: SELF_ID.into(),
        error: None,
        extensions: Extensions::default(),
    });
    assert!(matches!(&actions[..], [Action::Untrack(..)]));
}

#[test]
fn ping_sub_protocol() {
    let mut world = fake();
    world.has_clients = true;
    let (mut m, _) = open(world);
    assert_eq!(
        reply_of(&m.on_message(ping(&["status"]))),
        vec![&service::ping(&[("status", "1")])]
    );
    assert_eq!(
        reply_of(&m.on_message(ping(&["echo", "abc"]))),
        vec![&service::ping(&[("echo", "abc")])]
    );
    let actions = m.on_message(ping(&["servers"]));
    assert!(matches!(
        &actions[..],
        [Action::Hub(HubOp::ServerIds, Then::ServerIds)]
    ));
    let ids = Ok(vec!["a".to_owned(), "b".to_owned()]);
    assert_eq!(
        reply_of(&m.on_server_ids(ids, 42)),
        vec![&service::ping(&[("servers", "42:a;b")])]
    );
    assert!(m.on_server_ids(Err(HubGone), 42).is_empty());
    assert!(m.on_message(ping(&[])).is_empty());
    assert!(m.on_message(ping(&["shutdown", "other"])).is_empty());
}

#[test]
fn shutdown_fin_is_answered_with_finack() {
    let (mut m, _) = open(fake());
    let actions = m.on_message(ping(&["shutdown", "fin:0"]));
    let [
        Action::Hub(HubOp::ShutdownServer, Then::Ignore),
        Action::Reply(reply),
    ] = &actions[..]
    else {
        panic!("{actions:?}")
    };
    assert_eq!(reply, &service::ping(&[("shutdown", "finack")]));
}

#[test]
fn access_key_request_is_refused() {
    let (mut m, _) = open(fake());
    let actions = m.on_message(M::AccessKeyRequest {
        token: Some("t".into()),
        kid: Some("k".into()),
        extensions: Extensions::default(),
    });
    let [
        M::AccessKeyResponse {
            kid,
            access_key,
            error_type,
            ..
        },
    ] = &reply_of(&actions)[..]
    else {
        panic!("{actions:?}")
    };
    assert_eq!(kid.as_deref(), Some("k"));
    assert!(access_key.is_none());
    assert_eq!(error_type.as_deref(), Some("NotSupportedException"));
    let M::AccessKeyResponse { error_message, .. } = reply_of(&actions)[0] else {
        panic!("{actions:?}")
    };
    assert_eq!(
        error_message.as_deref(),
        Some(
            "Switchboard does not issue access keys for Microsoft Entra identities; use an \
             access key in the connection string."
        )
    );
}

#[test]
fn group_member_query_answers_with_the_member_list() {
    let (mut m, _) = open(fake());
    let actions = m.on_message(M::GroupMemberQuery {
        extensions: Extensions::default(),
        group_name: "g".into(),
        ack_id: 3,
        max: 100,
        continuation_token: None,
    });
    assert!(matches!(
        &actions[..],
        [Action::Hub(HubOp::GroupConnections(_), Then::Members(3))]
    ));
    let members = vec![
        Member {
            connection_id: "c1".into(),
            user_id: Some("u".into()),
        },
        Member {
            connection_id: "c2".into(),
            user_id: None,
        },
    ];
    let actions = m.on_members(3, Ok(members));
    let [
        M::Ack {
            ack_id: 3,
            status,
            payload: Some(p),
            ..
        },
    ] = &reply_of(&actions)[..]
    else {
        panic!("{actions:?}")
    };
    assert_eq!(*status, ack_status::OK);
    // [[["c1","u"],["c2",nil]],nil]
    assert_eq!(&p[..], b"\x92\x92\x92\xa2c1\xa1u\x92\xa2c2\xc0\xc0");
    assert!(matches!(
        &m.on_members(3, Err(HubGone.into()))[..],
        [Action::Close(Closing::HubGone)]
    ));
}

/// Another hub server's connection, with a small outbox.
fn router_handle() -> (ServerConnHandle, crate::peer::ServerOutbox) {
    let bounds = crate::peer::ServerOutboxBounds {
        frames: 4,
        bytes: 1 << 20,
    };
    ServerConnHandle::new(
        "router".into(),
        ConnectionType::Default,
        bounds,
        Arc::default(),
    )
}
