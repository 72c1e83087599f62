//! What `haneul submit` asks for: sbatch-like flags and TOML job files, merged (flags win) and
//! checked before anything is sent, then turned into one `POST /v1/jobs` body (an array included: the server makes its tasks).

use crate::i18n::{M, t};
use crate::output::UsageError;
use haneul_model::ArraySpec;
use serde::Deserialize;
use serde_json::{Value, json};

/// A job file. Every key is optional; a flag given on the command line overrides the key.
#[derive(Debug, Default, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobFile {
    pub name: Option<String>,
    pub gpus: Option<u32>,
    pub nodes: Option<u32>,
    pub gpus_per_node: Option<u32>,
    /// CPU cores per task (required when a task has no GPU).
    pub cpus_per_task: Option<f64>,
    /// One model or several, comma-separated (`"H200,H100"`).
    pub gpu_model: Option<String>,
    pub time: Option<String>,
    pub priority: Option<String>,
    pub dependency: Option<String>,
    pub array: Option<String>,
    pub project: Option<i64>,
    /// The container image the tasks run in (OCI reference, root file system directory or
    /// `.sif` file), as Slurm's pyxis `--container-image`.
    pub container_image: Option<String>,
    pub command: Option<Vec<String>>,
}

impl JobFile {
    pub fn parse(text: &str) -> Result<JobFile, toml::de::Error> {
        toml::from_str(text)
    }

    /// `self` with every value that `over` sets replaced.
    pub fn overridden_by(self, over: JobFile) -> JobFile {
        JobFile {
            name: over.name.or(self.name),
            gpus: over.gpus.or(self.gpus),
            nodes: over.nodes.or(self.nodes),
            gpus_per_node: over.gpus_per_node.or(self.gpus_per_node),
            cpus_per_task: over.cpus_per_task.or(self.cpus_per_task),
            gpu_model: over.gpu_model.or(self.gpu_model),
            time: over.time.or(self.time),
            priority: over.priority.or(self.priority),
            dependency: over.dependency.or(self.dependency),
            array: over.array.or(self.array),
            project: over.project.or(self.project),
            container_image: over.container_image.or(self.container_image),
            command: over.command.filter(|c| !c.is_empty()).or(self.command),
        }
    }
}

/// Seconds in `90s`, `10m`, `2h`, `1d`, `1:30:00`, or a bare number of minutes (as Slurm).
pub fn parse_time(s: &str) -> anyhow::Result<u64> {
    let s = s.trim();
    let bad = || UsageError(t(M::BadTime).arg("value", s).text());
    if s.contains(':') {
        // Slurm's [HH:]MM:SS.
        let parts: Vec<&str> = s.split(':').collect();
        if parts.len() > 3 {
            return Err(bad().into());
        }
        let mut total = 0u64;
        for p in &parts {
            total = total * 60 + p.parse::<u64>().map_err(|_| bad())?;
        }
        return if total > 0 {
            Ok(total)
        } else {
            Err(bad().into())
        };
    }
    let (num, mult) = match s.char_indices().last() {
        Some((i, 's')) => (&s[..i], 1),
        Some((i, 'm')) => (&s[..i], 60),
        Some((i, 'h')) => (&s[..i], 3600),
        Some((i, 'd')) => (&s[..i], 86400),
        _ => (s, 60),
    };
    match num.parse::<u64>() {
        Ok(n) if n > 0 => n.checked_mul(mult).ok_or_else(|| bad().into()),
        _ => Err(bad().into()),
    }
}

/// `afterok:1:2,afterany:3` as (kind, job) pairs.
pub fn parse_dependency(s: &str) -> Result<Vec<(String, i64)>, UsageError> {
    let bad = || UsageError(t(M::BadDependency).arg("value", s).text());
    let mut out = Vec::new();
    // Slurm's `?` (any one of several) is not offered: every listed dependency must hold.
    for part in s.split(',').filter(|p| !p.is_empty()) {
        let mut fields = part.split(':');
        let kind = fields.next().unwrap_or_default();
        if kind != "afterok" && kind != "afterany" {
            return Err(bad());
        }
        let mut any = false;
        for id in fields {
            // Slurm's `ID_TASK` (one array task) is not offered: a dependency on an array waits
            // for every task.
            let id: i64 = id.parse().ok().filter(|i| *i > 0).ok_or_else(bad)?;
            out.push((kind.to_string(), id));
            any = true;
        }
        if !any {
            return Err(bad());
        }
    }
    if out.is_empty() {
        return Err(bad());
    }
    Ok(out)
}

