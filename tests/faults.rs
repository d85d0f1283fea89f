//! Fault tests, all on 127.0.0.1 with real sockets: a hub server killed with SIGKILL mid-stream,
//! upstreams that are down, slow, reset connections or answer garbage, a client that vanishes
//! without a FIN (served by the broker, or routed to a hub server), 10,000 clients reconnecting at once after a broker restart, and a flood of
//! one-byte WebSocket frames.
//!
//! Every test asserts on what was delivered (every message numbered; none missing, none
//! duplicated), on close reasons, statuses and counters — never on how long something took. The
//! time limits below only bound how long a test waits before it fails.
//!
//! Separate processes: the broker binary (`CARGO_BIN_EXE_switchboard`) for the restart test,
//! and this test binary itself for the hub servers of the SIGKILL test. An integration test
//! cannot name an example's binary (`examples/echo` is not built by `cargo test --test`), and a
//! hub server in the test's own process could only be stopped by dropping it, which runs its
//! drop code (a killed process runs nothing); so the test re-executes itself with an
//! environment variable that makes the same test function run an SDK hub server, and kills that
//! process with SIGKILL (see
//! [`a_hub_server_killed_mid_stream_closes_its_clients_and_the_others_lose_nothing`]).
//!
//! The restart and flood tests load both cores; they run alone ([`HEAVY`]).

mod common;
#[path = "common/fake_upstream.rs"]
mod fake_upstream;

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use actix_web::HttpResponse;
use anyhow::{Context as _, Result, bail, ensure};
use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use switchboard::telemetry::names;
use switchboard::upstream::{UpstreamOptions, UpstreamRule};
use switchboard::{Config, ServiceMode};
use switchboard_sdk::{ConnectionString, Context, Hub, HubError, HubServer};
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use common::{Rest, TestClient, client_token, client_token_with, json_invocation, start_with};
use fake_upstream::{FakeUpstream, Gate, Recorded};

/// Upper bound for one expected message (a failing test, not a timing claim).
const T: Duration = Duration::from_secs(10);

/// The Close error of a client whose hub server went away (`close.rs`).
const APP_SERVER_GONE: &str = "Connection closed with an error. The app server this client was connected to has disconnected.";
/// The Completion error of a blocking invocation whose upstream call failed in transport
/// (refused, reset, garbage, timeout: all "as 500", docs/protocol.md#upstream-responses).
const AS_500: &str = "Invocation failed, status code 500";
/// The Close error (and `disconnected` event error) of a client timeout.
const CLIENT_TIMEOUT: &str = "Connection closed with an error.";

/// The restart and flood tests load both cores for seconds: each runs alone (write lock) while
/// the others share (read lock), so that no other test's upstream or client timeout is crossed
/// because a neighbour saturates the machine.
static HEAVY: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

// ---------------------------------------------------------------------------------------------
// 1. A hub server killed with SIGKILL mid-stream
// ---------------------------------------------------------------------------------------------

/// Set in a child process of this test binary: the child is the SDK hub server with this id.
const CHILD_SERVER_ID: &str = "SWITCHBOARD_FAULTS_HUB_SERVER_ID";
/// The child hub server's connection string.
const CHILD_CONNECTION_STRING: &str = "SWITCHBOARD_FAULTS_CONNECTION_STRING";
/// How many server connections the child opens.
const CHILD_CONNECTIONS: &str = "SWITCHBOARD_FAULTS_SERVER_CONNECTIONS";
/// The line a child hub server prints once all its server connections are up.
const CHILD_READY: &str = "faults: hub server ready";
/// The hub of the SIGKILL test.
const KILL_HUB: &str = "chat";
/// The SIGKILL test's name: a child process runs only it (`--exact`), as the hub server.
const KILL_TEST: &str =
    "a_hub_server_killed_mid_stream_closes_its_clients_and_the_others_lose_nothing";
/// REST broadcasts (and server broadcasts) in the SIGKILL test's stream.
const KILL_STREAM: i64 = 300;

