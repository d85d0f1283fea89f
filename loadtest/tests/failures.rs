//! A failing run says so: the real binary as a child process, against nothing (a port where
//! nothing listens) or an in-process broker with another access key. It stops early, exits 1,
//! names the errors by kind (in the output and in `--json-out`), and a usage error is one short
//! message with exit code 2, never a backtrace. `--connection-string` points it at a broker.
//! No timing is asserted: only that runs of `--duration 300` end (within a generous wait).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use switchboard::{Config, ServiceMode, Switchboard, SwitchboardHandle};

const KEY: &str = "loadtest-failures-access-key-0123456789ABCDEFGHIJ";
const WRONG_KEY: &str = "not-the-brokers-key-0123456789ABCDEFGHIJKLMNOP";
const EXE: &str = env!("CARGO_BIN_EXE_switchboard-loadtest");
/// How long a run of `--duration 300` may take to give up (it should take about a second).
const GIVE_UP: Duration = Duration::from_secs(120);

fn start() -> (SwitchboardHandle, String) {
    start_in(ServiceMode::Serverless)
}

fn start_in(mode: ServiceMode) -> (SwitchboardHandle, String) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let config = Config {
        mode,
        listen: listener.local_addr().expect("local addr"),
        access_keys: vec![KEY.to_owned()],
        workers: 2,
        ..Config::default()
    };
    let handle = Switchboard::new(config)
        .expect("valid config")
        .start(listener)
        .expect("start switchboard");
    let url = format!("http://{}", handle.local_addr());
    (handle, url)
}

/// A URL where nothing listens: a port that was just free.
fn nothing_listens() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let port = listener.local_addr().expect("local addr").port();
    drop(listener);
    format!("http://127.0.0.1:{port}")
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sb-loadtest-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// Runs the generator with `args` and `env` (off the runtime's threads: the broker runs on
/// them), killing it after [`GIVE_UP`].
async fn generator(args: Vec<String>, env: Vec<(String, String)>) -> Output {
    tokio::task::spawn_blocking(move || {
        let mut child = Command::new(EXE)
            .args(&args)
            .env_remove("SWITCHBOARD_CONNECTION_STRING")
            .envs(env)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run switchboard-loadtest");
        let until = Instant::now() + GIVE_UP;
        while child.try_wait().expect("wait").is_none() {
            if Instant::now() > until {
                let _ = child.kill();
                let out = child.wait_with_output().expect("output");
                panic!(
                    "still running after {GIVE_UP:?}: {args:?}\n{}\n{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        child.wait_with_output().expect("output")
    })
    .await
    .expect("join")
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| (*s).to_owned()).collect()
}

fn text(out: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).expect("read JSON")).expect("JSON")
}

