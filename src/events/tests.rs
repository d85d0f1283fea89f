use std::sync::Arc;
use std::time::Duration;

use super::trace::{QUEUE_EVENTS, TraceFilter};
use super::*;

fn connected<'a>(hub: &'a str, id: &'a str) -> Event<'a> {
    Event {
        hub: Some(hub),
        connection_id: Some(id),
        connection_type: Some(ConnectionType::Client),
        transport_type: Some("WebSockets"),
        ip: Some("127.0.0.1".parse().unwrap()),
        ..Event::new(
            Category::Connectivity,
            LogLevel::Info,
            "ConnectionStarted",
            "Connection",
            "Connection started.",
        )
    }
}

fn quiet() -> Arc<Events> {
    Arc::new(Events::new(
        &LogsConfig {
            connectivity: LogLevel::Off,
            ..LogsConfig::default()
        },
        "node-1",
    ))
}

/// The `data:` payloads of a chunk of Server-Sent Events, parsed.
fn data_events(chunk: &[u8]) -> Vec<serde_json::Value> {
    std::str::from_utf8(chunk)
        .unwrap()
        .split("\n\n")
        .filter_map(|e| e.strip_prefix("data: "))
        .map(|d| serde_json::from_str(d).unwrap())
        .collect()
}

#[test]
fn categories_are_wanted_only_at_their_level_or_while_watched() {
    let events = Arc::new(Events::new(&LogsConfig::default(), "n"));
    // The defaults: connectivity warnings, nothing else.
    assert!(events.enabled(Category::Connectivity, LogLevel::Warning));
    assert!(!events.enabled(Category::Connectivity, LogLevel::Info));
    assert!(!events.enabled(Category::Messaging, LogLevel::Debug));
    assert!(!events.enabled(Category::Http, LogLevel::Error));

    events.set_level(Category::Http, LogLevel::Info);
    assert!(events.enabled(Category::Http, LogLevel::Info));
    assert!(!events.enabled(Category::Http, LogLevel::Debug));

    let watch = events
        .watch(TraceFilter {
            categories: vec![Category::Messaging],
            ..TraceFilter::default()
        })
        .unwrap();
    assert!(events.enabled(Category::Messaging, LogLevel::Debug));
    assert!(!events.enabled(Category::Connectivity, LogLevel::Info));
    drop(watch);
    assert!(
        !events.enabled(Category::Messaging, LogLevel::Debug),
        "nothing is built once the last viewer left"
    );
    assert_eq!(events.viewer_count(), 0);
}

#[tokio::test]
async fn a_viewer_gets_azure_shaped_events_through_its_filter() {
    let events = quiet();
    let watch = events
        .watch(TraceFilter {
            hub: Some("chat".into()),
            ..TraceFilter::default()
        })
        .unwrap();
    events.emit(&connected("other", "c0"));
    events.emit(&Event {
        user_id: Some("alice"),
        ..connected("chat", "c1")
    });
    let chunk = tokio::time::timeout(Duration::from_secs(5), watch.next_sse())
        .await
        .unwrap();
    let got = data_events(&chunk);
    assert_eq!(
        got.len(),
        1,
        "the other hub's event is filtered out: {got:?}"
    );
    let e = &got[0];
    assert_eq!(e["category"], "ConnectivityLogs");
    assert_eq!(e["level"], "Informational");
    assert_eq!(e["operationName"], "ConnectionStarted");
    assert_eq!(e["callerIpAddress"], "127.0.0.1");
    assert_eq!(e["location"], "node-1");
    let p = &e["properties"];
    assert_eq!(p["type"], "ConnectivityLogs");
    assert_eq!(p["collection"], "Connection");
    assert_eq!(p["connectionId"], "c1");
    assert_eq!(p["connectionType"], "Client");
    assert_eq!(p["transportType"], "WebSockets");
    assert_eq!(p["hub"], "chat");
    assert_eq!(p["userId"], "alice");
    assert_eq!(p["message"], "Connection started.");
    assert!(p.get("groupName").is_none(), "absent fields are left out");
    assert!(e["time"].as_str().unwrap().ends_with('Z'));
}

#[tokio::test]
async fn a_full_viewer_queue_drops_new_events_counts_them_and_says_so() {
    let events = quiet();
    let slow = events.watch(TraceFilter::default()).unwrap();
    for i in 0..QUEUE_EVENTS + 10 {
        let id = format!("c{i}");
        events.emit(&connected("chat", &id));
    }
    assert_eq!(slow.dropped(), 10);
    assert_eq!(events.trace_dropped(), 10);
    let mut text = String::new();
    events.render_metrics(&mut text);
    assert!(
        text.contains("\nswitchboard_trace_dropped_total 10\n"),
        "{text}"
    );
    assert!(text.contains("\nswitchboard_trace_viewers 1\n"), "{text}");
    let chunk = slow.next_sse().await;
    let text = std::str::from_utf8(&chunk).unwrap();
    assert!(
        text.starts_with("event: dropped\ndata: {\"dropped\":10}\n\n"),
        "{}",
        &text[..80]
    );
    let got = data_events(&chunk);
    assert_eq!(got.len(), QUEUE_EVENTS, "the oldest events are kept");
    assert_eq!(got[0]["properties"]["connectionId"], "c0");
    // Room again: the next event arrives, and the drop is not repeated.
    events.emit(&connected("chat", "late"));
    let chunk = slow.next_sse().await;
    assert!(!chunk.starts_with(b"event: dropped"));
    assert_eq!(data_events(&chunk)[0]["properties"]["connectionId"], "late");
}

#[test]
fn at_most_max_viewers_are_attached() {
    let events = quiet();
    let watches: Vec<_> = (0..trace::MAX_VIEWERS)
        .map(|_| events.watch(TraceFilter::default()).unwrap())
        .collect();
    assert!(events.watch(TraceFilter::default()).is_none());
    drop(watches);
    assert!(events.watch(TraceFilter::default()).is_some());
}

#[test]
fn lines_over_the_per_second_budget_are_dropped_and_counted() {
    let events = Events::new(
        &LogsConfig {
            connectivity: LogLevel::Info,
            max_lines_per_second: 3,
            ..LogsConfig::default()
        },
        "n",
    );
    let now = SystemTime::now();
    let taken = (0..5)
        .filter(|_| events.take_line(Category::Connectivity, now))
        .count();
    // The boundary of a second may fall inside the loop: at least 3, at most 5 get through.
    assert!(taken >= 3);
    assert_eq!(events.lines_dropped(), 5 - taken as u64);
    assert!(
        events.take_line(Category::Http, now),
        "each category has its own budget"
    );
}

#[test]
fn categories_parse_in_both_spellings() {
    assert_eq!(
        Category::parse("connectivity"),
        Some(Category::Connectivity)
    );
    assert_eq!(Category::parse("MessagingLogs"), Some(Category::Messaging));
    assert_eq!(Category::parse("HTTP"), Some(Category::Http));
    assert_eq!(Category::parse("audit"), None);
}
