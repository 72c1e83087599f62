//! Workloads: the jobs a simulation replays and the projects that submit them. This module owns
//! the common job form ([`SimJob`]) that every loader produces (Philly, openb, generic CSV/JSONL,
//! the synthetic generator), the check of a workload against a fleet, and the tenants built from it.

pub mod generic;
pub mod openb_trace;
pub mod philly;
pub mod synthetic;

use crate::error::SimError;
use crate::fleet_file::FleetSpec;
use haneul_model::{
    GpuModel, GpuRequest, Job, JobId, JobSpec, MemMib, MilliCpu, MilliGpu, OrgClass, OrgId,
    Organisation, PriorityClass, Project, ProjectId, Quota, Span, Tenants, Time,
};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

/// One job of a workload. `work` is its run time on the GPU class the workload was measured on;
/// the driver scales it by the class the engine places it on.
#[derive(Debug, Clone, PartialEq)]
pub struct SimJob {
    pub submit: Time,
    pub project: u32,
    pub replicas: u32,
    pub gpu: GpuRequest,
    pub cpu: MilliCpu,
    pub mem: MemMib,
    pub models: Vec<GpuModel>,
    pub work: Span,
    pub estimate: Option<Span>,
    pub time_limit: Option<Span>,
    pub priority: PriorityClass,
    pub preemptible: bool,
    pub grace: Span,
    /// Line of the source file (0 for generated jobs), for error messages.
    pub line: u64,
}

impl SimJob {
    pub fn new(submit: Time, project: u32, replicas: u32, gpu: GpuRequest, work: Span) -> Self {
        SimJob {
            submit,
            project,
            replicas,
            gpu,
            cpu: MilliCpu::ZERO,
            mem: MemMib::ZERO,
            models: Vec::new(),
            work,
            estimate: None,
            time_limit: None,
            priority: PriorityClass::Normal,
            preemptible: true,
            grace: Span::ZERO,
            line: 0,
        }
    }

    /// GPUs of the whole gang (fractions count as their share).
    pub fn gpus(&self) -> f64 {
        self.gpu.milli().as_gpus() * self.replicas as f64
    }

    pub fn total_milli(&self) -> u64 {
        self.gpu.milli().0 * self.replicas as u64
    }
}

/// A project of the workload: who submits, in which tenant class, with which fair-share weight.
#[derive(Debug, Clone, PartialEq)]
pub struct ProjectDef {
    pub name: String,
    /// The organisation; pools with `owner = "<org>"` belong to it.
    pub org: String,
    pub class: OrgClass,
    pub weight: u32,
    /// Whole GPUs always available to the project, spread over the fleet's GPU models by size.
    pub guaranteed_gpus: u64,
}

#[derive(Debug, Clone, Default)]
pub struct Workload {
    /// The file the jobs came from (empty for a generated workload).
    pub source: PathBuf,
    pub projects: Vec<ProjectDef>,
    /// Sorted by submission time; a job's index is its id.
    pub jobs: Vec<SimJob>,
    /// The source's name for the allowed-models field, for error messages.
    pub model_field: &'static str,
}

/// The longest run time and latest submission a trace may state (ten years, and the year 9999),
/// so that virtual time never overflows.
pub const MAX_DURATION_S: f64 = 10.0 * 365.0 * 86_400.0;
pub const MAX_SUBMIT_S: f64 = 253_402_300_799.0;

/// What loaders need to know about the fleet.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    pub max_gpus_per_node: u32,
}

/// A row's total GPU count as a gang of equal per-node tasks: the largest task size that divides
/// the count and fits one node. 16 GPUs on 8-GPU nodes are 2 x 8; 12 are 2 x 6.
pub fn split_gang(gpus: u32, max_per_node: u32) -> (u32, u32) {
    if gpus <= max_per_node || max_per_node == 0 {
        return (1, gpus);
    }
    let per = (1..=max_per_node)
        .rev()
        .find(|d| gpus.is_multiple_of(*d))
        .unwrap_or(1);
    (gpus / per, per)
}

/// Projects by name in order of first appearance, so ids never depend on hash order.
#[derive(Debug, Default)]
pub(crate) struct ProjectTable {
    pub by_name: BTreeMap<String, u32>,
    pub defs: Vec<ProjectDef>,
}

impl ProjectTable {
    pub fn get_or_add(&mut self, name: &str, class: OrgClass) -> u32 {
        if let Some(&i) = self.by_name.get(name) {
            return i;
        }
        let i = self.defs.len() as u32;
        self.by_name.insert(name.to_string(), i);
        self.defs.push(ProjectDef {
            name: name.to_string(),
            org: name.to_string(),
            class,
            weight: 1,
            guaranteed_gpus: 0,
        });
        i
    }
}

impl Workload {
    /// Orders jobs by submission (stable, so ties keep file order) and starts the clock at the
    /// first submission.
    pub(crate) fn finish_loading(&mut self) {
        self.jobs.sort_by_key(|j| j.submit);
        if let Some(t0) = self.jobs.first().map(|j| j.submit) {
            for j in &mut self.jobs {
                j.submit = Time(j.submit.0 - t0.0);
            }
        }
    }

