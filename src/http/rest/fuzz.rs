//! The REST API's request parsing run on arbitrary input, without a broker or a hub: what
//! [`crate::fuzzing`] calls (the route and body targets and their corpus replay). Not used by the
//! server itself.
//!
//! Properties checked besides "no panic": every refusal is a 4xx with Azure's JSON error body;
//! a route does not depend on a trailing slash; an accepted JSON send body becomes a message
//! that every JSON client accepts, with the target as sent.

use actix_web::ResponseError as _;
use actix_web::http::Method;
use actix_web::http::header::CONTENT_TYPE;
use actix_web::test::TestRequest;

use super::body::{BodyKind, body_kind, parse_json_message, parse_payload_map};
use super::list::page_query;
use super::params::{effective_hub, parse_ttl, validate_op};
use super::route::{Query, resolve};
use crate::http::ApiError;
use crate::protocol::{self, HubMessage, HubProtocol};

/// Resolves `method path` and checks the names and query parameters the way the handler does
/// before it touches a hub.
pub(crate) fn route(method: &Method, path: &str, query: &str) {
    let query = Query::parse(query);
    let _ = query.excluded();
    refusal(page_query(&query));
    refusal(parse_ttl(query.first("ttl")));
    let resolved = resolve(method, path);
    if !path.ends_with('/') {
        let slashed = resolve(method, &format!("{path}/"));
        match (&resolved, &slashed) {
            (Ok(a), Ok(b)) => assert_eq!(a, b, "{path} and {path}/ differ"),
            (Err(a), Err(b)) => assert_eq!(a.status, b.status, "{path} and {path}/ differ"),
            _ => panic!("{path} and {path}/ differ: {resolved:?} {slashed:?}"),
        }
    }
    match resolved {
        Ok(route) => {
            if let Some(hub) = &route.hub {
                refusal(effective_hub(hub, query.first("application")));
            }
            refusal(validate_op(&route.op));
        }
        Err(e) => check_refusal(&e),
    }
}

/// Checks a send body's content type (`None`: no header) and decodes `body` as JSON and as a
/// MessagePack payload map (`limit`: the configured body and message size).
pub(crate) fn body(content_type: Option<&[u8]>, body: &[u8], limit: usize) {
    let mut req = TestRequest::default();
    if let Some(value) =
        content_type.and_then(|v| actix_web::http::header::HeaderValue::from_bytes(v).ok())
    {
        req = req.insert_header((CONTENT_TYPE, value));
    }
    match body_kind(&req.to_http_request()) {
        Ok(BodyKind::Json | BodyKind::MessagePack) => {}
        Err(e) => {
            check_refusal(&e);
            assert_eq!(e.status.as_u16(), 415);
        }
    }
    match parse_json_message(body) {
        Ok(msg) => {
            let json = msg
                .bytes_for(HubProtocol::Json)
                .expect("an accepted JSON body has a JSON form");
            let decoded = HubProtocol::Json
                .decode(json, usize::MAX)
                .expect("the JSON form decodes")
                .expect("the JSON form is complete");
            assert_eq!(decoded.consumed, json.len());
            let Some(message @ HubMessage::Invocation(_)) = decoded.message else {
                panic!("the JSON form is not one Invocation: {json:?}");
            };
            protocol::validate_for_js_client(&message).expect("JS clients accept the message");
            if let Some(mp) = msg.bytes_for(HubProtocol::MessagePack) {
                HubProtocol::MessagePack
                    .decode(mp, usize::MAX)
                    .expect("the MessagePack form decodes")
                    .expect("the MessagePack form is complete");
            }
        }
        Err(e) => check_refusal(&e),
    }
    match parse_payload_map(body, limit) {
        Ok(msg) => assert!(
            msg.bytes_for(HubProtocol::Json).is_some()
                || msg.bytes_for(HubProtocol::MessagePack).is_some()
        ),
        Err(e) => check_refusal(&e),
    }
}

fn refusal<T>(result: Result<T, ApiError>) {
    if let Err(e) = result {
        check_refusal(&e);
    }
}

/// A refusal of a request's own content is a 4xx answered with a JSON error body.
fn check_refusal(e: &ApiError) {
    assert!(e.status.is_client_error(), "{e}");
    let resp = e.error_response();
    assert_eq!(resp.status(), e.status);
    assert_eq!(
        resp.headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok()),
        Some("application/json")
    );
}
