//! Sharing one physical GPU: CUDA MPS for tasks holding a fraction of a GPU, and MIG
//! instances reported as GPUs of their own.
//!
//! **MPS.** A task given less than a whole GPU runs as an MPS client of that GPU's control
//! daemon, which the agent starts (`nvidia-cuda-mps-control -f`, in the foreground so the
//! agent is its parent and sees it end) and restarts when it dies ([`MpsSupervisor`]). The
//! client's environment ([`client_env`]) names the daemon's pipe and log directories and caps
//! the client's share of the GPU's SMs (`CUDA_MPS_ACTIVE_THREAD_PERCENTAGE`) and its device
//! memory (`CUDA_MPS_PINNED_DEVICE_MEM_LIMIT`) at the task's share.
//!
//! A client's environment can only lower the limits its MPS server has (NVIDIA's MPS
//! documentation), and a hostile task controls its own environment, so the limits that hold
//! are the server's: before a task of uid U starts, the agent has the daemon start U's server
//! (`start_server -uid U`), finds its pid (`get_server_list`, the process owned by U), and sets
//! that server's SM share and pinned memory limit (`set_active_thread_percentage`,
//! `set_device_pinned_mem_limit`) at the task's share ([`MpsSupervisor::limit_server`]). MPS
//! runs one server per uid on a GPU at a time, so tasks of the same user on one GPU share one
//! server whose limits are the largest share among them (each still gets its own in its
//! environment), and a task of another user waits until that server's clients are done.
//!
//! **MIG.** A GPU partitioned with MIG is reported as its instances ([`mig_inventory`]), each
//! a GPU of the model `PARENT-MIG-PROFILE` (e.g. `H200-MIG-3g.71gb`) whose `uuid` is the MIG
//! UUID the task gets in `CUDA_VISIBLE_DEVICES`; the engine then schedules instances as their
//! own GPU class through the ordinary model constraint.

use crate::gpus::Gpu;
use crate::{AgentError, Result};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The MPS control program's name, looked up on `PATH`.
pub const MPS_CONTROL: &str = "nvidia-cuda-mps-control";

/// The pipe and log directories of GPU `gpu`'s control daemon under `base`.
pub fn mps_dirs(base: &Path, gpu: u32) -> (PathBuf, PathBuf) {
    let d = base.join(format!("gpu-{gpu}"));
    (d.join("pipe"), d.join("log"))
}

/// The environment of an MPS client holding `milli` thousandths of GPU `gpu`, which has
/// `gpu_memory_mib` of memory: the daemon's directories, the SM share in percent (rounded up,
/// at least 1) and the pinned device memory limit in MiB (rounded down) for the client's
/// device 0 (the task sees only its GPU).
pub fn client_env(base: &Path, gpu: u32, milli: u64, gpu_memory_mib: u64) -> Vec<(String, String)> {
    let (pipe, log) = mps_dirs(base, gpu);
    let percent = milli.div_ceil(10).clamp(1, 100);
    let memory = gpu_memory_mib * milli.min(1000) / 1000;
    vec![
        ("CUDA_MPS_PIPE_DIRECTORY".into(), pipe.display().to_string()),
        ("CUDA_MPS_LOG_DIRECTORY".into(), log.display().to_string()),
        (
            "CUDA_MPS_ACTIVE_THREAD_PERCENTAGE".into(),
            percent.to_string(),
        ),
        (
            "CUDA_MPS_PINNED_DEVICE_MEM_LIMIT".into(),
            format!("0={memory}M"),
        ),
    ]
}

/// Whether a task holding `milli_per_gpu` of each of its GPUs runs under MPS: a fraction of a
/// real GPU.
pub fn needs_mps(milli_per_gpu: u64, real_gpus: bool, gpus: usize) -> bool {
    real_gpus && gpus > 0 && milli_per_gpu > 0 && milli_per_gpu < 1000
}

/// The control daemon commands that hold MPS server `pid` (of a GPU's daemon, which sees the
/// GPU as its device 0) to `milli` thousandths of the GPU's SMs and `gpu_memory_mib`.
pub fn server_limit_commands(pid: u32, milli: u64, gpu_memory_mib: u64) -> [String; 2] {
    let percent = milli.div_ceil(10).clamp(1, 100);
    let memory = gpu_memory_mib * milli.min(1000) / 1000;
    [
        format!("set_active_thread_percentage {pid} {percent}"),
        format!("set_device_pinned_mem_limit {pid} 0 {memory}M"),
    ]
}

