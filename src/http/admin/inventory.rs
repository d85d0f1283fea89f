//! The admin inventory: what this node holds, as JSON, behind the admin token.
//!
//! | path | answer |
//! | --- | --- |
//! | `GET /admin/overview` | mode, node, version, uptime, client connections by transport, hub-server connections, hubs, raw counters |
//! | `GET /admin/hubs` | hubs with their client counts (paged) |
//! | `GET /admin/hubs/{hub}/connections` | connections: id, transport, protocol, user, groups, hub server, connected since (paged; `group=`, `user=` filter) |
//! | `GET /admin/hubs/{hub}/groups` | groups with member counts (paged) |
//! | `GET /admin/hubs/{hub}/users` | users with connection counts (paged) |
//! | `GET /admin/hubs/{hub}/servers` | the hub's hub-server connections (capped) |
//! | `GET /admin/servers` | every hub's hub-server connections (capped) |
//!
//! Every list is bounded: paged lists take `limit` (default 100, at most
//! [`MAX_PAGE`](crate::hub::inventory::MAX_PAGE)) and `after` (the `next` of the previous page)
//! and answer `{"value": [...], "total": N, "next": "..."}`, `next` only when more follow.
//! Capped lists answer the same shape without `next`. In a cluster each node answers for its
//! own connections only.

use std::time::{SystemTime, UNIX_EPOCH};

use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::{Value, json};

use super::authorize;
use crate::http::state::Broker;
use crate::http::{ApiError, query_value};
use crate::hub::inventory::{
    ConnectionEntry, Inventory, InventoryQuery, Listed, MAX_PAGE, MAX_SERVERS, PageRequest,
    ServerEntry, page_of,
};
use crate::hub::{HubGone, HubHandle};
use crate::id::{GroupName, UserId};

/// Entries in a page when `limit` is not given.
const DEFAULT_PAGE: usize = 100;

/// Register the inventory routes.
pub(super) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/admin/overview", web::get().to(overview));
    cfg.route("/admin/hubs", web::get().to(hubs));
    cfg.route("/admin/hubs/{hub}/connections", web::get().to(connections));
    cfg.route("/admin/hubs/{hub}/groups", web::get().to(groups));
    cfg.route("/admin/hubs/{hub}/users", web::get().to(users));
    cfg.route("/admin/hubs/{hub}/servers", web::get().to(hub_servers));
    cfg.route("/admin/servers", web::get().to(servers));
}

async fn overview(req: HttpRequest, shared: web::Data<Broker>) -> Result<HttpResponse, ApiError> {
    authorize(&req, &shared, false)?;
    let uptime = shared.started.elapsed();
    let now = SystemTime::now();
    let ms = |t: SystemTime| {
        t.duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    };
    let by = shared.client_env.connections.by_transport();
    let metric = |name: &str| shared.metrics.get(name).unwrap_or(0);
    Ok(HttpResponse::Ok().json(json!({
        "mode": shared.mode().as_str(),
        "nodeId": shared.cluster.as_ref().map(|c| c.node_id().to_owned()),
        "cluster": shared.cluster.is_some(),
        "version": env!("CARGO_PKG_VERSION"),
        "time": ms(now),
        "startedAt": ms(now.checked_sub(uptime).unwrap_or(now)),
        "uptimeSecs": uptime.as_secs(),
        "clients": {
            "total": by.web_sockets + by.server_sent_events + by.long_polling + by.other,
            "webSockets": by.web_sockets,
            "serverSentEvents": by.server_sent_events,
            "longPolling": by.long_polling,
        },
        "serverConnections": metric(crate::telemetry::names::server_connections_current),
        "hubs": shared.hubs.names().len(),
        "counters": super::counters::read(&shared.metrics),
    })))
}

/// `limit` and `after` of the query (400 for a limit that is not a number from 1 to
/// [`MAX_PAGE`]).
fn page_request(req: &HttpRequest) -> Result<PageRequest, ApiError> {
    let limit = match query_value(req, "limit").filter(|v| !v.is_empty()) {
        None => DEFAULT_PAGE,
        Some(v) => match v.trim().parse::<usize>() {
            Ok(n) if (1..=MAX_PAGE).contains(&n) => n,
            _ => {
                return Err(ApiError::bad_request(format!(
                    "Invalid limit '{v}': it must be an integer from 1 to {MAX_PAGE}."
                )));
            }
        },
    };
    let after = query_value(req, "after").filter(|v| !v.is_empty());
    Ok(PageRequest { after, limit })
}

fn listed_json<T>(listed: Listed<T>, item: impl FnMut(T) -> Value) -> Value {
    let mut body = json!({
        "value": listed.items.into_iter().map(item).collect::<Vec<_>>(),
        "total": listed.total,
    });
    if let Some(next) = listed.next {
        body["next"] = Value::from(next);
    }
    body
}

