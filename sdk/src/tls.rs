//! Trust for `https://` and `wss://` endpoints: the system's certificate authorities (read as
//! OpenSSL does, so `SSL_CERT_FILE` and `SSL_CERT_DIR` apply) plus, optionally, the CA
//! certificates of one PEM file — for a service whose certificate a private CA signed.
//!
//! [`HubServerOptions::ca_file`](crate::HubServerOptions::ca_file) and
//! [`ManagementOptions::ca_file`](crate::management::ManagementOptions::ca_file) use these; the
//! functions are public for tools built on the SDK (the `switchboard` command line, the load
//! generator) that open their own connections.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;

/// The certificates of the PEM file at `path`; at least one.
pub fn read_ca_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("cannot read CA certificates from {}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{} holds no PEM certificate", path.display()));
    }
    Ok(certs)
}

/// The TLS connector for a server connection's WebSocket: `None` (the system's authorities,
/// tokio-tungstenite's default) without a CA file.
pub fn ws_connector(
    ca_file: Option<&Path>,
) -> Result<Option<tokio_tungstenite::Connector>, String> {
    let Some(path) = ca_file else {
        return Ok(None);
    };
    let mut roots = rustls::RootCertStore::empty();
    // The system's authorities too; one that cannot be parsed is skipped, as the default does.
    let native = rustls_native_certs::load_native_certs();
    roots.add_parsable_certificates(native.certs);
    for cert in read_ca_file(path)? {
        roots
            .add(cert)
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Some(tokio_tungstenite::Connector::Rustls(Arc::new(config))))
}

/// The CA file's certificates for reqwest (added to the system's authorities).
pub fn reqwest_roots(ca_file: Option<&Path>) -> Result<Vec<reqwest::Certificate>, String> {
    let Some(path) = ca_file else {
        return Ok(Vec::new());
    };
    read_ca_file(path)?
        .iter()
        .map(|cert| reqwest::Certificate::from_der(cert).map_err(|e| e.to_string()))
        .collect()
}
