//! The capacity planner behind `haneul plan`: which accelerators, how many servers, at what
//! total cost, with what confidence. It owns building candidate fleets (given fleet files, or a
//! sweep over server counts and mixes), running each candidate on several seeds of the workload
//! in parallel (rayon), and reducing the runs to figures with their spread, a Pareto frontier of
//! cost against p90 wait, and a recommendation computed from them.
//!
//! - [`cost`]: total cost of ownership per year and the site's parameters;
//! - [`demand`]: the allocation round (tracks, applications, GPUs asked and granted, growth);
//! - [`stats`]: mean and 95% interval over seeds;
//! - [`report`]: plan.json's companions: the HTML report, its charts and a CSV table.
//!
//! Every run is deterministic (integer time, seeded RNG); runs are collected in task order and
//! reduced sequentially, so the plan is byte-identical whatever the number of threads.

pub mod cost;
pub mod demand;
pub mod report;
pub mod stats;

use crate::catalogue::{Catalogue, GpuClass};
use crate::driver::{self, Outcome, RunResult};
use crate::error::SimError;
use crate::fleet_file::FleetSpec;
use crate::metrics::percentile;
use crate::scenario::{Scenario, WorkloadSpec};
use cost::{HOURS_PER_YEAR, ServerUse, Site, Tco};
use demand::Demand;
use rayon::prelude::*;
use serde::Serialize;
use stats::Spread;
use std::fmt::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

/// The share of accelerators of each model in a sweep's fleets, e.g. `H200:3+NPU:1`.
#[derive(Debug, Clone, PartialEq)]
pub struct Mix {
    pub label: String,
    pub parts: Vec<(String, u32)>,
}

impl Mix {
    /// `MODEL` or `MODEL:WEIGHT+MODEL:WEIGHT...`; every model must be in the catalogue.
    pub fn parse(s: &str, catalogue: &Catalogue) -> Result<Mix, SimError> {
        let bad = |reason: String| SimError::Plan {
            field: "--mix".into(),
            reason,
        };
        let mut parts = Vec::new();
        for part in s.split('+') {
            let (model, weight) = match part.trim().split_once(':') {
                Some((m, w)) => (
                    m.trim(),
                    w.trim().parse::<u32>().map_err(|_| {
                        bad(format!(
                            "`{part}`: the weight after `:` must be a whole number, as in H200:3+NPU:1"
                        ))
                    })?,
                ),
                None => (part.trim(), 1),
            };
            if catalogue.get(model).is_none() {
                return Err(bad(format!(
                    "unknown GPU model `{model}`; the catalogue ({}) has {}",
                    catalogue.source.display(),
                    catalogue.names()
                )));
            }
            if weight == 0 || parts.iter().any(|(m, _)| m == model) {
                return Err(bad(format!(
                    "`{s}`: each model once, with a weight of at least 1"
                )));
            }
            parts.push((model.to_string(), weight));
        }
        Ok(Mix {
            label: s.trim().to_string(),
            parts,
        })
    }

    /// Servers of each model for `total` servers: shares rounded down, the rest to the largest
    /// remainders (earlier parts first on ties); models left with none are dropped.
    pub fn split(&self, total: u32) -> Vec<(String, u32)> {
        let sum: u32 = self.parts.iter().map(|p| p.1).sum();
        let exact: Vec<f64> = self
            .parts
            .iter()
            .map(|p| total as f64 * p.1 as f64 / sum as f64)
            .collect();
        let mut n: Vec<u32> = exact.iter().map(|x| x.floor() as u32).collect();
        let mut order: Vec<usize> = (0..n.len()).collect();
        order.sort_by(|&a, &b| {
            (exact[b] - n[b] as f64)
                .total_cmp(&(exact[a] - n[a] as f64))
                .then(a.cmp(&b))
        });
        let mut left = total - n.iter().sum::<u32>();
        for &i in &order {
            if left == 0 {
                break;
            }
            n[i] += 1;
            left -= 1;
        }
        self.parts
            .iter()
            .zip(n)
            .filter(|(_, k)| *k > 0)
            .map(|(p, k)| (p.0.clone(), k))
            .collect()
    }
}

