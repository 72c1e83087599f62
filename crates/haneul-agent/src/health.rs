//! Node health checks: an operator's health command, GPU checks (uncorrected volatile ECC
//! errors, temperature) read through NVML or `nvidia-smi` when the node has real GPUs, and XID
//! events from a watcher. [`NodeHealth`] puts them together into one verdict.
//!
//! Each check returns `None` when healthy or `Some(what failed)`, a line for people that the
//! server stores as the node's `health` and that drains the node.

use crate::xid::{GpuEvent, XidClass, classify};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, Stdio};
use std::sync::mpsc::{Receiver, TryRecvError};
use std::time::{Duration, Instant};

/// One GPU's health readings.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GpuReading {
    /// The GPU's index.
    pub index: u32,
    /// Its UUID, empty when the source does not give it.
    pub uuid: String,
    /// Die temperature in Celsius; `None` without a sensor.
    pub temperature_c: Option<u32>,
    /// Uncorrected ECC errors since the driver loaded; `None` when ECC is off.
    pub uncorrected_ecc: Option<u64>,
    /// Why the GPU could not be read (a GPU that cannot be read is a failure).
    pub error: Option<String>,
}

/// The failures in a set of readings: a GPU that could not be read, one at `max_temp_c` or
/// hotter, or one with an uncorrected ECC error. Absent readings (no sensor, ECC off) pass.
pub fn reading_failures(readings: &[GpuReading], max_temp_c: u32) -> Vec<String> {
    let mut failures = Vec::new();
    for r in readings {
        let gpu = if r.uuid.is_empty() {
            format!("GPU {}", r.index)
        } else {
            format!("GPU {} ({})", r.index, r.uuid)
        };
        if let Some(e) = &r.error {
            failures.push(format!("{gpu} cannot be read: {e}"));
        }
        if let Some(t) = r.temperature_c
            && t >= max_temp_c
        {
            failures.push(format!("{gpu} at {t} C (limit {max_temp_c} C)"));
        }
        if let Some(n) = r.uncorrected_ecc
            && n > 0
        {
            failures.push(format!("{gpu} has {n} uncorrected ECC errors"));
        }
    }
    failures
}

/// A source of GPU readings: NVML ([`crate::nvml::NvmlProbe`]) or `nvidia-smi`
/// ([`NvidiaSmiProbe`]).
pub trait GpuProbe: Send {
    /// What the probe reads through, for messages.
    fn name(&self) -> &'static str;
    /// Reads every GPU, within `timeout` where the source can be made to wait.
    fn readings(&mut self, timeout: Duration) -> Result<Vec<GpuReading>, String>;
}

/// Reads the GPUs with `nvidia-smi` ([`GPU_HEALTH_QUERY`]).
pub struct NvidiaSmiProbe;

impl GpuProbe for NvidiaSmiProbe {
    fn name(&self) -> &'static str {
        "nvidia-smi"
    }

    fn readings(&mut self, timeout: Duration) -> Result<Vec<GpuReading>, String> {
        let out = run_capture("nvidia-smi", &GPU_HEALTH_QUERY, timeout)
            .map_err(|e| format!("nvidia-smi {}: {e}", GPU_HEALTH_QUERY.join(" ")))?;
        parse_gpu_readings(&out)
    }
}

/// The node's health checks: an optional command, an optional GPU probe, and the events of an
/// optional XID watcher.
pub struct NodeHealth {
    command: Option<String>,
    probe: Option<Box<dyn GpuProbe>>,
    max_gpu_temp_c: u32,
    events: Option<Receiver<GpuEvent>>,
    /// Fatal events seen, in order, once each. They stay failures until the agent restarts:
    /// the GPU needs a reset or repair first, which an operator does with the node drained.
    fatal: Vec<String>,
}

/// What [`NodeHealth::poll_events`] took from the watcher, for the agent's log.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Polled {
    /// XID events, one line each: application and unclassified ones (the node stays up), and
    /// each fatal one when first seen.
    pub xids: Vec<String>,
    /// The watcher's own notes: what it watches, or why it stopped.
    pub notes: Vec<String>,
    /// Whether a new fatal event arrived, so the caller reports at once rather than at the
    /// next interval.
    pub fatal: bool,
}

