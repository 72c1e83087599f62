//! The Alibaba openb GPU-sharing trace (cluster-trace-gpu-v2023): loaders for its node and pod
//! lists, and the replay used by the FGD paper (Weng et al., ATC 2023) to compare placement
//! policies, driven through the real engine.
//!
//! The replay, for one seed: pods sorted by name, shuffled with the seed, then pods drawn at random
//! with replacement from the original list appended until the next one would push the requested
//! GPUs past `max_arrival_pct` of capacity; nodes in a random order of the seed, which is the
//! simulator's order among nodes of equal score (`node_order`). Pods are placed one at a time in that order and never
//! leave; a pod that does not fit is dropped. Allocation is recorded each time the arrived demand
//! crosses a whole percent of capacity.

use crate::SimError;
use haneul_model::{
    Block, BlockId, Fleet, GpuModel, GpuRequest, Job, JobId, JobSpec, MemMib, MilliCpu, Node,
    NodeId, NodeState, OrgClass, OrgId, Organisation, Pool, PoolId, Project, ProjectId, Tenants,
    Time,
};
use haneul_sched::{Engine, Policy};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;
use std::path::Path;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenbNode {
    pub name: String,
    pub cpu_milli: u64,
    pub memory_mib: u64,
    pub gpus: u32,
    pub model: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenbPod {
    pub name: String,
    pub cpu_milli: u64,
    pub memory_mib: u64,
    pub num_gpu: u32,
    pub gpu_milli: u32,
    /// Allowed GPU models; empty means any.
    pub gpu_spec: Vec<String>,
    pub creation_time: Option<i64>,
    pub deletion_time: Option<i64>,
    pub scheduled_time: Option<i64>,
    /// Line of the pod in its file, for error messages (0 for pods not read from a file).
    pub line: u64,
}

impl OpenbPod {
    /// Milli-GPU the pod asks for in total.
    pub fn gpu_request(&self) -> u64 {
        self.num_gpu as u64 * self.gpu_milli as u64
    }
}

struct Rows<'a> {
    path: &'a Path,
    reader: csv::Reader<std::fs::File>,
    columns: BTreeMap<String, usize>,
}

impl<'a> Rows<'a> {
    fn open(path: &'a Path, required: &[&str]) -> Result<Self, SimError> {
        let file = std::fs::File::open(path).map_err(|source| SimError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let mut reader = csv::ReaderBuilder::new().flexible(true).from_reader(file);
        let headers = reader.headers().map_err(|e| SimError::File {
            path: path.to_path_buf(),
            reason: format!("unreadable header: {e}"),
        })?;
        let columns: BTreeMap<String, usize> = headers
            .iter()
            .enumerate()
            .map(|(i, h)| (h.trim().to_string(), i))
            .collect();
        for r in required {
            if !columns.contains_key(*r) {
                return Err(SimError::File {
                    path: path.to_path_buf(),
                    reason: format!("missing column `{r}`"),
                });
            }
        }
        Ok(Rows {
            path,
            reader,
            columns,
        })
    }

    fn for_each(
        &mut self,
        mut f: impl FnMut(&Row) -> Result<(), SimError>,
    ) -> Result<(), SimError> {
        for (i, rec) in self.reader.records().enumerate() {
            // Line 1 is the header.
            let line = i as u64 + 2;
            let rec = rec.map_err(|e| SimError::Row {
                path: self.path.to_path_buf(),
                line,
                field: "row".into(),
                reason: e.to_string(),
            })?;
            f(&Row {
                path: self.path,
                line,
                rec: &rec,
                columns: &self.columns,
            })?;
        }
        Ok(())
    }
}

struct Row<'a> {
    path: &'a Path,
    line: u64,
    rec: &'a csv::StringRecord,
    columns: &'a BTreeMap<String, usize>,
}

impl Row<'_> {
    fn text(&self, field: &str) -> &str {
        self.columns
            .get(field)
            .and_then(|&i| self.rec.get(i))
            .unwrap_or("")
            .trim()
    }
    fn err(&self, field: &str, reason: impl Into<String>) -> SimError {
        SimError::Row {
            path: self.path.to_path_buf(),
            line: self.line,
            field: field.into(),
            reason: reason.into(),
        }
    }
    fn uint(&self, field: &str) -> Result<u64, SimError> {
        let t = self.text(field);
        t.parse::<u64>()
            .map_err(|_| self.err(field, format!("expected a non-negative integer, got `{t}`")))
    }
    fn opt_int(&self, field: &str) -> Result<Option<i64>, SimError> {
        let t = self.text(field);
        if t.is_empty() {
            return Ok(None);
        }
        t.parse::<i64>()
            .map(Some)
            .map_err(|_| self.err(field, format!("expected an integer, got `{t}`")))
    }
}

