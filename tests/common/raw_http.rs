//! HTTP/1.1 by hand over a `TcpStream`, for tests that must control when each byte of a request
//! is sent (a head without its body, a body that stalls, heads of any size) and see exactly what
//! the broker answers, including whether it closes the connection. Declared by the test files
//! that use it (`#[path = "common/raw_http.rs"] mod raw_http;`).
#![allow(dead_code, unreachable_pub)]

use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// A parsed answer.
#[derive(Debug)]
pub struct RawResponse {
    /// The status code.
    pub status: u16,
    /// Header names (lower case) and values, in order.
    pub headers: Vec<(String, String)>,
    /// The body (by `Content-Length`; empty without one).
    pub body: Vec<u8>,
}

impl RawResponse {
    /// The first value of header `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {:?}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

/// A TCP connection to the broker at `base` (`http://127.0.0.1:port`).
pub async fn connect(base: &str) -> Result<TcpStream> {
    let addr = base.trim_start_matches("http://");
    TcpStream::connect(addr)
        .await
        .with_context(|| format!("connect {addr}"))
}

/// Write `bytes` as they are.
pub async fn send(stream: &mut TcpStream, bytes: &[u8]) -> Result<()> {
    stream.write_all(bytes).await.context("write")?;
    stream.flush().await.context("flush")
}

/// Read one answer (head and `Content-Length` body), failing when none is complete within
/// `guard` (a guard against hanging, not a measurement).
pub async fn read_response(stream: &mut TcpStream, guard: Duration) -> Result<RawResponse> {
    read_next_response(stream, &mut Vec::new(), guard).await
}

/// [`read_response`] on a keep-alive connection: `buf` holds bytes already read, and what is
/// read beyond this answer stays in it for the next.
pub async fn read_next_response(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    guard: Duration,
) -> Result<RawResponse> {
    tokio::time::timeout(guard, read_response_inner(stream, buf))
        .await
        .with_context(|| format!("no answer within {guard:?}"))?
}

/// Read more of `stream` into `buf`; the end of the stream is an error (`what` was expected).
async fn fill(stream: &mut TcpStream, buf: &mut Vec<u8>, what: &str) -> Result<()> {
    let mut chunk = [0u8; 4096];
    let n = stream
        .read(&mut chunk)
        .await
        .with_context(|| format!("read {what}"))?;
    if n == 0 {
        bail!(
            "connection closed before a complete {what} (got {:?})",
            String::from_utf8_lossy(buf)
        );
    }
    buf.extend_from_slice(&chunk[..n]);
    Ok(())
}

async fn read_response_inner(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Result<RawResponse> {
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        fill(stream, buf, "head").await?;
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    buf.drain(..head_end);
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("status line {status_line:?}"))?;
    let headers: Vec<(String, String)> = lines
        .filter(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let len: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    while buf.len() < len {
        fill(stream, buf, "body").await?;
    }
    let body = buf.drain(..len).collect();
    Ok(RawResponse {
        status,
        headers,
        body,
    })
}

/// Whether the broker closes the connection (EOF or reset) within `guard`, reading and
/// discarding anything else it sends meanwhile.
pub async fn closes_within(stream: &mut TcpStream, guard: Duration) -> bool {
    tokio::time::timeout(guard, async {
        let mut chunk = [0u8; 4096];
        loop {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .is_ok()
}
