//! Launching one task of an attempt as its own process group, and stopping it.
//!
//! Each task runs in a new session (`setsid` in `pre_exec`), so its process group id is its pid and
//! every process it starts (unless it starts its own session) can be signalled at once. Stopping
//! follows the documented protocol: create the checkpoint file, SIGTERM to the whole group, wait the
//! grace period, then SIGKILL the group.
//!
//! Processes that outlive the task's first process are re-parented to init, or to this process when
//! it is a child subreaper ([`become_subreaper`]), which the agent should be so that it can reap them
//! and confirm that no process of the group is left.

use crate::container::{self, ContainerTask, Image, Runtime, RuntimeKind};
use crate::limits::{self, Prepared};
use crate::{AgentError, Result};
use std::fs;
use std::os::fd::AsRawFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Name of the file, in the task's working directory, the agent creates when preemption or
/// cancellation begins. Its path is in `HANEUL_CHECKPOINT_FILE`.
pub const CHECKPOINT_FILE: &str = ".haneul-checkpoint";
/// Name of the file, in the task's working directory, where a task that serves HTTP writes
/// `PORT TOKEN` for its owner to reach it through the portal (docs/jupyter.md). Its path is in
/// `HANEUL_ENDPOINT_FILE`.
pub const ENDPOINT_FILE: &str = ".haneul-endpoint";
/// Name of the file, in the task's working directory, where the task's status is written when its
/// program ends (`exit N` or `signal N`), so that an agent that restarted can still learn it.
pub const EXIT_FILE: &str = ".haneul-exit";
/// Name of the task's standard output file in its working directory.
pub const STDOUT_FILE: &str = "stdout.log";
/// Name of the task's standard error file in its working directory.
pub const STDERR_FILE: &str = "stderr.log";
/// `PATH` given to a task whose spec sets none.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Variables the agent sets itself; a spec's `env` may not set them.
pub const RESERVED_ENV: [&str; 12] = [
    "CUDA_VISIBLE_DEVICES",
    "NVIDIA_VISIBLE_DEVICES",
    "MASTER_ADDR",
    "MASTER_PORT",
    "WORLD_SIZE",
    "RANK",
    "LOCAL_RANK",
    "NODE_RANK",
    "LOCAL_WORLD_SIZE",
    "HANEUL_JOB_ID",
    "HANEUL_ATTEMPT",
    "HANEUL_TASK",
];

const POLL: Duration = Duration::from_millis(10);

/// Resource limits applied to the task (and inherited by its children).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    /// Address space in bytes (`RLIMIT_AS`).
    pub address_space_bytes: Option<u64>,
    /// CPU time in seconds (`RLIMIT_CPU`).
    pub cpu_seconds: Option<u64>,
    /// Open files (`RLIMIT_NOFILE`).
    pub open_files: Option<u64>,
}

impl TaskSpec {
    /// The names the task's GPUs are given to CUDA and the container runtime by.
    pub fn device_names(&self) -> Vec<String> {
        if self.devices.is_empty() {
            self.gpus.iter().map(u32::to_string).collect()
        } else {
            self.devices.clone()
        }
    }
}

impl Limits {
    fn is_empty(&self) -> bool {
        *self == Limits::default()
    }
}

/// Everything needed to start one task of an attempt.
#[derive(Debug, Clone)]
pub struct TaskSpec {
    /// Job identifier (`HANEUL_JOB_ID`).
    pub job_id: String,
    /// Attempt number (`HANEUL_ATTEMPT`).
    pub attempt: u32,
    /// Task index within the attempt (`HANEUL_TASK`).
    pub task: u32,
    /// Program to run.
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<String>,
    /// Working directory; created if missing. Log and checkpoint files go here.
    pub workdir: PathBuf,
    /// GPU indices assigned to this task.
    pub gpus: Vec<u32>,
    /// What CUDA and the container runtime call those GPUs, in the same order
    /// (`CUDA_VISIBLE_DEVICES`, `NVIDIA_VISIBLE_DEVICES`, CDI names): a MIG instance by its
    /// UUID, since CUDA takes no index for one ([`crate::sharing::device_names`]). Empty: the
    /// indices themselves.
    pub devices: Vec<String>,
    /// Address of rank 0 (`MASTER_ADDR`).
    pub master_addr: String,
    /// Port of rank 0 (`MASTER_PORT`).
    pub master_port: u16,
    /// Total number of processes of the gang (`WORLD_SIZE`).
    pub world_size: u32,
    /// Global rank of this task (`RANK`).
    pub rank: u32,
    /// Rank on this node (`LOCAL_RANK`).
    pub local_rank: u32,
    /// Index of this node in the gang (`NODE_RANK`).
    pub node_rank: u32,
    /// Number of tasks of the gang on this node (`LOCAL_WORLD_SIZE`).
    pub local_world_size: u32,
    /// Further environment variables; the environment is otherwise empty but for `PATH`.
    pub env: Vec<(String, String)>,
    /// Resource limits.
    pub limits: Limits,
    /// The Unix account to run as (the agent must be root); `None`: the agent's own.
    pub run_as: Option<Identity>,
    /// Run the program in this container instead of directly.
    pub container: Option<ContainerSpec>,
}

