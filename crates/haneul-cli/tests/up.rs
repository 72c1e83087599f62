//! End to end: `haneul up` in the background, then the user commands against it as a user in
//! the same shell would run them, all with --json parsed; SIGTERM stops everything.

use serde_json::Value;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

struct Up(Child);

impl Drop for Up {
    fn drop(&mut self) {
        unsafe {
            libc::kill(self.0.id() as libc::pid_t, libc::SIGTERM);
        }
        let _ = self.0.wait();
    }
}

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
    let dir = tempfile::tempdir().unwrap();
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
            "echo hello-$CUDA_VISIBLE_DEVICES",
        ],
    );
    let id = job["id"].as_i64().expect("an id").to_string();
    wait_state(&config, &id, "succeeded");
    let logs = ok(&config, &["logs", &id]);
    assert!(logs.contains("hello-"), "logs: {logs}");

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
    let left = processes_under(&dir_path);
    assert!(
        left.is_empty(),
        "processes left after the second run: {left:?}"
    );
    eprintln!("up test took {:?}", started.elapsed());
}
