//! End-to-end tests of `haneul sim` (the planner's are in plan.rs): they run the real binary on tiny
//! scenarios whose every figure is computed by hand below, and on bad input.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_haneul"))
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The public trace directory: HANEUL_TRACES, or ../shared/traces beside the checkout
/// (`scripts/test` fetches the traces where neither holds them).
fn traces() -> PathBuf {
    std::env::var_os("HANEUL_TRACES")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/traces"))
}

fn philly_trace() -> PathBuf {
    traces().join("philly/philly.csv")
}

/// A fresh directory holding the given files.
fn dir_with(files: &[(&str, &str)]) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let d = std::env::temp_dir().join(format!(
        "haneul-sim-test-{}-{}",
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

fn json_ok(out: Output) -> Vec<Value> {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "haneul failed: {stderr}");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v.as_array().unwrap().clone()
}

fn failure(out: Output) -> String {
    assert!(!out.status.success(), "expected a failure");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!stderr.contains("panicked"), "panicked: {stderr}");
    stderr
}

fn f(v: &Value, key: &str) -> f64 {
    v[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} missing in {v}"))
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-6 * b.abs().max(1.0)
}

const TWO_NODES: &str = r#"
name = "two-nodes"
[[pools]]
name = "p"
gpu_model = "H100"
nodes = 2
gpus_per_node = 4
"#;

/// A: 4 GPUs at 0 for 100 s; B: 8 GPUs (both nodes) at 10 for 50 s; C: 4 GPUs at 20 for 30 s.
const THREE_JOBS: &str = "submit_s,duration_s,gpus,project\n0,100,4,p\n10,50,8,p\n20,30,4,p\n";

const THREE_JOBS_SCENARIO: &str = r#"
fleet = "fleet.toml"
measured_on = "H100"
[workload]
format = "csv"
path = "jobs.csv"
"#;

#[test]
fn three_jobs_on_two_nodes_match_hand_computed_figures() {
    let d = dir_with(&[
        ("fleet.toml", TWO_NODES),
        ("jobs.csv", THREE_JOBS),
        ("scenario.toml", THREE_JOBS_SCENARIO),
    ]);
    let reports = json_ok(run_in(
        &d,
        &[
            "sim",
            "--scenario",
            "scenario.toml",
            "--policy",
            "fifo",
            "--policy",
            "haneul",
            "--json",
        ],
    ));
    assert_eq!(reports.len(), 2);
    // FIFO: B waits for A (starts 100, ends 150); C may not pass B (starts 150, ends 180).
    let fifo = &reports[0];
    assert_eq!(fifo["policy"], "fifo");
    assert_eq!(fifo["jobs"], 3);
    assert_eq!(fifo["completed"], 3);
    assert!(close(f(fifo, "avg_jct_s"), (100.0 + 140.0 + 160.0) / 3.0));
    assert!(close(f(fifo, "p50_jct_s"), 140.0));
    assert!(close(f(fifo, "p99_jct_s"), 160.0));
    assert!(close(f(fifo, "avg_wait_s"), (0.0 + 90.0 + 130.0) / 3.0));
    assert!(close(f(fifo, "p50_wait_s"), 90.0));
    assert!(close(f(fifo, "p99_wait_s"), 130.0));
    assert!(close(f(fifo, "makespan_s"), 180.0));
    // GPU-seconds 4x100 + 8x50 + 4x30 = 920 over 8 GPUs x 180 s.
    assert!(close(f(fifo, "utilization"), 920.0 / 1440.0));
    assert!(close(f(fifo, "allocation"), 920.0 / 1440.0));
    assert!(close(f(fifo, "jain_fairness"), 1.0));
    // Haneul backfills C at 20 on the free node: it ends at 50, before B's reservation at 100.
    let h = &reports[1];
    assert_eq!(h["policy"], "haneul");
    assert!(close(f(h, "avg_jct_s"), (100.0 + 140.0 + 30.0) / 3.0));
    assert!(close(f(h, "p50_jct_s"), 100.0));
    assert!(close(f(h, "avg_wait_s"), 30.0));
    assert!(close(f(h, "p99_wait_s"), 90.0));
    assert!(close(f(h, "makespan_s"), 150.0));
    assert!(close(f(h, "utilization"), 920.0 / 1200.0));
    // Cost: 8 GPUs x $2.99 x 150 s; delivered 920 GPU-seconds.
    let cost = 8.0 * 2.99 * 150.0 / 3600.0;
    assert!(close(f(h, "cost_usd"), cost));
    assert!(close(
        f(h, "cost_per_delivered_gpu_hour"),
        cost / (920.0 / 3600.0)
    ));
    // Energy: 920 busy GPU-s at 700 W, 280 idle GPU-s at 70 W.
    assert!(close(
        f(h, "energy_mwh"),
        (920.0 * 700.0 + 280.0 * 70.0) / 3600.0 / 1e6
    ));
    // Size groups: two 1-node jobs of 4 GPUs, one of 8.
    let sizes = h["by_size"].as_array().unwrap();
    assert_eq!(sizes.len(), 2);
    assert_eq!(sizes[0]["group"], "2-4");
    assert_eq!(sizes[0]["jobs"], 2);
    assert_eq!(sizes[1]["group"], "5-8");
}

