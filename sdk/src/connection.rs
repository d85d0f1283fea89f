//! The server-connection actor: one tokio task per connection slot of a [`HubServer`]
//! (`docs/protocol.md#service-protocol`). It connects to `/server/?hub=&cid=` with a
//! freshly minted token, performs the service handshake, then runs one `select!` loop over the
//! WebSocket, its bounded outbox, a heartbeat tick and the shutdown signal, until the connection
//! is lost (then it reconnects with back-off) or the server stops (graceful `fin` / `finack`).
//!
//! It owns the WebSocket, the framing buffers and the state of every client routed through it
//! (`client.rs`); nothing else touches them. Other tasks reach it through its [`Outbox`].
//! **Outbox full → wait, then fail:** a sender waits up to
//! [`HubServerOptions::send_timeout`](super::HubServerOptions::send_timeout) for room, then gets
//! [`SdkError::OutboxFull`] and nothing is queued. The task itself never waits on its own outbox:
//! what it sends (pings, handshake answers, errors) goes straight into its write buffer, which is
//! flushed as one WebSocket frame per loop turn together with everything queued in the outbox.
//!
//! [`HubServer`]: super::HubServer

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures_util::{SinkExt as _, StreamExt as _};
use tokio::io::{AsyncRead, AsyncWrite, DuplexStream};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::SdkError;
use super::client::ClientState;
use super::server::{RemoteOutcome, ServerShared, random_guid};
use crate::protocol::Close;
use crate::protocol::service::{self, ConnectionType, Extensions, ServiceMessage};

/// A server connection over the network.
type NetWs = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A server connection to a broker in the same process (see [`LocalService`](super::LocalService)).
type LocalWs = WebSocketStream<DuplexStream>;

/// An open, handshaken server connection and the bytes that followed the HandshakeResponse.
enum Connected {
    // Boxed, both: the sockets are large (a TLS session's buffers; a duplex stream's).
    Net(Box<NetWs>, Bytes),
    Local(Box<LocalWs>, Bytes),
}

/// How often the fin Ping is repeated while waiting for `finack` (the SDK's 5 s).
const FIN_RETRY_INTERVAL: Duration = Duration::from_secs(5);

/// Most outbox commands folded into one WebSocket frame, so one flush stays short.
const MAX_BATCH_COMMANDS: usize = 512;

/// Flush early once this many bytes are buffered.
const MAX_BATCH_BYTES: usize = 1024 * 1024;

/// The `Asrs-User-Agent` this SDK announces.
const USER_AGENT: &str = concat!("switchboard-sdk/", env!("CARGO_PKG_VERSION"), " (Rust)");

/// A command for a connection actor.
#[derive(Debug)]
pub(crate) enum ConnCommand {
    /// An encoded service-protocol frame, written as it is.
    Frame(Bytes),
    /// Close a client routed through this connection.
    CloseClient(CloseClient),
}

/// How a client routed through a connection is closed, and what is said to whom.
#[derive(Clone, Debug, Default)]
pub(crate) struct CloseClient {
    /// The client.
    pub(crate) connection_id: String,
    /// A hub Close message to send the client first (only after its handshake).
    pub(crate) close_message: Option<Close>,
    /// Send CloseConnection with this error text (`""` for none); `None` → send nothing.
    pub(crate) close_connection: Option<String>,
    /// Run `on_disconnected`, with this error.
    pub(crate) notify_hub: bool,
    /// The error `on_disconnected` receives.
    pub(crate) hub_error: Option<String>,
}

impl CloseClient {
    /// The app closes the client: Close (with `reason` as its error), CloseConnection, and the
    /// client leaves the hub.
    pub(crate) fn by_app(connection_id: &str, reason: Option<&str>) -> Self {
        Self {
            connection_id: connection_id.to_owned(),
            close_message: Some(Close {
                error: reason.map(str::to_owned),
                allow_reconnect: false,
            }),
            close_connection: Some(reason.unwrap_or_default().to_owned()),
            notify_hub: true,
            hub_error: None,
        }
    }
}

/// The sending side of a connection actor's bounded inbox ("outbox" from the sender's view).
#[derive(Clone, Debug)]
pub(crate) struct Outbox {
    tx: mpsc::Sender<ConnCommand>,
    slot: usize,
    send_timeout: Duration,
}

