//! Per-tenant admission (`[throttle]` in the configuration): how many client connections one
//! user id, one token (its JWT signature) or one client address may hold at once, and how many
//! negotiations each may start per second — Azure's application-firewall rules ThrottleByUserId
//! and ThrottleByJwtSignature, plus one per address. A limit of 0 is no limit, and a key whose
//! limits are both 0 is not tracked at all.
//!
//! Keys are hashed with a per-process random SipHash key, so an entry has a fixed size whatever
//! the length of a user id or token, and nobody can aim collisions at a victim; a collision
//! would only make two tenants share a count. The two tables and what bounds them:
//!
//! | table | entry lives | bound |
//! | --- | --- | --- |
//! | connections | while a [`TenantLease`] holds it (the lease rides on the connection's slot); removed when its count returns to 0 | one entry per key of each open client connection (≤ 3 × `limits.max_connections`) |
//! | negotiations | until the second changes (fixed one-second windows; the table is emptied then, and by [`TenantLimits::sweep`]) | `capacity` keys per second; a negotiation that needs a new key in a full table is refused ([`Refusal::Busy`]) |
//!
//! This module decides; the HTTP layer extracts the keys from a request and answers 429.

use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher as _;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;

use crate::config::ThrottleConfig;

/// What a per-tenant limit counts by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum By {
    /// The token's user id.
    User,
    /// The token itself (its signature).
    Token,
    /// The client address (IPv6 by /64).
    Ip,
}

impl By {
    const ALL: [Self; 3] = [Self::User, Self::Token, Self::Ip];

    /// What the refusal message calls the tenant.
    pub(crate) fn subject(self) -> &'static str {
        match self {
            Self::User => "this user",
            Self::Token => "this access token",
            Self::Ip => "this client address",
        }
    }
}

/// Why a tenant was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Refusal {
    /// The tenant holds its maximum of concurrent connections.
    #[error("too many connections for {subject} (limit {limit})", subject = .0.subject(), limit = .1)]
    Connections(By, usize),
    /// The tenant started its maximum of negotiations this second.
    #[error("too many negotiations per second for {subject} (limit {limit})", subject = .0.subject(), limit = .1)]
    Rate(By, u32),
    /// The negotiation table is full for this second (too many distinct tenants negotiating).
    #[error("too many clients are negotiating at once")]
    Busy,
}

type Key = (By, u64);

/// The keys one request counts under (only those with a limit).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Tenant {
    keys: Vec<Key>,
}

/// One second's negotiation counts.
#[derive(Debug, Default)]
struct Window {
    second: u64,
    counts: HashMap<Key, u32>,
}

/// The per-tenant counters of one broker.
#[derive(Debug)]
pub(crate) struct TenantLimits {
    config: ThrottleConfig,
    hasher: RandomState,
    connections: Mutex<HashMap<Key, usize>>,
    negotiations: Mutex<Window>,
    capacity: usize,
    epoch: Instant,
}

/// A tenant's share of the connection counts, given back when dropped.
#[derive(Debug)]
pub(crate) struct TenantLease {
    limits: Arc<TenantLimits>,
    keys: Vec<Key>,
}

impl Drop for TenantLease {
    fn drop(&mut self) {
        let mut map = self.limits.connections.lock();
        for key in &self.keys {
            if let Some(n) = map.get_mut(key) {
                *n -= 1;
                if *n == 0 {
                    map.remove(key);
                }
            }
        }
    }
}

impl TenantLimits {
    /// Counters for `config`; the negotiation table holds at most `capacity` keys per second.
    pub(crate) fn new(config: ThrottleConfig, capacity: usize) -> Self {
        Self {
            config,
            hasher: RandomState::new(),
            connections: Mutex::default(),
            negotiations: Mutex::default(),
            capacity: capacity.max(1),
            epoch: Instant::now(),
        }
    }

    fn connection_limit(&self, by: By) -> usize {
        match by {
            By::User => self.config.max_connections_per_user,
            By::Token => self.config.max_connections_per_token,
            By::Ip => self.config.max_connections_per_ip,
        }
    }

    fn rate_limit(&self, by: By) -> u32 {
        match by {
            By::User => self.config.max_negotiations_per_sec_per_user,
            By::Token => self.config.max_negotiations_per_sec_per_token,
            By::Ip => self.config.max_negotiations_per_sec_per_ip,
        }
    }

    /// The keys of a request: its user id, its token's signature and its client address, each
    /// only when present and limited.
    pub(crate) fn tenant(
        &self,
        user: Option<&str>,
        signature: Option<&str>,
        ip: Option<IpAddr>,
    ) -> Tenant {
        let mut keys = Vec::new();
        for by in By::ALL {
            if self.connection_limit(by) == 0 && self.rate_limit(by) == 0 {
                continue;
            }
            let hash = match by {
                By::User => user.map(|u| self.hasher.hash_one((0u8, u))),
                By::Token => signature.map(|s| self.hasher.hash_one((1u8, s))),
                By::Ip => ip.map(|ip| self.hasher.hash_one((2u8, ip_key(ip)))),
            };
            if let Some(hash) = hash {
                keys.push((by, hash));
            }
        }
        Tenant { keys }
    }

