//! One client routed through a server connection, as ASP.NET Core's `HubConnectionHandler` and
//! `DefaultHubDispatcher` handle it (`docs/protocol.md`: client lifecycle, hub protocol,
//! keep-alive): the client's byte stream arrives as ConnectionData, starting with its SignalR
//! handshake request, which is answered here; then hub messages are decoded with the crate's
//! codecs and dispatched.
//!
//! [`ClientState`] is owned by the connection actor (no locks on the receive path): handshake,
//! framing buffer, upload-stream channels, keep-alive and timeouts. [`ClientInfo`] is the part
//! shared with the app (contexts, proxies): identity, protocol, the connection's outbox, cancel
//! handles of running streams and pending client results. Decoded invocations go to the client's
//! worker (`dispatch.rs`) through a bounded queue.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot};

use super::SdkError;
use super::codec;
use super::connection::{CloseClient, Outbox, SessionIo};
use super::context::Context;
use super::dispatch::{CLOSED_WITH_ERROR, ClientWork, run_worker};
use super::server::{HubServer, ServerShared};
use super::upload::UploadItem;
use crate::protocol::framing::RecordScan;
use crate::protocol::handshake::{self, HANDSHAKE_CANCELED, RESPONSE_OK};
use crate::protocol::service::{Claims, Extensions, Headers, ServiceMessage};
use crate::protocol::{Close, Completion, CompletionOutcome, HubMessage, HubProtocol};

/// The .NET long claim type the service sends for `nameid` / `sub`.
pub(crate) const NAME_IDENTIFIER: &str =
    "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/nameidentifier";

/// What an upload stream ends with when its client goes away (.NET's text).
const CONNECTION_CLOSED: &str = "The underlying connection was closed.";

/// JWT registered claims the SDK does not expose as user claims.
const REGISTERED_CLAIMS: &[&str] = &["aud", "exp", "iat", "nbf", "iss", "jti"];

/// The part of a client shared with the app: identity, protocol and the way to reach it.
pub(crate) struct ClientInfo {
    pub(crate) connection_id: String,
    pub(crate) user_id: Option<String>,
    pub(crate) claims: Claims,
    pub(crate) headers: Headers,
    pub(crate) query: Option<String>,
    pub(crate) protocol: HubProtocol,
    /// The outbox of the server connection this client is routed through.
    pub(crate) outbox: Outbox,
    /// Milliseconds (server clock) of the last message sent to this client.
    last_sent_ms: AtomicU64,
    epoch: Instant,
    /// Cancel handles of running server-to-client streams, by invocation id.
    pub(crate) streams: Mutex<HashMap<String, oneshot::Sender<()>>>,
    /// Client-result invocations waiting for this client's Completion, by invocation id.
    pub(crate) pending: Mutex<HashMap<String, oneshot::Sender<CompletionOutcome>>>,
    closed: AtomicBool,
}

impl std::fmt::Debug for ClientInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientInfo")
            .field("connection_id", &self.connection_id)
            .field("user_id", &self.user_id)
            .field("protocol", &self.protocol)
            .finish_non_exhaustive()
    }
}

impl ClientInfo {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Records that something was just sent to the client (keep-alive bookkeeping).
    pub(crate) fn mark_sent(&self) {
        self.last_sent_ms.store(self.now_ms(), Ordering::Relaxed);
    }

