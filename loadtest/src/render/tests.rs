//! Tests of the report rendering: the SVG is well-formed and carries the expected series and
//! labels; the HTML page embeds it with the summary table and nothing external.

use std::path::Path;

use super::*;
use crate::stats::{add_pairs, empty_histogram, histogram_pairs};

/// 2026-12-07 16:00:00 UTC.
const T0: u64 = 1_796_659_200;

fn sample(i: u64, sent: u64, received: u64, latencies_us: &[u64]) -> Sample {
    let mut h = empty_histogram();
    for &l in latencies_us {
        h.record(l).expect("in range");
    }
    Sample {
        t: T0 + i + 1,
        secs: 1.0,
        sent,
        received,
        errors: 0,
        connects: 0,
        latency: histogram_pairs(&h),
    }
}

/// An echo-like run: as many sent as received, latencies 1–20 ms.
fn echo_report(seconds: u64) -> Report {
    let mut r = Report::empty(
        "s3-echo".to_owned(),
        serde_json::json!({ "protocol": "json", "payload_bytes": 100, "connections": 1000,
                             "rate": 0.0 }),
        seconds as f64,
    );
    r.samples = (0..seconds)
        .map(|i| {
            let lat: Vec<u64> = (1..=100).map(|k| 1000 + k * 190 + i * 10).collect();
            sample(i, 30_000 + i, 30_000 + i, &lat)
        })
        .collect();
    let mut all = empty_histogram();
    for s in &r.samples {
        add_pairs(&mut all, &s.latency);
    }
    r.sent = r.samples.iter().map(|s| s.sent).sum();
    r.received = r.sent;
    r.expected = r.sent;
    r.connected = 1000;
    r.latency = Latency::of(&all);
    r
}

/// Checks that `doc` is well-formed XML as far as tags go (every element closed in order,
/// quotes balanced inside tags, no stray `<` in text) and returns the element names in order.
fn elements(doc: &str) -> Vec<String> {
    let mut stack: Vec<String> = Vec::new();
    let mut names = Vec::new();
    let mut rest = doc;
    while let Some(open) = rest.find('<') {
        let after = &rest[open + 1..];
        let close = after.find('>').expect("an unclosed tag");
        let tag = &after[..close];
        assert!(!tag.contains('<'), "a '<' inside a tag: {tag}");
        assert_eq!(tag.matches('"').count() % 2, 0, "unbalanced quotes: {tag}");
        if tag.starts_with('?') || tag.starts_with('!') {
            // Declaration or doctype.
        } else if let Some(name) = tag.strip_prefix('/') {
            let top = stack
                .pop()
                .unwrap_or_else(|| panic!("</{name}> without an opening"));
            assert_eq!(top, name.trim(), "</{name}> closes <{top}>");
        } else {
            let name: String = tag
                .chars()
                .take_while(|c| !c.is_whitespace() && *c != '/')
                .collect();
            names.push(name.clone());
            if !tag.ends_with('/') {
                stack.push(name);
            }
        }
        rest = &after[close + 1..];
    }
    assert!(stack.is_empty(), "unclosed elements: {stack:?}");
    names
}

/// The text contents of the `<text>` elements of `svg`.
fn texts(svg: &str) -> Vec<String> {
    svg.split("<text")
        .skip(1)
        .filter_map(|t| {
            let body = &t[t.find('>')? + 1..];
            Some(body[..body.find("</text>")?].trim().to_owned())
        })
        .collect()
}

/// The number of points of each `<polyline>` of `svg`, in order.
fn polylines(svg: &str) -> Vec<usize> {
    svg.split("<polyline")
        .skip(1)
        .map(|p| {
            let pts = &p[p.find("points=\"").expect("points") + 8..];
            pts[..pts.find('"').expect("end of points")]
                .split_whitespace()
                .count()
        })
        .collect()
}

#[test]
fn the_svg_is_well_formed_with_both_charts_their_series_and_labels() {
    let r = echo_report(20);
    let svg = svg(&r).expect("renders");
    assert!(svg.starts_with("<svg"), "{}", &svg[..80]);
    let names = elements(&svg);
    assert_eq!(names[0], "svg");
    let texts = texts(&svg);
    for want in [
        "throughput per second",
        "latency per second (log scale)",
        "received/s",
        "sent/s",
        "p50",
        "p90",
        "p99",
        "max",
        "seconds",
    ] {
        assert!(
            texts.iter().any(|t| t == want),
            "no text {want:?} in {texts:?}"
        );
    }
    let title = texts
        .iter()
        .find(|t| t.starts_with("s3-echo"))
        .expect("a title");
    assert!(
        title.contains("json · 100 B · 1000 connections · 2026")
            && title.contains("2026-12-07 16:00:00 UTC"),
        "{title}"
    );
    // Latency axis labels in ms (1–20 ms: the 1 ms and 10 ms decades at least).
    assert!(texts.iter().any(|t| t == "10 ms"), "{texts:?}");
    // 2 throughput lines (sent and received on one axis: same scale) + 4 latency lines, each
    // with one point per second, plus one short legend line each.
    let lines = polylines(&svg);
    assert_eq!(lines.iter().filter(|&&n| n == 20).count(), 6, "{lines:?}");
    assert!(
        !texts.iter().any(|t| t.contains("(right)")),
        "same scale: one axis"
    );
    assert!(svg.len() < 60_000, "{} bytes", svg.len());
}

