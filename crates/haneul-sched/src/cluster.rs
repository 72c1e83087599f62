//! The engine's view of the fleet: free capacity per node and GPU, with the small indexes that let
//! a pass reject what cannot fit without looking at every node.

use haneul_model::{Fleet, GpuModel, JobId, Lending, NodeId, NodeState, OrgId};
use smallvec::SmallVec;
use std::collections::{BTreeMap, BTreeSet};

pub(crate) const FULL: u16 = 1000;

/// Free GPU milli per GPU of one node; inline for the common 8-GPU server.
pub(crate) type GpuVec = SmallVec<[u16; 8]>;

#[derive(Debug, Clone)]
pub(crate) struct NodeSlot {
    pub id: NodeId,
    /// Index into [`Cluster::models`]; `None` for nodes without GPUs.
    pub model: Option<u8>,
    pub pool: u32,
    pub block: u32,
    pub state: NodeState,
    pub domain: u8,
    pub gpu_free: GpuVec,
    pub full_free: u8,
    pub cpu_free: u64,
    pub mem_free: u64,
    pub cpu_cap: u64,
    pub mem_cap: u64,
    /// Resources held for jobs whose preemption victims are stopping: only the holder may use
    /// them. A node with holds leaves the capacity counts.
    pub holds: SmallVec<[(JobId, crate::placement::Reserved); 1]>,
}

impl NodeSlot {
    pub fn gpus(&self) -> usize {
        self.gpu_free.len()
    }
    pub fn free_milli(&self) -> u64 {
        self.gpu_free.iter().map(|&m| m as u64).sum()
    }
}

#[derive(Debug, Clone)]
pub(crate) struct PoolSlot {
    pub owner: Option<OrgId>,
    pub lending: Lending,
}

/// Fleet capacity and what is free of it. Planning (reservations, preemptions) changes it in
/// place and undoes the changes, so no copy of the fleet is made on the hot path.
#[derive(Debug, Clone)]
pub(crate) struct Cluster {
    pub nodes: Vec<NodeSlot>,
    /// GPUs of the largest node (the fleet's nodes are fixed).
    pub max_node_gpus: u32,
    pub models: Vec<GpuModel>,
    /// Node indices per model, in fleet order.
    pub model_nodes: Vec<Vec<u32>>,
    /// Per model: how many schedulable nodes have exactly `k` fully free GPUs.
    pub hist: Vec<Vec<u32>>,
    /// Per model: free milli-GPU on schedulable nodes.
    pub free_milli: Vec<u64>,
    /// Per model: how many GPUs of schedulable nodes have each free share (0..=1000), as a
    /// Fenwick tree so "how many GPUs have at least `f` free" is a logarithmic query.
    pub share_counts: Vec<Fenwick>,
    pub pools: Vec<PoolSlot>,
    pub block_count: usize,
    /// Up nodes grouped by everything that placement scores (model, pool, free GPU shares, CPU,
    /// memory): nodes in one group score alike, so a placement scores one per group. Only the live
    /// cluster keeps it; scratch copies scan nodes instead.
    pub groups: Option<BTreeMap<NodeSig, Group>>,
    /// Node indices per block, in fleet order.
    pub block_nodes: Vec<Vec<u32>>,
    /// Nodes with holds on them.
    pub held: BTreeSet<u32>,
}

/// Up nodes that score alike, and how many of them each block has: a gang counts its task
/// slots per block from these without visiting each node.
#[derive(Debug, Clone, Default)]
pub(crate) struct Group {
    pub nodes: BTreeSet<u32>,
    pub blocks: BTreeMap<u32, u32>,
}

/// What makes two up nodes interchangeable for placing one task.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct NodeSig {
    pub model: Option<u8>,
    /// Fully free GPUs: groups are visited tightest first.
    pub full_free: u8,
    /// Free share per GPU, sorted unless NVLink domains make positions matter.
    pub gpus: GpuVec,
    pub cpu: u64,
    pub mem: u64,
    pub pool: u32,
    pub domain: u8,
}

impl NodeSlot {
    pub fn sig(&self) -> NodeSig {
        let mut gpus = self.gpu_free.clone();
        if self.domain as usize >= gpus.len() {
            gpus.sort_unstable();
        }
        NodeSig {
            model: self.model,
            full_free: self.full_free,
            gpus,
            cpu: self.cpu_free,
            mem: self.mem_free,
            pool: self.pool,
            domain: self.domain,
        }
    }
}

