//! The cluster engine on a real Redis (`redis-server` started by the test, see
//! `common/redis_server.rs`).
//!
//! The semantics of every command are checked by functions generic over the engine, run three
//! times by `on_every_engine!`: on the in-process `LocalEngine` (which defines the semantics), on
//! `RedisEngine` over RESP2 (the default), and over RESP3 (`?protocol=resp3`, whose answers have
//! other shapes). The tests named `redis_*` play what only a real server shows: outages (the
//! server stopped and started again on the same port, or frozen so that its connections stay
//! open without answers), a Redis that is down at start, URLs.

mod common;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use common::redis_server::RedisServer;
use switchboard::cluster::{
    Command, Engine, EngineError, RedisEngine, RedisEngineConfig, Reply, Subscriber,
    SubscriberEvent,
};
use tokio::sync::mpsc;
use tokio::time::{sleep, timeout};

/// How long a test waits for something that should happen (generous: the machine is shared).
const WAIT: Duration = Duration::from_secs(10);

/// Short timeouts and backoff, so that the outage tests run in seconds.
fn test_config() -> RedisEngineConfig {
    RedisEngineConfig {
        timeout: Duration::from_secs(1),
        ping_interval: Duration::from_millis(100),
        ping_timeout: Duration::from_secs(1),
        reconnect_min: Duration::from_millis(50),
        reconnect_max: Duration::from_millis(500),
    }
}

async fn connect(url: &str) -> RedisEngine {
    timeout(WAIT, RedisEngine::connect_with(url, test_config()))
        .await
        .expect("connect does not hang")
        .expect("a valid URL")
}

fn now_ms() -> i64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970");
    i64::try_from(since.as_millis()).expect("ms fit i64")
}

// ---- commands ----

fn publish(channel: &str, payload: &str) -> Command {
    Command::Publish {
        channel: channel.into(),
        payload: Bytes::copy_from_slice(payload.as_bytes()),
    }
}

fn set_if_absent(key: &str, ttl: Duration) -> Command {
    Command::SetIfAbsent {
        key: key.into(),
        ttl,
    }
}

fn add(key: &str, member: &str, score: i64, expire_at_ms: i64) -> Command {
    Command::SortedAdd {
        key: key.into(),
        member: member.into(),
        score,
        expire_at_ms,
    }
}

/// An entry whose key expires in an hour.
fn add_lasting(key: &str, member: &str, score: i64) -> Command {
    add(key, member, score, now_ms() + 3_600_000)
}

fn keep(key: &str, keep: usize) -> Command {
    Command::SortedKeepHighest {
        key: key.into(),
        keep,
    }
}

fn remove(key: &str, member: &str) -> Command {
    Command::SortedRemove {
        key: key.into(),
        member: member.into(),
    }
}

fn range(key: &str, min: i64) -> Command {
    Command::SortedRangeFrom {
        key: key.into(),
        min,
    }
}

fn score(key: &str, member: &str) -> Command {
    Command::SortedScore {
        key: key.into(),
        member: member.into(),
    }
}

fn delete(key: &str) -> Command {
    Command::Delete { key: key.into() }
}

fn members(items: &[(&str, i64)]) -> Reply {
    Reply::Members(items.iter().map(|(m, s)| ((*m).to_owned(), *s)).collect())
}

/// Run `batch`, which must succeed.
async fn run(engine: &dyn Engine, batch: Vec<Command>) -> Vec<Reply> {
    timeout(WAIT, engine.execute(batch))
        .await
        .expect("a batch does not hang")
        .expect("the batch runs")
}

/// Run one command, which must succeed.
async fn one(engine: &dyn Engine, command: Command) -> Reply {
    let mut replies = run(engine, vec![command]).await;
    assert_eq!(replies.len(), 1, "one reply per command");
    replies.remove(0)
}

/// Run `command` until it answers `want` (after an outage the first batches may fail).
async fn eventually(engine: &dyn Engine, command: Command, want: Reply) {
    let deadline = Instant::now() + WAIT;
    loop {
        let got = timeout(WAIT, engine.execute(vec![command.clone()]))
            .await
            .expect("a batch does not hang");
        if got.as_deref() == Ok(std::slice::from_ref(&want)) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{command:?} still answers {got:?}, not {want:?}"
        );
        sleep(Duration::from_millis(50)).await;
    }
}

