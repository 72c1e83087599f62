//! Slurm batch scripts as they are: the `#SBATCH` (and `#HANEUL`, which win) directives at the
//! top of a script and `sbatch`'s command-line options, read as sbatch reads them and mapped
//! onto Haneul's job request. Pure: text in, a request (or an error naming the directive) out;
//! `haneul submit script.sh` and the `sbatch` command name send it.

use crate::jobfile::JobFile;
use crate::output::UsageError;
use haneul_api::JobBatch;
use serde_json::{Map, Value, json};

/// One option as written: its long name (without `--`), its value, and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opt {
    pub name: &'static str,
    pub value: Option<String>,
    /// `#SBATCH` at line N, `#HANEUL` at line N, or the command line.
    pub origin: String,
}

/// Whether an option takes a value.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Arity {
    Value,
    Flag,
}

/// The options Haneul reads: (long name, short letter, arity). Anything else is a warning.
const OPTIONS: &[(&str, Option<char>, Arity)] = &[
    ("job-name", Some('J'), Arity::Value),
    ("nodes", Some('N'), Arity::Value),
    ("ntasks", Some('n'), Arity::Value),
    ("ntasks-per-node", None, Arity::Value),
    ("gres", None, Arity::Value),
    ("gpus", Some('G'), Arity::Value),
    ("gpus-per-node", None, Arity::Value),
    ("gpus-per-task", None, Arity::Value),
    ("cpus-per-task", Some('c'), Arity::Value),
    ("mem", None, Arity::Value),
    ("mem-per-gpu", None, Arity::Value),
    ("mem-per-cpu", None, Arity::Value),
    ("time", Some('t'), Arity::Value),
    ("partition", Some('p'), Arity::Value),
    ("account", Some('A'), Arity::Value),
    ("qos", Some('q'), Arity::Value),
    ("array", Some('a'), Arity::Value),
    ("dependency", Some('d'), Arity::Value),
    ("output", Some('o'), Arity::Value),
    ("error", Some('e'), Arity::Value),
    ("chdir", Some('D'), Arity::Value),
    ("export", None, Arity::Value),
    ("exclusive", None, Arity::Flag),
    ("constraint", Some('C'), Arity::Value),
    ("mail-type", None, Arity::Value),
    ("mail-user", None, Arity::Value),
    ("signal", None, Arity::Value),
    ("requeue", None, Arity::Flag),
    ("no-requeue", None, Arity::Flag),
    ("wrap", None, Arity::Value),
    ("parsable", None, Arity::Flag),
    // Read so that their values are not taken for the script, then warned about.
    ("nodelist", Some('w'), Arity::Value),
    ("exclude", Some('x'), Arity::Value),
    ("reservation", None, Arity::Value),
    ("open-mode", None, Arity::Value),
    ("hint", None, Arity::Value),
    ("distribution", Some('m'), Arity::Value),
    ("comment", None, Arity::Value),
    ("begin", Some('b'), Arity::Value),
    ("licenses", Some('L'), Arity::Value),
    ("cpus-per-gpu", None, Arity::Value),
    ("time-min", None, Arity::Value),
    ("kill-on-invalid-dep", None, Arity::Value),
    ("verbose", Some('v'), Arity::Flag),
    ("quiet", Some('Q'), Arity::Flag),
];

/// Options whose meaning Haneul cannot give but whose absence changes no result: a warning.
const IGNORED: &[(&str, &str)] = &[
    ("nodelist", "Haneul chooses the nodes"),
    (
        "exclude",
        "Haneul chooses the nodes; `haneul node drain` takes a node out",
    ),
    ("reservation", "Haneul has no reservations"),
    ("open-mode", "output files are always truncated"),
    ("hint", "not used"),
    ("distribution", "tasks are placed by the scheduler"),
    ("comment", "not kept"),
    ("licenses", "Haneul has no licence counting"),
    ("cpus-per-gpu", "ask --cpus-per-task instead"),
    ("time-min", "the job runs to its --time"),
    (
        "kill-on-invalid-dep",
        "a job whose afterok parent fails always fails",
    ),
    ("verbose", "not used"),
    ("quiet", "not used"),
    (
        "exclusive",
        "each task gets its GPUs, CPUs and memory, not the whole node",
    ),
    (
        "signal",
        "not sent; a stopped or timed-out job gets SIGTERM, then SIGKILL after its grace",
    ),
    ("mail-type", "kept with the job; Haneul sends no mail"),
    ("mail-user", "kept with the job; Haneul sends no mail"),
];

fn lookup_long(name: &str) -> Option<(&'static str, Arity)> {
    OPTIONS
        .iter()
        .find(|(l, _, _)| *l == name)
        .map(|(l, _, a)| (*l, *a))
}

fn lookup_short(c: char) -> Option<(&'static str, Arity)> {
    OPTIONS
        .iter()
        .find(|(_, s, _)| *s == Some(c))
        .map(|(l, _, a)| (*l, *a))
}

/// Words of a directive line, with sbatch's quoting: single and double quotes group, and a
/// word starting with `#` begins a comment.
fn words(line: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    for c in line.chars() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => cur.push(c),
            None if c == '"' || c == '\'' => {
                quote = Some(c);
                in_word = true;
            }
            None if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            None if c == '#' && !in_word => break,
            None => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if quote.is_some() {
        return Err("a quote is not closed".into());
    }
    if in_word {
        out.push(cur);
    }
    Ok(out)
}

