//! The planner's cost model: total cost of ownership of a fleet per year, in KRW and USD, from
//! the catalogue's server figures and the site's parameters. It owns the site parameters (PUE,
//! electricity price, depreciation, operations, exchange rate) with their defaults and sources.
//!
//! Per year, for servers `n_m` of each model `m` running at utilisation `u_m`:
//! - depreciation: `sum(n_m x server_price_usd_m) x krw_per_usd / depreciation_years`
//!   (straight line, no residual value, no financing cost);
//! - power: `sum(n_m x (idle_kw_m + u_m x (max_kw_m - idle_kw_m))) x 8760 h x PUE x krw_per_kwh`;
//! - operations: `sum(n_m) x ops_krw_per_server_year`.

use crate::catalogue::Catalogue;
use crate::error::SimError;
use serde::{Deserialize, Serialize};

pub const HOURS_PER_YEAR: f64 = 8760.0;

/// The site's parameters: a scenario's `[site]` table, every field optional.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Site {
    /// Power usage effectiveness: facility power over IT power.
    #[serde(default = "d_pue")]
    pub pue: f64,
    /// Electricity price, KRW per kWh.
    #[serde(default = "d_krw_per_kwh")]
    pub krw_per_kwh: f64,
    /// Years over which servers are written off.
    #[serde(default = "d_depreciation_years")]
    pub depreciation_years: f64,
    /// Support contracts, spares and staff per server and year, KRW.
    #[serde(default = "d_ops")]
    pub ops_krw_per_server_year: f64,
    /// KRW per US dollar.
    #[serde(default = "d_krw_per_usd")]
    pub krw_per_usd: f64,
}

fn d_pue() -> f64 {
    1.4
}
fn d_krw_per_kwh() -> f64 {
    185.0
}
fn d_depreciation_years() -> f64 {
    5.0
}
fn d_ops() -> f64 {
    20_000_000.0
}
fn d_krw_per_usd() -> f64 {
    1400.0
}

impl Default for Site {
    fn default() -> Site {
        Site {
            pue: d_pue(),
            krw_per_kwh: d_krw_per_kwh(),
            depreciation_years: d_depreciation_years(),
            ops_krw_per_server_year: d_ops(),
            krw_per_usd: d_krw_per_usd(),
        }
    }
}

/// Where each default comes from; the report prints them beside the values in use.
pub const SITE_SOURCES: [(&str, &str); 5] = [
    (
        "pue",
        "between the Uptime Institute Global Data Center Survey 2024 average (1.56) and the 1.2-1.3 of new liquid-cooled AI halls",
    ),
    (
        "krw_per_kwh",
        "KEPCO industrial tariff (산업용 을), average sale price after the October 2024 increase, about 180-190 KRW/kWh (KEPCO electricity statistics); estimate",
    ),
    (
        "depreciation_years",
        "5 years: Amazon shortened part of its servers' useful life from 6 to 5 years in 2025 citing AI; hyperscalers use 5-6",
    ),
    (
        "ops_krw_per_server_year",
        "assumption: support contract, spares and staff at about 4-5% of a Hopper server's price a year; replace with the centre's",
    ),
    (
        "krw_per_usd",
        "Bank of Korea, 2025 average of about 1,400-1,420 KRW per USD; estimate",
    ),
];

impl Site {
    /// Refuses values that make no sense, naming the field.
    pub fn check(&self) -> Result<(), SimError> {
        let bad = |field: &str, reason: &str| SimError::Plan {
            field: format!("site.{field}"),
            reason: reason.into(),
        };
        if !(self.pue.is_finite() && (1.0..=3.0).contains(&self.pue)) {
            return Err(bad("pue", "must be 1.0 to 3.0"));
        }
        if !(self.krw_per_kwh.is_finite() && self.krw_per_kwh >= 0.0) {
            return Err(bad("krw_per_kwh", "must not be negative"));
        }
        if !(self.depreciation_years.is_finite() && (1.0..=30.0).contains(&self.depreciation_years))
        {
            return Err(bad("depreciation_years", "must be 1 to 30 years"));
        }
        if !(self.ops_krw_per_server_year.is_finite() && self.ops_krw_per_server_year >= 0.0) {
            return Err(bad("ops_krw_per_server_year", "must not be negative"));
        }
        if !(self.krw_per_usd.is_finite() && self.krw_per_usd > 0.0) {
            return Err(bad("krw_per_usd", "must be a positive number"));
        }
        Ok(())
    }
}

