//! One task's life on the node: its spec from the assignment (gang environment, identity,
//! MPS, limits, container), its launch, its supervision until it ends (log streaming, stops,
//! the time-limit backstop) and its exit report.

use super::recover::TaskFile;
use super::upload::{LogStream, upload};
use super::{NodeCtx, TIME_LIMIT_SLACK, now_ms};
use crate::container;
use crate::identity;
use crate::launch::{self, ContainerSpec, Limits, TaskSpec};
use crate::limits::{self as task_limits, ResourceRequest};
use crate::sharing;
use haneul_api::Assignment;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

/// The gang environment of task `a` on node `me`: (master address, world size, rank, local
/// rank, node rank, local world size).
pub(super) fn gang(a: &Assignment, me: &str) -> (String, u32, u32, u32, u32, u32) {
    let peers = if a.peers.is_empty() {
        vec![me.to_string()]
    } else {
        a.peers.clone()
    };
    let rank = (a.task as usize).min(peers.len() - 1);
    let mut nodes: Vec<&str> = Vec::new();
    for p in &peers {
        if !nodes.contains(&p.as_str()) {
            nodes.push(p);
        }
    }
    let mine = &peers[rank];
    let node_rank = nodes.iter().position(|n| n == mine).unwrap_or(0);
    let local_rank = peers[..rank].iter().filter(|p| *p == mine).count();
    let local_world = peers.iter().filter(|p| *p == mine).count();
    let master = if nodes.len() == 1 {
        "127.0.0.1".to_string()
    } else {
        peers[0].clone()
    };
    (
        master,
        peers.len() as u32,
        rank as u32,
        local_rank as u32,
        node_rank as u32,
        local_world as u32,
    )
}

