//! Limit detection on this machine and on fake cgroup trees, and the rlimit fallback applied to
//! a real process.

use haneul_agent::launch::{LimitMechanism, Limits, TaskSpec, become_subreaper, launch_limited};
use haneul_agent::limits::{
    CgroupProbe, CgroupV1, CgroupV2, LimitBackend, ResourceRequest, Rlimits, cgroup1_mount,
    cgroup2_mount, detect,
};
use std::fs;
use std::path::Path;

fn spec(dir: &Path, script: &str) -> TaskSpec {
    become_subreaper().unwrap();
    TaskSpec {
        job_id: "7".into(),
        attempt: 1,
        task: 0,
        program: "/bin/sh".into(),
        args: vec!["-c".into(), script.into()],
        workdir: dir.join("task"),
        gpus: vec![],
        devices: Vec::new(),
        master_addr: "127.0.0.1".into(),
        master_port: 29500,
        world_size: 1,
        rank: 0,
        local_rank: 0,
        node_rank: 0,
        local_world_size: 1,
        env: vec![],
        limits: Limits::default(),
        run_as: None,
        container: None,
    }
}

/// This machine's verdict must agree with what its mount table and cgroup files say: cgroup v2
/// only if the v2 hierarchy exists and offers cpu and memory to this process's cgroup.
#[test]
fn detection_on_this_machine_matches_its_cgroup_files() {
    let probe = CgroupProbe::system();
    let usable = cgroup2_mount(&probe.mountinfo).is_some_and(|m| {
        let rel = haneul_agent::limits::unified_path(&probe.self_cgroup).unwrap_or_default();
        let ctl = fs::read_to_string(
            m.join(rel.trim_start_matches('/'))
                .join("cgroup.controllers"),
        )
        .unwrap_or_default();
        let words: Vec<&str> = ctl.split_whitespace().collect();
        words.contains(&"cpu") && words.contains(&"memory")
    });
    // On a usable host this moves the test process into a leaf of its own cgroup, as the agent
    // does itself; harmless for a test process.
    let d = detect(&probe, None);
    if usable {
        // Detection may still refuse (no permission to create cgroups); it must say why.
        if d.backend.mechanism() == LimitMechanism::Rlimit {
            assert!(d.reason.contains("cannot"), "{}", d.reason);
        }
    } else if v1_writable(&probe) {
        assert_eq!(
            d.backend.mechanism(),
            LimitMechanism::CgroupV1,
            "{}",
            d.reason
        );
        assert!(d.reason.starts_with("cgroup v1 under "), "{}", d.reason);
    } else {
        assert_eq!(
            d.backend.mechanism(),
            LimitMechanism::Rlimit,
            "{}",
            d.reason
        );
        assert!(d.reason.starts_with("rlimits, because "), "{}", d.reason);
    }
}

/// Whether this machine mounts cgroup v1 memory and cpu hierarchies that this process may
/// make cgroups in (root on this CI machine).
fn v1_writable(probe: &CgroupProbe) -> bool {
    ["memory", "cpu"].iter().all(|c| {
        cgroup1_mount(&probe.mountinfo, c).is_some_and(|m| {
            let rel = haneul_agent::limits::v1_path(&probe.self_cgroup, c).unwrap_or_default();
            let d = m
                .join(rel.trim_start_matches('/'))
                .join(format!("haneul-probe-test-{}", std::process::id()));
            let ok = fs::create_dir(&d).is_ok();
            let _ = fs::remove_dir(&d);
            ok
        })
    })
}