impl Cluster {
    pub fn new(fleet: &Fleet) -> Cluster {
        let models = fleet.gpu_models();
        let pool_index = |id| fleet.pools.iter().position(|p| p.id == id).unwrap_or(0) as u32;
        let block_index = |id| fleet.blocks.iter().position(|b| b.id == id).unwrap_or(0);
        let mut nodes = Vec::with_capacity(fleet.nodes.len());
        let mut model_nodes = vec![Vec::new(); models.len()];
        for (i, n) in fleet.nodes.iter().enumerate() {
            let model = if n.gpus > 0 {
                models
                    .iter()
                    .position(|m| *m == n.gpu_model)
                    .map(|p| p as u8)
            } else {
                None
            };
            if let Some(m) = model {
                model_nodes[m as usize].push(i as u32);
            }
            let b = block_index(n.block);
            let pool = pool_index(fleet.blocks[b].pool);
            nodes.push(NodeSlot {
                id: n.id,
                model,
                pool,
                block: b as u32,
                state: n.state,
                domain: n.nvlink_domain.max(1) as u8,
                gpu_free: std::iter::repeat_n(FULL, n.gpus as usize).collect(),
                full_free: n.gpus as u8,
                cpu_free: n.cpu.0,
                mem_free: n.memory.0,
                cpu_cap: n.cpu.0,
                mem_cap: n.memory.0,
                holds: SmallVec::new(),
            });
        }
        let max_gpus = fleet.nodes.iter().map(|n| n.gpus).max().unwrap_or(0) as usize;
        let mut block_nodes = vec![Vec::new(); fleet.blocks.len()];
        for (i, n) in nodes.iter().enumerate() {
            if let Some(b) = block_nodes.get_mut(n.block as usize) {
                b.push(i as u32);
            }
        }
        let mut c = Cluster {
            nodes,
            max_node_gpus: max_gpus as u32,
            hist: vec![vec![0; max_gpus + 1]; models.len()],
            free_milli: vec![0; models.len()],
            share_counts: vec![Fenwick::new(FULL as usize + 1); models.len()],
            models,
            model_nodes,
            pools: fleet
                .pools
                .iter()
                .map(|p| PoolSlot {
                    owner: p.owner,
                    lending: p.lending,
                })
                .collect(),
            block_count: fleet.blocks.len(),
            groups: Some(BTreeMap::new()),
            block_nodes,
            held: BTreeSet::new(),
        };
        for i in 0..c.nodes.len() {
            c.index_add(i);
        }
        c
    }

    pub fn model_index(&self, model: &GpuModel) -> Option<u8> {
        self.models.iter().position(|m| m == model).map(|p| p as u8)
    }

    /// Holds resources of a node for one job. A node with holds leaves the capacity counts, so
    /// that quick checks of other jobs do not count what they may not use.
    pub fn add_hold(&mut self, node: u32, job: JobId, reserved: crate::placement::Reserved) {
        let i = node as usize;
        self.index_remove(i);
        self.nodes[i].holds.push((job, reserved));
        self.held.insert(node);
        self.index_add(i);
    }

    pub fn remove_hold(&mut self, node: u32, job: JobId) {
        let i = node as usize;
        self.index_remove(i);
        self.nodes[i].holds.retain(|(j, _)| *j != job);
        if self.nodes[i].holds.is_empty() {
            self.held.remove(&node);
        }
        self.index_add(i);
    }

    fn index_add(&mut self, i: usize) {
        let n = &self.nodes[i];
        if n.state != NodeState::Up {
            return;
        }
        if let (Some(m), true) = (n.model, n.holds.is_empty()) {
            self.hist[m as usize][n.full_free as usize] += 1;
            self.free_milli[m as usize] += n.free_milli();
            for &f in &n.gpu_free {
                self.share_counts[m as usize].add(f as usize, 1);
            }
        }
        if let Some(groups) = &mut self.groups {
            let g = groups.entry(n.sig()).or_default();
            g.nodes.insert(i as u32);
            *g.blocks.entry(n.block).or_default() += 1;
        }
    }