/// Reads a node list (`sn,cpu_milli,memory_mib,gpu,model`).
pub fn load_nodes(path: &Path) -> Result<Vec<OpenbNode>, SimError> {
    let mut rows = Rows::open(path, &["sn", "cpu_milli", "memory_mib", "gpu", "model"])?;
    let mut out = Vec::new();
    rows.for_each(|r| {
        let gpus = r.uint("gpu")?;
        if gpus > 64 {
            return Err(r.err("gpu", format!("{gpus} GPUs on one node is more than 64")));
        }
        let model = r.text("model").to_string();
        if gpus > 0 {
            GpuModel::new(&model).map_err(|e| r.err("model", e.to_string()))?;
        }
        out.push(OpenbNode {
            name: r.text("sn").to_string(),
            cpu_milli: r.uint("cpu_milli")?,
            memory_mib: r.uint("memory_mib")?,
            gpus: gpus as u32,
            model,
        });
        Ok(())
    })?;
    Ok(out)
}

/// Reads a pod list (`name,cpu_milli,memory_mib,num_gpu,gpu_milli[,gpu_spec,...]`).
pub fn load_pods(path: &Path) -> Result<Vec<OpenbPod>, SimError> {
    let mut rows = Rows::open(
        path,
        &["name", "cpu_milli", "memory_mib", "num_gpu", "gpu_milli"],
    )?;
    let mut out = Vec::new();
    rows.for_each(|r| {
        let num_gpu = r.uint("num_gpu")?;
        let gpu_milli = r.uint("gpu_milli")?;
        if num_gpu > 64 {
            return Err(r.err(
                "num_gpu",
                format!("{num_gpu} GPUs for one pod is more than 64"),
            ));
        }
        if gpu_milli > 1000 {
            return Err(r.err(
                "gpu_milli",
                format!("{gpu_milli} is more than one GPU (1000)"),
            ));
        }
        GpuRequest::from_count_and_milli(num_gpu as u32, gpu_milli as u32)
            .map_err(|e| r.err("gpu_milli", e.to_string()))?;
        let spec = r.text("gpu_spec");
        let gpu_spec: Vec<String> = spec
            .split('|')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        for m in &gpu_spec {
            GpuModel::new(m).map_err(|e| r.err("gpu_spec", e.to_string()))?;
        }
        out.push(OpenbPod {
            name: r.text("name").to_string(),
            cpu_milli: r.uint("cpu_milli")?,
            memory_mib: r.uint("memory_mib")?,
            num_gpu: num_gpu as u32,
            gpu_milli: gpu_milli as u32,
            gpu_spec,
            creation_time: r.opt_int("creation_time")?,
            deletion_time: r.opt_int("deletion_time")?,
            scheduled_time: r.opt_int("scheduled_time")?,
            line: r.line,
        });
        Ok(())
    })?;
    Ok(out)
}

/// One pool, one network block, the listed nodes; one organisation with one project and no quota.
pub fn fleet_of(nodes: &[OpenbNode]) -> Result<(Fleet, Tenants), SimError> {
    let mut fleet_nodes = Vec::with_capacity(nodes.len());
    for (i, n) in nodes.iter().enumerate() {
        let model = if n.gpus > 0 { n.model.as_str() } else { "CPU" };
        fleet_nodes.push(Node {
            id: NodeId(i as u32),
            name: n.name.clone(),
            block: BlockId(0),
            gpu_model: GpuModel::new(model)?,
            gpus: n.gpus,
            gpu_memory: MemMib::ZERO,
            nvlink_domain: n.gpus.max(1),
            cpu: MilliCpu(n.cpu_milli),
            memory: MemMib(n.memory_mib),
            labels: BTreeMap::new(),
            state: NodeState::Up,
        });
    }
    let fleet = Fleet::new(
        vec![Pool {
            id: PoolId(0),
            name: "openb".into(),
            owner: None,
            lending: Default::default(),
        }],
        vec![Block {
            id: BlockId(0),
            name: "openb".into(),
            pool: PoolId(0),
        }],
        fleet_nodes,
    )?;
    let tenants = Tenants::new(
        vec![Organisation {
            id: OrgId(0),
            name: "openb".into(),
            class: OrgClass::Enterprise,
            country: "CN".into(),
            parent: None,
        }],
        vec![Project {
            id: ProjectId(0),
            org: OrgId(0),
            name: "openb".into(),
            quotas: BTreeMap::new(),
            weight: 1,
        }],
    )?;
    Ok((fleet, tenants))
}

