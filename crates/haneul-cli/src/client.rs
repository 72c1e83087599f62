//! User commands (`submit`, `queue`, `show`, `logs`, `cancel`, `usage`, `whoami`), the
//! connection options every client command shares, and the client config
//! (~/.config/haneul/config.toml, or $HANEUL_CONFIG) written by `haneul up`.

use crate::i18n::{M, t};
use crate::jobfile::{self, JobFile};
use crate::output::{UsageError, print_json, shown, stdout_colour, table};
use crate::slurm;
use anyhow::{Context, bail};
use clap::Args;
use haneul_api::{
    AwardBalance, ErrorBody, Job, JobDetail, JobList, LogChunk, Notice, Project, User,
};
use serde::Deserialize;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

/// Options every client command takes.
#[derive(Args, Clone, Default)]
pub struct Conn {
    /// The server's base URL, http:// or https:// (default: `server` in the client config
    /// written by `haneul up`); several servers of one centre comma-separated.
    #[arg(long, env = "HANEUL_SERVER", global = true)]
    server: Option<String>,
    /// The CA certificate (PEM) that signed the server's certificate, instead of the public
    /// roots (default: `ca_file` in the client config).
    #[arg(long, env = "HANEUL_CA_FILE", global = true)]
    ca_file: Option<PathBuf>,
    /// A file holding your token (default: the environment's HANEUL_TOKEN, then the config).
    #[arg(long, env = "HANEUL_TOKEN_FILE", global = true)]
    token_file: Option<PathBuf>,
    /// Print JSON for scripts instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
}

impl Conn {
    /// The options from the environment alone (HANEUL_SERVER, HANEUL_CA_FILE,
    /// HANEUL_TOKEN_FILE), for the Slurm command names, which take Slurm's options instead.
    pub fn from_env() -> Conn {
        Conn {
            server: std::env::var("HANEUL_SERVER").ok(),
            ca_file: std::env::var_os("HANEUL_CA_FILE").map(PathBuf::from),
            token_file: std::env::var_os("HANEUL_TOKEN_FILE").map(PathBuf::from),
            json: false,
        }
    }
}

pub fn config_path() -> anyhow::Result<PathBuf> {
    if let Some(p) = std::env::var_os("HANEUL_CONFIG") {
        return Ok(p.into());
    }
    let home = std::env::var_os("HOME").context("HOME is not set; set HANEUL_CONFIG")?;
    Ok(PathBuf::from(home).join(".config/haneul/config.toml"))
}

/// The client config. Every key is optional and has an override: `--server`/HANEUL_SERVER,
/// `--token-file`/HANEUL_TOKEN_FILE (or the token itself in HANEUL_TOKEN), `--project`/
/// HANEUL_PROJECT, `--ca-file`/HANEUL_CA_FILE.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    /// One base URL, or several comma-separated.
    pub server: Option<String>,
    pub token_file: Option<PathBuf>,
    pub project: Option<i64>,
    pub ca_file: Option<PathBuf>,
}

impl ClientConfig {
    /// The config at `path`; none there is an empty config, a broken one is an error.
    pub fn load(path: &Path) -> anyhow::Result<ClientConfig> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(_) => bail!("{}", t(M::CannotReadFile).arg("path", path.display())),
        };
        toml::from_str(&text).map_err(|e| {
            anyhow::anyhow!(
                "{}",
                t(M::BadConfig)
                    .arg("path", path.display())
                    .arg("error", e.message())
            )
        })
    }
}

pub fn write_config(
    path: &Path,
    server: &str,
    token_file: &Path,
    project: Option<i64>,
    ca_file: Option<&Path>,
) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    #[derive(serde::Serialize)]
    struct Written<'a> {
        server: &'a str,
        token_file: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        project: Option<i64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        ca_file: Option<String>,
    }
    let text = format!(
        "# written by `haneul up`\n{}",
        toml::to_string(&Written {
            server,
            token_file: token_file.display().to_string(),
            project,
            ca_file: ca_file.map(|p| p.display().to_string()),
        })?
    );
    // Write then rename, so a reader never sees half a file.
    let tmp = path.with_extension("toml.tmp");
    std::fs::write(&tmp, text).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))
}

/// A connection to the server with the caller's token.
pub struct Api {
    client: haneul_client::blocking::Client,
    project: Option<i64>,
    pub json: bool,
}