/// Two SDK hub servers for one hub, each a child process (this test binary, re-executed with
/// [`CHILD_SERVER_ID`] set, runs this same function as the hub server; see
/// [`run_hub_server_child`]). Three clients stick to server A (two server connections), three
/// to server B (one server connection, so its own stream has one order). While the test streams
/// numbered REST broadcasts to the hub and server B streams numbered broadcasts of its own
/// (`fromServer`, one per line the test writes to its stdin), server A is killed with SIGKILL
/// (no goodbye, its sockets closed by the kernel).
///
/// A's clients get the Close message for a lost app server (`allowReconnect: true`) after a
/// gap-free prefix of the REST stream; B's clients get every REST and every server message,
/// each exactly once and in order; afterwards they are still served by B.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hub_server_killed_mid_stream_closes_its_clients_and_the_others_lose_nothing()
-> Result<()> {
    if let Ok(server_id) = std::env::var(CHILD_SERVER_ID) {
        return run_hub_server_child(&server_id).await;
    }
    let _shared = HEAVY.read().await;
    let (sb, base, key) = start_with(common::config(ServiceMode::Default)).await;
    let connection_string = sb.connection_string();
    let mut server_a = spawn_hub_server(&connection_string, "srv-a", 2).await?;
    let mut server_b = spawn_hub_server(&connection_string, "srv-b", 1).await?;

    // Three clients stick to each server (the SDK's server-name claim, Required).
    let mut a_clients = Vec::new();
    let mut b_clients = Vec::new();
    for i in 0..6 {
        let server = if i % 2 == 0 { "srv-a" } else { "srv-b" };
        let token = client_token_with(
            &key,
            KILL_HUB,
            &json!({"nameid": format!("user-{i}"), "asrs.s.sn": server, "asrs.s.ssticky": "Required"}),
        );
        let mut client = TestClient::connect(&base, KILL_HUB, &token, "json").await?;
        assert_eq!(who_am_i(&mut client, "w0").await?, server);
        if i % 2 == 0 {
            a_clients.push(client);
        } else {
            b_clients.push(client);
        }
    }

    let a_readers: Vec<_> = a_clients
        .into_iter()
        .map(|c| tokio::spawn(read_stream(c)))
        .collect();
    let b_readers: Vec<_> = b_clients
        .into_iter()
        .map(|c| tokio::spawn(read_stream(c)))
        .collect();

    // The stream: REST broadcast k, then server B's broadcast k.
    let rest = Rest::new(&base, &key);
    let progress = Arc::new(AtomicUsize::new(0));
    let mut b_stdin = server_b.stdin.take().context("server B's stdin")?;
    let streamer = {
        let progress = progress.clone();
        tokio::spawn(async move {
            for k in 0..KILL_STREAM {
                rest.broadcast(KILL_HUB, "rest", json!([k])).await;
                b_stdin.write_all(format!("{k}\n").as_bytes()).await?;
                progress.fetch_add(1, Ordering::SeqCst);
            }
            rest.broadcast(KILL_HUB, "rest", json!(["end"])).await;
            b_stdin.write_all(b"\"end\"\n").await?;
            b_stdin.flush().await?;
            anyhow::Ok(b_stdin)
        })
    };

    // Kill A mid-stream.
    wait_until("a third of the stream sent", || {
        progress.load(Ordering::SeqCst) >= (KILL_STREAM / 3) as usize
    })
    .await?;
    server_a.start_kill().context("SIGKILL server A")?;
    server_a.wait().await?;
    let sent_at_kill = progress.load(Ordering::SeqCst);

    let b_stdin = tokio::time::timeout(Duration::from_secs(60), streamer)
        .await
        .context("the stream should end")???;

    let mut a_prefixes = Vec::new();
    for reader in a_readers {
        let got = tokio::time::timeout(Duration::from_secs(30), reader).await???;
        a_prefixes.push(got.rest.len());
        let close = got
            .close
            .as_ref()
            .context("A's client must get a Close message")?;
        assert_eq!(close["error"], json!(APP_SERVER_GONE), "{close}");
        assert_eq!(close["allowReconnect"], json!(true), "{close}");
        // A gap-free prefix of the REST stream, cut off by the close.
        let want: Vec<Value> = (0..got.rest.len() as i64).map(|k| json!(k)).collect();
        assert_eq!(got.rest, want, "A's client got a REST stream with a gap");
        assert!(!got.rest.contains(&json!("end")));
    }
    for reader in b_readers {
        let got = tokio::time::timeout(Duration::from_secs(30), reader).await???;
        assert!(
            got.close.is_none(),
            "B's client was closed: {:?}",
            got.close
        );
        let mut want: Vec<Value> = (0..KILL_STREAM).map(|k| json!(k)).collect();
        want.push(json!("end"));
        assert_eq!(
            got.rest, want,
            "B's client lost or repeated a REST broadcast"
        );
        assert_eq!(
            got.server, want,
            "B's client lost or repeated a message of server B"
        );
        // Still served by B.
        let mut client = got.client;
        assert_eq!(who_am_i(&mut client, "w1").await?, "srv-b");
        client.close().await;
    }
    eprintln!(
        "SIGKILL test: server A killed after {sent_at_kill} of {KILL_STREAM} REST broadcasts; \
         its clients got {a_prefixes:?} of them before their Close"
    );

    // B's stdin closes: it stops gracefully.
    drop(b_stdin);
    let exit = tokio::time::timeout(Duration::from_secs(40), server_b.wait()).await??;
    assert!(exit.success(), "server B exited with {exit:?}");
    sb.stop().await;
    Ok(())
}

/// What one client of the SIGKILL test received.
struct Received {
    client: TestClient,
    /// The arguments of every `rest` invocation, in arrival order.
    rest: Vec<Value>,
    /// The arguments of every `fromServer` invocation, in arrival order.
    server: Vec<Value>,
    /// The Close message, if one came.
    close: Option<Value>,
}

/// Read `client`'s messages until a Close message, or until both streams ended (`"end"`).
async fn read_stream(mut client: TestClient) -> Result<Received> {
    let (mut rest, mut server, mut close) = (Vec::new(), Vec::new(), None);
    let end = json!("end");
    while !(rest.last() == Some(&end) && server.last() == Some(&end)) {
        let msg = client
            .next_message(Duration::from_secs(20))
            .await
            .with_context(|| {
                format!(
                    "{}: {} REST and {} server messages so far",
                    client.connection_id(),
                    rest.len(),
                    server.len()
                )
            })?;
        match (msg["type"].as_i64(), msg["target"].as_str()) {
            (Some(1), Some("rest")) => rest.push(msg["arguments"][0].clone()),
            (Some(1), Some("fromServer")) => server.push(msg["arguments"][0].clone()),
            (Some(7), _) => {
                close = Some(msg);
                break;
            }
            _ => bail!("unexpected message {msg}"),
        }
    }
    Ok(Received {
        client,
        rest,
        server,
        close,
    })
}

/// Invoke the hub method `WhoAmI` (id `id`): the id of the hub server that runs it.
async fn who_am_i(client: &mut TestClient, id: &str) -> Result<String> {
    client
        .send_raw(&json_invocation(Some(id), "WhoAmI", json!([])))
        .await?;
    let done = client.next_message(T).await?;
    ensure!(
        done["type"] == json!(3) && done["invocationId"] == json!(id),
        "expected the Completion of {id}, got {done}"
    );
    done["result"]
        .as_str()
        .map(str::to_owned)
        .with_context(|| format!("WhoAmI returned {done}"))
}