// ---- subscribers ----

struct Events {
    subscriber: Box<dyn Subscriber>,
    rx: mpsc::Receiver<SubscriberEvent>,
}

/// A subscriber, not waiting for anything.
fn subscriber(engine: &dyn Engine) -> Events {
    let (tx, rx) = mpsc::channel(4096);
    Events {
        subscriber: engine.subscriber(tx),
        rx,
    }
}

/// A subscriber that reported [`SubscriberEvent::Up`].
async fn subscriber_up(engine: &dyn Engine) -> Events {
    let mut events = subscriber(engine);
    events.expect(SubscriberEvent::Up).await;
    events
}

impl Events {
    async fn next(&mut self) -> SubscriberEvent {
        timeout(WAIT, self.rx.recv())
            .await
            .expect("an event arrives")
            .expect("the subscriber runs")
    }

    async fn expect(&mut self, want: SubscriberEvent) {
        assert_eq!(self.next().await, want);
    }

    async fn expect_message(&mut self, channel: &str, payload: &str) {
        self.expect(SubscriberEvent::Message {
            channel: channel.into(),
            payload: Bytes::copy_from_slice(payload.as_bytes()),
        })
        .await;
    }

    async fn subscribe(&self, channels: &[&str]) -> Result<(), EngineError> {
        let channels = channels.iter().map(|c| (*c).to_owned()).collect();
        timeout(WAIT, self.subscriber.subscribe(channels))
            .await
            .expect("subscribe answers")
    }

    fn unsubscribe(&self, channels: &[&str]) {
        self.subscriber
            .unsubscribe(channels.iter().map(|c| (*c).to_owned()).collect());
    }
}

// ---- the semantics, on every engine ----

/// Runs each check on `LocalEngine`, and on `RedisEngine` over RESP2 and RESP3, each with a
/// `redis-server` of its own.
macro_rules! on_every_engine {
    ($($check:ident),* $(,)?) => {
        mod local {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $check() {
                    super::$check(&switchboard::cluster::LocalEngine::new()).await;
                }
            )*
        }

        mod redis_resp2 {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $check() {
                    let server = super::RedisServer::start();
                    let engine = super::connect(&server.url()).await;
                    super::$check(&engine).await;
                }
            )*
        }

        mod redis_resp3 {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $check() {
                    let server = super::RedisServer::start();
                    let url = format!("{}/?protocol=resp3", server.url());
                    let engine = super::connect(&url).await;
                    super::$check(&engine).await;
                }
            )*
        }
    };
}

on_every_engine!(
    publish_counts_receivers,
    set_if_absent_until_expiry,
    sorted_range_and_score,
    sorted_key_lives_as_long_as_its_longest_entry,
    keep_highest,
    sorted_remove,
    delete_removes_flags_and_sets,
    batch_answers_in_order,
    write_then_publish_is_readable_by_receivers,
    publish_right_after_subscribe_is_received,
    unsubscribe_stops_delivery,
    many_channels_at_once,
);

async fn publish_counts_receivers(engine: &dyn Engine) {
    assert_eq!(one(engine, publish("c", "nobody")).await, Reply::Count(0));
    let mut first = subscriber_up(engine).await;
    first.subscribe(&["c"]).await.expect("subscribed");
    assert_eq!(one(engine, publish("c", "one")).await, Reply::Count(1));
    first.expect_message("c", "one").await;

    let mut second = subscriber_up(engine).await;
    second.subscribe(&["c", "d"]).await.expect("subscribed");
    assert_eq!(one(engine, publish("c", "two")).await, Reply::Count(2));
    first.expect_message("c", "two").await;
    second.expect_message("c", "two").await;
    assert_eq!(one(engine, publish("d", "three")).await, Reply::Count(1));
    second.expect_message("d", "three").await;
    assert_eq!(one(engine, publish("e", "none")).await, Reply::Count(0));

    // Binary payloads arrive intact.
    let payload = Bytes::from_static(&[0, 159, 255, 30, b'\r', b'\n']);
    let sent = Command::Publish {
        channel: "c".into(),
        payload: payload.clone(),
    };
    assert_eq!(one(engine, sent).await, Reply::Count(2));
    let want = SubscriberEvent::Message {
        channel: "c".into(),
        payload,
    };
    first.expect(want.clone()).await;
    second.expect(want).await;
}

