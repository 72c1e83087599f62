//! The discrete-event driver: a virtual clock that feeds a workload to the unchanged engine and
//! acts on its decisions. It owns time: arrivals, starts, completions, time limits, preemptions
//! with grace, node failures and repairs. It batches everything that happens at one instant into
//! one `schedule()` call and calls the engine only when something changed.

use crate::catalogue::{Catalogue, GpuClass};
use crate::error::SimError;
use crate::fleet_file::FleetSpec;
use crate::workload::Workload;
use haneul_model::{GpuModel, JobId, NodeId, NodeState, Span, Time};
use haneul_sched::{Decisions, Engine, IdleCauses, Policy, ReasonCode, SchedError};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};

/// Node failures: each node fails after an exponential time with this mean, and comes back
/// after `repair_hours`. Jobs on a failed node lose the work of their current run.
#[derive(Debug, Clone, Copy, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Failures {
    pub mtbf_node_hours: f64,
    pub repair_hours: f64,
}

#[derive(Debug, Clone)]
pub struct SimConfig {
    pub policy_name: String,
    pub policy: Policy,
    /// The catalogue class the workload's run times were measured on.
    pub measured_on: String,
    /// Give the engine each job's true run time as its estimate when the workload has none
    /// (perfect estimates, the usual assumption of backfill studies).
    pub exact_estimates: bool,
    pub failures: Option<Failures>,
    pub seed: u64,
    /// Check the engine's invariants after every pass (tests).
    pub check_invariants: bool,
    /// Zero: the engine runs at every instant something changed (exact). Above zero: it runs
    /// only on multiples of this interval, as a controller loop with a fixed cadence would
    /// (Slurm's `sched_interval`); arrivals and ends in between wait for the next tick.
    pub schedule_interval: Span,
    /// Attribute idle GPU-time to its causes after every instant ([`IdleTime`]); costs one walk
    /// of the nodes per instant.
    pub explain: bool,
}

/// Idle GPU-time of a run by cause (milli-GPU x ms), from the engine's
/// [`Engine::idle_causes`] after every instant, held until the next. Down nodes and work thrown
/// away are in [`RunResult`] already.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct IdleTime {
    pub reserved: f64,
    pub reclaim_hold: f64,
    pub quota: f64,
    pub not_started: f64,
    pub fragmentation: f64,
    pub no_demand: f64,
}

impl IdleTime {
    fn add(&mut self, c: &IdleCauses, dt: f64) {
        self.reserved += c.reserved as f64 * dt;
        self.reclaim_hold += c.reclaim_hold as f64 * dt;
        self.quota += c.quota as f64 * dt;
        self.not_started += c.not_started as f64 * dt;
        self.fragmentation += c.fragmentation as f64 * dt;
        self.no_demand += c.no_demand as f64 * dt;
    }
}

/// How a job ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Pending,
    Completed,
    TimedOut,
    /// The engine refused it (it can never fit the fleet).
    Rejected,
}

/// Per-model time integrals (milli-GPU x ms), for energy and per-model reports.
#[derive(Debug, Clone, Default)]
pub struct ModelUse {
    pub model: String,
    pub gpus: u64,
    /// Relative to the class the workload was measured on.
    pub speed: f64,
    pub busy_milli_ms: f64,
}

/// The integrals at the last arrival: the steady, loaded part of a run, before the drain.
#[derive(Debug, Clone, Default)]
pub struct Window {
    pub busy_milli_ms: Vec<f64>,
    pub alloc_milli_ms: f64,
    pub lost_milli_ms: f64,
}

/// A piecewise-constant quantity averaged into fixed-width buckets; the width doubles when the
/// run outgrows the buckets, so memory stays bounded.
#[derive(Debug, Clone)]
pub struct Series {
    pub width_ms: i64,
    pub sums: Vec<f64>,
    max_buckets: usize,
}

impl Series {
    fn new(width_ms: i64, max_buckets: usize) -> Series {
        Series {
            width_ms: width_ms.max(1),
            sums: Vec::new(),
            max_buckets,
        }
    }

