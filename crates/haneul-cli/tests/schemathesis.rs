//! The OpenAPI document against the real server, by a fuzzer nobody here wrote: schemathesis
//! (from PyPI, installed on first run into a virtual environment under the cargo target
//! directory) runs every operation with its checks and a bounded number of examples, against
//! a live `haneul server` on SQLite and on PostgreSQL. Any 5xx or answer that breaks the
//! document fails the test. The number of requests it made is printed (docs/reliability.md).

mod common;

use common::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Examples per operation: enough to reach every parameter's edges, bounded so the whole test
/// stays near a minute per backend on two cores.
const MAX_EXAMPLES: &str = "12";
/// The schemathesis release the suite was written against.
const VERSION: &str = "schemathesis>=4,<5";

fn target_dir() -> PathBuf {
    // CARGO_BIN_EXE_haneul is TARGET/release/haneul.
    Path::new(env!("CARGO_BIN_EXE_haneul"))
        .parent()
        .and_then(Path::parent)
        .expect("a target directory")
        .to_path_buf()
}

/// The `schemathesis` command, installed into TARGET/schemathesis-venv when missing.
fn schemathesis() -> PathBuf {
    // The two backends' tests run at once: one installs while the other waits, so that neither
    // finds a half-made venv.
    static INSTALL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _installing = INSTALL.lock().unwrap_or_else(|e| e.into_inner());
    let venv = target_dir().join("schemathesis-venv");
    let exe = venv.join("bin/schemathesis");
    if exe.exists() {
        return exe;
    }
    // What an interrupted install left behind.
    let _ = std::fs::remove_dir_all(&venv);
    let ok = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .status()
        .expect("python3 (with venv) is needed for the schemathesis test")
        .success();
    assert!(ok, "python3 -m venv failed");
    let ok = Command::new(venv.join("bin/pip"))
        .args(["install", "--quiet", VERSION])
        .status()
        .expect("pip")
        .success();
    assert!(
        ok,
        "pip install {VERSION} failed (PyPI must be reachable on first run)"
    );
    exe
}

/// Requests the server has answered, by operation (`METHOD /route`) and status, from its own
/// metrics (whose labels are the router's templates).
fn answered(server: &Server) -> BTreeMap<(String, u16), u64> {
    let out = Command::new("curl")
        .args(["-s", &format!("http://{}/metrics", server.addr)])
        .output();
    // (curl keeps this free of a second HTTP client.)
    let text = match out {
        Ok(o) => String::from_utf8_lossy(&o.stdout).into_owned(),
        Err(_) => return BTreeMap::new(),
    };
    let label = |l: &str, name: &str| -> Option<String> {
        let from = l.find(&format!("{name}=\""))? + name.len() + 2;
        Some(l[from..].split('"').next()?.to_string())
    };
    let mut by = BTreeMap::new();
    for l in text
        .lines()
        .filter(|l| l.starts_with("haneul_api_request_seconds_count"))
    {
        let (Some(method), Some(route), Some(status), Some(n)) = (
            label(l, "method"),
            label(l, "route"),
            label(l, "status").and_then(|s| s.parse().ok()),
            l.rsplit(' ').next().and_then(|n| n.parse::<f64>().ok()),
        ) else {
            continue;
        };
        *by.entry((format!("{method} {route}"), status)).or_default() += n as u64;
    }
    by
}

/// Whether the run failed only through schemathesis's own crashes: its data generator now and
/// then stops with a "Runtime Error" (seen: "AST constructor recursion depth mismatch") that says
/// nothing of the server. Any failed check, and any other error (a connection refused, a
/// timeout), is the server's.
fn only_generator_errors(report: &str) -> bool {
    if report.contains("FAILURES ===") {
        return false;
    }
    let Some(errors) = report.split("ERRORS ===").nth(1) else {
        return false;
    };
    let section = errors.split("\n===").next().unwrap_or_default();
    let blocks: Vec<&str> = section.split("\n___").skip(1).collect();
    !blocks.is_empty()
        && blocks.iter().all(|b| {
            b.lines()
                .skip(1)
                .find(|l| !l.trim().is_empty())
                .is_some_and(|l| l.trim() == "Runtime Error")
        })
}

#[test]
fn generator_crashes_are_told_from_server_failures() {
    let crash = "== ERRORS ===\n___ POST /v1/agent/register ___\nRuntime Error\n\nAST ...\n=== WARNINGS ===\n";
    assert!(only_generator_errors(crash));
    let network =
        "== ERRORS ===\n___ GET /v1/jobs ___\nNetwork Error\n\nrefused\n=== WARNINGS ===\n";
    assert!(!only_generator_errors(network));
    let failed = "== FAILURES ===\n___ GET /v1/statements ___\n1. Test Case ID\n";
    assert!(!only_generator_errors(failed));
    assert!(!only_generator_errors(&(failed.to_string() + crash)));
}

