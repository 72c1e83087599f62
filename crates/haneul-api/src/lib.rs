//! Wire types of the Haneul REST API (`/v1`), shared by the server, the agent and the CLI.
//!
//! This crate owns the JSON shapes and their OpenAPI schemas, nothing else: no I/O, no
//! validation beyond what serde does. Times are Unix milliseconds (`*_at` fields), durations are
//! seconds (`*_s`), GPU shares are milli-GPU (`*_milli`, 1000 is one GPU). Unknown fields in
//! request bodies are refused so that a misspelt option is an error, not a silent default.

pub mod i18n;
pub mod terminal;

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
    /// `payload_too_large`, `unsupported_media_type`, `unprocessable`, `unavailable`,
    /// `not_leader`, `internal`, `audit_chain_broken`, `rate_limited`, `overloaded` ([`i18n::ErrorCode`]).
    pub code: String,
    /// In Korean when the request's `Accept-Language` prefers `ko`, else in English.
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// With `not_leader`: the leader's base URL, where the call is to be sent (also in the
    /// `Haneul-Leader` header).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader: Option<String>,
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

// --- closed sets of values, for the OpenAPI document ---
//
// The wire fields below stay `String` (the server names the field and the fix when a value is
// unknown); these types only tell the OpenAPI document which values there are.

/// A job's state.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobStateName {
    Queued,
    Running,
    Stopping,
    Succeeded,
    Failed,
    Cancelled,
    TimedOut,
}

/// A job's priority.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PriorityName {
    Low,
    Normal,
    High,
    Urgent,
}

/// Who may use a pool's GPUs.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum LendingName {
    Open,
    OwnerOnly,
}

/// An organisation's class.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum OrgClassName {
    Academia,
    Institute,
    Startup,
    Enterprise,
    Partner,
    PublicAgency,
}

/// An organisation's verification.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum VerificationName {
    Verified,
    Pending,
    Suspended,
}

/// The states an operator may set on a node.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum NodeStateChangeName {
    Draining,
    Up,
}

/// How a dependent job waits for its parent.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DependencyKindName {
    Afterok,
    Afterany,
}

/// An ISO 3166-1 alpha-2 country code pattern.
pub const COUNTRY_PATTERN: &str = "^[A-Z]{2}$";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OrgCreate {
    /// 1 to 128 characters, no control characters.
    #[schema(min_length = 1, max_length = 128)]
    pub name: String,
    /// academia, institute, startup, enterprise, partner or public-agency.
    #[serde(default = "default_class")]
    #[schema(value_type = OrgClassName)]
    pub class: String,
    /// ISO 3166-1 alpha-2 country of the headquarters, for example `KR`.
    #[schema(pattern = "^[A-Z]{2}$")]
    pub country: String,
    #[serde(default)]
    pub parent: Option<i64>,
    /// ISO 3166-1 alpha-2 country of the ultimate parent, when it is not a registered
    /// organisation (`parent`).
    #[serde(default)]
    #[schema(pattern = "^[A-Z]{2}$")]
    pub parent_country: Option<String>,
    /// `verified` (default: the centre admin registering it vouches for it) or `pending`
    /// (verified later with `POST /v1/orgs/{id}/verify`). Only verified organisations run jobs.
    #[serde(default)]
    #[schema(value_type = Option<VerificationName>)]
    pub verification: Option<String>,
}

