//! The node protocol loop against an in-memory server (a `Transport` double): registration,
//! heartbeats, a task run to its exit with its output, cancellation, recovery after a
//! restart, retries through an outage; and, over real HTTP, following a leader change.

use haneul_agent::identity::{self, TaskUser};
use haneul_agent::launch::{self, Limits, TaskSpec};
use haneul_agent::limits::{Prepared, Rlimits};
use haneul_agent::node::{self, Setup, TaskFile, Timing, Transport};
use haneul_agent::{AgentError, Result, gpus, health};
use haneul_api::{
    AgentRegister, Assignment, AssignmentList, HealthReport, HeartbeatAck, LogUpload, OutputStream,
    TaskReport,
};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// What the in-memory server has been told.
#[derive(Default)]
struct State {
    registered: Vec<AgentRegister>,
    /// When each heartbeat came, and through which server (0 for the double itself).
    heartbeats: Vec<(Instant, usize)>,
    assignments: Vec<Assignment>,
    version: u64,
    reports: Vec<TaskReport>,
    logs: Vec<LogUpload>,
    /// Calls still to fail as if the server were unreachable.
    fail_next: u32,
    failed: u32,
    /// When each failed call came.
    failed_at: Vec<Instant>,
}

#[derive(Default)]
struct Fake {
    s: Mutex<State>,
    changed: Condvar,
    /// The heartbeat interval the server asks for; 0: 100 ms.
    interval_ms: std::sync::atomic::AtomicI64,
}

impl Fake {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.s.lock().unwrap()
    }

    fn gate(&self, s: &mut State) -> Result<()> {
        if s.fail_next > 0 {
            s.fail_next -= 1;
            s.failed += 1;
            s.failed_at.push(Instant::now());
            return Err(AgentError::Transient("connection refused".into()));
        }
        Ok(())
    }

    fn assign(&self, a: Assignment) {
        let mut s = self.lock();
        s.assignments.push(a);
        s.version += 1;
        self.changed.notify_all();
    }

    /// Turns the assignment of `job` into a stop, as a cancellation does.
    fn cancel(&self, job: i64) {
        let mut s = self.lock();
        for a in s.assignments.iter_mut().filter(|a| a.job == job) {
            a.action = "stop".into();
            a.stop_reason = Some("cancelled".into());
            a.grace_s = 0;
        }
        s.version += 1;
        self.changed.notify_all();
    }

    /// Waits until `done` holds, failing the test with `what` after `within`.
    fn wait_for(&self, what: &str, within: Duration, done: impl Fn(&State) -> bool) {
        let deadline = Instant::now() + within;
        let mut s = self.lock();
        while !done(&s) {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "{what}: not within {within:?}");
            s = self
                .changed
                .wait_timeout(s, left.min(Duration::from_millis(50)))
                .unwrap()
                .0;
        }
    }

    fn heartbeat_from(&self, server: usize) -> Result<HeartbeatAck> {
        let mut s = self.lock();
        self.gate(&mut s)?;
        s.heartbeats.push((Instant::now(), server));
        self.changed.notify_all();
        let interval_ms = match self.interval_ms.load(Ordering::SeqCst) {
            0 => 100,
            n => n,
        };
        Ok(HeartbeatAck {
            node: 1,
            state: "idle".into(),
            interval_ms,
        })
    }

    fn poll(&self, wait_ms: u64, etag: Option<&str>) -> Result<AssignmentList> {
        let mut s = self.lock();
        self.gate(&mut s)?;
        let deadline = Instant::now() + Duration::from_millis(wait_ms);
        while etag == Some(s.version.to_string().as_str()) && Instant::now() < deadline {
            let left = deadline.saturating_duration_since(Instant::now());
            s = self.changed.wait_timeout(s, left).unwrap().0;
        }
        Ok(AssignmentList {
            assignments: s.assignments.clone(),
            etag: s.version.to_string(),
        })
    }

    fn take_report(&self, r: &TaskReport) -> Result<()> {
        let mut s = self.lock();
        self.gate(&mut s)?;
        let known = s
            .assignments
            .iter()
            .any(|a| (a.job, a.task, a.fence) == (r.job, r.task, r.fence));
        if !known {
            return Err(AgentError::Refused {
                status: 409,
                message: "stale fence".into(),
            });
        }
        s.reports.push(r.clone());
        // An exit ends the attempt: the assignment goes, as on the server.
        if r.exit_code.is_some() {
            s.assignments
                .retain(|a| (a.job, a.task, a.fence) != (r.job, r.task, r.fence));
            s.version += 1;
        }
        self.changed.notify_all();
        Ok(())
    }
}

