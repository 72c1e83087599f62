//! Where a gang goes: node and GPU choice under topology rules and the placement strategy.
//!
//! Rules, in order: every task's GPUs are on one node; a task that fits in one NVLink domain stays
//! in one; a multi-task gang uses as few network blocks as it can (the tightest block that holds it
//! whole, else the largest blocks first); single tasks go where the strategy scores best. Slot
//! counting is exact, so when a placement exists on the given view it is found.

use crate::cluster::{Cluster, FULL, GpuVec, NodeSlot};
use crate::frag::FragModel;
use crate::policy::PlacementStrategy;
use haneul_model::{JobId, NodeState};
use rustc_hash::FxHashMap;
use smallvec::SmallVec;

/// Resources of one task of a gang.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TaskReq {
    /// GPUs per task (0 for CPU-only).
    pub gpus: u32,
    /// Milli-GPU per GPU: `FULL` for whole GPUs.
    pub milli: u16,
    pub cpu: u64,
    pub mem: u64,
    pub replicas: u32,
}

/// Resources a reservation needs on one node: work that would still run at the reservation's
/// start may not touch them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Reserved {
    pub gpu_mask: u64,
    pub cpu: u64,
    pub mem: u64,
}

pub(crate) type Exclusions = FxHashMap<u32, Reserved>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TaskSlot {
    pub node: u32,
    pub gpus: SmallVec<[u32; 8]>,
    pub milli: u16,
}

pub(crate) struct PlaceCtx<'a> {
    pub job: JobId,
    /// Pools this job may run on, by pool index.
    pub pools: &'a [bool],
    pub exclusions: Option<&'a Exclusions>,
}

/// A node's capacity as this placement may use it.
struct View {
    gpus: GpuVec,
    cpu: u64,
    mem: u64,
}

fn view(n: &NodeSlot, idx: u32, ctx: &PlaceCtx) -> Option<View> {
    if n.state != NodeState::Up {
        return None;
    }
    if let Some(holder) = n.hold
        && holder != ctx.job
    {
        return None;
    }
    if !ctx.pools.get(n.pool as usize).copied().unwrap_or(false) {
        return None;
    }
    let mut v = View {
        gpus: n.gpu_free.clone(),
        cpu: n.cpu_free,
        mem: n.mem_free,
    };
    if let Some(r) = ctx.exclusions.and_then(|e| e.get(&idx)) {
        for (g, free) in v.gpus.iter_mut().enumerate() {
            if r.gpu_mask & (1u64 << g) != 0 {
                *free = 0;
            }
        }
        v.cpu = v.cpu.saturating_sub(r.cpu);
        v.mem = v.mem.saturating_sub(r.mem);
    }
    Some(v)
}

/// How many tasks of `req` fit on a node view, at most `cap`.
fn slots(v: &View, req: &TaskReq, domain: usize, cap: u32) -> u32 {
    let mut n = cap as u64;
    if req.cpu > 0 {
        n = n.min(v.cpu / req.cpu);
    }
    if req.mem > 0 {
        n = n.min(v.mem / req.mem);
    }
    if req.gpus == 0 {
        return n as u32;
    }
    let gpu_slots: u64 = if req.milli < FULL {
        v.gpus.iter().map(|&f| (f / req.milli) as u64).sum()
    } else if (req.gpus as usize) <= domain {
        v.gpus
            .chunks(domain)
            .map(|d| (d.iter().filter(|&&f| f == FULL).count() / req.gpus as usize) as u64)
            .sum()
    } else {
        (v.gpus.iter().filter(|&&f| f == FULL).count() / req.gpus as usize) as u64
    };
    n.min(gpu_slots) as u32
}

