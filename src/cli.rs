//! Command line: `serve` (the default), `token`, `admin`, `send`, `trace`, `check-config`,
//! `print-default-config`.
//!
//! Flags override the TOML file; each flag can also come from a `SWITCHBOARD_*` environment
//! variable (the flag wins over the variable).

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use switchboard::config::{Config, ConfigError, ServiceMode};
use switchboard::{Switchboard, telemetry};

/// `EX_USAGE`: the configuration is wrong.
pub(crate) const EXIT_CONFIG: i32 = 64;

#[derive(Parser, Debug)]
#[command(name = "switchboard", version, about = "A self-hosted SignalR Service")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

// One value, parsed once at start: its size does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug)]
enum Command {
    /// Run the broker (the default when no command is given).
    Serve(ServeArgs),
    /// Print a client URL and an access token for a hub of the broker a connection string names
    /// (or a REST or admin token).
    Token(TokenArgs),
    /// Show or change a running broker's runtime settings (mode, access keys, upstreams).
    Admin(crate::cli_admin::AdminArgs),
    /// Send a message to a hub's clients through the REST API (all, a user, a group or a
    /// connection).
    Send(crate::cli_send::SendArgs),
    /// Watch a running broker's live trace: connects, disconnects and their reasons, messages,
    /// HTTP requests, as they happen.
    Trace(crate::cli_trace::TraceArgs),
    /// Check a configuration file and exit.
    CheckConfig(ConfigArg),
    /// Print the built-in default configuration as TOML.
    PrintDefaultConfig,
}

#[derive(Args, Debug, Default, Clone)]
struct ConfigArg {
    /// Configuration file (switchboard.toml).
    #[arg(long, env = "SWITCHBOARD_CONFIG")]
    config: Option<PathBuf>,
}

#[derive(Args, Debug, Default, Clone)]
struct ServeArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// Address to listen on, like 127.0.0.1:8080, 0.0.0.0:8080 (every interface) or
    /// localhost:8080 [default: 127.0.0.1:8080].
    #[arg(long, env = "SWITCHBOARD_LISTEN")]
    listen: Option<String>,
    /// Service mode: default, serverless or classic [default: default].
    #[arg(long, env = "SWITCHBOARD_MODE")]
    mode: Option<String>,
    /// Access key; give it twice for primary and secondary (env: comma-separated).
    #[arg(
        long = "access-key",
        env = "SWITCHBOARD_ACCESS_KEY",
        value_delimiter = ','
    )]
    access_keys: Vec<String>,
    /// A file holding the access key (first line), and the secondary key (second line): keys
    /// stay out of process listings and are never printed. Re-read on SIGHUP.
    #[arg(
        long = "access-key-file",
        env = "SWITCHBOARD_ACCESS_KEY_FILE",
        conflicts_with = "access_keys"
    )]
    access_key_file: Option<PathBuf>,
    /// Accept access keys (and an admin key) shorter than 32 characters: for tests only.
    #[arg(long = "insecure-short-key", env = "SWITCHBOARD_INSECURE_SHORT_KEY")]
    insecure_short_key: bool,
    /// Public base URL clients use, if not http://<listen>.
    #[arg(long, env = "SWITCHBOARD_PUBLIC_ENDPOINT")]
    public_endpoint: Option<String>,
    /// HTTP worker threads (0 = one per core).
    #[arg(long, env = "SWITCHBOARD_WORKERS")]
    workers: Option<usize>,
    /// Upstream URL template for every hub, category and event (repeatable; replaces the
    /// file's `upstream` list).
    #[arg(long = "upstream", env = "SWITCHBOARD_UPSTREAM", value_delimiter = ' ')]
    upstreams: Vec<String>,
    /// The local emulator's settings.json with upstream templates.
    #[arg(long = "upstream-settings", env = "SWITCHBOARD_UPSTREAM_SETTINGS")]
    upstream_settings: Option<String>,
    /// Join a cluster on this Redis: redis://HOST:PORT[/DB], rediss://… (TLS), unix:///path.
    #[arg(long = "cluster", env = "SWITCHBOARD_CLUSTER")]
    cluster: Option<String>,
    /// This node's id in the cluster [default: host name and a random suffix].
    #[arg(long = "node-id", env = "SWITCHBOARD_NODE_ID")]
    node_id: Option<String>,
    /// A browser origin whose pages may call the broker, like https://app.example.com
    /// (repeatable; env: comma-separated) [default: * (any)].
    #[arg(
        long = "cors-allowed-origin",
        env = "SWITCHBOARD_CORS_ALLOWED_ORIGINS",
        value_delimiter = ','
    )]
    cors_allowed_origins: Vec<String>,
    /// Serve HTTPS and WSS with this certificate: a PEM file, the server's certificate first,
    /// then its intermediates. Re-read on SIGHUP.
    #[arg(long = "tls-cert", env = "SWITCHBOARD_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM). Re-read on SIGHUP.
    #[arg(long = "tls-key", env = "SWITCHBOARD_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Serve /admin and /metrics (and /healthz, /readyz) on this second address, plain HTTP,
    /// and not on --listen (e.g. 127.0.0.1:9090).
    #[arg(long = "admin-listen", env = "SWITCHBOARD_ADMIN_LISTEN")]
    admin_listen: Option<String>,
    /// A file holding the key admin tokens are signed with (one line): access keys then no
    /// longer open /admin, and this key opens nothing else.
    #[arg(long = "admin-key-file", env = "SWITCHBOARD_ADMIN_KEY_FILE")]
    admin_key_file: Option<PathBuf>,
    /// Log lines as text or json (one object per line; resource logs in Azure's shape)
    /// [default: text].
    #[arg(long = "log-format", env = "SWITCHBOARD_LOG_FORMAT")]
    log_format: Option<String>,
    /// A resource-log category's level, like connectivity=info (repeatable; env:
    /// comma-separated). Categories: connectivity, messaging, http; levels: off, error,
    /// warning, info, debug [default: connectivity=warning, others off].
    #[arg(
        long = "log-level",
        env = "SWITCHBOARD_LOG_LEVEL",
        value_delimiter = ','
    )]
    log_levels: Vec<String>,
    /// How many of the busiest hubs get their own series in /metrics; the rest are summed
    /// under hub="(other)" [default: 10].
    #[arg(long = "metrics-top-hubs", env = "SWITCHBOARD_METRICS_TOP_HUBS")]
    metrics_top_hubs: Option<usize>,
}

