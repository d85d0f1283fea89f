//! The machine's raw ceilings (`docs/performance.md#raw-ceilings`), measured with plain TCP so
//! every result can be put as a share of them:
//!
//! - `raw-echo`: a single-threaded echo server in a child process and N closed-loop clients
//!   (one message in flight each) on one thread in this process; round trips/s.
//! - `raw-fanout`: one writer thread here writes a pre-built WebSocket frame to N sockets in
//!   turn, k frames per `write()`; a drain child process reads them on one thread and counts the
//!   bytes; frames/s measured at the receivers.
//!
//! Server and load live in two processes, so each holds N sockets (the 20,000-fd cap allows
//! N ≈ 19.9k), and `--pin` puts them on CPU0 and CPU1 as the reference measurements did.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use switchboard_loadtest::stats::{Latency, Report, Stats};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::Semaphore;

use crate::procfs;

/// Options of `raw-echo`.
#[derive(clap::Args, Clone, Debug)]
pub(crate) struct EchoArgs {
    /// Client connections, one message in flight each.
    #[arg(long, default_value_t = 100)]
    pub(crate) connections: usize,
    /// Bytes per message.
    #[arg(long, default_value_t = 100)]
    pub(crate) bytes: usize,
    /// Seconds measured (after the warm-up).
    #[arg(long, default_value_t = 5.0)]
    pub(crate) duration: f64,
    /// Seconds of warm-up.
    #[arg(long, default_value_t = 1.0)]
    pub(crate) warmup: f64,
    /// Server threads (1 = a single-threaded event loop, as in the reference echo measurement).
    #[arg(long, default_value_t = 1)]
    pub(crate) server_threads: usize,
    /// Pin the server to CPU0 and the clients to CPU1 (taskset).
    #[arg(long)]
    pub(crate) pin: bool,
    /// Write the report as JSON to this file.
    #[arg(long)]
    pub(crate) json_out: Option<PathBuf>,
}

/// Options of `raw-fanout`.
#[derive(clap::Args, Clone, Debug)]
pub(crate) struct FanoutArgs {
    /// Receiving sockets.
    #[arg(long, default_value_t = 10_000)]
    pub(crate) connections: usize,
    /// Bytes per frame, WebSocket header included.
    #[arg(long, default_value_t = 100)]
    pub(crate) frame_bytes: usize,
    /// Frames per write() to measure, one run each (1 = unbatched).
    #[arg(long, value_delimiter = ',', default_value = "1,8")]
    pub(crate) batches: Vec<usize>,
    /// Seconds measured per batch size (after the warm-up).
    #[arg(long, default_value_t = 5.0)]
    pub(crate) duration: f64,
    /// Seconds of warm-up per batch size.
    #[arg(long, default_value_t = 1.0)]
    pub(crate) warmup: f64,
    /// Connections opened concurrently by the drain.
    #[arg(long, default_value_t = 200)]
    pub(crate) parallel: usize,
    /// Pin the writer to CPU0 and the drain to CPU1 (taskset).
    #[arg(long)]
    pub(crate) pin: bool,
    /// Write the report as JSON to this file.
    #[arg(long)]
    pub(crate) json_out: Option<PathBuf>,
}

/// A child process of this binary, killed when dropped.
struct Helper {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Helper {
    /// Starts `switchboard-peers <args>` with piped stdin/stdout.
    fn spawn(args: &[String]) -> Result<Self> {
        let exe = std::env::current_exe().context("locating this binary")?;
        let mut child = Command::new(exe)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting the helper process")?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            bail!("helper without pipes");
        };
        Ok(Self {
            child,
            stdin,
            stdout: BufReader::new(stdout),
        })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The next line the helper prints.
    fn line(&mut self) -> Result<String> {
        let mut s = String::new();
        if self.stdout.read_line(&mut s)? == 0 {
            bail!("the helper process exited");
        }
        Ok(s.trim().to_owned())
    }

