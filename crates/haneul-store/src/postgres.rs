//! The production backend: PostgreSQL. Several server processes may share one database (one
//! leads, the others stand by). Every write transaction first takes one advisory lock, so writes
//! commit one at a time in sequence order: the controller can tail the event table by sequence
//! number without missing a row committed late, and the audit chain has a single tip.
//!
//! Servers hear each other's commits through LISTEN/NOTIFY (migration 0016's triggers): one
//! connection of the pool listens and [`crate::Store::changes`] hands out what it hears.
//!
//! A URL may name several hosts (a primary and its replicas) with
//! `target_session_attrs=read-write`: the pool then follows whichever of them takes writes, so
//! the servers carry on by themselves when the database fails over.

use crate::backend::{
    AttemptRow, AttemptSet, AuditRow, EventRow, JobRow, JobSet, TaskRow, TaskSet,
};
use crate::pg_targets::Targets;
use crate::{Change, Tasks};
use sqlx::postgres::{
    PgArguments, PgConnectOptions, PgConnection, PgListener, PgPool, PgPoolOptions, Postgres,
};
use sqlx::{ConnectOptions, Connection};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;
use tokio::sync::broadcast;

/// The advisory lock that serialises writers, key "haneul" in ASCII folded into an i64
/// (0x68616e65756c).
macro_rules! writers_lock {
    () => {
        "SELECT pg_advisory_xact_lock(114767673259372)"
    };
}

/// Begins a write holding the writers' lock.
const BEGIN_WRITE: &str = concat!("BEGIN; ", writers_lock!());

/// Takes the writers' lock in a transaction already begun, and then reads the audit chain's
/// tip: two statements in one message (one round trip), the second on a snapshot taken after
/// the lock was granted (each statement of a read-committed transaction takes its own), so it
/// sees every earlier writer's commit.
const LOCK_AND_TIP: &str = concat!(
    writers_lock!(),
    "; SELECT (SELECT hash FROM audit ORDER BY seq DESC LIMIT 1) AS hash"
);

/// A [`crate::Store`] in a PostgreSQL database.
#[derive(Debug, Clone)]
pub struct PostgresStore {
    write: PgPool,
    read: PgPool,
    /// What other servers commit, from the listener.
    changes: broadcast::Sender<Change>,
    /// Keeps the listener, the fail-over watcher and the statistics keeper alive as long as a
    /// clone of the store is; stops them after.
    _tasks: Arc<Tasks>,
    peers: Arc<crate::gang_cache::PeerCache>,
    placements: Arc<crate::gang_cache::PlacementCache>,
}

/// How often the watcher checks that the pool's host still takes writes.
const WATCH_EVERY: Duration = Duration::from_millis(500);

/// How often the statistics keeper looks for tables that grew ([`analyze_grown_tables`]).
const STATISTICS_EVERY: Duration = Duration::from_secs(5);

/// Refreshes the planner's statistics of this schema's tables that changed by more than a
/// tenth (and by more than 1,000 rows) since they were last analysed, and names them.
///
/// Each pooled session prepares the hot statements once, and PostgreSQL soon settles on a
/// generic plan for each, costed on the tables' statistics of that moment; only a new
/// `ANALYZE` of a table makes the sessions plan again. Planned while the tables were nearly
/// empty, those plans read `tasks`, `attempts` and `jobs` whole for every report batch, and
/// kept doing so as the tables grew: on this machine's PostgreSQL, which runs with
/// `autovacuum = off`, `haneul bench centre` took 114 submissions/s, its sessions having read
/// 553 million rows of `tasks` in 18,000 sequential scans (docs/benchmarks.md). Where
/// autovacuum runs it analyses too, but looks only once a minute.
async fn analyze_grown_tables(pool: &PgPool) -> crate::Result<Vec<String>> {
    let grown: Vec<String> = sqlx::query_scalar(
        "SELECT format('%I.%I', schemaname, relname) FROM pg_stat_user_tables \
         WHERE schemaname = current_schema() AND n_mod_since_analyze > 1000 + n_live_tup / 10 \
         ORDER BY relname",
    )
    .fetch_all(pool)
    .await?;
    for table in &grown {
        sqlx::raw_sql(&format!("ANALYZE {table}"))
            .execute(pool)
            .await?;
    }
    Ok(grown)
}

