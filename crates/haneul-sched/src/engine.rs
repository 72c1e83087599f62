//! The engine: events in, decisions out.

mod backfill;
mod explain;
mod invariants;
mod pass;
mod preempt;
mod reason;
mod restore;
mod table;

pub use explain::IdleCauses;

use crate::cluster::{Cluster, FULL};
use crate::decision::{Decisions, Placement, Preemption, Reservation, Start, TaskPlacement};
use crate::error::SchedError;
use crate::frag::{FragModel, Measure, TaskKind, kind_milli};
use crate::placement::{EvictionView, Exclusions, PlaceCtx, Reserved, TaskReq, TaskSlot, place};
use crate::policy::{Ordering, PlacementStrategy, Policy};
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
    /// Boxed: most entries are queued jobs, and inline this state would make every one of
    /// them pay for it (72 bytes against 16).
    Running(Box<Running>),
}

#[derive(Debug, Clone)]
struct Running {
    started: Time,
    end_est: Time,
    model: Option<u8>,
    borrowing: bool,
    tasks: Vec<TaskSlot>,
    preempting: Option<(Time, JobId)>,
}

impl Run {
    fn running(&self) -> Option<&Running> {
        match self {
            Run::Running(r) => Some(r),
            Run::Queued { .. } => None,
        }
    }
    fn running_mut(&mut self) -> Option<&mut Running> {
        match self {
            Run::Running(r) => Some(r),
            Run::Queued { .. } => None,
        }
    }
}

/// What the engine keeps of a job: only what scheduling reads. The job's spec stays with the
/// caller; a queue of 100,000 jobs pays this entry (at the job table's capacity) per job, so
/// every field here is a cost per queued job.
#[derive(Debug, Clone)]
struct JobEntry {
    project: u32,
    shape: u32,
    /// Its place in its queue; `key.job` is the job's id.
    key: OrderKey,
    req: TaskReq,
    /// Allowed GPU models (none for CPU-only jobs).
    models: ModelSet,
    /// The run time planning assumes: the estimate or the limit, the shorter, or the policy's
    /// default (fixed for the engine's life, so resolved once at submission).
    est: Span,
    /// Time between the preemption signal and the kill.
    grace: Span,
    run: Run,
    /// The pass that last tried it and could not start it (see [`Engine::pending_reason`]).
    tried: u64,
    preemptible: bool,
    /// In the express lane ([`Policy::express_gpu_time`]).
    express: bool,
    /// Needs whole nodes while [`Policy::longest_first_alone`] is on: in its queue's `long`
    /// index, under [`JobEntry::long`].
    long: bool,
}

impl JobEntry {
    fn id(&self) -> JobId {
        self.key.job
    }
    fn total_milli(&self) -> u64 {
        self.req.gpus as u64 * self.req.milli as u64 * self.req.replicas as u64
    }
    fn estimate(&self) -> Span {
        self.est
    }
    /// Its key in the `long` index, (estimate in ms, GPUs of the gang), when it is there.
    fn long(&self) -> Option<(i64, u64)> {
        self.long.then(|| {
            (
                self.est.0.max(0),
                self.req.gpus as u64 * self.req.replicas as u64,
            )
        })
    }
}

/// GPU model indices as a bit set (a fleet has at most 64 models), read in index order: eight
/// bytes in the job's entry instead of a list on the heap.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct ModelSet(u64);

