//! The engine's self-check: every derived quantity recomputed from the running jobs.

use super::*;

impl Engine {
    /// Recomputes every derived quantity from the running jobs and compares: a debugging and
    /// test aid (`sanity_check` in HyperQueue's words).
    pub fn check_invariants(&self) -> Result<(), String> {
        let mut used: Vec<Vec<u32>> = self
            .cluster
            .nodes
            .iter()
            .map(|n| vec![0; n.gpus()])
            .collect();
        let mut cpu = vec![0u64; self.cluster.nodes.len()];
        let mut mem = vec![0u64; self.cluster.nodes.len()];
        let mut alloc = vec![vec![0u64; self.cluster.models.len()]; self.projects.len()];
        let mut until = vec![Time::ZERO; self.cluster.nodes.len()];
        let mut running = 0;
        let mut preemptible: Vec<BTreeMap<u64, BTreeSet<WorkKey>>> =
            vec![BTreeMap::new(); self.cluster.models.len()];
        let mut stopping: BTreeMap<JobId, Time> = BTreeMap::new();
        for (_, j) in &self.running_by_end {
            let e = &self.jobs[j];
            let Some(Running {
                tasks,
                model,
                end_est,
                started,
                preempting,
                ..
            }) = e.run.running()
            else {
                return Err(format!("{j} is in the running index but not running"));
            };
            running += 1;
            if let Some((kill_at, _)) = preempting {
                stopping.insert(*j, *kill_at);
            }
            if let Some(m) = model
                && preempting.is_none()
                && e.preemptible
            {
                preemptible[*m as usize]
                    .entry(e.total_milli())
                    .or_default()
                    .insert((Reverse(*started), first_node(tasks), *j));
            }
            if tasks.len() != e.req.replicas as usize {
                return Err(format!(
                    "{j} has {} tasks placed, wants {}",
                    tasks.len(),
                    e.req.replicas
                ));
            }
            for t in tasks {
                if t.gpus.len() != e.req.gpus as usize {
                    return Err(format!(
                        "{j}: a task got {} GPUs, wants {}",
                        t.gpus.len(),
                        e.req.gpus
                    ));
                }
                let n = &self.cluster.nodes[t.node as usize];
                if let (Some(m), Some(nm)) = (model, n.model)
                    && *m != nm
                {
                    return Err(format!("{j} placed on a node of another model"));
                }
                let d = n.domain as usize;
                if t.gpus.len() <= d && t.gpus.len() > 1 {
                    let dom = t.gpus[0] as usize / d;
                    if t.gpus.iter().any(|&g| g as usize / d != dom) {
                        return Err(format!("{j}: a task that fits one NVLink domain was split"));
                    }
                }
                for &g in &t.gpus {
                    used[t.node as usize][g as usize] += t.milli as u32;
                }
                until[t.node as usize] = until[t.node as usize].max(*end_est);
                cpu[t.node as usize] += e.req.cpu;
                mem[t.node as usize] += e.req.mem;
            }
            if let Some(m) = model {
                alloc[e.project as usize][*m as usize] += e.total_milli();
            }
        }
        if preemptible != self.preemptible {
            return Err("the index of preemptible running work is out of step".into());
        }
        if stopping != self.stopping {
            return Err("the index of stopping running work is out of step".into());
        }
        if running
            != self
                .jobs
                .values()
                .filter(|e| matches!(e.run, Run::Running(_)))
                .count()
        {
            return Err("running index out of step with jobs".into());
        }
        for (i, n) in self.cluster.nodes.iter().enumerate() {
            for (g, &u) in used[i].iter().enumerate() {
                if u > FULL as u32 {
                    return Err(format!("{} gpu {g} over-allocated: {u} milli", n.id));
                }
                if n.gpu_free[g] as u32 + u != FULL as u32 {
                    return Err(format!(
                        "{} gpu {g}: free {} + used {u} != 1000",
                        n.id, n.gpu_free[g]
                    ));
                }
            }
            if until[i] != self.busy_until[i] {
                return Err(format!(
                    "{}: running work is expected to end at {:?}, the node says {:?}",
                    n.id, until[i], self.busy_until[i]
                ));
            }
            if cpu[i] + n.cpu_free != n.cpu_cap || mem[i] + n.mem_free != n.mem_cap {
                return Err(format!("{}: cpu or memory accounting is off", n.id));
            }
        }
        for (p, slot) in self.projects.iter().enumerate() {
            if alloc[p] != slot.alloc {
                return Err(format!("{}: allocation accounting is off", slot.id));
            }
            for m in 0..self.cluster.models.len() {
                if let Some(limit) = slot.borrow_limit[m]
                    && slot.alloc[m] > slot.guarantee[m] + limit
                {
                    return Err(format!("{} is above its borrowing limit", slot.id));
                }
            }
        }
        let busy: BTreeSet<usize> = (0..self.queues.len())
            .filter(|&q| self.queues[q].len() > 0)
            .collect();
        if busy != self.busy_queues {
            return Err("the set of busy queues is out of step".into());
        }
        // Each queue entry carries its job's shape, which the reclaim scan trusts instead of
        // reading the job.
        for (q, queue) in self.queues.iter().enumerate() {
            for (key, &shape) in &queue.all {
                let Some(e) = self.jobs.get(&key.job) else {
                    return Err(format!("{} is in a queue but not in the engine", key.job));
                };
                if !matches!(e.run, Run::Queued { .. })
                    || e.key != *key
                    || e.shape != shape
                    || self.queue_of(e.project) != q
                {
                    return Err(format!("{}: its queue entry is out of step", key.job));
                }
                if !queue.by_shape.get(&shape).is_some_and(|s| s.contains(key)) {
                    return Err(format!("{} is missing from its shape's queue", key.job));
                }
                if let Some((est, _)) = e.long()
                    && !queue.long.contains(&(Reverse(est), *key))
                {
                    return Err(format!(
                        "{} is missing from its queue's longest-first index",
                        key.job
                    ));
                }
            }
            if queue.by_shape.values().map(BTreeSet::len).sum::<usize>() != queue.len() {
                return Err("a queue's shape index holds other jobs than the queue".into());
            }
            // The longest-first index holds exactly the queued jobs that carry one, and its
            // work is theirs.
            let mut work = 0i128;
            for (_, key) in &queue.long {
                match self.jobs.get(&key.job).and_then(|e| e.long()) {
                    Some((est, gpus)) if queue.all.contains_key(key) => {
                        work += est as i128 * gpus as i128
                    }
                    _ => {
                        return Err(format!(
                            "{} is in a longest-first index but not queued with one",
                            key.job
                        ));
                    }
                }
            }
            if work != queue.long_work {
                return Err("a queue's longest-first work is out of step".into());
            }
        }
        let queued: usize = self
            .jobs
            .values()
            .filter(|e| matches!(e.run, Run::Queued { .. }))
            .count();
        if queued != self.queued_len() {
            return Err(format!(
                "{queued} queued jobs but the queues hold {}",
                self.queued_len()
            ));
        }
        Ok(())
    }
}
