//! The live trace: viewers that receive events as they happen, each through its own filter and
//! a bounded queue.
//!
//! A viewer's queue holds at most [`QUEUE_EVENTS`] events and [`QUEUE_BYTES`] bytes. When it is
//! full (the viewer reads slower than events happen) new events are **dropped for that viewer**
//! and counted; the viewer is told how many before its next event (`event: dropped`). Nothing
//! waits for a viewer, so a slow one costs the broker nothing but its queue. At most
//! [`MAX_VIEWERS`] viewers are attached at once; a viewer is detached when its [`Watch`] is
//! dropped (its HTTP response ended).

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::{BufMut, Bytes, BytesMut};
use parking_lot::Mutex;
use tokio::sync::Notify;

use super::{Category, Event, Events};

/// Viewers attached at once, at most.
pub const MAX_VIEWERS: usize = 8;
/// Events a viewer's queue holds, at most.
pub const QUEUE_EVENTS: usize = 1024;
/// Bytes a viewer's queue holds, at most.
pub const QUEUE_BYTES: usize = 1 << 20;

/// What a viewer wants: categories (all when empty), and optionally one hub, connection or user.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TraceFilter {
    /// The categories; empty means all.
    pub categories: Vec<Category>,
    /// Only events of this hub.
    pub hub: Option<String>,
    /// Only events of this connection.
    pub connection_id: Option<String>,
    /// Only events of this user.
    pub user_id: Option<String>,
}

impl TraceFilter {
    fn wants_category(&self, category: Category) -> bool {
        self.categories.is_empty() || self.categories.contains(&category)
    }

    /// Whether `event` passes: an event without the filtered field does not.
    fn takes(&self, category: Category, event: &Event<'_>) -> bool {
        fn matches(want: &Option<String>, have: Option<&str>) -> bool {
            want.as_deref().is_none_or(|w| have == Some(w))
        }
        self.wants_category(category)
            && matches(&self.hub, event.hub)
            && matches(&self.connection_id, event.connection_id)
            && matches(&self.user_id, event.user_id)
    }
}

#[derive(Debug, Default)]
struct Queue {
    lines: VecDeque<Bytes>,
    bytes: usize,
    /// Events dropped for this viewer so far.
    dropped: u64,
    /// `dropped` when the viewer was last told.
    told: u64,
}

/// One attached viewer.
#[derive(Debug)]
pub struct Viewer {
    filter: TraceFilter,
    queue: Mutex<Queue>,
    ready: Notify,
    /// The broker-wide count of events dropped for viewers.
    dropped_total: Arc<AtomicU64>,
}

impl Viewer {
    /// Queue one serialized event, or drop it when the queue is full.
    pub(super) fn push(&self, line: &Bytes) {
        {
            let mut q = self.queue.lock();
            if q.lines.len() >= QUEUE_EVENTS || q.bytes + line.len() > QUEUE_BYTES {
                q.dropped += 1;
                self.dropped_total.fetch_add(1, Ordering::Relaxed);
                return;
            }
            q.bytes += line.len();
            q.lines.push_back(line.clone());
        }
        self.ready.notify_one();
    }

    /// Everything queued, as Server-Sent Events in one buffer: first how many events were
    /// dropped since the viewer was last told (if any), then each event as `data:`.
    fn take_sse(&self) -> Option<Bytes> {
        let mut q = self.queue.lock();
        if q.lines.is_empty() && q.dropped == q.told {
            return None;
        }
        let mut out = BytesMut::with_capacity(q.bytes + q.lines.len() * 8 + 48);
        if q.dropped != q.told {
            out.put_slice(b"event: dropped\ndata: {\"dropped\":");
            out.put_slice(q.dropped.to_string().as_bytes());
            out.put_slice(b"}\n\n");
            q.told = q.dropped;
        }
        for line in q.lines.drain(..) {
            out.put_slice(b"data: ");
            // The line ends with '\n'; one more ends the event.
            out.put_slice(&line);
            out.put_slice(b"\n");
        }
        q.bytes = 0;
        Some(out.freeze())
    }
}

/// The attached viewers.
#[derive(Debug, Default)]
pub(super) struct Viewers {
    list: Mutex<Vec<Arc<Viewer>>>,
    dropped: Arc<AtomicU64>,
}

impl Viewers {
    pub(super) fn len(&self) -> usize {
        self.list.lock().len()
    }

    pub(super) fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Which categories some viewer watches.
    pub(super) fn categories(&self) -> [bool; 3] {
        let list = self.list.lock();
        Category::ALL.map(|c| list.iter().any(|v| v.filter.wants_category(c)))
    }

    /// The viewers that take `event`.
    pub(super) fn interested(&self, category: Category, event: &Event<'_>) -> Vec<Arc<Viewer>> {
        let list = self.list.lock();
        if list.is_empty() {
            return Vec::new();
        }
        list.iter()
            .filter(|v| v.filter.takes(category, event))
            .cloned()
            .collect()
    }

    pub(super) fn attach(&self, events: Arc<Events>, filter: TraceFilter) -> Option<Watch> {
        let mut list = self.list.lock();
        if list.len() >= MAX_VIEWERS {
            return None;
        }
        let viewer = Arc::new(Viewer {
            filter,
            queue: Mutex::default(),
            ready: Notify::new(),
            dropped_total: self.dropped.clone(),
        });
        list.push(viewer.clone());
        Some(Watch { events, viewer })
    }

    fn detach(&self, viewer: &Arc<Viewer>) {
        self.list.lock().retain(|v| !Arc::ptr_eq(v, viewer));
    }
}

/// An attached viewer; detached when dropped.
#[derive(Debug)]
pub struct Watch {
    events: Arc<Events>,
    viewer: Arc<Viewer>,
}

impl Watch {
    /// The next batch of events as Server-Sent Events (waits for at least one). Cancel-safe.
    pub async fn next_sse(&self) -> Bytes {
        loop {
            let ready = self.viewer.ready.notified();
            if let Some(chunk) = self.viewer.take_sse() {
                return chunk;
            }
            ready.await;
        }
    }

    /// Events dropped for this viewer so far.
    pub fn dropped(&self) -> u64 {
        self.viewer.queue.lock().dropped
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.events.viewers.detach(&self.viewer);
        self.events.recompute();
    }
}
