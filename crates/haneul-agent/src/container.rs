//! Running a task inside a container: which runtime the node offers (podman or apptainer), and
//! the command lines that run a task's program in one, remove a task's container and list the
//! containers an agent left behind.
//!
//! Building command lines is kept in pure functions ([`podman_run`], [`apptainer_exec`],
//! [`podman_remove`], [`podman_list`]) so that what reaches the runtime is unit-tested without
//! one; [`crate::launch`] runs them under its status keeper, so exit status, logs, stop and
//! adoption work for container tasks as for plain ones.

use crate::{AgentError, Result};
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Label every task container of an agent carries, with the node's name as its value: what a
/// restarted agent lists to find the containers it left (several agents may share a host).
pub const NODE_LABEL: &str = "io.haneul.node";

/// How long removing a container may take before the agent gives up on it.
const REMOVE_TIMEOUT: Duration = Duration::from_secs(30);

/// A container runtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuntimeKind {
    /// `podman run`: the task runs in a container under conmon, outside the agent's process
    /// group; it is stopped through podman's signal proxy and removed with `podman rm -f`.
    Podman,
    /// `apptainer exec`: the container's processes are children of the `apptainer` process, so
    /// they stay in the task's process group.
    Apptainer,
}

impl RuntimeKind {
    /// The name used in flags and in the node's status.
    pub fn as_str(self) -> &'static str {
        match self {
            RuntimeKind::Podman => "podman",
            RuntimeKind::Apptainer => "apptainer",
        }
    }
}

/// A node's container runtime, as the agent was told to use it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Runtime {
    /// Which runtime.
    pub kind: RuntimeKind,
    /// Its executable.
    pub program: PathBuf,
    /// Arguments before the subcommand (`--runtime=runc --cgroup-manager=cgroupfs`).
    pub global_args: Vec<String>,
    /// Arguments of every `run`/`exec`, placed before the image (`--ulimit=nofile=1024:1024`).
    pub run_args: Vec<String>,
}

