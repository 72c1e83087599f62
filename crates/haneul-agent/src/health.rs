//! Node health checks: an operator's health command, and GPU checks (uncorrected ECC errors,
//! temperature) read from `nvidia-smi` when the node has real GPUs.
//!
//! Each check returns `None` when healthy or `Some(what failed)`, a line for people that the
//! server stores as the node's `health` and that drains the node.

use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

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
    let mut failures = Vec::new();
    for line in output.lines().filter(|l| !l.trim().is_empty()) {
        let f: Vec<&str> = line.split(',').map(str::trim).collect();
        let [index, temp, ecc] = f[..] else {
            failures.push(format!("unreadable nvidia-smi line {line:?}"));
            continue;
        };
        if let Ok(t) = temp.parse::<u32>()
            && t >= max_temp_c
        {
            failures.push(format!("GPU {index} at {t} C (limit {max_temp_c} C)"));
        }
        if let Ok(n) = ecc.parse::<u64>()
            && n > 0
        {
            failures.push(format!("GPU {index} has {n} uncorrected ECC errors"));
        }
    }
    failures
}

/// Runs the GPU checks through `nvidia-smi`. `None`: healthy. A missing or failing `nvidia-smi`
/// on a node that found GPUs at start-up is itself a failure.
pub fn gpu_health(max_temp_c: u32, timeout: Duration) -> Option<String> {
    let quoted = GPU_HEALTH_QUERY.join(" ");
    run_capture("nvidia-smi", &GPU_HEALTH_QUERY, timeout)
        .map_err(|e| format!("nvidia-smi {quoted}: {e}"))
        .map(|out| parse_gpu_health(&out, max_temp_c))
        .map_or_else(Some, |f| (!f.is_empty()).then(|| f.join("; ")))
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
