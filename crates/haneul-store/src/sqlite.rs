//! The embedded backend: one SQLite file in WAL mode. Writes go through a single connection, so
//! transactions never contend for the write lock and commit in the order they began; reads use a
//! small pool of read-only connections that WAL lets run beside the writer; a connection of its
//! own copies the log back into the database file (checkpoints), mostly off the writer's path.

use crate::backend::{
    AttemptRow, AttemptSet, AuditRow, EventRow, JobRow, JobSet, TaskRow, TaskSet,
};
use sqlx::QueryBuilder;
use sqlx::sqlite::{
    Sqlite, SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous,
};
use std::path::Path;
use std::time::Duration;

/// A [`crate::Store`] in one SQLite database file.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    write: SqlitePool,
    read: SqlitePool,
    peers: std::sync::Arc<crate::gang_cache::PeerCache>,
    placements: std::sync::Arc<crate::gang_cache::PlacementCache>,
    _checkpoints: std::sync::Arc<crate::Tasks>,
}

/// How often the checkpointer copies what the log holds into the database file. A second's
/// writes are at most a few thousand pages even at full submission rate.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(250);

/// Log pages past which a commit checkpoints too (SQLite's automatic checkpoint), so that the
/// log starts again from its beginning. The log only starts again when a write begins with
/// every page of it already copied back; under a steady stream of writes the checkpointer,
/// running between them, never leaves it so, and the log grew without end (2 GB in a
/// 100-second backlog). The checkpointer has copied all but its last 250 ms by then, so the
/// commit's share is that remainder and an fsync, once every 8 MiB of log.
const RESTART_LOG_PAGES: u32 = 2048;

/// The size a log that grew past it is cut back to when it starts again (SQLite's
/// `journal_size_limit`): a burst's log does not keep its disk space for good.
const LOG_KEPT_BYTES: u64 = 16 << 20;

/// Page cache of each read connection, in KiB (SQLite's `cache_size` when negative). In WAL
/// mode a reader drops its whole cache when it begins a transaction after any commit, and the
/// writer commits many times a second, so a reader's cache holds one transaction's pages: its
/// size only bounds how much a long listing keeps while it runs, and with SQLite's default
/// (2 MiB) four readers could hold 8 MiB of the server's peak between them.
const READER_CACHE_KIB: &str = "-512";

/// The checkpointer's page cache, in KiB: it copies frames from the log into the database
/// file without going through the cache.
const CHECKPOINTER_CACHE_KIB: &str = "-64";

/// Checkpoints the log from a connection of its own, without waiting for readers or the
/// writer (`PASSIVE`). Had commits done it all (SQLite's default, every 1,000 pages), the
/// copy and an fsync of the database file would hold the one writer (and every request queued
/// behind it): 6-7 ms on the 2-core VM, once every 4 MB of log, which a busy server writes
/// every second or two.
async fn checkpoints(pool: SqlitePool) {
    let mut tick = tokio::time::interval(CHECKPOINT_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
            .execute(&pool)
            .await
        {
            tracing::warn!(error = %e, "sqlite checkpoint failed; the next one retries");
        }
    }
}

impl SqliteStore {
    const BACKEND: &'static str = "sqlite";

    /// Opens (creating if needed) the database at `path` and brings its schema up to date.
    /// Commits are fsynced (`synchronous = FULL`): an acknowledged write survives a power cut,
    /// not only a killed process.
    pub async fn open(path: &Path) -> crate::Result<Self> {
        let opts = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        // Commits checkpoint only to let the log start again: the checkpointer below copies
        // the rest, beside them.
        let opts = opts
            .pragma("wal_autocheckpoint", RESTART_LOG_PAGES.to_string())
            .pragma("journal_size_limit", LOG_KEPT_BYTES.to_string());
        let write = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(opts.clone())
            .await?;
        sqlx::migrate!("./migrations/sqlite").run(&write).await?;
        let checkpoint = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(opts.clone().pragma("cache_size", CHECKPOINTER_CACHE_KIB))
            .await?;
        let read = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(opts.read_only(true).pragma("cache_size", READER_CACHE_KIB))
            .await?;
        Ok(SqliteStore {
            write,
            read,
            peers: Default::default(),
            placements: Default::default(),
            _checkpoints: std::sync::Arc::new(crate::Tasks(vec![tokio::spawn(checkpoints(
                checkpoint,
            ))])),
        })
    }

