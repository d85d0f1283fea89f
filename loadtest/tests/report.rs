//! `--report` end to end: the real binary against an in-process broker (Serverless mode,
//! 127.0.0.1:0), short runs, the files checked. Only the binary records timelines here (the
//! timeline is process-wide), so these tests run it as a child process.

use std::path::{Path, PathBuf};
use std::process::Command;

use switchboard::{Config, ServiceMode, Switchboard, SwitchboardHandle};

const KEY: &str = "loadtest-report-access-key-0123456789ABCDEFGHIJ";
const EXE: &str = env!("CARGO_BIN_EXE_switchboard-loadtest");

fn start() -> (SwitchboardHandle, String) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let config = Config {
        mode: ServiceMode::Serverless,
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

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sb-loadtest-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// Runs the generator with `args` (off the runtime's threads: the broker runs on them).
async fn generator(args: Vec<String>) -> std::process::Output {
    tokio::task::spawn_blocking(move || {
        Command::new(EXE)
            .args(&args)
            .output()
            .expect("run switchboard-loadtest")
    })
    .await
    .expect("join")
}

fn args(url: &str, rest: &[&str]) -> Vec<String> {
    ["--url", url, "--key", KEY, "--quiet"]
        .iter()
        .chain(rest)
        .map(|s| (*s).to_owned())
        .collect()
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).expect("read JSON")).expect("JSON")
}

fn sum(samples: &serde_json::Value, key: &str) -> u64 {
    samples
        .as_array()
        .expect("samples")
        .iter()
        .map(|s| s[key].as_u64().expect("count"))
        .sum()
}

fn latency_count(samples: &serde_json::Value) -> u64 {
    samples
        .as_array()
        .expect("samples")
        .iter()
        .flat_map(|s| s["latency"].as_array().expect("pairs").clone())
        .map(|p| p[1].as_u64().expect("count"))
        .sum()
}

/// Whether `svg` has a `<text>` element reading `want` (plotters puts the text on its own line).
fn has_text(svg: &str, want: &str) -> bool {
    svg.split("<text").skip(1).any(|t| {
        t.find('>')
            .and_then(|i| t[i + 1..].split("</text>").next())
            .is_some_and(|body| body.trim() == want)
    })
}

fn assert_ok(out: &std::process::Output) {
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_html_report_of_a_broadcast_over_two_worker_processes() {
    let (handle, url) = start();
    let dir = temp_dir("report-html");
    let (page, report, chart) = (dir.join("s4.html"), dir.join("s4.json"), dir.join("s4.svg"));
    let out = generator(args(
        &url,
        &[
            "--connections",
            "20",
            "--parallel",
            "10",
            "--rate",
            "20",
            "--duration",
            "3",
            "--workers",
            "2",
            "--json-out",
            report.to_str().expect("utf-8"),
            "--report",
            page.to_str().expect("utf-8"),
            "--report",
            chart.to_str().expect("utf-8"),
            "s4-broadcast",
        ],
    ))
    .await;
    assert_ok(&out);
    let r = json(&report);
    assert_eq!(r["received"], r["expected"], "{r}");
    assert_eq!(r["lost"], 0, "{r}");
    let samples = &r["samples"];
    let n = samples.as_array().expect("samples").len();
    assert!(n >= 3, "a 3 s run has at least 3 seconds: {samples}");
    // The receivers live in the workers: the per-second samples of both processes, merged,
    // account for every delivery and every latency exactly.
    let received = r["received"].as_u64().expect("received");
    assert!(received >= 20 * 50, "{r}");
    assert_eq!(sum(samples, "received"), received, "{samples}");
    assert_eq!(
        latency_count(samples),
        r["latency"]["count"].as_u64().expect("count")
    );
    assert_eq!(sum(samples, "sent"), r["sent"].as_u64().expect("sent"));
    let html = std::fs::read_to_string(&page).expect("the report");
    assert!(html.starts_with("<!DOCTYPE html>"), "{}", &html[..100]);
    assert_eq!(html.matches("<svg").count(), 1, "one embedded SVG");
    let svg = std::fs::read_to_string(&chart).expect("the second --report");
    assert!(html.contains(&svg), "the same SVG as in the page");
    for want in [
        "<th>scenario</th><td>s4-broadcast</td>",
        "<th>connections</th><td>20 up, 0 dropped</td>",
        "<th>errors</th><td>0</td>",
        "<th>workers</th><td>2</td>",
    ] {
        assert!(html.contains(want), "{want:?} not in the page");
    }
    for want in ["received/s", "sent/s (right)", "p50", "p90", "p99", "max"] {
        assert!(has_text(&html, want), "no text {want:?} in the page's SVG");
    }
    let _ = std::fs::remove_dir_all(&dir);
    handle.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn svg_reports_of_two_processes_side_by_side_and_their_merge() {
    let (handle, url) = start();
    let dir = temp_dir("report-svg");
    let path = |f: &str| dir.join(f).to_str().expect("utf-8").to_owned();
    let run = |k: &str| {
        generator(args(
            &url,
            &[
                "--connections",
                "400",
                "--parallel",
                "4",
                "--duration",
                "5",
                "--json-out",
                &path(&format!("{k}.json")),
                "--report",
                &path(&format!("{k}.svg")),
                "s2-connect",
            ],
        ))
    };
    let (a, b) = tokio::join!(run("a"), run("b"));
    assert_ok(&a);
    assert_ok(&b);
    let out = generator(args(
        &url,
        &[
            "--json-out",
            &path("m.json"),
            "--report",
            &path("m.svg"),
            "merge",
            &path("a.json"),
            &path("b.json"),
        ],
    ))
    .await;
    assert_ok(&out);
    let mut connects = 0;
    for k in ["a", "b"] {
        let r = json(Path::new(&path(&format!("{k}.json"))));
        assert_eq!(r["errors"], 0, "{r}");
        assert_eq!(
            sum(&r["samples"], "connects"),
            r["connected"].as_u64().expect("n")
        );
        connects += r["connected"].as_u64().expect("n");
        let svg = std::fs::read_to_string(path(&format!("{k}.svg"))).expect("svg");
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("s2-connect · json · 100 B · 400 connections"));
        for want in ["connects/s", "p50", "max"] {
            assert!(has_text(&svg, want), "no text {want:?} in {k}.svg");
        }
    }
    assert_eq!(connects, 800);
    let m = json(Path::new(&path("m.json")));
    assert_eq!(sum(&m["samples"], "connects"), 800, "{}", m["samples"]);
    assert_eq!(latency_count(&m["samples"]), 800);
    let svg = std::fs::read_to_string(path("m.svg")).expect("merged svg");
    assert!(has_text(&svg, "connects/s"));
    // One saved run drawn again from its JSON: the same picture.
    let out = generator(args(
        &url,
        &["--report", &path("a2.svg"), "merge", &path("a.json")],
    ))
    .await;
    assert_ok(&out);
    assert_eq!(
        std::fs::read_to_string(path("a2.svg")).expect("a2.svg"),
        std::fs::read_to_string(path("a.svg")).expect("a.svg")
    );
    // An unknown extension is refused before anything runs.
    let out = generator(args(&url, &["--report", &path("r.png"), "s2-connect"])).await;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains(".svg or .html"));
    let _ = std::fs::remove_dir_all(&dir);
    handle.stop().await;
}
