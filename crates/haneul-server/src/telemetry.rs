//! GPU telemetry: what agents sample (`POST /v1/agent/nodes/{id}/telemetry`), what a job did
//! with its GPUs (`GET /v1/jobs/{id}/efficiency`, `haneul eff`, the portal's charts), the
//! per-job Prometheus gauges under the DCGM exporter's names, and the idle policy's view of
//! recent utilisation ([`Live`]), which the controller acts on (notice, then stop with reason
//! `idle`). Summaries and per-minute series are kept by the store; the recent window lives in
//! memory on the server the agents report to (the leader), so a new leader starts its windows
//! afresh, which only delays an idle stop.

use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, Body};
use crate::extract::Id;
use axum::Json;
use axum::extract::State;
use haneul_api::*;
use haneul_store as st;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;
use std::time::Duration;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Most samples in one batch: a node's GPUs over several intervals of backlog.
pub const MAX_SAMPLES: usize = 4096;
/// Most tasks' CPU figures in one batch.
pub const MAX_TASKS: usize = 1024;
/// Most GPU series the DCGM-named gauges hold, whatever agents send.
pub const MAX_GAUGE_SERIES: usize = 100_000;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(telemetry))
        .routes(routes!(efficiency))
}

/// The idle policy (docs/telemetry.md): a job whose GPUs average under `threshold_pct` over
/// `window` gets a notice to its owner, and is stopped with reason `idle` once `grace` has
/// passed with its GPUs still idle. Classes of organisation may have their own figures or be
/// exempt.
#[derive(Debug, Clone, PartialEq)]
pub struct IdlePolicy {
    /// Off unless the operator turns it on.
    pub enabled: bool,
    pub threshold_pct: f64,
    pub window: Duration,
    pub grace: Duration,
    /// Per organisation class (`academia`, `enterprise`, ...): other figures, or `None`: exempt.
    pub classes: BTreeMap<String, Option<IdleLimits>>,
    /// Interactive sessions (`haneul run --pty`): their own figures, or `None` (the default):
    /// exempt, since a session waits on a person and ends by itself when its connection is
    /// lost past the terminal grace.
    pub interactive: Option<IdleLimits>,
    /// How long per-minute series are kept (the per-job summaries are kept for good); after
    /// it they are downsampled to hours.
    pub series_retention: Duration,
    /// How long the hourly points are kept, counted like `series_retention` from now.
    pub hourly_retention: Duration,
}

/// The figures of one class.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct IdleLimits {
    pub threshold_pct: f64,
    pub window: Duration,
    pub grace: Duration,
}

impl Default for IdlePolicy {
    fn default() -> Self {
        IdlePolicy {
            enabled: false,
            threshold_pct: 5.0,
            window: Duration::from_secs(30 * 60),
            grace: Duration::from_secs(30 * 60),
            classes: BTreeMap::new(),
            interactive: None,
            series_retention: Duration::from_secs(30 * 24 * 3600),
            hourly_retention: Duration::from_secs(400 * 24 * 3600),
        }
    }
}

impl IdlePolicy {
    /// The limits for a job of an organisation of `class`, an interactive session or not;
    /// `None`: exempt (or the policy is off). An exempt class exempts its sessions too.
    pub fn limits(&self, class: &str, interactive: bool) -> Option<IdleLimits> {
        if !self.enabled {
            return None;
        }
        let of_class = match self.classes.get(class) {
            Some(l) => *l,
            None => Some(IdleLimits {
                threshold_pct: self.threshold_pct,
                window: self.window,
                grace: self.grace,
            }),
        };
        if interactive {
            of_class.and(self.interactive)
        } else {
            of_class
        }
    }

    /// Checks the figures; the error names the setting and the fix.
    pub fn validate(&self) -> Result<(), String> {
        let check = |name: &str, l: &IdleLimits| -> Result<(), String> {
            if !(0.0..=100.0).contains(&l.threshold_pct) {
                return Err(format!("{name}threshold_pct must be 0 to 100"));
            }
            if l.window.is_zero() {
                return Err(format!("{name}window must be longer than zero"));
            }
            Ok(())
        };
        check(
            "idle.",
            &IdleLimits {
                threshold_pct: self.threshold_pct,
                window: self.window,
                grace: self.grace,
            },
        )?;
        for (class, l) in &self.classes {
            if let Some(l) = l {
                check(&format!("idle.classes.{class}."), l)?;
            }
        }
        if let Some(l) = &self.interactive {
            check("idle.interactive.", l)?;
        }
        if self.series_retention < Duration::from_secs(60) {
            return Err("idle.series_retention must be at least one minute".into());
        }
        if self.hourly_retention < self.series_retention {
            return Err(
                "idle.hourly_retention_days must be at least series_retention_days: hours are \
                 made of minutes past their retention"
                    .into(),
            );
        }
        Ok(())
    }
}