fn default_class() -> String {
    "academia".into()
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Org {
    pub id: i64,
    pub name: String,
    #[schema(value_type = OrgClassName)]
    pub class: String,
    #[schema(pattern = "^[A-Z]{2}$")]
    pub country: String,
    pub parent: Option<i64>,
    #[serde(default)]
    pub parent_country: Option<String>,
    /// `pending`, `verified` or `suspended`.
    #[serde(default)]
    #[schema(value_type = VerificationName)]
    pub verification: String,
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
    /// 1 to 128 characters, no control characters.
    #[schema(min_length = 1, max_length = 128)]
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

/// A project's new quotas, replacing all the old ones.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProjectQuotas {
    pub quotas: Vec<QuotaEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Project {
    pub id: i64,
    pub org: i64,
    pub name: String,
    pub weight: i64,
    pub quotas: Vec<QuotaEntry>,
    pub created_at: i64,
    /// The project's Unix group: its jobs' tasks run with it as a supplementary group.
    #[serde(default)]
    pub gid: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserCreate {
    /// 1 to 128 characters, no control characters.
    #[schema(min_length = 1, max_length = 128)]
    pub name: String,
    pub role: Role,
    /// Required for org-admin and member; absent for centre-wide roles.
    #[serde(default)]
    pub org: Option<i64>,
    /// Projects a member belongs to (of the user's organisation).
    #[serde(default)]
    pub projects: Vec<i64>,
    /// The Unix uid the user's tasks run as (1 or more, not an agent's); absent: the next free
    /// one of the server's `--uid-range`.
    #[serde(default)]
    pub uid: Option<i64>,
    /// The primary Unix gid (1 or more); absent: equal to the uid.
    #[serde(default)]
    pub gid: Option<i64>,
}

/// New Unix ids for a user (`PATCH /v1/users/{id}`); an absent field keeps its value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserUpdate {
    #[serde(default)]
    pub uid: Option<i64>,
    #[serde(default)]
    pub gid: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct User {
    pub id: i64,
    pub name: String,
    pub role: Role,
    pub org: Option<i64>,
    pub projects: Vec<i64>,
    pub created_at: i64,
    /// The Unix uid and primary gid the user's tasks run as.
    #[serde(default)]
    pub uid: Option<i64>,
    #[serde(default)]
    pub gid: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenCreate {
    /// The user the token acts as; absent means the caller.
    #[serde(default)]
    pub user: Option<i64>,
    #[serde(default)]
    pub name: String,
    /// Seconds the token works for, 60 to 315360000 (ten years). Absent: the server's default
    /// for people's tokens (`--token-expiry-days`), and never for agents'.
    #[serde(default)]
    #[schema(minimum = 60, maximum = 315360000)]
    pub expires_in_s: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Token {
    pub id: i64,
    pub user: i64,
    pub name: String,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
    /// When the token stops working; absent or null: never.
    #[serde(default)]
    pub expires_at: Option<i64>,
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
    /// 1 to 128 characters, no control characters.
    #[schema(min_length = 1, max_length = 128)]
    pub name: String,
    #[serde(default)]
    pub owner: Option<i64>,
    /// `open` (any project) or `owner-only`.
    #[serde(default = "default_lending")]
    #[schema(value_type = LendingName)]
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
    #[schema(value_type = LendingName)]
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
    /// The container runtime of the node's agent: `podman`, `apptainer` or `none`; absent
    /// until the agent says.
    #[serde(default)]
    pub container_runtime: Option<String>,
}

/// Drain a node (running work finishes, nothing new starts) or resume it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NodeStateChange {
    /// `draining` or `up`.
    #[schema(value_type = NodeStateChangeName)]
    pub state: String,
    /// Why, in the operator's words (at most 500 characters): kept in the audit log.
    #[serde(default)]
    pub reason: Option<String>,
}

/// Why a job is cancelled or a call awarded: the optional body of those actions.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ActionReason {
    /// Why, in the operator's words (at most 500 characters): kept in the audit log.
    #[serde(default)]
    pub reason: Option<String>,
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
    #[schema(value_type = Option<PriorityName>)]
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
    /// Jobs that must end first; the job stays queued until they have. If an `afterok`
    /// parent ends other than succeeded, this job fails with a reason naming it.
    #[serde(default)]
    pub dependencies: Vec<JobDependency>,
    /// Run each task in a container of this image: an OCI image reference
    /// (`nvcr.io/nvidia/pytorch:24.10-py3`), an absolute path to a root file system directory,
    /// or an absolute path to an apptainer `.sif` file. Absent: the program runs directly.
    #[serde(default)]
    pub container_image: Option<String>,
    /// What a Slurm batch script asked for beyond the gang's shape (`haneul submit script.sh`,
    /// `sbatch`); absent: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<JobBatch>,
    /// A job array: one job that stands for tasks `0-9`, `1,3,5`, `0-15:4` (or those joined by
    /// commas), each run as this job with `SLURM_ARRAY_TASK_ID` set; `%N` runs at most N at
    /// once (`0-9999%64`). At most 10000 tasks, ids 0 to 999999. The tasks become jobs of
    /// their own (shown as `ID_TASK`) as they may start; dependencies on the array wait for
    /// every task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub array: Option<String>,
    /// An interactive session (`haneul run --pty`, `srun --pty`): the one task runs on a
    /// pseudo-terminal the owner attaches to at `/v1/jobs/{id}/terminal`; the job ends when the
    /// program exits, or is cancelled when nobody is attached for the server's grace period.
    /// One task, no array.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub interactive: bool,
}

/// A batch script's options that are not the gang's shape, kept with the job and given to its
/// tasks as Slurm's environment. Every field is optional; each string is at most 4096 bytes
/// with no control characters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JobBatch {
    /// `--output` file pattern as written (`%j`, `%A`, `%a`, `%x`, `%u`, `%N`, `%%`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    /// `--error` file pattern; absent: standard error goes with the output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// `--chdir`: the directory the script runs in; absent: `submit_dir`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chdir: Option<String>,
    /// The directory the job was submitted from (`SLURM_SUBMIT_DIR`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub submit_dir: Option<String>,
    /// `--account` as written (`SLURM_JOB_ACCOUNT`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// `--partition` as written (`SLURM_JOB_PARTITION`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition: Option<String>,
    /// `--ntasks` when it differs from `replicas` (`SLURM_NTASKS`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ntasks: Option<u32>,
    /// `--mail-type`: kept, no mail is sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mail_type: Option<String>,
    /// `--mail-user`: kept, no mail is sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mail_user: Option<String>,
    /// `--signal` as written (`[{R|B}:]SIG[@TIME]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<String>,
    /// `--requeue` (true) or `--no-requeue` (false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requeue: Option<bool>,
    /// `--export` as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub export: Option<String>,
}

/// One parent of a dependent job, as Slurm's `--dependency afterok:ID`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JobDependency {
    /// `afterok` (the parent must succeed) or `afterany` (the parent must end).
    #[schema(value_type = DependencyKindName)]
    pub kind: String,
    /// The parent job's id.
    pub job: i64,
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
    #[schema(value_type = JobStateName)]
    pub state: String,
    pub command: Vec<String>,
    pub replicas: u32,
    pub gpus_per_task: u32,
    pub gpu_fraction_milli: Option<u32>,
    pub gpu_models: Vec<String>,
    #[schema(value_type = PriorityName)]
    pub priority: String,
    pub preemptible: bool,
    pub time_limit_s: Option<u64>,
    pub submitted_at: i64,
    pub updated_at: i64,
    /// Attempts so far (the current attempt's fence).
    pub attempts: i64,
    pub exit_code: Option<i64>,
    pub reason: Option<String>,
    /// Jobs this one waits for.
    #[serde(default)]
    pub dependencies: Vec<JobDependency>,
    /// The container image its tasks run in; absent: none.
    #[serde(default)]
    pub container_image: Option<String>,
    /// Its batch script's options; absent: it was not submitted as a batch script.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<JobBatch>,
    /// On an array: its task ids and limit in canonical form (`0-9999%64`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub array: Option<String>,
    /// On an array: the task ids not yet made into jobs (`5-9999`); absent once all are.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub array_pending: Option<String>,
    /// On an array task: the array's job id; the task is shown as `ARRAY_TASK`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub array_job: Option<i64>,
    /// On an array task: its id in the array.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub array_task: Option<i64>,
    /// An interactive session: its task runs on a terminal the owner attaches to.
    #[serde(default)]
    pub interactive: bool,
    /// Why a queued job waits, from the leader's last scheduling pass (or the project's hold,
    /// or its dependencies); absent for jobs that are not queued, and for one no pass has
    /// looked at yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_reason: Option<PendingReason>,
}

/// Why a queued job waits, as squeue's REASON column says it, with a sentence and what would help.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PendingReason {
    /// A Slurm-style code: Resources, Priority, Reservation, AssocGrpGRES (the project's
    /// guarantee), QOSGrpGRES (its borrowing limit), Dependency, JobHeldAdmin,
    /// AssocGrpGRESMinutes (award spent), JobArrayTaskLimit or ReqNodeNotAvail.
    #[schema(example = "Reservation")]
    pub code: String,
    /// One English sentence: what it waits for.
    pub message: String,
    /// What would let it start sooner, where something would.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
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

/// A piece of a task's output. `data` is the text; output that is not UTF-8 (a job may print
/// any bytes) also comes as `data_base64`, the exact bytes, and `data` is then a readable copy
/// with U+FFFD in place of what is not text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LogChunk {
    pub id: i64,
    pub fence: i64,
    pub task: i64,
    pub data: String,
    /// The exact bytes (standard base64), present only when they are not UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_base64: Option<String>,
    pub at: i64,
}