#[test]
fn a_broadcast_draws_its_senders_on_a_second_axis() {
    let mut r = echo_report(10);
    for s in &mut r.samples {
        s.sent = 50;
        s.received = 500_000;
    }
    let svg = svg(&r).expect("renders");
    elements(&svg);
    let texts = texts(&svg);
    assert!(texts.iter().any(|t| t == "sent/s (right)"), "{texts:?}");
    assert!(texts.iter().any(|t| t == "500k"), "SI labels: {texts:?}");
}

#[test]
fn seconds_without_latency_break_the_latency_lines() {
    let mut r = echo_report(10);
    r.samples[4].latency.clear();
    r.samples[4].received = 0;
    let lines = polylines(&svg(&r).expect("renders"));
    // Each of the 4 latency series: 4 points, then 5 points.
    assert_eq!(lines.iter().filter(|&&n| n == 4).count(), 4, "{lines:?}");
    assert_eq!(lines.iter().filter(|&&n| n == 5).count(), 4, "{lines:?}");
}

#[test]
fn long_runs_are_drawn_with_at_most_max_points() {
    let r = echo_report(1000);
    let svg = svg(&r).expect("renders");
    let lines = polylines(&svg);
    assert!(lines.iter().all(|&n| n <= MAX_POINTS), "{lines:?}");
    assert!(lines.iter().any(|&n| n > MAX_POINTS / 2), "{lines:?}");
}

#[test]
fn a_run_without_samples_still_renders() {
    let mut r = echo_report(1);
    r.samples.clear();
    let svg = svg(&r).expect("renders");
    elements(&svg);
    assert!(svg.contains("no samples"));
}

#[test]
fn the_html_page_embeds_the_svg_and_the_summary_table_and_nothing_external() {
    let mut r = echo_report(5);
    r.errors = 3;
    r.extra
        .insert("round_trips_per_second".into(), 30_002.5.into());
    r.extra.insert(
        "steps".into(),
        serde_json::json!([{ "step": 0, "note": "<b>" }]),
    );
    let page = html(&r).expect("renders");
    let names = elements(&page);
    assert_eq!(names[0], "html");
    assert!(page.contains(&svg(&r).expect("renders")), "the SVG as is");
    let summary = &page[page.find("<table id=\"summary\">").expect("summary table")..];
    let summary = &summary[..summary.find("</table>").expect("end")];
    for want in [
        "<th>scenario</th><td>s3-echo</td>",
        "<th>connections</th><td>1000 up, 0 dropped</td>",
        "<th>errors</th><td>3</td>",
        "sent 30.0k/s · received 30.0k/s",
        "p90 ",
        "p99 ",
        "max ",
    ] {
        assert!(summary.contains(want), "{want:?} not in {summary}");
    }
    assert!(
        page.contains("<th>connections</th><td>1000</td>"),
        "options"
    );
    assert!(
        page.contains("<th>protocol</th><td>json</td>"),
        "strings without quotes"
    );
    assert!(page.contains("<th>round_trips_per_second</th><td>30002.5</td>"));
    assert!(page.contains("&lt;b&gt;"), "escaped");
    assert!(!page.contains("<b>"));
    let page = page.replace("xmlns=\"http://www.w3.org/2000/svg\"", "");
    for external in [
        "<script", "<link", "src=", "href", "@import", "http://", "https://",
    ] {
        assert!(!page.contains(external), "{external} in the page");
    }
}

#[test]
fn the_format_comes_from_the_extension() {
    assert_eq!(Format::of(Path::new("a/b.svg")).ok(), Some(Format::Svg));
    assert_eq!(Format::of(Path::new("R.HTML")).ok(), Some(Format::Html));
    assert!(Format::of(Path::new("r.png")).is_err());
    assert!(Format::of(Path::new("report")).is_err());
}

#[test]
fn labels_read_well() {
    assert_eq!(si(566_683.0), "567k");
    assert_eq!(si(34_382.0), "34.4k");
    assert_eq!(si(1_216_928.0), "1.22M");
    assert_eq!(si(12.0), "12");
    assert_eq!(ms_label(0.5), "500 µs");
    assert_eq!(ms_label(76.4), "76.4 ms");
    assert_eq!(ms_label(1250.0), "1.25 s");
    assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
    assert_eq!(utc(T0 + 3661), "2026-12-07 17:01:01 UTC");
    assert_eq!(utc(951_782_400), "2000-02-29 00:00:00 UTC");
}