impl Transport for Fake {
    fn register(&self, node: &AgentRegister) -> Result<i64> {
        let mut s = self.lock();
        self.gate(&mut s)?;
        s.registered.push(node.clone());
        self.changed.notify_all();
        Ok(1)
    }

    fn heartbeat(&self, _node: i64) -> Result<HeartbeatAck> {
        self.heartbeat_from(0)
    }

    fn assignments(
        &self,
        _node: i64,
        wait_ms: u64,
        etag: Option<&str>,
        _stop: &haneul_agent::node::Stop,
    ) -> Result<AssignmentList> {
        self.poll(wait_ms, etag)
    }

    fn report(&self, _node: i64, report: &TaskReport) -> Result<()> {
        self.take_report(report)
    }

    fn upload_log(&self, _node: i64, log: &LogUpload) -> Result<()> {
        let mut s = self.lock();
        self.gate(&mut s)?;
        s.logs.push(log.clone());
        self.changed.notify_all();
        Ok(())
    }

    fn health(&self, _node: i64, _report: &HealthReport) -> Result<String> {
        Ok("idle".into())
    }
}

fn assignment(job: i64, script: &str) -> Assignment {
    Assignment {
        job,
        fence: 1,
        task: 0,
        action: "run".into(),
        stop_reason: None,
        kill_at: None,
        gpus: vec![0],
        milli_per_gpu: 1000,
        command: vec!["sh".into(), "-c".into(), script.into()],
        peers: Vec::new(),
        user: 1,
        user_name: "kim".into(),
        project: 1,
        cpu_milli: 0,
        memory_mib: 0,
        time_limit_s: None,
        grace_s: 0,
        container_image: None,
        uid: None,
        gid: None,
        groups: Vec::new(),
        name: String::new(),
        batch: None,
        array: None,
        interactive: false,
    }
}

/// A running agent loop; stopped (and joined) when dropped.
struct Agent {
    stop: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<Result<()>>>,
}

impl Agent {
    fn start(transport: Arc<dyn Transport>, work: &Path) -> Agent {
        let stop = Arc::new(AtomicBool::new(false));
        let setup = Setup {
            transport,
            register: AgentRegister {
                name: "n1".into(),
                pool: "default".into(),
                block: "default".into(),
                gpu_model: "H200".into(),
                gpus: 2,
                gpu_memory_mib: 0,
                nvlink_domain: None,
                cpu_milli: 2000,
                memory_mib: 16384,
                limits: Some("rlimit".into()),
                address: None,
                container_runtime: Some("none".into()),
                uid: Some(i64::from(identity::euid())),
            },
            me: "n1".into(),
            work_dir: work.to_path_buf(),
            limits: Box::new(Rlimits),
            task_user: TaskUser::Agent,
            euid: identity::euid(),
            mps: None,
            containers: None,
            real_gpus: false,
            inventory: gpus::parse_simulated("2xH200").unwrap(),
            health: health::NodeHealth::new(None, None, 90),
            health_every: Duration::from_secs(30),
            timing: Timing {
                poll_wait: Duration::from_millis(300),
                backoff_base: Duration::from_millis(20),
                backoff_cap: Duration::from_millis(200),
                stream_every: Duration::from_millis(100),
                telemetry_every: Duration::from_millis(500),
            },
            stop: {
                let stop = stop.clone();
                Arc::new(move || stop.load(Ordering::SeqCst))
            },
        };
        let handle = std::thread::spawn(move || node::run(setup));
        Agent {
            stop,
            handle: Some(handle),
        }
    }

