//! The transports a client connection actor runs over: WebSockets, Server-Sent Events and long
//! polling (`docs/protocol.md#transports`). The actor sees one interface — receive client bytes,
//! send one frame, close — so lifecycle, routing, groups, limits and errors are identical on
//! every transport.
//!
//! - **WebSockets**: the upgraded socket, owned by the connection's actor ([`WsSocket`]); each
//!   frame is one WebSocket message (text for JSON, binary for MessagePack); WebSocket pings are
//!   answered there.
//! - **Server-Sent Events**: frames become `data:` events written by the connection's actor on
//!   the stream's socket, taken from actix-http once the answer's head is out ([`SseSocket`]);
//!   client bytes arrive by `POST` ([`HttpConnections`]), through a bounded [`Pipe`].
//! - **Long polling**: frames are appended to the connection's poll buffer, which the next `GET`
//!   takes whole (one response carries everything queued); client bytes arrive by `POST`. The
//!   buffer is bounded by `limits.outbox_max_bytes`: a client that stops polling is closed like a
//!   slow WebSocket client. A connection with no poll for `limits.negotiate_timeout_secs`
//!   (ASP.NET Core's 15 s disconnect timeout) is gone.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use parking_lot::Mutex;
use tokio::sync::Notify;

use super::owner::{Owner, Refusal};
pub(crate) use super::pipe::{Pipe, PipeError, PipeReceiver};
use super::sse::SseSocket;
use super::ws::{Detached, WsEvent, WsSocket};
use crate::close::{CloseReason, WsClose};
use crate::id::TransportKind;
use crate::protocol::HubProtocol;

/// What the client sent.
pub(crate) enum Inbound {
    /// Bytes of the client's stream.
    Data(Bytes),
    /// The transport was lost without a goodbye (a stateful-reconnect client may come back).
    Gone,
    /// The client closed the transport properly (a WebSocket close frame).
    Closed,
    /// The transport itself was misused (oversized or malformed frame, a text frame that is not
    /// UTF-8): close for this reason.
    Invalid(CloseReason),
}

/// One connection's transport.
pub(crate) enum Transport {
    WebSocket(WsSocket),
    ServerSentEvents {
        inbound: PipeReceiver,
        events: SseSocket,
    },
    LongPolling {
        inbound: PipeReceiver,
        poll: Arc<PollState>,
    },
}

/// A reconnecting WebSocket on its way to its connection's actor (possibly on another worker
/// thread).
pub(crate) type Resumption = Detached;

impl Transport {
    /// Which transport it is.
    pub(crate) fn kind(&self) -> TransportKind {
        match self {
            Self::WebSocket(_) => TransportKind::WebSockets,
            Self::ServerSentEvents { .. } => TransportKind::ServerSentEvents,
            Self::LongPolling { .. } => TransportKind::LongPolling,
        }
    }

    /// Whether the transport carries binary (MessagePack) frames.
    pub(crate) fn binary_supported(&self) -> bool {
        !matches!(self, Self::ServerSentEvents { .. })
    }

    /// Whether the server sends keep-alive Pings (long polling has inherent keep-alive).
    pub(crate) fn sends_pings(&self) -> bool {
        !matches!(self, Self::LongPolling { .. })
    }

    /// The next client bytes. Cancel-safe.
    pub(crate) async fn recv(&mut self) -> Inbound {
        match self {
            Self::WebSocket(socket) => match socket.recv().await {
                WsEvent::Message(data) => Inbound::Data(data),
                WsEvent::Closed => Inbound::Closed,
                WsEvent::Gone => Inbound::Gone,
                WsEvent::Invalid(reason) => Inbound::Invalid(reason),
            },
            // The client dropping its event stream ends the connection at once.
            Self::ServerSentEvents { inbound, events } => tokio::select! {
                data = inbound.recv() => data.map_or(Inbound::Gone, Inbound::Data),
                () = events.gone() => Inbound::Gone,
            },
            Self::LongPolling { inbound, poll } => tokio::select! {
                data = inbound.recv() => data.map_or(Inbound::Gone, Inbound::Data),
                _ = poll.terminated() => Inbound::Closed,
            },
        }
    }

