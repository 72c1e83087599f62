//! GPU telemetry on the node: every interval, each GPU a running task holds is sampled (SM
//! utilisation, memory, power, temperature) and attributed to that task, and each task's CPU
//! time is read; the node loop sends them to the server in one batch.
//!
//! Real GPUs are read through NVML ([`NvmlReader`]): device figures for a GPU one task holds;
//! for a GPU several tasks share (MPS), each task's memory and SM share from NVML's
//! per-process figures, its processes found by process group. Simulated GPUs
//! ([`SimulatedReader`]) follow the task's own CPU use, so that everything above the agent is
//! testable without a GPU: each busy CPU core of the task keeps one of its GPUs busy (a busy
//! loop reads near 100% on its first GPU, a sleeping task near 0%), and memory, power and
//! temperature follow the utilisation.

use haneul_api::{GpuSample, TaskCpu};
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Instant;

/// A task holding GPUs, as the sampler sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub job: i64,
    pub fence: i64,
    pub task: i64,
    /// The task's process group (its processes are found by it).
    pub pgid: i32,
    /// Indexes of the GPUs it holds on this node.
    pub gpus: Vec<u32>,
}

/// The tasks running on the node, kept by the task threads, read by the sampler.
#[derive(Debug, Default)]
pub struct Holders {
    tasks: Mutex<BTreeMap<(i64, i64, i64), Holder>>,
}

impl Holders {
    pub fn add(&self, h: Holder) {
        if let Ok(mut t) = self.tasks.lock() {
            t.insert((h.job, h.fence, h.task), h);
        }
    }

    pub fn remove(&self, job: i64, fence: i64, task: i64) {
        if let Ok(mut t) = self.tasks.lock() {
            t.remove(&(job, fence, task));
        }
    }

    /// The holders, in (job, fence, task) order.
    pub fn list(&self) -> Vec<Holder> {
        self.tasks
            .lock()
            .map(|t| t.values().cloned().collect())
            .unwrap_or_default()
    }
}

/// CPU time of a process group so far, in clock ticks: its live processes' own time and the
/// time of the children they reaped. `None` when no process of the group is left.
pub fn group_cpu_ticks(pgid: i32) -> Option<u64> {
    let mut total = 0u64;
    let mut found = false;
    let dir = std::fs::read_dir("/proc").ok()?;
    for e in dir.flatten() {
        let name = e.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        if let Some((pgrp, ticks)) = parse_stat(&stat)
            && pgrp == pgid
        {
            found = true;
            total += ticks;
        }
    }
    found.then_some(total)
}

/// The process group and CPU ticks (utime + stime + cutime + cstime) of one `/proc/PID/stat`
/// line. The command name may hold spaces and parentheses: fields are counted after the last
/// `)`.
pub fn parse_stat(stat: &str) -> Option<(i32, u64)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let pgrp = f.get(2)?.parse().ok()?;
    let ticks = f
        .get(11..15)?
        .iter()
        .map(|v| v.parse::<i64>().ok().map(|t| t.max(0) as u64))
        .sum::<Option<u64>>()?;
    Some((pgrp, ticks))
}

fn clock_ticks_per_second() -> u64 {
    // SAFETY: sysconf only reads a system constant.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as u64 } else { 100 }
}

/// What one interval's sampling gives.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Reading {
    pub samples: Vec<GpuSample>,
    pub tasks: Vec<TaskCpu>,
}

/// Takes one sample of every held GPU.
pub trait GpuReader: Send {
    fn read(&mut self, holders: &[Holder], at_ms: i64) -> Reading;
}

/// Per task: CPU ticks at the last sample and when; the first sample of a task has no
/// previous figure and reads its CPU use since it started.
#[derive(Debug, Default)]
struct CpuTracker {
    last: BTreeMap<(i64, i64, i64), (u64, Instant, i64)>,
    tck: u64,
}

impl CpuTracker {
    /// Busy cores over the last interval, the task's CPU ms so far, and the interval in ms.
    fn sample(&mut self, h: &Holder, at_ms: i64) -> Option<(f64, i64, i64)> {
        if self.tck == 0 {
            self.tck = clock_ticks_per_second();
        }
        let ticks = group_cpu_ticks(h.pgid)?;
        let now = Instant::now();
        let key = (h.job, h.fence, h.task);
        let cpu_ms = (ticks * 1000 / self.tck) as i64;
        let out = match self.last.get(&key) {
            Some(&(t0, i0, at0)) => {
                let secs = now.duration_since(i0).as_secs_f64().max(1e-3);
                let busy = ticks.saturating_sub(t0) as f64 / self.tck as f64 / secs;
                Some((busy, cpu_ms, (at_ms - at0).max(1)))
            }
            None => None,
        };
        self.last.insert(key, (ticks, now, at_ms));
        // The first look only sets the baseline: a rate needs two.
        out.or(Some((f64::NAN, cpu_ms, 0)))
    }

    fn forget_others(&mut self, holders: &[Holder]) {
        self.last
            .retain(|k, _| holders.iter().any(|h| (h.job, h.fence, h.task) == *k));
    }
}

