//! Decision tables for the routing functions.

use bytes::Bytes;

use super::*;
use crate::protocol::{
    CancelInvocation, Close, Completion, CompletionOutcome, Invocation, RawValue, StreamItem,
};

fn inv(id: Option<&str>) -> Invocation {
    Invocation {
        headers: vec![],
        invocation_id: id.map(str::to_owned),
        target: "Send".into(),
        arguments: RawValue::Json(Bytes::from_static(b"[]")),
        stream_ids: vec![],
    }
}

#[test]
fn admission_table() {
    use ServiceMode::*;
    let table = [
        (
            Serverless,
            false,
            Admission::Accept(ClientRoute::Serverless),
        ),
        (Serverless, true, Admission::Accept(ClientRoute::Serverless)),
        (
            Default,
            false,
            Admission::Reject(NO_SERVER_DEFAULT_MODE.into()),
        ),
        (
            Classic,
            false,
            Admission::Accept(ClientRoute::ServerlessLimited),
        ),
    ];
    for (mode, servers, want) in table {
        assert_eq!(
            admit_client(mode, servers),
            want,
            "{mode} servers={servers}"
        );
    }
}

#[test]
fn serverless_message_table() {
    let route = ClientRoute::Serverless;
    let item = HubMessage::StreamItem(StreamItem {
        headers: vec![],
        invocation_id: "1".into(),
        item: RawValue::Json(Bytes::from_static(b"1")),
    });
    let completion = HubMessage::Completion(Completion {
        headers: vec![],
        invocation_id: "1".into(),
        outcome: CompletionOutcome::Void,
    });
    let cancel = HubMessage::CancelInvocation(CancelInvocation {
        headers: vec![],
        invocation_id: "1".into(),
    });
    let table = [
        (HubMessage::Ping, MessageAction::Liveness),
        (
            HubMessage::Close(Close::default()),
            MessageAction::EndConnection,
        ),
        (HubMessage::Invocation(inv(None)), MessageAction::Drop),
        (
            HubMessage::Invocation(inv(Some("7"))),
            MessageAction::RejectInvocation(no_upstream_error("chat", "Send")),
        ),
        (
            HubMessage::StreamInvocation(inv(Some("8"))),
            MessageAction::RejectInvocation(no_upstream_error("chat", "Send")),
        ),
        (item, MessageAction::Drop),
        (completion, MessageAction::Drop),
        (cancel, MessageAction::Drop),
        (HubMessage::Ack { sequence_id: 1 }, MessageAction::Drop),
        (HubMessage::Sequence { sequence_id: 1 }, MessageAction::Drop),
    ];
    for (msg, want) in table {
        assert_eq!(
            route_client_message(route, "chat", &msg, |_| false),
            want,
            "{msg:?}"
        );
    }
}

#[test]
fn classic_without_server_table() {
    let route = ClientRoute::ServerlessLimited;
    let close = MessageAction::Close(CloseReason::NoAppServer);
    let table = [
        (HubMessage::Ping, MessageAction::Liveness),
        (
            HubMessage::Close(Close::default()),
            MessageAction::EndConnection,
        ),
        (HubMessage::Invocation(inv(None)), close.clone()),
        (HubMessage::Invocation(inv(Some("1"))), close.clone()),
        (HubMessage::Ack { sequence_id: 3 }, MessageAction::Drop),
    ];
    for (msg, want) in table {
        assert_eq!(
            route_client_message(route, "chat", &msg, |_| false),
            want,
            "{msg:?}"
        );
    }
}

#[test]
fn server_admission_table() {
    use ServiceMode::*;
    for (mode, carries, ok) in [
        (Default, true, true),
        (Default, false, true),
        (Classic, true, true),
        (Classic, false, true),
        (Serverless, true, false),
        (Serverless, false, true),
    ] {
        assert_eq!(
            admit_server(mode, carries).is_ok(),
            ok,
            "{mode} carries={carries}"
        );
    }
}

#[test]
fn server_route_forwards_everything_but_nothing_is_parsed_for_it() {
    for msg in [
        HubMessage::Invocation(inv(Some("1"))),
        HubMessage::Ack { sequence_id: 1 },
    ] {
        assert_eq!(
            route_client_message(ClientRoute::ToServer, "chat", &msg, |_| true),
            MessageAction::ToServer
        );
    }
}

#[test]
fn serverless_with_upstream_table() {
    let route = ClientRoute::Serverless;
    let only_send = |target: &str| target == "Send";
    let mut other = inv(Some("2"));
    other.target = "Other".into();
    let table = [
        (HubMessage::Invocation(inv(None)), MessageAction::ToUpstream),
        (
            HubMessage::Invocation(inv(Some("1"))),
            MessageAction::ToUpstream,
        ),
        (
            HubMessage::Invocation(other.clone()),
            MessageAction::RejectInvocation(no_upstream_error("chat", "Other")),
        ),
        (
            HubMessage::StreamInvocation(inv(Some("3"))),
            MessageAction::RejectInvocation(STREAMING_NOT_UPSTREAMED.into()),
        ),
        (HubMessage::Ping, MessageAction::Liveness),
        (HubMessage::Ack { sequence_id: 1 }, MessageAction::Drop),
    ];
    for (msg, want) in table {
        assert_eq!(
            route_client_message(route, "chat", &msg, only_send),
            want,
            "{msg:?}"
        );
    }
}
