//! `leadlink sim`: the ConnectSafely simulator on its own.

use super::init_logging;
use crate::config::LogFormat;
use crate::sim::{self, SimOptions};
use anyhow::Context;
use std::net::SocketAddr;

#[derive(clap::Args)]
pub struct SimArgs {
    #[arg(long, default_value = "127.0.0.1:9100")]
    listen: SocketAddr,
    /// Accepted bearer keys (repeatable).
    #[arg(long = "api-key", default_values_t = vec!["sim-api-key".to_string()])]
    api_keys: Vec<String>,
    /// Weekly limit of every account.
    #[arg(long, default_value_t = 90)]
    limit: u32,
    /// Turn off the per-minute API limits.
    #[arg(long)]
    no_per_minute_limits: bool,
}

pub async fn run(args: SimArgs) -> anyhow::Result<()> {
    init_logging(LogFormat::Text, "info", None);
    let listen = args.listen;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    tracing::info!(%listen, "ConnectSafely simulator listening");
    let options = SimOptions {
        api_keys: args.api_keys,
        default_limit: args.limit,
        per_minute_limits: !args.no_per_minute_limits,
        ..SimOptions::default()
    };
    sim::serve(listener, options).await?;
    Ok(())
}
