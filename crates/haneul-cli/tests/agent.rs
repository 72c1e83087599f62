//! End to end: the real `haneul server` and the real `haneul agent --simulate-gpus 4xH200`.
//! A two-GPU job prints what it sees and succeeds with its output in the job's logs; a
//! `sleep 300` job is cancelled and leaves no process behind.

mod common;

use common::*;
use serde_json::{Value, json};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Agent(Child);

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_state(server: &Server, token: &str, job: i64, want: &str, within: Duration) -> Value {
    let until = Instant::now() + within;
    loop {
        let (s, v) = server.get(Some(token), &format!("/v1/jobs/{job}"));
        assert_eq!(s, 200, "{v}");
        let state = v["job"]["state"].as_str().unwrap_or("").to_string();
        if state == want {
            return v;
        }
        assert!(
            !["succeeded", "failed", "cancelled", "timed_out"].contains(&state.as_str()),
            "job {job} ended {state}, not {want}: {v}"
        );
        assert!(
            Instant::now() < until,
            "job {job} did not reach {want} in {within:?}: {v}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Whether a process whose command line is exactly `sleep SECS` runs in a directory under
/// `work` (so that other tests on the machine do not count).
fn sleep_alive(work: &Path, secs: &str) -> bool {
    let work = work.canonicalize().unwrap_or_else(|_| work.to_path_buf());
    let want = [b"sleep\x00", secs.as_bytes(), b"\x00"].concat();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok())
        .filter(|e| std::fs::read(e.path().join("cmdline")).is_ok_and(|c| c == want))
        .any(|e| std::fs::read_link(e.path().join("cwd")).is_ok_and(|d| d.starts_with(&work)))
}

/// A server with one organisation, project, pool `h200`, a member and an agent token.
struct Centre {
    dir: tempfile::TempDir,
    server: Server,
    admin: String,
    user: String,
    project: i64,
    token_file: std::path::PathBuf,
    user_token_file: std::path::PathBuf,
}

impl Centre {
    fn new() -> Centre {
        Centre::on(None)
    }

    /// A centre whose server keeps its state in `database` (PostgreSQL), or SQLite.
    fn on(database: Option<&str>) -> Centre {
        let dir = common::tempdir();
        let server = Server::start(&dir.path().join("server"), database, &[]);
        let Members {
            admin,
            project,
            user,
            agent: agent_token,
            ..
        } = members(&server);
        let token_file = dir.path().join("agent.token");
        std::fs::write(&token_file, format!("{agent_token}\n")).unwrap();
        let user_token_file = dir.path().join("user.token");
        std::fs::write(&user_token_file, format!("{user}\n")).unwrap();
        Centre {
            dir,
            server,
            admin,
            user,
            project,
            token_file,
            user_token_file,
        }
    }

    fn work(&self) -> std::path::PathBuf {
        self.dir.path().join("work")
    }

    /// Starts `haneul agent` for node `name` with 4 simulated H200s and waits until it is up.
    fn agent(&self, name: &str, extra: &[&str]) -> Agent {
        let agent = Agent(
            Command::new(env!("CARGO_BIN_EXE_haneul"))
                .arg("agent")
                .arg("--server")
                .arg(format!("http://{}", self.server.addr))
                .arg("--token-file")
                .arg(&self.token_file)
                .args([
                    "--name",
                    name,
                    "--simulate-gpus",
                    "4xH200",
                    "--pool",
                    "h200",
                ])
                .arg("--work-dir")
                .arg(self.work())
                .args(extra)
                .env(
                    "RUST_LOG",
                    std::env::var("AGENT_LOG").unwrap_or("warn".into()),
                )
                .stdout(Stdio::null())
                .stderr(Stdio::inherit())
                .spawn()
                .expect("start haneul agent"),
        );
        self.wait_node(name, |n| n["state"] == "up");
        agent
    }

    /// Waits until node `name` satisfies `ok`; returns it.
    fn wait_node(&self, name: &str, ok: impl Fn(&Value) -> bool) -> Value {
        let until = Instant::now() + Duration::from_secs(30);
        loop {
            let (_, nodes) = self.server.get(Some(&self.admin), "/v1/nodes");
            if let Some(n) = nodes
                .as_array()
                .into_iter()
                .flatten()
                .find(|n| n["name"] == name && ok(n))
            {
                return n.clone();
            }
            assert!(
                Instant::now() < until,
                "node {name} never got there: {nodes}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn submit(&self, body: Value) -> i64 {
        let mut body = body;
        body["project"] = json!(self.project);
        self.server.must(&self.user, "/v1/jobs", body, 201)["id"]
            .as_i64()
            .unwrap()
    }

    fn logs(&self, job: i64) -> String {
        let (s, logs) = self
            .server
            .get(Some(&self.user), &format!("/v1/jobs/{job}/logs"));
        assert_eq!(s, 200, "{logs}");
        logs.as_array()
            .unwrap()
            .iter()
            .map(|c| c["data"].as_str().unwrap())
            .collect()
    }
}

#[test]
fn agent_runs_and_cancels_real_jobs() {
    let started = Instant::now();
    let dir = common::tempdir();
    let server = Server::start(&dir.path().join("server"), None, &[]);
    let Members {
        admin,
        project,
        user,
        agent: agent_token,
        ..
    } = members(&server);
    let token_file = dir.path().join("agent.token");
    let work = dir.path().join("work");
    std::fs::write(&token_file, format!("{agent_token}\n")).unwrap();

    let mut agent = Agent(
        Command::new(env!("CARGO_BIN_EXE_haneul"))
            .arg("agent")
            .arg("--server")
            .arg(format!("http://{}", server.addr))
            .arg("--token-file")
            .arg(&token_file)
            .args([
                "--name",
                "gpu-001",
                "--simulate-gpus",
                "4xH200",
                "--pool",
                "h200",
            ])
            .arg("--work-dir")
            .arg(&work)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start haneul agent"),
    );

    // Jobs submitted before any node fits them fail at once: wait for the agent's node.
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, nodes) = server.get(Some(&admin), "/v1/nodes");
        let up = nodes.as_array().into_iter().flatten().any(|n| {
            n["name"] == "gpu-001"
                && n["state"] == "up"
                && n["gpus"] == 4
                && n["gpu_model"] == "H200"
        });
        if up {
            break;
        }
        assert!(
            Instant::now() < until,
            "the agent never registered: {nodes}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    // A two-GPU job that prints what it was given.
    let job = server.must(
        &user,
        "/v1/jobs",
        json!({"project": project, "gpus_per_task": 2, "command":
            ["/bin/sh", "-c", "echo GPUS=$CUDA_VISIBLE_DEVICES; echo WORLD_SIZE=$WORLD_SIZE"]}),
        201,
    )["id"]
        .as_i64()
        .unwrap();
    let v = wait_state(&server, &user, job, "succeeded", Duration::from_secs(20));
    assert_eq!(v["job"]["exit_code"], 0, "{v}");
    let (s, logs) = server.get(Some(&user), &format!("/v1/jobs/{job}/logs"));
    assert_eq!(s, 200, "{logs}");
    let text: String = logs
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["data"].as_str().unwrap())
        .collect();
    let gpus = text
        .lines()
        .find_map(|l| l.strip_prefix("GPUS="))
        .unwrap_or_else(|| panic!("no GPUS line in {text:?}"));
    let idx: Vec<u32> = gpus.split(',').map(|g| g.parse().unwrap()).collect();
    assert_eq!(idx.len(), 2, "{text:?}");
    assert!(idx.iter().all(|&g| g < 4) && idx[0] != idx[1], "{text:?}");
    assert!(text.lines().any(|l| l == "WORLD_SIZE=1"), "{text:?}");

    // A long job, cancelled while it runs.
    let job = server.must(
        &user,
        "/v1/jobs",
        json!({"project": project, "gpus_per_task": 1, "command": ["sleep", "300"]}),
        201,
    )["id"]
        .as_i64()
        .unwrap();
    wait_state(&server, &user, job, "running", Duration::from_secs(10));
    let until = Instant::now() + Duration::from_secs(5);
    while !sleep_alive(&work, "300") {
        assert!(Instant::now() < until, "sleep 300 never started");
        std::thread::sleep(Duration::from_millis(50));
    }
    server.must(&user, &format!("/v1/jobs/{job}/cancel"), json!({}), 200);
    wait_state(&server, &user, job, "cancelled", Duration::from_secs(10));
    assert!(
        !sleep_alive(&work, "300"),
        "sleep 300 survived its cancellation"
    );
    // A job past its one-second time limit is stopped.
    let job = server.must(
        &user,
        "/v1/jobs",
        json!({"project": project, "gpus_per_task": 1, "time_limit_s": 1,
               "command": ["sleep", "299"]}),
        201,
    )["id"]
        .as_i64()
        .unwrap();
    wait_state(&server, &user, job, "timed_out", Duration::from_secs(10));
    assert!(
        !sleep_alive(&work, "299"),
        "sleep 299 survived its time limit"
    );

    // SIGTERM stops the agent and its running task, at once: the agent's long poll, held
    // open on the server for 30 s, is given up rather than waited out.
    let job = server.must(
        &user,
        "/v1/jobs",
        json!({"project": project, "gpus_per_task": 1, "command": ["sleep", "298"]}),
        201,
    )["id"]
        .as_i64()
        .unwrap();
    wait_state(&server, &user, job, "running", Duration::from_secs(10));
    let until = Instant::now() + Duration::from_secs(5);
    while !sleep_alive(&work, "298") {
        assert!(Instant::now() < until, "sleep 298 never started");
        std::thread::sleep(Duration::from_millis(50));
    }
    // SAFETY: plain kill(2) on the agent process this test started.
    unsafe { libc::kill(agent.0.id() as libc::pid_t, libc::SIGTERM) };
    let until = Instant::now() + Duration::from_secs(5);
    let status = loop {
        if let Some(s) = agent.0.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < until,
            "the agent did not stop within 5 s of SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "agent exited with {status}");
    assert!(
        !sleep_alive(&work, "298"),
        "sleep 298 survived the agent's SIGTERM"
    );

    eprintln!("agent end-to-end test took {:?}", started.elapsed());
}

/// The node reports how it limits tasks; a job's memory and CPU allotment reach its process;
/// `haneul logs -f` shows output while the job runs and returns when it ends.
#[test]
fn limits_reported_and_logs_followed_while_the_job_runs() {
    let c = Centre::new();
    let _agent = c.agent("gpu-001", &[]);
    let node = c.wait_node("gpu-001", |n| n["limits"].is_string());
    let limits = node["limits"].as_str().unwrap();
    assert!(
        ["rlimit", "cgroup-v2", "cgroup-v1"].contains(&limits),
        "{node}"
    );
    let v1_host = std::fs::read_to_string("/sys/fs/cgroup/unified/cgroup.controllers")
        .is_ok_and(|c| c.trim().is_empty());
    // SAFETY: geteuid has no preconditions.
    if v1_host && unsafe { libc::geteuid() } == 0 {
        // A root agent on a hybrid host makes cgroups in the v1 hierarchies.
        assert_eq!(limits, "cgroup-v1", "{node}");
    }

    let job = c.submit(json!({"gpus_per_task": 1, "memory_mib_per_task": 300,
        "cpu_milli_per_task": 1000, "time_limit_s": 60,
        "command": ["/bin/sh", "-c", "echo DATA=$(ulimit -d) CPU=$(ulimit -t); cat /proc/self/cgroup"]}));
    wait_state(
        &c.server,
        &c.user,
        job,
        "succeeded",
        Duration::from_secs(20),
    );
    let text = c.logs(job);
    if limits == "rlimit" {
        assert!(
            text.contains(&format!("DATA={} CPU=60", 300 * 1024)),
            "{text:?}"
        );
    } else {
        assert!(text.contains(&format!("job-{job}-1-0")), "{text:?}");
    }

    // Follow a job that prints, sleeps and prints.
    let job = c.submit(json!({"gpus_per_task": 1,
        "command": ["/bin/sh", "-c", "echo first; sleep 3; echo second"]}));
    let mut follow = Command::new(env!("CARGO_BIN_EXE_haneul"))
        .args(["logs", "-f", &job.to_string()])
        .arg("--server")
        .arg(format!("http://{}", c.server.addr))
        .arg("--token-file")
        .arg(&c.user_token_file)
        .env("HANEUL_CONFIG", c.dir.path().join("no-config.toml"))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let out = follow.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let first = rx
        .recv_timeout(Duration::from_secs(15))
        .expect("first line");
    assert_eq!(first, "first");
    let (_, v) = c.server.get(Some(&c.user), &format!("/v1/jobs/{job}"));
    assert_eq!(
        v["job"]["state"], "running",
        "first line came after the job ended: {v}"
    );
    let second = rx
        .recv_timeout(Duration::from_secs(15))
        .expect("second line");
    assert_eq!(second, "second");
    let until = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = follow.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < until,
            "logs -f did not return when the job ended"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status}");
    let (_, v) = c.server.get(Some(&c.user), &format!("/v1/jobs/{job}"));
    assert_eq!(v["job"]["state"], "succeeded", "{v}");
    // Streamed and final uploads together hold each line once.
    assert_eq!(c.logs(job), "first\nsecond\n");
}

/// A job's output is bytes: NUL, bytes that are not UTF-8 and a Korean character cut by the
/// agent's upload size all reach `haneul logs` exactly, and the job ends as it should.
fn output_kept_byte_for_byte(database: Option<&str>) {
    let c = Centre::on(database);
    let _agent = c.agent("gpu-001", &[]);
    // The agent uploads 128 KiB at a time: 5 bytes, 131,066 letters and the first byte of
    // "한" fill the first upload exactly.
    let script = "printf 'x\\000y\\377\\376'; head -c 131066 /dev/zero | tr '\\000' a; \
                  printf '\u{d55c}\u{ae00}\\n'";
    let job = c.submit(json!({"gpus_per_task": 1, "command": ["/bin/sh", "-c", script]}));
    wait_state(
        &c.server,
        &c.user,
        job,
        "succeeded",
        Duration::from_secs(30),
    );
    let mut want = b"x\0y\xff\xfe".to_vec();
    want.extend(std::iter::repeat_n(b'a', 131_066));
    want.extend("\u{d55c}\u{ae00}\n".as_bytes());
    let out = Command::new(env!("CARGO_BIN_EXE_haneul"))
        .args(["logs", &job.to_string()])
        .arg("--server")
        .arg(format!("http://{}", c.server.addr))
        .arg("--token-file")
        .arg(&c.user_token_file)
        .env("HANEUL_CONFIG", c.dir.path().join("no-config.toml"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout.len(), want.len());
    assert!(out.stdout == want, "haneul logs changed the job's output");
}

#[test]
fn output_kept_byte_for_byte_sqlite() {
    output_kept_byte_for_byte(None);
}

#[test]
fn output_kept_byte_for_byte_postgres() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let db = rt.block_on(haneul_store::testing::TestDb::create());
    output_kept_byte_for_byte(Some(db.url()));
}

/// Waits until `job` is queued again after its attempt 1 ended `node_lost`, and its task's
/// `sleep SECS` process is gone.
fn wait_requeued_and_stopped(c: &Centre, job: i64, secs: &str) {
    let v = wait_state(&c.server, &c.user, job, "queued", Duration::from_secs(10));
    assert_eq!(v["attempts"][0]["state"], "node_lost", "{v}");
    let until = Instant::now() + Duration::from_secs(10);
    while sleep_alive(&c.work(), secs) {
        assert!(
            Instant::now() < until,
            "the requeued job's process was not stopped"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A health command that starts failing drains the node and requeues its running job (whose
/// process is stopped); once it passes again the node resumes and the job runs again.
#[test]
fn failing_health_check_drains_the_node_and_requeues_its_job() {
    let c = Centre::new();
    let sick = c.dir.path().join("sick");
    let check = format!("test ! -e {}", sick.display());
    let _agent = c.agent(
        "gpu-h",
        &["--health-command", &check, "--health-interval", "1"],
    );
    let job = c.submit(json!({"gpus_per_task": 1, "command": ["sleep", "297"]}));
    wait_state(&c.server, &c.user, job, "running", Duration::from_secs(10));
    let until = Instant::now() + Duration::from_secs(5);
    while !sleep_alive(&c.work(), "297") {
        assert!(Instant::now() < until, "sleep 297 never started");
        std::thread::sleep(Duration::from_millis(50));
    }

    std::fs::write(&sick, "").unwrap();
    let node = c.wait_node("gpu-h", |n| n["state"] == "draining");
    assert_eq!(node["down_reason"], "unhealthy", "{node}");
    assert!(
        node["health"]
            .as_str()
            .is_some_and(|h| h.contains("exited 1")),
        "{node}"
    );
    wait_requeued_and_stopped(&c, job, "297");
    // Drained: nothing starts here while it is unhealthy.
    std::thread::sleep(Duration::from_millis(1500));
    let (_, v) = c.server.get(Some(&c.user), &format!("/v1/jobs/{job}"));
    assert_eq!(v["job"]["state"], "queued", "{v}");

    std::fs::remove_file(&sick).unwrap();
    let node = c.wait_node("gpu-h", |n| n["state"] == "up");
    assert!(node["health"].is_null(), "{node}");
    let v = wait_state(&c.server, &c.user, job, "running", Duration::from_secs(10));
    assert_eq!(v["job"]["attempts"], 2, "{v}");
    c.server
        .must(&c.user, &format!("/v1/jobs/{job}/cancel"), json!({}), 200);
    wait_state(
        &c.server,
        &c.user,
        job,
        "cancelled",
        Duration::from_secs(10),
    );
}

/// XID events reach the server through the agent's health loop, fed here through the
/// test-only `--xid-events-file` as NVML's watcher feeds them on a real node: an application
/// XID leaves the node up and its job running; a fatal one drains the node at once (the
/// periodic check is 10 minutes away), naming the GPU and the XID, and requeues the job.
#[test]
fn a_fatal_xid_drains_the_node_and_an_application_xid_does_not() {
    let c = Centre::new();
    let xids = c.dir.path().join("xids");
    let _agent = c.agent(
        "gpu-x",
        &[
            "--xid-events-file",
            xids.to_str().unwrap(),
            "--health-interval",
            "600",
        ],
    );
    let job = c.submit(json!({"gpus_per_task": 1, "command": ["sleep", "296"]}));
    wait_state(&c.server, &c.user, job, "running", Duration::from_secs(10));

    std::fs::write(&xids, "2 31\n").unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let node = c.wait_node("gpu-x", |_| true);
    assert_eq!(node["state"], "up", "{node}");
    assert!(node["health"].is_null(), "{node}");
    let (_, v) = c.server.get(Some(&c.user), &format!("/v1/jobs/{job}"));
    assert_eq!(v["job"]["state"], "running", "{v}");

    let started = Instant::now();
    std::fs::write(&xids, "2 31\n1 79\n").unwrap();
    let node = c.wait_node("gpu-x", |n| n["state"] == "draining");
    // "At once" against the periodic check's 10 minutes: 20 s holds on a loaded machine.
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(node["down_reason"], "unhealthy", "{node}");
    assert_eq!(
        node["health"], "GPU 1 (SIM-H200-1) XID 79: GPU has fallen off the bus",
        "{node}"
    );
    wait_requeued_and_stopped(&c, job, "296");
    c.server
        .must(&c.user, &format!("/v1/jobs/{job}/cancel"), json!({}), 200);
}

/// Start time of process `pid` in clock ticks since boot (/proc/PID/stat field 22).
fn start_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    rest.split_whitespace().nth(19).unwrap().parse().unwrap()
}

/// An agent killed with SIGKILL leaves its tasks running (they are in their own sessions). The
/// next agent on the node finds them from the records in the work directory: it reattaches to
/// one still running (its log continues where the first agent's upload stopped, and its exit is
/// reported), reports the exit status of one that ended while no agent ran, stops a reattached
/// one on cancellation, and kills a recorded process the server does not assign to it.
#[test]
fn a_restarted_agent_reattaches_reports_and_cleans_up() {
    let c = Centre::new();
    let mut first = c.agent("gpu-r", &[]);
    let j1 = c.submit(json!({"gpus_per_task": 1,
        "command": ["/bin/sh", "-c", "echo before; sleep 8; echo after; exit 3"]}));
    let j2 = c.submit(json!({"gpus_per_task": 1,
        "command": ["/bin/sh", "-c", "sleep 3; exit 5"]}));
    let j3 = c.submit(json!({"gpus_per_task": 1, "command": ["sleep", "295"]}));
    for j in [j1, j2, j3] {
        wait_state(&c.server, &c.user, j, "running", Duration::from_secs(10));
    }
    let until = Instant::now() + Duration::from_secs(5);
    while !c.logs(j1).contains("before") {
        assert!(Instant::now() < until, "`before` was never streamed");
        std::thread::sleep(Duration::from_millis(50));
    }
    first.0.kill().unwrap();
    first.0.wait().unwrap();
    // As if the agent died after uploading `before` but before recording that it had: the
    // next agent sends it again, and the server must keep it once.
    let record = c
        .work()
        .join(format!("job-{j1}/attempt-1/.task-0.haneul-task.json"));
    let mut rec: Value = serde_json::from_str(&std::fs::read_to_string(&record).unwrap()).unwrap();
    rec["stdout_offset"] = json!(0);
    std::fs::write(&record, rec.to_string()).unwrap();
    assert!(
        sleep_alive(&c.work(), "295"),
        "the task died with its agent"
    );
    // j2 ends while no agent runs; the status keeper records how.
    let exit2 = c
        .work()
        .join(format!("job-{j2}/attempt-1/task-0/.haneul-exit"));
    let until = Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(&exit2).is_ok_and(|t| t.ends_with('\n')) {
        assert!(Instant::now() < until, "j2's exit was not recorded");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(std::fs::read_to_string(&exit2).unwrap(), "exit 5\n");

    // A record of a process the server never assigned here (a stale attempt): a real process
    // in its own group, so the agent's clean-up can be seen.
    use std::os::unix::process::CommandExt;
    let mut stray = Command::new("sleep")
        .arg("293")
        .current_dir(c.dir.path())
        .process_group(0)
        .spawn()
        .unwrap();
    let stray_pid = stray.id();
    let stray_dir = c.work().join("job-999/attempt-1/task-0");
    std::fs::create_dir_all(&stray_dir).unwrap();
    std::fs::write(
        c.work().join("job-999/attempt-1/.task-0.haneul-task.json"),
        json!({"job": 999, "fence": 1, "task": 0, "pid": stray_pid,
               "start_ticks": start_ticks(stray_pid), "started_at_ms": 0, "limits": "none",
               "stdout_offset": 0, "stderr_offset": 0})
        .to_string(),
    )
    .unwrap();
    let reaper = std::thread::spawn(move || stray.wait().unwrap());

    let _second = c.agent("gpu-r", &[]);
    let v = wait_state(&c.server, &c.user, j2, "failed", Duration::from_secs(10));
    assert_eq!(v["job"]["exit_code"], 5, "{v}");
    let status = reaper.join().unwrap();
    assert!(
        !status.success(),
        "the stray process was not stopped: {status}"
    );
    assert!(
        !c.work()
            .join("job-999/attempt-1/.task-0.haneul-task.json")
            .exists()
    );

    let v = wait_state(&c.server, &c.user, j1, "failed", Duration::from_secs(20));
    assert_eq!(v["job"]["exit_code"], 3, "{v}");
    assert_eq!(v["attempts"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(c.logs(j1), "before\nafter\n");

    assert!(sleep_alive(&c.work(), "295"));
    c.server
        .must(&c.user, &format!("/v1/jobs/{j3}/cancel"), json!({}), 200);
    wait_state(&c.server, &c.user, j3, "cancelled", Duration::from_secs(15));
    assert!(
        !sleep_alive(&c.work(), "295"),
        "the reattached task survived its cancellation"
    );
}

/// Two agents on separate loopback addresses run the two ranks of one job: rank 0 listens on
/// MASTER_ADDR:MASTER_PORT, rank 1 connects, and each prints what it got from the other.
#[test]
fn two_node_gang_meets_at_master_addr_over_tcp() {
    let c = Centre::new();
    let _a = c.agent("gpu-a", &["--advertise-addr", "127.0.0.2"]);
    let _b = c.agent("gpu-b", &["--advertise-addr", "127.0.0.3"]);
    let node = c.wait_node("gpu-a", |n| n["address"] == "127.0.0.2");
    assert_eq!(node["state"], "up");
    let script = r#"
import os, socket, sys, time
env = {k: os.environ[k] for k in ["MASTER_ADDR", "MASTER_PORT", "WORLD_SIZE", "RANK",
       "LOCAL_RANK", "LOCAL_WORLD_SIZE", "NODE_RANK", "CUDA_VISIBLE_DEVICES", "HANEUL_NODE"]}
print("ENV", " ".join(f"{k}={v}" for k, v in sorted(env.items())), flush=True)
addr, port, rank = env["MASTER_ADDR"], int(env["MASTER_PORT"]), int(env["RANK"])
if rank == 0:
    s = socket.create_server((addr, port))
    s.settimeout(20)
    conn, peer = s.accept()
    conn.sendall(b"hello from rank 0\n")
    print("rank 0 got:", conn.makefile().readline().strip(), flush=True)
else:
    deadline = time.time() + 20
    while True:
        try:
            conn = socket.create_connection((addr, port), timeout=2)
            break
        except OSError:
            if time.time() > deadline:
                raise
            time.sleep(0.05)
    conn.sendall(b"hello from rank 1\n")
    print("rank 1 got:", conn.makefile().readline().strip(), "from", addr, flush=True)
"#;
    // Two tasks of 4 GPUs each: one per node.
    let job = c.submit(json!({"replicas": 2, "gpus_per_task": 4,
        "command": ["/usr/bin/python3", "-c", script]}));
    let v = wait_state(
        &c.server,
        &c.user,
        job,
        "succeeded",
        Duration::from_secs(30),
    );
    let nodes: Vec<i64> = v["attempts"][0]["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["node"].as_i64().unwrap())
        .collect();
    assert_eq!(nodes.len(), 2);
    assert_ne!(nodes[0], nodes[1], "{v}");
    let (_, all) = c.server.get(Some(&c.admin), "/v1/nodes");
    let node_of = |id: i64| {
        all.as_array()
            .unwrap()
            .iter()
            .find(|n| n["id"] == id)
            .unwrap()
            .clone()
    };
    let master = node_of(nodes[0]);
    let master_addr = master["address"].as_str().unwrap().to_string();
    let text = c.logs(job);
    let port = 20000 + job % 20000;
    for (rank, &node) in nodes.iter().enumerate() {
        let line = text
            .lines()
            .find(|l| l.starts_with("ENV") && l.contains(&format!(" RANK={rank} ")))
            .unwrap_or_else(|| panic!("no ENV line of rank {rank} in {text:?}"));
        for want in [
            format!("MASTER_ADDR={master_addr}"),
            format!("MASTER_PORT={port}"),
            "WORLD_SIZE=2".into(),
            "LOCAL_RANK=0".into(),
            "LOCAL_WORLD_SIZE=1".into(),
            format!("NODE_RANK={rank}"),
            "CUDA_VISIBLE_DEVICES=0,1,2,3".into(),
            format!("HANEUL_NODE={}", node_of(node)["name"].as_str().unwrap()),
        ] {
            assert!(line.contains(&want), "rank {rank} lacks {want}: {line}");
        }
    }
    assert!(text.contains("rank 0 got: hello from rank 1"), "{text:?}");
    assert!(
        text.contains(&format!("rank 1 got: hello from rank 0 from {master_addr}")),
        "{text:?}"
    );
}

/// With `--task-user submitter` (agent as root) a job of a user without a Unix account runs
/// as the fallback account, in a directory it owns; with `--fallback-user none` it is refused
/// with a message saying why. Not root: the agent refuses the flag at start.
#[test]
fn tasks_run_as_the_submitter_or_the_fallback_account() {
    use std::os::unix::fs::PermissionsExt;
    let c = Centre::new();
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        let out = Command::new(env!("CARGO_BIN_EXE_haneul"))
            .args(["agent", "--server", "http://127.0.0.1:1", "--token", "x"])
            .args(["--simulate-gpus", "1xH200", "--task-user", "submitter"])
            .output()
            .unwrap();
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("needs the agent to run as root"));
        return;
    }
    // The fallback account must be able to reach its work directory.
    std::fs::set_permissions(c.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut agent = c.agent("gpu-u", &["--task-user", "submitter"]);
    let job = c.submit(json!({"gpus_per_task": 1, "command": ["/bin/sh", "-c",
        "id -un; touch \"$HOME/mine\" && echo wrote"]}));
    wait_state(
        &c.server,
        &c.user,
        job,
        "succeeded",
        Duration::from_secs(20),
    );
    // No account `kim` here: the fallback, nobody.
    assert_eq!(c.logs(job), "nobody\nwrote\n");
    // SAFETY: kill(2) of the agent this test started.
    unsafe { libc::kill(agent.0.id() as libc::pid_t, libc::SIGTERM) };
    agent.0.wait().unwrap();

    let _agent = c.agent(
        "gpu-u",
        &["--task-user", "submitter", "--fallback-user", "none"],
    );
    let job = c.submit(json!({"gpus_per_task": 1, "command": ["true"]}));
    let v = wait_state(&c.server, &c.user, job, "failed", Duration::from_secs(20));
    assert_eq!(v["job"]["exit_code"], 127, "{v}");
    assert!(
        c.logs(job).contains("no Unix account `kim`"),
        "{}",
        c.logs(job)
    );
}
