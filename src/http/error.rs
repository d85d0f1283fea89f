//! HTTP errors: one type, one place that maps each failure to a status, an error code and a
//! JSON body.
//!
//! Bodies follow the Azure REST error model (`{"code": "...", "message": "..."}`), and REST
//! responses carry the `x-ms-error-code` header the Azure SDKs read to tell "not found" answers
//! (which they treat as `false`) from failures.

use actix_web::http::StatusCode;
use actix_web::http::header::{CONTENT_TYPE, HeaderValue};
use actix_web::{HttpResponse, ResponseError};

use crate::auth::AuthError;

/// An HTTP failure with a JSON body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status}: {code}: {message}")]
pub(crate) struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Error code for the body and the `x-ms-error-code` header
    /// (e.g. `Warning.Connection.NotExisted`).
    pub code: String,
    /// Human-readable message.
    pub message: String,
}

impl ApiError {
    /// An error with an explicit status and code.
    pub(crate) fn new(
        status: StatusCode,
        code: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            status,
            code: code.into(),
            message: message.into(),
        }
    }

    /// 400 with code `Error.InvalidRequest` (or the given code).
    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "Error.InvalidRequest", message)
    }

    /// 404 with the given code.
    pub(crate) fn not_found(code: &str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, message)
    }

    /// 429: a limit was reached.
    pub(crate) fn too_many(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "Error.TooManyRequests",
            message,
        )
    }

    /// 408: the request body did not arrive within `timeout` (the connection is closed).
    pub(crate) fn request_timeout(timeout: std::time::Duration) -> Self {
        Self::new(
            StatusCode::REQUEST_TIMEOUT,
            "Error.RequestTimeout",
            format!(
                "The request body was not received within {} s.",
                timeout.as_secs()
            ),
        )
    }

    /// 503: the hub is shutting down.
    pub(crate) fn unavailable() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "Error.ServiceUnavailable",
            "The service is shutting down.",
        )
    }

    /// The JSON body.
    pub(crate) fn body(&self) -> String {
        serde_json::json!({ "code": self.code, "message": self.message }).to_string()
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "Error.Unauthorized",
            e.to_string(),
        )
    }
}

impl From<crate::hub::HubGone> for ApiError {
    fn from(_: crate::hub::HubGone) -> Self {
        Self::unavailable()
    }
}

impl From<crate::cluster::Unreachable> for ApiError {
    fn from(e: crate::cluster::Unreachable) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "Error.ClusterUnavailable",
            format!(
                "The answer needs other Switchboard nodes, which cannot be reached now ({e}). Retry later."
            ),
        )
    }
}

impl From<crate::hub::TooManyHubs> for ApiError {
    fn from(e: crate::hub::TooManyHubs) -> Self {
        Self::too_many(format!("Too many hubs: {e}."))
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut resp = HttpResponse::build(self.status);
        resp.insert_header((CONTENT_TYPE, HeaderValue::from_static("application/json")));
        if let Ok(v) = HeaderValue::from_str(&self.code) {
            resp.insert_header(("x-ms-error-code", v));
        }
        if matches!(
            self.status,
            StatusCode::REQUEST_TIMEOUT
                | StatusCode::URI_TOO_LONG
                | StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
        ) {
            // The rest of such a request is not read: this connection serves no other.
            resp.force_close();
        }
        resp.body(self.body())
    }
}
