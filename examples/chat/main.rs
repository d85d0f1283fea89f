//! A chat hub server for hub `chat`, built with the Rust hub-server SDK (`switchboard_sdk`), with
//! a browser page: the app side of Default mode, where Switchboard routes each client to one of
//! the app's server connections and the app runs the hub methods.
//!
//! Install the page's browser client once (from the repository root; the official
//! `@microsoft/signalr` package at the exact version `examples/chat/package.json` pins, as locked
//! in `package-lock.json`), run a broker in Default mode, then this example with the printed
//! connection string:
//!
//! ```sh
//! npm ci --prefix examples/chat
//! switchboard serve --access-key my-access-key-please-change-0123456789
//! # Connection string: Endpoint=http://127.0.0.1;Port=8080;AccessKey=<the access key you gave>;Version=1.0;
//! cargo run --example chat -- \
//!     --connection-string "Endpoint=http://127.0.0.1;Port=8080;AccessKey=my-access-key-please-change-0123456789;Version=1.0;" \
//!     --listen 127.0.0.1:5000
//! # Chat page on http://127.0.0.1:5000/
//! # chat hub server connected (<server id>)
//! ```
//!
//! Open `http://127.0.0.1:5000/` in two browser tabs, pick two names, and chat. The connection
//! string can also come from `Azure__SignalR__ConnectionString`, the variable ASP.NET Core apps
//! read. Start a second copy with another `--server-id` and `--listen` port to see clients spread
//! over both app servers (the page shows which one serves it).
//!
//! The page (`index.html`, embedded) loads nothing from the internet, so it works offline, in CI
//! and on air-gapped hosts: this app serves the official browser client as `/signalr.min.js`
//! (and its source map) from `examples/chat/node_modules/@microsoft/signalr/dist/browser/`,
//! found at run time in the source directory the example was built from; `--signalr-js PATH`
//! (or `CHAT_SIGNALR_JS`) names another copy, for a binary run elsewhere. Without the file the
//! example still starts (the hub works for other clients) but says on stderr, and the page says
//! in place of "Not connected.", to run `npm ci --prefix examples/chat`; the file is read on
//! each request, so a reload after installing is enough.
//!
//! The page connects with `withUrl("http://127.0.0.1:5000/chat?user=<name>")`: the client posts
//! to `/chat/negotiate?user=<name>`, which this app answers with the Azure redirect
//! (`{"url": ".../client/?hub=chat", "accessToken": "..."}`), and follows it to the service.
//!
//! Hub methods, and what clients receive:
//!
//! | method | effect |
//! | --- | --- |
//! | `SendMessage(user, text)` | every client gets `newMessage(user, text)` |
//! | `JoinRoom(room)` | the caller joins group `room`; its members get `roomJoined(room, who)` |
//! | `LeaveRoom(room)` | the caller leaves; the remaining members get `roomLeft(room, who)` |
//! | `SendToRoom(room, user, text)` | the room's members get `roomMessage(room, user, text)` |
//! | `SendToUser(user, text)` | every connection of `user` gets `privateMessage(from, text)` |
//! | `WhoAmI()` | returns `{connectionId, userId, serverId}` |
//! | `Counter(count, delayMs)` | streams `0..count`, one item every `delayMs` |
//! | `UploadSum(stream)` | sums the numbers the client streams up and returns the sum |
//! | `AskClient(question)` | invokes the caller's `answer(question)` (a client result) and returns its answer |
//!
//! On connect every client gets `joined(who)`, on disconnect `left(who)`; `who` is the user id
//! (the `user` query value given to negotiate), else the connection id.
//!
//! Ctrl-C or SIGTERM stops it gracefully (`HubServer::stop`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use actix_web::http::{Method, header};
use actix_web::{App, HttpRequest, HttpResponse, HttpResponseBuilder, HttpServer, web};
use clap::Parser;
use futures_util::StreamExt as _;
use serde::Serialize;
use serde_json::Value;
use switchboard_sdk::{
    ConnectionString, Context, Hub, HubError, HubServer, SdkError, UploadStream, negotiate_response,
};

/// The hub name.
const HUB: &str = "chat";
/// The browser page.
const INDEX_HTML: &str = include_str!("index.html");
/// The official browser client, where `npm ci --prefix examples/chat` installs it in the source
/// directory this example is built from (read at run time: installing it needs no rebuild).
const SIGNALR_JS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/examples/chat/node_modules/@microsoft/signalr/dist/browser/signalr.min.js"
);
/// What a user who skipped the install step is told, on stderr and as the script's 404 body.
const NOT_INSTALLED: &str =
    "the SignalR browser client is not installed: run `npm ci --prefix examples/chat`";
