//! User commands (`submit`, `queue`, `show`, `logs`, `cancel`, `usage`) and the client config
//! they share (~/.config/haneul/config.toml, or $HANEUL_CONFIG), written by `haneul up`.

use crate::agent::{CallError, Client};
use anyhow::{Context, bail};
use clap::Args;
use comfy_table::Table;
use haneul_api::{Job, JobDetail, JobList, LogChunk, Project, Usage};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Options every user command takes.
#[derive(Args, Clone)]
pub struct Conn {
    /// The server's base URL (default: from the client config written by `haneul up`).
    #[arg(long, env = "HANEUL_SERVER", global = true)]
    server: Option<String>,
    /// A file holding your token (default: the environment's HANEUL_TOKEN, then the config).
    #[arg(long, global = true)]
    token_file: Option<PathBuf>,
    /// Print JSON for scripts instead of a table.
    #[arg(long, global = true)]
    json: bool,
}

/// `key = value` lines (values optionally quoted); enough for the files we write ourselves.
pub fn parse_kv(text: &str) -> HashMap<String, String> {
    text.lines()
        .filter_map(|l| {
            let l = l.trim();
            if l.starts_with('#') {
                return None;
            }
            let (k, v) = l.split_once('=')?;
            let v = v.trim();
            let v = v
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(v);
            Some((
                k.trim().to_string(),
                v.replace("\\\"", "\"").replace("\\\\", "\\"),
            ))
        })
        .collect()
}

pub fn config_path() -> anyhow::Result<PathBuf> {
    if let Some(p) = std::env::var_os("HANEUL_CONFIG") {
        return Ok(p.into());
    }
    let home = std::env::var_os("HOME").context("HOME is not set; set HANEUL_CONFIG")?;
    Ok(PathBuf::from(home).join(".config/haneul/config.toml"))
}

pub fn write_config(
    path: &Path,
    server: &str,
    token_file: &Path,
    project: Option<i64>,
) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let mut text = format!(
        "# written by `haneul up`\nserver = {:?}\ntoken_file = {:?}\n",
        server,
        token_file.display().to_string()
    );
    if let Some(p) = project {
        text.push_str(&format!("project = {p}\n"));
    }
    // Write then rename, so a reader never sees half a file.
    let tmp = path.with_extension("toml.tmp");
    std::fs::write(&tmp, text).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))
}

struct Api {
    client: Client,
    server: String,
    project: Option<i64>,
    json: bool,
}

impl Conn {
    fn open(&self) -> anyhow::Result<Api> {
        let path = config_path()?;
        let config = std::fs::read_to_string(&path)
            .map(|t| parse_kv(&t))
            .unwrap_or_default();
        let server = self
            .server
            .clone()
            .or_else(|| config.get("server").cloned())
            .with_context(|| {
                format!(
                    "no server given and no config at {}; run `haneul up` or pass --server http://HOST:PORT",
                    path.display()
                )
            })?;
        let token = if let Some(f) = &self.token_file {
            read_token(f)?
        } else if let Ok(t) = std::env::var("HANEUL_TOKEN") {
            t.trim().to_string()
        } else if let Some(f) = config.get("token_file") {
            read_token(Path::new(f))?
        } else {
            bail!("no token: pass --token-file PATH or set HANEUL_TOKEN (or run `haneul up`)");
        };
        Ok(Api {
            client: Client::new(&server, token)?,
            server,
            project: config.get("project").and_then(|p| p.parse().ok()),
            json: self.json,
        })
    }
}

fn read_token(path: &Path) -> anyhow::Result<String> {
    Ok(std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the token file {}", path.display()))?
        .trim()
        .to_string())
}

impl Api {
    fn call<T: serde::de::DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<T> {
        let body = body.map(|b| b.to_string());
        match self.client.raw(method, path, body.as_deref()) {
            Ok((_, text)) => serde_json::from_str(&text)
                .with_context(|| format!("{method} {path}: unexpected answer from the server")),
            Err(CallError::Refused(status, text)) => {
                let msg = serde_json::from_str::<Value>(&text)
                    .ok()
                    .and_then(|v| v["error"]["message"].as_str().map(str::to_string))
                    .unwrap_or(text);
                let hint = match status {
                    401 => {
                        " (check your token: --token-file, HANEUL_TOKEN or the config from `haneul up`)"
                    }
                    404 => " (`haneul queue` lists the jobs you can see)",
                    _ => "",
                };
                bail!("{msg}{hint}")
            }
            Err(CallError::Transient(m)) => bail!(
                "cannot reach the server at {}: {m}; is `haneul up` (or `haneul server`) running?",
                self.server
            ),
        }
    }

    fn print_json(&self, v: &impl serde::Serialize) -> anyhow::Result<()> {
        println!("{}", serde_json::to_string_pretty(v)?);
        Ok(())
    }
}

fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(comfy_table::presets::NOTHING);
    t.set_header(header.iter().copied());
    t
}