/// An array's task ids (`0-9`, `1,3,5`, `0-15:4`) and its optional `%N` limit, checked here
/// as the server checks them so a mistake is named before anything is sent.
pub fn parse_array(s: &str) -> Result<ArraySpec, UsageError> {
    ArraySpec::parse(s).map_err(|e| match e {
        haneul_model::ModelError::Invalid { reason, .. } => UsageError(format!(
            "{} ({reason})",
            t(M::BadArray).arg("value", s).text()
        )),
        e => UsageError(e.to_string()),
    })
}

/// A checked submission: the body every task shares, and the array if there is one.
#[derive(Debug)]
pub struct Plan {
    pub body: Value,
    pub command: Vec<String>,
    pub name: Option<String>,
    pub array: Option<ArraySpec>,
}

/// Checks the merged request and builds the body, leaving `project` to the caller.
pub fn plan(f: &JobFile) -> Result<Plan, UsageError> {
    let nodes = f.nodes.unwrap_or(1);
    if nodes == 0 {
        return Err(UsageError(t(M::NodesZero).text()));
    }
    let per_node = match (f.gpus, f.gpus_per_node) {
        (Some(g), Some(p)) if g != p * nodes => {
            return Err(UsageError(
                t(M::GpusMismatch)
                    .arg("gpus", g)
                    .arg("per", p)
                    .arg("nodes", nodes)
                    .text(),
            ));
        }
        (_, Some(p)) => p,
        (Some(g), None) => {
            if !g.is_multiple_of(nodes) {
                return Err(UsageError(
                    t(M::GpusUneven).arg("gpus", g).arg("nodes", nodes).text(),
                ));
            }
            g / nodes
        }
        (None, None) => 0,
    };
    let command = f.command.clone().unwrap_or_default();
    if command.is_empty() {
        return Err(UsageError(t(M::NoCommand).text()));
    }
    let mut body = json!({
        "replicas": nodes,
        "gpus_per_task": per_node,
    });
    if let Some(c) = f.cpus_per_task {
        if !(c > 0.0 && c <= 1e6) {
            return Err(UsageError(t(M::BadCpus).arg("value", c).text()));
        }
        body["cpu_milli_per_task"] = json!((c * 1000.0).round() as u64);
    }
    if let Some(m) = &f.gpu_model {
        let models: Vec<&str> = m
            .split(',')
            .map(str::trim)
            .filter(|m| !m.is_empty())
            .collect();
        body["gpu_models"] = json!(models);
    }
    if let Some(tm) = &f.time {
        body["time_limit_s"] = json!(parse_time(tm).map_err(|e| UsageError(e.to_string()))?);
    }
    if let Some(p) = &f.priority {
        let p = p.to_ascii_lowercase();
        if !["low", "normal", "high", "urgent"].contains(&p.as_str()) {
            return Err(UsageError(t(M::BadPriority).arg("value", &p).text()));
        }
        body["priority"] = json!(p);
    }
    let mut deps = Vec::new();
    if let Some(d) = &f.dependency {
        for (kind, job) in parse_dependency(d)? {
            deps.push(json!({"kind": kind, "job": job}));
        }
    }
    body["dependencies"] = json!(deps);
    if let Some(image) = &f.container_image {
        body["container_image"] = json!(image);
    }
    let array = f.array.as_deref().map(parse_array).transpose()?;
    Ok(Plan {
        body,
        command,
        name: f.name.clone(),
        array,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times() {
        assert_eq!(parse_time("90s").unwrap(), 90);
        assert_eq!(parse_time("10m").unwrap(), 600);
        assert_eq!(parse_time("2h").unwrap(), 7200);
        assert_eq!(parse_time("1d").unwrap(), 86400);
        assert_eq!(parse_time("5").unwrap(), 300);
        assert_eq!(parse_time("1:30:00").unwrap(), 5400);
        assert_eq!(parse_time("2:00").unwrap(), 120);
        for bad in ["x", "0", "", "1:2:3:4", "5w"] {
            assert!(parse_time(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn dependencies() {
        assert_eq!(
            parse_dependency("afterok:1:2,afterany:3").unwrap(),
            vec![
                ("afterok".into(), 1),
                ("afterok".into(), 2),
                ("afterany".into(), 3)
            ]
        );
        for bad in [
            "afterok",
            "afterok:",
            "after:1",
            "afterok:x",
            "afterok:0",
            "",
        ] {
            let e = parse_dependency(bad).unwrap_err();
            assert!(e.0.contains("--dependency"), "{bad}: {}", e.0);
        }
    }

    #[test]
    fn arrays() {
        assert_eq!(parse_array("0-3").unwrap().tasks(), &[0, 1, 2, 3]);
        assert_eq!(parse_array("0-8:4").unwrap().tasks(), &[0, 4, 8]);
        let a = parse_array("0-9%2").unwrap();
        assert_eq!((a.len(), a.max_running()), (10, Some(2)));
        for bad in ["", "a", "5-1", "0-9%0", "0-9%x", "0-99999999", "1:0"] {
            let e = parse_array(bad).unwrap_err().0;
            assert!(e.starts_with("--array: "), "{bad}: {e}");
        }
        assert!(parse_array("5-1").unwrap_err().0.contains("backwards"));
    }

    #[test]
    fn job_file_keys_and_overrides() {
        let f = JobFile::parse(
            "name = \"train\"\ngpus = 4\nnodes = 2\ngpu_model = \"H200\"\ntime = \"2h\"\n\
             command = [\"python\", \"train.py\"]\n",
        )
        .unwrap();
        let over = JobFile {
            gpus: Some(8),
            ..JobFile::default()
        };
        let merged = f.overridden_by(over);
        assert_eq!(merged.gpus, Some(8));
        assert_eq!(merged.name.as_deref(), Some("train"));
        let p = plan(&merged).unwrap();
        assert_eq!(p.body["replicas"], 2);
        assert_eq!(p.body["gpus_per_task"], 4);
        assert_eq!(p.body["gpu_models"], json!(["H200"]));
        assert_eq!(p.body["time_limit_s"], 7200);
        assert!(p.body.get("container_image").is_none());

        let f = JobFile::parse("container_image = \"/srv/rootfs\"\ncommand = [\"env\"]\n").unwrap();
        let over = JobFile {
            container_image: Some("ubuntu:24.04".into()),
            ..JobFile::default()
        };
        assert_eq!(plan(&f).unwrap().body["container_image"], "/srv/rootfs");
        assert_eq!(
            plan(&f.overridden_by(over)).unwrap().body["container_image"],
            "ubuntu:24.04"
        );

        let e = JobFile::parse("gpus = 1\ngpu = 2\n").unwrap_err();
        assert!(
            e.message().contains("unknown field `gpu`"),
            "{}",
            e.message()
        );
    }

    #[test]
    fn gpu_shapes() {
        let f = |gpus, nodes, per| JobFile {
            gpus,
            nodes,
            gpus_per_node: per,
            command: Some(vec!["true".into()]),
            ..JobFile::default()
        };
        assert_eq!(
            plan(&f(None, Some(2), Some(8))).unwrap().body["gpus_per_task"],
            8
        );
        assert!(plan(&f(Some(3), Some(2), None)).is_err());
        assert!(plan(&f(Some(4), Some(2), Some(4))).is_err());
        assert!(plan(&f(Some(8), Some(2), Some(4))).is_ok());
        assert!(plan(&f(Some(1), Some(0), None)).is_err());
    }
}