/// Simulated GPUs: utilisation from the task's CPU use (see the module's doc).
pub struct SimulatedReader {
    cpu: CpuTracker,
    /// UUID and memory (MiB) of each GPU, by index.
    gpus: BTreeMap<u32, (String, u64)>,
}

/// Memory of a simulated GPU whose size is not given (an H100's).
const SIMULATED_MEMORY_MIB: u64 = 80 * 1024;

impl SimulatedReader {
    pub fn new(inventory: &[crate::gpus::Gpu]) -> Self {
        SimulatedReader {
            cpu: CpuTracker::default(),
            gpus: inventory
                .iter()
                .map(|g| {
                    (
                        g.index,
                        (g.uuid.clone(), g.memory_mib.unwrap_or(SIMULATED_MEMORY_MIB)),
                    )
                })
                .collect(),
        }
    }
}

/// The utilisation of the `i`-th GPU of a task keeping `busy` cores busy: the cores fill its
/// GPUs in order.
pub fn simulated_util(busy: f64, i: usize) -> u32 {
    (busy * 100.0 - i as f64 * 100.0).clamp(0.0, 100.0).round() as u32
}

impl GpuReader for SimulatedReader {
    fn read(&mut self, holders: &[Holder], at_ms: i64) -> Reading {
        self.cpu.forget_others(holders);
        let mut out = Reading::default();
        for h in holders {
            let Some((busy, cpu_ms, period_ms)) = self.cpu.sample(h, at_ms) else {
                continue;
            };
            out.tasks.push(TaskCpu {
                job: h.job,
                fence: h.fence,
                task: h.task,
                cpu_ms,
            });
            if busy.is_nan() {
                continue;
            }
            for (i, &gpu) in h.gpus.iter().enumerate() {
                let (uuid, total) = self
                    .gpus
                    .get(&gpu)
                    .cloned()
                    .unwrap_or_else(|| (format!("SIM-{gpu}"), SIMULATED_MEMORY_MIB));
                let util = simulated_util(busy, i);
                out.samples.push(GpuSample {
                    job: h.job,
                    fence: h.fence,
                    task: h.task,
                    gpu,
                    uuid,
                    at_ms,
                    period_ms,
                    util_pct: util,
                    // A context's worth when idle, most of the memory when busy.
                    mem_mib: 500 + total * 7 / 10 * u64::from(util) / 100,
                    // An H100's idle and board power.
                    power_w: 70 + 630 * util / 100,
                    temp_c: 32 + 45 * util / 100,
                });
            }
        }
        out
    }
}

/// Real GPUs through NVML.
pub struct NvmlReader {
    nvml: nvml_wrapper::Nvml,
    cpu: CpuTracker,
    /// Per GPU, NVML's timestamp of the last per-process sample read.
    last_seen: BTreeMap<u32, u64>,
}

impl NvmlReader {
    pub fn open(library: &std::ffi::OsStr) -> Result<Self, String> {
        Ok(NvmlReader {
            nvml: crate::nvml::open(library)?,
            cpu: CpuTracker::default(),
            last_seen: BTreeMap::new(),
        })
    }
}

/// The process group of `pid`, from `/proc`.
fn pgrp_of(pid: u32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&stat).map(|(g, _)| g)
}

impl GpuReader for NvmlReader {
    fn read(&mut self, holders: &[Holder], at_ms: i64) -> Reading {
        self.cpu.forget_others(holders);
        let mut out = Reading::default();
        let mut periods: BTreeMap<(i64, i64, i64), i64> = BTreeMap::new();
        for h in holders {
            if let Some((_, cpu_ms, period)) = self.cpu.sample(h, at_ms) {
                periods.insert((h.job, h.fence, h.task), period);
                out.tasks.push(TaskCpu {
                    job: h.job,
                    fence: h.fence,
                    task: h.task,
                    cpu_ms,
                });
            }
        }
        // Which tasks hold each GPU.
        let mut by_gpu: BTreeMap<u32, Vec<&Holder>> = BTreeMap::new();
        for h in holders {
            for &g in &h.gpus {
                by_gpu.entry(g).or_default().push(h);
            }
        }
        for (gpu, on) in by_gpu {
            let Ok(d) = self.nvml.device_by_index(gpu) else {
                continue;
            };
            let uuid = d.uuid().unwrap_or_else(|_| format!("GPU-{gpu}"));
            let util = d.utilization_rates().map(|u| u.gpu).unwrap_or(0);
            let mem = d.memory_info().map(|m| m.used >> 20).unwrap_or(0);
            let power = d.power_usage().map(|mw| mw / 1000).unwrap_or(0);
            let temp = d
                .temperature(nvml_wrapper::enum_wrappers::device::TemperatureSensor::Gpu)
                .unwrap_or(0);
            // A shared GPU: each task's share from NVML's per-process accounting.
            let mut shares: BTreeMap<i32, (u32, u64)> = BTreeMap::new();
            if on.len() > 1 {
                let since = self.last_seen.get(&gpu).copied();
                if let Ok(stats) = d.process_utilization_stats(since) {
                    for s in &stats {
                        self.last_seen
                            .insert(gpu, s.timestamp.max(since.unwrap_or(0)));
                        if let Some(g) = pgrp_of(s.pid) {
                            shares.entry(g).or_default().0 += s.sm_util;
                        }
                    }
                }
                if let Ok(procs) = d.running_compute_processes() {
                    for p in procs {
                        if let (Some(g), nvml_wrapper::enums::device::UsedGpuMemory::Used(b)) =
                            (pgrp_of(p.pid), p.used_gpu_memory)
                        {
                            shares.entry(g).or_default().1 += b >> 20;
                        }
                    }
                }
            }
            for h in &on {
                let (u, m, p) = if on.len() > 1 {
                    let (su, sm) = shares.get(&h.pgid).copied().unwrap_or_default();
                    // Power is not per process: split by SM share.
                    let p = if util > 0 {
                        power * su.min(100) / util.max(1)
                    } else {
                        power / on.len() as u32
                    };
                    (su.min(100), sm, p.min(power))
                } else {
                    (util, mem, power)
                };
                let period = periods
                    .get(&(h.job, h.fence, h.task))
                    .copied()
                    .filter(|&p| p > 0);
                let Some(period_ms) = period else { continue };
                out.samples.push(GpuSample {
                    job: h.job,
                    fence: h.fence,
                    task: h.task,
                    gpu,
                    uuid: uuid.clone(),
                    at_ms,
                    period_ms,
                    util_pct: u.min(100),
                    mem_mib: m,
                    power_w: p,
                    temp_c: temp,
                });
            }
        }
        out
    }
}