#[derive(Args)]
#[command(after_help = "Examples:\n  \
    haneul submit --gpus 1 -- python train.py\n  \
    haneul submit --gpus 16 --nodes 2 --time 2h --name llm -- torchrun train.py\n  \
    haneul submit --gpus 1 --json -- sh -c 'echo $CUDA_VISIBLE_DEVICES'")]
pub struct SubmitArgs {
    /// GPUs in all (split evenly across --nodes).
    #[arg(long, default_value_t = 0)]
    gpus: u32,
    /// Nodes (tasks started together, one per node).
    #[arg(long, default_value_t = 1)]
    nodes: u32,
    /// Time limit: 90s, 10m, 2h, 1d (a bare number is minutes, as in Slurm).
    #[arg(long)]
    time: Option<String>,
    /// The job's name.
    #[arg(long)]
    name: Option<String>,
    /// Project id (default: the config's project, or your only project).
    #[arg(long)]
    project: Option<i64>,
    #[command(flatten)]
    conn: Conn,
    /// The program and its arguments.
    #[arg(last = true, required = true)]
    command: Vec<String>,
}

pub fn parse_time(s: &str) -> anyhow::Result<u64> {
    let s = s.trim();
    let (num, mult) = match s.char_indices().last() {
        Some((i, 's')) => (&s[..i], 1),
        Some((i, 'm')) => (&s[..i], 60),
        Some((i, 'h')) => (&s[..i], 3600),
        Some((i, 'd')) => (&s[..i], 86400),
        _ => (s, 60),
    };
    match num.parse::<u64>() {
        Ok(n) if n > 0 => Ok(n * mult),
        _ => bail!("--time: expected e.g. 90s, 10m, 2h or 1d, got `{s}`"),
    }
}

pub fn submit(args: SubmitArgs) -> anyhow::Result<()> {
    if args.nodes == 0 {
        bail!("--nodes must be at least 1");
    }
    if !args.gpus.is_multiple_of(args.nodes) {
        bail!(
            "--gpus {} cannot be split evenly across --nodes {}; give a multiple of the node count",
            args.gpus,
            args.nodes
        );
    }
    let time = args.time.as_deref().map(parse_time).transpose()?;
    let api = args.conn.open()?;
    let project = match args.project.or(api.project) {
        Some(p) => p,
        None => {
            let ps: Vec<Project> = api.call("GET", "/v1/projects", None)?;
            match ps.as_slice() {
                [p] => p.id,
                [] => bail!("you are in no project; ask your organisation's admin to add you"),
                _ => bail!("you are in several projects; choose one with --project ID"),
            }
        }
    };
    let mut body = json!({
        "project": project,
        "command": args.command,
        "replicas": args.nodes,
        "gpus_per_task": args.gpus / args.nodes,
    });
    if let Some(n) = args.name {
        body["name"] = json!(n);
    }
    if let Some(t) = time {
        body["time_limit_s"] = json!(t);
    }
    let job: Job = api.call("POST", "/v1/jobs", Some(body))?;
    if api.json {
        api.print_json(&job)
    } else {
        println!("{}", job.id);
        Ok(())
    }
}

#[derive(Args)]
#[command(after_help = "Examples:\n  haneul queue\n  haneul queue --json")]
pub struct QueueArgs {
    #[command(flatten)]
    conn: Conn,
}

pub fn queue(args: QueueArgs) -> anyhow::Result<()> {
    let api = args.conn.open()?;
    let list: JobList = api.call("GET", "/v1/jobs", None)?;
    if api.json {
        return api.print_json(&list.jobs);
    }
    let mut t = table(&[
        "ID",
        "NAME",
        "STATE",
        "TASKS",
        "GPUS/TASK",
        "PROJECT",
        "COMMAND",
    ]);
    for j in &list.jobs {
        t.add_row(vec![
            j.id.to_string(),
            j.name.clone(),
            j.state.clone(),
            j.replicas.to_string(),
            j.gpus_per_task.to_string(),
            j.project.to_string(),
            j.command.join(" "),
        ]);
    }
    println!("{t}");
    Ok(())
}

#[derive(Args)]
#[command(after_help = "Examples:\n  haneul show 42\n  haneul show 42 --json")]
pub struct ShowArgs {
    /// The job id.
    id: i64,
    #[command(flatten)]
    conn: Conn,
}