    /// Sends one command line and reads the answer.
    fn ask(&mut self, cmd: &str) -> Result<String> {
        writeln!(self.stdin, "{cmd}")?;
        self.stdin.flush()?;
        self.line()
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Pins every thread of `pid` to `cpu`.
fn pin(pid: u32, cpu: usize) -> Result<()> {
    let st = Command::new("taskset")
        .args(["-a", "-p", "-c", &cpu.to_string(), &pid.to_string()])
        .stdout(Stdio::null())
        .status()
        .context("running taskset")?;
    if !st.success() {
        bail!("taskset failed for pid {pid}");
    }
    Ok(())
}

/// Exits this (helper) process when its parent closes stdin; answers `mark` with `counter`.
fn serve_stdin(counter: Option<Arc<AtomicU64>>) {
    std::thread::spawn(move || {
        let stdin = std::io::stdin();
        for line in stdin.lock().lines() {
            let Ok(line) = line else { break };
            if line.trim() == "mark" {
                let v = counter.as_ref().map_or(0, |c| c.load(Ordering::Relaxed));
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "{v}");
                let _ = out.flush();
            }
        }
        std::process::exit(0);
    });
}

fn announce(line: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")?;
    out.flush()?;
    Ok(())
}

/// Writes all of `buf` on a non-blocking socket.
async fn write_all(s: &TcpStream, mut buf: &[u8]) -> std::io::Result<()> {
    while !buf.is_empty() {
        match s.try_write(buf) {
            Ok(n) => buf = &buf[n..],
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => s.writable().await?,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Reads exactly `buf.len()` bytes; `false` at end of stream.
async fn read_exact(s: &TcpStream, buf: &mut [u8]) -> std::io::Result<bool> {
    let mut got = 0;
    while got < buf.len() {
        match s.try_read(&mut buf[got..]) {
            Ok(0) => return Ok(false),
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => s.readable().await?,
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

fn runtime(threads: usize) -> Result<tokio::runtime::Runtime> {
    Ok(if threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()?
    })
}

async fn listener(backlog: u32) -> Result<TcpListener> {
    let s = TcpSocket::new_v4()?;
    s.set_reuseaddr(true)?;
    s.bind("127.0.0.1:0".parse()?)?;
    Ok(s.listen(backlog)?)
}

/// Hidden `raw-echo-server`: prints `port N`, echoes every connection until stdin closes.
pub(crate) fn echo_server(threads: usize) -> Result<()> {
    serve_stdin(None);
    runtime(threads)?.block_on(async {
        let l = listener(4096).await?;
        announce(&format!("port {}", l.local_addr()?.port()))?;
        loop {
            let (s, _) = l.accept().await?;
            let _ = s.set_nodelay(true);
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                loop {
                    match s.try_read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => {
                            if write_all(&s, &buf[..n]).await.is_err() {
                                break;
                            }
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                            if s.readable().await.is_err() {
                                break;
                            }
                        }
                        Err(_) => break,
                    }
                }
            });
        }
    })
}

fn cpu_total(pid: u32) -> Option<(u64, u64)> {
    procfs::cpu_us(pid)
}

/// `raw-echo`: round trips/s of N closed-loop clients against a single-threaded echo server.
pub(crate) fn echo(a: &EchoArgs) -> Result<Report> {
    procfs::check_nofile(a.connections as u64 + 64);
    let mut server = Helper::spawn(&[
        "raw-echo-server".to_owned(),
        "--threads".to_owned(),
        a.server_threads.to_string(),
    ])?;
    let port: u16 = server
        .line()?
        .strip_prefix("port ")
        .and_then(|p| p.parse().ok())
        .context("the echo server did not announce its port")?;
    let rt = runtime(1)?;
    if a.pin {
        pin(server.pid(), 0)?;
        pin(std::process::id(), 1)?;
    }
    let stats = Arc::new(Stats::new());
    let (measuring, stop) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicBool::new(false)),
    );
    let (secs, cpu) = rt.block_on(async {
        let mut tasks = Vec::with_capacity(a.connections);
        for i in 0..a.connections {
            let s = TcpStream::connect(("127.0.0.1", port)).await?;
            s.set_nodelay(true)?;
            let (stats, measuring, stop) = (stats.clone(), measuring.clone(), stop.clone());
            let msg = vec![b'x'; a.bytes.max(1)];
            tasks.push(tokio::spawn(async move {
                let mut buf = vec![0u8; msg.len()];
                while !stop.load(Ordering::Relaxed) {
                    let t0 = Instant::now();
                    let ok = write_all(&s, &msg).await.is_ok()
                        && read_exact(&s, &mut buf).await.unwrap_or(false);
                    if !ok {
                        stats.errors.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                    if measuring.load(Ordering::Relaxed) {
                        stats.received.fetch_add(1, Ordering::Relaxed);
                        stats.record_us(i, t0.elapsed().as_micros() as u64);
                    }
                }
            }));
        }
        stats
            .connected
            .store(a.connections as u64, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_secs_f64(a.warmup.max(0.0))).await;
        let (c0, t0) = (cpu_total(server.pid()), Instant::now());
        measuring.store(true, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_secs_f64(a.duration.max(0.1))).await;
        measuring.store(false, Ordering::Relaxed);
        let (c1, secs) = (cpu_total(server.pid()), t0.elapsed().as_secs_f64());
        stop.store(true, Ordering::Relaxed);
        for t in tasks {
            let _ = tokio::time::timeout(Duration::from_secs(2), t).await;
        }
        anyhow::Ok((secs, c0.zip(c1)))
    })?;
    drop(server);
    let n = stats.received.load(Ordering::Relaxed);
    let mut r = Report {
        scenario: "raw-echo".to_owned(),
        params: serde_json::json!({
            "connections": a.connections, "bytes": a.bytes, "duration": a.duration,
            "warmup": a.warmup, "server_threads": a.server_threads, "client_threads": 1,
            "pinning": if a.pin { "server CPU0, clients CPU1" } else { "none" },
        }),
        seconds: secs,
        connected: a.connections as u64,
        dropped: 0,
        sent: n,
        expected: n,
        received: n,
        lost: 0,
        duplicates: 0,
        errors: stats.errors.load(Ordering::Relaxed),
        error_kinds: Default::default(),
        failure: None,
        stopped_early: false,
        latency: Latency::of(&stats.histogram()),
        extra: serde_json::Map::new(),
        samples: Vec::new(),
    };
    r.extra.insert(
        "round_trips_per_second".into(),
        (n as f64 / secs.max(1e-9)).into(),
    );
    if let Some(((u0, s0), (u1, s1))) = cpu {
        let per = |d: u64| d as f64 / n.max(1) as f64;
        r.extra.insert(
            "server_cpu_us_per_round_trip".into(),
            per(u1 + s1 - u0 - s0).into(),
        );
        r.extra.insert(
            "server_system_cpu_us_per_round_trip".into(),
            per(s1 - s0).into(),
        );
        r.extra.insert(
            "server_cpu_percent".into(),
            ((u1 + s1 - u0 - s0) as f64 / secs.max(1e-9) / 1e4).into(),
        );
    }
    Ok(r)
}

/// Hidden `raw-fanout-drain`: connects `n` sockets to `addr`, prints `ready N`, then counts the
/// bytes they receive; answers `mark` on stdin with the count.
pub(crate) fn fanout_drain(addr: &str, n: usize, parallel: usize) -> Result<()> {
    let total = Arc::new(AtomicU64::new(0));
    runtime(1)?.block_on(async {
        let sem = Arc::new(Semaphore::new(parallel.max(1)));
        let up = Arc::new(AtomicU64::new(0));
        let settled = Arc::new(AtomicU64::new(0));
        for _ in 0..n {
            let permit = sem.clone().acquire_owned().await?;
            let (addr, total, up, settled) =
                (addr.to_owned(), total.clone(), up.clone(), settled.clone());
            tokio::spawn(async move {
                let s = TcpStream::connect(addr.as_str()).await;
                drop(permit);
                settled.fetch_add(1, Ordering::Relaxed);
                let Ok(s) = s else { return };
                up.fetch_add(1, Ordering::Relaxed);
                let mut buf = vec![0u8; 4096];
                loop {
                    match s.try_read(&mut buf) {
                        Ok(0) => break,
                        Ok(k) => {
                            total.fetch_add(k as u64, Ordering::Relaxed);
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                            if s.readable().await.is_err() {
                                break;
                            }
                        }
                        Err(_) => break,
                    }
                }
            });
        }
        while settled.load(Ordering::Relaxed) < n as u64 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        announce(&format!("ready {}", up.load(Ordering::Relaxed)))?;
        serve_stdin(Some(total.clone()));
        std::future::pending::<()>().await;
        anyhow::Ok(())
    })
}

/// An unmasked binary WebSocket frame of `total` bytes, header included.
pub(crate) fn ws_frame(total: usize) -> Vec<u8> {
    let header = if total <= 125 + 2 {
        2
    } else if total <= 0xFFFF + 4 {
        4
    } else {
        10
    };
    let len = total.max(header) - header;
    let mut f = Vec::with_capacity(header + len);
    f.push(0x82);
    match header {
        2 => f.push(len as u8),
        4 => {
            f.push(126);
            f.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            f.push(127);
            f.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
    f.resize(header + len, b'x');
    f
}

/// Counters at one end of a raw fan-out measurement window.
struct Mark {
    /// Bytes the drain had received.
    bytes: u64,
    at: Instant,
    /// Writes issued by the writer.
    writes: u64,
    writer_cpu: Option<(u64, u64)>,
    drain_cpu: Option<(u64, u64)>,
}

impl Mark {
    fn take(drain: &mut Helper, writes: u64) -> Result<Self> {
        let bytes = drain.ask("mark")?.parse()?;
        Ok(Self {
            bytes,
            at: Instant::now(),
            writes,
            writer_cpu: cpu_total(std::process::id()),
            drain_cpu: cpu_total(drain.pid()),
        })
    }

    /// The figures of the window from `self` to `end`, `k` frames of `frame_len` B per write.
    fn variant(&self, end: &Self, k: usize, frame_len: u64) -> serde_json::Value {
        let secs = end.at.duration_since(self.at).as_secs_f64().max(1e-9);
        let frames = end.bytes.saturating_sub(self.bytes) / frame_len;
        let cpu = |c0: Option<(u64, u64)>, c1: Option<(u64, u64)>| {
            c0.zip(c1)
                .map(|((u0, s0), (u1, s1))| (u1 + s1).saturating_sub(u0 + s0) as f64 / secs / 1e4)
        };
        serde_json::json!({
            "frames_per_write": k,
            "seconds": secs,
            "frames_delivered": frames,
            "frames_per_second": frames as f64 / secs,
            "writes_per_second": end.writes.saturating_sub(self.writes) as f64 / secs,
            "writer_cpu_percent": cpu(self.writer_cpu, end.writer_cpu),
            "drain_cpu_percent": cpu(self.drain_cpu, end.drain_cpu),
        })
    }
}

/// `raw-fanout`: frames/s delivered to N sockets by one writer thread, per batch size.
pub(crate) fn fanout(a: &FanoutArgs) -> Result<Report> {
    procfs::check_nofile(a.connections as u64 + 64);
    let rt = runtime(1)?;
    let frame = ws_frame(a.frame_bytes);
    let frame_len = frame.len() as u64;
    let (streams, mut drain, accepted) = rt.block_on(async {
        let l = listener(4096).await?;
        let addr = l.local_addr()?.to_string();
        let drain = Helper::spawn(&[
            "raw-fanout-drain".to_owned(),
            "--addr".to_owned(),
            addr,
            "--connections".to_owned(),
            a.connections.to_string(),
            "--parallel".to_owned(),
            a.parallel.to_string(),
        ])?;
        let mut streams = Vec::with_capacity(a.connections);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while streams.len() < a.connections {
            match tokio::time::timeout_at(deadline, l.accept()).await {
                Ok(Ok((s, _))) => {
                    s.set_nodelay(true)?;
                    streams.push(s);
                }
                Ok(Err(e)) => bail!("accept: {e}"),
                Err(_) => break,
            }
        }
        let accepted = streams.len();
        anyhow::Ok((streams, drain, accepted))
    })?;
    let ready = drain.line()?;
    if !ready.starts_with("ready") {
        bail!("the drain answered {ready:?}");
    }
    if a.pin {
        pin(std::process::id(), 0)?;
        pin(drain.pid(), 1)?;
    }
    let mut variants = Vec::new();
    for &k in &a.batches {
        let k = k.max(1);
        let buf = frame.repeat(k);
        let warm = Duration::from_secs_f64(a.warmup.max(0.0));
        let dur = Duration::from_secs_f64(a.duration.max(0.1));
        let v = rt.block_on(async {
            let start = Instant::now();
            let mut first: Option<Mark> = None;
            let mut writes = 0u64;
            loop {
                for s in &streams {
                    write_all(s, &buf).await?;
                    writes += 1;
                }
                let now = Instant::now();
                match &first {
                    None if now >= start + warm => first = Some(Mark::take(&mut drain, writes)?),
                    Some(m0) if now >= m0.at + dur => {
                        let m1 = Mark::take(&mut drain, writes)?;
                        break anyhow::Ok(m0.variant(&m1, k, frame_len));
                    }
                    _ => {}
                }
            }
        })?;
        variants.push(v);
        // Let the drain empty the socket buffers before the next batch size.
        std::thread::sleep(Duration::from_millis(300));
    }
    drop(streams);
    drop(drain);
    let mut r = Report {
        scenario: "raw-fanout".to_owned(),
        params: serde_json::json!({
            "connections": a.connections, "frame_bytes": frame_len, "batches": a.batches,
            "duration": a.duration, "warmup": a.warmup, "writer_threads": 1, "drain_threads": 1,
            "pinning": if a.pin { "writer CPU0, drain CPU1" } else { "none" },
        }),
        seconds: a.duration * a.batches.len() as f64,
        connected: accepted as u64,
        dropped: 0,
        sent: 0,
        expected: 0,
        received: 0,
        lost: 0,
        duplicates: 0,
        errors: (a.connections - accepted) as u64,
        error_kinds: Default::default(),
        failure: None,
        stopped_early: false,
        latency: None,
        extra: serde_json::Map::new(),
        samples: Vec::new(),
    };
    for v in &variants {
        if let (Some(k), Some(fps)) = (
            v["frames_per_write"].as_u64(),
            v["frames_per_second"].as_f64(),
        ) {
            r.extra
                .insert(format!("frames_per_second_k{k}"), fps.into());
            r.received += v["frames_delivered"].as_u64().unwrap_or(0);
        }
    }
    r.extra.insert("variants".into(), variants.into());
    Ok(r)
}

/// The summary of a `raw-fanout` report: one line per batch size instead of the JSON list.
pub(crate) fn fanout_summary(r: &Report) -> String {
    let mut shown = r.clone();
    let variants = shown.extra.remove("variants");
    shown
        .extra
        .retain(|k, _| !k.starts_with("frames_per_second_k"));
    let mut s = shown.summary();
    for v in variants
        .as_ref()
        .and_then(serde_json::Value::as_array)
        .into_iter()
        .flatten()
    {
        let f = |k: &str| v.get(k).and_then(serde_json::Value::as_f64).unwrap_or(0.0);
        s.push_str(&format!(
            "  {:>3} frame(s) per write: {:>10.0} frames/s, {:>8.0} writes/s (writer CPU {:.0} %, drain CPU {:.0} %)\n",
            f("frames_per_write"),
            f("frames_per_second"),
            f("writes_per_second"),
            f("writer_cpu_percent"),
            f("drain_cpu_percent"),
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_have_the_requested_size() {
        let f = ws_frame(100);
        assert_eq!(f.len(), 100);
        assert_eq!(&f[..2], &[0x82, 98]);
        let f = ws_frame(127);
        assert_eq!((f.len(), f[1]), (127, 125));
        let f = ws_frame(2048);
        assert_eq!(f.len(), 2048);
        assert_eq!(&f[..4], &[0x82, 126, 0x07, 0xFC]);
        let f = ws_frame(70_000);
        assert_eq!(f.len(), 70_000);
        assert_eq!(f[1], 127);
        assert_eq!(ws_frame(0), vec![0x82, 0]);
    }
}
