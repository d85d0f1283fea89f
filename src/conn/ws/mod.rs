//! A WebSocket owned by the task that serves it, after the upgrade (client and hub-server
//! connections alike).
//!
//! actix-http hands the upgraded TCP stream over ([`crate::http::upgrade`]); from then on no
//! other task and no per-connection buffer sits between the connection's actor and the socket:
//!
//! - **Reading** waits for readiness, then reads into a per-thread scratch buffer (the actix
//!   workers are single-threaded). Only the bytes read are copied into the connection's own
//!   buffer, which frames are decoded from and which is released once drained: an idle
//!   connection holds no read buffer. A complete frame's payload is split from that buffer, so
//!   it is exactly as large as what was read.
//! - **Writing** puts a frame's header and its payload (the outbox's shared `Bytes`, not a copy)
//!   in one vectored write, waiting for writability only when the kernel's buffer is full.
//!   Pongs and the close frame are the only bytes ever queued here, and only until written.
//! - **Lending**: a client connection that is not stateful lends the socket to its outbox while
//!   its actor waits ([`WsSocket::lend`]); a hub that is not under load then writes a broadcast
//!   straight to it ([`crate::peer::outbox`]'s direct writes, through [`WsStream`]). Before any
//!   write of its own the socket takes itself back, and bytes a direct write could only write in
//!   part go first (queued like a control frame).
//! - **Frames** are decoded by actix-http's sans-IO `ws::Codec` (masking, opcodes, reserved bits,
//!   control-frame rules, continuation order, the per-frame size limit) and headers encoded by
//!   tungstenite's `FrameHeader`; this module adds only the joining of fragments (bounded by the
//!   same limit), the UTF-8 check of text messages, answering pings and the close handshake.

use std::future::poll_fn;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use actix_codec::Decoder as _;
use actix_http::ws::{CloseCode, Codec, Frame, Item, OpCode, Parser, ProtocolError};
use bytes::{Buf, Bytes, BytesMut};
use tungstenite::protocol::frame::FrameHeader;
use tungstenite::protocol::frame::coding::{Data, OpCode as HeaderOpCode};

use super::socket;
use super::stream::{DetachedStream, Stream};
use crate::close::{CloseReason, WsClose};
use crate::peer::{ConnHandle, DirectWrite, Written};
use crate::telemetry::Metrics;

/// Pongs beyond this many queued control bytes (bytes a direct write owes count too) are not
/// queued (counted in `switchboard_websocket_pongs_skipped_total`): a peer that pings without
/// reading gets answers for the pings before (RFC 6455 §5.5.3 lets an endpoint answer only
/// some).
const MAX_QUEUED_CONTROL: usize = 1024;

/// What arrived on a WebSocket.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum WsEvent {
    /// One whole message: a text message is valid UTF-8; fragments are joined.
    Message(Bytes),
    /// The peer sent a close frame.
    Closed,
    /// The socket ended or failed.
    Gone,
    /// The peer broke the protocol (a message over the size limit, a text message that is not
    /// UTF-8, a frame against RFC 6455): close with this reason.
    Invalid(CloseReason),
}

/// A message being received in fragments.
#[derive(Debug)]
struct Fragments {
    text: bool,
    data: BytesMut,
}

/// An upgraded WebSocket (the server's end).
#[derive(Debug)]
pub(crate) struct WsSocket {
    /// Shared only with the connection's outbox, which writes to it while it is lent.
    io: Arc<WsStream>,
    codec: Codec,
    /// Bytes read but not yet decoded (an incomplete frame, or frames after one returned).
    /// Empty, without capacity, between messages.
    read: BytesMut,
    /// A fragmented message in progress.
    fragments: Option<Box<Fragments>>,
    /// Control frames (pongs, the close frame) not yet written.
    control: BytesMut,
    /// Messages are at most this many bytes (one frame, or fragments together).
    max_message: usize,
    /// Nothing more is read: a close frame, an error or the end of the stream was seen.
    ended: bool,
    /// A frame's write was abandoned half-way (its timeout): the stream is no longer framed.
    broken: bool,
    metrics: Arc<Metrics>,
    /// The connection whose outbox the socket is lent to while the actor waits.
    lender: Option<ConnHandle>,
    /// The socket may be lent now (the outbox may have written to it, or owe bytes).
    lent: bool,
}