/// Runs [`analyze_grown_tables`] every [`STATISTICS_EVERY`] for as long as the store lives.
async fn keep_statistics(pool: PgPool) {
    let mut tick = tokio::time::interval(STATISTICS_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match analyze_grown_tables(&pool).await {
            Ok(grown) if !grown.is_empty() => {
                tracing::debug!(tables = ?grown, "refreshed the planner's statistics")
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(
                error = %e,
                "refreshing the planner's statistics failed; the next look retries"
            ),
        }
    }
}

/// Connections in the pool. Writers queue on one lock, so more connections would only hold
/// more waiting writers; the rest serve reads (agents' long polls, the API) and the listener.
const POOL_SIZE: u32 = 16;

/// The `application_name` of this store's sessions, unique among the servers sharing the
/// database (process id and a count within the process), so that the listener can tell its own
/// notifications from others'. An `application_name` in the URL is kept as its prefix.
fn session_name(given: Option<&str>) -> String {
    static COUNT: AtomicU32 = AtomicU32::new(0);
    format!(
        "{}/{}.{}",
        given.unwrap_or("haneul"),
        std::process::id(),
        COUNT.fetch_add(1, Ordering::Relaxed)
    )
}

impl PostgresStore {
    const BACKEND: &'static str = "postgres";

    /// Connects to `url` (postgres://...) and brings the schema up to date. Concurrent servers
    /// may start together: sqlx serialises migrations with its own lock.
    ///
    /// With several hosts, or `target_session_attrs=read-write`, the first acceptable host in
    /// the URL's order serves the pool; every new connection is checked to take writes (a
    /// refused one is retried by the pool), and a watcher moves the pool to another host when
    /// its own stops answering or turns read-only.
    pub async fn open(url: &str) -> crate::Result<Self> {
        let mut targets = Targets::parse(url)?;
        let name = session_name(targets.hosts[0].get_application_name());
        for host in &mut targets.hosts {
            *host = host.clone().application_name(&name);
        }
        let options = PgPoolOptions::new()
            .max_connections(POOL_SIZE)
            .acquire_timeout(Duration::from_secs(10));
        if targets.is_simple() {
            let pool = options.connect_with(targets.hosts[0].clone()).await?;
            return Self::ready(pool, name, None).await;
        }
        let first = targets.pick().await?;
        let check = targets.clone();
        let pool = options
            .after_connect(move |conn, _| {
                let check = check.clone();
                Box::pin(async move {
                    check.acceptable(conn).await.map_err(|why| {
                        sqlx::Error::Configuration(
                            format!("target_session_attrs=read-write: {why}").into(),
                        )
                    })
                })
            })
            .connect_with(first)
            .await?;
        let watcher = tokio::spawn(watch(pool.clone(), targets));
        Self::ready(pool, name, Some(watcher)).await
    }

    async fn ready(
        pool: PgPool,
        name: String,
        watcher: Option<tokio::task::JoinHandle<()>>,
    ) -> crate::Result<Self> {
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        let (changes, _) = broadcast::channel(64);
        // Listening before the store is handed out: nothing committed after `open` returns is
        // missed.
        let listener = start_listening(&pool).await?;
        let mut tasks: Vec<_> = watcher.into_iter().collect();
        tasks.push(tokio::spawn(listen(
            pool.clone(),
            listener,
            name,
            changes.clone(),
        )));
        tasks.push(tokio::spawn(keep_statistics(pool.clone())));
        Ok(PostgresStore {
            write: pool.clone(),
            read: pool,
            changes,
            _tasks: Arc::new(Tasks(tasks)),
            peers: Default::default(),
            placements: Default::default(),
        })
    }

    /// What [`crate::Store::changes`] hands out.
    fn subscribe(&self) -> Option<broadcast::Receiver<Change>> {
        Some(self.changes.subscribe())
    }

    /// A write transaction holding the writers' lock. `BEGIN` and the lock go in one message (a
    /// simple query of two statements), so starting a write costs one round trip, not two.
    async fn begin_write(&self) -> crate::Result<Tx<'static>> {
        begin_to_the_end(&self.write, BEGIN_WRITE).await
    }

    /// A write transaction without the writers' lock: for rows that need no place in the
    /// writers' sequence (telemetry), or written before the lock is taken ([`lock_writers`]).
    async fn begin_unlocked(&self) -> crate::Result<Tx<'static>> {
        begin_to_the_end(&self.write, "BEGIN").await
    }

    /// A read-only transaction on one snapshot, begun in one round trip.
    async fn begin_read(&self) -> crate::Result<Tx<'static>> {
        begin_to_the_end(
            &self.read,
            "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
        )
        .await
    }
}

