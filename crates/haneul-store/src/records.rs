//! Plain records the store reads and writes. Enums stored as text have one `as_str`/`parse` pair
//! each, so the database never holds a spelling the code cannot read back.

use haneul_model::{GpuModel, JobSpec, Quota};
use haneul_sched::Placement;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

macro_rules! text_enum {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name { $($(#[$vdoc])* $variant),+ }
        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
            pub fn parse(s: &str) -> Option<Self> {
                match s { $($text => Some($name::$variant),)+ _ => None }
            }
        }
        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

text_enum!(
    /// What a user may do; see docs/server.md for the full matrix.
    Role {
        CentreAdmin = "centre-admin",
        OrgAdmin = "org-admin",
        Member = "member",
        Auditor = "auditor",
        Agent = "agent",
    }
);

text_enum!(
    /// A job's place in its life cycle (docs/server.md draws the state machine).
    JobState {
        Queued = "queued",
        Running = "running",
        /// Asked to stop (cancel, preemption, time limit); the attempt still holds its GPUs.
        Stopping = "stopping",
        Succeeded = "succeeded",
        Failed = "failed",
        Cancelled = "cancelled",
        TimedOut = "timed_out",
    }
);

impl JobState {
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            JobState::Succeeded | JobState::Failed | JobState::Cancelled | JobState::TimedOut
        )
    }
}

text_enum!(
    /// One run of a job on one placement.
    AttemptState {
        /// Decided and written; the agents have not yet said the tasks started.
        Assigned = "assigned",
        Running = "running",
        Stopping = "stopping",
        Succeeded = "succeeded",
        Failed = "failed",
        Cancelled = "cancelled",
        TimedOut = "timed_out",
        /// Stopped to give a guarantee back; the job was requeued.
        Preempted = "preempted",
        /// Its node stopped heartbeating; the job was requeued.
        NodeLost = "node_lost",
    }
);

impl AttemptState {
    pub fn is_live(self) -> bool {
        matches!(
            self,
            AttemptState::Assigned | AttemptState::Running | AttemptState::Stopping
        )
    }
}

text_enum!(
    /// Why a running attempt was asked to stop.
    StopReason {
        Cancel = "cancel",
        Preempt = "preempt",
        TimeLimit = "time_limit",
        TaskFailed = "task_failed",
    }
);

text_enum!(
    TaskState {
        Assigned = "assigned",
        Running = "running",
        Exited = "exited",
        Lost = "lost",
    }
);

text_enum!(
    NodeState {
        Up = "up",
        Draining = "draining",
        Down = "down",
    }
);

text_enum!(
    /// What a controller event asks it to do with its engine.
    EventKind {
        Submitted = "submitted",
        Started = "started",
        StopRequested = "stop_requested",
        /// A queued job was cancelled: drop it from the engine.
        Dequeued = "dequeued",
        /// An attempt ended and its job is done: free the resources.
        Finished = "finished",
        /// An attempt ended and its job goes back to the queue.
        Requeued = "requeued",
        /// Pools, nodes or node states changed: rebuild the engine.
        FleetChanged = "fleet_changed",
        ProjectChanged = "project_changed",
    }
);

text_enum!(
    /// Whether the centre has checked who an organisation is. Only verified ones run jobs.
    Verification {
        Pending = "pending",
        Verified = "verified",
        Suspended = "suspended",
    }
);

// `text_enum!` derives no `Default`, so `#[default]` is not available here.
#[allow(clippy::derivable_impls)]
impl Default for Verification {
    fn default() -> Self {
        Verification::Verified
    }
}

text_enum!(
    LedgerKind {
        Charge = "charge",
        /// Gives a charge back: the attempt was lost to a node fault.
        Refund = "refund",
        /// Owed to the owner of a partner pool that another organisation's job ran on.
        Credit = "credit",
    }
);

text_enum!(
    CallState {
        Open = "open",
        Closed = "closed",
        Awarded = "awarded",
    }
);

text_enum!(
    ApplicationState {
        Submitted = "submitted",
        Awarded = "awarded",
        Declined = "declined",
    }
);

/// Who does something, as written to the audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub user: Option<i64>,
    pub name: String,
}