    fn index_remove(&mut self, i: usize) {
        let n = &self.nodes[i];
        if n.state != NodeState::Up {
            return;
        }
        if let (Some(m), true) = (n.model, n.holds.is_empty()) {
            self.hist[m as usize][n.full_free as usize] -= 1;
            self.free_milli[m as usize] -= n.free_milli();
            for &f in &n.gpu_free {
                self.share_counts[m as usize].add(f as usize, -1);
            }
        }
        if let Some(groups) = &mut self.groups {
            let sig = n.sig();
            if let Some(g) = groups.get_mut(&sig) {
                if g.nodes.remove(&(i as u32))
                    && let Some(c) = g.blocks.get_mut(&n.block)
                {
                    *c -= 1;
                    if *c == 0 {
                        g.blocks.remove(&n.block);
                    }
                }
                if g.nodes.is_empty() {
                    groups.remove(&sig);
                }
            }
        }
    }

    /// Takes `milli` on each listed GPU plus CPU and memory. The caller has checked that it fits.
    pub fn allocate(&mut self, node: u32, gpus: &[u32], milli: u16, cpu: u64, mem: u64) {
        let i = node as usize;
        self.index_remove(i);
        let n = &mut self.nodes[i];
        for &g in gpus {
            let free = &mut n.gpu_free[g as usize];
            debug_assert!(*free >= milli, "over-allocation on {} gpu {g}", n.id);
            if *free == FULL && milli > 0 {
                n.full_free -= 1;
            }
            *free -= milli;
        }
        debug_assert!(n.cpu_free >= cpu && n.mem_free >= mem);
        n.cpu_free -= cpu;
        n.mem_free -= mem;
        self.index_add(i);
    }

    pub fn release(&mut self, node: u32, gpus: &[u32], milli: u16, cpu: u64, mem: u64) {
        let i = node as usize;
        self.index_remove(i);
        let n = &mut self.nodes[i];
        for &g in gpus {
            let free = &mut n.gpu_free[g as usize];
            *free += milli;
            debug_assert!(*free <= FULL);
            if *free == FULL && milli > 0 {
                n.full_free += 1;
            }
        }
        n.cpu_free += cpu;
        n.mem_free += mem;
        debug_assert!(n.cpu_free <= n.cpu_cap && n.mem_free <= n.mem_cap);
        self.index_add(i);
    }

    pub fn set_state(&mut self, node: u32, state: NodeState) {
        let i = node as usize;
        self.index_remove(i);
        self.nodes[i].state = state;
        self.index_add(i);
    }

    /// A necessary condition for `replicas` tasks of `gpus` whole GPUs each to fit on `model`
    /// right now: counts task slots from the histogram, ignoring NVLink domains, CPU and memory.
    pub fn may_fit_whole(&self, model: u8, gpus: u32, replicas: u32) -> bool {
        let hist = &self.hist[model as usize];
        let mut slots: u64 = 0;
        for (k, &count) in hist.iter().enumerate().skip(gpus as usize) {
            slots += count as u64 * (k as u64 / gpus as u64);
            if slots >= replicas as u64 {
                return true;
            }
        }
        false
    }

    pub fn may_fit_fraction(&self, model: u8, milli: u32, replicas: u32) -> bool {
        let m = model as usize;
        self.free_milli[m] >= milli as u64 * replicas as u64
            && self.share_counts[m].count_at_least(milli as usize) > 0
    }
}

/// Counts per value with prefix sums in logarithmic time.
#[derive(Debug, Clone)]
pub(crate) struct Fenwick {
    tree: Vec<i64>,
}

impl Fenwick {
    pub fn new(len: usize) -> Self {
        Fenwick {
            tree: vec![0; len + 1],
        }
    }

    pub fn add(&mut self, value: usize, delta: i64) {
        let mut i = value + 1;
        while i < self.tree.len() {
            self.tree[i] += delta;
            i += i & i.wrapping_neg();
        }
    }

    /// How many recorded values are below `value`.
    fn count_below(&self, value: usize) -> i64 {
        let mut i = value.min(self.tree.len() - 1);
        let mut sum = 0;
        while i > 0 {
            sum += self.tree[i];
            i -= i & i.wrapping_neg();
        }
        sum
    }

    pub fn count_at_least(&self, value: usize) -> i64 {
        self.count_below(self.tree.len() - 1) - self.count_below(value)
    }
}
