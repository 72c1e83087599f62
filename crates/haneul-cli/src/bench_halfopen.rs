//! `haneul bench half-open`: the slow-header attack of issue 15 against a real server. A server
//! child, a swarm of simulated nodes heartbeating in this process, and an attacker that keeps
//! `--connections` connections open, each having sent half a request header (reopening any the
//! server closes). Meanwhile a probe on its own thread times `GET /healthz` on a fresh
//! connection every 100 ms.
//! Reports the probe's latency, how many connections the server closed, and whether the nodes'
//! heartbeats kept their rate.

use crate::bench_centre::start_server;
use crate::swarm::{self, SwarmConfig, SwarmStats};
use anyhow::{Context, bail};
use clap::Args;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;

#[derive(Args)]
#[command(
    after_help = "Example:\n  haneul bench half-open --connections 1000 --nodes 1250 --seconds 60"
)]
pub struct HalfOpenArgs {
    /// Half-open connections held at all times.
    #[arg(long, default_value_t = 1000)]
    connections: usize,
    /// Simulated nodes heartbeating meanwhile.
    #[arg(long, default_value_t = 1250)]
    nodes: usize,
    /// How long the attack lasts.
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// The server's --header-timeout (seconds).
    #[arg(long, default_value_t = 10)]
    header_timeout: u64,
    /// Print one JSON object instead of lines for people.
    #[arg(long)]
    json: bool,
}

