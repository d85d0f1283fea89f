//! Supervision of the connection actors: a client or hub-server actor that panics (through the
//! test hooks `client::PANIC_AFTER_ADMISSION` and `server::PANIC_AFTER_REGISTRATION`) is
//! counted, and what it held — connection slot, index entry, place in its hub, gauges — is
//! released. The actors run over in-memory transports, with a real hub.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{mpsc, watch};

use super::client::{self, ClientContext, PANIC_AFTER_ADMISSION};
use super::env::{ClientEnv, ConnectionSlot, ConnectionSlots, ServerEnv};
use super::index::ConnectionIndex;
use super::server::socket::{Incoming, ServerSocket};
use super::server::{self, PANIC_AFTER_REGISTRATION, ServerContext};
use super::transport::{Pipe, PipeReceiver, PollOutcome, PollState, Transport};
use crate::auth::{AccessKeys, Identity};
use crate::close::WsClose;
use crate::config::{LimitsConfig, ServiceMode};
use crate::hub::{ExistsQuery, HubHandle, HubRegistry, HubSettings};
use crate::keyring::KeyRing;
use crate::policy::Policy;
use crate::protocol::service::{self, ConnectionType, Extensions, ServiceMessage};
use crate::telemetry::{Metrics, names};
use crate::upstream::{UpstreamClient, UpstreamOptions, UpstreamRules};

fn hubs(metrics: &Arc<Metrics>) -> HubRegistry {
    HubRegistry::new(
        HubSettings {
            inbox_capacity: 64,
            max_user_groups_without_ttl: 100,
            idle_timeout: Duration::from_secs(60),
            max_hubs: 10,
            cluster: None,
        },
        metrics.clone(),
    )
}

fn client_env(metrics: &Arc<Metrics>) -> Arc<ClientEnv> {
    Arc::new(ClientEnv {
        limits: LimitsConfig::default(),
        metrics: metrics.clone(),
        policy: Arc::new(Policy::new(
            ServiceMode::Serverless,
            UpstreamRules::default(),
        )),
        connections: Arc::new(ConnectionIndex::default()),
        resumable: Arc::default(),
        upstream: UpstreamClient::new(UpstreamOptions::default()).unwrap(),
        keys: Arc::new(KeyRing::new(AccessKeys::new(vec!["k".into()]))),
        upstream_queue: 16,
        upstream_queue_bytes: 1 << 20,
        events: Arc::new(crate::events::Events::disabled()),
        upstream_tasks: tokio_util::task::TaskTracker::new(),
    })
}

/// A long-polling client of `hub` whose handshake request is already sent.
async fn long_polling_client(
    env: &Arc<ClientEnv>,
    hub: &HubHandle,
    id: &str,
    slot: ConnectionSlot,
) -> (ClientContext, Transport, Arc<PollState>) {
    let inbound = Arc::new(Pipe::new(16, 1 << 20));
    inbound
        .send(Bytes::from_static(
            b"{\"protocol\":\"json\",\"version\":1}\x1e",
        ))
        .await
        .unwrap();
    let ctx = ClientContext {
        env: env.clone(),
        hub: hub.clone(),
        connection_id: id.into(),
        identity: Identity::default(),
        headers: Vec::new(),
        query: String::new(),
        ip: None,
        slot,
        resume: None,
    };
    let poll = Arc::new(PollState::new(1 << 20));
    let transport = Transport::LongPolling {
        inbound: PipeReceiver(inbound),
        poll: poll.clone(),
    };
    (ctx, transport, poll)
}

#[tokio::test]
async fn a_client_actor_that_panics_releases_its_slot_index_entry_and_hub_membership() {
    let metrics = Arc::new(Metrics::default());
    let env = client_env(&metrics);
    let registry = hubs(&metrics);
    let hub = registry.get_or_create("chat").unwrap();
    let slots = Arc::new(ConnectionSlots::new(10));
    let id = format!("{PANIC_AFTER_ADMISSION}1");
    let (ctx, transport, _poll) =
        long_polling_client(&env, &hub, &id, slots.try_reserve().unwrap()).await;

    client::run(ctx, transport).await;

    assert_eq!(metrics.get(names::actor_panics_client), Some(1));
    assert_eq!(metrics.get(names::connections_opened), Some(1), "admitted");
    assert_eq!(metrics.get(names::connections_closed), Some(1));
    assert_eq!(metrics.get(names::connections_current), Some(0));
    assert_eq!(slots.held(), 0, "the slot is free");
    assert!(
        matches!(
            env.connections.lookup(hub.name().as_str(), id.as_str()),
            super::index::Lookup::Missing
        ),
        "the index entry is gone"
    );
    let in_hub = hub
        .exists(ExistsQuery::Connection(id.as_str().into()))
        .await
        .unwrap()
        .await
        .unwrap();
    assert!(!in_hub, "the hub forgot the connection");
    assert_eq!(hub.client_count(), 0);
}

