//! The OpenAPI document against the real server, by a fuzzer nobody here wrote: schemathesis
//! (from PyPI, installed on first run into a virtual environment under the cargo target
//! directory) runs every operation with its checks and a bounded number of examples, against
//! a live `haneul server` on SQLite and on PostgreSQL. Any 5xx or answer that breaks the
//! document fails the test. The number of requests it made is printed (docs/reliability.md).

mod common;

use common::*;
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

/// API requests the server has answered, from its own metrics.
fn answered(server: &Server) -> u64 {
    let out = Command::new("curl")
        .args(["-s", &format!("http://{}/metrics", server.addr)])
        .output();
    // (curl keeps this free of a second HTTP client; the count is only reported.)
    let text = match out {
        Ok(o) => String::from_utf8_lossy(&o.stdout).into_owned(),
        Err(_) => return 0,
    };
    text.lines()
        .filter(|l| l.starts_with("haneul_api_request_seconds_count"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
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

fn fuzz(data: &Path, database: Option<&str>, backend: &str) {
    let st = schemathesis();
    let server = Server::start(data, database, &[]);
    let admin = server.admin_token();
    // Something to find: an organisation, a project, a member, a job.
    let m = members(&server);
    server.must(
        &m.user,
        "/v1/jobs",
        serde_json::json!({"project": m.project, "command": ["true"], "gpus_per_task": 1}),
        201,
    );
    let before = answered(&server);
    let base = format!("http://{}", server.addr);
    let out = Command::new(&st)
        .args(["run", &format!("{base}/openapi.json")])
        .args(["--url", &base])
        .args(["--checks", "all"])
        // A schema-valid request may name an organisation or project that does not exist, and
        // the API rightly answers 400 naming the field; this check counts that as a failure.
        .args(["--exclude-checks", "positive_data_acceptance"])
        .args(["--max-examples", MAX_EXAMPLES])
        .args(["--workers", "2"])
        .args(["--request-timeout", "30"])
        .args(["--header", &format!("Authorization: Bearer {admin}")])
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
    let requests = answered(&server).saturating_sub(before);
    println!("schemathesis on {backend}: {requests} requests answered\n{report}");
    assert!(
        out.status.success() || only_generator_errors(&report),
        "schemathesis found failures on {backend}:\n{report}"
    );
    assert!(
        requests > 100,
        "schemathesis made only {requests} requests:\n{report}"
    );
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
