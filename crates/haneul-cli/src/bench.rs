//! `haneul bench`: engine benchmarks that print figures, for people or (with `--json`) scripts.

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use haneul_sched::PlacementStrategy;
use haneul_sim::openb;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Replay an Alibaba openb pod list by the FGD paper's method and report GPU allocation.
    Openb(OpenbArgs),
    /// Time a full scheduling pass over a large fleet and queue, and an incremental one.
    Engine(crate::bench_engine::EngineArgs),
    /// A whole centre on this machine: a real server process, a swarm of simulated nodes, a
    /// deep queue and a steady stream of submissions; reports submission-to-start latency.
    Centre(crate::bench_centre::CentreArgs),
    /// Time from the server's start decision to the task's process start through a real agent.
    Agent(crate::bench_agent::AgentBenchArgs),
    /// Slow-header attack: half-open connections held against a real server while simulated
    /// nodes heartbeat; reports /healthz latency and the heartbeat rate.
    HalfOpen(crate::bench_halfopen::HalfOpenArgs),
}

#[derive(Args)]
pub struct OpenbArgs {
    /// Pod list CSV, e.g. ../shared/traces/alibaba-gpu-v2023-openb/csv/openb_pod_list_default.csv
    #[arg(long)]
    pods: PathBuf,
    /// Node list CSV; defaults to openb_node_list_gpu_node.csv beside the pod list.
    #[arg(long)]
    nodes: Option<PathBuf>,
    /// Seeds as a range `A..B` (inclusive) or a comma-separated list.
    #[arg(long, default_value = "42..51")]
    seeds: String,
    /// Placement strategy: fragmentation, best-fit or first-fit.
    #[arg(long, default_value = "fragmentation")]
    placement: String,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

pub fn run(cmd: BenchCommand) -> anyhow::Result<()> {
    match cmd {
        BenchCommand::Openb(args) => openb_bench(args),
        BenchCommand::Engine(args) => crate::bench_engine::run(args),
        BenchCommand::Centre(args) => crate::bench_centre::run(args),
        BenchCommand::Agent(args) => crate::bench_agent::run(args),
        BenchCommand::HalfOpen(args) => crate::bench_halfopen::run(args),
    }
}

/// Parses `42..51` (inclusive) or `1,2,3`.
pub fn parse_seeds(s: &str) -> anyhow::Result<Vec<u64>> {
    if let Some((a, b)) = s.split_once("..") {
        let a: u64 = a
            .trim()
            .parse()
            .context("--seeds: start of range is not a number")?;
        let b: u64 = b
            .trim()
            .trim_start_matches('=')
            .parse()
            .context("--seeds: end of range is not a number")?;
        if b < a {
            bail!("--seeds: the range {a}..{b} is empty; write it as low..high");
        }
        return Ok((a..=b).collect());
    }
    s.split(',')
        .map(|x| {
            x.trim()
                .parse()
                .with_context(|| format!("--seeds: `{x}` is not a number"))
        })
        .collect()
}

pub fn parse_placement(s: &str) -> anyhow::Result<PlacementStrategy> {
    Ok(match s {
        "fragmentation" | "fgd" => PlacementStrategy::Fragmentation,
        "best-fit" => PlacementStrategy::BestFit,
        "first-fit" => PlacementStrategy::FirstFit,
        other => bail!(
            "--placement: unknown strategy `{other}`; use fragmentation, best-fit or first-fit"
        ),
    })
}

#[derive(Serialize)]
struct OpenbReport {
    pod_list: String,
    nodes: usize,
    gpus: u64,
    placement: String,
    seeds: Vec<u64>,
    allocation_pct_at_100: f64,
    allocation_pct_at_130: f64,
    per_seed_at_100: Vec<f64>,
    per_seed_at_130: Vec<f64>,
    fgd_published_at_100: Option<f64>,
    fgd_published_at_130: Option<f64>,
    wall_s: f64,
}

fn openb_bench(args: OpenbArgs) -> anyhow::Result<()> {
    let seeds = parse_seeds(&args.seeds)?;
    let placement = parse_placement(&args.placement)?;
    let nodes_path = match &args.nodes {
        Some(p) => p.clone(),
        None => args
            .pods
            .parent()
            .unwrap_or(Path::new("."))
            .join("openb_node_list_gpu_node.csv"),
    };
    let nodes = openb::load_nodes(&nodes_path)?;
    let pods = openb::load_pods(&args.pods)?;
    let pod_list = args
        .pods
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let started = Instant::now();
    let mut at100 = Vec::new();
    let mut at130 = Vec::new();
    for &seed in &seeds {
        let r = openb::replay(&nodes, &pods, seed, 130, openb::replay_policy(placement))?;
        at100.push(r.allocation_at[100]);
        at130.push(r.allocation_at[130]);
        if !args.json {
            eprintln!(
                "seed {seed}: {} pods, {} placed, allocation {:.2}% at 100% arrived, {:.2}% at 130%",
                r.pods, r.placed, r.allocation_at[100], r.allocation_at[130]
            );
        }
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    let results_csv = args
        .pods
        .parent()
        .unwrap_or(Path::new("."))
        .join("../fgd_expected_results/analysis_allo_discrete.csv");
    let report = OpenbReport {
        pod_list: pod_list.clone(),
        nodes: nodes.len(),
        gpus: nodes.iter().map(|n| n.gpus as u64).sum(),
        placement: args.placement.clone(),
        allocation_pct_at_100: mean(&at100),
        allocation_pct_at_130: mean(&at130),
        per_seed_at_100: at100,
        per_seed_at_130: at130,
        fgd_published_at_100: openb::published_fgd(&results_csv, &pod_list, 100),
        fgd_published_at_130: openb::published_fgd(&results_csv, &pod_list, 130),
        seeds,
        wall_s: started.elapsed().as_secs_f64(),
    };
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
        return Ok(());
    }
    println!("pod list            {}", report.pod_list);
    println!(
        "cluster             {} nodes, {} GPUs",
        report.nodes, report.gpus
    );
    println!("placement           {}", report.placement);
    println!("seeds               {:?}", report.seeds);
    let fmt = |v: Option<f64>| v.map_or("not published".to_string(), |v| format!("{v:.2}%"));
    println!(
        "allocation at 100%  haneul {:.2}%   FGD (published) {}",
        report.allocation_pct_at_100,
        fmt(report.fgd_published_at_100)
    );
    println!(
        "allocation at 130%  haneul {:.2}%   FGD (published) {}",
        report.allocation_pct_at_130,
        fmt(report.fgd_published_at_130)
    );
    println!("wall time           {:.1} s", report.wall_s);
    Ok(())
}
