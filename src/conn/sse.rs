//! A Server-Sent Events stream owned by its connection's task.
//!
//! actix-http writes the answer's head and the stream's first comment, then the handler takes
//! the socket ([`crate::http::io::Takeover`]); from then on each event is written straight from
//! the outbox's shared bytes, in one vectored write with its `data: ` prefix and its HTTP/1.1
//! chunk framing, and no buffer is held between events.

use std::io::{self, Write as _};
use std::time::Duration;

use super::socket;
use super::stream::Stream;
use super::transport::sse_event;

/// The server's end of an SSE stream, after the answer's head.
#[derive(Debug)]
pub(crate) struct SseSocket {
    io: Stream,
    /// The body is chunked (HTTP/1.1); otherwise it ends with the connection (HTTP/1.0).
    chunked: bool,
    /// The client closed its side, or the socket failed.
    ended: bool,
    /// An event's write was abandoned half-way (its timeout): the stream is no longer framed.
    broken: bool,
}

impl SseSocket {
    pub(crate) fn new(io: Stream, chunked: bool) -> Self {
        Self {
            io,
            chunked,
            ended: false,
            broken: false,
        }
    }

    /// Resolves once the client has gone (the end of its stream, or an error). A client sends
    /// nothing on an event stream: whatever it sends is dropped. Cancel-safe.
    pub(crate) async fn gone(&mut self) {
        while !self.ended {
            if std::future::poll_fn(|cx| self.io.poll_read_ready(cx))
                .await
                .is_err()
            {
                self.ended = true;
                break;
            }
            match socket::read_some(&self.io, None) {
                Ok(0) => self.ended = true,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => self.ended = true,
            }
        }
    }

    /// Write `frame` as one event (`data: ` before each of its lines). Dropping the future
    /// half-way leaves the stream unusable ([`Self::close`] then only ends the connection).
    pub(crate) async fn send(&mut self, frame: &[u8]) -> io::Result<()> {
        if self.broken || self.ended {
            return Err(io::ErrorKind::BrokenPipe.into());
        }
        self.broken = true;
        if frame.contains(&b'\n') {
            // Several lines, each its own `data:` field.
            let event = sse_event(frame);
            self.write_chunk(&[&event]).await?;
        } else {
            self.write_chunk(&[b"data: ", frame, b"\r\n\r\n"]).await?;
        }
        self.broken = false;
        Ok(())
    }

    /// Write `parts` as one chunk of the body.
    async fn write_chunk(&self, parts: &[&[u8]]) -> io::Result<()> {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        if !self.chunked {
            return socket::write_all(&self.io, parts).await;
        }
        let mut size = [0u8; 20];
        let size_len = {
            let mut out = &mut size[..];
            write!(out, "{len:X}\r\n")?;
            20 - out.len()
        };
        let mut all: [&[u8]; 5] = [&size[..size_len], b"", b"", b"", b"\r\n"];
        all[1..=parts.len()].copy_from_slice(parts);
        socket::write_all(&self.io, &all).await
    }

    /// End the stream (the last chunk, within `timeout`) and the connection. Then call
    /// [`Self::linger`].
    pub(crate) async fn close(&mut self, timeout: Duration) {
        if !self.broken && !self.ended && self.chunked {
            let _ =
                tokio::time::timeout(timeout, socket::write_all(&self.io, &[b"0\r\n\r\n"])).await;
        }
        self.broken = true;
        let _ = tokio::time::timeout(timeout, self.io.shutdown()).await;
    }

    /// After [`Self::close`]: read and drop what the client still sends until it closes, for at
    /// most [`socket::LINGER`]. Run it on its own task: the connection is over.
    pub(crate) async fn linger(self) {
        let _ = tokio::time::timeout(socket::LINGER, socket::discard(&self.io)).await;
    }
}