/// Starts and supervises one MPS control daemon per shared GPU.
#[derive(Debug)]
pub struct MpsSupervisor {
    program: PathBuf,
    base: PathBuf,
    daemons: Mutex<BTreeMap<u32, Child>>,
    /// The share each MPS server was last limited to, by (GPU, server pid): a server's limit
    /// only grows while it lives, so that a second task of its user never shrinks the first's.
    limited: Mutex<BTreeMap<(u32, u32), u64>>,
    /// What CUDA calls each GPU, where not its index (MIG instances by UUID).
    names: BTreeMap<u32, String>,
}

impl MpsSupervisor {
    /// Daemons run `program` (normally [`MPS_CONTROL`]) with their directories under `base`.
    pub fn new(program: PathBuf, base: PathBuf) -> Self {
        MpsSupervisor {
            program,
            base,
            daemons: Mutex::new(BTreeMap::new()),
            limited: Mutex::new(BTreeMap::new()),
            names: BTreeMap::new(),
        }
    }

    /// Names each GPU of `inventory` to its daemon as CUDA knows it ([`device_names`]): a
    /// daemon of a MIG instance is given the instance's UUID.
    pub fn naming(mut self, inventory: &[Gpu]) -> Self {
        let indexes: Vec<u32> = inventory.iter().map(|g| g.index).collect();
        self.names = indexes
            .iter()
            .copied()
            .zip(device_names(inventory, &indexes))
            .collect();
        self
    }

