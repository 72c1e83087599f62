//! Queued jobs, ordered within a queue and indexed by gang shape, so that a pass can go straight to
//! the jobs that might fit in what is free.

use haneul_model::{JobId, PriorityClass, Time};
use rustc_hash::FxHashMap;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;

/// Position in a queue: higher priority class first, then older, then lower id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct OrderKey {
    pub rank: u8,
    pub submitted: Time,
    pub job: JobId,
}

impl OrderKey {
    pub fn new(priority: Option<PriorityClass>, submitted: Time, job: JobId) -> Self {
        // Lower rank sorts first: urgent 0 .. low 3; `None` (FIFO) ranks everything alike.
        let rank = match priority {
            None => 0,
            Some(PriorityClass::Urgent) => 0,
            Some(PriorityClass::High) => 1,
            Some(PriorityClass::Normal) => 2,
            Some(PriorityClass::Low) => 3,
        };
        OrderKey {
            rank,
            submitted,
            job,
        }
    }
}

/// The gang shape used to index the queue: what the capacity check looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct ShapeKey {
    pub gpus: u32,
    pub milli: u16,
    pub replicas: u32,
    pub models: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Shapes {
    index: FxHashMap<ShapeKey, u32>,
    pub keys: Vec<ShapeKey>,
}

impl Shapes {
    pub fn intern(&mut self, key: ShapeKey) -> u32 {
        if let Some(&id) = self.index.get(&key) {
            return id;
        }
        let id = self.keys.len() as u32;
        self.keys.push(key);
        self.index.insert(key, id);
        id
    }
}

#[derive(Debug, Default)]
pub(crate) struct Queue {
    /// Every queued job in queue order, with its shape: the reclaim scan reads the size and
    /// models of the first jobs from their shapes here, instead of from the job map, whose
    /// entries miss the cache once the queue holds a million jobs.
    pub all: BTreeMap<OrderKey, u32>,
    pub by_shape: BTreeMap<u32, BTreeSet<OrderKey>>,
    /// Queued jobs that need whole nodes, longest estimate (ms) first, then in queue order, and
    /// their estimated GPU-time (GPUs x ms) summed: the order and the depth test of
    /// `Policy::longest_first_alone`. Kept only while that rule is on.
    pub long: BTreeSet<(Reverse<i64>, OrderKey)>,
    pub long_work: i128,
}

impl Queue {
    pub fn insert(&mut self, key: OrderKey, shape: u32) {
        self.all.insert(key, shape);
        self.by_shape.entry(shape).or_default().insert(key);
    }

    pub fn remove(&mut self, key: &OrderKey, shape: u32) {
        self.all.remove(key);
        if let Some(set) = self.by_shape.get_mut(&shape) {
            set.remove(key);
            if set.is_empty() {
                self.by_shape.remove(&shape);
            }
        }
    }

    pub fn insert_long(&mut self, key: OrderKey, est_ms: i64, gpus: u64) {
        if self.long.insert((Reverse(est_ms), key)) {
            self.long_work += est_ms as i128 * gpus as i128;
        }
    }

    pub fn remove_long(&mut self, key: OrderKey, est_ms: i64, gpus: u64) {
        if self.long.remove(&(Reverse(est_ms), key)) {
            self.long_work -= est_ms as i128 * gpus as i128;
        }
    }

    pub fn len(&self) -> usize {
        self.all.len()
    }

    pub fn first(&self) -> Option<OrderKey> {
        self.all.keys().next().copied()
    }

    /// First key in queue order strictly after `after` (or the first key at all).
    pub fn first_after(&self, after: Option<OrderKey>) -> Option<OrderKey> {
        match after {
            None => self.first(),
            Some(k) => self
                .all
                .range((Bound::Excluded(k), Bound::Unbounded))
                .next()
                .map(|(k, _)| *k),
        }
    }
}

/// First key of `set` strictly after `after` (or the first key at all).
pub(crate) fn first_after(set: &BTreeSet<OrderKey>, after: Option<OrderKey>) -> Option<OrderKey> {
    match after {
        None => set.first().copied(),
        Some(k) => set
            .range((Bound::Excluded(k), Bound::Unbounded))
            .next()
            .copied(),
    }
}
