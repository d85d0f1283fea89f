//! Choosing the hub-server connection a new client sticks to
//! (`docs/protocol.md#routing-and-stickiness`).
//!
//! The choice is made once, at connect time, and kept for the client's lifetime. Without a
//! sticky claim the connection with the fewest routed clients wins (ties: the earliest
//! registered, so the choice is deterministic). With the SDK's `asrs.s.sn` (server name) and
//! `asrs.s.ssticky` claims, `Preferred` picks among that server's connections when it has any and
//! falls back to all otherwise; `Required` fails when that server has no routable connection.
//! Connections that are shutting down (`shutdown fin:*`) and Weak connections are never chosen.

/// How strictly a client must reach the server it negotiated with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StickyMode {
    /// Any server.
    Disabled,
    /// That server if it is connected, else any.
    Preferred,
    /// That server or nothing.
    Required,
}

impl StickyMode {
    /// From the `asrs.s.ssticky` claim value (the SDK writes `Preferred` / `Required`).
    pub fn from_claim(value: Option<&str>) -> Self {
        match value {
            Some(v) if v.eq_ignore_ascii_case("required") => Self::Required,
            Some(v) if v.eq_ignore_ascii_case("preferred") => Self::Preferred,
            _ => Self::Disabled,
        }
    }
}

/// One server connection as the chooser sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Candidate<'a> {
    /// The app server's id (`X-ASRS-Server-Id`).
    pub server_id: &'a str,
    /// Clients routed through this connection now.
    pub clients: usize,
    /// Whether new clients may be routed here (carries clients and is not shutting down).
    pub routable: bool,
}

/// Why no server could be chosen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NoServer {
    /// No routable server connection at all.
    NoneConnected,
    /// `Required` stickiness and the named server is not connected.
    RequiredServerMissing(String),
}

/// Pick the index of the candidate a new client is routed to.
pub fn choose_server(
    candidates: &[Candidate<'_>],
    sticky_server: Option<&str>,
    mode: StickyMode,
) -> Result<usize, NoServer> {
    let fewest = |filter: &dyn Fn(&Candidate<'_>) -> bool| {
        candidates
            .iter()
            .enumerate()
            .filter(|(_, c)| c.routable && filter(c))
            .min_by_key(|(i, c)| (c.clients, *i))
            .map(|(i, _)| i)
    };
    match (sticky_server, mode) {
        (Some(name), StickyMode::Preferred) => fewest(&|c| c.server_id == name)
            .or_else(|| fewest(&|_| true))
            .ok_or(NoServer::NoneConnected),
        (Some(name), StickyMode::Required) => fewest(&|c| c.server_id == name)
            .ok_or_else(|| NoServer::RequiredServerMissing(name.to_owned())),
        _ => fewest(&|_| true).ok_or(NoServer::NoneConnected),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(server_id: &str, clients: usize, routable: bool) -> Candidate<'_> {
        Candidate {
            server_id,
            clients,
            routable,
        }
    }

    #[test]
    fn table() {
        use StickyMode::*;
        let servers = [
            c("a", 3, true),
            c("b", 1, true),
            c("a", 1, true),
            c("c", 0, false),
        ];
        let table: [(Option<&str>, StickyMode, Result<usize, NoServer>); 8] = [
            (None, Disabled, Ok(1)),
            (Some("a"), Disabled, Ok(1)),
            (Some("a"), Preferred, Ok(2)),
            (Some("a"), Required, Ok(2)),
            (Some("c"), Preferred, Ok(1)),
            (
                Some("c"),
                Required,
                Err(NoServer::RequiredServerMissing("c".into())),
            ),
            (Some("zzz"), Preferred, Ok(1)),
            (
                Some("zzz"),
                Required,
                Err(NoServer::RequiredServerMissing("zzz".into())),
            ),
        ];
        for (name, mode, want) in table {
            assert_eq!(
                choose_server(&servers, name, mode),
                want,
                "{name:?} {mode:?}"
            );
        }
        assert_eq!(
            choose_server(&[], None, Disabled),
            Err(NoServer::NoneConnected)
        );
        assert_eq!(
            choose_server(&[c("x", 0, false)], None, Disabled),
            Err(NoServer::NoneConnected)
        );
    }

    #[test]
    fn ties_go_to_the_earliest() {
        let servers = [c("a", 2, true), c("b", 2, true)];
        assert_eq!(choose_server(&servers, None, StickyMode::Disabled), Ok(0));
    }

    #[test]
    fn claim_values() {
        assert_eq!(
            StickyMode::from_claim(Some("Required")),
            StickyMode::Required
        );
        assert_eq!(
            StickyMode::from_claim(Some("Preferred")),
            StickyMode::Preferred
        );
        assert_eq!(
            StickyMode::from_claim(Some("Disabled")),
            StickyMode::Disabled
        );
        assert_eq!(StickyMode::from_claim(None), StickyMode::Disabled);
    }
}
