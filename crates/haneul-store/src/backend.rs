//! The body of SQL shared by both backends. SQLite and PostgreSQL both accept `$n` parameters,
//! `RETURNING` and `ON CONFLICT`, so one macro expands the whole [`crate::Store`] implementation
//! for each; the backends only differ in how they connect and how a write transaction begins
//! (`begin_write`: one writer connection on SQLite, an advisory lock on PostgreSQL) — which is
//! also what keeps event sequence numbers and the audit chain in commit order.

/// Expands the `Store` implementation for `$store`, whose `begin_write`/`begin_read` give
/// transactions on database `$db`.
macro_rules! store_impl {
    ($store:ty, $db:ty) => {
        use crate::records::*;
        use crate::{Result, Store, StoreError};
        use async_trait::async_trait;
        use haneul_model::{GpuModel, JobSpec, Lending, Quota};
        use std::collections::BTreeMap;
        use haneul_sched::Placement;
        use sqlx::Row;

        type Tx<'a> = sqlx::Transaction<'a, $db>;
        type DbRow = <$db as sqlx::Database>::Row;

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

        fn lending_str(l: Lending) -> &'static str {
            match l {
                Lending::Open => "open",
                Lending::OwnerOnly => "owner-only",
            }
        }

        fn parse_lending(s: &str) -> Result<Lending> {
            match s {
                "open" => Ok(Lending::Open),
                "owner-only" => Ok(Lending::OwnerOnly),
                o => Err(StoreError::Corrupt(format!("unknown lending `{o}`"))),
            }
        }

        fn org_row(r: &DbRow) -> Result<OrgRecord> {
            Ok(OrgRecord {
                id: r.try_get("id")?,
                name: r.try_get("name")?,
                class: r.try_get("class")?,
                country: r.try_get("country")?,
                parent: r.try_get("parent")?,
                parent_country: r.try_get("parent_country")?,
                verification: parse_enum(
                    &r.try_get::<String, _>("verification")?,
                    Verification::parse,
                    "verification",
                )?,
                created_at: r.try_get("created_at")?,
            })
        }

        fn project_row(r: &DbRow) -> Result<ProjectRecord> {
            let quotas: String = r.try_get("quotas")?;
            Ok(ProjectRecord {
                id: r.try_get("id")?,
                org_id: r.try_get("org_id")?,
                name: r.try_get("name")?,
                weight: r.try_get("weight")?,
                quotas: serde_json::from_str(&quotas)?,
                created_at: r.try_get("created_at")?,
                gid: r.try_get("gid")?,
            })
        }

        fn user_row(r: &DbRow, projects: Vec<i64>) -> Result<UserRecord> {
            let role: String = r.try_get("role")?;
            Ok(UserRecord {
                id: r.try_get("id")?,
                name: r.try_get("name")?,
                role: parse_enum(&role, Role::parse, "role")?,
                org_id: r.try_get("org_id")?,
                projects,
                created_at: r.try_get("created_at")?,
                uid: r.try_get("uid")?,
                gid: r.try_get("gid")?,
            })
        }

        fn oidc_link_row(r: &DbRow) -> Result<OidcLink> {
            Ok(OidcLink {
                issuer: r.try_get("issuer")?,
                subject: r.try_get("subject")?,
                user_id: r.try_get("user_id")?,
                email: r.try_get("email")?,
                created_at: r.try_get("created_at")?,
                approved_at: r.try_get("approved_at")?,
                approved_by: r.try_get("approved_by")?,
            })
        }

        /// The next id of `range` for `column` of `table`: one above the highest allocated in
        /// the range (ids freed below it are not reused, so a deleted account's files are never
        /// handed to a newcomer).
        async fn next_id(
            tx: &mut Tx<'_>,
            table: &'static str,
            column: &'static str,
            range: IdRange,
        ) -> Result<i64> {
            let max: Option<i64> = sqlx::query_scalar(&format!(
                "SELECT MAX({column}) FROM {table} WHERE {column} BETWEEN $1 AND $2"
            ))
            .bind(range.first)
            .bind(range.last)
            .fetch_one(&mut **tx)
            .await?;
            let next = max.map_or(range.first, |m| m + 1);
            if next > range.last {
                return Err(StoreError::invalid(
                    column,
                    format!(
                        "the range {}-{} is used up; widen it in the server's configuration",
                        range.first, range.last
                    ),
                ));
            }
            Ok(next)
        }

        fn token_row(r: &DbRow) -> Result<TokenRecord> {
            Ok(TokenRecord {
                id: r.try_get("id")?,
                user_id: r.try_get("user_id")?,
                name: r.try_get("name")?,
                created_at: r.try_get("created_at")?,
                revoked_at: r.try_get("revoked_at")?,
                expires_at: r.try_get("expires_at")?,
            })
        }

        fn pool_row(r: &DbRow) -> Result<PoolRecord> {
            let lending: String = r.try_get("lending")?;
            Ok(PoolRecord {
                id: r.try_get("id")?,
                name: r.try_get("name")?,
                owner: r.try_get("owner")?,
                lending: parse_lending(&lending)?,
            })
        }

        const NODE_COLS: &str = "n.id, n.name, b.pool_id, n.block_id, b.name AS block, \
            n.gpu_model, n.gpus, n.gpu_memory_mib, n.nvlink_domain, n.cpu_milli, n.memory_mib, \
            n.state, n.down_reason, n.agent_user, n.last_heartbeat, n.limits, n.address, n.health, \
            n.container_runtime FROM nodes n JOIN blocks b ON b.id = n.block_id";

        fn node_row(r: &DbRow) -> Result<NodeRecord> {
            let model: String = r.try_get("gpu_model")?;
            let state: String = r.try_get("state")?;
            Ok(NodeRecord {
                id: r.try_get("id")?,
                name: r.try_get("name")?,
                pool_id: r.try_get("pool_id")?,
                block_id: r.try_get("block_id")?,
                block: r.try_get("block")?,
                gpu_model: GpuModel::new(&model).map_err(|e| StoreError::Corrupt(e.to_string()))?,
                gpus: r.try_get("gpus")?,
                gpu_memory_mib: r.try_get("gpu_memory_mib")?,
                nvlink_domain: r.try_get("nvlink_domain")?,
                cpu_milli: r.try_get("cpu_milli")?,
                memory_mib: r.try_get("memory_mib")?,
                state: parse_enum(&state, NodeState::parse, "node state")?,
                down_reason: r.try_get("down_reason")?,
                agent_user: r.try_get("agent_user")?,
                last_heartbeat: r.try_get("last_heartbeat")?,
                limits: r.try_get("limits")?,
                address: r.try_get("address")?,
                health: r.try_get("health")?,
                container_runtime: r.try_get("container_runtime")?,
            })
        }

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

        fn attempt_row(r: &DbRow) -> Result<AttemptRecord> {
            let placement: String = r.try_get("placement")?;
            let model: Option<String> = r.try_get("gpu_model")?;
            let state: String = r.try_get("state")?;
            let stop: Option<String> = r.try_get("stop_reason")?;
            Ok(AttemptRecord {
                id: r.try_get("id")?,
                job_id: r.try_get("job_id")?,
                fence: r.try_get("fence")?,
                epoch: r.try_get("epoch")?,
                placement: crate::gang_cache::placement(&placement)?,
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

        fn event_row(r: &DbRow) -> Result<EventRecord> {
            let kind: String = r.try_get("kind")?;
            Ok(EventRecord {
                seq: r.try_get("seq")?,
                at: r.try_get("at")?,
                kind: parse_enum(&kind, EventKind::parse, "event kind")?,
                job_id: r.try_get("job_id")?,
                attempt_id: r.try_get("attempt_id")?,
                node_id: r.try_get("node_id")?,
                detail: r.try_get("detail")?,
            })
        }

        fn award_row(r: &DbRow) -> Result<AwardRecord> {
            let model: String = r.try_get("gpu_model")?;
            Ok(AwardRecord {
                id: r.try_get("id")?,
                project_id: r.try_get("project_id")?,
                gpu_model: GpuModel::new(&model).map_err(|e| StoreError::Corrupt(e.to_string()))?,
                gpu_hours: r.try_get("gpu_hours")?,
                valid_from: r.try_get("valid_from")?,
                valid_until: r.try_get("valid_until")?,
                gpu_quota: r.try_get("gpu_quota")?,
                application_id: r.try_get("application_id")?,
                created_at: r.try_get("created_at")?,
            })
        }

        fn change_row(r: &DbRow) -> Result<AwardChange> {
            Ok(AwardChange {
                id: r.try_get("id")?,
                award_id: r.try_get("award_id")?,
                gpu_hours: r.try_get("gpu_hours")?,
                reason: r.try_get("reason")?,
                actor: r.try_get("actor")?,
                at: r.try_get("at")?,
            })
        }

        fn ledger_row(r: &DbRow) -> Result<LedgerEntry> {
            let kind: String = r.try_get("kind")?;
            Ok(LedgerEntry {
                id: r.try_get("id")?,
                at: r.try_get("at")?,
                kind: parse_enum(&kind, LedgerKind::parse, "ledger kind")?,
                attempt_id: r.try_get("attempt_id")?,
                project_id: r.try_get("project_id")?,
                org_id: r.try_get("org_id")?,
                award_id: r.try_get("award_id")?,
                gpu_model: r.try_get("gpu_model")?,
                gpu_ms: r.try_get("gpu_ms")?,
                weight_milli: r.try_get("weight_milli")?,
                charged_ms: r.try_get("charged_ms")?,
            })
        }

        fn call_row(r: &DbRow) -> Result<CallRecord> {
            let model: String = r.try_get("gpu_model")?;
            let state: String = r.try_get("state")?;
            Ok(CallRecord {
                id: r.try_get("id")?,
                programme: r.try_get("programme")?,
                name: r.try_get("name")?,
                gpu_model: GpuModel::new(&model).map_err(|e| StoreError::Corrupt(e.to_string()))?,
                capacity_gpus: r.try_get("capacity_gpus")?,
                tracks: r.try_get("tracks")?,
                state: parse_enum(&state, CallState::parse, "call state")?,
                created_at: r.try_get("created_at")?,
            })
        }

        async fn application_in(tx: &mut Tx<'_>, id: i64) -> Result<ApplicationRecord> {
            let r = sqlx::query("SELECT * FROM applications WHERE id = $1")
                .bind(id)
                .fetch_optional(&mut **tx)
                .await?
                .ok_or_else(|| StoreError::not_found("application", id))?;
            let state: String = r.try_get("state")?;
            let scores = sqlx::query_as::<_, (String, i64, String)>(
                "SELECT reviewer, score, comment FROM scores WHERE application_id = $1 \
                 ORDER BY reviewer",
            )
            .bind(id)
            .fetch_all(&mut **tx)
            .await?
            .into_iter()
            .map(|(reviewer, score, comment)| ScoreRecord {
                reviewer,
                score,
                comment,
            })
            .collect();
            Ok(ApplicationRecord {
                id: r.try_get("id")?,
                call_id: r.try_get("call_id")?,
                project_id: r.try_get("project_id")?,
                track: r.try_get("track")?,
                gpus: r.try_get("gpus")?,
                days: r.try_get("days")?,
                region: r.try_get("region")?,
                plan: r.try_get("plan")?,
                state: parse_enum(&state, ApplicationState::parse, "application state")?,
                created_at: r.try_get("created_at")?,
                scores,
            })
        }

        async fn call_in(tx: &mut Tx<'_>, id: i64) -> Result<CallRecord> {
            let r = sqlx::query("SELECT * FROM calls WHERE id = $1")
                .bind(id)
                .fetch_optional(&mut **tx)
                .await?
                .ok_or_else(|| StoreError::not_found("call", id))?;
            call_row(&r)
        }

        /// Inserts an award with its audit entry, and tells the controller that the project's
        /// quota and standing changed.
        async fn insert_award(
            tx: &mut Tx<'_>,
            actor: &Actor,
            a: &NewAward,
            now: i64,
        ) -> Result<AwardRecord> {
            if a.valid_until <= a.valid_from {
                return Err(StoreError::invalid("valid_until", "must be after valid_from"));
            }
            if a.gpu_hours <= 0 {
                return Err(StoreError::invalid("gpu_hours", "must be positive"));
            }
            if a.gpu_quota < 0 {
                return Err(StoreError::invalid("gpu_quota", "must be zero or more"));
            }
            let row = sqlx::query(
                "INSERT INTO awards (project_id, gpu_model, gpu_hours, valid_from, valid_until, \
                 created_at, gpu_quota, application_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
                 RETURNING *",
            )
            .bind(a.project_id)
            .bind(a.gpu_model.as_str())
            .bind(a.gpu_hours)
            .bind(a.valid_from)
            .bind(a.valid_until)
            .bind(now)
            .bind(a.gpu_quota)
            .bind(a.application_id)
            .fetch_one(&mut **tx)
            .await
            .map_err(|e| unique(e, "project", "award".into()))?;
            let rec = award_row(&row)?;
            let detail = serde_json::json!({
                "project": a.project_id,
                "gpu_model": a.gpu_model,
                "gpu_hours": a.gpu_hours,
                "gpu_quota": a.gpu_quota,
                "valid_from": a.valid_from,
                "valid_until": a.valid_until,
                "application": a.application_id,
            })
            .to_string();
            audit(tx, actor, "award.create", &format!("award/{}", rec.id), &detail, now).await?;
            event(tx, EventKind::ProjectChanged, None, None, None, &a.project_id.to_string(), now)
                .await?;
            Ok(rec)
        }

        /// Charges an ended attempt's GPU time to its project's award, in the transaction that
        /// ends it: the (attempt, kind) key makes the charge, its refund and a partner's credit
        /// each happen at most once, and the shared transaction makes them happen at least once.
        async fn charge(
            tx: &mut Tx<'_>,
            a: &AttemptRecord,
            state: AttemptState,
            gpu_ms: i64,
            now: i64,
        ) -> Result<()> {
            let (project, org): (i64, i64) = sqlx::query_as(
                "SELECT p.id, p.org_id FROM jobs j JOIN projects p ON p.id = j.project_id \
                 WHERE j.id = $1",
            )
            .bind(a.job_id)
            .fetch_one(&mut **tx)
            .await?;
            let model = a.gpu_model.as_ref().map(|m| m.to_string()).unwrap_or_default();
            let weight: i64 =
                sqlx::query_scalar("SELECT weight_milli FROM gpu_weights WHERE gpu_model = $1")
                    .bind(&model)
                    .fetch_optional(&mut **tx)
                    .await?
                    .unwrap_or(1000);
            // The award that was valid while the attempt ran and expires first, preferring one
            // with time left: hours about to lapse are spent before later ones.
            let started = a.started_at.unwrap_or(a.created_at);
            let candidates: Vec<(i64, i64)> = sqlx::query_as(
                "SELECT a.id, CAST(a.gpu_hours * 3600000 \
                 + COALESCE((SELECT SUM(c.gpu_hours) FROM award_changes c WHERE c.award_id = a.id), 0) * 3600000 \
                 - COALESCE((SELECT SUM(l.charged_ms) FROM ledger l WHERE l.award_id = a.id \
                   AND l.kind <> 'credit'), 0) AS BIGINT) \
                 FROM awards a WHERE a.project_id = $1 AND a.gpu_model = $2 \
                 AND a.valid_from <= $3 AND a.valid_until > $4 ORDER BY a.valid_until, a.id",
            )
            .bind(project)
            .bind(&model)
            .bind(now)
            .bind(started)
            .fetch_all(&mut **tx)
            .await?;
            let award = candidates
                .iter()
                .find(|(_, left)| *left > 0)
                .or(candidates.first())
                .map(|(id, _)| *id);
            let charged = ((gpu_ms as i128 * weight as i128) / 1000) as i64;
            let mut rows = vec![(LedgerKind::Charge, org, award, gpu_ms, charged)];
            if state == AttemptState::NodeLost {
                rows.push((LedgerKind::Refund, org, award, -gpu_ms, -charged));
            } else if let Some(first) = a.placement.tasks.first() {
                let owner: Option<i64> = sqlx::query_scalar(
                    "SELECT p.owner FROM nodes n JOIN blocks b ON b.id = n.block_id \
                     JOIN pools p ON p.id = b.pool_id WHERE n.id = $1",
                )
                .bind(first.node.get() as i64)
                .fetch_optional(&mut **tx)
                .await?
                .flatten();
                if let Some(owner) = owner.filter(|o| *o != org) {
                    rows.push((LedgerKind::Credit, owner, None, gpu_ms, charged));
                }
            }
            for (kind, org, award, gpu_ms, charged) in rows {
                sqlx::query(
                    "INSERT INTO ledger (at, kind, attempt_id, project_id, org_id, award_id, \
                     gpu_model, gpu_ms, weight_milli, charged_ms) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                )
                .bind(now)
                .bind(kind.as_str())
                .bind(a.id)
                .bind(project)
                .bind(org)
                .bind(award)
                .bind(&model)
                .bind(gpu_ms)
                .bind(weight)
                .bind(charged)
                .execute(&mut **tx)
                .await
                .map_err(|e| unique(e, "attempt", format!("a {kind} of attempt {}", a.id)))?;
            }
            Ok(())
        }

        fn audit_row(r: &DbRow) -> Result<AuditRecord> {
            Ok(AuditRecord {
                seq: r.try_get("seq")?,
                at: r.try_get("at")?,
                actor: r.try_get("actor")?,
                action: r.try_get("action")?,
                target: r.try_get("target")?,
                detail: r.try_get("detail")?,
                prev_hash: r.try_get("prev_hash")?,
                hash: r.try_get("hash")?,
            })
        }

        /// Appends one entry to the audit chain inside the caller's transaction.
        async fn audit(
            tx: &mut Tx<'_>,
            actor: &Actor,
            action: &str,
            target: &str,
            detail: &str,
            now: i64,
        ) -> Result<()> {
            audit_after(tx, &mut None, actor, action, target, detail, now).await
        }

        /// [`audit`] for a run of entries in one transaction: `tip` carries the chain's last
        /// hash from one entry to the next, so only the first reads it from the table.
        async fn audit_after(
            tx: &mut Tx<'_>,
            tip: &mut Option<String>,
            actor: &Actor,
            action: &str,
            target: &str,
            detail: &str,
            now: i64,
        ) -> Result<()> {
            let prev = match tip.take() {
                Some(h) => h,
                None => sqlx::query_scalar::<_, String>(
                    "SELECT hash FROM audit ORDER BY seq DESC LIMIT 1",
                )
                .fetch_optional(&mut **tx)
                .await?
                .unwrap_or_default(),
            };
            let detail = &detail_with_reason(detail, actor.reason.as_deref());
            let hash = audit_hash(&prev, now, &actor.name, action, target, detail);
            sqlx::query(
                "INSERT INTO audit (at, actor, action, target, detail, prev_hash, hash) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(now)
            .bind(&actor.name)
            .bind(action)
            .bind(target)
            .bind(detail)
            .bind(&prev)
            .bind(&hash)
            .execute(&mut **tx)
            .await?;
            *tip = Some(hash);
            Ok(())
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

        async fn user_projects(tx: &mut Tx<'_>, user: i64) -> Result<Vec<i64>> {
            Ok(sqlx::query_scalar(
                "SELECT project_id FROM project_members WHERE user_id = $1 ORDER BY project_id",
            )
            .bind(user)
            .fetch_all(&mut **tx)
            .await?)
        }

        async fn job_in(tx: &mut Tx<'_>, id: i64) -> Result<JobRecord> {
            let row = sqlx::query("SELECT * FROM jobs WHERE id = $1")
                .bind(id)
                .fetch_optional(&mut **tx)
                .await?
                .ok_or_else(|| StoreError::not_found("job", id))?;
            job_row(&row)
        }

        async fn current_attempt(tx: &mut Tx<'_>, job: &JobRecord) -> Result<Option<AttemptRecord>> {
            let row = sqlx::query("SELECT * FROM attempts WHERE job_id = $1 AND fence = $2")
                .bind(job.id)
                .bind(job.attempts)
                .fetch_optional(&mut **tx)
                .await?;
            row.as_ref().map(attempt_row).transpose()
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
            charge(tx, a, state, used, now).await?;
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
            set_job_state(tx, a.job_id, job_state, exit_code, Some(reason), now).await?;
            event(tx, kind, Some(a.job_id), Some(a.id), None, state.as_str(), now).await
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
            let rows = qb.build().fetch_all(&mut **tx).await?;
            let mut recs = rows.iter().map(job_row).collect::<Result<Vec<_>>>()?;
            recs.sort_by_key(|r| r.id);
            let mut qb = sqlx::QueryBuilder::<$db>::new(
                "INSERT INTO events (at, kind, job_id, attempt_id, node_id, detail) ",
            );
            qb.push_values(&recs, |mut b, r| {
                b.push_bind(now)
                    .push_bind(EventKind::Submitted.as_str())
                    .push_bind(r.id)
                    .push_bind(None::<i64>)
                    .push_bind(None::<i64>)
                    .push_bind("");
            });
            qb.build().execute(&mut **tx).await?;
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
                return Err(StoreError::conflict(
                    "Idempotency-Key",
                    "another request with this key was answered or is being answered; \
                     send it again to get that answer"
                        .to_string(),
                ));
            }
            Ok(())
        }

        /// Inserts many queued jobs with three multi-row statements (jobs, events, audit)
        /// instead of three per job: a group commit's cost is then one round trip per table.
        async fn insert_jobs(
            tx: &mut Tx<'_>,
            jobs: Vec<(Actor, NewJob)>,
            now: i64,
        ) -> Result<Vec<JobRecord>> {
            let mut prepared = Vec::with_capacity(jobs.len());
            for (actor, job) in jobs {
                let spec = serde_json::to_string(&job.spec)?;
                let command = serde_json::to_string(&job.command)?;
                let batch = job.batch.as_ref().map(serde_json::to_string).transpose()?;
                prepared.push((actor, job, spec, command, batch));
            }
            let mut qb = sqlx::QueryBuilder::<$db>::new(
                "INSERT INTO jobs (project_id, user_id, name, spec, command, container_image, \
                 state, submitted_at, updated_at, attempts, batch, array_spec, interactive) ",
            );
            qb.push_values(&prepared, |mut b, (_, job, spec, command, batch)| {
                b.push_bind(job.spec.project.get() as i64)
                    .push_bind(job.user_id)
                    .push_bind(job.spec.name.clone())
                    .push_bind(spec.clone())
                    .push_bind(command.clone())
                    .push_bind(job.container_image.clone())
                    .push_bind("queued")
                    .push_bind(now)
                    .push_bind(now)
                    .push_bind(0i64)
                    .push_bind(batch.clone())
                    .push_bind(job.array.as_ref().map(|a| a.to_string()))
                    .push_bind(job.interactive);
            });
            qb.push(" RETURNING *");
            let rows = qb
                .build()
                .fetch_all(&mut **tx)
                .await
                .map_err(|e| unique(e, "project", "job".into()))?;
            let mut recs = rows.iter().map(job_row).collect::<Result<Vec<_>>>()?;
            // Ids are assigned in VALUES order; RETURNING's order is not promised, so sort and
            // check that each record is the job asked for at its position.
            recs.sort_by_key(|r| r.id);
            let matches = recs.len() == prepared.len()
                && recs
                    .iter()
                    .zip(&prepared)
                    .all(|(r, (_, j, _, _, _))| r.user_id == j.user_id && r.spec == j.spec);
            if !matches {
                return Err(StoreError::Corrupt("batched insert returned other rows".into()));
            }
            for (r, (_, j, _, _, _)) in recs.iter().zip(&prepared) {
                if let Some(k) = &j.idempotency {
                    keep_job_key(tx, j.user_id, r.id, k, now).await?;
                }
            }
            let mut qb = sqlx::QueryBuilder::<$db>::new(
                "INSERT INTO events (at, kind, job_id, attempt_id, node_id, detail) ",
            );
            qb.push_values(&recs, |mut b, r| {
                b.push_bind(now)
                    .push_bind(EventKind::Submitted.as_str())
                    .push_bind(r.id)
                    .push_bind(None::<i64>)
                    .push_bind(None::<i64>)
                    .push_bind("");
            });
            qb.build().execute(&mut **tx).await?;
            let mut prev: String = sqlx::query_scalar::<_, String>(
                "SELECT hash FROM audit ORDER BY seq DESC LIMIT 1",
            )
            .fetch_optional(&mut **tx)
            .await?
            .unwrap_or_default();
            let mut entries = Vec::with_capacity(recs.len());
            for (r, (actor, _, spec, _, _)) in recs.iter().zip(&prepared) {
                let target = format!("job/{}", r.id);
                let hash = audit_hash(&prev, now, &actor.name, "job.submit", &target, spec);
                entries.push((actor.name.clone(), target, spec.clone(), prev, hash.clone()));
                prev = hash;
            }
            let mut qb = sqlx::QueryBuilder::<$db>::new(
                "INSERT INTO audit (at, actor, action, target, detail, prev_hash, hash) ",
            );
            qb.push_values(entries, |mut b, (actor, target, detail, prev, hash)| {
                b.push_bind(now)
                    .push_bind(actor)
                    .push_bind("job.submit")
                    .push_bind(target)
                    .push_bind(detail)
                    .push_bind(prev)
                    .push_bind(hash);
            });
            qb.build().execute(&mut **tx).await?;
            Ok(recs)
        }

        /// Records one heartbeat in the caller's transaction; `None` for an unknown node.
        async fn beat(tx: &mut Tx<'_>, node: i64, now: i64) -> Result<Option<NodeRecord>> {
            let revived = sqlx::query(
                "UPDATE nodes SET state = 'up', down_reason = NULL, last_heartbeat = $1 \
                 WHERE id = $2 AND state = 'down' AND down_reason = 'lost'",
            )
            .bind(now)
            .bind(node)
            .execute(&mut **tx)
            .await?
            .rows_affected();
            if revived > 0 {
                event(tx, EventKind::FleetChanged, None, None, Some(node), "back", now).await?;
            } else {
                sqlx::query("UPDATE nodes SET last_heartbeat = $1 WHERE id = $2")
                    .bind(now)
                    .bind(node)
                    .execute(&mut **tx)
                    .await?;
            }
            let row = sqlx::query(&format!("SELECT {NODE_COLS} WHERE n.id = $1"))
                .bind(node)
                .fetch_optional(&mut **tx)
                .await?;
            row.as_ref().map(node_row).transpose()
        }

        /// One task report inside the caller's write transaction: `report_task` alone, or a
        /// gang's start reports together in `report_tasks`. Every refusal comes before it writes.
        async fn report_in(tx: &mut Tx<'_>, r: &TaskReport, now: i64) -> Result<AttemptRecord> {
            let job = job_in(tx, r.job).await?;
            if r.fence != job.attempts {
                return Err(StoreError::Fenced(format!(
                    "attempt {} of job {} is not current (current is {})",
                    r.fence, r.job, job.attempts
                )));
            }
            let a = current_attempt(tx, &job)
                .await?
                .ok_or_else(|| StoreError::Fenced(format!("job {} has no attempt", r.job)))?;
            if !a.state.is_live() {
                return Err(StoreError::Fenced(format!(
                    "attempt {} of job {} has already ended ({})",
                    r.fence, r.job, a.state
                )));
            }
            let task: Option<(i64, String)> = sqlx::query_as(
                "SELECT node_id, state FROM tasks WHERE attempt_id = $1 AND idx = $2",
            )
            .bind(a.id)
            .bind(r.task)
            .fetch_optional(&mut **tx)
            .await?;
            let Some((task_node, task_state)) = task else {
                return Err(StoreError::not_found("task", r.task));
            };
            if task_node != r.node {
                return Err(StoreError::Fenced(format!(
                    "task {} of job {} is not on this node",
                    r.task, r.job
                )));
            }
            let task_state = parse_enum(&task_state, TaskState::parse, "task state")?;
            match r.exit_code {
                None => {
                    if task_state != TaskState::Assigned {
                        return Ok(a);
                    }
                    sqlx::query(
                        "UPDATE tasks SET state = 'running' WHERE attempt_id = $1 AND idx = $2",
                    )
                    .bind(a.id)
                    .bind(r.task)
                    .execute(&mut **tx)
                    .await?;
                    sqlx::query(
                        "UPDATE attempts SET state = CASE WHEN state = 'assigned' THEN 'running' \
                         ELSE state END, started_at = COALESCE(started_at, $1) WHERE id = $2",
                    )
                    .bind(now)
                    .bind(a.id)
                    .execute(&mut **tx)
                    .await?;
                }
                Some(code) => {
                    if task_state == TaskState::Exited {
                        return Err(StoreError::conflict(
                            "exit_code",
                            format!("task {} of job {} already reported its exit", r.task, r.job),
                        ));
                    }
                    sqlx::query(
                        "UPDATE tasks SET state = 'exited', exit_code = $1 \
                         WHERE attempt_id = $2 AND idx = $3",
                    )
                    .bind(code)
                    .bind(a.id)
                    .bind(r.task)
                    .execute(&mut **tx)
                    .await?;
                    let left: i64 = sqlx::query_scalar(
                        "SELECT COUNT(*) FROM tasks WHERE attempt_id = $1 \
                         AND state IN ('assigned', 'running')",
                    )
                    .bind(a.id)
                    .fetch_one(&mut **tx)
                    .await?;
                    let failed: Option<i64> = sqlx::query_scalar(
                        "SELECT exit_code FROM tasks WHERE attempt_id = $1 AND exit_code <> 0 \
                         ORDER BY idx LIMIT 1",
                    )
                    .bind(a.id)
                    .fetch_optional(&mut **tx)
                    .await?;
                    if left == 0 {
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
                        let mut a = a.clone();
                        a.started_at = a.started_at.or(Some(now));
                        end_attempt(tx, &a, end, Some(failed.unwrap_or(code)), now).await?;
                    } else if code != 0 && a.stop_reason.is_none() {
                        // One rank failed: the gang cannot go on, so the others are stopped.
                        sqlx::query(
                            "UPDATE attempts SET state = 'stopping', stop_reason = 'task_failed', \
                             kill_at = $1 WHERE id = $2",
                        )
                        .bind(now)
                        .bind(a.id)
                        .execute(&mut **tx)
                        .await?;
                        set_job_state(tx, a.job_id, JobState::Stopping, None, Some("task_failed"), now)
                            .await?;
                    }
                }
            }
            let row = sqlx::query("SELECT * FROM attempts WHERE id = $1")
                .bind(a.id)
                .fetch_one(&mut **tx)
                .await?;
            attempt_row(&row)
        }


        #[async_trait]
        impl Store for $store {
            fn backend(&self) -> &'static str {
                Self::BACKEND
            }

            async fn bootstrap_admin(
                &self,
                token_hash: &str,
                uid_range: IdRange,
                now: i64,
            ) -> Result<bool> {
                let mut tx = self.begin_write().await?;
                let users: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users")
                    .fetch_one(&mut *tx)
                    .await?;
                if users > 0 {
                    return Ok(false);
                }
                let uid = next_id(&mut tx, "users", "uid", uid_range).await?;
                let id: i64 = sqlx::query_scalar(
                    "INSERT INTO users (name, role, org_id, created_at, uid, gid) \
                     VALUES ('admin', 'centre-admin', NULL, $1, $2, $2) RETURNING id",
                )
                .bind(now)
                .bind(uid)
                .fetch_one(&mut *tx)
                .await?;
                sqlx::query(
                    "INSERT INTO tokens (user_id, name, hash, created_at) \
                     VALUES ($1, 'bootstrap', $2, $3)",
                )
                .bind(id)
                .bind(token_hash)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                audit(&mut tx, &Actor::system("server"), "user.bootstrap", "user/admin", "{}", now)
                    .await?;
                tx.commit().await?;
                Ok(true)
            }

            async fn create_org(&self, actor: &Actor, org: NewOrg, now: i64) -> Result<OrgRecord> {
                let mut tx = self.begin_write().await?;
                let row = sqlx::query(
                    "INSERT INTO orgs (name, class, country, parent, created_at, parent_country, \
                     verification) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING *",
                )
                .bind(&org.name)
                .bind(&org.class)
                .bind(&org.country)
                .bind(org.parent)
                .bind(now)
                .bind(&org.parent_country)
                .bind(org.verification.as_str())
                .fetch_one(&mut *tx)
                .await
                .map_err(|e| unique(e, "name", format!("organisation `{}`", org.name)))?;
                let rec = org_row(&row)?;
                let detail = serde_json::to_string(&org)?;
                audit(&mut tx, actor, "org.create", &format!("org/{}", rec.id), &detail, now).await?;
                tx.commit().await?;
                Ok(rec)
            }

            async fn get_org(&self, id: i64) -> Result<OrgRecord> {
                let row = sqlx::query("SELECT * FROM orgs WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&self.read)
                    .await?
                    .ok_or_else(|| StoreError::not_found("organisation", id))?;
                org_row(&row)
            }

            async fn list_orgs(&self) -> Result<Vec<OrgRecord>> {
                let rows = sqlx::query("SELECT * FROM orgs ORDER BY id")
                    .fetch_all(&self.read)
                    .await?;
                rows.iter().map(org_row).collect()
            }

            async fn create_project(
                &self,
                actor: &Actor,
                p: NewProject,
                now: i64,
            ) -> Result<ProjectRecord> {
                let mut tx = self.begin_write().await?;
                let gid = next_id(&mut tx, "projects", "gid", p.gid_range).await?;
                let row = sqlx::query(
                    "INSERT INTO projects (org_id, name, weight, quotas, created_at, gid) \
                     VALUES ($1, $2, $3, $4, $5, $6) RETURNING *",
                )
                .bind(p.org_id)
                .bind(&p.name)
                .bind(p.weight)
                .bind(serde_json::to_string(&p.quotas)?)
                .bind(now)
                .bind(gid)
                .fetch_one(&mut *tx)
                .await
                .map_err(|e| unique(e, "name", format!("project `{}` in this organisation", p.name)))?;
                let rec = project_row(&row)?;
                let detail = serde_json::to_string(&p)?;
                audit(&mut tx, actor, "project.create", &format!("project/{}", rec.id), &detail, now)
                    .await?;
                event(&mut tx, EventKind::ProjectChanged, None, None, None, &rec.id.to_string(), now)
                    .await?;
                tx.commit().await?;
                Ok(rec)
            }

            async fn set_project_quotas(
                &self,
                actor: &Actor,
                id: i64,
                quotas: BTreeMap<GpuModel, Quota>,
                now: i64,
            ) -> Result<ProjectRecord> {
                let mut tx = self.begin_write().await?;
                let row = sqlx::query("UPDATE projects SET quotas = $1 WHERE id = $2 RETURNING *")
                    .bind(serde_json::to_string(&quotas)?)
                    .bind(id)
                    .fetch_optional(&mut *tx)
                    .await?
                    .ok_or_else(|| StoreError::not_found("project", id))?;
                let rec = project_row(&row)?;
                let detail = serde_json::to_string(&quotas)?;
                audit(&mut tx, actor, "project.set_quotas", &format!("project/{id}"), &detail, now)
                    .await?;
                event(&mut tx, EventKind::ProjectChanged, None, None, None, &id.to_string(), now)
                    .await?;
                tx.commit().await?;
                Ok(rec)
            }

            async fn get_project(&self, id: i64) -> Result<ProjectRecord> {
                let row = sqlx::query("SELECT * FROM projects WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&self.read)
                    .await?
                    .ok_or_else(|| StoreError::not_found("project", id))?;
                project_row(&row)
            }

            async fn list_projects(&self) -> Result<Vec<ProjectRecord>> {
                let rows = sqlx::query("SELECT * FROM projects ORDER BY id")
                    .fetch_all(&self.read)
                    .await?;
                rows.iter().map(project_row).collect()
            }

            async fn create_user(&self, actor: &Actor, u: NewUser, now: i64) -> Result<UserRecord> {
                let mut tx = self.begin_write().await?;
                let uid = match u.uid {
                    Some(uid) => uid,
                    None => next_id(&mut tx, "users", "uid", u.uid_range).await?,
                };
                if u.uid.is_some() {
                    let taken: Option<String> =
                        sqlx::query_scalar("SELECT name FROM users WHERE uid = $1")
                            .bind(uid)
                            .fetch_optional(&mut *tx)
                            .await?;
                    if let Some(other) = taken {
                        return Err(StoreError::conflict(
                            "uid",
                            format!("uid {uid} already belongs to user `{other}`"),
                        ));
                    }
                }
                let row = sqlx::query(
                    "INSERT INTO users (name, role, org_id, created_at, uid, gid) \
                     VALUES ($1, $2, $3, $4, $5, $6) RETURNING *",
                )
                .bind(&u.name)
                .bind(u.role.as_str())
                .bind(u.org_id)
                .bind(now)
                .bind(uid)
                .bind(u.gid.unwrap_or(uid))
                .fetch_one(&mut *tx)
                .await
                // User names are unique across the centre: the answer says the name is taken, and
                // neither echoes it nor says in which organisation.
                .map_err(|e| unique(e, "name", "a user of this name".into()))?;
                let id: i64 = row.try_get("id")?;
                for p in &u.projects {
                    let org: Option<i64> =
                        sqlx::query_scalar("SELECT org_id FROM projects WHERE id = $1")
                            .bind(p)
                            .fetch_optional(&mut *tx)
                            .await?;
                    // Another organisation's project is answered as one that does not exist,
                    // so that a caller learns nothing of other tenants' ids.
                    if org.is_none() || org != u.org_id {
                        return Err(StoreError::not_found("project", p));
                    }
                    sqlx::query("INSERT INTO project_members (project_id, user_id) VALUES ($1, $2)")
                        .bind(p)
                        .bind(id)
                        .execute(&mut *tx)
                        .await?;
                }
                let rec = user_row(&row, user_projects(&mut tx, id).await?)?;
                let detail = serde_json::json!({
                    "name": u.name,
                    "role": u.role.to_string(),
                    "org": u.org_id,
                    "projects": u.projects,
                    "uid": uid,
                    "gid": u.gid.unwrap_or(uid),
                })
                .to_string();
                audit(&mut tx, actor, "user.create", &format!("user/{id}"), &detail, now).await?;
                tx.commit().await?;
                Ok(rec)
            }

            async fn get_user(&self, id: i64) -> Result<UserRecord> {
                let mut tx = self.begin_read().await?;
                let row = sqlx::query("SELECT * FROM users WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&mut *tx)
                    .await?
                    .ok_or_else(|| StoreError::not_found("user", id))?;
                let projects = user_projects(&mut tx, id).await?;
                user_row(&row, projects)
            }

            async fn update_user_ids(
                &self,
                actor: &Actor,
                id: i64,
                uid: Option<i64>,
                gid: Option<i64>,
                now: i64,
            ) -> Result<UserRecord> {
                let mut tx = self.begin_write().await?;
                if let Some(uid) = uid {
                    let taken: Option<String> =
                        sqlx::query_scalar("SELECT name FROM users WHERE uid = $1 AND id <> $2")
                            .bind(uid)
                            .bind(id)
                            .fetch_optional(&mut *tx)
                            .await?;
                    if let Some(other) = taken {
                        return Err(StoreError::conflict(
                            "uid",
                            format!("uid {uid} already belongs to user `{other}`"),
                        ));
                    }
                }
                let row = sqlx::query(
                    "UPDATE users SET uid = COALESCE($1, uid), gid = COALESCE($2, gid) \
                     WHERE id = $3 RETURNING *",
                )
                .bind(uid)
                .bind(gid)
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?
                .ok_or_else(|| StoreError::not_found("user", id))?;
                let rec = user_row(&row, user_projects(&mut tx, id).await?)?;
                let detail = serde_json::json!({"uid": rec.uid, "gid": rec.gid}).to_string();
                audit(&mut tx, actor, "user.update", &format!("user/{id}"), &detail, now).await?;
                tx.commit().await?;
                Ok(rec)
            }

            async fn set_node_agent_uid(&self, node: i64, uid: Option<i64>) -> Result<()> {
                let mut tx = self.begin_write().await?;
                sqlx::query("UPDATE nodes SET agent_uid = $1 WHERE id = $2")
                    .bind(uid)
                    .bind(node)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(())
            }

            async fn agent_uids(&self) -> Result<Vec<i64>> {
                let mut tx = self.begin_read().await?;
                Ok(sqlx::query_scalar(
                    "SELECT DISTINCT agent_uid FROM nodes WHERE agent_uid IS NOT NULL \
                     ORDER BY agent_uid",
                )
                .fetch_all(&mut *tx)
                .await?)
            }

            async fn list_users(&self) -> Result<Vec<UserRecord>> {
                let mut tx = self.begin_read().await?;
                let rows = sqlx::query("SELECT * FROM users ORDER BY id")
                    .fetch_all(&mut *tx)
                    .await?;
                let mut out = Vec::with_capacity(rows.len());
                for r in &rows {
                    let id: i64 = r.try_get("id")?;
                    let projects = user_projects(&mut tx, id).await?;
                    out.push(user_row(r, projects)?);
                }
                Ok(out)
            }

            async fn create_token(
                &self,
                actor: &Actor,
                user: i64,
                name: &str,
                token_hash: &str,
                expires_at: Option<i64>,
                now: i64,
            ) -> Result<TokenRecord> {
                let mut tx = self.begin_write().await?;
                let row = sqlx::query(
                    "INSERT INTO tokens (user_id, name, hash, created_at, expires_at) \
                     VALUES ($1, $2, $3, $4, $5) RETURNING *",
                )
                .bind(user)
                .bind(name)
                .bind(token_hash)
                .bind(now)
                .bind(expires_at)
                .fetch_one(&mut *tx)
                .await
                .map_err(|e| unique(e, "user", "token".to_string()))?;
                let rec = token_row(&row)?;
                audit(
                    &mut tx,
                    actor,
                    "token.create",
                    &format!("token/{}", rec.id),
                    &serde_json::json!({"user": user, "expires_at": expires_at}).to_string(),
                    now,
                )
                .await?;
                tx.commit().await?;
                Ok(rec)
            }

            async fn list_tokens(&self, user: Option<i64>) -> Result<Vec<TokenRecord>> {
                let rows = sqlx::query(
                    "SELECT * FROM tokens WHERE ($1 IS NULL OR user_id = $1) ORDER BY id",
                )
                .bind(user)
                .fetch_all(&self.read)
                .await?;
                rows.iter().map(token_row).collect()
            }

            async fn revoke_token(&self, actor: &Actor, id: i64, now: i64) -> Result<TokenRecord> {
                let mut tx = self.begin_write().await?;
                let row = sqlx::query(
                    "UPDATE tokens SET revoked_at = COALESCE(revoked_at, $1) WHERE id = $2 RETURNING *",
                )
                .bind(now)
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?
                .ok_or_else(|| StoreError::not_found("token", id))?;
                let rec = token_row(&row)?;
                audit(&mut tx, actor, "token.revoke", &format!("token/{id}"), "{}", now).await?;
                tx.commit().await?;
                Ok(rec)
            }

            async fn authenticate(&self, token_hash: &str) -> Result<Option<UserRecord>> {
                let mut tx = self.begin_read().await?;
                let row = sqlx::query(
                    "SELECT u.* FROM tokens t JOIN users u ON u.id = t.user_id \
                     WHERE t.hash = $1 AND t.revoked_at IS NULL",
                )
                .bind(token_hash)
                .fetch_optional(&mut *tx)
                .await?;
                let Some(row) = row else { return Ok(None) };
                let id: i64 = row.try_get("id")?;
                let projects = user_projects(&mut tx, id).await?;
                Ok(Some(user_row(&row, projects)?))
            }

            async fn token_auth(&self, token_hash: &str) -> Result<Option<TokenAuth>> {
                let Some(row) = sqlx::query("SELECT * FROM tokens WHERE hash = $1")
                    .bind(token_hash)
                    .fetch_optional(&self.read)
                    .await?
                else {
                    return Ok(None);
                };
                let token = token_row(&row)?;
                let user = self.get_user(token.user_id).await?;
                Ok(Some(TokenAuth { token, user }))
            }

            async fn get_token(&self, id: i64) -> Result<TokenRecord> {
                let row = sqlx::query("SELECT * FROM tokens WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&self.read)
                    .await?
                    .ok_or_else(|| StoreError::not_found("token", id))?;
                token_row(&row)
            }

            async fn create_session(
                &self,
                id_hash: &str,
                user: i64,
                token: i64,
                expires_at: i64,
                now: i64,
            ) -> Result<()> {
                let mut tx = self.begin_write().await?;
                // Sessions past their end are of no use to anyone: drop them as new ones come.
                sqlx::query("DELETE FROM sessions WHERE expires_at < $1")
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(
                    "INSERT INTO sessions (id_hash, user_id, token_id, created_at, last_seen, \
                     expires_at) VALUES ($1, $2, $3, $4, $4, $5)",
                )
                .bind(id_hash)
                .bind(user)
                .bind(token)
                .bind(now)
                .bind(expires_at)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(())
            }

            async fn get_session(&self, id_hash: &str) -> Result<Option<SessionRecord>> {
                let row = sqlx::query("SELECT * FROM sessions WHERE id_hash = $1")
                    .bind(id_hash)
                    .fetch_optional(&self.read)
                    .await?;
                row.map(|r| {
                    Ok(SessionRecord {
                        user_id: r.try_get("user_id")?,
                        token_id: r.try_get("token_id")?,
                        created_at: r.try_get("created_at")?,
                        last_seen: r.try_get("last_seen")?,
                        expires_at: r.try_get("expires_at")?,
                        revoked_at: r.try_get("revoked_at")?,
                    })
                })
                .transpose()
            }

            async fn touch_session(&self, id_hash: &str, now: i64) -> Result<()> {
                let mut tx = self.begin_write().await?;
                sqlx::query("UPDATE sessions SET last_seen = $1 WHERE id_hash = $2")
                    .bind(now)
                    .bind(id_hash)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(())
            }

            async fn revoke_session(&self, id_hash: &str, now: i64) -> Result<()> {
                let mut tx = self.begin_write().await?;
                sqlx::query(
                    "UPDATE sessions SET revoked_at = $1 WHERE id_hash = $2 AND revoked_at IS NULL",
                )
                .bind(now)
                .bind(id_hash)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(())
            }

            async fn oidc_link(&self, issuer: &str, subject: &str) -> Result<Option<OidcLink>> {
                let row =
                    sqlx::query("SELECT * FROM oidc_links WHERE issuer = $1 AND subject = $2")
                        .bind(issuer)
                        .bind(subject)
                        .fetch_optional(&self.read)
                        .await?;
                row.as_ref().map(oidc_link_row).transpose()
            }

            async fn oidc_link_of(&self, user: i64) -> Result<Option<OidcLink>> {
                let row = sqlx::query("SELECT * FROM oidc_links WHERE user_id = $1")
                    .bind(user)
                    .fetch_optional(&self.read)
                    .await?;
                row.as_ref().map(oidc_link_row).transpose()
            }

            async fn provision_oidc_user(
                &self,
                actor: &Actor,
                u: NewOidcUser,
                now: i64,
            ) -> Result<(UserRecord, OidcLink)> {
                let mut tx = self.begin_write().await?;
                let uid = next_id(&mut tx, "users", "uid", u.user.uid_range).await?;
                let row = sqlx::query(
                    "INSERT INTO users (name, role, org_id, created_at, uid, gid) \
                     VALUES ($1, $2, $3, $4, $5, $5) RETURNING *",
                )
                .bind(&u.user.name)
                .bind(u.user.role.as_str())
                .bind(u.user.org_id)
                .bind(now)
                .bind(uid)
                .fetch_one(&mut *tx)
                .await
                .map_err(|e| unique(e, "name", "a user of this name".into()))?;
                let id: i64 = row.try_get("id")?;
                let approved_at = u.approved.then_some(now);
                let approved_by = u.approved.then(|| actor.name.clone());
                let link = sqlx::query(
                    "INSERT INTO oidc_links (issuer, subject, user_id, email, created_at, \
                     approved_at, approved_by) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING *",
                )
                .bind(&u.issuer)
                .bind(&u.subject)
                .bind(id)
                .bind(&u.email)
                .bind(now)
                .bind(approved_at)
                .bind(&approved_by)
                .fetch_one(&mut *tx)
                .await
                .map_err(|e| unique(e, "subject", "a link for this subject".into()))?;
                let rec = user_row(&row, Vec::new())?;
                let link = oidc_link_row(&link)?;
                let detail = serde_json::json!({
                    "name": u.user.name,
                    "role": u.user.role.to_string(),
                    "org": u.user.org_id,
                    "uid": uid,
                    "issuer": u.issuer,
                    "subject": u.subject,
                    "email": u.email,
                    "state": if u.approved { "approved" } else { "pending" },
                })
                .to_string();
                audit(&mut tx, actor, "user.provision", &format!("user/{id}"), &detail, now)
                    .await?;
                tx.commit().await?;
                Ok((rec, link))
            }

            async fn approve_oidc_user(
                &self,
                actor: &Actor,
                user: i64,
                now: i64,
            ) -> Result<OidcLink> {
                let mut tx = self.begin_write().await?;
                let row = sqlx::query("SELECT * FROM oidc_links WHERE user_id = $1")
                    .bind(user)
                    .fetch_optional(&mut *tx)
                    .await?
                    .ok_or_else(|| StoreError::not_found("pending user", user))?;
                let link = oidc_link_row(&row)?;
                if link.approved_at.is_some() {
                    return Err(StoreError::conflict(
                        "user",
                        format!("user {user} is already approved"),
                    ));
                }
                let row = sqlx::query(
                    "UPDATE oidc_links SET approved_at = $1, approved_by = $2 \
                     WHERE user_id = $3 RETURNING *",
                )
                .bind(now)
                .bind(&actor.name)
                .bind(user)
                .fetch_one(&mut *tx)
                .await?;
                let detail = serde_json::json!({ "issuer": link.issuer, "subject": link.subject })
                    .to_string();
                audit(&mut tx, actor, "user.approve", &format!("user/{user}"), &detail, now)
                    .await?;
                tx.commit().await?;
                oidc_link_row(&row)
            }

            async fn record_audit(
                &self,
                actor: &Actor,
                action: &str,
                target: &str,
                detail: &str,
                now: i64,
            ) -> Result<()> {
                let mut tx = self.begin_write().await?;
                audit(&mut tx, actor, action, target, detail, now).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn create_pool(&self, actor: &Actor, p: NewPool, now: i64) -> Result<PoolRecord> {
                let mut tx = self.begin_write().await?;
                let row = sqlx::query(
                    "INSERT INTO pools (name, owner, lending) VALUES ($1, $2, $3) RETURNING *",
                )
                .bind(&p.name)
                .bind(p.owner)
                .bind(lending_str(p.lending))
                .fetch_one(&mut *tx)
                .await
                .map_err(|e| unique(e, "name", format!("pool `{}`", p.name)))?;
                let rec = pool_row(&row)?;
                audit(
                    &mut tx,
                    actor,
                    "pool.create",
                    &format!("pool/{}", rec.id),
                    &serde_json::to_string(&p.name)?,
                    now,
                )
                .await?;
                event(&mut tx, EventKind::FleetChanged, None, None, None, "pool", now).await?;
                tx.commit().await?;
                Ok(rec)
            }

            async fn list_pools(&self) -> Result<Vec<PoolRecord>> {
                let rows = sqlx::query("SELECT * FROM pools ORDER BY id")
                    .fetch_all(&self.read)
                    .await?;
                rows.iter().map(pool_row).collect()
            }

            async fn register_node(&self, actor: &Actor, n: NewNode, now: i64) -> Result<NodeRecord> {
                let mut tx = self.begin_write().await?;
                let pool: Option<i64> = sqlx::query_scalar("SELECT id FROM pools WHERE name = $1")
                    .bind(&n.pool)
                    .fetch_optional(&mut *tx)
                    .await?;
                let pool = match pool {
                    Some(p) => p,
                    // Pools are made by operators (with their owner and lending terms); only the
                    // `default` pool, which a centre of one pool never names, comes by itself.
                    None if n.pool != DEFAULT_POOL => {
                        return Err(StoreError::Invalid {
                            field: "pool",
                            reason: format!(
                                "no pool `{}`; an operator creates it first (`haneul pool create`)",
                                n.pool
                            ),
                        });
                    }
                    None => {
                        sqlx::query_scalar(
                            "INSERT INTO pools (name, owner, lending) VALUES ($1, NULL, 'open') \
                             RETURNING id",
                        )
                        .bind(&n.pool)
                        .fetch_one(&mut *tx)
                        .await?
                    }
                };
                let block: i64 = sqlx::query_scalar(
                    "INSERT INTO blocks (pool_id, name) VALUES ($1, $2) \
                     ON CONFLICT (pool_id, name) DO UPDATE SET name = excluded.name RETURNING id",
                )
                .bind(pool)
                .bind(&n.block)
                .fetch_one(&mut *tx)
                .await?;
                let existing: Option<(i64, Option<i64>)> = sqlx::query_as(
                    "SELECT id, agent_user FROM nodes WHERE name = $1",
                )
                .bind(&n.name)
                .fetch_optional(&mut *tx)
                .await?;
                if let Some((_, Some(owner))) = existing
                    && n.agent_user.is_some()
                    && n.agent_user != Some(owner)
                {
                    return Err(StoreError::conflict(
                        "name",
                        format!("node `{}` is registered by another agent", n.name),
                    ));
                }
                let id: i64 = sqlx::query_scalar(
                    "INSERT INTO nodes (name, block_id, gpu_model, gpus, gpu_memory_mib, \
                     nvlink_domain, cpu_milli, memory_mib, state, down_reason, agent_user, \
                     last_heartbeat) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'up', NULL, $9, $10) \
                     ON CONFLICT (name) DO UPDATE SET block_id = excluded.block_id, \
                     gpu_model = excluded.gpu_model, gpus = excluded.gpus, \
                     gpu_memory_mib = excluded.gpu_memory_mib, \
                     nvlink_domain = excluded.nvlink_domain, cpu_milli = excluded.cpu_milli, \
                     memory_mib = excluded.memory_mib, \
                     state = CASE WHEN nodes.state = 'draining' THEN 'draining' ELSE 'up' END, \
                     down_reason = CASE WHEN nodes.state = 'draining' THEN nodes.down_reason END, \
                     agent_user = excluded.agent_user, \
                     last_heartbeat = excluded.last_heartbeat RETURNING id",
                )
                .bind(&n.name)
                .bind(block)
                .bind(n.gpu_model.as_str())
                .bind(n.gpus)
                .bind(n.gpu_memory_mib)
                .bind(n.nvlink_domain)
                .bind(n.cpu_milli)
                .bind(n.memory_mib)
                .bind(n.agent_user)
                .bind(now)
                .fetch_one(&mut *tx)
                .await?;
                let detail =
                    serde_json::json!({"name": n.name, "gpu_model": n.gpu_model, "gpus": n.gpus})
                        .to_string();
                audit(&mut tx, actor, "node.register", &format!("node/{id}"), &detail, now).await?;
                event(&mut tx, EventKind::FleetChanged, None, None, Some(id), "register", now)
                    .await?;
                let row = sqlx::query(&format!("SELECT {NODE_COLS} WHERE n.id = $1"))
                    .bind(id)
                    .fetch_one(&mut *tx)
                    .await?;
                let rec = node_row(&row)?;
                tx.commit().await?;
                Ok(rec)
            }

            async fn get_node(&self, id: i64) -> Result<NodeRecord> {
                let row = sqlx::query(&format!("SELECT {NODE_COLS} WHERE n.id = $1"))
                    .bind(id)
                    .fetch_optional(&self.read)
                    .await?
                    .ok_or_else(|| StoreError::not_found("node", id))?;
                node_row(&row)
            }

            async fn list_nodes(&self) -> Result<Vec<NodeRecord>> {
                let rows = sqlx::query(&format!("SELECT {NODE_COLS} ORDER BY n.id"))
                    .fetch_all(&self.read)
                    .await?;
                rows.iter().map(node_row).collect()
            }

            async fn fleet_summary(&self) -> Result<FleetSummary> {
                let mut tx = self.begin_read().await?;
                let pools = sqlx::query("SELECT * FROM pools ORDER BY id")
                    .fetch_all(&mut *tx)
                    .await?
                    .iter()
                    .map(pool_row)
                    .collect::<Result<Vec<_>>>()?;
                let nodes = sqlx::query(&format!("SELECT {NODE_COLS} ORDER BY n.id"))
                    .fetch_all(&mut *tx)
                    .await?
                    .iter()
                    .map(node_row)
                    .collect::<Result<Vec<_>>>()?;
                let live: Vec<(String,)> = sqlx::query_as(
                    "SELECT placement FROM attempts \
                     WHERE state IN ('assigned', 'running', 'stopping') ORDER BY id",
                )
                .fetch_all(&mut *tx)
                .await?;
                let live = live
                    .iter()
                    .map(|(p,)| serde_json::from_str::<Placement>(p))
                    .collect::<std::result::Result<Vec<_>, _>>()?;
                let jobs: Vec<(i64, String, String)> = sqlx::query_as(
                    "SELECT project_id, state, spec FROM jobs \
                     WHERE state IN ('queued', 'running', 'stopping') ORDER BY id",
                )
                .fetch_all(&mut *tx)
                .await?;
                let jobs = jobs
                    .iter()
                    .map(|(p, state, spec)| {
                        Ok((
                            *p,
                            parse_enum(state, JobState::parse, "job state")?,
                            serde_json::from_str::<JobSpec>(spec)?,
                        ))
                    })
                    .collect::<Result<Vec<_>>>()?;
                Ok(FleetSummary::build(&pools, &nodes, &live, &jobs))
            }

            async fn set_node_state(
                &self,
                actor: &Actor,
                id: i64,
                state: NodeState,
                now: i64,
            ) -> Result<NodeRecord> {
                if state == NodeState::Down {
                    return Err(StoreError::invalid(
                        "state",
                        "a node goes down by losing its agent; drain it instead",
                    ));
                }
                let mut tx = self.begin_write().await?;
                let done = sqlx::query(
                    "UPDATE nodes SET state = $1, \
                     down_reason = CASE WHEN state = 'down' THEN down_reason END \
                     WHERE id = $2 AND (state <> 'down' OR $1 = 'draining')",
                )
                .bind(state.as_str())
                .bind(id)
                .execute(&mut *tx)
                .await?;
                let row = sqlx::query(&format!("SELECT {NODE_COLS} WHERE n.id = $1"))
                    .bind(id)
                    .fetch_optional(&mut *tx)
                    .await?
                    .ok_or_else(|| StoreError::not_found("node", id))?;
                let rec = node_row(&row)?;
                if done.rows_affected() == 0 {
                    return Err(StoreError::conflict(
                        "state",
                        format!("node `{}` is down; it comes back up when its agent returns", rec.name),
                    ));
                }
                audit(&mut tx, actor, &format!("node.{state}"), &format!("node/{id}"), "{}", now)
                    .await?;
                event(&mut tx, EventKind::FleetChanged, None, None, Some(id), state.as_str(), now)
                    .await?;
                tx.commit().await?;
                Ok(rec)
            }

            async fn heartbeat(&self, node: i64, now: i64) -> Result<NodeRecord> {
                let mut tx = self.begin_write().await?;
                let rec = beat(&mut tx, node, now)
                    .await?
                    .ok_or_else(|| StoreError::not_found("node", node))?;
                tx.commit().await?;
                Ok(rec)
            }

            async fn heartbeats(&self, nodes: &[i64], now: i64) -> Result<Vec<Option<NodeRecord>>> {
                let mut tx = self.begin_write().await?;
                let mut out = Vec::with_capacity(nodes.len());
                for &n in nodes {
                    out.push(beat(&mut tx, n, now).await?);
                }
                tx.commit().await?;
                Ok(out)
            }

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
                let mut tx = self.begin_write().await?;
                let mut out = Vec::with_capacity(jobs.len());
                let mut rest = jobs;
                // Bound each statement's parameters (SQLite allows 32,766 per statement).
                while !rest.is_empty() {
                    let tail = rest.split_off(rest.len().min(1000));
                    out.extend(insert_jobs(&mut tx, rest, now).await?);
                    rest = tail;
                }
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
                    // Ids are integers we hold, never text from a request.
                    let list: Vec<String> = chunk.iter().map(|i| i.to_string()).collect();
                    let rows = sqlx::query(&format!(
                        "SELECT * FROM jobs WHERE id IN ({}) ORDER BY id",
                        list.join(",")
                    ))
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

            async fn list_attempts(&self, job: i64) -> Result<Vec<AttemptRecord>> {
                let rows = sqlx::query("SELECT * FROM attempts WHERE job_id = $1 ORDER BY fence")
                    .bind(job)
                    .fetch_all(&self.read)
                    .await?;
                rows.iter().map(attempt_row).collect()
            }

            async fn job_events(&self, job: i64) -> Result<Vec<EventRecord>> {
                let rows = sqlx::query("SELECT * FROM events WHERE job_id = $1 ORDER BY seq")
                    .bind(job)
                    .fetch_all(&self.read)
                    .await?;
                rows.iter().map(event_row).collect()
            }

            async fn create_award(&self, actor: &Actor, a: NewAward, now: i64) -> Result<AwardRecord> {
                let mut tx = self.begin_write().await?;
                let rec = insert_award(&mut tx, actor, &a, now).await?;
                tx.commit().await?;
                Ok(rec)
            }

            async fn list_awards(&self, project: Option<i64>) -> Result<Vec<AwardRecord>> {
                let rows = sqlx::query(
                    "SELECT * FROM awards WHERE ($1 IS NULL OR project_id = $1) ORDER BY id",
                )
                .bind(project)
                .fetch_all(&self.read)
                .await?;
                rows.iter().map(award_row).collect()
            }

            async fn usage(&self, project: Option<i64>) -> Result<Vec<UsageRecord>> {
                let rows: Vec<(i64, Option<String>, i64)> = sqlx::query_as(
                    "SELECT j.project_id, a.gpu_model, CAST(SUM(a.gpu_ms) AS BIGINT) \
                     FROM attempts a JOIN jobs j ON j.id = a.job_id \
                     WHERE a.ended_at IS NOT NULL AND ($1 IS NULL OR j.project_id = $1) \
                     GROUP BY j.project_id, a.gpu_model ORDER BY j.project_id, a.gpu_model",
                )
                .bind(project)
                .fetch_all(&self.read)
                .await?;
                Ok(rows
                    .into_iter()
                    .map(|(p, m, ms)| UsageRecord {
                        project_id: p,
                        gpu_model: m.unwrap_or_default(),
                        gpu_ms: ms,
                    })
                    .collect())
            }

            async fn adjust_award(
                &self,
                actor: &Actor,
                award: i64,
                gpu_hours: i64,
                reason: &str,
                now: i64,
            ) -> Result<AwardChange> {
                if gpu_hours == 0 {
                    return Err(StoreError::invalid("gpu_hours", "must not be zero: positive tops up, negative takes back"));
                }
                if reason.trim().is_empty() {
                    return Err(StoreError::invalid("reason", "say why the award changes"));
                }
                let mut tx = self.begin_write().await?;
                let row = sqlx::query("SELECT * FROM awards WHERE id = $1")
                    .bind(award)
                    .fetch_optional(&mut *tx)
                    .await?
                    .ok_or_else(|| StoreError::not_found("award", award))?;
                let a = award_row(&row)?;
                let changed: i64 = sqlx::query_scalar(
                    "SELECT CAST(COALESCE(SUM(gpu_hours), 0) AS BIGINT) FROM award_changes \
                     WHERE award_id = $1",
                )
                .bind(award)
                .fetch_one(&mut *tx)
                .await?;
                let granted = a.gpu_hours + changed;
                if granted + gpu_hours < 0 {
                    return Err(StoreError::invalid(
                        "gpu_hours",
                        format!("award {award} has {granted} GPU-hours granted; cannot take back more"),
                    ));
                }
                let row = sqlx::query(
                    "INSERT INTO award_changes (award_id, gpu_hours, reason, actor, at) \
                     VALUES ($1, $2, $3, $4, $5) RETURNING *",
                )
                .bind(award)
                .bind(gpu_hours)
                .bind(reason)
                .bind(&actor.name)
                .bind(now)
                .fetch_one(&mut *tx)
                .await?;
                let rec = change_row(&row)?;
                let action = if gpu_hours > 0 { "award.top-up" } else { "award.take-back" };
                let detail = serde_json::json!({
                    "gpu_hours": gpu_hours,
                    "granted": granted + gpu_hours,
                    "reason": reason,
                })
                .to_string();
                audit(&mut tx, actor, action, &format!("award/{award}"), &detail, now).await?;
                event(&mut tx, EventKind::ProjectChanged, None, None, None, &a.project_id.to_string(), now)
                    .await?;
                tx.commit().await?;
                Ok(rec)
            }

            async fn award_changes(&self, award: i64) -> Result<Vec<AwardChange>> {
                let rows = sqlx::query("SELECT * FROM award_changes WHERE award_id = $1 ORDER BY id")
                    .bind(award)
                    .fetch_all(&self.read)
                    .await?;
                rows.iter().map(change_row).collect()
            }

            async fn award_balances(&self, project: Option<i64>) -> Result<Vec<AwardBalance>> {
                let rows = sqlx::query(
                    "SELECT a.*, \
                     CAST(COALESCE((SELECT SUM(c.gpu_hours) FROM award_changes c \
                       WHERE c.award_id = a.id), 0) AS BIGINT) AS changed_hours, \
                     CAST(COALESCE((SELECT SUM(l.charged_ms) FROM ledger l \
                       WHERE l.award_id = a.id AND l.kind <> 'credit'), 0) AS BIGINT) AS used_ms \
                     FROM awards a WHERE ($1 IS NULL OR a.project_id = $1) ORDER BY a.id",
                )
                .bind(project)
                .fetch_all(&self.read)
                .await?;
                rows.iter()
                    .map(|r| {
                        let award = award_row(r)?;
                        let changed: i64 = r.try_get("changed_hours")?;
                        Ok(AwardBalance {
                            granted_ms: (award.gpu_hours + changed) * 3_600_000,
                            used_ms: r.try_get("used_ms")?,
                            award,
                        })
                    })
                    .collect()
            }

            async fn ledger(
                &self,
                project: Option<i64>,
                from: i64,
                until: i64,
            ) -> Result<Vec<LedgerEntry>> {
                let rows = sqlx::query(
                    "SELECT * FROM ledger WHERE ($1 IS NULL OR project_id = $1) \
                     AND at >= $2 AND at < $3 ORDER BY id",
                )
                .bind(project)
                .bind(from)
                .bind(until)
                .fetch_all(&self.read)
                .await?;
                rows.iter().map(ledger_row).collect()
            }

            async fn ledger_spans(
                &self,
                projects: Option<&[i64]>,
                from: i64,
                until: i64,
            ) -> Result<Vec<LedgerSpan>> {
                let mut sql = String::from(
                    "SELECT l.*, COALESCE(a.started_at, a.created_at) AS span_start \
                     FROM ledger l JOIN attempts a ON a.id = l.attempt_id \
                     WHERE l.kind <> 'credit' AND l.at > $1 \
                     AND COALESCE(a.started_at, a.created_at) < $2",
                );
                if let Some(projects) = projects {
                    if projects.is_empty() {
                        return Ok(Vec::new());
                    }
                    // Ids are integers we hold, never text from a request.
                    let list: Vec<String> = projects.iter().map(|p| p.to_string()).collect();
                    sql.push_str(&format!(" AND l.project_id IN ({})", list.join(",")));
                }
                sql.push_str(" ORDER BY l.id");
                let rows = sqlx::query(&sql)
                    .bind(from)
                    .bind(until)
                    .fetch_all(&self.read)
                    .await?;
                rows.iter()
                    .map(|r| {
                        Ok(LedgerSpan {
                            entry: ledger_row(r)?,
                            started_at: r.try_get("span_start")?,
                        })
                    })
                    .collect()
            }

            async fn set_gpu_weight(
                &self,
                actor: &Actor,
                model: &GpuModel,
                weight_milli: i64,
                now: i64,
            ) -> Result<()> {
                if weight_milli <= 0 {
                    return Err(StoreError::invalid("weight", "must be positive"));
                }
                let mut tx = self.begin_write().await?;
                sqlx::query(
                    "INSERT INTO gpu_weights (gpu_model, weight_milli) VALUES ($1, $2) \
                     ON CONFLICT (gpu_model) DO UPDATE SET weight_milli = excluded.weight_milli",
                )
                .bind(model.as_str())
                .bind(weight_milli)
                .execute(&mut *tx)
                .await?;
                audit(
                    &mut tx,
                    actor,
                    "gpu-weight.set",
                    &format!("gpu-model/{model}"),
                    &serde_json::json!({"weight_milli": weight_milli}).to_string(),
                    now,
                )
                .await?;
                tx.commit().await?;
                Ok(())
            }

            async fn gpu_weights(&self) -> Result<Vec<(String, i64)>> {
                Ok(sqlx::query_as("SELECT gpu_model, weight_milli FROM gpu_weights ORDER BY gpu_model")
                    .fetch_all(&self.read)
                    .await?)
            }

            async fn raise_notice(
                &self,
                kind: &str,
                project: i64,
                award: i64,
                detail: &str,
                now: i64,
            ) -> Result<bool> {
                let mut tx = self.begin_write().await?;
                let id: Option<i64> = sqlx::query_scalar(
                    "INSERT INTO notices (at, kind, project_id, award_id, detail) \
                     VALUES ($1, $2, $3, $4, $5) \
                     ON CONFLICT (kind, project_id, award_id) DO NOTHING RETURNING id",
                )
                .bind(now)
                .bind(kind)
                .bind(project)
                .bind(award)
                .bind(detail)
                .fetch_optional(&mut *tx)
                .await?;
                if id.is_none() {
                    return Ok(false);
                }
                audit(
                    &mut tx,
                    &Actor::system("accounting"),
                    &format!("notice.{kind}"),
                    &format!("project/{project}"),
                    detail,
                    now,
                )
                .await?;
                tx.commit().await?;
                Ok(true)
            }

            async fn list_notices(&self) -> Result<Vec<NoticeRecord>> {
                let rows: Vec<(i64, i64, String, i64, i64, String)> = sqlx::query_as(
                    "SELECT id, at, kind, project_id, award_id, detail FROM notices ORDER BY id",
                )
                .fetch_all(&self.read)
                .await?;
                Ok(rows
                    .into_iter()
                    .map(|(id, at, kind, project_id, award_id, detail)| NoticeRecord {
                        id,
                        at,
                        kind,
                        project_id,
                        award_id,
                        detail,
                    })
                    .collect())
            }

            async fn set_org_verification(
                &self,
                actor: &Actor,
                org: i64,
                status: Verification,
                now: i64,
            ) -> Result<OrgRecord> {
                let mut tx = self.begin_write().await?;
                let row = sqlx::query("UPDATE orgs SET verification = $1 WHERE id = $2 RETURNING *")
                    .bind(status.as_str())
                    .bind(org)
                    .fetch_optional(&mut *tx)
                    .await?
                    .ok_or_else(|| StoreError::not_found("organisation", org))?;
                let rec = org_row(&row)?;
                audit(
                    &mut tx,
                    actor,
                    "org.verify",
                    &format!("org/{org}"),
                    &serde_json::json!({"verification": status.to_string()}).to_string(),
                    now,
                )
                .await?;
                let projects: Vec<i64> =
                    sqlx::query_scalar("SELECT id FROM projects WHERE org_id = $1 ORDER BY id")
                        .bind(org)
                        .fetch_all(&mut *tx)
                        .await?;
                for p in projects {
                    event(&mut tx, EventKind::ProjectChanged, None, None, None, &p.to_string(), now)
                        .await?;
                }
                tx.commit().await?;
                Ok(rec)
            }

            async fn import_denied_parties(
                &self,
                actor: &Actor,
                parties: Vec<DeniedParty>,
                now: i64,
            ) -> Result<i64> {
                let mut tx = self.begin_write().await?;
                let mut n = 0;
                for p in &parties {
                    let key = party_key(&p.name);
                    if key.is_empty() {
                        return Err(StoreError::invalid("name", format!("`{}` has no letters or digits", p.name)));
                    }
                    sqlx::query(
                        "INSERT INTO denied_parties (name_key, name, country, source, added_at) \
                         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (name_key) DO UPDATE SET \
                         name = excluded.name, country = excluded.country, \
                         source = excluded.source, added_at = excluded.added_at",
                    )
                    .bind(&key)
                    .bind(&p.name)
                    .bind(&p.country)
                    .bind(&p.source)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                    n += 1;
                }
                let sources: std::collections::BTreeSet<&str> =
                    parties.iter().map(|p| p.source.as_str()).collect();
                audit(
                    &mut tx,
                    actor,
                    "denied-parties.import",
                    "denied-parties",
                    &serde_json::json!({"rows": n, "sources": sources}).to_string(),
                    now,
                )
                .await?;
                tx.commit().await?;
                Ok(n)
            }

            async fn list_denied_parties(&self) -> Result<Vec<DeniedParty>> {
                let rows: Vec<(String, String, String)> = sqlx::query_as(
                    "SELECT name, country, source FROM denied_parties ORDER BY name_key",
                )
                .fetch_all(&self.read)
                .await?;
                Ok(rows
                    .into_iter()
                    .map(|(name, country, source)| DeniedParty { name, country, source })
                    .collect())
            }

            async fn record_decision(
                &self,
                actor: &Actor,
                action: &str,
                target: &str,
                detail: &str,
                now: i64,
            ) -> Result<()> {
                let mut tx = self.begin_write().await?;
                audit(&mut tx, actor, action, target, detail, now).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn hold_jobs(&self, jobs: &[i64], reason: Option<&str>, now: i64) -> Result<()> {
                if jobs.is_empty() {
                    return Ok(());
                }
                let mut tx = self.begin_write().await?;
                for chunk in jobs.chunks(500) {
                    // Ids are integers we hold, never text from a request.
                    let list: Vec<String> = chunk.iter().map(|i| i.to_string()).collect();
                    sqlx::query(&format!(
                        "UPDATE jobs SET reason = $1, updated_at = $2 \
                         WHERE state = 'queued' AND id IN ({})",
                        list.join(",")
                    ))
                    .bind(reason)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                }
                tx.commit().await?;
                Ok(())
            }

            async fn create_call(&self, actor: &Actor, c: NewCall, now: i64) -> Result<CallRecord> {
                if c.capacity_gpus <= 0 {
                    return Err(StoreError::invalid("capacity_gpus", "must be positive"));
                }
                let mut tx = self.begin_write().await?;
                let row = sqlx::query(
                    "INSERT INTO calls (programme, name, gpu_model, capacity_gpus, tracks, state, \
                     created_at) VALUES ($1, $2, $3, $4, $5, 'open', $6) RETURNING *",
                )
                .bind(&c.programme)
                .bind(&c.name)
                .bind(c.gpu_model.as_str())
                .bind(c.capacity_gpus)
                .bind(&c.tracks)
                .bind(now)
                .fetch_one(&mut *tx)
                .await
                .map_err(|e| unique(e, "name", format!("call `{}`", c.name)))?;
                let rec = call_row(&row)?;
                let detail = serde_json::json!({
                    "programme": c.programme,
                    "name": c.name,
                    "gpu_model": c.gpu_model,
                    "capacity_gpus": c.capacity_gpus,
                    // Tracks are stored as JSON text; kept as JSON in the entry, not quoted.
                    "tracks": serde_json::from_str::<serde_json::Value>(&c.tracks)
                        .unwrap_or_else(|_| c.tracks.clone().into()),
                })
                .to_string();
                audit(&mut tx, actor, "call.create", &format!("call/{}", rec.id), &detail, now).await?;
                tx.commit().await?;
                Ok(rec)
            }

            async fn get_call(&self, id: i64) -> Result<CallRecord> {
                let mut tx = self.begin_read().await?;
                call_in(&mut tx, id).await
            }

            async fn list_calls(&self) -> Result<Vec<CallRecord>> {
                let rows = sqlx::query("SELECT * FROM calls ORDER BY id")
                    .fetch_all(&self.read)
                    .await?;
                rows.iter().map(call_row).collect()
            }

            async fn set_call_state(
                &self,
                actor: &Actor,
                id: i64,
                state: CallState,
                now: i64,
            ) -> Result<CallRecord> {
                if state == CallState::Awarded {
                    return Err(StoreError::invalid("state", "a call is awarded by making its awards"));
                }
                let mut tx = self.begin_write().await?;
                let call = call_in(&mut tx, id).await?;
                if call.state == CallState::Awarded {
                    return Err(StoreError::conflict("state", format!("call `{}` has been awarded", call.name)));
                }
                sqlx::query("UPDATE calls SET state = $1 WHERE id = $2")
                    .bind(state.as_str())
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                audit(&mut tx, actor, &format!("call.{state}"), &format!("call/{id}"), "{}", now).await?;
                let rec = call_in(&mut tx, id).await?;
                tx.commit().await?;
                Ok(rec)
            }

            async fn create_application(
                &self,
                actor: &Actor,
                a: NewApplication,
                now: i64,
            ) -> Result<ApplicationRecord> {
                let mut tx = self.begin_write().await?;
                let call = call_in(&mut tx, a.call_id).await?;
                if call.state != CallState::Open {
                    return Err(StoreError::conflict(
                        "call",
                        format!("call `{}` is {} and takes no applications", call.name, call.state),
                    ));
                }
                let id: i64 = sqlx::query_scalar(
                    "INSERT INTO applications (call_id, project_id, track, gpus, days, region, plan, \
                     state, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, 'submitted', $8) \
                     RETURNING id",
                )
                .bind(a.call_id)
                .bind(a.project_id)
                .bind(&a.track)
                .bind(a.gpus)
                .bind(a.days)
                .bind(&a.region)
                .bind(&a.plan)
                .bind(now)
                .fetch_one(&mut *tx)
                .await
                .map_err(|e| unique(e, "project", format!("an application of project {} to this call", a.project_id)))?;
                let detail = serde_json::json!({
                    "call": a.call_id,
                    "project": a.project_id,
                    "track": a.track,
                    "gpus": a.gpus,
                    "days": a.days,
                })
                .to_string();
                audit(&mut tx, actor, "application.create", &format!("application/{id}"), &detail, now)
                    .await?;
                let rec = application_in(&mut tx, id).await?;
                tx.commit().await?;
                Ok(rec)
            }

            async fn get_application(&self, id: i64) -> Result<ApplicationRecord> {
                let mut tx = self.begin_read().await?;
                application_in(&mut tx, id).await
            }

            async fn list_applications(&self, call: i64) -> Result<Vec<ApplicationRecord>> {
                let mut tx = self.begin_read().await?;
                let ids: Vec<i64> =
                    sqlx::query_scalar("SELECT id FROM applications WHERE call_id = $1 ORDER BY id")
                        .bind(call)
                        .fetch_all(&mut *tx)
                        .await?;
                let mut out = Vec::with_capacity(ids.len());
                for id in ids {
                    out.push(application_in(&mut tx, id).await?);
                }
                Ok(out)
            }

            async fn score_application(
                &self,
                actor: &Actor,
                application: i64,
                reviewer: &str,
                score: i64,
                comment: &str,
                now: i64,
            ) -> Result<ApplicationRecord> {
                let mut tx = self.begin_write().await?;
                let app = application_in(&mut tx, application).await?;
                if app.state != ApplicationState::Submitted {
                    return Err(StoreError::conflict(
                        "application",
                        format!("application {application} has been decided ({})", app.state),
                    ));
                }
                sqlx::query(
                    "INSERT INTO scores (application_id, reviewer, score, comment, at) \
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (application_id, reviewer) \
                     DO UPDATE SET score = excluded.score, comment = excluded.comment, at = excluded.at",
                )
                .bind(application)
                .bind(reviewer)
                .bind(score)
                .bind(comment)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                let detail = serde_json::json!({"reviewer": reviewer, "score": score}).to_string();
                audit(&mut tx, actor, "application.score", &format!("application/{application}"), &detail, now)
                    .await?;
                let rec = application_in(&mut tx, application).await?;
                tx.commit().await?;
                Ok(rec)
            }

            async fn award_call(
                &self,
                actor: &Actor,
                call: i64,
                decisions: Vec<CallDecision>,
                now: i64,
            ) -> Result<Vec<AwardRecord>> {
                let mut tx = self.begin_write().await?;
                let c = call_in(&mut tx, call).await?;
                if c.state == CallState::Awarded {
                    return Err(StoreError::conflict("call", format!("call `{}` has already been awarded", c.name)));
                }
                let mut awards = Vec::new();
                for d in decisions {
                    let (app, state, detail) = match &d {
                        CallDecision::Award(a) => {
                            let rec = insert_award(&mut tx, actor, a, now).await?;
                            let detail = serde_json::json!({"award": rec.id}).to_string();
                            awards.push(rec);
                            (a.application_id.unwrap_or(0), ApplicationState::Awarded, detail)
                        }
                        CallDecision::Decline { application_id, reason } => (
                            *application_id,
                            ApplicationState::Declined,
                            serde_json::json!({"reason": reason}).to_string(),
                        ),
                    };
                    let done = sqlx::query(
                        "UPDATE applications SET state = $1 WHERE id = $2 AND call_id = $3 \
                         AND state = 'submitted'",
                    )
                    .bind(state.as_str())
                    .bind(app)
                    .bind(call)
                    .execute(&mut *tx)
                    .await?;
                    if done.rows_affected() != 1 {
                        return Err(StoreError::conflict(
                            "application",
                            format!("application {app} is not a submitted application of this call"),
                        ));
                    }
                    let action = match state {
                        ApplicationState::Awarded => "application.award",
                        _ => "application.decline",
                    };
                    audit(&mut tx, actor, action, &format!("application/{app}"), &detail, now).await?;
                }
                sqlx::query("UPDATE calls SET state = 'awarded' WHERE id = $1")
                    .bind(call)
                    .execute(&mut *tx)
                    .await?;
                audit(
                    &mut tx,
                    actor,
                    "call.award",
                    &format!("call/{call}"),
                    &serde_json::json!({"awards": awards.len()}).to_string(),
                    now,
                )
                .await?;
                tx.commit().await?;
                Ok(awards)
            }

            async fn snapshot(&self) -> Result<Snapshot> {
                let mut tx = self.begin_read().await?;
                let cursor: Option<i64> = sqlx::query_scalar("SELECT MAX(seq) FROM events")
                    .fetch_one(&mut *tx)
                    .await?;
                let pools = sqlx::query("SELECT * FROM pools ORDER BY id")
                    .fetch_all(&mut *tx)
                    .await?
                    .iter()
                    .map(pool_row)
                    .collect::<Result<_>>()?;
                let nodes = sqlx::query(&format!("SELECT {NODE_COLS} ORDER BY n.id"))
                    .fetch_all(&mut *tx)
                    .await?
                    .iter()
                    .map(node_row)
                    .collect::<Result<_>>()?;
                let orgs = sqlx::query("SELECT * FROM orgs ORDER BY id")
                    .fetch_all(&mut *tx)
                    .await?
                    .iter()
                    .map(org_row)
                    .collect::<Result<_>>()?;
                let projects = sqlx::query("SELECT * FROM projects ORDER BY id")
                    .fetch_all(&mut *tx)
                    .await?
                    .iter()
                    .map(project_row)
                    .collect::<Result<_>>()?;
                let queued = sqlx::query("SELECT * FROM jobs WHERE state = 'queued' ORDER BY id")
                    .fetch_all(&mut *tx)
                    .await?
                    .iter()
                    .map(job_row)
                    .collect::<Result<_>>()?;
                let live = sqlx::query(
                    "SELECT * FROM attempts WHERE state IN ('assigned', 'running', 'stopping') \
                     ORDER BY id",
                )
                .fetch_all(&mut *tx)
                .await?;
                let mut running = Vec::with_capacity(live.len());
                for r in &live {
                    let a = attempt_row(r)?;
                    running.push((job_in(&mut tx, a.job_id).await?, a));
                }
                Ok(Snapshot {
                    cursor: cursor.unwrap_or(0),
                    pools,
                    nodes,
                    orgs,
                    projects,
                    queued,
                    running,
                })
            }

            async fn events_after(&self, cursor: i64, limit: i64) -> Result<Vec<EventRecord>> {
                let rows = sqlx::query("SELECT * FROM events WHERE seq > $1 ORDER BY seq LIMIT $2")
                    .bind(cursor)
                    .bind(limit)
                    .fetch_all(&self.read)
                    .await?;
                rows.iter().map(event_row).collect()
            }

            async fn start_attempts(
                &self,
                holder: &str,
                epoch: i64,
                starts: Vec<NewAttempt>,
                now: i64,
            ) -> Result<(Vec<AttemptRecord>, Vec<i64>)> {
                let mut tx = self.begin_write().await?;
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
                if starts.is_empty() {
                    return Ok((Vec::new(), Vec::new()));
                }
                // The state check in the WHERE clause is what makes a start happen once: a job
                // cancelled or already started since the decision is left alone (and skipped).
                // Ids are integers we hold, never text from a request.
                let ids: Vec<String> = starts.iter().map(|s| s.job_id.to_string()).collect();
                let rows = sqlx::query(&format!(
                    "UPDATE jobs SET state = 'running', attempts = attempts + 1, updated_at = $1 \
                     WHERE state = 'queued' AND id IN ({}) RETURNING *",
                    ids.join(",")
                ))
                .bind(now)
                .fetch_all(&mut *tx)
                .await?;
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
                // Bounded statement size: ten parameters per attempt.
                let mut started = Vec::with_capacity(go.len());
                for part in go.chunks(1000) {
                let mut values = Vec::with_capacity(part.len());
                for s in part {
                    let job = &jobs[&s.job_id];
                    values.push((
                        job.id,
                        job.attempts,
                        serde_json::to_string(&s.placement)?,
                        s.gpu_model.as_ref().map(|m| m.to_string()),
                        s.borrowing,
                        job.spec.time_limit.map(|t| now + t.millis()),
                    ));
                }
                let mut qb = sqlx::QueryBuilder::<$db>::new(
                    "INSERT INTO attempts (job_id, fence, epoch, placement, gpu_model, borrowing, \
                     state, created_at, deadline, gpu_ms) ",
                );
                qb.push_values(values, |mut b, (job, fence, placement, model, borrowing, deadline)| {
                    b.push_bind(job)
                        .push_bind(fence)
                        .push_bind(epoch)
                        .push_bind(placement)
                        .push_bind(model)
                        .push_bind(borrowing)
                        .push_bind("assigned")
                        .push_bind(now)
                        .push_bind(deadline)
                        .push_bind(0i64);
                });
                qb.push(" RETURNING *");
                let rows = qb.build().fetch_all(&mut *tx).await?;
                for r in &rows {
                    started.push(attempt_row(r)?);
                }
                }
                started.sort_by_key(|a| a.id);
                let mut tasks = Vec::new();
                for a in &started {
                    for (i, t) in a.placement.tasks.iter().enumerate() {
                        tasks.push((a.id, i as i64, t.node.get() as i64, serde_json::to_string(&t.gpus)?));
                    }
                }
                // Bounded statement size: at most 4 parameters per task.
                for chunk in tasks.chunks(4096) {
                    let mut qb = sqlx::QueryBuilder::<$db>::new(
                        "INSERT INTO tasks (attempt_id, idx, node_id, gpus, state) ",
                    );
                    qb.push_values(chunk, |mut b, (attempt, idx, node, gpus)| {
                        b.push_bind(*attempt)
                            .push_bind(*idx)
                            .push_bind(*node)
                            .push_bind(gpus.clone())
                            .push_bind("assigned");
                    });
                    qb.build().execute(&mut *tx).await?;
                }
                for part in started.chunks(1000) {
                let mut qb = sqlx::QueryBuilder::<$db>::new(
                    "INSERT INTO events (at, kind, job_id, attempt_id, node_id, detail) ",
                );
                qb.push_values(part, |mut b, a| {
                    b.push_bind(now)
                        .push_bind(EventKind::Started.as_str())
                        .push_bind(a.job_id)
                        .push_bind(a.id)
                        .push_bind(None::<i64>)
                        .push_bind("");
                });
                qb.build().execute(&mut *tx).await?;
                }
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

            async fn mark_lost_nodes(&self, cutoff: i64, now: i64) -> Result<Vec<i64>> {
                let mut tx = self.begin_write().await?;
                let lost: Vec<i64> = sqlx::query_scalar(
                    "UPDATE nodes SET state = 'down', down_reason = 'lost' \
                     WHERE state <> 'down' AND last_heartbeat < $1 RETURNING id",
                )
                .bind(cutoff)
                .fetch_all(&mut *tx)
                .await?;
                for &node in &lost {
                    requeue_node_attempts(&mut tx, node, now).await?;
                    audit(&mut tx, &Actor::system("controller"), "node.lost", &format!("node/{node}"), "{}", now)
                        .await?;
                    event(&mut tx, EventKind::FleetChanged, None, None, Some(node), "lost", now)
                        .await?;
                }
                tx.commit().await?;
                Ok(lost)
            }

            async fn set_node_agent(
                &self,
                node: i64,
                limits: Option<&str>,
                address: Option<&str>,
                container_runtime: Option<&str>,
            ) -> Result<NodeRecord> {
                let mut tx = self.begin_write().await?;
                sqlx::query(
                    "UPDATE nodes SET limits = $1, address = $2, container_runtime = $3 \
                     WHERE id = $4",
                )
                .bind(limits)
                .bind(address)
                .bind(container_runtime)
                .bind(node)
                    .execute(&mut *tx)
                    .await?;
                let row = sqlx::query(&format!("SELECT {NODE_COLS} WHERE n.id = $1"))
                    .bind(node)
                    .fetch_optional(&mut *tx)
                    .await?
                    .ok_or_else(|| StoreError::not_found("node", node))?;
                let rec = node_row(&row)?;
                tx.commit().await?;
                Ok(rec)
            }

            async fn report_node_health(
                &self,
                actor: &Actor,
                node: i64,
                failure: Option<&str>,
                now: i64,
            ) -> Result<(NodeRecord, Vec<i64>)> {
                let mut tx = self.begin_write().await?;
                let before = sqlx::query(&format!("SELECT {NODE_COLS} WHERE n.id = $1"))
                    .bind(node)
                    .fetch_optional(&mut *tx)
                    .await?
                    .ok_or_else(|| StoreError::not_found("node", node))?;
                let before = node_row(&before)?;
                let mut requeued = Vec::new();
                match failure {
                    Some(what) => {
                        sqlx::query("UPDATE nodes SET health = $1 WHERE id = $2")
                            .bind(what)
                            .bind(node)
                            .execute(&mut *tx)
                            .await?;
                        // The first failing report drains and requeues; repeats just refresh
                        // what failed, unless the node is up again meanwhile (lost while
                        // unhealthy, then back), which drains it again.
                        if before.health.is_none() || before.state == NodeState::Up {
                            // The same path as a lost node.
                            requeued.extend(requeue_node_attempts(&mut tx, node, now).await?);
                            let detail = serde_json::json!({"failure": what}).to_string();
                            audit(&mut tx, actor, "node.unhealthy", &format!("node/{node}"), &detail, now)
                                .await?;
                            if before.state == NodeState::Up {
                                sqlx::query(
                                    "UPDATE nodes SET state = 'draining', down_reason = 'unhealthy' \
                                     WHERE id = $1",
                                )
                                .bind(node)
                                .execute(&mut *tx)
                                .await?;
                                event(&mut tx, EventKind::FleetChanged, None, None, Some(node), "draining", now)
                                    .await?;
                            }
                        }
                    }
                    None if before.health.is_some() => {
                        sqlx::query("UPDATE nodes SET health = NULL WHERE id = $1")
                            .bind(node)
                            .execute(&mut *tx)
                            .await?;
                        audit(&mut tx, actor, "node.healthy", &format!("node/{node}"), "{}", now)
                            .await?;
                        // Only a drain the health check made is undone; an operator's stays.
                        let resumed = sqlx::query(
                            "UPDATE nodes SET state = 'up', down_reason = NULL \
                             WHERE id = $1 AND state = 'draining' AND down_reason = 'unhealthy'",
                        )
                        .bind(node)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                        if resumed > 0 {
                            event(&mut tx, EventKind::FleetChanged, None, None, Some(node), "up", now)
                                .await?;
                        }
                    }
                    None => {}
                }
                let row = sqlx::query(&format!("SELECT {NODE_COLS} WHERE n.id = $1"))
                    .bind(node)
                    .fetch_one(&mut *tx)
                    .await?;
                let rec = node_row(&row)?;
                tx.commit().await?;
                Ok((rec, requeued))
            }

            async fn assignments(&self, node: i64) -> Result<Vec<Assignment>> {
                let mut tx = self.begin_read().await?;
                let tasks: Vec<(i64, i64, String, String)> = sqlx::query_as(
                    "SELECT t.attempt_id, t.idx, t.gpus, t.state FROM tasks t \
                     JOIN attempts a ON a.id = t.attempt_id \
                     WHERE t.node_id = $1 AND t.state IN ('assigned', 'running') \
                     AND a.state IN ('assigned', 'running', 'stopping') ORDER BY t.attempt_id, t.idx",
                )
                .bind(node)
                .fetch_all(&mut *tx)
                .await?;
                let mut out = Vec::with_capacity(tasks.len());
                for (attempt_id, idx, gpus, state) in tasks {
                    let row = sqlx::query("SELECT * FROM attempts WHERE id = $1")
                        .bind(attempt_id)
                        .fetch_one(&mut *tx)
                        .await?;
                    let attempt = attempt_row(&row)?;
                    let job = job_in(&mut tx, attempt.job_id).await?;
                    let (user_name, uid, gid): (String, Option<i64>, Option<i64>) =
                        sqlx::query_as("SELECT name, uid, gid FROM users WHERE id = $1")
                            .bind(job.user_id)
                            .fetch_optional(&mut *tx)
                            .await?
                            .unwrap_or_default();
                    let project_gid: Option<i64> =
                        sqlx::query_scalar("SELECT gid FROM projects WHERE id = $1")
                            .bind(job.project_id)
                            .fetch_optional(&mut *tx)
                            .await?
                            .flatten();
                    let cached = if attempt.placement.tasks.len() >= crate::gang_cache::PEERS_CACHED_FROM {
                        self.peers.get(attempt_id)
                    } else {
                        None
                    };
                    let peers: Vec<String> = match cached {
                        Some(p) => (*p).clone(),
                        None => {
                            let p: Vec<String> = sqlx::query_scalar(
                                "SELECT COALESCE(n.address, n.name) FROM tasks t JOIN nodes n ON n.id = t.node_id \
                                 WHERE t.attempt_id = $1 ORDER BY t.idx",
                            )
                            .bind(attempt_id)
                            .fetch_all(&mut *tx)
                            .await?;
                            if p.len() >= crate::gang_cache::PEERS_CACHED_FROM {
                                self.peers.put(attempt_id, std::sync::Arc::new(p.clone()));
                            }
                            p
                        }
                    };
                    let array = match job.array_job_id {
                        Some(parent) => sqlx::query_scalar::<_, Option<String>>(
                            "SELECT array_spec FROM jobs WHERE id = $1",
                        )
                        .bind(parent)
                        .fetch_optional(&mut *tx)
                        .await?
                        .flatten()
                        .and_then(|a| haneul_model::ArraySpec::parse(&a).ok()),
                        None => None,
                    };
                    out.push(Assignment {
                        array,
                        job,
                        attempt,
                        task: idx,
                        gpus: serde_json::from_str(&gpus)?,
                        task_state: parse_enum(&state, TaskState::parse, "task state")?,
                        peers,
                        user_name,
                        uid,
                        gid,
                        project_gid,
                    });
                }
                Ok(out)
            }

            async fn report_task(&self, r: TaskReport, now: i64) -> Result<AttemptRecord> {
                let mut tx = self.begin_write().await?;
                let rec = report_in(&mut tx, &r, now).await?;
                tx.commit().await?;
                Ok(rec)
            }

            async fn report_tasks(
                &self,
                reports: &[TaskReport],
                now: i64,
            ) -> Result<Vec<Result<AttemptRecord>>> {
                let mut tx = self.begin_write().await?;
                let mut out = Vec::with_capacity(reports.len());
                for r in reports {
                    match report_in(&mut tx, r, now).await {
                        // A refusal happens before the report writes anything, so its
                        // neighbours carry on; the database failing ends the whole batch.
                        Err(e @ (StoreError::Database(_) | StoreError::Corrupt(_))) => return Err(e),
                        other => out.push(other),
                    }
                }
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

            async fn idempotent_answer(
                &self,
                user: i64,
                key: &str,
                since: i64,
            ) -> Result<Option<IdempotentAnswer>> {
                let row = sqlx::query(
                    "SELECT route, body_hash, status, answer, resource, created_at FROM idempotency \
                     WHERE user_id = $1 AND idem_key = $2 AND created_at >= $3",
                )
                .bind(user)
                .bind(key)
                .bind(since)
                .fetch_optional(&self.read)
                .await?;
                row.map(|r| {
                    Ok(IdempotentAnswer {
                        route: r.try_get("route")?,
                        body_hash: r.try_get("body_hash")?,
                        status: r.try_get("status")?,
                        answer: r.try_get("answer")?,
                        resource: r.try_get("resource")?,
                        created_at: r.try_get("created_at")?,
                    })
                })
                .transpose()
            }

            async fn keep_idempotent_answer(
                &self,
                user: i64,
                key: &str,
                a: &IdempotentAnswer,
                since: i64,
            ) -> Result<bool> {
                let mut tx = self.begin_write().await?;
                sqlx::query("DELETE FROM idempotency WHERE created_at < $1")
                    .bind(since)
                    .execute(&mut *tx)
                    .await?;
                let kept: Option<i64> = sqlx::query_scalar(
                    "INSERT INTO idempotency (user_id, idem_key, route, body_hash, status, answer, \
                     resource, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
                     ON CONFLICT (user_id, idem_key) DO NOTHING RETURNING user_id",
                )
                .bind(user)
                .bind(key)
                .bind(&a.route)
                .bind(&a.body_hash)
                .bind(a.status)
                .bind(&a.answer)
                .bind(a.resource)
                .bind(a.created_at)
                .fetch_optional(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(kept.is_some())
            }

            async fn audit_head(&self) -> Result<Option<AuditRecord>> {
                let row = sqlx::query("SELECT * FROM audit ORDER BY seq DESC LIMIT 1")
                    .fetch_optional(&self.read)
                    .await?;
                row.as_ref().map(audit_row).transpose()
            }

            async fn list_audit(&self, after: i64, limit: i64) -> Result<Vec<AuditRecord>> {
                let rows = sqlx::query("SELECT * FROM audit WHERE seq > $1 ORDER BY seq LIMIT $2")
                    .bind(after)
                    .bind(limit.clamp(1, 10_000))
                    .fetch_all(&self.read)
                    .await?;
                rows.iter().map(audit_row).collect()
            }

            async fn verify_audit(&self) -> Result<i64> {
                let mut prev = String::new();
                let mut after = 0;
                let mut count = 0;
                loop {
                    let page = self.list_audit(after, 1000).await?;
                    let Some(last) = page.last() else { break };
                    after = last.seq;
                    for e in &page {
                        let want = audit_hash(&prev, e.at, &e.actor, &e.action, &e.target, &e.detail);
                        if e.prev_hash != prev {
                            return Err(StoreError::AuditBroken {
                                seq: e.seq,
                                reason: "its link to the entry before does not match".into(),
                            });
                        }
                        if e.hash != want {
                            return Err(StoreError::AuditBroken {
                                seq: e.seq,
                                reason: "its contents do not match its hash".into(),
                            });
                        }
                        prev = e.hash.clone();
                        count += 1;
                    }
                }
                Ok(count)
            }

            async fn acquire_lease(
                &self,
                name: &str,
                holder: &str,
                ttl_ms: i64,
                now: i64,
            ) -> Result<Option<i64>> {
                let mut tx = self.begin_write().await?;
                let epoch: Option<i64> = sqlx::query_scalar(
                    "INSERT INTO leases (name, holder, epoch, expires_at) VALUES ($1, $2, 1, $3) \
                     ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, \
                     epoch = CASE WHEN leases.holder = excluded.holder \
                     AND leases.expires_at > $4 THEN leases.epoch ELSE leases.epoch + 1 END, \
                     expires_at = excluded.expires_at \
                     WHERE leases.holder = excluded.holder OR leases.expires_at <= $4 \
                     RETURNING epoch",
                )
                .bind(name)
                .bind(holder)
                .bind(now + ttl_ms)
                .bind(now)
                .fetch_optional(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(epoch)
            }

            async fn release_lease(&self, name: &str, holder: &str) -> Result<()> {
                let mut tx = self.begin_write().await?;
                sqlx::query("UPDATE leases SET expires_at = 0 WHERE name = $1 AND holder = $2")
                    .bind(name)
                    .bind(holder)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(())
            }

            async fn lease_holder(&self, name: &str, now: i64) -> Result<Option<String>> {
                Ok(sqlx::query_scalar(
                    "SELECT holder FROM leases WHERE name = $1 AND expires_at > $2",
                )
                .bind(name)
                .bind(now)
                .fetch_optional(&self.read)
                .await?)
            }

            // --- telemetry ---

            async fn record_gpu_samples(
                &self,
                node: i64,
                samples: &[GpuSampleRecord],
                cpu: &[TaskCpuRecord],
            ) -> Result<()> {
                // Folded here first, so that a batch holding several samples of one GPU (an
                // agent's backlog) writes each row once.
                let mut usage: BTreeMap<(i64, &str), GpuUsageRecord> = BTreeMap::new();
                let mut minutes: BTreeMap<(i64, &str, i64), GpuMinuteRecord> = BTreeMap::new();
                for s in samples {
                    let energy = s.power_w * s.period_ms / 3600;
                    let busy = s.util_pct * s.period_ms / 100;
                    let u = usage.entry((s.job_id, s.gpu_uuid.as_str())).or_insert_with(|| GpuUsageRecord {
                        job_id: s.job_id,
                        gpu_uuid: s.gpu_uuid.clone(),
                        node_id: node,
                        gpu_index: s.gpu_index,
                        samples: 0,
                        util_sum: 0,
                        util_max: 0,
                        mem_max_mib: 0,
                        energy_mwh: 0,
                        sampled_ms: 0,
                        busy_ms: 0,
                        first_at: s.at,
                        last_at: s.at,
                    });
                    u.samples += 1;
                    u.util_sum += s.util_pct;
                    u.util_max = u.util_max.max(s.util_pct);
                    u.mem_max_mib = u.mem_max_mib.max(s.mem_mib);
                    u.energy_mwh += energy;
                    u.sampled_ms += s.period_ms;
                    u.busy_ms += busy;
                    u.first_at = u.first_at.min(s.at);
                    u.last_at = u.last_at.max(s.at);
                    let minute = s.at - s.at.rem_euclid(60_000);
                    let m = minutes
                        .entry((s.job_id, s.gpu_uuid.as_str(), minute))
                        .or_insert_with(|| GpuMinuteRecord {
                            job_id: s.job_id,
                            gpu_uuid: s.gpu_uuid.clone(),
                            minute,
                            samples: 0,
                            util_sum: 0,
                            util_max: 0,
                            mem_max_mib: 0,
                            power_sum_w: 0,
                            temp_max_c: 0,
                            energy_mwh: 0,
                        });
                    m.samples += 1;
                    m.util_sum += s.util_pct;
                    m.util_max = m.util_max.max(s.util_pct);
                    m.mem_max_mib = m.mem_max_mib.max(s.mem_mib);
                    m.power_sum_w += s.power_w;
                    m.temp_max_c = m.temp_max_c.max(s.temp_c);
                    m.energy_mwh += energy;
                }
                // Telemetry touches no event, audit or lease row: it takes the write pool
                // without the writers' lock, so it never queues behind the controller.
                let mut tx = self.write.begin().await?;
                for u in usage.values() {
                    sqlx::query(
                        "INSERT INTO gpu_usage (job_id, gpu_uuid, node_id, gpu_index, samples, \
                         util_sum, util_max, mem_max_mib, energy_mwh, sampled_ms, busy_ms, \
                         first_at, last_at) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) \
                         ON CONFLICT (job_id, gpu_uuid) DO UPDATE SET \
                         node_id = excluded.node_id, gpu_index = excluded.gpu_index, \
                         samples = gpu_usage.samples + excluded.samples, \
                         util_sum = gpu_usage.util_sum + excluded.util_sum, \
                         util_max = CASE WHEN excluded.util_max > gpu_usage.util_max \
                           THEN excluded.util_max ELSE gpu_usage.util_max END, \
                         mem_max_mib = CASE WHEN excluded.mem_max_mib > gpu_usage.mem_max_mib \
                           THEN excluded.mem_max_mib ELSE gpu_usage.mem_max_mib END, \
                         energy_mwh = gpu_usage.energy_mwh + excluded.energy_mwh, \
                         sampled_ms = gpu_usage.sampled_ms + excluded.sampled_ms, \
                         busy_ms = gpu_usage.busy_ms + excluded.busy_ms, \
                         first_at = CASE WHEN excluded.first_at < gpu_usage.first_at \
                           THEN excluded.first_at ELSE gpu_usage.first_at END, \
                         last_at = CASE WHEN excluded.last_at > gpu_usage.last_at \
                           THEN excluded.last_at ELSE gpu_usage.last_at END",
                    )
                    .bind(u.job_id)
                    .bind(&u.gpu_uuid)
                    .bind(u.node_id)
                    .bind(u.gpu_index)
                    .bind(u.samples)
                    .bind(u.util_sum)
                    .bind(u.util_max)
                    .bind(u.mem_max_mib)
                    .bind(u.energy_mwh)
                    .bind(u.sampled_ms)
                    .bind(u.busy_ms)
                    .bind(u.first_at)
                    .bind(u.last_at)
                    .execute(&mut *tx)
                    .await?;
                }
                for m in minutes.values() {
                    sqlx::query(
                        "INSERT INTO gpu_minutes (job_id, gpu_uuid, minute, samples, util_sum, \
                         util_max, mem_max_mib, power_sum_w, temp_max_c, energy_mwh) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
                         ON CONFLICT (job_id, gpu_uuid, minute) DO UPDATE SET \
                         samples = gpu_minutes.samples + excluded.samples, \
                         util_sum = gpu_minutes.util_sum + excluded.util_sum, \
                         util_max = CASE WHEN excluded.util_max > gpu_minutes.util_max \
                           THEN excluded.util_max ELSE gpu_minutes.util_max END, \
                         mem_max_mib = CASE WHEN excluded.mem_max_mib > gpu_minutes.mem_max_mib \
                           THEN excluded.mem_max_mib ELSE gpu_minutes.mem_max_mib END, \
                         power_sum_w = gpu_minutes.power_sum_w + excluded.power_sum_w, \
                         temp_max_c = CASE WHEN excluded.temp_max_c > gpu_minutes.temp_max_c \
                           THEN excluded.temp_max_c ELSE gpu_minutes.temp_max_c END, \
                         energy_mwh = gpu_minutes.energy_mwh + excluded.energy_mwh",
                    )
                    .bind(m.job_id)
                    .bind(&m.gpu_uuid)
                    .bind(m.minute)
                    .bind(m.samples)
                    .bind(m.util_sum)
                    .bind(m.util_max)
                    .bind(m.mem_max_mib)
                    .bind(m.power_sum_w)
                    .bind(m.temp_max_c)
                    .bind(m.energy_mwh)
                    .execute(&mut *tx)
                    .await?;
                }
                for c in cpu {
                    sqlx::query(
                        "INSERT INTO task_cpu (job_id, fence, task, cpu_ms) VALUES ($1, $2, $3, $4) \
                         ON CONFLICT (job_id, fence, task) DO UPDATE SET cpu_ms = \
                         CASE WHEN excluded.cpu_ms > task_cpu.cpu_ms \
                           THEN excluded.cpu_ms ELSE task_cpu.cpu_ms END",
                    )
                    .bind(c.job_id)
                    .bind(c.fence)
                    .bind(c.task)
                    .bind(c.cpu_ms)
                    .execute(&mut *tx)
                    .await?;
                }
                tx.commit().await?;
                Ok(())
            }

            async fn job_gpu_usage(&self, job: i64) -> Result<Vec<GpuUsageRecord>> {
                let rows = sqlx::query(
                    "SELECT job_id, gpu_uuid, node_id, gpu_index, samples, util_sum, util_max, \
                     mem_max_mib, energy_mwh, sampled_ms, busy_ms, first_at, last_at \
                     FROM gpu_usage WHERE job_id = $1 ORDER BY node_id, gpu_index, gpu_uuid",
                )
                .bind(job)
                .fetch_all(&self.read)
                .await?;
                rows.iter()
                    .map(|r| {
                        Ok(GpuUsageRecord {
                            job_id: r.try_get("job_id")?,
                            gpu_uuid: r.try_get("gpu_uuid")?,
                            node_id: r.try_get("node_id")?,
                            gpu_index: r.try_get("gpu_index")?,
                            samples: r.try_get("samples")?,
                            util_sum: r.try_get("util_sum")?,
                            util_max: r.try_get("util_max")?,
                            mem_max_mib: r.try_get("mem_max_mib")?,
                            energy_mwh: r.try_get("energy_mwh")?,
                            sampled_ms: r.try_get("sampled_ms")?,
                            busy_ms: r.try_get("busy_ms")?,
                            first_at: r.try_get("first_at")?,
                            last_at: r.try_get("last_at")?,
                        })
                    })
                    .collect()
            }

            async fn job_gpu_minutes(&self, job: i64) -> Result<Vec<GpuMinuteRecord>> {
                let rows = sqlx::query(
                    "SELECT job_id, gpu_uuid, minute, samples, util_sum, util_max, mem_max_mib, \
                     power_sum_w, temp_max_c, energy_mwh FROM gpu_minutes WHERE job_id = $1 \
                     ORDER BY minute, gpu_uuid",
                )
                .bind(job)
                .fetch_all(&self.read)
                .await?;
                rows.iter()
                    .map(|r| {
                        Ok(GpuMinuteRecord {
                            job_id: r.try_get("job_id")?,
                            gpu_uuid: r.try_get("gpu_uuid")?,
                            minute: r.try_get("minute")?,
                            samples: r.try_get("samples")?,
                            util_sum: r.try_get("util_sum")?,
                            util_max: r.try_get("util_max")?,
                            mem_max_mib: r.try_get("mem_max_mib")?,
                            power_sum_w: r.try_get("power_sum_w")?,
                            temp_max_c: r.try_get("temp_max_c")?,
                            energy_mwh: r.try_get("energy_mwh")?,
                        })
                    })
                    .collect()
            }

            async fn job_task_cpu(&self, job: i64) -> Result<Vec<TaskCpuRecord>> {
                let rows: Vec<(i64, i64, i64, i64)> = sqlx::query_as(
                    "SELECT job_id, fence, task, cpu_ms FROM task_cpu WHERE job_id = $1 \
                     ORDER BY fence, task",
                )
                .bind(job)
                .fetch_all(&self.read)
                .await?;
                Ok(rows
                    .into_iter()
                    .map(|(job_id, fence, task, cpu_ms)| TaskCpuRecord {
                        job_id,
                        fence,
                        task,
                        cpu_ms,
                    })
                    .collect())
            }

            async fn recent_gpu_use(&self, since: i64) -> Result<Vec<RecentGpuUse>> {
                let rows: Vec<(i64, i64, i64, i64)> = sqlx::query_as(
                    "SELECT job_id, CAST(SUM(samples) AS BIGINT), CAST(SUM(util_sum) AS BIGINT), \
                     MIN(minute) FROM gpu_minutes WHERE minute >= $1 \
                     GROUP BY job_id ORDER BY job_id",
                )
                .bind(since)
                .fetch_all(&self.read)
                .await?;
                Ok(rows
                    .into_iter()
                    .map(|(job_id, samples, util_sum, first_minute)| RecentGpuUse {
                        job_id,
                        samples,
                        util_sum,
                        first_minute,
                    })
                    .collect())
            }

            async fn downsample_gpu_minutes(
                &self,
                minutes_before: i64,
                hours_before: i64,
            ) -> Result<Downsampled> {
                // Telemetry tables only: the write pool without the writers' lock, like
                // `record_gpu_samples`. The hours are upserted by adding, so an hour whose
                // minutes are folded over two passes comes out the same as in one.
                let mut tx = self.write.begin().await?;
                sqlx::query(
                    "INSERT INTO gpu_hours (job_id, gpu_uuid, hour, minutes, util_mean_milli_sum, \
                     util_max, mem_max_mib, power_mean_mw_sum, temp_max_c, energy_mwh) \
                     SELECT job_id, gpu_uuid, minute - minute % 3600000, COUNT(*), \
                     SUM(util_sum * 1000 / samples), MAX(util_max), MAX(mem_max_mib), \
                     SUM(power_sum_w * 1000 / samples), MAX(temp_max_c), SUM(energy_mwh) \
                     FROM gpu_minutes WHERE minute < $1 AND samples > 0 \
                     GROUP BY job_id, gpu_uuid, minute - minute % 3600000 \
                     ON CONFLICT (job_id, gpu_uuid, hour) DO UPDATE SET \
                     minutes = gpu_hours.minutes + excluded.minutes, \
                     util_mean_milli_sum = gpu_hours.util_mean_milli_sum + excluded.util_mean_milli_sum, \
                     util_max = CASE WHEN excluded.util_max > gpu_hours.util_max \
                       THEN excluded.util_max ELSE gpu_hours.util_max END, \
                     mem_max_mib = CASE WHEN excluded.mem_max_mib > gpu_hours.mem_max_mib \
                       THEN excluded.mem_max_mib ELSE gpu_hours.mem_max_mib END, \
                     power_mean_mw_sum = gpu_hours.power_mean_mw_sum + excluded.power_mean_mw_sum, \
                     temp_max_c = CASE WHEN excluded.temp_max_c > gpu_hours.temp_max_c \
                       THEN excluded.temp_max_c ELSE gpu_hours.temp_max_c END, \
                     energy_mwh = gpu_hours.energy_mwh + excluded.energy_mwh",
                )
                .bind(minutes_before)
                .execute(&mut *tx)
                .await?;
                let minutes = sqlx::query("DELETE FROM gpu_minutes WHERE minute < $1")
                    .bind(minutes_before)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                let hours_dropped = sqlx::query("DELETE FROM gpu_hours WHERE hour < $1")
                    .bind(hours_before)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                tx.commit().await?;
                Ok(Downsampled {
                    minutes,
                    hours_dropped,
                })
            }

            async fn job_gpu_hours(&self, job: i64) -> Result<Vec<GpuHourRecord>> {
                let rows = sqlx::query(
                    "SELECT job_id, gpu_uuid, hour, minutes, util_mean_milli_sum, util_max, \
                     mem_max_mib, power_mean_mw_sum, temp_max_c, energy_mwh FROM gpu_hours \
                     WHERE job_id = $1 ORDER BY hour, gpu_uuid",
                )
                .bind(job)
                .fetch_all(&self.read)
                .await?;
                rows.iter()
                    .map(|r| {
                        Ok(GpuHourRecord {
                            job_id: r.try_get("job_id")?,
                            gpu_uuid: r.try_get("gpu_uuid")?,
                            hour: r.try_get("hour")?,
                            minutes: r.try_get("minutes")?,
                            util_mean_milli_sum: r.try_get("util_mean_milli_sum")?,
                            util_max: r.try_get("util_max")?,
                            mem_max_mib: r.try_get("mem_max_mib")?,
                            power_mean_mw_sum: r.try_get("power_mean_mw_sum")?,
                            temp_max_c: r.try_get("temp_max_c")?,
                            energy_mwh: r.try_get("energy_mwh")?,
                        })
                    })
                    .collect()
            }

            async fn charged_gpu_use(&self, from: i64, until: i64) -> Result<Vec<ChargedGpuUse>> {
                // Only the jobs charged in the period are summed: both aggregates are bounded
                // by them, not by the whole history.
                let rows: Vec<(i64, i64, i64, i64, i64, i64)> = sqlx::query_as(
                    "WITH charged AS ( \
                       SELECT l.attempt_id, a.job_id FROM ledger l \
                       JOIN attempts a ON a.id = l.attempt_id \
                       WHERE l.kind = 'charge' AND l.at >= $1 AND l.at < $2), \
                     measured AS ( \
                       SELECT u.job_id, SUM(u.samples) AS samples, SUM(u.util_sum) AS util_sum, \
                       SUM(u.energy_mwh) AS energy_mwh FROM gpu_usage u \
                       WHERE u.job_id IN (SELECT job_id FROM charged) GROUP BY u.job_id), \
                     job_charges AS ( \
                       SELECT a.job_id, SUM(l.gpu_ms) AS gpu_ms FROM ledger l \
                       JOIN attempts a ON a.id = l.attempt_id \
                       WHERE l.kind = 'charge' AND a.job_id IN (SELECT job_id FROM charged) \
                       GROUP BY a.job_id) \
                     SELECT c.attempt_id, c.job_id, CAST(m.samples AS BIGINT), \
                     CAST(m.util_sum AS BIGINT), CAST(m.energy_mwh AS BIGINT), \
                     CAST(j.gpu_ms AS BIGINT) \
                     FROM charged c JOIN measured m ON m.job_id = c.job_id \
                     JOIN job_charges j ON j.job_id = c.job_id \
                     WHERE m.samples > 0 ORDER BY c.attempt_id",
                )
                .bind(from)
                .bind(until)
                .fetch_all(&self.read)
                .await?;
                Ok(rows
                    .into_iter()
                    .map(
                        |(attempt_id, job_id, samples, util_sum, energy_mwh, job_charged_gpu_ms)| {
                            ChargedGpuUse {
                                attempt_id,
                                job_id,
                                samples,
                                util_sum,
                                energy_mwh,
                                job_charged_gpu_ms,
                            }
                        },
                    )
                    .collect())
            }

            async fn project_gpu_use(&self, from: i64, until: i64) -> Result<Vec<ProjectGpuUse>> {
                let rows: Vec<(i64, i64, i64, i64)> = sqlx::query_as(
                    "SELECT j.project_id, CAST(SUM(u.sampled_ms) AS BIGINT), \
                     CAST(SUM(u.busy_ms) AS BIGINT), CAST(SUM(u.energy_mwh) AS BIGINT) \
                     FROM gpu_usage u JOIN jobs j ON j.id = u.job_id \
                     WHERE u.first_at >= $1 AND u.first_at < $2 \
                     GROUP BY j.project_id ORDER BY j.project_id",
                )
                .bind(from)
                .bind(until)
                .fetch_all(&self.read)
                .await?;
                Ok(rows
                    .into_iter()
                    .map(|(project_id, sampled_gpu_ms, busy_gpu_ms, energy_mwh)| ProjectGpuUse {
                        project_id,
                        sampled_gpu_ms,
                        busy_gpu_ms,
                        energy_mwh,
                    })
                    .collect())
            }
        }
    };
}

pub(crate) use store_impl;