/// Lifetime of the client tokens minted by the negotiate endpoint.
const CLIENT_TOKEN_LIFETIME: Duration = Duration::from_secs(3600);
/// Longest user id the negotiate endpoint accepts.
const MAX_USER_ID: usize = 256;
/// Bounds on `Counter`, so a client cannot keep a stream running for days.
const MAX_COUNTER_ITEMS: u32 = 100_000;
const MAX_COUNTER_DELAY_MS: u64 = 60_000;

/// A chat hub server behind Switchboard (or Azure SignalR Service) in Default mode.
#[derive(Parser, Debug)]
#[command(name = "chat", version, about)]
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
    /// Address of the page and the negotiate endpoint (port 0: any free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: String,
    /// The official browser client's `signalr.min.js`, served to the page as `/signalr.min.js`
    /// (its `.map` beside it as `/signalr.min.js.map`).
    #[arg(long, env = "CHAT_SIGNALR_JS", value_name = "PATH", default_value = SIGNALR_JS)]
    signalr_js: PathBuf,
}

/// What `WhoAmI` returns.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct WhoAmI {
    connection_id: String,
    user_id: Option<String>,
    server_id: String,
}

/// How a client is named in notifications: its user id, else its connection id.
fn who(ctx: &Context) -> String {
    ctx.user_id()
        .unwrap_or_else(|| ctx.connection_id())
        .to_owned()
}

/// The chat hub.
fn hub() -> Hub {
    Hub::builder()
        .on_connected(|ctx: Context| async move {
            ctx.clients().all().send("joined", (who(&ctx),)).await?;
            Ok(())
        })
        .on_disconnected(|ctx: Context, _error: Option<String>| async move {
            // Fails when the server connection carrying the client is gone; nothing to do then.
            if let Err(err) = ctx.clients().all().send("left", (who(&ctx),)).await {
                tracing::debug!(%err, "could not announce a departure");
            }
        })
        .method(
            "SendMessage",
            |ctx: Context, (user, text): (String, String)| async move {
                ctx.clients()
                    .all()
                    .send("newMessage", (&user, &text))
                    .await?;
                Ok::<_, HubError>(())
            },
        )
        .method("JoinRoom", |ctx: Context, (room,): (String,)| async move {
            ctx.groups().add(ctx.connection_id(), &room).await?;
            ctx.clients()
                .group(&room)
                .send("roomJoined", (&room, who(&ctx)))
                .await?;
            Ok::<_, HubError>(())
        })
        .method("LeaveRoom", |ctx: Context, (room,): (String,)| async move {
            ctx.groups().remove(ctx.connection_id(), &room).await?;
            ctx.clients()
                .group(&room)
                .send("roomLeft", (&room, who(&ctx)))
                .await?;
            Ok::<_, HubError>(())
        })
        .method(
            "SendToRoom",
            |ctx: Context, (room, user, text): (String, String, String)| async move {
                ctx.clients()
                    .group(&room)
                    .send("roomMessage", (&room, &user, &text))
                    .await?;
                Ok::<_, HubError>(())
            },
        )
        .method(
            "SendToUser",
            |ctx: Context, (user, text): (String, String)| async move {
                ctx.clients()
                    .user(user)
                    .send("privateMessage", (who(&ctx), &text))
                    .await?;
                Ok::<_, HubError>(())
            },
        )
        .method("WhoAmI", |ctx: Context, (): ()| async move {
            Ok::<_, HubError>(WhoAmI {
                connection_id: ctx.connection_id().to_owned(),
                user_id: ctx.user_id().map(str::to_owned),
                server_id: ctx.server().server_id().to_owned(),
            })
        })
        .stream_method("Counter", |_ctx: Context, (count, delay_ms): (u32, u64)| {
            let count = count.min(MAX_COUNTER_ITEMS);
            let delay = Duration::from_millis(delay_ms.min(MAX_COUNTER_DELAY_MS));
            futures_util::stream::unfold(0u32, move |i| async move {
                if i >= count {
                    return None;
                }
                if i > 0 && !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                Some((i, i + 1))
            })
        })
        .upload_method(
            "UploadSum",
            |_ctx: Context, (): (), mut numbers: UploadStream<f64>| async move {
                let mut sum = 0.0;
                while let Some(n) = numbers.next().await {
                    sum += n?;
                }
                Ok::<_, HubError>(sum)
            },
        )
        .method(
            "AskClient",
            |ctx: Context, (question,): (String,)| async move {
                let answer: Value = ctx
                    .clients()
                    .caller()
                    .invoke("answer", (&question,))
                    .await
                    .map_err(|e| HubError::new(format!("the client did not answer: {e}")))?;
                Ok::<_, HubError>(answer)
            },
        )
        .build()
}

