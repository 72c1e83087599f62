//! Haneul's simulator: replays real and synthetic workloads through the unchanged scheduling
//! engine on a virtual clock, and measures what a centre cares about.
//!
//! - [`openb`]: the Alibaba openb GPU-sharing trace, replayed by the method of the FGD paper
//!   (pods placed one at a time, never leaving) to measure GPU allocation (engine work);
//! - [`openb_variants`]: workloads derived from the openb default list along the axes of the FGD
//!   paper's sensitivity study, to tune and judge placement on;
//! - [`catalogue`]: GPU classes (throughput, price, power), with shipped defaults;
//! - [`fleet_file`]: fleet files (TOML) into the engine's fleet;
//! - [`workload`]: the job form every loader produces: Philly, openb pods, generic CSV/JSONL and
//!   the synthetic national-centre generator;
//! - [`scenario`]: scenario files that tie a fleet, a workload, a seed and policies together;
//! - [`driver`]: the discrete-event loop around the engine;
//! - [`metrics`]: utilisation, latency, fairness, cost and energy of a run;
//! - [`report`]: CSV and SVG renderings of the reports;
//! - [`traces`]: where public trace files are found, and how to get a missing one;
//! - [`plan`]: the capacity planner: candidate fleets (given or swept), seeds in parallel, total
//!   cost of ownership, demand from the allocation round, and the committee's HTML report.

pub mod catalogue;
pub mod driver;
pub mod fleet_file;
pub mod metrics;
pub mod openb;
pub mod openb_variants;
pub mod plan;
pub mod report;
pub mod scenario;
pub mod traces;
pub mod workload;

mod error;
pub use error::SimError;
