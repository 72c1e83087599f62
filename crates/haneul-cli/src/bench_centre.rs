//! `haneul bench centre`: the scale run of a whole centre on one machine. A real `haneul server`
//! process (this binary), a swarm of simulated nodes in this process, a deep queue of backlog
//! jobs and a steady stream of submissions from a second project. Fair share puts the stream's
//! jobs first whenever a GPU frees, so their submission-to-start time measures the control
//! plane (commit, scheduling pass, assignment, the agent's pickup and start report) at full
//! scale rather than the backlog's length.

use crate::swarm::{self, Api, SwarmConfig, SwarmStats};
use anyhow::{Context, bail};
use clap::Args;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio::sync::watch;

#[derive(Args)]
#[command(after_help = "Examples:\n  \
    haneul bench centre                                   # 1,250 x 8 H200, 100,000 queued, 60 s\n  \
    haneul bench centre --nodes 16 --queued 500 --seconds 3 --json")]
pub struct CentreArgs {
    /// Simulated nodes.
    #[arg(long, default_value_t = 1250)]
    nodes: usize,
    /// GPUs of each node, COUNTxMODEL.
    #[arg(long, default_value = "8xH200")]
    gpus: String,
    /// Backlog jobs (one GPU each) submitted before the measured phase.
    #[arg(long, default_value_t = 100_000)]
    queued: usize,
    /// Simulated run time of backlog jobs: uniform in MIN..MAX seconds.
    #[arg(long, default_value = "10..200")]
    backlog_runtime: String,
    /// Length of the measured phase in seconds.
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// Stream submissions per second during the measured phase (one GPU, `sleep 30` each).
    #[arg(long, default_value_t = 20)]
    rate: u32,
    /// A PostgreSQL URL for the server instead of SQLite in a scratch directory.
    #[arg(long)]
    database: Option<String>,
    /// Run the whole measurement twice in this invocation, over plain HTTP and then over TLS
    /// (a fresh local CA and server certificate, as `haneul up --tls` makes), and report both
    /// and the ratios of the headline figures.
    #[arg(long)]
    tls: bool,
    /// Print one JSON object instead of lines for people.
    #[arg(long)]
    json: bool,
}

/// Where the bench's clients reach the server: its base URL, and the CA to trust over TLS.
struct Target {
    url: String,
    ca_file: Option<std::path::PathBuf>,
}

/// The server child, and the server's own process (not the same under
/// `HANEUL_BENCH_SERVER_WRAPPER`): the server is stopped and the child waited for when dropped.
pub(crate) struct ServerProc {
    child: Child,
    server: u32,
}

impl ServerProc {
    /// The server's process id (for its memory), the wrapper's child when wrapped.
    pub(crate) fn pid(&self) -> u32 {
        self.server
    }
}

/// Starts the `haneul server` that `cmd` describes (its stdout is read here), with a
/// parent-death signal so that an interrupted bench leaves no server running, and waits until
/// it says where it listens.
pub(crate) fn start_server(mut cmd: Command) -> anyhow::Result<(ServerProc, std::net::SocketAddr)> {
    cmd.stdout(Stdio::piped());
    // A group of its own, so that a server under a wrapper can be told from the wrapper's
    // other processes (a profiler's helpers) and stopped alone.
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    crate::up::die_with_parent(&mut cmd);
    let mut child = cmd.spawn().context("cannot start haneul server")?;
    let stdout = child.stdout.take().expect("piped");
    let id = child.id();
    let mut server = ServerProc { child, server: id };
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let rest = line
                .split("listening on http://")
                .nth(1)
                .or_else(|| line.split("listening on https://").nth(1));
            if let Some(rest) = rest {
                let _ = tx.send(rest.split_whitespace().next().unwrap_or("").to_string());
            }
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(60))
        .context("the server did not say where it listens")?
        .parse()?;
    if !runs_server(id) {
        server.server =
            wrapped_server(id).context("the wrapper's process group holds no `server` process")?;
    }
    Ok((server, addr))
}

/// Whether process `pid` runs `<binary> server ...`.
fn runs_server(pid: u32) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .is_ok_and(|c| c.split(|&b| b == 0).nth(1) == Some(b"server".as_slice()))
}