pub fn run(args: HalfOpenArgs) -> anyhow::Result<()> {
    if args.connections == 0 || args.seconds == 0 || args.header_timeout == 0 {
        bail!("--connections, --seconds and --header-timeout must be at least 1");
    }
    haneul_server::serve::raise_file_limit();
    let dir = std::env::temp_dir().join(format!("haneul-halfopen-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).context("cannot create the scratch directory")?;
    let exe = std::env::current_exe().context("cannot find this binary")?;
    let mut cmd = Command::new(exe);
    cmd.args(["server", "--listen", "127.0.0.1:0", "--node-timeout", "120"])
        .arg("--header-timeout")
        .arg(args.header_timeout.to_string())
        .arg("--data-dir")
        .arg(&dir)
        .env("RUST_LOG", "error")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let (server, addr) = start_server(cmd)?;
    let (admin, rt) = crate::bench_centre::admin_and_runtime(&dir)?;
    let result = rt.block_on(measure(&args, addr, admin));
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
    crate::bench_centre::print_figures(&result?, args.json);
    Ok(())
}

async fn measure(args: &HalfOpenArgs, addr: SocketAddr, admin: String) -> anyhow::Result<Value> {
    let api = swarm::Api::connect(&format!("http://{addr}"), admin, None)?;
    let (_keep, never) = watch::channel(false);
    let agents: Value = api
        .retrying(
            &never,
            "POST",
            "/v1/users",
            Some(&json!({"name": "swarm", "role": "agent"})),
        )
        .await
        .map_err(|e| anyhow::anyhow!("POST /v1/users: {e}"))?;
    let token: Value = api
        .retrying(
            &never,
            "POST",
            "/v1/tokens",
            Some(&json!({"user": agents["id"]})),
        )
        .await
        .map_err(|e| anyhow::anyhow!("POST /v1/tokens: {e}"))?;
    let token = token["secret"].as_str().unwrap_or_default().to_string();

    let stats = Arc::new(SwarmStats::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    let swarm = tokio::spawn(swarm::run_swarm(
        SwarmConfig {
            server: format!("http://{addr}"),
            ca_file: None,
            token,
            nodes: args.nodes,
            gpus: 8,
            gpu_model: "H200".into(),
            name_prefix: "sim".into(),
            pool: "default".into(),
            nodes_per_block: 32,
            connections: 16,
            heartbeat: None,
            poll_wait: Duration::from_secs(30),
            events: None,
        },
        stats.clone(),
        stop_rx.clone(),
    ));
    let t0 = Instant::now();
    while stats.registered.load(Ordering::Relaxed) < args.nodes as u64 {
        if swarm.is_finished() {
            bail!("the swarm stopped while registering");
        }
        if t0.elapsed() > Duration::from_secs(300) {
            bail!("the swarm did not register in 5 minutes");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Let every node reach its steady heartbeat before the attack.
    tokio::time::sleep(Duration::from_secs(6)).await;

    // The attack: each holder keeps one half-open connection, reopening it when closed.
    let closed = Arc::new(AtomicU64::new(0));
    let open_now = Arc::new(AtomicU64::new(0));
    let connect_errors = Arc::new(AtomicU64::new(0));
    let mut holders = Vec::new();
    for _ in 0..args.connections {
        let (closed, open_now, errors, mut stop) = (
            closed.clone(),
            open_now.clone(),
            connect_errors.clone(),
            stop_rx.clone(),
        );
        holders.push(tokio::spawn(async move {
            while !*stop.borrow() {
                let Ok(mut s) = TcpStream::connect(addr).await else {
                    errors.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                };
                if s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
                    .await
                    .is_err()
                {
                    continue;
                }
                open_now.fetch_add(1, Ordering::Relaxed);
                let mut buf = [0u8; 512];
                let server_closed = tokio::select! {
                    r = s.read(&mut buf) => matches!(r, Ok(0) | Err(_)),
                    _ = stop.changed() => false,
                };
                open_now.fetch_sub(1, Ordering::Relaxed);
                if server_closed {
                    closed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    let ramp = Instant::now();
    while open_now.load(Ordering::Relaxed) < args.connections as u64
        && ramp.elapsed() < Duration::from_secs(30)
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let held_at_start = open_now.load(Ordering::Relaxed);

    // The probe, and the heartbeat count over the same window. The probe runs on a thread of
    // its own with blocking sockets: on the runtime it would share two workers with 1,000
    // holders and the swarm, and time their scheduling rather than the server's answer.
    let beats0 = stats.heartbeats.load(Ordering::Relaxed);
    let beat_errors0 = stats.heartbeat_errors.load(Ordering::Relaxed);
    let start = Instant::now();
    let window_len = Duration::from_secs(args.seconds);
    let prober = std::thread::Builder::new()
        .name("healthz-probe".into())
        .spawn(move || {
            let mut lat_ms: Vec<f64> = Vec::new();
            let mut failures = 0u64;
            while start.elapsed() < window_len {
                let t = Instant::now();
                match probe(addr) {
                    Ok(()) => lat_ms.push(t.elapsed().as_secs_f64() * 1000.0),
                    Err(_) => failures += 1,
                }
                std::thread::sleep(Duration::from_millis(100).saturating_sub(t.elapsed()));
            }
            (lat_ms, failures)
        })
        .context("cannot start the probe thread")?;
    let mut held_min = u64::MAX;
    while !prober.is_finished() {
        held_min = held_min.min(open_now.load(Ordering::Relaxed));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (mut lat_ms, probe_failures) = prober
        .join()
        .map_err(|_| anyhow::anyhow!("the probe thread panicked"))?;
    let window = start.elapsed().as_secs_f64();
    let beats = stats.heartbeats.load(Ordering::Relaxed) - beats0;
    let beat_errors = stats.heartbeat_errors.load(Ordering::Relaxed) - beat_errors0;
    let _ = stop_tx.send(true);
    for h in holders {
        let _ = h.await;
    }
    let _ = tokio::time::timeout(Duration::from_secs(10), swarm).await;

    lat_ms.sort_by(|a, b| a.total_cmp(b));
    let pct = |q: f64| -> f64 {
        if lat_ms.is_empty() {
            return f64::NAN;
        }
        let i = ((lat_ms.len() as f64 - 1.0) * q).round() as usize;
        (lat_ms[i] * 10.0).round() / 10.0
    };
    Ok(json!({
        "half_open_target": args.connections,
        "half_open_held_at_start": held_at_start,
        "half_open_held_min": held_min,
        "closed_by_server": closed.load(Ordering::Relaxed),
        "attacker_connect_errors": connect_errors.load(Ordering::Relaxed),
        "header_timeout_s": args.header_timeout,
        "seconds": (window * 10.0).round() / 10.0,
        "healthz_probes": lat_ms.len() as u64 + probe_failures,
        "healthz_failures": probe_failures,
        "healthz_p50_ms": pct(0.5),
        "healthz_p99_ms": pct(0.99),
        "healthz_max_ms": pct(1.0),
        "nodes": args.nodes,
        "heartbeats_per_s": ((beats as f64 / window) * 10.0).round() / 10.0,
        "heartbeats_expected_per_s": args.nodes as f64 / 5.0,
        "heartbeat_errors": beat_errors,
    }))
}

/// One `GET /healthz` on a fresh connection, read to the end, within 5 seconds.
fn probe(addr: SocketAddr) -> std::io::Result<()> {
    use std::io::{Read, Write};
    let limit = Duration::from_secs(5);
    let mut s = std::net::TcpStream::connect_timeout(&addr, limit)?;
    s.set_read_timeout(Some(limit))?;
    s.set_write_timeout(Some(limit))?;
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")?;
    let mut out = Vec::new();
    s.read_to_end(&mut out)?;
    if out.starts_with(b"HTTP/1.1 200") {
        Ok(())
    } else {
        Err(std::io::Error::other("not 200"))
    }
}
