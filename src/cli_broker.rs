//! The one way `token`, `send`, `admin` and `trace` name a broker: its connection string, as
//! `switchboard serve` prints it (`--connection-string`, or `SWITCHBOARD_CONNECTION_STRING`).

use std::future::Future;

use clap::Args;
use switchboard_sdk::ConnectionString;

/// `EX_USAGE`: the arguments are wrong.
pub(crate) const EXIT_USAGE: i32 = crate::cli::EXIT_CONFIG;
/// The broker refused, or could not be reached.
pub(crate) const EXIT_FAILED: i32 = 1;

/// One usage error line; the exit code.
pub(crate) fn usage(message: &str) -> i32 {
    eprintln!("switchboard: {message}");
    EXIT_USAGE
}

/// Runs a command's future on a fresh single-threaded runtime; its exit code.
pub(crate) fn block_on(command: impl Future<Output = i32>) -> i32 {
    match crate::cli::runtime() {
        Some(runtime) => runtime.block_on(command),
        None => EXIT_FAILED,
    }
}

/// `--connection-string`, shared by the subcommands that talk to (or sign for) a broker.
#[derive(Args, Debug, Clone)]
pub(crate) struct BrokerArgs {
    /// The broker's connection string, as `switchboard serve` prints it:
    /// "Endpoint=http://127.0.0.1;Port=8080;AccessKey=<key>;Version=1.0;"
    #[arg(
        long = "connection-string",
        env = "SWITCHBOARD_CONNECTION_STRING",
        hide_env_values = true,
        value_name = "CS"
    )]
    pub(crate) connection_string: String,
}

impl BrokerArgs {
    /// The parsed connection string, or one line saying what is wrong with it.
    pub(crate) fn parse(&self) -> Result<ConnectionString, String> {
        let cs: ConnectionString = self
            .connection_string
            .parse()
            .map_err(|e| format!("--connection-string: {e}"))?;
        let key = cs.access_key();
        if key.is_empty() {
            return Err("--connection-string: AccessKey is empty".into());
        }
        // `switchboard serve` prints `AccessKey=<the access key you gave>` for a key it was
        // given: copied as is, it would sign tokens no broker accepts.
        if key.starts_with('<') && key.ends_with('>') {
            return Err(format!(
                "--connection-string: AccessKey is the placeholder '{key}': put the broker's \
                 access key in its place"
            ));
        }
        Ok(cs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(cs: &str) -> Result<ConnectionString, String> {
        BrokerArgs {
            connection_string: cs.into(),
        }
        .parse()
    }

    #[test]
    fn a_placeholder_key_is_refused_with_what_to_do() {
        let e = parse(
            "Endpoint=http://127.0.0.1;Port=8080;AccessKey=<the access key you gave>;Version=1.0;",
        )
        .unwrap_err();
        assert!(
            e.contains("put the broker's access key in its place"),
            "{e}"
        );
        let e = parse("nonsense").unwrap_err();
        assert!(e.starts_with("--connection-string: "), "{e}");
        let cs = parse("Endpoint=http://127.0.0.1;Port=8080;AccessKey=k;Version=1.0;").unwrap();
        assert_eq!(cs.endpoint(), "http://127.0.0.1:8080");
    }
}
