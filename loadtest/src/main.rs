//! `switchboard-loadtest`: the load generator for Switchboard (see the library docs for the
//! scenarios). Prints a one-screen summary and optionally writes the report as JSON
//! (`--json-out`) and as SVG charts or an HTML page (`--report`).

use anyhow::{Context, Result};
use clap::Parser;
use switchboard_loadtest::{Common, Scenario, run, workers};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "switchboard-loadtest",
    about = "Load generator for Switchboard (scenarios S1–S11 of the performance targets)"
)]
struct Cli {
    #[command(flatten)]
    common: Common,
    #[command(subcommand)]
    scenario: Scenario,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    switchboard_loadtest::tls::init(cli.common.ca_file.as_deref())?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    if let Scenario::Worker { spec, timeline } = &cli.scenario {
        return rt.block_on(workers::worker_main(spec, *timeline));
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
    Ok(())
}