impl WsSocket {
    /// The server's end of an upgraded socket, with `read` the bytes that followed the
    /// handshake request.
    pub(crate) fn new(
        io: Stream,
        read: BytesMut,
        max_message: usize,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            io: Arc::new(WsStream {
                stream: io,
                binary: AtomicBool::new(false),
            }),
            codec: Codec::new().max_size(max_message),
            read,
            fragments: None,
            control: BytesMut::new(),
            max_message,
            ended: false,
            broken: false,
            metrics,
            lender: None,
            lent: false,
        }
    }

    /// Let `conn`'s outbox write its frames (text, or binary for `binary`) straight to this
    /// socket while the actor waits ([`Self::lend`]). Not for a stateful client: its frames are
    /// numbered and kept by its actor.
    pub(crate) fn lend_to(&mut self, conn: ConnHandle, binary: bool) {
        // Under TLS every frame is encrypted by the connection's own task.
        if self.io.is_tls() {
            return;
        }
        self.io.binary.store(binary, Ordering::Relaxed);
        conn.outbox().install_sink(self.io.clone());
        self.lender = Some(conn);
    }

    /// The actor has nothing to write and is about to wait: lend the socket (if [`Self::lend_to`]
    /// was called) unless control frames or owed bytes are still to be written.
    pub(crate) fn lend(&mut self) {
        let Some(conn) = &self.lender else { return };
        if !self.control.is_empty() || self.broken || self.ended {
            self.reclaim();
            return;
        }
        match conn.outbox().lend() {
            Ok(lent) => self.lent = lent,
            Err(owed) => {
                self.lent = false;
                self.owe(&owed);
            }
        }
    }

    /// Take the socket back before writing: bytes a direct write owes go first.
    fn reclaim(&mut self) {
        if !std::mem::take(&mut self.lent) {
            return;
        }
        if let Some(owed) = self.lender.as_ref().and_then(|c| c.outbox().reclaim()) {
            self.owe(&owed);
        }
    }

    /// Bytes a direct write left: written before the queued control frames.
    fn owe(&mut self, owed: &[u8]) {
        let mut control = BytesMut::with_capacity(owed.len() + self.control.len());
        control.extend_from_slice(owed);
        control.extend_from_slice(&self.control);
        self.control = control;
    }

    /// A socket upgraded on another worker thread: registered with this thread's reactor.
    pub(crate) fn adopt(
        detached: Detached,
        max_message: usize,
        metrics: Arc<Metrics>,
    ) -> io::Result<Self> {
        let io = Stream::attach(detached.io)?;
        Ok(Self::new(io, detached.read, max_message, metrics))
    }

    /// The next message. Pings are answered here. Cancel-safe: nothing read is lost when the
    /// future is dropped.
    pub(crate) async fn recv(&mut self) -> WsEvent {
        loop {
            if self.ended {
                return WsEvent::Gone;
            }
            if !self.read.is_empty() {
                match self.codec.decode(&mut self.read) {
                    Ok(Some(frame)) => {
                        if self.read.is_empty() {
                            self.read = BytesMut::new();
                        }
                        if let Some(event) = self.on_frame(frame) {
                            return event;
                        }
                        continue;
                    }
                    Ok(None) => {
                        // The codec checks a frame's size once it is whole: refuse one that
                        // will be too big from its header, before buffering it.
                        if self
                            .announced_len()
                            .is_some_and(|len| len > self.max_message as u64)
                        {
                            self.ended = true;
                            return WsEvent::Invalid(too_big(self.max_message));
                        }
                    }
                    Err(e) => {
                        self.ended = true;
                        return WsEvent::Invalid(refusal(&e, self.max_message));
                    }
                }
            }
            if self.writes_pending() && self.try_flush_control().is_err() {
                self.ended = true;
                return WsEvent::Gone;
            }
            let ready = if !self.writes_pending() {
                // Not `readable()`: that future enters the socket's waiter list and leaves it
                // again when dropped, which the actor does after every message it writes.
                poll_fn(|cx| self.io.poll_read_ready(cx)).await
            } else {
                tokio::select! {
                    r = self.io.readable() => r,
                    w = self.io.writable() => match w {
                        Ok(()) => continue,
                        Err(e) => Err(e),
                    },
                }
            };
            if ready.is_err() {
                self.ended = true;
                return WsEvent::Gone;
            }
            match self.read_some() {
                Ok(0) => {
                    self.ended = true;
                    return WsEvent::Gone;
                }
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => {
                    self.ended = true;
                    return WsEvent::Gone;
                }
            }
        }
    }

    /// The payload length the header of the incomplete frame in the buffer announces, once
    /// the header is complete.
    fn announced_len(&self) -> Option<u64> {
        let mut cursor = io::Cursor::new(&self.read[..]);
        FrameHeader::parse(&mut cursor)
            .ok()
            .flatten()
            .map(|(_, len)| len)
    }

    /// Read what the socket has (without waiting) into the connection's buffer.
    fn read_some(&mut self) -> io::Result<usize> {
        socket::read_some(&self.io, Some(&mut self.read))
    }

    fn on_frame(&mut self, frame: Frame) -> Option<WsEvent> {
        match frame {
            Frame::Text(bytes) => Some(self.text(bytes)),
            Frame::Binary(bytes) => Some(WsEvent::Message(bytes)),
            Frame::Continuation(item) => self.fragment(item),
            Frame::Ping(payload) => {
                self.reclaim();
                if self.control.len() + payload.len() + 2 <= MAX_QUEUED_CONTROL {
                    Parser::write_message(&mut self.control, payload, OpCode::Pong, true, false);
                } else {
                    Metrics::inc(&self.metrics.pongs_skipped);
                }
                None
            }
            Frame::Pong(_) => None,
            Frame::Close(_) => {
                self.ended = true;
                Some(WsEvent::Closed)
            }
        }
    }

    /// A text message, if it is UTF-8.
    fn text(&mut self, bytes: Bytes) -> WsEvent {
        if std::str::from_utf8(&bytes).is_ok() {
            WsEvent::Message(bytes)
        } else {
            self.ended = true;
            WsEvent::Invalid(CloseReason::InvalidPayload(
                "A text frame is not valid UTF-8.".to_owned(),
            ))
        }
    }

    /// One fragment; the whole message once the last one arrived. The codec has checked their
    /// order.
    fn fragment(&mut self, item: Item) -> Option<WsEvent> {
        let (first, data, last) = match item {
            Item::FirstText(b) => (Some(true), b, false),
            Item::FirstBinary(b) => (Some(false), b, false),
            Item::Continue(b) => (None, b, false),
            Item::Last(b) => (None, b, true),
        };
        if let Some(text) = first {
            self.fragments = Some(Box::new(Fragments {
                text,
                data: BytesMut::new(),
            }));
        }
        let Some(fragments) = self.fragments.as_mut() else {
            self.ended = true;
            return Some(WsEvent::Invalid(CloseReason::ProtocolError(
                "WebSocket protocol error: continuation frame without a start.".to_owned(),
            )));
        };
        if fragments.data.len() + data.len() > self.max_message {
            self.ended = true;
            self.fragments = None;
            return Some(WsEvent::Invalid(too_big(self.max_message)));
        }
        fragments.data.extend_from_slice(&data);
        if !last {
            return None;
        }
        let fragments = self.fragments.take()?;
        let bytes = fragments.data.freeze();
        Some(if fragments.text {
            self.text(bytes)
        } else {
            WsEvent::Message(bytes)
        })
    }

    /// Write one whole message: a text frame (the caller has made sure it is UTF-8) or a
    /// binary one. Header and payload go in one vectored write. Dropping the future half-way
    /// leaves the socket unusable ([`Self::close`] then only ends the stream).
    pub(crate) async fn send(&mut self, binary: bool, payload: &[u8]) -> io::Result<()> {
        if self.broken {
            return Err(io::ErrorKind::BrokenPipe.into());
        }
        self.reclaim();
        if self.writes_pending() {
            self.flush_control().await?;
        }
        let (header, header_len) = frame_header(binary, payload.len())?;
        self.broken = true;
        socket::write_all(&self.io, &[&header[..header_len], payload]).await?;
        self.broken = false;
        Ok(())
    }

    /// Control frames are queued, or (under TLS) ciphertext the socket has not taken yet.
    fn writes_pending(&self) -> bool {
        !self.control.is_empty() || self.io.wants_write()
    }

    /// Write queued control frames as far as the socket takes them now.
    fn try_flush_control(&mut self) -> io::Result<()> {
        while !self.control.is_empty() {
            match self.io.try_write(&self.control) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.control.advance(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(e),
            }
        }
        self.control = BytesMut::new();
        match self.io.try_flush() {
            Err(e) if e.kind() != io::ErrorKind::WouldBlock => Err(e),
            _ => Ok(()),
        }
    }

    /// Write every queued control frame.
    async fn flush_control(&mut self) -> io::Result<()> {
        loop {
            self.try_flush_control()?;
            if !self.writes_pending() {
                return Ok(());
            }
            self.io.writable().await?;
        }
    }

    /// End the connection: the close frame `close` (within `timeout`), then the end of the
    /// stream. Then call [`Self::linger`].
    pub(crate) async fn close(&mut self, close: &WsClose, timeout: Duration) {
        self.take_back();
        if !self.broken {
            // `WsClose` keeps its reason within a control frame's 123 bytes.
            let frame = actix_http::ws::CloseReason {
                code: CloseCode::from(close.code),
                description: (!close.reason.is_empty()).then(|| close.reason.clone()),
            };
            Parser::write_close(&mut self.control, Some(frame), false);
            let _ = tokio::time::timeout(timeout, self.flush_control()).await;
        }
        self.broken = true;
        // The outbox's writer is gone (`take_back`): the stream is this socket's alone.
        if Arc::get_mut(&mut self.io).is_some() {
            let _ = tokio::time::timeout(timeout, self.io.shutdown()).await;
        }
    }

    /// Take the socket back for good: the outbox drops its writer; owed bytes go first.
    fn take_back(&mut self) {
        if let Some(conn) = self.lender.take()
            && let Some(owed) = conn.outbox().remove_sink()
        {
            self.owe(&owed);
        }
        self.lent = false;
    }

    /// After [`Self::close`]: read and drop whatever the peer still sends until it closes its
    /// side, for at most [`socket::LINGER`], so that unread input does not turn the close into a reset
    /// that loses the close frame. Run it on its own task: the connection is over.
    pub(crate) async fn linger(self) {
        let _ = tokio::time::timeout(socket::LINGER, socket::discard(&self.io)).await;
    }
}