/// Tries of a read, which is safe to repeat.
const TRIES: u32 = 4;
/// Tries of a submit: its idempotency key makes a repeat safe, and enough tries (backing off to
/// 5 s apart) outlast a server's restart or fail-over, so no submit is lost to one.
const SUBMIT_TRIES: u32 = 16;

impl Conn {
    /// The server's URL and CA file, from the options or the client config.
    pub fn server_and_ca(&self) -> anyhow::Result<(String, Option<PathBuf>)> {
        let path = config_path()?;
        let config = ClientConfig::load(&path)?;
        let server = self
            .server
            .clone()
            .or(config.server)
            .ok_or_else(|| anyhow::anyhow!("{}", t(M::NoServer).arg("path", path.display())))?;
        Ok((server, self.ca_file.clone().or(config.ca_file)))
    }

    pub fn open(&self) -> anyhow::Result<Api> {
        let path = config_path()?;
        let config = ClientConfig::load(&path)?;
        let server = self
            .server
            .clone()
            .or(config.server)
            .ok_or_else(|| anyhow::anyhow!("{}", t(M::NoServer).arg("path", path.display())))?;
        let token = if let Some(f) = &self.token_file {
            read_token(f)?
        } else if let Ok(t) = std::env::var("HANEUL_TOKEN") {
            t.trim().to_string()
        } else if let Some(t) =
            crate::login::current_token(&server, self.ca_file.clone().or(config.ca_file.clone()))?
        {
            // `haneul login`'s token, refreshed when near its end.
            t
        } else if let Some(f) = &config.token_file {
            read_token(f)?
        } else {
            bail!("{}", t(M::NoToken));
        };
        let project = match std::env::var("HANEUL_PROJECT") {
            Ok(p) => Some(
                p.trim()
                    .parse()
                    .map_err(|_| UsageError(format!("HANEUL_PROJECT: not a project id: `{p}`")))?,
            ),
            Err(_) => config.project,
        };
        let client = haneul_client::blocking::Client::for_command(&haneul_client::Options {
            servers: server,
            token,
            ca_file: self.ca_file.clone().or(config.ca_file),
            ..Default::default()
        })
        .map_err(|e| UsageError(e.to_string()))?;
        Ok(Api {
            client,
            project,
            json: self.json,
        })
    }
}

fn read_token(path: &Path) -> anyhow::Result<String> {
    Ok(std::fs::read_to_string(path)
        .map_err(|_| anyhow::anyhow!("{}", t(M::CannotReadToken).arg("path", path.display())))?
        .trim()
        .to_string())
}

/// The command-line flag for a request field the server names, so an error points at what the
/// user typed.
fn flag_of(field: &str) -> Option<&'static str> {
    let base = field.split(['[', '.']).next().unwrap_or(field);
    Some(match base {
        "gpu_models" => "--gpu-model",
        "state" => "--state",
        "limit" => "--limit",
        "time_limit_s" => "--time",
        "priority" => "--priority",
        "dependencies" => "--dependency",
        "container_image" => "--container-image",
        "name" => "--name",
        "project" => "--project",
        "replicas" => "--nodes",
        "gpus_per_task" => "--gpus",
        "cpu_per_task" | "cpu_milli_per_task" => "--cpus-per-task",
        "command" => "the command",
        "quotas" => "--quota",
        "weight" => "--weight",
        "role" => "--role",
        "org" => "--org",
        "projects" => "--project",
        "user" => "--user",
        "class" => "--class",
        "country" => "--country",
        "lending" => "--lending",
        "owner" => "--owner",
        _ => return None,
    })
}

impl Api {
    /// Opens a websocket to `path`.
    pub(crate) fn websocket(
        &self,
        path: &str,
    ) -> Result<haneul_client::blocking::Websocket, haneul_client::Error> {
        self.client.websocket(path)
    }

    /// A failed websocket open, worded as [`Api::call`]'s errors are.
    pub(crate) fn refusal(e: haneul_client::Error) -> anyhow::Error {
        match e {
            haneul_client::Error::Status {
                status, body: text, ..
            } if status < 500 => {
                let msg = match serde_json::from_str::<ErrorBody>(&text) {
                    Ok(b) => b.error.message,
                    Err(_) => text,
                };
                match status {
                    401 => anyhow::anyhow!("{msg} ({})", t(M::HintToken).text()),
                    403 => anyhow::anyhow!("{msg} ({})", t(M::HintForbidden).text()),
                    _ => anyhow::anyhow!("{msg}"),
                }
            }
            e => anyhow::anyhow!("{e}"),
        }
    }

