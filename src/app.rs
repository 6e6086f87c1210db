//! Wiring: builds the services from a config and runs the ingest side, the worker side, or
//! both, until shutdown; then drains in-flight work.

use crate::config::Config;
use crate::connectsafely;
use crate::crm::{Clients, CrmError, Enricher, Writers};
use crate::ingest::{self, IngestState, PublishGate};
use crate::outbox;
use crate::queue::{Broker, Queue};
use crate::secret::Secret;
use crate::signature::standard_webhooks::Verifier;
use crate::store::{OutboxStore, ProcessLock, SqlStore, Store, StoreError};
use crate::telemetry::store_gauges::StoreGauges;
use crate::telemetry::{self, MetricsEndpoint, metrics};
use crate::worker::{self, Services};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Crm(#[from] CrmError),
    #[error("connectsafely client: {0}")]
    Api(#[from] connectsafely::ApiError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("{0}")]
    Config(String),
}

/// Which sides this process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Ingest and workers in one process (`leadlink serve`).
    All,
    /// The HTTP side (webhooks, admin API) and the relay.
    Ingest,
    /// The workers and the relay.
    Worker,
}

impl Role {
    fn runs_ingest(self) -> bool {
        matches!(self, Role::All | Role::Ingest)
    }

    fn runs_worker(self) -> bool {
        matches!(self, Role::All | Role::Worker)
    }
}

/// A started process: where it listens, and how to stop it.
pub struct Running {
    pub ingest_addr: Option<SocketAddr>,
    pub health_addr: Option<SocketAddr>,
    pub shutdown: CancellationToken,
    tasks: JoinSet<()>,
    store: SqlStore,
    /// Released after the store is closed, so a successor never meets this process's pool.
    lock: Option<ProcessLock>,
    drain_timeout: std::time::Duration,
}

impl Running {
    /// Asks everything to stop, waits for in-flight jobs (bounded), then closes the pool.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        self.wait().await;
    }

    /// Waits until the shutdown token is cancelled and the tasks have drained.
    pub async fn wait(&mut self) {
        self.shutdown.cancelled().await;
        let drained = tokio::time::timeout(self.drain_timeout, async {
            while self.tasks.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!("shutdown timeout reached; abandoning unfinished work to redelivery");
            self.tasks.abort_all();
        }
        self.store.close().await;
        self.lock.take();
    }
}

pub async fn start(config: Config, role: Role) -> Result<Running, AppError> {
    let config = Arc::new(config);
    let clients = Clients::from_config(&config.crm)?;
    let writers = Writers::from_config(&config.crm, &config.writeback, &clients)?;
    if config.broker.url.is_none() && role != Role::All {
        return Err(AppError::Config(
            "ingest and worker processes scale out through RabbitMQ: set broker.url, or run `leadlink serve` (embedded: one process)".into(),
        ));
    }
    let lock = ProcessLock::serving(&config.database).await?;
    let store = SqlStore::connect(&config.database, config.worker.relay_grace).await?;
    let queue = Broker::for_service(&config.broker);
    if queue.is_in_process() {
        // The messages of the last run died with it: rebuild them from the store.
        let restored = store.restore_due(chrono::Utc::now()).await?;
        tracing::info!(
            store = %crate::secret::redact_url(config.database.url.expose()),
            restored,
            "embedded mode: SQLite store and in-process queue"
        );
    }
    // Declares the topology; a broker that is down now is not fatal: the outbox waits for it.
    if let Err(error) = queue.ping().await {
        tracing::warn!(%error, "broker unreachable at start-up; jobs are kept in the outbox until it answers");
    }
    let shutdown = CancellationToken::new();
    let mut tasks = JoinSet::new();
    metrics::recorder();
    tasks.spawn(metrics::upkeep_loop(shutdown.clone()));
    let ingest_state = ingest_state(&config, &store, &queue)?;
    // `/metrics` goes on its own address when one is set, else beside the first of these.
    let mut metrics_router = Some(metrics_router(&config, &store));
    if let Some(addr) = config.metrics.listen {
        let router = metrics_router.take().expect("not placed yet");
        serve(router, addr, &shutdown, &mut tasks).await?;
    }
    let mut ingest_addr = None;
    if role.runs_ingest() {
        let router = with_metrics(ingest::router(ingest_state.clone()), &mut metrics_router);
        ingest_addr = Some(serve(router, config.server.listen, &shutdown, &mut tasks).await?);
    }
    let mut health_addr = None;
    if role.runs_worker() {
        let services = worker_services(&config, &store, &queue, writers, &clients, &ingest_state)?;
        worker::spawn(services, &shutdown, &mut tasks);
        if let Some(addr) = config.worker.health_listen {
            let router = with_metrics(
                ingest::health_router(ingest_state.clone()),
                &mut metrics_router,
            );
            health_addr = Some(serve(router, addr, &shutdown, &mut tasks).await?);
        }
    }
    tasks.spawn(outbox::relay_loop(
        store.clone(),
        queue.clone(),
        config.worker.relay_interval,
        shutdown.clone(),
    ));
    Ok(Running {
        ingest_addr,
        health_addr,
        shutdown,
        tasks,
        store,
        lock: Some(lock),
        drain_timeout: config.worker.shutdown_timeout,
    })
}

