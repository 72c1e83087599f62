//! Property tests of the engine's invariants over random fleets, tenants and workloads.

mod common;

use common::*;
use haneul_model::{JobId, NodeId, NodeState, Span, Time};
use haneul_sched::{Decisions, Engine, JobState, Policy};
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;

/// `cases` cases, after the failures saved in `properties.proptest-regressions` beside this
/// file, which every run replays first (and where a new failure is saved).
fn replaying_saved_failures(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource(
            "proptest-regressions",
        ))),
        ..ProptestConfig::default()
    }
}
use std::collections::BTreeMap;

/// One step a driver may take between passes.
#[derive(Debug, Clone)]
enum Step {
    Submit(JobGen),
    FinishOldest,
    NodeDown(u32),
    NodeUp(u32),
    Wait(i64),
}

fn step_gen(projects: u32) -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => job_gen(projects).prop_map(Step::Submit),
        3 => Just(Step::FinishOldest),
        1 => (0..16u32).prop_map(Step::NodeDown),
        1 => (0..16u32).prop_map(Step::NodeUp),
        2 => (1..3600i64).prop_map(Step::Wait),
    ]
}

/// Plays the steps against an engine as a driver would: preempted jobs are requeued at their
/// kill time, node losses requeue their jobs. Returns every pass's decisions.
fn drive(engine: &mut Engine, nodes: usize, steps: &[Step]) -> Vec<Decisions> {
    let mut now = Time::from_secs(1);
    let mut running: Vec<JobId> = Vec::new();
    let mut next_id = 0u64;
    let mut out = Vec::new();
    let mut pending_kills: BTreeMap<(Time, JobId), ()> = BTreeMap::new();
    for step in steps {
        match step {
            Step::Submit(g) => {
                let job = job_of(g, next_id, now);
                next_id += 1;
                let _ = engine.submit(job, now);
            }
            Step::FinishOldest => {
                if !running.is_empty() {
                    let j = running.remove(0);
                    engine.finish(j, now).unwrap();
                }
            }
            Step::NodeDown(n) | Step::NodeUp(n) if (*n as usize) < nodes => {
                let state = if matches!(step, Step::NodeDown(_)) {
                    NodeState::Down
                } else {
                    NodeState::Up
                };
                let lost = engine.set_node_state(NodeId(*n), state, now).unwrap();
                if state == NodeState::Down {
                    for j in lost {
                        engine.requeue(j, now).unwrap();
                        running.retain(|r| *r != j);
                    }
                }
            }
            Step::NodeDown(_) | Step::NodeUp(_) => {}
            Step::Wait(s) => now = now + Span::from_secs(*s),
        }
        let due: Vec<(Time, JobId)> = pending_kills
            .range(..=(now, JobId(u64::MAX)))
            .map(|(k, _)| *k)
            .collect();
        for k in due {
            pending_kills.remove(&k);
            if matches!(engine.job_state(k.1), Some(JobState::Preempting { .. })) {
                engine.requeue(k.1, now).unwrap();
                running.retain(|r| *r != k.1);
            }
        }
        let d = engine.schedule(now);
        for s in &d.starts {
            running.push(s.job);
        }
        for p in &d.preemptions {
            pending_kills.insert((p.kill_at, p.victim), ());
        }
        engine.check_invariants().unwrap();
        // The idle split accounts for every free GPU share of the nodes that are up, once.
        let free: u64 = engine
            .gpu_allocation()
            .iter()
            .map(|(_, alloc, cap)| cap.0 - alloc.0)
            .sum();
        assert_eq!(
            engine.idle_causes().total(),
            free,
            "idle causes must partition free GPUs"
        );
        out.push(d);
    }
    out
}

fn scenario() -> impl Strategy<Value = (Vec<NodeGen>, Vec<ProjectGen>, Vec<Step>)> {
    (
        proptest::collection::vec(node_gen(), 1..12),
        proptest::collection::vec(project_gen(), 1..4),
    )
        .prop_flat_map(|(nodes, projects)| {
            let n = projects.len() as u32;
            (
                Just(nodes),
                Just(projects),
                proptest::collection::vec(step_gen(n), 1..60),
            )
        })
}

