//! `summarize`: medians over the repeated runs of `scripts/bench/peers.sh` and the markdown table
//! of Switchboard / peer ratios.
//!
//! Input files in the results directory, `<rep>` counting from 1:
//! `raw-echo-<rep>.json`, `raw-fanout-<rep>.json` (stats reports of the raw modes),
//! `<system>-hold-<rep>.json` (`s1-hold` or `<peer>-hold` reports) and
//! `<system>-broadcast-<rep>.json` (maximum-broadcast runs), with `<system>` one of
//! `switchboard`, `nchan`, `socketio`.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};

/// The systems compared, Switchboard first.
const SYSTEMS: [(&str, &str); 3] = [
    ("switchboard", "Switchboard"),
    ("nchan", "Nchan"),
    ("socketio", "socket.io"),
];

/// Ratios closer to 1 than this are not marked as worse.
const TIE: f64 = 1.05;

/// Which way is better for a metric.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Better {
    Lower,
    Higher,
}

struct Metric {
    label: &'static str,
    kind: &'static str,
    pointer: &'static str,
    scale: f64,
    decimals: usize,
    better: Better,
}

const METRICS: [Metric; 7] = [
    Metric {
        label: "time to open the connections (s)",
        kind: "hold",
        pointer: "/extra/ramp_seconds",
        scale: 1.0,
        decimals: 2,
        better: Better::Lower,
    },
    Metric {
        label: "connects/s",
        kind: "hold",
        pointer: "/extra/connects_per_second",
        scale: 1.0,
        decimals: 0,
        better: Better::Higher,
    },
    Metric {
        label: "server RSS per held connection (KiB)",
        kind: "hold",
        pointer: "/extra/server_rss_bytes_per_connection",
        scale: 1.0 / 1024.0,
        decimals: 1,
        better: Better::Lower,
    },
    Metric {
        label: "max broadcast, deliveries/s (p99 < 1 s, no loss)",
        kind: "broadcast",
        pointer: "/max_deliveries_per_second",
        scale: 1.0,
        decimals: 0,
        better: Better::Higher,
    },
    Metric {
        label: "highest passing step (deliveries/s)",
        kind: "broadcast",
        pointer: "/max_step_target",
        scale: 1.0,
        decimals: 0,
        better: Better::Higher,
    },
    Metric {
        label: "p99 latency at that rate (ms)",
        kind: "broadcast",
        pointer: "/best/latency/p99_us",
        scale: 1e-3,
        decimals: 1,
        better: Better::Lower,
    },
    Metric {
        label: "server CPU per delivery at that rate (µs)",
        kind: "broadcast",
        pointer: "/best/extra/server_cpu_us_per_delivery",
        scale: 1.0,
        decimals: 1,
        better: Better::Lower,
    },
];

/// The median of `v` (mean of the middle two for an even count).
pub(crate) fn median(v: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    Some(if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    })
}

fn fmt(x: Option<f64>, decimals: usize) -> String {
    match x {
        None => "–".to_owned(),
        Some(x) if decimals == 0 => thousands(x.round() as i64),
        Some(x) => format!("{x:.decimals$}"),
    }
}

fn thousands(n: i64) -> String {
    let s = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 { format!("-{out}") } else { out }
}

/// `Switchboard / peer` with a hint of which side is better.
fn ratio(sb: Option<f64>, peer: Option<f64>, better: Better) -> String {
    match (sb, peer) {
        (Some(s), Some(p)) if p > 0.0 && s.is_finite() => {
            let r = s / p;
            // Within ±5 % is noise on this machine (runs vary by ±20 %).
            let worse = match better {
                Better::Higher => r < 1.0 / TIE,
                Better::Lower => r > TIE,
            };
            format!("{r:.2}×{}", if worse { " (worse)" } else { "" })
        }
        _ => "–".to_owned(),
    }
}

