//! The body of SQL shared by both backends, split by area. SQLite and PostgreSQL both accept
//! `$n` parameters, `RETURNING` and `ON CONFLICT`, so each area's macro expands its trait's
//! implementation for both; the backends only differ in how they connect, how a write
//! transaction begins (`begin_write`: one writer connection on SQLite, an advisory lock on
//! PostgreSQL) — which is also what keeps event sequence numbers and the audit chain in commit
//! order — and in how a list of ids is bound ([`IdList`]).
//!
//! The batched writes of the hot paths (a submit batch's jobs, events and audit entries; a
//! start's attempts, tasks and events; what a batch of task reports changes) are per backend
//! (`insert_job_rows`, `insert_log`, `insert_started`, `write_reported` in sqlite.rs and
//! postgres.rs): SQLite runs in process, so multi-row
//! statements (`QueryBuilder`, not kept prepared: their text changes with their row count) cost
//! nothing there; on PostgreSQL each statement is a round trip, and an unprepared one two
//! (parse and describe, then execute), so there the rows are bound as arrays (`UNNEST`) into
//! statements of fixed text that each connection prepares once.
//!
//! Each area file holds the area's trait (the contract, with its documentation) and the macro
//! that implements it. [`store_impl!`] expands every area into the backend's own module, so one
//! area's helpers (ending an attempt, charging it, appending to the audit chain) serve the
//! others without being public.

pub(crate) mod access;
pub(crate) mod attempts;
pub(crate) mod audit;
pub(crate) mod awards;
pub(crate) mod controller;
pub(crate) mod jobs;
pub(crate) mod nodes;
pub(crate) mod programmes;
pub(crate) mod telemetry;
pub(crate) mod tenants;

/// A list of ids bound as one parameter: the one place the two dialects' SQL differs. The
/// statement's text then stays the same whatever the list's length, so PostgreSQL prepares it
/// once per connection and reuses it, where an inlined `IN (1, 2, ...)` would be a new
/// statement (another parse and plan, and a round trip to prepare it) at every length.
pub(crate) trait IdList: sqlx::Database {
    /// What the list is bound as: a JSON array on SQLite, an array on PostgreSQL.
    type Ids: for<'q> sqlx::Encode<'q, Self> + sqlx::Type<Self> + Send + 'static;
    /// SQL that is true when `column` is one of the ids bound as parameter `$param`.
    fn in_ids(column: &str, param: u8) -> String;
    /// The value to bind for `ids`.
    fn ids(ids: &[i64]) -> Self::Ids;
    /// What a subquery ends with to lock its rows for an update as it reads them (in its
    /// order): nothing on SQLite, whose one writer needs no row locks. `NO KEY UPDATE`, so
    /// that foreign-key checks (tasks naming a node) are not blocked.
    const FOR_UPDATE: &'static str;
}

impl IdList for sqlx::Sqlite {
    type Ids = String;
    const FOR_UPDATE: &'static str = "";
    fn in_ids(column: &str, param: u8) -> String {
        format!("{column} IN (SELECT value FROM json_each(${param}))")
    }
    fn ids(ids: &[i64]) -> String {
        let list: Vec<String> = ids.iter().map(i64::to_string).collect();
        format!("[{}]", list.join(","))
    }
}

impl IdList for sqlx::Postgres {
    type Ids = Vec<i64>;
    const FOR_UPDATE: &'static str = " FOR NO KEY UPDATE";
    fn in_ids(column: &str, param: u8) -> String {
        format!("{column} = ANY(${param})")
    }
    fn ids(ids: &[i64]) -> Vec<i64> {
        ids.to_vec()
    }
}

/// One controller event to append (see the per-backend `insert_log`).
pub(crate) struct EventRow {
    pub at: i64,
    pub kind: &'static str,
    pub job: Option<i64>,
    pub attempt: Option<i64>,
    pub node: Option<i64>,
    pub detail: String,
}

/// The `Submitted` event of each new job.
pub(crate) fn submitted_events(recs: &[crate::JobRecord], now: i64) -> Vec<EventRow> {
    recs.iter()
        .map(|r| EventRow {
            at: now,
            kind: crate::EventKind::Submitted.as_str(),
            job: Some(r.id),
            attempt: None,
            node: None,
            detail: String::new(),
        })
        .collect()
}

/// One audit entry to append, its hash already chained to the one before.
pub(crate) struct AuditRow {
    pub at: i64,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub detail: String,
    pub prev_hash: String,
    pub hash: String,
}

/// One ledger row to append (see the per-backend `insert_ledger`).
pub(crate) struct LedgerRow {
    pub kind: &'static str,
    pub attempt: i64,
    pub project: i64,
    pub org: i64,
    pub award: Option<i64>,
    pub gpu_model: String,
    pub gpu_ms: i64,
    pub weight_milli: i64,
    pub charged_ms: i64,
}

