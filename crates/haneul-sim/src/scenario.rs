//! Scenario files (TOML): which fleet, which workload (a trace and its format, or generator
//! settings), which seed and which policies. This module owns reading them, resolving their
//! paths (relative to the directory `haneul` runs from; the shipped examples assume the repo
//! root) and running every policy of a scenario in turn.

use crate::catalogue::Catalogue;
use crate::driver::{self, Failures, SimConfig};
use crate::error::{SimError, toml_error};
use crate::fleet_file::FleetSpec;
use crate::metrics::{self, PolicyReport};
use crate::plan::cost::Site;
use crate::plan::demand::Demand;
use crate::traces;
use crate::workload::{self, Shape, Workload, synthetic::SyntheticConfig};
use haneul_model::{OrgClass, Span};
use haneul_sched::Policy;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The built-in policies, in the order reports list them.
pub const BUILTIN_POLICIES: [&str; 3] = ["fifo", "slurm-like", "haneul"];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScenarioFile {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    seed: u64,
    fleet: String,
    #[serde(default)]
    catalogue: Option<String>,
    #[serde(default = "default_policies")]
    policies: Vec<String>,
    #[serde(default = "default_measured_on")]
    measured_on: String,
    #[serde(default = "default_true")]
    exact_estimates: bool,
    #[serde(default)]
    limit_jobs: Option<usize>,
    #[serde(default)]
    schedule_interval_s: f64,
    workload: toml::Table,
    #[serde(default)]
    failures: Option<Failures>,
    /// Named policies beyond the built-in ones: fields of the engine's `Policy`, defaults from
    /// Haneul's.
    #[serde(default)]
    custom_policies: BTreeMap<String, Policy>,
    #[serde(default)]
    projects: Vec<ProjectSettings>,
    /// The planner's site parameters (PUE, electricity, depreciation, operations, exchange rate).
    #[serde(default)]
    site: Option<Site>,
    /// The planner's demand: the allocation round and its growth.
    #[serde(default)]
    demand: Option<Demand>,
}

/// Settings for a workload's project by name (trace projects come with weight 1 and no
/// guarantee; this is how a scenario gives them quotas and classes).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProjectSettings {
    pub name: String,
    #[serde(default)]
    pub class: Option<String>,
    #[serde(default)]
    pub weight: Option<u32>,
    #[serde(default)]
    pub guaranteed_gpus: Option<u64>,
}

fn default_policies() -> Vec<String> {
    BUILTIN_POLICIES.iter().map(|s| s.to_string()).collect()
}
fn default_measured_on() -> String {
    "H100".into()
}
fn default_true() -> bool {
    true
}

/// Where the jobs come from.
#[derive(Debug, Clone)]
pub enum WorkloadSpec {
    Philly { path: PathBuf, class: OrgClass },
    Openb { path: PathBuf },
    Csv { path: PathBuf },
    Jsonl { path: PathBuf },
    Synthetic(Box<SyntheticConfig>),
}

#[derive(Debug, Clone)]
pub struct Scenario {
    pub name: String,
    /// The scenario file, or the trace for `--trace`.
    pub path: PathBuf,
    pub seed: u64,
    /// A fleet file, or `openb-nodes:PATH` for the openb node list.
    pub fleet: String,
    pub catalogue: Option<PathBuf>,
    pub policies: Vec<String>,
    pub measured_on: String,
    pub exact_estimates: bool,
    pub limit_jobs: Option<usize>,
    /// 0: schedule at every change (exact); above: on this cadence only (see `SimConfig`).
    pub schedule_interval_s: f64,
    pub workload: WorkloadSpec,
    pub failures: Option<Failures>,
    pub custom_policies: BTreeMap<String, Policy>,
    pub projects: Vec<ProjectSettings>,
    /// Read by `haneul plan` only; defaults when the scenario has no `[site]`.
    pub site: Site,
    /// Read by `haneul plan` only.
    pub demand: Option<Demand>,
}

fn file_err(path: &Path, reason: String) -> SimError {
    SimError::File {
        path: path.to_path_buf(),
        reason,
    }
}