impl LogChunk {
    /// A chunk of `bytes`, with `data_base64` only where `data` cannot hold them.
    pub fn new(id: i64, fence: i64, task: i64, bytes: &[u8], at: i64) -> Self {
        let (data, data_base64) = text_or_base64(bytes);
        LogChunk {
            id,
            fence,
            task,
            data: data.unwrap_or_else(|| String::from_utf8_lossy(bytes).into_owned()),
            data_base64,
            at,
        }
    }

    /// The exact bytes of the output.
    pub fn bytes(&self) -> Vec<u8> {
        use base64::Engine;
        self.data_base64
            .as_deref()
            .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
            .unwrap_or_else(|| self.data.clone().into_bytes())
    }
}

/// UTF-8 as text, anything else as base64.
fn text_or_base64(bytes: &[u8]) -> (Option<String>, Option<String>) {
    use base64::Engine;
    match std::str::from_utf8(bytes) {
        Ok(s) => (Some(s.to_string()), None),
        Err(_) => (
            None,
            Some(base64::engine::general_purpose::STANDARD.encode(bytes)),
        ),
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AwardCreate {
    pub project: i64,
    pub gpu_model: String,
    pub gpu_hours: i64,
    /// The first moment the award is valid.
    pub valid_from: TimeOrDate,
    /// The moment it ends (not included): a date ends the award as that day begins.
    pub valid_until: TimeOrDate,
    /// Whole GPUs the project may hold at once: its guarantee on `gpu_model` while valid.
    #[serde(default)]
    pub gpu_quota: i64,
}

/// A moment as a request may give it: Unix milliseconds, or a date `YYYY-MM-DD`, which means
/// midnight at the start of that day in the centre's time zone (so that an award from
/// 2026-03-01 starts when March starts in Seoul, not nine hours later).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum TimeOrDate {
    Millis(i64),
    Date(String),
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
    #[serde(default)]
    pub gpu_quota: i64,
    /// The application it answers, when made from a call.
    #[serde(default)]
    pub application: Option<i64>,
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
    /// How the agent enforces task limits: `cgroup-v2`, `cgroup-v1`, `rlimit` or `none`.
    #[serde(default)]
    pub limits: Option<String>,
    /// The address this node's tasks are reached at by the rest of a gang (an IP address or
    /// host name); absent: the node's name.
    #[serde(default)]
    pub address: Option<String>,
    /// The container runtime jobs with a `container_image` run in: `podman`, `apptainer` or
    /// `none`.
    #[serde(default)]
    pub container_runtime: Option<String>,
    /// The Unix uid the agent runs as: the server refuses to give it to a user.
    #[serde(default)]
    pub uid: Option<i64>,
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
    /// advertised address, or its name when it advertises none. Empty in a `stop`.
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
    /// The job's container image; absent: run the command directly.
    #[serde(default)]
    pub container_image: Option<String>,
    /// The job owner's Unix uid and primary gid: an agent running as root runs the task as
    /// them. Absent: the owner has no uid (such tasks are refused by a root agent).
    #[serde(default)]
    pub uid: Option<u32>,
    #[serde(default)]
    pub gid: Option<u32>,
    /// Supplementary groups of the task: the job's project's group.
    #[serde(default)]
    pub groups: Vec<u32>,
    /// The job's name (`SLURM_JOB_NAME`).
    #[serde(default)]
    pub name: String,
    /// The job's batch script options, for the task's Slurm environment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<JobBatch>,
    /// Where the job sits in its array, for `SLURM_ARRAY_*`; absent: not an array task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub array: Option<ArrayTask>,
    /// Run the task on a pseudo-terminal relayed through the server
    /// (`/v1/agent/nodes/{id}/terminal`) instead of with its output to files.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub interactive: bool,
}

/// Where a running task's web server listens, as the task wrote it to its
/// `HANEUL_ENDPOINT_FILE` (docs/jupyter.md): the agent passes it on so that the server can
/// forward the job owner's portal requests to it. The host is the node's registered address,
/// never the task's word.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskEndpoint {
    pub job: i64,
    pub fence: i64,
    pub task: i64,
    /// TCP port on the node's address, 1024 to 65535.
    pub port: u16,
    /// The secret the server presents to the task's server (`Authorization: token ...`):
    /// 16 to 128 characters of `A-Z a-z 0-9 - _`.
    pub token: String,
}

