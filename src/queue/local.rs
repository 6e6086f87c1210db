//! The in-process queue of the embedded mode: two lanes in memory, fed by the outbox.
//!
//! Memory is not trusted to survive: a message lost with the process is rebuilt at start
//! from what the store says is due (`OutboxStore::restore_due`), and a waiting job is an
//! outbox row due later, not a message held here.

use super::{Handled, Handler, Message, Queue, QueueError, REQUEUE_PAUSE, Topic, run_handler};
use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

#[derive(Clone, Default)]
pub struct Local {
    lanes: Arc<[Lane; 2]>,
}

#[derive(Default)]
struct Lane {
    queued: Mutex<Queued>,
    /// Holds a wake-up for the consumer when it is not waiting yet, so none is missed.
    arrived: Notify,
}

/// Messages in arrival order; one that is queued already is not queued twice (it points at
/// state, so a second copy would find the same thing to do).
#[derive(Default)]
struct Queued {
    order: VecDeque<Message>,
    present: HashSet<Message>,
}

impl Local {
    pub fn new() -> Local {
        Local::default()
    }

    fn lane(&self, topic: Topic) -> &Lane {
        match topic {
            Topic::Connect => &self.lanes[0],
            Topic::Writeback => &self.lanes[1],
        }
    }

    fn push(&self, message: Message) {
        let lane = self.lane(message.topic());
        let mut queued = lane.queued.lock().unwrap_or_else(PoisonError::into_inner);
        if queued.present.insert(message) {
            queued.order.push_back(message);
            lane.arrived.notify_one();
        }
    }

    /// The next message, once there is one.
    async fn next(&self, topic: Topic) -> Message {
        let lane = self.lane(topic);
        loop {
            {
                let mut queued = lane.queued.lock().unwrap_or_else(PoisonError::into_inner);
                if let Some(message) = queued.order.pop_front() {
                    // Published again while its handler runs, it is queued again: the state
                    // may have changed after the handler read it.
                    queued.present.remove(&message);
                    return message;
                }
            }
            lane.arrived.notified().await;
        }
    }

    /// How many messages wait in `topic`'s lane.
    pub fn len(&self, topic: Topic) -> usize {
        let queued = self.lane(topic).queued.lock();
        queued.unwrap_or_else(PoisonError::into_inner).order.len()
    }
}

impl Queue for Local {
    async fn publish(&self, message: Message) -> Result<(), QueueError> {
        self.push(message);
        Ok(())
    }

    async fn consume(
        &self,
        topic: Topic,
        concurrency: usize,
        handler: Handler,
        shutdown: CancellationToken,
    ) {
        let permits = Arc::new(Semaphore::new(concurrency.max(1)));
        let mut in_flight = JoinSet::new();
        loop {
            while in_flight.try_join_next().is_some() {}
            let permit = tokio::select! {
                _ = shutdown.cancelled() => break,
                permit = permits.clone().acquire_owned() => permit.expect("semaphore is never closed"),
            };
            let message = tokio::select! {
                _ = shutdown.cancelled() => break,
                message = self.next(topic) => message,
            };
            let handler = handler.clone();
            let queue = self.clone();
            let shutdown = shutdown.clone();
            in_flight.spawn(async move {
                if run_handler(&handler, message).await == Handled::Requeue {
                    tokio::select! {
                        // What was not done is still due in the store: the next start
                        // rebuilds it.
                        _ = shutdown.cancelled() => {}
                        _ = tokio::time::sleep(REQUEUE_PAUSE) => queue.push(message),
                    }
                }
                drop(permit);
            });
        }
        while in_flight.join_next().await.is_some() {}
    }

    async fn ping(&self) -> Result<(), QueueError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;
    use uuid::Uuid;

    fn recording(seen: Arc<Mutex<Vec<Message>>>, answer: Handled) -> Handler {
        Arc::new(move |message| {
            let seen = seen.clone();
            Box::pin(async move {
                seen.lock().unwrap().push(message);
                answer
            })
        })
    }