    /// Write one frame (everything queued, or the handshake answer) within `timeout`.
    pub(crate) async fn send(
        &mut self,
        protocol: HubProtocol,
        frame: Bytes,
        timeout: Duration,
    ) -> Result<(), SendError> {
        let result = match self {
            Self::WebSocket(socket) => {
                let binary = protocol.is_binary();
                // A hub server's bytes for a JSON client are not checked elsewhere: a text frame
                // that is not UTF-8 would make the client fail the connection.
                if !binary && !is_utf8(&frame) {
                    return Err(SendError::Closed);
                }
                within(timeout, socket.send(binary, &frame))
                    .await
                    .map(|r| r.map_err(drop))
            }
            Self::ServerSentEvents { events, .. } => within(timeout, events.send(&frame))
                .await
                .map(|r| r.map_err(drop)),
            Self::LongPolling { poll, .. } => return poll.push(&frame),
        };
        match result {
            Ok(Ok(())) => Ok(()),
            Ok(Err(())) => Err(SendError::Closed),
            Err(_elapsed) => Err(SendError::TimedOut),
        }
    }

    /// A WebSocket client that is not stateful: let `conn`'s outbox write to the socket while
    /// the actor waits (see [`WsSocket::lend_to`]). Other transports keep every write.
    pub(crate) fn lend_to(&mut self, conn: &crate::peer::ConnHandle, protocol: HubProtocol) {
        if let Self::WebSocket(socket) = self {
            socket.lend_to(conn.clone(), protocol.is_binary());
        }
    }

    /// The actor is about to wait with nothing to write: lend the socket, if it may.
    pub(crate) fn lend(&mut self) {
        if let Self::WebSocket(socket) = self {
            socket.lend();
        }
    }

    /// Whether the client stopped coming back (long polling without a poll for `idle`).
    pub(crate) fn is_abandoned(&self, idle: Duration) -> bool {
        match self {
            Self::LongPolling { poll, .. } => poll.abandoned(idle),
            _ => false,
        }
    }

    /// End the transport: the WebSocket close frame `close`, the end of the SSE stream, or 204
    /// for the current and next polls. The close frame waits at most `timeout` for room: a
    /// client that stopped reading must not keep this task alive.
    pub(crate) async fn close(self, close: &WsClose, timeout: Duration) {
        match self {
            // The client may already be gone.
            Self::WebSocket(mut socket) => {
                socket.close(close, timeout).await;
                tokio::spawn(socket.linger());
            }
            Self::ServerSentEvents { mut events, .. } => {
                events.close(timeout).await;
                tokio::spawn(events.linger());
            }
            Self::LongPolling { poll, .. } => poll.close(),
        }
    }
}

thread_local! {
    /// The last text frame this thread found to be UTF-8. Held (not just its address), so that
    /// its memory cannot be reused for other bytes while it is the comparison.
    static VALID_TEXT: std::cell::RefCell<Bytes> = const { std::cell::RefCell::new(Bytes::new()) };
}

/// Whether `frame` is UTF-8. A broadcast's frame is the same shared bytes for every recipient,
/// and a worker thread writes it to its connections one after the other: it is checked once.
pub(super) fn is_utf8(frame: &Bytes) -> bool {
    VALID_TEXT.with(|last| {
        let mut last = last.borrow_mut();
        if last.as_ptr() == frame.as_ptr() && last.len() == frame.len() {
            return true;
        }
        let valid = std::str::from_utf8(frame).is_ok();
        if valid {
            *last = frame.clone();
        }
        valid
    })
}

/// `write` within `timeout`, the timer set up only if the socket cannot take it at once (the
/// common case costs no clock read and no timer).
async fn within<F: Future>(
    timeout: Duration,
    write: F,
) -> Result<F::Output, tokio::time::error::Elapsed> {
    let mut write = std::pin::pin!(write);
    if let std::task::Poll::Ready(done) =
        std::future::poll_fn(|cx| std::task::Poll::Ready(write.as_mut().poll(cx))).await
    {
        return Ok(done);
    }
    tokio::time::timeout(timeout, write).await
}

/// Why [`Transport::send`] failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SendError {
    /// The frame could not be handed to the socket within the send timeout (the client stopped
    /// reading).
    TimedOut,
    /// A long-polling connection's poll buffer is full (the client stopped polling).
    Full,
    /// The transport is closed.
    Closed,
}

