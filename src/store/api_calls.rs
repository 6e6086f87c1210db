//! The per-minute API budget shared by every worker: calls counted per scope in the last
//! minute, decided under an advisory lock per scope (the rule is `connectsafely::limits`).

use super::{SqlStore, StoreError, db};
use crate::connectsafely::limits::{WINDOW, wait_for_room};
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;

/// The advisory-lock space of the per-minute scopes (the writebacks' is 11).
const LOCK_SPACE: i64 = 7;

pub trait ApiBudgetStore {
    /// Counts one call per `(scope, limit)` entry (a scope may repeat), or none of them if a
    /// scope is full: then the instant it has room again.
    fn take_api_calls(
        &self,
        scopes: &[(String, u32)],
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<Option<DateTime<Utc>>, StoreError>> + Send;
}

impl ApiBudgetStore for SqlStore {
    async fn take_api_calls(
        &self,
        scopes: &[(String, u32)],
        now: DateTime<Utc>,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        // Sorted, so two workers lock the same scopes in the same order.
        let mut wanted: BTreeMap<&str, (usize, u32)> = BTreeMap::new();
        for (scope, limit) in scopes {
            let entry = wanted.entry(scope.as_str()).or_insert((0, *limit));
            entry.0 += 1;
        }
        let mut tx = self.db.begin().await?;
        let mut wait: Option<DateTime<Utc>> = None;
        for (scope, (count, limit)) in &wanted {
            db::pg::lock_scope(&mut tx, LOCK_SPACE, scope).await?;
            db::query("DELETE FROM api_calls WHERE scope = $1 AND at <= $2")
                .bind(*scope)
                .bind(now - WINDOW)
                .execute(&mut tx)
                .await?;
            let recent = db::query("SELECT at FROM api_calls WHERE scope = $1")
                .bind(*scope)
                .scalar_all::<DateTime<Utc>>(&mut tx)
                .await?;
            if let Some(until) = wait_for_room(&recent, *count, *limit, now) {
                wait = wait.max(Some(until));
            }
        }
        if wait.is_some() {
            tx.rollback().await?;
            return Ok(wait);
        }
        for (scope, (count, _)) in &wanted {
            for _ in 0..*count {
                db::query("INSERT INTO api_calls (scope, at) VALUES ($1, $2)")
                    .bind(*scope)
                    .bind(now)
                    .execute(&mut tx)
                    .await?;
            }
        }
        tx.commit().await?;
        Ok(None)
    }
}
