//! Sampling simulated GPUs with real processes: a task in a busy loop reads busy, a sleeping
//! task reads idle, and each one's CPU time is its own.

use haneul_agent::gpus;
use haneul_agent::telemetry::{GpuReader, Holder, SimulatedReader};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// A shell in a process group of its own, as the agent starts tasks.
fn task(script: &str) -> Child {
    Command::new("sh")
        .args(["-c", script])
        .process_group(0)
        .spawn()
        .unwrap()
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn busy_task_reads_busy_and_sleeping_task_reads_idle() {
    let busy = Killed(task("while :; do :; done"));
    let sleeper = Killed(task("sleep 60"));
    let holders = vec![
        Holder {
            job: 1,
            fence: 1,
            task: 0,
            pgid: busy.0.id() as i32,
            gpus: vec![0, 1],
        },
        Holder {
            job: 2,
            fence: 1,
            task: 0,
            pgid: sleeper.0.id() as i32,
            gpus: vec![2],
        },
    ];
    let mut reader = SimulatedReader::new(&gpus::parse_simulated("4xH200").unwrap());
    // The first look sets each task's baseline: CPU time, no GPU sample yet.
    let first = reader.read(&holders, now_ms());
    assert!(first.samples.is_empty(), "{first:?}");
    assert_eq!(first.tasks.len(), 2);
    std::thread::sleep(Duration::from_millis(1500));
    let r = reader.read(&holders, now_ms());
    let util = |job: i64, gpu: u32| {
        r.samples
            .iter()
            .find(|s| s.job == job && s.gpu == gpu)
            .unwrap_or_else(|| panic!("no sample of job {job} GPU {gpu}: {r:?}"))
    };
    let b0 = util(1, 0);
    // One busy core: its first GPU busy (less than 100% on a loaded machine), its second idle.
    assert!(b0.util_pct >= 25, "busy task read {}%", b0.util_pct);
    assert_eq!(util(1, 1).util_pct, 0);
    assert_eq!(b0.uuid, "SIM-H200-0");
    assert!((1000..=3000).contains(&b0.period_ms), "{}", b0.period_ms);
    let s = util(2, 2);
    assert!(s.util_pct < 5, "sleeping task read {}%", s.util_pct);
    // Memory and power follow the utilisation.
    assert!(b0.power_w > s.power_w && b0.mem_mib > s.mem_mib);
    let cpu = |job: i64| r.tasks.iter().find(|t| t.job == job).unwrap().cpu_ms;
    assert!(cpu(1) >= 300, "busy task's CPU time {} ms", cpu(1));
    assert!(cpu(2) < 100, "sleeping task's CPU time {} ms", cpu(2));
    // A task whose processes are gone reads nothing.
    drop(busy);
    let r = reader.read(&holders, now_ms());
    assert!(r.samples.iter().all(|s| s.job != 1), "{r:?}");
}
