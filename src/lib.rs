//! Switchboard: a self-hosted SignalR Service.
//!
//! Switchboard is what Azure SignalR Service is — a real-time message broker between SignalR
//! clients and the applications that serve them — as one binary and one library. The official
//! JavaScript, .NET and Java SignalR clients negotiate with it and connect over WebSockets; the
//! Azure SignalR SDKs and any HTTP client drive it through the data-plane REST API.
//!
//! # Layout
//!
//! Dependencies point one way, with no import cycle: `switchboard` (the embedding API) → `http`
//! → the actors (`conn`, `hub`) → `peer` → the pure layers (`policy`, `routing`, `close`,
//! `protocol`, `id`).
//!
//! - [`protocol`] (the `switchboard-protocol` crate): SANS-IO. Bytes ⇄ hub messages for the JSON
//!   and MessagePack hub protocols, the handshake, framing, negotiate, the service protocol hub
//!   servers speak, access-key tokens ([`auth`]) and the ids and names every layer shares
//!   ([`id`]). Never imports tokio or actix.
//! - `policy` (crate-private): the mode policy — the service mode and the upstream rules as one
//!   snapshot, read once per connection; its decisions are the pure, table-tested functions of
//!   [`routing`].
//! - [`close`]: [`close::CloseReason`], every way a client connection ends, with its Close text,
//!   `allowReconnect` and metric category.
//! - [`peer`]: what the rest of the broker holds of a connection — [`peer::ConnHandle`] with its
//!   bounded [`peer::Outbox`] (the only queue between a fan-out and a socket) and
//!   [`peer::ServerConnHandle`] — below both the hub and the connection actors.
//! - [`hub`]: the hub actor. One per hub; owns that hub's connections, users and groups, admits
//!   clients (atomically with its view of the connected hub servers) and fans messages out to
//!   connection outboxes. Fronted by [`hub::HubHandle`], whose operations are typed methods;
//!   hubs are found through [`hub::HubRegistry`].
//! - `conn` (crate-private): the client and hub-server connection actors (one tokio task per
//!   connection), each given a narrow environment (`ClientEnv`, `ServerEnv`) instead of the
//!   broker's state.
//! - `http` (crate-private): actix-web glue: negotiate, the client and server WebSocket
//!   endpoints, SSE and long polling, the REST API, health, metrics, the admin API (settings,
//!   inventory, logs, trace) and the web console (`console/`, embedded); it holds the broker's
//!   state.
//! - [`config`]: `switchboard.toml`, environment and flag layering; validation.
//! - [`upstream`]: Serverless upstream webhooks: rules, signed `X-ASRS-*` calls, response → Completion.
//! - [`telemetry`]: counters (`switchboard_*`) and their Prometheus rendering.
//! - `supervise` (crate-private): a panicking actor is logged with its hub and connection and
//!   counted (`switchboard_actor_panics_total`) instead of dying silently.
//! - [`switchboard`](mod@crate::switchboard): the embedding API — [`Switchboard`] builds and
//!   starts a broker on a bound listener and returns a [`SwitchboardHandle`]: its hubs
//!   ([`SwitchboardHandle::hub`] → [`HubClient`], the REST API's operations as direct calls with
//!   `impl Serialize` arguments), its runtime settings ([`BrokerControl`]), tokens and counters.
//!
//! The hub-server SDK and the management client are the `switchboard-sdk` crate (`sdk/`), which
//! depends on the protocol crate and not on the broker.
//!
//! # Actors
//!
//! Every actor is a tokio task that owns its state and reads a bounded inbox; the rest of the
//! program holds a cloneable `*Handle`. A fan-out never waits for a slow client: the hub pushes
//! the shared, already encoded bytes into each connection's bounded outbox and a connection whose
//! outbox is full is closed (counted in `switchboard_outbox_overflow_total`).
#![warn(missing_docs)]
#![forbid(unsafe_code)]

pub mod close;
pub mod cluster;
pub mod config;
pub(crate) mod conn;
mod embed;
pub mod events;
/// Entry points for the fuzz targets (`fuzz/`) and their corpus replay; not a stable API.
#[doc(hidden)]
pub mod fuzzing;
pub(crate) mod http;
pub mod hub;
pub(crate) mod keyring;
mod local;
pub mod peer;
pub(crate) mod policy;
pub mod routing;
pub(crate) mod supervise;
pub mod switchboard;
pub mod telemetry;
pub(crate) mod tls;
pub mod upstream;

/// The wire protocols (sans-IO): hub protocols, service protocol, negotiate, tokens, ids.
pub use switchboard_protocol as protocol;
pub use switchboard_protocol::{auth, id};

pub use crate::config::{Config, ServiceMode};
pub use crate::embed::{HubClient, HubClientError};
pub use crate::switchboard::{BrokerControl, SettingsPatch, Switchboard, SwitchboardHandle};