/// `DIR/idle.toml`, as the operator writes it (durations in seconds).
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct IdleFile {
    #[serde(default)]
    enabled: bool,
    threshold_pct: Option<f64>,
    window_s: Option<u64>,
    grace_s: Option<u64>,
    series_retention_days: Option<u64>,
    hourly_retention_days: Option<u64>,
    #[serde(default)]
    classes: BTreeMap<String, ClassFile>,
    interactive: Option<InteractiveFile>,
}

/// `[interactive]`: sessions are exempt unless `exempt = false`; figures not given are the
/// policy's own.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct InteractiveFile {
    exempt: Option<bool>,
    threshold_pct: Option<f64>,
    window_s: Option<u64>,
    grace_s: Option<u64>,
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ClassFile {
    #[serde(default)]
    exempt: bool,
    threshold_pct: Option<f64>,
    window_s: Option<u64>,
    grace_s: Option<u64>,
}

impl IdlePolicy {
    /// Reads `path` (TOML; see docs/telemetry.md); a missing file is the default policy (off).
    pub fn load(path: &std::path::Path) -> Result<Self, String> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(e) => return Err(format!("{}: {e}", path.display())),
        };
        Self::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// The policy a TOML text describes.
    pub fn parse(text: &str) -> Result<Self, String> {
        let f: IdleFile = toml::from_str(text).map_err(|e| e.to_string())?;
        let d = IdlePolicy::default();
        let secs = Duration::from_secs;
        let mut p = IdlePolicy {
            enabled: f.enabled,
            threshold_pct: f.threshold_pct.unwrap_or(d.threshold_pct),
            window: f.window_s.map_or(d.window, secs),
            grace: f.grace_s.map_or(d.grace, secs),
            classes: BTreeMap::new(),
            interactive: None,
            series_retention: f
                .series_retention_days
                .map_or(d.series_retention, |n| secs(n.saturating_mul(24 * 3600))),
            hourly_retention: f
                .hourly_retention_days
                .map_or(d.hourly_retention, |n| secs(n.saturating_mul(24 * 3600))),
        };
        for (class, c) in f.classes {
            if haneul_model::OrgClass::ALL
                .iter()
                .all(|k| k.as_str() != class)
            {
                return Err(format!(
                    "idle.classes.{class}: unknown class; use academia, institute, startup, \
                     enterprise, partner or public-agency"
                ));
            }
            let l = (!c.exempt).then(|| IdleLimits {
                threshold_pct: c.threshold_pct.unwrap_or(p.threshold_pct),
                window: c.window_s.map_or(p.window, secs),
                grace: c.grace_s.map_or(p.grace, secs),
            });
            p.classes.insert(class, l);
        }
        if let Some(i) = f.interactive {
            // Naming a figure without `exempt` means the operator wants sessions checked.
            let figures = i.threshold_pct.is_some() || i.window_s.is_some() || i.grace_s.is_some();
            if !i.exempt.unwrap_or(!figures) {
                p.interactive = Some(IdleLimits {
                    threshold_pct: i.threshold_pct.unwrap_or(p.threshold_pct),
                    window: i.window_s.map_or(p.window, secs),
                    grace: i.grace_s.map_or(p.grace, secs),
                });
            } else if figures {
                return Err(
                    "idle.interactive: figures with exempt = true; drop them, or set exempt = false"
                        .into(),
                );
            }
        }
        p.validate()?;
        Ok(p)
    }
}

/// One batch's worth of one job's samples: enough for a mean over any window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Point {
    at: i64,
    util_sum: i64,
    samples: i64,
}