/// Loaded result files: `stem` (`nchan-hold`) → one JSON per repetition.
pub(crate) fn load(dir: &Path) -> Result<BTreeMap<String, Vec<serde_json::Value>>> {
    let mut out: BTreeMap<String, Vec<(u32, serde_json::Value)>> = BTreeMap::new();
    for e in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = e?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let Some((stem, rep)) = name.strip_suffix(".json").and_then(|s| s.rsplit_once('-')) else {
            continue;
        };
        let Ok(rep) = rep.parse::<u32>() else {
            continue;
        };
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&path)?)
            .with_context(|| format!("parsing {}", path.display()))?;
        out.entry(stem.to_owned()).or_default().push((rep, v));
    }
    Ok(out
        .into_iter()
        .map(|(k, mut v)| {
            v.sort_by_key(|(rep, _)| *rep);
            (k, v.into_iter().map(|(_, j)| j).collect())
        })
        .collect())
}

fn values(runs: Option<&Vec<serde_json::Value>>, pointer: &str, scale: f64) -> Vec<f64> {
    runs.map(|r| {
        r.iter()
            .filter_map(|j| j.pointer(pointer).and_then(serde_json::Value::as_f64))
            .map(|x| x * scale)
            .collect()
    })
    .unwrap_or_default()
}

