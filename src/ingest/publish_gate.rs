//! The publishes ingest starts right after a commit, bounded: a broker that accepts
//! connections but never answers must not pile up tasks at the ingest rate. The outbox
//! already guarantees delivery, so a publish that finds no room is left to the relay.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::Semaphore;

pub struct PublishGate {
    permits: Arc<Semaphore>,
    limit: usize,
    /// How long one task may take; what it has not published by then is the relay's.
    deadline: Duration,
    left_to_relay: AtomicU64,
}

impl PublishGate {
    pub fn new(limit: usize, deadline: Duration) -> PublishGate {
        PublishGate {
            permits: Arc::new(Semaphore::new(limit)),
            limit,
            deadline,
            left_to_relay: AtomicU64::new(0),
        }
    }

    /// Runs `publish` detached if fewer than the limit are under way; otherwise drops it
    /// (the relay publishes the committed rows after its grace) and says so.
    pub fn spawn(&self, publish: impl Future<Output = ()> + Send + 'static) -> bool {
        let Ok(permit) = self.permits.clone().try_acquire_owned() else {
            self.left_to_relay.fetch_add(1, Ordering::Relaxed);
            return false;
        };
        let deadline = self.deadline;
        tokio::spawn(async move {
            if tokio::time::timeout(deadline, publish).await.is_err() {
                tracing::warn!(
                    ?deadline,
                    "publish after commit timed out; the relay covers it"
                );
            }
            drop(permit);
        });
        true
    }

    /// Publish tasks under way now.
    pub fn in_flight(&self) -> usize {
        self.limit - self.permits.available_permits()
    }

    /// Commits whose publish was left to the relay because the limit was reached.
    pub fn left_to_relay(&self) -> u64 {
        self.left_to_relay.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn no_more_than_the_limit_run_and_a_stuck_one_ends_at_its_deadline() {
        let gate = PublishGate::new(2, Duration::from_millis(200));
        let stuck = || std::future::pending::<()>();
        assert!(gate.spawn(stuck()));
        assert!(gate.spawn(stuck()));
        assert!(!gate.spawn(stuck()));
        assert_eq!((gate.in_flight(), gate.left_to_relay()), (2, 1));
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(gate.in_flight(), 0);
        assert!(gate.spawn(async {}));
    }
}
