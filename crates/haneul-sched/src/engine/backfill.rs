//! Reservations for blocked jobs (when and where they could start if running work ends as
//! estimated), the basis of backfill, and the earliest-start estimate drivers show.

use super::*;

impl Engine {
    /// The earliest time `job` could start if running work ends as estimated, with its planned
    /// resources. Earlier reservations keep theirs. Works on the live cluster and undoes every
    /// change before it returns, so no copy of the fleet is made.
    pub(super) fn plan_reservation(
        &mut self,
        job: JobId,
        earlier: &[ReservationPlan],
    ) -> Option<ReservationPlan> {
        let e = &self.jobs[&job];
        let req = e.req;
        let models = e.models.to_vec();
        let pools = self.projects[e.project as usize].pools.clone();
        let mut log: Vec<Change> = Vec::new();
        for r in earlier {
            for (node, res) in &r.nodes {
                let n = &self.cluster.nodes[*node as usize];
                let take: SmallVec<[u32; 8]> = (0..n.gpus() as u32)
                    .filter(|g| res.gpu_mask & (1 << g) != 0 && n.gpu_free[*g as usize] == FULL)
                    .collect();
                let change = Change {
                    allocate: true,
                    node: *node,
                    gpus: take,
                    milli: FULL,
                    cpu: res.cpu.min(n.cpu_free),
                    mem: res.mem.min(n.mem_free),
                };
                change.apply(&mut self.cluster, false);
                log.push(change);
            }
        }
        // Running jobs in the order they are expected to end; those being preempted end at
        // their kill time. Both lists are sorted, so a merge walks them lazily.
        // The stopping jobs come from their own index: finding them among all running jobs
        // read every running job's entry in the job map, most of them cache misses, in every
        // plan.
        let mut preempting: Vec<(Time, JobId)> = self
            .stopping
            .iter()
            .map(|(&j, &kill_at)| (kill_at.max(self.now), j))
            .collect();
        preempting.sort_unstable();
        let mut by_end = self
            .running_by_end
            .iter()
            .copied()
            .filter(|(_, j)| !self.stopping.contains_key(j));
        let mut by_kill = preempting.into_iter();
        let mut next_end = by_end.next().map(|(t, j)| (t.max(self.now), j));
        let mut next_kill = by_kill.next();
        let ctx = PlaceCtx {
            max_scored: self.policy.max_scored_nodes,
            job,
            pools: &pools,
            exclusions: None,
            keep_whole: false,
            ends: None,
        };
        let mut found: Option<(Time, Vec<TaskSlot>)> = None;
        loop {
            let t = match (next_end, next_kill) {
                (None, None) => break,
                (Some(a), None) => a.0,
                (None, Some(b)) => b.0,
                (Some(a), Some(b)) => a.0.min(b.0),
            };
            // Release everything that ends at `t`.
            loop {
                let j = match (next_end, next_kill) {
                    (Some(a), _) if a.0 == t => {
                        next_end = by_end.next().map(|(t, j)| (t.max(self.now), j));
                        a.1
                    }
                    (_, Some(b)) if b.0 == t => {
                        next_kill = by_kill.next();
                        b.1
                    }
                    _ => break,
                };
                let je = &self.jobs[&j];
                if let Some(Running { tasks, .. }) = je.run.running() {
                    for task in tasks {
                        let change = Change {
                            allocate: false,
                            node: task.node,
                            gpus: task.gpus.clone(),
                            milli: task.milli,
                            cpu: je.req.cpu,
                            mem: je.req.mem,
                        };
                        change.apply(&mut self.cluster, false);
                        log.push(change);
                    }
                }
            }
            let fitting: Vec<u8> = models
                .iter()
                .copied()
                .filter(|&m| self.may_fit_now(&req, m))
                .collect();
            if !models.is_empty() && fitting.is_empty() {
                continue;
            }
            if let Some((_, tasks)) = place(
                &self.cluster,
                &fitting,
                &req,
                &ctx,
                self.policy.placement,
                &mut self.frag,
            ) {
                found = Some((t, tasks));
                break;
            }
        }
        for change in log.iter().rev() {
            change.apply(&mut self.cluster, true);
        }
        let (start_at, tasks) = found?;
        let mut nodes: BTreeMap<u32, Reserved> = BTreeMap::new();
        for t in &tasks {
            let r = nodes.entry(t.node).or_default();
            for &g in &t.gpus {
                r.gpu_mask |= 1 << g;
            }
            r.cpu += req.cpu;
            r.mem += req.mem;
        }
        Some(ReservationPlan {
            guaranteed: false,
            start_at,
            nodes: nodes.into_iter().collect(),
        })
    }

    /// When a queued job could start at the earliest, if running work ends as estimated and
    /// nothing else starts first. `None` when it is not queued or can not fit even on an idle
    /// fleet's nodes that are up.
    pub fn earliest_start(&mut self, job: JobId) -> Option<Time> {
        if !matches!(self.jobs.get(&job)?.run, Run::Queued { .. }) {
            return None;
        }
        let e = &self.jobs[&job];
        let pools = self.projects[e.project as usize].pools.clone();
        let ctx = PlaceCtx {
            max_scored: self.policy.max_scored_nodes,
            job,
            pools: &pools,
            exclusions: None,
            keep_whole: false,
            ends: None,
        };
        let req = e.req;
        let models = e.models.to_vec();
        let mut frag = std::mem::take(&mut self.frag);
        let fits_now = place(
            &self.cluster,
            &models,
            &req,
            &ctx,
            self.policy.placement,
            &mut frag,
        )
        .is_some();
        self.frag = frag;
        if fits_now {
            return Some(self.now);
        }
        self.plan_reservation(job, &[]).map(|p| p.start_at)
    }
}
