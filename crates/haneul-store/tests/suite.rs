//! One test suite, run against both backends: a real SQLite file and a fresh PostgreSQL database.

use haneul_model::{GpuModel, GpuRequest, JobSpec, MilliGpu, NodeId, ProjectId, Span};
use haneul_sched::{Placement, TaskPlacement};
use haneul_store::*;
use std::collections::BTreeMap;

fn admin() -> Actor {
    Actor::system("test")
}

async fn tenant(store: &dyn Store, org: &str) -> (OrgRecord, ProjectRecord, UserRecord) {
    let o = store
        .create_org(
            &admin(),
            NewOrg {
                name: org.into(),
                class: "academia".into(),
                country: "KR".into(),
                parent: None,
                ..NewOrg::default()
            },
            1,
        )
        .await
        .unwrap();
    let p = store
        .create_project(
            &admin(),
            NewProject {
                org_id: o.id,
                name: "p".into(),
                weight: 1,
                quotas: BTreeMap::new(),
                gid_range: Default::default(),
            },
            1,
        )
        .await
        .unwrap();
    let u = store
        .create_user(
            &admin(),
            NewUser {
                name: format!("{org}-user"),
                role: Role::Member,
                org_id: Some(o.id),
                projects: vec![p.id],
                uid: None,
                gid: None,
                uid_range: IdRange::USERS,
            },
            1,
        )
        .await
        .unwrap();
    (o, p, u)
}

/// An 8 x H200 node of the default pool, as registered by an operator.
fn new_node(name: &str) -> NewNode {
    NewNode {
        name: name.into(),
        pool: DEFAULT_POOL.into(),
        block: "b1".into(),
        gpu_model: GpuModel::new("H200").unwrap(),
        gpus: 8,
        gpu_memory_mib: 141 * 1024,
        nvlink_domain: 8,
        cpu_milli: 64_000,
        memory_mib: 1 << 20,
        agent_user: None,
        agent: NodeAgent::default(),
    }
}

async fn node(store: &dyn Store, name: &str, now: i64) -> NodeRecord {
    store
        .register_node(&admin(), new_node(name), now)
        .await
        .unwrap()
}

/// [`node`] registered again with what its agent says of itself.
async fn node_with_agent(store: &dyn Store, name: &str, agent: NodeAgent, now: i64) -> NodeRecord {
    let n = NewNode {
        agent,
        ..new_node(name)
    };
    store.register_node(&admin(), n, now).await.unwrap()
}

fn agent_says(limits: Option<&str>, address: Option<&str>, runtime: Option<&str>) -> NodeAgent {
    NodeAgent {
        limits: limits.map(Into::into),
        address: address.map(Into::into),
        container_runtime: runtime.map(Into::into),
        uid: None,
    }
}

fn spec(project: i64, gpus: u32) -> JobSpec {
    let mut s = JobSpec::new(ProjectId(project as u32), 1, GpuRequest::Whole(gpus));
    s.name = "train".into();
    s
}

fn placement(node: i64, gpus: Vec<u32>) -> Placement {
    Placement {
        tasks: vec![TaskPlacement {
            node: NodeId(node as u32),
            gpus,
            milli_per_gpu: MilliGpu(1000),
        }],
    }
}

async fn lead(store: &dyn Store, holder: &str, now: i64) -> i64 {
    store
        .acquire_lease("controller", holder, 10_000, now)
        .await
        .unwrap()
        .expect("lease is free")
}

/// `n` one-GPU jobs running `true`, submitted by `u` to `project`, for a batch.
fn one_gpu_jobs(u: &UserRecord, project: i64, n: usize) -> Vec<(Actor, NewJob)> {
    (0..n)
        .map(|_| {
            (
                Actor::user(u),
                NewJob {
                    user_id: u.id,
                    spec: spec(project, 1),
                    command: vec!["true".into()],
                    container_image: None,
                    batch: None,
                    idempotency: None,
                    array: None,
                    interactive: false,
                },
            )
        })
        .collect()
}

async fn submit(store: &dyn Store, u: &UserRecord, project: i64, now: i64) -> JobRecord {
    store
        .submit_job(
            &Actor::user(u),
            NewJob {
                user_id: u.id,
                spec: spec(project, 2),
                command: vec!["python".into(), "train.py".into()],
                container_image: None,
                batch: None,
                idempotency: None,
                array: None,
                interactive: false,
            },
            now,
        )
        .await
        .unwrap()
}

/// Starts `job` on GPUs 0 and 1 of `node` as controller `a`, renewing its lease first (a lease
/// that lapsed comes back under a new epoch).
async fn start(store: &dyn Store, epoch: i64, job: i64, node: i64, now: i64) -> AttemptRecord {
    let renewed = lead(store, "a", now).await;
    assert!(renewed >= epoch);
    let epoch = renewed;
    let (started, skipped) = store
        .start_attempts(
            "a",
            epoch,
            vec![NewAttempt {
                job_id: job,
                placement: placement(node, vec![0, 1]),
                gpu_model: Some(GpuModel::new("H200").unwrap()),
                borrowing: false,
            }],
            now,
        )
        .await
        .unwrap();
    assert!(skipped.is_empty());
    started.into_iter().next().unwrap()
}

pub async fn tenants_and_tokens(store: &dyn Store) {
    let range = IdRange {
        first: 250_000,
        last: 250_009,
    };
    assert!(
        store
            .bootstrap_admin(&hash_token("root"), range, 1)
            .await
            .unwrap()
    );
    assert!(
        !store
            .bootstrap_admin(&hash_token("again"), range, 2)
            .await
            .unwrap()
    );
    let admin_user = store
        .authenticate(&hash_token("root"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(admin_user.role, Role::CentreAdmin);
    // The first administrator has an identity from the range, like every later user.
    assert_eq!(
        (admin_user.uid, admin_user.gid),
        (Some(250_000), Some(250_000))
    );

    let (o, p, u) = tenant(store, "kaist").await;
    assert_eq!(u.projects, vec![p.id]);
    assert_eq!(store.get_project(p.id).await.unwrap().org_id, o.id);
    let dup = store
        .create_org(
            &admin(),
            NewOrg {
                name: "kaist".into(),
                class: "academia".into(),
                country: "KR".into(),
                parent: None,
                ..NewOrg::default()
            },
            3,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(dup, StoreError::Conflict { field: "name", .. }),
        "{dup}"
    );

    let t = store
        .create_token(&admin(), u.id, "laptop", &hash_token("secret"), None, 4)
        .await
        .unwrap();
    let who = store
        .authenticate(&hash_token("secret"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(who.id, u.id);
    assert_eq!(who.projects, vec![p.id]);
    assert!(
        store
            .authenticate(&hash_token("nope"))
            .await
            .unwrap()
            .is_none()
    );
    store.revoke_token(&admin(), t.id, 5).await.unwrap();
    assert!(
        store
            .authenticate(&hash_token("secret"))
            .await
            .unwrap()
            .is_none()
    );
    assert!(store.get_org(999).await.is_err());
}

pub async fn job_runs_once_to_success(store: &dyn Store) {
    let (_, p, u) = tenant(store, "snu").await;
    let n = node(store, "gpu-001", 10).await;
    let job = submit(store, &u, p.id, 20).await;
    assert_eq!(job.state, JobState::Queued);

    let snap = store.snapshot().await.unwrap();
    assert_eq!(snap.queued.len(), 1);
    assert_eq!(snap.nodes.len(), 1);
    assert!(snap.cursor > 0);

    let epoch = lead(store, "a", 30).await;
    let a = start(store, epoch, job.id, n.id, 30).await;
    assert_eq!(a.fence, 1);
    // A second decision to start the same job is refused: it is no longer queued.
    let (again, skipped) = store
        .start_attempts(
            "a",
            epoch,
            vec![NewAttempt {
                job_id: job.id,
                placement: placement(n.id, vec![2, 3]),
                gpu_model: None,
                borrowing: false,
            }],
            31,
        )
        .await
        .unwrap();
    assert!(again.is_empty());
    assert_eq!(skipped, vec![job.id]);
    assert_eq!(store.list_attempts(job.id).await.unwrap().len(), 1);

    let work = store.assignments(n.id).await.unwrap();
    assert_eq!(work.len(), 1);
    assert_eq!(work[0].gpus, vec![0, 1]);
    assert_eq!(work[0].peers, vec!["gpu-001".to_string()]);
    assert_eq!(work[0].job.command, vec!["python", "train.py"]);

    let report = |exit_code| TaskReport {
        node: n.id,
        job: job.id,
        fence: 1,
        task: 0,
        exit_code,
    };
    let a = store.report_task(report(None), 1_000).await.unwrap();
    assert_eq!(a.state, AttemptState::Running);
    store
        .append_log(n.id, job.id, 1, 0, b"epoch 1 loss 0.5\n", None, 1_500)
        .await
        .unwrap();
    // Output is bytes: NUL, bytes that are not UTF-8, a backslash sequence that looks like
    // the store's own escapes, and a Korean character cut between two uploads all come back
    // exactly.
    let han = "한글".as_bytes();
    let odd: [&[u8]; 4] = [b"x\0y", b"\xff\xfe \\x41 \\0", &han[..4], &han[4..]];
    for (i, chunk) in odd.iter().enumerate() {
        store
            .append_log(n.id, job.id, 1, 0, chunk, None, 1_600 + i as i64)
            .await
            .unwrap();
    }
    // Uploads marked with their file and offset are stored once however often they are sent:
    // a replay adds nothing, an overlap adds only its new end, and each file counts alone.
    let marked: [(&str, u64, &[u8]); 6] = [
        ("stdout", 0, b"abc"),
        ("stdout", 0, b"abc"),
        ("stdout", 2, b"cde"),
        ("stderr", 0, b"abc"),
        ("stdout", 1, b"bc"),
        ("stdout", 5, b"f\n"),
    ];
    for (i, (stream, offset, chunk)) in marked.into_iter().enumerate() {
        store
            .append_log(
                n.id,
                job.id,
                1,
                0,
                chunk,
                Some((stream, offset)),
                1_700 + i as i64,
            )
            .await
            .unwrap();
    }
    let err = store
        .append_log(n.id, job.id, 1, 0, b"x", Some(("stdin", 0)), 1_800)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Invalid {
                field: "stream",
                ..
            }
        ),
        "{err}"
    );
    let a = store.report_task(report(Some(0)), 3_601_000).await.unwrap();
    assert_eq!(a.state, AttemptState::Succeeded);
    // Two GPUs for one hour.
    assert_eq!(a.gpu_ms, 2 * 3_600_000);
    let job = store.get_job(job.id).await.unwrap();
    assert_eq!(job.state, JobState::Succeeded);
    assert_eq!(job.exit_code, Some(0));
    assert!(store.assignments(n.id).await.unwrap().is_empty());

    let logs = store.read_logs(job.id, 0, 100).await.unwrap();
    assert_eq!(logs.len(), 9);
    assert_eq!(logs[0].data, b"epoch 1 loss 0.5\n");
    for (got, sent) in logs[1..].iter().zip(odd) {
        assert_eq!(got.data, sent);
    }
    let all: Vec<u8> = logs[3..5].iter().flat_map(|l| l.data.clone()).collect();
    assert_eq!(all, han);
    let marked: Vec<&[u8]> = logs[5..].iter().map(|l| &l.data[..]).collect();
    assert_eq!(marked, [&b"abc"[..], b"de", b"abc", b"f\n"]);
    let usage = store.usage(Some(p.id)).await.unwrap();
    assert_eq!(usage[0].gpu_ms, 2 * 3_600_000);

    let kinds: Vec<EventKind> = store
        .job_events(job.id)
        .await
        .unwrap()
        .iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(
        kinds,
        vec![
            EventKind::Submitted,
            EventKind::Started,
            EventKind::Finished
        ]
    );
    // Reports after the end are refused.
    let err = store
        .report_task(report(Some(0)), 3_700_000)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Fenced(_)), "{err}");
}

pub async fn stale_reports_are_fenced(store: &dyn Store) {
    let (_, p, u) = tenant(store, "postech").await;
    let n1 = node(store, "gpu-001", 10).await;
    let n2 = node(store, "gpu-002", 10).await;
    let job = submit(store, &u, p.id, 20).await;
    let epoch = lead(store, "a", 30).await;
    start(store, epoch, job.id, n1.id, 30).await;

    // The wrong node may not report on the task.
    let err = store
        .report_task(
            TaskReport {
                node: n2.id,
                job: job.id,
                fence: 1,
                task: 0,
                exit_code: None,
            },
            40,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Fenced(_)), "{err}");

    // Node 1 goes silent: its attempt is lost and the job requeued.
    store.heartbeat(n2.id, 20_000).await.unwrap();
    let lost = store.mark_lost_nodes(15_000, 20_000).await.unwrap();
    assert_eq!(lost, vec![n1.id]);
    let j = store.get_job(job.id).await.unwrap();
    assert_eq!(j.state, JobState::Queued);
    assert_eq!(store.get_node(n1.id).await.unwrap().state, NodeState::Down);
    let attempts = store.list_attempts(job.id).await.unwrap();
    assert_eq!(attempts[0].state, AttemptState::NodeLost);

    // Restarted elsewhere as attempt 2; the old agent's late reports are refused.
    let a2 = start(store, epoch, job.id, n2.id, 21_000).await;
    assert_eq!(a2.fence, 2);
    for fence in [1, 3] {
        let err = store
            .report_task(
                TaskReport {
                    node: n1.id,
                    job: job.id,
                    fence,
                    task: 0,
                    exit_code: Some(0),
                },
                22_000,
            )
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Fenced(_)), "{err}");
        assert!(
            store
                .append_log(n1.id, job.id, fence, 0, b"x", None, 22_000)
                .await
                .is_err()
        );
    }
    // The lost node comes back when it heartbeats.
    assert_eq!(
        store.heartbeat(n1.id, 23_000).await.unwrap().state,
        NodeState::Up
    );
}

