//! The `switchboard` binary: parse the command line, load the configuration, run.
//!
//! Exit codes: 0 on a clean stop, 64 (`EX_USAGE`) for a bad configuration, printed as one line
//! naming the key at fault, 1 for anything else.

use mimalloc::MiMalloc;

#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

mod cli;
mod cli_admin;
mod cli_broker;
mod cli_send;
mod cli_trace;

fn main() {
    std::process::exit(cli::main());
}
