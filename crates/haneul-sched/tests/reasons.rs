//! Pending reasons: each kind from a small hand-made case, and a property test that every job a
//! pass leaves queued has a reason, the same one in twin engines.

mod common;

use common::*;
use haneul_model::{GpuRequest, JobId, NodeId, NodeState, PriorityClass, Span, Time};
use haneul_sched::{Engine, PendingReason, Policy, ReasonCode, Waiting};
use proptest::prelude::*;

fn node(model: usize, gpus: u32) -> NodeGen {
    NodeGen {
        model,
        gpus,
        domain: gpus,
        block: 0,
        cpu: 128,
    }
}

fn job(project: u32, replicas: u32, gpus: u32, estimate_s: i64) -> JobGen {
    JobGen {
        project,
        replicas,
        gpu: GpuRequest::Whole(gpus),
        cpu: 1,
        models: vec![],
        priority: PriorityClass::Normal,
        preemptible: true,
        estimate_s,
    }
}

fn projects(guarantees: &[(u64, Option<u64>)]) -> Vec<ProjectGen> {
    guarantees
        .iter()
        .map(|&(guarantee, borrow_limit)| ProjectGen {
            weight: 1,
            guarantee,
            borrow_limit,
        })
        .collect()
}

fn engine(nodes: &[NodeGen], ps: &[(u64, Option<u64>)], policy: Policy) -> Engine {
    Engine::new(&fleet_of(nodes), &tenants_of(&projects(ps)), policy).unwrap()
}

fn submit(e: &mut Engine, g: &JobGen, id: u64, now: Time) {
    e.submit(job_of(g, id, now), now).unwrap();
}

fn reason(e: &Engine, id: u64) -> PendingReason {
    e.pending_reason(JobId(id))
        .unwrap_or_else(|| panic!("job {id} has no reason"))
}

/// The case: a one-GPU job behind an eight-GPU job, seven GPUs idle.
#[test]
fn a_small_job_behind_a_reservation_names_it_and_the_time_limit_that_would_backfill() {
    let mut e = engine(&[node(0, 8)], &[(0, None)], Policy::default());
    let now = Time::from_secs(10);
    submit(&mut e, &job(0, 1, 1, 3600), 0, now);
    e.schedule(now);
    submit(&mut e, &job(0, 1, 8, 3600), 1, now);
    submit(&mut e, &job(0, 1, 1, 3 * 3600), 2, now);
    let d = e.schedule(now);
    assert!(d.starts.is_empty(), "{d:?}");
    assert_eq!(d.reservations.len(), 1);

    let big = reason(&e, 1);
    assert_eq!(big.code(), ReasonCode::Resources);
    match &big.waiting {
        Waiting::Resources {
            best: Some(c),
            reserved_from: Some(t),
            smaller,
            ..
        } => {
            assert_eq!((c.node, c.free_gpus, c.short_gpus), (NodeId(0), 7, 1));
            assert_eq!(*t, now + Span::from_secs(3600));
            assert_eq!(*smaller, Some(7));
        }
        w => panic!("{w:?}"),
    }
    assert!(big.message().contains("1 short"), "{}", big.message());
    assert!(big.hint().unwrap().contains("7-GPU"), "{:?}", big.hint());

    let small = reason(&e, 2);
    assert_eq!(small.code(), ReasonCode::Reservation);
    assert_eq!(
        small.waiting,
        Waiting::Reservation {
            for_job: JobId(1),
            start_at: now + Span::from_secs(3600),
            node: NodeId(0),
            backfill_within: Some(Span::from_secs(3600)),
        }
    );
    assert!(small.message().contains("job 1"), "{}", small.message());
    let hint = small.hint().unwrap();
    assert!(hint.contains("--time") && hint.contains("1h"), "{hint}");

    // The hint is right: with a one-hour limit the same job starts at once.
    submit(&mut e, &job(0, 1, 1, 1800), 3, now);
    let d = e.schedule(now);
    assert_eq!(
        d.starts.iter().map(|s| s.job).collect::<Vec<_>>(),
        [JobId(3)]
    );
}

#[test]
fn a_job_restricted_to_a_busy_model_hears_of_the_free_one() {
    let mut e = engine(&[node(0, 8), node(1, 8)], &[(0, None)], Policy::default());
    let now = Time::from_secs(10);
    let mut busy = job(0, 1, 8, 3600);
    busy.models = vec![0];
    submit(&mut e, &busy, 0, now);
    e.schedule(now);
    submit(&mut e, &busy, 1, now);
    e.schedule(now);
    let r = reason(&e, 1);
    assert_eq!(r.code(), ReasonCode::Resources);
    match &r.waiting {
        Waiting::Resources { other_model, .. } => {
            assert_eq!(other_model.as_ref().map(|m| m.as_str()), Some(MODELS[1]))
        }
        w => panic!("{w:?}"),
    }
    assert!(r.hint().unwrap().contains("--gpu-model"), "{:?}", r.hint());
}

