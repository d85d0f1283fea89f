//! The HTTP side of the resource logs and the live trace ([`crate::events`]):
//!
//! - the request log (`HttpRequestLogs`): a middleware that records method, path (never the
//!   query, which may carry a token), status and duration of every request while the category
//!   is taken;
//! - connects refused for their token (`Authorization`) or by a limit (`Throttling`), and
//!   messages sent through the REST API (`MessagingLogs`);
//! - `GET`/`PATCH /admin/logs`: each category's level, changed at runtime;
//! - `GET /admin/trace`: the live trace as Server-Sent Events (see [`crate::events::trace`]),
//!   filtered by `categories`, `hub`, `connectionId` and `userId`. Authenticated like the admin
//!   API; the token may also come as `access_token` in the query (for `EventSource`).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header;
use actix_web::middleware::Next;
use actix_web::{HttpRequest, HttpResponse, web};
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::ApiError;
use crate::close::CloseCategory;
use crate::config::LogLevel;
use crate::events::{Category, ConnectionType, Event, TraceFilter};
use crate::http::state::Broker;

/// Largest `PATCH /admin/logs` body.
const MAX_BODY_BYTES: usize = 4096;
/// A comment line keeps an idle trace stream (and the proxies on its way) open; it is also how
/// a viewer that went away is noticed (the write fails), so its place is free again within
/// this time.
const KEEP_ALIVE: Duration = Duration::from_secs(5);

/// Register `/admin/logs` and `/admin/trace`.
pub(crate) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/admin/logs", web::get().to(get_levels));
    cfg.route("/admin/logs", web::patch().to(patch_levels));
    cfg.route("/admin/trace", web::get().to(trace));
}

/// The request log (see the module documentation): free while the category is off.
pub(crate) async fn log_request(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let Some(shared) = req
        .app_data::<web::Data<Broker>>()
        .filter(|s| s.events.enabled(Category::Http, LogLevel::Error))
        .cloned()
    else {
        return next.call(req).await;
    };
    let start = Instant::now();
    let ip = super::network::client_ip(req.request(), &shared);
    let hub = super::query_value(req.request(), "hub");
    let res = next.call(req).await?;
    let status = res.status();
    let level = if status.is_server_error() {
        LogLevel::Error
    } else if status.is_client_error() {
        LogLevel::Warning
    } else {
        LogLevel::Info
    };
    let events = &shared.events;
    if events.enabled(Category::Http, level) {
        let request = res.request();
        let path = request.path();
        let hub = hub.as_deref().or_else(|| hub_of_path(path));
        let message = format!(
            "{} {} answered {}.",
            request.method(),
            path,
            status.as_u16()
        );
        events.emit(&Event {
            ip,
            hub,
            method: Some(request.method().as_str()),
            path: Some(path),
            status_code: Some(status.as_u16()),
            duration_ms: Some((start.elapsed().as_secs_f64() * 1e3 * 1e3).round() / 1e3),
            ..Event::new(Category::Http, level, "HttpRequest", "Request", &message)
        });
    }
    Ok(res)
}

/// The hub of a REST path (`/api/hubs/{hub}/...`, `/api/v1/hubs/{hub}/...`).
fn hub_of_path(path: &str) -> Option<&str> {
    let rest = path
        .strip_prefix("/api/hubs/")
        .or_else(|| path.strip_prefix("/api/v1/hubs/"))?;
    rest.split('/').next().filter(|h| !h.is_empty())
}

/// A client or hub server refused for its token.
pub(crate) fn auth_failed(
    shared: &Broker,
    req: &HttpRequest,
    kind: ConnectionType,
    hub: &str,
    error: &ApiError,
) {
    let events = &shared.events;
    if events.enabled(Category::Connectivity, LogLevel::Warning) {
        let message = format!("Connection refused: {}", error.message);
        events.emit(&Event {
            ip: super::network::client_ip(req, shared),
            hub: Some(hub),
            connection_type: Some(kind),
            close_category: Some(CloseCategory::Unauthorized.as_str()),
            path: Some(req.path()),
            status_code: Some(error.status.as_u16()),
            ..Event::new(
                Category::Connectivity,
                LogLevel::Warning,
                "ConnectionAuthorizationFailed",
                "Authorization",
                &message,
            )
        });
    }
}

/// A client refused by a limit (429).
pub(crate) fn throttled(shared: &Broker, req: &HttpRequest, user: Option<&str>, error: &ApiError) {
    let events = &shared.events;
    if events.enabled(Category::Connectivity, LogLevel::Warning) {
        let message = format!("Connection throttled: {}", error.message);
        let hub = super::query_value(req, "hub");
        events.emit(&Event {
            ip: super::network::client_ip(req, shared),
            hub: hub.as_deref(),
            user_id: user,
            connection_type: Some(ConnectionType::Client),
            close_category: Some(CloseCategory::Throttled.as_str()),
            path: Some(req.path()),
            status_code: Some(error.status.as_u16()),
            ..Event::new(
                Category::Connectivity,
                LogLevel::Warning,
                "ConnectionThrottled",
                "Throttling",
                &message,
            )
        });
    }
}

