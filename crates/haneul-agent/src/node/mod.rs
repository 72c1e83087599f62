//! The node protocol: what an agent does with the server once its node is set up. It registers
//! the node, heartbeats, long-polls its assignments, runs each assigned task (through
//! [`crate::launch`], as its owner, within its limits, in a container or with MPS when asked),
//! uploads the task's output, reports its start and exit with the attempt's fence, passes on
//! where a task's web server listens ([`endpoint`]), stops tasks
//! on cancellation or preemption, reports the health checks' verdicts, and after an agent
//! restart finds the tasks an earlier agent process started ([`recover`]).
//!
//! Every call to the server goes through a [`Transport`]: [`http::HttpTransport`] in
//! production (several servers, the leader followed, TLS), an in-memory double in the tests.
//! Blocking threads: one polls, one heartbeats, one runs the health checks, one watches each
//! running task, and one relays each interactive task's terminal ([`terminal`]).

mod endpoint;
pub mod http;
mod recover;
mod task;
pub mod terminal;
mod upload;

pub use recover::TaskFile;
pub use terminal::{LinkEvent, TerminalLink};

use crate::container::Runtime;
use crate::identity::TaskUser;
use crate::limits::{LimitBackend, NodeShare};
use crate::sharing::MpsSupervisor;
use crate::{AgentError, Result, gpus, health};
use haneul_api::{
    AgentRegister, Assignment, AssignmentList, HealthReport, HeartbeatAck, LogUpload, TaskEndpoint,
    TaskReport, TelemetryBatch,
};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::{self, Sender};
use std::time::{Duration, Instant};

/// The calls an agent makes to the server. Errors are [`AgentError::Transient`] (retried with
/// backoff) or [`AgentError::Refused`] (given up at once).
pub trait Transport: Send + Sync {
    /// Registers the node (idempotent by name); the node's id.
    fn register(&self, node: &AgentRegister) -> Result<i64>;
    fn heartbeat(&self, node: i64) -> Result<HeartbeatAck>;
    /// The node's assignments; with `etag`, waits up to `wait_ms` for them to change, or until
    /// `stop` says so (then an [`AgentError::Transient`] error). The HTTP transport gives the
    /// wait up as well when another call moves it to another server.
    fn assignments(
        &self,
        node: i64,
        wait_ms: u64,
        etag: Option<&str>,
        stop: &Stop,
    ) -> Result<AssignmentList>;
    /// A task's start (`exit_code` none) or exit.
    fn report(&self, node: i64, report: &TaskReport) -> Result<()>;
    /// A piece of a task's output.
    fn upload_log(&self, node: i64, log: &LogUpload) -> Result<()>;
    /// The health checks' verdict; the node's state afterwards.
    fn health(&self, node: i64, report: &HealthReport) -> Result<String>;
    /// GPU samples and task CPU times taken since the last call.
    fn telemetry(&self, _node: i64, _batch: &TelemetryBatch) -> Result<()> {
        Ok(())
    }
    /// Where a running task's web server listens (docs/jupyter.md).
    fn endpoint(&self, _node: i64, _endpoint: &TaskEndpoint) -> Result<()> {
        Ok(())
    }
    /// The server the calls go to now, for the logs.
    fn server(&self) -> String {
        String::new()
    }
    /// Opens the terminal connection of interactive task `task` of `job`'s attempt `fence`
    /// (docs/interactive.md).
    fn terminal(
        &self,
        _node: i64,
        _job: i64,
        _fence: i64,
        _task: i64,
    ) -> Result<Box<dyn TerminalLink>> {
        Err(AgentError::Refused {
            status: 0,
            message: "this transport carries no terminals".into(),
        })
    }
}

/// Asked often; true once the agent must stop (SIGINT/SIGTERM in the binary).
pub type Stop = Arc<dyn Fn() -> bool + Send + Sync>;