proptest! {
    #![proptest_config(replaying_saved_failures(256))]

    /// No GPU share above 1000, CPU and memory within capacity, gangs whole, quotas and borrowing
    /// limits held, the accounting consistent: `check_invariants` after every pass.
    #[test]
    fn invariants_hold_under_any_workload((nodes, projects, steps) in scenario()) {
        let fleet = fleet_of(&nodes);
        let tenants = tenants_of(&projects);
        let mut engine = Engine::new(&fleet, &tenants, Policy::default()).unwrap();
        let passes = drive(&mut engine, nodes.len(), &steps);
        for d in &passes {
            for s in &d.starts {
                // Gangs are atomic: a start carries every task, each on distinct GPUs of a node.
                prop_assert!(!s.placement.tasks.is_empty());
                for t in &s.placement.tasks {
                    let mut gpus = t.gpus.clone();
                    gpus.dedup();
                    prop_assert_eq!(gpus.len(), t.gpus.len());
                }
            }
        }
    }

    /// The queue-order knobs (ageing, the oldest job's reservation, estimate-weighted order, the
    /// express lane, a lone deep backlog longest first) and end-time alignment keep every
    /// invariant and stay deterministic.
    #[test]
    fn queue_order_knobs_keep_the_invariants(
        (nodes, projects, steps) in scenario(),
        age_h in 0..48i64,
        reserve_oldest in any::<bool>(),
        estimate_age_pct in 0..800u32,
        estimate_age_large_only in any::<bool>(),
        estimate_age_full_at_h in 0..48i64,
        align_ends in any::<bool>(),
        reservations in 0..4usize,
        sticky_reservations in any::<bool>(),
        express_min in 0..240i64,
        longest_first_alone in any::<bool>(),
        longest_first_depth_pct in 0..200u32,
    ) {
        let fleet = fleet_of(&nodes);
        let tenants = tenants_of(&projects);
        let policy = Policy {
            age_half_life: Span::from_hours(age_h),
            express_gpu_time: Span::from_secs(express_min * 60),
            reserve_oldest,
            estimate_age_pct,
            estimate_age_large_only,
            estimate_age_full_at: Span::from_hours(estimate_age_full_at_h),
            align_ends,
            reservations,
            sticky_reservations,
            longest_first_alone,
            longest_first_depth_pct,
            ..Policy::default()
        };
        let mut a = Engine::new(&fleet, &tenants, policy.clone()).unwrap();
        let mut b = Engine::new(&fleet, &tenants, policy).unwrap();
        let da = serde_json::to_string(&drive(&mut a, nodes.len(), &steps)).unwrap();
        let db = serde_json::to_string(&drive(&mut b, nodes.len(), &steps)).unwrap();
        prop_assert_eq!(da, db);
    }

    /// The same inputs give the same decisions, byte for byte.
    #[test]
    fn decisions_are_deterministic((nodes, projects, steps) in scenario()) {
        let fleet = fleet_of(&nodes);
        let tenants = tenants_of(&projects);
        let mut a = Engine::new(&fleet, &tenants, Policy::default()).unwrap();
        let mut b = Engine::new(&fleet, &tenants, Policy::default()).unwrap();
        let da = serde_json::to_string(&drive(&mut a, nodes.len(), &steps)).unwrap();
        let db = serde_json::to_string(&drive(&mut b, nodes.len(), &steps)).unwrap();
        prop_assert_eq!(da, db);
    }

    /// Backfill never delays the reserved head job: after the pass that made the reservation
    /// (and started others behind it), the job can still start no later than promised.
    /// Every project is either all borrowing or all guaranteed, so reservations and backfill
    /// compete in one mode (guaranteed work may pass a borrowing job's reservation, by design).
    #[test]
    fn backfill_never_delays_the_reservation(
        (nodes, projects, steps) in scenario(),
        extra in proptest::collection::vec(job_gen(1), 1..30),
        all_guaranteed in any::<bool>(),
        reserve_oldest in any::<bool>(),
        express_min in 0..240i64,
    ) {
        let fleet = fleet_of(&nodes);
        let mut projects = projects;
        for p in &mut projects {
            p.guarantee = if all_guaranteed { 10_000 } else { 0 };
            p.borrow_limit = None;
        }
        let tenants = tenants_of(&projects);
        let policy = Policy {
            preemption: false,
            reserve_oldest,
            sticky_reservations: reserve_oldest,
            express_gpu_time: Span::from_secs(express_min * 60),
            ..Policy::default()
        };
        let mut engine = Engine::new(&fleet, &tenants, policy).unwrap();
        drive(&mut engine, nodes.len(), &steps);
        let now = Time::from_secs(1_000_000);
        for (i, g) in extra.iter().enumerate() {
            let _ = engine.submit(job_of(g, 1_000_000 + i as u64, now), now);
        }
        let d = engine.schedule(now);
        engine.check_invariants().unwrap();
        for r in &d.reservations {
            let earliest = engine.earliest_start(r.job);
            prop_assert!(
                earliest.is_some_and(|t| t <= r.start_at),
                "{} was promised {:?}, now earliest {:?}", r.job, r.start_at, earliest
            );
        }
    }

    /// A project asking for no more than its guarantee gets it back from borrowers, through
    /// preemption with grace, within a pass per four jobs; non-preemptible work is never a victim.
    #[test]
    fn guarantees_are_given_back(
        nodes in proptest::collection::vec(node_gen(), 1..8),
        fill in proptest::collection::vec(job_gen(1), 1..40),
        grace in 0..600i64,
    ) {
        let mut nodes = nodes;
        for n in &mut nodes {
            n.model = 0;
            n.cpu = 64;
        }
        let fleet = fleet_of(&nodes);
        let total: u64 = nodes.iter().map(|n| n.gpus as u64).sum();
        let guarantee = total / 2;
        // Project 0 borrows everything; project 1 is owed half the fleet.
        let projects = vec![
            ProjectGen { weight: 1, guarantee: 0, borrow_limit: None },
            ProjectGen { weight: 1, guarantee, borrow_limit: Some(0) },
        ];
        let tenants = tenants_of(&projects);
        let mut engine = Engine::new(&fleet, &tenants, Policy::default()).unwrap();
        let mut now = Time::from_secs(1);
        let mut id = 0;
        let mut pinned = Vec::new();
        for g in &fill {
            let mut g = g.clone();
            g.project = 0;
            g.models = vec![];
            g.cpu = 0;
            let mut job = job_of(&g, id, now);
            job.spec.grace = Span::from_secs(grace);
            if !job.spec.preemptible {
                pinned.push(job.id);
            }
            id += 1;
            let _ = engine.submit(job, now);
        }
        engine.schedule(now);
        // Project 1 asks for single whole GPUs up to its guarantee.
        let mut wanted = Vec::new();
        let mut asked = 0;
        while asked < guarantee {
            let g = JobGen {
                project: 1, replicas: 1, gpu: haneul_model::GpuRequest::Whole(1), cpu: 0,
                models: vec![], priority: haneul_model::PriorityClass::Normal,
                preemptible: false, estimate_s: 3600,
            };
            engine.submit(job_of(&g, id, now), now).unwrap();
            wanted.push(haneul_model::JobId(id));
            id += 1;
            asked += 1;
        }
        // At most four preemption plans per pass: every owed job gets its GPUs within a pass per
        // four jobs, plus one to start the last.
        for _ in 0..wanted.len().div_ceil(4) + 2 {
            let d = engine.schedule(now);
            for p in &d.preemptions {
                prop_assert!(!pinned.contains(&p.victim), "non-preemptible {} preempted", p.victim);
                prop_assert!(p.kill_at >= now);
                prop_assert_eq!(p.kill_at, now + Span::from_secs(grace));
            }
            now = now + Span::from_secs(grace + 1);
            let victims: Vec<JobId> = d.preemptions.iter().map(|p| p.victim).collect();
            for v in victims {
                engine.requeue(v, now).unwrap();
            }
            engine.check_invariants().unwrap();
        }
        engine.schedule(now);
        for j in &wanted {
            prop_assert!(
                matches!(engine.job_state(*j), Some(JobState::Running { borrowing: false, .. })),
                "{} still {:?}", j, engine.job_state(*j)
            );
        }
    }
}

