use serde::{Deserialize, Serialize};
use std::fmt;

macro_rules! typed_id {
    ($(#[$doc:meta])* $name:ident($inner:ty), $prefix:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub $inner);

        impl $name {
            pub const fn new(raw: $inner) -> Self {
                Self(raw)
            }
            pub const fn get(self) -> $inner {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($prefix, "{}"), self.0)
            }
        }

        impl From<$inner> for $name {
            fn from(raw: $inner) -> Self {
                Self(raw)
            }
        }
    };
}

typed_id!(
    /// A pool of GPUs with one owner and one set of sharing terms.
    PoolId(u32), "pool-"
);
typed_id!(
    /// A network block: the nodes under one leaf switch.
    BlockId(u32), "block-"
);
typed_id!(
    /// One server.
    NodeId(u32), "node-"
);
typed_id!(
    /// An organisation (university, institute, company, partner).
    OrgId(u32), "org-"
);
typed_id!(
    /// A project: holds quotas and awards, runs jobs.
    ProjectId(u32), "project-"
);
typed_id!(
    /// A job: a gang of tasks placed all or nothing.
    JobId(u64), "job-"
);