    pub fn call<T: serde::de::DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<T> {
        let text = self.call_text(method, path, body)?;
        serde_json::from_str(&text)
            .with_context(|| format!("{method} {path}: unexpected answer from the server"))
    }

    /// Submits one job: one `Idempotency-Key` for every try (see [`Api::call_text`]), so the
    /// server makes it once whether or not an answer was lost.
    fn submit_job(&self, body: &Value) -> anyhow::Result<Job> {
        self.call("POST", "/v1/jobs", Some(body.clone()))
    }

    /// [`Api::call`] for answers that are not JSON (CSV statements).
    pub(crate) fn call_text(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<String> {
        use haneul_client::{Error, Method, Retry};
        let body = body.map(|b| b.to_string().into_bytes());
        let key = haneul_client::idempotency_key();
        let (retry, mut headers): (Retry, Vec<(&str, &str)>) = match (method, path) {
            ("GET", _) => (Retry::times(TRIES), vec![]),
            // One key per logical submit, the same on every try: the server makes one job.
            ("POST", "/v1/jobs") => (
                Retry::times(SUBMIT_TRIES),
                vec![(haneul_client::IDEMPOTENCY_HEADER, key.as_str())],
            ),
            _ => (Retry::never(), vec![]),
        };
        // Under a Korean locale the server's errors come in Korean too.
        if crate::i18n::lang() == crate::i18n::Lang::Ko {
            headers.push(("accept-language", "ko"));
        }
        let m = Method::from_bytes(method.as_bytes())?;
        match self.client.request(m, path, body, &headers, None, &retry) {
            Ok(a) => Ok(String::from_utf8_lossy(&a.body).into_owned()),
            Err(Error::Status {
                status, body: text, ..
            }) if status < 500 => {
                let (msg, field) = match serde_json::from_str::<ErrorBody>(&text) {
                    Ok(b) => (b.error.message, b.error.field),
                    Err(_) => (text, None),
                };
                // A Korean message already starts with the field; name it as the flag instead.
                let msg = match field.as_deref() {
                    Some(f) => {
                        let rest = msg.strip_prefix(&format!("{f}: ")).unwrap_or(&msg);
                        format!("{}: {rest}", flag_of(f).unwrap_or(f))
                    }
                    None => msg,
                };
                let hint = match status {
                    401 => Some(t(M::HintToken).text()),
                    403 => Some(t(M::HintForbidden).text()),
                    404 if path.starts_with("/v1/jobs") => Some(t(M::HintJob).text()),
                    _ => None,
                };
                if msg.contains("exhausted") && !msg.contains("haneul usage") {
                    bail!("{}", t(M::Exhausted).arg("message", msg));
                }
                match hint {
                    Some(h) if !msg.contains(&h) => bail!("{msg} ({h})"),
                    _ => bail!("{msg}"),
                }
            }
            Err(Error::Unreachable { server, message }) => bail!(
                "{}",
                t(M::Unreachable)
                    .arg("server", server)
                    .arg("error", message)
            ),
            Err(Error::Status {
                server,
                status,
                body,
            }) => bail!(
                "{}",
                t(M::Unreachable)
                    .arg("server", server)
                    .arg("error", format!("status {status}: {body}"))
            ),
            Err(e) => bail!("{e}"),
        }
    }

    /// The project to act on: the one given, else the config's (or HANEUL_PROJECT), else the
    /// caller's only project.
    fn project(&self, given: Option<i64>) -> anyhow::Result<i64> {
        if let Some(p) = given.or(self.project) {
            return Ok(p);
        }
        let ps: Vec<Project> = self.call("GET", "/v1/projects", None)?;
        match ps.as_slice() {
            [p] => Ok(p.id),
            [] => bail!("{}", t(M::NoProjectMember)),
            _ => {
                let ids: Vec<String> = ps.iter().map(|p| p.id.to_string()).collect();
                Err(UsageError(t(M::SeveralProjects).arg("ids", ids.join(", ")).text()).into())
            }
        }
    }
}

#[derive(Args)]
#[command(after_help = "Examples:
  haneul submit --gpus 1 -- python train.py
  haneul submit --gpus 16 --nodes 2 --time 2h --name llm -- torchrun train.py
  haneul submit --gpus-per-node 8 --nodes 4 --gpu-model H200 --priority high -- ./run.sh
  haneul submit --dependency afterok:41 -- python eval.py
  haneul submit --array 0-9%2 --gpus 1 -- sh -c 'python sweep.py --seed $SLURM_ARRAY_TASK_ID'
  haneul submit job.toml --time 30m        (flags override the file)
  haneul submit train.sh -- --lr 3e-4      (a Slurm batch script and its arguments: docs/slurm.md)
  haneul submit --gpus 1 --json -- sh -c 'echo $CUDA_VISIBLE_DEVICES'
  haneul submit --gpus 8 --container-image nvcr.io/nvidia/pytorch:24.10-py3 -- torchrun train.py

A job file (TOML) may set: name, gpus, nodes, gpus_per_node, cpus_per_task, gpu_model, time, priority,
cpus_per_task, dependency, array, project, container_image and command (a list: [\"python\", \"train.py\"]).")]
pub struct SubmitArgs {
    /// A job file in TOML (the same as --file).
    #[arg(value_name = "JOB_FILE")]
    job_file: Option<PathBuf>,
    /// A job file in TOML.
    #[arg(long, value_name = "JOB_FILE")]
    file: Option<PathBuf>,
    /// GPUs in all (split evenly across --nodes).
    #[arg(long)]
    gpus: Option<u32>,
    /// Nodes (tasks started together, one per node).
    #[arg(long)]
    nodes: Option<u32>,
    /// GPUs on each node (instead of --gpus).
    #[arg(long)]
    gpus_per_node: Option<u32>,
    /// CPU cores per task (a task without GPUs must ask for some).
    #[arg(long)]
    cpus_per_task: Option<f64>,
    /// GPU model the job may run on; several comma-separated (H200,H100).
    #[arg(long)]
    gpu_model: Option<String>,
    /// Time limit: 90s, 10m, 2h, 1d, 1:30:00 (a bare number is minutes, as in Slurm).
    #[arg(long)]
    time: Option<String>,
    /// The job's name.
    #[arg(long)]
    name: Option<String>,
    /// low, normal, high or urgent.
    #[arg(long)]
    priority: Option<String>,
    /// Start after other jobs: afterok:ID[:ID...] (they must succeed) or afterany:ID[:ID...].
    #[arg(long)]
    dependency: Option<String>,
    /// A job array: 0-9, 1,3,5 or 0-15:4; `%N` runs at most N tasks at once (0-9%2).
    #[arg(long)]
    array: Option<String>,
    /// Project id (default: the config's project, HANEUL_PROJECT, or your only project).
    #[arg(long)]
    project: Option<i64>,
    /// Run each task in a container of this image: an OCI reference (ubuntu:24.04), or an
    /// absolute path to a root file system directory or an apptainer .sif file.
    #[arg(long)]
    container_image: Option<String>,
    #[command(flatten)]
    conn: Conn,
    /// The program and its arguments.
    #[arg(last = true)]
    command: Vec<String>,
}

pub fn submit(args: SubmitArgs) -> anyhow::Result<()> {
    let path = match (&args.job_file, &args.file) {
        (Some(_), Some(_)) => return Err(UsageError(t(M::FileTwice).text()).into()),
        (Some(f), None) | (None, Some(f)) => Some(f.clone()),
        (None, None) => None,
    };
    let flags = JobFile {
        name: args.name,
        gpus: args.gpus,
        nodes: args.nodes,
        gpus_per_node: args.gpus_per_node,
        cpus_per_task: args.cpus_per_task,
        gpu_model: args.gpu_model,
        time: args.time,
        priority: args.priority,
        dependency: args.dependency,
        array: args.array,
        project: args.project,
        container_image: args.container_image,
        command: Some(args.command),
    };
    let text = match &path {
        Some(p) => Some(
            std::fs::read_to_string(p)
                .with_context(|| t(M::CannotReadFile).arg("path", p.display()).text())?,
        ),
        None => None,
    };
    if let (Some(p), Some(text)) = (&path, &text)
        && slurm::is_batch_script(text)
    {
        // A batch script: what follows `--` is the script's arguments, as sbatch's are.
        let script_args = flags.command.clone().unwrap_or_default();
        let flags = JobFile {
            command: None,
            ..flags
        };
        let jobs = submit_script(&args.conn, p, text, Vec::new(), script_args, flags)?;
        return print_submitted(&args.conn, &jobs, false);
    }
    let file = match (&path, &text) {
        (Some(p), Some(text)) => JobFile::parse(text).map_err(|e| {
            anyhow::anyhow!(
                "{}",
                t(M::BadJobFile)
                    .arg("path", p.display())
                    .arg("error", e.message())
                    .text()
            )
        })?,
        _ => JobFile::default(),
    };
    let merged = file.overridden_by(flags);
    let plan = jobfile::plan(&merged)?;
    let api = args.conn.open()?;
    let project = api.project(merged.project)?;
    let jobs = send(&api, plan, project, None)?;
    if api.json {
        return match jobs.as_slice() {
            [one] => print_json(one),
            _ => print_json(&jobs),
        };
    }
    for j in &jobs {
        println!("{}", j.id);
    }
    Ok(())
}

/// How a submit's result is printed: sbatch's words, or Haneul's ids (JSON with --json).
fn print_submitted(conn: &Conn, jobs: &[Job], sbatch: bool) -> anyhow::Result<()> {
    if conn.json {
        return match jobs {
            [one] => print_json(one),
            _ => print_json(&jobs),
        };
    }
    if sbatch {
        // An array is one job, as in Slurm.
        if let Some(j) = jobs.first() {
            println!("Submitted batch job {}", j.id);
        }
        return Ok(());
    }
    for j in jobs {
        println!("{}", j.id);
    }
    Ok(())
}

/// Submits a Slurm batch script: its directives, then `cli_opts` (sbatch's command line,
/// which wins), then Haneul's own `flags` (which win over both). Warnings go to standard error.
pub(crate) fn submit_script(
    conn: &Conn,
    path: &Path,
    text: &str,
    cli_opts: Vec<slurm::Opt>,
    script_args: Vec<String>,
    flags: JobFile,
) -> anyhow::Result<Vec<Job>> {
    let script = slurm::parse_script(text)?;
    let mut opts = script.opts;
    opts.extend(cli_opts);
    let mut r = slurm::request(&opts)?;
    let mut warnings = script.warnings;
    warnings.append(&mut r.warnings);
    for w in &warnings {
        eprintln!("warning: {w}");
    }
    if r.file.name.is_none() {
        // Slurm's default name is the script's file name.
        r.file.name = path.file_name().map(|f| f.to_string_lossy().into_owned());
    }
    let cwd = std::env::current_dir().context("cannot read the current directory")?;
    r.batch.submit_dir = Some(cwd.display().to_string());
    if let Some(d) = &r.batch.chdir {
        r.batch.chdir = Some(cwd.join(d).display().to_string());
    }
    let mut merged = r.file.clone().overridden_by(flags);
    let array = merged.array.is_some();
    merged.command = Some(match &r.wrap {
        Some(w) => slurm::wrapper_command(&format!("#!/bin/sh\n{w}\n"), &[], &r.batch, array)?,
        None => slurm::wrapper_command(text, &script_args, &r.batch, array)?,
    });
    let plan = jobfile::plan(&merged)?;
    let api = conn.open()?;
    let project = project_of(&api, merged.project, r.account_name.as_deref())?;
    send(&api, plan, project, Some(&r))
}

/// The project a submission goes to: the one given, else the one a Slurm `--account` names,
/// else the caller's default.
fn project_of(api: &Api, given: Option<i64>, account: Option<&str>) -> anyhow::Result<i64> {
    let given = match (given, account) {
        (Some(p), _) => Some(p),
        (None, Some(name)) => {
            let ps: Vec<Project> = api.call("GET", "/v1/projects", None)?;
            let p = ps.iter().find(|p| p.name == name).ok_or_else(|| {
                UsageError(format!(
                    "--account {name}: you are in no project of that name; `haneul project list` shows yours"
                ))
            })?;
            Some(p.id)
        }
        (None, None) => None,
    };
    api.project(given)
}

/// Submits an interactive job (`haneul run`, `srun`): the request `file` describes (its
/// command the program to run on the terminal), with a Slurm command line's extras when given.
/// Returns the connection too, for the attach that follows.
pub(crate) fn submit_interactive(
    conn: &Conn,
    file: &JobFile,
    slurm_request: Option<&slurm::Request>,
) -> anyhow::Result<(Api, Job)> {
    let mut plan = jobfile::plan(file)?;
    plan.body["interactive"] = json!(true);
    let api = conn.open()?;
    let project = project_of(
        &api,
        file.project,
        slurm_request.and_then(|r| r.account_name.as_deref()),
    )?;
    let job = send(&api, plan, project, slurm_request)?
        .into_iter()
        .next()
        .context("the server made no job")?;
    Ok((api, job))
}

/// Sends a checked submission: one request, an array included (the server makes its tasks).
fn send(
    api: &Api,
    plan: jobfile::Plan,
    project: i64,
    batch: Option<&slurm::Request>,
) -> anyhow::Result<Vec<Job>> {
    let mut body = plan.body;
    body["project"] = json!(project);
    if let Some(r) = batch {
        slurm::apply(&mut body, r);
    }
    body["command"] = json!(plan.command);
    if let Some(n) = &plan.name {
        body["name"] = json!(n);
    }
    if let Some(a) = &plan.array {
        body["array"] = json!(a.to_string());
    }
    Ok(vec![api.submit_job(&body)?])
}

/// A job as users name it: `ID`, or `ARRAY_TASK` for an array's task, or `ARRAY_[PENDING%N]`
/// for an array's tasks still to start, as Slurm's squeue shows them.
pub(crate) fn job_label(j: &Job) -> String {
    if let (Some(a), Some(t)) = (j.array_job, j.array_task) {
        return format!("{a}_{t}");
    }
    match (&j.array_pending, &j.array) {
        (Some(pending), Some(spec)) => {
            let limit = spec.split_once('%').map(|(_, n)| format!("%{n}"));
            format!("{}_[{pending}{}]", j.id, limit.unwrap_or_default())
        }
        _ => j.id.to_string(),
    }
}

/// An array whose tasks are all jobs and that has not ended: its tasks stand for it in a queue
/// listing.
pub(crate) fn hidden_in_queue(j: &Job) -> bool {
    j.array.is_some() && j.array_pending.is_none() && j.state == "queued"
}

/// `42` or `42_7` (task 7 of array 42), as the user typed it on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct JobRef {
    pub id: i64,
    pub task: Option<i64>,
}

