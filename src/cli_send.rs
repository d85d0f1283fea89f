//! `switchboard send`: invoke a client method on a hub through the REST API, with the
//! management client ([`switchboard_sdk::management`]) — a broadcast, or a send to one user, group or
//! connection.
//!
//! Prints one line (`sent to all of hub 'chat' (202)`) and exits 0, or prints one error line and
//! exits 64 (`EX_USAGE`) for bad arguments (a connection string that does not parse, `--args`
//! that is not a JSON array, an invalid name, `--exclude` without a broadcast or group) or 1 when
//! the service refuses the send or cannot be reached.

use clap::Args;
use serde_json::value::RawValue;
use switchboard_sdk::management::{ManagementClient, ManagementError};

use crate::cli_broker::{EXIT_FAILED, block_on, usage};

/// Arguments of `switchboard send`.
#[derive(Args, Debug, Clone)]
pub(crate) struct SendArgs {
    #[command(flatten)]
    pub(crate) broker: crate::cli_broker::BrokerArgs,
    /// Hub to send to.
    #[arg(long, value_name = "HUB")]
    pub(crate) hub: String,
    /// Client method to invoke.
    #[arg(long, value_name = "TARGET")]
    pub(crate) target: String,
    /// Arguments of the invocation, as a JSON array.
    #[arg(long, value_name = "JSON", default_value = "[]")]
    pub(crate) args: String,
    // Ids and names may start with '-' (connection ids are random base64url), so these take
    // hyphen-leading values as values, not as flags.
    /// Send to every connection of this user.
    #[arg(
        long,
        value_name = "USER",
        allow_hyphen_values = true,
        conflicts_with_all = ["group", "connection"]
    )]
    pub(crate) user: Option<String>,
    /// Send to every connection in this group.
    #[arg(
        long,
        value_name = "GROUP",
        allow_hyphen_values = true,
        conflicts_with = "connection"
    )]
    pub(crate) group: Option<String>,
    /// Send to this connection only.
    #[arg(long, value_name = "ID", allow_hyphen_values = true)]
    pub(crate) connection: Option<String>,
    /// Connection id left out of a broadcast or group send (repeatable).
    #[arg(long = "exclude", value_name = "ID", allow_hyphen_values = true)]
    pub(crate) exclude: Vec<String>,
    /// A PEM file of CA certificates to trust for an https:// broker, besides the system's
    /// (SSL_CERT_FILE and SSL_CERT_DIR apply too).
    #[arg(long = "ca-file", value_name = "FILE", env = "SWITCHBOARD_CA_FILE")]
    pub(crate) ca_file: Option<std::path::PathBuf>,
}