impl PostgresStore {
    /// Heartbeats `nodes` when none of them is lost: `None`, with nothing written, when one is
    /// (bringing it back appends an event and takes the writers' lock). As on SQLite, the commit
    /// does not wait for its flush: a heartbeat only moves a node's `last_heartbeat` forward and
    /// is sent again every interval, and the log is flushed in order, so the next commit that
    /// waits for its flush (a submit, a start, a report) or the WAL writer (within
    /// `wal_writer_delay`) makes it durable. PostgreSQL shares a flush among commits that wait
    /// together, but a commit that comes while a heartbeat's flush is on the disk waits for that
    /// one and then its own: at 250 heartbeats a second that is often a submit's.
    async fn beat_fresh(
        &self,
        nodes: &[i64],
        now: i64,
    ) -> crate::Result<Option<Vec<Option<crate::records::NodeRecord>>>> {
        let mut tx =
            begin_to_the_end(&self.write, "BEGIN; SET LOCAL synchronous_commit TO off").await?;
        let out = refresh(&mut tx, nodes, now).await?;
        if out.iter().flatten().any(is_lost) {
            tx.rollback().await?;
            return Ok(None);
        }
        tx.commit().await?;
        Ok(Some(out))
    }
}

/// Begins a transaction in a task of its own, so that it runs to the end even when the caller
/// gives up (a request timed out, a client went away) while `BEGIN` is on the wire. sqlx 0.8
/// counts a transaction only once `BEGIN`'s answer is read; a caller dropped before that leaves
/// the session inside a transaction nothing will end, back in the pool (sqlx issue 4393). For
/// [`PostgresStore::begin_write`] that transaction holds the writers' lock, so every other
/// writer would wait until the pool happened to hand that connection out again. Run to the
/// end, the transaction is dropped as a whole when nobody wants it, and sqlx rolls it back.
async fn begin_to_the_end(pool: &PgPool, begin: &'static str) -> crate::Result<Tx<'static>> {
    let pool = pool.clone();
    match tokio::spawn(async move { pool.begin_with(begin).await }).await {
        Ok(tx) => Ok(tx?),
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        // Cancelled: only when the runtime itself is shutting down.
        Err(_) => Err(sqlx::Error::PoolClosed.into()),
    }
}

/// A connection of the pool listening on the channels of migration 0016.
async fn start_listening(pool: &PgPool) -> Result<PgListener, sqlx::Error> {
    let mut l = PgListener::connect_with(pool).await?;
    l.listen_all(["haneul_events", "haneul_lease"]).await?;
    Ok(l)
}

/// Listens for other servers' notifications on a connection of the pool (which follows a fail
/// over) and passes them on; its own (`me` in the payload) are dropped. After a connection is
/// lost, anything may have been missed, so each kind is passed on once.
async fn listen(pool: PgPool, first: PgListener, me: String, changes: broadcast::Sender<Change>) {
    let mut first = Some(first);
    loop {
        let mut listener = match first.take() {
            Some(l) => l,
            None => match start_listening(&pool).await {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(error = %e, "database: cannot listen for other servers' changes; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            },
        };
        loop {
            match listener.try_recv().await {
                Ok(Some(n)) if n.channel() == "haneul_lease" => {
                    let _ = changes.send(Change::Lease);
                }
                Ok(Some(n)) if n.payload() == me => {}
                Ok(Some(_)) => {
                    let _ = changes.send(Change::Events);
                }
                Ok(None) => {
                    let _ = changes.send(Change::Events);
                    let _ = changes.send(Change::Lease);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "database: lost the listening connection; reconnecting");
                    let _ = changes.send(Change::Events);
                    let _ = changes.send(Change::Lease);
                    break;
                }
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Keeps one connection to the pool's host and checks on it every [`WATCH_EVERY`]; when it
/// breaks or the host turns read-only, tries the URL's hosts in order and points the pool's new
/// connections at the first acceptable one. Connections to a dead host fail their next use and
/// the pool replaces them from the new host.
async fn watch(pool: PgPool, targets: Targets) {
    let mut current: PgConnectOptions = (*pool.connect_options()).clone();
    let mut monitor: Option<PgConnection> = None;
    loop {
        tokio::time::sleep(WATCH_EVERY).await;
        if monitor.is_none() {
            monitor = tokio::time::timeout(WATCH_EVERY * 4, current.connect())
                .await
                .ok()
                .and_then(Result::ok);
        }
        let healthy = match monitor.as_mut() {
            Some(conn) => tokio::time::timeout(WATCH_EVERY * 4, targets.acceptable(conn))
                .await
                .is_ok_and(|r| r.is_ok()),
            None => false,
        };
        if healthy {
            continue;
        }
        if let Some(conn) = monitor.take() {
            let _ = conn.close_hard().await;
        }
        let Ok(next) = targets.pick().await else {
            continue;
        };
        if (next.get_host(), next.get_port()) != (current.get_host(), current.get_port()) {
            tracing::warn!(
                from = %format!("{}:{}", current.get_host(), current.get_port()),
                to = %format!("{}:{}", next.get_host(), next.get_port()),
                "database: the read-write server moved; new connections go to the new one"
            );
            pool.set_connect_options(next.clone());
            current = next;
        }
    }
}

/// Takes the writers' lock (see [`LOCK_AND_TIP`]) and returns the audit chain's tip.
async fn lock_writers(tx: &mut Tx<'_>) -> crate::Result<String> {
    let rows = sqlx::Executor::fetch_all(&mut **tx, sqlx::raw_sql(LOCK_AND_TIP)).await?;
    let tip: Option<String> = match rows.last() {
        Some(r) => sqlx::Row::try_get(r, "hash")?,
        None => None,
    };
    Ok(tip.unwrap_or_default())
}

// The batched inserts below bind each column as one array and unnest them, so each statement's
// text is fixed: sqlx prepares it once per connection (kept in the connection's statement
// cache) and each later call is one round trip, whatever its number of rows. `WITH ORDINALITY`
// and `ORDER BY` keep the rows in the lists' order, so sequence numbers (job ids, event and
// audit sequence) follow it.

/// Inserts queued jobs and keeps their idempotency keys in one statement, returning the jobs'
/// rows (in no promised order). A key with a live answer already is a conflict, as in
/// `keep_job_key`, and fails the whole batch (its caller then writes the jobs one by one, each
/// with its own answer). An answer is overwritten only when it was kept before the earliest
/// retention start of the batch, so a key is never taken from a request that still holds it.
/// Ids are given in the rows' order, so a key finds its job by its row's place.
async fn insert_job_rows(tx: &mut Tx<'_>, jobs: &[JobRow], now: i64) -> crate::Result<Vec<DbRow>> {
    let keyed: Vec<(i64, &JobRow, &crate::NewIdempotency)> = (1..)
        .zip(jobs)
        .filter_map(|(ord, j)| Some((ord, j, j.key.as_ref()?)))
        .collect();
    let since = keyed.iter().map(|(_, _, k)| k.since).min().unwrap_or(0);
    // Built before the await: the closures' temporaries must not live across it.
    let q = sqlx::query(
        "WITH j AS (INSERT INTO jobs (project_id, user_id, name, spec, command, \
         container_image, state, submitted_at, updated_at, attempts, batch, array_spec, \
         interactive) \
         SELECT project, usr, name, spec, command, image, 'queued', $1, $1, 0, batch, arr, \
         interactive FROM UNNEST($2::bigint[], $3::bigint[], $4::text[], $5::text[], \
         $6::text[], $7::text[], $8::text[], $9::text[], $10::bool[]) WITH ORDINALITY \
         AS u(project, usr, name, spec, command, image, batch, arr, interactive, ord) \
         ORDER BY ord RETURNING *), \
         n AS (SELECT id, row_number() OVER (ORDER BY id) AS ord FROM j), \
         k AS (INSERT INTO idempotency (user_id, idem_key, route, body_hash, status, answer, \
         resource, created_at) SELECT u.usr, u.k, u.route, u.hash, 201, '', n.id, $1 \
         FROM UNNEST($11::bigint[], $12::bigint[], $13::text[], $14::text[], $15::text[]) \
         AS u(ord, usr, k, route, hash) JOIN n ON n.ord = u.ord \
         ON CONFLICT (user_id, idem_key) DO UPDATE SET route = excluded.route, \
         body_hash = excluded.body_hash, status = excluded.status, \
         answer = excluded.answer, resource = excluded.resource, \
         created_at = excluded.created_at \
         WHERE idempotency.created_at < $16 RETURNING 1) \
         SELECT j.*, (SELECT count(*) FROM k) AS keys_kept FROM j",
    )
    .bind(now)
    .bind(jobs.iter().map(|j| j.project).collect::<Vec<_>>())
    .bind(jobs.iter().map(|j| j.user).collect::<Vec<_>>())
    .bind(jobs.iter().map(|j| j.name.clone()).collect::<Vec<_>>())
    .bind(jobs.iter().map(|j| j.spec.clone()).collect::<Vec<_>>())
    .bind(jobs.iter().map(|j| j.command.clone()).collect::<Vec<_>>())
    .bind(
        jobs.iter()
            .map(|j| j.container_image.clone())
            .collect::<Vec<_>>(),
    )
    .bind(jobs.iter().map(|j| j.batch.clone()).collect::<Vec<_>>())
    .bind(
        jobs.iter()
            .map(|j| j.array_spec.clone())
            .collect::<Vec<_>>(),
    )
    .bind(jobs.iter().map(|j| j.interactive).collect::<Vec<_>>())
    .bind(keyed.iter().map(|(ord, _, _)| *ord).collect::<Vec<i64>>())
    .bind(keyed.iter().map(|(_, j, _)| j.user).collect::<Vec<_>>())
    .bind(
        keyed
            .iter()
            .map(|(_, _, k)| k.key.clone())
            .collect::<Vec<_>>(),
    )
    .bind(
        keyed
            .iter()
            .map(|(_, _, k)| k.route.clone())
            .collect::<Vec<_>>(),
    )
    .bind(
        keyed
            .iter()
            .map(|(_, _, k)| k.body_hash.clone())
            .collect::<Vec<_>>(),
    )
    .bind(since);
    let rows = q
        .fetch_all(&mut **tx)
        .await
        .map_err(|e| unique(e, "project", "job".into()))?;
    let kept: i64 = match rows.first() {
        Some(r) => r.try_get("keys_kept")?,
        None => 0,
    };
    if kept != keyed.len() as i64 {
        return Err(key_taken());
    }
    Ok(rows)
}

/// Appends ledger rows in one statement of fixed text. A second charge, refund or credit of an
/// attempt breaks the ledger's (attempt, kind) key and fails the whole write.
async fn insert_ledger(
    tx: &mut Tx<'_>,
    rows: &[crate::backend::LedgerRow],
    now: i64,
) -> crate::Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO ledger (at, kind, attempt_id, project_id, org_id, award_id, gpu_model, \
         gpu_ms, weight_milli, charged_ms) \
         SELECT $1, kind, attempt, project, org, award, model, gpu_ms, weight, charged \
         FROM UNNEST($2::text[], $3::bigint[], $4::bigint[], $5::bigint[], $6::bigint[], \
         $7::text[], $8::bigint[], $9::bigint[], $10::bigint[]) WITH ORDINALITY \
         AS u(kind, attempt, project, org, award, model, gpu_ms, weight, charged, ord) \
         ORDER BY ord",
    )
    .bind(now)
    .bind(rows.iter().map(|r| r.kind).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.attempt).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.project).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.org).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.award).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.gpu_model.clone()).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.gpu_ms).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.weight_milli).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.charged_ms).collect::<Vec<_>>())
    .execute(&mut **tx)
    .await
    .map_err(|e| unique(e, "attempt", "a ledger row of one of these attempts".into()))?;
    Ok(())
}

