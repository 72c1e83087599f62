//! Real-process tests of task launching, stopping and time limits (using /bin/sh).

use haneul_agent::gpus::parse_simulated;
use haneul_agent::launch::{
    LimitMechanism, Limits, Outcome, TaskSpec, become_subreaper, group_alive, launch,
};
use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::time::{Duration, Instant};

fn spec(dir: &Path, script: &str) -> TaskSpec {
    become_subreaper().unwrap();
    TaskSpec {
        job_id: "job-42".into(),
        attempt: 3,
        task: 1,
        program: "/bin/sh".into(),
        args: vec!["-c".into(), script.into()],
        workdir: dir.join("task"),
        gpus: vec![2, 5],
        devices: Vec::new(),
        master_addr: "10.0.0.7".into(),
        master_port: 29500,
        world_size: 16,
        rank: 9,
        local_rank: 1,
        node_rank: 1,
        local_world_size: 8,
        env: vec![("USER_VAR".into(), "x".into())],
        limits: Limits::default(),
        run_as: None,
        container: None,
    }
}

fn wait_for(path: &Path, within: Duration) -> bool {
    let end = Instant::now() + within;
    while Instant::now() < end {
        if path.exists() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

#[test]
fn task_sees_its_gpus_and_torchrun_environment() {
    let dir = tempfile::tempdir().unwrap();
    let mut t = launch(&spec(dir.path(), "env")).unwrap();
    assert_eq!(t.limits, LimitMechanism::None);
    assert!(t.wait().unwrap().success());
    let out = std::fs::read_to_string(t.stdout_path()).unwrap();
    let env: BTreeMap<&str, &str> = out.lines().filter_map(|l| l.split_once('=')).collect();
    let ckpt = t.checkpoint_file().to_str().unwrap().to_string();
    let expect = [
        ("CUDA_VISIBLE_DEVICES", "2,5"),
        ("NVIDIA_VISIBLE_DEVICES", "2,5"),
        ("CUDA_DEVICE_ORDER", "PCI_BUS_ID"),
        ("MASTER_ADDR", "10.0.0.7"),
        ("MASTER_PORT", "29500"),
        ("WORLD_SIZE", "16"),
        ("RANK", "9"),
        ("LOCAL_RANK", "1"),
        ("NODE_RANK", "1"),
        ("LOCAL_WORLD_SIZE", "8"),
        ("HANEUL_JOB_ID", "job-42"),
        ("HANEUL_ATTEMPT", "3"),
        ("HANEUL_TASK", "1"),
        ("HANEUL_CHECKPOINT_FILE", ckpt.as_str()),
        ("USER_VAR", "x"),
    ];
    for (k, v) in expect {
        assert_eq!(env.get(k).copied(), Some(v), "{k} in\n{out}");
    }
    // Nothing else GPU-related leaks from the agent's own environment.
    let gpu_vars: Vec<_> = env
        .keys()
        .filter(|k| k.contains("VISIBLE_DEVICES"))
        .collect();
    assert_eq!(gpu_vars.len(), 2, "{out}");
    assert!(!t.checkpoint_file().exists());
}

#[test]
fn mig_instances_are_named_to_cuda_by_their_uuid() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = spec(dir.path(), "env");
    s.devices = vec!["MIG-aaaa".into(), "MIG-bbbb".into()];
    let mut t = launch(&s).unwrap();
    assert!(t.wait().unwrap().success());
    let out = std::fs::read_to_string(t.stdout_path()).unwrap();
    assert!(
        out.contains("\nCUDA_VISIBLE_DEVICES=MIG-aaaa,MIG-bbbb\n"),
        "{out}"
    );
    assert!(
        out.contains("\nNVIDIA_VISIBLE_DEVICES=MIG-aaaa,MIG-bbbb\n"),
        "{out}"
    );
}

#[test]
fn simulated_gpus_assigned_to_two_tasks_are_disjoint() {
    let dir = tempfile::tempdir().unwrap();
    let gpus = parse_simulated("8xH200").unwrap();
    let mut seen = Vec::new();
    for (i, chunk) in gpus.chunks(4).enumerate() {
        let mut s = spec(
            &dir.path().join(i.to_string()),
            "echo $CUDA_VISIBLE_DEVICES",
        );
        s.gpus = chunk.iter().map(|g| g.index).collect();
        let mut t = launch(&s).unwrap();
        assert!(t.wait().unwrap().success());
        seen.push(std::fs::read_to_string(t.stdout_path()).unwrap());
    }
    assert_eq!(seen, ["0,1,2,3\n", "4,5,6,7\n"]);
}

#[test]
fn stdout_and_stderr_land_in_their_files() {
    let dir = tempfile::tempdir().unwrap();
    let mut t = launch(&spec(dir.path(), "echo to-out; echo to-err >&2; exit 3")).unwrap();
    assert_eq!(t.wait().unwrap().code(), Some(3));
    assert_eq!(
        std::fs::read_to_string(t.stdout_path()).unwrap(),
        "to-out\n"
    );
    assert_eq!(
        std::fs::read_to_string(t.stderr_path()).unwrap(),
        "to-err\n"
    );
}

#[test]
fn stop_leaves_no_process_of_the_group() {
    let dir = tempfile::tempdir().unwrap();
    let mut t = launch(&spec(
        dir.path(),
        "sleep 300 & sleep 300 & echo started; wait",
    ))
    .unwrap();
    assert_eq!(t.pgid(), t.pid());
    assert!(wait_for(&t.stdout_path(), Duration::from_secs(2)));
    let end = Instant::now() + Duration::from_secs(2);
    while std::fs::read_to_string(t.stdout_path()).unwrap().is_empty() && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(group_alive(t.pgid()));
    let started = Instant::now();
    t.stop(Duration::from_secs(2)).unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "sh and sleep obey SIGTERM"
    );
    assert!(t.checkpoint_file().exists());
    // SAFETY: existence check only.
    let rc = unsafe { libc::kill(-t.pgid(), 0) };
    assert_eq!(rc, -1);
    assert_eq!(
        std::io::Error::last_os_error().raw_os_error(),
        Some(libc::ESRCH)
    );
}

