//! `switchboard-peers`: the peers Switchboard is compared with, driven with the same connection
//! counts, payload and rates as `switchboard-loadtest`, and the machine's raw ceilings
//! (`docs/performance.md`: raw ceilings, peers, ground rules). `scripts/bench/peers.sh` runs it
//! all.
//!
//! - `nchan-hold`, `socketio-hold`: hold N subscribers; connect time, drops, server RSS per
//!   connection (summed over the server processes).
//! - `nchan-broadcast`, `socketio-broadcast`: N subscribers, an HTTP publisher at `--rate`/s
//!   (one request at a time like `switchboard-loadtest s4-broadcast`, or `--publishers` in
//!   flight), or with `--max` rising steps until one fails (a drop, loss, duplicates, p99 ≥ 1 s,
//!   or the publisher fell behind); the subscribers stay connected across steps; latency from the
//!   µs timestamp in the payload, HDR p50/p99/p99.9; loss, duplicates and order per subscriber.
//! - `switchboard-broadcast`: the same against Switchboard with the same receivers (plain
//!   WebSockets speaking the JSON hub protocol), so that the servers alone are compared.
//! - `sb-broadcast`: the same steps against Switchboard through `switchboard-loadtest
//!   s4-broadcast`, judged by the same rule.
//! - `raw-echo`, `raw-fanout`: plain TCP echo and fan-out ceilings.
//! - `summarize`: medians and the Switchboard / peer table of a results directory.

mod eio;
mod payload;
mod procfs;
mod raw;
mod steps;
mod subs;
mod summary;

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};

use crate::subs::Peer;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Options of the peer subcommands.
#[derive(Args, Clone, Debug)]
pub(crate) struct PeerArgs {
    /// The peer's base URL (default: Nchan http://127.0.0.1:8081, socket.io http://127.0.0.1:3000).
    #[arg(long)]
    pub(crate) url: Option<String>,
    /// Nchan channel id (a fresh one per run by default).
    #[arg(long, default_value_t = default_channel())]
    pub(crate) channel: String,
    /// Subscriber connections.
    #[arg(long, default_value_t = 1000)]
    pub(crate) connections: usize,
    /// Seconds to hold (hold) or to publish per step (broadcast).
    #[arg(long, default_value_t = 10.0)]
    pub(crate) duration: f64,
    /// Padding bytes in each message's payload (as `switchboard-loadtest --payload-bytes`).
    #[arg(long, default_value_t = 100)]
    pub(crate) payload_bytes: usize,
    /// Connections opened concurrently during the ramp.
    #[arg(long, default_value_t = 200)]
    pub(crate) parallel: usize,
    /// Server process ids whose RSS and CPU time are reported (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub(crate) server_pid: Vec<u32>,
    /// Also report the children of this pid (nginx's workers under its master).
    #[arg(long)]
    pub(crate) server_children_of: Option<u32>,
    /// Switchboard's access key (tokens for its subscribers and its REST API).
    #[arg(long)]
    pub(crate) key: Option<String>,
    /// Write the report as JSON to this file.
    #[arg(long)]
    pub(crate) json_out: Option<PathBuf>,
    /// No progress output.
    #[arg(long)]
    pub(crate) quiet: bool,
}

fn default_channel() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    format!("bench-{}-{secs}", std::process::id())
}