async fn set_if_absent_until_expiry(engine: &dyn Engine) {
    let hour = Duration::from_secs(3600);
    assert_eq!(
        one(engine, set_if_absent("token", hour)).await,
        Reply::Bool(true)
    );
    assert_eq!(
        one(engine, set_if_absent("token", hour)).await,
        Reply::Bool(false)
    );
    assert_eq!(
        one(engine, set_if_absent("other", hour)).await,
        Reply::Bool(true)
    );

    let short = Duration::from_millis(200);
    assert_eq!(
        one(engine, set_if_absent("short", short)).await,
        Reply::Bool(true)
    );
    assert_eq!(
        one(engine, set_if_absent("short", short)).await,
        Reply::Bool(false)
    );
    sleep(Duration::from_millis(500)).await;
    assert_eq!(
        one(engine, set_if_absent("short", short)).await,
        Reply::Bool(true),
        "the flag expired"
    );
    assert_eq!(
        one(engine, set_if_absent("token", hour)).await,
        Reply::Bool(false)
    );
}

async fn sorted_range_and_score(engine: &dyn Engine) {
    assert_eq!(one(engine, range("set", i64::MIN)).await, members(&[]));
    assert_eq!(one(engine, score("set", "a")).await, Reply::Score(None));

    let now = now_ms();
    run(
        engine,
        vec![
            add_lasting("set", "a", 10),
            add_lasting("set", "b", 30),
            add_lasting("set", "c", 20),
            add_lasting("set", "neg", -5),
            add_lasting("set", "now", now),
        ],
    )
    .await;
    assert_eq!(
        one(engine, range("set", 0)).await,
        members(&[("a", 10), ("c", 20), ("b", 30), ("now", now)])
    );
    assert_eq!(
        one(engine, range("set", 20)).await,
        members(&[("c", 20), ("b", 30), ("now", now)])
    );
    assert_eq!(
        one(engine, range("set", i64::MIN)).await,
        members(&[("neg", -5), ("a", 10), ("c", 20), ("b", 30), ("now", now)])
    );
    assert_eq!(one(engine, range("set", now + 1)).await, members(&[]));
    assert_eq!(one(engine, score("set", "b")).await, Reply::Score(Some(30)));
    assert_eq!(
        one(engine, score("set", "now")).await,
        Reply::Score(Some(now))
    );
    assert_eq!(one(engine, score("set", "zz")).await, Reply::Score(None));

    // A member added again moves; equal scores sort by member.
    run(
        engine,
        vec![add_lasting("set", "a", 40), add_lasting("set", "d", 20)],
    )
    .await;
    assert_eq!(
        one(engine, range("set", 0)).await,
        members(&[("c", 20), ("d", 20), ("b", 30), ("a", 40), ("now", now)])
    );
    assert_eq!(one(engine, score("set", "a")).await, Reply::Score(Some(40)));
    // Other keys are other sets.
    assert_eq!(one(engine, range("set2", i64::MIN)).await, members(&[]));
}

