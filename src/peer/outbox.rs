//! The bounded per-connection outbox and its slow-consumer policy.
//!
//! Producers (hub fan-out, REST sends, the connection itself) call [`Outbox::push`], which never
//! waits. The connection task drains everything queued in one go ([`Outbox::drain_into`]) and
//! writes it as one WebSocket frame, so a burst costs one socket write.
//!
//! **When the outbox is full** (more than `max_messages` frames or `max_bytes` bytes queued) the
//! decision is *close the connection*: the queue is discarded, the connection is told to close
//! with an error Close message, and the push reports [`PushError::Full`] so the caller can count
//! it (`switchboard_outbox_overflow_total`). A slow client thus costs at most its cap in memory
//! and never blocks a hub or other clients. Dropping messages silently instead would break the
//! in-order, no-gap delivery SignalR clients assume.
//!
//! The queue is a `VecDeque` behind a mutex that is held only to push or swap, never across an
//! `.await`; the connection's task waits for it through an atomic flag and waker (no lock, and
//! nothing to undo when its `select!` drops the wait after writing). An empty outbox holds no heap
//! memory: the deque is released after a large drain.
//!
//! **Direct writes.** A connection whose task has nothing to write and waits lends its socket to
//! the outbox ([`Outbox::lend`], through a [`DirectWrite`] it installed). While lent, a producer
//! that is not under load ([`Outbox::push_or_write`]: a hub, when it decides so, see
//! `hub/actor/direct.rs`) writes a frame straight to the socket, under the outbox's lock, without waking the task: the
//! one-message-per-write path costs one system call and no task switch. The kernel buffer taking
//! only part of it leaves the rest *owed*: the socket is no longer lent, the task is woken and
//! writes the owed bytes before anything else ([`Outbox::reclaim`]). A full socket (nothing
//! written) ends the loan too, and the frame is queued as usual. Under load, producers queue and
//! the task coalesces as before. The task takes the socket back before any write of its own
//! ([`Outbox::reclaim`], and every drain), so writes never interleave, and a frame is written
//! directly only when nothing is queued, so order is kept.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use futures_util::task::AtomicWaker;
use parking_lot::Mutex;

use crate::close::CloseReason;

/// Why a push was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PushError {
    /// The outbox overflowed with this push; the connection is being closed.
    Full,
    /// The connection is already closing; the frame was discarded.
    Closed,
}

/// A request to close a connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CloseRequest {
    /// Why: decides the Close message (if any) the client gets.
    pub reason: CloseReason,
    /// Write the frames queued before the close first (false: discard them).
    pub flush: bool,
}

/// A socket its connection's task can lend to the outbox (see the module docs).
pub trait DirectWrite: Send + Sync + std::fmt::Debug {
    /// Write `frame` as one message now, without waiting: wholly, in part, or not at all.
    fn write_now(&self, frame: &Bytes) -> Written;
}

/// How far a [`DirectWrite::write_now`] got.
#[derive(Debug, PartialEq, Eq)]
pub enum Written {
    /// The whole message.
    All,
    /// Part of it: these bytes (as they go on the wire) must follow before anything else.
    Part(Bytes),
    /// Nothing (the socket is full or failed, or the frame is not the socket's to write).
    Nothing,
}

/// What [`Outbox::push_or_write`] did with a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pushed {
    /// Queued for the connection's task.
    Queued,
    /// Written to the socket (all of it, or the rest is owed by the task).
    Written,
}

#[derive(Debug, Default)]
struct State {
    queue: VecDeque<Bytes>,
    bytes: usize,
    close: Option<CloseRequest>,
    /// The socket the task lends while it waits, installed once.
    sink: Option<Arc<dyn DirectWrite>>,
    /// The socket is lent now: a push may write to it.
    lent: bool,
    /// The rest of a frame written in part directly: the task writes it first.
    owed: Option<Bytes>,
}

/// A bounded queue of encoded frames for one connection.
#[derive(Debug)]
pub struct Outbox {
    state: Mutex<State>,
    /// Something was queued or a close requested since the connection's task last looked.
    signal: AtomicBool,
    /// The connection's task, waiting for [`Self::ready`] (there is one consumer).
    waker: AtomicWaker,
    max_messages: usize,
    max_bytes: usize,
    /// The most bytes one drain coalesces (see [`frame_cap`]).
    frame_cap: usize,
}

/// The outbox's byte bound is divided by this for the coalescing cap ([`frame_cap`]).
pub const WRITER_SLOTS: usize = 32;