/// What the HTTP handlers need.
struct AppState {
    connection_string: ConnectionString,
    /// The browser client served as `/signalr.min.js`.
    signalr_js: PathBuf,
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

/// `OPTIONS /chat/negotiate`: the CORS preflight.
async fn preflight(req: HttpRequest) -> HttpResponse {
    let mut res = with_cors(&req, HttpResponse::NoContent());
    res.insert_header((header::ACCESS_CONTROL_ALLOW_METHODS, "POST, OPTIONS"))
        .insert_header((header::ACCESS_CONTROL_MAX_AGE, "600"));
    if let Some(headers) = req.headers().get(header::ACCESS_CONTROL_REQUEST_HEADERS) {
        res.insert_header((header::ACCESS_CONTROL_ALLOW_HEADERS, headers.clone()));
    }
    res.finish()
}

/// `POST /chat/negotiate?user=<name>`: the Azure redirect to the service with a client token.
async fn negotiate(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let user = form_urlencoded::parse(req.query_string().as_bytes())
        .find(|(k, _)| k == "user")
        .map(|(_, v)| v.into_owned())
        .filter(|u| !u.is_empty());
    if user.as_ref().is_some_and(|u| u.len() > MAX_USER_ID) {
        return with_cors(&req, HttpResponse::BadRequest())
            .body(format!("the user name is longer than {MAX_USER_ID} bytes"));
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

/// `GET /`: the chat page.
async fn index() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(INDEX_HTML)
}

/// `GET /signalr.min.js`: the official browser client, read from disk on each request; a 404
/// saying how to install it when it is missing (the page then says so too).
async fn signalr_js(state: web::Data<AppState>) -> HttpResponse {
    serve_file(state.signalr_js.clone(), "text/javascript; charset=utf-8").await
}

/// `GET /signalr.min.js.map`: its source map (fetched by the browser's developer tools only).
async fn signalr_js_map(state: web::Data<AppState>) -> HttpResponse {
    let mut path = state.signalr_js.clone().into_os_string();
    path.push(".map");
    serve_file(path.into(), "application/json").await
}

/// The file at `path` (read on a blocking thread), or why not.
async fn serve_file(path: PathBuf, content_type: &'static str) -> HttpResponse {
    let read = {
        let path = path.clone();
        web::block(move || std::fs::read(path)).await
    };
    match read {
        Ok(Ok(body)) => HttpResponse::Ok()
            .content_type(content_type)
            .insert_header((header::CACHE_CONTROL, "no-cache"))
            .body(body),
        Ok(Err(err)) if err.kind() == std::io::ErrorKind::NotFound => HttpResponse::NotFound()
            .content_type("text/plain; charset=utf-8")
            .body(format!("{NOT_INSTALLED} (no file at {})\n", path.display())),
        Ok(Err(err)) => HttpResponse::InternalServerError()
            .content_type("text/plain; charset=utf-8")
            .body(format!("cannot read {}: {err}\n", path.display())),
        Err(err) => HttpResponse::InternalServerError().body(err.to_string()),
    }
}

/// Says on stderr, once at start, when the page's browser client is missing.
fn check_signalr_js(path: &Path) {
    if !path.is_file() {
        eprintln!(
            "{HUB}: {NOT_INSTALLED} (no file at {}; --signalr-js PATH serves another copy)",
            path.display()
        );
    }
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
    check_signalr_js(&args.signalr_js);
    let state = web::Data::new(AppState {
        connection_string: connection_string.clone(),
        signalr_js: args.signalr_js,
    });
    let http = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .route("/", web::get().to(index))
            .route("/index.html", web::get().to(index))
            .route("/signalr.min.js", web::get().to(signalr_js))
            .route("/signalr.min.js.map", web::get().to(signalr_js_map))
            .route("/chat/negotiate", web::post().to(negotiate))
            .route(
                "/chat/negotiate",
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
    println!("Chat page on http://{addr}/");

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
