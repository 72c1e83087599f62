//! Preemption planning: which borrowed work to stop so that a job within its guarantee fits.
//!
//! The rule (kept whole in the tests as `choose_victims_by_walk`, the oracle): victims are the
//! preemptible jobs of other projects running above their guarantee on the model. Each node is
//! priced by the work its evictions would lose (lowest priority first, then least work lost),
//! nodes are visited in fleet order, and the cheapest offers per task slot are taken until the
//! gang fits; a single task keeps only offers cheaper than every node before them.
//!
//! Walking the fleet made a plan cost every node and every running job (4 ms at 100,000 GPUs).
//! Instead the engine keeps its preemptible running work per model in order of work lost
//! (`Engine::preemptible`), and a plan reads it cheapest first: a node whose cheapest work
//! already loses more than the best offer found can not beat it, so the reading stops there.
//! Nodes with room before any eviction come from the cluster's node groups. A plan so costs the
//! preemptible work cheaper than its answer, not the fleet, and chooses the same victims.

use super::*;
use crate::cluster::{GpuVec, NodeSig};
use crate::placement::sig_slots;
use rustc_hash::FxHashSet;

/// What a plan for one job on one model needs at hand.
struct PlanCtx<'a> {
    beneficiary: u32,
    model: u8,
    req: TaskReq,
    single: bool,
    /// Per project: runs above its guarantee on the model, so its work may be taken.
    borrowing: Vec<bool>,
    place: PlaceCtx<'a>,
}

/// What evicting on one node offers.
struct NodeOffer {
    node: u32,
    /// Work lost by the first victim in eviction order.
    first: u64,
    /// Task slots free before any eviction.
    base: u32,
    cost: u64,
    slots: u32,
    victims: SmallVec<[JobId; 4]>,
}

impl NodeOffer {
    /// What the fleet-order walk compares with the cheapest offer before this node, for a
    /// single task: the cost, but for a node with room already, its first victim's loss (such a
    /// node ends the walk's offers when that is cheaper).
    fn key(&self) -> u64 {
        if self.base > 0 { self.first } else { self.cost }
    }
}

/// Offers in the order the greedy takes them: cheapest work lost per slot, then node.
struct ByRatio(NodeOffer);

impl PartialEq for ByRatio {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == std::cmp::Ordering::Equal
    }
}
impl Eq for ByRatio {}
impl PartialOrd for ByRatio {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for ByRatio {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        let (a, b) = (&self.0, &other.0);
        let lhs = a.cost as u128 * b.slots as u128;
        let rhs = b.cost as u128 * a.slots as u128;
        lhs.cmp(&rhs).then(a.node.cmp(&b.node))
    }
}

/// Preemptible running work of one model, cheapest loss first and, among equal losses, by the
/// lowest node each job runs on: a merge of the per-size lists, each already in that order.
struct ByLoss<'a> {
    now: Time,
    lists: Vec<(u64, std::collections::btree_set::Iter<'a, WorkKey>)>,
    heads: BinaryHeap<Reverse<(u64, u32, usize, JobId)>>,
}

impl<'a> ByLoss<'a> {
    fn new(engine: &'a Engine, model: u8) -> Self {
        let mut lists: Vec<_> = engine.preemptible[model as usize]
            .iter()
            .map(|(&milli, set)| (milli, set.iter()))
            .collect();
        let now = engine.now;
        let mut heads = BinaryHeap::with_capacity(lists.len());
        for (i, (milli, it)) in lists.iter_mut().enumerate() {
            if let Some(&(Reverse(started), node, job)) = it.next() {
                heads.push(Reverse((lost(now, started, *milli), node, i, job)));
            }
        }
        ByLoss { now, lists, heads }
    }

    /// The loss of the next job, which no later one undercuts.
    fn peek(&self) -> Option<u64> {
        self.heads.peek().map(|Reverse((l, ..))| *l)
    }
}

impl Iterator for ByLoss<'_> {
    /// Work lost, the job's lowest node, the job.
    type Item = (u64, u32, JobId);
    fn next(&mut self) -> Option<(u64, u32, JobId)> {
        let Reverse((l, node, i, job)) = self.heads.pop()?;
        let (milli, it) = &mut self.lists[i];
        if let Some(&(Reverse(started), n, next)) = it.next() {
            self.heads
                .push(Reverse((lost(self.now, started, *milli), n, i, next)));
        }
        Some((l, node, job))
    }
}