#[test]
fn explain_splits_idle_gpu_time_by_cause_as_computed_by_hand() {
    let d = dir_with(&[
        ("fleet.toml", TWO_NODES),
        ("jobs.csv", THREE_JOBS),
        ("scenario.toml", THREE_JOBS_SCENARIO),
    ]);
    let args = [
        "sim",
        "--scenario",
        "scenario.toml",
        "--policy",
        "fifo",
        "--policy",
        "haneul",
        "--explain",
    ];
    let mut json_args = args.to_vec();
    json_args.push("--json");
    let reports = json_ok(run_in(&d, &json_args));
    let gpu_s = |r: &Value, key: &str| f(&r["explain"], key) * 3600.0;
    // FIFO: node 1 idle with nothing waiting in 0-10 (40 GPU-s); B waits for the gang in 10-20
    // and nothing fits (40); C fits node 1 in 20-100 but may not pass B (320); after B, node 1
    // idles while C runs, 150-180 (120).
    let fifo = &reports[0];
    assert!(close(gpu_s(fifo, "no_demand_gpu_hours"), 160.0), "{fifo}");
    assert!(close(gpu_s(fifo, "fragmentation_gpu_hours"), 40.0));
    assert!(close(gpu_s(fifo, "not_started_gpu_hours"), 320.0));
    assert!(close(gpu_s(fifo, "reserved_gpu_hours"), 0.0));
    assert!(close(gpu_s(fifo, "busy_gpu_hours"), 920.0));
    assert!(close(gpu_s(fifo, "capacity_gpu_hours"), 1440.0));
    // Haneul: B's reservation holds node 1 in 10-20 and again in 50-100 after C, backfilled,
    // ends (240 GPU-s); 0-10 is idle without demand.
    let h = &reports[1];
    assert!(close(gpu_s(h, "reserved_gpu_hours"), 240.0), "{h}");
    assert!(close(gpu_s(h, "no_demand_gpu_hours"), 40.0));
    assert!(close(gpu_s(h, "not_started_gpu_hours"), 0.0));
    assert!(close(gpu_s(h, "capacity_gpu_hours"), 1200.0));
    // Job-seconds queued by reason. FIFO: B waits for room 10-100 and C for room 100-150
    // (Resources), C behind B 20-100 (Priority). Haneul: C backfills at once; B waits 10-100.
    let waited = |r: &Value, code: &str| {
        r["explain"]["waiting_job_hours"][code]
            .as_f64()
            .unwrap_or(0.0)
            * 3600.0
    };
    assert!(close(waited(fifo, "Resources"), 140.0), "{fifo}");
    assert!(close(waited(fifo, "Priority"), 80.0), "{fifo}");
    assert!(close(waited(h, "Resources"), 90.0), "{h}");
    assert!(close(waited(h, "Priority"), 0.0), "{h}");
    assert!(close(waited(h, "Reservation"), 0.0), "{h}");
    // Without --explain the JSON has no split; with it, the table names every part.
    let plain = json_ok(run_in(
        &d,
        &args[..7]
            .iter()
            .copied()
            .chain(["--json"])
            .collect::<Vec<_>>(),
    ));
    assert!(plain[0].get("explain").is_none());
    let out = run_in(&d, &args);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(text.contains("job-hours waiting"), "{text}");
    for part in [
        "reserved",
        "reclaim hold",
        "quota",
        "not started",
        "fragmentation",
        "no demand",
    ] {
        assert!(text.contains(part), "{part} missing in {text}");
    }
}

