//! The persistent transport: one [`HubServer`] of Weak server connections per hub
//! (`connectionType` 2, `docs/protocol.md#connection-types`), started on the hub's first
//! operation and kept until the client shuts down — the Management SDK's persistent mode.
//!
//! The service routes no client to a Weak connection; the hub server only sends
//! (`docs/protocol.md#what-the-sdk-sends`) and asks (the `*WithAck` checks and group
//! operations).

use std::collections::HashMap;
use std::time::Duration;

use parking_lot::Mutex;

use super::ManagementError;
use crate::connection_string::hub_url_name;
use crate::{ConnectionString, Hub, HubServer};

/// The Weak hub servers of one client, by service hub name (`<app>_<hub>`, lower-cased).
#[derive(Debug)]
pub(super) struct Pool {
    connection_string: ConnectionString,
    connection_count: usize,
    connect_timeout: Duration,
    ca_file: Option<std::path::PathBuf>,
    servers: Mutex<HashMap<String, HubServer>>,
}

impl Pool {
    pub(super) fn new(
        connection_string: ConnectionString,
        connection_count: usize,
        connect_timeout: Duration,
        ca_file: Option<std::path::PathBuf>,
    ) -> Self {
        Self {
            connection_string,
            connection_count: connection_count.max(1),
            connect_timeout,
            ca_file,
            servers: Mutex::new(HashMap::new()),
        }
    }

    /// The hub server of `hub` (started on first use), once at least one of its connections is
    /// up (waiting at most the connect timeout).
    pub(super) async fn server(
        &self,
        hub: &str,
        application: Option<&str>,
    ) -> Result<HubServer, ManagementError> {
        let key = hub_url_name(hub, application);
        let server = {
            let mut servers = self.servers.lock();
            match servers.get(&key) {
                Some(server) => server.clone(),
                None => {
                    let mut builder = HubServer::builder(
                        self.connection_string.clone(),
                        hub,
                        Hub::builder().build(),
                    )
                    .weak(true)
                    .connection_count(self.connection_count);
                    if let Some(app) = application.filter(|a| !a.is_empty()) {
                        builder = builder.application_name(app);
                    }
                    if let Some(path) = &self.ca_file {
                        builder = builder.ca_file(path.clone());
                    }
                    let server = builder.start()?;
                    servers.insert(key, server.clone());
                    server
                }
            }
        };
        server.wait_connected(1, self.connect_timeout).await?;
        Ok(server)
    }

    /// Takes every hub server out of the pool (to be stopped).
    pub(super) fn take_all(&self) -> Vec<HubServer> {
        self.servers.lock().drain().map(|(_, s)| s).collect()
    }
}