    async fn begin_write(&self) -> crate::Result<Tx<'static>> {
        Ok(self.write.begin().await?)
    }

    /// No other server shares the file: nothing to hear.
    fn subscribe(&self) -> Option<tokio::sync::broadcast::Receiver<crate::Change>> {
        None
    }

    async fn begin_read(&self) -> crate::Result<Tx<'static>> {
        Ok(self.read.begin().await?)
    }

    /// A write without the writers' order, or that takes it later ([`lock_writers`]): on
    /// SQLite the one writer connection gives it anyway.
    async fn begin_unlocked(&self) -> crate::Result<Tx<'static>> {
        self.begin_write().await
    }
}

/// The writer connection with its commits not flushed to disk (`synchronous = NORMAL`) until
/// [`Unflushed::restore`] sets it back to `FULL`. SQLite refuses to change the setting inside a
/// transaction, so it is set on the connection around one. Should it not be set back (an error,
/// or the caller dropped halfway), the connection is closed instead of going back to the pool,
/// and the pool opens a new one with the store's options (`FULL`): no later write can commit
/// unflushed by mistake.
struct Unflushed {
    conn: sqlx::pool::PoolConnection<Sqlite>,
    restored: bool,
}

impl Unflushed {
    async fn acquire(pool: &SqlitePool) -> crate::Result<Self> {
        let mut u = Unflushed {
            conn: pool.acquire().await?,
            restored: false,
        };
        sqlx::query("PRAGMA synchronous = NORMAL")
            .execute(&mut *u.conn)
            .await?;
        Ok(u)
    }

    async fn begin(&mut self) -> crate::Result<Tx<'_>> {
        Ok(sqlx::Acquire::begin(&mut self.conn).await?)
    }

    async fn restore(mut self) -> crate::Result<()> {
        sqlx::query("PRAGMA synchronous = FULL")
            .execute(&mut *self.conn)
            .await?;
        self.restored = true;
        Ok(())
    }
}

impl Drop for Unflushed {
    fn drop(&mut self) {
        if !self.restored {
            self.conn.close_on_drop();
        }
    }
}

impl SqliteStore {
    /// Heartbeats `nodes` when none of them is lost, in a commit that is not flushed: `None`,
    /// with nothing written, when one is lost (bringing it back appends an event and is written
    /// as any other write). A heartbeat only moves a node's `last_heartbeat` forward and is sent
    /// again every interval, so it need not survive a power cut on its own: the next flushed
    /// commit (a submit, a start, a report, a checkpoint) flushes it with its own, the log being
    /// written in order. What it saves is the flush, the largest part of a commit: at 1,250
    /// nodes, 250 heartbeats a second had each batch hold the one writer, and every submit
    /// queued behind it, for a flush of its own.
    async fn beat_fresh(
        &self,
        nodes: &[i64],
        now: i64,
    ) -> crate::Result<Option<Vec<Option<crate::records::NodeRecord>>>> {
        let mut conn = Unflushed::acquire(&self.write).await?;
        let mut tx = conn.begin().await?;
        let out = refresh(&mut tx, nodes, now).await?;
        let fresh = !out.iter().flatten().any(is_lost);
        if fresh {
            tx.commit().await?;
        } else {
            tx.rollback().await?;
        }
        conn.restore().await?;
        Ok(fresh.then_some(out))
    }
}

/// Takes the writers' place in sequence (nothing to take on SQLite, whose one writer connection
/// is already held) and reads the audit chain's tip.
async fn lock_writers(tx: &mut Tx<'_>) -> crate::Result<String> {
    Ok(
        sqlx::query_scalar::<_, String>("SELECT hash FROM audit ORDER BY seq DESC LIMIT 1")
            .fetch_optional(&mut **tx)
            .await?
            .unwrap_or_default(),
    )
}

