//! The engine: events in, decisions out.

mod restore;

use crate::cluster::{Cluster, FULL};
use crate::decision::{Decisions, Placement, Preemption, Reservation, Start, TaskPlacement};
use crate::error::SchedError;
use crate::frag::{FragModel, TaskKind, kind_milli};
use crate::placement::{Exclusions, PlaceCtx, Reserved, TaskReq, TaskSlot, place};
use crate::policy::{Ordering, Policy};
use crate::queue::{OrderKey, Queue, ShapeKey, Shapes, first_after};
use haneul_model::{
    Fleet, GpuModel, GpuRequest, Job, JobId, Lending, MilliGpu, NodeId, NodeState, OrgId, Project,
    ProjectId, Span, Tenants, Time,
};
use rustc_hash::FxHashMap;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};

/// Where a job stands in the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobState {
    Queued,
    Running {
        started: Time,
        borrowing: bool,
    },
    /// Asked to stop for a reclaim; still holds its resources until the driver requeues it.
    Preempting {
        kill_at: Time,
    },
}

#[derive(Debug, Clone)]
enum Run {
    Queued {
        /// Preemptions still in flight on this job's behalf.
        victims: u32,
    },
    Running {
        started: Time,
        end_est: Time,
        model: Option<u8>,
        borrowing: bool,
        tasks: Vec<TaskSlot>,
        preempting: Option<(Time, JobId)>,
    },
}

#[derive(Debug, Clone)]
struct JobEntry {
    job: Job,
    project: u32,
    shape: u32,
    key: OrderKey,
    req: TaskReq,
    /// Allowed GPU models as indices (empty for CPU-only jobs).
    models: Vec<u8>,
    run: Run,
}

impl JobEntry {
    fn total_milli(&self) -> u64 {
        self.req.gpus as u64 * self.req.milli as u64 * self.req.replicas as u64
    }
    fn estimate(&self, default: Span) -> Span {
        let s = &self.job.spec;
        match (s.runtime_estimate, s.time_limit) {
            (Some(e), Some(l)) => e.min(l),
            (Some(e), None) => e,
            (None, Some(l)) => l,
            (None, None) => default,
        }
    }
}

#[derive(Debug, Clone)]
struct ProjectSlot {
    id: ProjectId,
    org: OrgId,
    weight: f64,
    guarantee: Vec<u64>,
    borrow_limit: Vec<Option<u64>>,
    alloc: Vec<u64>,
    /// Decayed past usage in GPU-milliseconds.
    usage: f64,
    usage_at: Time,
    running_milli: u64,
    pools: Vec<bool>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Guaranteed,
    Borrowing,
}

/// Counters of the last pass, for benchmarks and the controller's metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PassStats {
    pub visited: u64,
    pub placement_attempts: u64,
    pub started: u64,
}

/// The scheduling engine. Holds the fleet's free capacity, the queue, running jobs and fair-share
/// usage. It does no I/O and reads no clock: every call carries `now`, and a pass returns what to
/// do. Same calls in the same order give the same decisions.
#[derive(Debug)]
pub struct Engine {
    policy: Policy,
    cluster: Cluster,
    frag: FragModel,
    projects: Vec<ProjectSlot>,
    project_index: FxHashMap<ProjectId, u32>,
    orgs: Vec<OrgId>,
    queues: Vec<Queue>,
    shapes: Shapes,
    jobs: FxHashMap<JobId, JobEntry>,
    running_by_end: BTreeSet<(Time, JobId)>,
    holds: BTreeMap<JobId, (Vec<u32>, Time)>,
    node_index: FxHashMap<NodeId, u32>,
    fits_ever: FxHashMap<(ShapeKey, u64, u64, u32), bool>,
    now: Time,
    last_stats: PassStats,
}

/// f64 ordered by `total_cmp`, for the fair-share heap.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Share(f64);
impl Eq for Share {}
impl PartialOrd for Share {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Share {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}

struct ReservationPlan {
    start_at: Time,
    nodes: Vec<(u32, Reserved)>,
}

impl Engine {
    pub fn new(fleet: &Fleet, tenants: &Tenants, policy: Policy) -> Result<Engine, SchedError> {
        fleet.validate()?;
        tenants.validate()?;
        if fleet.gpu_models().len() > 64 {
            return Err(SchedError::Invalid {
                field: "nodes.gpu_model",
                reason: "at most 64 GPU models are supported in one fleet".into(),
            });
        }
        if policy.fair_share_half_life.0 <= 0 {
            return Err(SchedError::Invalid {
                field: "fair_share_half_life",
                reason: "must be positive, for example 7 days".into(),
            });
        }
        let cluster = Cluster::new(fleet);
        let node_index = cluster
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.id, i as u32))
            .collect();
        let queue_count = if policy.ordering == Ordering::FairShare {
            tenants.projects.len()
        } else {
            1
        };
        let mut engine = Engine {
            policy,
            cluster,
            frag: FragModel::default(),
            projects: Vec::new(),
            project_index: FxHashMap::default(),
            orgs: tenants.orgs.iter().map(|o| o.id).collect(),
            queues: (0..queue_count).map(|_| Queue::default()).collect(),
            shapes: Shapes::default(),
            jobs: FxHashMap::default(),
            running_by_end: BTreeSet::new(),
            holds: BTreeMap::new(),
            node_index,
            fits_ever: FxHashMap::default(),
            now: Time::ZERO,
            last_stats: PassStats::default(),
        };
        for p in &tenants.projects {
            engine.upsert_project(p)?;
        }
        Ok(engine)
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    pub fn gpu_models(&self) -> &[GpuModel] {
        &self.cluster.models
    }