#[derive(Args, Debug)]
struct TokenArgs {
    #[command(flatten)]
    broker: crate::cli_broker::BrokerArgs,
    /// Hub the token is for.
    #[arg(long, required_unless_present = "admin")]
    hub: Option<String>,
    /// User id (the token's nameid); may start with '-'.
    #[arg(long, allow_hyphen_values = true)]
    user: Option<String>,
    /// Lifetime, e.g. 1h, 30m, 90s.
    #[arg(long, default_value = "1h", value_parser = parse_duration)]
    ttl: Duration,
    /// Print a REST API token for the hub (audience `<endpoint>/api/hubs/<hub>`, which covers
    /// every REST operation on that hub) instead of a client token.
    #[arg(long)]
    rest: bool,
    /// Print an admin token (audience `<endpoint>/admin`: the admin API and the web console at
    /// /admin/console). With --admin-listen, name that port and the admin key in the connection
    /// string.
    #[arg(long, conflicts_with_all = ["hub", "rest", "user"])]
    admin: bool,
}

/// Apply one `--log-level category=level`.
fn set_log_level(config: &mut Config, setting: &str) -> Result<(), ConfigError> {
    let error = |message: String| ConfigError {
        key: "--log-level".into(),
        message,
    };
    let (category, level) = setting.split_once('=').ok_or_else(|| {
        error(format!(
            "'{setting}' is not like connectivity=info (category=level)"
        ))
    })?;
    let level = level.trim().parse().map_err(error)?;
    let slot = match category.trim().to_ascii_lowercase().as_str() {
        "connectivity" => &mut config.logs.connectivity,
        "messaging" => &mut config.logs.messaging,
        "http" => &mut config.logs.http,
        other => {
            return Err(error(format!(
                "unknown category '{other}' (use connectivity, messaging or http)"
            )));
        }
    };
    *slot = level;
    Ok(())
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num.parse().map_err(|_| format!("invalid duration '{s}'"))?;
    let unit_secs: u64 = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("invalid duration unit in '{s}' (use s, m, h or d)")),
    };
    let secs = n
        .checked_mul(unit_secs)
        .ok_or_else(|| format!("the duration '{s}' is too long"))?;
    if secs == 0 {
        return Err("the duration must be positive".into());
    }
    Ok(Duration::from_secs(secs))
}

