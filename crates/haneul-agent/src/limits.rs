//! Enforcing a task's CPU, memory and process-count allotment: through cgroup v2 where the
//! machine gives the agent a usable one, through cgroup v1 where it mounts writable v1
//! `memory` and `cpu` hierarchies instead, through rlimits otherwise.
//!
//! [`detect`] decides which, once, at agent start-up. A cgroup v2 hierarchy is usable only when
//! it is mounted, the agent's own cgroup offers both the `cpu` and `memory` controllers, and the
//! agent may create child cgroups there. Hosts that mount cgroup v1 with an empty v2 hierarchy
//! (`/sys/fs/cgroup/unified` with no controllers) fail the second test and get [`CgroupV1`]
//! when its hierarchies are writable, [`Rlimits`] when not. A task that asked for no CPU or
//! memory still gets limits: its share of the node by its GPUs ([`NodeShare::fill`]).
//!
//! The [`LimitBackend`] trait hides the difference from the launcher: it turns a
//! [`ResourceRequest`] into a [`Prepared`] value that the forked child applies to itself before
//! `exec` (async-signal-safe calls only), and cleans up after the task.

use crate::{AgentError, Result};
use std::fmt::Debug;
use std::fs;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

/// The CPU and memory one task was given by the scheduler. Zero means "not limited".
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ResourceRequest {
    /// CPU in thousandths of a core.
    pub cpu_milli: u64,
    /// Memory in MiB.
    pub memory_mib: u64,
    /// The task's time limit, when it has one: the rlimit fallback turns it into a CPU-time cap.
    pub time_limit_s: Option<u64>,
    /// Most processes and threads at once (`pids.max`); 0 is unlimited. Cgroups only.
    pub pids: u64,
}

/// Processes and threads a task may have at once, unless the operator says otherwise: a
/// fork bomb stops here instead of at the node's limit.
pub const DEFAULT_PIDS: u64 = 4096;
/// CPU of a task without GPUs that asked for none, in milli-cores.
pub const CPU_ONLY_DEFAULT_CPU_MILLI: u64 = 1000;
/// Memory of a task without GPUs that asked for none, in MiB.
pub const CPU_ONLY_DEFAULT_MEMORY_MIB: u64 = 4096;

/// What a node has, to give tasks that asked for nothing their share of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeShare {
    pub cpu_milli: u64,
    pub memory_mib: u64,
    pub gpus: u64,
}

impl NodeShare {
    /// `req` with what it left at 0 filled in: for a task holding `gpu_milli` thousandths of
    /// GPUs (2 GPUs: 2000; half a GPU: 500), the node's CPU and memory times its GPUs over the
    /// node's GPUs; for a task without GPUs (or a node without any),
    /// [`CPU_ONLY_DEFAULT_CPU_MILLI`] and [`CPU_ONLY_DEFAULT_MEMORY_MIB`], capped at the node.
    /// `pids` 0 becomes [`DEFAULT_PIDS`]. What the task asked for is kept.
    pub fn fill(&self, req: &ResourceRequest, gpu_milli: u64) -> ResourceRequest {
        let share = |total: u64, cpu_only: u64| {
            if gpu_milli == 0 || self.gpus == 0 {
                cpu_only.min(total.max(1))
            } else {
                // u128: a large node's MiB times milli-GPUs overflows nothing, but be sure.
                ((total as u128 * gpu_milli as u128) / (self.gpus as u128 * 1000)).max(1) as u64
            }
        };
        ResourceRequest {
            cpu_milli: if req.cpu_milli > 0 {
                req.cpu_milli
            } else {
                share(self.cpu_milli, CPU_ONLY_DEFAULT_CPU_MILLI)
            },
            memory_mib: if req.memory_mib > 0 {
                req.memory_mib
            } else {
                share(self.memory_mib, CPU_ONLY_DEFAULT_MEMORY_MIB)
            },
            time_limit_s: req.time_limit_s,
            pids: if req.pids > 0 { req.pids } else { DEFAULT_PIDS },
        }
    }
}

/// How limits are enforced on this node; reported to the server at registration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitMechanism {
    /// No limits were asked for.
    None,
    /// `setrlimit` in the child before `exec`.
    Rlimit,
    /// A cgroup v2 child cgroup per task (`cpu.max`, `memory.max`).
    CgroupV2,
    /// A cgroup v1 child cgroup per task in each of the `memory`, `cpu` and `pids` hierarchies.
    CgroupV1,
    /// The container runtime's own cgroup for the task (podman `--cpus`, `--memory`).
    Container,
}

