//! Per-hub series, for the busiest hubs only.
//!
//! Each hub owns a [`HubStats`] (an `Arc` of atomics its handle and its actor share), counted
//! on the hot path like the global counters (once per batch). Nothing ranks or labels them
//! until a scrape: then the `top` busiest hubs — by hub messages since the previous scrape,
//! then by open connections — get a `hub="<name>"` series each and every other hub, and every
//! hub that is gone, is summed under `hub="(other)"`. A tenant with a million hub names thus
//! costs one series per family more than `top`, never a million.
//!
//! Counters stay monotonic through the ranking: a hub labelled on its first scrape shows its
//! whole count; a hub that was already counted under `(other)` when it is promoted keeps what
//! it had there (its own series counts from its promotion); a demoted or gone hub's counts
//! move to `(other)`, which only grows.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};

use parking_lot::Mutex;

use super::families::{Direction, family};

/// The label value of the series summing every hub outside the top.
pub const OTHER_HUBS: &str = "(other)";

/// Default number of hubs with their own series (`metrics.top_hubs`).
pub const DEFAULT_TOP_HUBS: usize = 10;

/// One hub's counters, shared by its handle, its actor and the registry.
#[derive(Debug)]
pub struct HubStats {
    name: Box<str>,
    /// The hub's registered client connections (the hub's own count).
    clients: Arc<AtomicUsize>,
    /// Messages and bytes by [`Direction`].
    messages: [AtomicU64; 2],
    bytes: [AtomicU64; 2],
    groups: AtomicU64,
    users: AtomicU64,
}

impl HubStats {
    /// Stats for a hub whose client count lives in `clients`, not registered anywhere (tests).
    pub fn detached(name: &str, clients: Arc<AtomicUsize>) -> Self {
        Self {
            name: name.into(),
            clients,
            messages: Default::default(),
            bytes: Default::default(),
            groups: AtomicU64::new(0),
            users: AtomicU64::new(0),
        }
    }

    /// Count `messages` hub messages of `bytes` bytes in total, in `direction`.
    #[inline]
    pub fn traffic(&self, direction: Direction, messages: u64, bytes: u64) {
        if messages != 0 {
            self.messages[direction as usize].fetch_add(messages, Relaxed);
        }
        if bytes != 0 {
            self.bytes[direction as usize].fetch_add(bytes, Relaxed);
        }
    }

    /// Record the number of groups and users with members here now (by the hub actor).
    #[inline]
    pub fn set_sizes(&self, groups: usize, users: usize) {
        self.groups.store(groups as u64, Relaxed);
        self.users.store(users as u64, Relaxed);
    }

    fn snapshot(&self) -> Totals {
        Totals {
            messages: [
                self.messages[0].load(Relaxed),
                self.messages[1].load(Relaxed),
            ],
            bytes: [self.bytes[0].load(Relaxed), self.bytes[1].load(Relaxed)],
        }
    }
}

/// A hub's counters at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Totals {
    messages: [u64; 2],
    bytes: [u64; 2],
}

impl Totals {
    fn add(&mut self, o: &Self) {
        for i in 0..2 {
            self.messages[i] += o.messages[i];
            self.bytes[i] += o.bytes[i];
        }
    }

    fn minus(&self, o: &Self) -> Self {
        let mut r = *self;
        for i in 0..2 {
            r.messages[i] = r.messages[i].saturating_sub(o.messages[i]);
            r.bytes[i] = r.bytes[i].saturating_sub(o.bytes[i]);
        }
        r
    }

    fn all_messages(&self) -> u64 {
        self.messages[0] + self.messages[1]
    }
}

/// What the registry remembers of one hub between scrapes.
#[derive(Debug)]
struct Entry {
    stats: Arc<HubStats>,
    /// Its counts at the previous scrape (zero before its first): the ranking's baseline, and
    /// what `(other)` held of it if it was not labelled then.
    prev: Totals,
    /// Labelled now: what it had counted under `(other)` before its promotion.
    base: Option<Totals>,
}

#[derive(Debug, Default)]
struct State {
    live: Vec<Entry>,
    /// Counts of hubs that are gone (every handle dropped).
    retired: Totals,
    /// Prune gone hubs at registration once `live` reaches this length.
    prune_at: usize,
}

/// Every hub's [`HubStats`], and the ranking done at scrape time.
#[derive(Debug)]
pub struct HubRegistry {
    top: AtomicUsize,
    state: Mutex<State>,
}

impl Default for HubRegistry {
    fn default() -> Self {
        Self {
            top: AtomicUsize::new(DEFAULT_TOP_HUBS),
            state: Mutex::default(),
        }
    }
}

impl HubRegistry {
    /// Give at most `top` hubs their own series (`metrics.top_hubs`; 0: none, all are
    /// `(other)`).
    pub fn set_top(&self, top: usize) {
        self.top.store(top, Relaxed);
    }

