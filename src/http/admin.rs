//! `GET` / `PATCH /admin/settings`: read and change the runtime settings (service mode, access
//! keys) without a restart.
//!
//! Authenticated like the REST API: a bearer JWT signed with an access key, whose audience path
//! is `/admin/settings` (or `/admin`). `PATCH` takes `{"mode": "...", "accessKeys": [...]}` (any
//! subset); it is validated as a whole and answered with the settings now in force. Keys are
//! never shown, only their count.

use actix_web::{HttpRequest, HttpResponse, web};

use super::state::{Broker, SettingsPatch};
use super::{ApiError, bearer_token};
use crate::auth::{Audience, AuthError};
use crate::telemetry::Metrics;

/// Register the admin routes.
pub(crate) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/admin/settings", web::get().to(get));
    cfg.route("/admin/settings", web::patch().to(patch));
}

fn authorize(req: &HttpRequest, shared: &Broker) -> Result<(), ApiError> {
    let result = match bearer_token(req, false) {
        None => Err(AuthError::Missing),
        Some(token) => shared
            .keys()
            .validate(
                &token,
                Audience::Admin,
                shared.config.limits.token_clock_skew_secs,
            )
            .map(|_| ()),
    };
    result.map_err(|e| {
        Metrics::inc(&shared.metrics.auth_failures);
        ApiError::from(e)
    })
}

async fn get(req: HttpRequest, shared: web::Data<Broker>) -> Result<HttpResponse, ApiError> {
    authorize(&req, &shared)?;
    Ok(HttpResponse::Ok().json(shared.settings_view()))
}

async fn patch(
    req: HttpRequest,
    body: web::Bytes,
    shared: web::Data<Broker>,
) -> Result<HttpResponse, ApiError> {
    authorize(&req, &shared)?;
    let patch: SettingsPatch = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("Invalid settings: {e}")))?;
    shared
        .apply(patch)
        .await
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    Ok(HttpResponse::Ok().json(shared.settings_view()))
}