/// One task's place in its job array, as Slurm's `SLURM_ARRAY_*` variables give it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ArrayTask {
    /// The array's job id (`SLURM_ARRAY_JOB_ID`).
    pub job: i64,
    /// This task's id in the array (`SLURM_ARRAY_TASK_ID`).
    pub task: i64,
    pub count: u32,
    pub min: u32,
    pub max: u32,
    pub step: u32,
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

/// The answer to a task report: where the reported task's attempt stands after it. Not the
/// whole attempt: a gang's placement lists every node, and an answer per task carrying it made
/// starting a 1,250-node gang send and parse a quadratic amount of JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TaskReportAck {
    pub job: i64,
    pub fence: i64,
    pub task: i64,
    /// The attempt's state: assigned, running, stopping, succeeded, failed, cancelled,
    /// timed_out, preempted, node_lost.
    pub state: String,
    pub stop_reason: Option<String>,
    pub started_at: Option<i64>,
    pub ended_at: Option<i64>,
    pub exit_code: Option<i64>,
}

/// Output of a task. Text goes in `data`; output that is not UTF-8 goes, exactly, in
/// `data_base64` (standard base64) instead. At most one of the two may be non-empty.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LogUpload {
    pub job: i64,
    pub fence: i64,
    pub task: i64,
    #[serde(default)]
    pub data: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_base64: Option<String>,
    /// Which of the task's output files these bytes come from. With `offset`, it makes the
    /// upload idempotent: bytes the server already holds for that file are not appended twice
    /// (an agent restarted after an upload it had not yet recorded sends them again). Absent
    /// for the agent's own notes, which are always appended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<OutputStream>,
    /// Where in that file the first byte of this upload is (bytes from its start).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 0)]
    pub offset: Option<i64>,
}

/// A task's output file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum OutputStream {
    Stdout,
    Stderr,
}

