//! Liveness, readiness and metrics: `/healthz` (alive), `/readyz` (accepting connections) and
//! `/metrics` (Prometheus text). The Azure SDK's probe, `HEAD /api/health`, is part of the REST
//! API (`rest.rs`).

use actix_web::{HttpResponse, web};

use crate::http::state::Broker;

/// Register the health routes.
pub(crate) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(ok));
    cfg.route("/healthz", web::head().to(ok));
    cfg.route("/readyz", web::get().to(ready));
}

/// Register `/metrics` (on the admin listener when there is one).
pub(crate) fn configure_metrics(cfg: &mut web::ServiceConfig) {
    cfg.route("/metrics", web::get().to(metrics));
}

async fn ok() -> HttpResponse {
    HttpResponse::Ok().finish()
}

async fn ready(shared: web::Data<Broker>) -> HttpResponse {
    if shared.is_stopping() {
        return HttpResponse::ServiceUnavailable()
            .json(serde_json::json!({ "status": "stopping", "mode": shared.mode().as_str() }));
    }
    if let Some(cluster) = &shared.cluster
        && !cluster.is_up()
    {
        // Clients placed here would only reach this node's share of the hubs: let the load
        // balancer send them elsewhere until the engine is back.
        return HttpResponse::ServiceUnavailable().json(serde_json::json!({
            "status": "cluster-unavailable",
            "mode": shared.mode().as_str(),
            "node": cluster.node_id(),
        }));
    }
    if shared.connection_count() < shared.config.limits.max_connections {
        HttpResponse::Ok()
            .json(serde_json::json!({ "status": "ready", "mode": shared.mode().as_str() }))
    } else {
        HttpResponse::ServiceUnavailable()
            .json(serde_json::json!({ "status": "full", "mode": shared.mode().as_str() }))
    }
}

async fn metrics(shared: web::Data<Broker>) -> HttpResponse {
    let mut text = shared.metrics.render();
    shared.events.render_metrics(&mut text);
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(text)
}