    /// Adds `value` held over [from, to).
    fn add(&mut self, from: i64, to: i64, value: f64) {
        if to <= from {
            return;
        }
        while to / self.width_ms >= self.max_buckets as i64 {
            let merged: Vec<f64> = self.sums.chunks(2).map(|c| c.iter().sum()).collect();
            self.sums = merged;
            self.width_ms *= 2;
        }
        let mut t = from;
        while t < to {
            let b = (t / self.width_ms) as usize;
            let end = ((b as i64 + 1) * self.width_ms).min(to);
            if self.sums.len() <= b {
                self.sums.resize(b + 1, 0.0);
            }
            self.sums[b] += value * (end - t) as f64;
            t = end;
        }
    }

    /// Bucket start (seconds) and time-averaged value.
    pub fn points(&self) -> Vec<(f64, f64)> {
        self.sums
            .iter()
            .enumerate()
            .map(|(i, s)| {
                (
                    i as f64 * self.width_ms as f64 / 1000.0,
                    s / self.width_ms as f64,
                )
            })
            .collect()
    }
}

/// Per-project allocation and demand (queued plus running milli-GPU), averaged into shared
/// fixed-width buckets, for fairness under contention. Each project is integrated lazily, when
/// its own jobs change, so the cost is per event, not per event and project.
#[derive(Debug, Clone)]
pub struct ProjectSeries {
    pub width_ms: i64,
    /// `alloc[p][b]` and `demand[p][b]`: milli-GPU x ms in bucket `b`.
    pub alloc: Vec<Vec<f64>>,
    pub demand: Vec<Vec<f64>>,
    max_buckets: usize,
    alloc_now: Vec<u64>,
    demand_now: Vec<u64>,
    since: Vec<i64>,
}

impl ProjectSeries {
    fn new(projects: usize, width_ms: i64, max_buckets: usize) -> Self {
        ProjectSeries {
            width_ms: width_ms.max(1),
            alloc: vec![Vec::new(); projects],
            demand: vec![Vec::new(); projects],
            max_buckets,
            alloc_now: vec![0; projects],
            demand_now: vec![0; projects],
            since: vec![0; projects],
        }
    }

    /// Integrates project `p` up to `now`, then applies the changes.
    fn change(&mut self, p: usize, now: i64, d_alloc: i64, d_demand: i64) {
        self.flush(p, now);
        self.alloc_now[p] = (self.alloc_now[p] as i64 + d_alloc) as u64;
        self.demand_now[p] = (self.demand_now[p] as i64 + d_demand) as u64;
    }

    fn flush(&mut self, p: usize, now: i64) {
        let from = self.since[p];
        self.since[p] = now;
        if now <= from || (self.alloc_now[p] == 0 && self.demand_now[p] == 0) {
            return;
        }
        while now / self.width_ms >= self.max_buckets as i64 {
            for v in self.alloc.iter_mut().chain(self.demand.iter_mut()) {
                *v = v.chunks(2).map(|c| c.iter().sum()).collect();
            }
            self.width_ms *= 2;
        }
        let (a, d) = (self.alloc_now[p] as f64, self.demand_now[p] as f64);
        let mut t = from;
        while t < now {
            let b = (t / self.width_ms) as usize;
            let end = ((b as i64 + 1) * self.width_ms).min(now);
            for v in [&mut self.alloc[p], &mut self.demand[p]] {
                if v.len() <= b {
                    v.resize(b + 1, 0.0);
                }
            }
            self.alloc[p][b] += a * (end - t) as f64;
            self.demand[p][b] += d * (end - t) as f64;
            t = end;
        }
    }

    fn flush_all(&mut self, now: i64) {
        for p in 0..self.since.len() {
            self.flush(p, now);
        }
    }
}