/// Server counts of a sweep: `FROM..TO/STEP` (both ends included when the step lands on TO), or
/// a comma-separated list.
pub fn parse_servers(s: &str) -> Result<Vec<u32>, SimError> {
    let bad = |reason: &str| SimError::Plan {
        field: "--servers".into(),
        reason: format!("`{s}`: {reason}"),
    };
    let num = |x: &str| {
        x.trim()
            .parse::<u32>()
            .map_err(|_| bad("write FROM..TO/STEP (32..256/32) or a list (32,64,128)"))
    };
    let out: Vec<u32> = if let Some((from, rest)) = s.split_once("..") {
        let (to, step) = rest.split_once('/').unwrap_or((rest, "1"));
        let (from, to, step) = (num(from)?, num(to)?, num(step)?);
        if step == 0 || from > to {
            return Err(bad("needs FROM <= TO and a step of at least 1"));
        }
        (from..=to).step_by(step as usize).collect()
    } else {
        s.split(',').map(num).collect::<Result<_, _>>()?
    };
    if out.is_empty() || out.contains(&0) {
        return Err(bad("every count must be at least 1 server"));
    }
    if out.len() > 200 || out.iter().any(|&n| n > 100_000) {
        return Err(bad("at most 200 sizes of at most 100,000 servers"));
    }
    Ok(out)
}

/// A fleet to evaluate.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub name: String,
    /// The series it belongs to in charts: the sweep's mix, or the fleet file's name.
    pub mix: String,
    pub fleet: FleetSpec,
    /// Servers the centre buys, per model (pools with an owner are a partner's and cost nothing).
    pub servers: Vec<(String, u64)>,
}

impl Candidate {
    /// A fleet file as a candidate.
    pub fn from_fleet(fleet: FleetSpec) -> Candidate {
        let mut servers: Vec<(String, u64)> = Vec::new();
        for n in &fleet.fleet.nodes {
            let pool = fleet
                .fleet
                .blocks
                .iter()
                .find(|b| b.id == n.block)
                .map(|b| b.pool);
            if pool.is_some_and(|p| fleet.owners.contains_key(&p)) || n.gpus == 0 {
                continue;
            }
            match servers.iter_mut().find(|s| s.0 == n.gpu_model.as_str()) {
                Some(s) => s.1 += 1,
                None => servers.push((n.gpu_model.as_str().to_string(), 1)),
            }
        }
        Candidate {
            name: fleet.name.clone(),
            mix: fleet.name.clone(),
            fleet,
            servers,
        }
    }

    pub fn total_servers(&self) -> u64 {
        self.servers.iter().map(|s| s.1).sum()
    }
}

/// One candidate per (server count, mix): pools of the catalogue's servers.
pub fn sweep(
    servers: &[u32],
    mixes: &[Mix],
    catalogue: &Catalogue,
) -> Result<Vec<Candidate>, SimError> {
    let mut out = Vec::new();
    for mix in mixes {
        for &total in servers {
            let split = mix.split(total);
            let name = split
                .iter()
                .map(|(m, n)| format!("{n}×{m}"))
                .collect::<Vec<_>>()
                .join(" + ");
            let mut toml = format!("name = \"{name}\"\n");
            for (m, n) in &split {
                let c = catalogue.get(m).expect("checked by Mix::parse");
                let _ = write!(
                    toml,
                    "[[pools]]\nname = \"{}\"\ngpu_model = \"{m}\"\nnodes = {n}\ngpus_per_node = {}\nnodes_per_block = 16\ngpu_memory_gib = {}\n",
                    m.to_lowercase(),
                    c.gpus_per_server,
                    c.memory_gib.unwrap_or(80.0).round() as u64
                );
            }
            let fleet = FleetSpec::parse(&toml, Path::new(&format!("<sweep {name}>")), catalogue)?;
            out.push(Candidate {
                name,
                mix: mix.label.clone(),
                fleet,
                servers: split.into_iter().map(|(m, n)| (m, n as u64)).collect(),
            });
        }
    }
    Ok(out)
}

/// How to plan.
#[derive(Debug, Clone)]
pub struct Options {
    pub policy: String,
    /// Seeds `scenario.seed .. scenario.seed + seeds`.
    pub seeds: u32,
    /// The p90 wait a recommended fleet must stay under, with 95% confidence, hours.
    pub target_p90_wait_h: f64,
    /// Money for the depreciation life (servers, power, operations); candidates whose cost at
    /// full power exceeds it are not run.
    pub budget_krw: Option<f64>,
    /// Overrides every track's grant: this share of the GPUs asked.
    pub grant_share: Option<f64>,
    /// Overrides the demand's planned year.
    pub year: Option<u32>,
    /// Worker threads (default: rayon's, one per core).
    pub threads: Option<usize>,
}

