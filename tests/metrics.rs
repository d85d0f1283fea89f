//! `/metrics` scraped over HTTP from a running broker with real clients, read with a strict
//! parser of the text format (`common::prom`): closes land in Azure's close categories, traffic
//! and the REST histogram grow, only the busiest hubs get series of their own (the rest and gone
//! hubs summed under `hub="(other)"`), and the Grafana dashboard only names metrics that exist.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail, ensure};
use common::prom::Scrape;
use common::{Rest, TestClient, client_token, config, start_with};
use serde_json::{Value, json};
use switchboard::ServiceMode;
use switchboard::telemetry::names;

async fn scrape(base: &str) -> Result<Scrape> {
    let resp = reqwest::get(format!("{base}/metrics")).await?;
    ensure!(
        resp.status() == 200,
        "GET /metrics answered {}",
        resp.status()
    );
    let text = resp.text().await?;
    Scrape::parse(&text).with_context(|| format!("parsing /metrics:\n{text}"))
}

fn closes(s: &Scrape, category: &str) -> f64 {
    s.value(
        "switchboard_connection_closes_total",
        &[("endpoint", "client"), ("category", category)],
    )
}

/// Scrape until `done` holds (closes are counted when the connection's cleanup ran).
async fn scrape_until(base: &str, what: &str, done: impl Fn(&Scrape) -> bool) -> Result<Scrape> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s = scrape(base).await?;
        if done(&s) {
            return Ok(s);
        }
        if Instant::now() > deadline {
            bail!("{what}: not seen in /metrics within 10 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[test]
fn the_parser_is_strict() {
    let text = "# HELP a_total A.\n# TYPE a_total counter\na_total{x=\"1\",y=\"q\\\"\\\\\"} 3\n\
                # TYPE h_seconds histogram\nh_seconds_bucket{le=\"+Inf\"} 2\nh_seconds_sum 0.5\n\
                h_seconds_count 2\n";
    let s = Scrape::parse(text).unwrap();
    assert_eq!(s.value("a_total", &[("x", "1"), ("y", "q\"\\")]), 3.0);
    assert_eq!(s.value("h_seconds_count", &[]), 2.0);
    assert!(Scrape::parse("undeclared 1\n").is_err());
    assert!(Scrape::parse("# TYPE a gauge\na{x=1} 1\n").is_err());
    assert!(Scrape::parse("# TYPE a gauge\n# TYPE a gauge\n").is_err());
    assert!(Scrape::parse("# TYPE a gauge\na one\n").is_err());
}

/// A normal close, a close by the application, an auth failure, a protocol error and a ping
/// timeout each land in their category; the per-transport gauge follows the connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closes_land_in_azures_categories() -> Result<()> {
    let mut c = config(ServiceMode::Serverless);
    c.limits.keep_alive_interval_secs = 1;
    c.limits.client_timeout_secs = 2;
    let (sb, base, key) = start_with(c).await;
    let token = client_token(&key, "chat", Some("ann"));
    let rest = Rest::new(&base, &key);

    // Normal: the client closes.
    let client = TestClient::connect(&base, "chat", &token, "json").await?;
    let s = scrape(&base).await?;
    let ws_open = [("endpoint", "client"), ("transport", "websockets")];
    assert_eq!(
        s.value("switchboard_connections_by_transport", &ws_open),
        1.0
    );
    client.close().await;
    let s = scrape_until(&base, "normal close", |s| closes(s, "normal") == 1.0).await?;
    assert_eq!(
        s.value("switchboard_connections_by_transport", &ws_open),
        0.0
    );

    // Closed by the application (REST).
    let mut client = TestClient::connect(&base, "chat", &token, "json").await?;
    let id = client.connection_id().to_owned();
    let r = rest
        .delete(&format!(
            "/api/hubs/chat/connections/{id}?api-version=2022-06-01"
        ))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    client.wait_closed(Duration::from_secs(5)).await?;
    scrape_until(&base, "close by the app", |s| {
        closes(s, "closed_by_app_server") == 1.0
    })
    .await?;

    // Unauthorized: a connect with a token of another key is refused (401), and counted as
    // Azure does, though no connection opened.
    let (id, conn_token) = TestClient::negotiate_only(&base, "chat", &token).await?;
    let forged = client_token("another-key-that-is-long-enough-0123456789", "chat", None);
    let refused = TestClient::open(&base, "chat", &forged, "json", id, &conn_token).await;
    assert!(refused.is_err(), "a forged token is refused");
    scrape_until(&base, "unauthorized", |s| closes(s, "unauthorized") == 1.0).await?;

    // Bad request: a malformed message after the handshake.
    let mut client = TestClient::connect(&base, "chat", &token, "json").await?;
    client.send_raw(b"{not json\x1e").await?;
    client.wait_closed(Duration::from_secs(5)).await?;
    scrape_until(&base, "bad request", |s| closes(s, "bad_request") == 1.0).await?;

    // Ping timeout: one Ping arms the client timeout (2 s), then silence.
    let mut client = TestClient::connect(&base, "chat", &token, "json").await?;
    client.send_raw(b"{\"type\":6}\x1e").await?;
    client.wait_closed(Duration::from_secs(10)).await?;
    let s = scrape_until(&base, "ping timeout", |s| closes(s, "ping_timeout") == 1.0).await?;

    // Nothing else was counted, and opened = closes after the handshake.
    let total = s.sum(
        "switchboard_connection_closes_total",
        &[("endpoint", "client")],
    );
    assert_eq!(total, 5.0, "one close each");
    assert_eq!(s.value("switchboard_connections_opened_total", &[]), 4.0);
    sb.stop().await;
    Ok(())
}

/// Bytes and messages in and out grow with real traffic; REST sends land in the REST counter
/// and histogram; the scrape-time gauges are there and in range.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traffic_rest_latency_and_gauges() -> Result<()> {
    let mut c = config(ServiceMode::Serverless);
    c.limits.max_connections = 100;
    let (sb, base, key) = start_with(c).await;
    let rest = Rest::new(&base, &key);
    let mut client = TestClient::connect(
        &base,
        "chat",
        &client_token(&key, "chat", Some("u1")),
        "json",
    )
    .await?;
    let before = scrape(&base).await?;
    let client_traffic = |s: &Scrape, metric: &str, dir: &str| {
        s.value(metric, &[("endpoint", "client"), ("direction", dir)])
    };

    for i in 0..3 {
        rest.broadcast("chat", "note", json!([i, "x".repeat(100)]))
            .await;
        client
            .expect_invocation("note", Duration::from_secs(5))
            .await?;
    }
    // Two messages from the client (no upstream: each gets an error Completion back).
    let invocation = common::json_invocation(Some("1"), "Add", json!([1, 2]));
    client.send_raw(&invocation).await?;
    client.next_message(Duration::from_secs(5)).await?;
    client.send_raw(&invocation).await?;
    client.next_message(Duration::from_secs(5)).await?;

    let s = scrape_until(&base, "client messages in", |s| {
        client_traffic(s, "switchboard_messages_total", "in") >= 2.0
    })
    .await?;
    let grew = |metric: &str, dir: &str| {
        client_traffic(&s, metric, dir) - client_traffic(&before, metric, dir)
    };
    assert!(grew("switchboard_messages_total", "in") >= 2.0);
    assert!(grew("switchboard_bytes_total", "in") >= 2.0 * invocation.len() as f64);
    assert!(
        grew("switchboard_messages_total", "out") >= 5.0,
        "3 sends, 2 completions"
    );
    assert!(grew("switchboard_bytes_total", "out") >= 300.0);

    let send = [("operation", "send")];
    assert_eq!(
        s.value("switchboard_rest_request_duration_seconds_count", &send),
        3.0
    );
    assert_eq!(
        s.value(
            "switchboard_rest_responses_total",
            &[("operation", "send"), ("status", "2xx")]
        ),
        3.0
    );
    let inf = [("operation", "send"), ("le", "+Inf")];
    assert_eq!(
        s.value("switchboard_rest_request_duration_seconds_bucket", &inf),
        3.0
    );
    assert!(s.value("switchboard_rest_request_duration_seconds_sum", &send) > 0.0);
    // Buckets are cumulative.
    let mut last = 0.0;
    for b in s.matching("switchboard_rest_request_duration_seconds_bucket", &send) {
        assert!(b.value >= last, "{b:?}");
        last = b.value;
    }

    let quota = s.value("switchboard_connection_quota_utilization_ratio", &[]);
    assert!((quota - 0.01).abs() < 1e-9, "1 of 100 connections: {quota}");
    let load = s.value("switchboard_server_load_ratio", &[]);
    assert!((0.0..=1.0).contains(&load), "{load}");
    assert!(s.value("process_cpu_seconds_total", &[]) > 0.0);
    assert_eq!(s.value("switchboard_users", &[]), 1.0);
    client.close().await;
    sb.stop().await;
    Ok(())
}