impl Actor {
    pub fn system(name: &str) -> Self {
        Actor {
            user: None,
            name: name.to_string(),
        }
    }
    pub fn user(u: &UserRecord) -> Self {
        Actor {
            user: Some(u.id),
            name: u.name.clone(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct NewOrg {
    pub name: String,
    pub class: String,
    pub country: String,
    pub parent: Option<i64>,
    /// Country of the ultimate parent when it is not an organisation registered here.
    #[serde(default)]
    pub parent_country: Option<String>,
    #[serde(default)]
    pub verification: Verification,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrgRecord {
    pub id: i64,
    pub name: String,
    pub class: String,
    pub country: String,
    pub parent: Option<i64>,
    pub parent_country: Option<String>,
    pub verification: Verification,
    pub created_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewProject {
    pub org_id: i64,
    pub name: String,
    pub weight: i64,
    pub quotas: BTreeMap<GpuModel, Quota>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProjectRecord {
    pub id: i64,
    pub org_id: i64,
    pub name: String,
    pub weight: i64,
    pub quotas: BTreeMap<GpuModel, Quota>,
    pub created_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewUser {
    pub name: String,
    pub role: Role,
    pub org_id: Option<i64>,
    pub projects: Vec<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    pub id: i64,
    pub name: String,
    pub role: Role,
    pub org_id: Option<i64>,
    /// Projects the user is a member of.
    pub projects: Vec<i64>,
    pub created_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRecord {
    pub id: i64,
    pub user_id: i64,
    pub name: String,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPool {
    pub name: String,
    pub owner: Option<i64>,
    pub lending: haneul_model::Lending,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolRecord {
    pub id: i64,
    pub name: String,
    pub owner: Option<i64>,
    pub lending: haneul_model::Lending,
}

/// A node's inventory as its agent reports it at registration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewNode {
    pub name: String,
    pub pool: String,
    pub block: String,
    pub gpu_model: GpuModel,
    pub gpus: i64,
    pub gpu_memory_mib: i64,
    pub nvlink_domain: i64,
    pub cpu_milli: i64,
    pub memory_mib: i64,
    pub agent_user: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRecord {
    pub id: i64,
    pub name: String,
    pub pool_id: i64,
    pub block_id: i64,
    pub block: String,
    pub gpu_model: GpuModel,
    pub gpus: i64,
    pub gpu_memory_mib: i64,
    pub nvlink_domain: i64,
    pub cpu_milli: i64,
    pub memory_mib: i64,
    pub state: NodeState,
    pub down_reason: Option<String>,
    pub agent_user: Option<i64>,
    pub last_heartbeat: i64,
    /// How the agent enforces task limits (`cgroup-v2`, `rlimit`); `None` until it says.
    pub limits: Option<String>,
    /// The address the agent advertises for its tasks (`--advertise-addr`).
    pub address: Option<String>,
    /// The failing health check while the agent reports one; `None` when healthy.
    pub health: Option<String>,
    /// The agent's container runtime (`podman`, `apptainer`, `none`); `None` until it says.
    pub container_runtime: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewJob {
    pub user_id: i64,
    /// `spec.project` is the project id.
    pub spec: JobSpec,
    pub command: Vec<String>,
    /// The container image the tasks run in; `None`: the command runs directly.
    pub container_image: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRecord {
    pub id: i64,
    pub project_id: i64,
    pub user_id: i64,
    pub name: String,
    pub spec: JobSpec,
    pub command: Vec<String>,
    pub container_image: Option<String>,
    pub state: JobState,
    pub submitted_at: i64,
    pub updated_at: i64,
    /// Attempts made so far; the current attempt's fence equals this number.
    pub attempts: i64,
    pub exit_code: Option<i64>,
    pub reason: Option<String>,
}

/// Which jobs to list. `projects` restricts to those projects (tenant isolation is applied by the
/// caller choosing it); `None` means all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobFilter {
    pub projects: Option<Vec<i64>>,
    pub state: Option<JobState>,
    /// Only jobs with an id below this (paging newest first).
    pub before: Option<i64>,
    pub limit: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAttempt {
    pub job_id: i64,
    pub placement: Placement,
    pub gpu_model: Option<GpuModel>,
    pub borrowing: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptRecord {
    pub id: i64,
    pub job_id: i64,
    /// The fencing token: the attempt's number within its job. Agents present it with every
    /// report; only the job's current attempt is accepted.
    pub fence: i64,
    /// The controller lease epoch under which the attempt was started.
    pub epoch: i64,
    pub placement: Placement,
    pub gpu_model: Option<GpuModel>,
    pub borrowing: bool,
    pub state: AttemptState,
    pub stop_reason: Option<StopReason>,
    pub kill_at: Option<i64>,
    pub deadline: Option<i64>,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub ended_at: Option<i64>,
    pub exit_code: Option<i64>,
    pub gpu_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRecord {
    pub seq: i64,
    pub at: i64,
    pub kind: EventKind,
    pub job_id: Option<i64>,
    pub attempt_id: Option<i64>,
    pub node_id: Option<i64>,
    pub detail: String,
}

/// The controller's starting point: the fleet, the tenants, the work, and the event cursor that
/// state reflects.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub cursor: i64,
    pub pools: Vec<PoolRecord>,
    pub nodes: Vec<NodeRecord>,
    pub orgs: Vec<OrgRecord>,
    pub projects: Vec<ProjectRecord>,
    /// Queued jobs, oldest first.
    pub queued: Vec<JobRecord>,
    /// Live attempts with their jobs.
    pub running: Vec<(JobRecord, AttemptRecord)>,
}

/// One task of a live attempt that an agent must run (or stop).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    pub job: JobRecord,
    pub attempt: AttemptRecord,
    pub task: i64,
    pub gpus: Vec<u32>,
    pub task_state: TaskState,
    /// Where every task of the gang runs, by task index (rank 0 is the master): the node's
    /// advertised address, or its name when it advertises none.
    pub peers: Vec<String>,
    /// Name of the user who submitted the job (an agent running as root may run the task as
    /// the Unix account of that name).
    pub user_name: String,
}

/// What an agent says about one task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskReport {
    pub node: i64,
    pub job: i64,
    pub fence: i64,
    pub task: i64,
    /// `None`: the task started. `Some(code)`: it exited with this code.
    pub exit_code: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRecord {
    pub id: i64,
    pub fence: i64,
    pub task: i64,
    pub data: String,
    pub at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAward {
    pub project_id: i64,
    pub gpu_model: GpuModel,
    pub gpu_hours: i64,
    pub valid_from: i64,
    pub valid_until: i64,
    /// Whole GPUs the project may hold at once: its guarantee while the award is valid.
    pub gpu_quota: i64,
    /// The application this award answers, when made from a call.
    pub application_id: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwardRecord {
    pub id: i64,
    pub project_id: i64,
    pub gpu_model: GpuModel,
    /// As first granted; top-ups and take-backs are in [`AwardChange`].
    pub gpu_hours: i64,
    pub valid_from: i64,
    pub valid_until: i64,
    pub gpu_quota: i64,
    pub application_id: Option<i64>,
    pub created_at: i64,
}

/// An award with what the ledger has charged against it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwardBalance {
    pub award: AwardRecord,
    /// Granted GPU-hours plus top-ups minus take-backs, in GPU-milliseconds.
    pub granted_ms: i64,
    /// Weighted charges minus refunds, in GPU-milliseconds.
    pub used_ms: i64,
}

/// A top-up (positive) or take-back (negative) of an award.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwardChange {
    pub id: i64,
    pub award_id: i64,
    pub gpu_hours: i64,
    pub reason: String,
    pub actor: String,
    pub at: i64,
}

/// One row of the append-only ledger. `charged_ms` is `gpu_ms` times the GPU class weight;
/// refunds carry it negated, credits are owed to a partner pool's owner (`org_id`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerEntry {
    pub id: i64,
    pub at: i64,
    pub kind: LedgerKind,
    pub attempt_id: i64,
    pub project_id: i64,
    pub org_id: i64,
    pub award_id: Option<i64>,
    pub gpu_model: String,
    pub gpu_ms: i64,
    pub weight_milli: i64,
    pub charged_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoticeRecord {
    pub id: i64,
    pub at: i64,
    pub kind: String,
    pub project_id: i64,
    /// 0 for notices about a whole project.
    pub award_id: i64,
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeniedParty {
    pub name: String,
    pub country: String,
    pub source: String,
}

/// Key under which denied-party names are compared: case, punctuation and spacing ignored.
pub fn party_key(name: &str) -> String {
    name.chars()
        .filter(|c| c.is_alphanumeric())
        .flat_map(|c| c.to_lowercase())
        .collect()
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCall {
    pub programme: String,
    pub name: String,
    pub gpu_model: GpuModel,
    pub capacity_gpus: i64,
    /// The tracks as JSON (their shape is the API's `Track`).
    pub tracks: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallRecord {
    pub id: i64,
    pub programme: String,
    pub name: String,
    pub gpu_model: GpuModel,
    pub capacity_gpus: i64,
    pub tracks: String,
    pub state: CallState,
    pub created_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewApplication {
    pub call_id: i64,
    pub project_id: i64,
    pub track: String,
    pub gpus: i64,
    pub days: i64,
    pub region: String,
    pub plan: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplicationRecord {
    pub id: i64,
    pub call_id: i64,
    pub project_id: i64,
    pub track: String,
    pub gpus: i64,
    pub days: i64,
    pub region: String,
    pub plan: String,
    pub state: ApplicationState,
    pub created_at: i64,
    /// (reviewer, score), by reviewer.
    pub scores: Vec<(String, i64)>,
}

/// What a call's ranking decided for one application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallDecision {
    Award(NewAward),
    Decline { application_id: i64, reason: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageRecord {
    pub project_id: i64,
    pub gpu_model: String,
    pub gpu_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    pub seq: i64,
    pub at: i64,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub detail: String,
    pub prev_hash: String,
    pub hash: String,
}

/// The hash of one audit entry: it covers the previous entry's hash, so changing or removing any
/// entry breaks every link after it.
pub fn audit_hash(
    prev: &str,
    at: i64,
    actor: &str,
    action: &str,
    target: &str,
    detail: &str,
) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for part in [prev, &at.to_string(), actor, action, target, detail] {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part.as_bytes());
    }
    hex::encode(h.finalize())
}
