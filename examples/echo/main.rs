//! An echo hub server for hub `echo`, built with the Rust hub-server SDK (`switchboard_sdk`):
//! the app side of Default mode, and the target of the load generator.
//!
//! Hub methods (all take one payload of any JSON / MessagePack shape except binary):
//!
//! - `Echo(payload)`: sends `echo(payload)` back to the caller (`Clients.Client(self)`), returns
//!   nothing;
//! - `EchoReturn(payload)`: returns the payload;
//! - `Broadcast(payload)`: sends `broadcast(payload)` to every client of the hub.
//!
//! Besides its server connections it serves the app's own negotiate endpoint,
//! `POST /echo/negotiate?user=<id>`, which answers with the Azure redirect
//! (`{"url": ".../client/?hub=echo", "accessToken": "..."}`) so the official clients, given
//! `http://127.0.0.1:<port>/echo`, follow it to the service exactly as they do with Azure.
//!
//! Run it against a broker in Default mode:
//!
//! ```sh
//! switchboard serve --access-key my-access-key-please-change-0123456789
//! # Connection string: Endpoint=http://127.0.0.1;Port=8080;AccessKey=<the access key you gave>;Version=1.0;
//! cargo run --example echo -- \
//!     --connection-string "Endpoint=http://127.0.0.1;Port=8080;AccessKey=my-access-key-please-change-0123456789;Version=1.0;" \
//!     --listen 127.0.0.1:5000
//! # Negotiate on http://127.0.0.1:5000/echo
//! # echo hub server connected (<server id>)
//! ```
//!
//! The connection string can also come from `Azure__SignalR__ConnectionString`, the variable
//! ASP.NET Core apps read. Then, from JavaScript:
//!
//! ```js
//! const conn = new signalR.HubConnectionBuilder().withUrl("http://127.0.0.1:5000/echo?user=alice").build();
//! conn.on("echo", (payload) => console.log(payload));
//! await conn.start();
//! await conn.invoke("Echo", "hi");
//! ```
//!
//! Ctrl-C or SIGTERM stops it gracefully (`HubServer::stop`: the service moves no new clients
//! to it and its clients are closed).

use std::process::ExitCode;
use std::time::Duration;

use actix_web::http::{Method, header};
use actix_web::{App, HttpRequest, HttpResponse, HttpResponseBuilder, HttpServer, web};
use clap::Parser;
use serde_json::Value;
use switchboard_sdk::{
    ConnectionString, Context, Hub, HubError, HubServer, SdkError, negotiate_response,
};

/// The hub name.
const HUB: &str = "echo";
/// Lifetime of the client tokens minted by the negotiate endpoint.
const CLIENT_TOKEN_LIFETIME: Duration = Duration::from_secs(3600);
/// Longest user id the negotiate endpoint accepts.
const MAX_USER_ID: usize = 256;

/// An echo hub server behind Switchboard (or Azure SignalR Service) in Default mode.
#[derive(Parser, Debug)]
#[command(name = "echo", version, about)]
struct Args {
    /// The service connection string (`Endpoint=...;AccessKey=...;Version=1.0;`).
    #[arg(long, env = "Azure__SignalR__ConnectionString", hide_env_values = true)]
    connection_string: String,
    /// Server connections to open to the service.
    #[arg(long, default_value_t = 5)]
    connections: usize,
    /// The server id announced to the service (default: `<host>_<random hex>`).
    #[arg(long)]
    server_id: Option<String>,
    /// Address of the negotiate endpoint (port 0: any free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: String,
}

/// The echo hub.
fn hub() -> Hub {
    Hub::builder()
        .method("Echo", |ctx: Context, (payload,): (Value,)| async move {
            ctx.clients().caller().send("echo", (payload,)).await?;
            Ok::<_, HubError>(())
        })
        .method(
            "EchoReturn",
            |_ctx: Context, (payload,): (Value,)| async move { Ok::<_, HubError>(payload) },
        )
        .method(
            "Broadcast",
            |ctx: Context, (payload,): (Value,)| async move {
                ctx.clients().all().send("broadcast", (payload,)).await?;
                Ok::<_, HubError>(())
            },
        )
        .build()
}

/// What the negotiate handler needs.
struct AppState {
    connection_string: ConnectionString,
}