impl ServeArgs {
    /// Defaults, then the file, then flags and environment.
    fn load(&self) -> Result<Config, ConfigError> {
        let mut config = match &self.config.config {
            Some(path) => Config::from_file(path)?,
            None => Config::default(),
        };
        // Parsed here rather than by clap so that a bad value is one line naming the key.
        if let Some(listen) = &self.listen {
            config.listen =
                switchboard::config::parse_listen(listen).map_err(|message| ConfigError {
                    key: "listen".into(),
                    message,
                })?;
        }
        if let Some(mode) = &self.mode {
            config.mode = mode.parse::<ServiceMode>().map_err(|message| ConfigError {
                key: "mode".into(),
                message,
            })?;
        }
        if !self.access_keys.is_empty() {
            config.access_keys = self.access_keys.clone();
        }
        if let Some(path) = &self.access_key_file {
            config.access_keys = read_key_file(path)?;
        }
        if let Some(endpoint) = &self.public_endpoint {
            config.public_endpoint = endpoint.clone();
        }
        if let Some(workers) = self.workers {
            config.workers = workers;
        }
        if !self.upstreams.is_empty() {
            config.upstream = self
                .upstreams
                .iter()
                .map(|t| switchboard::upstream::UpstreamRule::from_template(t))
                .collect();
        }
        if let Some(path) = &self.upstream_settings {
            config.upstream_settings = path.clone();
        }
        if let Some(url) = &self.cluster {
            config.cluster.redis_url = url.clone();
        }
        if let Some(id) = &self.node_id {
            config.cluster.node_id = id.clone();
        }
        if !self.cors_allowed_origins.is_empty() {
            config.cors.allowed_origins = self.cors_allowed_origins.clone();
        }
        if let Some(format) = &self.log_format {
            config.logs.format = format.parse().map_err(|message| ConfigError {
                key: "logs.format".into(),
                message,
            })?;
        }
        for setting in &self.log_levels {
            set_log_level(&mut config, setting)?;
        }
        if let Some(top) = self.metrics_top_hubs {
            config.metrics.top_hubs = top;
        }
        if let Some(admin) = &self.admin_listen {
            config.admin_listen = Some(switchboard::config::parse_listen(admin).map_err(
                |message| ConfigError {
                    key: "admin_listen".into(),
                    message,
                },
            )?);
        }
        if let Some(path) = &self.admin_key_file {
            let keys = read_key_file(path).map_err(|e| ConfigError {
                key: "admin_key_file".into(),
                message: e.message,
            })?;
            if keys.len() != 1 {
                return Err(ConfigError {
                    key: "admin_key_file".into(),
                    message: format!("{} holds {} keys: one line", path.display(), keys.len()),
                });
            }
            config.admin_key = keys.into_iter().next();
        }
        if !self.insecure_short_key {
            for (i, key) in config.access_keys.iter().enumerate() {
                long_enough(&format!("access_keys[{i}]"), key)?;
            }
            if let Some(key) = &config.admin_key {
                long_enough("admin_key", key)?;
            }
        }
        if self.tls_cert.is_some() {
            config.tls.cert_file = self.tls_cert.clone();
            config.tls.key_file = self.tls_key.clone();
        }
        config.validate()?;
        Ok(config)
    }
}

/// The fewest characters an access key may have without `--insecure-short-key` (a generated
/// key has 44: 32 random bytes in base64).
const MIN_KEY_CHARS: usize = 32;

/// Refuse a key too short to resist guessing.
fn long_enough(name: &str, key: &str) -> Result<(), ConfigError> {
    let chars = key.chars().count();
    if chars >= MIN_KEY_CHARS {
        return Ok(());
    }
    Err(ConfigError {
        key: name.to_owned(),
        message: format!(
            "is {chars} characters long: a key needs at least {MIN_KEY_CHARS} (leave the keys out \
             to get a generated one of 44; --insecure-short-key allows short keys, for tests)"
        ),
    })
}

/// The keys in an access-key file: its non-empty lines (trimmed), one or two.
fn read_key_file(path: &std::path::Path) -> Result<Vec<String>, ConfigError> {
    let error = |message: String| ConfigError {
        key: "access_key_file".into(),
        message,
    };
    let text = std::fs::read_to_string(path)
        .map_err(|e| error(format!("cannot read {}: {e}", path.display())))?;
    let keys: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect();
    match keys.len() {
        1 | 2 => Ok(keys),
        0 => Err(error(format!("{} holds no key", path.display()))),
        n => Err(error(format!(
            "{} holds {n} keys: one or two (primary, secondary) lines",
            path.display()
        ))),
    }
}

