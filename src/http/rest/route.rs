//! Pure path → operation resolution for the REST API: method + raw path → [`Route`] (hub
//! segment, v1 or not, [`Op`]), plus the decoded query string ([`Query`]).
//!
//! This module owns the route table (literal matching, percent-decoding after splitting, the
//! 404/405 decision). It must not do I/O, touch the request body, look at hubs or validate
//! names: names come out percent-decoded but unchecked, and the caller validates them.

use actix_web::http::{Method, StatusCode};
use percent_encoding::percent_decode_str;

use crate::http::ApiError;
use crate::id::ConnectionId;
use crate::telemetry::RestOperation;

/// A resolved REST operation. Names are percent-decoded, not yet validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Op {
    Health,
    /// Out of scope; the text names the feature.
    Unsupported(&'static str),
    Broadcast,
    SendUser(String),
    SendGroup(String),
    SendConnection(String),
    CloseAll,
    CloseUser(String),
    CloseGroup(String),
    CloseConnection(String),
    ConnectionExists(String),
    UserExists(String),
    GroupExists(String),
    UserInGroup {
        user: String,
        group: String,
    },
    AddConnectionToGroup {
        group: String,
        id: String,
    },
    RemoveConnectionFromGroup {
        group: String,
        id: String,
    },
    RemoveConnectionFromAllGroups(String),
    AddUserToGroup {
        user: String,
        group: String,
    },
    RemoveUserFromGroup {
        user: String,
        group: String,
    },
    RemoveUserFromAllGroups(String),
    ListGroupConnections(String),
    GenerateToken,
}

impl Op {
    /// The operation's label in the REST metrics (a bounded set).
    pub(super) fn metric(&self) -> RestOperation {
        match self {
            Self::Health => RestOperation::Health,
            Self::Unsupported(_) => RestOperation::Other,
            Self::Broadcast | Self::SendUser(_) | Self::SendGroup(_) | Self::SendConnection(_) => {
                RestOperation::Send
            }
            Self::CloseAll
            | Self::CloseUser(_)
            | Self::CloseGroup(_)
            | Self::CloseConnection(_) => RestOperation::CloseConnections,
            Self::ConnectionExists(_)
            | Self::UserExists(_)
            | Self::GroupExists(_)
            | Self::UserInGroup { .. } => RestOperation::CheckExistence,
            Self::AddConnectionToGroup { .. }
            | Self::RemoveConnectionFromGroup { .. }
            | Self::RemoveConnectionFromAllGroups(_)
            | Self::AddUserToGroup { .. }
            | Self::RemoveUserFromGroup { .. }
            | Self::RemoveUserFromAllGroups(_) => RestOperation::GroupMembership,
            Self::ListGroupConnections(_) => RestOperation::ListConnections,
            Self::GenerateToken => RestOperation::GenerateToken,
        }
    }
}

/// An operation and where it applies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Route {
    /// Reached through `/api/v1/` (v1 status codes).
    pub(super) v1: bool,
    /// The hub segment as given (`None` for `health` and `auth/accessKey`).
    pub(super) hub: Option<String>,
    pub(super) op: Op,
}

/// The methods the router distinguishes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum M {
    Get,
    Head,
    Post,
    Put,
    Delete,
    Other,
}

/// `:action` segments.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Action {
    Send,
    CloseConnections,
    GenerateToken,
    Execute,
    Invoke,
    Complete,
}

fn action(segment: &str) -> Option<Action> {
    let name = segment.strip_prefix(':')?;
    [
        ("send", Action::Send),
        ("closeConnections", Action::CloseConnections),
        ("generateToken", Action::GenerateToken),
        ("execute", Action::Execute),
        ("invoke", Action::Invoke),
        ("complete", Action::Complete),
    ]
    .into_iter()
    .find(|(n, _)| n.eq_ignore_ascii_case(name))
    .map(|(_, a)| a)
}

fn is(segment: &str, literal: &str) -> bool {
    segment.eq_ignore_ascii_case(literal)
}