impl LimitMechanism {
    /// The name reported in the node's status.
    pub fn as_str(self) -> &'static str {
        match self {
            LimitMechanism::None => "none",
            LimitMechanism::Rlimit => "rlimit",
            LimitMechanism::CgroupV2 => "cgroup-v2",
            LimitMechanism::CgroupV1 => "cgroup-v1",
            LimitMechanism::Container => "container",
        }
    }
}

/// What the child applies to itself between `fork` and `exec`.
#[derive(Debug, Default)]
pub struct Prepared {
    /// `(resource, value)` pairs for `setrlimit`.
    pub rlimits: Vec<(RlimitResource, u64)>,
    /// An open `cgroup.procs` of the task's cgroup: the child writes `0` to it to move itself in.
    pub cgroup_procs: Option<OwnedFd>,
    /// The task's cgroup directory, removed by [`LimitBackend::release`].
    pub cgroup_dir: Option<PathBuf>,
    /// Cgroup v1: the `cgroup.procs` of the task's cgroup in each further hierarchy, and the
    /// task's directories in all of them (the first holds every process of the task).
    pub more_procs: Vec<OwnedFd>,
    pub v1_dirs: Vec<PathBuf>,
    /// The mechanism that ended up applying these limits.
    pub mechanism: Option<LimitMechanism>,
}

/// Turns a task's allotment into what its process applies before `exec`.
pub trait LimitBackend: Debug + Send + Sync {
    /// The mechanism this backend uses.
    fn mechanism(&self) -> LimitMechanism;
    /// Prepares the limits of one task. `name` is unique per task on this node.
    fn prepare(&self, name: &str, req: &ResourceRequest) -> Result<Prepared>;
    /// Frees what [`LimitBackend::prepare`] made once the task's processes are gone. Killing
    /// stragglers the cgroup still holds (a process that left the task's process group) happens
    /// here too.
    fn release(&self, prepared: &Prepared);
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
/// The type `setrlimit` takes for its resource argument on this platform.
pub type RlimitResource = libc::__rlimit_resource_t;
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
/// The type `setrlimit` takes for its resource argument on this platform.
pub type RlimitResource = libc::c_int;

/// The fallback: memory through `RLIMIT_DATA`, CPU time through `RLIMIT_CPU`.
///
/// `RLIMIT_DATA` rather than `RLIMIT_AS` because CUDA reserves terabytes of address space it
/// never touches; `RLIMIT_DATA` counts only private writable memory. An rlimit cannot cap a CPU
/// *rate*, so the CPU allotment becomes a CPU-time cap of `cores x time limit` when the task has
/// a time limit, and is not enforced otherwise (said in `docs/agent.md`).
#[derive(Debug, Clone, Default)]
pub struct Rlimits;

impl LimitBackend for Rlimits {
    fn mechanism(&self) -> LimitMechanism {
        LimitMechanism::Rlimit
    }

    fn prepare(&self, _name: &str, req: &ResourceRequest) -> Result<Prepared> {
        let mut p = Prepared::default();
        if req.memory_mib > 0 {
            p.rlimits.push((
                libc::RLIMIT_DATA,
                req.memory_mib.saturating_mul(1024 * 1024),
            ));
        }
        if let (c, Some(t)) = (req.cpu_milli, req.time_limit_s)
            && c > 0
        {
            // Rounded up so a task given 0.5 cores for 1 s still gets a whole second.
            p.rlimits.push((libc::RLIMIT_CPU, (c * t).div_ceil(1000)));
        }
        if !p.rlimits.is_empty() {
            p.mechanism = Some(LimitMechanism::Rlimit);
        }
        Ok(p)
    }

    fn release(&self, _prepared: &Prepared) {}
}

/// One child cgroup per task under `parent`, whose `cgroup.subtree_control` enables `cpu` and
/// `memory`: `cpu.max` gets `cpu_milli x 100` us per 100 ms, `memory.max` the bytes and
/// `memory.swap.max` 0, so a task over its memory is killed rather than swapped.
#[derive(Debug, Clone)]
pub struct CgroupV2 {
    parent: PathBuf,
}

impl CgroupV2 {
    /// Uses `parent`, which must already delegate `cpu` and `memory` to its children.
    pub fn new(parent: PathBuf) -> Self {
        CgroupV2 { parent }
    }

