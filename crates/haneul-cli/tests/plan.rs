//! End-to-end tests of `haneul plan`, the capacity planner: the real binary on tiny scenarios.
//! The cost model against figures worked by hand, the sweep's determinism per seed whatever the
//! number of threads, the budget and the demand options, refusals of bad input, and the HTML
//! report opened in headless Chromium.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_haneul"))
}

fn dir_with(files: &[(&str, &str)]) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let d = std::env::temp_dir().join(format!(
        "haneul-plan-test-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    for (name, text) in files {
        std::fs::write(d.join(name), text).unwrap();
    }
    d
}

fn run_in(dir: &Path, args: &[&str]) -> Output {
    bin().current_dir(dir).args(args).output().unwrap()
}

fn ok(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "haneul failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn failure(out: Output) -> String {
    assert!(!out.status.success(), "expected a failure");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!stderr.contains("panicked"), "panicked: {stderr}");
    stderr
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-6 * b.abs().max(1.0)
}

/// 300 synthetic jobs from 30 applications; the fleet file is only the scenario's own.
const TINY: &str = r#"
name = "tiny"
seed = 7
fleet = "fleet.toml"
[workload]
format = "synthetic"
jobs = 300
load = 0.8
server_track = 0.1
server_nodes = [[1, 1.0]]
duration_median_h = 0.5
duration_sigma = 1.0
duration_max_h = 12
[[workload.classes]]
class = "academia"
projects = 5
job_share = 0.7
[[workload.classes]]
class = "startup"
projects = 3
job_share = 0.3
[demand]
growth_per_year = 0.5
[[demand.tracks]]
name = "train"
work = "training"
applications = 10
gpus_asked = 4
gpus_granted = 2
[[demand.tracks]]
name = "serve"
work = "inference"
applications = 20
gpus_asked = 1
gpus_granted = 0.5
"#;

const ONE_H200: &str =
    "[[pools]]\nname = \"p\"\ngpu_model = \"H200\"\nnodes = 4\ngpus_per_node = 8\n";

fn tiny() -> PathBuf {
    dir_with(&[("scenario.toml", TINY), ("fleet.toml", ONE_H200)])
}

const SWEEP: [&str; 10] = [
    "--sweep",
    "--servers",
    "2..6/2",
    "--mix",
    "H200",
    "--mix",
    "B200",
    "--mix",
    "H200:1+NPU:1",
    "--json",
];

#[test]
fn one_job_costs_what_the_hand_worked_tco_says() {
    // One H100 and one B200 server (a single accelerator in each), one H100-hour of work.
    let h100 = "name = \"h100\"\n[[pools]]\nname = \"p\"\ngpu_model = \"H100\"\nnodes = 1\ngpus_per_node = 1\n";
    let b200 = "name = \"b200\"\n[[pools]]\nname = \"p\"\ngpu_model = \"B200\"\nnodes = 1\ngpus_per_node = 1\n";
    let jobs = "submit_s,duration_s,gpus\n0,3600,1\n";
    let scenario = "fleet = \"h100.toml\"\n[workload]\nformat = \"csv\"\npath = \"jobs.csv\"\n[site]\npue = 1.5\nkrw_per_kwh = 100\ndepreciation_years = 4\nops_krw_per_server_year = 10000000\nkrw_per_usd = 1000\n";
    let d = dir_with(&[
        ("h100.toml", h100),
        ("b200.toml", b200),
        ("jobs.csv", jobs),
        ("scenario.toml", scenario),
    ]);
    let p = ok(&run_in(
        &d,
        &[
            "plan",
            "--scenario",
            "scenario.toml",
            "--fleet",
            "h100.toml",
            "--fleet",
            "b200.toml",
            "--seeds",
            "2",
            "--json",
        ],
    ));
    let c = &p["candidates"];
    assert_eq!(c[0]["name"], "h100");
    // The job keeps its GPU busy from start to end: utilisation 1, so full server power.
    // H100 server: USD 250,000 x 1,000 over 4 years = 62,500,000 KRW a year; 10.2 kW x 8,760 h
    // x 1.5 = 134,028 kWh at 100 KRW = 13,402,800; operations 10,000,000.
    let h = 62_500_000.0 + 13_402_800.0 + 10_000_000.0;
    assert!(close(f(&c[0]["tco_krw_per_year"]["mean"]), h), "{}", c[0]);
    assert!(close(f(&c[0]["tco_usd_per_year"]["mean"]), h / 1000.0));
    assert!(close(f(&c[0]["utilization"]["mean"]), 1.0));
    // A year of one busy H100 delivers 8,760 H100-hours.
    assert!(close(
        f(&c[0]["delivered_gpu_hours_per_year"]["mean"]),
        8760.0
    ));
    assert!(close(
        f(&c[0]["krw_per_delivered_gpu_hour"]["mean"]),
        h / 8760.0
    ));
    // B200 server: USD 450,000 -> 112,500,000 a year; 14.3 kW x 8,760 x 1.5 x 100 = 18,790,200;
    // it does 2.2 H100-hours an hour (the catalogue's throughput, no [demand] to blend).
    let b = 112_500_000.0 + 18_790_200.0 + 10_000_000.0;
    assert!(close(f(&c[1]["tco_krw_per_year"]["mean"]), b), "{}", c[1]);
    assert!(close(
        f(&c[1]["krw_per_delivered_gpu_hour"]["mean"]),
        b / (8760.0 * 2.2)
    ));
    assert!(close(f(&c[1]["capex_krw"]), 450_000_000.0));
    // Two seeds of a trace are the same run: no spread.
    let p90 = &c[1]["p90_wait_h"];
    assert_eq!(p90["lo"], p90["hi"]);
    // Nobody waits: both meet the target; the cheaper per year is recommended.
    assert_eq!(p["recommendation"]["candidate"], 0);
    assert!(
        p["recommendation"]["en"]
            .as_str()
            .unwrap()
            .starts_with("Buy h100 (1 accelerator):"),
        "{}",
        p["recommendation"]
    );
}