/// One candidate on one seed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunFigures {
    pub seed: u64,
    pub jobs: u64,
    /// Jobs that ran (completed or stopped at their limit) over all jobs.
    pub completed_share: f64,
    pub mean_wait_h: f64,
    pub p50_wait_h: f64,
    pub p90_wait_h: f64,
    pub p99_wait_h: f64,
    /// Busy share of the fleet's accelerators while jobs arrive (the steady state).
    pub utilization: f64,
    /// Reference-class GPU-hours of work a year at the steady state.
    pub delivered_gpu_hours_per_year: f64,
    pub tco: Tco,
    pub krw_per_delivered_gpu_hour: f64,
    pub usd_per_delivered_gpu_hour: f64,
}

/// A candidate's figures over its seeds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CandidateResult {
    pub name: String,
    pub mix: String,
    pub servers: Vec<(String, u64)>,
    pub total_servers: u64,
    pub accelerators: u64,
    pub capex_krw: f64,
    /// Servers, power at full load and operations over the depreciation life: what a budget
    /// is checked against.
    pub lifetime_krw_at_full_power: f64,
    pub completed_share: Spread,
    pub p50_wait_h: Spread,
    pub p90_wait_h: Spread,
    pub p99_wait_h: Spread,
    pub utilization: Spread,
    pub delivered_gpu_hours_per_year: Spread,
    pub energy_mwh_per_year: Spread,
    pub tco_krw_per_year: Spread,
    pub tco_usd_per_year: Spread,
    pub krw_per_delivered_gpu_hour: Spread,
    pub usd_per_delivered_gpu_hour: Spread,
    /// The upper end of the p90 wait's interval is under the target and (nearly) every job ran.
    pub meets_target: bool,
    /// No other candidate is cheaper a year and waits less at p90 (means).
    pub pareto: bool,
    pub runs: Vec<RunFigures>,
}

/// A candidate left out because the budget cannot pay for it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OverBudget {
    pub name: String,
    pub lifetime_krw_at_full_power: f64,
}

/// The demand as planned, for the report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DemandFigures {
    pub year: u32,
    pub growth_per_year: f64,
    pub growth_factor: f64,
    pub applications: u32,
    pub asked_gpus: f64,
    pub granted_gpus: f64,
    /// Granted over asked GPU-hours.
    pub grant_share: f64,
    /// Shares of granted GPU-hours: training, fine-tuning, inference.
    pub mix: [f64; 3],
    pub tracks: Vec<demand::Track>,
}

/// The recommendation in two sentences, in English and Korean.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Recommendation {
    /// Index into `candidates`, when one meets the target.
    pub candidate: Option<usize>,
    pub en: String,
    pub ko: String,
}

/// plan.json.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Plan {
    pub scenario: String,
    pub policy: String,
    pub seeds: Vec<u64>,
    pub jobs_per_run: u64,
    pub target_p90_wait_h: f64,
    pub budget_krw: Option<f64>,
    pub site: Site,
    pub demand: Option<DemandFigures>,
    /// The catalogue entries of the candidates' models; `throughput` is the speed blended by
    /// the demand's mix of work.
    pub accelerators: Vec<GpuClass>,
    pub candidates: Vec<CandidateResult>,
    pub over_budget: Vec<OverBudget>,
    pub recommendation: Recommendation,
}