    /// The directory under which task cgroups are made.
    pub fn parent(&self) -> &Path {
        &self.parent
    }
}

impl LimitBackend for CgroupV2 {
    fn mechanism(&self) -> LimitMechanism {
        LimitMechanism::CgroupV2
    }

    fn prepare(&self, name: &str, req: &ResourceRequest) -> Result<Prepared> {
        let dir = self.parent.join(name);
        match fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => {
                return Err(AgentError::io(
                    format!("cannot create cgroup {}", dir.display()),
                    e,
                ));
            }
        }
        let write = |file: &str, value: &str| {
            fs::write(dir.join(file), value).map_err(|e| {
                AgentError::io(
                    format!("cannot write {value:?} to {}/{file}", dir.display()),
                    e,
                )
            })
        };
        write(
            "cpu.max",
            &if req.cpu_milli > 0 {
                format!("{} 100000", (req.cpu_milli * 100).max(1000))
            } else {
                "max 100000".into()
            },
        )?;
        if req.memory_mib > 0 {
            write(
                "memory.max",
                &req.memory_mib.saturating_mul(1024 * 1024).to_string(),
            )?;
            // Absent when the kernel has no swap accounting; nothing to turn off then.
            if dir.join("memory.swap.max").exists() {
                write("memory.swap.max", "0")?;
            }
        } else {
            write("memory.max", "max")?;
        }
        let procs = fs::OpenOptions::new()
            .write(true)
            .open(dir.join("cgroup.procs"))
            .map_err(|e| {
                AgentError::io(format!("cannot open {}/cgroup.procs", dir.display()), e)
            })?;
        if req.pids > 0 && dir.join("pids.max").exists() {
            write("pids.max", &req.pids.to_string())?;
        }
        Ok(Prepared {
            rlimits: Vec::new(),
            cgroup_procs: Some(procs.into()),
            cgroup_dir: Some(dir),
            mechanism: Some(LimitMechanism::CgroupV2),
            ..Prepared::default()
        })
    }

    fn release(&self, prepared: &Prepared) {
        let Some(dir) = &prepared.cgroup_dir else {
            return;
        };
        // cgroup.kill (Linux 5.14) ends everything in the cgroup, including processes that
        // started their own session and so escaped the process-group SIGKILL.
        let _ = fs::write(dir.join("cgroup.kill"), "1");
        // Removal fails while the killed processes are still exiting; a cgroup left behind
        // holds nothing that runs and has a name no later task reuses.
        for _ in 0..200 {
            if fs::remove_dir(dir).is_ok() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
}

/// One child cgroup per task in each cgroup v1 hierarchy the agent found (as Slurm's
/// cgroup/v1 plugin does): `memory.limit_in_bytes` (and `memory.memsw.limit_in_bytes`, equal,
/// where swap is accounted, so a task over its memory is killed rather than swapped),
/// `cpu.cfs_quota_us` over a `cpu.cfs_period_us` of 100 ms, and `pids.max`. Cgroup v1 has no
/// `cgroup.kill`: [`LimitBackend::release`] kills what is left in the cgroup by pid.
#[derive(Debug, Clone)]
pub struct CgroupV1 {
    memory: PathBuf,
    cpu: PathBuf,
    pids: Option<PathBuf>,
}

impl CgroupV1 {
    /// Task cgroups go under these directories (created if missing).
    pub fn new(memory: PathBuf, cpu: PathBuf, pids: Option<PathBuf>) -> Self {
        CgroupV1 { memory, cpu, pids }
    }

    /// The parent of the task cgroups in the memory hierarchy.
    pub fn memory_parent(&self) -> &Path {
        &self.memory
    }
}

fn write_file(dir: &Path, file: &str, value: &str) -> Result<()> {
    fs::write(dir.join(file), value).map_err(|e| {
        AgentError::io(
            format!("cannot write {value:?} to {}/{file}", dir.display()),
            e,
        )
    })
}

fn open_procs(dir: &Path) -> Result<OwnedFd> {
    fs::OpenOptions::new()
        .write(true)
        .open(dir.join("cgroup.procs"))
        .map(Into::into)
        .map_err(|e| AgentError::io(format!("cannot open {}/cgroup.procs", dir.display()), e))
}

fn make_dir(dir: &Path) -> Result<()> {
    match fs::create_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) => Err(AgentError::io(
            format!("cannot create cgroup {}", dir.display()),
            e,
        )),
    }
}