#[test]
fn a_sweep_is_the_same_plan_on_one_thread_or_many_and_each_seed_stands_alone() {
    let d = tiny();
    let run = |threads: &str, seeds: &str, out: &str| {
        let mut args = vec!["plan", "--scenario", "scenario.toml"];
        args.extend(SWEEP);
        args.extend(["--seeds", seeds, "--threads", threads, "--out", out]);
        let o = run_in(&d, &args);
        ok(&o);
        std::fs::read(d.join(out).join("plan.json")).unwrap()
    };
    let one = run("1", "4", "a");
    let three = run("3", "4", "b");
    assert!(one == three, "plan.json differs between 1 and 3 threads");
    let p: Value = serde_json::from_slice(&one).unwrap();
    let cands = p["candidates"].as_array().unwrap();
    assert_eq!(cands.len(), 9);
    assert_eq!(cands[0]["name"], "2×H200");
    assert_eq!(cands[8]["name"], "3×H200 + 3×NPU");
    assert_eq!(p["seeds"], serde_json::json!([7, 8, 9, 10]));
    // Seeds give different arrivals: some spread somewhere.
    assert!(
        cands
            .iter()
            .any(|c| f(&c["p90_wait_h"]["hi"]) > f(&c["p90_wait_h"]["lo"])),
        "no spread over seeds"
    );
    // A seed's run does not depend on the other seeds or on the sweep around it.
    let two: Value = serde_json::from_slice(&run("2", "2", "c")).unwrap();
    for (a, b) in cands.iter().zip(two["candidates"].as_array().unwrap()) {
        assert_eq!(a["runs"][0], b["runs"][0]);
        assert_eq!(a["runs"][1], b["runs"][1]);
    }
    // More servers of the same kind never cost less a year.
    let tco: Vec<f64> = cands[..3]
        .iter()
        .map(|c| f(&c["tco_krw_per_year"]["mean"]))
        .collect();
    assert!(tco[0] < tco[1] && tco[1] < tco[2], "{tco:?}");
    // The report's companions are written.
    for name in ["candidates.csv", "pareto.svg", "plan.svg", "report.html"] {
        assert!(d.join("a").join(name).exists(), "{name} missing");
    }
}

