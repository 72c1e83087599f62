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
