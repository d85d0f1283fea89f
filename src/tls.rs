//! TLS on the listener: rustls (aws-lc-rs), TLS 1.2 and 1.3, HTTP/1.1.
//!
//! The certificate chain and key come from PEM files ([`TlsConfig`]); [`TlsListener::reload`]
//! reads them again (the CLI does on SIGHUP) and each handshake after it presents the new
//! certificate, while connections already up keep their sessions. After the handshake the
//! connection is a [`Stream`] like any other; see [`crate::conn::stream`].

use std::io;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpStream;

use crate::config::{ConfigError, TlsConfig};
use crate::conn::socket;
use crate::conn::stream::Stream;

/// How long a client may take over its handshake (a connection that sends nothing holds a
/// socket, as a slow request would: actix-http's request timeout is 5 s).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The listener's TLS settings in force.
#[derive(Debug)]
pub(crate) struct TlsListener {
    config: RwLock<Arc<ServerConfig>>,
}

impl TlsListener {
    /// Read the certificate and key `config` names; `None` when TLS is off.
    pub(crate) fn load(config: &TlsConfig) -> Result<Option<Self>, ConfigError> {
        if !config.enabled() {
            return Ok(None);
        }
        Ok(Some(Self {
            config: RwLock::new(Arc::new(server_config(config)?)),
        }))
    }

    /// Read the files again; new handshakes use them. A bad file changes nothing.
    pub(crate) fn reload(&self, config: &TlsConfig) -> Result<(), ConfigError> {
        if !config.enabled() {
            return Err(ConfigError::new(
                "tls.cert_file",
                "TLS cannot be turned off while the broker runs (restart it)",
            ));
        }
        *self.config.write() = Arc::new(server_config(config)?);
        Ok(())
    }

    /// The TLS handshake of a connection just accepted, within [`HANDSHAKE_TIMEOUT`]. A client
    /// that speaks plain HTTP instead gets a 400 saying to use `https://`.
    pub(crate) async fn accept(&self, tcp: TcpStream) -> io::Result<Stream> {
        let config = self.config.read().clone();
        let handshake = async move {
            let mut first = [0u8; 1];
            if tcp.peek(&mut first).await? == 1 && first[0] != TLS_HANDSHAKE_RECORD {
                if first[0].is_ascii_uppercase() {
                    refuse_plain_http(tcp).await;
                }
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "not a TLS handshake (plain HTTP on the TLS port?)",
                ));
            }
            let tls = tokio_rustls::TlsAcceptor::from(config).accept(tcp).await?;
            let (tcp, conn) = tls.into_inner();
            Ok(Stream::tls(tcp, conn))
        };
        tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake)
            .await
            .map_err(|_| io::Error::from(io::ErrorKind::TimedOut))?
    }
}

/// The first byte of a TLS ClientHello (a handshake record).
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// Answer a plain HTTP request (a method's first letter arrived where a ClientHello belongs)
/// with a 400 and close, as a browser or `curl http://` can show it.
async fn refuse_plain_http(tcp: TcpStream) {
    const BODY: &str = "{\"code\":\"Error.InvalidRequest\",\"message\":\"This port serves HTTPS: \
                        the request was sent in plain HTTP. Use https:// (or wss://).\"}";
    let head = format!(
        "HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\n\
         x-ms-error-code: Error.InvalidRequest\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        BODY.len()
    );
    let stream = Stream::plain(tcp);
    if socket::write_all(&stream, &[head.as_bytes(), BODY.as_bytes()])
        .await
        .is_ok()
        && stream.shutdown().await.is_ok()
    {
        // Unread input would turn the close into a reset that loses the answer.
        let _ = tokio::time::timeout(socket::LINGER, socket::discard(&stream)).await;
    }
}

fn server_config(config: &TlsConfig) -> Result<ServerConfig, ConfigError> {
    let (Some(cert_file), Some(key_file)) = (&config.cert_file, &config.key_file) else {
        return Err(ConfigError::new(
            "tls",
            "tls.cert_file and tls.key_file go together",
        ));
    };
    let certs = CertificateDer::pem_file_iter(cert_file)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| {
            ConfigError::new(
                "tls.cert_file",
                format!("cannot read certificates from {}: {e}", cert_file.display()),
            )
        })?;
    if certs.is_empty() {
        return Err(ConfigError::new(
            "tls.cert_file",
            format!("{} holds no PEM certificate", cert_file.display()),
        ));
    }
    let key = PrivateKeyDer::from_pem_file(key_file).map_err(|e| {
        ConfigError::new(
            "tls.key_file",
            format!("cannot read a private key from {}: {e}", key_file.display()),
        )
    })?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut server = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| ConfigError::new("tls", e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| {
            ConfigError::new(
                "tls.key_file",
                format!(
                    "the key in {} does not fit the certificate in {}: {e}",
                    key_file.display(),
                    cert_file.display()
                ),
            )
        })?;
    server.alpn_protocols = vec![b"http/1.1".to_vec()];
    // Resumption without server state: a reconnecting client skips the full handshake.
    server.ticketer = rustls::crypto::aws_lc_rs::Ticketer::new()
        .map_err(|e| ConfigError::new("tls", e.to_string()))?;
    Ok(server)
}