impl OutputStream {
    pub fn as_str(self) -> &'static str {
        match self {
            OutputStream::Stdout => "stdout",
            OutputStream::Stderr => "stderr",
        }
    }
}

/// Why a [`LogUpload`] carries no bytes that can be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogUploadError {
    /// Both `data` and `data_base64` were sent.
    Both,
    /// `data_base64` is not standard base64.
    NotBase64,
}

impl LogUpload {
    /// An upload of `bytes`: as text when they are UTF-8, else as base64.
    pub fn new(job: i64, fence: i64, task: i64, bytes: &[u8]) -> Self {
        let (data, data_base64) = text_or_base64(bytes);
        LogUpload {
            job,
            fence,
            task,
            data: data.unwrap_or_default(),
            data_base64,
            stream: None,
            offset: None,
        }
    }

    /// The same upload, marked as the bytes of `stream` from `offset` on.
    pub fn at(mut self, stream: OutputStream, offset: u64) -> Self {
        self.stream = Some(stream);
        self.offset = Some(offset as i64);
        self
    }

    /// The bytes uploaded.
    pub fn bytes(&self) -> Result<Vec<u8>, LogUploadError> {
        use base64::Engine;
        match &self.data_base64 {
            None => Ok(self.data.clone().into_bytes()),
            Some(_) if !self.data.is_empty() => Err(LogUploadError::Both),
            Some(b) => base64::engine::general_purpose::STANDARD
                .decode(b)
                .map_err(|_| LogUploadError::NotBase64),
        }
    }
}

// --- awards, accounting and compliance (docs/accounting.md) ---

/// A top-up (`gpu_hours` > 0) or take-back (< 0) of an award.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AwardAdjust {
    pub gpu_hours: i64,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AwardChange {
    pub id: i64,
    pub award: i64,
    pub gpu_hours: i64,
    pub reason: String,
    pub actor: String,
    pub at: i64,
}

/// An award and what has been charged against it: one row of `haneul usage`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AwardBalance {
    pub award: i64,
    pub project: i64,
    pub project_name: String,
    pub gpu_model: String,
    pub gpu_quota: i64,
    /// Granted plus top-ups minus take-backs.
    pub gpu_hours_granted: f64,
    /// Charged at the GPU class weights, less refunds.
    pub gpu_hours_used: f64,
    pub gpu_hours_left: f64,
    pub valid_from: i64,
    pub valid_until: i64,
    /// `pending` (not yet valid), `active`, `warning` (past the warning threshold), `spent`
    /// or `expired`.
    pub state: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LedgerEntry {
    pub id: i64,
    pub at: i64,
    /// `charge`, `refund` (attempt lost to a node fault) or `credit` (owed to a partner pool's
    /// owner, `org`).
    pub kind: String,
    pub attempt: i64,
    pub project: i64,
    pub org: i64,
    pub award: Option<i64>,
    pub gpu_model: String,
    pub gpu_ms: i64,
    /// The GPU class weight applied, in thousandths.
    pub weight_milli: i64,
    pub charged_ms: i64,
}

/// One line of a monthly statement: a project's use of one GPU model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct StatementLine {
    pub org: i64,
    pub project: i64,
    pub gpu_model: String,
    /// GPU-hours run (charges).
    pub gpu_hours: f64,
    /// Weighted GPU-hours charged.
    pub charged_gpu_hours: f64,
    /// Weighted GPU-hours refunded (node faults), as a positive number.
    pub refunded_gpu_hours: f64,
    /// Weighted GPU-hours credited to `org` as a partner pool's owner.
    pub credited_gpu_hours: f64,
    /// GPU-hours measured as used: each charged attempt's GPU-hours times its job's mean GPU
    /// utilisation. Compare with `gpu_hours`, what was held.
    #[serde(default)]
    pub used_gpu_hours: f64,
    /// GPU-hours of jobs with no GPU samples (not counted as used).
    #[serde(default)]
    pub unmeasured_gpu_hours: f64,
    /// Energy of the line's jobs from their GPU samples, in kWh (a job's energy shared over its
    /// attempts in proportion to their GPU-hours).
    #[serde(default)]
    pub energy_kwh: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Statement {
    /// `YYYY-MM` (UTC).
    pub month: String,
    pub from: i64,
    pub until: i64,
    pub lines: Vec<StatementLine>,
    /// Sums of the lines, in exact GPU-milliseconds, so that they can be checked against the
    /// ledger without rounding.
    pub charged_ms: i64,
    pub refunded_ms: i64,
    pub credited_ms: i64,
    pub ledger_rows: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Notice {
    pub id: i64,
    pub at: i64,
    /// `award.warning`, `award.spent`, `compute.threshold`, `award.underuse`, or
    /// `gpu.idle.job.ID` (the idle policy's notice about job ID to its owner).
    pub kind: String,
    pub project: i64,
    pub award: Option<i64>,
    pub detail: String,
    /// The job an idle notice is about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<i64>,
    /// That job's owner (user id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<i64>,
    /// While that job runs with its GPUs still idle: when it will be stopped with reason
    /// `idle` (Unix ms) unless they get busy. Absent once they got busy or the job ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stops_at: Option<i64>,
}

/// An award whose GPUs sat idle: a candidate for take-back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Underuse {
    pub award: i64,
    pub project: i64,
    pub gpu_quota: i64,
    pub window_days: f64,
    /// GPU-hours the quota could have run in the window.
    pub capacity_gpu_hours: f64,
    /// GPU-hours charged to the award in the window (what it held).
    pub used_gpu_hours: f64,
    /// `used_gpu_hours` over `capacity_gpu_hours`.
    pub used_fraction: f64,
    /// GPU-hours measured as used: each charged attempt's GPU-hours times its job's mean GPU
    /// utilisation (over all its samples).
    #[serde(default)]
    pub measured_gpu_hours: f64,
    /// GPU-hours charged for jobs with no GPU samples: unknown, neither used nor idle.
    #[serde(default)]
    pub unmeasured_gpu_hours: f64,
    /// `measured_gpu_hours` over `capacity_gpu_hours`.
    #[serde(default)]
    pub measured_fraction: f64,
    /// Flagged when the charged fraction, or the measured fraction with the unmeasured hours
    /// given the benefit of the doubt, is under the centre's underuse fraction.
    pub flagged: bool,
    /// Why it is flagged: `charged` (the quota was not held), `measured` (held but idle), or
    /// absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flagged_by: Option<String>,
}

