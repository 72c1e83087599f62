//! Targeted tests of single policy rules, with small hand-made fleets.

mod common;

use common::*;
use haneul_model::{GpuRequest, JobId, NodeId, PriorityClass, Span, Time};
use haneul_sched::{Engine, JobState, Policy, SchedError};

fn node(gpus: u32, domain: u32, block: u32) -> NodeGen {
    NodeGen {
        model: 0,
        gpus,
        domain,
        block,
        cpu: 128,
    }
}

fn job(project: u32, replicas: u32, gpu: GpuRequest) -> JobGen {
    JobGen {
        project,
        replicas,
        gpu,
        cpu: 1,
        models: vec![],
        priority: PriorityClass::Normal,
        preemptible: true,
        estimate_s: 3600,
    }
}

fn open_projects(n: usize) -> Vec<ProjectGen> {
    (0..n)
        .map(|_| ProjectGen {
            weight: 1,
            guarantee: 0,
            borrow_limit: None,
        })
        .collect()
}

#[test]
fn a_task_that_fits_one_nvlink_domain_stays_in_it() {
    let fleet = fleet_of(&[node(8, 4, 0)]);
    let mut e = Engine::new(&fleet, &tenants_of(&open_projects(1)), Policy::default()).unwrap();
    let now = Time::from_secs(1);
    e.submit(job_of(&job(0, 1, GpuRequest::Whole(2)), 0, now), now)
        .unwrap();
    e.submit(job_of(&job(0, 1, GpuRequest::Whole(4)), 1, now), now)
        .unwrap();
    e.schedule(now);
    let two = e.placement(JobId(0)).unwrap().tasks[0].gpus.clone();
    let four = e.placement(JobId(1)).unwrap().tasks[0].gpus.clone();
    assert!(two.iter().all(|&g| g / 4 == two[0] / 4), "{two:?}");
    assert!(four.iter().all(|&g| g / 4 == four[0] / 4), "{four:?}");
    assert_ne!(
        two[0] / 4,
        four[0] / 4,
        "the 4-GPU task needs the untouched domain"
    );
}

#[test]
fn a_gang_goes_to_the_tightest_block_that_holds_it_whole() {
    // Block 0: four nodes, block 1: two nodes, block 2: one node.
    let mut nodes = vec![node(8, 8, 0); 4];
    nodes.extend(vec![node(8, 8, 1); 2]);
    nodes.push(node(8, 8, 2));
    let fleet = fleet_of(&nodes);
    let mut e = Engine::new(&fleet, &tenants_of(&open_projects(1)), Policy::default()).unwrap();
    let now = Time::from_secs(1);
    e.submit(job_of(&job(0, 2, GpuRequest::Whole(8)), 0, now), now)
        .unwrap();
    e.schedule(now);
    let nodes: Vec<NodeId> = e.placement(JobId(0)).unwrap().nodes().collect();
    assert_eq!(
        nodes,
        vec![NodeId(4), NodeId(5)],
        "block 1 holds the gang exactly"
    );
    // Three nodes' worth fits only in block 0 now.
    e.submit(job_of(&job(0, 3, GpuRequest::Whole(8)), 1, now), now)
        .unwrap();
    e.schedule(now);
    let nodes: Vec<NodeId> = e.placement(JobId(1)).unwrap().nodes().collect();
    assert!(nodes.iter().all(|n| n.0 < 4), "{nodes:?}");
}

#[test]
fn shared_gpus_are_packed_so_whole_nodes_stay_free() {
    let fleet = fleet_of(&[node(8, 8, 0), node(8, 8, 0)]);
    let mut e = Engine::new(&fleet, &tenants_of(&open_projects(1)), Policy::default()).unwrap();
    let now = Time::from_secs(1);
    for i in 0..4 {
        e.submit(job_of(&job(0, 1, GpuRequest::Fraction(500)), i, now), now)
            .unwrap();
        e.schedule(now);
    }
    e.submit(job_of(&job(0, 1, GpuRequest::Whole(8)), 9, now), now)
        .unwrap();
    let d = e.schedule(now);
    assert!(
        d.starts.iter().any(|s| s.job == JobId(9)),
        "the fractional tasks must share GPUs on one node, leaving the other whole"
    );
    e.check_invariants().unwrap();
}

