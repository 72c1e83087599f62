//! Plain records the store reads and writes. Enums stored as text have one `as_str`/`parse` pair
//! each, so the database never holds a spelling the code cannot read back.

use haneul_model::{ArraySpec, BatchOptions, GpuModel, JobSpec, Quota};
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

/// The pool a node joins when its agent names none; the one pool created on first use.
pub const DEFAULT_POOL: &str = "default";

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
        /// Its GPUs sat idle past the centre's idle policy and its notice's grace: the job
        /// ends cancelled with reason `idle`.
        Idle = "idle",
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
    /// Why they do it, in their words: written into the detail of every audit entry the
    /// action makes (a drain, a cancel, closing or awarding a call).
    pub reason: Option<String>,
}

impl Actor {
    pub fn system(name: &str) -> Self {
        Actor {
            user: None,
            name: name.to_string(),
            reason: None,
        }
    }
    pub fn user(u: &UserRecord) -> Self {
        Actor {
            user: Some(u.id),
            name: u.name.clone(),
            reason: None,
        }
    }
    /// The same actor giving a reason; a blank one is no reason.
    pub fn because(mut self, reason: Option<&str>) -> Self {
        self.reason = reason
            .map(str::trim)
            .filter(|r| !r.is_empty())
            .map(str::to_string);
        self
    }
}

/// An audit entry's detail with the actor's reason added: into the JSON object the detail is,
/// or beside it where it is not one.
pub fn detail_with_reason(detail: &str, reason: Option<&str>) -> String {
    let Some(reason) = reason else {
        return detail.to_string();
    };
    match serde_json::from_str::<serde_json::Value>(detail) {
        Ok(serde_json::Value::Object(mut fields)) => {
            fields.insert("reason".into(), reason.into());
            serde_json::Value::Object(fields).to_string()
        }
        _ if detail.trim().is_empty() => serde_json::json!({ "reason": reason }).to_string(),
        Ok(other) => serde_json::json!({ "detail": other, "reason": reason }).to_string(),
        Err(_) => serde_json::json!({ "detail": detail, "reason": reason }).to_string(),
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
    /// Where the project's Unix group id is allocated from (the lowest unused above every
    /// allocated one). Not part of the audit record: it is configuration.
    #[serde(skip)]
    pub gid_range: IdRange,
}

/// An inclusive range of Unix ids the store allocates from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdRange {
    pub first: i64,
    pub last: i64,
}

impl IdRange {
    /// Users' uids (and their primary gids, equal to the uid) by default.
    pub const USERS: IdRange = IdRange {
        first: 200_000,
        last: 299_999,
    };
    /// Projects' group ids by default.
    pub const PROJECTS: IdRange = IdRange {
        first: 300_000,
        last: 399_999,
    };
}