#[test]
fn trapping_task_gets_its_grace() {
    let dir = tempfile::tempdir().unwrap();
    let script = "trap 'echo saving > saved; test -f \"$HANEUL_CHECKPOINT_FILE\" && echo checkpoint-seen >> saved; \
                  sleep 0.3; echo done >> saved; exit 0' TERM; \
                  echo ready > ready; while :; do sleep 0.05; done";
    let mut t = launch(&spec(dir.path(), script)).unwrap();
    assert!(wait_for(&t.workdir().join("ready"), Duration::from_secs(2)));
    let started = Instant::now();
    let status = t.stop(Duration::from_secs(3)).unwrap();
    assert!(status.success(), "{status:?}");
    assert!(started.elapsed() < Duration::from_secs(3));
    let saved = std::fs::read_to_string(t.workdir().join("saved")).unwrap();
    assert_eq!(saved, "saving\ncheckpoint-seen\ndone\n");
    assert!(!group_alive(t.pgid()));
}

#[test]
fn task_ignoring_sigterm_is_killed_after_grace() {
    let dir = tempfile::tempdir().unwrap();
    let script = "trap '' TERM; echo ready > ready; while :; do sleep 0.05; done";
    let mut t = launch(&spec(dir.path(), script)).unwrap();
    assert!(wait_for(&t.workdir().join("ready"), Duration::from_secs(2)));
    let started = Instant::now();
    let status = t.stop(Duration::from_millis(500)).unwrap();
    let took = started.elapsed();
    assert_eq!(status.signal(), Some(libc::SIGKILL), "{status:?}");
    assert!(took >= Duration::from_millis(500), "{took:?}");
    assert!(took < Duration::from_secs(3), "{took:?}");
    assert!(!group_alive(t.pgid()));
}

#[test]
fn time_limit_kills_and_reports_timed_out() {
    let dir = tempfile::tempdir().unwrap();
    let mut t = launch(&spec(dir.path(), "sleep 300")).unwrap();
    let started = Instant::now();
    let outcome = t
        .wait_with_limit(Duration::from_millis(300), Duration::from_millis(500))
        .unwrap();
    assert!(matches!(outcome, Outcome::TimedOut(_)), "{outcome:?}");
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(!group_alive(t.pgid()));

    let mut quick = launch(&spec(&dir.path().join("q"), "exit 0")).unwrap();
    let outcome = quick
        .wait_with_limit(Duration::from_secs(5), Duration::from_millis(100))
        .unwrap();
    assert!(matches!(outcome, Outcome::Exited(s) if s.success()));
}

