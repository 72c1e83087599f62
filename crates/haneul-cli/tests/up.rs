//! End to end: `haneul up` in the background, then the user commands against it as a user in
//! the same shell would run them, all with --json parsed; SIGTERM stops everything.

mod common;

use common::up::Up;

use serde_json::Value;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn haneul(config: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_haneul"))
        .args(args)
        .env("HANEUL_CONFIG", config)
        .env_remove("HANEUL_SERVER")
        .env_remove("HANEUL_TOKEN")
        .output()
        .expect("run haneul")
}

fn ok(config: &Path, args: &[&str]) -> String {
    let out = haneul(config, args);
    assert!(
        out.status.success(),
        "haneul {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn json(config: &Path, args: &[&str]) -> Value {
    let text = ok(config, args);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("haneul {args:?}: {e}: {text}"))
}

fn wait_state(config: &Path, id: &str, want: &str) {
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        let job = json(config, &["show", id, "--json"]);
        if job["state"] == want {
            return;
        }
        assert!(Instant::now() < until, "job {id} not {want}: {job}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Processes whose working directory lies under `dir`.
fn processes_under(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if !name.chars().all(|c| c.is_ascii_digit()) {
            continue;
        }
        if let Ok(cwd) = std::fs::read_link(e.path().join("cwd"))
            && cwd.starts_with(dir)
        {
            found.push(name);
        }
    }
    found
}

fn alive(pid: u32) -> bool {
    // A zombie has been reaped by nobody yet but runs nothing; count it as gone.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => !s
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

#[test]
fn up_submit_watch_cancel_stop() {
    let started = Instant::now();
    let dir = common::tempdir();
    let dir_path = dir.path().canonicalize().unwrap();
    let config = dir_path.join("config/config.toml");
    let data = dir_path.join("data");
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    let mut up = Up(Command::new(env!("CARGO_BIN_EXE_haneul"))
        .arg("up")
        .arg("--data-dir")
        .arg(&data)
        .args(["--listen", &listen, "--simulate-gpus", "4xH200"])
        .env("HANEUL_CONFIG", &config)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start haneul up"));

    let until = Instant::now() + Duration::from_secs(30);
    while !config.exists() {
        assert!(up.0.try_wait().unwrap().is_none(), "haneul up exited early");
        assert!(Instant::now() < until, "no config written");
        std::thread::sleep(Duration::from_millis(100));
    }

    let job = json(
        &config,
        &[
            "submit",
            "--gpus",
            "1",
            "--json",
            "--",
            "sh",
            "-c",
            "echo hello-$CUDA_VISIBLE_DEVICES; echo uid-$(id -u)",
        ],
    );
    let id = job["id"].as_i64().expect("an id").to_string();
    wait_state(&config, &id, "succeeded");
    let logs = ok(&config, &["logs", &id]);
    assert!(logs.contains("hello-"), "logs: {logs}");
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        // Started by root, the demo user's jobs run as its allocated uid (from the default
        // range, after the administrator's), never as root.
        let uid: u32 = logs
            .lines()
            .find_map(|l| l.strip_prefix("uid-"))
            .and_then(|u| u.trim().parse().ok())
            .unwrap_or_else(|| panic!("no uid line in {logs}"));
        assert!((200_001..=299_999).contains(&uid), "logs: {logs}");
    }

    let sleeper = ok(&config, &["submit", "--gpus", "1", "--", "sleep", "300"]);
    let sleeper = sleeper.trim().to_string();
    sleeper.parse::<i64>().expect("a job id");
    wait_state(&config, &sleeper, "running");
    ok(&config, &["cancel", &sleeper]);
    wait_state(&config, &sleeper, "cancelled");

    let queue = json(&config, &["queue", "--json"]);
    assert!(queue.as_array().is_some_and(|q| q.len() == 2), "{queue}");
    let usage = json(&config, &["usage", "--json"]);
    assert!(usage.is_array(), "{usage}");
    // The demo project's award, with the fields scripts rely on.
    for field in [
        "project",
        "gpu_hours_granted",
        "gpu_hours_used",
        "gpu_hours_left",
        "valid_until",
    ] {
        assert!(usage[0][field].is_number(), "{field}: {usage}");
    }
    assert_eq!(usage[0]["state"], "active", "{usage}");

    // Errors: an unknown job is exit 1 with advice; a usage mistake is exit 2.
    let missing = haneul(&config, &["show", "999999"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("haneul queue"));
    assert_eq!(haneul(&config, &["submit"]).status.code(), Some(2));

    let pid = up.0.id();
    unsafe {
        libc::kill(pid as libc::pid_t, libc::SIGTERM);
    }
    let until = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(status) = up.0.try_wait().unwrap() {
            assert!(status.success(), "haneul up: {status}");
            break;
        }
        assert!(Instant::now() < until, "haneul up did not stop");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!alive(pid));
    let left = processes_under(&dir_path);
    assert!(
        left.is_empty(),
        "processes left under the data dir: {left:?}"
    );

    // A second run reuses the data directory: same jobs, no new demo objects.
    std::fs::remove_file(&config).unwrap();
    let mut again = Up(Command::new(env!("CARGO_BIN_EXE_haneul"))
        .arg("up")
        .arg("--data-dir")
        .arg(&data)
        .args(["--listen", &listen, "--simulate-gpus", "4xH200"])
        .env("HANEUL_CONFIG", &config)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start haneul up again"));
    let until = Instant::now() + Duration::from_secs(30);
    while !config.exists() {
        assert!(
            again.0.try_wait().unwrap().is_none(),
            "haneul up exited early"
        );
        assert!(
            Instant::now() < until,
            "no config written on the second run"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let queue = json(&config, &["queue", "--json"]);
    assert!(queue.as_array().is_some_and(|q| q.len() == 2), "{queue}");
    unsafe {
        libc::kill(again.0.id() as libc::pid_t, libc::SIGTERM);
    }
    assert!(again.0.wait().unwrap().success());
    // The logs were appended to, not truncated: both runs' servers are in them; and private.
    let server_log = std::fs::read_to_string(data.join("server.log")).unwrap();
    assert_eq!(
        server_log.matches("haneul server listening on").count(),
        2,
        "{server_log}"
    );
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        for f in [
            "server.log",
            "agent.log",
            "user.token",
            "agent.token",
            "up.toml",
        ] {
            assert_eq!(mode(&data.join(f)), 0o600, "{f}");
        }
        assert_eq!(mode(&data.join("server")), 0o700);
        assert_eq!(mode(&data.join("server/admin.token")), 0o600);
        assert_eq!(mode(&data), 0o711);
    }
    let left = processes_under(&dir_path);
    assert!(
        left.is_empty(),
        "processes left after the second run: {left:?}"
    );
    eprintln!("up test took {:?}", started.elapsed());
}

/// `haneul up` on a free port with a config of its own under `dir`, waited for until it has
/// written the client config.
fn start_up(dir: &Path, gpus: &str) -> (Up, std::path::PathBuf, std::path::PathBuf) {
    start_up_with(dir, gpus, &[])
}

/// [`start_up`] with more `haneul up` flags.
fn start_up_with(
    dir: &Path,
    gpus: &str,
    extra: &[&str],
) -> (Up, std::path::PathBuf, std::path::PathBuf) {
    common::up::start_up(dir, gpus, extra)
}

fn haneul_env(config: &Path, env: &[(&str, &str)], args: &[&str]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_haneul"));
    c.args(args)
        .env("HANEUL_CONFIG", config)
        .env_remove("HANEUL_SERVER")
        .env_remove("HANEUL_TOKEN")
        .env_remove("HANEUL_PROJECT")
        .env_remove("LC_ALL")
        .env_remove("LC_MESSAGES")
        .env("LANG", "C");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("run haneul")
}

fn wait_ended(config: &Path, id: i64) -> Value {
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let job = json(config, &["show", &id.to_string(), "--json"]);
        let s = job["state"].as_str().unwrap_or_default().to_string();
        if ["succeeded", "failed", "cancelled", "timed_out"].contains(&s.as_str()) {
            return job;
        }
        assert!(Instant::now() < until, "job {id} did not end: {job}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Job files, sbatch-like flags, dependencies, arrays, `whoami`, the operator commands, Korean
/// and English errors: the real binary against `haneul up`, every answer parsed from --json.
#[test]
fn job_files_dependencies_arrays_and_operator_commands() {
    let started = Instant::now();
    let dir = common::tempdir();
    let dir_path = dir.path().canonicalize().unwrap();
    let (up, config, data) = start_up(&dir_path, "4xH200");
    let c = config.as_path();

    // A job file, with a flag overriding one of its keys.
    let file = dir_path.join("job.toml");
    std::fs::write(
        &file,
        "name = \"from-file\"\ngpus = 1\ntime = \"5m\"\ngpu_model = \"H200\"\n\
         priority = \"high\"\ncommand = [\"sh\", \"-c\", \"echo file-job-$CUDA_VISIBLE_DEVICES\"]\n",
    )
    .unwrap();
    let f = file.to_str().unwrap();
    let job = json(c, &["submit", f, "--time", "10m", "--json"]);
    assert_eq!(job["name"], "from-file");
    assert_eq!(job["time_limit_s"], 600, "the flag overrides the file");
    assert_eq!(job["priority"], "high");
    assert_eq!(job["gpu_models"], serde_json::json!(["H200"]));
    let file_job = job["id"].as_i64().unwrap();
    assert_eq!(wait_ended(c, file_job)["state"], "succeeded");
    assert!(ok(c, &["logs", &file_job.to_string()]).contains("file-job-"));

    // An unknown key in a job file is an error naming it (exit 1: the file, not the flags).
    std::fs::write(&file, "gpus = 1\ngpu = 2\ncommand = [\"true\"]\n").unwrap();
    let bad = haneul_env(c, &[], &["submit", "--file", f]);
    assert_eq!(bad.status.code(), Some(1));
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains("unknown field `gpu`"), "{err}");

    // Dependencies: afterok on a failing parent fails the child with a reason naming the
    // parent; afterany runs after it whatever its end.
    let parent = json(
        c,
        &[
            "submit",
            "--gpus",
            "1",
            "--json",
            "--",
            "sh",
            "-c",
            "sleep 1; exit 3",
        ],
    )["id"]
        .as_i64()
        .unwrap();
    let dep_ok = format!("afterok:{parent}");
    let dep_any = format!("afterany:{parent}");
    let child_ok = json(
        c,
        &[
            "submit",
            "--dependency",
            &dep_ok,
            "--gpus",
            "1",
            "--json",
            "--",
            "echo",
            "never",
        ],
    );
    assert_eq!(child_ok["state"], "queued");
    assert_eq!(
        child_ok["dependencies"],
        serde_json::json!([{"kind": "afterok", "job": parent}])
    );
    let child_any = json(
        c,
        &[
            "submit",
            "--dependency",
            &dep_any,
            "--cpus-per-task",
            "1",
            "--json",
            "--",
            "echo",
            "after-any",
        ],
    )["id"]
        .as_i64()
        .unwrap();
    // While the parent runs the children wait.
    let early = json(c, &["show", &child_any.to_string(), "--json"]);
    assert_eq!(
        early["attempts"].as_array().map(Vec::len),
        Some(0),
        "{early}"
    );
    let p = wait_ended(c, parent);
    assert_eq!(p["state"], "failed");
    let failed = wait_ended(c, child_ok["id"].as_i64().unwrap());
    assert_eq!(failed["state"], "failed");
    let reason = failed["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains(&format!("afterok:{parent}")),
        "reason: {reason}"
    );
    let any = wait_ended(c, child_any);
    assert_eq!(any["state"], "succeeded", "{any}");
    let started_any = any["attempts"][0]["started_at"].as_i64().unwrap();
    assert!(started_any >= p["updated_at"].as_i64().unwrap());
    // A parent that does not exist is refused at once, naming the flag.
    let missing = haneul_env(
        c,
        &[],
        &[
            "submit",
            "--dependency",
            "afterok:999999",
            "--gpus",
            "1",
            "--",
            "true",
        ],
    );
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("--dependency"));

    // An array is one job on the server; its tasks follow as jobs of their own (see
    // `arrays_on_the_server`).
    let arr = json(
        c,
        &[
            "submit", "--array", "0-2%1", "--gpus", "1", "--json", "--", "true",
        ],
    );
    assert_eq!(arr["array"], "0-2%1", "{arr}");
    let done = wait_ended(c, arr["id"].as_i64().unwrap());
    assert_eq!(done["state"], "succeeded", "{done}");

    // squeue-like filters.
    let failed_jobs = json(c, &["queue", "--state", "failed", "--json"]);
    let failed_ids: Vec<i64> = failed_jobs
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_i64().unwrap())
        .collect();
    assert!(failed_ids.contains(&parent) && !failed_ids.contains(&child_any));
    assert_eq!(
        json(c, &["queue", "--limit", "2", "--json"])
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let bad_state = haneul_env(c, &[], &["queue", "--state", "done"]);
    assert_eq!(bad_state.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad_state.stderr).contains("--state"));

    // whoami as the demo user; usage charges what ran to the demo award.
    let me = json(c, &["whoami", "--json"]);
    assert_eq!(me["role"], "member");
    assert_eq!(me["name"], "demo");
    let usage = json(c, &["usage", "--json"]);
    assert!(
        usage
            .as_array()
            .unwrap()
            .iter()
            .any(|u| u["gpu_model"] == "H200" && u["gpu_hours_used"].as_f64().unwrap() > 0.0),
        "{usage}"
    );

    // Operator commands with the centre admin's token.
    let admin = data.join("server/admin.token");
    let admin = admin.to_str().unwrap();
    let op = |args: &[&str]| -> Value {
        let mut all = args.to_vec();
        all.extend(["--token-file", admin, "--json"]);
        json(c, &all)
    };
    let nodes = op(&["node", "list"]);
    let node = nodes[0]["id"].as_i64().unwrap().to_string();
    assert_eq!(op(&["node", "drain", &node])["state"], "draining");
    assert_eq!(op(&["node", "show", &node])["state"], "draining");
    assert_eq!(op(&["node", "resume", &node])["state"], "up");
    let projects = op(&["project", "list"]);
    let project = projects[0]["id"].as_i64().unwrap();
    let org = projects[0]["org"].as_i64().unwrap().to_string();
    let set = op(&[
        "project",
        "set-quota",
        &project.to_string(),
        "--quota",
        "H200=2:4",
    ]);
    assert_eq!(
        set["quotas"],
        serde_json::json!([{"gpu_model": "H200", "guaranteed_milli": 2000, "borrow_limit_milli": 4000}])
    );
    let created = op(&[
        "project", "create", "--org", &org, "--name", "second", "--quota", "H200=1",
    ]);
    let second = created["id"].as_i64().unwrap();
    assert_eq!(
        op(&["project", "show", &second.to_string()])["name"],
        "second"
    );
    let user = op(&[
        "user",
        "create",
        "--name",
        "kim",
        "--role",
        "member",
        "--org",
        &org,
        "--project",
        &second.to_string(),
    ]);
    let uid = user["id"].as_i64().unwrap().to_string();
    assert_eq!(
        op(&["user", "show", &uid])["projects"],
        serde_json::json!([second])
    );
    assert!(op(&["user", "list"]).as_array().unwrap().len() >= 3);
    let kim_token = dir_path.join("kim.token");
    let tok = op(&[
        "token",
        "create",
        "--user",
        &uid,
        "--name",
        "test",
        "--out",
        kim_token.to_str().unwrap(),
    ]);
    assert!(tok["secret"].is_null(), "the secret went to the file only");
    let kim = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["--token-file", kim_token.to_str().unwrap()]);
        haneul_env(c, &[], &all)
    };
    let kim_me = kim(&["whoami", "--json"]);
    assert!(kim_me.status.success());
    assert!(String::from_utf8_lossy(&kim_me.stdout).contains("\"kim\""));
    let tid = tok["token"]["id"].as_i64().unwrap();
    assert!(
        op(&["token", "list"])
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["id"] == tid)
    );
    assert!(op(&["token", "revoke", &tid.to_string()])["revoked_at"].is_i64());
    let revoked = kim(&["whoami"]);
    assert_eq!(revoked.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&revoked.stderr).contains("--token-file"));
    // A member may not drain nodes: exit 1, with what to do.
    let denied = haneul_env(c, &[], &["node", "drain", &node]);
    assert_eq!(denied.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&denied.stderr).contains("haneul whoami"));
    assert!(
        op(&["pool", "list"])
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "local")
    );
    let audit = op(&["audit", "list", "--action", "node.", "--limit", "1"]);
    assert_eq!(audit.as_array().unwrap().len(), 1, "{audit}");
    assert!(audit[0]["action"].as_str().unwrap().starts_with("node."));
    assert!(op(&["audit", "verify"])["entries"].as_i64().unwrap() > 10);

    // Errors in both languages; usage mistakes are exit 2, failures exit 1.
    let ko = [("LANG", "ko_KR.UTF-8")];
    let e = haneul_env(c, &ko, &["show", "999999"]);
    assert_eq!(e.status.code(), Some(1));
    let err = String::from_utf8_lossy(&e.stderr);
    assert!(err.starts_with("오류: "), "{err}");
    assert!(err.contains("`haneul queue` 로"), "{err}");
    // The server's own message is in Korean too, naming the same job.
    assert!(err.contains("`999999` 을(를) 찾을 수 없습니다"), "{err}");
    let queue = haneul_env(c, &ko, &["queue"]);
    let queue = String::from_utf8_lossy(&queue.stdout);
    assert!(
        ["성공", "실패", "취소됨", "실행 중", "대기 중"]
            .iter()
            .any(|w| queue.contains(w)),
        "{queue}"
    );
    let e = haneul_env(c, &[], &["show", "999999"]);
    assert!(String::from_utf8_lossy(&e.stderr).starts_with("error: "));
    let e = haneul_env(
        c,
        &ko,
        &["submit", "--gpus", "1", "--time", "5w", "--", "true"],
    );
    assert_eq!(e.status.code(), Some(2));
    let err = String::from_utf8_lossy(&e.stderr);
    assert!(
        err.contains("--time:") && err.contains("받은 값: `5w`"),
        "{err}"
    );
    let e = haneul_env(
        c,
        &[("LC_ALL", "en_US.UTF-8"), ("LANG", "ko_KR.UTF-8")],
        &["submit", "--gpus", "1", "--time", "5w", "--", "true"],
    );
    assert!(String::from_utf8_lossy(&e.stderr).contains("expected e.g. 90s"));
    let help = haneul_env(c, &ko, &["--help"]);
    assert!(String::from_utf8_lossy(&help.stdout).contains("작업 제출"));

    // Completions and colour: scripts for each shell; no escape codes when not a terminal.
    for shell in ["bash", "zsh", "fish"] {
        let out = haneul_env(c, &[], &["completions", shell]);
        assert!(out.status.success());
        assert!(String::from_utf8_lossy(&out.stdout).contains("submit"));
    }
    let q = haneul_env(c, &[], &["queue"]);
    assert!(!String::from_utf8_lossy(&q.stdout).contains('\x1b'));

    drop(up);
    let left = processes_under(&dir_path);
    assert!(left.is_empty(), "processes left: {left:?}");
    eprintln!("job files test took {:?}", started.elapsed());
}