/// One queued job to insert (see the per-backend `insert_job_rows`).
pub(crate) struct JobRow {
    pub project: i64,
    pub user: i64,
    pub name: String,
    pub spec: String,
    pub command: String,
    pub container_image: Option<String>,
    pub batch: Option<String>,
    pub array_spec: Option<String>,
    pub interactive: bool,
    /// The submit's idempotency key, kept with the job in the same write.
    pub key: Option<crate::NewIdempotency>,
}

/// One attempt to start (see the per-backend `insert_started`).
pub(crate) struct AttemptRow {
    pub job: i64,
    pub fence: i64,
    pub placement: String,
    pub gpu_model: Option<String>,
    pub borrowing: bool,
    pub deadline: Option<i64>,
}

/// One task of an attempt to start, named by its job (one attempt per job in a start).
pub(crate) struct TaskRow {
    pub job: i64,
    pub idx: i64,
    pub node: i64,
    pub gpus: String,
}

/// A task's state and exit code after a batch of task reports (see the per-backend
/// `write_reported`).
pub(crate) struct TaskSet {
    pub attempt: i64,
    pub idx: i64,
    pub state: String,
    pub exit_code: Option<i64>,
}

/// The columns a batch of task reports changes in an attempt, as the batch leaves them.
pub(crate) struct AttemptSet {
    pub id: i64,
    pub state: &'static str,
    pub stop_reason: Option<&'static str>,
    pub kill_at: Option<i64>,
    pub started_at: Option<i64>,
    pub ended_at: Option<i64>,
    pub exit_code: Option<i64>,
    pub gpu_ms: i64,
}

/// A job's state after a batch of task reports; an exit code or reason that is `None` keeps
/// the stored one.
pub(crate) struct JobSet {
    pub id: i64,
    pub state: &'static str,
    pub exit_code: Option<i64>,
    pub reason: Option<&'static str>,
}

/// Expands the [`crate::Store`] implementation, every area's trait included, for `$store`, whose
/// `begin_write`/`begin_read` give transactions on database `$db`.
macro_rules! store_impl {
    ($store:ty, $db:ty) => {
        use crate::records::*;
        use crate::{
            AccessStore, AttemptStore, AuditStore, AwardStore, ControllerStore, JobStore,
            NodeStore, ProgrammeStore, Result, Store, StoreError, TelemetryStore, TenantStore,
        };
        use async_trait::async_trait;
        use haneul_model::{GpuModel, JobSpec, Lending, Quota};
        use haneul_sched::Placement;
        use sqlx::Row;
        use std::collections::BTreeMap;
        type Tx<'a> = sqlx::Transaction<'a, $db>;
        type DbRow = <$db as sqlx::Database>::Row;

        /// See [`crate::backend::IdList::in_ids`].
        fn in_ids(column: &str, param: u8) -> String {
            <$db as crate::backend::IdList>::in_ids(column, param)
        }

        /// See [`crate::backend::IdList::ids`].
        fn id_list(list: &[i64]) -> <$db as crate::backend::IdList>::Ids {
            <$db as crate::backend::IdList>::ids(list)
        }

        fn unique(e: sqlx::Error, field: &'static str, what: String) -> StoreError {
            match &e {
                sqlx::Error::Database(d) if d.is_unique_violation() => {
                    StoreError::conflict(field, format!("{what} already exists"))
                }
                sqlx::Error::Database(d) if d.is_foreign_key_violation() => {
                    StoreError::invalid(field, "refers to something that does not exist")
                }
                _ => StoreError::Database(e),
            }
        }

        fn parse_enum<T>(v: &str, f: fn(&str) -> Option<T>, what: &str) -> Result<T> {
            f(v).ok_or_else(|| StoreError::Corrupt(format!("unknown {what} `{v}`")))
        }

        /// Appends one controller event inside the caller's transaction.
        async fn event(
            tx: &mut Tx<'_>,
            kind: EventKind,
            job: Option<i64>,
            attempt: Option<i64>,
            node: Option<i64>,
            detail: &str,
            now: i64,
        ) -> Result<()> {
            sqlx::query(
                "INSERT INTO events (at, kind, job_id, attempt_id, node_id, detail) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(now)
            .bind(kind.as_str())
            .bind(job)
            .bind(attempt)
            .bind(node)
            .bind(detail)
            .execute(&mut **tx)
            .await?;
            Ok(())
        }

        crate::backend::tenants::tenant_store!($store, $db);
        crate::backend::access::access_store!($store, $db);
        crate::backend::nodes::node_store!($store, $db);
        crate::backend::jobs::job_store!($store, $db);
        crate::backend::attempts::attempt_store!($store, $db);
        crate::backend::controller::controller_store!($store, $db);
        crate::backend::awards::award_store!($store, $db);
        crate::backend::audit::audit_store!($store, $db);
        crate::backend::programmes::programme_store!($store, $db);
        crate::backend::telemetry::telemetry_store!($store, $db);

        impl Store for $store {
            fn backend(&self) -> &'static str {
                Self::BACKEND
            }

            fn changes(&self) -> Option<tokio::sync::broadcast::Receiver<Change>> {
                self.subscribe()
            }
        }
    };
}

pub(crate) use store_impl;
