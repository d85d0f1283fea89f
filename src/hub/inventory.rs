//! What a hub holds, as the admin inventory lists it: its connections (with their groups and
//! hub server), groups, users and hub-server connections, one bounded page at a time.
//!
//! Pages are ordered by name (connection id, group, user) and continue after the last name of
//! the previous page, so a page is stable while connections come and go. The hub actor answers
//! from its own maps: picking the page's `limit` smallest names after the cursor is one pass
//! with a bounded heap (O(n log limit)), no sort of the whole hub and no copy of it. This node's
//! connections only: in a cluster the other nodes are not asked.

use std::collections::BinaryHeap;

use crate::id::{GroupName, UserId};
use crate::peer::{ConnHandle, ServerConnHandle};

/// The most entries one page holds.
pub(crate) const MAX_PAGE: usize = 500;

/// The most groups listed for one connection (its group count is given besides).
pub(crate) const MAX_GROUPS_PER_CONNECTION: usize = 50;

/// The most hub-server connections listed for one hub.
pub(crate) const MAX_SERVERS: usize = 1000;

/// Where a page starts and how long it is.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct PageRequest {
    /// The last name of the previous page (exclusive).
    pub(crate) after: Option<String>,
    /// Entries wanted, at most [`MAX_PAGE`].
    pub(crate) limit: usize,
}

/// What to list.
#[derive(Clone, Debug)]
pub(crate) enum InventoryQuery {
    /// Connections, all of them or one group's or one user's.
    Connections {
        /// The page.
        page: PageRequest,
        /// Only this group's members.
        group: Option<GroupName>,
        /// Only this user's connections.
        user: Option<UserId>,
    },
    /// Groups with their member counts.
    Groups(PageRequest),
    /// Users with their connection counts.
    Users(PageRequest),
    /// Hub-server connections (at most [`MAX_SERVERS`]).
    Servers,
}

/// One page of a listing.
#[derive(Clone, Debug)]
pub(crate) struct Listed<T> {
    /// The entries, in name order.
    pub(crate) items: Vec<T>,
    /// Entries in the whole listing (not only after the cursor).
    pub(crate) total: usize,
    /// The name to continue after, when more entries follow this page.
    pub(crate) next: Option<String>,
}

/// A connection as listed.
#[derive(Clone, Debug)]
pub(crate) struct ConnectionEntry {
    /// The connection (id, user, protocol, transport, hub server, connect time).
    pub(crate) conn: ConnHandle,
    /// Its groups, at most [`MAX_GROUPS_PER_CONNECTION`], sorted.
    pub(crate) groups: Vec<GroupName>,
    /// How many groups it is in.
    pub(crate) group_count: usize,
}

/// A hub-server connection as listed.
#[derive(Clone, Debug)]
pub(crate) struct ServerEntry {
    /// The connection.
    pub(crate) handle: ServerConnHandle,
    /// Clients routed through it.
    pub(crate) clients: usize,
    /// It announced a graceful shutdown.
    pub(crate) shutting_down: bool,
    /// The node it is connected to, when it is another node's (a cluster link).
    pub(crate) node: Option<String>,
}

/// A hub's answer.
#[derive(Clone, Debug)]
pub(crate) enum Inventory {
    /// Connections.
    Connections(Listed<ConnectionEntry>),
    /// (group, members).
    Groups(Listed<(GroupName, usize)>),
    /// (user, connections).
    Users(Listed<(UserId, usize)>),
    /// Hub-server connections.
    Servers(Listed<ServerEntry>),
}

/// The page of `items` (name, value) that `page` asks for: the `page.limit` (at most
/// [`MAX_PAGE`]) smallest names after `page.after`, in order, with the count of every item
/// and the cursor of the next page. Names are unique.
pub(crate) fn page_of<'a, T>(
    items: impl Iterator<Item = (&'a str, T)>,
    page: &PageRequest,
) -> Listed<(&'a str, T)> {
    let limit = page.limit.clamp(1, MAX_PAGE);
    // A max-heap of the `limit + 1` smallest names after the cursor (one more tells whether a
    // next page exists).
    let mut heap: BinaryHeap<Keyed<'a, T>> = BinaryHeap::with_capacity(limit + 2);
    let mut total = 0;
    for (name, value) in items {
        total += 1;
        if page.after.as_deref().is_some_and(|after| name <= after) {
            continue;
        }
        if heap.len() <= limit {
            heap.push(Keyed(name, value));
        } else if heap.peek().is_some_and(|top| name < top.0) {
            heap.pop();
            heap.push(Keyed(name, value));
        }
    }
    let mut sorted: Vec<(&'a str, T)> = heap
        .into_sorted_vec()
        .into_iter()
        .map(|k| (k.0, k.1))
        .collect();
    let more = sorted.len() > limit;
    sorted.truncate(limit);
    let next = if more {
        sorted.last().map(|(name, _)| (*name).to_owned())
    } else {
        None
    };
    Listed {
        items: sorted,
        total,
        next,
    }
}

/// An item ordered by its name only.
struct Keyed<'a, T>(&'a str, T);

impl<T> PartialEq for Keyed<'_, T> {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}
impl<T> Eq for Keyed<'_, T> {}
impl<T> PartialOrd for Keyed<'_, T> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl<T> Ord for Keyed<'_, T> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.cmp(other.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(listed: &Listed<(&str, ())>) -> Vec<String> {
        listed.items.iter().map(|(n, ())| (*n).to_owned()).collect()
    }

    #[test]
    fn pages_walk_every_name_once_in_order() {
        let all: Vec<String> = (0..23).rev().map(|i| format!("c{i:02}")).collect();
        let mut page = PageRequest {
            after: None,
            limit: 10,
        };
        let mut seen = Vec::new();
        loop {
            let listed = page_of(all.iter().map(|n| (n.as_str(), ())), &page);
            assert_eq!(listed.total, 23);
            assert!(listed.items.len() <= 10);
            seen.extend(names(&listed));
            match listed.next {
                Some(next) => page.after = Some(next),
                None => break,
            }
        }
        let mut expected = all.clone();
        expected.sort();
        assert_eq!(seen, expected);
    }

    #[test]
    fn limits_are_clamped_and_an_exact_fit_has_no_next_page() {
        let all: Vec<String> = (0..3).map(|i| format!("u{i}")).collect();
        let listed = page_of(
            all.iter().map(|n| (n.as_str(), ())),
            &PageRequest {
                after: None,
                limit: 3,
            },
        );
        assert_eq!(names(&listed), ["u0", "u1", "u2"]);
        assert_eq!(listed.next, None);
        let zero = page_of(
            all.iter().map(|n| (n.as_str(), ())),
            &PageRequest::default(),
        );
        assert_eq!(names(&zero), ["u0"], "a limit of 0 counts as 1");
        assert_eq!(zero.next.as_deref(), Some("u0"));
        let many: Vec<String> = (0..MAX_PAGE + 5).map(|i| format!("{i:05}")).collect();
        let capped = page_of(
            many.iter().map(|n| (n.as_str(), ())),
            &PageRequest {
                after: None,
                limit: usize::MAX,
            },
        );
        assert_eq!(capped.items.len(), MAX_PAGE);
        assert_eq!(capped.total, MAX_PAGE + 5);
    }
}
