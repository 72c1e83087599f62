//! Slurm batch scripts run for real: `haneul up` with simulated GPUs, the binary reached through
//! links named `sbatch`, `squeue`, `scancel`, `sacct`, `sinfo` and `srun`, and scripts from
//! tests/slurm_scripts submitted unmodified. Checks the output file names Slurm's patterns give
//! and the SLURM_* variables the tasks saw.

mod common;

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

struct Centre {
    _up: common::up::Up,
    config: PathBuf,
    bin: PathBuf,
    work: PathBuf,
}

impl Centre {
    /// Runs `prog` (a link in bin/, or `haneul`) in the work directory.
    fn run(&self, prog: &str, args: &[&str]) -> Output {
        let exe = if prog == "haneul" {
            PathBuf::from(env!("CARGO_BIN_EXE_haneul"))
        } else {
            self.bin.join(prog)
        };
        Command::new(exe)
            .args(args)
            .current_dir(&self.work)
            .env("HANEUL_CONFIG", &self.config)
            .env_remove("HANEUL_SERVER")
            .env_remove("HANEUL_TOKEN")
            .env_remove("HANEUL_PROJECT")
            .env("LANG", "C")
            .output()
            .expect("run")
    }

    fn ok(&self, prog: &str, args: &[&str]) -> (String, String) {
        let out = self.run(prog, args);
        let (o, e) = (
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        );
        assert!(out.status.success(), "{prog} {args:?}: {e}");
        (o, e)
    }

    fn job(&self, id: i64) -> Value {
        let (o, _) = self.ok("haneul", &["show", &id.to_string(), "--json"]);
        serde_json::from_str(&o).unwrap()
    }

