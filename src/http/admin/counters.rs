//! The raw counters the console draws its rates from, read by metric name through
//! [`Metrics::get`] only: the metric set is reworked elsewhere, and a name this table asks for
//! that the broker does not have is left out of the answer (the console then shows no chart
//! for it) rather than breaking the build.

use serde_json::{Map, Value};

use crate::telemetry::Metrics;

/// (key in the overview's `counters`, metric names to try in order: the first one the broker
/// has is used).
const COUNTERS: &[(&str, &[&str])] = &[
    (
        "messagesReceived",
        &[
            "switchboard_messages_total{endpoint=\"client\",direction=\"in\"}",
            "switchboard_messages_received_total",
        ],
    ),
    (
        "messagesDelivered",
        &[
            "switchboard_messages_total{endpoint=\"client\",direction=\"out\"}",
            "switchboard_messages_delivered_total",
        ],
    ),
    (
        "bytesReceived",
        &["switchboard_bytes_total{endpoint=\"client\",direction=\"in\"}"],
    ),
    (
        "bytesSent",
        &["switchboard_bytes_total{endpoint=\"client\",direction=\"out\"}"],
    ),
    ("socketWrites", &["switchboard_socket_writes_total"]),
    ("restRequests", &["switchboard_rest_requests_total"]),
    (
        "connectionsOpened",
        &["switchboard_connections_opened_total"],
    ),
    (
        "connectionsClosed",
        &["switchboard_connections_closed_total"],
    ),
    ("handshakesFailed", &["switchboard_handshakes_failed_total"]),
    ("authFailures", &["switchboard_auth_failures_total"]),
    (
        "outboxDropped",
        &["switchboard_outbox_dropped_messages_total"],
    ),
];

/// The counters of [`COUNTERS`] the broker has, by key.
pub(super) fn read(metrics: &Metrics) -> Map<String, Value> {
    COUNTERS
        .iter()
        .filter_map(|(key, names)| {
            let value = names.iter().find_map(|name| metrics.get(name))?;
            Some(((*key).to_owned(), Value::from(value)))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_counters_are_read_by_name_and_unknown_ones_left_out() {
        use crate::telemetry::{Direction, Endpoint};
        let m = Metrics::default();
        Metrics::add(&m.socket_writes, 7);
        m.labelled.traffic(Endpoint::Client, Direction::In, 3, 120);
        m.labelled.traffic(Endpoint::Client, Direction::Out, 5, 400);
        m.labelled
            .traffic(Endpoint::Server, Direction::In, 100, 9999);
        let read = read(&m);
        assert_eq!(
            (
                read["messagesReceived"].as_u64(),
                read["bytesReceived"].as_u64()
            ),
            (Some(3), Some(120)),
            "client traffic only: {read:?}"
        );
        assert_eq!(
            (
                read["messagesDelivered"].as_u64(),
                read["bytesSent"].as_u64()
            ),
            (Some(5), Some(400))
        );
        assert_eq!(read["socketWrites"], 7);
        // Client traffic comes from the labelled families (`switchboard_messages_total`,
        // `switchboard_bytes_total`): the console draws its rates from these four.
        for key in [
            "messagesReceived",
            "messagesDelivered",
            "bytesReceived",
            "bytesSent",
        ] {
            assert!(read[key].is_u64(), "{key} in {read:?}");
        }
        // Every key is either read from a metric the broker has or left out.
        for (key, names) in COUNTERS {
            let has = names.iter().any(|n| m.get(n).is_some());
            assert_eq!(read.contains_key(*key), has, "{key}");
        }
    }
}
