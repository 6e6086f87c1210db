//! Getting committed messages onto the broker: right away after a commit, and by the relay
//! for whatever was left behind or falls due later. Also the probe of a refused API key.

use super::Services;
use crate::queue::Queue;
use crate::store::{OutboxMessage, Store};
use chrono::Utc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

const RELAY_BATCH: i64 = 200;
/// The longest pause between relay passes while the broker is unreachable.
const RELAY_OUTAGE_MAX_PAUSE: Duration = Duration::from_secs(10);

/// Publishes messages just committed; what fails stays in the outbox for the relay.
pub async fn publish_now<Q: Queue, S: Store>(store: &S, queue: &Q, messages: Vec<OutboxMessage>) {
    let mut done = Vec::with_capacity(messages.len());
    for message in messages {
        match queue.publish(message.topic, &message.reference).await {
            Ok(()) => done.push(message.outbox_id),
            Err(error) => {
                tracing::warn!(%error, "publish failed; the relay will retry from the outbox");
                break;
            }
        }
    }
    if let Err(error) = store.published(&done).await {
        // Harmless: the relay publishes them again and consumers ignore duplicates.
        tracing::warn!(%error, "could not forget published outbox rows");
    }
}

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
                    let ok = q.publish(message.topic, &message.reference).await.is_ok();
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