/// Runs every candidate on every seed and reduces the runs; `progress(done, total)` is called
/// from worker threads as runs finish.
pub fn plan(
    scn: &Scenario,
    candidates: Vec<Candidate>,
    opts: &Options,
    progress: &(dyn Fn(u64, u64) + Sync),
) -> Result<Plan, SimError> {
    scn.policy(&opts.policy)?;
    if !(1..=1000).contains(&opts.seeds) {
        return Err(SimError::Plan {
            field: "--seeds".into(),
            reason: "must be 1 to 1000".into(),
        });
    }
    if !(opts.target_p90_wait_h.is_finite() && opts.target_p90_wait_h > 0.0) {
        return Err(SimError::Plan {
            field: "--max-p90-wait-h".into(),
            reason: "must be a positive number of hours".into(),
        });
    }
    if let Some(b) = opts.budget_krw
        && !(b.is_finite() && b > 0.0)
    {
        return Err(SimError::Plan {
            field: "--budget-krw".into(),
            reason: "must be a positive amount of won".into(),
        });
    }
    if candidates.is_empty() {
        return Err(SimError::Plan {
            field: "--fleet".into(),
            reason: "no candidate fleets: give --fleet FILE or --sweep".into(),
        });
    }
    let site = scn.site;
    let base = scn.catalogue()?;
    let mut scn = scn.clone();
    let mut demand: Option<Demand> = scn.demand.clone();
    if let Some(d) = &mut demand {
        if let Some(share) = opts.grant_share {
            *d = d.with_grant_share(share)?;
        }
        if let Some(y) = opts.year {
            d.year = y;
        }
        d.check()?;
    } else if opts.grant_share.is_some() || opts.year.is_some() {
        return Err(SimError::File {
            path: scn.path.clone(),
            reason: "demand: --grant-share and --year need the scenario's [demand] table".into(),
        });
    }
    let catalogue = match &demand {
        Some(d) => d.blend(&base),
        None => base.clone(),
    };
    if let (Some(d), WorkloadSpec::Synthetic(cfg)) = (&demand, &scn.workload) {
        scn.workload = WorkloadSpec::Synthetic(Box::new(d.apply(cfg)));
    }
    // Without a [demand] table, the workload's `load` is sized on the scenario's own fleet, so
    // every candidate faces the same jobs.
    let demand_fleet = match demand {
        Some(_) => None,
        None => Some(scn.load_fleet(&scn.fleet.clone(), &catalogue)?),
    };

    let mut kept = Vec::new();
    let mut over_budget = Vec::new();
    for c in candidates {
        let full: Vec<ServerUse> = c
            .servers
            .iter()
            .map(|(m, n)| ServerUse {
                model: m.clone(),
                servers: *n,
                utilization: 1.0,
            })
            .collect();
        let lifetime = cost::tco(&site, &catalogue, &full)?.lifetime_krw(&site);
        match opts.budget_krw {
            Some(b) if lifetime > b => over_budget.push(OverBudget {
                name: c.name,
                lifetime_krw_at_full_power: lifetime,
            }),
            _ => kept.push((c, lifetime)),
        }
    }
    if kept.is_empty() {
        let cheapest = over_budget
            .iter()
            .min_by(|a, b| {
                a.lifetime_krw_at_full_power
                    .total_cmp(&b.lifetime_krw_at_full_power)
            })
            .expect("some candidate");
        return Err(SimError::Plan {
            field: "--budget-krw".into(),
            reason: format!(
                "no candidate fits: the cheapest, {}, costs {:.0} KRW over {} years at full power",
                cheapest.name, cheapest.lifetime_krw_at_full_power, site.depreciation_years
            ),
        });
    }

    let seeds: Vec<u64> = (0..opts.seeds as u64)
        .map(|i| scn.seed.wrapping_add(i))
        .collect();
    let tasks: Vec<(usize, u64)> = (0..kept.len())
        .flat_map(|c| seeds.iter().map(move |&s| (c, s)))
        .collect();
    let total = tasks.len() as u64;
    let done = AtomicU64::new(0);
    let work = || -> Vec<Result<(u64, RunFigures), SimError>> {
        tasks
            .par_iter()
            .map(|&(c, seed)| {
                let r = run_one(
                    &scn,
                    &catalogue,
                    &site,
                    &kept[c].0,
                    seed,
                    demand_fleet.as_ref(),
                    &opts.policy,
                );
                progress(done.fetch_add(1, Ordering::Relaxed) + 1, total);
                r
            })
            .collect()
    };
    let results = match opts.threads {
        Some(n) => rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build()
            .map_err(|e| SimError::Plan {
                field: "--threads".into(),
                reason: e.to_string(),
            })?
            .install(work),
        None => work(),
    };
    let mut per_candidate: Vec<Vec<RunFigures>> = vec![Vec::new(); kept.len()];
    let mut jobs_per_run = 0;
    for (&(c, _), r) in tasks.iter().zip(results) {
        let (jobs, figures) = r?;
        jobs_per_run = jobs_per_run.max(jobs);
        per_candidate[c].push(figures);
    }
    let mut results: Vec<CandidateResult> = kept
        .into_iter()
        .zip(per_candidate)
        .map(|((c, lifetime), runs)| reduce(c, lifetime, runs, opts.target_p90_wait_h))
        .collect();
    mark_pareto(&mut results);

    let mut models: Vec<&str> = results
        .iter()
        .flat_map(|c| c.servers.iter().map(|s| s.0.as_str()))
        .collect();
    models.sort();
    models.dedup();
    let accelerators = models
        .iter()
        .filter_map(|m| catalogue.get(m).cloned())
        .collect();
    let demand_figures = demand.map(|d| DemandFigures {
        year: d.year,
        growth_per_year: d.growth_per_year,
        growth_factor: d.growth_factor(),
        applications: d.applications(),
        asked_gpus: d.asked_gpus(),
        granted_gpus: d.granted_gpus(),
        grant_share: d.granted_gpus() / d.asked_gpus(),
        mix: d.mix(),
        tracks: d.tracks.clone(),
    });
    let recommendation = recommend(&results, opts, &site, seeds.len());
    Ok(Plan {
        scenario: scn.name.clone(),
        policy: opts.policy.clone(),
        seeds,
        jobs_per_run,
        target_p90_wait_h: opts.target_p90_wait_h,
        budget_krw: opts.budget_krw,
        site,
        demand: demand_figures,
        accelerators,
        candidates: results,
        over_budget,
        recommendation,
    })
}

