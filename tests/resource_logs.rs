//! Resource logs and the live trace: "why did this client disconnect?" answered by the events
//! a real broker records for real clients — over `GET /admin/trace` (Server-Sent Events), and as
//! JSON lines on the `switchboard` binary's stderr with levels switched at runtime through
//! `PATCH /admin/logs`.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{TestClient, client_token, rest_token};
use serde_json::{Value, json};
use switchboard::ServiceMode;

const WAIT: Duration = Duration::from_secs(15);
const BIN: &str = env!("CARGO_BIN_EXE_switchboard");

/// A live-trace stream: its events, parsed, as they arrive.
struct Trace {
    response: reqwest::Response,
    buf: String,
    /// `event: dropped` counts seen.
    dropped: Vec<u64>,
}

impl Trace {
    async fn open(base: &str, key: &str, query: &str) -> Self {
        let response = reqwest::Client::new()
            .get(format!("{base}/admin/trace{query}"))
            .bearer_auth(rest_token(key, "/admin"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.headers()["content-type"].to_str().unwrap(),
            "text/event-stream"
        );
        let mut trace = Self {
            response,
            buf: String::new(),
            dropped: Vec::new(),
        };
        // The first comment says the viewer is attached: events from now on reach it.
        while !trace.buf.contains(": attached\n\n") {
            trace.read().await;
        }
        trace
    }

    async fn read(&mut self) {
        let chunk = tokio::time::timeout(WAIT, self.response.chunk())
            .await
            .expect("a trace event in time")
            .unwrap()
            .expect("the trace stream stays open");
        self.buf.push_str(std::str::from_utf8(&chunk).unwrap());
    }

    /// The next event (a `data:` line) for which `want` holds; others are skipped.
    async fn next_where(&mut self, what: &str, want: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            while let Some(end) = self.buf.find("\n\n") {
                let event: String = self.buf.drain(..end + 2).collect();
                if let Some(data) = event.strip_prefix("event: dropped\ndata: ") {
                    let v: Value = serde_json::from_str(data.trim()).unwrap();
                    self.dropped.push(v["dropped"].as_u64().unwrap());
                } else if let Some(data) = event.strip_prefix("data: ") {
                    let v: Value = serde_json::from_str(data.trim()).unwrap();
                    if want(&v) {
                        return v;
                    }
                }
            }
            assert!(Instant::now() < deadline, "no {what} in the trace");
            self.read().await;
        }
    }
}

fn op(event: &Value) -> &str {
    event["operationName"].as_str().unwrap_or_default()
}

