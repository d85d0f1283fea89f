//! Receivers spread over several processes (each process may hold at most 20,000 open files).
//!
//! With `--workers N` (N > 0) the generator starts N copies of its own executable in the hidden
//! `worker` mode, each opening its share of the receivers; the parent only sends and
//! coordinates. The parent talks to each worker over its stdin / stdout, one line per command:
//!
//! | parent → worker | worker → parent |
//! | --- | --- |
//! | (start: `worker --spec <PoolSpec JSON>`) | `READY <connected>` once every receiver is up or failed |
//! | `CHECK <CheckRequest JSON>` | `SNAP <Snapshot JSON>` (counts, and latencies since the last check) |
//! | `SAMPLES` (only with `--report`) | `SAMPLES <[Sample] JSON>`: the worker's timeline, ended |
//! | `END` | `BYE` after closing every receiver, then exits |
//!
//! A worker whose stdin closes closes its receivers and exits; the parent kills workers it
//! still holds when dropped. Counts of all workers are summed and their histograms merged, so a
//! multi-process run reports exactly what a single-process one would.
//!
//! Without `--workers` (scenarios that keep their receivers in-process: S3, S3b, S5, S7, S9,
//! S11), several generator processes can still run side by side, each with its own share of
//! the connections and its own report, merged afterwards (counts summed, rates added, latency
//! percentiles the worst of the inputs):
//!
//! ```sh
//! L="switchboard-loadtest --url http://127.0.0.1:18081 --key KEY --quiet"
//! $L --connections 9500 --duration 600 --json-out a.json s1-hold &
//! $L --connections 9500 --duration 600 --json-out b.json s1-hold &
//! wait
//! switchboard-loadtest --json-out s1.json merge a.json b.json
//! ```
//!
//! (Receivers-only splits like this are exact for holds and for closed-loop scenarios, where
//! every process checks its own clients; for broadcasts use `--workers`, where one sender feeds
//! every process's receivers and each receiver knows what was sent.)

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::pool::{Expect, Pool, PoolSpec, Snapshot};
use crate::stats::Stats;
use crate::timeline::{self, Sample};

/// One `CHECK` command.
#[derive(Debug, Serialize, Deserialize)]
struct CheckRequest {
    expect: Expect,
    wait_ms: u64,
}

/// A worker process holding part of the receivers.
struct Remote {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::UnboundedReceiver<String>,
}

