//! Limit detection on this machine and on fake cgroup trees, and the rlimit fallback applied to
//! a real process.

use haneul_agent::launch::{LimitMechanism, Limits, TaskSpec, become_subreaper, launch_limited};
use haneul_agent::limits::{
    CgroupProbe, CgroupV2, LimitBackend, ResourceRequest, Rlimits, cgroup2_mount, detect,
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