fn run_one(
    scn: &Scenario,
    catalogue: &Catalogue,
    site: &Site,
    cand: &Candidate,
    seed: u64,
    demand_fleet: Option<&FleetSpec>,
    policy: &str,
) -> Result<(u64, RunFigures), SimError> {
    let mut s = scn.clone();
    s.seed = seed;
    let w = s.load_workload_sized(&cand.fleet, demand_fleet.unwrap_or(&cand.fleet))?;
    let cfg = s.sim_config(policy)?;
    let r = driver::run(&w, &cand.fleet, catalogue, &cfg, &mut |_, _| {})?;
    let mut waits = Vec::with_capacity(w.jobs.len());
    for (i, j) in w.jobs.iter().enumerate() {
        if matches!(r.outcome[i], Outcome::Completed | Outcome::TimedOut) {
            waits.push((r.first_start[i] - j.submit.0) as f64 / 3_600_000.0);
        }
    }
    waits.sort_by(f64::total_cmp);
    let jobs = w.jobs.len() as u64;
    let (util, delivered) = steady_state(&r);
    let uses: Vec<ServerUse> = cand
        .servers
        .iter()
        .map(|(m, n)| ServerUse {
            model: m.clone(),
            servers: *n,
            utilization: util.iter().find(|u| u.0 == *m).map(|u| u.1).unwrap_or(0.0),
        })
        .collect();
    let tco = cost::tco(site, catalogue, &uses)?;
    let busy: f64 = r
        .models
        .iter()
        .zip(&util)
        .map(|(m, u)| m.gpus as f64 * u.1)
        .sum();
    let gpus: f64 = r.models.iter().map(|m| m.gpus as f64).sum();
    let per_h = |x: f64| if delivered > 0.0 { x / delivered } else { 0.0 };
    Ok((
        jobs,
        RunFigures {
            seed,
            jobs,
            completed_share: waits.len() as f64 / jobs.max(1) as f64,
            mean_wait_h: waits.iter().sum::<f64>() / waits.len().max(1) as f64,
            p50_wait_h: percentile(&waits, 50.0),
            p90_wait_h: percentile(&waits, 90.0),
            p99_wait_h: percentile(&waits, 99.0),
            utilization: if gpus > 0.0 { busy / gpus } else { 0.0 },
            delivered_gpu_hours_per_year: delivered,
            krw_per_delivered_gpu_hour: per_h(tco.total_krw_per_year),
            usd_per_delivered_gpu_hour: per_h(tco.total_usd_per_year),
            tco,
        },
    ))
}

