//! Awards and the ledger: GPU-hour awards per project and GPU model, their top-ups, the GPU
//! weights time is charged at, the ledger of charges, refunds and partners' credits (written when
//! an attempt ends), balances, usage and the notices raised about them. Owns the `awards`,
//! `award_changes`, `ledger`, `gpu_weights` and `notices` tables.

use crate::Result;
use crate::records::*;
use async_trait::async_trait;
use haneul_model::GpuModel;

/// Awards, charges to them, balances and notices. Part of [`crate::Store`].
#[async_trait]
pub trait AwardStore: Send + Sync {
    async fn create_award(&self, actor: &Actor, a: NewAward, now: i64) -> Result<AwardRecord>;
    async fn list_awards(&self, project: Option<i64>) -> Result<Vec<AwardRecord>>;
    /// GPU-milliseconds used per project and GPU model by ended attempts.
    async fn usage(&self, project: Option<i64>) -> Result<Vec<UsageRecord>>;
    /// GPU-milliseconds charged per project and GPU model by the ledger's charge rows after row
    /// `after`, and the id of the last row counted (`after` when none): each ended attempt has
    /// one charge row holding the GPU time [`AwardStore::usage`] counts for it, so a caller
    /// keeping running totals adds each answer to them instead of summing every attempt again.
    /// Rows become visible in id order: every charge is written under the writers' lock.
    async fn usage_after(&self, after: i64) -> Result<(Vec<UsageRecord>, i64)>;
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
}

