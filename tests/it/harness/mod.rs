//! Test harness: each test gets its own database, its own queue prefix, its own simulator
//! and its own callback receiver, so tests run in parallel and repeatedly.

pub mod admin;
pub mod browser;
pub mod fake_hubspot;
pub mod fake_salesforce;
pub mod logs;
pub mod process;
pub mod proxy;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use chrono::Utc;
use leadlink::app::{self, Role, Running};
use leadlink::config::Config;
use leadlink::signature::standard_webhooks::{Signer, Verifier};
use leadlink::sim::{self, Sim, SimOptions};
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub const EVENTS_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
pub const CALLBACK_SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
pub const ADMIN_TOKEN: &str = "test-admin-token";
pub const API_KEY: &str = "sim-api-key";
pub const PG: &str = "postgres://postgres@127.0.0.1:5432";
pub const AMQP: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
/// The roles of a process that only ingests, and of one that only works.
pub const INGEST_ONLY: Role = Role::Ingest;
pub const WORKER_ONLY: Role = Role::Worker;
/// How long a test waits for something that should happen, before it fails.
pub const WAIT: Duration = Duration::from_secs(30);

/// One status change as the callback receiver got it.
#[derive(Debug, Clone)]
pub struct Received {
    pub webhook_id: String,
    pub data: Value,
}

#[derive(Clone, Default)]
pub struct CallbackState {
    pub received: Arc<Mutex<Vec<Received>>>,
    /// Statuses to answer with, in order; 204 once empty.
    pub answers: Arc<Mutex<VecDeque<u16>>>,
    pub rejected_signatures: Arc<Mutex<u32>>,
}

