//! A bounded queue of byte chunks between two tasks that holds no heap memory while empty: the
//! SSE and long-polling transports' inbound and outbound queues (see `transport`).

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::Notify;

/// A bounded queue of byte chunks between two tasks that holds no heap memory while empty.
///
/// It replaces a tokio `mpsc` channel for the SSE and long-polling transports: such a channel
/// allocates its first 32-slot block up front, about 1.5 KB per channel and so per idle
/// connection. One side closes the pipe when it goes away ([`PipeSender`] and [`PipeReceiver`]
/// do that on drop): sends fail from then on, and the receiver still gets what was queued.
#[derive(Debug)]
pub(crate) struct Pipe {
    state: Mutex<PipeState>,
    /// Something was queued, or the pipe closed.
    readable: Notify,
    /// Something was taken, or the pipe closed.
    writable: Notify,
    /// The pipe closed.
    closing: Notify,
    capacity: usize,
}

#[derive(Debug, Default)]
struct PipeState {
    items: VecDeque<Bytes>,
    closed: bool,
}

impl Pipe {
    /// An empty, open pipe holding at most `capacity` chunks.
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            state: Mutex::new(PipeState::default()),
            readable: Notify::new(),
            writable: Notify::new(),
            closing: Notify::new(),
            capacity: capacity.max(1),
        }
    }

    /// Queue `item`, waiting for room; `Err` once the pipe is closed. Cancel-safe.
    pub(crate) async fn send(&self, item: Bytes) -> Result<(), Bytes> {
        loop {
            let writable = self.writable.notified();
            tokio::pin!(writable);
            writable.as_mut().enable();
            {
                let mut s = self.state.lock();
                if s.closed {
                    return Err(item);
                }
                if s.items.len() < self.capacity {
                    s.items.push_back(item);
                    drop(s);
                    self.readable.notify_one();
                    return Ok(());
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

    /// Close the pipe: pending and later sends fail, the receiver drains what is queued.
    pub(crate) fn close(&self) {
        self.state.lock().closed = true;
        self.wake_all();
    }

    /// Close the pipe and discard what is queued (the receiver went away).
    fn close_and_clear(&self) {
        let items = {
            let mut s = self.state.lock();
            s.closed = true;
            std::mem::take(&mut s.items)
        };
        drop(items);
        self.wake_all();
    }

    fn wake_all(&self) {
        self.readable.notify_waiters();
        self.writable.notify_waiters();
        self.closing.notify_waiters();
    }

    /// Whether the pipe was closed.
    pub(crate) fn is_closed(&self) -> bool {
        self.state.lock().closed
    }

    /// Resolves once the pipe is closed.
    pub(crate) async fn closed(&self) {
        loop {
            let closing = self.closing.notified();
            tokio::pin!(closing);
            closing.as_mut().enable();
            if self.is_closed() {
                return;
            }
            closing.await;
        }
    }
}

/// The sending end of a [`Pipe`]; closes it when dropped.
#[derive(Debug)]
pub(crate) struct PipeSender(pub Arc<Pipe>);

impl PipeSender {
    /// Resolves once the receiver went away.
    pub(crate) async fn closed(&self) {
        self.0.closed().await;
    }
}

impl Drop for PipeSender {
    fn drop(&mut self) {
        self.0.close();
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
    async fn pipes_are_bounded_ordered_and_close_from_either_side() {
        let pipe = Arc::new(Pipe::new(2));
        let (tx, mut rx) = (PipeSender(pipe.clone()), PipeReceiver(pipe.clone()));
        tx.0.send(Bytes::from_static(b"a")).await.unwrap();
        tx.0.send(Bytes::from_static(b"b")).await.unwrap();
        // Full: a third send waits until the receiver takes one.
        let p2 = pipe.clone();
        let third = tokio::spawn(async move { p2.send(Bytes::from_static(b"c")).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!third.is_finished());
        assert_eq!(rx.recv().await.as_deref(), Some(&b"a"[..]));
        third.await.unwrap().unwrap();
        // The sender going away closes the pipe; the receiver still drains it.
        drop(tx);
        assert_eq!(rx.recv().await.as_deref(), Some(&b"b"[..]));
        assert_eq!(rx.recv().await.as_deref(), Some(&b"c"[..]));
        assert_eq!(rx.recv().await, None);
        assert!(pipe.send(Bytes::from_static(b"d")).await.is_err());

        // The receiver going away fails sends, including one waiting for room, and wakes
        // whoever waits for the close.
        let pipe = Arc::new(Pipe::new(1));
        let (tx, rx) = (PipeSender(pipe.clone()), PipeReceiver(pipe.clone()));
        pipe.send(Bytes::from_static(b"x")).await.unwrap();
        let p2 = pipe.clone();
        let waiting = tokio::spawn(async move { p2.send(Bytes::from_static(b"y")).await });
        let closed = tokio::spawn(async move { tx.closed().await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiting.is_finished() && !closed.is_finished());
        drop(rx);
        assert!(waiting.await.unwrap().is_err());
        closed.await.unwrap();
        assert!(pipe.is_closed());
    }
}
