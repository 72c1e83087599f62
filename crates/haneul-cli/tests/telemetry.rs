//! End to end: `haneul up` with simulated GPUs sampled every second and an idle policy of a
//! few seconds; a busy job and a sleeping job. `haneul eff --json` tells them apart, and the
//! idle policy notices the sleeping one, then stops it with reason `idle`, while the busy one
//! runs on.

mod common;

use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn haneul(config: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_haneul"))
        .args(args)
        .env("HANEUL_CONFIG", config)
        .env_remove("HANEUL_SERVER")
        .env_remove("HANEUL_TOKEN")
        .env_remove("HANEUL_PROJECT")
        .output()
        .expect("run haneul")
}

fn json(config: &Path, args: &[&str]) -> Value {
    let out = haneul(config, args);
    assert!(
        out.status.success(),
        "haneul {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "haneul {args:?}: {e}: {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// Polls `haneul eff ID --json` until `done` holds of it.
fn eff_until(config: &Path, id: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let e = json(config, &["eff", id, "--json"]);
        if done(&e) {
            return e;
        }
        assert!(Instant::now() < until, "job {id}: {what} never came: {e}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn eff_tells_busy_from_sleeping_and_the_idle_policy_stops_the_sleeper() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config/config.toml");
    let data = dir.path().join("data");
    // The server's data directory under `haneul up`'s; short durations, so the test polls
    // seconds rather than waits half an hour.
    std::fs::create_dir_all(data.join("server")).unwrap();
    std::fs::write(
        data.join("server/idle.toml"),
        "enabled = true\nthreshold_pct = 5\nwindow_s = 4\ngrace_s = 8\n",
    )
    .unwrap();
    let (_up, _, _) = common::up::start_up(dir.path(), "4xH200", &["--telemetry-interval", "1"]);
    let submit = |cmd: &[&str]| -> String {
        let mut args = vec!["submit", "--gpus", "1", "--json", "--"];
        args.extend_from_slice(cmd);
        json(&config, &args)["id"].as_i64().unwrap().to_string()
    };
    let busy = submit(&["sh", "-c", "while :; do :; done"]);
    let sleeper = submit(&["sleep", "300"]);

    let b = eff_until(&config, &busy, "three samples", |e| {
        e["samples"].as_i64() >= Some(3)
    });
    let s = eff_until(&config, &sleeper, "three samples", |e| {
        e["samples"].as_i64() >= Some(3)
    });
    // A busy loop keeps its GPU busy (less than 100% on a loaded machine); a sleep does not.
    let mean = |e: &Value| e["gpu_util_mean_pct"].as_f64().unwrap();
    assert!(mean(&b) >= 20.0, "busy job: {b}");
    assert!(mean(&s) < 5.0, "sleeping job: {s}");
    assert!(b["gpu_util_max_pct"].as_i64() > s["gpu_util_max_pct"].as_i64());
    assert!(b["gpu_mem_max_mib"].as_i64() > s["gpu_mem_max_mib"].as_i64());
    assert!(b["energy_wh"].as_f64().unwrap() > 0.0);
    for e in [&b, &s] {
        assert_eq!(e["gpus"].as_array().unwrap().len(), 1, "{e}");
        assert_eq!(e["gpus_allocated"], 1);
        assert!(
            e["gpus"][0]["uuid"]
                .as_str()
                .unwrap()
                .starts_with("SIM-H200-")
        );
    }
    assert_eq!(b["gpus_used"], 1);
    assert_eq!(s["gpus_used"], 0);
    assert_eq!(s["verdict"], "used none of its 1 GPUs; all stayed idle");

    // The sleeper is noticed first, then stopped with reason idle after the grace.
    let noticed = eff_until(&config, &sleeper, "the idle notice", |e| {
        e["idle_notice"].is_string()
    });
    assert_eq!(
        noticed["state"], "running",
        "stopped before its grace: {noticed}"
    );
    // The owner sees it where they look: `haneul usage` lists the job with when it stops,
    // and the notice API lists it beside the award notices, with the job.
    let usage = haneul(&config, &["usage"]);
    assert!(usage.status.success());
    let text = String::from_utf8_lossy(&usage.stdout);
    let section = text
        .split_once("idle GPUs:")
        .unwrap_or_else(|| panic!("no idle section in `haneul usage`: {text}"))
        .1;
    assert!(
        section
            .lines()
            .any(|l| l.contains(&format!("job {sleeper}: its GPUs averaged under 5%"))),
        "{text}"
    );
    assert!(!section.contains(&format!("job {busy}:")), "{text}");
    let notices = json(&config, &["award", "notices", "--json"]);
    let idle = notices
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["kind"] == format!("gpu.idle.job.{sleeper}"))
        .unwrap_or_else(|| panic!("{notices}"));
    assert_eq!(idle["job"].to_string(), sleeper, "{idle}");
    assert!(idle["stops_at"].as_i64() > Some(0), "{idle}");
    let until = Instant::now() + Duration::from_secs(60);
    let ended = loop {
        let job = json(&config, &["show", &sleeper, "--json"]);
        if job["state"] == "cancelled" {
            break job;
        }
        assert!(Instant::now() < until, "sleeping job not stopped: {job}");
        std::thread::sleep(Duration::from_millis(250));
    };
    assert_eq!(ended["reason"], "idle", "{ended}");
    // The busy job was never noticed and runs on.
    let b = json(&config, &["eff", &busy, "--json"]);
    assert_eq!(b["state"], "running", "{b}");
    assert!(b["idle_notice"].is_null(), "{b}");
    json(&config, &["cancel", &busy, "--json"]);
}
