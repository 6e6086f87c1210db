//! The `leadlink` binary: the service's roles, the simulator, and the operator's commands.

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use leadlink::app::{self, Roles};
use leadlink::config::{Config, LogFormat};
use leadlink::job::Status;
use leadlink::outbox::publish_now;
use leadlink::queue::Rabbit;
use leadlink::sim::{self, SimOptions};
use leadlink::store::{AccountStore, CrmPauseStore, JobFilter, JobStore, PgStore};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use uuid::Uuid;

#[derive(Parser)]
#[command(
    name = "leadlink",
    version,
    about = "Qualified CRM leads become LinkedIn connection requests"
)]
struct Cli {
    /// TOML configuration; `LEADLINK_<SECTION>__<KEY>` environment variables override it.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run ingest and workers in one process.
    Serve,
    /// Run only the HTTP side (webhooks, admin API) and the outbox relay.
    Ingest,
    /// Run only the workers (connect, writeback, relay).
    Worker,
    /// Run the ConnectSafely simulator.
    Sim {
        #[arg(long, default_value = "127.0.0.1:9100")]
        listen: SocketAddr,
        /// Accepted bearer keys (repeatable).
        #[arg(long = "api-key", default_values_t = vec!["sim-api-key".to_string()])]
        api_keys: Vec<String>,
        /// Weekly limit of every account.
        #[arg(long, default_value_t = 90)]
        limit: u32,
        /// Turn off the per-minute API limits.
        #[arg(long)]
        no_per_minute_limits: bool,
    },
    /// Look at and act on jobs.
    Jobs {
        #[command(subcommand)]
        action: JobsAction,
    },
    /// What is known about each LinkedIn account: its week, holds and pauses, today's sends,
    /// the next allowed send and its backlog. `--remote` lists the key's accounts as
    /// ConnectSafely knows them (`GET /accounts`), to find their ids.
    Accounts {
        #[arg(long)]
        remote: bool,
    },
    /// Check a configuration and name every problem in it.
    CheckConfig,
}

#[derive(Subcommand)]
enum JobsAction {
    /// A job with its full history.
    Show { id: Uuid },
    /// Jobs, newest first.
    List {
        #[arg(long)]
        record: Option<String>,
        #[arg(long)]
        status: Option<String>,
        #[arg(long)]
        account: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
    /// Send a failed job again, and re-arm its parked writebacks.
    Retry { id: Uuid },
    /// End a waiting job (it becomes `failed`, "cancelled by operator").
    Cancel { id: Uuid },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Sim {
            listen,
            api_keys,
            limit,
            no_per_minute_limits,
        } => {
            init_logging(LogFormat::Text, "info");
            let listener = tokio::net::TcpListener::bind(listen)
                .await
                .with_context(|| format!("cannot listen on {listen}"))?;
            tracing::info!(%listen, "ConnectSafely simulator listening");
            let options = SimOptions {
                api_keys,
                default_limit: limit,
                per_minute_limits: !no_per_minute_limits,
                ..SimOptions::default()
            };
            sim::serve(listener, options).await?;
            Ok(())
        }
        Command::CheckConfig => match Config::load(cli.config.as_deref()) {
            Ok(_) => {
                println!("configuration is valid");
                Ok(())
            }
            Err(e) => {
                eprintln!("{e}");
                std::process::exit(1);
            }
        },
        Command::Serve => run(cli.config, Roles::ALL).await,
        Command::Ingest => {
            run(
                cli.config,
                Roles {
                    ingest: true,
                    worker: false,
                },
            )
            .await
        }
        Command::Worker => {
            run(
                cli.config,
                Roles {
                    ingest: false,
                    worker: true,
                },
            )
            .await
        }
        Command::Jobs { action } => jobs(cli.config, action).await,
        Command::Accounts { remote: true } => {
            let config = Config::load(cli.config.as_deref())?;
            init_logging(config.log.format, "warn");
            let api_key = config
                .connectsafely
                .api_key
                .clone()
                .ok_or_else(|| anyhow::anyhow!("connectsafely.api_key is missing"))?;
            let client = leadlink::connectsafely::Client::new(
                &config.connectsafely.base_url,
                api_key,
                config.connectsafely.timeout,
            )?;
            let accounts = client.accounts().await?;
            println!(
                "{}",
                serde_json::to_string_pretty(&serde_json::json!({ "accounts": accounts }))?
            );
            Ok(())
        }
        Command::Accounts { remote: false } => {
            let (config, store) = open_store(cli.config).await?;
            let accounts = store.accounts(&config.accounts, chrono::Utc::now()).await?;
            let key = store.key_pause().await?;
            let crms = store.crm_pauses().await?;
            println!(
                "{}",
                serde_json::to_string_pretty(&serde_json::json!({
                    "accounts": accounts,
                    "apiKeyPaused": key.map(|k| k.reason),
                    "pausedCrms": crms,
                }))?
            );
            Ok(())
        }
    }
}

async fn run(config_path: Option<PathBuf>, roles: Roles) -> anyhow::Result<()> {
    let config = Config::load(config_path.as_deref())?;
    init_logging(config.log.format, &config.log.filter);
    let mut running = app::start(config, roles).await?;
    let shutdown = running.shutdown.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down: draining in-flight jobs");
        shutdown.cancel();
    });
    running.wait().await;
    tracing::info!("stopped");
    Ok(())
}

async fn wait_for_signal() {
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

async fn open_store(config_path: Option<PathBuf>) -> anyhow::Result<(Config, PgStore)> {
    let config = Config::load(config_path.as_deref())?;
    init_logging(config.log.format, "warn");
    let store = PgStore::connect(&config.database, Duration::ZERO).await?;
    Ok((config, store))
}

async fn jobs(config_path: Option<PathBuf>, action: JobsAction) -> anyhow::Result<()> {
    let (config, store) = open_store(config_path).await?;
    let print = |value: serde_json::Value| -> anyhow::Result<()> {
        println!("{}", serde_json::to_string_pretty(&value)?);
        Ok(())
    };
    match action {
        JobsAction::Show { id } => match store.job(id).await? {
            Some(job) => print(serde_json::json!(job)),
            None => bail!("job {id} not found"),
        },
        JobsAction::List {
            record,
            status,
            account,
            limit,
        } => {
            let status = match status {
                Some(text) => Some(Status::parse(&text).with_context(|| {
                    format!(
                        "unknown status {text}; one of: {}",
                        Status::ALL.map(Status::as_str).join(", ")
                    )
                })?),
                None => None,
            };
            let jobs = store
                .jobs(&JobFilter {
                    record_id: record,
                    status,
                    account_id: account,
                    limit,
                })
                .await?;
            print(serde_json::json!({"jobs": jobs}))
        }
        JobsAction::Retry { id } => {
            let (job, publish) = store.retry_job(id, chrono::Utc::now()).await?;
            publish_now(&store, &Rabbit::new(config.broker.clone()), publish).await;
            print(serde_json::json!({"jobId": job.id, "status": job.status}))
        }
        JobsAction::Cancel { id } => {
            let (job, publish) = store.cancel_job(id, chrono::Utc::now()).await?;
            publish_now(&store, &Rabbit::new(config.broker.clone()), publish).await;
            print(serde_json::json!({"jobId": job.id, "status": job.status, "error": job.error}))
        }
    }
}

fn init_logging(format: LogFormat, filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}