/// The result of one pass of [`NodeHealth::check`].
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Verdict {
    /// What failed, for the server; `None` when healthy.
    pub failure: Option<String>,
    /// The events taken during the pass.
    pub events: Polled,
}

impl NodeHealth {
    /// Checks with an optional shell command and GPU probe; GPUs at `max_gpu_temp_c` or
    /// hotter fail.
    pub fn new(
        command: Option<String>,
        probe: Option<Box<dyn GpuProbe>>,
        max_gpu_temp_c: u32,
    ) -> Self {
        NodeHealth {
            command,
            probe,
            max_gpu_temp_c,
            events: None,
            fatal: Vec::new(),
        }
    }

    /// Also takes the events a watcher sends on the other end of `events`.
    pub fn with_events(mut self, events: Receiver<GpuEvent>) -> Self {
        self.events = Some(events);
        self
    }

    /// Whether there is anything to check.
    pub fn is_empty(&self) -> bool {
        self.command.is_none() && self.probe.is_none() && self.events.is_none()
    }

    /// What the GPU checks read through (`nvml`, `nvidia-smi`), if there are GPU checks.
    pub fn probe_name(&self) -> Option<&'static str> {
        self.probe.as_ref().map(|p| p.name())
    }

    /// Takes whatever the watcher has sent, without waiting.
    pub fn poll_events(&mut self) -> Polled {
        let mut polled = Polled::default();
        while let Some(rx) = &self.events {
            let event = match rx.try_recv() {
                Ok(e) => e,
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    // The watcher ended and said why in a note; nothing more will come.
                    self.events = None;
                    break;
                }
            };
            let fatal = match event {
                GpuEvent::Xid(x) => match classify(x.xid).0 {
                    XidClass::Fatal => Some(x.to_string()),
                    XidClass::Application => {
                        polled
                            .xids
                            .push(format!("{x} (application error: node stays up)"));
                        None
                    }
                    XidClass::Unclassified => {
                        polled.xids.push(format!("{x} (node stays up)"));
                        None
                    }
                },
                GpuEvent::Lost(what) => Some(what),
                GpuEvent::Note(note) => {
                    polled.notes.push(note);
                    None
                }
            };
            if let Some(f) = fatal
                && !self.fatal.contains(&f)
            {
                polled
                    .xids
                    .push(format!("{f} (the GPU is broken: node drained)"));
                polled.fatal = true;
                self.fatal.push(f);
            }
        }
        polled
    }

    /// Runs every check once; each may take at most `timeout`.
    pub fn check(&mut self, timeout: Duration) -> Verdict {
        let mut failures = Vec::new();
        if let Some(cmd) = &self.command
            && let Some(f) = run_health_command(cmd, timeout)
        {
            failures.push(f);
        }
        if let Some(probe) = &mut self.probe {
            match probe.readings(timeout) {
                Ok(r) => failures.extend(reading_failures(&r, self.max_gpu_temp_c)),
                Err(e) => failures.push(e),
            }
        }
        let events = self.poll_events();
        failures.extend(self.fatal.iter().cloned());
        Verdict {
            failure: (!failures.is_empty()).then(|| failures.join("; ")),
            events,
        }
    }
}

/// Most bytes of a health command's output kept in the failure message.
const OUTPUT_KEPT: usize = 512;