impl Remote {
    fn spawn(exe: &PathBuf, spec: &PoolSpec) -> Result<Self> {
        let mut child = Command::new(exe)
            .args(
                crate::tls::ca_file()
                    .map(|path| [std::ffi::OsStr::new("--ca-file"), path.as_os_str()])
                    .into_iter()
                    .flatten(),
            )
            .arg("worker")
            .arg("--spec")
            .arg(serde_json::to_string(spec)?)
            .args(timeline::recording().then_some("--timeline"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting worker {}", exe.display()))?;
        let stdout = child.stdout.take().context("worker stdout")?;
        let stdin = child.stdin.take();
        let (tx, lines) = mpsc::unbounded_channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Ok(Self {
            child,
            stdin,
            lines,
        })
    }

    fn send(&mut self, line: &str) -> Result<()> {
        let stdin = self.stdin.as_mut().context("worker stdin closed")?;
        stdin.write_all(line.as_bytes())?;
        stdin.write_all(b"\n")?;
        stdin.flush()?;
        Ok(())
    }

    /// The payload of the next line starting with `word`.
    async fn expect(&mut self, word: &str) -> Result<String> {
        loop {
            let Some(line) = self.lines.recv().await else {
                bail!("a worker exited (waiting for {word})");
            };
            if let Some(rest) = line.strip_prefix(word) {
                return Ok(rest.trim().to_owned());
            }
        }
    }
}

impl Drop for Remote {
    fn drop(&mut self) {
        drop(self.stdin.take());
        if matches!(self.child.try_wait(), Ok(None)) {
            // Give it a moment to exit on its own (stdin closed), then kill it.
            for _ in 0..50 {
                std::thread::sleep(Duration::from_millis(20));
                if !matches!(self.child.try_wait(), Ok(None)) {
                    return;
                }
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Receivers in this process or spread over worker processes.
pub struct Fleet {
    local: Option<Pool>,
    remote: Vec<Remote>,
    connected: u64,
}

impl Fleet {
    /// Opens `spec.connections` receivers: here when `workers` is 0, else split evenly over
    /// `workers` processes started from `exe` (default: this executable).
    pub async fn open(
        spec: PoolSpec,
        workers: usize,
        exe: Option<&PathBuf>,
        stats: &Arc<Stats>,
    ) -> Result<Self> {
        Self::open_at(spec, workers, exe, stats, &[]).await
    }

    /// [`open`](Self::open), worker `w` connecting to `receiver_urls[w % n]` (all at
    /// `spec.url` when empty; more than one needs `workers`).
    pub async fn open_at(
        spec: PoolSpec,
        workers: usize,
        exe: Option<&PathBuf>,
        stats: &Arc<Stats>,
        receiver_urls: &[String],
    ) -> Result<Self> {
        if receiver_urls.len() > 1 && workers == 0 {
            anyhow::bail!("several --receiver-url need --workers (one process per node at least)");
        }
        let mut spec = spec;
        if let [one] = receiver_urls {
            spec.url = one.clone();
        }
        if workers == 0 {
            let pool = Pool::open(spec, stats.clone()).await?;
            let connected = pool.connected();
            return Ok(Self {
                local: Some(pool),
                remote: Vec::new(),
                connected,
            });
        }
        let exe = match exe {
            Some(e) => e.clone(),
            None => std::env::current_exe().context("the generator's own executable")?,
        };
        let mut remote = Vec::with_capacity(workers);
        let mut offset = spec.offset;
        for w in 0..workers {
            let share = spec.connections / workers + usize::from(w < spec.connections % workers);
            let part = PoolSpec {
                connections: share,
                offset,
                // Only the very first receiver may be special.
                first_recv_buffer: spec.first_recv_buffer.filter(|_| w == 0),
                url: match receiver_urls {
                    [] => spec.url.clone(),
                    urls => urls[w % urls.len()].clone(),
                },
                ..spec.clone()
            };
            offset += share;
            remote.push(Remote::spawn(&exe, &part)?);
        }
        let mut connected = 0;
        for r in &mut remote {
            let n: u64 = r.expect("READY").await?.parse().context("READY count")?;
            connected += n;
        }
        stats
            .connected
            .store(connected, std::sync::atomic::Ordering::Relaxed);
        stats
            .opened
            .fetch_add(connected, std::sync::atomic::Ordering::Relaxed);
        Ok(Self {
            local: None,
            remote,
            connected,
        })
    }

    /// Receivers that completed their handshake when the fleet opened.
    pub fn connected(&self) -> u64 {
        self.connected
    }

    /// The local pool (`None` when the receivers live in worker processes).
    pub fn local(&self) -> Option<&Pool> {
        self.local.as_ref()
    }

    /// [`Pool::check`] over every process, summed.
    pub async fn check(&mut self, expect: &Expect, wait: Duration) -> Result<Snapshot> {
        let line = format!(
            "CHECK {}",
            serde_json::to_string(&CheckRequest {
                expect: expect.clone(),
                wait_ms: wait.as_millis() as u64,
            })?
        );
        for r in &mut self.remote {
            r.send(&line)?;
        }
        let mut snap = match &self.local {
            Some(p) => p.check(expect, wait).await,
            None => Snapshot::default(),
        };
        for r in &mut self.remote {
            let part: Snapshot = serde_json::from_str(&r.expect("SNAP").await?)?;
            snap.absorb(&part);
        }
        Ok(snap)
    }

    /// Closes every receiver and ends the workers.
    pub async fn close(mut self) -> Result<()> {
        if let Some(p) = self.local.take() {
            p.close().await;
        }
        if timeline::recording() {
            for r in &mut self.remote {
                r.send("SAMPLES")?;
            }
            for r in &mut self.remote {
                let samples: Vec<Sample> = serde_json::from_str(&r.expect("SAMPLES").await?)
                    .context("a worker's SAMPLES")?;
                timeline::absorb(samples);
            }
        }
        for r in &mut self.remote {
            r.send("END")?;
        }
        for mut r in std::mem::take(&mut self.remote) {
            r.expect("BYE").await?;
            drop(r.stdin.take());
            let _ = tokio::task::spawn_blocking(move || {
                let _ = r.child.wait();
            })
            .await;
        }
        Ok(())
    }
}

/// The hidden `worker` mode: open the receivers of `spec`, then answer the parent's commands
/// on stdin until `END` (or stdin closes). With `record_timeline`, samples the receivers once a
/// second for the parent's `--report`.
pub async fn worker_main(spec: &str, record_timeline: bool) -> Result<()> {
    let spec: PoolSpec = serde_json::from_str(spec).context("worker spec")?;
    let stats = Arc::new(Stats::new());
    if record_timeline {
        timeline::start()?;
        timeline::watch_stats(&stats);
    }
    let pool = Pool::open(spec, stats).await?;
    let (tx, mut rx) = mpsc::unbounded_channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let out = |line: String| -> Result<()> {
        let mut stdout = std::io::stdout().lock();
        stdout.write_all(line.as_bytes())?;
        stdout.write_all(b"\n")?;
        stdout.flush()?;
        Ok(())
    };
    out(format!("READY {}", pool.connected()))?;
    while let Some(line) = rx.recv().await {
        if let Some(req) = line.strip_prefix("CHECK ") {
            let req: CheckRequest = serde_json::from_str(req).context("CHECK")?;
            let snap = pool
                .check(&req.expect, Duration::from_millis(req.wait_ms))
                .await;
            out(format!("SNAP {}", serde_json::to_string(&snap)?))?;
        } else if line.trim() == "SAMPLES" {
            out(format!(
                "SAMPLES {}",
                serde_json::to_string(&timeline::finish())?
            ))?;
        } else if line.trim() == "END" {
            break;
        }
    }
    pool.close().await;
    // The parent may be gone already.
    let _ = out("BYE".to_owned());
    Ok(())
}
