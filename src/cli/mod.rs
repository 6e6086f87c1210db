//! The command line: what each `leadlink` command reads, and one file per command body.

mod accounts;
mod check_config;
mod demo;
mod healthcheck;
mod import;
mod jobs;
mod serve;
mod sim;
mod store;

use crate::app::Role;
use crate::config::{Config, LogFormat};
use crate::store::SqlStore;
use crate::telemetry::traces::Traces;
use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, fmt};

#[derive(Parser)]
#[command(
    name = "leadlink",
    version,
    about = "Qualified CRM leads become LinkedIn connection requests"
)]
pub struct Cli {
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
    Sim(sim::SimArgs),
    /// See it work: the simulator, the embedded service and a callback receiver in one
    /// process, sample leads through every outcome, a summary; no configuration needed.
    Demo(demo::DemoArgs),
    /// Look at and act on jobs.
    Jobs {
        #[command(subcommand)]
        action: jobs::JobsAction,
    },
    /// What is known about each LinkedIn account: its week, holds and pauses, today's sends,
    /// the next allowed send and its backlog. `--remote` lists the key's accounts as
    /// ConnectSafely knows them (`GET /accounts`), to find their ids.
    Accounts {
        #[arg(long)]
        remote: bool,
    },
    /// Turn a CSV export into jobs, as if each row had arrived as a webhook. Bad rows stop
    /// the import (exit 1) unless `--skip-invalid`; the summary is printed as JSON.
    Import(import::ImportArgs),
    /// Check a configuration and name every problem in it.
    CheckConfig,
    /// Move a store: `leadlink store copy --from URL --to URL`.
    Store {
        #[command(subcommand)]
        action: store::StoreAction,
    },
    /// GET a health endpoint: exit 0 on a 2xx, 1 with the reason otherwise (for container
    /// health checks, as the image has no curl).
    Healthcheck(healthcheck::HealthcheckArgs),
}

/// Runs the command the line asked for.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let config = cli.config.as_deref();
    match cli.command {
        Command::Serve => serve::run(config, Role::All).await,
        Command::Ingest => serve::run(config, Role::Ingest).await,
        Command::Worker => serve::run(config, Role::Worker).await,
        Command::Sim(args) => sim::run(args).await,
        Command::Demo(args) => demo::run(args).await,
        Command::Jobs { action } => jobs::run(config, action).await,
        Command::Accounts { remote: true } => accounts::remote(config).await,
        Command::Accounts { remote: false } => accounts::local(config).await,
        Command::Import(args) => import::run(config, args).await,
        Command::CheckConfig => check_config::run(config),
        Command::Store { action } => store::run(action).await,
        Command::Healthcheck(args) => healthcheck::run(config, args).await,
    }
}

/// Loads the configuration for an operator's command, which logs warnings only.
fn load_quietly(config_path: Option<&Path>) -> anyhow::Result<Config> {
    let config = Config::load(config_path)?;
    init_logging(config.log.format, "warn", None);
    Ok(config)
}

async fn open_store(config_path: Option<&Path>) -> anyhow::Result<(Config, SqlStore)> {
    let config = load_quietly(config_path)?;
    // No grace: what this short-lived process fails to publish is the relay's at once.
    // A command never creates a store: a missing one is a wrong path, not a fresh start.
    let store = SqlStore::connect_existing(&config.database, Duration::ZERO).await?;
    Ok((config, store))
}

fn print_json(value: serde_json::Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(&value)?);
    Ok(())
}

/// Logs to stderr through `filter`; with `traces`, leadlink's spans are exported as well,
/// whatever the filter lets through to the logs.
fn init_logging(format: LogFormat, filter: &str, traces: Option<&Traces>) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(filter));
    let logs = fmt::layer().with_writer(std::io::stderr);
    let logs = match format {
        LogFormat::Json => logs.json().boxed(),
        LogFormat::Text => logs.boxed(),
    };
    let _ = tracing_subscriber::registry()
        .with(traces.map(Traces::layer))
        .with(logs.with_filter(filter))
        .try_init();
}