pub async fn cancellation(store: &dyn Store) {
    let (_, p, u) = tenant(store, "unist").await;
    let n = node(store, "gpu-001", 10).await;
    let queued = submit(store, &u, p.id, 20).await;
    let c = store
        .cancel_job(&Actor::user(&u), queued.id, 21)
        .await
        .unwrap();
    assert_eq!(c.state, JobState::Cancelled);
    let err = store
        .cancel_job(&Actor::user(&u), queued.id, 22)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict { .. }), "{err}");

    let running = submit(store, &u, p.id, 30).await;
    let epoch = lead(store, "a", 30).await;
    start(store, epoch, running.id, n.id, 31).await;
    let c = store
        .cancel_job(&Actor::user(&u), running.id, 40)
        .await
        .unwrap();
    assert_eq!(c.state, JobState::Stopping);
    let work = store.assignments(n.id).await.unwrap();
    assert_eq!(work[0].attempt.state, AttemptState::Stopping);
    assert_eq!(work[0].attempt.stop_reason, Some(StopReason::Cancel));
    store
        .report_task(
            TaskReport {
                node: n.id,
                job: running.id,
                fence: 1,
                task: 0,
                exit_code: Some(143),
            },
            50,
        )
        .await
        .unwrap();
    assert_eq!(
        store.get_job(running.id).await.unwrap().state,
        JobState::Cancelled
    );
}

fn batch_options() -> haneul_model::BatchOptions {
    haneul_model::BatchOptions {
        output: Some("logs/%x-%j.out".into()),
        error: Some("logs/%x-%j.err".into()),
        chdir: Some("/scratch/u".into()),
        account: Some("kaist-llm".into()),
        signal: Some("B:USR1@90".into()),
        requeue: Some(false),
        ..Default::default()
    }
}

pub async fn preemption_and_time_limit(store: &dyn Store) {
    let (_, p, u) = tenant(store, "gist").await;
    let n = node(store, "gpu-001", 10).await;
    let mut s = spec(p.id, 1);
    s.time_limit = Some(Span::from_secs(60));
    let limited = store
        .submit_job(
            &Actor::user(&u),
            NewJob {
                user_id: u.id,
                spec: s,
                command: vec!["sleep".into()],
                container_image: Some("/srv/images/rootfs".into()),
                batch: Some(batch_options()),
                idempotency: None,
                array: None,
                interactive: true,
            },
            20,
        )
        .await
        .unwrap();
    assert_eq!(
        store
            .get_job(limited.id)
            .await
            .unwrap()
            .container_image
            .as_deref(),
        Some("/srv/images/rootfs")
    );
    // A batch script's options come back as they went in, on the job and on its assignment.
    assert_eq!(
        store.get_job(limited.id).await.unwrap().batch,
        Some(batch_options())
    );
    // So does the interactive mark, which other jobs do not carry.
    assert!(store.get_job(limited.id).await.unwrap().interactive);
    let epoch = lead(store, "a", 30).await;
    let a = start(store, epoch, limited.id, n.id, 30).await;
    assert_eq!(
        store.assignments(n.id).await.unwrap()[0]
            .job
            .container_image
            .as_deref(),
        Some("/srv/images/rootfs")
    );
    assert_eq!(
        store.assignments(n.id).await.unwrap()[0].job.batch,
        Some(batch_options())
    );
    assert!(store.assignments(n.id).await.unwrap()[0].job.interactive);
    assert_eq!(a.deadline, Some(60_030));
    assert!(store.overdue_attempts(60_000).await.unwrap().is_empty());
    assert_eq!(store.overdue_attempts(60_031).await.unwrap()[0].id, a.id);
    store
        .request_stop(a.id, StopReason::TimeLimit, 60_031, 60_031)
        .await
        .unwrap();
    assert!(store.overdue_attempts(60_032).await.unwrap().is_empty());
    let report = |job: i64, code| TaskReport {
        node: n.id,
        job,
        fence: 1,
        task: 0,
        exit_code: Some(code),
    };
    store
        .report_task(report(limited.id, 137), 60_040)
        .await
        .unwrap();
    assert_eq!(
        store.get_job(limited.id).await.unwrap().state,
        JobState::TimedOut
    );

    let victim = submit(store, &u, p.id, 70_000).await;
    let a = start(store, epoch, victim.id, n.id, 70_000).await;
    store
        .request_stop(a.id, StopReason::Preempt, 80_000, 70_500)
        .await
        .unwrap();
    store
        .report_task(report(victim.id, 143), 71_000)
        .await
        .unwrap();
    let j = store.get_job(victim.id).await.unwrap();
    assert_eq!(j.state, JobState::Queued);
    let kinds: Vec<EventKind> = store
        .job_events(victim.id)
        .await
        .unwrap()
        .iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(kinds.last(), Some(&EventKind::Requeued));
}

pub async fn lease_fences_a_deposed_leader(store: &dyn Store) {
    let (_, p, u) = tenant(store, "kisti").await;
    let n = node(store, "gpu-001", 0).await;
    let job = submit(store, &u, p.id, 0).await;
    let ea = store
        .acquire_lease("controller", "a", 1_000, 0)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        store
            .acquire_lease("controller", "a", 1_000, 500)
            .await
            .unwrap(),
        Some(ea),
        "renewal keeps the epoch"
    );
    assert_eq!(
        store
            .acquire_lease("controller", "b", 1_000, 900)
            .await
            .unwrap(),
        None,
        "a live lease is not taken"
    );
    // A standby names the leader from its lease; an expired one names no one.
    let holder = |now| store.lease_holder("controller", now);
    assert_eq!(holder(900).await.unwrap().as_deref(), Some("a"));
    assert_eq!(holder(1_500).await.unwrap(), None);
    let eb = store
        .acquire_lease("controller", "b", 1_000, 1_600)
        .await
        .unwrap()
        .unwrap();
    assert!(eb > ea);
    // The old leader wakes up and tries to start work under its old epoch: refused.
    let err = store
        .start_attempts(
            "a",
            ea,
            vec![NewAttempt {
                job_id: job.id,
                placement: placement(n.id, vec![0, 1]),
                gpu_model: None,
                borrowing: false,
            }],
            1_700,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotLeader), "{err}");
    assert_eq!(store.get_job(job.id).await.unwrap().state, JobState::Queued);
    assert_eq!(holder(1_700).await.unwrap().as_deref(), Some("b"));
    store.release_lease("controller", "b").await.unwrap();
    assert_eq!(
        holder(1_700).await.unwrap(),
        None,
        "a released lease names no one"
    );
    assert!(
        store
            .acquire_lease("controller", "a", 1_000, 1_800)
            .await
            .unwrap()
            .is_some(),
        "a released lease is free at once"
    );
    // A renewal that came late, with no one taking the lease meanwhile, keeps the epoch: no
    // other leader decided anything in between, so the leader need not start over.
    let lapse = |holder: &'static str, now| store.acquire_lease("lapse", holder, 1_000, now);
    let first = lapse("a", 0).await.unwrap().unwrap();
    assert_eq!(lapse("a", 5_000).await.unwrap(), Some(first));
    let other = lapse("b", 10_000).await.unwrap().unwrap();
    assert!(other > first, "a lease taken by another moves the epoch");
    let back = lapse("a", 20_000).await.unwrap().unwrap();
    assert!(back > other, "so does taking it back");
}

pub async fn audit_is_a_chain(store: &dyn Store) {
    let (_, p, u) = tenant(store, "etri").await;
    submit(store, &u, p.id, 5).await;
    let entries = store.list_audit(0, 100).await.unwrap();
    let actions: Vec<&str> = entries.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(
        actions,
        vec!["org.create", "project.create", "user.create", "job.submit"]
    );
    assert_eq!(entries[0].prev_hash, "");
    for w in entries.windows(2) {
        assert_eq!(w[1].prev_hash, w[0].hash);
    }
    assert_eq!(store.verify_audit().await.unwrap(), 4);
}

pub async fn projects_and_awards(store: &dyn Store) {
    let (o, p, _) = tenant(store, "kist").await;
    let mut quotas = BTreeMap::new();
    quotas.insert(
        GpuModel::new("H200").unwrap(),
        haneul_model::Quota {
            guaranteed: MilliGpu::gpus(8),
            borrow_limit: Some(MilliGpu::gpus(8)),
        },
    );
    let q = store
        .create_project(
            &admin(),
            NewProject {
                org_id: o.id,
                name: "llm".into(),
                weight: 3,
                quotas: quotas.clone(),
                gid_range: Default::default(),
            },
            2,
        )
        .await
        .unwrap();
    assert_eq!(store.get_project(q.id).await.unwrap().quotas, quotas);
    let a = store
        .create_award(
            &admin(),
            NewAward {
                project_id: p.id,
                gpu_model: GpuModel::new("H200").unwrap(),
                gpu_hours: 1000,
                valid_from: 0,
                valid_until: 100,
                gpu_quota: 0,
                application_id: None,
            },
            3,
        )
        .await
        .unwrap();
    assert_eq!(store.list_awards(Some(p.id)).await.unwrap(), vec![a]);
    assert!(store.list_awards(Some(q.id)).await.unwrap().is_empty());
    let bad = store
        .create_award(
            &admin(),
            NewAward {
                project_id: p.id,
                gpu_model: GpuModel::new("H200").unwrap(),
                gpu_hours: 1,
                valid_from: 10,
                valid_until: 5,
                gpu_quota: 0,
                application_id: None,
            },
            4,
        )
        .await
        .unwrap_err();
    assert!(matches!(
        bad,
        StoreError::Invalid {
            field: "valid_until",
            ..
        }
    ));
    let filter = JobFilter {
        projects: Some(vec![q.id]),
        limit: 10,
        ..JobFilter::default()
    };
    assert!(store.list_jobs(&filter).await.unwrap().is_empty());
}

pub async fn group_commit(store: &dyn Store) {
    let (_, p, u) = tenant(store, "kaist-batch").await;
    let n = node(store, "gpu-001", 10).await;
    let batch: Vec<(Actor, NewJob)> = (0..50)
        .map(|_| {
            (
                Actor::user(&u),
                NewJob {
                    user_id: u.id,
                    spec: spec(p.id, 1),
                    command: vec!["true".into()],
                    container_image: Some("ubuntu:24.04".into()),
                    batch: None,
                    idempotency: None,
                    array: None,
                    interactive: false,
                },
            )
        })
        .collect();
    let jobs = store.submit_jobs(batch, 20).await.unwrap();
    assert_eq!(jobs.len(), 50);
    assert!(
        jobs.iter()
            .all(|j| j.container_image.as_deref() == Some("ubuntu:24.04"))
    );
    assert!(jobs.windows(2).all(|w| w[1].id > w[0].id));
    assert_eq!(store.snapshot().await.unwrap().queued.len(), 50);
    assert_eq!(store.verify_audit().await.unwrap(), 3 + 1 + 50);
    // One bad job (an unknown project) fails the whole batch: nothing half-written.
    let mut bad = spec(p.id, 1);
    bad.project = ProjectId(9_999);
    let mut with_bad = one_gpu_jobs(&u, p.id, 2);
    with_bad[1].1.spec = bad;
    let err = store.submit_jobs(with_bad, 30).await;
    assert!(err.is_err());
    assert_eq!(store.snapshot().await.unwrap().queued.len(), 50);
    // One batched start: a job cancelled since the decision is skipped, the rest start once.
    store
        .cancel_job(&Actor::user(&u), jobs[7].id, 35)
        .await
        .unwrap();
    let epoch = lead(store, "a", 35).await;
    let starts = jobs
        .iter()
        .enumerate()
        .map(|(i, j)| NewAttempt {
            job_id: j.id,
            placement: placement(n.id, vec![(i % 8) as u32]),
            gpu_model: None,
            borrowing: false,
        })
        .collect();
    let (started, skipped) = store.start_attempts("a", epoch, starts, 36).await.unwrap();
    assert_eq!(skipped, vec![jobs[7].id]);
    assert_eq!(started.len(), 49);
    assert!(
        started
            .iter()
            .all(|a| a.fence == 1 && a.state == AttemptState::Assigned)
    );
    assert_eq!(store.assignments(n.id).await.unwrap().len(), 49);
    let kinds: Vec<EventKind> = store
        .job_events(jobs[0].id)
        .await
        .unwrap()
        .iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(kinds, vec![EventKind::Submitted, EventKind::Started]);
    let beats = store.heartbeats(&[n.id, 12_345], 40).await.unwrap();
    assert_eq!(beats[0].as_ref().unwrap().last_heartbeat, 40);
    assert!(beats[1].is_none());
}

fn h200() -> GpuModel {
    GpuModel::new("H200").unwrap()
}

fn award(project: i64, hours: i64, from: i64, until: i64) -> NewAward {
    NewAward {
        project_id: project,
        gpu_model: h200(),
        gpu_hours: hours,
        valid_from: from,
        valid_until: until,
        gpu_quota: 2,
        application_id: None,
    }
}

/// Reports the one task of `job`'s attempt `fence` started at `now` and done an hour later.
async fn finish(store: &dyn Store, job: i64, fence: i64, node: i64, now: i64) {
    store
        .report_task(
            TaskReport {
                node,
                job,
                fence,
                task: 0,
                exit_code: None,
            },
            now,
        )
        .await
        .unwrap();
    store
        .report_task(
            TaskReport {
                node,
                job,
                fence,
                task: 0,
                exit_code: Some(0),
            },
            now + 3_600_000,
        )
        .await
        .unwrap();
}