/// The process of group `group` (a wrapper's) that runs the server.
fn wrapped_server(group: u32) -> Option<u32> {
    let mut found: Vec<u32> = std::fs::read_dir("/proc")
        .ok()?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != group && process_group(pid) == Some(group) && runs_server(pid))
        .collect();
    found.sort_unstable();
    found.first().copied()
}

/// A process's group, from /proc/PID/stat (the fifth field, after the command in parentheses).
fn process_group(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(2)?.parse().ok()
}

impl Drop for ServerProc {
    fn drop(&mut self) {
        // SIGTERM to the server alone: a wrapper (a profiler) ends when it does, after writing
        // what it gathered, which a signal to the wrapper itself would cut short.
        // SAFETY: kill(2) on a process this bench started, directly or through its wrapper.
        unsafe { libc::kill(self.server as libc::pid_t, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

/// Resident and peak resident memory of a process, in MiB, from /proc.
pub(crate) fn memory_mib(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
            .map_or(0.0, |kib| kib / 1024.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

pub(crate) fn percentile(sorted: &[i64], p: f64) -> i64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

pub fn run(args: CentreArgs) -> anyhow::Result<()> {
    let inventory = haneul_agent::gpus::parse_simulated(&args.gpus)
        .map_err(|e| anyhow::anyhow!("--gpus: {e}"))?;
    let (lo, hi) = args
        .backlog_runtime
        .split_once("..")
        .and_then(|(a, b)| Some((a.trim().parse::<u64>().ok()?, b.trim().parse::<u64>().ok()?)))
        .filter(|(a, b)| a <= b)
        .ok_or_else(|| {
            anyhow::anyhow!("--backlog-runtime: expected MIN..MAX seconds, e.g. 10..200")
        })?;
    if args.nodes == 0 || args.rate == 0 || args.seconds == 0 {
        bail!("--nodes, --rate and --seconds must be at least 1");
    }
    haneul_server::serve::raise_file_limit();
    let out = if args.tls {
        let plain = one_run(&args, &inventory, (lo, hi), false)?;
        let tls = one_run(&args, &inventory, (lo, hi), true)?;
        let ratio = |k: &str| {
            let (a, b) = (
                plain[k].as_f64().unwrap_or(0.0),
                tls[k].as_f64().unwrap_or(0.0),
            );
            if a > 0.0 { json!(b / a) } else { Value::Null }
        };
        let mut ratios = serde_json::Map::new();
        for k in [
            "register_s",
            "backlog_submissions_per_s",
            "submit_ack_p50_ms",
            "submit_ack_p99_ms",
            "submit_to_start_p50_ms",
            "submit_to_start_p99_ms",
            "attempts_started_per_s",
            "heartbeats_per_s",
            "server_peak_rss_mib",
        ] {
            ratios.insert(k.to_string(), ratio(k));
        }
        json!({"plain": plain, "tls": tls, "tls_over_plain": ratios})
    } else {
        one_run(&args, &inventory, (lo, hi), false)?
    };
    if args.tls && !args.json {
        for part in ["plain", "tls", "tls_over_plain"] {
            println!("[{part}]");
            for (k, v) in out[part].as_object().expect("an object") {
                println!("{k:32} {v}");
            }
        }
    } else {
        print_figures(&out, args.json);
    }
    Ok(())
}

/// A bench's figures: one JSON object, or a line per figure for people.
pub(crate) fn print_figures(out: &Value, json: bool) {
    if json {
        println!("{out}");
    } else if let Some(figures) = out.as_object() {
        for (k, v) in figures {
            println!("{k:34} {v}");
        }
    }
}

/// One measurement against a fresh server, over TLS or plain HTTP.
fn one_run(
    args: &CentreArgs,
    inventory: &[haneul_agent::gpus::Gpu],
    (lo, hi): (u64, u64),
    tls: bool,
) -> anyhow::Result<Value> {
    let dir = std::env::temp_dir().join(format!(
        "haneul-centre-{}-{}",
        std::process::id(),
        if tls { "tls" } else { "plain" }
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).context("cannot create the scratch directory")?;
    // The backlog is 100,000 submits from one token, far past the default write rate.
    let mut cmd = bench_server_command(&dir, args.database.as_deref())?;
    let ca_file = if tls {
        let ca = haneul_server::tls::local_ca(&dir.join("tls"))?;
        cmd.arg("--tls-cert")
            .arg(&ca.server.cert)
            .arg("--tls-key")
            .arg(&ca.server.key);
        Some(ca.ca_cert)
    } else {
        None
    };
    let (server, addr) = start_server(cmd)?;
    let target = Target {
        url: format!("{}://{addr}", if tls { "https" } else { "http" }),
        ca_file,
    };
    let (admin, rt) = admin_and_runtime(&dir)?;
    let result = rt.block_on(measure(
        args,
        &target,
        admin,
        server.pid(),
        inventory.to_vec(),
        (lo, hi),
    ));
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
    let mut out = result?;
    out["transport"] = json!(if tls { "https" } else { "http" });
    Ok(out)
}

/// What a bench run makes in a fresh server: one organisation, `projects`, a member of them
/// all with a token, and an agent account with a token for the swarm.
pub(crate) struct Tenants {
    pub projects: Vec<Value>,
    pub user_token: String,
    pub agent_token: String,
}

pub(crate) async fn tenants(api: &Api, projects: &[&str]) -> anyhow::Result<Tenants> {
    let org = must(api, "/v1/orgs", json!({"name": "bench", "country": "KR"})).await?["id"].clone();
    let mut ids = Vec::new();
    for name in projects {
        ids.push(must(api, "/v1/projects", json!({"org": org, "name": name})).await?["id"].clone());
    }
    let user = must(
        api,
        "/v1/users",
        json!({"name": "bench", "role": "member", "org": org, "projects": ids}),
    )
    .await?["id"]
        .clone();
    let secret = |v: Value| v["secret"].as_str().unwrap_or_default().to_string();
    let user_token = secret(must(api, "/v1/tokens", json!({"user": user})).await?);
    let agents =
        must(api, "/v1/users", json!({"name": "swarm", "role": "agent"})).await?["id"].clone();
    let agent_token = secret(must(api, "/v1/tokens", json!({"user": agents})).await?);
    Ok(Tenants {
        projects: ids,
        user_token,
        agent_token,
    })
}

/// A fresh scratch directory for one bench run, `haneul-KIND-PID` under the temporary directory.
pub(crate) fn scratch_dir(kind: &str) -> anyhow::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("haneul-{kind}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).context("cannot create the scratch directory")?;
    Ok(dir)
}

/// The admin token a fresh bench server wrote into `dir`, and a runtime for the bench's clients.
pub(crate) fn admin_and_runtime(
    dir: &std::path::Path,
) -> anyhow::Result<(String, tokio::runtime::Runtime)> {
    let admin = std::fs::read_to_string(dir.join("admin.token"))
        .context("no admin token: use a fresh --database")?
        .trim()
        .to_string();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    Ok((admin, rt))
}

/// A `haneul server` for a bench in the scratch directory `dir` (SQLite there, or `database`),
/// on a free loopback port, with no write rate limit (a bench submits far past it).
pub(crate) fn bench_server_command(
    dir: &std::path::Path,
    database: Option<&str>,
) -> anyhow::Result<Command> {
    let exe = std::env::current_exe().context("cannot find this binary")?;
    Ok(server_command_of(&exe, dir, database))
}

/// [`bench_server_command`] run from the binary `exe` (a baseline build, say).
pub(crate) fn server_command_of(
    exe: &std::path::Path,
    dir: &std::path::Path,
    database: Option<&str>,
) -> Command {
    // A profiler for the server alone (`HANEUL_BENCH_SERVER_WRAPPER="perf record -g -o FILE"`):
    // the swarm and clients in this process would drown its figures.
    let wrapper = std::env::var("HANEUL_BENCH_SERVER_WRAPPER").unwrap_or_default();
    let mut words = wrapper.split_whitespace();
    let mut cmd = match words.next() {
        Some(program) => {
            let mut cmd = Command::new(program);
            cmd.args(words).arg(exe);
            cmd
        }
        None => Command::new(exe),
    };
    cmd.args([
        "server",
        "--listen",
        "127.0.0.1:0",
        "--node-timeout",
        "120",
        "--write-rate",
        "0",
    ])
    .arg("--data-dir")
    .arg(dir)
    .env("RUST_LOG", "warn")
    .stdout(Stdio::piped())
    .stderr(Stdio::inherit());
    if let Some(url) = database {
        cmd.arg("--database").arg(url);
    }
    cmd
}

pub(crate) async fn must(api: &Api, path: &str, body: Value) -> anyhow::Result<Value> {
    let (_, stop) = watch::channel(false);
    api.retrying(&stop, "POST", path, Some(&body))
        .await
        .map_err(|e| anyhow::anyhow!("POST {path}: {e}"))
}

pub(crate) async fn get(api: &Api, path: &str) -> anyhow::Result<Value> {
    let (_, stop) = watch::channel(false);
    api.retrying::<(), _>(&stop, "GET", path, None)
        .await
        .map_err(|e| anyhow::anyhow!("GET {path}: {e}"))
}

async fn measure(
    args: &CentreArgs,
    target: &Target,
    admin: String,
    server_pid: u32,
    inventory: Vec<haneul_agent::gpus::Gpu>,
    (lo, hi): (u64, u64),
) -> anyhow::Result<Value> {
    let url = target.url.clone();
    let api = Arc::new(Api::connect(&url, admin.clone(), target.ca_file.clone())?);
    let tenants = tenants(&api, &["backlog", "stream"]).await?;
    let (backlog, stream) = (tenants.projects[0].clone(), tenants.projects[1].clone());
    let (user_token, agent_token) = (tenants.user_token, tenants.agent_token);

    // The swarm, in this process.
    let stats = Arc::new(SwarmStats::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    let cfg = SwarmConfig::for_bench(
        &url,
        target.ca_file.clone(),
        agent_token,
        args.nodes,
        &inventory,
    );
    let swarm = tokio::spawn(swarm::run_swarm(cfg, stats.clone(), stop_rx));
    let t0 = Instant::now();
    while stats.registered.load(Ordering::Relaxed) < args.nodes as u64 {
        if swarm.is_finished() {
            bail!("the swarm stopped while registering");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let register_s = t0.elapsed().as_secs_f64();
    // Let the controller take the fleet in before jobs arrive (a job no node fits fails).
    tokio::time::sleep(Duration::from_secs(2)).await;

    // The backlog, from 16 connections.
    let user_api = Arc::new(Api::connect(&url, user_token, target.ca_file.clone())?);
    let t0 = Instant::now();
    let mut subs = Vec::new();
    for w in 0..16usize {
        let (api, backlog) = (user_api.clone(), backlog.clone());
        let mine = (w..args.queued).step_by(16).count();
        subs.push(tokio::spawn(async move {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(42 + w as u64);
            for _ in 0..mine {
                let secs = rng.random_range(lo..=hi);
                let body = json!({"project": backlog, "gpus_per_task": 1,
                                  "command": ["sleep", secs.to_string()]});
                must(&api, "/v1/jobs", body).await?;
            }
            anyhow::Ok(())
        }));
    }
    for s in subs {
        s.await??;
    }
    let prefill_s = t0.elapsed().as_secs_f64();

    // The server's gauges are refreshed every 2 s; let them catch up with the backlog.
    tokio::time::sleep(Duration::from_millis(2500)).await;

    // The measured phase: a steady stream from the second project.
    let metrics_before = scrape(target).await;
    let beats0 = stats.heartbeats.load(Ordering::Relaxed);
    let beat_errors0 = stats.heartbeat_errors.load(Ordering::Relaxed);
    let started0 = stats.started.load(Ordering::Relaxed);
    let t0 = Instant::now();
    let gap = Duration::from_secs_f64(1.0 / args.rate as f64);
    let total = args.rate as u64 * args.seconds;
    let mut tick = tokio::time::interval(gap);
    let mut pending = Vec::new();
    let mut rss_max: f64 = 0.0;
    let mut last_sample = Instant::now();
    for _ in 0..total {
        tick.tick().await;
        let (api, stream) = (user_api.clone(), stream.clone());
        pending.push(tokio::spawn(async move {
            let body = json!({"project": stream, "gpus_per_task": 1, "command": ["sleep", "30"]});
            let sent = Instant::now();
            let v = must(&api, "/v1/jobs", body).await?;
            anyhow::Ok((v["id"].as_i64().unwrap_or(0), sent.elapsed()))
        }));
        if last_sample.elapsed() >= Duration::from_secs(1) {
            rss_max = rss_max.max(memory_mib(server_pid).0);
            last_sample = Instant::now();
        }
    }
    let mut ids = Vec::new();
    let mut ack_ms = Vec::new();
    for p in pending {
        let (id, took) = p.await??;
        ids.push(id);
        ack_ms.push(took.as_micros() as i64);
    }
    let phase_s = t0.elapsed().as_secs_f64();
    let beats = stats.heartbeats.load(Ordering::Relaxed) - beats0;
    let beat_errors = stats.heartbeat_errors.load(Ordering::Relaxed) - beat_errors0;
    let started_in_phase = stats.started.load(Ordering::Relaxed) - started0;
    let (rss, hwm) = memory_mib(server_pid);
    rss_max = rss_max.max(rss);
    let metrics_after = scrape(target).await;

    // Every stream job's submission, assignment and start, from the server's own records.
    let mut to_assign = Vec::new();
    let mut to_start = Vec::new();
    let mut unstarted = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    for &id in &ids {
        loop {
            let v = get(&api, &format!("/v1/jobs/{id}")).await?;
            let submitted = v["job"]["submitted_at"].as_i64().unwrap_or(0);
            let first = &v["attempts"][0];
            if let (Some(created), Some(started)) =
                (first["created_at"].as_i64(), first["started_at"].as_i64())
            {
                to_assign.push(created - submitted);
                to_start.push(started - submitted);
                break;
            }
            if Instant::now() > deadline {
                unstarted += 1;
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    to_assign.sort_unstable();
    to_start.sort_unstable();
    ack_ms.sort_unstable();
    stop_tx.send_replace(true);
    let _ = tokio::time::timeout(Duration::from_secs(10), swarm).await;

    let delta = |name: &str| metric(&metrics_after, name) - metric(&metrics_before, name);
    let passes = delta("haneul_schedule_pass_seconds_count");
    let queued_at_start = sum_metric(&metrics_before, "haneul_queue_length{");
    Ok(json!({
        "backend": if args.database.is_some() { "postgres" } else { "sqlite" },
        "nodes": args.nodes,
        "gpus": args.nodes * inventory.len(),
        "register_s": register_s,
        "backlog_jobs": args.queued,
        "backlog_submit_s": prefill_s,
        "backlog_submissions_per_s": args.queued as f64 / prefill_s,
        "queued_at_phase_start": queued_at_start,
        "phase_s": phase_s,
        "stream_jobs": ids.len(),
        "stream_unstarted_after_60s": unstarted,
        "submit_ack_p50_ms": percentile(&ack_ms, 0.5) as f64 / 1000.0,
        "submit_ack_p99_ms": percentile(&ack_ms, 0.99) as f64 / 1000.0,
        "submit_to_assign_p50_ms": percentile(&to_assign, 0.5),
        "submit_to_assign_p99_ms": percentile(&to_assign, 0.99),
        "submit_to_start_p50_ms": percentile(&to_start, 0.5),
        "submit_to_start_p99_ms": percentile(&to_start, 0.99),
        "submit_to_start_max_ms": percentile(&to_start, 1.0),
        "attempts_started_per_s": started_in_phase as f64 / phase_s,
        "heartbeats_per_s": beats as f64 / phase_s,
        "heartbeats_wanted_per_s": args.nodes as f64 / 5.0,
        "heartbeat_errors": beat_errors,
        "schedule_passes_per_s": passes / phase_s,
        "schedule_pass_mean_ms": 1000.0 * delta("haneul_schedule_pass_seconds_sum") / passes.max(1.0),
        "server_rss_mib": rss,
        "server_rss_max_mib": rss_max,
        "server_peak_rss_mib": hwm,
    }))
}

async fn scrape(target: &Target) -> String {
    let Ok(api) = Api::connect(&target.url, String::new(), target.ca_file.clone()) else {
        return String::new();
    };
    match api.send("GET", "/metrics", None).await {
        Ok((200, body)) => String::from_utf8_lossy(&body).into_owned(),
        _ => String::new(),
    }
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.split_whitespace().last()?.parse().ok())
        .unwrap_or(0.0)
}

fn sum_metric(text: &str, prefix: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.split_whitespace().last()?.parse::<f64>().ok())
        .sum()
}
