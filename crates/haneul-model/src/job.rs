use crate::{GpuModel, JobId, MemMib, MilliCpu, MilliGpu, ModelError, ProjectId, Span, Time};
use serde::{Deserialize, Serialize};

/// GPUs asked for by each task of a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GpuRequest {
    /// No GPU: a CPU-only task.
    None,
    /// Whole GPUs, all on one node.
    Whole(u32),
    /// A share of one GPU in milli-GPU, 1..=999 (1000 is `Whole(1)`).
    Fraction(u32),
}

impl GpuRequest {
    /// Milli-GPU one task holds.
    pub fn milli(self) -> MilliGpu {
        match self {
            GpuRequest::None => MilliGpu::ZERO,
            GpuRequest::Whole(n) => MilliGpu::gpus(n as u64),
            GpuRequest::Fraction(m) => MilliGpu(m as u64),
        }
    }
    /// Builds a request from a GPU count and a per-GPU share, the way pod traces state it.
    pub fn from_count_and_milli(count: u32, milli: u32) -> Result<Self, ModelError> {
        match (count, milli) {
            (0, _) => Ok(GpuRequest::None),
            (n, 1000) => Ok(GpuRequest::Whole(n)),
            (1, m @ 1..=999) => Ok(GpuRequest::Fraction(m)),
            (1, m) => Err(ModelError::invalid(
                "gpu_milli",
                format!("a share of one GPU must be 1 to 1000 milli-GPU, got {m}"),
            )),
            (n, m) => Err(ModelError::invalid(
                "gpu_milli",
                format!("a task asking for {n} GPUs must take them whole (1000), got {m}"),
            )),
        }
    }
}

/// Priority class within a project's queue (after fair share), as Kueue's WorkloadPriorityClass.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum PriorityClass {
    Low,
    #[default]
    Normal,
    High,
    Urgent,
}

impl PriorityClass {
    pub fn parse(s: &str) -> Result<Self, ModelError> {
        match s.to_ascii_lowercase().as_str() {
            "low" => Ok(PriorityClass::Low),
            "normal" => Ok(PriorityClass::Normal),
            "high" => Ok(PriorityClass::High),
            "urgent" => Ok(PriorityClass::Urgent),
            other => Err(ModelError::invalid(
                "priority",
                format!("unknown priority class `{other}`; use low, normal, high or urgent"),
            )),
        }
    }
}

/// What a user asks for. A job is a gang: `replicas` tasks, each with the same resources, started
/// all together or not at all.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobSpec {
    pub project: ProjectId,
    #[serde(default)]
    pub name: String,
    pub replicas: u32,
    pub gpu: GpuRequest,
    #[serde(default)]
    pub cpu_per_task: MilliCpu,
    #[serde(default)]
    pub memory_per_task: MemMib,
    /// Allowed GPU models; empty means any.
    #[serde(default)]
    pub gpu_models: Vec<GpuModel>,
    #[serde(default)]
    pub priority: PriorityClass,
    #[serde(default = "default_true")]
    pub preemptible: bool,
    /// Time between the preemption signal and the kill, for a checkpoint.
    #[serde(default)]
    pub grace: Span,
    pub time_limit: Option<Span>,
    /// The user's estimate of run time on the reference GPU; backfill plans with it.
    pub runtime_estimate: Option<Span>,
    /// Jobs that must end first (Slurm's `--dependency`). The engine never sees a job whose
    /// dependencies are unmet: the server holds it back until they are.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dependencies: Vec<Dependency>,
}

/// When a dependent job may start, as Slurm's `afterok` and `afterany`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DependencyKind {
    /// After the parent succeeds; if it ends any other way, the dependent job fails.
    AfterOk,
    /// After the parent ends, however it ends.
    AfterAny,
}

