//! Why a queued job waits: plain data the engine derives from its last pass, with the codes
//! Slurm users know from squeue's REASON column, an English sentence and, where one exists, what
//! would help. The engine fills the kinds it can see; the control plane builds the rest
//! (dependencies, held projects, array throttles) from the same type so that every reason reads
//! alike.

use haneul_model::{GpuModel, JobId, NodeId, Span, Time};
use serde::{Deserialize, Serialize};

/// Slurm-style reason codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum ReasonCode {
    /// No capacity of the shape it needs is free now.
    Resources,
    /// Other jobs come first in queue or fair-share order.
    Priority,
    /// It would fit now, but the GPUs are reserved for a blocked job (backfill).
    Reservation,
    /// Its project's guarantee is in use and the job may not borrow above it.
    AssocGrpGRES,
    /// Its project borrows up to its borrowing limit already.
    QOSGrpGRES,
    /// It waits for other jobs to end.
    Dependency,
    /// Its project is held by the centre (organisation standing, award not valid).
    JobHeldAdmin,
    /// Its project's award of GPU-hours is spent.
    AssocGrpGRESMinutes,
    /// Its array runs as many tasks at once as it allows.
    JobArrayTaskLimit,
    /// The only nodes that could hold it are drained or down.
    ReqNodeNotAvail,
}

impl ReasonCode {
    pub const ALL: &'static [ReasonCode] = &[
        ReasonCode::Resources,
        ReasonCode::Priority,
        ReasonCode::Reservation,
        ReasonCode::AssocGrpGRES,
        ReasonCode::QOSGrpGRES,
        ReasonCode::Dependency,
        ReasonCode::JobHeldAdmin,
        ReasonCode::AssocGrpGRESMinutes,
        ReasonCode::JobArrayTaskLimit,
        ReasonCode::ReqNodeNotAvail,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ReasonCode::Resources => "Resources",
            ReasonCode::Priority => "Priority",
            ReasonCode::Reservation => "Reservation",
            ReasonCode::AssocGrpGRES => "AssocGrpGRES",
            ReasonCode::QOSGrpGRES => "QOSGrpGRES",
            ReasonCode::Dependency => "Dependency",
            ReasonCode::JobHeldAdmin => "JobHeldAdmin",
            ReasonCode::AssocGrpGRESMinutes => "AssocGrpGRESMinutes",
            ReasonCode::JobArrayTaskLimit => "JobArrayTaskLimit",
            ReasonCode::ReqNodeNotAvail => "ReqNodeNotAvail",
        }
    }
}

/// The shape a job asks for, as a reason names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Need {
    pub replicas: u32,
    /// GPUs per task (0: CPU only).
    pub gpus: u32,
    /// Share of each GPU in milli-GPU (1000: whole GPUs).
    pub milli: u16,
    /// Models it may run on; empty: any.
    pub models: Vec<GpuModel>,
}

/// The node that came closest to holding one task of a job that does not fit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Candidate {
    pub node: NodeId,
    /// Fully free GPUs on it now.
    pub free_gpus: u32,
    /// GPUs per task it lacks (0 when GPUs are not what is missing: CPU, memory or the NVLink
    /// domain).
    pub short_gpus: u32,
}

/// What keeps a queued job waiting, with what the reason needs to be explained.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Waiting {
    /// No fitting capacity now.
    Resources {
        need: Need,
        /// Tasks of its gang that fit now on one model (0 for a single task that does not fit).
        tasks_fit: u32,
        best: Option<Candidate>,
        /// Its own reservation's planned start, when the pass made one.
        reserved_from: Option<Time>,
        /// A smaller shape that would start now: GPUs per task (single tasks) or tasks (gangs).
        smaller: Option<u32>,
        /// A GPU model the job does not allow that has room for it now.
        other_model: Option<GpuModel>,
    },
    /// Nodes are being freed for it: preempted jobs are stopping.
    Reclaiming { victims: u32 },
    /// Not reached by the pass: jobs ahead of it come first.
    Priority {
        ahead: u32,
        /// In strict order, the job at the head that cannot start and holds the rest back.
        behind: Option<JobId>,
        fair_share: bool,
    },
    /// It would fit now, but the GPUs are reserved for `for_job` from `start_at`.
    Reservation {
        for_job: JobId,
        start_at: Time,
        node: NodeId,
        /// The longest time limit that would let it run before the reservation starts.
        backfill_within: Option<Span>,
    },
    /// Its project's guarantee on `model` is in use and the job may not borrow.
    Guarantee {
        model: GpuModel,
        /// What the job would add.
        need_milli: u64,
        used_milli: u64,
        guarantee_milli: u64,
        /// Borrowing is on, so submitting it as preemptible would let it run on idle GPUs.
        could_borrow: bool,
    },
    /// Its project borrows up to its limit on `model`.
    BorrowLimit {
        model: GpuModel,
        need_milli: u64,
        used_milli: u64,
        guarantee_milli: u64,
        limit_milli: u64,
    },
    /// Only drained or down nodes could hold it (the first few named).
    NodesUnavailable { nodes: Vec<NodeId> },
    /// Waits for these jobs to end (built by the control plane).
    Dependency { on: Vec<JobId> },
    /// Its array runs `limit` tasks at once already (built by the control plane).
    ArrayThrottle { limit: u32 },
}

