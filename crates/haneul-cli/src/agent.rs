//! `haneul agent`: the node agent. It registers this node's GPUs with a server, heartbeats,
//! long-polls its assignments, runs each assigned task as a process group (through the
//! `haneul-agent` library), uploads the task's output and reports its start and exit with the
//! attempt's fence. Blocking threads and a small HTTP/1.1 client over `std::net`: one thread
//! polls, one heartbeats, one watches each running task.

use anyhow::{Context, bail};
use clap::Args;
use haneul_agent::gpus;
use haneul_agent::launch::{self, Limits, TaskSpec};
use haneul_api::{AgentRegister, Assignment, AssignmentList, HeartbeatAck, LogUpload, TaskReport};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

#[derive(Args)]
#[command(after_help = "Examples:\n  \
    haneul agent --server http://10.0.0.1:8470 --token-file /etc/haneul/agent.token\n  \
    haneul agent --server http://127.0.0.1:8470 --token hn_... --simulate-gpus 8xH200")]
pub struct AgentArgs {
    /// The server's base URL (http://HOST:PORT).
    #[arg(long, env = "HANEUL_SERVER")]
    server: String,
    /// An `agent` token.
    #[arg(long, env = "HANEUL_TOKEN", conflicts_with = "token_file")]
    token: Option<String>,
    /// A file holding the `agent` token.
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// The node's name (default: the host name).
    #[arg(long)]
    name: Option<String>,
    /// Simulated GPUs, COUNTxMODEL (e.g. 8xH200), for machines without GPUs: tasks get the
    /// indices in CUDA_VISIBLE_DEVICES but no real GPU.
    #[arg(long)]
    simulate_gpus: Option<String>,
    /// Where task working directories go: DIR/job-J/attempt-F/task-T.
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// The pool the node belongs to.
    #[arg(long, default_value = "default")]
    pool: String,
    /// The node's block (network locality group) within its pool.
    #[arg(long, default_value = "default")]
    block: String,
}

/// Set by SIGINT/SIGTERM.
static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

fn stopping() -> bool {
    STOP.load(Ordering::SeqCst)
}

/// Largest log upload the server takes is 256 KiB; stay well below.
const LOG_CHUNK: usize = 128 * 1024;
/// How much of the end of each of stdout and stderr is uploaded.
const LOG_TAIL: u64 = 1024 * 1024;
/// How long past its time limit a task may run before the agent stops it by itself.
const TIME_LIMIT_SLACK: Duration = Duration::from_secs(3);
/// Long-poll wait; short enough that a signal is noticed quickly.
const POLL_WAIT_MS: u64 = 2000;