impl Default for IdRange {
    fn default() -> Self {
        IdRange::PROJECTS
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProjectRecord {
    pub id: i64,
    pub org_id: i64,
    pub name: String,
    pub weight: i64,
    pub quotas: BTreeMap<GpuModel, Quota>,
    pub created_at: i64,
    /// The project's Unix group: tasks of its jobs run with it as a supplementary group.
    #[serde(default)]
    pub gid: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewUser {
    pub name: String,
    pub role: Role,
    pub org_id: Option<i64>,
    pub projects: Vec<i64>,
    /// The user's Unix uid; `None`: the lowest unused one of `uid_range` above every
    /// allocated one.
    pub uid: Option<i64>,
    /// The primary gid; `None`: equal to the uid (a private group, as Debian gives its users).
    pub gid: Option<i64>,
    pub uid_range: IdRange,
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
    /// The Unix uid and primary gid the user's tasks run as.
    pub uid: Option<i64>,
    pub gid: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRecord {
    pub id: i64,
    pub user_id: i64,
    pub name: String,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
    /// After this time the token no longer works; `None`: never expires.
    pub expires_at: Option<i64>,
}

/// A token with its user, as authentication finds it (revoked and expired ones included, so
/// that the refusal can say which).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenAuth {
    pub token: TokenRecord,
    pub user: UserRecord,
}

/// A portal session. The cookie holds a random id; the store keeps its SHA-256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    pub user_id: i64,
    /// The token signed in with: revoking it ends the session.
    pub token_id: i64,
    pub created_at: i64,
    pub last_seen: i64,
    /// The absolute end of the session.
    pub expires_at: i64,
    pub revoked_at: Option<i64>,
}

/// The link from an identity provider's subject to a Haneul user (issue 23, docs/oidc.md).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OidcLink {
    /// The issuer URL, exactly as its ID tokens name it.
    pub issuer: String,
    /// The `sub` claim: stable for one person at one issuer.
    pub subject: String,
    pub user_id: i64,
    /// The email the provider gave at the first sign-in (for the administrator's eyes).
    pub email: Option<String>,
    pub created_at: i64,
    /// `None`: the account waits for its organisation's administrator.
    pub approved_at: Option<i64>,
    pub approved_by: Option<String>,
}

/// A person to provision from an identity provider's claims.
#[derive(Debug, Clone)]
pub struct NewOidcUser {
    pub user: NewUser,
    pub issuer: String,
    pub subject: String,
    pub email: Option<String>,
    /// Approved at once (the claim mapping says so) rather than pending.
    pub approved: bool,
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
    /// What the agent says of itself; each registration replaces the node's earlier values.
    pub agent: NodeAgent,
}

/// How a node's agent runs tasks, as it says at registration (see [`NewNode`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeAgent {
    /// How it enforces task limits (`cgroup-v2`, `cgroup-v1`, `rlimit`, `none`).
    pub limits: Option<String>,
    /// The address its tasks are reached at (gang peers get it instead of the node name).
    pub address: Option<String>,
    /// Its container runtime (`podman`, `apptainer`, `none`).
    pub container_runtime: Option<String>,
    /// The uid it runs as, which no user's tasks may be given.
    pub uid: Option<i64>,
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
    /// What its batch script asked for beyond the gang's shape; `None`: no batch script.
    pub batch: Option<BatchOptions>,
    /// The submit's `Idempotency-Key` and request hash, kept in the submit's own transaction
    /// so that a retried submit finds the job however the first answer was lost.
    pub idempotency: Option<NewIdempotency>,
    /// A job array: this one row stands for every task, which the controller makes into jobs
    /// of their own as they may start (`materialise_array`). `None`: an ordinary job.
    pub array: Option<ArraySpec>,
    /// An interactive session: its one task runs on a terminal its owner attaches to.
    pub interactive: bool,
}

/// An idempotency key given with a submit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewIdempotency {
    pub key: String,
    /// What the key was sent with: the route and the SHA-256 of the request.
    pub route: String,
    pub body_hash: String,
    /// Answers kept before this time are expired (the retention's start).
    pub since: i64,
}

/// The kept answer to a request sent with an `Idempotency-Key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotentAnswer {
    pub route: String,
    pub body_hash: String,
    pub status: i64,
    /// The answer's body; empty when `resource` names what to answer with instead.
    pub answer: String,
    /// The job a submit created.
    pub resource: Option<i64>,
    pub created_at: i64,
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
    pub batch: Option<BatchOptions>,
    /// An interactive session (`haneul run --pty`).
    pub interactive: bool,
    pub state: JobState,
    pub submitted_at: i64,
    pub updated_at: i64,
    /// Attempts made so far; the current attempt's fence equals this number.
    pub attempts: i64,
    pub exit_code: Option<i64>,
    pub reason: Option<String>,
    /// On an array's own row: its canonical task-id spec (`0-9999%64`).
    pub array: Option<String>,
    /// On an array's own row: how many of its tasks (in id order) are jobs already.
    pub array_next: i64,
    /// On an array task's row: the array's job id and the task's id in it.
    pub array_job_id: Option<i64>,
    pub array_task: Option<i64>,
}

impl JobRecord {
    /// The array's spec when this row is an array, `None` for an ordinary job or a task (a
    /// spec that no longer parses reads as none: it was checked before it was stored).
    pub fn array_spec(&self) -> Option<ArraySpec> {
        self.array.as_deref().and_then(|a| ArraySpec::parse(a).ok())
    }

