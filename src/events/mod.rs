//! Resource logs and the live trace: what happened to which connection, in Azure SignalR's
//! diagnostic-log shape.
//!
//! Each event belongs to one of Azure's categories ([`Category`]: connectivity, messaging, HTTP
//! requests) and has a level ([`LogLevel`]). [`Events`] sends it to two places:
//!
//! - the **resource logs** on stderr, when the category's level (`[logs]`, changed at runtime
//!   through `PATCH /admin/logs`) lets it through: one JSON object per line with
//!   `--log-format json`, or a `tracing` event (target `switchboard::<category>`) in text. At
//!   most `logs.max_lines_per_second` lines per category and second; more are dropped and
//!   counted, and a line says how many;
//! - the **live trace** viewers ([`trace`]), each with its own filter and bounded queue.
//!
//! Nothing is built when nobody listens: a call site asks [`Events::enabled`] (one relaxed
//! atomic load) before it assembles an [`Event`], and an event is serialized once, for every
//! place that takes it.

pub mod trace;
mod write;

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::SystemTime;

use parking_lot::Mutex;
use serde::Serialize;

use crate::config::LogsConfig;
pub use crate::config::{LogFormat, LogLevel};
pub use trace::{TraceFilter, Viewer};

/// Azure's resource-log categories.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Category {
    /// `ConnectivityLogs`: connections opening, closing, refused.
    Connectivity = 0,
    /// `MessagingLogs`: message tracing.
    Messaging = 1,
    /// `HttpRequestLogs`: HTTP requests to the broker.
    Http = 2,
}

impl Category {
    /// Every category, in index order.
    pub const ALL: [Self; 3] = [Self::Connectivity, Self::Messaging, Self::Http];

    /// Azure's name (`category` and `properties.type` of a log line).
    pub fn azure_name(self) -> &'static str {
        match self {
            Self::Connectivity => "ConnectivityLogs",
            Self::Messaging => "MessagingLogs",
            Self::Http => "HttpRequestLogs",
        }
    }

    /// The name in `[logs]`, the admin API and the live trace's filter.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Connectivity => "connectivity",
            Self::Messaging => "messaging",
            Self::Http => "http",
        }
    }

    /// The category called `name` (either spelling).
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|c| name.eq_ignore_ascii_case(c.as_str()) || name == c.azure_name())
    }
}

/// Which end of the broker a connection is (Azure's `connectionType`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum ConnectionType {
    /// A SignalR client.
    Client,
    /// A hub server (app server).
    Server,
}

/// One event. Borrowed, so that building it costs no allocation; it is serialized (once) only
/// when some log or viewer takes it.
#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Event<'a> {
    /// Category; not serialized here (it is the line's `category`).
    #[serde(skip)]
    pub category: Option<Category>,
    /// Level; the line's `level`.
    #[serde(skip)]
    pub level: Option<LogLevel>,
    /// Azure's `operationName`, e.g. `ConnectionStarted`.
    #[serde(skip)]
    pub operation: &'static str,
    /// The caller's address (`callerIpAddress`).
    #[serde(skip)]
    pub ip: Option<IpAddr>,
    /// Azure's collection: `Connection`, `Authorization`, `Throttling`, `Message`, `Request`.
    pub collection: &'static str,
    /// The connection's id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connection_id: Option<&'a str>,
    /// `Client` or `Server`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connection_type: Option<ConnectionType>,
    /// `WebSockets`, `ServerSentEvents` or `LongPolling`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transport_type: Option<&'static str>,
    /// The hub.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hub: Option<&'a str>,
    /// The user the token spoke for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<&'a str>,
    /// A group a message or operation is for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group_name: Option<&'a str>,
    /// The hub server (its server id) of a server connection or a routed client.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_id: Option<&'a str>,
    /// A closed or refused connection's close category (the `category` of
    /// `switchboard_connection_closes_total`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub close_category: Option<&'static str>,
    /// Messaging: the message's kind, e.g. `BroadcastDataMessage`, `Invocation`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_type: Option<&'a str>,
    /// Messaging: the id an Azure SDK gave the message for tracing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_tracing_id: Option<u64>,
    /// Messaging: the hub method a message invokes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<&'a str>,
    /// HTTP: method.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<&'a str>,
    /// HTTP: path (never the query, which may carry a token).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<&'a str>,
    /// HTTP: status code.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_code: Option<u16>,
    /// HTTP: milliseconds from the request to its answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<f64>,
    /// What happened, in words.
    pub message: &'a str,
}

