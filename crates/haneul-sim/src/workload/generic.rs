//! Haneul's generic job format, as CSV (with a header) or JSON Lines, one job a row. Fields:
//!
//! | field | required | meaning |
//! |---|---|---|
//! | `submit_s` | yes | submission time, seconds (any epoch; the clock starts at the first job) |
//! | `duration_s` | yes | run time on the workload's reference GPU class, seconds |
//! | `gpus` | yes | GPUs of the whole job; below 1 is a fraction of one GPU (0.5); 0 is CPU-only |
//! | `replicas` | no | tasks of the gang; then `gpus` is per task (default: split by node size) |
//! | `project` | no | submitting project (default `default`) |
//! | `class` | no | tenant class: academia, institute, startup, enterprise, partner, public-agency |
//! | `gpu_model` | no | allowed GPU models, `|`-separated (default any) |
//! | `time_limit_s`, `estimate_s`, `grace_s` | no | wall-clock limit, user estimate, checkpoint grace |
//! | `priority` | no | low, normal, high, urgent |
//! | `preemptible` | no | true or false (default true) |
//! | `cpus`, `memory_gib` | no | per task |

use super::{ProjectTable, Shape, SimJob, Workload, split_gang};
use crate::error::SimError;
use haneul_model::{GpuModel, GpuRequest, MemMib, MilliCpu, OrgClass, PriorityClass, Span, Time};
use serde::Deserialize;
use std::io::BufRead;
use std::path::Path;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Row {
    submit_s: f64,
    duration_s: f64,
    gpus: f64,
    #[serde(default)]
    replicas: Option<u32>,
    #[serde(default)]
    project: Option<String>,
    #[serde(default)]
    class: Option<String>,
    #[serde(default)]
    gpu_model: Option<String>,
    #[serde(default)]
    time_limit_s: Option<f64>,
    #[serde(default)]
    estimate_s: Option<f64>,
    #[serde(default)]
    grace_s: Option<f64>,
    #[serde(default)]
    priority: Option<String>,
    #[serde(default)]
    preemptible: Option<bool>,
    #[serde(default)]
    cpus: Option<f64>,
    #[serde(default)]
    memory_gib: Option<f64>,
}

pub fn parse_class(s: &str) -> Option<OrgClass> {
    OrgClass::ALL
        .into_iter()
        .find(|c| c.as_str() == s.trim().to_ascii_lowercase())
}

pub fn load_csv(path: &Path, shape: Shape) -> Result<Workload, SimError> {
    let mut rdr = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_path(path)
        .map_err(|e| super::philly::csv_open_error(path, e))?;
    let headers = rdr
        .headers()
        .map_err(|e| super::philly::csv_open_error(path, e))?
        .clone();
    let mut b = Builder::new(path, shape);
    let mut rec = csv::StringRecord::new();
    loop {
        match rdr.read_record(&mut rec) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => {
                return Err(SimError::Row {
                    path: path.to_path_buf(),
                    line: e.position().map(|p| p.line()).unwrap_or(0),
                    field: "row".into(),
                    reason: e.to_string(),
                });
            }
        }
        let line = rec.position().map(|p| p.line()).unwrap_or(0);
        // Empty cells are absent optional fields.
        let mut cleaned = csv::StringRecord::new();
        let mut names = csv::StringRecord::new();
        for (h, v) in headers.iter().zip(rec.iter()) {
            if !v.is_empty() {
                names.push_field(h);
                cleaned.push_field(v);
            }
        }
        let row: Row = cleaned.deserialize(Some(&names)).map_err(|e| {
            let field = match e.kind() {
                csv::ErrorKind::Deserialize { err, .. } => err
                    .field()
                    .and_then(|i| names.get(i as usize))
                    .map(str::to_string)
                    .unwrap_or_else(|| missing_field(&err.to_string())),
                _ => "row".into(),
            };
            SimError::Row {
                path: path.to_path_buf(),
                line,
                field,
                reason: match e.kind() {
                    csv::ErrorKind::Deserialize { err, .. } => err.kind().to_string(),
                    _ => e.to_string(),
                },
            }
        })?;
        b.add(row, line)?;
    }
    Ok(b.finish())
}

fn missing_field(msg: &str) -> String {
    msg.split('`').nth(1).unwrap_or("row").to_string()
}

pub fn load_jsonl(path: &Path, shape: Shape) -> Result<Workload, SimError> {
    let file = std::fs::File::open(path).map_err(|source| SimError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut b = Builder::new(path, shape);
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line_no = i as u64 + 1;
        let text = line.map_err(|source| SimError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        if text.trim().is_empty() {
            continue;
        }
        let row: Row = serde_json::from_str(&text).map_err(|e| SimError::Row {
            path: path.to_path_buf(),
            line: line_no,
            field: missing_field(&e.to_string()),
            reason: e.to_string(),
        })?;
        b.add(row, line_no)?;
    }
    Ok(b.finish())
}

struct Builder<'a> {
    path: &'a Path,
    shape: Shape,
    projects: ProjectTable,
    jobs: Vec<SimJob>,
}