/// The markdown summary and its figures as JSON.
pub(crate) fn summarize(dir: &Path) -> Result<(String, serde_json::Value)> {
    let runs = load(dir)?;
    let mut md = String::new();
    let mut json = serde_json::Map::new();

    let echo = runs.get("raw-echo");
    let echo_rt = median(&values(echo, "/extra/round_trips_per_second", 1.0));
    let fanout = runs.get("raw-fanout");
    let mut fan = BTreeMap::new();
    if let Some(f) = fanout {
        for j in f {
            if let Some(extra) = j.get("extra").and_then(serde_json::Value::as_object) {
                for (k, v) in extra {
                    if let (Some(b), Some(x)) = (k.strip_prefix("frames_per_second_k"), v.as_f64())
                        && let Ok(b) = b.parse::<u64>()
                    {
                        fan.entry(b).or_insert_with(Vec::new).push(x);
                    }
                }
            }
        }
    }
    let fan: BTreeMap<u64, Option<f64>> = fan.into_iter().map(|(k, v)| (k, median(&v))).collect();
    let p = |runs: Option<&Vec<serde_json::Value>>, ptr: &str| {
        runs.and_then(|r| r.first())
            .and_then(|j| j.pointer(ptr))
            .cloned()
            .unwrap_or(serde_json::Value::Null)
    };
    md.push_str("### Raw ceilings of this machine (measured first, same session)\n\n");
    md.push_str("| ceiling | median | runs |\n| --- | ---: | ---: |\n");
    md.push_str(&format!(
        "| TCP echo, {} connections × 1 in flight, {} B, 1-thread server, 1-thread client | {} round trips/s | {} |\n",
        p(echo, "/params/connections"),
        p(echo, "/params/bytes"),
        fmt(echo_rt, 0),
        echo.map_or(0, Vec::len)
    ));
    for (k, v) in &fan {
        md.push_str(&format!(
            "| fan-out of {} B frames to {} sockets, {} frame{} per write, 1 writer thread | {} frames/s | {} |\n",
            p(fanout, "/params/frame_bytes"),
            p(fanout, "/params/connections"),
            k,
            if *k == 1 { "" } else { "s" },
            fmt(*v, 0),
            fanout.map_or(0, Vec::len)
        ));
    }
    json.insert("raw_echo_round_trips_per_second".into(), echo_rt.into());
    json.insert(
        "raw_fanout_frames_per_second".into(),
        fan.iter()
            .map(|(k, v)| (format!("k{k}"), serde_json::Value::from(*v)))
            .collect::<serde_json::Map<_, _>>()
            .into(),
    );

    let hold_conns = SYSTEMS
        .iter()
        .find_map(|(s, _)| {
            runs.get(&format!("{s}-hold"))
                .and_then(|r| r.first())
                .and_then(|j| j.pointer("/params/connections").cloned())
        })
        .unwrap_or(serde_json::Value::Null);
    let bc_conns = SYSTEMS
        .iter()
        .find_map(|(s, _)| {
            runs.get(&format!("{s}-broadcast"))
                .and_then(|r| r.first())
                .and_then(|j| j.get("connections").cloned())
        })
        .unwrap_or(serde_json::Value::Null);
    let reps = SYSTEMS
        .iter()
        .filter_map(|(s, _)| runs.get(&format!("{s}-hold")).map(Vec::len))
        .max()
        .unwrap_or(0);
    md.push_str(&format!(
        "\n### Switchboard and peers (hold {hold_conns} connections; broadcast to {bc_conns} subscribers; medians of {reps} runs)\n\n"
    ));
    md.push_str("| metric | Switchboard | Nchan | socket.io | Switchboard / Nchan | Switchboard / socket.io |\n");
    md.push_str("| --- | ---: | ---: | ---: | ---: | ---: |\n");
    let mut table = serde_json::Map::new();
    let mut max_bc: BTreeMap<&str, Option<f64>> = BTreeMap::new();
    for m in &METRICS {
        let meds: Vec<Option<f64>> = SYSTEMS
            .iter()
            .map(|(s, _)| {
                median(&values(
                    runs.get(&format!("{s}-{}", m.kind)),
                    m.pointer,
                    m.scale,
                ))
            })
            .collect();
        let capped: Vec<bool> = SYSTEMS
            .iter()
            .map(|(s, _)| {
                matches!(m.pointer, "/max_deliveries_per_second" | "/max_step_target")
                    && runs.get(&format!("{s}-broadcast")).is_some_and(|r| {
                        r.iter().any(|j| {
                            j.get("capped").and_then(serde_json::Value::as_bool) == Some(true)
                        })
                    })
            })
            .collect();
        if m.pointer == "/max_deliveries_per_second" {
            for ((s, _), v) in SYSTEMS.iter().zip(&meds) {
                max_bc.insert(s, *v);
            }
        }
        let cells: Vec<String> = meds
            .iter()
            .zip(&capped)
            .map(|(v, c)| format!("{}{}", if *c { "≥ " } else { "" }, fmt(*v, m.decimals)))
            .collect();
        md.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} |\n",
            m.label,
            cells[0],
            cells[1],
            cells[2],
            ratio(meds[0], meds[1], m.better),
            ratio(meds[0], meds[2], m.better)
        ));
        table.insert(
            m.label.to_owned(),
            SYSTEMS
                .iter()
                .zip(&meds)
                .map(|((s, _), v)| ((*s).to_owned(), serde_json::Value::from(*v)))
                .collect::<serde_json::Map<_, _>>()
                .into(),
        );
    }
    if let Some(Some(ceiling)) = fan.get(&1) {
        let shares: Vec<Option<f64>> = SYSTEMS
            .iter()
            .map(|(s, _)| {
                max_bc
                    .get(s)
                    .copied()
                    .flatten()
                    .map(|v| 100.0 * v / ceiling)
            })
            .collect();
        md.push_str(&format!(
            "| max broadcast as % of the raw unbatched fan-out ceiling | {} | {} | {} | | |\n",
            fmt(shares[0], 0),
            fmt(shares[1], 0),
            fmt(shares[2], 0)
        ));
        table.insert(
            "max broadcast % of raw unbatched fan-out".to_owned(),
            SYSTEMS
                .iter()
                .zip(&shares)
                .map(|((s, _), v)| ((*s).to_owned(), serde_json::Value::from(*v)))
                .collect::<serde_json::Map<_, _>>()
                .into(),
        );
    }
    md.push_str(
        "\nRatios are Switchboard ÷ peer; \"(worse)\" marks the rows where Switchboard is behind \
         by more than 5 %. \"≥\" means every broadcast step passed, so the true maximum is \
         higher. A broadcast step passes when every subscriber stayed up and got every message \
         exactly once, p99 < 1 s, and at least 95 % of the requested publish rate was sent \
         (docs/performance.md, S4b).\n",
    );
    json.insert("table".into(), table.into());
    json.insert("hold_connections".into(), hold_conns);
    json.insert("broadcast_connections".into(), bc_conns);
    json.insert("repeats".into(), reps.into());
    Ok((md, json.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_and_formatting() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[f64::NAN, 1.0]), Some(1.0));
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(thousands(-1000), "-1,000");
        assert_eq!(thousands(999), "999");
        assert_eq!(ratio(Some(2.0), Some(1.0), Better::Higher), "2.00×");
        assert_eq!(ratio(Some(2.0), Some(1.0), Better::Lower), "2.00× (worse)");
        assert_eq!(ratio(Some(0.98), Some(1.0), Better::Higher), "0.98×");
        assert_eq!(ratio(Some(0.9), Some(1.0), Better::Higher), "0.90× (worse)");
        assert_eq!(ratio(None, Some(1.0), Better::Lower), "–");
        assert_eq!(fmt(Some(12_345.6), 0), "12,346");
        assert_eq!(fmt(Some(1.234), 1), "1.2");
    }

    #[test]
    fn summarizes_a_results_directory() {
        let dir = std::env::temp_dir().join(format!("peers-summary-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let w = |name: &str, v: serde_json::Value| {
            std::fs::write(dir.join(name), v.to_string()).expect("write");
        };
        for rep in 1..=3 {
            let x = rep as f64;
            w(
                &format!("raw-echo-{rep}.json"),
                serde_json::json!({"params": {"connections": 100, "bytes": 100},
                    "extra": {"round_trips_per_second": 40_000.0 + x}}),
            );
            w(
                &format!("raw-fanout-{rep}.json"),
                serde_json::json!({"params": {"connections": 10, "frame_bytes": 100},
                    "extra": {"frames_per_second_k1": 50_000.0, "frames_per_second_k8": 300_000.0}}),
            );
            for (s, rss, max) in [
                ("switchboard", 4096.0, 100_000.0),
                ("nchan", 8192.0, 50_000.0),
            ] {
                w(
                    &format!("{s}-hold-{rep}.json"),
                    serde_json::json!({"params": {"connections": 10},
                        "extra": {"ramp_seconds": x, "connects_per_second": 10.0 / x,
                                  "server_rss_bytes_per_connection": rss}}),
                );
                w(
                    &format!("{s}-broadcast-{rep}.json"),
                    serde_json::json!({"connections": 10, "max_deliveries_per_second": max * x,
                        "capped": false, "best": {"latency": {"p99_us": 5000}}}),
                );
            }
        }
        w("notes.txt.json", serde_json::json!({}));
        let (md, json) = summarize(&dir).expect("summary");
        let _ = std::fs::remove_dir_all(&dir);
        assert!(md.contains("| 40,002 round trips/s | 3 |"), "{md}");
        assert!(md.contains("| 50,000 frames/s |"), "{md}");
        assert!(
            md.contains("| server RSS per held connection (KiB) | 4.0 | 8.0 | – | 0.50× | – |"),
            "{md}"
        );
        assert!(md.contains("| max broadcast, deliveries/s (p99 < 1 s, no loss) | 200,000 | 100,000 | – | 2.00× | – |"), "{md}");
        assert!(
            md.contains(
                "| max broadcast as % of the raw unbatched fan-out ceiling | 400 | 200 | – | | |"
            ),
            "{md}"
        );
        assert_eq!(json["repeats"], 3);
        assert_eq!(json["raw_fanout_frames_per_second"]["k8"], 300_000.0);
    }
}
