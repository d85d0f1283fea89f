//! `switchboard send`, the management client's command line, against the real broker: the
//! binary's output and exit codes, and what the clients receive.

mod common;

use common::expect;
use common::management::{client, quiet, setup};
use serde_json::json;
use switchboard_sdk::management::ManagementClient;

const BIN: &str = env!("CARGO_BIN_EXE_switchboard");

/// Runs the binary with `args` (off the async runtime).
async fn run_bin(args: Vec<String>, env_vars: Vec<(&'static str, String)>) -> std::process::Output {
    tokio::task::spawn_blocking(move || {
        let mut cmd = std::process::Command::new(BIN);
        cmd.args(&args).env_remove("SWITCHBOARD_CONNECTION_STRING");
        for (k, v) in env_vars {
            cmd.env(k, v);
        }
        cmd.output().expect("run the switchboard binary")
    })
    .await
    .expect("join")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_send_delivers_and_reports() {
    let help = run_bin(vec!["send".into(), "--help".into()], vec![]).await;
    assert!(
        help.status.success(),
        "`switchboard send --help` fails: {}",
        text(&help.stderr).trim()
    );
    let help_text = text(&help.stdout);
    for flag in [
        "--connection-string",
        "--hub",
        "--target",
        "--args",
        "--user",
        "--group",
        "--connection",
        "--exclude",
        "SWITCHBOARD_CONNECTION_STRING",
    ] {
        assert!(help_text.contains(flag), "help lacks {flag}: {help_text}");
    }

    let env = setup().await;
    let mgr = ManagementClient::new(env.cs.clone()).expect("client");
    let hub = mgr.hub("chat");
    let mut a = client(&env, &hub, Some("alice"), "json").await;
    let mut b = client(&env, &hub, Some("bob"), "messagepack").await;
    let (ia, ib) = (a.connection_id().to_owned(), b.connection_id().to_owned());
    let send = |extra: &[&str]| {
        let mut args: Vec<String> = ["send", "--connection-string", &env.cs_text, "--hub", "chat"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        args
    };

    // Broadcast with exact arguments.
    let out = run_bin(send(&["--target", "t", "--args", r#"[1,"x"]"#]), vec![]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "sent to all of hub 'chat' (202)\n");
    expect(&mut a, "t", json!([1, "x"])).await;
    expect(&mut b, "t", json!([1, "x"])).await;

    // Broadcast with an exclusion; no --args means no argument; the connection string from
    // the environment.
    let out = run_bin(
        vec![
            "send".into(),
            "--hub".into(),
            "chat".into(),
            "--target".into(),
            "bare".into(),
            "--exclude".into(),
            ia.clone(),
        ],
        vec![("SWITCHBOARD_CONNECTION_STRING", env.cs_text.clone())],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    expect(&mut b, "bare", json!([])).await;
    quiet(&hub, &mut a).await;

    // A user, a group, a connection; object keys and numbers kept as written.
    let out = run_bin(
        send(&[
            "--target",
            "u",
            "--args",
            r#"[{"z":1,"a":[2.5]}]"#,
            "--user",
            "alice",
        ]),
        vec![],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "sent to user 'alice' of hub 'chat' (202)\n"
    );
    expect(&mut a, "u", json!([{"z": 1, "a": [2.5]}])).await;
    quiet(&hub, &mut b).await;

    hub.add_to_group(&ib, "g").await.expect("add");
    let out = run_bin(
        send(&["--target", "g", "--args", "[true]", "--group", "g"]),
        vec![],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "sent to group 'g' of hub 'chat' (202)\n");
    expect(&mut b, "g", json!([true])).await;
    quiet(&hub, &mut a).await;

    let out = run_bin(
        send(&["--target", "c", "--args", "[null]", "--connection", &ia]),
        vec![],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        format!("sent to connection '{ia}' of hub 'chat' (202)\n")
    );
    expect(&mut a, "c", json!([null])).await;
    quiet(&hub, &mut b).await;

    // Bad arguments: 64 and one error line, nothing sent.
    for bad in [
        vec!["--target", "t", "--args", "[1,"],
        vec!["--target", "t", "--args", r#"{"a":1}"#],
        vec!["--target", "", "--args", "[]"],
        vec!["--target", "t", "--user", "alice", "--exclude", "x"],
    ] {
        let out = run_bin(send(&bad), vec![]).await;
        assert_eq!(
            out.status.code(),
            Some(64),
            "{bad:?}: {}",
            text(&out.stderr)
        );
        assert!(out.stdout.is_empty(), "{bad:?}");
        assert_eq!(
            text(&out.stderr).lines().count(),
            1,
            "{bad:?}: {}",
            text(&out.stderr)
        );
    }
    let out = run_bin(
        vec![
            "send".into(),
            "--connection-string".into(),
            "Endpoint=ftp://x;AccessKey=k".into(),
            "--hub".into(),
            "chat".into(),
            "--target".into(),
            "t".into(),
        ],
        vec![],
    )
    .await;
    assert_eq!(out.status.code(), Some(64), "{}", text(&out.stderr));
    // Two recipient kinds at once: refused by the parser.
    let out = run_bin(
        send(&["--target", "t", "--user", "u", "--group", "g"]),
        vec![],
    )
    .await;
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
    quiet(&hub, &mut a).await;
    quiet(&hub, &mut b).await;

    // A refusal by the service: non-zero, one line naming the status and code.
    let port = env.handle.local_addr().port();
    let wrong = format!("Endpoint=http://127.0.0.1;Port={port};AccessKey=wrong;");
    let out = run_bin(
        vec![
            "send".into(),
            "--connection-string".into(),
            wrong,
            "--hub".into(),
            "chat".into(),
            "--target".into(),
            "t".into(),
        ],
        vec![],
    )
    .await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("401") && err.contains("Error.Unauthorized"),
        "{err}"
    );
    env.handle.stop().await;
}