#[test]
fn bad_jobs_are_refused_with_the_field_named() {
    let fleet = fleet_of(&[node(8, 8, 0)]);
    let mut e = Engine::new(&fleet, &tenants_of(&open_projects(1)), Policy::default()).unwrap();
    let now = Time::from_secs(1);
    let mut zero = job_of(&job(0, 1, GpuRequest::Whole(1)), 1, now);
    zero.spec.replicas = 0;
    assert!(
        e.submit(zero, now)
            .unwrap_err()
            .to_string()
            .starts_with("replicas:")
    );
    let fraction = job_of(&job(0, 1, GpuRequest::Fraction(1500)), 2, now);
    assert!(
        e.submit(fraction, now)
            .unwrap_err()
            .to_string()
            .starts_with("gpu_fraction:")
    );
    let mut unknown = job_of(&job(0, 1, GpuRequest::Whole(1)), 3, now);
    unknown.spec.gpu_models = vec![haneul_model::GpuModel::new("A100").unwrap()];
    let err = e.submit(unknown, now).unwrap_err();
    assert!(matches!(err, SchedError::UnknownGpuModel(..)));
    assert!(err.to_string().starts_with("gpu_models:"), "{err}");
    let huge = job_of(&job(0, 2, GpuRequest::Whole(8)), 4, now);
    let err = e.submit(huge, now).unwrap_err();
    assert!(matches!(err, SchedError::TooLarge { .. }), "{err}");
    let nine = job_of(&job(0, 1, GpuRequest::Whole(9)), 5, now);
    assert!(e.submit(nine, now).is_err());
    let stranger = job_of(&job(7, 1, GpuRequest::Whole(1)), 6, now);
    assert!(matches!(
        e.submit(stranger, now),
        Err(SchedError::UnknownProject(_))
    ));
    assert_eq!(e.queued_len(), 0, "nothing refused is queued");
}

#[test]
fn fifo_lets_the_blocked_head_hold_the_queue() {
    let fleet = fleet_of(&[node(8, 8, 0)]);
    let mut e = Engine::new(&fleet, &tenants_of(&open_projects(1)), Policy::fifo()).unwrap();
    let now = Time::from_secs(1);
    e.submit(job_of(&job(0, 1, GpuRequest::Whole(4)), 0, now), now)
        .unwrap();
    e.schedule(now);
    e.submit(job_of(&job(0, 1, GpuRequest::Whole(8)), 1, now), now)
        .unwrap();
    e.submit(job_of(&job(0, 1, GpuRequest::Whole(1)), 2, now), now)
        .unwrap();
    let d = e.schedule(now);
    assert!(
        d.starts.is_empty(),
        "strict FIFO: the 1-GPU job waits behind the 8-GPU one"
    );
    // The default policy backfills the small job: it ends before the big one could start.
    let mut e = Engine::new(&fleet, &tenants_of(&open_projects(1)), Policy::default()).unwrap();
    e.submit(job_of(&job(0, 1, GpuRequest::Whole(4)), 0, now), now)
        .unwrap();
    e.schedule(now);
    e.submit(job_of(&job(0, 1, GpuRequest::Whole(8)), 1, now), now)
        .unwrap();
    let mut short = job(0, 1, GpuRequest::Whole(1));
    short.estimate_s = 60;
    e.submit(job_of(&short, 2, now), now).unwrap();
    let d = e.schedule(now);
    assert_eq!(d.starts.len(), 1);
    assert_eq!(d.starts[0].job, JobId(2));
    assert_eq!(d.reservations[0].job, JobId(1));
}

#[test]
fn non_preemptible_work_never_borrows_and_is_never_a_victim() {
    let fleet = fleet_of(&[node(8, 8, 0)]);
    let projects = vec![
        ProjectGen {
            weight: 1,
            guarantee: 4,
            borrow_limit: None,
        },
        ProjectGen {
            weight: 1,
            guarantee: 4,
            borrow_limit: None,
        },
    ];
    let mut e = Engine::new(&fleet, &tenants_of(&projects), Policy::default()).unwrap();
    let now = Time::from_secs(1);
    let mut pinned = job(0, 1, GpuRequest::Whole(4));
    pinned.preemptible = false;
    e.submit(job_of(&pinned, 0, now), now).unwrap();
    // Above the guarantee and not preemptible: it may not borrow.
    e.submit(job_of(&pinned, 1, now), now).unwrap();
    let d = e.schedule(now);
    assert_eq!(
        d.starts.iter().map(|s| s.job).collect::<Vec<_>>(),
        vec![JobId(0)]
    );
    assert_eq!(e.job_state(JobId(1)), Some(JobState::Queued));
    // Project 1 fills the rest by borrowing nothing: its 4 GPUs are its guarantee.
    e.submit(job_of(&job(1, 1, GpuRequest::Whole(4)), 2, now), now)
        .unwrap();
    let d = e.schedule(now);
    assert_eq!(d.starts.len(), 1);
    assert!(!d.starts[0].borrowing);
    assert!(d.preemptions.is_empty());
}