    fn connection_keys<'a>(&'a self, tenant: &'a Tenant) -> impl Iterator<Item = Key> + 'a {
        tenant
            .keys
            .iter()
            .copied()
            .filter(|(by, _)| self.connection_limit(*by) != 0)
    }

    fn check(&self, map: &HashMap<Key, usize>, tenant: &Tenant) -> Result<(), Refusal> {
        for key in self.connection_keys(tenant) {
            let limit = self.connection_limit(key.0);
            if map.get(&key).copied().unwrap_or(0) >= limit {
                return Err(Refusal::Connections(key.0, limit));
            }
        }
        Ok(())
    }

    /// Whether the tenant could open one more connection now (negotiate asks before handing out
    /// a connection id; [`Self::connect`] decides).
    pub(crate) fn check_connections(&self, tenant: &Tenant) -> Result<(), Refusal> {
        self.check(&self.connections.lock(), tenant)
    }

    /// Count one more connection for the tenant, or refuse when any of its keys is at its limit.
    pub(crate) fn connect(self: &Arc<Self>, tenant: &Tenant) -> Result<TenantLease, Refusal> {
        let mut map = self.connections.lock();
        self.check(&map, tenant)?;
        let keys: Vec<Key> = self.connection_keys(tenant).collect();
        for key in &keys {
            *map.entry(*key).or_insert(0) += 1;
        }
        Ok(TenantLease {
            limits: self.clone(),
            keys,
        })
    }

    fn second(&self) -> u64 {
        self.epoch.elapsed().as_secs()
    }

    /// Count one negotiation for the tenant in the current second, or refuse when any of its
    /// keys reached its rate, or when the table is full.
    pub(crate) fn negotiate(&self, tenant: &Tenant) -> Result<(), Refusal> {
        self.negotiate_at(tenant, self.second())
    }

    /// [`Self::negotiate`] in the window of `second` (seconds since the table was made).
    fn negotiate_at(&self, tenant: &Tenant, second: u64) -> Result<(), Refusal> {
        let keys: Vec<Key> = tenant
            .keys
            .iter()
            .copied()
            .filter(|(by, _)| self.rate_limit(*by) != 0)
            .collect();
        if keys.is_empty() {
            return Ok(());
        }
        let mut window = self.negotiations.lock();
        if window.second != second {
            window.second = second;
            window.counts.clear();
        }
        let mut new_keys = 0;
        for key in &keys {
            let limit = self.rate_limit(key.0);
            match window.counts.get(key) {
                Some(n) if *n >= limit => return Err(Refusal::Rate(key.0, limit)),
                Some(_) => {}
                None => new_keys += 1,
            }
        }
        if window.counts.len() + new_keys > self.capacity {
            return Err(Refusal::Busy);
        }
        for key in keys {
            *window.counts.entry(key).or_insert(0) += 1;
        }
        Ok(())
    }

    /// Drop the negotiation counts of past seconds and give back the memory of emptied tables
    /// (called every second by the broker's sweeper).
    pub(crate) fn sweep(&self) {
        self.sweep_at(self.second());
    }

    fn sweep_at(&self, second: u64) {
        {
            let mut window = self.negotiations.lock();
            if window.second != second {
                window.second = second;
                window.counts = HashMap::new();
            }
        }
        let mut map = self.connections.lock();
        if map.is_empty() && map.capacity() > 1024 {
            *map = HashMap::new();
        }
    }

    /// Entries in the connection table and in the negotiation table.
    #[cfg(test)]
    fn tracked(&self) -> (usize, usize) {
        (
            self.connections.lock().len(),
            self.negotiations.lock().counts.len(),
        )
    }
}