/// A queued job's reason as of `at`, the time of the pass it comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingReason {
    pub at: Time,
    pub waiting: Waiting,
}

impl PendingReason {
    pub fn code(&self) -> ReasonCode {
        match &self.waiting {
            Waiting::Resources { .. } | Waiting::Reclaiming { .. } => ReasonCode::Resources,
            Waiting::Priority { .. } => ReasonCode::Priority,
            Waiting::Reservation { .. } => ReasonCode::Reservation,
            Waiting::Guarantee { .. } => ReasonCode::AssocGrpGRES,
            Waiting::BorrowLimit { .. } => ReasonCode::QOSGrpGRES,
            Waiting::NodesUnavailable { .. } => ReasonCode::ReqNodeNotAvail,
            Waiting::Dependency { .. } => ReasonCode::Dependency,
            Waiting::ArrayThrottle { .. } => ReasonCode::JobArrayTaskLimit,
        }
    }

    /// One English sentence: what it waits for.
    pub fn message(&self) -> String {
        match &self.waiting {
            Waiting::Resources {
                need,
                tasks_fit,
                best,
                reserved_from,
                ..
            } => {
                let mut s = format!("needs {}; ", describe(need));
                if need.replicas > 1 {
                    s.push_str(&format!(
                        "only {tasks_fit} of its {} tasks fit in what is free now",
                        need.replicas
                    ));
                } else {
                    match best {
                        Some(c) if c.short_gpus > 0 => s.push_str(&format!(
                            "no node has that free now: the closest, node {}, has {} GPU{} free ({} short)",
                            c.node.0,
                            c.free_gpus,
                            plural(c.free_gpus),
                            c.short_gpus
                        )),
                        Some(c) => s.push_str(&format!(
                            "no node has that free now: node {} has the GPUs but not the CPU, memory or NVLink domain",
                            c.node.0
                        )),
                        None => s.push_str("no node it may use has room now"),
                    }
                }
                if let Some(t) = reserved_from {
                    s.push_str(&format!(
                        "; resources are reserved for it from {} (if running jobs end as estimated)",
                        self.when(*t)
                    ));
                }
                s
            }
            Waiting::Reclaiming { victims } => format!(
                "resources are being freed for it: {victims} preempted job{} still stopping",
                plural(*victims)
            ),
            Waiting::Priority {
                ahead,
                behind,
                fair_share,
            } => match behind {
                Some(j) => format!(
                    "waits behind job {}, first in queue order, which cannot start yet ({ahead} job{} ahead)",
                    j.0,
                    plural(*ahead)
                ),
                None if *fair_share => format!(
                    "other work comes first: {ahead} job{} of its project ahead of it, and projects with less recent use go first (fair share)",
                    plural(*ahead)
                ),
                None => format!(
                    "other work comes first: {ahead} job{} ahead of it in queue order",
                    plural(*ahead)
                ),
            },
            Waiting::Reservation {
                for_job,
                start_at,
                node,
                ..
            } => format!(
                "would fit now, but the GPUs are reserved for job {} on node {} from {}",
                for_job.0,
                node.0,
                self.when(*start_at)
            ),
            Waiting::Guarantee {
                model,
                need_milli,
                used_milli,
                guarantee_milli,
                ..
            } => format!(
                "its {} {model} GPUs would take its project to {}, above its guarantee of {}, and the job may not borrow",
                gpus(*need_milli),
                gpus(used_milli + need_milli),
                gpus(*guarantee_milli)
            ),
            Waiting::BorrowLimit {
                model,
                need_milli,
                used_milli,
                guarantee_milli,
                limit_milli,
            } => format!(
                "its {} {model} GPUs would take its project to {}, above its guarantee of {} plus at most {} borrowed",
                gpus(*need_milli),
                gpus(used_milli + need_milli),
                gpus(*guarantee_milli),
                gpus(*limit_milli)
            ),
            Waiting::NodesUnavailable { nodes } => {
                let names: Vec<String> = nodes.iter().map(|n| n.0.to_string()).collect();
                format!(
                    "only drained or down nodes could hold it (node {})",
                    names.join(", ")
                )
            }
            Waiting::Dependency { on } => {
                let ids: Vec<String> = on.iter().map(|j| j.0.to_string()).collect();
                format!("waits for job {} to end", ids.join(", "))
            }
            Waiting::ArrayThrottle { limit } => format!(
                "its array already runs {limit} task{} at once, as many as it allows",
                plural(*limit)
            ),
        }
    }

