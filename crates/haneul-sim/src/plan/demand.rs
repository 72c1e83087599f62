//! Demand as the programme sees it: a scenario's `[demand]` table, the allocation round's tracks
//! (applications, GPUs asked and granted, the kind of work) and demand growth. It owns turning
//! that into the synthetic workload's arrival rate and project count, and into the mix of work
//! that blends each accelerator's per-class speed.

use crate::catalogue::Catalogue;
use crate::error::SimError;
use crate::workload::synthetic::SyntheticConfig;
use serde::{Deserialize, Serialize};

/// The kind of work a track runs; it picks the catalogue's speed for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WorkKind {
    Training,
    FineTuning,
    Inference,
}

/// One track of the allocation round.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Track {
    pub name: String,
    pub work: WorkKind,
    pub applications: u32,
    /// GPUs (of the class run times were measured on) an application asks for, held on average
    /// over the year.
    pub gpus_asked: f64,
    /// What the programme grants of that; at most `gpus_asked`.
    pub gpus_granted: f64,
}

/// A scenario's `[demand]` table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Demand {
    /// Yearly growth of demand, 0.3 for +30% a year.
    #[serde(default)]
    pub growth_per_year: f64,
    /// The year of operation to plan for (1: the first); demand grows `year - 1` times.
    #[serde(default = "d_year")]
    pub year: u32,
    pub tracks: Vec<Track>,
}

fn d_year() -> u32 {
    1
}