#[test]
fn run_time_scales_with_the_catalogue_and_time_limits_stop_jobs() {
    let fleet = "[[pools]]\nname = \"p\"\ngpu_model = \"H200\"\nnodes = 1\ngpus_per_node = 8\n";
    // 130 s measured on H100 runs 100 s on an H200 (throughput 1.3); the second job is stopped
    // by its 50 s limit.
    let jobs = "submit_s,duration_s,gpus,time_limit_s\n0,130,1,\n0,1000,1,50\n";
    let d = dir_with(&[("fleet.toml", fleet), ("jobs.csv", jobs)]);
    let reports = json_ok(run_in(
        &d,
        &[
            "sim",
            "--trace",
            "csv:jobs.csv",
            "--fleet",
            "fleet.toml",
            "--policy",
            "haneul",
            "--json",
        ],
    ));
    let r = &reports[0];
    assert_eq!(r["completed"], 1);
    assert_eq!(r["timed_out"], 1);
    assert!(close(f(r, "p99_jct_s"), 100.0), "{r}");
    assert!(close(f(r, "p50_jct_s"), 50.0));
    assert!(close(f(r, "makespan_s"), 100.0));
    // Delivered in H100 hours: 130 s, plus the 50 s x 1.3 the limited job did.
    assert!(close(f(r, "delivered_gpu_hours"), (130.0 + 65.0) / 3600.0));
}

#[test]
fn a_guarantee_is_given_back_by_preemption_with_checkpoint() {
    let fleet = "[[pools]]\nname = \"p\"\ngpu_model = \"H100\"\nnodes = 1\ngpus_per_node = 4\n";
    // Q borrows the whole node from 0 for 1000 s; P, guaranteed 4 GPUs, arrives at 100.
    let jobs = "submit_s,duration_s,gpus,project,grace_s\n0,1000,4,q,10\n100,50,4,p,10\n";
    let scenario = r#"
fleet = "fleet.toml"
policies = ["haneul"]
[workload]
format = "csv"
path = "jobs.csv"
[[projects]]
name = "p"
guaranteed_gpus = 4
"#;
    let d = dir_with(&[
        ("fleet.toml", fleet),
        ("jobs.csv", jobs),
        ("scenario.toml", scenario),
    ]);
    let r = &json_ok(run_in(
        &d,
        &["sim", "--scenario", "scenario.toml", "--json"],
    ))[0];
    // Q is told at 100 and killed at 110 after checkpointing 110 s; P runs 110-160; Q resumes at
    // 160 with 890 s left and ends at 1050.
    assert_eq!(r["preemptions"], 1);
    assert!(close(f(r, "gpu_hours_lost"), 0.0));
    assert!(close(f(r, "makespan_s"), 1050.0), "{r}");
    assert!(close(f(r, "p50_jct_s"), 60.0));
    assert!(close(f(r, "p50_wait_s"), 0.0));
    assert!(close(f(r, "p99_wait_s"), 10.0));
}

#[test]
fn philly_prefix_replays_deterministically() {
    let scenario = format!(
        r#"
seed = 3
fleet = "fleet.toml"
limit_jobs = 3000
policies = ["fifo", "haneul"]
[workload]
format = "philly"
path = "{}"
"#,
        philly_trace().display()
    );
    let fleet = "[[pools]]\nname = \"p\"\ngpu_model = \"H100\"\nnodes = 16\ngpus_per_node = 8\n";
    let d = dir_with(&[("fleet.toml", fleet), ("scenario.toml", &scenario)]);
    let strip = |mut v: Vec<Value>| {
        for r in &mut v {
            r.as_object_mut().unwrap().remove("wall_s");
        }
        serde_json::to_string(&v).unwrap()
    };
    let a = json_ok(run_in(
        &d,
        &["sim", "--scenario", "scenario.toml", "--json"],
    ));
    assert_eq!(a[0]["jobs"], 3000);
    for r in &a {
        assert_eq!(
            f(r, "completed") + f(r, "timed_out") + f(r, "rejected"),
            3000.0
        );
        assert!(f(r, "utilization") > 0.0 && f(r, "utilization") <= 1.0);
    }
    // Ten virtual clusters or more appear in the first jobs; each is a project.
    let b = json_ok(run_in(
        &d,
        &["sim", "--scenario", "scenario.toml", "--json"],
    ));
    assert_eq!(
        strip(a),
        strip(b),
        "same scenario and seed must give identical reports"
    );
}