#[tokio::test]
async fn a_client_whose_hub_failed_during_its_handshake_is_told_so() {
    let metrics = Arc::new(Metrics::default());
    let env = client_env(&metrics);
    let registry = hubs(&metrics);
    let hub = registry.get_or_create("chat").unwrap();
    hub.panic_for_test().await.unwrap();
    hub.stopped().await;
    let slots = Arc::new(ConnectionSlots::new(10));
    let (ctx, transport, poll) =
        long_polling_client(&env, &hub, "c1", slots.try_reserve().unwrap()).await;

    client::run(ctx, transport).await;

    let PollOutcome::Data(answer) = poll.poll(Duration::from_secs(5)).await else {
        panic!("no handshake answer");
    };
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.starts_with("{\"error\":") && answer.contains("restarted; reconnect"),
        "{answer}"
    );
    assert_eq!(slots.held(), 0);
    assert_eq!(metrics.get(names::connections_current), Some(0));
}

/// A hub-server socket made of channels: frames in, frames out.
struct ChannelSocket {
    incoming: mpsc::Receiver<Bytes>,
    outgoing: mpsc::Sender<Bytes>,
}

impl ServerSocket for ChannelSocket {
    async fn recv(&mut self) -> Incoming {
        match self.incoming.recv().await {
            Some(b) => Incoming::Data(b),
            None => Incoming::Gone,
        }
    }

    async fn send(&mut self, frame: Bytes) -> Result<(), ()> {
        self.outgoing.send(frame).await.map_err(|_| ())
    }

    async fn close(&mut self, _close: &WsClose) {}
}

#[tokio::test]
async fn a_server_actor_that_panics_releases_its_slot_and_leaves_its_hub() {
    let metrics = Arc::new(Metrics::default());
    let (_stop, shutdown) = watch::channel(false);
    let env = Arc::new(ServerEnv {
        limits: LimitsConfig::default(),
        metrics: metrics.clone(),
        policy: Arc::new(Policy::new(ServiceMode::Default, UpstreamRules::default())),
        connections: Arc::new(ConnectionIndex::default()),
        shutdown,
        events: Arc::new(crate::events::Events::disabled()),
    });
    let registry = hubs(&metrics);
    let hub = registry.get_or_create("chat").unwrap();
    let slots = Arc::new(ConnectionSlots::new(10));
    let (to_broker, incoming) = mpsc::channel(8);
    let (outgoing, mut from_broker) = mpsc::channel(8);
    to_broker
        .send(service::encode(&ServiceMessage::HandshakeRequest {
            version: 1,
            connection_type: ConnectionType::Default,
            target: None,
            migration_level: 0,
            extensions: Extensions::default(),
            allow_stateful_reconnects: false,
        }))
        .await
        .unwrap();
    let ctx = ServerContext {
        env,
        hub: hub.clone(),
        server_id: format!("{PANIC_AFTER_REGISTRATION}1"),
        slot: slots.try_reserve().unwrap(),
        ip: None,
    };

    server::run(ctx, ChannelSocket { incoming, outgoing }).await;

    assert!(from_broker.recv().await.is_some(), "the handshake answer");
    assert_eq!(metrics.get(names::actor_panics_server), Some(1));
    assert_eq!(metrics.get(names::server_connections_opened), Some(1));
    assert_eq!(metrics.get(names::server_connections_current), Some(0));
    assert_eq!(slots.held(), 0, "the slot is free");
    let servers = hub.server_ids().await.unwrap().await.unwrap();
    assert!(servers.is_empty(), "the hub forgot the server: {servers:?}");
    drop(to_broker);
}