pub(super) fn run_task(ctx: &NodeCtx, a: Assignment, stop: Receiver<Duration>) {
    let (master, world, rank, local_rank, node_rank, local_world) = gang(&a, &ctx.me);
    let workdir = ctx.task_dir(&a);
    let Some((program, args)) = a.command.split_first() else {
        upload(ctx, &a, "haneul agent: the job has an empty command\n");
        ctx.report(&a, None);
        ctx.report(&a, Some(127));
        return;
    };
    let spec = TaskSpec {
        job_id: a.job.to_string(),
        attempt: a.fence as u32,
        task: a.task as u32,
        program: program.into(),
        args: args.to_vec(),
        workdir,
        gpus: a.gpus.clone(),
        devices: sharing::device_names(&ctx.inventory, &a.gpus),
        master_addr: master,
        master_port: 20000 + (a.job.rem_euclid(20000)) as u16,
        world_size: world,
        rank,
        local_rank,
        node_rank,
        local_world_size: local_world,
        env: [
            ("HANEUL_NODE".to_string(), ctx.name.clone()),
            // Where a task's server should listen for the portal to reach it (docs/jupyter.md):
            // the address the server knows this node by.
            ("HANEUL_NODE_ADDRESS".to_string(), ctx.me.clone()),
            ("HANEUL_PROJECT".to_string(), a.project.to_string()),
        ]
        .into_iter()
        .chain(crate::slurm::env(
            &a,
            crate::slurm::Place {
                world,
                rank,
                local_rank,
                node_rank,
                local_world,
            },
            &ctx.name,
        ))
        .collect(),
        limits: Limits::default(),
        run_as: None,
        container: None,
    };
    let mut spec = spec;
    let who = identity::task_identity(
        &ctx.task_user,
        &a.user_name,
        a.uid,
        a.gid,
        &a.groups,
        ctx.euid,
    );
    let mps = match (&ctx.mps, &who) {
        (Some(m), Ok(id)) if sharing::needs_mps(a.milli_per_gpu, ctx.real_gpus, a.gpus.len()) => {
            let uid = id.as_ref().map_or(ctx.euid, |id| id.uid);
            m.client(&a.gpus, uid, a.milli_per_gpu, ctx.gpu_memory_mib)
                .map(Some)
        }
        _ => Ok(None),
    };
    match (who, mps) {
        (Ok(id), Ok(mps)) => {
            spec.run_as = id;
            spec.env.extend(mps.into_iter().flatten());
        }
        (Err(e), _) | (_, Err(e)) => {
            let why = format!("haneul agent: node {} refuses the task: {e}\n", ctx.name);
            if ctx.report(&a, None) {
                upload(ctx, &a, &why);
                ctx.report(&a, Some(127));
            }
            return;
        }
    }
    // A task that asked for no CPU or memory gets its share of the node by its GPUs.
    let request = ctx.share.fill(
        &ResourceRequest {
            cpu_milli: a.cpu_milli,
            memory_mib: a.memory_mib,
            time_limit_s: a.time_limit_s,
            pids: 0,
        },
        a.gpus.len() as u64 * a.milli_per_gpu,
    );
    if let Some(image) = &a.container_image {
        let Some(rt) = &ctx.containers else {
            let why = format!(
                "haneul agent: job asks for container image {image} but node {} has no \
                 container runtime; install podman or apptainer\n",
                ctx.name
            );
            if ctx.report(&a, None) {
                upload(ctx, &a, &why);
                ctx.report(&a, Some(127));
            }
            return;
        };
        spec.container = Some(ContainerSpec {
            runtime: rt.clone(),
            image: image.clone(),
            name: container::task_name(&ctx.name, a.job, a.fence, a.task),
            node: ctx.name.clone(),
            real_gpus: ctx.real_gpus,
            cpu_milli: request.cpu_milli,
            memory_mib: request.memory_mib,
        });
    }
    // Podman applies the limits to the container; the agent's own would bind podman.
    let prepared = if spec
        .container
        .as_ref()
        .is_some_and(|c| c.runtime.kind == container::RuntimeKind::Podman)
    {
        Ok(task_limits::Prepared::default())
    } else {
        ctx.limits.prepare(
            &format!(
                "{}-{}-job-{}-{}-{}",
                cgroup_safe(&ctx.name),
                std::process::id(),
                a.job,
                a.fence,
                a.task
            ),
            &request,
        )
    };
    // An interactive task runs on a pseudo-terminal whose other side the relay holds.
    let mut pty_main = None;
    let launched = prepared.and_then(|p| {
        if !a.interactive {
            return launch::launch_limited(&spec, p);
        }
        let (main, tty) = super::terminal::open_pty()
            .map_err(|e| crate::AgentError::io("cannot open a pseudo-terminal", e))?;
        pty_main = Some(main);
        launch::launch_on_terminal(&spec, p, tty)
    });
    let mut task = match launched {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!(job = a.job, task = a.task, "cannot launch: {e}");
            if ctx.report(&a, None) {
                upload(
                    ctx,
                    &a,
                    &format!("haneul agent: cannot launch the task: {e}\n"),
                );
                ctx.report(&a, Some(127));
            }
            return;
        }
    };
    tracing::info!(job = a.job, task = a.task, pid = task.pid(), gpus = ?a.gpus,
        limits = task.limits.as_str(), "task started");
    let record = TaskFile {
        job: a.job,
        fence: a.fence,
        task: a.task,
        pid: task.pid(),
        start_ticks: task.start_ticks().unwrap_or(0),
        started_at_ms: now_ms(),
        limits: task.limits.as_str().to_string(),
        stdout_offset: 0,
        stderr_offset: 0,
        container: task.container_name().map(String::from),
        node: Some(ctx.node),
    };
    // Written before the start is reported: an agent killed after the report finds the task.
    record.save(task.workdir());
    if !ctx.report(&a, None) {
        // Stale or refused: this attempt is not ours to run.
        let _ = task.stop(Duration::ZERO);
        ctx.limits.release(task.prepared());
        TaskFile::remove(task.workdir());
        return;
    }
    let logs = LogStream::new(&task, 0, 0);
    let relay = pty_main.map(|main| {
        super::terminal::Relay::start(
            super::terminal::Target {
                transport: ctx.transport.clone(),
                node: ctx.node,
                job: a.job,
                fence: a.fence,
                task: a.task,
                stop: ctx.stop.clone(),
                backoff: (ctx.timing.backoff_base, ctx.timing.backoff_cap),
            },
            main,
        )
    });
    supervise(ctx, &a, task, &stop, logs, Instant::now(), record, relay);
}

