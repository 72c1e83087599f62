//! Why GPUs stand idle: a snapshot of the free capacity of nodes that are up, split by what keeps
//! each free GPU share from the waiting work. Drivers integrate it over time (the simulator's
//! `--explain`); the engine only reads its own state, the last pass's reservations included.

use super::*;

/// Free milli-GPU of nodes that are up, by cause, at one instant. The causes partition the free
/// capacity: their sum is the fleet's free milli-GPU on up nodes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct IdleCauses {
    /// Held for a blocked job's reservation (the last pass's plans): a gang draining nodes.
    pub reserved: u64,
    /// Held for a job whose preemption victims are stopping (their grace period).
    pub reclaim_hold: u64,
    /// A waiting job fits here on a model its project may use, but its quota or borrowing limit
    /// forbids it (or it is not preemptible above its guarantee).
    pub quota: u64,
    /// A waiting job (its whole gang) fits now within its quota, and one of its tasks fits
    /// here, yet the pass did not start it: ordering (a blocked head in strict FIFO), the
    /// backfill window, or a reservation its run would overlap on other nodes.
    pub not_started: u64,
    /// Jobs wait, but none can use what is free on this node (too small a share left, wrong
    /// model or pool, CPU or memory used up, or a gang that needs more than is free anywhere).
    pub fragmentation: u64,
    /// Nothing waits that needs a GPU.
    pub no_demand: u64,
}

impl IdleCauses {
    pub fn total(&self) -> u64 {
        self.reserved
            + self.reclaim_hold
            + self.quota
            + self.not_started
            + self.fragmentation
            + self.no_demand
    }
}

/// A kind of waiting task, with the GPU models its project may and may not use now.
struct Want {
    req: TaskReq,
    project: u32,
    /// Models the job may run on within its quota and that could hold the whole gang now.
    ok: u64,
    /// Models its quota or borrowing limit forbids.
    blocked: u64,
}

/// Queued jobs of one shape looked at per queue: enough to see each project and size there
/// without walking a deep queue at every instant.
const EXPLAIN_SCAN: usize = 32;

impl Engine {
    /// Splits the free GPU capacity of up nodes by cause, from the queue, quotas, holds and the
    /// last pass's reservations. Read-only; cost is one walk of the nodes times the kinds of
    /// waiting task.
    pub fn idle_causes(&self) -> IdleCauses {
        let mut out = IdleCauses::default();
        let mut wants: Vec<Want> = Vec::new();
        // Some job needs a GPU, even if none fits anywhere now.
        let mut demand = false;
        let mut seen: BTreeSet<(u32, u64, u64, u64, u64, u64)> = BTreeSet::new();
        for &q in &self.busy_queues {
            for set in self.queues[q].by_shape.values() {
                for key in set.iter().take(EXPLAIN_SCAN) {
                    let e = &self.jobs[&key.job];
                    if e.models.is_empty() {
                        continue;
                    }
                    demand = true;
                    let (mut ok, mut blocked) = (0u64, 0u64);
                    for m in e.models.iter() {
                        match self.mode(e, m) {
                            Some(_) if self.may_fit_now(&e.req, m) => ok |= 1 << m,
                            Some(_) => {}
                            None => blocked |= 1 << m,
                        }
                    }
                    let sig = self.projects[e.project as usize].pool_sig;
                    if seen.insert((e.shape, e.req.cpu, e.req.mem, sig, ok, blocked))
                        && (ok | blocked) != 0
                    {
                        wants.push(Want {
                            req: e.req,
                            project: e.project,
                            ok,
                            blocked,
                        });
                    }
                }
            }
        }
        let mut reserved: FxHashMap<u32, Reserved> = FxHashMap::default();
        // A reservation lasts until its job starts or leaves the queue.
        let live = self.last_reservations.iter().filter(|(j, _, _)| {
            matches!(self.jobs.get(j).map(|e| &e.run), Some(Run::Queued { .. }))
        });
        for (_, node, r) in live {
            let x = reserved.entry(*node).or_default();
            x.gpu_mask |= r.gpu_mask;
            x.cpu += r.cpu;
            x.mem += r.mem;
        }
        for (idx, n) in self.cluster.nodes.iter().enumerate() {
            let Some(model) = n.model else { continue };
            if n.state != NodeState::Up {
                continue;
            }
            let free = n.free_milli();
            if free == 0 {
                continue;
            }
            let mut taken = 0u64;
            for (_, r) in &n.holds {
                taken |= r.gpu_mask;
            }
            let in_mask = |mask: u64| -> u64 {
                n.gpu_free
                    .iter()
                    .enumerate()
                    .filter(|(g, _)| mask & (1 << g) != 0)
                    .map(|(_, &f)| f as u64)
                    .sum()
            };
            let held = in_mask(taken);
            out.reclaim_hold += held;
            let res = reserved
                .get(&(idx as u32))
                .map_or(0, |r| r.gpu_mask & !taken);
            let res_milli = in_mask(res);
            out.reserved += res_milli;
            let rest = free - held - res_milli;
            if rest == 0 {
                continue;
            }
            if !demand {
                out.no_demand += rest;
                continue;
            }
            let excl: Exclusions = reserved
                .get(&(idx as u32))
                .map(|r| (idx as u32, *r))
                .into_iter()
                .collect();
            let fits = |w: &Want| -> bool {
                let ctx = PlaceCtx {
                    max_scored: self.policy.max_scored_nodes,
                    job: JobId(u64::MAX),
                    pools: &self.projects[w.project as usize].pools,
                    exclusions: Some(&excl),
                    keep_whole: false,
                    ends: None,
                };
                EvictionView::new(n, idx as u32, &ctx).is_some_and(|v| {
                    let one = TaskReq {
                        replicas: 1,
                        ..w.req
                    };
                    v.slots(&one) >= 1
                })
            };
            let bit = 1u64 << model;
            if wants.iter().any(|w| w.ok & bit != 0 && fits(w)) {
                out.not_started += rest;
            } else if wants.iter().any(|w| w.blocked & bit != 0 && fits(w)) {
                out.quota += rest;
            } else {
                out.fragmentation += rest;
            }
        }
        out
    }
}
