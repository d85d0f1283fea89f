//! Unit tests of the served connection's decisions: every transition the integration tests
//! reach through a socket, here without one. They must not open sockets or spawn tasks.

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tokio::sync::mpsc;

use super::*;
use crate::config::ServiceMode;
use crate::conn::stateful::ReplayBuffer;
use crate::routing::no_upstream_error;
use crate::upstream::{UpstreamRule, UpstreamRules};

const HUB: &str = "chat";

fn msg(json: &str) -> HubMessage {
    let frame = format!("{json}\x1e");
    match HubProtocol::Json.decode(frame.as_bytes(), usize::MAX) {
        Ok(Some(decoded)) => decoded.message.expect("a known message"),
        other => panic!("{json} does not decode: {other:?}"),
    }
}

fn invocation(id: Option<&str>) -> HubMessage {
    match id {
        Some(id) => msg(&format!(
            r#"{{"type":1,"invocationId":"{id}","target":"send","arguments":[1]}}"#
        )),
        None => msg(r#"{"type":1,"target":"send","arguments":[1]}"#),
    }
}

fn serverless() -> Policy {
    Policy::new(ServiceMode::Serverless, UpstreamRules::default())
}

fn stateful(max_bytes: usize) -> Stateful {
    let (_tx, rx) = mpsc::channel(1);
    Stateful::new(ReplayBuffer::new(HubProtocol::Json, max_bytes), rx, false)
}

fn limits() -> LimitsConfig {
    LimitsConfig::default()
}

#[test]
fn the_client_timeout_runs_from_the_first_ping() {
    let t0 = Instant::now();
    let limits = limits();
    let mut state = ServedState::new(ClientRoute::Serverless, t0);
    let late = t0 + limits.client_timeout() + Duration::from_secs(1);
    // Older clients never ping: no timeout before the first Ping.
    assert_eq!(
        state.on_tick(late, &limits, false, false),
        Tick::Live { ping: false }
    );
    assert_eq!(
        state.on_message(HubMessage::Ping, None, &serverless(), HUB),
        None
    );
    // Silent for less than the client timeout: still alive.
    let almost = t0 + limits.client_timeout() - Duration::from_millis(1);
    assert_eq!(
        state.on_tick(almost, &limits, false, false),
        Tick::Live { ping: false }
    );
    assert_eq!(
        state.on_tick(t0 + limits.client_timeout(), &limits, false, false),
        Tick::Close(CloseReason::PingTimeout)
    );
    // Anything received restarts it.
    state.received(t0 + Duration::from_secs(5));
    assert_eq!(
        state.on_tick(t0 + limits.client_timeout(), &limits, false, false),
        Tick::Live { ping: false }
    );
}

#[test]
fn a_keep_alive_ping_is_due_after_the_interval_without_sends() {
    let t0 = Instant::now();
    let limits = limits();
    let mut state = ServedState::new(ClientRoute::Serverless, t0);
    let due = t0 + limits.keep_alive_interval();
    let early = due - Duration::from_millis(1);
    assert_eq!(
        state.on_tick(early, &limits, false, true),
        Tick::Live { ping: false }
    );
    assert_eq!(
        state.on_tick(due, &limits, false, true),
        Tick::Live { ping: true }
    );
    // Transports that send no pings never get one.
    assert_eq!(
        state.on_tick(due, &limits, false, false),
        Tick::Live { ping: false }
    );
    // A send restarts the interval.
    state.sent(early);
    assert_eq!(
        state.on_tick(due, &limits, false, true),
        Tick::Live { ping: false }
    );
}

#[test]
fn the_timers_are_looked_at_when_a_ping_or_the_client_timeout_is_due() {
    let t0 = Instant::now();
    let limits = limits();
    let (ka, ct) = (limits.keep_alive_interval(), limits.client_timeout());
    let mut state = ServedState::new(ClientRoute::Serverless, t0);
    // The first Ping to send; the timeout is not armed.
    assert_eq!(state.next_check(t0, &limits, true), t0 + ka);
    // Sends move the Ping later; a look before it is due finds nothing to do and looks again
    // when it is.
    state.sent(t0 + Duration::from_secs(10));
    let look = t0 + ka;
    assert_eq!(
        state.on_tick(look, &limits, false, true),
        Tick::Live { ping: false }
    );
    assert_eq!(
        state.next_check(look, &limits, true),
        t0 + Duration::from_secs(10) + ka
    );
    // Without pings, an unarmed client timeout needs a look no later than a client timeout on.
    assert_eq!(state.next_check(t0, &limits, false), t0 + ct);
    // Armed: whichever comes first.
    state.on_message(HubMessage::Ping, None, &serverless(), HUB);
    state.received(t0);
    assert_eq!(state.next_check(t0, &limits, false), t0 + ct);
    assert_eq!(
        state.next_check(t0, &limits, true),
        (t0 + Duration::from_secs(10) + ka).min(t0 + ct)
    );
    // Never sooner than a second on, even when something is overdue.
    let late = t0 + ct + ka;
    assert_eq!(
        state.next_check(late, &limits, true),
        late + ServedState::CHECK_EVERY
    );
}

#[test]
fn an_abandoned_poll_closes_after_the_client_timeout_check() {
    let t0 = Instant::now();
    let limits = limits();
    let mut state = ServedState::new(ClientRoute::Serverless, t0);
    assert_eq!(
        state.on_tick(t0, &limits, true, true),
        Tick::Close(CloseReason::Abandoned)
    );
    state.on_message(HubMessage::Ping, None, &serverless(), HUB);
    assert_eq!(
        state.on_tick(t0 + limits.client_timeout(), &limits, true, true),
        Tick::Close(CloseReason::PingTimeout)
    );
}

#[test]
fn a_close_message_ends_the_connection_as_closed_by_the_client() {
    let mut state = ServedState::new(ClientRoute::Serverless, Instant::now());
    assert_eq!(
        state.on_message(msg(r#"{"type":7}"#), None, &serverless(), HUB),
        Some(Step::Close(CloseReason::ClientClosed))
    );
}

#[test]
fn serverless_without_upstream_rejects_blocking_invocations_and_drops_the_rest() {
    let mut state = ServedState::new(ClientRoute::Serverless, Instant::now());
    let policy = serverless();
    assert_eq!(
        state.on_message(invocation(Some("7")), None, &policy, HUB),
        Some(Step::Reject(HubMessage::Completion(Completion {
            headers: Vec::new(),
            invocation_id: "7".to_owned(),
            outcome: CompletionOutcome::Error(no_upstream_error(HUB, "send")),
        })))
    );
    assert_eq!(
        state.on_message(invocation(None), None, &policy, HUB),
        Some(Step::Drop)
    );
}

#[test]
fn serverless_with_an_upstream_calls_it() {
    let rules = UpstreamRules::new(&[UpstreamRule::from_template("http://upstream.test/{event}")])
        .expect("a valid rule");
    let policy = Policy::new(ServiceMode::Serverless, rules);
    let mut state = ServedState::new(ClientRoute::Serverless, Instant::now());
    let Some(Step::Upstream(inv)) = state.on_message(invocation(Some("1")), None, &policy, HUB)
    else {
        panic!("not an upstream call");
    };
    assert_eq!(
        (inv.target.as_str(), inv.invocation_id.as_deref()),
        ("send", Some("1"))
    );
}

#[test]
fn a_classic_limited_client_invoking_is_closed_without_an_app_server() {
    let policy = Policy::new(ServiceMode::Classic, UpstreamRules::default());
    let mut state = ServedState::new(ClientRoute::ServerlessLimited, Instant::now());
    assert_eq!(state.on_message(HubMessage::Ping, None, &policy, HUB), None);
    assert_eq!(
        state.on_message(invocation(None), None, &policy, HUB),
        Some(Step::Close(CloseReason::NoAppServer))
    );
}

#[test]
fn stateful_bookkeeping_and_duplicates_end_before_routing() {
    let policy = serverless();
    let mut state = ServedState::new(ClientRoute::Serverless, Instant::now());
    let mut st = stateful(10_000);
    // Ack and Sequence are bookkeeping, never routed.
    assert_eq!(
        state.on_message(
            msg(r#"{"type":8,"sequenceId":0}"#),
            Some(&mut st),
            &policy,
            HUB
        ),
        None
    );
    // Two numbered invocations are routed (dropped: non-blocking, no upstream).
    for _ in 0..2 {
        assert_eq!(
            state.on_message(invocation(None), Some(&mut st), &policy, HUB),
            Some(Step::Drop)
        );
    }
    // The client replays from 2 after a reconnect: 2 is a duplicate, 3 is new.
    assert_eq!(
        state.on_message(
            msg(r#"{"type":9,"sequenceId":2}"#),
            Some(&mut st),
            &policy,
            HUB
        ),
        None
    );
    assert_eq!(
        state.on_message(invocation(None), Some(&mut st), &policy, HUB),
        None
    );
    assert_eq!(
        state.on_message(invocation(None), Some(&mut st), &policy, HUB),
        Some(Step::Drop)
    );
    // A Sequence beyond what arrived is a protocol error.
    assert_eq!(
        state.on_message(
            msg(r#"{"type":9,"sequenceId":9}"#),
            Some(&mut st),
            &policy,
            HUB
        ),
        Some(Step::Close(CloseReason::ProtocolError(
            "Sequence ID greater than amount of messages we've received.".to_owned()
        )))
    );
}

#[test]
fn an_overflowing_replay_buffer_closes_the_connection() {
    let mut st = stateful(60);
    let frame = Bytes::from_static(b"{\"type\":1,\"target\":\"t\",\"arguments\":[1]}\x1e");
    assert_eq!(st.record(&frame), Ok(()));
    assert_eq!(st.record(&frame), Err(CloseReason::ReconnectBufferFull));
}

#[test]
fn input_is_cut_into_messages_and_bad_input_closes() {
    let scan = &mut RecordScan::default();
    let mut input = BytesMut::from(&b"{\"type\":6}\x1e{\"type\":6"[..]);
    assert_eq!(
        next_input(HubProtocol::Json, &mut input, 1024, scan),
        Next::Message(Some(HubMessage::Ping))
    );
    assert_eq!(
        next_input(HubProtocol::Json, &mut input, 1024, scan),
        Next::Incomplete
    );
    assert_eq!(&input[..], b"{\"type\":6");
    input.extend_from_slice(b"}\x1e");
    assert_eq!(
        next_input(HubProtocol::Json, &mut input, 1024, scan),
        Next::Message(Some(HubMessage::Ping))
    );

    let mut malformed = BytesMut::from(&b"not json\x1e"[..]);
    assert!(matches!(
        next_input(HubProtocol::Json, &mut malformed, 1024, scan),
        Next::Invalid(CloseReason::ProtocolError(_))
    ));

    let mut oversized = BytesMut::from(&[b'x'; 64][..]);
    assert!(matches!(
        next_input(
            HubProtocol::Json,
            &mut oversized,
            16,
            &mut RecordScan::default()
        ),
        Next::Invalid(CloseReason::MessageTooLarge(_))
    ));
}

/// A flood of one-byte frames: each arrival looks at its new byte only (linear work), where
/// searching the whole buffer again would look at n²/2 bytes.
#[test]
fn a_message_arriving_a_byte_at_a_time_costs_linear_work() {
    let message = format!(
        "{{\"type\":1,\"target\":\"send\",\"arguments\":[\"{}\"]}}\x1e",
        "a".repeat(20_000)
    );
    let n = message.len() as u64;
    let mut scan = RecordScan::default();
    let mut input = BytesMut::new();
    let mut messages = 0;
    for byte in message.bytes() {
        input.extend_from_slice(&[byte]);
        loop {
            match next_input(HubProtocol::Json, &mut input, 1 << 20, &mut scan) {
                Next::Message(_) => messages += 1,
                Next::Incomplete => break,
                Next::Invalid(reason) => panic!("{reason}"),
            }
        }
    }
    assert_eq!(messages, 1);
    assert!(input.is_empty());
    assert!(
        (n..=2 * n).contains(&scan.examined()),
        "{} bytes examined for a {n}-byte message",
        scan.examined()
    );
}
