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

#[test]
fn agent_runs_and_cancels_real_jobs() {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("server"), None, &[]);
    let admin = server.admin_token();
    let org = server.must(
        &admin,
        "/v1/orgs",
        json!({"name": "kaist", "country": "KR"}),
        201,
    )["id"]
        .clone();
    let project = server.must(
        &admin,
        "/v1/projects",
        json!({"org": org, "name": "llm"}),
        201,
    )["id"]
        .as_i64()
        .unwrap();
    server.must(&admin, "/v1/pools", json!({"name": "h200"}), 201);
    let user = server.user_token(&admin, "kim", "member", org.as_i64(), &[project]);
    let agent_token = server.user_token(&admin, "agent-1", "agent", None, &[]);
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

    // SIGTERM stops the agent and its running task.
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
    let until = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(s) = agent.0.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < until, "the agent did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "agent exited with {status}");
    assert!(
        !sleep_alive(&work, "298"),
        "sleep 298 survived the agent's SIGTERM"
    );

    eprintln!("agent end-to-end test took {:?}", started.elapsed());
}