/// Any spec and any call order: the engine answers with a result, never a panic.
mod hostile_input {
    use super::common::*;
    use super::replaying_saved_failures;
    use haneul_model::{
        GpuModel, GpuRequest, Job, JobId, JobSpec, MemMib, MilliCpu, NodeId, NodeState, ProjectId,
        Span, Time,
    };
    use haneul_sched::{Engine, Policy};
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Call {
        Submit {
            id: u64,
            project: u32,
            replicas: u32,
            gpu: GpuRequest,
            cpu: u64,
            mem: u64,
            model: Option<String>,
            limit: i64,
        },
        Finish(u64),
        Requeue(u64),
        Cancel(u64),
        Node(u32, u8),
        Schedule(i64),
    }

    fn call() -> impl Strategy<Value = Call> {
        prop_oneof![
            4 => (
                0..20u64,
                0..5u32,
                prop_oneof![Just(0u32), 1..5u32, Just(u32::MAX)],
                prop_oneof![
                    Just(GpuRequest::None),
                    (0..70u32).prop_map(GpuRequest::Whole),
                    (0..2000u32).prop_map(GpuRequest::Fraction),
                ],
                prop_oneof![Just(0u64), 0..200_000u64, Just(u64::MAX)],
                prop_oneof![Just(0u64), Just(u64::MAX)],
                proptest::option::of(prop_oneof![Just("H200".to_string()), Just("X9".to_string())]),
                -5..5i64,
            )
                .prop_map(|(id, project, replicas, gpu, cpu, mem, model, limit)| Call::Submit {
                    id, project, replicas, gpu, cpu, mem, model, limit,
                }),
            1 => (0..20u64).prop_map(Call::Finish),
            1 => (0..20u64).prop_map(Call::Requeue),
            1 => (0..20u64).prop_map(Call::Cancel),
            1 => (0..20u32, 0..3u8).prop_map(|(n, s)| Call::Node(n, s)),
            2 => (-100..100i64).prop_map(Call::Schedule),
        ]
    }

