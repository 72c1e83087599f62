//! `haneul bench`: engine benchmarks that print figures, for people or (with `--json`) scripts.

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use haneul_sched::{FragTuning, PlacementStrategy};
use haneul_sim::openb::{self, Mix};
use haneul_sim::openb_variants::{self, Variant};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Replay an Alibaba openb pod list by the FGD paper's method and report GPU allocation.
    Openb(OpenbArgs),
    /// Replay a family of workloads derived from the openb default list (the FGD paper's
    /// sensitivity study) under several placements; one row per variant, placement and mix.
    OpenbVariants(VariantsArgs),
    /// Time a full scheduling pass over a large fleet and queue, and an incremental one.
    Engine(crate::bench_engine::EngineArgs),
    /// A whole centre on this machine: a real server process, a swarm of simulated nodes, a
    /// deep queue and a steady stream of submissions; reports submission-to-start latency.
    Centre(crate::bench_centre::CentreArgs),
    /// One gang over the whole fleet through a real server and a swarm: allocation, delivery
    /// to every node and every start report, stage by stage.
    Gang(crate::bench_gang::GangArgs),
    /// The per-submit path: a lone client's submits on one connection, and a shell loop
    /// starting `haneul submit` once per job, beside the cost of starting a process.
    Submit(crate::bench_submit::SubmitBenchArgs),
    /// Time from the server's start decision to the task's process start through a real agent.
    Agent(crate::bench_agent::AgentBenchArgs),
    /// Slow-header attack: half-open connections held against a real server while simulated
    /// nodes heartbeat; reports /healthz latency and the heartbeat rate.
    HalfOpen(crate::bench_halfopen::HalfOpenArgs),
    /// GPU telemetry into the store: the sustained sample rate from many writers against what
    /// a fleet of --gpus at --interval needs.
    Telemetry(crate::bench_telemetry::TelemetryBenchArgs),
}

#[derive(Args)]
pub struct OpenbArgs {
    /// Pod list CSV (default: alibaba-gpu-v2023-openb/csv/openb_pod_list_default.csv under the
    /// trace directory).
    #[arg(long)]
    pods: Option<PathBuf>,
    /// Directory of public trace files (default: ../shared/traces when present).
    #[arg(long, env = "HANEUL_TRACES", value_name = "DIR")]
    traces: Option<PathBuf>,
    /// Node list CSV; defaults to openb_node_list_gpu_node.csv beside the pod list.
    #[arg(long)]
    nodes: Option<PathBuf>,
    /// Seeds as a range `A..B` (inclusive) or a comma-separated list.
    #[arg(long, default_value = "42..51")]
    seeds: String,
    /// Placement strategy: fragmentation, fgd-paper, best-fit or first-fit.
    #[arg(long, default_value = "fragmentation")]
    placement: String,
    /// The engine learns the pod mix from arrivals (decayed counts) instead of being given the
    /// list's mix up front.
    #[arg(long)]
    online: bool,
    #[command(flatten)]
    tuning: TuningArgs,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

/// The fragmentation measure's weights, for ablations (docs/scheduling.md).
#[derive(Args, Clone)]
pub struct TuningArgs {
    /// A GPU kind weighs PCT% its share of the GPU request, the rest its share of the GPU pods.
    #[arg(long, default_value_t = FragTuning::default().request_weight_pct)]
    frag_request_pct: u32,
    /// The request share fades by PCT/100 times the multi-GPU kinds' share of the GPU request;
    /// 0 keeps it whole.
    #[arg(long, default_value_t = FragTuning::default().request_fade_pct)]
    frag_request_fade_pct: u32,
    /// Whole-GPU kinds count `1 + PCT/100 x GPUs` times.
    #[arg(long, default_value_t = FragTuning::default().whole_gpu_weight_pct)]
    frag_whole_gpu_pct: u32,
    /// Most times a model-restricted kind counts for its scarcity; 0 turns it off.
    #[arg(long, default_value_t = FragTuning::default().scarcity_cap)]
    frag_scarcity_cap: u32,
    /// Most task kinds in the measure; 0 keeps all.
    #[arg(long, default_value_t = FragTuning::default().max_kinds)]
    frag_max_kinds: u32,
    /// Tasks after which a learned kind's weight halves (online mix).
    #[arg(long, default_value_t = FragTuning::default().learn_half_life)]
    frag_half_life: u32,
    /// Nodes whose growth of expected fragmentation is within MILLI milli-GPU of the lowest
    /// count as equal, and the tightest wins, where GPU-sharing kinds make most of the GPU
    /// request (--frag-tie-from-pct, --frag-tie-full-pct); 0 takes the lowest growth.
    #[arg(long, default_value_t = FragTuning::default().tie_milli, value_name = "MILLI")]
    frag_tie_milli: u32,
    /// No tolerance while GPU-sharing kinds ask for at most PCT% of the GPU request.
    #[arg(long, default_value_t = FragTuning::default().tie_from_pct, value_name = "PCT")]
    frag_tie_from_pct: u32,
    /// The whole tolerance from PCT% of the GPU request on (linear from --frag-tie-from-pct).
    #[arg(long, default_value_t = FragTuning::default().tie_full_pct, value_name = "PCT")]
    frag_tie_full_pct: u32,
    /// CPU-only kinds count PCT% of their popularity in the measure.
    #[arg(long, default_value_t = FragTuning::default().cpu_kind_weight_pct, value_name = "PCT")]
    frag_cpu_kind_pct: u32,
    /// Share (%) of a node's free GPU capacity its free CPU or memory can not feed (at the
    /// mix's CPU and memory per GPU) counted as fragment; 0 turns it off.
    #[arg(long, default_value_t = FragTuning::default().cpu_fill_pct, value_name = "PCT")]
    frag_cpu_fill_pct: u32,
    /// Most groups of alike nodes scored per GPU model for one task (the policy's
    /// `max_scored_nodes`).
    #[arg(long, default_value_t = haneul_sched::Policy::default().max_scored_nodes)]
    max_scored_nodes: usize,
}

impl TuningArgs {
    fn apply(&self, policy: &mut haneul_sched::Policy) {
        policy.frag = self.tuning();
        policy.max_scored_nodes = self.max_scored_nodes.max(1);
    }

