//! Slurm's command names: the one binary, run through a link called `sbatch`, `squeue`,
//! `scancel`, `sacct`, `sinfo` or `scontrol`, takes that command's everyday options and prints
//! Slurm's default formats. `srun` and `salloc` start interactive jobs
//! ([`crate::interactive`]). The differences from Slurm are in docs/slurm.md.

use crate::client::{Conn, submit_script};
use crate::jobfile::JobFile;
use crate::output::UsageError;
use crate::slurm;
use anyhow::{Context, bail};
use haneul_api::{Job, JobDetail, JobList, Node, Pool, User};
use serde_json::json;
use std::collections::BTreeMap;
use std::path::Path;

/// The Slurm command `argv0` names, if it names one.
pub fn personality(argv0: &std::ffi::OsStr) -> Option<&'static str> {
    let base = Path::new(argv0).file_name()?.to_str()?;
    [
        "sbatch", "squeue", "scancel", "sacct", "sinfo", "srun", "salloc", "scontrol",
    ]
    .into_iter()
    .find(|c| *c == base)
}

/// Runs Slurm command `name` with `args` (argv without the program).
pub fn run(name: &str, args: &[String]) -> anyhow::Result<()> {
    if args.iter().any(|a| a == "--help" || a == "--usage") {
        println!(
            "{name} here is Haneul's: it takes the everyday options of Slurm's {name}; \
             see docs/slurm.md, or `haneul --help`"
        );
        return Ok(());
    }
    if args.iter().any(|a| a == "--version" || a == "-V") {
        println!("slurm 23.11 (haneul {})", env!("CARGO_PKG_VERSION"));
        return Ok(());
    }
    let conn = Conn::from_env();
    match name {
        "sbatch" => sbatch(&conn, args),
        "squeue" => squeue(&conn, args),
        "scancel" => scancel(&conn, args),
        "sacct" => sacct(&conn, args),
        "sinfo" => sinfo(&conn, args),
        "scontrol" => scontrol(args),
        "srun" | "salloc" => crate::interactive::srun(&conn, name, args),
        _ => bail!("{name}: not a command Haneul answers to"),
    }
}

fn sbatch(conn: &Conn, args: &[String]) -> anyhow::Result<()> {
    let mut warnings = Vec::new();
    let (opts, used) = slurm::options(args, "the command line", &mut warnings)?;
    for w in &warnings {
        eprintln!("sbatch: warning: {w}");
    }
    let parsable = opts.iter().any(|o| o.name == "parsable");
    let wrap = opts.iter().any(|o| o.name == "wrap");
    let (path, text, rest) = match args.get(used) {
        Some(p) => {
            let text = std::fs::read_to_string(p).with_context(|| format!("cannot read {p}"))?;
            (p.clone(), text, args[used + 1..].to_vec())
        }
        None if wrap => ("wrap".to_string(), "#!/bin/sh\n".to_string(), Vec::new()),
        None => {
            return Err(UsageError(
                "sbatch: give a batch script (sbatch job.sh) or --wrap=\"command\"".into(),
            )
            .into());
        }
    };
    if !wrap && !text.starts_with("#!") {
        return Err(UsageError(format!(
            "sbatch: {path} does not look like a batch script: its first line must start with \
             #! and an interpreter (#!/bin/bash), as Slurm's sbatch asks"
        ))
        .into());
    }
    let jobs = submit_script(
        conn,
        Path::new(&path),
        &text,
        opts,
        rest,
        JobFile::default(),
    )?;
    let Some(first) = jobs.first() else {
        bail!("sbatch: no job was submitted")
    };
    if parsable {
        println!("{}", first.id);
    } else {
        println!("Submitted batch job {}", first.id);
    }
    Ok(())
}

/// A value for option `short`/`long` in Slurm's forms (`-u x`, `-ux`, `--user=x`, `--user x`).
struct Args<'a> {
    args: &'a [String],
}

impl<'a> Args<'a> {
    fn value(&self, short: &str, long: &str) -> Option<String> {
        let mut found = None;
        let mut i = 0;
        while i < self.args.len() {
            let a = &self.args[i];
            if a == short || a == long {
                found = self.args.get(i + 1).cloned();
                i += 1;
            } else if let Some(v) = a.strip_prefix(&format!("{long}=")) {
                found = Some(v.to_string());
            } else if !short.is_empty()
                && a.starts_with(short)
                && a.len() > short.len()
                && !a.starts_with("--")
            {
                found = Some(a[short.len()..].to_string());
            }
            i += 1;
        }
        found
    }
    fn flag(&self, short: &str, long: &str) -> bool {
        self.args.iter().any(|a| a == short || a == long)
    }
    /// Words that are not options nor option values.
    fn positional(&self, with_value: &[&str]) -> Vec<String> {
        let mut out = Vec::new();
        let mut i = 0;
        while i < self.args.len() {
            let a = &self.args[i];
            if a.starts_with('-') {
                if with_value.contains(&a.as_str()) {
                    i += 1;
                }
            } else {
                out.push(a.clone());
            }
            i += 1;
        }
        out
    }
}

