//! Cost of the award ledger: how long ending an attempt takes now that its charge is written in
//! the same transaction, and how long the reads behind `haneul usage` and statements take over
//! many ledger rows.
//!
//! cargo run --release -p haneul-store --example ledger -- [sqlite|postgres URL] [attempts]
//!
//! Prints one JSON line of figures (see docs/benchmarks.md).

use haneul_model::{GpuModel, GpuRequest, JobSpec, MilliGpu, NodeId, ProjectId};
use haneul_sched::{Placement, TaskPlacement};
use haneul_store::*;
use std::time::Instant;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let backend = args.first().map(String::as_str).unwrap_or("sqlite");
    let total: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(4096);
    let dir = tempfile::tempdir().unwrap();
    let store: Box<dyn Store> = if backend == "sqlite" {
        Box::new(
            SqliteStore::open(&dir.path().join("bench.db"))
                .await
                .unwrap(),
        )
    } else {
        Box::new(PostgresStore::open(backend).await.unwrap())
    };
    let admin = Actor::system("bench");
    let org = store
        .create_org(
            &admin,
            NewOrg {
                name: format!("bench-{}", std::process::id()),
                class: "academia".into(),
                country: "KR".into(),
                ..NewOrg::default()
            },
            1,
        )
        .await
        .unwrap();
    let project = store
        .create_project(
            &admin,
            NewProject {
                org_id: org.id,
                name: "p".into(),
                weight: 1,
                quotas: Default::default(),
                gid_range: Default::default(),
            },
            1,
        )
        .await
        .unwrap();
    let model = GpuModel::new("H200").unwrap();
    store
        .create_award(
            &admin,
            NewAward {
                project_id: project.id,
                gpu_model: model.clone(),
                gpu_hours: 1_000_000,
                valid_from: 0,
                valid_until: i64::MAX / 2,
                gpu_quota: 8,
                application_id: None,
            },
            1,
        )
        .await
        .unwrap();
    let node = store
        .register_node(
            &admin,
            NewNode {
                name: format!("bench-node-{}", std::process::id()),
                pool: "bench".into(),
                block: "b".into(),
                gpu_model: model.clone(),
                gpus: 64,
                gpu_memory_mib: 1,
                nvlink_domain: 8,
                cpu_milli: 1_000_000,
                memory_mib: 1 << 30,
                agent_user: None,
                agent: Default::default(),
            },
            1,
        )
        .await
        .unwrap();
    let user = store.list_users().await.unwrap();
    let user_id = match user.first() {
        Some(u) => u.id,
        None => {
            store
                .bootstrap_admin("bench", haneul_store::IdRange::USERS, 1)
                .await
                .unwrap();
            store.list_users().await.unwrap()[0].id
        }
    };
    let epoch = store
        .acquire_lease("controller", "bench", i64::MAX / 4, 1)
        .await
        .unwrap()
        .unwrap();
    let mut end_secs = 0.0;
    let mut ended = 0usize;
    let mut now = 10;
    while ended < total {
        let batch = (total - ended).min(64);
        let jobs = store
            .submit_jobs(
                (0..batch)
                    .map(|_| {
                        let mut spec =
                            JobSpec::new(ProjectId(project.id as u32), 1, GpuRequest::Whole(1));
                        spec.name = "b".into();
                        (
                            admin.clone(),
                            NewJob {
                                user_id,
                                spec,
                                command: vec!["true".into()],
                                container_image: None,
                                batch: None,
                                idempotency: None,
                                array: None,
                                interactive: false,
                            },
                        )
                    })
                    .collect(),
                now,
            )
            .await
            .unwrap();
        let starts = jobs
            .iter()
            .enumerate()
            .map(|(i, j)| NewAttempt {
                job_id: j.id,
                placement: Placement {
                    tasks: vec![TaskPlacement {
                        node: NodeId(node.id as u32),
                        gpus: vec![i as u32],
                        milli_per_gpu: MilliGpu(1000),
                    }],
                },
                gpu_model: Some(model.clone()),
                borrowing: false,
            })
            .collect();
        let (attempts, _) = store
            .start_attempts("bench", epoch, starts, now)
            .await
            .unwrap();
        now += 1_000;
        for a in &attempts {
            let r = TaskReport {
                node: node.id,
                job: a.job_id,
                fence: a.fence,
                task: 0,
                exit_code: None,
            };
            store.report_task(r, now).await.unwrap();
        }
        now += 60_000;
        // Timed: the exit that ends the attempt, with its ledger charge.
        let t0 = Instant::now();
        for a in &attempts {
            let r = TaskReport {
                node: node.id,
                job: a.job_id,
                fence: a.fence,
                task: 0,
                exit_code: Some(0),
            };
            store.report_task(r, now).await.unwrap();
        }
        end_secs += t0.elapsed().as_secs_f64();
        ended += attempts.len();
        now += 1_000;
    }
    let t0 = Instant::now();
    let balances = store.award_balances(Some(project.id)).await.unwrap();
    let balance_ms = t0.elapsed().as_secs_f64() * 1e3;
    let t0 = Instant::now();
    let rows = store.ledger(Some(project.id), 0, i64::MAX).await.unwrap();
    let ledger_ms = t0.elapsed().as_secs_f64() * 1e3;
    assert_eq!(rows.len(), ended);
    let charged: i64 = rows.iter().map(|r| r.charged_ms).sum();
    assert_eq!(balances[0].used_ms, charged);
    println!(
        "{{\"backend\":\"{}\",\"attempts_ended\":{ended},\"end_attempt_ms_mean\":{:.3},\
         \"ends_per_s\":{:.0},\"balances_ms\":{balance_ms:.2},\"ledger_read_ms\":{ledger_ms:.2}}}",
        store.backend(),
        end_secs * 1e3 / ended as f64,
        ended as f64 / end_secs
    );
}
