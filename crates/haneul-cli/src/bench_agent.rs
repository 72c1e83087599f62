//! `haneul bench agent`: time from the server's decision to start an attempt (its `created_at`)
//! to the task's process start as the agent reports it (`started_at`), over many short jobs on
//! one machine. It runs `haneul up` (server and agent, simulated GPUs) in a temporary directory,
//! submits the jobs as the demo user, waits for all to end and prints percentiles.

use crate::agent::Client;
use anyhow::{Context, bail};
use clap::Args;
use haneul_api::JobDetail;
use serde::Serialize;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Args)]
#[command(after_help = "Examples:\n  haneul bench agent\n  haneul bench agent --jobs 500 --json")]
pub struct AgentBenchArgs {
    /// Number of jobs (each runs `true` on one simulated GPU).
    #[arg(long, default_value_t = 300)]
    jobs: usize,
    /// Simulated GPUs of the local agent, COUNTxMODEL: how many jobs run at once.
    #[arg(long, default_value = "8xH200")]
    gpus: String,
    /// Serve over TLS (`haneul up --tls`: a local CA; the agent and this bench trust it).
    #[arg(long)]
    tls: bool,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct Report {
    /// `http` or `https`.
    transport: &'static str,
    jobs: usize,
    gpus: String,
    p50_ms: i64,
    p90_ms: i64,
    p99_ms: i64,
    max_ms: i64,
    mean_ms: f64,
    wall_s: f64,
}

struct Up(Child);

impl Drop for Up {
    fn drop(&mut self) {
        // SIGTERM: `haneul up` stops its agent and server.
        // SAFETY: kill(2) of the child this process started.
        unsafe { libc::kill(self.0.id() as libc::pid_t, libc::SIGTERM) };
        let until = Instant::now() + Duration::from_secs(15);
        while Instant::now() < until {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn call(client: &Client, method: &str, path: &str, body: Option<&str>) -> anyhow::Result<String> {
    client
        .raw(method, path, body)
        .map(|(_, t)| t)
        .map_err(|e| anyhow::anyhow!("{method} {path}: {e}"))
}

fn percentile(sorted: &[i64], p: f64) -> i64 {
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

pub fn run(args: AgentBenchArgs) -> anyhow::Result<()> {
    if args.jobs == 0 {
        bail!("--jobs must be at least 1");
    }
    let dir = std::env::temp_dir().join(format!("haneul-bench-agent-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let port = free_port()?;
    let exe = std::env::current_exe().context("cannot find the haneul binary")?;
    let log = std::fs::File::create(dir.join("up.log"))?;
    let mut cmd = Command::new(&exe);
    cmd.args(["up", "--listen", &format!("127.0.0.1:{port}")]);
    if args.tls {
        cmd.arg("--tls");
    }
    let up = Up(cmd
        .arg("--data-dir")
        .arg(&dir)
        .args(["--simulate-gpus", &args.gpus])
        .env("HANEUL_CONFIG", dir.join("config.toml"))
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context("cannot start haneul up")?);
    let result = bench(&args, &dir, port);
    drop(up);
    let _ = std::fs::remove_dir_all(&dir);
    let report = result?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!(
            "decision to process start over {} jobs on {} (loopback, {}): p50 {} ms, p90 {} ms, \
             p99 {} ms, max {} ms, mean {:.1} ms; {:.1} s in all",
            report.jobs,
            report.gpus,
            report.transport,
            report.p50_ms,
            report.p90_ms,
            report.p99_ms,
            report.max_ms,
            report.mean_ms,
            report.wall_s
        );
    }
    Ok(())
}

fn bench(args: &AgentBenchArgs, dir: &Path, port: u16) -> anyhow::Result<Report> {
    let (url, ca_file) = if args.tls {
        (
            format!("https://127.0.0.1:{port}"),
            Some(dir.join("tls").join("ca.pem")),
        )
    } else {
        (format!("http://127.0.0.1:{port}"), None)
    };
    // `haneul up` writes up.toml and the user token once the agent's node is up.
    let until = Instant::now() + Duration::from_secs(60);
    let state = loop {
        if let Ok(t) = std::fs::read_to_string(dir.join("up.toml"))
            && dir.join("user.token").exists()
            && t.contains("project")
        {
            break t;
        }
        if Instant::now() > until {
            bail!(
                "haneul up did not get ready within 60 s; see {}",
                dir.join("up.log").display()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let project: i64 = state
        .lines()
        .find_map(|l| l.strip_prefix("project"))
        .and_then(|v| v.trim_start_matches([' ', '=']).trim().parse().ok())
        .context("no project in up.toml")?;
    let token = std::fs::read_to_string(dir.join("user.token"))?
        .trim()
        .to_string();
    let user = Client::with_ca(&url, token, ca_file)?;
    // The node may still be registering when up.toml appears.
    let until = Instant::now() + Duration::from_secs(30);
    while !call(&user, "GET", "/healthz", None).is_ok_and(|b| b.contains("true")) {
        if Instant::now() > until {
            bail!("the server never led; see {}", dir.join("up.log").display());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(500));

    let started = Instant::now();
    let body = serde_json::json!({"project": project, "gpus_per_task": 1, "command": ["true"]})
        .to_string();
    let mut ids = Vec::with_capacity(args.jobs);
    for _ in 0..args.jobs {
        let v: serde_json::Value =
            serde_json::from_str(&call(&user, "POST", "/v1/jobs", Some(&body))?)?;
        ids.push(v["id"].as_i64().context("no job id")?);
    }
    let mut latencies = Vec::with_capacity(ids.len());
    let until = Instant::now() + Duration::from_secs(600);
    for id in &ids {
        loop {
            let d: JobDetail =
                serde_json::from_str(&call(&user, "GET", &format!("/v1/jobs/{id}"), None)?)?;
            if !["queued", "running", "stopping"].contains(&d.job.state.as_str()) {
                if d.job.state != "succeeded" {
                    bail!("job {id} ended {}: {:?}", d.job.state, d.job.reason);
                }
                for a in &d.attempts {
                    let s = a.started_at.context("an ended attempt without a start")?;
                    latencies.push(s - a.created_at);
                }
                break;
            }
            if Instant::now() > until {
                bail!("job {id} did not end within 10 minutes");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let wall_s = started.elapsed().as_secs_f64();
    latencies.sort_unstable();
    Ok(Report {
        transport: if args.tls { "https" } else { "http" },
        jobs: args.jobs,
        gpus: args.gpus.clone(),
        p50_ms: percentile(&latencies, 0.50),
        p90_ms: percentile(&latencies, 0.90),
        p99_ms: percentile(&latencies, 0.99),
        max_ms: *latencies.last().unwrap_or(&0),
        mean_ms: latencies.iter().sum::<i64>() as f64 / latencies.len().max(1) as f64,
        wall_s,
    })
}