pub async fn ledger_charges_each_attempt_once(store: &dyn Store) {
    let (o, p, u) = tenant(store, "kisti").await;
    let n = node(store, "n1", 1).await;
    let epoch = lead(store, "a", 1).await;
    let a = store
        .create_award(&admin(), award(p.id, 10, 0, i64::MAX / 2), 1)
        .await
        .unwrap();
    store
        .set_gpu_weight(&admin(), &h200(), 1500, 1)
        .await
        .unwrap();
    // One hour on 2 GPUs at weight 1.5: 2 GPU-hours used, 3 charged.
    let j = submit(store, &u, p.id, 2).await;
    let at = start(store, epoch, j.id, n.id, 10).await;
    finish(store, j.id, at.fence, n.id, 10).await;
    let rows = store.ledger(None, 0, i64::MAX).await.unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    let r = &rows[0];
    assert_eq!(
        (r.kind, r.attempt_id, r.project_id, r.org_id, r.award_id),
        (LedgerKind::Charge, at.id, p.id, o.id, Some(a.id))
    );
    assert_eq!(
        (r.gpu_ms, r.weight_milli, r.charged_ms),
        (7_200_000, 1500, 10_800_000)
    );
    let b = &store.award_balances(Some(p.id)).await.unwrap()[0];
    assert_eq!((b.granted_ms, b.used_ms), (36_000_000, 10_800_000));

    // An attempt lost with its node is charged and refunded in the same transaction.
    let j2 = submit(store, &u, p.id, 20).await;
    let at2 = start(store, epoch, j2.id, n.id, 30).await;
    store
        .report_task(
            TaskReport {
                node: n.id,
                job: j2.id,
                fence: at2.fence,
                task: 0,
                exit_code: None,
            },
            40,
        )
        .await
        .unwrap();
    assert_eq!(
        store.mark_lost_nodes(1_000_000, 1_000_040).await.unwrap(),
        vec![n.id]
    );
    let rows = store.ledger(Some(p.id), 0, i64::MAX).await.unwrap();
    let kinds: Vec<(LedgerKind, i64, i64)> = rows
        .iter()
        .map(|r| (r.kind, r.attempt_id, r.charged_ms))
        .collect();
    assert_eq!(
        kinds,
        vec![
            (LedgerKind::Charge, at.id, 10_800_000),
            (LedgerKind::Charge, at2.id, 3_000_000),
            (LedgerKind::Refund, at2.id, -3_000_000),
        ]
    );
    let b = &store.award_balances(Some(p.id)).await.unwrap()[0];
    assert_eq!(b.used_ms, 10_800_000);
    // Running totals from the ledger's charge rows give what summing every attempt gives.
    let (counted, last) = store.usage_after(0).await.unwrap();
    assert_eq!(counted, store.usage(None).await.unwrap());
    assert_eq!(
        counted.iter().map(|u| u.gpu_ms).sum::<i64>(),
        7_200_000 + 2_000_000,
        "both attempts' GPU time, the lost one's too"
    );
    assert_eq!(store.usage_after(last).await.unwrap(), (Vec::new(), last));
    // The time window selects rows by when they were written.
    assert_eq!(store.ledger(None, 0, 2_000_000).await.unwrap().len(), 2);
    assert_eq!(
        store
            .gpu_weights()
            .await
            .unwrap()
            .iter()
            .find(|w| w.0 == "H200")
            .unwrap()
            .1,
        1500
    );
}

/// A batch of reports that ends several attempts charges them in the order of their reports,
/// each taking from what the ones before it left: an award that expires first is used while it
/// has time left, then the next one.
pub async fn charges_of_a_report_batch_take_from_awards_in_turn(store: &dyn Store) {
    let (o, p, u) = tenant(store, "kisti-batch").await;
    let n = node(store, "n1", 1).await;
    let epoch = lead(store, "a", 1).await;
    let first = store
        .create_award(&admin(), award(p.id, 3, 0, 100_000_000), 1)
        .await
        .unwrap();
    let later = store
        .create_award(&admin(), award(p.id, 100, 0, i64::MAX / 2), 1)
        .await
        .unwrap();
    store
        .set_gpu_weight(&admin(), &h200(), 1000, 1)
        .await
        .unwrap();
    let mut attempts = Vec::new();
    for _ in 0..3 {
        let j = submit(store, &u, p.id, 5).await;
        attempts.push(start(store, epoch, j.id, n.id, 10).await);
    }
    let report = |a: &AttemptRecord, exit_code: Option<i64>| TaskReport {
        node: n.id,
        job: a.job_id,
        fence: a.fence,
        task: 0,
        exit_code,
    };
    let running: Vec<_> = attempts.iter().map(|a| report(a, None)).collect();
    assert!(
        store
            .report_tasks(&running, 10)
            .await
            .unwrap()
            .iter()
            .all(Result::is_ok)
    );
    // Each ran an hour on 2 GPUs: 2 GPU-hours, 7.2 M ms charged at weight 1. The first award
    // (3 GPU-hours) has time left for the first two charges; the third goes to the next.
    let exits: Vec<_> = attempts.iter().map(|a| report(a, Some(0))).collect();
    let answers = store.report_tasks(&exits, 3_600_010).await.unwrap();
    assert!(answers.iter().all(Result::is_ok), "{answers:?}");
    let rows = store.ledger(Some(p.id), 0, i64::MAX).await.unwrap();
    let charged: Vec<_> = rows
        .iter()
        .map(|r| (r.kind, r.attempt_id, r.org_id, r.award_id, r.charged_ms))
        .collect();
    assert_eq!(
        charged,
        vec![
            (
                LedgerKind::Charge,
                attempts[0].id,
                o.id,
                Some(first.id),
                7_200_000
            ),
            (
                LedgerKind::Charge,
                attempts[1].id,
                o.id,
                Some(first.id),
                7_200_000
            ),
            (
                LedgerKind::Charge,
                attempts[2].id,
                o.id,
                Some(later.id),
                7_200_000
            ),
        ]
    );
    let balances = store.award_balances(Some(p.id)).await.unwrap();
    let used: Vec<_> = balances.iter().map(|b| (b.award.id, b.used_ms)).collect();
    assert_eq!(used, vec![(first.id, 14_400_000), (later.id, 7_200_000)]);
}

pub async fn awards_change_and_balance(store: &dyn Store) {
    let (_, p, _) = tenant(store, "snu").await;
    let a = store
        .create_award(&admin(), award(p.id, 100, 0, 1000), 1)
        .await
        .unwrap();
    assert_eq!(a.gpu_quota, 2);
    store
        .adjust_award(&admin(), a.id, 50, "second phase", 2)
        .await
        .unwrap();
    store
        .adjust_award(&admin(), a.id, -30, "idle for a month", 3)
        .await
        .unwrap();
    let too_much = store
        .adjust_award(&admin(), a.id, -1000, "all of it", 4)
        .await
        .unwrap_err();
    assert!(
        matches!(
            too_much,
            StoreError::Invalid {
                field: "gpu_hours",
                ..
            }
        ),
        "{too_much}"
    );
    assert!(store.adjust_award(&admin(), 999, 1, "x", 4).await.is_err());
    let changes = store.award_changes(a.id).await.unwrap();
    assert_eq!(
        changes.iter().map(|c| c.gpu_hours).collect::<Vec<_>>(),
        vec![50, -30]
    );
    let b = &store.award_balances(None).await.unwrap()[0];
    assert_eq!((b.granted_ms, b.used_ms), (120 * 3_600_000, 0));
    let actions: Vec<String> = store
        .list_audit(0, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.action)
        .collect();
    assert!(actions.contains(&"award.top-up".to_string()));
    assert!(actions.contains(&"award.take-back".to_string()));
    // Notices are raised once per kind, project and award.
    assert!(
        store
            .raise_notice("award.warning", p.id, a.id, "{}", 5)
            .await
            .unwrap()
    );
    assert!(
        !store
            .raise_notice("award.warning", p.id, a.id, "{}", 6)
            .await
            .unwrap()
    );
    assert_eq!(store.list_notices().await.unwrap().len(), 1);
    assert!(store.verify_audit().await.unwrap() > 0);
}

pub async fn compliance_records(store: &dyn Store) {
    let o = store
        .create_org(
            &admin(),
            NewOrg {
                name: "acme".into(),
                class: "enterprise".into(),
                country: "KR".into(),
                parent: None,
                parent_country: Some("SG".into()),
                verification: Verification::Pending,
            },
            1,
        )
        .await
        .unwrap();
    assert_eq!(o.verification, Verification::Pending);
    assert_eq!(o.parent_country.as_deref(), Some("SG"));
    let v = store
        .set_org_verification(&admin(), o.id, Verification::Verified, 2)
        .await
        .unwrap();
    assert_eq!(v.verification, Verification::Verified);
    assert_eq!(
        store.get_org(o.id).await.unwrap().verification,
        Verification::Verified
    );
    let n = store
        .import_denied_parties(
            &admin(),
            vec![
                DeniedParty {
                    name: "Bad Corp.".into(),
                    country: "XX".into(),
                    source: "test".into(),
                },
                DeniedParty {
                    name: "BAD CORP".into(),
                    country: "YY".into(),
                    source: "test".into(),
                },
            ],
            3,
        )
        .await
        .unwrap();
    assert_eq!(n, 2);
    // Same key: the second row replaced the first.
    let list = store.list_denied_parties().await.unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].country, "YY");
    store
        .record_decision(&admin(), "org.refuse", "org/evil", "{\"rule\":\"x\"}", 4)
        .await
        .unwrap();
    let last = store.list_audit(0, 100).await.unwrap().pop().unwrap();
    assert_eq!(
        (last.action.as_str(), last.target.as_str()),
        ("org.refuse", "org/evil")
    );
}

pub async fn calls_applications_and_awards(store: &dyn Store) {
    let (_, p, _) = tenant(store, "postech").await;
    let (_, q, _) = tenant(store, "gist").await;
    let c = store
        .create_call(
            &admin(),
            NewCall {
                programme: "national-ai".into(),
                name: "2027-spring".into(),
                gpu_model: h200(),
                capacity_gpus: 8,
                tracks: "[]".into(),
            },
            1,
        )
        .await
        .unwrap();
    assert_eq!(c.state, CallState::Open);
    let app = |project: i64| NewApplication {
        call_id: c.id,
        project_id: project,
        track: "small".into(),
        gpus: 4,
        days: 30,
        region: "KR".into(),
        plan: "train a model".into(),
    };
    let a1 = store
        .create_application(&admin(), app(p.id), 2)
        .await
        .unwrap();
    let a2 = store
        .create_application(&admin(), app(q.id), 2)
        .await
        .unwrap();
    assert!(
        store
            .create_application(&admin(), app(p.id), 2)
            .await
            .is_err()
    );
    store
        .score_application(&admin(), a1.id, "kim", 7, "", 3)
        .await
        .unwrap();
    store
        .score_application(&admin(), a1.id, "lee", 9, "", 3)
        .await
        .unwrap();
    let s = store
        .score_application(&admin(), a1.id, "kim", 8, "revised", 4)
        .await
        .unwrap();
    let scored: Vec<_> = s
        .scores
        .iter()
        .map(|r| (r.reviewer.as_str(), r.score, r.comment.as_str()))
        .collect();
    assert_eq!(scored, vec![("kim", 8, "revised"), ("lee", 9, "")]);
    let mut aw = award(p.id, 2880, 5, 100);
    aw.application_id = Some(a1.id);
    let made = store
        .award_call(
            &admin(),
            c.id,
            vec![
                CallDecision::Award(aw),
                CallDecision::Decline {
                    application_id: a2.id,
                    reason: "below the cut".into(),
                },
            ],
            5,
        )
        .await
        .unwrap();
    assert_eq!(made.len(), 1);
    assert_eq!(made[0].application_id, Some(a1.id));
    let apps = store.list_applications(c.id).await.unwrap();
    assert_eq!(
        apps.iter().map(|a| a.state).collect::<Vec<_>>(),
        vec![ApplicationState::Awarded, ApplicationState::Declined]
    );
    assert_eq!(
        store.get_call(c.id).await.unwrap().state,
        CallState::Awarded
    );
    assert!(store.award_call(&admin(), c.id, vec![], 6).await.is_err());
    assert!(
        store
            .create_application(&admin(), app(q.id), 7)
            .await
            .is_err()
    );
    assert!(
        store
            .score_application(&admin(), a2.id, "kim", 1, "", 8)
            .await
            .is_err()
    );
}

