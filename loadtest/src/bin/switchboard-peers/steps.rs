//! Maximum broadcast: steps of rising publish rate judged by one rule for every system, and the
//! Switchboard side of it, which runs `switchboard-loadtest s4-broadcast` once per step.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result, bail};
use serde::Serialize;

use crate::payload;

/// Default steps in deliveries/s (the publish rate is this divided by the connections).
pub(crate) const DEFAULT_STEPS: &str =
    "10000,20000,30000,50000,75000,100000,150000,200000,250000,300000,400000,500000,750000,1000000";

/// One step of a maximum-broadcast run.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Step {
    /// Deliveries/s aimed at.
    pub(crate) target_deliveries_per_second: f64,
    /// Broadcasts/s published to reach it.
    pub(crate) target_broadcasts_per_second: f64,
    /// Whether it passed the rule of [`payload::judge`].
    pub(crate) pass: bool,
    /// Why not.
    pub(crate) reason: String,
    /// The step's report (`stats::Report` as JSON).
    pub(crate) report: serde_json::Value,
}

fn num(v: &serde_json::Value, ptr: &str) -> f64 {
    v.pointer(ptr)
        .and_then(serde_json::Value::as_f64)
        .unwrap_or(0.0)
}

impl Step {
    /// Judges `report` of a step aimed at `target` deliveries/s with `rate` broadcasts/s to
    /// `connections` receivers.
    pub(crate) fn judged(
        target: f64,
        rate: f64,
        connections: u64,
        report: serde_json::Value,
    ) -> Self {
        let v = payload::judge(&report, connections, rate);
        Self {
            target_deliveries_per_second: target,
            target_broadcasts_per_second: rate,
            pass: v.pass,
            reason: v.reason,
            report,
        }
    }

    /// Deliveries/s measured.
    pub(crate) fn deliveries_per_second(&self) -> f64 {
        num(&self.report, "/extra/deliveries_per_second")
    }

    /// One progress line.
    pub(crate) fn line(&self) -> String {
        format!(
            "step {:>9.0} deliveries/s ({:.1} broadcasts/s): {:>9.0} delivered/s, p50 {:.1} ms, p99 {:.1} ms, lost {}: {}",
            self.target_deliveries_per_second,
            self.target_broadcasts_per_second,
            self.deliveries_per_second(),
            num(&self.report, "/latency/p50_us") / 1000.0,
            num(&self.report, "/latency/p99_us") / 1000.0,
            num(&self.report, "/lost"),
            if self.pass {
                "pass".to_owned()
            } else {
                format!("FAIL ({})", self.reason)
            }
        )
    }
}

/// A maximum-broadcast run: the steps until the first failure.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct MaxRun {
    /// `<system>-broadcast-max`.
    pub(crate) scenario: String,
    /// `switchboard`, `nchan`, `socketio`.
    pub(crate) system: String,
    /// Options of the run.
    pub(crate) params: serde_json::Value,
    /// Receivers.
    pub(crate) connections: u64,
    /// Deliveries/s measured at the highest passing step (0 when none passed).
    pub(crate) max_deliveries_per_second: f64,
    /// Target of the highest passing step.
    pub(crate) max_step_target: Option<f64>,
    /// Every step passed: the real maximum is higher than the last step.
    pub(crate) capped: bool,
    /// The report of the highest passing step.
    pub(crate) best: Option<serde_json::Value>,
    /// Every step run.
    pub(crate) steps: Vec<Step>,
}

impl MaxRun {
    /// The run made of `steps` (stopped at the first failure).
    pub(crate) fn new(
        scenario: String,
        system: &str,
        params: serde_json::Value,
        connections: u64,
        steps: Vec<Step>,
    ) -> Self {
        let best = steps.iter().take_while(|s| s.pass).last();
        let total = params
            .get("steps")
            .and_then(serde_json::Value::as_array)
            .map_or(steps.len(), Vec::len);
        Self {
            scenario,
            system: system.to_owned(),
            connections,
            max_deliveries_per_second: best.map_or(0.0, Step::deliveries_per_second),
            max_step_target: best.map(|s| s.target_deliveries_per_second),
            capped: !steps.is_empty() && steps.iter().all(|s| s.pass) && steps.len() == total,
            best: best.map(|s| s.report.clone()),
            params,
            steps,
        }
    }

    /// The one-screen summary.
    pub(crate) fn summary(&self) -> String {
        let mut s = format!("{} ({} receivers)\n", self.scenario, self.connections);
        for st in &self.steps {
            s.push_str("  ");
            s.push_str(&st.line());
            s.push('\n');
        }
        match &self.best {
            Some(b) => s.push_str(&format!(
                "  max sustained: {:.0} deliveries/s (p50 {:.1} ms, p99 {:.1} ms){}\n",
                self.max_deliveries_per_second,
                num(b, "/latency/p50_us") / 1000.0,
                num(b, "/latency/p99_us") / 1000.0,
                if self.capped {
                    " — every step passed; the maximum is higher"
                } else {
                    ""
                }
            )),
            None => s.push_str("  no step passed\n"),
        }
        s
    }
}