/// How a task runs in a container ([`crate::container`]).
#[derive(Debug, Clone)]
pub struct ContainerSpec {
    /// The node's runtime.
    pub runtime: Runtime,
    /// The job's image: an OCI reference, a root file system directory or a `.sif` file.
    pub image: String,
    /// The container's name ([`crate::container::task_name`]).
    pub name: String,
    /// The node's name, labelled on the container.
    pub node: String,
    /// Whether the task's GPUs are real (handed to the container) or simulated.
    pub real_gpus: bool,
    /// CPU allotment in milli-cores (podman `--cpus`); 0 is unlimited.
    pub cpu_milli: u64,
    /// Memory allotment in MiB (podman `--memory`); 0 is unlimited.
    pub memory_mib: u64,
}

/// A Unix account a task runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// Account name.
    pub name: String,
    /// User id.
    pub uid: libc::uid_t,
    /// Primary group id.
    pub gid: libc::gid_t,
    /// Every group of the account (primary included).
    pub groups: Vec<libc::gid_t>,
}

/// The account called `name` from the system's user database, with its groups; `None` when
/// there is no such account.
pub fn lookup_user(name: &str) -> Option<Identity> {
    let cname = std::ffi::CString::new(name).ok()?;
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    // SAFETY: an all-zero passwd is a valid out-parameter for getpwnam_r.
    let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
    let mut found: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: getpwnam_r writes into pw and buf, both valid for their given sizes.
    let rc = unsafe {
        libc::getpwnam_r(
            cname.as_ptr(),
            &mut pw,
            buf.as_mut_ptr(),
            buf.len(),
            &mut found,
        )
    };
    if rc != 0 || found.is_null() {
        return None;
    }
    let (uid, gid) = (pw.pw_uid, pw.pw_gid);
    let mut groups = vec![0 as libc::gid_t; 256];
    let mut n = groups.len() as libc::c_int;
    // SAFETY: getgrouplist writes at most n entries into groups and the count into n.
    let rc = unsafe { libc::getgrouplist(cname.as_ptr(), gid, groups.as_mut_ptr(), &mut n) };
    groups.truncate(if rc < 0 { 0 } else { n.max(0) as usize });
    if !groups.contains(&gid) {
        groups.push(gid);
    }
    Some(Identity {
        name: name.to_string(),
        uid,
        gid,
        groups,
    })
}

pub use crate::limits::LimitMechanism;

/// How a waited-for task ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The task's first process exited by itself.
    Exited(ExitStatus),
    /// The time limit passed; the task was stopped and ended with this status.
    TimedOut(ExitStatus),
}

/// A started task.
#[derive(Debug)]
pub struct RunningTask {
    pid: libc::pid_t,
    workdir: PathBuf,
    checkpoint: PathBuf,
    /// How limits were applied.
    pub limits: LimitMechanism,
    prepared: Prepared,
    status: Option<ExitStatus>,
    // Set once the first process is reaped and the group was seen empty: from then on the pgid may
    // be reused by an unrelated process, so it must never be signalled again.
    group_gone: bool,
    // A podman task's container (runtime, name): it runs under conmon, outside the group, so
    // ending the group does not end it; it is removed once the task ends or is killed.
    container: Option<(Runtime, String)>,
    // On a terminal: the shell gives each job a process group of its own, so stopping the task
    // signals every process of its session (whose id is the pid too), not just the group.
    session: bool,
    // Kept so the handle owns the child; waiting is done with waitpid directly. `None` for a task
    // adopted after an agent restart, which is not our child.
    _child: Option<std::process::Child>,
    // The first process's start time (clock ticks since boot, /proc/PID/stat field 22): with the
    // pid, what tells this process from a later one that reuses the pid.
    start_ticks: Option<u64>,
    // The status could not be learnt (adopted task whose status file is missing).
    status_lost: bool,
}

/// Makes this process a child subreaper (Linux), so orphaned processes of its tasks are re-parented
/// to it and can be reaped; a no-op elsewhere.
pub fn become_subreaper() -> Result<()> {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: prctl with PR_SET_CHILD_SUBREAPER takes an integer argument and touches no memory.
        let rc = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
        if rc != 0 {
            return Err(AgentError::io(
                "cannot become child subreaper",
                std::io::Error::last_os_error(),
            ));
        }
    }
    Ok(())
}

