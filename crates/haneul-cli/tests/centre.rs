//! The scale run in miniature (the full one is `haneul bench centre`, docs/benchmarks.md): a
//! real server process, a swarm of 16 simulated nodes, a backlog and a stream of submissions.
//! It checks that the harness measures what it says: every stream job started, heartbeats were
//! held, and the latencies are those of real starts.

use serde_json::Value;
use std::process::Command;

#[test]
fn a_small_centre_runs_and_reports_its_figures() {
    let out = Command::new(env!("CARGO_BIN_EXE_haneul"))
        .args(["bench", "centre", "--nodes", "16", "--queued", "400"])
        .args([
            "--backlog-runtime",
            "1..3",
            "--seconds",
            "3",
            "--rate",
            "20",
            "--json",
        ])
        .output()
        .expect("run haneul bench centre");
    assert!(
        out.status.success(),
        "bench centre failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert_eq!(v["gpus"], 128, "{v}");
    assert_eq!(v["stream_jobs"], 60, "{v}");
    assert_eq!(v["stream_unstarted_after_60s"], 0, "{v}");
    // Held, give or take a machine shared with other tests (a 3 s phase sees a dozen beats).
    let held =
        v["heartbeats_per_s"].as_f64().unwrap() / v["heartbeats_wanted_per_s"].as_f64().unwrap();
    assert!(held > 0.5, "{v}");
    let p50 = v["submit_to_start_p50_ms"].as_i64().unwrap();
    let p99 = v["submit_to_start_p99_ms"].as_i64().unwrap();
    assert!(0 < p50 && p50 <= p99, "{v}");
    assert!(
        v["submit_to_assign_p50_ms"].as_i64().unwrap() <= p50,
        "an attempt is assigned before it starts: {v}"
    );
    assert!(v["server_peak_rss_mib"].as_f64().unwrap() > 1.0, "{v}");
    // The backlog keeps the fleet busy, so starts go on through the measured phase.
    assert!(v["attempts_started_per_s"].as_f64().unwrap() > 10.0, "{v}");
}

/// `haneul bench gang` in miniature: one gang over 12 nodes, every task started, and stages
/// that follow each other (no poll answered before the attempt existed, no start taken before
/// its node heard of it).
#[test]
fn a_gang_over_the_whole_fleet_is_timed_stage_by_stage() {
    let out = Command::new(env!("CARGO_BIN_EXE_haneul"))
        .args([
            "bench", "gang", "--nodes", "12", "--gpus", "4xH200", "--json",
        ])
        .output()
        .expect("run haneul bench gang");
    assert!(
        out.status.success(),
        "bench gang failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert_eq!(
        (v["nodes"].as_i64(), v["gpus"].as_i64()),
        (Some(12), Some(48)),
        "{v}"
    );
    let ms = |k: &str| v[k].as_f64().unwrap_or_else(|| panic!("no {k}: {v}"));
    assert!(ms("allocation_ms") >= 0.0, "{v}");
    assert!(0.0 <= ms("delivered_first_ms"), "{v}");
    assert!(ms("delivered_first_ms") <= ms("delivered_last_ms"), "{v}");
    assert!(
        ms("delivered_first_ms") <= ms("start_reported_first_ms"),
        "{v}"
    );
    assert!(
        ms("start_reported_first_ms") <= ms("start_reported_last_ms"),
        "{v}"
    );
    assert!(
        ms("start_reported_last_ms") <= ms("submit_to_all_started_ms") + 5.0,
        "{v}"
    );
    // Then the gang is cancelled and ends, with submits timed while it stops and after.
    assert!(ms("cancel_to_gang_ended_ms") >= 0.0, "{v}");
    assert!(
        ms("submit_while_stopping_p50_ms") <= ms("submit_while_stopping_max_ms"),
        "{v}"
    );
    assert!(
        ms("first_submit_after_end_ms") <= ms("submits_after_end_max_ms"),
        "{v}"
    );
}
