//! Wire types of the Haneul REST API (`/v1`), shared by the server, the agent and the CLI.
//!
//! This crate owns the JSON shapes and their OpenAPI schemas, nothing else: no I/O, no
//! validation beyond what serde does. Times are Unix milliseconds (`*_at` fields), durations are
//! seconds (`*_s`), GPU shares are milli-GPU (`*_milli`, 1000 is one GPU). Unknown fields in
//! request bodies are refused so that a misspelt option is an error, not a silent default.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Every error answer: a stable code, a message for people, and the request field at fault when
/// there is one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    /// One of `bad_request`, `unauthenticated`, `forbidden`, `not_found`, `conflict`,
    /// `payload_too_large`, `unavailable`, `internal`.
    pub code: String,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Health {
    pub status: String,
    /// `sqlite` or `postgres`.
    pub backend: String,
    /// Whether this server currently leads (runs the scheduler).
    pub leader: bool,
}

/// What a user may do. See docs/server.md for the matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    CentreAdmin,
    OrgAdmin,
    Member,
    Auditor,
    Agent,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OrgCreate {
    pub name: String,
    /// academia, institute, startup, enterprise, partner or public-agency.
    #[serde(default = "default_class")]
    pub class: String,
    /// ISO 3166-1 alpha-2 country of the headquarters, for example `KR`.
    pub country: String,
    #[serde(default)]
    pub parent: Option<i64>,
}

