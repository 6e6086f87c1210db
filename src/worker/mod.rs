//! The workers: the connect stage, the writeback stage, and the key probe every worker runs
//! beside them (the outbox relay is `outbox::relay_loop`).

mod connect;
pub mod decide;
pub mod enrich;
mod gate;
mod key_probe;
mod writeback;

use crate::config::Config;
use crate::connectsafely;
use crate::crm::{Enricher, Writers};
use crate::lead::MessageTemplate;
use crate::queue::{Handled, Handler, Message, Queue, Topic};
use crate::store::{Store, StoreError};
use std::sync::Arc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// API failures are decisions (`decide`), not errors: only the store can fail a stage.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What the stages share.
pub struct Services<Q: Queue, S: Store> {
    pub config: Arc<Config>,
    pub store: S,
    pub queue: Q,
    pub api: connectsafely::Client,
    pub writers: Writers,
    /// Reads leads from the CRM for events that carried only ids.
    pub enricher: Enricher,
    pub template: Option<MessageTemplate>,
    /// Names this process in job leases.
    pub worker_id: String,
}

/// Starts the connect and writeback consumers and the key probe.
pub fn spawn<Q: Queue, S: Store>(
    services: Arc<Services<Q, S>>,
    shutdown: &CancellationToken,
    tasks: &mut JoinSet<()>,
) {
    let config = services.config.clone();
    let handler: Handler = {
        let services = services.clone();
        Arc::new(move |message| {
            let services = services.clone();
            Box::pin(async move {
                outcome(match message {
                    Message::Connect(job_id) => connect::handle(&services, job_id).await,
                    Message::Writeback(id) => writeback::handle(&services, id).await,
                })
            })
        })
    };
    let consumers = [
        (Topic::Connect, config.broker.connect_concurrency),
        (Topic::Writeback, config.broker.writeback_concurrency),
    ];
    for (topic, concurrency) in consumers {
        let (queue, handler, token) = (services.queue.clone(), handler.clone(), shutdown.clone());
        tasks.spawn(async move { queue.consume(topic, concurrency, handler, token).await });
    }
    tasks.spawn(key_probe::probe_key_loop(services, shutdown.clone()));
}

fn outcome(result: Result<(), WorkerError>) -> Handled {
    match result {
        Ok(()) => Handled::Ack,
        // Someone else owns the job now; this delivery has nothing left to do.
        Err(WorkerError::Store(StoreError::LeaseLost(job))) => {
            tracing::info!(%job, "lease lost to another worker");
            Handled::Ack
        }
        Err(error) => {
            tracing::error!(%error, "job not settled; it will be retried");
            Handled::Requeue
        }
    }
}