impl std::str::FromStr for JobRef {
    type Err = String;
    fn from_str(s: &str) -> Result<JobRef, String> {
        let bad = || format!("`{s}` is not a job id: write 42, or 42_7 for task 7 of array 42");
        let (id, task) = match s.split_once('_') {
            Some((a, t)) => (
                a,
                Some(t.parse::<i64>().ok().filter(|t| *t >= 0).ok_or_else(bad)?),
            ),
            None => (s, None),
        };
        let id = id.parse::<i64>().ok().filter(|i| *i > 0).ok_or_else(bad)?;
        Ok(JobRef { id, task })
    }
}

impl JobRef {
    /// The API path of the job or array task.
    pub(crate) fn path(&self) -> String {
        match self.task {
            Some(t) => format!("/v1/jobs/{}/tasks/{t}", self.id),
            None => format!("/v1/jobs/{}", self.id),
        }
    }
}

#[derive(Args)]
#[command(after_help = "Examples:
  haneul whoami
  haneul whoami --json")]
pub struct WhoamiArgs {
    #[command(flatten)]
    conn: Conn,
}

pub fn whoami(args: WhoamiArgs) -> anyhow::Result<()> {
    let api = args.conn.open()?;
    let me: User = api.call("GET", "/v1/whoami", None)?;
    if api.json {
        return print_json(&me);
    }
    let role = serde_json::to_value(me.role)?;
    println!("user {} `{}`", me.id, me.name);
    println!("  role:     {}", role.as_str().unwrap_or_default());
    if let Some(o) = me.org {
        println!("  org:      {o}");
    }
    if !me.projects.is_empty() {
        let ps: Vec<String> = me.projects.iter().map(|p| p.to_string()).collect();
        println!("  projects: {}", ps.join(", "));
    }
    println!("  server:   {}", api.client.server());
    Ok(())
}

