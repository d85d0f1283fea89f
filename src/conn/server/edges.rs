//! The edges of a hub-server connection, apart from its I/O loop: when a frame is complete,
//! the handshake's actions and the close frame that ends a connection, and why it ended (for
//! the resource logs).

use bytes::Bytes;

use super::machine::{Action, Closing};
use super::socket::ServerSocket;
use crate::close::WsClose;
use crate::protocol::framing;
use crate::protocol::service::{self, ConnectionType, ServiceMessage, ServiceProtocolError};

/// Whether `input` starts with a complete frame, or with a prefix the decoder refuses: only then
/// is the buffer frozen and decoded. A frame arriving in small pieces stays where it is until it
/// is whole; freezing it and copying the rest back on every piece would cost time quadratic in
/// its length.
pub(super) fn frame_ready(input: &[u8], max_frame: usize) -> bool {
    match framing::read_varint(input) {
        Ok(None) => false,
        Ok(Some((len, prefix))) => len > max_frame || input.len() - prefix >= len,
        Err(_) => true,
    }
}

/// The close frame that ends a connection the machine closes: a refused handshake is a policy
/// violation (1008), a frame over the size limit 1009, a malformed message 1002, each with its
/// reason; the other ends are normal.
pub(super) fn close_frame(closing: &Closing) -> WsClose {
    match closing {
        Closing::BadHandshake => WsClose::new(
            WsClose::POLICY,
            "The first message must be a HandshakeRequest.",
        ),
        Closing::Malformed(e @ ServiceProtocolError::FrameTooLarge { .. }) => {
            WsClose::new(WsClose::TOO_BIG, &e.to_string())
        }
        Closing::Malformed(e) => {
            WsClose::new(WsClose::PROTOCOL_ERROR, &format!("Malformed message: {e}"))
        }
        Closing::TimedOut => WsClose::new(
            WsClose::NORMAL,
            "Nothing received from the hub server within the server timeout.",
        ),
        Closing::NotAdmitted | Closing::HubGone => WsClose::normal(),
    }
}

/// How the handshake ended.
pub(super) enum Handshook {
    /// Accepted: the answer (encoded frames) is written once the connection is registered, so
    /// that a hub server that has its answer is already known to its hub.
    Open(ConnectionType, Vec<Bytes>),
    /// Refused: close the socket with this frame (even when writing the refusal failed); the
    /// refusal's text, when the answer had one.
    Close(WsClose, Option<String>),
    /// The socket failed.
    Gone,
}

/// Carry out the handshake's actions.
pub(super) async fn handshake_actions<S: ServerSocket>(
    socket: &mut S,
    actions: Vec<Action>,
) -> Handshook {
    let mut answer = Vec::new();
    let mut refusal = None;
    for action in actions {
        match action {
            Action::Send(msg) => {
                if let ServiceMessage::HandshakeResponse {
                    error_message: Some(error),
                    ..
                } = &msg
                {
                    refusal = Some(error.clone());
                }
                answer.push(service::encode(&msg));
            }
            Action::Open(connection_type) => return Handshook::Open(connection_type, answer),
            Action::Close(closing) => {
                // The refusal's answer first; the close frame follows even if it failed.
                for frame in answer {
                    if socket.send(frame).await.is_err() {
                        break;
                    }
                }
                return Handshook::Close(close_frame(&closing), refusal);
            }
            _ => return Handshook::Gone,
        }
    }
    Handshook::Gone
}

/// Why a hub-server connection ended, in words, and whether that is normal.
pub(super) struct Ended {
    pub(super) why: std::borrow::Cow<'static, str>,
    pub(super) normal: bool,
}

impl Default for Ended {
    fn default() -> Self {
        Self {
            why: "the hub server closed its connection".into(),
            normal: true,
        }
    }
}

impl Ended {
    pub(super) fn abnormal(why: impl Into<std::borrow::Cow<'static, str>>) -> Self {
        Self {
            why: why.into(),
            normal: false,
        }
    }
}