/// Everything a run measured; [`crate::metrics`] turns it into a report.
#[derive(Debug, Clone)]
pub struct RunResult {
    pub policy: String,
    pub first_start: Vec<i64>,
    pub end: Vec<i64>,
    pub outcome: Vec<Outcome>,
    /// Allocated milli-GPU x ms per project (all runs, lost work included).
    pub project_alloc: Vec<f64>,
    /// The same in reference-class terms (scaled by the throughput of the GPUs used), which is
    /// what fairness compares with demand.
    pub project_ref: Vec<f64>,
    pub preemptions: u64,
    pub node_failures: u64,
    /// milli-GPU x ms of work thrown away by preemption without checkpoint or node loss.
    pub lost_milli_ms: f64,
    /// Reference-class milli-GPU x ms of work delivered (kept).
    pub delivered_ref_milli_ms: f64,
    pub alloc_milli_ms: f64,
    pub free_milli_ms: f64,
    pub stranded_milli_ms: f64,
    pub makespan_ms: i64,
    pub capacity_milli: u64,
    pub models: Vec<ModelUse>,
    pub util_series: Series,
    pub queue_series: Series,
    pub schedule_calls: u64,
    /// The engine's own counters summed over passes: queued jobs looked at, placements tried.
    pub jobs_visited: u64,
    pub placement_attempts: u64,
    pub unknown_classes: Vec<String>,
    /// The last arrival, and the integrals up to it.
    pub window_ms: i64,
    pub window: Option<Window>,
    pub project_series: ProjectSeries,
    /// With [`SimConfig::explain`]: where the free GPU-time went.
    pub idle: Option<IdleTime>,
    /// With [`SimConfig::explain`]: job-milliseconds spent queued, by the pending reason the
    /// engine gave after each instant.
    pub waiting_job_ms: BTreeMap<ReasonCode, f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    /// A run reaches its end: completion or time limit.
    End,
    /// A preempted run is killed at the end of its grace.
    Kill,
    NodeDown,
    NodeUp,
    /// A scheduling tick, with `schedule_interval`.
    Tick,
}

type Event = Reverse<(i64, Kind, u64, u32)>;

struct NodeTrack {
    cap: u64,
    used: u64,
    up: bool,
}

struct State<'a> {
    w: &'a Workload,
    engine: Engine,
    heap: BinaryHeap<Event>,
    now: i64,
    attempt: Vec<u32>,
    run_start: Vec<i64>,
    run_model: Vec<u8>,
    run_timeout: Vec<bool>,
    run_tasks: Vec<Vec<(u32, u64)>>,
    remaining: Vec<i64>,
    r: RunResult,
    thr: Vec<f64>,
    thr_ref: f64,
    model_index: BTreeMap<GpuModel, u8>,
    nodes: Vec<NodeTrack>,
    alloc: u64,
    model_alloc: Vec<u64>,
    free: u64,
    stranded: u64,
    queued: u64,
    done: u64,
    /// The engine's split of the free capacity since the last instant (with `explain`).
    causes: Option<IdleCauses>,
    /// Queued jobs by pending reason after the last instant (with `explain`).
    waiting: Vec<(ReasonCode, u64)>,
}

fn stranded_of(n: &NodeTrack) -> u64 {
    if n.up && n.used > 0 && n.used < n.cap {
        n.cap - n.used
    } else {
        0
    }
}

fn free_of(n: &NodeTrack) -> u64 {
    if n.up { n.cap - n.used } else { 0 }
}

impl<'a> State<'a> {
    fn node_change(&mut self, node: u32, f: impl FnOnce(&mut NodeTrack)) {
        let n = &mut self.nodes[node as usize];
        self.free -= free_of(n);
        self.stranded -= stranded_of(n);
        f(n);
        self.free += free_of(n);
        self.stranded += stranded_of(n);
    }

