//! The hub-server SDK: host SignalR hubs in a Rust application behind Switchboard (or Azure
//! SignalR Service, same wire protocol) in Default mode — the Rust counterpart of the
//! `Microsoft.Azure.SignalR` SDK for ASP.NET Core.
//!
//! The application builds a [`Hub`] (methods, streaming methods, upload methods, connect and
//! disconnect handlers) and starts a [`HubServer`], which opens N WebSocket *server connections*
//! to `/server/?hub=<hub>` (`docs/protocol.md#service-protocol`). The service routes each client
//! to one of them; the SDK answers the client's SignalR handshake itself, decodes its hub
//! messages with the crate's codecs ([`crate::protocol`]) and runs hub methods, exactly as
//! ASP.NET Core's `HubConnectionHandler` would. Sends to other clients, groups and users go to
//! the service as multicast messages (`docs/protocol.md#what-the-sdk-sends`).
//! [`negotiate_response`] gives the app's own web server the Azure redirect answer the official
//! clients follow.
//!
//! ```no_run
//! use switchboard_sdk::{ConnectionString, Context, Hub, HubError, HubServer};
//! # async fn demo() -> Result<(), switchboard_sdk::SdkError> {
//! let hub = Hub::builder()
//!     .on_connected(|ctx: Context| async move {
//!         ctx.clients().all().send("joined", (ctx.connection_id(),)).await?;
//!         Ok(())
//!     })
//!     .method("Echo", |_ctx: Context, (text,): (String,)| async move { Ok::<_, HubError>(text) })
//!     .stream_method("Counter", |_ctx: Context, (n,): (u32,)| futures_util::stream::iter(0..n))
//!     .build();
//! let cs: ConnectionString = "Endpoint=http://127.0.0.1;Port=8080;AccessKey=key;Version=1.0;".parse()?;
//! let server = HubServer::builder(cs, "chat", hub).start()?;
//! server.wait_connected(1, std::time::Duration::from_secs(10)).await?;
//! server.clients().all().send("newMessage", ("server", "hello")).await?;
//! server.stop().await;
//! # Ok(()) }
//! ```
//!
//! # Layout
//!
//! - [`connection_string`]: connection-string parsing, URL derivation, token minting.
//! - [`negotiate`]: the redirect body for the app's `/negotiate` endpoint.
//! - `codec`: serde types ⇄ JSON / MessagePack raw values and payload maps.
//! - [`hub`]: the [`Hub`] definition ([`HubBuilder`], [`HubError`]) and method dispatch rules.
//! - [`upload`]: [`UploadStream`], client-to-server streams handed to upload methods.
//! - [`context`]: [`Context`] (the caller inside a hub method) and the send / group proxies.
//! - [`server`]: [`HubServer`] (the app's handle), its options and shared state (acks, local
//!   clients, pending client results).
//! - `connection`: the server-connection actor — one tokio task per connection: connect,
//!   handshake, keep-alive, reconnect with back-off, graceful shutdown, its bounded outbox.
//! - `client`: per-client state inside a connection actor (handshake, hub-message decoding,
//!   keep-alive, timeouts).
//! - `dispatch`: the per-client worker that runs invocations in order, streams, and the ASP.NET
//!   Core error texts.
//!
//! # Actors and queues
//!
//! Each server connection is a tokio task owning its WebSocket and the state of every client
//! routed through it (client data for one client always arrives on the same connection). Other
//! tasks reach it through its bounded outbox. **Outbox full → wait, then fail**: a sender waits up
//! to [`HubServerOptions::send_timeout`] for room, then gets [`SdkError::OutboxFull`] and nothing
//! is queued; the connection task itself never waits on its own outbox (pings, acks, handshake
//! answers are written directly). Each client has a worker task that runs non-streaming
//! invocations one at a time, in order (.NET's default `MaximumParallelInvocationsPerClient` of
//! 1); streaming and upload methods run as their own tasks. **Client inbox or upload buffer full
//! → close that client** with `Connection closed with an error.`: a client that outruns its hub
//! methods is dropped rather than stalling every other client of the connection.

pub mod connection_string;
pub mod context;
pub mod http_error;
pub mod hub;
pub mod management;
pub mod negotiate;
pub mod server;
pub mod upload;

mod client;
mod codec;
mod connection;
mod dispatch;
pub mod tls;

#[cfg(test)]
mod tests;

use std::time::Duration;

/// The wire protocols this SDK speaks (re-exported: hub protocols, service protocol, tokens, ids).
pub use switchboard_protocol as protocol;

pub use connection_string::{ConnectionString, ConnectionStringError};
pub use context::{CallerClients, ClientProxy, Context, HubClients, HubGroups, SingleClientProxy};
pub use hub::{Hub, HubBuilder, HubError};
pub use negotiate::{negotiate_response, negotiate_response_for_app};
pub use server::{HubServer, HubServerBuilder, HubServerOptions, LocalService};
pub use upload::UploadStream;

/// Why an SDK call failed.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum SdkError {
    /// The connection string could not be parsed.
    #[error("invalid connection string: {0}")]
    ConnectionString(#[from] ConnectionStringError),
    /// `HubServer::start` was called outside a tokio runtime.
    #[error("the hub server must be started inside a tokio runtime")]
    NoRuntime,
    /// No server connection is connected to the service right now.
    #[error("no server connection is connected to the service")]
    NotConnected,
    /// The server connection the message had to use closed before it was written.
    #[error("the server connection closed before the message could be sent")]
    ConnectionClosed,
    /// The server connection's outbox stayed full for the whole send timeout.
    #[error("the server connection outbox stayed full for {0:?}; the message was not sent")]
    OutboxFull(Duration),
    /// A value could not be serialised.
    #[error("could not serialize the message: {0}")]
    Serialize(String),
    /// A value from a client could not be deserialised into the requested type.
    #[error("could not deserialize the client's value: {0}")]
    Deserialize(String),
    /// The service did not answer an acknowledged operation in time.
    #[error("the service did not acknowledge the operation within {0:?}")]
    AckTimeout(Duration),
    /// The service answered an acknowledged operation with a failure status.
    #[error("the service failed the operation (ack status {status}): {message}")]
    AckFailed {
        /// The Ack status (3 Timeout, 4 InternalServerError, ...).
        status: i32,
        /// The Ack message, empty when none.
        message: String,
    },
    /// A client-result invocation completed with an error (the client's text).
    #[error("the client failed the invocation: {0}")]
    ClientError(String),
    /// The client disconnected before answering a client-result invocation.
    #[error("connection '{0}' disconnected")]
    ClientDisconnected(String),
    /// A client-result invocation was not answered in time.
    #[error("the client did not answer the invocation within {0:?}")]
    InvocationTimeout(Duration),
    /// A hub message could not be encoded.
    #[error("could not encode the hub message: {0}")]
    Protocol(#[from] protocol::ProtocolError),
    /// Waiting for server connections timed out.
    #[error("timed out after {0:?} waiting for server connections")]
    ConnectTimeout(Duration),
    /// The hub server has been stopped.
    #[error("the hub server has been stopped")]
    Stopped,
}