impl LimitBackend for CgroupV1 {
    fn mechanism(&self) -> LimitMechanism {
        LimitMechanism::CgroupV1
    }

    fn prepare(&self, name: &str, req: &ResourceRequest) -> Result<Prepared> {
        let mem = self.memory.join(name);
        let cpu = self.cpu.join(name);
        make_dir(&mem)?;
        make_dir(&cpu)?;
        let mut dirs = vec![mem.clone(), cpu.clone()];
        // Unlimited is -1 in v1; a limit set by an earlier task of this name is overwritten.
        let bytes = if req.memory_mib > 0 {
            req.memory_mib.saturating_mul(1024 * 1024).to_string()
        } else {
            "-1".to_string()
        };
        // memsw must stay >= the memory limit: lower it after, raise it before.
        let memsw = mem.join("memory.memsw.limit_in_bytes").exists();
        if memsw && req.memory_mib == 0 {
            write_file(&mem, "memory.memsw.limit_in_bytes", &bytes)?;
        }
        write_file(&mem, "memory.limit_in_bytes", &bytes)?;
        if memsw && req.memory_mib > 0 {
            write_file(&mem, "memory.memsw.limit_in_bytes", &bytes)?;
        }
        write_file(&cpu, "cpu.cfs_period_us", "100000")?;
        write_file(
            &cpu,
            "cpu.cfs_quota_us",
            &if req.cpu_milli > 0 {
                (req.cpu_milli * 100).max(1000).to_string()
            } else {
                "-1".into()
            },
        )?;
        let mut more = vec![open_procs(&cpu)?];
        if let Some(parent) = &self.pids {
            let p = parent.join(name);
            make_dir(&p)?;
            write_file(
                &p,
                "pids.max",
                &if req.pids > 0 {
                    req.pids.to_string()
                } else {
                    "max".into()
                },
            )?;
            more.push(open_procs(&p)?);
            dirs.push(p);
        }
        Ok(Prepared {
            rlimits: Vec::new(),
            cgroup_procs: Some(open_procs(&mem)?),
            cgroup_dir: None,
            more_procs: more,
            v1_dirs: dirs,
            mechanism: Some(LimitMechanism::CgroupV1),
        })
    }

    fn release(&self, prepared: &Prepared) {
        let Some(first) = prepared.v1_dirs.first() else {
            return;
        };
        // Every process of the task is in the memory cgroup, including those that left its
        // process group with setsid: kill them by pid until none is left (new ones may fork
        // while we read), then remove the directories.
        for _ in 0..200 {
            let pids: Vec<libc::pid_t> = fs::read_to_string(first.join("cgroup.procs"))
                .unwrap_or_default()
                .lines()
                .filter_map(|l| l.trim().parse().ok())
                .collect();
            if pids.is_empty() {
                break;
            }
            for pid in pids {
                // SAFETY: plain kill(2) of a pid read from the task's own cgroup.
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                }
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        for dir in &prepared.v1_dirs {
            for _ in 0..200 {
                if fs::remove_dir(dir).is_ok() || !dir.exists() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        }
    }
}

/// The mount point of the cgroup v1 hierarchy holding `controller` in a `mountinfo` text.
pub fn cgroup1_mount(mountinfo: &str, controller: &str) -> Option<PathBuf> {
    mountinfo.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        let mut f = right.split_whitespace();
        if f.next()? != "cgroup" {
            return None;
        }
        let superopts = f.nth(1)?;
        superopts
            .split(',')
            .any(|o| o == controller)
            .then(|| left.split_whitespace().nth(4).map(PathBuf::from))?
    })
}

/// The process's cgroup in the v1 hierarchy holding `controller` (`N:a,b:PATH` lines of
/// `/proc/self/cgroup`).
pub fn v1_path(self_cgroup: &str, controller: &str) -> Option<String> {
    self_cgroup.lines().find_map(|l| {
        let mut f = l.splitn(3, ':');
        let (_, ctrls, path) = (f.next()?, f.next()?, f.next()?);
        ctrls
            .split(',')
            .any(|c| c == controller)
            .then(|| path.trim().to_string())
    })
}

