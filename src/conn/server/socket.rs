//! The hub-server connection's socket, whatever carries it: an actix-ws WebSocket for app
//! servers on the network, or a tungstenite WebSocket over an in-memory stream for a hub served
//! in the same process (`SwitchboardHandle::serve_hub`). The I/O loop sees only frames of bytes;
//! WebSocket pings are answered here. Nothing here parses the service protocol.

use actix_ws::{AggregatedMessage, AggregatedMessageStream, CloseCode, Session};
use bytes::Bytes;
use futures_util::{SinkExt as _, StreamExt as _};
use tokio::io::DuplexStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode as WsCloseCode;

/// What arrived on the socket.
pub(crate) enum Incoming {
    /// A data frame's bytes (binary or text: the service protocol is length-prefixed either way).
    Data(Bytes),
    /// A control frame, already answered.
    Control,
    /// The socket closed or failed.
    Gone,
}

/// How the broker closes a hub-server socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SocketClose {
    /// 1000.
    Normal,
    /// 1008: the first message was not a HandshakeRequest, or none came in time.
    Policy,
}

/// A hub-server connection's socket.
#[allow(async_fn_in_trait)]
pub(crate) trait ServerSocket {
    /// The next frame. Cancel-safe: the loop selects over it.
    async fn recv(&mut self) -> Incoming;
    /// Write one binary frame; `Err` when the socket is gone.
    async fn send(&mut self, frame: Bytes) -> Result<(), ()>;
    /// Close the socket (best effort).
    async fn close(&mut self, code: SocketClose);
}

/// An app server on the network, upgraded by actix-web.
pub(crate) struct ActixSocket {
    session: Session,
    stream: AggregatedMessageStream,
}

impl ActixSocket {
    /// The upgraded WebSocket.
    pub(crate) fn new(session: Session, stream: AggregatedMessageStream) -> Self {
        Self { session, stream }
    }
}

impl ServerSocket for ActixSocket {
    async fn recv(&mut self) -> Incoming {
        match self.stream.next().await {
            Some(Ok(AggregatedMessage::Binary(b))) => Incoming::Data(b),
            Some(Ok(AggregatedMessage::Text(t))) => Incoming::Data(t.into_bytes()),
            Some(Ok(AggregatedMessage::Ping(p))) => {
                if self.session.pong(&p).await.is_err() {
                    Incoming::Gone
                } else {
                    Incoming::Control
                }
            }
            Some(Ok(AggregatedMessage::Pong(_))) => Incoming::Control,
            _ => Incoming::Gone,
        }
    }

    async fn send(&mut self, frame: Bytes) -> Result<(), ()> {
        self.session.binary(frame).await.map_err(|_| ())
    }

    async fn close(&mut self, code: SocketClose) {
        let code = match code {
            SocketClose::Normal => CloseCode::Normal,
            SocketClose::Policy => CloseCode::Policy,
        };
        // The session may be closed already; either way the socket is done.
        let _ = self.session.clone().close(Some(code.into())).await;
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
            _ => Incoming::Gone,
        }
    }

    async fn send(&mut self, frame: Bytes) -> Result<(), ()> {
        self.0.send(Message::Binary(frame)).await.map_err(|_| ())
    }

    async fn close(&mut self, code: SocketClose) {
        let code = match code {
            SocketClose::Normal => WsCloseCode::Normal,
            SocketClose::Policy => WsCloseCode::Policy,
        };
        let frame = CloseFrame {
            code,
            reason: "".into(),
        };
        // Best effort: the other end may be gone.
        let _ = self.0.close(Some(frame)).await;
    }
}