#[test]
fn fair_share_divides_a_contended_fleet_by_weight() {
    let fleet = fleet_of(&[node(8, 8, 0), node(8, 8, 0)]);
    let projects = vec![
        ProjectGen {
            weight: 1,
            guarantee: 0,
            borrow_limit: None,
        },
        ProjectGen {
            weight: 3,
            guarantee: 0,
            borrow_limit: None,
        },
    ];
    let mut e = Engine::new(&fleet, &tenants_of(&projects), Policy::default()).unwrap();
    let now = Time::from_secs(1);
    for i in 0..40 {
        e.submit(
            job_of(&job((i % 2) as u32, 1, GpuRequest::Whole(1)), i, now),
            now,
        )
        .unwrap();
    }
    e.schedule(now);
    let alloc = |p: u32| {
        e.project_allocation(haneul_model::ProjectId(p)).unwrap()[0]
            .1
            .0
            / 1000
    };
    assert_eq!((alloc(0), alloc(1)), (4, 12), "16 GPUs split 1:3");
}

/// A job lasting `hours` (its estimate).
fn lasting(project: u32, replicas: u32, gpu: GpuRequest, hours: i64) -> JobGen {
    JobGen {
        estimate_s: hours * 3600,
        ..job(project, replicas, gpu)
    }
}

/// Two nodes left alike (one GPU free each) by a 1-hour and a 10-hour job; a third job's node.
fn node_for_a_task_among_alike_nodes(policy: Policy, hours: i64) -> NodeId {
    let fleet = fleet_of(&[node(8, 8, 0), node(8, 8, 0)]);
    let mut e = Engine::new(&fleet, &tenants_of(&open_projects(1)), policy).unwrap();
    let now = Time::from_secs(1);
    e.submit(job_of(&lasting(0, 1, GpuRequest::Whole(7), 1), 0, now), now)
        .unwrap();
    e.submit(
        job_of(&lasting(0, 1, GpuRequest::Whole(7), 10), 1, now),
        now,
    )
    .unwrap();
    e.schedule(now);
    let short_on = e.placement(JobId(0)).unwrap().tasks[0].node;
    let long_on = e.placement(JobId(1)).unwrap().tasks[0].node;
    assert_ne!(short_on, long_on);
    let later = Time::from_secs(60);
    e.submit(
        job_of(&lasting(0, 1, GpuRequest::Whole(1), hours), 2, later),
        later,
    )
    .unwrap();
    e.schedule(later);
    e.check_invariants().unwrap();
    let on = e.placement(JobId(2)).unwrap().tasks[0].node;
    // Name the answer by what runs there, not by index.
    if on == short_on { NodeId(0) } else { NodeId(1) }
}

#[test]
fn among_alike_nodes_a_task_goes_where_running_work_outlasts_it() {
    let aligned = Policy::default();
    assert!(aligned.align_ends, "Haneul aligns end times by default");
    // NodeId(0): beside the 1-hour job; NodeId(1): beside the 10-hour job.
    assert_eq!(
        node_for_a_task_among_alike_nodes(aligned.clone(), 2),
        NodeId(1),
        "a 2-hour task beside the 1-hour job would keep that node from freeing whole"
    );
    assert_eq!(
        node_for_a_task_among_alike_nodes(aligned.clone(), 20),
        NodeId(1),
        "a 20-hour task outlasts both; beside the 10-hour job it outlasts the node's work least"
    );
    assert_eq!(
        node_for_a_task_among_alike_nodes(
            Policy {
                align_ends: false,
                ..Policy::default()
            },
            2
        ),
        NodeId(0),
        "without alignment alike nodes go by index (the 1-hour job's node was placed first)"
    );
}