fn spec_of(pod: &OpenbPod) -> Result<JobSpec, SimError> {
    let mut spec = JobSpec::new(
        ProjectId(0),
        1,
        GpuRequest::from_count_and_milli(pod.num_gpu, pod.gpu_milli)?,
    );
    spec.cpu_per_task = MilliCpu(pod.cpu_milli);
    spec.memory_per_task = MemMib(pod.memory_mib);
    spec.gpu_models = pod
        .gpu_spec
        .iter()
        .map(|m| GpuModel::new(m))
        .collect::<Result<_, _>>()?;
    if spec.gpu == GpuRequest::None && spec.cpu_per_task == MilliCpu::ZERO {
        spec.cpu_per_task = MilliCpu(1);
    }
    Ok(spec)
}

/// The engine policy for the replay: placement only. Every pod arrives alone, so ordering,
/// backfill and preemption have nothing to decide; pods never end, so neither does aligning
/// their end times.
pub fn replay_policy(placement: haneul_sched::PlacementStrategy) -> Policy {
    Policy {
        backfill: false,
        preemption: false,
        align_ends: false,
        placement,
        ..Policy::default()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct SeedResult {
    pub seed: u64,
    /// GPU allocation in % of capacity when the arrived demand first reached k% (index k).
    pub allocation_at: Vec<f64>,
    pub pods: usize,
    pub placed: usize,
}

/// The pod order of one seed, by the FGD method.
pub fn arrival_order(
    pods: &[OpenbPod],
    capacity_milli: u64,
    seed: u64,
    max_pct: u32,
) -> Vec<usize> {
    let mut order: Vec<usize> = (0..pods.len()).collect();
    order.sort_by(|&a, &b| pods[a].name.cmp(&pods[b].name).then(a.cmp(&b)));
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    order.shuffle(&mut rng);
    let limit = capacity_milli as u128 * max_pct as u128 / 100;
    let mut total: u128 = order.iter().map(|&i| pods[i].gpu_request() as u128).sum();
    if pods.iter().any(|p| p.gpu_request() > 0) {
        loop {
            let i = rng.random_range(0..pods.len());
            let next = total + pods[i].gpu_request() as u128;
            if next > limit {
                break;
            }
            total = next;
            order.push(i);
        }
    }
    order
}

/// The order the replay hands one seed's nodes to the engine (indices into `nodes`).
///
/// The paper's simulator sorts the nodes by name, renames each with a prefix drawn from a
/// random permutation (seeded like the pod order), and among nodes of equal score binds a pod
/// to the lowest name: its tie order is a random order of the nodes, drawn anew for each seed.
/// The engine breaks ties by node order, so this order gives every strategy the tie order of
/// the published runs, whatever the order of the node list's lines. It is drawn from its own
/// stream of the seed's generator, so a seed's pod order does not depend on it.
pub fn node_order(nodes: &[OpenbNode], seed: u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..nodes.len()).collect();
    order.sort_by(|&a, &b| nodes[a].name.cmp(&nodes[b].name).then(a.cmp(&b)));
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(1);
    order.shuffle(&mut rng);
    order
}

/// Where the fragmentation measure gets the pod mix from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Mix {
    /// The whole pod list's mix, handed to the engine before the first pod (as the FGD paper's
    /// simulator does).
    #[default]
    Given,
    /// Learned by the engine from the pods as they arrive (decayed counts), as the live server
    /// must.
    Online,
}

/// Replays one seed through a fresh engine, with the pod list's mix given up front.
pub fn replay(
    nodes: &[OpenbNode],
    pods: &[OpenbPod],
    seed: u64,
    max_pct: u32,
    policy: Policy,
) -> Result<SeedResult, SimError> {
    replay_with(nodes, pods, seed, max_pct, policy, Mix::Given)
}

