//! Restoring running work into a fresh engine. A control plane that restarts (or a standby that
//! takes over) rebuilds its engine from the store: queued jobs are submitted again, and jobs that
//! were already running must hold exactly the GPUs they hold in reality, not wherever a new pass
//! would put them. This is the one way in for a placement the engine did not choose now.

use super::{Engine, Mode, Running, first_node};
use crate::decision::Placement;
use crate::error::SchedError;
use crate::placement::TaskSlot;
use haneul_model::{Job, Time};
use std::cmp::Reverse;

impl Engine {
    /// Puts a job that is already running back into the engine on its recorded placement, as
    /// started at `started`. The placement is checked against the fleet and the free capacity;
    /// when it does not fit (a node removed, an overlap) the job is left out and the error says why,
    /// so the driver can requeue it instead.
    pub fn restore_running(
        &mut self,
        job: Job,
        placement: &Placement,
        borrowing: bool,
        started: Time,
        now: Time,
    ) -> Result<(), SchedError> {
        let id = job.id;
        self.submit(job, now)?;
        match self.restore_slots(id, placement) {
            Ok((model, tasks)) => {
                let mode = if borrowing {
                    Mode::Borrowing
                } else {
                    Mode::Guaranteed
                };
                self.commit(id, model, mode, tasks);
                let e = &self.jobs[&id];
                if e.preemptible
                    && let Some(Running { tasks, .. }) = e.run.running()
                {
                    let (milli, node) = (e.total_milli(), first_node(tasks));
                    self.unindex_preemptible(model, milli, (Reverse(self.now), node, id));
                    self.index_preemptible(model, milli, (Reverse(started), node, id));
                }
                let e = self.jobs.get_mut(&id).expect("committed above");
                let new_end = started + e.estimate();
                if let Some(Running {
                    started: s,
                    end_est,
                    ..
                }) = e.run.running_mut()
                {
                    let old_end = *end_est;
                    *s = started;
                    *end_est = new_end;
                    self.running_by_end.remove(&(old_end, id));
                    self.running_by_end.insert((new_end, id));
                }
                Ok(())
            }
            Err(err) => {
                self.cancel(id, now)?;
                Err(err)
            }
        }
    }