/// Map `method path` (the raw, still percent-encoded path starting with `/api/`) to a route;
/// 404 for an unknown path, 405 (with the allowed methods) for a known path.
pub(super) fn resolve(method: &Method, raw_path: &str) -> Result<Route, ApiError> {
    let not_found = || route_not_found(method, raw_path);
    let rest = raw_path.strip_prefix("/api/").ok_or_else(not_found)?;
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let mut segments = Vec::new();
    for s in rest.split('/') {
        let decoded = percent_decode_str(s).decode_utf8().map_err(|_| {
            ApiError::bad_request(format!(
                "The path segment '{s}' is not valid percent-encoded UTF-8."
            ))
        })?;
        segments.push(decoded.into_owned());
    }
    let v1 = segments.first().is_some_and(|s| is(s, "v1"));
    let segs: Vec<&str> = segments
        .iter()
        .skip(usize::from(v1))
        .map(String::as_str)
        .collect();
    let m = match *method {
        Method::GET => M::Get,
        Method::HEAD => M::Head,
        Method::POST => M::Post,
        Method::PUT => M::Put,
        Method::DELETE => M::Delete,
        _ => M::Other,
    };
    let (hub, op) = match route_segments(&segs, m) {
        Ok(found) => found,
        Err(Miss::Path) => return Err(not_found()),
        Err(Miss::Method(allowed)) => {
            return Err(ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "Error.MethodNotAllowed",
                format!("{method} is not allowed on {raw_path}; allowed: {allowed}."),
            ));
        }
    };
    Ok(Route { v1, hub, op })
}

