//! The GPU catalogue: relative throughput, price and power of each GPU class. It owns the numbers
//! that turn a fleet and a schedule into run times, costs and energy; the shipped defaults live in
//! `crates/haneul-sim/catalogue.toml`, each figure with its source.

use crate::error::{SimError, toml_error};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The shipped default catalogue (H100, H200, B200 and a domestic NPU class).
pub const DEFAULT_CATALOGUE: &str = include_str!("../catalogue.toml");

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GpuClass {
    pub model: String,
    pub throughput: f64,
    pub price_per_gpu_hour: f64,
    pub power_w: f64,
    #[serde(default)]
    pub idle_power_w: f64,
}

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
