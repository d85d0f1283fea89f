//! `merge`: one report from the JSON reports of generator processes run in parallel (each with
//! its own share of `--connections`). Counts (errors by kind too) are summed, a failed input
//! makes the merged report fail, `*_per_second` figures added, seconds
//! and latency percentiles are the worst of the inputs (percentiles cannot be merged exactly
//! without the histograms; prefer `--workers`, which merges histograms). Per-second samples
//! (reports written with `--report`) merge exactly, second by second, for the merged
//! `--report`.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::failure::ErrorKinds;
use crate::stats::{Latency, Report};
use crate::timeline::Sample;

fn u(v: &Value, k: &str) -> u64 {
    v[k].as_u64().unwrap_or(0)
}

/// Merges `files`.
pub fn run(files: &[PathBuf]) -> Result<Report> {
    let mut inputs = Vec::new();
    for f in files {
        let text =
            std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?;
        let v: Value =
            serde_json::from_str(&text).with_context(|| format!("parsing {}", f.display()))?;
        inputs.push(v);
    }
    let Some(first) = inputs.first() else {
        bail!("nothing to merge");
    };
    let merged: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
    // One file keeps its options (`merge --report run.svg run.json` draws a saved run again);
    // several have each their own share of the connections, so none of them speaks for all.
    let params = match (&inputs[..], first["params"].as_object()) {
        ([_], Some(p)) => {
            let mut p = p.clone();
            p.insert("merged".into(), merged.into());
            Value::Object(p)
        }
        _ => serde_json::json!({ "merged": merged }),
    };
    let mut r = Report::empty(
        first["scenario"].as_str().unwrap_or("merged").to_owned(),
        params,
        0.0,
    );
    let mut samples = Vec::new();
    let mut failures = Vec::new();
    for (v, file) in inputs.iter().zip(files) {
        if v["scenario"] != first["scenario"] {
            bail!("cannot merge {} with {}", v["scenario"], first["scenario"]);
        }
        r.seconds = r.seconds.max(v["seconds"].as_f64().unwrap_or(0.0));
        r.connected += u(v, "connected");
        r.dropped += u(v, "dropped");
        r.sent += u(v, "sent");
        r.expected += u(v, "expected");
        r.received += u(v, "received");
        r.lost += u(v, "lost");
        r.duplicates += u(v, "duplicates");
        r.errors += u(v, "errors");
        if let Some(k) = v.get("error_kinds") {
            let k: ErrorKinds = serde_json::from_value(k.clone())
                .with_context(|| format!("error_kinds of {}", file.display()))?;
            r.error_kinds.absorb(&k);
        }
        if let Some(f) = v["failure"].as_str() {
            failures.push(format!("{}: {f}", file.display()));
        }
        r.stopped_early |= v["stopped_early"].as_bool().unwrap_or(false);
        if let Some(s) = v.get("samples") {
            let s: Vec<Sample> = serde_json::from_value(s.clone()).context("samples")?;
            samples.extend(s);
        }
        if let Ok(l) = serde_json::from_value::<LatencyIn>(v["latency"].clone()) {
            let m = r.latency.get_or_insert(Latency {
                count: 0,
                p50_us: 0,
                p90_us: 0,
                p99_us: 0,
                p999_us: 0,
                max_us: 0,
                mean_us: 0.0,
            });
            let total = m.count + l.count;
            if total > 0 {
                m.mean_us =
                    (m.mean_us * m.count as f64 + l.mean_us * l.count as f64) / total as f64;
            }
            m.count = total;
            m.p50_us = m.p50_us.max(l.p50_us);
            m.p90_us = m.p90_us.max(l.p90_us);
            m.p99_us = m.p99_us.max(l.p99_us);
            m.p999_us = m.p999_us.max(l.p999_us);
            m.max_us = m.max_us.max(l.max_us);
        }
        if let Some(extra) = v["extra"].as_object() {
            for (k, x) in extra {
                if k.ends_with("_per_second") || k.ends_with("_kib") && k.contains("rss") {
                    if let Some(f) = x.as_f64() {
                        let cur = r.extra.get(k).and_then(Value::as_f64).unwrap_or(0.0);
                        // RSS figures of one broker are the same process: keep the largest.
                        let merged = if k.contains("rss") {
                            cur.max(f)
                        } else {
                            cur + f
                        };
                        r.extra.insert(k.clone(), merged.into());
                    }
                } else if let Some(n) = x.as_u64() {
                    let cur = r.extra.get(k).and_then(Value::as_u64).unwrap_or(0);
                    r.extra.insert(k.clone(), (cur + n).into());
                }
            }
        }
    }
    if !failures.is_empty() {
        r.failure = Some(failures.join("; "));
    }
    r.extra
        .insert("merged_reports".into(), (inputs.len() as u64).into());
    r.samples = crate::timeline::merge(samples);
    Ok(r)
}

#[derive(serde::Deserialize)]
struct LatencyIn {
    count: u64,
    p50_us: u64,
    #[serde(default)]
    p90_us: u64,
    p99_us: u64,
    p999_us: u64,
    max_us: u64,
    mean_us: f64,
}