fn secs(v: f64) -> Span {
    Span((v * 1000.0).round() as i64)
}

impl<'a> Builder<'a> {
    fn new(path: &'a Path, shape: Shape) -> Self {
        Builder {
            path,
            shape,
            projects: ProjectTable::default(),
            jobs: Vec::new(),
        }
    }

    fn add(&mut self, r: Row, line: u64) -> Result<(), SimError> {
        let bad = |field: &str, reason: String| SimError::Row {
            path: self.path.to_path_buf(),
            line,
            field: field.into(),
            reason,
        };
        let non_neg = |v: f64, field: &str| -> Result<f64, SimError> {
            if v.is_finite() && v >= 0.0 {
                Ok(v)
            } else {
                Err(bad(field, format!("must be a number >= 0, got {v}")))
            }
        };
        let submit = non_neg(r.submit_s, "submit_s")?;
        let duration = non_neg(r.duration_s, "duration_s")?;
        if submit > super::MAX_SUBMIT_S {
            return Err(bad("submit_s", format!("{submit} is past the year 9999")));
        }
        if duration > super::MAX_DURATION_S {
            return Err(bad("duration_s", format!("{duration} s is over ten years")));
        }
        let gpus = non_neg(r.gpus, "gpus")?;
        let class = match &r.class {
            Some(c) => parse_class(c).ok_or_else(|| {
                bad(
                    "class",
                    format!("unknown tenant class `{c}`; use academia, institute, startup, enterprise, partner or public-agency"),
                )
            })?,
            None => OrgClass::Academia,
        };
        let project = self
            .projects
            .get_or_add(r.project.as_deref().unwrap_or("default"), class);
        let (replicas, gpu) = if gpus == 0.0 {
            (r.replicas.unwrap_or(1), GpuRequest::None)
        } else if gpus < 1.0 {
            let milli = (gpus * 1000.0).round() as u32;
            (
                r.replicas.unwrap_or(1),
                GpuRequest::Fraction(milli.clamp(1, 999)),
            )
        } else {
            if gpus.fract() != 0.0 {
                return Err(bad("gpus", format!("{gpus}: above 1, GPUs must be whole")));
            }
            match r.replicas {
                Some(n) => (n, GpuRequest::Whole(gpus as u32)),
                None => {
                    let (n, per) = split_gang(gpus as u32, self.shape.max_gpus_per_node);
                    (n, GpuRequest::Whole(per))
                }
            }
        };
        if replicas == 0 {
            return Err(bad("replicas", "must be at least 1".into()));
        }
        let mut job = SimJob::new(Time(secs(submit).0), project, replicas, gpu, secs(duration));
        job.line = line;
        if let Some(m) = &r.gpu_model {
            for name in m.split('|').map(str::trim).filter(|s| !s.is_empty()) {
                job.models
                    .push(GpuModel::new(name).map_err(|e| bad("gpu_model", e.to_string()))?);
            }
        }
        if let Some(v) = r.time_limit_s {
            let v = non_neg(v, "time_limit_s")?.min(super::MAX_DURATION_S);
            if v == 0.0 {
                return Err(bad("time_limit_s", "must be positive".into()));
            }
            job.time_limit = Some(secs(v));
        }
        if let Some(v) = r.estimate_s {
            let v = non_neg(v, "estimate_s")?.min(super::MAX_DURATION_S);
            job.estimate = (v > 0.0).then(|| secs(v));
        }
        if let Some(v) = r.grace_s {
            job.grace = secs(non_neg(v, "grace_s")?.min(super::MAX_DURATION_S));
        }
        if let Some(p) = &r.priority {
            job.priority = PriorityClass::parse(p).map_err(|e| bad("priority", e.to_string()))?;
        }
        job.preemptible = r.preemptible.unwrap_or(true);
        if let Some(c) = r.cpus {
            job.cpu = MilliCpu((non_neg(c, "cpus")? * 1000.0).round() as u64);
        }
        if let Some(m) = r.memory_gib {
            job.mem = MemMib((non_neg(m, "memory_gib")? * 1024.0).round() as u64);
        }
        if gpu == GpuRequest::None && job.cpu == MilliCpu::ZERO {
            return Err(bad(
                "cpus",
                "a job with no GPU must ask for some CPU".into(),
            ));
        }
        self.jobs.push(job);
        Ok(())
    }

    fn finish(self) -> Workload {
        let mut w = Workload {
            source: self.path.to_path_buf(),
            projects: self.projects.defs,
            jobs: self.jobs,
            model_field: "gpu_model",
        };
        w.finish_loading();
        w
    }
}