impl Scenario {
    /// Reads a scenario file; a workload's `trace` is looked up in the default trace directory
    /// ([`crate::traces::dir`]).
    pub fn load(path: &Path) -> Result<Scenario, SimError> {
        Self::load_with_traces(path, None)
    }

    /// Reads a scenario file; a workload's `trace` (a path under the trace directory) is looked
    /// up in `traces`, else in the default trace directory.
    pub fn load_with_traces(path: &Path, traces: Option<&Path>) -> Result<Scenario, SimError> {
        let text = std::fs::read_to_string(path).map_err(|source| SimError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let f: ScenarioFile = toml::from_str(&text).map_err(|e| toml_error(path, &text, &e))?;
        let mut wl = f.workload;
        let format = match wl.remove("format") {
            Some(toml::Value::String(s)) => s,
            _ => {
                return Err(file_err(
                    path,
                    "workload.format: missing; use philly, openb, csv, jsonl or synthetic".into(),
                ));
            }
        };
        let take_path = |wl: &mut toml::Table| -> Result<PathBuf, SimError> {
            match (wl.remove("path"), wl.remove("trace")) {
                (Some(toml::Value::String(s)), None) => {
                    let p = PathBuf::from(s);
                    if traces::known(&p).is_some() {
                        traces::require(&p)?;
                    }
                    Ok(p)
                }
                (None, Some(toml::Value::String(rel))) => traces::locate(traces, &rel),
                (Some(_), Some(_)) => Err(file_err(
                    path,
                    "workload: give `path` (a file) or `trace` (a file under the trace \
                     directory), not both"
                        .into(),
                )),
                _ => Err(file_err(
                    path,
                    format!(
                        "workload.path: a `{format}` workload needs the file's `path`, or \
                         `trace`, its path under the trace directory (--traces, {})",
                        traces::ENV
                    ),
                )),
            }
        };
        let no_more = |wl: &toml::Table| -> Result<(), SimError> {
            match wl.keys().next() {
                Some(k) => Err(file_err(
                    path,
                    format!("workload.{k}: unknown field for format `{format}`"),
                )),
                None => Ok(()),
            }
        };
        let workload = match format.as_str() {
            "philly" => {
                let p = take_path(&mut wl)?;
                let class = match wl.remove("class") {
                    Some(toml::Value::String(c)) => {
                        workload::generic::parse_class(&c).ok_or_else(|| {
                            file_err(path, format!("workload.class: unknown tenant class `{c}`"))
                        })?
                    }
                    None => OrgClass::Enterprise,
                    Some(_) => {
                        return Err(file_err(path, "workload.class: must be a string".into()));
                    }
                };
                no_more(&wl)?;
                WorkloadSpec::Philly { path: p, class }
            }
            "openb" => {
                let p = take_path(&mut wl)?;
                no_more(&wl)?;
                WorkloadSpec::Openb { path: p }
            }
            "csv" => {
                let p = take_path(&mut wl)?;
                no_more(&wl)?;
                WorkloadSpec::Csv { path: p }
            }
            "jsonl" => {
                let p = take_path(&mut wl)?;
                no_more(&wl)?;
                WorkloadSpec::Jsonl { path: p }
            }
            "synthetic" => {
                let cfg: SyntheticConfig =
                    toml::Value::Table(wl)
                        .try_into()
                        .map_err(|e: toml::de::Error| {
                            file_err(path, format!("workload: {}", e.message().trim()))
                        })?;
                WorkloadSpec::Synthetic(Box::new(cfg))
            }
            other => {
                return Err(file_err(
                    path,
                    format!(
                        "workload.format: unknown format `{other}`; use philly, openb, csv, jsonl or synthetic"
                    ),
                ));
            }
        };
        let s = Scenario {
            name: f.name.unwrap_or_else(|| stem(path)),
            path: path.to_path_buf(),
            seed: f.seed,
            fleet: f.fleet,
            catalogue: f.catalogue.map(PathBuf::from),
            policies: f.policies,
            measured_on: f.measured_on,
            exact_estimates: f.exact_estimates,
            limit_jobs: f.limit_jobs,
            schedule_interval_s: f.schedule_interval_s,
            workload,
            failures: f.failures,
            custom_policies: f.custom_policies,
            projects: f.projects,
            site: f.site.unwrap_or_default(),
            demand: f.demand,
        };
        let plan_err = |e: SimError| file_err(path, e.to_string());
        s.site.check().map_err(plan_err)?;
        if let Some(d) = &s.demand {
            d.check().map_err(plan_err)?;
            if !matches!(s.workload, WorkloadSpec::Synthetic(_)) {
                return Err(file_err(
                    path,
                    "demand: needs a synthetic workload (format = \"synthetic\"), whose arrival rate it sets".into(),
                ));
            }
        }
        for p in &s.policies {
            s.policy(p)?;
        }
        if !(s.schedule_interval_s.is_finite() && (0.0..=86_400.0).contains(&s.schedule_interval_s))
        {
            return Err(file_err(
                path,
                "schedule_interval_s: must be 0 (every change) to 86400 seconds".into(),
            ));
        }
        Ok(s)
    }

    /// The implicit scenario of `haneul sim --trace FORMAT:PATH --fleet FILE`.
    pub fn from_trace(trace: &str, fleet: &Path) -> Result<Scenario, SimError> {
        let (format, p) = trace.split_once(':').ok_or_else(|| {
            file_err(
                Path::new(trace),
                "--trace: write FORMAT:PATH, for example philly:TRACES/philly/philly.csv".into(),
            )
        })?;
        let path = PathBuf::from(p);
        if traces::known(&path).is_some() {
            traces::require(&path)?;
        }
        let workload = match format {
            "philly" => WorkloadSpec::Philly {
                path: path.clone(),
                class: OrgClass::Enterprise,
            },
            "openb" => WorkloadSpec::Openb { path: path.clone() },
            "csv" => WorkloadSpec::Csv { path: path.clone() },
            "jsonl" => WorkloadSpec::Jsonl { path: path.clone() },
            other => {
                return Err(file_err(
                    &path,
                    format!("--trace: unknown format `{other}`; use philly, openb, csv or jsonl"),
                ));
            }
        };
        Ok(Scenario {
            name: stem(&path),
            path,
            seed: 0,
            fleet: fleet.to_string_lossy().into_owned(),
            catalogue: None,
            policies: default_policies(),
            measured_on: default_measured_on(),
            exact_estimates: true,
            limit_jobs: None,
            schedule_interval_s: 0.0,
            workload,
            failures: None,
            custom_policies: BTreeMap::new(),
            projects: Vec::new(),
            site: Site::default(),
            demand: None,
        })
    }

    /// The engine policy behind a name.
    pub fn policy(&self, name: &str) -> Result<Policy, SimError> {
        if let Some(p) = self.custom_policies.get(name) {
            return Ok(p.clone());
        }
        match name {
            "fifo" => Ok(Policy::fifo()),
            "slurm-like" | "slurm" => Ok(Policy::slurm_like()),
            "haneul" | "default" => Ok(Policy::default()),
            other => Err(file_err(
                &self.path,
                format!(
                    "policies: unknown policy `{other}`; use fifo, slurm-like, haneul{}",
                    self.custom_policies
                        .keys()
                        .map(|k| format!(", {k}"))
                        .collect::<String>()
                ),
            )),
        }
    }

    pub fn catalogue(&self) -> Result<Catalogue, SimError> {
        match &self.catalogue {
            Some(p) => Catalogue::load(p),
            None => Ok(Catalogue::default_catalogue()),
        }
    }

    pub fn load_fleet(&self, fleet: &str, catalogue: &Catalogue) -> Result<FleetSpec, SimError> {
        match fleet.strip_prefix("openb-nodes:") {
            Some(p) => workload::openb_trace::fleet(Path::new(p)),
            None => FleetSpec::load(Path::new(fleet), catalogue),
        }
    }

    pub fn load_workload(&self, fleet: &FleetSpec) -> Result<Workload, SimError> {
        self.load_workload_sized(fleet, fleet)
    }

    /// The workload for `fleet`, with a synthetic arrival rate set by `demand_fleet`'s capacity:
    /// the planner gives every candidate the same synthetic jobs, while trace jobs are still
    /// split to each candidate's node size.
    pub fn load_workload_sized(
        &self,
        fleet: &FleetSpec,
        demand_fleet: &FleetSpec,
    ) -> Result<Workload, SimError> {
        let shape = Shape {
            max_gpus_per_node: fleet.max_gpus_per_node(),
        };
        let mut w = match &self.workload {
            WorkloadSpec::Philly { path, class } => workload::philly::load(path, shape, *class)?,
            WorkloadSpec::Openb { path } => workload::openb_trace::load(path)?,
            WorkloadSpec::Csv { path } => workload::generic::load_csv(path, shape)?,
            WorkloadSpec::Jsonl { path } => workload::generic::load_jsonl(path, shape)?,
            WorkloadSpec::Synthetic(cfg) => {
                let capacity = self.reference_capacity(demand_fleet)?;
                workload::synthetic::generate(cfg, capacity, self.seed, &self.path)?
            }
        };
        if let Some(n) = self.limit_jobs {
            w.truncate(n);
        }
        for o in &self.projects {
            let Some(p) = w.projects.iter_mut().find(|p| p.name == o.name) else {
                return Err(file_err(
                    &self.path,
                    format!("projects.name: the workload has no project `{}`", o.name),
                ));
            };
            if let Some(c) = &o.class {
                p.class = workload::generic::parse_class(c).ok_or_else(|| {
                    file_err(
                        &self.path,
                        format!("projects.class: unknown tenant class `{c}`"),
                    )
                })?;
            }
            if let Some(wt) = o.weight {
                if wt == 0 {
                    return Err(file_err(
                        &self.path,
                        "projects.weight: must be at least 1".into(),
                    ));
                }
                p.weight = wt;
            }
            if let Some(g) = o.guaranteed_gpus {
                p.guaranteed_gpus = g;
            }
        }
        w.check_against(fleet)?;
        Ok(w)
    }

    /// The fleet's GPUs in units of the class run times were measured on (an H200 counts 1.3
    /// H100s), so that an offered load means the same on fleets of different speeds.
    pub fn reference_capacity(&self, fleet: &FleetSpec) -> Result<f64, SimError> {
        let catalogue = self.catalogue()?;
        let reference = catalogue
            .get(&self.measured_on)
            .map(|c| c.throughput)
            .unwrap_or(1.0);
        Ok(fleet
            .fleet
            .nodes
            .iter()
            .map(|n| {
                let t = catalogue
                    .get(n.gpu_model.as_str())
                    .map(|c| c.throughput)
                    .unwrap_or(1.0);
                n.gpus as f64 * t / reference
            })
            .sum())
    }

    pub(crate) fn sim_config(&self, name: &str) -> Result<SimConfig, SimError> {
        Ok(SimConfig {
            policy_name: name.to_string(),
            policy: self.policy(name)?,
            measured_on: self.measured_on.clone(),
            exact_estimates: self.exact_estimates,
            failures: self.failures,
            seed: self.seed,
            check_invariants: false,
            schedule_interval: Span((self.schedule_interval_s * 1000.0).round() as i64),
            explain: false,
        })
    }
}

fn stem(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "scenario".into())
}

/// Runs one policy on one fleet; `progress(done, total)` as the run goes.
pub fn run_policy(
    scenario: &Scenario,
    workload: &Workload,
    fleet: &FleetSpec,
    catalogue: &Catalogue,
    policy: &str,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<PolicyReport, SimError> {
    run_policy_explained(
        scenario, workload, fleet, catalogue, policy, false, progress,
    )
}

/// [`run_policy`], with the idle GPU-time split by cause when `explain` is set.
pub fn run_policy_explained(
    scenario: &Scenario,
    workload: &Workload,
    fleet: &FleetSpec,
    catalogue: &Catalogue,
    policy: &str,
    explain: bool,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<PolicyReport, SimError> {
    let mut cfg = scenario.sim_config(policy)?;
    cfg.explain = explain;
    let t0 = std::time::Instant::now();
    let r = driver::run(workload, fleet, catalogue, &cfg, progress)?;
    let wall = t0.elapsed().as_secs_f64();
    Ok(metrics::summarise(workload, fleet, catalogue, &r, wall))
}