#[test]
fn shipped_small_scenario_runs_from_the_repo_root_and_writes_charts() {
    let out = dir_with(&[]);
    let o = bin()
        .current_dir(repo_root())
        .args([
            "sim",
            "--scenario",
            "examples/scenarios/national-small.toml",
            "--policy",
            "haneul",
            "--out",
        ])
        .arg(&out)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(stdout.contains("utilization"), "{stdout}");
    assert!(stdout.contains("academia"), "{stdout}");
    for f in [
        "report.json",
        "summary.csv",
        "by_class.csv",
        "by_size.csv",
        "utilization.svg",
        "queue.svg",
        "wait_cdf_haneul.svg",
    ] {
        let p = out.join(f);
        assert!(p.exists(), "{f} missing");
    }
    let svg = std::fs::read_to_string(out.join("wait_cdf_haneul.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("partner"));
    let csv = std::fs::read_to_string(out.join("summary.csv")).unwrap();
    assert!(
        csv.lines()
            .nth(1)
            .unwrap()
            .starts_with("haneul,small-h200,576,20000,")
    );
}

#[test]
fn a_malformed_trace_row_names_file_line_and_field() {
    let bad = "timestamp,duration,num_gpus,gpu_time,cluster\n2017-10-09 07:01:55,66.0,1,66.0,a\n2017-10-09 07:02:55,soon,1,66.0,a\n";
    let d = dir_with(&[("fleet.toml", TWO_NODES), ("philly.csv", bad)]);
    let err = failure(run_in(
        &d,
        &[
            "sim",
            "--trace",
            "philly:philly.csv",
            "--fleet",
            "fleet.toml",
        ],
    ));
    assert!(err.contains("philly.csv:3: duration:"), "{err}");
}

#[test]
fn a_fleet_without_gpus_names_file_line_and_field() {
    let fleet = "name = \"cpu\"\n\n[[pools]]\nname = \"cpu\"\ngpu_model = \"H100\"\nnodes = 4\ngpus_per_node = 0\n";
    let d = dir_with(&[("fleet.toml", fleet), ("jobs.csv", THREE_JOBS)]);
    let err = failure(run_in(
        &d,
        &["sim", "--trace", "csv:jobs.csv", "--fleet", "fleet.toml"],
    ));
    assert!(
        err.contains("fleet.toml:3: pools: the fleet has no GPUs"),
        "{err}"
    );
}

#[test]
fn an_unknown_gpu_model_in_a_workload_names_file_line_and_field() {
    let jobs = "submit_s,duration_s,gpus,gpu_model\n0,10,1,H100\n5,10,1,A100\n";
    let d = dir_with(&[("fleet.toml", TWO_NODES), ("jobs.csv", jobs)]);
    let err = failure(run_in(
        &d,
        &["sim", "--trace", "csv:jobs.csv", "--fleet", "fleet.toml"],
    ));
    assert!(
        err.contains("jobs.csv:3: gpu_model: unknown GPU model `A100`"),
        "{err}"
    );
}

#[test]
fn bad_jsonl_and_missing_files_are_errors_not_panics() {
    let jobs =
        "{\"submit_s\": 0, \"duration_s\": 10, \"gpus\": 1}\n{\"submit_s\": 1, \"gpus\": 1}\n";
    let d = dir_with(&[("fleet.toml", TWO_NODES), ("jobs.jsonl", jobs)]);
    let err = failure(run_in(
        &d,
        &[
            "sim",
            "--trace",
            "jsonl:jobs.jsonl",
            "--fleet",
            "fleet.toml",
        ],
    ));
    assert!(err.contains("jobs.jsonl:2: duration_s:"), "{err}");
    let err = failure(run_in(
        &d,
        &["sim", "--trace", "philly:nope.csv", "--fleet", "fleet.toml"],
    ));
    assert!(err.contains("nope.csv"), "{err}");
    let err = failure(run_in(&d, &["sim", "--scenario", "missing.toml"]));
    assert!(err.contains("missing.toml"), "{err}");
}

#[test]
fn openb_pods_run_on_the_openb_node_list() {
    let nodes =
        "sn,cpu_milli,memory_mib,gpu,model\nn0,64000,262144,2,V100M16\nn1,96000,393216,8,G2\n";
    // Two shares of one GPU pinned to V100M16 (they fit one GPU together), and a whole G2 GPU.
    let pods = "name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,qos,pod_phase,creation_time,deletion_time,scheduled_time\n\
p0,4000,8192,1,500,V100M16,LS,Running,0,100,0\n\
p1,4000,8192,1,500,V100M16,LS,Running,10,60,10\n\
p2,8000,8192,1,1000,,LS,Running,20,50,20\n";
    let scenario = "fleet = \"openb-nodes:nodes.csv\"\npolicies = [\"haneul\"]\n[workload]\nformat = \"openb\"\npath = \"pods.csv\"\n";
    let d = dir_with(&[
        ("nodes.csv", nodes),
        ("pods.csv", pods),
        ("scenario.toml", scenario),
    ]);
    let r = &json_ok(run_in(
        &d,
        &["sim", "--scenario", "scenario.toml", "--json"],
    ))[0];
    assert_eq!(r["completed"], 3);
    assert_eq!(r["fleet_gpus"], 10);
    assert!(close(f(r, "makespan_s"), 100.0));
    assert!(close(f(r, "p99_wait_s"), 0.0));
    // GPU-seconds: 0.5 x 100 + 0.5 x 50 + 1 x 30 = 105 over 10 GPUs x 100 s.
    assert!(close(f(r, "allocation"), 105.0 / 1000.0), "{r}");
    assert_eq!(r["uncatalogued_models"][0], "G2");
    // A pod pinned to a model the node list lacks is refused with its line.
    let bad = format!("{pods}p3,1000,1024,1,1000,A100,LS,Running,30,40,30\n");
    std::fs::write(d.join("pods.csv"), bad).unwrap();
    let err = failure(run_in(&d, &["sim", "--scenario", "scenario.toml"]));
    assert!(
        err.contains("pods.csv:5: gpu_spec: unknown GPU model `A100`"),
        "{err}"
    );
}

#[test]
fn node_failures_requeue_work_and_stay_deterministic() {
    let fleet = "[[pools]]\nname = \"p\"\ngpu_model = \"H100\"\nnodes = 4\ngpus_per_node = 8\n";
    let mut jobs = String::from("submit_s,duration_s,gpus,project\n");
    for i in 0..200 {
        jobs.push_str(&format!(
            "{},{},{},p{}\n",
            i * 60,
            3600 + (i % 7) * 600,
            1 << (i % 4),
            i % 3
        ));
    }
    // A node fails every 10 hours on average and is back after 1: many failures in the run.
    let scenario = "seed = 5\nfleet = \"fleet.toml\"\npolicies = [\"slurm-like\", \"haneul\"]\n[workload]\nformat = \"csv\"\npath = \"jobs.csv\"\n[failures]\nmtbf_node_hours = 10\nrepair_hours = 1\n";
    let d = dir_with(&[
        ("fleet.toml", fleet),
        ("jobs.csv", &jobs),
        ("scenario.toml", scenario),
    ]);
    let a = json_ok(run_in(
        &d,
        &["sim", "--scenario", "scenario.toml", "--json"],
    ));
    for r in &a {
        assert_eq!(r["completed"], 200, "{r}");
        assert!(f(r, "node_failures") > 0.0);
        assert!(f(r, "gpu_hours_lost") > 0.0);
        assert!(f(r, "utilization") < f(r, "allocation"));
    }
    let b = json_ok(run_in(
        &d,
        &["sim", "--scenario", "scenario.toml", "--json"],
    ));
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x["gpu_hours_lost"], y["gpu_hours_lost"]);
        assert_eq!(x["avg_jct_s"], y["avg_jct_s"]);
    }
}

