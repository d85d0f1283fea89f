//! `switchboard-loadtest`: the load generator for Switchboard (see the library docs for the
//! scenarios). Prints a one-screen summary and optionally writes the report as JSON
//! (`--json-out`) and as SVG charts or an HTML page (`--report`).
//!
//! Exit codes: 0 the run succeeded; 1 the run failed (no connection came up, errors dominated,
//! the broker was unreachable, a file could not be written: see
//! [`switchboard_loadtest::verdict`]), with one line `switchboard-loadtest: <why>` on stderr
//! after the summary; 2 a usage error (an unknown or missing option, a value out of range, a
//! connection string that does not parse), as clap reports them.

use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser};
use switchboard_loadtest::{Common, Scenario, check_usage, run, workers};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The run failed.
const EXIT_FAILED: u8 = 1;
/// The options are wrong (clap's code for usage errors).
const EXIT_USAGE: u8 = 2;

const AFTER_HELP: &str = "\
Pointing at a broker: --connection-string 'Endpoint=http://127.0.0.1;Port=8080;AccessKey=<key>;Version=1.0;'
(or SWITCHBOARD_CONNECTION_STRING), or --url and --key; an explicit --url or --key overrides the
string's endpoint or key.

A run fails, and stops early, when no connection came up after the connect phase, or when
errors dominate: at least 10 errors and more errors than successes (connections that came up,
messages sent and received) over the last 5 s, checked every second. A finished run also fails
when it counted more errors than connections up and messages sent and received together. Errors
are counted by kind (unauthorized, http_status, connection_refused, timeout, tls, dns,
closed_by_server, protocol, check, other) with the first message of each kind, in the summary
and in the JSON report (error_kinds, failure, stopped_early).

Exit codes: 0 the run succeeded; 1 the run failed (no connection came up, errors dominated, the
broker was unreachable; one line on stderr says why); 2 usage error.";

#[derive(Parser)]
#[command(
    name = "switchboard-loadtest",
    about = "Load generator for Switchboard (scenarios S1–S11 of the performance targets)",
    after_help = AFTER_HELP
)]
struct Cli {
    #[command(flatten)]
    common: Common,
    #[command(subcommand)]
    scenario: Scenario,
}

fn main() -> ExitCode {
    // Clap's own errors (unknown or missing options, bad values) print its usage message and
    // exit 2; --help and --version exit 0.
    let matches = Cli::command().get_matches();
    let mut cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    if let Err(e) = prepare(&mut cli, &matches) {
        eprintln!("switchboard-loadtest: {}", one_line(&e));
        eprintln!("For more information, try '--help'.");
        return ExitCode::from(EXIT_USAGE);
    }
    match execute(&cli) {
        Ok(None) => ExitCode::SUCCESS,
        Ok(Some(failure)) => {
            eprintln!("switchboard-loadtest: {}", one_line_str(&failure));
            ExitCode::from(EXIT_FAILED)
        }
        Err(e) => {
            eprintln!("switchboard-loadtest: {}", one_line(&e));
            ExitCode::from(EXIT_FAILED)
        }
    }
}

/// The error chain joined with ": ", on one line (never a backtrace).
fn one_line(e: &anyhow::Error) -> String {
    one_line_str(&format!("{e:#}"))
}

fn one_line_str(s: &str) -> String {
    switchboard_loadtest::failure::one_line(s)
}

/// Whether option `id` was given on the command line (of the top level or of the subcommand:
/// the options are global).
fn given(matches: &ArgMatches, id: &str) -> bool {
    let here = matches!(matches.value_source(id), Some(ValueSource::CommandLine));
    here || matches
        .subcommand()
        .is_some_and(|(_, sub)| matches!(sub.value_source(id), Some(ValueSource::CommandLine)))
}

/// Resolves the connection string and checks the options (usage errors).
fn prepare(cli: &mut Cli, matches: &ArgMatches) -> Result<()> {
    if let Scenario::Worker { .. } = cli.scenario {
        return switchboard_loadtest::tls::init(cli.common.ca_file.as_deref());
    }
    if !matches!(cli.scenario, Scenario::Merge { .. }) {
        cli.common
            .apply_connection_string(given(matches, "url"), given(matches, "key"))?;
    }
    check_usage(&cli.common, &cli.scenario)?;
    if let Some(path) = &cli.common.ca_file {
        switchboard_loadtest::tls::init(Some(path))
            .with_context(|| format!("--ca-file {}", path.display()))?;
    } else {
        switchboard_loadtest::tls::init(None)?;
    }
    Ok(())
}

/// Runs the scenario: `Some(why)` when the run failed.
fn execute(cli: &Cli) -> Result<Option<String>> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    if let Scenario::Worker { spec, timeline } = &cli.scenario {
        rt.block_on(workers::worker_main(spec, *timeline))?;
        return Ok(None);
    }
    let report = rt.block_on(run(&cli.common, &cli.scenario))?;
    print!("{}", report.summary());
    if let Some(path) = &cli.common.json_out {
        let json = serde_json::to_string_pretty(&report)?;
        std::fs::write(path, json + "\n").with_context(|| format!("writing {}", path.display()))?;
    }
    for path in &cli.common.report {
        switchboard_loadtest::render::write(path, &report)?;
    }
    Ok(report.failure)
}