fn try_cgroup_v1(probe: &CgroupProbe) -> std::result::Result<(CgroupV1, String), String> {
    let parent = |controller: &str| -> std::result::Result<PathBuf, String> {
        let mount = cgroup1_mount(&probe.mountinfo, controller)
            .ok_or_else(|| format!("no cgroup v1 {controller} hierarchy is mounted"))?;
        let mount = prefixed(&probe.root_prefix, &mount);
        let rel = v1_path(&probe.self_cgroup, controller).unwrap_or_else(|| "/".into());
        let dir = mount.join(rel.trim_start_matches('/')).join("haneul-tasks");
        if let Err(e) = fs::create_dir_all(&dir) {
            return Err(format!("cannot create cgroup {}: {e}", dir.display()));
        }
        probe_writable(&dir)?;
        Ok(dir)
    };
    let memory = parent("memory")?;
    let cpu = parent("cpu")?;
    let pids = parent("pids").ok();
    let reason = format!(
        "cgroup v1 under {} and {}{}",
        memory.display(),
        cpu.display(),
        pids.as_ref().map_or(
            " (no pids hierarchy: process counts are not limited)".to_string(),
            |p| { format!(" and {}", p.display()) }
        )
    );
    Ok((CgroupV1::new(memory, cpu, pids), reason))
}

/// Which limit mechanism this machine supports, and why.
#[derive(Debug)]
pub struct Detection {
    /// The backend to use.
    pub backend: Box<dyn LimitBackend>,
    /// Why this one: for the agent's log and the docs.
    pub reason: String,
}

/// Where [`detect`] looks: the real system by default, a fake tree in tests.
#[derive(Debug, Clone)]
pub struct CgroupProbe {
    /// Contents of `/proc/self/mountinfo`.
    pub mountinfo: String,
    /// Contents of `/proc/self/cgroup`.
    pub self_cgroup: String,
    /// Prefix added to the mount point found in `mountinfo` (empty for the real system).
    pub root_prefix: PathBuf,
}

impl CgroupProbe {
    /// Reads the running process's view of the system.
    pub fn system() -> Self {
        CgroupProbe {
            mountinfo: fs::read_to_string("/proc/self/mountinfo").unwrap_or_default(),
            self_cgroup: fs::read_to_string("/proc/self/cgroup").unwrap_or_default(),
            root_prefix: PathBuf::new(),
        }
    }
}

/// The mount point of the cgroup v2 hierarchy in a `mountinfo` text, if any.
pub fn cgroup2_mount(mountinfo: &str) -> Option<PathBuf> {
    mountinfo.lines().find_map(|line| {
        // Fields: id parent dev root mountpoint opts [optional...] - fstype source superopts
        let (left, right) = line.split_once(" - ")?;
        let fstype = right.split_whitespace().next()?;
        if fstype != "cgroup2" {
            return None;
        }
        left.split_whitespace().nth(4).map(PathBuf::from)
    })
}

/// The process's cgroup in the v2 hierarchy (the `0::PATH` line of `/proc/self/cgroup`).
pub fn unified_path(self_cgroup: &str) -> Option<String> {
    self_cgroup
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(|p| p.trim().to_string())
}

