//! Group commit for SQLite. The store has one writer connection, and with
//! `synchronous = FULL` every commit waits for the disk: a commit per transaction caps the
//! whole process (ingest, workers, writebacks) at the disk's syncs per second.
//!
//! Here each write transaction is a savepoint inside one open SQLite transaction. The
//! writers queue for the connection in turn; a transaction that finishes while others wait
//! leaves the outer transaction open for them, and the last of a run (or the
//! [`MAX_GROUP`]th) has it committed. Each `commit` returns only once the outer commit
//! that holds it has reached the disk, so "committed" means what it did before; a crash
//! before that loses the whole group, none of which had been answered.

use sqlx::sqlite::SqliteConnection;
use sqlx::{Sqlite, SqlitePool};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::{Mutex, Notify, OwnedMutexGuard, watch};

/// At most this many transactions share a commit, so that under steady load a caller waits
/// for a bounded group rather than for the queue to run dry.
const MAX_GROUP: usize = 128;

/// Every turn's savepoint has the same name (prepared once): at most one exists at a time,
/// since each turn first settles the one before it, and a turn marks its savepoint
/// unsettled before making it and until it is released.
const SAVEPOINT: &str = "SAVEPOINT leadlink_tx";
const RELEASE: &str = "RELEASE leadlink_tx";
const ROLLBACK: &str = "ROLLBACK TO leadlink_tx";

/// Runs one statement of the savepoint bookkeeping.
async fn run(conn: &mut SqliteConnection, sql: &'static str) -> Result<(), sqlx::Error> {
    sqlx::query(sql).execute(conn).await.map(|_| ())
}

fn is_no_such_savepoint(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(e) if e.message().contains("no such savepoint"))
}

/// The outcome of one outer commit, seen by every transaction in it.
type GroupResult = Option<Result<(), Arc<str>>>;

/// The writer connection, shared by turns.
#[derive(Debug, Clone)]
pub struct SharedWriter {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    pool: SqlitePool,
    /// How long a transaction waits for its turn, as it would for a pooled connection.
    acquire_timeout: Duration,
    slot: Arc<Mutex<Slot>>,
    /// Transactions waiting for their turn: while there are some, a finished one leaves
    /// the commit to them.
    queued: AtomicUsize,
    /// Wakes the committer.
    flush: Arc<Notify>,
}

#[derive(Debug)]
struct Slot {
    /// The outer transaction, while one is open.
    open: Option<sqlx::Transaction<'static, Sqlite>>,
    /// A turn that did not finish cleanly (dropped, cancelled, or failed while releasing):
    /// its savepoint may still exist, and is undone before anyone else writes.
    unsettled: bool,
    members: usize,
    group: watch::Sender<GroupResult>,
}

impl Slot {
    fn new_group(&mut self) -> watch::Sender<GroupResult> {
        self.members = 0;
        std::mem::replace(&mut self.group, watch::channel(None).0)
    }

    /// Undoes an unfinished turn's savepoint. One that no longer exists was never made or
    /// was released: its writes, answered to nobody, go with the group. Any other failure
    /// means the outer transaction cannot be trusted; it is rolled back with its group.
    async fn settle(&mut self) {
        if !self.unsettled {
            return;
        }
        let Some(open) = self.open.as_mut() else {
            self.unsettled = false;
            return;
        };
        let undone = match run(open, ROLLBACK).await {
            Ok(()) => run(open, RELEASE).await,
            Err(error) if is_no_such_savepoint(&error) => Ok(()),
            Err(error) => Err(error),
        };
        match undone {
            Ok(()) => self.unsettled = false,
            Err(error) => self.fail_group(error).await,
        }
    }

    async fn fail_group(&mut self, error: sqlx::Error) {
        self.unsettled = false;
        if let Some(open) = self.open.take() {
            // A connection this leaves inside a transaction is closed by the pool
            // (`after_release`), so the next turn starts on a fresh one.
            let _ = open.rollback().await;
        }
        let group = self.new_group();
        group.send_replace(Some(Err(error.to_string().into())));
    }

    async fn commit_group(&mut self) {
        self.settle().await;
        let Some(open) = self.open.take() else {
            return;
        };
        let result = open.commit().await.map_err(|e| e.to_string().into());
        let group = self.new_group();
        group.send_replace(Some(result));
    }
}

impl SharedWriter {
    /// `pool` holds the one writer connection and is used by nothing else.
    pub fn new(pool: SqlitePool, acquire_timeout: Duration) -> SharedWriter {
        let slot = Slot {
            open: None,
            unsettled: false,
            members: 0,
            group: watch::channel(None).0,
        };
        let inner = Arc::new(Inner {
            pool,
            acquire_timeout,
            slot: Arc::new(Mutex::new(slot)),
            queued: AtomicUsize::new(0),
            flush: Arc::new(Notify::new()),
        });
        tokio::spawn(commit_when_told(
            Arc::downgrade(&inner),
            inner.slot.clone(),
            inner.flush.clone(),
        ));
        SharedWriter { inner }
    }