impl Outbox {
    /// The connection slot behind this outbox.
    pub(crate) fn slot(&self) -> usize {
        self.slot
    }

    /// Whether the connection behind it is gone.
    pub(crate) fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }

    /// Queues `cmd`, waiting up to the send timeout for room (the documented full-outbox
    /// decision).
    pub(crate) async fn send(&self, cmd: ConnCommand) -> Result<(), SdkError> {
        match self.tx.try_send(cmd) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Closed(_)) => Err(SdkError::ConnectionClosed),
            Err(mpsc::error::TrySendError::Full(cmd)) => {
                match tokio::time::timeout(self.send_timeout, self.tx.send(cmd)).await {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(_)) => Err(SdkError::ConnectionClosed),
                    Err(_) => Err(SdkError::OutboxFull(self.send_timeout)),
                }
            }
        }
    }

    /// Encodes and queues one service message.
    pub(crate) async fn send_message(&self, msg: &ServiceMessage) -> Result<(), SdkError> {
        self.send(ConnCommand::Frame(service::encode(msg))).await
    }
}

/// Why connecting (WebSocket upgrade + service handshake) failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConnectError {
    /// The URL or headers could not form a request.
    #[error("invalid server connection request: {0}")]
    Request(String),
    /// The WebSocket connect or upgrade failed (refused, 401/403, ...).
    #[error("websocket connect failed: {0}")]
    WebSocket(#[from] tungstenite::Error),
    /// The service answered the handshake with an error.
    #[error("the service refused the handshake: {0}")]
    Handshake(String),
    /// The service closed the connection or sent something else before its HandshakeResponse.
    #[error("no handshake response: {0}")]
    NoHandshake(String),
    /// Connect or handshake took longer than the handshake timeout.
    #[error("connect or handshake timed out")]
    Timeout,
}

/// How a session ended.
#[derive(Debug)]
enum SessionEnd {
    /// The server is stopping (after `finack` or the shutdown timeout).
    Shutdown,
    /// The connection was lost or broken; reconnect.
    Lost(String),
}

/// The body of connection slot `slot`: connect, run, reconnect with back-off, until shutdown.
pub(crate) async fn run(shared: Arc<ServerShared>, slot: usize) {
    let mut shutdown = shared.shutdown.subscribe();
    let mut failures: u32 = 0;
    loop {
        if *shutdown.borrow() {
            break;
        }
        let connected = tokio::select! {
            result = connect(&shared) => Some(result),
            _ = shutdown.wait_for(|stop| *stop) => None,
        };
        match connected {
            None => break,
            Some(Ok(connected)) => {
                failures = 0;
                tracing::debug!(slot, hub = %shared.hub_name, "server connection established");
                let end = match connected {
                    Connected::Net(ws, leftover) => {
                        Session::new(shared.clone(), slot, *ws)
                            .run(leftover, &mut shutdown)
                            .await
                    }
                    Connected::Local(ws, leftover) => {
                        Session::new(shared.clone(), slot, *ws)
                            .run(leftover, &mut shutdown)
                            .await
                    }
                };
                match end {
                    SessionEnd::Shutdown => break,
                    SessionEnd::Lost(reason) => {
                        tracing::warn!(slot, hub = %shared.hub_name, %reason, "server connection lost; reconnecting");
                    }
                }
            }
            Some(Err(err)) => {
                tracing::warn!(slot, hub = %shared.hub_name, error = %err, "failed to connect to the service; will retry after the back-off period");
            }
        }
        let delay = backoff(
            shared.options.reconnect_base,
            shared.options.reconnect_max,
            failures,
        );
        failures = failures.saturating_add(1);
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = shutdown.wait_for(|stop| *stop) => break,
        }
    }
}

/// The delay before reconnect attempt `failures` (0-based): `base × 2ⁿ` capped at `max`, plus
/// up to `base` of jitter.
pub(crate) fn backoff(base: Duration, max: Duration, failures: u32) -> Duration {
    let exp = base.saturating_mul(1u32.checked_shl(failures.min(30)).unwrap_or(u32::MAX));
    let mut jitter = [0u8; 2];
    // Jitter only spreads reconnects; a failed random source just means no jitter.
    let _ = getrandom::fill(&mut jitter);
    let fraction = f64::from(u16::from_le_bytes(jitter)) / f64::from(u16::MAX);
    exp.min(max) + base.mul_f64(fraction)
}