    /// Adds a project or updates its quotas and weight. Running work is not disturbed.
    pub fn upsert_project(&mut self, p: &Project) -> Result<(), SchedError> {
        if p.weight == 0 {
            return Err(SchedError::Invalid {
                field: "weight",
                reason: format!(
                    "project `{}` needs a fair-share weight of at least 1",
                    p.name
                ),
            });
        }
        if !self.orgs.contains(&p.org) {
            self.orgs.push(p.org);
        }
        let n_models = self.cluster.models.len();
        let mut guarantee = vec![0; n_models];
        let mut borrow_limit = vec![None; n_models];
        for (model, q) in &p.quotas {
            let Some(m) = self.cluster.model_index(model) else {
                return Err(SchedError::UnknownGpuModel(
                    model.to_string(),
                    self.model_list(),
                ));
            };
            guarantee[m as usize] = q.guaranteed.0;
            borrow_limit[m as usize] = q.borrow_limit.map(|l| l.0);
        }
        let pools = self
            .cluster
            .pools
            .iter()
            .map(|pool| pool.lending == Lending::Open || pool.owner == Some(p.org))
            .collect();
        match self.project_index.get(&p.id) {
            Some(&i) => {
                let slot = &mut self.projects[i as usize];
                slot.weight = p.weight as f64;
                slot.guarantee = guarantee;
                slot.borrow_limit = borrow_limit;
                slot.pools = pools;
                slot.org = p.org;
            }
            None => {
                let i = self.projects.len() as u32;
                self.projects.push(ProjectSlot {
                    id: p.id,
                    org: p.org,
                    weight: p.weight as f64,
                    guarantee,
                    borrow_limit,
                    alloc: vec![0; n_models],
                    usage: 0.0,
                    usage_at: self.now,
                    running_milli: 0,
                    pools,
                });
                self.project_index.insert(p.id, i);
                if self.policy.ordering == Ordering::FairShare
                    && self.queues.len() < self.projects.len()
                {
                    self.queues.push(Queue::default());
                }
            }
        }
        Ok(())
    }

    fn model_list(&self) -> String {
        let names: Vec<&str> = self.cluster.models.iter().map(|m| m.as_str()).collect();
        if names.is_empty() {
            "no GPUs".into()
        } else {
            names.join(", ")
        }
    }

    /// Tells the fragmentation measure what work to expect instead of learning it from
    /// submissions: (task shape, relative frequency) pairs.
    pub fn set_workload_hint(
        &mut self,
        shapes: &[(haneul_model::JobSpec, f64)],
    ) -> Result<(), SchedError> {
        let mut kinds = Vec::with_capacity(shapes.len());
        for (spec, weight) in shapes {
            let models = self.model_mask(&spec.gpu_models)?;
            kinds.push((task_kind(spec, models), *weight));
        }
        self.frag.set_fixed(kinds);
        Ok(())
    }

    fn model_mask(&self, models: &[GpuModel]) -> Result<u64, SchedError> {
        if models.is_empty() {
            return Ok(u64::MAX);
        }
        let mut mask = 0u64;
        for m in models {
            match self.cluster.model_index(m) {
                Some(i) => mask |= 1 << i,
                None => {
                    return Err(SchedError::UnknownGpuModel(
                        m.to_string(),
                        self.model_list(),
                    ));
                }
            }
        }
        Ok(mask)
    }

    fn advance(&mut self, now: Time) {
        if now > self.now {
            self.now = now;
        }
    }

    fn touch_usage(&mut self, p: u32) {
        let h = self.policy.fair_share_half_life.0 as f64;
        let now = self.now;
        let slot = &mut self.projects[p as usize];
        let dt = now.since(slot.usage_at).0 as f64;
        if dt > 0.0 {
            let decay = 0.5f64.powf(dt / h);
            let rate = slot.running_milli as f64 / 1000.0;
            slot.usage = slot.usage * decay + rate * (h / std::f64::consts::LN_2) * (1.0 - decay);
            slot.usage_at = now;
        }
    }

    fn share_of(&self, q: usize) -> f64 {
        if self.policy.ordering != Ordering::FairShare {
            return 0.0;
        }
        let p = &self.projects[q];
        let h = self.policy.fair_share_half_life.0 as f64;
        (p.usage + p.running_milli as f64 / 1000.0 * h) / p.weight
    }

