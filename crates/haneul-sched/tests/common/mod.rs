//! Random fleets, tenants and jobs for the engine's property tests.
#![allow(dead_code)]

use haneul_model::{
    Block, BlockId, Fleet, GpuModel, GpuRequest, Job, JobId, JobSpec, MemMib, MilliCpu, MilliGpu,
    Node, NodeId, NodeState, OrgClass, OrgId, Organisation, Pool, PoolId, PriorityClass, Project,
    ProjectId, Quota, Span, Tenants, Time,
};
use proptest::prelude::*;
use std::collections::BTreeMap;

pub const MODELS: [&str; 3] = ["H200", "B200", "NPU1"];

#[derive(Debug, Clone)]
pub struct NodeGen {
    pub model: usize,
    pub gpus: u32,
    pub domain: u32,
    pub block: u32,
    pub cpu: u64,
}

pub fn node_gen() -> impl Strategy<Value = NodeGen> {
    (
        0..3usize,
        prop_oneof![Just(1u32), Just(2), Just(4), Just(8)],
        0..3u32,
        8..64u64,
    )
        .prop_flat_map(|(model, gpus, block, cpu)| {
            let domains: Vec<u32> = [1u32, 2, 4, 8]
                .into_iter()
                .filter(|d| gpus % d == 0)
                .collect();
            (
                proptest::sample::select(domains),
                Just((model, gpus, block, cpu)),
            )
        })
        .prop_map(|(domain, (model, gpus, block, cpu))| NodeGen {
            model,
            gpus,
            domain,
            block,
            cpu,
        })
}

pub fn fleet_of(nodes: &[NodeGen]) -> Fleet {
    let pools = vec![Pool {
        id: PoolId(0),
        name: "shared".into(),
        owner: None,
        lending: Default::default(),
    }];
    let blocks = (0..3)
        .map(|b| Block {
            id: BlockId(b),
            name: format!("b{b}"),
            pool: PoolId(0),
        })
        .collect();
    let nodes = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| Node {
            id: NodeId(i as u32),
            name: format!("n{i}"),
            block: BlockId(n.block),
            gpu_model: GpuModel::new(MODELS[n.model]).unwrap(),
            gpus: n.gpus,
            gpu_memory: MemMib(80_000),
            nvlink_domain: n.domain,
            cpu: MilliCpu::cores(n.cpu),
            memory: MemMib(1 << 20),
            labels: BTreeMap::new(),
            state: NodeState::Up,
        })
        .collect();
    Fleet::new(pools, blocks, nodes).unwrap()
}

#[derive(Debug, Clone)]
pub struct ProjectGen {
    pub weight: u32,
    /// Guaranteed GPUs on model 0 (H200), and a borrowing limit in GPUs.
    pub guarantee: u64,
    pub borrow_limit: Option<u64>,
}

pub fn project_gen() -> impl Strategy<Value = ProjectGen> {
    (1..4u32, 0..6u64, proptest::option::of(0..8u64)).prop_map(
        |(weight, guarantee, borrow_limit)| ProjectGen {
            weight,
            guarantee,
            borrow_limit,
        },
    )
}

pub fn tenants_of(projects: &[ProjectGen]) -> Tenants {
    let orgs = vec![Organisation {
        id: OrgId(0),
        name: "org".into(),
        class: OrgClass::Academia,
        country: "KR".into(),
        parent: None,
    }];
    let projects = projects
        .iter()
        .enumerate()
        .map(|(i, p)| Project {
            id: ProjectId(i as u32),
            org: OrgId(0),
            name: format!("p{i}"),
            quotas: BTreeMap::from([(
                GpuModel::new(MODELS[0]).unwrap(),
                Quota {
                    guaranteed: MilliGpu::gpus(p.guarantee),
                    borrow_limit: p.borrow_limit.map(MilliGpu::gpus),
                },
            )]),
            weight: p.weight,
        })
        .collect();
    Tenants::new(orgs, projects).unwrap()
}

#[derive(Debug, Clone)]
pub struct JobGen {
    pub project: u32,
    pub replicas: u32,
    pub gpu: GpuRequest,
    pub cpu: u64,
    pub models: Vec<usize>,
    pub priority: PriorityClass,
    pub preemptible: bool,
    pub estimate_s: i64,
}

pub fn job_gen(projects: u32) -> impl Strategy<Value = JobGen> {
    (
        0..projects,
        prop_oneof![4 => Just(1u32), 1 => 2..4u32],
        prop_oneof![
            3 => (1..=8u32).prop_map(GpuRequest::Whole),
            2 => (100..1000u32).prop_map(GpuRequest::Fraction),
        ],
        0..8u64,
        proptest::collection::vec(0..3usize, 0..2),
        prop_oneof![
            Just(PriorityClass::Low),
            Just(PriorityClass::Normal),
            Just(PriorityClass::High)
        ],
        any::<bool>(),
        60..7200i64,
    )
        .prop_map(
            |(project, replicas, gpu, cpu, models, priority, preemptible, estimate_s)| JobGen {
                project,
                replicas,
                gpu,
                cpu,
                models,
                priority,
                preemptible,
                estimate_s,
            },
        )
}

pub fn job_of(g: &JobGen, id: u64, now: Time) -> Job {
    let mut spec = JobSpec::new(ProjectId(g.project), g.replicas, g.gpu);
    spec.cpu_per_task = MilliCpu::cores(g.cpu);
    spec.gpu_models = g
        .models
        .iter()
        .map(|&m| GpuModel::new(MODELS[m]).unwrap())
        .collect();
    spec.priority = g.priority;
    spec.preemptible = g.preemptible;
    spec.runtime_estimate = Some(Span::from_secs(g.estimate_s));
    spec.time_limit = Some(Span::from_secs(g.estimate_s * 2));
    Job {
        id: JobId(id),
        spec,
        submitted_at: now,
    }
}