/// The events' rows as parameters $1-$6 of [`EVENTS_FROM`]'s statements.
fn bind_events(
    q: sqlx::query::Query<'static, Postgres, PgArguments>,
    events: &[EventRow],
) -> sqlx::query::Query<'static, Postgres, PgArguments> {
    q.bind(events.iter().map(|e| e.at).collect::<Vec<_>>())
        .bind(events.iter().map(|e| e.kind).collect::<Vec<_>>())
        .bind(events.iter().map(|e| e.job).collect::<Vec<_>>())
        .bind(events.iter().map(|e| e.attempt).collect::<Vec<_>>())
        .bind(events.iter().map(|e| e.node).collect::<Vec<_>>())
        .bind(events.iter().map(|e| e.detail.clone()).collect::<Vec<_>>())
}

/// The audit entries' rows as parameters $`first`... of [`audit_from`]'s statements.
fn bind_audit(
    q: sqlx::query::Query<'static, Postgres, PgArguments>,
    audit: &[AuditRow],
) -> sqlx::query::Query<'static, Postgres, PgArguments> {
    q.bind(audit.iter().map(|a| a.at).collect::<Vec<_>>())
        .bind(audit.iter().map(|a| a.actor.clone()).collect::<Vec<_>>())
        .bind(audit.iter().map(|a| a.action.clone()).collect::<Vec<_>>())
        .bind(audit.iter().map(|a| a.target.clone()).collect::<Vec<_>>())
        .bind(audit.iter().map(|a| a.detail.clone()).collect::<Vec<_>>())
        .bind(
            audit
                .iter()
                .map(|a| a.prev_hash.clone())
                .collect::<Vec<_>>(),
        )
        .bind(audit.iter().map(|a| a.hash.clone()).collect::<Vec<_>>())
}