/// Busy share per model and reference-class GPU-hours delivered a year, over the arrival window
/// (the loaded steady state, without the drain at the end), or the whole run when all jobs
/// arrive at once.
fn steady_state(r: &RunResult) -> (Vec<(String, f64)>, f64) {
    let (busy, span_ms, kept): (Vec<f64>, f64, f64) = match &r.window {
        Some(w) if r.window_ms > 0 && w.alloc_milli_ms > 0.0 => (
            w.busy_milli_ms.clone(),
            r.window_ms as f64,
            1.0 - (w.lost_milli_ms / w.alloc_milli_ms).min(1.0),
        ),
        _ => (
            r.models.iter().map(|m| m.busy_milli_ms).collect(),
            r.makespan_ms.max(1) as f64,
            if r.alloc_milli_ms > 0.0 {
                1.0 - (r.lost_milli_ms / r.alloc_milli_ms).min(1.0)
            } else {
                1.0
            },
        ),
    };
    let util = r
        .models
        .iter()
        .zip(&busy)
        .map(|(m, b)| {
            let cap = m.gpus as f64 * 1000.0 * span_ms;
            (m.model.clone(), if cap > 0.0 { b / cap } else { 0.0 })
        })
        .collect();
    let work_h: f64 = r
        .models
        .iter()
        .zip(&busy)
        .map(|(m, b)| b * m.speed * kept / 1000.0 / 3_600_000.0)
        .sum();
    let span_h = span_ms / 3_600_000.0;
    (util, work_h / span_h * HOURS_PER_YEAR)
}

fn reduce(c: Candidate, lifetime: f64, runs: Vec<RunFigures>, target: f64) -> CandidateResult {
    let of = |f: &dyn Fn(&RunFigures) -> f64| Spread::of(&runs.iter().map(f).collect::<Vec<_>>());
    let completed_share = of(&|r| r.completed_share);
    let p90 = of(&|r| r.p90_wait_h);
    let tco = of(&|r| r.tco.total_krw_per_year);
    CandidateResult {
        total_servers: c.total_servers(),
        accelerators: c.fleet.total_gpus(),
        capex_krw: runs.first().map_or(0.0, |r| r.tco.capex_krw),
        lifetime_krw_at_full_power: lifetime,
        p50_wait_h: of(&|r| r.p50_wait_h),
        p99_wait_h: of(&|r| r.p99_wait_h),
        utilization: of(&|r| r.utilization),
        delivered_gpu_hours_per_year: of(&|r| r.delivered_gpu_hours_per_year),
        energy_mwh_per_year: of(&|r| r.tco.energy_mwh_per_year),
        tco_usd_per_year: of(&|r| r.tco.total_usd_per_year),
        krw_per_delivered_gpu_hour: of(&|r| r.krw_per_delivered_gpu_hour),
        usd_per_delivered_gpu_hour: of(&|r| r.usd_per_delivered_gpu_hour),
        meets_target: p90.hi <= target && completed_share.mean >= 0.99,
        pareto: false,
        completed_share,
        p90_wait_h: p90,
        tco_krw_per_year: tco,
        name: c.name,
        mix: c.mix,
        servers: c.servers,
        runs,
    }
}

fn mark_pareto(cs: &mut [CandidateResult]) {
    let pts: Vec<(f64, f64)> = cs
        .iter()
        .map(|c| (c.tco_krw_per_year.mean, c.p90_wait_h.mean))
        .collect();
    for (i, c) in cs.iter_mut().enumerate() {
        let (t, w) = pts[i];
        c.pareto = !pts
            .iter()
            .enumerate()
            .any(|(j, &(t2, w2))| j != i && t2 <= t && w2 <= w && (t2 < t || w2 < w));
    }
}

/// Hours with sense: one decimal under 10, none above.
pub fn fmt_h(h: f64) -> String {
    if h.abs() < 10.0 {
        format!("{h:.1}")
    } else {
        format!("{h:.0}")
    }
}

/// A whole number with thousands separators.
pub fn thousands(x: f64) -> String {
    let s = format!("{:.0}", x.abs());
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    if x < -0.5 { format!("-{out}") } else { out }
}

/// Billions of won, for English text.
pub fn bn_krw(x: f64) -> String {
    format!("{:.1} billion KRW", x / 1e9)
}

/// 억 원 (hundreds of millions of won), for Korean text.
pub fn eok(x: f64) -> String {
    format!("{}억 원", thousands(x / 1e8))
}

