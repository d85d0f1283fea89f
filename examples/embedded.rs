//! Embed Switchboard in an application: start a serverless broker on a free port, print a client
//! URL and token, and broadcast the time every second through the hub client
//! ([`switchboard::SwitchboardHandle::hub`]: direct calls, no REST round trip). This example
//! only shows the embedding API; it must not reach into the broker's internals.
//!
//! Run with `cargo run --example embedded`, then connect a SignalR client to the printed URL
//! with the printed token and listen for `tick` (its arguments: the Unix time and a count).

use std::time::Duration;

use switchboard::{Config, ServiceMode, Switchboard};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
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
    board.stop().await;
    Ok(())
}