/// Work a running job loses when stopped now: its GPU-milliseconds so far.
fn lost(now: Time, started: Time, milli: u64) -> u64 {
    now.since(started).0.max(0) as u64 * milli
}

impl Engine {
    /// Chooses borrowed work to stop so that `job`, within its guarantee on `model`, fits.
    pub(super) fn plan_preemption(&mut self, job: JobId, model: u8) -> Option<Vec<Preemption>> {
        let mut victims = self.choose_victims(job, model)?;
        let e = &self.jobs[&job];
        let req = e.req;
        let pools = self.projects[e.project as usize].pools.clone();
        let ctx = PlaceCtx {
            max_scored: self.policy.max_scored_nodes,
            job,
            pools: &pools,
            exclusions: None,
            keep_whole: false,
            ends: None,
        };
        // Release the victims on the live cluster to place the job, then put them back.
        let mut log: Vec<Change> = Vec::new();
        for j in &victims {
            let v = &self.jobs[j];
            if let Some(Running { tasks, .. }) = v.run.running() {
                for t in tasks {
                    log.push(Change {
                        allocate: false,
                        node: t.node,
                        gpus: t.gpus.clone(),
                        milli: t.milli,
                        cpu: v.req.cpu,
                        mem: v.req.mem,
                    });
                }
            }
        }
        for change in &log {
            change.apply(&mut self.cluster, false);
        }
        let placed = place(
            &self.cluster,
            &[model],
            &req,
            &ctx,
            self.policy.placement,
            &mut self.frag,
        );
        for change in log.iter().rev() {
            change.apply(&mut self.cluster, true);
        }
        let (_, planned) = placed?;
        // Victims whose resources the plan does not touch keep running.
        let used: BTreeSet<u32> = planned.iter().map(|t| t.node).collect();
        victims.retain(|j| match &self.jobs[j].run {
            Run::Running(r) => r.tasks.iter().any(|t| used.contains(&t.node)),
            Run::Queued { .. } => false,
        });
        if victims.is_empty() {
            return None;
        }
        let mut out = Vec::with_capacity(victims.len());
        let mut latest = self.now;
        for v in &victims {
            let ve = self.jobs.get_mut(v).expect("victim exists");
            let kill_at = self.now + ve.grace;
            latest = latest.max(kill_at);
            let milli = ve.total_milli();
            let mut stopping = None;
            if let Some(Running {
                preempting,
                started,
                model,
                tasks,
                ..
            }) = ve.run.running_mut()
            {
                *preempting = Some((kill_at, job));
                stopping = Some((*model, (Reverse(*started), first_node(tasks), *v)));
            }
            // Work already stopping is no longer a victim for other plans.
            if let Some((m, key)) = stopping {
                self.unindex_preemptible(m, milli, key);
                self.stopping.insert(*v, kill_at);
            }
            out.push(Preemption {
                victim: *v,
                for_job: job,
                kill_at,
            });
        }
        if let Some(b) = self.jobs.get_mut(&job) {
            b.run = Run::Queued {
                victims: victims.len() as u32,
            };
        }
        // Hold exactly what the plan uses, so other reclaims can still use the rest of a node.
        let mut held: BTreeMap<u32, Reserved> = BTreeMap::new();
        for t in &planned {
            let r = held.entry(t.node).or_default();
            for &g in &t.gpus {
                r.gpu_mask |= 1 << g;
            }
            r.cpu += req.cpu;
            r.mem += req.mem;
        }
        for (&node, &r) in &held {
            self.cluster.add_hold(node, job, r);
        }
        let held: Vec<u32> = held.into_keys().collect();
        self.holds.insert(job, (held, latest + Span::from_mins(5)));
        Some(out)
    }

    /// The victims the plan would stop, before checking that the job then fits: what the walk
    /// over every node of the model in fleet order chooses, found from the preemptible index.
    fn choose_victims(&self, job: JobId, model: u8) -> Option<Vec<JobId>> {
        let e = &self.jobs[&job];
        let pools = &self.projects[e.project as usize].pools;
        let p = PlanCtx {
            beneficiary: e.project,
            model,
            req: e.req,
            single: e.req.replicas == 1,
            borrowing: self
                .projects
                .iter()
                .map(|p| p.alloc[model as usize] > p.guarantee[model as usize])
                .collect(),
            place: PlaceCtx {
                max_scored: self.policy.max_scored_nodes,
                job,
                pools,
                exclusions: None,
                keep_whole: false,
                ends: None,
            },
        };
        let victims = if p.single {
            self.choose_for_single(&p)
        } else {
            self.choose_for_gang(&p)
        };
        victims.filter(|v| !v.is_empty())
    }

