//! Expected fragmentation of a node under the centre's workload.
//!
//! For one kind of task, the fragment of a node is the free GPU capacity that kind can not use
//! there: everything free when the task can not fit at all (wrong model, too little CPU, memory or
//! GPU), otherwise the free share of GPUs too small for one of its GPUs. Weighting by how common
//! each kind is gives the node's expected fragmentation; placing a task where it grows the least
//! keeps capacity usable for what will arrive (the measure of Weng et al., ATC 2023).
//!
//! Two sets of rules share this module: Haneul's ([`Measure::Haneul`]) and the paper's as its
//! published simulator computed it ([`Measure::Paper`]), the baseline Haneul is compared with.
//! The measure itself ([`expected_fragmentation`], [`kind_fragment`], [`haneul_kinds`],
//! [`paper_kinds`]) is pure; [`FragModel`] adds the learned workload and a memo of values by node
//! state, which repeats a great deal across a fleet.

use crate::cluster::{FULL, GpuVec};
use crate::policy::FragTuning;
use rustc_hash::FxHashMap;

/// One kind of task as the fragmentation measure sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TaskKind {
    /// GPUs per task; 0 for CPU-only tasks.
    pub gpus: u8,
    /// Milli-GPU per GPU: 1000 for whole GPUs, less for a shared GPU, 0 for CPU-only tasks.
    pub milli: u16,
    pub cpu: u64,
    pub mem: u64,
    /// Allowed GPU models as a bit set over the engine's model table; `u64::MAX` for any.
    pub models: u64,
}

/// Which rules count a fragment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Measure {
    /// A CPU-only kind fragments nothing on a node where it fits (it needs no GPU); memory counts
    /// like CPU.
    #[default]
    Haneul,
    /// The FGD simulator's rules: a CPU-only kind sees every free GPU of a node as fragment
    /// whether or not it fits there, and memory is not looked at.
    Paper,
}

/// A node's free capacity, as the measure sees it.
#[derive(Debug, Clone, Copy)]
pub struct NodeFree<'a> {
    /// The node's GPU model, an index into the engine's model table.
    pub model: u8,
    pub cpu: u64,
    pub mem: u64,
    /// Free milli-GPU of each GPU, in any order.
    pub gpus: &'a [u16],
}

/// The free milli-GPU of `node` that a task of `kind` can not use.
pub fn kind_fragment(measure: Measure, kind: &TaskKind, node: &NodeFree) -> u64 {
    let total: u64 = node.gpus.iter().map(|&g| g as u64).sum();
    if kind.gpus == 0 {
        return match measure {
            Measure::Paper => total,
            Measure::Haneul if kind.cpu > node.cpu || kind.mem > node.mem => total,
            Measure::Haneul => 0,
        };
    }
    let lacks_mem = measure == Measure::Haneul && kind.mem > node.mem;
    if kind.cpu > node.cpu || lacks_mem || kind.models & (1u64 << node.model) == 0 {
        return total;
    }
    let usable = node.gpus.iter().filter(|&&g| g >= kind.milli).count();
    if usable < kind.gpus as usize {
        return total;
    }
    node.gpus
        .iter()
        .filter(|&&g| g < kind.milli)
        .map(|&g| g as u64)
        .sum()
}

/// Expected fragmented milli-GPU of `node` under `kinds` (weights summing to 1).
pub fn expected_fragmentation(measure: Measure, kinds: &[(TaskKind, f64)], node: &NodeFree) -> f64 {
    if node.gpus.iter().all(|&g| g == 0) {
        return 0.0;
    }
    kinds
        .iter()
        .map(|(k, p)| p * kind_fragment(measure, k, node) as f64)
        .sum()
}

