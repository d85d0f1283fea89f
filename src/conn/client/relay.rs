//! Relaying a client routed to a hub server: bytes in both directions, the hub server answering
//! the handshake, pinging and timing the client out. A stateful-reconnect client's input is
//! parsed to take out Ack, Sequence and duplicates.
//!
//! It must not answer the client's hub messages itself (that is [`served`](super::served)) and
//! parses nothing for a plain client.

use bytes::{Bytes, BytesMut};

use super::stateful::{Stateful, next_resumption, resume_or_end};
use super::write::{count_in, drain_outbox, write_frame};
use super::{Exit, RETAINED_INPUT_CAPACITY};
use crate::close::CloseReason;
use crate::conn::env::ClientEnv;
use crate::conn::transport::{Inbound, Transport};
use crate::peer::{ConnHandle, ServerConnHandle};
use crate::protocol::HubProtocol;
use crate::protocol::framing::RecordScan;
use crate::telemetry::{HubStats, Metrics};

/// The handshake request a routed stateful client's hub server gets: version 1, because the
/// broker, not the hub server, does the Ack/Sequence part of the protocol.
pub(super) fn handshake_v1(protocol: HubProtocol) -> Bytes {
    Bytes::from(format!(
        "{{\"protocol\":\"{}\",\"version\":1}}\x1e",
        protocol.name()
    ))
}

/// A client routed to a hub server: a byte relay in both directions. The hub server answers the
/// handshake, sends the keep-alive pings and times the client out, so a plain relay parses
/// nothing. A stateful-reconnect client's messages are parsed, to take out Ack and Sequence and
/// the duplicates a reconnect brings (see [`Stateful`]).
pub(super) struct Relay<'a> {
    pub(super) env: &'a ClientEnv,
    /// The hub's name (for the resource logs).
    pub(super) hub_name: &'a str,
    /// The hub's counters.
    pub(super) hub: &'a HubStats,
    pub(super) conn: &'a ConnHandle,
    pub(super) server: &'a ServerConnHandle,
    pub(super) protocol: HubProtocol,
    pub(super) stateful: Option<Stateful>,
}

impl Relay<'_> {
    pub(super) async fn serve(&mut self, transport: &mut Transport, mut input: BytesMut) -> Exit {
        let mut out = BytesMut::new();
        // A stateful client's `input`: how far it was searched for the end of a message.
        let mut scan = RecordScan::default();
        let abandoned_after = self.env.limits.negotiate_timeout();
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The tick only acknowledges a stateful client's messages and notices a long-polling
        // client that stopped polling: any other relayed client has no timer.
        let ticks = self.stateful.is_some() || !transport.sends_pings();
        if self.stateful.is_none() {
            transport.lend_to(self.conn, self.protocol);
        }
        'relay: {
            if !input.is_empty()
                && let Err(exit) = self
                    .forward(input.split().freeze(), &mut input, &mut scan)
                    .await
            {
                break 'relay exit;
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
                            break 'relay CloseReason::ClientClosed;
                        }
                    }
                    _ = self.conn.outbox().ready() => {
                        let burst = drain_outbox(self.conn, &mut out);
                        if let Some(frame) = burst.frame {
                            if let Some(st) = &mut self.stateful
                                && let Err(exit) = st.record(&frame)
                            {
                                break 'relay exit;
                            }
                            if let Err(lost) = write_frame(transport, self.protocol, frame, self.env).await
                                && let Err(exit) = self.wait_for_resume(transport, lost).await
                            {
                                break 'relay exit;
                            }
                        }
                        if let Some(reason) = burst.close {
                            break 'relay reason;
                        }
                    }
                    _ = tick.tick(), if ticks => {
                        // A long-polling client that stopped polling is gone.
                        if transport.is_abandoned(abandoned_after) {
                            break 'relay CloseReason::Abandoned;
                        }
                        if let Some(st) = &mut self.stateful
                            && let Err(lost) = st.send_ack(transport, self.protocol, self.env).await
                            && let Err(exit) = self.wait_for_resume(transport, lost).await
                        {
                            break 'relay exit;
                        }
                    }
                    inbound = transport.recv() => {
                        let bytes = match inbound {
                            Inbound::Data(b) => b,
                            Inbound::Closed => break 'relay CloseReason::ClientClosed,
                            Inbound::Gone => match self.wait_for_resume(transport, CloseReason::ClientClosed).await {
                                Ok(()) => continue,
                                Err(exit) => break 'relay exit,
                            },
                            Inbound::Invalid(reason) => {
                                Metrics::inc(&self.env.metrics.protocol_errors);
                                break 'relay reason;
                            }
                        };
                        // A relay parses nothing: each read counts as one message.
                        count_in(self.env, self.hub, 1, bytes.len() as u64);
                        if let Err(exit) = self.forward(bytes, &mut input, &mut scan).await {
                            break 'relay exit;
                        }
                    }
                }
            }
        }
    }

    /// Hand client bytes to the hub server. A stateful client's bytes are collected into
    /// `input` and only its complete, new hub messages go on, in one ConnectionData.
    async fn forward(
        &mut self,
        bytes: Bytes,
        input: &mut BytesMut,
        scan: &mut RecordScan,
    ) -> Result<(), Exit> {
        let bytes = match &mut self.stateful {
            None => bytes,
            Some(st) => {
                input.extend_from_slice(&bytes);
                let max = self.env.limits.max_message_size;
                let mut keep = BytesMut::new();
                loop {
                    match self.protocol.decode_scanned(input, max, scan) {
                        Ok(Some(decoded)) => {
                            let raw = input.split_to(decoded.consumed);
                            let new = match &decoded.message {
                                Some(msg) => st.on_receive(msg)?,
                                None => true,
                            };
                            if new {
                                keep.extend_from_slice(&raw);
                            }
                        }
                        Ok(None) => break,
                        Err(e) => {
                            Metrics::inc(&self.env.metrics.protocol_errors);
                            return Err(CloseReason::from_protocol_error(&e));
                        }
                    }
                }
                if input.is_empty() && input.capacity() > RETAINED_INPUT_CAPACITY {
                    *input = BytesMut::new();
                }
                if keep.is_empty() {
                    return Ok(());
                }
                keep.freeze()
            }
        };
        super::log::forwarded(
            &self.env.events,
            self.hub_name,
            self.conn.id().as_str(),
            self.server.server_id(),
            bytes.len(),
        );
        // Waiting here is the backpressure from a slow hub server.
        self.server
            .send_data(self.conn.id(), bytes)
            .await
            .map_err(|_| CloseReason::AppServerGone)
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
            Some(self.server),
            lost,
        )
        .await
    }
}
