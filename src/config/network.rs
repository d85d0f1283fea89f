//! `[network]`: which client addresses may make which kinds of request (Azure SignalR Service's
//! network access control), and which proxies' `X-Forwarded-For` is believed.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::ConfigError;

/// The kinds of request a rule allows or denies: Azure's `ClientConnection`,
/// `ServerConnection` and `RESTAPI`, and Switchboard's own `Admin` and `Metrics`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RequestKind {
    /// Negotiate and the client transports (`/client/...`).
    ClientConnection,
    /// Hub servers' connections (`/server/...`).
    ServerConnection,
    /// The data-plane REST API (`/api/...`, its health probe included).
    #[serde(rename = "RESTAPI")]
    RestApi,
    /// `/admin/...`.
    Admin,
    /// `/metrics`.
    Metrics,
}

impl RequestKind {
    /// Every kind, in the order they are named.
    pub const ALL: [Self; 5] = [
        Self::ClientConnection,
        Self::ServerConnection,
        Self::RestApi,
        Self::Admin,
        Self::Metrics,
    ];

    /// The name rules and messages use.
    pub fn name(self) -> &'static str {
        match self {
            Self::ClientConnection => "ClientConnection",
            Self::ServerConnection => "ServerConnection",
            Self::RestApi => "RESTAPI",
            Self::Admin => "Admin",
            Self::Metrics => "Metrics",
        }
    }

    /// The kind of a request for `path`; `None` for what no rule governs (`/healthz`,
    /// `/readyz`, and paths nothing serves).
    pub fn of_path(path: &str) -> Option<Self> {
        let first = path.trim_start_matches('/').split('/').next().unwrap_or("");
        match first {
            "client" => Some(Self::ClientConnection),
            "server" => Some(Self::ServerConnection),
            "api" => Some(Self::RestApi),
            "admin" => Some(Self::Admin),
            "metrics" => Some(Self::Metrics),
            _ => None,
        }
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

/// What a request no rule decides gets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DefaultAction {
    /// Served (the default: no rules, no change).
    #[default]
    Allow,
    /// Refused with 403.
    Deny,
}

/// One rule: for a client address in one of `cidrs`, the kinds in `allow` are served and those
/// in `deny` refused. Rules are tried in order; the first that names the request's kind for its
/// address decides.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NetworkRule {
    /// Addresses (`10.0.0.0/8`, `2001:db8::/32`, or one address).
    pub cidrs: Vec<String>,
    /// Kinds served.
    pub allow: Vec<RequestKind>,
    /// Kinds refused.
    pub deny: Vec<RequestKind>,
}

/// `[network]`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NetworkConfig {
    /// What a request no rule decides gets: `allow` (default) or `deny`.
    pub default_action: DefaultAction,
    /// The rules, tried in order.
    pub rules: Vec<NetworkRule>,
    /// Reverse proxies (addresses or CIDRs) whose `X-Forwarded-For` is believed: from a peer
    /// listed here, the client address is the header's last entry that is not itself a listed
    /// proxy. From any other peer the header is ignored.
    pub trusted_proxies: Vec<String>,
}

impl NetworkConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        self.policy().map(|_| ())
    }

    /// The compiled rules.
    pub fn policy(&self) -> Result<NetworkPolicy, ConfigError> {
        let mut rules = Vec::with_capacity(self.rules.len());
        for (i, rule) in self.rules.iter().enumerate() {
            if rule.cidrs.is_empty() {
                return Err(ConfigError::new(
                    format!("network.rules[{i}].cidrs"),
                    "names no address (use [\"0.0.0.0/0\", \"::/0\"] for every address)",
                ));
            }
            let cidrs = parse_all(&rule.cidrs, &format!("network.rules[{i}].cidrs"))?;
            if let Some(kind) = rule.allow.iter().find(|k| rule.deny.contains(k)) {
                return Err(ConfigError::new(
                    format!("network.rules[{i}]"),
                    format!("{} is both allowed and denied", kind.name()),
                ));
            }
            let mask = |kinds: &[RequestKind]| kinds.iter().fold(0, |m, k| m | k.bit());
            rules.push(CompiledRule {
                cidrs,
                allow: mask(&rule.allow),
                deny: mask(&rule.deny),
            });
        }
        Ok(NetworkPolicy {
            deny_by_default: self.default_action == DefaultAction::Deny,
            rules,
            proxies: parse_all(&self.trusted_proxies, "network.trusted_proxies")?,
        })
    }
}

