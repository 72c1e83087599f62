//! `haneul agent`: the node agent's flags. This module finds the node's GPUs, chooses the
//! task identity, limits, container runtime and MPS, builds the health checks, and hands all
//! of it to the protocol loop of the `haneul-agent` library (`haneul_agent::node::run`) over
//! the HTTP transport (`haneul-client`: TLS, several servers, the leader followed).

use anyhow::{Context, bail};
use clap::Args;
use haneul_agent::container::{self, Runtime};
use haneul_agent::identity::{self, TaskUser};
use haneul_agent::launch;
use haneul_agent::limits as task_limits;
use haneul_agent::node::{self, http::HttpTransport};
use haneul_agent::sharing::{self, MpsSupervisor};
use haneul_agent::{gpus, health, nvml, xid};
use haneul_api::AgentRegister;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::Duration;

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
    /// Seconds between GPU telemetry samples (utilisation, memory, power, temperature of every
    /// GPU a task holds), sent to the server in one batch per interval.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    telemetry_interval: u64,
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
    let transport = HttpTransport::new(&args.server, token, args.ca_file.clone())?;
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
    tracing::info!(
        gpus = inventory.len(),
        simulated = args.simulate_gpus.is_some(),
        gpus_from = discovered.note.as_deref().unwrap_or(""),
        "GPUs found"
    );
    let health = health_checks(&args, &discovered);
    node::run(node::Setup {
        transport: Arc::new(transport),
        register: reg,
        me: args.advertise_addr.clone().unwrap_or(name),
        work_dir,
        limits: detection.backend,
        task_user,
        euid,
        mps,
        containers,
        real_gpus: args.simulate_gpus.is_none(),
        inventory: inventory.clone(),
        health,
        health_every: Duration::from_secs(args.health_interval),
        timing: node::Timing {
            telemetry_every: Duration::from_secs(args.telemetry_interval),
            ..node::Timing::default()
        },
        stop: Arc::new(stopping),
    })?;
    Ok(())
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

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "node".into())
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

/// A plain client of the API for `haneul up` and the agent bench: one try per call, the
/// answer's status and text.
#[derive(Clone)]
pub(crate) struct Client(haneul_client::blocking::Client);

impl Client {
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

    /// One request, no retry; a 2xx answer's status and text.
    pub(crate) fn raw(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
    ) -> Result<(u16, String), haneul_client::Error> {
        let method = haneul_client::Method::from_bytes(method.as_bytes()).map_err(|e| {
            haneul_client::Error::Config {
                field: "method",
                message: format!("{method}: {e}"),
            }
        })?;
        let a = self.0.request(
            method,
            path,
            body.map(|b| b.as_bytes().to_vec()),
            &[],
            None,
            &haneul_client::Retry::never(),
        )?;
        Ok((a.status, String::from_utf8_lossy(&a.body).into_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
