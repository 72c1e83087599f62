//! The agent protocol under /v1/agent: register with inventory, heartbeat, long-poll for
//! assignments, report task status and exit, upload logs. Only agent tokens may call it, and an
//! agent acts only on the node it registered. Reports carry the attempt's fence (see
//! [`haneul_store::AttemptStore::report_task`]).

use crate::AppState;
use crate::auth::Caller;
use crate::convert;
use crate::error::{ApiError, Body};
use crate::extract::{Id, Q};
use axum::Json;
use axum::extract::State;
use haneul_api::*;
use haneul_store as st;
use serde::Deserialize;
use std::time::Duration;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Longest a long poll is held open.
const MAX_WAIT_MS: u64 = 60_000;
/// Largest log chunk accepted in one upload.
const MAX_LOG_CHUNK: usize = 256 * 1024;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(register))
        .routes(routes!(heartbeat))
        .routes(routes!(assignments))
        .routes(routes!(report))
        .routes(routes!(upload_logs))
        .routes(routes!(health))
}

pub(crate) async fn own_node(
    s: &AppState,
    caller: &Caller,
    id: i64,
) -> Result<st::NodeRecord, ApiError> {
    caller.agent()?;
    match s.store.get_node(id).await {
        Ok(n) if n.agent_user == Some(caller.0.id) => {
            s.node_owners.saw(id, caller.0.id);
            Ok(n)
        }
        Ok(_) | Err(st::StoreError::NotFound { .. }) => Err(ApiError::not_found("node", id)),
        Err(e) => Err(e.into()),
    }
}

/// [`own_node`] for the calls every node makes all the time (heartbeats, polls, reports,
/// output): answered from what this server saw in the last seconds, so that 1,250 start
/// reports or 12,500 nodes' heartbeats do not each wait for a read of their node first.
async fn owns_node(s: &AppState, caller: &Caller, id: i64) -> Result<(), ApiError> {
    caller.agent()?;
    if s.node_owners.owned_by(id, caller.0.id) {
        return Ok(());
    }
    own_node(s, caller, id).await.map(drop)
}

/// Which agent account owns which node, as this server last read it. An entry lives 30 s,
/// longer than the 5 s heartbeat interval so that a node's heartbeats mostly skip the read: a
/// node re-registered by another agent account at another server is refused to the old one at
/// most that long after (at this server, at once).
#[derive(Debug, Default)]
pub struct NodeOwners {
    seen: std::sync::Mutex<std::collections::HashMap<i64, (i64, std::time::Instant)>>,
}

const OWNER_KEPT: Duration = Duration::from_secs(30);

impl NodeOwners {
    fn saw(&self, node: i64, agent: i64) {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if seen.len() > 200_000 {
            seen.clear();
        }
        seen.insert(node, (agent, std::time::Instant::now()));
    }

    fn owned_by(&self, node: i64, agent: i64) -> bool {
        let seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        matches!(seen.get(&node), Some(&(a, at)) if a == agent && at.elapsed() < OWNER_KEPT)
    }

    fn forget(&self, node: i64) {
        self.seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&node);
    }
}

/// Per node, the list its last poll read and the change signals' counts just before that
/// read: a poll that presents the same list while neither count has moved since would read
/// exactly it again. An agent polls again the moment it is answered, so without this every
/// change a node is told of cost two reads of its list, the answer and the re-poll's check;
/// for a whole-fleet gang's start or stop that is 1,250 reads more on the store's connections
/// in the same second. Only the leader's signals cover every change, so only the leader skips
/// a read, and only shortly after it: the skipped poll reads at its wait's end instead, so a
/// change that was somehow not signalled is still seen within one wait.
#[derive(Debug, Default)]
pub struct PollMemos {
    read: std::sync::Mutex<std::collections::HashMap<i64, PollMemo>>,
}

#[derive(Debug)]
struct PollMemo {
    etag: String,
    fleet_signal: u64,
    node_signal: u64,
    at: tokio::time::Instant,
}

/// How long after its read a node's list may stand for a re-poll's.
const MEMO_FRESH: Duration = Duration::from_secs(1);

