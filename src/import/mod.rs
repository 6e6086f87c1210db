//! `leadlink import` and `POST /admin/import`: a CSV export becomes jobs, each row exactly
//! as if it had arrived as a webhook (same identity rules, duplicates and writebacks).
//!
//! The whole file is read and checked first; bad rows stop the import unless the caller
//! skips them. Good rows go through the store's ingest path in batches, with their outbox
//! entries, and are published as ingest publishes them.

mod columns;
mod plan;
mod rows;

use crate::ingest::IngestState;
use crate::outbox::publish_now;
use crate::queue::Queue;
use crate::store::{IngestOutcome, NewJob, Store, StoreError};
use chrono::{DateTime, Utc};
use columns::Columns;
pub use plan::{AccountPlan, BadRow, Summary};
use rows::{RowContext, job_of_row};
use std::collections::{BTreeMap, HashSet};

/// Rows per transaction: large enough for 100,000 rows to go quickly, small enough that a
/// batch's locks and outbox rows stay modest.
const BATCH: usize = 500;

/// Which CRM the file's `recordId`s belong to, and so where the jobs are written back.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Crm {
    Hubspot,
    Salesforce,
    /// Leads of the events source: written back to the callback if one is configured.
    #[default]
    None,
}

#[derive(Debug, Clone, Default)]
pub struct Options {
    pub crm: Crm,
    /// The account for rows without an `accountId`.
    pub account: Option<String>,
    pub dry_run: bool,
    pub skip_invalid: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("the header line cannot be used: {0}")]
    Header(String),
    /// Bad rows and no `skip_invalid`: nothing was imported; the summary lists them.
    #[error("{} bad rows: nothing imported", .0.invalid.len())]
    Rejected(Box<Summary>),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Rows read or imported so far, of how many, for a progress display.
pub trait Progress: Sync {
    fn checked(&self, rows: usize);
    fn imported(&self, done: usize, of: usize);
}

/// No display: the admin API answers with the summary only.
impl Progress for () {
    fn checked(&self, _: usize) {}
    fn imported(&self, _: usize, _: usize) {}
}

/// Imports `csv` (or, with `dry_run`, says what importing it would do).
pub async fn import<Q: Queue, S: Store>(
    state: &IngestState<Q, S>,
    csv: &[u8],
    options: &Options,
    progress: &dyn Progress,
    now: DateTime<Utc>,
) -> Result<Summary, ImportError> {
    let (jobs, mut summary) = read(state, csv, options, progress)?;
    summary.dry_run = options.dry_run;
    if !summary.invalid.is_empty() && !options.skip_invalid {
        return Err(ImportError::Rejected(Box::new(summary)));
    }
    let mut new_per_account: BTreeMap<String, usize> = BTreeMap::new();
    if options.dry_run {
        // A row repeating an earlier row's identity finds that row's job once imported.
        let mut seen = HashSet::new();
        for chunk in jobs.chunks(BATCH) {
            let existing = state.store.existing_jobs(chunk).await?;
            for (job, existing) in chunk.iter().zip(existing) {
                if existing || !seen.insert(job.delivery_id.clone()) {
                    summary.duplicate += 1;
                } else {
                    summary.new += 1;
                    *new_per_account
                        .entry(job.account_id.to_string())
                        .or_default() += 1;
                }
            }
        }
    } else {
        let mut done = 0;
        for chunk in jobs.chunks(BATCH) {
            let outcomes = state.store.ingest_batch(chunk, now).await?;
            let mut publish = Vec::new();
            for (job, outcome) in chunk.iter().zip(outcomes) {
                match outcome {
                    IngestOutcome::Created { publish: p, .. } => {
                        summary.new += 1;
                        *new_per_account
                            .entry(job.account_id.to_string())
                            .or_default() += 1;
                        publish.extend(p);
                    }
                    IngestOutcome::Duplicate { publish: p, .. } => {
                        summary.duplicate += 1;
                        publish.extend(p);
                    }
                }
            }
            // Committed: what this fails to publish, the running service's relay publishes.
            publish_now(&state.store, &state.queue, publish).await;
            done += chunk.len();
            progress.imported(done, jobs.len());
        }
        summary.imported = true;
    }
    summary.accounts = projections(state, new_per_account, now).await?;
    tracing::info!(
        new = summary.new,
        duplicate = summary.duplicate,
        invalid = summary.invalid.len(),
        dry_run = options.dry_run,
        "import done"
    );
    Ok(summary)
}

/// Every row as a job or a bad row.
fn read<Q: Queue, S: Store>(
    state: &IngestState<Q, S>,
    csv: &[u8],
    options: &Options,
    progress: &dyn Progress,
) -> Result<(Vec<NewJob>, Summary), ImportError> {
    // Flexible: a row with another number of fields is a bad row, not the end of the file.
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .has_headers(true)
        .from_reader(csv);
    let header = reader
        .byte_headers()
        .map_err(|e| ImportError::Header(e.to_string()))?
        .clone();
    let columns = Columns::parse(&header)?;
    let context = RowContext {
        config: &state.config,
        template: state.template.as_ref(),
        crm: options.crm,
        account: options.account.as_deref(),
    };
    let mut summary = Summary {
        ignored_columns: columns.ignored.clone(),
        projection: plan::PROJECTION,
        ..Summary::default()
    };
    let mut jobs = Vec::new();
    let mut record = csv::ByteRecord::new();
    loop {
        let line = reader.position().line();
        match reader.read_byte_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {
                let line = record.position().map_or(line, csv::Position::line);
                match job_of_row(&context, &columns, &record) {
                    Ok(job) => jobs.push(job),
                    Err(e) => summary.invalid.push(BadRow {
                        line,
                        reason: e.to_string(),
                    }),
                }
            }
            // Only malformed quoting is left to fail here; the reader goes on after it.
            Err(e) => summary.invalid.push(BadRow {
                line: e.position().map_or(line, csv::Position::line),
                reason: e.to_string(),
            }),
        }
        summary.rows += 1;
        if summary.rows.is_multiple_of(BATCH) {
            progress.checked(summary.rows);
        }
    }
    progress.checked(summary.rows);
    Ok((jobs, summary))
}

/// Each account's new jobs with the weeks they would take at its pacing.
async fn projections<Q: Queue, S: Store>(
    state: &IngestState<Q, S>,
    new_per_account: BTreeMap<String, usize>,
    now: DateTime<Utc>,
) -> Result<BTreeMap<String, AccountPlan>, StoreError> {
    if new_per_account.is_empty() {
        return Ok(BTreeMap::new());
    }
    let known = state.store.accounts(&state.config.accounts, now).await?;
    Ok(new_per_account
        .into_iter()
        .map(|(account, new)| {
            let policy = state.config.accounts.policy_for(&account);
            let limit = known
                .iter()
                .find(|a| a.account_id == account)
                .and_then(|a| a.limit);
            let today = crate::account::window::local_date(policy.timezone, now);
            let per_week = plan::sends_per_week(&policy, limit, today);
            (account, AccountPlan::of(new, per_week))
        })
        .collect())
}