/// Recent utilisation of every job that reported, for the idle policy.
#[derive(Debug, Default)]
pub struct Live {
    jobs: Mutex<BTreeMap<i64, JobWindow>>,
    /// Jobs under an idle notice whose GPUs are still idle: job -> when the controller stops
    /// them (ms) unless they get busy. Written by the controller, read by the API and portal.
    stops: Mutex<BTreeMap<i64, i64>>,
}

#[derive(Debug, Default)]
struct JobWindow {
    first_at: i64,
    points: VecDeque<Point>,
}

/// Whether a job's GPUs sat idle over the last `window` before `now`: only when its samples
/// reach back over the whole window (a job that just started is never idle), and their mean
/// is under the threshold.
fn idle_over(first_at: i64, points: &VecDeque<Point>, now: i64, l: &IdleLimits) -> bool {
    let window_ms = i64::try_from(l.window.as_millis()).unwrap_or(i64::MAX);
    let from = now.saturating_sub(window_ms);
    if first_at > from {
        return false;
    }
    let (sum, n) = points
        .iter()
        .filter(|p| p.at > from)
        .fold((0i64, 0i64), |(s, n), p| (s + p.util_sum, n + p.samples));
    // No sample in the window: the agent is not reporting; say nothing rather than guess.
    n > 0 && (sum as f64 / n as f64) < l.threshold_pct
}

impl Live {
    /// Records accepted samples, as one point per job.
    pub fn observe(&self, samples: &[GpuSample], keep: Duration) {
        let mut per_job: BTreeMap<i64, Point> = BTreeMap::new();
        for s in samples {
            let p = per_job.entry(s.job).or_insert(Point {
                at: s.at_ms,
                util_sum: 0,
                samples: 0,
            });
            p.at = p.at.max(s.at_ms);
            p.util_sum += i64::from(s.util_pct);
            p.samples += 1;
        }
        let keep_ms = i64::try_from(keep.as_millis()).unwrap_or(i64::MAX);
        let Ok(mut jobs) = self.jobs.lock() else {
            return;
        };
        for (job, p) in per_job {
            let w = jobs.entry(job).or_insert_with(|| JobWindow {
                first_at: p.at,
                points: VecDeque::new(),
            });
            w.first_at = w.first_at.min(p.at);
            w.points.push_back(p);
            let cutoff = p.at.saturating_sub(keep_ms);
            while w.points.front().is_some_and(|q| q.at < cutoff) {
                w.points.pop_front();
            }
        }
    }

    /// Whether `job` sat idle under `limits` at `now`.
    pub fn idle(&self, job: i64, now: i64, limits: &IdleLimits) -> bool {
        let Ok(jobs) = self.jobs.lock() else {
            return false;
        };
        jobs.get(&job)
            .is_some_and(|w| idle_over(w.first_at, &w.points, now, limits))
    }

    /// Forgets the jobs not in `live` (ended ones).
    pub fn retain(&self, live: &BTreeSet<i64>) {
        if let Ok(mut jobs) = self.jobs.lock() {
            jobs.retain(|j, _| live.contains(j));
        }
    }

    /// Replaces the jobs under an idle notice with `stops` (job -> when it will be stopped).
    pub fn set_stops(&self, stops: BTreeMap<i64, i64>) {
        if let Ok(mut s) = self.stops.lock() {
            *s = stops;
        }
    }

    /// When `job`, under an idle notice and still idle, will be stopped; `None` when it is not
    /// (never noticed, busy again, ended) or this server does not run the controller.
    pub fn stop_at(&self, job: i64) -> Option<i64> {
        self.stops.lock().ok()?.get(&job).copied()
    }

    /// Jobs with samples, in id order.
    pub fn jobs(&self) -> Vec<i64> {
        self.jobs
            .lock()
            .map(|j| j.keys().copied().collect())
            .unwrap_or_default()
    }
}