    /// A single task: the walk keeps an offer only when it is cheaper than every node before it
    /// (a node with room already counts its first victim's loss, and once kept nothing after it
    /// is, since it frees the task's room for nothing), then tries the kept offers cheapest
    /// first. The kept offers are the running minima in fleet order, so the cheapest node of a
    /// prefix of the fleet is the last kept one in that prefix: they are found from the end,
    /// each with one cheapest-node search.
    fn choose_for_single(&self, p: &PlanCtx) -> Option<Vec<JobId>> {
        let cheapest = self.cheapest_node(p, u32::MAX)?;
        // A kept node with room is the cheapest offer, and it stops nobody: no plan. One can
        // only be kept at or before the cheapest node.
        if cheapest.base > 0 {
            return None;
        }
        for node in self.nodes_with_room(p) {
            if node >= cheapest.node {
                break;
            }
            let Some(o) = self.node_offer(p, node, u64::MAX) else {
                continue;
            };
            if o.base > 0
                && self
                    .cheapest_node(p, node)
                    .is_none_or(|before| o.first < before.key())
            {
                return None;
            }
        }
        let mut offer = cheapest;
        loop {
            if self.takeable(p.model, &offer.victims) {
                return Some(offer.victims.to_vec());
            }
            offer = self.cheapest_node(p, offer.node)?;
        }
    }

    /// The node below `end` with the least key (the lowest such node among equals), reading
    /// preemptible work cheapest first until no unread node can do better.
    fn cheapest_node(&self, p: &PlanCtx, end: u32) -> Option<NodeOffer> {
        let mut best: Option<NodeOffer> = None;
        let mut seen: FxHashSet<u32> = FxHashSet::default();
        for (loss, node, j) in ByLoss::new(self, p.model) {
            // Every victim on an unread node loses at least `loss`, and so does its offer; an
            // unread node that could tie with the best comes after it in the fleet.
            if best
                .as_ref()
                .is_some_and(|b| (loss, node) > (b.key(), b.node))
            {
                break;
            }
            let Some(Running { tasks, .. }) = self.jobs[&j].run.running() else {
                continue;
            };
            for t in tasks {
                if t.node >= end || !seen.insert(t.node) {
                    continue;
                }
                let limit = best.as_ref().map_or(u64::MAX, NodeOffer::key);
                if let Some(o) = self.node_offer(p, t.node, limit)
                    && best
                        .as_ref()
                        .is_none_or(|b| (o.key(), o.node) < (b.key(), b.node))
                {
                    best = Some(o);
                }
            }
        }
        best
    }

    /// A gang: every node's offer, cheapest work lost per slot first, taken while the victims'
    /// projects stay above their guarantees, until the gang fits. Offers are produced in that
    /// order: nodes with room first, then nodes as their cheapest work is read, and an offer is
    /// taken once no unread node can undercut it.
    fn choose_for_gang(&self, p: &PlanCtx) -> Option<Vec<JobId>> {
        let replicas = p.req.replicas as u128;
        let mut pending: BinaryHeap<Reverse<ByRatio>> = BinaryHeap::new();
        let mut seen: FxHashSet<u32> = FxHashSet::default();
        for node in self.nodes_with_room(p) {
            seen.insert(node);
            if let Some(o) = self.node_offer(p, node, u64::MAX) {
                pending.push(Reverse(ByRatio(o)));
            }
        }
        let mut taking = Taking::default();
        let mut work = ByLoss::new(self, p.model);
        loop {
            // An unread node loses at least the next loss for at most `replicas` slots.
            let bound = work.peek();
            while let Some(Reverse(ByRatio(top))) = pending.peek()
                && bound
                    .is_none_or(|b| (top.cost as u128) * replicas < b as u128 * top.slots as u128)
            {
                let Reverse(ByRatio(offer)) = pending.pop().expect("peeked");
                if taking.slots >= p.req.replicas as u64 {
                    break;
                }
                taking.offer(self, p.model, offer);
            }
            if taking.slots >= p.req.replicas as u64 {
                break;
            }
            let Some((_, _, j)) = work.next() else {
                if pending.is_empty() {
                    break;
                }
                continue;
            };
            let Some(Running { tasks, .. }) = self.jobs[&j].run.running() else {
                continue;
            };
            for t in tasks {
                if seen.insert(t.node)
                    && let Some(o) = self.node_offer(p, t.node, u64::MAX)
                {
                    pending.push(Reverse(ByRatio(o)));
                }
            }
        }
        (taking.slots >= p.req.replicas as u64).then_some(taking.victims)
    }

