//! The admin plane: `GET` / `PATCH /admin/settings` (here), the inventory of what this node
//! holds ([`inventory`]: `/admin/overview`, `/admin/hubs/...`, `/admin/servers`) and the web
//! console that shows both ([`console`]: `/admin/console`).
//!
//! Settings: read and change the runtime settings (service mode, access keys, upstream rules)
//! without a restart. Every JSON endpoint is authenticated like the REST API: a bearer JWT
//! signed with an access key (with `admin_key` set, with that key only), whose audience path is
//! `/admin/settings` or `/admin` ([`authorize`]). `PATCH` takes
//! `{"mode": "...", "accessKeys": [...], "upstream": [...]}` (any subset); it is validated as a
//! whole and answered with the settings now in force. Keys are never shown, only their count.
//! The token is checked before the body is read; the body is at most 256 KiB (413) and must
//! arrive within `limits.body_timeout_secs` (408). The console's static files need no token:
//! they hold no data, and the page asks for one.

mod console;
mod counters;
mod inventory;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};

use super::edge::{BodyError, read_body};
use super::state::{Broker, SettingsPatch};
use super::{ApiError, bearer_token};
use crate::auth::{Audience, AuthError};
use crate::telemetry::Metrics;

/// Largest settings patch, in bytes (what actix-web's body extractor allowed before).
const MAX_BODY_BYTES: usize = 256 * 1024;

/// Register the admin routes.
pub(crate) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/admin/settings", web::get().to(get));
    cfg.route("/admin/settings", web::patch().to(patch));
    inventory::configure(cfg);
    console::configure(cfg);
}

/// Check an admin request's token (with `allow_query`, also `access_token` in the query); a
/// refusal is counted and answered 401.
pub(crate) fn authorize(
    req: &HttpRequest,
    shared: &Broker,
    allow_query: bool,
) -> Result<(), ApiError> {
    let result = match bearer_token(req, allow_query) {
        None => Err(AuthError::Missing),
        // With an admin key, only it opens the admin API.
        Some(token) => match &shared.admin_keys {
            Some(admin) => admin.validate(
                &token,
                Audience::Admin,
                shared.config.limits.token_clock_skew_secs,
            ),
            None => shared.keys().validate(
                &token,
                Audience::Admin,
                shared.config.limits.token_clock_skew_secs,
            ),
        }
        .map(|_| ()),
    };
    result.map_err(|e| {
        Metrics::inc(&shared.metrics.auth_failures);
        match e {
            AuthError::BadSignature if shared.admin_keys.is_some() => ApiError::new(
                StatusCode::UNAUTHORIZED,
                "Error.Unauthorized",
                "Unauthorized: the token is not signed with this broker's admin key.",
            ),
            e => ApiError::from(e),
        }
    })
}

async fn get(req: HttpRequest, shared: web::Data<Broker>) -> Result<HttpResponse, ApiError> {
    authorize(&req, &shared, false)?;
    Ok(HttpResponse::Ok().json(shared.settings_view()))
}

/// An admin request's body: at most `max` bytes (413), within `limits.body_timeout_secs`
/// (408); errors say "Invalid {what}: ...".
pub(crate) async fn read_admin_body(
    payload: &mut web::Payload,
    shared: &Broker,
    max: usize,
    what: &str,
) -> Result<bytes::BytesMut, ApiError> {
    let timeout = shared.config.limits.body_timeout();
    read_body(payload, max, 0, timeout)
        .await
        .map_err(|e| match e {
            BodyError::TimedOut(t) => ApiError::request_timeout(t),
            BodyError::TooLarge(_) => ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "Error.PayloadTooLarge",
                format!("Invalid {what}: {e}."),
            ),
            BodyError::Read(_) => ApiError::bad_request(format!("Invalid {what}: {e}.")),
        })
}

async fn patch(
    req: HttpRequest,
    mut payload: web::Payload,
    shared: web::Data<Broker>,
) -> Result<HttpResponse, ApiError> {
    // The token first: nothing of the body is read for a caller without one.
    authorize(&req, &shared, false)?;
    let body = read_admin_body(&mut payload, &shared, MAX_BODY_BYTES, "settings").await?;
    let patch: SettingsPatch = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("Invalid settings: {e}")))?;
    shared
        .apply(patch)
        .await
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    Ok(HttpResponse::Ok().json(shared.settings_view()))
}