/// Whether any process of process group `pgid` exists (zombies included).
pub fn group_alive(pgid: libc::pid_t) -> bool {
    // SAFETY: kill with signal 0 only checks for existence and permission.
    let rc = unsafe { libc::kill(-pgid, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

fn signal_group(pgid: libc::pid_t, sig: libc::c_int) {
    // SAFETY: plain kill(2); failure (ESRCH: group already gone) is harmless.
    unsafe {
        libc::kill(-pgid, sig);
    }
}

fn set_rlimit(resource: limits::RlimitResource, value: u64) -> std::io::Result<()> {
    let lim = libc::rlimit {
        rlim_cur: value as libc::rlim_t,
        rlim_max: value as libc::rlim_t,
    };
    // SAFETY: setrlimit is async-signal-safe and reads only `lim`.
    if unsafe { libc::setrlimit(resource, &lim) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Starts a task as described by `spec`: in a new session and process group, in its working
/// directory, with standard output and error to [`STDOUT_FILE`] and [`STDERR_FILE`] there, and an
/// environment holding only `PATH`, `HOME` (the working directory), the spec's `env`, and the
/// agent's variables ([`RESERVED_ENV`] and `HANEUL_CHECKPOINT_FILE`). With no GPUs assigned,
/// `CUDA_VISIBLE_DEVICES` is empty and `NVIDIA_VISIBLE_DEVICES` is `void`.
pub fn launch(spec: &TaskSpec) -> Result<RunningTask> {
    launch_limited(spec, Prepared::default())
}

/// Like [`launch`], and the task's first process also applies `prepared` (from a
/// [`crate::limits::LimitBackend`]) to itself before `exec`. The handle keeps `prepared` for
/// [`crate::limits::LimitBackend::release`] ([`RunningTask::prepared`]).
pub fn launch_limited(spec: &TaskSpec, prepared: Prepared) -> Result<RunningTask> {
    launch_with(spec, prepared, None)
}

/// Like [`launch_limited`], with the task's standard input, output and error on the terminal
/// `terminal` (the subsidiary side of a pseudo-terminal the caller opened), which becomes the
/// session's controlling terminal: Ctrl-C typed into it interrupts the foreground process,
/// and job control works. `TERM` is `xterm-256color` unless the spec sets it. The output
/// files are created but stay empty. Stopping the task signals every process of its session,
/// since a shell puts each job it starts in a process group of its own.
pub fn launch_on_terminal(
    spec: &TaskSpec,
    prepared: Prepared,
    terminal: std::os::fd::OwnedFd,
) -> Result<RunningTask> {
    if spec.container.is_some() {
        return Err(AgentError::Spec(
            "interactive tasks run without a container image".into(),
        ));
    }
    launch_with(spec, prepared, Some(terminal))
}

fn launch_with(
    spec: &TaskSpec,
    prepared: Prepared,
    terminal: Option<std::os::fd::OwnedFd>,
) -> Result<RunningTask> {
    if spec.world_size == 0 || spec.rank >= spec.world_size {
        return Err(AgentError::Spec(format!(
            "rank {} not below world size {}",
            spec.rank, spec.world_size
        )));
    }
    if spec.local_world_size == 0 || spec.local_rank >= spec.local_world_size {
        return Err(AgentError::Spec(format!(
            "local rank {} not below local world size {}",
            spec.local_rank, spec.local_world_size
        )));
    }
    if let Some((k, _)) = spec.env.iter().find(|(k, _)| {
        RESERVED_ENV.contains(&k.as_str())
            || k == "HANEUL_CHECKPOINT_FILE"
            || k == "HANEUL_ENDPOINT_FILE"
    }) {
        return Err(AgentError::Spec(format!(
            "environment variable {k} is set by the agent"
        )));
    }
    // The directories this call creates above the task's own: with the task running as
    // another account they must let it pass (0711) without letting it list them.
    let created: Vec<PathBuf> = spec
        .workdir
        .ancestors()
        .skip(1)
        .take_while(|p| !p.as_os_str().is_empty() && !p.exists())
        .map(Path::to_path_buf)
        .collect();
    fs::create_dir_all(&spec.workdir).map_err(|e| {
        AgentError::io(
            format!("cannot create work directory {}", spec.workdir.display()),
            e,
        )
    })?;
    if spec.run_as.is_some() {
        for p in &created {
            set_mode(p, 0o711)?;
        }
    }
    let workdir = spec
        .workdir
        .canonicalize()
        .map_err(|e| AgentError::io(format!("cannot resolve {}", spec.workdir.display()), e))?;
    let checkpoint = workdir.join(CHECKPOINT_FILE);
    match fs::remove_file(&checkpoint) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(AgentError::io(
                format!("cannot remove stale {}", checkpoint.display()),
                e,
            ));
        }
    }
    let open = |name: &str| {
        use std::os::unix::fs::OpenOptionsExt;
        let path = workdir.join(name);
        // 0600: a job's output is its owner's alone.
        fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| AgentError::io(format!("cannot create {}", path.display()), e))
    };
    let stdout = open(STDOUT_FILE)?;
    let stderr = open(STDERR_FILE)?;
    if let Some(id) = &spec.run_as {
        // The directory is the owner's alone (0700); the agent, root, still reads the output.
        set_mode(&workdir, 0o700)?;
        // The task must be able to work in its directory; the log files it writes through
        // descriptors opened here, but it may reopen them.
        for p in [
            workdir.clone(),
            workdir.join(STDOUT_FILE),
            workdir.join(STDERR_FILE),
        ] {
            std::os::unix::fs::chown(&p, Some(id.uid), Some(id.gid)).map_err(|e| {
                AgentError::io(format!("cannot give {} to {}", p.display(), id.name), e)
            })?;
        }
    }
    // Opened close-on-exec: the program never sees it, the status-keeping parent keeps it.
    let exit_file = open(EXIT_FILE)?;
    let exit_fd = exit_file.as_raw_fd();

    let mut env = task_env(spec, &workdir, &checkpoint);
    if terminal.is_some() && !env.iter().any(|(k, _)| k == "TERM") {
        env.push(("TERM".into(), "xterm-256color".into()));
    }
    let mut cmd = match &spec.container {
        None => {
            let mut cmd = Command::new(&spec.program);
            cmd.args(&spec.args)
                .env_clear()
                .envs(env.iter().map(|(k, v)| (k, v)));
            cmd
        }
        Some(c) => {
            check_image(&c.image)?;
            let command: Vec<String> = std::iter::once(spec.program.display().to_string())
                .chain(spec.args.iter().cloned())
                .collect();
            // The launcher's PATH is not the image's: the image keeps its own.
            let inner: Vec<(String, String)> =
                env.iter().filter(|(k, _)| k != "PATH").cloned().collect();
            let user = spec
                .run_as
                .as_ref()
                .map(|id| (id.uid, id.gid, id.groups.as_slice()));
            let inv = container::invocation(
                &c.runtime,
                &ContainerTask {
                    name: &c.name,
                    node: &c.node,
                    image: &c.image,
                    workdir: &workdir,
                    env: &inner,
                    gpus: &spec.device_names(),
                    real_gpus: c.real_gpus,
                    user,
                    cpu_milli: c.cpu_milli,
                    memory_mib: c.memory_mib,
                    command: &command,
                },
            )?;
            let mut cmd = Command::new(&inv.program);
            cmd.args(&inv.args)
                .env_clear()
                .envs(inv.env.iter().map(|(k, v)| (k, v)));
            cmd
        }
    };
    cmd.current_dir(&workdir);
    let on_terminal = terminal.is_some();
    match terminal {
        None => {
            cmd.stdin(Stdio::null()).stdout(stdout).stderr(stderr);
        }
        Some(tty) => {
            let dup = |fd: &std::os::fd::OwnedFd| {
                fd.try_clone()
                    .map_err(|e| AgentError::io("cannot duplicate the task's terminal", e))
            };
            cmd.stdin(Stdio::from(dup(&tty)?))
                .stdout(Stdio::from(dup(&tty)?))
                .stderr(Stdio::from(tty));
        }
    }

    let podman = spec
        .container
        .as_ref()
        .filter(|c| c.runtime.kind == RuntimeKind::Podman);
    // Podman runs as the agent (root) and applies the user and limits to the container itself;
    // rlimits or another account would hamper podman, not the task.
    let limits = if podman.is_some() {
        Limits::default()
    } else {
        spec.limits
    };
    let rlimits = if podman.is_some() {
        Vec::new()
    } else {
        prepared.rlimits.clone()
    };
    let procs = limits::procs_fds(&prepared);
    let run_as = if podman.is_some() {
        None
    } else {
        spec.run_as.clone()
    };
    // SAFETY: the closure runs in the forked child before exec and calls only async-signal-safe
    // functions (setsid, write, setrlimit); it allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The new session's controlling terminal: its standard input, the pty.
            if on_terminal && libc::ioctl(0, libc::TIOCSCTTY, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            limits::apply_in_child(&rlimits, &procs)?;
            if let Some(v) = limits.address_space_bytes {
                set_rlimit(libc::RLIMIT_AS, v)?;
            }
            if let Some(v) = limits.cpu_seconds {
                set_rlimit(libc::RLIMIT_CPU, v)?;
            }
            if let Some(v) = limits.open_files {
                set_rlimit(libc::RLIMIT_NOFILE, v)?;
            }
            // After joining the cgroup (which needs the agent's rights), before exec.
            if let Some(id) = &run_as
                && (libc::setgroups(id.groups.len() as _, id.groups.as_ptr()) != 0
                    || libc::setgid(id.gid) != 0
                    || libc::setuid(id.uid) != 0)
            {
                return Err(std::io::Error::last_os_error());
            }
            keep_status(exit_fd)
        });
    }
    let child = cmd
        .spawn()
        .map_err(|e| AgentError::io(format!("cannot start {}", spec.program.display()), e))?;
    drop(exit_file);
    let pid = child.id() as libc::pid_t;
    Ok(RunningTask {
        pid,
        workdir,
        checkpoint,
        limits: match (podman, prepared.mechanism) {
            (Some(c), _) if c.cpu_milli > 0 || c.memory_mib > 0 => LimitMechanism::Container,
            (Some(_), _) => LimitMechanism::None,
            (None, Some(m)) => m,
            (None, None) if limits.is_empty() => LimitMechanism::None,
            (None, None) => LimitMechanism::Rlimit,
        },
        prepared,
        status: None,
        group_gone: false,
        container: podman.map(|c| (c.runtime.clone(), c.name.clone())),
        session: on_terminal,
        _child: Some(child),
        start_ticks: process_start(pid).map(|(t, _)| t),
        status_lost: false,
    })
}

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .map_err(|e| AgentError::io(format!("cannot set the mode of {}", path.display()), e))
}