/// An agent's limits and health: the first failing check drains the node and requeues its
/// running job in one step, repeats change nothing, a pass resumes only a health-made drain.
pub async fn node_health_drains_and_requeues(store: &dyn Store) {
    let (_, p, u) = tenant(store, "kaist").await;
    let n = node(store, "gpu-001", 0).await;
    assert_eq!((n.limits.as_deref(), n.health.as_deref()), (None, None));
    assert_eq!(n.container_runtime, None);
    let n = node_with_agent(
        store,
        "gpu-001",
        agent_says(Some("rlimit"), Some("10.0.0.7"), Some("podman")),
        1,
    )
    .await;
    assert_eq!(n.limits.as_deref(), Some("rlimit"));
    assert_eq!(n.address.as_deref(), Some("10.0.0.7"));
    assert_eq!(n.container_runtime.as_deref(), Some("podman"));
    assert_eq!(
        store.list_nodes().await.unwrap()[0]
            .container_runtime
            .as_deref(),
        Some("podman")
    );
    let epoch = lead(store, "a", 0).await;
    let job = submit(store, &u, p.id, 1).await;
    let a = start(store, epoch, job.id, n.id, 2).await;
    assert_eq!(
        store.assignments(n.id).await.unwrap()[0].peers,
        vec!["10.0.0.7"]
    );

    let agent = Actor::system("agent");
    let (rec, requeued) = store
        .report_node_health(&agent, n.id, Some("GPU 3 has 2 uncorrected ECC errors"), 10)
        .await
        .unwrap();
    assert_eq!(requeued, vec![job.id]);
    assert_eq!(rec.state, NodeState::Draining);
    assert_eq!(rec.down_reason.as_deref(), Some("unhealthy"));
    assert_eq!(
        rec.health.as_deref(),
        Some("GPU 3 has 2 uncorrected ECC errors")
    );
    assert_eq!(store.get_job(job.id).await.unwrap().state, JobState::Queued);
    assert_eq!(
        store.list_attempts(job.id).await.unwrap()[0].state,
        AttemptState::NodeLost
    );
    assert!(store.assignments(n.id).await.unwrap().is_empty());
    let err = store
        .report_task(
            TaskReport {
                node: n.id,
                job: job.id,
                fence: a.fence,
                task: 0,
                exit_code: Some(143),
            },
            11,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Fenced(_)), "{err}");
    // Re-registering (an agent restart) keeps the health drain.
    let again = node(store, "gpu-001", 12).await;
    assert_eq!(again.state, NodeState::Draining);
    assert_eq!(again.down_reason.as_deref(), Some("unhealthy"));
    let (rec, requeued) = store
        .report_node_health(&agent, n.id, Some("still bad"), 13)
        .await
        .unwrap();
    assert!(requeued.is_empty());
    assert_eq!(rec.health.as_deref(), Some("still bad"));

    let (rec, _) = store
        .report_node_health(&agent, n.id, None, 20)
        .await
        .unwrap();
    assert_eq!(rec.state, NodeState::Up);
    assert_eq!((rec.down_reason, rec.health), (None, None));

    // Up again while unhealthy (an operator resumed it, or it was lost and came back): the
    // next failing report drains it again.
    store
        .report_node_health(&agent, n.id, Some("hot"), 21)
        .await
        .unwrap();
    store
        .set_node_state(&admin(), n.id, NodeState::Up, 22)
        .await
        .unwrap();
    let (rec, _) = store
        .report_node_health(&agent, n.id, Some("hot"), 23)
        .await
        .unwrap();
    assert_eq!(rec.state, NodeState::Draining);
    store
        .report_node_health(&agent, n.id, None, 24)
        .await
        .unwrap();

    // An operator's drain is not undone by a passing check.
    store
        .report_node_health(&agent, n.id, Some("hot"), 30)
        .await
        .unwrap();
    store
        .set_node_state(&admin(), n.id, NodeState::Draining, 31)
        .await
        .unwrap();
    let (rec, _) = store
        .report_node_health(&agent, n.id, None, 32)
        .await
        .unwrap();
    assert_eq!(rec.state, NodeState::Draining);
    assert_eq!(rec.down_reason, None);

    // An operator's reason goes into the audit entry the action makes, and nowhere else.
    store
        .set_node_state(&admin(), n.id, NodeState::Up, 40)
        .await
        .unwrap();
    let why = admin().because(Some("  fan \"3\" failing  "));
    store
        .set_node_state(&why, n.id, NodeState::Draining, 41)
        .await
        .unwrap();
    let head = store.audit_head().await.unwrap().unwrap();
    let detail: serde_json::Value = serde_json::from_str(&head.detail).unwrap();
    assert_eq!(detail["reason"], "fan \"3\" failing", "{}", head.detail);
    assert_eq!(head.at, 41);
    let before = store.list_audit(0, 10_000).await.unwrap();
    let earlier = &before[before.len() - 2];
    assert!(!earlier.detail.contains("reason"), "{}", earlier.detail);
    assert!(admin().because(Some("   ")).reason.is_none());
}