/// The most bytes one drain coalesces into a frame: 1/[`WRITER_SLOTS`] of the outbox's byte
/// bound, between 8 and 64 KiB. A WebSocket's actor writes one frame at a time straight to its
/// socket, so beyond its outbox a stalled connection holds one such frame; an SSE stream's pipe
/// is bounded by the outbox's bytes. A single larger message still goes as one frame.
pub fn frame_cap(max_bytes: usize) -> usize {
    (max_bytes / WRITER_SLOTS).clamp(8 * 1024, 64 * 1024)
}

/// What one drain produced.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Drained {
    /// Frames appended to the buffer.
    pub frames: usize,
    /// A close was requested; write it after the frames (if any).
    pub close: Option<CloseRequest>,
}

impl Outbox {
    /// An empty outbox with the given bounds.
    pub fn new(max_messages: usize, max_bytes: usize) -> Self {
        Self {
            state: Mutex::new(State::default()),
            signal: AtomicBool::new(false),
            waker: AtomicWaker::new(),
            max_messages,
            max_bytes,
            frame_cap: frame_cap(max_bytes),
        }
    }

    /// Queue a frame without waiting. On overflow the connection is set to close (see the
    /// module docs) and `Full` is returned once; later pushes return `Closed`.
    pub fn push(&self, frame: Bytes) -> Result<(), PushError> {
        self.push_inner(frame, false).map(drop)
    }

    /// [`Self::push`], but write the frame straight to the socket if its task lent it and
    /// nothing is queued (see the module docs). For a producer that is not under load: a
    /// direct write costs the producer's thread a system call, and nothing is coalesced.
    pub fn push_or_write(&self, frame: Bytes) -> Result<Pushed, PushError> {
        self.push_inner(frame, true)
    }

    fn push_inner(&self, frame: Bytes, direct: bool) -> Result<Pushed, PushError> {
        let mut s = self.state.lock();
        if s.close.is_some() {
            return Err(PushError::Closed);
        }
        if direct
            && s.lent
            && s.queue.is_empty()
            && let Some(sink) = &s.sink
        {
            match sink.write_now(&frame) {
                Written::All => return Ok(Pushed::Written),
                Written::Part(rest) => {
                    s.lent = false;
                    s.owed = Some(rest);
                    drop(s);
                    self.signal_ready();
                    return Ok(Pushed::Written);
                }
                // The task takes over: it waits for room and writes what is queued.
                Written::Nothing => s.lent = false,
            }
        }
        if s.queue.len() >= self.max_messages || s.bytes + frame.len() > self.max_bytes {
            s.queue = VecDeque::new();
            s.bytes = 0;
            s.close = Some(CloseRequest {
                reason: CloseReason::SlowClient,
                flush: false,
            });
            drop(s);
            self.signal_ready();
            return Err(PushError::Full);
        }
        s.bytes += frame.len();
        let was_empty = s.queue.is_empty();
        s.queue.push_back(frame);
        drop(s);
        if was_empty {
            self.signal_ready();
        }
        Ok(Pushed::Queued)
    }

    /// Install the socket the connection's task will lend (once, before lending).
    pub fn install_sink(&self, sink: Arc<dyn DirectWrite>) {
        self.state.lock().sink = Some(sink);
    }

    /// Lend the socket: the task has nothing to write and waits. Bytes a direct write owes are
    /// returned instead (the task writes them first, then lends again); refused (`Ok(false)`)
    /// while frames are queued or a close was requested.
    pub fn lend(&self) -> Result<bool, Bytes> {
        let mut s = self.state.lock();
        if let Some(owed) = s.owed.take() {
            s.lent = false;
            return Err(owed);
        }
        s.lent = s.sink.is_some() && s.queue.is_empty() && s.close.is_none();
        Ok(s.lent)
    }

    /// Take the socket back before the task writes: the bytes a direct write left owed, which
    /// go first.
    pub fn reclaim(&self) -> Option<Bytes> {
        let mut s = self.state.lock();
        s.lent = false;
        s.owed.take()
    }

    /// Take the socket back for good (the connection ends): the sink is dropped, and the owed
    /// bytes returned.
    pub fn remove_sink(&self) -> Option<Bytes> {
        let mut s = self.state.lock();
        s.lent = false;
        s.sink = None;
        s.owed.take()
    }

    /// Ask for the connection to close. The first request wins.
    pub fn request_close(&self, request: CloseRequest) {
        let mut s = self.state.lock();
        if s.close.is_none() {
            if !request.flush {
                s.queue = VecDeque::new();
                s.bytes = 0;
            }
            s.close = Some(request);
        }
        drop(s);
        self.signal_ready();
    }

