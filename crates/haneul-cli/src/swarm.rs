//! `haneul swarm`: one process holding many simulated nodes, for scale and fault tests. Each
//! node registers with the agent protocol, heartbeats at the server's interval and long-polls
//! its assignments like `haneul agent`, but "runs" a task without a process: it reports the
//! start with the fence, waits the simulated duration read from the command (`sleep N`), and
//! reports the exit. Stops are honoured at once (exit 143).
//!
//! It is built to hold a whole centre on a small machine: async tasks on a two-thread runtime
//! and the one async client (`haneul-client`) with its one connection pool (over plain HTTP a
//! keep-alive connection per held long poll, over TLS HTTP/2 streams), never a thread per
//! node.

use anyhow::{Context, bail};
use clap::Args;
use haneul_api::{AgentRegister, Assignment, AssignmentList, HeartbeatAck, Node, TaskReport};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;
use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;

#[derive(Args, Clone)]
#[command(after_help = "Examples:\n  \
    haneul swarm --server http://127.0.0.1:8470 --token-file agent.token --nodes 1250 --gpus 8xH200\n  \
    haneul swarm --server http://127.0.0.1:8470 --token-file agent.token --nodes 4 --events ev.jsonl\n\n\
    A task's simulated run time is read from its command: the number after a `sleep` word (in any\n\
    argument, so `sh -c 'sleep 2.5'` works too); its exit code from the number after an `exit`\n\
    word, or 1 for a command `false`; otherwise it ends at once with 0.")]
pub struct SwarmArgs {
    /// The server's base URL (http://HOST:PORT or https://HOST:PORT); several comma-separated.
    #[arg(long, env = "HANEUL_SERVER")]
    pub server: String,
    /// The CA certificate (PEM) that signed the servers' certificates.
    #[arg(long, env = "HANEUL_CA_FILE")]
    pub ca_file: Option<PathBuf>,
    /// An `agent` token.
    #[arg(long, env = "HANEUL_TOKEN", conflicts_with = "token_file")]
    pub token: Option<String>,
    /// A file holding the `agent` token.
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    /// How many simulated nodes to hold.
    #[arg(long, default_value_t = 1250)]
    pub nodes: usize,
    /// Simulated GPUs of each node, COUNTxMODEL.
    #[arg(long, default_value = "8xH200")]
    pub gpus: String,
    /// Node names are PREFIX-0000, PREFIX-0001, ...; blocks PREFIX-b0, PREFIX-b1, ...
    #[arg(long, default_value = "sim")]
    pub name_prefix: String,
    /// The pool every node joins.
    #[arg(long, default_value = "default")]
    pub pool: String,
    /// Nodes per block (network leaf).
    #[arg(long, default_value_t = 32)]
    pub nodes_per_block: usize,
    /// Workers sharing out heartbeats and registrations.
    #[arg(long, default_value_t = 16)]
    pub connections: usize,
    /// Heartbeat period in ms (default: the interval the server asks for). Tests with a short
    /// `--node-timeout` need a shorter one.
    #[arg(long)]
    pub heartbeat_ms: Option<u64>,
    /// How long each assignment long poll waits for a change, in ms.
    #[arg(long, default_value_t = 30_000)]
    pub poll_wait_ms: u64,
    /// Append one JSON line per task start, end and refused report to this file.
    #[arg(long)]
    pub events: Option<PathBuf>,
    /// Print a JSON line of counters every this many seconds (0: only at the end).
    #[arg(long, default_value_t = 0)]
    pub stats_every: u64,
}

/// Counters of a running swarm, shared with whoever embeds it (`haneul bench centre`).
#[derive(Default)]
pub struct SwarmStats {
    pub registered: AtomicU64,
    pub heartbeats: AtomicU64,
    pub heartbeat_errors: AtomicU64,
    pub polls: AtomicU64,
    pub poll_errors: AtomicU64,
    pub started: AtomicU64,
    pub finished: AtomicU64,
    pub stopped: AtomicU64,
    pub refused: AtomicU64,
    pub running: AtomicI64,
    /// The server the last heartbeat went to (the client follows the leader).
    pub server: Mutex<String>,
}