pub async fn fleet_summary_and_ledger_spans(store: &dyn Store) {
    let (_, p, u) = tenant(store, "kisti").await;
    let (_, other, _) = tenant(store, "snu").await;
    let n1 = node(store, "n1", 1).await;
    let n2 = node(store, "n2", 1).await;
    let n3 = node(store, "n3", 1).await;
    let epoch = lead(store, "a", 1).await;
    let running = submit(store, &u, p.id, 2).await;
    start(store, epoch, running.id, n1.id, 10).await;
    submit(store, &u, p.id, 3).await;
    submit(store, &u, p.id, 4).await;
    store
        .set_node_state(&admin(), n2.id, NodeState::Draining, 5)
        .await
        .unwrap();
    store.heartbeats(&[n1.id, n2.id], 100).await.unwrap();
    assert_eq!(store.mark_lost_nodes(50, 100).await.unwrap(), vec![n3.id]);

    let s = store.fleet_summary().await.unwrap();
    assert_eq!(
        s.gpus,
        vec![FleetGpus {
            pool_id: n1.pool_id,
            pool: DEFAULT_POOL.into(),
            gpu_model: "H200".into(),
            nodes: 3,
            total: 24,
            allocated: 2,
            allocated_milli: 2000,
            idle: 6,
            draining: 8,
            down: 8,
        }]
    );
    assert_eq!(
        s.queue,
        vec![ProjectQueue {
            project_id: p.id,
            queued_jobs: 2,
            queued_gpu_milli: 4000,
            running_jobs: 1,
        }]
    );
    assert_eq!(
        s.nodes,
        vec![NodeAllocation {
            node_id: n1.id,
            allocated: 2,
            allocated_milli: 2000,
        }]
    );

    // The attempt runs from 1000 for an hour; its charge is written when it ends.
    finish(store, running.id, 1, n1.id, 1000).await;
    let end = 1000 + 3_600_000;
    let spans = store.ledger_spans(None, 0, 2_000_000).await.unwrap();
    assert_eq!(spans.len(), 1, "{spans:?}");
    assert_eq!(spans[0].started_at, 1000);
    assert_eq!(spans[0].entry.at, end);
    assert_eq!(spans[0].entry.gpu_ms, 2 * 3_600_000);
    assert_eq!(spans[0].entry.kind, LedgerKind::Charge);
    // Only spans that overlap the window: ending at its start or starting at its end do not.
    assert!(
        store
            .ledger_spans(None, end, i64::MAX)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(store.ledger_spans(None, 0, 1000).await.unwrap().is_empty());
    assert_eq!(
        store
            .ledger_spans(Some(&[p.id]), end - 1, end)
            .await
            .unwrap()
            .len(),
        1
    );
    assert!(
        store
            .ledger_spans(Some(&[other.id]), 0, i64::MAX)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .ledger_spans(Some(&[]), 0, i64::MAX)
            .await
            .unwrap()
            .is_empty()
    );
    let s = store.fleet_summary().await.unwrap();
    assert_eq!((s.gpus[0].allocated, s.gpus[0].idle), (0, 8));
    assert!(s.nodes.is_empty());
    assert_eq!(s.queue[0].running_jobs, 0);
}

/// Instantiates every test of the suite for one backend; `$open` is an async block that returns
/// `(store, guard)`, the guard keeping the database alive for the test.
/// Whatever a test did, every audit entry it left has a detail that parses as JSON: operators
/// and their tools read the log as data, so no entry may carry Rust's debug formatting.
async fn every_audit_detail_is_json(store: &dyn Store) {
    let mut after = 0;
    loop {
        let page = store.list_audit(after, 500).await.unwrap();
        let Some(last) = page.last() else { break };
        after = last.seq;
        for e in &page {
            if let Err(err) = serde_json::from_str::<serde_json::Value>(&e.detail) {
                panic!(
                    "audit entry {} ({}) has a detail that is not JSON ({err}): {}",
                    e.seq, e.action, e.detail
                );
            }
        }
    }
}

fn sample(job: i64, gpu: i64, at: i64, util: i64, mem: i64, power: i64) -> GpuSampleRecord {
    GpuSampleRecord {
        job_id: job,
        gpu_uuid: format!("GPU-{gpu}"),
        gpu_index: gpu,
        at,
        period_ms: 10_000,
        util_pct: util,
        mem_mib: mem,
        power_w: power,
        temp_c: 40 + util / 10,
    }
}

pub async fn gpu_telemetry_summaries_series_and_retention(store: &dyn Store) {
    let (_, p, u) = tenant(store, "kisti").await;
    let n = node(store, "gpu-001", 10).await;
    let busy = submit(store, &u, p.id, 20).await;
    let idle = submit(store, &u, p.id, 20).await;
    let minute = 60_000 * 1_000;
    // Two batches for the busy job (the second holds two samples of GPU 0: a backlog), one for
    // the idle job, in two different minutes.
    store
        .record_gpu_samples(
            n.id,
            &[
                sample(busy.id, 0, minute + 1_000, 90, 1_000, 300),
                sample(busy.id, 1, minute + 1_000, 70, 3_000, 200),
                sample(idle.id, 2, minute + 1_000, 0, 10, 60),
            ],
            &[TaskCpuRecord {
                job_id: busy.id,
                fence: 1,
                task: 0,
                cpu_ms: 500,
            }],
        )
        .await
        .unwrap();
    store
        .record_gpu_samples(
            n.id,
            &[
                sample(busy.id, 0, minute + 61_000, 100, 2_000, 360),
                sample(busy.id, 0, minute + 71_000, 50, 1_500, 360),
            ],
            &[
                TaskCpuRecord {
                    job_id: busy.id,
                    fence: 1,
                    task: 0,
                    cpu_ms: 9_000,
                },
                // An older figure arriving late never lowers the total.
                TaskCpuRecord {
                    job_id: busy.id,
                    fence: 1,
                    task: 0,
                    cpu_ms: 7_000,
                },
            ],
        )
        .await
        .unwrap();
    let usage = store.job_gpu_usage(busy.id).await.unwrap();
    assert_eq!(usage.len(), 2, "{usage:?}");
    let g0 = &usage[0];
    assert_eq!((g0.gpu_uuid.as_str(), g0.gpu_index), ("GPU-0", 0));
    assert_eq!(g0.samples, 3);
    assert_eq!(g0.util_sum, 240);
    assert_eq!(g0.util_max, 100);
    assert_eq!(g0.mem_max_mib, 2_000);
    // 300 W + 360 W + 360 W for 10 s each: 1020 * 10 / 3600 Wh.
    assert_eq!(
        g0.energy_mwh,
        300 * 10_000 / 3600 + 2 * (360 * 10_000 / 3600)
    );
    assert_eq!(g0.sampled_ms, 30_000);
    assert_eq!(g0.busy_ms, 9_000 + 10_000 + 5_000);
    assert_eq!((g0.first_at, g0.last_at), (minute + 1_000, minute + 71_000));
    assert_eq!((usage[1].samples, usage[1].util_max), (1, 70));
    assert_eq!(usage[1].node_id, n.id);

    let series = store.job_gpu_minutes(busy.id).await.unwrap();
    let shape: Vec<(i64, &str, i64, i64)> = series
        .iter()
        .map(|m| (m.minute, m.gpu_uuid.as_str(), m.samples, m.util_sum))
        .collect();
    assert_eq!(
        shape,
        vec![
            (minute, "GPU-0", 1, 90),
            (minute, "GPU-1", 1, 70),
            (minute + 60_000, "GPU-0", 2, 150),
        ]
    );
    assert_eq!(series[2].util_max, 100);
    assert_eq!(series[2].power_sum_w, 720);

    let cpu = store.job_task_cpu(busy.id).await.unwrap();
    assert_eq!(
        cpu.iter().map(|c| c.cpu_ms).collect::<Vec<_>>(),
        vec![9_000]
    );

    // The idle policy's view: per job, over the minutes since a point in time.
    let recent = store.recent_gpu_use(minute).await.unwrap();
    let view: Vec<(i64, i64, i64)> = recent
        .iter()
        .map(|r| (r.job_id, r.samples, r.util_sum))
        .collect();
    assert_eq!(view, vec![(busy.id, 4, 310), (idle.id, 1, 0)]);
    let later = store.recent_gpu_use(minute + 60_000).await.unwrap();
    assert_eq!(later.len(), 1);
    assert_eq!(later[0].first_minute, minute + 60_000);

    // Statements: GPU time sampled and busy, and energy, per project.
    let projects = store.project_gpu_use(0, minute * 2).await.unwrap();
    assert_eq!(projects.len(), 1);
    assert_eq!(projects[0].project_id, p.id);
    assert_eq!(projects[0].sampled_gpu_ms, 50_000);
    assert_eq!(projects[0].busy_gpu_ms, 24_000 + 7_000);
    assert!(
        store
            .project_gpu_use(minute * 2, minute * 3)
            .await
            .unwrap()
            .is_empty()
    );

    // Each minute carries its samples' energy, which the hours add up.
    assert_eq!(series[0].energy_mwh, 300 * 10_000 / 3600);
    assert_eq!(series[2].energy_mwh, 2 * (360 * 10_000 / 3600));

    // After their retention, minutes become hours: the first pass folds the first minute of
    // the three GPUs, the second the busy job's next minute into the same hour, adding up.
    let hour = minute - minute % 3_600_000;
    let done = store
        .downsample_gpu_minutes(minute + 60_000, 0)
        .await
        .unwrap();
    assert_eq!(
        done,
        Downsampled {
            minutes: 3,
            hours_dropped: 0
        }
    );
    assert_eq!(store.job_gpu_minutes(busy.id).await.unwrap().len(), 1);
    let done = store
        .downsample_gpu_minutes(minute + 120_000, 0)
        .await
        .unwrap();
    assert_eq!(done.minutes, 1);
    assert!(store.job_gpu_minutes(busy.id).await.unwrap().is_empty());
    let hours = store.job_gpu_hours(busy.id).await.unwrap();
    let shape: Vec<(i64, &str, i64)> = hours
        .iter()
        .map(|h| (h.hour, h.gpu_uuid.as_str(), h.minutes))
        .collect();
    assert_eq!(shape, vec![(hour, "GPU-0", 2), (hour, "GPU-1", 1)]);
    let g0 = &hours[0];
    // Mean of the minutes' means (90 and 75), not of the samples (80): each minute weighs the
    // same whatever the interval was.
    assert_eq!(g0.util_mean_milli_sum, 90_000 + 75_000);
    assert_eq!(g0.util_mean_pct(), 82.5);
    assert_eq!((g0.util_max, g0.mem_max_mib), (100, 2_000));
    assert_eq!(g0.power_mean_mw_sum, 300_000 + 360_000);
    assert_eq!(g0.temp_max_c, 50);
    assert_eq!(
        g0.energy_mwh,
        300 * 10_000 / 3600 + 2 * (360 * 10_000 / 3600)
    );
    assert_eq!(store.job_gpu_hours(idle.id).await.unwrap().len(), 1);
    // The hourly retention drops whole hours; the summaries stay for good.
    let done = store
        .downsample_gpu_minutes(minute + 120_000, hour + 3_600_000)
        .await
        .unwrap();
    assert_eq!(
        done,
        Downsampled {
            minutes: 0,
            hours_dropped: 3
        }
    );
    assert!(store.job_gpu_hours(busy.id).await.unwrap().is_empty());
    assert_eq!(store.job_gpu_usage(busy.id).await.unwrap()[0].samples, 3);
    assert_eq!(store.job_gpu_usage(idle.id).await.unwrap()[0].samples, 1);
}

/// The measured side of underuse and statements: each attempt charged in a period, with its
/// job's utilisation and energy and what the job was charged in all.
pub async fn charged_gpu_use_joins_ledger_and_telemetry(store: &dyn Store) {
    let (_, p, u) = tenant(store, "kisti").await;
    let n = node(store, "n1", 1).await;
    let epoch = lead(store, "a", 1).await;
    store
        .create_award(&admin(), award(p.id, 100, 0, i64::MAX / 2), 1)
        .await
        .unwrap();
    let h = 3_600_000;
    // Three jobs of two GPUs for an hour each; the last never sampled.
    let early = submit(store, &u, p.id, 10).await;
    let a1 = start(store, epoch, early.id, n.id, 10).await;
    finish(store, early.id, a1.fence, n.id, 10).await;
    let later = submit(store, &u, p.id, 20).await;
    let b1 = start(store, epoch, later.id, n.id, 5 * h).await;
    finish(store, later.id, b1.fence, n.id, 5 * h).await;
    let dark = submit(store, &u, p.id, 30).await;
    let c1 = start(store, epoch, dark.id, n.id, 8 * h).await;
    finish(store, dark.id, c1.fence, n.id, 8 * h).await;
    store
        .record_gpu_samples(
            n.id,
            &[
                sample(early.id, 0, 20, 4, 10, 100),
                sample(early.id, 1, 20, 2, 10, 100),
                sample(later.id, 0, 5 * h + 20, 80, 10, 360),
            ],
            &[],
        )
        .await
        .unwrap();
    let all = store.charged_gpu_use(0, i64::MAX).await.unwrap();
    let shape: Vec<(i64, i64, i64, i64, i64)> = all
        .iter()
        .map(|c| {
            (
                c.attempt_id,
                c.job_id,
                c.samples,
                c.util_sum,
                c.job_charged_gpu_ms,
            )
        })
        .collect();
    // Two GPUs for an hour: 2 GPU-hours each; the dark job is absent.
    assert_eq!(
        shape,
        vec![
            (a1.id, early.id, 2, 6, 2 * h),
            (b1.id, later.id, 1, 80, 2 * h)
        ]
    );
    assert_eq!(all[0].energy_mwh, 2 * (100 * 10_000 / 3600));
    assert_eq!(all[1].energy_mwh, 360 * 10_000 / 3600);
    // A period selects attempts by when they were charged (at their end).
    let late = store.charged_gpu_use(2 * h, 7 * h).await.unwrap();
    assert_eq!(
        late.iter().map(|c| c.attempt_id).collect::<Vec<_>>(),
        vec![b1.id]
    );
    assert!(
        store
            .charged_gpu_use(7 * h, 10 * h)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn oidc_links_provision_and_approve(store: &dyn Store) {
    let (o, _, _) = tenant(store, "uni").await;
    let iss = "https://idp.uni.example";
    assert_eq!(store.oidc_link(iss, "sub-1").await.unwrap(), None);
    let new = |name: &str, sub: &str, approved| NewOidcUser {
        user: NewUser {
            name: name.into(),
            role: Role::Member,
            org_id: Some(o.id),
            projects: vec![],
            uid: None,
            gid: None,
            uid_range: IdRange::USERS,
        },
        issuer: iss.into(),
        subject: sub.into(),
        email: Some(format!("{name}@uni.example")),
        approved,
    };
    let (u, link) = store
        .provision_oidc_user(&Actor::system("oidc"), new("kim", "sub-1", false), 10)
        .await
        .unwrap();
    assert_eq!(u.org_id, Some(o.id));
    assert!(u.uid.is_some());
    assert_eq!(link.user_id, u.id);
    assert_eq!(link.approved_at, None);
    assert_eq!(
        store.oidc_link(iss, "sub-1").await.unwrap(),
        Some(link.clone())
    );
    assert_eq!(store.oidc_link_of(u.id).await.unwrap(), Some(link));
    // The same subject twice is a conflict, not a second account.
    let again = store
        .provision_oidc_user(&Actor::system("oidc"), new("kim2", "sub-1", false), 11)
        .await
        .unwrap_err();
    assert!(matches!(again, StoreError::Conflict { .. }), "{again}");
    assert!(
        store
            .list_users()
            .await
            .unwrap()
            .iter()
            .all(|u| u.name != "kim2")
    );
    let approved = store
        .approve_oidc_user(&Actor::system("uni-admin"), u.id, 20)
        .await
        .unwrap();
    assert_eq!(approved.approved_at, Some(20));
    assert_eq!(approved.approved_by.as_deref(), Some("uni-admin"));
    assert!(
        store
            .approve_oidc_user(&Actor::system("x"), u.id, 21)
            .await
            .is_err()
    );
    // Approved at once where the mapping says so.
    let (_, lee) = store
        .provision_oidc_user(&Actor::system("oidc"), new("lee", "sub-2", true), 30)
        .await
        .unwrap();
    assert_eq!(lee.approved_at, Some(30));
    store
        .record_audit(
            &Actor::system("oidc"),
            "user.signin",
            "user/1",
            "{\"via\":\"portal\"}",
            40,
        )
        .await
        .unwrap();
    let actions: Vec<String> = store
        .list_audit(0, 1000)
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.action)
        .collect();
    for want in ["user.provision", "user.approve", "user.signin"] {
        assert!(
            actions.iter().any(|a| a == want),
            "{want} missing from {actions:?}"
        );
    }
    store.verify_audit().await.unwrap();
}

async fn submit_array(
    store: &dyn Store,
    u: &UserRecord,
    project: i64,
    spec_text: &str,
    now: i64,
) -> JobRecord {
    let mut s = spec(project, 2);
    s.name = "sweep".into();
    store
        .submit_jobs(
            vec![(
                Actor::user(u),
                NewJob {
                    user_id: u.id,
                    spec: s,
                    command: vec!["python".into(), "sweep.py".into()],
                    container_image: None,
                    batch: None,
                    idempotency: None,
                    array: Some(haneul_model::ArraySpec::parse(spec_text).unwrap()),
                    interactive: false,
                },
            )],
            now,
        )
        .await
        .unwrap()
        .remove(0)
}

pub async fn arrays_materialise_lazily(store: &dyn Store) {
    let (_, p, u) = tenant(store, "kaist").await;
    let n = node(store, "gpu-001", 10).await;
    // One row stands for the whole array, however many tasks it has.
    let a = submit_array(store, &u, p.id, "0-9%2", 20).await;
    assert_eq!(a.array.as_deref(), Some("0-9%2"));
    assert_eq!(a.array_pending().as_deref(), Some("0-9"));
    let rows = store
        .list_jobs(&JobFilter {
            limit: 100,
            ..JobFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(rows.len(), 1, "the array of ten tasks is one stored job");

    // `%2`: two tasks become jobs, then none until one ends.
    let got = store.materialise_array(a.id, 256, 21).await.unwrap();
    let tasks: Vec<Option<i64>> = got.created.iter().map(|t| t.array_task).collect();
    assert_eq!(tasks, vec![Some(0), Some(1)]);
    assert_eq!((got.live, got.remaining, got.done), (2, 8, false));
    for t in &got.created {
        assert_eq!(t.array_job_id, Some(a.id));
        assert_eq!(t.state, JobState::Queued);
        assert_eq!(t.command, a.command);
        assert!(t.array.is_none());
    }
    let again = store.materialise_array(a.id, 256, 22).await.unwrap();
    assert!(again.created.is_empty(), "the %2 limit holds");
    assert_eq!(
        store
            .get_job(a.id)
            .await
            .unwrap()
            .array_pending()
            .as_deref(),
        Some("2-9")
    );
    let t0 = got.created[0].id;
    let epoch = lead(store, "a", 30).await;
    start(store, epoch, t0, n.id, 31).await;
    assert!(
        store
            .materialise_array(a.id, 256, 32)
            .await
            .unwrap()
            .created
            .is_empty()
    );
    finish(store, t0, 1, n.id, 33).await;
    let next = store.materialise_array(a.id, 256, 3_600_040).await.unwrap();
    assert_eq!(next.created.len(), 1);
    assert_eq!(next.created[0].array_task, Some(2));
    assert_eq!(
        store.array_task(a.id, 2).await.unwrap().map(|t| t.id),
        Some(next.created[0].id)
    );
    assert!(store.array_task(a.id, 5).await.unwrap().is_none());

    // A task not yet a job can be cancelled, and is then passed over.
    let c = store
        .cancel_array_task(&Actor::user(&u), a.id, 3, 3_600_050)
        .await
        .unwrap();
    assert_eq!((c.state, c.array_task), (JobState::Cancelled, Some(3)));
    let err = store
        .cancel_array_task(&Actor::user(&u), a.id, 42, 3_600_050)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound { .. }), "{err}");
    // Cancelling one materialised queued task frees its %N place for task 4 (3 is cancelled).
    store
        .cancel_array_task(&Actor::user(&u), a.id, 1, 3_600_060)
        .await
        .unwrap();
    let more = store.materialise_array(a.id, 256, 3_600_070).await.unwrap();
    let ids: Vec<Option<i64>> = more.created.iter().map(|t| t.array_task).collect();
    assert_eq!(ids, vec![Some(4)]);

    // Cancelling the array cancels every live task and ends it.
    let cancelled = store
        .cancel_job(&Actor::user(&u), a.id, 3_600_080)
        .await
        .unwrap();
    assert_eq!(cancelled.state, JobState::Cancelled);
    for task in [2, 4] {
        let t = store.array_task(a.id, task).await.unwrap().unwrap();
        assert_eq!(t.state, JobState::Cancelled, "task {task}");
    }
    let after = store.materialise_array(a.id, 256, 3_600_090).await.unwrap();
    assert!(after.done && after.created.is_empty());

    // Without %N the window bounds the queued tasks; an array whose tasks all succeed
    // succeeds, with a Finished event for dependants.
    let b = submit_array(store, &u, p.id, "0-999", 4_000_000).await;
    let w = store.materialise_array(b.id, 10, 4_000_001).await.unwrap();
    assert_eq!((w.created.len(), w.remaining), (10, 990));
    let w2 = store.materialise_array(b.id, 10, 4_000_002).await.unwrap();
    assert!(w2.created.is_empty(), "ten already wait");
    let small = submit_array(store, &u, p.id, "5,7", 5_000_000).await;
    let m = store
        .materialise_array(small.id, 256, 5_000_001)
        .await
        .unwrap();
    assert_eq!(m.created.len(), 2);
    let mut at = 5_000_010;
    for t in &m.created {
        let epoch = lead(store, "a", at).await;
        start(store, epoch, t.id, n.id, at).await;
        finish(store, t.id, 1, n.id, at + 1).await;
        at += 3_600_010;
    }
    let end = store.materialise_array(small.id, 256, at).await.unwrap();
    assert!(end.done);
    let done = store.get_job(small.id).await.unwrap();
    assert_eq!(done.state, JobState::Succeeded);
    let events = store.job_events(small.id).await.unwrap();
    assert!(
        events.iter().any(|e| e.kind == EventKind::Finished),
        "{events:?}"
    );
}

/// A gang's assignment on each node names every peer in rank order and carries its owner's
/// identity; an array task's carries its array's spec; a node without live tasks gets none.
pub async fn assignments_of_gangs_and_array_tasks(store: &dyn Store) {
    let (_, p, u) = tenant(store, "kaist").await;
    let n1 = node(store, "gpu-001", 10).await;
    let n2 = node(store, "gpu-002", 10).await;
    let idle = node(store, "gpu-003", 10).await;
    node_with_agent(
        store,
        "gpu-002",
        agent_says(None, Some("10.0.0.2"), None),
        10,
    )
    .await;
    let gang = submit(store, &u, p.id, 20).await;
    let epoch = lead(store, "a", 30).await;
    let two_nodes = Placement {
        tasks: vec![
            TaskPlacement {
                node: NodeId(n1.id as u32),
                gpus: vec![0, 1],
                milli_per_gpu: MilliGpu(1000),
            },
            TaskPlacement {
                node: NodeId(n2.id as u32),
                gpus: vec![6, 7],
                milli_per_gpu: MilliGpu(1000),
            },
        ],
    };
    let (started, _) = store
        .start_attempts(
            "a",
            epoch,
            vec![NewAttempt {
                job_id: gang.id,
                placement: two_nodes,
                gpu_model: Some(GpuModel::new("H200").unwrap()),
                borrowing: false,
            }],
            31,
        )
        .await
        .unwrap();
    let array = submit_array(store, &u, p.id, "3-4", 40).await;
    let made = store.materialise_array(array.id, 256, 41).await.unwrap();
    let first = &made.created[0];
    start(store, epoch, first.id, n2.id, 42).await;

    let on2 = store.assignments(n2.id).await.unwrap();
    assert_eq!(on2.len(), 2, "{on2:?}");
    let g = &on2[0];
    assert_eq!(
        (g.job.id, g.attempt.id, g.task),
        (gang.id, started[0].id, 1)
    );
    assert_eq!(g.gpus, vec![6, 7]);
    assert_eq!(g.task_state, TaskState::Assigned);
    assert_eq!(g.peers, vec!["gpu-001".to_string(), "10.0.0.2".to_string()]);
    assert_eq!(
        (g.user_name.as_str(), g.uid, g.gid),
        (u.name.as_str(), u.uid, u.gid)
    );
    assert_eq!(g.project_gid, p.gid);
    assert!(g.array.is_none());
    let t = &on2[1];
    assert_eq!((t.job.id, t.job.array_task), (first.id, Some(3)));
    assert_eq!(
        t.array.as_ref().map(|a| a.to_string()).as_deref(),
        Some("3-4")
    );
    assert_eq!(t.peers, vec!["10.0.0.2".to_string()]);

    let on1 = store.assignments(n1.id).await.unwrap();
    assert_eq!(on1.len(), 1);
    assert_eq!((on1[0].task, on1[0].gpus.clone()), (0, vec![0, 1]));
    assert_eq!(on1[0].peers, g.peers);
    assert!(store.assignments(idle.id).await.unwrap().is_empty());
}

/// A batch of heartbeats answers each node in the order asked, the same node twice included and
/// an unknown one as `None`, and brings a node lost for silence back up with an event.
pub async fn heartbeat_batches(store: &dyn Store) {
    let n1 = node(store, "gpu-001", 10).await;
    let n2 = node(store, "gpu-002", 10).await;
    assert_eq!(store.mark_lost_nodes(500, 1_000).await.unwrap().len(), 2);
    let cursor = store
        .events_after(0, 10_000)
        .await
        .unwrap()
        .last()
        .map_or(0, |e| e.seq);
    let got = store
        .heartbeats(&[n2.id, 99_999, n1.id, n2.id], 2_000)
        .await
        .unwrap();
    let ids: Vec<Option<i64>> = got.iter().map(|n| n.as_ref().map(|n| n.id)).collect();
    assert_eq!(ids, vec![Some(n2.id), None, Some(n1.id), Some(n2.id)]);
    for n in got.iter().flatten() {
        assert_eq!((n.state, n.down_reason.as_deref()), (NodeState::Up, None));
        assert_eq!(n.last_heartbeat, 2_000);
    }
    let back: Vec<Option<i64>> = store
        .events_after(cursor, 100)
        .await
        .unwrap()
        .iter()
        .filter(|e| e.kind == EventKind::FleetChanged && e.detail == "back")
        .map(|e| e.node_id)
        .collect();
    assert_eq!(
        back,
        vec![Some(n1.id), Some(n2.id)],
        "one event per node back"
    );
    let again = store.heartbeats(&[n1.id], 3_000).await.unwrap();
    assert_eq!(again[0].as_ref().unwrap().last_heartbeat, 3_000);
    assert!(
        store.events_after(cursor, 100).await.unwrap().len() == 2,
        "a node already up is not announced again"
    );
    let err = store.heartbeat(99_999, 3_000).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound { .. }), "{err}");
}