/// Runs `command` with `/bin/sh -c` and waits at most `timeout`. Exit status 0 is healthy;
/// anything else, failing to start, or running past `timeout` (the command's process group is
/// then killed) is a failure naming the status and the start of its output.
pub fn run_health_command(command: &str, timeout: Duration) -> Option<String> {
    let dir = std::env::temp_dir();
    let out = match tempfile_in(&dir) {
        Ok(f) => f,
        Err(e) => {
            return Some(format!(
                "health command: cannot create its output file: {e}"
            ));
        }
    };
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c")
        .arg(command)
        .stdin(Stdio::null())
        .stdout(out.0.try_clone().map_or(Stdio::null(), Stdio::from))
        .stderr(out.0.try_clone().map_or(Stdio::null(), Stdio::from))
        .process_group(0);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return Some(format!("health command {command:?} cannot start: {e}")),
    };
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break Some(s),
            Ok(None) if Instant::now() >= deadline => break None,
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => return Some(format!("health command {command:?}: cannot wait: {e}")),
        }
    };
    // Whatever it started goes with it.
    // SAFETY: kill(2) of the command's own process group (pgid = its pid).
    unsafe {
        libc::kill(-(child.id() as libc::pid_t), libc::SIGKILL);
    }
    let _ = child.wait();
    let output = std::fs::read(&out.1).unwrap_or_default();
    let _ = std::fs::remove_file(&out.1);
    let text = String::from_utf8_lossy(&output[..output.len().min(OUTPUT_KEPT)])
        .trim()
        .replace('\n', " | ");
    let said = if text.is_empty() {
        String::new()
    } else {
        format!(": {text}")
    };
    match status {
        Some(s) if s.success() => None,
        Some(s) => Some(match (s.code(), s.signal()) {
            (Some(c), _) => format!("health command {command:?} exited {c}{said}"),
            (None, Some(sig)) => format!("health command {command:?} killed by signal {sig}{said}"),
            _ => format!("health command {command:?} failed{said}"),
        }),
        None => Some(format!(
            "health command {command:?} ran past its {} s timeout{said}",
            timeout.as_secs()
        )),
    }
}

fn tempfile_in(dir: &std::path::Path) -> std::io::Result<(std::fs::File, std::path::PathBuf)> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    loop {
        let p = dir.join(format!(
            "haneul-health-{}-{}.out",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&p)
        {
            Ok(f) => return Ok((f, p)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
}

/// The `nvidia-smi` query [`parse_gpu_health`] reads.
pub const GPU_HEALTH_QUERY: [&str; 2] = [
    "--query-gpu=index,temperature.gpu,ecc.errors.uncorrected.volatile.total",
    "--format=csv,noheader,nounits",
];

/// Failures in `nvidia-smi` output of [`GPU_HEALTH_QUERY`]: an uncorrected ECC error since the
/// driver loaded, or a temperature of `max_temp_c` or more. `[N/A]` (ECC off, or no sensor)
/// counts as healthy.
pub fn parse_gpu_health(output: &str, max_temp_c: u32) -> Vec<String> {
    match parse_gpu_readings(output) {
        Ok(r) => reading_failures(&r, max_temp_c),
        Err(e) => vec![e],
    }
}

/// The readings in `nvidia-smi` output of [`GPU_HEALTH_QUERY`].
fn parse_gpu_readings(output: &str) -> Result<Vec<GpuReading>, String> {
    let mut readings = Vec::new();
    for line in output.lines().filter(|l| !l.trim().is_empty()) {
        let f: Vec<&str> = line.split(',').map(str::trim).collect();
        let unreadable = || format!("unreadable nvidia-smi line {line:?}");
        let [index, temp, ecc] = f[..] else {
            return Err(unreadable());
        };
        let index = index.parse().map_err(|_| unreadable())?;
        readings.push(GpuReading {
            index,
            temperature_c: temp.parse().ok(),
            uncorrected_ecc: ecc.parse().ok(),
            ..GpuReading::default()
        });
    }
    Ok(readings)
}

fn run_capture(program: &str, args: &[&str], timeout: Duration) -> Result<String, String> {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .map_err(|e| format!("cannot start: {e}"))?;
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("no answer within {} s", timeout.as_secs()));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => return Err(e.to_string()),
        }
    }
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!("exited with {}", out.status));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpu_failures_are_named() {
        let out = "0, 45, 0\n1, 93, 0\n2, 50, 3\n3, [N/A], [N/A]\n";
        assert_eq!(
            parse_gpu_health(out, 90),
            vec![
                "GPU 1 at 93 C (limit 90 C)".to_string(),
                "GPU 2 has 3 uncorrected ECC errors".to_string()
            ]
        );
        assert!(parse_gpu_health("0, 40, 0\n", 90).is_empty());
        assert_eq!(parse_gpu_health("garbage\n", 90).len(), 1);
    }

    #[test]
    fn health_command_status_and_output() {
        let t = Duration::from_secs(5);
        assert_eq!(run_health_command("true", t), None);
        let f = run_health_command("echo disk full >&2; exit 3", t).unwrap();
        assert!(f.contains("exited 3: disk full"), "{f}");
        let f = run_health_command("sleep 5", Duration::from_millis(200)).unwrap();
        assert!(f.contains("ran past its"), "{f}");
    }
}
