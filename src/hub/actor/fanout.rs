//! A hub's fan-out: handing one encoded message to each recipient's outbox (or, while the hub
//! is calm, writing it straight to the sockets they lent; see [`super::direct`]) and counting
//! what happened once per fan-out.

use super::Hub;
use crate::hub::SerializedMessage;
use crate::id::{ConnectionId, GroupName, UserId};
use crate::peer::{ConnHandle, PushError, Pushed};
use crate::telemetry::{Direction, Endpoint, Metrics};

/// Per-fan-out tallies, added to the metrics once.
#[derive(Default)]
pub(super) struct Tally {
    delivered: u64,
    overflowed: u64,
    dropped: u64,
    /// Delivered by a direct write to the connection's socket.
    written: u64,
    /// Bytes delivered (queued or written).
    bytes: u64,
}

impl Hub {
    /// A hub server's bytes for a client of this node (routed to it from here or over a
    /// link): the first is the client's handshake answer, after which it is ready for
    /// multicasts. Whether the client is here.
    pub(super) fn connection_data(&self, id: &ConnectionId, payload: bytes::Bytes) -> bool {
        let Some(e) = self.connections.get(id) else {
            return false;
        };
        let mut t = Tally::default();
        let len = payload.len() as u64;
        match e.conn.outbox().push(payload) {
            Ok(()) => {
                t.delivered += 1;
                t.bytes += len;
            }
            Err(PushError::Full) => t.overflowed += 1,
            Err(PushError::Closed) => t.dropped += 1,
        }
        if !e.conn.is_ready() {
            e.conn.mark_ready();
        }
        self.count(t);
        true
    }

    pub(super) fn send_all(&self, msg: &SerializedMessage, excluded: &[ConnectionId]) {
        let mut t = Tally::default();
        for (id, e) in &self.connections {
            if !excluded.contains(id) {
                deliver(&e.conn, msg, &mut t, self.direct);
            }
        }
        self.count(t);
    }

    /// Whether the connection is here.
    pub(super) fn send_connection(&self, id: &ConnectionId, msg: &SerializedMessage) -> bool {
        let mut t = Tally::default();
        let found = match self.connections.get(id) {
            Some(e) => {
                deliver(&e.conn, msg, &mut t, self.direct);
                true
            }
            None => false,
        };
        self.count(t);
        found
    }

    pub(super) fn send_users(&self, users: &[UserId], msg: &SerializedMessage) {
        let mut t = Tally::default();
        for user in users {
            for conn in self.users.get(user).into_iter().flatten() {
                deliver(conn, msg, &mut t, self.direct);
            }
        }
        self.count(t);
    }

    pub(super) fn send_group(
        &self,
        group: &GroupName,
        msg: &SerializedMessage,
        excluded: &[ConnectionId],
        excluded_users: &[UserId],
    ) {
        let mut t = Tally::default();
        for (id, conn) in self.groups.get(group).into_iter().flatten() {
            let user_excluded = !excluded_users.is_empty()
                && conn.user().is_some_and(|u| excluded_users.contains(u));
            if !excluded.contains(id) && !user_excluded {
                deliver(conn, msg, &mut t, self.direct);
            }
        }
        self.count(t);
    }

    pub(super) fn send_groups(&self, groups: &[GroupName], msg: &SerializedMessage) {
        let mut t = Tally::default();
        let mut seen = std::collections::HashSet::new();
        for group in groups {
            for (id, conn) in self.groups.get(group).into_iter().flatten() {
                if seen.insert(id.clone()) {
                    deliver(conn, msg, &mut t, self.direct);
                }
            }
        }
        self.count(t);
    }

    pub(super) fn count(&self, t: Tally) {
        Metrics::add(&self.metrics.messages_delivered, t.delivered);
        Metrics::add(&self.metrics.outbox_overflow, t.overflowed);
        Metrics::add(&self.metrics.outbox_dropped, t.dropped + t.overflowed);
        Metrics::add(&self.metrics.socket_writes, t.written);
        Metrics::add(&self.metrics.direct_writes, t.written);
        // Counted here, once per fan-out by the hub's own task, rather than by each
        // connection's task as it writes: no shared counter is touched per recipient.
        let labelled = &self.metrics.labelled;
        labelled.traffic(Endpoint::Client, Direction::Out, t.delivered, t.bytes);
        self.stats.traffic(Direction::Out, t.delivered, t.bytes);
    }
}

/// Hand `msg` to one connection: queued, or (`direct`) written to its socket if it is lent.
#[inline]
pub(super) fn deliver(conn: &ConnHandle, msg: &SerializedMessage, t: &mut Tally, direct: bool) {
    if !conn.is_ready() {
        // Nothing may reach a client before its handshake answer.
        return;
    }
    match msg.bytes_for(conn.protocol()) {
        Some(bytes) => match if direct {
            conn.outbox().push_or_write(bytes.clone())
        } else {
            conn.outbox().push(bytes.clone()).map(|()| Pushed::Queued)
        } {
            Ok(pushed) => {
                t.delivered += 1;
                t.bytes += bytes.len() as u64;
                t.written += u64::from(pushed == Pushed::Written);
            }
            Err(PushError::Full) => t.overflowed += 1,
            Err(PushError::Closed) => t.dropped += 1,
        },
        None => t.dropped += 1,
    }
}