/// Start this test binary as an SDK hub server for [`KILL_HUB`] with `connections` server
/// connections, and wait for its ready line. Its stdin stays open: each line is one value for
/// it to broadcast; EOF stops it.
async fn spawn_hub_server(
    connection_string: &str,
    server_id: &str,
    connections: usize,
) -> Result<tokio::process::Child> {
    let mut child = tokio::process::Command::new(std::env::current_exe()?)
        .args([KILL_TEST, "--exact", "--nocapture"])
        .env(CHILD_SERVER_ID, server_id)
        .env(CHILD_CONNECTION_STRING, connection_string)
        .env(CHILD_CONNECTIONS, connections.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()?;
    let stdout = child.stdout.take().context("stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    loop {
        let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .with_context(|| format!("hub server {server_id} did not get ready"))??
            .with_context(|| format!("hub server {server_id} ended before it was ready"))?;
        if line.contains(CHILD_READY) {
            break;
        }
    }
    // Keep draining its output so that it never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok(child)
}

/// The child process's side of the SIGKILL test: an SDK hub server whose `WhoAmI` returns its
/// server id and that broadcasts `fromServer(value)` for every JSON value read from stdin; at
/// EOF it stops gracefully.
async fn run_hub_server_child(server_id: &str) -> Result<()> {
    let connection_string: ConnectionString = std::env::var(CHILD_CONNECTION_STRING)?
        .parse()
        .context("connection string")?;
    let connections: usize = std::env::var(CHILD_CONNECTIONS)?.parse()?;
    let hub = Hub::builder()
        .method("WhoAmI", |ctx: Context, (): ()| async move {
            Ok::<_, HubError>(ctx.server().server_id().to_owned())
        })
        .build();
    let server = HubServer::builder(connection_string, KILL_HUB, hub)
        .connection_count(connections)
        .server_id(server_id)
        .start()?;
    server
        .wait_connected(connections, Duration::from_secs(20))
        .await?;
    println!("{CHILD_READY}");
    // Stdin on a thread (tokio's stdin needs a feature the tests do not otherwise use).
    let (tx, mut rx) = tokio::sync::mpsc::channel::<String>(64);
    std::thread::spawn(move || {
        for line in std::io::stdin().lines() {
            let Ok(line) = line else { break };
            if tx.blocking_send(line).is_err() {
                break;
            }
        }
    });
    while let Some(line) = rx.recv().await {
        let value: Value = serde_json::from_str(&line)?;
        server.clients().all().send("fromServer", (value,)).await?;
    }
    server.stop().await;
    Ok(())
}

/// Poll `done` every 20 ms until it holds (at most 60 s, then fail naming `what`).
async fn wait_until(what: &str, mut done: impl FnMut() -> bool) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        ensure!(Instant::now() < deadline, "gave up waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 2. Upstreams that are down, slow, reset connections or answer garbage
// ---------------------------------------------------------------------------------------------

/// What a hand-made upstream does with each request it accepts.
#[derive(Clone, Copy, Debug)]
enum Misbehaviour {
    /// Read the request head, then close with a TCP RST (`SO_LINGER` 0).
    Reset,
    /// Read the request head, then close (FIN) without a byte of answer.
    HangUp,
    /// Answer bytes that are not HTTP at all.
    Garbage,
    /// Answer `200 OK` promising 1000 bytes of body, send 10, close.
    TruncatedBody,
    /// Read the request, answer nothing, keep the socket open.
    Silent,
}

/// A raw TCP upstream on 127.0.0.1:0 that does `how` with every connection; returns its base
/// URL (`http://127.0.0.1:<port>`). It runs until the test's runtime ends.
async fn misbehaving_upstream(how: Misbehaviour) -> Result<String> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            tokio::spawn(misbehave(socket, how));
        }
    });
    Ok(base)
}

async fn misbehave(mut socket: TcpStream, how: Misbehaviour) {
    // The request head, so that the request has provably been sent.
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match socket.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    match how {
        Misbehaviour::Reset => {
            let _ = socket.set_zero_linger();
        }
        Misbehaviour::HangUp => {
            let _ = socket.shutdown().await;
        }
        Misbehaviour::Garbage => {
            let _ = socket
                .write_all(b"\x00\x01\x02 this is not HTTP \xff\xfe\r\n\r\n")
                .await;
            let _ = socket.shutdown().await;
        }
        Misbehaviour::TruncatedBody => {
            let _ = socket
                .write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
                      Content-Length: 1000\r\n\r\n{\"type\":3,",
                )
                .await;
            let _ = socket.shutdown().await;
        }
        Misbehaviour::Silent => {
            // Hold the socket (and the request) until the test ends.
            std::future::pending::<()>().await;
        }
    }
}

/// `upstream_options.timeout_secs` of the upstream tests: what the silent upstream waits out.
/// Not 1 s, so that the good upstream's answers never come near it on a loaded machine.
const UPSTREAM_TIMEOUT_SECS: u64 = 3;

/// A port that was just bound and released: nothing listens there (connection refused).
fn dead_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// The well-behaved upstream: 200 for connection events, and `Add(a, b)` answered with a
/// framed JSON Completion of the sum.
async fn good_upstream(r: Recorded, _gate: Gate) -> HttpResponse {
    if r.path.ends_with("/Add") {
        let inv: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
        let sum =
            inv["arguments"][0].as_i64().unwrap_or(0) + inv["arguments"][1].as_i64().unwrap_or(0);
        let mut out = json!({"type": 3, "invocationId": inv["invocationId"], "result": sum})
            .to_string()
            .into_bytes();
        out.push(0x1e);
        return HttpResponse::Ok()
            .content_type("application/json")
            .body(out);
    }
    HttpResponse::Ok().finish()
}

/// A rule for `category` events of `hub` named `event` (each `*` or a name), sent to `base`.
fn rule(base: &str, hub: &str, category: &str, event: &str) -> UpstreamRule {
    UpstreamRule {
        url_template: format!("{base}/{{hub}}/{{category}}/{{event}}"),
        hub_pattern: hub.to_owned(),
        category_pattern: category.to_owned(),
        event_pattern: event.to_owned(),
    }
}

/// Invoke `target` blocking (id `id`) and return the Completion.
async fn invoke(client: &mut TestClient, id: &str, target: &str, args: Value) -> Result<Value> {
    client
        .send_raw(&json_invocation(Some(id), target, args))
        .await?;
    let done = client.next_message(T).await?;
    ensure!(
        done["type"] == json!(3) && done["invocationId"] == json!(id),
        "expected the Completion of {id}, got {done}"
    );
    Ok(done)
}