impl SwarmStats {
    fn json(&self) -> serde_json::Value {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        json!({
            "registered": g(&self.registered),
            "heartbeats": g(&self.heartbeats),
            "heartbeat_errors": g(&self.heartbeat_errors),
            "polls": g(&self.polls),
            "poll_errors": g(&self.poll_errors),
            "started": g(&self.started),
            "finished": g(&self.finished),
            "stopped": g(&self.stopped),
            "refused": g(&self.refused),
            "running": self.running.load(Ordering::Relaxed),
            "server": self.server.lock().unwrap().clone(),
        })
    }
}

/// What a swarm needs, without the command line's file handling.
#[derive(Clone)]
pub struct SwarmConfig {
    /// The servers' base URLs, comma-separated.
    pub server: String,
    pub ca_file: Option<PathBuf>,
    pub token: String,
    pub nodes: usize,
    pub gpus: i64,
    pub gpu_model: String,
    pub name_prefix: String,
    pub pool: String,
    pub nodes_per_block: usize,
    pub connections: usize,
    pub heartbeat: Option<Duration>,
    pub poll_wait: Duration,
    pub events: Option<PathBuf>,
}

impl SwarmConfig {
    /// The swarm a bench embeds: `nodes` nodes of `inventory` in the default pool, 32 to a
    /// block, from 16 connections, heartbeats at the server's interval.
    pub fn for_bench(
        server: &str,
        ca_file: Option<PathBuf>,
        token: String,
        nodes: usize,
        inventory: &[haneul_agent::gpus::Gpu],
    ) -> Self {
        SwarmConfig {
            server: server.to_string(),
            ca_file,
            token,
            nodes,
            gpus: inventory.len() as i64,
            gpu_model: inventory[0].model.clone(),
            name_prefix: "sim".into(),
            pool: "default".into(),
            nodes_per_block: 32,
            connections: 16,
            heartbeat: None,
            poll_wait: Duration::from_secs(30),
            events: None,
        }
    }
}