/// One Server-Sent Event: `data: <line>\r\n` per line (a CR before an LF dropped), then `\r\n`.
pub(crate) fn sse_event(frame: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(frame.len() + 16);
    for line in frame.split(|b| *b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        out.put_slice(b"data: ");
        out.put_slice(line);
        out.put_slice(b"\r\n");
    }
    out.put_slice(b"\r\n");
    out.freeze()
}

/// The shared state of a long-polling connection: its poll buffer and poll bookkeeping.
#[derive(Debug)]
pub(crate) struct PollState {
    inner: Mutex<PollInner>,
    notify: Notify,
    max_bytes: usize,
}

#[derive(Debug)]
struct PollInner {
    buf: BytesMut,
    closed: bool,
    terminated: bool,
    generation: u64,
    polling: bool,
    last_poll: Instant,
}

/// How a poll ended.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum PollOutcome {
    /// Data for the client (200).
    Data(Bytes),
    /// Nothing within the poll timeout (200, empty).
    Timeout,
    /// The connection is over, or a newer poll took over (204).
    Done,
}

impl PollState {
    /// A fresh state whose buffer holds at most `max_bytes`.
    pub(crate) fn new(max_bytes: usize) -> Self {
        Self {
            inner: Mutex::new(PollInner {
                buf: BytesMut::new(),
                closed: false,
                terminated: false,
                generation: 0,
                polling: false,
                last_poll: Instant::now(),
            }),
            notify: Notify::new(),
            max_bytes,
        }
    }

    fn push(&self, frame: &[u8]) -> Result<(), SendError> {
        let mut s = self.inner.lock();
        if s.closed {
            return Err(SendError::Closed);
        }
        if s.buf.len() + frame.len() > self.max_bytes {
            return Err(SendError::Full);
        }
        s.buf.extend_from_slice(frame);
        drop(s);
        self.notify.notify_waiters();
        Ok(())
    }

    fn close(&self) {
        self.inner.lock().closed = true;
        self.notify.notify_waiters();
    }

    fn abandoned(&self, idle: Duration) -> bool {
        let s = self.inner.lock();
        !s.polling && s.last_poll.elapsed() >= idle
    }

    /// Whether a poll now would answer at once (something is queued, or the connection is over).
    pub(crate) fn is_ready(&self) -> bool {
        let s = self.inner.lock();
        !s.buf.is_empty() || s.closed
    }

    /// Wait for data (at most `timeout`); a newer poll supersedes this one. Dropped before it
    /// ends (the client left), the poll counts as ended then: the disconnect timeout runs from
    /// there.
    pub(crate) async fn poll(&self, timeout: Duration) -> PollOutcome {
        /// Marks the poll ended however its future ends.
        struct Polling<'a>(&'a PollState, u64);
        impl Drop for Polling<'_> {
            fn drop(&mut self) {
                let mut s = self.0.inner.lock();
                if s.generation == self.1 {
                    s.polling = false;
                    s.last_poll = Instant::now();
                }
            }
        }
        let generation = {
            let mut s = self.inner.lock();
            s.generation += 1;
            s.polling = true;
            s.last_poll = Instant::now();
            s.generation
        };
        let _polling = Polling(self, generation);
        // Wake an older poll so that it ends with 204.
        self.notify.notify_waiters();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut s = self.inner.lock();
                if s.generation != generation {
                    return PollOutcome::Done;
                }
                if !s.buf.is_empty() {
                    let data = s.buf.split().freeze();
                    if s.buf.capacity() > 64 * 1024 {
                        s.buf = BytesMut::new();
                    }
                    return PollOutcome::Data(data);
                }
                if s.closed {
                    return PollOutcome::Done;
                }
            }
            tokio::select! {
                _ = &mut notified => {}
                _ = tokio::time::sleep_until(deadline) => return PollOutcome::Timeout,
            }
        }
    }

    /// End the connection from the client's side (DELETE).
    pub(crate) fn terminate(&self) {
        self.inner.lock().terminated = true;
        self.close();
    }

    /// Resolves once the client ended the connection with DELETE.
    async fn terminated(&self) {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.inner.lock().terminated {
                return;
            }
            notified.await;
        }
    }

    /// Whether the connection is over and everything queued was taken by a poll.
    pub(crate) fn is_finished(&self) -> bool {
        let s = self.inner.lock();
        s.closed && s.buf.is_empty()
    }

    /// Whether the client ended the connection with DELETE.
    pub(crate) fn is_terminated(&self) -> bool {
        self.inner.lock().terminated
    }
}

