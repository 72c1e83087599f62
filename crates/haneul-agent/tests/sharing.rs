//! The MPS control daemons the agent supervises, with a fake `nvidia-cuda-mps-control` (no GPU
//! here): started once per shared GPU with its own directories, restarted when it dies, told to
//! quit at shutdown; and the client environment a fractional task gets.

use haneul_agent::sharing::{MpsSupervisor, mps_dirs};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

/// A stand-in for the control program: `-f` records its environment and stays in the
/// foreground as a daemon would; without it, it records what it was told on standard input,
/// and, as the real daemon does, `start_server -uid U` starts a "server" process owned by U
/// (once per GPU and uid) and `get_server_list` lists the servers' pids.
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
             echo \"control gpu=$CUDA_VISIBLE_DEVICES cmd=$cmd\" >> {log}\n\
             case \"$cmd\" in\n\
               'start_server -uid '*)\n\
                 uid=${{cmd#start_server -uid }}\n\
                 f={dir}/server-$CUDA_VISIBLE_DEVICES-$uid\n\
                 if [ ! -e $f ]; then\n\
                   setpriv --reuid $uid --regid $uid --clear-groups sleep 300 \
             </dev/null >/dev/null 2>&1 &\n\
                   echo $! > $f\n\
                 fi;;\n\
               get_server_list) cat {dir}/server-$CUDA_VISIBLE_DEVICES-* 2>/dev/null;;\n\
             esac\n",
            log = log.display(),
            dir = dir.display()
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

/// The fake servers' pids, to end them.
fn servers(dir: &Path) -> Vec<i32> {
    fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("server-"))
        .filter_map(|e| fs::read_to_string(e.path()).ok()?.trim().parse().ok())
        .collect()
}

fn end_servers(dir: &Path) {
    for pid in servers(dir) {
        // SAFETY: kill(2) of a fake server this test started.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
        }
    }
}

const OWNER: u32 = 200_123;

#[test]
fn one_supervised_daemon_per_shared_gpu() {
    let dir = tempfile::tempdir().unwrap();
    let program = fake_control(dir.path());
    let base = dir.path().join("mps");
    let sup = MpsSupervisor::new(program, base.clone());

    // Two half-GPU tasks on GPU 1, one on GPU 3: one daemon per GPU.
    let env = sup.client(&[1], OWNER, 500, 143_771).unwrap();
    assert!(
        !sup.ensure(1).unwrap(),
        "a running daemon is not started again"
    );
    sup.client(&[1], OWNER, 500, 143_771).unwrap();
    sup.client(&[3], OWNER, 250, 143_771).unwrap();
    let daemons = || {
        lines(dir.path())
            .into_iter()
            .filter(|l| l.starts_with("daemon"))
            .collect::<Vec<_>>()
    };
    wait_for("two daemons", || daemons().len() == 2);
    let (pipe1, log1) = mps_dirs(&base, 1);
    let mut got = daemons();
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
    wait_for("the restart", || daemons().len() == 3);
    assert_ne!(sup.daemon_pid(1), Some(pid));

    // Shutdown says `quit` to each daemon through the control program, then ends them.
    sup.shutdown(Duration::from_millis(200));
    let quits: Vec<String> = lines(dir.path())
        .into_iter()
        .filter(|l| l.ends_with("cmd=quit"))
        .collect();
    assert_eq!(
        quits,
        vec!["control gpu=1 cmd=quit", "control gpu=3 cmd=quit"]
    );
    assert_eq!(sup.daemon_pid(1), None);
    end_servers(dir.path());
}

#[test]
fn the_owners_mps_server_is_held_to_the_share_by_the_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let program = fake_control(dir.path());
    let sup = MpsSupervisor::new(program, dir.path().join("mps"));
    let limits = || {
        lines(dir.path())
            .into_iter()
            .filter(|l| l.contains("cmd=set_"))
            .collect::<Vec<_>>()
    };

    let pid = sup.limit_server(2, OWNER, 500, 143_771).unwrap();
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    assert!(
        status.contains(&format!("Uid:\t{OWNER}\t")),
        "the server found is the owner's: {status}"
    );
    let started: Vec<String> = lines(dir.path())
        .into_iter()
        .filter(|l| l.contains("start_server"))
        .collect();
    assert_eq!(
        started,
        vec![format!("control gpu=2 cmd=start_server -uid {OWNER}")]
    );
    assert_eq!(
        limits(),
        vec![
            format!("control gpu=2 cmd=set_active_thread_percentage {pid} 50"),
            format!("control gpu=2 cmd=set_device_pinned_mem_limit {pid} 0 71885M"),
        ]
    );

    // A smaller task of the same user shares the server and does not shrink it; a larger one
    // raises it.
    assert_eq!(sup.limit_server(2, OWNER, 250, 143_771).unwrap(), pid);
    assert_eq!(limits().len(), 2);
    sup.limit_server(2, OWNER, 750, 143_771).unwrap();
    assert_eq!(
        limits()[2..],
        [
            format!("control gpu=2 cmd=set_active_thread_percentage {pid} 75"),
            format!("control gpu=2 cmd=set_device_pinned_mem_limit {pid} 0 107828M"),
        ]
    );

    // Another user gets a server of its own, with its own limits.
    let other = sup.limit_server(2, OWNER + 1, 125, 80_000).unwrap();
    assert_ne!(other, pid);
    assert!(
        limits().contains(&format!(
            "control gpu=2 cmd=set_active_thread_percentage {other} 13"
        )),
        "{:?}",
        limits()
    );
    end_servers(dir.path());
}

#[test]
fn a_missing_control_program_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let sup = MpsSupervisor::new(dir.path().join("absent"), dir.path().join("mps"));
    let e = sup.client(&[0], OWNER, 500, 1000).unwrap_err().to_string();
    assert!(
        e.contains("MPS control daemon") && e.contains("absent"),
        "{e}"
    );
}
