//! The GPU catalogue: relative throughput, price and power of each GPU class, and what the
//! capacity planner's cost model needs (server price and power, peak BF16/FP8, memory, speed per
//! workload class). It owns the numbers that turn a fleet and a schedule into run times, costs and
//! energy; the shipped defaults live in `crates/haneul-sim/catalogue.toml`, each figure with its
//! source in the entry's `sources` table.

use crate::error::{SimError, toml_error};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The shipped default catalogue (H100, H200, B200 and a domestic NPU class).
pub const DEFAULT_CATALOGUE: &str = include_str!("../catalogue.toml");

#[derive(Debug, Clone, Default, PartialEq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct GpuClass {
    pub model: String,
    pub throughput: f64,
    pub price_per_gpu_hour: f64,
    pub power_w: f64,
    #[serde(default)]
    pub idle_power_w: f64,
    /// Accelerators in one server (the unit the planner buys).
    #[serde(default = "d_gpus_per_server")]
    pub gpus_per_server: u32,
    /// Price of one server with its accelerators, US dollars.
    #[serde(default)]
    pub server_price_usd: Option<f64>,
    /// Whole-server power at full load and when idle, kW (before PUE).
    #[serde(default)]
    pub server_power_kw: Option<f64>,
    #[serde(default)]
    pub server_idle_kw: Option<f64>,
    /// Dense peak per accelerator, TFLOPS.
    #[serde(default)]
    pub peak_bf16_tflops: Option<f64>,
    #[serde(default)]
    pub peak_fp8_tflops: Option<f64>,
    /// Accelerator memory, GiB.
    #[serde(default)]
    pub memory_gib: Option<f64>,
    /// Speed per workload class relative to the reference class; the planner blends them by
    /// the demand's mix (without them it uses `throughput`).
    #[serde(default)]
    pub speed: Option<Speeds>,
    /// An entry built from assumptions rather than published figures; reports label it so.
    #[serde(default)]
    pub illustrative: bool,
    /// Where each figure comes from, by field name; reports print them in the assumptions.
    #[serde(default)]
    pub sources: BTreeMap<String, String>,
}

/// Relative speed per workload class (reference class = 1).
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Speeds {
    pub training: f64,
    pub fine_tuning: f64,
    pub inference: f64,
}

fn d_gpus_per_server() -> u32 {
    8
}

/// The fields a `sources` table may describe.
const SOURCED_FIELDS: [&str; 12] = [
    "throughput",
    "price_per_gpu_hour",
    "power_w",
    "idle_power_w",
    "server_price_usd",
    "server_power_kw",
    "server_idle_kw",
    "peak_bf16_tflops",
    "peak_fp8_tflops",
    "memory_gib",
    "speed",
    "illustrative",
];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CatalogueFile {
    gpu: Vec<toml::Spanned<GpuClass>>,
}

/// GPU classes by model name.
#[derive(Debug, Clone, PartialEq)]
pub struct Catalogue {
    pub classes: BTreeMap<String, GpuClass>,
    /// Where it came from, for error messages.
    pub source: PathBuf,
}

impl Catalogue {
    pub fn default_catalogue() -> Catalogue {
        Catalogue::parse(DEFAULT_CATALOGUE, Path::new("<default catalogue>"))
            .expect("the shipped catalogue parses")
    }

    pub fn load(path: &Path) -> Result<Catalogue, SimError> {
        let text = std::fs::read_to_string(path).map_err(|source| SimError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Catalogue::parse(&text, path)
    }

    pub fn parse(text: &str, path: &Path) -> Result<Catalogue, SimError> {
        let file: CatalogueFile = toml::from_str(text).map_err(|e| toml_error(path, text, &e))?;
        let mut classes = BTreeMap::new();
        for spanned in file.gpu {
            let line = crate::error::line_of(text, spanned.span().start);
            let c = spanned.into_inner();
            let bad = |field: &str, reason: &str| SimError::Row {
                path: path.to_path_buf(),
                line,
                field: format!("gpu.{field}"),
                reason: format!("`{}`: {reason}", c.model),
            };
            if haneul_model::GpuModel::new(&c.model).is_err() {
                return Err(bad("model", "not a valid GPU model name"));
            }
            if !(c.throughput.is_finite() && c.throughput > 0.0) {
                return Err(bad("throughput", "must be a positive number"));
            }
            if !(c.price_per_gpu_hour.is_finite() && c.price_per_gpu_hour >= 0.0) {
                return Err(bad("price_per_gpu_hour", "must not be negative"));
            }
            let watts_ok = |w: f64| w.is_finite() && w >= 0.0;
            if !watts_ok(c.power_w) || !watts_ok(c.idle_power_w) {
                return Err(bad("power_w", "must not be negative"));
            }
            let positive = |v: Option<f64>| v.is_none_or(|x| x.is_finite() && x > 0.0);
            for (field, v) in [
                ("server_price_usd", c.server_price_usd),
                ("server_power_kw", c.server_power_kw),
                ("peak_bf16_tflops", c.peak_bf16_tflops),
                ("peak_fp8_tflops", c.peak_fp8_tflops),
                ("memory_gib", c.memory_gib),
            ] {
                if !positive(v) {
                    return Err(bad(field, "must be a positive number"));
                }
            }
            if !c.server_idle_kw.is_none_or(|x| x.is_finite() && x >= 0.0)
                || c.server_idle_kw > c.server_power_kw
            {
                return Err(bad(
                    "server_idle_kw",
                    "must be 0 to server_power_kw (and needs server_power_kw)",
                ));
            }
            // The upper bound is the fleet's, checked when the planner builds a fleet.
            if c.gpus_per_server == 0 {
                return Err(bad("gpus_per_server", "must be at least 1"));
            }
            if let Some(s) = c.speed
                && ![s.training, s.fine_tuning, s.inference]
                    .iter()
                    .all(|x| x.is_finite() && *x > 0.0)
            {
                return Err(bad(
                    "speed",
                    "training, fine_tuning and inference must be positive numbers",
                ));
            }
            if let Some(k) = c
                .sources
                .keys()
                .find(|k| !SOURCED_FIELDS.contains(&k.as_str()))
            {
                return Err(bad(
                    "sources",
                    &format!(
                        "`{k}` is not a catalogue field; use {}",
                        SOURCED_FIELDS.join(", ")
                    ),
                ));
            }
            if classes.contains_key(&c.model) {
                return Err(bad("model", "listed twice"));
            }
            classes.insert(c.model.clone(), c);
        }
        Ok(Catalogue {
            classes,
            source: path.to_path_buf(),
        })
    }

    pub fn get(&self, model: &str) -> Option<&GpuClass> {
        self.classes.get(model)
    }

    pub fn names(&self) -> String {
        self.classes.keys().cloned().collect::<Vec<_>>().join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_catalogue_has_the_four_classes() {
        let c = Catalogue::default_catalogue();
        for m in ["H100", "H200", "B200", "NPU"] {
            assert!(c.get(m).is_some(), "{m} missing");
        }
        assert_eq!(c.get("H100").unwrap().throughput, 1.0);
    }

    #[test]
    fn bad_figures_name_the_line_and_field() {
        let text = "[[gpu]]\nmodel = \"X\"\nthroughput = 1\nprice_per_gpu_hour = 1\npower_w = 1\n\n[[gpu]]\nmodel = \"Y\"\nthroughput = -2.0\nprice_per_gpu_hour = 1\npower_w = 1\n";
        let err = Catalogue::parse(text, Path::new("c.toml")).unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("c.toml:7: gpu.throughput"), "{msg}");
    }
}