#[derive(Args)]
#[command(after_help = "Examples:
  haneul queue
  haneul queue --state running --project 3
  haneul queue --limit 1000 --json")]
pub struct QueueArgs {
    /// Only jobs in this state: queued, running, stopping, succeeded, failed, cancelled,
    /// timed_out.
    #[arg(long)]
    state: Option<String>,
    /// Only this project's jobs.
    #[arg(long)]
    project: Option<i64>,
    /// At most this many jobs, newest first (1 to 1000).
    #[arg(long, default_value_t = 100)]
    limit: u32,
    #[command(flatten)]
    conn: Conn,
}

pub fn queue(args: QueueArgs) -> anyhow::Result<()> {
    let api = args.conn.open()?;
    let mut query = format!("/v1/jobs?limit={}", args.limit);
    if let Some(s) = &args.state {
        // The server names the field; a value outside the URL's safe set cannot be a state.
        if !s.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
            return Err(UsageError(format!(
                "--state: use queued, running, stopping, succeeded, failed, cancelled or timed_out, not `{s}`"
            ))
            .into());
        }
        query.push_str(&format!("&state={s}"));
    }
    if let Some(p) = args.project {
        query.push_str(&format!("&project={p}"));
    }
    let list: JobList = api.call("GET", &query, None)?;
    if api.json {
        return print_json(&list.jobs);
    }
    let colour = stdout_colour();
    let mut t = table(&[
        "ID",
        "NAME",
        "STATE",
        "TASKS",
        "GPUS/TASK",
        "PROJECT",
        "REASON",
        "COMMAND",
    ]);
    for j in list.jobs.iter().filter(|j| !hidden_in_queue(j)) {
        t.add_row(vec![
            job_label(j),
            shown(&j.name),
            crate::output::state(&j.state, colour),
            j.replicas.to_string(),
            j.gpus_per_task.to_string(),
            j.project.to_string(),
            j.pending_reason
                .as_ref()
                .map(|r| short_reason(r, REASON_WIDTH))
                .unwrap_or_default(),
            shown(&j.command.join(" ")),
        ]);
    }
    println!("{t}");
    Ok(())
}

