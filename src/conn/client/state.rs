//! The decisions of a client the broker serves itself, sans IO: what each message from the
//! client asks for ([`ServedState::on_message`]), what the one-second tick asks for
//! ([`ServedState::on_tick`]) and how the input buffer is cut into messages ([`next_input`]).
//!
//! It owns the served connection's liveness bookkeeping (client timeout armed, last receive,
//! last send) and nothing else. It must not touch a socket, a channel, a clock or a metric: the
//! loop in [`served`](super::served) passes the time in, carries the answers out and counts.

use std::time::Instant;

use bytes::{Buf, BytesMut};

use super::stateful::Stateful;
use crate::close::CloseReason;
use crate::config::LimitsConfig;
use crate::policy::Policy;
use crate::protocol::framing::RecordScan;
use crate::protocol::{Completion, CompletionOutcome, HubMessage, HubProtocol, Invocation};
use crate::routing::{ClientRoute, MessageAction};

/// What a served connection must do about one message from its client.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Step {
    /// Call the upstream with this invocation (its `messages` event).
    Upstream(Invocation),
    /// Queue this error Completion for the client (an invocation was rejected).
    Reject(HubMessage),
    /// Nothing can handle the message: drop it (counted as dropped without a route).
    Drop,
    /// End the connection for this reason.
    Close(CloseReason),
}

/// What the one-second tick asks of a served connection.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Tick {
    /// End the connection for this reason ([`CloseReason::PingTimeout`]: a client timeout).
    Close(CloseReason),
    /// Keep serving: send a pending stateful Ack, then a keep-alive Ping if `ping`.
    Live {
        /// A keep-alive Ping is due.
        ping: bool,
    },
}

/// The next piece of a client's input buffer.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Next {
    /// A complete message was taken off the buffer (`None`: one the protocol skips).
    Message(Option<HubMessage>),
    /// No complete message is left.
    Incomplete,
    /// The input is malformed or too large: close for this reason (a protocol error).
    Invalid(CloseReason),
}

/// Take the next complete message off `input`. `scan` belongs to `input` and remembers how far
/// it was searched for the end of a JSON message, so that a message arriving a byte at a time
/// costs linear time, not quadratic.
pub(super) fn next_input(
    protocol: HubProtocol,
    input: &mut BytesMut,
    max: usize,
    scan: &mut RecordScan,
) -> Next {
    match protocol.decode_scanned(input, max, scan) {
        Ok(Some(decoded)) => {
            input.advance(decoded.consumed);
            Next::Message(decoded.message)
        }
        Ok(None) => Next::Incomplete,
        Err(e) => Next::Invalid(CloseReason::from_protocol_error(&e)),
    }
}

/// The liveness and routing state of a served client connection.
#[derive(Debug)]
pub(super) struct ServedState {
    /// How the client is served, fixed at connect time.
    route: ClientRoute,
    /// The client pinged: the client timeout runs (ASP.NET Core starts it at the first Ping,
    /// because older clients never ping).
    timeout_armed: bool,
    /// When the client last sent something.
    last_received: Instant,
    /// When something was last written to the client.
    last_sent: Instant,
}

impl ServedState {
    /// A connection served as `route` that just opened at `now`.
    pub(super) fn new(route: ClientRoute, now: Instant) -> Self {
        Self {
            route,
            timeout_armed: false,
            last_received: now,
            last_sent: now,
        }
    }

    /// Bytes arrived from the client at `now`.
    pub(super) fn received(&mut self, now: Instant) {
        self.last_received = now;
    }

    /// A frame was written to the client at `now`.
    pub(super) fn sent(&mut self, now: Instant) {
        self.last_sent = now;
    }

    /// One message from the client of hub `hub`: stateful-reconnect bookkeeping first (Ack,
    /// Sequence and duplicates end there), then routing with the current `policy`. `None` when
    /// there is nothing to do.
    pub(super) fn on_message(
        &mut self,
        msg: HubMessage,
        stateful: Option<&mut Stateful>,
        policy: &Policy,
        hub: &str,
    ) -> Option<Step> {
        if let Some(st) = stateful {
            match st.on_receive(&msg) {
                Ok(true) => {}
                Ok(false) => return None,
                Err(exit) => return Some(Step::Close(exit)),
            }
        }
        if matches!(msg, HubMessage::Ping) {
            self.timeout_armed = true;
        }
        // The route is fixed at connect time; the upstream rules are the current ones.
        match policy.snapshot().route_message(self.route, hub, &msg) {
            MessageAction::ToUpstream => match msg {
                HubMessage::Invocation(inv) => Some(Step::Upstream(inv)),
                _ => None,
            },
            MessageAction::Liveness => None,
            MessageAction::EndConnection => Some(Step::Close(CloseReason::ClientClosed)),
            // A served client has no hub server; a routed client is a `Relay`.
            MessageAction::Drop | MessageAction::ToServer => Some(Step::Drop),
            MessageAction::RejectInvocation(error) => match msg {
                HubMessage::Invocation(inv) | HubMessage::StreamInvocation(inv) => {
                    Some(Step::Reject(HubMessage::Completion(Completion {
                        headers: Vec::new(),
                        invocation_id: inv.invocation_id.unwrap_or_default(),
                        outcome: CompletionOutcome::Error(error),
                    })))
                }
                // Routing rejects invocations only.
                _ => None,
            },
            MessageAction::Close(reason) => Some(Step::Close(reason)),
        }
    }

    /// The shortest time between two looks at the timers ([`Self::on_tick`]).
    pub(super) const CHECK_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

    /// When [`Self::on_tick`] next has something to do, for a client that is neither stateful
    /// nor long-polling: a keep-alive Ping falls due (on transports that send them) or the
    /// client timeout (once armed) expires; never sooner than [`Self::CHECK_EVERY`] after
    /// `now`. Sends and receipts in between only move those instants later, so looking then is
    /// as exact as looking every second.
    pub(super) fn next_check(
        &self,
        now: Instant,
        limits: &LimitsConfig,
        sends_pings: bool,
    ) -> Instant {
        let ping = sends_pings.then(|| self.last_sent + limits.keep_alive_interval());
        let timeout = self
            .timeout_armed
            .then(|| self.last_received + limits.client_timeout());
        // Not armed yet: its first Ping (no sooner than now) arms it, and the timeout then
        // expires no sooner than a client timeout from now; look again by then.
        let unarmed = (!self.timeout_armed).then(|| now + limits.client_timeout());
        [ping, timeout, unarmed]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(now + limits.client_timeout())
            .max(now + Self::CHECK_EVERY)
    }

    /// The look at the timers at `now`: the client timeout (once armed), a long-polling client
    /// that stopped polling (`abandoned`), then whether a keep-alive Ping is due (only on
    /// transports that send them).
    pub(super) fn on_tick(
        &self,
        now: Instant,
        limits: &LimitsConfig,
        abandoned: bool,
        sends_pings: bool,
    ) -> Tick {
        if self.timeout_armed && now.duration_since(self.last_received) >= limits.client_timeout() {
            return Tick::Close(CloseReason::PingTimeout);
        }
        if abandoned {
            return Tick::Close(CloseReason::Abandoned);
        }
        Tick::Live {
            ping: sends_pings && now.duration_since(self.last_sent) >= limits.keep_alive_interval(),
        }
    }
}

#[cfg(test)]
mod tests;