/// CORS for any origin, with credentials (the browser client sends cookies and custom headers):
/// the request's `Origin` is echoed, since `*` is not allowed with credentials.
fn with_cors(req: &HttpRequest, mut res: HttpResponseBuilder) -> HttpResponseBuilder {
    if let Some(origin) = req.headers().get(header::ORIGIN) {
        res.insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone()))
            .insert_header((header::ACCESS_CONTROL_ALLOW_CREDENTIALS, "true"))
            .insert_header((header::VARY, "Origin"));
    }
    res
}

/// `OPTIONS /echo/negotiate`: the CORS preflight.
async fn preflight(req: HttpRequest) -> HttpResponse {
    let mut res = with_cors(&req, HttpResponse::NoContent());
    res.insert_header((header::ACCESS_CONTROL_ALLOW_METHODS, "POST, OPTIONS"))
        .insert_header((header::ACCESS_CONTROL_MAX_AGE, "600"));
    if let Some(headers) = req.headers().get(header::ACCESS_CONTROL_REQUEST_HEADERS) {
        res.insert_header((header::ACCESS_CONTROL_ALLOW_HEADERS, headers.clone()));
    }
    res.finish()
}

/// `POST /echo/negotiate?user=<id>`: the Azure redirect to the service with a client token.
async fn negotiate(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let user = form_urlencoded::parse(req.query_string().as_bytes())
        .find(|(k, _)| k == "user")
        .map(|(_, v)| v.into_owned())
        .filter(|u| !u.is_empty());
    if user.as_ref().is_some_and(|u| u.len() > MAX_USER_ID) {
        return with_cors(&req, HttpResponse::BadRequest())
            .body(format!("the user id is longer than {MAX_USER_ID} bytes"));
    }
    let body = negotiate_response(
        &state.connection_string,
        HUB,
        user.as_deref(),
        &[],
        CLIENT_TOKEN_LIFETIME,
    );
    with_cors(&req, HttpResponse::Ok())
        .content_type("application/json")
        .body(body)
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(err) => {
                eprintln!("{HUB}: cannot listen for SIGTERM ({err}); stop with Ctrl-C");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Waits until every server connection is up, saying so on stderr every 10 s meanwhile.
async fn wait_all_connected(server: &HubServer, count: usize, endpoint: &str) -> bool {
    loop {
        match server.wait_connected(count, Duration::from_secs(10)).await {
            Ok(()) => return true,
            Err(SdkError::ConnectTimeout(_)) => eprintln!(
                "{HUB}: still waiting for {count} server connection(s) to {endpoint} \
                 (is the service running, in Default mode, with this access key?)"
            ),
            Err(err) => {
                eprintln!("{HUB}: {err}");
                return false;
            }
        }
    }
}

async fn run(args: Args) -> Result<(), String> {
    let connection_string: ConnectionString =
        args.connection_string.parse().map_err(|e| format!("{e}"))?;
    let connections = args.connections.max(1);

    let listener = std::net::TcpListener::bind(&args.listen)
        .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
    let addr = listener
        .local_addr()
        .map_err(|e| format!("cannot read the listen address: {e}"))?;
    let state = web::Data::new(AppState {
        connection_string: connection_string.clone(),
    });
    let http = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .route("/echo/negotiate", web::post().to(negotiate))
            .route(
                "/echo/negotiate",
                web::method(Method::OPTIONS).to(preflight),
            )
    })
    .workers(1)
    .disable_signals()
    .shutdown_timeout(1)
    .listen(listener)
    .map_err(|e| format!("cannot serve on {addr}: {e}"))?
    .run();
    let http_handle = http.handle();
    let http_task = tokio::spawn(http);
    println!("Negotiate on http://{addr}/{HUB}");

    let mut builder =
        HubServer::builder(connection_string.clone(), HUB, hub()).connection_count(connections);
    if let Some(id) = args.server_id {
        builder = builder.server_id(id);
    }
    let server = builder.start().map_err(|e| e.to_string())?;

    let endpoint = connection_string.endpoint();
    tokio::select! {
        () = async {
            if wait_all_connected(&server, connections, &endpoint).await {
                println!("{HUB} hub server connected ({})", server.server_id());
            }
            std::future::pending::<()>().await;
        } => {}
        () = shutdown_signal() => {}
    }

    eprintln!("{HUB}: shutting down");
    server.stop().await;
    http_handle.stop(true).await;
    let _ = http_task.await;
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(switchboard::telemetry::colours_wanted())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let args = Args::parse();
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("{HUB}: {err}");
            ExitCode::FAILURE
        }
    }
}
