//! `leadlink serve`, `ingest` and `worker`: run the service in one role until a signal.

use super::init_logging;
use crate::app::{self, Role};
use crate::config::Config;
use std::path::Path;

pub async fn run(config_path: Option<&Path>, role: Role) -> anyhow::Result<()> {
    let config = Config::load(config_path)?;
    init_logging(config.log.format, &config.log.filter);
    let mut running = app::start(config, role).await?;
    let shutdown = running.shutdown.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down: draining in-flight jobs");
        shutdown.cancel();
    });
    running.wait().await;
    tracing::info!("stopped");
    Ok(())
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