/// Free milli-GPU of `node` its free CPU or memory can not feed, at `cpu_per_milli` and
/// `mem_per_milli` (the mix's CPU and memory per milli-GPU of GPU work; 0 means none is needed).
///
/// The per-kind fragment only sees a kind that can not fit at all; a node whose CPU is spent
/// down to what one more task needs still counts its other free GPUs as usable, though the
/// tasks that would use them will find no CPU. A CPU-only task on a node with free GPUs takes
/// CPU those GPUs' work will need; where CPU is scarce across the fleet (a CPU-heavy mix) that
/// strands GPUs by the hundred. Counting the GPUs the node's CPU and memory can not feed at the
/// mix's own ratio makes the placement keep CPU beside free GPUs and send CPU-heavy work to
/// nodes whose GPUs are used or whose CPU is plentiful (docs/scheduling.md has the ablation).
pub fn starved_milli(node: &NodeFree, cpu_per_milli: f64, mem_per_milli: f64) -> f64 {
    let free: f64 = node.gpus.iter().map(|&g| g as f64).sum();
    let fed = |have: u64, per: f64| {
        if per > 0.0 && per.is_finite() {
            have as f64 / per
        } else {
            f64::INFINITY
        }
    };
    (free - fed(node.cpu, cpu_per_milli).min(fed(node.mem, mem_per_milli))).max(0.0)
}

/// Haneul's kind list from counts: each count weighted as [`FragTuning`] says, the `max_kinds`
/// heaviest kept, weights normalised to sum to 1. `capacity` is the fleet's GPUs per model.
///
/// - a GPU kind's weight is `request_weight_pct`% its share of the GPU request and the rest its
///   share of the GPU pods (scaled to the GPU kinds' total count): stranding capacity that
///   large requests need wastes more than stranding a small one's, but a kind never weighs more
///   than its share of the demand, so a mix heavy in large tasks is not over-weighted, and
///   the request share fades as multi-GPU tasks grow in the mix ([`request_blend`]);
/// - whole-GPU kinds count `1 + whole_gpu_weight_pct / 100 x GPUs` times (0 by default: the
///   request blend replaced it, docs/scheduling.md);
/// - kinds restricted to some models count `fleet GPUs / GPUs they may use` times (at most
///   `scarcity_cap`), so capacity that only a few kinds can use is kept for them.
pub fn haneul_kinds(
    counts: Vec<(TaskKind, f64)>,
    capacity: &[u64],
    tuning: &FragTuning,
) -> Vec<(TaskKind, f64)> {
    let total: u64 = capacity.iter().sum();
    let mut kinds = counts;
    // GPU kinds share the GPU kinds' popularity between pod count and GPU request; CPU-only
    // kinds keep theirs, so the balance of CPU-only and GPU work stays as submitted.
    let request = |k: &TaskKind| k.gpus as f64 * k.milli as f64;
    let gpu_count: f64 = kinds
        .iter()
        .filter(|(k, _)| k.gpus > 0)
        .map(|(_, w)| w)
        .sum();
    let gpu_request: f64 = kinds.iter().map(|(k, w)| w * request(k)).sum();
    let multi_request: f64 = kinds
        .iter()
        .filter(|(k, _)| k.gpus > 1)
        .map(|(k, w)| w * request(k))
        .sum();
    let blend = request_blend(tuning, multi_request, gpu_request);
    if blend > 0.0 && gpu_request > 0.0 {
        for (k, w) in &mut kinds {
            if k.gpus > 0 {
                *w = (1.0 - blend) * *w + blend * gpu_count * *w * request(k) / gpu_request;
            }
        }
    }
    for (k, w) in &mut kinds {
        if k.gpus == 0 {
            *w *= tuning.cpu_kind_weight_pct as f64 / 100.0;
            continue;
        }
        if k.milli == FULL {
            *w *= 1.0 + tuning.whole_gpu_weight_pct as f64 / 100.0 * k.gpus as f64;
        }
        if tuning.scarcity_cap == 0 {
            continue;
        }
        let usable: u64 = capacity
            .iter()
            .enumerate()
            .filter(|(m, _)| k.models & (1u64 << m) != 0)
            .map(|(_, c)| c)
            .sum();
        if usable > 0 && total > 0 {
            *w *= (total as f64 / usable as f64).min(tuning.scarcity_cap as f64);
        }
    }
    let keep = if tuning.max_kinds == 0 {
        usize::MAX
    } else {
        tuning.max_kinds as usize
    };
    normalise(kinds, keep)
}

