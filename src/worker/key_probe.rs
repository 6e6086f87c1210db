//! The probe of a refused API key.

use super::Services;
use crate::outbox::publish_now;
use crate::queue::Queue;
use crate::store::Store;
use chrono::Utc;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// While the key is paused, one process per interval tries it with a call that costs no
/// quota, and lifts the pause when it works.
pub async fn probe_key_loop<Q: Queue, S: Store>(
    services: Arc<Services<Q, S>>,
    shutdown: CancellationToken,
) {
    let interval = services.config.connectsafely.key_probe_interval;
    let tick = interval.min(Duration::from_secs(5));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(tick) => {}
        }
        let now = Utc::now();
        let next =
            now + chrono::Duration::from_std(interval).unwrap_or(chrono::Duration::minutes(1));
        match services.store.claim_key_probe(now, next).await {
            Ok(true) => {}
            Ok(false) => continue,
            Err(error) => {
                tracing::warn!(%error, "could not read the key state");
                continue;
            }
        }
        // The probe counts against the key's per-minute budget like any call.
        let key = (
            "key".to_string(),
            services.config.connectsafely.rate_limits.key_per_minute,
        );
        if !matches!(services.store.take_api_calls(&[key], now).await, Ok(None)) {
            continue;
        }
        match services.api.probe_key().await {
            Ok(()) => match services.store.resume_key(Utc::now()).await {
                Ok(publish) => {
                    tracing::info!(
                        jobs = publish.len(),
                        "ConnectSafely accepts the API key again; resuming"
                    );
                    publish_now(&services.store, &services.queue, publish).await;
                }
                Err(error) => tracing::warn!(%error, "could not resume after the key recovered"),
            },
            Err(error) => {
                tracing::error!(%error, "ConnectSafely API key still refused; sending stays paused")
            }
        }
    }
}
