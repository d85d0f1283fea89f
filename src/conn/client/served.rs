//! Serving a client the broker answers itself (Serverless mode, or Classic mode without a hub
//! server): the [`Actor`] loop over inbound frames, the outbox and a one-second tick, carrying out
//! what each message asks (upstream call, error Completion, close).
//!
//! It must not relay to a hub server (that is [`Relay`](super::relay::Relay)) and must not hold
//! a buffer past a burst: an idle connection keeps none.

use std::sync::Arc;
use std::time::Instant;

use bytes::{Buf, Bytes, BytesMut};

use super::stateful::{Stateful, next_resumption};
use super::write::{drain_outbox, write_frame};
use super::{Exit, RETAINED_INPUT_CAPACITY};
use crate::close::CloseReason;
use crate::conn::env::ClientEnv;
use crate::conn::transport::{Inbound, Transport};
use crate::conn::upstream::{self, UpstreamLink};
use crate::peer::ConnHandle;
use crate::protocol::{self, Completion, CompletionOutcome, HubMessage, HubProtocol};
use crate::routing::{ClientRoute, MessageAction};
use crate::telemetry::Metrics;
use crate::upstream::{UpstreamConnection, unframed_invocation as upstream_body};

pub(super) struct Actor<'a> {
    pub(super) env: &'a Arc<ClientEnv>,
    pub(super) hub_name: &'a str,
    pub(super) conn: &'a ConnHandle,
    pub(super) protocol: HubProtocol,
    pub(super) route: ClientRoute,
    pub(super) last_sent: Instant,
    pub(super) last_received: Instant,
    pub(super) timeout_armed: bool,
    /// The connection's upstream worker, started at its first upstream call.
    pub(super) upstream: Option<UpstreamLink>,
    pub(super) upstream_info: &'a UpstreamConnection,
    /// Stateful reconnect: numbering, the replay buffer, where the client's next socket arrives.
    pub(super) stateful: Option<Stateful>,
}

impl Actor<'_> {
    pub(super) async fn serve(&mut self, transport: &mut Transport, mut input: BytesMut) -> Exit {
        let limits = &self.env.limits;
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut out = BytesMut::new();

        // Bytes that arrived with the handshake are ordinary messages.
        if let Some(exit) = self.process_input(&mut input) {
            return exit;
        }
        loop {
            tokio::select! {
                biased;
                Some(resumption) = next_resumption(&mut self.stateful) => {
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
                        self.last_sent = Instant::now();
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
                        Inbound::Invalid(detail) => {
                            Metrics::inc(&self.env.metrics.protocol_errors);
                            return CloseReason::ProtocolError(detail);
                        }
                    }
                    self.last_received = Instant::now();
                    if let Some(exit) = self.process_input(&mut input) {
                        return exit;
                    }
                }
                _ = tick.tick() => {
                    let now = Instant::now();
                    if self.timeout_armed && now.duration_since(self.last_received) >= limits.client_timeout() {
                        Metrics::inc(&self.env.metrics.client_timeouts);
                        return CloseReason::PingTimeout;
                    }
                                        if transport.is_abandoned(limits.negotiate_timeout()) {
                        return CloseReason::Abandoned;
                    }
                    if let Some(st) = &mut self.stateful
                        && let Err(lost) = st.send_ack(transport, self.protocol, self.env).await
                        && let Err(exit) = self.wait_for_resume(transport, lost).await
                    {
                        return exit;
                    }
                    if transport.sends_pings() && now.duration_since(self.last_sent) >= limits.keep_alive_interval() {
                        let ping = Bytes::from_static(protocol::ping_frame(self.protocol));
                        if let Err(lost) = write_frame(transport, self.protocol, ping, self.env).await {
                            return lost;
                        }
                        self.last_sent = now;
                    }
                }
            }
        }
    }

    /// After the socket was lost (`lost` says how): a stateful client may come back within the
    /// window; any other ends here.
    async fn wait_for_resume(
        &mut self,
        transport: &mut Transport,
        lost: CloseReason,
    ) -> Result<(), Exit> {
        match &mut self.stateful {
            Some(st) => {
                Box::pin(st.wait_and_resume(transport, self.conn, self.env, self.protocol, None))
                    .await
            }
            None => Err(lost),
        }
    }

    /// Decode and act on every complete message in `input`.
    fn process_input(&mut self, input: &mut BytesMut) -> Option<Exit> {
        let max = self.env.limits.max_message_size;
        let mut received = 0u64;
        let exit = loop {
            match self.protocol.decode(input, max) {
                Ok(Some(decoded)) => {
                    input.advance(decoded.consumed);
                    received += 1;
                    if let Some(msg) = decoded.message
                        && let Some(exit) = self.handle(msg)
                    {
                        break Some(exit);
                    }
                }
                Ok(None) => break None,
                Err(e) => {
                    Metrics::inc(&self.env.metrics.protocol_errors);
                    break Some(CloseReason::from_protocol_error(&e));
                }
            }
        };
        Metrics::add(&self.env.metrics.messages_received, received);
        if input.is_empty() && input.capacity() > RETAINED_INPUT_CAPACITY {
            *input = BytesMut::new();
        }
        exit
    }

    fn handle(&mut self, msg: HubMessage) -> Option<Exit> {
        if let Some(st) = &mut self.stateful {
            match st.on_receive(&msg) {
                Ok(true) => {}
                Ok(false) => return None,
                Err(exit) => return Some(exit),
            }
        }
        if matches!(msg, HubMessage::Ping) {
            // ASP.NET Core starts the client timeout at the first Ping: older clients never ping.
            self.timeout_armed = true;
        }
        // The route is fixed at connect time; the upstream rules are the current ones.
        let action = self
            .env
            .policy
            .snapshot()
            .route_message(self.route, self.hub_name, &msg);
        match action {
            MessageAction::ToUpstream => {
                let HubMessage::Invocation(inv) = msg else {
                    return None;
                };
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
            MessageAction::Liveness => None,
            MessageAction::EndConnection => Some(CloseReason::ClientClosed),
            // This actor serves clients without a hub server; a routed client is a `Relay`.
            MessageAction::Drop | MessageAction::ToServer => {
                Metrics::inc(&self.env.metrics.messages_dropped_no_route);
                None
            }
            MessageAction::RejectInvocation(error) => {
                Metrics::inc(&self.env.metrics.invocations_rejected);
                let invocation_id = match msg {
                    HubMessage::Invocation(inv) | HubMessage::StreamInvocation(inv) => {
                        inv.invocation_id.unwrap_or_default()
                    }
                    _ => return None,
                };
                let completion = HubMessage::Completion(Completion {
                    headers: Vec::new(),
                    invocation_id,
                    outcome: CompletionOutcome::Error(error),
                });
                if let Ok(frame) = self.protocol.encode(&completion) {
                    // Queued behind earlier deliveries to keep order; an overflow closes the
                    // connection through the outbox.
                    let _ = self.conn.outbox().push(frame);
                }
                None
            }
            MessageAction::Close(reason) => Some(reason),
        }
    }
}