/// Slurm's compact and long state names.
fn state_codes(state: &str) -> (&'static str, &'static str) {
    match state {
        "queued" => ("PD", "PENDING"),
        "running" => ("R", "RUNNING"),
        "stopping" => ("CG", "COMPLETING"),
        "succeeded" => ("CD", "COMPLETED"),
        "failed" => ("F", "FAILED"),
        "cancelled" => ("CA", "CANCELLED"),
        "timed_out" => ("TO", "TIMEOUT"),
        _ => ("?", "UNKNOWN"),
    }
}

/// Haneul's state for a Slurm state name given to `-t`/`--state`.
fn state_of(slurm: &str) -> Option<&'static str> {
    Some(match slurm.to_ascii_uppercase().as_str() {
        "PD" | "PENDING" => "queued",
        "R" | "RUNNING" => "running",
        "CG" | "COMPLETING" => "stopping",
        "CD" | "COMPLETED" => "succeeded",
        "F" | "FAILED" => "failed",
        "CA" | "CANCELLED" => "cancelled",
        "TO" | "TIMEOUT" => "timed_out",
        _ => return None,
    })
}

fn jobs(conn: &Conn) -> anyhow::Result<(crate::client::Api, Vec<Job>)> {
    let api = conn.open()?;
    let list: JobList = api.call("GET", "/v1/jobs?limit=1000", None)?;
    Ok((api, list.jobs))
}

/// User names by id, as far as the caller may see them (their own at least).
fn user_names(api: &crate::client::Api) -> anyhow::Result<(User, BTreeMap<i64, String>)> {
    let me: User = api.call("GET", "/v1/whoami", None)?;
    let mut names = BTreeMap::new();
    if let Ok(all) = api.call::<Vec<User>>("GET", "/v1/users", None) {
        names.extend(all.into_iter().map(|u| (u.id, u.name)));
    }
    names.insert(me.id, me.name.clone());
    Ok((me, names))
}

/// `H:MM:SS`, or `D-HH:MM:SS` past a day, as Slurm prints durations.
fn duration(ms: i64) -> String {
    let s = (ms / 1000).max(0);
    let (d, h, m, sec) = (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60);
    if d > 0 {
        format!("{d}-{h:02}:{m:02}:{sec:02}")
    } else if h > 0 {
        format!("{h}:{m:02}:{sec:02}")
    } else {
        format!("{m}:{sec:02}")
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// One job's fields as squeue's and sacct's `%` letters and names see them.
struct Row<'a> {
    job: &'a Job,
    user: String,
    nodelist: String,
    nodes: usize,
}

impl Row<'_> {
    fn field(&self, key: &str) -> String {
        let j = self.job;
        let batch = j.batch.clone().unwrap_or_default();
        let (short, long) = state_codes(&j.state);
        match key {
            "i" | "jobid" => crate::client::job_label(j),
            "jobidraw" => j.id.to_string(),
            "j" | "jobname" | "name" => j.name.clone(),
            "u" | "user" => self.user.clone(),
            "t" => short.into(),
            "T" | "state" => long.into(),
            "M" | "elapsed" => match j.state.as_str() {
                "queued" => "0:00".into(),
                "running" | "stopping" => duration(now_ms() - j.updated_at),
                _ => "-".into(),
            },
            "D" | "nnodes" => self.nodes.to_string(),
            "N" | "nodelist" => self.nodelist.clone(),
            // squeue shows the code alone; `haneul show` has the sentence and the hint.
            "R" => match j.state.as_str() {
                "queued" => format!("({})", reason_code(j)),
                _ => self.nodelist.clone(),
            },
            "r" | "reason" => match j.state.as_str() {
                "queued" => reason_code(j),
                _ => "None".into(),
            },
            "P" | "partition" => batch.partition.unwrap_or_else(|| "haneul".into()),
            "a" | "account" => batch.account.unwrap_or_else(|| j.project.to_string()),
            "l" | "timelimit" => j
                .time_limit_s
                .map(|s| duration(s as i64 * 1000))
                .unwrap_or_else(|| "UNLIMITED".into()),
            "b" | "allocgres" | "reqgres" => format!("gpu:{}", j.gpus_per_task),
            "q" | "qos" => j.priority.clone(),
            "Q" | "priority" => j.priority.clone(),
            "exitcode" => format!("{}:0", j.exit_code.unwrap_or(0)),
            "alloccpus" | "C" => "-".into(),
            "o" | "command" => j.command.first().cloned().unwrap_or_default(),
            _ => String::new(),
        }
    }
}

