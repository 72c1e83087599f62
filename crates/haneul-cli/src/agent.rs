//! `haneul agent`: the node agent. It registers this node's GPUs with a server, heartbeats,
//! long-polls its assignments, runs each assigned task as a process group (through the
//! `haneul-agent` library), uploads the task's output and reports its start and exit with the
//! attempt's fence. Blocking threads over the one client (`haneul-client`, whose blocking form
//! shares one connection pool): one thread polls, one heartbeats, one watches each running
//! task.

use anyhow::{Context, bail};
use clap::Args;
use haneul_agent::container::{self, Runtime};
use haneul_agent::identity::{self, TaskUser};
use haneul_agent::launch::{self, ContainerSpec, Limits, TaskSpec};
use haneul_agent::limits::{self as task_limits, LimitBackend, ResourceRequest};
use haneul_agent::logs::Follower;
use haneul_agent::sharing::{self, MpsSupervisor};
use haneul_agent::{gpus, health, nvml, xid};
use haneul_api::{
    AgentRegister, Assignment, AssignmentList, HealthReport, HeartbeatAck, LogUpload, TaskReport,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

#[derive(Args)]
#[command(after_help = "Examples:\n  \
    haneul agent --server https://10.0.0.1:8470 --ca-file /etc/haneul/ca.pem --token-file /etc/haneul/agent.token\n  \
    haneul agent --server https://ctl-a:8470,https://ctl-b:8470 --token-file /etc/haneul/agent.token\n  \
    haneul agent --server http://127.0.0.1:8470 --token hn_... --simulate-gpus 8xH200")]
pub struct AgentArgs {
    /// The server's base URL (http://HOST:PORT or https://HOST:PORT); several servers of one
    /// centre comma-separated (the agent uses one at a time, moves on when it cannot reach it,
    /// and follows a standby to the leader).
    #[arg(long, env = "HANEUL_SERVER")]
    server: String,
    /// The CA certificate (PEM) that signed the servers' certificates, instead of the public
    /// roots.
    #[arg(long, env = "HANEUL_CA_FILE")]
    ca_file: Option<PathBuf>,
    /// An `agent` token.
    #[arg(long, env = "HANEUL_TOKEN", conflicts_with = "token_file")]
    token: Option<String>,
    /// A file holding the `agent` token.
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// The node's name (default: the host name).
    #[arg(long)]
    name: Option<String>,
    /// Simulated GPUs, COUNTxMODEL (e.g. 8xH200), for machines without GPUs: tasks get the
    /// indices in CUDA_VISIBLE_DEVICES but no real GPU.
    #[arg(long)]
    simulate_gpus: Option<String>,
    /// Where task working directories go: DIR/job-J/attempt-F/task-T.
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// The pool the node belongs to.
    #[arg(long, default_value = "default")]
    pool: String,
    /// The node's block (network locality group) within its pool.
    #[arg(long, default_value = "default")]
    block: String,
    /// A cgroup v2 directory delegated to the agent (cpu and memory enabled in its
    /// cgroup.subtree_control) for the tasks' cgroups. Default: the agent's own cgroup, when
    /// cgroup v2 there offers cpu and memory; else limits fall back to rlimits.
    #[arg(long)]
    cgroup_parent: Option<PathBuf>,
    /// The address other nodes reach this node's tasks at (MASTER_ADDR for a gang whose rank 0
    /// runs here). Default: the node's name, resolved by the peers.
    #[arg(long)]
    advertise_addr: Option<String>,
    /// Whose account tasks run as: `auto` (`owner` when the agent is root, else `agent`),
    /// `owner` (the job owner's uid, gid and project group from the server; needs root),
    /// `agent` (the agent's own, for an agent that is not root: every task shares it) or
    /// `submitter` (the Unix account named like the job's user; needs root).
    #[arg(long, default_value = "auto", value_parser = ["auto", "owner", "agent", "submitter"])]
    task_user: String,
    /// With --task-user submitter, the account for a user with no Unix account of that name;
    /// `none` refuses such tasks (they fail with a message saying why).
    #[arg(long, default_value = "nobody")]
    fallback_user: String,
    /// A shell command run every --health-interval; a non-zero exit (or running past the
    /// interval) marks the node unhealthy: the server drains it and requeues its jobs.
    #[arg(long)]
    health_command: Option<String>,
    /// Seconds between health checks.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    health_interval: u64,
    /// A GPU at this temperature (Celsius) or hotter fails the health check (real GPUs only).
    #[arg(long, default_value_t = 90)]
    max_gpu_temp: u32,
    /// For tests and drills only, with --simulate-gpus: XID events to act on as if NVML had
    /// sent them, one `GPU XID` line each (e.g. `1 79`) appended to this file.
    #[arg(long, hide = true, requires = "simulate_gpus")]
    xid_events_file: Option<PathBuf>,
    #[command(flatten)]
    containers: ContainerArgs,
}

/// How jobs with a container image run; shared by `haneul agent` and `haneul up`.
#[derive(Args, Clone, Debug)]
pub struct ContainerArgs {
    /// Container runtime for jobs with a container image: auto (podman on PATH, else
    /// apptainer, else none), podman, apptainer or none (such jobs then fail here).
    #[arg(long, default_value = "auto", value_parser = ["auto", "podman", "apptainer", "none"])]
    container_runtime: String,
    /// An argument of the runtime itself, before `run` (repeatable), e.g.
    /// --container-runtime-arg=--runtime=runc --container-runtime-arg=--cgroup-manager=cgroupfs.
    #[arg(long, value_name = "ARG", allow_hyphen_values = true)]
    container_runtime_arg: Vec<String>,
    /// An argument of every container run, before the image (repeatable), e.g.
    /// --container-run-arg=--ulimit=nofile=1024:1024.
    #[arg(long, value_name = "ARG", allow_hyphen_values = true)]
    container_run_arg: Vec<String>,
}

impl ContainerArgs {
    /// The same choice as `haneul agent` flags, for `haneul up` to pass on.
    pub fn to_flags(&self) -> Vec<String> {
        let mut out = vec![format!("--container-runtime={}", self.container_runtime)];
        out.extend(
            self.container_runtime_arg
                .iter()
                .map(|a| format!("--container-runtime-arg={a}")),
        );
        out.extend(
            self.container_run_arg
                .iter()
                .map(|a| format!("--container-run-arg={a}")),
        );
        out
    }

    /// The runtime chosen, looked up on PATH; `None` when there is none.
    fn runtime(&self) -> anyhow::Result<Option<Runtime>> {
        let path = std::env::var_os("PATH");
        Ok(
            container::choose(&self.container_runtime, path.as_deref())?.map(|(kind, program)| {
                Runtime {
                    kind,
                    program,
                    global_args: self.container_runtime_arg.clone(),
                    run_args: self.container_run_arg.clone(),
                }
            }),
        )
    }
}

/// Set by SIGINT/SIGTERM.
static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

fn stopping() -> bool {
    STOP.load(Ordering::SeqCst)
}

/// Largest log upload the server takes is 256 KiB; stay well below.
const LOG_CHUNK: usize = 128 * 1024;
/// At a task's end, how much of what was not streamed yet is uploaded, per file.
const LOG_TAIL: u64 = 1024 * 1024;
/// How often new output of a running task is uploaded.
const STREAM_EVERY: Duration = Duration::from_secs(1);
/// Most bytes streamed per file per tick, so a chatty task cannot monopolise its thread.
const STREAM_TICK_MAX: usize = 1024 * 1024;
/// Most bytes streamed per task while it runs; past this only the tail is uploaded at its end
/// (the files stay whole in the task's directory on the node).
const STREAM_MAX_TOTAL: u64 = 64 * 1024 * 1024;
/// How long past its time limit a task may run before the agent stops it by itself.
const TIME_LIMIT_SLACK: Duration = Duration::from_secs(3);
/// Long-poll wait; short enough that a signal is noticed quickly.
const POLL_WAIT_MS: u64 = 2000;

pub fn run(args: AgentArgs) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let token = match (&args.token, &args.token_file) {
        (Some(t), _) => t.trim().to_string(),
        (None, Some(p)) => std::fs::read_to_string(p)
            .with_context(|| format!("cannot read --token-file {}", p.display()))?
            .trim()
            .to_string(),
        (None, None) => bail!("give the agent token with --token or --token-file"),
    };
    if token.is_empty() {
        bail!("the agent token is empty");
    }
    let client = Client::with_ca(&args.server, token, args.ca_file.clone())?;
    let discovered = match &args.simulate_gpus {
        Some(v) => gpus::Inventory {
            gpus: gpus::parse_simulated(v)?,
            note: Some(format!("simulated: --simulate-gpus {v}")),
            source: gpus::Source::Simulated,
            nvlink_domain: None,
        },
        None => {
            let inv = gpus::discover();
            if inv.gpus.is_empty() {
                bail!(
                    "no GPUs found ({}); on a machine without GPUs pass --simulate-gpus COUNTxMODEL, \
                     e.g. --simulate-gpus 8xH200",
                    inv.note.unwrap_or_default()
                );
            }
            inv
        }
    };
    let inventory = &discovered.gpus;
    // The agent's own files (task records, MPS directories) are its own; task directories and
    // logs get their modes explicitly.
    // SAFETY: umask has no preconditions.
    unsafe {
        libc::umask(0o077);
    }
    let euid = identity::euid();
    let task_user = identity::choose(&args.task_user, &args.fallback_user, euid)?;
    match &task_user {
        TaskUser::Agent => tracing::warn!("{}", identity::shared_account_warning(euid)),
        TaskUser::Owner => tracing::info!("tasks run as their owners' uids from the server"),
        TaskUser::Submitter { .. } => {
            tracing::info!("tasks run as the Unix accounts named like their users")
        }
    }
    if matches!(task_user, TaskUser::Submitter { .. })
        && args.fallback_user != "none"
        && launch::lookup_user(&args.fallback_user).is_none()
    {
        bail!(
            "--fallback-user {}: no such Unix account; name one, or `none` to refuse jobs of users without an account",
            args.fallback_user
        );
    }
    launch::become_subreaper()?;
    let detection = task_limits::detect(
        &task_limits::CgroupProbe::system(),
        args.cgroup_parent.as_deref(),
    );
    if args.cgroup_parent.is_some() && detection.backend.mechanism().as_str() != "cgroup-v2" {
        bail!("cannot use --cgroup-parent: {}", detection.reason);
    }
    tracing::info!(
        limits = detection.backend.mechanism().as_str(),
        "task limits: {}",
        detection.reason
    );
    let containers = args.containers.runtime()?;
    match &containers {
        Some(rt) => tracing::info!(
            runtime = rt.kind.as_str(),
            program = %rt.program.display(),
            "container jobs run with {}",
            rt.kind.as_str()
        ),
        None => tracing::info!("no container runtime: jobs with a container image fail here"),
    }
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
    let name = args.name.clone().unwrap_or_else(hostname);
    let work_dir = args
        .work_dir
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join(format!("haneul-agent-{name}")));
    if task_user == TaskUser::Agent {
        std::fs::create_dir_all(&work_dir)
            .with_context(|| format!("cannot create --work-dir {}", work_dir.display()))?;
    } else {
        identity::prepare_work_root(&work_dir)?;
    }
    let mps = match (args.simulate_gpus.is_none(), which(sharing::MPS_CONTROL)) {
        (true, Some(program)) => {
            Some(MpsSupervisor::new(program, work_dir.join(".mps")).naming(inventory))
        }
        (true, None) => {
            tracing::warn!(
                "{} is not on PATH: tasks holding a fraction of a GPU are not held to it",
                sharing::MPS_CONTROL
            );
            None
        }
        (false, _) => None,
    };
    let model = inventory[0]
        .model
        .trim()
        .trim_start_matches("NVIDIA ")
        .replace(' ', "-");
    let reg = AgentRegister {
        name: name.clone(),
        pool: args.pool.clone(),
        block: args.block.clone(),
        gpu_model: model,
        gpus: inventory.len() as i64,
        gpu_memory_mib: inventory[0].memory_mib.unwrap_or(0) as i64,
        nvlink_domain: discovered.nvlink_domain.map(i64::from),
        cpu_milli: std::thread::available_parallelism().map_or(1, |n| n.get()) as i64 * 1000,
        memory_mib: memory_mib(),
        limits: Some(detection.backend.mechanism().as_str().to_string()),
        address: args.advertise_addr.clone(),
        container_runtime: Some(
            containers
                .as_ref()
                .map_or("none", |r| r.kind.as_str())
                .to_string(),
        ),
        uid: Some(i64::from(euid)),
    };
    let node: haneul_api::Node = client
        .retrying("register", || {
            client.call("POST", "/v1/agent/register", Some(&reg))
        })
        .map_err(|e| anyhow::anyhow!("cannot register node {name}: {e}"))?;
    tracing::info!(
        node = node.id,
        %name,
        gpus = reg.gpus,
        model = %reg.gpu_model,
        simulated = args.simulate_gpus.is_some(),
        nvlink_domain = ?reg.nvlink_domain,
        gpus_from = discovered.note.as_deref().unwrap_or(""),
        "registered"
    );
    let beat: HeartbeatAck = client
        .retrying("heartbeat", || {
            client.call::<(), _>(
                "POST",
                &format!("/v1/agent/nodes/{}/heartbeat", node.id),
                None,
            )
        })
        .map_err(|e| anyhow::anyhow!("first heartbeat refused: {e}"))?;
    let interval = Duration::from_millis(beat.interval_ms.max(100) as u64);
    let hb = {
        let client = client.clone();
        let id = node.id;
        std::thread::spawn(move || heartbeats(client, id, interval))
    };
    let checks = health_checks(&args, &discovered);
    let health = {
        let client = client.clone();
        let id = node.id;
        let every = Duration::from_secs(args.health_interval);
        std::thread::spawn(move || health_loop(client, id, checks, every))
    };

    let ctx = Arc::new(NodeCtx {
        client: client.clone(),
        node: node.id,
        name: name.clone(),
        me: args.advertise_addr.clone().unwrap_or_else(|| name.clone()),
        work_dir,
        limits: detection.backend,
        share: task_limits::NodeShare {
            cpu_milli: reg.cpu_milli.max(0) as u64,
            memory_mib: reg.memory_mib.max(0) as u64,
            gpus: inventory.len() as u64,
        },
        gpu_memory_mib: reg.gpu_memory_mib.max(0) as u64,
        task_user,
        euid,
        mps,
        containers,
        real_gpus: args.simulate_gpus.is_none(),
        inventory: inventory.clone(),
    });
    let mut tasks: HashMap<(i64, i64, i64), Running> = HashMap::new();
    // Tasks an earlier agent process started here: reattach, report or clean up.
    let first: AssignmentList = client
        .retrying("assignments", || {
            client.call::<(), _>(
                "GET",
                &format!("/v1/agent/nodes/{}/assignments?wait_ms=0", node.id),
                None,
            )
        })
        .map_err(|e| anyhow::anyhow!("cannot read the node's assignments: {e}"))?;
    tasks.extend(recover(&ctx, &first.assignments));
    let mut etag = String::new();
    let mut backoff = Backoff::new();
    while !stopping() {
        let path = format!(
            "/v1/agent/nodes/{}/assignments?wait_ms={POLL_WAIT_MS}&etag={}",
            node.id,
            if etag.is_empty() { "none" } else { &etag }
        );
        let list: AssignmentList = match client.call::<(), _>("GET", &path, None) {
            Ok(l) => {
                backoff.reset();
                l
            }
            Err(e) => {
                tracing::warn!("polling assignments: {e}");
                backoff.sleep();
                continue;
            }
        };
        etag = list.etag.clone();
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
                    let handle = std::thread::spawn(move || run_task(&ctx, a, rx));
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
                            report(&ctx, &a, Some(143));
                        }
                    }
                }
                other => tracing::warn!(job = a.job, "unknown action {other:?}"),
            }
        }
    }
    tracing::info!("signal received: stopping running tasks");
    for (_, r) in tasks.iter_mut() {
        let _ = r.stop.send(Duration::from_secs(5));
    }
    for (_, r) in tasks {
        if let Some(h) = r.handle {
            let _ = h.join();
        }
    }
    let _ = hb.join();
    let _ = health.join();
    if let Some(m) = &ctx.mps {
        m.shutdown(Duration::from_secs(5));
    }
    tracing::info!("agent stopped");
    Ok(())
}