    /// A write transaction: the connection, for this caller alone until it finishes.
    pub async fn begin(&self) -> Result<WriteTx, sqlx::Error> {
        let mut queued = Queued::join(&self.inner);
        let turn = self.inner.slot.clone().lock_owned();
        let mut slot = tokio::time::timeout(self.inner.acquire_timeout, turn)
            .await
            .map_err(|_| sqlx::Error::PoolTimedOut)?;
        queued.got_turn();
        drop(queued);
        slot.settle().await;
        if slot.open.is_none() {
            // IMMEDIATE takes the write lock at once, so a transaction that reads before it
            // writes cannot fail half way on a busy lock. On a task of its own, since a
            // caller cancelled inside sqlx's begin could leave the connection counted inside
            // a transaction nobody holds.
            let pool = self.inner.pool.clone();
            let begun = tokio::spawn(async move { pool.begin_with("BEGIN IMMEDIATE").await });
            slot.open = Some(begun.await.map_err(|_| sqlx::Error::PoolClosed)??);
        }
        // Marked before it is made: a caller cancelled during the statement leaves it to
        // be undone.
        slot.unsettled = true;
        let mut tx = WriteTx {
            slot,
            inner: self.inner.clone(),
        };
        run(tx.conn(), SAVEPOINT).await?;
        Ok(tx)
    }

    /// Commits what is open and closes the connection.
    pub async fn close(&self) {
        self.inner.slot.lock().await.commit_group().await;
        self.inner.pool.close().await;
    }
}

/// Counts a transaction as waiting until it has its turn. One that gave up (cancelled, or
/// timed out) wakes the committer if it was the last in line, since the turn before it
/// left the commit to it.
struct Queued<'a> {
    inner: &'a Inner,
    got_turn: bool,
}

impl<'a> Queued<'a> {
    fn join(inner: &'a Inner) -> Queued<'a> {
        inner.queued.fetch_add(1, Ordering::SeqCst);
        Queued {
            inner,
            got_turn: false,
        }
    }

    fn got_turn(&mut self) {
        self.got_turn = true;
    }
}

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        let before = self.inner.queued.fetch_sub(1, Ordering::SeqCst);
        if before == 1 && !self.got_turn {
            self.inner.flush.notify_one();
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // The committer holds no strong reference; this lets it see that it is alone.
        self.flush.notify_one();
    }
}

/// Commits the open group whenever a transaction finishes with nobody waiting behind it.
async fn commit_when_told(
    writer: std::sync::Weak<Inner>,
    slot: Arc<Mutex<Slot>>,
    flush: Arc<Notify>,
) {
    loop {
        flush.notified().await;
        slot.lock().await.commit_group().await;
        if writer.strong_count() == 0 {
            return;
        }
    }
}

/// One write transaction on the shared connection.
pub struct WriteTx {
    slot: OwnedMutexGuard<Slot>,
    inner: Arc<Inner>,
}

impl WriteTx {
    pub fn conn(&mut self) -> &mut SqliteConnection {
        let open = self
            .slot
            .open
            .as_mut()
            .expect("a write transaction's outer transaction stays open while it lives");
        &mut *open
    }

    /// Returns once the outer commit holding this transaction is on disk.
    pub async fn commit(mut self) -> Result<(), sqlx::Error> {
        // Until the release is through, the savepoint stays marked unsettled: a failure
        // or a cancellation here leaves it to the next turn to undo.
        run(self.conn(), RELEASE).await?;
        self.slot.unsettled = false;
        self.slot.members += 1;
        let mut done = self.slot.group.subscribe();
        let close_now = self.slot.members >= MAX_GROUP;
        let inner = self.inner.clone();
        drop(self);
        if close_now {
            inner.flush.notify_one();
        }
        let outcome = done
            .wait_for(Option::is_some)
            .await
            .map_err(|_| sqlx::Error::PoolClosed)?
            .clone();
        match outcome {
            Some(Err(error)) => Err(sqlx::Error::Protocol(format!(
                "the group commit holding this transaction failed: {error}"
            ))),
            _ => Ok(()),
        }
    }

    pub async fn rollback(mut self) -> Result<(), sqlx::Error> {
        self.slot.settle().await;
        Ok(())
    }
}