#[test]
fn long_whole_node_jobs_use_a_projects_turn_first_and_short_tasks_keep_their_order() {
    // One 8-GPU node, busy until t = 100 s; then two 5-GPU tasks (1 h, then 10 h) and two
    // 8-GPU jobs (1 h, then 10 h) wait, in that submission order.
    let run = |policy: Policy| -> Vec<JobId> {
        let fleet = fleet_of(&[node(8, 8, 0)]);
        let mut e = Engine::new(&fleet, &tenants_of(&open_projects(1)), policy).unwrap();
        let t0 = Time::from_secs(1);
        e.submit(job_of(&lasting(0, 1, GpuRequest::Whole(8), 1), 0, t0), t0)
            .unwrap();
        e.schedule(t0);
        let waiting = [(5, 1), (5, 10), (8, 1), (8, 10)];
        for (i, (gpus, hours)) in waiting.into_iter().enumerate() {
            let t = Time::from_secs(10 * (i as i64 + 1));
            let j = lasting(0, 1, GpuRequest::Whole(gpus), hours);
            e.submit(job_of(&j, i as u64 + 1, t), t).unwrap();
        }
        let t = Time::from_secs(100);
        e.finish(JobId(0), t).unwrap();
        e.schedule(t).starts.iter().map(|s| s.job).collect()
    };
    // The credit alone: one project's deep backlog would otherwise go longest first.
    let run = |policy: Policy| {
        run(Policy {
            longest_first_alone: false,
            ..policy
        })
    };
    assert_eq!(
        run(Policy::default()),
        vec![JobId(4)],
        "the 10-hour 8-GPU job first"
    );
    assert_eq!(
        run(Policy {
            estimate_age_large_only: false,
            ..Policy::default()
        }),
        vec![JobId(2)],
        "credited for every size, the 10-hour 5-GPU task would go first"
    );
    assert_eq!(
        run(Policy {
            estimate_age_pct: 0,
            ..Policy::default()
        }),
        vec![JobId(1)],
        "without credit, submission order"
    );
}

#[test]
fn below_the_full_credit_span_a_short_gang_keeps_its_place_before_a_later_long_one() {
    // One 8-GPU node busy for 100 h; 8-GPU jobs wait: 2 h (submitted at 1 h), 10 h (at 20 h)
    // and, in the second run, 30 h (at 50 h). The node frees at 60 h and takes one of them.
    let run = |full_at_h: i64, with_long: bool| -> Vec<JobId> {
        let policy = Policy {
            estimate_age_pct: 400,
            estimate_age_full_at: Span::from_hours(full_at_h),
            // The credit alone: one project's deep backlog would otherwise go longest first.
            longest_first_alone: false,
            ..Policy::default()
        };
        let fleet = fleet_of(&[node(8, 8, 0)]);
        let mut e = Engine::new(&fleet, &tenants_of(&open_projects(1)), policy).unwrap();
        let t0 = Time::from_secs(1);
        e.submit(job_of(&lasting(0, 1, GpuRequest::Whole(8), 100), 0, t0), t0)
            .unwrap();
        e.schedule(t0);
        let mut waiting = vec![(2, 1), (10, 20)];
        if with_long {
            waiting.push((30, 50));
        }
        for (i, (hours, at_h)) in waiting.into_iter().enumerate() {
            let t = Time::from_secs(at_h * 3600);
            let j = lasting(0, 1, GpuRequest::Whole(8), hours);
            e.submit(job_of(&j, i as u64 + 1, t), t).unwrap();
        }
        let t = Time::from_secs(60 * 3600);
        e.finish(JobId(0), t).unwrap();
        e.schedule(t).starts.iter().map(|s| s.job).collect()
    };
    assert_eq!(
        run(0, false),
        vec![JobId(2)],
        "with the whole credit (40 h against 8 h) the 10-hour job goes first"
    );
    assert_eq!(
        run(24, false),
        vec![JobId(1)],
        "scaled below 24 h (16.7 h against 0.7 h) the 2-hour job keeps its place"
    );
    assert_eq!(
        run(24, true),
        vec![JobId(3)],
        "a job longer than 24 h keeps the whole credit (120 h) and goes first"
    );
}

fn minutes(project: u32, gpus: u32, minutes: i64) -> JobGen {
    JobGen {
        estimate_s: minutes * 60,
        ..job(project, 1, GpuRequest::Whole(gpus))
    }
}

