//! Faults with the real binaries as separate processes: `haneul server` and `haneul swarm`
//! (many simulated nodes in one process; a task's run time is its `sleep N`). After each fault
//! the invariants of `common::invariants` are checked: nothing acknowledged is lost, no job ran
//! twice at once, accounting equals the attempts' GPU-seconds, requeued work finishes.
//! The figures each test prints (`eprintln!`) are the ones in docs/reliability.md.

mod common;

use common::invariants::{self, Summary};
use common::*;
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A `haneul swarm` process.
struct Swarm {
    child: Child,
    events: PathBuf,
}

impl Swarm {
    fn start(
        server: SocketAddr,
        token_file: &Path,
        nodes: usize,
        prefix: &str,
        dir: &Path,
    ) -> Swarm {
        let events = dir.join(format!("{prefix}.events.jsonl"));
        let child = Command::new(env!("CARGO_BIN_EXE_haneul"))
            .arg("swarm")
            .arg("--server")
            .arg(format!("http://{server}"))
            .arg("--token-file")
            .arg(token_file)
            .args(["--nodes", &nodes.to_string(), "--gpus", "8xH200"])
            .args(["--name-prefix", prefix, "--connections", "2"])
            .args(["--heartbeat-ms", "250", "--poll-wait-ms", "1000"])
            .arg("--events")
            .arg(&events)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start haneul swarm");
        Swarm { child, events }
    }

