//! Metrics: what a run means for a centre, computed from a [`RunResult`]. Definitions (also in
//! docs/simulator.md):
//!
//! - **allocation**: time-averaged allocated GPUs over fleet GPUs, from the first submission to
//!   the last completion (the makespan);
//! - **utilization**: the same, less the GPU time thrown away (preempted without checkpoint,
//!   killed by a node failure);
//! - **JCT** (completion - submission) and **wait** (first start - submission): mean, and median
//!   and p99 by nearest rank, over the jobs that ran;
//! - **Jain's fairness** under contention: per time bucket where demand waits, over active
//!   projects, of x = allocated / fair, the fair amount being the weighted max-min
//!   (water-filling) division of what was allocated, capped by each project's demand; averaged
//!   over buckets weighted by the GPU-time that waited ([`contended_jain`]);
//! - **fragmentation**: time-averaged share of free GPU capacity stranded on partly used nodes;
//! - **cost**: every fleet GPU's catalogue price over the makespan; **energy**: busy GPU-hours at
//!   full power plus idle GPU-hours at idle power.

use crate::catalogue::Catalogue;
use crate::driver::{Outcome, RunResult};
use crate::fleet_file::FleetSpec;
use crate::workload::{SIZE_BUCKETS, Workload, size_bucket};
use haneul_model::OrgClass;
use serde::Serialize;

/// Latency figures of a group of jobs, in seconds.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct GroupStats {
    pub group: String,
    pub jobs: u64,
    pub avg_jct_s: f64,
    pub p50_jct_s: f64,
    pub p99_jct_s: f64,
    pub avg_wait_s: f64,
    pub p50_wait_s: f64,
    pub p99_wait_s: f64,
    /// GPU-hours the group was allocated.
    pub gpu_hours: f64,
    /// Share of all allocated GPU-hours (tenant classes only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub share: Option<f64>,
    /// Share by fair-share weight of the projects that asked for GPUs (tenant classes only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entitlement: Option<f64>,
    /// Share under weighted max-min fairness capped by demand (tenant classes only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fair_share: Option<f64>,
}

/// One policy's results: the `--json` object.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PolicyReport {
    pub policy: String,
    pub fleet: String,
    pub fleet_gpus: u64,
    pub jobs: u64,
    pub completed: u64,
    pub timed_out: u64,
    pub rejected: u64,
    pub unfinished: u64,
    pub utilization: f64,
    pub allocation: f64,
    pub avg_jct_s: f64,
    pub p50_jct_s: f64,
    pub p99_jct_s: f64,
    pub avg_wait_s: f64,
    pub p50_wait_s: f64,
    pub p99_wait_s: f64,
    pub makespan_s: f64,
    pub jain_fairness: f64,
    pub preemptions: u64,
    pub gpu_hours_lost: f64,
    pub node_failures: u64,
    pub fragmentation: f64,
    /// Work delivered, in GPU-hours of the reference class the workload was measured on.
    pub delivered_gpu_hours: f64,
    pub cost_usd: f64,
    pub cost_per_delivered_gpu_hour: f64,
    /// The same over the arrival window only (first to last submission), leaving out the drain
    /// at the end when the fleet idles: the steady-state price of a GPU-hour of work.
    pub loaded_cost_per_delivered_gpu_hour: f64,
    pub energy_mwh: f64,
    pub schedule_calls: u64,
    /// Engine counters over the run: queued jobs looked at and placements tried.
    pub jobs_visited: u64,
    pub placement_attempts: u64,
    pub by_class: Vec<GroupStats>,
    pub by_size: Vec<GroupStats>,
    /// GPU models of the fleet missing from the catalogue (run at speed 1, no cost or power).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub uncatalogued_models: Vec<String>,
    /// With `--explain`: where the fleet's GPU-time went, idle time split by cause.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub explain: Option<IdleReport>,
    /// Seconds of real time the run took; the only field that differs between identical runs.
    pub wall_s: f64,
    #[serde(skip)]
    pub charts: ChartData,
}

