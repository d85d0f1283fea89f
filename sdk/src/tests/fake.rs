//! A fake Azure SignalR service for the SDK's unit tests: a tokio-tungstenite WebSocket server
//! on 127.0.0.1:0 that speaks the service protocol with the crate's codec. It records each
//! server connection's upgrade request and HandshakeRequest, answers the handshake (or refuses
//! it), and hands each connection to the test as a [`FakeConn`] that can play clients
//! (OpenConnection, client bytes as ConnectionData) and inspect everything the SDK sends.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::{SinkExt as _, StreamExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};

use crate::ConnectionString;
use crate::protocol::service::{self, Extensions, ServiceMessage};
use crate::protocol::{HubMessage, HubProtocol, handshake};

/// The access key of the fake service.
pub(crate) const KEY: &str = "fake-service-access-key";

/// How long a test waits for any expected message.
pub(crate) const WAIT: Duration = Duration::from_secs(5);

/// The fake service.
pub(crate) struct FakeService {
    pub(crate) addr: SocketAddr,
    conns: mpsc::Receiver<FakeConn>,
    /// Handshake answers still to refuse (each refused attempt decrements it).
    refusals: Arc<Mutex<usize>>,
}

/// What the SDK sent on the upgrade request.
#[derive(Clone, Debug, Default)]
pub(crate) struct UpgradeRequest {
    pub(crate) path_and_query: String,
    pub(crate) headers: HashMap<String, String>,
}

/// One accepted server connection, after the handshake.
pub(crate) struct FakeConn {
    pub(crate) request: UpgradeRequest,
    pub(crate) handshake: ServiceMessage,
    ws: WebSocketStream<TcpStream>,
    buf: BytesMut,
    backlog: VecDeque<ServiceMessage>,
    /// Per client: bytes received (hub messages from several data messages).
    client_bufs: HashMap<String, BytesMut>,
    /// Keep-alive pings received and dropped.
    pub(crate) keep_alives: usize,
}

impl FakeService {
    /// Starts the service; it refuses the first `refusals` handshakes with an error.
    pub(crate) async fn start(refusals: usize) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, conns) = mpsc::channel(16);
        let refusals = Arc::new(Mutex::new(refusals));
        let refusals_in_task = refusals.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let tx = tx.clone();
                let refusals = refusals_in_task.clone();
                tokio::spawn(async move {
                    if let Some(conn) = accept(tcp, refusals).await {
                        let _ = tx.send(conn).await;
                    }
                });
            }
        });
        Self {
            addr,
            conns,
            refusals,
        }
    }

    /// The connection string of this service.
    pub(crate) fn connection_string(&self) -> ConnectionString {
        ConnectionString::parse(&format!(
            "Endpoint=http://127.0.0.1;Port={};AccessKey={KEY};Version=1.0;",
            self.addr.port()
        ))
        .unwrap()
    }

    /// The next server connection that completed its handshake.
    pub(crate) async fn next_conn(&mut self) -> FakeConn {
        tokio::time::timeout(WAIT, self.conns.recv())
            .await
            .expect("a server connection in time")
            .expect("the fake service is running")
    }

    /// Refusals not used yet.
    pub(crate) fn refusals_left(&self) -> usize {
        *self.refusals.lock().unwrap()
    }
}

#[allow(clippy::result_large_err)] // the callback type is tungstenite's
async fn accept(tcp: TcpStream, refusals: Arc<Mutex<usize>>) -> Option<FakeConn> {
    let captured = Arc::new(Mutex::new(UpgradeRequest::default()));
    let sink = captured.clone();
    let callback = move |req: &Request, resp: Response| {
        let mut c = sink.lock().unwrap();
        c.path_and_query = req
            .uri()
            .path_and_query()
            .map(|p| p.to_string())
            .unwrap_or_default();
        for (name, value) in req.headers() {
            c.headers.insert(
                name.as_str().to_ascii_lowercase(),
                value.to_str().unwrap_or_default().to_owned(),
            );
        }
        Ok(resp)
    };
    let mut ws = tokio_tungstenite::accept_hdr_async(tcp, callback)
        .await
        .ok()?;
    let request = captured.lock().unwrap().clone();
    let mut conn = FakeConn {
        request,
        handshake: ServiceMessage::Ping { messages: vec![] },
        ws,
        buf: BytesMut::new(),
        backlog: VecDeque::new(),
        client_bufs: HashMap::new(),
        keep_alives: 0,
    };
    conn.handshake = conn.read_message().await?;
    let refuse = {
        let mut left = refusals.lock().unwrap();
        if *left > 0 {
            *left -= 1;
            true
        } else {
            false
        }
    };
    let answer = ServiceMessage::HandshakeResponse {
        error_message: Some(if refuse {
            "go away".into()
        } else {
            String::new()
        }),
        extensions: Extensions::default(),
        connection_id: None,
    };
    conn.send(&answer).await;
    if refuse {
        ws = conn.ws;
        let _ = ws.close(None).await;
        return None;
    }
    Some(conn)
}

