//! Attempts: one run of a job on a placement, from the controller's start (fenced by the
//! leader's lease epoch) through the agents' task reports and stop requests to its end, which
//! charges its GPU time (see [`super::awards`]) and requeues or finishes its job; also the tasks'
//! output. Owns the `attempts`, `tasks`, `logs` and `log_offsets` tables.

use crate::Result;
use crate::records::*;
use async_trait::async_trait;

/// Starting, stopping and ending attempts, the agent protocol, and task output. Part of [`crate::Store`].
#[async_trait]
pub trait AttemptStore: Send + Sync {
    async fn list_attempts(&self, job: i64) -> Result<Vec<AttemptRecord>>;
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
}

/// Expands [`AttemptStore`] for the backend `$store` on database `$db`, and the helpers of this
/// area, into the backend's module (see `store_impl!`), where the other areas' SQL shares
/// them.
macro_rules! attempt_store {
    ($store:ty, $db:ty) => {
        fn attempt_row(r: &DbRow) -> Result<AttemptRecord> {
            let placement: String = r.try_get("placement")?;
            attempt_with(r, crate::gang_cache::placement(&placement)?)
        }

        /// An attempt from a row whose placement was read apart (or not at all).
        fn attempt_with(
            r: &DbRow,
            placement: std::sync::Arc<haneul_sched::Placement>,
        ) -> Result<AttemptRecord> {
            let model: Option<String> = r.try_get("gpu_model")?;
            let state: String = r.try_get("state")?;
            let stop: Option<String> = r.try_get("stop_reason")?;
            Ok(AttemptRecord {
                id: r.try_get("id")?,
                job_id: r.try_get("job_id")?,
                fence: r.try_get("fence")?,
                epoch: r.try_get("epoch")?,
                placement,
                gpu_model: model
                    .map(|m| GpuModel::new(&m))
                    .transpose()
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?,
                borrowing: r.try_get("borrowing")?,
                state: parse_enum(&state, AttemptState::parse, "attempt state")?,
                stop_reason: stop
                    .map(|s| parse_enum(&s, StopReason::parse, "stop reason"))
                    .transpose()?,
                kill_at: r.try_get("kill_at")?,
                deadline: r.try_get("deadline")?,
                created_at: r.try_get("created_at")?,
                started_at: r.try_get("started_at")?,
                ended_at: r.try_get("ended_at")?,
                exit_code: r.try_get("exit_code")?,
                gpu_ms: r.try_get("gpu_ms")?,
            })
        }

        async fn current_attempt(tx: &mut Tx<'_>, job: &JobRecord) -> Result<Option<AttemptRecord>> {
            let row = sqlx::query("SELECT * FROM attempts WHERE job_id = $1 AND fence = $2")
                .bind(job.id)
                .bind(job.attempts)
                .fetch_optional(&mut **tx)
                .await?;
            row.as_ref().map(attempt_row).transpose()
        }

        /// GPU-milliseconds held by an attempt from its start (or assignment) to `now`.
        fn gpu_ms(a: &AttemptRecord, now: i64) -> i64 {
            let milli: u64 = a
                .placement
                .tasks
                .iter()
                .map(|t| t.gpus.len() as u64 * t.milli_per_gpu.get())
                .sum();
            let from = a.started_at.unwrap_or(a.created_at);
            (now - from).max(0).saturating_mul(milli as i64) / 1000
        }

        /// Ends every live attempt with a task on `node` as lost with the node, so their jobs
        /// run again elsewhere (a job its user cancelled stays cancelled); returns their jobs.
        async fn requeue_node_attempts(tx: &mut Tx<'_>, node: i64, now: i64) -> Result<Vec<i64>> {
            let rows = sqlx::query(
                "SELECT DISTINCT a.* FROM attempts a JOIN tasks t ON t.attempt_id = a.id \
                 WHERE t.node_id = $1 AND a.state IN ('assigned', 'running', 'stopping') \
                 ORDER BY a.id",
            )
            .bind(node)
            .fetch_all(&mut **tx)
            .await?;
            let mut jobs = Vec::with_capacity(rows.len());
            for r in &rows {
                let a = attempt_row(r)?;
                sqlx::query(
                    "UPDATE tasks SET state = 'lost' WHERE attempt_id = $1 \
                     AND state IN ('assigned', 'running')",
                )
                .bind(a.id)
                .execute(&mut **tx)
                .await?;
                let end = if matches!(a.stop_reason, Some(StopReason::Cancel | StopReason::Idle)) {
                    AttemptState::Cancelled
                } else {
                    AttemptState::NodeLost
                };
                end_attempt(tx, &a, end, None, now).await?;
                jobs.push(a.job_id);
            }
            Ok(jobs)
        }

        /// Ends a live attempt with `state` and moves its job on: requeued (preempted, node lost)
        /// or finished. Writes the controller event that tells the engine which.
        async fn end_attempt(
            tx: &mut Tx<'_>,
            a: &AttemptRecord,
            state: AttemptState,
            exit_code: Option<i64>,
            now: i64,
        ) -> Result<()> {
            let used = gpu_ms(a, now);
            sqlx::query(
                "UPDATE attempts SET state = $1, ended_at = $2, exit_code = $3, gpu_ms = $4 \
                 WHERE id = $5",
            )
            .bind(state.as_str())
            .bind(now)
            .bind(exit_code)
            .bind(used)
            .bind(a.id)
            .execute(&mut **tx)
            .await?;
            charge_all(tx, &[(a.clone(), state, used)], now).await?;
            let (job_state, kind, reason) = ending(a, state)?;
            set_job_state(tx, a.job_id, job_state, exit_code, Some(reason), now).await?;
            event(tx, kind, Some(a.job_id), Some(a.id), None, state.as_str(), now).await
        }

        /// What an attempt ending with `state` does to its job: the job's state, the event that
        /// tells the engine, and the job's reason.
        fn ending(
            a: &AttemptRecord,
            state: AttemptState,
        ) -> Result<(JobState, EventKind, &'static str)> {
            let (job_state, kind) = match state {
                AttemptState::Succeeded => (JobState::Succeeded, EventKind::Finished),
                AttemptState::Failed => (JobState::Failed, EventKind::Finished),
                AttemptState::Cancelled => (JobState::Cancelled, EventKind::Finished),
                AttemptState::TimedOut => (JobState::TimedOut, EventKind::Finished),
                AttemptState::Preempted | AttemptState::NodeLost => {
                    (JobState::Queued, EventKind::Requeued)
                }
                live => {
                    return Err(StoreError::Corrupt(format!(
                        "attempt cannot end as `{live}`"
                    )));
                }
            };
            // A job stopped for idling says so, rather than looking cancelled by its owner.
            let reason = match a.stop_reason {
                Some(StopReason::Idle) if state == AttemptState::Cancelled => "idle",
                _ => state.as_str(),
            };
            Ok((job_state, kind, reason))
        }

        /// A task as a batch of reports finds it, and as the batch leaves it.
        struct ReportedTask {
            node: i64,
            state: String,
            exit_code: Option<i64>,
            changed: bool,
        }

        /// What a batch of reports reads before it checks them (one statement per table, whatever
        /// the batch's size), and what the reports change, kept in memory until they are
        /// written together.
        #[derive(Default)]
        struct ReportBatch {
            /// Each named job's current fence (its `attempts`).
            fences: BTreeMap<i64, i64>,
            /// The current attempt of each job that some report names with its current fence.
            attempts: BTreeMap<i64, AttemptRecord>,
            /// The reported tasks of those attempts that are live, by (attempt, index).
            tasks: BTreeMap<(i64, i64), ReportedTask>,
            /// Per live attempt: its tasks still assigned or running, and its failed task of
            /// the lowest index with that task's exit code (the attempt's exit code).
            left: BTreeMap<i64, i64>,
            first_failed: BTreeMap<i64, (i64, i64)>,
            /// Jobs whose attempt a report changed.
            changed: std::collections::BTreeSet<i64>,
            /// Per job, its state and (when set) its exit code and reason after the batch.
            jobs: BTreeMap<i64, (JobState, Option<i64>, Option<&'static str>)>,
            /// Attempts that ended, in the order their reports came: each is charged in that
            /// order (a charge reads what the ones before it left of an award).
            ended: Vec<(AttemptRecord, AttemptState, i64)>,
            events: Vec<crate::backend::EventRow>,
        }

        /// Records in `jobs` a change of a job's state as `set_job_state` would make it: an
        /// exit code left out keeps the one before.
        fn set_job(
            jobs: &mut BTreeMap<i64, (JobState, Option<i64>, Option<&'static str>)>,
            job: i64,
            state: JobState,
            exit_code: Option<i64>,
            reason: &'static str,
        ) {
            let e = jobs.entry(job).or_insert((state, None, None));
            e.0 = state;
            e.1 = exit_code.or(e.1);
            e.2 = Some(reason);
        }

        impl ReportBatch {
            /// Reads what `reports` need: the jobs they name with the current attempts of those
            /// whose fence they present (one statement, a row per job), then the reported tasks
            /// of the live ones with their attempts' counts. The tasks are read apart: joined,
            /// every task's row repeated the attempt's placement, which for a gang of 1,250
            /// nodes is about 74 KB.
            async fn read(tx: &mut Tx<'_>, reports: &[TaskReport]) -> Result<ReportBatch> {
                let mut b = ReportBatch::default();
                let mut ids: Vec<i64> = reports.iter().map(|r| r.job).collect();
                ids.sort_unstable();
                ids.dedup();
                let rows = sqlx::query(&format!(
                    "SELECT j.id AS report_job, j.attempts AS report_fence, a.* FROM jobs j \
                     LEFT JOIN attempts a ON a.job_id = j.id AND a.fence = j.attempts WHERE {}",
                    in_ids("j.id", 1)
                ))
                .bind(id_list(&ids))
                .fetch_all(&mut **tx)
                .await?;
                let presented: std::collections::BTreeSet<(i64, i64)> =
                    reports.iter().map(|r| (r.job, r.fence)).collect();
                for r in &rows {
                    let job: i64 = r.try_get("report_job")?;
                    let fence: i64 = r.try_get("report_fence")?;
                    b.fences.insert(job, fence);
                    // No report names this job's current attempt: its reports are fenced off
                    // by `apply`, which needs only the fence.
                    if presented.contains(&(job, fence))
                        && r.try_get::<Option<i64>, _>("id")?.is_some()
                    {
                        b.attempts.insert(job, attempt_row(r)?);
                    }
                }
                let live: Vec<i64> = b
                    .attempts
                    .values()
                    .filter(|a| a.state.is_live())
                    .map(|a| a.id)
                    .collect();
                if live.is_empty() {
                    return Ok(b);
                }
                // Only the reported tasks are read, with a count and the first failure per
                // attempt: a gang's every report batch used to read all its tasks, about 1,100
                // rows a batch for a 1,250-node gang, 0.6 s of the one writer's time per start
                // or stop of the gang. A task index no report names is read only where another
                // attempt's report names it, and then only if live.
                let mut reported: Vec<i64> = reports.iter().map(|r| r.task).collect();
                reported.sort_unstable();
                reported.dedup();
                let rows = sqlx::query(&format!(
                    "WITH summary AS (SELECT attempt_id, \
                     SUM(CASE WHEN state IN ('assigned', 'running') THEN 1 ELSE 0 END) AS left_n, \
                     MIN(CASE WHEN exit_code <> 0 THEN idx END) AS failed_idx \
                     FROM tasks WHERE {} GROUP BY attempt_id) \
                     SELECT s.attempt_id, s.left_n, s.failed_idx, f.exit_code AS failed_code, \
                     t.idx, t.node_id, t.state, t.exit_code FROM summary s \
                     LEFT JOIN tasks f ON f.attempt_id = s.attempt_id AND f.idx = s.failed_idx \
                     LEFT JOIN tasks t ON t.attempt_id = s.attempt_id AND {}",
                    in_ids("attempt_id", 1),
                    in_ids("t.idx", 2)
                ))
                .bind(id_list(&live))
                .bind(id_list(&reported))
                .fetch_all(&mut **tx)
                .await?;
                for r in &rows {
                    let attempt: i64 = r.try_get("attempt_id")?;
                    b.left.insert(attempt, r.try_get("left_n")?);
                    let failed_idx: Option<i64> = r.try_get("failed_idx")?;
                    let failed_code: Option<i64> = r.try_get("failed_code")?;
                    if let (Some(idx), Some(code)) = (failed_idx, failed_code) {
                        b.first_failed.insert(attempt, (idx, code));
                    }
                    let Some(idx) = r.try_get::<Option<i64>, _>("idx")? else {
                        continue;
                    };
                    let t = ReportedTask {
                        node: r.try_get("node_id")?,
                        state: r.try_get("state")?,
                        exit_code: r.try_get("exit_code")?,
                        changed: false,
                    };
                    b.tasks.insert((attempt, idx), t);
                }
                Ok(b)
            }

            /// Checks one report against what the reports before it left, refusing it exactly
            /// as it would be refused alone, and applies it in memory.
            fn apply(&mut self, r: &TaskReport, now: i64) -> Result<AttemptRecord> {
                let Some(&fence) = self.fences.get(&r.job) else {
                    return Err(StoreError::not_found("job", r.job));
                };
                if r.fence != fence {
                    return Err(StoreError::Fenced(format!(
                        "attempt {} of job {} is not current (current is {})",
                        r.fence, r.job, fence
                    )));
                }
                let a = self
                    .attempts
                    .get_mut(&r.job)
                    .ok_or_else(|| StoreError::Fenced(format!("job {} has no attempt", r.job)))?;
                if !a.state.is_live() {
                    return Err(StoreError::Fenced(format!(
                        "attempt {} of job {} has already ended ({})",
                        r.fence, r.job, a.state
                    )));
                }
                let Some(task) = self.tasks.get_mut(&(a.id, r.task)) else {
                    return Err(StoreError::not_found("task", r.task));
                };
                if task.node != r.node {
                    return Err(StoreError::Fenced(format!(
                        "task {} of job {} is not on this node",
                        r.task, r.job
                    )));
                }
                let task_state = parse_enum(&task.state, TaskState::parse, "task state")?;
                match r.exit_code {
                    None => {
                        if task_state != TaskState::Assigned {
                            return Ok(a.clone());
                        }
                        task.state = TaskState::Running.as_str().to_string();
                        task.changed = true;
                        if a.state == AttemptState::Assigned {
                            a.state = AttemptState::Running;
                        }
                        a.started_at = a.started_at.or(Some(now));
                        self.changed.insert(r.job);
                    }
                    Some(code) => {
                        if task_state == TaskState::Exited {
                            return Err(StoreError::conflict(
                                "exit_code",
                                format!("task {} of job {} already reported its exit", r.task, r.job),
                            ));
                        }
                        if task.state == "assigned" || task.state == "running" {
                            *self.left.entry(a.id).or_default() -= 1;
                        }
                        task.state = TaskState::Exited.as_str().to_string();
                        task.exit_code = Some(code);
                        task.changed = true;
                        // A task's exit is reported once (the second is refused above), so a
                        // zero here never clears a failure recorded before.
                        if code != 0 {
                            let first = self.first_failed.entry(a.id).or_insert((r.task, code));
                            if r.task < first.0 {
                                *first = (r.task, code);
                            }
                        }
                        let failed = self.first_failed.get(&a.id).map(|&(_, code)| code);
                        self.changed.insert(r.job);
                        if self.left.get(&a.id).copied().unwrap_or(0) == 0 {
                            let end = match (a.stop_reason, failed) {
                                (Some(StopReason::Cancel | StopReason::Idle), _) => {
                                    AttemptState::Cancelled
                                }
                                (Some(StopReason::Preempt), _) => AttemptState::Preempted,
                                (Some(StopReason::TimeLimit), _) => AttemptState::TimedOut,
                                (Some(StopReason::TaskFailed), _) | (None, Some(_)) => {
                                    AttemptState::Failed
                                }
                                (None, None) => AttemptState::Succeeded,
                            };
                            let exit_code = failed.unwrap_or(code);
                            // Charged as having started now if no start was ever reported;
                            // the row keeps its start as it was.
                            let mut charged = a.clone();
                            charged.started_at = charged.started_at.or(Some(now));
                            let used = gpu_ms(&charged, now);
                            let (job_state, kind, reason) = ending(&charged, end)?;
                            a.state = end;
                            a.ended_at = Some(now);
                            a.exit_code = Some(exit_code);
                            a.gpu_ms = used;
                            set_job(&mut self.jobs, r.job, job_state, Some(exit_code), reason);
                            self.events.push(crate::backend::EventRow {
                                at: now,
                                kind: kind.as_str(),
                                job: Some(r.job),
                                attempt: Some(charged.id),
                                node: None,
                                detail: end.as_str().to_string(),
                            });
                            self.ended.push((charged, end, used));
                        } else if code != 0 && a.stop_reason.is_none() {
                            // One rank failed: the gang cannot go on, so the others are stopped.
                            a.state = AttemptState::Stopping;
                            a.stop_reason = Some(StopReason::TaskFailed);
                            a.kill_at = Some(now);
                            set_job(&mut self.jobs, r.job, JobState::Stopping, None, "task_failed");
                        }
                    }
                }
                Ok(self.attempts[&r.job].clone())
            }

            /// Writes what the reports changed: tasks, attempts and jobs in a multi-row
            /// statement each (one in all on PostgreSQL), each ended attempt's charge, and the
            /// events in one more.
            async fn write(self, tx: &mut Tx<'_>, now: i64) -> Result<()> {
                let tasks: Vec<crate::backend::TaskSet> = self
                    .tasks
                    .iter()
                    .filter(|(_, t)| t.changed)
                    .map(|(&(attempt, idx), t)| crate::backend::TaskSet {
                        attempt,
                        idx,
                        state: t.state.clone(),
                        exit_code: t.exit_code,
                    })
                    .collect();
                let attempts: Vec<crate::backend::AttemptSet> = self
                    .changed
                    .iter()
                    .map(|job| {
                        let a = &self.attempts[job];
                        crate::backend::AttemptSet {
                            id: a.id,
                            state: a.state.as_str(),
                            stop_reason: a.stop_reason.map(StopReason::as_str),
                            kill_at: a.kill_at,
                            started_at: a.started_at,
                            ended_at: a.ended_at,
                            exit_code: a.exit_code,
                            gpu_ms: a.gpu_ms,
                        }
                    })
                    .collect();
                let jobs: Vec<crate::backend::JobSet> = self
                    .jobs
                    .iter()
                    .map(|(&id, &(state, exit_code, reason))| crate::backend::JobSet {
                        id,
                        state: state.as_str(),
                        exit_code,
                        reason,
                    })
                    .collect();
                write_reported(tx, &tasks, &attempts, &jobs, now).await?;
                charge_all(tx, &self.ended, now).await?;
                insert_log(tx, &self.events, &[]).await
            }
        }

        /// Task reports inside the caller's write transaction, each answered as it would be
        /// alone and after the ones before it: a refused report changes nothing, and its
        /// neighbours carry on. `Err` only when the database fails (or holds what it should
        /// not), and then the caller's transaction is to be dropped. Reads and writes a fixed
        /// handful of statements whatever the number of reports: a gang's 1,250 stop reports
        /// once ran five statements each, one after another on the one writer.
        async fn report_batch(
            tx: &mut Tx<'_>,
            reports: &[TaskReport],
            now: i64,
        ) -> Result<Vec<Result<AttemptRecord>>> {
            let mut b = ReportBatch::read(tx, reports).await?;
            let mut out = Vec::with_capacity(reports.len());
            for r in reports {
                match b.apply(r, now) {
                    Err(e @ (StoreError::Database(_) | StoreError::Corrupt(_))) => return Err(e),
                    other => out.push(other),
                }
            }
            b.write(tx, now).await?;
            Ok(out)
        }


        #[async_trait]
        impl AttemptStore for $store {
            async fn list_attempts(&self, job: i64) -> Result<Vec<AttemptRecord>> {
                let rows = sqlx::query("SELECT * FROM attempts WHERE job_id = $1 ORDER BY fence")
                    .bind(job)
                    .fetch_all(&self.read)
                    .await?;
                rows.iter().map(attempt_row).collect()
            }

            async fn start_attempts(
                &self,
                holder: &str,
                epoch: i64,
                starts: Vec<NewAttempt>,
                now: i64,
            ) -> Result<(Vec<AttemptRecord>, Vec<i64>)> {
                let mut tx = self.begin_write().await?;
                let lease = "EXISTS (SELECT 1 FROM leases WHERE name = 'controller' \
                             AND holder = $1 AND epoch = $2 AND expires_at > $3)";
                // The state check in the WHERE clause is what makes a start happen once: a job
                // cancelled or already started since the decision is left alone (and skipped).
                // The lease is checked in the same statement (one round trip fewer under the
                // writers' lock), and on its own only when no job was taken.
                let wanted: Vec<i64> = starts.iter().map(|s| s.job_id).collect();
                let rows = if starts.is_empty() {
                    Vec::new()
                } else {
                    sqlx::query(&format!(
                        "UPDATE jobs SET state = 'running', attempts = attempts + 1, updated_at = $3 \
                         WHERE state = 'queued' AND {} AND {lease} RETURNING *",
                        in_ids("id", 4)
                    ))
                    .bind(holder)
                    .bind(epoch)
                    .bind(now)
                    .bind(id_list(&wanted))
                    .fetch_all(&mut *tx)
                    .await?
                };
                if rows.is_empty() {
                    let leads: Option<i64> = sqlx::query_scalar(
                        "SELECT epoch FROM leases WHERE name = 'controller' AND holder = $1 \
                         AND epoch = $2 AND expires_at > $3",
                    )
                    .bind(holder)
                    .bind(epoch)
                    .bind(now)
                    .fetch_optional(&mut *tx)
                    .await?;
                    if leads.is_none() {
                        return Err(StoreError::NotLeader);
                    }
                }
                let mut jobs = std::collections::HashMap::with_capacity(rows.len());
                for r in &rows {
                    let j = job_row(r)?;
                    jobs.insert(j.id, j);
                }
                let (go, skip): (Vec<NewAttempt>, Vec<NewAttempt>) =
                    starts.into_iter().partition(|s| jobs.contains_key(&s.job_id));
                let skipped: Vec<i64> = skip.iter().map(|s| s.job_id).collect();
                if go.is_empty() {
                    tx.commit().await?;
                    return Ok((Vec::new(), skipped));
                }
                let mut attempts = Vec::with_capacity(go.len());
                let mut tasks = Vec::new();
                for s in &go {
                    let job = &jobs[&s.job_id];
                    for (i, t) in s.placement.tasks.iter().enumerate() {
                        tasks.push(crate::backend::TaskRow {
                            job: job.id,
                            idx: i as i64,
                            node: t.node.get() as i64,
                            gpus: serde_json::to_string(&t.gpus)?,
                        });
                    }
                    attempts.push(crate::backend::AttemptRow {
                        job: job.id,
                        fence: job.attempts,
                        placement: serde_json::to_string(&s.placement)?,
                        gpu_model: s.gpu_model.as_ref().map(|m| m.to_string()),
                        borrowing: s.borrowing,
                        deadline: job.spec.time_limit.map(|t| now + t.millis()),
                    });
                }
                let rows = insert_started(&mut tx, epoch, now, &attempts, &tasks).await?;
                let mut started = rows.iter().map(attempt_row).collect::<Result<Vec<_>>>()?;
                started.sort_by_key(|a| a.id);
                tx.commit().await?;
                Ok((started, skipped))
            }

            async fn request_stop(
                &self,
                attempt: i64,
                reason: StopReason,
                kill_at: i64,
                now: i64,
            ) -> Result<()> {
                let mut tx = self.begin_write().await?;
                let job: Option<i64> = sqlx::query_scalar(
                    "UPDATE attempts SET state = 'stopping', stop_reason = $1, kill_at = $2 \
                     WHERE id = $3 AND state IN ('assigned', 'running') RETURNING job_id",
                )
                .bind(reason.as_str())
                .bind(kill_at)
                .bind(attempt)
                .fetch_optional(&mut *tx)
                .await?;
                let Some(job) = job else {
                    return Ok(());
                };
                set_job_state(&mut tx, job, JobState::Stopping, None, Some(reason.as_str()), now)
                    .await?;
                event(&mut tx, EventKind::StopRequested, Some(job), Some(attempt), None, reason.as_str(), now)
                    .await?;
                tx.commit().await?;
                Ok(())
            }

            async fn overdue_attempts(&self, now: i64) -> Result<Vec<AttemptRecord>> {
                let rows = sqlx::query(
                    "SELECT * FROM attempts WHERE state IN ('assigned', 'running') \
                     AND deadline IS NOT NULL AND deadline < $1 ORDER BY id",
                )
                .bind(now)
                .fetch_all(&self.read)
                .await?;
                rows.iter().map(attempt_row).collect()
            }

            async fn assignments(&self, node: i64) -> Result<Vec<Assignment>> {
                // Two statements whatever the number of tasks, three when a gang is on the node
                // (it was five per task): a node's long poll reads this after every change, so
                // on PostgreSQL each statement saved is a round trip saved per node per start.
                const LIVE: &str = "SELECT t.attempt_id FROM tasks t WHERE t.node_id = $1 \
                     AND t.state IN ('assigned', 'running')";
                let mut tx = self.begin_read().await?;
                // A large placement's text (about 74 KB for a 1,250-node gang) is left out, and
                // comes from the store's cache or one more statement: read for every node of
                // the gang at each change of its list, it was copied out of the database, into
                // a string and through a comparison each time. Sorted here, not by the
                // database, which copied each row whole into its sorter.
                let mut tasks = sqlx::query(&format!(
                    "SELECT a.id, a.job_id, a.fence, a.epoch, a.gpu_model, a.borrowing, a.state, \
                     a.stop_reason, a.kill_at, a.deadline, a.created_at, a.started_at, \
                     a.ended_at, a.exit_code, a.gpu_ms, \
                     CASE WHEN octet_length(a.placement) < {} THEN a.placement END AS placement, \
                     t.idx AS task_idx, t.gpus AS task_gpus, t.state AS task_state, \
                     COALESCE(n.address, n.name) AS node_address \
                     FROM tasks t JOIN attempts a ON a.id = t.attempt_id \
                     JOIN nodes n ON n.id = t.node_id \
                     WHERE t.node_id = $1 AND t.state IN ('assigned', 'running') \
                     AND a.state IN ('assigned', 'running', 'stopping')",
                    crate::gang_cache::LARGE_PLACEMENT_BYTES
                ))
                .bind(node)
                .fetch_all(&mut *tx)
                .await?;
                if tasks.is_empty() {
                    return Ok(Vec::new());
                }
                let mut order: Vec<(i64, i64, usize)> = Vec::with_capacity(tasks.len());
                for (i, r) in tasks.iter().enumerate() {
                    order.push((r.try_get("id")?, r.try_get("task_idx")?, i));
                }
                order.sort_unstable();
                let mut slots: Vec<Option<DbRow>> = tasks.drain(..).map(Some).collect();
                let tasks: Vec<DbRow> = order
                    .iter()
                    .filter_map(|&(_, _, i)| slots[i].take())
                    .collect();
                let mut large: BTreeMap<i64, std::sync::Arc<haneul_sched::Placement>> =
                    BTreeMap::new();
                let mut unkept: Vec<i64> = Vec::new();
                for r in &tasks {
                    if r.try_get::<Option<String>, _>("placement")?.is_some() {
                        continue;
                    }
                    let id: i64 = r.try_get("id")?;
                    if large.contains_key(&id) || unkept.contains(&id) {
                        continue;
                    }
                    match self.placements.get(id) {
                        Some(p) => {
                            large.insert(id, p);
                        }
                        None => unkept.push(id),
                    }
                }
                if !unkept.is_empty() {
                    let texts: Vec<(i64, String)> = sqlx::query_as(&format!(
                        "SELECT id, placement FROM attempts WHERE {}",
                        in_ids("id", 1)
                    ))
                    .bind(id_list(&unkept))
                    .fetch_all(&mut *tx)
                    .await?;
                    for (id, text) in texts {
                        let p = crate::gang_cache::placement(&text)?;
                        self.placements.put(id, p.clone());
                        large.insert(id, p);
                    }
                }
                let jobs = sqlx::query(&format!(
                    "SELECT j.*, u.name AS user_name, u.uid AS user_uid, u.gid AS user_gid, \
                     p.gid AS project_gid, parent.array_spec AS parent_array FROM jobs j \
                     LEFT JOIN users u ON u.id = j.user_id \
                     LEFT JOIN projects p ON p.id = j.project_id \
                     LEFT JOIN jobs parent ON parent.id = j.array_job_id \
                     WHERE j.id IN (SELECT a.job_id FROM attempts a WHERE a.id IN ({LIVE}))"
                ))
                .bind(node)
                .fetch_all(&mut *tx)
                .await?;
                let mut by_id = std::collections::HashMap::with_capacity(jobs.len());
                for r in &jobs {
                    let job = job_row(r)?;
                    let user: (Option<String>, Option<i64>, Option<i64>) =
                        (r.try_get("user_name")?, r.try_get("user_uid")?, r.try_get("user_gid")?);
                    let project_gid: Option<i64> = r.try_get("project_gid")?;
                    let array = r
                        .try_get::<Option<String>, _>("parent_array")?
                        .and_then(|a| haneul_model::ArraySpec::parse(&a).ok());
                    by_id.insert(job.id, (job, user, project_gid, array));
                }
                let attempts: Vec<AttemptRecord> = tasks
                    .iter()
                    .map(|r| match r.try_get::<Option<String>, _>("placement")? {
                        Some(text) => attempt_with(r, crate::gang_cache::placement(&text)?),
                        None => {
                            let id: i64 = r.try_get("id")?;
                            let p = large
                                .get(&id)
                                .cloned()
                                .ok_or_else(|| StoreError::not_found("attempt", id))?;
                            attempt_with(r, p)
                        }
                    })
                    .collect::<Result<_>>()?;
                // A large gang's peers come from the store's cache after the first of its
                // nodes read them: read for every node, they are quadratic in the gang's size.
                let mut peers: BTreeMap<i64, std::sync::Arc<Vec<String>>> = BTreeMap::new();
                let mut unread: Vec<i64> = Vec::new();
                for (r, a) in tasks.iter().zip(&attempts) {
                    if peers.contains_key(&a.id) || unread.contains(&a.id) {
                        continue;
                    }
                    // A stop needs no peers: an agent stops the task it runs, or reports one it
                    // does not run as ended. Left out, a whole-fleet gang's stop lists are small
                    // (each named every node, 1,250 names to copy and send per node), and a held
                    // poll keeps them through its wait instead of reading them again.
                    if a.state == AttemptState::Stopping {
                        continue;
                    }
                    // A one-task attempt's only peer is this node: no statement to read it.
                    if a.placement.tasks.len() == 1 {
                        let address: String = r.try_get("node_address")?;
                        peers.insert(a.id, std::sync::Arc::new(vec![address]));
                        continue;
                    }
                    let cached = (a.placement.tasks.len() >= crate::gang_cache::PEERS_CACHED_FROM)
                        .then(|| self.peers.get(a.id))
                        .flatten();
                    match cached {
                        Some(p) => {
                            peers.insert(a.id, p);
                        }
                        None => unread.push(a.id),
                    }
                }
                if !unread.is_empty() {
                    let peer_rows: Vec<(i64, String)> = sqlx::query_as(&format!(
                        "SELECT t.attempt_id, COALESCE(n.address, n.name) FROM tasks t \
                         JOIN nodes n ON n.id = t.node_id \
                         WHERE {} ORDER BY t.attempt_id, t.idx",
                        in_ids("t.attempt_id", 1)
                    ))
                    .bind(id_list(&unread))
                    .fetch_all(&mut *tx)
                    .await?;
                    let mut read: BTreeMap<i64, Vec<String>> = BTreeMap::new();
                    for (attempt, peer) in peer_rows {
                        read.entry(attempt).or_default().push(peer);
                    }
                    for (attempt, list) in read {
                        let list = std::sync::Arc::new(list);
                        if list.len() >= crate::gang_cache::PEERS_CACHED_FROM {
                            self.peers.put(attempt, list.clone());
                        }
                        peers.insert(attempt, list);
                    }
                }
                let mut out = Vec::with_capacity(tasks.len());
                for (r, attempt) in tasks.iter().zip(attempts) {
                    let gpus: String = r.try_get("task_gpus")?;
                    let state: String = r.try_get("task_state")?;
                    let (job, (user_name, uid, gid), project_gid, array) = by_id
                        .get(&attempt.job_id)
                        .cloned()
                        .ok_or_else(|| StoreError::not_found("job", attempt.job_id))?;
                    out.push(Assignment {
                        array,
                        job,
                        task: r.try_get("task_idx")?,
                        gpus: serde_json::from_str(&gpus)?,
                        task_state: parse_enum(&state, TaskState::parse, "task state")?,
                        peers: peers.get(&attempt.id).map(|p| (**p).clone()).unwrap_or_default(),
                        attempt,
                        user_name: user_name.unwrap_or_default(),
                        uid,
                        gid,
                        project_gid,
                    });
                }
                Ok(out)
            }

            async fn report_task(&self, r: TaskReport, now: i64) -> Result<AttemptRecord> {
                let mut tx = self.begin_write().await?;
                let rec = report_batch(&mut tx, std::slice::from_ref(&r), now)
                    .await?
                    .pop()
                    .ok_or_else(|| StoreError::Corrupt("a report went unanswered".into()))??;
                tx.commit().await?;
                Ok(rec)
            }

            async fn report_tasks(
                &self,
                reports: &[TaskReport],
                now: i64,
            ) -> Result<Vec<Result<AttemptRecord>>> {
                let mut tx = self.begin_write().await?;
                let out = report_batch(&mut tx, reports, now).await?;
                tx.commit().await?;
                Ok(out)
            }

            async fn append_log(
                &self,
                node: i64,
                job: i64,
                fence: i64,
                task: i64,
                data: &[u8],
                at: Option<(&str, u64)>,
                now: i64,
            ) -> Result<()> {
                if let Some((stream, offset)) = at {
                    if stream != "stdout" && stream != "stderr" {
                        return Err(StoreError::invalid(
                            "stream",
                            format!("{stream:?} is not an output file; use stdout or stderr"),
                        ));
                    }
                    if offset.saturating_add(data.len() as u64) > i64::MAX as u64 {
                        return Err(StoreError::invalid(
                            "offset",
                            "the upload would end past the largest file offset",
                        ));
                    }
                }
                let mut tx = self.begin_write().await?;
                let attempt: Option<i64> = sqlx::query_scalar(
                    "SELECT a.id FROM attempts a JOIN tasks t ON t.attempt_id = a.id \
                     JOIN jobs j ON j.id = a.job_id \
                     WHERE a.job_id = $1 AND a.fence = $2 AND t.idx = $3 AND t.node_id = $4 \
                     AND j.attempts = a.fence \
                     AND a.state IN ('assigned', 'running', 'stopping')",
                )
                .bind(job)
                .bind(fence)
                .bind(task)
                .bind(node)
                .fetch_optional(&mut *tx)
                .await?;
                let Some(attempt) = attempt else {
                    return Err(StoreError::Fenced(format!(
                        "attempt {fence} of job {job} is not current, has ended, or has no task {task} on this node"
                    )));
                };
                let mut data = data;
                if let Some((stream, offset)) = at {
                    let stored_to: Option<i64> = sqlx::query_scalar(
                        "SELECT stored_to FROM log_offsets \
                         WHERE attempt_id = $1 AND task = $2 AND stream = $3",
                    )
                    .bind(attempt)
                    .bind(task)
                    .bind(stream)
                    .fetch_optional(&mut *tx)
                    .await?;
                    let stored_to = stored_to.unwrap_or(0) as u64;
                    let end = offset.saturating_add(data.len() as u64);
                    // Bytes before `stored_to` are held already; a gap after it (the agent
                    // skipped to a file's tail) is the agent's to explain, and it does.
                    let already = stored_to.saturating_sub(offset).min(data.len() as u64);
                    data = &data[already as usize..];
                    if end > stored_to {
                        sqlx::query(
                            "INSERT INTO log_offsets (attempt_id, task, stream, stored_to) \
                             VALUES ($1, $2, $3, $4) ON CONFLICT (attempt_id, task, stream) \
                             DO UPDATE SET stored_to = excluded.stored_to",
                        )
                        .bind(attempt)
                        .bind(task)
                        .bind(stream)
                        .bind(end as i64)
                        .execute(&mut *tx)
                        .await?;
                    }
                    if data.is_empty() {
                        tx.commit().await?;
                        return Ok(());
                    }
                }
                let (data, escaped) = encode_log(data);
                sqlx::query(
                    "INSERT INTO logs (attempt_id, task, data, at, escaped) VALUES ($1, $2, $3, $4, $5)",
                )
                    .bind(attempt)
                    .bind(task)
                    .bind(data.as_ref())
                    .bind(now)
                    .bind(escaped)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(())
            }

            async fn read_logs(&self, job: i64, after: i64, limit: i64) -> Result<Vec<LogRecord>> {
                let rows: Vec<(i64, i64, i64, String, i64, i64)> = sqlx::query_as(
                    "SELECT l.id, a.fence, l.task, l.data, l.at, l.escaped FROM logs l \
                     JOIN attempts a ON a.id = l.attempt_id \
                     WHERE a.job_id = $1 AND l.id > $2 ORDER BY l.id LIMIT $3",
                )
                .bind(job)
                .bind(after)
                .bind(limit.clamp(1, 10_000))
                .fetch_all(&self.read)
                .await?;
                Ok(rows
                    .into_iter()
                    .map(|(id, fence, task, data, at, escaped)| LogRecord {
                        id,
                        fence,
                        task,
                        data: decode_log(data, escaped),
                        at,
                    })
                    .collect())
            }
        }
    };
}

pub(crate) use attempt_store;