/// Characters of a reason the queue's table shows; `haneul show` has the whole of it.
const REASON_WIDTH: usize = 60;

/// `Code: sentence`, cut to `width` characters with an ellipsis.
fn short_reason(r: &haneul_api::PendingReason, width: usize) -> String {
    let full = shown(&format!("{}: {}", r.code, r.message));
    if full.chars().count() <= width {
        return full;
    }
    let mut cut: String = full.chars().take(width.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

#[derive(Args)]
#[command(
    after_help = "Examples:\n  haneul show 42\n  haneul show 42_7   (task 7 of array 42)\n  haneul show 42 --json"
)]
pub struct ShowArgs {
    /// The job id, or ARRAY_TASK for one task of an array.
    id: JobRef,
    #[command(flatten)]
    conn: Conn,
}

pub fn show(args: ShowArgs) -> anyhow::Result<()> {
    let api = args.conn.open()?;
    let d: JobDetail = api.call("GET", &args.id.path(), None)?;
    if api.json {
        // The job's fields at the top level (`state`, `exit_code`, ...) plus its history.
        let mut v = serde_json::to_value(&d.job)?;
        v["attempts"] = serde_json::to_value(&d.attempts)?;
        v["events"] = serde_json::to_value(&d.events)?;
        return print_json(&v);
    }
    let j = &d.job;
    println!(
        "job {} `{}`: {}",
        job_label(j),
        shown(&j.name),
        crate::output::state(&j.state, stdout_colour())
    );
    if j.array_job.is_some() {
        println!("  job id:   {}", j.id);
    }
    if let Some(a) = &j.array {
        println!("  array:    {a}");
    }
    println!("  command:  {}", shown(&j.command.join(" ")));
    if let Some(image) = &j.container_image {
        println!("  image:    {}", shown(image));
    }
    println!("  tasks:    {} x {} GPU", j.replicas, j.gpus_per_task);
    if let Some(c) = j.exit_code {
        println!("  exit:     {c}");
    }
    if let Some(p) = &j.pending_reason {
        println!("  waiting:  {} ({})", shown(&p.message), shown(&p.code));
        if let Some(h) = &p.hint {
            println!("  help:     {}", shown(h));
        }
    } else if let Some(r) = &j.reason {
        println!("  reason:   {}", crate::i18n::word(r));
    }
    if !j.dependencies.is_empty() {
        let deps: Vec<String> = j
            .dependencies
            .iter()
            .map(|d| format!("{}:{}", d.kind, d.job))
            .collect();
        println!("  after:    {}", deps.join(","));
    }
    let mut t = table(&["ATTEMPT", "STATE", "GPU MODEL", "EXIT"]);
    for a in &d.attempts {
        t.add_row(vec![
            a.fence.to_string(),
            crate::i18n::word(&a.state),
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
                    out.write_all(&c.bytes())?;
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
        return print_json(&all);
    }
    // The output's own bytes: a job's output need not be UTF-8.
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    for c in &all {
        out.write_all(&c.bytes())?;
    }
    out.flush()?;
    Ok(())
}

#[derive(Args)]
#[command(
    after_help = "Examples:\n  haneul cancel 42\n  haneul cancel 42 --reason \"wrong data set\""
)]
pub struct CancelArgs {
    /// The job id (an array's id cancels all its tasks), or ARRAY_TASK for one task.
    id: JobRef,
    /// Why, kept in the audit log.
    #[arg(long)]
    reason: Option<String>,
    #[command(flatten)]
    conn: Conn,
}