async fn hubs(req: HttpRequest, shared: web::Data<Broker>) -> Result<HttpResponse, ApiError> {
    authorize(&req, &shared, false)?;
    let page = page_request(&req)?;
    let names = shared.hubs.names();
    let listed = page_of(names.iter().map(|n| (n.as_str(), ())), &page);
    let body = listed_json(listed, |(name, ())| {
        let clients = shared.hubs.get(name).map_or(0, |h| h.client_count());
        json!({ "name": name, "clients": clients })
    });
    Ok(HttpResponse::Ok().json(body))
}

/// The running hub named in the path; 404 when no hub of that name runs on this node.
fn hub(req: &HttpRequest, shared: &Broker) -> Result<HubHandle, ApiError> {
    let name = req.match_info().get("hub").unwrap_or_default();
    shared.hubs.get(name).ok_or_else(|| {
        ApiError::not_found(
            "Error.HubNotFound",
            format!("No hub '{name}' runs on this node."),
        )
    })
}

async fn ask(hub: &HubHandle, query: InventoryQuery) -> Result<Inventory, ApiError> {
    hub.inventory(query)
        .await
        .map_err(|HubGone| ApiError::unavailable())
}

async fn connections(
    req: HttpRequest,
    shared: web::Data<Broker>,
) -> Result<HttpResponse, ApiError> {
    authorize(&req, &shared, false)?;
    let page = page_request(&req)?;
    let hub = hub(&req, &shared)?;
    let group = query_value(&req, "group")
        .filter(|v| !v.is_empty())
        .map(GroupName::from);
    let user = query_value(&req, "user")
        .filter(|v| !v.is_empty())
        .map(UserId::from);
    let Inventory::Connections(listed) =
        ask(&hub, InventoryQuery::Connections { page, group, user }).await?
    else {
        return Err(ApiError::unavailable());
    };
    Ok(HttpResponse::Ok().json(listed_json(listed, connection_json)))
}

fn connection_json(e: ConnectionEntry) -> Value {
    let c = &e.conn;
    json!({
        "connectionId": c.id().as_str(),
        "transport": c.transport().map(|t| t.name()),
        "protocol": c.protocol().name(),
        "userId": c.user().map(UserId::as_str),
        "groups": e.groups.iter().map(GroupName::as_str).collect::<Vec<_>>(),
        "groupCount": e.group_count,
        "server": c.server().map(|s| json!({
            "serverId": s.server_id(),
            "connection": s.id().0,
        })),
        "connectedAt": u64::from(c.connected_at()) * 1000,
    })
}

async fn groups(req: HttpRequest, shared: web::Data<Broker>) -> Result<HttpResponse, ApiError> {
    authorize(&req, &shared, false)?;
    let page = page_request(&req)?;
    let hub = hub(&req, &shared)?;
    let Inventory::Groups(listed) = ask(&hub, InventoryQuery::Groups(page)).await? else {
        return Err(ApiError::unavailable());
    };
    Ok(HttpResponse::Ok().json(listed_json(
        listed,
        |(g, n)| json!({ "name": g.as_str(), "connections": n }),
    )))
}

async fn users(req: HttpRequest, shared: web::Data<Broker>) -> Result<HttpResponse, ApiError> {
    authorize(&req, &shared, false)?;
    let page = page_request(&req)?;
    let hub = hub(&req, &shared)?;
    let Inventory::Users(listed) = ask(&hub, InventoryQuery::Users(page)).await? else {
        return Err(ApiError::unavailable());
    };
    Ok(HttpResponse::Ok().json(listed_json(
        listed,
        |(u, n)| json!({ "userId": u.as_str(), "connections": n }),
    )))
}

fn server_json(hub: &str, e: &ServerEntry) -> Value {
    json!({
        "hub": hub,
        "connection": e.handle.id().0,
        "serverId": e.handle.server_id(),
        "connectionType": format!("{:?}", e.handle.connection_type()),
        "clients": e.clients,
        "shuttingDown": e.shutting_down,
        "node": e.node,
    })
}

async fn hub_servers(
    req: HttpRequest,
    shared: web::Data<Broker>,
) -> Result<HttpResponse, ApiError> {
    authorize(&req, &shared, false)?;
    let hub = hub(&req, &shared)?;
    let Inventory::Servers(listed) = ask(&hub, InventoryQuery::Servers).await? else {
        return Err(ApiError::unavailable());
    };
    let name = hub.name().as_str();
    Ok(HttpResponse::Ok().json(listed_json(listed, |e| server_json(name, &e))))
}

async fn servers(req: HttpRequest, shared: web::Data<Broker>) -> Result<HttpResponse, ApiError> {
    authorize(&req, &shared, false)?;
    let mut names = shared.hubs.names();
    names.sort();
    let mut value = Vec::new();
    let mut total = 0;
    for name in names {
        let Some(hub) = shared.hubs.get(name.as_str()) else {
            continue;
        };
        // A hub that stopped meanwhile has no servers left.
        let Ok(Inventory::Servers(listed)) = hub.inventory(InventoryQuery::Servers).await else {
            continue;
        };
        total += listed.total;
        for e in &listed.items {
            if value.len() < MAX_SERVERS {
                value.push(server_json(name.as_str(), e));
            }
        }
    }
    Ok(HttpResponse::Ok().json(json!({ "value": value, "total": total })))
}