#[test]
fn a_tiny_job_takes_a_gap_before_a_lighter_projects_longer_one() {
    // One 8-GPU node. Project 1 runs 7 GPUs (6 for 10 h, 1 until t = 100 s), project 0 one GPU
    // for 10 h, so project 0 has the lower share of the two. Project 2 (no usage) queues an
    // 8-GPU job, which holds the pass's reservation; then project 0 queues a 2-hour 1-GPU job and
    // project 1 a 10-minute one. At 100 s one GPU frees beside running work, and both would end
    // before the reservation starts.
    let run = |policy: Policy| -> Vec<JobId> {
        let fleet = fleet_of(&[node(8, 8, 0)]);
        let mut e = Engine::new(&fleet, &tenants_of(&open_projects(3)), policy).unwrap();
        let t0 = Time::from_secs(1);
        e.submit(job_of(&lasting(1, 1, GpuRequest::Whole(6), 10), 0, t0), t0)
            .unwrap();
        e.submit(job_of(&minutes(1, 1, 1), 1, t0), t0).unwrap();
        e.submit(job_of(&lasting(0, 1, GpuRequest::Whole(1), 10), 2, t0), t0)
            .unwrap();
        assert_eq!(e.schedule(t0).starts.len(), 3);
        let t = Time::from_secs(10);
        e.submit(job_of(&lasting(2, 1, GpuRequest::Whole(8), 1), 3, t), t)
            .unwrap();
        e.submit(job_of(&minutes(0, 1, 120), 4, t), t).unwrap();
        e.submit(job_of(&minutes(1, 1, 10), 5, t), t).unwrap();
        e.schedule(t);
        let t = Time::from_secs(100);
        e.finish(JobId(1), t).unwrap();
        let d = e.schedule(t);
        e.check_invariants().unwrap();
        assert_eq!(d.reservations.len(), 1);
        assert_eq!(d.reservations[0].job, JobId(3));
        d.starts.iter().map(|s| s.job).collect()
    };
    let lane = Policy::default();
    assert_eq!(lane.express_gpu_time, Span::from_secs(30 * 60));
    assert_eq!(
        run(lane),
        vec![JobId(5)],
        "10 GPU-minutes is in the express lane: it goes before fair share"
    );
    assert_eq!(
        run(Policy {
            express_gpu_time: Span::from_secs(5 * 60),
            ..Policy::default()
        }),
        vec![JobId(4)],
        "above the lane's size fair share decides: the lighter project's job"
    );
    assert_eq!(
        run(Policy {
            express_gpu_time: Span::ZERO,
            ..Policy::default()
        }),
        vec![JobId(4)],
        "without the lane, fair share"
    );
}

#[test]
fn the_express_lane_never_breaks_a_wholly_free_node() {
    // Node 0 is full (project 1, 10 h); node 1 is free. Project 1 queues a 10-minute 1-GPU job,
    // then project 0 (lower share) an 8-GPU job. With no reservation to make, the lane runs first
    // in the pass: it must leave node 1 whole for the fair-share order.
    let policy = Policy {
        reservations: 0,
        ..Policy::default()
    };
    let fleet = fleet_of(&[node(8, 8, 0), node(8, 8, 0)]);
    let mut e = Engine::new(&fleet, &tenants_of(&open_projects(2)), policy).unwrap();
    let t0 = Time::from_secs(1);
    e.submit(job_of(&lasting(1, 1, GpuRequest::Whole(8), 10), 0, t0), t0)
        .unwrap();
    e.schedule(t0);
    let t = Time::from_secs(10);
    e.submit(job_of(&minutes(1, 1, 10), 1, t), t).unwrap();
    e.submit(job_of(&lasting(0, 1, GpuRequest::Whole(8), 1), 2, t), t)
        .unwrap();
    let starts: Vec<JobId> = e.schedule(t).starts.iter().map(|s| s.job).collect();
    e.check_invariants().unwrap();
    assert_eq!(starts, vec![JobId(2)], "the 8-GPU job gets the free node");
    // Alone in the queue, a tiny job still runs on a free node: the lane only orders.
    let t = Time::from_secs(20);
    e.finish(JobId(2), t).unwrap();
    let starts: Vec<JobId> = e.schedule(t).starts.iter().map(|s| s.job).collect();
    assert_eq!(starts, vec![JobId(1)]);
}

