//! Connection tokens any node can verify (sans-IO).
//!
//! In a cluster a client may negotiate with one node and open its WebSocket at another (no
//! load-balancer affinity). Negotiate then hands out a token that carries what the other node
//! needs, signed with the access key all nodes share:
//!
//! `<connection id>.<expiry, unix seconds, base 36>.<flags>.<tag>` where the tag is the first
//! 16 bytes of HMAC-SHA256 over the other fields, the hub and the user's digest (the
//! connection's [`Owner`]), base64url. The hub and the user are not in the token: a node
//! recomputes the tag for the hub and user of the request that presents it, so a token is
//! accepted only from its owner (the same rule as [`crate::conn::pending`]). Single use across
//! the cluster is the engine's part (`SET NX` on the connection id).

use base64::Engine as _;
use hmac::{Hmac, KeyInit as _, Mac as _};
use sha2::Sha256;

use crate::conn::owner::Owner;
use crate::id::ConnectionId;

/// Flags: the client negotiated stateful reconnect.
const STATEFUL: u8 = 1;

/// The domain separator of the tag (a token is nothing else signed with the access key).
const DOMAIN: &[u8] = b"switchboard connection token v1";

fn tag(key: &str, body: &str, owner: &Owner) -> [u8; 16] {
    // HMAC accepts any key length.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key.as_bytes()) else {
        return [0; 16];
    };
    mac.update(DOMAIN);
    mac.update(&[0]);
    mac.update(body.as_bytes());
    mac.update(&[0]);
    owner.feed(&mut |bytes| mac.update(bytes));
    let full = mac.finalize().into_bytes();
    let mut out = [0u8; 16];
    out.copy_from_slice(&full[..16]);
    out
}

/// A signed token for `connection_id` of `owner`, valid until `expires` (unix seconds).
pub(crate) fn mint(
    key: &str,
    connection_id: &ConnectionId,
    owner: &Owner,
    expires: u64,
    stateful: bool,
) -> String {
    let body = format!(
        "{}.{}.{}",
        connection_id.as_str(),
        base36(expires),
        u8::from(stateful) * STATEFUL
    );
    let tag = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(tag(key, &body, owner));
    format!("{body}.{tag}")
}

/// What a verified token says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Verified {
    /// The connection id negotiate gave out.
    pub connection_id: ConnectionId,
    /// Negotiated stateful reconnect.
    pub stateful_reconnect: bool,
}

/// Verify `token` for `owner` at `now` against every key in force: `None` when it is not a
/// signed token, not `owner`'s, or expired.
pub(crate) fn verify(keys: &[String], token: &str, owner: &Owner, now: u64) -> Option<Verified> {
    let (body, tag_text) = token.rsplit_once('.')?;
    let mut parts = body.split('.');
    let (id, expires, flags) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || id.is_empty() {
        return None;
    }
    let expires = u64::from_str_radix(expires, 36).ok()?;
    let flags: u8 = flags.parse().ok()?;
    let given = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(tag_text)
        .ok()?;
    let matches = keys.iter().any(|key| {
        // Constant time: a verifier that stops at the first differing byte tells an attacker
        // how much of a forged tag is right.
        let want = tag(key, body, owner);
        given.len() == want.len()
            && given
                .iter()
                .zip(want.iter())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    });
    if !matches || now >= expires {
        return None;
    }
    Some(Verified {
        connection_id: ConnectionId::from(id),
        stateful_reconnect: flags & STATEFUL != 0,
    })
}

fn base36(mut n: u64) -> String {
    const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    loop {
        out.push(DIGITS[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "key-one-0123456789012345678901234567890";

    #[test]
    fn a_token_verifies_for_its_owner_only_until_it_expires_and_survives_key_rotation() {
        let bob = Owner::new("chat", Some("bob"));
        let id = ConnectionId::from("abc_DEF-123");
        let t = mint(KEY, &id, &bob, 1000, true);
        let ok = verify(&[KEY.to_owned()], &t, &bob, 999).expect("valid");
        assert_eq!(ok.connection_id, id);
        assert!(ok.stateful_reconnect);
        assert!(
            !verify(
                &[KEY.to_owned()],
                &mint(KEY, &id, &bob, 1000, false),
                &bob,
                0
            )
            .expect("valid")
            .stateful_reconnect
        );
        // Expired, another user, another hub, anonymous, another key.
        assert_eq!(verify(&[KEY.to_owned()], &t, &bob, 1000), None);
        assert_eq!(
            verify(&[KEY.to_owned()], &t, &Owner::new("chat", Some("eve")), 0),
            None
        );
        assert_eq!(
            verify(&[KEY.to_owned()], &t, &Owner::new("other", Some("bob")), 0),
            None
        );
        assert_eq!(
            verify(&[KEY.to_owned()], &t, &Owner::new("chat", None), 0),
            None
        );
        assert_eq!(verify(&["other-key".to_owned()], &t, &bob, 0), None);
        // The secondary key still verifies after a rotation.
        assert!(verify(&["new".to_owned(), KEY.to_owned()], &t, &bob, 0).is_some());
    }

    #[test]
    fn altered_and_malformed_tokens_are_refused() {
        let owner = Owner::new("chat", None);
        let t = mint(KEY, &ConnectionId::from("id1"), &owner, 5000, false);
        let keys = [KEY.to_owned()];
        // Each field changed: a longer expiry, stateful turned on, another id.
        let (body, tag) = t.rsplit_once('.').expect("tag");
        let fields: Vec<&str> = body.split('.').collect();
        for forged in [
            format!("{}.{}.{}.{tag}", fields[0], base36(9_999_999), fields[2]),
            format!("{}.{}.1.{tag}", fields[0], fields[1]),
            format!("id2.{}.{}.{tag}", fields[1], fields[2]),
        ] {
            assert_eq!(verify(&keys, &forged, &owner, 0), None, "{forged}");
        }
        for bad in [
            "",
            ".",
            "a.b.c.d",
            "id1.zz.0",
            "id1.1.x.AAAA",
            "..0.",
            "random-token-text",
        ] {
            assert_eq!(verify(&keys, bad, &owner, 0), None, "{bad}");
        }
    }
}