    /// Accepts a job into the queue, or says which field makes it impossible to run.
    pub fn submit(&mut self, job: Job, now: Time) -> Result<(), SchedError> {
        self.advance(now);
        job.spec.validate()?;
        if self.jobs.contains_key(&job.id) {
            return Err(SchedError::DuplicateJob(job.id));
        }
        let Some(&project) = self.project_index.get(&job.spec.project) else {
            return Err(SchedError::UnknownProject(job.spec.project));
        };
        let spec = &job.spec;
        let mask = self.model_mask(&spec.gpu_models)?;
        let (gpus, milli) = match spec.gpu {
            GpuRequest::None => (0, 0),
            GpuRequest::Whole(n) => (n, FULL),
            GpuRequest::Fraction(m) => (1, m as u16),
        };
        let req = TaskReq {
            gpus,
            milli,
            cpu: spec.cpu_per_task.0,
            mem: spec.memory_per_task.0,
            replicas: spec.replicas,
        };
        let models: Vec<u8> = if gpus == 0 {
            Vec::new()
        } else {
            (0..self.cluster.models.len() as u8)
                .filter(|m| mask & (1 << m) != 0)
                .collect()
        };
        let shape_key = ShapeKey {
            gpus,
            milli,
            replicas: spec.replicas,
            models: mask,
        };
        let capacity = self.fits_ever(&req, shape_key, &models, project);
        if capacity < spec.replicas as u64 {
            return Err(SchedError::TooLarge {
                needed: spec.replicas,
                per_task: describe_task(spec),
                capacity,
            });
        }
        let shape = self.shapes.intern(shape_key);
        let priority = (self.policy.ordering != Ordering::Fifo).then_some(spec.priority);
        let key = OrderKey::new(priority, job.submitted_at, job.id);
        self.frag.observe(task_kind(spec, mask), spec.replicas);
        let q = self.queue_of(project);
        self.queues[q].insert(key, shape);
        self.jobs.insert(
            job.id,
            JobEntry {
                job,
                project,
                shape,
                key,
                req,
                models,
                run: Run::Queued { victims: 0 },
            },
        );
        Ok(())
    }

    fn queue_of(&self, project: u32) -> usize {
        if self.policy.ordering == Ordering::FairShare {
            project as usize
        } else {
            0
        }
    }

