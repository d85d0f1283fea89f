//! What every socket a connection task owns after actix-http let go of it does the same way
//! (WebSockets, SSE streams, parked long polls): read through the worker thread's scratch
//! buffer, write a message's pieces in one vectored write, and linger after closing.

use std::cell::RefCell;
use std::io::{self, IoSlice};
use std::time::Duration;

use super::stream::Stream;
use bytes::BytesMut;

/// The most one read takes from a socket (the size of each worker thread's scratch buffer).
const READ_CHUNK: usize = 64 * 1024;

/// How long a closing socket keeps reading (and discarding) what the peer still sends, so that
/// unread input does not turn the close into a reset that loses the last bytes written.
pub(crate) const LINGER: Duration = Duration::from_secs(1);

thread_local! {
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Read what `io` has (without waiting) through the thread's scratch buffer; the bytes read are
/// appended to `into`, or dropped without it. `Ok(0)` is the end of the stream.
pub(crate) fn read_some(io: &Stream, into: Option<&mut BytesMut>) -> io::Result<usize> {
    SCRATCH.with(|scratch| {
        let mut scratch = scratch.borrow_mut();
        if scratch.len() < READ_CHUNK {
            scratch.resize(READ_CHUNK, 0);
        }
        let n = io.try_read(&mut scratch[..])?;
        if let Some(into) = into {
            into.extend_from_slice(&scratch[..n]);
        }
        Ok(n)
    })
}

/// Write `parts` completely, in order: vectored writes, waiting for room only when the
/// kernel's buffer is full; under TLS, until the last ciphertext is on the socket. Dropped
/// half-way, an unknown prefix has been written.
pub(crate) async fn write_all(io: &Stream, parts: &[&[u8]]) -> io::Result<()> {
    let total: usize = parts.iter().map(|p| p.len()).sum();
    let mut written = 0;
    while written < total {
        let mut slices = [IoSlice::new(&[]); 4];
        let mut count = 0;
        let mut skip = written;
        for part in parts {
            if skip >= part.len() {
                skip -= part.len();
                continue;
            }
            if count == slices.len() {
                break;
            }
            slices[count] = IoSlice::new(&part[skip..]);
            skip = 0;
            count += 1;
        }
        match io.try_write_vectored(&slices[..count]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => written += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => io.writable().await?,
            Err(e) => return Err(e),
        }
    }
    if io.wants_write() {
        io.flush().await?;
    }
    Ok(())
}

/// Read and drop input until the peer closes its side (or fails). Run it under a timeout
/// ([`LINGER`]).
pub(crate) async fn discard(io: &Stream) {
    loop {
        if io.readable().await.is_err() {
            return;
        }
        match read_some(io, None) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncReadExt as _;
    use tokio::net::TcpStream;

    use super::*;

    #[tokio::test]
    async fn write_all_writes_every_part_in_order_through_a_full_buffer() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut peer = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let io = Stream::plain(listener.accept().await.unwrap().0);
        // Larger than the socket buffers: the writer has to wait for the reader.
        let big: Vec<u8> = (0..4_000_000u32).map(|i| (i % 251) as u8).collect();
        let parts: [&[u8]; 6] = [b"a", &big, b"", b"bc", &big[..1000], b"d"];
        let expected: Vec<u8> = parts.concat();
        let reader = async {
            let mut got = Vec::new();
            while got.len() < expected.len() {
                let mut buf = [0u8; 65536];
                let n = peer.read(&mut buf).await.unwrap();
                assert!(n > 0);
                got.extend_from_slice(&buf[..n]);
            }
            got
        };
        let (written, got) = tokio::join!(write_all(&io, &parts), reader);
        written.unwrap();
        assert!(got == expected, "the bytes arrived out of order or changed");
    }
}