    fn restore_slots(
        &self,
        id: haneul_model::JobId,
        placement: &Placement,
    ) -> Result<(Option<u8>, Vec<TaskSlot>), SchedError> {
        let e = &self.jobs[&id];
        let bad = |reason: String| SchedError::Invalid {
            field: "placement",
            reason,
        };
        if placement.tasks.len() != e.req.replicas as usize {
            return Err(bad(format!(
                "job `{id}` has {} tasks but the placement lists {}",
                e.req.replicas,
                placement.tasks.len()
            )));
        }
        let milli = e.req.milli;
        let mut model = None;
        let mut scratch = self.cluster.clone();
        let mut tasks = Vec::with_capacity(placement.tasks.len());
        for t in &placement.tasks {
            let &idx = self
                .node_index
                .get(&t.node)
                .ok_or(SchedError::UnknownNode(t.node))?;
            let n = &scratch.nodes[idx as usize];
            if t.gpus.len() != e.req.gpus as usize {
                return Err(bad(format!(
                    "a task of `{id}` needs {} GPUs, the placement gives {}",
                    e.req.gpus,
                    t.gpus.len()
                )));
            }
            if e.req.gpus > 0 {
                if model.is_some() && model != n.model {
                    return Err(bad(format!("`{id}` spans GPU models")));
                }
                model = n.model;
            }
            let mut distinct = t.gpus.clone();
            distinct.sort_unstable();
            distinct.dedup();
            if distinct.len() != t.gpus.len() {
                return Err(bad(format!("a task of `{id}` lists a GPU twice")));
            }
            for &g in &t.gpus {
                let free = n.gpu_free.get(g as usize).copied();
                if free.is_none_or(|f| f < milli) {
                    return Err(bad(format!(
                        "GPU {g} of `{}` is not free for `{id}`",
                        t.node
                    )));
                }
            }
            if n.cpu_free < e.req.cpu || n.mem_free < e.req.mem {
                return Err(bad(format!("`{}` lacks CPU or memory for `{id}`", t.node)));
            }
            scratch.allocate(idx, &t.gpus, milli, e.req.cpu, e.req.mem);
            tasks.push(TaskSlot {
                node: idx,
                gpus: t.gpus.iter().copied().collect(),
                milli,
            });
        }
        Ok((model, tasks))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decision::TaskPlacement;
    use crate::policy::Policy;
    use haneul_model::{
        Block, BlockId, Fleet, GpuModel, GpuRequest, JobSpec, Lending, MemMib, MilliCpu, MilliGpu,
        Node, NodeId, NodeState, OrgClass, OrgId, Organisation, Pool, PoolId, Project, ProjectId,
        Tenants,
    };

    fn engine() -> Engine {
        let fleet = Fleet::new(
            vec![Pool {
                id: PoolId(1),
                name: "p".into(),
                owner: None,
                lending: Lending::Open,
            }],
            vec![Block {
                id: BlockId(1),
                name: "b".into(),
                pool: PoolId(1),
            }],
            vec![Node {
                id: NodeId(1),
                name: "n1".into(),
                block: BlockId(1),
                gpu_model: GpuModel::new("H200").unwrap(),
                gpus: 8,
                gpu_memory: MemMib(141 * 1024),
                nvlink_domain: 8,
                cpu: MilliCpu::cores(64),
                memory: MemMib(1 << 20),
                labels: Default::default(),
                state: NodeState::Up,
            }],
        )
        .unwrap();
        let tenants = Tenants::new(
            vec![Organisation {
                id: OrgId(1),
                name: "o".into(),
                class: OrgClass::Academia,
                country: "KR".into(),
                parent: None,
            }],
            vec![Project {
                id: ProjectId(1),
                org: OrgId(1),
                name: "p".into(),
                quotas: Default::default(),
                weight: 1,
            }],
        )
        .unwrap();
        Engine::new(&fleet, &tenants, Policy::default()).unwrap()
    }

    fn job(id: u64, gpus: u32) -> Job {
        Job {
            id: haneul_model::JobId(id),
            spec: JobSpec::new(ProjectId(1), 1, GpuRequest::Whole(gpus)),
            submitted_at: Time(0),
        }
    }

    fn on(gpus: Vec<u32>) -> Placement {
        Placement {
            tasks: vec![TaskPlacement {
                node: NodeId(1),
                gpus,
                milli_per_gpu: MilliGpu(1000),
            }],
        }
    }

    #[test]
    fn restored_jobs_hold_their_gpus() {
        let mut e = engine();
        e.restore_running(job(1, 4), &on(vec![4, 5, 6, 7]), false, Time(5), Time(10))
            .unwrap();
        assert_eq!(
            e.placement(haneul_model::JobId(1)),
            Some(on(vec![4, 5, 6, 7]))
        );
        // An overlapping placement is refused and leaves nothing behind.
        let err = e
            .restore_running(job(2, 2), &on(vec![3, 4]), false, Time(5), Time(10))
            .unwrap_err();
        assert!(err.to_string().starts_with("placement:"), "{err}");
        assert_eq!(e.job_state(haneul_model::JobId(2)), None);
        // New work goes around the restored job: only GPUs 0-3 are free.
        e.submit(job(3, 4), Time(11)).unwrap();
        e.submit(job(4, 1), Time(11)).unwrap();
        let d = e.schedule(Time(12));
        assert_eq!(d.starts.len(), 1);
        assert_eq!(d.starts[0].placement, on(vec![0, 1, 2, 3]));
        e.check_invariants().unwrap();
        e.finish(haneul_model::JobId(1), Time(20)).unwrap();
        assert_eq!(e.schedule(Time(21)).starts.len(), 1);
        e.check_invariants().unwrap();
    }
}
