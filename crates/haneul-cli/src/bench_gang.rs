//! `haneul bench gang`: one gang across the whole fleet, started through a real server and a
//! swarm of simulated nodes, timed stage by stage from the server's records and the swarm's
//! events: the submit's answer, the allocation (the attempt's creation), each node's long poll
//! bringing its task, and each task's start report taken by the server. Where the time between
//! the allocation and the last start goes is what the stages show.

use crate::bench_centre::{
    Tenants, bench_server_command, get, memory_mib, must, percentile, print_figures, start_server,
    tenants,
};
use crate::swarm::{self, Api, SwarmConfig, SwarmStats};
use anyhow::{Context, bail};
use clap::Args;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio::sync::watch;

#[derive(Args)]
#[command(after_help = "Examples:\n  \
    haneul bench gang                          # 1,250 x 8 H200: one 10,000-GPU gang\n  \
    haneul bench gang --nodes 64 --json")]
pub struct GangArgs {
    /// Simulated nodes; the gang takes every GPU of every one.
    #[arg(long, default_value_t = 1250)]
    nodes: usize,
    /// GPUs of each node, COUNTxMODEL.
    #[arg(long, default_value = "8xH200")]
    gpus: String,
    /// A PostgreSQL URL for the server instead of SQLite in a scratch directory.
    #[arg(long)]
    database: Option<String>,
    /// Print one JSON object instead of lines for people.
    #[arg(long)]
    json: bool,
}

pub fn run(args: GangArgs) -> anyhow::Result<()> {
    let inventory = haneul_agent::gpus::parse_simulated(&args.gpus)
        .map_err(|e| anyhow::anyhow!("--gpus: {e}"))?;
    if args.nodes == 0 {
        bail!("--nodes must be at least 1");
    }
    haneul_server::serve::raise_file_limit();
    let dir = crate::bench_centre::scratch_dir("gang")?;
    let (server, addr) = start_server(bench_server_command(&dir, args.database.as_deref())?)?;
    let (admin, rt) = crate::bench_centre::admin_and_runtime(&dir)?;
    let result = rt.block_on(measure(
        &args,
        format!("http://{addr}"),
        admin,
        server.pid(),
        inventory,
        &dir,
    ));
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
    print_figures(&result?, args.json);
    Ok(())
}

/// CPU seconds a process has used (user and system), from /proc.
pub(crate) fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    (ticks(11) + ticks(12)) / hz
}