    /// Nodes of the model that may have room for a task before any eviction, in fleet order:
    /// every node of a group whose free capacity holds one (holds may still take it).
    fn nodes_with_room(&self, p: &PlanCtx) -> Vec<u32> {
        let Some(groups) = &self.cluster.groups else {
            return self.cluster.model_nodes[p.model as usize].clone();
        };
        let from = NodeSig {
            model: Some(p.model),
            full_free: if p.req.milli >= FULL {
                p.req.gpus.min(u8::MAX as u32) as u8
            } else {
                0
            },
            gpus: GpuVec::new(),
            cpu: 0,
            mem: 0,
            pool: 0,
            domain: 0,
        };
        let mut out: Vec<u32> = Vec::new();
        for (sig, group) in groups.range(from..) {
            if sig.model != Some(p.model) {
                break;
            }
            if sig_slots(sig, &p.req) > 0 {
                out.extend(group.nodes.iter().copied());
            }
        }
        out.sort_unstable();
        out
    }

    /// The victims on one node in eviction order: lowest priority class first, then least work
    /// lost. With the work lost, for pricing.
    fn victims_on(&self, p: &PlanCtx, idx: u32) -> SmallVec<[(u8, u64, JobId); 8]> {
        let mut victims: SmallVec<[(u8, u64, JobId); 8]> = self.node_jobs[idx as usize]
            .iter()
            .filter_map(|j| {
                let v = &self.jobs[j];
                let Some(&Running {
                    model: Some(vm),
                    preempting: None,
                    started,
                    ..
                }) = v.run.running()
                else {
                    return None;
                };
                (vm == p.model
                    && v.preemptible
                    && v.project != p.beneficiary
                    && p.borrowing[v.project as usize])
                    .then(|| (v.key.rank, lost(self.now, started, v.total_milli()), *j))
            })
            .collect();
        victims.sort_by_key(|&(rank, lost, j)| (Reverse(rank), lost, j));
        victims
    }

    /// What one node offers: its victims in eviction order up to the first count of slots that
    /// is the most it can give (at most the gang's tasks). For a single task an offer whose key
    /// would exceed `limit` is not worked out (`None`).
    fn node_offer(&self, p: &PlanCtx, idx: u32, limit: u64) -> Option<NodeOffer> {
        let n = &self.cluster.nodes[idx as usize];
        if n.state != NodeState::Up {
            return None;
        }
        let victims = self.victims_on(p, idx);
        if victims.is_empty() && p.single {
            // Nothing to evict, and a single task would have been placed without a plan.
            return None;
        }
        let first = victims.first().map_or(0, |v| v.1);
        if p.single && first > limit {
            return None;
        }
        let mut ev = EvictionView::new(n, idx, &p.place)?;
        let base = ev.slots(&p.req);
        let mut cost = 0u64;
        let mut chosen: SmallVec<[JobId; 4]> = SmallVec::new();
        let mut best = (base, 0u64, 0usize);
        for &(_, l, j) in &victims {
            if best.0 >= p.req.replicas || (p.single && cost + l > limit) {
                break;
            }
            let v = &self.jobs[&j];
            if let Some(Running { tasks, .. }) = v.run.running() {
                for t in tasks.iter().filter(|t| t.node == idx) {
                    ev.free(&t.gpus, t.milli, v.req.cpu, v.req.mem);
                }
            }
            cost += l;
            chosen.push(j);
            let s = ev.slots(&p.req);
            if s > best.0 {
                best = (s, cost, chosen.len());
            }
        }
        if best.0 == 0 {
            return None;
        }
        chosen.truncate(best.2);
        Some(NodeOffer {
            node: idx,
            first,
            base,
            cost: best.1,
            slots: best.0,
            victims: chosen,
        })
    }

    /// Whether a single node's victims may all be taken: each victim's project must still run
    /// above its guarantee when its turn comes.
    fn takeable(&self, model: u8, victims: &[JobId]) -> bool {
        let mut taking = Taking::default();
        taking.try_take(self, model, victims)
    }
}

