//! Telemetry: GPU samples folded into per-job summaries and per-minute series, downsampled to
//! hourly rows as they age, tasks' CPU time, and the joins of measured use with the ledger. Owns the
//! `gpu_usage`, `gpu_minutes`, `gpu_hours` and `task_cpu` tables.

use crate::Result;
use crate::records::*;
use async_trait::async_trait;

/// GPU and CPU use as agents measured it. Part of [`crate::Store`].
#[async_trait]
pub trait TelemetryStore: Send + Sync {
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

/// Expands [`TelemetryStore`] for the backend `$store` on database `$db`, and the helpers of this
/// area, into the backend's module (see `store_impl!`), where the other areas' SQL shares
/// them.
macro_rules! telemetry_store {
    ($store:ty, $db:ty) => {
        #[async_trait]
        impl TelemetryStore for $store {
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
                let mut tx = self.begin_unlocked().await?;
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
                let mut tx = self.begin_unlocked().await?;
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

pub(crate) use telemetry_store;
