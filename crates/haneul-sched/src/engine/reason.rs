//! Pending reasons: why each queued job still waits after the last pass. The pass only marks the
//! jobs it tried and could not start, the shapes it closed and the head that stopped a strict
//! queue; everything else is read here from the state the pass left, on demand, so computing
//! reasons costs the pass nothing it would notice.

use super::*;
use crate::reason::{Candidate, Need, PendingReason, ReasonCode, Waiting};

/// What free capacity looks like to one task shape of one project's pools, per GPU model
/// (index `models.len()` stands for CPU-only work on any node).
#[derive(Debug, Clone, Default)]
struct Fit {
    per_model: Vec<ModelFit>,
}

#[derive(Debug, Clone, Default)]
struct ModelFit {
    /// Tasks that fit now on nodes that are up, at most the gang's size per node.
    slots: u64,
    /// Nodes with at least one slot, in fleet order (the first few).
    nodes: Vec<u32>,
    /// The node with the most fully free GPUs: (index, free GPUs).
    best: Option<(u32, u32)>,
    /// Tasks that would fit on an idle fleet: on up nodes, and on all nodes.
    empty_up: u64,
    empty_all: u64,
    /// Drained or down nodes that could hold a task when idle (the first few).
    unavailable: Vec<u32>,
}

/// Nodes a reason names at most.
const NAMED_NODES: usize = 8;

type FitKey = (u32, u16, u32, u64, u64, u64);

impl Engine {
    /// Why `job` waits, from the last pass; `None` when it is not queued.
    pub fn pending_reason(&self, job: JobId) -> Option<PendingReason> {
        let e = self.jobs.get(&job)?;
        if !matches!(e.run, Run::Queued { .. }) {
            return None;
        }
        let q = self.queue_of(e.project);
        let ahead = self.queues[q].all.range(..e.key).count() as u32;
        let mut memo = FxHashMap::default();
        Some(self.reason_of(e, ahead, &mut memo))
    }

    /// Every queued job's reason from the last pass, queue by queue in queue order.
    pub fn pending_reasons(&self) -> Vec<(JobId, PendingReason)> {
        let mut out = Vec::with_capacity(self.queued_len());
        self.each_pending_reason(|job, r| out.push((job, r)));
        out
    }

    /// Every queued job's reason from the last pass, handed to `f` one at a time in the order
    /// of [`Engine::pending_reasons`]: a caller that keeps them in a smaller form of its own
    /// need not hold the whole list as well.
    pub fn each_pending_reason(&self, mut f: impl FnMut(JobId, PendingReason)) {
        let mut memo = FxHashMap::default();
        for &q in &self.busy_queues {
            for (ahead, key) in self.queues[q].all.keys().enumerate() {
                let e = &self.jobs[&key.job];
                f(key.job, self.reason_of(e, ahead as u32, &mut memo));
            }
        }
    }

    /// How many queued jobs wait for each reason code, in code order: what the simulator's
    /// `--explain` integrates over time.
    pub fn pending_counts(&self) -> Vec<(ReasonCode, u64)> {
        let mut counts: BTreeMap<ReasonCode, u64> = BTreeMap::new();
        for (_, r) in self.pending_reasons() {
            *counts.entry(r.code()).or_default() += 1;
        }
        counts.into_iter().collect()
    }

    fn reason_of(
        &self,
        e: &JobEntry,
        ahead: u32,
        memo: &mut FxHashMap<FitKey, Fit>,
    ) -> PendingReason {
        let waiting = self.waiting_of(e, ahead, memo);
        PendingReason {
            at: self.now,
            waiting,
        }
    }

    fn waiting_of(&self, e: &JobEntry, ahead: u32, memo: &mut FxHashMap<FitKey, Fit>) -> Waiting {
        let job = e.id();
        if let Run::Queued { victims } = e.run
            && (victims > 0 || self.holds.contains_key(&job))
        {
            return Waiting::Reclaiming { victims };
        }
        // Quota first: no amount of free capacity helps a job its project may not run.
        // As a bit mask: this runs for every queued job, allocation-free.
        let ok = e
            .models
            .iter()
            .filter(|&m| self.mode(e, m).is_some())
            .fold(0u64, |mask, m| mask | 1 << m);
        if !e.models.is_empty() && ok == 0 {
            return self.quota_waiting(e, e.models.first().expect("checked not empty"));
        }
        let shape_closed = self.policy.skip_blocked
            && self
                .last_closed
                .get(e.shape as usize)
                .copied()
                .unwrap_or(false);
        // `tried` is 0 for a job no pass has tried; passes count from 1.
        let tried = e.tried != 0 && e.tried == self.passes;
        if !tried && !shape_closed {
            return Waiting::Priority {
                ahead,
                behind: self.last_head.filter(|&h| h != job),
                fair_share: self.policy.ordering == Ordering::FairShare,
            };
        }
        let fit = self.fit_for(e, memo);
        let buckets: Vec<usize> = if e.models.is_empty() {
            vec![self.cluster.models.len()]
        } else {
            (0..self.cluster.models.len())
                .filter(|m| ok & (1 << m) != 0)
                .collect()
        };
        let replicas = e.req.replicas as u64;
        let fits_now = buckets.iter().any(|&b| fit.per_model[b].slots >= replicas);
        if fits_now && let Some(w) = self.blocking_reservation(e, fit, &buckets) {
            return w;
        }
        if !fits_now
            && buckets
                .iter()
                .all(|&b| fit.per_model[b].empty_up < replicas)
            && let Some(&b) = buckets
                .iter()
                .find(|&&b| fit.per_model[b].empty_all >= replicas)
        {
            let nodes = fit.per_model[b]
                .unavailable
                .iter()
                .map(|&i| self.cluster.nodes[i as usize].id)
                .collect();
            return Waiting::NodesUnavailable { nodes };
        }
        self.resources_waiting(e, fit, &buckets)
    }