/// Replays one seed through a fresh engine.
pub fn replay_with(
    nodes: &[OpenbNode],
    pods: &[OpenbPod],
    seed: u64,
    max_pct: u32,
    policy: Policy,
    mix_from: Mix,
) -> Result<SeedResult, SimError> {
    let nodes: Vec<OpenbNode> = node_order(nodes, seed)
        .into_iter()
        .map(|i| nodes[i].clone())
        .collect();
    let (fleet, tenants) = fleet_of(&nodes)?;
    let capacity: u64 = nodes.iter().map(|n| n.gpus as u64 * 1000).sum();
    let mut engine = Engine::new(&fleet, &tenants, policy)?;
    // The workload the fragmentation measure expects: the pod list's own mix, as FGD uses it.
    let mut mix: BTreeMap<(u32, u32, u64, u64, Vec<String>), f64> = BTreeMap::new();
    let mut specs = Vec::with_capacity(pods.len());
    for p in pods {
        specs.push(spec_of(p)?);
        if mix_from == Mix::Online {
            continue;
        }
        let kind = (
            p.num_gpu,
            p.gpu_milli,
            p.cpu_milli,
            p.memory_mib,
            p.gpu_spec.clone(),
        );
        *mix.entry(kind).or_insert(0.0) += 1.0;
    }
    let mut hint = Vec::with_capacity(mix.len());
    for ((num_gpu, gpu_milli, cpu_milli, memory_mib, gpu_spec), weight) in mix {
        let pod = OpenbPod {
            name: String::new(),
            cpu_milli,
            memory_mib,
            num_gpu,
            gpu_milli,
            gpu_spec,
            creation_time: None,
            deletion_time: None,
            scheduled_time: None,
            line: 0,
        };
        hint.push((spec_of(&pod)?, weight));
    }
    if mix_from == Mix::Given {
        engine.set_workload_hint(&hint)?;
    }

    let order = arrival_order(pods, capacity, seed, max_pct);
    let mut allocation_at = vec![f64::NAN; max_pct as usize + 1];
    let mut arrived: u128 = 0;
    let mut allocated: u64 = 0;
    let mut next_pct: usize = 0;
    let mut placed = 0;
    for (n, &i) in order.iter().enumerate() {
        let now = Time(n as i64);
        let id = JobId(n as u64);
        let job = Job {
            id,
            spec: specs[i].clone(),
            submitted_at: now,
        };
        let started = match engine.submit(job, now) {
            Ok(()) => {
                let started = engine.schedule(now).starts.iter().any(|s| s.job == id);
                if !started {
                    engine.cancel(id, now)?;
                }
                started
            }
            // A pod no node of its allowed models could ever hold fails, as in the paper.
            Err(haneul_sched::SchedError::TooLarge { .. }) => false,
            Err(e) => return Err(e.into()),
        };
        if started {
            placed += 1;
            allocated += pods[i].gpu_request();
        }
        arrived += pods[i].gpu_request() as u128;
        while next_pct < allocation_at.len() && arrived * 100 >= capacity as u128 * next_pct as u128
        {
            allocation_at[next_pct] = allocated as f64 * 100.0 / capacity as f64;
            next_pct += 1;
        }
    }
    // Percentages never reached keep the last allocation.
    let last = allocated as f64 * 100.0 / capacity.max(1) as f64;
    for v in allocation_at.iter_mut().filter(|v| v.is_nan()) {
        *v = last;
    }
    Ok(SeedResult {
        seed,
        allocation_at,
        pods: order.len(),
        placed,
    })
}

