//! The spread of a figure over seeds: mean, 95% confidence interval of the mean (Student's t),
//! and the extremes.

use serde::Serialize;

/// Two-sided 95% quantiles of Student's t for 1 to 30 degrees of freedom (any statistics table);
/// 30 constants rather than a statistics crate with a linear-algebra dependency.
const T95: [f64; 30] = [
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
    2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
    2.052, 2.048, 2.045, 2.042,
];

/// A figure over seeds. The interval's low end is clipped at 0 when no value is negative.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct Spread {
    pub mean: f64,
    /// The 95% confidence interval of the mean; equal to it with one seed.
    pub lo: f64,
    pub hi: f64,
    pub min: f64,
    pub max: f64,
}

impl Spread {
    pub fn of(xs: &[f64]) -> Spread {
        let n = xs.len();
        if n == 0 {
            return Spread::default();
        }
        let mean = xs.iter().sum::<f64>() / n as f64;
        let half = if n < 2 {
            0.0
        } else {
            let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
            let t = T95.get(n - 2).copied().unwrap_or(1.96);
            t * (var / n as f64).sqrt()
        };
        let min = xs.iter().copied().fold(f64::INFINITY, f64::min);
        // Waits, costs and shares are never negative; neither is the interval's low end.
        let floor = if min >= 0.0 { 0.0 } else { f64::NEG_INFINITY };
        Spread {
            mean,
            lo: (mean - half).max(floor),
            hi: mean + half,
            min,
            max: xs.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interval_by_hand() {
        // Mean 5, sample variance 10 / 4 = 2.5, standard error sqrt(2.5 / 5) = 0.7071;
        // t(4) = 2.776: half-width 1.963.
        let s = Spread::of(&[3.0, 4.0, 5.0, 6.0, 7.0]);
        assert_eq!(s.mean, 5.0);
        assert!((s.hi - 5.0 - 2.776 * 0.5f64.sqrt()).abs() < 1e-12);
        assert!((s.mean - s.lo - (s.hi - s.mean)).abs() < 1e-12);
        assert_eq!((s.min, s.max), (3.0, 7.0));
        let wide = Spread::of(&[0.0, 10.0]);
        assert_eq!(wide.lo, 0.0);
        assert!((wide.hi - 5.0 - 12.706 * 5.0).abs() < 1e-9);
        let one = Spread::of(&[2.0]);
        assert_eq!((one.lo, one.hi), (2.0, 2.0));
    }
}
