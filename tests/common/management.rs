//! The management client's side of the tests: a Serverless broker with the connection string an
//! app would be given, clients connected through the management client's negotiate redirect, and
//! checks of what they receive. Used by the SDK's management tests and the `switchboard send`
//! tests.

use std::time::Duration;

use switchboard::{ServiceMode, SwitchboardHandle};
use switchboard_sdk::ConnectionString;
use switchboard_sdk::management::ManagementHub;

use super::TestClient;

pub const T: Duration = Duration::from_secs(5);

pub struct Env {
    pub handle: SwitchboardHandle,
    pub base: String,
    pub cs: ConnectionString,
    pub cs_text: String,
}

/// A Serverless broker and the connection string an app would be given for it.
pub async fn setup() -> Env {
    let (handle, base, key) = super::start(ServiceMode::Serverless).await;
    let port = handle.local_addr().port();
    let cs_text = format!("Endpoint=http://127.0.0.1;Port={port};AccessKey={key};Version=1.0;");
    Env {
        handle,
        base,
        cs: cs_text.parse().expect("valid connection string"),
        cs_text,
    }
}

/// A client of `hub` for `user`, connected with the token of the management client's negotiate
/// redirect (whose URL must point at the broker's `/client/?hub=<service hub>`).
pub async fn client(
    env: &Env,
    hub: &ManagementHub,
    user: Option<&str>,
    protocol: &str,
) -> TestClient {
    let redirect = hub.negotiate(user, &[], Duration::from_secs(600));
    assert_eq!(
        redirect.url,
        format!("{}/client/?hub={}", env.base, hub.name())
    );
    TestClient::connect(&env.base, hub.name(), &redirect.access_token, protocol)
        .await
        .unwrap_or_else(|e| panic!("{protocol} client of {user:?} connects: {e:#}"))
}

/// Nothing is queued for `client`: a marker sent to it now is the next message it gets.
pub async fn quiet(hub: &ManagementHub, client: &mut TestClient) {
    let id = client.connection_id().to_owned();
    hub.send_connection(&id, "marker", (id.as_str(),))
        .await
        .expect("marker send");
    super::expect_marker(client).await;
}