fn parse_all(texts: &[String], key: &str) -> Result<Vec<Cidr>, ConfigError> {
    texts
        .iter()
        .enumerate()
        .map(|(j, text)| {
            Cidr::parse(text).ok_or_else(|| {
                ConfigError::new(
                    format!("{key}[{j}]"),
                    format!(
                        "'{text}' is not an address or a CIDR block like 10.0.0.0/8 or 2001:db8::/32"
                    ),
                )
            })
        })
        .collect()
}

/// An address block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// `a.b.c.d/n`, `x:y::/n`, or one address (all its bits).
    pub fn parse(text: &str) -> Option<Self> {
        let text = text.trim();
        let (addr, prefix) = match text.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix.parse::<u8>().ok()?)),
            None => (text, None),
        };
        let addr: IpAddr = addr.parse().ok()?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        (prefix <= max).then_some(Self { addr, prefix })
    }

    /// Whether `ip` is in the block (an IPv4-mapped IPv6 address counts as its IPv4 address).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, canonical(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// An IPv4-mapped IPv6 address (a dual-stack socket's peer) as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct CompiledRule {
    cidrs: Vec<Cidr>,
    allow: u8,
    deny: u8,
}

/// `[network]` compiled: [`Self::allows`] decides a request, [`Self::client_ip`] finds its
/// client address.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NetworkPolicy {
    deny_by_default: bool,
    rules: Vec<CompiledRule>,
    proxies: Vec<Cidr>,
}

impl NetworkPolicy {
    /// Whether any rule or proxy is configured (otherwise every request is served and the peer
    /// address is the client's).
    pub fn is_open(&self) -> bool {
        !self.deny_by_default && self.rules.is_empty()
    }

    /// Whether a `kind` request from `ip` is served.
    pub fn allows(&self, kind: RequestKind, ip: Option<IpAddr>) -> bool {
        if let Some(ip) = ip {
            for rule in &self.rules {
                if rule.cidrs.iter().any(|c| c.contains(ip)) {
                    if rule.allow & kind.bit() != 0 {
                        return true;
                    }
                    if rule.deny & kind.bit() != 0 {
                        return false;
                    }
                }
            }
        }
        !self.deny_by_default
    }

    /// Whether proxies are configured.
    pub fn has_proxies(&self) -> bool {
        !self.proxies.is_empty()
    }

    /// The client address of a request from `peer` whose `X-Forwarded-For` entries (all of its
    /// headers, in order) are `forwarded`: from a trusted proxy, the last entry that is not a
    /// trusted proxy itself (or the first entry, when all are); otherwise the peer.
    pub fn client_ip<'a>(
        &self,
        peer: IpAddr,
        forwarded: impl DoubleEndedIterator<Item = &'a str>,
    ) -> IpAddr {
        let peer = canonical(peer);
        if !self.is_proxy(peer) {
            return peer;
        }
        let mut client = peer;
        for entry in forwarded.rev() {
            let Some(ip) = parse_address(entry) else {
                // Garbage from an untrusted hop: the last address known to be good.
                return client;
            };
            client = canonical(ip);
            if !self.is_proxy(client) {
                return client;
            }
        }
        client
    }

    fn is_proxy(&self, ip: IpAddr) -> bool {
        self.proxies.iter().any(|p| p.contains(ip))
    }
}