    /// The task ids of an array not yet made into jobs, in Slurm's compact form (`5-9999`);
    /// `None` for anything but an array with tasks still to come.
    pub fn array_pending(&self) -> Option<String> {
        let spec = self.array_spec()?;
        let rest = spec.tasks().get(usize::try_from(self.array_next).ok()?..)?;
        (!rest.is_empty()).then(|| haneul_model::compress_task_ids(rest))
    }
}

/// What one materialising look at an array did (see `JobStore::materialise_array`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ArrayProgress {
    /// Task jobs made now, in task order.
    pub created: Vec<JobRecord>,
    /// The array's tasks that are jobs and have not ended (queued, running or stopping).
    pub live: i64,
    /// Tasks still to be made into jobs.
    pub remaining: i64,
    /// The array ended now or before: every task is a job that has ended, or it was cancelled.
    pub done: bool,
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
    pub placement: std::sync::Arc<Placement>,
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
    /// advertised address, or its name when it advertises none. Empty for a stopping
    /// attempt: a stop needs none.
    pub peers: Vec<String>,
    /// Name of the user who submitted the job (an agent running as root may run the task as
    /// the Unix account of that name).
    pub user_name: String,
    /// The owner's Unix uid and primary gid, and the job's project group.
    pub uid: Option<i64>,
    pub gid: Option<i64>,
    pub project_gid: Option<i64>,
    /// The spec of the array the job is a task of; `None`: not an array task.
    pub array: Option<ArraySpec>,
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
    /// The bytes as uploaded (not necessarily UTF-8).
    pub data: Vec<u8>,
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
    /// By reviewer.
    pub scores: Vec<ScoreRecord>,
}

/// One reviewer's score of an application and what they wrote with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScoreRecord {
    pub reviewer: String,
    pub score: i64,
    pub comment: String,
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

/// GPUs of one model in one pool, by what they are doing. A GPU counts once: allocated when a
/// live attempt holds any share of it, else idle, draining or down by its node's state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FleetGpus {
    pub pool_id: i64,
    pub pool: String,
    pub gpu_model: String,
    pub nodes: i64,
    pub total: i64,
    pub allocated: i64,
    /// The shares held on the allocated GPUs, in milli-GPU: two half-GPU jobs on one GPU are
    /// one allocated GPU and 1000 here, one quarter-GPU job is one allocated GPU and 250.
    pub allocated_milli: i64,
    pub idle: i64,
    pub draining: i64,
    pub down: i64,
}

/// One project's work waiting and running.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProjectQueue {
    pub project_id: i64,
    pub queued_jobs: i64,
    /// GPUs the queued jobs ask for (replicas x GPUs per task), in milli-GPU.
    pub queued_gpu_milli: i64,
    /// Jobs running or stopping (still holding GPUs).
    pub running_jobs: i64,
}

/// GPUs held on one node by live attempts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeAllocation {
    pub node_id: i64,
    pub allocated: i64,
    pub allocated_milli: i64,
}

/// The fleet at one moment, as one read transaction saw it: GPUs per (pool, model) ordered by
/// pool name then model, the queue per project by project id, allocations per node by node id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FleetSummary {
    pub gpus: Vec<FleetGpus>,
    pub queue: Vec<ProjectQueue>,
    pub nodes: Vec<NodeAllocation>,
}

