//! `haneul bench telemetry`: whether the store keeps up with a centre's GPU telemetry. Every
//! node's batch (one sample per GPU) is written the way the server writes an agent's batch
//! (`record_gpu_samples`), from many writers at once and flat out, and the sustained rate is
//! compared with what `--gpus` GPUs at `--interval` seconds need. The store alone: the HTTP
//! hop and the server's check of the node's assignments come on top.

use clap::Args;
use haneul_model::{GpuModel, GpuRequest, JobSpec, ProjectId};
use haneul_store::*;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Args)]
pub struct TelemetryBenchArgs {
    /// GPUs in the centre (8 per node).
    #[arg(long, default_value_t = 10_000)]
    gpus: u32,
    /// Seconds between an agent's samples.
    #[arg(long, default_value_t = 10)]
    interval: u64,
    /// Seconds of writing flat out.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// Concurrent writers (the server's request handlers).
    #[arg(long, default_value_t = 16)]
    writers: usize,
    /// A PostgreSQL URL to measure instead of a SQLite file (its database is used as is).
    #[arg(long)]
    postgres: Option<String>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

pub fn run(args: TelemetryBenchArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.gpus >= 8, "--gpus must be at least 8");
    anyhow::ensure!(args.interval >= 1, "--interval must be at least 1");
    anyhow::ensure!(args.writers >= 1, "--writers must be at least 1");
    tokio::runtime::Runtime::new()?.block_on(bench(args))
}

async fn bench(args: TelemetryBenchArgs) -> anyhow::Result<()> {
    let dir = tempfile_dir()?;
    let store: Arc<dyn Store> = match &args.postgres {
        Some(url) => Arc::new(PostgresStore::open(url).await?),
        None => Arc::new(SqliteStore::open(&dir.join("bench.db")).await?),
    };
    let sys = Actor::system("bench");
    let tag = std::process::id();
    let org = store
        .create_org(
            &sys,
            NewOrg {
                name: format!("bench-{tag}"),
                class: "academia".into(),
                country: "KR".into(),
                parent: None,
                ..NewOrg::default()
            },
            1,
        )
        .await?;
    let project = store
        .create_project(
            &sys,
            NewProject {
                org_id: org.id,
                name: "telemetry".into(),
                weight: 1,
                quotas: BTreeMap::new(),
                gid_range: Default::default(),
            },
            1,
        )
        .await?;
    let user = store
        .create_user(
            &sys,
            NewUser {
                name: format!("bench-{tag}"),
                role: Role::Member,
                org_id: Some(org.id),
                projects: vec![project.id],
                uid: None,
                gid: None,
                uid_range: IdRange::USERS,
            },
            1,
        )
        .await?;
    let nodes = args.gpus.div_ceil(8) as usize;
    let mut jobs = Vec::with_capacity(nodes);
    let model = GpuModel::new("H100")?;
    for chunk in (0..nodes).collect::<Vec<_>>().chunks(500) {
        let batch = chunk
            .iter()
            .map(|_| {
                let mut spec = JobSpec::new(ProjectId(project.id as u32), 1, GpuRequest::Whole(8));
                spec.gpu_models = vec![model.clone()];
                (
                    Actor::user(&user),
                    NewJob {
                        user_id: user.id,
                        spec,
                        command: vec!["train".into()],
                        container_image: None,
                        idempotency: None,
                        batch: None,
                        array: None,
                        interactive: false,
                    },
                )
            })
            .collect();
        jobs.extend(store.submit_jobs(batch, 1).await?.into_iter().map(|j| j.id));
    }
    let needed = f64::from(args.gpus) / args.interval as f64;
    let deadline = Instant::now() + Duration::from_secs(args.seconds);
    let jobs = Arc::new(jobs);
    let mut handles = Vec::new();
    for w in 0..args.writers {
        let (store, jobs) = (store.clone(), jobs.clone());
        let (writers, interval_ms) = (args.writers, args.interval as i64 * 1000);
        handles.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut samples = 0u64;
            let mut round = 0i64;
            'outer: loop {
                for n in (w..jobs.len()).step_by(writers) {
                    if Instant::now() >= deadline {
                        break 'outer;
                    }
                    let at = 1_800_000_000_000 + round * interval_ms + n as i64;
                    let batch: Vec<GpuSampleRecord> = (0..8)
                        .map(|g| GpuSampleRecord {
                            job_id: jobs[n],
                            gpu_uuid: format!("GPU-{n:05}-{g}"),
                            gpu_index: g,
                            at,
                            period_ms: interval_ms,
                            util_pct: (n as i64 * 7 + g * 13 + round) % 101,
                            mem_mib: 40_000,
                            power_w: 500,
                            temp_c: 60,
                        })
                        .collect();
                    let cpu = [TaskCpuRecord {
                        job_id: jobs[n],
                        fence: 1,
                        task: 0,
                        cpu_ms: round * 1000,
                    }];
                    let t = Instant::now();
                    store.record_gpu_samples(n as i64 + 1, &batch, &cpu).await?;
                    latencies.push(t.elapsed());
                    samples += 8;
                }
                round += 1;
            }
            Ok::<_, StoreError>((samples, latencies))
        }));
    }
    let started = Instant::now();
    let mut samples = 0u64;
    let mut latencies = Vec::new();
    for h in handles {
        let (s, l) = h.await??;
        samples += s;
        latencies.extend(l);
    }
    let secs = started.elapsed().as_secs_f64();
    latencies.sort();
    let q = |p: f64| {
        latencies
            .get(((latencies.len() as f64 - 1.0) * p) as usize)
            .map_or(0.0, |d| d.as_secs_f64() * 1e3)
    };
    let rate = samples as f64 / secs;
    let out = serde_json::json!({
        "backend": store.backend(),
        "gpus": args.gpus,
        "interval_s": args.interval,
        "writers": args.writers,
        "seconds": secs,
        "samples": samples,
        "samples_per_s": rate,
        "needed_per_s": needed,
        "headroom": rate / needed,
        "batch_p50_ms": q(0.5),
        "batch_p99_ms": q(0.99),
    });
    if args.json {
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!(
            "{} store: {:.0} samples/s sustained ({} writers, {:.0} s); {} GPUs at {} s need {:.0}/s: \
             headroom x{:.1}; batch of 8 p50 {:.1} ms, p99 {:.1} ms",
            store.backend(),
            rate,
            args.writers,
            secs,
            args.gpus,
            args.interval,
            needed,
            rate / needed,
            q(0.5),
            q(0.99)
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

fn tempfile_dir() -> anyhow::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("haneul-bench-telemetry-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
