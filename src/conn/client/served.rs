//! Serving a client the broker answers itself (Serverless mode, or Classic mode without a hub
//! server): the [`Actor`] loop over inbound frames, the outbox and its timers (looked at when a
//! Ping or the client timeout is due), carrying out what each message asks (upstream call, error
//! Completion, close).
//!
//! It must not relay to a hub server (that is [`Relay`](super::relay::Relay)) and must not hold
//! a buffer past a burst: an idle connection keeps none.

use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};

use super::state::{Next, ServedState, Step, Tick, next_input};
use super::stateful::{Stateful, next_resumption, resume_or_end};
use super::write::{count_in, drain_outbox, write_frame};
use super::{Exit, RETAINED_INPUT_CAPACITY};
use crate::close::CloseReason;
use crate::conn::env::ClientEnv;
use crate::conn::transport::{Inbound, Transport};
use crate::conn::upstream::{self, UpstreamLink};
use crate::peer::ConnHandle;
use crate::protocol::framing::RecordScan;
use crate::protocol::{self, HubProtocol};
use crate::telemetry::{Direction, Endpoint, HubStats, Metrics};
use crate::upstream::{UpstreamConnection, unframed_invocation as upstream_body};

pub(super) struct Actor<'a> {
    pub(super) env: &'a Arc<ClientEnv>,
    pub(super) hub_name: &'a str,
    /// The hub's counters.
    pub(super) hub: &'a HubStats,
    pub(super) conn: &'a ConnHandle,
    pub(super) protocol: HubProtocol,
    /// The decisions: liveness bookkeeping and what each message asks for.
    pub(super) state: ServedState,
    /// The connection's upstream worker, started at its first upstream call.
    pub(super) upstream: Option<UpstreamLink>,
    pub(super) upstream_info: &'a UpstreamConnection,
    /// Stateful reconnect: numbering, the replay buffer, where the client's next socket arrives.
    pub(super) stateful: Option<Stateful>,
}

