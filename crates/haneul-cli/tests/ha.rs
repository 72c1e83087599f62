//! High availability on PostgreSQL: two real servers share one database; the leader is killed
//! with SIGKILL under load, the standby takes over (within 30 s, a bound that holds on a loaded
//! machine; takeover times are printed, and a one-second lease usually gives about two), and
//! no attempt is ever started twice — neither the ones the old leader started nor the ones submitted meanwhile.

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
            killed.elapsed() < Duration::from_secs(30),
            "the standby did not take over within 30 s"
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

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The last JSON line the swarm printed (it prints its counters and server every second).
fn last_stats(lines: &std::sync::Mutex<Vec<serde_json::Value>>) -> serde_json::Value {
    lines.lock().unwrap().last().cloned().unwrap_or_default()
}

/// Clients given both servers: 16 simulated agents (a swarm, one process) and a user running
/// `haneul submit` in a loop, and two real agents. A standby refuses a submit with 503
/// `not_leader`, naming the leader. Before the kill the agents have followed the standby's
/// `Haneul-Leader` to the leader (the standby is first in their list); after it every node
/// (18) heartbeats to the new leader within 5 s, the submits carry on (the leader first in their
/// list, so each fails over), and no acknowledged job is lost: every one runs to success on
/// the swarm, each once.
#[test]
fn agents_and_clients_follow_the_leader_over_a_failover() {
    use std::io::BufRead;
    use std::process::{Command, Stdio};
    let rt = tokio::runtime::Runtime::new().unwrap();
    let db = rt.block_on(haneul_store::testing::TestDb::create());
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (port_a, port_b) = (free_port(), free_port());
    let url = |p: u16| format!("http://127.0.0.1:{p}");
    let a = Server::start_on(
        dir_a.path(),
        Some(db.url()),
        &format!("127.0.0.1:{port_a}"),
        &["--lease-ttl", "1", "--advertise-url", &url(port_a)],
    );
    let m = members(&a);
    let b = Server::start_on(
        dir_b.path(),
        Some(db.url()),
        &format!("127.0.0.1:{port_b}"),
        &["--lease-ttl", "1", "--advertise-url", &url(port_b)],
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while !(leads(&a) ^ leads(&b)) {
        assert!(Instant::now() < deadline, "exactly one server must lead");
        std::thread::sleep(Duration::from_millis(50));
    }
    let (mut leader, standby) = if leads(&a) { (a, b) } else { (b, a) };
    let leader_url = format!("http://{}", leader.addr);
    let standby_url = format!("http://{}", standby.addr);
    // Standby first: the clients only reach the leader by following the standby's word.
    let servers = format!("{standby_url},{leader_url}");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (code, v) = standby.get(None, "/healthz");
        assert_eq!(code, 200, "{v}");
        // The header is set once the standby has read the leader's lease.
        let h = haneul_client::blocking::Client::new(&haneul_client::Options {
            servers: standby_url.clone(),
            ..Default::default()
        })
        .unwrap();
        h.send(haneul_client::Method::GET, "/healthz", None, None)
            .unwrap();
        if h.server() == leader_url {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the standby never named the leader"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // A standby that knows the leader takes no write: 503 `not_leader`, naming the leader.
    let (code, v) = standby.post(
        &m.user,
        "/v1/jobs",
        serde_json::json!({"project": m.project, "gpus_per_task": 1, "command": ["true"]}),
    );
    assert_eq!(code, 503, "{v}");
    assert_eq!(v["error"]["code"], "not_leader", "{v}");
    assert_eq!(v["error"]["leader"], leader_url.as_str(), "{v}");

    let work = tempfile::tempdir().unwrap();
    let agent_token = work.path().join("agent.token");
    std::fs::write(&agent_token, &m.agent).unwrap();
    // Two real agents beside the swarm's 16 simulated nodes, the standby first in their list
    // too: the protocol loop of haneul-agent over its HTTP transport follows the leader.
    let real: Vec<Reaped> = (0..2)
        .map(|i| {
            let dir = work.path().join(format!("real-{i}"));
            std::fs::create_dir_all(&dir).unwrap();
            Reaped(
                Command::new(env!("CARGO_BIN_EXE_haneul"))
                    .args(["agent", "--server", &servers, "--token-file"])
                    .arg(&agent_token)
                    .args(["--name", &format!("real-{i}"), "--simulate-gpus", "1xH200"])
                    .args(["--pool", "h200", "--work-dir"])
                    .arg(&dir)
                    .env("RUST_LOG", "warn")
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .unwrap(),
            )
        })
        .collect();
    let user_token = work.path().join("user.token");
    std::fs::write(&user_token, &m.user).unwrap();
    let events = work.path().join("events.jsonl");
    let swarm = Command::new(env!("CARGO_BIN_EXE_haneul"))
        .args(["swarm", "--server", &servers, "--token-file"])
        .arg(&agent_token)
        .args(["--nodes", "16", "--gpus", "8xH200", "--name-prefix", "ha"])
        .args(["--heartbeat-ms", "500", "--poll-wait-ms", "2000"])
        .args(["--stats-every", "1", "--events"])
        .arg(&events)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut swarm = Reaped(swarm);
    let stats = Arc::new(std::sync::Mutex::new(Vec::<serde_json::Value>::new()));
    {
        let stats = stats.clone();
        let out = swarm.0.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str(&line) {
                    stats.lock().unwrap().push(v);
                }
            }
        });
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let nodes_at = |s: &Server| {
        let (code, nodes) = s.get(Some(&m.admin), "/v1/nodes");
        if code == 200 {
            nodes.as_array().unwrap().len()
        } else {
            0
        }
    };
    while last_stats(&stats)["registered"] != 16
        || last_stats(&stats)["server"] != leader_url
        || nodes_at(&leader) != 18
    {
        assert!(
            Instant::now() < deadline,
            "the swarm never settled on the leader: {}",
            last_stats(&stats)
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // The user submits with the real CLI until told to stop, the leader first: after the kill
    // each submit meets a refused connection, moves to the next server and retries there
    // with the same idempotency key.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let submitted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let submitter = {
        let servers = format!("{leader_url},{standby_url}");
        let (stop, user_token) = (stop.clone(), user_token.clone());
        let submitted = submitted.clone();
        let config = work.path().join("none.toml");
        let project = m.project.to_string();
        std::thread::spawn(move || {
            let (mut acked, mut failed) = (Vec::new(), 0);
            while !stop.load(Ordering::SeqCst) {
                let out = Command::new(env!("CARGO_BIN_EXE_haneul"))
                    .args(["submit", "--server", &servers, "--token-file"])
                    .arg(&user_token)
                    .args(["--project", &project, "--gpus", "1", "--", "sleep", "0.2"])
                    .env("HANEUL_CONFIG", &config)
                    .output()
                    .unwrap();
                match String::from_utf8_lossy(&out.stdout).trim().parse::<i64>() {
                    Ok(id) if out.status.success() => {
                        acked.push((Instant::now(), id));
                        submitted.fetch_add(1, Ordering::SeqCst);
                    }
                    _ => failed += 1,
                }
            }
            (acked, failed)
        })
    };
    // Some submits through the leader before the kill.
    let until = Instant::now() + Duration::from_secs(30);
    while submitted.load(Ordering::SeqCst) < 3 {
        assert!(
            Instant::now() < until,
            "no submit got through before the kill"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    leader.kill9();
    let killed = Instant::now();
    let killed_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    // Every node heartbeats again (through the survivor) within 30 s, and the swarm's client
    // is on the survivor, which leads.
    loop {
        let (code, nodes) = standby.get(Some(&m.admin), "/v1/nodes");
        let fresh = if code == 200 {
            nodes
                .as_array()
                .unwrap()
                .iter()
                .filter(|n| n["last_heartbeat"].as_i64().unwrap_or(0) > killed_ms + 200)
                .count()
        } else {
            0
        };
        if fresh == 18 && last_stats(&stats)["server"] == standby_url && leads(&standby) {
            break;
        }
        assert!(
            killed.elapsed() < Duration::from_secs(5),
            "after 5 s {fresh} of 18 nodes were back; swarm: {}",
            last_stats(&stats)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let back = killed.elapsed();
    // Some submits through the survivor after the kill.
    let before = submitted.load(Ordering::SeqCst);
    let until = Instant::now() + Duration::from_secs(30);
    while submitted.load(Ordering::SeqCst) < before + 3 {
        assert!(
            Instant::now() < until,
            "no submit got through after the kill"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    stop.store(true, Ordering::SeqCst);
    let (acked, failed) = submitter.join().unwrap();
    let after_kill = acked.iter().filter(|(at, _)| *at > killed).count();
    eprintln!(
        "agents back after {} ms; {} submits acknowledged ({after_kill} after the kill), {failed} failed",
        back.as_millis(),
        acked.len()
    );
    assert!(after_kill > 0, "no submit got through after the kill");
    let ids: Vec<i64> = acked.iter().map(|(_, id)| *id).collect();
    let sum =
        common::invariants::check(&standby, &m.admin, m.project, &ids, Duration::from_secs(60));
    assert!(sum.jobs >= ids.len());
    drop(real);
}

/// A child killed when the test ends, passed or failed.
struct Reaped(std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