#[test]
fn fairness_counts_only_time_under_contention() {
    let fleet = "[[pools]]\nname = \"p\"\ngpu_model = \"H100\"\nnodes = 1\ngpus_per_node = 4\n";
    // a and b each want the whole node for 128 s from 0. While a runs, b waits: a holds 4 GPUs
    // against a fair 2, b 0 against 2, so Jain's index is (2+0)^2 / (2 x (4+0)) = 0.5. After
    // that only b asks, and nothing waits.
    let jobs = "submit_s,duration_s,gpus,project\n0,128,4,a\n0,128,4,b\n";
    let d = dir_with(&[("fleet.toml", fleet), ("jobs.csv", jobs)]);
    let r = json_ok(run_in(
        &d,
        &[
            "sim",
            "--trace",
            "csv:jobs.csv",
            "--fleet",
            "fleet.toml",
            "--policy",
            "fifo",
            "--json",
        ],
    ));
    assert!(close(f(&r[0], "jain_fairness"), 0.5), "{}", r[0]);
    // Alone, a project never waits: 1.
    let d = dir_with(&[
        ("fleet.toml", fleet),
        ("jobs.csv", "submit_s,duration_s,gpus\n0,10,4\n"),
    ]);
    let r = json_ok(run_in(
        &d,
        &[
            "sim",
            "--trace",
            "csv:jobs.csv",
            "--fleet",
            "fleet.toml",
            "--json",
        ],
    ));
    assert!(close(f(&r[0], "jain_fairness"), 1.0));
}