/// Who a REST message is for.
pub(crate) enum RestTarget<'a> {
    All,
    User(&'a str),
    Group(&'a str),
    Connection(&'a str),
}

/// A message sent through the REST API (message tracing).
pub(crate) fn rest_message(shared: &Broker, req: &HttpRequest, hub: &str, to: RestTarget<'_>) {
    let events = &shared.events;
    if !events.enabled(Category::Messaging, LogLevel::Debug) {
        return;
    }
    let (kind, message, user, group, connection) = match to {
        RestTarget::All => (
            "BroadcastDataMessage",
            format!("Broadcast to hub {hub} through the REST API."),
            None,
            None,
            None,
        ),
        RestTarget::User(u) => (
            "UserDataMessage",
            format!("Message to user {u} through the REST API."),
            Some(u),
            None,
            None,
        ),
        RestTarget::Group(g) => (
            "GroupBroadcastDataMessage",
            format!("Message to group {g} through the REST API."),
            None,
            Some(g),
            None,
        ),
        RestTarget::Connection(c) => (
            "MultiConnectionDataMessage",
            format!("Message to connection {c} through the REST API."),
            None,
            None,
            Some(c),
        ),
    };
    events.emit(&Event {
        ip: super::network::client_ip(req, shared),
        hub: Some(hub),
        user_id: user,
        group_name: group,
        connection_id: connection,
        message_type: Some(kind),
        path: Some(req.path()),
        ..Event::new(
            Category::Messaging,
            LogLevel::Debug,
            "MessageReceived",
            "Message",
            &message,
        )
    });
}

/// Each category's level, as the admin API shows it.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Levels {
    #[serde(skip_serializing_if = "Option::is_none")]
    connectivity: Option<LogLevel>,
    #[serde(skip_serializing_if = "Option::is_none")]
    messaging: Option<LogLevel>,
    #[serde(skip_serializing_if = "Option::is_none")]
    http: Option<LogLevel>,
}

fn levels(shared: &Broker) -> Levels {
    let mut out = Levels::default();
    for (category, level) in shared.events.levels() {
        *slot(&mut out, category) = Some(level);
    }
    out
}

fn slot(levels: &mut Levels, category: Category) -> &mut Option<LogLevel> {
    match category {
        Category::Connectivity => &mut levels.connectivity,
        Category::Messaging => &mut levels.messaging,
        Category::Http => &mut levels.http,
    }
}

async fn get_levels(req: HttpRequest, shared: web::Data<Broker>) -> Result<HttpResponse, ApiError> {
    super::admin::authorize(&req, &shared, false)?;
    Ok(HttpResponse::Ok().json(levels(&shared)))
}

async fn patch_levels(
    req: HttpRequest,
    mut payload: web::Payload,
    shared: web::Data<Broker>,
) -> Result<HttpResponse, ApiError> {
    super::admin::authorize(&req, &shared, false)?;
    let body =
        super::admin::read_admin_body(&mut payload, &shared, MAX_BODY_BYTES, "log levels").await?;
    let mut patch: Levels = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(format!(
            "Invalid log levels: {e} (expected {{\"connectivity\"|\"messaging\"|\"http\": \"off\"|\"error\"|\"warning\"|\"info\"|\"debug\"}})"
        ))
    })?;
    for category in Category::ALL {
        if let Some(level) = slot(&mut patch, category).take() {
            shared.events.set_level(category, level);
            tracing::info!(category = category.as_str(), %level, "resource log level changed");
        }
    }
    Ok(HttpResponse::Ok().json(levels(&shared)))
}

/// The live trace's filter from the query.
fn filter(req: &HttpRequest) -> Result<TraceFilter, ApiError> {
    let query: HashMap<String, String> = form_urlencoded::parse(req.query_string().as_bytes())
        .into_owned()
        .collect();
    let mut categories = Vec::new();
    if let Some(list) = query.get("categories").filter(|l| !l.is_empty()) {
        for name in list.split(',').map(str::trim) {
            let category = Category::parse(name).ok_or_else(|| {
                ApiError::bad_request(format!(
                    "Unknown category '{name}' (use connectivity, messaging or http)."
                ))
            })?;
            categories.push(category);
        }
    }
    let get = |name: &str| query.get(name).filter(|v| !v.is_empty()).cloned();
    Ok(TraceFilter {
        categories,
        hub: get("hub"),
        connection_id: get("connectionId"),
        user_id: get("userId"),
    })
}

async fn trace(req: HttpRequest, shared: web::Data<Broker>) -> Result<HttpResponse, ApiError> {
    super::admin::authorize(&req, &shared, true)?;
    let filter = filter(&req)?;
    let watch = shared.events.watch(filter).ok_or_else(|| {
        ApiError::too_many(format!(
            "{} live trace viewers are attached already; close one first.",
            crate::events::trace::MAX_VIEWERS
        ))
    })?;
    // A first comment so that the viewer knows it is attached.
    let hello = Bytes::from_static(b": attached\n\n");
    let stream = futures_util::stream::unfold((watch, Some(hello)), |(watch, first)| async move {
        if let Some(first) = first {
            return Some((Ok::<_, actix_web::Error>(first), (watch, None)));
        }
        let chunk = match tokio::time::timeout(KEEP_ALIVE, watch.next_sse()).await {
            Ok(chunk) => chunk,
            Err(_) => Bytes::from_static(b": keep-alive\n\n"),
        };
        Some((Ok(chunk), (watch, None)))
    });
    Ok(HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "text/event-stream"))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(stream))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hub_of_a_rest_path() {
        assert_eq!(hub_of_path("/api/hubs/chat/:send"), Some("chat"));
        assert_eq!(hub_of_path("/api/v1/hubs/chat/users/u"), Some("chat"));
        assert_eq!(hub_of_path("/api/health"), None);
        assert_eq!(hub_of_path("/api/hubs/"), None);
    }
}