struct Running {
    stop: Sender<Duration>,
    handle: Option<std::thread::JoinHandle<()>>,
    stop_sent: bool,
    grace: Duration,
}

struct NodeCtx {
    client: Client,
    node: i64,
    name: String,
    /// How the gang's peers list this node: its advertised address, else its name.
    me: String,
    work_dir: PathBuf,
    limits: Box<dyn LimitBackend>,
    /// What the node has, to fill in the limits of tasks that asked for none.
    share: task_limits::NodeShare,
    gpu_memory_mib: u64,
    /// Whose account tasks run as.
    task_user: TaskUser,
    /// The agent's own uid: no task runs as it.
    euid: u32,
    /// The MPS control daemons of shared GPUs (real GPUs with the MPS control program only).
    mps: Option<MpsSupervisor>,
    /// The container runtime for jobs with an image; `None`: such jobs fail here.
    containers: Option<Runtime>,
    /// Whether the GPUs are real (handed to containers) or simulated.
    real_gpus: bool,
    /// The node's GPUs, to name them to CUDA (MIG instances by UUID).
    inventory: Vec<gpus::Gpu>,
}

fn heartbeats(client: Client, node: i64, interval: Duration) {
    let path = format!("/v1/agent/nodes/{node}/heartbeat");
    let mut next = Instant::now() + interval;
    while !stopping() {
        if Instant::now() < next {
            std::thread::sleep(Duration::from_millis(100).min(next - Instant::now()));
            continue;
        }
        next = Instant::now() + interval;
        if let Err(e) = client.call::<(), HeartbeatAck>("POST", &path, None) {
            tracing::warn!("heartbeat: {e}");
        }
    }
}