/// The share of a GPU kind's weight that follows its GPU request rather than its pod count:
/// `request_weight_pct`, faded by `request_fade_pct` times the share of the GPU request that
/// multi-GPU kinds make. The extra weight keeps small tasks off the whole GPUs and nodes large
/// tasks need; that is worth most while large tasks are rare. Where they ask for a large share
/// of the GPUs, their count alone already weighs them heavily, and the extra weight would make
/// the measure blind to the slices small tasks strand, so it fades (at the default 300%, gone
/// when multi-GPU tasks ask for a third of the GPUs; docs/scheduling.md has the ablation).
pub fn request_blend(tuning: &FragTuning, multi_request: f64, gpu_request: f64) -> f64 {
    let blend = tuning.request_weight_pct.min(100) as f64 / 100.0;
    if gpu_request <= 0.0 || !multi_request.is_finite() || !gpu_request.is_finite() {
        return blend;
    }
    let multi_share = (multi_request / gpu_request).clamp(0.0, 1.0);
    let fade = tuning.request_fade_pct as f64 / 100.0;
    blend * (1.0 - fade * multi_share).clamp(0.0, 1.0)
}

/// How close (milli-GPU) two nodes' growths of expected fragmentation must be to count as
/// equally good, for a mix whose GPU-sharing kinds ask for `sharing_request` of its
/// `gpu_request`: none while sharing is at most `tie_from_pct`% of the GPU request, the whole
/// `tie_milli` from `tie_full_pct`% on, linear in between.
///
/// Where most GPU work is slices of GPUs, the measure's differences between candidate nodes
/// are mostly a few tens of milli-GPU, which a slightly different mix (the next refresh of a
/// learned one) would reorder; taking the strict lowest then scatters slices across nodes,
/// while packing them onto the tightest of the near-best keeps whole GPUs whole. Where whole
/// GPUs are a large part of the request, the differences are whole GPUs kept or lost and the
/// lowest is right (docs/scheduling.md, section 5, has the ablation).
pub fn tie_tolerance(tuning: &FragTuning, sharing_request: f64, gpu_request: f64) -> f64 {
    if gpu_request <= 0.0 || !gpu_request.is_finite() || !sharing_request.is_finite() {
        return 0.0;
    }
    let share = (sharing_request / gpu_request).clamp(0.0, 1.0);
    let from = tuning.tie_from_pct as f64 / 100.0;
    let full = (tuning.tie_full_pct as f64 / 100.0).max(from);
    if share <= from || from >= 1.0 {
        return 0.0;
    }
    let ramp = if share >= full {
        1.0
    } else {
        (share - from) / (full - from)
    };
    tuning.tie_milli as f64 * ramp
}

/// Share of the work the paper's simulator keeps in its "typical pods": the most popular kinds
/// until they cover 95% of the tasks (its `podPopularityThreshold`).
const PAPER_POPULARITY: f64 = 0.95;

/// The paper simulator's kind list from counts: memory dropped from the kind (the simulator's
/// pod resource has none), the most popular kinds covering 95% of the tasks kept, weights
/// normalised to sum to 1.
pub fn paper_kinds(counts: Vec<(TaskKind, f64)>) -> Vec<(TaskKind, f64)> {
    let mut merged: std::collections::BTreeMap<TaskKind, f64> = Default::default();
    for (mut k, w) in counts {
        k.mem = 0;
        if w > 0.0 && w.is_finite() {
            *merged.entry(k).or_insert(0.0) += w;
        }
    }
    let mut kinds: Vec<(TaskKind, f64)> = merged.into_iter().collect();
    // Most popular first; equal counts in the simulator's order (larger CPU, then share, then GPUs).
    kinds.sort_by(|a, b| {
        b.1.total_cmp(&a.1)
            .then(b.0.cpu.cmp(&a.0.cpu))
            .then(b.0.milli.cmp(&a.0.milli))
            .then(b.0.gpus.cmp(&a.0.gpus))
            .then(b.0.models.cmp(&a.0.models))
    });
    let total: f64 = kinds.iter().map(|(_, w)| w).sum();
    let mut covered = 0.0;
    let mut keep = 0;
    while keep < kinds.len() && covered < PAPER_POPULARITY * total {
        covered += kinds[keep].1;
        keep += 1;
    }
    kinds.truncate(keep);
    let sum: f64 = kinds.iter().map(|(_, w)| w).sum();
    if sum > 0.0 {
        for (_, w) in &mut kinds {
            *w /= sum;
        }
    }
    kinds
}