/// Expands [`AwardStore`] for the backend `$store` on database `$db`, and the helpers of this
/// area, into the backend's module (see `store_impl!`), where the other areas' SQL shares
/// them.
macro_rules! award_store {
    ($store:ty, $db:ty) => {
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

        /// Charges ended attempts' GPU time, as `(attempt, how it ended, GPU-milliseconds)`, to
        /// their projects' awards in the transaction that ends them, in the order given: each
        /// charge takes from what the ones before it left of an award, exactly as one charge at
        /// a time would. The (attempt, kind) key makes a charge, its refund and a partner's
        /// credit each happen at most once, and the shared transaction makes them happen at
        /// least once. Four reads and one write whatever the number of attempts: a batch of
        /// reports ends many at once, under the writers' lock.
        async fn charge_all(
            tx: &mut Tx<'_>,
            ended: &[(AttemptRecord, AttemptState, i64)],
            now: i64,
        ) -> Result<()> {
            if ended.is_empty() {
                return Ok(());
            }
            let mut jobs: Vec<i64> = ended.iter().map(|(a, _, _)| a.job_id).collect();
            jobs.sort_unstable();
            jobs.dedup();
            let of_job: Vec<(i64, i64, i64)> = sqlx::query_as(&format!(
                "SELECT j.id, p.id, p.org_id FROM jobs j JOIN projects p ON p.id = j.project_id \
                 WHERE {}",
                in_ids("j.id", 1)
            ))
            .bind(id_list(&jobs))
            .fetch_all(&mut **tx)
            .await?;
            let of_job: BTreeMap<i64, (i64, i64)> =
                of_job.into_iter().map(|(j, p, o)| (j, (p, o))).collect();
            let weights: Vec<(String, i64)> =
                sqlx::query_as("SELECT gpu_model, weight_milli FROM gpu_weights")
                    .fetch_all(&mut **tx)
                    .await?;
            let weights: BTreeMap<String, i64> = weights.into_iter().collect();
            let mut projects: Vec<i64> = of_job.values().map(|(p, _)| *p).collect();
            projects.sort_unstable();
            projects.dedup();
            // Every award of these projects already valid, with what is left of it; which one
            // an attempt is charged to is chosen below, in the order of the query.
            let awards: Vec<(i64, i64, String, i64, i64)> = sqlx::query_as(&format!(
                "SELECT a.id, a.project_id, a.gpu_model, a.valid_until, CAST(a.gpu_hours * 3600000 \
                 + COALESCE((SELECT SUM(c.gpu_hours) FROM award_changes c WHERE c.award_id = a.id), 0) * 3600000 \
                 - COALESCE((SELECT SUM(l.charged_ms) FROM ledger l WHERE l.award_id = a.id \
                   AND l.kind <> 'credit'), 0) AS BIGINT) \
                 FROM awards a WHERE {} AND a.valid_from <= $2 ORDER BY a.valid_until, a.id",
                in_ids("a.project_id", 1)
            ))
            .bind(id_list(&projects))
            .bind(now)
            .fetch_all(&mut **tx)
            .await?;
            let mut left: BTreeMap<i64, i64> = awards.iter().map(|w| (w.0, w.4)).collect();
            let mut nodes: Vec<i64> = ended
                .iter()
                .filter(|(_, state, _)| *state != AttemptState::NodeLost)
                .filter_map(|(a, _, _)| Some(a.placement.tasks.first()?.node.get() as i64))
                .collect();
            nodes.sort_unstable();
            nodes.dedup();
            let owners: Vec<(i64, Option<i64>)> = if nodes.is_empty() {
                Vec::new()
            } else {
                sqlx::query_as(&format!(
                    "SELECT n.id, p.owner FROM nodes n JOIN blocks b ON b.id = n.block_id \
                     JOIN pools p ON p.id = b.pool_id WHERE {}",
                    in_ids("n.id", 1)
                ))
                .bind(id_list(&nodes))
                .fetch_all(&mut **tx)
                .await?
            };
            let owners: BTreeMap<i64, Option<i64>> = owners.into_iter().collect();
            let mut rows = Vec::with_capacity(ended.len());
            for (a, state, gpu_ms) in ended {
                let &(project, org) = of_job.get(&a.job_id).ok_or_else(|| {
                    StoreError::Corrupt(format!("attempt {} names job {}, not stored", a.id, a.job_id))
                })?;
                let model = a.gpu_model.as_ref().map(|m| m.to_string()).unwrap_or_default();
                let weight = weights.get(&model).copied().unwrap_or(1000);
                // The award that was valid while the attempt ran and expires first, preferring
                // one with time left: hours about to lapse are spent before later ones.
                let started = a.started_at.unwrap_or(a.created_at);
                let valid: Vec<i64> = awards
                    .iter()
                    .filter(|w| w.1 == project && w.2 == model && w.3 > started)
                    .map(|w| w.0)
                    .collect();
                let award = valid
                    .iter()
                    .find(|id| left[*id] > 0)
                    .or(valid.first())
                    .copied();
                let charged = ((*gpu_ms as i128 * weight as i128) / 1000) as i64;
                let row = |kind: LedgerKind, org: i64, award: Option<i64>, sign: i64| {
                    crate::backend::LedgerRow {
                        kind: kind.as_str(),
                        attempt: a.id,
                        project,
                        org,
                        award,
                        gpu_model: model.clone(),
                        gpu_ms: sign * gpu_ms,
                        weight_milli: weight,
                        charged_ms: sign * charged,
                    }
                };
                rows.push(row(LedgerKind::Charge, org, award, 1));
                let mut taken = charged;
                if *state == AttemptState::NodeLost {
                    rows.push(row(LedgerKind::Refund, org, award, -1));
                    taken = 0;
                } else if let Some(owner) = a
                    .placement
                    .tasks
                    .first()
                    .and_then(|t| owners.get(&(t.node.get() as i64)).copied().flatten())
                    .filter(|o| *o != org)
                {
                    rows.push(row(LedgerKind::Credit, owner, None, 1));
                }
                if let Some(id) = award {
                    *left.entry(id).or_default() -= taken;
                }
            }
            insert_ledger(tx, &rows, now).await
        }

        #[async_trait]
        impl AwardStore for $store {
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

            async fn usage_after(&self, after: i64) -> Result<(Vec<UsageRecord>, i64)> {
                let rows: Vec<(i64, String, i64, i64)> = sqlx::query_as(
                    "SELECT project_id, gpu_model, CAST(SUM(gpu_ms) AS BIGINT), MAX(id) \
                     FROM ledger WHERE kind = 'charge' AND id > $1 \
                     GROUP BY project_id, gpu_model ORDER BY project_id, gpu_model",
                )
                .bind(after)
                .fetch_all(&self.read)
                .await?;
                let last = rows.iter().map(|r| r.3).max().unwrap_or(after).max(after);
                let usage = rows
                    .into_iter()
                    .map(|(p, m, ms, _)| UsageRecord {
                        project_id: p,
                        gpu_model: m,
                        gpu_ms: ms,
                    })
                    .collect();
                Ok((usage, last))
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
        }
    };
}

pub(crate) use award_store;
