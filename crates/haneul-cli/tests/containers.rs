//! End to end with real podman: the real `haneul server`, real agents
//! (`--simulate-gpus 4xH200 --container-runtime podman`) and jobs whose image is a busybox root
//! file system built here (no registry is reachable from CI). Jobs are submitted, followed and
//! cancelled through the `haneul` command as a user would.
//!
//! These tests fail, rather than skip, where podman is missing.

mod common;

use common::*;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const INSTALL: &str = "install podman, runc and busybox-static \
                       (apt-get install -y podman runc busybox-static)";

/// What this machine's podman needs: runc (crun refuses hybrid cgroups) with cgroupfs, and
/// explicit ulimits (podman's defaults cannot be set in this VM).
const RUNTIME_FLAGS: [&str; 6] = [
    "--container-runtime",
    "podman",
    "--container-runtime-arg=--runtime=runc",
    "--container-runtime-arg=--cgroup-manager=cgroupfs",
    "--container-run-arg=--ulimit=nofile=1024:1024",
    "--container-run-arg=--ulimit=nproc=1000:1000",
];

fn podman(args: &[&str]) -> Output {
    Command::new("podman")
        .args(["--runtime", "runc", "--cgroup-manager", "cgroupfs"])
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run podman ({e}): {INSTALL}"))
}

/// Names of the containers labelled as node `node`'s.
fn containers_of(node: &str) -> Vec<String> {
    let out = podman(&[
        "ps",
        "--all",
        "--filter",
        &format!("label=io.haneul.node={node}"),
        "--format",
        "{{.Names}}",
    ]);
    assert!(out.status.success(), "podman ps: {out:?}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(String::from)
        .collect()
}

/// A root file system of static busybox and its applets.
fn rootfs(dir: &Path) -> PathBuf {
    let busybox = Path::new("/bin/busybox");
    assert!(busybox.exists(), "no /bin/busybox: {INSTALL}");
    let root = dir.join("rootfs");
    for d in ["bin", "dev", "etc", "proc", "sys", "tmp"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::copy(busybox, root.join("bin/busybox")).unwrap();
    for applet in [
        "sh", "cat", "echo", "env", "id", "pwd", "sleep", "sort", "test",
    ] {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).unwrap();
    }
    root
}

/// Processes whose working directory lies under `dir` (podman, the status keeper and the
/// container's own processes all start there).
fn processes_under(dir: &Path) -> Vec<String> {
    let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok())
        .filter(|e| std::fs::read_link(e.path().join("cwd")).is_ok_and(|c| c.starts_with(&dir)))
        .map(|e| {
            let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
            format!(
                "{} {}",
                e.file_name().to_string_lossy(),
                String::from_utf8_lossy(&cmd).replace('\0', " ")
            )
        })
        .collect()
}

struct Agent(Child);

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A server with a project, a member, a pool, an agent token, and the member's CLI.
struct Site {
    dir: tempfile::TempDir,
    server: Server,
    admin: String,
    agent_token: PathBuf,
    admin_token: PathBuf,
    user: String,
    user_token: PathBuf,
    rootfs: PathBuf,
}

impl Site {
    fn new() -> Site {
        assert!(
            Command::new("podman").arg("--version").output().is_ok(),
            "podman is not installed: {INSTALL}"
        );
        let dir = common::tempdir();
        // The only images this centre allows: root file systems under the test's directory.
        let allowed = dir.path().join("rootfs");
        let server = Server::start(
            &dir.path().join("server"),
            None,
            &["--container-rootfs-dir", allowed.to_str().unwrap()],
        );
        let Members {
            admin, user, agent, ..
        } = members(&server);
        let agent_token = dir.path().join("agent.token");
        std::fs::write(&agent_token, agent).unwrap();
        let user_token = dir.path().join("user.token");
        std::fs::write(&user_token, &user).unwrap();
        let admin_token = dir.path().join("admin.token");
        std::fs::write(&admin_token, &admin).unwrap();
        let rootfs = rootfs(dir.path());
        Site {
            dir,
            server,
            admin,
            agent_token,
            admin_token,
            user,
            user_token,
            rootfs,
        }
    }

    fn work(&self) -> PathBuf {
        self.dir.path().join("work")
    }

    fn rootfs(&self) -> &str {
        self.rootfs.to_str().unwrap()
    }