/// With `metrics.top_hubs = 2` and six hubs, the two busiest get series of their own, the other
/// four are summed under `(other)`, and the per-hub series add up to the global ones; a hub
/// that goes away folds into `(other)`, which keeps growing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_busiest_hubs_are_labelled() -> Result<()> {
    let mut c = config(ServiceMode::Serverless);
    c.metrics.top_hubs = 2;
    c.limits.hub_idle_timeout_secs = 1;
    let (sb, base, key) = start_with(c).await;
    let rest = Rest::new(&base, &key);
    let mut clients = Vec::new();
    for h in 0..6 {
        let hub = format!("h{h}");
        let mut client =
            TestClient::connect(&base, &hub, &client_token(&key, &hub, None), "json").await?;
        for i in 0..=h {
            rest.broadcast(&hub, "note", json!([i])).await;
            client
                .expect_invocation("note", Duration::from_secs(5))
                .await?;
        }
        clients.push(client);
    }
    let hub_out = |s: &Scrape, hub: &str| {
        s.value(
            "switchboard_hub_messages_total",
            &[("hub", hub), ("direction", "out")],
        )
    };
    let global_out = |s: &Scrape| {
        s.value(
            "switchboard_messages_total",
            &[("endpoint", "client"), ("direction", "out")],
        )
    };
    // A fan-out counts its direct writes after them: wait for the count before the first
    // scrape, which ranks the hubs by what they did until then.
    let deadline = Instant::now() + Duration::from_secs(10);
    while sb.metrics().get(names::messages_delivered) < Some(21) {
        ensure!(Instant::now() < deadline, "21 deliveries counted");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let s = scrape(&base).await?;
    assert_eq!(global_out(&s), 21.0);
    let hubs: BTreeSet<String> = s
        .matching("switchboard_hub_messages_total", &[])
        .filter_map(|x| x.labels.get("hub").cloned())
        .collect();
    assert_eq!(
        hubs,
        ["(other)", "h4", "h5"].map(String::from).into(),
        "the two busiest and the rest"
    );
    assert_eq!(hub_out(&s, "h5"), 6.0);
    assert_eq!(hub_out(&s, "h4"), 5.0);
    assert_eq!(hub_out(&s, "(other)"), 1.0 + 2.0 + 3.0 + 4.0);
    assert_eq!(
        s.sum("switchboard_hub_messages_total", &[("direction", "out")]),
        global_out(&s)
    );
    assert_eq!(
        s.value("switchboard_hub_connections", &[("hub", "h5")]),
        1.0
    );
    assert_eq!(
        s.value("switchboard_hub_connections", &[("hub", "(other)")]),
        4.0
    );

    // h5's client leaves and its hub retires: its counts join (other), nothing decreases.
    clients.pop().context("h5's client")?.close().await;
    let retired = scrape_until(&base, "h5 retired", |s| {
        s.value("switchboard_hubs_dropped_idle_total", &[]) >= 1.0
            && !s
                .samples
                .iter()
                .any(|x| x.labels.get("hub").map(String::as_str) == Some("h5"))
    })
    .await?;
    assert!(hub_out(&retired, "(other)") >= hub_out(&s, "(other)") + 6.0);
    assert_eq!(
        retired.sum("switchboard_hub_messages_total", &[("direction", "out")]),
        global_out(&retired),
        "the per-hub series still add up"
    );
    for client in clients {
        client.close().await;
    }
    sb.stop().await;
    Ok(())
}