pub fn run(args: SwarmArgs) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
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
    if args.nodes == 0 || args.connections == 0 || args.nodes_per_block == 0 {
        bail!("--nodes, --connections and --nodes-per-block must be at least 1");
    }
    let inventory = haneul_agent::gpus::parse_simulated(&args.gpus)
        .map_err(|e| anyhow::anyhow!("--gpus: {e}"))?;
    haneul_client::parse_servers(&args.server)?;
    haneul_server::serve::raise_file_limit();
    let cfg = SwarmConfig {
        server: args.server.clone(),
        ca_file: args.ca_file.clone(),
        token,
        nodes: args.nodes,
        gpus: inventory.len() as i64,
        gpu_model: inventory[0].model.clone(),
        name_prefix: args.name_prefix.clone(),
        pool: args.pool.clone(),
        nodes_per_block: args.nodes_per_block,
        connections: args.connections,
        heartbeat: args.heartbeat_ms.map(Duration::from_millis),
        poll_wait: Duration::from_millis(args.poll_wait_ms),
        events: args.events.clone(),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(async move {
        let stats = Arc::new(SwarmStats::default());
        let (stop_tx, stop_rx) = watch::channel(false);
        let began = Instant::now();
        if args.stats_every > 0 {
            let stats = stats.clone();
            let every = Duration::from_secs(args.stats_every);
            tokio::spawn(async move {
                let mut last = 0;
                loop {
                    tokio::time::sleep(every).await;
                    let beats = stats.heartbeats.load(Ordering::Relaxed);
                    let mut line = stats.json();
                    line["at_s"] = json!(began.elapsed().as_secs_f64());
                    line["heartbeats_per_s"] = json!((beats - last) as f64 / every.as_secs_f64());
                    last = beats;
                    println!("{line}");
                }
            });
        }
        let swarm = tokio::spawn(run_swarm(cfg, stats.clone(), stop_rx));
        shutdown_signal().await;
        stop_tx.send_replace(true);
        let result = swarm.await.context("the swarm panicked")?;
        let mut line = stats.json();
        line["at_s"] = json!(began.elapsed().as_secs_f64());
        println!("{line}");
        result
    })
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Registers every node, then heartbeats and serves their assignments until `stop` is set.
pub async fn run_swarm(
    cfg: SwarmConfig,
    stats: Arc<SwarmStats>,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let events = match &cfg.events {
        Some(p) => Some(Mutex::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .with_context(|| format!("cannot open --events {}", p.display()))?,
        )),
        None => None,
    };
    let ctx = Arc::new(Ctx {
        api: Api::connect(&cfg.server, cfg.token.clone(), cfg.ca_file.clone())?,
        stats: stats.clone(),
        events,
        stop: stop.clone(),
        poll_wait: cfg.poll_wait,
    });

    // Register from `connections` workers at once.
    let mut regs = Vec::new();
    for w in 0..cfg.connections.min(cfg.nodes) {
        let (ctx, cfg) = (ctx.clone(), cfg.clone());
        regs.push(tokio::spawn(async move {
            let mut out = Vec::new();
            for i in (w..cfg.nodes).step_by(cfg.connections) {
                let reg = AgentRegister {
                    name: format!("{}-{i:04}", cfg.name_prefix),
                    pool: cfg.pool.clone(),
                    block: format!("{}-b{}", cfg.name_prefix, i / cfg.nodes_per_block),
                    gpu_model: cfg.gpu_model.clone(),
                    gpus: cfg.gpus,
                    gpu_memory_mib: 0,
                    nvlink_domain: None,
                    cpu_milli: 112_000,
                    memory_mib: 2_000_000,
                    // Simulated tasks run no process, so nothing is limited.
                    limits: Some("none".into()),
                    address: None,
                    container_runtime: None,
                    uid: None,
                };
                let node: Node = ctx
                    .api
                    .retrying(&ctx.stop, "POST", "/v1/agent/register", Some(&reg))
                    .await
                    .map_err(|e| anyhow::anyhow!("cannot register node {}: {e}", reg.name))?;
                ctx.stats.registered.fetch_add(1, Ordering::Relaxed);
                out.push((i, node.id));
            }
            anyhow::Ok(out)
        }));
    }
    let mut nodes = Vec::with_capacity(cfg.nodes);
    for r in regs {
        nodes.extend(r.await.context("a registration worker panicked")??);
    }
    nodes.sort_unstable();
    let nodes: Vec<i64> = nodes.into_iter().map(|(_, id)| id).collect();

    let interval = match cfg.heartbeat {
        Some(i) => i,
        None => {
            let beat: HeartbeatAck = ctx
                .api
                .retrying::<(), _>(
                    &ctx.stop,
                    "POST",
                    &format!("/v1/agent/nodes/{}/heartbeat", nodes[0]),
                    None,
                )
                .await
                .map_err(|e| anyhow::anyhow!("first heartbeat refused: {e}"))?;
            Duration::from_millis(beat.interval_ms.max(100) as u64)
        }
    };

    let mut loops = Vec::new();
    let workers = cfg.connections.min(nodes.len());
    for w in 0..workers {
        let mine: Vec<i64> = nodes.iter().copied().skip(w).step_by(workers).collect();
        // Workers start spread over one interval: started together, every worker's nodes
        // would beat in the same instant, a burst real agents (started at different times)
        // do not make, and a short measuring window could fall between two bursts.
        let offset = interval * w as u32 / workers as u32;
        loops.push(tokio::spawn(heartbeats(
            ctx.clone(),
            mine,
            interval,
            offset,
        )));
    }
    for &node in &nodes {
        loops.push(tokio::spawn(node_loop(ctx.clone(), node)));
    }
    for l in loops {
        let _ = l.await;
    }
    Ok(())
}

struct Ctx {
    api: Api,
    stats: Arc<SwarmStats>,
    events: Option<Mutex<std::fs::File>>,
    stop: watch::Receiver<bool>,
    poll_wait: Duration,
}

impl Ctx {
    fn stopping(&self) -> bool {
        *self.stop.borrow()
    }

    /// One line per event, written at once so that a SIGKILLed swarm leaves a complete record.
    fn event(&self, line: serde_json::Value) {
        if let Some(f) = &self.events {
            let mut text = line.to_string();
            text.push('\n');
            let _ = f.lock().unwrap().write_all(text.as_bytes());
        }
    }
}

/// Resolves when `stop` is set.
async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

