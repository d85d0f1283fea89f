//! A bounded queue of byte chunks between two tasks that holds no heap memory while empty: the
//! SSE and long-polling transports' inbound queues (see `transport`).

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::Notify;

/// A bounded queue of byte chunks between two tasks that holds no heap memory while empty.
///
/// It replaces a tokio `mpsc` channel for the SSE and long-polling transports: such a channel
/// allocates its first 32-slot block up front, about 1.5 KB per channel and so per idle
/// connection. The receiver closes the pipe when it goes away ([`PipeReceiver`] does that on
/// drop): sends fail from then on.
///
/// **Bounded in chunks and in bytes.** A send that does not fit waits for room (a chunk larger
/// than the byte bound fits an empty pipe), and only one send may wait at a time: another one
/// that finds the pipe full is refused at once ([`PipeError::Busy`]). So a pipe holds at most
/// its bounds plus the one waiting chunk, however many senders there are (the long-polling and
/// SSE POSTs of one connection answer that refusal with 429).
#[derive(Debug)]
pub(crate) struct Pipe {
    state: Mutex<PipeState>,
    /// Something was queued, or the pipe closed.
    readable: Notify,
    /// Something was taken, or the pipe closed.
    writable: Notify,
    capacity: usize,
    max_bytes: usize,
}

#[derive(Debug, Default)]
struct PipeState {
    items: VecDeque<Bytes>,
    /// The bytes of `items`.
    bytes: usize,
    closed: bool,
    /// A send is waiting for room.
    waiting: bool,
}

/// Why [`Pipe::send`] failed; the chunk comes back.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum PipeError {
    /// The pipe is closed.
    Closed(Bytes),
    /// The pipe is full and another send already waits for room.
    Busy(Bytes),
}

/// The one waiting send's claim; released when the send ends, however it ends.
struct WaitSlot<'a>(&'a Pipe);

impl Drop for WaitSlot<'_> {
    fn drop(&mut self) {
        self.0.state.lock().waiting = false;
    }
}

impl Pipe {
    /// An empty, open pipe holding at most `capacity` chunks and `max_bytes` bytes.
    pub(crate) fn new(capacity: usize, max_bytes: usize) -> Self {
        Self {
            state: Mutex::new(PipeState::default()),
            readable: Notify::new(),
            writable: Notify::new(),
            capacity: capacity.max(1),
            max_bytes,
        }
    }

    /// Whether a chunk of `len` bytes fits now (any chunk fits an empty pipe).
    fn fits(&self, s: &PipeState, len: usize) -> bool {
        s.items.is_empty()
            || (s.items.len() < self.capacity && s.bytes.saturating_add(len) <= self.max_bytes)
    }

    /// Queue `item`, waiting for room if no other send waits; see [`PipeError`]. Cancel-safe.
    pub(crate) async fn send(&self, item: Bytes) -> Result<(), PipeError> {
        let mut slot = None;
        loop {
            let writable = self.writable.notified();
            tokio::pin!(writable);
            writable.as_mut().enable();
            {
                let mut s = self.state.lock();
                if s.closed {
                    return Err(PipeError::Closed(item));
                }
                if self.fits(&s, item.len()) {
                    s.bytes += item.len();
                    s.items.push_back(item);
                    drop(s);
                    self.readable.notify_one();
                    return Ok(());
                }
                if slot.is_none() {
                    if s.waiting {
                        return Err(PipeError::Busy(item));
                    }
                    s.waiting = true;
                    slot = Some(WaitSlot(self));
                }
            }
            writable.await;
        }
    }

    /// The next chunk, waiting for one; `None` once the pipe is closed and drained. Cancel-safe.
    pub(crate) async fn recv(&self) -> Option<Bytes> {
        loop {
            let readable = self.readable.notified();
            tokio::pin!(readable);
            readable.as_mut().enable();
            {
                let mut s = self.state.lock();
                if let Some(item) = s.items.pop_front() {
                    s.bytes -= item.len();
                    if s.items.is_empty() && s.items.capacity() > 4 {
                        // Give a burst's memory back: an idle connection keeps nothing here.
                        s.items = VecDeque::new();
                    }
                    drop(s);
                    self.writable.notify_one();
                    return Some(item);
                }
                if s.closed {
                    return None;
                }
            }
            readable.await;
        }
    }