/// An SSE or long-polling connection as the HTTP handlers see it.
#[derive(Clone, Debug)]
pub(crate) struct HttpEntry {
    /// Its transport.
    pub kind: TransportKind,
    /// Where POSTed client bytes go (bounded: a POST waits for room).
    pub inbound: Arc<Pipe>,
    /// Long polling only: the poll buffer.
    pub poll: Option<Arc<PollState>>,
    /// The hub and user negotiate was called for: every request must be theirs.
    pub owner: Owner,
}

/// SSE and long-polling connections by connection token.
#[derive(Debug, Default)]
pub(crate) struct HttpConnections {
    map: Mutex<HashMap<String, HttpEntry>>,
}

impl HttpConnections {
    /// Register a connection.
    pub(crate) fn insert(&self, token: String, entry: HttpEntry) {
        self.map.lock().insert(token, entry);
    }

    /// The connection with this token.
    pub(crate) fn get(&self, token: &str) -> Option<HttpEntry> {
        self.map.lock().get(token).cloned()
    }

    /// The connection with this token, if it belongs to `owner`.
    pub(crate) fn get_for(&self, token: &str, owner: &Owner) -> Result<HttpEntry, Refusal> {
        match self.map.lock().get(token) {
            None => Err(Refusal::Unknown),
            Some(e) if e.owner != *owner => Err(Refusal::Foreign),
            Some(e) => Ok(e.clone()),
        }
    }

    /// Forget a connection (it ended).
    pub(crate) fn remove(&self, token: &str) {
        self.map.lock().remove(token);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse_events_split_lines() {
        assert_eq!(
            &sse_event(b"{\"type\":6}\x1e")[..],
            b"data: {\"type\":6}\x1e\r\n\r\n"
        );
        assert_eq!(
            &sse_event(b"a\r\nb\nc")[..],
            b"data: a\r\ndata: b\r\ndata: c\r\n\r\n"
        );
    }

    #[test]
    fn text_frames_are_checked_once_per_shared_bytes() {
        let frame = Bytes::from(b"{\"type\":6}\x1e".to_vec());
        assert!(is_utf8(&frame));
        assert!(is_utf8(&frame.clone()), "the same shared bytes");
        // Other bytes of the same length are checked, whatever came before.
        let bad = Bytes::from(vec![0xff; frame.len()]);
        assert!(!is_utf8(&bad));
        assert!(!is_utf8(&bad.clone()));
        assert!(is_utf8(&frame));
        // A slice of a checked frame (the same address, another length) is checked again.
        assert!(is_utf8(&frame.slice(0..3)));
        let mixed = Bytes::from(vec![b'a', 0xff]);
        assert!(is_utf8(&mixed.slice(0..1)));
        assert!(!is_utf8(&mixed));
    }

    #[tokio::test]
    async fn polls_take_everything_and_supersede() {
        let p = Arc::new(PollState::new(100));
        p.push(b"ab").unwrap();
        p.push(b"cd").unwrap();
        assert_eq!(
            p.poll(Duration::from_secs(1)).await,
            PollOutcome::Data(Bytes::from_static(b"abcd"))
        );
        // A second poll supersedes a waiting one.
        let p2 = p.clone();
        let first = tokio::spawn(async move { p2.poll(Duration::from_secs(30)).await });
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(20)).await;
        let p3 = p.clone();
        let second = tokio::spawn(async move { p3.poll(Duration::from_secs(30)).await });
        assert_eq!(first.await.unwrap(), PollOutcome::Done);
        p.push(b"x").unwrap();
        assert_eq!(
            second.await.unwrap(),
            PollOutcome::Data(Bytes::from_static(b"x"))
        );
        // Bounded: an overflow is refused (the actor then closes the connection).
        assert_eq!(p.push(&[0u8; 101]), Err(SendError::Full));
        p.close();
        assert_eq!(p.push(b"x"), Err(SendError::Closed));
        assert_eq!(p.poll(Duration::from_secs(1)).await, PollOutcome::Done);
    }

    #[tokio::test(start_paused = true)]
    async fn an_empty_poll_times_out() {
        let p = PollState::new(10);
        assert_eq!(p.poll(Duration::from_secs(90)).await, PollOutcome::Timeout);
    }
}