/// Options from a list of words (a directive line's, or the command line's). Returns the
/// options and the first word that is not one (sbatch's script and its arguments begin there).
/// Unknown options are warnings, as they are harmless to skip only if they take no value: an
/// unknown `--opt=value` is skipped whole, an unknown `--opt` alone too.
pub fn options(
    words: &[String],
    origin: &str,
    warnings: &mut Vec<String>,
) -> Result<(Vec<Opt>, usize), UsageError> {
    let mut out = Vec::new();
    let mut i = 0;
    let missing = |o: &str| UsageError(format!("{origin}: {o} needs a value"));
    while i < words.len() {
        let w = &words[i];
        if w == "--" {
            return Ok((out, i + 1));
        }
        if let Some(long) = w.strip_prefix("--") {
            let (name, inline) = match long.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (long, None),
            };
            let Some((name, arity)) = lookup_long(name) else {
                warnings.push(format!(
                    "{origin}: --{name} is ignored: Haneul does not know it"
                ));
                i += 1;
                continue;
            };
            let value = match (arity, inline) {
                (Arity::Flag, Some(_)) if name == "exclusive" => None,
                (Arity::Flag, Some(_)) => {
                    return Err(UsageError(format!("{origin}: --{name} takes no value")));
                }
                (Arity::Flag, None) => None,
                (Arity::Value, Some(v)) => Some(v),
                (Arity::Value, None) => {
                    i += 1;
                    Some(
                        words
                            .get(i)
                            .ok_or_else(|| missing(&format!("--{name}")))?
                            .clone(),
                    )
                }
            };
            out.push(Opt {
                name,
                value,
                origin: origin.to_string(),
            });
            i += 1;
            continue;
        }
        let Some(short) = w.strip_prefix('-').filter(|s| !s.is_empty()) else {
            return Ok((out, i));
        };
        let mut chars = short.chars();
        let c = chars.next().unwrap_or_default();
        let rest: String = chars.collect();
        let Some((name, arity)) = lookup_short(c) else {
            warnings.push(format!(
                "{origin}: -{c} is ignored: Haneul does not know it"
            ));
            i += 1;
            continue;
        };
        let value = match arity {
            Arity::Flag => None,
            Arity::Value if !rest.is_empty() => {
                Some(rest.strip_prefix('=').unwrap_or(&rest).into())
            }
            Arity::Value => {
                i += 1;
                Some(
                    words
                        .get(i)
                        .ok_or_else(|| missing(&format!("-{c}")))?
                        .clone(),
                )
            }
        };
        out.push(Opt {
            name,
            value,
            origin: origin.to_string(),
        });
        i += 1;
    }
    Ok((out, i))
}

/// A batch script read: its directives (`#SBATCH` first, then `#HANEUL`, so that the latter
/// win when applied in order) and the warnings met.
#[derive(Debug, Clone)]
pub struct Script {
    pub opts: Vec<Opt>,
    pub warnings: Vec<String>,
}

/// Whether `text` is a batch script rather than a TOML job file: a shebang first, or a
/// directive line.
pub fn is_batch_script(text: &str) -> bool {
    text.starts_with("#!")
        || text
            .lines()
            .any(|l| l.starts_with("#SBATCH") || l.starts_with("#HANEUL"))
}

/// Reads the directives of a batch script, as sbatch does: up to the first line that is
/// neither blank nor a comment; later `#SBATCH` lines are ignored (with a warning).
pub fn parse_script(text: &str) -> Result<Script, UsageError> {
    if text.contains('\r') {
        return Err(UsageError(
            "the script has DOS line breaks (\\r\\n), which sbatch refuses too; convert it \
             with `dos2unix`"
                .into(),
        ));
    }
    let mut sbatch = Vec::new();
    let mut haneul = Vec::new();
    let mut warnings = Vec::new();
    let mut ended = false;
    for (n, line) in text.lines().enumerate() {
        let n = n + 1;
        let (tag, rest) = if let Some(r) = line.strip_prefix("#SBATCH") {
            ("#SBATCH", r)
        } else if let Some(r) = line.strip_prefix("#HANEUL") {
            ("#HANEUL", r)
        } else {
            let t = line.trim();
            if !t.is_empty() && !t.starts_with('#') {
                ended = true;
            }
            continue;
        };
        // `#SBATCHX` is a comment; the tag must stand alone.
        if !rest.is_empty() && !rest.starts_with(char::is_whitespace) {
            continue;
        }
        let origin = format!("{tag} at line {n}");
        if ended {
            warnings.push(format!(
                "{origin} is ignored: it follows the first command, where sbatch stops reading \
                 directives"
            ));
            continue;
        }
        let w = words(rest).map_err(|e| UsageError(format!("{origin}: {e}")))?;
        let (opts, used) = options(&w, &origin, &mut warnings)?;
        if used < w.len() {
            return Err(UsageError(format!(
                "{origin}: `{}` is not an option; write --name=value or -X value",
                w[used]
            )));
        }
        if tag == "#SBATCH" {
            sbatch.extend(opts);
        } else {
            haneul.extend(opts);
        }
    }
    sbatch.extend(haneul);
    Ok(Script {
        opts: sbatch,
        warnings,
    })
}

