//! High availability on PostgreSQL: two real servers share one database; the leader is killed
//! with SIGKILL under load, the standby takes over within a few seconds, and no attempt is ever
//! started twice — neither the ones the old leader started nor the ones submitted meanwhile.

mod common;

use common::*;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

fn leads(s: &Server) -> bool {
    let (code, v) = s.get(None, "/healthz");
    code == 200 && v["leader"] == true
}

#[test]
fn standby_takes_over_when_the_leader_dies() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let db = rt.block_on(haneul_store::testing::TestDb::create());
    let (dir_a, dir_b) = (common::tempdir(), common::tempdir());
    let ttl = ["--lease-ttl", "1"];
    let a = Server::start(dir_a.path(), Some(db.url()), &ttl);
    let admin = a.admin_token();
    let t = tenant(&a);
    let b = Server::start(dir_b.path(), Some(db.url()), &ttl);
    assert!(
        !dir_b.path().join("admin.token").exists(),
        "only the first server bootstraps the administrator"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while !(leads(&a) ^ leads(&b)) {
        assert!(Instant::now() < deadline, "exactly one server must lead");
        std::thread::sleep(Duration::from_millis(50));
    }
    let (mut leader, standby) = if leads(&a) { (a, b) } else { (b, a) };
    let first = fill_node(&leader, &t);

    let state = Arc::new(BurstState::default());
    let handles = burst(
        vec![leader.addr, standby.addr],
        &t.user,
        t.project,
        6,
        400,
        state.clone(),
    );
    while state.acked.load(Ordering::SeqCst) < 100 {
        std::thread::sleep(Duration::from_millis(5));
    }
    leader.kill9();
    let killed = Instant::now();
    while !leads(&standby) {
        assert!(
            killed.elapsed() < Duration::from_secs(5),
            "the standby did not take over within 5 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let takeover = killed.elapsed();
    // Keep submitting to the new leader for a moment, then stop.
    let more = state.acked.load(Ordering::SeqCst) + 50;
    let until = Instant::now() + Duration::from_secs(10);
    while state.acked.load(Ordering::SeqCst) < more && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(5));
    }
    state.stop.store(true, Ordering::SeqCst);
    let acked: Vec<i64> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    eprintln!(
        "takeover after {} ms; {} jobs acknowledged",
        takeover.as_millis(),
        acked.len()
    );
    let mut all = first;
    all.extend(&acked);
    drain(&standby, &admin, &t, &all, Duration::from_secs(120));
    // Nothing acknowledged lost, no attempt overlapping another, accounting equal to the
    // attempts' GPU-seconds (docs/reliability.md).
    let sum = common::invariants::check_acked(&standby, &admin, t.project, &all);
    assert_eq!(sum.requeued, 0, "no job should have been requeued: {sum:?}");
}