    fn kill9(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    fn events(&self) -> Vec<invariants::SwarmEvent> {
        invariants::read_events(&self.events)
    }
}

impl Drop for Swarm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A project, a member's token and an agent token in a file.
struct Centre {
    admin: String,
    project: i64,
    user: String,
    agent: String,
    agent_file: PathBuf,
}

fn centre(s: &Server, dir: &Path) -> Centre {
    let admin = s.admin_token();
    let org = s.must(
        &admin,
        "/v1/orgs",
        json!({"name": "kisti", "country": "KR"}),
        201,
    )["id"]
        .as_i64()
        .unwrap();
    let project = s.must(
        &admin,
        "/v1/projects",
        json!({"org": org, "name": "climate"}),
        201,
    )["id"]
        .as_i64()
        .unwrap();
    let user = s.user_token(&admin, "lee", "member", Some(org), &[project]);
    let agent = s.user_token(&admin, "swarm", "agent", None, &[]);
    let agent_file = dir.join("agent.token");
    std::fs::write(&agent_file, format!("{agent}\n")).unwrap();
    Centre {
        admin,
        project,
        user,
        agent,
        agent_file,
    }
}

/// Waits until `count` nodes named `prefix-*` are up; returns their ids.
fn nodes_up(s: &Server, admin: &str, prefix: &str, count: usize) -> Vec<i64> {
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, v) = s.get(Some(admin), "/v1/nodes");
        let ids: Vec<i64> = v
            .as_array()
            .into_iter()
            .flatten()
            .filter(|n| {
                n["name"]
                    .as_str()
                    .unwrap_or("")
                    .starts_with(&format!("{prefix}-"))
                    && n["state"] == "up"
            })
            .map(|n| n["id"].as_i64().unwrap())
            .collect();
        if ids.len() == count {
            return ids;
        }
        assert!(Instant::now() < until, "{prefix} nodes never came up: {v}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn submit(s: &Server, c: &Centre, gpus: u32, command: &[&str]) -> i64 {
    s.must(
        &c.user,
        "/v1/jobs",
        json!({"project": c.project, "gpus_per_task": gpus, "command": command}),
        201,
    )["id"]
        .as_i64()
        .unwrap()
}

fn job(s: &Server, admin: &str, id: i64) -> Value {
    let (status, v) = s.get(Some(admin), &format!("/v1/jobs/{id}"));
    assert_eq!(status, 200, "{v}");
    v
}

/// Waits until `pred` holds for job `id`; returns the job.
fn wait_job(
    s: &Server,
    admin: &str,
    id: i64,
    within: Duration,
    what: &str,
    pred: impl Fn(&Value) -> bool,
) -> Value {
    let until = Instant::now() + within;
    loop {
        let v = job(s, admin, id);
        if pred(&v) {
            return v;
        }
        assert!(
            Instant::now() < until,
            "job {id}: {what} not within {within:?}: {v}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn running(v: &Value) -> bool {
    v["attempts"]
        .as_array()
        .and_then(|a| a.last())
        .is_some_and(|a| a["state"] == "running")
}

/// Submits `command` jobs from `threads` threads until `stop`; returns the ids answered 201.
fn submit_until(
    addr: SocketAddr,
    c: &Centre,
    command: Value,
    threads: usize,
    stop: Arc<AtomicBool>,
    acked: Arc<AtomicUsize>,
) -> Vec<std::thread::JoinHandle<Vec<i64>>> {
    (0..threads)
        .map(|_| {
            let (token, project) = (c.user.clone(), c.project);
            let (stop, acked, command) = (stop.clone(), acked.clone(), command.clone());
            std::thread::spawn(move || {
                let mut ids = Vec::new();
                while !stop.load(Ordering::SeqCst) {
                    let (s, v) = http(
                        addr,
                        Some(&token),
                        "POST",
                        "/v1/jobs",
                        Some(json!({"project": project, "gpus_per_task": 1, "command": command})),
                    );
                    if s == 201 {
                        ids.push(v["id"].as_i64().unwrap());
                        acked.fetch_add(1, Ordering::SeqCst);
                    } else {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                }
                ids
            })
        })
        .collect()
}

/// Four clients submitting `sleep 0.3` jobs (see [`submit_until`]) until stopped.
struct Burst {
    stop: Arc<AtomicBool>,
    acked: Arc<AtomicUsize>,
    handles: Vec<std::thread::JoinHandle<Vec<i64>>>,
}

impl Burst {
    /// Starts the clients and returns once 100 submissions are acknowledged.
    fn until_100(addr: SocketAddr, c: &Centre) -> Burst {
        let (stop, acked) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicUsize::new(0)),
        );
        let handles = submit_until(
            addr,
            c,
            json!(["sleep", "0.3"]),
            4,
            stop.clone(),
            acked.clone(),
        );
        while acked.load(Ordering::SeqCst) < 100 {
            std::thread::sleep(Duration::from_millis(5));
        }
        Burst {
            stop,
            acked,
            handles,
        }
    }

    /// Waits until 50 more than now are acknowledged; fails with `what` after `within`.
    fn fifty_more(&self, within: Duration, what: &str) {
        let before = self.acked.load(Ordering::SeqCst);
        let until = Instant::now() + within;
        while self.acked.load(Ordering::SeqCst) < before + 50 {
            assert!(Instant::now() < until, "{what}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Stops the clients; the ids answered 201.
    fn stop(self) -> Vec<i64> {
        self.stop.store(true, Ordering::SeqCst);
        self.handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    }
}

fn free_port() -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().to_string()
}

fn report(what: &str, sum: &Summary, extra: &str) {
    eprintln!(
        "{what}: {} jobs, {} attempts, {} requeued, jobs lost 0, duplicates 0, {} GPU-ms accounted; {extra}",
        sum.jobs, sum.attempts, sum.requeued, sum.gpu_ms
    );
}

/// The server is SIGKILLed in the middle of a burst while the swarm runs jobs, and restarted
/// on the same address; the swarm reconnects by itself.
fn server_killed_mid_burst(database: Option<&str>) {
    let dir = common::tempdir();
    let listen = free_port();
    let data = dir.path().join("server");
    let extra = ["--node-timeout", "10"];
    let mut server = Server::start_on(&data, database, &listen, &extra);
    let c = centre(&server, dir.path());
    let _swarm = Swarm::start(server.addr, &c.agent_file, 4, "k", dir.path());
    nodes_up(&server, &c.admin, "k", 4);

    let (stop, acked) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicUsize::new(0)),
    );
    let handles = submit_until(
        server.addr,
        &c,
        json!(["sleep", "0.3"]),
        4,
        stop.clone(),
        acked.clone(),
    );
    while acked.load(Ordering::SeqCst) < 150 {
        std::thread::sleep(Duration::from_millis(5));
    }
    server.kill9();
    let killed = Instant::now();
    let server = Server::start_on(&data, database, &listen, &extra);
    let healthy = killed.elapsed();
    // Submissions go on against the restarted server for a moment.
    let more = acked.load(Ordering::SeqCst) + 50;
    while acked.load(Ordering::SeqCst) < more {
        std::thread::sleep(Duration::from_millis(5));
    }
    stop.store(true, Ordering::SeqCst);
    let ids: Vec<i64> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    let sum = invariants::check(&server, &c.admin, c.project, &ids, Duration::from_secs(90));
    let drained = killed.elapsed();
    invariants::check_swarm_events(&server, &c.admin, &_swarm.events());
    report(
        &format!(
            "server SIGKILL ({})",
            if database.is_some() {
                "postgres"
            } else {
                "sqlite"
            }
        ),
        &sum,
        &format!(
            "{} acknowledged; restarted and healthy {} ms after the kill; all done {} ms after it",
            ids.len(),
            healthy.as_millis(),
            drained.as_millis()
        ),
    );
}

#[test]
fn sqlite_server_killed_mid_burst_loses_nothing() {
    server_killed_mid_burst(None);
}

#[test]
fn postgres_server_killed_mid_burst_loses_nothing() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let db = rt.block_on(haneul_store::testing::TestDb::create());
    server_killed_mid_burst(Some(db.url()));
}

/// A TCP proxy on loopback that can be cut (bytes are read and dropped; no answer comes back,
/// as behind a failed switch) and healed (the stalled connections are closed so their clients
/// reconnect, and new ones go through again).
struct Proxy {
    addr: SocketAddr,
    cut: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<TcpStream>>>,
}

impl Proxy {
    fn start(to: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let cut = Arc::new(AtomicBool::new(false));
        let conns: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let (c2, k2) = (cut.clone(), conns.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                let Ok(upstream) = TcpStream::connect(to) else {
                    continue;
                };
                k2.lock().unwrap().push(client.try_clone().unwrap());
                k2.lock().unwrap().push(upstream.try_clone().unwrap());
                for (mut from, mut into) in [
                    (client.try_clone().unwrap(), upstream.try_clone().unwrap()),
                    (upstream, client),
                ] {
                    let cut = c2.clone();
                    std::thread::spawn(move || {
                        let mut buf = [0u8; 16384];
                        loop {
                            let n = match from.read(&mut buf) {
                                Ok(0) | Err(_) => break,
                                Ok(n) => n,
                            };
                            if cut.load(Ordering::SeqCst) {
                                continue;
                            }
                            if into.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                        let _ = into.shutdown(Shutdown::Both);
                    });
                }
            }
        });
        Proxy { addr, cut, conns }
    }

    fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
    }

    fn heal(&self) {
        for c in self.conns.lock().unwrap().drain(..) {
            let _ = c.shutdown(Shutdown::Both);
        }
        self.cut.store(false, Ordering::SeqCst);
    }
}

/// A node cut off from the server while its jobs run: the server finds it lost and requeues
/// the jobs, which finish on another node; when the network heals, the cut-off node's reports
/// for the old attempts are refused by the fence (409) and change nothing.
#[test]
fn agent_cut_off_is_fenced_and_its_work_finishes_elsewhere() {
    let dir = common::tempdir();
    let server = Server::start(&dir.path().join("server"), None, &["--node-timeout", "2"]);
    let c = centre(&server, dir.path());
    let proxy = Proxy::start(server.addr);
    let cut_off = Swarm::start(proxy.addr, &c.agent_file, 1, "cut", dir.path());
    let cut_node = nodes_up(&server, &c.admin, "cut", 1)[0];
    let jobs = [
        submit(&server, &c, 4, &["sleep", "4"]),
        submit(&server, &c, 4, &["sh", "-c", "sleep 4"]),
    ];
    for &j in &jobs {
        wait_job(
            &server,
            &c.admin,
            j,
            Duration::from_secs(10),
            "running",
            running,
        );
    }
    let elsewhere = Swarm::start(server.addr, &c.agent_file, 1, "far", dir.path());
    let far_node = nodes_up(&server, &c.admin, "far", 1)[0];

    proxy.cut();
    let cut_at = Instant::now();
    let cut_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let mut requeued_ms = 0;
    for &j in &jobs {
        let v = wait_job(
            &server,
            &c.admin,
            j,
            Duration::from_secs(20),
            "finish elsewhere",
            |v| v["job"]["state"] == "succeeded",
        );
        let attempts = v["attempts"].as_array().unwrap();
        assert_eq!(attempts.len(), 2, "{v}");
        assert_eq!(attempts[0]["state"], "node_lost", "{v}");
        assert_eq!(attempts[0]["tasks"][0]["node"], cut_node, "{v}");
        assert_eq!(attempts[1]["tasks"][0]["node"], far_node, "{v}");
        requeued_ms = requeued_ms.max(attempts[0]["ended_at"].as_i64().unwrap() - cut_ms);
    }
    let finished = cut_at.elapsed();

    // The cut-off node's tasks ended while it was cut off; their exits, retried until now, meet
    // the fence once the network heals.
    proxy.heal();
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        let refused: Vec<_> = cut_off
            .events()
            .into_iter()
            .filter(|e| e.ev == "refused" && e.fence == 1 && e.status == Some(409))
            .map(|e| e.job)
            .collect();
        if jobs.iter().all(|j| refused.contains(j)) {
            break;
        }
        assert!(
            Instant::now() < until,
            "stale exits were not refused: {refused:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // The same from here, and the node is back.
    let (s, v) = server.post(
        &c.agent,
        &format!("/v1/agent/nodes/{cut_node}/reports"),
        json!({"job": jobs[0], "fence": 1, "task": 0, "exit_code": 0}),
    );
    assert_eq!(s, 409, "{v}");
    assert_eq!(v["error"]["field"], "fence", "{v}");
    nodes_up(&server, &c.admin, "cut", 1);

    let sum = invariants::check(&server, &c.admin, c.project, &jobs, Duration::from_secs(10));
    let mut events = cut_off.events();
    events.extend(elsewhere.events());
    invariants::check_swarm_events(&server, &c.admin, &events);
    report(
        "agent cut off",
        &sum,
        &format!(
            "requeued {requeued_ms} ms after the cut (node timeout 2 s); finished elsewhere \
             {} ms after the cut; 2 stale exits refused with 409",
            finished.as_millis()
        ),
    );
}

/// A swarm SIGKILLed with jobs running: its nodes are found lost, their jobs requeued and run
/// to the end by another swarm.
#[test]
fn agent_killed_with_jobs_running_is_requeued() {
    let dir = common::tempdir();
    let server = Server::start(&dir.path().join("server"), None, &["--node-timeout", "2"]);
    let c = centre(&server, dir.path());
    let mut doomed = Swarm::start(server.addr, &c.agent_file, 2, "doomed", dir.path());
    nodes_up(&server, &c.admin, "doomed", 2);
    let jobs: Vec<i64> = (0..16)
        .map(|_| submit(&server, &c, 1, &["sleep", "2"]))
        .collect();
    for &j in &jobs {
        wait_job(
            &server,
            &c.admin,
            j,
            Duration::from_secs(10),
            "running",
            running,
        );
    }
    doomed.kill9();
    let killed = Instant::now();
    let rescue = Swarm::start(server.addr, &c.agent_file, 2, "rescue", dir.path());
    let sum = invariants::check(&server, &c.admin, c.project, &jobs, Duration::from_secs(30));
    let done = killed.elapsed();
    assert_eq!(sum.requeued, 16, "every running job is requeued once");
    let mut events = doomed.events();
    events.extend(rescue.events());
    invariants::check_swarm_events(&server, &c.admin, &events);
    report(
        "agent SIGKILL",
        &sum,
        &format!(
            "all 16 finished elsewhere {} ms after the kill (node timeout 2 s)",
            done.as_millis()
        ),
    );
}

/// A throwaway PostgreSQL cluster of the test's own (initdb and pg_ctl as the `postgres` user),
/// never the machine's server on 5432.
struct Cluster {
    data: PathBuf,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Cluster {
    fn pg(args: &[&str]) -> std::process::Output {
        let mut cmd = if unsafe { libc::geteuid() } == 0 {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]);
            c
        } else {
            Command::new("env")
        };
        cmd.args(args).output().expect("run a PostgreSQL tool")
    }

    /// Fails, naming the install command, where initdb/pg_ctl are not installed: a test that
    /// passes without running would hide the gap.
    fn start() -> Cluster {
        let c = Self::init(&[]);
        c.ctl("start");
        c
    }

    /// A new cluster, not started, with `settings` appended to its postgresql.conf.
    fn init(settings: &[&str]) -> Cluster {
        assert!(
            Command::new("sh")
                .args(["-c", "command -v initdb && command -v pg_ctl"])
                .output()
                .is_ok_and(|o| o.status.success()),
            "initdb and pg_ctl are needed on PATH for the database restart test: \
             `apt-get install -y postgresql` and put /usr/lib/postgresql/*/bin on PATH \
             (scripts/test does both)"
        );
        let (dir, data) = Self::owned_dir();
        let out = Self::pg(&[
            "initdb",
            "-D",
            data.to_str().unwrap(),
            "-A",
            "trust",
            "-U",
            "postgres",
            "--no-sync",
        ]);
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let port = free_port().rsplit(':').next().unwrap().parse().unwrap();
        let mut conf = std::fs::OpenOptions::new()
            .append(true)
            .open(data.join("postgresql.conf"))
            .expect("open postgresql.conf");
        for line in settings {
            writeln!(conf, "{line}").unwrap();
        }
        Cluster {
            data,
            port,
            _dir: dir,
        }
    }

    /// A temporary directory the `postgres` user owns (when the test runs as root) and the
    /// data directory's path in it.
    fn owned_dir() -> (tempfile::TempDir, PathBuf) {
        let dir = common::tempdir();
        if unsafe { libc::geteuid() } == 0 {
            let ok = Command::new("chown")
                .args(["postgres", dir.path().to_str().unwrap()])
                .status()
                .is_ok_and(|s| s.success());
            assert!(ok, "chown the cluster's directory to postgres");
        }
        let data = dir.path().join("pg");
        (dir, data)
    }

    /// A streaming replica of `primary` (pg_basebackup -R: a standby that follows it), started.
    fn replica_of(primary: &Cluster) -> Cluster {
        let (dir, data) = Self::owned_dir();
        let out = Self::pg(&[
            "pg_basebackup",
            "-h",
            "127.0.0.1",
            "-p",
            &primary.port.to_string(),
            "-U",
            "postgres",
            "-D",
            data.to_str().unwrap(),
            "-R",
            "-X",
            "stream",
            "--no-sync",
        ]);
        assert!(
            out.status.success(),
            "pg_basebackup: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let port = free_port().rsplit(':').next().unwrap().parse().unwrap();
        let c = Cluster {
            data,
            port,
            _dir: dir,
        };
        c.ctl("start");
        c
    }

    /// One value from `query` (psql -At), or the error psql printed.
    fn sql(&self, query: &str) -> Result<String, String> {
        let out = Self::pg(&[
            "psql",
            "-h",
            "127.0.0.1",
            "-p",
            &self.port.to_string(),
            "-U",
            "postgres",
            "-Atc",
            query,
        ]);
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    fn ctl(&self, action: &str) {
        let opts = format!(
            "-p {} -c listen_addresses=127.0.0.1 -k {}",
            self.port,
            self.data.parent().unwrap().display()
        );
        let mut args = vec![
            "pg_ctl",
            "-D",
            self.data.to_str().unwrap(),
            "-w",
            "-o",
            &opts,
        ];
        args.extend(["-l", "/dev/null"]);
        if action == "stop" || action == "restart" {
            args.extend(["-m", "immediate"]);
        }
        args.push(action);
        let out = Self::pg(&args);
        assert!(
            out.status.success(),
            "pg_ctl {action}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Self::pg(&[
            "pg_ctl",
            "-D",
            self.data.to_str().unwrap(),
            "-m",
            "immediate",
            "stop",
        ]);
    }
}

/// The database restarted (immediate shutdown: no checkpoint, as after a crash) under a burst
/// of submissions while the swarm runs jobs. Requests during the outage fail with an error;
/// everything acknowledged survives and the server carries on by itself.
#[test]
fn postgres_restarted_under_load_loses_nothing() {
    let db = Cluster::start();
    let dir = common::tempdir();
    let url = db.url();
    let server = Server::start(
        &dir.path().join("server"),
        Some(&url),
        &["--node-timeout", "10"],
    );
    let c = centre(&server, dir.path());
    let swarm = Swarm::start(server.addr, &c.agent_file, 2, "db", dir.path());
    nodes_up(&server, &c.admin, "db", 2);
    let burst = Burst::until_100(server.addr, &c);
    let restarted = Instant::now();
    db.ctl("restart");
    let outage = restarted.elapsed();
    burst.fifty_more(
        Duration::from_secs(30),
        "no submission accepted after the database came back",
    );
    let accepting = restarted.elapsed();
    let ids = burst.stop();
    let sum = invariants::check(&server, &c.admin, c.project, &ids, Duration::from_secs(90));
    invariants::check_swarm_events(&server, &c.admin, &swarm.events());
    report(
        "database restart",
        &sum,
        &format!(
            "{} acknowledged; database down and up in {} ms; 50 more accepted {} ms after the restart began",
            ids.len(),
            outage.as_millis(),
            accepting.as_millis()
        ),
    );
}

/// The database itself fails over: a primary with a synchronous streaming replica serves two
/// servers through a multi-host URL with `target_session_attrs=read-write`. Under a burst of
/// submissions while the swarm runs jobs, the primary is killed (immediate shutdown) and the
/// replica promoted. Both servers move to the new primary by themselves, and no acknowledged
/// job is lost: synchronous replication means a commit answered 201 is on the replica too.
#[test]
fn postgres_failover_to_a_promoted_replica_loses_nothing() {
    let primary = Cluster::init(&[
        "wal_level = replica",
        "max_wal_senders = 4",
        "synchronous_commit = on",
    ]);
    primary.ctl("start");
    let replica = Cluster::replica_of(&primary);
    // Synchronous replication is switched on after the copy, so the replica does not inherit
    // it: promoted with no standby of its own, it would wait for one on every commit.
    for q in [
        "ALTER SYSTEM SET synchronous_standby_names = '*'",
        "SELECT pg_reload_conf()",
    ] {
        primary.sql(q).expect("switch on synchronous replication");
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while primary
        .sql("SELECT sync_state FROM pg_stat_replication")
        .as_deref()
        != Ok("sync")
    {
        assert!(
            Instant::now() < deadline,
            "the replica did not become a synchronous standby"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let url = format!(
        "postgres://postgres@127.0.0.1:{},127.0.0.1:{}/postgres?target_session_attrs=read-write",
        primary.port, replica.port
    );
    let dir = common::tempdir();
    // A lease longer than the outage keeps the same server leading through it, so the burst
    // below (aimed at it) measures the database's fail-over, not a change of leader.
    let flags = ["--node-timeout", "10", "--lease-ttl", "10"];
    let a = Server::start(&dir.path().join("a"), Some(&url), &flags);
    let c = centre(&a, dir.path());
    let b = Server::start(&dir.path().join("b"), Some(&url), &flags);
    let swarm = Swarm::start(a.addr, &c.agent_file, 2, "fo", dir.path());
    nodes_up(&a, &c.admin, "fo", 2);
    let burst = Burst::until_100(a.addr, &c);
    let failed_over = Instant::now();
    primary.ctl("stop");
    replica.ctl("promote");
    let promoted = failed_over.elapsed();
    assert_eq!(
        replica.sql("SELECT pg_is_in_recovery()").as_deref(),
        Ok("f"),
        "the replica is the primary now"
    );
    burst.fifty_more(
        Duration::from_secs(60),
        "no submission accepted after the replica was promoted",
    );
    let accepting = failed_over.elapsed();
    let ids = burst.stop();
    // The other server reads from the new primary too: the last job, written after the
    // fail-over, is there for it (the old primary is down, so it cannot be read elsewhere).
    let last = *ids.iter().max().unwrap();
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let (code, v) = b.get(Some(&c.admin), &format!("/v1/jobs/{last}"));
        if code == 200 {
            break;
        }
        assert!(
            Instant::now() < until,
            "the second server did not reconnect: {code} {v}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let sum = invariants::check(&a, &c.admin, c.project, &ids, Duration::from_secs(90));
    invariants::check_swarm_events(&a, &c.admin, &swarm.events());
    report(
        "database fail-over",
        &sum,
        &format!(
            "{} acknowledged; primary killed and replica promoted in {} ms; 50 more accepted {} ms after the kill",
            ids.len(),
            promoted.as_millis(),
            accepting.as_millis()
        ),
    );
}