/// Seconds in a Slurm time: `M`, `M:S`, `H:M:S`, `D-H`, `D-H:M`, `D-H:M:S`; `None` for
/// `UNLIMITED` (or `INFINITE`).
pub fn parse_slurm_time(s: &str) -> Result<Option<u64>, String> {
    let s = s.trim();
    let bad = || {
        format!("`{s}` is not a Slurm time; use M, M:S, H:M:S, D-H, D-H:M, D-H:M:S or UNLIMITED")
    };
    if s.eq_ignore_ascii_case("unlimited") || s.eq_ignore_ascii_case("infinite") {
        return Ok(None);
    }
    let num = |p: &str| -> Result<u64, String> {
        if p.is_empty() || p.len() > 9 || !p.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        p.parse::<u64>().map_err(|_| bad())
    };
    let secs = if let Some((d, rest)) = s.split_once('-') {
        let days = num(d)?;
        let parts: Vec<&str> = rest.split(':').collect();
        let (h, m, sec) = match parts.as_slice() {
            [h] => (num(h)?, 0, 0),
            [h, m] => (num(h)?, num(m)?, 0),
            [h, m, sec] => (num(h)?, num(m)?, num(sec)?),
            _ => return Err(bad()),
        };
        days * 86_400 + h * 3600 + m * 60 + sec
    } else {
        let parts: Vec<&str> = s.split(':').collect();
        match parts.as_slice() {
            [m] => num(m)? * 60,
            [m, sec] => num(m)? * 60 + num(sec)?,
            [h, m, sec] => num(h)? * 3600 + num(m)? * 60 + num(sec)?,
            _ => return Err(bad()),
        }
    };
    // Slurm reads a zero limit as none; Haneul asks for a positive one.
    if secs == 0 {
        return Err(format!(
            "{} (a time of zero is no limit: leave it out)",
            bad()
        ));
    }
    Ok(Some(secs))
}

/// MiB in a Slurm memory size: a number with an optional K, M, G or T suffix (default M).
pub fn parse_mem(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let bad = || format!("`{s}` is not a memory size; use a number of MiB or 500M, 64G, 1T");
    let (num, mult_kib) = match t.chars().last().map(|c| c.to_ascii_uppercase()) {
        Some('K') => (&t[..t.len() - 1], 1u64),
        Some('M') => (&t[..t.len() - 1], 1024),
        Some('G') => (&t[..t.len() - 1], 1024 * 1024),
        Some('T') => (&t[..t.len() - 1], 1024 * 1024 * 1024),
        _ => (t, 1024),
    };
    let n: u64 = num.parse().map_err(|_| bad())?;
    n.checked_mul(mult_kib)
        .map(|kib| kib.div_ceil(1024))
        .filter(|m| *m > 0)
        .ok_or_else(bad)
}

/// `[type:]N` of `--gpus`, `--gpus-per-node`, `--gpus-per-task`.
fn typed_count(v: &str) -> Option<(Option<String>, u32)> {
    match v.rsplit_once(':') {
        Some((ty, n)) => Some((Some(ty.to_string()), n.parse().ok()?)),
        None => Some((None, v.parse().ok()?)),
    }
}

/// `--gres=gpu[:type]:N` (and `gpu` alone for one); other resources are warned about.
fn gres(
    v: &str,
    origin: &str,
    warnings: &mut Vec<String>,
) -> Result<Option<(Option<String>, u32)>, UsageError> {
    let mut found = None;
    for item in v.split(',') {
        let parts: Vec<&str> = item.split(':').collect();
        if parts[0] != "gpu" {
            warnings.push(format!(
                "{origin}: --gres `{item}` is ignored: Haneul schedules GPUs only"
            ));
            continue;
        }
        let bad = || {
            UsageError(format!(
                "{origin}: --gres `{item}` is not gpu[:type]:count (gpu:4 or gpu:H200:8)"
            ))
        };
        found = Some(match parts.as_slice() {
            ["gpu"] => (None, 1),
            ["gpu", n] if n.bytes().all(|b| b.is_ascii_digit()) => {
                (None, n.parse().map_err(|_| bad())?)
            }
            ["gpu", ty] => (Some(ty.to_string()), 1),
            ["gpu", ty, n] => (Some(ty.to_string()), n.parse().map_err(|_| bad())?),
            _ => return Err(bad()),
        });
    }
    Ok(found)
}

/// What a batch script and sbatch options ask for, in Haneul's terms.
#[derive(Debug, Clone, Default)]
pub struct Request {
    /// The gang's shape and the rest `haneul submit` already knows.
    pub file: JobFile,
    /// Body fields the job file has no key for (`memory_mib_per_task`).
    pub extra: Map<String, Value>,
    pub batch: JobBatch,
    /// `--account` when it is a name rather than a project id (the caller looks it up).
    pub account_name: Option<String>,
    /// `--wrap`: the command instead of a script.
    pub wrap: Option<String>,
    pub parsable: bool,
    pub warnings: Vec<String>,
}