    fn stop(mut self) -> Result<()> {
        self.stop.store(true, Ordering::SeqCst);
        self.handle.take().unwrap().join().unwrap()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

const WITHIN: Duration = Duration::from_secs(20);

fn exit_of(s: &State, job: i64) -> Option<i64> {
    s.reports
        .iter()
        .find(|r| r.job == job && r.exit_code.is_some())
        .and_then(|r| r.exit_code)
}

fn output_of(s: &State, job: i64) -> String {
    s.logs
        .iter()
        .filter(|l| l.job == job)
        .map(|l| l.data.as_str())
        .collect()
}

#[test]
fn registers_and_heartbeats() {
    let work = tempfile::tempdir().unwrap();
    let fake = Arc::new(Fake::default());
    let agent = Agent::start(fake.clone(), work.path());
    fake.wait_for("three heartbeats", WITHIN, |s| s.heartbeats.len() >= 3);
    {
        let s = fake.lock();
        assert_eq!(s.registered.len(), 1);
        assert_eq!(s.registered[0].name, "n1");
        assert_eq!(s.registered[0].gpus, 2);
        // Paced by the server's interval (100 ms), not a busy loop.
        let (first, last) = (s.heartbeats[0].0, s.heartbeats[s.heartbeats.len() - 1].0);
        let n = s.heartbeats.len() as u32;
        assert!(
            last - first >= Duration::from_millis(90) * (n - 1),
            "{n} heartbeats in {:?}",
            last - first
        );
    }
    agent.stop().unwrap();
}

#[test]
fn runs_an_assigned_task_and_reports_its_exit_code_and_output() {
    let work = tempfile::tempdir().unwrap();
    let fake = Arc::new(Fake::default());
    let agent = Agent::start(fake.clone(), work.path());
    fake.assign(assignment(
        7,
        "echo \"rank $RANK of $WORLD_SIZE on $HANEUL_NODE gpus $CUDA_VISIBLE_DEVICES\"; \
         echo '하늘 warn' >&2; exit 3",
    ));
    fake.wait_for("the exit report", WITHIN, |s| exit_of(s, 7).is_some());
    let s = fake.lock();
    assert_eq!(exit_of(&s, 7), Some(3));
    // The start is reported before the exit, each once.
    let mine: Vec<Option<i64>> = s
        .reports
        .iter()
        .filter(|r| r.job == 7)
        .map(|r| r.exit_code)
        .collect();
    assert_eq!(mine, [None, Some(3)]);
    let out = output_of(&s, 7);
    assert!(out.contains("rank 0 of 1 on n1 gpus 0\n"), "{out:?}");
    assert!(out.contains("하늘 warn\n"), "{out:?}");
    assert!(s.logs.iter().all(|l| l.fence == 1 && l.task == 0));
    // Every upload of a file's bytes says where in the file they start, one after another,
    // so the server can store a replay once.
    for stream in [OutputStream::Stdout, OutputStream::Stderr] {
        let mut next = 0;
        for l in s.logs.iter().filter(|l| l.stream == Some(stream)) {
            assert_eq!(l.offset, Some(next), "{l:?}");
            next += l.bytes().unwrap().len() as i64;
        }
        assert!(next > 0, "nothing of {stream:?} was marked");
    }
    drop(s);
    agent.stop().unwrap();
}

#[test]
fn streams_output_while_the_task_runs() {
    let work = tempfile::tempdir().unwrap();
    let fake = Arc::new(Fake::default());
    let agent = Agent::start(fake.clone(), work.path());
    fake.assign(assignment(8, "echo early; sleep 30"));
    // Uploaded while the task still runs: no exit report yet.
    fake.wait_for("the early output", WITHIN, |s| {
        output_of(s, 8).contains("early\n")
    });
    assert_eq!(exit_of(&fake.lock(), 8), None);
    fake.cancel(8);
    fake.wait_for("the exit report", WITHIN, |s| exit_of(s, 8).is_some());
    agent.stop().unwrap();
}

#[test]
fn cancels_a_running_task() {
    let work = tempfile::tempdir().unwrap();
    let fake = Arc::new(Fake::default());
    let agent = Agent::start(fake.clone(), work.path());
    let pid_file = work.path().join("pid");
    fake.assign(assignment(
        9,
        &format!("echo $$ > {}; exec sleep 60", pid_file.display()),
    ));
    fake.wait_for("the start report", WITHIN, |s| {
        s.reports.iter().any(|r| r.job == 9) && pid_file.exists()
    });
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let asked = Instant::now();
    fake.cancel(9);
    fake.wait_for("the exit report", WITHIN, |s| exit_of(s, 9).is_some());
    let took = asked.elapsed();
    // SIGTERM (143) or SIGKILL (137), long before the task's 60 s.
    let code = exit_of(&fake.lock(), 9).unwrap();
    assert!(code == 143 || code == 137, "exit code {code}");
    assert!(took < Duration::from_secs(15), "stopped after {took:?}");
    // SAFETY: signal 0 only asks whether the pid exists.
    let alive = unsafe { libc::kill(pid, 0) } == 0;
    assert!(!alive, "the task's process {pid} is still there");
    agent.stop().unwrap();
}

/// Starts a task as an agent would and leaves its record, as an agent killed at that moment
/// leaves it; `node` is the node the record names (the fake registers every agent as node 1;
/// `None` is a record of an agent from before records named their node).
fn started_by_a_dead_agent(work: &Path, a: &Assignment, node: Option<i64>) -> launch::RunningTask {
    let dir = work
        .join(format!("job-{}", a.job))
        .join(format!("attempt-{}", a.fence))
        .join(format!("task-{}", a.task));
    let spec = TaskSpec {
        job_id: a.job.to_string(),
        attempt: a.fence as u32,
        task: a.task as u32,
        program: a.command[0].clone().into(),
        args: a.command[1..].to_vec(),
        workdir: dir,
        gpus: a.gpus.clone(),
        devices: Vec::new(),
        master_addr: "127.0.0.1".into(),
        master_port: 20000,
        world_size: 1,
        rank: 0,
        local_rank: 0,
        node_rank: 0,
        local_world_size: 1,
        env: Vec::new(),
        limits: Limits::default(),
        run_as: None,
        container: None,
    };
    let task = launch::launch_limited(&spec, Prepared::default()).unwrap();
    TaskFile {
        job: a.job,
        fence: a.fence,
        task: a.task,
        pid: task.pid(),
        start_ticks: task.start_ticks().unwrap_or(0),
        started_at_ms: 0,
        limits: task.limits.as_str().to_string(),
        stdout_offset: 0,
        stderr_offset: 0,
        container: None,
        node,
    }
    .save(task.workdir());
    task
}

#[test]
fn a_restarted_agent_reattaches_to_its_task_and_reports_its_exit() {
    let work = tempfile::tempdir().unwrap();
    let fake = Arc::new(Fake::default());
    let gate = work.path().join("go");
    let a = assignment(
        11,
        &format!(
            "echo before; while [ ! -e {} ]; do sleep 0.05; done; echo after; exit 5",
            gate.display()
        ),
    );
    fake.assign(a.clone());
    let task = started_by_a_dead_agent(work.path(), &a, Some(1));
    // The new agent finds the task still running: it reports its start again (idempotent)
    // and watches it.
    let agent = Agent::start(fake.clone(), work.path());
    fake.wait_for("the start report", WITHIN, |s| {
        s.reports.iter().any(|r| r.job == 11)
    });
    assert_eq!(exit_of(&fake.lock(), 11), None, "the task must still run");
    std::fs::write(&gate, "").unwrap();
    fake.wait_for("the exit report", WITHIN, |s| exit_of(s, 11).is_some());
    let s = fake.lock();
    assert_eq!(exit_of(&s, 11), Some(5));
    let out = output_of(&s, 11);
    assert!(
        out.contains("before\n") && out.contains("after\n"),
        "{out:?}"
    );
    drop(s);
    drop(task);
    agent.stop().unwrap();
}

#[test]
fn a_task_that_ended_while_the_agent_was_down_is_reported() {
    let work = tempfile::tempdir().unwrap();
    let fake = Arc::new(Fake::default());
    let a = assignment(12, "echo done; exit 4");
    fake.assign(a.clone());
    let mut task = started_by_a_dead_agent(work.path(), &a, Some(1));
    let deadline = Instant::now() + WITHIN;
    while task.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "the task never ended");
        std::thread::sleep(Duration::from_millis(20));
    }
    let agent = Agent::start(fake.clone(), work.path());
    fake.wait_for("the exit report", WITHIN, |s| exit_of(s, 12).is_some());
    let s = fake.lock();
    assert_eq!(exit_of(&s, 12), Some(4));
    assert!(output_of(&s, 12).contains("done\n"));
    drop(s);
    agent.stop().unwrap();
}