/// Inserts events bound as parameters $1-$6.
const EVENTS_FROM: &str = "INSERT INTO events (at, kind, job_id, attempt_id, node_id, detail) \
     SELECT at, kind, job, attempt, node, detail FROM UNNEST($1::bigint[], $2::text[], \
     $3::bigint[], $4::bigint[], $5::bigint[], $6::text[]) WITH ORDINALITY \
     AS u(at, kind, job, attempt, node, detail, ord) ORDER BY ord";

/// Inserts audit entries bound as parameters $`first` to $`first + 6`.
fn audit_from(first: u8) -> String {
    let p: Vec<String> = (first..first + 7).map(|i| format!("${i}")).collect();
    format!(
        "INSERT INTO audit (at, actor, action, target, detail, prev_hash, hash) \
         SELECT at, actor, action, target, detail, prev, hash FROM UNNEST({}::bigint[], \
         {}::text[], {}::text[], {}::text[], {}::text[], {}::text[], {}::text[]) WITH ORDINALITY \
         AS u(at, actor, action, target, detail, prev, hash, ord) ORDER BY ord",
        p[0], p[1], p[2], p[3], p[4], p[5], p[6]
    )
}

/// Appends controller events and audit entries, each list in its order: one statement (both
/// inserts in one when there are both).
async fn insert_log(tx: &mut Tx<'_>, events: &[EventRow], audit: &[AuditRow]) -> crate::Result<()> {
    static AUDIT: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| audit_from(1));
    static BOTH: std::sync::LazyLock<String> =
        std::sync::LazyLock::new(|| format!("WITH e AS ({EVENTS_FROM}) {}", audit_from(7)));
    let q = match (events.is_empty(), audit.is_empty()) {
        (true, true) => return Ok(()),
        (false, true) => bind_events(sqlx::query(EVENTS_FROM), events),
        (true, false) => bind_audit(sqlx::query(&AUDIT), audit),
        (false, false) => bind_audit(bind_events(sqlx::query(&BOTH), events), audit),
    };
    q.execute(&mut **tx).await?;
    Ok(())
}

