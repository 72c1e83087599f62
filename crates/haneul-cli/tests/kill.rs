//! SIGKILL durability: kill the real server right after a burst of accepted submissions, start
//! it again on the same state, and check that every acknowledged job is there and that none
//! runs twice — including the jobs that were already running when the server died.

mod common;

use common::*;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

fn kill_during_burst(data: &std::path::Path, database: Option<&str>) {
    let mut server = Server::start(data, database, &[]);
    let t = tenant(&server);

    let first = fill_node(&server, &t);

    // A burst from several clients; the server dies in the middle of it.
    let state = Arc::new(BurstState::default());
    let handles = burst(vec![server.addr], &t.user, t.project, 6, 200, state.clone());
    while state.acked.load(Ordering::SeqCst) < 150 {
        std::thread::sleep(Duration::from_millis(5));
    }
    server.kill9();
    state.stop.store(true, Ordering::SeqCst);
    let acked: Vec<i64> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    assert!(acked.len() >= 150);

    let server = Server::start(data, database, &[]);
    let mut all = first.clone();
    all.extend(&acked);
    drain(
        &server,
        &server.admin_token(),
        &t,
        &all,
        Duration::from_secs(120),
    );
    common::invariants::check_acked(&server, &server.admin_token(), t.project, &all);
}

#[test]
fn sqlite_survives_sigkill() {
    let dir = common::tempdir();
    kill_during_burst(dir.path(), None);
}

#[test]
fn postgres_survives_sigkill() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let db = rt.block_on(haneul_store::testing::TestDb::create());
    let dir = common::tempdir();
    kill_during_burst(dir.path(), Some(db.url()));
}

/// Retrying clients: real `haneul submit` processes, each job named after its submit, while
/// the server is SIGKILLed mid-burst and started again on the same address. Every submit ends
/// with an id (none lost: the CLI retried with its `Idempotency-Key`), and every name is one job
/// (none made twice: a retry whose first try was committed but not answered gets that job).
fn retrying_clients_across_a_kill(data: &std::path::Path, database: Option<&str>) {
    use std::process::{Command, Stdio};
    use std::sync::atomic::AtomicUsize;
    let mut server = Server::start(data, database, &[]);
    let m = members(&server);
    let token_file = data.join("kim.token");
    std::fs::write(&token_file, &m.user).unwrap();
    let url = format!("http://{}", server.addr);
    let done = Arc::new(AtomicUsize::new(0));
    const THREADS: usize = 4;
    const PER_THREAD: usize = 30;
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let (url, token_file, done) = (url.clone(), token_file.clone(), done.clone());
            let project = m.project.to_string();
            std::thread::spawn(move || {
                let mut out = Vec::new();
                for i in 0..PER_THREAD {
                    let name = format!("retry-{t}-{i}");
                    let o = Command::new(env!("CARGO_BIN_EXE_haneul"))
                        .args(["submit", "--server", &url, "--project", &project])
                        .arg("--token-file")
                        .arg(&token_file)
                        .args(["--name", &name, "--gpus", "1", "--", "true"])
                        .env("HANEUL_CONFIG", "/nonexistent/haneul-config.toml")
                        .env("RUST_LOG", "warn")
                        .stdin(Stdio::null())
                        .output()
                        .unwrap();
                    let id = String::from_utf8_lossy(&o.stdout)
                        .trim()
                        .parse::<i64>()
                        .ok();
                    out.push((
                        name,
                        o.status.success(),
                        id,
                        String::from_utf8_lossy(&o.stderr).into_owned(),
                    ));
                    done.fetch_add(1, Ordering::SeqCst);
                }
                out
            })
        })
        .collect();
    while done.load(Ordering::SeqCst) < THREADS * PER_THREAD / 4 {
        std::thread::sleep(Duration::from_millis(2));
    }
    server.kill9();
    let before = done.load(Ordering::SeqCst);
    // Long enough that every client meets a refused connection and backs off.
    std::thread::sleep(Duration::from_millis(800));
    let server = Server::start_on(data, database, &url["http://".len()..], &[]);
    let results: Vec<_> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    assert!(
        before < THREADS * PER_THREAD,
        "the kill came after the burst"
    );
    for (name, ok, id, err) in &results {
        assert!(
            *ok && id.is_some(),
            "submit {name} failed across the restart: {err}"
        );
    }
    let list = server.get(Some(&m.admin), "/v1/jobs?limit=1000").1;
    let mut by_name: std::collections::BTreeMap<String, Vec<i64>> = Default::default();
    for j in list["jobs"].as_array().unwrap() {
        by_name
            .entry(j["name"].as_str().unwrap().to_string())
            .or_default()
            .push(j["id"].as_i64().unwrap());
    }
    for (name, _, id, _) in &results {
        assert_eq!(
            by_name.get(name),
            Some(&vec![id.unwrap()]),
            "{name}: one job, the one the client printed"
        );
    }
    assert_eq!(
        by_name.len(),
        results.len(),
        "no job the clients did not ask for"
    );
}

#[test]
fn sqlite_retrying_clients_lose_and_duplicate_nothing() {
    let dir = tempfile::tempdir().unwrap();
    retrying_clients_across_a_kill(dir.path(), None);
}

#[test]
fn postgres_retrying_clients_lose_and_duplicate_nothing() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let db = rt.block_on(haneul_store::testing::TestDb::create());
    let dir = tempfile::tempdir().unwrap();
    retrying_clients_across_a_kill(dir.path(), Some(db.url()));
}