    /// Whether the client has left.
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Sends a framed hub message to this client (ConnectionData on its own server
    /// connection, so it stays in order with everything else sent to it).
    pub(crate) async fn send_payload(&self, payload: Bytes) -> Result<(), SdkError> {
        if self.is_closed() {
            return Err(SdkError::ClientDisconnected(self.connection_id.clone()));
        }
        self.mark_sent();
        self.outbox
            .send_message(&ServiceMessage::ConnectionData {
                connection_id: self.connection_id.clone(),
                payload,
                extensions: Extensions::default(),
            })
            .await
    }
}

/// What is known of a client before its handshake completes.
struct Opening {
    claims: Claims,
    headers: Headers,
    query: Option<String>,
}

/// A connected client's worker plumbing.
struct Connected {
    info: Arc<ClientInfo>,
    work: mpsc::Sender<ClientWork>,
    disconnect: oneshot::Sender<Option<String>>,
}

enum Phase {
    Handshake(Box<Opening>),
    Connected(Connected),
}

/// A client as its server connection's actor sees it.
pub(crate) struct ClientState {
    connection_id: String,
    phase: Phase,
    /// The client's bytes not yet taken as messages (the handshake request or part of a
    /// message).
    buf: BytesMut,
    /// How far `buf` was searched for the end of a JSON message (or the handshake request), so
    /// that a message arriving a byte at a time costs linear time.
    scan: RecordScan,
    uploads: HashMap<String, mpsc::Sender<UploadItem>>,
    /// Client-result invocations of other servers (router role): invocation id → caller server.
    routed: HashMap<String, String>,
    opened: Instant,
    last_received: Instant,
    ping_seen: bool,
    instance_id: Option<String>,
}

/// The first value of header `name` (case-insensitive).
fn header<'a>(headers: &'a Headers, name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .and_then(|(_, v)| v.first())
        .map(String::as_str)
}