impl FakeConn {
    /// Sends one service message.
    pub(crate) async fn send(&mut self, msg: &ServiceMessage) {
        self.ws
            .send(Message::Binary(service::encode(msg)))
            .await
            .expect("fake service write");
    }

    /// The next message off the wire (keep-alive pings included); `None` when the SDK closed.
    pub(crate) async fn read_message(&mut self) -> Option<ServiceMessage> {
        loop {
            if let Some((msg, used)) = service::decode(&self.buf, 1 << 26).expect("valid frames") {
                let _ = self.buf.split_to(used);
                match msg {
                    Some(msg) => return Some(msg),
                    None => continue,
                }
            }
            match self.ws.next().await {
                Some(Ok(Message::Binary(data))) => self.buf.extend_from_slice(&data),
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return None,
                Some(Ok(_)) => {}
            }
        }
    }

    /// The next message matching `pred` (earlier non-matching messages stay in a backlog;
    /// keep-alive pings are counted and dropped). Panics after [`WAIT`].
    pub(crate) async fn expect<F>(&mut self, what: &str, mut pred: F) -> ServiceMessage
    where
        F: FnMut(&ServiceMessage) -> bool,
    {
        if let Some(i) = self.backlog.iter().position(&mut pred) {
            return self.backlog.remove(i).unwrap();
        }
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let msg = tokio::time::timeout_at(deadline, self.read_message())
                .await
                .unwrap_or_else(|_| {
                    panic!("timed out waiting for {what}; backlog: {:?}", self.backlog)
                })
                .unwrap_or_else(|| panic!("connection closed waiting for {what}"));
            if matches!(&msg, ServiceMessage::Ping { messages } if messages.is_empty()) {
                self.keep_alives += 1;
                continue;
            }
            if pred(&msg) {
                return msg;
            }
            self.backlog.push_back(msg);
        }
    }

    /// Whether any message matching `pred` arrives within `within` (backlog included).
    pub(crate) async fn sees<F>(&mut self, within: Duration, mut pred: F) -> bool
    where
        F: FnMut(&ServiceMessage) -> bool,
    {
        if self.backlog.iter().any(&mut pred) {
            return true;
        }
        let deadline = tokio::time::Instant::now() + within;
        while let Ok(Some(msg)) = tokio::time::timeout_at(deadline, self.read_message()).await {
            if matches!(&msg, ServiceMessage::Ping { messages } if messages.is_empty()) {
                self.keep_alives += 1;
                continue;
            }
            let hit = pred(&msg);
            self.backlog.push_back(msg);
            if hit {
                return true;
            }
        }
        false
    }

    /// Plays a client: OpenConnection, then its handshake request; expects `{}` + 0x1E back.
    pub(crate) async fn open_client(
        &mut self,
        id: &str,
        protocol: HubProtocol,
        claims: &[(&str, &str)],
        query: &str,
    ) {
        self.send(&ServiceMessage::OpenConnection {
            connection_id: id.into(),
            claims: claims
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            headers: vec![("User-Agent".into(), vec!["test".into()])],
            query_string: Some(query.into()),
            extensions: Extensions {
                protocol: Some(protocol.name().into()),
                ..Extensions::default()
            },
        })
        .await;
        self.client_bytes(id, handshake::encode_request(protocol.name(), 1))
            .await;
        let answer = self.client_payload(id).await;
        assert_eq!(&answer[..], handshake::RESPONSE_OK, "handshake answer");
    }

    /// Sends raw client bytes as ConnectionData.
    pub(crate) async fn client_bytes(&mut self, id: &str, payload: Bytes) {
        self.send(&ServiceMessage::ConnectionData {
            connection_id: id.into(),
            payload,
            extensions: Extensions::default(),
        })
        .await;
    }

    /// Sends a hub message from client `id`.
    pub(crate) async fn client_send(&mut self, id: &str, protocol: HubProtocol, msg: &HubMessage) {
        let bytes = protocol.encode(msg).unwrap();
        self.client_bytes(id, bytes).await;
    }

    /// The payload of the next ConnectionData for client `id`.
    pub(crate) async fn client_payload(&mut self, id: &str) -> Bytes {
        let msg = self
            .expect(&format!("ConnectionData for {id}"), |m| {
                matches!(m, ServiceMessage::ConnectionData { connection_id, .. } if connection_id == id)
            })
            .await;
        match msg {
            ServiceMessage::ConnectionData { payload, .. } => payload,
            _ => unreachable!(),
        }
    }

    /// The next hub message the SDK sends client `id` (as ConnectionData).
    pub(crate) async fn client_recv(&mut self, id: &str, protocol: HubProtocol) -> HubMessage {
        loop {
            let buf = self.client_bufs.entry(id.to_owned()).or_default();
            if let Some(decoded) = protocol.decode(buf, 1 << 20).expect("valid hub message") {
                let _ = buf.split_to(decoded.consumed);
                if let Some(msg) = decoded.message {
                    return msg;
                }
                continue;
            }
            let payload = self.client_payload(id).await;
            self.client_bufs
                .entry(id.to_owned())
                .or_default()
                .extend_from_slice(&payload);
        }
    }

    /// Answers the next `*WithAck` request matching `pred` with `status`; returns the request.
    pub(crate) async fn ack_next<F>(&mut self, what: &str, status: i32, pred: F) -> ServiceMessage
    where
        F: FnMut(&ServiceMessage) -> bool,
    {
        let msg = self.expect(what, pred).await;
        let ack_id = ack_id_of(&msg).unwrap_or_else(|| panic!("{what} has no ack id: {msg:?}"));
        self.send(&ServiceMessage::Ack {
            ack_id,
            status,
            message: None,
            extensions: Extensions::default(),
            payload: None,
        })
        .await;
        msg
    }

    /// Closes the WebSocket from the service's side (a lost connection for the SDK).
    pub(crate) async fn hang_up(&mut self) {
        let _ = self.ws.close(None).await;
    }

    /// Waits until the SDK closes the WebSocket (returns the messages seen meanwhile).
    pub(crate) async fn closed(&mut self) -> Vec<ServiceMessage> {
        let mut seen: Vec<ServiceMessage> = self.backlog.drain(..).collect();
        loop {
            match tokio::time::timeout(WAIT, self.read_message()).await {
                Ok(Some(msg)) => seen.push(msg),
                Ok(None) => return seen,
                Err(_) => panic!("the SDK did not close the connection; saw {seen:?}"),
            }
        }
    }
}

/// The ack id of a `*WithAck` message.
pub(crate) fn ack_id_of(msg: &ServiceMessage) -> Option<i32> {
    Some(match msg {
        ServiceMessage::JoinGroupWithAck { ack_id, .. }
        | ServiceMessage::LeaveGroupWithAck { ack_id, .. }
        | ServiceMessage::CheckUserInGroupWithAck { ack_id, .. }
        | ServiceMessage::CheckGroupExistenceWithAck { ack_id, .. }
        | ServiceMessage::CheckConnectionExistenceWithAck { ack_id, .. }
        | ServiceMessage::CheckUserExistenceWithAck { ack_id, .. }
        | ServiceMessage::UserJoinGroupWithAck { ack_id, .. }
        | ServiceMessage::UserLeaveGroupWithAck { ack_id, .. }
        | ServiceMessage::CloseUserConnectionsWithAck { ack_id, .. }
        | ServiceMessage::CloseGroupConnectionsWithAck { ack_id, .. } => *ack_id,
        _ => return None,
    })
}