#[test]
fn absurd_times_are_refused_not_overflowed() {
    let d = dir_with(&[
        ("fleet.toml", TWO_NODES),
        ("jobs.csv", "submit_s,duration_s,gpus\n0,1e300,1\n"),
        (
            "philly.csv",
            "timestamp,duration,num_gpus,gpu_time,cluster\n99999-01-01 00:00:00,1,1,1,a\n",
        ),
    ]);
    let err = failure(run_in(
        &d,
        &["sim", "--trace", "csv:jobs.csv", "--fleet", "fleet.toml"],
    ));
    assert!(err.contains("jobs.csv:2: duration_s:"), "{err}");
    let err = failure(run_in(
        &d,
        &[
            "sim",
            "--trace",
            "philly:philly.csv",
            "--fleet",
            "fleet.toml",
        ],
    ));
    assert!(err.contains("philly.csv:2: timestamp:"), "{err}");
}

#[test]
fn a_preempted_job_without_grace_loses_its_run() {
    let fleet = "[[pools]]\nname = \"p\"\ngpu_model = \"H100\"\nnodes = 1\ngpus_per_node = 4\n";
    let jobs = "submit_s,duration_s,gpus,project\n0,1000,4,q\n100,50,4,p\n";
    let scenario = "fleet = \"fleet.toml\"\npolicies = [\"haneul\"]\n[workload]\nformat = \"csv\"\npath = \"jobs.csv\"\n[[projects]]\nname = \"p\"\nguaranteed_gpus = 4\n";
    let d = dir_with(&[
        ("fleet.toml", fleet),
        ("jobs.csv", jobs),
        ("scenario.toml", scenario),
    ]);
    let r = &json_ok(run_in(
        &d,
        &["sim", "--scenario", "scenario.toml", "--json"],
    ))[0];
    // Q is killed at once at 100 and loses 4 GPUs x 100 s; P runs 100-150; Q starts over at
    // 150 and ends at 1150.
    assert_eq!(r["preemptions"], 1);
    assert!(close(f(r, "gpu_hours_lost"), 400.0 / 3600.0), "{r}");
    assert!(close(f(r, "makespan_s"), 1150.0));
    // Allocated 4 x (100 + 50 + 1000) GPU-s over 4 x 1150; the lost 400 are not utilisation.
    assert!(close(f(r, "allocation"), 1.0));
    assert!(close(f(r, "utilization"), (4600.0 - 400.0) / 4600.0));
}