impl DependencyKind {
    pub fn parse(s: &str) -> Result<Self, ModelError> {
        match s {
            "afterok" => Ok(DependencyKind::AfterOk),
            "afterany" => Ok(DependencyKind::AfterAny),
            other => Err(ModelError::invalid(
                "dependencies",
                format!("unknown dependency kind `{other}`; use afterok or afterany"),
            )),
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            DependencyKind::AfterOk => "afterok",
            DependencyKind::AfterAny => "afterany",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Dependency {
    pub kind: DependencyKind,
    pub job: JobId,
}

fn default_true() -> bool {
    true
}

impl JobSpec {
    /// A spec with the given gang shape and defaults for everything else.
    pub fn new(project: ProjectId, replicas: u32, gpu: GpuRequest) -> Self {
        JobSpec {
            project,
            name: String::new(),
            replicas,
            gpu,
            cpu_per_task: MilliCpu::ZERO,
            memory_per_task: MemMib::ZERO,
            gpu_models: Vec::new(),
            priority: PriorityClass::Normal,
            preemptible: true,
            grace: Span::ZERO,
            time_limit: None,
            runtime_estimate: None,
            dependencies: Vec::new(),
        }
    }

    /// Total milli-GPU of the whole gang.
    pub fn total_gpu(&self) -> MilliGpu {
        MilliGpu(self.gpu.milli().0 * self.replicas as u64)
    }

    /// Checks the spec on its own (without a fleet): the engine adds the checks that need one.
    pub fn validate(&self) -> Result<(), ModelError> {
        if self.replicas == 0 {
            return Err(ModelError::invalid(
                "replicas",
                "a job needs at least one task; set replicas to 1 or more",
            ));
        }
        match self.gpu {
            GpuRequest::Whole(0) => {
                return Err(ModelError::invalid(
                    "gpus",
                    "a task asking for whole GPUs needs at least 1; use `none` for CPU-only tasks",
                ));
            }
            GpuRequest::Fraction(m) if m == 0 || m >= 1000 => {
                return Err(ModelError::invalid(
                    "gpu_fraction",
                    format!(
                        "a fraction of one GPU must be 1 to 999 milli-GPU, got {m}; ask for whole GPUs above that"
                    ),
                ));
            }
            _ => {}
        }
        if self.gpu == GpuRequest::None && self.cpu_per_task == MilliCpu::ZERO {
            return Err(ModelError::invalid(
                "cpu_per_task",
                "a task with no GPU must ask for some CPU",
            ));
        }
        if let Some(t) = self.time_limit
            && t.0 <= 0
        {
            return Err(ModelError::invalid("time_limit", "must be positive"));
        }
        if let Some(t) = self.runtime_estimate
            && t.0 <= 0
        {
            return Err(ModelError::invalid("runtime_estimate", "must be positive"));
        }
        if self.grace.0 < 0 {
            return Err(ModelError::invalid("grace", "must not be negative"));
        }
        Ok(())
    }
}

/// What a batch script (Slurm's `sbatch`) asks for beyond the gang's shape: where output goes,
/// where it runs, whom to tell. The engine never reads it; the server keeps it with the job and
/// the agent gives it to the task (as Slurm's environment), so a script runs as it did under
/// Slurm. Every field is optional; `None` is Slurm's default.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchOptions {
    /// `--output` pattern as written (`%j`, `%A`, `%a`, `%x`, `%u`, `%N`, `%%`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    /// `--error` pattern as written; `None`: standard error goes with the output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// `--chdir`: where the script runs; `None`: the submit directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chdir: Option<String>,
    /// The directory `sbatch` ran in (`SLURM_SUBMIT_DIR`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub submit_dir: Option<String>,
    /// `--account` as written (`SLURM_JOB_ACCOUNT`); the job's project is what it named.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// `--partition` as written (`SLURM_JOB_PARTITION`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition: Option<String>,
    /// `--ntasks` when it differs from the gang's size (`SLURM_NTASKS`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ntasks: Option<u32>,
    /// `--mail-type` (kept; Haneul sends no mail).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mail_type: Option<String>,
    /// `--mail-user` (kept; Haneul sends no mail).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mail_user: Option<String>,
    /// `--signal` as written (`[{R|B}:]SIG[@TIME]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<String>,
    /// `--requeue` (true) or `--no-requeue` (false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requeue: Option<bool>,
    /// `--export` as written (`ALL`, `NONE`, `NAME[=value],...`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub export: Option<String>,
}

/// A submitted job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    pub id: JobId,
    pub spec: JobSpec,
    pub submitted_at: Time,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fractions_above_one_gpu_are_refused() {
        let mut spec = JobSpec::new(ProjectId(1), 1, GpuRequest::Fraction(1500));
        let err = spec.validate().unwrap_err();
        assert!(err.to_string().starts_with("gpu_fraction:"), "{err}");
        spec.gpu = GpuRequest::Fraction(500);
        spec.validate().unwrap();
        spec.replicas = 0;
        assert!(
            spec.validate()
                .unwrap_err()
                .to_string()
                .starts_with("replicas:")
        );
    }

    #[test]
    fn trace_style_requests_map_to_gpu_requests() {
        assert_eq!(
            GpuRequest::from_count_and_milli(1, 460).unwrap(),
            GpuRequest::Fraction(460)
        );
        assert_eq!(
            GpuRequest::from_count_and_milli(4, 1000).unwrap(),
            GpuRequest::Whole(4)
        );
        assert_eq!(
            GpuRequest::from_count_and_milli(0, 0).unwrap(),
            GpuRequest::None
        );
        assert!(GpuRequest::from_count_and_milli(2, 500).is_err());
    }
}
