//! The invariants every fault test checks afterwards, from the server's own records (and, where
//! a swarm ran the tasks, from its event files):
//! - every acknowledged job is present, and every job of the project eventually succeeds
//!   (requeued ones included);
//! - no job had two attempts at once: fences run 1..n, at most one attempt is live, each
//!   attempt ended before the next was created, and a fence ran on one node only;
//! - accounting: each ended attempt's `gpu_ms` is its GPUs times its held time, and the usage
//!   API's totals equal the sum of the attempts' GPU-seconds, and the award ledger charges each
//!   attempt exactly once for exactly that time (`check_accounting`).

use super::Server;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

/// What the checks saw, for the tests' figures.
#[derive(Debug, Default)]
pub struct Summary {
    pub jobs: usize,
    pub attempts: usize,
    /// Attempts ended `node_lost` or `preempted` (their jobs were requeued).
    pub requeued: usize,
    pub gpu_ms: i64,
}

/// Every job of `project`, newest first, through the API's pages.
pub fn project_jobs(server: &Server, admin: &str, project: i64) -> Vec<Value> {
    let mut out = Vec::new();
    let mut before = String::new();
    loop {
        let (s, v) = server.get(
            Some(admin),
            &format!("/v1/jobs?project={project}&limit=1000{before}"),
        );
        assert_eq!(s, 200, "{v}");
        out.extend(v["jobs"].as_array().unwrap().iter().cloned());
        match v["next_before"].as_i64() {
            Some(b) => before = format!("&before={b}"),
            None => return out,
        }
    }
}

const ENDED: [&str; 4] = ["succeeded", "failed", "cancelled", "timed_out"];

/// Waits up to `within` for every job of `project` to end, then checks all the invariants.
/// `acked` are the ids the clients were answered 201 for.
pub fn check(
    server: &Server,
    admin: &str,
    project: i64,
    acked: &[i64],
    within: Duration,
) -> Summary {
    check_with(server, admin, project, acked, Some(within))
}

/// The same checks where only the acknowledged jobs are run to the end (a test playing the
/// agent itself): a job committed but never answered, because the server died in between, may
/// still be queued; only its ended attempts are checked.
pub fn check_acked(server: &Server, admin: &str, project: i64, acked: &[i64]) -> Summary {
    check_with(server, admin, project, acked, None)
}