/// Watches a started task until it ends: streams its logs, passes on a stop, enforces the
/// time-limit backstop; then uploads the last output and reports the exit. `started` is when
/// the task started (earlier than now for a task adopted after a restart). An interactive
/// task's `relay` is given the exit status first, so the user sees it before the job ends.
#[allow(clippy::too_many_arguments)]
pub(super) fn supervise(
    ctx: &NodeCtx,
    a: &Assignment,
    mut task: launch::RunningTask,
    stop: &Receiver<Duration>,
    mut logs: LogStream,
    started: Instant,
    mut record: TaskFile,
    relay: Option<super::terminal::Relay>,
) {
    // The sampler attributes the task's GPUs to it while it runs.
    ctx.holders.add(crate::telemetry::Holder {
        job: a.job,
        fence: a.fence,
        task: a.task,
        pgid: task.pgid(),
        gpus: a.gpus.clone(),
    });
    let _held = Held(ctx, a);
    let mut last_stream = Instant::now();
    let mut endpoint = super::endpoint::Publisher::new(task.workdir());
    // The server stops overdue attempts itself (the job then ends `timed_out`); this is the
    // backstop for a server that cannot be reached, a little later so the server's stop wins.
    let limit = a
        .time_limit_s
        .map(|s| Duration::from_secs(s) + TIME_LIMIT_SLACK);
    let grace = Duration::from_secs(a.grace_s);
    let status = loop {
        match task.try_wait() {
            Ok(Some(s)) => {
                // Leave nothing of the group behind.
                let _ = task.stop(Duration::ZERO);
                break Some(s);
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(job = a.job, "waiting for the task: {e}");
                break task.stop(Duration::ZERO).ok();
            }
        }
        if ctx.stopping() {
            let _ = task.stop(grace.min(Duration::from_secs(5)));
            // The node is going away: the server requeues the work when the node is lost;
            // reporting an exit would fail the job for a reason that is not its own. Nothing is
            // left for a restarted agent to adopt.
            ctx.limits.release(task.prepared());
            logs.pump(ctx, a, true);
            TaskFile::remove(task.workdir());
            return;
        }
        if limit.is_some_and(|l| started.elapsed() >= l) {
            tracing::info!(job = a.job, task = a.task, "time limit reached");
            break task.stop(grace).ok();
        }
        if last_stream.elapsed() >= ctx.timing.stream_every {
            logs.pump(ctx, a, false);
            let (out, err) = logs.offsets();
            if (out, err) != (record.stdout_offset, record.stderr_offset) {
                record.stdout_offset = out;
                record.stderr_offset = err;
                record.save(task.workdir());
            }
            endpoint.poll(ctx, a);
            last_stream = Instant::now();
        }
        match stop.recv_timeout(Duration::from_millis(20)) {
            Ok(g) => break task.stop(g).ok(),
            Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => {}
        }
    };
    let code = if task.status_lost() {
        logs.note(LOST_STATUS_NOTE);
        LOST_STATUS_CODE
    } else {
        exit_code(status)
    };
    tracing::info!(job = a.job, task = a.task, code, "task exited");
    if let Some(r) = relay {
        r.finish(code);
    }
    ctx.limits.release(task.prepared());
    logs.pump(ctx, a, true);
    ctx.report(a, Some(code));
    TaskFile::remove(task.workdir());
}

/// Takes a task off the sampler's list however supervision ends.
struct Held<'a>(&'a NodeCtx, &'a Assignment);

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.0.holders.remove(self.1.job, self.1.fence, self.1.task);
    }
}

/// Exit code reported for a task whose status nobody could record (it and its status keeper
/// were killed while the agent was down): as for SIGKILL.
pub(super) const LOST_STATUS_CODE: i64 = 137;
pub(super) const LOST_STATUS_NOTE: &str =
    "[haneul agent: the task ended while the agent was down and its exit status was lost]\n";

pub(super) fn exit_code(status: Option<std::process::ExitStatus>) -> i64 {
    status.map_or(137, |s| {
        use std::os::unix::process::ExitStatusExt;
        s.code()
            .map(i64::from)
            .or_else(|| s.signal().map(|n| 128 + i64::from(n)))
            .unwrap_or(1)
    })
}

