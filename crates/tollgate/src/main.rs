//! The `tollgate` binary: parse the command line and hand over to the layered start-up.

mod cli;
mod client;
mod logging;
mod startup;

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    startup::run(cli)
}