    proptest! {
        #![proptest_config(replaying_saved_failures(256))]

        #[test]
        fn the_engine_never_panics(
            nodes in proptest::collection::vec(node_gen(), 1..6),
            calls in proptest::collection::vec(call(), 1..80),
        ) {
            let fleet = fleet_of(&nodes);
            let projects = vec![
                ProjectGen { weight: 1, guarantee: 2, borrow_limit: Some(1) },
                ProjectGen { weight: 2, guarantee: 0, borrow_limit: None },
            ];
            let mut engine = Engine::new(&fleet, &tenants_of(&projects), Policy::default()).unwrap();
            let mut now = Time::from_secs(100);
            for c in calls {
                match c {
                    Call::Submit { id, project, replicas, gpu, cpu, mem, model, limit } => {
                        let mut spec = JobSpec::new(ProjectId(project), replicas, gpu);
                        spec.cpu_per_task = MilliCpu(cpu);
                        spec.memory_per_task = MemMib(mem);
                        spec.gpu_models = model.iter().map(|m| GpuModel::new(m).unwrap()).collect();
                        spec.time_limit = Some(Span::from_secs(limit));
                        let _ = engine.submit(Job { id: JobId(id), spec, submitted_at: now }, now);
                    }
                    Call::Finish(j) => { let _ = engine.finish(JobId(j), now); }
                    Call::Requeue(j) => { let _ = engine.requeue(JobId(j), now); }
                    Call::Cancel(j) => { let _ = engine.cancel(JobId(j), now); }
                    Call::Node(n, s) => {
                        let state = [NodeState::Up, NodeState::Draining, NodeState::Down][s as usize];
                        let _ = engine.set_node_state(NodeId(n), state, now);
                    }
                    Call::Schedule(dt) => {
                        // Time may even go backwards: the engine keeps its own latest `now`.
                        now = Time(now.0 + dt * 1000);
                        engine.schedule(now);
                    }
                }
                prop_assert!(engine.check_invariants().is_ok(), "{:?}", engine.check_invariants());
            }
        }
    }
}