/// Servers of one model in a fleet, and how busy their accelerators were.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerUse {
    pub model: String,
    pub servers: u64,
    /// Busy share of the model's accelerators, 0 to 1.
    pub utilization: f64,
}

/// A fleet's cost per year.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct Tco {
    /// Purchase price of all servers, KRW.
    pub capex_krw: f64,
    pub depreciation_krw_per_year: f64,
    /// Energy at the meter (PUE included), MWh per year.
    pub energy_mwh_per_year: f64,
    pub power_krw_per_year: f64,
    pub ops_krw_per_year: f64,
    pub total_krw_per_year: f64,
    pub total_usd_per_year: f64,
}

impl Tco {
    /// Over the depreciation life: what a budget must cover.
    pub fn lifetime_krw(&self, site: &Site) -> f64 {
        self.total_krw_per_year * site.depreciation_years
    }
}

/// The server figures of a model, or an error naming the missing catalogue field.
pub struct ServerFigures {
    pub price_usd: f64,
    pub max_kw: f64,
    pub idle_kw: f64,
}

pub fn server_figures(catalogue: &Catalogue, model: &str) -> Result<ServerFigures, SimError> {
    let c = catalogue.get(model).ok_or_else(|| SimError::Plan {
        field: "gpu_model".into(),
        reason: format!(
            "unknown GPU model `{model}`; the catalogue ({}) has {}",
            catalogue.source.display(),
            catalogue.names()
        ),
    })?;
    let missing = |field: &str| SimError::File {
        path: catalogue.source.clone(),
        reason: format!(
            "gpu.{field}: `{model}` has none; the planner's cost model needs it (see crates/haneul-sim/catalogue.toml)"
        ),
    };
    let price_usd = c
        .server_price_usd
        .ok_or_else(|| missing("server_price_usd"))?;
    let max_kw = c
        .server_power_kw
        .ok_or_else(|| missing("server_power_kw"))?;
    Ok(ServerFigures {
        price_usd,
        max_kw,
        idle_kw: c.server_idle_kw.unwrap_or(0.0),
    })
}