/// Blocking invocations whose upstream is down (connection refused), resets the connection,
/// hangs up without answering, answers bytes that are not HTTP, answers a truncated 200 body, or
/// never answers (past `upstream_options.timeout_secs`): each gets the Completion error of a
/// transport failure (`Invocation failed, status code 500`), and the same connection
/// is served normally right after. While one connection waits on the silent upstream, another
/// connection's calls are answered.
///
/// `tests/upstream.rs` covers refused connections and timeouts on `UpstreamClient` itself, and
/// `tests/serverless_upstream.rs` a slow HTTP answer end to end; resets, hang-ups, garbage and
/// truncated bodies, refused connections seen by a client, and the connections' independence
/// were not covered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_upstream_invocations_complete_with_an_error_and_the_connection_stays_usable()
-> Result<()> {
    let _shared = HEAVY.read().await;
    let good = FakeUpstream::start(good_upstream);
    let down = format!("http://127.0.0.1:{}", dead_port()?);
    let faults = [
        ("Down", down),
        ("Reset", misbehaving_upstream(Misbehaviour::Reset).await?),
        ("HangUp", misbehaving_upstream(Misbehaviour::HangUp).await?),
        (
            "Garbage",
            misbehaving_upstream(Misbehaviour::Garbage).await?,
        ),
        (
            "Truncated",
            misbehaving_upstream(Misbehaviour::TruncatedBody).await?,
        ),
        ("Slow", misbehaving_upstream(Misbehaviour::Silent).await?),
    ];
    let mut upstream: Vec<UpstreamRule> = faults
        .iter()
        .map(|(event, base)| rule(base, "*", "messages", event))
        .collect();
    upstream.push(rule(&good.base, "*", "*", "*"));
    let (sb, base, key) = start_with(Config {
        mode: ServiceMode::Serverless,
        upstream,
        upstream_options: UpstreamOptions {
            timeout_secs: UPSTREAM_TIMEOUT_SECS,
            ..UpstreamOptions::default()
        },
        ..Config::default()
    })
    .await;
    let mut client = TestClient::connect(
        &base,
        "calc",
        &client_token(&key, "calc", Some("ann")),
        "json",
    )
    .await?;
    let mut other = TestClient::connect(
        &base,
        "calc",
        &client_token(&key, "calc", Some("bob")),
        "json",
    )
    .await?;

    for (i, (target, _)) in faults.iter().enumerate() {
        let id = format!("f{i}");
        if *target == "Slow" {
            // While this connection's call hangs on the silent upstream, the other connection
            // is served.
            client
                .send_raw(&json_invocation(Some(&id), target, json!([])))
                .await?;
            let add = invoke(&mut other, "o1", "Add", json!([20, 22])).await?;
            assert_eq!(add["result"], json!(42), "{add}");
            let done = client.next_message(T).await?;
            assert_eq!(
                done,
                json!({"type": 3, "invocationId": id, "error": AS_500}),
                "{target}"
            );
        } else {
            let done = invoke(&mut client, &id, target, json!([])).await?;
            assert_eq!(
                done,
                json!({"type": 3, "invocationId": id, "error": AS_500}),
                "{target}"
            );
        }
        // The same connection is served right after.
        let add = invoke(&mut client, &format!("a{i}"), "Add", json!([i, 1])).await?;
        assert_eq!(add["result"], json!(i + 1), "after {target}: {add}");
    }
    let failures = sb.metrics().get(names::upstream_failures).unwrap_or(0);
    assert!(
        failures >= faults.len() as u64,
        "every failed call is counted: {failures}"
    );
    client.close().await;
    other.close().await;
    sb.stop().await;
    good.stop().await;
    Ok(())
}

/// A `connected` event whose upstream is down, never answers, resets the connection or answers
/// garbage: the client's handshake is refused with the reason (the upstream could not be
/// reached), the refusal is counted, and clients of other hubs connect as usual.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_upstream_refuses_the_handshake_with_the_reason() -> Result<()> {
    let _shared = HEAVY.read().await;
    let good = FakeUpstream::start(good_upstream);
    let down = format!("http://127.0.0.1:{}", dead_port()?);
    let cases = [
        ("down", down, "cannot connect to upstream"),
        (
            "slow",
            misbehaving_upstream(Misbehaviour::Silent).await?,
            "upstream request timed out",
        ),
        (
            "reset",
            misbehaving_upstream(Misbehaviour::Reset).await?,
            "upstream request failed",
        ),
        (
            "garbage",
            misbehaving_upstream(Misbehaviour::Garbage).await?,
            "upstream request failed",
        ),
    ];
    // Each URL carries a key in its query, as an Azure Functions upstream does: it must not
    // reach the client in the refusal.
    let mut upstream: Vec<UpstreamRule> = cases
        .iter()
        .map(|(hub, base, _)| UpstreamRule {
            url_template: format!("{base}/{{hub}}/{{category}}/{{event}}?code=fn-secret-key"),
            ..rule(base, hub, "connections", "*")
        })
        .collect();
    upstream.push(rule(&good.base, "*", "*", "*"));
    let (sb, base, key) = start_with(Config {
        mode: ServiceMode::Serverless,
        upstream,
        upstream_options: UpstreamOptions {
            timeout_secs: UPSTREAM_TIMEOUT_SECS,
            event_retries: 1,
            retry_base_ms: 10,
            ..UpstreamOptions::default()
        },
        ..Config::default()
    })
    .await;
    for (hub, _, reason) in &cases {
        let err = TestClient::connect(&base, hub, &client_token(&key, hub, None), "json")
            .await
            .err()
            .with_context(|| format!("hub {hub}: the handshake must be refused"))?;
        let text = format!("{err:#}");
        assert!(
            text.contains("The upstream could not be reached to accept the connection: ")
                && text.contains(reason),
            "hub {hub}: {text}"
        );
        assert!(!text.contains("fn-secret-key"), "hub {hub}: {text}");
        // Another hub's client is not affected.
        let mut ok =
            TestClient::connect(&base, "calc", &client_token(&key, "calc", None), "json").await?;
        let add = invoke(&mut ok, "1", "Add", json!([1, 2])).await?;
        assert_eq!(add["result"], json!(3));
        ok.close().await;
    }
    assert_eq!(
        sb.metrics().get(names::upstream_refused_connections),
        Some(cases.len() as u64)
    );
    sb.stop().await;
    good.stop().await;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 3. A client that vanishes without a FIN