pub fn run(args: AgentArgs) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let token = match (&args.token, &args.token_file) {
        (Some(t), _) => t.trim().to_string(),
        (None, Some(p)) => std::fs::read_to_string(p)
            .with_context(|| format!("cannot read --token-file {}", p.display()))?
            .trim()
            .to_string(),
        (None, None) => bail!("give the agent token with --token or --token-file"),
    };
    if token.is_empty() {
        bail!("the agent token is empty");
    }
    let client = Client::new(&args.server, token)?;
    let inventory = match &args.simulate_gpus {
        Some(v) => gpus::parse_simulated(v)?,
        None => {
            let inv = gpus::discover();
            if inv.gpus.is_empty() {
                bail!(
                    "no GPUs found ({}); on a machine without GPUs pass --simulate-gpus COUNTxMODEL, \
                     e.g. --simulate-gpus 8xH200",
                    inv.note.unwrap_or_default()
                );
            }
            inv.gpus
        }
    };
    launch::become_subreaper()?;
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
    let name = args.name.clone().unwrap_or_else(hostname);
    let work_dir = args
        .work_dir
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join(format!("haneul-agent-{name}")));
    std::fs::create_dir_all(&work_dir)
        .with_context(|| format!("cannot create --work-dir {}", work_dir.display()))?;
    let model = inventory[0]
        .model
        .trim()
        .trim_start_matches("NVIDIA ")
        .replace(' ', "-");
    let reg = AgentRegister {
        name: name.clone(),
        pool: args.pool.clone(),
        block: args.block.clone(),
        gpu_model: model,
        gpus: inventory.len() as i64,
        gpu_memory_mib: inventory[0].memory_mib.unwrap_or(0) as i64,
        nvlink_domain: None,
        cpu_milli: std::thread::available_parallelism().map_or(1, |n| n.get()) as i64 * 1000,
        memory_mib: memory_mib(),
    };
    let node: haneul_api::Node = client
        .retrying("register", || {
            client.call("POST", "/v1/agent/register", Some(&reg))
        })
        .map_err(|e| anyhow::anyhow!("cannot register node {name}: {e}"))?;
    tracing::info!(
        node = node.id,
        %name,
        gpus = reg.gpus,
        model = %reg.gpu_model,
        simulated = args.simulate_gpus.is_some(),
        "registered"
    );
    let beat: HeartbeatAck = client
        .retrying("heartbeat", || {
            client.call::<(), _>(
                "POST",
                &format!("/v1/agent/nodes/{}/heartbeat", node.id),
                None,
            )
        })
        .map_err(|e| anyhow::anyhow!("first heartbeat refused: {e}"))?;
    let interval = Duration::from_millis(beat.interval_ms.max(100) as u64);
    let hb = {
        let client = client.clone();
        let id = node.id;
        std::thread::spawn(move || heartbeats(client, id, interval))
    };

    let ctx = Arc::new(NodeCtx {
        client: client.clone(),
        node: node.id,
        name: name.clone(),
        work_dir,
    });
    let mut tasks: HashMap<(i64, i64, i64), Running> = HashMap::new();
    let mut etag = String::new();
    let mut backoff = Backoff::new();
    while !stopping() {
        let path = format!(
            "/v1/agent/nodes/{}/assignments?wait_ms={POLL_WAIT_MS}&etag={}",
            node.id,
            if etag.is_empty() { "none" } else { &etag }
        );
        let list: AssignmentList = match client.call::<(), _>("GET", &path, None) {
            Ok(l) => {
                backoff.reset();
                l
            }
            Err(e) => {
                tracing::warn!("polling assignments: {e}");
                backoff.sleep();
                continue;
            }
        };
        etag = list.etag.clone();
        // Forget finished tasks that are no longer assigned.
        tasks.retain(|k, r| {
            let listed = list
                .assignments
                .iter()
                .any(|a| (a.job, a.task, a.fence) == *k);
            listed || !r.handle.as_ref().is_none_or(|h| h.is_finished())
        });
        for a in list.assignments {
            let key = (a.job, a.task, a.fence);
            match a.action.as_str() {
                "run" => {
                    if tasks.contains_key(&key) {
                        continue;
                    }
                    let (tx, rx) = mpsc::channel();
                    let ctx = ctx.clone();
                    let handle = std::thread::spawn(move || run_task(&ctx, a, rx));
                    tasks.insert(
                        key,
                        Running {
                            stop: tx,
                            handle: Some(handle),
                            stop_sent: false,
                        },
                    );
                }
                "stop" => {
                    let grace = a.kill_at.map_or(Duration::from_secs(a.grace_s), |at| {
                        Duration::from_millis((at - now_ms()).max(0) as u64)
                    });
                    match tasks.get_mut(&key) {
                        Some(r) if !r.stop_sent => {
                            tracing::info!(job = a.job, task = a.task, reason = ?a.stop_reason, "stopping task");
                            let _ = r.stop.send(grace);
                            r.stop_sent = true;
                        }
                        Some(_) => {}
                        None => {
                            // Not running here (never started, or the agent restarted): say it
                            // has ended, once.
                            tracing::info!(
                                job = a.job,
                                task = a.task,
                                "stop for a task not running here"
                            );
                            let (tx, _) = mpsc::channel();
                            tasks.insert(
                                key,
                                Running {
                                    stop: tx,
                                    handle: None,
                                    stop_sent: true,
                                },
                            );
                            report(&ctx, &a, Some(143));
                        }
                    }
                }
                other => tracing::warn!(job = a.job, "unknown action {other:?}"),
            }
        }
    }
    tracing::info!("signal received: stopping running tasks");
    for (_, r) in tasks.iter_mut() {
        let _ = r.stop.send(Duration::from_secs(5));
    }
    for (_, r) in tasks {
        if let Some(h) = r.handle {
            let _ = h.join();
        }
    }
    let _ = hb.join();
    tracing::info!("agent stopped");
    Ok(())
}

struct Running {
    stop: Sender<Duration>,
    handle: Option<std::thread::JoinHandle<()>>,
    stop_sent: bool,
}

struct NodeCtx {
    client: Client,
    node: i64,
    name: String,
    work_dir: PathBuf,
}