/// Victims taken so far by a gang's plan and what is left of each victim project's allocation.
#[derive(Default)]
struct Taking {
    remaining: FxHashMap<u32, u64>,
    victims: Vec<JobId>,
    slots: u64,
}

impl Taking {
    /// Takes a node's offer when its victims' projects all stay above their guarantees.
    fn offer(&mut self, engine: &Engine, model: u8, offer: NodeOffer) {
        if self.try_take(engine, model, &offer.victims) {
            self.slots += offer.slots as u64;
        }
    }

    fn try_take(&mut self, engine: &Engine, model: u8, node_victims: &[JobId]) -> bool {
        let mut trial = self.remaining.clone();
        for j in node_victims {
            if self.victims.contains(j) {
                continue;
            }
            let v = &engine.jobs[j];
            let p = &engine.projects[v.project as usize];
            let a = trial.entry(v.project).or_insert(p.alloc[model as usize]);
            if *a <= p.guarantee[model as usize] {
                return false;
            }
            *a = a.saturating_sub(v.total_milli());
        }
        self.remaining = trial;
        for j in node_victims {
            if !self.victims.contains(j) {
                self.victims.push(*j);
            }
        }
        true
    }
}

#[cfg(test)]
#[path = "../../tests/common/mod.rs"]
mod common;

#[cfg(test)]
mod tests {
    use super::common::*;
    use super::*;
    use proptest::prelude::*;

    impl Engine {
        /// The planner as it was: every node of the model in fleet order, each priced from its
        /// running jobs. The oracle for the indexed planner.
        fn choose_victims_by_walk(&self, job: JobId, model: u8) -> Option<Vec<JobId>> {
            let e = &self.jobs[&job];
            let beneficiary_project = e.project;
            let req = e.req;
            let pools = self.projects[beneficiary_project as usize].pools.clone();
            let ctx = PlaceCtx {
                max_scored: self.policy.max_scored_nodes,
                job,
                pools: &pools,
                exclusions: None,
                keep_whole: false,
                ends: None,
            };
            let lost = |v: &JobEntry| -> u64 {
                match v.run {
                    Run::Running(ref r) => {
                        self.now.since(r.started).0.max(0) as u64 * v.total_milli()
                    }
                    Run::Queued { .. } => 0,
                }
            };
            let borrowing: Vec<bool> = self
                .projects
                .iter()
                .map(|p| p.alloc[model as usize] > p.guarantee[model as usize])
                .collect();
            let single = req.replicas == 1;
            let mut cheapest = u64::MAX;
            let mut offers: Vec<(u64, u32, u32, SmallVec<[JobId; 4]>)> = Vec::new();
            for &idx in &self.cluster.model_nodes[model as usize] {
                let n = &self.cluster.nodes[idx as usize];
                if n.state != NodeState::Up {
                    continue;
                }
                let mut victims: SmallVec<[(u8, u64, JobId); 8]> = self.node_jobs[idx as usize]
                    .iter()
                    .filter_map(|j| {
                        let v = &self.jobs[j];
                        let Some(&Running {
                            model: Some(vm),
                            preempting: None,
                            ..
                        }) = v.run.running()
                        else {
                            return None;
                        };
                        (vm == model
                            && v.preemptible
                            && v.project != beneficiary_project
                            && borrowing[v.project as usize])
                            .then(|| (v.key.rank, lost(v), *j))
                    })
                    .collect();
                if victims.is_empty() && single {
                    continue;
                }
                victims.sort_by_key(|&(rank, lost, j)| (Reverse(rank), lost, j));
                if single && victims.first().is_some_and(|v| v.1 >= cheapest) {
                    continue;
                }
                let Some(mut ev) = EvictionView::new(n, idx, &ctx) else {
                    continue;
                };
                let base = ev.slots(&req);
                let mut cost = 0;
                let mut chosen: SmallVec<[JobId; 4]> = SmallVec::new();
                let mut best = (base, 0u64, 0usize);
                for (_, l, j) in &victims {
                    if best.0 >= req.replicas || (single && cost + l >= cheapest) {
                        break;
                    }
                    let v = &self.jobs[j];
                    if let Some(Running { tasks, .. }) = v.run.running() {
                        for t in tasks.iter().filter(|t| t.node == idx) {
                            ev.free(&t.gpus, t.milli, v.req.cpu, v.req.mem);
                        }
                    }
                    cost += l;
                    chosen.push(*j);
                    let s = ev.slots(&req);
                    if s > best.0 {
                        best = (s, cost, chosen.len());
                    }
                }
                if best.0 > 0 {
                    chosen.truncate(best.2);
                    if single {
                        cheapest = cheapest.min(best.1);
                    }
                    offers.push((best.1, best.0, idx, chosen));
                }
            }
            offers.sort_by(|a, b| {
                let lhs = a.0 as u128 * b.1 as u128;
                let rhs = b.0 as u128 * a.1 as u128;
                lhs.cmp(&rhs).then(a.2.cmp(&b.2))
            });
            let mut remaining: FxHashMap<u32, u64> = FxHashMap::default();
            let mut victims: Vec<JobId> = Vec::new();
            let mut slots = 0u64;
            for (_, s, _, node_victims) in offers {
                if slots >= req.replicas as u64 {
                    break;
                }
                let mut ok = true;
                let mut trial = remaining.clone();
                for j in &node_victims {
                    if victims.contains(j) {
                        continue;
                    }
                    let v = &self.jobs[j];
                    let p = &self.projects[v.project as usize];
                    let a = trial.entry(v.project).or_insert(p.alloc[model as usize]);
                    if *a <= p.guarantee[model as usize] {
                        ok = false;
                        break;
                    }
                    *a = a.saturating_sub(v.total_milli());
                }
                if !ok {
                    continue;
                }
                remaining = trial;
                for j in node_victims {
                    if !victims.contains(&j) {
                        victims.push(j);
                    }
                }
                slots += s as u64;
            }
            if slots < req.replicas as u64 || victims.is_empty() {
                return None;
            }
            Some(victims)
        }