    fn wait_ended(&self, id: i64) -> Value {
        let until = Instant::now() + Duration::from_secs(60);
        loop {
            let j = self.job(id);
            let s = j["state"].as_str().unwrap_or_default().to_string();
            if ["succeeded", "failed", "cancelled", "timed_out"].contains(&s.as_str()) {
                return j;
            }
            assert!(Instant::now() < until, "job {id} did not end: {j}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn wait_state(&self, id: i64, state: &str) {
        let until = Instant::now() + Duration::from_secs(60);
        while self.job(id)["state"] != state {
            assert!(Instant::now() < until, "job {id} never {state}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Copies a corpus script into the work directory.
    fn script(&self, name: &str) -> String {
        let src = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/slurm_scripts")
            .join(name);
        std::fs::copy(src, self.work.join(name)).unwrap();
        name.to_string()
    }
}

fn start(dir: &Path, gpus: &str) -> Centre {
    let (up, config, _) = common::up::start_up(dir, gpus, &[]);
    // The links a user (or the package) makes: one binary, Slurm's names.
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    for name in [
        "sbatch", "squeue", "scancel", "sacct", "sinfo", "srun", "scontrol",
    ] {
        std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_haneul"), bin.join(name)).unwrap();
    }
    let work = dir.join("work");
    writable(&work);
    Centre {
        _up: up,
        config,
        bin,
        work: work.canonicalize().unwrap(),
    }
}

/// A directory the task may write in: the agent (root when the tests run as root) runs tasks
/// as the submitter's account, as a user's own directory would allow under Slurm.
fn writable(d: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(d).unwrap();
    std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o777)).unwrap();
}

fn submitted(stdout: &str) -> i64 {
    stdout
        .trim()
        .strip_prefix("Submitted batch job ")
        .unwrap_or_else(|| panic!("not sbatch's answer: {stdout:?}"))
        .parse()
        .unwrap()
}

/// `NAME=value` lines of a task's output.
fn var(text: &str, name: &str) -> String {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}=")))
        .unwrap_or_else(|| panic!("{name} not in {text}"))
        .to_string()
}

fn read_when_there(path: &Path, needle: &str) -> String {
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(t) = std::fs::read_to_string(path)
            && t.contains(needle)
        {
            return t;
        }
        assert!(
            Instant::now() < until,
            "{} never held {needle:?}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn slurm_scripts_and_commands_against_haneul_up() {
    let dir = common::tempdir();
    let c = start(&dir.path().canonicalize().unwrap(), "8xH200");
    writable(&c.work.join("logs"));

    // One GPU, output and error split by pattern, the environment a training script reads.
    // CPUs and memory are asked again on the command line (sbatch's options win over the
    // script's), so the job fits a small test machine.
    let s = c.script("train_1gpu.sh");
    let (o, _) = c.ok("sbatch", &["-c", "1", "--mem=1G", &s]);
    let id = submitted(&o);
    let j = c.wait_ended(id);
    let (logs, _) = c.ok("haneul", &["logs", &id.to_string()]);
    assert_eq!(j["state"], "succeeded", "{logs}");
    assert_eq!(j["name"], "train-1gpu");
    assert_eq!(j["batch"]["output"], "logs/%x-%j.out");
    let out = read_when_there(&c.work.join(format!("logs/train-1gpu-{id}.out")), "cwd=");
    let err = std::fs::read_to_string(c.work.join(format!("logs/train-1gpu-{id}.err"))).unwrap();
    assert_eq!(err.trim(), "to stderr");
    assert!(!out.contains("to stderr"), "{out}");
    assert_eq!(var(&out, "SLURM_JOB_ID"), id.to_string());
    assert_eq!(var(&out, "SLURM_JOB_NAME"), "train-1gpu");
    assert_eq!(var(&out, "SLURM_NNODES"), "1");
    assert_eq!(var(&out, "SLURM_NTASKS"), "1");
    assert_eq!(var(&out, "SLURM_PROCID"), "0");
    assert_eq!(var(&out, "SLURM_LOCALID"), "0");
    assert_eq!(var(&out, "SLURM_NODEID"), "0");
    assert_eq!(var(&out, "SLURM_GPUS_ON_NODE"), "1");
    assert_eq!(var(&out, "SLURM_CPUS_PER_TASK"), "1");
    assert_eq!(var(&out, "SLURM_MEM_PER_NODE"), "1024");
    assert_eq!(var(&out, "SLURM_SUBMIT_DIR"), c.work.display().to_string());
    assert_eq!(var(&out, "cwd"), c.work.display().to_string());
    assert!(!var(&out, "SLURM_JOB_NODELIST").is_empty());
    assert_eq!(var(&out, "CUDA_VISIBLE_DEVICES").split(',').count(), 1);
    // The job's log holds the output too.
    assert!(logs.contains(&format!("SLURM_JOB_ID={id}")), "{logs}");

    // Eight typed GPUs, with the account named on the command line (sbatch's wins).
    let (who, _) = c.ok("haneul", &["whoami", "--json"]);
    let who: Value = serde_json::from_str(&who).unwrap();
    let project = who["projects"][0].as_i64().unwrap().to_string();
    let s = c.script("train_8gpu.sh");
    let (o, e) = c.ok(
        "sbatch",
        &["-A", &project, "-c", "1", "--mem-per-gpu=100M", &s],
    );
    assert!(e.contains("--mail-type"), "warned: {e}");
    let id8 = submitted(&o);
    assert_eq!(c.wait_ended(id8)["state"], "succeeded");
    let out = read_when_there(&c.work.join(format!("slurm-{id8}.out")), "gpus=");
    assert!(out.contains("gpus=8 visible=0,1,2,3,4,5,6,7"), "{out}");
    let j = c.job(id8);
    assert_eq!(j["gpu_models"][0], "H200");
    assert_eq!(j["time_limit_s"], 172_800);
    assert_eq!(j["batch"]["mail_user"], "kim@kaist.ac.kr");
    assert_eq!(j["batch"]["requeue"], true);

    // An array with %A_%a names, at most two at once, its argument passed through.
    let s = c.script("array.sh");
    // The output directory must exist before the job starts, as under Slurm.
    writable(&c.work.join("sweep"));
    let (o, _) = c.ok("sbatch", &["--parsable", &s, "0.01"]);
    let array: i64 = o.trim().parse().unwrap();
    for task in 0..4 {
        let f = c.work.join(format!("sweep/{array}_{task}.out"));
        let t = read_when_there(&f, "task=");
        assert!(
            t.contains(&format!("task={task} of 4 array={array} ")),
            "{t}"
        );
        assert!(t.contains("lr=0.01"), "{t}");
    }

    // A multi-node script, run on this one node by overriding -N on sbatch's command line:
    // the node list comes through the environment in Slurm's form.
    let s = c.script("torchrun_multinode.sh");
    let (o, e) = c.ok("sbatch", &["-N", "1", "-c", "1", &s]);
    assert!(
        e.contains("--exclusive") && e.contains("--partition"),
        "{e}"
    );
    let id = submitted(&o);
    assert_eq!(c.wait_ended(id)["state"], "succeeded");
    let out = read_when_there(&c.work.join(format!("slurm-{id}.out")), "torchrun");
    assert!(out.contains("nnodes=1 node_rank=0"), "{out}");
    assert!(out.contains("--nproc_per_node=4"), "{out}");
    let nodelist = out
        .split("nodelist=")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap()
        .to_string();
    let (hosts, _) = c.ok("scontrol", &["show", "hostnames", &nodelist]);
    assert!(
        out.contains(&format!("head={}", hosts.lines().next().unwrap())),
        "{out}"
    );

    // Directives after the first command are ignored, with a warning naming the line; the
    // script goes through `haneul submit` here.
    let s = c.script("late_directives.sh");
    let out = c.run("haneul", &["submit", &s]);
    assert!(out.status.success());
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(e.contains("line 6") && e.contains("first command"), "{e}");
    let id: i64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    assert_eq!(c.job(id)["gpus_per_task"], 1);
    assert_eq!(c.job(id)["time_limit_s"], 86_400);
    c.wait_ended(id);

    // --export's NAME=value reaches the script; the script's A100s are asked again as any
    // GPU, as this centre has H200s only.
    let s = c.script("unlimited.sh");
    let (o, _) = c.ok("sbatch", &["--gres=gpu:2", &s]);
    let id = submitted(&o);
    assert_eq!(c.wait_ended(id)["time_limit_s"], Value::Null);
    read_when_there(&c.work.join(format!("slurm-{id}.out")), "omp=4");

    // squeue, scancel, sacct and sinfo through their links.
    let s = c.script("sleeper.sh");
    let (o, _) = c.ok("sbatch", &[&s]);
    let sleeper = submitted(&o);
    c.wait_state(sleeper, "running");
    let (q, _) = c.ok("squeue", &[]);
    let mut lines = q.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        [
            "JOBID",
            "PARTITION",
            "NAME",
            "USER",
            "ST",
            "TIME",
            "NODES",
            "NODELIST(REASON)"
        ]
    );
    let row = lines
        .find(|l| l.split_whitespace().next() == Some(&sleeper.to_string()))
        .unwrap_or_else(|| panic!("{q}"));
    assert!(row.contains(" R "), "{row}");
    let (q, _) = c.ok("squeue", &["--me", "-h", "-t", "all", "-o", "%i|%j|%T"]);
    assert!(
        q.lines().any(|l| l == format!("{sleeper}|sleeper|RUNNING")),
        "{q}"
    );
    assert!(
        q.lines().any(|l| l == format!("{id8}|llm-sft|COMPLETED")),
        "{q}"
    );
    let (q, _) = c.ok("squeue", &["-j", &id8.to_string()]);
    assert_eq!(
        q.lines().count(),
        1,
        "finished jobs are not in the default view: {q}"
    );
    c.ok("scancel", &[&sleeper.to_string()]);
    assert_eq!(c.wait_ended(sleeper)["state"], "cancelled");
    let (a, _) = c.ok(
        "sacct",
        &[
            "-j",
            &format!("{id8},{sleeper}"),
            "-X",
            "--format=JobID,JobName%12,State,ExitCode",
            "-n",
        ],
    );
    let rows: Vec<String> = a
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    assert_eq!(rows.len(), 2, "{a}");
    assert_eq!(rows[0], format!("{id8} llm-sft COMPLETED 0:0"));
    assert!(
        rows[1].starts_with(&format!("{sleeper} sleeper CANCELLED ")),
        "{a}"
    );
    let (a, _) = c.ok("sacct", &["-S", "2020-01-01"]);
    assert!(
        a.starts_with(&format!("{:>12} {:>10}", "JobID", "JobName")),
        "{a}"
    );
    assert!(a.lines().count() > 8, "{a}");
    let (i, _) = c.ok("sinfo", &[]);
    assert!(
        i.starts_with("PARTITION AVAIL  TIMELIMIT  NODES  STATE NODELIST"),
        "{i}"
    );
    assert!(
        i.lines()
            .skip(1)
            .any(|l| l.split_whitespace().nth(3) == Some("1")),
        "{i}"
    );
    // srun runs an interactive job (docs/interactive.md): its output comes back on the
    // terminal relay and its exit status is srun's.
    let out = c.run(
        "srun",
        &[
            "-J",
            "probe",
            "--gres=gpu:1",
            "sh",
            "-c",
            "echo from-srun; exit 3",
        ],
    );
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("from-srun"),
        "{out:?}"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("has been allocated resources"),
        "{out:?}"
    );
}