    fn tuning(&self) -> FragTuning {
        FragTuning {
            request_weight_pct: self.frag_request_pct.min(100),
            request_fade_pct: self.frag_request_fade_pct,
            whole_gpu_weight_pct: self.frag_whole_gpu_pct,
            scarcity_cap: self.frag_scarcity_cap,
            max_kinds: self.frag_max_kinds,
            learn_half_life: self.frag_half_life.max(1),
            tie_milli: self.frag_tie_milli,
            tie_from_pct: self.frag_tie_from_pct,
            tie_full_pct: self.frag_tie_full_pct,
            cpu_kind_weight_pct: self.frag_cpu_kind_pct,
            cpu_fill_pct: self.frag_cpu_fill_pct,
        }
    }
}

#[derive(Args)]
pub struct VariantsArgs {
    /// The default pod list the variants are derived from, e.g.
    /// ../shared/traces/alibaba-gpu-v2023-openb/csv/openb_pod_list_default.csv
    #[arg(long)]
    pods: PathBuf,
    /// Node list CSV; defaults to openb_node_list_gpu_node.csv beside the pod list.
    #[arg(long)]
    nodes: Option<PathBuf>,
    /// Variants, comma-separated (default, gpushare40, cpu050, multigpu20, gpuspec10, ...), or
    /// `all` for the 17 of docs/benchmarks.md.
    #[arg(long, default_value = "all")]
    variants: String,
    /// Placements, comma-separated.
    #[arg(long, default_value = "fgd-paper,best-fit,fragmentation")]
    placements: String,
    /// Where the measure's pod mix comes from: given, online or both.
    #[arg(long, default_value = "both")]
    mix: String,
    /// Replay seeds, as for `bench openb`.
    #[arg(long, default_value = "42..51")]
    seeds: String,
    /// Base of the variants' own generator seeds (each variant mixes in its name).
    #[arg(long, default_value_t = 2023)]
    variant_seed: u64,
    /// Compare each derived variant with the published file of the same name in this folder
    /// (openb_pod_list_<variant>.csv) where there is one, and print how close they are.
    #[arg(long)]
    compare: Option<PathBuf>,
    #[command(flatten)]
    tuning: TuningArgs,
    /// One JSON object per row instead of a table.
    #[arg(long)]
    json: bool,
}

pub fn run(cmd: BenchCommand) -> anyhow::Result<()> {
    match cmd {
        BenchCommand::Openb(args) => openb_bench(args),
        BenchCommand::OpenbVariants(args) => variants_bench(args),
        BenchCommand::Engine(args) => crate::bench_engine::run(args),
        BenchCommand::Centre(args) => crate::bench_centre::run(args),
        BenchCommand::Gang(args) => crate::bench_gang::run(args),
        BenchCommand::Submit(args) => crate::bench_submit::run(args),
        BenchCommand::Agent(args) => crate::bench_agent::run(args),
        BenchCommand::HalfOpen(args) => crate::bench_halfopen::run(args),
        BenchCommand::Telemetry(args) => crate::bench_telemetry::run(args),
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
        "fgd-paper" => PlacementStrategy::FgdPaper,
        "best-fit" => PlacementStrategy::BestFit,
        "first-fit" => PlacementStrategy::FirstFit,
        other => bail!(
            "--placement: unknown strategy `{other}`; use fragmentation, fgd-paper, best-fit or first-fit"
        ),
    })
}