/// A node name as part of a cgroup's name: agents of several nodes (or servers) may share a
/// host and its cgroup hierarchy, and job numbers repeat between servers, so a task's cgroup
/// carries its node and agent process too; one agent's clean-up must never kill another's task.
fn cgroup_safe(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assignment(task: i64, peers: &[&str]) -> Assignment {
        Assignment {
            job: 1,
            fence: 1,
            task,
            action: "run".into(),
            stop_reason: None,
            kill_at: None,
            gpus: vec![0],
            milli_per_gpu: 1000,
            command: vec!["true".into()],
            peers: peers.iter().map(|s| s.to_string()).collect(),
            user: 1,
            user_name: "kim".into(),
            project: 1,
            cpu_milli: 0,
            memory_mib: 0,
            time_limit_s: None,
            grace_s: 0,
            container_image: None,
            uid: None,
            gid: None,
            groups: Vec::new(),
            name: "train".into(),
            batch: None,
            array: None,
            interactive: false,
        }
    }

    #[test]
    fn slurm_environment() {
        let mut a = assignment(2, &["gpu002", "gpu001", "gpu002", "gpu004"]);
        a.cpu_milli = 1500;
        a.batch = Some(haneul_api::JobBatch {
            account: Some("kaist-llm".into()),
            submit_dir: Some("/home/kim/run".into()),
            ..Default::default()
        });
        let (_, world, rank, local_rank, node_rank, local_world) = gang(&a, "gpu002");
        let env = crate::slurm::env(
            &a,
            crate::slurm::Place {
                world,
                rank,
                local_rank,
                node_rank,
                local_world,
            },
            "gpu002",
        );
        let get = |k: &str| {
            env.iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.as_str())
                .unwrap_or_else(|| panic!("{k} missing"))
        };
        assert_eq!(get("SLURM_JOB_NODELIST"), "gpu[001-002,004]");
        assert_eq!(get("SLURM_NNODES"), "3");
        assert_eq!(get("SLURM_NTASKS"), "4");
        assert_eq!(get("SLURM_PROCID"), "2");
        assert_eq!(get("SLURM_LOCALID"), "1");
        assert_eq!(get("SLURM_NODEID"), "0");
        assert_eq!(get("SLURM_GPUS_ON_NODE"), "2");
        assert_eq!(get("SLURM_CPUS_PER_TASK"), "2");
        assert_eq!(get("SLURM_JOB_NAME"), "train");
        assert_eq!(get("SLURM_JOB_ACCOUNT"), "kaist-llm");
        assert_eq!(get("SLURM_SUBMIT_DIR"), "/home/kim/run");
        assert!(env.iter().all(|(k, _)| k != "SLURM_JOB_PARTITION"));
        assert!(
            env.iter().all(|(k, _)| !k.contains("ARRAY")),
            "not an array task"
        );
        a.array = Some(haneul_api::ArrayTask {
            job: 40,
            task: 8,
            count: 4,
            min: 0,
            max: 12,
            step: 4,
        });
        let env = crate::slurm::env(
            &a,
            crate::slurm::Place {
                world,
                rank,
                local_rank,
                node_rank,
                local_world,
            },
            "gpu002",
        );
        let get = |k: &str| {
            env.iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.as_str())
                .unwrap_or_else(|| panic!("{k} missing"))
        };
        assert_eq!(get("SLURM_ARRAY_JOB_ID"), "40");
        assert_eq!(get("SLURM_ARRAY_TASK_ID"), "8");
        assert_eq!(get("HANEUL_ARRAY_TASK_ID"), "8");
        assert_eq!(get("SLURM_ARRAY_TASK_COUNT"), "4");
        assert_eq!(get("SLURM_ARRAY_TASK_MIN"), "0");
        assert_eq!(get("SLURM_ARRAY_TASK_MAX"), "12");
        assert_eq!(get("SLURM_ARRAY_TASK_STEP"), "4");
    }

    #[test]
    fn gang_environment() {
        assert_eq!(
            gang(&assignment(0, &["a"]), "a"),
            ("127.0.0.1".into(), 1, 0, 0, 0, 1)
        );
        let peers = ["a", "a", "b", "b"];
        assert_eq!(
            gang(&assignment(3, &peers), "b"),
            ("a".into(), 4, 3, 1, 1, 2)
        );
        assert_eq!(
            gang(&assignment(1, &peers), "a"),
            ("a".into(), 4, 1, 1, 0, 2)
        );
    }
}
