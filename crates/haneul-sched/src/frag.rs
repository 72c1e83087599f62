//! Expected fragmentation of a node under the centre's workload.
//!
//! For one kind of task, the fragment of a node is the free GPU capacity that kind can not use
//! there: everything free when the task can not fit at all (wrong model, too little CPU, memory or
//! GPU), otherwise the free share of GPUs too small for one of its GPUs. Weighting by how common
//! each kind is gives the node's expected fragmentation; placing a task where it grows the least
//! keeps capacity usable for what will arrive (the measure of Weng et al., ATC 2023).
//!
//! The workload is learned from submissions (decayed, so it follows changes) unless the driver
//! supplies it. Values are memoised by node state, which repeats a great deal across a fleet.

use crate::cluster::{FULL, GpuVec};
use rustc_hash::FxHashMap;

/// One kind of task as the fragmentation measure sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TaskKind {
    /// GPUs per task; 0 for CPU-only tasks.
    pub gpus: u8,
    /// Milli-GPU per GPU: 1000 for whole GPUs, less for a shared GPU.
    pub milli: u16,
    pub cpu: u64,
    pub mem: u64,
    /// Allowed GPU models as a bit set over the engine's model table; `u64::MAX` for any.
    pub models: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct StateKey {
    model: u8,
    cpu: u64,
    mem: u64,
    gpus: GpuVec,
}

/// Most task kinds kept in the measure; the long tail adds cost and little signal.
const MAX_KINDS: usize = 256;
/// Extra weight per GPU of a whole-GPU kind; see [`FragModel::weigh`].
const WHOLE_GPU_WEIGHT: f64 = 0.4;
/// Submissions (tasks) after which a learned kind's weight halves.
const LEARN_HALF_LIFE: f64 = 20_000.0;
const MEMO_LIMIT: usize = 1 << 20;

#[derive(Debug, Clone, Default)]
pub(crate) struct FragModel {
    kinds: Vec<(TaskKind, f64)>,
    /// GPUs per model in the fleet, to weigh kinds restricted to few models.
    capacity: Vec<u64>,
    learned: FxHashMap<TaskKind, f64>,
    learned_total: f64,
    pending: u64,
    fixed: bool,
    memo: FxHashMap<StateKey, f64>,
}

impl FragModel {
    /// Uses this distribution from now on instead of learning one.
    pub fn set_capacity(&mut self, capacity: Vec<u64>) {
        self.capacity = capacity;
    }

    /// Weighs each kind by more than how often it arrives:
    /// - whole-GPU kinds by their size (`1 + WHOLE_GPU_WEIGHT x GPUs`), since stranding a
    ///   multi-GPU task's capacity wastes more than a small one's;
    /// - kinds restricted to some models by how scarce those are (fleet GPUs over the GPUs the kind
    ///   may use), so capacity that only a few kinds can use is kept for them.
    fn weigh(&self, mut kinds: Vec<(TaskKind, f64)>) -> Vec<(TaskKind, f64)> {
        let total: u64 = self.capacity.iter().sum();
        for (k, w) in &mut kinds {
            if k.gpus == 0 {
                continue;
            }
            if k.milli == FULL {
                *w *= 1.0 + WHOLE_GPU_WEIGHT * k.gpus as f64;
            }
            let usable: u64 = self
                .capacity
                .iter()
                .enumerate()
                .filter(|(m, _)| k.models & (1u64 << m) != 0)
                .map(|(_, c)| c)
                .sum();
            if usable > 0 && total > 0 {
                *w *= total as f64 / usable as f64;
            }
        }
        kinds
    }

    pub fn set_fixed(&mut self, kinds: Vec<(TaskKind, f64)>) {
        self.fixed = true;
        let kinds = self.weigh(kinds);
        self.kinds = normalise(kinds);
        self.memo.clear();
    }

    pub fn observe(&mut self, kind: TaskKind, tasks: u32) {
        if self.fixed {
            return;
        }
        let decay = 0.5f64.powf(tasks as f64 / LEARN_HALF_LIFE);
        if decay < 1.0 && self.learned_total > 1e6 {
            for w in self.learned.values_mut() {
                *w *= decay;
            }
            self.learned_total *= decay;
        }
        *self.learned.entry(kind).or_insert(0.0) += tasks as f64;
        self.learned_total += tasks as f64;
        self.pending += tasks as u64;
    }

