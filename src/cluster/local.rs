//! An in-process [`Engine`]: several nodes in one process share one `LocalEngine` (clones share
//! its state), so unit tests run a cluster without Redis. It behaves as one Redis server would
//! for the command set the cluster uses, including [`LocalEngine::set_down`] to play an outage.
//!
//! Not for production: per-subscriber queues are unbounded (a test's subscribers keep up).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use tokio::sync::mpsc;

use super::engine::{BoxFuture, Command, Engine, EngineError, Reply, Subscriber, SubscriberEvent};

/// The in-process engine; clones are the same engine.
#[derive(Clone, Debug, Default)]
pub struct LocalEngine {
    inner: Arc<Mutex<State>>,
}

#[derive(Debug, Default)]
struct State {
    down: bool,
    flags: HashMap<String, Instant>,
    sorted: HashMap<String, Sorted>,
    subscribers: Vec<Sub>,
    next_sub: u64,
}

#[derive(Debug, Default)]
struct Sorted {
    scores: HashMap<String, i64>,
    expire_at_ms: i64,
}

#[derive(Debug)]
struct Sub {
    id: u64,
    channels: HashSet<String>,
    tx: mpsc::UnboundedSender<SubscriberEvent>,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

impl LocalEngine {
    /// A new, empty engine.
    pub fn new() -> Self {
        Self::default()
    }

    /// Play an outage (`true`) or its end: while down, batches fail and subscribers report
    /// [`SubscriberEvent::Down`]; when up again they report [`SubscriberEvent::Up`] with their
    /// subscriptions kept. Messages published meanwhile are lost, as with Redis.
    pub fn set_down(&self, down: bool) {
        let mut state = self.inner.lock();
        if state.down == down {
            return;
        }
        state.down = down;
        let event = if down {
            SubscriberEvent::Down
        } else {
            SubscriberEvent::Up
        };
        state
            .subscribers
            .retain(|s| s.tx.send(event.clone()).is_ok());
    }

    /// Subscribers subscribed to `channel` now.
    pub fn subscribers_of(&self, channel: &str) -> usize {
        let state = self.inner.lock();
        state
            .subscribers
            .iter()
            .filter(|s| !s.tx.is_closed() && s.channels.contains(channel))
            .count()
    }

    fn run(state: &mut State, cmd: Command) -> Reply {
        let now = now_ms();
        state.sorted.retain(|_, s| s.expire_at_ms > now);
        match cmd {
            Command::Publish { channel, payload } => {
                let mut receivers = 0;
                state.subscribers.retain(|s| {
                    if !s.channels.contains(&channel) {
                        return !s.tx.is_closed();
                    }
                    let sent =
                        s.tx.send(SubscriberEvent::Message {
                            channel: channel.clone(),
                            payload: payload.clone(),
                        })
                        .is_ok();
                    receivers += u64::from(sent);
                    sent
                });
                Reply::Count(receivers)
            }
            Command::SetIfAbsent { key, ttl } => {
                let at = Instant::now();
                state.flags.retain(|_, until| *until > at);
                let absent = !state.flags.contains_key(&key);
                if absent {
                    state
                        .flags
                        .insert(key, at + ttl.max(Duration::from_millis(1)));
                }
                Reply::Bool(absent)
            }
            Command::SortedAdd {
                key,
                member,
                score,
                expire_at_ms,
            } => {
                let set = state.sorted.entry(key).or_default();
                set.scores.insert(member, score);
                set.expire_at_ms = set.expire_at_ms.max(expire_at_ms);
                Reply::Done
            }
            Command::SortedKeepHighest { key, keep } => {
                if let Some(set) = state.sorted.get_mut(&key)
                    && set.scores.len() > keep
                {
                    let mut by_score: Vec<(i64, String)> =
                        set.scores.drain().map(|(m, s)| (s, m)).collect();
                    by_score.sort();
                    let cut = by_score.len() - keep;
                    set.scores = by_score
                        .into_iter()
                        .skip(cut)
                        .map(|(s, m)| (m, s))
                        .collect();
                }
                Reply::Done
            }
            Command::SortedRemove { key, member } => {
                if let Some(set) = state.sorted.get_mut(&key) {
                    set.scores.remove(&member);
                    if set.scores.is_empty() {
                        state.sorted.remove(&key);
                    }
                }
                Reply::Done
            }
            Command::SortedRangeFrom { key, min } => {
                let mut members: BTreeSet<(i64, String)> = BTreeSet::new();
                if let Some(set) = state.sorted.get(&key) {
                    members.extend(
                        set.scores
                            .iter()
                            .filter(|(_, s)| **s >= min)
                            .map(|(m, s)| (*s, m.clone())),
                    );
                }
                Reply::Members(members.into_iter().map(|(s, m)| (m, s)).collect())
            }
            Command::SortedScore { key, member } => Reply::Score(
                state
                    .sorted
                    .get(&key)
                    .and_then(|set| set.scores.get(&member).copied()),
            ),
            Command::Delete { key } => {
                state.sorted.remove(&key);
                state.flags.remove(&key);
                Reply::Done
            }
        }
    }
}

impl Engine for LocalEngine {
    fn execute(&self, batch: Vec<Command>) -> BoxFuture<'_, Result<Vec<Reply>, EngineError>> {
        let result = {
            let mut state = self.inner.lock();
            if state.down {
                Err(EngineError(
                    "in-process engine is down (test outage)".into(),
                ))
            } else {
                Ok(batch
                    .into_iter()
                    .map(|cmd| Self::run(&mut state, cmd))
                    .collect())
            }
        };
        Box::pin(async move {
            // A round trip yields, as a network engine would.
            tokio::task::yield_now().await;
            result
        })
    }

    fn subscriber(&self, events: mpsc::Sender<SubscriberEvent>) -> Box<dyn Subscriber> {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let id = {
            let mut state = self.inner.lock();
            state.next_sub += 1;
            let id = state.next_sub;
            let _ = tx.send(if state.down {
                SubscriberEvent::Down
            } else {
                SubscriberEvent::Up
            });
            state.subscribers.push(Sub {
                id,
                channels: HashSet::new(),
                tx,
            });
            id
        };
        let engine = self.clone();
        tokio::spawn(async move {
            while let Some(event) = rx.recv().await {
                if events.send(event).await.is_err() {
                    break;
                }
            }
            engine.inner.lock().subscribers.retain(|s| s.id != id);
        });
        Box::new(LocalSubscriber {
            engine: self.clone(),
            id,
        })
    }

    fn describe(&self) -> String {
        "in-process".to_owned()
    }
}

#[derive(Debug)]
struct LocalSubscriber {
    engine: LocalEngine,
    id: u64,
}

impl Subscriber for LocalSubscriber {
    fn subscribe(&self, channels: Vec<String>) -> BoxFuture<'_, Result<(), EngineError>> {
        let result = {
            let mut state = self.engine.inner.lock();
            let down = state.down;
            match state.subscribers.iter_mut().find(|s| s.id == self.id) {
                Some(sub) => {
                    sub.channels.extend(channels);
                    if down {
                        Err(EngineError(
                            "in-process engine is down (test outage)".into(),
                        ))
                    } else {
                        Ok(())
                    }
                }
                None => Err(EngineError("subscriber stopped".into())),
            }
        };
        Box::pin(async move { result })
    }

    fn unsubscribe(&self, channels: Vec<String>) {
        let mut state = self.engine.inner.lock();
        if let Some(sub) = state.subscribers.iter_mut().find(|s| s.id == self.id) {
            for c in &channels {
                sub.channels.remove(c);
            }
        }
    }
}