    /// Most tasks of this shape the project could ever hold at once, on an empty fleet.
    fn fits_ever(&mut self, req: &TaskReq, shape: ShapeKey, models: &[u8], project: u32) -> u64 {
        let pools_sig = self.projects[project as usize]
            .pools
            .iter()
            .enumerate()
            .fold(
                0u32,
                |acc, (i, &ok)| if ok { acc | (1 << (i % 32)) } else { acc },
            );
        let cache_key = (shape, req.cpu, req.mem, pools_sig);
        let replicas = req.replicas as u64;
        if let Some(&ok) = self.fits_ever.get(&cache_key) {
            return if ok { replicas } else { 0 };
        }
        let pools = &self.projects[project as usize].pools;
        let mut best = 0u64;
        let check_node = |n: &crate::cluster::NodeSlot| -> u64 {
            if !pools.get(n.pool as usize).copied().unwrap_or(false) {
                return 0;
            }
            let mut s = u64::MAX;
            if req.cpu > 0 {
                s = s.min(n.cpu_cap / req.cpu);
            }
            if req.mem > 0 {
                s = s.min(n.mem_cap / req.mem);
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
        };
        if models.is_empty() {
            best = self
                .cluster
                .nodes
                .iter()
                .map(|n| check_node(n).min(replicas))
                .sum();
        } else {
            for &m in models {
                let total: u64 = self.cluster.model_nodes[m as usize]
                    .iter()
                    .map(|&i| check_node(&self.cluster.nodes[i as usize]).min(replicas))
                    .sum();
                best = best.max(total);
            }
        }
        self.fits_ever.insert(cache_key, best >= replicas);
        best
    }

    /// Removes a queued job, or releases a running one the driver has stopped.
    pub fn cancel(&mut self, job: JobId, now: Time) -> Result<(), SchedError> {
        self.advance(now);
        let entry = self.jobs.get(&job).ok_or(SchedError::UnknownJob(job))?;
        match entry.run {
            Run::Queued { .. } => {
                let (q, key, shape) = (self.queue_of(entry.project), entry.key, entry.shape);
                self.queues[q].remove(&key, shape);
                self.jobs.remove(&job);
                self.clear_hold(job);
                Ok(())
            }
            Run::Running { .. } => self.finish(job, now),
        }
    }

    /// A running job ended (success, failure, time limit or cancellation): its resources are free.
    pub fn finish(&mut self, job: JobId, now: Time) -> Result<(), SchedError> {
        self.advance(now);
        self.release_running(job)?;
        self.jobs.remove(&job);
        Ok(())
    }

    /// A running job was stopped (preempted or its node lost): it goes back to the queue with its
    /// original age, so it does not lose its place.
    pub fn requeue(&mut self, job: JobId, now: Time) -> Result<(), SchedError> {
        self.advance(now);
        self.release_running(job)?;
        let entry = self.jobs.get_mut(&job).ok_or(SchedError::UnknownJob(job))?;
        entry.run = Run::Queued { victims: 0 };
        let (project, key, shape) = (entry.project, entry.key, entry.shape);
        let q = self.queue_of(project);
        self.queues[q].insert(key, shape);
        Ok(())
    }

    fn release_running(&mut self, job: JobId) -> Result<(), SchedError> {
        let entry = self.jobs.get(&job).ok_or(SchedError::UnknownJob(job))?;
        let Run::Running {
            end_est,
            model,
            ref tasks,
            preempting,
            ..
        } = entry.run
        else {
            return Err(SchedError::WrongState {
                job,
                state: "queued",
                expected: "running",
            });
        };
        let (cpu, mem) = (entry.req.cpu, entry.req.mem);
        for t in tasks {
            self.cluster.release(t.node, &t.gpus, t.milli, cpu, mem);
        }
        let total = entry.total_milli();
        let project = entry.project;
        self.running_by_end.remove(&(end_est, job));
        self.touch_usage(project);
        let p = &mut self.projects[project as usize];
        p.running_milli -= total;
        if let Some(m) = model {
            p.alloc[m as usize] -= total;
        }
        if let Some((_, beneficiary)) = preempting
            && let Some(b) = self.jobs.get_mut(&beneficiary)
            && let Run::Queued { victims } = &mut b.run
        {
            *victims = victims.saturating_sub(1);
        }
        let entry = self.jobs.get_mut(&job).expect("checked above");
        entry.run = Run::Queued { victims: 0 };
        Ok(())
    }

    /// Marks a node up, draining or down. Returns the jobs running on it: when it goes down the
    /// driver should requeue them.
    pub fn set_node_state(
        &mut self,
        node: NodeId,
        state: NodeState,
        now: Time,
    ) -> Result<Vec<JobId>, SchedError> {
        self.advance(now);
        let &idx = self
            .node_index
            .get(&node)
            .ok_or(SchedError::UnknownNode(node))?;
        self.cluster.set_state(idx, state);
        Ok(self.jobs_on_node(idx))
    }

    fn jobs_on_node(&self, idx: u32) -> Vec<JobId> {
        let mut out: Vec<JobId> = self
            .running_by_end
            .iter()
            .filter(|(_, j)| {
                matches!(&self.jobs[j].run, Run::Running { tasks, .. } if tasks.iter().any(|t| t.node == idx))
            })
            .map(|(_, j)| *j)
            .collect();
        out.sort_unstable();
        out
    }

    fn clear_hold(&mut self, job: JobId) {
        if let Some((nodes, _)) = self.holds.remove(&job) {
            for n in nodes {
                if self.cluster.nodes[n as usize].hold == Some(job) {
                    self.cluster.nodes[n as usize].hold = None;
                }
            }
        }
    }

    fn expire_holds(&mut self) {
        let expired: Vec<JobId> = self
            .holds
            .iter()
            .filter(|(j, (_, until))| {
                *until < self.now
                    && !matches!(self.jobs.get(j).map(|e| &e.run), Some(Run::Queued { victims }) if *victims > 0)
            })
            .map(|(j, _)| *j)
            .collect();
        for j in expired {
            self.clear_hold(j);
        }
    }

    pub fn job_state(&self, job: JobId) -> Option<JobState> {
        self.jobs.get(&job).map(|e| match &e.run {
            Run::Queued { .. } => JobState::Queued,
            Run::Running {
                preempting: Some((kill_at, _)),
                ..
            } => JobState::Preempting { kill_at: *kill_at },
            Run::Running {
                started, borrowing, ..
            } => JobState::Running {
                started: *started,
                borrowing: *borrowing,
            },
        })
    }

    pub fn placement(&self, job: JobId) -> Option<Placement> {
        match &self.jobs.get(&job)?.run {
            Run::Running { tasks, .. } => Some(self.to_placement(tasks)),
            Run::Queued { .. } => None,
        }
    }

    pub fn queued_len(&self) -> usize {
        self.queues.iter().map(Queue::len).sum()
    }

    pub fn running_len(&self) -> usize {
        self.running_by_end.len()
    }

    /// Milli-GPU allocated and the capacity of nodes that are up, per GPU model.
    pub fn gpu_allocation(&self) -> Vec<(GpuModel, MilliGpu, MilliGpu)> {
        let mut out: Vec<(GpuModel, MilliGpu, MilliGpu)> = self
            .cluster
            .models
            .iter()
            .map(|m| (m.clone(), MilliGpu::ZERO, MilliGpu::ZERO))
            .collect();
        for n in &self.cluster.nodes {
            if let (Some(m), NodeState::Up) = (n.model, n.state) {
                let cap = n.gpus() as u64 * FULL as u64;
                out[m as usize].1 += MilliGpu(cap - n.free_milli());
                out[m as usize].2 += MilliGpu(cap);
            }
        }
        out
    }

    /// Milli-GPU allocated by a project, per GPU model.
    pub fn project_allocation(&self, project: ProjectId) -> Option<Vec<(GpuModel, MilliGpu)>> {
        let &p = self.project_index.get(&project)?;
        Some(
            self.cluster
                .models
                .iter()
                .zip(&self.projects[p as usize].alloc)
                .map(|(m, &a)| (m.clone(), MilliGpu(a)))
                .collect(),
        )
    }

    /// The project's decayed past usage in GPU-hours, as fair share sees it.
    pub fn project_usage_gpu_hours(&self, project: ProjectId) -> Option<f64> {
        let &p = self.project_index.get(&project)?;
        Some(self.projects[p as usize].usage / 3_600_000.0)
    }

    pub fn last_pass(&self) -> PassStats {
        self.last_stats
    }

    fn to_placement(&self, tasks: &[TaskSlot]) -> Placement {
        Placement {
            tasks: tasks
                .iter()
                .map(|t| TaskPlacement {
                    node: self.cluster.nodes[t.node as usize].id,
                    gpus: t.gpus.to_vec(),
                    milli_per_gpu: MilliGpu(t.milli as u64),
                })
                .collect(),
        }
    }

    fn mode(&self, e: &JobEntry, model: u8) -> Option<Mode> {
        let p = &self.projects[e.project as usize];
        let m = model as usize;
        let after = p.alloc[m] + e.total_milli();
        if after <= p.guarantee[m] {
            return Some(Mode::Guaranteed);
        }
        if !self.policy.borrowing || !e.job.spec.preemptible {
            return None;
        }
        match p.borrow_limit[m] {
            Some(limit) if after > p.guarantee[m] + limit => None,
            _ => Some(Mode::Borrowing),
        }
    }

    fn may_fit_now(&self, req: &TaskReq, model: u8) -> bool {
        if req.milli < FULL {
            self.cluster
                .may_fit_fraction(model, req.milli as u32, req.replicas)
        } else {
            self.cluster.may_fit_whole(model, req.gpus, req.replicas)
        }
    }

    fn shape_may_fit(&self, shape: u32) -> bool {
        let k = self.shapes.keys[shape as usize];
        if k.gpus == 0 {
            return true;
        }
        let req = TaskReq {
            gpus: k.gpus,
            milli: k.milli,
            cpu: 0,
            mem: 0,
            replicas: k.replicas,
        };
        (0..self.cluster.models.len() as u8)
            .filter(|m| k.models & (1 << m) != 0)
            .any(|m| self.may_fit_now(&req, m))
    }

    /// Runs one scheduling pass at `now`.
    pub fn schedule(&mut self, now: Time) -> Decisions {
        self.advance(now);
        self.expire_holds();
        self.frag.refresh();
        for p in 0..self.projects.len() as u32 {
            self.touch_usage(p);
        }
        let mut decisions = Decisions::default();
        let mut stats = PassStats::default();
        let mut reservations: Vec<ReservationPlan> = Vec::new();
        // Exclusions for a job that would still run at the start of the first `i` reservations.
        let mut exclusion_prefixes: Vec<Exclusions> = vec![Exclusions::default()];
        let mut shape_closed = vec![false; self.shapes.keys.len()];
        let nq = self.queues.len();
        let mut full_cursor: Vec<Option<OrderKey>> = vec![None; nq];
        let mut shape_cursor: FxHashMap<(usize, u32), OrderKey> = FxHashMap::default();
        let mut heap: BinaryHeap<Reverse<(Share, usize)>> = (0..nq)
            .filter(|&q| self.queues[q].len() > 0)
            .map(|q| Reverse((Share(self.share_of(q)), q)))
            .collect();
        let backfill = self.policy.backfill && self.policy.skip_blocked;
        let depth = if backfill {
            self.policy.reservations
        } else {
            0
        };

        while let Some(Reverse((_, q))) = heap.pop() {
            let full_mode = !self.policy.skip_blocked || reservations.len() < depth;
            let candidate = if full_mode {
                first_after(&self.queues[q].all, full_cursor[q])
            } else {
                self.next_fitting(q, full_cursor[q], &mut shape_cursor, &mut shape_closed)
            };
            let Some(key) = candidate else {
                continue;
            };
            if full_mode {
                full_cursor[q] = Some(key);
            } else {
                let shape = self.jobs[&key.job].shape;
                shape_cursor.insert((q, shape), key);
            }
            stats.visited += 1;
            let job = key.job;
            let outcome = self.try_start(job, &reservations, &exclusion_prefixes, &mut stats);
            match outcome {
                Attempt::Started(start) => {
                    stats.started += 1;
                    decisions.starts.push(start);
                }
                Attempt::QuotaBlocked => {}
                Attempt::NoRoom { guaranteed_model } => {
                    let waiting =
                        matches!(self.jobs[&job].run, Run::Queued { victims } if victims > 0);
                    if !waiting
                        && self.policy.preemption
                        && let Some(m) = guaranteed_model
                        && let Some(pre) = self.plan_preemption(job, m)
                    {
                        decisions.preemptions.extend(pre);
                    } else if !self.policy.skip_blocked {
                        break;
                    } else if reservations.len() < depth
                        && !waiting
                        && let Some(plan) = self.plan_reservation(job, &reservations)
                    {
                        let mut excl = exclusion_prefixes.last().cloned().unwrap_or_default();
                        for (node, r) in &plan.nodes {
                            let e = excl.entry(*node).or_default();
                            e.gpu_mask |= r.gpu_mask;
                            e.cpu += r.cpu;
                            e.mem += r.mem;
                        }
                        exclusion_prefixes.push(excl);
                        decisions.reservations.push(Reservation {
                            job,
                            start_at: plan.start_at,
                            nodes: plan
                                .nodes
                                .iter()
                                .map(|(n, _)| self.cluster.nodes[*n as usize].id)
                                .collect(),
                        });
                        reservations.push(plan);
                    }
                }
            }
            heap.push(Reverse((Share(self.share_of(q)), q)));
        }
        self.last_stats = stats;
        decisions
    }

    /// The next job of queue `q` in a shape that may still fit, in queue order.
    fn next_fitting(
        &self,
        q: usize,
        full_cursor: Option<OrderKey>,
        shape_cursor: &mut FxHashMap<(usize, u32), OrderKey>,
        shape_closed: &mut Vec<bool>,
    ) -> Option<OrderKey> {
        if shape_closed.len() < self.shapes.keys.len() {
            shape_closed.resize(self.shapes.keys.len(), false);
        }
        let mut best: Option<OrderKey> = None;
        for (&shape, set) in &self.queues[q].by_shape {
            if shape_closed[shape as usize] {
                continue;
            }
            if !self.shape_may_fit(shape) {
                // Capacity only shrinks during a pass: this shape is done until the next one.
                shape_closed[shape as usize] = true;
                continue;
            }
            let after = match (full_cursor, shape_cursor.get(&(q, shape)).copied()) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            };
            if let Some(k) = first_after(set, after)
                && best.is_none_or(|b| k < b)
            {
                best = Some(k);
            }
        }
        best
    }