/// The executable `name` in one of the directories of `path` (a `PATH` value).
pub fn find_on_path(name: &str, path: Option<&OsStr>) -> Option<PathBuf> {
    std::env::split_paths(path?)
        .map(|d| d.join(name))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The runtime `choice` names (`auto`, `podman`, `apptainer` or `none`), looked up on `path`:
/// `auto` takes podman if it is there, else apptainer, else none. `None`: no runtime (container
/// jobs then fail on this node with a reason).
pub fn choose(choice: &str, path: Option<&OsStr>) -> Result<Option<(RuntimeKind, PathBuf)>> {
    let find = |k: RuntimeKind| find_on_path(k.as_str(), path).map(|p| (k, p));
    match choice {
        "none" => Ok(None),
        "auto" => Ok(find(RuntimeKind::Podman).or_else(|| find(RuntimeKind::Apptainer))),
        "podman" | "apptainer" => {
            let kind = if choice == "podman" {
                RuntimeKind::Podman
            } else {
                RuntimeKind::Apptainer
            };
            find(kind).map(Some).ok_or_else(|| {
                AgentError::Spec(format!(
                    "--container-runtime {choice}: no `{choice}` on PATH; install it, or choose \
                     auto or none"
                ))
            })
        }
        other => Err(AgentError::Spec(format!(
            "--container-runtime {other:?}: must be auto, podman, apptainer or none"
        ))),
    }
}

/// What a job's `container_image` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Image<'a> {
    /// An absolute path to an unpacked root file system (podman `--rootfs`, an apptainer
    /// sandbox).
    Rootfs(&'a Path),
    /// An absolute path to an apptainer `.sif` file.
    Sif(&'a Path),
    /// An OCI image reference (`ubuntu:24.04`, `nvcr.io/nvidia/pytorch:24.10-py3`), possibly
    /// with a transport (`docker://...`).
    Reference(&'a str),
}

impl<'a> Image<'a> {
    /// Classifies an image as the server accepted it (absolute paths are files or directories).
    pub fn parse(image: &'a str) -> Image<'a> {
        if image.starts_with('/') {
            if image.ends_with(".sif") {
                Image::Sif(Path::new(image))
            } else {
                Image::Rootfs(Path::new(image))
            }
        } else {
            Image::Reference(image)
        }
    }
}

/// Everything a runtime needs to run one task's program.
#[derive(Debug, Clone)]
pub struct ContainerTask<'a> {
    /// Container name, unique on the host ([`task_name`]).
    pub name: &'a str,
    /// The node's name (the value of [`NODE_LABEL`]).
    pub node: &'a str,
    /// The job's `container_image`.
    pub image: &'a str,
    /// The task's working directory (absolute): mounted at the same path and the program's
    /// working directory there.
    pub workdir: &'a Path,
    /// The task's whole environment (the launcher's `PATH` excluded: the image's own stays).
    pub env: &'a [(String, String)],
    /// Assigned GPUs on the host, as the runtime names them: indices, or MIG UUIDs
    /// ([`crate::launch::TaskSpec::device_names`]).
    pub gpus: &'a [String],
    /// Whether the GPUs are real (handed to the container) or simulated (indices only).
    pub real_gpus: bool,
    /// `(uid, gid, supplementary groups)` to run as; `None`: the runtime's default.
    pub user: Option<(u32, u32, &'a [u32])>,
    /// CPU allotment in milli-cores; 0 is unlimited.
    pub cpu_milli: u64,
    /// Memory allotment in MiB; 0 is unlimited.
    pub memory_mib: u64,
    /// The program and its arguments.
    pub command: &'a [String],
}

/// A command line to run: program, arguments and the environment of the runtime's process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    /// The runtime's executable.
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<String>,
    /// Its environment (cleared otherwise).
    pub env: Vec<(String, String)>,
}

/// The container name of task `task` of attempt `fence` of job `job` on node `node`:
/// `haneul-NODE-J-F-T`, the node's name reduced to the characters container names allow.
/// The node is in it because agents of several nodes may share one host (and its runtime).
pub fn task_name(node: &str, job: i64, fence: i64, task: i64) -> String {
    let node: String = node
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("haneul-{node}-{job}-{fence}-{task}")
}

/// `(job, fence, task)` of a name made by [`task_name`]: its last three dash-separated numbers.
pub fn parse_task_name(name: &str) -> Option<(i64, i64, i64)> {
    let mut parts = name.rsplitn(4, '-');
    let task = parts.next()?.parse().ok()?;
    let fence = parts.next()?.parse().ok()?;
    let job = parts.next()?.parse().ok()?;
    parts
        .next()?
        .starts_with("haneul-")
        .then_some((job, fence, task))
}

fn gpu_list(gpus: impl Iterator<Item = u32>) -> String {
    gpus.map(|g| g.to_string()).collect::<Vec<_>>().join(",")
}

/// `podman run` for a task: removed when it ends (`--rm`; `--replace` clears a leftover of the
/// same name), an init process (`--init`: a program running as PID 1 would ignore the SIGTERM
/// of the stop protocol), no capabilities and no privilege gained by exec (the task is its
/// owner, never root, even when podman runs as root), the host's network (gang ranks meet at `MASTER_ADDR`), the working
/// directory mounted at its own path, every variable of the task's environment, real GPUs
/// through CDI (`--device nvidia.com/gpu=N`; simulated ones get none), the task's user, and its
/// memory (no swap beyond it) and CPUs as the container's cgroup limits.
///
/// With real GPUs the container sees only its own, numbered from 0, so `CUDA_VISIBLE_DEVICES`
/// inside is `0..n-1`; `NVIDIA_VISIBLE_DEVICES` keeps the host's indices, as the NVIDIA
/// container hooks read it.
pub fn podman_run(rt: &Runtime, t: &ContainerTask<'_>) -> Result<Invocation> {
    let image: Vec<String> = match Image::parse(t.image) {
        Image::Sif(p) => {
            return Err(AgentError::Spec(format!(
                "podman cannot run the apptainer image {}; give an OCI image or a root file \
                 system directory, or run the job on a node with apptainer",
                p.display()
            )));
        }
        Image::Rootfs(p) => vec!["--rootfs".into(), p.display().to_string()],
        Image::Reference(r) => vec![r.to_string()],
    };
    let w = t.workdir.display().to_string();
    let mut a: Vec<String> = rt.global_args.clone();
    a.extend(
        [
            "run",
            "--rm",
            "--replace",
            "--init",
            // The task is its owner, not root: no capability inside, none gained by exec.
            "--cap-drop",
            "all",
            "--security-opt",
            "no-new-privileges",
            "--name",
            t.name,
            "--label",
            &format!("{NODE_LABEL}={}", t.node),
            "--network",
            "host",
            "--volume",
            &format!("{w}:{w}"),
            "--workdir",
            &w,
        ]
        .map(String::from),
    );
    if let Some((uid, gid, groups)) = t.user {
        a.push("--user".into());
        a.push(format!("{uid}:{gid}"));
        for g in groups.iter().filter(|g| **g != gid) {
            a.push("--group-add".into());
            a.push(g.to_string());
        }
    }
    if t.memory_mib > 0 {
        let m = format!("{}m", t.memory_mib);
        a.extend(["--memory".into(), m.clone(), "--memory-swap".into(), m]);
    }
    if t.cpu_milli > 0 {
        a.push("--cpus".into());
        a.push(format!("{}.{:03}", t.cpu_milli / 1000, t.cpu_milli % 1000));
    }
    if t.real_gpus {
        for g in t.gpus {
            a.push("--device".into());
            a.push(format!("nvidia.com/gpu={g}"));
        }
    }
    for (k, v) in t.env {
        let v = if k == "CUDA_VISIBLE_DEVICES" && t.real_gpus {
            gpu_list(0..t.gpus.len() as u32)
        } else {
            v.clone()
        };
        a.push("--env".into());
        a.push(format!("{k}={v}"));
    }
    a.extend(rt.run_args.iter().cloned());
    a.extend(image);
    a.extend(t.command.iter().cloned());
    Ok(Invocation {
        program: rt.program.clone(),
        args: a,
        env: vec![("PATH".into(), crate::launch::DEFAULT_PATH.into())],
    })
}

/// `apptainer exec` for a task: a clean environment holding the task's variables
/// (`APPTAINERENV_*`), GPUs bound in with `--nv` when they are real, the working directory as
/// home and working directory. An OCI reference is pulled as `docker://`. Apptainer takes no
/// user, memory or CPU arguments here: it runs as the account that starts it, inside the
/// task's process group and limits, like a plain task. Since `--nv` binds every GPU of the
/// host, `CUDA_VISIBLE_DEVICES` keeps the host's indices.
pub fn apptainer_exec(rt: &Runtime, t: &ContainerTask<'_>) -> Invocation {
    let w = t.workdir.display().to_string();
    let mut a: Vec<String> = rt.global_args.clone();
    a.extend(["exec".into(), "--cleanenv".into()]);
    if t.real_gpus {
        a.push("--nv".into());
    }
    a.extend(["--home".into(), w.clone(), "--pwd".into(), w.clone()]);
    a.extend(rt.run_args.iter().cloned());
    a.push(match Image::parse(t.image) {
        Image::Reference(r) if !r.contains("://") => format!("docker://{r}"),
        _ => t.image.to_string(),
    });
    a.extend(t.command.iter().cloned());
    let mut env = vec![
        ("PATH".to_string(), crate::launch::DEFAULT_PATH.to_string()),
        ("HOME".to_string(), w),
    ];
    // Apptainer refuses APPTAINERENV_HOME; the home is `--home` above.
    for (k, v) in t.env.iter().filter(|(k, _)| k != "HOME") {
        env.push((format!("APPTAINERENV_{k}"), v.clone()));
    }
    Invocation {
        program: rt.program.clone(),
        args: a,
        env,
    }
}

/// The runtime's command line for `t`.
pub fn invocation(rt: &Runtime, t: &ContainerTask<'_>) -> Result<Invocation> {
    match rt.kind {
        RuntimeKind::Podman => podman_run(rt, t),
        RuntimeKind::Apptainer => Ok(apptainer_exec(rt, t)),
    }
}

/// `podman rm` that kills the container at once and succeeds when it is already gone.
pub fn podman_remove(rt: &Runtime, name: &str) -> Vec<String> {
    let mut a = rt.global_args.clone();
    a.extend(["rm", "--force", "--time", "0", "--ignore", name].map(String::from));
    a
}

/// `podman ps` listing the names of every container (running or not) labelled as node
/// `node`'s.
pub fn podman_list(rt: &Runtime, node: &str) -> Vec<String> {
    let mut a = rt.global_args.clone();
    a.extend(
        [
            "ps",
            "--all",
            "--filter",
            &format!("label={NODE_LABEL}={node}"),
            "--format",
            "{{.Names}}",
        ]
        .map(String::from),
    );
    a
}

/// Runs the runtime with `args`, waiting at most [`REMOVE_TIMEOUT`]; returns its stdout.
fn run_runtime(rt: &Runtime, args: &[String]) -> Result<String> {
    let what = || format!("{} {}", rt.program.display(), args.join(" "));
    let mut child = Command::new(&rt.program)
        .args(args)
        .env_clear()
        .env("PATH", crate::launch::DEFAULT_PATH)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| AgentError::io(format!("cannot run {}", what()), e))?;
    let deadline = Instant::now() + REMOVE_TIMEOUT;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(AgentError::Spec(format!(
                    "{} did not finish within {} s",
                    what(),
                    REMOVE_TIMEOUT.as_secs()
                )));
            }
            Err(e) => return Err(AgentError::io(format!("cannot wait for {}", what()), e)),
        }
    }
    let out = child
        .wait_with_output()
        .map_err(|e| AgentError::io(format!("cannot read the output of {}", what()), e))?;
    if !out.status.success() {
        return Err(AgentError::Spec(format!(
            "{} failed ({}): {}",
            what(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Kills and removes container `name` (nothing to do when it is gone). Apptainer has nothing
/// to remove: its processes are the task's.
pub fn remove(rt: &Runtime, name: &str) -> Result<()> {
    match rt.kind {
        RuntimeKind::Podman => run_runtime(rt, &podman_remove(rt, name)).map(|_| ()),
        RuntimeKind::Apptainer => Ok(()),
    }
}

/// Names of the containers node `node`'s agent started that still exist, sorted.
pub fn list(rt: &Runtime, node: &str) -> Result<Vec<String>> {
    if rt.kind == RuntimeKind::Apptainer {
        return Ok(Vec::new());
    }
    let out = run_runtime(rt, &podman_list(rt, node))?;
    let mut names: Vec<String> = out
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect();
    names.sort();
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rt(kind: RuntimeKind) -> Runtime {
        Runtime {
            kind,
            program: PathBuf::from(format!("/usr/bin/{}", kind.as_str())),
            global_args: vec!["--runtime=runc".into()],
            run_args: vec!["--ulimit=nofile=1024:1024".into()],
        }
    }

    fn env() -> Vec<(String, String)> {
        vec![
            ("HOME".into(), "/w/job-1".into()),
            ("CUDA_VISIBLE_DEVICES".into(), "2,5".into()),
            ("NVIDIA_VISIBLE_DEVICES".into(), "2,5".into()),
            ("HANEUL_JOB_ID".into(), "1".into()),
        ]
    }

    static GPUS: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();

    fn task<'a>(
        image: &'a str,
        env: &'a [(String, String)],
        command: &'a [String],
    ) -> ContainerTask<'a> {
        ContainerTask {
            name: "haneul-n1-1-2-0",
            node: "n1",
            image,
            workdir: Path::new("/w/job-1"),
            env,
            gpus: GPUS.get_or_init(|| vec!["2".into(), "5".into()]),
            real_gpus: false,
            user: None,
            cpu_milli: 0,
            memory_mib: 0,
            command,
        }
    }

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn podman_with_simulated_gpus_and_a_rootfs() {
        let env = env();
        let cmd = s(&["sh", "-c", "env"]);
        let inv = podman_run(&rt(RuntimeKind::Podman), &task("/srv/rootfs", &env, &cmd)).unwrap();
        assert_eq!(inv.program, PathBuf::from("/usr/bin/podman"));
        assert_eq!(
            inv.args,
            s(&[
                "--runtime=runc",
                "run",
                "--rm",
                "--replace",
                "--init",
                "--cap-drop",
                "all",
                "--security-opt",
                "no-new-privileges",
                "--name",
                "haneul-n1-1-2-0",
                "--label",
                "io.haneul.node=n1",
                "--network",
                "host",
                "--volume",
                "/w/job-1:/w/job-1",
                "--workdir",
                "/w/job-1",
                "--env",
                "HOME=/w/job-1",
                "--env",
                "CUDA_VISIBLE_DEVICES=2,5",
                "--env",
                "NVIDIA_VISIBLE_DEVICES=2,5",
                "--env",
                "HANEUL_JOB_ID=1",
                "--ulimit=nofile=1024:1024",
                "--rootfs",
                "/srv/rootfs",
                "sh",
                "-c",
                "env",
            ])
        );
        assert_eq!(
            inv.env,
            vec![("PATH".to_string(), crate::launch::DEFAULT_PATH.to_string())]
        );
    }

    #[test]
    fn podman_with_real_gpus_user_and_limits() {
        let env = env();
        let cmd = s(&["python", "train.py"]);
        let mut t = task("nvcr.io/nvidia/pytorch:24.10-py3", &env, &cmd);
        t.real_gpus = true;
        t.user = Some((1000, 100, &[100, 27, 44]));
        t.cpu_milli = 2500;
        t.memory_mib = 4096;
        let a = podman_run(&rt(RuntimeKind::Podman), &t).unwrap().args;
        let joined = a.join(" ");
        assert!(
            joined.contains(
                "--user 1000:100 --group-add 27 --group-add 44 --memory 4096m \
                 --memory-swap 4096m --cpus 2.500 --device nvidia.com/gpu=2 \
                 --device nvidia.com/gpu=5 --env HOME=/w/job-1 --env CUDA_VISIBLE_DEVICES=0,1 \
                 --env NVIDIA_VISIBLE_DEVICES=2,5 "
            ),
            "{joined}"
        );
        assert!(
            joined.ends_with(
                "--ulimit=nofile=1024:1024 nvcr.io/nvidia/pytorch:24.10-py3 python train.py"
            ),
            "{joined}"
        );
        assert_eq!(
            podman_run(&rt(RuntimeKind::Podman), &task("/img/x.sif", &env, &cmd))
                .unwrap_err()
                .to_string(),
            "invalid task spec: podman cannot run the apptainer image /img/x.sif; give an OCI \
             image or a root file system directory, or run the job on a node with apptainer"
        );
    }

    #[test]
    fn apptainer_exec_argv_and_env() {
        let env = env();
        let cmd = s(&["python", "train.py"]);
        let r = rt(RuntimeKind::Apptainer);
        let inv = apptainer_exec(&r, &task("ubuntu:24.04", &env, &cmd));
        assert_eq!(
            inv.args,
            s(&[
                "--runtime=runc",
                "exec",
                "--cleanenv",
                "--home",
                "/w/job-1",
                "--pwd",
                "/w/job-1",
                "--ulimit=nofile=1024:1024",
                "docker://ubuntu:24.04",
                "python",
                "train.py",
            ])
        );
        assert_eq!(
            inv.env,
            vec![
                ("PATH".to_string(), crate::launch::DEFAULT_PATH.to_string()),
                ("HOME".to_string(), "/w/job-1".to_string()),
                ("APPTAINERENV_CUDA_VISIBLE_DEVICES".into(), "2,5".into()),
                ("APPTAINERENV_NVIDIA_VISIBLE_DEVICES".into(), "2,5".into()),
                ("APPTAINERENV_HANEUL_JOB_ID".into(), "1".into()),
            ]
        );
        let mut t = task("/img/x.sif", &env, &cmd);
        t.real_gpus = true;
        let a = apptainer_exec(&r, &t).args;
        assert_eq!(a[3], "--nv");
        assert!(a.contains(&"/img/x.sif".to_string()));
        let a = apptainer_exec(&r, &task("oras://reg/x:1", &env, &cmd)).args;
        assert!(a.contains(&"oras://reg/x:1".to_string()), "{a:?}");
    }

    #[test]
    fn names_and_cleanup_commands() {
        assert_eq!(task_name("gpu-07", 12, 3, 1), "haneul-gpu-07-12-3-1");
        assert_eq!(task_name("a b/c", 1, 1, 0), "haneul-a_b_c-1-1-0");
        assert_eq!(parse_task_name("haneul-gpu-07-12-3-1"), Some((12, 3, 1)));
        assert_eq!(parse_task_name("haneul-n-1-x-1"), None);
        assert_eq!(parse_task_name("other-n-1-1-1"), None);
        let r = rt(RuntimeKind::Podman);
        assert_eq!(
            podman_remove(&r, "haneul-n-1-1-0"),
            s(&[
                "--runtime=runc",
                "rm",
                "--force",
                "--time",
                "0",
                "--ignore",
                "haneul-n-1-1-0"
            ])
        );
        assert_eq!(
            podman_list(&r, "n"),
            s(&[
                "--runtime=runc",
                "ps",
                "--all",
                "--filter",
                "label=io.haneul.node=n",
                "--format",
                "{{.Names}}"
            ])
        );
    }

    #[test]
    fn choosing_a_runtime() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        let path = std::ffi::OsString::from(bin.as_os_str());
        assert_eq!(choose("auto", Some(&path)).unwrap(), None);
        assert_eq!(choose("none", Some(&path)).unwrap(), None);
        let e = choose("podman", Some(&path)).unwrap_err().to_string();
        assert!(e.contains("no `podman` on PATH; install it"), "{e}");
        assert!(choose("docker", Some(&path)).is_err());
        let make = |name: &str| {
            use std::os::unix::fs::PermissionsExt;
            let p = bin.join(name);
            std::fs::write(&p, "#!/bin/sh\n").unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
            p
        };
        let app = make("apptainer");
        assert_eq!(
            choose("auto", Some(&path)).unwrap(),
            Some((RuntimeKind::Apptainer, app.clone()))
        );
        let pod = make("podman");
        assert_eq!(
            choose("auto", Some(&path)).unwrap(),
            Some((RuntimeKind::Podman, pod))
        );
        assert_eq!(
            choose("apptainer", Some(&path)).unwrap(),
            Some((RuntimeKind::Apptainer, app))
        );
    }
}