#[test]
fn a_reserved_job_keeps_its_claim_in_the_next_pass() {
    // One 8-GPU node, busy until 1 h (project 1, 7 GPUs). Project 0 used a GPU for ten minutes,
    // then queues an 8-GPU job: it gets the reservation. Project 2, with no usage, then queues
    // an 8-GPU job of its own and would come first in fair-share order.
    let run = |policy: Policy| -> (JobId, Vec<JobId>) {
        let fleet = fleet_of(&[node(8, 8, 0)]);
        let mut e = Engine::new(&fleet, &tenants_of(&open_projects(3)), policy).unwrap();
        let t0 = Time::from_secs(1);
        e.submit(job_of(&lasting(1, 1, GpuRequest::Whole(7), 1), 0, t0), t0)
            .unwrap();
        e.submit(job_of(&minutes(0, 1, 10), 1, t0), t0).unwrap();
        e.schedule(t0);
        let t = Time::from_secs(601);
        e.finish(JobId(1), t).unwrap();
        e.submit(job_of(&lasting(0, 1, GpuRequest::Whole(8), 1), 2, t), t)
            .unwrap();
        assert_eq!(e.schedule(t).reservations[0].job, JobId(2));
        let t = Time::from_secs(700);
        e.submit(job_of(&lasting(2, 1, GpuRequest::Whole(8), 1), 3, t), t)
            .unwrap();
        let reserved = e.schedule(t).reservations[0].job;
        let t = Time::from_secs(3601);
        e.finish(JobId(0), t).unwrap();
        let starts = e.schedule(t).starts.iter().map(|s| s.job).collect();
        e.check_invariants().unwrap();
        (reserved, starts)
    };
    assert!(Policy::default().sticky_reservations);
    assert_eq!(
        run(Policy::default()),
        (JobId(2), vec![JobId(2)]),
        "the drain goes to the job it was begun for"
    );
    assert_eq!(
        run(Policy {
            sticky_reservations: false,
            ..Policy::default()
        }),
        (JobId(3), vec![JobId(3)]),
        "without sticky reservations the lighter project takes over the drain"
    );
}

#[test]
fn fair_share_usage_halves_in_a_day_and_slurm_like_keeps_seven() {
    let usage_ratio = |policy: Policy| -> f64 {
        let fleet = fleet_of(&[node(8, 8, 0)]);
        let mut e = Engine::new(&fleet, &tenants_of(&open_projects(1)), policy).unwrap();
        let t0 = Time::from_secs(0);
        e.submit(job_of(&lasting(0, 1, GpuRequest::Whole(1), 1), 0, t0), t0)
            .unwrap();
        e.schedule(t0);
        let t = Time::from_secs(3600);
        e.finish(JobId(0), t).unwrap();
        let at_end = e
            .project_usage_gpu_hours(haneul_model::ProjectId(0))
            .unwrap();
        // Another submission moves the engine's clock a day on.
        let later = Time::from_secs(3600 + 86_400);
        e.submit(
            job_of(&lasting(0, 1, GpuRequest::Whole(1), 1), 1, later),
            later,
        )
        .unwrap();
        e.project_usage_gpu_hours(haneul_model::ProjectId(0))
            .unwrap()
            / at_end
    };
    let haneul = usage_ratio(Policy::default());
    assert!((haneul - 0.5).abs() < 1e-9, "{haneul}");
    let slurm = usage_ratio(Policy::slurm_like());
    assert!((slurm - 0.5f64.powf(1.0 / 7.0)).abs() < 1e-9, "{slurm}");
}

/// Projects 0 and 2 open (no guarantee), project 1 guaranteed `guarantee` GPUs.
fn one_owed_project(guarantee: u64) -> Vec<ProjectGen> {
    let mut projects = open_projects(3);
    projects[1].guarantee = guarantee;
    projects
}