// ---------------------------------------------------------------------------------------------

/// A TCP proxy on 127.0.0.1:0 in front of `target` that, once [`Blackhole::vanish`] is called,
/// stops moving bytes in both directions of every connection without closing any socket: to
/// the broker, the client has vanished (a pulled cable, a phone out of coverage).
struct Blackhole {
    /// `http://127.0.0.1:<proxy port>`.
    base: String,
    on: watch::Sender<bool>,
}

impl Blackhole {
    async fn start(target: SocketAddr) -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("http://{}", listener.local_addr()?);
        let (on, hole) = watch::channel(false);
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(broker) = TcpStream::connect(target).await else {
                    continue;
                };
                let (client_rd, client_wr) = client.into_split();
                let (broker_rd, broker_wr) = broker.into_split();
                tokio::spawn(pump(client_rd, broker_wr, hole.clone()));
                tokio::spawn(pump(broker_rd, client_wr, hole.clone()));
            }
        });
        Ok(Self { base, on })
    }

    /// From now on nothing moves, and nothing is closed.
    fn vanish(&self) {
        self.on.send_replace(true);
    }
}

/// Copy `from` to `to` until the blackhole opens; then hold both ends open, moving nothing.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut hole: watch::Receiver<bool>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        tokio::select! {
            biased;
            () = async { drop(hole.wait_for(|on| *on).await) } => break,
            read = from.read(&mut buf) => match read {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if to.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            },
        }
    }
    std::future::pending::<()>().await;
    drop((from, to));
}

/// `GET /readyz`: status and the `status` field of the body.
async fn readyz(base: &str) -> Result<(u16, Value)> {
    let r = reqwest::get(format!("{base}/readyz")).await?;
    let status = r.status().as_u16();
    let body: Value = r.json().await?;
    Ok((status, body["status"].clone()))
}

/// A client behind a proxy that turns into a blackhole: no FIN, no RST, no byte either way.
/// With `limits.client_timeout_secs = 2` (keep-alive 1 s) and the client's first Ping received,
/// the broker ends the connection on its own: the connection is gone from the REST API (404),
/// the upstream gets the `disconnected` event with the client-timeout error, the timeout is
/// counted, and its slot is free again (`max_connections = 1`: `/readyz` says `full` before and
/// `ready` after, and a new client is accepted).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_vanishes_without_fin_is_dropped_after_the_client_timeout() -> Result<()> {
    let _shared = HEAVY.read().await;
    let up = FakeUpstream::start(good_upstream);
    let mut config = common::config(ServiceMode::Serverless);
    config.upstream = vec![UpstreamRule::from_template(&format!(
        "{}/{{hub}}/{{category}}/{{event}}",
        up.base
    ))];
    config.limits.client_timeout_secs = 2;
    config.limits.keep_alive_interval_secs = 1;
    config.limits.max_connections = 1;
    let (sb, base, key) = start_with(config).await;
    let proxy = Blackhole::start(sb.local_addr()).await?;
    let rest = Rest::new(&base, &key);

    let token = client_token(&key, "chat", Some("walker"));
    let mut client = TestClient::connect(&proxy.base, "chat", &token, "json").await?;
    let id = client.connection_id().to_owned();
    up.wait_for("/chat/connections/connected").await?;
    assert_eq!(rest.connection_status("chat", &id).await, 200);
    assert_eq!(readyz(&base).await?, (503, json!("full")));
    let refused = TestClient::connect(&base, "chat", &client_token(&key, "chat", None), "json")
        .await
        .err()
        .context("the only slot is taken")?;
    assert!(format!("{refused:#}").contains("429"), "{refused:#}");
    // The first Ping starts the client timeout (as ASP.NET Core); the Completion after it shows
    // the broker has read the Ping. Then the client vanishes.
    client.send_raw(b"{\"type\":6}\x1e").await?;
    invoke(&mut client, "1", "Add", json!([1, 1])).await?;
    let vanished = Instant::now();
    proxy.vanish();

    rest.wait_connection_status("chat", &id, 404, Duration::from_secs(30))
        .await;
    eprintln!(
        "blackhole test: the vanished client was gone after {:?} (client timeout 2 s)",
        vanished.elapsed()
    );
    let gone = up.wait_for("/chat/connections/disconnected").await?;
    assert_eq!(gone.header_str("x-asrs-connection-id"), Some(id.as_str()));
    let body: Value = serde_json::from_slice(&gone.body)?;
    assert_eq!(body, json!({"type": 11, "error": CLIENT_TIMEOUT}));
    assert_eq!(sb.metrics().get(names::client_timeouts), Some(1));
    // The slot is released.
    wait_until_ready(&base).await?;
    assert_eq!(sb.metrics().get(names::connections_current), Some(0));
    let mut next =
        TestClient::connect(&base, "chat", &client_token(&key, "chat", None), "json").await?;
    invoke(&mut next, "2", "Add", json!([2, 2])).await?;
    next.close().await;
    sb.stop().await;
    up.stop().await;
    Ok(())
}