/// Rows per multi-row statement: SQLite binds at most 32,766 parameters in one, and the widest
/// row here has 13.
const ROWS: usize = 1000;

/// Whether a multi-row statement over `chunk` is kept prepared. Its text differs with the
/// number of rows, so statements of many rows are prepared each time rather than fill the
/// connection's statement cache; but a lone submit, a start of one job and one agent's report
/// write one row, whose statement is the same text every time: kept, it is not compiled again
/// on each write, under the one writer that every other write waits for.
fn one_row<T>(chunk: &[T]) -> bool {
    chunk.len() == 1
}

/// Inserts queued jobs and keeps their idempotency keys, returning the jobs' rows (in no
/// promised order). A key with a live answer already fails the whole batch.
async fn insert_job_rows(tx: &mut Tx<'_>, jobs: &[JobRow], now: i64) -> crate::Result<Vec<DbRow>> {
    let mut out = Vec::with_capacity(jobs.len());
    for chunk in jobs.chunks(ROWS) {
        let mut qb = QueryBuilder::<Sqlite>::new(
            "INSERT INTO jobs (project_id, user_id, name, spec, command, container_image, \
             state, submitted_at, updated_at, attempts, batch, array_spec, interactive) ",
        );
        qb.push_values(chunk, |mut b, j| {
            b.push_bind(j.project)
                .push_bind(j.user)
                .push_bind(&j.name)
                .push_bind(&j.spec)
                .push_bind(&j.command)
                .push_bind(&j.container_image)
                .push_bind("queued")
                .push_bind(now)
                .push_bind(now)
                .push_bind(0i64)
                .push_bind(&j.batch)
                .push_bind(&j.array_spec)
                .push_bind(j.interactive);
        });
        qb.push(" RETURNING *");
        out.extend(
            qb.build()
                .persistent(one_row(chunk))
                .fetch_all(&mut **tx)
                .await
                .map_err(|e| unique(e, "project", "job".into()))?,
        );
    }
    // Ids are given in the rows' order (the caller checks each row against its job); one
    // statement a key, in process: nothing to save by batching them.
    let mut ids = out
        .iter()
        .map(|r| r.try_get::<i64, _>("id"))
        .collect::<Result<Vec<_>, _>>()?;
    ids.sort_unstable();
    for (j, id) in jobs.iter().zip(ids) {
        if let Some(k) = &j.key {
            keep_job_key(tx, j.user, id, k, now).await?;
        }
    }
    Ok(out)
}

/// Appends ledger rows in multi-row statements. A second charge, refund or credit of an attempt
/// breaks the ledger's (attempt, kind) key and fails the whole write.
async fn insert_ledger(
    tx: &mut Tx<'_>,
    rows: &[crate::backend::LedgerRow],
    now: i64,
) -> crate::Result<()> {
    for chunk in rows.chunks(ROWS) {
        let mut qb = QueryBuilder::<Sqlite>::new(
            "INSERT INTO ledger (at, kind, attempt_id, project_id, org_id, award_id, gpu_model, \
             gpu_ms, weight_milli, charged_ms) ",
        );
        qb.push_values(chunk, |mut b, r| {
            b.push_bind(now)
                .push_bind(r.kind)
                .push_bind(r.attempt)
                .push_bind(r.project)
                .push_bind(r.org)
                .push_bind(r.award)
                .push_bind(&r.gpu_model)
                .push_bind(r.gpu_ms)
                .push_bind(r.weight_milli)
                .push_bind(r.charged_ms);
        });
        qb.build()
            .persistent(one_row(chunk))
            .execute(&mut **tx)
            .await
            .map_err(|e| unique(e, "attempt", "a ledger row of one of these attempts".into()))?;
    }
    Ok(())
}

