//! Enforcing a task's CPU and memory allotment: through cgroup v2 where the machine gives the
//! agent a usable one, through rlimits otherwise.
//!
//! [`detect`] decides which, once, at agent start-up. A cgroup v2 hierarchy is usable only when
//! it is mounted, the agent's own cgroup offers both the `cpu` and `memory` controllers, and the
//! agent may create child cgroups there. Hosts that mount cgroup v1 with an empty v2 hierarchy
//! (`/sys/fs/cgroup/unified` with no controllers) fail the second test and get [`Rlimits`].
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
        Ok(Prepared {
            rlimits: Vec::new(),
            cgroup_procs: Some(procs.into()),
            cgroup_dir: Some(dir),
            mechanism: Some(LimitMechanism::CgroupV2),
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
/// own cgroup, into which it makes a `haneul-tasks` child. Falls back to [`Rlimits`] with the
/// reason when cgroup v2 is not usable.
pub fn detect(probe: &CgroupProbe, cgroup_parent: Option<&Path>) -> Detection {
    match try_cgroup(probe, cgroup_parent) {
        Ok((backend, reason)) => Detection {
            backend: Box::new(backend),
            reason,
        },
        Err(why) => Detection {
            backend: Box::new(Rlimits),
            reason: format!("rlimits, because {why}"),
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
    cgroup_procs: Option<libc::c_int>,
) -> std::io::Result<()> {
    if let Some(fd) = cgroup_procs {
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

/// The raw fd of a prepared cgroup, for the child.
pub(crate) fn procs_fd(p: &Prepared) -> Option<libc::c_int> {
    p.cgroup_procs.as_ref().map(|f| f.as_raw_fd())
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
}
