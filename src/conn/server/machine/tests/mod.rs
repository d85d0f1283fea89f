//! The hub-server connection machine's unit tests: each event of an open or opening connection
//! and the actions it answers with. No sockets, no hub, no runtime: a fake [`World`] over a real
//! connection index.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::*;
use crate::close::CloseReason;
use crate::conn::index::ConnectionIndex;
use crate::hub::{Member, MembershipTtl};
use crate::peer::{ConnHandle, Outbox, ServerConnHandle};
use crate::protocol::HubProtocol;
use crate::protocol::service::{ConnectionType, Extensions, ServiceMessage as M};

mod calls;
mod cross_hub;

const SELF_ID: &str = "server-a";
/// The hub of the machine under test and of its clients.
const HUB: &str = "chat";

struct Fake {
    index: ConnectionIndex,
    has_clients: bool,
    refusal: Option<String>,
}

impl World for Fake {
    fn client(&self, id: &str) -> Lookup {
        self.index.lookup(HUB, id)
    }

    fn hub_has_clients(&self) -> bool {
        self.has_clients
    }

    fn admit(&self, _carries_clients: bool) -> Result<(), String> {
        self.refusal.clone().map_or(Ok(()), Err)
    }
}

fn fake() -> Fake {
    Fake {
        index: ConnectionIndex::default(),
        has_clients: false,
        refusal: None,
    }
}

fn handshake_request() -> M {
    M::HandshakeRequest {
        version: 1,
        connection_type: ConnectionType::Default,
        target: None,
        migration_level: 0,
        extensions: Extensions::default(),
        allow_stateful_reconnects: false,
    }
}

/// An open machine (handshake accepted) over `world`.
fn open(world: Fake) -> (ServerMachine<Fake>, Arc<Metrics>) {
    let metrics = Arc::new(Metrics::default());
    let mut m = ServerMachine::new(SELF_ID.into(), world, metrics.clone(), Instant::now());
    let actions = m.on_message(handshake_request());
    assert!(matches!(actions[1], Action::Open(ConnectionType::Default)));
    (m, metrics)
}

/// A world with client `c1` (JSON), routed through `router` when given.
fn with_client(router: Option<ServerConnHandle>) -> Fake {
    let world = fake();
    let outbox = Outbox::new(16, 1 << 20);
    let conn = match router {
        Some(r) => ConnHandle::routed("c1".into(), None, HubProtocol::Json, outbox, r),
        None => ConnHandle::new("c1".into(), None, HubProtocol::Json, outbox),
    };
    world.index.insert(HUB.into(), conn);
    world
}

fn json(body: &str) -> Vec<(String, Bytes)> {
    vec![("json".to_owned(), Bytes::from(body.to_owned()))]
}

fn broadcast() -> M {
    M::BroadcastData {
        excluded_list: vec!["x".into()],
        payloads: json("b"),
        extensions: Extensions::default(),
    }
}

fn connection_data(id: &str) -> M {
    M::ConnectionData {
        connection_id: id.into(),
        payload: Bytes::from_static(b"hi"),
        extensions: Extensions::default(),
    }
}

fn ping(pairs: &[&str]) -> M {
    M::Ping {
        messages: pairs.iter().map(|s| (*s).to_owned()).collect(),
    }
}

fn reply_of(actions: &[Action]) -> Vec<&M> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Reply(m) => Some(m),
            _ => None,
        })
        .collect()
}

#[test]
fn handshake_accepted() {
    let metrics = Arc::new(Metrics::default());
    let mut m = ServerMachine::new(SELF_ID.into(), fake(), metrics, Instant::now());
    assert!(!m.is_open());
    let actions = m.on_message(handshake_request());
    let [
        Action::Send(M::HandshakeResponse { error_message, .. }),
        Action::Open(_),
    ] = &actions[..]
    else {
        panic!("{actions:?}")
    };
    assert_eq!(error_message.as_deref(), Some(""));
    assert!(m.is_open());
}

#[test]
fn handshake_refused_when_first_message_is_not_a_request() {
    let metrics = Arc::new(Metrics::default());
    let mut m = ServerMachine::new(SELF_ID.into(), fake(), metrics, Instant::now());
    let actions = m.on_message(ping(&[]));
    let [
        Action::Send(M::HandshakeResponse { error_message, .. }),
        Action::Close(c),
    ] = &actions[..]
    else {
        panic!("{actions:?}")
    };
    assert!(error_message.as_deref().is_some_and(|e| !e.is_empty()));
    assert_eq!(*c, Closing::BadHandshake);
    assert!(!m.is_open());
    assert!(m.on_message(handshake_request()).is_empty());

    let mut m = ServerMachine::new(SELF_ID.into(), fake(), Arc::default(), Instant::now());
    let actions = m.on_undecodable(ServiceProtocolError::InvalidData("bad".into()));
    assert!(matches!(actions[1], Action::Close(Closing::BadHandshake)));
}