/// The DCGM exporter's label set, plus the job.
#[derive(Debug, Clone, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
pub struct GpuLabel {
    pub gpu: String,
    #[prometheus(flatten)]
    pub ids: GpuIds,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
#[allow(non_snake_case)]
pub struct GpuIds {
    pub UUID: String,
    pub Hostname: String,
    pub job: String,
}

/// Per-job GPU gauges under the names dashboards built for the DCGM exporter already read.
/// Each node's series are replaced by its latest batch, so a job's series go when it leaves
/// the node; the total is capped at [`MAX_GAUGE_SERIES`].
pub struct GpuGauges {
    registry: Registry,
    util: Family<GpuLabel, Gauge>,
    fb_used: Family<GpuLabel, Gauge>,
    power: Family<GpuLabel, Gauge<f64, AtomicU64>>,
    temp: Family<GpuLabel, Gauge>,
    by_node: Mutex<BTreeMap<i64, BTreeSet<GpuLabel>>>,
}

impl Default for GpuGauges {
    fn default() -> Self {
        let mut registry = Registry::default();
        let util = Family::<GpuLabel, Gauge>::default();
        registry.register(
            "DCGM_FI_DEV_GPU_UTIL",
            "GPU utilisation (in %), per job",
            util.clone(),
        );
        let fb_used = Family::<GpuLabel, Gauge>::default();
        registry.register(
            "DCGM_FI_DEV_FB_USED",
            "Framebuffer memory used (in MiB), per job",
            fb_used.clone(),
        );
        let power = Family::<GpuLabel, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "DCGM_FI_DEV_POWER_USAGE",
            "Power draw (in W), per job",
            power.clone(),
        );
        let temp = Family::<GpuLabel, Gauge>::default();
        registry.register(
            "DCGM_FI_DEV_GPU_TEMP",
            "GPU temperature (in C), per job",
            temp.clone(),
        );
        GpuGauges {
            registry,
            util,
            fb_used,
            power,
            temp,
            by_node: Mutex::default(),
        }
    }
}

impl GpuGauges {
    /// Sets `node`'s series to its latest samples (the last one per GPU and job).
    pub fn set_node(&self, node: i64, hostname: &str, samples: &[GpuSample]) {
        let Ok(mut by_node) = self.by_node.lock() else {
            return;
        };
        let mut latest: BTreeMap<GpuLabel, &GpuSample> = BTreeMap::new();
        for s in samples {
            let l = GpuLabel {
                gpu: s.gpu.to_string(),
                ids: GpuIds {
                    UUID: s.uuid.clone(),
                    Hostname: hostname.to_string(),
                    job: s.job.to_string(),
                },
            };
            match latest.get(&l) {
                Some(old) if old.at_ms > s.at_ms => {}
                _ => {
                    latest.insert(l, s);
                }
            }
        }
        let old = by_node.remove(&node).unwrap_or_default();
        for l in old.iter().filter(|l| !latest.contains_key(l)) {
            self.util.remove(l);
            self.fb_used.remove(l);
            self.power.remove(l);
            self.temp.remove(l);
        }
        let others: usize = by_node.values().map(BTreeSet::len).sum();
        let room = MAX_GAUGE_SERIES.saturating_sub(others);
        let mut kept = BTreeSet::new();
        for (l, s) in latest.into_iter().take(room) {
            self.util.get_or_create(&l).set(i64::from(s.util_pct));
            self.fb_used
                .get_or_create(&l)
                .set(i64::try_from(s.mem_mib).unwrap_or(i64::MAX));
            self.power.get_or_create(&l).set(f64::from(s.power_w));
            self.temp.get_or_create(&l).set(i64::from(s.temp_c));
            kept.insert(l);
        }
        by_node.insert(node, kept);
    }

    /// The series, in the text format, without the closing `# EOF`.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out.strip_suffix("# EOF\n").unwrap_or(&out).to_string()
    }
}

/// Checks one sample's figures; the error names the field and its bounds.
fn check_sample(i: usize, s: &GpuSample) -> Result<(), ApiError> {
    let field = |f: &str| format!("samples[{i}].{f}");
    if s.uuid.is_empty()
        || s.uuid.len() > 96
        || !s
            .uuid
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c))
    {
        return Err(ApiError::bad(
            field("uuid"),
            "must be 1 to 96 letters, digits, '-', '_', '.' or '/'",
        ));
    }
    if s.gpu >= crate::MAX_GPUS_PER_NODE {
        return Err(ApiError::bad(
            field("gpu"),
            format!("must be 0 to {}", crate::MAX_GPUS_PER_NODE - 1),
        ));
    }
    if s.util_pct > 100 {
        return Err(ApiError::bad(field("util_pct"), "must be 0 to 100"));
    }
    if !(1..=3_600_000).contains(&s.period_ms) {
        return Err(ApiError::bad(
            field("period_ms"),
            "must be 1 to 3600000 (an hour)",
        ));
    }
    if s.at_ms <= 0 {
        return Err(ApiError::bad(field("at_ms"), "must be a time after 1970"));
    }
    if s.mem_mib > 1 << 24 {
        return Err(ApiError::bad(field("mem_mib"), "must be at most 16 TiB"));
    }
    if s.power_w > 10_000 {
        return Err(ApiError::bad(field("power_w"), "must be at most 10000 W"));
    }
    if s.temp_c > 250 {
        return Err(ApiError::bad(field("temp_c"), "must be at most 250 C"));
    }
    Ok(())
}