impl Actor<'_> {
    pub(super) async fn serve(&mut self, transport: &mut Transport, mut input: BytesMut) -> Exit {
        let limits = &self.env.limits;
        // The next look at the timers (see `ServedState::next_check`): every second for a
        // stateful client (its acknowledgements) and a long-polling one (abandonment), else when
        // a keep-alive Ping or the client timeout is due, not every second.
        let every_second = self.stateful.is_some() || !transport.sends_pings();
        let check = tokio::time::sleep(ServedState::CHECK_EVERY);
        tokio::pin!(check);
        let mut out = BytesMut::new();
        // How far `input` was searched for the end of a message (never twice the same bytes).
        let mut scan = RecordScan::default();

        if self.stateful.is_none() {
            transport.lend_to(self.conn, self.protocol);
        }

        // Bytes that arrived with the handshake are ordinary messages.
        if let Some(exit) = self.process_input(&mut input, &mut scan) {
            return exit;
        }
        loop {
            // Waiting with nothing to write: the hub may write straight to the socket.
            transport.lend();
            tokio::select! {
                biased;
                Some(resumption) = next_resumption(&mut self.stateful), if self.stateful.is_some() => {
                    if let Some(st) = &mut self.stateful
                        && !Box::pin(st.adopt(transport, resumption, self.protocol, self.env)).await
                    {
                        return CloseReason::ClientClosed;
                    }
                }
                _ = self.conn.outbox().ready() => {
                    let burst = drain_outbox(self.conn, &mut out);
                    if let Some(frame) = burst.frame {
                        if let Some(st) = &mut self.stateful
                            && let Err(exit) = st.record(&frame)
                        {
                            return exit;
                        }
                        if let Err(lost) = write_frame(transport, self.protocol, frame, self.env).await {
                            // A stateful client gets what was lost on its next socket.
                            if let Err(exit) = self.wait_for_resume(transport, lost).await {
                                return exit;
                            }
                        }
                        self.state.sent(Instant::now());
                    }
                    if let Some(reason) = burst.close {
                        return reason;
                    }
                }
                inbound = transport.recv() => {
                                        match inbound {
                        Inbound::Data(b) => input.extend_from_slice(&b),
                        Inbound::Closed => return CloseReason::ClientClosed,
                        Inbound::Gone => {
                            if let Err(exit) = self.wait_for_resume(transport, CloseReason::ClientClosed).await {
                                return exit;
                            }
                            continue;
                        }
                        Inbound::Invalid(reason) => {
                            Metrics::inc(&self.env.metrics.protocol_errors);
                            return reason;
                        }
                    }
                    self.state.received(Instant::now());
                    if let Some(exit) = self.process_input(&mut input, &mut scan) {
                        return exit;
                    }
                }
                () = &mut check => {
                    let now = Instant::now();
                    let abandoned = transport.is_abandoned(limits.negotiate_timeout());
                    let ping = match self.state.on_tick(now, limits, abandoned, transport.sends_pings()) {
                        Tick::Close(reason) => {
                            if reason == CloseReason::PingTimeout {
                                Metrics::inc(&self.env.metrics.client_timeouts);
                            }
                            return reason;
                        }
                        Tick::Live { ping } => ping,
                    };
                    if let Some(st) = &mut self.stateful
                        && let Err(lost) = st.send_ack(transport, self.protocol, self.env).await
                        && let Err(exit) = self.wait_for_resume(transport, lost).await
                    {
                        return exit;
                    }
                    if ping {
                        let ping = Bytes::from_static(protocol::ping_frame(self.protocol));
                        if let Err(lost) = write_frame(transport, self.protocol, ping, self.env).await {
                            return lost;
                        }
                        self.state.sent(now);
                    }
                    let next = if every_second {
                        now + ServedState::CHECK_EVERY
                    } else {
                        self.state.next_check(now, limits, transport.sends_pings())
                    };
                    check.as_mut().reset(next.into());
                }
            }
        }
    }

    /// After the socket was lost: see [`resume_or_end`].
    async fn wait_for_resume(
        &mut self,
        transport: &mut Transport,
        lost: CloseReason,
    ) -> Result<(), Exit> {
        resume_or_end(
            &mut self.stateful,
            transport,
            self.conn,
            self.env,
            self.protocol,
            None,
            lost,
        )
        .await
    }

    /// Decode and act on every complete message in `input`.
    fn process_input(&mut self, input: &mut BytesMut, scan: &mut RecordScan) -> Option<Exit> {
        let max = self.env.limits.max_message_size;
        let mut received = 0u64;
        let before = input.len();
        let exit = loop {
            match next_input(self.protocol, input, max, scan) {
                Next::Message(msg) => {
                    received += 1;
                    if let Some(msg) = &msg {
                        super::log::message(
                            &self.env.events,
                            self.hub_name,
                            self.conn.id().as_str(),
                            msg,
                        );
                    }
                    if let Some(msg) = msg
                        && let Some(step) = self.state.on_message(
                            msg,
                            self.stateful.as_mut(),
                            &self.env.policy,
                            self.hub_name,
                        )
                        && let Some(exit) = self.carry_out(step)
                    {
                        break Some(exit);
                    }
                }
                Next::Incomplete => break None,
                Next::Invalid(reason) => {
                    Metrics::inc(&self.env.metrics.protocol_errors);
                    break Some(reason);
                }
            }
        };
        count_in(
            self.env,
            self.hub,
            received,
            before.saturating_sub(input.len()) as u64,
        );
        if input.is_empty() && input.capacity() > RETAINED_INPUT_CAPACITY {
            *input = BytesMut::new();
        }
        exit
    }

    /// Do what [`ServedState::on_message`] decided; the exit when it ends the connection.
    fn carry_out(&mut self, step: Step) -> Option<Exit> {
        match step {
            Step::Upstream(inv) => {
                let Ok(body) = upstream_body(self.protocol, &inv) else {
                    return None;
                };
                let link = self.upstream.get_or_insert_with(|| {
                    UpstreamLink::start(
                        self.env.clone(),
                        self.conn.clone(),
                        self.upstream_info.clone(),
                    )
                });
                if link
                    .invoke(inv.target, inv.invocation_id.clone(), body)
                    .is_err()
                {
                    Metrics::inc(&self.env.metrics.upstream_queue_full);
                    if let Some(id) = inv.invocation_id {
                        upstream::push_error(
                            self.conn,
                            self.protocol,
                            &id,
                            upstream::QUEUE_FULL_ERROR.to_owned(),
                        );
                    }
                }
                None
            }
            Step::Drop => {
                Metrics::inc(&self.env.metrics.messages_dropped_no_route);
                None
            }
            Step::Reject(completion) => {
                Metrics::inc(&self.env.metrics.invocations_rejected);
                if let Ok(frame) = self.protocol.encode(&completion) {
                    // Queued behind earlier deliveries to keep order; an overflow closes the
                    // connection through the outbox.
                    let len = frame.len() as u64;
                    if self.conn.outbox().push(frame).is_ok() {
                        let labelled = &self.env.metrics.labelled;
                        labelled.traffic(Endpoint::Client, Direction::Out, 1, len);
                        self.hub.traffic(Direction::Out, 1, len);
                    }
                }
                None
            }
            Step::Close(reason) => Some(reason),
        }
    }
}