fn recommend(cs: &[CandidateResult], opts: &Options, site: &Site, seeds: usize) -> Recommendation {
    let w = fmt_h(opts.target_p90_wait_h);
    let n = cs.len();
    let (in_budget_en, in_budget_ko) = if opts.budget_krw.is_some() {
        (" within the budget", " 중 예산 안에서")
    } else {
        ("", " 중")
    };
    let by_cost = |a: &&CandidateResult, b: &&CandidateResult| {
        a.tco_krw_per_year
            .mean
            .total_cmp(&b.tco_krw_per_year.mean)
            .then(a.name.cmp(&b.name))
    };
    let by_wait = |a: &&CandidateResult, b: &&CandidateResult| {
        a.p90_wait_h
            .mean
            .total_cmp(&b.p90_wait_h.mean)
            .then(a.tco_krw_per_year.mean.total_cmp(&b.tco_krw_per_year.mean))
    };
    let best_wait = cs.iter().min_by(by_wait).expect("candidates");
    let Some(pick) = cs.iter().filter(|c| c.meets_target).min_by(by_cost) else {
        let b = best_wait;
        return Recommendation {
            candidate: None,
            en: format!(
                "No candidate{in_budget_en} keeps the p90 wait under {w} h with 95% confidence over {seeds} seeds. \
                 The lowest p90 wait, {} h (95% interval {}–{} h), comes from {} at {} a year; reaching the target needs more servers or a smaller grant.",
                fmt_h(b.p90_wait_h.mean),
                fmt_h(b.p90_wait_h.lo),
                fmt_h(b.p90_wait_h.hi),
                b.name,
                bn_krw(b.tco_krw_per_year.mean)
            ),
            ko: format!(
                "{n}개 후보{in_budget_ko} {seeds}개 시드에서 95% 신뢰수준으로 p90 대기시간을 {w}시간 미만으로 유지하는 후보가 없습니다. \
                 가장 짧은 p90 대기시간은 {}의 {}시간(95% 구간 {}~{}시간)이며 연간 {}이 들고, 목표에 이르려면 서버를 늘리거나 배정량을 줄여야 합니다.",
                b.name,
                fmt_h(b.p90_wait_h.mean),
                fmt_h(b.p90_wait_h.lo),
                fmt_h(b.p90_wait_h.hi),
                eok(b.tco_krw_per_year.mean)
            ),
        };
    };
    let index = cs.iter().position(|c| std::ptr::eq(c, pick));
    let p = &pick.p90_wait_h;
    let first_en = format!(
        "Buy {} ({} accelerator{}): of the {n} candidates{in_budget_en}, it is the least costly whose p90 wait stays under {w} h with 95% confidence ({} h, interval {}–{} h over {seeds} seeds), at {} ({:.1} million USD) a year, {} KRW per delivered GPU-hour.",
        pick.name,
        thousands(pick.accelerators as f64),
        if pick.accelerators == 1 { "" } else { "s" },
        fmt_h(p.mean),
        fmt_h(p.lo),
        fmt_h(p.hi),
        bn_krw(pick.tco_krw_per_year.mean),
        pick.tco_usd_per_year.mean / 1e6,
        thousands(pick.krw_per_delivered_gpu_hour.mean),
    );
    let first_ko = format!(
        "권고안은 {}(가속기 {}개)입니다: {n}개 후보{in_budget_ko} p90 대기시간이 95% 신뢰수준으로 {w}시간 미만인 가장 저렴한 후보로(p90 {}시간, {seeds}개 시드의 구간 {}~{}시간), 연간 {}({:.1}백만 달러), 제공된 GPU시간당 {}원입니다.",
        pick.name,
        thousands(pick.accelerators as f64),
        fmt_h(p.mean),
        fmt_h(p.lo),
        fmt_h(p.hi),
        eok(pick.tco_krw_per_year.mean),
        pick.tco_usd_per_year.mean / 1e6,
        thousands(pick.krw_per_delivered_gpu_hour.mean),
    );
    let cheaper = cs
        .iter()
        .filter(|c| c.tco_krw_per_year.mean < pick.tco_krw_per_year.mean)
        .max_by(by_cost);
    let (second_en, second_ko) = match (opts.budget_krw, cheaper) {
        (Some(b), _) => {
            let spare = b - pick.lifetime_krw_at_full_power;
            (
                format!(
                    "The budget of {} over {} years pays for it even at full power with {} to spare; the lowest p90 wait it buys is {} h, with {}.",
                    bn_krw(b),
                    site.depreciation_years,
                    bn_krw(spare),
                    fmt_h(best_wait.p90_wait_h.mean),
                    best_wait.name
                ),
                format!(
                    "예산 {}({}년)은 전력 최대 기준으로도 이를 충당하고 {}이 남으며, 이 예산으로 얻는 가장 짧은 p90 대기시간은 {}의 {}시간입니다.",
                    eok(b),
                    site.depreciation_years,
                    eok(spare),
                    best_wait.name,
                    fmt_h(best_wait.p90_wait_h.mean)
                ),
            )
        }
        (None, Some(c)) => {
            let saves = pick.tco_krw_per_year.mean - c.tco_krw_per_year.mean;
            (
                format!(
                    "The next cheaper candidate, {}, would save {} a year but its p90 wait would be {} h (interval {}–{} h).",
                    c.name,
                    bn_krw(saves),
                    fmt_h(c.p90_wait_h.mean),
                    fmt_h(c.p90_wait_h.lo),
                    fmt_h(c.p90_wait_h.hi)
                ),
                format!(
                    "바로 아래로 저렴한 후보인 {}는 연간 {}을 절약하지만 p90 대기시간이 {}시간(구간 {}~{}시간)으로 늘어납니다.",
                    c.name,
                    eok(saves),
                    fmt_h(c.p90_wait_h.mean),
                    fmt_h(c.p90_wait_h.lo),
                    fmt_h(c.p90_wait_h.hi)
                ),
            )
        }
        (None, None) => (
            "No cheaper candidate was run; a sweep over smaller fleets would show whether fewer servers suffice.".to_string(),
            "더 저렴한 후보는 실행하지 않았으므로, 더 작은 규모를 포함한 스윕으로 서버를 줄일 수 있는지 확인해야 합니다.".to_string(),
        ),
    };
    Recommendation {
        candidate: index,
        en: format!("{first_en} {second_en}"),
        ko: format!("{first_ko} {second_ko}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mixes_split_by_largest_remainder_and_bad_ones_are_refused() {
        let cat = Catalogue::default_catalogue();
        let m = Mix::parse("H200:3+NPU:1", &cat).unwrap();
        assert_eq!(m.split(10), vec![("H200".into(), 8), ("NPU".into(), 2)]);
        assert_eq!(m.split(1), vec![("H200".to_string(), 1)]);
        let e = Mix::parse("A100", &cat).unwrap_err().to_string();
        assert!(e.starts_with("--mix: unknown GPU model `A100`"), "{e}");
        assert!(Mix::parse("H200:0", &cat).is_err());
        assert!(Mix::parse("H200+H200", &cat).is_err());
    }

    #[test]
    fn server_ranges() {
        assert_eq!(parse_servers("32..128/32").unwrap(), vec![32, 64, 96, 128]);
        assert_eq!(parse_servers("8,16").unwrap(), vec![8, 16]);
        assert!(parse_servers("0..8/4").is_err());
        assert!(parse_servers("64..32/8").is_err());
        let e = parse_servers("lots").unwrap_err().to_string();
        assert!(e.starts_with("--servers: `lots`"), "{e}");
    }

    #[test]
    fn pareto_keeps_only_undominated() {
        let cat = Catalogue::default_catalogue();
        let mixes = [Mix::parse("H200", &cat).unwrap()];
        let cands = sweep(&[1, 2, 3], &mixes, &cat).unwrap();
        let mut rs: Vec<CandidateResult> = cands
            .into_iter()
            .zip([(1.0, 5.0), (2.0, 6.0), (3.0, 1.0)])
            .map(|(c, (t, w))| {
                let mut r = reduce(c, 0.0, Vec::new(), 1.0);
                r.tco_krw_per_year.mean = t;
                r.p90_wait_h.mean = w;
                r
            })
            .collect();
        mark_pareto(&mut rs);
        let p: Vec<bool> = rs.iter().map(|r| r.pareto).collect();
        assert_eq!(p, vec![true, false, true]);
        assert_eq!(rs[0].name, "1×H200");
    }
}
