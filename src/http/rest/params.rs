//! The REST API's parameter checks: the effective hub name (with Azure's `application`
//! prefix), the names and ids an operation carries, and the user-group `ttl`. Each failure is a
//! 400 with Azure's error body.

use std::time::Duration;

use super::route::Op;
use crate::http::ApiError;
use crate::hub::MembershipTtl;
use crate::id::{validate_group_name, validate_hub_name, validate_user_id};

/// The hub name the operation applies to, [canonical](crate::hub::canonical_hub_name) (lower
/// case): `<hub>`, or `<app>_<hub>` with an application.
pub(super) fn effective_hub(hub: &str, application: Option<&str>) -> Result<String, ApiError> {
    validate_hub_name(hub).map_err(ApiError::bad_request)?;
    match application.filter(|a| !a.is_empty()) {
        None => Ok(hub.to_ascii_lowercase()),
        Some(app) => {
            validate_hub_name(app).map_err(|_| {
                ApiError::bad_request(format!(
                    "Invalid application name '{app}': it must start with a letter and contain at most 128 letters, digits or the characters _`,.[]"
                ))
            })?;
            Ok(format!(
                "{}_{}",
                app.to_ascii_lowercase(),
                hub.to_ascii_lowercase()
            ))
        }
    }
}

/// Check the names and ids the operation carries.
pub(super) fn validate_op(op: &Op) -> Result<(), ApiError> {
    let group = |g: &str| validate_group_name(g).map_err(ApiError::bad_request);
    let user = |u: &str| validate_user_id(u).map_err(ApiError::bad_request);
    let conn = |c: &str| {
        if c.is_empty() {
            Err(ApiError::bad_request(
                "Invalid connection id: it must not be empty.",
            ))
        } else {
            Ok(())
        }
    };
    match op {
        Op::Health | Op::Unsupported(_) | Op::Broadcast | Op::CloseAll | Op::GenerateToken => {
            Ok(())
        }
        Op::SendUser(u) | Op::CloseUser(u) | Op::UserExists(u) | Op::RemoveUserFromAllGroups(u) => {
            user(u)
        }
        Op::SendGroup(g) | Op::CloseGroup(g) | Op::GroupExists(g) | Op::ListGroupConnections(g) => {
            group(g)
        }
        Op::SendConnection(c)
        | Op::CloseConnection(c)
        | Op::ConnectionExists(c)
        | Op::RemoveConnectionFromAllGroups(c) => conn(c),
        Op::UserInGroup { user: u, group: g }
        | Op::AddUserToGroup { user: u, group: g }
        | Op::RemoveUserFromGroup { user: u, group: g } => {
            user(u)?;
            group(g)
        }
        Op::AddConnectionToGroup { group: g, id }
        | Op::RemoveConnectionFromGroup { group: g, id } => {
            group(g)?;
            conn(id)
        }
    }
}

/// The user-group `ttl` query value: absent or empty → no ttl, `0` → current connections only,
/// `N` → N seconds, N at most [`MembershipTtl::MAX`] (the service protocol's int32 `ttl`).
pub(super) fn parse_ttl(ttl: Option<&str>) -> Result<MembershipTtl, ApiError> {
    let max = MembershipTtl::MAX.as_secs();
    match ttl.map(str::trim).filter(|t| !t.is_empty()) {
        None => Ok(MembershipTtl::Unlimited),
        Some(t) => match t.parse::<u64>() {
            Ok(0) => Ok(MembershipTtl::CurrentConnectionsOnly),
            Ok(n) if n <= max => Ok(MembershipTtl::For(Duration::from_secs(n))),
            _ => Err(ApiError::bad_request(format!(
                "Invalid ttl '{t}': it must be an integer number of seconds from 0 to {max}."
            ))),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_values() {
        assert_eq!(parse_ttl(None).unwrap(), MembershipTtl::Unlimited);
        assert_eq!(parse_ttl(Some("")).unwrap(), MembershipTtl::Unlimited);
        assert_eq!(
            parse_ttl(Some("0")).unwrap(),
            MembershipTtl::CurrentConnectionsOnly
        );
        assert_eq!(
            parse_ttl(Some("30")).unwrap(),
            MembershipTtl::For(Duration::from_secs(30))
        );
        assert_eq!(
            parse_ttl(Some("2147483647")).unwrap(),
            MembershipTtl::For(MembershipTtl::MAX)
        );
        assert!(parse_ttl(Some("2147483648")).is_err());
        assert!(parse_ttl(Some("18446744073709551615")).is_err());
        assert!(parse_ttl(Some("-1")).is_err());
        assert!(parse_ttl(Some("1.5")).is_err());
        assert!(parse_ttl(Some("abc")).is_err());
    }

    #[test]
    fn effective_hub_names() {
        assert_eq!(effective_hub("Chat", None).unwrap(), "chat");
        assert_eq!(effective_hub("Chat", Some("")).unwrap(), "chat");
        assert_eq!(effective_hub("Chat", Some("MyApp")).unwrap(), "myapp_chat");
        assert!(effective_hub("1chat", None).is_err());
        assert!(effective_hub("chat", Some("my-app")).is_err());
    }
}