/// Send the GPU samples and task CPU times taken since the last call. Samples of tasks no
/// longer assigned to this node (their attempt ended) are dropped and counted.
#[utoipa::path(post, path = "/v1/agent/nodes/{id}/telemetry", tag = "agent",
    params(("id" = i64, Path, description = "node id", minimum = 1)),
    request_body = TelemetryBatch,
    responses((status = 200, body = TelemetryAck), (status = "4XX", body = ErrorBody)),
    security(("token" = [])))]
async fn telemetry(
    State(s): State<AppState>,
    caller: Caller,
    Id(id): Id,
    Body(b): Body<TelemetryBatch>,
) -> Result<Json<TelemetryAck>, ApiError> {
    let node = crate::agent::own_node(&s, &caller, id).await?;
    if b.samples.len() > MAX_SAMPLES {
        return Err(ApiError::bad(
            "samples",
            format!("at most {MAX_SAMPLES} per call; send several"),
        ));
    }
    if b.tasks.len() > MAX_TASKS {
        return Err(ApiError::bad(
            "tasks",
            format!("at most {MAX_TASKS} per call; send several"),
        ));
    }
    for (i, x) in b.samples.iter().enumerate() {
        check_sample(i, x)?;
    }
    for (i, t) in b.tasks.iter().enumerate() {
        if t.cpu_ms < 0 {
            return Err(ApiError::bad(
                format!("tasks[{i}].cpu_ms"),
                "must not be negative",
            ));
        }
    }
    // Only tasks this node runs now, on GPUs they hold: an agent speaks for its own node only.
    let assigned: BTreeMap<(i64, i64, i64), Vec<u32>> = s
        .store
        .assignments(id)
        .await?
        .into_iter()
        .map(|a| ((a.job.id, a.attempt.fence, a.task), a.gpus))
        .collect();
    let (kept, dropped): (Vec<GpuSample>, Vec<GpuSample>) = b.samples.into_iter().partition(|x| {
        assigned
            .get(&(x.job, x.fence, x.task))
            .is_some_and(|g| g.contains(&x.gpu))
    });
    let cpu: Vec<st::TaskCpuRecord> = b
        .tasks
        .iter()
        .filter(|t| assigned.contains_key(&(t.job, t.fence, t.task)))
        .map(|t| st::TaskCpuRecord {
            job_id: t.job,
            fence: t.fence,
            task: t.task,
            cpu_ms: t.cpu_ms,
        })
        .collect();
    let records: Vec<st::GpuSampleRecord> = kept
        .iter()
        .map(|x| st::GpuSampleRecord {
            job_id: x.job,
            gpu_uuid: x.uuid.clone(),
            gpu_index: i64::from(x.gpu),
            at: x.at_ms,
            period_ms: x.period_ms,
            util_pct: i64::from(x.util_pct),
            mem_mib: i64::try_from(x.mem_mib).unwrap_or(i64::MAX),
            power_w: i64::from(x.power_w),
            temp_c: i64::from(x.temp_c),
        })
        .collect();
    if !records.is_empty() || !cpu.is_empty() {
        s.store.record_gpu_samples(id, &records, &cpu).await?;
    }
    let keep = s.idle.window.max(
        s.idle
            .classes
            .values()
            .flatten()
            .map(|l| l.window)
            .max()
            .unwrap_or_default(),
    );
    s.signals.telemetry.observe(&kept, keep);
    s.metrics.gpus.set_node(id, &node.name, &kept);
    Ok(Json(TelemetryAck {
        accepted: kept.len() as u64,
        dropped: dropped.len() as u64,
    }))
}

/// What a job did with its GPUs (and CPUs): mean and peak utilisation, peak memory, energy,
/// per GPU, with the per-minute series and a plain verdict.
#[utoipa::path(get, path = "/v1/jobs/{id}/efficiency", tag = "jobs",
    params(("id" = i64, Path, description = "job id", minimum = 1)),
    responses((status = 200, body = JobEfficiency), (status = "4XX", body = ErrorBody)),
    security(("token" = [])))]
