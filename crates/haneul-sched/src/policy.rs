//! The engine's configurable policy, one struct a driver loads from its configuration.

use haneul_model::Span;
use serde::{Deserialize, Serialize};

/// How queued jobs are ordered before placement.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Ordering {
    /// Weighted fair share with decayed usage, then priority class, then age (Haneul's default).
    #[default]
    FairShare,
    /// Priority class, then age, across all projects (Slurm-like multifactor without fair share).
    Priority,
    /// Submission order only.
    Fifo,
}

/// How a task's node and GPUs are chosen among those that fit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PlacementStrategy {
    /// Fragmentation-aware: minimise the expected GPU capacity the workload can no longer use
    /// (the fragmentation-gradient idea of Weng et al., ATC 2023), then best fit.
    #[default]
    Fragmentation,
    /// Tightest node first (fewest free GPUs left), the classic bin-packing heuristic.
    BestFit,
    /// First node in fleet order that fits.
    FirstFit,
    /// FGD exactly as the paper's published simulator ran it, as a baseline: the paper's measure
    /// (CPU-only kinds see all free GPU as fragment, memory ignored, the most popular kinds
    /// covering 95% of the work), kube-scheduler's integer score `sigmoid(-delta / 1000) x 100`,
    /// every node scored, equal scores to the first node in fleet order.
    FgdPaper,
}

/// How Haneul's fragmentation measure weighs task kinds (docs/scheduling.md, section 5, has the
/// ablation that chose these values).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FragTuning {
    /// A GPU kind's weight is this share (%) of its share of the GPU request and the rest of its
    /// share of the GPU pods.
    pub request_weight_pct: u32,
    /// The request share fades by this many times (percent) the share of the GPU request that
    /// multi-GPU kinds make: 300 drops it when they ask for a third of the GPUs; 0 keeps it
    /// whole.
    pub request_fade_pct: u32,
    /// Whole-GPU kinds count `1 + whole_gpu_weight_pct / 100 x GPUs` times their popularity.
    pub whole_gpu_weight_pct: u32,
    /// Kinds restricted to some GPU models count `fleet GPUs / GPUs they may use` times, at most
    /// this many times; 0 turns the scarcity weight off.
    pub scarcity_cap: u32,
    /// Most task kinds kept in the measure (the most popular ones); 0 keeps all.
    pub max_kinds: u32,
    /// Submissions (tasks) after which a learned kind's weight halves.
    pub learn_half_life: u32,
    /// Nodes whose growth of expected fragmentation is within this many milli-GPU of the
    /// lowest count as equally good, and the tightest of them wins, where GPU-sharing kinds
    /// make most of the GPU request (`tie_from_pct`, `tie_full_pct`); 0 always takes the lowest
    /// growth. 0 by default: it lifted sharing-heavy mixes before the CPU-feed term
    /// (`cpu_fill_pct`), and with that term it no longer does, given or online
    /// (docs/scheduling.md, sixth round).
    pub tie_milli: u32,
    /// No tolerance while GPU-sharing kinds make at most this share (%) of the GPU request.
    pub tie_from_pct: u32,
    /// The whole of `tie_milli` from this share (%) of the GPU request on; linear in between.
    pub tie_full_pct: u32,
    /// CPU-only kinds count this share (%) of their popularity in Haneul's measure. A CPU-only
    /// kind that no longer fits on a node counts the node's free GPUs as lost, which keeps room
    /// for CPU-only work beside free GPUs; at full weight that room draws the CPU-only work onto
    /// nodes whose GPUs then starve (the CPU-feed term already keeps CPU beside free GPUs), while
    /// without it a mix whose CPU-only work asks for more CPU than the fleet has left beside its
    /// GPU work loses almost a point. 10% to 50% avoid both (docs/scheduling.md, sixth round).
    pub cpu_kind_weight_pct: u32,
    /// Share (%) of the free GPU capacity a node's free CPU or memory can not feed, at the mix's
    /// CPU and memory per GPU, counted as fragment (`frag::starved_milli`); 0 turns it off.
    pub cpu_fill_pct: u32,
}