pub fn cancel(args: CancelArgs) -> anyhow::Result<()> {
    let api = args.conn.open()?;
    let job: Job = api.call(
        "POST",
        &format!("{}/cancel", args.id.path()),
        Some(json!({ "reason": args.reason })),
    )?;
    if api.json {
        print_json(&job)
    } else {
        println!("job {}: {}", job_label(&job), job.state);
        Ok(())
    }
}

#[derive(Args)]
#[command(after_help = "Examples:\n  haneul usage\n  haneul usage --json")]
pub struct UsageArgs {
    #[command(flatten)]
    conn: Conn,
}

/// Your projects' awards: granted, used (at the GPU class weights, less refunds) and left;
/// then your jobs whose GPUs sit idle under the idle policy's notice.
pub fn usage(args: UsageArgs) -> anyhow::Result<()> {
    usage_of(args.conn)
}

pub(crate) fn usage_of(conn: Conn) -> anyhow::Result<()> {
    let api = conn.open()?;
    let awards: Vec<AwardBalance> = api.call("GET", "/v1/balances", None)?;
    if api.json {
        return print_json(&awards);
    }
    if awards.is_empty() {
        println!("no awards: your projects run unmetered, or ask the centre for an award");
    } else {
        print_balances(&awards);
    }
    idle_section(&api)
}

