//! The `leadlink` binary: the service's roles, the simulator, and the operator's commands.
//! The commands live in `leadlink::cli`, one file each.

use clap::Parser;
use leadlink::cli::Cli;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    leadlink::cli::run(Cli::parse()).await
}
