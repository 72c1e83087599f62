//! Driving the real `haneul` binary: start `haneul server`, speak HTTP to it with a minimal
//! client (std only), and kill it with SIGKILL.

#![allow(dead_code)]

pub mod invariants;
pub mod up;

use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A temporary directory others may pass through (0711): agents running as root run tasks as
/// their owners, who must reach their work directories under it.
pub fn tempdir() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let d = tempfile::tempdir().unwrap();
    std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    d
}

pub struct Server {
    pub child: Child,
    pub addr: SocketAddr,
    pub data_dir: PathBuf,
}

impl Server {
    /// Starts `haneul server` on a free loopback port and waits for /healthz.
    pub fn start(data_dir: &Path, database: Option<&str>, extra: &[&str]) -> Server {
        Self::start_on(data_dir, database, "127.0.0.1:0", extra)
    }

    /// Starts `haneul server` on `listen` (a restarted server keeps its clients' address).
    pub fn start_on(
        data_dir: &Path,
        database: Option<&str>,
        listen: &str,
        extra: &[&str],
    ) -> Server {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_haneul"));
        cmd.arg("server")
            .arg("--data-dir")
            .arg(data_dir)
            .arg("--listen")
            .arg(listen)
            .args(extra)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if let Some(url) = database {
            cmd.arg("--database").arg(url);
        }
        let mut child = cmd.spawn().expect("start haneul server");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("listening on http://").nth(1) {
                    let addr = rest.split_whitespace().next().unwrap_or("").to_string();
                    let _ = tx.send(addr);
                }
            }
        });
        let addr: SocketAddr = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("server printed its address")
            .parse()
            .unwrap();
        let server = Server {
            child,
            addr,
            data_dir: data_dir.to_path_buf(),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while server.get(None, "/healthz").0 != 200 {
            assert!(Instant::now() < deadline, "server never became healthy");
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }

    pub fn admin_token(&self) -> String {
        std::fs::read_to_string(self.data_dir.join("admin.token"))
            .unwrap()
            .trim()
            .to_string()
    }

    /// SIGKILL: no shutdown code runs.
    pub fn kill9(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    pub fn get(&self, token: Option<&str>, path: &str) -> (u16, Value) {
        http(self.addr, token, "GET", path, None)
    }

    pub fn post(&self, token: &str, path: &str, body: Value) -> (u16, Value) {
        http(self.addr, Some(token), "POST", path, Some(body))
    }

    /// Creates a user with the given role and returns a fresh API token of theirs.
    pub fn user_token(
        &self,
        admin: &str,
        name: &str,
        role: &str,
        org: Option<i64>,
        projects: &[i64],
    ) -> String {
        let u = self.must(
            admin,
            "/v1/users",
            json!({"name": name, "role": role, "org": org, "projects": projects}),
            201,
        );
        self.must(admin, "/v1/tokens", json!({"user": u["id"]}), 201)["secret"]
            .as_str()
            .unwrap()
            .to_string()
    }

    pub fn must(&self, token: &str, path: &str, body: Value, want: u16) -> Value {
        let (s, v) = self.post(token, path, body);
        assert_eq!(s, want, "POST {path}: {v}");
        v
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.1 request with `Connection: close`. Status 0 means the connection failed.
pub fn http(
    addr: SocketAddr,
    token: Option<&str>,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_secs(5)) else {
        return (0, Value::Null);
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(30)));
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    if s.write_all(req.as_bytes()).is_err() {
        return (0, Value::Null);
    }
    let mut raw = Vec::new();
    if s.read_to_end(&mut raw).is_err() {
        return (0, Value::Null);
    }
    let text = String::from_utf8_lossy(&raw);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return (0, Value::Null);
    };
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

/// A tenant, a submitting member and an agent with one 8-GPU node, created through the API.
pub struct Tenant {
    pub project: i64,
    pub user: String,
    pub agent: String,
    pub node: i64,
}

/// An organisation with one project, a member who submits to it and an agent account, created
/// through the API: what every test of jobs on agents starts from.
pub struct Members {
    pub admin: String,
    pub org: i64,
    pub project: i64,
    pub user: String,
    pub agent: String,
}

pub fn members(s: &Server) -> Members {
    let admin = s.admin_token();
    let org = s.must(
        &admin,
        "/v1/orgs",
        json!({"name": "kaist", "country": "KR"}),
        201,
    )["id"]
        .as_i64()
        .unwrap();
    let project = s.must(
        &admin,
        "/v1/projects",
        json!({"org": org, "name": "llm"}),
        201,
    )["id"]
        .as_i64()
        .unwrap();
    let user = s.user_token(&admin, "kim", "member", Some(org), &[project]);
    let agent = s.user_token(&admin, "agent-1", "agent", None, &[]);
    // The pool the agent tests' nodes register in: pools are made by operators.
    s.must(&admin, "/v1/pools", json!({"name": "h200"}), 201);
    Members {
        admin,
        org,
        project,
        user,
        agent,
    }
}

pub fn tenant(s: &Server) -> Tenant {
    let Members {
        project,
        user,
        agent,
        ..
    } = members(s);
    let node = s.must(
        &agent,
        "/v1/agent/register",
        json!({"name": "gpu-001", "gpu_model": "H200", "gpus": 8,
               "cpu_milli": 64000, "memory_mib": 1000000}),
        200,
    )["id"]
        .as_i64()
        .unwrap();
    Tenant {
        project,
        user,
        agent,
        node,
    }
}

/// Counters shared by a burst's threads and the test.
#[derive(Default)]
pub struct BurstState {
    pub stop: std::sync::atomic::AtomicBool,
    pub acked: std::sync::atomic::AtomicUsize,
}

/// Submits from `threads` threads, each to the servers in `addrs` in turn, until `stop` is set;
/// returns the ids acknowledged with 201.
pub fn burst(
    addrs: Vec<SocketAddr>,
    token: &str,
    project: i64,
    threads: usize,
    per_thread: usize,
    state: std::sync::Arc<BurstState>,
) -> Vec<std::thread::JoinHandle<Vec<i64>>> {
    use std::sync::atomic::Ordering;
    (0..threads)
        .map(|t| {
            let token = token.to_string();
            let state = state.clone();
            let addrs = addrs.clone();
            std::thread::spawn(move || {
                let mut acked = Vec::new();
                for i in 0..per_thread {
                    if state.stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let addr = addrs[(t + i) % addrs.len()];
                    let (status, v) = http(
                        addr,
                        Some(&token),
                        "POST",
                        "/v1/jobs",
                        Some(json!({"project": project, "command": ["true"],
                                    "gpus_per_task": 1})),
                    );
                    if status == 201 {
                        acked.push(v["id"].as_i64().unwrap());
                        state.acked.fetch_add(1, Ordering::SeqCst);
                    }
                }
                acked
            })
        })
        .collect()
}

/// Plays the agent of `t.node` against `server` until every job in `jobs` has ended: reports
/// each assigned task started, then exited 0. Checks on the way that the node never holds more
/// than its 8 GPUs, no GPU is given twice, and every job runs exactly once (fence 1).
pub fn drain(server: &Server, admin: &str, t: &Tenant, jobs: &[i64], deadline: Duration) {
    use std::collections::BTreeSet;
    let until = Instant::now() + deadline;
    let mut done: BTreeSet<i64> = BTreeSet::new();
    let want: BTreeSet<i64> = jobs.iter().copied().collect();
    let path = format!("/v1/agent/nodes/{}/assignments", t.node);
    while !want.is_subset(&done) {
        assert!(
            Instant::now() < until,
            "{} of {} jobs ended before the deadline",
            done.len(),
            want.len()
        );
        let (s, v) = server.get(Some(&t.agent), &format!("{path}?wait_ms=500&etag=none"));
        if s != 200 {
            std::thread::sleep(Duration::from_millis(100));
            continue;
        }
        let list = v["assignments"].as_array().cloned().unwrap_or_default();
        let mut gpus = BTreeSet::new();
        for a in &list {
            for g in a["gpus"].as_array().unwrap() {
                assert!(gpus.insert(g.as_u64().unwrap()), "GPU {g} given twice: {v}");
            }
        }
        assert!(gpus.len() <= 8, "more than 8 GPUs in use: {v}");
        for a in &list {
            let job = a["job"].as_i64().unwrap();
            assert_eq!(
                a["fence"].as_i64(),
                Some(1),
                "job {job} started a second time: {a}"
            );
            assert!(
                !done.contains(&job),
                "job {job} is assigned again after it ended"
            );
            let report = |exit: Option<i64>| {
                server.post(
                    &t.agent,
                    &format!("/v1/agent/nodes/{}/reports", t.node),
                    json!({"job": job, "fence": 1, "task": a["task"], "exit_code": exit}),
                )
            };
            let (s1, v1) = report(None);
            assert_eq!(s1, 200, "{v1}");
            let (s2, v2) = report(Some(0));
            assert_eq!(s2, 200, "{v2}");
            done.insert(job);
        }
    }
    for &job in jobs {
        let (s, v) = server.get(Some(admin), &format!("/v1/jobs/{job}"));
        assert_eq!(s, 200, "acknowledged job {job} is missing: {v}");
        assert_eq!(v["job"]["state"], "succeeded", "{v}");
        assert_eq!(
            v["attempts"].as_array().unwrap().len(),
            1,
            "job {job} ran twice: {v}"
        );
    }
}

/// Eight one-GPU jobs fill the node, and the agent reports them started. Returns their ids.
pub fn fill_node(server: &Server, t: &Tenant) -> Vec<i64> {
    let state = Arc::new(BurstState::default());
    let first: Vec<i64> = burst(vec![server.addr], &t.user, t.project, 1, 8, state.clone())
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    assert_eq!(first.len(), 8);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, v) = server.get(
            Some(&t.agent),
            &format!("/v1/agent/nodes/{}/assignments", t.node),
        );
        let n = v["assignments"].as_array().map_or(0, |a| a.len());
        if n == 8 {
            for a in v["assignments"].as_array().unwrap() {
                let (s, _) = server.post(
                    &t.agent,
                    &format!("/v1/agent/nodes/{}/reports", t.node),
                    serde_json::json!({"job": a["job"], "fence": a["fence"], "task": 0}),
                );
                assert_eq!(s, 200);
            }
            break;
        }
        assert!(Instant::now() < deadline, "the first jobs never started");
        std::thread::sleep(Duration::from_millis(50));
    }

    first
}