    fn try_start(
        &mut self,
        job: JobId,
        reservations: &[ReservationPlan],
        exclusion_prefixes: &[Exclusions],
        stats: &mut PassStats,
    ) -> Attempt {
        let e = &self.jobs[&job];
        let end_est = self.now + e.estimate(self.policy.default_runtime);
        // Reservations that start before this job would end: it must leave their resources alone.
        let blocking = reservations
            .iter()
            .rposition(|r| r.start_at < end_est)
            .map_or(0, |i| i + 1);
        let exclusions = (blocking > 0).then(|| &exclusion_prefixes[blocking]);
        let project = &self.projects[e.project as usize];
        let ctx = PlaceCtx {
            job,
            pools: &project.pools,
            exclusions,
        };
        if e.models.is_empty() {
            stats.placement_attempts += 1;
            let placed = place(
                &self.cluster,
                None,
                &e.req,
                &ctx,
                self.policy.placement,
                &mut self.frag,
            );
            return match placed {
                Some(tasks) => Attempt::Started(self.commit(job, None, Mode::Guaranteed, tasks)),
                None => Attempt::NoRoom {
                    guaranteed_model: None,
                },
            };
        }
        let mut modes: Vec<(u8, Mode)> = e
            .models
            .iter()
            .filter_map(|&m| self.mode(e, m).map(|mode| (m, mode)))
            .collect();
        if modes.is_empty() {
            return Attempt::QuotaBlocked;
        }
        // Guaranteed capacity first, then borrowing; fleet order within each.
        modes.sort_by_key(|&(m, mode)| (mode == Mode::Borrowing, m));
        let guaranteed_model = modes
            .iter()
            .find(|(_, mode)| *mode == Mode::Guaranteed)
            .map(|(m, _)| *m);
        for (m, mode) in modes {
            if !self.may_fit_now(&e.req, m) {
                continue;
            }
            stats.placement_attempts += 1;
            let placed = place(
                &self.cluster,
                Some(m),
                &e.req,
                &ctx,
                self.policy.placement,
                &mut self.frag,
            );
            if let Some(tasks) = placed {
                return Attempt::Started(self.commit(job, Some(m), mode, tasks));
            }
        }
        Attempt::NoRoom { guaranteed_model }
    }