fn heartbeats(client: Client, node: i64, interval: Duration) {
    let path = format!("/v1/agent/nodes/{node}/heartbeat");
    let mut next = Instant::now() + interval;
    while !stopping() {
        if Instant::now() < next {
            std::thread::sleep(Duration::from_millis(100).min(next - Instant::now()));
            continue;
        }
        next = Instant::now() + interval;
        if let Err(e) = client.call::<(), HeartbeatAck>("POST", &path, None) {
            tracing::warn!("heartbeat: {e}");
        }
    }
}

/// The gang environment of task `a` on node `me`: (master address, world size, rank, local
/// rank, node rank, local world size).
fn gang(a: &Assignment, me: &str) -> (String, u32, u32, u32, u32, u32) {
    let peers = if a.peers.is_empty() {
        vec![me.to_string()]
    } else {
        a.peers.clone()
    };
    let rank = (a.task as usize).min(peers.len() - 1);
    let mut nodes: Vec<&str> = Vec::new();
    for p in &peers {
        if !nodes.contains(&p.as_str()) {
            nodes.push(p);
        }
    }
    let mine = &peers[rank];
    let node_rank = nodes.iter().position(|n| n == mine).unwrap_or(0);
    let local_rank = peers[..rank].iter().filter(|p| *p == mine).count();
    let local_world = peers.iter().filter(|p| *p == mine).count();
    let master = if nodes.len() == 1 {
        "127.0.0.1".to_string()
    } else {
        peers[0].clone()
    };
    (
        master,
        peers.len() as u32,
        rank as u32,
        local_rank as u32,
        node_rank as u32,
        local_world as u32,
    )
}

fn run_task(ctx: &NodeCtx, a: Assignment, stop: Receiver<Duration>) {
    let (master, world, rank, local_rank, node_rank, local_world) = gang(&a, &ctx.name);
    let workdir = ctx
        .work_dir
        .join(format!("job-{}", a.job))
        .join(format!("attempt-{}", a.fence))
        .join(format!("task-{}", a.task));
    let Some((program, args)) = a.command.split_first() else {
        upload(ctx, &a, "haneul agent: the job has an empty command\n");
        report(ctx, &a, None);
        report(ctx, &a, Some(127));
        return;
    };
    let spec = TaskSpec {
        job_id: a.job.to_string(),
        attempt: a.fence as u32,
        task: a.task as u32,
        program: program.into(),
        args: args.to_vec(),
        workdir,
        gpus: a.gpus.clone(),
        master_addr: master,
        master_port: 20000 + (a.job.rem_euclid(20000)) as u16,
        world_size: world,
        rank,
        local_rank,
        node_rank,
        local_world_size: local_world,
        env: vec![
            ("HANEUL_NODE".into(), ctx.name.clone()),
            ("HANEUL_PROJECT".into(), a.project.to_string()),
        ],
        limits: Limits::default(),
    };
    let mut task = match launch::launch(&spec) {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!(job = a.job, task = a.task, "cannot launch: {e}");
            if report(ctx, &a, None) {
                upload(
                    ctx,
                    &a,
                    &format!("haneul agent: cannot launch the task: {e}\n"),
                );
                report(ctx, &a, Some(127));
            }
            return;
        }
    };
    tracing::info!(job = a.job, task = a.task, pid = task.pid(), gpus = ?a.gpus, "task started");
    if !report(ctx, &a, None) {
        // Stale or refused: this attempt is not ours to run.
        let _ = task.stop(Duration::ZERO);
        return;
    }
    let started = Instant::now();
    // The server stops overdue attempts itself (the job then ends `timed_out`); this is the
    // backstop for a server that cannot be reached, a little later so the server's stop wins.
    let limit = a
        .time_limit_s
        .map(|s| Duration::from_secs(s) + TIME_LIMIT_SLACK);
    let grace = Duration::from_secs(a.grace_s);
    let status = loop {
        match task.try_wait() {
            Ok(Some(s)) => {
                // Leave nothing of the group behind.
                let _ = task.stop(Duration::ZERO);
                break Some(s);
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(job = a.job, "waiting for the task: {e}");
                break task.stop(Duration::ZERO).ok();
            }
        }
        if stopping() {
            let _ = task.stop(grace.min(Duration::from_secs(5)));
            // The node is going away: the server requeues the work when the node is lost;
            // reporting an exit would fail the job for a reason that is not its own.
            upload(ctx, &a, &tail_logs(&task));
            return;
        }
        if limit.is_some_and(|l| started.elapsed() >= l) {
            tracing::info!(job = a.job, task = a.task, "time limit reached");
            break task.stop(grace).ok();
        }
        match stop.recv_timeout(Duration::from_millis(20)) {
            Ok(g) => break task.stop(g).ok(),
            Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => {}
        }
    };
    let code = status.map_or(137, |s| {
        use std::os::unix::process::ExitStatusExt;
        s.code()
            .map(i64::from)
            .or_else(|| s.signal().map(|n| 128 + i64::from(n)))
            .unwrap_or(1)
    });
    tracing::info!(job = a.job, task = a.task, code, "task exited");
    upload(ctx, &a, &tail_logs(&task));
    report(ctx, &a, Some(code));
}