mod frag_model {
    //! The fragmentation measure is a pure function of a node's free capacity and the kind mix.

    use haneul_sched::FragTuning;
    use haneul_sched::frag::{
        Measure, NodeFree, TaskKind, expected_fragmentation, haneul_kinds, kind_fragment,
        paper_kinds, paper_score, starved_milli,
    };
    use proptest::prelude::*;

    fn kind_gen() -> impl Strategy<Value = TaskKind> {
        (
            0u8..=8,
            1u16..=1000,
            0u64..64_000,
            0u64..256_000,
            prop_oneof![Just(u64::MAX), 1u64..8],
        )
            .prop_map(|(gpus, milli, cpu, mem, models)| {
                let (gpus, milli) = match gpus {
                    0 => (0, 0),
                    1 => (1, milli),
                    n => (n, 1000),
                };
                TaskKind {
                    gpus,
                    milli,
                    cpu,
                    mem,
                    models,
                }
            })
    }

    fn node_gen() -> impl Strategy<Value = (u8, u64, u64, Vec<u16>)> {
        (
            0u8..3,
            0u64..96_000,
            0u64..512_000,
            proptest::collection::vec(prop_oneof![Just(1000u16), Just(0u16), 0u16..=1000], 1..=8),
        )
    }

    fn measure_gen() -> impl Strategy<Value = Measure> {
        prop_oneof![Just(Measure::Haneul), Just(Measure::Paper)]
    }

