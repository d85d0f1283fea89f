//! [`ManagementError`]: why a management operation failed.

use crate::SdkError;

/// Why a management operation failed.
///
/// A refusal by the service carries the HTTP status, the `x-ms-error-code` header and the
/// message of the JSON error body ([`Service`](Self::Service)); the "not found" answers the
/// Azure SDK treats as normal outcomes (an existence check answering `false`, closing a
/// connection that is already gone, ...) never become errors.
#[derive(Debug, thiserror::Error)]
pub enum ManagementError {
    /// An argument was refused before anything was sent: an invalid hub, application, group
    /// or user name, an empty connection id or target.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The invocation arguments could not be serialised.
    #[error("could not serialize the arguments: {0}")]
    Serialize(String),
    /// The service answered with an unexpected status.
    #[error(
        "the service answered {status}{}: {message}",
        code.as_deref().map(|c| format!(" ({c})")).unwrap_or_default()
    )]
    Service {
        /// The HTTP status.
        status: u16,
        /// The `x-ms-error-code` header (or the `code` of the JSON body), when present.
        code: Option<String>,
        /// The `message` of the JSON error body, else the body text, else the status reason.
        message: String,
    },
    /// The HTTP request failed: connection refused, timeout, TLS, ...
    #[error("{}", crate::http_error::describe(.0))]
    Http(#[source] reqwest::Error),
    /// The persistent transport failed: no Weak server connection came up, the Ack timed
    /// out or failed, the connection closed, ...
    #[error("persistent connection: {0}")]
    Persistent(#[from] SdkError),
}

impl ManagementError {
    /// The HTTP status of a [`Service`](Self::Service) error.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Service { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The `x-ms-error-code` of a [`Service`](Self::Service) error.
    pub fn error_code(&self) -> Option<&str> {
        match self {
            Self::Service { code, .. } => code.as_deref(),
            _ => None,
        }
    }
}

impl From<reqwest::Error> for ManagementError {
    fn from(err: reqwest::Error) -> Self {
        Self::Http(err)
    }
}