    /// Register a new hub (when its actor starts).
    pub fn register(&self, name: &str, clients: Arc<AtomicUsize>) -> Arc<HubStats> {
        let stats = Arc::new(HubStats::detached(name, clients));
        let mut s = self.state.lock();
        // Without scrapes, gone hubs are still folded away now and then (amortised O(1)).
        if s.live.len() >= s.prune_at {
            prune(&mut s);
            s.prune_at = (s.live.len() * 2).max(64);
        }
        s.live.push(Entry {
            stats: stats.clone(),
            prev: Totals::default(),
            base: None,
        });
        stats
    }

    /// Write the per-hub families and the group and user gauges; ranks the hubs.
    pub(super) fn render(&self, out: &mut String) {
        let top = self.top.load(Relaxed);
        let mut s = self.state.lock();
        prune(&mut s);
        let State { live, retired, .. } = &mut *s;

        // One row per name (a hub restarted under the same name may briefly have two entries).
        let mut by_name: HashMap<&str, Vec<usize>> = HashMap::with_capacity(live.len());
        for (i, e) in live.iter().enumerate() {
            by_name.entry(&*e.stats.name).or_default().push(i);
        }
        let mut rows: Vec<Row> = by_name
            .into_values()
            .map(|idx| {
                let mut row = Row {
                    hub: live[idx[0]].stats.clone(),
                    idx,
                    recent: 0,
                    clients: 0,
                    groups: 0,
                    users: 0,
                };
                for &i in &row.idx {
                    let e = &live[i];
                    let t = e.stats.snapshot();
                    row.recent += t.all_messages().saturating_sub(e.prev.all_messages());
                    row.clients += e.stats.clients.load(Relaxed) as u64;
                    row.groups += e.stats.groups.load(Relaxed);
                    row.users += e.stats.users.load(Relaxed);
                }
                row
            })
            .collect();
        rows.sort_unstable_by(|a, b| {
            (b.recent, b.clients)
                .cmp(&(a.recent, a.clients))
                .then_with(|| a.hub.name.cmp(&b.hub.name))
        });

        let mut other = *retired;
        let mut other_clients = 0;
        let (mut groups, mut users) = (0, 0);
        let mut labelled: Vec<(String, u64, Totals)> = Vec::with_capacity(top.min(rows.len()));
        for (rank, row) in rows.iter().enumerate() {
            groups += row.groups;
            users += row.users;
            let is_top = rank < top;
            let mut own = Totals::default();
            for &i in &row.idx {
                let e = &mut live[i];
                let t = e.stats.snapshot();
                if is_top {
                    // Promoted now: (other) keeps what it showed of the hub at the previous
                    // scrape (nothing for a hub new since), and the hub's series the rest.
                    let base = *e.base.get_or_insert(e.prev);
                    other.add(&base);
                    own.add(&t.minus(&base));
                } else {
                    e.base = None;
                    other.add(&t);
                }
                e.prev = t;
            }
            if is_top {
                labelled.push((escape(&row.hub.name), row.clients, own));
            } else {
                other_clients += row.clients;
            }
        }
        drop(rows);
        drop(s);

        family(
            out,
            "switchboard_hub_connections",
            "gauge",
            "Client connections open now in each of the busiest hubs (metrics.top_hubs), the rest summed under hub=\"(other)\".",
        );
        for (name, clients, _) in &labelled {
            let _ = writeln!(
                out,
                "switchboard_hub_connections{{hub=\"{name}\"}} {clients}"
            );
        }
        let _ = writeln!(
            out,
            "switchboard_hub_connections{{hub=\"{OTHER_HUBS}\"}} {other_clients}"
        );
        for (metric, help, pick) in [
            (
                "switchboard_hub_messages_total",
                "Hub messages received from (in) and sent to (out) the clients of each of the busiest hubs, the rest and hubs that are gone summed under hub=\"(other)\".",
                (|t: &Totals, d: usize| t.messages[d]) as fn(&Totals, usize) -> u64,
            ),
            (
                "switchboard_hub_bytes_total",
                "Bytes of hub messages received from (in) and sent to (out) the clients of each of the busiest hubs, the rest and hubs that are gone summed under hub=\"(other)\".",
                |t: &Totals, d: usize| t.bytes[d],
            ),
        ] {
            family(out, metric, "counter", help);
            for direction in [Direction::In, Direction::Out] {
                let d = direction as usize;
                for (name, _, totals) in &labelled {
                    let _ = writeln!(
                        out,
                        "{metric}{{hub=\"{name}\",direction=\"{}\"}} {}",
                        direction.label(),
                        pick(totals, d)
                    );
                }
                let _ = writeln!(
                    out,
                    "{metric}{{hub=\"{OTHER_HUBS}\",direction=\"{}\"}} {}",
                    direction.label(),
                    pick(&other, d)
                );
            }
        }
        family(
            out,
            "switchboard_groups",
            "gauge",
            "Groups with at least one member on this node, summed over hubs.",
        );
        let _ = writeln!(out, "switchboard_groups {groups}");
        family(
            out,
            "switchboard_users",
            "gauge",
            "Users with at least one connection on this node, summed over hubs.",
        );
        let _ = writeln!(out, "switchboard_users {users}");
    }
}

