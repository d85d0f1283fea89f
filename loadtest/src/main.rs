//! `switchboard-loadtest`: rough probes against a running Switchboard.
//!
//! - `hold`: open N WebSocket clients (token in the header, no negotiate), complete the JSON
//!   handshake, keep them for a while answering nothing, and report how many stayed up.
//! - `rest`: send REST messages (broadcast or to a user) from C concurrent keep-alive HTTP
//!   clients for S seconds and report requests per second and status counts.
//!
//! The full scenario suite (S1–S11 of the performance targets) comes with its own issue.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use futures_util::{SinkExt, StreamExt};
use switchboard::auth::AccessKeys;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "switchboard-loadtest",
    about = "Rough load probes for Switchboard"
)]
struct Cli {
    /// Broker base URL.
    #[arg(long, default_value = "http://127.0.0.1:8080", global = true)]
    url: String,
    /// Access key of the broker.
    #[arg(long, global = true, default_value = "")]
    key: String,
    /// Hub to use.
    #[arg(long, default_value = "load", global = true)]
    hub: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Hold N WebSocket connections.
    Hold {
        /// Connections to open.
        #[arg(long, default_value_t = 1000)]
        connections: usize,
        /// Seconds to hold them after the last one connected.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Connections opened concurrently.
        #[arg(long, default_value_t = 200)]
        parallel: usize,
    },
    /// Send REST messages as fast as C clients can.
    Rest {
        /// Concurrent HTTP clients.
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
        /// Seconds to run.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Send to this user (else broadcast).
        #[arg(long)]
        user: Option<String>,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    if cli.key.is_empty() {
        bail!("--key is required (the broker's access key)");
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        match cli.command {
            Command::Hold {
                connections,
                seconds,
                parallel,
            } => hold(&cli.url, &cli.key, &cli.hub, connections, seconds, parallel).await,
            Command::Rest {
                concurrency,
                seconds,
                user,
            } => rest(&cli.url, &cli.key, &cli.hub, concurrency, seconds, user).await,
        }
    })
}

fn audience_base(url: &str) -> String {
    switchboard::switchboard::audience_base(url)
}

async fn hold(
    url: &str,
    key: &str,
    hub: &str,
    n: usize,
    seconds: u64,
    parallel: usize,
) -> Result<()> {
    let keys = AccessKeys::new(vec![key.to_owned()]);
    let token = keys.mint(
        &format!("{}/client/?hub={hub}", audience_base(url)),
        3600,
        &[],
    );
    let ws_url = format!("{}/client/?hub={hub}", url.replacen("http", "ws", 1));
    let up = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let (done_tx, _) = tokio::sync::watch::channel(false);
    let sem = Arc::new(tokio::sync::Semaphore::new(parallel));
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(n);
    for _ in 0..n {
        let permit = sem.clone().acquire_owned().await?;
        let (ws_url, token, up, failed) =
            (ws_url.clone(), token.clone(), up.clone(), failed.clone());
        let mut done = done_tx.subscribe();
        tasks.push(tokio::spawn(async move {
            let conn = async {
                let mut req = ws_url.into_client_request()?;
                req.headers_mut().insert("Authorization", format!("Bearer {token}").parse()?);
                let config = WebSocketConfig::default().read_buffer_size(4096).write_buffer_size(0);
                let (mut ws, _) =
                    tokio_tungstenite::connect_async_with_config(req, Some(config), false).await?;
                ws.send(Message::text("{\"protocol\":\"json\",\"version\":1}\u{1e}")).await?;
                match ws.next().await {
                    Some(Ok(Message::Text(t))) if t.as_str() == "{}\u{1e}" => Ok(ws),
                    other => anyhow::bail!("bad handshake answer: {other:?}"),
                }
            };
            let Ok(mut ws) = conn.await else {
                failed.fetch_add(1, Ordering::Relaxed);
                return;
            };
            up.fetch_add(1, Ordering::Relaxed);
            drop(permit);
            loop {
                tokio::select! {
                    m = ws.next() => match m {
                        Some(Ok(_)) => {}
                        _ => { up.fetch_sub(1, Ordering::Relaxed); failed.fetch_add(1, Ordering::Relaxed); return; }
                    },
                    _ = done.changed() => { let _ = ws.close(None).await; return; }
                }
            }
        }));
    }
    while up.load(Ordering::Relaxed) + failed.load(Ordering::Relaxed) < n as u64 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ramp = start.elapsed();
    println!(
        "connected {} of {n} in {:.2}s ({:.0}/s), {} failed",
        up.load(Ordering::Relaxed),
        ramp.as_secs_f64(),
        up.load(Ordering::Relaxed) as f64 / ramp.as_secs_f64(),
        failed.load(Ordering::Relaxed)
    );
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    println!(
        "still connected after {seconds}s: {}",
        up.load(Ordering::Relaxed)
    );
    let _ = done_tx.send(true);
    for t in tasks {
        let _ = t.await;
    }
    Ok(())
}

async fn rest(
    url: &str,
    key: &str,
    hub: &str,
    concurrency: usize,
    seconds: u64,
    user: Option<String>,
) -> Result<()> {
    let keys = AccessKeys::new(vec![key.to_owned()]);
    let path = match &user {
        Some(u) => format!("/api/hubs/{hub}/users/{u}/:send"),
        None => format!("/api/hubs/{hub}/:send"),
    };
    let token = keys.mint(&format!("{}{path}", audience_base(url)), 3600, &[]);
    let full = format!("{url}{path}?api-version=2022-06-01");
    let body = r#"{"target":"load","arguments":["0123456789012345678901234567890123456789012345678901234567890123456789"]}"#;
    let ok = Arc::new(AtomicU64::new(0));
    let other = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()?;
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (client, full, token, ok, other) = (
            client.clone(),
            full.clone(),
            token.clone(),
            ok.clone(),
            other.clone(),
        );
        tasks.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                let r = client
                    .post(&full)
                    .bearer_auth(&token)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await;
                match r {
                    Ok(r) if r.status().as_u16() == 202 => ok.fetch_add(1, Ordering::Relaxed),
                    _ => other.fetch_add(1, Ordering::Relaxed),
                };
            }
        }));
    }
    for t in tasks {
        t.await.context("sender task")?;
    }
    let n = ok.load(Ordering::Relaxed);
    println!(
        "{n} REST sends accepted (202) in {seconds}s = {:.0}/s; {} other answers or errors",
        n as f64 / seconds as f64,
        other.load(Ordering::Relaxed)
    );
    Ok(())
}