    /// Rebuilds the kind list from what was learned when enough has changed since the last time.
    pub fn refresh(&mut self) {
        if self.fixed || self.pending == 0 {
            return;
        }
        let threshold = (self.learned_total * 0.02).max(16.0) as u64;
        if !self.kinds.is_empty() && self.pending < threshold {
            return;
        }
        self.pending = 0;
        let kinds: Vec<(TaskKind, f64)> = self.learned.iter().map(|(k, w)| (*k, *w)).collect();
        let kinds = self.weigh(kinds);
        self.kinds = normalise(kinds);
        self.memo.clear();
    }

    pub fn is_empty(&self) -> bool {
        self.kinds.is_empty()
    }

    /// Expected fragmented milli-GPU of a node in the given state.
    pub fn node_frag(&mut self, model: u8, cpu: u64, mem: u64, gpus: &[u16]) -> f64 {
        let mut sorted: GpuVec = gpus.iter().copied().collect();
        sorted.sort_unstable();
        let key = StateKey {
            model,
            cpu,
            mem,
            gpus: sorted,
        };
        if let Some(&v) = self.memo.get(&key) {
            return v;
        }
        let v = frag_of(&self.kinds, &key);
        if self.memo.len() >= MEMO_LIMIT {
            self.memo.clear();
        }
        self.memo.insert(key, v);
        v
    }
}

fn normalise(mut kinds: Vec<(TaskKind, f64)>) -> Vec<(TaskKind, f64)> {
    kinds.retain(|(_, w)| *w > 0.0 && w.is_finite());
    kinds.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    kinds.truncate(MAX_KINDS);
    let total: f64 = kinds.iter().map(|(_, w)| w).sum();
    if total > 0.0 {
        for (_, w) in &mut kinds {
            *w /= total;
        }
    }
    kinds
}

fn frag_of(kinds: &[(TaskKind, f64)], s: &StateKey) -> f64 {
    let total: u64 = s.gpus.iter().map(|&g| g as u64).sum();
    if total == 0 {
        return 0.0;
    }
    let mut frag = 0.0;
    for (k, p) in kinds {
        let unusable = if k.cpu > s.cpu || k.mem > s.mem {
            total
        } else if k.gpus == 0 {
            0
        } else if k.models & (1u64 << s.model) == 0 {
            total
        } else {
            // `gpus` is sorted ascending: the usable GPUs are a suffix.
            let first_usable = s.gpus.partition_point(|&g| g < k.milli);
            let usable = s.gpus.len() - first_usable;
            if usable >= k.gpus as usize {
                s.gpus[..first_usable].iter().map(|&g| g as u64).sum()
            } else {
                total
            }
        };
        frag += p * unusable as f64;
    }
    frag
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

    #[test]
    fn half_used_gpus_are_fragments_for_whole_gpu_work() {
        let mut f = FragModel::default();
        f.set_fixed(vec![(kind(1, 1000), 1.0)]);
        // Two GPUs: one full free, one with 500 free. A whole-GPU task can use only the first.
        assert_eq!(f.node_frag(0, 10, 10, &[1000, 500]), 500.0);
        // Nothing fits: all free capacity is fragmented.
        assert_eq!(f.node_frag(0, 10, 10, &[500, 500]), 1000.0);
    }

    #[test]
    fn the_measure_weights_kinds_by_popularity() {
        let mut f = FragModel::default();
        f.set_fixed(vec![(kind(1, 1000), 1.0), (kind(1, 500), 3.0)]);
        // [1000, 300]: whole-GPU kind wastes 300, half-GPU kind wastes 300 too.
        assert!((f.node_frag(0, 0, 0, &[1000, 300]) - 300.0).abs() < 1e-9);
        // [600, 600]: whole-GPU kind wastes 1200, half-GPU kind wastes nothing. The whole-GPU
        // kind weighs 1.4 against 3.
        let expected = 1200.0 * 1.4 / 4.4;
        assert!((f.node_frag(0, 0, 0, &[600, 600]) - expected).abs() < 1e-9);
    }
}