impl FleetSummary {
    /// Adds it up from the nodes, the placements of live attempts and the unfinished jobs
    /// (project, state, spec). Pure, so both backends share it and tests can feed it directly.
    pub fn build(
        pools: &[PoolRecord],
        nodes: &[NodeRecord],
        live: &[Placement],
        jobs: &[(i64, JobState, JobSpec)],
    ) -> FleetSummary {
        // (node, gpu index) -> milli held; a BTreeMap so nothing depends on hash order.
        let mut held: BTreeMap<(i64, u32), u64> = BTreeMap::new();
        for p in live {
            for t in &p.tasks {
                for g in &t.gpus {
                    *held.entry((t.node.get() as i64, *g)).or_default() += t.milli_per_gpu.get();
                }
            }
        }
        let mut per_node: BTreeMap<i64, NodeAllocation> = BTreeMap::new();
        for ((node, _), milli) in &held {
            let a = per_node.entry(*node).or_insert_with(|| NodeAllocation {
                node_id: *node,
                ..NodeAllocation::default()
            });
            a.allocated += 1;
            a.allocated_milli += (*milli).min(1000) as i64;
        }
        let pool_name: BTreeMap<i64, &str> =
            pools.iter().map(|p| (p.id, p.name.as_str())).collect();
        let mut gpus: BTreeMap<(String, String), FleetGpus> = BTreeMap::new();
        for n in nodes {
            let pool = pool_name
                .get(&n.pool_id)
                .map(|s| s.to_string())
                .unwrap_or_else(|| n.pool_id.to_string());
            let row = gpus
                .entry((pool.clone(), n.gpu_model.to_string()))
                .or_insert_with(|| FleetGpus {
                    pool_id: n.pool_id,
                    pool,
                    gpu_model: n.gpu_model.to_string(),
                    ..FleetGpus::default()
                });
            let a = per_node.get(&n.id).cloned().unwrap_or_default();
            // A placement names GPU indices the node has; clamp anyway so a stale row cannot
            // make the free count negative.
            let allocated = a.allocated.min(n.gpus);
            let free = n.gpus - allocated;
            row.nodes += 1;
            row.total += n.gpus;
            row.allocated += allocated;
            row.allocated_milli += a.allocated_milli;
            match n.state {
                NodeState::Up => row.idle += free,
                NodeState::Draining => row.draining += free,
                NodeState::Down => row.down += free,
            }
        }
        let mut queue: BTreeMap<i64, ProjectQueue> = BTreeMap::new();
        for (project, state, spec) in jobs {
            let q = queue.entry(*project).or_insert_with(|| ProjectQueue {
                project_id: *project,
                ..ProjectQueue::default()
            });
            match state {
                JobState::Queued => {
                    q.queued_jobs += 1;
                    q.queued_gpu_milli += spec.total_gpu().get() as i64;
                }
                JobState::Running | JobState::Stopping => q.running_jobs += 1,
                _ => {}
            }
        }
        FleetSummary {
            gpus: gpus.into_values().collect(),
            queue: queue.into_values().collect(),
            nodes: per_node.into_values().collect(),
        }
    }
}

/// A charge or refund with the span of the attempt it is for: the attempt held its GPUs at a
/// constant rate from `started_at` to the row's `at`, which is how a time series spreads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerSpan {
    pub entry: LedgerEntry,
    pub started_at: i64,
}

#[cfg(test)]
mod fleet_tests {
    use super::*;
    use haneul_model::{GpuRequest, MilliGpu, NodeId, ProjectId};
    use haneul_sched::TaskPlacement;

    fn node(id: i64, state: NodeState) -> NodeRecord {
        NodeRecord {
            id,
            name: format!("n{id}"),
            pool_id: 1,
            block_id: 1,
            block: "b".into(),
            gpu_model: GpuModel::new("H200").unwrap(),
            gpus: 8,
            gpu_memory_mib: 0,
            nvlink_domain: 8,
            cpu_milli: 0,
            memory_mib: 0,
            state,
            down_reason: None,
            agent_user: None,
            last_heartbeat: 0,
            limits: None,
            address: None,
            health: None,
            container_runtime: None,
        }
    }

    fn on(node: u32, gpus: Vec<u32>, milli: u64) -> Placement {
        Placement {
            tasks: vec![TaskPlacement {
                node: NodeId(node),
                gpus,
                milli_per_gpu: MilliGpu(milli),
            }],
        }
    }

    #[test]
    fn a_shared_gpu_counts_once_and_its_shares_add_up() {
        let pools = [PoolRecord {
            id: 1,
            name: "gov".into(),
            owner: None,
            lending: haneul_model::Lending::Open,
        }];
        let nodes = [node(1, NodeState::Up), node(2, NodeState::Draining)];
        // Two half-GPU jobs on GPU 0 of node 1, a quarter on GPU 1, a whole GPU on node 2.
        let live = [
            on(1, vec![0], 500),
            on(1, vec![0], 500),
            on(1, vec![1], 250),
            on(2, vec![3], 1000),
        ];
        let fraction = JobSpec::new(ProjectId(7), 3, GpuRequest::Fraction(250));
        let jobs = [(7, JobState::Queued, fraction)];
        let s = FleetSummary::build(&pools, &nodes, &live, &jobs);
        assert_eq!(s.gpus.len(), 1);
        let g = &s.gpus[0];
        assert_eq!((g.total, g.allocated, g.allocated_milli), (16, 3, 2250));
        assert_eq!((g.idle, g.draining, g.down), (6, 7, 0));
        assert_eq!(s.queue[0].queued_gpu_milli, 750);
        assert_eq!(
            s.nodes,
            vec![
                NodeAllocation {
                    node_id: 1,
                    allocated: 2,
                    allocated_milli: 1250
                },
                NodeAllocation {
                    node_id: 2,
                    allocated: 1,
                    allocated_milli: 1000
                },
            ]
        );
    }
}