/// Picks the GPUs for one task on a view, or `None` when it does not fit.
fn choose_gpus(
    v: &View,
    req: &TaskReq,
    domain: usize,
    strategy: PlacementStrategy,
    model: u8,
    frag: &mut FragModel,
) -> Option<SmallVec<[u32; 8]>> {
    if req.gpus == 0 {
        return Some(SmallVec::new());
    }
    if req.milli < FULL {
        let mut best: Option<(f64, u16, usize)> = None;
        for (g, &free) in v.gpus.iter().enumerate() {
            if free < req.milli {
                continue;
            }
            let score = match strategy {
                PlacementStrategy::FirstFit => return Some(SmallVec::from_slice(&[g as u32])),
                PlacementStrategy::BestFit => 0.0,
                PlacementStrategy::Fragmentation => {
                    if best.is_some_and(|(_, f, _)| f == free) {
                        continue; // same free share, same outcome: keep the lower index
                    }
                    let mut after = v.gpus.clone();
                    after[g] -= req.milli;
                    frag.node_frag(
                        model,
                        v.cpu.saturating_sub(req.cpu),
                        v.mem.saturating_sub(req.mem),
                        &after,
                    )
                }
            };
            let better = match best {
                None => true,
                Some((s, f, _)) => score < s || (score == s && free < f),
            };
            if better {
                best = Some((score, free, g));
            }
        }
        return best.map(|(_, _, g)| SmallVec::from_slice(&[g as u32]));
    }
    let need = req.gpus as usize;
    if need <= domain {
        // Tightest NVLink domain that still holds the task, so whole domains stay free.
        let mut best: Option<(usize, usize)> = None;
        for (d, chunk) in v.gpus.chunks(domain).enumerate() {
            let full = chunk.iter().filter(|&&f| f == FULL).count();
            if full >= need && best.is_none_or(|(bf, _)| full < bf) {
                best = Some((full, d));
            }
        }
        let (_, d) = best?;
        let start = d * domain;
        let picked: SmallVec<[u32; 8]> = v.gpus[start..(start + domain).min(v.gpus.len())]
            .iter()
            .enumerate()
            .filter(|&(_, &f)| f == FULL)
            .take(need)
            .map(|(i, _)| (start + i) as u32)
            .collect();
        return Some(picked);
    }
    // Larger than a domain: whole free domains first, then the rest in index order.
    let mut order: SmallVec<[usize; 8]> = (0..v.gpus.len().div_ceil(domain)).collect();
    order.sort_by_key(|&d| {
        let chunk = &v.gpus[d * domain..((d + 1) * domain).min(v.gpus.len())];
        std::cmp::Reverse(chunk.iter().filter(|&&f| f == FULL).count())
    });
    let mut picked: SmallVec<[u32; 8]> = SmallVec::new();
    for d in order {
        for g in d * domain..((d + 1) * domain).min(v.gpus.len()) {
            if v.gpus[g] == FULL && picked.len() < need {
                picked.push(g as u32);
            }
        }
    }
    if picked.len() < need {
        return None;
    }
    picked.sort_unstable();
    Some(picked)
}

fn apply(v: &mut View, req: &TaskReq, gpus: &[u32]) {
    for &g in gpus {
        v.gpus[g as usize] -= req.milli;
    }
    v.cpu -= req.cpu;
    v.mem -= req.mem;
}

/// Candidate node indices for a task on `model` (`None`: CPU-only, any node).
fn candidates(cluster: &Cluster, model: Option<u8>) -> Box<dyn Iterator<Item = u32> + '_> {
    match model {
        Some(m) => Box::new(cluster.model_nodes[m as usize].iter().copied()),
        None => Box::new(0..cluster.nodes.len() as u32),
    }
}

/// Finds a placement for all `req.replicas` tasks, or `None`. Never partial.
pub(crate) fn place(
    cluster: &Cluster,
    model: Option<u8>,
    req: &TaskReq,
    ctx: &PlaceCtx,
    strategy: PlacementStrategy,
    frag: &mut FragModel,
) -> Option<Vec<TaskSlot>> {
    if req.replicas == 1 {
        return place_one(cluster, model, req, ctx, strategy, frag).map(|t| vec![t]);
    }
    place_gang(cluster, model, req, ctx, frag)
}

