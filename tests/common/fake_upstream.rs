//! A fake upstream: an HTTP server (actix-web on 127.0.0.1:0) standing in for the app's
//! upstream endpoint. It records every request as it arrived (method, path, query, every header
//! as bytes, body), announces each arrival to the test, and answers with the test's own answer
//! function, which may hold a request until the test releases it. Also the receiving side's
//! signature check, written independently of `switchboard::upstream::signature`.
//!
//! Not declared in `common/mod.rs`: it needs actix-web, hmac and sha2, which the SDK's test
//! crates (which include `common` too) do not depend on. The broker's test files that use it
//! declare it next to `common`: `#[path = "common/fake_upstream.rs"] mod fake_upstream;`.
#![allow(dead_code, unreachable_pub)]

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::ServerHandle;
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use anyhow::{Result, bail};
use bytes::Bytes;
use hmac::{Hmac, KeyInit as _, Mac as _};
use parking_lot::Mutex;
use sha2::Sha256;
use tokio::sync::{Semaphore, mpsc};

/// Upper bound for a request the test waits for (a failing test, not a timing claim).
const T: Duration = Duration::from_secs(10);

/// One request as the upstream saw it.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub query: String,
    /// Lower-case name → every value, in arrival order.
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Bytes,
}

impl Recorded {
    /// The value of header `name` (lower case); it must have been sent at most once.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        let values: Vec<_> = self.headers.iter().filter(|(n, _)| n == name).collect();
        assert!(values.len() <= 1, "{name} sent {} times", values.len());
        values.first().map(|(_, v)| v.as_slice())
    }

    /// As [`header`](Self::header), as UTF-8 text.
    pub fn header_str(&self, name: &str) -> Option<&str> {
        self.header(name)
            .map(|v| std::str::from_utf8(v).expect("UTF-8 header"))
    }

    /// Every `x-asrs-*` header, sorted by name.
    pub fn asrs_headers(&self) -> Vec<(String, String)> {
        let mut all: Vec<_> = self
            .headers
            .iter()
            .filter(|(n, _)| n.starts_with("x-asrs-"))
            .map(|(n, v)| (n.clone(), String::from_utf8(v.clone()).expect("UTF-8")))
            .collect();
        all.sort();
        all
    }

    /// The `name` parameter of the request's query (empty when absent).
    pub fn query_param(&self, name: &str) -> String {
        form_urlencoded::parse(self.query.as_bytes())
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    }
}

struct State {
    requests: Mutex<Vec<Recorded>>,
    arrivals: mpsc::Sender<String>,
    release: Semaphore,
}

/// Given to the answer function with each request: lets it hold the request until the test
/// releases it ([`FakeUpstream::release`]).
pub struct Gate(Arc<State>);

impl Gate {
    /// Waits for the test to release one held request: `true`, or `false` when the upstream
    /// is stopping.
    pub async fn wait(&self) -> bool {
        match self.0.release.acquire().await {
            Ok(permit) => {
                permit.forget();
                true
            }
            Err(_closed) => false,
        }
    }
}

/// A running fake upstream.
pub struct FakeUpstream {
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    state: web::Data<State>,
    arrivals: mpsc::Receiver<String>,
    handle: ServerHandle,
}

impl FakeUpstream {
    /// Start on 127.0.0.1:0 (one worker); every request is recorded, announced, then answered
    /// by `answer`.
    pub fn start<F, Fut>(answer: F) -> Self
    where
        F: Fn(Recorded, Gate) -> Fut + Clone + Send + 'static,
        Fut: Future<Output = HttpResponse> + 'static,
    {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        // Larger than any test's request count: a full channel would only lose a notification
        // the test then waits for and fails on.
        let (tx, arrivals) = mpsc::channel(256);
        let state = web::Data::new(State {
            requests: Mutex::new(Vec::new()),
            arrivals: tx,
            release: Semaphore::new(0),
        });
        let app_state = state.clone();
        let server = HttpServer::new(move || {
            let answer = answer.clone();
            let handler = move |req: HttpRequest, body: Bytes, state: web::Data<State>| {
                let recorded = record(&req, body);
                state.requests.lock().push(recorded.clone());
                let _ = state
                    .arrivals
                    .try_send(format!("{}?{}", req.path(), req.query_string()));
                answer(recorded, Gate(state.into_inner()))
            };
            App::new()
                .app_data(app_state.clone())
                .default_service(web::to(handler))
        })
        .workers(1)
        .disable_signals()
        .shutdown_timeout(1)
        .listen(listener)
        .expect("listen")
        .run();
        let handle = server.handle();
        tokio::spawn(server);
        Self {
            base: format!("http://{addr}"),
            state,
            arrivals,
            handle,
        }
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.state.requests.lock().clone()
    }

    /// Waits for the next request to reach the upstream; returns its path and query.
    pub async fn arrival(&mut self) -> String {
        tokio::time::timeout(T, self.arrivals.recv())
            .await
            .expect("a request should reach the upstream")
            .expect("upstream alive")
    }

    /// The first request whose path ends with `path_suffix`, polled for (at most 5 s).
    pub async fn wait_for(&self, path_suffix: &str) -> Result<Recorded> {
        for _ in 0..100 {
            if let Some(r) = self
                .state
                .requests
                .lock()
                .iter()
                .find(|r| r.path.ends_with(path_suffix))
                .cloned()
            {
                return Ok(r);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!(
            "the upstream never received {path_suffix}; it got {:?}",
            self.requests()
                .iter()
                .map(|r| r.path.clone())
                .collect::<Vec<_>>()
        )
    }

    /// Lets `n` held requests answer.
    pub fn release(&self, n: usize) {
        self.state.release.add_permits(n);
    }

    pub async fn stop(self) {
        // Unblock anything still held so the worker can shut down.
        self.state.release.close();
        self.handle.stop(false).await;
    }
}

fn record(req: &HttpRequest, body: Bytes) -> Recorded {
    Recorded {
        method: req.method().to_string(),
        path: req.path().to_owned(),
        query: req.query_string().to_owned(),
        headers: req
            .headers()
            .iter()
            .map(|(n, v)| (n.as_str().to_owned(), v.as_bytes().to_vec()))
            .collect(),
        body,
    }
}

/// HMAC-SHA256 of `message` with `key`, lower-case hex: what `X-ASRS-Signature` carries per key.
pub fn hmac_sha256_hex(key: &str, message: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).expect("hmac key");
    mac.update(message.as_bytes());
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The receiving side's check: every key's HMAC-SHA256 of the connection id must be among the
/// comma-separated items (compared case-insensitively, as the Functions extension does).
pub fn assert_signed_with_every_key(r: &Recorded, keys: &[String]) {
    let connection_id = r.header_str("x-asrs-connection-id").expect("connection id");
    let header = r.header_str("x-asrs-signature").expect("signature header");
    let items: Vec<&str> = header.split(',').map(str::trim).collect();
    assert_eq!(items.len(), keys.len(), "{header}");
    for key in keys {
        let want = format!("sha256={}", hmac_sha256_hex(key, connection_id));
        assert!(
            items.iter().any(|i| i.eq_ignore_ascii_case(&want)),
            "{want} not in {header}"
        );
    }
}