/// Maps options (applied in order, so a later one wins) onto a request.
pub fn request(opts: &[Opt]) -> Result<Request, UsageError> {
    let mut last: Vec<(&'static str, &Opt)> = Vec::new();
    for o in opts {
        last.retain(|(n, _)| *n != o.name);
        last.push((o.name, o));
    }
    let get = |n: &str| last.iter().find(|(k, _)| *k == n).map(|(_, o)| *o);
    let val = |n: &str| get(n).and_then(|o| o.value.clone());
    let err = |o: &Opt, msg: String| UsageError(format!("{}: --{} {msg}", o.origin, o.name));
    let count = |n: &str| -> Result<Option<u32>, UsageError> {
        let Some(o) = get(n) else { return Ok(None) };
        let v = o.value.clone().unwrap_or_default();
        v.parse::<u32>()
            .ok()
            .filter(|c| *c > 0)
            .map(Some)
            .ok_or_else(|| err(o, format!("`{v}` is not a positive count")))
    };
    let mut r = Request::default();
    for (name, o) in &last {
        if let Some((_, why)) = IGNORED.iter().find(|(n, _)| n == name) {
            r.warnings
                .push(format!("{}: --{name} is not honoured: {why}", o.origin));
        }
    }
    r.file.name = val("job-name");
    // `-N min-max`: Haneul runs a gang of one size, the smallest asked for.
    let nodes = match get("nodes") {
        None => None,
        Some(o) => {
            let v = o.value.clone().unwrap_or_default();
            let min = v.split_once('-').map_or(v.as_str(), |(a, _)| a);
            if v.contains('-') {
                r.warnings.push(format!(
                    "{}: --nodes {v}: Haneul runs the job on {min} nodes, the least asked for",
                    o.origin
                ));
            }
            Some(
                min.parse::<u32>()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| err(o, format!("`{v}` is not a node count")))?,
            )
        }
    };
    let ntasks = count("ntasks")?;
    let per_node_tasks = count("ntasks-per-node")?;
    let n = nodes.unwrap_or(1);
    // Tasks on each node: Haneul runs the script once per node, with the GPUs and CPUs of all
    // the node's tasks.
    let tasks_per_node = match (ntasks, per_node_tasks) {
        (_, Some(k)) => k,
        (Some(t), None) => t.div_ceil(n),
        (None, None) => 1,
    };
    if let Some(t) = ntasks
        && t != n
    {
        r.batch.ntasks = Some(t);
    }
    let mut models: Vec<String> = Vec::new();
    let mut per_node: Option<u32> = None;
    let mut total: Option<u32> = None;
    if let Some(o) = get("gres")
        && let Some((ty, c)) = gres(
            &o.value.clone().unwrap_or_default(),
            &o.origin,
            &mut r.warnings,
        )?
    {
        models.extend(ty);
        per_node = Some(c);
    }
    for (name, scale) in [("gpus-per-node", 0), ("gpus-per-task", 1), ("gpus", 2)] {
        let Some(o) = get(name) else { continue };
        let v = o.value.clone().unwrap_or_default();
        let (ty, c) = typed_count(&v)
            .filter(|(_, c)| *c > 0)
            .ok_or_else(|| err(o, format!("`{v}` is not [type:]count (4 or H200:4)")))?;
        models.extend(ty);
        match scale {
            0 => per_node = Some(c),
            1 => per_node = Some(c * tasks_per_node),
            _ => total = Some(c),
        }
    }
    if let Some(o) = get("constraint") {
        let v = o.value.clone().unwrap_or_default();
        if v.contains('&') || v.contains('[') || v.contains('*') {
            return Err(err(
                o,
                format!("`{v}`: Haneul reads a constraint as GPU models joined by `|` or `,`"),
            ));
        }
        models.extend(
            v.split(['|', ','])
                .map(str::trim)
                .filter(|m| !m.is_empty())
                .map(String::from),
        );
    }
    models.dedup();
    if !models.is_empty() {
        r.file.gpu_model = Some(models.join(","));
    }
    r.file.nodes = nodes;
    r.file.gpus_per_node = per_node;
    r.file.gpus = total;
    if let Some(c) = count("cpus-per-task")? {
        r.file.cpus_per_task = Some((c * tasks_per_node) as f64);
    }
    let gpus_here = per_node.or(total.map(|t| t / n.max(1))).unwrap_or(0);
    if let Some(o) = get("mem") {
        let v = o.value.clone().unwrap_or_default();
        // `--mem=0` is all of the node's memory in Slurm: here, the task's share by its GPUs.
        if v.trim() != "0" {
            let m = parse_mem(&v).map_err(|e| err(o, e))?;
            r.extra.insert("memory_mib_per_task".into(), json!(m));
        }
    } else if let Some(o) = get("mem-per-gpu") {
        let m = parse_mem(&o.value.clone().unwrap_or_default()).map_err(|e| err(o, e))?;
        if gpus_here == 0 {
            return Err(err(
                o,
                "needs GPUs: add --gres=gpu:N or --gpus-per-node".into(),
            ));
        }
        r.extra
            .insert("memory_mib_per_task".into(), json!(m * gpus_here as u64));
    } else if let Some(o) = get("mem-per-cpu") {
        let m = parse_mem(&o.value.clone().unwrap_or_default()).map_err(|e| err(o, e))?;
        let cpus = r.file.cpus_per_task.unwrap_or(tasks_per_node as f64) as u64;
        r.extra
            .insert("memory_mib_per_task".into(), json!(m * cpus.max(1)));
    }
    if let Some(o) = get("time") {
        match parse_slurm_time(&o.value.clone().unwrap_or_default()).map_err(|e| err(o, e))? {
            Some(s) => r.file.time = Some(format!("{s}s")),
            None => r.file.time = None,
        }
    }
    if let Some(o) = get("partition") {
        r.batch.partition = o.value.clone();
        r.warnings.push(format!(
            "{}: --partition {} is kept as SLURM_JOB_PARTITION; Haneul places jobs by project and \
             GPU model (--gres=gpu:MODEL:N), not by partition",
            o.origin,
            o.value.clone().unwrap_or_default()
        ));
    }
    if let Some(a) = val("account") {
        match a.parse::<i64>() {
            Ok(id) if id > 0 => r.file.project = Some(id),
            _ => r.account_name = Some(a.clone()),
        }
        r.batch.account = Some(a);
    }
    if let Some(o) = get("qos") {
        let q = o.value.clone().unwrap_or_default().to_ascii_lowercase();
        if ["low", "normal", "high", "urgent"].contains(&q.as_str()) {
            r.file.priority = Some(q);
        } else {
            r.warnings.push(format!(
                "{}: --qos {q} is not one of Haneul's priorities (low, normal, high, urgent); \
                 the job runs at normal",
                o.origin
            ));
        }
    }
    r.file.array = val("array");
    if let Some(o) = get("dependency") {
        let v = o.value.clone().unwrap_or_default();
        if v.contains('?') {
            return Err(err(
                o,
                format!("`{v}`: `?` (any of) is not offered; join with `,` (all of)"),
            ));
        }
        for part in v.split(',') {
            let kind = part.split(':').next().unwrap_or_default();
            if !["afterok", "afterany"].contains(&kind) {
                return Err(err(
                    o,
                    format!(
                        "`{kind}` is not offered (afterok and afterany are); running without it \
                         would start the job too early"
                    ),
                ));
            }
        }
        r.file.dependency = Some(v);
    }
    r.batch.output = val("output");
    r.batch.error = val("error");
    r.batch.chdir = val("chdir");
    r.batch.export = val("export");
    r.batch.mail_type = val("mail-type");
    r.batch.mail_user = val("mail-user");
    r.batch.signal = val("signal");
    match (get("requeue"), get("no-requeue")) {
        (Some(a), Some(b)) => {
            r.batch.requeue =
                Some(opts.iter().rposition(|o| o == a) > opts.iter().rposition(|o| o == b));
        }
        (Some(_), None) => r.batch.requeue = Some(true),
        (None, Some(o)) => {
            r.batch.requeue = Some(false);
            r.warnings.push(format!(
                "{}: --no-requeue is kept; a preempted or failed-node job is still requeued, as \
                 a preemptible job is",
                o.origin
            ));
        }
        (None, None) => {}
    }
    if let Some(e) = &r.batch.export
        && e != "NONE"
    {
        r.warnings.push(
            "--export: the submitting shell's environment is not carried to the node; only \
             NAME=value entries are set"
                .into(),
        );
    }
    r.wrap = val("wrap");
    r.parsable = get("parsable").is_some();
    Ok(r)
}

