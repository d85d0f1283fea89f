//! Counters and their Prometheus rendering.
//!
//! Each counter is a relaxed atomic, named after the `switchboard_` metric it renders as. Hot
//! paths add to a counter once per batch (a fan-out adds its delivered count once, not once per
//! recipient). The counters are plain atomics rather than a metrics facade so that tests and the
//! embedding API can read exact values (`Metrics::get`) without a recorder.
//!
//! The counters below are unlabelled (or have a fixed label set written into their names);
//! the families with labels — connections by transport, closes by Azure's close category,
//! traffic, REST and upstream latency histograms, per-hub series for the busiest hubs, and the
//! gauges computed at scrape time — are in [`families`] and [`hubs`], rendered after them.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

pub mod families;
pub mod hubs;

pub use families::{Direction, Endpoint, Histogram, Labelled, RestOperation, UpstreamEvent};
pub use hubs::{HubRegistry, HubStats};

macro_rules! counters {
    ($( $(#[$doc:meta])* $field:ident => $name:literal $({$label:literal})?, $kind:literal, $help:literal; )*) => {
        /// All of Switchboard's counters and gauges.
        #[derive(Debug, Default)]
        pub struct Metrics {
            $( $(#[$doc])* pub $field: AtomicU64, )*
            /// The labelled families.
            pub labelled: Labelled,
        }

        /// Metric names (with their label set, for the series of a labelled family), for lookups
        /// with [`Metrics::get`].
        #[allow(non_upper_case_globals)]
        pub mod names {
            $( #[doc = $help] pub const $field: &str = concat!($name $(, "{", $label, "}")?); )*
        }

        impl Metrics {
            /// Render every metric in the Prometheus text exposition format. The series of one
            /// labelled family are listed together under one `HELP` and `TYPE`.
            pub fn render(&self) -> String {
                let mut out = String::with_capacity(4096);
                let mut family = "";
                $(
                    if family != $name {
                        let _ = writeln!(out, "# HELP {} {}", $name, $help);
                        let _ = writeln!(out, "# TYPE {} {}", $name, $kind);
                        family = $name;
                    }
                    let _ = writeln!(out, "{} {}", names::$field, self.$field.load(Ordering::Relaxed));
                )*
                let _ = family;
                let open = self.connections_current.load(Ordering::Relaxed)
                    + self.server_connections_current.load(Ordering::Relaxed);
                self.labelled.render(&mut out, open, true);
                out
            }

            /// The current value of the metric called `name` (a labelled series with its label
            /// set, e.g. `switchboard_throttled_total{by="ip"}`, or of a labelled family as
            /// rendered, e.g. `switchboard_connection_closes_total{endpoint="client",category="normal"}`;
            /// fractional values are rounded down). Looking up a labelled family renders them
            /// all (and ranks the hubs, as a scrape does): for tests and occasional reads.
            pub fn get(&self, name: &str) -> Option<u64> {
                match name {
                    $( names::$field => Some(self.$field.load(Ordering::Relaxed)), )*
                    _ => {
                        let mut out = String::new();
                        self.labelled.render(&mut out, 0, false);
                        series_value(&out, name)
                    }
                }
            }
        }
    };
}

counters! {
    /// Client connections that completed the handshake.
    connections_opened => "switchboard_connections_opened_total", "counter", "Client connections that completed the handshake.";
    /// Client connections that ended (after a successful handshake).
    connections_closed => "switchboard_connections_closed_total", "counter", "Client connections that ended after a successful handshake.";
    /// Client connections open right now (handshake done).
    connections_current => "switchboard_connections", "gauge", "Client connections currently open.";
    /// Handshakes refused (bad protocol, mode, timeout).
    handshakes_failed => "switchboard_handshakes_failed_total", "counter", "Client handshakes that failed or were refused.";
    /// Successful negotiate calls.
    negotiations => "switchboard_negotiations_total", "counter", "Successful negotiate requests.";
    /// Requests refused because a connection or negotiation limit was reached.
    connections_rejected_limit => "switchboard_connections_rejected_total", "counter", "Negotiations or connections refused with 429 because a limit was reached.";
    /// Requests refused for a missing, bad or expired token.
    auth_failures => "switchboard_auth_failures_total", "counter", "Requests refused with 401 for a missing, invalid or expired token.";
    /// Requests for an existing connection with a token of another hub or user.
    connection_takeover_refused => "switchboard_connection_takeover_refused_total", "counter", "Requests addressed to a negotiated or open connection with a valid token of another hub or user, answered as for an unknown id.";
    /// Messages queued into connection outboxes.
    messages_delivered => "switchboard_messages_delivered_total", "counter", "Messages queued to client connections.";
    /// Hub messages received from clients.
    messages_received => "switchboard_messages_received_total", "counter", "Hub messages received from clients.";
    /// Client messages that had nowhere to go and were dropped.
    messages_dropped_no_route => "switchboard_messages_dropped_no_route_total", "counter", "Client messages dropped because their mode gives them no destination.";
    /// Client invocations answered with an error Completion because nothing could run them.
    invocations_rejected => "switchboard_invocations_rejected_total", "counter", "Client invocations answered with an error because nothing can run them.";
    /// Connections closed because their outbox was full (slow consumers).
    outbox_overflow => "switchboard_outbox_overflow_total", "counter", "Connections closed because their outbox overflowed (slow consumer).";
    /// Messages discarded with an overflowing outbox.
    outbox_dropped => "switchboard_outbox_dropped_messages_total", "counter", "Messages discarded because the recipient's outbox was full or closing.";
    /// Writes that did not finish within `limits.send_timeout_secs` (the connection is closed).
    send_timeouts => "switchboard_send_timeouts_total", "counter", "Connections closed because a write to them did not finish within limits.send_timeout_secs (the peer stopped reading).";
    /// Socket writes performed by connection actors.
    socket_writes => "switchboard_socket_writes_total", "counter", "WebSocket frames written to clients (each may carry several messages).";
    /// Messages a hub wrote straight to a lent WebSocket (no task woken).
    direct_writes => "switchboard_direct_writes_total", "counter", "Messages a hub wrote straight to an idle WebSocket client's socket instead of queueing them for its connection task (counted in socket_writes as well).";
    /// Requests refused by the network rules, by kind.
    network_denied_client => "switchboard_network_denied_total" {"kind=\"ClientConnection\""}, "counter", "Requests refused with 403 by the network rules ([network]), by request kind.";
    /// Requests refused by the network rules, by kind.
    network_denied_server => "switchboard_network_denied_total" {"kind=\"ServerConnection\""}, "counter", "Requests refused with 403 by the network rules ([network]), by request kind.";
    /// Requests refused by the network rules, by kind.
    network_denied_rest => "switchboard_network_denied_total" {"kind=\"RESTAPI\""}, "counter", "Requests refused with 403 by the network rules ([network]), by request kind.";
    /// Requests refused by the network rules, by kind.
    network_denied_admin => "switchboard_network_denied_total" {"kind=\"Admin\""}, "counter", "Requests refused with 403 by the network rules ([network]), by request kind.";
    /// Requests refused by the network rules, by kind.
    network_denied_metrics => "switchboard_network_denied_total" {"kind=\"Metrics\""}, "counter", "Requests refused with 403 by the network rules ([network]), by request kind.";
    /// TLS handshakes that failed or timed out (the connection is closed).
    tls_handshake_failures => "switchboard_tls_handshake_failures_total", "counter", "Connections closed during their TLS handshake: a protocol error, a certificate the client refused, plain HTTP on the TLS port, or no handshake within 10 s.";
    /// Pongs not sent: the peer pinged faster than it read the answers.
    pongs_skipped => "switchboard_websocket_pongs_skipped_total", "counter", "WebSocket Pongs not sent because the peer sent Pings faster than it read the answers (at most 1 KiB of control frames waits per connection).";
    /// Connections closed for a protocol error.
    protocol_errors => "switchboard_protocol_errors_total", "counter", "Connections closed because of a malformed or oversized message.";
    /// Connections closed because the client stopped sending.
    client_timeouts => "switchboard_client_timeouts_total", "counter", "Connections closed because the client sent nothing within the client timeout.";
    /// REST requests handled.
    rest_requests => "switchboard_rest_requests_total", "counter", "REST API requests handled.";
    /// REST requests refused with 4xx.
    rest_errors => "switchboard_rest_errors_total", "counter", "REST API requests answered with a 4xx status.";
    /// Hub-server connections that completed the handshake.
    server_connections_opened => "switchboard_server_connections_opened_total", "counter", "Hub-server connections that completed the handshake.";
    /// Hub-server connections open now.
    server_connections_current => "switchboard_server_connections", "gauge", "Hub-server connections currently open.";
    /// Hub-server handshakes refused (e.g. in Serverless mode).
    server_handshakes_failed => "switchboard_server_handshakes_failed_total", "counter", "Hub-server handshakes refused.";
    /// Answers to a hub server dropped because its outbox was full.
    server_outbox_full => "switchboard_server_outbox_full_total", "counter", "Frames for a hub server dropped because its outbox was full.";
    /// Hub-server messages addressed to a client of another hub.
    server_cross_hub_refused => "switchboard_server_cross_hub_refused_total", "counter", "Hub-server messages (ConnectionData, MultiConnectionData, CloseConnection, ClientInvocation, completions) addressed to a client of another hub, ignored.";
    /// Frames for a hub server whose sender had to wait for room in its outbox.
    server_outbox_waits => "switchboard_server_outbox_waits_total", "counter", "Frames for a hub server whose sender (a client connection) had to wait for room in the server connection's outbox (backpressure).";
    /// Upstream calls made for client invocations and events.
    upstream_calls => "switchboard_upstream_calls_total", "counter", "Upstream webhook calls made (invocations and connected/disconnected events).";
    /// Upstream calls that failed or got a non-2xx answer.
    upstream_failures => "switchboard_upstream_failures_total", "counter", "Upstream calls that failed (transport error, timeout, overload) or were answered with a non-2xx status.";
    /// Client invocations refused because the connection's upstream queue was full.
    upstream_queue_full => "switchboard_upstream_queue_full_total", "counter", "Client invocations refused because the connection's upstream queue was full.";
    /// Clients refused because the upstream refused their connected event.
    upstream_refused_connections => "switchboard_upstream_refused_connections_total", "counter", "Clients refused because the upstream answered their connected event with a non-2xx status or could not be reached.";
        /// Stateful-reconnect clients that came back within the window.
    reconnects => "switchboard_stateful_reconnects_total", "counter", "Stateful-reconnect clients that resumed their connection on a new WebSocket.";
    /// SSE/long-polling POSTs refused with 429: the connection's inbound queue was full and
    /// another POST already waited for room.
    inbound_busy => "switchboard_inbound_busy_total", "counter", "SSE and long-polling POSTs refused with 429 because the connection's inbound queue was full and another POST already waited for room.";
    /// Hub commands that could not be queued because the hub inbox was closed.
    hub_unavailable => "switchboard_hub_unavailable_total", "counter", "Operations that failed because a hub actor was gone.";
    /// Hub actors running now.
    hubs_current => "switchboard_hubs", "gauge", "Hub actors currently running.";
    /// Hubs that stopped because they were idle (see `limits.hub_idle_timeout_secs`).
    hubs_dropped_idle => "switchboard_hubs_dropped_idle_total", "counter", "Hubs stopped and forgotten because they had no connections and no remembered memberships for limits.hub_idle_timeout_secs.";
    /// New hubs refused because `limits.max_hubs` hubs were running.
    hubs_rejected => "switchboard_hubs_rejected_total", "counter", "Requests refused because starting their hub would exceed limits.max_hubs.";
    /// Hub actors that panicked (one series of `switchboard_actor_panics_total`).
    actor_panics_hub => "switchboard_actor_panics_total" {"actor=\"hub\""}, "counter", "Actors that panicked (the panic is logged with its hub and connection), by kind of actor.";
    /// Client connection actors that panicked.
    actor_panics_client => "switchboard_actor_panics_total" {"actor=\"client\""}, "counter", "Actors that panicked (the panic is logged with its hub and connection), by kind of actor.";
    /// Hub-server connection actors that panicked.
    actor_panics_server => "switchboard_actor_panics_total" {"actor=\"server\""}, "counter", "Actors that panicked (the panic is logged with its hub and connection), by kind of actor.";
    /// Negotiations and connections refused by a per-user limit (`throttle.*_per_user`).
    throttled_user => "switchboard_throttled_total" {"by=\"user\""}, "counter", "Negotiations and connections refused with 429 by a per-tenant limit (throttle.*), by the limit's key.";
    /// Negotiations and connections refused by a per-token limit (`throttle.*_per_token`).
    throttled_signature => "switchboard_throttled_total" {"by=\"signature\""}, "counter", "Negotiations and connections refused with 429 by a per-tenant limit (throttle.*), by the limit's key.";
    /// Negotiations and connections refused by a per-address limit (`throttle.*_per_ip`).
    throttled_ip => "switchboard_throttled_total" {"by=\"ip\""}, "counter", "Negotiations and connections refused with 429 by a per-tenant limit (throttle.*), by the limit's key.";
    /// Cluster: the engine (Redis) connection is up (1) or down (0); 1 without a cluster.
    cluster_engine_up => "switchboard_cluster_engine_up", "gauge", "1 while the cluster engine (Redis) is reachable and subscribed, 0 while it is not; 1 on a single node.";
    /// Cluster: other nodes heard from within the node timeout.
    cluster_nodes => "switchboard_cluster_nodes", "gauge", "Other cluster nodes heard from within the node timeout.";
    /// Cluster: messages published to other nodes.
    cluster_published => "switchboard_cluster_published_total", "counter", "Messages published to the cluster engine.";
    /// Cluster: messages that could not be published (engine unreachable or failing).
    cluster_publish_failed => "switchboard_cluster_publish_failed_total", "counter", "Messages not published because the cluster engine was unreachable or failed (delivered locally only).";
    /// Cluster: messages dropped because the outgoing queue was full.
    cluster_publish_dropped => "switchboard_cluster_publish_dropped_total", "counter", "Hub messages for other nodes dropped because the outgoing queue was full (cluster.max_outgoing_messages/bytes).";
    /// Cluster: messages received from other nodes.
    cluster_received => "switchboard_cluster_received_total", "counter", "Messages received from other nodes.";
    /// Cluster: received hub messages dropped because the hub's inbox was full.
    cluster_inbound_dropped => "switchboard_cluster_inbound_dropped_total", "counter", "Hub messages from other nodes dropped because the local hub's inbox was full.";
    /// Cluster: malformed or foreign-version messages.
    cluster_malformed => "switchboard_cluster_malformed_total", "counter", "Messages from the cluster engine that were not valid (malformed or of another wire version).";
    /// Cluster: questions sent to other nodes.
    cluster_requests => "switchboard_cluster_requests_total", "counter", "Questions to other nodes (group operations, existence checks, listings, closes).";
    /// Cluster: questions that failed (engine down, timeout, too many in flight).
    cluster_request_failures => "switchboard_cluster_request_failures_total", "counter", "Questions to other nodes that failed: engine unreachable, no answer within cluster.request_timeout_ms, or too many in flight.";
    /// Cluster: times the engine connection was lost.
    cluster_engine_lost => "switchboard_cluster_engine_lost_total", "counter", "Times the cluster engine (Redis) connection was lost; messages from other nodes published meanwhile are not received.";
    /// Cluster: other nodes that stopped heartbeating or left.
    cluster_nodes_lost => "switchboard_cluster_nodes_lost_total", "counter", "Other nodes that left or stopped heartbeating.";
}

/// The value of series `name` in rendered text (rounded down).
fn series_value(text: &str, name: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let value = line.strip_prefix(name)?.strip_prefix(' ')?;
        let v: f64 = value.parse().ok()?;
        Some(v as u64)
    })
}

impl Metrics {
    /// The counter of requests of `kind` refused by the network rules.
    pub fn network_denied(&self, kind: crate::config::RequestKind) -> &AtomicU64 {
        use crate::config::RequestKind;
        match kind {
            RequestKind::ClientConnection => &self.network_denied_client,
            RequestKind::ServerConnection => &self.network_denied_server,
            RequestKind::RestApi => &self.network_denied_rest,
            RequestKind::Admin => &self.network_denied_admin,
            RequestKind::Metrics => &self.network_denied_metrics,
        }
    }

    /// Add `n` to a counter.
    #[inline]
    pub fn add(counter: &AtomicU64, n: u64) {
        if n != 0 {
            counter.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Add one to a counter.
    #[inline]
    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Subtract one from a gauge.
    #[inline]
    pub fn dec(gauge: &AtomicU64) {
        gauge.fetch_sub(1, Ordering::Relaxed);
    }

    /// Set a gauge.
    #[inline]
    pub fn set(gauge: &AtomicU64, value: u64) {
        gauge.store(value, Ordering::Relaxed);
    }
}

/// Whether log lines on stderr may carry ANSI colours: only for a person at a terminal — not in
/// files, pipes or journald — and not with `NO_COLOR` set (<https://no-color.org>).
pub fn colours_wanted() -> bool {
    std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// Install the tracing subscriber (log filter from `RUST_LOG`, default `info`), on stderr: text
/// lines, or one JSON object per line with [`LogFormat::Json`](crate::config::LogFormat).
pub fn init_tracing(format: crate::config::LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colours_wanted())
        .with_writer(std::io::stderr);
    // A second call (tests, embedding) keeps the first subscriber; that is fine.
    let _ = match format {
        crate::config::LogFormat::Text => builder.try_init(),
        crate::config::LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_and_get() {
        let m = Metrics::default();
        Metrics::add(&m.messages_delivered, 5);
        assert_eq!(m.get(names::messages_delivered), Some(5));
        let text = m.render();
        assert!(
            text.contains("switchboard_messages_delivered_total 5\n"),
            "{text}"
        );
        assert!(text.contains("# TYPE switchboard_connections gauge"));
        assert_eq!(m.get("nope"), None);
    }

    #[test]
    fn a_labelled_family_has_one_help_and_one_series_per_label() {
        let m = Metrics::default();
        Metrics::inc(&m.throttled_ip);
        assert_eq!(m.get("switchboard_throttled_total{by=\"ip\"}"), Some(1));
        assert_eq!(m.get(names::throttled_user), Some(0));
        let text = m.render();
        assert_eq!(
            text.matches("# TYPE switchboard_throttled_total counter\n")
                .count(),
            1,
            "{text}"
        );
        for series in [
            "switchboard_throttled_total{by=\"user\"} 0\n",
            "switchboard_throttled_total{by=\"signature\"} 0\n",
            "switchboard_throttled_total{by=\"ip\"} 1\n",
        ] {
            assert!(text.contains(series), "{series} missing from {text}");
        }
    }

    #[test]
    fn labelled_series_share_one_family_header() {
        let m = Metrics::default();
        Metrics::inc(&m.actor_panics_client);
        let text = m.render();
        assert_eq!(
            text.matches("# TYPE switchboard_actor_panics_total counter\n")
                .count(),
            1,
            "{text}"
        );
        assert!(text.contains("switchboard_actor_panics_total{actor=\"hub\"} 0\n"));
        assert!(text.contains("switchboard_actor_panics_total{actor=\"client\"} 1\n"));
        assert!(text.contains("switchboard_actor_panics_total{actor=\"server\"} 0\n"));
        assert_eq!(
            m.get(names::actor_panics_client),
            Some(1),
            "series are looked up by their full name"
        );
    }

    #[test]
    fn get_reads_labelled_families_as_rendered() {
        let m = Metrics::default();
        m.labelled
            .close(Endpoint::Client, crate::close::CloseCategory::PingTimeout);
        m.labelled.rest_request(
            RestOperation::Send,
            202,
            std::time::Duration::from_millis(3),
        );
        assert_eq!(
            m.get(
                "switchboard_connection_closes_total{endpoint=\"client\",category=\"ping_timeout\"}"
            ),
            Some(1)
        );
        assert_eq!(
            m.get("switchboard_rest_request_duration_seconds_count{operation=\"send\"}"),
            Some(1)
        );
        assert_eq!(
            m.get("switchboard_rest_responses_total{operation=\"send\",status=\"2xx\"}"),
            Some(1)
        );
        assert_eq!(m.get("switchboard_connection_closes_total"), None);
        let text = m.render();
        assert_eq!(
            text.matches("# TYPE switchboard_rest_request_duration_seconds histogram\n")
                .count(),
            1
        );
    }
}