pub fn show(args: ShowArgs) -> anyhow::Result<()> {
    let api = args.conn.open()?;
    let d: JobDetail = api.call("GET", &format!("/v1/jobs/{}", args.id), None)?;
    if api.json {
        // The job's fields at the top level (`state`, `exit_code`, ...) plus its history.
        let mut v = serde_json::to_value(&d.job)?;
        v["attempts"] = serde_json::to_value(&d.attempts)?;
        v["events"] = serde_json::to_value(&d.events)?;
        return api.print_json(&v);
    }
    let j = &d.job;
    println!("job {} `{}`: {}", j.id, j.name, j.state);
    println!("  command:  {}", j.command.join(" "));
    println!("  tasks:    {} x {} GPU", j.replicas, j.gpus_per_task);
    if let Some(c) = j.exit_code {
        println!("  exit:     {c}");
    }
    if let Some(r) = &j.reason {
        println!("  reason:   {r}");
    }
    let mut t = table(&["ATTEMPT", "STATE", "GPU MODEL", "EXIT"]);
    for a in &d.attempts {
        t.add_row(vec![
            a.fence.to_string(),
            a.state.clone(),
            a.gpu_model.clone().unwrap_or_default(),
            a.exit_code.map(|c| c.to_string()).unwrap_or_default(),
        ]);
    }
    if !d.attempts.is_empty() {
        println!("{t}");
    }
    Ok(())
}

#[derive(Args)]
#[command(after_help = "Examples:\n  haneul logs 42\n  haneul logs -f 42")]
pub struct LogsArgs {
    /// The job id.
    id: i64,
    /// Keep printing new output until the job ends (with --json: one chunk per line).
    #[arg(short, long)]
    follow: bool,
    #[command(flatten)]
    conn: Conn,
}

pub fn logs(args: LogsArgs) -> anyhow::Result<()> {
    let api = args.conn.open()?;
    let mut after = 0;
    let mut all = Vec::new();
    let fetch = |after: &mut i64| -> anyhow::Result<Vec<LogChunk>> {
        let mut out = Vec::new();
        loop {
            let chunks: Vec<LogChunk> = api.call(
                "GET",
                &format!("/v1/jobs/{}/logs?after={after}", args.id),
                None,
            )?;
            let Some(last) = chunks.last() else { break };
            if last.id <= *after {
                break;
            }
            *after = last.id;
            out.extend(chunks);
        }
        Ok(out)
    };
    if args.follow {
        use std::io::Write;
        loop {
            // The state first: agents upload a task's last output before reporting its exit,
            // so once the job has ended one more fetch has everything.
            let d: JobDetail = api.call("GET", &format!("/v1/jobs/{}", args.id), None)?;
            let ended = !["queued", "running", "stopping"].contains(&d.job.state.as_str());
            let mut out = std::io::stdout().lock();
            for c in fetch(&mut after)? {
                if api.json {
                    writeln!(out, "{}", serde_json::to_string(&c)?)?;
                } else {
                    write!(out, "{}", c.data)?;
                }
            }
            out.flush()?;
            if ended {
                return Ok(());
            }
            drop(out);
            std::thread::sleep(std::time::Duration::from_millis(300));
        }
    }
    all.extend(fetch(&mut after)?);
    if api.json {
        return api.print_json(&all);
    }
    for c in &all {
        print!("{}", c.data);
    }
    Ok(())
}

#[derive(Args)]
#[command(after_help = "Examples:\n  haneul cancel 42")]
pub struct CancelArgs {
    /// The job id.
    id: i64,
    #[command(flatten)]
    conn: Conn,
}

pub fn cancel(args: CancelArgs) -> anyhow::Result<()> {
    let api = args.conn.open()?;
    let job: Job = api.call(
        "POST",
        &format!("/v1/jobs/{}/cancel", args.id),
        Some(json!({})),
    )?;
    if api.json {
        api.print_json(&job)
    } else {
        println!("job {}: {}", job.id, job.state);
        Ok(())
    }
}

#[derive(Args)]
#[command(after_help = "Examples:\n  haneul usage\n  haneul usage --json")]
pub struct UsageArgs {
    #[command(flatten)]
    conn: Conn,
}

pub fn usage(args: UsageArgs) -> anyhow::Result<()> {
    let api = args.conn.open()?;
    let usage: Vec<Usage> = api.call("GET", "/v1/usage", None)?;
    if api.json {
        return api.print_json(&usage);
    }
    let mut t = table(&["PROJECT", "GPU MODEL", "GPU-HOURS"]);
    for u in &usage {
        t.add_row(vec![
            u.project.to_string(),
            u.gpu_model.clone(),
            format!("{:.3}", u.gpu_hours),
        ]);
    }
    println!("{t}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times() {
        assert_eq!(parse_time("90s").unwrap(), 90);
        assert_eq!(parse_time("10m").unwrap(), 600);
        assert_eq!(parse_time("2h").unwrap(), 7200);
        assert_eq!(parse_time("5").unwrap(), 300);
        assert!(parse_time("x").is_err());
    }

    #[test]
    fn config_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c/config.toml");
        write_config(
            &p,
            "http://127.0.0.1:1",
            Path::new("/t/user.token"),
            Some(3),
        )
        .unwrap();
        let kv = parse_kv(&std::fs::read_to_string(&p).unwrap());
        assert_eq!(kv["server"], "http://127.0.0.1:1");
        assert_eq!(kv["token_file"], "/t/user.token");
        assert_eq!(kv["project"], "3");
    }
}