    /// Moves the clock to `t`, integrating every time-weighted quantity over the step.
    fn advance(&mut self, t: i64) {
        if self.r.window.is_none() && t >= self.r.window_ms {
            self.integrate(self.r.window_ms.max(self.now));
            self.r.window = Some(Window {
                busy_milli_ms: self.r.models.iter().map(|m| m.busy_milli_ms).collect(),
                alloc_milli_ms: self.r.alloc_milli_ms,
                lost_milli_ms: self.r.lost_milli_ms,
            });
        }
        self.integrate(t);
    }

    fn integrate(&mut self, t: i64) {
        let dt = (t - self.now) as f64;
        if dt > 0.0 {
            self.r.alloc_milli_ms += self.alloc as f64 * dt;
            self.r.free_milli_ms += self.free as f64 * dt;
            self.r.stranded_milli_ms += self.stranded as f64 * dt;
            if let (Some(c), Some(idle)) = (&self.causes, &mut self.r.idle) {
                debug_assert_eq!(c.total(), self.free, "idle causes must partition free GPUs");
                idle.add(c, dt);
            }
            for &(code, n) in &self.waiting {
                *self.r.waiting_job_ms.entry(code).or_default() += n as f64 * dt;
            }
            for (m, a) in self.model_alloc.iter().enumerate() {
                self.r.models[m].busy_milli_ms += *a as f64 * dt;
            }
            let util = self.alloc as f64 / self.r.capacity_milli as f64;
            self.r.util_series.add(self.now, t, util);
            self.r.queue_series.add(self.now, t, self.queued as f64);
        }
        self.now = t;
    }

    fn wall_for(&self, work_ref_ms: i64, model: u8) -> i64 {
        (work_ref_ms as f64 * self.thr_ref / self.thr[model as usize]).ceil() as i64
    }

    fn work_in(&self, wall_ms: i64, model: u8) -> i64 {
        (wall_ms as f64 * self.thr[model as usize] / self.thr_ref).floor() as i64
    }

    /// Ends job `j`'s current run: frees its GPUs in the driver's books and returns
    /// (elapsed ms, gang milli-GPU).
    fn close_run(&mut self, j: usize) -> (i64, u64) {
        let elapsed = self.now - self.run_start[j];
        let milli = self.w.jobs[j].total_milli();
        self.attempt[j] += 1;
        let tasks = std::mem::take(&mut self.run_tasks[j]);
        for (node, m) in tasks {
            self.node_change(node, |n| n.used -= m);
        }
        self.alloc -= milli;
        if milli > 0 {
            self.model_alloc[self.run_model[j] as usize] -= milli;
        }
        let p = self.w.jobs[j].project as usize;
        self.r
            .project_series
            .change(p, self.now, -(milli as i64), 0);
        self.r.project_alloc[p] += elapsed as f64 * milli as f64;
        if milli > 0 {
            self.r.project_ref[p] +=
                elapsed as f64 * milli as f64 * self.thr[self.run_model[j] as usize] / self.thr_ref;
        }
        (elapsed, milli)
    }

    fn on_end(&mut self, j: usize) -> Result<(), SimError> {
        self.engine.finish(JobId(j as u64), Time(self.now))?;
        let timed_out = self.run_timeout[j];
        let (elapsed, milli) = self.close_run(j);
        let p = self.w.jobs[j].project as usize;
        self.r
            .project_series
            .change(p, self.now, 0, -(milli as i64));
        // A run that reached its end did all its work (the wall time was rounded up from it);
        // one stopped by its limit did what the elapsed time allows.
        let done = if timed_out && milli > 0 {
            self.work_in(elapsed, self.run_model[j])
                .min(self.remaining[j])
        } else {
            self.remaining[j]
        };
        self.r.delivered_ref_milli_ms += done as f64 * milli as f64;
        self.remaining[j] -= done;
        self.r.end[j] = self.now;
        self.r.outcome[j] = if timed_out {
            Outcome::TimedOut
        } else {
            Outcome::Completed
        };
        self.done += 1;
        Ok(())
    }

