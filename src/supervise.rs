//! Actor supervision: a panic inside an actor is caught where the actor runs, logged with the
//! hub and connection it served, and counted in `switchboard_actor_panics_total{actor=...}`.
//!
//! What a panicking actor held is released by its own drop guards, not here: a connection's
//! slot, its place in the connection index and in its hub, a hub server's registration (see
//! `conn::client` and `conn::server`). A hub that panics closes its connections and leaves the
//! registry, so the next use starts a fresh one (see `hub::actor`). This module only turns the
//! panic into a log line and a count instead of a detached task dying silently.

use std::any::Any;
use std::panic::AssertUnwindSafe;

use futures_util::FutureExt as _;

use crate::telemetry::Metrics;

/// The kind of actor, the `actor` label of `switchboard_actor_panics_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ActorKind {
    /// A hub actor.
    Hub,
    /// A client connection actor.
    Client,
    /// A hub-server connection actor.
    Server,
}

impl ActorKind {
    /// The label value.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Hub => "hub",
            Self::Client => "client",
            Self::Server => "server",
        }
    }
}

/// Run `actor` to its end; a panic inside it is [`report`]ed instead of unwinding further.
/// Returns whether it panicked.
pub(crate) async fn supervised<F: Future<Output = ()>>(
    kind: ActorKind,
    metrics: &Metrics,
    hub: &str,
    connection: &str,
    actor: F,
) -> bool {
    match AssertUnwindSafe(actor).catch_unwind().await {
        Ok(()) => false,
        Err(payload) => {
            report(kind, metrics, hub, connection, payload.as_ref());
            true
        }
    }
}

/// Log a caught panic with its context and count it.
pub(crate) fn report(
    kind: ActorKind,
    metrics: &Metrics,
    hub: &str,
    connection: &str,
    payload: &(dyn Any + Send),
) {
    let counter = match kind {
        ActorKind::Hub => &metrics.actor_panics_hub,
        ActorKind::Client => &metrics.actor_panics_client,
        ActorKind::Server => &metrics.actor_panics_server,
    };
    Metrics::inc(counter);
    tracing::error!(
        actor = kind.as_str(),
        hub,
        connection,
        panic = panic_text(payload),
        "actor panicked; what it held was released"
    );
}

/// The text a panic was raised with (`panic!("...")` payloads are `&str` or `String`).
fn panic_text(payload: &(dyn Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::names;

    #[tokio::test]
    async fn a_panic_is_caught_and_counted_by_kind() {
        let metrics = Metrics::default();
        let panicked = supervised(ActorKind::Server, &metrics, "chat", "c1", async {
            panic!("test panic");
        })
        .await;
        assert!(panicked);
        assert!(!supervised(ActorKind::Server, &metrics, "chat", "c2", async {}).await);
        assert_eq!(metrics.get(names::actor_panics_server), Some(1));
        assert_eq!(metrics.get(names::actor_panics_client), Some(0));
        assert_eq!(metrics.get(names::actor_panics_hub), Some(0));
    }

    #[test]
    fn panic_texts() {
        assert_eq!(panic_text(&"static"), "static");
        assert_eq!(panic_text(&String::from("owned")), "owned");
        assert_eq!(panic_text(&42_u8), "(no message)");
    }
}
