//! The engine: events in, decisions out.

mod restore;

use crate::cluster::{Cluster, FULL};
use crate::decision::{Decisions, Placement, Preemption, Reservation, Start, TaskPlacement};
use crate::error::SchedError;
use crate::frag::{FragModel, TaskKind, kind_milli};
use crate::placement::{EvictionView, Exclusions, PlaceCtx, Reserved, TaskReq, TaskSlot, place};
use crate::policy::{Ordering, Policy};
use crate::queue::{OrderKey, Queue, ShapeKey, Shapes, first_after};
use haneul_model::{
    Fleet, GpuModel, GpuRequest, Job, JobId, Lending, MilliGpu, NodeId, NodeState, OrgId, Project,
    ProjectId, Span, Tenants, Time,
};
use rustc_hash::FxHashMap;
use smallvec::SmallVec;
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
    /// The eligible pools folded into a number, to key per-pass memos.
    pool_sig: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Guaranteed,
    Borrowing,
}

/// Preemption plans one pass may try; the rest wait for the next pass.
const MAX_PREEMPTION_PLANS_PER_PASS: usize = 4;
/// After a reclaim plan fails, the project's next try waits this long (engine time).
const RECLAIM_BACKOFF: Span = Span::from_secs(30);
/// Queued jobs of a project looked at for reclaiming in one pass.
const RECLAIM_SCAN: usize = 256;

