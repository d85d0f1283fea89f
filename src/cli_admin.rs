//! `switchboard admin`: show or change a running broker's runtime settings (`/admin/settings`:
//! service mode, access keys, upstream rules) and its resource-log levels (`/admin/logs`).
//!
//! Prints the broker's answer (JSON) and exits 0; exits 64 (`EX_USAGE`) for bad arguments and 1
//! when the broker refuses or cannot be reached.

use std::path::PathBuf;

use clap::Args;
use switchboard::config::ServiceMode;

use crate::cli::{EXIT_CONFIG, runtime};

#[derive(Args, Debug)]
pub(crate) struct AdminArgs {
    /// The broker (with --admin-listen: that port and the admin key).
    #[command(flatten)]
    broker: crate::cli_broker::BrokerArgs,
    /// Change the service mode (default, serverless, classic).
    #[arg(long)]
    mode: Option<String>,
    /// Replace the access keys (give it twice for primary and secondary).
    #[arg(long = "set-access-key")]
    set_access_keys: Vec<String>,
    /// Replace the upstream rules with these URL templates (all hubs, categories, events).
    #[arg(long = "set-upstream")]
    set_upstreams: Vec<String>,
    /// Remove every upstream rule.
    #[arg(long, conflicts_with = "set_upstreams")]
    clear_upstream: bool,
    /// Change a resource-log category's level, like connectivity=info (repeatable).
    #[arg(long = "log-level", value_name = "CATEGORY=LEVEL")]
    log_levels: Vec<String>,
    /// A PEM file of CA certificates to trust for an https:// broker, besides the system's
    /// (SSL_CERT_FILE and SSL_CERT_DIR apply too).
    #[arg(long = "ca-file", value_name = "FILE", env = "SWITCHBOARD_CA_FILE")]
    ca_file: Option<PathBuf>,
}

pub(crate) fn main(args: &AdminArgs) -> i32 {
    let mut patch = serde_json::Map::new();
    if let Some(mode) = &args.mode {
        if let Err(message) = mode.parse::<ServiceMode>() {
            eprintln!("switchboard: invalid configuration: mode: {message}");
            return EXIT_CONFIG;
        }
        patch.insert(
            "mode".into(),
            serde_json::Value::from(mode.to_ascii_lowercase()),
        );
    }
    if !args.set_access_keys.is_empty() {
        patch.insert(
            "accessKeys".into(),
            serde_json::Value::from(args.set_access_keys.clone()),
        );
    }
    if args.clear_upstream || !args.set_upstreams.is_empty() {
        let rules: Vec<serde_json::Value> = args
            .set_upstreams
            .iter()
            .map(|t| serde_json::json!({ "url_template": t }))
            .collect();
        patch.insert("upstream".into(), serde_json::Value::from(rules));
    }
    let mut levels = serde_json::Map::new();
    for setting in &args.log_levels {
        let parsed = setting.split_once('=').and_then(|(category, level)| {
            let category = switchboard::events::Category::parse(category.trim())?;
            let level = level.trim().parse::<switchboard::config::LogLevel>().ok()?;
            Some((category, level))
        });
        let Some((category, level)) = parsed else {
            eprintln!(
                "switchboard: --log-level: '{setting}' is not like connectivity=info (categories: connectivity, messaging, http; levels: off, error, warning, info, debug)"
            );
            return EXIT_CONFIG;
        };
        levels.insert(category.as_str().into(), level.as_str().into());
    }
    let cs = match args.broker.parse() {
        Ok(cs) => cs,
        Err(e) => {
            eprintln!("switchboard: {e}");
            return EXIT_CONFIG;
        }
    };
    let endpoint = cs.endpoint();
    let base = endpoint.as_str();
    let keys = switchboard::auth::AccessKeys::new(vec![cs.access_key().to_owned()]);
    let token = keys.mint(&format!("{}/admin/settings", cs.audience_base()), 300, &[]);
    let Some(runtime) = runtime() else {
        return 1;
    };
    let roots = match &args.ca_file {
        Some(path) => match switchboard_sdk::tls::reqwest_roots(Some(path)) {
            Ok(roots) => roots,
            Err(e) => {
                eprintln!("switchboard: --ca-file: {e}");
                return EXIT_CONFIG;
            }
        },
        None => Vec::new(),
    };
    let result: Result<(u16, String), reqwest::Error> = runtime.block_on(async {
        let client = reqwest::Client::builder().tls_certs_merge(roots).build()?;
        if !levels.is_empty() {
            let response = client
                .patch(format!("{base}/admin/logs"))
                .json(&levels)
                .bearer_auth(&token)
                .send()
                .await?;
            let status = response.status().as_u16();
            let body = response.text().await?;
            if status != 200 || patch.is_empty() {
                return Ok((status, body));
            }
            println!("{body}");
        }
        let url = format!("{base}/admin/settings");
        let request = if patch.is_empty() {
            client.get(url)
        } else {
            client.patch(url).json(&patch)
        };
        let response = request.bearer_auth(token).send().await?;
        let status = response.status().as_u16();
        Ok((status, response.text().await?))
    });
    match result {
        Ok((200, body)) => {
            println!("{body}");
            0
        }
        Ok((status, body)) => {
            eprintln!("switchboard: the broker answered {status}: {body}");
            1
        }
        Err(e) => {
            eprintln!("switchboard: {}", switchboard_sdk::http_error::describe(&e));
            1
        }
    }
}