    fn quota_waiting(&self, e: &JobEntry, m: u8) -> Waiting {
        let p = &self.projects[e.project as usize];
        let model = self.cluster.models[m as usize].clone();
        let (used, guarantee) = (p.alloc[m as usize], p.guarantee[m as usize]);
        if !self.policy.borrowing || !e.preemptible {
            return Waiting::Guarantee {
                model,
                need_milli: e.total_milli(),
                used_milli: used,
                guarantee_milli: guarantee,
                could_borrow: self.policy.borrowing && !e.preemptible,
            };
        }
        Waiting::BorrowLimit {
            model,
            need_milli: e.total_milli(),
            used_milli: used,
            guarantee_milli: guarantee,
            limit_milli: p.borrow_limit[m as usize].unwrap_or(0),
        }
    }

    /// The reservation of another job that keeps `e` off GPUs it would fit on now: the first of
    /// the last pass's reservations on a node with room for it that starts before `e` would end.
    fn blocking_reservation(&self, e: &JobEntry, fit: &Fit, buckets: &[usize]) -> Option<Waiting> {
        let end_est = self.now + e.estimate();
        let (for_job, node, start_at) = self
            .last_reservations
            .iter()
            .filter(|(j, _, _)| {
                *j != e.id() && matches!(self.jobs.get(j).map(|x| &x.run), Some(Run::Queued { .. }))
            })
            .filter_map(|(j, n, _)| {
                let start = self
                    .last_reservation_starts
                    .iter()
                    .find(|(r, _)| r == j)
                    .map(|(_, t)| *t)?;
                Some((*j, *n, start))
            })
            .find(|(_, n, start)| {
                *start < end_est && buckets.iter().any(|&b| fit.per_model[b].nodes.contains(n))
            })?;
        let room = start_at.since(self.now);
        let backfill_within =
            (self.policy.backfill && self.policy.skip_blocked && room >= Span::from_mins(1))
                .then_some(room);
        Some(Waiting::Reservation {
            for_job,
            start_at,
            node: self.cluster.nodes[node as usize].id,
            backfill_within,
        })
    }

    fn resources_waiting(&self, e: &JobEntry, fit: &Fit, buckets: &[usize]) -> Waiting {
        let need = Need {
            replicas: e.req.replicas,
            gpus: e.req.gpus,
            milli: e.req.milli,
            models: if e.models.len() == self.cluster.models.len() {
                Vec::new()
            } else {
                e.models
                    .iter()
                    .map(|m| self.cluster.models[m as usize].clone())
                    .collect()
            },
        };
        let tasks_fit = buckets
            .iter()
            .map(|&b| fit.per_model[b].slots)
            .max()
            .unwrap_or(0)
            .min(e.req.replicas as u64) as u32;
        // The closest node: the most fully free GPUs among the models it may use.
        let best_node = buckets.iter().filter_map(|&b| fit.per_model[b].best).fold(
            None::<(u32, u32)>,
            |acc, x| match acc {
                Some(a) if a.1 > x.1 || (a.1 == x.1 && a.0 < x.0) => Some(a),
                _ => Some(x),
            },
        );
        let whole = e.req.milli >= FULL && e.req.gpus > 0;
        let best = best_node.filter(|_| whole).map(|(idx, free)| Candidate {
            node: self.cluster.nodes[idx as usize].id,
            free_gpus: free,
            short_gpus: e.req.gpus.saturating_sub(free),
        });
        let smaller = if e.req.replicas > 1 {
            (tasks_fit > 0).then_some(tasks_fit)
        } else if whole && e.req.gpus > 1 {
            best_node.and_then(|(idx, _)| self.largest_task_on(e, idx))
        } else {
            None
        };
        let reserved_from = self
            .last_reservation_starts
            .iter()
            .find(|(j, _)| *j == e.id())
            .map(|(_, t)| *t);
        // Another model, not allowed by the job, with room for the whole gang and quota for it.
        let other_model = if e.models.is_empty() {
            None
        } else {
            (0..self.cluster.models.len() as u8)
                .filter(|&m| !e.models.contains(m))
                .find(|&m| {
                    self.mode(e, m).is_some()
                        && fit.per_model[m as usize].slots >= e.req.replicas as u64
                })
                .map(|m| self.cluster.models[m as usize].clone())
        };
        Waiting::Resources {
            need,
            tasks_fit,
            best,
            reserved_from,
            smaller,
            other_model,
        }
    }