/// A hybrid host whose v1 hierarchies are writable (a fake tree): cgroup v1 is picked, and a
/// task's cgroups get the memory, memsw, CPU quota and pids limits.
#[test]
fn writable_v1_hierarchies_are_used_with_the_allotment() {
    let root = tempfile::tempdir().unwrap();
    let unified = root.path().join("sys/fs/cgroup/unified");
    fs::create_dir_all(&unified).unwrap();
    fs::write(unified.join("cgroup.controllers"), "").unwrap();
    let probe = CgroupProbe {
        mountinfo: "35 31 0:32 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n\
                    32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n\
                    39 31 0:36 / /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids\n\
                    41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n"
            .into(),
        self_cgroup: "5:pids:/\n4:memory:/agent\n2:cpu,cpuacct:/\n0::/\n".into(),
        root_prefix: root.path().to_path_buf(),
    };
    let d = detect(&probe, None);
    assert_eq!(
        d.backend.mechanism(),
        LimitMechanism::CgroupV1,
        "{}",
        d.reason
    );
    assert!(
        d.reason.contains("offers no cpu or memory controller"),
        "{}",
        d.reason
    );
    let cg = root.path().join("sys/fs/cgroup");
    let mem = cg.join("memory/agent/haneul-tasks");
    let cpu = cg.join("cpu,cpuacct/haneul-tasks");
    let pids = cg.join("pids/haneul-tasks");
    // Real cgroupfs makes these files with the directory; here the test does.
    for (d, files) in [
        (
            &mem,
            &[
                "memory.limit_in_bytes",
                "memory.memsw.limit_in_bytes",
                "cgroup.procs",
            ][..],
        ),
        (
            &cpu,
            &["cpu.cfs_quota_us", "cpu.cfs_period_us", "cgroup.procs"][..],
        ),
        (&pids, &["pids.max", "cgroup.procs"][..]),
    ] {
        fs::create_dir_all(d.join("job-1-1-0")).unwrap();
        for f in files {
            fs::write(d.join("job-1-1-0").join(f), "").unwrap();
        }
    }
    let v1 = CgroupV1::new(mem.clone(), cpu.clone(), Some(pids.clone()));
    let p = v1
        .prepare(
            "job-1-1-0",
            &ResourceRequest {
                cpu_milli: 2500,
                memory_mib: 512,
                time_limit_s: None,
                pids: 100,
            },
        )
        .unwrap();
    assert_eq!(p.mechanism, Some(LimitMechanism::CgroupV1));
    let read = |d: &Path, f: &str| fs::read_to_string(d.join("job-1-1-0").join(f)).unwrap();
    assert_eq!(
        read(&mem, "memory.limit_in_bytes"),
        (512u64 << 20).to_string()
    );
    assert_eq!(
        read(&mem, "memory.memsw.limit_in_bytes"),
        (512u64 << 20).to_string()
    );
    assert_eq!(read(&cpu, "cpu.cfs_quota_us"), "250000");
    assert_eq!(read(&cpu, "cpu.cfs_period_us"), "100000");
    assert_eq!(read(&pids, "pids.max"), "100");
    assert!(p.cgroup_procs.is_some());
    assert_eq!(p.more_procs.len(), 2);
    assert_eq!(p.v1_dirs.len(), 3);
}

