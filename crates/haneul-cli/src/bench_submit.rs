//! `haneul bench submit`: the per-submit path as a researcher meets it. A real server (and,
//! unless `--nodes 0`, a swarm holding its nodes' long polls and heartbeats) takes submissions
//! two ways: from one client on a kept-alive connection, one at a time (what the server itself
//! adds to a lone submit), and from a shell loop that starts `haneul submit` once per job (what
//! a user's `for` loop gets: process start, config, connection, commit, answer). Beside the
//! loop, the same shell runs loops of `true` and `haneul --version`, so the cost of starting a
//! process and of the binary itself can be told from the submit's own.

use crate::bench_centre::{
    Tenants, memory_mib, percentile, print_figures, server_command_of, start_server, tenants,
};
use crate::swarm::{self, Api, SwarmConfig, SwarmStats};
use anyhow::{Context, bail};
use clap::Args;
use serde_json::{Value, json};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio::sync::watch;

#[derive(Args)]
#[command(after_help = "Examples:\n  \
    haneul bench submit                        # 1,250 x 8 H200 swarm, 2,000 submits each way\n  \
    haneul bench submit --nodes 0 --count 500 --json")]
pub struct SubmitBenchArgs {
    /// Submissions from the shell loop, and again from the lone client.
    #[arg(long, default_value_t = 2000)]
    count: usize,
    /// Simulated nodes holding long polls and heartbeating meanwhile (0: none).
    #[arg(long, default_value_t = 1250)]
    nodes: usize,
    /// GPUs of each node, COUNTxMODEL.
    #[arg(long, default_value = "8xH200")]
    gpus: String,
    /// A PostgreSQL URL for the server instead of SQLite in a scratch directory.
    #[arg(long)]
    database: Option<String>,
    /// Another `haneul` binary (an older build, say) to run as the server and as the loop's
    /// client instead of this one, so a change is measured against its baseline on the same
    /// machine at the same time.
    #[arg(long, value_name = "PATH")]
    baseline: Option<std::path::PathBuf>,
    /// Print one JSON object instead of lines for people.
    #[arg(long)]
    json: bool,
}

pub fn run(args: SubmitBenchArgs) -> anyhow::Result<()> {
    let inventory = haneul_agent::gpus::parse_simulated(&args.gpus)
        .map_err(|e| anyhow::anyhow!("--gpus: {e}"))?;
    if args.count == 0 {
        bail!("--count must be at least 1");
    }
    haneul_server::serve::raise_file_limit();
    let dir = crate::bench_centre::scratch_dir("submit")?;
    let exe = match &args.baseline {
        Some(path) => path.clone(),
        // The loop runs `haneul` as users do, not this `haneul-full` it handed over to.
        None => {
            let exe = std::env::current_exe().context("cannot find this binary")?;
            Some(exe.with_file_name("haneul"))
                .filter(|door| door.is_file())
                .unwrap_or(exe)
        }
    };
    let server_cmd = server_command_of(&exe, &dir, args.database.as_deref());
    let (server, addr) = start_server(server_cmd)?;
    let (admin, rt) = crate::bench_centre::admin_and_runtime(&dir)?;
    let result = rt.block_on(measure(
        &args,
        format!("http://{addr}"),
        admin,
        server.pid(),
        inventory,
        &dir,
        &exe,
    ));
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
    print_figures(&result?, args.json);
    Ok(())
}