    /// Starts an agent for node `name` (a name no other test uses: containers are labelled
    /// with it) and waits for its node.
    fn agent(&self, name: &str, flags: &[&str]) -> (Agent, Value) {
        let child = Command::new(env!("CARGO_BIN_EXE_haneul"))
            .args(["agent", "--name", name, "--simulate-gpus", "4xH200"])
            .args(["--pool", "h200", "--server"])
            .arg(format!("http://{}", self.server.addr))
            .arg("--token-file")
            .arg(&self.agent_token)
            .arg("--work-dir")
            .arg(self.work())
            .args(flags)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start haneul agent");
        let agent = Agent(child);
        let until = Instant::now() + Duration::from_secs(15);
        loop {
            let (_, nodes) = self.server.get(Some(&self.admin), "/v1/nodes");
            if let Some(n) = nodes
                .as_array()
                .into_iter()
                .flatten()
                .find(|n| n["name"] == name && n["state"] == "up")
            {
                return (agent, n.clone());
            }
            assert!(Instant::now() < until, "node {name} never came up: {nodes}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `haneul ARGS` as the member; its output, which must be a success.
    fn haneul(&self, args: &[&str]) -> String {
        let out = self.haneul_raw(args);
        assert!(
            out.status.success(),
            "haneul {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn haneul_raw(&self, args: &[&str]) -> Output {
        self.haneul_as(&self.user_token, args)
    }

    fn haneul_as(&self, token_file: &Path, args: &[&str]) -> Output {
        // Right after the command's name: the job's own command follows `--`.
        Command::new(env!("CARGO_BIN_EXE_haneul"))
            .arg(args[0])
            .arg("--server")
            .arg(format!("http://{}", self.server.addr))
            .arg("--token-file")
            .arg(token_file)
            .args(&args[1..])
            .env("HANEUL_CONFIG", self.dir.path().join("no-config"))
            .env_remove("HANEUL_PROJECT")
            .env("LANG", "C")
            .output()
            .expect("run haneul")
    }

    /// Submits a container job through `haneul submit`; its id.
    fn submit(&self, flags: &[&str], command: &[&str]) -> i64 {
        let mut args = vec!["submit", "--json", "--container-image", self.rootfs()];
        args.extend(flags);
        args.push("--");
        args.extend(command);
        let job: Value = serde_json::from_str(&self.haneul(&args)).unwrap();
        assert_eq!(job["container_image"], self.rootfs(), "{job}");
        job["id"].as_i64().unwrap()
    }

    /// Submits through the API, for what the command has no flag for (`grace_s`).
    fn submit_api(&self, body: Value) -> i64 {
        let mut body = body;
        body["container_image"] = json!(self.rootfs());
        let (_, projects) = self.server.get(Some(&self.user), "/v1/projects");
        body["project"] = projects[0]["id"].clone();
        self.server.must(&self.user, "/v1/jobs", body, 201)["id"]
            .as_i64()
            .unwrap()
    }

    fn state(&self, job: i64) -> Value {
        serde_json::from_str(&self.haneul(&["show", &job.to_string(), "--json"])).unwrap()
    }

    fn wait_state(&self, job: i64, want: &str, within: Duration) -> Value {
        let until = Instant::now() + within;
        loop {
            let v = self.state(job);
            if v["state"] == want {
                return v;
            }
            let ended = ["succeeded", "failed", "cancelled", "timed_out"];
            assert!(
                !ended.contains(&v["state"].as_str().unwrap_or("")),
                "job {job} ended, not {want}: {v}\nlogs: {}",
                self.haneul(&["logs", &job.to_string()])
            );
            assert!(Instant::now() < until, "job {job} not {want}: {v}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn task_dir(&self, job: i64) -> PathBuf {
        self.work().join(format!("job-{job}/attempt-1/task-0"))
    }
}

fn wait_until(what: &str, within: Duration, ok: impl Fn() -> bool) {
    let until = Instant::now() + within;
    while !ok() {
        assert!(Instant::now() < until, "{what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn container_job_sees_its_gpus_its_directory_and_logs() {
    let site = Site::new();
    let (_agent, node) = site.agent("ctr-env", &RUNTIME_FLAGS);
    assert_eq!(node["container_runtime"], "podman", "{node}");
    let out = site.haneul_as(&site.admin_token, &["node", "list"]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table
            .lines()
            .next()
            .is_some_and(|h| h.contains("CONTAINERS"))
            && table
                .lines()
                .any(|l| l.contains("ctr-env") && l.contains("podman")),
        "{out:?}"
    );

    // The first job of a fresh server is job 1: its directory can be prepared before it runs.
    let dir = site.task_dir(1);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("input.txt"), "from the host\n").unwrap();
    let script = "env | sort; echo PWD_IS=$(pwd); cat input.txt; echo written > out.txt; \
                  echo UID_IS=$(id -u); echo GROUPS_IS=$(id -G); \
                  test -e /etc/debian_version && echo ON_HOST || echo IN_CONTAINER; \
                  echo CPU_QUOTA=$(cat /sys/fs/cgroup/cpu.max 2>/dev/null \
                                   || cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us)";
    let job = site.submit(
        &["--gpus", "2", "--cpus-per-task", "1.5"],
        &["/bin/sh", "-c", script],
    );
    assert_eq!(job, 1);
    let v = site.wait_state(job, "succeeded", Duration::from_secs(60));
    assert_eq!(v["exit_code"], 0, "{v}");

    let logs = site.haneul(&["logs", "1"]);
    let var = |k: &str| {
        logs.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .unwrap_or_else(|| panic!("no {k} in {logs}"))
            .to_string()
    };
    let gpus: Vec<u32> = var("CUDA_VISIBLE_DEVICES")
        .split(',')
        .map(|g| g.parse().unwrap())
        .collect();
    assert_eq!(gpus.len(), 2, "{logs}");
    assert!(gpus[0] != gpus[1] && gpus.iter().all(|g| *g < 4), "{logs}");
    // The attempt's record names the same GPUs.
    let placed: Vec<u32> = v["attempts"][0]["tasks"][0]["gpus"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g.as_u64().unwrap() as u32)
        .collect();
    assert_eq!(gpus, placed, "{v}");
    assert_eq!(var("NVIDIA_VISIBLE_DEVICES"), var("CUDA_VISIBLE_DEVICES"));
    assert_eq!(var("HANEUL_JOB_ID"), "1");
    assert_eq!(var("WORLD_SIZE"), "1");
    assert_eq!(var("MASTER_ADDR"), "127.0.0.1");
    let dir = dir.canonicalize().unwrap();
    assert_eq!(var("PWD_IS"), dir.display().to_string());
    assert_eq!(
        var("HANEUL_CHECKPOINT_FILE"),
        dir.join(".haneul-checkpoint").display().to_string()
    );
    assert!(logs.lines().any(|l| l == "from the host"), "{logs}");
    // The container runs as the job's owner, with the owner's ids from the server.
    let (_, users) = site.server.get(Some(&site.admin), "/v1/users");
    let kim = users
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["name"] == "kim")
        .unwrap();
    let (_, project) = site.server.get(Some(&site.admin), "/v1/projects");
    assert_eq!(var("UID_IS"), kim["uid"].to_string(), "{logs}");
    let groups: Vec<String> = var("GROUPS_IS").split(' ').map(String::from).collect();
    assert!(groups.contains(&kim["gid"].to_string()), "{logs}");
    assert!(groups.contains(&project[0]["gid"].to_string()), "{logs}");
    assert_eq!(var("USER"), "kim");
    {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(dir.join("out.txt")).unwrap();
        assert_eq!(i64::from(meta.uid()), kim["uid"].as_i64().unwrap());
    }
    assert!(logs.lines().any(|l| l == "IN_CONTAINER"), "{logs}");
    // 1.5 cores as the container's CPU quota (cgroup v2 `cpu.max`, or v1's quota per 100 ms).
    assert!(
        ["150000 100000", "150000"].contains(&var("CPU_QUOTA").as_str()),
        "{logs}"
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("out.txt")).unwrap(),
        "written\n"
    );
    let shown = site.haneul(&["show", "1"]);
    assert!(
        shown.contains(&format!("image:    {}", site.rootfs())),
        "{shown}"
    );
    // `--rm`: the container went with its task.
    wait_until("the container is removed", Duration::from_secs(10), || {
        containers_of("ctr-env").is_empty()
    });
}

#[test]
fn cancelled_container_jobs_leave_no_container_and_no_process() {
    let site = Site::new();
    let (_agent, _) = site.agent("ctr-stop", &RUNTIME_FLAGS);
    // One job ends at SIGTERM, well within its grace; the other ignores it, so its grace
    // runs out and the container is killed.
    let polite = site.submit_api(json!({"gpus_per_task": 1, "grace_s": 20,
                                        "command": ["sleep", "3001"]}));
    let stubborn = site.submit_api(json!({"gpus_per_task": 1, "grace_s": 2, "command":
        ["/bin/sh", "-c", "trap '' TERM; sleep 3002; sleep 3002"]}));
    for job in [polite, stubborn] {
        site.wait_state(job, "running", Duration::from_secs(60));
    }
    wait_until("both containers run", Duration::from_secs(30), || {
        containers_of("ctr-stop").len() == 2
    });
    let mut names = containers_of("ctr-stop");
    names.sort();
    assert_eq!(
        names,
        vec![
            format!("haneul-ctr-stop-{polite}-1-0"),
            format!("haneul-ctr-stop-{stubborn}-1-0")
        ]
    );
    wait_until(
        "the container's sleep runs",
        Duration::from_secs(10),
        || {
            processes_under(&site.work())
                .iter()
                .any(|p| p.ends_with("sleep 3002 "))
        },
    );
    let started = Instant::now();
    for job in [polite, stubborn] {
        let out = site.haneul(&["cancel", &job.to_string()]);
        assert!(
            out.contains("stopping") || out.contains("cancelled"),
            "{out}"
        );
    }
    site.wait_state(polite, "cancelled", Duration::from_secs(30));
    let polite_took = started.elapsed();
    // SIGTERM reached `sleep` in the container (podman's signal proxy, then its init).
    assert!(polite_took < Duration::from_secs(15), "{polite_took:?}");
    site.wait_state(stubborn, "cancelled", Duration::from_secs(30));
    let stubborn_took = started.elapsed();
    assert!(stubborn_took >= Duration::from_secs(2), "{stubborn_took:?}");
    wait_until("no container is left", Duration::from_secs(10), || {
        containers_of("ctr-stop").is_empty()
    });
    wait_until("no process is left", Duration::from_secs(10), || {
        processes_under(&site.work()).is_empty()
    });
    eprintln!(
        "container jobs cancelled: SIGTERM honoured in {polite_took:?}, SIGTERM ignored and \
         killed after its 2 s grace in {stubborn_took:?}"
    );
}

#[test]
fn restarted_agent_reattaches_and_removes_strays() {
    let site = Site::new();
    let (mut agent, _) = site.agent("ctr-restart", &RUNTIME_FLAGS);
    let job = site.submit(
        &["--gpus", "1"],
        &["/bin/sh", "-c", "echo before; sleep 3003; echo never"],
    );
    site.wait_state(job, "running", Duration::from_secs(60));
    let name = format!("haneul-ctr-restart-{job}-1-0");
    wait_until("the container runs", Duration::from_secs(30), || {
        containers_of("ctr-restart") == vec![name.clone()]
    });
    // A container of this node that no task owns, as a crashed agent could leave.
    let stray = "haneul-ctr-restart-99-1-0";
    let out = podman(&[
        "run",
        "--detach",
        "--name",
        stray,
        "--label",
        "io.haneul.node=ctr-restart",
        "--ulimit",
        "nofile=1024:1024",
        "--ulimit",
        "nproc=1000:1000",
        "--network",
        "host",
        "--rootfs",
        site.rootfs(),
        "sleep",
        "3004",
    ]);
    assert!(out.status.success(), "podman run: {out:?}");

    agent.0.kill().unwrap();
    agent.0.wait().unwrap();
    let (_agent, _) = site.agent("ctr-restart", &RUNTIME_FLAGS);
    wait_until(
        "the stray container is removed",
        Duration::from_secs(20),
        || containers_of("ctr-restart") == vec![name.clone()],
    );
    assert_eq!(site.state(job)["state"], "running");
    site.haneul(&["cancel", &job.to_string()]);
    site.wait_state(job, "cancelled", Duration::from_secs(30));
    wait_until("no container is left", Duration::from_secs(10), || {
        containers_of("ctr-restart").is_empty()
    });
    wait_until("no process is left", Duration::from_secs(10), || {
        processes_under(&site.work()).is_empty()
    });
    let logs = site.haneul(&["logs", &job.to_string()]);
    assert_eq!(logs.matches("before\n").count(), 1, "{logs}");
}

#[test]
fn a_node_without_a_runtime_fails_container_jobs_and_bad_images_are_refused() {
    let site = Site::new();
    let (_agent, node) = site.agent("ctr-none", &["--container-runtime", "none"]);
    assert_eq!(node["container_runtime"], "none", "{node}");
    let job = site.submit(&["--gpus", "1"], &["/bin/sh", "-c", "echo ran"]);
    let until = Instant::now() + Duration::from_secs(30);
    let v = loop {
        let v = site.state(job);
        if v["state"] == "failed" {
            break v;
        }
        assert!(Instant::now() < until, "job never failed: {v}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(v["exit_code"], 127, "{v}");
    let logs = site.haneul(&["logs", &job.to_string()]);
    assert!(
        logs.contains(&format!(
            "job asks for container image {} but node ctr-none has no container runtime; \
             install podman or apptainer",
            site.rootfs()
        )),
        "{logs}"
    );
    assert!(!logs.contains("ran"), "{logs}");

    for (image, says) in [
        ("--privileged", "must not start with `-`"),
        (
            "./rootfs",
            "is neither an image reference nor an absolute path",
        ),
        ("/srv/../etc", "a path must be absolute and normalised"),
        (
            "ubuntu 24.04",
            "is neither an image reference nor an absolute path",
        ),
        // The server's allow-list: no registry is configured here, and only the test's
        // root file systems.
        (
            "ubuntu:24.04",
            "is not from a registry this centre allows (server --container-registry: none \
             configured)",
        ),
        (
            "/srv/images/busybox",
            "is not under a root file system directory this centre allows",
        ),
    ] {
        let out = site.haneul_raw(&[
            "submit",
            "--gpus",
            "1",
            &format!("--container-image={image}"),
            "--",
            "true",
        ]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{image} was accepted");
        assert!(
            err.contains("--container-image") && err.contains(says),
            "{image}: {err}"
        );
    }
}
