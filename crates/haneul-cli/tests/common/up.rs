//! `haneul up` as a test's whole centre: started on a free port with a client config of its
//! own, waited for until it has written that config, and stopped with SIGTERM (as an operator
//! would) when the test drops it.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `haneul up`; SIGTERM and wait when dropped.
pub struct Up(pub Child);

impl Drop for Up {
    fn drop(&mut self) {
        // SAFETY: kill has no memory-safety preconditions; the pid is our child's.
        unsafe {
            libc::kill(self.0.id() as libc::pid_t, libc::SIGTERM);
        }
        let _ = self.0.wait();
    }
}

/// Starts `haneul up --simulate-gpus GPUS` with `extra` flags, its data in `DIR/data` and its
/// client config at `DIR/config/config.toml`; returns it with the config's and data's paths.
pub fn start_up(dir: &Path, gpus: &str, extra: &[&str]) -> (Up, PathBuf, PathBuf) {
    let config = dir.join("config/config.toml");
    let data = dir.join("data");
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut up = Up(Command::new(env!("CARGO_BIN_EXE_haneul"))
        .arg("up")
        .arg("--data-dir")
        .arg(&data)
        .args([
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--simulate-gpus",
            gpus,
        ])
        .args(extra)
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
    (up, config, data)
}

/// Runs `haneul ARGS --json` as the person of `token_file` against the centre of `config`
/// (nothing from this process's environment) and answers its JSON; fails the test otherwise.
pub fn haneul(config: &Path, token_file: &Path, args: &[&str]) -> serde_json::Value {
    // --json before any `--`: after it, it would belong to the job's command.
    let mut args = args.to_vec();
    let at = args.iter().position(|a| *a == "--").unwrap_or(args.len());
    args.insert(at, "--json");
    let out = Command::new(env!("CARGO_BIN_EXE_haneul"))
        .args(&args)
        .env("HANEUL_CONFIG", config)
        .env("HANEUL_TOKEN_FILE", token_file)
        .env_remove("HANEUL_SERVER")
        .env_remove("HANEUL_TOKEN")
        .output()
        .expect("run haneul");
    assert!(
        out.status.success(),
        "haneul {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("json from haneul")
}

/// The token kept in `file` (a token file `haneul up` wrote), without its newline.
pub fn token(file: &Path) -> String {
    std::fs::read_to_string(file)
        .unwrap_or_else(|e| panic!("read {}: {e}", file.display()))
        .trim()
        .to_string()
}
