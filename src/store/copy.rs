//! `leadlink store copy`: every row of one store into another (SQLite to PostgreSQL when
//! a team outgrows one process, and back), table by table, then the counts compared.

use super::db::{self, Kind};
use super::{OutboxStore, SqlStore, StoreError};

/// A table and its columns, in the order foreign keys allow inserting them.
struct Table {
    name: &'static str,
    /// The columns that order the rows, so that batches neither skip nor repeat one.
    order_by: &'static str,
    columns: &'static [(&'static str, Kind)],
    /// Whether PostgreSQL numbers its `id` from a sequence that must follow the copy.
    serial_id: bool,
}

use Kind::{BigInt, Bool, Int, Json, Text, TextList, Time, Uuid};

const TABLES: &[Table] = &[
    Table {
        name: "jobs",
        order_by: "id",
        serial_id: false,
        columns: &[
            ("id", Uuid),
            ("source", Text),
            ("record_id", Text),
            ("account_id", Text),
            ("profile_key", Text),
            ("profile_id", Text),
            ("profile_urn", Text),
            ("message", Text),
            ("lead", Json),
            ("status", Text),
            ("error", Text),
            ("hold_until", Time),
            ("retry_at", Time),
            ("attempts", Int),
            ("sequence", Int),
            ("changed_at", Time),
            ("due_at", Time),
            ("lease_owner", Text),
            ("lease_until", Time),
            ("send_started_at", Time),
            ("created_at", Time),
            ("updated_at", Time),
            ("record_object", Text),
            ("enrich", Bool),
            ("writeback_targets", TextList),
            ("waits_on", Text),
            ("priority", Int),
            ("priority_seen_at", Time),
            ("rank_at", Time),
            ("called_off_at", Time),
        ],
    },
    Table {
        name: "job_records",
        order_by: "id",
        serial_id: true,
        columns: &[
            ("id", BigInt),
            ("job_id", Uuid),
            ("source", Text),
            ("record_id", Text),
            ("record_object", Text),
            ("writeback_targets", TextList),
            ("joined_at", Time),
        ],
    },
    Table {
        name: "job_events",
        order_by: "id",
        serial_id: true,
        columns: &[
            ("id", BigInt),
            ("job_id", Uuid),
            ("at", Time),
            ("kind", Text),
            ("status", Text),
            ("detail", Json),
        ],
    },
    Table {
        name: "idempotency_keys",
        order_by: "source, key",
        serial_id: false,
        columns: &[
            ("source", Text),
            ("key", Text),
            ("job_id", Uuid),
            ("created_at", Time),
        ],
    },
    Table {
        name: "writebacks",
        order_by: "id",
        serial_id: true,
        columns: &[
            ("id", BigInt),
            ("job_id", Uuid),
            ("target", Text),
            ("sequence", Int),
            ("payload", Json),
            ("state", Text),
            ("attempts", Int),
            ("last_error", Text),
            ("next_attempt_at", Time),
            ("lease_until", Time),
            ("created_at", Time),
            ("delivered_at", Time),
            ("job_record_id", BigInt),
            ("failing_since", Time),
        ],
    },
    Table {
        name: "outbox",
        order_by: "id",
        serial_id: true,
        columns: &[
            ("id", BigInt),
            ("topic", Text),
            ("ref", Text),
            ("due_at", Time),
            ("created_at", Time),
            ("relay_until", Time),
        ],
    },
    Table {
        name: "accounts",
        order_by: "account_id",
        serial_id: false,
        columns: &[
            ("account_id", Text),
            ("hold_until", Time),
            ("blocked_until", Time),
            ("reason", Text),
            ("updated_at", Time),
            ("disabled_reason", Text),
            ("status_checked_at", Time),
            ("sending_job", Uuid),
            ("sending_until", Time),
        ],
    },
    Table {
        name: "account_limits",
        order_by: "account_id, action",
        serial_id: false,
        columns: &[
            ("account_id", Text),
            ("action", Text),
            ("\"limit\"", Int),
            ("used", Int),
            ("remaining", Int),
            ("reset_at", Time),
            ("observed_at", Time),
            ("source", Text),
        ],
    },
    Table {
        name: "account_sends",
        order_by: "job_id, at",
        serial_id: false,
        columns: &[
            ("account_id", Text),
            ("job_id", Uuid),
            ("at", Time),
            ("post_started", Bool),
            ("shadow", Bool),
        ],
    },
    Table {
        name: "api_calls",
        order_by: "scope, at",
        serial_id: false,
        columns: &[("scope", Text), ("at", Time)],
    },
    Table {
        name: "api_key_state",
        order_by: "id",
        serial_id: false,
        columns: &[
            ("id", Int),
            ("paused", Bool),
            ("reason", Text),
            ("paused_at", Time),
            ("next_probe_at", Time),
        ],
    },
    Table {
        name: "crm_pauses",
        order_by: "crm",
        serial_id: false,
        columns: &[("crm", Text), ("reason", Text), ("paused_at", Time)],
    },
    Table {
        name: "waits",
        order_by: "waits_on",
        serial_id: false,
        columns: &[
            ("waits_on", Text),
            ("next_try_at", Time),
            ("every_ms", BigInt),
        ],
    },
];

