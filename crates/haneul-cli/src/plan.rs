//! `haneul plan`: one workload against several candidate fleets, side by side: cost per
//! delivered GPU-hour, waits and utilisation.

use crate::sim::{Progress, hours, write, write_outputs};
use clap::Args;
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use haneul_sim::report;
use haneul_sim::scenario::{self, Scenario};
use std::path::PathBuf;

#[derive(Args)]
pub struct PlanArgs {
    /// Scenario file: the workload, seed and catalogue (its own fleet is ignored).
    #[arg(long)]
    scenario: PathBuf,
    /// Candidate fleet files; repeat for each.
    #[arg(long = "fleet", required = true)]
    fleets: Vec<PathBuf>,
    /// Policy to run every fleet under (default: haneul).
    #[arg(long, default_value = "haneul")]
    policy: String,
    /// Print a JSON array, one object per fleet.
    #[arg(long)]
    json: bool,
    /// Write plan.json, CSV tables and an SVG chart here.
    #[arg(long)]
    out: Option<PathBuf>,
}

pub fn run(args: PlanArgs) -> anyhow::Result<()> {
    let scn = Scenario::load(&args.scenario)?;
    scn.policy(&args.policy)?;
    let catalogue = scn.catalogue()?;
    let mut reports = Vec::new();
    let first = scn.load_fleet(&args.fleets[0].to_string_lossy(), &catalogue)?;
    for f in &args.fleets {
        let fleet = scn.load_fleet(&f.to_string_lossy(), &catalogue)?;
        // A synthetic workload's arrival rate follows the fleet it is made for; every candidate
        // faces the jobs made for the first, so they are compared on the same demand.
        let workload = scn.load_workload_sized(&fleet, &first)?;
        let mut progress = Progress::new(format!("{:>10}", fleet.name));
        let r = scenario::run_policy(
            &scn,
            &workload,
            &fleet,
            &catalogue,
            &args.policy,
            &mut |d, t| progress.update(d, t),
        )?;
        progress.finish();
        reports.push(r);
    }
    if let Some(dir) = &args.out {
        write_outputs(dir, &reports, "plan.json")?;
        let cats: Vec<String> = reports.iter().map(|r| r.fleet.clone()).collect();
        let svg = report::bar_chart(
            &format!("Candidate fleets under {}", args.policy),
            &cats,
            &[
                (
                    "$ per delivered GPU-hour".into(),
                    reports
                        .iter()
                        .map(|r| r.cost_per_delivered_gpu_hour)
                        .collect(),
                ),
                (
                    "$ per GPU-hour while loaded".into(),
                    reports
                        .iter()
                        .map(|r| r.loaded_cost_per_delivered_gpu_hour)
                        .collect(),
                ),
                (
                    "p50 wait (h)".into(),
                    reports.iter().map(|r| r.p50_wait_s / 3600.0).collect(),
                ),
                (
                    "p99 wait (h)".into(),
                    reports.iter().map(|r| r.p99_wait_s / 3600.0).collect(),
                ),
                (
                    "utilization (%)".into(),
                    reports.iter().map(|r| r.utilization * 100.0).collect(),
                ),
            ],
        );
        write(dir, "plan.svg", &svg)?;
        for (name, svg) in report::sim_charts(&reports) {
            write(dir, &name, &svg)?;
        }
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&reports)?);
        return Ok(());
    }
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED);
    t.set_header(vec![
        "fleet",
        "GPUs",
        "cost",
        "$ / delivered GPU-h",
        "$ / GPU-h loaded",
        "delivered GPU-h",
        "utilization",
        "p50 wait",
        "p99 wait",
        "avg JCT",
        "energy",
    ]);
    for r in &reports {
        t.add_row(vec![
            r.fleet.clone(),
            r.fleet_gpus.to_string(),
            format!("${:.0}", r.cost_usd),
            format!("{:.2}", r.cost_per_delivered_gpu_hour),
            format!("{:.2}", r.loaded_cost_per_delivered_gpu_hour),
            format!("{:.0}", r.delivered_gpu_hours),
            format!("{:.1}%", r.utilization * 100.0),
            hours(r.p50_wait_s),
            hours(r.p99_wait_s),
            hours(r.avg_jct_s),
            format!("{:.1} MWh", r.energy_mwh),
        ]);
    }
    println!(
        "{}: {} under {}",
        scn.name,
        args.scenario.display(),
        args.policy
    );
    println!("{t}");
    Ok(())
}