/// The caller's jobs under an idle notice that still sit idle, with when they will be
/// stopped; nothing when there are none.
fn idle_section(api: &Api) -> anyhow::Result<()> {
    let me: User = api.call("GET", "/v1/whoami", None)?;
    let notices: Vec<Notice> = api.call("GET", "/v1/notices", None)?;
    let zone = haneul_server::calendar::Calendar::from_env();
    let mut t = table(&["JOB", "STOPPED AT", "NOTICE"]);
    let mut any = false;
    for n in notices.iter().filter(|n| n.user == Some(me.id)) {
        let (Some(job), Some(stops_at)) = (n.job, n.stops_at) else {
            continue;
        };
        any = true;
        t.add_row(vec![
            job.to_string(),
            zone.date_time(stops_at),
            n.detail.clone(),
        ]);
    }
    if any {
        println!();
        println!("idle GPUs: these jobs will be stopped (reason idle) unless their GPUs get busy");
        println!("{t}");
    }
    Ok(())
}

fn print_balances(awards: &[AwardBalance]) {
    let mut t = table(&[
        "PROJECT",
        "AWARD",
        "GPU MODEL",
        "GRANTED",
        "USED",
        "LEFT",
        "VALID UNTIL",
        "STATE",
    ]);
    for a in awards {
        t.add_row(vec![
            a.project_name.clone(),
            a.award.to_string(),
            a.gpu_model.clone(),
            format!("{:.1}", a.gpu_hours_granted),
            format!("{:.1}", a.gpu_hours_used),
            format!("{:.1}", a.gpu_hours_left),
            haneul_server::calendar::Calendar::from_env().date(a.valid_until),
            crate::i18n::word(&a.state),
        ]);
    }
    println!("{t}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c/config.toml");
        write_config(
            &p,
            "http://127.0.0.1:1",
            Path::new("/t/user.token"),
            Some(3),
            Some(Path::new("/d/tls/ca.pem")),
        )
        .unwrap();
        let c = ClientConfig::load(&p).unwrap();
        assert_eq!(c.server.as_deref(), Some("http://127.0.0.1:1"));
        assert_eq!(c.token_file, Some(PathBuf::from("/t/user.token")));
        assert_eq!(c.project, Some(3));
        assert_eq!(c.ca_file, Some(PathBuf::from("/d/tls/ca.pem")));
        // A misspelt key is an error naming it, not a silent default.
        std::fs::write(&p, "sever = \"http://x\"\n").unwrap();
        let e = ClientConfig::load(&p).unwrap_err().to_string();
        assert!(e.contains("sever"), "{e}");
        assert!(ClientConfig::load(&dir.path().join("none.toml")).is_ok());
    }
}