impl PollMemos {
    fn remember(&self, node: i64, memo: PollMemo) {
        let mut read = self.read.lock().unwrap_or_else(|p| p.into_inner());
        // Only registered nodes poll (their owner is checked first); the bound is for a
        // fleet whose nodes come and go over a long uptime.
        if read.len() > 200_000 {
            read.clear();
        }
        read.insert(node, memo);
    }

    /// Whether `node`'s list is known to be the one of `etag` without reading it.
    fn unchanged(&self, node: i64, etag: &str, fleet_signal: u64, node_signal: u64) -> bool {
        let read = self.read.lock().unwrap_or_else(|p| p.into_inner());
        matches!(read.get(&node), Some(m) if m.etag == etag
            && m.fleet_signal == fleet_signal
            && m.node_signal == node_signal
            && m.at.elapsed() < MEMO_FRESH)
    }
}

/// Register this agent's node (or update its inventory). The node comes up at once.
#[utoipa::path(post, path = "/v1/agent/register", tag = "agent", request_body = AgentRegister,
    responses((status = 200, body = Node), (status = "4XX", body = ErrorBody)),
    security(("token" = [])))]
async fn register(
    State(s): State<AppState>,
    caller: Caller,
    Body(b): Body<AgentRegister>,
) -> Result<Json<Node>, ApiError> {
    caller.agent()?;
    for (field, v) in [("name", &b.name), ("pool", &b.pool), ("block", &b.block)] {
        crate::validate::name(field, v, 128)?;
    }
    let model = haneul_model::GpuModel::new(&b.gpu_model)?;
    if !(0..=crate::MAX_GPUS_PER_NODE as i64).contains(&b.gpus) {
        return Err(ApiError::bad(
            "gpus",
            format!("must be 0 to {}", crate::MAX_GPUS_PER_NODE),
        ));
    }
    let domain = b.nvlink_domain.unwrap_or(b.gpus);
    if b.gpus > 0 && !(1..=b.gpus).contains(&domain) {
        return Err(ApiError::bad(
            "nvlink_domain",
            "must be 1 to the node's GPU count",
        ));
    }
    for (field, v) in [
        ("cpu_milli", b.cpu_milli),
        ("memory_mib", b.memory_mib),
        ("gpu_memory_mib", b.gpu_memory_mib),
    ] {
        if v < 0 {
            return Err(ApiError::bad(field, "must not be negative"));
        }
    }
    if let Some(l) = &b.limits
        && !["cgroup-v2", "cgroup-v1", "rlimit", "none"].contains(&l.as_str())
    {
        return Err(ApiError::bad(
            "limits",
            "must be cgroup-v2, cgroup-v1, rlimit or none",
        ));
    }
    if let Some(a) = &b.address
        && (a.is_empty()
            || a.chars().count() > 253
            || a.chars().any(|c| c.is_whitespace() || c.is_control()))
    {
        return Err(ApiError::bad(
            "address",
            "must be an IP address or host name of 1 to 253 characters",
        ));
    }
    if let Some(r) = &b.container_runtime
        && !["podman", "apptainer", "none"].contains(&r.as_str())
    {
        return Err(ApiError::bad(
            "container_runtime",
            "must be podman, apptainer or none",
        ));
    }
    if let Some(uid) = b.uid {
        if !(0..=crate::identity::MAX_ID).contains(&uid) {
            return Err(ApiError::bad(
                "uid",
                format!("must be 0 to {}", crate::identity::MAX_ID),
            ));
        }
        if let Some(u) = s
            .store
            .list_users()
            .await?
            .into_iter()
            .find(|u| u.uid == Some(uid))
        {
            return Err(ApiError::bad(
                "uid",
                format!(
                    "the agent runs as uid {uid}, which is user `{}`'s: that user's tasks could \
                     control the agent; run the agent as root or as an account no user has",
                    u.name
                ),
            ));
        }
    }
    let n = s
        .store
        .register_node(
            &st::Actor::user(&caller.0),
            st::NewNode {
                name: b.name,
                pool: b.pool,
                block: b.block,
                gpu_model: model,
                gpus: b.gpus,
                gpu_memory_mib: b.gpu_memory_mib,
                nvlink_domain: domain,
                cpu_milli: b.cpu_milli,
                memory_mib: b.memory_mib,
                agent_user: Some(caller.0.id),
                agent: st::NodeAgent {
                    limits: b.limits,
                    address: b.address,
                    container_runtime: b.container_runtime,
                    uid: b.uid,
                },
            },
            s.clock.now_ms(),
        )
        .await?;
    // A registration may hand the node to another agent account.
    s.node_owners.forget(n.id);
    s.signals.wake.notify_one();
    Ok(Json(convert::node(n)))
}

