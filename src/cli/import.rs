//! `leadlink import FILE.csv`: a CSV export becomes jobs, as if each row had been a webhook.

use super::{open_store, print_json};
use crate::import::{Crm, ImportError, Options, Progress, import};
use crate::queue::Broker;
use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

/// Plain progress lines every this many rows when stderr is not a terminal.
const LINE_EVERY: usize = 10_000;

#[derive(clap::Args)]
pub struct ImportArgs {
    /// The CSV export; its header names the columns (README, "Importing leads").
    file: PathBuf,
    /// Which CRM the `recordId`s belong to: where the jobs are written back.
    #[arg(long, value_enum, default_value_t = Crm::None)]
    crm: Crm,
    /// The account for rows without an `accountId`.
    #[arg(long)]
    account: Option<String>,
    /// Say what would happen (new, duplicate, invalid, weeks per account); change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Import the good rows and list the bad ones, instead of importing nothing.
    #[arg(long)]
    skip_invalid: bool,
}

pub async fn run(config_path: Option<&Path>, args: ImportArgs) -> anyhow::Result<()> {
    let csv = std::fs::read(&args.file)
        .with_context(|| format!("cannot read {}", args.file.display()))?;
    let (config, store) = open_store(config_path).await?;
    let queue = Broker::for_command(&config.broker);
    let state = crate::app::ingest_state(&config, &store, &queue)?;
    let options = Options {
        crm: args.crm,
        account: args.account,
        dry_run: args.dry_run,
        skip_invalid: args.skip_invalid,
    };
    let progress = Shown::new();
    let result = import(&state, &csv, &options, &progress, chrono::Utc::now()).await;
    progress.finish();
    match result {
        Ok(summary) => print_json(json!(summary)),
        Err(ImportError::Rejected(summary)) => {
            print_json(json!(summary))?;
            bail!(
                "{} bad rows: nothing imported (--skip-invalid imports the others)",
                summary.invalid.len()
            )
        }
        Err(e) => Err(e.into()),
    }
}

/// A bar on a terminal, plain lines otherwise (a log, a CI job).
enum Shown {
    Bar(ProgressBar),
    Lines,
}

impl Shown {
    fn new() -> Shown {
        if !std::io::stderr().is_terminal() {
            return Shown::Lines;
        }
        let bar = ProgressBar::new_spinner();
        bar.set_style(
            ProgressStyle::with_template("{spinner} {msg} {wide_bar} {pos}/{len} {eta}")
                .expect("static template"),
        );
        Shown::Bar(bar)
    }

    fn finish(&self) {
        if let Shown::Bar(bar) = self {
            bar.finish_and_clear();
        }
    }
}

impl Progress for Shown {
    fn checked(&self, rows: usize) {
        match self {
            Shown::Bar(bar) => bar.set_message(format!("checked {rows} rows")),
            Shown::Lines if rows.is_multiple_of(LINE_EVERY) => eprintln!("checked {rows} rows"),
            Shown::Lines => {}
        }
    }

    fn imported(&self, done: usize, of: usize) {
        match self {
            Shown::Bar(bar) => {
                bar.set_message("importing");
                bar.set_length(of as u64);
                bar.set_position(done as u64);
            }
            Shown::Lines if done.is_multiple_of(LINE_EVERY) || done == of => {
                eprintln!("imported {done} of {of} rows");
            }
            Shown::Lines => {}
        }
    }
}