/// Options of `sb-broadcast`.
#[derive(clap::Args, Clone, Debug)]
pub(crate) struct SbArgs {
    /// The `switchboard-loadtest` binary.
    #[arg(long, default_value = "target/release/switchboard-loadtest")]
    pub(crate) loadtest: PathBuf,
    /// Broker base URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub(crate) url: String,
    /// Access key of the broker.
    #[arg(long)]
    pub(crate) key: String,
    /// Hub.
    #[arg(long, default_value = "load")]
    pub(crate) hub: String,
    /// Hub protocol of the receivers (json or messagepack).
    #[arg(long, default_value = "json")]
    pub(crate) protocol: String,
    /// Receivers.
    #[arg(long, default_value_t = 1000)]
    pub(crate) connections: usize,
    /// Seconds per step.
    #[arg(long, default_value_t = 10.0)]
    pub(crate) duration: f64,
    /// Padding bytes per message.
    #[arg(long, default_value_t = 100)]
    pub(crate) payload_bytes: usize,
    /// Connections opened concurrently during each step's ramp.
    #[arg(long, default_value_t = 200)]
    pub(crate) parallel: usize,
    /// Broadcast requests in flight (`s4-broadcast --senders`: concurrent REST senders sharing
    /// one schedule), as the peers' `--publishers`.
    #[arg(long, default_value_t = 1)]
    pub(crate) publishers: usize,
    /// Steps in deliveries/s.
    #[arg(long, value_delimiter = ',', default_value = DEFAULT_STEPS)]
    pub(crate) steps: Vec<f64>,
    /// Write the run as JSON to this file.
    #[arg(long)]
    pub(crate) json_out: Option<PathBuf>,
    /// No progress lines.
    #[arg(long)]
    pub(crate) quiet: bool,
}

/// `sb-broadcast`: the maximum-broadcast steps against Switchboard, each one a
/// `switchboard-loadtest s4-broadcast` run (its receivers reconnect for every step).
pub(crate) fn sb_broadcast(a: &SbArgs) -> Result<MaxRun> {
    if !a.loadtest.exists() {
        bail!(
            "{} not found (cargo build --release -p switchboard-loadtest)",
            a.loadtest.display()
        );
    }
    let tmp = std::env::temp_dir().join(format!("sb-broadcast-{}.json", std::process::id()));
    let n = a.connections as u64;
    let mut steps = Vec::new();
    for &target in &a.steps {
        let rate = target / a.connections.max(1) as f64;
        let _ = std::fs::remove_file(&tmp);
        let out = Command::new(&a.loadtest)
            .args(["--url", &a.url, "--key", &a.key, "--hub", &a.hub])
            .args(["--protocol", &a.protocol])
            .args(["--connections", &a.connections.to_string()])
            .args(["--rate", &rate.to_string()])
            .args(["--duration", &a.duration.to_string()])
            .args(["--payload-bytes", &a.payload_bytes.to_string()])
            .args(["--parallel", &a.parallel.to_string()])
            .arg("--json-out")
            .arg(&tmp)
            .args(["--quiet", "s4-broadcast"])
            .args(["--senders", &a.publishers.max(1).to_string()])
            .output()
            .with_context(|| format!("running {}", a.loadtest.display()))?;
        // Exit code 1 is a run that failed (no connection, errors dominating) but wrote its
        // report: the step is judged on it (and fails); anything else is no run at all.
        let judged = out.status.success() || out.status.code() == Some(1) && tmp.exists();
        if !judged {
            bail!(
                "s4-broadcast failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let report: serde_json::Value = serde_json::from_slice(
            &std::fs::read(&tmp).with_context(|| format!("reading {}", tmp.display()))?,
        )?;
        let s = Step::judged(target, rate, n, report);
        if !a.quiet {
            eprintln!("{}", s.line());
        }
        let pass = s.pass;
        steps.push(s);
        if !pass {
            break;
        }
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
    let _ = std::fs::remove_file(&tmp);
    Ok(MaxRun::new(
        "switchboard-broadcast-max".to_owned(),
        "switchboard",
        serde_json::json!({
            "url": a.url, "hub": a.hub, "protocol": a.protocol, "connections": a.connections,
            "payload_bytes": a.payload_bytes, "step_duration": a.duration, "steps": a.steps,
            "via": "switchboard-loadtest s4-broadcast",
        }),
        n,
        steps,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(delivered: f64, p99_us: u64) -> serde_json::Value {
        serde_json::json!({
            "connected": 10, "dropped": 0, "sent": 5, "lost": 0, "duplicates": 0, "errors": 0,
            "latency": { "p50_us": 100, "p99_us": p99_us },
            "extra": { "broadcasts_per_second": delivered / 10.0, "deliveries_per_second": delivered },
        })
    }

    #[test]
    fn max_is_the_last_passing_step() {
        let params = serde_json::json!({ "steps": [100.0, 200.0, 300.0] });
        let steps = vec![
            Step::judged(100.0, 10.0, 10, report(99.0, 5_000)),
            Step::judged(200.0, 20.0, 10, report(201.0, 50_000)),
            Step::judged(300.0, 30.0, 10, report(300.0, 2_000_000)),
        ];
        assert!(steps[0].pass && steps[1].pass && !steps[2].pass);
        let run = MaxRun::new("x".into(), "nchan", params.clone(), 10, steps.clone());
        assert_eq!(run.max_deliveries_per_second, 201.0);
        assert_eq!(run.max_step_target, Some(200.0));
        assert!(!run.capped);
        assert!(run.summary().contains("max sustained: 201"));

        let all = MaxRun::new("x".into(), "nchan", params.clone(), 10, steps[..2].to_vec());
        assert!(!all.capped, "a step was left to run");
        let params2 = serde_json::json!({ "steps": [100.0, 200.0] });
        let capped = MaxRun::new("x".into(), "nchan", params2, 10, steps[..2].to_vec());
        assert!(capped.capped);

        let none = MaxRun::new("x".into(), "nchan", params, 10, steps[2..].to_vec());
        assert_eq!(none.max_deliveries_per_second, 0.0);
        assert!(none.best.is_none());
        assert!(none.summary().contains("no step passed"));
    }
}