fn check_with(
    server: &Server,
    admin: &str,
    project: i64,
    acked: &[i64],
    wait_all: Option<Duration>,
) -> Summary {
    let listed: BTreeSet<i64> = project_jobs(server, admin, project)
        .iter()
        .map(|j| j["id"].as_i64().unwrap())
        .collect();
    for id in acked {
        assert!(listed.contains(id), "acknowledged job {id} is lost");
    }
    let acked: BTreeSet<i64> = acked.iter().copied().collect();
    let until = Instant::now() + wait_all.unwrap_or_default();
    while let Some(within) = wait_all {
        let open: Vec<Value> = project_jobs(server, admin, project)
            .into_iter()
            .filter(|j| !ENDED.contains(&j["state"].as_str().unwrap()))
            .collect();
        if open.is_empty() {
            break;
        }
        assert!(
            Instant::now() < until,
            "{} jobs had not ended after {within:?}, e.g. {}",
            open.len(),
            open[0]
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let mut sum = Summary::default();
    let mut per_model: BTreeMap<String, i64> = BTreeMap::new();
    for &id in &listed {
        let (s, v) = server.get(Some(admin), &format!("/v1/jobs/{id}"));
        assert_eq!(s, 200, "{v}");
        let must_end = wait_all.is_some() || acked.contains(&id);
        if !must_end && v["job"]["state"] != "succeeded" {
            // Unanswered and not run to the end by the test: its ended attempts still count.
            for a in v["attempts"].as_array().unwrap() {
                if let Some(ms) = a["ended_at"].as_i64().and(a["gpu_ms"].as_i64()) {
                    sum.gpu_ms += ms;
                    *per_model
                        .entry(a["gpu_model"].as_str().unwrap_or("").to_string())
                        .or_default() += ms;
                }
            }
            continue;
        }
        assert_eq!(
            v["job"]["state"], "succeeded",
            "job {id} did not succeed: {v}"
        );
        let attempts = v["attempts"].as_array().unwrap();
        sum.jobs += 1;
        sum.attempts += attempts.len();
        let mut prev_end: Option<i64> = None;
        for (i, a) in attempts.iter().enumerate() {
            assert_eq!(a["fence"].as_i64(), Some(i as i64 + 1), "job {id}: {v}");
            let last = i + 1 == attempts.len();
            let state = a["state"].as_str().unwrap();
            if last {
                assert_eq!(state, "succeeded", "job {id}: {v}");
            } else {
                assert!(
                    ["node_lost", "preempted"].contains(&state),
                    "job {id} ran again after its attempt ended {state}: {v}"
                );
                sum.requeued += 1;
            }
            let created = a["created_at"].as_i64().unwrap();
            let ended = a["ended_at"]
                .as_i64()
                .unwrap_or_else(|| panic!("job {id} ended with a live attempt: {v}"));
            if let Some(p) = prev_end {
                assert!(
                    p <= created,
                    "job {id}: attempt {} was created before attempt {i} ended: {v}",
                    i + 1
                );
            }
            prev_end = Some(ended);
            // Accounting of one attempt: its GPUs times the time it held them.
            let milli: i64 = a["tasks"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| {
                    t["gpus"].as_array().unwrap().len() as i64
                        * t["milli_per_gpu"].as_i64().unwrap()
                })
                .sum();
            let from = a["started_at"].as_i64().unwrap_or(created);
            let want = (ended - from).max(0) * milli / 1000;
            assert_eq!(a["gpu_ms"].as_i64(), Some(want), "job {id}: {a}");
            sum.gpu_ms += want;
            *per_model
                .entry(a["gpu_model"].as_str().unwrap_or("").to_string())
                .or_default() += want;
        }
    }
    check_accounting(server, admin, project, &per_model);
    sum
}

/// The usage API and the award ledger against the attempts' GPU-milliseconds per model.
pub fn check_accounting(
    server: &Server,
    admin: &str,
    project: i64,
    attempts_gpu_ms: &BTreeMap<String, i64>,
) {
    let (s, v) = server.get(Some(admin), &format!("/v1/usage?project={project}"));
    assert_eq!(s, 200, "{v}");
    let mut usage: BTreeMap<String, f64> = BTreeMap::new();
    for u in v.as_array().unwrap() {
        *usage
            .entry(u["gpu_model"].as_str().unwrap().to_string())
            .or_default() += u["gpu_hours"].as_f64().unwrap() * 3_600_000.0;
    }
    for (model, &ms) in attempts_gpu_ms {
        let got = usage.get(model).copied().unwrap_or(0.0);
        assert!(
            (got - ms as f64).abs() < 1.0,
            "usage of {model} is {got} GPU-ms, the attempts add up to {ms}: {v}"
        );
    }
    for model in usage.keys() {
        assert!(
            attempts_gpu_ms.contains_key(model),
            "usage names {model}, which no attempt ran on: {v}"
        );
    }

    // The award ledger: each ended attempt charged exactly once, for exactly its GPU time, and
    // a refund only ever undoes a charge of the same attempt.
    let (s, rows) = server.get(Some(admin), &format!("/v1/ledger?project={project}"));
    assert_eq!(s, 200, "{rows}");
    let mut charges: BTreeMap<i64, (String, i64)> = BTreeMap::new();
    let mut charged: BTreeMap<String, i64> = BTreeMap::new();
    for r in rows.as_array().unwrap() {
        if r["kind"] != "charge" {
            continue;
        }
        let (attempt, model, ms) = (
            r["attempt"].as_i64().unwrap(),
            r["gpu_model"].as_str().unwrap().to_string(),
            r["gpu_ms"].as_i64().unwrap(),
        );
        assert!(
            charges.insert(attempt, (model.clone(), ms)).is_none(),
            "attempt {attempt} is charged twice: {rows}"
        );
        *charged.entry(model).or_default() += ms;
    }
    for r in rows.as_array().unwrap() {
        if r["kind"] == "refund" {
            let attempt = r["attempt"].as_i64().unwrap();
            let (_, ms) = charges
                .get(&attempt)
                .unwrap_or_else(|| panic!("refund of attempt {attempt}, never charged: {rows}"));
            assert_eq!(-r["gpu_ms"].as_i64().unwrap(), *ms, "{rows}");
        }
    }
    charged.retain(|_, ms| *ms != 0);
    let ran: BTreeMap<String, i64> = attempts_gpu_ms
        .iter()
        .filter(|(_, ms)| **ms != 0)
        .map(|(m, ms)| (m.clone(), *ms))
        .collect();
    assert_eq!(
        charged, ran,
        "ledger charges per GPU model against the attempts: {rows}"
    );
}

/// One line of a swarm's events file.
#[derive(Debug, Clone)]
pub struct SwarmEvent {
    pub ev: String,
    pub node: i64,
    pub job: i64,
    pub fence: i64,
    pub task: i64,
    pub at: i64,
    pub accepted: Option<bool>,
    pub status: Option<i64>,
}

pub fn read_events(path: &Path) -> Vec<SwarmEvent> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}"));
            SwarmEvent {
                ev: v["ev"].as_str().unwrap().to_string(),
                node: v["node"].as_i64().unwrap(),
                job: v["job"].as_i64().unwrap(),
                fence: v["fence"].as_i64().unwrap(),
                task: v["task"].as_i64().unwrap(),
                at: v["at"].as_i64().unwrap(),
                accepted: v["accepted"].as_bool(),
                status: v["status"].as_i64(),
            }
        })
        .collect()
}

/// What the agents saw: each (job, fence, task) started on one node at most once, and each
/// job's result was taken from its final fence only (a stale fence's exit was refused).
pub fn check_swarm_events(server: &Server, admin: &str, events: &[SwarmEvent]) {
    let mut starts: BTreeMap<(i64, i64, i64), i64> = BTreeMap::new();
    for e in events.iter().filter(|e| e.ev == "start") {
        if let Some(other) = starts.insert((e.job, e.fence, e.task), e.node) {
            panic!(
                "job {} fence {} task {} started twice (nodes {other} and {})",
                e.job, e.fence, e.task, e.node
            );
        }
    }
    let jobs: BTreeSet<i64> = events.iter().map(|e| e.job).collect();
    for job in jobs {
        let (s, v) = server.get(Some(admin), &format!("/v1/jobs/{job}"));
        assert_eq!(s, 200, "{v}");
        let final_fence = v["attempts"].as_array().unwrap().len() as i64;
        for e in events.iter().filter(|e| e.job == job && e.ev == "end") {
            if e.accepted == Some(true) {
                assert_eq!(
                    e.fence, final_fence,
                    "job {job}: the exit of stale fence {} was accepted: {v}",
                    e.fence
                );
            }
        }
    }
}