    /// A run stops before its end (preemption kill or node loss) and goes back to the queue.
    fn on_stop(&mut self, j: usize, checkpoint: bool) -> Result<(), SimError> {
        self.engine.requeue(JobId(j as u64), Time(self.now))?;
        let (elapsed, milli) = self.close_run(j);
        if checkpoint && milli > 0 {
            let done = self
                .work_in(elapsed, self.run_model[j])
                .min(self.remaining[j]);
            self.r.delivered_ref_milli_ms += done as f64 * milli as f64;
            self.remaining[j] -= done;
        } else {
            self.r.lost_milli_ms += elapsed as f64 * milli as f64;
        }
        self.queued += 1;
        Ok(())
    }

    fn apply(&mut self, d: Decisions) -> Result<(), SimError> {
        for s in d.starts {
            let j = s.job.0 as usize;
            let job = &self.w.jobs[j];
            let model = match &s.gpu_model {
                Some(m) => self.model_index.get(m).copied().unwrap_or(0),
                None => 0,
            };
            let milli = job.total_milli();
            let wall = if milli > 0 {
                self.wall_for(self.remaining[j], model)
            } else {
                self.remaining[j]
            };
            let (run, timeout) = match job.time_limit {
                Some(l) if l.0 < wall => (l.0, true),
                _ => (wall, false),
            };
            if self.r.first_start[j] < 0 {
                self.r.first_start[j] = self.now;
            }
            self.run_start[j] = self.now;
            self.run_model[j] = model;
            self.run_timeout[j] = timeout;
            let mut tasks = Vec::with_capacity(s.placement.tasks.len());
            for t in &s.placement.tasks {
                let m = t.milli_per_gpu.0 * t.gpus.len() as u64;
                tasks.push((t.node.0, m));
                self.node_change(t.node.0, |n| n.used += m);
            }
            self.run_tasks[j] = tasks;
            self.alloc += milli;
            if milli > 0 {
                self.model_alloc[model as usize] += milli;
            }
            self.queued -= 1;
            self.r
                .project_series
                .change(job.project as usize, self.now, milli as i64, 0);
            self.heap.push(Reverse((
                self.now + run,
                Kind::End,
                j as u64,
                self.attempt[j],
            )));
        }
        for p in d.preemptions {
            self.r.preemptions += 1;
            let j = p.victim.0 as usize;
            self.heap.push(Reverse((
                p.kill_at.0.max(self.now),
                Kind::Kill,
                j as u64,
                self.attempt[j],
            )));
        }
        Ok(())
    }
}