/// How a log chunk is kept: as sent when it is UTF-8 without NUL; anything else (NUL, which
/// PostgreSQL text cannot store, or bytes that are not UTF-8, which neither backend's text
/// column takes) is kept escaped with the row's `escaped` flag set: `\0` for NUL, `\xHH` for a
/// byte that is not part of a UTF-8 character, `\\` for a backslash. [`decode_log`] gives the
/// bytes back exactly. Returns the text and the flag.
pub fn encode_log(data: &[u8]) -> (std::borrow::Cow<'_, str>, i64) {
    match std::str::from_utf8(data) {
        Ok(s) if !s.contains('\0') => return (std::borrow::Cow::Borrowed(s), 0),
        _ => {}
    }
    let mut out = String::with_capacity(data.len() + 8);
    for piece in data.utf8_chunks() {
        for c in piece.valid().chars() {
            match c {
                '\0' => out.push_str("\\0"),
                '\\' => out.push_str("\\\\"),
                c => out.push(c),
            }
        }
        for b in piece.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    (std::borrow::Cow::Owned(out), 1)
}

/// The chunk as it was sent, from what [`encode_log`] stored.
pub fn decode_log(stored: String, escaped: i64) -> Vec<u8> {
    if escaped == 0 {
        return stored.into_bytes();
    }
    let mut out = Vec::with_capacity(stored.len());
    let mut rest = stored.as_bytes();
    while let Some((&b, tail)) = rest.split_first() {
        rest = tail;
        if b != b'\\' {
            out.push(b);
            continue;
        }
        match rest {
            [b'0', tail @ ..] => {
                out.push(0);
                rest = tail;
            }
            [b'x', h, l, tail @ ..] if h.is_ascii_hexdigit() && l.is_ascii_hexdigit() => {
                out.push(hex_value(*h) << 4 | hex_value(*l));
                rest = tail;
            }
            [other, tail @ ..] => {
                out.push(*other);
                rest = tail;
            }
            [] => out.push(b'\\'),
        }
    }
    out
}

fn hex_value(digit: u8) -> u8 {
    match digit {
        b'0'..=b'9' => digit - b'0',
        b'a'..=b'f' => digit - b'a' + 10,
        _ => digit.to_ascii_lowercase() - b'a' + 10,
    }
}

#[cfg(test)]
mod log_encoding {
    use super::*;

    #[test]
    fn round_trips() {
        let cases: [&[u8]; 9] = [
            b"plain",
            b"x\0y",
            b"a\\0b\0",
            b"\\\0\\\\",
            b"\0",
            "한글\0\n".as_bytes(),
            b"\xff\xfe",
            b"\\xff\xff",
            b"\xed\x95",
        ];
        for s in cases {
            let (enc, flag) = encode_log(s);
            assert!(!enc.contains('\0'));
            assert_eq!(decode_log(enc.into_owned(), flag), s, "{s:?}");
        }
        assert_eq!(encode_log(b"no nul \\0 here").1, 0);
        assert_eq!(encode_log(b"\xff").1, 1);
    }
}

/// One telemetry sample of one GPU held by one task, as an agent took it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpuSampleRecord {
    pub job_id: i64,
    pub gpu_uuid: String,
    pub gpu_index: i64,
    /// When the sample was taken (ms since the epoch).
    pub at: i64,
    /// The time this sample stands for (since the GPU's previous sample), for the energy.
    pub period_ms: i64,
    pub util_pct: i64,
    pub mem_mib: i64,
    pub power_w: i64,
    pub temp_c: i64,
}