/// The address a per-address limit counts: IPv4 as is (also when mapped into IPv6), IPv6 by its
/// /64 prefix (one subscriber usually holds a whole /64).
fn ip_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    fn limits(config: ThrottleConfig, capacity: usize) -> Arc<TenantLimits> {
        Arc::new(TenantLimits::new(config, capacity))
    }

    fn off() -> ThrottleConfig {
        ThrottleConfig {
            max_connections_per_user: 0,
            max_connections_per_token: 0,
            max_connections_per_ip: 0,
            max_negotiations_per_sec_per_user: 0,
            max_negotiations_per_sec_per_token: 0,
            max_negotiations_per_sec_per_ip: 0,
            trust_forwarded_for: false,
        }
    }

    const IP: Option<IpAddr> = Some(IpAddr::V4(Ipv4Addr::LOCALHOST));

    #[test]
    fn unlimited_keys_are_not_tracked() {
        let l = limits(off(), 10);
        let t = l.tenant(Some("u"), Some("sig"), IP);
        assert_eq!(t, Tenant::default());
        let _leases: Vec<_> = (0..100).map(|_| l.connect(&t).unwrap()).collect();
        for _ in 0..100 {
            l.negotiate(&t).unwrap();
        }
        assert_eq!(l.tracked(), (0, 0));
    }

    #[test]
    fn connections_per_user_are_limited_and_given_back() {
        let l = limits(
            ThrottleConfig {
                max_connections_per_user: 2,
                ..off()
            },
            10,
        );
        let alice = l.tenant(Some("alice"), Some("s1"), IP);
        let bob = l.tenant(Some("bob"), Some("s1"), IP);
        let a1 = l.connect(&alice).unwrap();
        let a2 = l.connect(&alice).unwrap();
        assert_eq!(
            l.connect(&alice).unwrap_err(),
            Refusal::Connections(By::User, 2)
        );
        assert_eq!(
            l.check_connections(&alice),
            Err(Refusal::Connections(By::User, 2))
        );
        let b1 = l.connect(&bob).expect("another user still connects");
        assert_eq!(l.tracked().0, 2);
        drop(a1);
        let a3 = l.connect(&alice).expect("a slot came back");
        drop((a2, a3, b1));
        assert_eq!(l.tracked(), (0, 0), "entries go when their count is 0");
    }

    #[test]
    fn anonymous_tokens_escape_the_user_limit_but_not_the_token_limit() {
        let l = limits(
            ThrottleConfig {
                max_connections_per_user: 1,
                max_connections_per_token: 1,
                ..off()
            },
            10,
        );
        let anon = l.tenant(None, Some("sig"), IP);
        let _lease = l.connect(&anon).unwrap();
        assert_eq!(
            l.connect(&anon).unwrap_err(),
            Refusal::Connections(By::Token, 1)
        );
        let other = l.tenant(None, Some("sig2"), IP);
        l.connect(&other).expect("another token");
    }

    #[test]
    fn a_refused_connection_counts_nothing() {
        let l = limits(
            ThrottleConfig {
                max_connections_per_user: 5,
                max_connections_per_ip: 1,
                ..off()
            },
            10,
        );
        let t = l.tenant(Some("u"), None, IP);
        let lease = l.connect(&t).unwrap();
        assert!(l.connect(&t).is_err());
        drop(lease);
        assert_eq!(l.tracked(), (0, 0));
    }

    #[test]
    fn negotiations_per_second_per_ip() {
        let l = limits(
            ThrottleConfig {
                max_negotiations_per_sec_per_ip: 3,
                ..off()
            },
            10,
        );
        let a = l.tenant(Some("a"), None, IP);
        let other = l.tenant(
            Some("a"),
            None,
            Some(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1))),
        );
        for _ in 0..3 {
            l.negotiate_at(&a, 7).unwrap();
        }
        assert_eq!(l.negotiate_at(&a, 7), Err(Refusal::Rate(By::Ip, 3)));
        l.negotiate_at(&other, 7).expect("another address");
        l.negotiate_at(&a, 8).expect("the next second starts over");
        assert_eq!(l.tracked().1, 1, "the past second's keys are gone");
    }

    #[test]
    fn a_full_negotiation_table_refuses_new_keys() {
        let l = limits(
            ThrottleConfig {
                max_negotiations_per_sec_per_ip: 100,
                ..off()
            },
            2,
        );
        let ip = |n: u8| l.tenant(None, None, Some(IpAddr::V4(Ipv4Addr::new(10, 0, 0, n))));
        l.negotiate_at(&ip(1), 1).unwrap();
        l.negotiate_at(&ip(2), 1).unwrap();
        assert_eq!(l.negotiate_at(&ip(3), 1), Err(Refusal::Busy));
        l.negotiate_at(&ip(1), 1).expect("known keys still count");
        assert_eq!(l.tracked().1, 2);
        l.negotiate_at(&ip(3), 2)
            .expect("room again in the next second");
    }

    #[test]
    fn sweep_empties_past_windows() {
        let l = limits(
            ThrottleConfig {
                max_negotiations_per_sec_per_user: 10,
                ..off()
            },
            10,
        );
        l.negotiate_at(&l.tenant(Some("u"), None, None), 3).unwrap();
        l.sweep_at(3);
        assert_eq!(l.tracked(), (0, 1), "the current second is kept");
        l.sweep_at(4);
        assert_eq!(l.tracked(), (0, 0));
    }

    #[test]
    fn ipv6_counts_by_slash_64_and_mapped_ipv4_as_ipv4() {
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(ip_key(a), ip_key(b));
        assert_ne!(ip_key(a), ip_key(c));
        let mapped: IpAddr = "::ffff:127.0.0.1".parse().unwrap();
        assert_eq!(ip_key(mapped), IpAddr::V4(Ipv4Addr::LOCALHOST));
    }
}
