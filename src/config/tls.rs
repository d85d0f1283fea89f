//! `[tls]`: serve HTTPS and WSS on the listener.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::ConfigError;

/// `[tls]`: the certificate the listener presents. Without both files the listener speaks
/// plain HTTP (behind a proxy that terminates TLS, or on a trusted network).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM file with the server's certificate first, then any intermediate certificates.
    pub cert_file: Option<PathBuf>,
    /// PEM file with the certificate's private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: Option<PathBuf>,
}

impl TlsConfig {
    /// Whether the listener serves TLS.
    pub fn enabled(&self) -> bool {
        self.cert_file.is_some()
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        match (&self.cert_file, &self.key_file) {
            (Some(_), None) => Err(ConfigError::new(
                "tls.key_file",
                "is needed with tls.cert_file (--tls-key)",
            )),
            (None, Some(_)) => Err(ConfigError::new(
                "tls.cert_file",
                "is needed with tls.key_file (--tls-cert)",
            )),
            _ => Ok(()),
        }
    }
}