/// Why no route matched.
#[derive(Debug, PartialEq, Eq)]
enum Miss {
    Path,
    Method(&'static str),
}

fn route_segments(segs: &[&str], m: M) -> Result<(Option<String>, Op), Miss> {
    use Action as A;
    let get = matches!(m, M::Get | M::Head);
    let s = |x: &str| x.to_owned();
    match segs {
        [h] if is(h, "health") => {
            return if get {
                Ok((None, Op::Health))
            } else {
                Err(Miss::Method("GET, HEAD"))
            };
        }
        [a, k] if is(a, "auth") && is(k, "accessKey") => {
            return if get {
                Ok((
                    None,
                    Op::Unsupported("Microsoft Entra access key retrieval"),
                ))
            } else {
                Err(Miss::Method("GET"))
            };
        }
        [h, _, ..] if is(h, "hubs") => {}
        _ => return Err(Miss::Path),
    }
    let hub = segs[1].to_owned();
    let rest = &segs[2..];
    let post = |op: Op| {
        if m == M::Post {
            Ok(op)
        } else {
            Err(Miss::Method("POST"))
        }
    };

    let op = match rest {
        [] => post(Op::Broadcast),
        [a] => match action(a).ok_or(Miss::Path)? {
            A::Send => post(Op::Broadcast),
            A::CloseConnections => post(Op::CloseAll),
            A::GenerateToken => post(Op::GenerateToken),
            A::Execute => post(Op::Unsupported("The :execute operation")),
            A::Invoke | A::Complete => Err(Miss::Path),
        },

        [k, u] if is(k, "users") => match m {
            M::Post => Ok(Op::SendUser(s(u))),
            M::Get | M::Head => Ok(Op::UserExists(s(u))),
            _ => Err(Miss::Method("POST, GET, HEAD")),
        },
        [k, u, a] if is(k, "users") && a.starts_with(':') => match action(a).ok_or(Miss::Path)? {
            A::Send => post(Op::SendUser(s(u))),
            A::CloseConnections => post(Op::CloseUser(s(u))),
            _ => Err(Miss::Path),
        },
        [k, u, g] if is(k, "users") && is(g, "groups") => match m {
            M::Delete => Ok(Op::RemoveUserFromAllGroups(s(u))),
            _ => Err(Miss::Method("DELETE")),
        },
        [k, u, g, group] if is(k, "users") && is(g, "groups") => user_group(m, s(u), s(group)),
        [k, group, u, user] if is(k, "groups") && is(u, "users") => {
            user_group(m, s(user), s(group))
        }

        [k, g] if is(k, "groups") => match m {
            M::Post => Ok(Op::SendGroup(s(g))),
            M::Get | M::Head => Ok(Op::GroupExists(s(g))),
            _ => Err(Miss::Method("POST, GET, HEAD")),
        },
        [k, g, a] if is(k, "groups") && a.starts_with(':') => match action(a).ok_or(Miss::Path)? {
            A::Send => post(Op::SendGroup(s(g))),
            A::CloseConnections => post(Op::CloseGroup(s(g))),
            _ => Err(Miss::Path),
        },
        [k, g, c] if is(k, "groups") && is(c, "connections") => match m {
            M::Get => Ok(Op::ListGroupConnections(s(g))),
            _ => Err(Miss::Method("GET")),
        },
        [k, g, c, id] if is(k, "groups") && is(c, "connections") => {
            connection_group(m, s(g), s(id))
        }

        [k, c] if is(k, "connections") => match m {
            M::Post => Ok(Op::SendConnection(s(c))),
            M::Get | M::Head => Ok(Op::ConnectionExists(s(c))),
            M::Delete => Ok(Op::CloseConnection(s(c))),
            _ => Err(Miss::Method("POST, GET, HEAD, DELETE")),
        },
        [k, c, a] if is(k, "connections") && a.starts_with(':') => {
            match action(a).ok_or(Miss::Path)? {
                A::Send => post(Op::SendConnection(s(c))),
                A::Invoke => post(Op::Unsupported("Client invocation over REST (:invoke)")),
                _ => Err(Miss::Path),
            }
        }
        [k, c, g] if is(k, "connections") && is(g, "groups") => match m {
            M::Delete => Ok(Op::RemoveConnectionFromAllGroups(s(c))),
            _ => Err(Miss::Method("DELETE")),
        },
        [k, c, g, group] if is(k, "connections") && is(g, "groups") => {
            connection_group(m, s(group), s(c))
        }
        [k, _, st, _, a] if is(k, "connections") && is(st, "streams") => match action(a)
            .ok_or(Miss::Path)?
        {
            A::Send | A::Complete => post(Op::Unsupported("Sending to client streams over REST")),
            _ => Err(Miss::Path),
        },
        _ => Err(Miss::Path),
    }?;
    Ok((Some(hub), op))
}

fn user_group(m: M, user: String, group: String) -> Result<Op, Miss> {
    match m {
        M::Get | M::Head => Ok(Op::UserInGroup { user, group }),
        M::Put => Ok(Op::AddUserToGroup { user, group }),
        M::Delete => Ok(Op::RemoveUserFromGroup { user, group }),
        _ => Err(Miss::Method("GET, HEAD, PUT, DELETE")),
    }
}

fn connection_group(m: M, group: String, id: String) -> Result<Op, Miss> {
    match m {
        M::Put => Ok(Op::AddConnectionToGroup { group, id }),
        M::Delete => Ok(Op::RemoveConnectionFromGroup { group, id }),
        _ => Err(Miss::Method("PUT, DELETE")),
    }
}

pub(super) fn route_not_found(method: &Method, path: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "Error.NotFound",
        format!("No REST API at {method} {path}."),
    )
}

// ---------------------------------------------------------------------------------------------
// Queries

/// Decoded query pairs; names compare case-insensitively.
pub(super) struct Query(Vec<(String, String)>);

impl Query {
    pub(super) fn parse(query: &str) -> Self {
        Self(
            form_urlencoded::parse(query.as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    pub(super) fn first(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The repeated `excluded` parameter (empty values dropped).
    pub(super) fn excluded(&self) -> Vec<ConnectionId> {
        self.0
            .iter()
            .filter(|(k, v)| k.eq_ignore_ascii_case("excluded") && !v.is_empty())
            .map(|(_, v)| ConnectionId::from(v.as_str()))
            .collect()
    }
}

#[cfg(test)]
mod tests;
