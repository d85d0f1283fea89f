//! Smoke runs of every scenario against an in-process broker (Serverless mode, 127.0.0.1:0):
//! short and small, asserting correctness only (no loss, no duplicates, no errors, exact counts),
//! never timings.

use switchboard::{Config, ServiceMode, Switchboard, SwitchboardHandle};
use switchboard_loadtest::{Common, Protocol, Report, Scenario, run};

const KEY: &str = "loadtest-smoke-access-key-0123456789ABCDEFGHIJ";

fn start() -> (SwitchboardHandle, Common) {
    start_in(ServiceMode::Serverless)
}

fn start_in(mode: ServiceMode) -> (SwitchboardHandle, Common) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let config = Config {
        mode,
        listen: listener.local_addr().expect("local addr"),
        access_keys: vec![KEY.to_owned()],
        workers: 2,
        ..Config::default()
    };
    let handle = Switchboard::new(config)
        .expect("valid config")
        .start(listener)
        .expect("start switchboard");
    let mut common = Common::new(&format!("http://{}", handle.local_addr()), KEY);
    common.connections = 20;
    common.parallel = 10;
    common.duration = 1.0;
    (handle, common)
}

fn assert_clean(r: &Report) {
    assert_eq!(r.errors, 0, "{}", r.summary());
    assert_eq!(r.dropped, 0, "{}", r.summary());
    assert_eq!(r.lost, 0, "{}", r.summary());
    assert_eq!(r.duplicates, 0, "{}", r.summary());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s1_hold_keeps_every_connection() {
    let (handle, mut common) = start();
    common.negotiate = true;
    let pid = std::process::id();
    let r = run(
        &common,
        &Scenario::S1Hold {
            server_pid: Some(pid),
        },
    )
    .await
    .expect("run");
    assert_clean(&r);
    assert_eq!(r.connected, 20, "{}", r.summary());
    assert_eq!(r.extra["still_connected_at_end"], 20, "{}", r.summary());
    assert!(
        r.extra.contains_key("server_rss_after_kib"),
        "{}",
        r.summary()
    );
    handle.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s2_connect_completes_every_connect() {
    let (handle, mut common) = start();
    common.connections = 50;
    common.duration = 30.0; // a cap only: the run ends after 50 connects
    let r = run(&common, &Scenario::S2Connect).await.expect("run");
    assert_clean(&r);
    assert_eq!(r.connected, 50, "{}", r.summary());
    assert_eq!(
        r.latency.as_ref().map(|l| l.count),
        Some(50),
        "{}",
        r.summary()
    );
    handle.stop().await;
}

async fn broadcast(protocol: Protocol) {
    let (handle, mut common) = start();
    common.protocol = protocol;
    common.rate = 100.0;
    let r = run(&common, &Scenario::S4Broadcast).await.expect("run");
    assert_clean(&r);
    assert_eq!(r.connected, 20, "{}", r.summary());
    assert!(r.sent > 0, "{}", r.summary());
    assert_eq!(r.expected, r.sent * 20, "{}", r.summary());
    assert_eq!(r.received, r.expected, "{}", r.summary());
    assert_eq!(
        r.latency.as_ref().map(|l| l.count),
        Some(r.received),
        "{}",
        r.summary()
    );
    handle.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s4_broadcast_json_no_loss_in_order() {
    broadcast(Protocol::Json).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s4_broadcast_messagepack_no_loss_in_order() {
    broadcast(Protocol::Messagepack).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s6_rest_user_delivers_every_send() {
    let (handle, mut common) = start();
    common.protocol = Protocol::Messagepack;
    common.rate = 400.0;
    let r = run(&common, &Scenario::S6RestUser { concurrency: 4 })
        .await
        .expect("run");
    assert_clean(&r);
    assert_eq!(r.connected, 20, "{}", r.summary());
    assert!(r.sent > 0, "{}", r.summary());
    assert_eq!(r.expected, r.sent, "{}", r.summary());
    assert_eq!(r.received, r.sent, "{}", r.summary());
    handle.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_echo_round_trips_in_default_mode() {
    use switchboard::sdk::{ConnectionString, Context, Hub, HubError, HubServer};
    let (handle, mut common) = start_in(ServiceMode::Default);
    let hub =
        Hub::builder()
            .method(
                "EchoReturn",
                |_ctx: Context, (payload,): (serde_json::Value,)| async move {
                    Ok::<_, HubError>(payload)
                },
            )
            .build();
    let cs: ConnectionString = handle
        .connection_string()
        .parse()
        .expect("connection string");
    let server = HubServer::builder(cs, "load", hub)
        .connection_count(2)
        .start()
        .expect("hub server");
    server
        .wait_connected(2, std::time::Duration::from_secs(10))
        .await
        .expect("hub server connected");
    for protocol in [Protocol::Json, Protocol::Messagepack] {
        common.protocol = protocol;
        let r = run(&common, &Scenario::S3Echo).await.expect("run");
        assert_clean(&r);
        assert_eq!(r.connected, 20, "{}", r.summary());
        assert!(r.sent > 0, "{}", r.summary());
        assert_eq!(r.received, r.sent, "{}", r.summary());
        assert_eq!(r.expected, r.sent, "{}", r.summary());
    }
    server.stop().await;
    handle.stop().await;
}