/// `--export`'s NAME=value entries (NAME alone, ALL and NONE carry nothing here).
pub fn export_pairs(export: &str) -> Result<Vec<(String, String)>, UsageError> {
    let mut out = Vec::new();
    for item in export.split(',') {
        let Some((k, v)) = item.split_once('=') else {
            continue;
        };
        let valid = !k.is_empty()
            && !k.starts_with(|c: char| c.is_ascii_digit())
            && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(UsageError(format!(
                "--export: `{k}` is not a variable name (letters, digits, _)"
            )));
        }
        out.push((k.to_string(), v.to_string()));
    }
    Ok(out)
}

/// A shell word (double-quoted) for an output pattern: `%j` and the rest become references to
/// the task's Slurm variables, so the node expands them. Unknown `%` letters are kept.
pub fn pattern_word(pattern: &str) -> String {
    let mut out = String::from("\"");
    let mut chars = pattern.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '%' {
            let var = match chars.peek() {
                Some('%') => Some("%"),
                Some('j') => Some("${SLURM_JOB_ID}"),
                Some('x') => Some("${SLURM_JOB_NAME}"),
                Some('A') => Some("${SLURM_ARRAY_JOB_ID:-$SLURM_JOB_ID}"),
                Some('a') => Some("${SLURM_ARRAY_TASK_ID:-4294967294}"),
                Some('u') => Some("${USER:-$(id -un)}"),
                Some('N') => Some("${SLURMD_NODENAME}"),
                Some('n') => Some("${SLURM_NODEID}"),
                Some('t') => Some("${SLURM_PROCID}"),
                _ => None,
            };
            if let Some(v) = var {
                out.push_str(v);
                chars.next();
                continue;
            }
        }
        if matches!(c, '"' | '$' | '`' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// Whether a pattern names a file per task (so every task writes its own, not only task 0).
fn per_task(pattern: &str) -> bool {
    ["%N", "%n", "%t"].iter().any(|p| pattern.contains(p))
}

/// A word in single quotes, for the wrapper.
fn quoted(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// The command a batch job runs: `/bin/sh` with a wrapper that goes to the working directory,
/// sets the exported variables, writes the script into the task's own directory and runs it
/// with its arguments, copying its output into the `--output` (and `--error`) files as
/// Slurm names them, and into the job's log. Only task 0 writes a file named without a
/// per-task pattern (`%N`, `%n`, `%t`): it is Slurm's batch host.
pub fn wrapper_command(
    script: &str,
    args: &[String],
    batch: &JobBatch,
    array: bool,
) -> Result<Vec<String>, UsageError> {
    let dir = batch.chdir.clone().or(batch.submit_dir.clone());
    let output = batch.output.clone().unwrap_or_else(|| {
        if array {
            "slurm-%A_%a.out"
        } else {
            "slurm-%j.out"
        }
        .to_string()
    });
    let mut w = String::new();
    w.push_str(
        "if [ -n \"${SLURM_ARRAY_TASK_ID:-}\" ]; then export SLURM_ARRAY_JOB_ID=\"${SLURM_ARRAY_JOB_ID:-$SLURM_JOB_ID}\"; fi\n",
    );
    if let Some(d) = &dir {
        let d = quoted(d);
        w.push_str(&format!(
            "cd {d} || {{ echo \"haneul: cannot enter \"{d}\" on $SLURMD_NODENAME\" >&2; exit 1; }}\n"
        ));
    }
    if let Some(e) = &batch.export {
        for (k, v) in export_pairs(e)? {
            w.push_str(&format!("export {k}={}\n", quoted(&v)));
        }
    }
    w.push_str(
        "f=\"$HOME/haneul-batch-script\"\nprintf '%s' \"$1\" > \"$f\" && chmod 700 \"$f\" || exit 1\nshift\n",
    );
    let out = pattern_word(&output);
    let mine = |p: &str| {
        if per_task(p) {
            "true".to_string()
        } else {
            "[ \"${SLURM_PROCID:-0}\" = 0 ]".to_string()
        }
    };
    // The status through the pipe: POSIX sh has no pipefail.
    let run = match &batch.error {
        None => "{ \"$f\" \"$@\" 2>&1; echo $? > \"$HOME/.batch-status\"; }".to_string(),
        Some(e) => format!(
            "{{ if {}; then \"$f\" \"$@\" 2>{}; else \"$f\" \"$@\"; fi; echo $? > \"$HOME/.batch-status\"; }}",
            mine(e),
            pattern_word(e)
        ),
    };
    w.push_str(&format!(
        "if {}; then {run} | tee {out}; else {run}; fi\nexit \"$(cat \"$HOME/.batch-status\" 2>/dev/null || echo 1)\"\n",
        mine(&output)
    ));
    let mut cmd = vec![
        "/bin/sh".to_string(),
        "-c".into(),
        w,
        "haneul-batch".into(),
        script.to_string(),
    ];
    cmd.extend(args.iter().cloned());
    Ok(cmd)
}

/// Merges a request into the `submit` body built from its job file.
pub fn apply(body: &mut Value, r: &Request) {
    for (k, v) in &r.extra {
        body[k] = v.clone();
    }
    body["batch"] = serde_json::to_value(&r.batch).unwrap_or(Value::Null);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn req(script: &str) -> Request {
        let s = parse_script(script).unwrap();
        let mut r = request(&s.opts).unwrap();
        r.warnings.extend(s.warnings);
        r
    }

    #[test]
    fn every_slurm_time_format() {
        let cases = [
            ("30", 1800),
            ("30:15", 1815),
            ("2:00:00", 7200),
            ("1-0", 86_400),
            ("1-12", 86_400 + 12 * 3600),
            ("2-03:30", 2 * 86_400 + 3 * 3600 + 1800),
            ("0-00:00:05", 5),
            ("7-00:00:00", 7 * 86_400),
        ];
        for (s, want) in cases {
            assert_eq!(parse_slurm_time(s).unwrap(), Some(want), "{s}");
        }
        assert_eq!(parse_slurm_time("UNLIMITED").unwrap(), None);
        assert_eq!(parse_slurm_time("infinite").unwrap(), None);
        for bad in [
            "",
            "x",
            "1:2:3:4",
            "1-2:3:4:5",
            "-5",
            "0",
            "0:00",
            "1h",
            "1--2",
        ] {
            assert!(parse_slurm_time(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn long_short_and_joined_forms() {
        let r = req(
            "#!/bin/bash\n#SBATCH -Jtrain -N 2 --ntasks-per-node=4\n#SBATCH --gpus-per-task 1 -c 8\n#SBATCH --time 1-00:00 --mem=64G\n#SBATCH -p gpu -A 3 -q high\npython train.py\n",
        );
        assert_eq!(r.file.name.as_deref(), Some("train"));
        assert_eq!(r.file.nodes, Some(2));
        assert_eq!(r.file.gpus_per_node, Some(4));
        assert_eq!(r.file.cpus_per_task, Some(32.0));
        assert_eq!(r.file.time.as_deref(), Some("86400s"));
        assert_eq!(r.extra["memory_mib_per_task"], 65536);
        assert_eq!(r.file.project, Some(3));
        assert_eq!(r.file.priority.as_deref(), Some("high"));
        assert_eq!(r.batch.partition.as_deref(), Some("gpu"));
        assert!(
            r.warnings.iter().any(|w| w.contains("--partition")),
            "{:?}",
            r.warnings
        );
    }

    #[test]
    fn haneul_directives_win_and_late_ones_are_ignored() {
        let r = req(
            "#!/bin/bash\n# a comment\n\n#HANEUL --gres=gpu:H200:8\n#SBATCH --gres=gpu:A100:4\n#SBATCH --job-name=x # trailing comment\necho hi\n#SBATCH --time=5\n",
        );
        assert_eq!(r.file.gpus_per_node, Some(8));
        assert_eq!(r.file.gpu_model.as_deref(), Some("H200"));
        assert_eq!(r.file.name.as_deref(), Some("x"));
        assert_eq!(r.file.time, None);
        assert!(
            r.warnings
                .iter()
                .any(|w| w.contains("line 8") && w.contains("first command"))
        );
    }

    #[test]
    fn gpu_forms() {
        assert_eq!(req("#SBATCH --gres=gpu:2\n").file.gpus_per_node, Some(2));
        assert_eq!(req("#SBATCH --gres=gpu\n").file.gpus_per_node, Some(1));
        let r = req("#SBATCH --gres=gpu:h100:4,shard:2\n");
        assert_eq!(
            (r.file.gpus_per_node, r.file.gpu_model.as_deref()),
            (Some(4), Some("h100"))
        );
        assert!(r.warnings.iter().any(|w| w.contains("shard:2")));
        let r = req("#SBATCH -N 2 --gpus=H200:16\n");
        assert_eq!((r.file.gpus, r.file.nodes), (Some(16), Some(2)));
        let r = req("#SBATCH -n 8 --gpus-per-task=1\n");
        assert_eq!(r.file.gpus_per_node, Some(8));
        assert_eq!(r.batch.ntasks, Some(8));
        let r = req("#SBATCH --constraint=H100|A100 --gpus-per-node=1\n");
        assert_eq!(r.file.gpu_model.as_deref(), Some("H100,A100"));
    }

    #[test]
    fn errors_name_the_directive() {
        let cases = [
            ("#SBATCH --time=abc\n", "--time"),
            ("#SBATCH --dependency=afternotok:4\n", "afternotok"),
            ("#SBATCH --dependency=singleton\n", "singleton"),
            ("#SBATCH --gres=gpu:a:b:c\n", "--gres"),
            ("#SBATCH --nodes=zero\n", "--nodes"),
            ("#SBATCH --constraint=a&b\n", "--constraint"),
            ("#SBATCH --mem-per-gpu=4G\n", "--mem-per-gpu"),
            ("#SBATCH --job-name\n", "-job-name needs a value"),
            ("#SBATCH -J 'open\n", "quote"),
            ("#SBATCH train.py\n", "not an option"),
        ];
        for (script, want) in cases {
            let e = parse_script(script)
                .and_then(|s| request(&s.opts))
                .unwrap_err();
            assert!(
                e.0.contains(want) && e.0.contains("line 1"),
                "{script}: {}",
                e.0
            );
        }
        assert!(
            parse_script("#!/bin/sh\r\n#SBATCH -N 1\r\n")
                .unwrap_err()
                .0
                .contains("dos2unix")
        );
    }

    #[test]
    fn warnings_name_what_is_not_honoured() {
        let r = req(
            "#SBATCH --exclusive --mail-type=END --mail-user=a@b.kr --signal=B:USR1@90\n#SBATCH --frobnicate=3 --no-requeue\n",
        );
        for w in [
            "--exclusive",
            "--mail-type",
            "--signal",
            "--frobnicate",
            "--no-requeue",
        ] {
            assert!(
                r.warnings.iter().any(|x| x.contains(w)),
                "{w}: {:?}",
                r.warnings
            );
        }
        assert_eq!(r.batch.mail_user.as_deref(), Some("a@b.kr"));
        assert_eq!(r.batch.signal.as_deref(), Some("B:USR1@90"));
        assert_eq!(r.batch.requeue, Some(false));
    }

    #[test]
    fn command_line_overrides_the_script() {
        let s = parse_script("#SBATCH --time=10 -J a\n").unwrap();
        let mut w = Vec::new();
        let argv: Vec<String> = ["-t", "2:00:00", "job.sh", "--lr", "3"]
            .map(String::from)
            .into();
        let (cl, used) = options(&argv, "the command line", &mut w).unwrap();
        assert_eq!(&argv[used..], ["job.sh", "--lr", "3"]);
        let all: Vec<Opt> = s.opts.into_iter().chain(cl).collect();
        let r = request(&all).unwrap();
        assert_eq!(r.file.time.as_deref(), Some("7200s"));
        assert_eq!(r.file.name.as_deref(), Some("a"));
    }

    #[test]
    fn output_patterns_become_shell_words() {
        assert_eq!(
            pattern_word("logs/%x-%j.out"),
            "\"logs/${SLURM_JOB_NAME}-${SLURM_JOB_ID}.out\""
        );
        assert_eq!(pattern_word("a$b%%\"%q"), "\"a\\$b%\\\"%q\"");
        assert!(pattern_word("%A_%a").contains("SLURM_ARRAY_TASK_ID"));
    }

    #[test]
    fn exports() {
        assert_eq!(
            export_pairs("ALL,OMP_NUM_THREADS=8,X=a b").unwrap(),
            vec![
                ("OMP_NUM_THREADS".into(), "8".into()),
                ("X".into(), "a b".into())
            ]
        );
        assert!(export_pairs("1X=2").is_err());
        assert!(export_pairs("A;rm=2").is_err());
    }

    /// The test corpus (tests/slurm_scripts): each script states what it asks for on an
    /// `# expect:` line, and reads to exactly that.
    #[test]
    fn corpus_reads_as_each_script_states() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/slurm_scripts");
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        assert!(files.len() >= 8, "{files:?}");
        for f in files {
            let text = std::fs::read_to_string(&f).unwrap();
            assert!(is_batch_script(&text), "{f:?}");
            let expect = text
                .lines()
                .find_map(|l| l.strip_prefix("# expect: "))
                .unwrap_or_else(|| panic!("{f:?} has no `# expect:` line"));
            let r = req(&text);
            let opt = |v: Option<String>| v.unwrap_or_else(|| "-".into());
            let num = |v: Option<u32>| v.map_or("-".into(), |n| n.to_string());
            // `warnings=TEXT` takes the rest of the line.
            let (pairs, warn) = match expect.split_once("warnings=") {
                Some((a, w)) => (a, Some(w.trim())),
                None => (expect, None),
            };
            for kv in pairs.split_whitespace() {
                let (k, want) = kv.split_once('=').unwrap();
                let got = match k {
                    "name" => opt(r.file.name.clone()),
                    "nodes" => num(r.file.nodes),
                    "gpus_per_node" => num(r.file.gpus_per_node),
                    "gpus" => num(r.file.gpus),
                    "gpu_model" => opt(r.file.gpu_model.clone()),
                    "cpus" => r.file.cpus_per_task.map_or("-".into(), |c| c.to_string()),
                    "mem" => r
                        .extra
                        .get("memory_mib_per_task")
                        .map_or("-".into(), |m| m.to_string()),
                    "time" => opt(r
                        .file
                        .time
                        .clone()
                        .map(|t| t.trim_end_matches('s').to_string())),
                    "project" => r.file.project.map_or("-".into(), |p| p.to_string()),
                    "priority" => opt(r.file.priority.clone()),
                    "array" => opt(r.file.array.clone()),
                    "ntasks" => num(r.batch.ntasks),
                    "partition" => opt(r.batch.partition.clone()),
                    other => panic!("{f:?}: unknown expect key {other}"),
                };
                assert_eq!(got, want, "{f:?}: {k}");
            }
            if let Some(w) = warn {
                assert!(
                    r.warnings.iter().any(|x| x.contains(w)),
                    "{f:?}: {:?}",
                    r.warnings
                );
            }
            // Every script also makes a valid submission with its wrapper.
            let mut file = r.file.clone();
            file.command =
                Some(wrapper_command(&text, &[], &r.batch, file.array.is_some()).unwrap());
            crate::jobfile::plan(&file).unwrap_or_else(|e| panic!("{f:?}: {}", e.0));
        }
    }

    proptest! {
        /// Any order of a set of directives on any mix of lines reads to the same request.
        #[test]
        fn line_layout_does_not_matter(split in proptest::collection::vec(0usize..3, 6), seed in 0u64..1000) {
            let parts = ["-J sweep", "--nodes=2", "--gpus-per-node=4", "-t 1-02:03", "--mem 8G", "-q low"];
            let mut order: Vec<usize> = (0..parts.len()).collect();
            // A fixed permutation from the seed (no randomness inside the test).
            order.rotate_left((seed as usize) % parts.len());
            let mut script = String::from("#!/bin/bash\n");
            let mut line = String::new();
            for (k, &i) in order.iter().enumerate() {
                line.push(' ');
                line.push_str(parts[i]);
                if split[k] == 0 || k + 1 == order.len() {
                    script.push_str(&format!("#SBATCH{line}\n"));
                    line.clear();
                }
            }
            let r = req(&script);
            prop_assert_eq!(r.file.name.as_deref(), Some("sweep"));
            prop_assert_eq!(r.file.nodes, Some(2));
            prop_assert_eq!(r.file.gpus_per_node, Some(4));
            prop_assert_eq!(r.file.time.as_deref(), Some("93780s"));
            prop_assert_eq!(r.extra["memory_mib_per_task"].as_u64(), Some(8192));
            prop_assert_eq!(r.file.priority.as_deref(), Some("low"));
        }

        /// Every D-H:M:S reads to its seconds, in whichever form it is written.
        #[test]
        fn times_read_back(d in 0u64..30, h in 0u64..24, m in 0u64..60, s in 0u64..60) {
            prop_assume!(d + h + m + s > 0);
            let want = d * 86_400 + h * 3600 + m * 60 + s;
            prop_assert_eq!(parse_slurm_time(&format!("{d}-{h}:{m:02}:{s:02}")).unwrap(), Some(want));
            prop_assert_eq!(parse_slurm_time(&format!("{}:{m}:{s}", d * 24 + h)).unwrap(), Some(want));
        }

        /// Arbitrary text never panics the parser.
        #[test]
        fn arbitrary_text_is_safe(text in "(#SBATCH|#HANEUL)?[ -~\n]{0,200}") {
            if let Ok(s) = parse_script(&text) {
                let _ = request(&s.opts);
            }
        }
    }
}