async fn heartbeats(ctx: Arc<Ctx>, nodes: Vec<i64>, interval: Duration, offset: Duration) {
    let gap = interval / nodes.len().max(1) as u32;
    let mut tick = tokio::time::interval_at(
        tokio::time::Instant::now() + offset,
        gap.max(Duration::from_micros(100)),
    );
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        for n in &nodes {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stopped(ctx.stop.clone()) => return,
            }
            let path = format!("/v1/agent/nodes/{n}/heartbeat");
            match ctx.api.send_for("POST", &path, None, REQUEST_TIMEOUT).await {
                Ok((200, _)) => {
                    ctx.stats.heartbeats.fetch_add(1, Ordering::Relaxed);
                    let now = ctx.api.client.server();
                    let mut server = ctx.stats.server.lock().unwrap();
                    if *server != now {
                        *server = now;
                    }
                }
                Ok((s, body)) => {
                    ctx.stats.heartbeat_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(node = n, "heartbeat answered {s}: {}", lossy(&body));
                }
                Err(e) => {
                    ctx.stats.heartbeat_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(node = n, "heartbeat: {e}");
                }
            }
        }
    }
}

/// A task this node runs (or has been told to stop).
struct SimTask {
    stop: watch::Sender<bool>,
    stop_sent: bool,
    done: Arc<std::sync::atomic::AtomicBool>,
}

async fn node_loop(ctx: Arc<Ctx>, node: i64) {
    let mut etag = "none".to_string();
    let mut tasks: HashMap<(i64, i64, i64), SimTask> = HashMap::new();
    let mut backoff =
        haneul_client::Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
    // The server holds a poll at most a minute and refuses a longer wait. Each node waits up
    // to a fifth less than the others, by its id: nodes registered together would otherwise
    // all poll again in the same instant at every wait's end, for ever (agents started at
    // different times do not).
    let base = ctx.poll_wait.as_millis().min(60_000);
    let wait_ms = base - base * (node.unsigned_abs() as u128 * 2_654_435_761 % 1_000) / 5_000;
    while !ctx.stopping() {
        let path = format!("/v1/agent/nodes/{node}/assignments?wait_ms={wait_ms}&etag={etag}");
        let answer = tokio::select! {
            r = ctx.api.send_for("GET", &path, None, ctx.poll_wait + REQUEST_TIMEOUT) => r,
            _ = stopped(ctx.stop.clone()) => break,
        };
        let list: AssignmentList = match answer {
            Ok((200, body)) => match serde_json::from_slice(&body) {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(node, "bad assignment list: {e}");
                    continue;
                }
            },
            other => {
                ctx.stats.poll_errors.fetch_add(1, Ordering::Relaxed);
                match other {
                    Ok((s, body)) => {
                        tracing::warn!(node, "assignments answered {s}: {}", lossy(&body))
                    }
                    Err(e) => tracing::debug!(node, "assignments: {e}"),
                }
                tokio::time::sleep(backoff.next_wait()).await;
                continue;
            }
        };
        backoff.reset();
        ctx.stats.polls.fetch_add(1, Ordering::Relaxed);
        etag = list.etag;
        // Forget ended tasks that are no longer assigned; a task cut off from the server keeps
        // running, as a real one would, and its late reports meet the fence.
        tasks.retain(|k, t| {
            list.assignments
                .iter()
                .any(|a| (a.job, a.task, a.fence) == *k)
                || !t.done.load(Ordering::SeqCst)
        });
        for a in list.assignments {
            let key = (a.job, a.task, a.fence);
            match a.action.as_str() {
                "run" if !tasks.contains_key(&key) => {
                    ctx.event(json!({"ev": "assigned", "node": node, "job": a.job,
                                     "fence": a.fence, "task": a.task, "at": now_ms()}));
                    let (tx, rx) = watch::channel(false);
                    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
                    tokio::spawn(sim_task(ctx.clone(), node, a, rx, done.clone()));
                    tasks.insert(
                        key,
                        SimTask {
                            stop: tx,
                            stop_sent: false,
                            done,
                        },
                    );
                }
                "stop" => match tasks.get_mut(&key) {
                    Some(t) if !t.stop_sent => {
                        t.stop.send_replace(true);
                        t.stop_sent = true;
                    }
                    Some(_) => {}
                    None => {
                        // Not running here: say it has ended, once.
                        let (tx, _) = watch::channel(true);
                        let done = Arc::new(std::sync::atomic::AtomicBool::new(true));
                        tasks.insert(
                            key,
                            SimTask {
                                stop: tx,
                                stop_sent: true,
                                done,
                            },
                        );
                        let ctx = ctx.clone();
                        tokio::spawn(async move {
                            report(&ctx, node, &a, Some(143)).await;
                        });
                    }
                },
                _ => {}
            }
        }
    }
}