fn place_one(
    cluster: &Cluster,
    model: Option<u8>,
    req: &TaskReq,
    ctx: &PlaceCtx,
    strategy: PlacementStrategy,
    frag: &mut FragModel,
) -> Option<TaskSlot> {
    // (fragmentation delta, best-fit key, node) of the best node so far.
    let mut best: Option<(f64, (u64, u64, u64), u32, SmallVec<[u32; 8]>)> = None;
    let use_frag = strategy == PlacementStrategy::Fragmentation && !frag.is_empty();
    for idx in candidates(cluster, model) {
        let n = &cluster.nodes[idx as usize];
        let Some(mut v) = view(n, idx, ctx) else {
            continue;
        };
        if v.cpu < req.cpu || v.mem < req.mem {
            continue;
        }
        let node_model = n.model.unwrap_or(0);
        let Some(gpus) = choose_gpus(&v, req, n.domain as usize, strategy, node_model, frag) else {
            continue;
        };
        if strategy == PlacementStrategy::FirstFit {
            return Some(TaskSlot {
                node: idx,
                gpus,
                milli: req.milli,
            });
        }
        let delta = if use_frag && n.model.is_some() {
            let before = frag.node_frag(node_model, v.cpu, v.mem, &v.gpus);
            apply(&mut v, req, &gpus);
            frag.node_frag(node_model, v.cpu, v.mem, &v.gpus) - before
        } else {
            apply(&mut v, req, &gpus);
            0.0
        };
        // Tightest node left: fewest whole GPUs, then least GPU share, then least CPU.
        let full_left = v.gpus.iter().filter(|&&f| f == FULL).count() as u64;
        let milli_left: u64 = v.gpus.iter().map(|&f| f as u64).sum();
        let key = (full_left, milli_left, v.cpu);
        let better = match &best {
            None => true,
            Some((bd, bk, _, _)) => {
                delta < *bd - 1e-9 || ((delta - *bd).abs() <= 1e-9 && key < *bk)
            }
        };
        if better {
            best = Some((delta, key, idx, gpus));
        }
    }
    best.map(|(_, _, node, gpus)| TaskSlot {
        node,
        gpus,
        milli: req.milli,
    })
}

fn place_gang(
    cluster: &Cluster,
    model: Option<u8>,
    req: &TaskReq,
    ctx: &PlaceCtx,
    frag: &mut FragModel,
) -> Option<Vec<TaskSlot>> {
    let mut per_node: Vec<(u32, u32)> = Vec::new(); // (node, slots)
    let mut block_slots = vec![0u64; cluster.block_count.max(1)];
    let mut total: u64 = 0;
    for idx in candidates(cluster, model) {
        let n = &cluster.nodes[idx as usize];
        let Some(v) = view(n, idx, ctx) else {
            continue;
        };
        let s = slots(&v, req, n.domain as usize, req.replicas);
        if s > 0 {
            per_node.push((idx, s));
            block_slots[n.block as usize] += s as u64;
            total += s as u64;
        }
    }
    let r = req.replicas as u64;
    if total < r {
        return None;
    }
    let mut chosen_blocks: Vec<usize> = Vec::new();
    let whole = block_slots
        .iter()
        .enumerate()
        .filter(|&(_, &s)| s >= r)
        .min_by_key(|&(b, &s)| (s, b));
    if let Some((b, _)) = whole {
        chosen_blocks.push(b);
    } else {
        let mut order: Vec<usize> = (0..block_slots.len())
            .filter(|&b| block_slots[b] > 0)
            .collect();
        order.sort_by_key(|&b| (std::cmp::Reverse(block_slots[b]), b));
        let mut covered = 0;
        for b in order {
            chosen_blocks.push(b);
            covered += block_slots[b];
            if covered >= r {
                break;
            }
        }
    }
    let mut nodes: Vec<(u32, u32)> = per_node
        .into_iter()
        .filter(|(idx, _)| chosen_blocks.contains(&(cluster.nodes[*idx as usize].block as usize)))
        .collect();
    // One node that holds the whole gang beats spreading it: take the tightest such node.
    // Otherwise fill the roomiest nodes first, so the gang spans as few nodes as it can.
    if let Some(&(idx, _)) = nodes
        .iter()
        .filter(|(_, s)| *s as u64 >= r)
        .min_by_key(|(idx, s)| (*s, *idx))
    {
        nodes = vec![(idx, req.replicas)];
    } else {
        nodes.sort_by_key(|&(idx, s)| (std::cmp::Reverse(s), idx));
    }
    let mut out = Vec::with_capacity(req.replicas as usize);
    for (idx, s) in nodes {
        let n = &cluster.nodes[idx as usize];
        let mut v = view(n, idx, ctx)?;
        let take = (s as u64).min(r - out.len() as u64);
        for _ in 0..take {
            let gpus = choose_gpus(
                &v,
                req,
                n.domain as usize,
                PlacementStrategy::BestFit,
                n.model.unwrap_or(0),
                frag,
            )?;
            apply(&mut v, req, &gpus);
            out.push(TaskSlot {
                node: idx,
                gpus,
                milli: req.milli,
            });
        }
        if out.len() as u64 >= r {
            break;
        }
    }
    (out.len() as u64 == r).then_some(out)
}