async fn efficiency(
    State(s): State<AppState>,
    caller: Caller,
    Id(id): Id,
) -> Result<Json<JobEfficiency>, ApiError> {
    caller.person()?;
    let (job, _) = crate::routes::visible_job(&s, &caller, id).await?;
    Ok(Json(job_efficiency(&s, job).await?))
}

/// The efficiency of a job the caller may see.
pub async fn job_efficiency(s: &AppState, job: st::JobRecord) -> Result<JobEfficiency, ApiError> {
    let attempts = s.store.list_attempts(job.id).await?;
    let usage = s.store.job_gpu_usage(job.id).await?;
    let minutes = s.store.job_gpu_minutes(job.id).await?;
    let cpu = s.store.job_task_cpu(job.id).await?;
    let kind = idle_notice_kind(job.id);
    let notice = s
        .store
        .list_notices()
        .await?
        .into_iter()
        .rev()
        .find(|n| n.kind == kind && n.project_id == job.project_id)
        .map(|n| n.detail);
    let mut e = summarise(
        &job,
        &attempts,
        &usage,
        &minutes,
        &cpu,
        s.idle.threshold_pct,
        s.clock.now_ms(),
    );
    e.idle_stops_at = match (&notice, job.state) {
        (Some(_), st::JobState::Running) => s.signals.telemetry.stop_at(job.id),
        _ => None,
    };
    e.idle_notice = notice;
    Ok(e)
}

/// The kind of the idle policy's notice about `job` (one per job).
pub fn idle_notice_kind(job: i64) -> String {
    format!("{IDLE_NOTICE_PREFIX}{job}")
}

const IDLE_NOTICE_PREFIX: &str = "gpu.idle.job.";

/// The job an idle notice's kind names; `None` for other kinds.
pub fn idle_notice_job(kind: &str) -> Option<i64> {
    kind.strip_prefix(IDLE_NOTICE_PREFIX)?.parse().ok()
}

