//! `switchboard trace`: watch the live trace (`GET /admin/trace`) in a terminal — one line per
//! event, or the events' JSON with `--json` — until interrupted.
//!
//! Exits 64 (`EX_USAGE`) for bad arguments, 1 when the broker refuses the viewer or cannot be
//! reached, and 0 when the broker ends the stream.

use std::io::Write as _;

use clap::Args;
use serde_json::Value;

use crate::cli_broker::{EXIT_FAILED, block_on, usage};

/// Arguments of `switchboard trace`.
#[derive(Args, Debug, Clone)]
pub(crate) struct TraceArgs {
    /// The broker whose /admin serves the trace (with --admin-listen: that port and the admin
    /// key).
    #[command(flatten)]
    pub(crate) broker: crate::cli_broker::BrokerArgs,
    /// Only these categories: connectivity, messaging, http (comma-separated) [default: all].
    #[arg(long, value_name = "LIST")]
    pub(crate) categories: Option<String>,
    /// Only events of this hub.
    #[arg(long, value_name = "HUB")]
    pub(crate) hub: Option<String>,
    /// Only events of this connection.
    #[arg(long = "connection", value_name = "ID", allow_hyphen_values = true)]
    pub(crate) connection: Option<String>,
    /// Only events of this user.
    #[arg(long, value_name = "USER", allow_hyphen_values = true)]
    pub(crate) user: Option<String>,
    /// Print each event's JSON (one object per line) instead of a summary line.
    #[arg(long)]
    pub(crate) json: bool,
    /// A PEM file of CA certificates to trust for an https:// broker, besides the system's.
    #[arg(long = "ca-file", value_name = "FILE", env = "SWITCHBOARD_CA_FILE")]
    pub(crate) ca_file: Option<std::path::PathBuf>,
}

pub(crate) fn main(args: TraceArgs) -> i32 {
    block_on(run(args))
}

async fn run(args: TraceArgs) -> i32 {
    let cs = match args.broker.parse() {
        Ok(cs) => cs,
        Err(e) => return usage(&e),
    };
    let roots = match switchboard_sdk::tls::reqwest_roots(args.ca_file.as_deref()) {
        Ok(roots) => roots,
        Err(e) => return usage(&format!("--ca-file: {e}")),
    };
    let base = cs.endpoint();
    let keys = switchboard::auth::AccessKeys::new(vec![cs.access_key().to_owned()]);
    let token = keys.mint(&format!("{}/admin", cs.audience_base()), 3600, &[]);
    let mut query = form_urlencoded::Serializer::new(String::new());
    for (name, value) in [
        ("categories", &args.categories),
        ("hub", &args.hub),
        ("connectionId", &args.connection),
        ("userId", &args.user),
    ] {
        if let Some(value) = value {
            query.append_pair(name, value);
        }
    }
    let url = format!("{base}/admin/trace?{}", query.finish());
    let client = match reqwest::Client::builder().tls_certs_merge(roots).build() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("switchboard: {e}");
            return EXIT_FAILED;
        }
    };
    let mut response = match client.get(&url).bearer_auth(token).send().await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("switchboard: {}", switchboard_sdk::http_error::describe(&e));
            return EXIT_FAILED;
        }
    };
    if !response.status().is_success() {
        let status = response.status().as_u16();
        let body = response.text().await.unwrap_or_default();
        eprintln!("switchboard: the broker answered {status}: {body}");
        return EXIT_FAILED;
    }
    eprintln!("switchboard: watching {base}/admin/trace (Ctrl-C to stop)");
    let mut buf = String::new();
    loop {
        let chunk = match response.chunk().await {
            Ok(Some(chunk)) => chunk,
            Ok(None) => return 0,
            Err(e) => {
                eprintln!("switchboard: the trace stream failed: {e}");
                return EXIT_FAILED;
            }
        };
        buf.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buf.find("\n\n") {
            let event: String = buf.drain(..end + 2).collect();
            if let Some(line) = render(&event, args.json) {
                let mut out = std::io::stdout().lock();
                if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
                    // Nobody reads our output any more (a closed pipe).
                    return 0;
                }
            }
        }
    }
}

/// One Server-Sent Event of the trace as a line to print; `None` for comments.
fn render(event: &str, json: bool) -> Option<String> {
    if let Some(data) = event.strip_prefix("event: dropped\ndata: ") {
        let dropped = serde_json::from_str::<Value>(data.trim())
            .ok()
            .and_then(|v| v["dropped"].as_u64())
            .unwrap_or_default();
        return Some(if json {
            format!("{{\"dropped\":{dropped}}}")
        } else {
            format!("-- {dropped} events dropped so far: this viewer reads slower than they happen")
        });
    }
    let data = event.strip_prefix("data: ")?.trim();
    if json {
        return Some(data.to_owned());
    }
    let Ok(v) = serde_json::from_str::<Value>(data) else {
        return Some(data.to_owned());
    };
    Some(summary(&v))
}

/// `15:00:00.123 Warning ConnectionEnded hub=chat connection=c1 user=alice ip=…: message`.
fn summary(v: &Value) -> String {
    let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    let time = text(&v["time"]);
    let time = time.get(11..23).unwrap_or(&time);
    let p = &v["properties"];
    let mut line = format!(
        "{time} {:<13} {}",
        text(&v["level"]),
        text(&v["operationName"])
    );
    for (label, value) in [
        ("hub", &p["hub"]),
        ("connection", &p["connectionId"]),
        ("user", &p["userId"]),
        ("transport", &p["transportType"]),
        ("close", &p["closeCategory"]),
        ("ip", &v["callerIpAddress"]),
    ] {
        if let Some(value) = value.as_str() {
            line.push_str(&format!(" {label}={value}"));
        }
    }
    line.push_str(": ");
    line.push_str(p["message"].as_str().unwrap_or_default());
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_print_as_one_summary_line_or_their_json() {
        let event = "data: {\"time\":\"2026-12-07T15:00:00.123Z\",\"level\":\"Warning\",\"operationName\":\"ConnectionEnded\",\"callerIpAddress\":\"10.0.0.7\",\"properties\":{\"hub\":\"chat\",\"connectionId\":\"c1\",\"closeCategory\":\"ping_timeout\",\"message\":\"Connection ended: ping timeout.\"}}\n\n";
        assert_eq!(
            render(event, false).unwrap(),
            "15:00:00.123 Warning       ConnectionEnded hub=chat connection=c1 close=ping_timeout ip=10.0.0.7: Connection ended: ping timeout."
        );
        assert!(render(event, true).unwrap().starts_with("{\"time\""));
        assert_eq!(render(": keep-alive\n\n", false), None);
        assert_eq!(
            render("event: dropped\ndata: {\"dropped\":12}\n\n", true).unwrap(),
            "{\"dropped\":12}"
        );
    }
}