/// squeue's `%[.][size]X` format: `.` right-justifies; a size pads and truncates.
/// A piece of a format: the literal before a field, its width (and whether right-justified),
/// the field's letter (empty for trailing text).
type Part = (String, Option<(usize, bool)>, String);

fn squeue_format(fmt: &str) -> Vec<Part> {
    // (literal before, width and right-justified, field letter)
    let mut out = Vec::new();
    let mut lit = String::new();
    let mut chars = fmt.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            lit.push(c);
            continue;
        }
        if chars.peek() == Some(&'%') {
            chars.next();
            lit.push('%');
            continue;
        }
        let right = chars.peek() == Some(&'.');
        if right {
            chars.next();
        }
        let mut digits = String::new();
        while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
            digits.push(*d);
            chars.next();
        }
        let Some(key) = chars.next() else { break };
        let width = digits.parse::<usize>().ok().map(|w| (w, right));
        out.push((std::mem::take(&mut lit), width, key.to_string()));
    }
    if !lit.is_empty() {
        out.push((lit, None, String::new()));
    }
    out
}

/// A queued job's Slurm reason code; `None`, as squeue says, before a pass has looked at it.
fn reason_code(j: &haneul_api::Job) -> String {
    j.pending_reason
        .as_ref()
        .map_or_else(|| "None".into(), |r| r.code.clone())
}

fn fit(v: &str, width: Option<(usize, bool)>) -> String {
    match width {
        None => v.to_string(),
        Some((w, right)) => {
            let v: String = v.chars().take(w).collect();
            if right {
                format!("{v:>w$}")
            } else {
                format!("{v:<w$}")
            }
        }
    }
}

const SQUEUE_HEADERS: &[(&str, &str)] = &[
    ("i", "JOBID"),
    ("j", "NAME"),
    ("u", "USER"),
    ("t", "ST"),
    ("T", "STATE"),
    ("M", "TIME"),
    ("D", "NODES"),
    ("N", "NODELIST"),
    ("R", "NODELIST(REASON)"),
    ("r", "REASON"),
    ("P", "PARTITION"),
    ("a", "ACCOUNT"),
    ("l", "TIME_LIMIT"),
    ("b", "TRES_PER_NODE"),
    ("q", "QOS"),
    ("Q", "PRIORITY"),
    ("C", "CPUS"),
    ("o", "COMMAND"),
];

/// Node names and counts of jobs that hold nodes (one call per such job).
fn placements(
    api: &crate::client::Api,
    jobs: &[&Job],
) -> anyhow::Result<BTreeMap<i64, (String, usize)>> {
    let mut out = BTreeMap::new();
    let holding: Vec<&&Job> = jobs
        .iter()
        .filter(|j| j.state == "running" || j.state == "stopping")
        .collect();
    if holding.is_empty() {
        return Ok(out);
    }
    let names: BTreeMap<i64, String> = api
        .call::<Vec<Node>>("GET", "/v1/nodes", None)
        .map(|ns| ns.into_iter().map(|n| (n.id, n.name)).collect())
        .unwrap_or_default();
    for j in holding {
        let d: JobDetail = api.call("GET", &format!("/v1/jobs/{}", j.id), None)?;
        let Some(a) = d.attempts.iter().max_by_key(|a| a.fence) else {
            continue;
        };
        let mut nodes: Vec<String> = a
            .tasks
            .iter()
            .map(|t| {
                names
                    .get(&t.node)
                    .cloned()
                    .unwrap_or_else(|| format!("node{}", t.node))
            })
            .collect();
        nodes.sort();
        nodes.dedup();
        out.insert(j.id, (haneul_agent::slurm::hostlist(&nodes), nodes.len()));
    }
    Ok(out)
}

