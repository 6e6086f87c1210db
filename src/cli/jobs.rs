//! `leadlink jobs`: look at jobs, send a failed one again, end a waiting one, or release an
//! account's shadowed jobs.

use super::{open_store, print_json};
use crate::job::Status;
use crate::outbox::publish_now;
use crate::queue::Broker;
use crate::store::{JobFilter, JobStore};
use anyhow::bail;
use clap::ValueEnum;
use clap::builder::PossibleValue;
use serde_json::json;
use std::path::Path;
use uuid::Uuid;

#[derive(clap::Subcommand)]
pub enum JobsAction {
    /// A job with its full history.
    Show { id: Uuid },
    /// Jobs, newest first.
    List {
        #[arg(long)]
        record: Option<String>,
        #[arg(long)]
        status: Option<Status>,
        #[arg(long)]
        account: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
    /// Send a failed job again, and re-arm its parked writebacks.
    Retry { id: Uuid },
    /// End a waiting job (it becomes `cancelled`, "cancelled by operator").
    Cancel { id: Uuid },
    /// After shadow mode is turned off for the account: its `shadowed` jobs become ordinary
    /// queued jobs, oldest first.
    Release {
        #[arg(long)]
        account: String,
    },
}

/// `--status` takes a status's stored name; `Status::as_str` is the one list of them.
impl ValueEnum for Status {
    fn value_variants<'a>() -> &'a [Self] {
        &Status::ALL
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        Some(PossibleValue::new(self.as_str()))
    }
}

pub async fn run(config_path: Option<&Path>, action: JobsAction) -> anyhow::Result<()> {
    let (config, store) = open_store(config_path).await?;
    match action {
        JobsAction::Show { id } => match store.job(id).await? {
            Some(job) => print_json(json!(job)),
            None => bail!("job {id} not found"),
        },
        JobsAction::List {
            record,
            status,
            account,
            limit,
        } => {
            let jobs = store
                .jobs(&JobFilter {
                    record_id: record,
                    status,
                    account_id: account,
                    limit,
                })
                .await?;
            print_json(json!({"jobs": jobs}))
        }
        JobsAction::Retry { id } => {
            let (job, publish) = store.retry_job(id, chrono::Utc::now()).await?;
            publish_now(&store, &Broker::for_command(&config.broker), publish).await;
            print_json(json!({"jobId": job.id, "status": job.status}))
        }
        JobsAction::Cancel { id } => {
            let (job, publish) = store.cancel_job(id, chrono::Utc::now()).await?;
            publish_now(&store, &Broker::for_command(&config.broker), publish).await;
            print_json(json!({"jobId": job.id, "status": job.status, "error": job.error}))
        }
        JobsAction::Release { account } => {
            if config.accounts.policy_for(&account).shadow {
                bail!(
                    "account {account} is still in shadow mode: set shadow = false for it \
                     (accounts.\"{account}\" or accounts.defaults) first, or its jobs would \
                     only be shadowed again; nothing was released"
                );
            }
            let (released, publish) = store.release_shadowed(&account, chrono::Utc::now()).await?;
            publish_now(&store, &Broker::for_command(&config.broker), publish).await;
            print_json(json!({"account": account, "released": released.len(), "jobIds": released}))
        }
    }
}