/// The fleet's GPU-hours over the makespan, split: work kept, work thrown away, nodes down, and
/// idle time by its cause (the engine's [`haneul_sched::IdleCauses`], integrated by the driver).
/// The fields add up to `capacity_gpu_hours`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct IdleReport {
    pub capacity_gpu_hours: f64,
    /// Allocated and kept (allocation less `preemption_lost`).
    pub busy_gpu_hours: f64,
    /// Allocated, then thrown away: preempted without checkpoint, or lost with a failed node.
    pub preemption_lost_gpu_hours: f64,
    pub down_gpu_hours: f64,
    /// Free, held for a blocked job's reservation (nodes drained for a gang).
    pub reserved_gpu_hours: f64,
    /// Free, held for a job whose preemption victims are in their grace period.
    pub reclaim_hold_gpu_hours: f64,
    /// Free, usable by a waiting job that its quota or borrowing limit forbids.
    pub quota_gpu_hours: f64,
    /// Free, usable by a waiting job within its quota that the pass did not start (ordering,
    /// backfill window, a gang that does not fit whole).
    pub not_started_gpu_hours: f64,
    /// Free while jobs wait, but no waiting job fits in what is free on that node.
    pub fragmentation_gpu_hours: f64,
    /// Free with nothing waiting.
    pub no_demand_gpu_hours: f64,
    /// The job that finished last and so set the makespan: a long drain with "no demand" idle
    /// time usually traces back to it having started late.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_job: Option<LastJob>,
    /// Job-hours spent queued, by the engine's pending reason code (Resources, Priority,
    /// Reservation, ...); codes no job waited for are left out.
    pub waiting_job_hours: std::collections::BTreeMap<String, f64>,
}

/// The job that set the makespan.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LastJob {
    /// Position in the workload, from 0, in submission order.
    pub index: u64,
    pub project: String,
    pub gpus: f64,
    pub submitted_h: f64,
    pub waited_h: f64,
    pub ended_h: f64,
}

impl IdleReport {
    /// (name, GPU-hours) of every part, in a fixed order, for tables and CSV.
    pub fn parts(&self) -> [(&'static str, f64); 9] {
        [
            ("busy", self.busy_gpu_hours),
            ("preemption lost", self.preemption_lost_gpu_hours),
            ("down", self.down_gpu_hours),
            ("reserved", self.reserved_gpu_hours),
            ("reclaim hold", self.reclaim_hold_gpu_hours),
            ("quota", self.quota_gpu_hours),
            ("not started", self.not_started_gpu_hours),
            ("fragmentation", self.fragmentation_gpu_hours),
            ("no demand", self.no_demand_gpu_hours),
        ]
    }
}

fn idle_report(w: &Workload, r: &RunResult) -> Option<IdleReport> {
    let idle = r.idle.as_ref()?;
    let h = |milli_ms: f64| milli_ms / 1000.0 / 3_600_000.0;
    let capacity = r.capacity_milli as f64 * r.makespan_ms as f64;
    let hours = |ms: i64| ms as f64 / 3_600_000.0;
    // Ties go to the first in submission order.
    let last_job = (0..w.jobs.len())
        .filter(|&i| r.first_start[i] >= 0 && r.end[i] >= 0)
        .max_by_key(|&i| (r.end[i], std::cmp::Reverse(i)))
        .map(|i| {
            let j = &w.jobs[i];
            LastJob {
                index: i as u64,
                project: w.projects[j.project as usize].name.clone(),
                gpus: j.gpus(),
                submitted_h: hours(j.submit.0),
                waited_h: hours(r.first_start[i] - j.submit.0),
                ended_h: hours(r.end[i]),
            }
        });
    Some(IdleReport {
        last_job,
        capacity_gpu_hours: h(capacity),
        busy_gpu_hours: h(r.alloc_milli_ms - r.lost_milli_ms),
        preemption_lost_gpu_hours: h(r.lost_milli_ms),
        down_gpu_hours: h((capacity - r.alloc_milli_ms - r.free_milli_ms).max(0.0)),
        reserved_gpu_hours: h(idle.reserved),
        reclaim_hold_gpu_hours: h(idle.reclaim_hold),
        quota_gpu_hours: h(idle.quota),
        not_started_gpu_hours: h(idle.not_started),
        fragmentation_gpu_hours: h(idle.fragmentation),
        no_demand_gpu_hours: h(idle.no_demand),
        waiting_job_hours: r
            .waiting_job_ms
            .iter()
            .map(|(c, ms)| (c.as_str().to_string(), ms / 3_600_000.0))
            .collect(),
    })
}

/// What the charts draw; not part of the JSON.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChartData {
    pub utilization: Vec<(f64, f64)>,
    pub queue: Vec<(f64, f64)>,
    /// Sorted waits in seconds per tenant class.
    pub waits_by_class: Vec<(String, Vec<f64>)>,
}

