//! The hub actor's hub-server side: choosing a client's hub server at admission, routing a
//! frame to an app server's connection, and what a connection's end does to its clients.

use super::{Hub, ServerEntry};
use crate::close::CloseReason;
use crate::cluster::wire::HubOp;
use crate::hub::{AdmitRequest, Refused};
use crate::id::ServerConnId;
use crate::peer::{ConnHandle, Outbox};
use crate::routing::sticky::{self, Candidate, NoServer};
use crate::routing::{self, Admission, ClientRoute};

impl Hub {
    /// Whether a connection of app server `server_id` took `frame`: one of this node's, or
    /// (unless `local_only`) a link to another node's.
    pub(super) fn send_to_server(
        &self,
        server_id: &str,
        frame: &bytes::Bytes,
        local_only: bool,
    ) -> bool {
        let mut servers: Vec<&ServerEntry> = self
            .servers
            .iter()
            .filter(|e| e.handle.server_id() == server_id && !(local_only && e.link.is_some()))
            .collect();
        servers.sort_by_key(|e| e.link.is_some());
        servers
            .iter()
            .any(|e| e.handle.try_send_frame(frame.clone()).is_ok())
    }

    /// Decide a client's route, build its handle and register it.
    /// A connection of another node is a candidate only when none of this node's can take
    /// the client.
    pub(super) fn admit(&mut self, r: AdmitRequest) -> Result<(ConnHandle, ClientRoute), Refused> {
        let takes_clients =
            |e: &ServerEntry| e.handle.connection_type().carries_clients() && !e.shutting_down;
        let local = self
            .servers
            .iter()
            .any(|e| e.link.is_none() && takes_clients(e));
        let candidates: Vec<Candidate<'_>> = self
            .servers
            .iter()
            .map(|e| Candidate {
                server_id: e.handle.server_id(),
                clients: e.clients,
                routable: takes_clients(e) && (e.link.is_none() || !local),
            })
            .collect();
        let any_routable = candidates.iter().any(|c| c.routable);
        let route = match r.policy.admit_client(any_routable) {
            Admission::Accept(route) => route,
            Admission::Reject(text) => {
                return Err(Refused {
                    text,
                    no_server: !any_routable,
                });
            }
        };
        let outbox = Outbox::new(r.outbox_max_messages, r.outbox_max_bytes);
        let conn = match route {
            ClientRoute::ToServer => {
                let index = sticky::choose_server(&candidates, r.sticky_server.as_deref(), r.sticky_mode)
                    .map_err(|e| Refused {
                        text: match e {
                            NoServer::NoneConnected => routing::NO_SERVER_DEFAULT_MODE.to_owned(),
                            NoServer::RequiredServerMissing(name) => format!(
                                "The app server '{name}' this client negotiated with is not connected, and the client requires it (sticky mode Required)."
                            ),
                        },
                        no_server: true,
                    })?;
                let entry = &mut self.servers[index];
                entry.clients += 1;
                ConnHandle::routed(r.id, r.user, r.protocol, outbox, entry.handle.clone())
            }
            _ => ConnHandle::new(r.id, r.user, r.protocol, outbox),
        };
        let conn = conn.with_transport(r.transport);
        self.connect(conn.clone());
        Ok((conn, route))
    }

    pub(super) fn unregister_server(&mut self, id: ServerConnId) {
        let Some(pos) = self.servers.iter().position(|e| e.handle.id() == id) else {
            return;
        };
        let entry = self.servers.remove(pos);
        if entry.link.is_none() {
            tracing::info!(hub = %self.name, server = entry.handle.server_id(), clients = entry.clients, "hub server disconnected");
            if entry.handle.connection_type().carries_clients() {
                let conn = id.0;
                self.publish(|| HubOp::ServerDown { conn });
            }
        }
        for e in self.connections.values() {
            if e.conn.server().is_some_and(|s| s.id() == id) {
                e.conn.close(CloseReason::AppServerGone);
            }
        }
    }
}