fn default_class() -> String {
    "academia".into()
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Org {
    pub id: i64,
    pub name: String,
    pub class: String,
    pub country: String,
    pub parent: Option<i64>,
    pub created_at: i64,
}

/// A project's share of one GPU model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QuotaEntry {
    pub gpu_model: String,
    /// Always available to the project (reclaimed by preemption), in milli-GPU.
    pub guaranteed_milli: u64,
    /// How far above the guarantee the project may borrow idle GPUs; absent is unlimited.
    #[serde(default)]
    pub borrow_limit_milli: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProjectCreate {
    pub org: i64,
    pub name: String,
    /// Fair-share weight, 1 or more.
    #[serde(default = "default_weight")]
    pub weight: i64,
    #[serde(default)]
    pub quotas: Vec<QuotaEntry>,
}

fn default_weight() -> i64 {
    1
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Project {
    pub id: i64,
    pub org: i64,
    pub name: String,
    pub weight: i64,
    pub quotas: Vec<QuotaEntry>,
    pub created_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserCreate {
    pub name: String,
    pub role: Role,
    /// Required for org-admin and member; absent for centre-wide roles.
    #[serde(default)]
    pub org: Option<i64>,
    /// Projects a member belongs to (of the user's organisation).
    #[serde(default)]
    pub projects: Vec<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct User {
    pub id: i64,
    pub name: String,
    pub role: Role,
    pub org: Option<i64>,
    pub projects: Vec<i64>,
    pub created_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenCreate {
    /// The user the token acts as; absent means the caller.
    #[serde(default)]
    pub user: Option<i64>,
    #[serde(default)]
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Token {
    pub id: i64,
    pub user: i64,
    pub name: String,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
}

/// A new token. The secret is shown once: the server keeps only its hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TokenCreated {
    pub token: Token,
    pub secret: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PoolCreate {
    pub name: String,
    #[serde(default)]
    pub owner: Option<i64>,
    /// `open` (any project) or `owner-only`.
    #[serde(default = "default_lending")]
    pub lending: String,
}

fn default_lending() -> String {
    "open".into()
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Pool {
    pub id: i64,
    pub name: String,
    pub owner: Option<i64>,
    pub lending: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Node {
    pub id: i64,
    pub name: String,
    pub pool: i64,
    pub block: String,
    pub gpu_model: String,
    pub gpus: i64,
    pub gpu_memory_mib: i64,
    pub nvlink_domain: i64,
    pub cpu_milli: i64,
    pub memory_mib: i64,
    /// `up`, `draining` or `down`.
    pub state: String,
    pub down_reason: Option<String>,
    pub last_heartbeat: i64,
    /// How the agent enforces task CPU and memory limits: `cgroup-v2` or `rlimit`; absent
    /// until the agent says.
    #[serde(default)]
    pub limits: Option<String>,
    /// The address the agent advertises for its tasks (gang peers' `MASTER_ADDR`).
    #[serde(default)]
    pub address: Option<String>,
    /// The failing health check while there is one (the node is then drained, with
    /// `down_reason` `unhealthy`); absent when healthy.
    #[serde(default)]
    pub health: Option<String>,
}

/// Drain a node (running work finishes, nothing new starts) or resume it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NodeStateChange {
    /// `draining` or `up`.
    pub state: String,
}

/// A job: `replicas` tasks started together (a gang), each with the same resources.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JobSubmit {
    pub project: i64,
    #[serde(default)]
    pub name: String,
    /// Program and arguments, run by each task.
    pub command: Vec<String>,
    #[serde(default = "one")]
    pub replicas: u32,
    /// Whole GPUs per task; 0 with `gpu_fraction_milli` for a share of one GPU, or for CPU-only.
    #[serde(default)]
    pub gpus_per_task: u32,
    /// A share of one GPU per task, 1 to 999 milli-GPU.
    #[serde(default)]
    pub gpu_fraction_milli: Option<u32>,
    /// Allowed GPU models; empty is any.
    #[serde(default)]
    pub gpu_models: Vec<String>,
    #[serde(default)]
    pub cpu_milli_per_task: u64,
    #[serde(default)]
    pub memory_mib_per_task: u64,
    /// low, normal, high or urgent.
    #[serde(default)]
    pub priority: Option<String>,
    #[serde(default = "yes")]
    pub preemptible: bool,
    /// Seconds between the stop signal and the kill.
    #[serde(default)]
    pub grace_s: u64,
    #[serde(default)]
    pub time_limit_s: Option<u64>,
    #[serde(default)]
    pub runtime_estimate_s: Option<u64>,
}

fn one() -> u32 {
    1
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Job {
    pub id: i64,
    pub project: i64,
    pub user: i64,
    pub name: String,
    /// queued, running, stopping, succeeded, failed, cancelled or timed_out.
    pub state: String,
    pub command: Vec<String>,
    pub replicas: u32,
    pub gpus_per_task: u32,
    pub gpu_fraction_milli: Option<u32>,
    pub gpu_models: Vec<String>,
    pub priority: String,
    pub preemptible: bool,
    pub time_limit_s: Option<u64>,
    pub submitted_at: i64,
    pub updated_at: i64,
    /// Attempts so far (the current attempt's fence).
    pub attempts: i64,
    pub exit_code: Option<i64>,
    pub reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct JobList {
    pub jobs: Vec<Job>,
    /// Pass as `before` for the next (older) page; absent on the last page.
    pub next_before: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TaskPlacement {
    pub node: i64,
    pub gpus: Vec<u32>,
    pub milli_per_gpu: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Attempt {
    pub id: i64,
    pub job: i64,
    pub fence: i64,
    /// assigned, running, stopping, succeeded, failed, cancelled, timed_out, preempted, node_lost.
    pub state: String,
    pub stop_reason: Option<String>,
    pub tasks: Vec<TaskPlacement>,
    pub gpu_model: Option<String>,
    pub borrowing: bool,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub ended_at: Option<i64>,
    pub exit_code: Option<i64>,
    pub gpu_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct JobEvent {
    pub seq: i64,
    pub at: i64,
    pub kind: String,
    pub attempt: Option<i64>,
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct JobDetail {
    pub job: Job,
    pub attempts: Vec<Attempt>,
    pub events: Vec<JobEvent>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LogChunk {
    pub id: i64,
    pub fence: i64,
    pub task: i64,
    pub data: String,
    pub at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AwardCreate {
    pub project: i64,
    pub gpu_model: String,
    pub gpu_hours: i64,
    pub valid_from: i64,
    pub valid_until: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Award {
    pub id: i64,
    pub project: i64,
    pub gpu_model: String,
    pub gpu_hours: i64,
    pub valid_from: i64,
    pub valid_until: i64,
    pub created_at: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Usage {
    pub project: i64,
    pub gpu_model: String,
    pub gpu_hours: f64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AuditEntry {
    pub seq: i64,
    pub at: i64,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub detail: String,
    pub prev_hash: String,
    pub hash: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AuditVerify {
    /// Entries checked; the chain is intact when this answer is 200.
    pub entries: i64,
}

// --- agent protocol ---

/// What an agent found on its node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentRegister {
    pub name: String,
    #[serde(default = "default_name")]
    pub pool: String,
    #[serde(default = "default_name")]
    pub block: String,
    pub gpu_model: String,
    pub gpus: i64,
    #[serde(default)]
    pub gpu_memory_mib: i64,
    /// GPUs per NVLink domain; absent means all GPUs share one.
    #[serde(default)]
    pub nvlink_domain: Option<i64>,
    pub cpu_milli: i64,
    pub memory_mib: i64,
    /// How the agent enforces task limits: `cgroup-v2`, `rlimit` or `none`.
    #[serde(default)]
    pub limits: Option<String>,
    /// The address this node's tasks are reached at by the rest of a gang (an IP address or
    /// host name); absent: the node's name.
    #[serde(default)]
    pub address: Option<String>,
}

fn default_name() -> String {
    "default".into()
}

/// The result of the agent's periodic health checks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HealthReport {
    /// What failed (for example `health command exited 1: ...`); absent when every check
    /// passed. The first failure drains the node and requeues its running jobs; a pass after
    /// that resumes a node the health check drained.
    #[serde(default)]
    pub failure: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct HeartbeatAck {
    pub node: i64,
    pub state: String,
    /// How often the server expects a heartbeat, in milliseconds.
    pub interval_ms: i64,
}

/// One task this node must run, or stop when `action` is `stop`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Assignment {
    pub job: i64,
    /// The fencing token: present it with every report and log upload for this task.
    pub fence: i64,
    pub task: i64,
    /// `run` or `stop`.
    pub action: String,
    pub stop_reason: Option<String>,
    /// Kill the process group at this time at the latest (after the grace period).
    pub kill_at: Option<i64>,
    pub gpus: Vec<u32>,
    pub milli_per_gpu: u64,
    pub command: Vec<String>,
    /// Where every task of the gang runs, by rank (rank 0 is the master): the node's
    /// advertised address, or its name when it advertises none.
    pub peers: Vec<String>,
    pub user: i64,
    /// The submitting user's name: an agent running as root with `--task-user submitter` runs
    /// the task as the Unix account of this name.
    #[serde(default)]
    pub user_name: String,
    pub project: i64,
    pub cpu_milli: u64,
    pub memory_mib: u64,
    pub time_limit_s: Option<u64>,
    pub grace_s: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AssignmentList {
    pub assignments: Vec<Assignment>,
    /// Pass back as `etag` to wait until the list changes.
    pub etag: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskReport {
    pub job: i64,
    pub fence: i64,
    pub task: i64,
    /// Absent: the task started. Present: it exited with this code.
    #[serde(default)]
    pub exit_code: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LogUpload {
    pub job: i64,
    pub fence: i64,
    pub task: i64,
    pub data: String,
}