        /// The reclaim scan as it was: every job read from the job map. The oracle for the scan
        /// that reads sizes and models from the shapes kept in the queue.
        fn next_reclaimer_by_jobs(
            &self,
            q: usize,
            after: Option<OrderKey>,
        ) -> Option<(OrderKey, JobId, u8)> {
            let p = &self.projects[q];
            let mut pending = vec![0u64; p.alloc.len()];
            for key in self.queues[q].all.keys().take(RECLAIM_SCAN) {
                let e = &self.jobs[&key.job];
                let Some(m) = e.models.iter().find(|&m| {
                    p.alloc[m as usize] + pending[m as usize] + e.total_milli()
                        <= p.guarantee[m as usize]
                }) else {
                    continue;
                };
                let waiting = matches!(e.run, Run::Queued { victims } if victims > 0)
                    || self.holds.contains_key(&key.job);
                pending[m as usize] += e.total_milli();
                if !waiting && after.is_none_or(|a| *key > a) {
                    return Some((*key, key.job, m));
                }
            }
            None
        }

        /// Both reclaim scans for every queue, following each from one answer to the next as
        /// the pass does; a difference fails. Returns how many reclaimers they found.
        fn compare_reclaimers(&self) -> Result<usize, String> {
            let mut found = 0;
            for q in 0..self.queues.len() {
                let mut after = None;
                loop {
                    let old = self.next_reclaimer_by_jobs(q, after);
                    let new = self.next_reclaimer(q, after);
                    if old != new {
                        return Err(format!(
                            "queue {q} after {after:?}: the job map gave {old:?}, the shapes {new:?}"
                        ));
                    }
                    let Some((key, _, _)) = new else {
                        break;
                    };
                    found += 1;
                    after = Some(key);
                }
            }
            Ok(found)
        }

        /// Both planners for every queued job and each of its models; a difference fails.
        fn compare_planners(&self) -> Result<usize, String> {
            let mut queued: Vec<JobId> = self
                .jobs
                .iter()
                .filter(|(_, e)| matches!(e.run, Run::Queued { .. }))
                .map(|(j, _)| *j)
                .collect();
            queued.sort_unstable();
            let mut plans = 0;
            for j in queued {
                for m in self.jobs[&j].models.iter() {
                    let walked = self.choose_victims_by_walk(j, m);
                    let indexed = self.choose_victims(j, m);
                    if walked != indexed {
                        return Err(format!(
                            "{j} on model {m}: the walk chose {walked:?}, the index {indexed:?}"
                        ));
                    }
                    plans += walked.is_some() as usize;
                }
            }
            Ok(plans)
        }
    }