/// CPU seconds (user and system) of this process's waited-for children, all of them.
fn children_cpu_seconds() -> f64 {
    // SAFETY: getrusage fills the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

/// Runs `body` `count` times in one `sh` loop, as a user's script would, and answers the
/// wall time and the CPU the shell and everything it started used.
async fn shell_loop(
    count: usize,
    body: &str,
    env: &[(&str, &Path)],
) -> anyhow::Result<(Duration, f64)> {
    let script =
        format!("i=0; while [ $i -lt {count} ]; do {body} > /dev/null || exit 1; i=$((i+1)); done");
    let mut cmd = std::process::Command::new("sh");
    cmd.arg("-c")
        .arg(&script)
        .stdin(std::process::Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let cpu0 = children_cpu_seconds();
    let started = Instant::now();
    let status = tokio::task::spawn_blocking(move || cmd.status())
        .await?
        .context("cannot start sh")?;
    let wall = started.elapsed();
    if !status.success() {
        bail!("the shell loop `{body}` failed: {status}");
    }
    Ok((wall, children_cpu_seconds() - cpu0))
}

async fn measure(
    args: &SubmitBenchArgs,
    url: String,
    admin: String,
    server_pid: u32,
    inventory: Vec<haneul_agent::gpus::Gpu>,
    dir: &Path,
    exe: &Path,
) -> anyhow::Result<Value> {
    let api = Arc::new(Api::connect(&url, admin, None)?);
    let Tenants {
        projects,
        user_token,
        agent_token,
    } = tenants(&api, &["loop"]).await?;
    let project = projects[0].as_i64().context("the project has no id")?;
    let stats = Arc::new(SwarmStats::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    let swarm = if args.nodes > 0 {
        let cfg = SwarmConfig::for_bench(&url, None, agent_token, args.nodes, &inventory);
        let swarm = tokio::spawn(swarm::run_swarm(cfg, stats.clone(), stop_rx));
        while stats.polls.load(Ordering::Relaxed) < args.nodes as u64 {
            if swarm.is_finished() {
                bail!("the swarm stopped while registering");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Some(swarm)
    } else {
        None
    };

    // The lone client: one connection kept alive, one submit at a time.
    let client = haneul_client::Client::new(&haneul_client::Options {
        servers: url.clone(),
        token: user_token.clone(),
        ..Default::default()
    })?;
    let job = json!({"project": project, "gpus_per_task": 1, "command": ["sleep", "60"]});
    let retry = haneul_client::Retry::never();
    client.submit(&job, &retry).await?;
    let mut lone = Vec::with_capacity(args.count);
    let cpu0 = crate::bench_gang::cpu_seconds(server_pid);
    for _ in 0..args.count {
        let sent = Instant::now();
        client.submit(&job, &retry).await?;
        lone.push(sent.elapsed().as_micros() as i64);
    }
    let server_cpu_per_submit_ms =
        (crate::bench_gang::cpu_seconds(server_pid) - cpu0) * 1000.0 / args.count as f64;
    lone.sort_unstable();

    // The shell loop, with the floor of starting a process and of starting this binary.
    let token_file = dir.join("user.token");
    std::fs::write(&token_file, &user_token)?;
    let config = dir.join("client.toml");
    crate::client::write_config(&config, &url, &token_file, Some(project), None)?;
    let env = [("HANEUL_CONFIG", config.as_path()), ("HANEUL", exe)];
    let floor = args.count.min(500);
    let (true_wall, _) = shell_loop(floor, "/bin/true", &env).await?;
    let (version_wall, version_cpu) = shell_loop(floor, "\"$HANEUL\" --version", &env).await?;
    let (submit_wall, submit_cpu) =
        shell_loop(args.count, "\"$HANEUL\" submit --gpus 1 -- sleep 60", &env).await?;
    let (_, hwm) = memory_mib(server_pid);
    stop_tx.send_replace(true);
    if let Some(swarm) = swarm {
        let _ = tokio::time::timeout(Duration::from_secs(10), swarm).await;
    }
    let per = |d: Duration, n: usize| d.as_secs_f64() * 1000.0 / n as f64;
    Ok(json!({
        "backend": if args.database.is_some() { "postgres" } else { "sqlite" },
        "binary": exe.display().to_string(),
        "nodes": args.nodes,
        "count": args.count,
        "lone_submit_p50_ms": percentile(&lone, 0.5) as f64 / 1000.0,
        "lone_submit_p90_ms": percentile(&lone, 0.9) as f64 / 1000.0,
        "lone_submit_p99_ms": percentile(&lone, 0.99) as f64 / 1000.0,
        "lone_submit_max_ms": percentile(&lone, 1.0) as f64 / 1000.0,
        "server_cpu_per_submit_ms": server_cpu_per_submit_ms,
        "loop_submits_per_s": args.count as f64 / submit_wall.as_secs_f64(),
        "loop_ms_per_submit": per(submit_wall, args.count),
        "loop_cpu_ms_per_submit": submit_cpu * 1000.0 / args.count as f64,
        "loop_true_ms": per(true_wall, floor),
        "loop_version_ms": per(version_wall, floor),
        "loop_version_cpu_ms": version_cpu * 1000.0 / floor as f64,
        "server_peak_rss_mib": hwm,
    }))
}
