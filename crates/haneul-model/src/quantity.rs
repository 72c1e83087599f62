use serde::{Deserialize, Serialize};
use std::fmt;
use std::ops::{Add, AddAssign, Sub, SubAssign};

macro_rules! quantity {
    ($(#[$doc:meta])* $name:ident($inner:ty)) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub $inner);

        impl $name {
            pub const ZERO: Self = Self(0);
            pub const fn get(self) -> $inner {
                self.0
            }
            pub fn saturating_sub(self, rhs: Self) -> Self {
                Self(self.0.saturating_sub(rhs.0))
            }
            pub fn checked_add(self, rhs: Self) -> Option<Self> {
                self.0.checked_add(rhs.0).map(Self)
            }
        }
        impl Add for $name {
            type Output = Self;
            fn add(self, rhs: Self) -> Self {
                Self(self.0 + rhs.0)
            }
        }
        impl AddAssign for $name {
            fn add_assign(&mut self, rhs: Self) {
                self.0 += rhs.0;
            }
        }
        impl Sub for $name {
            type Output = Self;
            fn sub(self, rhs: Self) -> Self {
                Self(self.0 - rhs.0)
            }
        }
        impl SubAssign for $name {
            fn sub_assign(&mut self, rhs: Self) {
                self.0 -= rhs.0;
            }
        }
        impl std::iter::Sum for $name {
            fn sum<I: Iterator<Item = Self>>(iter: I) -> Self {
                iter.fold(Self::ZERO, |a, b| a + b)
            }
        }
    };
}

quantity!(
    /// Thousandths of one GPU: 1000 is a whole GPU. Fractional tasks ask for less than 1000.
    MilliGpu(u64)
);
quantity!(
    /// Thousandths of one CPU core.
    MilliCpu(u64)
);
quantity!(
    /// Memory in MiB.
    MemMib(u64)
);

impl MilliGpu {
    pub const ONE_GPU: MilliGpu = MilliGpu(1000);
    pub const fn gpus(n: u64) -> Self {
        MilliGpu(n * 1000)
    }
    /// Whole GPUs as a float, for reports.
    pub fn as_gpus(self) -> f64 {
        self.0 as f64 / 1000.0
    }
}

impl MilliCpu {
    pub const fn cores(n: u64) -> Self {
        MilliCpu(n * 1000)
    }
}

impl fmt::Display for MilliGpu {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_multiple_of(1000) {
            write!(f, "{} GPU", self.0 / 1000)
        } else {
            write!(f, "{:.3} GPU", self.as_gpus())
        }
    }
}