#[test]
fn leftovers_of_an_exited_task_are_killed() {
    let dir = tempfile::tempdir().unwrap();
    let mut t = launch(&spec(dir.path(), "sleep 300 & exit 0")).unwrap();
    let outcome = t
        .wait_with_limit(Duration::from_secs(5), Duration::from_millis(100))
        .unwrap();
    assert!(matches!(outcome, Outcome::Exited(s) if s.success()));
    assert!(!group_alive(t.pgid()));
}

#[test]
fn rlimits_are_applied() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = spec(dir.path(), "ulimit -n; ulimit -t");
    s.limits = Limits {
        open_files: Some(64),
        cpu_seconds: Some(100),
        address_space_bytes: Some(8 << 30),
    };
    let mut t = launch(&s).unwrap();
    assert_eq!(t.limits, LimitMechanism::Rlimit);
    assert_eq!(t.limits.as_str(), "rlimit");
    assert!(t.wait().unwrap().success());
    assert_eq!(
        std::fs::read_to_string(t.stdout_path()).unwrap(),
        "64\n100\n"
    );
}

#[test]
fn bad_simulated_gpus_are_clear_errors() {
    let e = parse_simulated("8H200").unwrap_err().to_string();
    assert!(
        e.contains("--simulate-gpus") && e.contains("8H200") && e.contains("8xH200"),
        "{e}"
    );
    let e = parse_simulated("0xH200").unwrap_err().to_string();
    assert!(e.contains("at least 1"), "{e}");
}

#[test]
fn agent_variables_cannot_be_overridden() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = spec(dir.path(), "true");
    s.env
        .push(("CUDA_VISIBLE_DEVICES".into(), "0,1,2,3".into()));
    let e = launch(&s).unwrap_err().to_string();
    assert!(e.contains("CUDA_VISIBLE_DEVICES"), "{e}");
}

#[test]
fn exit_status_is_kept_in_the_work_directory() {
    use haneul_agent::launch::read_exit_file;
    let dir = tempfile::tempdir().unwrap();
    let mut t = launch(&spec(dir.path(), "echo hi; exit 7")).unwrap();
    assert_eq!(t.wait().unwrap().code(), Some(7));
    assert_eq!(read_exit_file(t.workdir()).unwrap().code(), Some(7));
    assert_eq!(std::fs::read_to_string(t.stdout_path()).unwrap(), "hi\n");
    // Killed by a signal: the agent's wait and the file both say so.
    let mut t = launch(&spec(dir.path(), "kill -KILL $$")).unwrap();
    assert_eq!(t.wait().unwrap().signal(), Some(libc::SIGKILL));
    assert_eq!(
        read_exit_file(t.workdir()).unwrap().signal(),
        Some(libc::SIGKILL)
    );
}

#[test]
fn a_running_task_can_be_adopted_by_pid_and_start_time() {
    use haneul_agent::launch::adopt;
    let dir = tempfile::tempdir().unwrap();
    let mut t = launch(&spec(dir.path(), "sleep 0.5; exit 4")).unwrap();
    let ticks = t.start_ticks().expect("start time read from /proc");
    // Another start time: the pid is taken to belong to some later process.
    assert!(adopt(t.pid(), ticks + 1, t.workdir(), LimitMechanism::None).is_none());
    let mut adopted = adopt(t.pid(), ticks, t.workdir(), LimitMechanism::None).unwrap();
    assert_eq!(adopted.pgid(), t.pgid());
    // The original handle reaps; the adopted one learns the status from the file.
    assert_eq!(t.wait().unwrap().code(), Some(4));
    assert_eq!(adopted.wait().unwrap().code(), Some(4));
    assert!(!adopted.status_lost());
    drop(t);
    assert!(
        adopt(
            adopted.pid(),
            ticks,
            adopted.workdir(),
            LimitMechanism::None
        )
        .is_none()
    );
}

#[test]
fn a_program_that_cannot_start_is_an_error_not_a_hang() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = spec(dir.path(), "");
    s.program = "/nonexistent/program".into();
    let started = Instant::now();
    let err = launch(&s).unwrap_err().to_string();
    assert!(err.contains("cannot start /nonexistent/program"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(2));
}