/// The node's health checks: `--health-command`; the GPU checks through NVML when the GPUs
/// were found through it (else `nvidia-smi`), none for simulated GPUs; and NVML's XID events
/// (or, for tests and drills, `--xid-events-file`).
fn health_checks(args: &AgentArgs, found: &gpus::Inventory) -> health::NodeHealth {
    let library = std::ffi::OsStr::new(gpus::NVML_LIBRARY);
    let probe: Option<Box<dyn health::GpuProbe>> = match found.source {
        gpus::Source::Nvml => match nvml::NvmlProbe::open(library) {
            Ok(p) => Some(Box::new(p)),
            Err(e) => {
                tracing::warn!("GPU health checks through nvidia-smi: nvml: {e}");
                Some(Box::new(health::NvidiaSmiProbe))
            }
        },
        gpus::Source::NvidiaSmi => Some(Box::new(health::NvidiaSmiProbe)),
        gpus::Source::Simulated | gpus::Source::None => {
            tracing::info!("GPU health checks (ECC, temperature) skipped: the GPUs are simulated");
            None
        }
    };
    let checks = health::NodeHealth::new(args.health_command.clone(), probe, args.max_gpu_temp);
    let (tx, rx) = mpsc::channel();
    if let Some(path) = &args.xid_events_file {
        tracing::warn!(
            "acting on XID events written to {} (for tests and drills only)",
            path.display()
        );
        let uuids = found.gpus.iter().map(|g| g.uuid.clone()).collect();
        xid::follow_file(path.clone(), uuids, stopping, tx);
    } else if found.source == gpus::Source::Nvml {
        nvml::watch_xids(library.to_os_string(), stopping, tx);
    } else {
        return checks;
    }
    checks.with_events(rx)
}