impl Default for FragTuning {
    fn default() -> Self {
        FragTuning {
            request_weight_pct: 50,
            request_fade_pct: 300,
            whole_gpu_weight_pct: 0,
            scarcity_cap: u32::MAX,
            max_kinds: 256,
            learn_half_life: 20_000,
            tie_milli: 0,
            tie_from_pct: 60,
            tie_full_pct: 80,
            cpu_kind_weight_pct: 25,
            cpu_fill_pct: 100,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Policy {
    pub ordering: Ordering,
    /// Half-life of past usage in fair share (Slurm's PriorityDecayHalfLife). Haneul: one day,
    /// so the order answers the contention of now rather than repaying last week's usage: with
    /// seven days a project that was busy days ago waits while others run, which under load is
    /// what makes the shares of the moment unfair (Jain's index in docs/simulator.md). The
    /// baselines keep Slurm's seven days.
    pub fair_share_half_life: Span,
    /// Fair share ages: a project's standing in the pass's order halves for every
    /// `age_half_life` its first queued job has waited (the age factor Slurm's multifactor puts
    /// next to fair share). Heavy users' work is then deferred, not starved, and long jobs do not
    /// all start at the end of a busy spell. Zero turns ageing off.
    pub age_half_life: Span,
    /// The first reservation goes to the job that has waited longest among those that need whole
    /// nodes (a gang, or a task as large as the largest node), rather than to the first blocked
    /// job in fair-share order, so that a heavy user's large job is not starved of drains.
    pub reserve_oldest: bool,
    /// A reservation is a promise: the job that held one in the last pass goes first in the next
    /// (started if it fits, reserved again if not), so the capacity drained for it is not taken
    /// by whoever comes first in fair-share order when it frees. Haneul: on; a gang's drain
    /// then ends in the gang's start instead of being handed to another job midway and begun
    /// again, which is idle GPU-time on a loaded fleet.
    pub sticky_reservations: bool,
    /// Within a queue, a job sorts as if submitted earlier by this share (percent) of its
    /// estimated run time, so that long jobs start before shorter ones submitted a little after
    /// them and do not all end a busy spell late on an emptying fleet. Fair share between
    /// projects is untouched; what changes is which of a project's own jobs uses its turn. Zero
    /// keeps plain submission order. Haneul: 800, for whole-node jobs only.
    pub estimate_age_pct: u32,
    /// The credit of `estimate_age_pct` goes only to jobs that need whole nodes (a gang, or a
    /// task as large as the largest node): they hold most of the GPU-time and set when a busy
    /// spell ends, while a project's small tasks, most of the jobs and the median wait, keep
    /// submission order.
    pub estimate_age_large_only: bool,
    /// The credit of `estimate_age_pct` is whole only for estimates of at least this span;
    /// a shorter job gets it scaled by `estimate / estimate_age_full_at`, so it grows with the
    /// square of the estimate. What sets the end of a busy spell is the longest jobs, so they
    /// keep the full credit, while a project's short gangs no longer fall behind every long one
    /// submitted in the next days (the tail of the waits). Zero gives every job the full credit.
    /// Haneul: 24 hours.
    pub estimate_age_full_at: Span,
    /// An express lane: a single-task job whose estimated GPU-time (GPUs x estimate) is at most
    /// this is tried before the rest of the fair-share order, across all projects in queue
    /// order, once a pass has made its reservations (capacity is short). Such jobs are most of the jobs on a busy centre (on Philly three in five
    /// run under half an hour) but a sliver of the GPU-time, so starting them first cuts the
    /// median wait while the GPU-time each project gets, which fair share governs, barely moves.
    /// Their usage still counts in fair share. The lane fills gaps beside running work and never
    /// takes a node that is wholly free. Zero turns the lane off. Haneul: 30 GPU-minutes.
    pub express_gpu_time: Span,
    /// When one project alone has queued work and its whole-node jobs add up to enough of its
    /// longest one on the whole fleet (`longest_first_depth_pct`), those jobs are tried longest
    /// estimate first, ahead of the queue order (LPT): fair share has nothing to decide then, and
    /// the order of a deep backlog is what sets when it ends. Haneul: on.
    pub longest_first_alone: bool,
    /// How deep the lone backlog must be for `longest_first_alone`: its whole-node GPU-time
    /// spread over the whole fleet must last at least this share (percent) of its longest job.
    /// Longest first saves up to the smaller of the two, so below it the order is worth little
    /// and the queue order (and its waits) is kept. Haneul: 50; 100 was the rule's first form,
    /// which left Philly's backlogs that were half as deep in queue order (docs/simulator.md).
    pub longest_first_depth_pct: u32,
    /// Let projects run above their guarantee on idle capacity (as preemptible work).
    pub borrowing: bool,
    /// Reclaim guarantees by preempting borrowed work.
    pub preemption: bool,
    /// Start later jobs early when they do not delay the reserved ones.
    pub backfill: bool,
    /// How many blocked jobs at the head of the queue get a reservation. Slurm's `bf_max_job_test`
    /// plays a similar role; 1 protects the head job, more protect more jobs at a higher cost.
    pub reservations: usize,
    /// Most jobs a pass tries that fail to start once the reservations are made (Slurm's
    /// `bf_max_job_test`): it bounds the time of a pass on a deep queue. Jobs further down wait
    /// for a later pass.
    pub backfill_window: usize,
    /// Run time assumed for jobs that give neither an estimate nor a time limit.
    pub default_runtime: Span,
    /// When false, a blocked job at the head stops everything behind it (strict FIFO).
    pub skip_blocked: bool,
    pub placement: PlacementStrategy,
    /// Placement looks at time as well as space: a task goes first to a node whose running work
    /// is expected to outlast it (by estimates), then by the strategy's score; among nodes alike,
    /// to the one whose work it fits best in time. Short tasks then stop landing on nodes about
    /// to free whole, so gangs and whole-node jobs drain less capacity while they wait.
    pub align_ends: bool,
    /// Most groups of interchangeable nodes (same model, pool and free capacity) scored per GPU
    /// model when placing one task, tightest first, like kube-scheduler's
    /// `percentageOfNodesToScore`. It bounds placement on a large, varied fleet.
    pub max_scored_nodes: usize,
    /// Weights of the fragmentation measure (`fragmentation` placement only).
    pub frag: FragTuning,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            ordering: Ordering::FairShare,
            fair_share_half_life: Span::from_hours(24),
            age_half_life: Span::ZERO,
            reserve_oldest: false,
            estimate_age_pct: 800,
            estimate_age_large_only: true,
            estimate_age_full_at: Span::from_hours(24),
            express_gpu_time: Span::from_secs(30 * 60),
            sticky_reservations: true,
            longest_first_alone: true,
            longest_first_depth_pct: 50,
            borrowing: true,
            preemption: true,
            backfill: true,
            reservations: 1,
            backfill_window: 1000,
            default_runtime: Span::from_hours(24),
            skip_blocked: true,
            placement: PlacementStrategy::Fragmentation,
            align_ends: true,
            max_scored_nodes: 1024,
            frag: FragTuning::default(),
        }
    }
}

impl Policy {
    /// Strict first-come first-served: no fair share, no backfill, the head blocks the queue.
    pub fn fifo() -> Self {
        Policy {
            ordering: Ordering::Fifo,
            backfill: false,
            skip_blocked: false,
            preemption: false,
            placement: PlacementStrategy::FirstFit,
            ..Policy::baseline()
        }
    }

    /// Slurm-like: priority and age, backfill behind a reservation, best-fit placement.
    pub fn slurm_like() -> Self {
        Policy {
            ordering: Ordering::Priority,
            placement: PlacementStrategy::BestFit,
            ..Policy::baseline()
        }
    }

    /// Haneul's defaults without what the baselines never had (end-time alignment, the
    /// estimate credit of whole-node jobs, the express lane, sticky reservations, the one-day
    /// fair-share half-life), so the baselines stay the policies they are named after.
    fn baseline() -> Self {
        Policy {
            estimate_age_pct: 0,
            estimate_age_large_only: false,
            estimate_age_full_at: Span::ZERO,
            express_gpu_time: Span::ZERO,
            align_ends: false,
            sticky_reservations: false,
            longest_first_alone: false,
            fair_share_half_life: Span::from_hours(7 * 24),
            ..Policy::default()
        }
    }
}