impl Demand {
    pub fn check(&self) -> Result<(), SimError> {
        let bad = |field: &str, reason: String| SimError::Plan {
            field: format!("demand.{field}"),
            reason,
        };
        if !(self.growth_per_year.is_finite() && (-0.9..=10.0).contains(&self.growth_per_year)) {
            return Err(bad(
                "growth_per_year",
                "must be -0.9 to 10 (0.3 is +30% a year)".into(),
            ));
        }
        if !(1..=30).contains(&self.year) {
            return Err(bad("year", "must be 1 to 30".into()));
        }
        if self.tracks.is_empty() {
            return Err(bad("tracks", "name at least one track".into()));
        }
        for t in &self.tracks {
            if t.applications == 0 {
                return Err(bad(
                    "tracks.applications",
                    format!("track `{}` needs at least 1", t.name),
                ));
            }
            if !(t.gpus_asked.is_finite() && t.gpus_asked > 0.0 && t.gpus_asked <= 1e6) {
                return Err(bad(
                    "tracks.gpus_asked",
                    format!("track `{}`: must be above 0 and at most 1,000,000", t.name),
                ));
            }
            if !(t.gpus_granted.is_finite()
                && t.gpus_granted > 0.0
                && t.gpus_granted <= t.gpus_asked)
            {
                return Err(bad(
                    "tracks.gpus_granted",
                    format!(
                        "track `{}`: must be above 0 and at most gpus_asked ({})",
                        t.name, t.gpus_asked
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Grants every track `share` of what it asks (`--grant-share`).
    pub fn with_grant_share(&self, share: f64) -> Result<Demand, SimError> {
        if !(share.is_finite() && share > 0.0 && share <= 1.0) {
            return Err(SimError::Plan {
                field: "--grant-share".into(),
                reason: "must be above 0 and at most 1 (0.6 grants 60% of the GPUs asked)".into(),
            });
        }
        let mut d = self.clone();
        for t in &mut d.tracks {
            t.gpus_granted = t.gpus_asked * share;
        }
        Ok(d)
    }

    pub fn growth_factor(&self) -> f64 {
        (1.0 + self.growth_per_year).powi(self.year as i32 - 1)
    }

    pub fn applications(&self) -> u32 {
        self.tracks.iter().map(|t| t.applications).sum()
    }

    /// GPUs asked in the planned year, held on average over it.
    pub fn asked_gpus(&self) -> f64 {
        self.growth_factor()
            * self
                .tracks
                .iter()
                .map(|t| t.applications as f64 * t.gpus_asked)
                .sum::<f64>()
    }

    /// GPUs granted in the planned year: the load the fleet must carry.
    pub fn granted_gpus(&self) -> f64 {
        self.growth_factor()
            * self
                .tracks
                .iter()
                .map(|t| t.applications as f64 * t.gpus_granted)
                .sum::<f64>()
    }

    /// Shares of granted GPU-hours by kind of work: training, fine-tuning, inference.
    pub fn mix(&self) -> [f64; 3] {
        let mut m = [0.0; 3];
        for t in &self.tracks {
            let i = match t.work {
                WorkKind::Training => 0,
                WorkKind::FineTuning => 1,
                WorkKind::Inference => 2,
            };
            m[i] += t.applications as f64 * t.gpus_granted;
        }
        let total: f64 = m.iter().sum();
        m.map(|x| x / total)
    }

    /// The catalogue with each class's `throughput` replaced by its speed on this mix of work:
    /// a reference GPU-hour split by the mix takes `sum(share / speed)` hours, so the blend is
    /// the weighted harmonic mean. Classes without per-class speeds keep their throughput.
    pub fn blend(&self, catalogue: &Catalogue) -> Catalogue {
        let mix = self.mix();
        let mut c = catalogue.clone();
        for class in c.classes.values_mut() {
            if let Some(s) = class.speed {
                let hours = mix[0] / s.training + mix[1] / s.fine_tuning + mix[2] / s.inference;
                class.throughput = 1.0 / hours;
            }
        }
        c
    }

    /// The synthetic workload with this demand: arrivals at the granted GPU-hours, and as many
    /// projects as applications, spread over the tenant classes in their proportions.
    pub fn apply(&self, cfg: &SyntheticConfig) -> SyntheticConfig {
        let mut c = cfg.clone();
        c.load = None;
        c.arrival_rate_per_hour = Some(self.granted_gpus() / c.mean_gpu_hours());
        let before: u32 = c.classes.iter().map(|k| k.projects).sum();
        let want = self.applications();
        // Largest remainder, so the classes add up to exactly the applications.
        let exact: Vec<f64> = c
            .classes
            .iter()
            .map(|k| k.projects as f64 * want as f64 / before as f64)
            .collect();
        let mut counts: Vec<u32> = exact.iter().map(|x| x.floor() as u32).collect();
        let mut left = want.saturating_sub(counts.iter().sum());
        let mut order: Vec<usize> = (0..exact.len()).collect();
        order.sort_by(|&a, &b| {
            (exact[b] - exact[b].floor())
                .total_cmp(&(exact[a] - exact[a].floor()))
                .then(a.cmp(&b))
        });
        for &i in order.iter().cycle().take(order.len() * 2) {
            if left == 0 {
                break;
            }
            counts[i] += 1;
            left -= 1;
        }
        for (k, n) in c.classes.iter_mut().zip(counts) {
            k.projects = n.max(1);
        }
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn demand() -> Demand {
        toml::from_str(
            r#"
growth_per_year = 0.5
year = 3
[[tracks]]
name = "big"
work = "training"
applications = 10
gpus_asked = 16
gpus_granted = 8
[[tracks]]
name = "serve"
work = "inference"
applications = 40
gpus_asked = 2
gpus_granted = 1
"#,
        )
        .unwrap()
    }

    #[test]
    fn granted_gpus_grow_and_the_mix_blends_speeds_harmonically() {
        let d = demand();
        d.check().unwrap();
        // 10 x 8 + 40 x 1 = 120 granted GPUs, grown 1.5^2 = 2.25 times by year 3.
        assert!((d.granted_gpus() - 270.0).abs() < 1e-9);
        assert!((d.asked_gpus() - 2.25 * 240.0).abs() < 1e-9);
        assert_eq!(d.applications(), 50);
        // 80 of 120 training, 40 inference.
        let m = d.mix();
        assert!((m[0] - 2.0 / 3.0).abs() < 1e-12 && m[1] == 0.0);
        let cat = d.blend(&Catalogue::default_catalogue());
        // B200: 1 / (2/3 / 2.2 + 1/3 / 3.0) = 2.4146...
        let b = cat.get("B200").unwrap().throughput;
        assert!(
            (b - 1.0 / (2.0 / 3.0 / 2.2 + 1.0 / 3.0 / 3.0)).abs() < 1e-12,
            "{b}"
        );
        assert_eq!(cat.get("H100").unwrap().throughput, 1.0);
        let half = d.with_grant_share(0.5).unwrap();
        assert!((half.granted_gpus() - 270.0).abs() < 1e-9);
        assert!(d.with_grant_share(1.5).is_err());
    }

    #[test]
    fn bad_tracks_are_refused_by_field() {
        let mut d = demand();
        d.tracks[1].gpus_granted = 3.0;
        let e = d.check().unwrap_err().to_string();
        assert!(
            e.starts_with("demand.tracks.gpus_granted: track `serve`"),
            "{e}"
        );
        let mut d = demand();
        d.year = 0;
        assert!(
            d.check()
                .unwrap_err()
                .to_string()
                .starts_with("demand.year")
        );
    }

    #[test]
    fn the_workload_gets_the_applications_and_the_granted_rate() {
        let cfg: SyntheticConfig = toml::from_str(
            "jobs = 100\nload = 0.9\n[[classes]]\nclass = \"academia\"\nprojects = 3\njob_share = 0.5\n[[classes]]\nclass = \"startup\"\nprojects = 1\njob_share = 0.5\n",
        )
        .unwrap();
        let d = demand();
        let c = d.apply(&cfg);
        let projects: Vec<u32> = c.classes.iter().map(|k| k.projects).collect();
        assert_eq!(projects, vec![38, 12]);
        let w = crate::workload::synthetic::generate(&c, 1.0, 1, Path::new("s")).unwrap();
        assert_eq!(w.projects.len(), 50);
        assert!((c.arrival_rate_per_hour.unwrap() * cfg.mean_gpu_hours() - 270.0).abs() < 1e-6);
    }
}
