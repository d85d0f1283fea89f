//! `GET /api/hubs/{hub}/groups/{group}/connections`: a group's connections in pages, ordered by
//! connection id, with Azure's `maxpagesize`, `top` and `continuationToken` (the last id of the
//! previous page, base64url) and a `nextLink` that repeats the query.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::route::Query;
use super::{answer, json_response};
use crate::http::ApiError;
use crate::http::state::Broker;
use crate::id::GroupName;

/// Azure's largest page of group connections.
const MAX_PAGE_SIZE: usize = 200;

/// One page of the group's connections, with a `nextLink` when more follow.
pub(super) async fn list_group_connections(
    req: &HttpRequest,
    shared: &Broker,
    hub: &str,
    group: String,
    query: &Query,
) -> Result<HttpResponse, ApiError> {
    let (page_size, top, after) = page_query(query)?;

    let members = match shared.hubs.for_operation(hub)? {
        Some(h) => answer(shared, h.group_connections(GroupName::from(group)).await).await?,
        None => Vec::new(),
    };
    let start = match &after {
        Some(last) => members.partition_point(|m| m.connection_id.as_str() <= last.as_str()),
        None => 0,
    };
    let limit = top.map_or(page_size, |t| t.min(page_size));
    let end = members.len().min(start + limit);
    let page = &members[start..end];
    let remaining_top = top.map(|t| t - page.len());
    let more = end < members.len() && remaining_top != Some(0);

    let value: Vec<serde_json::Value> = page
        .iter()
        .map(|m| {
            let mut item = serde_json::Map::new();
            item.insert("connectionId".into(), m.connection_id.as_str().into());
            if let Some(u) = &m.user_id {
                item.insert("userId".into(), u.as_str().into());
            }
            serde_json::Value::Object(item)
        })
        .collect();
    let mut body = serde_json::Map::new();
    body.insert("value".into(), value.into());
    if more && let Some(last) = page.last() {
        let mut q = form_urlencoded::Serializer::new(String::new());
        for name in ["application", "api-version"] {
            if let Some(v) = query.first(name) {
                q.append_pair(name, v);
            }
        }
        q.append_pair("maxpagesize", &page_size.to_string());
        if let Some(t) = remaining_top {
            q.append_pair("top", &t.to_string());
        }
        q.append_pair(
            "continuationToken",
            &URL_SAFE_NO_PAD.encode(last.connection_id.as_str()),
        );
        let link = format!("{}{}?{}", shared.public_endpoint, req.path(), q.finish());
        body.insert("nextLink".into(), link.into());
    }
    Ok(json_response(
        StatusCode::OK,
        &serde_json::Value::Object(body),
    ))
}

/// The paging parameters of the query: the page size (`maxpagesize`, default and largest
/// [`MAX_PAGE_SIZE`]), the total cap (`top`) and the id the previous page ended with
/// (`continuationToken`); 400 for a value out of range or undecodable.
pub(super) fn page_query(
    query: &Query,
) -> Result<(usize, Option<usize>, Option<String>), ApiError> {
    let page_size = match query.first("maxpagesize").filter(|v| !v.is_empty()) {
        None => MAX_PAGE_SIZE,
        Some(v) => match v.trim().parse::<usize>() {
            Ok(n) if (1..=MAX_PAGE_SIZE).contains(&n) => n,
            _ => {
                return Err(ApiError::bad_request(format!(
                    "Invalid maxpagesize '{v}': it must be an integer from 1 to {MAX_PAGE_SIZE}."
                )));
            }
        },
    };
    let top = match query.first("top").filter(|v| !v.is_empty()) {
        None => None,
        Some(v) => match v.trim().parse::<usize>() {
            Ok(n) if n >= 1 => Some(n),
            _ => {
                return Err(ApiError::bad_request(format!(
                    "Invalid top '{v}': it must be a positive integer."
                )));
            }
        },
    };
    let after =
        match query.first("continuationToken").filter(|v| !v.is_empty()) {
            None => None,
            Some(t) => Some(decode_continuation(t).ok_or_else(|| {
                ApiError::bad_request(format!("Invalid continuationToken '{t}'."))
            })?),
        };
    Ok((page_size, top, after))
}

fn decode_continuation(token: &str) -> Option<String> {
    let bytes = URL_SAFE_NO_PAD.decode(token.trim_end_matches('=')).ok()?;
    String::from_utf8(bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continuation_tokens_roundtrip() {
        let t = URL_SAFE_NO_PAD.encode("abc_-Z");
        assert_eq!(decode_continuation(&t).as_deref(), Some("abc_-Z"));
        assert_eq!(decode_continuation("!!"), None);
    }
}