#[test]
fn a_scheduling_cadence_delays_starts_to_the_next_tick() {
    let scenario = format!("{THREE_JOBS_SCENARIO}\n");
    let scenario = scenario.replace("measured_on", "schedule_interval_s = 30\nmeasured_on");
    let d = dir_with(&[
        ("fleet.toml", TWO_NODES),
        ("jobs.csv", THREE_JOBS),
        ("scenario.toml", &scenario),
    ]);
    let r = &json_ok(run_in(
        &d,
        &[
            "sim",
            "--scenario",
            "scenario.toml",
            "--policy",
            "fifo",
            "--json",
        ],
    ))[0];
    // Passes at 0 (A starts), 30 (B blocked), 120 (after A's end at 100: B starts) and 180
    // (after B's end at 170: C starts, ends 210).
    assert_eq!(r["schedule_calls"], 4);
    assert!(
        close(f(r, "avg_wait_s"), (0.0 + 110.0 + 160.0) / 3.0),
        "{r}"
    );
    assert!(close(f(r, "avg_jct_s"), (100.0 + 160.0 + 190.0) / 3.0));
    assert!(close(f(r, "makespan_s"), 210.0));
}

#[test]
fn an_openb_trace_brings_its_own_node_list() {
    let pods = traces().join("alibaba-gpu-v2023-openb/csv/openb_pod_list_default.csv");
    let trace = format!("openb:{}", pods.display());
    let rows = json_ok(run_in(&repo_root(), &["sim", "--trace", &trace, "--json"]));
    let policies: Vec<&str> = rows.iter().map(|r| r["policy"].as_str().unwrap()).collect();
    assert_eq!(policies, ["fifo", "slurm-like", "haneul"]);
    for r in &rows {
        assert_eq!(f(r, "jobs"), 8152.0);
        assert_eq!(r["fleet_gpus"].as_f64().unwrap(), 6212.0);
    }
    // Other traces need a fleet, and say so.
    let trace = format!("philly:{}", philly_trace().display());
    let err = failure(run_in(&repo_root(), &["sim", "--trace", &trace]));
    assert!(err.contains("needs --fleet"), "{err}");
}

/// Without the public traces, what reads them fails naming where to download each file, its
/// licence and its citation; a scenario that names a `trace` finds it under `--traces`.
#[test]
fn a_missing_trace_says_where_to_get_it() {
    let empty = dir_with(&[]);
    let empty_s = empty.display().to_string();
    let err = failure(run_in(
        &repo_root(),
        &[
            "sim",
            "--scenario",
            "examples/scenarios/philly.toml",
            "--traces",
            &empty_s,
        ],
    ));
    for needle in [
        "petuum/adaptdl",
        "simulator/traces/philly.csv",
        "CC BY 4.0",
        "Jeon et al.",
    ] {
        assert!(err.contains(needle), "`{needle}` missing from: {err}");
    }
    let err = failure(run_in(
        &empty,
        &["bench", "openb", "--seeds", "42", "--traces", &empty_s],
    ));
    for needle in [
        "alibaba/clusterdata",
        "cluster-trace-gpu-v2023/csv/openb_pod_list_default.csv",
        "Weng et al.",
    ] {
        assert!(err.contains(needle), "`{needle}` missing from: {err}");
    }
    // The same scenario runs once its trace directory holds the file (a three-job Philly table).
    std::fs::create_dir_all(empty.join("philly")).unwrap();
    std::fs::write(
        empty.join("philly/philly.csv"),
        "timestamp,duration,num_gpus,gpu_time,cluster\n\
         2017-10-03 00:00:00,60,1,60,vc1\n\
         2017-10-03 00:00:10,120,2,240,vc2\n\
         2017-10-03 00:00:20,30,1,30,vc1\n",
    )
    .unwrap();
    let rows = json_ok(run_in(
        &repo_root(),
        &[
            "sim",
            "--scenario",
            "examples/scenarios/philly.toml",
            "--traces",
            &empty_s,
            "--policy",
            "fifo",
            "--json",
        ],
    ));
    assert_eq!(rows[0]["jobs"].as_u64(), Some(3), "{rows:?}");
}
