//! Minimal Server-Sent Events and long-polling SignalR clients (`docs/protocol.md#transports`):
//! negotiate, open the receive side (`GET` with `Accept: text/event-stream`, or the first poll),
//! `POST` the handshake, then read hub messages from `data:` events or from poll bodies. Every
//! request carries the client token in `Authorization`, as the broker re-checks it on each one.
//!
//! The receive side runs in its own task that only forwards bytes into a channel, so
//! [`HttpConn::next_message`] is cancel-safe (a long poll is never abandoned half-way).

use anyhow::{Context, Result, bail};
use bytes::{Buf, Bytes, BytesMut};
use switchboard::protocol::{HubMessage, HubProtocol, handshake};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::client::{Negotiated, Target, negotiate};
use crate::failure::{ErrorKind, Failure};

/// Largest hub message accepted.
const MAX_MESSAGE: usize = 16 * 1024 * 1024;
/// Chunks buffered between the reader task and the connection.
const CHANNEL: usize = 64;

/// Which fallback transport.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HttpTransport {
    /// Server-Sent Events (text only: JSON).
    ServerSentEvents,
    /// Long polling.
    LongPolling,
}

/// One SignalR connection over SSE or long polling.
pub struct HttpConn {
    kind: HttpTransport,
    http: reqwest::Client,
    url: String,
    token: String,
    protocol: HubProtocol,
    rx: mpsc::Receiver<Result<Bytes>>,
    buf: BytesMut,
    reader: JoinHandle<()>,
    negotiated: Negotiated,
}

impl Drop for HttpConn {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl HttpConn {
    /// Negotiate, open the transport and complete the handshake.
    pub async fn connect(
        target: &Target,
        kind: HttpTransport,
        http: &reqwest::Client,
        user: Option<&str>,
    ) -> Result<Self> {
        if kind == HttpTransport::ServerSentEvents && target.protocol.is_binary() {
            bail!("Server-Sent Events carry text only: use the JSON protocol");
        }
        let token = target.client_token(user);
        let negotiated = negotiate(target, http, &token, false).await?;
        let url = format!(
            "{}/client/?hub={}&id={}",
            target.url, target.hub, negotiated.connection_token
        );
        let (tx, rx) = mpsc::channel(CHANNEL);
        let reader = match kind {
            HttpTransport::ServerSentEvents => {
                let resp = http
                    .get(&url)
                    .bearer_auth(&token)
                    .header("accept", "text/event-stream")
                    .send()
                    .await
                    .map_err(|e| Failure::request("SSE GET", &target.url, &e))?;
                if resp.status().as_u16() != 200 {
                    return Err(Failure::answered("SSE GET", &url, resp).await.into());
                }
                tokio::spawn(read_sse(resp, tx))
            }
            HttpTransport::LongPolling => {
                let resp = http
                    .get(&url)
                    .bearer_auth(&token)
                    .send()
                    .await
                    .map_err(|e| Failure::request("first poll", &target.url, &e))?;
                if resp.status().as_u16() != 200 {
                    return Err(Failure::answered("first poll", &url, resp).await.into());
                }
                tokio::spawn(read_polls(http.clone(), url.clone(), token.clone(), tx))
            }
        };
        let mut conn = Self {
            kind,
            http: http.clone(),
            url,
            token,
            protocol: target.protocol,
            rx,
            buf: BytesMut::new(),
            reader,
            negotiated,
        };
        conn.post(handshake::encode_request(target.protocol.name(), 1))
            .await
            .context("handshake POST")?;
        loop {
            if let Some((error, consumed)) = handshake::parse_response(&conn.buf)? {
                conn.buf.advance(consumed);
                if let Some(e) = error {
                    return Err(Failure::new(
                        ErrorKind::Protocol,
                        format!("the broker at {} refused the handshake: {e}", target.url),
                    )
                    .into());
                }
                return Ok(conn);
            }
            match conn.rx.recv().await {
                Some(Ok(b)) => conn.buf.extend_from_slice(&b),
                Some(Err(e)) => return Err(e.context("during the handshake")),
                None => {
                    return Err(Failure::new(
                        ErrorKind::ClosedByServer,
                        format!(
                            "the broker at {} ended the connection during the handshake",
                            target.url
                        ),
                    )
                    .into());
                }
            }
        }
    }

    /// What negotiate answered.
    pub fn negotiated(&self) -> &Negotiated {
        &self.negotiated
    }

    /// The transport.
    pub fn kind(&self) -> HttpTransport {
        self.kind
    }

    async fn post(&self, body: Bytes) -> Result<()> {
        let r = self
            .http
            .post(&self.url)
            .bearer_auth(&self.token)
            .header(
                "content-type",
                if self.protocol.is_binary() {
                    "application/octet-stream"
                } else {
                    "text/plain;charset=UTF-8"
                },
            )
            .body(body)
            .send()
            .await
            .map_err(|e| Failure::request("POST", &self.url, &e))?;
        if r.status().as_u16() != 200 {
            return Err(Failure::answered("POST", &self.url, r).await.into());
        }
        Ok(())
    }