async fn receive_callback(
    State(state): State<CallbackState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> StatusCode {
    let verifier = Verifier::new(&[CALLBACK_SECRET]).unwrap();
    if verifier.verify(&headers, &body, Utc::now()).is_err() {
        *state.rejected_signatures.lock().unwrap() += 1;
        return StatusCode::UNAUTHORIZED;
    }
    let answer = state.answers.lock().unwrap().pop_front().unwrap_or(204);
    if (200..300).contains(&answer) {
        let envelope: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(envelope["type"], "lead.connect.status");
        state.received.lock().unwrap().push(Received {
            webhook_id: headers["webhook-id"].to_str().unwrap().to_string(),
            data: envelope["data"].clone(),
        });
    }
    StatusCode::from_u16(answer).unwrap()
}

async fn serve(router: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    addr
}

/// Where a test's store lives: a PostgreSQL database with RabbitMQ (scaled out), or a
/// SQLite file with the in-process queue (embedded).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

/// Everything outside leadlink that a test needs, isolated per test.
pub struct TestEnv {
    pub id: String,
    pub backend: Backend,
    pub database_url: String,
    /// The test's own directory: config files, and the SQLite store when embedded.
    pub dir: std::path::PathBuf,
    pub prefix: String,
    pub sim_url: String,
    pub callback_url: String,
    pub callback: CallbackState,
    pub http: reqwest::Client,
}

impl TestEnv {
    pub async fn new() -> TestEnv {
        Self::on(Backend::Postgres).await
    }

    /// A SQLite file and the in-process queue: no server needed.
    pub async fn embedded() -> TestEnv {
        Self::on(Backend::Sqlite).await
    }

    pub async fn on(backend: Backend) -> TestEnv {
        Self::with_sim_on(
            backend,
            SimOptions {
                per_minute_limits: false,
                ..SimOptions::default()
            },
        )
        .await
    }

    pub async fn with_sim_on(backend: Backend, options: SimOptions) -> TestEnv {
        logs::init();
        let id = uuid::Uuid::new_v4().simple().to_string()[..12].to_string();
        let dir = std::env::temp_dir().join(format!("leadlink-test-{id}"));
        std::fs::create_dir_all(&dir).unwrap();
        let database_url = match backend {
            Backend::Postgres => {
                let database = format!("leadlink_t_{id}");
                let admin = sqlx::PgPool::connect(&format!("{PG}/postgres"))
                    .await
                    .unwrap();
                sqlx::query(&format!("CREATE DATABASE {database}"))
                    .execute(&admin)
                    .await
                    .unwrap();
                admin.close().await;
                format!("{PG}/{database}")
            }
            Backend::Sqlite => format!("sqlite://{}/leadlink.db", dir.display()),
        };
        let sim_addr = serve(sim::router(Sim::new(options))).await;
        let callback = CallbackState::default();
        let callback_addr = serve(
            Router::new()
                .route("/callback", post(receive_callback))
                .with_state(callback.clone()),
        )
        .await;
        TestEnv {
            backend,
            database_url,
            dir,
            prefix: format!("t{id}"),
            sim_url: format!("http://{sim_addr}"),
            callback_url: format!("http://{callback_addr}/callback?token=cb-query-token"),
            callback,
            http: reqwest::Client::new(),
            id,
        }
    }

    /// A configuration with windows of seconds.
    pub fn config(&self) -> Config {
        Config::from_toml(&self.config_text()).expect("test config is valid")
    }

    /// The same configuration as TOML, for processes started from the binary.
    pub fn config_text(&self) -> String {
        format!(
            r#"
            [server]
            listen = "127.0.0.1:0"
            admin_token = "{ADMIN_TOKEN}"
            [broker]
            {broker_url}
            prefix = "{prefix}"
            prefetch = 4
            reconnect_min = "100ms"
            reconnect_max = "1s"
            publish_timeout = "2s"
            [database]
            url = "{db}"
            max_connections = 4
            [connectsafely]
            base_url = "{sim}"
            api_key = "{API_KEY}"
            default_account_id = "acc_default"
            timeout = "2s"
            key_probe_interval = "1s"
            [connectsafely.rate_limits]
            key_per_minute = 100000
            account_writes_per_minute = 100000
            account_reads_per_minute = 100000
            account_endpoints_per_minute = 100000
            [sources.events]
            secrets = ["{EVENTS_SECRET}"]
            [writeback.callback]
            url = "{callback}"
            secret = "{CALLBACK_SECRET}"
            timeout = "2s"
            [writeback.retry]
            max_attempts = 4
            base_delay = "300ms"
            max_delay = "1s"
            jitter = 0.0
            [retry]
            max_attempts = 3
            base_delay = "500ms"
            max_delay = "1s"
            jitter = 0.0
            [accounts.defaults]
            pacing = false
            quota_refresh = "2s"
            [worker]
            lease = "6s"
            relay_interval = "200ms"
            relay_grace = "2s"
            shutdown_timeout = "10s"
            "#,
            prefix = self.prefix,
            broker_url = match self.backend {
                Backend::Postgres => format!("url = \"{AMQP}\""),
                Backend::Sqlite => String::new(),
            },
            db = self.database_url,
            sim = self.sim_url,
            callback = self.callback_url,
        )
    }

    /// Writes `text` to a file in a fresh temporary directory.
    pub fn write_config(&self, text: &str) -> std::path::PathBuf {
        let path = self
            .dir
            .join(format!("config-{}.toml", uuid::Uuid::new_v4().simple()));
        std::fs::write(&path, text).unwrap();
        path
    }

    pub async fn start(&self, config: Config) -> TestApp {
        self.start_role(config, Role::All).await
    }

    pub async fn start_role(&self, config: Config, role: Role) -> TestApp {
        let running = app::start(config, role).await.expect("app starts");
        TestApp {
            addr: running.ingest_addr,
            running: Some(running),
            http: self.http.clone(),
        }
    }

    pub async fn sim_put(&self, path: &str, body: Value) {
        let response = self
            .http
            .put(format!("{}/_sim/{path}", self.sim_url))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(
            response.status().is_success(),
            "sim control {path}: {}",
            response.text().await.unwrap()
        );
    }

    pub async fn sim_get(&self, path: &str) -> Value {
        self.http
            .get(format!("{}/_sim/{path}", self.sim_url))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// Invitations the simulator recorded for one account and profile.
    pub async fn invitations(&self, account: &str, profile: &str) -> u64 {
        self.sim_get("invitations").await["accounts"][account][profile]
            .as_u64()
            .unwrap_or(0)
    }

    /// 429s the simulator answered: (hold, per minute).
    pub async fn rate_limited(&self) -> (u64, u64) {
        let stats = self.sim_get("stats").await;
        (
            stats["rateLimited"]["hold"].as_u64().unwrap(),
            stats["rateLimited"]["perMinute"].as_u64().unwrap(),
        )
    }

    pub async fn total_invitations(&self) -> u64 {
        self.sim_get("invitations").await["total"].as_u64().unwrap()
    }

    /// Status changes the callback got for one job, in arrival order.
    pub fn callbacks_for(&self, job: uuid::Uuid) -> Vec<Value> {
        let job = job.to_string();
        self.callback
            .received
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.data["jobId"] == job.as_str())
            .map(|r| r.data.clone())
            .collect()
    }

    pub fn callback_statuses(&self, job: uuid::Uuid) -> Vec<String> {
        self.callbacks_for(job)
            .iter()
            .map(|d| d["status"].as_str().unwrap().to_string())
            .collect()
    }

    /// Drops the test's database and queues.
    pub async fn cleanup(self) {
        self.cleanup_on(AMQP).await;
    }

    /// Drops the test's database and its queues on the broker at `amqp`, and its directory.
    pub async fn cleanup_on(self, amqp: &str) {
        let _ = std::fs::remove_dir_all(&self.dir);
        if self.backend == Backend::Sqlite {
            return;
        }
        let admin = sqlx::PgPool::connect(&format!("{PG}/postgres"))
            .await
            .unwrap();
        let _ = sqlx::query(&format!(
            "DROP DATABASE IF EXISTS leadlink_t_{} WITH (FORCE)",
            self.id
        ))
        .execute(&admin)
        .await;
        admin.close().await;
        if let Ok(connection) = lapin::Connection::connect(amqp, Default::default()).await
            && let Ok(channel) = connection.create_channel().await
        {
            for topic in ["connect", "writeback"] {
                let _ = channel
                    .queue_delete(
                        format!("{}.{topic}", self.prefix).into(),
                        Default::default(),
                    )
                    .await;
            }
            let _ = connection.close(200, "bye".into()).await;
        }
    }

    /// Runs `sql` on the test's store behind the service's back, with `$1` the time `at`.
    pub async fn execute_at(&self, sql: &str, at: chrono::DateTime<Utc>) {
        on_the_store!(self, pool => {
            sqlx::query(sql).bind(at).execute(&pool).await.unwrap();
        })
    }

    /// The first column of `sql`'s one row, an integer, read straight from the test's
    /// store (the test looks behind the service's back), with text `binds`.
    pub async fn scalar(&self, sql: &str, binds: &[&str]) -> i64 {
        on_the_store!(self, pool => {
            let mut query = sqlx::query_scalar(sql);
            for bind in binds {
                query = query.bind(*bind);
            }
            query.fetch_one(&pool).await.unwrap()
        })
    }
}

/// Runs `$body` with `$pool` a short-lived pool on the test's store, of whichever backend.
macro_rules! on_the_store {
    ($env:expr, $pool:ident => $body:block) => {
        match $env.backend {
            Backend::Postgres => {
                let $pool = sqlx::PgPool::connect(&$env.database_url).await.unwrap();
                let out = $body;
                $pool.close().await;
                out
            }
            Backend::Sqlite => {
                let $pool = sqlx::SqlitePool::connect(&$env.database_url).await.unwrap();
                let out = $body;
                $pool.close().await;
                out
            }
        }
    };
}
use on_the_store;

pub struct TestApp {
    pub addr: Option<SocketAddr>,
    pub running: Option<Running>,
    pub http: reqwest::Client,
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr.expect("ingest role"))
    }

    pub async fn stop(&mut self) {
        if let Some(running) = self.running.take() {
            running.stop().await;
        }
    }

    /// Signs and posts an event; returns the status and JSON body.
    pub async fn send(&self, webhook_id: &str, body: &Value) -> (u16, Value) {
        let bytes = serde_json::to_vec(body).unwrap();
        self.send_raw(webhook_id, Utc::now(), bytes, EVENTS_SECRET)
            .await
    }

    /// Sends a signed event to a process that may die while answering: `None` if it did.
    pub async fn try_send(&self, webhook_id: &str, body: &Value) -> Option<u16> {
        let body = serde_json::to_vec(body).unwrap();
        let mut request = self
            .http
            .post(self.url("/webhooks/events"))
            .header("content-type", "application/json");
        for (name, value) in Signer::new(EVENTS_SECRET)
            .unwrap()
            .headers(webhook_id, Utc::now(), &body)
            .unwrap()
        {
            request = request.header(name, value);
        }
        request
            .body(body)
            .send()
            .await
            .ok()
            .map(|r| r.status().as_u16())
    }

    pub async fn send_raw(
        &self,
        webhook_id: &str,
        at: chrono::DateTime<Utc>,
        body: Vec<u8>,
        secret: &str,
    ) -> (u16, Value) {
        let mut request = self
            .http
            .post(self.url("/webhooks/events"))
            .header("content-type", "application/json");
        for (name, value) in Signer::new(secret)
            .unwrap()
            .headers(webhook_id, at, &body)
            .unwrap()
        {
            request = request.header(name, value);
        }
        answer(request.body(body).send().await.unwrap()).await
    }
}

/// A response's status and body: its JSON, or its text when it is not JSON.
pub async fn answer(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// The LinkedIn profile URL of a vanity slug.
pub fn profile_url(slug: &str) -> String {
    format!("https://www.linkedin.com/in/{slug}/")
}

pub fn lead(record: &str, profile: &str, account: &str) -> Value {
    json!({
        "type": "lead.qualified",
        "data": {"recordId": record, "linkedinUrl": profile_url(profile),
                 "profileId": null, "profileUrn": null, "accountId": account,
                 "firstName": "John", "lastName": "Doe", "company": "Acme", "message": null}
    })
}

/// The job id of an ingest answer.
pub fn job_id(answer: &Value) -> uuid::Uuid {
    answer["jobId"]
        .as_str()
        .and_then(|id| id.parse().ok())
        .unwrap_or_else(|| panic!("no job id: {answer}"))
}

pub fn webhook_id() -> String {
    format!("msg_{}", uuid::Uuid::new_v4().simple())
}

/// Polls `check` until it returns true or `within` passes.
pub async fn eventually<F, Fut>(within: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    while !check().await {
        if tokio::time::Instant::now() > deadline {
            panic!("timed out after {within:?} waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
