//! Where a gang goes: node and GPU choice under topology rules and the placement strategy.
//!
//! Rules, in order: every task's GPUs are on one node; a task that fits in one NVLink domain stays
//! in one; a multi-task gang uses as few network blocks as it can (the tightest block that holds it
//! whole, else the largest blocks first); single tasks go where the strategy scores best, with
//! end-time alignment (when the policy asks) first: a node whose running work outlasts the task
//! before one it would keep busy longer. Slot counting is exact, so when a placement exists on
//! the given view it is found.

use crate::cluster::{Cluster, FULL, GpuVec, Group, NodeSig, NodeSlot};
use crate::frag::{self, FragModel};
use crate::policy::PlacementStrategy;
use haneul_model::{JobId, NodeState, Time};
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
    /// Most groups of interchangeable nodes scored per model for one task.
    pub max_scored: usize,
    /// Pools this job may run on, by pool index.
    pub pools: &'a [bool],
    pub exclusions: Option<&'a Exclusions>,
    /// Leave every wholly free node alone (no GPU in use and no hold on it): the express lane's
    /// jobs fill gaps beside running work and never break up a drained node. Checked per group of
    /// alike nodes, so it costs nothing per node (a walk of the fleet per pass did).
    pub keep_whole: bool,
    /// When running work on each node is expected to end, and when this task would: a node
    /// whose work outlasts the task beats one it would outlast, before the strategy's score, and
    /// among nodes that score alike the best aligned wins (see [`end_cost`]).
    pub ends: Option<(&'a [Time], Time)>,
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
    if ctx.keep_whole && is_whole(n) {
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
    let held = n
        .holds
        .iter()
        .filter(|(j, _)| *j != ctx.job)
        .map(|(_, r)| r);
    for r in ctx
        .exclusions
        .and_then(|e| e.get(&idx))
        .into_iter()
        .chain(held)
    {
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

/// A GPU node with every GPU free and no hold on it.
fn is_whole(n: &NodeSlot) -> bool {
    n.model.is_some() && n.full_free as usize == n.gpus() && n.holds.is_empty()
}

/// How many tasks of `req` fit on a node view, at most `cap`.
fn slots(v: &View, req: &TaskReq, domain: usize, cap: u32) -> u32 {
    let mut n = cap as u64;
    if let Some(per) = v.cpu.checked_div(req.cpu) {
        n = n.min(per);
    }
    if let Some(per) = v.mem.checked_div(req.mem) {
        n = n.min(per);
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
                PlacementStrategy::FgdPaper => {
                    // The simulator takes the first GPU with the best integer score.
                    let before = frag.node_frag(model, v.cpu, v.mem, &v.gpus);
                    let mut after = v.gpus.clone();
                    after[g] -= req.milli;
                    let after = frag.node_frag(model, v.cpu.saturating_sub(req.cpu), 0, &after);
                    let score = -(frag::paper_score(before, after) as f64);
                    if best.is_none_or(|(s, _, _)| score < s) {
                        best = Some((score, free, g));
                    }
                    continue;
                }
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

/// Candidate node indices on the given models (none given: a CPU-only task, any node).
fn candidates<'a>(cluster: &'a Cluster, models: &'a [u8]) -> Box<dyn Iterator<Item = u32> + 'a> {
    if models.is_empty() {
        Box::new(0..cluster.nodes.len() as u32)
    } else {
        Box::new(
            models
                .iter()
                .flat_map(|&m| cluster.model_nodes[m as usize].iter().copied()),
        )
    }
}

/// Finds a placement for all `req.replicas` tasks on one of `models` (empty for CPU-only work),
/// and the model it chose, or `None`. Never partial. A single task is scored across all the
/// models; a gang stays on one model, the first in the list that holds it.
pub(crate) fn place(
    cluster: &Cluster,
    models: &[u8],
    req: &TaskReq,
    ctx: &PlaceCtx,
    strategy: PlacementStrategy,
    frag: &mut FragModel,
) -> Option<(Option<u8>, Vec<TaskSlot>)> {
    if req.replicas == 1 {
        let slot = place_one(cluster, models, req, ctx, strategy, frag)?;
        let model = if models.is_empty() {
            None
        } else {
            cluster.nodes[slot.node as usize].model
        };
        return Some((model, vec![slot]));
    }
    if models.is_empty() {
        return place_gang(cluster, &[], req, ctx, frag).map(|t| (None, t));
    }
    models.iter().find_map(|&m| {
        place_gang(cluster, std::slice::from_ref(&m), req, ctx, frag).map(|t| (Some(m), t))
    })
}

fn place_one(
    cluster: &Cluster,
    models: &[u8],
    req: &TaskReq,
    ctx: &PlaceCtx,
    strategy: PlacementStrategy,
    frag: &mut FragModel,
) -> Option<TaskSlot> {
    if strategy == PlacementStrategy::FgdPaper {
        return place_one_paper(cluster, models, req, ctx, frag);
    }
    let max_scored = ctx.max_scored.max(1);
    let use_frag = strategy == PlacementStrategy::Fragmentation && !frag.is_empty();
    let mut best = NearBest::new(if use_frag { frag.tie_milli() } else { 0.0 });
    // Scores one node; says whether it was plain (no hold, no reservation on it, so it stands for
    // its whole group) and whether the task fits on it.
    let consider = |idx: u32, frag: &mut FragModel, best: &mut NearBest| -> (bool, bool) {
        let n = &cluster.nodes[idx as usize];
        let plain = n.holds.is_empty() && ctx.exclusions.is_none_or(|e| !e.contains_key(&idx));
        let scored = score_node(n, idx, req, ctx, strategy, use_frag, frag);
        let feasible = scored.is_some();
        if let Some(scored) = scored {
            best.offer(scored);
        }
        (plain, feasible)
    };
    match &cluster.groups {
        Some(groups) if strategy != PlacementStrategy::FirstFit => {
            // Groups of one model are visited tightest first (fewest fully free GPUs); like
            // kube-scheduler's percentageOfNodesToScore, at most `max_scored` feasible groups
            // per model are scored, which bounds a placement on a large fleet.
            let mut visit = |sig: &NodeSig, nodes: &std::collections::BTreeSet<u32>| -> bool {
                if !sig_may_fit(sig, req)
                    || !ctx.pools.get(sig.pool as usize).copied().unwrap_or(false)
                {
                    return false;
                }
                let mut any = false;
                if ctx.keep_whole && sig.model.is_some() && sig.full_free as usize == sig.gpus.len()
                {
                    // Every node of the group is wholly free; only those with a hold (free
                    // GPUs the holder leaves) are not, and there are few of them.
                    for &idx in cluster.held.iter().filter(|i| nodes.contains(i)) {
                        any |= consider(idx, frag, &mut best).1;
                    }
                    return any;
                }
                if let Some(ends) = ctx.ends {
                    // Alike nodes differ in when their work ends: the group stands for its
                    // best-aligned plain node.
                    let mut plain_best: Option<((bool, i64, u32), u32)> = None;
                    for &idx in nodes.iter().take(ALIGN_SCAN) {
                        if is_plain(cluster, ctx, idx) {
                            let c = end_cost(ends, idx);
                            if plain_best.is_none_or(|(b, _)| c < b) {
                                plain_best = Some((c, idx));
                            }
                        } else {
                            any |= consider(idx, frag, &mut best).1;
                        }
                    }
                    if let Some((_, idx)) = plain_best {
                        any |= consider(idx, frag, &mut best).1;
                    }
                    return any;
                }
                for &idx in nodes {
                    let (plain, feasible) = consider(idx, frag, &mut best);
                    any |= feasible;
                    if plain {
                        // The rest of the group scores the same and loses on index.
                        break;
                    }
                }
                any
            };
            for range in groups_by_model(groups, models, req) {
                let mut scored = 0usize;
                for (sig, group) in range {
                    if scored >= max_scored {
                        break;
                    }
                    if visit(sig, &group.nodes) {
                        scored += 1;
                    }
                }
            }
        }
        _ => {
            for idx in candidates(cluster, models) {
                let _ = consider(idx, frag, &mut best);
                if strategy == PlacementStrategy::FirstFit && !best.is_empty() {
                    break;
                }
            }
        }
    }
    best.pick().map(|b| TaskSlot {
        node: b.node,
        gpus: b.gpus,
        milli: req.milli,
    })
}

/// Nodes of one group looked at when aligning end times; bounds a placement on a large fleet.
const ALIGN_SCAN: usize = 64;

/// No hold and no reservation on the node: it stands for its whole group.
fn is_plain(cluster: &Cluster, ctx: &PlaceCtx, idx: u32) -> bool {
    cluster.nodes[idx as usize].holds.is_empty()
        && ctx.exclusions.is_none_or(|e| !e.contains_key(&idx))
}

/// How a task ending at `end` fits the node's running work in time, lowest best: (the task
/// outlasts that work, by how much it does or how long before the work's end it ends, index).
/// Nodes whose work ends together free whole, which is what gangs and whole-node jobs wait for;
/// a task on a node about to drain would keep it partly busy, while beside longer work it costs
/// nothing. Among outlasted nodes the tightest in time wins, which keeps the longest-busy nodes
/// for longer tasks.
fn end_cost((busy_until, end): (&[Time], Time), idx: u32) -> (bool, i64, u32) {
    let until = busy_until.get(idx as usize).copied().unwrap_or(Time::ZERO);
    if until >= end {
        (false, until.0 - end.0, idx)
    } else {
        (true, end.0 - until.0, idx)
    }
}

/// FGD as the paper's simulator ran it: every feasible node scored with kube-scheduler's integer
/// score of the fragmentation change, and the best score wins; among equal scores the first node
/// in fleet order. (kube-scheduler's own `selectHost` draws among them at random; with that draw
/// this measure reaches only about 90% on the default openb list, against the published 95.2%,
/// while the first node reproduces the published figures: docs/benchmarks.md.)
fn place_one_paper(
    cluster: &Cluster,
    models: &[u8],
    req: &TaskReq,
    ctx: &PlaceCtx,
    frag: &mut FragModel,
) -> Option<TaskSlot> {
    // (score, node, gpus) of the current pick.
    let mut best: Option<(i64, u32, SmallVec<[u32; 8]>)> = None;
    let mut consider = |idx: u32, frag: &mut FragModel| {
        let n = &cluster.nodes[idx as usize];
        if let Some((score, gpus)) = paper_score_node(n, idx, req, ctx, frag)
            && best
                .as_ref()
                .is_none_or(|(s, b, _)| score > *s || (score == *s && idx < *b))
        {
            best = Some((score, idx, gpus));
        }
    };
    match &cluster.groups {
        Some(groups) => {
            for range in groups_by_model(groups, models, req) {
                for (sig, group) in range {
                    if !sig_may_fit(sig, req)
                        || !ctx.pools.get(sig.pool as usize).copied().unwrap_or(false)
                    {
                        continue;
                    }
                    for &idx in &group.nodes {
                        let n = &cluster.nodes[idx as usize];
                        consider(idx, frag);
                        if n.holds.is_empty()
                            && ctx.exclusions.is_none_or(|e| !e.contains_key(&idx))
                        {
                            // The lowest index of its group, which scores the same.
                            break;
                        }
                    }
                }
            }
        }
        None => {
            for idx in candidates(cluster, models) {
                consider(idx, frag);
            }
        }
    }
    best.map(|(_, node, gpus)| TaskSlot {
        node,
        gpus,
        milli: req.milli,
    })
}

fn paper_score_node(
    n: &NodeSlot,
    idx: u32,
    req: &TaskReq,
    ctx: &PlaceCtx,
    frag: &mut FragModel,
) -> Option<(i64, SmallVec<[u32; 8]>)> {
    let mut v = view(n, idx, ctx)?;
    if v.cpu < req.cpu || v.mem < req.mem {
        return None;
    }
    let model = n.model.unwrap_or(0);
    let gpus = choose_gpus(
        &v,
        req,
        n.domain as usize,
        PlacementStrategy::FgdPaper,
        model,
        frag,
    )?;
    let before = frag.node_frag(model, v.cpu, v.mem, &v.gpus);
    apply(&mut v, req, &gpus);
    let after = frag.node_frag(model, v.cpu, v.mem, &v.gpus);
    Some((frag::paper_score(before, after), gpus))
}

type Groups = std::collections::BTreeMap<NodeSig, Group>;
type GroupRange<'a> = Box<dyn Iterator<Item = (&'a NodeSig, &'a Group)> + 'a>;

/// The groups that may hold a task of `req`, per model (every model for CPU-only work), each
/// model's tightest first; groups with fewer fully free GPUs than a whole-GPU task needs are
/// left out.
fn groups_by_model<'a>(groups: &'a Groups, models: &[u8], req: &TaskReq) -> Vec<GroupRange<'a>> {
    let min_full = if req.gpus > 0 && req.milli == FULL {
        req.gpus.min(255) as u8
    } else {
        0
    };
    let models: Vec<Option<u8>> = if models.is_empty() {
        let mut all: Vec<Option<u8>> = groups.keys().map(|k| k.model).collect();
        all.dedup();
        all
    } else {
        models.iter().map(|&m| Some(m)).collect()
    };
    models
        .into_iter()
        .map(|m| {
            let from = NodeSig {
                model: m,
                full_free: min_full,
                gpus: GpuVec::new(),
                cpu: 0,
                mem: 0,
                pool: 0,
                domain: 0,
            };
            let range: GroupRange<'a> = Box::new(
                groups
                    .range(from..)
                    .take_while(move |(sig, _)| sig.model == m),
            );
            range
        })
        .collect()
}

/// A candidate node for one task and how good it is.
struct Scored {
    /// The task would outlast the node's running work, and by how much or how early it ends
    /// ([`end_cost`]; zero without end-time alignment).
    outlasts: bool,
    slack: i64,
    /// Growth of the node's expected fragmentation (0 when the strategy does not use it).
    delta: f64,
    /// Best fit: fewest whole GPUs left, then least GPU share, then least CPU.
    fit: (u64, u64, u64),
    node: u32,
    gpus: SmallVec<[u32; 8]>,
}

impl Scored {
    /// Among candidates that count as equally good on fragmentation: the tightest node, then
    /// the lower growth, then the best aligned in time, then the lowest index. A strict total
    /// order, so the winner does not depend on the order nodes are looked at.
    fn fits_better(&self, other: &Scored) -> bool {
        self.fit
            .cmp(&other.fit)
            .then(self.delta.total_cmp(&other.delta))
            .then(self.slack.cmp(&other.slack))
            .then(self.node.cmp(&other.node))
            .is_lt()
    }
}

/// The winner among scored nodes: nodes whose work the task would not outlast first (with
/// end-time alignment); among those, every node whose growth of expected fragmentation is within
/// `tolerance` milli-GPU of the lowest counts as equally good, and the tightest of them wins
/// ([`Scored::fits_better`]). With a tolerance of 0 that is the lowest growth, ties to the
/// tightest.
///
/// Why a tolerance: the measure is an expectation over a mix that is itself an estimate
/// (learned from arrivals, or a list's counts), and growths a few tens of milli-GPU apart are
/// within what a slightly different mix would swap. Taking the strict lowest then spreads small
/// tasks over nodes on differences that mean nothing, while taking the tightest of the near-best
/// keeps packing them onto the nodes already in use (the FGD paper's scorer has a similar effect
/// by rounding the change to an integer score; docs/scheduling.md has the ablation).
///
/// Which candidates are near the lowest is only known at the end, so every candidate within
/// the tolerance of the lowest seen so far is kept and the choice is made once, in one pass:
/// O(candidates) per placement; with no tolerance only the best is kept, as a plain minimum.
struct NearBest {
    tolerance: f64,
    /// The best class (outlasts) and the lowest growth in it, so far.
    floor: Option<(bool, f64)>,
    /// Inline for the usual few, so a placement allocates nothing (one with no tolerance).
    near: SmallVec<[Scored; 2]>,
}

impl NearBest {
    fn new(tolerance: f64) -> Self {
        NearBest {
            tolerance: if tolerance.is_finite() {
                tolerance.max(0.0)
            } else {
                0.0
            },
            floor: None,
            near: SmallVec::new(),
        }
    }

    fn is_empty(&self) -> bool {
        self.near.is_empty()
    }

    fn offer(&mut self, mut s: Scored) {
        if s.delta.is_nan() {
            s.delta = f64::INFINITY;
        }
        match self.floor {
            Some((outlasts, low)) if outlasts == s.outlasts => {
                if s.delta < low {
                    self.floor = Some((outlasts, s.delta));
                } else if s.delta > low + self.tolerance {
                    return;
                }
            }
            // A worse class than what is kept: never chosen.
            Some((false, _)) => return,
            // No candidate yet, or the first of a better class.
            _ => {
                self.floor = Some((s.outlasts, s.delta));
                self.near.clear();
            }
        }
        if self.tolerance == 0.0 {
            // Only the lowest growth can win: keep one candidate, as a plain minimum would.
            if let Some(kept) = self.near.last_mut() {
                if s.delta < kept.delta || (s.delta == kept.delta && s.fits_better(kept)) {
                    *kept = s;
                }
                return;
            }
        }
        self.near.push(s);
    }

    fn pick(self) -> Option<Scored> {
        let (_, low) = self.floor?;
        let limit = low + self.tolerance;
        self.near
            .into_iter()
            .filter(|s| s.delta <= limit)
            .reduce(|a, b| if b.fits_better(&a) { b } else { a })
    }
}

fn sig_may_fit(sig: &NodeSig, req: &TaskReq) -> bool {
    if sig.cpu < req.cpu || sig.mem < req.mem {
        return false;
    }
    if req.gpus == 0 {
        return true;
    }
    if req.milli < FULL {
        sig.gpus.iter().any(|&f| f >= req.milli)
    } else {
        sig.gpus.iter().filter(|&&f| f == FULL).count() >= req.gpus as usize
    }
}

fn score_node(
    n: &NodeSlot,
    idx: u32,
    req: &TaskReq,
    ctx: &PlaceCtx,
    strategy: PlacementStrategy,
    use_frag: bool,
    frag: &mut FragModel,
) -> Option<Scored> {
    let mut v = view(n, idx, ctx)?;
    if v.cpu < req.cpu || v.mem < req.mem {
        return None;
    }
    let node_model = n.model.unwrap_or(0);
    let gpus = choose_gpus(&v, req, n.domain as usize, strategy, node_model, frag)?;
    let delta = if use_frag && n.model.is_some() {
        let before = frag.node_frag(node_model, v.cpu, v.mem, &v.gpus);
        apply(&mut v, req, &gpus);
        frag.node_frag(node_model, v.cpu, v.mem, &v.gpus) - before
    } else {
        apply(&mut v, req, &gpus);
        0.0
    };
    let fit = if strategy == PlacementStrategy::FirstFit {
        (0, 0, 0)
    } else {
        let full_left = v.gpus.iter().filter(|&&f| f == FULL).count() as u64;
        let milli_left: u64 = v.gpus.iter().map(|&f| f as u64).sum();
        (full_left, milli_left, v.cpu)
    };
    let (outlasts, slack, _) = ctx.ends.map_or((false, 0, idx), |e| end_cost(e, idx));
    Some(Scored {
        outlasts,
        slack,
        delta,
        fit,
        node: idx,
        gpus,
    })
}

fn place_gang(
    cluster: &Cluster,
    models: &[u8],
    req: &TaskReq,
    ctx: &PlaceCtx,
    frag: &mut FragModel,
) -> Option<Vec<TaskSlot>> {
    let node_slots = |idx: u32| -> u32 {
        let n = &cluster.nodes[idx as usize];
        view(n, idx, ctx).map_or(0, |v| slots(&v, req, n.domain as usize, req.replicas))
    };
    let (block_slots, per_node) = match &cluster.groups {
        Some(groups) => (gang_block_slots(cluster, groups, models, req, ctx), None),
        None => {
            let mut per_node: Vec<(u32, u32)> = Vec::new(); // (node, slots)
            let mut block_slots = vec![0u64; cluster.block_count.max(1)];
            for idx in candidates(cluster, models) {
                let s = node_slots(idx);
                if s > 0 {
                    per_node.push((idx, s));
                    block_slots[cluster.nodes[idx as usize].block as usize] += s as u64;
                }
            }
            (block_slots, Some(per_node))
        }
    };
    // The crate's tests check the groups' count against counting node by node.
    #[cfg(test)]
    if per_node.is_none() {
        let mut by_node = vec![0u64; cluster.block_count.max(1)];
        for idx in candidates(cluster, models) {
            by_node[cluster.nodes[idx as usize].block as usize] += node_slots(idx) as u64;
        }
        assert_eq!(
            by_node, block_slots,
            "gang slots per block, by group and by node"
        );
    }
    let total: u64 = block_slots.iter().sum();
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
    let mut nodes: Vec<(u32, u32)> = match per_node {
        Some(per_node) => per_node
            .into_iter()
            .filter(|(idx, _)| {
                chosen_blocks.contains(&(cluster.nodes[*idx as usize].block as usize))
            })
            .collect(),
        // Only the chosen blocks' nodes are looked at one by one.
        None => chosen_blocks
            .iter()
            .flat_map(|&b| cluster.block_nodes[b].iter().copied())
            .filter(|&idx| gang_may_use(cluster, models, req, ctx, idx))
            .map(|idx| (idx, node_slots(idx)))
            .filter(|&(_, s)| s > 0)
            .collect(),
    };
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

/// A gang's task slots per block, from the node groups: nodes of a group offer the same slots,
/// so each group adds its slots times its nodes in each block; nodes with a hold or a
/// reservation on them are then counted on their own.
fn gang_block_slots(
    cluster: &Cluster,
    groups: &Groups,
    models: &[u8],
    req: &TaskReq,
    ctx: &PlaceCtx,
) -> Vec<u64> {
    let mut block_slots = vec![0u64; cluster.block_count.max(1)];
    for range in groups_by_model(groups, models, req) {
        for (sig, group) in range {
            if !sig_may_fit(sig, req) || !ctx.pools.get(sig.pool as usize).copied().unwrap_or(false)
            {
                continue;
            }
            let s = sig_slots(sig, req) as u64;
            if s == 0 {
                continue;
            }
            for (&b, &count) in &group.blocks {
                block_slots[b as usize] += s * count as u64;
            }
        }
    }
    let mut special: std::collections::BTreeSet<u32> = cluster.held.clone();
    if let Some(excl) = ctx.exclusions {
        special.extend(excl.keys().copied());
    }
    for idx in special {
        if !gang_may_use(cluster, models, req, ctx, idx) {
            continue;
        }
        let n = &cluster.nodes[idx as usize];
        let own = view(n, idx, ctx).map_or(0, |v| slots(&v, req, n.domain as usize, req.replicas));
        let b = &mut block_slots[n.block as usize];
        *b = *b + own as u64 - sig_slots(&n.sig(), req) as u64;
    }
    block_slots
}

/// Whether a node is in a group a gang of `req` counts: up, of one of the models, in one of
/// its pools, and with room for a task before holds and reservations.
fn gang_may_use(cluster: &Cluster, models: &[u8], req: &TaskReq, ctx: &PlaceCtx, idx: u32) -> bool {
    let n = &cluster.nodes[idx as usize];
    if n.state != NodeState::Up || !ctx.pools.get(n.pool as usize).copied().unwrap_or(false) {
        return false;
    }
    if !models.is_empty() && !n.model.is_some_and(|m| models.contains(&m)) {
        return false;
    }
    if n.cpu_free < req.cpu || n.mem_free < req.mem {
        return false;
    }
    if req.gpus == 0 {
        return true;
    }
    if req.milli < FULL {
        n.gpu_free.iter().any(|&f| f >= req.milli)
    } else {
        n.full_free as usize >= req.gpus as usize
    }
}

/// A node's capacity for one job, to which the resources of evicted jobs can be added, counting
/// the task slots it would then offer. Used to price preemptions.
pub(crate) struct EvictionView {
    view: View,
    domain: usize,
}

/// Task slots any up node of this signature offers at most: its free capacity with nothing held
/// or reserved. Planning uses it to find the few nodes with room without visiting every node.
pub(crate) fn sig_slots(sig: &NodeSig, req: &TaskReq) -> u32 {
    let v = View {
        gpus: sig.gpus.clone(),
        cpu: sig.cpu,
        mem: sig.mem,
    };
    slots(&v, req, sig.domain as usize, req.replicas)
}

impl EvictionView {
    pub fn new(n: &NodeSlot, idx: u32, ctx: &PlaceCtx) -> Option<Self> {
        Some(EvictionView {
            view: view(n, idx, ctx)?,
            domain: n.domain as usize,
        })
    }

    pub fn free(&mut self, gpus: &[u32], milli: u16, cpu: u64, mem: u64) {
        for &g in gpus {
            if let Some(f) = self.view.gpus.get_mut(g as usize) {
                *f = (*f + milli).min(FULL);
            }
        }
        self.view.cpu += cpu;
        self.view.mem += mem;
    }

    pub fn slots(&self, req: &TaskReq) -> u32 {
        slots(&self.view, req, self.domain, req.replicas)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// (outlasts, growth, fit, node) of a candidate.
    type Cand = (bool, f64, (u64, u64, u64), u32);

    fn scored(&(outlasts, delta, fit, node): &Cand) -> Scored {
        Scored {
            outlasts,
            slack: 0,
            delta,
            fit,
            node,
            gpus: SmallVec::new(),
        }
    }

    fn pick(tolerance: f64, all: &[Cand]) -> Option<u32> {
        let mut best = NearBest::new(tolerance);
        for c in all {
            best.offer(scored(c));
        }
        best.pick().map(|s| s.node)
    }

    #[test]
    fn the_tightest_of_the_near_best_wins() {
        let all = [
            (false, 100.0, (3, 3000, 10), 0),
            (false, 150.0, (1, 1200, 10), 1),
            (false, 260.0, (0, 200, 10), 2),
        ];
        // Strict: the lowest growth. 100 milli: node 1 is near enough and tighter. Node 2 is
        // tighter still but 160 above the lowest.
        assert_eq!(pick(0.0, &all), Some(0));
        assert_eq!(pick(100.0, &all), Some(1));
        assert_eq!(pick(160.0, &all), Some(2));
        // A node the task would outlast loses to any it would not, whatever its growth.
        let mut late = all.to_vec();
        late.push((true, -500.0, (0, 0, 0), 3));
        assert_eq!(pick(1000.0, &late), Some(2));
        assert_eq!(pick(0.0, &[(true, 0.0, (0, 0, 0), 3)]), Some(3));
        assert_eq!(pick(50.0, &[]), None);
    }

    #[test]
    fn a_lower_growth_seen_later_narrows_the_window() {
        // Node 0 is tightest and within 100 of node 1, but node 2 arrives lower and leaves it
        // out.
        let all = [
            (false, 200.0, (0, 100, 0), 0),
            (false, 150.0, (2, 2000, 0), 1),
            (false, 50.0, (1, 1500, 0), 2),
        ];
        assert_eq!(pick(100.0, &all), Some(2));
    }

    fn candidates() -> impl Strategy<Value = Vec<Cand>> {
        proptest::collection::vec(
            (any::<bool>(), -3000i32..3000, 0u64..4, 0u64..4000, 0u64..4),
            1..40,
        )
        .prop_map(|v| {
            v.into_iter()
                .enumerate()
                .map(|(i, (o, d, a, b, c))| (o, d as f64, (a, b, c), i as u32))
                .collect()
        })
    }

    proptest! {
        /// With no tolerance the choice is the plain minimum of (outlasts, growth, fit, node);
        /// with one, the winner is in the best class, within the tolerance of that class's
        /// lowest growth, and no candidate there fits better; the order nodes are offered in
        /// never matters.
        #[test]
        fn near_best_is_a_minimum_over_the_window(all in candidates(), tol in 0u32..500, rot in 0usize..40) {
            let strict = all
                .iter()
                .min_by(|a, b| (a.0, a.1 as i64, a.2, a.3).cmp(&(b.0, b.1 as i64, b.2, b.3)))
                .map(|c| c.3);
            prop_assert_eq!(pick(0.0, &all), strict);

            let tol = tol as f64;
            let won = pick(tol, &all).unwrap();
            let w = *all.iter().find(|c| c.3 == won).unwrap();
            prop_assert_eq!(w.0, all.iter().all(|c| c.0));
            let low = all
                .iter()
                .filter(|c| c.0 == w.0)
                .map(|c| c.1)
                .fold(f64::INFINITY, f64::min);
            prop_assert!(w.1 <= low + tol);
            for c in all.iter().filter(|c| c.0 == w.0 && c.1 <= low + tol) {
                prop_assert!(!scored(c).fits_better(&scored(&w)), "{} fits better than {}", c.3, won);
            }
            let mut turned = all.clone();
            turned.rotate_left(rot % all.len());
            turned.reverse();
            prop_assert_eq!(pick(tol, &turned), Some(won));
        }
    }
}