/// `haneul up --tls`: the server speaks HTTPS with a CA of its own, which the client
/// configuration and the local agent trust; a job goes through and its output comes back, and a
/// client without that CA refuses the server.
/// Waits for array task `id` (`ARRAY_TASK`) to reach `want`; a task not yet made into a job
/// is not found until the controller makes it one.
fn wait_task(config: &Path, id: &str, want: &str) {
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        let out = haneul(config, &["show", id, "--json"]);
        let job: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        if job["state"] == want {
            return;
        }
        assert!(
            Instant::now() < until,
            "task {id} not {want}: {job} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Job arrays as one server-side job: one submit, `%2` keeps at most two tasks running, every
/// task sees Slurm's array variables, the queue shows the array compactly, a dependency on the
/// array waits for every task, and `cancel` takes one task (`ID_TASK`) or the whole array.
#[test]
fn arrays_on_the_server() {
    let dir = common::tempdir();
    let dir_path = dir.path().canonicalize().unwrap();
    let (_up, config, _data) = start_up(&dir_path, "8xH200");
    let c = config.as_path();
    let arr = json(
        c,
        &[
            "submit",
            "--array",
            "0-5%2",
            "--gpus",
            "1",
            "--name",
            "sweep",
            "--json",
            "--",
            "sh",
            "-c",
            "sleep 1; echo task=$SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT array=$SLURM_ARRAY_JOB_ID",
        ],
    );
    let id = arr["id"].as_i64().expect("one job for the whole array");
    assert_eq!(arr["array"], "0-5%2", "{arr}");
    let after = json(
        c,
        &[
            "submit",
            "--dependency",
            &format!("afterok:{id}"),
            "--gpus",
            "1",
            "--json",
            "--",
            "true",
        ],
    );
    // The queue shows the tasks still to come in one line, and tasks that are jobs as ID_TASK.
    let pending_line = format!("{id}_[");
    let until = Instant::now() + Duration::from_secs(20);
    let mut seen_pending = false;
    let mut seen_task = false;
    let mut seen_throttle = false;
    while !(seen_pending && seen_task && seen_throttle) {
        let q = ok(c, &["queue"]);
        seen_pending |= q
            .lines()
            .any(|l| l.contains(&pending_line) && l.contains("%2]"));
        seen_task |= (0..6).any(|t| q.contains(&format!("{id}_{t} ")));
        // The array's own row says its tasks wait for the %2 throttle.
        let row = json(c, &["show", &id.to_string(), "--json"]);
        seen_throttle |= row["pending_reason"]["code"] == "JobArrayTaskLimit";
        assert!(
            Instant::now() < until,
            "no compact array in the queue:\n{q}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let done = wait_ended(c, id);
    assert_eq!(done["state"], "succeeded", "{done}");
    let mut windows = Vec::new();
    for t in 0..6 {
        let task = json(c, &["show", &format!("{id}_{t}"), "--json"]);
        assert_eq!(task["state"], "succeeded", "{task}");
        assert_eq!(
            (task["array_job"].as_i64(), task["array_task"].as_i64()),
            (Some(id), Some(t))
        );
        let a = &task["attempts"][0];
        windows.push((
            a["started_at"].as_i64().unwrap(),
            a["ended_at"].as_i64().unwrap(),
        ));
        let logs = ok(c, &["logs", &task["id"].as_i64().unwrap().to_string()]);
        assert!(
            logs.contains(&format!("task={t}/6 array={id}")),
            "task {t}: {logs}"
        );
    }
    // At most two tasks at once: at every start, count the tasks running then.
    for &(start, _) in &windows {
        let running = windows
            .iter()
            .filter(|(s, e)| *s <= start && start < *e)
            .count();
        assert!(running <= 2, "{running} tasks ran at once: {windows:?}");
    }
    let last_end = windows.iter().map(|w| w.1).max().unwrap();
    let dep = wait_ended(c, after["id"].as_i64().unwrap());
    assert_eq!(dep["state"], "succeeded", "{dep}");
    assert!(
        dep["attempts"][0]["started_at"].as_i64().unwrap() >= last_end,
        "afterok on the array waits for its last task: {dep}"
    );

    // Cancelling: one running task, one task not yet a job, then the whole array.
    let big = json(
        c,
        &[
            "submit", "--array", "0-99%2", "--gpus", "1", "--json", "--", "sleep", "60",
        ],
    );
    let big_id = big["id"].as_i64().unwrap();
    wait_task(c, &format!("{big_id}_0"), "running");
    wait_task(c, &format!("{big_id}_1"), "running");
    let one = json(c, &["cancel", &format!("{big_id}_1"), "--json"]);
    assert_eq!(one["array_task"], 1, "{one}");
    wait_task(c, &format!("{big_id}_1"), "cancelled");
    let pending = json(c, &["cancel", &format!("{big_id}_50"), "--json"]);
    assert_eq!(pending["state"], "cancelled", "{pending}");
    wait_task(c, &format!("{big_id}_2"), "running");
    let whole = json(c, &["cancel", &big_id.to_string(), "--json"]);
    assert_eq!(whole["state"], "cancelled", "{whole}");
    for t in [0, 2] {
        wait_task(c, &format!("{big_id}_{t}"), "cancelled");
    }
    // The tasks never made into jobs never will be; nothing of the array is left queued.
    let missing = haneul(c, &["show", &format!("{big_id}_99")]);
    assert!(!missing.status.success());
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains(&format!("{big_id}_99")),
        "{}",
        String::from_utf8_lossy(&missing.stderr)
    );
    let q = json(c, &["queue", "--state", "queued", "--json"]);
    assert!(
        q.as_array().unwrap().is_empty(),
        "nothing queued after the cancel: {q}"
    );
    // A bad spec is refused before anything is sent, naming the flag.
    let bad = haneul(
        c,
        &["submit", "--array", "9-1", "--gpus", "1", "--", "true"],
    );
    assert_eq!(bad.status.code(), Some(2), "a usage error");
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--array"));
}

#[test]
fn up_with_tls_serves_https_end_to_end() {
    let dir = common::tempdir();
    let (_up, config, data) = start_up_with(dir.path(), "1xH200", &["--tls"]);
    let text = std::fs::read_to_string(&config).unwrap();
    let ca = data.join("tls/ca.pem");
    assert!(text.contains("server = \"https://"), "{text}");
    assert!(
        text.contains(&format!("ca_file = \"{}\"", ca.display())),
        "{text}"
    );
    let job = json(
        &config,
        &[
            "submit",
            "--gpus",
            "1",
            "--json",
            "--",
            "sh",
            "-c",
            "echo hello over tls",
        ],
    );
    let id = job["id"].as_i64().unwrap();
    assert_eq!(wait_ended(&config, id)["state"], "succeeded");
    assert!(ok(&config, &["logs", &id.to_string()]).contains("hello over tls"));

    let without_ca: String = text
        .lines()
        .filter(|l| !l.starts_with("ca_file"))
        .map(|l| format!("{l}\n"))
        .collect();
    let bare = dir.path().join("config/bare.toml");
    std::fs::write(&bare, without_ca).unwrap();
    let refused = haneul(&bare, &["queue"]);
    assert!(
        !refused.status.success(),
        "a client without the CA trusted the server"
    );
}