/// Mean of `sum` over `n`, none when there is nothing to average.
fn mean(sum: i64, n: i64) -> Option<f64> {
    (n > 0).then(|| round1(sum as f64 / n as f64))
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// Pure: the efficiency report from what the store holds. A GPU counts as used when its mean
/// utilisation reaches `used_pct`.
pub fn summarise(
    job: &st::JobRecord,
    attempts: &[st::AttemptRecord],
    usage: &[st::GpuUsageRecord],
    minutes: &[st::GpuMinuteRecord],
    cpu: &[st::TaskCpuRecord],
    used_pct: f64,
    now: i64,
) -> JobEfficiency {
    let last = attempts.iter().max_by_key(|a| a.fence);
    let gpus_allocated = last.map_or(0, |a| {
        a.placement.tasks.iter().map(|t| t.gpus.len() as i64).sum()
    });
    let samples: i64 = usage.iter().map(|u| u.samples).sum();
    let util_sum: i64 = usage.iter().map(|u| u.util_sum).sum();
    let energy_mwh: i64 = usage.iter().map(|u| u.energy_mwh).sum();
    let gpus: Vec<GpuEfficiency> = usage
        .iter()
        .map(|u| GpuEfficiency {
            node: u.node_id,
            gpu: u.gpu_index,
            uuid: u.gpu_uuid.clone(),
            samples: u.samples,
            util_mean_pct: mean(u.util_sum, u.samples).unwrap_or(0.0),
            util_max_pct: u.util_max,
            mem_max_mib: u.mem_max_mib,
            energy_wh: round1(u.energy_mwh as f64 / 1000.0),
        })
        .collect();
    // Of the last attempt's GPUs: those never sampled count as idle.
    let gpus_used = gpus
        .iter()
        .filter(|g| g.samples > 0 && g.util_mean_pct >= used_pct)
        .count() as i64;
    let verdict = if samples == 0 {
        "no GPU samples yet".to_string()
    } else {
        let of = gpus_allocated.max(gpus.len() as i64);
        let idle = of - gpus_used;
        match (gpus_used, idle) {
            (0, _) => format!("used none of its {of} GPUs; all stayed idle"),
            (u, 0) => format!("used all {u} of its GPUs"),
            (u, 1) => format!("used {u} of {of} GPUs; the other one stayed idle"),
            (u, i) => format!("used {u} of {of} GPUs; the other {i} stayed idle"),
        }
    };
    // CPU allotted: the tasks' CPUs over each attempt's run; unknown when the job asked for
    // none (it got a share of the node the server does not record).
    let cpus = job.spec.cpu_per_task.get() as f64 / 1000.0;
    let cpu_used: i64 = cpu.iter().map(|c| c.cpu_ms).sum();
    let allotted: f64 = attempts
        .iter()
        .filter_map(|a| {
            let from = a.started_at?;
            let until = a.ended_at.unwrap_or(now);
            Some((until - from).max(0) as f64 * cpus * a.placement.tasks.len() as f64)
        })
        .sum();
    let cpu_efficiency_pct =
        (allotted > 0.0 && !cpu.is_empty()).then(|| round1(cpu_used as f64 * 100.0 / allotted));
    let series = minutes
        .iter()
        .map(|m| GpuMinute {
            minute: m.minute,
            uuid: m.gpu_uuid.clone(),
            util_mean_pct: mean(m.util_sum, m.samples).unwrap_or(0.0),
            util_max_pct: m.util_max,
            mem_max_mib: m.mem_max_mib,
            power_mean_w: mean(m.power_sum_w, m.samples).unwrap_or(0.0),
        })
        .collect();
    JobEfficiency {
        job: job.id,
        state: job.state.to_string(),
        gpus_allocated,
        gpus_used,
        gpu_util_mean_pct: mean(util_sum, samples),
        gpu_util_max_pct: usage.iter().map(|u| u.util_max).max(),
        gpu_mem_max_mib: usage.iter().map(|u| u.mem_max_mib).max(),
        energy_wh: round1(energy_mwh as f64 / 1000.0),
        cpu_efficiency_pct,
        samples,
        verdict,
        idle_notice: None,
        idle_stops_at: None,
        gpus,
        series,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(threshold_pct: f64, window_s: u64) -> IdleLimits {
        IdleLimits {
            threshold_pct,
            window: Duration::from_secs(window_s),
            grace: Duration::ZERO,
        }
    }

    fn sample(job: i64, at_ms: i64, util_pct: u32) -> GpuSample {
        GpuSample {
            job,
            fence: 1,
            task: 0,
            gpu: 0,
            uuid: "SIM-H200-0".into(),
            at_ms,
            period_ms: 1000,
            util_pct,
            mem_mib: 0,
            power_w: 0,
            temp_c: 0,
        }
    }

    #[test]
    fn idle_needs_a_whole_window_under_the_threshold() {
        let live = Live::default();
        let keep = Duration::from_secs(60);
        for t in 0..10 {
            live.observe(&[sample(1, 1000 + t * 1000, 2)], keep);
            live.observe(&[sample(2, 1000 + t * 1000, 95)], keep);
        }
        let l = limits(5.0, 5);
        // Sampled for 9 s: both jobs cover a 5 s window; only the sleeping one is idle.
        assert!(live.idle(1, 10_000, &l));
        assert!(!live.idle(2, 10_000, &l));
        // A window longer than the samples reach is never idle: the job just started.
        assert!(!live.idle(1, 10_000, &limits(5.0, 20)));
        // Nothing heard in the window (the agent is silent): no verdict.
        assert!(!live.idle(1, 60_000, &l));
        // A busy burst inside the window lifts the mean above the threshold.
        live.observe(&[sample(1, 10_500, 100)], keep);
        assert!(!live.idle(1, 11_000, &l));
        live.retain(&BTreeSet::from([2]));
        assert_eq!(live.jobs(), vec![2]);
    }

    #[test]
    fn policy_classes_override_or_exempt() {
        let mut p = IdlePolicy {
            enabled: true,
            ..IdlePolicy::default()
        };
        p.classes.insert("enterprise".into(), None);
        p.classes.insert("academia".into(), Some(limits(20.0, 60)));
        assert_eq!(p.limits("enterprise", false), None);
        assert_eq!(p.limits("academia", false).unwrap().threshold_pct, 20.0);
        assert_eq!(p.limits("startup", false).unwrap().threshold_pct, 5.0);
        assert!(p.validate().is_ok());
        p.classes.insert("x".into(), Some(limits(120.0, 60)));
        assert!(p.validate().unwrap_err().contains("idle.classes.x."));
        p.enabled = false;
        assert_eq!(p.limits("academia", false), None);
    }

    #[test]
    fn policy_file_is_read_and_checked() {
        let p = IdlePolicy::parse(
            "enabled = true\nthreshold_pct = 10\nwindow_s = 600\ngrace_s = 300\n\
             [classes.enterprise]\nexempt = true\n[classes.academia]\nwindow_s = 1200\n",
        )
        .unwrap();
        assert_eq!(p.limits("enterprise", false), None);
        let a = p.limits("academia", false).unwrap();
        assert_eq!(
            (a.threshold_pct, a.window.as_secs(), a.grace.as_secs()),
            (10.0, 1200, 300)
        );
        let e =
            IdlePolicy::parse("enabled = true\n[classes.pirates]\nexempt = true\n").unwrap_err();
        assert!(e.contains("idle.classes.pirates"), "{e}");
        let e = IdlePolicy::parse("threshold_pct = 101\n").unwrap_err();
        assert!(e.contains("threshold_pct"), "{e}");
        assert!(IdlePolicy::parse("windw_s = 3\n").is_err());
        // Hours are made of minutes past their retention: they must be kept at least as long.
        let p =
            IdlePolicy::parse("series_retention_days = 7\nhourly_retention_days = 90\n").unwrap();
        assert_eq!(p.hourly_retention.as_secs(), 90 * 86_400);
        assert_eq!(
            IdlePolicy::default().hourly_retention.as_secs(),
            400 * 86_400
        );
        let e = IdlePolicy::parse("series_retention_days = 30\nhourly_retention_days = 7\n")
            .unwrap_err();
        assert!(e.contains("hourly_retention_days"), "{e}");
    }

    #[test]
    fn interactive_sessions_are_exempt_unless_given_figures() {
        let base = "enabled = true\nthreshold_pct = 10\nwindow_s = 600\ngrace_s = 300\n\
                    [classes.enterprise]\nexempt = true\n";
        let p = IdlePolicy::parse(base).unwrap();
        assert_eq!(p.limits("academia", true), None);
        assert!(p.limits("academia", false).is_some());
        let p = IdlePolicy::parse(&format!("{base}[interactive]\nexempt = true\n")).unwrap();
        assert_eq!(p.limits("academia", true), None);
        let p = IdlePolicy::parse(&format!("{base}[interactive]\nwindow_s = 120\n")).unwrap();
        let i = p.limits("academia", true).unwrap();
        assert_eq!(
            (i.threshold_pct, i.window.as_secs(), i.grace.as_secs()),
            (10.0, 120, 300)
        );
        // An exempt class keeps its sessions exempt too.
        assert_eq!(p.limits("enterprise", true), None);
        let p = IdlePolicy::parse(&format!("{base}[interactive]\nexempt = false\n")).unwrap();
        assert_eq!(p.limits("academia", true), p.limits("academia", false));
        let e = IdlePolicy::parse(&format!(
            "{base}[interactive]\nexempt = true\ngrace_s = 5\n"
        ))
        .unwrap_err();
        assert!(e.contains("idle.interactive"), "{e}");
        let e =
            IdlePolicy::parse(&format!("{base}[interactive]\nthreshold_pct = 200\n")).unwrap_err();
        assert!(e.contains("idle.interactive.threshold_pct"), "{e}");
    }

    #[test]
    fn gauges_follow_each_nodes_latest_batch() {
        let g = GpuGauges::default();
        g.set_node(1, "gpu-001", &[sample(7, 1000, 80), sample(8, 1000, 3)]);
        let text = g.encode();
        assert!(text.contains("DCGM_FI_DEV_GPU_UTIL{gpu=\"0\",UUID=\"SIM-H200-0\",Hostname=\"gpu-001\",job=\"7\"} 80"), "{text}");
        assert!(text.contains("job=\"8\""));
        // Job 8 left the node: its series go with the next batch.
        g.set_node(1, "gpu-001", &[sample(7, 2000, 90)]);
        let text = g.encode();
        assert!(!text.contains("job=\"8\""), "{text}");
        assert!(text.contains("job=\"7\"} 90"));
        assert!(!text.contains("# EOF"));
    }
}
