//! What survives an agent restart: a record of each started task beside its directory, and
//! the recovery that reattaches to the tasks still running, reports those that ended while
//! the agent was down, and stops those the server no longer assigns here.

use super::task::{LOST_STATUS_CODE, LOST_STATUS_NOTE, exit_code, supervise};
use super::upload::LogStream;
use super::{NodeCtx, Running, now_ms};
use crate::container;
use crate::launch;
use crate::limits as task_limits;
use haneul_api::Assignment;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// What the agent keeps about a started task beside its directory (`.task-T.haneul-task.json`
/// in the attempt's directory, which the agent owns: the task's own directory is its owner's,
/// who must not be able to point the agent at another process), so that a
/// restarted agent can find it again: the pid with its start time (which tells the task's
/// process from a later one with the same pid) and how much of its output was uploaded.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct TaskFile {
    pub job: i64,
    pub fence: i64,
    pub task: i64,
    pub pid: i32,
    pub start_ticks: u64,
    pub started_at_ms: i64,
    pub limits: String,
    pub stdout_offset: u64,
    pub stderr_offset: u64,
    /// The task's podman container, when it runs in one.
    #[serde(default)]
    pub container: Option<String>,
    /// The node the task was started for. Two agents given the same work directory (two
    /// nodes on one machine, or a mistake) must not take each other's tasks for their own:
    /// a starting agent stopped every recorded task its server did not assign to it, and so
    /// killed the other node's running tasks. Absent in records of agents before it: those
    /// are taken as this node's, as they always were.
    #[serde(default)]
    pub node: Option<i64>,
}

const TASK_FILE: &str = ".haneul-task.json";

impl TaskFile {
    /// Written to a temporary file and renamed, so a crash never leaves half a record.
    pub fn save(&self, dir: &std::path::Path) {
        let path = Self::path(dir);
        let tmp = path.with_extension("json.tmp");
        let ok = serde_json::to_vec(self)
            .map_err(std::io::Error::other)
            .and_then(|b| std::fs::write(&tmp, b))
            .and_then(|()| std::fs::rename(&tmp, &path));
        if let Err(e) = ok {
            tracing::warn!(
                job = self.job,
                task = self.task,
                "cannot save {TASK_FILE}: {e}"
            );
        }
    }

    pub fn remove(dir: &std::path::Path) {
        let _ = std::fs::remove_file(Self::path(dir));
    }

    /// The record of the task whose directory is `dir`.
    fn path(dir: &std::path::Path) -> PathBuf {
        let name = dir.file_name().unwrap_or_default().to_string_lossy();
        dir.parent()
            .unwrap_or(dir)
            .join(format!(".{name}{TASK_FILE}"))
    }

    /// Every task record under the work directory (`job-*/attempt-*/task-*`).
    fn find_all(work_dir: &std::path::Path) -> Vec<(PathBuf, TaskFile)> {
        let mut out = Vec::new();
        let dirs = |d: &std::path::Path, prefix: &str| -> Vec<PathBuf> {
            let mut v: Vec<PathBuf> = std::fs::read_dir(d)
                .into_iter()
                .flatten()
                .filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().starts_with(prefix))
                .map(|e| e.path())
                .collect();
            v.sort();
            v
        };
        for job in dirs(work_dir, "job-") {
            for attempt in dirs(&job, "attempt-") {
                for task in dirs(&attempt, "task-") {
                    let Ok(text) = std::fs::read(Self::path(&task)) else {
                        continue;
                    };
                    match serde_json::from_slice::<TaskFile>(&text) {
                        Ok(r) => out.push((task, r)),
                        Err(e) => {
                            tracing::warn!("ignoring {}: {e}", Self::path(&task).display())
                        }
                    }
                }
            }
        }
        out
    }
}

