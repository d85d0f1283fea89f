//! `--report FILE.svg|FILE.html`: a run drawn for people. The SVG holds two charts over the
//! run's seconds (throughput: received, sent, connects and errors per second; latency: p50,
//! p90, p99 and max per second on a log scale); the HTML page embeds that SVG with the
//! summary table, the options and the per-second figures, in one file with no external script
//! or stylesheet.
//!
//! Drawn with plotters' SVG backend and no font feature: the backend writes `<text>` elements
//! and leaves the glyphs to whatever shows the file, so no system font library is needed.
//! Pure functions of a [`Report`] (and its [`Sample`]s); nothing here measures.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result, bail};
use plotters::prelude::*;

use crate::stats::{Latency, Report};
use crate::timeline::{Sample, coarsen};

/// Most points drawn per series (longer runs are merged into longer intervals).
const MAX_POINTS: usize = 300;
const WIDTH: u32 = 960;
const HEIGHT: u32 = 700;
const TITLE_HEIGHT: u32 = 40;
/// Width of the right axis (sent per second), kept as margin when there is none so that both
/// charts share their x positions.
const RIGHT_AXIS: u32 = 70;

/// What `--report` writes, from the file's extension.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `.svg`: the charts.
    Svg,
    /// `.html`: the charts, the summary table and the per-second figures.
    Html,
}

impl Format {
    /// The format of `path` (`.svg` or `.html` / `.htm`).
    pub fn of(path: &Path) -> Result<Self> {
        match path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            Some("svg") => Ok(Self::Svg),
            Some("html" | "htm") => Ok(Self::Html),
            _ => bail!(
                "--report {}: the file name must end in .svg or .html",
                path.display()
            ),
        }
    }
}

/// Writes `report` to `path` in the format its extension names.
pub fn write(path: &Path, report: &Report) -> Result<()> {
    let text = match Format::of(path)? {
        Format::Svg => svg(report)?,
        Format::Html => html(report)?,
    };
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

/// One interval as drawn: x in seconds since the run's first sample began.
struct Point {
    x: f64,
    sent: f64,
    received: f64,
    connects: f64,
    errors: f64,
    /// p50, p90, p99, max in ms (`None` when nothing was recorded in the interval).
    latency: Option<[f64; 4]>,
}

fn points(samples: &[Sample]) -> Vec<Point> {
    let Some(first) = samples.first() else {
        return Vec::new();
    };
    let t0 = first.t as f64 - first.secs.max(0.0);
    coarsen(samples, MAX_POINTS)
        .iter()
        .map(|s| {
            let secs = s.secs.max(1e-3);
            let h = s.histogram();
            let ms = |us: u64| us as f64 / 1000.0;
            Point {
                x: s.t as f64 - t0,
                sent: s.sent as f64 / secs,
                received: s.received as f64 / secs,
                connects: s.connects as f64 / secs,
                errors: s.errors as f64 / secs,
                latency: (!h.is_empty()).then(|| {
                    [
                        ms(h.value_at_quantile(0.5)),
                        ms(h.value_at_quantile(0.9)),
                        ms(h.value_at_quantile(0.99)),
                        ms(h.max()),
                    ]
                }),
            }
        })
        .collect()
}

/// 1234567 → "1.23M".
fn si(v: f64) -> String {
    let a = v.abs();
    let (d, unit) = if a >= 1e9 {
        (1e9, "G")
    } else if a >= 1e6 {
        (1e6, "M")
    } else if a >= 1e3 {
        (1e3, "k")
    } else {
        (1.0, "")
    };
    let x = v / d;
    let s = if x.abs() >= 100.0 || x.fract() == 0.0 {
        format!("{x:.0}")
    } else if x.abs() >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.2}")
    };
    format!("{s}{unit}")
}

/// A latency in ms for axis labels and tables.
fn ms_label(v: f64) -> String {
    if v >= 1000.0 {
        format!("{} s", si(v / 1000.0))
    } else if v >= 1.0 {
        format!("{} ms", si(v))
    } else {
        format!("{} µs", si(v * 1000.0))
    }
}