/// The environment of a task: `PATH`, `HOME` (the working directory), the spec's `env`, then
/// the agent's variables (and `USER`, `LOGNAME` for a task run as its owner). With no GPUs assigned, `CUDA_VISIBLE_DEVICES` is empty and
/// `NVIDIA_VISIBLE_DEVICES` is `void`.
fn task_env(spec: &TaskSpec, workdir: &Path, checkpoint: &Path) -> Vec<(String, String)> {
    let gpus = spec.device_names().join(",");
    let mut env = vec![
        ("PATH".to_string(), DEFAULT_PATH.to_string()),
        ("HOME".to_string(), workdir.display().to_string()),
    ];
    env.extend(spec.env.iter().cloned());
    let nvidia = if gpus.is_empty() {
        "void".to_string()
    } else {
        gpus.clone()
    };
    for (k, v) in [
        ("CUDA_VISIBLE_DEVICES", gpus),
        ("NVIDIA_VISIBLE_DEVICES", nvidia),
        // The indexes above are NVML's, which follow the PCI bus; CUDA's default order is
        // fastest first, which on a mixed node would hand the task other GPUs than it was given.
        ("CUDA_DEVICE_ORDER", "PCI_BUS_ID".to_string()),
        ("MASTER_ADDR", spec.master_addr.clone()),
        ("MASTER_PORT", spec.master_port.to_string()),
        ("WORLD_SIZE", spec.world_size.to_string()),
        ("RANK", spec.rank.to_string()),
        ("LOCAL_RANK", spec.local_rank.to_string()),
        ("NODE_RANK", spec.node_rank.to_string()),
        ("LOCAL_WORLD_SIZE", spec.local_world_size.to_string()),
        ("HANEUL_JOB_ID", spec.job_id.clone()),
        ("HANEUL_ATTEMPT", spec.attempt.to_string()),
        ("HANEUL_TASK", spec.task.to_string()),
        ("HANEUL_CHECKPOINT_FILE", checkpoint.display().to_string()),
        (
            "HANEUL_ENDPOINT_FILE",
            workdir.join(ENDPOINT_FILE).display().to_string(),
        ),
    ] {
        env.push((k.to_string(), v));
    }
    if let Some(id) = &spec.run_as {
        env.push(("USER".into(), id.name.clone()));
        env.push(("LOGNAME".into(), id.name.clone()));
    }
    env
}

