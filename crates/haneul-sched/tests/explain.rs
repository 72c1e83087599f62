//! The idle-time split ([`Engine::idle_causes`]): one small case per cause, each checking that
//! the free capacity lands in that cause and that the causes add up to what is free.

mod common;

use common::*;
use haneul_model::{GpuRequest, Time};
use haneul_sched::{Engine, IdleCauses, Policy};

fn node(gpus: u32) -> NodeGen {
    NodeGen {
        model: 0,
        gpus,
        domain: gpus,
        block: 0,
        cpu: 128,
    }
}

fn job(project: u32, gpus: u32, estimate_s: i64) -> JobGen {
    JobGen {
        project,
        replicas: 1,
        gpu: GpuRequest::Whole(gpus),
        cpu: 1,
        models: vec![],
        priority: haneul_model::PriorityClass::Normal,
        preemptible: true,
        estimate_s,
    }
}

fn open(n: usize) -> Vec<ProjectGen> {
    (0..n)
        .map(|_| ProjectGen {
            weight: 1,
            guarantee: 0,
            borrow_limit: None,
        })
        .collect()
}

/// Submits the jobs in order, one second apart, running a pass after each; returns the split
/// after the last pass.
fn run(nodes: &[NodeGen], projects: &[ProjectGen], policy: Policy, jobs: &[JobGen]) -> IdleCauses {
    let mut e = Engine::new(&fleet_of(nodes), &tenants_of(projects), policy).unwrap();
    for (i, j) in jobs.iter().enumerate() {
        let now = Time::from_secs(1 + i as i64);
        e.submit(job_of(j, i as u64, now), now).unwrap();
        e.schedule(now);
    }
    e.check_invariants().unwrap();
    e.idle_causes()
}

fn only(c: IdleCauses, f: impl Fn(&IdleCauses) -> u64, milli: u64) {
    assert_eq!(f(&c), milli, "{c:?}");
    assert_eq!(c.total(), milli, "nothing else is free: {c:?}");
}

#[test]
fn nothing_waiting_is_no_demand() {
    let c = run(&[node(8)], &open(1), Policy::default(), &[job(0, 3, 3600)]);
    only(c, |c| c.no_demand, 5000);
}

#[test]
fn gpus_kept_for_a_blocked_gang_are_reserved() {
    // 4 of 8 GPUs busy for an hour; an 8-GPU job waits and reserves the node.
    let c = run(
        &[node(8)],
        &open(2),
        Policy::default(),
        &[job(0, 4, 3600), job(1, 8, 3600)],
    );
    only(c, |c| c.reserved, 4000);
}

#[test]
fn free_gpus_no_waiting_job_fits_are_fragmentation() {
    // 6 of 8 busy; the waiting job needs 4 on one node. Without reservations nothing holds the
    // 2 free GPUs: they are simply too few.
    let policy = Policy {
        reservations: 0,
        ..Policy::default()
    };
    let c = run(
        &[node(8)],
        &open(2),
        policy,
        &[job(0, 6, 3600), job(1, 4, 3600)],
    );
    only(c, |c| c.fragmentation, 2000);
}

#[test]
fn capacity_a_borrowing_limit_forbids_is_quota() {
    // The project may borrow 2 GPUs above a zero guarantee: its 3-GPU job waits on an idle node.
    let projects = [ProjectGen {
        weight: 1,
        guarantee: 0,
        borrow_limit: Some(2),
    }];
    let c = run(&[node(8)], &projects, Policy::default(), &[job(0, 3, 3600)]);
    only(c, |c| c.quota, 8000);
}

#[test]
fn a_fitting_job_behind_a_blocked_fifo_head_is_not_started() {
    // Strict FIFO: the 8-GPU head waits for the 4 busy GPUs, and the 2-GPU job behind it, which
    // would fit, waits too.
    let c = run(
        &[node(8)],
        &open(1),
        Policy::fifo(),
        &[job(0, 4, 3600), job(0, 8, 3600), job(0, 2, 60)],
    );
    only(c, |c| c.not_started, 4000);
}

#[test]
fn gpus_held_while_victims_stop_are_a_reclaim_hold() {
    // Project 0 borrows 4 GPUs; project 1, guaranteed the whole node, asks for all 8: the 4 free
    // GPUs are held for it while project 0's job has its grace period.
    let projects = [
        ProjectGen {
            weight: 1,
            guarantee: 0,
            borrow_limit: None,
        },
        ProjectGen {
            weight: 1,
            guarantee: 8,
            borrow_limit: None,
        },
    ];
    let c = run(
        &[node(8)],
        &projects,
        Policy::default(),
        &[job(0, 4, 3600), job(1, 8, 3600)],
    );
    only(c, |c| c.reclaim_hold, 4000);
}