#[test]
fn demand_sets_the_load_and_the_grant_share_and_year_change_it() {
    let d = tiny();
    let plan = |extra: &[&str]| {
        let mut args = vec![
            "plan",
            "--scenario",
            "scenario.toml",
            "--sweep",
            "--servers",
            "3",
            "--mix",
            "H200",
            "--seeds",
            "1",
            "--json",
        ];
        args.extend(extra);
        ok(&run_in(&d, &args))
    };
    let base = plan(&[]);
    // 10 x 2 + 20 x 0.5 = 30 granted GPUs of 60 asked, in year 1.
    assert!(close(f(&base["demand"]["granted_gpus"]), 30.0));
    assert!(close(f(&base["demand"]["grant_share"]), 0.5));
    assert_eq!(base["demand"]["applications"], 30);
    // H200 on 2/3 training and 1/3 inference: 1 / (2/3 / 1.1 + 1/3 / 1.45).
    let h200 = &base["accelerators"][0];
    assert!(close(
        f(&h200["throughput"]),
        1.0 / (2.0 / 3.0 / 1.1 + 1.0 / 3.0 / 1.45)
    ));
    let full = plan(&["--grant-share", "1"]);
    assert!(close(f(&full["demand"]["granted_gpus"]), 60.0));
    let third_year = plan(&["--year", "3"]);
    assert!(close(f(&third_year["demand"]["granted_gpus"]), 30.0 * 2.25));
    // More demand on the same fleet: busier GPUs.
    let u = |p: &Value| f(&p["candidates"][0]["utilization"]["mean"]);
    assert!(u(&full) > u(&base), "{} <= {}", u(&full), u(&base));
    let err = failure(run_in(
        &d,
        &[
            "plan",
            "--scenario",
            "scenario.toml",
            "--sweep",
            "--grant-share",
            "1.5",
        ],
    ));
    assert!(err.contains("--grant-share: must be above 0"), "{err}");
}