fn squeue(conn: &Conn, args: &[String]) -> anyhow::Result<()> {
    let a = Args { args };
    let (api, all) = jobs(conn)?;
    let (me, names) = user_names(&api)?;
    let states: Vec<&str> = match a.value("-t", "--states").or(a.value("", "--state")) {
        Some(s) if s.eq_ignore_ascii_case("all") => vec![],
        Some(s) => s
            .split(',')
            .map(|x| {
                state_of(x).ok_or_else(|| UsageError(format!("squeue: -t: unknown state `{x}`")))
            })
            .collect::<Result<_, _>>()?,
        None => vec!["queued", "running", "stopping"],
    };
    let ids: Option<Vec<i64>> = a.value("-j", "--jobs").map(|v| {
        v.split(',')
            .filter_map(|x| x.split('_').next()?.parse().ok())
            .collect()
    });
    let user = if a.flag("", "--me") {
        Some(me.name.clone())
    } else {
        a.value("-u", "--user")
    };
    let shown: Vec<&Job> = all
        .iter()
        .filter(|j| !crate::client::hidden_in_queue(j))
        .filter(|j| states.is_empty() || states.contains(&j.state.as_str()))
        .filter(|j| {
            ids.as_ref().is_none_or(|ids| {
                ids.contains(&j.id) || j.array_job.is_some_and(|a| ids.contains(&a))
            })
        })
        .filter(|j| {
            user.as_ref().is_none_or(|u| {
                u.split(',')
                    .any(|u| names.get(&j.user) == Some(&u.to_string()))
            })
        })
        .collect();
    let placed = placements(&api, &shown)?;
    let fmt = a
        .value("-o", "--format")
        .unwrap_or_else(|| "%.18i %.9P %.8j %.8u %.2t %.10M %.6D %R".into());
    let parts = squeue_format(&fmt);
    if !a.flag("-h", "--noheader") {
        let mut line = String::new();
        for (lit, w, key) in &parts {
            line.push_str(lit);
            if key.is_empty() {
                continue;
            }
            let h = SQUEUE_HEADERS
                .iter()
                .find(|(k, _)| k == key)
                .map_or("", |(_, h)| h);
            line.push_str(&fit(h, *w));
        }
        println!("{}", line.trim_end());
    }
    // Oldest first, as squeue lists.
    let mut shown = shown;
    shown.sort_by_key(|j| j.id);
    for j in shown {
        let (nodelist, nodes) = placed
            .get(&j.id)
            .cloned()
            .unwrap_or((String::new(), j.replicas as usize));
        let row = Row {
            job: j,
            user: names
                .get(&j.user)
                .cloned()
                .unwrap_or_else(|| j.user.to_string()),
            nodelist,
            nodes,
        };
        let mut line = String::new();
        for (lit, w, key) in &parts {
            line.push_str(lit);
            if !key.is_empty() {
                line.push_str(&fit(&row.field(key), *w));
            }
        }
        println!("{}", line.trim_end());
    }
    Ok(())
}

fn scancel(conn: &Conn, args: &[String]) -> anyhow::Result<()> {
    let a = Args { args };
    let (api, all) = jobs(conn)?;
    // (job, task): an array's id cancels every task of it, `ID_TASK` one task.
    let mut targets: Vec<(i64, Option<i64>)> = Vec::new();
    for id in a.positional(&[
        "-u", "--user", "-n", "--name", "-t", "--state", "-s", "--signal",
    ]) {
        let r: crate::client::JobRef = id
            .parse()
            .map_err(|e: String| UsageError(format!("scancel: {e}")))?;
        targets.push((r.id, r.task));
    }
    if let Some(u) = a.value("-u", "--user") {
        let (_, names) = user_names(&api)?;
        targets.extend(
            all.iter()
                .filter(|j| ["queued", "running"].contains(&j.state.as_str()))
                .filter(|j| names.get(&j.user) == Some(&u))
                .map(|j| (j.id, None)),
        );
    }
    if targets.is_empty() && a.value("-u", "--user").is_none() {
        return Err(UsageError("scancel: give job ids (scancel 42 43_1) or -u USER".into()).into());
    }
    targets.sort_unstable();
    targets.dedup();
    for (id, task) in targets {
        let done = task.is_none()
            && all
                .iter()
                .find(|j| j.id == id)
                .is_some_and(|j| !["queued", "running", "stopping"].contains(&j.state.as_str()));
        if done {
            eprintln!(
                "scancel: error: Kill job error on job id {id}: Job/step already completing or completed"
            );
            continue;
        }
        let path = match task {
            Some(t) => format!("/v1/jobs/{id}/tasks/{t}/cancel"),
            None => format!("/v1/jobs/{id}/cancel"),
        };
        let _: Job = api.call("POST", &path, Some(json!({})))?;
    }
    Ok(())
}

