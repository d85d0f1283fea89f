//! A node's three tasks (see [`super`]): the publisher, the reader and the heartbeat. Each holds
//! the node weakly and ends once the node is dropped.

use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use super::{Cluster, Outgoing, Unreachable};
use crate::cluster::engine::{Command, Reply, SubscriberEvent};
use crate::cluster::wire::Body;
use crate::telemetry::Metrics;

/// The publisher task: one batch per engine round trip, in queue order.
pub(super) async fn publisher(
    cluster: std::sync::Weak<Cluster>,
    mut rx: mpsc::UnboundedReceiver<Outgoing>,
) {
    const MAX_BATCH: usize = 512;
    const MAX_BATCH_BYTES: usize = 1024 * 1024;
    let mut items: Vec<Outgoing> = Vec::with_capacity(MAX_BATCH);
    loop {
        items.clear();
        match rx.recv().await {
            Some(first) => items.push(first),
            None => return,
        }
        let mut bytes = 0;
        while items.len() < MAX_BATCH && bytes < MAX_BATCH_BYTES {
            match rx.try_recv() {
                Ok(item) => {
                    if let Outgoing::Message { payload, .. } | Outgoing::Control { payload, .. } =
                        &item
                    {
                        bytes += payload.len();
                    }
                    items.push(item);
                }
                Err(_) => break,
            }
        }
        let Some(cluster) = cluster.upgrade() else {
            return;
        };
        cluster.publish_batch(&mut items).await;
    }
}

impl Cluster {
    async fn publish_batch(&self, items: &mut Vec<Outgoing>) {
        let spans = item_spans(items);
        let mut commands = Vec::with_capacity(items.len());
        let mut released = (0usize, 0usize);
        for item in items.iter_mut() {
            match item {
                Outgoing::Message { channel, payload } => {
                    released.0 += 1;
                    released.1 += payload.len();
                    commands.push(Command::Publish {
                        channel: std::mem::take(channel),
                        payload: payload.clone(),
                    });
                }
                Outgoing::Control { channel, payload } => commands.push(Command::Publish {
                    channel: std::mem::take(channel),
                    payload: payload.clone(),
                }),
                Outgoing::Query {
                    channel,
                    payload,
                    extra,
                    ..
                } => {
                    commands.append(extra);
                    commands.push(Command::Publish {
                        channel: std::mem::take(channel),
                        payload: payload.clone(),
                    });
                }
                Outgoing::Batch { commands: c, .. } => commands.append(c),
            }
        }
        self.queued_messages
            .fetch_sub(released.0, Ordering::Relaxed);
        self.queued_bytes.fetch_sub(released.1, Ordering::Relaxed);
        let published = commands
            .iter()
            .filter(|c| matches!(c, Command::Publish { .. }))
            .count() as u64;
        let result = self.engine.execute(commands).await;
        match result {
            Ok(replies) => {
                Metrics::add(&self.metrics.cluster_published, published);
                let mut at = 0;
                for (item, span) in items.drain(..).zip(spans) {
                    let mine = replies.get(at..at + span).unwrap_or_default();
                    at += span;
                    match item {
                        Outgoing::Message { .. } | Outgoing::Control { .. } => {}
                        Outgoing::Query {
                            request, on_extra, ..
                        } => {
                            let (extra, publish) = mine.split_at(mine.len().saturating_sub(1));
                            let receivers = match publish.first() {
                                Some(Reply::Count(n)) => *n,
                                _ => 0,
                            };
                            // The node's own copy (when it is subscribed) counts as its
                            // answer; it is the local answer, already folded in.
                            let extra_answer = on_extra(extra);
                            self.on_answer(request, None, extra_answer, Some(receivers));
                        }
                        Outgoing::Batch { reply, .. } => {
                            let _ = reply.send(Ok(mine.to_vec()));
                        }
                    }
                }
            }
            Err(e) => {
                Metrics::add(&self.metrics.cluster_publish_failed, published);
                for item in items.drain(..) {
                    match item {
                        Outgoing::Message { .. } | Outgoing::Control { .. } => {}
                        Outgoing::Query { request, .. } => {
                            self.fail_request(request, Unreachable::Engine(e.0.clone()));
                        }
                        Outgoing::Batch { reply, .. } => {
                            let _ = reply.send(Err(e.clone()));
                        }
                    }
                }
            }
        }
    }
}

/// How many commands each item puts in the batch (so that replies go back to their item).
fn item_spans(items: &[Outgoing]) -> Vec<usize> {
    items
        .iter()
        .map(|item| match item {
            Outgoing::Message { .. } | Outgoing::Control { .. } => 1,
            Outgoing::Query { extra, .. } => extra.len() + 1,
            Outgoing::Batch { commands, .. } => commands.len(),
        })
        .collect()
}

/// The reader task.
pub(super) async fn reader(
    cluster: std::sync::Weak<Cluster>,
    mut rx: mpsc::Receiver<SubscriberEvent>,
) {
    while let Some(event) = rx.recv().await {
        let Some(cluster) = cluster.upgrade() else {
            return;
        };
        cluster.on_event(event);
    }
}

/// The heartbeat task: "alive" every interval; nodes not heard from are gone; questions past
/// their deadline fail.
pub(super) async fn heartbeat(cluster: std::sync::Weak<Cluster>) {
    let interval = match cluster.upgrade() {
        Some(c) => c
            .settings
            .heartbeat_interval
            .min(Duration::from_millis(500)),
        None => return,
    };
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_beat: Option<Instant> = None;
    loop {
        tick.tick().await;
        let Some(c) = cluster.upgrade() else {
            return;
        };
        let now = Instant::now();
        if last_beat.is_none_or(|at| now.duration_since(at) >= c.settings.heartbeat_interval) {
            last_beat = Some(now);
            let payload = c.envelope(Body::Heartbeat);
            let channel = c.ctl_channel();
            let _ = c.outgoing.send(Outgoing::Control { channel, payload });
        }
        if c.is_up() {
            let gone: Vec<String> = c
                .nodes
                .lock()
                .iter()
                .filter(|(_, seen)| now.duration_since(**seen) >= c.settings.node_timeout)
                .map(|(n, _)| n.clone())
                .collect();
            for node in gone {
                c.node_gone(&node);
            }
        }
        let expired: Vec<u64> = c
            .pending
            .lock()
            .waiting
            .iter()
            .filter(|(_, w)| w.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            c.fail_request(id, Unreachable::Timeout(c.settings.request_timeout));
        }
    }
}