/// Tell the server the node is alive. A node silent for longer than the node timeout is
/// marked lost and its work requeued.
#[utoipa::path(post, path = "/v1/agent/nodes/{id}/heartbeat", tag = "agent",
    params(("id" = i64, Path, description = "node id", minimum = 1)),
    responses((status = 200, body = HeartbeatAck), (status = "4XX", body = ErrorBody)),
    security(("token" = [])))]
async fn heartbeat(
    State(s): State<AppState>,
    caller: Caller,
    Id(id): Id,
) -> Result<Json<HeartbeatAck>, ApiError> {
    owns_node(&s, &caller, id).await?;
    let n = s.beats.call(id).await?;
    Ok(Json(HeartbeatAck {
        node: n.id,
        state: n.state.to_string(),
        interval_ms: s.heartbeat_interval_ms,
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct PollQuery {
    /// The `etag` of the last answer: wait until the assignments differ from it.
    etag: Option<String>,
    /// How long to wait for a change, in milliseconds, 0 to 60000 (default 0).
    #[param(minimum = 0, maximum = 60000)]
    wait_ms: Option<u64>,
}

fn to_wire(a: st::Assignment) -> Assignment {
    let milli = a
        .attempt
        .placement
        .tasks
        .get(a.task as usize)
        .map(|t| t.milli_per_gpu.get())
        .unwrap_or(0);
    let stop = a.attempt.state == st::AttemptState::Stopping;
    Assignment {
        job: a.job.id,
        fence: a.attempt.fence,
        task: a.task,
        action: if stop { "stop" } else { "run" }.into(),
        stop_reason: a.attempt.stop_reason.map(|r| r.to_string()),
        kill_at: a.attempt.kill_at,
        gpus: a.gpus,
        milli_per_gpu: milli,
        command: a.job.command,
        peers: a.peers,
        user: a.job.user_id,
        user_name: a.user_name,
        project: a.job.project_id,
        cpu_milli: a.job.spec.cpu_per_task.get(),
        memory_mib: a.job.spec.memory_per_task.get(),
        time_limit_s: a.job.spec.time_limit.map(|t| (t.millis() / 1000) as u64),
        grace_s: (a.job.spec.grace.millis() / 1000) as u64,
        container_image: a.job.container_image,
        uid: a.uid.and_then(|u| u32::try_from(u).ok()),
        gid: a.gid.and_then(|g| u32::try_from(g).ok()),
        groups: a
            .project_gid
            .and_then(|g| u32::try_from(g).ok())
            .into_iter()
            .collect(),
        interactive: a.job.interactive,
        name: a.job.name,
        batch: a.job.batch.map(crate::convert::batch_to_api),
        array: match (a.job.array_job_id, a.job.array_task, &a.array) {
            (Some(job), Some(task), Some(spec)) => Some(haneul_api::ArrayTask {
                job,
                task,
                count: spec.len() as u32,
                min: spec.min(),
                max: spec.max(),
                step: spec.step(),
            }),
            _ => None,
        },
    }
}

fn etag_of(list: &[Assignment]) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for a in list {
        h.update(format!("{}:{}:{}:{};", a.job, a.fence, a.task, a.action));
    }
    hex::encode(&h.finalize()[..12])
}

/// Tasks this node must run or stop. With `etag` and `wait_ms`, the answer is held until the
/// list changes or the wait ends (a long poll).
#[utoipa::path(get, path = "/v1/agent/nodes/{id}/assignments", tag = "agent",
    params(("id" = i64, Path, description = "node id", minimum = 1), PollQuery),
    responses((status = 200, body = AssignmentList), (status = "4XX", body = ErrorBody)),
    security(("token" = [])))]
async fn assignments(
    State(s): State<AppState>,
    caller: Caller,
    Id(id): Id,
    Q(q): Q<PollQuery>,
) -> Result<Json<AssignmentList>, ApiError> {
    owns_node(&s, &caller, id).await?;
    let wait_ms = q.wait_ms.unwrap_or(0);
    if wait_ms > MAX_WAIT_MS {
        return Err(ApiError::bad(
            "wait_ms",
            format!("must be 0 to {MAX_WAIT_MS}"),
        ));
    }
    let wait = Duration::from_millis(wait_ms);
    let deadline = tokio::time::Instant::now() + wait;
    let mut changes = s.signals.assignments.subscribe();
    let mut mine = s.signals.node_assignments(id);
    let mut first = true;
    loop {
        let fleet_signal = *changes.borrow_and_update();
        let node_signal = *mine.borrow_and_update();
        let leading = s.signals.leader.load(std::sync::atomic::Ordering::Relaxed);
        let now = tokio::time::Instant::now();
        let known = first
            && leading
            && now < deadline
            && q.etag
                .as_deref()
                .is_some_and(|e| s.poll_memos.unchanged(id, e, fleet_signal, node_signal));
        first = false;
        let (kept, etag) = if known {
            s.metrics.poll_reads_skipped.inc();
            (None, q.etag.clone().unwrap_or_default())
        } else {
            s.metrics.poll_reads.inc();
            let list: Vec<Assignment> = s
                .store
                .assignments(id)
                .await?
                .into_iter()
                .map(to_wire)
                .collect();
            let etag = etag_of(&list);
            if leading {
                let memo = PollMemo {
                    etag: etag.clone(),
                    fleet_signal,
                    node_signal,
                    at: now,
                };
                s.poll_memos.remember(id, memo);
            }
            let now = tokio::time::Instant::now();
            if q.etag.as_deref() != Some(etag.as_str()) || now >= deadline {
                return Ok(Json(AssignmentList {
                    assignments: list,
                    etag,
                }));
            }
            // The list is what the node already has; it is kept for the wait only when small.
            // A gang's task lists every peer, so the 1,250 nodes of a whole-fleet gang held
            // about 60 MB of lists for their whole wait, and a tenant's long commands would
            // weigh the same on every node they run on: a large list is read again at the
            // wait's end instead.
            ((held_bytes(&list) <= MAX_HELD_BYTES).then_some(list), etag)
        };
        // Another server may lead (HA) and change the list without signalling here: a
        // standby looks again every second. The leader signals every change it makes, so it
        // waits for a signal or the poll's end; with no signal, what it read is still the
        // answer. The agent's next poll begins with a read (or, when its list was just read
        // and nothing was signalled since, ends with one), so a change that was somehow not
        // signalled is still seen within one wait. With a long poll per node, looking again
        // unsignalled would be thousands of store reads a second at a centre's scale.
        let now = tokio::time::Instant::now();
        let left = deadline.saturating_duration_since(now);
        let nap = if leading {
            left
        } else {
            left.min(Duration::from_secs(1))
        };
        let signalled = tokio::time::timeout(nap, async {
            tokio::select! {
                _ = changes.changed() => {}
                _ = mine.changed() => {}
            }
        })
        .await
        .is_ok();
        let still_leading = s.signals.leader.load(std::sync::atomic::Ordering::Relaxed);
        if !signalled && leading && still_leading && tokio::time::Instant::now() >= deadline {
            // Past the deadline, the read at the top of the loop answers whatever it finds.
            if let Some(list) = kept {
                return Ok(Json(AssignmentList {
                    assignments: list,
                    etag,
                }));
            }
        }
    }
}

/// What a held long poll may keep of its answer while it waits: room for a full node of
/// one-task jobs with ordinary commands.
const MAX_HELD_BYTES: usize = 8 * 1024;

/// About how much heap `list` holds: its strings and lists, the parts that grow with a gang's
/// size or with what a tenant submits.
fn held_bytes(list: &[Assignment]) -> usize {
    let text = |s: &String| std::mem::size_of::<String>() + s.len();
    list.iter()
        .map(|a| {
            std::mem::size_of::<Assignment>()
                + a.peers.iter().map(text).sum::<usize>()
                + a.command.iter().map(text).sum::<usize>()
                + a.gpus.len() * 4
                + a.user_name.len()
                + a.name.len()
                + a.container_image.as_ref().map_or(0, String::len)
                + a.batch.as_ref().map_or(0, batch_bytes)
        })
        .sum()
}

/// The text of a batch script's options: each at most a few KiB, but there are ten.
fn batch_bytes(b: &haneul_api::JobBatch) -> usize {
    [
        &b.output,
        &b.error,
        &b.chdir,
        &b.submit_dir,
        &b.account,
        &b.partition,
        &b.mail_type,
        &b.mail_user,
        &b.signal,
        &b.export,
    ]
    .into_iter()
    .filter_map(Option::as_ref)
    .map(String::len)
    .sum()
}

/// Report that a task started (no `exit_code`) or exited. Refused with 409 when the fence is
/// not the job's current attempt or the task is not on this node.
#[utoipa::path(post, path = "/v1/agent/nodes/{id}/reports", tag = "agent",
    params(("id" = i64, Path, description = "node id", minimum = 1)),
    request_body = TaskReport,
    responses((status = 200, body = TaskReportAck), (status = "4XX", body = ErrorBody)),
    security(("token" = [])))]
