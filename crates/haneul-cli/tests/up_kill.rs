//! `haneul up` killed with SIGKILL takes its server and agent with it, so the next `haneul up`
//! on the same port and data directory starts.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Up(Child);

impl Drop for Up {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(data: &Path, config: &Path, listen: &str) -> Up {
    let _ = std::fs::remove_file(config);
    let mut up = Up(Command::new(env!("CARGO_BIN_EXE_haneul"))
        .arg("up")
        .arg("--data-dir")
        .arg(data)
        .args(["--listen", listen, "--simulate-gpus", "2xH200"])
        .env("HANEUL_CONFIG", config)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start haneul up"));
    let until = Instant::now() + Duration::from_secs(60);
    while !config.exists() {
        assert!(up.0.try_wait().unwrap().is_none(), "haneul up exited early");
        assert!(Instant::now() < until, "no config written");
        std::thread::sleep(Duration::from_millis(100));
    }
    up
}

/// Processes whose command line has `haneul` and `data`'s path in it: the children `up` starts
/// name the data directory in their arguments.
fn children_of(data: &Path) -> Vec<i32> {
    let needle = data.to_string_lossy().into_owned();
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<String> = cmdline
            .split(|&b| b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let is_child = args.iter().any(|a| a == "server" || a == "agent");
        if is_child && args.iter().any(|a| a.contains(&needle)) {
            pids.push(pid);
        }
    }
    pids
}

#[test]
fn up_killed_with_sigkill_leaves_nothing_running() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path().canonicalize().unwrap();
    let data = dir.join("data");
    let config = dir.join("config/config.toml");
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");

    let mut up = start(&data, &config, &listen);
    let children = children_of(&data);
    assert!(
        children.len() >= 2,
        "expected the server and the agent under `haneul up`, found {children:?}"
    );
    up.0.kill().unwrap(); // SIGKILL: `up` runs no clean-up of its own
    up.0.wait().unwrap();
    let until = Instant::now() + Duration::from_secs(15);
    loop {
        let left = children_of(&data);
        if left.is_empty() {
            break;
        }
        assert!(
            Instant::now() < until,
            "still running 15 s after `haneul up` was killed: {left:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // The port is free again: a second `haneul up` on the same data directory starts.
    let _again = start(&data, &config, &listen);
    assert!(children_of(&data).len() >= 2);
}
