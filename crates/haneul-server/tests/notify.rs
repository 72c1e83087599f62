//! Two real servers on one PostgreSQL database wake each other through LISTEN/NOTIFY, not their
//! polls: the ticks and lease looks here are a minute long, so only a notification can make
//! either thing below happen within the few seconds allowed.

use haneul_model::{GpuModel, GpuRequest, JobSpec, ProjectId};
use haneul_server::{Config, Database};
use haneul_store::*;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

fn config(url: &str, dir: &std::path::Path) -> Config {
    let mut cfg = Config::new(dir.to_path_buf());
    cfg.listen = "127.0.0.1:0".parse().unwrap();
    cfg.database = Database::Postgres(url.to_string());
    cfg.tick = Duration::from_secs(60);
    cfg.lease_ttl = Duration::from_secs(60);
    cfg
}

/// Waits up to 5 s for `check`; false if it never held.
async fn within_5s<F: AsyncFnMut() -> bool>(mut check: F) -> bool {
    let until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < until {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test]
async fn a_standby_takes_a_released_lease_and_the_leader_wakes_for_others_commits() {
    let db = testing::TestDb::create().await;
    let dir_a = tempfile::tempdir().unwrap();
    let dir_b = tempfile::tempdir().unwrap();
    let a = haneul_server::start(config(db.url(), dir_a.path()))
        .await
        .unwrap();
    assert!(
        within_5s(async || a.signals().leader.load(std::sync::atomic::Ordering::SeqCst)).await,
        "the first server leads"
    );
    let b = haneul_server::start(config(db.url(), dir_b.path()))
        .await
        .unwrap();
    let b_signals = b.signals();
    let leads = |s: &std::sync::Arc<haneul_server::controller::Signals>| {
        s.leader.load(std::sync::atomic::Ordering::SeqCst)
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!leads(&b_signals), "the second server stands by");

    // The leader stops cleanly and gives the lease up: the standby's next look would be 15 s
    // away (a quarter of the lease), but the notification wakes it now.
    a.stop().await;
    assert!(
        within_5s(async || leads(&b_signals)).await,
        "the standby took the released lease at once"
    );

    // A job written by another server (here a third handle on the database) wakes the new
    // leader, whose next tick is a minute away, and it starts the job.
    let other = PostgresStore::open(db.url()).await.unwrap();
    let admin = Actor::system("test");
    let org = other
        .create_org(
            &admin,
            NewOrg {
                name: "kaist".into(),
                class: "academia".into(),
                country: "KR".into(),
                ..NewOrg::default()
            },
            1,
        )
        .await
        .unwrap();
    let project = other
        .create_project(
            &admin,
            NewProject {
                org_id: org.id,
                name: "p".into(),
                weight: 1,
                quotas: BTreeMap::new(),
                gid_range: Default::default(),
            },
            1,
        )
        .await
        .unwrap();
    let user = other
        .create_user(
            &admin,
            NewUser {
                name: "kim".into(),
                role: Role::Member,
                org_id: Some(org.id),
                projects: vec![project.id],
                uid: None,
                gid: None,
                uid_range: IdRange::USERS,
            },
            1,
        )
        .await
        .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    other
        .register_node(
            &admin,
            NewNode {
                name: "gpu-001".into(),
                pool: DEFAULT_POOL.into(),
                block: "b1".into(),
                gpu_model: GpuModel::new("H200").unwrap(),
                gpus: 8,
                gpu_memory_mib: 141 * 1024,
                nvlink_domain: 8,
                cpu_milli: 64_000,
                memory_mib: 1 << 20,
                agent_user: None,
                agent: Default::default(),
            },
            now,
        )
        .await
        .unwrap();
    let mut spec = JobSpec::new(ProjectId(project.id as u32), 1, GpuRequest::Whole(1));
    spec.name = "train".into();
    let job = other
        .submit_job(
            &Actor::user(&user),
            NewJob {
                user_id: user.id,
                spec,
                command: vec!["true".into()],
                container_image: None,
                batch: None,
                idempotency: None,
                array: None,
                interactive: false,
            },
            now,
        )
        .await
        .unwrap();
    assert!(
        within_5s(async || other.get_job(job.id).await.unwrap().state == JobState::Running).await,
        "the leader started a job another server queued: {:?}",
        other.get_job(job.id).await.unwrap()
    );
    b.stop().await;
}