/// Run the command line; returns the exit code.
pub(crate) fn main() -> i32 {
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Serve(ServeArgs::default())) {
        Command::Serve(args) => match args.load() {
            Ok(config) => serve(config, &args),
            Err(e) => config_error(&e),
        },
        Command::Token(args) => token(&args),
        Command::Admin(args) => crate::cli_admin::main(&args),
        Command::Send(args) => crate::cli_send::main(args),
        Command::Trace(args) => crate::cli_trace::main(args),
        Command::CheckConfig(arg) => {
            let args = ServeArgs {
                config: arg,
                ..ServeArgs::default()
            };
            match args.load() {
                Ok(_) => {
                    println!("configuration is valid");
                    0
                }
                Err(e) => config_error(&e),
            }
        }
        Command::PrintDefaultConfig => match toml::to_string_pretty(&Config::default()) {
            Ok(text) => {
                print!("{text}");
                0
            }
            Err(e) => {
                eprintln!("switchboard: {e}");
                1
            }
        },
    }
}

fn config_error(e: &ConfigError) -> i32 {
    eprintln!("switchboard: {e}");
    EXIT_CONFIG
}

/// `switchboard token`: a URL of the broker the connection string names, and a token for it.
fn token(args: &TokenArgs) -> i32 {
    let cs = match args.broker.parse() {
        Ok(cs) => cs,
        Err(e) => {
            eprintln!("switchboard: {e}");
            return EXIT_CONFIG;
        }
    };
    let keys = switchboard::auth::AccessKeys::new(vec![cs.access_key().to_owned()]);
    let base = cs.audience_base();
    let ttl = args.ttl.as_secs();
    if args.admin {
        let token = keys.mint(&format!("{base}/admin"), ttl, &[]);
        println!("URL: {}/admin/console", cs.endpoint());
        println!("Token: {token}");
        return 0;
    }
    let Some(hub) = args.hub.as_deref() else {
        eprintln!("switchboard: --hub is needed (or --admin)");
        return EXIT_CONFIG;
    };
    if let Err(e) = switchboard::id::validate_hub_name(hub) {
        eprintln!("switchboard: --hub: {e}");
        return EXIT_CONFIG;
    }
    let claims: Vec<(&str, &str)> = args
        .user
        .as_deref()
        .map(|u| vec![("nameid", u)])
        .unwrap_or_default();
    if args.rest {
        let token = keys.mint(&format!("{base}/api/hubs/{hub}"), ttl, &claims);
        println!("URL: {}/api/hubs/{hub}", cs.endpoint());
        println!("Token: {token}");
    } else {
        let token = keys.mint(&cs.client_audience(hub), ttl, &claims);
        println!("URL: {}", cs.client_url(hub));
        println!("Token: {token}");
    }
    0
}

/// `connection_string` with `<what>` in place of its access key.
fn with_key_placeholder(connection_string: &str, what: &str) -> String {
    let endpoint = connection_string
        .split(";AccessKey=")
        .next()
        .unwrap_or_default();
    format!("{endpoint};AccessKey=<{what}>;Version=1.0;")
}

/// A single-threaded tokio runtime (the HTTP workers bring their own threads).
pub(crate) fn runtime() -> Option<tokio::runtime::Runtime> {
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => Some(rt),
        Err(e) => {
            eprintln!("switchboard: cannot start the runtime: {e}");
            None
        }
    }
}