impl Drop for WsSocket {
    fn drop(&mut self) {
        // The outbox outlives the socket: it must not keep the stream open.
        if let Some(conn) = self.lender.take() {
            conn.outbox().remove_sink();
        }
    }
}

/// The stream of a [`WsSocket`], and the outbox's writer while the socket is lent.
#[derive(Debug)]
struct WsStream {
    stream: Stream,
    /// The lent socket's messages are binary (MessagePack) frames, else text.
    binary: AtomicBool,
}

impl std::ops::Deref for WsStream {
    type Target = Stream;

    fn deref(&self) -> &Stream {
        &self.stream
    }
}

impl DirectWrite for WsStream {
    /// One whole message per frame, header and payload in one vectored write. The system call
    /// goes straight to the socket, not through the reactor's readiness (another thread's
    /// cache lines); a full socket leaves the reactor's state as it was, and the actor, taking
    /// over, finds the socket full itself.
    fn write_now(&self, frame: &Bytes) -> Written {
        let binary = self.binary.load(Ordering::Relaxed);
        // As `Transport::send`: a text frame that is not UTF-8 is refused by the actor.
        if !binary && !super::transport::is_utf8(frame) {
            return Written::Nothing;
        }
        let Ok((header, header_len)) = frame_header(binary, frame.len()) else {
            return Written::Nothing;
        };
        let header = &header[..header_len];
        let parts = [io::IoSlice::new(header), io::IoSlice::new(frame)];
        // No SIGPIPE for a peer that is gone, whatever the embedding program does with it.
        #[cfg(any(target_os = "linux", target_os = "android"))]
        let flags = libc::MSG_NOSIGNAL;
        #[cfg(not(any(target_os = "linux", target_os = "android")))]
        let flags = 0;
        match socket2::SockRef::from(self.stream.tcp()).send_vectored_with_flags(&parts, flags) {
            Ok(n) if n == header_len + frame.len() => Written::All,
            Ok(n) if n >= header_len => Written::Part(frame.slice(n - header_len..)),
            Ok(n) if n > 0 => {
                let mut rest = BytesMut::with_capacity(header_len - n + frame.len());
                rest.extend_from_slice(&header[n..]);
                rest.extend_from_slice(frame);
                Written::Part(rest.freeze())
            }
            _ => Written::Nothing,
        }
    }
}