/// Milliseconds since the epoch of sacct's `-S` (`YYYY-MM-DD[THH:MM[:SS]]`, `now`), in the
/// centre's time zone.
fn sacct_time(s: &str) -> anyhow::Result<i64> {
    if s.eq_ignore_ascii_case("now") {
        return Ok(now_ms());
    }
    let cal = haneul_server::calendar::Calendar::from_env();
    let bad = || UsageError(format!("sacct: -S `{s}` is not YYYY-MM-DD[THH:MM[:SS]]"));
    let (date, time) = s.split_once('T').unwrap_or((s, ""));
    let midnight = cal.parse_date(date).ok_or_else(bad)?;
    let mut secs = 0i64;
    if !time.is_empty() {
        let parts: Vec<&str> = time.split(':').collect();
        if !(2..=3).contains(&parts.len()) {
            return Err(bad().into());
        }
        for (p, scale) in parts.iter().zip([3600, 60, 1]) {
            let v: i64 = p.parse().map_err(|_| bad())?;
            secs += v * scale;
        }
    }
    // Local midnight plus the time of day: exact where the zone has no daylight saving.
    Ok(midnight + secs * 1000)
}

fn sacct(conn: &Conn, args: &[String]) -> anyhow::Result<()> {
    let a = Args { args };
    let (api, all) = jobs(conn)?;
    let (_, names) = user_names(&api)?;
    let ids: Option<Vec<i64>> = a.value("-j", "--jobs").map(|v| {
        v.split(',')
            .filter_map(|x| x.split('_').next()?.parse().ok())
            .collect()
    });
    // Without -S or -j, sacct shows jobs since midnight today.
    let since = match a.value("-S", "--starttime") {
        Some(s) => Some(sacct_time(&s)?),
        None if ids.is_none() => haneul_server::calendar::Calendar::from_env()
            .floor(haneul_server::calendar::Bucket::Day, now_ms()),
        None => None,
    };
    let fields: Vec<(String, Option<usize>)> = match a.value("-o", "--format") {
        Some(f) => f
            .split(',')
            .map(|x| match x.split_once('%') {
                Some((n, w)) => (n.to_ascii_lowercase(), w.parse().ok()),
                None => (x.to_ascii_lowercase(), None),
            })
            .collect(),
        None => [
            "jobid",
            "jobname",
            "partition",
            "account",
            "alloccpus",
            "state",
            "exitcode",
        ]
        .iter()
        .map(|n| (n.to_string(), None))
        .collect(),
    };
    let header = |n: &str| -> String {
        match n {
            "jobid" => "JobID",
            "jobidraw" => "JobIDRaw",
            "jobname" => "JobName",
            "partition" => "Partition",
            "account" => "Account",
            "alloccpus" => "AllocCPUS",
            "state" => "State",
            "exitcode" => "ExitCode",
            "user" => "User",
            "elapsed" => "Elapsed",
            "nnodes" => "NNodes",
            "nodelist" => "NodeList",
            "timelimit" => "Timelimit",
            "allocgres" => "AllocGRES",
            "reqgres" => "ReqGRES",
            "qos" => "QOS",
            "priority" => "Priority",
            other => other,
        }
        .to_string()
    };
    let width = |n: &str, w: Option<usize>| w.unwrap_or(if n == "jobid" { 12 } else { 10 });
    if !a.flag("-n", "--noheader") {
        let hs: Vec<String> = fields
            .iter()
            .map(|(n, w)| format!("{:>w$}", header(n), w = width(n, *w)))
            .collect();
        println!("{}", hs.join(" "));
        let ds: Vec<String> = fields
            .iter()
            .map(|(n, w)| "-".repeat(width(n, *w)))
            .collect();
        println!("{}", ds.join(" "));
    }
    let mut shown: Vec<&Job> = all
        .iter()
        .filter(|j| ids.as_ref().is_none_or(|ids| ids.contains(&j.id)))
        .filter(|j| {
            since.is_none_or(|s| {
                j.submitted_at >= s || ["queued", "running"].contains(&j.state.as_str())
            })
        })
        .collect();
    shown.sort_by_key(|j| j.id);
    let placed = if fields.iter().any(|(n, _)| n == "nodelist" || n == "nnodes") {
        placements(&api, &shown)?
    } else {
        BTreeMap::new()
    };
    for j in shown {
        let (nodelist, nodes) = placed
            .get(&j.id)
            .cloned()
            .unwrap_or((String::new(), j.replicas as usize));
        let row = Row {
            job: j,
            user: names
                .get(&j.user)
                .cloned()
                .unwrap_or_else(|| j.user.to_string()),
            nodelist,
            nodes,
        };
        let cols: Vec<String> = fields
            .iter()
            .map(|(n, w)| {
                let w = width(n, *w);
                let v: String = row.field(n).chars().take(w).collect();
                format!("{v:>w$}")
            })
            .collect();
        println!("{}", cols.join(" "));
    }
    Ok(())
}