/// Runs the health checks every interval, and at once when a fatal XID event arrives, and
/// tells the server when the verdict changes (and once at start, so a verdict from before a
/// restart does not linger).
fn health_loop(client: Client, node: i64, mut checks: health::NodeHealth, every: Duration) {
    if checks.is_empty() {
        return;
    }
    // A check may take at most the interval (at most 30 s), so checks never pile up.
    let timeout = every.min(Duration::from_secs(30));
    let log = |events: &health::Polled| {
        events.xids.iter().for_each(|x| tracing::warn!("{x}"));
        events.notes.iter().for_each(|n| tracing::info!("{n}"));
    };
    let path = format!("/v1/agent/nodes/{node}/health");
    let mut told: Option<Option<String>> = None;
    let mut next = Instant::now();
    while !stopping() {
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
        match client.call::<_, haneul_api::Node>("POST", &path, Some(&body)) {
            Ok(n) => {
                tracing::info!(state = %n.state, "health reported");
                told = Some(failure);
            }
            // Told again at the next check.
            Err(e) => tracing::warn!("health report: {e}"),
        }
    }
}

/// The gang environment of task `a` on node `me`: (master address, world size, rank, local
/// rank, node rank, local world size).
fn gang(a: &Assignment, me: &str) -> (String, u32, u32, u32, u32, u32) {
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

fn run_task(ctx: &NodeCtx, a: Assignment, stop: Receiver<Duration>) {
    let (master, world, rank, local_rank, node_rank, local_world) = gang(&a, &ctx.me);
    let workdir = task_dir(ctx, &a);
    let Some((program, args)) = a.command.split_first() else {
        upload(ctx, &a, "haneul agent: the job has an empty command\n");
        report(ctx, &a, None);
        report(ctx, &a, Some(127));
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
        env: vec![
            ("HANEUL_NODE".into(), ctx.name.clone()),
            ("HANEUL_PROJECT".into(), a.project.to_string()),
        ],
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
            if report(ctx, &a, None) {
                upload(ctx, &a, &why);
                report(ctx, &a, Some(127));
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
            if report(ctx, &a, None) {
                upload(ctx, &a, &why);
                report(ctx, &a, Some(127));
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
    let launched = prepared.and_then(|p| launch::launch_limited(&spec, p));
    let mut task = match launched {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!(job = a.job, task = a.task, "cannot launch: {e}");
            if report(ctx, &a, None) {
                upload(
                    ctx,
                    &a,
                    &format!("haneul agent: cannot launch the task: {e}\n"),
                );
                report(ctx, &a, Some(127));
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
    };
    // Written before the start is reported: an agent killed after the report finds the task.
    record.save(task.workdir());
    if !report(ctx, &a, None) {
        // Stale or refused: this attempt is not ours to run.
        let _ = task.stop(Duration::ZERO);
        ctx.limits.release(task.prepared());
        TaskFile::remove(task.workdir());
        return;
    }
    let logs = LogStream::new(&task, 0, 0);
    supervise(ctx, &a, task, &stop, logs, Instant::now(), record);
}

/// Watches a started task until it ends: streams its logs, passes on a stop, enforces the
/// time-limit backstop; then uploads the last output and reports the exit. `started` is when
/// the task started (earlier than now for a task adopted after a restart).
fn supervise(
    ctx: &NodeCtx,
    a: &Assignment,
    mut task: launch::RunningTask,
    stop: &Receiver<Duration>,
    mut logs: LogStream,
    started: Instant,
    mut record: TaskFile,
) {
    let mut last_stream = Instant::now();
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
        if stopping() {
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
        if last_stream.elapsed() >= STREAM_EVERY {
            logs.pump(ctx, a, false);
            let (out, err) = logs.offsets();
            if (out, err) != (record.stdout_offset, record.stderr_offset) {
                record.stdout_offset = out;
                record.stderr_offset = err;
                record.save(task.workdir());
            }
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
    ctx.limits.release(task.prepared());
    logs.pump(ctx, a, true);
    report(ctx, a, Some(code));
    TaskFile::remove(task.workdir());
}

/// Exit code reported for a task whose status nobody could record (it and its status keeper
/// were killed while the agent was down): as for SIGKILL.
const LOST_STATUS_CODE: i64 = 137;
const LOST_STATUS_NOTE: &str =
    "[haneul agent: the task ended while the agent was down and its exit status was lost]\n";

fn exit_code(status: Option<std::process::ExitStatus>) -> i64 {
    status.map_or(137, |s| {
        use std::os::unix::process::ExitStatusExt;
        s.code()
            .map(i64::from)
            .or_else(|| s.signal().map(|n| 128 + i64::from(n)))
            .unwrap_or(1)
    })
}

/// What the agent keeps about a started task beside its directory (`.task-T.haneul-task.json`
/// in the attempt's directory, which the agent owns: the task's own directory is its owner's,
/// who must not be able to point the agent at another process), so that a
/// restarted agent can find it again: the pid with its start time (which tells the task's
/// process from a later one with the same pid) and how much of its output was uploaded.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct TaskFile {
    job: i64,
    fence: i64,
    task: i64,
    pid: i32,
    start_ticks: u64,
    started_at_ms: i64,
    limits: String,
    stdout_offset: u64,
    stderr_offset: u64,
    /// The task's podman container, when it runs in one.
    #[serde(default)]
    container: Option<String>,
}

const TASK_FILE: &str = ".haneul-task.json";

impl TaskFile {
    /// Written to a temporary file and renamed, so a crash never leaves half a record.
    fn save(&self, dir: &std::path::Path) {
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

    fn remove(dir: &std::path::Path) {
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
fn recover(ctx: &Arc<NodeCtx>, assigned: &[Assignment]) -> Vec<((i64, i64, i64), Running)> {
    let mut out = Vec::new();
    // Reattached tasks, whose containers stay.
    let mut kept = Vec::new();
    for (dir, rec) in TaskFile::find_all(&ctx.work_dir) {
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
                    if !report(&ctx2, &a, None) {
                        let mut task = task;
                        let _ = task.stop(Duration::ZERO);
                        TaskFile::remove(task.workdir());
                        return;
                    }
                    let logs = LogStream::new(&task, rec.stdout_offset, rec.stderr_offset);
                    supervise(&ctx2, &a, task, &rx, logs, started, rec);
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
                    report(&ctx2, &a, None);
                    logs.pump(&ctx2, &a, true);
                    report(&ctx2, &a, Some(code));
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

/// Streams a task's stdout and stderr to the server: new bytes only, bounded per tick and per
/// task. Text whose upload failed is kept and sent again on the next tick.
struct LogStream {
    files: [(&'static str, Follower, Option<Vec<u8>>); 2],
    streamed: u64,
    refused: bool,
}

impl LogStream {
    /// Starts at these offsets into the files (0 for a new task).
    fn new(task: &launch::RunningTask, stdout_offset: u64, stderr_offset: u64) -> Self {
        LogStream::at(task.workdir(), stdout_offset, stderr_offset)
    }

    fn at(dir: &std::path::Path, stdout_offset: u64, stderr_offset: u64) -> Self {
        LogStream {
            files: [
                (
                    "stdout",
                    Follower::at(dir.join(launch::STDOUT_FILE), stdout_offset),
                    None,
                ),
                (
                    "stderr",
                    Follower::at(dir.join(launch::STDERR_FILE), stderr_offset),
                    None,
                ),
            ],
            streamed: 0,
            refused: false,
        }
    }

    /// How far into stdout and stderr the upload has got (text waiting for a retry counts
    /// as not uploaded only until the next pump; a restart may then send it twice, never
    /// skip it).
    fn offsets(&self) -> (u64, u64) {
        let off = |i: usize| {
            let (_, f, unsent) = &self.files[i];
            f.offset() - unsent.as_ref().map_or(0, |t| t.len() as u64)
        };
        (off(0), off(1))
    }

    /// Adds a line of the agent's own after stderr's output.
    fn note(&mut self, text: &str) {
        let unsent = self.files[1].2.get_or_insert_default();
        unsent.extend_from_slice(text.as_bytes());
    }

    /// Uploads what is new. At the task's end (`at_end`) everything left is sent, retrying,
    /// after skipping all but the last [`LOG_TAIL`] bytes of each file.
    fn pump(&mut self, ctx: &NodeCtx, a: &Assignment, at_end: bool) {
        for (name, follower, unsent) in &mut self.files {
            if self.refused {
                return;
            }
            if !at_end && self.streamed >= STREAM_MAX_TOTAL {
                return;
            }
            if at_end {
                let skipped = follower.skip_to_tail(LOG_TAIL);
                if skipped > 0 {
                    let note = format!(
                        "[haneul agent: {skipped} bytes of {name} not uploaded; the whole file \
                         is {} on node {}]\n",
                        follower_path(ctx, a, name),
                        ctx.name
                    );
                    unsent
                        .get_or_insert_default()
                        .extend_from_slice(note.as_bytes());
                }
            }
            let mut this_tick = 0;
            loop {
                let text = match unsent.take() {
                    Some(t) => t,
                    None => match follower.read_new(LOG_CHUNK, at_end) {
                        Ok(t) if t.is_empty() => break,
                        Ok(t) => t,
                        Err(e) => {
                            tracing::warn!(job = a.job, task = a.task, "reading {name}: {e}");
                            break;
                        }
                    },
                };
                let len = text.len();
                match send_log(ctx, a, &text, at_end) {
                    Ok(()) => {
                        self.streamed += len as u64;
                        this_tick += len;
                    }
                    Err(CallError::Refused(s, m)) => {
                        tracing::warn!(job = a.job, task = a.task, "log upload refused ({s}): {m}");
                        self.refused = true;
                        return;
                    }
                    Err(CallError::Transient(m)) => {
                        if at_end {
                            tracing::warn!(job = a.job, task = a.task, "log upload dropped: {m}");
                            return;
                        }
                        // Kept for the next tick.
                        *unsent = Some(text);
                        break;
                    }
                }
                if !at_end && this_tick >= STREAM_TICK_MAX {
                    break;
                }
            }
        }
    }
}

fn follower_path(ctx: &NodeCtx, a: &Assignment, name: &str) -> String {
    task_dir(ctx, a)
        .join(format!("{name}.log"))
        .display()
        .to_string()
}

fn task_dir(ctx: &NodeCtx, a: &Assignment) -> PathBuf {
    ctx.work_dir
        .join(format!("job-{}", a.job))
        .join(format!("attempt-{}", a.fence))
        .join(format!("task-{}", a.task))
}

/// One log upload of at most [`LOG_CHUNK`] bytes; with `retry`, transient failures are retried.
fn send_log(ctx: &NodeCtx, a: &Assignment, bytes: &[u8], retry: bool) -> Result<(), CallError> {
    let path = format!("/v1/agent/nodes/{}/logs", ctx.node);
    // Output that is not UTF-8 goes as base64, so that the server keeps every byte.
    let body = LogUpload::new(a.job, a.fence, a.task, bytes);
    if retry {
        ctx.client
            .retrying("log upload", || ctx.client.call_empty("POST", &path, &body))
    } else {
        ctx.client.call_empty("POST", &path, &body)
    }
}

/// Uploads `data` in chunks; stops at a refusal.
fn upload(ctx: &NodeCtx, a: &Assignment, data: &str) {
    let path = format!("/v1/agent/nodes/{}/logs", ctx.node);
    let mut rest = data;
    while !rest.is_empty() {
        let mut cut = rest.len().min(LOG_CHUNK);
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        let (chunk, tail) = rest.split_at(cut);
        rest = tail;
        let body = LogUpload::new(a.job, a.fence, a.task, chunk.as_bytes());
        if let Err(e) = ctx
            .client
            .retrying("log upload", || ctx.client.call_empty("POST", &path, &body))
        {
            tracing::warn!(job = a.job, task = a.task, "log upload dropped: {e}");
            return;
        }
    }
}

/// Reports a start (`exit_code` None) or an exit. Returns whether the server accepted it; a
/// refusal (409: stale fence) is logged and dropped.
fn report(ctx: &NodeCtx, a: &Assignment, exit_code: Option<i64>) -> bool {
    let path = format!("/v1/agent/nodes/{}/reports", ctx.node);
    let body = TaskReport {
        job: a.job,
        fence: a.fence,
        task: a.task,
        exit_code,
    };
    match ctx.client.retrying("report", || {
        ctx.client
            .call::<_, serde_json::Value>("POST", &path, Some(&body))
    }) {
        Ok(_) => true,
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

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "node".into())
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

/// `program` found on `PATH`.
fn which(program: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

fn memory_mib() -> i64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<i64>().ok())
        })
        .map_or(0, |kb| kb / 1024)
}

/// Exponential backoff from 100 ms to 5 s with full jitter, so that agents cut off together
/// do not come back together.
struct Backoff(haneul_client::Backoff);

impl Backoff {
    fn new() -> Self {
        Backoff(haneul_client::Backoff::default())
    }
    fn reset(&mut self) {
        self.0.reset();
    }
    fn sleep(&mut self) {
        std::thread::sleep(self.0.next_wait());
    }
}

/// Why a call failed.
#[derive(Debug)]
pub(crate) enum CallError {
    /// Connection trouble or a 5xx: worth retrying.
    Transient(String),
    /// The server refused (4xx, e.g. 409 for a stale fence): retrying will not help. Status 0:
    /// no answer worth retrying either (a certificate this agent does not trust).
    Refused(u16, String),
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Transient(m) | CallError::Refused(0, m) => write!(f, "{m}"),
            CallError::Refused(s, m) => write!(f, "refused with {s}: {m}"),
        }
    }
}

impl From<haneul_client::Error> for CallError {
    fn from(e: haneul_client::Error) -> Self {
        match e {
            haneul_client::Error::Status { status, body, .. } if status < 500 => {
                CallError::Refused(status, body)
            }
            e if e.is_transient() => CallError::Transient(e.to_string()),
            e => CallError::Refused(0, e.to_string()),
        }
    }
}

/// The agent protocol's calls through the one client ([`haneul_client`]), with the agent's
/// two outcomes.
#[derive(Clone)]
pub(crate) struct Client(haneul_client::blocking::Client);

impl Client {
    pub(crate) fn new(servers: &str, token: String) -> anyhow::Result<Client> {
        Client::with_ca(servers, token, None)
    }

    /// `servers`: one or more base URLs, comma-separated; `ca_file`: the CA to trust.
    pub(crate) fn with_ca(
        servers: &str,
        token: String,
        ca_file: Option<PathBuf>,
    ) -> anyhow::Result<Client> {
        Ok(Client(haneul_client::blocking::Client::new(
            &haneul_client::Options {
                servers: servers.to_string(),
                token,
                ca_file,
                ..Default::default()
            },
        )?))
    }

    /// Retries transient failures with backoff (at most about two minutes, less once the
    /// agent is stopping); a refusal ends at once.
    fn retrying<T>(
        &self,
        what: &str,
        mut f: impl FnMut() -> Result<T, CallError>,
    ) -> Result<T, CallError> {
        let mut backoff = Backoff::new();
        let mut tries = 0;
        loop {
            match f() {
                Ok(v) => return Ok(v),
                Err(CallError::Transient(m)) if tries < 30 && !(stopping() && tries >= 3) => {
                    tracing::warn!("{what}: {m}; retrying");
                    tries += 1;
                    backoff.sleep();
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn call<B: Serialize, T: DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        body: Option<&B>,
    ) -> Result<T, CallError> {
        let body = body.map(|b| serde_json::to_string(b).unwrap_or_default());
        let (status, text) = self.raw(method, path, body.as_deref())?;
        serde_json::from_str(&text).map_err(|e| {
            CallError::Transient(format!("{method} {path}: bad answer ({status}): {e}"))
        })
    }

    fn call_empty<B: Serialize>(
        &self,
        method: &str,
        path: &str,
        body: &B,
    ) -> Result<(), CallError> {
        let body = serde_json::to_string(body).unwrap_or_default();
        self.raw(method, path, Some(&body)).map(|_| ())
    }

    /// One request, no retry; the answer's status and text.
    pub(crate) fn raw(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
    ) -> Result<(u16, String), CallError> {
        let method = haneul_client::Method::from_bytes(method.as_bytes())
            .map_err(|e| CallError::Refused(0, format!("{method}: {e}")))?;
        // Long polls wait up to POLL_WAIT_MS on the server before answering.
        let timeout = Duration::from_millis(POLL_WAIT_MS) + Duration::from_secs(30);
        let a = self.0.request(
            method,
            path,
            body.map(|b| b.as_bytes().to_vec()),
            &[],
            Some(timeout),
            &haneul_client::Retry::never(),
        )?;
        Ok((a.status, String::from_utf8_lossy(&a.body).into_owned()))
    }
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
        }
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

    #[test]
    fn container_flags_pass_through_unchanged() {
        use clap::Parser;
        #[derive(Parser)]
        struct Flags {
            #[command(flatten)]
            c: ContainerArgs,
        }
        let given = Flags::try_parse_from([
            "haneul",
            "--container-runtime",
            "podman",
            "--container-runtime-arg",
            "--runtime=runc",
            "--container-run-arg=--ulimit=nproc=1000:1000",
        ])
        .unwrap();
        let flags = given.c.to_flags();
        assert_eq!(
            flags,
            [
                "--container-runtime=podman",
                "--container-runtime-arg=--runtime=runc",
                "--container-run-arg=--ulimit=nproc=1000:1000",
            ]
        );
        let again =
            Flags::try_parse_from(std::iter::once("haneul".to_string()).chain(flags)).unwrap();
        assert_eq!(again.c.to_flags(), given.c.to_flags());
        assert!(Flags::try_parse_from(["haneul", "--container-runtime", "docker"]).is_err());
    }
}