/// Options of the broadcast subcommands.
#[derive(Args, Clone, Debug)]
pub(crate) struct BroadcastArgs {
    /// Broadcasts per second (one step).
    #[arg(long, default_value_t = 0.0)]
    pub(crate) rate: f64,
    /// Raise the rate through `--steps` until a step fails; report the highest passing one.
    #[arg(long)]
    pub(crate) max: bool,
    /// Steps of `--max` in deliveries/s (publish rate = step ÷ connections).
    #[arg(long, value_delimiter = ',', default_value = steps::DEFAULT_STEPS)]
    pub(crate) steps: Vec<f64>,
    /// Publish requests in flight at most (1 = each publish waits for the previous answer, the
    /// shape of `switchboard-loadtest s4-broadcast`; more lets a server that answers only after
    /// fanning out be published to at its scheduled rate, at the cost of ordering).
    #[arg(long, default_value_t = 1)]
    pub(crate) publishers: usize,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Hold `--connections` Nchan WebSocket subscribers for `--duration` s.
    NchanHold(PeerArgs),
    /// Broadcast through Nchan (POST /pub) to `--connections` WebSocket subscribers.
    NchanBroadcast {
        #[command(flatten)]
        peer: PeerArgs,
        #[command(flatten)]
        broadcast: BroadcastArgs,
    },
    /// Hold `--connections` socket.io (engine.io v4 WebSocket) clients for `--duration` s.
    SocketioHold(PeerArgs),
    /// Broadcast through socket.io (POST /broadcast → io.emit) to `--connections` clients.
    SocketioBroadcast {
        #[command(flatten)]
        peer: PeerArgs,
        #[command(flatten)]
        broadcast: BroadcastArgs,
    },
    /// Broadcast through Switchboard's REST API to `--connections` plain WebSocket clients
    /// (JSON hub protocol, no negotiate): the servers compared with the same receivers. Needs
    /// `--key`; the hub is `--channel` with every other character than letters and digits `_`.
    SwitchboardBroadcast {
        #[command(flatten)]
        peer: PeerArgs,
        #[command(flatten)]
        broadcast: BroadcastArgs,
    },
    /// Maximum broadcast against Switchboard: `switchboard-loadtest s4-broadcast` per step.
    SbBroadcast(steps::SbArgs),
    /// Raw TCP echo ceiling: N closed-loop clients against a single-threaded echo server.
    RawEcho(raw::EchoArgs),
    /// Raw fan-out ceiling: one writer thread to N sockets, k frames per write.
    RawFanout(raw::FanoutArgs),
    /// Medians and the Switchboard / peer table of a results directory.
    Summarize {
        /// The results directory.
        #[arg(long)]
        dir: PathBuf,
    },
    /// (internal) the echo server of raw-echo.
    #[command(hide = true)]
    RawEchoServer {
        #[arg(long, default_value_t = 1)]
        threads: usize,
    },
    /// (internal) the receiving side of raw-fanout.
    #[command(hide = true)]
    RawFanoutDrain {
        #[arg(long)]
        addr: String,
        #[arg(long)]
        connections: usize,
        #[arg(long, default_value_t = 200)]
        parallel: usize,
    },
}

#[derive(Parser, Debug)]
#[command(
    name = "switchboard-peers",
    about = "Peers side by side (Nchan, socket.io) and the machine's raw ceilings"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

fn write_json(path: Option<&PathBuf>, v: &serde_json::Value) -> Result<()> {
    if let Some(path) = path {
        let json = serde_json::to_string_pretty(v)?;
        std::fs::write(path, json + "\n").with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

fn hold(peer: Peer, a: &PeerArgs) -> Result<()> {
    let r = runtime()?.block_on(subs::hold(peer, a))?;
    print!("{}", r.summary());
    write_json(a.json_out.as_ref(), &serde_json::to_value(&r)?)
}

fn broadcast(peer: Peer, a: &PeerArgs, b: &BroadcastArgs) -> Result<()> {
    let (json, summary) = runtime()?.block_on(subs::broadcast(peer, a, b))?;
    print!("{summary}");
    write_json(a.json_out.as_ref(), &json)
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match &cli.cmd {
        Cmd::NchanHold(a) => hold(Peer::Nchan, a),
        Cmd::SocketioHold(a) => hold(Peer::SocketIo, a),
        Cmd::NchanBroadcast { peer, broadcast: b } => broadcast(Peer::Nchan, peer, b),
        Cmd::SocketioBroadcast { peer, broadcast: b } => broadcast(Peer::SocketIo, peer, b),
        Cmd::SwitchboardBroadcast { peer, broadcast: b } => broadcast(Peer::Switchboard, peer, b),
        Cmd::SbBroadcast(a) => {
            let run = steps::sb_broadcast(a)?;
            print!("{}", run.summary());
            write_json(a.json_out.as_ref(), &serde_json::to_value(&run)?)
        }
        Cmd::RawEcho(a) => {
            let r = raw::echo(a)?;
            print!("{}", r.summary());
            write_json(a.json_out.as_ref(), &serde_json::to_value(&r)?)
        }
        Cmd::RawFanout(a) => {
            let r = raw::fanout(a)?;
            print!("{}", raw::fanout_summary(&r));
            write_json(a.json_out.as_ref(), &serde_json::to_value(&r)?)
        }
        Cmd::Summarize { dir } => {
            let (md, json) = summary::summarize(dir)?;
            std::fs::write(dir.join("summary.md"), &md)?;
            write_json(Some(&dir.join("summary.json")), &json)?;
            print!("{md}");
            Ok(())
        }
        Cmd::RawEchoServer { threads } => raw::echo_server(*threads),
        Cmd::RawFanoutDrain {
            addr,
            connections,
            parallel,
        } => raw::fanout_drain(addr, *connections, *parallel),
    }
}
