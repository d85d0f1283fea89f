//! An event as a JSON line in Azure's resource-log shape, and as a `tracing` event.

use std::io::Write as _;
use std::net::IpAddr;
use std::time::SystemTime;

use serde::Serialize;

use super::{Event, LogLevel};

/// One resource-log line: Azure's top-level fields, the event's as `properties`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Line<'a> {
    time: &'a str,
    resource_id: &'static str,
    location: &'a str,
    category: &'static str,
    level: &'static str,
    operation_name: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    caller_ip_address: Option<IpAddr>,
    properties: Properties<'a>,
}

#[derive(Serialize)]
struct Properties<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(flatten)]
    event: &'a Event<'a>,
}

/// Azure's name of a level.
fn azure_level(level: LogLevel) -> &'static str {
    match level {
        LogLevel::Off | LogLevel::Debug => "Verbose",
        LogLevel::Error => "Error",
        LogLevel::Warning => "Warning",
        LogLevel::Info => "Informational",
    }
}

/// `event` as one JSON object followed by a newline.
pub(super) fn json_line(event: &Event<'_>, time: SystemTime, node: &str) -> Vec<u8> {
    let category = event.category();
    let time = rfc3339_millis(time);
    let line = Line {
        time: &time,
        resource_id: "switchboard",
        location: node,
        category: category.azure_name(),
        level: azure_level(event.level()),
        operation_name: event.operation,
        caller_ip_address: event.ip,
        properties: Properties {
            kind: category.azure_name(),
            event,
        },
    };
    let mut out = Vec::with_capacity(256);
    // Serializing plain strings and numbers into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut out, &line);
    out.push(b'\n');
    out
}

/// Write a whole line to stderr at once (lines of concurrent writers do not interleave).
pub(super) fn stderr_line(line: &[u8]) {
    let mut err = std::io::stderr().lock();
    let _ = err.write_all(line);
}

/// The event as a `tracing` event (text logs), target `switchboard::<category>`.
pub(super) fn tracing_event(e: &Event<'_>) {
    macro_rules! emit {
        ($level:expr, $target:literal) => {
            tracing::event!(
                target: $target,
                $level,
                op = e.operation,
                hub = e.hub,
                connection = e.connection_id,
                user = e.user_id,
                transport = e.transport_type,
                ip = e.ip.map(tracing::field::display),
                close = e.close_category,
                kind = e.message_type,
                tracing_id = e.message_tracing_id,
                target_method = e.target,
                group = e.group_name,
                server = e.server_id,
                method = e.method,
                path = e.path,
                status = e.status_code,
                ms = e.duration_ms,
                "{}",
                e.message
            )
        };
    }
    macro_rules! by_category {
        ($level:expr) => {
            match e.category() {
                super::Category::Connectivity => emit!($level, "switchboard::connectivity"),
                super::Category::Messaging => emit!($level, "switchboard::messaging"),
                super::Category::Http => emit!($level, "switchboard::http"),
            }
        };
    }
    // The category's level already chose the event: below warnings, it is written at INFO so
    // that the default `RUST_LOG=info` does not hide what `[logs]` asked for.
    match e.level() {
        LogLevel::Error => by_category!(tracing::Level::ERROR),
        LogLevel::Warning => by_category!(tracing::Level::WARN),
        _ => by_category!(tracing::Level::INFO),
    }
}

/// `time` as RFC 3339 in UTC with milliseconds, e.g. `2026-12-07T15:00:00.123Z`.
pub(crate) fn rfc3339_millis(time: SystemTime) -> String {
    let d = time
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, day) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_millis()
    )
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn times_are_rfc3339_utc_with_milliseconds() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_millis(1_796_655_600_123);
        assert_eq!(rfc3339_millis(t), "2026-12-07T15:00:00.123Z");
        assert_eq!(
            rfc3339_millis(SystemTime::UNIX_EPOCH),
            "1970-01-01T00:00:00.000Z"
        );
        // A leap day.
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(rfc3339_millis(t), "2000-02-29T00:00:00.000Z");
    }
}