/// `YYYY-MM-DD HH:MM:SS UTC` of a Unix second.
fn utc(t: u64) -> String {
    // Days to civil date (Howard Hinnant's algorithm).
    let days = (t / 86_400) as i64;
    let secs = t % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// The one-line description of a run used as the charts' title.
fn title(r: &Report) -> String {
    let p = &r.params;
    let mut t = r.scenario.clone();
    if let Some(proto) = p["protocol"].as_str() {
        let _ = write!(t, " · {proto}");
    }
    if let Some(b) = p["payload_bytes"].as_u64() {
        let _ = write!(t, " · {b} B");
    }
    if let Some(c) = p["connections"].as_u64() {
        let _ = write!(t, " · {c} connections");
    }
    // `--rate` 0 means "as fast as possible" for most scenarios, but S4b ramps its own rate:
    // say only what was set.
    if let Some(rate) = p["rate"].as_f64().filter(|r| *r > 0.0) {
        let _ = write!(t, " · paced at {}/s", si(rate));
    }
    if let Some(s) = p["senders"].as_u64() {
        let _ = write!(t, " · {s} sender{}", if s == 1 { "" } else { "s" });
    }
    if let Some(first) = r.samples.first() {
        let _ = write!(t, " · {}", utc(first.t.saturating_sub(1)));
    }
    t
}

/// Consecutive runs of `Some` points (a line is not drawn across intervals without data).
fn segments(points: impl Iterator<Item = Option<(f64, f64)>>) -> Vec<Vec<(f64, f64)>> {
    let mut out: Vec<Vec<(f64, f64)>> = Vec::new();
    let mut cur = Vec::new();
    for p in points {
        match p {
            Some(p) => cur.push(p),
            None if !cur.is_empty() => out.push(std::mem::take(&mut cur)),
            None => {}
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

const RECEIVED: RGBColor = RGBColor(31, 119, 180);
const SENT: RGBColor = RGBColor(255, 127, 14);
const CONNECTS: RGBColor = RGBColor(44, 160, 44);
const ERRORS: RGBColor = RGBColor(214, 39, 40);
const P50: RGBColor = RGBColor(44, 160, 44);
const P90: RGBColor = RGBColor(31, 119, 180);
const P99: RGBColor = RGBColor(255, 127, 14);
const MAX: RGBColor = RGBColor(214, 39, 40);

type Area<'a> = DrawingArea<SVGBackend<'a>, plotters::coord::Shift>;

/// A line series with its legend entry.
struct Line<'a> {
    label: &'a str,
    color: RGBColor,
    points: Vec<Vec<(f64, f64)>>,
}

fn legend_line(color: RGBColor) -> impl Fn((i32, i32)) -> PathElement<(i32, i32)> {
    move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
}

fn draw_throughput(area: &Area<'_>, pts: &[Point], x_max: f64) -> Result<()> {
    let has = |f: fn(&Point) -> f64| pts.iter().any(|p| f(p) > 0.0);
    let max_of = |f: fn(&Point) -> f64| pts.iter().map(f).fold(0.0, f64::max);
    let line = |label, color, f: fn(&Point) -> f64| Line {
        label,
        color,
        points: vec![pts.iter().map(|p| (p.x, f(p))).collect()],
    };
    // Receivers' messages (or connects) on the left axis; senders' messages and errors on the
    // right one when their scale differs by more than 10× (a broadcast: one send, N deliveries).
    let mut left = Vec::new();
    let mut right = Vec::new();
    if has(|p| p.received) {
        left.push(line("received/s", RECEIVED, |p| p.received));
    }
    if has(|p| p.connects) {
        left.push(line("connects/s", CONNECTS, |p| p.connects));
    }
    let left_max = max_of(|p| p.received).max(max_of(|p| p.connects));
    let sent = has(|p| p.sent).then(|| line("sent/s", SENT, |p| p.sent));
    let errors = has(|p| p.errors).then(|| line("errors/s", ERRORS, |p| p.errors));
    let side_max = max_of(|p| p.sent).max(max_of(|p| p.errors));
    let split = left_max > 0.0 && side_max > 0.0 && !(0.1..=10.0).contains(&(side_max / left_max));
    for l in sent.into_iter().chain(errors) {
        if split { right.push(l) } else { left.push(l) }
    }
    let y_max = if split {
        left_max
    } else {
        left_max.max(side_max)
    }
    .max(1.0)
        * 1.1;
    let y2_max = side_max.max(1.0) * 1.1;
    let mut chart = ChartBuilder::on(area)
        .caption("throughput per second", ("sans-serif", 18))
        .margin(12)
        .margin_right(if split { 12 } else { 12 + RIGHT_AXIS })
        .x_label_area_size(40)
        .y_label_area_size(70)
        .right_y_label_area_size(if split { RIGHT_AXIS } else { 0 })
        .build_cartesian_2d(0f64..x_max, 0f64..y_max)?
        .set_secondary_coord(0f64..x_max, 0f64..y2_max);
    chart
        .configure_mesh()
        .x_desc("seconds")
        .x_label_formatter(&|v| format!("{v:.0}"))
        .y_desc(if split {
            "per second (left)"
        } else {
            "per second"
        })
        .y_label_formatter(&|v| si(*v))
        .light_line_style(WHITE)
        .draw()?;
    if split {
        chart
            .configure_secondary_axes()
            .y_desc("sent / errors per second (right)")
            .y_label_formatter(&|v| si(*v))
            .draw()?;
    }
    for l in left {
        for (i, seg) in l.points.into_iter().enumerate() {
            let s = chart.draw_series(LineSeries::new(seg, l.color.stroke_width(2)))?;
            if i == 0 {
                s.label(l.label).legend(legend_line(l.color));
            }
        }
    }
    for l in right {
        let label = format!("{} (right)", l.label);
        for (i, seg) in l.points.into_iter().enumerate() {
            let s = chart.draw_secondary_series(LineSeries::new(seg, l.color.stroke_width(2)))?;
            if i == 0 {
                s.label(label.clone()).legend(legend_line(l.color));
            }
        }
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.3))
        .label_font(("sans-serif", 13))
        .draw()?;
    Ok(())
}

fn draw_latency(area: &Area<'_>, pts: &[Point], x_max: f64) -> Result<()> {
    let values = pts.iter().filter_map(|p| p.latency).flatten();
    let (lo, hi) = values.fold((f64::MAX, 0f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if hi <= 0.0 {
        area.draw(&Text::new(
            "latency: nothing was recorded",
            (80, 60),
            ("sans-serif", 16).into_font(),
        ))?;
        return Ok(());
    }
    // Whole decades around the data, at least 1 µs.
    let lo = 10f64.powf(lo.max(0.001).log10().floor());
    let hi = 10f64.powf(hi.log10().ceil()).max(lo * 10.0);
    let mut chart = ChartBuilder::on(area)
        .caption("latency per second (log scale)", ("sans-serif", 18))
        .margin(12)
        .margin_right(12 + RIGHT_AXIS)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..x_max, (lo..hi).log_scale())?;
    chart
        .configure_mesh()
        .x_desc("seconds")
        .x_label_formatter(&|v| format!("{v:.0}"))
        .y_desc("latency")
        .y_label_formatter(&|v| ms_label(*v))
        .light_line_style(WHITE)
        .draw()?;
    for (k, (label, color)) in [("p50", P50), ("p90", P90), ("p99", P99), ("max", MAX)]
        .into_iter()
        .enumerate()
    {
        let segs = segments(pts.iter().map(|p| p.latency.map(|l| (p.x, l[k]))));
        for (i, seg) in segs.into_iter().enumerate() {
            let s = chart.draw_series(LineSeries::new(seg, color.stroke_width(2)))?;
            if i == 0 {
                s.label(label).legend(legend_line(color));
            }
        }
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.3))
        .label_font(("sans-serif", 13))
        .draw()?;
    Ok(())
}

/// The charts of `r` as one SVG document.
pub fn svg(r: &Report) -> Result<String> {
    let pts = points(&r.samples);
    let x_max = pts.last().map_or(1.0, |p| p.x).max(1.0);
    let mut buf = String::new();
    {
        let root = SVGBackend::with_string(&mut buf, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE)?;
        let (head, body) = root.split_vertically(TITLE_HEIGHT);
        head.draw(&Text::new(
            title(r),
            (16, 12),
            ("sans-serif", 18).into_font().color(&BLACK),
        ))?;
        if pts.is_empty() {
            body.draw(&Text::new(
                "no samples: the run ended before its first second",
                (80, 60),
                ("sans-serif", 16).into_font(),
            ))?;
        } else {
            let (top, bottom) = body.split_vertically((HEIGHT - TITLE_HEIGHT) / 2);
            draw_throughput(&top, &pts, x_max)?;
            draw_latency(&bottom, &pts, x_max)?;
        }
        root.present()?;
    }
    Ok(buf)
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn row(out: &mut String, k: &str, v: &str) {
    let _ = writeln!(out, "<tr><th>{}</th><td>{}</td></tr>", esc(k), esc(v));
}

fn latency_cells(l: &Latency) -> String {
    let us = |v: u64| ms_label(v as f64 / 1000.0);
    format!(
        "p50 {} · p90 {} · p99 {} · p99.9 {} · max {} (n = {})",
        us(l.p50_us),
        us(l.p90_us),
        us(l.p99_us),
        us(l.p999_us),
        us(l.max_us),
        l.count
    )
}

/// One self-contained HTML page: title, the SVG charts, the summary, the options, the
/// scenario's own figures and the per-second table.
pub fn html(r: &Report) -> Result<String> {
    let chart = svg(r)?;
    let mut out = String::new();
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\" />\n\
         <title>switchboard-loadtest: {}</title>\n<style>\n\
         body {{ font-family: sans-serif; margin: 1.5em; max-width: 1000px; color: #222; }}\n\
         h1 {{ font-size: 1.3em; }} h2 {{ font-size: 1.1em; }}\n\
         table {{ border-collapse: collapse; margin: 0.5em 0 1.5em; }}\n\
         th, td {{ border: 1px solid #ccc; padding: 2px 8px; text-align: left; }}\n\
         td.n {{ text-align: right; font-variant-numeric: tabular-nums; }}\n\
         svg {{ max-width: 100%; height: auto; }}\n\
         </style>\n</head>\n<body>\n<h1>switchboard-loadtest: {}</h1>\n",
        esc(&r.scenario),
        esc(&r.scenario)
    );
    out.push_str(&chart);
    out.push_str("\n<h2>Summary</h2>\n<table id=\"summary\">\n");
    row(&mut out, "scenario", &r.scenario);
    row(&mut out, "seconds measured", &format!("{:.1}", r.seconds));
    row(
        &mut out,
        "connections",
        &format!("{} up, {} dropped", r.connected, r.dropped),
    );
    let per = |n: u64| {
        if r.seconds > 0.0 {
            si(n as f64 / r.seconds)
        } else {
            "–".to_owned()
        }
    };
    row(
        &mut out,
        "throughput",
        &format!("sent {}/s · received {}/s", per(r.sent), per(r.received)),
    );
    row(
        &mut out,
        "messages",
        &format!(
            "sent {} · expected {} · received {} · lost {} · duplicates {}",
            r.sent, r.expected, r.received, r.lost, r.duplicates
        ),
    );
    row(&mut out, "errors", &r.errors.to_string());
    for (name, c) in r.error_kinds.by_count() {
        let first = c
            .first
            .as_deref()
            .map_or(String::new(), |f| format!(" (first: {f})"));
        row(
            &mut out,
            &format!("errors: {name}"),
            &format!("{}{first}", c.count),
        );
    }
    if let Some(f) = &r.failure {
        row(&mut out, "FAILED", f);
    }
    row(
        &mut out,
        "latency",
        &r.latency.as_ref().map_or("–".to_owned(), latency_cells),
    );
    out.push_str("</table>\n<h2>Options</h2>\n<table id=\"options\">\n");
    if let Some(params) = r.params.as_object() {
        for (k, v) in params {
            row(
                &mut out,
                k,
                &v.as_str().map_or_else(|| v.to_string(), str::to_owned),
            );
        }
    }
    out.push_str("</table>\n");
    let (scalars, lists): (Vec<_>, Vec<_>) = r
        .extra
        .iter()
        .partition(|(_, v)| !v.is_array() && !v.is_object());
    if !r.extra.is_empty() {
        out.push_str("<h2>Scenario figures</h2>\n<table id=\"figures\">\n");
        for (k, v) in scalars {
            let v = match v.as_f64() {
                Some(f) if v.is_f64() => format!("{f:.1}"),
                _ => v.to_string(),
            };
            row(&mut out, k, &v);
        }
        out.push_str("</table>\n");
        for (k, v) in lists {
            let pretty = serde_json::to_string_pretty(v).unwrap_or_default();
            let _ = writeln!(
                out,
                "<details><summary>{}</summary><pre>{}</pre></details>",
                esc(k),
                esc(&pretty)
            );
        }
    }
    if !r.samples.is_empty() {
        out.push_str(
            "<h2>Per second</h2>\n<details><summary>the figures drawn above</summary>\n\
             <table id=\"seconds\">\n<tr><th>s</th><th>sent/s</th><th>received/s</th>\
             <th>connects/s</th><th>errors/s</th><th>p50</th><th>p90</th><th>p99</th>\
             <th>max</th></tr>\n",
        );
        for p in points(&r.samples) {
            let l = |k: usize| p.latency.map_or("–".to_owned(), |l| ms_label(l[k]));
            let _ = writeln!(
                out,
                "<tr><td class=\"n\">{:.0}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
                 <td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
                 <td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
                p.x,
                si(p.sent),
                si(p.received),
                si(p.connects),
                si(p.errors),
                l(0),
                l(1),
                l(2),
                l(3)
            );
        }
        out.push_str("</table>\n</details>\n");
    }
    out.push_str("</body>\n</html>\n");
    Ok(out)
}

#[cfg(test)]
mod tests;