/// Every metric the Grafana dashboard's queries name exists in a running broker's `/metrics`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_grafana_dashboard_names_only_metrics_that_exist() -> Result<()> {
    let dashboard: Value = serde_json::from_str(include_str!("../docs/grafana/switchboard.json"))
        .context("docs/grafana/switchboard.json is JSON")?;
    let mut exprs = Vec::new();
    collect_exprs(&dashboard, &mut exprs);
    ensure!(
        exprs.len() >= 8,
        "a dashboard with queries: {}",
        exprs.len()
    );
    let (sb, base, _key) = start_with(config(ServiceMode::Serverless)).await;
    let s = scrape(&base).await?;
    let mut named = BTreeSet::new();
    for expr in &exprs {
        for name in metric_names(expr) {
            named.insert(name);
        }
    }
    ensure!(
        named.len() >= 10,
        "the dashboard names its metrics: {named:?}"
    );
    let missing: Vec<_> = named.iter().filter(|n| !s.has_metric(n)).collect();
    assert!(
        missing.is_empty(),
        "the dashboard names metrics /metrics lacks: {missing:?}"
    );
    sb.stop().await;
    Ok(())
}

/// Every `expr` string in the dashboard (panel targets, template variables).
fn collect_exprs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("expr" | "query", Value::String(s)) => out.push(s.clone()),
                    _ => collect_exprs(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect_exprs(v, out)),
        _ => {}
    }
}

/// The metric names in a PromQL expression: identifiers starting with `switchboard_` or
/// `process_` (label names and functions never do).
fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let bytes = expr.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        let starts = (c.is_ascii_alphabetic() || c == b'_')
            && (i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_'));
        if starts {
            let end = expr[i..]
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
                .map_or(expr.len(), |e| i + e);
            let word = &expr[i..end];
            if word.starts_with("switchboard_") || word.starts_with("process_") {
                names.push(word.to_owned());
            }
            i = end;
        } else {
            i += 1;
        }
    }
    names
}