/// A server's (unmasked) header for one whole text or binary message of `len` bytes.
fn frame_header(binary: bool, len: usize) -> io::Result<([u8; 14], usize)> {
    let opcode = if binary { Data::Binary } else { Data::Text };
    let mut header = [0u8; 14];
    let mut out = &mut header[..];
    FrameHeader {
        opcode: HeaderOpCode::Data(opcode),
        ..FrameHeader::default()
    }
    .format(len as u64, &mut out)
    .map_err(io::Error::other)?;
    let written = 14 - out.len();
    Ok((header, written))
}

/// A socket on its way to another worker thread (a stateful-reconnect client's new socket goes
/// to its connection's actor): deregistered from the reactor it was accepted on.
#[derive(Debug)]
pub(crate) struct Detached {
    io: DetachedStream,
    read: BytesMut,
}

impl Detached {
    /// Detach `io` (with the bytes read after its handshake) from this thread's reactor.
    pub(crate) fn new(io: Stream, read: BytesMut) -> io::Result<Self> {
        Ok(Self {
            io: io.detach()?,
            read,
        })
    }
}

fn too_big(max: usize) -> CloseReason {
    CloseReason::MessageTooLarge(format!("The maximum message size of {max}B was exceeded."))
}

/// Why the codec refused the input.
fn refusal(err: &ProtocolError, max: usize) -> CloseReason {
    match err {
        ProtocolError::Overflow => too_big(max),
        e => CloseReason::ProtocolError(format!("WebSocket protocol error: {e}")),
    }
}

#[cfg(test)]
mod tests;
