//! The built-in upstream receiver of S7: a small actix-web server on 127.0.0.1 that plays the
//! application behind a Serverless hub. The broker must be started with an upstream URL
//! template pointing at it ([`url_template`]):
//!
//! - `POST /upstream/{hub}/connections/connected` and `…/disconnected`: counted, answered 200;
//! - `POST /upstream/{hub}/messages/{target}`: the client's Invocation (unframed, JSON or
//!   MessagePack by `Content-Type`); the latency from the payload timestamp to its arrival is
//!   recorded; a blocking invocation is answered 200 with a framed Completion whose result is
//!   the invocation's arguments array (so the client gets its payload back), a non-blocking one
//!   204.

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use anyhow::Result;
use bytes::{BufMut, BytesMut};
use switchboard::protocol::{Completion, CompletionOutcome, HubMessage, HubProtocol};

use crate::client;
use crate::stats::Hist;

/// The upstream URL template for a receiver listening on `addr` (for `--upstream`).
pub fn url_template(addr: SocketAddr) -> String {
    format!("http://{addr}/upstream/{{hub}}/{{category}}/{{event}}")
}

/// What the receiver saw.
#[derive(Default)]
pub struct Counters {
    /// `connected` events.
    pub connected: AtomicU64,
    /// `disconnected` events.
    pub disconnected: AtomicU64,
    /// Invocations.
    pub invocations: AtomicU64,
    /// Requests without `X-ASRS-Signature`.
    pub unsigned: AtomicU64,
    /// Requests that could not be understood.
    pub errors: AtomicU64,
    /// Latency client send → upstream arrival (µs), from the payload timestamp.
    pub latency: Hist,
}

impl Counters {
    /// Every call so far (events and invocations).
    pub fn calls(&self) -> u64 {
        self.connected.load(Ordering::Relaxed)
            + self.disconnected.load(Ordering::Relaxed)
            + self.invocations.load(Ordering::Relaxed)
    }
}

/// A running receiver.
pub struct Receiver {
    /// Where it listens.
    pub addr: SocketAddr,
    /// What it saw.
    pub counters: Arc<Counters>,
    handle: actix_web::dev::ServerHandle,
    join: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Receiver {
    /// Starts on `listener` with `workers` threads.
    pub fn start(listener: TcpListener, workers: usize) -> Result<Self> {
        let addr = listener.local_addr()?;
        let counters = Arc::new(Counters::default());
        let data = web::Data::from(counters.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .default_service(web::to(handle))
        })
        .workers(workers.max(1))
        .backlog(4096)
        // Answers go out at once, as from any web framework that sets TCP_NODELAY.
        .tcp_nodelay(true)
        .shutdown_timeout(1)
        .disable_signals()
        .listen(listener)?
        .run();
        let handle = server.handle();
        let join = tokio::spawn(server);
        Ok(Self {
            addr,
            counters,
            handle,
            join,
        })
    }

    /// Binds `addr` and starts.
    pub fn bind(addr: SocketAddr, workers: usize) -> Result<Self> {
        Self::start(TcpListener::bind(addr)?, workers)
    }

    /// Stops the server.
    pub async fn stop(self) {
        self.handle.stop(true).await;
        let _ = self.join.await;
    }
}

async fn handle(req: HttpRequest, body: web::Bytes, counters: web::Data<Counters>) -> HttpResponse {
    if req.headers().get("x-asrs-signature").is_none() {
        counters.unsigned.fetch_add(1, Ordering::Relaxed);
    }
    let mut parts = req.path().trim_start_matches('/').split('/');
    let (Some("upstream"), Some(_hub), Some(category), Some(event)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        counters.errors.fetch_add(1, Ordering::Relaxed);
        return HttpResponse::NotFound().finish();
    };
    match (category, event) {
        ("connections", "connected") => {
            counters.connected.fetch_add(1, Ordering::Relaxed);
            HttpResponse::Ok().finish()
        }
        ("connections", "disconnected") => {
            counters.disconnected.fetch_add(1, Ordering::Relaxed);
            HttpResponse::Ok().finish()
        }
        ("messages", _) => match answer(&req, &body, &counters) {
            Some(r) => r,
            None => {
                counters.errors.fetch_add(1, Ordering::Relaxed);
                HttpResponse::BadRequest().finish()
            }
        },
        _ => {
            counters.errors.fetch_add(1, Ordering::Relaxed);
            HttpResponse::NotFound().finish()
        }
    }
}

fn answer(req: &HttpRequest, body: &[u8], counters: &Counters) -> Option<HttpResponse> {
    let content_type = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json");
    let protocol = if content_type.contains("msgpack") {
        HubProtocol::MessagePack
    } else {
        HubProtocol::Json
    };
    let framed = frame(protocol, body);
    let decoded = protocol.decode(&framed, usize::MAX).ok()??;
    let HubMessage::Invocation(inv) = decoded.message? else {
        return None;
    };
    let (sender, _, ts) = client::parse_load(&inv.arguments)?;
    counters.invocations.fetch_add(1, Ordering::Relaxed);
    counters
        .latency
        .record_us(sender as usize, client::now_us().saturating_sub(ts));
    let Some(id) = inv.invocation_id else {
        return Some(HttpResponse::NoContent().finish());
    };
    let completion = HubMessage::Completion(Completion {
        headers: Vec::new(),
        invocation_id: id,
        outcome: CompletionOutcome::Result(inv.arguments),
    });
    let out = protocol.encode(&completion).ok()?;
    Some(
        HttpResponse::Ok()
            .content_type(if protocol.is_binary() {
                "application/x-msgpack"
            } else {
                "application/json"
            })
            .body(out),
    )
}

/// `body` framed as the protocol's decoder expects (JSON: + 0x1E; MessagePack: VarInt length
/// prefix).
fn frame(protocol: HubProtocol, body: &[u8]) -> BytesMut {
    let mut out = BytesMut::with_capacity(body.len() + 5);
    match protocol {
        HubProtocol::Json => {
            out.put_slice(body);
            out.put_u8(0x1e);
        }
        HubProtocol::MessagePack => {
            let mut n = body.len();
            while n >= 0x80 {
                out.put_u8((n as u8 & 0x7f) | 0x80);
                n >>= 7;
            }
            out.put_u8(n as u8);
            out.put_slice(body);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_decode_in_both_protocols() {
        for protocol in [HubProtocol::Json, HubProtocol::MessagePack] {
            let inv = HubMessage::Invocation(switchboard::protocol::Invocation {
                headers: Vec::new(),
                invocation_id: Some("7".into()),
                target: "Echo".into(),
                arguments: client::load_arguments(protocol, 1, 2, 3, &"x".repeat(300)),
                stream_ids: Vec::new(),
            });
            let framed = protocol.encode(&inv).expect("encode");
            // Strip the framing the way the broker does for upstream bodies.
            let body: Vec<u8> = match protocol {
                HubProtocol::Json => framed[..framed.len() - 1].to_vec(),
                HubProtocol::MessagePack => framed[2..].to_vec(), // 2-byte VarInt for > 127
            };
            let decoded = protocol
                .decode(&frame(protocol, &body), usize::MAX)
                .expect("decode")
                .expect("complete");
            assert_eq!(decoded.message, Some(inv));
        }
    }
}