async fn sorted_key_lives_as_long_as_its_longest_entry(engine: &dyn Engine) {
    let now = now_ms();
    // An earlier expiry does not shorten the key's life...
    run(
        engine,
        vec![
            add("shorter-later", "long", 1, now + 1_500),
            add("shorter-later", "short", 2, now + 300),
        ],
    )
    .await;
    // ...and a later one extends it.
    run(
        engine,
        vec![
            add("longer-later", "short", 1, now + 300),
            add("longer-later", "long", 2, now + 1_500),
        ],
    )
    .await;
    // An expiry in the past: the key is gone.
    run(engine, vec![add("past", "m", 1, now - 1_000)]).await;
    assert_eq!(one(engine, range("past", i64::MIN)).await, members(&[]));

    sleep(Duration::from_millis(800)).await;
    for key in ["shorter-later", "longer-later"] {
        assert_eq!(
            one(engine, range(key, i64::MIN)).await,
            if key == "shorter-later" {
                members(&[("long", 1), ("short", 2)])
            } else {
                members(&[("short", 1), ("long", 2)])
            },
            "{key} lives until its longest entry's expiry"
        );
    }
    sleep(Duration::from_millis(1_200)).await;
    for key in ["shorter-later", "longer-later"] {
        assert_eq!(
            one(engine, range(key, i64::MIN)).await,
            members(&[]),
            "{key} expired"
        );
        assert_eq!(one(engine, score(key, "long")).await, Reply::Score(None));
    }
}

async fn keep_highest(engine: &dyn Engine) {
    assert_eq!(one(engine, keep("missing", 3)).await, Reply::Done);
    let batch = (1..=5)
        .map(|i| add_lasting("k", &format!("m{i}"), i))
        .collect();
    run(engine, batch).await;
    assert_eq!(one(engine, keep("k", 10)).await, Reply::Done);
    assert_eq!(
        one(engine, range("k", i64::MIN)).await,
        members(&[("m1", 1), ("m2", 2), ("m3", 3), ("m4", 4), ("m5", 5)])
    );
    assert_eq!(one(engine, keep("k", 2)).await, Reply::Done);
    assert_eq!(
        one(engine, range("k", i64::MIN)).await,
        members(&[("m4", 4), ("m5", 5)])
    );
    assert_eq!(one(engine, keep("k", 2)).await, Reply::Done);
    assert_eq!(one(engine, keep("k", 1)).await, Reply::Done);
    assert_eq!(
        one(engine, range("k", i64::MIN)).await,
        members(&[("m5", 5)])
    );
    assert_eq!(one(engine, keep("k", 0)).await, Reply::Done);
    assert_eq!(one(engine, range("k", i64::MIN)).await, members(&[]));
    assert_eq!(one(engine, score("k", "m5")).await, Reply::Score(None));
}

async fn sorted_remove(engine: &dyn Engine) {
    assert_eq!(one(engine, remove("missing", "m")).await, Reply::Done);
    run(
        engine,
        vec![add_lasting("r", "a", 1), add_lasting("r", "b", 2)],
    )
    .await;
    assert_eq!(one(engine, remove("r", "a")).await, Reply::Done);
    assert_eq!(one(engine, remove("r", "zz")).await, Reply::Done);
    assert_eq!(
        one(engine, range("r", i64::MIN)).await,
        members(&[("b", 2)])
    );
    assert_eq!(one(engine, score("r", "a")).await, Reply::Score(None));
    assert_eq!(one(engine, remove("r", "b")).await, Reply::Done);
    assert_eq!(one(engine, range("r", i64::MIN)).await, members(&[]));
    // The emptied key can be used again.
    run(engine, vec![add_lasting("r", "c", 3)]).await;
    assert_eq!(
        one(engine, range("r", i64::MIN)).await,
        members(&[("c", 3)])
    );
}

async fn delete_removes_flags_and_sets(engine: &dyn Engine) {
    let hour = Duration::from_secs(3600);
    assert_eq!(one(engine, delete("missing")).await, Reply::Done);
    assert_eq!(
        one(engine, set_if_absent("flag", hour)).await,
        Reply::Bool(true)
    );
    run(engine, vec![add_lasting("set", "a", 1)]).await;
    assert_eq!(one(engine, delete("flag")).await, Reply::Done);
    assert_eq!(one(engine, delete("set")).await, Reply::Done);
    assert_eq!(
        one(engine, set_if_absent("flag", hour)).await,
        Reply::Bool(true),
        "the flag was deleted"
    );
    assert_eq!(one(engine, range("set", i64::MIN)).await, members(&[]));
}