    fn commit(&mut self, job: JobId, model: Option<u8>, mode: Mode, tasks: Vec<TaskSlot>) -> Start {
        let e = &self.jobs[&job];
        let (cpu, mem, total, project, key, shape) = (
            e.req.cpu,
            e.req.mem,
            e.total_milli(),
            e.project,
            e.key,
            e.shape,
        );
        let end_est = self.now + e.estimate(self.policy.default_runtime);
        for t in &tasks {
            self.cluster.allocate(t.node, &t.gpus, t.milli, cpu, mem);
        }
        self.touch_usage(project);
        let p = &mut self.projects[project as usize];
        p.running_milli += total;
        if let Some(m) = model {
            p.alloc[m as usize] += total;
        }
        let q = self.queue_of(project);
        self.queues[q].remove(&key, shape);
        self.running_by_end.insert((end_est, job));
        self.clear_hold(job);
        let placement = self.to_placement(&tasks);
        let borrowing = mode == Mode::Borrowing;
        let e = self.jobs.get_mut(&job).expect("job exists");
        e.run = Run::Running {
            started: self.now,
            end_est,
            model,
            borrowing,
            tasks,
            preempting: None,
        };
        Start {
            job,
            placement,
            gpu_model: model.map(|m| self.cluster.models[m as usize].clone()),
            borrowing,
        }
    }

