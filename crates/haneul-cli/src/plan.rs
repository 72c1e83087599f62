//! `haneul plan`: the capacity planner. Candidate fleets (files, or a sweep over server counts
//! and mixes) each run on several seeds of the scenario's workload in parallel; the terminal gets
//! a table and the recommendation, `--out` the JSON, a CSV, the charts and the HTML report.

use crate::i18n::{Lang, lang};
use anyhow::bail;
use clap::Args;
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use haneul_sim::plan::{self, Candidate, Mix, Options, fmt_h, report, thousands};
use haneul_sim::scenario::Scenario;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::path::PathBuf;
use std::time::Instant;

#[derive(Args)]
pub struct PlanArgs {
    /// Scenario file: the workload, seed, catalogue, and the planner's [site] and [demand].
    #[arg(long)]
    scenario: PathBuf,
    /// Candidate fleet files; repeat for each.
    #[arg(long = "fleet")]
    fleets: Vec<PathBuf>,
    /// Sweep fleet size and mix: one candidate per --servers count and --mix.
    #[arg(long)]
    sweep: bool,
    /// Server counts of the sweep: FROM..TO/STEP or a list (32,64,128).
    #[arg(long, default_value = "32..256/32")]
    servers: String,
    /// Accelerator mixes of the sweep, by server share: H200, or H200:3+NPU:1; repeatable
    /// (default: H200, B200 and H200:3+NPU:1).
    #[arg(long = "mix")]
    mixes: Vec<String>,
    /// Seeds per candidate (the scenario's seed and the ones after it).
    #[arg(long, default_value_t = 10)]
    seeds: u32,
    /// The p90 wait, in hours, a recommended fleet must stay under with 95% confidence.
    #[arg(long, default_value_t = 24.0)]
    max_p90_wait_h: f64,
    /// Money for the depreciation life, KRW (servers, power at full load, operations); dearer
    /// candidates are not run.
    #[arg(long)]
    budget_krw: Option<f64>,
    /// Grant every track of the scenario's [demand] this share of the GPUs it asks (0-1).
    #[arg(long)]
    grant_share: Option<f64>,
    /// Plan for this year of operation (demand grows by [demand] growth_per_year).
    #[arg(long)]
    year: Option<u32>,
    /// Worker threads (default: one per core). The plan is the same whatever the number.
    #[arg(long)]
    threads: Option<usize>,
    /// Policy to run every candidate under (default: haneul).
    #[arg(long, default_value = "haneul")]
    policy: String,
    /// Print plan.json to stdout.
    #[arg(long)]
    json: bool,
    /// Write plan.json, candidates.csv, pareto.svg, plan.svg and report.html here.
    #[arg(long)]
    out: Option<PathBuf>,
}

pub fn run(args: PlanArgs) -> anyhow::Result<()> {
    if args.fleets.is_empty() && !args.sweep {
        bail!(
            "give candidate fleets with --fleet FILE (repeatable), or --sweep over --servers and --mix"
        );
    }
    let scn = Scenario::load(&args.scenario)?;
    let catalogue = scn.catalogue()?;
    let mut candidates = Vec::new();
    for f in &args.fleets {
        candidates.push(Candidate::from_fleet(
            scn.load_fleet(&f.to_string_lossy(), &catalogue)?,
        ));
    }
    if args.sweep {
        let servers = plan::parse_servers(&args.servers)?;
        let mixes = if args.mixes.is_empty() {
            vec!["H200".to_string(), "B200".into(), "H200:3+NPU:1".into()]
        } else {
            args.mixes.clone()
        };
        let mixes = mixes
            .iter()
            .map(|m| Mix::parse(m, &catalogue))
            .collect::<Result<Vec<_>, _>>()?;
        candidates.extend(plan::sweep(&servers, &mixes, &catalogue)?);
    } else if !args.mixes.is_empty() {
        bail!("--mix needs --sweep");
    }
    let opts = Options {
        policy: args.policy.clone(),
        seeds: args.seeds,
        target_p90_wait_h: args.max_p90_wait_h,
        budget_krw: args.budget_krw,
        grant_share: args.grant_share,
        year: args.year,
        threads: args.threads,
    };
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("plan [{bar:40}] {pos}/{len} runs {elapsed}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    let t0 = Instant::now();
    let result = plan::plan(&scn, candidates, &opts, &|done, total| {
        bar.set_length(total);
        bar.set_position(done);
    });
    bar.finish_and_clear();
    let p = result?;
    let wall = t0.elapsed().as_secs_f64();
    let runs = p.candidates.len() * p.seeds.len();
    let threads = args.threads.unwrap_or_else(rayon_threads);
    if let Some(dir) = &args.out {
        let json = serde_json::to_string_pretty(&p)? + "\n";
        crate::sim::write(dir, "plan.json", &json)?;
        crate::sim::write(dir, "candidates.csv", &report::candidates_csv(&p))?;
        crate::sim::write(dir, "pareto.svg", &report::pareto_svg(&p)?)?;
        crate::sim::write(dir, "plan.svg", &report::measures_svg(&p)?)?;
        crate::sim::write(dir, "report.html", &report::html(&p)?)?;
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&p)?);
        eprintln!(
            "{runs} runs ({} candidates × {} seeds) in {wall:.1} s on {threads} threads",
            p.candidates.len(),
            p.seeds.len()
        );
        return Ok(());
    }
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED);
    t.set_header(vec![
        "candidate",
        "accelerators",
        "TCO / year (bn KRW)",
        "KRW / GPU-h",
        "p50 wait (h)",
        "p90 wait (h) [95%]",
        "utilisation",
        "meets",
        "Pareto",
    ]);
    for (i, c) in p.candidates.iter().enumerate() {
        let mark = if p.recommendation.candidate == Some(i) {
            " ◀"
        } else {
            ""
        };
        t.add_row(vec![
            format!("{}{mark}", c.name),
            thousands(c.accelerators as f64),
            format!("{:.1}", c.tco_krw_per_year.mean / 1e9),
            thousands(c.krw_per_delivered_gpu_hour.mean),
            fmt_h(c.p50_wait_h.mean),
            format!(
                "{} [{}–{}]",
                fmt_h(c.p90_wait_h.mean),
                fmt_h(c.p90_wait_h.lo),
                fmt_h(c.p90_wait_h.hi)
            ),
            format!("{:.1}%", c.utilization.mean * 100.0),
            if c.meets_target { "yes" } else { "no" }.into(),
            if c.pareto { "●" } else { "" }.into(),
        ]);
    }
    println!(
        "{}: {} under {}, {} seeds, target p90 wait {} h",
        scn.name,
        args.scenario.display(),
        args.policy,
        p.seeds.len(),
        fmt_h(p.target_p90_wait_h)
    );
    println!("{t}");
    for o in &p.over_budget {
        println!(
            "over the budget, not run: {} ({:.1} bn KRW over {} years at full power)",
            o.name,
            o.lifetime_krw_at_full_power / 1e9,
            p.site.depreciation_years
        );
    }
    println!(
        "{}",
        match lang() {
            Lang::Ko => &p.recommendation.ko,
            Lang::En => &p.recommendation.en,
        }
    );
    println!(
        "{runs} runs ({} candidates × {} seeds) in {wall:.1} s on {threads} threads",
        p.candidates.len(),
        p.seeds.len()
    );
    Ok(())
}

fn rayon_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