/// One schemathesis run as `token` over the operations `filter` selects, each request given
/// `request_timeout` seconds.
fn run(
    st: &Path,
    base: &str,
    token: &str,
    filter: &[&str],
    request_timeout: &str,
) -> (bool, String) {
    let out = Command::new(st)
        .args(["run", &format!("{base}/openapi.json")])
        .args(["--url", base])
        .args(["--checks", "all"])
        // A schema-valid request may name an organisation, project, pool or job that does not
        // exist, and the API rightly answers 400 naming the field (registering with an unknown
        // pool is a 400 by design: pools are made by operators); this check counts that as a
        // failure for every operation whose body holds such a reference.
        .args(["--exclude-checks", "positive_data_acceptance"])
        .args(filter)
        .args(["--max-examples", MAX_EXAMPLES])
        .args(["--workers", "2"])
        .args(["--request-timeout", request_timeout])
        .args(["--header", &format!("Authorization: Bearer {token}")])
        .args(["--seed", "15"])
        .arg("--no-color")
        .env("SCHEMATHESIS_HOOKS", "")
        .output()
        .expect("run schemathesis");
    let report = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (
        out.status.success() || only_generator_errors(&report),
        report,
    )
}

fn fuzz(data: &Path, database: Option<&str>, backend: &str) {
    let st = schemathesis();
    // The fuzzer writes far faster than a person: without the per-token write limit (which
    // listener.rs tests) its writes reach the handlers instead of a 429.
    let server = Server::start(data, database, &["--write-rate", "0"]);
    let admin = server.admin_token();
    // Something to find: an organisation, a project, a member, a node (number 1, the agent
    // token's own, so that generated node ids reach it) and a job.
    let t = tenant(&server);
    server.must(
        &t.user,
        "/v1/jobs",
        serde_json::json!({"project": t.project, "command": ["true"], "gpus_per_task": 1}),
        201,
    );
    let before = answered(&server);
    let base = format!("http://{}", server.addr);
    // The agent protocol answers agent tokens only, everything else people: each part of the
    // API is fuzzed with a token it serves, so that operations are exercised, not only refused.
    const AGENT: &str = "^/v1/agent/";
    // Revoking tokens by id revokes the fuzzer's own sooner or later (ids start at 1), and
    // every request after that is a 401: that operation runs last, on its own.
    const REVOKE: &str = r"^/v1/tokens/\{id\}$";
    let people = run(
        &st,
        &base,
        &admin,
        &["--exclude-path-regex", &format!("{AGENT}|{REVOKE}")],
        "30",
    );
    // The long poll holds its answer for up to `wait_ms` (at most 60 s) by design, which the
    // response-time check would count as slow and a 30 s read timeout would cut off: both
    // limits are set above that for the agent part.
    let agent = run(
        &st,
        &base,
        &t.agent,
        &["--include-path-regex", AGENT, "--max-response-time", "65"],
        "75",
    );
    let revoke = run(&st, &base, &admin, &["--include-path-regex", REVOKE], "30");
    let after = answered(&server);
    let mut by_op: BTreeMap<String, BTreeMap<u16, u64>> = BTreeMap::new();
    for ((op, status), n) in &after {
        let n = n - before.get(&(op.clone(), *status)).copied().unwrap_or(0);
        if n > 0 {
            *by_op
                .entry(op.clone())
                .or_default()
                .entry(*status)
                .or_default() += n;
        }
    }
    let requests: u64 = by_op.values().flat_map(|s| s.values()).sum();
    println!("schemathesis on {backend}: {requests} requests answered");
    for (op, statuses) in &by_op {
        println!("  {op}: {statuses:?}");
    }
    for (who, (ok, report)) in [("admin", &people), ("agent", &agent), ("revoker", &revoke)] {
        println!("--- as {who}\n{report}");
        assert!(
            ok,
            "schemathesis found failures on {backend} as {who}:\n{report}"
        );
    }
    assert!(
        !by_op.keys().any(|op| by_op[op].keys().any(|s| *s >= 500)),
        "5xx answered on {backend}: {by_op:?}"
    );
    // Every documented operation was reached and answered something other than a refusal of
    // the token.
    let (_, doc) = server.get(None, "/openapi.json");
    let mut only_refused = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            let op = format!("{} {path}", method.to_uppercase());
            let exercised = by_op
                .get(&op)
                .is_some_and(|s| s.keys().any(|c| ![401, 403].contains(c)));
            if !exercised {
                only_refused.push(op);
            }
        }
    }
    assert!(
        only_refused.is_empty(),
        "operations never exercised on {backend} (only 401/403 or not reached): {only_refused:?}"
    );
    assert!(requests > 100, "schemathesis made only {requests} requests");
}

#[test]
fn openapi_holds_under_schemathesis_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    fuzz(dir.path(), None, "sqlite");
}

#[test]
fn openapi_holds_under_schemathesis_postgres() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let db = rt.block_on(haneul_store::testing::TestDb::create());
    let dir = tempfile::tempdir().unwrap();
    fuzz(dir.path(), Some(db.url()), "postgres");
}