#[test]
fn a_job_that_may_not_borrow_waits_for_its_guarantee() {
    let mut e = engine(&[node(0, 8)], &[(2, None)], Policy::default());
    let now = Time::from_secs(10);
    let mut g = job(0, 1, 4, 3600);
    g.preemptible = false;
    submit(&mut e, &g, 0, now);
    e.schedule(now);
    let r = reason(&e, 0);
    assert_eq!(r.code(), ReasonCode::AssocGrpGRES);
    assert!(
        r.message()
            .contains("its 4 H200 GPUs would take its project to 4, above its guarantee of 2"),
        "{}",
        r.message()
    );
    assert!(r.hint().unwrap().contains("preemptible"));
}

#[test]
fn a_project_at_its_borrowing_limit_says_so() {
    let mut e = engine(&[node(0, 8)], &[(0, Some(1))], Policy::default());
    let now = Time::from_secs(10);
    submit(&mut e, &job(0, 1, 2, 3600), 0, now);
    e.schedule(now);
    let r = reason(&e, 0);
    assert_eq!(r.code(), ReasonCode::QOSGrpGRES);
    assert!(
        r.message().contains("at most 1 borrowed"),
        "{}",
        r.message()
    );
}

#[test]
fn strict_order_names_the_blocked_head() {
    let mut e = engine(&[node(0, 8)], &[(0, None)], Policy::fifo());
    let now = Time::from_secs(10);
    submit(&mut e, &job(0, 1, 4, 3600), 0, now);
    e.schedule(now);
    submit(&mut e, &job(0, 1, 8, 3600), 1, now);
    submit(&mut e, &job(0, 1, 1, 3600), 2, now);
    e.schedule(now);
    assert_eq!(reason(&e, 1).code(), ReasonCode::Resources);
    let r = reason(&e, 2);
    assert_eq!(r.code(), ReasonCode::Priority);
    assert_eq!(
        r.waiting,
        Waiting::Priority {
            ahead: 1,
            behind: Some(JobId(1)),
            fair_share: false
        }
    );
}

#[test]
fn a_job_no_pass_has_tried_yet_counts_the_jobs_ahead() {
    let mut e = engine(&[node(0, 8)], &[(0, None)], Policy::default());
    let now = Time::from_secs(10);
    for id in 0..3 {
        submit(&mut e, &job(0, 1, 8, 3600), id, now);
    }
    let r = reason(&e, 2);
    assert_eq!(r.code(), ReasonCode::Priority);
    assert!(
        r.message().contains("2 jobs of its project ahead"),
        "{}",
        r.message()
    );
}

#[test]
fn a_gang_that_only_drained_nodes_could_complete_is_told_so() {
    let mut e = engine(&[node(0, 8), node(0, 8)], &[(0, None)], Policy::default());
    let now = Time::from_secs(10);
    e.set_node_state(NodeId(1), NodeState::Draining, now)
        .unwrap();
    submit(&mut e, &job(0, 2, 8, 3600), 0, now);
    e.schedule(now);
    let r = reason(&e, 0);
    assert_eq!(r.code(), ReasonCode::ReqNodeNotAvail);
    assert_eq!(
        r.waiting,
        Waiting::NodesUnavailable {
            nodes: vec![NodeId(1)]
        }
    );
    // Back up, it starts; the reason goes with it.
    e.set_node_state(NodeId(1), NodeState::Up, now).unwrap();
    assert_eq!(e.schedule(now).starts.len(), 1);
    assert!(e.pending_reason(JobId(0)).is_none());
}

#[test]
fn a_gang_that_partly_fits_says_how_many_tasks_do() {
    let mut e = engine(
        &[node(0, 8), node(0, 8), node(0, 8)],
        &[(0, None)],
        Policy::default(),
    );
    let now = Time::from_secs(10);
    submit(&mut e, &job(0, 1, 8, 3600), 0, now);
    submit(&mut e, &job(0, 1, 8, 3600), 1, now);
    e.schedule(now);
    submit(&mut e, &job(0, 3, 8, 3600), 2, now);
    e.schedule(now);
    let r = reason(&e, 2);
    match &r.waiting {
        Waiting::Resources {
            tasks_fit, smaller, ..
        } => assert_eq!((*tasks_fit, *smaller), (1, Some(1))),
        w => panic!("{w:?}"),
    }
    assert!(
        r.message().contains("only 1 of its 3 tasks"),
        "{}",
        r.message()
    );
}