/// Inserts started attempts (state `assigned`), their tasks and their `Started` events (in
/// attempt id order) in one statement, returning the attempts' rows. A task names its attempt
/// by its job: a start makes one attempt per job.
async fn insert_started(
    tx: &mut Tx<'_>,
    epoch: i64,
    now: i64,
    attempts: &[AttemptRow],
    tasks: &[TaskRow],
) -> crate::Result<Vec<DbRow>> {
    let q = sqlx::query(
        "WITH a AS (INSERT INTO attempts (job_id, fence, epoch, placement, gpu_model, borrowing, \
         state, created_at, deadline, gpu_ms) \
         SELECT job, fence, $1, placement, model, borrowing, 'assigned', $2, deadline, 0 \
         FROM UNNEST($3::bigint[], $4::bigint[], $5::text[], $6::text[], $7::bool[], \
         $8::bigint[]) WITH ORDINALITY \
         AS u(job, fence, placement, model, borrowing, deadline, ord) ORDER BY ord RETURNING *), \
         t AS (INSERT INTO tasks (attempt_id, idx, node_id, gpus, state) \
         SELECT a.id, u.idx, u.node, u.gpus, 'assigned' FROM UNNEST($9::bigint[], \
         $10::bigint[], $11::bigint[], $12::text[]) AS u(job, idx, node, gpus) \
         JOIN a ON a.job_id = u.job), \
         e AS (INSERT INTO events (at, kind, job_id, attempt_id, node_id, detail) \
         SELECT $2, $13, a.job_id, a.id, NULL, '' FROM a ORDER BY a.id) \
         SELECT * FROM a",
    )
    .bind(epoch)
    .bind(now)
    .bind(attempts.iter().map(|a| a.job).collect::<Vec<_>>())
    .bind(attempts.iter().map(|a| a.fence).collect::<Vec<_>>())
    .bind(
        attempts
            .iter()
            .map(|a| a.placement.clone())
            .collect::<Vec<_>>(),
    )
    .bind(
        attempts
            .iter()
            .map(|a| a.gpu_model.clone())
            .collect::<Vec<_>>(),
    )
    .bind(attempts.iter().map(|a| a.borrowing).collect::<Vec<_>>())
    .bind(attempts.iter().map(|a| a.deadline).collect::<Vec<_>>())
    .bind(tasks.iter().map(|t| t.job).collect::<Vec<_>>())
    .bind(tasks.iter().map(|t| t.idx).collect::<Vec<_>>())
    .bind(tasks.iter().map(|t| t.node).collect::<Vec<_>>())
    .bind(tasks.iter().map(|t| t.gpus.clone()).collect::<Vec<_>>())
    .bind(crate::records::EventKind::Started.as_str());
    Ok(q.fetch_all(&mut **tx).await?)
}