/// The same vanished client in Default mode, routed to an SDK hub server (in this process,
/// over a real socket) with a 2 s client timeout: the broker relays and leaves the client
/// timeout to the hub server, as Azure does; the hub server times the client out and tells the
/// broker, which ends the connection (REST 404) and releases its slot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vanished_client_of_a_hub_server_is_dropped_after_its_client_timeout() -> Result<()> {
    let _shared = HEAVY.read().await;
    let mut config = common::config(ServiceMode::Default);
    // One slot for the hub server's connection, one for a client.
    config.limits.max_connections = 2;
    let (sb, base, key) = start_with(config).await;
    let hub = Hub::builder()
        .method("WhoAmI", |ctx: Context, (): ()| async move {
            Ok::<_, HubError>(ctx.server().server_id().to_owned())
        })
        .build();
    let server = HubServer::builder(sb.connection_string().parse()?, "chat", hub)
        .options(switchboard_sdk::HubServerOptions {
            connection_count: 1,
            server_id: Some("srv".to_owned()),
            client_timeout: Duration::from_secs(2),
            client_keep_alive_interval: Duration::from_secs(1),
            ..switchboard_sdk::HubServerOptions::default()
        })
        .start()?;
    server.wait_connected(1, T).await?;
    let proxy = Blackhole::start(sb.local_addr()).await?;
    let rest = Rest::new(&base, &key);

    let token = client_token(&key, "chat", Some("walker"));
    let mut client = TestClient::connect(&proxy.base, "chat", &token, "json").await?;
    let id = client.connection_id().to_owned();
    assert_eq!(readyz(&base).await?, (503, json!("full")));
    // The first Ping starts the hub server's client timeout; the answer to WhoAmI shows the
    // hub server has read it.
    client.send_raw(b"{\"type\":6}\x1e").await?;
    assert_eq!(who_am_i(&mut client, "1").await?, "srv");
    assert!(server.connection_exists(&id).await?);
    proxy.vanish();

    rest.wait_connection_status("chat", &id, 404, Duration::from_secs(30))
        .await;
    assert!(!server.connection_exists(&id).await?);
    wait_until_ready(&base).await?;
    let mut next =
        TestClient::connect(&base, "chat", &client_token(&key, "chat", None), "json").await?;
    assert_eq!(who_am_i(&mut next, "2").await?, "srv");
    next.close().await;
    server.stop().await;
    sb.stop().await;
    Ok(())
}

/// Poll `/readyz` until it answers 200 `ready` (at most 30 s).
async fn wait_until_ready(base: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, state) = readyz(base).await?;
        if status == 200 {
            assert_eq!(state, json!("ready"));
            return Ok(());
        }
        ensure!(
            Instant::now() < deadline,
            "/readyz still answers {status} {state}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// 4. 10,000 clients reconnecting at once after a restart
// ---------------------------------------------------------------------------------------------

/// How many clients the restart test connects (`SWITCHBOARD_FAULTS_STORM_CLIENTS`, default
/// 10,000).
fn storm_clients() -> usize {
    std::env::var("SWITCHBOARD_FAULTS_STORM_CLIENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000)
}

/// The broker binary in Serverless mode on `listen`, with its address read from its
/// `Listening on` line.
async fn spawn_broker(
    listen: &str,
    config: &std::path::Path,
) -> Result<(tokio::process::Child, String)> {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .arg("serve")
        .arg("--config")
        .arg(config)
        .args(["--listen", listen, "--mode", "serverless"])
        .args(["--access-key", common::TEST_KEY])
        .env("RUST_LOG", "error")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let stdout = child.stdout.take().context("stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let base = loop {
        let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await??
            .context("the broker printed no address")?;
        if let Some(addr) = line.strip_prefix("Listening on ") {
            break addr.to_owned();
        }
    };
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok((child, base))
}

/// What the storm clients have done so far, per generation (0: before the restart, 1: after).
#[derive(Default)]
struct StormCounters {
    connected: [AtomicUsize; 2],
    greeted: [AtomicUsize; 2],
    dropped: AtomicUsize,
    attempts: [AtomicUsize; 2],
    failed: [AtomicUsize; 2],
    /// Why attempts failed: refused, an HTTP status, or another error.
    failures: std::sync::Mutex<std::collections::BTreeMap<String, usize>>,
}

/// The kind of a failed connection attempt, for the test's report.
fn failure_kind(e: &anyhow::Error) -> String {
    use tokio_tungstenite::tungstenite::Error as WsError;
    match e.downcast_ref::<WsError>() {
        Some(WsError::Io(io)) => format!("io {:?}", io.kind()),
        Some(WsError::Http(response)) => format!("HTTP {}", response.status()),
        Some(other) => format!("WebSocket {other}"),
        None if e.is::<tokio::time::error::Elapsed>() => "timed out".to_owned(),
        None => format!("{e}"),
    }
}

/// One lean client: a WebSocket straight to `/client/?hub=storm` with its token in the query
/// (the clients' `skipNegotiation`), JSON handshake, small buffers. It counts the `hello`
/// broadcast of each generation; when the broker goes away it reconnects, retrying with a
/// jittered exponential back-off (50 ms doubling to 1 s) on refused connections and on 429/503,
/// as the official clients retry their reconnects.
async fn storm_client(ws_url: String, counters: Arc<StormCounters>, seed: u64) {
    let mut rng = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    for generation in 0..2 {
        let mut ws = {
            let mut attempt = 0u32;
            loop {
                counters.attempts[generation].fetch_add(1, Ordering::Relaxed);
                match storm_connect(&ws_url).await {
                    Ok(ws) => break ws,
                    Err(e) => {
                        counters.failed[generation].fetch_add(1, Ordering::Relaxed);
                        if let Ok(mut kinds) = counters.failures.lock() {
                            *kinds.entry(failure_kind(&e)).or_default() += 1;
                        }
                        rng ^= rng << 13;
                        rng ^= rng >> 7;
                        rng ^= rng << 17;
                        let backoff = (50u64 << attempt.min(5)).min(1000);
                        let jitter = rng % (backoff / 2 + 1);
                        tokio::time::sleep(Duration::from_millis(backoff / 2 + jitter)).await;
                        attempt += 1;
                    }
                }
            }
        };
        counters.connected[generation].fetch_add(1, Ordering::SeqCst);
        while let Some(Ok(frame)) = ws.next().await {
            if let Message::Text(text) = frame
                && text.contains("\"target\":\"hello\"")
            {
                counters.greeted[generation].fetch_add(1, Ordering::SeqCst);
            }
        }
        counters.dropped.fetch_add(1, Ordering::SeqCst);
    }
}

type LeanWs = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>;

/// Open one lean WebSocket and complete the JSON handshake.
async fn storm_connect(url: &str) -> Result<LeanWs> {
    let config = WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0);
    let request = url.into_client_request()?;
    let (mut ws, _) = tokio::time::timeout(
        Duration::from_secs(30),
        tokio_tungstenite::connect_async_with_config(request, Some(config), true),
    )
    .await??;
    ws.send(Message::text(common::JSON_HANDSHAKE)).await?;
    match tokio::time::timeout(Duration::from_secs(30), ws.next()).await? {
        Some(Ok(Message::Text(t))) if t.starts_with("{}\x1e") => Ok(ws),
        other => bail!("handshake answered {other:?}"),
    }
}

/// `switchboard_connections` from `/metrics`.
async fn connections_gauge(base: &str) -> Result<u64> {
    let text = reqwest::get(format!("{base}/metrics"))
        .await?
        .text()
        .await?;
    text.lines()
        .find_map(|l| l.strip_prefix("switchboard_connections "))
        .context("no switchboard_connections")?
        .trim()
        .parse()
        .context("gauge value")
}

/// The broker binary (Serverless) with 10,000 WebSocket clients; SIGKILL; the same binary
/// started again on the same port; every client reconnects at once (each retrying with a small
/// back-off while the port refuses, or the broker answers 429/503), and a REST broadcast after
/// the restart reaches all of them. The broker runs in its own process, so neither side needs
/// more than 10,000 descriptors (the limit here is 20,000 per process).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_clients_reconnect_at_once_after_a_restart() -> Result<()> {
    let _alone = HEAVY.write().await;
    let n = storm_clients();
    let started = Instant::now();
    let config =
        std::env::temp_dir().join(format!("switchboard-faults-{}.toml", std::process::id()));
    std::fs::write(
        &config,
        format!(
            "[limits]\nmax_connections = {}\nmax_pending_negotiations = {}\n",
            n + 1000,
            n + 1000
        ),
    )?;
    let (mut broker, base) = spawn_broker("127.0.0.1:0", &config).await?;
    let port = base.rsplit(':').next().context("port")?.to_owned();
    let counters = Arc::new(StormCounters::default());
    let mut tasks = Vec::with_capacity(n);
    for i in 0..n {
        let url = format!(
            "{}/client/?hub=storm&access_token={}",
            base.replacen("http", "ws", 1),
            client_token(common::TEST_KEY, "storm", Some(&format!("storm-{i}")))
        );
        tasks.push(tokio::spawn(storm_client(
            url,
            counters.clone(),
            i as u64 + 1,
        )));
        // Connect the first generation in waves of 500, to measure the reconnect, not this.
        if i % 500 == 499 {
            let want = i + 1;
            wait_until_counted("initial connections", &counters.connected[0], want).await?;
        }
    }
    wait_until_counted("initial connections", &counters.connected[0], n).await?;
    let connected_at = started.elapsed();
    let rest = Rest::new(&base, common::TEST_KEY);
    rest.broadcast("storm", "hello", json!([0])).await;
    wait_until_counted("the first broadcast", &counters.greeted[0], n).await?;
    assert_eq!(connections_gauge(&base).await?, n as u64);

    broker.start_kill().context("SIGKILL the broker")?;
    broker.wait().await?;
    wait_until_counted("every client to notice", &counters.dropped, n).await?;

    let restart = Instant::now();
    let (_broker2, base2) = spawn_broker(&format!("127.0.0.1:{port}"), &config).await?;
    assert_eq!(base2, base, "restarted on the same port");
    wait_until_counted("every client to reconnect", &counters.connected[1], n).await?;
    let reconnected_in = restart.elapsed();
    assert_eq!(connections_gauge(&base).await?, n as u64);
    rest.broadcast("storm", "hello", json!([1])).await;
    wait_until_counted("the broadcast after the restart", &counters.greeted[1], n).await?;
    assert_eq!(
        counters.dropped.load(Ordering::SeqCst),
        n,
        "nobody dropped twice"
    );
    eprintln!(
        "restart test: {n} clients connected in {connected_at:?} ({} attempts, {} failed); \
         after the restart all reconnected in {reconnected_in:?} ({} attempts since the kill, \
         {} refused or failed: {:?}); total {:?}",
        counters.attempts[0].load(Ordering::SeqCst),
        counters.failed[0].load(Ordering::SeqCst),
        counters.attempts[1].load(Ordering::SeqCst),
        counters.failed[1].load(Ordering::SeqCst),
        counters
            .failures
            .lock()
            .map(|k| k.clone())
            .unwrap_or_default(),
        started.elapsed()
    );
    for task in tasks {
        task.abort();
    }
    let _ = std::fs::remove_file(&config);
    Ok(())
}