/// kube-scheduler's score of a fragmentation change in the paper's simulator: the growth in
/// milli-GPU through a sigmoid, scaled to 0..=100 and truncated to an integer.
pub fn paper_score(before: f64, after: f64) -> i64 {
    let x = (before - after) / 1000.0;
    (100.0 / (1.0 + (-x).exp())) as i64
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct StateKey {
    model: u8,
    cpu: u64,
    mem: u64,
    gpus: GpuVec,
}

const MEMO_LIMIT: usize = 1 << 20;
/// Past this the learned weights are rescaled (new arrivals weigh more instead of old ones
/// decaying, so learning costs O(1) per submission).
const SCALE_LIMIT: f64 = 1e100;

/// The measure with the workload it expects: given by the driver or learned from submissions
/// (decayed counts), and a memo of values by node state.
#[derive(Debug, Clone, Default)]
pub(crate) struct FragModel {
    measure: Measure,
    tuning: FragTuning,
    kinds: Vec<(TaskKind, f64)>,
    /// GPUs per model in the fleet, to weigh kinds restricted to few models.
    capacity: Vec<u64>,
    learned: FxHashMap<TaskKind, f64>,
    learned_total: f64,
    /// Weight of one task submitted now; grows by 2 every half-life.
    scale: f64,
    pending: f64,
    fixed: bool,
    memo: FxHashMap<StateKey, f64>,
    /// [`tie_tolerance`] of the mix the kinds were built from.
    tie: f64,
    /// The mix's CPU and memory per milli-GPU of GPU work (0 when it has none).
    cpu_per_milli: f64,
    mem_per_milli: f64,
}

impl FragModel {
    pub fn new(measure: Measure, tuning: FragTuning, capacity: Vec<u64>) -> Self {
        FragModel {
            measure,
            tuning,
            capacity,
            scale: 1.0,
            ..FragModel::default()
        }
    }

    fn build(&mut self, counts: Vec<(TaskKind, f64)>) -> Vec<(TaskKind, f64)> {
        // One pass over the GPU kinds: their sharing and total request (milli-GPU), CPU and memory.
        let (sharing, gpu, cpu, mem) = counts
            .iter()
            .filter(|(k, w)| k.gpus > 0 && w.is_finite() && *w > 0.0)
            .fold((0.0, 0.0, 0.0, 0.0), |(s, g, c, m), (k, w)| {
                let r = w * k.gpus as f64 * k.milli as f64;
                let s = if k.milli < FULL { s + r } else { s };
                (s, g + r, c + w * k.cpu as f64, m + w * k.mem as f64)
            });
        self.tie = tie_tolerance(&self.tuning, sharing, gpu);
        (self.cpu_per_milli, self.mem_per_milli) = if gpu > 0.0 {
            (cpu / gpu, mem / gpu)
        } else {
            (0.0, 0.0)
        };
        match self.measure {
            Measure::Haneul => haneul_kinds(counts, &self.capacity, &self.tuning),
            Measure::Paper => paper_kinds(counts),
        }
    }

    /// Uses this distribution from now on instead of learning one.
    pub fn set_fixed(&mut self, kinds: Vec<(TaskKind, f64)>) {
        self.fixed = true;
        self.kinds = self.build(kinds);
        self.memo.clear();
    }

    pub fn observe(&mut self, kind: TaskKind, tasks: u32) {
        if self.fixed {
            return;
        }
        if self.scale == 0.0 {
            self.scale = 1.0;
        }
        let half_life = self.tuning.learn_half_life.max(1) as f64;
        self.scale *= 2f64.powf(tasks as f64 / half_life);
        if self.scale > SCALE_LIMIT {
            for w in self.learned.values_mut() {
                *w /= self.scale;
            }
            self.learned_total /= self.scale;
            self.pending /= self.scale;
            self.scale = 1.0;
        }
        let w = tasks as f64 * self.scale;
        *self.learned.entry(kind).or_insert(0.0) += w;
        self.learned_total += w;
        self.pending += w;
    }

    /// Rebuilds the kind list from what was learned when enough has changed since the last time
    /// (2% of the decayed total, and at least 16 tasks' worth).
    pub fn refresh(&mut self) {
        if self.fixed || self.pending <= 0.0 {
            return;
        }
        let threshold = (self.learned_total * 0.02).max(16.0 * self.scale);
        if !self.kinds.is_empty() && self.pending < threshold {
            return;
        }
        self.pending = 0.0;
        // Sorted by kind, so the weights do not depend on the hash map's order.
        let mut counts: Vec<(TaskKind, f64)> = self.learned.iter().map(|(k, w)| (*k, *w)).collect();
        counts.sort_by_key(|c| c.0);
        self.kinds = self.build(counts);
        self.memo.clear();
    }

    pub fn is_empty(&self) -> bool {
        self.kinds.is_empty()
    }

    /// Growths of expected fragmentation this close (milli-GPU) count as equal.
    pub fn tie_milli(&self) -> f64 {
        self.tie
    }

    /// Expected fragmented milli-GPU of a node in the given state.
    pub fn node_frag(&mut self, model: u8, cpu: u64, mem: u64, gpus: &[u16]) -> f64 {
        let mut sorted: GpuVec = gpus.iter().copied().collect();
        sorted.sort_unstable();
        let key = StateKey {
            model,
            cpu,
            // The paper's measure ignores memory: more memo hits.
            mem: if self.measure == Measure::Paper {
                0
            } else {
                mem
            },
            gpus: sorted,
        };
        if let Some(&v) = self.memo.get(&key) {
            return v;
        }
        let node = NodeFree {
            model,
            cpu,
            mem,
            gpus: &key.gpus,
        };
        let mut v = expected_fragmentation(self.measure, &self.kinds, &node);
        if self.measure == Measure::Haneul && self.tuning.cpu_fill_pct > 0 {
            v += starved_milli(&node, self.cpu_per_milli, self.mem_per_milli)
                * self.tuning.cpu_fill_pct as f64
                / 100.0;
        }
        if self.memo.len() >= MEMO_LIMIT {
            self.memo.clear();
        }
        self.memo.insert(key, v);
        v
    }
}

fn normalise(mut kinds: Vec<(TaskKind, f64)>, keep: usize) -> Vec<(TaskKind, f64)> {
    kinds.retain(|(_, w)| *w > 0.0 && w.is_finite());
    kinds.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    kinds.truncate(keep);
    let total: f64 = kinds.iter().map(|(_, w)| w).sum();
    if total > 0.0 {
        for (_, w) in &mut kinds {
            *w /= total;
        }
    }
    kinds
}

/// Whole GPUs are `FULL` milli each in a task kind.
pub(crate) fn kind_milli(whole: bool, fraction: u32) -> u16 {
    if whole { FULL } else { fraction as u16 }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(gpus: u8, milli: u16) -> TaskKind {
        TaskKind {
            gpus,
            milli,
            cpu: 0,
            mem: 0,
            models: u64::MAX,
        }
    }

    /// Plain popularity plus the whole-GPU weight, so the figures below are easy to follow.
    fn tuning() -> FragTuning {
        FragTuning {
            request_weight_pct: 0,
            whole_gpu_weight_pct: 40,
            ..FragTuning::default()
        }
    }

    fn haneul(kinds: Vec<(TaskKind, f64)>) -> FragModel {
        let mut f = FragModel::new(Measure::Haneul, tuning(), vec![8]);
        f.set_fixed(kinds);
        f
    }

    #[test]
    fn half_used_gpus_are_fragments_for_whole_gpu_work() {
        let mut f = haneul(vec![(kind(1, 1000), 1.0)]);
        // Two GPUs: one full free, one with 500 free. A whole-GPU task can use only the first.
        assert_eq!(f.node_frag(0, 10, 10, &[1000, 500]), 500.0);
        // Nothing fits: all free capacity is fragmented.
        assert_eq!(f.node_frag(0, 10, 10, &[500, 500]), 1000.0);
    }

    #[test]
    fn the_measure_weights_kinds_by_popularity() {
        let mut f = haneul(vec![(kind(1, 1000), 1.0), (kind(1, 500), 3.0)]);
        // [1000, 300]: whole-GPU kind wastes 300, half-GPU kind wastes 300 too.
        assert!((f.node_frag(0, 0, 0, &[1000, 300]) - 300.0).abs() < 1e-9);
        // [600, 600]: whole-GPU kind wastes 1200, half-GPU kind wastes nothing. The whole-GPU
        // kind weighs 1.4 against 3.
        let expected = 1200.0 * 1.4 / 4.4;
        assert!((f.node_frag(0, 0, 0, &[600, 600]) - expected).abs() < 1e-9);
    }

    #[test]
    fn the_paper_counts_free_gpus_as_fragments_for_cpu_only_work_and_ignores_memory() {
        let cpu_only = TaskKind {
            cpu: 4,
            mem: 1 << 30,
            ..kind(0, 0)
        };
        let node = NodeFree {
            model: 0,
            cpu: 8,
            mem: 1,
            gpus: &[1000, 250],
        };
        assert_eq!(kind_fragment(Measure::Paper, &cpu_only, &node), 1250);
        // Haneul: it does not fit (memory), so all is fragment; with memory it would be none.
        assert_eq!(kind_fragment(Measure::Haneul, &cpu_only, &node), 1250);
        let roomy = NodeFree {
            mem: 1 << 31,
            ..node
        };
        assert_eq!(kind_fragment(Measure::Haneul, &cpu_only, &roomy), 0);
        let big_mem_gpu = TaskKind {
            mem: 1 << 30,
            ..kind(1, 500)
        };
        // The paper: it fits (memory is not looked at); the 250 left on the second GPU is too
        // little for it.
        assert_eq!(kind_fragment(Measure::Paper, &big_mem_gpu, &node), 250);
        assert_eq!(kind_fragment(Measure::Haneul, &big_mem_gpu, &node), 1250);
    }

    #[test]
    fn the_paper_keeps_the_kinds_that_cover_95_percent() {
        let counts: Vec<(TaskKind, f64)> = (1..=20u16).map(|m| (kind(1, m * 10), 1.0)).collect();
        let mut heavy = counts.clone();
        heavy.push((kind(1, 1000), 80.0));
        // 100 tasks: the whole-GPU kind (80) and 15 of the others reach 95.
        let kinds = paper_kinds(heavy);
        assert_eq!(kinds.len(), 16);
        assert_eq!(kinds[0].0, kind(1, 1000));
        assert!((kinds.iter().map(|(_, w)| w).sum::<f64>() - 1.0).abs() < 1e-12);
    }

    #[test]
    fn the_paper_score_is_a_truncated_sigmoid() {
        assert_eq!(paper_score(0.0, 0.0), 50);
        assert_eq!(paper_score(0.0, 1000.0), 26);
        assert_eq!(paper_score(1000.0, 0.0), 73);
    }

    #[test]
    fn cpu_only_kinds_count_their_share_of_their_popularity() {
        let cpu = TaskKind {
            cpu: 4,
            ..kind(0, 0)
        };
        let counts = vec![(kind(1, 1000), 3.0), (cpu, 1.0)];
        let weights = |pct| {
            let t = FragTuning {
                request_weight_pct: 0,
                cpu_kind_weight_pct: pct,
                ..FragTuning::default()
            };
            haneul_kinds(counts.clone(), &[8], &t)
        };
        let quarter = weights(25);
        let w = |kinds: &[(TaskKind, f64)], k: TaskKind| {
            kinds.iter().find(|(x, _)| *x == k).map_or(0.0, |(_, w)| *w)
        };
        assert!((w(&quarter, cpu) - 0.25 / 3.25).abs() < 1e-12);
        assert!((w(&quarter, kind(1, 1000)) - 3.0 / 3.25).abs() < 1e-12);
        // At 0 the CPU-only kind leaves the measure altogether.
        let none = weights(0);
        assert_eq!(none.len(), 1);
        assert!((w(&none, kind(1, 1000)) - 1.0).abs() < 1e-12);
    }

    #[test]
    fn the_request_blend_weighs_a_kind_between_its_count_and_its_request() {
        let cpu = TaskKind {
            cpu: 4,
            ..kind(0, 0)
        };
        let counts = vec![(kind(1, 250), 3.0), (kind(2, 1000), 1.0), (cpu, 4.0)];
        let blended = |pct| {
            let t = FragTuning {
                request_weight_pct: pct,
                request_fade_pct: 0,
                whole_gpu_weight_pct: 0,
                cpu_kind_weight_pct: 100,
                ..FragTuning::default()
            };
            let kinds = haneul_kinds(counts.clone(), &[8], &t);
            let w = |k: TaskKind| kinds.iter().find(|(x, _)| *x == k).unwrap().1;
            (w(kind(1, 250)), w(kind(2, 1000)), w(cpu))
        };
        // GPU pods: 3 quarter-GPU (750 milli in all) and 1 two-GPU (2000): by count 3:1, by
        // request 750:2000 of the GPU kinds' 4 tasks; CPU-only keeps its 4 of 8 either way.
        let (q, two, c) = blended(0);
        assert!((q - 3.0 / 8.0).abs() < 1e-12 && (two - 1.0 / 8.0).abs() < 1e-12);
        assert!((c - 0.5).abs() < 1e-12);
        let (q, two, c) = blended(100);
        assert!((q - 4.0 * 750.0 / 2750.0 / 8.0).abs() < 1e-12, "{q}");
        assert!((two - 4.0 * 2000.0 / 2750.0 / 8.0).abs() < 1e-12, "{two}");
        assert!((c - 0.5).abs() < 1e-12);
        let (q, two, _) = blended(50);
        assert!((q - (3.0 / 8.0 + 4.0 * 750.0 / 2750.0 / 8.0) / 2.0).abs() < 1e-12);
        assert!((two - (1.0 / 8.0 + 4.0 * 2000.0 / 2750.0 / 8.0) / 2.0).abs() < 1e-12);
    }

    #[test]
    fn the_request_share_fades_as_multi_gpu_work_grows() {
        let t = FragTuning {
            request_weight_pct: 50,
            request_fade_pct: 200,
            ..FragTuning::default()
        };
        // No multi-GPU work: the blend is whole; a quarter of the request: halved; half: gone.
        assert!((request_blend(&t, 0.0, 8000.0) - 0.5).abs() < 1e-12);
        assert!((request_blend(&t, 2000.0, 8000.0) - 0.25).abs() < 1e-12);
        assert_eq!(request_blend(&t, 4000.0, 8000.0), 0.0);
        assert_eq!(request_blend(&t, 8000.0, 8000.0), 0.0);
        let off = FragTuning {
            request_fade_pct: 0,
            ..t
        };
        assert!((request_blend(&off, 8000.0, 8000.0) - 0.5).abs() < 1e-12);
        // In the kind list: 3 quarter-GPU tasks and 1 two-GPU task, whose 2000 milli are 73% of
        // the request, so the weights are plain popularity; with few two-GPU tasks the larger
        // kind weighs more per task than the smaller one.
        let counts = vec![(kind(1, 250), 3.0), (kind(2, 1000), 1.0)];
        let kinds = haneul_kinds(counts, &[8], &t);
        let w = |k: TaskKind| kinds.iter().find(|(x, _)| *x == k).unwrap().1;
        assert!((w(kind(1, 250)) - 0.75).abs() < 1e-12);
        let few = vec![(kind(1, 250), 30.0), (kind(2, 1000), 1.0)];
        let kinds = haneul_kinds(few, &[8], &t);
        let w = |k: TaskKind| kinds.iter().find(|(x, _)| *x == k).unwrap().1;
        assert!(w(kind(2, 1000)) > w(kind(1, 250)) / 30.0 * 1.5);
    }

    #[test]
    fn the_tie_tolerance_grows_with_the_sharing_share() {
        let t = FragTuning {
            tie_milli: 200,
            tie_from_pct: 60,
            tie_full_pct: 80,
            ..FragTuning::default()
        };
        // Sharing at most 60% of the GPU request: strict; 70%: half; 80% and more: all 200.
        assert_eq!(tie_tolerance(&t, 0.0, 8000.0), 0.0);
        assert_eq!(tie_tolerance(&t, 4800.0, 8000.0), 0.0);
        assert!((tie_tolerance(&t, 5600.0, 8000.0) - 100.0).abs() < 1e-9);
        assert!((tie_tolerance(&t, 6400.0, 8000.0) - 200.0).abs() < 1e-9);
        assert!((tie_tolerance(&t, 8000.0, 8000.0) - 200.0).abs() < 1e-9);
        assert_eq!(tie_tolerance(&t, 0.0, 0.0), 0.0);
        assert_eq!(tie_tolerance(&t, f64::NAN, 8000.0), 0.0);
        let never = FragTuning {
            tie_from_pct: 100,
            ..t
        };
        assert_eq!(tie_tolerance(&never, 8000.0, 8000.0), 0.0);
        // A step: full at once above 60%.
        let step = FragTuning {
            tie_full_pct: 50,
            ..t
        };
        assert_eq!(tie_tolerance(&step, 4800.0, 8000.0), 0.0);
        assert!((tie_tolerance(&step, 4900.0, 8000.0) - 200.0).abs() < 1e-9);
        // From the model's own mix: three quarter-GPU tasks and one whole GPU make 750 of
        // 1750 milli shared (43%), under 60%: strict. Only slices: the whole tolerance.
        let mut f = FragModel::new(Measure::Haneul, t, vec![8]);
        f.set_fixed(vec![(kind(1, 250), 3.0), (kind(1, 1000), 1.0)]);
        assert_eq!(f.tie_milli(), 0.0);
        f.set_fixed(vec![(kind(1, 250), 3.0), (kind(1, 500), 1.0)]);
        assert!((f.tie_milli() - 200.0).abs() < 1e-9);
        let mut learned = FragModel::new(Measure::Haneul, t, vec![8]);
        learned.observe(kind(1, 470), 20);
        learned.refresh();
        assert!((learned.tie_milli() - 200.0).abs() < 1e-9);
    }

    #[test]
    fn learned_weights_decay_by_half_life() {
        let tuning = FragTuning {
            learn_half_life: 10,
            ..tuning()
        };
        let mut f = FragModel::new(Measure::Haneul, tuning, vec![8]);
        f.observe(kind(1, 500), 10);
        f.observe(kind(1, 1000), 10);
        f.refresh();
        // The half-GPU kind arrived one half-life earlier: it weighs half of the whole-GPU
        // kind's raw count, then the whole-GPU kind gets its 1.4.
        let w: Vec<f64> = f.kinds.iter().map(|(_, w)| *w).collect();
        assert!((w[0] / w[1] - 2.8).abs() < 1e-9, "{w:?}");
    }

    #[test]
    fn starved_capacity_is_what_the_free_cpu_can_not_feed_at_the_mix_ratio() {
        let gpus = [FULL, FULL, FULL, FULL];
        let node = |cpu: u64, mem: u64| NodeFree {
            model: 0,
            cpu,
            mem,
            gpus: &gpus,
        };
        // 8 CPU per GPU (8 milli-CPU per milli-GPU): 32 CPU feed all four GPUs, 16 CPU two.
        assert_eq!(starved_milli(&node(32_000, 1 << 20), 8.0, 0.0), 0.0);
        assert_eq!(starved_milli(&node(16_000, 1 << 20), 8.0, 0.0), 2000.0);
        // Memory binds when it is the scarcer of the two.
        assert_eq!(starved_milli(&node(32_000, 1000), 8.0, 1.0), 3000.0);
        // A mix with no GPU work asks nothing of the CPU.
        assert_eq!(starved_milli(&node(0, 0), 0.0, 0.0), 0.0);
    }

    #[test]
    fn with_the_fill_a_cpu_task_beside_free_gpus_costs_what_it_starves() {
        // One whole-GPU kind at 8 CPU per GPU and a CPU-only kind of 16 CPU.
        let mut gpu_kind = kind(1, FULL);
        gpu_kind.cpu = 8_000;
        let mut cpu_kind = kind(0, 0);
        cpu_kind.cpu = 16_000;
        let kinds = vec![(gpu_kind, 3.0), (cpu_kind, 1.0)];
        let model = |cpu_fill_pct| {
            let tuning = FragTuning {
                cpu_fill_pct,
                ..FragTuning::default()
            };
            let mut f = FragModel::new(Measure::Haneul, tuning, vec![8]);
            f.set_fixed(kinds.clone());
            f
        };
        let free = [FULL; 4];
        // Taking 16 of a 40-CPU node's CPU leaves 24 for its four free GPUs, which need 32.
        let growth = |f: &mut FragModel| {
            f.node_frag(0, 24_000, 1 << 20, &free) - f.node_frag(0, 40_000, 1 << 20, &free)
        };
        // Without the fill every kind still fits: nothing is counted.
        assert_eq!(growth(&mut model(0)), 0.0);
        // With it, the GPU the remaining CPU can not feed is.
        assert_eq!(growth(&mut model(100)), 1000.0);
    }
}