/// The simulated run time and exit code of a command (see the command's help).
pub fn simulated_run(command: &[String]) -> (Duration, i64) {
    let words: Vec<&str> = command.iter().flat_map(|a| a.split_whitespace()).collect();
    let after = |w: &str| {
        words
            .windows(2)
            .find(|p| p[0] == w)
            .map(|p| p[1].trim_end_matches(';'))
    };
    let secs = after("sleep")
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .unwrap_or(0.0);
    let code = after("exit").and_then(|v| v.parse::<i64>().ok()).unwrap_or(
        if command.first().is_some_and(|c| c == "false") {
            1
        } else {
            0
        },
    );
    (Duration::from_secs_f64(secs.min(1e7)), code)
}

async fn sim_task(
    ctx: Arc<Ctx>,
    node: i64,
    a: Assignment,
    mut stop: watch::Receiver<bool>,
    done: Arc<std::sync::atomic::AtomicBool>,
) {
    let ids = json!({"node": node, "job": a.job, "fence": a.fence, "task": a.task});
    if !report(&ctx, node, &a, None).await {
        done.store(true, Ordering::SeqCst);
        return;
    }
    let mut ev = ids.clone();
    ev["ev"] = json!("start");
    ev["at"] = json!(now_ms());
    ctx.event(ev);
    ctx.stats.started.fetch_add(1, Ordering::Relaxed);
    ctx.stats.running.fetch_add(1, Ordering::Relaxed);
    let (run_for, code) = simulated_run(&a.command);
    let exit = tokio::select! {
        _ = tokio::time::sleep(run_for) => code,
        _ = stop.wait_for(|s| *s) => {
            ctx.stats.stopped.fetch_add(1, Ordering::Relaxed);
            143
        }
        _ = stopped(ctx.stop.clone()) => {
            // The swarm is going away: like the agent, leave it to the server to find the
            // node lost, rather than failing the job for our shutdown.
            ctx.stats.running.fetch_sub(1, Ordering::Relaxed);
            return;
        }
    };
    let ended = now_ms();
    ctx.stats.running.fetch_sub(1, Ordering::Relaxed);
    let accepted = report(&ctx, node, &a, Some(exit)).await;
    if accepted {
        ctx.stats.finished.fetch_add(1, Ordering::Relaxed);
    }
    let mut ev = ids;
    ev["ev"] = json!("end");
    ev["at"] = json!(ended);
    ev["exit"] = json!(exit);
    ev["accepted"] = json!(accepted);
    ctx.event(ev);
    done.store(true, Ordering::SeqCst);
}

/// Reports a start (`exit` None) or an exit; true when the server took it. A 4xx (409 for a
/// stale fence) is counted, written to the events file and not retried.
async fn report(ctx: &Ctx, node: i64, a: &Assignment, exit: Option<i64>) -> bool {
    let body = TaskReport {
        job: a.job,
        fence: a.fence,
        task: a.task,
        exit_code: exit,
    };
    let path = format!("/v1/agent/nodes/{node}/reports");
    match ctx
        .api
        .retrying::<_, serde_json::Value>(&ctx.stop, "POST", &path, Some(&body))
        .await
    {
        Ok(_) => true,
        Err(CallError::Status(status, text)) => {
            ctx.stats.refused.fetch_add(1, Ordering::Relaxed);
            tracing::info!(
                node,
                job = a.job,
                fence = a.fence,
                "report refused {status}: {text}"
            );
            ctx.event(json!({"ev": "refused", "node": node, "job": a.job, "fence": a.fence,
                             "task": a.task, "report": if exit.is_some() { "exit" } else { "start" },
                             "status": status, "at": now_ms()}));
            false
        }
        Err(CallError::Stopped) => false,
    }
}

const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug)]
pub(crate) enum CallError {
    /// A 4xx answer: the request itself is refused, so retrying cannot help. Status 0: no
    /// answer that retrying could change (a certificate not trusted).
    Status(u16, String),
    /// The swarm was stopped while retrying.
    Stopped,
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Status(0, t) => write!(f, "{t}"),
            CallError::Status(s, t) => write!(f, "answered {s}: {t}"),
            CallError::Stopped => write!(f, "stopped"),
        }
    }
}

/// The servers, through the one client and its connection pool.
pub(crate) struct Api {
    client: haneul_client::Client,
}