fn metrics_router(config: &Config, store: &SqlStore) -> axum::Router {
    telemetry::router(Arc::new(MetricsEndpoint {
        token: config.metrics.token.clone(),
        gauges: config
            .metrics
            .store_gauges
            .then(|| StoreGauges::new(store.clone(), config.accounts.clone())),
    }))
}

/// `router`, with `/metrics` if it has not been placed elsewhere yet.
fn with_metrics(router: axum::Router, metrics: &mut Option<axum::Router>) -> axum::Router {
    match metrics.take() {
        Some(metrics) => router.merge(metrics),
        None => router,
    }
}

/// What the HTTP side works with; `leadlink import` builds the same.
pub fn ingest_state(
    config: &Config,
    store: &SqlStore,
    queue: &Broker,
) -> Result<Arc<IngestState<Broker, SqlStore>>, AppError> {
    let events_verifier = match &config.sources.events {
        Some(events) => {
            let secrets: Vec<&str> = events.secrets.iter().map(Secret::expose).collect();
            Some(
                Verifier::new(&secrets)
                    .map_err(|e| AppError::Config(format!("sources.events.secrets: {e}")))?,
            )
        }
        None => None,
    };
    Ok(Arc::new(IngestState {
        config: config.ingest(),
        store: store.clone(),
        queue: queue.clone(),
        events_verifier,
        template: config.message.template.clone(),
        ignored: Mutex::new(Default::default()),
        publishes: PublishGate::new(
            config.broker.publish_concurrency,
            config.broker.publish_timeout * 2,
        ),
    }))
}

fn worker_services(
    config: &Arc<Config>,
    store: &SqlStore,
    queue: &Broker,
    writers: Writers,
    clients: &Clients,
    ingest_state: &Arc<IngestState<Broker, SqlStore>>,
) -> Result<Arc<Services<Broker, SqlStore>>, AppError> {
    let api_key = config
        .connectsafely
        .api_key
        .clone()
        .ok_or_else(|| AppError::Config("connectsafely.api_key is missing".into()))?;
    let ingest_state = ingest_state.clone();
    Ok(Arc::new(Services {
        config: config.clone(),
        store: store.clone(),
        queue: queue.clone(),
        api: connectsafely::Client::new(
            &config.connectsafely.base_url,
            api_key,
            config.connectsafely.timeout,
        )?,
        writers,
        enricher: Enricher::new(
            &config.crm,
            clients,
            config.sources.priority_fields(),
            move |source| ingest_state.config.fallback_account(source),
        ),
        template: config.message.template.clone(),
        worker_id: format!("{}-{}", hostname(), uuid::Uuid::new_v4()),
    }))
}

async fn serve(
    router: axum::Router,
    addr: SocketAddr,
    shutdown: &CancellationToken,
    tasks: &mut JoinSet<()>,
) -> Result<SocketAddr, AppError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| AppError::Bind { addr, source })?;
    let bound = listener
        .local_addr()
        .map_err(|source| AppError::Bind { addr, source })?;
    let token = shutdown.clone();
    tasks.spawn(async move {
        let result = axum::serve(listener, router)
            .with_graceful_shutdown(async move { token.cancelled().await })
            .await;
        if let Err(error) = result {
            tracing::error!(%error, "HTTP server stopped");
        }
    });
    tracing::info!(%bound, "listening");
    Ok(bound)
}

fn hostname() -> String {
    std::env::var("HOSTNAME").unwrap_or_else(|_| "worker".into())
}
