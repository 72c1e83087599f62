//! Load benchmark of the control plane: sustained job submissions per second and their latency
//! over real HTTP on loopback, while 1,250 simulated nodes (10,000 GPUs) heartbeat every 5 s
//! and the controller schedules what arrives.
//!
//! cargo run --release -p haneul-server --example load -- [sqlite|postgres URL] [seconds] [clients] [queued]
//!
//! With `queued` > 0, that many jobs are written to the store before the timed phase (straight
//! through a second store handle), so the scheduling passes run against a deep queue.
//!
//! Prints one JSON line of figures (see docs/benchmarks.md).

use haneul_server::clock::Clock;
use haneul_server::{Config, Database};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

const NODES: usize = 1_250;
const HEARTBEAT: Duration = Duration::from_secs(5);

/// The one client (haneul-client) with one keep-alive pool for the whole benchmark: it measures
/// the server, not connection setup. Each caller sends its own token.
struct Conn {
    client: haneul_client::Client,
}

impl Conn {
    fn new(client: &haneul_client::Client) -> Self {
        Conn {
            client: client.clone(),
        }
    }

    async fn call(&mut self, token: &str, method: &str, path: &str, body: &Value) -> (u16, Value) {
        let auth = format!("Bearer {token}");
        let body = (!body.is_null()).then(|| body.to_string().into_bytes());
        let method = haneul_client::Method::from_bytes(method.as_bytes()).expect("a method");
        match self
            .client
            .send(method, path, body, &[("authorization", &auth)], None)
            .await
        {
            Ok((status, b)) => (status, serde_json::from_slice(&b).unwrap_or(Value::Null)),
            Err(_) => (0, Value::Null),
        }
    }
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let backend = args.first().cloned().unwrap_or_else(|| "sqlite".into());
    let seconds: u64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(20);
    let clients: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(32);
    let prefill: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(0);