/// The real thing, where this machine has it: a job that forks ten workers, each touching
/// 24 MiB, in a cgroup of 64 MiB. Together they cannot exceed it: the kernel kills workers
/// (the cgroup's peak stays within the limit and its OOM counter rises). Runs the cgroup v2
/// backend where v2 is usable, v1 where v1 is writable (this CI machine, as root), and fails
/// elsewhere rather than pass without checking anything.
#[test]
fn ten_workers_cannot_exceed_the_cgroup_memory_together() {
    let probe = CgroupProbe::system();
    let d = detect(&probe, None);
    let mechanism = d.backend.mechanism();
    assert!(
        matches!(
            mechanism,
            LimitMechanism::CgroupV1 | LimitMechanism::CgroupV2
        ),
        "this test needs a writable cgroup (run it as root): {}",
        d.reason
    );
    let dir = tempfile::tempdir().unwrap();
    let name = format!("job-test-{}-1-0", std::process::id());
    let limit_mib = 64;
    let p = d
        .backend
        .prepare(
            &name,
            &ResourceRequest {
                cpu_milli: 1000,
                memory_mib: limit_mib,
                time_limit_s: None,
                pids: 64,
            },
        )
        .unwrap();
    let cgroup = p
        .cgroup_dir
        .clone()
        .or_else(|| p.v1_dirs.first().cloned())
        .unwrap();
    // Each worker writes its 24 MiB (a str of 'x's is really written, unlike calloc's zero
    // pages), reports, and holds it for a while.
    let worker = "import time; b = 'x' * (24 << 20); print('worker holds 24 MiB', flush=True); time.sleep(3)";
    let script = format!(
        "for i in 0 1 2 3 4 5 6 7 8 9; do /usr/bin/python3 -c \"{worker}\" & pids=\"$pids $!\"; \
         done; ok=0; for p in $pids; do wait $p && ok=$((ok+1)); done; echo survivors=$ok"
    );
    let mut t = launch_limited(&spec(dir.path(), &script), p).unwrap();
    assert_eq!(t.limits, mechanism);
    t.wait().unwrap();
    let out = fs::read_to_string(t.stdout_path()).unwrap();
    let (peak_file, events) = match mechanism {
        LimitMechanism::CgroupV2 => ("memory.peak", "memory.events"),
        _ => ("memory.max_usage_in_bytes", "memory.oom_control"),
    };
    let peak: u64 = fs::read_to_string(cgroup.join(peak_file))
        .unwrap_or_default()
        .trim()
        .parse()
        .unwrap_or(0);
    let ev = fs::read_to_string(cgroup.join(events)).unwrap_or_default();
    d.backend.release(t.prepared());
    let survivors: u32 = out
        .lines()
        .find_map(|l| l.strip_prefix("survivors="))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(99);
    let oom_kills: u64 = ev
        .lines()
        .find_map(|l| l.strip_prefix("oom_kill "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0);
    eprintln!(
        "{}: peak {} MiB of {limit_mib} MiB, {survivors} of 10 workers survived, {oom_kills} OOM kills",
        mechanism.as_str(),
        peak >> 20
    );
    assert!(
        survivors < 10,
        "all ten workers held 24 MiB each in 64 MiB: {out}"
    );
    assert!(oom_kills > 0, "no OOM kill recorded in {events}: {ev}");
    if peak > 0 {
        assert!(peak <= (limit_mib << 20), "peak {peak} over the limit");
    }
    assert!(!cgroup.exists(), "the task's cgroup was not removed");
}

/// A hybrid host as this CI machine has it: cgroup v1 controllers, an empty v2 hierarchy.
#[test]
fn empty_unified_hierarchy_falls_back_to_rlimits() {
    let root = tempfile::tempdir().unwrap();
    let unified = root.path().join("sys/fs/cgroup/unified");
    fs::create_dir_all(&unified).unwrap();
    fs::write(unified.join("cgroup.controllers"), "").unwrap();
    let probe = CgroupProbe {
        mountinfo: "35 31 0:32 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n\
                    41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n"
            .into(),
        self_cgroup: "4:memory:/x\n0::/\n".into(),
        root_prefix: root.path().to_path_buf(),
    };
    let d = detect(&probe, None);
    assert_eq!(d.backend.mechanism(), LimitMechanism::Rlimit);
    assert!(
        d.reason.contains("offers no cpu or memory controller"),
        "{}",
        d.reason
    );

    let none = CgroupProbe {
        mountinfo: "1 0 0:1 / / rw - ext4 /dev/sda1 rw\n".into(),
        ..probe
    };
    let d = detect(&none, None);
    assert_eq!(d.backend.mechanism(), LimitMechanism::Rlimit);
    assert!(d.reason.contains("no cgroup v2 hierarchy"), "{}", d.reason);
}

/// A pure cgroup v2 host with a delegated parent: detection picks cgroup v2 and a task's cgroup
/// gets the right cpu.max and memory.max (a plain directory stands in for cgroupfs).
#[test]
fn delegated_cgroup_parent_is_used_and_gets_the_allotment() {
    let root = tempfile::tempdir().unwrap();
    let parent = root.path().join("sys/fs/cgroup/haneul.slice");
    fs::create_dir_all(&parent).unwrap();
    fs::write(
        parent.join("cgroup.controllers"),
        "cpuset cpu io memory pids\n",
    )
    .unwrap();
    fs::write(parent.join("cgroup.subtree_control"), "cpu memory\n").unwrap();
    let probe = CgroupProbe {
        mountinfo: "30 1 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n".into(),
        self_cgroup: "0::/haneul.slice\n".into(),
        root_prefix: root.path().to_path_buf(),
    };
    let d = detect(&probe, Some(&parent));
    assert_eq!(
        d.backend.mechanism(),
        LimitMechanism::CgroupV2,
        "{}",
        d.reason
    );

    let cg = CgroupV2::new(parent.clone());
    // Real cgroupfs creates these files with the directory; here the test does.
    let dir = parent.join("job-1-1-0");
    fs::create_dir(&dir).unwrap();
    for f in ["cpu.max", "memory.max", "memory.swap.max", "cgroup.procs"] {
        fs::write(dir.join(f), "").unwrap();
    }
    let p = cg
        .prepare(
            "job-1-1-0",
            &ResourceRequest {
                cpu_milli: 2500,
                memory_mib: 512,
                time_limit_s: None,
                pids: 0,
            },
        )
        .unwrap();
    assert_eq!(p.mechanism, Some(LimitMechanism::CgroupV2));
    assert_eq!(
        fs::read_to_string(dir.join("cpu.max")).unwrap(),
        "250000 100000"
    );
    assert_eq!(
        fs::read_to_string(dir.join("memory.max")).unwrap(),
        (512u64 << 20).to_string()
    );
    assert_eq!(
        fs::read_to_string(dir.join("memory.swap.max")).unwrap(),
        "0"
    );
    assert!(p.cgroup_procs.is_some());

    // Without cpu and memory delegated, an explicit parent is refused with the reason.
    fs::write(parent.join("cgroup.subtree_control"), "").unwrap();
    let d = detect(&probe, Some(&parent));
    assert_eq!(d.backend.mechanism(), LimitMechanism::Rlimit);
    assert!(
        d.reason.contains("does not enable cpu and memory"),
        "{}",
        d.reason
    );
}

/// The fallback really limits the process: its data segment and CPU time, as the shell sees them.
#[test]
fn rlimit_fallback_applies_memory_and_cpu_time() {
    let dir = tempfile::tempdir().unwrap();
    let p = Rlimits
        .prepare(
            "job-7-1-0",
            &ResourceRequest {
                cpu_milli: 2000,
                memory_mib: 256,
                time_limit_s: Some(30),
                pids: 0,
            },
        )
        .unwrap();
    let mut t = launch_limited(&spec(dir.path(), "ulimit -d; ulimit -t"), p).unwrap();
    assert_eq!(t.limits, LimitMechanism::Rlimit);
    assert!(t.wait().unwrap().success());
    let out = fs::read_to_string(t.stdout_path()).unwrap();
    // ulimit -d is in KiB; -t in seconds (2 cores x 30 s).
    assert_eq!(out, format!("{}\n60\n", 256 * 1024), "{out:?}");

    // A task that allocates past its memory fails instead of taking the node's memory.
    let p = Rlimits
        .prepare(
            "job-7-1-1",
            &ResourceRequest {
                cpu_milli: 0,
                memory_mib: 16,
                time_limit_s: None,
                pids: 0,
            },
        )
        .unwrap();
    let mut t = launch_limited(
        &spec(
            dir.path(),
            "/usr/bin/python3 -c 'b = bytearray(64 << 20); print(\"allocated\")'",
        ),
        p,
    )
    .unwrap();
    let status = t.wait().unwrap();
    let out = fs::read_to_string(t.stdout_path()).unwrap();
    assert!(
        !status.success() && !out.contains("allocated"),
        "{status:?} {out:?}"
    );
}