async fn report(
    State(s): State<AppState>,
    caller: Caller,
    Id(id): Id,
    Body(b): Body<TaskReport>,
) -> Result<Json<TaskReportAck>, ApiError> {
    owns_node(&s, &caller, id).await?;
    // A process's exit status is 0 to 255 on the platforms agents run on (a signal is
    // reported as 128 + its number).
    if let Some(code) = b.exit_code
        && !(0..=255).contains(&code)
    {
        return Err(ApiError::bad(
            "exit_code",
            format!("must be 0 to 255 (a signal is 128 + its number), got {code}"),
        ));
    }
    let a = s
        .reports
        .call(st::TaskReport {
            node: id,
            job: b.job,
            fence: b.fence,
            task: b.task,
            exit_code: b.exit_code,
        })
        .await?;
    // Nodes look again only where this report changed what they must do. An exit takes the
    // task off its own node's list. A failed rank stops the gang: every node of it must stop
    // its task. Nothing else changes another node's list: a stop asked for by the controller
    // (cancel, preemption, time limit) woke them when it was asked, and an attempt ends on a
    // report only once every task has exited, each already off its node's list. Waking every
    // node of a stopping gang at each of its reports had 1,250 polls reread their work 1,250
    // times over while a whole-fleet gang stopped, and waking them all at its end put 1,250
    // to 2,500 reads in the way of the next submit (100-200 ms of the server's CPU).
    let failed_rank =
        b.exit_code.is_some_and(|c| c != 0) && a.stop_reason == Some(st::StopReason::TaskFailed);
    if !a.state.is_live() || a.state == st::AttemptState::Stopping {
        s.signals.wake.notify_one();
    }
    if a.state == st::AttemptState::Stopping && failed_rank {
        s.signals
            .nodes_changed(a.placement.nodes().map(|n| n.0 as i64));
    } else if b.exit_code.is_some() {
        s.signals.nodes_changed([id]);
    }
    Ok(Json(TaskReportAck {
        job: a.job_id,
        fence: a.fence,
        task: b.task,
        state: a.state.to_string(),
        stop_reason: a.stop_reason.map(|r| r.to_string()),
        started_at: a.started_at,
        ended_at: a.ended_at,
        exit_code: a.exit_code,
    }))
}