/// Poll `counter` until it reaches `want` (at most 120 s).
async fn wait_until_counted(what: &str, counter: &AtomicUsize, want: usize) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let got = counter.load(Ordering::SeqCst);
        if got >= want {
            return Ok(());
        }
        ensure!(
            Instant::now() < deadline,
            "{what}: {got} of {want} after 120 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// 5. A flood of one-byte frames
// ---------------------------------------------------------------------------------------------

/// Bytes of the flooder's message (`SWITCHBOARD_FAULTS_FLOOD_BYTES`, default 200,000), each
/// sent as its own one-byte WebSocket text frame.
fn flood_bytes() -> usize {
    std::env::var("SWITCHBOARD_FAULTS_FLOOD_BYTES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000)
}

/// One client sends a blocking JSON invocation of about 200 KB as one-byte WebSocket text
/// frames (after 2,000 Ping records sent the same way), while four other clients receive a steady
/// numbered REST broadcast stream. The others receive every message exactly once and in order;
/// the flooder is served (its invocation gets its Completion) or closed with a reason — a
/// silent close fails the test. The others' largest gap between two messages is printed, not
/// asserted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_one_byte_frames_does_not_cost_other_connections_a_message() -> Result<()> {
    let _alone = HEAVY.write().await;
    let (sb, base, key) = start_with(common::config(ServiceMode::Serverless)).await;
    let mut receivers = Vec::new();
    for i in 0..4 {
        let token = client_token(&key, "flood", Some(&format!("r{i}")));
        let client = TestClient::connect(&base, "flood", &token, "json").await?;
        receivers.push(tokio::spawn(receive_ticks(client)));
    }

    // The steady stream, until the flood is over. A REST call that fails ends it with the
    // error (the broker dropped someone else's request).
    let flooding = Arc::new(AtomicBool::new(true));
    let mut streamer = tokio::spawn(stream_ticks(Rest::new(&base, &key), flooding.clone()));

    let ws = common::ws::connect_json(&base, &key, "flood", Some("flooder"))
        .await
        .0;
    let started = Instant::now();
    let mut flooder = tokio::spawn(flood(ws));
    // The flood runs until the flooder is served or closed; a failed REST call ends it early.
    let (frames, sent_in, send_error, outcome) = tokio::select! {
        flooded = &mut flooder => flooded?,
        stream = &mut streamer => {
            flooder.abort();
            bail!("the stream ended during the flood: {:?}", stream?);
        }
    };
    let served_in = started.elapsed();
    flooding.store(false, Ordering::SeqCst);
    let ticks = tokio::time::timeout(Duration::from_secs(60), streamer).await???;

    let mut max_gap = Duration::ZERO;
    for receiver in receivers {
        let (got, gap) = tokio::time::timeout(Duration::from_secs(60), receiver).await???;
        let mut want: Vec<Value> = (0..ticks).map(|k| json!(k)).collect();
        want.push(json!("end"));
        assert_eq!(
            got.len(),
            want.len(),
            "a receiver lost or repeated a message"
        );
        assert_eq!(got, want, "a receiver got the stream out of order");
        max_gap = max_gap.max(gap);
    }
    eprintln!(
        "flood test: {frames} one-byte frames sent in {sent_in:?} ({send_error:?}), flooder \
         {outcome} after {served_in:?}; {ticks} broadcasts meanwhile, the receivers' largest gap \
         between two messages {max_gap:?}"
    );
    assert!(
        outcome.starts_with("served") || outcome.starts_with("closed with"),
        "the flooder was {outcome}"
    );
    sb.stop().await;
    Ok(())
}

/// Broadcast `tick(0)`, `tick(1)`, … to hub `flood` every 5 ms while `flooding`, then
/// `tick("end")`; returns how many numbered ticks were sent, or the first REST call that failed.
async fn stream_ticks(rest: Rest, flooding: Arc<AtomicBool>) -> Result<i64> {
    let path = "/api/hubs/flood/:send";
    let url = format!("{}{path}?api-version=2022-06-01", rest.base);
    let mut k = 0i64;
    loop {
        let arg = if flooding.load(Ordering::SeqCst) {
            json!(k)
        } else {
            json!("end")
        };
        let answer = rest
            .http
            .post(&url)
            .bearer_auth(common::rest_token(&rest.key, path))
            .json(&json!({"target": "tick", "arguments": [arg]}))
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("REST broadcast {arg} failed: {e:?}"))?;
        ensure!(
            answer.status().as_u16() == 202,
            "REST broadcast {arg} answered {}",
            answer.status()
        );
        if arg == json!("end") {
            return Ok(k);
        }
        k += 1;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Read `tick` broadcasts until `"end"`: their arguments, and the longest wait between two.
async fn receive_ticks(mut client: TestClient) -> Result<(Vec<Value>, Duration)> {
    let mut got = Vec::new();
    let mut last = Instant::now();
    let mut max_gap = Duration::ZERO;
    loop {
        let msg = client
            .next_message(Duration::from_secs(120))
            .await
            .with_context(|| format!("after {} ticks", got.len()))?;
        ensure!(msg["target"] == json!("tick"), "unexpected message {msg}");
        let now = Instant::now();
        if !got.is_empty() {
            max_gap = max_gap.max(now - last);
        }
        last = now;
        let arg = msg["arguments"][0].clone();
        let end = arg == json!("end");
        got.push(arg);
        if end {
            return Ok((got, max_gap));
        }
    }
}

/// Send 2,000 Ping records and then a blocking invocation of `Flood` with a
/// [`flood_bytes`]-long string, one byte per WebSocket text frame; then wait for the flooder's
/// fate ([`flood_outcome`]). Returns the frames sent, how long sending took, the send error if
/// any, and the outcome.
async fn flood(mut ws: common::ws::Ws) -> (usize, Duration, Option<String>, String) {
    let started = Instant::now();
    let mut bytes = Vec::new();
    for _ in 0..2_000 {
        bytes.extend_from_slice(b"{\"type\":6}\x1e");
    }
    let filler = "x".repeat(flood_bytes());
    bytes.extend_from_slice(&json_invocation(Some("flood"), "Flood", json!([filler])));
    let mut frames = 0usize;
    let mut send_error = None;
    for &byte in &bytes {
        if let Err(e) = ws.feed(Message::text(char::from(byte).to_string())).await {
            send_error = Some(e.to_string());
            break;
        }
        frames += 1;
        if frames.is_multiple_of(1024)
            && let Err(e) = ws.flush().await
        {
            send_error = Some(e.to_string());
            break;
        }
    }
    if send_error.is_none()
        && let Err(e) = ws.flush().await
    {
        send_error = Some(e.to_string());
    }
    let sent_in = started.elapsed();
    (frames, sent_in, send_error, flood_outcome(&mut ws).await)
}

/// What happened to the flooder: `served: <completion>`, `closed with <reason>` or what else.
async fn flood_outcome(ws: &mut common::ws::Ws) -> String {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let frame = match tokio::time::timeout(left, ws.next()).await {
            Err(_) => return "neither served nor closed".to_owned(),
            Ok(None) => return "closed without a Close frame".to_owned(),
            Ok(Some(Err(e))) => return format!("dropped ({e})"),
            Ok(Some(Ok(frame))) => frame,
        };
        match frame {
            Message::Text(text) => {
                for record in text.split('\x1e').filter(|r| !r.is_empty()) {
                    let Ok(msg) = serde_json::from_str::<Value>(record) else {
                        return format!("sent a bad record {record:?}");
                    };
                    match msg["type"].as_i64() {
                        Some(3) if msg["invocationId"] == json!("flood") => {
                            return format!("served: {msg}");
                        }
                        Some(7) if msg["error"].as_str().is_some_and(|e| !e.is_empty()) => {
                            return format!("closed with {msg}");
                        }
                        Some(7) => return format!("closed without a reason: {msg}"),
                        _ => {}
                    }
                }
            }
            Message::Close(frame) => return format!("closed silently (close frame {frame:?})"),
            _ => {}
        }
    }
}