/// The end of the task's stdout, then of its stderr.
fn tail_logs(task: &launch::RunningTask) -> String {
    let tail = |p: PathBuf| -> String {
        let Ok(mut f) = std::fs::File::open(&p) else {
            return String::new();
        };
        let len = f.metadata().map_or(0, |m| m.len());
        if len > LOG_TAIL {
            use std::io::Seek;
            let _ = f.seek(std::io::SeekFrom::Start(len - LOG_TAIL));
        }
        let mut buf = Vec::new();
        let _ = f.read_to_end(&mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    };
    let mut out = tail(task.stdout_path());
    let err = tail(task.stderr_path());
    if !err.is_empty() {
        out.push_str(&err);
    }
    out
}

/// Uploads `data` in chunks; stops at a refusal.
fn upload(ctx: &NodeCtx, a: &Assignment, data: &str) {
    let path = format!("/v1/agent/nodes/{}/logs", ctx.node);
    let mut rest = data;
    while !rest.is_empty() {
        let mut cut = rest.len().min(LOG_CHUNK);
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        let (chunk, tail) = rest.split_at(cut);
        rest = tail;
        let body = LogUpload {
            job: a.job,
            fence: a.fence,
            task: a.task,
            data: chunk.to_string(),
        };
        if let Err(e) = ctx
            .client
            .retrying("log upload", || ctx.client.call_empty("POST", &path, &body))
        {
            tracing::warn!(job = a.job, task = a.task, "log upload dropped: {e}");
            return;
        }
    }
}

/// Reports a start (`exit_code` None) or an exit. Returns whether the server accepted it; a
/// refusal (409: stale fence) is logged and dropped.
fn report(ctx: &NodeCtx, a: &Assignment, exit_code: Option<i64>) -> bool {
    let path = format!("/v1/agent/nodes/{}/reports", ctx.node);
    let body = TaskReport {
        job: a.job,
        fence: a.fence,
        task: a.task,
        exit_code,
    };
    match ctx.client.retrying("report", || {
        ctx.client
            .call::<_, serde_json::Value>("POST", &path, Some(&body))
    }) {
        Ok(_) => true,
        Err(e) => {
            tracing::warn!(
                job = a.job,
                fence = a.fence,
                task = a.task,
                ?exit_code,
                "report dropped: {e}"
            );
            false
        }
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "node".into())
}

fn memory_mib() -> i64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<i64>().ok())
        })
        .map_or(0, |kb| kb / 1024)
}

/// Exponential backoff from 100 ms to 5 s.
struct Backoff(Duration);

impl Backoff {
    fn new() -> Self {
        Backoff(Duration::from_millis(100))
    }
    fn reset(&mut self) {
        self.0 = Duration::from_millis(100);
    }
    fn sleep(&mut self) {
        std::thread::sleep(self.0);
        self.0 = (self.0 * 2).min(Duration::from_secs(5));
    }
}

/// Why a call failed.
#[derive(Debug)]
pub(crate) enum CallError {
    /// Connection trouble or a 5xx: worth retrying.
    Transient(String),
    /// The server refused (4xx, e.g. 409 for a stale fence): retrying will not help.
    Refused(u16, String),
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Transient(m) => write!(f, "{m}"),
            CallError::Refused(s, m) => write!(f, "refused with {s}: {m}"),
        }
    }
}

/// A minimal HTTP/1.1 client (one connection per request), enough for the agent protocol.
#[derive(Clone)]
pub(crate) struct Client {
    host: String,
    token: String,
}