/// Opens the WebSocket — over the network, or to the broker in this process when the hub server
/// was given a [`LocalService`](super::LocalService) — and performs the service handshake.
async fn connect(shared: &ServerShared) -> Result<Connected, ConnectError> {
    let options = &shared.options;
    let config = WebSocketConfig::default()
        .max_message_size(Some(options.max_service_frame.saturating_add(16)));
    if let Some(local) = &shared.local_service {
        let open = async {
            let io = local
                .open(&shared.url_hub, &shared.server_id)
                .map_err(|e| ConnectError::Request(e.to_string()))?;
            let ws = WebSocketStream::from_raw_socket(io, Role::Client, Some(config)).await;
            handshake(ws, options).await
        };
        let (ws, leftover) = tokio::time::timeout(options.handshake_timeout, open)
            .await
            .map_err(|_| ConnectError::Timeout)??;
        return Ok(Connected::Local(Box::new(ws), leftover));
    }
    let cid = random_guid();
    let url = shared
        .connection_string
        .server_connection_url(&shared.url_hub, &cid);
    let token = shared.connection_string.server_token(
        &shared.url_hub,
        &shared.server_id,
        options.token_lifetime,
    );
    let mut request = url
        .as_str()
        .into_client_request()
        .map_err(|e| ConnectError::Request(e.to_string()))?;
    let header =
        |v: &str| HeaderValue::from_str(v).map_err(|e| ConnectError::Request(e.to_string()));
    let headers = request.headers_mut();
    headers.insert("Authorization", header(&format!("Bearer {token}"))?);
    headers.insert("X-Requested-With", header("XMLHttpRequest")?);
    headers.insert("X-ASRS-Server-Id", header(&shared.server_id)?);
    headers.insert("Asrs-User-Agent", header(USER_AGENT)?);

    let connector =
        crate::tls::ws_connector(options.ca_file.as_deref()).map_err(ConnectError::Request)?;
    let open = async {
        let (ws, _response) = tokio_tungstenite::connect_async_tls_with_config(
            request,
            Some(config),
            true,
            connector,
        )
        .await?;
        handshake(ws, options).await
    };
    let (ws, leftover) = tokio::time::timeout(options.handshake_timeout, open)
        .await
        .map_err(|_| ConnectError::Timeout)??;
    Ok(Connected::Net(Box::new(ws), leftover))
}