    #[derive(Debug, Clone)]
    enum Step {
        Submit(JobGen),
        /// Ends the running job at this position (modulo how many run).
        Finish(usize),
        NodeDown(u32),
        NodeUp(u32),
        Wait(i64),
    }

    fn step_gen(projects: u32) -> impl Strategy<Value = Step> {
        prop_oneof![
            8 => job_gen(projects).prop_map(Step::Submit),
            3 => any::<usize>().prop_map(Step::Finish),
            1 => (0..12u32).prop_map(Step::NodeDown),
            1 => (0..12u32).prop_map(Step::NodeUp),
            3 => (1..900i64).prop_map(Step::Wait),
        ]
    }

    fn scenario() -> impl Strategy<Value = (Vec<NodeGen>, Vec<ProjectGen>, Vec<Step>)> {
        (
            proptest::collection::vec(node_gen(), 1..12),
            proptest::collection::vec(project_gen(), 2..5),
        )
            .prop_flat_map(|(nodes, projects)| {
                let n = projects.len() as u32;
                (
                    Just(nodes),
                    Just(projects),
                    proptest::collection::vec(step_gen(n), 1..80),
                )
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// After every step of a random workload (passes that preempt, requeue, lose nodes),
        /// the indexed planner chooses what the walk over the fleet chooses, for every queued
        /// job on every model it may use, the reclaim scan finds what the scan over the job map
        /// found, and the index passes the invariant check.
        #[test]
        fn the_index_plans_what_the_walk_plans((nodes, projects, steps) in scenario()) {
            let fleet = fleet_of(&nodes);
            let tenants = tenants_of(&projects);
            let mut engine = Engine::new(&fleet, &tenants, Policy::default()).unwrap();
            let mut now = Time::from_secs(1);
            let mut next_id = 0u64;
            let mut running: Vec<JobId> = Vec::new();
            for step in &steps {
                match step {
                    Step::Submit(g) => {
                        let _ = engine.submit(job_of(g, next_id, now), now);
                        next_id += 1;
                    }
                    Step::Finish(i) if !running.is_empty() => {
                        let j = running.remove(i % running.len());
                        engine.finish(j, now).unwrap();
                    }
                    Step::Finish(_) => {}
                    Step::NodeDown(n) | Step::NodeUp(n) if (*n as usize) < nodes.len() => {
                        let state = if matches!(step, Step::NodeDown(_)) {
                            NodeState::Down
                        } else {
                            NodeState::Up
                        };
                        for j in engine.set_node_state(NodeId(*n), state, now).unwrap() {
                            if state == NodeState::Down {
                                engine.requeue(j, now).unwrap();
                                running.retain(|r| *r != j);
                            }
                        }
                    }
                    Step::NodeDown(_) | Step::NodeUp(_) => {}
                    Step::Wait(s) => now = now + Span::from_secs(*s),
                }
                if let Err(e) = engine.compare_planners() {
                    return Err(TestCaseError::fail(e));
                }
                if let Err(e) = engine.compare_reclaimers() {
                    return Err(TestCaseError::fail(e));
                }
                let d = engine.schedule(now);
                running.extend(d.starts.iter().map(|s| s.job));
                // Half the victims stop at once, the rest keep stopping across later steps.
                for (i, p) in d.preemptions.iter().enumerate() {
                    if i % 2 == 0 {
                        engine.requeue(p.victim, now).unwrap();
                        running.retain(|r| *r != p.victim);
                    }
                }
                if let Err(e) = engine.check_invariants() {
                    return Err(TestCaseError::fail(e));
                }
            }
        }
    }

    fn two_projects(nodes: u32, guarantee: u64) -> (Vec<NodeGen>, Vec<ProjectGen>) {
        let nodes = (0..nodes)
            .map(|b| NodeGen {
                model: 0,
                gpus: 2,
                domain: 2,
                block: b % 3,
                cpu: 32,
            })
            .collect();
        let projects = vec![
            ProjectGen {
                weight: 1,
                guarantee,
                borrow_limit: None,
            },
            ProjectGen {
                weight: 1,
                guarantee: 0,
                borrow_limit: None,
            },
        ];
        (nodes, projects)
    }

    fn whole_node(project: u32, preemptible: bool) -> JobGen {
        JobGen {
            project,
            replicas: 1,
            gpu: haneul_model::GpuRequest::Whole(2),
            cpu: 1,
            models: vec![],
            priority: haneul_model::PriorityClass::Normal,
            preemptible,
            estimate_s: 3600,
        }
    }

    /// Borrowers that started together lose the same work: the plan takes the one on the
    /// first node in fleet order, as the walk does, whatever order their ids come in.
    #[test]
    fn equal_losses_go_to_the_first_node() {
        let (nodes, projects) = two_projects(4, 2);
        let mut engine =
            Engine::new(&fleet_of(&nodes), &tenants_of(&projects), Policy::default()).unwrap();
        let now = Time::from_secs(1);
        for id in 0..4 {
            engine
                .submit(job_of(&whole_node(1, true), id, now), now)
                .unwrap();
        }
        assert_eq!(engine.schedule(now).starts.len(), 4);
        let on_first = (0..4)
            .map(JobId)
            .find(|&j| engine.placement(j).unwrap().tasks[0].node == NodeId(0))
            .unwrap();
        let now = now + Span::from_secs(600);
        engine
            .submit(job_of(&whole_node(0, false), 9, now), now)
            .unwrap();
        assert_eq!(engine.compare_planners(), Ok(1));
        let d = engine.schedule(now);
        assert_eq!(
            d.preemptions.iter().map(|p| p.victim).collect::<Vec<_>>(),
            vec![on_first]
        );
    }

    /// A victim the plan chose leaves the index at once (it is stopping), and the index is
    /// the walk's answer on a state built by hand: four borrowers on four nodes.
    #[test]
    fn a_chosen_victim_leaves_the_index() {
        let (nodes, projects) = two_projects(4, 4);
        let mut engine =
            Engine::new(&fleet_of(&nodes), &tenants_of(&projects), Policy::default()).unwrap();
        let mut now = Time::from_secs(1);
        for id in 0..4 {
            engine
                .submit(job_of(&whole_node(1, true), id, now), now)
                .unwrap();
            let d = engine.schedule(now);
            assert_eq!(d.starts.len(), 1, "borrower {id} starts on an empty node");
            now = now + Span::from_secs(60);
        }
        let indexed: usize = engine.preemptible[0].values().map(BTreeSet::len).sum();
        assert_eq!(indexed, 4);
        engine
            .submit(job_of(&whole_node(0, false), 9, now), now)
            .unwrap();
        assert_eq!(engine.compare_planners(), Ok(1));
        let d = engine.schedule(now);
        // The latest start loses least: borrower 3.
        assert_eq!(
            d.preemptions.iter().map(|p| p.victim).collect::<Vec<_>>(),
            vec![JobId(3)]
        );
        let indexed: usize = engine.preemptible[0].values().map(BTreeSet::len).sum();
        assert_eq!(indexed, 3, "the stopping victim left the index");
        engine.check_invariants().unwrap();
        engine.requeue(JobId(3), now).unwrap();
        engine.check_invariants().unwrap();
    }

    /// A gang too large for what its project is owed, as the reclaim scan sees it.
    fn owed_gang(project: u32) -> JobGen {
        JobGen {
            replicas: 2,
            ..whole_node(project, false)
        }
    }

    /// The reclaim scan looks at the first `RECLAIM_SCAN` queued jobs of a project and no
    /// further, as it always did: a job that fits the guarantee behind that many that do not
    /// is found only once it moves up.
    #[test]
    fn the_reclaim_scan_stops_where_it_always_stopped() {
        let (nodes, projects) = two_projects(4, 2);
        let mut engine =
            Engine::new(&fleet_of(&nodes), &tenants_of(&projects), Policy::default()).unwrap();
        let mut now = Time::from_secs(1);
        for id in 0..RECLAIM_SCAN as u64 {
            engine.submit(job_of(&owed_gang(0), id, now), now).unwrap();
            now = now + Span::from_secs(1);
        }
        let small = JobId(RECLAIM_SCAN as u64);
        engine
            .submit(job_of(&whole_node(0, false), small.0, now), now)
            .unwrap();
        assert_eq!(engine.next_reclaimer(0, None), None);
        assert_eq!(engine.compare_reclaimers(), Ok(0));
        engine.cancel(JobId(0), now).unwrap();
        let found = engine.next_reclaimer(0, None);
        assert_eq!(found.map(|(_, j, m)| (j, m)), Some((small, 0)));
        assert_eq!(engine.compare_reclaimers(), Ok(1));
        engine.check_invariants().unwrap();
    }
}
