//! Preemption planning: which borrowed work to stop so that a job within its guarantee fits.

use super::*;

impl Engine {
    /// Chooses borrowed work to stop so that `job`, within its guarantee on `model`, fits.
    /// Victims are the preemptible jobs of projects running above their guarantee. Each node is
    /// priced by the work its evictions would lose (lowest priority and least work lost first);
    /// the cheapest nodes per task slot are taken until the gang fits.
    pub(super) fn plan_preemption(&mut self, job: JobId, model: u8) -> Option<Vec<Preemption>> {
        let e = &self.jobs[&job];
        let beneficiary_project = e.project;
        let req = e.req;
        let pools = self.projects[beneficiary_project as usize].pools.clone();
        let ctx = PlaceCtx {
            max_scored: self.policy.max_scored_nodes,
            job,
            pools: &pools,
            exclusions: None,
            ends: None,
        };
        let lost = |v: &JobEntry| -> u64 {
            match v.run {
                Run::Running { started, .. } => {
                    self.now.since(started).0.max(0) as u64 * v.total_milli()
                }
                Run::Queued { .. } => 0,
            }
        };
        // Projects whose work on this model may be taken: those running above their guarantee.
        let borrowing: Vec<bool> = self
            .projects
            .iter()
            .map(|p| p.alloc[model as usize] > p.guarantee[model as usize])
            .collect();
        // (cost, slots, node, victims) per node that can offer slots. A single task needs one
        // node: nodes that can not beat the cheapest offer so far are not priced in full.
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
                    let Run::Running {
                        model: Some(vm),
                        preempting: None,
                        ..
                    } = v.run
                    else {
                        return None;
                    };
                    (vm == model
                        && v.job.spec.preemptible
                        && v.project != beneficiary_project
                        && borrowing[v.project as usize])
                        .then(|| (v.key.rank, lost(v), *j))
                })
                .collect();
            if victims.is_empty() && single {
                // Nothing to evict, and a single task would have been placed without a plan.
                continue;
            }
            // Lowest priority class (highest rank) first, then least work lost.
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
                if let Run::Running { tasks, .. } = &v.run {
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
        // Cheapest work lost per slot first; free slots cost nothing.
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
            // Take a victim only while its project still runs above its guarantee.
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
        // Release the victims on the live cluster to place the job, then put them back.
        let mut log: Vec<Change> = Vec::new();
        for j in &victims {
            let v = &self.jobs[j];
            if let Run::Running { tasks, .. } = &v.run {
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
            Run::Running { tasks, .. } => tasks.iter().any(|t| used.contains(&t.node)),
            Run::Queued { .. } => false,
        });
        if victims.is_empty() {
            return None;
        }
        let mut out = Vec::with_capacity(victims.len());
        let mut latest = self.now;
        for v in &victims {
            let ve = self.jobs.get_mut(v).expect("victim exists");
            let kill_at = self.now + ve.job.spec.grace;
            latest = latest.max(kill_at);
            if let Run::Running { preempting, .. } = &mut ve.run {
                *preempting = Some((kill_at, job));
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
}