#[test]
fn the_express_lane_stands_aside_while_a_guarantee_is_owed() {
    // One 8-GPU node: project 0 borrows 7 GPUs for 10 h; project 2's 8-GPU job holds the pass's
    // reservation (at 10 h), so the lane would go first in the next pass. Then project 0 queues
    // a 10-minute 1-GPU job (in the lane) and project 1, owed one GPU, a 2-hour one.
    let fleet = fleet_of(&[node(8, 8, 0)]);
    let mut e = Engine::new(&fleet, &tenants_of(&one_owed_project(1)), Policy::default()).unwrap();
    let t0 = Time::from_secs(1);
    e.submit(job_of(&lasting(0, 1, GpuRequest::Whole(7), 10), 0, t0), t0)
        .unwrap();
    e.submit(job_of(&lasting(2, 1, GpuRequest::Whole(8), 1), 1, t0), t0)
        .unwrap();
    let d = e.schedule(t0);
    assert_eq!(d.reservations[0].job, JobId(1));
    let t = Time::from_secs(10);
    e.submit(job_of(&minutes(0, 1, 10), 2, t), t).unwrap();
    e.submit(job_of(&minutes(1, 1, 120), 3, t), t).unwrap();
    let d = e.schedule(t);
    e.check_invariants().unwrap();
    let starts: Vec<JobId> = d.starts.iter().map(|s| s.job).collect();
    assert_eq!(
        starts,
        vec![JobId(3)],
        "the owed project takes the free GPU; the lane's borrowed job does not pass it"
    );
    assert!(d.preemptions.is_empty(), "{:?}", d.preemptions);
    // Once nothing is owed the lane is back: the tiny job goes before project 2's reservation.
    let t = Time::from_secs(20);
    e.finish(JobId(3), t).unwrap();
    e.submit(job_of(&minutes(2, 1, 120), 4, t), t).unwrap();
    let starts: Vec<JobId> = e.schedule(t).starts.iter().map(|s| s.job).collect();
    assert_eq!(starts, vec![JobId(2)]);
}

#[test]
fn a_sticky_claim_stands_aside_while_a_guarantee_is_owed() {
    // One 8-GPU node: project 0 borrows 4 GPUs for 1 h and project 2 the other 4 for 10 h.
    // Project 0's next 4-GPU job holds the reservation for 1 h, and would keep it; just before
    // then project 1, owed four GPUs, queues a 4-GPU job.
    let run = |policy: Policy| {
        let fleet = fleet_of(&[node(8, 8, 0)]);
        let mut e = Engine::new(&fleet, &tenants_of(&one_owed_project(4)), policy).unwrap();
        let t0 = Time::from_secs(1);
        e.submit(job_of(&lasting(0, 1, GpuRequest::Whole(4), 1), 0, t0), t0)
            .unwrap();
        e.submit(job_of(&lasting(2, 1, GpuRequest::Whole(4), 10), 1, t0), t0)
            .unwrap();
        e.schedule(t0);
        let t = Time::from_secs(10);
        e.submit(job_of(&lasting(0, 1, GpuRequest::Whole(4), 1), 2, t), t)
            .unwrap();
        assert_eq!(e.schedule(t).reservations[0].job, JobId(2));
        let t = Time::from_secs(3000);
        e.submit(job_of(&lasting(1, 1, GpuRequest::Whole(4), 1), 3, t), t)
            .unwrap();
        let t = Time::from_secs(3601);
        e.finish(JobId(0), t).unwrap();
        let d = e.schedule(t);
        e.check_invariants().unwrap();
        let starts: Vec<JobId> = d.starts.iter().map(|s| s.job).collect();
        (starts, d.preemptions.len())
    };
    assert_eq!(
        run(Policy::default()),
        (vec![JobId(3)], 0),
        "the owed project's job takes the freed GPUs; the claim waits"
    );
    // The claim itself is kept when nobody is owed: the same run with project 1 open.
    let fleet = fleet_of(&[node(8, 8, 0)]);
    let mut e = Engine::new(&fleet, &tenants_of(&open_projects(3)), Policy::default()).unwrap();
    let t0 = Time::from_secs(1);
    e.submit(job_of(&lasting(0, 1, GpuRequest::Whole(4), 1), 0, t0), t0)
        .unwrap();
    e.submit(job_of(&lasting(2, 1, GpuRequest::Whole(4), 10), 1, t0), t0)
        .unwrap();
    e.schedule(t0);
    let t = Time::from_secs(10);
    e.submit(job_of(&lasting(0, 1, GpuRequest::Whole(4), 1), 2, t), t)
        .unwrap();
    e.schedule(t);
    let t = Time::from_secs(3000);
    e.submit(job_of(&lasting(1, 1, GpuRequest::Whole(4), 1), 3, t), t)
        .unwrap();
    let t = Time::from_secs(3601);
    e.finish(JobId(0), t).unwrap();
    let starts: Vec<JobId> = e.schedule(t).starts.iter().map(|s| s.job).collect();
    assert_eq!(
        starts,
        vec![JobId(2)],
        "the drain goes to the job it was begun for"
    );
}