fn controllers(dir: &Path, file: &str) -> Vec<String> {
    fs::read_to_string(dir.join(file))
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

const NEEDED: [&str; 2] = ["cpu", "memory"];

/// Picks the limit backend. With `cgroup_parent` (a cgroup directory delegated to the agent,
/// for example by systemd's `Delegate=yes`) only that directory is tried; otherwise the agent's
/// own cgroup, into which it makes a `haneul-tasks` child. When cgroup v2 is not usable, the
/// writable cgroup v1 `memory` and `cpu` hierarchies (with `pids` when mounted) are used, in
/// a `haneul-tasks` child of the agent's cgroup in each; failing that, [`Rlimits`], with the
/// reasons.
pub fn detect(probe: &CgroupProbe, cgroup_parent: Option<&Path>) -> Detection {
    let why_not_v2 = match try_cgroup(probe, cgroup_parent) {
        Ok((backend, reason)) => {
            return Detection {
                backend: Box::new(backend),
                reason,
            };
        }
        Err(why) => why,
    };
    if cgroup_parent.is_some() {
        return Detection {
            backend: Box::new(Rlimits),
            reason: format!("rlimits, because {why_not_v2}"),
        };
    }
    match try_cgroup_v1(probe) {
        Ok((backend, reason)) => Detection {
            backend: Box::new(backend),
            reason: format!("{reason}, because {why_not_v2}"),
        },
        Err(why_not_v1) => Detection {
            backend: Box::new(Rlimits),
            reason: format!("rlimits, because {why_not_v2}, and {why_not_v1}"),
        },
    }
}

fn try_cgroup(
    probe: &CgroupProbe,
    cgroup_parent: Option<&Path>,
) -> std::result::Result<(CgroupV2, String), String> {
    let Some(mount) = cgroup2_mount(&probe.mountinfo) else {
        return Err("no cgroup v2 hierarchy is mounted".into());
    };
    let mount = prefixed(&probe.root_prefix, &mount);
    let base = match cgroup_parent {
        Some(p) => p.to_path_buf(),
        None => {
            let Some(rel) = unified_path(&probe.self_cgroup) else {
                return Err("this process has no cgroup v2 path in /proc/self/cgroup".into());
            };
            mount.join(rel.trim_start_matches('/'))
        }
    };
    let offered = controllers(&base, "cgroup.controllers");
    let missing: Vec<&str> = NEEDED
        .iter()
        .copied()
        .filter(|c| !offered.iter().any(|o| o == c))
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "the cgroup v2 hierarchy at {} offers no {} controller (cgroup v1 holds them on this \
             host)",
            base.display(),
            missing.join(" or ")
        ));
    }
    if cgroup_parent.is_some() {
        // An operator-given parent must already delegate both controllers.
        let enabled = controllers(&base, "cgroup.subtree_control");
        if !NEEDED.iter().all(|c| enabled.iter().any(|e| e == c)) {
            return Err(format!(
                "--cgroup-parent {} does not enable cpu and memory in its cgroup.subtree_control",
                base.display()
            ));
        }
        probe_writable(&base)?;
        return Ok((
            CgroupV2::new(base.clone()),
            format!("cgroup v2 under {}", base.display()),
        ));
    }
    // A cgroup with processes in it cannot enable controllers for its children ("no internal
    // processes"), so the agent moves itself into a leaf and puts tasks in a sibling.
    let agent_leaf = base.join("haneul-agent");
    let tasks = base.join("haneul-tasks");
    for d in [&agent_leaf, &tasks] {
        if let Err(e) = fs::create_dir(d)
            && e.kind() != std::io::ErrorKind::AlreadyExists
        {
            return Err(format!("cannot create cgroup {}: {e}", d.display()));
        }
    }
    fs::write(
        agent_leaf.join("cgroup.procs"),
        std::process::id().to_string(),
    )
    .map_err(|e| format!("cannot move the agent into {}: {e}", agent_leaf.display()))?;
    for d in [&base, &tasks] {
        fs::write(d.join("cgroup.subtree_control"), "+cpu +memory").map_err(|e| {
            format!(
                "cannot enable cpu and memory in {}/cgroup.subtree_control: {e}",
                d.display()
            )
        })?;
    }
    probe_writable(&tasks)?;
    Ok((
        CgroupV2::new(tasks.clone()),
        format!("cgroup v2 under {}", tasks.display()),
    ))
}

fn probe_writable(dir: &Path) -> std::result::Result<(), String> {
    let probe = dir.join(format!("haneul-probe-{}", std::process::id()));
    fs::create_dir(&probe)
        .map_err(|e| format!("cannot create a task cgroup in {}: {e}", dir.display()))?;
    let _ = fs::remove_dir(&probe);
    Ok(())
}

fn prefixed(prefix: &Path, p: &Path) -> PathBuf {
    if prefix.as_os_str().is_empty() {
        p.to_path_buf()
    } else {
        prefix.join(p.strip_prefix("/").unwrap_or(p))
    }
}

