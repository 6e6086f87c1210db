//! Issue 11's numbers, for `leadlink serve` as a real process: signed webhooks per second at
//! 16 and 64 connections, embedded (SQLite, `synchronous = FULL`, in-process queue) beside
//! server mode (PostgreSQL + RabbitMQ) in the same run; the embedded process's idle RSS; and
//! its RSS once 100k jobs wait in the store. Bars: at least 1,000 webhooks/s embedded, idle
//! RSS at most 30 MB, 100k waiting jobs at most 150 MB.
//!
//! `cargo bench --bench embedded`; knobs: `BENCH_REQUESTS` (webhooks per throughput phase,
//! default 10000), `BENCH_WAITING` (jobs waiting at the end, default 100000; 0 skips it),
//! `BENCH_MODES` (`embedded,server` by default), `BENCH_LOG` (the service's `RUST_LOG`,
//! `warn` by default; `sqlx::query=debug` shows every statement). Jobs go round 100 accounts that have all
//! spent their week, so workers hold each one (a transition and a signed callback per job, as in production)
//! and no invitation goes out. Exits non-zero when a bar is missed.

// The integration tests' harness: the simulator, the callback receiver, the databases.
#[path = "../tests/it/harness/mod.rs"]
#[allow(dead_code)]
mod harness;

mod common;

use common::env_number;

use chrono::Utc;
use harness::process::{Process, free_port, spawn_binary, with_listen};
use harness::{Backend, EVENTS_SECRET, TestEnv, lead};
use leadlink::signature::standard_webhooks::Signer;
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Jobs go round these accounts, so that the figure is ingest's and not the cost of one
/// account's ever longer backlog (issue 15 measures that on its own).
const ACCOUNTS: u64 = 100;

fn account(n: u64) -> String {
    format!("acc_bench_{}", n % ACCOUNTS)
}
const INGEST_BAR: f64 = 1000.0;
const IDLE_BAR_MB: f64 = 30.0;
const WAITING_BAR_MB: f64 = 150.0;

/// A running `leadlink serve` and where to reach it.
struct Service {
    process: Process,
    base: String,
}

impl Service {
    async fn start(env: &TestEnv) -> Service {
        let port = free_port();
        // Production pool sizes and intervals; only the addresses and secrets are the test's.
        let text = with_listen(&env.config_text(), port).replace("max_connections = 4", "");
        let log = std::env::var("BENCH_LOG").unwrap_or_else(|_| "warn".into());
        let process = spawn_binary(env, "serve", &text, &[("RUST_LOG", &log)]);
        let base = format!("http://127.0.0.1:{port}");
        let started = Instant::now();
        while reqwest::get(format!("{base}/healthz")).await.is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "serve did not start"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Service { process, base }
    }

    /// The process's resident set now, and its peak, in MB.
    fn rss_mb(&self) -> (f64, f64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.process.id()))
            .expect("/proc is readable");
        let kb = |field: &str| -> f64 {
            status
                .lines()
                .find_map(|l| l.strip_prefix(field))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                .unwrap_or(f64::NAN)
        };
        (kb("VmRSS:") / 1024.0, kb("VmHWM:") / 1024.0)
    }
}

/// Posts `total` signed webhooks for people never seen before over `connections`
/// connections; returns webhooks per second and the answers' p50 and p99.
async fn ingest(
    base: &str,
    connections: u64,
    total: u64,
    next: &Arc<AtomicU64>,
) -> (f64, Duration, Duration) {
    let url = format!("{base}/webhooks/events");
    let left = Arc::new(AtomicU64::new(total));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..connections {
        let (url, left, next) = (url.clone(), left.clone(), next.clone());
        tasks.spawn(async move {
            // One client each, kept to one connection: `connections` is what the server sees.
            let http = reqwest::Client::builder()
                .pool_max_idle_per_host(1)
                .build()
                .unwrap();
            let signer = Signer::new(EVENTS_SECRET).unwrap();
            let mut took = Vec::new();
            while left
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                .is_ok()
            {
                let n = next.fetch_add(1, Ordering::Relaxed);
                let body = serde_json::to_vec(&lead(
                    &format!("bench-{n}"),
                    &format!("bench-person-{n}"),
                    &account(n),
                ))
                .unwrap();
                let mut request = http.post(&url).header("content-type", "application/json");
                for (name, value) in signer
                    .headers(&format!("wh-{n}"), Utc::now(), &body)
                    .unwrap()
                {
                    request = request.header(name, value);
                }
                let sent = Instant::now();
                let response = request.body(body).send().await.unwrap();
                assert_eq!(
                    response.status().as_u16(),
                    202,
                    "{:?}",
                    response.text().await
                );
                took.push(sent.elapsed());
            }
            took
        });
    }
    let mut took = Vec::new();
    while let Some(part) = tasks.join_next().await {
        took.extend(part.unwrap());
    }
    let rate = total as f64 / started.elapsed().as_secs_f64();
    took.sort();
    let at = |p: f64| took[((p * took.len() as f64).ceil() as usize).clamp(1, took.len()) - 1];
    (rate, at(0.50), at(0.99))
}

