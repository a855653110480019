//! The `tollgate` binary: parse the command line and hand over to the layered start-up.

mod cli;
mod client;
mod logging;
mod startup;

use clap::Parser;

/// mimalloc: the request path allocates many small short-lived buffers; glibc malloc showed up at ~9% of
/// CPU in profiles.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    startup::run(cli)
}
