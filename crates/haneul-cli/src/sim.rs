//! `haneul sim`: replay a scenario (or a trace on a fleet) under several policies and report.

use anyhow::{Context, bail};
use clap::Args;
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use haneul_sim::metrics::PolicyReport;
use haneul_sim::report;
use haneul_sim::scenario::{self, Scenario};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[derive(Args)]
pub struct SimArgs {
    /// Scenario file (TOML): fleet, workload, seed and policies.
    #[arg(long, conflicts_with = "trace")]
    scenario: Option<PathBuf>,
    /// A trace as FORMAT:PATH (philly, openb, csv, jsonl), with --fleet. For openb the fleet
    /// defaults to the trace's own node list, openb_node_list_gpu_node.csv beside the pod list.
    #[arg(long)]
    trace: Option<String>,
    /// Fleet file (TOML); with --scenario it replaces the scenario's fleet.
    #[arg(long)]
    fleet: Option<PathBuf>,
    /// Policies to run (fifo, slurm-like, haneul, or a scenario's custom policy); repeatable.
    #[arg(long = "policy")]
    policies: Vec<String>,
    /// Print a JSON array, one object per policy.
    #[arg(long)]
    json: bool,
    /// Write report.json, CSV tables and SVG charts here.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Split each policy's idle GPU-time by cause (reservations, reclaim holds, quotas, jobs
    /// not started, fragmentation, no demand) as a table, or as `explain` in the JSON.
    #[arg(long)]
    explain: bool,
    /// Directory of public trace files, for scenarios whose workload names a `trace`
    /// (default: ../shared/traces when present).
    #[arg(long, env = "HANEUL_TRACES", value_name = "DIR")]
    traces: Option<PathBuf>,
}

/// A progress bar that shows itself only once a run has taken more than a second, on stderr,
/// and never when stderr is not a terminal.
pub struct Progress {
    bar: ProgressBar,
    started: Instant,
    shown: bool,
}

impl Progress {
    pub fn new(label: String) -> Progress {
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::hidden());
        bar.set_style(
            ProgressStyle::with_template("{prefix} [{bar:40}] {pos}/{len} jobs {elapsed}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        bar.set_prefix(label);
        Progress {
            bar,
            started: Instant::now(),
            shown: false,
        }
    }

    pub fn update(&mut self, done: u64, total: u64) {
        if !self.shown && self.started.elapsed() > Duration::from_secs(1) {
            self.bar.set_draw_target(ProgressDrawTarget::stderr());
            self.shown = true;
        }
        self.bar.set_length(total);
        self.bar.set_position(done);
    }

    pub fn finish(self) {
        self.bar.finish_and_clear();
    }
}

pub fn run(args: SimArgs) -> anyhow::Result<()> {
    let mut scn = match (&args.scenario, &args.trace) {
        (Some(p), None) => Scenario::load_with_traces(p, args.traces.as_deref())?,
        (None, Some(t)) => match (&args.fleet, t.strip_prefix("openb:")) {
            (Some(fleet), _) => Scenario::from_trace(t, fleet)?,
            (None, Some(pods)) => {
                let nodes = std::path::Path::new(pods)
                    .parent()
                    .unwrap_or(std::path::Path::new("."))
                    .join("openb_node_list_gpu_node.csv");
                let fleet = PathBuf::from(format!("openb-nodes:{}", nodes.display()));
                Scenario::from_trace(t, &fleet)?
            }
            (None, None) => bail!(
                "--trace {t} needs --fleet FILE (a fleet TOML, see examples/fleets/); only openb traces carry their own node list"
            ),
        },
        _ => bail!("give --scenario FILE, or --trace FORMAT:PATH with --fleet FILE"),
    };
    if let (Some(f), Some(_)) = (&args.fleet, &args.scenario) {
        scn.fleet = f.to_string_lossy().into_owned();
    }
    if !args.policies.is_empty() {
        for p in &args.policies {
            scn.policy(p)?;
        }
        scn.policies = args.policies.clone();
    }
    let catalogue = scn.catalogue()?;
    let fleet = scn.load_fleet(&scn.fleet.clone(), &catalogue)?;
    let workload = scn.load_workload(&fleet)?;
    let mut reports = Vec::new();
    for p in &scn.policies {
        let mut progress = Progress::new(format!("{p:>10}"));
        let r = scenario::run_policy_explained(
            &scn,
            &workload,
            &fleet,
            &catalogue,
            p,
            args.explain,
            &mut |d, t| progress.update(d, t),
        )?;
        progress.finish();
        reports.push(r);
    }
    if let Some(dir) = &args.out {
        write_outputs(dir, &reports, "report.json")?;
        for (name, svg) in report::sim_charts(&reports) {
            write(dir, &name, &svg)?;
        }
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&reports)?);
    } else {
        println!(
            "{}: {} jobs on {} ({})",
            scn.name,
            workload.jobs.len(),
            fleet.name,
            fleet.describe()
        );
        print_table(&reports);
        if args.explain {
            print_explain(&reports);
        }
        if let Some(r) = reports.iter().find(|r| !r.uncatalogued_models.is_empty()) {
            println!(
                "note: {} not in the catalogue: run at speed 1 with no price or power",
                r.uncatalogued_models.join(", ")
            );
        }
    }
    Ok(())
}

