//! The hub-server connection's socket, whatever carries it: the upgraded WebSocket of an app
//! server on the network ([`WsSocket`]), or a tungstenite WebSocket over an in-memory stream for a hub served
//! in the same process (`SwitchboardHandle::serve_hub`). The I/O loop sees only frames of bytes;
//! WebSocket pings are answered here. Nothing here parses the service protocol.

use bytes::Bytes;
use futures_util::{SinkExt as _, StreamExt as _};
use tokio::io::DuplexStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode as WsCloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use crate::close::WsClose;
use crate::conn::ws::{WsEvent, WsSocket};

/// What arrived on the socket.
pub(crate) enum Incoming {
    /// A data frame's bytes (binary or text: the service protocol is length-prefixed either way).
    Data(Bytes),
    /// A control frame, already answered.
    Control,
    /// The socket closed or failed.
    Gone,
    /// The WebSocket layer refused the input (a frame over the size limit, a text frame that is
    /// not UTF-8, a frame that breaks RFC 6455): close with this frame.
    Invalid(WsClose),
}

/// A hub-server connection's socket.
#[allow(async_fn_in_trait)]
pub(crate) trait ServerSocket {
    /// The next frame. Cancel-safe: the loop selects over it.
    async fn recv(&mut self) -> Incoming;
    /// Write one binary frame; `Err` when the socket is gone.
    async fn send(&mut self, frame: Bytes) -> Result<(), ()>;
    /// Close the socket with this close frame (best effort).
    async fn close(&mut self, close: &WsClose);
}

/// How long the close frame to an app server may wait for room.
const CLOSE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// An app server on the network.
impl ServerSocket for WsSocket {
    async fn recv(&mut self) -> Incoming {
        match Self::recv(self).await {
            WsEvent::Message(data) => Incoming::Data(data),
            WsEvent::Closed | WsEvent::Gone => Incoming::Gone,
            WsEvent::Invalid(reason) => Incoming::Invalid(reason.websocket_close()),
        }
    }

    async fn send(&mut self, frame: Bytes) -> Result<(), ()> {
        Self::send(self, true, &frame).await.map_err(drop)
    }

    async fn close(&mut self, close: &WsClose) {
        Self::close(self, close, CLOSE_TIMEOUT).await;
    }
}

/// A hub served in the same process: WebSocket frames over an in-memory stream.
pub(crate) struct LocalSocket(WebSocketStream<DuplexStream>);

impl LocalSocket {
    /// The broker's end of an in-process server connection.
    pub(crate) fn new(ws: WebSocketStream<DuplexStream>) -> Self {
        Self(ws)
    }
}

impl ServerSocket for LocalSocket {
    async fn recv(&mut self) -> Incoming {
        match self.0.next().await {
            Some(Ok(Message::Binary(b))) => Incoming::Data(b),
            Some(Ok(Message::Text(t))) => Incoming::Data(Bytes::from(t)),
            // tungstenite queues the Pong itself and writes it with the next frame.
            Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => Incoming::Control,
            Some(Err(e)) => local_refusal(&e).map_or(Incoming::Gone, Incoming::Invalid),
            Some(Ok(Message::Close(_))) | None => Incoming::Gone,
        }
    }

    async fn send(&mut self, frame: Bytes) -> Result<(), ()> {
        self.0.send(Message::Binary(frame)).await.map_err(|_| ())
    }

    async fn close(&mut self, close: &WsClose) {
        let frame = CloseFrame {
            code: WsCloseCode::from(close.code),
            reason: close.reason.as_str().into(),
        };
        // Best effort: the other end may be gone.
        let _ = self.0.close(Some(frame)).await;
    }
}

/// [`refusal`] for tungstenite's read errors: the close frame for input the WebSocket layer
/// refused, `None` when the socket failed.
fn local_refusal(err: &WsError) -> Option<WsClose> {
    match err {
        WsError::Capacity(e) => Some(WsClose::new(WsClose::TOO_BIG, &e.to_string())),
        WsError::Utf8(_) => Some(WsClose::new(
            WsClose::INVALID_PAYLOAD,
            "A text frame is not valid UTF-8.",
        )),
        WsError::Protocol(e) => Some(WsClose::new(
            WsClose::PROTOCOL_ERROR,
            &format!("WebSocket protocol error: {e}"),
        )),
        _ => None,
    }
}
