//! Jobs: submission (one at a time or a group commit of many, with idempotency keys), reading
//! and listing, cancellation, arrays made into jobs a window at a time, holds and rejections, and a
//! job's events. Owns the `jobs` table (an array's tasks are jobs too, made as the window allows);
//! a submit also writes its controller event, audit entry and idempotency key in the same
//! transaction.

use crate::Result;
use crate::records::*;
use async_trait::async_trait;

/// Submitting, reading, cancelling and holding jobs, and job arrays. Part of [`crate::Store`].
#[async_trait]
pub trait JobStore: Send + Sync {
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
    async fn job_events(&self, job: i64) -> Result<Vec<EventRecord>>;
    /// Sets (or with `None` clears) the hold reason of these jobs where they are still queued.
    async fn hold_jobs(&self, jobs: &[i64], reason: Option<&str>, now: i64) -> Result<()>;
}

/// Expands [`JobStore`] for the backend `$store` on database `$db`, and the helpers of this
/// area, into the backend's module (see `store_impl!`), where the other areas' SQL shares
/// them.
macro_rules! job_store {
    ($store:ty, $db:ty) => {
        fn job_row(r: &DbRow) -> Result<JobRecord> {
            let spec: String = r.try_get("spec")?;
            let command: String = r.try_get("command")?;
            let state: String = r.try_get("state")?;
            Ok(JobRecord {
                id: r.try_get("id")?,
                project_id: r.try_get("project_id")?,
                user_id: r.try_get("user_id")?,
                name: r.try_get("name")?,
                spec: serde_json::from_str::<JobSpec>(&spec)?,
                command: serde_json::from_str(&command)?,
                container_image: r.try_get("container_image")?,
                interactive: r.try_get("interactive")?,
                batch: match r.try_get::<Option<String>, _>("batch")? {
                    Some(b) => Some(serde_json::from_str(&b)?),
                    None => None,
                },
                state: parse_enum(&state, JobState::parse, "job state")?,
                submitted_at: r.try_get("submitted_at")?,
                updated_at: r.try_get("updated_at")?,
                attempts: r.try_get("attempts")?,
                exit_code: r.try_get("exit_code")?,
                reason: r.try_get("reason")?,
                array: r.try_get("array_spec")?,
                array_next: r.try_get("array_next")?,
                array_job_id: r.try_get("array_job_id")?,
                array_task: r.try_get("array_task")?,
            })
        }

        async fn job_in(tx: &mut Tx<'_>, id: i64) -> Result<JobRecord> {
            let row = sqlx::query("SELECT * FROM jobs WHERE id = $1")
                .bind(id)
                .fetch_optional(&mut **tx)
                .await?
                .ok_or_else(|| StoreError::not_found("job", id))?;
            job_row(&row)
        }

        async fn set_job_state(
            tx: &mut Tx<'_>,
            job: i64,
            state: JobState,
            exit_code: Option<i64>,
            reason: Option<&str>,
            now: i64,
        ) -> Result<()> {
            sqlx::query(
                "UPDATE jobs SET state = $1, exit_code = COALESCE($2, exit_code), \
                 reason = COALESCE($3, reason), updated_at = $4 WHERE id = $5",
            )
            .bind(state.as_str())
            .bind(exit_code)
            .bind(reason)
            .bind(now)
            .bind(job)
            .execute(&mut **tx)
            .await?;
            Ok(())
        }

        /// Cancels one job in the caller's transaction: a queued job at once, a running one by
        /// asking its agents to stop it. A job that has ended is a conflict.
        async fn cancel_in(tx: &mut Tx<'_>, job: &JobRecord, now: i64) -> Result<()> {
            let id = job.id;
            match job.state {
                JobState::Queued => {
                    set_job_state(tx, id, JobState::Cancelled, None, Some("cancelled"), now).await?;
                    event(tx, EventKind::Dequeued, Some(id), None, None, "cancel", now).await
                }
                JobState::Running | JobState::Stopping => {
                    let a = current_attempt(tx, job)
                        .await?
                        .ok_or_else(|| StoreError::Corrupt(format!("job {id} has no attempt")))?;
                    sqlx::query(
                        "UPDATE attempts SET state = 'stopping', stop_reason = 'cancel', \
                         kill_at = COALESCE(kill_at, $1) WHERE id = $2",
                    )
                    .bind(now + job.spec.grace.millis())
                    .bind(a.id)
                    .execute(&mut **tx)
                    .await?;
                    set_job_state(tx, id, JobState::Stopping, None, Some("cancel"), now).await?;
                    event(tx, EventKind::StopRequested, Some(id), Some(a.id), None, "cancel", now)
                        .await
                }
                done => Err(StoreError::conflict(
                    "state",
                    format!("job {id} has already ended ({done})"),
                )),
            }
        }

        /// Makes tasks `tasks` of array `parent` (its spec without dependencies: the array waited
        /// for them) into queued jobs, with one multi-row statement and their `Submitted`
        /// events. Not audited one by one: the array's submit was.
        async fn insert_tasks(
            tx: &mut Tx<'_>,
            parent: &JobRecord,
            tasks: &[u32],
            now: i64,
        ) -> Result<Vec<JobRecord>> {
            if tasks.is_empty() {
                return Ok(Vec::new());
            }
            let spec = serde_json::to_string(&parent.spec)?;
            let command = serde_json::to_string(&parent.command)?;
            let batch = parent.batch.as_ref().map(serde_json::to_string).transpose()?;
            let mut qb = sqlx::QueryBuilder::<$db>::new(
                "INSERT INTO jobs (project_id, user_id, name, spec, command, container_image, \
                 state, submitted_at, updated_at, attempts, batch, array_job_id, array_task) ",
            );
            qb.push_values(tasks, |mut b, task| {
                b.push_bind(parent.project_id)
                    .push_bind(parent.user_id)
                    .push_bind(parent.name.clone())
                    .push_bind(spec.clone())
                    .push_bind(command.clone())
                    .push_bind(parent.container_image.clone())
                    .push_bind("queued")
                    .push_bind(now)
                    .push_bind(now)
                    .push_bind(0i64)
                    .push_bind(batch.clone())
                    .push_bind(parent.id)
                    .push_bind(i64::from(*task));
            });
            qb.push(" RETURNING *");
            let rows = qb.build().persistent(false).fetch_all(&mut **tx).await?;
            let mut recs = rows.iter().map(job_row).collect::<Result<Vec<_>>>()?;
            recs.sort_by_key(|r| r.id);
            let events = crate::backend::submitted_events(&recs, now);
            insert_log(tx, &events, &[]).await?;
            Ok(recs)
        }

        /// Inserts one queued job with its event and audit entry, in the caller's transaction.
        async fn insert_job(
            tx: &mut Tx<'_>,
            tip: &mut Option<String>,
            actor: &Actor,
            job: NewJob,
            now: i64,
        ) -> Result<JobRecord> {
            let spec = serde_json::to_string(&job.spec)?;
            let command = serde_json::to_string(&job.command)?;
            let project = job.spec.project.get() as i64;
            let row = sqlx::query(
                "INSERT INTO jobs (project_id, user_id, name, spec, command, container_image, \
                 state, submitted_at, updated_at, attempts, batch, array_spec, interactive) \
                 VALUES ($1, $2, $3, $4, $5, $6, 'queued', $7, $7, 0, $8, $9, $10) RETURNING *",
            )
            .bind(project)
            .bind(job.user_id)
            .bind(&job.spec.name)
            .bind(&spec)
            .bind(&command)
            .bind(&job.container_image)
            .bind(now)
            .bind(job.batch.as_ref().map(serde_json::to_string).transpose()?)
            .bind(job.array.as_ref().map(|a| a.to_string()))
            .bind(job.interactive)
            .fetch_one(&mut **tx)
            .await
            .map_err(|e| unique(e, "project", "job".into()))?;
            let rec = job_row(&row)?;
            if let Some(k) = &job.idempotency {
                keep_job_key(tx, job.user_id, rec.id, k, now).await?;
            }
            event(tx, EventKind::Submitted, Some(rec.id), None, None, "", now).await?;
            audit_after(tx, tip, actor, "job.submit", &format!("job/{}", rec.id), &spec, now)
                .await?;
            Ok(rec)
        }

        /// Keeps a submit's idempotency key for the job just inserted, in the submit's
        /// transaction. A key with a live answer already is a conflict: the whole submit is
        /// undone, so one key never makes two jobs.
        async fn keep_job_key(tx: &mut Tx<'_>, user: i64, job: i64, k: &NewIdempotency, now: i64) -> Result<()> {
            let kept: Option<i64> = sqlx::query_scalar(
                "INSERT INTO idempotency (user_id, idem_key, route, body_hash, status, answer, \
                 resource, created_at) VALUES ($1, $2, $3, $4, 201, '', $5, $6) \
                 ON CONFLICT (user_id, idem_key) DO UPDATE SET route = excluded.route, \
                 body_hash = excluded.body_hash, status = excluded.status, \
                 answer = excluded.answer, resource = excluded.resource, \
                 created_at = excluded.created_at \
                 WHERE idempotency.created_at < $7 RETURNING user_id",
            )
            .bind(user)
            .bind(&k.key)
            .bind(&k.route)
            .bind(&k.body_hash)
            .bind(job)
            .bind(now)
            .bind(k.since)
            .fetch_optional(&mut **tx)
            .await?;
            if kept.is_none() {
                return Err(key_taken());
            }
            Ok(())
        }

        /// A submit whose idempotency key has a live answer already.
        fn key_taken() -> StoreError {
            StoreError::conflict(
                "Idempotency-Key",
                "another request with this key was answered or is being answered; \
                 send it again to get that answer"
                    .to_string(),
            )
        }

        /// Inserts many queued jobs with their events and audit entries in one batch: the jobs
        /// and their idempotency keys first, before the writers' lock (new rows need no place
        /// in the writers' sequence), then, holding it, what does (events' sequence numbers,
        /// the audit chain's tip), so the lock is held for two statements and the commit
        /// whatever the batch's size. A key with a live answer fails the whole batch.
        async fn insert_jobs(
            tx: &mut Tx<'_>,
            jobs: Vec<(Actor, NewJob)>,
            now: i64,
        ) -> Result<Vec<JobRecord>> {
            let mut prepared = Vec::with_capacity(jobs.len());
            let mut rows = Vec::with_capacity(jobs.len());
            for (actor, job) in jobs {
                let spec = serde_json::to_string(&job.spec)?;
                rows.push(crate::backend::JobRow {
                    project: job.spec.project.get() as i64,
                    user: job.user_id,
                    name: job.spec.name.clone(),
                    spec: spec.clone(),
                    command: serde_json::to_string(&job.command)?,
                    container_image: job.container_image.clone(),
                    batch: job.batch.as_ref().map(serde_json::to_string).transpose()?,
                    array_spec: job.array.as_ref().map(|a| a.to_string()),
                    interactive: job.interactive,
                    key: job.idempotency.clone(),
                });
                prepared.push((actor, job, spec));
            }
            // The jobs and their idempotency keys (which need no place in the writers'
            // sequence either: a key another batch is keeping waits for that batch's commit on
            // the key's row), before the lock.
            let inserted = insert_job_rows(tx, &rows, now).await?;
            let mut recs = inserted.iter().map(job_row).collect::<Result<Vec<_>>>()?;
            // Ids are assigned in the rows' order; RETURNING's order is not promised, so sort and
            // check that each record is the job asked for at its position.
            recs.sort_by_key(|r| r.id);
            let matches = recs.len() == prepared.len()
                && recs
                    .iter()
                    .zip(&prepared)
                    .all(|(r, (_, j, _))| r.user_id == j.user_id && r.spec == j.spec);
            if !matches {
                return Err(StoreError::Corrupt("batched insert returned other rows".into()));
            }
            let mut prev = lock_writers(tx).await?;
            let events = crate::backend::submitted_events(&recs, now);
            let mut entries = Vec::with_capacity(recs.len());
            for (r, (actor, _, spec)) in recs.iter().zip(prepared) {
                let target = format!("job/{}", r.id);
                let hash = audit_hash(&prev, now, &actor.name, "job.submit", &target, &spec);
                entries.push(crate::backend::AuditRow {
                    at: now,
                    actor: actor.name,
                    action: "job.submit".into(),
                    target,
                    detail: spec,
                    prev_hash: std::mem::replace(&mut prev, hash.clone()),
                    hash,
                });
            }
            insert_log(tx, &events, &entries).await?;
            Ok(recs)
        }

        #[async_trait]
        impl JobStore for $store {
            async fn submit_job(&self, actor: &Actor, job: NewJob, now: i64) -> Result<JobRecord> {
                let mut tx = self.begin_write().await?;
                let rec = insert_job(&mut tx, &mut None, actor, job, now).await?;
                tx.commit().await?;
                Ok(rec)
            }

            async fn submit_jobs(
                &self,
                jobs: Vec<(Actor, NewJob)>,
                now: i64,
            ) -> Result<Vec<JobRecord>> {
                if jobs.is_empty() {
                    return Ok(Vec::new());
                }
                // Not holding the writers' lock yet: `insert_jobs` takes it after the jobs.
                let mut tx = self.begin_unlocked().await?;
                let out = insert_jobs(&mut tx, jobs, now).await?;
                tx.commit().await?;
                Ok(out)
            }

            async fn get_job(&self, id: i64) -> Result<JobRecord> {
                let row = sqlx::query("SELECT * FROM jobs WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&self.read)
                    .await?
                    .ok_or_else(|| StoreError::not_found("job", id))?;
                job_row(&row)
            }

            async fn get_jobs(&self, ids: &[i64]) -> Result<Vec<JobRecord>> {
                let mut out = Vec::with_capacity(ids.len());
                for chunk in ids.chunks(500) {
                    let rows = sqlx::query(&format!(
                        "SELECT * FROM jobs WHERE {} ORDER BY id",
                        in_ids("id", 1)
                    ))
                    .bind(id_list(chunk))
                    .fetch_all(&self.read)
                    .await?;
                    for r in &rows {
                        out.push(job_row(r)?);
                    }
                }
                Ok(out)
            }

            async fn list_jobs(&self, f: &JobFilter) -> Result<Vec<JobRecord>> {
                let mut sql = String::from("SELECT * FROM jobs WHERE 1 = 1");
                if let Some(projects) = &f.projects {
                    if projects.is_empty() {
                        return Ok(Vec::new());
                    }
                    // Ids are integers we hold, never text from a request.
                    let list: Vec<String> = projects.iter().map(|p| p.to_string()).collect();
                    sql.push_str(&format!(" AND project_id IN ({})", list.join(",")));
                }
                sql.push_str(" AND ($1 IS NULL OR state = $1) AND ($2 IS NULL OR id < $2)");
                sql.push_str(" ORDER BY id DESC LIMIT $3");
                let rows = sqlx::query(&sql)
                    .bind(f.state.map(|s| s.as_str()))
                    .bind(f.before)
                    .bind(f.limit.clamp(1, 10_000))
                    .fetch_all(&self.read)
                    .await?;
                rows.iter().map(job_row).collect()
            }

            async fn cancel_job(&self, actor: &Actor, id: i64, now: i64) -> Result<JobRecord> {
                let mut tx = self.begin_write().await?;
                let job = job_in(&mut tx, id).await?;
                cancel_in(&mut tx, &job, now).await?;
                if job.array.is_some() {
                    // Cancelling an array cancels every task that is a job and has not ended;
                    // the tasks not yet made into jobs never will be (the array has ended).
                    let rows = sqlx::query(
                        "SELECT * FROM jobs WHERE array_job_id = $1 \
                         AND state IN ('queued', 'running', 'stopping') ORDER BY id",
                    )
                    .bind(id)
                    .fetch_all(&mut *tx)
                    .await?;
                    for r in &rows {
                        cancel_in(&mut tx, &job_row(r)?, now).await?;
                    }
                }
                audit(&mut tx, actor, "job.cancel", &format!("job/{id}"), "{}", now).await?;
                let rec = job_in(&mut tx, id).await?;
                tx.commit().await?;
                Ok(rec)
            }

            async fn array_task(&self, array: i64, task: i64) -> Result<Option<JobRecord>> {
                let row = sqlx::query(
                    "SELECT * FROM jobs WHERE array_job_id = $1 AND array_task = $2",
                )
                .bind(array)
                .bind(task)
                .fetch_optional(&self.read)
                .await?;
                row.as_ref().map(job_row).transpose()
            }

            async fn cancel_array_task(
                &self,
                actor: &Actor,
                array: i64,
                task: i64,
                now: i64,
            ) -> Result<JobRecord> {
                let mut tx = self.begin_write().await?;
                let parent = job_in(&mut tx, array).await?;
                let spec = parent.array_spec().ok_or_else(|| {
                    StoreError::invalid("job", format!("job {array} is not an array"))
                })?;
                let existing = sqlx::query(
                    "SELECT * FROM jobs WHERE array_job_id = $1 AND array_task = $2",
                )
                .bind(array)
                .bind(task)
                .fetch_optional(&mut *tx)
                .await?;
                let id = match existing {
                    Some(r) => {
                        let t = job_row(&r)?;
                        cancel_in(&mut tx, &t, now).await?;
                        t.id
                    }
                    None => {
                        let known = u32::try_from(task)
                            .is_ok_and(|t| spec.tasks().binary_search(&t).is_ok());
                        if !known {
                            return Err(StoreError::not_found("array task", task));
                        }
                        if parent.state != JobState::Queued {
                            return Err(StoreError::conflict(
                                "state",
                                format!("array {array} has already ended ({})", parent.state),
                            ));
                        }
                        // Not a job yet: it is stored as a cancelled task, which the controller
                        // then passes over, so it never runs.
                        let mut t = parent.clone();
                        t.spec.dependencies.clear();
                        let rows = insert_tasks(&mut tx, &t, &[task as u32], now).await?;
                        let id = rows.first().map(|r| r.id).ok_or_else(|| {
                            StoreError::Corrupt("task insert returned no row".into())
                        })?;
                        cancel_in(&mut tx, &rows[0], now).await?;
                        id
                    }
                };
                audit(&mut tx, actor, "job.cancel", &format!("job/{array}_{task}"), "{}", now)
                    .await?;
                let rec = job_in(&mut tx, id).await?;
                tx.commit().await?;
                Ok(rec)
            }

            async fn materialise_array(
                &self,
                array: i64,
                window: i64,
                now: i64,
            ) -> Result<ArrayProgress> {
                let mut tx = self.begin_write().await?;
                let parent = job_in(&mut tx, array).await?;
                let Some(spec) = parent.array_spec() else {
                    return Ok(ArrayProgress { done: true, ..ArrayProgress::default() });
                };
                if parent.state != JobState::Queued {
                    return Ok(ArrayProgress { done: true, ..ArrayProgress::default() });
                }
                let counts: Vec<(String, i64)> = sqlx::query_as(
                    "SELECT state, COUNT(*) FROM jobs WHERE array_job_id = $1 GROUP BY state \
                     ORDER BY state",
                )
                .bind(array)
                .fetch_all(&mut *tx)
                .await?;
                let count = |names: &[&str]| -> i64 {
                    counts
                        .iter()
                        .filter(|(s, _)| names.contains(&s.as_str()))
                        .map(|(_, n)| n)
                        .sum()
                };
                let queued = count(&["queued"]);
                let mut live = count(&["queued", "running", "stopping"]);
                // `%N` bounds the tasks that are jobs and have not ended; `window` bounds those
                // waiting in the queue, so a large array never floods the engine.
                let mut room = window.saturating_sub(queued).max(0);
                if let Some(n) = spec.max_running() {
                    room = room.min((i64::from(n) - live).max(0));
                }
                let total = spec.len() as i64;
                let mut next = parent.array_next.clamp(0, total);
                let mut created = Vec::new();
                if room > 0 && next < total {
                    // Tasks cancelled before they were made into jobs are rows already: they
                    // are passed over and take no place.
                    let taken: std::collections::BTreeSet<i64> = sqlx::query_scalar(
                        "SELECT array_task FROM jobs WHERE array_job_id = $1 AND array_task >= $2",
                    )
                    .bind(array)
                    .bind(i64::from(spec.tasks()[next as usize]))
                    .fetch_all(&mut *tx)
                    .await?
                    .into_iter()
                    .collect();
                    let mut fresh: Vec<u32> = Vec::new();
                    while next < total && (fresh.len() as i64) < room {
                        let t = spec.tasks()[next as usize];
                        if !taken.contains(&i64::from(t)) {
                            fresh.push(t);
                        }
                        next += 1;
                    }
                    let mut t = parent.clone();
                    t.spec.dependencies.clear();
                    for chunk in fresh.chunks(500) {
                        created.extend(insert_tasks(&mut tx, &t, chunk, now).await?);
                    }
                    live += created.len() as i64;
                    sqlx::query("UPDATE jobs SET array_next = $1, updated_at = $2 WHERE id = $3")
                        .bind(next)
                        .bind(now)
                        .bind(array)
                        .execute(&mut *tx)
                        .await?;
                }
                let done = next == total && live == 0;
                if done {
                    // An array succeeds when every task did; any failure fails it, and one
                    // cancelled task (with none failed) leaves it cancelled, so `afterok` on
                    // the array means every task succeeded.
                    let bad = count(&["failed", "timed_out"]);
                    let cancelled = count(&["cancelled"]);
                    let state = if bad > 0 {
                        JobState::Failed
                    } else if cancelled > 0 {
                        JobState::Cancelled
                    } else {
                        JobState::Succeeded
                    };
                    let reason = format!(
                        "{} tasks: {} succeeded, {bad} failed, {cancelled} cancelled",
                        total,
                        count(&["succeeded"])
                    );
                    set_job_state(&mut tx, array, state, None, Some(&reason), now).await?;
                    event(&mut tx, EventKind::Finished, Some(array), None, None, state.as_str(), now)
                        .await?;
                }
                tx.commit().await?;
                Ok(ArrayProgress {
                    created,
                    live,
                    remaining: total - next,
                    done,
                })
            }

            async fn reject_job(&self, id: i64, reason: &str, now: i64) -> Result<()> {
                let mut tx = self.begin_write().await?;
                let done = sqlx::query(
                    "UPDATE jobs SET state = 'failed', reason = $1, updated_at = $2 \
                     WHERE id = $3 AND state = 'queued'",
                )
                .bind(reason)
                .bind(now)
                .bind(id)
                .execute(&mut *tx)
                .await?;
                if done.rows_affected() == 0 {
                    return Ok(());
                }
                event(&mut tx, EventKind::Dequeued, Some(id), None, None, reason, now).await?;
                audit(
                    &mut tx,
                    &Actor::system("controller"),
                    "job.reject",
                    &format!("job/{id}"),
                    &serde_json::to_string(reason)?,
                    now,
                )
                .await?;
                tx.commit().await?;
                Ok(())
            }

            async fn queue_lengths(&self) -> Result<Vec<(i64, i64)>> {
                Ok(sqlx::query_as(
                    "SELECT project_id, COUNT(*) FROM jobs WHERE state = 'queued' \
                     GROUP BY project_id ORDER BY project_id",
                )
                .fetch_all(&self.read)
                .await?)
            }

            async fn job_events(&self, job: i64) -> Result<Vec<EventRecord>> {
                let rows = sqlx::query("SELECT * FROM events WHERE job_id = $1 ORDER BY seq")
                    .bind(job)
                    .fetch_all(&self.read)
                    .await?;
                rows.iter().map(event_row).collect()
            }

            async fn hold_jobs(&self, jobs: &[i64], reason: Option<&str>, now: i64) -> Result<()> {
                if jobs.is_empty() {
                    return Ok(());
                }
                let mut tx = self.begin_write().await?;
                for chunk in jobs.chunks(500) {
                    sqlx::query(&format!(
                        "UPDATE jobs SET reason = $1, updated_at = $2 \
                         WHERE state = 'queued' AND {}",
                        in_ids("id", 3)
                    ))
                    .bind(reason)
                    .bind(now)
                    .bind(id_list(chunk))
                    .execute(&mut *tx)
                    .await?;
                }
                tx.commit().await?;
                Ok(())
            }
        }
    };
}

pub(crate) use job_store;
