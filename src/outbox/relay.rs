//! The relay: publishes due outbox rows, in every process, until shutdown.

use super::publish_now;
use crate::queue::Queue;
use crate::store::Store;
use chrono::Utc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

const RELAY_BATCH: i64 = 200;
/// The longest pause between relay passes while the broker is unreachable.
const RELAY_OUTAGE_MAX_PAUSE: Duration = Duration::from_secs(10);

/// Publishes due outbox rows until shutdown. Safe to run in every process.
pub async fn relay_loop<Q: Queue, S: Store>(
    store: S,
    queue: Q,
    interval: Duration,
    shutdown: CancellationToken,
) {
    // While the broker refuses, wait longer between passes instead of hammering both.
    let mut outage_pause: Option<Duration> = None;
    while !shutdown.is_cancelled() {
        // Shared waits' timers: one job per paused account or CRM tries again.
        match store.wake_due_waits(Utc::now()).await {
            Ok(woken) => publish_now(&store, &queue, woken).await,
            Err(error) => tracing::warn!(%error, "could not wake waiting jobs"),
        }
        let q = queue.clone();
        let broker_failed = Arc::new(AtomicBool::new(false));
        let failed = broker_failed.clone();
        let published = store
            .relay_due(Utc::now(), RELAY_BATCH, move |message| {
                let (q, failed) = (q.clone(), failed.clone());
                async move {
                    let ok = q.publish(message.message).await.is_ok();
                    if !ok {
                        failed.store(true, Ordering::Relaxed);
                    }
                    ok
                }
            })
            .await;
        let pause = if broker_failed.load(Ordering::Relaxed) {
            let pause = outage_pause.map_or(interval, |p| (p * 2).min(RELAY_OUTAGE_MAX_PAUSE));
            if outage_pause.is_none() {
                tracing::warn!("broker unreachable; the relay keeps due messages in the outbox");
            }
            outage_pause = Some(pause);
            pause
        } else {
            if outage_pause.take().is_some() {
                tracing::info!("broker reachable again; the relay resumes");
            }
            match published {
                Ok(n) if n as i64 == RELAY_BATCH => Duration::ZERO,
                Ok(n) => {
                    if n > 0 {
                        tracing::debug!(published = n, "relay published due messages");
                    }
                    // Sleep until the next row is due, but never longer than the interval.
                    match store.next_due().await {
                        Ok(Some(next)) => (next - Utc::now())
                            .to_std()
                            .unwrap_or_default()
                            .min(interval),
                        _ => interval,
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "relay pass failed");
                    interval
                }
            }
        };
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(pause.max(Duration::from_millis(50))) => {}
        }
    }
}