pub fn write(dir: &Path, name: &str, text: &str) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("{}: cannot create", dir.display()))?;
    let p = dir.join(name);
    std::fs::write(&p, text).with_context(|| format!("{}: cannot write", p.display()))
}

/// report.json (or the given name), summary.csv, by_class.csv and by_size.csv.
pub fn write_outputs(dir: &Path, reports: &[PolicyReport], json_name: &str) -> anyhow::Result<()> {
    write(dir, json_name, &serde_json::to_string_pretty(reports)?)?;
    write(dir, "summary.csv", &report::summary_csv(reports))?;
    write(dir, "by_class.csv", &report::groups_csv(reports, true))?;
    write(dir, "by_size.csv", &report::groups_csv(reports, false))?;
    Ok(())
}

pub fn hours(s: f64) -> String {
    if s >= 3600.0 {
        format!("{:.1} h", s / 3600.0)
    } else if s >= 60.0 {
        format!("{:.1} min", s / 60.0)
    } else {
        format!("{s:.0} s")
    }
}

/// Where each policy's GPU-hours went: one row per part, GPU-hours and share of capacity.
fn print_explain(reports: &[PolicyReport]) {
    let explained: Vec<_> = reports
        .iter()
        .filter_map(|r| r.explain.as_ref().map(|e| (r, e)))
        .collect();
    let Some((_, first)) = explained.first() else {
        return;
    };
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED);
    let mut header = vec!["GPU-hours".to_string()];
    header.extend(explained.iter().map(|(r, _)| r.policy.clone()));
    t.set_header(header);
    for (i, (name, _)) in first.parts().iter().enumerate() {
        let mut row = vec![name.to_string()];
        for (_, e) in &explained {
            let v = e.parts()[i].1;
            let share = if e.capacity_gpu_hours > 0.0 {
                v / e.capacity_gpu_hours * 100.0
            } else {
                0.0
            };
            row.push(format!("{v:.0} ({share:.1}%)"));
        }
        t.add_row(row);
    }
    let mut row = vec!["capacity".to_string()];
    row.extend(
        explained
            .iter()
            .map(|(_, e)| format!("{:.0}", e.capacity_gpu_hours)),
    );
    t.add_row(row);
    println!("{t}");
    // Job-hours queued by reason: the codes any policy saw, in the engine's code order.
    let mut codes: Vec<&str> = Vec::new();
    for code in haneul_sched::ReasonCode::ALL {
        if explained
            .iter()
            .any(|(_, e)| e.waiting_job_hours.contains_key(code.as_str()))
        {
            codes.push(code.as_str());
        }
    }
    if !codes.is_empty() {
        let mut t = Table::new();
        t.load_preset(UTF8_FULL_CONDENSED);
        let mut header = vec!["job-hours waiting".to_string()];
        header.extend(explained.iter().map(|(r, _)| r.policy.clone()));
        t.set_header(header);
        for code in codes {
            let mut row = vec![code.to_string()];
            for (_, e) in &explained {
                let total: f64 = e.waiting_job_hours.values().sum();
                let v = e.waiting_job_hours.get(code).copied().unwrap_or(0.0);
                let share = if total > 0.0 { v / total * 100.0 } else { 0.0 };
                row.push(format!("{v:.0} ({share:.1}%)"));
            }
            t.add_row(row);
        }
        println!("{t}");
    }
    for (r, e) in &explained {
        if let Some(j) = &e.last_job {
            println!(
                "{}: the last job to end (#{}, {}, {} GPUs) was submitted at {:.1} h, waited {:.1} h and ended at {:.1} h",
                r.policy, j.index, j.project, j.gpus, j.submitted_h, j.waited_h, j.ended_h
            );
        }
    }
}