/// Refuses an image path that is not on this node, with a message saying so (the runtime's own
/// error would be less clear).
fn check_image(image: &str) -> Result<()> {
    let missing = match Image::parse(image) {
        Image::Rootfs(p) => !p.is_dir(),
        Image::Sif(p) => !p.is_file(),
        Image::Reference(_) => false,
    };
    if missing {
        return Err(AgentError::Spec(format!(
            "container image {image} does not exist on this node"
        )));
    }
    Ok(())
}

impl RunningTask {
    /// Pid of the task's first process.
    pub fn pid(&self) -> libc::pid_t {
        self.pid
    }

    /// Start time of the first process in clock ticks since boot, as `/proc/PID/stat` gives it;
    /// keep it with the pid to [`adopt`] the task later.
    pub fn start_ticks(&self) -> Option<u64> {
        self.start_ticks
    }

    /// Whether the task was adopted and its status was not recorded (its status-keeping
    /// process was killed too), so the status from the wait is a stand-in SIGKILL.
    pub fn status_lost(&self) -> bool {
        self.status_lost
    }

    /// The name of the task's podman container, when it runs in one.
    pub fn container_name(&self) -> Option<&str> {
        self.container.as_ref().map(|(_, n)| n.as_str())
    }

    /// Marks an adopted task ([`adopt`]) as running in podman container `name`, so that ending
    /// it removes the container too.
    pub fn with_container(mut self, runtime: Runtime, name: String) -> Self {
        if runtime.kind == RuntimeKind::Podman {
            self.container = Some((runtime, name));
        }
        self
    }