    /// The most GPUs per task, fewer than asked, that one task of `e` could have on node `idx`
    /// now.
    fn largest_task_on(&self, e: &JobEntry, idx: u32) -> Option<u32> {
        let pools = &self.projects[e.project as usize].pools;
        let ctx = PlaceCtx {
            max_scored: self.policy.max_scored_nodes,
            job: e.id(),
            pools,
            exclusions: None,
            keep_whole: false,
            ends: None,
        };
        let view = EvictionView::new(&self.cluster.nodes[idx as usize], idx, &ctx)?;
        (1..e.req.gpus).rev().find(|&g| {
            view.slots(&TaskReq {
                gpus: g,
                replicas: 1,
                ..e.req
            }) > 0
        })
    }

    /// Free capacity as `e`'s shape and pools see it, memoised per shape and pools within one
    /// call, so a long queue costs one walk of the fleet per distinct shape.
    fn fit_for<'m>(&self, e: &JobEntry, memo: &'m mut FxHashMap<FitKey, Fit>) -> &'m Fit {
        let p = &self.projects[e.project as usize];
        let key = (
            e.req.gpus,
            e.req.milli,
            e.req.replicas,
            e.req.cpu,
            e.req.mem,
            p.pool_sig,
        );
        memo.entry(key).or_insert_with(|| {
            let ctx = PlaceCtx {
                max_scored: self.policy.max_scored_nodes,
                job: JobId(u64::MAX),
                pools: &p.pools,
                exclusions: None,
                keep_whole: false,
                ends: None,
            };
            let n_models = self.cluster.models.len();
            let mut fit = Fit {
                per_model: vec![ModelFit::default(); n_models + 1],
            };
            for (idx, n) in self.cluster.nodes.iter().enumerate() {
                let idx = idx as u32;
                let bucket = match (e.req.gpus, n.model) {
                    (0, _) => n_models,
                    (_, Some(m)) => m as usize,
                    (_, None) => continue,
                };
                if !p.pools.get(n.pool as usize).copied().unwrap_or(false) {
                    continue;
                }
                let f = &mut fit.per_model[bucket];
                let empty = node_capacity(n, &e.req).min(e.req.replicas as u64);
                f.empty_all += empty;
                if n.state == NodeState::Up {
                    f.empty_up += empty;
                } else if empty > 0 && f.unavailable.len() < NAMED_NODES {
                    f.unavailable.push(idx);
                }
                let Some(view) = EvictionView::new(n, idx, &ctx) else {
                    continue;
                };
                let slots = view.slots(&e.req) as u64;
                f.slots += slots;
                if slots > 0 && f.nodes.len() < 64 {
                    f.nodes.push(idx);
                }
                let held: u64 = n.holds.iter().fold(0, |m, (_, r)| m | r.gpu_mask);
                let free = n
                    .gpu_free
                    .iter()
                    .enumerate()
                    .filter(|(g, f)| **f == FULL && held & (1 << g) == 0)
                    .count() as u32;
                if f.best.is_none_or(|(_, b)| free > b) {
                    f.best = Some((idx, free));
                }
            }
            fit
        })
    }
}

/// Tasks of `req` an idle node could hold, whatever its state.
pub(super) fn node_capacity(n: &crate::cluster::NodeSlot, req: &TaskReq) -> u64 {
    let mut s = u64::MAX;
    if let Some(per) = n.cpu_cap.checked_div(req.cpu) {
        s = s.min(per);
    }
    if let Some(per) = n.mem_cap.checked_div(req.mem) {
        s = s.min(per);
    }
    if req.gpus > 0 {
        let g = n.gpus() as u64;
        let per = if req.milli < FULL {
            g * (FULL / req.milli) as u64
        } else if req.gpus as usize <= n.domain as usize {
            (g / n.domain as u64) * (n.domain as u64 / req.gpus as u64)
        } else {
            g / req.gpus as u64
        };
        s = s.min(per);
    }
    s
}