impl ModelSet {
    fn is_empty(self) -> bool {
        self.0 == 0
    }
    fn len(self) -> usize {
        self.0.count_ones() as usize
    }
    fn contains(self, m: u8) -> bool {
        m < 64 && self.0 & (1 << m) != 0
    }
    fn first(self) -> Option<u8> {
        (!self.is_empty()).then(|| self.0.trailing_zeros() as u8)
    }
    fn iter(self) -> impl Iterator<Item = u8> {
        let mut rest = self.0;
        std::iter::from_fn(move || {
            let m = (rest != 0).then(|| rest.trailing_zeros() as u8)?;
            rest &= rest - 1;
            Some(m)
        })
    }
    fn to_vec(self) -> Vec<u8> {
        self.iter().collect()
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

/// A running job in the preemptible index: latest start first, then the lowest node it runs
/// on, so that equal losses come in fleet order.
type WorkKey = (Reverse<Time>, u32, JobId);

/// The lowest node a running job's tasks use.
fn first_node(tasks: &[TaskSlot]) -> u32 {
    tasks.iter().map(|t| t.node).min().unwrap_or(0)
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
    /// Queued jobs of the express lane, of every project, in queue order.
    express: Queue,
    shapes: Shapes,
    jobs: table::JobTable,
    running_by_end: BTreeSet<(Time, JobId)>,
    holds: BTreeMap<JobId, (Vec<u32>, Time)>,
    node_index: FxHashMap<NodeId, u32>,
    /// Running jobs per node index, for preemption planning and node loss.
    node_jobs: Vec<Vec<JobId>>,
    /// Per node index: when its running work is expected to end (the latest estimate), for
    /// end-aligned placement.
    busy_until: Vec<Time>,
    /// Per GPU model: the running work a reclaim may stop (preemptible and not already
    /// stopping), by job size in milli-GPU, then latest start first, then first node. Within a
    /// size that is the order of work lost, so preemption planning reads the cheapest victims
    /// first instead of walking the fleet.
    preemptible: Vec<BTreeMap<u64, BTreeSet<WorkKey>>>,
    /// Running jobs asked to stop for a reclaim, with their kill time: reservation planning
    /// releases them then, and reads them from here instead of looking up every running job.
    stopping: BTreeMap<JobId, Time>,
    fits_ever: FxHashMap<(ShapeKey, u64, u64, u32), bool>,
    /// GPUs of the fleet (nodes are fixed at construction).
    fleet_gpus: u64,
    now: Time,
    last_stats: PassStats,
    /// Per project: no reclaim planning before this time, after a plan found no victims.
    reclaim_backoff: FxHashMap<u32, Time>,
    /// What the last pass reserved, per node, for [`Engine::idle_causes`].
    last_reservations: Vec<(JobId, u32, Reserved)>,
    /// Planned starts of the last pass's reservations, for pending reasons.
    last_reservation_starts: Vec<(JobId, Time)>,
    /// Passes run so far; a job's `tried` names the last one that tried it.
    passes: u64,
    /// Shapes the last pass found no room for, by shape index.
    last_closed: Vec<bool>,
    /// The job that stopped the last pass in strict order (no skipping of blocked jobs).
    last_head: Option<JobId>,
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
            express: Queue::default(),
            shapes: Shapes::default(),
            jobs: table::JobTable::default(),
            running_by_end: BTreeSet::new(),
            holds: BTreeMap::new(),
            node_index,
            node_jobs: vec![Vec::new(); fleet.nodes.len()],
            busy_until: vec![Time::ZERO; fleet.nodes.len()],
            preemptible: Vec::new(),
            stopping: BTreeMap::new(),
            fits_ever: FxHashMap::default(),
            fleet_gpus: 0,
            now: Time::ZERO,
            last_stats: PassStats::default(),
            reclaim_backoff: FxHashMap::default(),
            last_reservations: Vec::new(),
            last_reservation_starts: Vec::new(),
            passes: 0,
            last_closed: Vec::new(),
            last_head: None,
        };
        engine.preemptible = vec![BTreeMap::new(); engine.cluster.models.len()];
        let mut capacity = vec![0u64; engine.cluster.models.len()];
        for n in &engine.cluster.nodes {
            if let Some(m) = n.model {
                capacity[m as usize] += n.gpus() as u64;
            }
        }
        engine.fleet_gpus = capacity.iter().sum();
        let measure = if engine.policy.placement == PlacementStrategy::FgdPaper {
            Measure::Paper
        } else {
            Measure::Haneul
        };
        engine.frag = FragModel::new(measure, engine.policy.frag, capacity);
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

    /// The queue's place in a pass: fair share, aged by how long its first job has waited.
    fn queue_key(&self, q: usize) -> f64 {
        let share = self.share_of(q);
        let h = self.policy.age_half_life.0;
        if h <= 0 || share <= 0.0 {
            return share;
        }
        let Some(head) = self.queues[q].first() else {
            return share;
        };
        let waited = self.now.since(head.submitted).0.max(0) as f64;
        share * 0.5f64.powf(waited / h as f64)
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
        let models = if gpus == 0 {
            ModelSet::default()
        } else {
            let known = (0..self.cluster.models.len()).fold(0u64, |all, m| all | 1 << m);
            ModelSet(mask & known)
        };
        let shape_key = ShapeKey {
            gpus,
            milli,
            replicas: spec.replicas,
            models: mask,
        };
        let capacity = self.fits_ever(&req, shape_key, &models.to_vec(), project);
        if capacity < spec.replicas as u64 {
            return Err(SchedError::TooLarge {
                needed: spec.replicas,
                per_task: describe_task(spec),
                capacity,
            });
        }
        let shape = self.shapes.intern(shape_key);
        let priority = (self.policy.ordering != Ordering::Fifo).then_some(spec.priority);
        let est = {
            let s = &job.spec;
            match (s.runtime_estimate, s.time_limit) {
                (Some(e), Some(l)) => e.min(l),
                (Some(e), None) => e,
                (None, Some(l)) => l,
                (None, None) => self.policy.default_runtime,
            }
        };
        let large = spec.replicas > 1 || (milli == FULL && gpus >= self.cluster.max_node_gpus);
        let credit = if large || !self.policy.estimate_age_large_only {
            estimate_credit(
                est,
                self.policy.estimate_age_pct,
                self.policy.estimate_age_full_at,
            )
        } else {
            0
        };
        let key = OrderKey::new(priority, Time(job.submitted_at.0 - credit), job.id);
        let express = spec.replicas == 1
            && gpus > 0
            && (est.0.max(0) as i128) * (gpus as i128) * (milli as i128)
                <= self.policy.express_gpu_time.0 as i128 * FULL as i128;
        let long = self.policy.longest_first_alone && large && gpus > 0;
        self.frag.observe(task_kind(spec, mask), spec.replicas);
        let q = self.queue_of(project);
        self.queues[q].insert(key, shape);
        if express {
            self.express.insert(key, shape);
        }
        let entry = JobEntry {
            project,
            shape,
            key,
            req,
            models,
            est,
            grace: spec.grace,
            run: Run::Queued { victims: 0 },
            tried: 0,
            preemptible: spec.preemptible,
            express,
            long,
        };
        if let Some((est, gpus)) = entry.long() {
            self.queues[q].insert_long(key, est, gpus);
        }
        self.busy_queues.insert(q);
        self.jobs.insert(entry);
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
            reason::node_capacity(n, req)
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
                if entry.express {
                    self.express.remove(&key, shape);
                }
                if let Some((est, gpus)) = entry.long() {
                    self.queues[q].remove_long(key, est, gpus);
                }
                if self.queues[q].len() == 0 {
                    self.busy_queues.remove(&q);
                }
                self.jobs.remove(&job);
                self.clear_hold(job);
                Ok(())
            }
            Run::Running(_) => self.finish(job, now),
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
        let (project, key, shape, express, long) = (
            entry.project,
            entry.key,
            entry.shape,
            entry.express,
            entry.long(),
        );
        let q = self.queue_of(project);
        self.queues[q].insert(key, shape);
        if express {
            self.express.insert(key, shape);
        }
        if let Some((est, gpus)) = long {
            self.queues[q].insert_long(key, est, gpus);
        }
        self.busy_queues.insert(q);
        Ok(())
    }