/// Writes what a batch of task reports changed, the tasks, the attempts and the jobs, in one
/// statement of fixed text (skipped when nothing changed).
async fn write_reported(
    tx: &mut Tx<'_>,
    tasks: &[TaskSet],
    attempts: &[AttemptSet],
    jobs: &[JobSet],
    now: i64,
) -> crate::Result<()> {
    if tasks.is_empty() && attempts.is_empty() && jobs.is_empty() {
        return Ok(());
    }
    let q = sqlx::query(
        "WITH t AS (UPDATE tasks SET state = u.state, exit_code = u.code \
         FROM UNNEST($1::bigint[], $2::bigint[], $3::text[], $4::bigint[]) \
         AS u(attempt, idx, state, code) \
         WHERE tasks.attempt_id = u.attempt AND tasks.idx = u.idx), \
         a AS (UPDATE attempts SET state = u.state, stop_reason = u.stop_reason, \
         kill_at = u.kill_at, started_at = u.started_at, ended_at = u.ended_at, \
         exit_code = u.code, gpu_ms = u.gpu_ms \
         FROM UNNEST($5::bigint[], $6::text[], $7::text[], $8::bigint[], $9::bigint[], \
         $10::bigint[], $11::bigint[], $12::bigint[]) \
         AS u(id, state, stop_reason, kill_at, started_at, ended_at, code, gpu_ms) \
         WHERE attempts.id = u.id) \
         UPDATE jobs SET state = u.state, exit_code = COALESCE(u.code, jobs.exit_code), \
         reason = COALESCE(u.reason, jobs.reason), updated_at = $17 \
         FROM UNNEST($13::bigint[], $14::text[], $15::bigint[], $16::text[]) \
         AS u(id, state, code, reason) WHERE jobs.id = u.id",
    )
    .bind(tasks.iter().map(|t| t.attempt).collect::<Vec<_>>())
    .bind(tasks.iter().map(|t| t.idx).collect::<Vec<_>>())
    .bind(tasks.iter().map(|t| t.state.clone()).collect::<Vec<_>>())
    .bind(tasks.iter().map(|t| t.exit_code).collect::<Vec<_>>())
    .bind(attempts.iter().map(|a| a.id).collect::<Vec<_>>())
    .bind(attempts.iter().map(|a| a.state).collect::<Vec<_>>())
    .bind(attempts.iter().map(|a| a.stop_reason).collect::<Vec<_>>())
    .bind(attempts.iter().map(|a| a.kill_at).collect::<Vec<_>>())
    .bind(attempts.iter().map(|a| a.started_at).collect::<Vec<_>>())
    .bind(attempts.iter().map(|a| a.ended_at).collect::<Vec<_>>())
    .bind(attempts.iter().map(|a| a.exit_code).collect::<Vec<_>>())
    .bind(attempts.iter().map(|a| a.gpu_ms).collect::<Vec<_>>())
    .bind(jobs.iter().map(|j| j.id).collect::<Vec<_>>())
    .bind(jobs.iter().map(|j| j.state).collect::<Vec<_>>())
    .bind(jobs.iter().map(|j| j.exit_code).collect::<Vec<_>>())
    .bind(jobs.iter().map(|j| j.reason).collect::<Vec<_>>())
    .bind(now);
    q.execute(&mut **tx).await?;
    Ok(())
}

crate::backend::store_impl!(PostgresStore, sqlx::Postgres);
