//! A client's connection as the broker reads and writes it: a TCP stream, in plain text or
//! under TLS.
//!
//! Every socket path (actix-http's dispatcher through [`crate::http::io::HttpIo`], upgraded
//! WebSockets, SSE streams, parked long polls) is readiness-based: wait until the socket is
//! readable or writable, then read or write without waiting. [`Stream`] keeps that shape for
//! TLS with rustls' sans-IO connection: a read takes ciphertext from the socket into the
//! connection and returns what it decrypted; a write encrypts into the connection's outgoing
//! buffer (bounded by rustls' buffer limit) and writes as much of it as the socket takes.
//! Ciphertext the socket did not take stays in the connection and goes first on the next write;
//! [`Stream::wants_write`] says so and [`Stream::flush`] waits until it is out, which every
//! complete write does ([`crate::conn::socket::write_all`]).
//!
//! The TLS state is behind a mutex because a WebSocket's stream is shared (an `Arc`) with its
//! connection's outbox; a TLS socket is never lent for direct writes, so the lock is only ever
//! taken by the thread serving the connection.

use std::future::poll_fn;
use std::io::{self, IoSlice, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use parking_lot::Mutex;
use rustls::ServerConnection;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// A client's TCP stream, with its TLS session if the listener serves TLS.
#[derive(Debug)]
pub(crate) struct Stream {
    tcp: TcpStream,
    tls: Option<Box<Mutex<ServerConnection>>>,
}

/// A [`Stream`] on its way to another worker thread, deregistered from its reactor.
#[derive(Debug)]
pub(crate) struct DetachedStream {
    tcp: std::net::TcpStream,
    tls: Option<Box<Mutex<ServerConnection>>>,
}

impl Stream {
    /// A plain-text stream.
    pub(crate) fn plain(tcp: TcpStream) -> Self {
        Self { tcp, tls: None }
    }

    /// A stream whose TLS handshake is done (or under way in `conn`).
    pub(crate) fn tls(tcp: TcpStream, conn: ServerConnection) -> Self {
        Self {
            tcp,
            tls: Some(Box::new(Mutex::new(conn))),
        }
    }

    /// The TCP socket under it (its addresses and options; reading and writing go through
    /// the stream).
    pub(crate) fn tcp(&self) -> &TcpStream {
        &self.tcp
    }

    pub(crate) fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    pub(crate) fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.tcp.peer_addr()
    }

    /// Deregister from this thread's reactor (see [`Self::attach`]).
    pub(crate) fn detach(self) -> io::Result<DetachedStream> {
        Ok(DetachedStream {
            tcp: self.tcp.into_std()?,
            tls: self.tls,
        })
    }

    /// A detached stream, registered with this thread's reactor.
    pub(crate) fn attach(detached: DetachedStream) -> io::Result<Self> {
        Ok(Self {
            tcp: TcpStream::from_std(detached.tcp)?,
            tls: detached.tls,
        })
    }

    /// Ready when a read may return something: bytes on the socket, decrypted bytes waiting,
    /// or the end of the stream.
    pub(crate) fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Some(tls) = &self.tls {
            match tls.lock().process_new_packets() {
                Ok(state) if state.plaintext_bytes_to_read() == 0 && !state.peer_has_closed() => {}
                // Something to read, or an error a read reports.
                _ => return Poll::Ready(Ok(())),
            }
        }
        self.tcp.poll_read_ready(cx)
    }

    /// See [`Self::poll_read_ready`].
    pub(crate) async fn readable(&self) -> io::Result<()> {
        poll_fn(|cx| self.poll_read_ready(cx)).await
    }

    /// Ready when the socket takes bytes.
    pub(crate) async fn writable(&self) -> io::Result<()> {
        self.tcp.writable().await
    }

    /// Read what is there without waiting (decrypted, under TLS). `Ok(0)` is the end of the
    /// stream; `WouldBlock` means nothing yet (the socket's readiness is cleared).
    pub(crate) fn try_read(&self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(tls) = &self.tls else {
            return self.tcp.try_read(buf);
        };
        let mut conn = tls.lock();
        loop {
            match conn.reader().read(buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                // The peer closed the TCP stream without a close_notify: the end all the same.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                Err(e) => return Err(e),
            }
            if conn.read_tls(&mut Tcp(&self.tcp))? == 0 {
                return Ok(0);
            }
            if let Err(e) = conn.process_new_packets() {
                // Its alert, if the socket takes it.
                let _ = flush_tls(&mut conn, &self.tcp);
                return Err(io::Error::new(io::ErrorKind::InvalidData, e));
            }
            // What the session has to say by itself (a key update's answer, tickets).
            match flush_tls(&mut conn, &self.tcp) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Wait for input without consuming it: `Ok(true)` when bytes arrived, `Ok(false)` at the
    /// end of the stream.
    pub(crate) async fn wait_input(&self) -> io::Result<bool> {
        let Some(tls) = &self.tls else {
            let mut probe = [0u8; 1];
            return self.tcp.peek(&mut probe).await.map(|n| n > 0);
        };
        loop {
            {
                let mut conn = tls.lock();
                let state = conn
                    .process_new_packets()
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                if state.plaintext_bytes_to_read() > 0 {
                    return Ok(true);
                }
                if state.peer_has_closed() {
                    return Ok(false);
                }
            }
            self.tcp.readable().await?;
            match tls.lock().read_tls(&mut Tcp(&self.tcp)) {
                Ok(0) => return Ok(false),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Write from `bufs` without waiting; how many of their bytes were taken. Under TLS, taken
    /// bytes may still be waiting in the session as ciphertext ([`Self::wants_write`]); nothing
    /// new is taken before those are out.
    pub(crate) fn try_write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let Some(tls) = &self.tls else {
            return self.tcp.try_write_vectored(bufs);
        };
        let mut conn = tls.lock();
        flush_tls(&mut conn, &self.tcp)?;
        let n = conn.writer().write_vectored(bufs)?;
        match flush_tls(&mut conn, &self.tcp) {
            Ok(()) => Ok(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(n),
            Err(e) => Err(e),
        }
    }

    /// See [`Self::try_write_vectored`].
    pub(crate) fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
        self.try_write_vectored(&[IoSlice::new(buf)])
    }

    /// Under TLS, ciphertext the socket has not taken yet.
    pub(crate) fn wants_write(&self) -> bool {
        self.tls
            .as_ref()
            .is_some_and(|tls| tls.lock().wants_write())
    }

    /// Write what the TLS session holds as far as the socket takes it now; `WouldBlock` if some
    /// is left.
    pub(crate) fn try_flush(&self) -> io::Result<()> {
        match &self.tls {
            Some(tls) => flush_tls(&mut tls.lock(), &self.tcp),
            None => Ok(()),
        }
    }

    pub(crate) fn poll_flush(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            match self.try_flush() {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    ready!(self.tcp.poll_write_ready(cx))?;
                }
                done => return Poll::Ready(done),
            }
        }
    }

    /// Wait until everything written is on the socket.
    pub(crate) async fn flush(&self) -> io::Result<()> {
        poll_fn(|cx| self.poll_flush(cx)).await
    }

    /// End the stream: under TLS, a close_notify first; then the end of the TCP stream (the
    /// socket stays open for reading until dropped).
    pub(crate) async fn shutdown(&self) -> io::Result<()> {
        if let Some(tls) = &self.tls {
            tls.lock().send_close_notify();
            self.flush().await?;
        }
        socket2::SockRef::from(&self.tcp).shutdown(Shutdown::Write)
    }
}

/// Write the session's ciphertext until it is out (`Ok`) or the socket is full (`WouldBlock`).
fn flush_tls(conn: &mut ServerConnection, tcp: &TcpStream) -> io::Result<()> {
    while conn.wants_write() {
        if conn.write_tls(&mut Tcp(tcp))? == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
    }
    Ok(())
}

/// The socket as rustls reads and writes it: without waiting.
struct Tcp<'a>(&'a TcpStream);