impl Drop for WriteTx {
    fn drop(&mut self) {
        // With nobody waiting, the group this turn ends must not wait for a next writer.
        if self.inner.queued.load(Ordering::SeqCst) == 0 {
            self.inner.flush.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};

    /// A writer on a fresh file, and a separate connection that sees only what was
    /// committed.
    async fn writer_and_reader() -> (SharedWriter, sqlx::SqliteConnection) {
        let file =
            std::env::temp_dir().join(format!("leadlink-commit-{}.db", uuid::Uuid::now_v7()));
        let options = SqliteConnectOptions::new()
            .filename(&file)
            .journal_mode(SqliteJournalMode::Wal)
            .create_if_missing(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options.clone())
            .await
            .unwrap();
        sqlx::query("CREATE TABLE t (v INTEGER NOT NULL UNIQUE)")
            .execute(&pool)
            .await
            .unwrap();
        let reader = sqlx::Connection::connect_with(&options).await.unwrap();
        (SharedWriter::new(pool, Duration::from_secs(5)), reader)
    }

    async fn insert(tx: &mut WriteTx, v: i64) -> Result<(), sqlx::Error> {
        sqlx::query("INSERT INTO t (v) VALUES ($1)")
            .bind(v)
            .execute(tx.conn())
            .await
            .map(|_| ())
    }

    async fn committed(reader: &mut sqlx::SqliteConnection) -> Vec<i64> {
        sqlx::query_scalar("SELECT v FROM t ORDER BY v")
            .fetch_all(reader)
            .await
            .unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_commit_returns_once_another_connection_sees_it() {
        let (writer, mut reader) = writer_and_reader().await;
        let mut tasks = tokio::task::JoinSet::new();
        for v in 0..200 {
            let writer = writer.clone();
            tasks.spawn(async move {
                let mut tx = writer.begin().await.unwrap();
                insert(&mut tx, v).await.unwrap();
                tx.commit().await.unwrap();
                v
            });
        }
        let mut seen = 0;
        while let Some(v) = tasks.join_next().await {
            let v = v.unwrap();
            let rows = committed(&mut reader).await;
            assert!(rows.contains(&v), "{v} answered committed but not on disk");
            seen += 1;
        }
        assert_eq!(seen, 200);
        assert_eq!(committed(&mut reader).await, (0..200).collect::<Vec<_>>());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_caller_that_gave_up_waiting_does_not_hold_back_the_commit() {
        let (writer, mut reader) = writer_and_reader().await;
        let mut first = writer.begin().await.unwrap();
        insert(&mut first, 1).await.unwrap();
        let gave_up = tokio::spawn({
            let writer = writer.clone();
            async move { writer.begin().await.map(drop) }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        gave_up.abort();
        let _ = gave_up.await;
        tokio::time::timeout(Duration::from_secs(5), first.commit())
            .await
            .expect("the commit waited for a caller that had gone")
            .unwrap();
        assert_eq!(committed(&mut reader).await, vec![1]);
    }

    // Found by review: a turn cancelled inside `begin` or `commit` before it was marked
    // unsettled left a savepoint whose undoing rolled back a later turn answered Ok.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn turns_cancelled_at_any_point_never_undo_an_answered_commit() {
        let (writer, mut reader) = writer_and_reader().await;
        let mut answered = Vec::new();
        for round in 0..60_i64 {
            let cancelled = tokio::spawn({
                let writer = writer.clone();
                async move {
                    let mut tx = writer.begin().await?;
                    insert(&mut tx, 10_000 + round).await?;
                    tx.commit().await
                }
            });
            // A different point of cancellation each round: in the queue, in a statement,
            // in the release, or while waiting for the group.
            tokio::time::sleep(Duration::from_micros(37 * (round as u64 % 11))).await;
            cancelled.abort();
            let mut tx = writer.begin().await.unwrap();
            insert(&mut tx, round).await.unwrap();
            tx.commit().await.unwrap();
            answered.push(round);
        }
        let rows = committed(&mut reader).await;
        for round in answered {
            assert!(rows.contains(&round), "{round} was answered Ok and is gone");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_dropped_or_failed_transaction_undoes_only_its_own_writes() {
        let (writer, mut reader) = writer_and_reader().await;
        let mut kept = writer.begin().await.unwrap();
        insert(&mut kept, 1).await.unwrap();
        let keeper = tokio::spawn(kept.commit());

        // Queued behind nobody once `kept` released: dropped half way, as on an early `?`.
        let mut dropped = writer.begin().await.unwrap();
        insert(&mut dropped, 2).await.unwrap();
        drop(dropped);

        let mut rolled_back = writer.begin().await.unwrap();
        insert(&mut rolled_back, 3).await.unwrap();
        rolled_back.rollback().await.unwrap();

        // A statement error inside a transaction leaves its earlier writes to its caller.
        let mut conflicting = writer.begin().await.unwrap();
        insert(&mut conflicting, 4).await.unwrap();
        assert!(insert(&mut conflicting, 1).await.is_err());
        conflicting.commit().await.unwrap();

        keeper.await.unwrap().unwrap();
        assert_eq!(committed(&mut reader).await, vec![1, 4]);
    }
}