/// An address as proxies write it: `192.0.2.1`, `2001:db8::1`, with or without a port
/// (`192.0.2.1:4711`, `[2001:db8::1]:4711`).
pub fn parse_address(text: &str) -> Option<IpAddr> {
    let text = text.trim();
    text.parse::<IpAddr>()
        .ok()
        .or_else(|| text.parse::<std::net::SocketAddr>().ok().map(|a| a.ip()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn blocks_contain_their_addresses_v4_v6_and_mapped() {
        let net = Cidr::parse("10.1.0.0/16").unwrap();
        assert!(net.contains(ip("10.1.255.3")));
        assert!(!net.contains(ip("10.2.0.1")));
        assert!(net.contains(ip("::ffff:10.1.2.3")), "IPv4-mapped");
        assert!(!net.contains(ip("2001:db8::1")));
        let v6 = Cidr::parse("2001:db8::/32").unwrap();
        assert!(v6.contains(ip("2001:db8:ffff::1")));
        assert!(!v6.contains(ip("2001:db9::1")));
        assert!(
            Cidr::parse("0.0.0.0/0")
                .unwrap()
                .contains(ip("203.0.113.9"))
        );
        assert!(Cidr::parse("::/0").unwrap().contains(ip("::1")));
        let one = Cidr::parse("192.0.2.7").unwrap();
        assert!(one.contains(ip("192.0.2.7")) && !one.contains(ip("192.0.2.8")));
        for bad in [
            "10.0.0.0/33",
            "::/129",
            "10.0.0/8",
            "x",
            "10.0.0.0/",
            "/8",
            "",
        ] {
            assert_eq!(Cidr::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_first_rule_naming_the_kind_for_the_address_decides() {
        let config: NetworkConfig = toml::from_str(
            r#"
            default_action = "deny"
            [[rules]]
            cidrs = ["10.0.0.0/8"]
            allow = ["ServerConnection", "RESTAPI", "Admin", "Metrics"]
            deny = ["ClientConnection"]
            [[rules]]
            cidrs = ["0.0.0.0/0", "::/0"]
            allow = ["ClientConnection"]
            "#,
        )
        .unwrap();
        let policy = config.policy().unwrap();
        let inside = Some(ip("10.0.0.5"));
        let outside = Some(ip("198.51.100.1"));
        use RequestKind::*;
        assert!(policy.allows(RestApi, inside));
        assert!(policy.allows(Admin, inside));
        assert!(
            !policy.allows(ClientConnection, inside),
            "denied before rule 2"
        );
        assert!(policy.allows(ClientConnection, outside));
        assert!(policy.allows(ClientConnection, Some(ip("2001:db8::1"))));
        assert!(!policy.allows(RestApi, outside), "the default");
        assert!(!policy.allows(Metrics, None), "no address: the default");
        assert!(
            NetworkConfig::default()
                .policy()
                .unwrap()
                .allows(Admin, outside)
        );
    }

    #[test]
    fn bad_rules_name_their_key() {
        let bad = |text: &str| {
            toml::from_str::<NetworkConfig>(text)
                .unwrap()
                .policy()
                .unwrap_err()
                .key
        };
        assert_eq!(
            bad("[[rules]]\ncidrs = [\"10.0.0.0/8\", \"10.0.0.0/40\"]\nallow = [\"Admin\"]"),
            "network.rules[0].cidrs[1]"
        );
        assert_eq!(
            bad("[[rules]]\nallow = [\"Admin\"]"),
            "network.rules[0].cidrs"
        );
        assert_eq!(
            bad("[[rules]]\ncidrs = [\"::/0\"]\nallow = [\"Admin\"]\ndeny = [\"Admin\"]"),
            "network.rules[0]"
        );
        assert_eq!(
            bad("trusted_proxies = [\"proxy.local\"]"),
            "network.trusted_proxies[0]"
        );
        assert!(
            toml::from_str::<NetworkConfig>("[[rules]]\ncidrs=[\"::/0\"]\nallow=[\"Trace\"]")
                .is_err()
        );
    }

    #[test]
    fn forwarded_addresses_with_and_without_ports() {
        assert_eq!(parse_address(" 192.0.2.1"), "192.0.2.1".parse().ok());
        assert_eq!(parse_address("192.0.2.1:4711"), "192.0.2.1".parse().ok());
        assert_eq!(parse_address("2001:db8::1"), "2001:db8::1".parse().ok());
        assert_eq!(
            parse_address("[2001:db8::1]:4711"),
            "2001:db8::1".parse().ok()
        );
        assert_eq!(parse_address("unknown"), None);
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let policy = NetworkConfig {
            trusted_proxies: vec!["10.0.0.0/8".into(), "::1".into()],
            ..NetworkConfig::default()
        }
        .policy()
        .unwrap();
        let client = |peer: &str, xff: &[&str]| policy.client_ip(ip(peer), xff.iter().copied());
        // An untrusted peer's header is ignored.
        assert_eq!(client("198.51.100.7", &["203.0.113.1"]), ip("198.51.100.7"));
        // Through one proxy.
        assert_eq!(client("10.0.0.2", &["203.0.113.1"]), ip("203.0.113.1"));
        // Through two proxies: the client put a fake entry first, the last untrusted one wins.
        assert_eq!(
            client("10.0.0.2", &["192.0.2.66", "203.0.113.1", "10.0.0.9"]),
            ip("203.0.113.1")
        );
        // With ports, IPv6, and a mapped peer.
        assert_eq!(client("::1", &["[2001:db8::5]:4711"]), ip("2001:db8::5"));
        assert_eq!(
            client("::ffff:10.0.0.2", &["203.0.113.1:80"]),
            ip("203.0.113.1")
        );
        // No header: the proxy itself; garbage: the last good address.
        assert_eq!(client("10.0.0.2", &[]), ip("10.0.0.2"));
        assert_eq!(
            client("10.0.0.2", &["203.0.113.1", "unknown"]),
            ip("10.0.0.2")
        );
    }
}