async fn measure(
    args: &GangArgs,
    url: String,
    admin: String,
    server_pid: u32,
    inventory: Vec<haneul_agent::gpus::Gpu>,
    dir: &std::path::Path,
) -> anyhow::Result<Value> {
    let api = Arc::new(Api::connect(&url, admin, None)?);
    let Tenants {
        projects,
        user_token,
        agent_token,
    } = tenants(&api, &["gang"]).await?;
    let events = dir.join("events.jsonl");
    let stats = Arc::new(SwarmStats::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    let cfg = SwarmConfig {
        events: Some(events.clone()),
        ..SwarmConfig::for_bench(&url, None, agent_token, args.nodes, &inventory)
    };
    let swarm = tokio::spawn(swarm::run_swarm(cfg, stats.clone(), stop_rx));
    while stats.registered.load(Ordering::Relaxed) < args.nodes as u64 {
        if swarm.is_finished() {
            bail!("the swarm stopped while registering");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Every node's long poll held, and the controller has the fleet, before the gang comes.
    while stats.polls.load(Ordering::Relaxed) < args.nodes as u64 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;

    let user = Api::connect(&url, user_token, None)?;
    let body = json!({"project": projects[0], "name": "gang", "replicas": args.nodes,
                      "gpus_per_task": inventory.len(), "command": ["sleep", "3600"]});
    let cpu0 = cpu_seconds(server_pid);
    let sent = Instant::now();
    let job = must(&user, "/v1/jobs", body).await?;
    let ack_ms = sent.elapsed().as_secs_f64() * 1000.0;
    let id = job["id"].as_i64().context("the submit answered no id")?;
    let deadline = Instant::now() + Duration::from_secs(300);
    while stats.started.load(Ordering::Relaxed) < args.nodes as u64 {
        if Instant::now() > deadline {
            bail!(
                "only {} of {} tasks started within 5 minutes",
                stats.started.load(Ordering::Relaxed),
                args.nodes
            );
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let wall_ms = sent.elapsed().as_secs_f64() * 1000.0;
    let cpu_s = cpu_seconds(server_pid) - cpu0;
    let v = get(&api, &format!("/v1/jobs/{id}")).await?;
    let stop = stop_the_gang(&user, &projects[0], id, &stats, args.nodes as u64).await?;
    let (_, hwm) = memory_mib(server_pid);
    stop_tx.send_replace(true);
    let _ = tokio::time::timeout(Duration::from_secs(10), swarm).await;

    let submitted = v["job"]["submitted_at"].as_i64().unwrap_or(0);
    let created = v["attempts"][0]["created_at"].as_i64().unwrap_or(0);
    let started = v["attempts"][0]["started_at"].as_i64().unwrap_or(0);
    // The swarm's clock is this machine's, as the server's is: both in ms since the epoch.
    let mut delivered = Vec::new();
    let mut reported = Vec::new();
    for line in std::fs::read_to_string(&events)?.lines() {
        let ev: Value = serde_json::from_str(line)?;
        if ev["job"].as_i64() != Some(id) {
            continue;
        }
        let at = ev["at"].as_i64().unwrap_or(0) - created;
        match ev["ev"].as_str() {
            Some("assigned") => delivered.push(at),
            Some("start") => reported.push(at),
            _ => {}
        }
    }
    delivered.sort_unstable();
    reported.sort_unstable();
    Ok(json!({
        "backend": if args.database.is_some() { "postgres" } else { "sqlite" },
        "nodes": args.nodes,
        "gpus": args.nodes * inventory.len(),
        "submit_ack_ms": ack_ms,
        "allocation_ms": created - submitted,
        "first_task_running_at_server_ms": started - created,
        "delivered_first_ms": percentile(&delivered, 0.0),
        "delivered_p50_ms": percentile(&delivered, 0.5),
        "delivered_last_ms": percentile(&delivered, 1.0),
        "start_reported_first_ms": percentile(&reported, 0.0),
        "start_reported_p50_ms": percentile(&reported, 0.5),
        "start_reported_last_ms": percentile(&reported, 1.0),
        "submit_to_all_started_ms": wall_ms,
        "server_cpu_s": cpu_s,
        "cancel_to_gang_ended_ms": stop.ended_ms,
        "submits_while_stopping": stop.during.len(),
        "submit_while_stopping_p50_ms": percentile(&stop.during, 0.5),
        "submit_while_stopping_max_ms": percentile(&stop.during, 1.0),
        "first_submit_after_end_ms": stop.after.first(),
        "submits_after_end_max_ms": stop.after.iter().copied().max(),
        "server_peak_rss_mib": hwm,
    }))
}

/// Submit times (ms, whole: as `percentile` takes them) around the end of the gang.
struct GangStop {
    /// From the cancel's answer to the gang's attempt ending (its last stop report taken).
    ended_ms: i64,
    /// One-GPU submits sent one after another from the cancel until the gang ended: they
    /// queue behind the gang's 1,250 stop reports on the store's writer.
    during: Vec<i64>,
    /// Five more right after it ended, the first of them as a user would send it then.
    after: Vec<i64>,
}

/// Cancels the gang and submits one-GPU jobs one after another, each timed, until the
/// gang's attempt has ended (the server took every node's stop report) and five more after
/// that.
async fn stop_the_gang(
    user: &Api,
    project: &Value,
    id: i64,
    stats: &SwarmStats,
    nodes: u64,
) -> anyhow::Result<GangStop> {
    let submit = || async {
        let body = json!({"project": project, "name": "after-gang", "gpus_per_task": 1,
                          "command": ["sleep", "3600"]});
        let sent = Instant::now();
        must(user, "/v1/jobs", body).await?;
        anyhow::Ok(sent.elapsed().as_millis() as i64)
    };
    must(user, &format!("/v1/jobs/{id}/cancel"), json!({})).await?;
    let cancelled = Instant::now();
    let mut during = Vec::new();
    let deadline = cancelled + Duration::from_secs(120);
    // The job's own record would carry its 1,250-task placement at every look: the swarm's
    // count of exits the server took is free.
    while stats.finished.load(Ordering::Relaxed) < nodes {
        if Instant::now() > deadline {
            bail!("the gang did not end within 2 minutes of its cancel");
        }
        during.push(submit().await?);
    }
    let ended_ms = cancelled.elapsed().as_millis() as i64;
    let mut after = Vec::with_capacity(5);
    for _ in 0..5 {
        after.push(submit().await?);
    }
    during.sort_unstable();
    Ok(GangStop {
        ended_ms,
        during,
        after,
    })
}
