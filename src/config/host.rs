//! Listen addresses given by name (`localhost:8080`) as well as by number, and this machine's
//! name for a public endpoint when the broker listens on every interface.

use std::net::{SocketAddr, ToSocketAddrs};

use serde::{Deserialize, Deserializer};

/// `127.0.0.1:8080`, `[::1]:8080` or `localhost:8080`: a name is looked up and its first IPv4
/// address taken (else its first address), as one socket binds one address.
pub fn parse_listen(text: &str) -> Result<SocketAddr, String> {
    let text = text.trim();
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let Some((host, port)) = text.rsplit_once(':') else {
        return Err(format!(
            "'{text}' is not an address like 127.0.0.1:8080 or localhost:8080 (the port is missing)"
        ));
    };
    if host.is_empty() || port.parse::<u16>().is_err() {
        return Err(format!(
            "'{text}' is not an address like 127.0.0.1:8080 or localhost:8080"
        ));
    }
    let addrs: Vec<SocketAddr> = text
        .to_socket_addrs()
        .map_err(|e| format!("'{text}': the name '{host}' does not resolve here: {e}"))?
        .collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or_else(|| addrs.first())
        .copied()
        .ok_or_else(|| format!("'{text}': the name '{host}' has no address here"))
}

/// Serde: a listen address by number or by name.
pub(super) fn deserialize_listen<'de, D: Deserializer<'de>>(d: D) -> Result<SocketAddr, D::Error> {
    let text = String::deserialize(d)?;
    parse_listen(&text).map_err(serde::de::Error::custom)
}

/// Serde: an optional listen address by number or by name.
pub(super) fn deserialize_listen_opt<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<SocketAddr>, D::Error> {
    match Option::<String>::deserialize(d)? {
        Some(text) => parse_listen(&text)
            .map(Some)
            .map_err(serde::de::Error::custom),
        None => Ok(None),
    }
}

/// This machine's name (`/proc/sys/kernel/hostname`, else `$HOSTNAME`), when it has a usable
/// one: letters, digits, `.`, `-` and `_` only, at most 253 characters.
pub fn host_name() -> Option<String> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())?;
    let name = name.trim();
    let usable = !name.is_empty()
        && name.len() <= 253
        && name != "localhost"
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
    usable.then(|| name.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_addresses_by_number_and_by_name() {
        assert_eq!(
            parse_listen("127.0.0.1:8080"),
            Ok(SocketAddr::from(([127, 0, 0, 1], 8080)))
        );
        assert_eq!(parse_listen("[::1]:9000").map(|a| a.port()), Ok(9000));
        let local = parse_listen("localhost:8080").expect("localhost resolves");
        assert!(local.ip().is_loopback(), "{local}");
        assert_eq!(local.port(), 8080);
        let e = parse_listen("localhost").unwrap_err();
        assert!(e.contains("the port is missing"), "{e}");
        let e = parse_listen("localhost:http").unwrap_err();
        assert!(e.contains("like 127.0.0.1:8080"), "{e}");
        let e = parse_listen("no-such-host.invalid:80").unwrap_err();
        assert!(e.contains("does not resolve"), "{e}");
    }

    #[test]
    fn the_file_takes_names_too() {
        let config: crate::config::Config =
            toml::from_str("listen = \"localhost:8080\"\nadmin_listen = \"localhost:9090\"\n")
                .expect("names parse");
        assert!(config.listen.ip().is_loopback());
        assert_eq!(config.admin_listen.map(|a| a.port()), Some(9090));
    }
}