    let dir = std::env::temp_dir().join(format!("haneul-load-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let db_path = dir.join("haneul.db");
    let mut cfg = Config::new(dir.clone());
    cfg.listen = "127.0.0.1:0".parse().unwrap();
    cfg.node_timeout = Duration::from_secs(60);
    // Every client submits with the one administrator token: the per-token write limit (50/s by
    // default) would measure itself, not the control plane.
    cfg.limits.writes_per_second = 0;
    if backend != "sqlite" {
        cfg.database = Database::Postgres(backend.clone());
    }
    let server = haneul_server::start(cfg).await.expect("server starts");
    let addr = server.addr;
    let admin = std::fs::read_to_string(dir.join("admin.token"))
        .unwrap()
        .trim()
        .to_string();
    let client = haneul_client::Client::new(&haneul_client::Options {
        servers: format!("http://{addr}"),
        ..Default::default()
    })
    .expect("a client");

    let mut c = Conn::new(&client);
    let org = c
        .call(
            &admin,
            "POST",
            "/v1/orgs",
            &json!({"name": "bench", "country": "KR"}),
        )
        .await
        .1["id"]
        .clone();
    let project = c
        .call(
            &admin,
            "POST",
            "/v1/projects",
            &json!({"org": org, "name": "load"}),
        )
        .await
        .1["id"]
        .as_i64()
        .unwrap();
    let agent_user = c
        .call(
            &admin,
            "POST",
            "/v1/users",
            &json!({"name": "agents", "role": "agent"}),
        )
        .await
        .1["id"]
        .clone();
    let agent = c
        .call(&admin, "POST", "/v1/tokens", &json!({"user": agent_user}))
        .await
        .1["secret"]
        .as_str()
        .unwrap()
        .to_string();

    // 1,250 nodes of 8 GPUs register, from 16 connections.
    let t0 = Instant::now();
    let mut regs = Vec::new();
    for w in 0..16 {
        let agent = agent.clone();
        let client = client.clone();
        regs.push(tokio::spawn(async move {
            let mut c = Conn::new(&client);
            let mut ids = Vec::new();
            for n in (w..NODES).step_by(16) {
                let body = json!({"name": format!("gpu-{n:04}"), "block": format!("b{}", n / 32),
                                  "gpu_model": "H200", "gpus": 8, "cpu_milli": 112000,
                                  "memory_mib": 2000000});
                let (s, v) = c.call(&agent, "POST", "/v1/agent/register", &body).await;
                assert_eq!(s, 200, "{v}");
                ids.push(v["id"].as_i64().unwrap());
            }
            ids
        }));
    }
    let mut nodes = Vec::new();
    for r in regs {
        nodes.extend(r.await.unwrap());
    }
    let register_s = t0.elapsed().as_secs_f64();

    // A deep queue, written directly (as a backlog would be after an outage).
    if prefill > 0 {
        let store: Box<dyn haneul_store::Store> = if backend == "sqlite" {
            Box::new(haneul_store::SqliteStore::open(&db_path).await.unwrap())
        } else {
            Box::new(haneul_store::PostgresStore::open(&backend).await.unwrap())
        };
        let user = store.list_users().await.unwrap()[0].clone();
        let mut spec = haneul_model::JobSpec::new(
            haneul_model::ProjectId(project as u32),
            1,
            haneul_model::GpuRequest::Whole(8),
        );
        spec.name = "backlog".into();
        for chunk in (0..prefill).collect::<Vec<_>>().chunks(1000) {
            let batch = chunk
                .iter()
                .map(|_| {
                    (
                        haneul_store::Actor::user(&user),
                        haneul_store::NewJob {
                            user_id: user.id,
                            spec: spec.clone(),
                            command: vec!["true".into()],
                            container_image: None,
                            batch: None,
                            idempotency: None,
                            array: None,
                            interactive: false,
                        },
                    )
                })
                .collect();
            store
                .submit_jobs(batch, haneul_server::clock::SystemClock.now_ms())
                .await
                .unwrap();
        }
        // Let the controller take the backlog in before the clock starts.
        tokio::time::sleep(Duration::from_secs(5)).await;
    }

    // Heartbeats: each node every 5 s, spread evenly, from 8 connections.
    let stop = Arc::new(AtomicBool::new(false));
    let beats = Arc::new(AtomicU64::new(0));
    let mut hb = Vec::new();
    for w in 0..8 {
        let (agent, stop, beats) = (agent.clone(), stop.clone(), beats.clone());
        let mine: Vec<i64> = nodes.iter().copied().skip(w).step_by(8).collect();
        let client = client.clone();
        hb.push(tokio::spawn(async move {
            let mut c = Conn::new(&client);
            let gap = HEARTBEAT / mine.len().max(1) as u32;
            let mut tick = tokio::time::interval(gap);
            'outer: loop {
                for n in &mine {
                    tick.tick().await;
                    if stop.load(Ordering::Relaxed) {
                        break 'outer;
                    }
                    let (s, _) = c
                        .call(
                            &agent,
                            "POST",
                            &format!("/v1/agent/nodes/{n}/heartbeat"),
                            &Value::Null,
                        )
                        .await;
                    if s == 200 {
                        beats.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }

    // Submissions: `clients` connections, each submitting back to back.
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut subs = Vec::new();
    for _ in 0..clients {
        let admin = admin.clone();
        let client = client.clone();
        subs.push(tokio::spawn(async move {
            let mut c = Conn::new(&client);
            let mut lat = Vec::new();
            let mut errors = 0u64;
            let body = json!({"project": project, "command": ["python", "train.py"],
                              "gpus_per_task": 1});
            while Instant::now() < deadline {
                let t = Instant::now();
                let (s, _) = c.call(&admin, "POST", "/v1/jobs", &body).await;
                if s == 201 {
                    lat.push(t.elapsed().as_micros() as u64);
                } else {
                    errors += 1;
                }
            }
            (lat, errors)
        }));
    }
    let start = Instant::now();
    let mut lat = Vec::new();
    let mut errors = 0;
    for s in subs {
        let (l, e) = s.await.unwrap();
        lat.extend(l);
        errors += e;
    }
    let elapsed = start.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for h in hb {
        let _ = h.await;
    }
    lat.sort_unstable();

    // Scheduling pass durations, from the server's own histogram.
    let (_, _) = c.call(&admin, "GET", "/healthz", &Value::Null).await;
    let metrics = {
        let (_, body) = client
            .send(haneul_client::Method::GET, "/metrics", None, &[], None)
            .await
            .expect("metrics");
        String::from_utf8_lossy(&body).into_owned()
    };
    let metric = |name: &str| -> f64 {
        metrics
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().last())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    };
    let passes = metric("haneul_schedule_pass_seconds_count");
    let pass_mean_ms = 1000.0 * metric("haneul_schedule_pass_seconds_sum") / passes.max(1.0);
    let started = metric("haneul_attempts_started_total");
    let queued: f64 = metrics
        .lines()
        .filter(|l| l.starts_with("haneul_queue_length{"))
        .filter_map(|l| l.split_whitespace().last()?.parse::<f64>().ok())
        .sum();
    // The smallest bucket bound holding 99 % of the passes.
    let pass_p99_le_ms = {
        let mut buckets: Vec<(f64, f64)> = metrics
            .lines()
            .filter(|l| l.starts_with("haneul_schedule_pass_seconds_bucket"))
            .filter_map(|l| {
                let le = l.split("le=\"").nth(1)?.split('"').next()?;
                let le = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().ok()?
                };
                Some((le, l.split_whitespace().last()?.parse().ok()?))
            })
            .collect();
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        buckets
            .iter()
            .find(|(_, n)| *n >= 0.99 * passes)
            .map_or(0.0, |(le, _)| le * 1000.0)
    };

    let out = json!({
        "backend": if backend == "sqlite" { "sqlite" } else { "postgres" },
        "seconds": elapsed,
        "clients": clients,
        "nodes": nodes.len(),
        "register_s": register_s,
        "submitted": lat.len(),
        "errors": errors,
        "submissions_per_s": lat.len() as f64 / elapsed,
        "p50_ms": percentile(&lat, 0.50),
        "p99_ms": percentile(&lat, 0.99),
        "max_ms": percentile(&lat, 1.0),
        "heartbeats_per_s": beats.load(Ordering::Relaxed) as f64 / elapsed,
        "attempts_started": started,
        "schedule_passes": passes,
        "schedule_pass_mean_ms": pass_mean_ms,
        "schedule_pass_p99_le_ms": pass_p99_le_ms,
        "prefilled_queue": prefill,
        "queued_at_end": queued,
    });
    println!("{out}");
    server.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}
