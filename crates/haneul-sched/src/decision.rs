//! What a scheduling pass decides. Drivers act on these and report back.

use haneul_model::{GpuModel, JobId, MilliGpu, NodeId, Time};
use serde::{Deserialize, Serialize};

/// Where one task runs: a node and the GPUs on it (indices within the node).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskPlacement {
    pub node: NodeId,
    pub gpus: Vec<u32>,
    /// Share of each listed GPU the task holds (1000 for whole GPUs).
    pub milli_per_gpu: MilliGpu,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placement {
    pub tasks: Vec<TaskPlacement>,
}

impl Placement {
    pub fn nodes(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.tasks.iter().map(|t| t.node)
    }
}

/// Start this job now on this placement. The engine already counts the resources as taken.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Start {
    pub job: JobId,
    pub placement: Placement,
    /// The GPU model the job was placed on (`None` for CPU-only jobs).
    pub gpu_model: Option<GpuModel>,
    /// Runs above the project's guarantee, on borrowed capacity: it may be preempted.
    pub borrowing: bool,
}

/// Ask a running job to stop so that a guarantee can be given back. The driver signals it now,
/// kills it at `kill_at` at the latest, and then calls [`crate::Engine::requeue`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Preemption {
    pub victim: JobId,
    pub for_job: JobId,
    pub kill_at: Time,
}

/// A blocked job's planned start, from the running jobs' estimated ends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reservation {
    pub job: JobId,
    pub start_at: Time,
    pub nodes: Vec<NodeId>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decisions {
    pub starts: Vec<Start>,
    pub preemptions: Vec<Preemption>,
    pub reservations: Vec<Reservation>,
}

impl Decisions {
    pub fn is_empty(&self) -> bool {
        self.starts.is_empty() && self.preemptions.is_empty()
    }
}