/// After a restart: finds the tasks an earlier agent process started (their records under the
/// work directory) and, given the server's current assignments, reattaches to those still
/// running and assigned, reports the exit of those that ended meanwhile, and stops and forgets
/// those the server no longer assigns here. Returns the reattached and reporting tasks, for the
/// main loop's table.
pub(super) fn recover(
    ctx: &Arc<NodeCtx>,
    assigned: &[Assignment],
) -> Vec<((i64, i64, i64), Running)> {
    let mut out = Vec::new();
    // Reattached tasks, whose containers stay.
    let mut kept = Vec::new();
    for (dir, rec) in TaskFile::find_all(&ctx.work_dir) {
        if rec.node.is_some_and(|n| n != ctx.node) {
            tracing::debug!(
                job = rec.job,
                task = rec.task,
                node = rec.node,
                "leaving another node's task alone"
            );
            continue;
        }
        let key = (rec.job, rec.task, rec.fence);
        let assignment = assigned
            .iter()
            .find(|a| (a.job, a.task, a.fence) == key)
            .cloned();
        let mechanism = match rec.limits.as_str() {
            "cgroup-v2" => task_limits::LimitMechanism::CgroupV2,
            "cgroup-v1" => task_limits::LimitMechanism::CgroupV1,
            "rlimit" => task_limits::LimitMechanism::Rlimit,
            "container" => task_limits::LimitMechanism::Container,
            _ => task_limits::LimitMechanism::None,
        };
        let adopted = launch::adopt(rec.pid, rec.start_ticks, &dir, mechanism).map(|t| {
            match (&ctx.containers, &rec.container) {
                (Some(rt), Some(name)) => t.with_container(rt.clone(), name.clone()),
                _ => t,
            }
        });
        let Some(a) = assignment else {
            // The server ended this attempt while the agent was away (or it was fenced off).
            if let Some(mut t) = adopted {
                tracing::info!(
                    job = rec.job,
                    task = rec.task,
                    pid = rec.pid,
                    "stopping a task the server no longer assigns here"
                );
                let _ = t.stop(Duration::from_secs(5));
            }
            TaskFile::remove(&dir);
            continue;
        };
        let (tx, rx) = mpsc::channel();
        let grace = Duration::from_secs(a.grace_s);
        let ctx2 = ctx.clone();
        let handle = match adopted {
            Some(task) => {
                tracing::info!(
                    job = rec.job,
                    task = rec.task,
                    pid = rec.pid,
                    "reattached to a running task"
                );
                kept.push((rec.job, rec.fence, rec.task));
                let age = Duration::from_millis((now_ms() - rec.started_at_ms).max(0) as u64);
                let started = Instant::now().checked_sub(age).unwrap_or_else(Instant::now);
                std::thread::spawn(move || {
                    // Idempotent: the server may not have got the first one.
                    if !ctx2.report(&a, None) {
                        let mut task = task;
                        let _ = task.stop(Duration::ZERO);
                        TaskFile::remove(task.workdir());
                        return;
                    }
                    let logs = LogStream::new(&task, rec.stdout_offset, rec.stderr_offset);
                    // An adopted task's terminal died with the agent that held it.
                    supervise(&ctx2, &a, task, &rx, logs, started, rec, None);
                })
            }
            None => {
                let status = launch::read_exit_file(&dir);
                tracing::info!(
                    job = rec.job,
                    task = rec.task,
                    ?status,
                    "a task ended while the agent was down"
                );
                std::thread::spawn(move || {
                    let mut logs = LogStream::at(&dir, rec.stdout_offset, rec.stderr_offset);
                    let code = match status {
                        Some(s) => exit_code(Some(s)),
                        None => {
                            logs.note(LOST_STATUS_NOTE);
                            LOST_STATUS_CODE
                        }
                    };
                    // A task that was meant to be stopped (cancel, preemption) stopped.
                    ctx2.report(&a, None);
                    logs.pump(&ctx2, &a, true);
                    ctx2.report(&a, Some(code));
                    TaskFile::remove(&dir);
                    drop(rx);
                })
            }
        };
        out.push((
            key,
            Running {
                stop: tx,
                handle: Some(handle),
                stop_sent: false,
                grace,
            },
        ));
    }
    remove_stray_containers(ctx, &kept);
    out
}

/// Removes the containers of this node's tasks that no reattached task owns: left by an
/// agent that died before removing them, or whose task's record is gone.
fn remove_stray_containers(ctx: &NodeCtx, kept: &[(i64, i64, i64)]) {
    let Some(rt) = &ctx.containers else {
        return;
    };
    let names = match container::list(rt, &ctx.name) {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!("cannot list this node's containers: {e}");
            return;
        }
    };
    for name in names {
        if container::parse_task_name(&name).is_some_and(|k| kept.contains(&k)) {
            continue;
        }
        tracing::info!(container = %name, "removing a container no task of this agent owns");
        if let Err(e) = container::remove(rt, &name) {
            tracing::warn!("{e}");
        }
    }
}