    fn release_running(&mut self, job: JobId) -> Result<(), SchedError> {
        let entry = self.jobs.get(&job).ok_or(SchedError::UnknownJob(job))?;
        let Some(&Running {
            started,
            end_est,
            model,
            preempting,
            ..
        }) = entry.run.running()
        else {
            return Err(SchedError::WrongState {
                job,
                state: "queued",
                expected: "running",
            });
        };
        if preempting.is_none()
            && entry.preemptible
            && let Some(Running { tasks, .. }) = entry.run.running()
        {
            let key = (Reverse(started), first_node(tasks), job);
            self.unindex_preemptible(model, entry.total_milli(), key);
        }
        let entry = &self.jobs[&job];
        let Some(Running { tasks, .. }) = entry.run.running() else {
            unreachable!("checked above");
        };
        let (cpu, mem) = (entry.req.cpu, entry.req.mem);
        let nodes: SmallVec<[u32; 8]> = tasks.iter().map(|t| t.node).collect();
        for t in tasks {
            self.cluster.release(t.node, &t.gpus, t.milli, cpu, mem);
            self.node_jobs[t.node as usize].retain(|j| *j != job);
        }
        for n in nodes {
            self.busy_until[n as usize] = self.node_jobs[n as usize]
                .iter()
                .filter_map(|j| match self.jobs[j].run {
                    Run::Running(ref r) => Some(r.end_est),
                    Run::Queued { .. } => None,
                })
                .max()
                .unwrap_or(Time::ZERO);
        }
        let total = entry.total_milli();
        let project = entry.project;
        self.running_by_end.remove(&(end_est, job));
        if preempting.is_some() {
            self.stopping.remove(&job);
        }
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
        self.jobs.get(&job).map(|e| match e.run.running() {
            None => JobState::Queued,
            Some(Running {
                preempting: Some((kill_at, _)),
                ..
            }) => JobState::Preempting { kill_at: *kill_at },
            Some(Running {
                started, borrowing, ..
            }) => JobState::Running {
                started: *started,
                borrowing: *borrowing,
            },
        })
    }