    /// The next hub message; `None` when the connection ended. Cancel-safe.
    pub async fn next_message(&mut self) -> Result<Option<HubMessage>> {
        loop {
            if let Some(d) = self.protocol.decode(&self.buf, MAX_MESSAGE)? {
                self.buf.advance(d.consumed);
                if let Some(m) = d.message {
                    return Ok(Some(m));
                }
                continue;
            }
            match self.rx.recv().await {
                Some(Ok(b)) => self.buf.extend_from_slice(&b),
                Some(Err(e)) => return Err(e),
                None => return Ok(None),
            }
        }
    }

    /// Sends one hub message (one POST).
    pub async fn send(&mut self, msg: &HubMessage) -> Result<()> {
        let bytes = self.protocol.encode(msg)?;
        self.post(bytes).await
    }

    /// A keep-alive Ping over SSE; nothing over long polling (inherent keep-alive).
    pub async fn ping(&mut self) -> Result<()> {
        match self.kind {
            HttpTransport::ServerSentEvents => {
                self.post(Bytes::from_static(switchboard::protocol::ping_frame(
                    self.protocol,
                )))
                .await
            }
            HttpTransport::LongPolling => Ok(()),
        }
    }

    /// Ends the connection: long polling sends `DELETE`; SSE closes the event stream.
    pub async fn close(self) {
        if self.kind == HttpTransport::LongPolling {
            let _ = tokio::time::timeout(
                std::time::Duration::from_secs(2),
                self.http.delete(&self.url).bearer_auth(&self.token).send(),
            )
            .await;
        }
        self.reader.abort();
    }
}

/// Incremental `text/event-stream` parser: yields the data of each complete event.
#[derive(Default)]
pub struct SseParser {
    line: Vec<u8>,
    event: Vec<u8>,
    has_data: bool,
}

impl SseParser {
    /// Feeds `chunk`; calls `out` with the data of every event it completes.
    pub fn feed(&mut self, chunk: &[u8], mut out: impl FnMut(Vec<u8>)) {
        let mut rest = chunk;
        while let Some(pos) = rest.iter().position(|&b| b == b'\n') {
            self.line.extend_from_slice(&rest[..pos]);
            rest = &rest[pos + 1..];
            let mut line = std::mem::take(&mut self.line);
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            if line.is_empty() {
                if self.has_data {
                    out(std::mem::take(&mut self.event));
                    self.has_data = false;
                }
            } else if let Some(value) = line.strip_prefix(b"data:") {
                let value = value.strip_prefix(b" ").unwrap_or(value);
                if self.has_data {
                    self.event.push(b'\n');
                }
                self.event.extend_from_slice(value);
                self.has_data = true;
            }
            // Comments (`:`) and other fields are ignored.
        }
        self.line.extend_from_slice(rest);
    }
}

async fn read_sse(mut resp: reqwest::Response, tx: mpsc::Sender<Result<Bytes>>) {
    let mut parser = SseParser::default();
    loop {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                let mut events = Vec::new();
                parser.feed(&chunk, |e| events.push(e));
                for e in events {
                    if tx.send(Ok(Bytes::from(e))).await.is_err() {
                        return;
                    }
                }
            }
            Ok(None) => return,
            Err(e) => {
                let _ = tx.send(Err(e.into())).await;
                return;
            }
        }
    }
}

async fn read_polls(
    http: reqwest::Client,
    url: String,
    token: String,
    tx: mpsc::Sender<Result<Bytes>>,
) {
    loop {
        let r = http.get(&url).bearer_auth(&token).send().await;
        let resp = match r {
            Ok(r) => r,
            Err(e) => {
                let _ = tx.send(Err(e.into())).await;
                return;
            }
        };
        match resp.status().as_u16() {
            200 => match resp.bytes().await {
                Ok(b) if b.is_empty() => {}
                Ok(b) => {
                    if tx.send(Ok(b)).await.is_err() {
                        return;
                    }
                }
                Err(e) => {
                    let _ = tx.send(Err(e.into())).await;
                    return;
                }
            },
            // The connection is over.
            204 => return,
            _ => {
                let _ = tx
                    .send(Err(Failure::answered("poll", &url, resp).await.into()))
                    .await;
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse_events_across_chunks_and_lines() {
        let mut p = SseParser::default();
        let mut got = Vec::new();
        p.feed(b":\r\n", |e| got.push(e));
        p.feed(b"data: {\"type\":6}\x1e\r", |e| got.push(e));
        assert!(got.is_empty());
        p.feed(b"\n\r\ndata: a\r\ndata: b\r\n\r\ndata:c", |e| got.push(e));
        p.feed(b"\n\n", |e| got.push(e));
        assert_eq!(
            got,
            vec![
                b"{\"type\":6}\x1e".to_vec(),
                b"a\nb".to_vec(),
                b"c".to_vec()
            ]
        );
    }
}