    /// Wake the connection's task (or let its next [`Self::ready`] return at once).
    fn signal_ready(&self) {
        self.signal.store(true, Ordering::Release);
        self.waker.wake();
    }

    /// Wait until something was queued or a close was requested. For the connection's own
    /// task only (one consumer); cancel-safe, and cheap to drop.
    pub async fn ready(&self) {
        poll_fn(|cx| self.poll_ready(cx)).await;
    }

    /// [`Self::ready`] as a poll: lock-free, nothing to undo when the caller stops waiting.
    pub fn poll_ready(&self, cx: &mut Context<'_>) -> Poll<()> {
        if self.signal.swap(false, Ordering::Acquire) {
            return Poll::Ready(());
        }
        self.waker.register(cx.waker());
        if self.signal.swap(false, Ordering::Acquire) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }

    /// Move queued frames into `buf` (concatenated: SignalR framing lets one transport frame
    /// carry several messages), up to the frame cap, and report a pending close once nothing
    /// is left. Returns the first frame unchanged in `single` when it goes alone, so the common
    /// case copies nothing. If frames remain, [`Self::ready`] fires again at once.
    pub fn drain_into(&self, buf: &mut BytesMut, single: &mut Option<Bytes>) -> Drained {
        let mut s = self.state.lock();
        // The task writes what it takes: the socket is not lent meanwhile.
        s.lent = false;
        let alone = match (s.queue.front(), s.queue.get(1)) {
            (Some(_), None) => true,
            (Some(a), Some(b)) => a.len() + b.len() > self.frame_cap,
            (None, _) => false,
        };
        let mut frames = 0;
        let mut taken = 0;
        if alone {
            let f = s.queue.pop_front().expect("a queued frame");
            taken = f.len();
            frames = 1;
            *single = Some(f);
        } else {
            buf.reserve(s.bytes.min(self.frame_cap));
            while let Some(f) = s.queue.front() {
                if frames > 0 && taken + f.len() > self.frame_cap {
                    break;
                }
                let f = s.queue.pop_front().expect("a queued frame");
                taken += f.len();
                frames += 1;
                buf.extend_from_slice(&f);
            }
        }
        s.bytes -= taken;
        let more = !s.queue.is_empty();
        if !more && s.queue.capacity() > 64 {
            // Give a burst's memory back; an idle connection keeps nothing.
            s.queue = VecDeque::new();
        }
        let close = if more { None } else { s.close.clone() };
        drop(s);
        if more {
            self.signal_ready();
        }
        Drained { frames, close }
    }