/// One whole 8-GPU task on each of `nodes`, in their order.
fn whole_nodes(nodes: &[NodeRecord]) -> Placement {
    Placement {
        tasks: nodes
            .iter()
            .map(|n| TaskPlacement {
                node: NodeId(n.id as u32),
                gpus: (0..8).collect(),
                milli_per_gpu: MilliGpu(1000),
            })
            .collect(),
    }
}

/// A gang of `size` whole 8-GPU tasks on `size` fresh nodes named `prefix-N`, submitted at 2
/// and started on them, in node order, at 4.
async fn started_gang(
    store: &dyn Store,
    org: &str,
    prefix: &str,
    size: usize,
) -> (JobRecord, Vec<NodeRecord>) {
    let (_, p, u) = tenant(store, org).await;
    let mut nodes = Vec::with_capacity(size);
    for i in 0..size {
        nodes.push(node(store, &format!("{prefix}-{i:04}"), 1).await);
    }
    let job = store
        .submit_job(
            &Actor::user(&u),
            NewJob {
                user_id: u.id,
                spec: JobSpec::new(ProjectId(p.id as u32), size as u32, GpuRequest::Whole(8)),
                command: vec!["torchrun".into()],
                container_image: None,
                batch: None,
                idempotency: None,
                array: None,
                interactive: false,
            },
            2,
        )
        .await
        .unwrap();
    let epoch = lead(store, "a", 3).await;
    let placement = whole_nodes(&nodes);
    let (started, _) = store
        .start_attempts(
            "a",
            epoch,
            vec![NewAttempt {
                job_id: job.id,
                placement,
                gpu_model: Some(h200()),
                borrowing: false,
            }],
            4,
        )
        .await
        .unwrap();
    assert_eq!(started.len(), 1);
    (job, nodes)
}

/// A gang's reports written together: each answered as alone (a stale fence or a task on
/// another node refused without failing its neighbours), and the peer list the same from the
/// database and from the store's cache.
pub async fn gang_reports_in_one_batch(store: &dyn Store) {
    const SIZE: usize = 20;
    let (job, nodes) = started_gang(store, "gangs", "gang", SIZE).await;
    let names: Vec<String> = nodes.iter().map(|n| n.name.clone()).collect();
    for n in [&nodes[0], &nodes[7], &nodes[0]] {
        let work = store.assignments(n.id).await.unwrap();
        assert_eq!(work.len(), 1);
        assert_eq!(work[0].peers, names);
    }

    let report = |task: usize, node: i64, fence: i64, exit_code: Option<i64>| TaskReport {
        node,
        job: job.id,
        fence,
        task: task as i64,
        exit_code,
    };
    let mut starts: Vec<TaskReport> = (0..SIZE).map(|t| report(t, nodes[t].id, 1, None)).collect();
    starts.push(report(3, nodes[3].id, 2, None));
    starts.push(report(4, nodes[5].id, 1, None));
    let out = store.report_tasks(&starts, 10).await.unwrap();
    assert_eq!(out.len(), SIZE + 2);
    for r in &out[..SIZE] {
        assert_eq!(r.as_ref().unwrap().state, AttemptState::Running);
    }
    assert!(
        matches!(out[SIZE], Err(StoreError::Fenced(_))),
        "{:?}",
        out[SIZE]
    );
    assert!(
        matches!(out[SIZE + 1], Err(StoreError::Fenced(_))),
        "{:?}",
        out[SIZE + 1]
    );
    let a = &store.list_attempts(job.id).await.unwrap()[0];
    assert_eq!((a.state, a.started_at), (AttemptState::Running, Some(10)));

    // Every exit in one batch, one of them twice: the attempt ends with the last, and the
    // repeat is a conflict.
    let mut exits: Vec<TaskReport> = (0..SIZE)
        .map(|t| report(t, nodes[t].id, 1, Some(0)))
        .collect();
    exits.insert(1, report(0, nodes[0].id, 1, Some(0)));
    let out = store.report_tasks(&exits, 20).await.unwrap();
    assert!(
        matches!(out[1], Err(StoreError::Conflict { .. })),
        "{:?}",
        out[1]
    );
    assert_eq!(out[0].as_ref().unwrap().state, AttemptState::Running);
    assert_eq!(out[SIZE].as_ref().unwrap().state, AttemptState::Succeeded);
    assert_eq!(
        store.get_job(job.id).await.unwrap().state,
        JobState::Succeeded
    );
}

/// A gang's exit code is its lowest failed rank's, whichever batch brought each failure: a
/// batch reads only the tasks it names, with each attempt's count of tasks left and its
/// lowest failure so far. A stopping gang's tasks name no peers.
pub async fn a_gangs_first_failure_across_batches(store: &dyn Store) {
    let (job, nodes) = started_gang(store, "failing", "fail", 4).await;
    let names: Vec<String> = nodes.iter().map(|n| n.name.clone()).collect();
    assert_eq!(
        store.assignments(nodes[1].id).await.unwrap()[0].peers,
        names
    );
    let report = |task: usize, exit_code: Option<i64>| TaskReport {
        node: nodes[task].id,
        job: job.id,
        fence: 1,
        task: task as i64,
        exit_code,
    };
    let starts: Vec<TaskReport> = (0..4).map(|t| report(t, None)).collect();
    store.report_tasks(&starts, 10).await.unwrap();

    let out = store
        .report_tasks(&[report(2, Some(137))], 20)
        .await
        .unwrap();
    let a = out[0].as_ref().unwrap();
    assert_eq!(
        (a.state, a.stop_reason),
        (AttemptState::Stopping, Some(StopReason::TaskFailed))
    );
    let stopping = store.assignments(nodes[1].id).await.unwrap();
    assert_eq!(stopping[0].attempt.state, AttemptState::Stopping);
    assert!(stopping[0].peers.is_empty(), "{:?}", stopping[0].peers);

    let out = store
        .report_tasks(&[report(3, Some(143)), report(0, Some(5))], 30)
        .await
        .unwrap();
    assert_eq!(out[1].as_ref().unwrap().state, AttemptState::Stopping);
    let out = store
        .report_tasks(&[report(1, Some(143))], 40)
        .await
        .unwrap();
    let a = out[0].as_ref().unwrap();
    assert_eq!((a.state, a.exit_code), (AttemptState::Failed, Some(5)));
    assert_eq!(store.get_job(job.id).await.unwrap().state, JobState::Failed);
    // An exit reported again after the end is refused, as before.
    let again = store.report_tasks(&[report(1, Some(0))], 50).await.unwrap();
    assert!(again[0].is_err(), "{:?}", again[0]);
}

/// One copy of a mix of reports that exercises every way a report is taken or refused: a gang
/// whose rank fails (the others stopped, the attempt failed with the first failed rank's code),
/// a start repeated and one after the end, an exit reported twice, a job ending with no start
/// reported, a cancelled job, a stale fence, the wrong node, a task that does not exist, a job
/// with no attempt yet and one that does not exist. Returns the reports (all at time 100) and
/// the scenario's jobs by name.
async fn mixed_reports(
    store: &dyn Store,
    tag: &str,
) -> (Vec<TaskReport>, BTreeMap<i64, &'static str>) {
    let (_, p, u) = tenant(store, &format!("mixed-{tag}")).await;
    let mut n = Vec::new();
    for i in 0..6 {
        n.push(node(store, &format!("{tag}-{i}"), 1).await);
    }
    let gang = store
        .submit_job(
            &Actor::user(&u),
            NewJob {
                user_id: u.id,
                spec: JobSpec::new(ProjectId(p.id as u32), 3, GpuRequest::Whole(8)),
                command: vec!["torchrun".into()],
                container_image: None,
                batch: None,
                idempotency: None,
                array: None,
                interactive: false,
            },
            2,
        )
        .await
        .unwrap();
    let epoch = lead(store, "a", 3).await;
    let (started, _) = store
        .start_attempts(
            "a",
            epoch,
            vec![NewAttempt {
                job_id: gang.id,
                placement: whole_nodes(&n[..3]),
                gpu_model: Some(h200()),
                borrowing: false,
            }],
            4,
        )
        .await
        .unwrap();
    assert_eq!(started.len(), 1);
    let quiet = submit(store, &u, p.id, 5).await;
    start(store, epoch, quiet.id, n[3].id, 6).await;
    let cancelled = submit(store, &u, p.id, 5).await;
    start(store, epoch, cancelled.id, n[4].id, 6).await;
    store
        .report_task(
            TaskReport {
                node: n[4].id,
                job: cancelled.id,
                fence: 1,
                task: 0,
                exit_code: None,
            },
            7,
        )
        .await
        .unwrap();
    store
        .cancel_job(&Actor::user(&u), cancelled.id, 8)
        .await
        .unwrap();
    let stale = submit(store, &u, p.id, 5).await;
    start(store, epoch, stale.id, n[5].id, 6).await;
    let queued = submit(store, &u, p.id, 5).await;

    let r = |node: &NodeRecord, job: &JobRecord, fence: i64, task: i64, exit_code: Option<i64>| {
        TaskReport {
            node: node.id,
            job: job.id,
            fence,
            task,
            exit_code,
        }
    };
    let reports = vec![
        r(&n[0], &gang, 1, 0, None),
        r(&n[1], &gang, 1, 1, None),
        r(&n[0], &gang, 1, 0, None),
        r(&n[1], &gang, 1, 1, Some(3)),
        r(&n[1], &gang, 1, 1, Some(3)),
        r(&n[3], &quiet, 1, 0, Some(0)),
        r(&n[5], &stale, 2, 0, None),
        r(&n[4], &stale, 1, 0, None),
        r(&n[5], &stale, 1, 5, None),
        r(&n[5], &stale, 1, 0, None),
        TaskReport {
            node: n[0].id,
            job: 9_999_999,
            fence: 1,
            task: 0,
            exit_code: None,
        },
        r(&n[0], &queued, 0, 0, None),
        r(&n[0], &gang, 1, 0, Some(0)),
        r(&n[2], &gang, 1, 2, None),
        r(&n[4], &cancelled, 1, 0, Some(143)),
        r(&n[2], &gang, 1, 2, Some(137)),
        r(&n[2], &gang, 1, 2, None),
        r(&n[2], &gang, 1, 2, Some(0)),
        r(&n[5], &stale, 1, 0, Some(0)),
    ];
    let names = BTreeMap::from([
        (gang.id, "gang"),
        (quiet.id, "quiet"),
        (cancelled.id, "cancelled"),
        (stale.id, "stale"),
        (queued.id, "queued"),
    ]);
    (reports, names)
}