async fn batch_answers_in_order(engine: &dyn Engine) {
    assert_eq!(run(engine, Vec::new()).await, Vec::<Reply>::new());
    let hour = Duration::from_secs(3600);
    let replies = run(
        engine,
        vec![
            set_if_absent("f", hour),
            add_lasting("s", "a", 5),
            score("s", "a"),
            publish("nobody", "x"),
            set_if_absent("f", hour),
            add_lasting("s", "b", 6),
            range("s", 0),
            remove("s", "a"),
            score("s", "a"),
            keep("s", 0),
            range("s", 0),
            delete("f"),
            set_if_absent("f", hour),
        ],
    )
    .await;
    assert_eq!(
        replies,
        vec![
            Reply::Bool(true),
            Reply::Done,
            Reply::Score(Some(5)),
            Reply::Count(0),
            Reply::Bool(false),
            Reply::Done,
            members(&[("a", 5), ("b", 6)]),
            Reply::Done,
            Reply::Score(None),
            Reply::Done,
            members(&[]),
            Reply::Done,
            Reply::Bool(true),
        ]
    );
}

async fn write_then_publish_is_readable_by_receivers(engine: &dyn Engine) {
    let mut events = subscriber_up(engine).await;
    events.subscribe(&["written"]).await.expect("subscribed");
    for i in 0..20 {
        let member = format!("m{i}");
        let batch = vec![
            add_lasting("members", &member, i),
            publish("written", &member),
        ];
        let receive_and_read = async {
            let SubscriberEvent::Message { payload, .. } = events.next().await else {
                panic!("expected a message");
            };
            let member = String::from_utf8(payload.to_vec()).expect("UTF-8");
            one(engine, score("members", &member)).await
        };
        let (replies, read) = tokio::join!(run(engine, batch), receive_and_read);
        assert_eq!(replies, vec![Reply::Done, Reply::Count(1)]);
        assert_eq!(read, Reply::Score(Some(i)), "{member} is readable");
    }
}

async fn publish_right_after_subscribe_is_received(engine: &dyn Engine) {
    let mut events = subscriber_up(engine).await;
    for i in 0..30 {
        let channel = format!("fresh-{i}");
        events.subscribe(&[&channel]).await.expect("subscribed");
        assert_eq!(
            one(engine, publish(&channel, "hello")).await,
            Reply::Count(1),
            "{channel} is subscribed once subscribe resolved"
        );
        events.expect_message(&channel, "hello").await;
    }
}

async fn unsubscribe_stops_delivery(engine: &dyn Engine) {
    let mut events = subscriber_up(engine).await;
    events.subscribe(&["a", "b"]).await.expect("subscribed");
    events.unsubscribe(&["a"]);
    // Whether Redis counts "a" still depends on timing; its message is not delivered.
    run(engine, vec![publish("a", "dropped")]).await;
    assert_eq!(one(engine, publish("b", "kept")).await, Reply::Count(1));
    events.expect_message("b", "kept").await;
    // And Redis is told.
    eventually(engine, publish("a", "dropped"), Reply::Count(0)).await;
    assert_eq!(one(engine, publish("b", "still")).await, Reply::Count(1));
    events.expect_message("b", "still").await;
    // Subscribed again, "a" is delivered again.
    events.subscribe(&["a"]).await.expect("subscribed");
    assert_eq!(one(engine, publish("a", "back")).await, Reply::Count(1));
    events.expect_message("a", "back").await;
}

async fn many_channels_at_once(engine: &dyn Engine) {
    let names: Vec<String> = (0..2_500).map(|i| format!("many-{i}")).collect();
    let channels: Vec<&str> = names.iter().map(String::as_str).collect();
    let mut events = subscriber_up(engine).await;
    events.subscribe(&channels).await.expect("subscribed");
    for channel in ["many-0", "many-1234", "many-2499"] {
        assert_eq!(one(engine, publish(channel, "x")).await, Reply::Count(1));
        events.expect_message(channel, "x").await;
    }
    events.unsubscribe(&channels);
    eventually(engine, publish("many-2499", "y"), Reply::Count(0)).await;
    eventually(engine, publish("many-0", "y"), Reply::Count(0)).await;
}