/// One row of the summary table: how to print a figure of a report.
type Cell = Box<dyn Fn(&PolicyReport) -> String>;

fn print_table(reports: &[PolicyReport]) {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED);
    let mut header = vec!["".to_string()];
    header.extend(reports.iter().map(|r| r.policy.clone()));
    t.set_header(header);
    let pct = |v: f64| format!("{:.1}%", v * 100.0);
    let rows: Vec<(&str, Cell)> = vec![
        (
            "jobs completed",
            Box::new(|r| format!("{} / {}", r.completed + r.timed_out, r.jobs)),
        ),
        ("utilization", Box::new(move |r| pct(r.utilization))),
        ("allocation", Box::new(move |r| pct(r.allocation))),
        ("avg JCT", Box::new(|r| hours(r.avg_jct_s))),
        (
            "p50 / p99 JCT",
            Box::new(|r| format!("{} / {}", hours(r.p50_jct_s), hours(r.p99_jct_s))),
        ),
        ("avg wait", Box::new(|r| hours(r.avg_wait_s))),
        (
            "p50 / p99 wait",
            Box::new(|r| format!("{} / {}", hours(r.p50_wait_s), hours(r.p99_wait_s))),
        ),
        ("makespan", Box::new(|r| hours(r.makespan_s))),
        (
            "Jain fairness",
            Box::new(|r| format!("{:.3}", r.jain_fairness)),
        ),
        ("preemptions", Box::new(|r| r.preemptions.to_string())),
        (
            "GPU-hours lost",
            Box::new(|r| format!("{:.0}", r.gpu_hours_lost)),
        ),
        ("fragmentation", Box::new(move |r| pct(r.fragmentation))),
        ("cost", Box::new(|r| format!("${:.0}", r.cost_usd))),
        (
            "$ / delivered GPU-h",
            Box::new(|r| format!("{:.2}", r.cost_per_delivered_gpu_hour)),
        ),
        ("energy", Box::new(|r| format!("{:.1} MWh", r.energy_mwh))),
        ("wall time", Box::new(|r| format!("{:.2} s", r.wall_s))),
    ];
    for (name, f) in &rows {
        let mut row = vec![name.to_string()];
        row.extend(reports.iter().map(f));
        t.add_row(row);
    }
    println!("{t}");
    if let Some(first) = reports.first() {
        let mut c = Table::new();
        c.load_preset(UTF8_FULL_CONDENSED);
        let mut header = vec!["tenant class".to_string()];
        for r in reports {
            header.push(format!("{} p50/p99 wait", r.policy));
        }
        header.push("entitled".into());
        header.push("fair".into());
        for r in reports {
            header.push(format!("{} share", r.policy));
        }
        c.set_header(header);
        for (i, g) in first.by_class.iter().enumerate() {
            let mut row = vec![g.group.clone()];
            for r in reports {
                let g = &r.by_class[i];
                row.push(format!("{} / {}", hours(g.p50_wait_s), hours(g.p99_wait_s)));
            }
            row.push(pct(g.entitlement.unwrap_or(0.0)));
            row.push(pct(g.fair_share.unwrap_or(0.0)));
            for r in reports {
                row.push(pct(r.by_class[i].share.unwrap_or(0.0)));
            }
            c.add_row(row);
        }
        println!("{c}");
    }
}