impl Read for Tcp<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.try_read(buf)
    }
}

impl Write for Tcp<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.try_write(buf)
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.0.try_write_vectored(bufs)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.tls.is_none() {
            return Pin::new(&mut self.get_mut().tcp).poll_read(cx, buf);
        }
        loop {
            match self.try_read(buf.initialize_unfilled()) {
                Ok(n) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    ready!(self.poll_read_ready(cx))?;
                }
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_vectored(cx, &[IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if self.tls.is_none() {
            return Pin::new(&mut self.get_mut().tcp).poll_write_vectored(cx, bufs);
        }
        loop {
            match self.try_write_vectored(bufs) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    ready!(self.tcp.poll_write_ready(cx))?;
                }
                done => return Poll::Ready(done),
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Self::poll_flush(&self, cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Some(tls) = &self.tls {
            // Queued once however often this is polled.
            tls.lock().send_close_notify();
        }
        ready!(Self::poll_flush(&self, cx))?;
        Poll::Ready(socket2::SockRef::from(&self.tcp).shutdown(Shutdown::Write))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
    use tokio::io::AsyncReadExt as _;
    use tokio::net::TcpSocket;

    use super::*;
    use crate::conn::socket;

    /// A TLS session over loopback with small socket buffers: the server's [`Stream`] and the
    /// client's end (a tokio-rustls stream).
    async fn tls_pair() -> (Stream, tokio_rustls::client::TlsStream<TcpStream>) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let server = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![cert.der().clone()],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            )
            .unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from(cert.der().to_vec()))
            .unwrap();
        let client = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();

        let listener = TcpSocket::new_v4().unwrap();
        listener.set_send_buffer_size(4096).unwrap();
        listener.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let listener = listener.listen(1).unwrap();
        let peer = TcpSocket::new_v4().unwrap();
        peer.set_recv_buffer_size(4096).unwrap();
        let connect = async {
            let tcp = peer.connect(listener.local_addr().unwrap()).await.unwrap();
            tokio_rustls::TlsConnector::from(Arc::new(client))
                .connect(ServerName::try_from("localhost").unwrap(), tcp)
                .await
                .unwrap()
        };
        let accept = async {
            let (tcp, _) = listener.accept().await.unwrap();
            let tls = tokio_rustls::TlsAcceptor::from(Arc::new(server))
                .accept(tcp)
                .await
                .unwrap();
            let (tcp, conn) = tls.into_inner();
            Stream::tls(tcp, conn)
        };
        let (client, server) = tokio::join!(connect, accept);
        (server, client)
    }

    #[tokio::test]
    async fn bytes_taken_while_the_socket_is_full_wait_as_ciphertext_until_flushed() {
        let (server, mut client) = tls_pair().await;
        let message: Vec<u8> = (0..60_000u32).map(|i| (i % 253) as u8).collect();
        // The client does not read: the socket takes only part of the ciphertext.
        let taken = server.try_write(&message).unwrap();
        assert_eq!(taken, message.len(), "rustls takes up to its 64 KiB buffer");
        assert!(server.wants_write(), "the rest waits in the session");
        let reader = async {
            let mut got = vec![0u8; message.len()];
            client.read_exact(&mut got).await.unwrap();
            got
        };
        let (flushed, got) = tokio::join!(server.flush(), reader);
        flushed.unwrap();
        assert!(!server.wants_write());
        assert!(got == message, "the bytes arrived changed");
    }

    #[tokio::test]
    async fn write_all_returns_only_once_the_last_ciphertext_is_on_the_socket() {
        let (server, mut client) = tls_pair().await;
        // Within rustls' 64 KiB buffer (taken in one go), far beyond what the socket takes.
        let message: Vec<u8> = (0..60_000u32).map(|i| (i % 251) as u8).collect();
        // The client starts reading late. Once `write_all` is done nothing writes any more,
        // so only what it put on the socket can arrive.
        let reader = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let mut got = vec![0u8; 4 + 60_000];
            let read = client.read_exact(&mut got);
            tokio::time::timeout(Duration::from_secs(5), read)
                .await
                .map(|read| read.map(|_| got))
        });
        socket::write_all(&server, &[b"head", &message])
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let got = reader.await.unwrap();
        let got = got.expect("every byte written arrives").unwrap();
        assert!(got[..4] == *b"head" && got[4..] == message[..]);
        drop(server);
    }
}