impl<'a> Event<'a> {
    /// An event of `category` at `level`, called `operation`, in `collection`, saying `message`.
    pub fn new(
        category: Category,
        level: LogLevel,
        operation: &'static str,
        collection: &'static str,
        message: &'a str,
    ) -> Self {
        Self {
            category: Some(category),
            level: Some(level),
            operation,
            collection,
            message,
            ..Self::default()
        }
    }

    /// The category (connectivity when unset).
    pub fn category(&self) -> Category {
        self.category.unwrap_or(Category::Connectivity)
    }

    /// The level (info when unset).
    pub fn level(&self) -> LogLevel {
        self.level.unwrap_or(LogLevel::Info)
    }
}

/// Lines written per category in the current second, and those dropped over the limit.
#[derive(Debug, Default)]
struct LineBudget {
    second: u64,
    written: u32,
    dropped: u64,
}

/// Where events go: the resource logs (per-category levels) and the live-trace viewers.
#[derive(Debug)]
pub struct Events {
    /// Per category: the resource log's level.
    levels: [AtomicU8; 3],
    /// Per category: the lowest severity anyone takes (the log's level, or `Debug` while a
    /// viewer of the category is attached). The check every call site makes.
    wanted: [AtomicU8; 3],
    format: LogFormat,
    max_lines_per_second: u32,
    budgets: [Mutex<LineBudget>; 3],
    /// Resource-log lines dropped over `max_lines_per_second`.
    lines_dropped: AtomicU64,
    /// The live trace's viewers.
    viewers: trace::Viewers,
    /// This node's id (the lines' `location`).
    node: String,
}

impl Events {
    /// Events as `[logs]` configures them, for the node called `node`.
    pub fn new(config: &LogsConfig, node: impl Into<String>) -> Self {
        let levels = [config.connectivity, config.messaging, config.http];
        let events = Self {
            levels: levels.map(|l| AtomicU8::new(l as u8)),
            wanted: levels.map(|l| AtomicU8::new(l as u8)),
            format: config.format,
            max_lines_per_second: config.max_lines_per_second,
            budgets: Default::default(),
            lines_dropped: AtomicU64::new(0),
            viewers: trace::Viewers::default(),
            node: node.into(),
        };
        events.recompute();
        events
    }

    /// Events that go nowhere (tests; embedding without logs).
    pub fn disabled() -> Self {
        let config = LogsConfig {
            connectivity: LogLevel::Off,
            ..LogsConfig::default()
        };
        Self::new(&config, "local")
    }

    /// Whether anyone takes events of `category` at `level`: ask before building an [`Event`].
    #[inline]
    pub fn enabled(&self, category: Category, level: LogLevel) -> bool {
        level as u8 <= self.wanted[category as usize].load(Ordering::Relaxed)
            && level != LogLevel::Off
    }

    /// The resource log's level of each category.
    pub fn levels(&self) -> [(Category, LogLevel); 3] {
        Category::ALL.map(|c| {
            (
                c,
                LogLevel::from_u8(self.levels[c as usize].load(Ordering::Relaxed)),
            )
        })
    }

    /// Change the resource log's level of `category`.
    pub fn set_level(&self, category: Category, level: LogLevel) {
        self.levels[category as usize].store(level as u8, Ordering::Relaxed);
        self.recompute();
    }

    /// Resource-log lines dropped so far over `logs.max_lines_per_second`.
    pub fn lines_dropped(&self) -> u64 {
        self.lines_dropped.load(Ordering::Relaxed)
    }