/// Nearest-rank percentile of sorted values (0 when empty).
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn mean(v: &[f64]) -> f64 {
    if v.is_empty() {
        0.0
    } else {
        v.iter().sum::<f64>() / v.len() as f64
    }
}

/// Jain's index of `x` (1 is perfectly even; 1/n is one getting everything).
pub fn jain(x: &[f64]) -> f64 {
    let s: f64 = x.iter().sum();
    let sq: f64 = x.iter().map(|v| v * v).sum();
    if x.is_empty() || sq == 0.0 {
        1.0
    } else {
        s * s / (x.len() as f64 * sq)
    }
}

/// Weighted max-min division of `total` among claimants with (weight, demand): nobody gets more
/// than their demand, the rest is shared by weight.
pub fn water_fill(total: f64, claims: &[(f64, f64)]) -> Vec<f64> {
    let mut out = vec![0.0; claims.len()];
    let mut order: Vec<usize> = (0..claims.len()).collect();
    // Fill the smallest demand per weight first.
    order.sort_by(|&a, &b| {
        (claims[a].1 / claims[a].0)
            .total_cmp(&(claims[b].1 / claims[b].0))
            .then(a.cmp(&b))
    });
    let mut left = total;
    let mut weight_left: f64 = claims.iter().map(|c| c.0).sum();
    for &i in &order {
        let (w, d) = claims[i];
        let fair = if weight_left > 0.0 {
            left * w / weight_left
        } else {
            0.0
        };
        let got = fair.min(d);
        out[i] = got;
        left -= got;
        weight_left -= w;
    }
    out
}

struct Acc {
    jct: Vec<f64>,
    wait: Vec<f64>,
    milli_ms: f64,
}

impl Acc {
    fn new() -> Acc {
        Acc {
            jct: Vec::new(),
            wait: Vec::new(),
            milli_ms: 0.0,
        }
    }
    fn stats(&mut self, group: &str) -> GroupStats {
        self.jct.sort_by(f64::total_cmp);
        self.wait.sort_by(f64::total_cmp);
        GroupStats {
            group: group.to_string(),
            jobs: self.jct.len() as u64,
            avg_jct_s: mean(&self.jct),
            p50_jct_s: percentile(&self.jct, 50.0),
            p99_jct_s: percentile(&self.jct, 99.0),
            avg_wait_s: mean(&self.wait),
            p50_wait_s: percentile(&self.wait, 50.0),
            p99_wait_s: percentile(&self.wait, 99.0),
            gpu_hours: self.milli_ms / 1000.0 / 3_600_000.0,
            share: None,
            entitlement: None,
            fair_share: None,
        }
    }
}

/// Jain's index under contention: in each time bucket where some demand waits, each active
/// project's allocation against its weighted max-min share of what was allocated given its
/// demand (queued plus running GPUs); averaged over those buckets, weighted by the GPU-time
/// that waited in each. 1 when nothing ever waited.
pub fn contended_jain(w: &Workload, r: &RunResult) -> f64 {
    let s = &r.project_series;
    let buckets = s.demand.iter().map(Vec::len).max().unwrap_or(0);
    let (mut sum, mut weight) = (0.0, 0.0);
    let mut claims = Vec::new();
    let mut alloc = Vec::new();
    for b in 0..buckets {
        claims.clear();
        alloc.clear();
        for p in 0..s.demand.len() {
            let d = s.demand[p].get(b).copied().unwrap_or(0.0);
            if d > 0.0 {
                claims.push((w.projects[p].weight as f64, d));
                alloc.push(s.alloc[p].get(b).copied().unwrap_or(0.0));
            }
        }
        let total: f64 = alloc.iter().sum();
        let waiting = claims.iter().map(|c| c.1).sum::<f64>() - total;
        // Less than a thousandth of a GPU waiting on average is no contention.
        if waiting <= s.width_ms as f64 || total <= 0.0 {
            continue;
        }
        let fair = water_fill(total, &claims);
        let xs: Vec<f64> = alloc
            .iter()
            .zip(&fair)
            .filter(|(_, f)| **f > 0.0)
            .map(|(a, f)| a / f)
            .collect();
        sum += jain(&xs) * waiting;
        weight += waiting;
    }
    if weight > 0.0 { sum / weight } else { 1.0 }
}

