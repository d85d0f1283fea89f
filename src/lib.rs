//! Switchboard: a self-hosted SignalR Service.
//!
//! Switchboard is what Azure SignalR Service is — a real-time message broker between SignalR
//! clients and the applications that serve them — as one binary and one library. The official
//! JavaScript, .NET and Java SignalR clients negotiate with it and connect over WebSockets; the
//! Azure SignalR SDKs and any HTTP client drive it through the data-plane REST API.
//!
//! # Layout
//!
//! Dependencies point downwards: `http` → (`conn`, `auth`, `hub`, `policy`) → (`routing`, `protocol`).
//!
//! - [`protocol`]: SANS-IO. Bytes ⇄ hub messages for the JSON and MessagePack hub protocols,
//!   the handshake, framing and the negotiate response. Never imports tokio or actix.
//! - [`routing`]: pure, table-tested decisions — whether a client may connect in a service mode
//!   and where each of its messages goes.
//! - [`auth`]: access-key JWTs: validation per endpoint kind (client, server, REST), minting.
//! - [`hub`]: the hub actor. One per hub; owns that hub's connections, users and groups and fans
//!   messages out to connection outboxes. Fronted by [`hub::HubHandle`]; hubs are found through
//!   [`hub::HubRegistry`].
//! - [`conn`]: the client connection actor (one tokio task per connection) and its bounded
//!   [`conn::Outbox`], the only queue between a fan-out and a socket.
//! - [`http`]: actix-web glue only: negotiate, the client WebSocket endpoint, the REST API,
//!   health and metrics.
//! - [`sdk`]: the hub-server SDK — host hubs in a Rust app behind Switchboard or Azure SignalR
//!   (Default mode server connections, hub methods, client sends, negotiate redirects).
//! - [`management`]: the serverless apps' management client (REST or Weak server connections).
//! - [`config`]: `switchboard.toml`, environment and flag layering; validation.
//! - [`upstream`]: Serverless upstream webhooks: rules, signed `X-ASRS-*` calls, response → Completion.
//! - [`telemetry`]: counters (`switchboard_*`) and their Prometheus rendering.
//! - [`switchboard`](mod@crate::switchboard): the embedding API — [`Switchboard`] builds and starts a broker on a
//!   bound listener and returns a [`SwitchboardHandle`].
//! - [`embed`]: the embedding API's [`HubClient`] ([`SwitchboardHandle::hub`]) — the REST
//!   API's operations as direct calls on a hub, with `impl Serialize` arguments.
//!
//! # Actors
//!
//! Every actor is a tokio task that owns its state and reads a bounded inbox; the rest of the
//! program holds a cloneable `*Handle`. A fan-out never waits for a slow client: the hub pushes
//! the shared, already encoded bytes into each connection's bounded outbox and a connection whose
//! outbox is full is closed (counted in `switchboard_outbox_overflow_total`).
#![warn(missing_docs)]
#![forbid(unsafe_code)]

pub mod config;
pub mod conn;
pub mod embed;
pub mod http;
pub mod hub;
pub mod routing;
pub mod switchboard;
pub mod telemetry;
pub mod upstream;

/// The wire protocols (sans-IO): hub protocols, service protocol, negotiate, tokens, ids.
pub use switchboard_protocol as protocol;
pub use switchboard_protocol::{auth, id};

pub use crate::config::{Config, ServiceMode};
pub use crate::embed::{HubClient, HubClientError};
pub use crate::switchboard::{Switchboard, SwitchboardHandle};