/// Appends controller events and audit entries, each list in its order.
async fn insert_log(tx: &mut Tx<'_>, events: &[EventRow], audit: &[AuditRow]) -> crate::Result<()> {
    for chunk in events.chunks(ROWS) {
        let mut qb = QueryBuilder::<Sqlite>::new(
            "INSERT INTO events (at, kind, job_id, attempt_id, node_id, detail) ",
        );
        qb.push_values(chunk, |mut b, e| {
            b.push_bind(e.at)
                .push_bind(e.kind)
                .push_bind(e.job)
                .push_bind(e.attempt)
                .push_bind(e.node)
                .push_bind(&e.detail);
        });
        qb.build()
            .persistent(one_row(chunk))
            .execute(&mut **tx)
            .await?;
    }
    for chunk in audit.chunks(ROWS) {
        let mut qb = QueryBuilder::<Sqlite>::new(
            "INSERT INTO audit (at, actor, action, target, detail, prev_hash, hash) ",
        );
        qb.push_values(chunk, |mut b, a| {
            b.push_bind(a.at)
                .push_bind(&a.actor)
                .push_bind(&a.action)
                .push_bind(&a.target)
                .push_bind(&a.detail)
                .push_bind(&a.prev_hash)
                .push_bind(&a.hash);
        });
        qb.build()
            .persistent(one_row(chunk))
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

/// Inserts started attempts (state `assigned`), their tasks and their `Started` events (in
/// attempt id order), returning the attempts' rows.
async fn insert_started(
    tx: &mut Tx<'_>,
    epoch: i64,
    now: i64,
    attempts: &[AttemptRow],
    tasks: &[TaskRow],
) -> crate::Result<Vec<DbRow>> {
    let mut rows = Vec::with_capacity(attempts.len());
    for chunk in attempts.chunks(ROWS) {
        let mut qb = QueryBuilder::<Sqlite>::new(
            "INSERT INTO attempts (job_id, fence, epoch, placement, gpu_model, borrowing, \
             state, created_at, deadline, gpu_ms) ",
        );
        qb.push_values(chunk, |mut b, a| {
            b.push_bind(a.job)
                .push_bind(a.fence)
                .push_bind(epoch)
                .push_bind(&a.placement)
                .push_bind(&a.gpu_model)
                .push_bind(a.borrowing)
                .push_bind("assigned")
                .push_bind(now)
                .push_bind(a.deadline)
                .push_bind(0i64);
        });
        qb.push(" RETURNING *");
        rows.extend(
            qb.build()
                .persistent(one_row(chunk))
                .fetch_all(&mut **tx)
                .await?,
        );
    }
    let mut ids = std::collections::BTreeMap::new();
    for r in &rows {
        ids.insert(r.try_get::<i64, _>("job_id")?, r.try_get::<i64, _>("id")?);
    }
    for chunk in tasks.chunks(4 * ROWS) {
        let mut qb = QueryBuilder::<Sqlite>::new(
            "INSERT INTO tasks (attempt_id, idx, node_id, gpus, state) ",
        );
        qb.push_values(chunk, |mut b, t| {
            b.push_bind(ids.get(&t.job).copied())
                .push_bind(t.idx)
                .push_bind(t.node)
                .push_bind(&t.gpus)
                .push_bind("assigned");
        });
        qb.build()
            .persistent(one_row(chunk))
            .execute(&mut **tx)
            .await?;
    }
    let mut started: Vec<(i64, i64)> = ids.into_iter().map(|(job, id)| (id, job)).collect();
    started.sort_unstable();
    let events: Vec<EventRow> = started
        .into_iter()
        .map(|(id, job)| EventRow {
            at: now,
            kind: crate::records::EventKind::Started.as_str(),
            job: Some(job),
            attempt: Some(id),
            node: None,
            detail: String::new(),
        })
        .collect();
    insert_log(tx, &events, &[]).await?;
    Ok(rows)
}

/// Writes what a batch of task reports changed: the tasks, the attempts and the jobs, a
/// multi-row statement each (per [`ROWS`] rows).
async fn write_reported(
    tx: &mut Tx<'_>,
    tasks: &[TaskSet],
    attempts: &[AttemptSet],
    jobs: &[JobSet],
    now: i64,
) -> crate::Result<()> {
    for chunk in tasks.chunks(ROWS) {
        let mut qb = QueryBuilder::<Sqlite>::new("WITH v(attempt, idx, state, code) AS (");
        qb.push_values(chunk, |mut b, t| {
            b.push_bind(t.attempt)
                .push_bind(t.idx)
                .push_bind(&t.state)
                .push_bind(t.exit_code);
        });
        qb.push(
            ") UPDATE tasks SET state = v.state, exit_code = v.code FROM v \
             WHERE tasks.attempt_id = v.attempt AND tasks.idx = v.idx",
        );
        qb.build()
            .persistent(one_row(chunk))
            .execute(&mut **tx)
            .await?;
    }
    for chunk in attempts.chunks(ROWS) {
        let mut qb = QueryBuilder::<Sqlite>::new(
            "WITH v(id, state, stop_reason, kill_at, started_at, ended_at, code, gpu_ms) AS (",
        );
        qb.push_values(chunk, |mut b, a| {
            b.push_bind(a.id)
                .push_bind(a.state)
                .push_bind(a.stop_reason)
                .push_bind(a.kill_at)
                .push_bind(a.started_at)
                .push_bind(a.ended_at)
                .push_bind(a.exit_code)
                .push_bind(a.gpu_ms);
        });
        qb.push(
            ") UPDATE attempts SET state = v.state, stop_reason = v.stop_reason, \
             kill_at = v.kill_at, started_at = v.started_at, ended_at = v.ended_at, \
             exit_code = v.code, gpu_ms = v.gpu_ms FROM v WHERE attempts.id = v.id",
        );
        qb.build()
            .persistent(one_row(chunk))
            .execute(&mut **tx)
            .await?;
    }
    for chunk in jobs.chunks(ROWS) {
        let mut qb = QueryBuilder::<Sqlite>::new("WITH v(id, state, code, reason) AS (");
        qb.push_values(chunk, |mut b, j| {
            b.push_bind(j.id)
                .push_bind(j.state)
                .push_bind(j.exit_code)
                .push_bind(j.reason);
        });
        qb.push(
            ") UPDATE jobs SET state = v.state, exit_code = COALESCE(v.code, jobs.exit_code), \
             reason = COALESCE(v.reason, jobs.reason), updated_at = ",
        );
        qb.push_bind(now);
        qb.push(" FROM v WHERE jobs.id = v.id");
        qb.build()
            .persistent(one_row(chunk))
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

crate::backend::store_impl!(SqliteStore, sqlx::Sqlite);

#[cfg(test)]
mod tests {
    use super::*;

    /// The writer connection's `synchronous` level (2 is FULL, 1 NORMAL).
    async fn synchronous(store: &SqliteStore) -> i64 {
        sqlx::query_scalar("PRAGMA synchronous")
            .fetch_one(&store.write)
            .await
            .expect("pragma")
    }

    async fn store() -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = SqliteStore::open(&dir.path().join("haneul.db"))
            .await
            .expect("open");
        (dir, store)
    }

    #[tokio::test]
    async fn a_heartbeat_commits_unflushed_and_leaves_the_writer_flushing() {
        let (_dir, store) = store().await;
        assert_eq!(synchronous(&store).await, 2);
        let mut u = Unflushed::acquire(&store.write).await.expect("acquire");
        let level: i64 = sqlx::query_scalar("PRAGMA synchronous")
            .fetch_one(&mut *u.conn)
            .await
            .expect("pragma");
        assert_eq!(level, 1, "the heartbeat's own commit is not flushed");
        u.restore().await.expect("restore");
        // A node that does not exist: the batch commits and answers nothing for it.
        let out = store.beat_fresh(&[1], 0).await.expect("beat");
        assert_eq!(out.map(|o| o.len()), Some(1));
        assert_eq!(
            synchronous(&store).await,
            2,
            "the next write is flushed again"
        );
    }

    #[tokio::test]
    async fn a_writer_not_set_back_to_flushing_is_closed_not_reused() {
        let (_dir, store) = store().await;
        let u = Unflushed::acquire(&store.write).await.expect("acquire");
        // As if the heartbeat failed or was dropped before setting the level back.
        drop(u);
        assert_eq!(synchronous(&store).await, 2);
    }
}