/// Fleet cost over the arrival window over the reference-class work done in it (busy GPU-time
/// scaled by each model's speed, less the share thrown away). `None` when the window is empty.
fn loaded_cost_per_gpu_hour(catalogue: &Catalogue, r: &RunResult) -> Option<f64> {
    let win = r.window.as_ref()?;
    if r.window_ms <= 0 || win.alloc_milli_ms <= 0.0 {
        return None;
    }
    let hours = r.window_ms as f64 / 3_600_000.0;
    let kept = 1.0 - (win.lost_milli_ms / win.alloc_milli_ms).min(1.0);
    let mut cost = 0.0;
    let mut work = 0.0;
    for (m, busy) in r.models.iter().zip(&win.busy_milli_ms) {
        let price = catalogue
            .get(&m.model)
            .map_or(0.0, |c| c.price_per_gpu_hour);
        cost += m.gpus as f64 * price * hours;
        work += busy * m.speed * kept / 1000.0 / 3_600_000.0;
    }
    (work > 0.0).then(|| cost / work)
}

pub fn summarise(
    w: &Workload,
    fleet: &FleetSpec,
    catalogue: &Catalogue,
    r: &RunResult,
    wall_s: f64,
) -> PolicyReport {
    let mut all = Acc::new();
    let mut by_class: Vec<Acc> = OrgClass::ALL.iter().map(|_| Acc::new()).collect();
    let mut by_size: Vec<Acc> = SIZE_BUCKETS.iter().map(|_| Acc::new()).collect();
    let (mut completed, mut timed_out, mut rejected, mut unfinished) = (0, 0, 0, 0);
    let class_ix = |c: OrgClass| OrgClass::ALL.iter().position(|&x| x == c).unwrap_or(0);
    for (i, j) in w.jobs.iter().enumerate() {
        match r.outcome[i] {
            Outcome::Completed => completed += 1,
            Outcome::TimedOut => timed_out += 1,
            Outcome::Rejected => {
                rejected += 1;
                continue;
            }
            Outcome::Pending => {
                unfinished += 1;
                continue;
            }
        }
        let jct = (r.end[i] - j.submit.0) as f64 / 1000.0;
        let wait = (r.first_start[i] - j.submit.0) as f64 / 1000.0;
        let c = class_ix(w.projects[j.project as usize].class);
        let s = size_bucket(j.gpus());
        for acc in [&mut all, &mut by_class[c], &mut by_size[s]] {
            acc.jct.push(jct);
            acc.wait.push(wait);
        }
    }
    let mut class_ref = vec![0.0; OrgClass::ALL.len()];
    for (p, def) in w.projects.iter().enumerate() {
        by_class[class_ix(def.class)].milli_ms += r.project_alloc[p];
        class_ref[class_ix(def.class)] += r.project_ref[p];
    }
    // Fairness: demand per project is the GPU-time its jobs asked for at reference speed.
    let mut demand = vec![0.0f64; w.projects.len()];
    for j in &w.jobs {
        demand[j.project as usize] += j.work.0 as f64 * j.total_milli() as f64;
    }
    let received_total: f64 = r.project_ref.iter().sum();
    let active: Vec<usize> = (0..w.projects.len()).filter(|&p| demand[p] > 0.0).collect();
    let claims: Vec<(f64, f64)> = active
        .iter()
        .map(|&p| (w.projects[p].weight as f64, demand[p]))
        .collect();
    let fair = water_fill(received_total, &claims);
    let jain_fairness = contended_jain(w, r);
    let weight_total: f64 = claims.iter().map(|c| c.0).sum();
    let mut class_ent = vec![0.0; OrgClass::ALL.len()];
    let mut class_fair = vec![0.0; OrgClass::ALL.len()];
    for (k, &p) in active.iter().enumerate() {
        let c = class_ix(w.projects[p].class);
        class_ent[c] += claims[k].0 / weight_total.max(1e-12);
        class_fair[c] += fair[k] / received_total.max(1e-12);
    }
    let class_present: Vec<bool> = OrgClass::ALL
        .iter()
        .map(|&c| w.projects.iter().any(|p| p.class == c))
        .collect();
    let mut class_stats = Vec::new();
    let mut waits_by_class = Vec::new();
    for (c, acc) in by_class.iter_mut().enumerate() {
        if !class_present[c] {
            continue;
        }
        let mut s = acc.stats(OrgClass::ALL[c].as_str());
        s.share = Some(class_ref[c] / received_total.max(1e-12));
        s.entitlement = Some(class_ent[c]);
        s.fair_share = Some(class_fair[c]);
        waits_by_class.push((s.group.clone(), acc.wait.clone()));
        class_stats.push(s);
    }
    let size_stats = by_size
        .iter_mut()
        .enumerate()
        .filter(|(_, a)| !a.jct.is_empty())
        .map(|(i, a)| a.stats(SIZE_BUCKETS[i]))
        .collect();
    let overall = all.stats("all");
    let makespan_ms = r.makespan_ms.max(1) as f64;
    let cap_ms = r.capacity_milli as f64 * makespan_ms;
    let hours = makespan_ms / 3_600_000.0;
    let mut cost = 0.0;
    let mut energy_wh = 0.0;
    for m in &r.models {
        if let Some(c) = catalogue.get(&m.model) {
            cost += m.gpus as f64 * c.price_per_gpu_hour * hours;
            let busy_h = m.busy_milli_ms / 1000.0 / 3_600_000.0;
            let idle_h = (m.gpus as f64 * hours - busy_h).max(0.0);
            energy_wh += busy_h * c.power_w + idle_h * c.idle_power_w;
        }
    }
    let delivered = r.delivered_ref_milli_ms / 1000.0 / 3_600_000.0;
    let loaded = loaded_cost_per_gpu_hour(catalogue, r).unwrap_or(if delivered > 0.0 {
        cost / delivered
    } else {
        0.0
    });
    PolicyReport {
        policy: r.policy.clone(),
        fleet: fleet.name.clone(),
        fleet_gpus: fleet.total_gpus(),
        jobs: w.jobs.len() as u64,
        completed,
        timed_out,
        rejected,
        unfinished,
        utilization: (r.alloc_milli_ms - r.lost_milli_ms) / cap_ms,
        allocation: r.alloc_milli_ms / cap_ms,
        avg_jct_s: overall.avg_jct_s,
        p50_jct_s: overall.p50_jct_s,
        p99_jct_s: overall.p99_jct_s,
        avg_wait_s: overall.avg_wait_s,
        p50_wait_s: overall.p50_wait_s,
        p99_wait_s: overall.p99_wait_s,
        makespan_s: r.makespan_ms as f64 / 1000.0,
        jain_fairness,
        preemptions: r.preemptions,
        gpu_hours_lost: r.lost_milli_ms / 1000.0 / 3_600_000.0,
        node_failures: r.node_failures,
        fragmentation: if r.free_milli_ms > 0.0 {
            r.stranded_milli_ms / r.free_milli_ms
        } else {
            0.0
        },
        delivered_gpu_hours: delivered,
        cost_usd: cost,
        cost_per_delivered_gpu_hour: if delivered > 0.0 {
            cost / delivered
        } else {
            0.0
        },
        loaded_cost_per_delivered_gpu_hour: loaded,
        energy_mwh: energy_wh / 1e6,
        schedule_calls: r.schedule_calls,
        jobs_visited: r.jobs_visited,
        placement_attempts: r.placement_attempts,
        by_class: class_stats,
        by_size: size_stats,
        uncatalogued_models: r.unknown_classes.clone(),
        explain: idle_report(w, r),
        wall_s,
        charts: ChartData {
            utilization: r.util_series.points(),
            queue: r.queue_series.points(),
            waits_by_class,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(percentile(&v, 50.0), 2.0);
        assert_eq!(percentile(&v, 99.0), 4.0);
        assert_eq!(percentile(&[], 50.0), 0.0);
    }

    #[test]
    fn jain_of_equal_and_skewed() {
        assert!((jain(&[1.0, 1.0, 1.0]) - 1.0).abs() < 1e-12);
        assert!((jain(&[1.0, 0.0]) - 0.5).abs() < 1e-12);
    }

    #[test]
    fn water_filling_caps_by_demand_and_splits_by_weight() {
        // 10 units; A wants 2, B and C want plenty with weights 1 and 3.
        let f = water_fill(10.0, &[(1.0, 2.0), (1.0, 100.0), (3.0, 100.0)]);
        assert_eq!(f[0], 2.0);
        assert!((f[1] - 2.0).abs() < 1e-12, "{f:?}");
        assert!((f[2] - 6.0).abs() < 1e-12, "{f:?}");
    }
}
