//! `haneul bench engine`: times a full scheduling pass over a large fleet and queue, and the
//! incremental passes that follow single job ends, and reports peak memory.

use clap::Args;
use haneul_model::{
    Block, BlockId, Fleet, GpuModel, GpuRequest, Job, JobId, JobSpec, MemMib, MilliCpu, MilliGpu,
    Node, NodeId, NodeState, OrgClass, OrgId, Organisation, Pool, PoolId, PriorityClass, Project,
    ProjectId, Quota, Span, Tenants, Time,
};
use haneul_sched::{Engine, Policy};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Instant;

#[derive(Args)]
pub struct EngineArgs {
    /// Nodes in the fleet.
    #[arg(long, default_value_t = 1250)]
    nodes: u32,
    /// GPUs per node.
    #[arg(long, default_value_t = 8)]
    gpus_per_node: u32,
    /// Jobs in the queue before the first pass.
    #[arg(long, default_value_t = 100_000)]
    queued: u32,
    /// Projects sharing the fleet.
    #[arg(long, default_value_t = 200)]
    projects: u32,
    /// Incremental passes to time (each after one running job ends).
    #[arg(long, default_value_t = 200)]
    incremental: u32,
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct EngineReport {
    nodes: u32,
    gpus: u64,
    queued: u32,
    projects: u32,
    full_pass_ms: f64,
    full_pass_started: u64,
    full_pass_visited: u64,
    incremental_pass_ms: f64,
    incremental_pass_p99_ms: f64,
    incremental_passes: u32,
    steady_full_pass_ms: f64,
    /// Every queued job's pending reason after the last pass, and formatted as the server
    /// publishes them (code, sentence, hint): outside the pass, at most once a second there.
    pending_reasons_ms: f64,
    pending_reasons_formatted_ms: f64,
    submit_us_per_job: f64,
    /// VmHWM before the pending reasons are computed: the engine's state with the queue, the
    /// passes' working memory and the process, without the two lists of reasons held after.
    engine_peak_rss_mib: f64,
    peak_rss_mib: f64,
}

/// A fleet of H200 servers in blocks of 32 under four pools, one of them a partner's.
pub fn bench_fleet(nodes: u32, gpus_per_node: u32) -> anyhow::Result<Fleet> {
    let model = GpuModel::new("H200")?;
    let pools: Vec<Pool> = (0..4)
        .map(|p| Pool {
            id: PoolId(p),
            name: format!("pool-{p}"),
            owner: None,
            lending: Default::default(),
        })
        .collect();
    let block_size = 32;
    let n_blocks = nodes.div_ceil(block_size);
    let blocks: Vec<Block> = (0..n_blocks)
        .map(|b| Block {
            id: BlockId(b),
            name: format!("block-{b}"),
            pool: PoolId(b % 4),
        })
        .collect();
    let nodes: Vec<Node> = (0..nodes)
        .map(|i| Node {
            id: NodeId(i),
            name: format!("gpu{i:05}"),
            block: BlockId(i / block_size),
            gpu_model: model.clone(),
            gpus: gpus_per_node,
            gpu_memory: MemMib(141 * 1024),
            nvlink_domain: gpus_per_node,
            cpu: MilliCpu::cores(112),
            memory: MemMib(2 * 1024 * 1024),
            labels: BTreeMap::new(),
            state: NodeState::Up,
        })
        .collect();
    Ok(Fleet::new(pools, blocks, nodes)?)
}

/// Projects with guarantees summing to about 60% of the fleet and unlimited borrowing.
pub fn bench_tenants(projects: u32, total_gpus: u64) -> anyhow::Result<Tenants> {
    let model = GpuModel::new("H200")?;
    let orgs: Vec<Organisation> = (0..projects.div_ceil(4))
        .map(|o| Organisation {
            id: OrgId(o),
            name: format!("org-{o}"),
            class: OrgClass::ALL[o as usize % OrgClass::ALL.len()],
            country: "KR".into(),
            parent: None,
        })
        .collect();
    let per_project = total_gpus * 6 / 10 / projects.max(1) as u64;
    let projects: Vec<Project> = (0..projects)
        .map(|p| Project {
            id: ProjectId(p),
            org: OrgId(p / 4),
            name: format!("project-{p}"),
            quotas: BTreeMap::from([(
                model.clone(),
                Quota {
                    guaranteed: MilliGpu::gpus(per_project),
                    borrow_limit: None,
                },
            )]),
            weight: 1 + p % 3,
        })
        .collect();
    Ok(Tenants::new(orgs, projects)?)
}

/// A mixed queue: many 1-GPU and fractional jobs, fewer 2-8 GPU jobs, some multi-node gangs.
pub fn bench_job(rng: &mut ChaCha8Rng, id: u64, projects: u32, now: Time) -> Job {
    let roll = rng.random_range(0..100);
    let (replicas, gpu) = match roll {
        0..=29 => (1, GpuRequest::Whole(1)),
        30..=44 => (1, GpuRequest::Fraction([250, 500][rng.random_range(0..2)])),
        45..=59 => (1, GpuRequest::Whole(2)),
        60..=74 => (1, GpuRequest::Whole(4)),
        75..=91 => (1, GpuRequest::Whole(8)),
        _ => (rng.random_range(2..=8), GpuRequest::Whole(8)),
    };
    let mut spec = JobSpec::new(ProjectId(rng.random_range(0..projects)), replicas, gpu);
    let gpus = match gpu {
        GpuRequest::Whole(n) => n as u64,
        _ => 1,
    };
    spec.cpu_per_task = MilliCpu::cores(4 * gpus);
    spec.memory_per_task = MemMib(64 * 1024 * gpus);
    spec.priority = [
        PriorityClass::Normal,
        PriorityClass::High,
        PriorityClass::Low,
    ][rng.random_range(0..3)];
    spec.runtime_estimate = Some(Span::from_mins(rng.random_range(10..=24 * 60)));
    spec.time_limit = Some(Span::from_hours(48));
    Job {
        id: JobId(id),
        spec,
        submitted_at: now,
    }
}

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i]
}