/// The cost per year of `fleet` at its utilisation.
pub fn tco(site: &Site, catalogue: &Catalogue, fleet: &[ServerUse]) -> Result<Tco, SimError> {
    let mut t = Tco::default();
    let mut it_kw = 0.0;
    let mut servers = 0u64;
    for s in fleet {
        let f = server_figures(catalogue, &s.model)?;
        let n = s.servers as f64;
        let u = s.utilization.clamp(0.0, 1.0);
        t.capex_krw += n * f.price_usd * site.krw_per_usd;
        it_kw += n * (f.idle_kw + u * (f.max_kw - f.idle_kw));
        servers += s.servers;
    }
    t.depreciation_krw_per_year = t.capex_krw / site.depreciation_years;
    let kwh = it_kw * HOURS_PER_YEAR * site.pue;
    t.energy_mwh_per_year = kwh / 1000.0;
    t.power_krw_per_year = kwh * site.krw_per_kwh;
    t.ops_krw_per_year = servers as f64 * site.ops_krw_per_server_year;
    t.total_krw_per_year = t.depreciation_krw_per_year + t.power_krw_per_year + t.ops_krw_per_year;
    t.total_usd_per_year = t.total_krw_per_year / site.krw_per_usd;
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    const CATALOGUE: &str = r#"
[[gpu]]
model = "X"
throughput = 1
price_per_gpu_hour = 1
power_w = 700
server_price_usd = 300000
server_power_kw = 10.2
server_idle_kw = 3.0

[[gpu]]
model = "N"
throughput = 0.5
price_per_gpu_hour = 1
power_w = 100
server_price_usd = 100000
server_power_kw = 3.0
"#;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-9 * b.abs().max(1.0)
    }

    #[test]
    fn ten_servers_at_half_load_by_hand() {
        let cat = Catalogue::parse(CATALOGUE, Path::new("c.toml")).unwrap();
        let site = Site::default();
        let t = tco(
            &site,
            &cat,
            &[ServerUse {
                model: "X".into(),
                servers: 10,
                utilization: 0.5,
            }],
        )
        .unwrap();
        // 10 x USD 300,000 x 1,400 = 4,200,000,000 KRW, over 5 years 840,000,000 a year.
        assert!(close(t.capex_krw, 4_200_000_000.0));
        assert!(close(t.depreciation_krw_per_year, 840_000_000.0));
        // 3.0 + 0.5 x 7.2 = 6.6 kW a server, 66 kW, x 8,760 h x PUE 1.4 = 809,424 kWh.
        assert!(close(t.energy_mwh_per_year, 809.424));
        // x 185 KRW = 149,743,440 KRW.
        assert!(close(t.power_krw_per_year, 149_743_440.0));
        assert!(close(t.ops_krw_per_year, 200_000_000.0));
        assert!(close(t.total_krw_per_year, 1_189_743_440.0));
        assert!(close(t.total_usd_per_year, 1_189_743_440.0 / 1400.0));
        assert!(close(t.lifetime_krw(&site), 5.0 * 1_189_743_440.0));
    }

    #[test]
    fn a_mixed_fleet_adds_up_per_model_and_idle_costs_power() {
        let cat = Catalogue::parse(CATALOGUE, Path::new("c.toml")).unwrap();
        let site = Site {
            pue: 1.2,
            krw_per_kwh: 100.0,
            depreciation_years: 4.0,
            ops_krw_per_server_year: 1_000_000.0,
            krw_per_usd: 1000.0,
        };
        let t = tco(
            &site,
            &cat,
            &[
                ServerUse {
                    model: "X".into(),
                    servers: 2,
                    utilization: 0.0,
                },
                ServerUse {
                    model: "N".into(),
                    servers: 4,
                    utilization: 1.0,
                },
            ],
        )
        .unwrap();
        // Capex 2 x 300,000,000 + 4 x 100,000,000 = 1,000,000,000; 250,000,000 a year.
        assert!(close(t.depreciation_krw_per_year, 250_000_000.0));
        // Idle X: 2 x 3.0 kW; N without an idle figure at full load: 4 x 3.0 kW. 18 kW x 8,760
        // x 1.2 = 189,216 kWh x 100 KRW.
        assert!(close(t.power_krw_per_year, 18_921_600.0));
        assert!(close(t.ops_krw_per_year, 6_000_000.0));
        assert!(close(t.total_usd_per_year, 274_921_600.0 / 1000.0));
    }

    #[test]
    fn a_model_without_server_figures_is_refused_by_name() {
        let cat = Catalogue::parse(
            "[[gpu]]\nmodel = \"Y\"\nthroughput = 1\nprice_per_gpu_hour = 1\npower_w = 1\n",
            Path::new("c.toml"),
        )
        .unwrap();
        let err = tco(
            &Site::default(),
            &cat,
            &[ServerUse {
                model: "Y".into(),
                servers: 1,
                utilization: 0.1,
            }],
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.starts_with("c.toml: gpu.server_price_usd: `Y` has none"),
            "{err}"
        );
        let bad = Site {
            pue: 0.8,
            ..Site::default()
        };
        assert!(
            bad.check()
                .unwrap_err()
                .to_string()
                .starts_with("site.pue:")
        );
    }
}