    /// Sends one command to GPU `gpu`'s daemon and returns what it answered.
    pub fn control(&self, gpu: u32, command: &str) -> Result<String> {
        let mut child = Command::new(&self.program)
            .env_clear()
            .env("PATH", crate::launch::DEFAULT_PATH)
            .envs(self.env(gpu))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| {
                AgentError::io(
                    format!("cannot run {} for GPU {gpu}", self.program.display()),
                    e,
                )
            })?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(format!("{command}\n").as_bytes())
                .map_err(|e| AgentError::io(format!("cannot send `{command}` to MPS"), e))?;
        }
        let out = child
            .wait_with_output()
            .map_err(|e| AgentError::io(format!("no answer to `{command}` from MPS"), e))?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Makes GPU `gpu`'s daemon run a server for `uid` and holds that server to `milli` of the
    /// GPU (SMs and `gpu_memory_mib` of memory), or to more if one of the user's tasks on the
    /// GPU already holds more. Returns the server's pid.
    pub fn limit_server(&self, gpu: u32, uid: u32, milli: u64, gpu_memory_mib: u64) -> Result<u32> {
        // Harmless when the server already runs: the daemon says so and changes nothing.
        self.control(gpu, &format!("start_server -uid {uid}"))?;
        let deadline = Instant::now() + Duration::from_secs(10);
        let pid = loop {
            let list = self.control(gpu, "get_server_list")?;
            let found = list
                .split_whitespace()
                .filter_map(|w| w.parse::<u32>().ok())
                .find(|pid| process_uid(*pid) == Some(uid));
            if let Some(pid) = found {
                break pid;
            }
            if Instant::now() >= deadline {
                return Err(AgentError::Spec(format!(
                    "the MPS control daemon of GPU {gpu} started no server for uid {uid} \
                     (servers: {})",
                    list.trim()
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let share = {
            let mut limited = self.limited.lock().unwrap_or_else(|e| e.into_inner());
            let share = limited.entry((gpu, pid)).or_insert(0);
            if *share >= milli {
                return Ok(pid);
            }
            *share = milli;
            milli
        };
        for command in server_limit_commands(pid, share, gpu_memory_mib) {
            self.control(gpu, &command)?;
        }
        Ok(pid)
    }

    /// The daemon environment of GPU `gpu`.
    fn env(&self, gpu: u32) -> Vec<(String, String)> {
        let (pipe, log) = mps_dirs(&self.base, gpu);
        let device = self
            .names
            .get(&gpu)
            .cloned()
            .unwrap_or_else(|| gpu.to_string());
        vec![
            ("CUDA_VISIBLE_DEVICES".into(), device),
            ("CUDA_DEVICE_ORDER".into(), "PCI_BUS_ID".into()),
            ("CUDA_MPS_PIPE_DIRECTORY".into(), pipe.display().to_string()),
            ("CUDA_MPS_LOG_DIRECTORY".into(), log.display().to_string()),
        ]
    }

    /// Makes sure GPU `gpu`'s daemon runs: starts it the first time, and again when it has
    /// ended. Returns whether it was (re)started.
    pub fn ensure(&self, gpu: u32) -> Result<bool> {
        let mut daemons = self.daemons.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(child) = daemons.get_mut(&gpu) {
            match child.try_wait() {
                Ok(None) => return Ok(false),
                Ok(Some(status)) => {
                    tracing_free_log(&format!(
                        "MPS control daemon of GPU {gpu} ended ({status}); restarting it"
                    ));
                }
                Err(_) => {}
            }
        }
        let (pipe, log) = mps_dirs(&self.base, gpu);
        let gpu_dir = self.base.join(format!("gpu-{gpu}"));
        for d in [&self.base, &gpu_dir, &pipe, &log] {
            std::fs::create_dir_all(d).map_err(|e| {
                AgentError::io(format!("cannot create MPS directory {}", d.display()), e)
            })?;
            // Clients of every job owner reach the daemon through the pipe directory.
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).map_err(|e| {
                AgentError::io(format!("cannot set the mode of {}", d.display()), e)
            })?;
        }
        let child = Command::new(&self.program)
            .arg("-f")
            .env_clear()
            .env("PATH", crate::launch::DEFAULT_PATH)
            .envs(self.env(gpu))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| {
                AgentError::io(
                    format!(
                        "cannot start the MPS control daemon {} for GPU {gpu}",
                        self.program.display()
                    ),
                    e,
                )
            })?;
        daemons.insert(gpu, child);
        Ok(true)
    }

    /// For a task of `uid` holding `milli` of each of `gpus` (of `gpu_memory_mib` each): makes
    /// sure their daemons run, that the user's server on each is held to the share
    /// ([`Self::limit_server`]), and gives the client environment (for the first GPU: CUDA's
    /// MPS variables are per process, and a fractional task holds one GPU).
    pub fn client(
        &self,
        gpus: &[u32],
        uid: u32,
        milli: u64,
        gpu_memory_mib: u64,
    ) -> Result<Vec<(String, String)>> {
        for g in gpus {
            self.ensure(*g)?;
            self.limit_server(*g, uid, milli, gpu_memory_mib)?;
        }
        Ok(gpus
            .first()
            .map(|g| client_env(&self.base, *g, milli, gpu_memory_mib))
            .unwrap_or_default())
    }

    /// The pid of GPU `gpu`'s daemon, while it runs.
    pub fn daemon_pid(&self, gpu: u32) -> Option<u32> {
        let mut daemons = self.daemons.lock().unwrap_or_else(|e| e.into_inner());
        let child = daemons.get_mut(&gpu)?;
        matches!(child.try_wait(), Ok(None)).then(|| child.id())
    }

    /// Asks every daemon to quit (`quit` on the control program's standard input, as the MPS
    /// documentation says), waits up to `grace` for each, then kills what is left.
    pub fn shutdown(&self, grace: Duration) {
        let mut daemons = self.daemons.lock().unwrap_or_else(|e| e.into_inner());
        for (gpu, child) in daemons.iter_mut() {
            if let Ok(mut quit) = Command::new(&self.program)
                .env_clear()
                .env("PATH", crate::launch::DEFAULT_PATH)
                .envs(self.env(*gpu))
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
            {
                if let Some(mut stdin) = quit.stdin.take() {
                    let _ = stdin.write_all(b"quit\n");
                }
                let _ = quit.wait();
            }
            let until = Instant::now() + grace;
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        daemons.clear();
    }
}

impl Drop for MpsSupervisor {
    fn drop(&mut self) {
        self.shutdown(Duration::from_secs(2));
    }
}

/// The real uid of process `pid`, from `/proc/PID/status`.
fn process_uid(pid: u32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

// The library logs nothing by itself elsewhere; a daemon's restart is worth a line on stderr,
// which the agent's log captures.
fn tracing_free_log(line: &str) {
    eprintln!("haneul agent: {line}");
}

/// One MIG instance as NVML describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigFact {
    /// Index of the parent GPU.
    pub parent: u32,
    /// The parent's name, e.g. `NVIDIA H200`.
    pub parent_name: String,
    /// The instance's device name, e.g. `NVIDIA H200 MIG 3g.71gb`.
    pub name: String,
    /// The MIG UUID (`MIG-...`), what `CUDA_VISIBLE_DEVICES` takes.
    pub uuid: String,
    /// The instance's memory.
    pub memory_bytes: Option<u64>,
}

/// The profile of a MIG device name: `NVIDIA H200 MIG 3g.71gb` gives `3g.71gb`.
pub fn mig_profile(name: &str) -> Option<&str> {
    let (_, p) = name.rsplit_once(" MIG ")?;
    let p = p.trim();
    (!p.is_empty() && !p.contains(' ')).then_some(p)
}

/// The GPUs a node reports for its MIG instances: one per instance, numbered from 0 in the
/// order of their parents' indexes (then NVML's order within a parent), of model
/// `PARENT-MIG-PROFILE` (the parent's name without `NVIDIA `, spaces as dashes), with the MIG
/// UUID. An instance whose name carries no profile is an error naming it.
pub fn mig_inventory(facts: &[MigFact]) -> Result<Vec<Gpu>> {
    let mut sorted: Vec<&MigFact> = facts.iter().collect();
    sorted.sort_by_key(|f| f.parent);
    sorted
        .into_iter()
        .enumerate()
        .map(|(i, f)| {
            let profile = mig_profile(&f.name).ok_or_else(|| {
                AgentError::Spec(format!(
                    "MIG device {} ({}) has no profile in its name",
                    f.uuid, f.name
                ))
            })?;
            let parent = f
                .parent_name
                .trim()
                .trim_start_matches("NVIDIA ")
                .replace(' ', "-");
            Ok(Gpu {
                index: i as u32,
                model: format!("{parent}-MIG-{profile}"),
                memory_mib: f.memory_bytes.map(|b| b / (1024 * 1024)),
                uuid: f.uuid.clone(),
                simulated: false,
                nvlink_peers: Vec::new(),
            })
        })
        .collect()
}

/// What CUDA and the container runtime call the GPUs `indexes` of `inventory`: MIG
/// instances by their UUID (CUDA takes no index for them), whole GPUs by index.
pub fn device_names(inventory: &[Gpu], indexes: &[u32]) -> Vec<String> {
    indexes
        .iter()
        .map(|i| match inventory.iter().find(|g| g.index == *i) {
            Some(g) if g.uuid.starts_with("MIG-") => g.uuid.clone(),
            _ => i.to_string(),
        })
        .collect()
}

/// `CUDA_VISIBLE_DEVICES` for a task given `indexes` of `inventory` ([`device_names`]).
pub fn visible_devices(inventory: &[Gpu], indexes: &[u32]) -> String {
    device_names(inventory, indexes).join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_environment_matches_the_share() {
        let env: BTreeMap<String, String> =
            client_env(Path::new("/run/haneul-mps"), 3, 500, 143_771)
                .into_iter()
                .collect();
        assert_eq!(env["CUDA_MPS_PIPE_DIRECTORY"], "/run/haneul-mps/gpu-3/pipe");
        assert_eq!(env["CUDA_MPS_LOG_DIRECTORY"], "/run/haneul-mps/gpu-3/log");
        assert_eq!(env["CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"], "50");
        assert_eq!(env["CUDA_MPS_PINNED_DEVICE_MEM_LIMIT"], "0=71885M");
        let tenth: BTreeMap<String, String> = client_env(Path::new("/m"), 0, 125, 80_000)
            .into_iter()
            .collect();
        assert_eq!(
            tenth["CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"], "13",
            "rounded up"
        );
        assert_eq!(tenth["CUDA_MPS_PINNED_DEVICE_MEM_LIMIT"], "0=10000M");
        assert!(needs_mps(500, true, 1));
        assert!(!needs_mps(1000, true, 1), "a whole GPU");
        assert!(!needs_mps(500, false, 1), "simulated GPUs");
        assert!(!needs_mps(0, true, 0), "no GPU");
    }

    fn fact(parent: u32, name: &str, uuid: &str) -> MigFact {
        MigFact {
            parent,
            parent_name: "NVIDIA H200".into(),
            name: name.into(),
            uuid: uuid.into(),
            memory_bytes: Some(71 * 1024 * 1024 * 1024),
        }
    }

    #[test]
    fn mig_instances_become_gpus_of_their_own_model() {
        let gpus = mig_inventory(&[
            fact(1, "NVIDIA H200 MIG 3g.71gb", "MIG-bbbb"),
            fact(0, "NVIDIA H200 MIG 3g.71gb", "MIG-aaaa"),
            fact(0, "NVIDIA H200 MIG 3g.71gb", "MIG-aaab"),
        ])
        .unwrap();
        let got: Vec<(u32, &str, &str)> = gpus
            .iter()
            .map(|g| (g.index, g.model.as_str(), g.uuid.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![
                (0, "H200-MIG-3g.71gb", "MIG-aaaa"),
                (1, "H200-MIG-3g.71gb", "MIG-aaab"),
                (2, "H200-MIG-3g.71gb", "MIG-bbbb"),
            ]
        );
        assert_eq!(gpus[0].memory_mib, Some(71 * 1024));
        assert_eq!(visible_devices(&gpus, &[2, 0]), "MIG-bbbb,MIG-aaaa");
        let whole = crate::gpus::parse_simulated("2xH200").unwrap();
        assert_eq!(visible_devices(&whole, &[1]), "1");
        let e = mig_inventory(&[fact(0, "NVIDIA H200", "MIG-x")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("MIG-x") && e.contains("no profile"), "{e}");
        assert_eq!(
            mig_profile("NVIDIA A100-SXM4-80GB MIG 1g.10gb"),
            Some("1g.10gb")
        );
    }
}