    /// What would let it start sooner, where the engine knows of something.
    pub fn hint(&self) -> Option<String> {
        match &self.waiting {
            Waiting::Resources {
                need,
                smaller,
                other_model,
                ..
            } => {
                let mut hints = Vec::new();
                if let Some(m) = other_model {
                    hints.push(format!(
                        "{m} GPUs have room for it now: allow that model (--gpu-model {m})"
                    ));
                }
                if let Some(k) = smaller {
                    if need.replicas > 1 {
                        hints.push(format!("a job of {k} task{} would start now", plural(*k)));
                    } else {
                        hints.push(format!("a {k}-GPU job would start now"));
                    }
                }
                (!hints.is_empty()).then(|| hints.join("; "))
            }
            Waiting::Reservation {
                backfill_within: Some(limit),
                ..
            } => {
                let secs = limit.0.max(0) / 1000;
                Some(format!(
                    "a time limit of at most {} (--time {}:{:02}:{:02}) would let it start now, before the reservation (backfill)",
                    duration(*limit),
                    secs / 3600,
                    secs % 3600 / 60,
                    secs % 60
                ))
            }
            Waiting::Guarantee {
                could_borrow: true,
                ..
            } => Some(
                "submit it as preemptible (the API's `preemptible: true`) to run on idle GPUs above the guarantee".into(),
            ),
            Waiting::NodesUnavailable { .. } => Some(
                "a smaller shape may fit on the nodes that are up; operators see `haneul node list`"
                    .into(),
            ),
            _ => None,
        }
    }

    fn when(&self, t: Time) -> String {
        let d = t.since(self.at);
        if d.0 <= 0 {
            "now, as soon as the running jobs there end".into()
        } else {
            format!("about {} from now", duration(d))
        }
    }
}

fn describe(need: &Need) -> String {
    let per = if need.gpus == 0 {
        "CPU only".to_string()
    } else if need.milli < 1000 {
        format!("{} of a GPU", gpus(need.milli as u64))
    } else {
        format!("{} GPU{}", need.gpus, plural(need.gpus))
    };
    let models = if need.models.is_empty() || need.gpus == 0 {
        String::new()
    } else {
        let names: Vec<&str> = need.models.iter().map(|m| m.as_str()).collect();
        format!(" ({})", names.join(" or "))
    };
    if need.replicas > 1 {
        format!("{} tasks of {per}{models}", need.replicas)
    } else {
        format!("{per}{models}")
    }
}

fn plural(n: u32) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// Milli-GPU as GPUs, without a trailing `.0`.
fn gpus(milli: u64) -> String {
    if milli.is_multiple_of(1000) {
        (milli / 1000).to_string()
    } else {
        format!("{:.3}", milli as f64 / 1000.0)
            .trim_end_matches('0')
            .to_string()
    }
}

/// A span as `1h20m`, `45m` or `30s`, rounded down.
pub fn duration(d: Span) -> String {
    let s = d.0.max(0) / 1000;
    let (h, m) = (s / 3600, s % 3600 / 60);
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, m) => format!("{m}m"),
        (h, 0) => format!("{h}h"),
        (h, m) => format!("{h}h{m:02}m"),
    }
}