/// A report's answer with the scenario's job ids put as names, so two copies compare.
fn answer_shape(r: &Result<AttemptRecord>, names: &BTreeMap<i64, &str>) -> String {
    match r {
        Ok(a) => format!(
            "ok {} fence {} {} {:?} kill {:?} started {:?} ended {:?} exit {:?} gpu_ms {}",
            names[&a.job_id],
            a.fence,
            a.state,
            a.stop_reason,
            a.kill_at,
            a.started_at,
            a.ended_at,
            a.exit_code,
            a.gpu_ms
        ),
        Err(e) => {
            let kind = match e {
                StoreError::NotFound { .. } => "not found",
                StoreError::Fenced(_) => "fenced",
                StoreError::Conflict { .. } => "conflict",
                other => panic!("a report failed as the database would: {other}"),
            };
            let text = e.to_string();
            let mut words: Vec<String> = Vec::new();
            for w in text.split(' ') {
                let named = (words.last().map(String::as_str) == Some("job"))
                    .then(|| w.parse::<i64>().ok().and_then(|id| names.get(&id)))
                    .flatten();
                words.push(named.map_or(w.to_string(), |n| n.to_string()));
            }
            format!("{kind}: {}", words.join(" "))
        }
    }
}

/// What the reports left in the store for a scenario's jobs: their states, attempts, events
/// and ledger rows, with ids put as names.
async fn reported_shape(
    store: &dyn Store,
    names: &BTreeMap<i64, &'static str>,
    from_event: i64,
) -> Vec<String> {
    let mut out = Vec::new();
    for (&id, name) in names {
        let j = store.get_job(id).await.unwrap();
        out.push(format!(
            "{name} {} exit {:?} reason {:?} at {}",
            j.state, j.exit_code, j.reason, j.updated_at
        ));
        for a in store.list_attempts(id).await.unwrap() {
            out.push(answer_shape(&Ok(a), names));
        }
        let project = j.spec.project.0 as i64;
        let mut attempts: Vec<i64> = store
            .list_attempts(id)
            .await
            .unwrap()
            .iter()
            .map(|a| a.id)
            .collect();
        attempts.sort_unstable();
        for l in store.ledger(Some(project), 0, i64::MAX).await.unwrap() {
            if attempts.contains(&l.attempt_id) {
                out.push(format!(
                    "{name} ledger {} {} {} {}",
                    l.kind, l.gpu_ms, l.weight_milli, l.charged_ms
                ));
            }
        }
    }
    for e in store.events_after(from_event, 10_000).await.unwrap() {
        if let Some(name) = e.job_id.and_then(|j| names.get(&j)) {
            out.push(format!("event {} {name} {}", e.kind, e.detail));
        }
    }
    out
}

/// A batch of reports answers and writes exactly what the same reports sent one at a time do,
/// refusals included, on two copies of the same scenario.
pub async fn report_batch_matches_reports_one_at_a_time(store: &dyn Store) {
    let (batched, batched_names) = mixed_reports(store, "b").await;
    let (single, single_names) = mixed_reports(store, "s").await;
    let cursor = store
        .events_after(0, 100_000)
        .await
        .unwrap()
        .last()
        .map_or(0, |e| e.seq);

    let out = store.report_tasks(&batched, 100).await.unwrap();
    let mut alone = Vec::new();
    for r in &single {
        alone.push(store.report_task(r.clone(), 100).await);
    }
    let out: Vec<String> = out
        .iter()
        .map(|r| answer_shape(r, &batched_names))
        .collect();
    let alone: Vec<String> = alone
        .iter()
        .map(|r| answer_shape(r, &single_names))
        .collect();
    assert_eq!(out, alone);

    // The answers are what the scenario means, not only the same on both paths.
    let expect = [
        "ok gang fence 1 running None",
        "ok gang fence 1 running None",
        "ok gang fence 1 running None",
        "ok gang fence 1 stopping Some(TaskFailed) kill Some(100)",
        "conflict: exit_code: task 1 of job gang already reported its exit",
        "ok quiet fence 1 succeeded None kill None started None ended Some(100) exit Some(0)",
        "fenced: fence: attempt 2 of job stale is not current (current is 1)",
        "fenced: fence: task 0 of job stale is not on this node",
        "not found: task `5` not found",
        "ok stale fence 1 running",
        "not found: job `9999999` not found",
        "fenced: fence: job queued has no attempt",
        "ok gang fence 1 stopping",
        "ok gang fence 1 stopping",
        "ok cancelled fence 1 cancelled Some(Cancel)",
        "ok gang fence 1 failed Some(TaskFailed) kill Some(100) started Some(100) ended Some(100) exit Some(3)",
        "fenced: fence: attempt 1 of job gang has already ended (failed)",
        "fenced: fence: attempt 1 of job gang has already ended (failed)",
        "ok stale fence 1 succeeded",
    ];
    assert_eq!(out.len(), expect.len());
    for (got, want) in out.iter().zip(expect) {
        assert!(
            got.starts_with(want),
            "{got:?} does not start with {want:?}"
        );
    }
    let a = reported_shape(store, &batched_names, cursor).await;
    let b = reported_shape(store, &single_names, cursor).await;
    assert_eq!(a, b);
    assert!(a.iter().any(|l| l == "event finished gang failed"), "{a:?}");
    assert!(
        a.iter().any(|l| l.starts_with("gang ledger charge ")),
        "{a:?}"
    );
}

/// A whole gang's start reports in one batch, then its stop reports in one batch: 1,250 of
/// each. Prints the time the store took for each batch (not asserted: a figure, see
/// docs/benchmarks.md).
pub async fn a_gangs_1250_reports_in_one_batch(store: &dyn Store) {
    const SIZE: usize = 1250;
    let (job, nodes) = started_gang(store, "big-gang", "big", SIZE).await;
    // A node's list carries the whole placement, read apart from the task's row (and kept) when
    // it is this large: the same on every node, first read or not.
    let placement = store.list_attempts(job.id).await.unwrap()[0]
        .placement
        .clone();
    assert_eq!(*placement, whole_nodes(&nodes));
    for (i, n) in [(0, &nodes[0]), (SIZE - 1, &nodes[SIZE - 1]), (0, &nodes[0])] {
        let work = store.assignments(n.id).await.unwrap();
        assert_eq!((work.len(), work[0].task), (1, i as i64));
        assert_eq!(work[0].attempt.placement, placement);
        assert_eq!(work[0].peers.len(), SIZE);
    }
    let reports = |exit_code: Option<i64>| -> Vec<TaskReport> {
        (0..SIZE)
            .map(|t| TaskReport {
                node: nodes[t].id,
                job: job.id,
                fence: 1,
                task: t as i64,
                exit_code,
            })
            .collect()
    };
    let clock = std::time::Instant::now();
    let out = store.report_tasks(&reports(None), 10).await.unwrap();
    let starts = clock.elapsed();
    assert!(
        out.iter()
            .all(|r| r.as_ref().unwrap().state == AttemptState::Running)
    );
    let clock = std::time::Instant::now();
    let out = store.report_tasks(&reports(Some(0)), 20).await.unwrap();
    let stops = clock.elapsed();
    eprintln!(
        "{}: {SIZE} start reports in one batch {:.1} ms, {SIZE} stop reports {:.1} ms",
        store.backend(),
        starts.as_secs_f64() * 1e3,
        stops.as_secs_f64() * 1e3
    );
    for r in &out[..SIZE - 1] {
        assert_eq!(r.as_ref().unwrap().state, AttemptState::Running);
    }
    let last = out[SIZE - 1].as_ref().unwrap();
    assert_eq!(
        (last.state, last.exit_code, last.ended_at),
        (AttemptState::Succeeded, Some(0), Some(20))
    );
    assert_eq!(last.gpu_ms, 10 * (SIZE as i64) * 8);
    assert_eq!(
        store.get_job(job.id).await.unwrap().state,
        JobState::Succeeded
    );
    let charges = store
        .ledger(Some(job.project_id), 0, i64::MAX)
        .await
        .unwrap();
    assert_eq!(charges.len(), 1);
    assert_eq!(charges[0].gpu_ms, 10 * (SIZE as i64) * 8);
    // Each node's task is done: none of them has anything left to run.
    assert!(
        store
            .assignments(nodes[SIZE / 2].id)
            .await
            .unwrap()
            .is_empty()
    );
}

/// A submit batch keeps each job's idempotency key with the job it made; a key that still has
/// a live answer fails the whole batch (nothing of it written), and a key kept before the
/// retention's start is taken over.
pub async fn idempotency_keys_of_a_submit_batch(store: &dyn Store) {
    let (_, p, u) = tenant(store, "kaist-keys").await;
    let job = |key: &str, since: i64| {
        (
            Actor::user(&u),
            NewJob {
                user_id: u.id,
                spec: spec(p.id, 1),
                command: vec!["true".into()],
                container_image: None,
                batch: None,
                idempotency: Some(NewIdempotency {
                    key: key.into(),
                    route: "/v1/jobs".into(),
                    body_hash: format!("hash-{key}"),
                    since,
                }),
                array: None,
                interactive: false,
            },
        )
    };
    let made = store
        .submit_jobs(vec![job("a", 0), job("b", 0), job("c", 0)], 20)
        .await
        .unwrap();
    let user = u.id;
    let kept_for = |key: &'static str| {
        let store = &store;
        async move {
            store
                .idempotent_answer(user, key, 0)
                .await
                .unwrap()
                .unwrap()
        }
    };
    for (key, rec) in ["a", "b", "c"].into_iter().zip(&made) {
        let kept = kept_for(key).await;
        assert_eq!(kept.resource, Some(rec.id), "key {key}");
        assert_eq!(kept.body_hash, format!("hash-{key}"));
        assert_eq!(kept.created_at, 20);
    }
    // Jobs without a key between keyed ones: each key still names its own job.
    let keyless = || {
        let (actor, mut j) = job("", 0);
        j.idempotency = None;
        (actor, j)
    };
    let mixed = store
        .submit_jobs(vec![keyless(), job("e", 0), keyless(), job("f", 0)], 22)
        .await
        .unwrap();
    for (key, rec) in [("e", &mixed[1]), ("f", &mixed[3])] {
        let kept = kept_for(key).await;
        assert_eq!(kept.resource, Some(rec.id), "key {key}");
    }
    // "b" is still live at 30 (kept at 20, retention from 10): the batch is refused whole.
    let err = store
        .submit_jobs(vec![job("d", 10), job("b", 10)], 30)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Conflict {
                field: "Idempotency-Key",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        store
            .idempotent_answer(u.id, "d", 0)
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(store.snapshot().await.unwrap().queued.len(), 7);
    // Once its answer is past the retention's start, the key makes a new job.
    let again = store.submit_jobs(vec![job("b", 25)], 40).await.unwrap();
    let kept = store
        .idempotent_answer(u.id, "b", 25)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(kept.resource, Some(again[0].id));
    assert_eq!(store.snapshot().await.unwrap().queued.len(), 8);
}

/// A registration records what the agent says of itself with the node, in the same write: a
/// later one replaces it whole, and a node is not taken over by another agent account, whose
/// registration changes nothing.
pub async fn registration_records_the_agent_and_keeps_the_node_to_it(store: &dyn Store) {
    let (_, _, first) = tenant(store, "kaist").await;
    let (_, _, second) = tenant(store, "snu").await;
    let says = NodeAgent {
        uid: Some(990),
        ..agent_says(Some("cgroup-v2"), Some("10.0.0.7"), Some("podman"))
    };
    let by = |user: &UserRecord, agent: NodeAgent| NewNode {
        agent_user: Some(user.id),
        agent,
        ..new_node("gpu-001")
    };
    let n = store
        .register_node(&admin(), by(&first, says.clone()), 5)
        .await
        .unwrap();
    assert_eq!(n.agent_user, Some(first.id));
    assert_eq!(n.limits.as_deref(), Some("cgroup-v2"));
    assert_eq!(n.address.as_deref(), Some("10.0.0.7"));
    assert_eq!(n.container_runtime.as_deref(), Some("podman"));
    assert_eq!(store.agent_uids().await.unwrap(), vec![990]);
    let audited = store.audit_head().await.unwrap().unwrap().seq;

    let err = store
        .register_node(&admin(), by(&second, NodeAgent::default()), 6)
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Conflict { field: "name", .. }),
        "{err:?}"
    );
    assert_eq!(store.get_node(n.id).await.unwrap(), n);
    assert_eq!(store.agent_uids().await.unwrap(), vec![990]);
    assert_eq!(store.audit_head().await.unwrap().unwrap().seq, audited);

    // The same agent again, saying less: what it no longer says is cleared.
    let again = store
        .register_node(
            &admin(),
            by(&first, agent_says(Some("rlimit"), None, None)),
            7,
        )
        .await
        .unwrap();
    assert_eq!(again.id, n.id);
    assert_eq!(
        (again.limits.as_deref(), again.address.as_deref()),
        (Some("rlimit"), None)
    );
    assert_eq!(again.container_runtime, None);
    assert_eq!(again.last_heartbeat, 7);
    assert!(store.agent_uids().await.unwrap().is_empty());

    // A pool nobody made is refused by name; the default pool comes by itself.
    let err = store
        .register_node(
            &admin(),
            NewNode {
                pool: "partner".into(),
                ..new_node("gpu-002")
            },
            8,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Invalid { field: "pool", .. }),
        "{err:?}"
    );
    assert_eq!(store.list_nodes().await.unwrap().len(), 1);
}