/// Everything the loop needs about the node, set up by the caller (the `haneul agent` command
/// or a test).
pub struct Setup {
    pub transport: Arc<dyn Transport>,
    /// What is registered; `name` is the node's name.
    pub register: AgentRegister,
    /// How the gang's peers list this node: its advertised address, else its name.
    pub me: String,
    /// Task directories go to `work_dir/job-J/attempt-F/task-T`.
    pub work_dir: PathBuf,
    pub limits: Box<dyn LimitBackend>,
    /// Whose account tasks run as.
    pub task_user: TaskUser,
    /// The agent's own uid: no task runs as it.
    pub euid: u32,
    /// The MPS control daemons of shared GPUs (real GPUs with the MPS control program only).
    pub mps: Option<MpsSupervisor>,
    /// The container runtime for jobs with an image; `None`: such jobs fail here.
    pub containers: Option<Runtime>,
    /// Whether the GPUs are real (handed to containers) or simulated.
    pub real_gpus: bool,
    /// The node's GPUs, to name them to CUDA (MIG instances by UUID).
    pub inventory: Vec<gpus::Gpu>,
    /// The node's health checks and how often they run.
    pub health: health::NodeHealth,
    pub health_every: Duration,
    pub timing: Timing,
    pub stop: Stop,
}

/// The protocol's pace.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// The long poll's wait on the server. A stop cuts it short, so it can be long: each poll
    /// answered unchanged is a request the server serves for nothing, and at 2 s the polls of
    /// 1,250 idle nodes took a fifth of a core (docs/benchmarks.md, "The real agent polls
    /// every 2 s").
    pub poll_wait: Duration,
    /// Retries of failed calls: exponential backoff with full jitter between these.
    pub backoff_base: Duration,
    pub backoff_cap: Duration,
    /// How often new output of a running task is uploaded.
    pub stream_every: Duration,
    /// How often every held GPU is sampled and the samples sent (`--telemetry-interval`).
    pub telemetry_every: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            poll_wait: Duration::from_secs(30),
            backoff_base: Duration::from_millis(100),
            backoff_cap: Duration::from_secs(5),
            stream_every: Duration::from_secs(1),
            telemetry_every: Duration::from_secs(10),
        }
    }
}

/// How long past its time limit a task may run before the agent stops it by itself.
const TIME_LIMIT_SLACK: Duration = Duration::from_secs(3);
/// Tries of one call before it is given up (about two minutes at the default backoff).
const MAX_TRIES: u32 = 30;

/// What every task thread shares.
pub(crate) struct NodeCtx {
    transport: Arc<dyn Transport>,
    node: i64,
    name: String,
    me: String,
    work_dir: PathBuf,
    limits: Box<dyn LimitBackend>,
    /// What the node has, to fill in the limits of tasks that asked for none.
    share: NodeShare,
    gpu_memory_mib: u64,
    task_user: TaskUser,
    euid: u32,
    mps: Option<MpsSupervisor>,
    containers: Option<Runtime>,
    real_gpus: bool,
    inventory: Vec<gpus::Gpu>,
    timing: Timing,
    stop: Stop,
    /// The running tasks' GPUs, for the telemetry sampler.
    holders: Arc<crate::telemetry::Holders>,
}

impl NodeCtx {
    fn stopping(&self) -> bool {
        (self.stop)()
    }

    fn backoff(&self) -> haneul_client::Backoff {
        haneul_client::Backoff::new(self.timing.backoff_base, self.timing.backoff_cap)
    }

    /// Retries transient failures with backoff (at most [`MAX_TRIES`], a few once the agent
    /// is stopping); a refusal ends at once.
    fn retrying<T>(&self, what: &str, f: impl FnMut() -> Result<T>) -> Result<T> {
        retrying(what, self.backoff(), &self.stop, f)
    }

    /// Reports a start (`exit_code` None) or an exit. Returns whether the server accepted it;
    /// a refusal (409: stale fence) is logged and dropped.
    fn report(&self, a: &Assignment, exit_code: Option<i64>) -> bool {
        let body = TaskReport {
            job: a.job,
            fence: a.fence,
            task: a.task,
            exit_code,
        };
        match self.retrying("report", || self.transport.report(self.node, &body)) {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(
                    job = a.job,
                    fence = a.fence,
                    task = a.task,
                    ?exit_code,
                    "report dropped: {e}"
                );
                false
            }
        }
    }

    fn task_dir(&self, a: &Assignment) -> PathBuf {
        self.work_dir
            .join(format!("job-{}", a.job))
            .join(format!("attempt-{}", a.fence))
            .join(format!("task-{}", a.task))
    }
}