/// Estimated cumulative training compute of a project.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ComputeEstimate {
    pub project: i64,
    /// GPU-hours x peak operations per second of the GPU x utilisation.
    pub operations: f64,
    pub threshold: f64,
    pub over_threshold: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GpuWeight {
    pub gpu_model: String,
    /// How many award GPU-hours one hour of this GPU costs (H100 = 1.0).
    pub weight: f64,
}

/// Set an organisation's verification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OrgVerify {
    /// `verified`, `pending` or `suspended`.
    #[serde(default = "default_verified")]
    #[schema(value_type = VerificationName)]
    pub status: String,
}

fn default_verified() -> String {
    "verified".into()
}

/// Import a denied-party list: CSV with a header row and the columns `name`, `country` and
/// optionally `source`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeniedPartyImport {
    pub csv: String,
    /// Where the list comes from, used when a row names none (for example `BIS Entity List`).
    #[serde(default)]
    pub source: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DeniedParty {
    pub name: String,
    pub country: String,
    pub source: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DeniedPartyImported {
    pub imported: i64,
}

// --- programmes: calls, applications, scores ---

/// A track of a call: which requests it takes and how it caps them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Track {
    pub name: String,
    #[serde(default = "one_gpu")]
    pub min_gpus: i64,
    pub max_gpus: i64,
    /// Requests must be whole servers: multiples of `server_gpus`.
    #[serde(default)]
    pub whole_server: bool,
    #[serde(default = "eight")]
    pub server_gpus: i64,
    /// Longest award, in days.
    pub max_days: i64,
    /// Most GPUs one organisation may be awarded in this track.
    #[serde(default)]
    pub per_org_cap_gpus: Option<i64>,
    /// Applications from this region rank ahead of equal scores from elsewhere.
    #[serde(default)]
    pub region: Option<String>,
}

fn one_gpu() -> i64 {
    1
}