    /// Number of frames queued now.
    pub fn len(&self) -> usize {
        self.state.lock().queue.len()
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether a close was requested.
    pub fn is_closing(&self) -> bool {
        self.state.lock().close.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drains_in_order_and_coalesces() {
        let o = Outbox::new(10, 1000);
        o.push(Bytes::from_static(b"a\x1e")).unwrap();
        o.push(Bytes::from_static(b"b\x1e")).unwrap();
        let (mut buf, mut single) = (BytesMut::new(), None);
        let d = o.drain_into(&mut buf, &mut single);
        assert_eq!(d.frames, 2);
        assert_eq!(&buf[..], b"a\x1eb\x1e");
        assert!(single.is_none());
        o.push(Bytes::from_static(b"c")).unwrap();
        buf.clear();
        let d = o.drain_into(&mut buf, &mut single);
        assert_eq!((d.frames, single.as_deref()), (1, Some(&b"c"[..])));
        assert!(buf.is_empty());
    }

    #[test]
    fn a_drain_coalesces_at_most_the_frame_cap() {
        let cap = frame_cap(1 << 20);
        assert_eq!(cap, 32 * 1024);
        let o = Outbox::new(100, 1 << 20);
        let part = Bytes::from(vec![b'a'; cap / 4]);
        for _ in 0..6 {
            o.push(part.clone()).unwrap();
        }
        o.request_close(CloseRequest {
            reason: CloseReason::ByAppServer,
            flush: true,
        });
        let (mut buf, mut single) = (BytesMut::new(), None);
        let d = o.drain_into(&mut buf, &mut single);
        assert_eq!((d.frames, buf.len()), (4, cap));
        assert_eq!(d.close, None, "the close waits for the rest");
        assert_eq!(o.len(), 2);
        buf.clear();
        let d = o.drain_into(&mut buf, &mut single);
        assert_eq!((d.frames, buf.len()), (2, cap / 2));
        assert!(d.close.is_some());
        // A message above the cap goes alone, uncopied.
        let big = Bytes::from(vec![b'b'; cap + 1]);
        let o = Outbox::new(100, 1 << 20);
        o.push(big.clone()).unwrap();
        o.push(part.clone()).unwrap();
        buf.clear();
        let d = o.drain_into(&mut buf, &mut single);
        assert_eq!((d.frames, single.take()), (1, Some(big)));
        assert!(buf.is_empty());
        let d = o.drain_into(&mut buf, &mut single);
        assert_eq!((d.frames, single.take()), (1, Some(part)));
    }

    #[tokio::test]
    async fn ready_fires_again_while_frames_remain() {
        let o = Outbox::new(100, 1 << 20);
        let part = Bytes::from(vec![b'a'; frame_cap(1 << 20)]);
        o.push(part.clone()).unwrap();
        o.push(part).unwrap();
        o.ready().await;
        let (mut buf, mut single) = (BytesMut::new(), None);
        assert_eq!(o.drain_into(&mut buf, &mut single).frames, 1);
        tokio::time::timeout(std::time::Duration::from_secs(5), o.ready())
            .await
            .expect("ready fires for the frame left behind");
    }

    #[test]
    fn overflow_by_count_closes_and_discards() {
        let o = Outbox::new(2, 1000);
        o.push(Bytes::from_static(b"1")).unwrap();
        o.push(Bytes::from_static(b"2")).unwrap();
        assert_eq!(o.push(Bytes::from_static(b"3")), Err(PushError::Full));
        assert_eq!(o.push(Bytes::from_static(b"4")), Err(PushError::Closed));
        let (mut buf, mut single) = (BytesMut::new(), None);
        let d = o.drain_into(&mut buf, &mut single);
        assert_eq!(d.frames, 0, "an overflowing queue is discarded");
        let close = d.close.unwrap();
        assert_eq!(close.reason, CloseReason::SlowClient);
        assert!(!close.flush);
    }

    #[test]
    fn overflow_by_bytes() {
        let o = Outbox::new(100, 5);
        o.push(Bytes::from_static(b"abc")).unwrap();
        assert_eq!(o.push(Bytes::from_static(b"def")), Err(PushError::Full));
        assert!(o.is_closing());
    }

    #[test]
    fn flushing_close_keeps_queued_frames() {
        let o = Outbox::new(10, 100);
        o.push(Bytes::from_static(b"x")).unwrap();
        o.request_close(CloseRequest {
            reason: CloseReason::ByApplication(Some("bye".into())),
            flush: true,
        });
        assert_eq!(o.push(Bytes::from_static(b"y")), Err(PushError::Closed));
        let (mut buf, mut single) = (BytesMut::new(), None);
        let d = o.drain_into(&mut buf, &mut single);
        assert_eq!(single.as_deref(), Some(&b"x"[..]));
        assert_eq!(
            d.close.unwrap().reason,
            CloseReason::ByApplication(Some("bye".into()))
        );
    }

    /// A socket that records what it was given and writes as told.
    #[derive(Debug, Default)]
    struct FakeSink {
        written: Mutex<Vec<Bytes>>,
        /// What the next writes do (`All` once this runs out).
        script: Mutex<VecDeque<Written>>,
    }

    impl DirectWrite for FakeSink {
        fn write_now(&self, frame: &Bytes) -> Written {
            let outcome = self.script.lock().pop_front().unwrap_or(Written::All);
            if outcome != Written::Nothing {
                self.written.lock().push(frame.clone());
            }
            outcome
        }
    }

    fn offer(o: &Outbox, frame: &'static [u8]) -> Result<Pushed, PushError> {
        o.push_or_write(Bytes::from_static(frame))
    }

    fn lent(max_messages: usize) -> (Outbox, Arc<FakeSink>) {
        let o = Outbox::new(max_messages, 1 << 20);
        let sink = Arc::new(FakeSink::default());
        o.install_sink(sink.clone());
        assert_eq!(o.lend(), Ok(true));
        (o, sink)
    }

    #[test]
    fn a_lent_socket_is_written_directly_only_by_producers_that_ask() {
        let (o, sink) = lent(10);
        assert_eq!(offer(&o, b"a"), Ok(Pushed::Written));
        assert_eq!(offer(&o, b"b"), Ok(Pushed::Written));
        assert_eq!(*sink.written.lock(), [&b"a"[..], b"b"]);
        assert!(o.is_empty(), "nothing queued, the task is not woken");
        assert!(!o.signal.load(Ordering::Acquire));
        // A producer under load queues: the task coalesces.
        assert_eq!(o.push(Bytes::from_static(b"c")), Ok(()));
        assert_eq!(o.len(), 1);
        assert!(o.signal.load(Ordering::Acquire));
    }

    #[test]
    fn nothing_is_written_directly_past_a_queued_frame_or_while_not_lent() {
        let (o, sink) = lent(10);
        o.push(Bytes::from_static(b"queued")).unwrap();
        // Written directly now, it would overtake the queued frame.
        assert_eq!(offer(&o, b"next"), Ok(Pushed::Queued));
        assert!(sink.written.lock().is_empty());
        // The task drains: the socket is its own until it lends it again.
        let (mut buf, mut single) = (BytesMut::new(), None);
        assert_eq!(o.drain_into(&mut buf, &mut single).frames, 2);
        assert_eq!(offer(&o, b"x"), Ok(Pushed::Queued));
        assert!(sink.written.lock().is_empty());
        assert_eq!(o.lend(), Ok(false), "not lent while a frame is queued");
        o.drain_into(&mut buf, &mut single);
        assert_eq!(o.lend(), Ok(true));
        // Taken back before the task writes a frame of its own (a Ping).
        assert_eq!(o.reclaim(), None);
        assert_eq!(offer(&o, b"y"), Ok(Pushed::Queued));
        assert!(sink.written.lock().is_empty());
    }

    #[test]
    fn a_part_written_frame_leaves_the_rest_owed_to_the_task_first() {
        let (o, sink) = lent(10);
        sink.script
            .lock()
            .push_back(Written::Part(Bytes::from_static(b"rest")));
        assert_eq!(offer(&o, b"whole"), Ok(Pushed::Written));
        assert!(
            o.signal.load(Ordering::Acquire),
            "the task is woken to write the rest"
        );
        // The loan ended: what follows is queued behind the owed bytes.
        assert_eq!(offer(&o, b"after"), Ok(Pushed::Queued));
        assert_eq!(sink.written.lock().len(), 1);
        // The task gets the owed bytes before it may lend again, and only once.
        assert_eq!(o.lend(), Err(Bytes::from_static(b"rest")));
        assert_eq!(o.reclaim(), None);
        assert_eq!(o.lend(), Ok(false), "a frame is still queued");
        let (mut buf, mut single) = (BytesMut::new(), None);
        o.drain_into(&mut buf, &mut single);
        assert_eq!(single.as_deref(), Some(&b"after"[..]));
        // Owed bytes are returned however the socket is taken back.
        assert_eq!(o.lend(), Ok(true));
        sink.script
            .lock()
            .push_back(Written::Part(Bytes::from_static(b"r2")));
        offer(&o, b"w2").unwrap();
        assert_eq!(o.reclaim(), Some(Bytes::from_static(b"r2")));
        assert_eq!(o.lend(), Ok(true));
        sink.script
            .lock()
            .push_back(Written::Part(Bytes::from_static(b"r3")));
        offer(&o, b"w3").unwrap();
        assert_eq!(o.remove_sink(), Some(Bytes::from_static(b"r3")));
    }

    #[test]
    fn a_full_socket_ends_the_loan_and_the_frame_is_queued() {
        let (o, sink) = lent(1);
        sink.script.lock().push_back(Written::Nothing);
        assert_eq!(offer(&o, b"a"), Ok(Pushed::Queued));
        assert_eq!(o.len(), 1);
        assert!(o.signal.load(Ordering::Acquire));
        // The outbox's bounds hold as for any queued frame.
        assert_eq!(offer(&o, b"b"), Err(PushError::Full));
        assert!(sink.written.lock().is_empty());
    }

    #[test]
    fn nothing_is_written_after_a_close_or_without_a_sink() {
        let (o, sink) = lent(10);
        o.request_close(CloseRequest {
            reason: CloseReason::ByAppServer,
            flush: true,
        });
        assert_eq!(offer(&o, b"a"), Err(PushError::Closed));
        assert_eq!(o.lend(), Ok(false));
        assert!(sink.written.lock().is_empty());
        let o = Outbox::new(10, 100);
        assert_eq!(o.lend(), Ok(false), "nothing to lend");
        assert_eq!(offer(&o, b"a"), Ok(Pushed::Queued));
        // A removed sink is never written to again.
        let (o, sink) = lent(10);
        assert_eq!(o.remove_sink(), None);
        assert_eq!(o.lend(), Ok(false));
        assert_eq!(offer(&o, b"a"), Ok(Pushed::Queued));
        assert!(sink.written.lock().is_empty());
    }

    #[tokio::test]
    async fn ready_fires_after_push() {
        let o = Arc::new(Outbox::new(10, 100));
        let o2 = o.clone();
        let waiter = tokio::spawn(async move { o2.ready().await });
        tokio::task::yield_now().await;
        o.push(Bytes::from_static(b"x")).unwrap();
        waiter.await.unwrap();
    }
}