macro_rules! suite {
    ($backend:ident, $open:expr) => {
        mod $backend {
            use super::*;
            suite!(@tests $open;
                tenants_and_tokens,
                job_runs_once_to_success,
                stale_reports_are_fenced,
                cancellation,
                preemption_and_time_limit,
                lease_fences_a_deposed_leader,
                audit_is_a_chain,
                projects_and_awards,
                group_commit,
                ledger_charges_each_attempt_once,
                awards_change_and_balance,
                compliance_records,
                calls_applications_and_awards,
                node_health_drains_and_requeues,
                registration_records_the_agent_and_keeps_the_node_to_it,
                fleet_summary_and_ledger_spans,
                gpu_telemetry_summaries_series_and_retention,
                charged_gpu_use_joins_ledger_and_telemetry,
                oidc_links_provision_and_approve,
                arrays_materialise_lazily,
                assignments_of_gangs_and_array_tasks,
                heartbeat_batches,
                gang_reports_in_one_batch,
                a_gangs_first_failure_across_batches,
                report_batch_matches_reports_one_at_a_time,
                a_gangs_1250_reports_in_one_batch,
                idempotency_keys_of_a_submit_batch,
                charges_of_a_report_batch_take_from_awards_in_turn);
        }
    };
    (@tests $open:expr; $($name:ident),+) => {
        $(
            #[tokio::test]
            async fn $name() {
                let (store, _guard) = $open.await;
                super::$name(&store).await;
                super::every_audit_detail_is_json(&store).await;
            }
        )+
    };
}

suite!(sqlite, async {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("haneul.db"))
        .await
        .unwrap();
    (store, dir)
});

suite!(postgres, async {
    let db = haneul_store::testing::TestDb::create().await;
    let store = PostgresStore::open(db.url()).await.unwrap();
    (store, db)
});

/// Servers sharing a PostgreSQL database hear each other's commits as they happen: a waiter on
/// `changes()` wakes with no poll in between. SQLite has no other server to hear.
mod changes {
    use super::*;
    use std::time::Duration;
    use tokio::sync::broadcast::Receiver;
    use tokio::sync::broadcast::error::TryRecvError;

    /// Waits (5 s at most, far below any poll interval that would otherwise be needed, and
    /// with nothing polling) until `want` is heard.
    async fn hear(rx: &mut Receiver<Change>, want: Change) {
        tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                match rx.recv().await {
                    Ok(c) if c == want => return,
                    Ok(_) => {}
                    Err(e) => panic!("the listener stopped: {e}"),
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("{want:?} not heard within 5 s"));
    }

    fn drain(rx: &mut Receiver<Change>) {
        while !matches!(rx.try_recv(), Err(TryRecvError::Empty)) {}
    }

    #[tokio::test]
    async fn postgres_servers_hear_each_others_commits() {
        let db = haneul_store::testing::TestDb::create().await;
        let a = PostgresStore::open(db.url()).await.unwrap();
        let b = PostgresStore::open(db.url()).await.unwrap();
        let mut a_hears = a.changes().expect("PostgreSQL stores hear other servers");
        let mut b_hears = b.changes().unwrap();

        // A job submitted through b wakes a waiter on a.
        let (_, p, u) = tenant(&b, "kaist").await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        drain(&mut a_hears);
        drain(&mut b_hears);
        let job = submit(&b, &u, p.id, 10).await;
        hear(&mut a_hears, Change::Events).await;
        assert_eq!(a.get_job(job.id).await.unwrap().state, JobState::Queued);
        // b's own commit is not echoed back to b.
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            matches!(b_hears.try_recv(), Err(TryRecvError::Empty)),
            "a server does not wake for its own commits"
        );

        // A lease given up is heard by the standby; renewals are not.
        assert_eq!(
            a.acquire_lease("controller", "a", 60_000, 100)
                .await
                .unwrap(),
            Some(1)
        );
        a.acquire_lease("controller", "a", 60_000, 200)
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            matches!(b_hears.try_recv(), Err(TryRecvError::Empty)),
            "taking a free lease and renewing it are not announced"
        );
        a.release_lease("controller", "a").await.unwrap();
        hear(&mut b_hears, Change::Lease).await;
        assert_eq!(
            b.acquire_lease("controller", "b", 60_000, 300)
                .await
                .unwrap(),
            Some(2)
        );
    }

    #[tokio::test]
    async fn sqlite_has_no_other_server_to_hear() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("haneul.db"))
            .await
            .unwrap();
        assert!(store.changes().is_none());
    }
}

/// SQLite's log is copied into the database file by the store's own checkpointer, not by
/// whichever commit takes the log past its limit (which would hold the one writer meanwhile).
mod sqlite_checkpoints {
    use super::*;
    use sqlx::Connection;
    use std::time::Duration;

    /// Nodes in the database file alone (`immutable`: the log is not read); 0 while not even
    /// the schema has been copied there.
    async fn nodes_in_the_file(path: &std::path::Path) -> i64 {
        let url = format!("sqlite://{}?immutable=1", path.display());
        let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
        sqlx::query_scalar("SELECT count(*) FROM nodes")
            .fetch_one(&mut conn)
            .await
            .unwrap_or(0)
    }

    #[tokio::test]
    async fn committed_writes_reach_the_database_file_without_a_commit_checkpointing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("haneul.db");
        let store = SqliteStore::open(&path).await.unwrap();
        for i in 0..20 {
            node(&store, &format!("gpu-{i:03}"), 10).await;
        }
        // Twenty small commits are far below SQLite's automatic checkpoint (1,000 pages):
        // only the checkpointer copies them into the file.
        let mut in_file = 0;
        for _ in 0..50 {
            in_file = nodes_in_the_file(&path).await;
            if in_file == 20 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(
            in_file, 20,
            "the log was not checkpointed into the database file"
        );
        // And it goes on: later writes follow.
        node(&store, "gpu-100", 20).await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(nodes_in_the_file(&path).await, 21);
    }

    /// The log starts again from its beginning under a steady stream of writes, and is cut back
    /// after growing: the checkpointer alone, running between writes, never left it wholly
    /// copied when a write began, so it grew with every write for as long as writes came.
    #[tokio::test]
    async fn the_log_stays_bounded_under_a_steady_stream_of_writes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("haneul.db");
        let wal = dir.path().join("haneul.db-wal");
        let store = SqliteStore::open(&path).await.unwrap();
        let (_, p, u) = tenant(&store, "kaist-wal").await;
        let padding = "x".repeat(1000);
        let mut largest = 0;
        // About 80 MB of log, in batches of a few hundred KB sent back to back.
        for _ in 0..250 {
            let batch: Vec<(Actor, NewJob)> = (0..200)
                .map(|_| {
                    (
                        Actor::user(&u),
                        NewJob {
                            user_id: u.id,
                            spec: spec(p.id, 1),
                            command: vec!["echo".into(), padding.clone()],
                            container_image: None,
                            batch: None,
                            idempotency: None,
                            array: None,
                            interactive: false,
                        },
                    )
                })
                .collect();
            store.submit_jobs(batch, 20).await.unwrap();
            largest = largest.max(std::fs::metadata(&wal).map_or(0, |m| m.len()));
        }
        assert!(
            largest <= 24 << 20,
            "the log grew to {largest} bytes under a steady stream of writes"
        );
    }
}

/// On PostgreSQL, what needs no place in the writers' sequence does not wait for the writers'
/// lock: another session holds it here (as a long write would) and the test checks what
/// finishes meanwhile and what waits for it.
/// The store keeps the planner's statistics of its growing tables fresh itself: on a server with
/// `autovacuum = off` (as this machine's is) nothing else would, and plans costed on empty
/// tables would read them whole for good.
mod planner_statistics {
    use super::*;
    use std::time::{Duration, Instant};

    /// How often `jobs` was analysed by hand (autovacuum's analyses are counted apart).
    async fn analyses_of_jobs(url: &str) -> i64 {
        let pool = sqlx::PgPool::connect(url).await.unwrap();
        let n: i64 = sqlx::query_scalar(
            "SELECT analyze_count FROM pg_stat_user_tables WHERE relname = 'jobs'",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        pool.close().await;
        n
    }

    #[tokio::test]
    async fn a_table_that_grew_is_analysed_and_one_that_did_not_is_left() {
        let db = haneul_store::testing::TestDb::create().await;
        let store = PostgresStore::open(db.url()).await.unwrap();
        let (_, p, u) = tenant(&store, "kaist").await;
        let before = analyses_of_jobs(db.url()).await;
        store
            .submit_jobs(one_gpu_jobs(&u, p.id, 1_500), 20)
            .await
            .unwrap();
        // The keeper looks every 5 s; the counts reach the statistics views within a second.
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut after = before;
        while after == before && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(250)).await;
            after = analyses_of_jobs(db.url()).await;
        }
        assert_eq!(
            after,
            before + 1,
            "1,500 new rows in an empty `jobs` must be analysed, once"
        );
        // Nothing changed since: the next look leaves the table alone.
        tokio::time::sleep(Duration::from_secs(6)).await;
        assert_eq!(analyses_of_jobs(db.url()).await, after);
    }
}

mod writers_lock {
    use super::*;
    use sqlx::Connection;
    use std::time::Duration;

    /// A session holding the writers' advisory lock (the key of postgres.rs) until dropped.
    async fn hold_lock(url: &str) -> sqlx::PgConnection {
        let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
        sqlx::query("SELECT pg_advisory_lock(114767673259372)")
            .execute(&mut conn)
            .await
            .unwrap();
        conn
    }

    /// Whether `f` finishes within a second (far longer than it takes unhindered).
    async fn finishes<T>(f: impl std::future::Future<Output = T>) -> Option<T> {
        tokio::time::timeout(Duration::from_secs(1), f).await.ok()
    }

    #[tokio::test]
    async fn heartbeats_do_not_wait_for_the_writers_lock() {
        let db = haneul_store::testing::TestDb::create().await;
        let store = PostgresStore::open(db.url()).await.unwrap();
        let live = node(&store, "gpu-001", 10).await;
        let lost = node(&store, "gpu-002", 10).await;
        store.heartbeat(live.id, 1_500).await.unwrap();
        assert_eq!(
            store.mark_lost_nodes(1_000, 2_000).await.unwrap(),
            vec![lost.id]
        );

        let holder = hold_lock(db.url()).await;
        let beat = finishes(store.heartbeats(&[live.id], 3_000)).await;
        let beat = beat.expect("a live node's heartbeat appends no event: it needs no lock");
        assert_eq!(beat.unwrap()[0].as_ref().unwrap().last_heartbeat, 3_000);
        // A lost node's heartbeat brings it back with an event: that waits for the lock.
        let back = tokio::spawn({
            let store = store.clone();
            let id = lost.id;
            async move { store.heartbeat(id, 3_000).await }
        });
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(
            !back.is_finished(),
            "bringing a node back takes the writers' lock"
        );
        drop(holder);
        let back = back.await.unwrap().unwrap();
        assert_eq!((back.state, back.down_reason), (NodeState::Up, None));
        assert_eq!(back.last_heartbeat, 3_000);
    }

    /// A write given up while it waits for the writers' lock (a request that timed out, a
    /// client that went away) must not leave its session holding the lock once it is granted:
    /// every later write would wait for it. With sqlx's own `begin` the abandoned `BEGIN`
    /// left the transaction open and the lock held in a pooled connection that nothing used.
    #[tokio::test]
    async fn a_write_given_up_while_waiting_for_the_lock_does_not_keep_it() {
        let db = haneul_store::testing::TestDb::create().await;
        let store = PostgresStore::open(db.url()).await.unwrap();
        let first = node(&store, "gpu-001", 10).await;
        let holder = hold_lock(db.url()).await;
        let given_up = tokio::time::timeout(
            Duration::from_millis(300),
            store.register_node(&admin(), new_node("gpu-002"), 20),
        )
        .await;
        assert!(given_up.is_err(), "the registration waits for the lock");
        drop(holder);

        // The abandoned transaction is rolled back soon after it gets the lock: no session of
        // this database is left idle in a transaction holding an advisory lock.
        let mut probe = sqlx::PgConnection::connect(db.url()).await.unwrap();
        let mut held = -1;
        for _ in 0..50 {
            held = sqlx::query_scalar::<_, i64>(
                "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
                 WHERE l.locktype = 'advisory' AND l.granted \
                 AND a.datname = current_database() AND a.state LIKE 'idle in transaction%'",
            )
            .fetch_one(&mut probe)
            .await
            .unwrap();
            if held == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(held, 0, "an abandoned write still holds the writers' lock");
        let after =
            finishes(store.set_node_state(&admin(), first.id, NodeState::Draining, 30)).await;
        assert!(after.is_some(), "a later write waits for nobody");
        assert!(
            store
                .list_nodes()
                .await
                .unwrap()
                .iter()
                .all(|n| n.name != "gpu-002"),
            "the abandoned registration was rolled back, not committed"
        );
    }

    /// A submit batch writes its jobs before taking the lock, and its events and audit entries
    /// after: while another session holds the lock the batch waits (nothing is acknowledged
    /// early), and once it is released the batch commits with its events in sequence and the
    /// audit chain whole.
    #[tokio::test]
    async fn a_submit_batch_waits_for_the_lock_before_its_events() {
        let db = haneul_store::testing::TestDb::create().await;
        let store = PostgresStore::open(db.url()).await.unwrap();
        let (_, p, u) = tenant(&store, "kaist").await;
        let before = submit(&store, &u, p.id, 10).await;
        let jobs = one_gpu_jobs(&u, p.id, 3);
        let holder = hold_lock(db.url()).await;
        let batch = tokio::spawn({
            let store = store.clone();
            async move { store.submit_jobs(jobs, 20).await }
        });
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(
            !batch.is_finished(),
            "the batch's events wait for the writers' lock"
        );
        drop(holder);
        let got = batch.await.unwrap().unwrap();
        assert_eq!(got.len(), 3);
        let events = store.events_after(0, 10_000).await.unwrap();
        let submitted: Vec<Option<i64>> = events
            .iter()
            .filter(|e| e.kind == EventKind::Submitted)
            .map(|e| e.job_id)
            .collect();
        let mut want = vec![Some(before.id)];
        want.extend(got.iter().map(|j| Some(j.id)));
        assert_eq!(submitted, want, "one Submitted event per job, in id order");
        store.verify_audit().await.unwrap();
    }
}