/// Who the send goes to.
#[derive(Debug, PartialEq, Eq)]
enum Recipient<'a> {
    All,
    User(&'a str),
    Group(&'a str),
    Connection(&'a str),
}

impl SendArgs {
    /// The recipient, or why the flags do not make one.
    fn recipient(&self) -> Result<Recipient<'_>, String> {
        let recipient = match (&self.user, &self.group, &self.connection) {
            (None, None, None) => Recipient::All,
            (Some(u), None, None) => Recipient::User(u),
            (None, Some(g), None) => Recipient::Group(g),
            (None, None, Some(c)) => Recipient::Connection(c),
            _ => return Err("give at most one of --user, --group and --connection".into()),
        };
        if !self.exclude.is_empty()
            && matches!(recipient, Recipient::User(_) | Recipient::Connection(_))
        {
            return Err("--exclude applies only to a broadcast or a --group send".into());
        }
        Ok(recipient)
    }
}

/// Runs `switchboard send` on a fresh single-threaded runtime; returns the exit code.
pub(crate) fn main(args: SendArgs) -> i32 {
    block_on(run(args))
}

/// Runs `switchboard send`; returns the exit code.
pub(crate) async fn run(args: SendArgs) -> i32 {
    let recipient = match args.recipient() {
        Ok(r) => r,
        Err(e) => return usage(&e),
    };
    let cs = match args.broker.parse() {
        Ok(cs) => cs,
        Err(e) => return usage(&e),
    };
    // Kept as raw JSON: the values reach the clients exactly as written.
    let values: Vec<Box<RawValue>> = match serde_json::from_str(&args.args) {
        Ok(v) => v,
        Err(e) => return usage(&format!("--args must be a JSON array: {e}")),
    };
    let options = switchboard_sdk::management::ManagementOptions {
        ca_file: args.ca_file.clone(),
        ..Default::default()
    };
    let client = match ManagementClient::with_options(cs, options) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("switchboard: {e}");
            return EXIT_FAILED;
        }
    };
    let hub = client.hub(&args.hub);
    let excluded: Vec<&str> = args.exclude.iter().map(String::as_str).collect();
    let target = args.target.as_str();
    let (result, what) = match recipient {
        Recipient::All => (
            hub.send_all(target, &values, &excluded).await,
            "all".to_owned(),
        ),
        Recipient::User(u) => (
            hub.send_user(u, target, &values).await,
            format!("user '{u}'"),
        ),
        Recipient::Group(g) => (
            hub.send_group(g, target, &values, &excluded).await,
            format!("group '{g}'"),
        ),
        Recipient::Connection(c) => (
            hub.send_connection(c, target, &values).await,
            format!("connection '{c}'"),
        ),
    };
    match result {
        Ok(accepted) => {
            let status = accepted
                .status
                .map(|s| format!(" ({s})"))
                .unwrap_or_default();
            println!("sent to {what} of hub '{}'{status}", args.hub);
            0
        }
        Err(ManagementError::InvalidArgument(e)) => usage(&e),
        Err(e) => {
            eprintln!(
                "switchboard: send to {what} of hub '{}' failed: {e}",
                args.hub
            );
            EXIT_FAILED
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli_broker::EXIT_USAGE;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        send: SendArgs,
    }

    #[test]
    fn ids_starting_with_a_hyphen_are_values() {
        use clap::Parser;
        let base = [
            "send",
            "--connection-string",
            "Endpoint=http://x;AccessKey=k;",
        ];
        let parse = |extra: &[&str]| {
            Cli::try_parse_from(
                base.iter()
                    .chain(["--hub", "h", "--target", "t"].iter())
                    .chain(extra),
            )
            .map(|c| c.send)
        };
        let a = parse(&["--connection", "-b3x_Q", "--exclude", "-z"]).expect("parsed");
        assert_eq!(a.connection.as_deref(), Some("-b3x_Q"));
        assert_eq!(a.exclude, ["-z"]);
        let a = parse(&["--user", "-u"]).expect("parsed");
        assert_eq!(a.user.as_deref(), Some("-u"));
        let a = parse(&["--group", "--g"]).expect("parsed");
        assert_eq!(a.group.as_deref(), Some("--g"));
    }

    fn args(user: Option<&str>, group: Option<&str>, connection: Option<&str>) -> SendArgs {
        SendArgs {
            broker: crate::cli_broker::BrokerArgs {
                connection_string: "Endpoint=http://127.0.0.1;Port=9;AccessKey=k;".into(),
            },
            hub: "chat".into(),
            target: "t".into(),
            args: "[]".into(),
            user: user.map(str::to_owned),
            group: group.map(str::to_owned),
            connection: connection.map(str::to_owned),
            exclude: Vec::new(),
            ca_file: None,
        }
    }

    #[test]
    fn recipients() {
        assert_eq!(args(None, None, None).recipient(), Ok(Recipient::All));
        assert_eq!(
            args(Some("u"), None, None).recipient(),
            Ok(Recipient::User("u"))
        );
        assert_eq!(
            args(None, Some("g"), None).recipient(),
            Ok(Recipient::Group("g"))
        );
        assert_eq!(
            args(None, None, Some("c")).recipient(),
            Ok(Recipient::Connection("c"))
        );
        assert!(args(Some("u"), Some("g"), None).recipient().is_err());
        let mut excluded = args(None, Some("g"), None);
        excluded.exclude = vec!["x".into()];
        assert!(excluded.recipient().is_ok());
        excluded.group = None;
        excluded.user = Some("u".into());
        assert!(excluded.recipient().is_err());
    }

    #[tokio::test]
    async fn bad_arguments_are_usage_errors() {
        let mut bad_json = args(None, None, None);
        bad_json.args = "[1,".into();
        assert_eq!(run(bad_json).await, EXIT_USAGE);
        let mut not_array = args(None, None, None);
        not_array.args = "{}".into();
        assert_eq!(run(not_array).await, EXIT_USAGE);
        let mut bad_cs = args(None, None, None);
        bad_cs.broker.connection_string = "nonsense".into();
        assert_eq!(run(bad_cs).await, EXIT_USAGE);
        let mut bad_hub = args(None, None, None);
        bad_hub.hub = "1hub".into();
        assert_eq!(run(bad_hub).await, EXIT_USAGE);
        // Nothing listens on port 9.
        assert_eq!(run(args(None, None, None)).await, EXIT_FAILED);
    }
}
