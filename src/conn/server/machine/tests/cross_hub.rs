//! The hub-server connection machine's unit tests for clients of other hubs: a message that
//! addresses one by id is ignored (as for an unknown id) and counted, never delivered.

use bytes::Bytes;

use super::*;

/// A world with this hub's client `c1` and client `b1` of hub `other`.
fn with_foreign_client() -> Fake {
    let world = with_client(None);
    let outbox = Outbox::new(16, 1 << 20);
    let foreign = ConnHandle::new("b1".into(), None, HubProtocol::Json, outbox);
    world.index.insert("other".into(), foreign);
    world
}

fn refused(metrics: &Metrics) -> u64 {
    metrics.server_cross_hub_refused.load(Ordering::Relaxed)
}

#[test]
fn connection_data_for_another_hubs_client_is_ignored_and_counted() {
    let (mut m, metrics) = open(with_foreign_client());
    assert!(m.on_message(connection_data("b1")).is_empty());
    assert_eq!(refused(&metrics), 1);
    assert_eq!(metrics.outbox_dropped.load(Ordering::Relaxed), 0);
}

#[test]
fn multi_connection_data_reaches_only_this_hubs_clients() {
    let (mut m, metrics) = open(with_foreign_client());
    let actions = m.on_message(M::MultiConnectionData {
        connection_list: vec!["b1".into(), "c1".into()],
        payloads: json("j"),
        extensions: Extensions::default(),
    });
    let [Action::Deliver(conn, _)] = &actions[..] else {
        panic!("{actions:?}")
    };
    assert_eq!(conn.id().as_str(), "c1");
    assert_eq!(refused(&metrics), 1);
}

#[test]
fn close_connection_for_another_hubs_client_is_ignored_and_counted() {
    let (mut m, metrics) = open(with_foreign_client());
    let actions = m.on_message(M::CloseConnection {
        connection_id: "b1".into(),
        error_message: None,
        headers: Default::default(),
        extensions: Extensions::default(),
    });
    assert!(actions.is_empty(), "{actions:?}");
    assert_eq!(refused(&metrics), 1);
}

#[test]
fn client_invocation_for_another_hubs_client_is_answered_as_for_a_missing_one() {
    let (mut m, metrics) = open(with_foreign_client());
    let actions = m.on_message(M::ClientInvocation {
        invocation_id: "inv".into(),
        connection_id: "b1".into(),
        caller_server_id: SELF_ID.into(),
        payloads: json("call"),
        extensions: Extensions::default(),
    });
    let [
        Action::Reply(M::ErrorCompletion {
            connection_id,
            error,
            ..
        }),
    ] = &actions[..]
    else {
        panic!("{actions:?}")
    };
    assert_eq!(connection_id, "b1");
    assert_eq!(
        error.as_deref(),
        Some("The client connection does not exist.")
    );
    assert_eq!(refused(&metrics), 1);
}

#[test]
fn completions_for_another_hubs_client_are_ignored_and_counted() {
    let (mut m, metrics) = open(with_foreign_client());
    let completion = M::ClientCompletion {
        invocation_id: "inv".into(),
        connection_id: "b1".into(),
        caller_server_id: "other-caller".into(),
        protocol: "json".into(),
        payload: Bytes::from_static(b"r"),
        extensions: Extensions::default(),
    };
    let actions = m.on_message(completion);
    assert!(
        !actions.iter().any(|a| matches!(
            a,
            Action::Untrack(..) | Action::Hub(HubOp::SendToServer(..), _)
        )),
        "{actions:?}"
    );
    let error = M::ErrorCompletion {
        invocation_id: "inv".into(),
        connection_id: "b1".into(),
        caller_server_id: "other-caller".into(),
        error: Some("no".into()),
        extensions: Extensions::default(),
    };
    let actions = m.on_message(error);
    assert!(
        !actions.iter().any(|a| matches!(
            a,
            Action::Untrack(..) | Action::Hub(HubOp::SendToServer(..), _)
        )),
        "{actions:?}"
    );
    assert_eq!(refused(&metrics), 2);
}