/// The FGD authors' published mean GPU allocation (%) at `pct` arrived, for a pod list, read
/// from `analysis_allo_discrete.csv` (columns `workload,sc_policy,...,<pct>`).
pub fn published_fgd(results_csv: &Path, pod_list: &str, pct: u32) -> Option<f64> {
    let mut reader = csv::Reader::from_path(results_csv).ok()?;
    let headers = reader.headers().ok()?.clone();
    let col = headers.iter().position(|h| h == pct.to_string())?;
    let wl = headers.iter().position(|h| h == "workload")?;
    let pol = headers.iter().position(|h| h == "sc_policy")?;
    let (mut sum, mut n) = (0.0, 0);
    for rec in reader.records().flatten() {
        if rec.get(wl) == Some(pod_list) && rec.get(pol).is_some_and(|p| p.ends_with("FGD")) {
            sum += rec.get(col)?.parse::<f64>().ok()?;
            n += 1;
        }
    }
    (n > 0).then(|| sum / n as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use haneul_sched::PlacementStrategy;

    fn pod(name: &str, gpus: u32, milli: u32) -> OpenbPod {
        OpenbPod {
            name: name.into(),
            cpu_milli: 1000,
            memory_mib: 1024,
            num_gpu: gpus,
            gpu_milli: milli,
            gpu_spec: vec![],
            creation_time: None,
            deletion_time: None,
            scheduled_time: None,
            line: 0,
        }
    }

    #[test]
    fn arrivals_stop_before_the_limit() {
        let pods = vec![pod("a", 1, 1000), pod("b", 1, 500), pod("c", 2, 1000)];
        let capacity = 8000;
        let order = arrival_order(&pods, capacity, 42, 130);
        let total: u64 = order.iter().map(|&i| pods[i].gpu_request()).sum();
        assert!(total <= capacity * 130 / 100);
        assert!(
            total + 2000 > capacity * 130 / 100,
            "stopped too early: {total}"
        );
        assert_eq!(arrival_order(&pods, capacity, 42, 130), order);
    }

    fn node(name: &str, gpus: u32, model: &str) -> OpenbNode {
        OpenbNode {
            name: name.into(),
            cpu_milli: 64000,
            memory_mib: 1 << 20,
            gpus,
            model: model.into(),
        }
    }

    #[test]
    fn the_node_order_is_a_permutation_of_the_seed_not_of_the_list() {
        let nodes: Vec<OpenbNode> = (0..50)
            .map(|i| node(&format!("n{i:03}"), 8, "V100"))
            .collect();
        let order = node_order(&nodes, 42);
        let mut sorted = order.clone();
        sorted.sort();
        assert_eq!(sorted, (0..50).collect::<Vec<_>>());
        assert_eq!(node_order(&nodes, 42), order);
        assert_ne!(node_order(&nodes, 43), order);
        assert_ne!(order, (0..50).collect::<Vec<_>>());
        // The same nodes listed in another order come out as the same sequence of names.
        let mut reversed = nodes.clone();
        reversed.reverse();
        let names = |ns: &[OpenbNode], o: Vec<usize>| -> Vec<String> {
            o.into_iter().map(|i| ns[i].name.clone()).collect()
        };
        assert_eq!(
            names(&reversed, node_order(&reversed, 42)),
            names(&nodes, order)
        );
    }

    #[test]
    fn a_replay_does_not_depend_on_the_order_of_the_node_list() {
        // FGD does not look at memory, so a one-GPU pod scores the same on both nodes and the
        // tie order decides where it goes; on the roomy node it leaves no room for the pod
        // that needs that node's memory. A replay that followed the list's lines would give
        // one list order and its reverse different results for some seed.
        let mut small = node("a", 2, "T4");
        small.memory_mib = 8 << 10;
        let roomy = node("b", 2, "T4");
        let mut lone = pod("p1", 1, 1000);
        lone.memory_mib = 1 << 10;
        let mut big = pod("p2", 2, 1000);
        big.memory_mib = 512 << 10;
        let pods = vec![lone, big];
        for seed in 0..16 {
            let run = |ns: &[OpenbNode]| {
                replay(
                    ns,
                    &pods,
                    seed,
                    130,
                    replay_policy(PlacementStrategy::FgdPaper),
                )
                .unwrap()
            };
            assert_eq!(
                run(&[small.clone(), roomy.clone()]),
                run(&[roomy.clone(), small.clone()]),
                "seed {seed}"
            );
        }
    }

    #[test]
    fn a_small_cluster_is_filled_exactly() {
        let nodes = vec![OpenbNode {
            name: "n0".into(),
            cpu_milli: 64000,
            memory_mib: 1 << 20,
            gpus: 2,
            model: "T4".into(),
        }];
        // Two halves and one whole GPU fill the node; the second whole GPU can not fit.
        let pods = vec![
            pod("a", 1, 500),
            pod("b", 1, 500),
            pod("c", 1, 1000),
            pod("d", 1, 1000),
        ];
        let r = replay(&nodes, &pods, 7, 100, replay_policy(Default::default())).unwrap();
        assert!(r.placed >= 3, "{r:?}");
        assert_eq!(*r.allocation_at.last().unwrap(), 100.0);
    }
}