/// The run failed: exit code 1, and stderr's last line is `switchboard-loadtest: <why>`.
fn assert_failed(out: &Output) -> String {
    let all = text(out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    let err = stderr(out);
    let last = err.lines().last().unwrap_or_default();
    assert!(last.starts_with("switchboard-loadtest: "), "{all}");
    assert!(!err.to_lowercase().contains("backtrace"), "{all}");
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_listening_stops_early_with_connection_refused() {
    let url = nothing_listens();
    let dir = temp_dir("refused");
    // Receivers first (the connect phase), S2's connect loop (the watch), and receivers in
    // worker processes (their errors by kind reach the parent's report).
    for (name, scenario) in [
        ("s4", &["--connections", "20", "s4-broadcast"][..]),
        ("s2", &["--connections", "1000000", "s2-connect"]),
        (
            "s1-workers",
            &["--connections", "6", "--workers", "2", "s1-hold"],
        ),
    ] {
        let out_file = dir.join(format!("{name}.json"));
        let mut args = strings(&["--url", &url, "--key", KEY, "--quiet", "--duration", "300"]);
        args.extend(strings(&["--json-out", out_file.to_str().expect("utf-8")]));
        args.extend(strings(scenario));
        let out = generator(args, Vec::new()).await;
        let all = assert_failed(&out);
        assert!(all.contains("connection refused"), "{all}");
        assert!(all.contains(&url), "the URL is named: {all}");
        assert!(all.contains("no connection came up"), "{all}");
        let r = json(&out_file);
        let refused = r["error_kinds"]["connection_refused"]["count"]
            .as_u64()
            .unwrap_or(0);
        assert!(refused > 0, "{name}: {r}");
        assert_eq!(r["errors"].as_u64(), Some(refused), "{name}: {r}");
        assert!(
            r["error_kinds"]["connection_refused"]["first"]
                .as_str()
                .is_some_and(|f| f.contains(&url)),
            "{name}: {r}"
        );
        assert_eq!(r["stopped_early"], true, "{name}: {r}");
        assert!(
            r["failure"]
                .as_str()
                .is_some_and(|f| f.contains("no connection came up")),
            "{name}: {r}"
        );
        assert_eq!(r["connected"], 0, "{name}: {r}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_key_is_unauthorized_with_the_brokers_message() {
    let (handle, url) = start();
    let dir = temp_dir("unauthorized");
    // The WebSocket upgrade (no negotiate) and negotiate (S2) both answer 401.
    for (name, scenario) in [
        ("s4", &["--connections", "10", "s4-broadcast"][..]),
        ("s2", &["--connections", "1000000", "s2-connect"]),
    ] {
        let out_file = dir.join(format!("{name}.json"));
        let mut args = strings(&["--url", &url, "--key", WRONG_KEY, "--quiet"]);
        args.extend(strings(&["--duration", "300", "--json-out"]));
        args.push(out_file.to_str().expect("utf-8").to_owned());
        args.extend(strings(scenario));
        let out = generator(args, Vec::new()).await;
        let all = assert_failed(&out);
        assert!(all.contains("401"), "{all}");
        assert!(all.contains("unauthorized"), "{all}");
        // The broker's own words (its JSON error body).
        assert!(
            all.contains("the token is not signed with any of this broker's access keys"),
            "{all}"
        );
        assert!(all.contains("--key"), "what to check: {all}");
        let r = json(&out_file);
        assert!(
            r["error_kinds"]["unauthorized"]["count"]
                .as_u64()
                .is_some_and(|n| n > 0),
            "{name}: {r}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
    handle.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_dominating_a_running_scenario_stop_it() {
    // The receivers connect to the broker; the REST sends go where nothing listens.
    let (handle, url) = start();
    let refused = nothing_listens();
    let dir = temp_dir("dominate");
    let out_file = dir.join("s4.json");
    let args = strings(&[
        "--url",
        &refused,
        "--receiver-url",
        &url,
        "--key",
        KEY,
        "--quiet",
        "--connections",
        "5",
        "--duration",
        "300",
        "--json-out",
        out_file.to_str().expect("utf-8"),
        "s4-broadcast",
    ]);
    let out = generator(args, Vec::new()).await;
    let all = assert_failed(&out);
    assert!(all.contains("errors dominate"), "{all}");
    let r = json(&out_file);
    assert_eq!(r["connected"], 5, "{r}");
    assert_eq!(r["stopped_early"], true, "{r}");
    assert!(
        r["error_kinds"]["connection_refused"]["count"]
            .as_u64()
            .is_some_and(|n| n >= 10),
        "{r}"
    );
    let _ = std::fs::remove_dir_all(&dir);
    handle.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_connection_carries_the_brokers_reason() {
    // Default mode without an app server: the broker refuses every client, and says why.
    let (handle, url) = start_in(ServiceMode::Default);
    let args = strings(&[
        "--url",
        &url,
        "--key",
        KEY,
        "--quiet",
        "--hub",
        "echo",
        "--connections",
        "3",
        "--duration",
        "300",
        "s3-echo",
    ]);
    let out = generator(args, Vec::new()).await;
    let all = assert_failed(&out);
    assert!(
        all.contains("no connection came up (3 attempts: 3 "),
        "{all}"
    );
    assert!(all.contains("app servers are not connected"), "{all}");
    handle.stop().await;
}

/// A usage error: exit code 2, a short message on stderr, nothing on stdout, no backtrace.
fn assert_usage(out: &Output, says: &str) {
    let all = text(out);
    assert_eq!(out.status.code(), Some(2), "{all}");
    let err = stderr(out);
    assert!(!err.to_lowercase().contains("backtrace"), "{all}");
    assert!(!err.contains("panicked"), "{all}");
    assert!(err.contains(says), "{all}");
    assert!(err.lines().count() <= 6, "short: {all}");
    assert!(out.stdout.is_empty(), "{all}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_errors_are_short_and_exit_2() {
    let backtrace = vec![("RUST_BACKTRACE".to_owned(), "1".to_owned())];
    // No key (nor connection string): one line and the pointer to --help.
    let out = generator(
        strings(&["--url", "http://127.0.0.1:1", "s4-broadcast"]),
        backtrace.clone(),
    )
    .await;
    assert_usage(&out, "--key or --connection-string is required");
    let err = stderr(&out);
    assert_eq!(
        err.lines().next().unwrap_or_default(),
        "switchboard-loadtest: --key or --connection-string is required (the broker's access key)",
        "{err}"
    );
    assert_eq!(err.lines().count(), 2, "{err}");
    // A missing required argument (clap's own message).
    let out = generator(strings(&["merge"]), backtrace.clone()).await;
    assert_usage(&out, "required");
    // Out-of-range values and options that do not go together.
    for (args, says) in [
        (
            &["--key", "k", "--duration", "inf", "s1-hold"][..],
            "--duration",
        ),
        (
            &["--key", "k", "--url", "127.0.0.1:8080", "s1-hold"],
            "--url",
        ),
        (&["--key", "k", "--workers", "2", "s3-echo"], "--workers"),
        (
            &["--key", "k", "--report", "run.png", "s1-hold"],
            ".svg or .html",
        ),
        (&["--key", "k", "s4b-max", "--factor=-1"], "--factor"),
    ] {
        let out = generator(strings(args), backtrace.clone()).await;
        assert_usage(&out, says);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_string_points_at_the_broker() {
    let (handle, url) = start();
    let port = url.rsplit(':').next().expect("port").to_owned();
    let cs = format!("Endpoint=http://127.0.0.1;Port={port};AccessKey={KEY};Version=1.0;");
    let dir = temp_dir("connection-string");
    let run = [
        "--quiet",
        "--connections",
        "5",
        "--duration",
        "1",
        "--rate",
        "20",
    ];
    // On the command line, and from the environment.
    let out_file = dir.join("cs.json");
    let mut args = strings(&["--connection-string", &cs]);
    args.extend(strings(&run));
    args.extend(strings(&["--json-out", out_file.to_str().expect("utf-8")]));
    args.push("s4-broadcast".to_owned());
    let out = generator(args, Vec::new()).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let r = json(&out_file);
    assert_eq!(r["connected"], 5, "{r}");
    assert_eq!(r["errors"], 0, "{r}");
    assert_eq!(r["params"]["url"].as_str(), Some(url.as_str()), "{r}");
    assert!(r["failure"].is_null(), "{r}");
    let mut args = strings(&run);
    args.push("s4-broadcast".to_owned());
    let env = vec![("SWITCHBOARD_CONNECTION_STRING".to_owned(), cs.clone())];
    let out = generator(args, env).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    // An explicit --key overrides the string's: the broker says 401.
    let mut args = strings(&["--connection-string", &cs, "--key", WRONG_KEY]);
    args.extend(strings(&run));
    args.push("s4-broadcast".to_owned());
    let out = generator(args, Vec::new()).await;
    let all = assert_failed(&out);
    assert!(all.contains("401"), "{all}");
    // A string that does not parse: a usage error that does not repeat the string.
    for bad in [
        "not-a-connection-string-secret",
        "Endpoint=ftp://h;AccessKey=the-secret;",
    ] {
        let args = strings(&["--connection-string", bad, "s4-broadcast"]);
        let out = generator(args, vec![("RUST_BACKTRACE".to_owned(), "1".to_owned())]).await;
        assert_usage(&out, "switchboard-loadtest: --connection-string: ");
        let err = stderr(&out);
        assert!(!err.contains("secret"), "{err}");
        assert_eq!(err.lines().count(), 2, "{err}");
    }
    let _ = std::fs::remove_dir_all(&dir);
    handle.stop().await;
}
