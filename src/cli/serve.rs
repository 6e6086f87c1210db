//! `leadlink serve`, `ingest` and `worker`: run the service in one role until a signal.

use super::init_logging;
use crate::app::{self, Role};
use crate::config::Config;
use crate::telemetry::traces::Traces;
use std::path::Path;

pub async fn run(config_path: Option<&Path>, role: Role) -> anyhow::Result<()> {
    let config = Config::load(config_path)?;
    let traces = Traces::start(&config.telemetry)?;
    init_logging(config.log.format, &config.log.filter, traces.as_ref());
    let mut running = app::start(config, role).await?;
    let shutdown = running.shutdown.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down: draining in-flight jobs");
        shutdown.cancel();
    });
    running.wait().await;
    if let Some(traces) = traces {
        // The spans of the work just drained are still batched.
        tokio::task::spawn_blocking(move || traces.shutdown()).await?;
    }
    tracing::info!("stopped");
    Ok(())
}

pub(super) async fn wait_for_signal() {
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