/// One hub name's row in a ranking.
struct Row {
    /// One of the name's hubs (for the name).
    hub: Arc<HubStats>,
    idx: Vec<usize>,
    recent: u64,
    clients: u64,
    groups: u64,
    users: u64,
}

/// Fold the hubs only the registry still holds (every handle and the actor are gone: nothing
/// can count into them any more) into `retired`.
fn prune(s: &mut State) {
    let State { live, retired, .. } = s;
    live.retain(|e| {
        if Arc::strong_count(&e.stats) == 1 {
            retired.add(&e.stats.snapshot());
            false
        } else {
            true
        }
    });
}

/// A label value with `\`, `"` and newlines escaped (hub names cannot hold them, but the text
/// format must stay valid whatever a name holds).
fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for ch in value.chars() {
        match ch {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(r: &HubRegistry) -> String {
        let mut out = String::new();
        r.render(&mut out);
        out
    }

    fn value(text: &str, series: &str) -> Option<u64> {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }

    fn hub(r: &HubRegistry, name: &str, messages_in: u64) -> Arc<HubStats> {
        let s = r.register(name, Arc::new(AtomicUsize::new(0)));
        s.traffic(Direction::In, messages_in, messages_in * 10);
        s
    }

    #[test]
    fn only_the_busiest_hubs_get_a_series_and_the_rest_is_summed() {
        let r = HubRegistry::default();
        r.set_top(2);
        let _hubs: Vec<_> = [("a", 5), ("b", 50), ("c", 1), ("d", 20)]
            .into_iter()
            .map(|(n, m)| hub(&r, n, m))
            .collect();
        let text = render(&r);
        let m = |h: &str| {
            value(
                &text,
                &format!("switchboard_hub_messages_total{{hub=\"{h}\",direction=\"in\"}}"),
            )
        };
        assert_eq!(m("b"), Some(50), "{text}");
        assert_eq!(m("d"), Some(20), "{text}");
        assert_eq!(m("a"), None, "{text}");
        assert_eq!(m("c"), None, "{text}");
        assert_eq!(m("(other)"), Some(6), "{text}");
        assert_eq!(
            value(
                &text,
                "switchboard_hub_bytes_total{hub=\"(other)\",direction=\"in\"}"
            ),
            Some(60)
        );
        assert_eq!(
            text.matches("# TYPE switchboard_hub_messages_total counter\n")
                .count(),
            1
        );
    }

    #[test]
    fn promotion_demotion_and_gone_hubs_keep_every_counter_monotonic() {
        let r = HubRegistry::default();
        r.set_top(1);
        let a = hub(&r, "a", 10);
        let b = hub(&r, "b", 1);
        let t1 = render(&r);
        let other = |t: &str| {
            value(
                t,
                "switchboard_hub_messages_total{hub=\"(other)\",direction=\"in\"}",
            )
            .unwrap()
        };
        assert_eq!(other(&t1), 1);
        // b becomes the busiest: promoted, it keeps its 1 under (other) and counts from there.
        b.traffic(Direction::In, 100, 0);
        let t2 = render(&r);
        assert_eq!(
            value(
                &t2,
                "switchboard_hub_messages_total{hub=\"b\",direction=\"in\"}"
            ),
            Some(100)
        );
        assert_eq!(other(&t2), 11, "a demoted: its 10 join (other)");
        // b goes away: its counts fold into (other).
        drop(b);
        a.traffic(Direction::In, 1, 0);
        let t3 = render(&r);
        assert_eq!(
            other(&t3),
            111,
            "b's 101 and a's 10 from before its promotion: {t3}"
        );
        assert_eq!(
            value(
                &t3,
                "switchboard_hub_messages_total{hub=\"a\",direction=\"in\"}"
            ),
            Some(1),
            "a promoted again counts from its promotion"
        );
        assert!(other(&t3) >= other(&t2));
    }

    #[test]
    fn gone_hubs_are_pruned_without_scrapes() {
        let r = HubRegistry::default();
        for i in 0..1000 {
            drop(hub(&r, &format!("h{i}"), 1));
        }
        assert!(r.state.lock().live.len() <= 64);
        let text = render(&r);
        assert_eq!(
            value(
                &text,
                "switchboard_hub_messages_total{hub=\"(other)\",direction=\"in\"}"
            ),
            Some(1000)
        );
    }

    #[test]
    fn groups_users_and_connections_are_summed() {
        let r = HubRegistry::default();
        r.set_top(0);
        let clients = Arc::new(AtomicUsize::new(3));
        let s = r.register("x", clients);
        s.set_sizes(2, 1);
        let text = render(&r);
        assert_eq!(value(&text, "switchboard_groups"), Some(2));
        assert_eq!(value(&text, "switchboard_users"), Some(1));
        assert_eq!(
            value(&text, "switchboard_hub_connections{hub=\"(other)\"}"),
            Some(3)
        );
    }
}