/// Append output of a task; upload a task's last output before reporting its exit.
#[utoipa::path(post, path = "/v1/agent/nodes/{id}/logs", tag = "agent",
    params(("id" = i64, Path, description = "node id", minimum = 1)),
    request_body = LogUpload,
    responses((status = 204), (status = "4XX", body = ErrorBody)),
    security(("token" = [])))]
async fn upload_logs(
    State(s): State<AppState>,
    caller: Caller,
    Id(id): Id,
    Body(b): Body<LogUpload>,
) -> Result<axum::http::StatusCode, ApiError> {
    owns_node(&s, &caller, id).await?;
    let data = b.bytes().map_err(|e| match e {
        LogUploadError::Both => ApiError::bad(
            "data_base64",
            "send the output in data or in data_base64, not both",
        ),
        LogUploadError::NotBase64 => ApiError::bad("data_base64", "must be standard base64"),
    })?;
    if data.len() > MAX_LOG_CHUNK {
        let field = if b.data_base64.is_some() {
            "data_base64"
        } else {
            "data"
        };
        return Err(ApiError::bad(
            field,
            format!("at most {MAX_LOG_CHUNK} bytes per upload; send several"),
        ));
    }
    let at = match (b.stream, b.offset) {
        (None, None) => None,
        (Some(stream), Some(offset)) if offset >= 0 => Some((stream.as_str(), offset as u64)),
        (Some(_), Some(_)) => {
            return Err(ApiError::bad(
                "offset",
                "must be 0 or more: where in the file the upload's first byte is",
            ));
        }
        (Some(_), None) => {
            return Err(ApiError::bad(
                "offset",
                "send offset with stream: where in the file the upload's first byte is",
            ));
        }
        (None, Some(_)) => {
            return Err(ApiError::bad(
                "stream",
                "send stream (stdout or stderr) with offset, or neither",
            ));
        }
    };
    s.store
        .append_log(id, b.job, b.fence, b.task, &data, at, s.clock.now_ms())
        .await?;
    Ok(axum::http::StatusCode::NO_CONTENT)
}