    /// Kills and removes the task's container, once. A failure is returned to no one: the
    /// restarted agent's sweep ([`crate::container::list`]) is the second chance.
    fn remove_container(&mut self) {
        if let Some((rt, name)) = self.container.take()
            && let Err(e) = container::remove(&rt, &name)
        {
            eprintln!("haneul agent: cannot remove container {name}: {e}");
        }
    }

    /// Process group (and session) id of the task: equal to its pid.
    pub fn pgid(&self) -> libc::pid_t {
        self.pid
    }

    /// The limits prepared for this task, to release once it has ended.
    pub fn prepared(&self) -> &Prepared {
        &self.prepared
    }

    /// The task's working directory.
    pub fn workdir(&self) -> &Path {
        &self.workdir
    }

    /// Path of the checkpoint file (`HANEUL_CHECKPOINT_FILE`).
    pub fn checkpoint_file(&self) -> &Path {
        &self.checkpoint
    }

    /// Path of the standard output file.
    pub fn stdout_path(&self) -> PathBuf {
        self.workdir.join(STDOUT_FILE)
    }

    /// Path of the standard error file.
    pub fn stderr_path(&self) -> PathBuf {
        self.workdir.join(STDERR_FILE)
    }

    /// Reaps the first process if it has exited, and any re-parented processes of the group.
    fn poll(&mut self) -> Result<Option<ExitStatus>> {
        if self.status.is_none() && self._child.is_none() {
            // Adopted: not our child, so no waitpid; the status file and /proc tell.
            if let Some(s) = read_exit_file(&self.workdir) {
                self.status = Some(s);
            } else if !same_process(self.pid, self.start_ticks) {
                self.status = Some(ExitStatus::from_raw(libc::SIGKILL));
                self.status_lost = true;
            }
        }
        if self.status.is_none() && self._child.is_some() {
            let mut raw = 0;
            // SAFETY: waitpid on our own child with a valid out pointer.
            let rc = unsafe { libc::waitpid(self.pid, &mut raw, libc::WNOHANG) };
            if rc == self.pid {
                self.status = Some(ExitStatus::from_raw(raw));
            } else if rc < 0 {
                return Err(AgentError::io(
                    format!("cannot wait for task {}", self.pid),
                    std::io::Error::last_os_error(),
                ));
            }
        }
        if self.status.is_some() {
            self.reap_group();
        }
        Ok(self.status)
    }

    /// Sends `sig` to the task's process group, and on a terminal to the rest of its session.
    fn signal(&self, sig: libc::c_int) {
        signal_group(self.pid, sig);
        if self.session {
            for pid in session_members(self.pid) {
                // SAFETY: plain kill(2) of a process of the task's own session.
                unsafe {
                    libc::kill(pid, sig);
                }
            }
        }
    }

    /// Whether a process of the task's group (or, on a terminal, session) is left.
    fn alive(&self) -> bool {
        group_alive(self.pid) || (self.session && !session_members(self.pid).is_empty())
    }

    /// Reaps processes of the group re-parented to us (when we are a subreaper).
    fn reap_group(&self) {
        loop {
            let mut raw = 0;
            // SAFETY: waitpid on a process group with a valid out pointer.
            let rc = unsafe { libc::waitpid(-self.pid, &mut raw, libc::WNOHANG) };
            if rc <= 0 {
                break;
            }
        }
    }

    /// Returns the exit status if the first process has exited, without blocking.
    pub fn try_wait(&mut self) -> Result<Option<ExitStatus>> {
        self.poll()
    }

    /// Waits for the first process to exit. Processes it left running in its group keep running
    /// until [`RunningTask::stop`] or the handle is dropped; [`RunningTask::wait_with_limit`] kills
    /// them as soon as the first process exits.
    pub fn wait(&mut self) -> Result<ExitStatus> {
        loop {
            if let Some(s) = self.poll()? {
                return Ok(s);
            }
            std::thread::sleep(POLL);
        }
    }