fn serve(config: Config, args: &ServeArgs) -> i32 {
    telemetry::init_tracing(config.logs.format);
    let Some(runtime) = runtime() else {
        return 1;
    };
    let local = tokio::task::LocalSet::new();
    let result = local.block_on(&runtime, async move {
        let listen = config.listen;
        let mode = config.mode;
        let generated_key = config.access_keys.is_empty();
        let tls = config.tls.enabled();
        let public_endpoint_given = !config.public_endpoint.is_empty();
        let listener = std::net::TcpListener::bind(listen)
            .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
        let admin_listener = match config.admin_listen {
            Some(admin) => Some(
                std::net::TcpListener::bind(admin)
                    .map_err(|e| format!("cannot listen on {admin} (admin_listen): {e}"))?,
            ),
            None => None,
        };
        let mut board = Switchboard::new(config).map_err(|e| e.to_string())?;
        if let Some(admin) = admin_listener {
            board = board.admin_listener(admin);
        }
        let board = board
            .join_configured_cluster()
            .await
            .map_err(|e| e.to_string())?;
        let node = board.cluster_node();
        let handle = board.start(listener).map_err(|e| e.to_string())?;
        // Install the SIGHUP handler before announcing the address: until then a SIGHUP would
        // end the process.
        #[cfg(unix)]
        let hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        #[cfg(not(unix))]
        let hup: Option<()> = None;
        let scheme = if tls { "https" } else { "http" };
        println!("Listening on {scheme}://{}", handle.local_addr());
        // The key is printed only when it was generated: a key given stays where it was given.
        let connection_string = handle.connection_string();
        let shown = match &args.access_key_file {
            _ if generated_key => connection_string,
            Some(path) => with_key_placeholder(
                &connection_string,
                &format!("the first line of {}", path.display()),
            ),
            None => with_key_placeholder(&connection_string, "the access key you gave"),
        };
        println!("Connection string: {shown}");
        if handle.local_addr().ip().is_unspecified() && !public_endpoint_given {
            match switchboard::config::host_name() {
                Some(host) => println!(
                    "Public endpoint: {}, by this machine's name {host} (listening on every \
                     interface; set --public-endpoint if clients reach it by another name)",
                    handle.endpoint()
                ),
                None => println!(
                    "Public endpoint: this machine has no usable name: set --public-endpoint to \
                     the URL clients reach it by"
                ),
            }
        }
        println!("Mode: {mode}");
        if let Some(admin) = handle.admin_addr() {
            println!("Admin and metrics: http://{admin}");
        }
        if let Some((id, engine)) = &node {
            println!("Cluster: node {id} on {engine}");
        }
        if generated_key {
            println!("Access key: generated at random for this run (pass --access-key to fix it)");
        }
        let server = handle.server_handle();
        let control = handle.control();
        tokio::spawn(async move {
            shutdown_signal().await;
            tracing::info!("shutting down");
            if control.drain().await {
                tracing::info!("all connections closed");
            }
            server.stop(true).await;
        });
        if let Some(hup) = hup {
            let control = handle.control();
            let args = args.clone();
            tokio::spawn(async move { reload_on_sighup(hup, control, args).await });
        }
        handle.wait().await.map_err(|e| e.to_string())
    });
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("switchboard: {e}");
            1
        }
    }
}

/// On SIGHUP, read the configuration again and apply what can change at runtime: the mode,
/// the access keys (when the file names any), the upstream rules and the TLS certificate. A bad
/// file changes nothing.
#[cfg(unix)]
async fn reload_on_sighup(
    mut hup: tokio::signal::unix::Signal,
    control: switchboard::switchboard::BrokerControl,
    args: ServeArgs,
) {
    while hup.recv().await.is_some() {
        if args.config.config.is_none() && args.access_key_file.is_none() && args.tls_cert.is_none()
        {
            tracing::warn!(
                "SIGHUP ignored: no --config, --access-key-file or --tls-cert to reload"
            );
            continue;
        }
        let result = match args.load() {
            Ok(config) => match switchboard::switchboard::SettingsPatch::from_config(&config) {
                // The certificate first: a bad one leaves the settings as they were too.
                Ok(patch) => match control.reload_tls(&config.tls) {
                    Ok(()) => control.apply(patch).await,
                    Err(e) => Err(e),
                },
                Err(e) => Err(e),
            },
            Err(e) => Err(e),
        };
        match result {
            Ok(()) => tracing::info!(settings = %control.settings(), "configuration reloaded"),
            Err(e) => tracing::error!(error = %e, "configuration not reloaded"),
        }
    }
}

#[cfg(not(unix))]
async fn reload_on_sighup(
    _hup: (),
    _control: switchboard::switchboard::BrokerControl,
    _args: ServeArgs,
) {
}

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
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("30m"), Ok(Duration::from_secs(1800)));
        assert!(parse_duration("18446744073709551615d").is_err());
        assert_eq!(
            parse_duration("18446744073709551615"),
            Ok(Duration::from_secs(u64::MAX))
        );
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("1y").is_err());
        assert!(parse_duration("h").is_err());
    }

    #[test]
    fn cli_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