    /// Keeps the first `n` jobs by submission.
    pub fn truncate(&mut self, n: usize) {
        self.jobs.truncate(n);
    }

    /// Checks every job against the fleet: allowed GPU models must exist in it. Errors name the
    /// source file, line and field.
    pub fn check_against(&self, fleet: &FleetSpec) -> Result<(), SimError> {
        let models: BTreeSet<&str> = fleet
            .fleet
            .nodes
            .iter()
            .filter(|n| n.gpus > 0)
            .map(|n| n.gpu_model.as_str())
            .collect();
        for j in &self.jobs {
            for m in &j.models {
                if !models.contains(m.as_str()) {
                    return Err(SimError::Row {
                        path: self.source.clone(),
                        line: j.line,
                        field: self.model_field.into(),
                        reason: format!(
                            "unknown GPU model `{m}`; the fleet ({}) has {}",
                            fleet.path.display(),
                            models.iter().copied().collect::<Vec<_>>().join(", ")
                        ),
                    });
                }
            }
        }
        Ok(())
    }

    /// Tenants for the engine: one organisation per distinct `org`, one project per project, with
    /// guarantees spread over the fleet's models in proportion to their GPU counts.
    pub fn tenants(&self, fleet: &FleetSpec) -> Result<(Tenants, haneul_model::Fleet), SimError> {
        let mut orgs: BTreeMap<&str, (OrgId, OrgClass)> = BTreeMap::new();
        let mut org_list = Vec::new();
        for p in &self.projects {
            if !orgs.contains_key(p.org.as_str()) {
                let id = OrgId(org_list.len() as u32);
                orgs.insert(&p.org, (id, p.class));
                org_list.push(Organisation {
                    id,
                    name: p.org.clone(),
                    class: p.class,
                    country: "KR".into(),
                    parent: None,
                });
            }
        }
        let mut per_model: BTreeMap<GpuModel, u64> = BTreeMap::new();
        for n in &fleet.fleet.nodes {
            if n.gpus > 0 {
                *per_model.entry(n.gpu_model.clone()).or_default() += n.gpus as u64;
            }
        }
        let total: u64 = per_model.values().sum();
        let projects = self
            .projects
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let quotas = if p.guaranteed_gpus == 0 {
                    BTreeMap::new()
                } else {
                    per_model
                        .iter()
                        .map(|(m, &g)| {
                            let milli = p.guaranteed_gpus * 1000 * g / total.max(1);
                            (
                                m.clone(),
                                Quota {
                                    guaranteed: MilliGpu(milli),
                                    borrow_limit: None,
                                },
                            )
                        })
                        .collect()
                };
                Project {
                    id: ProjectId(i as u32),
                    org: orgs[p.org.as_str()].0,
                    name: p.name.clone(),
                    quotas,
                    weight: p.weight,
                }
            })
            .collect();
        let tenants = Tenants::new(org_list, projects)?;
        let mut f = fleet.fleet.clone();
        for (pool, owner) in &fleet.owners {
            if let Some(&(id, _)) = orgs.get(owner.as_str()) {
                f.pools[pool.0 as usize].owner = Some(id);
            }
        }
        Ok((tenants, f))
    }

    /// The engine's job for workload job `i`.
    pub fn engine_job(&self, i: usize) -> Job {
        let j = &self.jobs[i];
        Job {
            id: JobId(i as u64),
            submitted_at: j.submit,
            spec: JobSpec {
                project: ProjectId(j.project),
                name: String::new(),
                replicas: j.replicas,
                gpu: j.gpu,
                cpu_per_task: j.cpu,
                memory_per_task: j.mem,
                gpu_models: j.models.clone(),
                priority: j.priority,
                preemptible: j.preemptible,
                grace: j.grace,
                time_limit: j.time_limit,
                runtime_estimate: j.estimate,
                dependencies: Vec::new(),
            },
        }
    }
}

/// Size buckets the reports group jobs by (whole-gang GPUs).
pub const SIZE_BUCKETS: [&str; 6] = ["<1", "1", "2-4", "5-8", "9-64", ">64"];

pub fn size_bucket(gpus: f64) -> usize {
    if gpus < 1.0 {
        0
    } else if gpus <= 1.0 {
        1
    } else if gpus <= 4.0 {
        2
    } else if gpus <= 8.0 {
        3
    } else if gpus <= 64.0 {
        4
    } else {
        5
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gangs_split_into_node_sized_tasks() {
        assert_eq!(split_gang(4, 8), (1, 4));
        assert_eq!(split_gang(16, 8), (2, 8));
        assert_eq!(split_gang(12, 8), (2, 6));
        assert_eq!(split_gang(128, 8), (16, 8));
        assert_eq!(split_gang(7, 4), (7, 1));
    }
}
