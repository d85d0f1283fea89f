//! The stateful-reconnect wrapper of a client connection (`docs/protocol.md#stateful-reconnect`):
//! the [`ReplayBuffer`] (numbering, replay, de-duplication, in [`crate::conn::stateful`]) plus
//! where the client's next WebSocket arrives, the wait for it and the switch to it.
//!
//! It serves both the broker's own clients and relayed ones. It must not route messages nor end
//! the connection itself: it answers with a [`CloseReason`] and the serving loop ends.

use bytes::{Bytes, BytesMut};
use tokio::sync::mpsc;

use super::Exit;
use super::write::{drain_outbox, write_frame};
use crate::close::{CloseReason, WsClose};
use crate::conn::env::ClientEnv;
use crate::conn::stateful::{ReplayBuffer, is_tracked};
use crate::conn::transport::{Resumption, Transport};
use crate::conn::ws::WsSocket;
use crate::peer::{ConnHandle, ServerConnHandle};
use crate::protocol::{self, HubMessage, HubProtocol};
use crate::telemetry::Metrics;

/// The next reconnecting WebSocket, or never when the connection is not stateful.
pub(super) async fn next_resumption(stateful: &mut Option<Stateful>) -> Option<Resumption> {
    match stateful {
        Some(st) => st.rx.recv().await,
        None => std::future::pending().await,
    }
}

/// After the socket was lost (`lost` says how): a stateful client may come back within its
/// window (a routed client's hub server, `server`, keeps seeing a live client meanwhile); any
/// other connection ends here with `lost`.
pub(super) async fn resume_or_end(
    stateful: &mut Option<Stateful>,
    transport: &mut Transport,
    conn: &ConnHandle,
    env: &ClientEnv,
    protocol: HubProtocol,
    server: Option<&ServerConnHandle>,
    lost: CloseReason,
) -> Result<(), Exit> {
    match stateful {
        Some(st) => Box::pin(st.wait_and_resume(transport, conn, env, protocol, server)).await,
        None => Err(lost),
    }
}

/// A stateful-reconnect connection (`docs/protocol.md#stateful-reconnect`): the numbering and replay
/// buffer ([`ReplayBuffer`]) and where the client's next WebSocket arrives. The same state
/// serves a client the broker answers itself and a client routed to a hub server.
pub(super) struct Stateful {
    replay: ReplayBuffer,
    rx: mpsc::Receiver<Resumption>,
    /// A routed client: the hub server's handshake answer, the first bytes it sends, is not a
    /// numbered message; `true` until it went by.
    awaiting_handshake_answer: bool,
}

impl Stateful {
    pub(super) fn new(replay: ReplayBuffer, rx: mpsc::Receiver<Resumption>, routed: bool) -> Self {
        Self {
            replay,
            rx,
            awaiting_handshake_answer: routed,
        }
    }

    /// Record a frame about to be written to the client; the exit when the replay buffer is
    /// over its limit.
    pub(super) fn record(&mut self, frame: &Bytes) -> Result<(), Exit> {
        let numbered = if self.awaiting_handshake_answer {
            // The answer is JSON text ending at the first record separator, whatever the
            // protocol; it may share a frame with the first messages.
            let Some(end) = frame
                .iter()
                .position(|&b| b == protocol::framing::RECORD_SEPARATOR)
            else {
                return Ok(());
            };
            self.awaiting_handshake_answer = false;
            frame.slice(end + 1..)
        } else {
            frame.clone()
        };
        if numbered.is_empty() || self.replay.on_send(&numbered).is_ok() {
            Ok(())
        } else {
            Err(CloseReason::ReconnectBufferFull)
        }
    }

    /// A message from the client: `Ok(false)` when it is stateful-reconnect bookkeeping (Ack,
    /// Sequence) or a duplicate of one processed before the reconnect.
    pub(super) fn on_receive(&mut self, msg: &HubMessage) -> Result<bool, Exit> {
        match msg {
            HubMessage::Ack { sequence_id } => {
                self.replay.on_ack(*sequence_id);
                Ok(false)
            }
            HubMessage::Sequence { sequence_id } => self
                .replay
                .on_sequence(*sequence_id)
                .map(|()| false)
                .map_err(CloseReason::ProtocolError),
            m if is_tracked(m) => Ok(self.replay.on_receive_tracked()),
            _ => Ok(true),
        }
    }

