//! The `switchboard` binary: configuration errors, `token`, the start banner, access-key
//! files and TLS.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_switchboard");

fn run(args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .args(args)
        .env_remove("SWITCHBOARD_CONFIG")
        .env_remove("SWITCHBOARD_LISTEN")
        .env_remove("SWITCHBOARD_MODE")
        .env_remove("SWITCHBOARD_ACCESS_KEY")
        .env_remove("SWITCHBOARD_ACCESS_KEY_FILE")
        .env_remove("SWITCHBOARD_CONNECTION_STRING")
        .output()
        .unwrap()
}

/// The key of the `token` tests.
const TOKEN_KEY: &str = "token-test-key-0123456789abcdefghijklmnop";

fn temp_file(name: &str, text: &str) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("switchboard-cli-{}-{name}", std::process::id()));
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn bad_configuration_is_one_line_naming_the_key() {
    let cases = [
        (
            "[limits]\nmax_message_size = \"big\"\n",
            "limits.max_message_size",
        ),
        (
            "[limits]\noutbox_max_bytes = 0\n",
            "limits.outbox_max_bytes",
        ),
        ("mode = \"turbo\"\n", "mode"),
        ("listen = \"nowhere\"\n", "listen"),
        ("colour = 3\n", "colour"),
        ("[metrics]\ntop_hubs = 5000\n", "metrics.top_hubs"),
    ];
    for (text, key) in cases {
        let path = temp_file("bad.toml", text);
        let out = run(&["check-config", "--config", path.to_str().unwrap()]);
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert_eq!(out.status.code(), Some(64), "{text}: {stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
        assert!(stderr.contains(key), "{key} not named in: {stderr}");
    }
    for (flag, value, key) in [
        ("--mode", "turbo", "mode"),
        ("--listen", "nowhere", "listen"),
        ("--metrics-top-hubs", "5000", "metrics.top_hubs"),
    ] {
        let out = run(&["serve", flag, value]);
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert_eq!(out.status.code(), Some(64), "{stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
        assert!(stderr.contains(key), "{stderr}");
    }
    let out = run(&["check-config", "--config", "/nonexistent/switchboard.toml"]);
    assert_eq!(out.status.code(), Some(64));
}

#[test]
fn a_config_file_that_does_not_parse_names_the_file_line_and_column() {
    let path = temp_file(
        "syntax.toml",
        "# Switchboard\nlisten = \"127.0.0.1:8080\"\nmode = serverless\n",
    );
    let file = path.to_str().unwrap();
    for args in [
        &["check-config", "--config", file][..],
        &["serve", "--config", file][..],
    ] {
        let out = run(args);
        assert_eq!(out.status.code(), Some(64), "{args:?}");
        assert_eq!(
            String::from_utf8(out.stderr).unwrap(),
            format!(
                "switchboard: {file}: line 3, column 8: string values must be quoted: mode = \"serverless\"\n"
            )
        );
    }
    let path = temp_file("unknown.toml", "[limits]\nmax_mesage_size = 3\n");
    let out = run(&["check-config", "--config", path.to_str().unwrap()]);
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(64), "{stderr}");
    assert!(
        stderr.starts_with(&format!(
            "switchboard: {}: line 2, column 1: unknown key 'max_mesage_size' in [limits]; did you mean 'max_message_size'? (known keys: max_message_size, ",
            path.display()
        )),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

#[test]
fn the_example_config_checks_out() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/switchboard.example.toml");
    let out = run(&["check-config", "--config", example]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The connection string of the `token` tests: a broker at 127.0.0.1:9000.
fn token_cs() -> String {
    format!("Endpoint=http://127.0.0.1;Port=9000;AccessKey={TOKEN_KEY};Version=1.0;")
}

#[test]
fn token_prints_a_url_of_the_named_broker_and_a_valid_client_token() {
    let out = run(&[
        "token",
        "--hub",
        "chat",
        "--user",
        "ann",
        "--ttl",
        "10m",
        "--connection-string",
        &token_cs(),
    ]);
    assert!(out.status.success());
    let stdout = String::from_utf8(out.stdout).unwrap();
    let mut lines = stdout.lines();
    assert_eq!(
        lines.next(),
        Some("URL: http://127.0.0.1:9000/client/?hub=chat")
    );
    let token = lines.next().unwrap().strip_prefix("Token: ").unwrap();
    let keys = switchboard::auth::AccessKeys::new(vec![TOKEN_KEY.into()]);
    let id = keys
        .validate(
            token,
            switchboard::auth::Audience::Client { hub: "chat" },
            0,
        )
        .unwrap();
    assert_eq!(id.user_id.as_deref(), Some("ann"));
    assert!(id.expires_at <= switchboard::auth::unix_now() + 600);

    // The connection string may come from the environment; a ClientEndpoint names the URL.
    let out = Command::new(BIN)
        .args(["token", "--hub", "chat", "--rest"])
        .env(
            "SWITCHBOARD_CONNECTION_STRING",
            format!("Endpoint=https://sb.example.com;AccessKey={TOKEN_KEY};Version=1.0;"),
        )
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    let mut lines = stdout.lines();
    assert_eq!(
        lines.next(),
        Some("URL: https://sb.example.com/api/hubs/chat")
    );
    let token = lines.next().unwrap().strip_prefix("Token: ").unwrap();
    keys.validate(
        token,
        switchboard::auth::Audience::Rest {
            path: "/api/hubs/chat/:send",
        },
        0,
    )
    .unwrap();
    let out = run(&[
        "token",
        "--hub",
        "chat",
        "--connection-string",
        &format!(
            "Endpoint=http://10.0.0.1;Port=8080;ClientEndpoint=https://chat.example.com;AccessKey={TOKEN_KEY};"
        ),
    ]);
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        stdout.lines().next(),
        Some("URL: https://chat.example.com/client/?hub=chat")
    );

    // Without a connection string there is nothing to sign with: a usage error.
    let out = Command::new(BIN)
        .args(["token", "--hub", "chat"])
        .env_remove("SWITCHBOARD_CONNECTION_STRING")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--connection-string"));
    // The banner's placeholder, copied as is, is refused with what to do.
    let out = run(&[
        "token",
        "--hub",
        "chat",
        "--connection-string",
        "Endpoint=http://127.0.0.1;Port=8080;AccessKey=<the access key you gave>;Version=1.0;",
    ]);
    assert_eq!(out.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("put the broker's access key in its place") && stderr.lines().count() == 1,
        "{stderr}"
    );
}

#[test]
fn token_shows_only_its_own_options() {
    let out = run(&["token", "--help"]);
    let help = String::from_utf8(out.stdout).unwrap();
    for own in [
        "--connection-string",
        "--hub",
        "--user",
        "--ttl",
        "--rest",
        "--admin",
    ] {
        assert!(help.contains(own), "{own} missing from: {help}");
    }
    for serves in [
        "--listen",
        "--mode",
        "--access-key",
        "--tls-cert",
        "--cluster",
    ] {
        assert!(!help.contains(serves), "{serves} is serve's: {help}");
    }
}

#[test]
fn token_admin_prints_the_console_url_and_an_admin_token() {
    let out = run(&["token", "--admin", "--connection-string", &token_cs()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let mut lines = stdout.lines();
    assert_eq!(
        lines.next(),
        Some("URL: http://127.0.0.1:9000/admin/console")
    );
    let token = lines.next().unwrap().strip_prefix("Token: ").unwrap();
    let keys = switchboard::auth::AccessKeys::new(vec![TOKEN_KEY.into()]);
    keys.validate(token, switchboard::auth::Audience::Admin, 0)
        .unwrap();
    assert!(
        keys.validate(
            token,
            switchboard::auth::Audience::Client { hub: "chat" },
            0
        )
        .is_err(),
        "an admin token is no client token"
    );

    // --admin and --hub are one or the other; neither is a usage error.
    assert_eq!(
        run(&[
            "token",
            "--admin",
            "--hub",
            "chat",
            "--connection-string",
            &token_cs()
        ])
        .status
        .code(),
        Some(2)
    );
    assert_eq!(
        run(&["token", "--connection-string", &token_cs()])
            .status
            .code(),
        Some(2)
    );
}

/// `switchboard serve` on a free port in Serverless mode with `extra` options, and its output.
fn spawn_serve(
    extra: &[&std::ffi::OsStr],
) -> (
    std::process::Child,
    std::io::Lines<BufReader<std::process::ChildStdout>>,
) {
    spawn_serve_at("127.0.0.1:0", extra)
}

/// [`spawn_serve`] listening on `listen`.
fn spawn_serve_at(
    listen: &str,
    extra: &[&std::ffi::OsStr],
) -> (
    std::process::Child,
    std::io::Lines<BufReader<std::process::ChildStdout>>,
) {
    let mut child = Command::new(BIN)
        .args(["serve", "--listen", listen, "--mode", "serverless"])
        .args(extra)
        .env_remove("SWITCHBOARD_ACCESS_KEY")
        .env_remove("SWITCHBOARD_ACCESS_KEY_FILE")
        .env_remove("SWITCHBOARD_CONFIG")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let lines = BufReader::new(child.stdout.take().unwrap()).lines();
    (child, lines)
}

#[test]
fn serve_prints_the_address_and_connection_string() {
    let (mut child, mut lines) = spawn_serve(&[]);
    let listening = lines.next().unwrap().unwrap();
    let connection = lines.next().unwrap().unwrap();
    let mode = lines.next().unwrap().unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    let addr = listening.strip_prefix("Listening on http://").unwrap();
    let port = addr.rsplit(':').next().unwrap();
    assert_ne!(port, "0");
    let cs = connection.strip_prefix("Connection string: ").unwrap();
    assert!(
        cs.starts_with(&format!("Endpoint=http://127.0.0.1;Port={port};AccessKey=")),
        "{cs}"
    );
    assert!(cs.ends_with(";Version=1.0;"), "{cs}");
    // A generated key: 32 random bytes in base64.
    let key = cs
        .split("AccessKey=")
        .nth(1)
        .unwrap()
        .split(';')
        .next()
        .unwrap();
    assert_eq!(key.len(), 44, "{key}");
    assert_eq!(mode, "Mode: serverless");
}

/// `switchboard admin` against `url` with `key`: whether the broker accepted the key.
fn admin_accepts(url: &str, key: &str) -> bool {
    run(&[
        "admin",
        "--connection-string",
        &common::connection_string(url, key),
    ])
    .status
    .success()
}

#[test]
fn an_access_key_file_is_used_never_printed_and_reread_on_sighup() {
    let first = "file-key-0123456789abcdefghijklmnopqrstuv";
    let second = "file-key-second-0123456789abcdefghijklmn";
    let file = temp_file("keyfile", &format!("{first}\n\n"));
    let (mut child, mut lines) = spawn_serve(&["--access-key-file".as_ref(), file.as_os_str()]);
    let listening = lines.next().unwrap().unwrap();
    let connection = lines.next().unwrap().unwrap();
    let url = listening.strip_prefix("Listening on ").unwrap().to_owned();
    let result = std::panic::catch_unwind(|| {
        assert!(!connection.contains(first), "{connection}");
        assert!(
            connection.contains(&format!("AccessKey=<the first line of {}>", file.display())),
            "{connection}"
        );
        assert!(admin_accepts(&url, first), "the file's key is the broker's");
        assert!(!admin_accepts(&url, second));
        // Rotate: a second line adds the secondary key, SIGHUP applies the file.
        std::fs::write(&file, format!("{second}\n{first}\n")).unwrap();
        let hup = Command::new("kill")
            .args(["-HUP", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(hup.success());
        let mut accepted = false;
        for _ in 0..50 {
            if admin_accepts(&url, second) {
                accepted = true;
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        assert!(accepted, "the rotated key is accepted after SIGHUP");
        assert!(admin_accepts(&url, first), "the secondary key too");
    });
    child.kill().unwrap();
    child.wait().unwrap();
    let _ = std::fs::remove_file(&file);
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

#[test]
fn a_bad_access_key_file_is_one_line_naming_it() {
    let empty = temp_file("empty-keys", "\n  \n");
    let three = temp_file("three-keys", "a-key-of-some-length-1\nb\nc\n");
    for (path, says) in [
        (empty.clone(), "holds no key"),
        (three.clone(), "holds 3 keys"),
        (std::path::PathBuf::from("/nonexistent/keys"), "cannot read"),
    ] {
        // Refused before anything listens.
        let out = run(&["serve", "--access-key-file", path.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(64), "{path:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("access_key_file") && err.contains(says) && err.lines().count() == 1,
            "{path:?}: {err}"
        );
    }
    // Given both ways, the command refuses at once.
    let out = run(&[
        "serve",
        "--access-key",
        "k",
        "--access-key-file",
        empty.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    let _ = std::fs::remove_file(&empty);
    let _ = std::fs::remove_file(&three);
}

/// `switchboard admin` against `url`, trusting `ca_file` if given: whether it succeeded.
fn admin_over_tls(url: &str, key: &str, ca_file: Option<&std::path::Path>) -> bool {
    let mut command = Command::new(BIN);
    command
        .args([
            "admin",
            "--connection-string",
            &common::connection_string(url, key),
        ])
        .env_remove("SWITCHBOARD_CA_FILE");
    if let Some(ca_file) = ca_file {
        command.arg("--ca-file").arg(ca_file);
    }
    command.output().unwrap().status.success()
}

#[test]
fn tls_serve_announces_https_serves_admin_and_send_and_reloads_its_certificate_on_sighup() {
    use common::tls::{TestCa, temp_dir};
    let dir = temp_dir("sb-cli-tls");
    let first = TestCa::new("first CA");
    let second = TestCa::new("second CA");
    let first_pem = first.write_pem(&dir, "first-ca.pem");
    let second_pem = second.write_pem(&dir, "second-ca.pem");
    let issued = first.issue(&dir, "server");
    let key = "tls-cli-key-0123456789abcdefghijklmnopqrstu";
    let (mut child, mut lines) = spawn_serve(&[
        "--access-key".as_ref(),
        key.as_ref(),
        "--tls-cert".as_ref(),
        issued.cert.as_os_str(),
        "--tls-key".as_ref(),
        issued.key.as_os_str(),
    ]);
    let listening = lines.next().unwrap().unwrap();
    let connection = lines.next().unwrap().unwrap();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let url = listening
            .strip_prefix("Listening on ")
            .unwrap_or_else(|| panic!("{listening}"));
        assert!(url.starts_with("https://127.0.0.1:"), "{listening}");
        let printed = connection.strip_prefix("Connection string: ").unwrap();
        assert!(
            printed.starts_with("Endpoint=https://127.0.0.1;"),
            "{printed}"
        );
        assert!(
            !printed.contains(key),
            "a key given is not printed: {printed}"
        );
        let port = url.rsplit(':').next().unwrap();
        let cs = &format!("Endpoint=https://127.0.0.1;Port={port};AccessKey={key};Version=1.0;");

        assert!(admin_over_tls(url, key, Some(&first_pem)));
        assert!(
            !admin_over_tls(url, key, None),
            "a certificate of an unknown CA is refused"
        );
        let sent = Command::new(BIN)
            .args([
                "send",
                "--connection-string",
                cs,
                "--hub",
                "chat",
                "--target",
                "news",
            ])
            .arg("--ca-file")
            .arg(&first_pem)
            .output()
            .unwrap();
        assert!(
            sent.status.success(),
            "{}",
            String::from_utf8_lossy(&sent.stderr)
        );

        // The second CA's certificate in the same files; SIGHUP makes it the one presented.
        second.issue(&dir, "server");
        let hup = Command::new("kill")
            .args(["-HUP", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(hup.success());
        let mut reloaded = false;
        for _ in 0..50 {
            if admin_over_tls(url, key, Some(&second_pem)) {
                reloaded = true;
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        assert!(reloaded, "the new certificate is presented after SIGHUP");
        assert!(!admin_over_tls(url, key, Some(&first_pem)));
    }));
    child.kill().unwrap();
    child.wait().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

#[test]
fn an_admin_port_and_key_file_keep_the_admin_api_apart() {
    let access = "access-key-0123456789abcdefghijklmnopqrstuvw";
    let admin_key = "admin-key-0123456789abcdefghijklmnopqrstuvwx";
    let file = temp_file("adminkey", &format!("{admin_key}\n"));
    let (mut child, mut lines) = spawn_serve(&[
        "--access-key".as_ref(),
        access.as_ref(),
        "--admin-listen".as_ref(),
        "127.0.0.1:0".as_ref(),
        "--admin-key-file".as_ref(),
        file.as_os_str(),
    ]);
    let listening = lines.next().unwrap().unwrap();
    let banner: Vec<String> = (0..3).map(|_| lines.next().unwrap().unwrap()).collect();
    let result = std::panic::catch_unwind(|| {
        let public = listening.strip_prefix("Listening on ").unwrap();
        let admin = banner
            .iter()
            .find_map(|l| l.strip_prefix("Admin and metrics: "))
            .unwrap_or_else(|| panic!("no admin line in {banner:?}"));
        assert_ne!(admin, public);
        assert!(!banner.iter().any(|l| l.contains(admin_key)), "{banner:?}");
        assert!(admin_accepts(admin, admin_key));
        assert!(
            !admin_accepts(admin, access),
            "an access key does not open /admin"
        );
        assert!(
            !admin_accepts(public, admin_key),
            "no /admin on the public port"
        );
    });
    child.kill().unwrap();
    child.wait().unwrap();
    let _ = std::fs::remove_file(&file);
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
    // A key file with two keys is refused, naming it.
    let two = temp_file("adminkey2", "one-key\nanother-key\n");
    let out = run(&["serve", "--admin-key-file", two.to_str().unwrap()]);
    let _ = std::fs::remove_file(&two);
    assert_eq!(out.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("admin_key_file"), "{stderr}");
}

#[test]
fn short_keys_are_refused_unless_insecure_short_key_and_a_given_key_is_not_printed() {
    let out = run(&["serve", "--access-key", "k1"]);
    assert_eq!(out.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("access_keys[0]") && stderr.contains("at least 32"),
        "{stderr}"
    );
    let (mut child, mut lines) = spawn_serve(&[
        "--access-key".as_ref(),
        "k1".as_ref(),
        "--insecure-short-key".as_ref(),
    ]);
    let listening = lines.next().unwrap().unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(listening.starts_with("Listening on "), "{listening}");
    let file = temp_file("short-admin", "admin-k\n");
    let out = run(&["serve", "--admin-key-file", file.to_str().unwrap()]);
    let _ = std::fs::remove_file(&file);
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("admin_key"));

    let key = "given-key-0123456789abcdefghijklmnopqrstuvwxyz";
    let (mut child, mut lines) = spawn_serve(&["--access-key".as_ref(), key.as_ref()]);
    let _listening = lines.next().unwrap().unwrap();
    let connection = lines.next().unwrap().unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(!connection.contains(key), "{connection}");
    assert!(
        connection.ends_with(";AccessKey=<the access key you gave>;Version=1.0;"),
        "{connection}"
    );
}

/// A port nothing listens on (bound, then let go).
fn dead_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn commands_against_a_dead_broker_say_connection_refused_at_its_address() {
    let port = dead_port();
    let cs = format!("Endpoint=http://127.0.0.1;Port={port};AccessKey={TOKEN_KEY};Version=1.0;");
    let expected = format!(
        "switchboard: connection refused at http://127.0.0.1:{port}: is the broker running and \
         listening there?"
    );
    for args in [
        vec!["admin", "--connection-string", &cs],
        vec!["trace", "--connection-string", &cs],
    ] {
        let out = run(&args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert_eq!(stderr.trim_end(), expected, "{args:?}");
    }
    let out = run(&[
        "send",
        "--connection-string",
        &cs,
        "--hub",
        "chat",
        "--target",
        "t",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains(&format!("connection refused at http://127.0.0.1:{port}")),
        "{stderr}"
    );
}

#[test]
fn logs_have_no_colours_when_stderr_is_not_a_terminal() {
    let mut child = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--insecure-short-key"])
        .args(["--access-key", "k"])
        .env_remove("NO_COLOR")
        .env_remove("RUST_LOG")
        .env_remove("SWITCHBOARD_CONFIG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // actix logs its workers starting, at info, as the broker starts.
    let line = BufReader::new(child.stderr.take().unwrap())
        .lines()
        .next()
        .unwrap()
        .unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(line.contains("INFO"), "{line}");
    assert!(
        !line.contains('\u{1b}'),
        "an escape sequence in a pipe: {line:?}"
    );
}

#[test]
fn listen_takes_every_interface_and_names() {
    // Every interface: the connection string names the machine, not 0.0.0.0.
    let (mut child, mut lines) = spawn_serve_at("0.0.0.0:0", &[]);
    let listening = lines.next().unwrap().unwrap();
    let connection = lines.next().unwrap().unwrap();
    let public = lines.next().unwrap().unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    let port = listening.rsplit(':').next().unwrap();
    assert!(
        listening.starts_with("Listening on http://0.0.0.0:"),
        "{listening}"
    );
    match switchboard::config::host_name() {
        Some(host) => {
            assert!(
                connection.starts_with(&format!(
                    "Connection string: Endpoint=http://{host};Port={port};"
                )),
                "{connection}"
            );
            assert!(
                public.starts_with(&format!("Public endpoint: http://{host}:{port}, "))
                    && public.contains("--public-endpoint"),
                "{public}"
            );
            assert!(!connection.contains("0.0.0.0"), "{connection}");
        }
        // A machine without a usable name: the banner says what to set.
        None => assert!(public.contains("set --public-endpoint"), "{public}"),
    }

    // A name.
    let (mut child, mut lines) = spawn_serve_at("localhost:0", &[]);
    let listening = lines.next().unwrap().unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        listening.starts_with("Listening on http://127.0.0.1:")
            || listening.starts_with("Listening on http://[::1]:"),
        "{listening}"
    );
}
