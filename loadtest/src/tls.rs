//! `https://` and `wss://` brokers: the system's certificate authorities (`SSL_CERT_FILE` and
//! `SSL_CERT_DIR` apply) plus the CA certificates of `--ca-file`, set once per process.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use anyhow::{Context as _, Result, bail};
use rustls::pki_types::pem::PemObject as _;
use tokio_tungstenite::Connector;

struct Trust {
    ca_file: PathBuf,
    connector: Connector,
    roots: Vec<reqwest::Certificate>,
}

static TRUST: OnceLock<Option<Trust>> = OnceLock::new();

/// Trust the CA certificates in `ca_file` (PEM) for the rest of the process.
pub fn init(ca_file: Option<&Path>) -> Result<()> {
    let trust = match ca_file {
        None => None,
        Some(path) => {
            let pem = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
            let roots = reqwest::Certificate::from_pem_bundle(&pem)
                .with_context(|| format!("CA certificates in {}", path.display()))?;
            if roots.is_empty() {
                bail!("{} holds no PEM certificate", path.display());
            }
            let mut store = rustls::RootCertStore::empty();
            store.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
            let (added, _) = store.add_parsable_certificates(
                rustls::pki_types::CertificateDer::pem_slice_iter(&pem).filter_map(Result::ok),
            );
            if added == 0 {
                bail!("{} holds no usable CA certificate", path.display());
            }
            let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
            let config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()?
                .with_root_certificates(store)
                .with_no_client_auth();
            Some(Trust {
                ca_file: path.to_owned(),
                connector: Connector::Rustls(Arc::new(config)),
                roots,
            })
        }
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
    trust().map(|t| t.connector.clone())
}

/// The CA file's certificates for reqwest (added to the system's authorities).
pub fn reqwest_roots() -> Vec<reqwest::Certificate> {
    trust().map(|t| t.roots.clone()).unwrap_or_default()
}