    pub fn placement(&self, job: JobId) -> Option<Placement> {
        match &self.jobs.get(&job)?.run {
            Run::Running(r) => Some(self.to_placement(&r.tasks)),
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

    /// Adds running work to the preemptible index, when it belongs there.
    fn index_preemptible(&mut self, model: Option<u8>, milli: u64, key: WorkKey) {
        if let Some(m) = model {
            self.preemptible[m as usize]
                .entry(milli)
                .or_default()
                .insert(key);
        }
    }

    fn unindex_preemptible(&mut self, model: Option<u8>, milli: u64, key: WorkKey) {
        let Some(m) = model else {
            return;
        };
        let by_size = &mut self.preemptible[m as usize];
        if let Some(set) = by_size.get_mut(&milli) {
            set.remove(&key);
            if set.is_empty() {
                by_size.remove(&milli);
            }
        }
    }

    fn mode(&self, e: &JobEntry, model: u8) -> Option<Mode> {
        let p = &self.projects[e.project as usize];
        let m = model as usize;
        let after = p.alloc[m] + e.total_milli();
        if after <= p.guarantee[m] {
            return Some(Mode::Guaranteed);
        }
        if !self.policy.borrowing || !e.preemptible {
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

/// A project's past usage (GPU-milliseconds) decayed to `now`, with its running allocation
/// integrated since the last update: usage decays by half every half-life.
/// How much earlier than its submission a job sorts in its queue (milliseconds): `pct` percent of
/// its estimate, scaled down by `estimate / full_at` below `full_at` (docs/scheduling.md,
/// section 2).
fn estimate_credit(est: Span, pct: u32, full_at: Span) -> i64 {
    let est = est.0.max(0);
    let full = est / 100 * pct as i64;
    if full_at.0 <= 0 || est >= full_at.0 {
        return full;
    }
    (full as i128 * est as i128 / full_at.0 as i128) as i64
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_entry_stays_small() {
        // Every queued job pays its entry (100,000 of them at the centre's scale, and more at
        // the table's capacity): a field added here is paid that many times.
        let size = std::mem::size_of::<JobEntry>();
        assert!(size <= 128, "a job's entry grew to {size} bytes");
        assert!(std::mem::size_of::<Run>() <= 16);
    }

    #[test]
    fn a_model_set_reads_its_models_in_index_order() {
        let set = ModelSet(1 << 63 | 1 << 5 | 1);
        assert_eq!(set.to_vec(), vec![0, 5, 63]);
        assert_eq!(set.len(), 3);
        assert_eq!(set.first(), Some(0));
        assert!(set.contains(63) && set.contains(5) && !set.contains(4) && !set.contains(64));
        assert!(ModelSet::default().is_empty());
        assert_eq!(ModelSet::default().first(), None);
        assert_eq!(ModelSet::default().iter().count(), 0);
    }
}