    /// Chooses borrowed work to stop so that `job`, within its guarantee on `model`, fits.
    /// Victims are the preemptible jobs of projects running above their guarantee, lowest
    /// priority and least work lost first; only as many as needed are kept.
    fn plan_preemption(&mut self, job: JobId, model: u8) -> Option<Vec<Preemption>> {
        let e = &self.jobs[&job];
        let beneficiary_project = e.project;
        let mut candidates: Vec<(u8, u64, JobId)> = Vec::new();
        for (_, j) in &self.running_by_end {
            let v = &self.jobs[j];
            let Run::Running {
                model: Some(vm),
                preempting: None,
                started,
                ..
            } = v.run
            else {
                continue;
            };
            if vm != model || !v.job.spec.preemptible || v.project == beneficiary_project {
                continue;
            }
            let p = &self.projects[v.project as usize];
            if p.alloc[model as usize] <= p.guarantee[model as usize] {
                continue;
            }
            let lost = self.now.since(started).0.max(0) as u64 * v.total_milli();
            candidates.push((3 - v.key.rank.min(3), lost, *j));
        }
        if candidates.is_empty() {
            return None;
        }
        // Lowest priority class first (rank 3 is low), then least work lost, then id.
        candidates.sort_by_key(|&(prio, lost, j)| (Reverse(prio), lost, j));
        let mut scratch = self.cluster.clone();
        let mut alloc: FxHashMap<u32, u64> = FxHashMap::default();
        let mut chosen: Vec<JobId> = Vec::new();
        let pools = self.projects[beneficiary_project as usize].pools.clone();
        let ctx = PlaceCtx {
            job,
            pools: &pools,
            exclusions: None,
        };
        let req = e.req;
        let mut fits = false;
        for (_, _, v) in candidates {
            let ve = &self.jobs[&v];
            let p = &self.projects[ve.project as usize];
            let a = alloc.entry(ve.project).or_insert(p.alloc[model as usize]);
            if *a <= p.guarantee[model as usize] {
                continue;
            }
            *a -= ve.total_milli();
            if let Run::Running { tasks, .. } = &ve.run {
                for t in tasks {
                    scratch.release(t.node, &t.gpus, t.milli, ve.req.cpu, ve.req.mem);
                }
            }
            chosen.push(v);
            if place(
                &scratch,
                Some(model),
                &req,
                &ctx,
                self.policy.placement,
                &mut self.frag,
            )
            .is_some()
            {
                fits = true;
                break;
            }
        }
        if !fits {
            return None;
        }
        // Keep only the victims the placement really needs.
        for i in (0..chosen.len()).rev() {
            let ve = &self.jobs[&chosen[i]];
            if let Run::Running { tasks, .. } = &ve.run {
                let mut trial = scratch.clone();
                if tasks.iter().all(|t| {
                    let n = &trial.nodes[t.node as usize];
                    t.gpus.iter().all(|&g| n.gpu_free[g as usize] >= t.milli)
                        && n.cpu_free >= ve.req.cpu
                        && n.mem_free >= ve.req.mem
                }) {
                    for t in tasks {
                        trial.allocate(t.node, &t.gpus, t.milli, ve.req.cpu, ve.req.mem);
                    }
                    if place(
                        &trial,
                        Some(model),
                        &req,
                        &ctx,
                        self.policy.placement,
                        &mut self.frag,
                    )
                    .is_some()
                    {
                        scratch = trial;
                        chosen.remove(i);
                    }
                }
            }
        }
        let planned = place(
            &scratch,
            Some(model),
            &req,
            &ctx,
            self.policy.placement,
            &mut self.frag,
        )?;
        let mut out = Vec::with_capacity(chosen.len());
        let mut latest = self.now;
        for v in &chosen {
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
                victims: chosen.len() as u32,
            };
        }
        let mut held = Vec::new();
        for t in &planned {
            let n = &mut self.cluster.nodes[t.node as usize];
            if n.hold.is_none() {
                n.hold = Some(job);
                held.push(t.node);
            }
        }
        held.sort_unstable();
        held.dedup();
        self.holds.insert(job, (held, latest + Span::from_mins(5)));
        Some(out)
    }

    /// The earliest time `job` could start if running work ends as estimated, with its planned
    /// resources. Earlier reservations keep theirs.
    fn plan_reservation(
        &mut self,
        job: JobId,
        earlier: &[ReservationPlan],
    ) -> Option<ReservationPlan> {
        let e = &self.jobs[&job];
        let req = e.req;
        let models = e.models.clone();
        let pools = self.projects[e.project as usize].pools.clone();
        let mut scratch = self.cluster.clone();
        for r in earlier {
            for (node, res) in &r.nodes {
                let n = &mut scratch.nodes[*node as usize];
                let take: Vec<u32> = (0..n.gpus() as u32)
                    .filter(|g| res.gpu_mask & (1 << g) != 0 && n.gpu_free[*g as usize] == FULL)
                    .collect();
                let cpu = res.cpu.min(n.cpu_free);
                let mem = res.mem.min(n.mem_free);
                scratch.allocate(*node, &take, FULL, cpu, mem);
            }
        }
        let ctx = PlaceCtx {
            job,
            pools: &pools,
            exclusions: None,
        };
        let try_place = |s: &Cluster, frag: &mut FragModel| -> Option<Vec<TaskSlot>> {
            if models.is_empty() {
                return place(s, None, &req, &ctx, self.policy.placement, frag);
            }
            models.iter().find_map(|&m| {
                let quick = if req.milli < FULL {
                    s.may_fit_fraction(m, req.milli as u32, req.replicas)
                } else {
                    s.may_fit_whole(m, req.gpus, req.replicas)
                };
                if !quick {
                    return None;
                }
                place(s, Some(m), &req, &ctx, self.policy.placement, frag)
            })
        };
        let ends: Vec<(Time, JobId)> = self
            .running_by_end
            .iter()
            .map(|&(end, j)| {
                let end = match self.jobs[&j].run {
                    Run::Running {
                        preempting: Some((kill_at, _)),
                        ..
                    } => kill_at.min(end),
                    _ => end,
                };
                (end.max(self.now), j)
            })
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let mut i = 0;
        let mut found: Option<(Time, Vec<TaskSlot>)> = None;
        let mut frag = std::mem::take(&mut self.frag);
        while i < ends.len() {
            let t = ends[i].0;
            while i < ends.len() && ends[i].0 == t {
                let je = &self.jobs[&ends[i].1];
                if let Run::Running { tasks, .. } = &je.run {
                    for s in tasks {
                        scratch.release(s.node, &s.gpus, s.milli, je.req.cpu, je.req.mem);
                    }
                }
                i += 1;
            }
            if let Some(tasks) = try_place(&scratch, &mut frag) {
                found = Some((t, tasks));
                break;
            }
        }
        self.frag = frag;
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
            job,
            pools: &pools,
            exclusions: None,
        };
        let req = e.req;
        let models = e.models.clone();
        let mut frag = std::mem::take(&mut self.frag);
        let fits_now = if models.is_empty() {
            place(
                &self.cluster,
                None,
                &req,
                &ctx,
                self.policy.placement,
                &mut frag,
            )
            .is_some()
        } else {
            models.iter().any(|&m| {
                place(
                    &self.cluster,
                    Some(m),
                    &req,
                    &ctx,
                    self.policy.placement,
                    &mut frag,
                )
                .is_some()
            })
        };
        self.frag = frag;
        if fits_now {
            return Some(self.now);
        }
        self.plan_reservation(job, &[]).map(|p| p.start_at)
    }

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
        let mut running = 0;
        for (_, j) in &self.running_by_end {
            let e = &self.jobs[j];
            let Run::Running { tasks, model, .. } = &e.run else {
                return Err(format!("{j} is in the running index but not running"));
            };
            running += 1;
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
                cpu[t.node as usize] += e.req.cpu;
                mem[t.node as usize] += e.req.mem;
            }
            if let Some(m) = model {
                alloc[e.project as usize][*m as usize] += e.total_milli();
            }
        }
        if running
            != self
                .jobs
                .values()
                .filter(|e| matches!(e.run, Run::Running { .. }))
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

enum Attempt {
    Started(Start),
    QuotaBlocked,
    NoRoom { guaranteed_model: Option<u8> },
}

fn task_kind(spec: &haneul_model::JobSpec, models: u64) -> TaskKind {
    let (gpus, whole, frac) = match spec.gpu {
        GpuRequest::None => (0, true, 0),
        GpuRequest::Whole(n) => (n.min(255) as u8, true, 0),
        GpuRequest::Fraction(m) => (1, false, m),
    };
    TaskKind {
        gpus,
        milli: if gpus == 0 {
            0
        } else {
            kind_milli(whole, frac)
        },
        cpu: spec.cpu_per_task.0,
        mem: spec.memory_per_task.0,
        models,
    }
}

fn describe_task(spec: &haneul_model::JobSpec) -> String {
    match spec.gpu {
        GpuRequest::None => format!("{} CPU", spec.cpu_per_task.0 as f64 / 1000.0),
        GpuRequest::Whole(n) => format!("{n} GPU"),
        GpuRequest::Fraction(m) => format!("{m} milli-GPU"),
    }
}