    async fn settle() {
        for _ in 0..20 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_message_is_delivered_once_even_if_published_twice_while_queued() {
        let queue = Local::new();
        let job = Message::Connect(Uuid::now_v7());
        queue.publish(job).await.unwrap();
        queue.publish(job).await.unwrap();
        queue.publish(Message::Writeback(7)).await.unwrap();
        assert_eq!(queue.len(Topic::Connect), 1);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let shutdown = CancellationToken::new();
        let consumer = tokio::spawn({
            let queue = queue.clone();
            let handler = recording(seen.clone(), Handled::Ack);
            let shutdown = shutdown.clone();
            async move { queue.consume(Topic::Connect, 4, handler, shutdown).await }
        });
        settle().await;
        assert_eq!(*seen.lock().unwrap(), vec![job]);
        // The writeback lane is its own.
        assert_eq!(queue.len(Topic::Writeback), 1);
        // Published again after it was taken, it is delivered again.
        queue.publish(job).await.unwrap();
        settle().await;
        assert_eq!(seen.lock().unwrap().len(), 2);
        shutdown.cancel();
        consumer.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_requeued_or_panicking_message_comes_back_after_the_pause() {
        let queue = Local::new();
        let calls = Arc::new(AtomicUsize::new(0));
        let handler: Handler = Arc::new({
            let calls = calls.clone();
            move |_| {
                let calls = calls.clone();
                Box::pin(async move {
                    match calls.fetch_add(1, Ordering::SeqCst) {
                        0 => Handled::Requeue,
                        1 => panic!("a handler bug"),
                        _ => Handled::Ack,
                    }
                })
            }
        });
        let shutdown = CancellationToken::new();
        let consumer = tokio::spawn({
            let queue = queue.clone();
            let shutdown = shutdown.clone();
            async move { queue.consume(Topic::Writeback, 1, handler, shutdown).await }
        });
        queue.publish(Message::Writeback(1)).await.unwrap();
        settle().await;
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        tokio::time::sleep(REQUEUE_PAUSE + Duration::from_millis(10)).await;
        settle().await;
        assert_eq!(
            calls.load(Ordering::SeqCst),
            2,
            "requeued message redelivered"
        );
        tokio::time::sleep(REQUEUE_PAUSE + Duration::from_millis(10)).await;
        settle().await;
        assert_eq!(calls.load(Ordering::SeqCst), 3, "a panic requeues too");
        assert_eq!(queue.len(Topic::Writeback), 0);
        shutdown.cancel();
        consumer.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn at_most_concurrency_handlers_run_and_shutdown_waits_for_them() {
        let queue = Local::new();
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let finished = Arc::new(AtomicUsize::new(0));
        let handler: Handler = Arc::new({
            let (running, most, finished) = (running.clone(), most.clone(), finished.clone());
            move |_| {
                let (running, most, finished) = (running.clone(), most.clone(), finished.clone());
                Box::pin(async move {
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    running.fetch_sub(1, Ordering::SeqCst);
                    finished.fetch_add(1, Ordering::SeqCst);
                    Handled::Ack
                })
            }
        });
        for id in 0..6 {
            queue.publish(Message::Writeback(id)).await.unwrap();
        }
        let shutdown = CancellationToken::new();
        let consumer = tokio::spawn({
            let queue = queue.clone();
            let shutdown = shutdown.clone();
            async move { queue.consume(Topic::Writeback, 2, handler, shutdown).await }
        });
        settle().await;
        shutdown.cancel();
        consumer.await.unwrap();
        assert_eq!(most.load(Ordering::SeqCst), 2);
        // The two in flight at shutdown finished; the rest were left queued.
        assert_eq!(finished.load(Ordering::SeqCst), 2);
        assert_eq!(queue.len(Topic::Writeback), 4);
    }
}