fn sinfo(conn: &Conn, args: &[String]) -> anyhow::Result<()> {
    let a = Args { args };
    let api = conn.open()?;
    let pools: Vec<Pool> = api.call("GET", "/v1/pools", None)?;
    let nodes: Vec<Node> = api.call("GET", "/v1/nodes", None)?;
    if !a.flag("-h", "--noheader") {
        println!("PARTITION AVAIL  TIMELIMIT  NODES  STATE NODELIST");
    }
    let mut pools = pools;
    pools.sort_by_key(|p| p.id);
    for p in &pools {
        // Slurm's node states: a node running tasks is `mix`/`alloc` there; Haneul lists
        // `up` nodes as `idle` unless it knows otherwise.
        let mut by_state: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for n in nodes.iter().filter(|n| n.pool == p.id) {
            let st = match n.state.as_str() {
                "up" => "idle",
                "draining" => "drain",
                _ => "down",
            };
            by_state.entry(st).or_default().push(&n.name);
        }
        if by_state.is_empty() {
            println!(
                "{:<9} {:>5} {:>10} {:>6} {:>6}",
                p.name, "up", "infinite", 0, "n/a"
            );
        }
        for (st, names) in by_state {
            println!(
                "{:<9} {:>5} {:>10} {:>6} {:>6} {}",
                p.name,
                "up",
                "infinite",
                names.len(),
                st,
                haneul_agent::slurm::hostlist(&names)
            );
        }
    }
    Ok(())
}

/// `scontrol show hostnames [LIST]` (LIST defaults to SLURM_JOB_NODELIST), which multi-node
/// scripts use to find their first node; nothing else of scontrol.
fn scontrol(args: &[String]) -> anyhow::Result<()> {
    match args {
        [show, what, rest @ ..]
            if show == "show" && (what == "hostnames" || what == "hostname") =>
        {
            let list = match rest.first() {
                Some(l) => l.clone(),
                None => std::env::var("SLURM_JOB_NODELIST").map_err(|_| {
                    UsageError("scontrol: give a host list or set SLURM_JOB_NODELIST".into())
                })?,
            };
            let hosts = haneul_agent::slurm::expand_hostlist(&list)
                .ok_or_else(|| UsageError(format!("scontrol: `{list}` is not a host list")))?;
            for h in hosts {
                println!("{h}");
            }
            Ok(())
        }
        _ => bail!("scontrol: only `scontrol show hostnames` is offered on Haneul (docs/slurm.md)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_from_argv0() {
        assert_eq!(personality("/usr/bin/sbatch".as_ref()), Some("sbatch"));
        assert_eq!(personality("squeue".as_ref()), Some("squeue"));
        assert_eq!(personality("/usr/bin/haneul".as_ref()), None);
        assert_eq!(personality("sbatch2".as_ref()), None);
    }

    #[test]
    fn squeue_formats() {
        let p = squeue_format("%.18i %9P|%j %%");
        assert_eq!(p[0], (String::new(), Some((18, true)), "i".to_string()));
        assert_eq!(p[1], (" ".to_string(), Some((9, false)), "P".to_string()));
        assert_eq!(p[2], ("|".to_string(), None, "j".to_string()));
        assert_eq!(p[3], (" %".to_string(), None, String::new()));
    }

    #[test]
    fn durations_and_fitting() {
        assert_eq!(duration(59_000), "0:59");
        assert_eq!(duration(3_723_000), "1:02:03");
        assert_eq!(duration(90_061_000), "1-01:01:01");
        assert_eq!(fit("abcdef", Some((3, true))), "abc");
        assert_eq!(fit("ab", Some((4, true))), "  ab");
        assert_eq!(fit("ab", Some((4, false))), "ab  ");
        assert_eq!(state_of("pd"), Some("queued"));
        assert_eq!(state_codes("timed_out"), ("TO", "TIMEOUT"));
    }
}
