//! The synthetic national-centre workload: tenant classes (academia, institute, startup,
//! enterprise, partner) submitting Poisson arrivals on two tracks, 1-4 GPU jobs and 8-GPU-server
//! gangs, with log-normal run times. Everything is drawn from one seeded ChaCha stream, so a seed
//! gives the same jobs on every machine.

use super::{ProjectDef, SimJob, Workload};
use crate::error::SimError;
use haneul_model::{GpuRequest, Span, Time};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Deserialize;
use std::path::Path;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyntheticConfig {
    /// How many jobs to generate.
    pub jobs: u64,
    /// Offered load: reference-class GPU-hours asked per hour over the fleet's GPUs counted in
    /// reference-class units (see `Scenario::reference_capacity`). Sets the arrival rate unless
    /// `arrival_rate_per_hour` is given.
    #[serde(default)]
    pub load: Option<f64>,
    #[serde(default)]
    pub arrival_rate_per_hour: Option<f64>,
    /// Share of jobs on the 8-GPU-server track (whole nodes); the rest are 1-4 GPU jobs.
    #[serde(default = "d_server_track")]
    pub server_track: f64,
    /// (GPUs, weight) of the small track; a GPU count below 1 is a fraction of one GPU.
    #[serde(default = "d_small_sizes")]
    pub small_sizes: Vec<(f64, f64)>,
    /// (nodes, weight) of the server track.
    #[serde(default = "d_server_nodes")]
    pub server_nodes: Vec<(u32, f64)>,
    /// GPUs per server on the server track.
    #[serde(default = "d_gpus_per_server")]
    pub gpus_per_server: u32,
    /// Median run time in hours on the reference GPU, and the log-normal sigma.
    #[serde(default = "d_median")]
    pub duration_median_h: f64,
    #[serde(default = "d_sigma")]
    pub duration_sigma: f64,
    /// Run times are clipped to [1 minute, this].
    #[serde(default = "d_max")]
    pub duration_max_h: f64,
    /// Checkpoint grace given to every job, seconds.
    #[serde(default)]
    pub grace_s: f64,
    pub classes: Vec<ClassConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClassConfig {
    pub class: String,
    /// Projects of this class; job arrivals spread over them with a Zipf(1) law, as real
    /// centres see a few very active projects and many quiet ones.
    pub projects: u32,
    /// Share of all jobs.
    pub job_share: f64,
    #[serde(default = "d_weight")]
    pub weight: u32,
    /// Whole GPUs guaranteed to each project of the class.
    #[serde(default)]
    pub guaranteed_gpus: u64,
    /// Multiplies the median run time for this class.
    #[serde(default = "d_one")]
    pub duration_scale: f64,
    /// Overrides `server_track` for this class.
    #[serde(default)]
    pub server_track: Option<f64>,
}

fn d_server_track() -> f64 {
    0.15
}
fn d_small_sizes() -> Vec<(f64, f64)> {
    vec![(1.0, 0.55), (2.0, 0.2), (4.0, 0.15), (0.5, 0.1)]
}
fn d_server_nodes() -> Vec<(u32, f64)> {
    vec![(1, 0.55), (2, 0.25), (4, 0.12), (8, 0.06), (16, 0.02)]
}
fn d_gpus_per_server() -> u32 {
    8
}
fn d_median() -> f64 {
    1.0
}
fn d_sigma() -> f64 {
    1.5
}
fn d_max() -> f64 {
    168.0
}
fn d_weight() -> u32 {
    1
}
fn d_one() -> f64 {
    1.0
}

impl SyntheticConfig {
    fn check(&self, path: &Path) -> Result<(), SimError> {
        let bad = |field: &str, reason: &str| SimError::File {
            path: path.to_path_buf(),
            reason: format!("workload.{field}: {reason}"),
        };
        if self.classes.is_empty() {
            return Err(bad("classes", "name at least one tenant class"));
        }
        for c in &self.classes {
            if super::generic::parse_class(&c.class).is_none() {
                return Err(bad(
                    "classes.class",
                    &format!("unknown tenant class `{}`", c.class),
                ));
            }
            if c.projects == 0 || c.job_share.is_nan() || c.job_share < 0.0 || c.weight == 0 {
                return Err(bad(
                    "classes",
                    &format!(
                        "`{}` needs projects >= 1, weight >= 1, job_share >= 0",
                        c.class
                    ),
                ));
            }
        }
        if self.classes.iter().map(|c| c.job_share).sum::<f64>() <= 0.0 {
            return Err(bad(
                "classes.job_share",
                "shares must add up to more than 0",
            ));
        }
        if self
            .small_sizes
            .iter()
            .any(|&(g, w)| !(g > 0.0 && w >= 0.0 && (g < 1.0 || g.fract() == 0.0)))
            || self.small_sizes.iter().map(|s| s.1).sum::<f64>() <= 0.0
        {
            return Err(bad(
                "small_sizes",
                "pairs of (GPUs > 0, weight >= 0); GPUs whole above 1",
            ));
        }
        if self.server_nodes.iter().any(|&(n, w)| n == 0 || w < 0.0)
            || self.server_nodes.iter().map(|s| s.1).sum::<f64>() <= 0.0
        {
            return Err(bad("server_nodes", "pairs of (nodes >= 1, weight >= 0)"));
        }
        if !(0.0..=1.0).contains(&self.server_track) || self.gpus_per_server == 0 {
            return Err(bad("server_track", "must be between 0 and 1"));
        }
        if !(self.duration_median_h > 0.0
            && self.duration_sigma >= 0.0
            && self.duration_max_h > 0.0)
        {
            return Err(bad(
                "duration_median_h",
                "run times need a positive median and max",
            ));
        }
        match (self.load, self.arrival_rate_per_hour) {
            (_, Some(r)) if r > 0.0 => Ok(()),
            (Some(l), None) if l > 0.0 => Ok(()),
            _ => Err(bad("load", "set load (> 0) or arrival_rate_per_hour (> 0)")),
        }
    }

    /// Mean GPU-hours of one job, for turning `load` into an arrival rate (clipping ignored).
    pub fn mean_gpu_hours(&self) -> f64 {
        let small_w: f64 = self.small_sizes.iter().map(|s| s.1).sum();
        let small_g = self.small_sizes.iter().map(|s| s.0 * s.1).sum::<f64>() / small_w;
        let server_w: f64 = self.server_nodes.iter().map(|s| s.1).sum();
        let server_g = self
            .server_nodes
            .iter()
            .map(|s| s.0 as f64 * self.gpus_per_server as f64 * s.1)
            .sum::<f64>()
            / server_w;
        let share_sum: f64 = self.classes.iter().map(|c| c.job_share).sum();
        let base = self.duration_median_h * (self.duration_sigma.powi(2) / 2.0).exp();
        self.classes
            .iter()
            .map(|c| {
                let t = c.server_track.unwrap_or(self.server_track);
                let g = (1.0 - t) * small_g + t * server_g;
                c.job_share / share_sum * g * base * c.duration_scale
            })
            .sum()
    }
}

/// Cumulative weights for drawing an index.
struct Picker(Vec<f64>);

impl Picker {
    fn new(weights: impl Iterator<Item = f64>) -> Picker {
        let mut acc = 0.0;
        Picker(
            weights
                .map(|w| {
                    acc += w;
                    acc
                })
                .collect(),
        )
    }
    fn pick(&self, rng: &mut ChaCha8Rng) -> usize {
        let total = *self.0.last().unwrap_or(&1.0);
        let x = rng.random::<f64>() * total;
        self.0.partition_point(|&c| c <= x).min(self.0.len() - 1)
    }
}

/// A standard normal draw (Box-Muller), so no distribution crate is needed.
fn normal(rng: &mut ChaCha8Rng) -> f64 {
    let u1: f64 = 1.0 - rng.random::<f64>();
    let u2: f64 = rng.random::<f64>();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

pub fn generate(
    cfg: &SyntheticConfig,
    reference_gpus: f64,
    seed: u64,
    path: &Path,
) -> Result<Workload, SimError> {
    cfg.check(path)?;
    let rate_per_h = match cfg.arrival_rate_per_hour {
        Some(r) => r,
        None => cfg.load.unwrap_or(1.0) * reference_gpus / cfg.mean_gpu_hours(),
    };
    let mean_gap_ms = 3_600_000.0 / rate_per_h;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut projects = Vec::new();
    let mut class_projects = Vec::new();
    for c in &cfg.classes {
        let class = super::generic::parse_class(&c.class).expect("checked");
        let first = projects.len() as u32;
        for i in 0..c.projects {
            projects.push(ProjectDef {
                name: format!("{}-{:04}", class.as_str(), i),
                org: format!("{}-{:04}", class.as_str(), i),
                class,
                weight: c.weight,
                guaranteed_gpus: c.guaranteed_gpus,
            });
        }
        let zipf = Picker::new((0..c.projects).map(|k| 1.0 / (k as f64 + 1.0)));
        class_projects.push((first, zipf));
    }
    let class_pick = Picker::new(cfg.classes.iter().map(|c| c.job_share));
    let small_pick = Picker::new(cfg.small_sizes.iter().map(|s| s.1));
    let server_pick = Picker::new(cfg.server_nodes.iter().map(|s| s.1));
    let max_ms = (cfg.duration_max_h * 3_600_000.0).min(super::MAX_DURATION_S * 1000.0);
    let mut t = 0.0f64;
    let mut jobs = Vec::with_capacity(cfg.jobs as usize);
    for _ in 0..cfg.jobs {
        t += -mean_gap_ms * (1.0 - rng.random::<f64>()).ln();
        let ci = class_pick.pick(&mut rng);
        let c = &cfg.classes[ci];
        let (first, zipf) = &class_projects[ci];
        let project = first + zipf.pick(&mut rng) as u32;
        let server = rng.random::<f64>() < c.server_track.unwrap_or(cfg.server_track);
        let (replicas, gpu) = if server {
            let nodes = cfg.server_nodes[server_pick.pick(&mut rng)].0;
            (nodes, GpuRequest::Whole(cfg.gpus_per_server))
        } else {
            let g = cfg.small_sizes[small_pick.pick(&mut rng)].0;
            if g < 1.0 {
                (
                    1,
                    GpuRequest::Fraction(((g * 1000.0).round() as u32).clamp(1, 999)),
                )
            } else {
                (1, GpuRequest::Whole(g as u32))
            }
        };
        let median_ms = cfg.duration_median_h * 3_600_000.0 * c.duration_scale;
        let d = (median_ms * (cfg.duration_sigma * normal(&mut rng)).exp()).clamp(60_000.0, max_ms);
        let mut job = SimJob::new(
            Time(t.round() as i64),
            project,
            replicas,
            gpu,
            Span(d.round() as i64),
        );
        job.grace = Span((cfg.grace_s * 1000.0).round() as i64);
        jobs.push(job);
    }
    if t > super::MAX_SUBMIT_S * 1000.0 {
        return Err(SimError::File {
            path: path.to_path_buf(),
            reason:
                "workload.arrival_rate_per_hour: at this rate the arrivals run past the year 9999"
                    .into(),
        });
    }
    let mut w = Workload {
        source: path.to_path_buf(),
        projects,
        jobs,
        model_field: "gpu_model",
    };
    w.finish_loading();
    Ok(w)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> SyntheticConfig {
        toml::from_str(
            r#"
jobs = 2000
load = 0.9
[[classes]]
class = "academia"
projects = 10
job_share = 0.7
[[classes]]
class = "partner"
projects = 2
job_share = 0.3
server_track = 0.5
"#,
        )
        .unwrap()
    }

    #[test]
    fn a_seed_gives_the_same_jobs_and_another_seed_others() {
        let cfg = config();
        let a = generate(&cfg, 512.0, 1, Path::new("s")).unwrap();
        let b = generate(&cfg, 512.0, 1, Path::new("s")).unwrap();
        let c = generate(&cfg, 512.0, 2, Path::new("s")).unwrap();
        assert_eq!(a.jobs, b.jobs);
        assert_ne!(a.jobs, c.jobs);
    }

    #[test]
    fn tracks_classes_and_load_come_out_as_configured() {
        let cfg = config();
        let w = generate(&cfg, 512.0, 3, Path::new("s")).unwrap();
        assert_eq!(w.jobs.len(), 2000);
        assert_eq!(w.projects.len(), 12);
        let partner: Vec<_> = w
            .jobs
            .iter()
            .filter(|j| w.projects[j.project as usize].class == haneul_model::OrgClass::Partner)
            .collect();
        let share = partner.len() as f64 / 2000.0;
        assert!((share - 0.3).abs() < 0.04, "{share}");
        // Half the partner's jobs are whole 8-GPU servers; the rest 1-4 GPUs or a share.
        let servers = partner
            .iter()
            .filter(|j| j.gpu == GpuRequest::Whole(8))
            .count();
        assert!((servers as f64 / partner.len() as f64 - 0.5).abs() < 0.07);
        assert!(w.jobs.iter().all(|j| j.work.0 >= 60_000));
        // Offered GPU-hours per hour of arrivals near load x capacity (clipping trims a little).
        let span_h = w.jobs.last().unwrap().submit.0 as f64 / 3_600_000.0;
        let asked: f64 = w
            .jobs
            .iter()
            .map(|j| j.gpus() * j.work.0 as f64 / 3_600_000.0)
            .sum();
        let load = asked / span_h / 512.0;
        assert!(load > 0.6 && load < 1.2, "{load}");
    }
}