/// The user id and the user claims of OpenConnection's claims, as the SDK derives them: the user
/// id is `asrs.s.uid`, else NameIdentifier (long or short form), else `sub`; system claims
/// (`asrs.s.*`) and JWT registered claims are dropped, `asrs.u.<name>` is renamed back.
pub(crate) fn identity(claims: Claims) -> (Option<String>, Claims) {
    let find = |name: &str| {
        claims
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let user_id = find("asrs.s.uid")
        .or_else(|| find(NAME_IDENTIFIER))
        .or_else(|| find("nameid"))
        .or_else(|| find("sub"))
        .filter(|u| !u.is_empty());
    let claims = claims
        .into_iter()
        .filter(|(k, _)| !k.starts_with("asrs.s.") && !REGISTERED_CLAIMS.contains(&k.as_str()))
        .map(|(k, v)| match k.strip_prefix("asrs.u.") {
            Some(original) => (original.to_owned(), v),
            None => (k, v),
        })
        .collect();
    (user_id, claims)
}

impl ClientState {
    /// OpenConnection. A client migrated from another server (`Asrs-Migrate-From`) already did
    /// its handshake: it is connected at once with the protocol of the `protocol` extension.
    pub(crate) fn open(
        io: &mut SessionIo,
        connection_id: String,
        claims: Claims,
        headers: Headers,
        query: Option<String>,
        protocol: Option<String>,
    ) -> Self {
        let now = Instant::now();
        let migrated = header(&headers, "Asrs-Migrate-From").is_some();
        let mut state = Self {
            instance_id: header(&headers, "Asrs-Instance-Id").map(str::to_owned),
            connection_id,
            phase: Phase::Handshake(Box::new(Opening {
                claims,
                headers,
                query,
            })),
            buf: BytesMut::new(),
            scan: RecordScan::default(),
            uploads: HashMap::new(),
            routed: HashMap::new(),
            opened: now,
            last_received: now,
            ping_seen: false,
        };
        if migrated {
            let protocol = protocol
                .as_deref()
                .and_then(HubProtocol::from_name)
                .unwrap_or(HubProtocol::Json);
            state.connect(io, protocol);
        }
        state
    }

    /// The `Asrs-Instance-Id` the service gave this client.
    pub(crate) fn instance_id(&self) -> Option<&str> {
        self.instance_id.as_deref()
    }

    /// The service forwarded another server's client-result invocation to this client.
    pub(crate) fn route_invocation(&mut self, invocation_id: String, caller_server_id: String) {
        self.routed.insert(invocation_id, caller_server_id);
    }

    /// Handshake done: publish the client, start its worker.
    fn connect(&mut self, io: &mut SessionIo, protocol: HubProtocol) {
        let Phase::Handshake(opening) = &mut self.phase else {
            return;
        };
        let Opening {
            claims,
            headers,
            query,
        } = std::mem::replace(
            opening.as_mut(),
            Opening {
                claims: Vec::new(),
                headers: Vec::new(),
                query: None,
            },
        );
        let (user_id, claims) = identity(claims);
        let info = Arc::new(ClientInfo {
            connection_id: self.connection_id.clone(),
            user_id,
            claims,
            headers,
            query,
            protocol,
            outbox: io.outbox.clone(),
            last_sent_ms: AtomicU64::new(0),
            epoch: io.shared.epoch,
            streams: Mutex::new(HashMap::new()),
            pending: Mutex::new(HashMap::new()),
            closed: AtomicBool::new(false),
        });
        info.mark_sent();
        io.shared
            .local
            .write()
            .insert(self.connection_id.clone(), info.clone());
        let (work_tx, work_rx) = mpsc::channel(io.shared.options.client_inbox_capacity.max(1));
        let (disconnect_tx, disconnect_rx) = oneshot::channel();
        let ctx = Context::new(
            HubServer {
                shared: io.shared.clone(),
            },
            info.clone(),
        );
        tokio::spawn(run_worker(ctx, work_rx, disconnect_rx));
        self.phase = Phase::Connected(Connected {
            info,
            work: work_tx,
            disconnect: disconnect_tx,
        });
    }

    /// ConnectionData from the client. `Err` asks the connection to close the client.
    pub(crate) fn on_data(
        &mut self,
        io: &mut SessionIo,
        payload: Bytes,
    ) -> Result<(), CloseClient> {
        self.last_received = Instant::now();
        if let Phase::Connected(_) = self.phase {
            return self.on_bytes(io, payload);
        }
        self.buf.extend_from_slice(&payload);
        let detailed = io.shared.hub.detailed_errors();
        let (request, used) = match handshake::parse_request_scanned(&self.buf, &mut self.scan) {
            Ok(Some(parsed)) => parsed,
            Ok(None) if self.buf.len() > io.shared.options.max_client_message_size => {
                return Err(self.handshake_failure(io, HANDSHAKE_CANCELED.to_owned()));
            }
            Ok(None) => return Ok(()),
            Err(err) => return Err(self.handshake_failure(io, err.response_text(detailed))),
        };
        let protocol = match handshake::select_protocol(&request, true) {
            Ok(p) => p,
            Err(text) => return Err(self.handshake_failure(io, text)),
        };
        let _ = self.buf.split_to(used);
        io.write_to_client(&self.connection_id, Bytes::from_static(RESPONSE_OK));
        self.connect(io, protocol);
        if self.buf.is_empty() {
            Ok(())
        } else {
            let rest = self.buf.split().freeze();
            self.on_bytes(io, rest)
        }
    }

    /// Answers a failed handshake with its error and closes the client.
    fn handshake_failure(&mut self, io: &mut SessionIo, text: String) -> CloseClient {
        io.write_to_client(&self.connection_id, handshake::error_response(&text));
        CloseClient {
            connection_id: self.connection_id.clone(),
            close_message: None,
            close_connection: Some(text),
            notify_hub: false,
            hub_error: None,
        }
    }

    /// Hub messages after the handshake. Bytes that start with a message are decoded where they
    /// are (raw values are zero-copy slices); a partial message waits in `buf`, which is only
    /// appended to and searched from where the last search stopped until the message is whole.
    fn on_bytes(&mut self, io: &mut SessionIo, data: Bytes) -> Result<(), CloseClient> {
        let Phase::Connected(connected) = &self.phase else {
            return Ok(());
        };
        let protocol = connected.info.protocol;
        let max = io.shared.options.max_client_message_size;
        if self.buf.is_empty() {
            let mut rest = data;
            loop {
                match protocol.decode_bytes_scanned(&rest, max, &mut self.scan) {
                    Ok(None) => break,
                    Ok(Some(decoded)) => {
                        rest = rest.slice(decoded.consumed..);
                        if let Some(msg) = decoded.message {
                            self.on_message(io, msg)?;
                        }
                    }
                    Err(err) => return Err(self.decode_error(io, &err)),
                }
            }
            // The scan covered exactly these bytes: it stays valid for `buf`.
            self.buf.extend_from_slice(&rest);
            return Ok(());
        }
        self.buf.extend_from_slice(&data);
        loop {
            match protocol.decode_scanned(&self.buf, max, &mut self.scan) {
                Ok(None) => return Ok(()),
                Ok(Some(decoded)) => {
                    self.buf.advance(decoded.consumed);
                    if let Some(msg) = decoded.message {
                        self.on_message(io, msg)?;
                    }
                }
                Err(err) => return Err(self.decode_error(io, &err)),
            }
        }
    }

    /// The close for bytes that are not a hub message.
    fn decode_error(&self, io: &SessionIo, err: &crate::protocol::ProtocolError) -> CloseClient {
        let detail = err.to_string();
        let detailed = io.shared.hub.detailed_errors();
        self.error_close(
            if detailed {
                format!("{CLOSED_WITH_ERROR} InvalidDataException: {detail}")
            } else {
                CLOSED_WITH_ERROR.to_owned()
            },
            false,
            detail,
        )
    }

    /// A Close message with `close_text`, CloseConnection and `on_disconnected` with `detail`.
    fn error_close(
        &self,
        close_text: String,
        allow_reconnect: bool,
        detail: String,
    ) -> CloseClient {
        CloseClient {
            connection_id: self.connection_id.clone(),
            close_message: Some(Close {
                error: Some(close_text),
                allow_reconnect,
            }),
            close_connection: Some(detail.clone()),
            notify_hub: true,
            hub_error: Some(detail),
        }
    }

    fn queue(&self, io: &SessionIo, work: ClientWork) -> Result<(), CloseClient> {
        let Phase::Connected(connected) = &self.phase else {
            return Ok(());
        };
        match connected.work.try_send(work) {
            Ok(()) => Ok(()),
            // The worker is gone only while the client is being closed.
            Err(mpsc::error::TrySendError::Closed(_)) => Ok(()),
            Err(mpsc::error::TrySendError::Full(_)) => {
                tracing::warn!(connection_id = %self.connection_id, capacity = io.shared.options.client_inbox_capacity, "client sent invocations faster than the hub runs them; closing it");
                Err(self.error_close(
                    CLOSED_WITH_ERROR.to_owned(),
                    false,
                    "The client's invocation queue is full.".to_owned(),
                ))
            }
        }
    }

    fn on_message(&mut self, io: &mut SessionIo, msg: HubMessage) -> Result<(), CloseClient> {
        let Phase::Connected(connected) = &self.phase else {
            return Ok(());
        };
        let info = connected.info.clone();
        match msg {
            HubMessage::Invocation(invocation) => {
                let capacity = io.shared.options.stream_buffer_capacity.max(1);
                let uploads = invocation
                    .stream_ids
                    .iter()
                    .map(|id| {
                        let (tx, rx) = mpsc::channel(capacity);
                        self.uploads.insert(id.clone(), tx);
                        rx
                    })
                    .collect();
                self.queue(
                    io,
                    ClientWork::Invoke {
                        invocation,
                        uploads,
                    },
                )?;
            }
            HubMessage::StreamInvocation(invocation) => {
                let id = invocation.invocation_id.clone().unwrap_or_default();
                let (cancel_tx, cancel_rx) = oneshot::channel();
                let in_use = {
                    let mut streams = info.streams.lock();
                    if streams.contains_key(&id) {
                        true
                    } else {
                        streams.insert(id.clone(), cancel_tx);
                        false
                    }
                };
                if in_use {
                    let frame = codec::completion_frame(
                        info.protocol,
                        &id,
                        CompletionOutcome::Error(format!(
                            "Invocation ID '{id}' is already in use."
                        )),
                    );
                    if let Ok(frame) = frame {
                        info.mark_sent();
                        io.write_to_client(&self.connection_id, frame);
                    }
                } else {
                    self.queue(
                        io,
                        ClientWork::Stream {
                            invocation,
                            cancel: cancel_rx,
                        },
                    )?;
                }
            }
            HubMessage::StreamItem(item) => {
                if let Some(tx) = self.uploads.get(&item.invocation_id) {
                    match tx.try_send(Ok(item.item)) {
                        Ok(()) => {}
                        Err(mpsc::error::TrySendError::Closed(_)) => {
                            // The method finished without reading the whole stream.
                            self.uploads.remove(&item.invocation_id);
                        }
                        Err(mpsc::error::TrySendError::Full(_)) => {
                            tracing::warn!(connection_id = %self.connection_id, "upload stream buffer full; closing the client");
                            return Err(self.error_close(
                                CLOSED_WITH_ERROR.to_owned(),
                                false,
                                "The client's upload stream buffer is full.".to_owned(),
                            ));
                        }
                    }
                }
            }
            HubMessage::Completion(completion) => self.on_completion(io, &info, completion),
            HubMessage::CancelInvocation(cancel) => {
                if let Some(tx) = info.streams.lock().remove(&cancel.invocation_id) {
                    // The stream task may have just finished: nothing to cancel then.
                    let _ = tx.send(());
                }
            }
            HubMessage::Ping => self.ping_seen = true,
            HubMessage::Close(_) => {
                // A graceful goodbye (.NET aborts the connection): tell the service, leave.
                return Err(CloseClient {
                    connection_id: self.connection_id.clone(),
                    close_message: None,
                    close_connection: Some(String::new()),
                    notify_hub: true,
                    hub_error: None,
                });
            }
            HubMessage::Ack { .. } | HubMessage::Sequence { .. } => {}
        }
        Ok(())
    }

    /// A Completion from the client: the end of an upload stream, the answer to a client-result
    /// call of this server, or (router role) of another server's.
    fn on_completion(&mut self, io: &mut SessionIo, info: &ClientInfo, completion: Completion) {
        let id = completion.invocation_id.as_str();
        if let Some(tx) = self.uploads.remove(id) {
            if let CompletionOutcome::Error(error) = completion.outcome {
                // A full buffer only loses the error text; the stream still ends.
                let _ = tx.try_send(Err(error));
            }
            return;
        }
        if let Some(tx) = info.pending.lock().remove(id) {
            // The caller may have given up waiting.
            let _ = tx.send(completion.outcome);
            return;
        }
        if let Some(caller_server_id) = self.routed.remove(id) {
            let msg = match &completion.outcome {
                CompletionOutcome::Error(error) => ServiceMessage::ErrorCompletion {
                    invocation_id: completion.invocation_id.clone(),
                    connection_id: self.connection_id.clone(),
                    caller_server_id,
                    error: Some(error.clone()),
                    extensions: Extensions::default(),
                },
                _ => match info
                    .protocol
                    .encode(&HubMessage::Completion(completion.clone()))
                {
                    Ok(payload) => ServiceMessage::ClientCompletion {
                        invocation_id: completion.invocation_id.clone(),
                        connection_id: self.connection_id.clone(),
                        caller_server_id,
                        protocol: info.protocol.name().to_owned(),
                        payload,
                        extensions: Extensions::default(),
                    },
                    Err(err) => ServiceMessage::ErrorCompletion {
                        invocation_id: completion.invocation_id.clone(),
                        connection_id: self.connection_id.clone(),
                        caller_server_id,
                        error: Some(err.to_string()),
                        extensions: Extensions::default(),
                    },
                },
            };
            io.write(&msg);
        }
    }

    /// Writes a hub Close message to the client (after its handshake only).
    pub(crate) fn write_close(&self, io: &mut SessionIo, close: &Close) {
        if let Phase::Connected(connected) = &self.phase
            && let Ok(frame) = connected
                .info
                .protocol
                .encode(&HubMessage::Close(close.clone()))
        {
            io.write_to_client(&self.connection_id, frame);
        }
    }

    /// Heartbeat: handshake timeout, client timeout (after its first Ping), keep-alive Ping.
    pub(crate) fn on_tick(&mut self, io: &mut SessionIo, now: Instant) -> Option<CloseClient> {
        let options = &io.shared.options;
        match &self.phase {
            Phase::Handshake(_) => {
                if now.duration_since(self.opened) >= options.client_handshake_timeout {
                    return Some(self.handshake_failure(io, HANDSHAKE_CANCELED.to_owned()));
                }
            }
            Phase::Connected(connected) => {
                if self.ping_seen
                    && now.duration_since(self.last_received) >= options.client_timeout
                {
                    let detail = format!(
                        "The client sent nothing for {:?} (client timeout).",
                        options.client_timeout
                    );
                    return Some(self.error_close(CLOSED_WITH_ERROR.to_owned(), true, detail));
                }
                let info = &connected.info;
                let idle = info
                    .now_ms()
                    .saturating_sub(info.last_sent_ms.load(Ordering::Relaxed));
                if Duration::from_millis(idle) >= options.client_keep_alive_interval {
                    info.mark_sent();
                    let ping = Bytes::from_static(crate::protocol::ping_frame(info.protocol));
                    io.write_to_client(&self.connection_id, ping);
                }
            }
        }
        None
    }

    /// The client is gone: unpublish it, cancel its streams, fail its pending client results,
    /// end its upload streams, and let its worker run `on_disconnected` (if `notify_hub`) after
    /// its queued invocations.
    pub(crate) fn finish(mut self, shared: &ServerShared, notify_hub: bool, error: Option<String>) {
        let Phase::Connected(connected) = self.phase else {
            return;
        };
        let info = connected.info;
        info.closed.store(true, Ordering::Release);
        {
            let mut local = shared.local.write();
            if local
                .get(&info.connection_id)
                .is_some_and(|current| Arc::ptr_eq(current, &info))
            {
                local.remove(&info.connection_id);
            }
        }
        for (_, cancel) in info.streams.lock().drain() {
            // A stream that just ended has dropped its receiver: nothing to cancel.
            let _ = cancel.send(());
        }
        // Dropping the senders fails the waiting callers with `ClientDisconnected`.
        info.pending.lock().clear();
        for (_, tx) in self.uploads.drain() {
            // A full buffer still ends the stream when the sender drops.
            let _ = tx.try_send(Err(CONNECTION_CLOSED.to_owned()));
        }
        drop(connected.work);
        if notify_hub {
            // The worker is gone only if on_connected failed: then no on_disconnected is due.
            let _ = connected.disconnect.send(error);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_from_long_claims() {
        let claims = vec![
            (NAME_IDENTIFIER.to_owned(), "alice".to_owned()),
            ("aud".to_owned(), "x".to_owned()),
            ("asrs.s.aut".to_owned(), "Bearer".to_owned()),
            ("asrs.u.exp".to_owned(), "42".to_owned()),
            ("role".to_owned(), "admin".to_owned()),
        ];
        let (user, claims) = identity(claims);
        assert_eq!(user.as_deref(), Some("alice"));
        assert_eq!(
            claims,
            vec![
                (NAME_IDENTIFIER.to_owned(), "alice".to_owned()),
                ("exp".to_owned(), "42".to_owned()),
                ("role".to_owned(), "admin".to_owned()),
            ]
        );
        let pick = |pairs: &[(&str, &str)]| {
            identity(
                pairs
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
            )
            .0
        };
        assert_eq!(pick(&[("sub", "s"), ("nameid", "n")]).as_deref(), Some("n"));
        assert_eq!(
            pick(&[("nameid", "n"), ("asrs.s.uid", "u")]).as_deref(),
            Some("u")
        );
        assert_eq!(pick(&[("sub", "s")]).as_deref(), Some("s"));
        assert_eq!(pick(&[("role", "r")]), None);
    }
}