fn retrying<T>(
    what: &str,
    mut backoff: haneul_client::Backoff,
    stop: &Stop,
    mut f: impl FnMut() -> Result<T>,
) -> Result<T> {
    let mut tries = 0;
    loop {
        match f() {
            Ok(v) => return Ok(v),
            Err(AgentError::Transient(m)) if tries < MAX_TRIES && !(stop() && tries >= 3) => {
                tracing::warn!("{what}: {m}; retrying");
                tries += 1;
                std::thread::sleep(backoff.next_wait());
            }
            Err(e) => return Err(e),
        }
    }
}

/// A task the loop knows of, by (job, task, fence).
struct Running {
    stop: Sender<Duration>,
    handle: Option<std::thread::JoinHandle<()>>,
    stop_sent: bool,
    grace: Duration,
}

/// Registers the node and runs the protocol until `setup.stop` says so; then stops the running
/// tasks (the server requeues their work when the node is lost) and returns.
pub fn run(setup: Setup) -> Result<()> {
    let Setup {
        transport,
        register: reg,
        me,
        work_dir,
        limits,
        task_user,
        euid,
        mps,
        containers,
        real_gpus,
        inventory,
        health,
        health_every,
        timing,
        stop,
    } = setup;
    let backoff = haneul_client::Backoff::new(timing.backoff_base, timing.backoff_cap);
    let name = reg.name.clone();
    let node = retrying("register", backoff, &stop, || transport.register(&reg))
        .map_err(|e| AgentError::Join(format!("cannot register node {name}: {e}")))?;
    tracing::info!(
        node,
        %name,
        gpus = reg.gpus,
        model = %reg.gpu_model,
        server = %transport.server(),
        nvlink_domain = ?reg.nvlink_domain,
        "registered"
    );
    let beat = retrying("heartbeat", backoff, &stop, || transport.heartbeat(node))
        .map_err(|e| AgentError::Join(format!("first heartbeat refused: {e}")))?;
    let interval = Duration::from_millis(beat.interval_ms.max(100) as u64);
    // Read here, before any other thread can move the transport: a thread that read it when it
    // started could take a move made meanwhile for the server its first heartbeat reached.
    let reached = transport.server();
    let hb = {
        let (transport, stop) = (transport.clone(), stop.clone());
        std::thread::spawn(move || heartbeats(&*transport, node, interval, reached, timing, &stop))
    };
    let health = {
        let (transport, stop) = (transport.clone(), stop.clone());
        std::thread::spawn(move || health_loop(&*transport, node, health, health_every, &stop))
    };
    let holders = Arc::new(crate::telemetry::Holders::default());
    let sampler = {
        let reader: Box<dyn crate::telemetry::GpuReader> = if real_gpus {
            match crate::telemetry::NvmlReader::open(std::ffi::OsStr::new(gpus::NVML_LIBRARY)) {
                Ok(r) => Box::new(r),
                Err(e) => {
                    tracing::warn!("GPU telemetry off: {e}");
                    Box::new(NoReader)
                }
            }
        } else {
            Box::new(crate::telemetry::SimulatedReader::new(&inventory))
        };
        let (transport, stop, holders) = (transport.clone(), stop.clone(), holders.clone());
        std::thread::spawn(move || {
            telemetry_loop(
                &*transport,
                node,
                reader,
                &holders,
                timing.telemetry_every,
                &stop,
            )
        })
    };
    let ctx = Arc::new(NodeCtx {
        transport: transport.clone(),
        node,
        name,
        me,
        work_dir,
        limits,
        share: NodeShare {
            cpu_milli: reg.cpu_milli.max(0) as u64,
            memory_mib: reg.memory_mib.max(0) as u64,
            gpus: inventory.len() as u64,
        },
        gpu_memory_mib: reg.gpu_memory_mib.max(0) as u64,
        task_user,
        euid,
        mps,
        containers,
        real_gpus,
        inventory,
        timing,
        stop,
        holders,
    });
    // Ordered by key: nothing below depends on a hash map's order.
    let mut tasks: BTreeMap<(i64, i64, i64), Running> = BTreeMap::new();
    // Tasks an earlier agent process started here: reattach, report or clean up.
    let first = ctx
        .retrying("assignments", || {
            ctx.transport.assignments(node, 0, None, &ctx.stop)
        })
        .map_err(|e| AgentError::Join(format!("cannot read the node's assignments: {e}")))?;
    tasks.extend(recover::recover(&ctx, &first.assignments));
    let mut etag = String::new();
    let mut backoff = ctx.backoff();
    let wait_ms = timing.poll_wait.as_millis() as u64;
    while !ctx.stopping() {
        let tag = if etag.is_empty() { "none" } else { &etag };
        let list = match ctx
            .transport
            .assignments(node, wait_ms, Some(tag), &ctx.stop)
        {
            Ok(l) => {
                backoff.reset();
                l
            }
            Err(_) if ctx.stopping() => break,
            Err(e) => {
                tracing::warn!("polling assignments: {e}");
                std::thread::sleep(backoff.next_wait());
                continue;
            }
        };
        etag = list.etag.clone();
        apply(&ctx, &mut tasks, list);
    }
    tracing::info!("stopping running tasks");
    for r in tasks.values_mut() {
        let _ = r.stop.send(Duration::from_secs(5));
    }
    for (_, r) in tasks {
        if let Some(h) = r.handle {
            let _ = h.join();
        }
    }
    let _ = hb.join();
    let _ = health.join();
    let _ = sampler.join();
    if let Some(m) = &ctx.mps {
        m.shutdown(Duration::from_secs(5));
    }
    tracing::info!("agent stopped");
    Ok(())
}