fn eight() -> i64 {
    8
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CallCreate {
    pub programme: String,
    pub name: String,
    pub gpu_model: String,
    /// GPUs the call can award at once, over all tracks.
    pub capacity_gpus: i64,
    pub tracks: Vec<Track>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Call {
    pub id: i64,
    pub programme: String,
    pub name: String,
    pub gpu_model: String,
    pub capacity_gpus: i64,
    pub tracks: Vec<Track>,
    /// `open`, `closed` or `awarded`.
    pub state: String,
    pub created_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CallStateChange {
    /// `open` or `closed`.
    pub state: String,
    /// Why, in the operator's words (at most 500 characters): kept in the audit log.
    #[serde(default)]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApplicationCreate {
    pub project: i64,
    pub track: String,
    pub gpus: i64,
    pub days: i64,
    /// ISO 3166-1 alpha-2 or a region name; defaults to the organisation's country.
    #[serde(default)]
    pub region: Option<String>,
    pub plan: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Score {
    pub reviewer: String,
    pub score: i64,
    /// What the reviewer wrote with the score; empty when nothing.
    #[serde(default)]
    pub comment: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Application {
    pub id: i64,
    pub call: i64,
    pub project: i64,
    pub track: String,
    pub gpus: i64,
    pub days: i64,
    pub region: String,
    pub plan: String,
    /// `submitted`, `awarded` or `declined`.
    pub state: String,
    /// Each reviewer's score and comment, shown to the centre's administrators and auditors
    /// only; empty for the applicant, to whom review is blind.
    pub scores: Vec<Score>,
    pub mean_score: Option<f64>,
    pub created_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScoreCreate {
    /// Defaults to the caller's user name.
    #[serde(default)]
    pub reviewer: Option<String>,
    /// 0 to 10.
    pub score: i64,
    #[serde(default)]
    pub comment: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Declined {
    pub application: i64,
    pub reason: String,
}

/// What awarding a call did: awards in rank order, and why the others were declined.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CallAwarded {
    pub awards: Vec<Award>,
    pub declined: Vec<Declined>,
}

// --- fleet summary and usage over time ---

/// GPUs of one model in one pool by what they are doing. Each GPU counts once: `allocated`
/// when a live attempt holds any share of it, else `idle`, `draining` or `down` by its node's
/// state, so `total = allocated + idle + draining + down`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FleetGpus {
    pub pool: i64,
    pub pool_name: String,
    pub gpu_model: String,
    pub nodes: i64,
    pub total: i64,
    pub allocated: i64,
    /// The shares held on the allocated GPUs (1000 per whole GPU): two half-GPU jobs on one
    /// GPU give `allocated` 1 and 1000 here; one quarter-GPU job gives 1 and 250.
    pub allocated_milli: i64,
    pub idle: i64,
    pub draining: i64,
    pub down: i64,
}

/// One project's queued and running work.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ProjectQueue {
    pub project: i64,
    pub project_name: String,
    pub org: i64,
    pub queued_jobs: i64,
    /// GPUs the queued jobs ask for, replicas x GPUs per task, in milli-GPU.
    pub queued_gpu_milli: i64,
    /// Jobs running or stopping (their GPUs are still held).
    pub running_jobs: i64,
}

/// GPUs held on one node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct NodeAllocation {
    pub node: i64,
    pub allocated: i64,
    pub allocated_milli: i64,
}

/// The fleet at `at`, from one consistent read: GPUs by pool (by name) and model, the queue by
/// project id (projects with queued or running work only), and the nodes holding work by id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FleetSummary {
    pub at: i64,
    pub gpus: Vec<FleetGpus>,
    pub queue: Vec<ProjectQueue>,
    pub nodes: Vec<NodeAllocation>,
}

/// One organisation's or project's use per bucket, aligned with [`UsageSeries::starts`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct UsageLine {
    /// The organisation or project id.
    pub id: i64,
    pub name: String,
    /// GPU time run in each bucket (refunds of node-lost attempts taken off), GPU-hours.
    pub gpu_hours: Vec<f64>,
    /// What awards were charged in each bucket (GPU time x class weight, refunds taken off),
    /// GPU-hours.
    pub charged_gpu_hours: Vec<f64>,
    /// `charged_gpu_hours` exactly, in GPU-milliseconds.
    pub charged_ms: Vec<i64>,
}

/// GPU-hours per time bucket from the ledger. A charge is spread over the buckets its attempt
/// ran in, in proportion to the time in each, so a bucket holds the GPU time used in it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct UsageSeries {
    /// `org` or `project`.
    pub by: String,
    /// `hour` or `day` (UTC).
    pub bucket: String,
    /// The first bucket's start and the last bucket's end.
    pub from: i64,
    pub to: i64,
    /// Each bucket's start.
    pub starts: Vec<i64>,
    /// One line per organisation or project with any use in the range, by id.
    pub lines: Vec<UsageLine>,
}

/// GPU-hours and the like as statements print them: three decimals, and never `-0.000` (a sum
/// of refunds and charges that cancel, or a tiny negative left by floating point, is shown as
/// the nothing it is).
pub fn fixed3(v: f64) -> String {
    let text = format!("{v:.3}");
    match text.strip_prefix('-') {
        Some(rest) if rest.bytes().all(|b| b == b'0' || b == b'.') => rest.to_string(),
        _ => text,
    }
}

#[cfg(test)]
mod fixed3_tests {
    #[test]
    fn no_negative_zero_in_figures() {
        assert_eq!(super::fixed3(-0.0), "0.000");
        assert_eq!(super::fixed3(-0.0001), "0.000");
        assert_eq!(super::fixed3(-0.25), "-0.250");
        assert_eq!(super::fixed3(1.5), "1.500");
    }
}

#[cfg(test)]
mod log_bytes {
    use super::*;