    /// Events dropped so far because a live-trace viewer's queue was full.
    pub fn trace_dropped(&self) -> u64 {
        self.viewers.dropped()
    }

    /// Live-trace viewers attached now.
    pub fn viewer_count(&self) -> usize {
        self.viewers.len()
    }

    /// The resource logs' and the live trace's metrics, in the Prometheus text format.
    pub fn render_metrics(&self, out: &mut String) {
        use std::fmt::Write as _;
        let series: [(&str, &str, &str, u64); 3] = [
            (
                "switchboard_log_lines_dropped_total",
                "counter",
                "Resource-log lines not written because their category had written logs.max_lines_per_second lines that second.",
                self.lines_dropped(),
            ),
            (
                "switchboard_trace_viewers",
                "gauge",
                "Live-trace viewers attached (GET /admin/trace).",
                self.viewer_count() as u64,
            ),
            (
                "switchboard_trace_dropped_total",
                "counter",
                "Events a live-trace viewer did not get because its queue was full (it reads slower than events happen).",
                self.trace_dropped(),
            ),
        ];
        for (name, kind, help, value) in series {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        }
    }

    /// Attach a live-trace viewer; `None` when [`trace::MAX_VIEWERS`] are attached already.
    /// It stays attached until the returned handle is dropped.
    pub fn watch(self: &Arc<Self>, filter: TraceFilter) -> Option<trace::Watch> {
        let watch = self.viewers.attach(self.clone(), filter)?;
        self.recompute();
        Some(watch)
    }

    /// Recompute what each category wants from the log levels and the viewers.
    fn recompute(&self) {
        let watched = self.viewers.categories();
        for c in Category::ALL {
            let log = self.levels[c as usize].load(Ordering::Relaxed);
            let wanted = if watched[c as usize] {
                LogLevel::Debug as u8
            } else {
                log
            };
            self.wanted[c as usize].store(wanted, Ordering::Relaxed);
        }
    }

    /// Record `event`: to the resource log if its category's level lets it through, to every
    /// viewer whose filter takes it.
    pub fn emit(&self, event: &Event<'_>) {
        let category = event.category();
        let level = event.level();
        if !self.enabled(category, level) {
            return;
        }
        let to_log = level as u8 <= self.levels[category as usize].load(Ordering::Relaxed)
            && level != LogLevel::Off;
        let viewers = self.viewers.interested(category, event);
        if !to_log && viewers.is_empty() {
            return;
        }
        let time = SystemTime::now();
        // Serialized once, for the JSON log and every viewer.
        let json = if viewers.is_empty() && self.format == LogFormat::Text {
            None
        } else {
            Some(write::json_line(event, time, &self.node))
        };
        if to_log && self.take_line(category, time) {
            match (&json, self.format) {
                (Some(line), LogFormat::Json) => write::stderr_line(line),
                _ => write::tracing_event(event),
            }
        }
        if let Some(line) = json {
            let line = bytes::Bytes::from(line);
            for viewer in viewers {
                viewer.push(&line);
            }
        }
    }

    /// Whether one more line of `category` may be written this second. A new second first
    /// reports how many lines the last one dropped.
    fn take_line(&self, category: Category, now: SystemTime) -> bool {
        if self.max_lines_per_second == 0 {
            return true;
        }
        let second = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut budget = self.budgets[category as usize].lock();
        if budget.second != second {
            let dropped = std::mem::take(&mut budget.dropped);
            budget.second = second;
            budget.written = 0;
            if dropped > 0 {
                tracing::warn!(
                    category = category.as_str(),
                    dropped,
                    limit = self.max_lines_per_second,
                    "resource log lines dropped over logs.max_lines_per_second"
                );
            }
        }
        if budget.written < self.max_lines_per_second {
            budget.written += 1;
            true
        } else {
            budget.dropped += 1;
            self.lines_dropped.fetch_add(1, Ordering::Relaxed);
            false
        }
    }
}

#[cfg(test)]
mod tests;
