//! The MPS control daemons the agent supervises, with a fake `nvidia-cuda-mps-control` (no GPU
//! here): started once per shared GPU with its own directories, restarted when it dies, told to
//! quit at shutdown; and the client environment a fractional task gets.

use haneul_agent::sharing::{MpsSupervisor, mps_dirs};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

/// A stand-in for the control program: `-f` records its environment and stays in the
/// foreground as a daemon would; without it, it records what it was told on standard input.
fn fake_control(dir: &Path) -> std::path::PathBuf {
    let log = dir.join("calls.log");
    let script = dir.join("nvidia-cuda-mps-control");
    fs::write(
        &script,
        format!(
            "#!/bin/sh\n\
             if [ \"$1\" = -f ]; then\n\
               echo \"daemon gpu=$CUDA_VISIBLE_DEVICES pipe=$CUDA_MPS_PIPE_DIRECTORY \
             log=$CUDA_MPS_LOG_DIRECTORY\" >> {log}\n\
               exec sleep 300\n\
             fi\n\
             read cmd\n\
             echo \"control gpu=$CUDA_VISIBLE_DEVICES cmd=$cmd\" >> {log}\n",
            log = log.display()
        ),
    )
    .unwrap();
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
    script
}

fn lines(dir: &Path) -> Vec<String> {
    fs::read_to_string(dir.join("calls.log"))
        .unwrap_or_default()
        .lines()
        .map(String::from)
        .collect()
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let until = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn one_supervised_daemon_per_shared_gpu() {
    let dir = tempfile::tempdir().unwrap();
    let program = fake_control(dir.path());
    let base = dir.path().join("mps");
    let sup = MpsSupervisor::new(program, base.clone());

    // Two half-GPU tasks on GPU 1, one on GPU 3: one daemon per GPU.
    let env = sup.client(&[1], 500, 143_771).unwrap();
    assert!(
        !sup.ensure(1).unwrap(),
        "a running daemon is not started again"
    );
    sup.client(&[1], 500, 143_771).unwrap();
    sup.client(&[3], 250, 143_771).unwrap();
    wait_for("two daemons", || lines(dir.path()).len() == 2);
    let (pipe1, log1) = mps_dirs(&base, 1);
    let mut got = lines(dir.path());
    got.sort();
    assert_eq!(
        got,
        vec![
            format!(
                "daemon gpu=1 pipe={} log={}",
                pipe1.display(),
                log1.display()
            ),
            format!(
                "daemon gpu=3 pipe={} log={}",
                mps_dirs(&base, 3).0.display(),
                mps_dirs(&base, 3).1.display()
            ),
        ]
    );
    // Clients of every owner reach the pipe directory.
    let mode = fs::metadata(&pipe1).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o755);
    let env: std::collections::BTreeMap<_, _> = env.into_iter().collect();
    assert_eq!(env["CUDA_MPS_PIPE_DIRECTORY"], pipe1.display().to_string());
    assert_eq!(env["CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"], "50");
    assert_eq!(env["CUDA_MPS_PINNED_DEVICE_MEM_LIMIT"], "0=71885M");

    // A daemon that dies is started again at the next task.
    let pid = sup.daemon_pid(1).unwrap();
    // SAFETY: kill(2) of the fake daemon this test started.
    unsafe {
        libc::kill(pid as i32, libc::SIGKILL);
    }
    wait_for("the daemon's end", || sup.daemon_pid(1).is_none());
    assert!(sup.ensure(1).unwrap(), "restarted");
    wait_for("the restart", || lines(dir.path()).len() == 3);
    assert_ne!(sup.daemon_pid(1), Some(pid));

    // Shutdown says `quit` to each daemon through the control program, then ends them.
    sup.shutdown(Duration::from_millis(200));
    let quits: Vec<String> = lines(dir.path())
        .into_iter()
        .filter(|l| l.starts_with("control"))
        .collect();
    assert_eq!(
        quits,
        vec!["control gpu=1 cmd=quit", "control gpu=3 cmd=quit"]
    );
    assert_eq!(sup.daemon_pid(1), None);
}

#[test]
fn a_missing_control_program_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let sup = MpsSupervisor::new(dir.path().join("absent"), dir.path().join("mps"));
    let e = sup.client(&[0], 500, 1000).unwrap_err().to_string();
    assert!(
        e.contains("MPS control daemon") && e.contains("absent"),
        "{e}"
    );
}