/// Brings the running tasks in line with the server's list: starts new ones, passes on stops,
/// and stops those whose attempt the server ended.
fn apply(ctx: &Arc<NodeCtx>, tasks: &mut BTreeMap<(i64, i64, i64), Running>, list: AssignmentList) {
    // Forget finished tasks that are no longer assigned. A running one that is no longer
    // assigned had its attempt ended by the server (node drained as unhealthy, or declared
    // lost while cut off): stop it, its job runs again elsewhere.
    tasks.retain(|k, r| {
        let listed = list
            .assignments
            .iter()
            .any(|a| (a.job, a.task, a.fence) == *k);
        let running = !r.handle.as_ref().is_none_or(|h| h.is_finished());
        if !listed && running && !r.stop_sent {
            tracing::info!(
                job = k.0,
                task = k.1,
                fence = k.2,
                "attempt ended by the server: stopping its task"
            );
            let _ = r.stop.send(r.grace);
            r.stop_sent = true;
        }
        listed || running
    });
    for a in list.assignments {
        let key = (a.job, a.task, a.fence);
        match a.action.as_str() {
            "run" => {
                if tasks.contains_key(&key) {
                    continue;
                }
                let (tx, rx) = mpsc::channel();
                let ctx = ctx.clone();
                let grace = Duration::from_secs(a.grace_s);
                let handle = std::thread::spawn(move || task::run_task(&ctx, a, rx));
                tasks.insert(
                    key,
                    Running {
                        stop: tx,
                        handle: Some(handle),
                        stop_sent: false,
                        grace,
                    },
                );
            }
            "stop" => {
                let grace = a.kill_at.map_or(Duration::from_secs(a.grace_s), |at| {
                    Duration::from_millis((at - now_ms()).max(0) as u64)
                });
                match tasks.get_mut(&key) {
                    Some(r) if !r.stop_sent => {
                        tracing::info!(job = a.job, task = a.task, reason = ?a.stop_reason, "stopping task");
                        let _ = r.stop.send(grace);
                        r.stop_sent = true;
                    }
                    Some(_) => {}
                    None => {
                        // Not running here (never started, or the agent restarted): say it
                        // has ended, once.
                        tracing::info!(
                            job = a.job,
                            task = a.task,
                            "stop for a task not running here"
                        );
                        let (tx, _) = mpsc::channel();
                        tasks.insert(
                            key,
                            Running {
                                stop: tx,
                                handle: None,
                                stop_sent: true,
                                grace: Duration::ZERO,
                            },
                        );
                        ctx.report(&a, Some(143));
                    }
                }
            }
            other => tracing::warn!(job = a.job, "unknown action {other:?}"),
        }
    }
}