#[test]
fn a_budget_leaves_out_what_it_cannot_pay_and_refuses_when_nothing_fits() {
    let d = tiny();
    // 4 H200 servers cost 4 x USD 300,000 x 1,400 = 1.68 bn KRW, 336 M a year; at full power
    // 4 x 10.2 kW x 8,760 x 1.4 x 185 = 92.6 M; operations 80 M: 508.6 M a year, 2.54 bn over
    // 5 years. 2.6 bn pays for 4 servers, not 6.
    let mut args = vec!["plan", "--scenario", "scenario.toml"];
    args.extend(SWEEP);
    args.extend(["--seeds", "2", "--budget-krw", "2600000000"]);
    let p = ok(&run_in(&d, &args));
    let names: Vec<&str> = p["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"4×H200") && !names.contains(&"6×H200"),
        "{names:?}"
    );
    let over: Vec<&str> = p["over_budget"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert!(over.contains(&"6×H200"), "{over:?}");
    for c in p["candidates"].as_array().unwrap() {
        assert!(f(&c["lifetime_krw_at_full_power"]) <= 2.6e9);
    }
    let four = p["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "4×H200")
        .unwrap();
    let expect = 5.0 * (336e6 + 4.0 * 10.2 * 8760.0 * 1.4 * 185.0 + 80e6);
    assert!(close(f(&four["lifetime_krw_at_full_power"]), expect));
    let mut args = vec!["plan", "--scenario", "scenario.toml"];
    args.extend(SWEEP);
    args.extend(["--budget-krw", "1000"]);
    let err = failure(run_in(&d, &args));
    assert!(err.contains("--budget-krw: no candidate fits"), "{err}");
}

#[test]
fn bad_planner_input_is_refused_by_name() {
    let d = tiny();
    let cases: [(&[&str], &str); 6] = [
        (&[], "give candidate fleets with --fleet"),
        (
            &["--sweep", "--mix", "A100"],
            "--mix: unknown GPU model `A100`",
        ),
        (&["--sweep", "--servers", "0..4/2"], "--servers: `0..4/2`"),
        (&["--sweep", "--seeds", "0"], "--seeds: must be 1 to 1000"),
        (&["--sweep", "--max-p90-wait-h=0"], "--max-p90-wait-h:"),
        (
            &["--mix", "H200", "--fleet", "fleet.toml"],
            "--mix needs --sweep",
        ),
    ];
    for (extra, want) in cases {
        let mut args = vec!["plan", "--scenario", "scenario.toml"];
        args.extend(extra);
        let err = failure(run_in(&d, &args));
        assert!(err.contains(want), "{extra:?}: {err}");
    }
    // A demand on a trace workload, and a site value out of range, name their field.
    let trace = "fleet = \"fleet.toml\"\n[workload]\nformat = \"csv\"\npath = \"j.csv\"\n[demand]\n[[demand.tracks]]\nname = \"t\"\nwork = \"training\"\napplications = 1\ngpus_asked = 1\ngpus_granted = 1\n";
    let site = "fleet = \"fleet.toml\"\n[workload]\nformat = \"csv\"\npath = \"j.csv\"\n[site]\npue = 0.5\n";
    let d = dir_with(&[
        ("fleet.toml", ONE_H200),
        ("trace.toml", trace),
        ("site.toml", site),
    ]);
    let err = failure(run_in(
        &d,
        &["plan", "--scenario", "trace.toml", "--fleet", "fleet.toml"],
    ));
    assert!(
        err.contains("trace.toml: demand: needs a synthetic workload"),
        "{err}"
    );
    let err = failure(run_in(
        &d,
        &["plan", "--scenario", "site.toml", "--fleet", "fleet.toml"],
    ));
    assert!(
        err.contains("site.toml: site.pue: must be 1.0 to 3.0"),
        "{err}"
    );
}

fn chromium() -> PathBuf {
    if let Some(p) = std::env::var_os("HANEUL_CHROMIUM") {
        return PathBuf::from(p);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for name in ["chromium", "chromium-browser", "google-chrome"] {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    panic!(
        "no Chromium found for the report test: install it \
         (`DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium`; .ci/run does) \
         or set HANEUL_CHROMIUM"
    );
}

fn headless(args: &[&str], profile: &Path) -> Output {
    Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-background-networking",
            "--no-first-run",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .output()
        .expect("run chromium")
}

#[test]
fn the_report_opens_in_chromium_with_recommendation_pareto_and_assumptions() {
    let d = tiny();
    let mut args = vec!["plan", "--scenario", "scenario.toml"];
    args.extend(SWEEP);
    args.extend(["--seeds", "3", "--out", "out"]);
    let p = ok(&run_in(&d, &args));
    let report = d.join("out/report.html");
    let url = format!("file://{}", report.display());
    let dom = headless(&["--dump-dom", &url], &d.join("profile"));
    assert!(
        dom.status.success(),
        "{}",
        String::from_utf8_lossy(&dom.stderr)
    );
    let dom = String::from_utf8_lossy(&dom.stdout);
    // The browser parsed the page: the DOM it dumps holds the sections and what is in them.
    let section = |id: &str| -> String {
        let at = dom
            .find(&format!("<section id=\"{id}\""))
            .unwrap_or_else(|| panic!("no section {id} in the DOM"));
        let end = dom[at..].find("</section>").unwrap() + at;
        dom[at..end].to_string()
    };
    let rec = section("recommendation");
    let en = p["recommendation"]["en"].as_str().unwrap();
    let ko = p["recommendation"]["ko"].as_str().unwrap();
    assert!(rec.contains(en), "{rec}");
    assert!(rec.contains(ko), "{rec}");
    assert!(
        en.starts_with("Buy ") || en.starts_with("No candidate"),
        "{en}"
    );
    let pareto = section("pareto");
    assert!(pareto.contains("<svg"), "no chart in the Pareto section");
    assert!(pareto.contains("TCO per year (billion KRW)"));
    assert!(pareto.contains("p90 wait (h)"));
    // One dot per candidate at least.
    assert!(pareto.matches("<circle").count() >= 9);
    let assumptions = section("assumptions");
    assert!(assumptions.contains("<table"));
    for want in [
        "site.pue",
        "KEPCO",
        "server price",
        "NPU",
        "illustrative",
        "MLPerf",
    ] {
        assert!(
            assumptions.contains(want),
            "{want} missing from the assumptions"
        );
    }
    assert!(section("seed-spread").contains("<table"));
    // And it renders: a screenshot of the page, not blank.
    let shot = d.join("report.png");
    let out = headless(
        &[
            &format!("--screenshot={}", shot.display()),
            "--window-size=1200,2400",
            &url,
        ],
        &d.join("profile2"),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let png = std::fs::read(&shot).unwrap();
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 20_000,
        "{} bytes",
        png.len()
    );
    if let Some(dir) = std::env::var_os("HANEUL_SCREENSHOTS") {
        let _ = std::fs::copy(&shot, Path::new(&dir).join("plan-report.png"));
    }
}
