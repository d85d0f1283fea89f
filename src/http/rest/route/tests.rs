//! Route table tests: every route in both families, decoding, unsupported operations, 404/405.

use super::*;

fn route(method: Method, path: &str) -> Route {
    resolve(&method, path).unwrap_or_else(|e| panic!("{method} {path}: {e}"))
}

fn op(method: Method, path: &str) -> Op {
    route(method, path).op
}

#[test]
fn resolves_every_new_style_route() {
    let s = String::from;
    let table = [
        (Method::HEAD, "/api/health", Op::Health),
        (Method::POST, "/api/hubs/chat/:send", Op::Broadcast),
        (
            Method::POST,
            "/api/hubs/chat/:closeConnections",
            Op::CloseAll,
        ),
        (
            Method::POST,
            "/api/hubs/chat/:generateToken",
            Op::GenerateToken,
        ),
        (
            Method::HEAD,
            "/api/hubs/chat/connections/c1",
            Op::ConnectionExists(s("c1")),
        ),
        (
            Method::DELETE,
            "/api/hubs/chat/connections/c1",
            Op::CloseConnection(s("c1")),
        ),
        (
            Method::POST,
            "/api/hubs/chat/connections/c1/:send",
            Op::SendConnection(s("c1")),
        ),
        (
            Method::DELETE,
            "/api/hubs/chat/connections/c1/groups",
            Op::RemoveConnectionFromAllGroups(s("c1")),
        ),
        (
            Method::HEAD,
            "/api/hubs/chat/groups/g",
            Op::GroupExists(s("g")),
        ),
        (
            Method::POST,
            "/api/hubs/chat/groups/g/:send",
            Op::SendGroup(s("g")),
        ),
        (
            Method::POST,
            "/api/hubs/chat/groups/g/:closeConnections",
            Op::CloseGroup(s("g")),
        ),
        (
            Method::GET,
            "/api/hubs/chat/groups/g/connections",
            Op::ListGroupConnections(s("g")),
        ),
        (
            Method::PUT,
            "/api/hubs/chat/groups/g/connections/c1",
            Op::AddConnectionToGroup {
                group: s("g"),
                id: s("c1"),
            },
        ),
        (
            Method::DELETE,
            "/api/hubs/chat/groups/g/connections/c1",
            Op::RemoveConnectionFromGroup {
                group: s("g"),
                id: s("c1"),
            },
        ),
        (
            Method::HEAD,
            "/api/hubs/chat/users/u",
            Op::UserExists(s("u")),
        ),
        (
            Method::POST,
            "/api/hubs/chat/users/u/:send",
            Op::SendUser(s("u")),
        ),
        (
            Method::POST,
            "/api/hubs/chat/users/u/:closeConnections",
            Op::CloseUser(s("u")),
        ),
        (
            Method::DELETE,
            "/api/hubs/chat/users/u/groups",
            Op::RemoveUserFromAllGroups(s("u")),
        ),
        (
            Method::GET,
            "/api/hubs/chat/users/u/groups/g",
            Op::UserInGroup {
                user: s("u"),
                group: s("g"),
            },
        ),
        (
            Method::PUT,
            "/api/hubs/chat/users/u/groups/g",
            Op::AddUserToGroup {
                user: s("u"),
                group: s("g"),
            },
        ),
        (
            Method::DELETE,
            "/api/hubs/chat/users/u/groups/g",
            Op::RemoveUserFromGroup {
                user: s("u"),
                group: s("g"),
            },
        ),
    ];
    for (method, path, expected) in table {
        let r = route(method.clone(), path);
        assert_eq!(r.op, expected, "{method} {path}");
        assert!(!r.v1);
        let v1_path = path.replacen("/api/", "/api/v1/", 1);
        let r = route(method.clone(), &v1_path);
        assert_eq!(r.op, expected, "{method} {v1_path}");
        assert!(r.v1);
    }
}

#[test]
fn resolves_v1_and_emulator_forms() {
    let s = String::from;
    assert_eq!(op(Method::POST, "/api/v1/hubs/chat"), Op::Broadcast);
    assert_eq!(op(Method::POST, "/api/v1/hubs/chat/"), Op::Broadcast);
    assert_eq!(
        op(Method::POST, "/api/v1/hubs/chat/users/u"),
        Op::SendUser(s("u"))
    );
    assert_eq!(
        op(Method::POST, "/api/v1/hubs/chat/groups/g"),
        Op::SendGroup(s("g"))
    );
    assert_eq!(
        op(Method::POST, "/api/v1/hubs/chat/connections/c"),
        Op::SendConnection(s("c"))
    );
    assert_eq!(
        op(Method::GET, "/api/v1/hubs/chat/connections/c"),
        Op::ConnectionExists(s("c"))
    );
    assert_eq!(
        op(Method::PUT, "/api/v1/hubs/chat/groups/g/users/u"),
        Op::AddUserToGroup {
            user: s("u"),
            group: s("g")
        }
    );
    assert_eq!(
        op(Method::PUT, "/api/v1/hubs/chat/connections/c/groups/g"),
        Op::AddConnectionToGroup {
            group: s("g"),
            id: s("c")
        }
    );
    assert_eq!(op(Method::GET, "/api/v1/health"), Op::Health);
    assert_eq!(
        route(Method::POST, "/api/v1/hubs/chat").hub.as_deref(),
        Some("chat")
    );
}

#[test]
fn decodes_segments_after_splitting_and_ignores_literal_case() {
    let s = String::from;
    assert_eq!(
        op(Method::POST, "/api/hubs/chat/groups/a%2Fb%20c/:send"),
        Op::SendGroup(s("a/b c"))
    );
    assert_eq!(
        op(Method::POST, "/api/HUBS/chat/Groups/g/:SEND"),
        Op::SendGroup(s("g"))
    );
    assert_eq!(
        op(Method::POST, "/api/hubs/chat/users/u%3A1/%3Asend"),
        Op::SendUser(s("u:1"))
    );
    assert_eq!(
        op(Method::POST, "/api/hubs/chat/connections//:send"),
        Op::SendConnection(s(""))
    );
}

#[test]
fn out_of_scope_operations_are_unsupported() {
    for path in [
        "/api/hubs/chat/:execute",
        "/api/hubs/chat/connections/c/:invoke",
        "/api/hubs/chat/connections/c/streams/s/:send",
        "/api/hubs/chat/connections/c/streams/s/:complete",
    ] {
        assert!(
            matches!(op(Method::POST, path), Op::Unsupported(_)),
            "{path}"
        );
    }
}

#[test]
fn unknown_paths_are_404_and_wrong_methods_405() {
    for path in [
        "/api/hubs",
        "/api/nothing",
        "/api/hubs/chat/:bogus",
        "/api/hubs/chat/users/u/x",
        "/api/v2/hubs/chat",
    ] {
        let e = resolve(&Method::POST, path).unwrap_err();
        assert_eq!(e.status, StatusCode::NOT_FOUND, "{path}");
    }
    for (method, path) in [
        (Method::GET, "/api/hubs/chat/:send"),
        (Method::PUT, "/api/hubs/chat/users/u"),
        (Method::POST, "/api/health"),
        (Method::GET, "/api/hubs/chat/groups/g/connections/c"),
    ] {
        let e = resolve(&method, path).unwrap_err();
        assert_eq!(e.status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
    }
}