/// Heartbeats every `interval`. A failed heartbeat is tried again after a backoff shorter than
/// the interval, and a move to another server (the poll met a connection error, or a standby
/// named the leader) heartbeats there at once: a node is back on a new leader as soon as its
/// poll is, not an interval later.
fn heartbeats(
    transport: &dyn Transport,
    node: i64,
    interval: Duration,
    mut reached: String,
    timing: Timing,
    stop: &Stop,
) {
    let mut backoff = haneul_client::Backoff::new(timing.backoff_base, timing.backoff_cap);
    let mut next = Instant::now() + interval;
    // `reached`: where the last heartbeat got through; `ok`: whether the last one did.
    let mut ok = true;
    while !stop() {
        let moved = ok && transport.server() != reached;
        if Instant::now() < next && !moved {
            std::thread::sleep(Duration::from_millis(50).min(next - Instant::now()));
            continue;
        }
        let sent_to = transport.server();
        match transport.heartbeat(node) {
            Ok(_) => {
                ok = true;
                backoff.reset();
                // The poll may have moved the transport while this heartbeat was on its way to
                // the old server: only a server that stayed the same is known to be reached;
                // otherwise the next turn heartbeats the new one at once (at worst once more).
                let now_at = transport.server();
                reached = if now_at == sent_to { now_at } else { sent_to };
                next = Instant::now() + interval;
            }
            Err(e) => {
                tracing::warn!("heartbeat: {e}");
                ok = false;
                next = Instant::now() + backoff.next_wait().min(interval);
            }
        }
    }
}

/// Telemetry when the GPUs cannot be read.
struct NoReader;

impl crate::telemetry::GpuReader for NoReader {
    fn read(&mut self, _: &[crate::telemetry::Holder], _: i64) -> crate::telemetry::Reading {
        crate::telemetry::Reading::default()
    }
}

/// Samples the held GPUs every `every` and sends what was taken; what cannot be sent waits
/// (bounded) for the next interval.
fn telemetry_loop(
    transport: &dyn Transport,
    node: i64,
    mut reader: Box<dyn crate::telemetry::GpuReader>,
    holders: &crate::telemetry::Holders,
    every: Duration,
    stop: &Stop,
) {
    let mut outbox = crate::telemetry::Outbox::default();
    let mut next = Instant::now() + every;
    while !stop() {
        if Instant::now() < next {
            std::thread::sleep(Duration::from_millis(50).min(next - Instant::now()));
            continue;
        }
        next = Instant::now() + every;
        let held = holders.list();
        outbox.push(reader.read(&held, now_ms()));
        while !outbox.is_empty() && !stop() {
            let batch = outbox.peek(1024);
            let n = batch.samples.len();
            match transport.telemetry(node, &batch) {
                Ok(()) => outbox.sent(n),
                // A refused batch would be refused again: drop it.
                Err(AgentError::Refused { status, message }) => {
                    tracing::warn!(status, "telemetry refused: {message}");
                    outbox.sent(n);
                }
                Err(e) => {
                    tracing::debug!("telemetry: {e}; kept for the next interval");
                    break;
                }
            }
        }
    }
}

/// Runs the health checks every interval, and at once when a fatal XID event arrives, and
/// tells the server when the verdict changes (and once at start, so a verdict from before a
/// restart does not linger).
fn health_loop(
    transport: &dyn Transport,
    node: i64,
    mut checks: health::NodeHealth,
    every: Duration,
    stop: &Stop,
) {
    if checks.is_empty() {
        return;
    }
    // A check may take at most the interval (at most 30 s), so checks never pile up.
    let timeout = every.min(Duration::from_secs(30));
    let log = |events: &health::Polled| {
        events.xids.iter().for_each(|x| tracing::warn!("{x}"));
        events.notes.iter().for_each(|n| tracing::info!("{n}"));
    };
    let mut told: Option<Option<String>> = None;
    let mut next = Instant::now();
    while !stop() {
        let events = checks.poll_events();
        log(&events);
        if Instant::now() < next && !events.fatal {
            std::thread::sleep(Duration::from_millis(100).min(next - Instant::now()));
            continue;
        }
        next = Instant::now() + every;
        let verdict = checks.check(timeout);
        log(&verdict.events);
        let failure = verdict.failure;
        if told.as_ref() == Some(&failure) {
            continue;
        }
        match &failure {
            Some(f) => tracing::warn!("health check failed: {f}"),
            None => tracing::info!("health checks pass"),
        }
        let body = HealthReport {
            failure: failure.clone(),
        };
        match transport.health(node, &body) {
            Ok(state) => {
                tracing::info!(%state, "health reported");
                told = Some(failure);
            }
            // Told again at the next check.
            Err(e) => tracing::warn!("health report: {e}"),
        }
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