impl Client {
    pub(crate) fn new(url: &str, token: String) -> anyhow::Result<Client> {
        let Some(rest) = url.strip_prefix("http://") else {
            bail!("--server must be an http://HOST:PORT URL, got `{url}`");
        };
        let host = rest.trim_end_matches('/').to_string();
        if host.is_empty() || host.contains('/') {
            bail!("--server must be an http://HOST:PORT URL, got `{url}`");
        }
        let host = if host.contains(':') {
            host
        } else {
            format!("{host}:80")
        };
        Ok(Client { host, token })
    }

    /// Retries transient failures with backoff (at most about two minutes, less once the
    /// agent is stopping); a refusal ends at once.
    fn retrying<T>(
        &self,
        what: &str,
        mut f: impl FnMut() -> Result<T, CallError>,
    ) -> Result<T, CallError> {
        let mut backoff = Backoff::new();
        let mut tries = 0;
        loop {
            match f() {
                Ok(v) => return Ok(v),
                Err(CallError::Transient(m)) if tries < 30 && !(stopping() && tries >= 3) => {
                    tracing::warn!("{what}: {m}; retrying");
                    tries += 1;
                    backoff.sleep();
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn call<B: Serialize, T: DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        body: Option<&B>,
    ) -> Result<T, CallError> {
        let body = body.map(|b| serde_json::to_string(b).unwrap_or_default());
        let (status, text) = self.raw(method, path, body.as_deref())?;
        serde_json::from_str(&text).map_err(|e| {
            CallError::Transient(format!("{method} {path}: bad answer ({status}): {e}"))
        })
    }

    fn call_empty<B: Serialize>(
        &self,
        method: &str,
        path: &str,
        body: &B,
    ) -> Result<(), CallError> {
        let body = serde_json::to_string(body).unwrap_or_default();
        self.raw(method, path, Some(&body)).map(|_| ())
    }

    pub(crate) fn raw(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
    ) -> Result<(u16, String), CallError> {
        let t = |e: std::io::Error| CallError::Transient(format!("{method} {path}: {e}"));
        let addr = self
            .host
            .to_socket_addrs()
            .map_err(t)?
            .next()
            .ok_or_else(|| CallError::Transient(format!("cannot resolve {}", self.host)))?;
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).map_err(t)?;
        s.set_read_timeout(Some(
            Duration::from_millis(POLL_WAIT_MS) + Duration::from_secs(30),
        ))
        .map_err(t)?;
        let body = body.unwrap_or("");
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.host,
            self.token,
            body.len()
        );
        s.write_all(req.as_bytes()).map_err(t)?;
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).map_err(t)?;
        let text = String::from_utf8_lossy(&raw);
        let Some((head, body)) = text.split_once("\r\n\r\n") else {
            return Err(CallError::Transient(format!(
                "{method} {path}: truncated answer"
            )));
        };
        let status: u16 = head
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let body = if head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked")
        {
            dechunk(body)
        } else {
            body.to_string()
        };
        match status {
            200..=299 => Ok((status, body)),
            400..=499 => Err(CallError::Refused(status, body)),
            _ => Err(CallError::Transient(format!(
                "{method} {path}: status {status}: {body}"
            ))),
        }
    }
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].strip_prefix("\r\n").unwrap_or(&rest[n..]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assignment(task: i64, peers: &[&str]) -> Assignment {
        Assignment {
            job: 1,
            fence: 1,
            task,
            action: "run".into(),
            stop_reason: None,
            kill_at: None,
            gpus: vec![0],
            milli_per_gpu: 1000,
            command: vec!["true".into()],
            peers: peers.iter().map(|s| s.to_string()).collect(),
            user: 1,
            project: 1,
            cpu_milli: 0,
            memory_mib: 0,
            time_limit_s: None,
            grace_s: 0,
        }
    }

    #[test]
    fn gang_environment() {
        assert_eq!(
            gang(&assignment(0, &["a"]), "a"),
            ("127.0.0.1".into(), 1, 0, 0, 0, 1)
        );
        let peers = ["a", "a", "b", "b"];
        assert_eq!(
            gang(&assignment(3, &peers), "b"),
            ("a".into(), 4, 3, 1, 1, 2)
        );
        assert_eq!(
            gang(&assignment(1, &peers), "a"),
            ("a".into(), 4, 1, 1, 0, 2)
        );
    }

    #[test]
    fn chunked_bodies() {
        assert_eq!(dechunk("3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"), "abcde");
    }

    #[test]
    fn server_url() {
        assert_eq!(Client::new("http://h:1/", "t".into()).unwrap().host, "h:1");
        assert!(Client::new("https://h:1", "t".into()).is_err());
    }
}
