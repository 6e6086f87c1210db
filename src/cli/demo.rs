//! `leadlink demo`: the whole flow on one machine, no configuration, no services.

use super::init_logging;
use super::serve::wait_for_signal;
use crate::config::LogFormat;
use crate::demo::{self, Options};
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct DemoArgs {
    /// Keep the store in this directory (it must not hold one yet) instead of a temporary
    /// directory removed at the end.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Keep running after the summary, with the admin API and the status page, until Ctrl-C.
    #[arg(long)]
    serve: bool,
}

pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    // The demo's lines are the output; the service's own logs only when something is wrong.
    init_logging(LogFormat::Text, "warn", None);
    let options = Options {
        data: args.data,
        serve: args.serve,
    };
    if demo::run(options, wait_for_signal()).await? {
        Ok(())
    } else {
        anyhow::bail!("some sample leads did not reach the status they should have")
    }
}
