//! The web console: static HTML, CSS and JavaScript from `console/` in the repository, embedded
//! in the binary (no build step, nothing fetched from elsewhere), served at `/admin/console`
//! on whichever listener serves `/admin`.
//!
//! The files hold no data and need no token; the page asks for an admin token (or signs one
//! in the browser from an access key) and calls the admin JSON API with it. A strict
//! Content-Security-Policy allows only this origin's scripts, styles and connections.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};

use crate::http::ApiError;

/// (file name under `/admin/console/`, content type, bytes).
const FILES: &[(&str, &str, &str)] = &[
    (
        "index.html",
        "text/html; charset=utf-8",
        include_str!("../../../console/index.html"),
    ),
    (
        "console.css",
        "text/css; charset=utf-8",
        include_str!("../../../console/console.css"),
    ),
    (
        "console.js",
        "text/javascript; charset=utf-8",
        include_str!("../../../console/console.js"),
    ),
];

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// Register the console's routes.
pub(super) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/admin/console", web::get().to(index));
    cfg.route("/admin/console/", web::get().to(index));
    cfg.route("/admin/console/{file}", web::get().to(file));
}

async fn index() -> HttpResponse {
    serve("index.html").unwrap_or_else(|| HttpResponse::NotFound().finish())
}

async fn file(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let name = req.match_info().get("file").unwrap_or_default();
    serve(name)
        .ok_or_else(|| ApiError::not_found("Error.NotFound", format!("No console file '{name}'.")))
}

fn serve(name: &str) -> Option<HttpResponse> {
    let (_, content_type, body) = FILES.iter().find(|(n, _, _)| *n == name)?;
    Some(
        HttpResponse::Ok()
            .insert_header((header::CONTENT_TYPE, *content_type))
            .insert_header((header::CONTENT_SECURITY_POLICY, CSP))
            .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
            .insert_header((header::REFERRER_POLICY, "no-referrer"))
            .insert_header((header::CACHE_CONTROL, "no-cache"))
            .body(*body),
    )
}
