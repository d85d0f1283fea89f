//! Embed Switchboard in an application: start a serverless broker on a free port, print a client
//! URL and token, and broadcast the time every second through the hub API (no REST round trip).
//!
//! Run with `cargo run --example embedded`, then connect a SignalR client to the printed URL
//! with the printed token and listen for `tick`.

use std::sync::Arc;
use std::time::Duration;

use switchboard::hub::SerializedMessage;
use switchboard::{Config, ServiceMode, Switchboard};

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let config = Config {
        mode: ServiceMode::Serverless,
        ..Config::default()
    };
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let board = Switchboard::new(config)?.start(listener)?;
    println!("connection string: {}", board.connection_string());
    println!("client URL:        {}/client/?hub=clock", board.endpoint());
    println!(
        "client token:      {}",
        board.client_token("clock", Some("viewer"), Duration::from_secs(3600))
    );

    let hub = board.shared().hubs.get_or_create("clock");
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let now = switchboard::auth::unix_now();
                let msg = Arc::new(SerializedMessage::invocation("tick", format!("[{now}]").into()));
                if hub.send_all(msg, Vec::new()).await.is_err() {
                    break;
                }
            }
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    board.stop().await;
    Ok(())
}