impl Api {
    /// `server`: one or more base URLs, comma-separated.
    pub(crate) fn connect(
        server: &str,
        token: String,
        ca_file: Option<PathBuf>,
    ) -> anyhow::Result<Api> {
        let client = haneul_client::Client::new(&haneul_client::Options {
            servers: server.to_string(),
            token,
            ca_file,
            // Each simulated node holds a long poll, as a machine of its own would.
            http1_only: true,
        })?;
        Ok(Api { client })
    }

    /// One request, any status, within [`REQUEST_TIMEOUT`].
    pub(crate) async fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
    ) -> Result<(u16, Vec<u8>), haneul_client::Error> {
        self.send_for(method, path, body, REQUEST_TIMEOUT).await
    }

    async fn send_for(
        &self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<(u16, Vec<u8>), haneul_client::Error> {
        let method = haneul_client::Method::from_bytes(method.as_bytes()).map_err(|e| {
            haneul_client::Error::Config {
                field: "method",
                message: e.to_string(),
            }
        })?;
        self.client
            .send(method, path, body.map(<[u8]>::to_vec), &[], Some(timeout))
            .await
    }

    /// Retries connection errors and 5xx answers with backoff (100 ms to 2 s, full jitter)
    /// until the swarm stops: a server being restarted or cut off comes back, and a report
    /// must not be lost. A submit carries one idempotency key over all its tries.
    pub(crate) async fn retrying<B: Serialize, T: DeserializeOwned>(
        &self,
        stop: &watch::Receiver<bool>,
        method: &str,
        path: &str,
        body: Option<&B>,
    ) -> Result<T, CallError> {
        let stopping = stop.clone();
        let retry = haneul_client::Retry::times(1)
            .forever()
            .with_backoff(haneul_client::Backoff::new(
                Duration::from_millis(100),
                Duration::from_secs(2),
            ))
            .until(move || *stopping.borrow());
        let key = haneul_client::idempotency_key();
        let headers: &[(&str, &str)] = if method == "POST" && path == "/v1/jobs" {
            &[(haneul_client::IDEMPOTENCY_HEADER, key.as_str())]
        } else {
            &[]
        };
        let raw = body.map(|b| serde_json::to_vec(b).expect("request bodies serialise"));
        let m = haneul_client::Method::from_bytes(method.as_bytes())
            .map_err(|e| CallError::Status(0, e.to_string()))?;
        loop {
            if *stop.borrow() {
                return Err(CallError::Stopped);
            }
            let answer = self
                .client
                .request_retrying(
                    m.clone(),
                    path,
                    raw.clone(),
                    headers,
                    Some(REQUEST_TIMEOUT),
                    &retry,
                )
                .await;
            match answer {
                Ok(a) => {
                    let text = if a.body.is_empty() {
                        b"null".as_slice()
                    } else {
                        &a.body
                    };
                    match serde_json::from_slice(text) {
                        Ok(v) => return Ok(v),
                        // As before: a garbled answer is retried like a lost one.
                        Err(e) => tracing::warn!("{method} {path}: bad answer: {e}"),
                    }
                }
                Err(haneul_client::Error::Status { status, body, .. }) if status < 500 => {
                    return Err(CallError::Status(status, body.chars().take(300).collect()));
                }
                Err(haneul_client::Error::Stopped { .. }) => return Err(CallError::Stopped),
                Err(e) => return Err(CallError::Status(0, e.to_string())),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).chars().take(300).collect()
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use super::simulated_run;
    use std::time::Duration;

    fn cmd(words: &[&str]) -> Vec<String> {
        words.iter().map(|w| w.to_string()).collect()
    }

    #[test]
    fn run_time_and_exit_code_come_from_the_command() {
        assert_eq!(
            simulated_run(&cmd(&["sleep", "2.5"])),
            (Duration::from_millis(2500), 0)
        );
        assert_eq!(
            simulated_run(&cmd(&["sh", "-c", "sleep 3; exit 7"])),
            (Duration::from_secs(3), 7)
        );
        assert_eq!(simulated_run(&cmd(&["false"])), (Duration::ZERO, 1));
        assert_eq!(
            simulated_run(&cmd(&["python", "train.py"])),
            (Duration::ZERO, 0)
        );
        assert_eq!(simulated_run(&cmd(&["sleep", "-1"])), (Duration::ZERO, 0));
    }
}