    /// Waits for the first process to exit, at most until `deadline`.
    fn wait_until(&mut self, deadline: Instant) -> Result<Option<ExitStatus>> {
        loop {
            if let Some(s) = self.poll()? {
                return Ok(Some(s));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            std::thread::sleep(POLL);
        }
    }

    /// Waits for the task to end; if it runs past `time_limit` (counted from now), stops it with
    /// `grace` and reports [`Outcome::TimedOut`].
    pub fn wait_with_limit(&mut self, time_limit: Duration, grace: Duration) -> Result<Outcome> {
        match self.wait_until(Instant::now() + time_limit)? {
            Some(s) => {
                // The first process is gone; leave nothing of the group behind.
                self.kill_group()?;
                Ok(Outcome::Exited(s))
            }
            None => Ok(Outcome::TimedOut(self.stop(grace)?)),
        }
    }

    /// Stops the task: creates the checkpoint file, sends SIGTERM to the whole process group, waits
    /// up to `grace` for the group to end, then sends SIGKILL to what is left. Returns the first
    /// process's exit status once no process of the group is left (as far as we can reap them).
    ///
    /// Failing to create the checkpoint file does not stop the protocol: the task still gets SIGTERM,
    /// its grace and SIGKILL.
    pub fn stop(&mut self, grace: Duration) -> Result<ExitStatus> {
        if let (Some(status), true) = (self.status, self.group_gone) {
            return Ok(status);
        }
        // The job may watch for this file; a failure here (work directory removed, disk full) must
        // not keep the task alive, so it is deliberately not an error.
        // Never through a link the task may have put there: the agent is root, the directory
        // the task's. An existing file is the signal already.
        {
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            if let Ok(mut f) = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .custom_flags(libc::O_NOFOLLOW)
                .mode(0o644)
                .open(&self.checkpoint)
            {
                let _ = f.write_all(b"stop\n");
            }
        }
        self.signal(libc::SIGTERM);
        let deadline = Instant::now() + grace;
        loop {
            if let Some(status) = self.poll()?
                && !self.alive()
            {
                self.group_gone = true;
                // Podman removed it already (`--rm`) unless podman itself was killed.
                self.remove_container();
                return Ok(status);
            }
            if Instant::now() >= deadline {
                break;
            }
            std::thread::sleep(POLL);
        }
        self.kill_group()
    }

    /// Sends SIGKILL to the whole group and waits for the first process; then waits a short while
    /// for the rest of the group to be reaped.
    fn kill_group(&mut self) -> Result<ExitStatus> {
        if let (Some(status), true) = (self.status, self.group_gone) {
            return Ok(status);
        }
        // First the container, whose processes are outside the group: podman then ends by
        // itself, with the container's status.
        self.remove_container();
        if self.alive() {
            self.signal(libc::SIGKILL);
        }
        let status = self.wait()?;
        let deadline = Instant::now() + Duration::from_secs(2);
        while self.alive() && Instant::now() < deadline {
            self.reap_group();
            std::thread::sleep(POLL);
        }
        self.group_gone = !self.alive();
        Ok(status)
    }
}

impl Drop for RunningTask {
    fn drop(&mut self) {
        // Never leave a task behind when its handle goes away.
        self.remove_container();
        if !self.group_gone && (self.status.is_none() || self.alive()) {
            self.signal(libc::SIGKILL);
            let _ = self.wait();
            self.reap_group();
        }
    }
}

/// Called in the forked child before `exec`: forks once more. The new child goes on to `exec` the
/// task's program; this process stays as its parent (and the group's leader), ignores the stop
/// signals, waits for the program and writes its status to `exit_fd` ([`EXIT_FILE`]), then ends
/// the same way the program did, so the agent's wait sees the program's status. The status file
/// outlives an agent that is killed, which is what lets a restarted agent report the exit.
///
/// Only async-signal-safe calls: this runs in a forked copy of a threaded process.
fn keep_status(exit_fd: libc::c_int) -> std::io::Result<()> {
    // SAFETY: fork(2) in a single-threaded child; each branch below makes only
    // async-signal-safe calls (signal, syscall, close, waitpid, pwrite, kill, _exit).
    unsafe {
        let program = libc::fork();
        if program < 0 {
            return Err(std::io::Error::last_os_error());
        }
        if program == 0 {
            return Ok(());
        }
        for sig in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
            libc::signal(sig, libc::SIG_IGN);
        }
        // Every inherited descriptor but the status file goes, above all the pipe on which the
        // spawning parent waits for the exec: holding it would block the agent until the task
        // ends. Stdout and stderr stay (they are the task's log files).
        close_fds_except(exit_fd);
        let mut raw = 0;
        loop {
            let rc = libc::waitpid(program, &mut raw, 0);
            if rc == program {
                break;
            }
            if rc < 0 && std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
                libc::_exit(127);
            }
        }
        let mut buf = [0u8; 24];
        let (word, n): (&[u8], i32) = if libc::WIFEXITED(raw) {
            (b"exit ", libc::WEXITSTATUS(raw))
        } else {
            (b"signal ", libc::WTERMSIG(raw))
        };
        let mut len = 0;
        for &b in word {
            buf[len] = b;
            len += 1;
        }
        len += write_decimal(&mut buf[len..], n as u32);
        buf[len] = b'\n';
        len += 1;
        libc::pwrite(exit_fd, buf.as_ptr().cast(), len, 0);
        if libc::WIFEXITED(raw) {
            libc::_exit(n);
        }
        libc::signal(n, libc::SIG_DFL);
        libc::kill(libc::getpid(), n);
        libc::_exit(128 + n);
    }
}