#[test]
fn a_deep_backlog_of_one_project_alone_goes_longest_first() {
    // One 8-GPU node, busy; one project queues whole-node jobs of 1 h, 1 h and 10 h, in that
    // order (12 h of work on the fleet, deeper than its longest job). When the node frees,
    // the 10-hour job goes first under the rule, the oldest 1-hour job without it.
    let first_started = |policy: Policy, second_project: bool| -> JobId {
        let fleet = fleet_of(&[node(8, 8, 0)]);
        let mut e = Engine::new(&fleet, &tenants_of(&open_projects(2)), policy).unwrap();
        let t0 = Time::from_secs(0);
        e.submit(job_of(&lasting(0, 1, GpuRequest::Whole(8), 1), 0, t0), t0)
            .unwrap();
        e.schedule(t0);
        for (id, hours) in [(1, 1), (2, 1), (3, 10)] {
            let t = Time::from_secs(id as i64);
            e.submit(
                job_of(&lasting(0, 1, GpuRequest::Whole(8), hours), id, t),
                t,
            )
            .unwrap();
        }
        if second_project {
            let t = Time::from_secs(4);
            e.submit(job_of(&lasting(1, 1, GpuRequest::Whole(8), 1), 4, t), t)
                .unwrap();
        }
        the_one_start_after(&mut e, JobId(0))
    };
    let plain = Policy {
        estimate_age_pct: 0,
        ..Policy::default()
    };
    assert!(plain.longest_first_alone);
    assert_eq!(first_started(plain.clone(), false), JobId(3));
    assert_eq!(
        first_started(
            Policy {
                longest_first_alone: false,
                ..plain.clone()
            },
            false
        ),
        JobId(1),
        "without the rule the queue order holds"
    );
    assert_eq!(
        first_started(plain, true),
        JobId(4),
        "with another project waiting, fair share decides (the other project has used nothing)"
    );
}

/// Finishes `running` an hour in and returns the one job the pass then starts in its place.
fn the_one_start_after(e: &mut Engine, running: JobId) -> JobId {
    let t = Time::from_secs(3600);
    e.finish(running, t).unwrap();
    let starts: Vec<JobId> = e.schedule(t).starts.iter().map(|s| s.job).collect();
    e.check_invariants().unwrap();
    assert_eq!(starts.len(), 1, "{starts:?}");
    starts[0]
}

#[test]
fn a_lone_backlog_half_as_deep_as_its_longest_job_goes_longest_first() {
    // Three busy 8-GPU nodes; one frees. One project queues whole-node jobs of 1 h each and one
    // of 10 h, last. The fleet would run the backlog in W/G hours (its node-hours over three
    // nodes): with six 1-hour jobs 5.3 h, more than half the longest job (53%), so it goes
    // first under the default depth (50%) but not under the rule's first form (100%); with
    // two 1-hour jobs 4 h (40%), too shallow: the oldest job keeps its turn.
    let first_started = |policy: Policy, short_jobs: u64| -> JobId {
        let fleet = fleet_of(&[node(8, 8, 0), node(8, 8, 0), node(8, 8, 0)]);
        let mut e = Engine::new(&fleet, &tenants_of(&open_projects(1)), policy).unwrap();
        let t0 = Time::from_secs(0);
        for id in 100..103 {
            e.submit(job_of(&lasting(0, 1, GpuRequest::Whole(8), 1), id, t0), t0)
                .unwrap();
        }
        assert_eq!(e.schedule(t0).starts.len(), 3);
        for id in 1..=short_jobs + 1 {
            let hours = if id == short_jobs + 1 { 10 } else { 1 };
            let t = Time::from_secs(id as i64);
            e.submit(
                job_of(&lasting(0, 1, GpuRequest::Whole(8), hours), id, t),
                t,
            )
            .unwrap();
        }
        the_one_start_after(&mut e, JobId(100))
    };
    let plain = Policy {
        estimate_age_pct: 0,
        ..Policy::default()
    };
    assert_eq!(plain.longest_first_depth_pct, 50);
    assert_eq!(
        first_started(plain.clone(), 6),
        JobId(7),
        "53%: longest first"
    );
    assert_eq!(
        first_started(
            Policy {
                longest_first_depth_pct: 100,
                ..plain.clone()
            },
            6
        ),
        JobId(1),
        "under the first form (100%) the queue order holds"
    );
    assert_eq!(
        first_started(plain, 2),
        JobId(1),
        "40%: too shallow, the queue order holds"
    );
}
