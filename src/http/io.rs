//! The TCP stream actix-http serves HTTP/1 on, which a handler can take over.
//!
//! A streaming answer (an SSE stream) or one that waits (a long poll) would otherwise keep
//! actix-http's dispatcher alive for as long as it lasts, with its read and write buffers
//! (8 KiB each) and the request. [`HttpIo`] is the stream the dispatcher reads and writes; a
//! handler finds its [`Takeover`] in the request's connection data and, with [`Takeover::take`],
//! waits until the dispatcher has written out everything it encoded so far and takes the stream.
//! From then on the dispatcher reads the end of the stream and writes into nothing, so it ends
//! (with its buffers) as soon as its answer is done; the handler's task owns the socket.
//!
//! [`serve`] gives a taken stream back to actix-http: a long-polling connection's next request
//! is served by a new dispatcher, on the worker thread the stream is registered with.

use std::cell::{Cell, RefCell};
use std::fmt::Write as _;
use std::io;
use std::pin::Pin;
use std::rc::{Rc, Weak};
use std::task::{Context, Poll, Waker};

use actix_web::http::{StatusCode, header};
use bytes::{BufMut as _, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::conn::stream::Stream;

/// The stream of one HTTP/1 connection, shared between actix-http and a handler that may take
/// it.
#[derive(Debug)]
pub(crate) struct HttpIo {
    slot: Rc<Slot>,
}

#[derive(Debug, Default)]
struct Slot {
    stream: RefCell<Option<Stream>>,
    /// How many times the dispatcher flushed. It flushes the stream only once its write buffer
    /// is written out whole, so a flush after a point means that everything encoded before it
    /// is on the socket.
    flushes: Cell<u64>,
    /// A [`Takeover::take`] waiting for the next flush.
    waiter: RefCell<Option<Waker>>,
}

/// A handle on the connection a request arrived on (in the request's connection data, see
/// [`HttpRequest::conn_data`](actix_web::HttpRequest::conn_data)).
#[derive(Clone, Debug)]
pub(crate) struct Takeover(Rc<Slot>);

impl HttpIo {
    pub(crate) fn new(stream: Stream) -> Self {
        Self {
            slot: Rc::new(Slot {
                stream: RefCell::new(Some(stream)),
                ..Slot::default()
            }),
        }
    }

    /// The handle a handler takes the stream with.
    pub(crate) fn takeover(&self) -> Takeover {
        Takeover(self.slot.clone())
    }

    /// The stream, unless a handler took it.
    pub(crate) fn into_stream(self) -> Option<Stream> {
        self.slot.stream.borrow_mut().take()
    }

    fn with<R>(&self, taken: R, f: impl FnOnce(Pin<&mut Stream>) -> R) -> R {
        match self.slot.stream.borrow_mut().as_mut() {
            Some(stream) => f(Pin::new(stream)),
            None => taken,
        }
    }
}

impl Takeover {
    /// The handle of the connection `req` arrived on, if it can be taken (HTTP/1 over TCP).
    pub(crate) fn of(req: &actix_web::HttpRequest) -> Option<Self> {
        req.conn_data::<Self>().cloned()
    }

    /// Wait until the dispatcher has written out everything it encoded before this call, then
    /// take the stream. The caller's answer must not be complete yet (the dispatcher encodes
    /// nothing more of it meanwhile); whatever it answers afterwards goes nowhere. `None` when
    /// the stream was taken already. Dropped while waiting (the client left), nothing is taken.
    pub(crate) async fn take(&self) -> Option<Stream> {
        let seen = self.0.flushes.get();
        std::future::poll_fn(|cx| {
            if self.0.flushes.get() != seen {
                // Polled again, the dispatcher (whose task this is) reads the end of the stream
                // and ends once its answer is done, rather than at its keep-alive timeout.
                cx.waker().wake_by_ref();
                Poll::Ready(())
            } else {
                *self.0.waiter.borrow_mut() = Some(cx.waker().clone());
                Poll::Pending
            }
        })
        .await;
        let stream = self.0.stream.borrow_mut().take()?;
        // Under TLS, the last of the answer may still be ciphertext in the session.
        stream.flush().await.ok()?;
        Some(stream)
    }
}

impl AsyncRead for HttpIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        // Taken: the dispatcher sees the end of the stream.
        self.with(Poll::Ready(Ok(())), |s| s.poll_read(cx, buf))
    }
}

impl AsyncWrite for HttpIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        // Taken: the rest of the dispatcher's answer goes nowhere.
        self.with(Poll::Ready(Ok(buf.len())), |s| s.poll_write(cx, buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let len = bufs.iter().map(|b| b.len()).sum();
        self.with(Poll::Ready(Ok(len)), |s| s.poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let slot = &self.slot;
        slot.flushes.set(slot.flushes.get().wrapping_add(1));
        let waiter = slot.waiter.borrow_mut().take();
        if let Some(waker) = waiter {
            waker.wake();
        }
        self.with(Poll::Ready(Ok(())), |s| s.poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.with(Poll::Ready(Ok(())), |s| s.poll_shutdown(cx))
    }
}

/// Write `response` whole on a stream taken from actix-http, the connection kept open for the
/// next request (the taker checked that the request allows it: HTTP/1.1, no
/// `Connection: close`). Head and body go in one write.
pub(crate) async fn write_response(
    io: &Stream,
    response: actix_web::HttpResponse,
) -> io::Result<()> {
    let (head, body) = response.into_parts();
    let body = actix_web::body::to_bytes(body)
        .await
        .map_err(|_| io::Error::other("the answer's body failed"))?;
    let status = head.status();
    let mut out = BytesMut::with_capacity(256);
    let _ = write!(
        out,
        "HTTP/1.1 {} {}\r\n",
        status.as_str(),
        status.canonical_reason().unwrap_or("")
    );
    for (name, value) in head.headers() {
        if name == header::CONTENT_LENGTH || name == header::DATE {
            continue;
        }
        out.put_slice(name.as_str().as_bytes());
        out.put_slice(b": ");
        out.put_slice(value.as_bytes());
        out.put_slice(b"\r\n");
    }
    // A 204 has no body and says nothing of its length (RFC 9110 §8.6).
    if status != StatusCode::NO_CONTENT {
        let _ = write!(out, "content-length: {}\r\n", body.len());
    }
    let _ = write!(
        out,
        "date: {}\r\n\r\n",
        header::HttpDate::from(std::time::SystemTime::now())
    );
    crate::conn::socket::write_all(io, &[&out, &body]).await
}

/// A function that serves a stream's requests.
pub(crate) type ServeFn = dyn Fn(Stream);

thread_local! {
    /// This worker thread's HTTP/1 service, for streams given back (see [`serve`]). Weak: the
    /// worker's service owns it, and it ends with the worker, not with the thread (whose
    /// runtime is gone by then).
    static SERVE: RefCell<Option<Weak<ServeFn>>> = const { RefCell::new(None) };
}

/// Make `serve` the service [`serve`] gives streams to on this worker thread, for as long as
/// the caller keeps it.
pub(crate) fn set_worker_service(serve: &Rc<ServeFn>) {
    SERVE.with(|s| *s.borrow_mut() = Some(Rc::downgrade(serve)));
}

/// Serve `stream`'s next requests with a new dispatcher on this worker thread (it must be the
/// thread `stream` was accepted on). Without a service here (not a worker thread) the stream
/// is closed.
pub(crate) fn serve(stream: Stream) {
    let serve = SERVE.with(|s| s.borrow().as_ref().and_then(Weak::upgrade));
    if let Some(serve) = serve {
        serve(stream);
    }
}
