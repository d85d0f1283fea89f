//! The hub actor's answers to the admin inventory (see [`crate::hub::inventory`]): read-only
//! walks over its maps, bounded by the page.

use super::Hub;
use crate::hub::inventory::{
    ConnectionEntry, Inventory, InventoryQuery, Listed, MAX_GROUPS_PER_CONNECTION, MAX_SERVERS,
    PageRequest, ServerEntry, page_of,
};
use crate::id::{GroupName, UserId};
use crate::peer::ConnHandle;

impl Hub {
    pub(super) fn inventory(&self, query: InventoryQuery) -> Inventory {
        match query {
            InventoryQuery::Connections { page, group, user } => {
                Inventory::Connections(self.list_connections(&page, group.as_ref(), user.as_ref()))
            }
            InventoryQuery::Groups(page) => {
                let listed = page_of(
                    self.groups
                        .iter()
                        .map(|(g, members)| (g.as_str(), members.len())),
                    &page,
                );
                Inventory::Groups(map_listed(listed, |(g, n)| (GroupName::from(g), n)))
            }
            InventoryQuery::Users(page) => {
                let listed = page_of(
                    self.users
                        .iter()
                        .map(|(u, conns)| (u.as_str(), conns.len())),
                    &page,
                );
                Inventory::Users(map_listed(listed, |(u, n)| (UserId::from(u), n)))
            }
            InventoryQuery::Servers => {
                let items: Vec<ServerEntry> = self
                    .servers
                    .iter()
                    .take(MAX_SERVERS)
                    .map(|e| ServerEntry {
                        handle: e.handle.clone(),
                        clients: e.clients,
                        shutting_down: e.shutting_down,
                        node: e.link.as_ref().map(|l| l.node.clone()),
                    })
                    .collect();
                Inventory::Servers(Listed {
                    items,
                    total: self.servers.len(),
                    next: None,
                })
            }
        }
    }

    fn list_connections(
        &self,
        page: &PageRequest,
        group: Option<&GroupName>,
        user: Option<&UserId>,
    ) -> Listed<ConnectionEntry> {
        let listed = match (group, user) {
            (Some(g), _) => {
                let Some(members) = self.groups.get(g) else {
                    return empty();
                };
                page_of(
                    members
                        .values()
                        .filter(|c| user.is_none_or(|u| c.user() == Some(u)))
                        .map(|c| (c.id().as_str(), c)),
                    page,
                )
            }
            (None, Some(u)) => {
                let Some(conns) = self.users.get(u) else {
                    return empty();
                };
                page_of(conns.iter().map(|c| (c.id().as_str(), c)), page)
            }
            (None, None) => page_of(
                self.connections
                    .iter()
                    .map(|(id, e)| (id.as_str(), &e.conn)),
                page,
            ),
        };
        map_listed(listed, |(_, conn)| self.connection_entry(conn))
    }

    fn connection_entry(&self, conn: &ConnHandle) -> ConnectionEntry {
        let groups = self
            .connections
            .get(conn.id())
            .map(|e| e.groups.as_slice())
            .unwrap_or_default();
        let mut listed: Vec<GroupName> = groups
            .iter()
            .take(MAX_GROUPS_PER_CONNECTION)
            .cloned()
            .collect();
        listed.sort();
        ConnectionEntry {
            conn: conn.clone(),
            groups: listed,
            group_count: groups.len(),
        }
    }
}

fn empty<T>() -> Listed<T> {
    Listed {
        items: Vec::new(),
        total: 0,
        next: None,
    }
}

fn map_listed<A, B>(listed: Listed<A>, f: impl FnMut(A) -> B) -> Listed<B> {
    Listed {
        items: listed.items.into_iter().map(f).collect(),
        total: listed.total,
        next: listed.next,
    }
}
