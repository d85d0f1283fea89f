//! A throwaway certificate authority minted at test time (rcgen): no key material is committed.
//! [`TestCa::issue`] writes a server certificate and key as PEM files for `[tls]`; clients trust
//! the CA through [`TestCa::pem`] ([`TestCa::http`] for reqwest, [`TestCa::client_config`] for a
//! raw TLS stream).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName};

/// A CA whose certificates only these tests trust.
pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

/// A server certificate's files.
pub struct Issued {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl TestCa {
    pub fn new(name: &str) -> Self {
        let key = KeyPair::generate().expect("CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let cert = params.self_signed(&key).expect("CA certificate");
        Self {
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// The CA certificate (PEM).
    pub fn pem(&self) -> &str {
        &self.pem
    }

    /// Write the CA certificate to `dir/<file>`.
    pub fn write_pem(&self, dir: &Path, file: &str) -> PathBuf {
        let path = dir.join(file);
        std::fs::write(&path, &self.pem).expect("write CA pem");
        path
    }

    /// A certificate for `localhost` and 127.0.0.1, its chain and key written to
    /// `dir/<stem>.pem` and `dir/<stem>.key`.
    pub fn issue(&self, dir: &Path, stem: &str) -> Issued {
        let key = KeyPair::generate().expect("server key");
        let mut params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
                .expect("server params");
        params
            .distinguished_name
            .push(DnType::CommonName, "switchboard test server");
        let cert = params
            .signed_by(&key, &self.issuer)
            .expect("server certificate");
        let issued = Issued {
            cert: dir.join(format!("{stem}.pem")),
            key: dir.join(format!("{stem}.key")),
        };
        std::fs::write(&issued.cert, cert.pem()).expect("write cert");
        std::fs::write(&issued.key, key.serialize_pem()).expect("write key");
        issued
    }

    /// An HTTP client that trusts this CA (and nothing else).
    pub fn http(&self) -> reqwest::Client {
        reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(self.pem.as_bytes()).expect("CA")])
            .build()
            .expect("https client")
    }

    /// A rustls client configuration that trusts this CA.
    pub fn client_config(&self) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(self.pem.as_bytes()) {
            roots.add(cert.expect("CA pem")).expect("CA root");
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        Arc::new(
            rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .expect("protocol versions")
                .with_root_certificates(roots)
                .with_no_client_auth(),
        )
    }

    /// A TLS connection to `addr` that verifies the server as `localhost`.
    pub async fn connect(
        &self,
        addr: std::net::SocketAddr,
    ) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
        self.connect_with_window(addr, None).await
    }

    /// [`Self::connect`] with the client's receive buffer set to `window` bytes (a small one
    /// fills the server's socket soon when the client does not read).
    pub async fn connect_with_window(
        &self,
        addr: std::net::SocketAddr,
        window: Option<u32>,
    ) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
        let socket = tokio::net::TcpSocket::new_v4()?;
        if let Some(window) = window {
            socket.set_recv_buffer_size(window)?;
        }
        let tcp = socket.connect(addr).await?;
        tokio_rustls::TlsConnector::from(self.client_config())
            .connect(ServerName::try_from("localhost").expect("name"), tcp)
            .await
    }
}

/// A fresh directory under the system's temporary directory (removed by the caller, or left
/// for the OS to clean).
pub fn temp_dir(prefix: &str) -> PathBuf {
    let mut bytes = [0u8; 6];
    getrandom::fill(&mut bytes).expect("random");
    let name: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let dir = std::env::temp_dir().join(format!("{prefix}-{name}"));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}
