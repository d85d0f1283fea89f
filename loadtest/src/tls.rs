//! `https://` and `wss://` brokers: the system's certificate authorities (`SSL_CERT_FILE` and
//! `SSL_CERT_DIR` apply) plus the CA certificates of `--ca-file`, set once per process (with
//! the SDK's [`switchboard_sdk::tls`]).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::{Result, anyhow};
use tokio_tungstenite::Connector;

struct Trust {
    ca_file: PathBuf,
    connector: Option<Connector>,
    roots: Vec<reqwest::Certificate>,
}

static TRUST: OnceLock<Option<Trust>> = OnceLock::new();

/// Trust the CA certificates in `ca_file` (PEM) for the rest of the process.
pub fn init(ca_file: Option<&Path>) -> Result<()> {
    let trust = match ca_file {
        None => None,
        Some(path) => Some(Trust {
            ca_file: path.to_owned(),
            connector: switchboard_sdk::tls::ws_connector(Some(path)).map_err(|e| anyhow!(e))?,
            roots: switchboard_sdk::tls::reqwest_roots(Some(path)).map_err(|e| anyhow!(e))?,
        }),
    };
    let _ = TRUST.set(trust);
    Ok(())
}

fn trust() -> Option<&'static Trust> {
    TRUST.get().and_then(Option::as_ref)
}

/// The `--ca-file` given, for worker processes.
pub fn ca_file() -> Option<&'static Path> {
    trust().map(|t| t.ca_file.as_path())
}

/// The WebSocket connector: `None` (the system's authorities) without `--ca-file`.
pub fn connector() -> Option<Connector> {
    trust().and_then(|t| t.connector.clone())
}

/// The CA file's certificates for reqwest (added to the system's authorities).
pub fn reqwest_roots() -> Vec<reqwest::Certificate> {
    trust().map(|t| t.roots.clone()).unwrap_or_default()
}
