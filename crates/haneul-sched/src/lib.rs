//! The Haneul scheduling engine: pure and deterministic. State and `now` in, decisions out; no
//! I/O, no clock, no randomness.
//!
//! It owns the decisions a GPU centre's scheduler makes at every moment:
//! - **quotas and borrowing** (Kueue's ClusterQueue and cohort): a project runs freely within its
//!   per-GPU-class guarantee; above it only on idle capacity, up to its borrowing limit, and that
//!   work is preemptible;
//! - **order**: weighted fair share with half-life decayed usage (Slurm's multifactor), then
//!   priority class, then age, a project's long whole-node jobs counted older ([`Ordering`]);
//! - **gangs** all or nothing, and **topology**: a task on one node, inside one NVLink domain when
//!   it fits one, a gang on the fewest network blocks;
//! - **fragmentation-aware placement** of small and fractional tasks ([`PlacementStrategy`]),
//!   aligned in time: a task goes beside running work that outlasts it, so nodes free whole;
//! - **backfill** behind reservations computed from runtime estimates;
//! - **preemption** to give guarantees back, choosing the victims that lose the least work,
//!   honouring each victim's grace period, never touching non-preemptible work, and never
//!   preempting for a job that could itself be preempted (no thrash).
//!
//! Drivers (the control plane, the simulator) call [`Engine::submit`], [`Engine::finish`],
//! [`Engine::requeue`], [`Engine::set_node_state`] as things happen and [`Engine::schedule`] to get
//! [`Decisions`]. See docs/scheduling.md for the policy in full.

mod cluster;
mod decision;
mod engine;
mod error;
pub mod frag;
mod placement;
mod policy;
mod queue;
mod reason;

pub use decision::{Decisions, Placement, Preemption, Reservation, Start, TaskPlacement};
pub use engine::{Engine, IdleCauses, JobState, PassStats};
pub use error::SchedError;
pub use frag::TaskKind;
pub use policy::{FragTuning, Ordering, PlacementStrategy, Policy};
pub use reason::{Candidate, Need, PendingReason, ReasonCode, Waiting};