#[test]
fn handshake_refused_by_the_mode() {
    let mut world = fake();
    world.refusal = Some("no servers in Serverless mode".into());
    let metrics = Arc::new(Metrics::default());
    let mut m = ServerMachine::new(SELF_ID.into(), world, metrics.clone(), Instant::now());
    let actions = m.on_message(handshake_request());
    let [
        Action::Send(M::HandshakeResponse { error_message, .. }),
        Action::Close(c),
    ] = &actions[..]
    else {
        panic!("{actions:?}")
    };
    assert_eq!(
        error_message.as_deref(),
        Some("no servers in Serverless mode")
    );
    assert_eq!(*c, Closing::NotAdmitted);
    assert_eq!(metrics.server_handshakes_failed.load(Ordering::Relaxed), 1);
}

#[test]
fn connection_data_goes_to_the_client() {
    let (mut m, metrics) = open(with_client(None));
    let actions = m.on_message(connection_data("c1"));
    let [Action::Deliver(conn, bytes)] = &actions[..] else {
        panic!("{actions:?}")
    };
    assert_eq!(conn.id().as_str(), "c1");
    assert_eq!(&bytes[..], b"hi");
    // A missing client: counted as dropped, nothing to do.
    assert!(m.on_message(connection_data("nobody")).is_empty());
    assert_eq!(metrics.outbox_dropped.load(Ordering::Relaxed), 1);
}

#[test]
fn multi_connection_data_picks_each_clients_protocol() {
    let (mut m, metrics) = open(with_client(None));
    let actions = m.on_message(M::MultiConnectionData {
        connection_list: vec!["c1".into(), "gone".into()],
        payloads: json("j"),
        extensions: Extensions::default(),
    });
    let [Action::Deliver(_, bytes)] = &actions[..] else {
        panic!("{actions:?}")
    };
    assert_eq!(&bytes[..], b"j");
    assert_eq!(metrics.outbox_dropped.load(Ordering::Relaxed), 1);
}

#[test]
fn close_connection_closes_the_client() {
    let (mut m, _) = open(with_client(None));
    let actions = m.on_message(M::CloseConnection {
        connection_id: "c1".into(),
        error_message: None,
        headers: Default::default(),
        extensions: Extensions::default(),
    });
    assert!(matches!(&actions[..], [Action::CloseClient(c)] if c.id().as_str() == "c1"));
}

#[test]
fn multicasts_become_hub_operations() {
    let (mut m, _) = open(fake());
    let actions = m.on_message(broadcast());
    let [Action::Hub(HubOp::SendAll(_, excluded), Then::Nothing)] = &actions[..] else {
        panic!("{actions:?}")
    };
    assert_eq!(excluded.len(), 1);
    let actions = m.on_message(M::UserData {
        user_id: "u".into(),
        payloads: json("x"),
        extensions: Extensions::default(),
    });
    assert!(
        matches!(&actions[..], [Action::Hub(HubOp::SendUser(u, _), Then::Nothing)] if u.as_str() == "u")
    );
    let actions = m.on_message(M::GroupBroadcastData {
        group_name: "g".into(),
        excluded_list: vec![],
        payloads: json("x"),
        extensions: Extensions::default(),
        excluded_user_list: vec!["eu".into()],
        caller_user_id: None,
    });
    assert!(matches!(
        &actions[..],
        [Action::Hub(HubOp::SendGroup(g, _, _, eu), Then::Nothing)] if g.as_str() == "g" && eu.len() == 1
    ));
    let actions = m.on_message(M::MultiGroupBroadcastData {
        group_list: vec!["a".into(), "b".into()],
        payloads: json("x"),
        extensions: Extensions::default(),
    });
    assert!(
        matches!(&actions[..], [Action::Hub(HubOp::SendGroups(g, _), Then::Nothing)] if g.len() == 2)
    );
}