/// Closes every descriptor from 3 up except `keep`.
///
/// # Safety
/// Only in a forked child: it closes descriptors other code may think it owns.
unsafe fn close_fds_except(keep: libc::c_int) {
    // SAFETY: close_range(2) and close(2) on descriptor numbers; see the function's contract.
    unsafe {
        let ranges = [(3, keep - 1), (keep + 1, libc::c_int::MAX)];
        for (lo, hi) in ranges {
            if lo > hi {
                continue;
            }
            if libc::syscall(libc::SYS_close_range, lo as u32, hi as u32, 0u32) != 0 {
                // Kernels before 5.9: close one by one, up to a bound that covers any
                // descriptor an agent plausibly holds.
                for fd in lo..hi.min(65_536) {
                    libc::close(fd);
                }
            }
        }
    }
}

fn write_decimal(out: &mut [u8], mut n: u32) -> usize {
    let mut digits = [0u8; 10];
    let mut i = 0;
    loop {
        digits[i] = b'0' + (n % 10) as u8;
        i += 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for k in 0..i {
        out[k] = digits[i - 1 - k];
    }
    i
}

/// The status [`keep_status`] wrote in `workdir`, once it is complete.
pub fn read_exit_file(workdir: &Path) -> Option<ExitStatus> {
    let mut text = String::new();
    std::io::Read::read_to_string(
        &mut crate::logs::open_regular(&workdir.join(EXIT_FILE)).ok()?,
        &mut text,
    )
    .ok()?;
    let line = text.strip_suffix('\n')?;
    let (word, n) = line.split_once(' ')?;
    let n: i32 = n.parse().ok()?;
    match word {
        "exit" => Some(ExitStatus::from_raw((n & 0xff) << 8)),
        "signal" => Some(ExitStatus::from_raw(n & 0x7f)),
        _ => None,
    }
}

/// `(start time in clock ticks since boot, state letter)` of process `pid`, from
/// `/proc/PID/stat`.
pub fn process_start(pid: libc::pid_t) -> Option<(u64, char)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces or parentheses itself.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state); starttime is field 22.
    let state = fields.first()?.chars().next()?;
    let start = fields.get(19)?.parse().ok()?;
    Some((start, state))
}

/// The live processes of session `sid` but its leader, from `/proc`. Zombies of the session
/// that were re-parented to this process (a subreaper) are reaped on the way.
fn session_members(sid: libc::pid_t) -> Vec<libc::pid_t> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<libc::pid_t>().ok())
        else {
            continue;
        };
        if pid == sid {
            continue;
        }
        let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // Fields after the command name: state (3), ppid, pgrp, session (6).
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 2..]) else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if fields.get(3).and_then(|s| s.parse::<libc::pid_t>().ok()) != Some(sid) {
            continue;
        }
        if matches!(fields.first(), Some(&"Z") | Some(&"X")) {
            let mut raw = 0;
            // SAFETY: waitpid with WNOHANG on one pid; ECHILD when it is not our child.
            unsafe {
                libc::waitpid(pid, &mut raw, libc::WNOHANG);
            }
            continue;
        }
        out.push(pid);
    }
    out
}

/// Whether `pid` is still the live (not zombie) process that started at `start_ticks`.
fn same_process(pid: libc::pid_t, start_ticks: Option<u64>) -> bool {
    match (process_start(pid), start_ticks) {
        (Some((t, state)), Some(want)) => t == want && state != 'Z' && state != 'X',
        _ => false,
    }
}

/// Takes charge again of a task started by an earlier agent process (which has since died):
/// `pid` and `start_ticks` as that agent recorded them ([`RunningTask::start_ticks`]), `workdir`
/// the task's directory. `None` when that process is gone (or the pid now belongs to another
/// process); its status may then still be in the directory ([`read_exit_file`]).
///
/// An adopted task is not a child of this process: its end is seen through its status file and
/// `/proc`, and leftovers of its group are re-parented to init, not to this agent.
pub fn adopt(
    pid: libc::pid_t,
    start_ticks: u64,
    workdir: &Path,
    limits: LimitMechanism,
) -> Option<RunningTask> {
    if pid <= 0 || !same_process(pid, Some(start_ticks)) {
        return None;
    }
    let workdir = workdir.canonicalize().ok()?;
    Some(RunningTask {
        pid,
        checkpoint: workdir.join(CHECKPOINT_FILE),
        workdir,
        limits,
        prepared: Prepared::default(),
        status: None,
        group_gone: false,
        container: None,
        session: false,
        _child: None,
        start_ticks: Some(start_ticks),
        status_lost: false,
    })
}
