//! Haneul's simulator side: trace loaders and replays that drive the unchanged scheduling engine.
//!
//! - [`openb`]: the Alibaba openb GPU-sharing trace, replayed by the method of the FGD paper
//!   (pods placed one at a time, never leaving) to measure GPU allocation.

pub mod openb;

mod error;
pub use error::SimError;