#[test]
fn membership_without_ack_is_fire_and_forget() {
    let (mut m, _) = open(fake());
    let actions = m.on_message(M::JoinGroup {
        connection_id: "c1".into(),
        group_name: "g".into(),
        extensions: Extensions::default(),
    });
    assert!(matches!(
        &actions[..],
        [Action::Hub(HubOp::AddToGroup(..), Then::Nothing)]
    ));
    let actions = m.on_message(M::UserLeaveGroup {
        user_id: "u".into(),
        group_name: None,
        extensions: Extensions::default(),
    });
    assert!(matches!(
        &actions[..],
        [Action::Hub(
            HubOp::RemoveUserFromAllGroups(_),
            Then::Nothing
        )]
    ));
}

#[test]
fn with_ack_queues_the_operation_then_acks() {
    let (mut m, _) = open(fake());
    let actions = m.on_message(M::JoinGroupWithAck {
        connection_id: "c1".into(),
        group_name: "g".into(),
        ack_id: 7,
        extensions: Extensions::default(),
    });
    assert!(matches!(
        &actions[..],
        [Action::Hub(HubOp::AddToGroup(..), Then::Ack(7))]
    ));
    let ext = Extensions {
        ttl: Some(0),
        ..Extensions::default()
    };
    let actions = m.on_message(M::UserJoinGroupWithAck {
        user_id: "u".into(),
        group_name: "g".into(),
        ack_id: 8,
        extensions: ext,
    });
    assert!(matches!(
        &actions[..],
        [Action::Hub(
            HubOp::AddUserToGroup(_, _, MembershipTtl::CurrentConnectionsOnly),
            Then::Ack(8)
        )]
    ));
    let actions = m.on_message(M::CheckGroupExistenceWithAck {
        group_name: "g".into(),
        ack_id: 9,
        extensions: Extensions::default(),
    });
    assert!(matches!(
        &actions[..],
        [Action::Hub(
            HubOp::Exists(ExistsQuery::Group(_)),
            Then::Ack(9)
        )]
    ));
    let actions = m.on_message(M::CloseUserConnectionsWithAck {
        user_id: "u".into(),
        reason: Some("bye".into()),
        ack_id: 10,
        excluded_list: vec!["keep".into()],
        extensions: Extensions::default(),
    });
    let [Action::Hub(HubOp::CloseConnections(Scope::User(u), excluded, reason), Then::Ack(10))] =
        &actions[..]
    else {
        panic!("{actions:?}")
    };
    assert_eq!(u.as_str(), "u");
    assert_eq!(excluded.len(), 1);
    assert_eq!(*reason, CloseReason::ByApplication(Some("bye".into())));
}

#[test]
fn direct_message_after_a_hub_operation_waits_for_a_barrier() {
    let (mut m, _) = open(with_client(None));
    // Nothing through the hub yet: straight to the client.
    let actions = m.on_message(connection_data("c1"));
    assert!(matches!(&actions[..], [Action::Deliver(..)]));
    m.on_message(broadcast());
    assert!(m.hub_pending());
    let actions = m.on_message(connection_data("c1"));
    assert!(matches!(
        &actions[..],
        [
            Action::Hub(HubOp::Barrier, Then::Nothing),
            Action::Deliver(..)
        ]
    ));
    assert!(!m.hub_pending());
    // A ping neither needs nor causes a barrier.
    m.on_message(ping(&["echo", "x"]));
    assert!(!m.hub_pending());
    let actions = m.on_message(connection_data("c1"));
    assert!(matches!(&actions[..], [Action::Deliver(..)]));
}

#[test]
fn malformed_input_ends_an_open_connection() {
    let (mut m, metrics) = open(fake());
    let too_large = ServiceProtocolError::FrameTooLarge { max: 16 };
    assert!(matches!(
        &m.on_undecodable(too_large.clone())[..],
        [Action::Close(Closing::Malformed(e))] if *e == too_large
    ));
    assert_eq!(metrics.protocol_errors.load(Ordering::Relaxed), 1);
    assert!(!m.is_open());
}

#[test]
fn keep_alive_pings_and_timeout() {
    let start = Instant::now();
    let (mut m, _) = open(fake());
    m.on_sent(start);
    m.on_received(start);
    assert!(m.on_tick(start + Duration::from_secs(1)).is_empty());
    let actions = m.on_tick(start + KEEP_ALIVE_INTERVAL);
    assert!(matches!(&actions[..], [Action::Send(M::Ping { messages })] if messages.is_empty()));
    // The ping counts as sent.
    assert!(
        m.on_tick(start + KEEP_ALIVE_INTERVAL + Duration::from_secs(1))
            .is_empty()
    );
    let actions = m.on_tick(start + SERVER_TIMEOUT);
    assert!(matches!(&actions[..], [Action::Close(Closing::TimedOut)]));
}