/// Applies `prepared` to the calling process. Runs in the forked child before `exec`: only
/// async-signal-safe calls, no allocation.
pub(crate) fn apply_in_child(
    rlimits: &[(RlimitResource, u64)],
    cgroup_procs: &[libc::c_int],
) -> std::io::Result<()> {
    for &fd in cgroup_procs {
        // "0" means the writing process.
        // SAFETY: write(2) of a static one-byte buffer to an fd the parent opened for us.
        if unsafe { libc::write(fd, b"0".as_ptr().cast(), 1) } != 1 {
            return Err(std::io::Error::last_os_error());
        }
    }
    for &(resource, value) in rlimits {
        let lim = libc::rlimit {
            rlim_cur: value as libc::rlim_t,
            rlim_max: value as libc::rlim_t,
        };
        // SAFETY: setrlimit is async-signal-safe and reads only `lim`.
        if unsafe { libc::setrlimit(resource, &lim) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// The raw fds of a prepared task's `cgroup.procs` files, for the child.
pub(crate) fn procs_fds(p: &Prepared) -> Vec<libc::c_int> {
    p.cgroup_procs
        .iter()
        .chain(&p.more_procs)
        .map(|f| f.as_raw_fd())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n\
        35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n\
        41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n";

    #[test]
    fn finds_the_v2_mount_and_path() {
        assert_eq!(
            cgroup2_mount(HYBRID),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
        assert_eq!(cgroup2_mount("1 2 0:1 / /proc rw - proc proc rw\n"), None);
        assert_eq!(
            unified_path("4:memory:/x\n0::/system.slice/haneul.service\n").as_deref(),
            Some("/system.slice/haneul.service")
        );
    }

    #[test]
    fn rlimits_from_request() {
        let p = Rlimits
            .prepare(
                "t",
                &ResourceRequest {
                    cpu_milli: 1500,
                    memory_mib: 2,
                    time_limit_s: Some(3),
                    pids: 0,
                },
            )
            .unwrap();
        assert_eq!(
            p.rlimits,
            vec![(libc::RLIMIT_DATA, 2 * 1024 * 1024), (libc::RLIMIT_CPU, 5)]
        );
        assert_eq!(p.mechanism, Some(LimitMechanism::Rlimit));
        let none = Rlimits.prepare("t", &ResourceRequest::default()).unwrap();
        assert!(none.rlimits.is_empty() && none.mechanism.is_none());
    }

    #[test]
    fn finds_v1_hierarchies() {
        let info = format!(
            "{HYBRID}32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n"
        );
        assert_eq!(
            cgroup1_mount(&info, "memory"),
            Some(PathBuf::from("/sys/fs/cgroup/memory"))
        );
        assert_eq!(
            cgroup1_mount(&info, "cpu"),
            Some(PathBuf::from("/sys/fs/cgroup/cpu,cpuacct"))
        );
        assert_eq!(cgroup1_mount(&info, "pids"), None);
        let me = "5:cpu,cpuacct:/a\n4:memory:/b/c\n0::/\n";
        assert_eq!(v1_path(me, "memory").as_deref(), Some("/b/c"));
        assert_eq!(v1_path(me, "cpuacct").as_deref(), Some("/a"));
        assert_eq!(v1_path(me, "pids"), None);
    }

    #[test]
    fn shares_by_gpus() {
        let node = NodeShare {
            cpu_milli: 64_000,
            memory_mib: 1_024_000,
            gpus: 8,
        };
        let asked_nothing = ResourceRequest::default();
        let two = node.fill(&asked_nothing, 2000);
        assert_eq!(
            (two.cpu_milli, two.memory_mib, two.pids),
            (16_000, 256_000, DEFAULT_PIDS)
        );
        let half = node.fill(&asked_nothing, 500);
        assert_eq!((half.cpu_milli, half.memory_mib), (4_000, 64_000));
        let cpu_only = node.fill(&asked_nothing, 0);
        assert_eq!(
            (cpu_only.cpu_milli, cpu_only.memory_mib),
            (CPU_ONLY_DEFAULT_CPU_MILLI, CPU_ONLY_DEFAULT_MEMORY_MIB)
        );
        let asked = ResourceRequest {
            cpu_milli: 500,
            memory_mib: 7,
            time_limit_s: Some(9),
            pids: 10,
        };
        assert_eq!(node.fill(&asked, 2000), asked, "what was asked is kept");
        let tiny = NodeShare {
            cpu_milli: 500,
            memory_mib: 100,
            gpus: 0,
        };
        let t = tiny.fill(&asked_nothing, 0);
        assert_eq!(
            (t.cpu_milli, t.memory_mib),
            (500, 100),
            "capped at the node"
        );
    }
}