/// Replays `w` on `fleet` under one policy. `progress(done, total)` is called now and then.
pub fn run(
    w: &Workload,
    fleet: &FleetSpec,
    catalogue: &Catalogue,
    cfg: &SimConfig,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<RunResult, SimError> {
    let (tenants, engine_fleet) = w.tenants(fleet)?;
    let engine = Engine::new(&engine_fleet, &tenants, cfg.policy.clone())?;
    let neutral = GpuClass {
        model: String::new(),
        throughput: 1.0,
        price_per_gpu_hour: 0.0,
        power_w: 0.0,
        idle_power_w: 0.0,
        ..GpuClass::default()
    };
    let models = engine_fleet.gpu_models();
    let mut unknown_classes = Vec::new();
    let thr: Vec<f64> = models
        .iter()
        .map(|m| match catalogue.get(m.as_str()) {
            Some(c) => c.throughput,
            None => {
                unknown_classes.push(m.to_string());
                neutral.throughput
            }
        })
        .collect();
    let thr_ref = if cfg.measured_on.is_empty() {
        1.0
    } else {
        catalogue
            .get(&cfg.measured_on)
            .map(|c| c.throughput)
            .ok_or_else(|| SimError::File {
                path: catalogue.source.clone(),
                reason: format!(
                    "measured_on: unknown GPU class `{}`; the catalogue has {}",
                    cfg.measured_on,
                    catalogue.names()
                ),
            })?
    };
    let model_index: BTreeMap<GpuModel, u8> = models
        .iter()
        .enumerate()
        .map(|(i, m)| (m.clone(), i as u8))
        .collect();
    let nodes: Vec<NodeTrack> = engine_fleet
        .nodes
        .iter()
        .map(|n| NodeTrack {
            cap: n.gpus as u64 * 1000,
            used: 0,
            up: true,
        })
        .collect();
    let capacity: u64 = nodes.iter().map(|n| n.cap).sum();
    let model_uses = models
        .iter()
        .zip(&thr)
        .map(|(m, t)| ModelUse {
            model: m.to_string(),
            speed: t / thr_ref,
            gpus: engine_fleet
                .nodes
                .iter()
                .filter(|n| &n.gpu_model == m)
                .map(|n| n.gpus as u64)
                .sum(),
            busy_milli_ms: 0.0,
        })
        .collect();
    let n = w.jobs.len();
    let horizon = w.jobs.last().map(|j| j.submit.0).unwrap_or(0).max(1000);
    let mut st = State {
        w,
        engine,
        heap: BinaryHeap::new(),
        now: 0,
        attempt: vec![0; n],
        run_start: vec![0; n],
        run_model: vec![0; n],
        run_timeout: vec![false; n],
        run_tasks: vec![Vec::new(); n],
        remaining: w.jobs.iter().map(|j| j.work.0.max(0)).collect(),
        r: RunResult {
            policy: cfg.policy_name.clone(),
            first_start: vec![-1; n],
            end: vec![-1; n],
            outcome: vec![Outcome::Pending; n],
            project_alloc: vec![0.0; w.projects.len()],
            project_ref: vec![0.0; w.projects.len()],
            preemptions: 0,
            node_failures: 0,
            lost_milli_ms: 0.0,
            delivered_ref_milli_ms: 0.0,
            alloc_milli_ms: 0.0,
            free_milli_ms: 0.0,
            stranded_milli_ms: 0.0,
            makespan_ms: 0,
            capacity_milli: capacity,
            models: model_uses,
            util_series: Series::new(horizon / 400, 1000),
            queue_series: Series::new(horizon / 400, 1000),
            schedule_calls: 0,
            jobs_visited: 0,
            placement_attempts: 0,
            unknown_classes,
            window_ms: w.jobs.last().map(|j| j.submit.0).unwrap_or(0),
            window: None,
            project_series: ProjectSeries::new(w.projects.len(), horizon / 400, 1000),
            idle: cfg.explain.then(IdleTime::default),
            waiting_job_ms: BTreeMap::new(),
        },
        thr,
        thr_ref,
        model_index,
        free: capacity,
        nodes,
        alloc: 0,
        model_alloc: vec![0; models.len()],
        stranded: 0,
        queued: 0,
        done: 0,
        causes: None,
        waiting: Vec::new(),
    };
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed ^ 0x6e6f_6465_6661_696c);
    let exp_ms = |rng: &mut ChaCha8Rng, mean_h: f64| -> i64 {
        (-(mean_h * 3_600_000.0) * (1.0 - rng.random::<f64>()).ln()).round() as i64 + 1
    };
    if let Some(f) = cfg.failures
        && f.mtbf_node_hours > 0.0
    {
        for (i, node) in engine_fleet.nodes.iter().enumerate() {
            if node.gpus > 0 {
                let t = exp_ms(&mut rng, f.mtbf_node_hours);
                st.heap.push(Reverse((t, Kind::NodeDown, i as u64, 0)));
            }
        }
    }
    let mut next = 0usize;
    let mut events = 0u64;
    let mut dirty = false;
    let mut tick_pending = false;
    progress(0, n as u64);
    loop {
        if st.done == n as u64 && next == n {
            break;
        }
        let t_arr = w.jobs.get(next).map(|j| j.submit.0);
        let t_ev = st.heap.peek().map(|e| e.0.0);
        let now = match (t_arr, t_ev) {
            (Some(a), Some(e)) => a.min(e),
            (Some(a), None) => a,
            (None, Some(e)) => e,
            (None, None) => break,
        };
        st.advance(now);
        let mut changed = false;
        let mut tick = false;
        while next < n && w.jobs[next].submit.0 == now {
            let job = w.engine_job(next);
            let job = if job.spec.runtime_estimate.is_none() && cfg.exact_estimates {
                let mut job = job;
                job.spec.runtime_estimate = Some(Span(w.jobs[next].work.0.max(1)));
                job
            } else {
                job
            };
            match st.engine.submit(job, Time(now)) {
                Ok(()) => {
                    st.queued += 1;
                    let job = &w.jobs[next];
                    st.r.project_series.change(
                        job.project as usize,
                        now,
                        0,
                        job.total_milli() as i64,
                    );
                    changed = true;
                }
                Err(SchedError::TooLarge { .. }) => {
                    st.r.outcome[next] = Outcome::Rejected;
                    st.done += 1;
                }
                Err(e) => {
                    return Err(SimError::Row {
                        path: w.source.clone(),
                        line: w.jobs[next].line,
                        field: "job".into(),
                        reason: e.to_string(),
                    });
                }
            }
            next += 1;
        }
        while let Some(&Reverse((t, kind, id, attempt))) = st.heap.peek() {
            if t != now {
                break;
            }
            st.heap.pop();
            events += 1;
            let j = id as usize;
            match kind {
                Kind::End | Kind::Kill => {
                    if attempt != st.attempt[j] || st.r.outcome[j] != Outcome::Pending {
                        continue;
                    }
                    if kind == Kind::End {
                        st.on_end(j)?;
                    } else {
                        let checkpoint = w.jobs[j].grace.0 > 0;
                        st.on_stop(j, checkpoint)?;
                    }
                    changed = true;
                }
                Kind::NodeDown => {
                    let f = cfg.failures.expect("failures configured");
                    st.r.node_failures += 1;
                    let lost =
                        st.engine
                            .set_node_state(NodeId(id as u32), NodeState::Down, Time(now))?;
                    for job in lost {
                        st.on_stop(job.0 as usize, false)?;
                    }
                    st.node_change(id as u32, |n| n.up = false);
                    let back = now + (f.repair_hours * 3_600_000.0).round().max(1.0) as i64;
                    st.heap.push(Reverse((back, Kind::NodeUp, id, 0)));
                    changed = true;
                }
                Kind::Tick => {
                    tick_pending = false;
                    tick = true;
                }
                Kind::NodeUp => {
                    let f = cfg.failures.expect("failures configured");
                    st.engine
                        .set_node_state(NodeId(id as u32), NodeState::Up, Time(now))?;
                    st.node_change(id as u32, |n| n.up = true);
                    let t = now + exp_ms(&mut rng, f.mtbf_node_hours);
                    st.heap.push(Reverse((t, Kind::NodeDown, id, 0)));
                    changed = true;
                }
            }
        }
        dirty |= changed;
        let interval = cfg.schedule_interval.0;
        if interval > 0 && dirty && !tick && !tick_pending {
            // The next tick at or after now; at `now` itself it is handled in the next round.
            let at = now.div_euclid(interval) * interval
                + if now.rem_euclid(interval) == 0 {
                    0
                } else {
                    interval
                };
            st.heap.push(Reverse((at, Kind::Tick, 0, 0)));
            tick_pending = true;
        }
        if dirty && st.queued == 0 {
            dirty = false;
        }
        if dirty && (interval == 0 || tick) {
            dirty = false;
            let d = st.engine.schedule(Time(now));
            st.r.schedule_calls += 1;
            let stats = st.engine.last_pass();
            st.r.jobs_visited += stats.visited;
            st.r.placement_attempts += stats.placement_attempts;
            if cfg.check_invariants {
                st.engine.check_invariants().map_err(|e| SimError::File {
                    path: w.source.clone(),
                    reason: format!("engine invariant broken at t={now}ms: {e}"),
                })?;
            }
            st.apply(d)?;
        }
        if cfg.explain {
            st.causes = Some(st.engine.idle_causes());
            st.waiting = st.engine.pending_counts();
        }
        if events & 0xfff == 0 {
            progress(st.done, n as u64);
        }
        events += 1;
    }
    progress(st.done, n as u64);
    st.r.makespan_ms = st.r.end.iter().copied().max().unwrap_or(0).max(0);
    st.r.project_series.flush_all(st.r.makespan_ms);
    Ok(st.r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::synthetic::{SyntheticConfig, generate};
    use std::path::Path;

    /// A busy small centre with guarantees (so preemptions happen) and node failures, checked
    /// against the engine's invariants after every pass.
    #[test]
    fn busy_synthetic_run_keeps_engine_invariants_and_accounts_every_job() {
        let catalogue = Catalogue::default_catalogue();
        let fleet = FleetSpec::parse(
            "[[pools]]\nname = \"a\"\ngpu_model = \"H100\"\nnodes = 6\ngpus_per_node = 8\n\
             [[pools]]\nname = \"b\"\ngpu_model = \"B200\"\nnodes = 2\ngpus_per_node = 8\n",
            Path::new("f.toml"),
            &catalogue,
        )
        .unwrap();
        let cfg: SyntheticConfig = toml::from_str(
            r#"
jobs = 600
load = 1.3
server_nodes = [[1, 0.7], [2, 0.3]]
duration_median_h = 0.5
grace_s = 30
[[classes]]
class = "academia"
projects = 6
job_share = 0.6
[[classes]]
class = "partner"
projects = 1
job_share = 0.4
guaranteed_gpus = 24
"#,
        )
        .unwrap();
        let w = generate(&cfg, 70.0, 9, Path::new("s.toml")).unwrap();
        for (name, policy) in [
            ("fifo", Policy::fifo()),
            ("slurm-like", Policy::slurm_like()),
            ("haneul", Policy::default()),
        ] {
            let sim = SimConfig {
                policy_name: name.into(),
                policy,
                measured_on: "H100".into(),
                exact_estimates: true,
                failures: Some(Failures {
                    mtbf_node_hours: 20.0,
                    repair_hours: 0.5,
                }),
                seed: 1,
                check_invariants: true,
                schedule_interval: Span::ZERO,
                explain: true,
            };
            let r = run(&w, &fleet, &catalogue, &sim, &mut |_, _| {}).unwrap();
            assert!(r.outcome.iter().all(|o| *o == Outcome::Completed), "{name}");
            for (i, j) in w.jobs.iter().enumerate() {
                assert!(
                    r.first_start[i] >= j.submit.0,
                    "{name}: job {i} started early"
                );
                assert!(r.end[i] >= r.first_start[i]);
            }
            assert!(r.node_failures > 0);
            assert!(r.alloc_milli_ms <= r.capacity_milli as f64 * r.makespan_ms as f64);
            // The idle split covers the free GPU-time exactly, once.
            let idle = r.idle.expect("explain was on");
            let split = idle.reserved
                + idle.reclaim_hold
                + idle.quota
                + idle.not_started
                + idle.fragmentation
                + idle.no_demand;
            assert!(
                (split - r.free_milli_ms).abs() <= 1e-9 * r.free_milli_ms.max(1.0),
                "{name}: split {split} free {}",
                r.free_milli_ms
            );
            if name == "haneul" {
                assert!(
                    r.preemptions > 0,
                    "the partner's guarantee should be reclaimed"
                );
            }
        }
    }

    #[test]
    fn series_buckets_merge_when_the_run_outgrows_them() {
        let mut s = Series::new(10, 4);
        s.add(0, 20, 1.0);
        s.add(20, 80, 2.0);
        assert_eq!(s.width_ms, 40);
        let p = s.points();
        assert_eq!(p.len(), 2);
        assert!((p[0].1 - 1.5).abs() < 1e-12);
        assert!((p[1].1 - 2.0).abs() < 1e-12);
    }
}