pub fn run(args: EngineArgs) -> anyhow::Result<()> {
    let fleet = bench_fleet(args.nodes, args.gpus_per_node)?;
    let tenants = bench_tenants(args.projects, fleet.total_gpus())?;
    let mut engine = Engine::new(&fleet, &tenants, Policy::default())?;
    let mut rng = ChaCha8Rng::seed_from_u64(args.seed);
    let mut now = Time::from_secs(1_000_000);
    let submit_started = Instant::now();
    for id in 0..args.queued as u64 {
        let job = bench_job(&mut rng, id, args.projects, now);
        engine.submit(job, now)?;
    }
    let submit_us = submit_started.elapsed().as_secs_f64() * 1e6 / args.queued.max(1) as f64;

    now = now + Span::from_secs(1);
    let t = Instant::now();
    let first = engine.schedule(now);
    let full_pass_ms = t.elapsed().as_secs_f64() * 1e3;
    let first_stats = engine.last_pass();
    let mut running: Vec<JobId> = first.starts.iter().map(|s| s.job).collect();

    // A second full pass with nothing changed: the steady state of a busy centre.
    now = now + Span::from_secs(1);
    let t = Instant::now();
    engine.schedule(now);
    let steady_full_pass_ms = t.elapsed().as_secs_f64() * 1e3;

    let mut samples = Vec::with_capacity(args.incremental as usize);
    for _ in 0..args.incremental {
        if running.is_empty() {
            break;
        }
        let victim = running.swap_remove(rng.random_range(0..running.len()));
        now = now + Span::from_secs(1);
        engine.finish(victim, now)?;
        let t = Instant::now();
        let d = engine.schedule(now);
        samples.push(t.elapsed().as_secs_f64() * 1e3);
        if std::env::var_os("HANEUL_BENCH_TRACE").is_some() {
            eprintln!(
                "{:.3} ms {:?}",
                samples.last().copied().unwrap_or(0.0),
                engine.last_pass()
            );
        }
        running.extend(d.starts.iter().map(|s| s.job));
        // Preempted jobs stop at once (no grace in this workload) and go back to the queue.
        for p in &d.preemptions {
            engine.requeue(p.victim, now)?;
            running.retain(|j| *j != p.victim);
        }
    }
    samples.sort_by(f64::total_cmp);
    let engine_peak_rss_mib = peak_rss_mib();
    let t = Instant::now();
    let reasons = engine.pending_reasons();
    let pending_reasons_ms = t.elapsed().as_secs_f64() * 1e3;
    let t = Instant::now();
    let formatted: usize = engine
        .pending_reasons()
        .iter()
        .map(|(_, r)| r.code().as_str().len() + r.message().len() + r.hint().map_or(0, |h| h.len()))
        .sum();
    let pending_reasons_formatted_ms = t.elapsed().as_secs_f64() * 1e3;
    // Kept, so that the formatting is not optimised away.
    std::hint::black_box(formatted);
    let report = EngineReport {
        nodes: args.nodes,
        gpus: fleet.total_gpus(),
        queued: args.queued,
        projects: args.projects,
        full_pass_ms,
        full_pass_started: first_stats.started,
        full_pass_visited: first_stats.visited,
        incremental_pass_ms: percentile(&samples, 0.5),
        incremental_pass_p99_ms: percentile(&samples, 0.99),
        incremental_passes: samples.len() as u32,
        steady_full_pass_ms,
        pending_reasons_ms,
        pending_reasons_formatted_ms,
        submit_us_per_job: submit_us,
        engine_peak_rss_mib,
        peak_rss_mib: peak_rss_mib(),
    };
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
        return Ok(());
    }
    println!(
        "fleet                {} nodes x {} GPUs = {} GPUs, {} projects",
        report.nodes, args.gpus_per_node, report.gpus, report.projects
    );
    println!("queued               {} jobs", report.queued);
    println!(
        "full pass            {:.2} ms ({} started, {} visited)",
        report.full_pass_ms, report.full_pass_started, report.full_pass_visited
    );
    println!("steady full pass     {:.2} ms", report.steady_full_pass_ms);
    println!(
        "incremental pass     {:.3} ms median, {:.3} ms p99 over {} passes",
        report.incremental_pass_ms, report.incremental_pass_p99_ms, report.incremental_passes
    );
    println!(
        "pending reasons      {:.2} ms for {} queued jobs, {:.2} ms formatted",
        report.pending_reasons_ms,
        reasons.len(),
        report.pending_reasons_formatted_ms
    );
    println!(
        "submit               {:.2} us per job",
        report.submit_us_per_job
    );
    println!(
        "peak RSS             {:.0} MiB ({:.0} MiB before the pending reasons)",
        report.peak_rss_mib, report.engine_peak_rss_mib
    );
    Ok(())
}