/// Samples waiting to be sent, bounded: when the server is unreachable for long, the oldest
/// go first.
#[derive(Debug, Default)]
pub struct Outbox {
    pending: Reading,
}

/// Most samples kept while the server cannot be reached (an hour of a 64-GPU node at 10 s).
pub const OUTBOX_SAMPLES: usize = 64 * 360;

impl Outbox {
    pub fn push(&mut self, r: Reading) {
        self.pending.samples.extend(r.samples);
        if self.pending.samples.len() > OUTBOX_SAMPLES {
            let extra = self.pending.samples.len() - OUTBOX_SAMPLES;
            self.pending.samples.drain(..extra);
        }
        // CPU time is cumulative: the latest figure per task is all that matters.
        for t in r.tasks {
            self.pending
                .tasks
                .retain(|o| (o.job, o.fence, o.task) != (t.job, t.fence, t.task));
            self.pending.tasks.push(t);
        }
    }

    /// The next batch to send, at most `max` samples (the oldest first).
    pub fn peek(&self, max: usize) -> haneul_api::TelemetryBatch {
        haneul_api::TelemetryBatch {
            samples: self.pending.samples.iter().take(max).cloned().collect(),
            tasks: self.pending.tasks.clone(),
        }
    }

    /// The batch `peek` gave was delivered.
    pub fn sent(&mut self, samples: usize) {
        let n = samples.min(self.pending.samples.len());
        self.pending.samples.drain(..n);
        self.pending.tasks.clear();
    }

    pub fn is_empty(&self) -> bool {
        self.pending.samples.is_empty() && self.pending.tasks.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_with_awkward_names_parse() {
        let line = "4242 (my (odd) prog) S 1 4240 4240 0 -1 4194560 100 0 0 0 150 25 7 3 20 0 1 0 \
                    1234 0 0";
        assert_eq!(parse_stat(line), Some((4240, 150 + 25 + 7 + 3)));
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn busy_cores_fill_gpus_in_order() {
        assert_eq!(simulated_util(1.0, 0), 100);
        assert_eq!(simulated_util(1.0, 1), 0);
        assert_eq!(simulated_util(2.5, 2), 50);
        assert_eq!(simulated_util(0.02, 0), 2);
    }

    #[test]
    fn outbox_drops_the_oldest_and_keeps_the_latest_cpu() {
        let sample = |at_ms| GpuSample {
            job: 1,
            fence: 1,
            task: 0,
            gpu: 0,
            uuid: "SIM-0".into(),
            at_ms,
            period_ms: 1,
            util_pct: 0,
            mem_mib: 0,
            power_w: 0,
            temp_c: 0,
        };
        let mut o = Outbox::default();
        let cpu = |cpu_ms| TaskCpu {
            job: 1,
            fence: 1,
            task: 0,
            cpu_ms,
        };
        o.push(Reading {
            samples: (0..OUTBOX_SAMPLES as i64 + 5).map(sample).collect(),
            tasks: vec![cpu(5)],
        });
        o.push(Reading {
            samples: vec![],
            tasks: vec![cpu(9)],
        });
        let b = o.peek(10);
        assert_eq!(b.samples[0].at_ms, 5);
        assert_eq!(b.tasks, vec![cpu(9)]);
        o.sent(10);
        assert_eq!(o.peek(1).samples[0].at_ms, 15);
        assert!(o.peek(1).tasks.is_empty());
    }
}