/// Report the result of the node's health checks. The first failure drains the node and
/// requeues the jobs running on it (their attempts end as `node_lost`); the agent stops their
/// tasks when they leave its assignments. A pass resumes a node that a failure drained.
#[utoipa::path(post, path = "/v1/agent/nodes/{id}/health", tag = "agent",
    params(("id" = i64, Path, description = "node id", minimum = 1)),
    request_body = HealthReport,
    responses((status = 200, body = Node), (status = "4XX", body = ErrorBody)),
    security(("token" = [])))]
async fn health(
    State(s): State<AppState>,
    caller: Caller,
    Id(id): Id,
    Body(b): Body<HealthReport>,
) -> Result<Json<Node>, ApiError> {
    owns_node(&s, &caller, id).await?;
    if let Some(f) = &b.failure {
        if f.is_empty() {
            return Err(ApiError::bad(
                "failure",
                "must say what failed in 1 to 4096 characters; omit it when healthy",
            ));
        }
        crate::validate::text("failure", f, 4096)?;
    }
    let (n, requeued) = s
        .store
        .report_node_health(
            &st::Actor::user(&caller.0),
            id,
            b.failure.as_deref(),
            s.clock.now_ms(),
        )
        .await?;
    if !requeued.is_empty() {
        tracing::warn!(node = id, ?requeued, failure = ?b.failure, "node unhealthy: drained, jobs requeued");
    }
    s.signals.wake.notify_one();
    s.signals.assignments_changed();
    Ok(Json(convert::node(n)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(job: i64, peers: usize) -> Assignment {
        Assignment {
            job,
            fence: 1,
            task: 0,
            action: "run".into(),
            stop_reason: None,
            kill_at: None,
            gpus: vec![0],
            milli_per_gpu: 1000,
            command: vec!["python".into(), "train.py".into(), "--epochs=90".into()],
            peers: (0..peers).map(|i| format!("gpu-node-{i:05}")).collect(),
            user: 1,
            user_name: "researcher".into(),
            project: 1,
            cpu_milli: 8000,
            memory_mib: 65_536,
            time_limit_s: Some(86_400),
            grace_s: 30,
            container_image: None,
            uid: Some(2000),
            gid: Some(2000),
            groups: vec![3000],
            name: "train".into(),
            batch: None,
            array: None,
            interactive: false,
        }
    }

    #[test]
    fn a_full_node_of_small_jobs_is_held_and_a_large_gangs_task_is_not() {
        let full_node: Vec<Assignment> = (0..8).map(|j| task(j, 1)).collect();
        assert!(held_bytes(&full_node) <= MAX_HELD_BYTES);
        assert!(held_bytes(&[task(1, 256)]) > MAX_HELD_BYTES);
        let mut long = task(1, 1);
        long.command.push("x".repeat(MAX_HELD_BYTES));
        assert!(held_bytes(&[long]) > MAX_HELD_BYTES);
        let mut script = task(1, 1);
        script.batch = Some(haneul_api::JobBatch {
            chdir: Some("d".repeat(4096)),
            export: Some("e".repeat(4096)),
            ..Default::default()
        });
        assert!(held_bytes(&[script]) > MAX_HELD_BYTES);
    }
}
