//! Persistence for the Haneul control plane.
//!
//! This crate owns the durable state of a centre: tenants, users and hashed API tokens, the fleet,
//! jobs with their attempts and tasks, logs, awards, the controller's event stream, the
//! hash-chained audit log and the leader lease. One [`Store`] trait has two backends, SQLite
//! (embedded, the default) and PostgreSQL (production, high availability), generated from one body
//! of SQL so that they cannot drift; `tests/suite.rs` runs one test suite against both.
//!
//! Every method that changes state does it in one transaction, and returns only after the commit:
//! a caller that acknowledges after a successful return never acknowledges something lost.

mod backend;
mod error;
mod gang_cache;
mod pg_targets;
mod postgres;
mod records;
mod sqlite;
#[cfg(feature = "testing")]
pub mod testing;

pub use error::StoreError;
pub use postgres::PostgresStore;
pub use records::*;
pub use sqlite::SqliteStore;

use async_trait::async_trait;
use haneul_model::{GpuModel, Quota};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// Result of every store call.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Hash of an API token as kept at rest. Tokens are 256-bit random strings, so one SHA-256 is
/// enough: there is nothing to brute-force, unlike a password.
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// The one persistence interface of the control plane. Methods are grouped as the server uses
/// them: tenants and access, fleet, jobs, the controller's view, the agent protocol, audit, lease.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// `sqlite` or `postgres`, for logs and metrics.
    fn backend(&self) -> &'static str;

    // --- tenants and access ---

    /// Creates the first centre administrator with this token hash when there are no users yet,
    /// with a uid (and private gid) allocated from `uid_range` like any other user's, so that
    /// the administrator's own jobs never run without an identity. Returns false (and changes
    /// nothing) when users exist.
    async fn bootstrap_admin(&self, token_hash: &str, uid_range: IdRange, now: i64)
    -> Result<bool>;
    async fn create_org(&self, actor: &Actor, org: NewOrg, now: i64) -> Result<OrgRecord>;
    async fn get_org(&self, id: i64) -> Result<OrgRecord>;
    async fn list_orgs(&self) -> Result<Vec<OrgRecord>>;
    async fn create_project(&self, actor: &Actor, p: NewProject, now: i64)
    -> Result<ProjectRecord>;
    /// Replaces a project's quotas; the controller applies them in place.
    async fn set_project_quotas(
        &self,
        actor: &Actor,
        id: i64,
        quotas: BTreeMap<GpuModel, Quota>,
        now: i64,
    ) -> Result<ProjectRecord>;
    async fn get_project(&self, id: i64) -> Result<ProjectRecord>;
    async fn list_projects(&self) -> Result<Vec<ProjectRecord>>;
    async fn create_user(&self, actor: &Actor, u: NewUser, now: i64) -> Result<UserRecord>;
    async fn get_user(&self, id: i64) -> Result<UserRecord>;
    async fn list_users(&self) -> Result<Vec<UserRecord>>;
    /// Sets a user's Unix uid and/or primary gid (`None` keeps the current one); a uid
    /// another user has is a conflict naming `uid`.
    async fn update_user_ids(
        &self,
        actor: &Actor,
        id: i64,
        uid: Option<i64>,
        gid: Option<i64>,
        now: i64,
    ) -> Result<UserRecord>;
    /// Records the Unix uid a node's agent runs as (reported at registration).
    async fn set_node_agent_uid(&self, node: i64, uid: Option<i64>) -> Result<()>;
    /// Every uid an agent runs as: no user may be given one of them.
    async fn agent_uids(&self) -> Result<Vec<i64>>;
    /// Stores a token for `user`; only the hash is kept.
    async fn create_token(
        &self,
        actor: &Actor,
        user: i64,
        name: &str,
        token_hash: &str,
        expires_at: Option<i64>,
        now: i64,
    ) -> Result<TokenRecord>;
    async fn list_tokens(&self, user: Option<i64>) -> Result<Vec<TokenRecord>>;
    async fn revoke_token(&self, actor: &Actor, id: i64, now: i64) -> Result<TokenRecord>;
    /// The user a live token belongs to, or `None` for an unknown or revoked token.
    async fn authenticate(&self, token_hash: &str) -> Result<Option<UserRecord>>;
    /// The token with this hash and its user, live or not (`None`: no such token).
    async fn token_auth(&self, token_hash: &str) -> Result<Option<TokenAuth>>;
    /// A token by id.
    async fn get_token(&self, id: i64) -> Result<TokenRecord>;

    // --- portal sessions ---

    async fn create_session(
        &self,
        id_hash: &str,
        user: i64,
        token: i64,
        expires_at: i64,
        now: i64,
    ) -> Result<()>;
    async fn get_session(&self, id_hash: &str) -> Result<Option<SessionRecord>>;
    /// Records activity (for the idle expiry).
    async fn touch_session(&self, id_hash: &str, now: i64) -> Result<()>;
    /// Ends a session (sign-out); its id never works again.
    async fn revoke_session(&self, id_hash: &str, now: i64) -> Result<()>;

    // --- fleet ---

    // --- identity providers (docs/oidc.md) ---
    /// The user linked to `subject` at `issuer`, if any.
    async fn oidc_link(&self, issuer: &str, subject: &str) -> Result<Option<OidcLink>>;
    /// The link of `user`, if the user came from an identity provider.
    async fn oidc_link_of(&self, user: i64) -> Result<Option<OidcLink>>;
    /// Creates the user and its link in one transaction, audited as `user.provision`.
    async fn provision_oidc_user(
        &self,
        actor: &Actor,
        u: NewOidcUser,
        now: i64,
    ) -> Result<(UserRecord, OidcLink)>;
    /// Lets a pending user in; audited as `user.approve`. Approving twice is a conflict.
    async fn approve_oidc_user(&self, actor: &Actor, user: i64, now: i64) -> Result<OidcLink>;
    /// Appends one entry to the audit log for something that changes no other table (a
    /// sign-in, a refused sign-in).
    async fn record_audit(
        &self,
        actor: &Actor,
        action: &str,
        target: &str,
        detail: &str,
        now: i64,
    ) -> Result<()>;

    async fn create_pool(&self, actor: &Actor, p: NewPool, now: i64) -> Result<PoolRecord>;
    async fn list_pools(&self) -> Result<Vec<PoolRecord>>;
    /// Registers a node by name, or updates its inventory when it exists, and marks it up.
    async fn register_node(&self, actor: &Actor, n: NewNode, now: i64) -> Result<NodeRecord>;
    async fn get_node(&self, id: i64) -> Result<NodeRecord>;
    async fn list_nodes(&self) -> Result<Vec<NodeRecord>>;
    /// Drain or resume a node (admin action).
    async fn set_node_state(
        &self,
        actor: &Actor,
        id: i64,
        state: NodeState,
        now: i64,
    ) -> Result<NodeRecord>;
    /// Records a heartbeat. A node that was down because it was lost comes back up.
    async fn heartbeat(&self, node: i64, now: i64) -> Result<NodeRecord>;
    /// Heartbeats of several nodes in one transaction; `None` for an unknown node.
    async fn heartbeats(&self, nodes: &[i64], now: i64) -> Result<Vec<Option<NodeRecord>>>;
    /// GPUs by pool and model (allocated, idle, draining, down), the queue per project and the
    /// GPUs held per node, read in one transaction so the figures agree with each other.
    async fn fleet_summary(&self) -> Result<FleetSummary>;

    // --- jobs ---

    /// Queues a job: the job row, its first event and the audit entry commit together.
    async fn submit_job(&self, actor: &Actor, job: NewJob, now: i64) -> Result<JobRecord>;
    /// Queues several jobs in one transaction (group commit): all are durable, or none.
    async fn submit_jobs(&self, jobs: Vec<(Actor, NewJob)>, now: i64) -> Result<Vec<JobRecord>>;
    async fn get_job(&self, id: i64) -> Result<JobRecord>;
    /// The jobs with these ids that exist, in id order.
    async fn get_jobs(&self, ids: &[i64]) -> Result<Vec<JobRecord>>;
    async fn list_jobs(&self, filter: &JobFilter) -> Result<Vec<JobRecord>>;
    /// Cancels a queued job at once, or asks the agents of a running one to stop it.
    async fn cancel_job(&self, actor: &Actor, id: i64, now: i64) -> Result<JobRecord>;
    /// Task `task` of array `array` once it is a job; `None` before.
    async fn array_task(&self, array: i64, task: i64) -> Result<Option<JobRecord>>;
    /// Cancels one task of an array: its job when it is one, or else it is stored cancelled
    /// so that it never becomes one.
    async fn cancel_array_task(
        &self,
        actor: &Actor,
        array: i64,
        task: i64,
        now: i64,
    ) -> Result<JobRecord>;
    /// The controller's look at a queued array: makes further tasks into queued jobs while the
    /// array's `%N` and `window` (tasks waiting in the queue at once) allow, in task order, and
    /// ends the array (succeeded, failed or cancelled, with a `Finished` event) once every task
    /// has ended.
    async fn materialise_array(&self, array: i64, window: i64, now: i64) -> Result<ArrayProgress>;
    /// Fails a queued job the engine cannot accept (too large for any pool, unknown GPU model),
    /// with the engine's reason.
    async fn reject_job(&self, id: i64, reason: &str, now: i64) -> Result<()>;
    /// Queued jobs per project, for metrics.
    async fn queue_lengths(&self) -> Result<Vec<(i64, i64)>>;
    async fn list_attempts(&self, job: i64) -> Result<Vec<AttemptRecord>>;
    async fn job_events(&self, job: i64) -> Result<Vec<EventRecord>>;

    // --- awards and usage ---

    async fn create_award(&self, actor: &Actor, a: NewAward, now: i64) -> Result<AwardRecord>;
    async fn list_awards(&self, project: Option<i64>) -> Result<Vec<AwardRecord>>;
    /// GPU-milliseconds used per project and GPU model by ended attempts.
    async fn usage(&self, project: Option<i64>) -> Result<Vec<UsageRecord>>;
    /// Tops an award up (`gpu_hours` > 0) or takes hours back (< 0); never below zero granted.
    async fn adjust_award(
        &self,
        actor: &Actor,
        award: i64,
        gpu_hours: i64,
        reason: &str,
        now: i64,
    ) -> Result<AwardChange>;
    async fn award_changes(&self, award: i64) -> Result<Vec<AwardChange>>;
    /// Every award (of one project, or all) with its granted and used GPU time.
    async fn award_balances(&self, project: Option<i64>) -> Result<Vec<AwardBalance>>;
    /// Ledger rows with `from <= at < until`, of one project or all, in id order.
    async fn ledger(&self, project: Option<i64>, from: i64, until: i64)
    -> Result<Vec<LedgerEntry>>;
    /// Charge and refund rows (not credits) of these projects, or all, whose attempt held its
    /// GPUs during part of `[from, until)`, each with the attempt's start, in id order.
    async fn ledger_spans(
        &self,
        projects: Option<&[i64]>,
        from: i64,
        until: i64,
    ) -> Result<Vec<LedgerSpan>>;
    /// Sets the weight (thousandths) at which a GPU model's time is charged from now on.
    async fn set_gpu_weight(
        &self,
        actor: &Actor,
        model: &GpuModel,
        weight_milli: i64,
        now: i64,
    ) -> Result<()>;
    async fn gpu_weights(&self) -> Result<Vec<(String, i64)>>;
    /// Raises a notice once: false (and nothing written) when the same kind was raised for
    /// this project and award before. A new notice is also written to the audit log.
    async fn raise_notice(
        &self,
        kind: &str,
        project: i64,
        award: i64,
        detail: &str,
        now: i64,
    ) -> Result<bool>;
    async fn list_notices(&self) -> Result<Vec<NoticeRecord>>;

    // --- compliance ---

    /// Sets an organisation's verification; its projects' standing changes with it.
    async fn set_org_verification(
        &self,
        actor: &Actor,
        org: i64,
        status: Verification,
        now: i64,
    ) -> Result<OrgRecord>;
    /// Adds (or replaces, by name) denied parties. Returns how many rows were written.
    async fn import_denied_parties(
        &self,
        actor: &Actor,
        parties: Vec<DeniedParty>,
        now: i64,
    ) -> Result<i64>;
    async fn list_denied_parties(&self) -> Result<Vec<DeniedParty>>;
    /// Writes a decision that changes no other table (a refused registration, a hold) to the
    /// audit log.
    async fn record_decision(
        &self,
        actor: &Actor,
        action: &str,
        target: &str,
        detail: &str,
        now: i64,
    ) -> Result<()>;
    /// Sets (or with `None` clears) the hold reason of these jobs where they are still queued.
    async fn hold_jobs(&self, jobs: &[i64], reason: Option<&str>, now: i64) -> Result<()>;

    // --- programmes ---

    async fn create_call(&self, actor: &Actor, c: NewCall, now: i64) -> Result<CallRecord>;
    async fn get_call(&self, id: i64) -> Result<CallRecord>;
    async fn list_calls(&self) -> Result<Vec<CallRecord>>;
    /// Opens or closes a call for applications.
    async fn set_call_state(
        &self,
        actor: &Actor,
        id: i64,
        state: CallState,
        now: i64,
    ) -> Result<CallRecord>;
    /// Files an application to an open call.
    async fn create_application(
        &self,
        actor: &Actor,
        a: NewApplication,
        now: i64,
    ) -> Result<ApplicationRecord>;
    async fn get_application(&self, id: i64) -> Result<ApplicationRecord>;
    async fn list_applications(&self, call: i64) -> Result<Vec<ApplicationRecord>>;
    /// Records (or replaces) one reviewer's score of a submitted application.
    async fn score_application(
        &self,
        actor: &Actor,
        application: i64,
        reviewer: &str,
        score: i64,
        comment: &str,
        now: i64,
    ) -> Result<ApplicationRecord>;
    /// Makes a call's awards and declines in one transaction, and marks the call awarded.
    async fn award_call(
        &self,
        actor: &Actor,
        call: i64,
        decisions: Vec<CallDecision>,
        now: i64,
    ) -> Result<Vec<AwardRecord>>;

    // --- controller ---

    /// Everything the controller needs to rebuild its engine, consistent as of `cursor`.
    async fn snapshot(&self) -> Result<Snapshot>;
    /// Events after `cursor`, oldest first.
    async fn events_after(&self, cursor: i64, limit: i64) -> Result<Vec<EventRecord>>;
    /// Starts attempts for queued jobs, in one transaction that first checks the caller still
    /// holds the controller lease at `epoch`. Jobs no longer queued are skipped (and returned in
    /// the second list) so that nothing is ever started twice.
    async fn start_attempts(
        &self,
        holder: &str,
        epoch: i64,
        starts: Vec<NewAttempt>,
        now: i64,
    ) -> Result<(Vec<AttemptRecord>, Vec<i64>)>;
    /// Asks the agents of a running attempt to stop it (preemption, time limit).
    async fn request_stop(
        &self,
        attempt: i64,
        reason: StopReason,
        kill_at: i64,
        now: i64,
    ) -> Result<()>;
    /// Running attempts whose time limit has passed and that are not yet stopping.
    async fn overdue_attempts(&self, now: i64) -> Result<Vec<AttemptRecord>>;
    /// Marks nodes whose last heartbeat is older than `cutoff` as lost, ends their attempts as
    /// node lost and requeues those jobs. Returns the nodes marked.
    async fn mark_lost_nodes(&self, cutoff: i64, now: i64) -> Result<Vec<i64>>;

    // --- agent protocol ---

    /// Records what the node's agent says at registration: how it enforces task limits
    /// (`cgroup-v2`, `rlimit`), the address its tasks are reached at (gang peers get it
    /// instead of the node name) and its container runtime (`podman`, `apptainer`, `none`).
    async fn set_node_agent(
        &self,
        node: i64,
        limits: Option<&str>,
        address: Option<&str>,
        container_runtime: Option<&str>,
    ) -> Result<NodeRecord>;
    /// Records the agent's health check. The first failure (`Some(what)`) drains the node
    /// (`down_reason` `unhealthy`) and ends its live attempts as node lost, requeueing their
    /// jobs (returned), in one transaction. A later pass (`None`) clears it and resumes the node
    /// if the health check drained it.
    async fn report_node_health(
        &self,
        actor: &Actor,
        node: i64,
        failure: Option<&str>,
        now: i64,
    ) -> Result<(NodeRecord, Vec<i64>)>;
    /// Tasks of live attempts on this node, with the job's spec and command.
    async fn assignments(&self, node: i64) -> Result<Vec<Assignment>>;
    /// A report from an agent about one task. Refused unless `fence` is the job's current attempt
    /// and the task is on `node`.
    async fn report_task(&self, r: TaskReport, now: i64) -> Result<AttemptRecord>;
    /// Several reports in one transaction (one commit for a gang's start reports), each
    /// answered as `report_task` would: a refused report leaves its neighbours to go on. `Err`
    /// only when the database fails, and then none of them is written.
    async fn report_tasks(
        &self,
        reports: &[TaskReport],
        now: i64,
    ) -> Result<Vec<Result<AttemptRecord>>>;
    /// Appends output of one task. Only the job's current attempt may write, and only while it
    /// is live (not once it ended or its node was declared lost): agents upload a task's last
    /// output before reporting its exit. Output holding NUL or bytes that are not UTF-8 is kept
    /// escaped and read back exactly as sent ([`encode_log`]).
    ///
    /// With `at` (the output file, `stdout` or `stderr`, and the offset in it of `data`'s first
    /// byte), what the store already holds of that file is not appended again, so an upload
    /// sent twice is stored once. Without it the bytes are always appended.
    #[allow(clippy::too_many_arguments)]
    async fn append_log(
        &self,
        node: i64,
        job: i64,
        fence: i64,
        task: i64,
        data: &[u8],
        at: Option<(&str, u64)>,
        now: i64,
    ) -> Result<()>;
    async fn read_logs(&self, job: i64, after: i64, limit: i64) -> Result<Vec<LogRecord>>;
    /// The answer kept for `user`'s idempotency `key`, if it was kept after `since`.
    async fn idempotent_answer(
        &self,
        user: i64,
        key: &str,
        since: i64,
    ) -> Result<Option<IdempotentAnswer>>;
    /// Keeps `answer` for `user`'s `key` (replacing one kept before `since`, and dropping every
    /// answer kept before `since`). False when the key already has an answer kept after `since`.
    async fn keep_idempotent_answer(
        &self,
        user: i64,
        key: &str,
        answer: &IdempotentAnswer,
        since: i64,
    ) -> Result<bool>;

    // --- audit ---

    async fn list_audit(&self, after: i64, limit: i64) -> Result<Vec<AuditRecord>>;
    /// Recomputes the hash chain from the start; the first broken link is
    /// [`StoreError::AuditBroken`] naming its entry.
    async fn verify_audit(&self) -> Result<i64>;
    /// The newest audit entry (the chain's head), if any.
    async fn audit_head(&self) -> Result<Option<AuditRecord>>;

    // --- leadership ---

    /// Takes or renews the named lease for `holder` until `now + ttl_ms`. Returns the epoch while
    /// held: it grows by one each time the lease changes hands.
    async fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        ttl_ms: i64,
        now: i64,
    ) -> Result<Option<i64>>;
    /// Gives the lease up (clean shutdown), so a standby need not wait for it to expire.
    async fn release_lease(&self, name: &str, holder: &str) -> Result<()>;
    /// Who holds the named lease at `now`, if anyone (a standby names the leader with it).
    async fn lease_holder(&self, name: &str, now: i64) -> Result<Option<String>>;

    // --- telemetry ---

    /// Folds GPU samples a node's agent took into each job's per-GPU summary and per-minute
    /// series, and records its tasks' CPU time, in one transaction. The caller checks that the
    /// samples are of tasks on `node`.
    async fn record_gpu_samples(
        &self,
        node: i64,
        samples: &[GpuSampleRecord],
        cpu: &[TaskCpuRecord],
    ) -> Result<()>;
    /// A job's per-GPU summaries, by node and GPU index.
    async fn job_gpu_usage(&self, job: i64) -> Result<Vec<GpuUsageRecord>>;
    /// A job's per-minute series (what retention left), by minute and GPU.
    async fn job_gpu_minutes(&self, job: i64) -> Result<Vec<GpuMinuteRecord>>;
    /// A job's tasks' CPU time, by attempt and task.
    async fn job_task_cpu(&self, job: i64) -> Result<Vec<TaskCpuRecord>>;
    /// Per job, the samples of minutes from `since` on, in job order.
    async fn recent_gpu_use(&self, since: i64) -> Result<Vec<RecentGpuUse>>;
    /// Folds the per-minute series before `minutes_before` into hourly rows (mean of the
    /// minutes' means, max of their maxes, energy summed) and drops those minutes, then drops
    /// the hourly rows before `hours_before`; the per-job summaries stay. One transaction.
    async fn downsample_gpu_minutes(
        &self,
        minutes_before: i64,
        hours_before: i64,
    ) -> Result<Downsampled>;
    /// A job's hourly series (what the hourly retention left), by hour and GPU.
    async fn job_gpu_hours(&self, job: i64) -> Result<Vec<GpuHourRecord>>;
    /// The attempts charged in `[from, until)` whose jobs have GPU samples, with their jobs'
    /// measured figures, in attempt order. Attempts of jobs never sampled are absent.
    async fn charged_gpu_use(&self, from: i64, until: i64) -> Result<Vec<ChargedGpuUse>>;
    /// Per project, GPU time sampled, GPU time busy and energy of jobs whose first sample falls
    /// in `[from, until)`, in project order.
    async fn project_gpu_use(&self, from: i64, until: i64) -> Result<Vec<ProjectGpuUse>>;
}