/// A task's cumulative CPU time as last reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskCpuRecord {
    pub job_id: i64,
    pub fence: i64,
    pub task: i64,
    pub cpu_ms: i64,
}

/// What one job did with one GPU, over its whole life (kept for good).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpuUsageRecord {
    pub job_id: i64,
    pub gpu_uuid: String,
    pub node_id: i64,
    pub gpu_index: i64,
    pub samples: i64,
    /// Utilisation in percent summed over the samples (the mean is `util_sum / samples`).
    pub util_sum: i64,
    pub util_max: i64,
    pub mem_max_mib: i64,
    pub energy_mwh: i64,
    /// GPU time the samples stand for, and that time weighted by utilisation.
    pub sampled_ms: i64,
    pub busy_ms: i64,
    pub first_at: i64,
    pub last_at: i64,
}

/// One minute of one job's GPU: the downsampled series, kept for the configured retention.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpuMinuteRecord {
    pub job_id: i64,
    pub gpu_uuid: String,
    /// Start of the minute (ms since the epoch, a multiple of 60 000).
    pub minute: i64,
    pub samples: i64,
    pub util_sum: i64,
    pub util_max: i64,
    pub mem_max_mib: i64,
    pub power_sum_w: i64,
    pub temp_max_c: i64,
    /// Energy of the minute's samples (each sample's power times its period).
    pub energy_mwh: i64,
}

/// One hour of one job's GPU: what per-minute rows become once their retention is over, kept
/// for the longer hourly retention.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpuHourRecord {
    pub job_id: i64,
    pub gpu_uuid: String,
    /// Start of the hour (ms since the epoch, a multiple of 3 600 000).
    pub hour: i64,
    /// Minutes folded into this hour.
    pub minutes: i64,
    /// Sum over those minutes of each minute's mean utilisation, in thousandths of a percent:
    /// the hour's mean is the mean of its minutes' means.
    pub util_mean_milli_sum: i64,
    pub util_max: i64,
    pub mem_max_mib: i64,
    /// Sum over the minutes of each minute's mean power, in milliwatts.
    pub power_mean_mw_sum: i64,
    pub temp_max_c: i64,
    pub energy_mwh: i64,
}

impl GpuHourRecord {
    /// The mean of the hour's minutes' mean utilisation, in percent.
    pub fn util_mean_pct(&self) -> f64 {
        if self.minutes == 0 {
            return 0.0;
        }
        self.util_mean_milli_sum as f64 / 1000.0 / self.minutes as f64
    }
}

/// What one downsampling pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Downsampled {
    /// Per-minute rows folded into hours and dropped.
    pub minutes: u64,
    /// Hourly rows dropped after the hourly retention.
    pub hours_dropped: u64,
}

/// One attempt charged in a period, with what its job's GPUs measured over the job's life:
/// the measured side of underuse and statements.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChargedGpuUse {
    pub attempt_id: i64,
    pub job_id: i64,
    /// The job's samples and their utilisation sum, over all its GPUs.
    pub samples: i64,
    pub util_sum: i64,
    /// The job's energy over all its attempts.
    pub energy_mwh: i64,
    /// GPU-milliseconds charged for all the job's attempts, whenever: the share of the job's
    /// energy that one attempt's charge carries is its GPU-milliseconds over this.
    pub job_charged_gpu_ms: i64,
}

/// A job's GPU utilisation over a recent window (for the idle policy).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecentGpuUse {
    pub job_id: i64,
    pub samples: i64,
    pub util_sum: i64,
    /// The earliest minute of the window that holds samples of this job.
    pub first_minute: i64,
}

/// GPU time and energy measured for one project, for statements.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectGpuUse {
    pub project_id: i64,
    /// GPU-milliseconds sampled (samples times their period).
    pub sampled_gpu_ms: i64,
    /// GPU-milliseconds weighted by utilisation: what the GPUs were really busy for.
    pub busy_gpu_ms: i64,
    pub energy_mwh: i64,
}

/// Something another server sharing the database committed (see `Store::changes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Controller events were appended (a job submitted, a report taken in).
    Events,
    /// The controller lease was given up or changed hands.
    Lease,
}