#[test]
fn a_job_whose_victims_are_stopping_is_waiting_for_them() {
    let mut e = engine(&[node(0, 8)], &[(8, None), (0, None)], Policy::default());
    let now = Time::from_secs(10);
    submit(&mut e, &job(1, 1, 8, 3600), 0, now);
    e.schedule(now);
    let mut owner = job(0, 1, 8, 3600);
    owner.preemptible = false;
    submit(&mut e, &owner, 1, now);
    let d = e.schedule(now);
    assert_eq!(d.preemptions.len(), 1, "{d:?}");
    let r = reason(&e, 1);
    assert_eq!(r.code(), ReasonCode::Resources);
    assert_eq!(r.waiting, Waiting::Reclaiming { victims: 1 });
}

#[test]
fn every_code_has_its_slurm_name() {
    let names: Vec<&str> = ReasonCode::ALL.iter().map(|c| c.as_str()).collect();
    assert_eq!(names.len(), 10);
    for n in [
        "Resources",
        "Priority",
        "Reservation",
        "AssocGrpGRES",
        "QOSGrpGRES",
        "Dependency",
        "JobHeldAdmin",
        "AssocGrpGRESMinutes",
        "JobArrayTaskLimit",
        "ReqNodeNotAvail",
    ] {
        assert!(names.contains(&n), "{n}");
    }
}

#[derive(Debug, Clone)]
enum Step {
    Submit(JobGen),
    FinishOldest,
    Drain(u32),
    Schedule(i64),
}

fn step_gen(projects: u32) -> impl Strategy<Value = Step> {
    prop_oneof![
        5 => job_gen(projects).prop_map(Step::Submit),
        2 => Just(Step::FinishOldest),
        1 => (0..12u32).prop_map(Step::Drain),
        3 => (0..600i64).prop_map(Step::Schedule),
    ]
}

/// Runs the steps, checking after every pass that each queued job has a reason that fits what
/// the pass decided. Returns every reason seen, for the twin comparison.
fn run(
    nodes: &[NodeGen],
    ps: &[ProjectGen],
    steps: &[Step],
    policy: Policy,
) -> Result<Vec<(JobId, PendingReason)>, TestCaseError> {
    let mut e = Engine::new(&fleet_of(nodes), &tenants_of(ps), policy).unwrap();
    let mut now = Time::from_secs(1);
    let mut ids = 0u64;
    let mut running: Vec<JobId> = Vec::new();
    let mut seen = Vec::new();
    for step in steps {
        match step {
            Step::Submit(g) => {
                if e.submit(job_of(g, ids, now), now).is_ok() {
                    ids += 1;
                }
            }
            Step::FinishOldest => {
                if !running.is_empty() {
                    e.finish(running.remove(0), now).unwrap();
                }
            }
            Step::Drain(n) => {
                if (*n as usize) < nodes.len() {
                    e.set_node_state(NodeId(*n), NodeState::Draining, now)
                        .unwrap();
                }
            }
            Step::Schedule(dt) => {
                now = Time(now.0 + dt * 1000);
                let d = e.schedule(now);
                running.extend(d.starts.iter().map(|s| s.job));
                let all = e.pending_reasons();
                let queued: Vec<JobId> = (0..ids)
                    .map(JobId)
                    .filter(|j| e.job_state(*j) == Some(haneul_sched::JobState::Queued))
                    .collect();
                let mut listed: Vec<JobId> = all.iter().map(|(j, _)| *j).collect();
                listed.sort_unstable();
                prop_assert_eq!(&listed, &queued, "every queued job, and only those");
                for (j, r) in &all {
                    prop_assert_eq!(Some(r.clone()), e.pending_reason(*j));
                    prop_assert!(!r.message().is_empty());
                    if let Waiting::Reservation { for_job, .. } = &r.waiting {
                        prop_assert!(d.reservations.iter().any(|x| x.job == *for_job));
                        prop_assert_ne!(for_job, j);
                    }
                    if let Waiting::Resources {
                        reserved_from: Some(t),
                        ..
                    } = &r.waiting
                    {
                        prop_assert!(
                            d.reservations
                                .iter()
                                .any(|x| x.job == *j && x.start_at == *t)
                        );
                    }
                }
                seen.extend(all);
            }
        }
    }
    Ok(seen)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn every_queued_job_has_a_reason_and_twins_agree(
        (nodes, ps, steps) in (
            proptest::collection::vec(node_gen(), 1..8),
            proptest::collection::vec(project_gen(), 1..4),
        ).prop_flat_map(|(nodes, ps)| {
            let n = ps.len() as u32;
            (Just(nodes), Just(ps), proptest::collection::vec(step_gen(n), 1..50))
        }),
        strict in any::<bool>(),
    ) {
        let policy = if strict { Policy::fifo() } else { Policy::default() };
        let a = run(&nodes, &ps, &steps, policy.clone())?;
        let b = run(&nodes, &ps, &steps, policy)?;
        prop_assert_eq!(a, b);
    }
}
