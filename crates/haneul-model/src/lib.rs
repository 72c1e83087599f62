//! Domain types shared by every part of Haneul.
//!
//! This crate owns the vocabulary: typed ids, quantities (milli-GPU, milli-CPU, MiB), engine time
//! (integer milliseconds), the fleet (pools > blocks > nodes > GPUs), tenants (organisations >
//! projects with per-GPU-class quotas) and job specifications. It holds no policy and does no I/O;
//! validation here is limited to what makes a value meaningful on its own.

mod array;
mod error;
mod fleet;
mod ids;
mod job;
mod quantity;
mod tenants;
mod time;

pub use array::{ArraySpec, MAX_ARRAY_TASK_ID, MAX_ARRAY_TASKS, compress_task_ids};
pub use error::ModelError;
pub use fleet::{Block, Fleet, GpuModel, Lending, Node, NodeState, Pool};
pub use ids::{BlockId, JobId, NodeId, OrgId, PoolId, ProjectId};
pub use job::{BatchOptions, Dependency, DependencyKind, GpuRequest, Job, JobSpec, PriorityClass};
pub use quantity::{MemMib, MilliCpu, MilliGpu};
pub use tenants::{OrgClass, Organisation, Project, Quota, Tenants};
pub use time::{Span, Time};
