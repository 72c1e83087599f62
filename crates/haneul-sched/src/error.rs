use haneul_model::{JobId, ModelError, NodeId, ProjectId};
use thiserror::Error;

/// Why the engine refused an input. Every variant names the field or object at fault, so a driver
/// can hand the message to the user as is.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SchedError {
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error("gpu_models: unknown GPU model `{0}`; the fleet has {1}")]
    UnknownGpuModel(String, String),
    #[error("project: unknown project `{0}`; create it before submitting")]
    UnknownProject(ProjectId),
    #[error("job: unknown job `{0}`")]
    UnknownJob(JobId),
    #[error("job: `{0}` was already submitted")]
    DuplicateJob(JobId),
    #[error("node: unknown node `{0}`")]
    UnknownNode(NodeId),
    #[error(
        "replicas: the job needs {needed} tasks of {per_task} but the largest eligible pool can ever hold {capacity}; ask for fewer or smaller tasks"
    )]
    TooLarge {
        needed: u32,
        per_task: String,
        capacity: u64,
    },
    #[error("{field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error("job: `{job}` is {state}, not {expected}")]
    WrongState {
        job: JobId,
        state: &'static str,
        expected: &'static str,
    },
}