    /// Close the pipe and discard what is queued (the receiver went away).
    fn close_and_clear(&self) {
        let items = {
            let mut s = self.state.lock();
            s.closed = true;
            s.bytes = 0;
            std::mem::take(&mut s.items)
        };
        drop(items);
        self.wake_all();
    }

    fn wake_all(&self) {
        self.readable.notify_waiters();
        self.writable.notify_waiters();
    }
}

/// The receiving end of a [`Pipe`]; closes it when dropped.
#[derive(Debug)]
pub(crate) struct PipeReceiver(pub Arc<Pipe>);

impl PipeReceiver {
    /// The next chunk; `None` once the pipe is closed and drained.
    pub(crate) async fn recv(&mut self) -> Option<Bytes> {
        self.0.recv().await
    }
}

impl Drop for PipeReceiver {
    fn drop(&mut self) {
        self.0.close_and_clear();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn pipes_are_bounded_ordered_and_close_when_the_receiver_goes() {
        let pipe = Arc::new(Pipe::new(2, usize::MAX));
        let mut rx = PipeReceiver(pipe.clone());
        pipe.send(Bytes::from_static(b"a")).await.unwrap();
        pipe.send(Bytes::from_static(b"b")).await.unwrap();
        // Full: a third send waits until the receiver takes one.
        let p2 = pipe.clone();
        let third = tokio::spawn(async move { p2.send(Bytes::from_static(b"c")).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!third.is_finished());
        assert_eq!(rx.recv().await.as_deref(), Some(&b"a"[..]));
        third.await.unwrap().unwrap();
        assert_eq!(rx.recv().await.as_deref(), Some(&b"b"[..]));
        assert_eq!(rx.recv().await.as_deref(), Some(&b"c"[..]));

        // The receiver going away fails sends, including one waiting for room.
        let pipe = Arc::new(Pipe::new(1, usize::MAX));
        let rx = PipeReceiver(pipe.clone());
        pipe.send(Bytes::from_static(b"x")).await.unwrap();
        let p2 = pipe.clone();
        let waiting = tokio::spawn(async move { p2.send(Bytes::from_static(b"y")).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiting.is_finished());
        drop(rx);
        assert!(waiting.await.unwrap().is_err());
        assert!(pipe.send(Bytes::from_static(b"z")).await.is_err());
    }

    #[tokio::test]
    async fn pipes_are_bounded_in_bytes_and_let_one_send_wait() {
        let chunk = |n: usize| Bytes::from(vec![b'x'; n]);
        let pipe = Arc::new(Pipe::new(16, 1000));
        let rx = PipeReceiver(pipe.clone());
        // A chunk larger than the bound fits an empty pipe; nothing fits beside it.
        pipe.send(chunk(1500)).await.unwrap();
        let p2 = pipe.clone();
        let waiting = tokio::spawn(async move { p2.send(chunk(600)).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiting.is_finished());
        // While one send waits, the next is refused at once.
        assert_eq!(pipe.send(chunk(1)).await, Err(PipeError::Busy(chunk(1))));
        assert_eq!(rx.0.recv().await.map(|b| b.len()), Some(1500));
        waiting.await.unwrap().unwrap();
        // 600 of 1000 bytes queued: 400 more fit, 401 wait.
        pipe.send(chunk(400)).await.unwrap();
        let p2 = pipe.clone();
        let waiting = tokio::spawn(async move { p2.send(chunk(1)).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiting.is_finished());
        // A waiting send that is given up frees its claim: the next one may wait.
        waiting.abort();
        assert!(waiting.await.unwrap_err().is_cancelled());
        let p2 = pipe.clone();
        let waiting = tokio::spawn(async move { p2.send(chunk(1)).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiting.is_finished());
        assert_eq!(rx.0.recv().await.map(|b| b.len()), Some(600));
        waiting.await.unwrap().unwrap();
        // Closing fails the waiting send and returns the chunk.
        pipe.send(chunk(599)).await.unwrap();
        let p2 = pipe.clone();
        let waiting = tokio::spawn(async move { p2.send(chunk(7)).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(rx);
        assert_eq!(waiting.await.unwrap(), Err(PipeError::Closed(chunk(7))));
    }
}