const BATCH: i64 = 500;

/// Rows per table on each side after a copy.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TableCount {
    pub table: &'static str,
    pub source: i64,
    pub target: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the target store already has jobs or outbox rows; copy only into an empty store")]
    TargetNotEmpty,
}

impl From<sqlx::Error> for CopyError {
    fn from(error: sqlx::Error) -> Self {
        CopyError::Store(error.into())
    }
}

/// Copies every row of `from` into `to` in one transaction on `to`, and counts both sides.
/// The caller holds both stores' process locks, so neither changes meanwhile.
pub async fn copy(from: &SqlStore, to: &SqlStore) -> Result<Vec<TableCount>, CopyError> {
    let mut tx = to.db.begin().await?;
    let occupied: i64 =
        db::query("SELECT (SELECT count(*) FROM jobs) + (SELECT count(*) FROM outbox)")
            .scalar(&mut tx)
            .await?;
    if occupied > 0 {
        return Err(CopyError::TargetNotEmpty);
    }
    // The migrations made the key's single row; the source's replaces it.
    db::query("DELETE FROM api_key_state")
        .execute(&mut tx)
        .await?;
    let mut source = from.db.read().await?;
    for table in TABLES {
        let names: Vec<&str> = table.columns.iter().map(|(name, _)| *name).collect();
        let kinds: Vec<Kind> = table.columns.iter().map(|(_, kind)| *kind).collect();
        let select = format!(
            "SELECT {} FROM {} ORDER BY {} LIMIT $1 OFFSET $2",
            names.join(", "),
            table.name,
            table.order_by
        );
        let placeholders: Vec<String> = (1..=names.len()).map(|i| format!("${i}")).collect();
        let insert = format!(
            "INSERT INTO {} ({}) VALUES ({})",
            table.name,
            names.join(", "),
            placeholders.join(", ")
        );
        let mut offset = 0;
        loop {
            let rows = db::query(&select)
                .bind(BATCH)
                .bind(offset)
                .fetch_values(&mut source, &kinds)
                .await?;
            for row in &rows {
                let mut statement = db::query(&insert);
                for value in row {
                    statement = statement.bind(value.clone());
                }
                statement.execute(&mut tx).await?;
            }
            if (rows.len() as i64) < BATCH {
                break;
            }
            offset += BATCH;
        }
        if table.serial_id {
            db::pg::follow_sequence(&mut tx, table.name).await?;
        }
    }
    tx.commit().await?;
    drop(source);
    let mut counts = Vec::with_capacity(TABLES.len());
    let mut target = to.db.read().await?;
    let mut source = from.db.read().await?;
    for table in TABLES {
        let count = format!("SELECT count(*) FROM {}", table.name);
        counts.push(TableCount {
            table: table.name,
            source: db::query(&count).scalar(&mut source).await?,
            target: db::query(&count).scalar(&mut target).await?,
        });
    }
    // An embedded store forgets a row once its in-memory queue took the message; a due job
    // copied without one would never be published by a server-mode relay.
    let restored = to.restore_due(chrono::Utc::now()).await?;
    if restored > 0 {
        tracing::info!(restored, "outbox rows rebuilt in the target for due work");
    }
    Ok(counts)
}

/// The tables and columns `copy` moves, for the test that holds them to both schemas.
pub fn copied_columns() -> Vec<(&'static str, Vec<&'static str>)> {
    TABLES
        .iter()
        .map(|t| {
            let columns = t
                .columns
                .iter()
                .map(|(name, _)| name.trim_matches('"'))
                .collect();
            (t.name, columns)
        })
        .collect()
}