    proptest! {
        #![proptest_config(super::replaying_saved_failures(512))]

        /// A kind's fragment is part of the node's free GPU: all of it when the kind can not
        /// run there, none of a fully free GPU when it can.
        #[test]
        fn a_fragment_is_part_of_the_free_gpu(
            measure in measure_gen(),
            kind in kind_gen(),
            (model, cpu, mem, gpus) in node_gen(),
        ) {
            let node = NodeFree { model, cpu, mem, gpus: &gpus };
            let total: u64 = gpus.iter().map(|&g| g as u64).sum();
            let f = kind_fragment(measure, &kind, &node);
            prop_assert!(f <= total);
            let model_ok = kind.models & (1 << model) != 0;
            let mem_ok = measure == Measure::Paper || kind.mem <= mem;
            if kind.gpus > 0 && (!model_ok || kind.cpu > cpu || !mem_ok) {
                prop_assert_eq!(f, total);
            }
            if kind.gpus > 0 && f < total {
                // It fits: fully free GPUs are never part of the fragment.
                let partial: u64 = gpus.iter().filter(|&&g| g < 1000).map(|&g| g as u64).sum();
                prop_assert!(f <= partial);
            }
            if kind.gpus == 0 {
                let fits = kind.cpu <= cpu && kind.mem <= mem;
                let expected = if measure == Measure::Haneul && fits { 0 } else { total };
                prop_assert_eq!(f, expected);
            }
        }

        /// The expected fragmentation lies between 0 and the free GPU, and does not depend on the
        /// order of the GPUs.
        #[test]
        fn expected_fragmentation_is_bounded_and_order_free(
            measure in measure_gen(),
            counts in proptest::collection::vec((kind_gen(), 1u32..100), 1..20),
            (model, cpu, mem, mut gpus) in node_gen(),
        ) {
            let counts: Vec<(TaskKind, f64)> = counts.into_iter().map(|(k, c)| (k, c as f64)).collect();
            let kinds = match measure {
                Measure::Haneul => haneul_kinds(counts, &[8, 16, 4], &FragTuning::default()),
                Measure::Paper => paper_kinds(counts),
            };
            let sum: f64 = kinds.iter().map(|(_, w)| w).sum();
            prop_assert!((sum - 1.0).abs() < 1e-9);
            let total: f64 = gpus.iter().map(|&g| g as f64).sum();
            let a = expected_fragmentation(measure, &kinds, &NodeFree { model, cpu, mem, gpus: &gpus });
            prop_assert!(a >= 0.0 && a <= total + 1e-6, "{} of {}", a, total);
            gpus.reverse();
            let b = expected_fragmentation(measure, &kinds, &NodeFree { model, cpu, mem, gpus: &gpus });
            prop_assert!((a - b).abs() < 1e-6);
        }

        /// The capacity a node's CPU and memory can not feed lies between 0 and its free GPU,
        /// and shrinks (never grows) as the node has more CPU or memory.
        #[test]
        fn starved_capacity_is_bounded_and_falls_with_cpu_and_memory(
            (model, cpu, mem, gpus) in node_gen(),
            extra_cpu in 0u64..64_000,
            extra_mem in 0u64..262_144,
            cpu_per_milli in 0.0f64..64.0,
            mem_per_milli in 0.0f64..256.0,
        ) {
            let total: f64 = gpus.iter().map(|&g| g as f64).sum();
            let at = |cpu, mem| starved_milli(&NodeFree { model, cpu, mem, gpus: &gpus }, cpu_per_milli, mem_per_milli);
            let s = at(cpu, mem);
            prop_assert!(s >= 0.0 && s <= total + 1e-9, "{} of {}", s, total);
            prop_assert!(at(cpu + extra_cpu, mem + extra_mem) <= s + 1e-9);
        }

        /// The paper's kind list: the most popular kinds until 95% of the tasks, and no fewer.
        #[test]
        fn paper_kinds_cover_95_percent_with_the_most_popular(
            counts in proptest::collection::vec((kind_gen(), 1u32..1000), 1..40),
        ) {
            let total: f64 = counts.iter().map(|(_, c)| *c as f64).sum();
            let mut merged = std::collections::BTreeMap::new();
            for (k, c) in &counts {
                *merged.entry(TaskKind { mem: 0, ..*k }).or_insert(0.0) += *c as f64;
            }
            let kinds = paper_kinds(counts.iter().map(|(k, c)| (*k, *c as f64)).collect());
            let kept: f64 = kinds.iter().map(|(k, _)| merged[k]).sum();
            prop_assert!(kept >= 0.95 * total - 1e-6);
            let smallest = kinds.iter().map(|(k, _)| merged[k]).fold(f64::INFINITY, f64::min);
            prop_assert!(kept - smallest < 0.95 * total + 1e-6, "one kind too many");
            for (k, c) in &merged {
                if !kinds.iter().any(|(kk, _)| kk == k) {
                    prop_assert!(*c <= smallest);
                }
            }
        }

        /// Without the extra weights, Haneul's weights are the kinds' shares of the tasks.
        #[test]
        fn unweighted_haneul_kinds_are_popularity(
            counts in proptest::collection::vec((kind_gen(), 1u32..1000), 1..40),
        ) {
            let tuning = FragTuning { request_weight_pct: 0, whole_gpu_weight_pct: 0, scarcity_cap: 0, max_kinds: 0, cpu_kind_weight_pct: 100, ..FragTuning::default() };
            let mut merged = std::collections::BTreeMap::new();
            for (k, c) in &counts {
                *merged.entry(*k).or_insert(0.0) += *c as f64;
            }
            let total: f64 = merged.values().sum();
            let kinds = haneul_kinds(merged.iter().map(|(k, c)| (*k, *c)).collect(), &[8], &tuning);
            prop_assert_eq!(kinds.len(), merged.len());
            for (k, w) in kinds {
                prop_assert!((w - merged[&k] / total).abs() < 1e-9);
            }
        }

        /// With the request blend, the GPU kinds keep their total share of the tasks (CPU-only
        /// kinds keep theirs), and among GPU kinds one asking for more GPU per task never weighs
        /// less per task than one asking for less.
        #[test]
        fn the_request_blend_keeps_the_gpu_share_and_favours_larger_requests(
            counts in proptest::collection::vec((kind_gen(), 1u32..1000), 1..40),
            blend in 0u32..=100,
        ) {
            let tuning = FragTuning { request_weight_pct: blend, whole_gpu_weight_pct: 0, scarcity_cap: 0, max_kinds: 0, cpu_kind_weight_pct: 100, ..FragTuning::default() };
            let mut merged = std::collections::BTreeMap::new();
            for (k, c) in &counts {
                *merged.entry(*k).or_insert(0.0) += *c as f64;
            }
            let total: f64 = merged.values().sum();
            let gpu_total: f64 = merged.iter().filter(|(k, _)| k.gpus > 0).map(|(_, c)| c).sum();
            let kinds = haneul_kinds(merged.iter().map(|(k, c)| (*k, *c)).collect(), &[8], &tuning);
            let gpu_weight: f64 = kinds.iter().filter(|(k, _)| k.gpus > 0).map(|(_, w)| w).sum();
            prop_assert!((gpu_weight - gpu_total / total).abs() < 1e-9, "{gpu_weight} {}", gpu_total / total);
            let per_task = |k: &haneul_sched::frag::TaskKind, w: f64| w / merged[k];
            let req = |k: &haneul_sched::frag::TaskKind| k.gpus as u64 * k.milli as u64;
            for (a, wa) in kinds.iter().filter(|(k, _)| k.gpus > 0) {
                for (b, wb) in kinds.iter().filter(|(k, _)| k.gpus > 0) {
                    if req(a) > req(b) {
                        prop_assert!(per_task(a, *wa) >= per_task(b, *wb) - 1e-12);
                    }
                }
            }
        }

        /// The request share never exceeds the configured one, and it never grows as multi-GPU
        /// work takes more of the GPU request.
        #[test]
        fn the_request_share_fades_monotonically(
            pct in 0u32..=100,
            fade in 0u32..=400,
            gpu in 1.0f64..1e9,
            a in 0.0f64..=1.0,
            b in 0.0f64..=1.0,
        ) {
            let tuning = FragTuning { request_weight_pct: pct, request_fade_pct: fade, ..FragTuning::default() };
            let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
            let at = |share: f64| haneul_sched::frag::request_blend(&tuning, share * gpu, gpu);
            prop_assert!(at(lo) >= at(hi));
            prop_assert!(at(lo) <= pct as f64 / 100.0 + 1e-12 && at(hi) >= 0.0);
            prop_assert!((at(0.0) - pct as f64 / 100.0).abs() < 1e-12);
        }

        /// kube-scheduler's score never rises as the fragmentation after a placement grows.
        #[test]
        fn the_paper_score_falls_with_fragmentation(before in 0.0f64..64_000.0, a in 0.0f64..64_000.0, b in 0.0f64..64_000.0) {
            let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
            prop_assert!(paper_score(before, lo) >= paper_score(before, hi));
            prop_assert!((0..=100).contains(&paper_score(before, hi)));
        }
    }
}

proptest! {
    #![proptest_config(replaying_saved_failures(64))]

    /// The paper's FGD baseline keeps every invariant too, and the same workload places the same
    /// way.
    #[test]
    fn fgd_paper_placement_keeps_the_invariants((nodes, projects, steps) in scenario()) {
        let fleet = fleet_of(&nodes);
        let tenants = tenants_of(&projects);
        let policy = Policy { placement: haneul_sched::PlacementStrategy::FgdPaper, ..Policy::default() };
        let mut a = Engine::new(&fleet, &tenants, policy.clone()).unwrap();
        let mut b = Engine::new(&fleet, &tenants, policy).unwrap();
        let first = drive(&mut a, nodes.len(), &steps);
        let second = drive(&mut b, nodes.len(), &steps);
        prop_assert_eq!(first, second);
    }
}