/// Waits until no job is queued any more: every job the run made is parked or done.
async fn settle(env: &TestEnv, jobs: u64) {
    let started = Instant::now();
    loop {
        let total = env.scalar("SELECT count(*) FROM jobs", &[]).await;
        let queued = env
            .scalar("SELECT count(*) FROM jobs WHERE status = 'queued'", &[])
            .await;
        if total as u64 >= jobs && queued == 0 {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(1800),
            "{queued} of {total} jobs still queued"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

struct Outcome {
    ok: bool,
}

impl Outcome {
    fn check(&mut self, what: &str, passed: bool) -> &'static str {
        if !passed {
            eprintln!("missed the bar: {what}");
        }
        self.ok &= passed;
        if passed { "ok" } else { "MISSED" }
    }
}

async fn run_mode(backend: Backend, requests: u64, waiting: u64, outcome: &mut Outcome) {
    let mode = match backend {
        Backend::Sqlite => "embedded",
        Backend::Postgres => "server",
    };
    let env = TestEnv::on(backend).await;
    // Weeks spent until a week from now: every job is held, nothing is sent.
    for n in 0..ACCOUNTS {
        env.sim_put(
            &format!("accounts/{}", account(n)),
            json!({"limit": 5, "used": 5, "weekSeconds": 7 * 24 * 3600}),
        )
        .await;
    }
    let service = Service::start(&env).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (idle, _) = service.rss_mb();
    let embedded = backend == Backend::Sqlite;
    let verdict = if embedded {
        outcome.check("idle RSS", idle <= IDLE_BAR_MB)
    } else {
        "-"
    };
    println!("{mode:<9} idle RSS {idle:>6.1} MB  {verdict}");
    let next = Arc::new(AtomicU64::new(0));
    for connections in [16, 64] {
        let (rate, p50, p99) = ingest(&service.base, connections, requests, &next).await;
        let verdict = if embedded {
            outcome.check(&format!("{connections} connections"), rate >= INGEST_BAR)
        } else {
            "-"
        };
        println!(
            "{mode:<9} {connections:>2} connections  {rate:>7.0} webhooks/s  p50 {p50:>7.1?}  p99 {p99:>7.1?}  {verdict}"
        );
    }
    if embedded && waiting > 0 {
        let made = next.load(Ordering::Relaxed);
        if waiting > made {
            ingest(&service.base, 64, waiting - made, &next).await;
        }
        let jobs = next.load(Ordering::Relaxed);
        settle(&env, jobs).await;
        let (rss, peak) = service.rss_mb();
        let verdict = outcome.check("RSS with the waiting jobs", rss <= WAITING_BAR_MB);
        println!("{mode:<9} {jobs} jobs waiting: RSS {rss:>6.1} MB (peak {peak:.1} MB)  {verdict}");
    }
    drop(service);
    env.cleanup().await;
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    if !common::measuring("embedded") {
        return;
    }
    let requests = env_number("BENCH_REQUESTS", 10_000);
    let waiting = env_number("BENCH_WAITING", 100_000);
    let modes = std::env::var("BENCH_MODES").unwrap_or_else(|_| "embedded,server".into());
    let mut outcome = Outcome { ok: true };
    for mode in modes.split(',') {
        let backend = match mode.trim() {
            "embedded" => Backend::Sqlite,
            "server" => Backend::Postgres,
            other => panic!("BENCH_MODES: unknown mode {other}; use embedded and/or server"),
        };
        run_mode(backend, requests, waiting, &mut outcome).await;
    }
    if !outcome.ok {
        std::process::exit(1);
    }
}