#[derive(Serialize)]
struct OpenbReport {
    pod_list: String,
    nodes: usize,
    gpus: u64,
    placement: String,
    online: bool,
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
    let pods_path = match &args.pods {
        Some(p) => p.clone(),
        None => haneul_sim::traces::locate(
            args.traces.as_deref(),
            "alibaba-gpu-v2023-openb/csv/openb_pod_list_default.csv",
        )?,
    };
    let nodes_path = match &args.nodes {
        Some(p) => p.clone(),
        None => pods_path
            .parent()
            .unwrap_or(Path::new("."))
            .join("openb_node_list_gpu_node.csv"),
    };
    haneul_sim::traces::require(&pods_path)?;
    haneul_sim::traces::require(&nodes_path)?;
    let nodes = openb::load_nodes(&nodes_path)?;
    let pods = openb::load_pods(&pods_path)?;
    let pod_list = pods_path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let started = Instant::now();
    let mut at100 = Vec::new();
    let mut at130 = Vec::new();
    let mut policy = openb::replay_policy(placement);
    args.tuning.apply(&mut policy);
    let mix = if args.online { Mix::Online } else { Mix::Given };
    for &seed in &seeds {
        let r = openb::replay_with(&nodes, &pods, seed, 130, policy.clone(), mix)?;
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
    let results_csv = pods_path
        .parent()
        .unwrap_or(Path::new("."))
        .join("../fgd_expected_results/analysis_allo_discrete.csv");
    let report = OpenbReport {
        pod_list: pod_list.clone(),
        nodes: nodes.len(),
        gpus: nodes.iter().map(|n| n.gpus as u64).sum(),
        placement: args.placement.clone(),
        online: args.online,
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
    println!(
        "placement           {}{}",
        report.placement,
        if report.online { " (online mix)" } else { "" }
    );
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

fn default_nodes(pods: &Path, nodes: &Option<PathBuf>) -> PathBuf {
    match nodes {
        Some(p) => p.clone(),
        None => pods
            .parent()
            .unwrap_or(Path::new("."))
            .join("openb_node_list_gpu_node.csv"),
    }
}

/// Mean, sample standard deviation, minimum and maximum.
fn spread(v: &[f64]) -> (f64, f64, f64, f64) {
    let n = v.len().max(1) as f64;
    let mean = v.iter().sum::<f64>() / n;
    let var = if v.len() > 1 {
        v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)
    } else {
        0.0
    };
    let min = v.iter().copied().fold(f64::INFINITY, f64::min);
    let max = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (mean, var.sqrt(), min, max)
}

#[derive(Serialize)]
struct VariantRow {
    variant: String,
    placement: String,
    mix: &'static str,
    mean_at_100: f64,
    sd_at_100: f64,
    min_at_100: f64,
    max_at_100: f64,
    mean_at_130: f64,
    sd_at_130: f64,
    min_at_130: f64,
    max_at_130: f64,
    per_seed_at_100: Vec<f64>,
    per_seed_at_130: Vec<f64>,
    wall_s: f64,
}

#[derive(Serialize)]
struct Comparison {
    variant: String,
    derived: openb_variants::MixSummary,
    published: openb_variants::MixSummary,
    /// Total variation distance over (GPUs, milli-GPU) of the pods.
    gpu_shape_distance: f64,
    /// Total variation distance over whole pod kinds (CPU, memory, GPUs, milli-GPU, models).
    kind_distance: f64,
}

fn variants_bench(args: VariantsArgs) -> anyhow::Result<()> {
    let seeds = parse_seeds(&args.seeds)?;
    let nodes = openb::load_nodes(&default_nodes(&args.pods, &args.nodes))?;
    let default = openb::load_pods(&args.pods)?;
    let variants: Vec<Option<Variant>> = if args.variants == "all" {
        openb_variants::family()
    } else {
        args.variants
            .split(',')
            .map(|v| Variant::parse(v.trim()).map_err(|e| anyhow::anyhow!("--variants: {e}")))
            .collect::<anyhow::Result<_>>()?
    };
    let placements: Vec<(String, PlacementStrategy)> = args
        .placements
        .split(',')
        .map(|p| Ok((p.trim().to_string(), parse_placement(p.trim())?)))
        .collect::<anyhow::Result<_>>()?;
    let mixes: Vec<(&'static str, Mix)> = match args.mix.as_str() {
        "given" => vec![("given", Mix::Given)],
        "online" => vec![("online", Mix::Online)],
        "both" => vec![("given", Mix::Given), ("online", Mix::Online)],
        other => bail!("--mix: unknown `{other}`; use given, online or both"),
    };
    if !args.json {
        println!(
            "{:<12} {:<14} {:<7} {:>8} {:>6} {:>15} {:>8} {:>6} {:>15}",
            "variant", "placement", "mix", "at 100%", "sd", "min-max", "at 130%", "sd", "min-max"
        );
    }
    for v in &variants {
        let name = v.map_or("default".to_string(), |v| v.name());
        let pods = match v {
            None => default.clone(),
            Some(v) => openb_variants::derive(
                &default,
                &nodes,
                *v,
                openb_variants::variant_seed(args.variant_seed, &name),
            )?,
        };
        if let Some(dir) = &args.compare {
            let file = dir.join(format!("openb_pod_list_{name}.csv"));
            if v.is_some() && file.exists() {
                let published = openb::load_pods(&file)?;
                let cmp = Comparison {
                    variant: name.clone(),
                    derived: openb_variants::summarise(&pods),
                    published: openb_variants::summarise(&published),
                    gpu_shape_distance: openb_variants::kind_distance(&pods, &published, |p| {
                        (p.num_gpu, p.gpu_milli)
                    }),
                    kind_distance: openb_variants::kind_distance(&pods, &published, |p| {
                        (
                            p.num_gpu,
                            p.gpu_milli,
                            p.cpu_milli,
                            p.memory_mib,
                            p.gpu_spec.clone(),
                        )
                    }),
                };
                println!("{}", serde_json::to_string(&cmp)?);
            }
        }
        for (pname, strategy) in &placements {
            // fgd-paper is given the list's mix only as the paper ran it; best-fit ignores it.
            for &(mix_name, mix) in &mixes {
                if *strategy == PlacementStrategy::BestFit && mix == Mix::Online {
                    continue;
                }
                let mut policy = openb::replay_policy(*strategy);
                args.tuning.apply(&mut policy);
                let started = Instant::now();
                let mut at100 = Vec::new();
                let mut at130 = Vec::new();
                for &seed in &seeds {
                    let r = openb::replay_with(&nodes, &pods, seed, 130, policy.clone(), mix)?;
                    at100.push(r.allocation_at[100]);
                    at130.push(r.allocation_at[130]);
                }
                let (m100, sd100, lo100, hi100) = spread(&at100);
                let (m130, sd130, lo130, hi130) = spread(&at130);
                let row = VariantRow {
                    variant: name.clone(),
                    placement: pname.clone(),
                    mix: mix_name,
                    mean_at_100: m100,
                    sd_at_100: sd100,
                    min_at_100: lo100,
                    max_at_100: hi100,
                    mean_at_130: m130,
                    sd_at_130: sd130,
                    min_at_130: lo130,
                    max_at_130: hi130,
                    per_seed_at_100: at100,
                    per_seed_at_130: at130,
                    wall_s: started.elapsed().as_secs_f64(),
                };
                if args.json {
                    println!("{}", serde_json::to_string(&row)?);
                } else {
                    println!(
                        "{:<12} {:<14} {:<7} {:>8.2} {:>6.2} {:>7.2}-{:<7.2} {:>8.2} {:>6.2} {:>7.2}-{:<7.2}",
                        row.variant,
                        row.placement,
                        row.mix,
                        m100,
                        sd100,
                        lo100,
                        hi100,
                        m130,
                        sd130,
                        lo130,
                        hi130
                    );
                }
            }
        }
    }
    Ok(())
}