/// Counters of the last pass, for benchmarks and the controller's metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PassStats {
    pub visited: u64,
    pub placement_attempts: u64,
    pub started: u64,
    pub preemption_plans: u64,
    pub reservation_plans: u64,
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
    /// Queues holding at least one job, so a pass need not look at idle projects.
    busy_queues: BTreeSet<usize>,
    shapes: Shapes,
    jobs: FxHashMap<JobId, JobEntry>,
    running_by_end: BTreeSet<(Time, JobId)>,
    holds: BTreeMap<JobId, (Vec<u32>, Time)>,
    node_index: FxHashMap<NodeId, u32>,
    /// Running jobs per node index, for preemption planning and node loss.
    node_jobs: Vec<Vec<JobId>>,
    fits_ever: FxHashMap<(ShapeKey, u64, u64, u32), bool>,
    now: Time,
    last_stats: PassStats,
    /// Per project: no reclaim planning before this time, after a plan found no victims.
    reclaim_backoff: FxHashMap<u32, Time>,
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
    /// The reserved job runs within its guarantee. Only such reservations hold back other
    /// guaranteed work; borrowed work could be preempted for it anyway.
    guaranteed: bool,
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
            busy_queues: BTreeSet::new(),
            shapes: Shapes::default(),
            jobs: FxHashMap::default(),
            running_by_end: BTreeSet::new(),
            holds: BTreeMap::new(),
            node_index,
            node_jobs: vec![Vec::new(); fleet.nodes.len()],
            fits_ever: FxHashMap::default(),
            now: Time::ZERO,
            last_stats: PassStats::default(),
            reclaim_backoff: FxHashMap::default(),
        };
        let mut capacity = vec![0u64; engine.cluster.models.len()];
        for n in &engine.cluster.nodes {
            if let Some(m) = n.model {
                capacity[m as usize] += n.gpus() as u64;
            }
        }
        engine.frag.set_capacity(capacity);
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
            // A quota for a model the fleet does not have (yet) guarantees nothing here; the
            // control plane checks model names against its catalogue.
            let Some(m) = self.cluster.model_index(model) else {
                continue;
            };
            guarantee[m as usize] = q.guaranteed.0;
            borrow_limit[m as usize] = q.borrow_limit.map(|l| l.0);
        }
        let pools: Vec<bool> = self
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
                slot.pool_sig = pool_sig(&pools);
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
                    pool_sig: pool_sig(&pools),
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
        let h = self.policy.fair_share_half_life;
        let now = self.now;
        let slot = &mut self.projects[p as usize];
        slot.usage = decayed_usage(slot, now, h);
        slot.usage_at = now.max(slot.usage_at);
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
        self.busy_queues.insert(q);
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
                if self.queues[q].len() == 0 {
                    self.busy_queues.remove(&q);
                }
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
        self.busy_queues.insert(q);
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
            self.node_jobs[t.node as usize].retain(|j| *j != job);
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
        let mut out = self.node_jobs[idx as usize].clone();
        out.sort_unstable();
        out
    }

    fn clear_hold(&mut self, job: JobId) {
        if let Some((nodes, _)) = self.holds.remove(&job) {
            for n in nodes {
                self.cluster.remove_hold(n, job);
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
        let slot = &self.projects[p as usize];
        Some(decayed_usage(slot, self.now, self.policy.fair_share_half_life) / 3_600_000.0)
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
        if self.policy.ordering == Ordering::FairShare {
            // Only projects with queued work compete in this pass; the rest catch up when they
            // next start or end a job.
            let busy: Vec<usize> = self.busy_queues.iter().copied().collect();
            for q in busy {
                self.touch_usage(q as u32);
            }
        }
        let mut decisions = Decisions::default();
        let mut stats = PassStats::default();
        let mut reservations: Vec<ReservationPlan> = Vec::new();
        // Exclusions for a job that would still run at the start of the first `i` reservations.
        let mut failures = FailureMemo::default();
        let mut shape_closed = vec![false; self.shapes.keys.len()];
        let mut full_cursor: FxHashMap<usize, OrderKey> = FxHashMap::default();
        let mut shape_cursor: FxHashMap<(usize, u32), OrderKey> = FxHashMap::default();
        let backfill = self.policy.backfill && self.policy.skip_blocked;
        // Planning a preemption looks at every node of a model: bound the work of one pass.
        let mut preemption_plans = 0usize;
        let mut preemption_failed: rustc_hash::FxHashSet<(u32, u8)> = Default::default();
        let depth = if backfill {
            self.policy.reservations
        } else {
            0
        };
        // Jobs whose preemption victims have stopped go first, onto the nodes held for them.
        let ready: Vec<JobId> = self
            .holds
            .keys()
            .filter(|j| {
                matches!(
                    self.jobs.get(j).map(|e| &e.run),
                    Some(Run::Queued { victims: 0 })
                )
            })
            .copied()
            .collect();
        for job in ready {
            stats.visited += 1;
            if let Attempt::Started(start) = self.try_start(job, &[], &mut failures, &mut stats) {
                stats.started += 1;
                decisions.starts.push(start);
            }
        }
        let mut heap: BinaryHeap<Reverse<(Share, usize)>> = self
            .busy_queues
            .iter()
            .map(|&q| Reverse((Share(self.share_of(q)), q)))
            .collect();

        let mut failed_after_reservations = 0usize;
        while let Some(Reverse((_, q))) = heap.pop() {
            if !reservations.is_empty() && failed_after_reservations >= self.policy.backfill_window
            {
                break;
            }
            let full_mode = !self.policy.skip_blocked || reservations.len() < depth;
            let cursor = full_cursor.get(&q).copied();
            let candidate = if full_mode {
                first_after(&self.queues[q].all, cursor)
            } else {
                self.next_fitting(q, cursor, &mut shape_cursor, &mut shape_closed)
            };
            let Some(key) = candidate else {
                continue;
            };
            if full_mode {
                full_cursor.insert(q, key);
            } else {
                let shape = self.jobs[&key.job].shape;
                shape_cursor.insert((q, shape), key);
            }
            stats.visited += 1;
            let job = key.job;
            let outcome = self.try_start(job, &reservations, &mut failures, &mut stats);
            match outcome {
                Attempt::Started(start) => {
                    stats.started += 1;
                    decisions.starts.push(start);
                }
                Attempt::QuotaBlocked => {
                    failed_after_reservations += !reservations.is_empty() as usize
                }
                Attempt::NoRoom { guaranteed_model } => {
                    failed_after_reservations += !reservations.is_empty() as usize;
                    let waiting =
                        matches!(self.jobs[&job].run, Run::Queued { victims } if victims > 0);
                    let shape = self.jobs[&job].shape;
                    let preempted = if !waiting
                        && self.policy.preemption
                        && preemption_plans < MAX_PREEMPTION_PLANS_PER_PASS
                        && let Some(m) = guaranteed_model
                        && !preemption_failed.contains(&(shape, m))
                    {
                        preemption_plans += 1;
                        stats.preemption_plans += 1;
                        let plan = self.plan_preemption(job, m);
                        if plan.is_none() {
                            preemption_failed.insert((shape, m));
                        }
                        plan
                    } else {
                        None
                    };
                    if let Some(pre) = preempted {
                        decisions.preemptions.extend(pre);
                    } else if !self.policy.skip_blocked {
                        break;
                    } else if reservations.len() < depth
                        && !waiting
                        && let Some(mut plan) = {
                            stats.reservation_plans += 1;
                            self.plan_reservation(job, &reservations)
                        }
                    {
                        plan.guaranteed = guaranteed_model.is_some();
                        decisions.reservations.push(self.reservation_of(job, &plan));
                        reservations.push(plan);
                    }
                }
            }
            heap.push(Reverse((Share(self.share_of(q)), q)));
        }
        // Projects below a guarantee may have work that no shape check let the loop reach: give
        // each its first waiting job a chance to reclaim, within the pass's preemption budget.
        if self.policy.preemption {
            let owed: Vec<usize> = self
                .busy_queues
                .iter()
                .copied()
                .filter(|&q| {
                    self.policy.ordering == Ordering::FairShare && {
                        let p = &self.projects[q];
                        p.alloc.iter().zip(&p.guarantee).any(|(a, g)| a < g)
                    }
                })
                .collect();
            for q in owed {
                if preemption_plans >= MAX_PREEMPTION_PLANS_PER_PASS {
                    break;
                }
                if self
                    .reclaim_backoff
                    .get(&(q as u32))
                    .is_some_and(|&t| t > self.now)
                {
                    continue;
                }
                // Plan for the project's owed jobs in order until one plan fails.
                let mut after: Option<OrderKey> = None;
                while preemption_plans < MAX_PREEMPTION_PLANS_PER_PASS {
                    let Some((key, job, m)) = self.next_reclaimer(q, after) else {
                        break;
                    };
                    after = Some(key);
                    let shape = self.jobs[&job].shape;
                    if preemption_failed.contains(&(shape, m)) {
                        break;
                    }
                    preemption_plans += 1;
                    stats.preemption_plans += 1;
                    match self.plan_preemption(job, m) {
                        Some(pre) => decisions.preemptions.extend(pre),
                        None => {
                            preemption_failed.insert((shape, m));
                            self.reclaim_backoff
                                .insert(q as u32, self.now + RECLAIM_BACKOFF);
                            break;
                        }
                    }
                }
            }
        }
        self.last_stats = stats;
        decisions
    }

    /// The next job of queue `q` after `after`, in queue order, that would run within its
    /// project's guarantee even counting the jobs ahead of it waiting for their preemptions, and
    /// has none in flight; with the model it would reclaim.
    fn next_reclaimer(&self, q: usize, after: Option<OrderKey>) -> Option<(OrderKey, JobId, u8)> {
        let p = &self.projects[q];
        let mut pending = vec![0u64; p.alloc.len()];
        for key in self.queues[q].all.iter().take(RECLAIM_SCAN) {
            let e = &self.jobs[&key.job];
            let Some(&m) = e.models.iter().find(|&&m| {
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

    fn reservation_of(&self, job: JobId, plan: &ReservationPlan) -> Reservation {
        Reservation {
            job,
            start_at: plan.start_at,
            nodes: plan
                .nodes
                .iter()
                .map(|(n, _)| self.cluster.nodes[*n as usize].id)
                .collect(),
        }
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
        failures: &mut FailureMemo,
        stats: &mut PassStats,
    ) -> Attempt {
        let e = &self.jobs[&job];
        let end_est = self.now + e.estimate(self.policy.default_runtime);
        // Reservations that start before this job would end: it must leave their resources alone.
        let blocking: u64 = reservations
            .iter()
            .enumerate()
            .filter(|(_, r)| r.start_at < end_est)
            .fold(0, |mask, (i, _)| mask | (1 << i.min(63)));
        let project = &self.projects[e.project as usize];
        let mut guaranteed: Vec<u8> = Vec::new();
        let mut borrowing: Vec<u8> = Vec::new();
        for &m in &e.models {
            match self.mode(e, m) {
                Some(Mode::Guaranteed) => guaranteed.push(m),
                Some(Mode::Borrowing) => borrowing.push(m),
                None => {}
            }
        }
        if !e.models.is_empty() && guaranteed.is_empty() && borrowing.is_empty() {
            return Attempt::QuotaBlocked;
        }
        let guaranteed_model = guaranteed.first().copied();
        // Nodes held for this job are out of the capacity counts: a holder skips the quick check.
        let holder = self.holds.contains_key(&job);
        if !holder {
            guaranteed.retain(|&m| self.may_fit_now(&e.req, m));
            borrowing.retain(|&m| self.may_fit_now(&e.req, m));
        }
        let tried = guaranteed
            .iter()
            .chain(&borrowing)
            .fold(0u64, |mask, &m| mask | (1 << m));
        if !e.models.is_empty() && tried == 0 {
            return Attempt::NoRoom { guaranteed_model };
        }
        // A job no easier to place than one that already failed this pass fails too; a job
        // holding nodes from a preemption is the exception, those nodes are its alone.
        let guaranteed_mask = guaranteed.iter().fold(0u64, |mask, &m| mask | (1 << m));
        let memo_key = (e.shape, project.pool_sig, tried, guaranteed_mask);
        let profile = (e.req.cpu, e.req.mem, blocking);
        if !holder && failures.dominated(memo_key, profile) {
            return Attempt::NoRoom { guaranteed_model };
        }
        let exclusions_for = |mode: Mode| -> Option<Exclusions> {
            let mut excl = Exclusions::default();
            for (i, r) in reservations.iter().enumerate() {
                if blocking & (1 << i.min(63)) == 0 || (mode == Mode::Guaranteed && !r.guaranteed) {
                    continue;
                }
                for (node, res) in &r.nodes {
                    let x = excl.entry(*node).or_default();
                    x.gpu_mask |= res.gpu_mask;
                    x.cpu += res.cpu;
                    x.mem += res.mem;
                }
            }
            (!excl.is_empty()).then_some(excl)
        };
        let pools = project.pools.clone();
        // Guaranteed capacity first, then borrowing. CPU-only work holds no GPU class quota and
        // counts as guaranteed.
        let attempts = if e.models.is_empty() {
            vec![(Vec::new(), Mode::Guaranteed)]
        } else {
            vec![(guaranteed, Mode::Guaranteed), (borrowing, Mode::Borrowing)]
        };
        let gpu_job = !e.models.is_empty();
        for (models, mode) in attempts {
            if gpu_job && models.is_empty() {
                continue;
            }
            stats.placement_attempts += 1;
            let excl = exclusions_for(mode);
            let ctx = PlaceCtx {
                max_scored: self.policy.max_scored_nodes,
                job,
                pools: &pools,
                exclusions: excl.as_ref(),
            };
            let placed = place(
                &self.cluster,
                &models,
                &self.jobs[&job].req,
                &ctx,
                self.policy.placement,
                &mut self.frag,
            );
            if let Some((model, tasks)) = placed {
                return Attempt::Started(self.commit(job, model, mode, tasks));
            }
        }
        if !holder {
            failures.record(memo_key, profile);
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
            let on_node = &mut self.node_jobs[t.node as usize];
            if !on_node.contains(&job) {
                on_node.push(job);
            }
        }
        self.touch_usage(project);
        let p = &mut self.projects[project as usize];
        p.running_milli += total;
        if let Some(m) = model {
            p.alloc[m as usize] += total;
        }
        let q = self.queue_of(project);
        self.queues[q].remove(&key, shape);
        if self.queues[q].len() == 0 {
            self.busy_queues.remove(&q);
        }
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
    /// Victims are the preemptible jobs of projects running above their guarantee. Each node is
    /// priced by the work its evictions would lose (lowest priority and least work lost first);
    /// the cheapest nodes per task slot are taken until the gang fits.
    fn plan_preemption(&mut self, job: JobId, model: u8) -> Option<Vec<Preemption>> {
        let e = &self.jobs[&job];
        let beneficiary_project = e.project;
        let req = e.req;
        let pools = self.projects[beneficiary_project as usize].pools.clone();
        let ctx = PlaceCtx {
            max_scored: self.policy.max_scored_nodes,
            job,
            pools: &pools,
            exclusions: None,
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

    /// The earliest time `job` could start if running work ends as estimated, with its planned
    /// resources. Earlier reservations keep theirs. Works on the live cluster and undoes every
    /// change before it returns, so no copy of the fleet is made.
    fn plan_reservation(
        &mut self,
        job: JobId,
        earlier: &[ReservationPlan],
    ) -> Option<ReservationPlan> {
        let e = &self.jobs[&job];
        let req = e.req;
        let models = e.models.clone();
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
        let mut preempting: Vec<(Time, JobId)> = self
            .running_by_end
            .iter()
            .filter_map(|&(_, j)| match self.jobs[&j].run {
                Run::Running {
                    preempting: Some((kill_at, _)),
                    ..
                } => Some((kill_at.max(self.now), j)),
                _ => None,
            })
            .collect();
        preempting.sort_unstable();
        let mut by_end = self.running_by_end.iter().copied().filter(|(_, j)| {
            !matches!(
                self.jobs[j].run,
                Run::Running {
                    preempting: Some(_),
                    ..
                }
            )
        });
        let mut by_kill = preempting.into_iter();
        let mut next_end = by_end.next().map(|(t, j)| (t.max(self.now), j));
        let mut next_kill = by_kill.next();
        let ctx = PlaceCtx {
            max_scored: self.policy.max_scored_nodes,
            job,
            pools: &pools,
            exclusions: None,
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
                if let Run::Running { tasks, .. } = &je.run {
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
        };
        let req = e.req;
        let models = e.models.clone();
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
        let busy: BTreeSet<usize> = (0..self.queues.len())
            .filter(|&q| self.queues[q].len() > 0)
            .collect();
        if busy != self.busy_queues {
            return Err("the set of busy queues is out of step".into());
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

/// Placements that failed in this pass, by (shape, eligible pools, models tried), kept as the
/// least demanding (CPU, memory, reservations to respect) profiles. Capacity only shrinks during a
/// pass, so a job at least as demanding as a failed one can not fit either.
#[derive(Default)]
struct FailureMemo {
    failed: FxHashMap<MemoKey, Vec<Profile>>,
}

/// (shape, eligible pools, models tried, of which guaranteed).
type MemoKey = (u32, u64, u64, u64);
/// (CPU, memory, reservations to respect as a bit set).
type Profile = (u64, u64, u64);

fn at_most(a: Profile, b: Profile) -> bool {
    a.0 <= b.0 && a.1 <= b.1 && a.2 & !b.2 == 0
}

impl FailureMemo {
    fn dominated(&self, key: MemoKey, p: Profile) -> bool {
        self.failed
            .get(&key)
            .is_some_and(|v| v.iter().any(|&f| at_most(f, p)))
    }

    fn record(&mut self, key: MemoKey, p: Profile) {
        let v = self.failed.entry(key).or_default();
        v.retain(|&f| !at_most(p, f));
        v.push(p);
    }
}

/// One change to the cluster's free capacity, kept so that planning can undo it.
struct Change {
    allocate: bool,
    node: u32,
    gpus: SmallVec<[u32; 8]>,
    milli: u16,
    cpu: u64,
    mem: u64,
}

impl Change {
    fn apply(&self, cluster: &mut Cluster, undo: bool) {
        if self.allocate != undo {
            cluster.allocate(self.node, &self.gpus, self.milli, self.cpu, self.mem);
        } else {
            cluster.release(self.node, &self.gpus, self.milli, self.cpu, self.mem);
        }
    }
}

enum Attempt {
    Started(Start),
    QuotaBlocked,
    NoRoom { guaranteed_model: Option<u8> },
}

/// A project's past usage (GPU-milliseconds) decayed to `now`, with its running allocation
/// integrated since the last update: usage decays by half every half-life.
fn decayed_usage(slot: &ProjectSlot, now: Time, half_life: Span) -> f64 {
    let dt = now.since(slot.usage_at).0 as f64;
    if dt <= 0.0 {
        return slot.usage;
    }
    let h = half_life.0 as f64;
    let decay = 0.5f64.powf(dt / h);
    let rate = slot.running_milli as f64 / 1000.0;
    slot.usage * decay + rate * (h / std::f64::consts::LN_2) * (1.0 - decay)
}

fn pool_sig(pools: &[bool]) -> u64 {
    pools
        .iter()
        .enumerate()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, (i, &ok)| {
            if ok {
                (h ^ i as u64).wrapping_mul(0x0100_0000_01b3)
            } else {
                h
            }
        })
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