#[test]
fn an_unassigned_task_found_after_a_restart_is_stopped() {
    let work = tempfile::tempdir().unwrap();
    let fake = Arc::new(Fake::default());
    // The server ended this attempt while the agent was away: it is not assigned.
    let mut task = started_by_a_dead_agent(work.path(), &assignment(13, "exec sleep 60"), None);
    let agent = Agent::start(fake.clone(), work.path());
    let deadline = Instant::now() + WITHIN;
    // The task's keeper is this test process's child, so the agent (in this process too) may
    // reap it first: "no child" then means it ended all the same.
    while matches!(task.try_wait(), Ok(None)) {
        assert!(Instant::now() < deadline, "the stray task was not stopped");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(fake.lock().reports.is_empty());
    agent.stop().unwrap();
}

#[test]
fn another_nodes_task_in_the_same_work_directory_is_left_running() {
    let work = tempfile::tempdir().unwrap();
    let fake = Arc::new(Fake::default());
    // Node 2's agent shares this work directory and runs its task; this agent is node 1, and
    // its server assigns it only a task of its own.
    let mut theirs =
        started_by_a_dead_agent(work.path(), &assignment(14, "exec sleep 60"), Some(2));
    fake.assign(assignment(15, "echo mine; exit 0"));
    let agent = Agent::start(fake.clone(), work.path());
    // Its own task ran after the recovery had looked at every record, and the recovery stops
    // a task before it returns: nothing of it is still on its way here.
    fake.wait_for("its own task's exit", WITHIN, |s| exit_of(s, 15).is_some());
    assert!(
        matches!(theirs.try_wait(), Ok(None)),
        "the other node's task was stopped"
    );
    assert!(
        fake.lock().reports.iter().all(|r| r.job != 14),
        "the other node's task was reported"
    );
    agent.stop().unwrap();
    let _ = theirs.stop(Duration::ZERO);
}

#[test]
fn backs_off_and_retries_when_the_server_cannot_be_reached() {
    let work = tempfile::tempdir().unwrap();
    let fake = Arc::new(Fake::default());
    fake.lock().fail_next = 6;
    let agent = Agent::start(fake.clone(), work.path());
    fake.wait_for("registration", WITHIN, |s| !s.registered.is_empty());
    {
        let s = fake.lock();
        assert_eq!(s.failed, 6);
        assert_eq!(s.registered.len(), 1);
        // Retries are spaced by the backoff, not sent back to back.
        let spread = s.failed_at[5] - s.failed_at[0];
        assert!(spread >= Duration::from_millis(5), "6 tries in {spread:?}");
    }
    // An outage while a task runs: its start, output and exit still arrive.
    fake.assign(assignment(14, "sleep 0.3; echo through; exit 2"));
    fake.wait_for("the start report", WITHIN, |s| {
        s.reports.iter().any(|r| r.job == 14)
    });
    fake.lock().fail_next = 8;
    fake.wait_for("the exit report", WITHIN, |s| exit_of(s, 14).is_some());
    let s = fake.lock();
    assert_eq!(exit_of(&s, 14), Some(2));
    assert!(output_of(&s, 14).contains("through\n"));
    assert_eq!(s.failed, 14);
    drop(s);
    agent.stop().unwrap();
}

/// Two HTTP servers over one in-memory centre (as two servers share one database): the one
/// that is not the leader answers every agent call with 503 `not_leader` and names the leader
/// in the `Haneul-Leader` header.
struct Centre {
    urls: Vec<String>,
    leader: Arc<AtomicUsize>,
    _rt: tokio::runtime::Runtime,
}

fn centre(fake: Arc<Fake>) -> Centre {
    use axum::body::Bytes;
    use axum::http::{HeaderMap, Method, StatusCode, Uri};
    use axum::response::{IntoResponse, Response};
    let rt = tokio::runtime::Runtime::new().unwrap();
    let listeners: Vec<std::net::TcpListener> = (0..2)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    let urls: Vec<String> = listeners
        .iter()
        .map(|l| format!("http://{}", l.local_addr().unwrap()))
        .collect();
    let leader = Arc::new(AtomicUsize::new(1));
    for (me, l) in listeners.into_iter().enumerate() {
        l.set_nonblocking(true).unwrap();
        let (fake, leader, urls) = (fake.clone(), leader.clone(), urls.clone());
        let serve = move |method: Method, uri: Uri, _h: HeaderMap, body: Bytes| {
            let (fake, leader, urls) = (fake.clone(), leader.clone(), urls.clone());
            async move {
                let lead = leader.load(Ordering::SeqCst);
                if lead != me {
                    let mut r = (
                        StatusCode::SERVICE_UNAVAILABLE,
                        axum::Json(serde_json::json!({
                            "error": {"code": "not_leader", "message": "this server stands by",
                                      "leader": urls[lead]}
                        })),
                    )
                        .into_response();
                    r.headers_mut()
                        .insert("haneul-leader", urls[lead].parse().unwrap());
                    return r;
                }
                let json = |v: serde_json::Value| -> Response { axum::Json(v).into_response() };
                let path = uri.path().to_string();
                let blocking = tokio::task::spawn_blocking(move || -> Result<serde_json::Value> {
                    let q = uri.query().unwrap_or("");
                    let arg = |k: &str| {
                        q.split('&')
                            .find_map(|p| p.strip_prefix(&format!("{k}=")).map(String::from))
                    };
                    Ok(match (method.as_str(), path.rsplit('/').next().unwrap()) {
                        ("POST", "register") => {
                            let reg: AgentRegister = serde_json::from_slice(&body).unwrap();
                            serde_json::json!({"id": fake.register(&reg)?, "state": "idle"})
                        }
                        ("POST", "heartbeat") => {
                            serde_json::to_value(fake.heartbeat_from(me)?).unwrap()
                        }
                        ("GET", "assignments") => {
                            let wait = arg("wait_ms").and_then(|w| w.parse().ok()).unwrap_or(0);
                            serde_json::to_value(fake.poll(wait, arg("etag").as_deref())?).unwrap()
                        }
                        ("POST", "reports") => {
                            fake.take_report(&serde_json::from_slice(&body).unwrap())?;
                            serde_json::json!({})
                        }
                        ("POST", "logs") => {
                            fake.upload_log(1, &serde_json::from_slice(&body).unwrap())?;
                            serde_json::json!({})
                        }
                        other => panic!("unexpected call {other:?}"),
                    })
                });
                match blocking.await.unwrap() {
                    Ok(v) => json(v),
                    Err(e) => (StatusCode::CONFLICT, e.to_string()).into_response(),
                }
            }
        };
        rt.spawn(async move {
            let l = tokio::net::TcpListener::from_std(l).unwrap();
            axum::serve(l, axum::Router::new().fallback(serve))
                .await
                .unwrap();
        });
    }
    Centre {
        urls,
        leader,
        _rt: rt,
    }
}

#[test]
fn follows_the_leader_over_http() {
    let work = tempfile::tempdir().unwrap();
    let fake = Arc::new(Fake::default());
    // Heartbeats every 30 s: the agent must not wait for the next one to reach a new leader.
    fake.interval_ms.store(30_000, Ordering::SeqCst);
    let c = centre(fake.clone());
    // Given the standby only: the agent reaches the leader by following the standby's word.
    let transport = node::http::HttpTransport::new(&c.urls[0], "hn_test".into(), None).unwrap();
    let agent = Agent::start(Arc::new(transport), work.path());
    fake.wait_for("a heartbeat at the leader", WITHIN, |s| {
        s.heartbeats.iter().any(|(_, server)| *server == 1)
    });
    assert_eq!(fake.lock().registered.len(), 1);
    assert!(
        fake.lock()
            .heartbeats
            .iter()
            .all(|(_, server)| *server == 1)
    );
    // The leader changes: the old one now stands by and names the new one.
    c.leader.store(0, Ordering::SeqCst);
    let changed = Instant::now();
    fake.wait_for("a heartbeat at the new leader", WITHIN, |s| {
        s.heartbeats.iter().any(|(_, server)| *server == 0)
    });
    let back = changed.elapsed();
    eprintln!(
        "the agent heartbeat to the new leader {} ms after the change",
        back.as_millis()
    );
    // Its poll (300 ms) meets the change and the heartbeat follows at once, long before the
    // 30 s interval.
    assert!(back < Duration::from_secs(5), "back after {back:?}");
    // And the new leader's work runs.
    fake.assign(assignment(15, "echo led; exit 6"));
    fake.wait_for("the exit report", WITHIN, |s| exit_of(s, 15).is_some());
    assert_eq!(exit_of(&fake.lock(), 15), Some(6));
    assert!(output_of(&fake.lock(), 15).contains("led\n"));
    agent.stop().unwrap();
}
