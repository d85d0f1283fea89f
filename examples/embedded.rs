//! Embed Switchboard in an application: start a broker on a free port, serve its `clock` hub in
//! this process with the SDK's `Hub` builder ([`switchboard::SwitchboardHandle::hub_server`]:
//! no socket, no HTTP upstream), and broadcast the time every second through the hub client
//! ([`switchboard::SwitchboardHandle::hub`]: direct calls, no REST round trip). This example
//! only shows the embedding API; it must not reach into the broker's internals.
//!
//! Run with `cargo run --example embedded`, then connect a SignalR client to the printed URL
//! with the printed token: it is greeted with `welcome`, gets `tick` every second (the Unix time
//! and a count) and can invoke `Now`.

use std::time::Duration;

use switchboard::{Config, Switchboard};
use switchboard_sdk::{Context, Hub, HubError};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Default mode (as Azure's default): clients of a hub are served by its hub server, here
    // one running in this process.
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let board = Switchboard::new(Config::default())?.start(listener)?;

    let hub = Hub::builder()
        .on_connected(|ctx: Context| async move {
            let user = ctx.user_id().unwrap_or("anonymous").to_owned();
            ctx.clients().caller().send("welcome", (user,)).await?;
            Ok(())
        })
        .method("Now", |_ctx: Context, (): ()| async move {
            Ok::<_, HubError>(switchboard::auth::unix_now())
        })
        .build();
    let server = board
        .hub_server("clock", hub)?
        .connection_count(1)
        .start()?;
    server.wait_connected(1, Duration::from_secs(10)).await?;

    println!("connection string: {}", board.connection_string());
    println!("client URL:        {}/client/?hub=clock", board.endpoint());
    println!(
        "client token:      {}",
        board.client_token("clock", Some("viewer"), Duration::from_secs(3600))
    );

    let clock = board.hub("clock")?;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut count: u64 = 0;
    loop {
        tokio::select! {
            _ = tick.tick() => {
                count += 1;
                let now = switchboard::auth::unix_now();
                if let Err(e) = clock.send_all("tick", (now, count), &[]).await {
                    eprintln!("stopping: {e}");
                    break;
                }
            }
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    server.stop().await;
    board.stop().await;
    Ok(())
}