    #[test]
    fn uploads_and_chunks_carry_any_bytes() {
        for bytes in [
            &b"plain\n"[..],
            b"x\0y",
            b"\xff\xfe",
            "한\u{0}".as_bytes(),
            b"",
        ] {
            let up = LogUpload::new(1, 1, 0, bytes);
            // Text stays readable in `data`; only what is not UTF-8 goes to base64.
            assert_eq!(
                up.data_base64.is_some(),
                std::str::from_utf8(bytes).is_err()
            );
            let wire: LogUpload =
                serde_json::from_str(&serde_json::to_string(&up).unwrap()).unwrap();
            assert_eq!(wire.bytes().unwrap(), bytes);
            let chunk = LogChunk::new(7, 1, 0, bytes, 5);
            let wire: LogChunk =
                serde_json::from_str(&serde_json::to_string(&chunk).unwrap()).unwrap();
            assert_eq!(wire.bytes(), bytes);
        }
        assert_eq!(LogChunk::new(1, 1, 0, b"a\xffb", 0).data, "a\u{fffd}b");
    }

    #[test]
    fn an_upload_with_both_or_bad_base64_is_refused() {
        let both: LogUpload =
            serde_json::from_str(r#"{"job":1,"fence":1,"task":0,"data":"a","data_base64":"YQ=="}"#)
                .unwrap();
        assert_eq!(both.bytes(), Err(LogUploadError::Both));
        let bad: LogUpload =
            serde_json::from_str(r#"{"job":1,"fence":1,"task":0,"data_base64":"!!"}"#).unwrap();
        assert_eq!(bad.bytes(), Err(LogUploadError::NotBase64));
    }
}

/// One sample of one GPU held by one task, as the node's agent took it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GpuSample {
    pub job: i64,
    pub fence: i64,
    pub task: i64,
    /// The GPU's index on the node.
    pub gpu: u32,
    /// The GPU's UUID (`GPU-...`, `MIG-...`, or `SIM-...` for a simulated GPU).
    pub uuid: String,
    /// When the sample was taken (ms since the epoch).
    pub at_ms: i64,
    /// How long this sample stands for (since the GPU's previous sample), in ms.
    pub period_ms: i64,
    /// SM utilisation, 0 to 100.
    pub util_pct: u32,
    /// Memory in use, MiB.
    pub mem_mib: u64,
    /// Power draw, W.
    pub power_w: u32,
    /// Temperature, °C.
    pub temp_c: u32,
}

/// A task's cumulative CPU time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskCpu {
    pub job: i64,
    pub fence: i64,
    pub task: i64,
    /// CPU time (user and system) of the task's processes since it started, ms.
    pub cpu_ms: i64,
}

/// Telemetry an agent sends in one call (every telemetry interval).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TelemetryBatch {
    #[serde(default)]
    pub samples: Vec<GpuSample>,
    #[serde(default)]
    pub tasks: Vec<TaskCpu>,
}

/// What the server kept of a telemetry batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TelemetryAck {
    /// Samples recorded.
    pub accepted: u64,
    /// Samples dropped: of tasks no longer assigned to this node (an ended attempt).
    pub dropped: u64,
}

/// What a job did with one of its GPUs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct GpuEfficiency {
    pub node: i64,
    pub gpu: i64,
    pub uuid: String,
    pub samples: i64,
    pub util_mean_pct: f64,
    pub util_max_pct: i64,
    pub mem_max_mib: i64,
    pub energy_wh: f64,
}

/// One minute of one GPU of a job (the downsampled series).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct GpuMinute {
    /// Start of the minute, ms since the epoch.
    pub minute: i64,
    pub uuid: String,
    pub util_mean_pct: f64,
    pub util_max_pct: i64,
    pub mem_max_mib: i64,
    pub power_mean_w: f64,
}

/// How well a job used what it was given (like Slurm's `seff` or `jobstats`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct JobEfficiency {
    pub job: i64,
    pub state: String,
    /// GPUs the job holds (or held) per its request; `gpus` lists those sampled.
    pub gpus_allocated: i64,
    /// GPUs whose mean utilisation reached the centre's idle threshold.
    pub gpus_used: i64,
    /// Mean SM utilisation over all samples of all GPUs; none before the first sample.
    pub gpu_util_mean_pct: Option<f64>,
    pub gpu_util_max_pct: Option<i64>,
    pub gpu_mem_max_mib: Option<i64>,
    pub energy_wh: f64,
    /// CPU time used over CPU time allotted (CPUs times wall time of its attempts).
    pub cpu_efficiency_pct: Option<f64>,
    pub samples: i64,
    /// A plain sentence: "used 4 of 8 GPUs; the other 4 stayed idle".
    pub verdict: String,
    /// The idle policy's notice to the owner, once raised: the job will be stopped with
    /// reason `idle` unless its GPUs get busy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_notice: Option<String>,
    /// While the job runs under that notice with its GPUs still idle: when it will be stopped
    /// (Unix ms) unless they get busy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_stops_at: Option<i64>,
    pub gpus: Vec<GpuEfficiency>,
    /// The per-minute series the retention kept.
    pub series: Vec<GpuMinute>,
}