/// Sends the HandshakeRequest and waits for the HandshakeResponse. Returns the socket and any
/// bytes the service sent after its HandshakeResponse.
async fn handshake<T: AsyncRead + AsyncWrite + Unpin>(
    mut ws: WebSocketStream<T>,
    options: &super::HubServerOptions,
) -> Result<(WebSocketStream<T>, Bytes), ConnectError> {
    {
        let request = ServiceMessage::HandshakeRequest {
            version: 1,
            connection_type: if options.weak {
                ConnectionType::Weak
            } else {
                ConnectionType::Default
            },
            target: Some(String::new()),
            migration_level: 0,
            extensions: Extensions::default(),
            allow_stateful_reconnects: false,
        };
        ws.send(Message::Binary(service::encode(&request))).await?;
        let mut buf = BytesMut::new();
        loop {
            let data = match ws.next().await {
                Some(Ok(Message::Binary(data))) => data,
                Some(Ok(Message::Text(text))) => Bytes::from(text),
                Some(Ok(Message::Close(frame))) => {
                    return Err(ConnectError::NoHandshake(format!(
                        "the service closed the connection ({frame:?})"
                    )));
                }
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(ConnectError::WebSocket(e)),
                None => {
                    return Err(ConnectError::NoHandshake(
                        "the service closed the connection".into(),
                    ));
                }
            };
            buf.extend_from_slice(&data);
            loop {
                match service::decode(&buf, options.max_service_frame) {
                    Ok(None) => break,
                    Err(e) => return Err(ConnectError::NoHandshake(e.to_string())),
                    Ok(Some((msg, used))) => {
                        let _ = buf.split_to(used);
                        match msg {
                            Some(ServiceMessage::HandshakeResponse { error_message, .. }) => {
                                return match error_message {
                                    Some(e) if !e.is_empty() => Err(ConnectError::Handshake(e)),
                                    _ => Ok((ws, buf.freeze())),
                                };
                            }
                            // Keep-alive pings before the answer are harmless.
                            Some(ServiceMessage::Ping { .. }) | None => {}
                            Some(other) => {
                                return Err(ConnectError::NoHandshake(format!(
                                    "unexpected message before the handshake response: {other:?}"
                                )));
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The write side of a session, handed to the client state machines.
pub(crate) struct SessionIo {
    pub(crate) shared: Arc<ServerShared>,
    /// This connection's outbox (clients' workers and contexts send through it).
    pub(crate) outbox: Outbox,
    /// Bytes to write at the end of this loop turn.
    pub(crate) out: BytesMut,
}

impl SessionIo {
    /// Appends one service message to the pending write.
    pub(crate) fn write(&mut self, msg: &ServiceMessage) {
        service::encode_into(msg, &mut self.out);
    }

    /// Appends ConnectionData carrying `payload` to client `connection_id`.
    pub(crate) fn write_to_client(&mut self, connection_id: &str, payload: Bytes) {
        self.write(&ServiceMessage::ConnectionData {
            connection_id: connection_id.to_owned(),
            payload,
            extensions: Extensions::default(),
        });
    }
}

/// One live WebSocket of a connection slot, over the network or in process.
struct Session<T> {
    slot: usize,
    ws: WebSocketStream<T>,
    rx: mpsc::Receiver<ConnCommand>,
    io: SessionIo,
    read_buf: BytesMut,
    clients: HashMap<String, ClientState>,
    last_sent: Instant,
    last_received: Instant,
    /// While stopping: when to give up waiting for `finack`, and when fin was last sent.
    stopping: Option<(Instant, Instant)>,
}

impl<T: AsyncRead + AsyncWrite + Unpin> Session<T> {
    fn new(shared: Arc<ServerShared>, slot: usize, ws: WebSocketStream<T>) -> Self {
        let (tx, rx) = mpsc::channel(shared.options.outbox_capacity.max(1));
        let outbox = Outbox {
            tx,
            slot,
            send_timeout: shared.options.send_timeout,
        };
        let now = Instant::now();
        Self {
            slot,
            ws,
            rx,
            io: SessionIo {
                shared,
                outbox,
                out: BytesMut::new(),
            },
            read_buf: BytesMut::new(),
            clients: HashMap::new(),
            last_sent: now,
            last_received: now,
            stopping: None,
        }
    }

    /// Runs the session to its end, then cleans up in one place: the slot's outbox is withdrawn,
    /// its acks fail, its clients leave.
    async fn run(mut self, leftover: Bytes, shutdown: &mut watch::Receiver<bool>) -> SessionEnd {
        let shared = self.io.shared.clone();
        shared.slot_up(self.slot, self.io.outbox.clone());
        let end = self.run_loop(leftover, shutdown).await;
        shared.slot_down(self.slot);
        self.rx.close();
        let reason = match &end {
            SessionEnd::Shutdown => None,
            SessionEnd::Lost(reason) => Some(format!(
                "The server connection to the service was lost: {reason}"
            )),
        };
        for (_, client) in self.clients.drain() {
            client.finish(&shared, true, reason.clone());
        }
        if matches!(end, SessionEnd::Shutdown) {
            // Best effort: the service drops the server connection's clients either way.
            let _ = tokio::time::timeout(Duration::from_secs(2), self.ws.close(None)).await;
        }
        end
    }

    async fn run_loop(
        &mut self,
        leftover: Bytes,
        shutdown: &mut watch::Receiver<bool>,
    ) -> SessionEnd {
        let tick_every = tick_interval(&self.io.shared.options);
        let mut tick = tokio::time::interval(tick_every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        if !leftover.is_empty()
            && let Err(end) = self.on_bytes(leftover)
        {
            return end;
        }
        loop {
            let step = tokio::select! {
                frame = self.ws.next() => self.on_frame(frame),
                cmd = self.rx.recv() => {
                    if let Some(cmd) = cmd {
                        self.on_command(cmd);
                    }
                    Ok(())
                }
                _ = tick.tick() => self.on_tick(),
                changed = shutdown.changed(), if self.stopping.is_none() => {
                    if changed.is_err() || *shutdown.borrow() {
                        self.begin_stop();
                    }
                    Ok(())
                }
            };
            if let Err(end) = step {
                // Write what was decided before leaving (finack, a last answer); the socket
                // may be gone already.
                let _ = self.flush().await;
                return end;
            }
            // Fold everything already queued into the same frame.
            let mut batched = 0;
            while batched < MAX_BATCH_COMMANDS && self.io.out.len() < MAX_BATCH_BYTES {
                match self.rx.try_recv() {
                    Ok(cmd) => self.on_command(cmd),
                    Err(_) => break,
                }
                batched += 1;
            }
            if let Err(end) = self.flush().await {
                return end;
            }
        }
    }

    /// Writes the pending bytes as one binary frame, bounded by the send timeout.
    async fn flush(&mut self) -> Result<(), SessionEnd> {
        if self.io.out.is_empty() {
            return Ok(());
        }
        let frame = self.io.out.split().freeze();
        let timeout = self.io.shared.options.send_timeout;
        match tokio::time::timeout(timeout, self.ws.send(Message::Binary(frame))).await {
            Ok(Ok(())) => {
                self.last_sent = Instant::now();
                Ok(())
            }
            Ok(Err(e)) => Err(SessionEnd::Lost(format!("write failed: {e}"))),
            Err(_) => Err(SessionEnd::Lost(format!(
                "a write did not complete within {timeout:?}"
            ))),
        }
    }

    fn on_frame(
        &mut self,
        frame: Option<Result<Message, tungstenite::Error>>,
    ) -> Result<(), SessionEnd> {
        self.last_received = Instant::now();
        match frame {
            Some(Ok(Message::Binary(data))) => self.on_bytes(data),
            Some(Ok(Message::Text(text))) => self.on_bytes(Bytes::from(text)),
            Some(Ok(Message::Close(frame))) => Err(SessionEnd::Lost(format!(
                "the service closed the connection ({frame:?})"
            ))),
            // WebSocket pings are answered by tungstenite on the next write.
            Some(Ok(_)) => Ok(()),
            Some(Err(e)) => Err(SessionEnd::Lost(format!("read failed: {e}"))),
            None => Err(SessionEnd::Lost("the service closed the connection".into())),
        }
    }

    /// Parses every complete frame; keeps the incomplete tail for the next read.
    fn on_bytes(&mut self, data: Bytes) -> Result<(), SessionEnd> {
        let mut rest = if self.read_buf.is_empty() {
            data
        } else {
            self.read_buf.extend_from_slice(&data);
            self.read_buf.split().freeze()
        };
        let max = self.io.shared.options.max_service_frame;
        loop {
            match service::decode_bytes(&rest, max) {
                Ok(None) => break,
                Ok(Some((msg, used))) => {
                    rest = rest.slice(used..);
                    if let Some(msg) = msg {
                        self.on_message(msg)?;
                    }
                }
                Err(e) => return Err(SessionEnd::Lost(format!("service protocol error: {e}"))),
            }
        }
        if !rest.is_empty() {
            self.read_buf.extend_from_slice(&rest);
        }
        Ok(())
    }

    fn on_message(&mut self, msg: ServiceMessage) -> Result<(), SessionEnd> {
        match msg {
            ServiceMessage::Ping { messages } => return self.on_ping(messages),
            ServiceMessage::OpenConnection {
                connection_id,
                claims,
                headers,
                query_string,
                extensions,
            } => {
                let client = ClientState::open(
                    &mut self.io,
                    connection_id.clone(),
                    claims,
                    headers,
                    query_string,
                    extensions.protocol,
                );
                if let Some(old) = self.clients.insert(connection_id, client) {
                    // The service reused a live id: the old context is over.
                    old.finish(&self.io.shared, true, None);
                }
            }
            ServiceMessage::ConnectionData {
                connection_id,
                payload,
                ..
            } => {
                if let Some(client) = self.clients.get_mut(&connection_id)
                    && let Err(close) = client.on_data(&mut self.io, payload)
                {
                    self.close_client(close);
                }
            }
            ServiceMessage::CloseConnection {
                connection_id,
                error_message,
                ..
            } => {
                if let Some(client) = self.clients.remove(&connection_id) {
                    let error = error_message.filter(|e| !e.is_empty());
                    client.finish(&self.io.shared, true, error);
                }
            }
            ServiceMessage::Ack {
                ack_id,
                status,
                message,
                ..
            } => self.io.shared.resolve_ack(ack_id, status, message),
            ServiceMessage::ClientInvocation {
                invocation_id,
                connection_id,
                caller_server_id,
                ..
            } => {
                // Router role: the service already forwarded the payload to the client; remember
                // who to send the client's Completion to.
                if let Some(client) = self.clients.get_mut(&connection_id) {
                    client.route_invocation(invocation_id, caller_server_id);
                }
            }
            ServiceMessage::ClientCompletion {
                invocation_id,
                protocol,
                payload,
                ..
            } => self.io.shared.resolve_remote(
                &invocation_id,
                RemoteOutcome::Completion { protocol, payload },
            ),
            ServiceMessage::ErrorCompletion {
                invocation_id,
                error,
                ..
            } => self.io.shared.resolve_remote(
                &invocation_id,
                RemoteOutcome::Error(error.unwrap_or_default()),
            ),
            ServiceMessage::ConnectionFlowControl {
                connection_id,
                connection_type,
                operation: 1,
                ..
            } => {
                // Pause: acknowledge; this SDK holds nothing back, so there is nothing to pause.
                self.io.write(&ServiceMessage::ConnectionFlowControl {
                    connection_id,
                    connection_type,
                    operation: 2,
                    extensions: Extensions::default(),
                });
            }
            ServiceMessage::ServiceError { error_message } => {
                return Err(SessionEnd::Lost(format!(
                    "service error: {}",
                    error_message.unwrap_or_default()
                )));
            }
            ServiceMessage::ServiceEvent {
                object_type,
                id,
                kind,
                message,
                ..
            } => {
                tracing::debug!(object_type, ?id, kind, ?message, "service event");
            }
            // HandshakeResponse (late), ServiceMapping, AccessKeyResponse, ConnectionReconnect,
            // other flow-control operations, and server-to-service types: nothing to do.
            _ => {}
        }
        Ok(())
    }

    /// The Ping sub-protocol (`docs/protocol.md#ping-sub-protocol`).
    fn on_ping(&mut self, messages: Vec<String>) -> Result<(), SessionEnd> {
        if messages.is_empty() {
            return Ok(());
        }
        if service::ping_value(&messages, "echo").is_some() {
            self.io.write(&ServiceMessage::Ping { messages });
        } else if service::ping_value(&messages, "shutdown") == Some("finack") {
            if self.stopping.is_some() {
                return Err(SessionEnd::Shutdown);
            }
        } else if let Some(instance) = service::ping_value(&messages, "offline") {
            // That service instance died: its clients are gone.
            let gone: Vec<String> = self
                .clients
                .iter()
                .filter(|(_, c)| c.instance_id() == Some(instance))
                .map(|(id, _)| id.clone())
                .collect();
            for id in gone {
                if let Some(client) = self.clients.remove(&id) {
                    client.finish(
                        &self.io.shared,
                        true,
                        Some(format!("Service instance '{instance}' is offline.")),
                    );
                }
            }
        } else if let Some(target) = service::ping_value(&messages, "target") {
            tracing::debug!(%target, "the service asked for an on-demand connection; not supported, ignored");
        }
        Ok(())
    }

    fn on_command(&mut self, cmd: ConnCommand) {
        match cmd {
            ConnCommand::Frame(bytes) => self.io.out.extend_from_slice(&bytes),
            ConnCommand::CloseClient(close) => self.close_client(close),
        }
    }

    /// Closes a client of this connection (no-op if it is already gone).
    fn close_client(&mut self, close: CloseClient) {
        let Some(client) = self.clients.remove(&close.connection_id) else {
            return;
        };
        if let Some(message) = &close.close_message {
            client.write_close(&mut self.io, message);
        }
        if let Some(error) = close.close_connection {
            self.io.write(&ServiceMessage::CloseConnection {
                connection_id: close.connection_id.clone(),
                error_message: Some(error),
                headers: Vec::new(),
                extensions: Extensions::default(),
            });
        }
        client.finish(&self.io.shared, close.notify_hub, close.hub_error);
    }

    fn begin_stop(&mut self) {
        let now = Instant::now();
        self.stopping = Some((now + self.io.shared.options.shutdown_timeout, now));
        self.io.write(&service::ping(&[("shutdown", "fin:0")]));
    }

    /// Heartbeat: server keep-alive and timeout, graceful-stop bookkeeping, client keep-alive,
    /// handshake and idle timeouts.
    fn on_tick(&mut self) -> Result<(), SessionEnd> {
        let now = Instant::now();
        let shared = self.io.shared.clone();
        let options = &shared.options;
        if now.duration_since(self.last_received) >= options.server_timeout {
            return Err(SessionEnd::Lost(format!(
                "nothing received from the service for {:?}",
                options.server_timeout
            )));
        }
        if let Some((deadline, last_fin)) = self.stopping {
            if now >= deadline {
                return Err(SessionEnd::Shutdown);
            }
            if now.duration_since(last_fin) >= FIN_RETRY_INTERVAL {
                self.stopping = Some((deadline, now));
                self.io.write(&service::ping(&[("shutdown", "fin:0")]));
            }
        }
        if self.io.out.is_empty()
            && now.duration_since(self.last_sent) >= options.keep_alive_interval
        {
            self.io.write(&service::ping(&[]));
        }
        let mut to_close = Vec::new();
        for client in self.clients.values_mut() {
            if let Some(close) = client.on_tick(&mut self.io, now) {
                to_close.push(close);
            }
        }
        for close in to_close {
            self.close_client(close);
        }
        Ok(())
    }
}

/// The heartbeat period: 1 s, or less when a configured interval is shorter (tests).
fn tick_interval(options: &super::HubServerOptions) -> Duration {
    let shortest = [
        options.keep_alive_interval,
        options.server_timeout,
        options.client_keep_alive_interval,
        options.client_timeout,
        options.client_handshake_timeout,
    ]
    .into_iter()
    .min()
    .unwrap_or(Duration::from_secs(1));
    (shortest / 4).clamp(Duration::from_millis(5), Duration::from_secs(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_with_bounded_jitter() {
        let base = Duration::from_millis(100);
        let max = Duration::from_millis(1000);
        for (n, floor) in [
            (0, 100),
            (1, 200),
            (2, 400),
            (3, 800),
            (4, 1000),
            (40, 1000),
        ] {
            let d = backoff(base, max, n);
            assert!(d >= Duration::from_millis(floor), "{n}: {d:?}");
            assert!(d <= Duration::from_millis(floor) + base, "{n}: {d:?}");
        }
        assert_eq!(
            backoff(Duration::ZERO, Duration::from_secs(60), 3),
            Duration::ZERO
        );
    }

    #[tokio::test]
    async fn a_full_outbox_waits_then_fails() {
        let (tx, mut rx) = mpsc::channel(1);
        let outbox = Outbox {
            tx,
            slot: 0,
            send_timeout: Duration::from_millis(50),
        };
        let frame = || ConnCommand::Frame(Bytes::from_static(b"x"));
        outbox.send(frame()).await.unwrap();
        let started = Instant::now();
        assert_eq!(
            outbox.send(frame()).await,
            Err(SdkError::OutboxFull(Duration::from_millis(50)))
        );
        assert!(started.elapsed() >= Duration::from_millis(50));
        // Room appears while waiting: the send goes through.
        let waiting = {
            let outbox = outbox.clone();
            tokio::spawn(async move { outbox.send(frame()).await })
        };
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(rx.recv().await.is_some());
        assert_eq!(waiting.await.unwrap(), Ok(()));
        rx.close();
        assert_eq!(outbox.send(frame()).await, Err(SdkError::ConnectionClosed));
    }

    #[test]
    fn heartbeat_follows_the_shortest_interval() {
        let mut options = super::super::HubServerOptions::default();
        assert_eq!(tick_interval(&options), Duration::from_secs(1));
        options.keep_alive_interval = Duration::from_millis(100);
        assert_eq!(tick_interval(&options), Duration::from_millis(25));
    }
}