    /// Acknowledge what arrived since the last Ack, if anything did.
    pub(super) async fn send_ack(
        &mut self,
        transport: &mut Transport,
        protocol: HubProtocol,
        env: &ClientEnv,
    ) -> Result<(), CloseReason> {
        let Some(ack) = self.replay.take_ack() else {
            return Ok(());
        };
        let Ok(frame) = protocol.encode(&HubMessage::Ack { sequence_id: ack }) else {
            return Ok(());
        };
        write_frame(transport, protocol, frame, env).await
    }

    /// After the socket was lost: wait up to the reconnect window for the client's next
    /// WebSocket, then switch to it and replay. Meanwhile what is queued for the client moves
    /// into the replay buffer, whose limit bounds the wait as well, and a routed client's hub
    /// server gets a Ping from it every keep-alive interval, so the hub server sees no
    /// disconnect (nor a client timeout) inside the window.
    pub(super) async fn wait_and_resume(
        &mut self,
        transport: &mut Transport,
        conn: &ConnHandle,
        env: &ClientEnv,
        protocol: HubProtocol,
        server: Option<&ServerConnHandle>,
    ) -> Result<(), Exit> {
        let limits = &env.limits;
        let deadline = tokio::time::Instant::now()
            + std::time::Duration::from_secs(limits.reconnect_window_secs);
        let period = limits.keep_alive_interval();
        let mut keep_alive = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        let mut out = BytesMut::new();
        loop {
            tokio::select! {
                biased;
                resumption = self.rx.recv() => {
                    let Some(resumption) = resumption else {
                        return Err(CloseReason::ClientClosed);
                    };
                    return if self.adopt(transport, resumption, protocol, env).await {
                        Ok(())
                    } else {
                        Err(CloseReason::ClientClosed)
                    };
                }
                _ = conn.outbox().ready() => {
                    let burst = drain_outbox(conn, &mut out);
                    if let Some(frame) = burst.frame {
                        self.record(&frame)?;
                    }
                    if let Some(reason) = burst.close {
                        return Err(reason);
                    }
                }
                _ = keep_alive.tick(), if server.is_some() => {
                    if let Some(server) = server {
                        let ping = Bytes::from_static(protocol::ping_frame(protocol));
                        if server.send_data(conn.id(), ping).await.is_err() {
                            return Err(CloseReason::AppServerGone);
                        }
                    }
                }
                // The client did not come back within its window.
                _ = tokio::time::sleep_until(deadline) => return Err(CloseReason::Abandoned),
            }
        }
    }

    /// Switch to the client's new WebSocket (replacing the old one, even if it still looks
    /// alive), send `Sequence` and replay everything unacknowledged.
    pub(super) async fn adopt(
        &mut self,
        transport: &mut Transport,
        resumption: Resumption,
        protocol: HubProtocol,
        env: &ClientEnv,
    ) -> bool {
        let metrics = env.metrics.clone();
        let Ok(socket) = WsSocket::adopt(resumption, env.limits.max_message_size, metrics) else {
            return false;
        };
        let old = std::mem::replace(transport, Transport::WebSocket(socket));
        old.close(&WsClose::normal(), env.limits.send_timeout())
            .await;
        // Counted before the replay is written: a client that has its replay already finds
        // its return counted.
        Metrics::inc(&env.metrics.reconnects);
        let (first, frames) = self.replay.resume();
        let Ok(sequence) = protocol.encode(&HubMessage::Sequence { sequence_id: first }) else {
            return false;
        };
        if write_frame(transport, protocol, sequence, env)
            .await
            .is_err()
        {
            return false;
        }
        for frame in frames {
            if write_frame(transport, protocol, frame, env).await.is_err() {
                return false;
            }
        }
        true
    }
}