fn prop<'a>(event: &'a Value, name: &str) -> &'a str {
    event["properties"][name].as_str().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_trace_says_why_each_client_left() {
    let mut config = common::config(ServiceMode::Serverless);
    // A client that stops sending is dropped after two seconds of silence.
    config.limits.client_timeout_secs = 2;
    config.limits.keep_alive_interval_secs = 1;
    let (_handle, base, key) = common::start_with(config).await;
    let mut trace = Trace::open(&base, &key, "?hub=chat").await;

    // A client that goes quiet: a ping timeout.
    let token = client_token(&key, "chat", Some("alice"));
    let mut quiet = TestClient::connect(&base, "chat", &token, "json")
        .await
        .unwrap();
    // One Ping starts the client timeout; then nothing.
    quiet.send_raw(b"{\"type\":6}\x1e").await.unwrap();
    let quiet_id = quiet.connection_id().to_owned();
    let started = trace
        .next_where("ConnectionStarted", |e| {
            op(e) == "ConnectionStarted" && prop(e, "connectionId") == quiet_id
        })
        .await;
    assert_eq!(started["category"], "ConnectivityLogs");
    assert_eq!(started["level"], "Informational");
    assert_eq!(started["callerIpAddress"], "127.0.0.1");
    assert_eq!(prop(&started, "transportType"), "WebSockets");
    assert_eq!(prop(&started, "connectionType"), "Client");
    assert_eq!(prop(&started, "hub"), "chat");
    assert_eq!(prop(&started, "userId"), "alice");
    let ended = trace
        .next_where("ConnectionEnded of the quiet client", |e| {
            op(e) == "ConnectionEnded" && prop(e, "connectionId") == quiet_id
        })
        .await;
    assert_eq!(ended["level"], "Warning");
    assert_eq!(prop(&ended, "closeCategory"), "ping_timeout");
    assert!(
        prop(&ended, "message").contains("client_timeout"),
        "{ended}"
    );
    drop(quiet);

    // A client that says goodbye: a normal close.
    let polite = TestClient::connect(&base, "chat", &token, "json")
        .await
        .unwrap();
    let polite_id = polite.connection_id().to_owned();
    polite.close().await;
    let ended = trace
        .next_where("ConnectionEnded of the polite client", |e| {
            op(e) == "ConnectionEnded" && prop(e, "connectionId") == polite_id
        })
        .await;
    assert_eq!(ended["level"], "Informational");
    assert_eq!(prop(&ended, "closeCategory"), "normal");

    // A token of another key: refused, and said so.
    let forged = client_token("some-other-key-0123456789abcdefghijklmno", "chat", None);
    assert!(
        TestClient::connect(&base, "chat", &forged, "json")
            .await
            .is_err()
    );
    let refused = trace
        .next_where("ConnectionAuthorizationFailed", |e| {
            op(e) == "ConnectionAuthorizationFailed"
        })
        .await;
    assert_eq!(refused["level"], "Warning");
    assert_eq!(prop(&refused, "collection"), "Authorization");
    assert_eq!(refused["properties"]["statusCode"], 401);
    assert_eq!(prop(&refused, "closeCategory"), "unauthorized");

    // A broadcast through the REST API: message tracing.
    let rest = common::Rest::new(&base, &key);
    rest.broadcast("chat", "news", json!(["hello"])).await;
    let message = trace
        .next_where("the broadcast", |e| e["category"] == "MessagingLogs")
        .await;
    assert_eq!(op(&message), "MessageReceived");
    assert_eq!(prop(&message, "messageType"), "BroadcastDataMessage");
    assert_eq!(prop(&message, "hub"), "chat");
    assert!(trace.dropped.is_empty(), "{:?}", trace.dropped);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_trace_filters_authenticates_and_bounds_its_viewers() {
    let (handle, base, key) = common::start(ServiceMode::Serverless).await;
    let http = reqwest::Client::new();

    let no_token = http
        .get(format!("{base}/admin/trace"))
        .send()
        .await
        .unwrap();
    assert_eq!(no_token.status(), 401);
    // A client token opens nothing here.
    let client = http
        .get(format!("{base}/admin/trace"))
        .bearer_auth(client_token(&key, "chat", None))
        .send()
        .await
        .unwrap();
    assert_eq!(client.status(), 401);
    let bad = http
        .get(format!("{base}/admin/trace?categories=audit"))
        .bearer_auth(rest_token(&key, "/admin"))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    assert!(
        bad.text()
            .await
            .unwrap()
            .contains("Unknown category 'audit'")
    );

    // The token in the query, as EventSource sends it; one user's connectivity only.
    let query = format!(
        "?access_token={}&userId=bob&categories=connectivity",
        rest_token(&key, "/admin")
    );
    let response = http
        .get(format!("{base}/admin/trace{query}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut bob_only = Trace {
        response,
        buf: String::new(),
        dropped: Vec::new(),
    };
    let mut viewers = Vec::new();
    for _ in 1..switchboard::events::trace::MAX_VIEWERS {
        viewers.push(Trace::open(&base, &key, "").await);
    }
    let one_too_many = http
        .get(format!("{base}/admin/trace"))
        .bearer_auth(rest_token(&key, "/admin"))
        .send()
        .await
        .unwrap();
    assert_eq!(one_too_many.status(), 429);
    assert_eq!(handle.events().viewer_count(), 8);

    let alice = TestClient::connect(
        &base,
        "chat",
        &client_token(&key, "chat", Some("alice")),
        "json",
    )
    .await
    .unwrap();
    let bob = TestClient::connect(
        &base,
        "chat",
        &client_token(&key, "chat", Some("bob")),
        "json",
    )
    .await
    .unwrap();
    let bob_id = bob.connection_id().to_owned();
    let seen = bob_only
        .next_where("bob's connection", |e| op(e) == "ConnectionStarted")
        .await;
    assert_eq!(prop(&seen, "connectionId"), bob_id, "alice is filtered out");
    drop((alice, bob));

    // Viewers that leave are detached.
    drop(viewers);
    drop(bob_only);
    let deadline = Instant::now() + WAIT;
    while handle.events().viewer_count() > 0 {
        assert!(Instant::now() < deadline, "viewers never detached");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `switchboard serve` with JSON logs; its stderr lines as they come.
fn serve_json_logs() -> (std::process::Child, String, mpsc::Receiver<String>) {
    let mut child = Command::new(BIN)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--mode",
            "serverless",
            "--access-key",
            common::TEST_KEY,
            "--log-format",
            "json",
            "--log-level",
            "http=info",
        ])
        .env_remove("SWITCHBOARD_CONFIG")
        .env_remove("SWITCHBOARD_LOG_LEVEL")
        .env_remove("SWITCHBOARD_LOG_FORMAT")
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    let listening = stdout.next().unwrap().unwrap();
    let base = listening.strip_prefix("Listening on ").unwrap().to_owned();
    // Drained to the end: a closed pipe would make the broker's next print fail.
    std::thread::spawn(move || stdout.for_each(drop));
    let (tx, rx) = mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (child, base, rx)
}

/// Lines from `rx` until one satisfies `want` (each must be a JSON object); all lines read.
fn lines_until(
    rx: &mpsc::Receiver<String>,
    what: &str,
    want: impl Fn(&Value) -> bool,
) -> Vec<Value> {
    let deadline = Instant::now() + WAIT;
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = rx
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("no {what} on stderr; saw {seen:#?}"));
        let v: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("a stderr line that is not JSON ({e}): {line}"));
        let done = want(&v);
        seen.push(v);
        if done {
            return seen;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_resource_logs_on_stderr_with_levels_switched_at_runtime() {
    let (mut child, base, rx) = serve_json_logs();
    let key = common::TEST_KEY;
    let http = reqwest::Client::new();
    let admin = rest_token(key, "/admin");

    // Default connectivity level (warning): a refused token is logged, a normal connect is not.
    let token = client_token(key, "chat", Some("carol"));
    let before = TestClient::connect(&base, "chat", &token, "json")
        .await
        .unwrap();
    let before_id = before.connection_id().to_owned();
    before.close().await;
    let forged = client_token("some-other-key-0123456789abcdefghijklmno", "chat", None);
    assert!(
        TestClient::connect(&base, "chat", &forged, "json")
            .await
            .is_err()
    );
    let lines = lines_until(&rx, "the refused token", |v| {
        v["operationName"] == "ConnectionAuthorizationFailed"
    });
    let refused = lines.last().unwrap();
    assert_eq!(refused["category"], "ConnectivityLogs");
    assert_eq!(refused["level"], "Warning");
    assert_eq!(refused["callerIpAddress"], "127.0.0.1");
    assert!(
        !lines
            .iter()
            .any(|v| v["properties"]["connectionId"] == before_id.as_str()),
        "an info event at the warning level: {lines:#?}"
    );
    // The HTTP request log (info): the negotiate, without its query.
    let negotiate = lines
        .iter()
        .find(|v| v["properties"]["path"] == "/client/negotiate")
        .unwrap_or_else(|| panic!("no negotiate request in {lines:#?}"));
    assert_eq!(negotiate["category"], "HttpRequestLogs");
    assert_eq!(negotiate["properties"]["method"], "POST");
    assert_eq!(negotiate["properties"]["statusCode"], 200);
    assert!(negotiate["properties"]["durationMs"].as_f64().is_some());
    assert!(!negotiate.to_string().contains("access_token"));

    // Connectivity to info at runtime.
    let levels: Value = http
        .patch(format!("{base}/admin/logs"))
        .bearer_auth(&admin)
        .json(&json!({ "connectivity": "info" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        levels,
        json!({ "connectivity": "info", "messaging": "off", "http": "info" })
    );
    let after = TestClient::connect(&base, "chat", &token, "json")
        .await
        .unwrap();
    let after_id = after.connection_id().to_owned();
    after.close().await;
    let lines = lines_until(&rx, "the second client's end", |v| {
        v["operationName"] == "ConnectionEnded"
            && v["properties"]["connectionId"] == after_id.as_str()
    });
    assert!(
        lines
            .iter()
            .any(|v| v["operationName"] == "ConnectionStarted"
                && v["properties"]["connectionId"] == after_id.as_str()
                && v["properties"]["userId"] == "carol"),
        "{lines:#?}"
    );
    let ended = lines.last().unwrap();
    assert_eq!(ended["properties"]["closeCategory"], "normal");
    assert_eq!(ended["properties"]["transportType"], "WebSockets");

    // A bad level is refused with the choices.
    let bad = http
        .patch(format!("{base}/admin/logs"))
        .bearer_auth(&admin)
        .json(&json!({ "connectivity": "loud" }))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    assert!(bad.text().await.unwrap().contains("off"));
    let levels: Value = http
        .get(format!("{base}/admin/logs"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        levels["connectivity"], "info",
        "a refused patch changes nothing"
    );

    child.kill().unwrap();
    child.wait().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switchboard_trace_prints_events_and_admin_sets_levels() {
    let (mut broker, base, _stderr) = serve_json_logs();
    let key = common::TEST_KEY;
    let port = base.rsplit(':').next().unwrap();
    let cs = format!("Endpoint=http://127.0.0.1;Port={port};AccessKey={key};Version=1.0;");

    // `admin --log-level`: the levels now in force.
    let out = Command::new(BIN)
        .args([
            "admin",
            "--connection-string",
            &common::connection_string(&base, key),
        ])
        .args([
            "--log-level",
            "connectivity=warning",
            "--log-level",
            "messaging=debug",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let levels: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        levels,
        json!({ "connectivity": "warning", "messaging": "debug", "http": "info" })
    );
    let bad = Command::new(BIN)
        .args([
            "admin",
            "--connection-string",
            &common::connection_string(&base, key),
            "--log-level",
            "loud",
        ])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(64));

    // `trace`: one line per event of the hub, whatever the log levels.
    let mut trace = Command::new(BIN)
        .args(["trace", "--connection-string", &cs, "--hub", "chat"])
        .env_remove("SWITCHBOARD_CONNECTION_STRING")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut watching = BufReader::new(trace.stderr.take().unwrap()).lines();
    let first = watching.next().unwrap().unwrap();
    assert!(first.contains("watching"), "{first}");
    let (tx, rx) = mpsc::channel();
    let stdout = trace.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let client = TestClient::connect(
        &base,
        "chat",
        &client_token(key, "chat", Some("erin")),
        "json",
    )
    .await
    .unwrap();
    let id = client.connection_id().to_owned();
    let deadline = Instant::now() + WAIT;
    let line = loop {
        let line = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("a ConnectionStarted line from switchboard trace");
        if line.contains("ConnectionStarted") {
            break line;
        }
    };
    assert!(
        line.contains(&format!("hub=chat connection={id} user=erin transport=WebSockets ip=127.0.0.1: Connection started")),
        "{line}"
    );
    client.close().await;
    trace.kill().unwrap();
    trace.wait().unwrap();
    broker.kill().unwrap();
    broker.wait().unwrap();
}