// ---- what only a real Redis shows ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restart_reports_down_then_up_and_resubscribes() {
    let mut server = RedisServer::start();
    let engine = connect(&server.url()).await;
    let mut events = subscriber_up(&engine).await;
    events.subscribe(&["before"]).await.expect("subscribed");

    server.stop();
    events.expect(SubscriberEvent::Down).await;
    let refused = events.subscribe(&["during"]).await;
    assert!(
        refused.is_err(),
        "subscribe while down is an error: {refused:?}"
    );

    server.restart();
    events.expect(SubscriberEvent::Up).await;
    // Both the channel held before and the one asked for during the outage are subscribed.
    eventually(&engine, publish("before", "1"), Reply::Count(1)).await;
    events.expect_message("before", "1").await;
    assert_eq!(one(&engine, publish("during", "2")).await, Reply::Count(1));
    events.expect_message("during", "2").await;

    // A second outage works the same.
    server.stop();
    events.expect(SubscriberEvent::Down).await;
    server.restart();
    events.expect(SubscriberEvent::Up).await;
    eventually(&engine, publish("before", "3"), Reply::Count(1)).await;
    events.expect_message("before", "3").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_execute_fails_fast_while_down_and_recovers() {
    let mut server = RedisServer::start();
    let engine = connect(&server.url()).await;
    assert_eq!(one(&engine, publish("c", "x")).await, Reply::Count(0));

    server.stop();
    for _ in 0..3 {
        let started = Instant::now();
        let result = timeout(WAIT, engine.execute(vec![publish("c", "x")]))
            .await
            .expect("a batch does not hang while Redis is down");
        let EngineError(message) = result.expect_err("Redis is down");
        assert!(
            message.contains(&server.url()),
            "the error names the server: {message}"
        );
        assert!(
            started.elapsed() < test_config().timeout + Duration::from_secs(1),
            "failed within the timeout"
        );
    }

    server.restart();
    // The data is gone (no persistence); the engine works again.
    eventually(&engine, publish("c", "x"), Reply::Count(0)).await;
    assert_eq!(
        one(&engine, set_if_absent("k", Duration::from_secs(60))).await,
        Reply::Bool(true)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_at_start_connects_lazily() {
    let mut server = RedisServer::start();
    server.stop();
    let engine = connect(&server.url()).await;
    assert!(
        timeout(WAIT, engine.execute(vec![publish("c", "x")]))
            .await
            .expect("no hang")
            .is_err()
    );
    let mut events = subscriber(&engine);
    assert!(events.subscribe(&["c"]).await.is_err(), "not connected yet");

    server.restart();
    // The first event is Up: no Down while never up.
    events.expect(SubscriberEvent::Up).await;
    eventually(&engine, publish("c", "x"), Reply::Count(1)).await;
    events.expect_message("c", "x").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_frozen_server_is_detected_by_ping() {
    let server = RedisServer::start();
    let engine = connect(&server.url()).await;
    let mut events = subscriber_up(&engine).await;
    events.subscribe(&["c"]).await.expect("subscribed");

    // SIGSTOP: the TCP connections stay open, nothing answers.
    server.pause();
    let started = Instant::now();
    events.expect(SubscriberEvent::Down).await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the lost pong is noticed within ping interval + ping timeout"
    );
    let started = Instant::now();
    let result = timeout(WAIT, engine.execute(vec![publish("c", "x")]))
        .await
        .expect("a batch does not hang on a frozen server");
    assert!(result.is_err(), "no answer is an error: {result:?}");
    assert!(started.elapsed() < test_config().timeout + Duration::from_secs(1));

    server.resume();
    events.expect(SubscriberEvent::Up).await;
    // Redis may still count the old connection until it reads its close.
    let deadline = Instant::now() + WAIT;
    loop {
        match timeout(WAIT, engine.execute(vec![publish("c", "y")])).await {
            Ok(Ok(replies)) if replies == vec![Reply::Count(1)] => break,
            other => assert!(Instant::now() < deadline, "still {other:?}"),
        }
        // Messages to the old connection went nowhere; messages to the new one arrive.
        while let Ok(event) = events.rx.try_recv() {
            assert!(
                matches!(event, SubscriberEvent::Message { .. }),
                "{event:?}"
            );
        }
        sleep(Duration::from_millis(50)).await;
    }
    events.expect_message("c", "y").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_subscriber_stops_when_events_close() {
    let server = RedisServer::start();
    let engine = connect(&server.url()).await;
    let events = subscriber_up(&engine).await;
    events.subscribe(&["c"]).await.expect("subscribed");
    assert_eq!(one(&engine, publish("c", "x")).await, Reply::Count(1));
    let Events { subscriber, rx } = events;
    drop(rx);
    // The task ends and closes its connection, though the front is still held.
    eventually(&engine, publish("c", "x"), Reply::Count(0)).await;
    let stopped = timeout(WAIT, subscriber.subscribe(vec!["d".into()]))
        .await
        .expect("answers");
    assert!(stopped.is_err(), "{stopped:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_unix_socket_urls() {
    let server = RedisServer::start();
    for scheme in ["redis+unix", "unix"] {
        let url = format!("{scheme}://{}", server.socket().display());
        let engine = connect(&url).await;
        assert_eq!(engine.describe(), url);
        let mut events = subscriber_up(&engine).await;
        events.subscribe(&[scheme]).await.expect("subscribed");
        assert_eq!(one(&engine, publish(scheme, "x")).await, Reply::Count(1));
        events.expect_message(scheme, "x").await;
    }
    // The same server over TCP sees the same data.
    let unix = connect(&format!("unix://{}", server.socket().display())).await;
    let tcp = connect(&server.url()).await;
    run(&unix, vec![add_lasting("shared", "m", 7)]).await;
    assert_eq!(one(&tcp, score("shared", "m")).await, Reply::Score(Some(7)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_database_number_in_url() {
    let server = RedisServer::start();
    let db0 = connect(&server.url()).await;
    let db3 = connect(&format!("{}/3", server.url())).await;
    run(&db3, vec![add_lasting("k", "m", 1)]).await;
    assert_eq!(one(&db3, score("k", "m")).await, Reply::Score(Some(1)));
    assert_eq!(one(&db0, score("k", "m")).await, Reply::Score(None));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_malformed_urls_are_rejected() {
    for url in [
        "",
        "not a url",
        "http://127.0.0.1:6379",
        "redis://",
        "redis://127.0.0.1:6379/not-a-number",
        "redis://127.0.0.1:99999",
        "rediss://127.0.0.1:6379#bogus",
    ] {
        let result = timeout(WAIT, RedisEngine::connect_with(url, test_config()))
            .await
            .expect("connect does not hang");
        let Err(EngineError(message)) = result else {
            panic!("{url:?} is accepted");
        };
        assert!(
            message.contains("invalid Redis URL"),
            "{url:?}: unclear error {message:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_describe_hides_the_password() {
    // Nothing listens on port 1: connecting is lazy, describing needs no server.
    let engine = connect("redis://user:secret@127.0.0.1:1/2").await;
    assert_eq!(engine.describe(), "redis://user@127.0.0.1:1/2");
    assert!(!format!("{engine:?}").contains("secret"));
    let EngineError(message) = engine
        .execute(vec![publish("c", "x")])
        .await
        .expect_err("nothing listens");
    assert!(!message.contains("secret"), "{message}");
    assert!(message.contains("redis://user@127.0.0.1:1/2"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_tls_url_against_a_plain_server_is_an_error() {
    // rediss:// goes through rustls; a server without TLS fails the handshake: an error, not a
    // panic (such as rustls finding no crypto provider) and not a hang.
    let server = RedisServer::start();
    let engine = connect(&format!("rediss://127.0.0.1:{}", server.port())).await;
    let result = timeout(WAIT, engine.execute(vec![publish("c", "x")]))
        .await
        .expect("no hang");
    assert!(result.is_err(), "{result:?}");
    let events = subscriber(&engine);
    assert!(events.subscribe(&["c"]).await.is_err());
}
