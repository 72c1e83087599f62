//! Accounting: award balances and states, the hold rules that keep spent, expired or
//! unscreened projects from starting jobs, operator notices (award warnings, the training
//! compute threshold, underuse), monthly statements, and their routes. The ledger itself is
//! written by the store in the transaction that ends each attempt; this module only reads it.
//!
//! Policy comes from [`AccountingPolicy`] (`DIR/accounting.toml` for `haneul server`), whose
//! defaults are documented in docs/accounting.md.

use crate::AppState;
use crate::auth::Caller;
use crate::calendar::{Bucket, Calendar};
use crate::compliance;
use crate::error::{ApiError, Body};
use crate::extract::{Id, Q};
use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use haneul_api::i18n::Reason;
use haneul_api::*;
use haneul_model::GpuModel;
use haneul_store as st;
use serde::Deserialize;
use std::collections::BTreeMap;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub const MS_PER_HOUR: f64 = 3_600_000.0;
const MS_PER_DAY: i64 = 86_400_000;

/// What the centre decides about charging, holding and flagging. Every field has a default, so
/// an empty `accounting.toml` is valid.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AccountingPolicy {
    /// Fraction of an award's GPU-hours at which operators and the project are warned.
    pub warn_fraction: f64,
    /// Hold jobs of projects that have never had an award. Off by default so that a centre
    /// can run unmetered projects (and `haneul up` needs no award to try things out).
    pub require_award: bool,
    /// ISO 3166-1 alpha-2 codes whose organisations, or organisations owned from them, are
    /// refused (see docs/accounting.md for the sources of the default list).
    pub restricted_countries: Vec<String>,
    /// Fraction of peak operations a training job sustains, for the compute estimate.
    pub utilisation: f64,
    /// Estimated cumulative operations at which a project's training compute is reported.
    pub compute_threshold: f64,
    /// Peak dense BF16 operations per second per GPU model; overrides and extends the table
    /// in [`default_peak_ops`].
    pub peak_ops: BTreeMap<String, f64>,
    /// Underuse: the window looked back over, in days.
    pub underuse_window_days: f64,
    /// Underuse: an award whose quota ran less than this fraction of the window is flagged.
    pub underuse_fraction: f64,
    /// The centre's time zone (IANA name): statements' months, usage charts' days and the dates
    /// in notices and hold reasons follow it; API timestamps stay UTC.
    pub time_zone: Calendar,
}

/// The default restricted-country list: the countries for which 22 CFR 126.1(d)(1) sets a
/// policy of denial, those under UN Security Council arms embargoes (22 CFR 126.1(d)(2)), and
/// Macau. docs/accounting.md gives the sources; a centre replaces the list with its own
/// export-control officer's.
pub const DEFAULT_RESTRICTED: &[&str] = &[
    // 22 CFR 126.1(d)(1): Belarus, Burma, Cambodia, China, Cuba, Iran, North Korea, Russia,
    // Syria, Venezuela.
    "BY", "MM", "KH", "CN", "CU", "IR", "KP", "RU", "SY", "VE",
    // UN Security Council arms embargoes, 22 CFR 126.1(d)(2): Afghanistan, Central African
    // Republic, DR Congo, Eritrea, Haiti, Iraq, Lebanon, Libya, Somalia, South Sudan, Sudan,
    // Yemen, Zimbabwe.
    "AF", "CF", "CD", "ER", "HT", "IQ", "LB", "LY", "SO", "SS", "SD", "YE", "ZW",
    // Macau, as the programme rules require.
    "MO",
];

impl Default for AccountingPolicy {
    fn default() -> Self {
        AccountingPolicy {
            warn_fraction: 0.8,
            require_award: false,
            restricted_countries: DEFAULT_RESTRICTED.iter().map(|c| c.to_string()).collect(),
            utilisation: 0.4,
            compute_threshold: 1e26,
            peak_ops: BTreeMap::new(),
            underuse_window_days: 14.0,
            underuse_fraction: 0.25,
            time_zone: Calendar::default(),
        }
    }
}

/// Peak dense BF16 tensor operations per second, from the vendors' datasheets (without
/// sparsity): NVIDIA H100 SXM 989 TFLOPS, H200 SXM 989 TFLOPS, B200 2.25 PFLOPS, A100 SXM 312
/// TFLOPS, L40S 362 TFLOPS. The GPU catalogue (crates/haneul-sim/catalogue.toml) has relative
/// throughput but no operation counts, so the table lives here.
pub fn default_peak_ops(model: &str) -> Option<f64> {
    Some(match model {
        "H100" | "H200" => 989e12,
        "B200" => 2250e12,
        "A100" => 312e12,
        "L40S" => 362e12,
        _ => return None,
    })
}

impl AccountingPolicy {
    /// Reads `path` when it exists, else the defaults.
    pub fn load(path: &std::path::Path) -> Result<Self, String> {
        match std::fs::read_to_string(path) {
            Ok(text) => {
                let p: AccountingPolicy =
                    toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
                p.check().map_err(|e| format!("{}: {e}", path.display()))?;
                Ok(p)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(format!("{}: {e}", path.display())),
        }
    }

    pub fn check(&self) -> Result<(), String> {
        if !(0.0..=1.0).contains(&self.warn_fraction) {
            return Err("warn_fraction: must be between 0 and 1".into());
        }
        if !(self.utilisation > 0.0 && self.utilisation <= 1.0) {
            return Err("utilisation: must be above 0 and at most 1".into());
        }
        if self.compute_threshold <= 0.0 {
            return Err("compute_threshold: must be positive".into());
        }
        for c in &self.restricted_countries {
            if !compliance::is_country_code(c) {
                return Err(format!(
                    "restricted_countries: `{c}` is not an ISO 3166-1 alpha-2 code in capitals"
                ));
            }
        }
        Ok(())
    }

    pub fn is_restricted(&self, country: &str) -> bool {
        self.restricted_countries.iter().any(|c| c == country)
    }

    pub fn peak_ops(&self, model: &str) -> Option<f64> {
        self.peak_ops
            .get(model)
            .copied()
            .or_else(|| default_peak_ops(model))
    }
}

/// An award's state at `now`.
pub fn award_state(b: &st::AwardBalance, now: i64, warn_fraction: f64) -> &'static str {
    if now < b.award.valid_from {
        "pending"
    } else if now >= b.award.valid_until {
        "expired"
    } else if b.used_ms >= b.granted_ms {
        "spent"
    } else if b.granted_ms > 0 && b.used_ms as f64 >= warn_fraction * b.granted_ms as f64 {
        "warning"
    } else {
        "active"
    }
}

pub fn balance_to_api(
    b: &st::AwardBalance,
    project_name: &str,
    now: i64,
    policy: &AccountingPolicy,
) -> AwardBalance {
    AwardBalance {
        award: b.award.id,
        project: b.award.project_id,
        project_name: project_name.to_string(),
        gpu_model: b.award.gpu_model.to_string(),
        gpu_quota: b.award.gpu_quota,
        gpu_hours_granted: b.granted_ms as f64 / MS_PER_HOUR,
        gpu_hours_used: b.used_ms as f64 / MS_PER_HOUR,
        gpu_hours_left: (b.granted_ms - b.used_ms) as f64 / MS_PER_HOUR,
        valid_from: b.award.valid_from,
        valid_until: b.award.valid_until,
        state: award_state(b, now, policy.warn_fraction).to_string(),
    }
}

/// Everything the hold rules read, loaded in one go.
pub struct View {
    pub orgs: BTreeMap<i64, st::OrgRecord>,
    pub projects: Vec<st::ProjectRecord>,
    pub balances: Vec<st::AwardBalance>,
    pub denied: Vec<st::DeniedParty>,
}

impl View {
    pub async fn load(store: &dyn st::Store) -> Result<View, st::StoreError> {
        Ok(View {
            orgs: store
                .list_orgs()
                .await?
                .into_iter()
                .map(|o| (o.id, o))
                .collect(),
            projects: store.list_projects().await?,
            balances: store.award_balances(None).await?,
            denied: store.list_denied_parties().await?,
        })
    }

    /// Why each held project may not start jobs now; projects that may are absent.
    pub fn holds(&self, policy: &AccountingPolicy, now: i64) -> BTreeMap<i64, String> {
        let mut by_project: BTreeMap<i64, Vec<&st::AwardBalance>> = BTreeMap::new();
        for b in &self.balances {
            by_project.entry(b.award.project_id).or_default().push(b);
        }
        let mut out = BTreeMap::new();
        for p in &self.projects {
            let awards = by_project.get(&p.id).map(Vec::as_slice).unwrap_or(&[]);
            if let Some(reason) = self.hold_reason(p, awards, policy, now) {
                out.insert(p.id, reason);
            }
        }
        out
    }

    fn hold_reason(
        &self,
        p: &st::ProjectRecord,
        awards: &[&st::AwardBalance],
        policy: &AccountingPolicy,
        now: i64,
    ) -> Option<String> {
        let org = self.orgs.get(&p.org_id)?;
        if org.verification != st::Verification::Verified {
            return Some(Reason::OrgUnverified.english(&[
                ("org", &org.name),
                ("state", org.verification.as_str()),
                ("id", &org.id.to_string()),
            ]));
        }
        let parent = org.parent.and_then(|id| self.orgs.get(&id));
        if let Err(refusal) = compliance::screen(
            &org.name,
            &org.country,
            org.parent_country.as_deref(),
            parent,
            &self.denied,
            policy,
        ) {
            return Some(
                Reason::OrgScreenedOut.english(&[("org", &org.name), ("detail", &refusal.reason)]),
            );
        }
        if awards.is_empty() {
            return policy
                .require_award
                .then(|| Reason::NoAward.english(&[("project", &p.name)]));
        }
        let usable = awards.iter().any(|b| {
            now >= b.award.valid_from && now < b.award.valid_until && b.used_ms < b.granted_ms
        });
        if usable {
            return None;
        }
        // Name the award the user most likely means: the one that ends last.
        let b = awards
            .iter()
            .max_by_key(|b| (b.award.valid_until, b.award.id))
            .copied()?;
        let english = |r: Reason, more: [(&'static str, String); 1]| {
            let id = b.award.id.to_string();
            let mut args = vec![("id", id.as_str()), ("project", p.name.as_str())];
            args.extend(more.iter().map(|(n, v)| (*n, v.as_str())));
            r.english(&args)
        };
        Some(match award_state(b, now, policy.warn_fraction) {
            "expired" => english(
                Reason::AwardExpired,
                [("date", policy.time_zone.date(b.award.valid_until))],
            ),
            "pending" => english(
                Reason::AwardPending,
                [("date", policy.time_zone.date(b.award.valid_from))],
            ),
            _ => {
                let used = format!("{:.2}", b.used_ms as f64 / MS_PER_HOUR);
                let granted = format!("{:.2}", b.granted_ms as f64 / MS_PER_HOUR);
                Reason::AwardSpent.english(&[
                    ("id", &b.award.id.to_string()),
                    ("project", &p.name),
                    ("used", &used),
                    ("granted", &granted),
                ])
            }
        })
    }

    /// Whole-GPU guarantees that valid awards give their projects, in milli-GPU per model.
    pub fn award_quotas(&self, now: i64) -> BTreeMap<i64, BTreeMap<GpuModel, u64>> {
        award_quotas(&self.balances, now)
    }
}

pub fn award_quotas(
    balances: &[st::AwardBalance],
    now: i64,
) -> BTreeMap<i64, BTreeMap<GpuModel, u64>> {
    let mut out: BTreeMap<i64, BTreeMap<GpuModel, u64>> = BTreeMap::new();
    for b in balances {
        let a = &b.award;
        if a.gpu_quota > 0 && now >= a.valid_from && now < a.valid_until {
            *out.entry(a.project_id)
                .or_default()
                .entry(a.gpu_model.clone())
                .or_default() += a.gpu_quota as u64 * 1000;
        }
    }
    out
}

/// Notices due for the balances at `now`: (kind, project, award, detail).
pub fn award_notices(
    view: &View,
    policy: &AccountingPolicy,
    now: i64,
) -> Vec<(&'static str, i64, i64, String)> {
    let mut out = Vec::new();
    for b in &view.balances {
        let kind = match award_state(b, now, policy.warn_fraction) {
            "warning" => "award.warning",
            "spent" => "award.spent",
            _ => continue,
        };
        let detail = format!(
            "{{\"award\":{},\"gpu_hours_used\":{:.3},\"gpu_hours_granted\":{:.3}}}",
            b.award.id,
            b.used_ms as f64 / MS_PER_HOUR,
            b.granted_ms as f64 / MS_PER_HOUR
        );
        out.push((kind, b.award.project_id, b.award.id, detail));
    }
    out
}

/// Estimated operations per project from its GPU time per model. Models with no known peak
/// count nothing (and are named in the docs' table to be filled in).
pub fn compute_estimates(
    usage: &[st::UsageRecord],
    policy: &AccountingPolicy,
) -> BTreeMap<i64, f64> {
    let mut out: BTreeMap<i64, f64> = BTreeMap::new();
    for u in usage {
        let Some(peak) = policy.peak_ops(&u.gpu_model) else {
            continue;
        };
        *out.entry(u.project_id).or_default() +=
            u.gpu_ms as f64 / 1000.0 * peak * policy.utilisation;
    }
    out
}

/// The measured side of charged GPU time (docs/accounting.md): for the attempts charged in a
/// period whose jobs have GPU samples, their jobs' mean utilisation and energy.
#[derive(Debug, Default)]
pub struct Measured(BTreeMap<i64, st::ChargedGpuUse>);

impl Measured {
    pub fn new(rows: Vec<st::ChargedGpuUse>) -> Measured {
        Measured(rows.into_iter().map(|r| (r.attempt_id, r)).collect())
    }

    /// For one charge row: the GPU-milliseconds used (its GPU-milliseconds times its job's
    /// mean utilisation) and the share of the job's energy it carries (in proportion to its
    /// GPU-milliseconds among the job's charges), in mWh. `None`: the job has no samples.
    pub fn of(&self, l: &st::LedgerEntry) -> Option<(f64, f64)> {
        let m = self.0.get(&l.attempt_id)?;
        if m.samples <= 0 {
            return None;
        }
        let mean = m.util_sum as f64 / m.samples as f64 / 100.0;
        let share = if m.job_charged_gpu_ms > 0 {
            l.gpu_ms as f64 / m.job_charged_gpu_ms as f64
        } else {
            0.0
        };
        Some((l.gpu_ms as f64 * mean, m.energy_mwh as f64 * share))
    }
}

/// Awards whose quota sat idle over the window ending at `now`: not held (charged GPU time
/// under the underuse fraction of the quota), or held but idle (measured GPU time under it,
/// jobs without samples given the benefit of the doubt).
pub fn underuse(
    balances: &[st::AwardBalance],
    ledger: &[st::LedgerEntry],
    measured: &Measured,
    policy: &AccountingPolicy,
    now: i64,
) -> Vec<Underuse> {
    // A refunded attempt (its node failed) was never the project's to use.
    let refunded: std::collections::BTreeSet<i64> = ledger
        .iter()
        .filter(|l| l.kind == st::LedgerKind::Refund)
        .map(|l| l.attempt_id)
        .collect();
    let window_ms = (policy.underuse_window_days * MS_PER_DAY as f64) as i64;
    let mut out = Vec::new();
    for b in balances {
        let a = &b.award;
        if a.gpu_quota <= 0 || now < a.valid_from || now >= a.valid_until {
            continue;
        }
        let from = (now - window_ms).max(a.valid_from);
        let span = now - from;
        if span <= 0 {
            continue;
        }
        let used: i64 = ledger
            .iter()
            .filter(|l| {
                l.award_id == Some(a.id) && l.at >= from && l.kind != st::LedgerKind::Credit
            })
            .map(|l| l.gpu_ms)
            .sum();
        let (mut measured_ms, mut unmeasured_ms) = (0.0, 0.0);
        for l in ledger.iter().filter(|l| {
            l.award_id == Some(a.id)
                && l.at >= from
                && l.kind == st::LedgerKind::Charge
                && !refunded.contains(&l.attempt_id)
        }) {
            match measured.of(l) {
                Some((used, _)) => measured_ms += used,
                None => unmeasured_ms += l.gpu_ms as f64,
            }
        }
        let capacity = a.gpu_quota as f64 * span as f64;
        let fraction = used as f64 / capacity;
        let measured_fraction = measured_ms / capacity;
        // A window shorter than a day says too little to take GPUs back.
        let flagged_by = if span < MS_PER_DAY {
            None
        } else if fraction < policy.underuse_fraction {
            Some("charged")
        } else if (measured_ms + unmeasured_ms) / capacity < policy.underuse_fraction {
            Some("measured")
        } else {
            None
        };
        out.push(Underuse {
            award: a.id,
            project: a.project_id,
            gpu_quota: a.gpu_quota,
            window_days: span as f64 / MS_PER_DAY as f64,
            capacity_gpu_hours: capacity / MS_PER_HOUR,
            used_gpu_hours: used as f64 / MS_PER_HOUR,
            used_fraction: fraction,
            measured_gpu_hours: measured_ms / MS_PER_HOUR,
            unmeasured_gpu_hours: unmeasured_ms / MS_PER_HOUR,
            measured_fraction,
            flagged: flagged_by.is_some(),
            flagged_by: flagged_by.map(str::to_string),
        });
    }
    out
}

/// A statement over ledger rows: one line per (org, project, GPU model), in that order.
/// Credits are listed under the owner organisation that earns them. Each line also has the
/// GPU time measured as used and the energy of its charges' jobs (`measured`).
pub fn statement(
    month: &str,
    from: i64,
    until: i64,
    rows: &[st::LedgerEntry],
    measured: &Measured,
) -> Statement {
    #[derive(Default)]
    struct Sums {
        gpu_ms: i64,
        charged: i64,
        refunded: i64,
        credited: i64,
        used_ms: f64,
        unmeasured_ms: f64,
        energy_mwh: f64,
    }
    let mut lines: BTreeMap<(i64, i64, String), Sums> = BTreeMap::new();
    let (mut charged, mut refunded, mut credited) = (0, 0, 0);
    for r in rows {
        let s = lines
            .entry((r.org_id, r.project_id, r.gpu_model.clone()))
            .or_default();
        match r.kind {
            st::LedgerKind::Charge => {
                s.gpu_ms += r.gpu_ms;
                s.charged += r.charged_ms;
                charged += r.charged_ms;
                match measured.of(r) {
                    Some((used, energy)) => {
                        s.used_ms += used;
                        s.energy_mwh += energy;
                    }
                    None => s.unmeasured_ms += r.gpu_ms as f64,
                }
            }
            st::LedgerKind::Refund => {
                s.refunded -= r.charged_ms;
                refunded -= r.charged_ms;
            }
            st::LedgerKind::Credit => {
                s.credited += r.charged_ms;
                credited += r.charged_ms;
            }
        }
    }
    Statement {
        month: month.to_string(),
        from,
        until,
        lines: lines
            .into_iter()
            .map(|((org, project, gpu_model), s)| StatementLine {
                org,
                project,
                gpu_model,
                gpu_hours: s.gpu_ms as f64 / MS_PER_HOUR,
                charged_gpu_hours: s.charged as f64 / MS_PER_HOUR,
                refunded_gpu_hours: s.refunded as f64 / MS_PER_HOUR,
                credited_gpu_hours: s.credited as f64 / MS_PER_HOUR,
                used_gpu_hours: s.used_ms / MS_PER_HOUR,
                unmeasured_gpu_hours: s.unmeasured_ms / MS_PER_HOUR,
                energy_kwh: s.energy_mwh / 1e6,
            })
            .collect(),
        charged_ms: charged,
        refunded_ms: refunded,
        credited_ms: credited,
        ledger_rows: rows.len() as i64,
    }
}

pub fn statement_csv(s: &Statement) -> String {
    let mut w = csv::Writer::from_writer(Vec::new());
    let _ = w.write_record([
        "month",
        "org",
        "project",
        "gpu_model",
        "gpu_hours",
        "charged_gpu_hours",
        "refunded_gpu_hours",
        "credited_gpu_hours",
        "used_gpu_hours",
        "unmeasured_gpu_hours",
        "energy_kwh",
    ]);
    for l in &s.lines {
        let _ = w.write_record([
            s.month.clone(),
            l.org.to_string(),
            l.project.to_string(),
            l.gpu_model.clone(),
            format!("{:.6}", l.gpu_hours),
            format!("{:.6}", l.charged_gpu_hours),
            format!("{:.6}", l.refunded_gpu_hours),
            format!("{:.6}", l.credited_gpu_hours),
            format!("{:.6}", l.used_gpu_hours),
            format!("{:.6}", l.unmeasured_gpu_hours),
            format!("{:.6}", l.energy_kwh),
        ]);
    }
    String::from_utf8(w.into_inner().unwrap_or_default()).unwrap_or_default()
}

/// Most buckets one usage series may hold: enough for six weeks by the hour or almost three
/// years by the day, and small enough to draw and to send.
pub const MAX_BUCKETS: i64 = 1000;

/// GPU-milliseconds run and charged per bucket for one line of a series.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spread {
    pub gpu_ms: Vec<i64>,
    pub charged_ms: Vec<i64>,
}

/// Spreads each ledger span over the buckets `[bounds[i], bounds[i + 1])`, per `key` (the
/// organisation or project), in proportion to the time the attempt ran in each bucket. Buckets
/// may differ in length (local days across a clock change). Shares are rounded so that they
/// telescope: the buckets of a span that lies inside the range add up to its amounts exactly. A
/// span of no length counts in the bucket where it ended.
pub fn spread(
    spans: &[st::LedgerSpan],
    key: impl Fn(&st::LedgerEntry) -> i64,
    bounds: &[i64],
) -> BTreeMap<i64, Spread> {
    let mut out: BTreeMap<i64, Spread> = BTreeMap::new();
    let n = bounds.len().saturating_sub(1);
    if n == 0 {
        return out;
    }
    let (from, until) = (bounds[0], bounds[n]);
    // The bucket holding `t`, for `from <= t < until`.
    let bucket_of = |t: i64| bounds.partition_point(|&b| b <= t) - 1;
    for span in spans {
        let (start, end) = (span.started_at, span.entry.at.max(span.started_at));
        let line = out.entry(key(&span.entry)).or_insert_with(|| Spread {
            gpu_ms: vec![0; n],
            charged_ms: vec![0; n],
        });
        if end == start {
            if (from..until).contains(&end) {
                let i = bucket_of(end);
                line.gpu_ms[i] += span.entry.gpu_ms;
                line.charged_ms[i] += span.entry.charged_ms;
            }
            continue;
        }
        if end <= from || start >= until {
            continue;
        }
        let length = (end - start) as i128;
        // The part of the amount used by time `t`, rounded down; differences of it telescope.
        let by = |amount: i64, t: i64| -> i64 {
            ((amount as i128 * (t.clamp(start, end) - start) as i128).div_euclid(length)) as i64
        };
        for i in bucket_of(start.max(from))..=bucket_of(end.min(until) - 1) {
            let (b0, b1) = (bounds[i], bounds[i + 1]);
            line.gpu_ms[i] += by(span.entry.gpu_ms, b1) - by(span.entry.gpu_ms, b0);
            line.charged_ms[i] += by(span.entry.charged_ms, b1) - by(span.entry.charged_ms, b0);
        }
    }
    out.retain(|_, l| l.gpu_ms.iter().any(|v| *v != 0) || l.charged_ms.iter().any(|v| *v != 0));
    out
}

// --- routes ---

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(balances))
        .routes(routes!(adjust_award))
        .routes(routes!(award_changes))
        .routes(routes!(ledger))
        .routes(routes!(statements))
        .routes(routes!(notices))
        .routes(routes!(underuse_report))
        .routes(routes!(compute))
        .routes(routes!(list_weights, set_weight))
        .routes(routes!(usage_series))
}

fn actor(c: &Caller) -> st::Actor {
    st::Actor::user(&c.0)
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct ProjectQuery {
    /// Only this project.
    project: Option<i64>,
}

async fn visible(
    s: &AppState,
    caller: &Caller,
    only: Option<i64>,
) -> Result<BTreeMap<i64, st::ProjectRecord>, ApiError> {
    Ok(s.store
        .list_projects()
        .await?
        .into_iter()
        .filter(|p| caller.can_see_project(p))
        .filter(|p| only.is_none_or(|o| o == p.id))
        .map(|p| (p.id, p))
        .collect())
}

/// The caller's awards with what is used and left: what `haneul usage` shows.
#[utoipa::path(get, path = "/v1/balances", tag = "awards", params(ProjectQuery),
    responses((status = 200, body = Vec<AwardBalance>), (status = "4XX", body = ErrorBody)),
    security(("token" = [])))]
async fn balances(
    State(s): State<AppState>,
    caller: Caller,
    Q(q): Q<ProjectQuery>,
) -> Result<Json<Vec<AwardBalance>>, ApiError> {
    caller.person()?;
    let projects = visible(&s, &caller, q.project).await?;
    let now = s.clock.now_ms();
    Ok(Json(
        s.store
            .award_balances(q.project)
            .await?
            .iter()
            .filter_map(|b| {
                let p = projects.get(&b.award.project_id)?;
                Some(balance_to_api(b, &p.name, now, &s.accounting))
            })
            .collect(),
    ))
}

/// Top an award up (positive `gpu_hours`) or take hours back (negative); centre admin.
#[utoipa::path(post, path = "/v1/awards/{id}/adjust", tag = "awards", request_body = AwardAdjust,
    params(("id" = i64, Path, description = "award id", minimum = 1)),
    responses((status = 201, body = AwardChange), (status = "4XX", body = ErrorBody)),
    security(("token" = [])))]
async fn adjust_award(
    State(s): State<AppState>,
    caller: Caller,
    Id(id): Id,
    Body(b): Body<AwardAdjust>,
) -> Result<(StatusCode, Json<AwardChange>), ApiError> {
    caller.admin()?;
    crate::validate::text("reason", &b.reason, 1024)?;
    let c = s
        .store
        .adjust_award(
            &actor(&caller),
            id,
            b.gpu_hours,
            &b.reason,
            s.clock.now_ms(),
        )
        .await?;
    s.signals.wake.notify_one();
    Ok((StatusCode::CREATED, Json(change_to_api(c))))
}

fn change_to_api(c: st::AwardChange) -> AwardChange {
    AwardChange {
        id: c.id,
        award: c.award_id,
        gpu_hours: c.gpu_hours,
        reason: c.reason,
        actor: c.actor,
        at: c.at,
    }
}

/// An award's top-ups and take-backs.
#[utoipa::path(get, path = "/v1/awards/{id}/changes", tag = "awards",
    params(("id" = i64, Path, description = "award id", minimum = 1)),
    responses((status = 200, body = Vec<AwardChange>), (status = "4XX", body = ErrorBody)),
    security(("token" = [])))]
async fn award_changes(
    State(s): State<AppState>,
    caller: Caller,
    Id(id): Id,
) -> Result<Json<Vec<AwardChange>>, ApiError> {
    caller.person()?;
    let projects = visible(&s, &caller, None).await?;
    let award = s
        .store
        .list_awards(None)
        .await?
        .into_iter()
        .find(|a| a.id == id && projects.contains_key(&a.project_id))
        .ok_or_else(|| ApiError::not_found("award", id))?;
    Ok(Json(
        s.store
            .award_changes(award.id)
            .await?
            .into_iter()
            .map(change_to_api)
            .collect(),
    ))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct LedgerQuery {
    /// Only this project.
    project: Option<i64>,
    /// Rows written at or after this time (default: all).
    from: Option<i64>,
    /// Rows written before this time (default: all).
    until: Option<i64>,
}

fn ledger_to_api(l: &st::LedgerEntry) -> LedgerEntry {
    LedgerEntry {
        id: l.id,
        at: l.at,
        kind: l.kind.to_string(),
        attempt: l.attempt_id,
        project: l.project_id,
        org: l.org_id,
        award: l.award_id,
        gpu_model: l.gpu_model.clone(),
        gpu_ms: l.gpu_ms,
        weight_milli: l.weight_milli,
        charged_ms: l.charged_ms,
    }
}

/// Ledger rows of the projects the caller may see, oldest first.
#[utoipa::path(get, path = "/v1/ledger", tag = "awards", params(LedgerQuery),
    responses((status = 200, body = Vec<LedgerEntry>), (status = "4XX", body = ErrorBody)),
    security(("token" = [])))]
async fn ledger(
    State(s): State<AppState>,
    caller: Caller,
    Q(q): Q<LedgerQuery>,
) -> Result<Json<Vec<LedgerEntry>>, ApiError> {
    caller.person()?;
    let projects = visible(&s, &caller, q.project).await?;
    let rows = s
        .store
        .ledger(
            q.project,
            q.from.unwrap_or(i64::MIN),
            q.until.unwrap_or(i64::MAX),
        )
        .await?;
    Ok(Json(
        rows.iter()
            .filter(|l| projects.contains_key(&l.project_id))
            .map(ledger_to_api)
            .collect(),
    ))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct StatementQuery {
    /// `YYYY-MM`, in the centre's time zone (`time_zone` in accounting.toml, default
    /// Asia/Seoul).
    #[param(pattern = "^[0-9]{4}-(0[1-9]|1[0-2])$")]
    month: String,
    /// Only this project.
    project: Option<i64>,
    /// Only this organisation: its projects' use, and credits it earned as a pool owner.
    org: Option<i64>,
    /// `json` (default) or `csv`.
    #[param(pattern = "^(json|csv)$")]
    format: Option<String>,
}

/// A monthly statement per project and GPU model, as JSON or CSV.
#[utoipa::path(get, path = "/v1/statements", tag = "awards", params(StatementQuery),
    responses(
        (status = 200, description = "the statement: JSON, or CSV with format=csv", content(
            (Statement = "application/json"),
            (String = "text/csv")
        )),
        (status = "4XX", body = ErrorBody)
    ),
    security(("token" = [])))]
async fn statements(
    State(s): State<AppState>,
    caller: Caller,
    Q(q): Q<StatementQuery>,
) -> Result<Response, ApiError> {
    caller.person()?;
    let (from, until) = s
        .accounting
        .time_zone
        .month_bounds(&q.month)
        .ok_or_else(|| ApiError::bad("month", "use YYYY-MM, for example 2026-12"))?;
    if let Some(o) = q.org
        && !caller.can_see_org(o)
    {
        return Err(ApiError::not_found("organisation", o));
    }
    let projects = visible(&s, &caller, q.project).await?;
    let rows: Vec<st::LedgerEntry> = s
        .store
        .ledger(q.project, from, until)
        .await?
        .into_iter()
        .filter(|l| {
            let mine = projects.contains_key(&l.project_id);
            match q.org {
                None => mine,
                // An organisation's statement: its own projects, and credits owed to it.
                Some(o) => l.org_id == o && (mine || l.kind == st::LedgerKind::Credit),
            }
        })
        .collect();
    let measured = Measured::new(s.store.charged_gpu_use(from, until).await?);
    let stmt = statement(&q.month, from, until, &rows, &measured);
    match q.format.as_deref() {
        None | Some("json") => Ok(Json(stmt).into_response()),
        Some("csv") => Ok((
            [(header::CONTENT_TYPE, "text/csv; charset=utf-8")],
            statement_csv(&stmt),
        )
            .into_response()),
        Some(_) => Err(ApiError::bad("format", "use json or csv")),
    }
}

/// Notices: award warnings, the compute threshold, underuse, and the idle policy's notices
/// about jobs whose GPUs sit idle (with the job, its owner and, while it is still idle, when it
/// will be stopped). Centre admins and auditors read them all; everyone else those about the
/// projects they may see.
#[utoipa::path(get, path = "/v1/notices", tag = "awards",
    responses((status = 200, body = Vec<Notice>), (status = "4XX", body = ErrorBody)),
    security(("token" = [])))]
async fn notices(State(s): State<AppState>, caller: Caller) -> Result<Json<Vec<Notice>>, ApiError> {
    caller.person()?;
    let projects = visible(&s, &caller, None).await?;
    let mut out = Vec::new();
    for n in s.store.list_notices().await? {
        if !caller.can_audit() && !projects.contains_key(&n.project_id) {
            continue;
        }
        let job = crate::telemetry::idle_notice_job(&n.kind);
        let (user, stops_at) = match job {
            Some(id) => match s.store.get_job(id).await {
                Ok(j) => (
                    Some(j.user_id),
                    (j.state == st::JobState::Running)
                        .then(|| s.signals.telemetry.stop_at(id))
                        .flatten(),
                ),
                Err(st::StoreError::NotFound { .. }) => (None, None),
                Err(e) => return Err(e.into()),
            },
            None => (None, None),
        };
        out.push(Notice {
            id: n.id,
            at: n.at,
            kind: n.kind,
            project: n.project_id,
            award: (n.award_id != 0).then_some(n.award_id),
            detail: n.detail,
            job,
            user,
            stops_at,
        });
    }
    Ok(Json(out))
}

/// Valid awards with a GPU quota and how much of it ran over the underuse window; flagged ones
/// are candidates for take-back (centre admins and auditors). Each flag is also raised as an
/// `award.underuse` notice.
#[utoipa::path(get, path = "/v1/underuse", tag = "awards",
    responses((status = 200, body = Vec<Underuse>), (status = "4XX", body = ErrorBody)),
    security(("token" = [])))]
async fn underuse_report(
    State(s): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<Underuse>>, ApiError> {
    caller.person()?;
    if !caller.can_audit() {
        return Err(ApiError::forbidden(
            "only centre admins and auditors read the underuse report",
        ));
    }
    let now = s.clock.now_ms();
    let window_ms = (s.accounting.underuse_window_days * MS_PER_DAY as f64) as i64;
    let balances = s.store.award_balances(None).await?;
    let rows = s.store.ledger(None, now - window_ms, i64::MAX).await?;
    let measured = Measured::new(s.store.charged_gpu_use(now - window_ms, i64::MAX).await?);
    let report = underuse(&balances, &rows, &measured, &s.accounting, now);
    for u in report.iter().filter(|u| u.flagged) {
        let detail = serde_json::json!({
            "award": u.award,
            "used_fraction": (u.used_fraction * 1e4).round() / 1e4,
            "measured_fraction": (u.measured_fraction * 1e4).round() / 1e4,
            "flagged_by": u.flagged_by,
            "window_days": (u.window_days * 1e2).round() / 1e2,
        })
        .to_string();
        s.store
            .raise_notice("award.underuse", u.project, u.award, &detail, now)
            .await?;
    }
    Ok(Json(report))
}

/// Estimated cumulative training compute per visible project.
#[utoipa::path(get, path = "/v1/compute", tag = "awards", params(ProjectQuery),
    responses((status = 200, body = Vec<ComputeEstimate>), (status = "4XX", body = ErrorBody)),
    security(("token" = [])))]
async fn compute(
    State(s): State<AppState>,
    caller: Caller,
    Q(q): Q<ProjectQuery>,
) -> Result<Json<Vec<ComputeEstimate>>, ApiError> {
    caller.person()?;
    let projects = visible(&s, &caller, q.project).await?;
    let usage = s.store.usage(q.project).await?;
    let est = compute_estimates(&usage, &s.accounting);
    let threshold = s.accounting.compute_threshold;
    Ok(Json(
        projects
            .keys()
            .map(|&p| {
                let operations = est.get(&p).copied().unwrap_or(0.0);
                ComputeEstimate {
                    project: p,
                    operations,
                    threshold,
                    over_threshold: operations >= threshold,
                }
            })
            .collect(),
    ))
}

/// The GPU class weights at which time is charged.
#[utoipa::path(get, path = "/v1/gpu-weights", tag = "awards",
    responses((status = 200, body = Vec<GpuWeight>), (status = "4XX", body = ErrorBody)),
    security(("token" = [])))]
async fn list_weights(
    State(s): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<GpuWeight>>, ApiError> {
    caller.person()?;
    Ok(Json(
        s.store
            .gpu_weights()
            .await?
            .into_iter()
            .map(|(gpu_model, w)| GpuWeight {
                gpu_model,
                weight: w as f64 / 1000.0,
            })
            .collect(),
    ))
}

/// Set one GPU model's class weight (centre admin); it applies to attempts that end from now.
#[utoipa::path(put, path = "/v1/gpu-weights", tag = "awards", request_body = GpuWeight,
    responses((status = 200, body = GpuWeight), (status = "4XX", body = ErrorBody)),
    security(("token" = [])))]
async fn set_weight(
    State(s): State<AppState>,
    caller: Caller,
    Body(b): Body<GpuWeight>,
) -> Result<Json<GpuWeight>, ApiError> {
    caller.admin()?;
    let model = GpuModel::new(&b.gpu_model)?;
    if !(b.weight > 0.0 && b.weight <= 100.0) {
        return Err(ApiError::bad("weight", "must be above 0 and at most 100"));
    }
    let milli = (b.weight * 1000.0).round() as i64;
    s.store
        .set_gpu_weight(&actor(&caller), &model, milli, s.clock.now_ms())
        .await?;
    Ok(Json(GpuWeight {
        gpu_model: model.to_string(),
        weight: milli as f64 / 1000.0,
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct SeriesQuery {
    /// `org` or `project` (default): one line per organisation or per project.
    #[param(pattern = "^(org|project)$")]
    by: Option<String>,
    /// `hour` or `day` (default); days run from midnight to midnight in the centre's time zone.
    #[param(pattern = "^(hour|day)$")]
    bucket: Option<String>,
    /// Start, Unix milliseconds or `YYYY-MM-DD`, rounded down to a bucket (default: 48 hours
    /// or 30 days before `to`).
    from: Option<String>,
    /// End, Unix milliseconds or `YYYY-MM-DD`, rounded up to a bucket (default: now).
    to: Option<String>,
}

/// GPU-hours run and charged per hour or day, per organisation or project, from the ledger;
/// scoped like `/v1/usage` (the projects the caller may see).
#[utoipa::path(get, path = "/v1/usage/series", tag = "awards", params(SeriesQuery),
    responses((status = 200, body = UsageSeries), (status = "4XX", body = ErrorBody)),
    security(("token" = [])))]
async fn usage_series(
    State(s): State<AppState>,
    caller: Caller,
    Q(q): Q<SeriesQuery>,
) -> Result<Json<UsageSeries>, ApiError> {
    caller.person()?;
    let by = q.by.unwrap_or_else(|| "project".into());
    if by != "org" && by != "project" {
        return Err(ApiError::bad("by", "use org or project"));
    }
    let bucket = q.bucket.unwrap_or_else(|| "day".into());
    let width = Bucket::parse(&bucket).ok_or_else(|| ApiError::bad("bucket", "use hour or day"))?;
    let cal = &s.accounting.time_zone;
    let time = |field: &'static str, raw: Option<String>| -> Result<Option<i64>, ApiError> {
        raw.map(|r| {
            cal.parse_time(r.trim()).ok_or_else(|| {
                ApiError::bad(
                    field,
                    format!("`{r}` is not a time: give Unix milliseconds or a date YYYY-MM-DD"),
                )
            })
        })
        .transpose()
    };
    let to = time("to", q.to)?.unwrap_or_else(|| s.clock.now_ms());
    let default_buckets = if width == Bucket::Hour { 48 } else { 30 };
    let out_of_range = || ApiError::bad("to", "is outside the range of dates the server handles");
    let from = match time("from", q.from)? {
        Some(from) => from,
        // The last `default_buckets` whole buckets and the one holding `to`.
        None => cal
            .back(width, to.saturating_sub(1), default_buckets - 1)
            .ok_or_else(out_of_range)?,
    };
    if from >= to {
        return Err(ApiError::bad("to", "must be after from"));
    }
    // Rounded outwards to whole buckets.
    let bounds = cal
        .boundaries(width, from, to, MAX_BUCKETS as usize)
        .ok_or_else(|| {
            // Local days are 23 to 25 hours long; the count is exact for hours and near enough
            // to say how much shorter the range must be.
            let width_ms = if width == Bucket::Hour {
                3_600_000
            } else {
                86_400_000
            };
            let n = (to - from + width_ms - 1).div_euclid(width_ms);
            ApiError::bad(
                "from",
                format!(
                    "the range holds about {n} {bucket} buckets, more than {MAX_BUCKETS}: ask \
                     for a shorter range{}",
                    if width == Bucket::Hour {
                        " or bucket=day"
                    } else {
                        ""
                    }
                ),
            )
        })?;
    let (from, to) = (bounds[0], bounds[bounds.len() - 1]);
    let projects = visible(&s, &caller, None).await?;
    let ids: Vec<i64> = projects.keys().copied().collect();
    let spans = s.store.ledger_spans(Some(&ids), from, to).await?;
    let lines = if by == "org" {
        let names: BTreeMap<i64, String> = s
            .store
            .list_orgs()
            .await?
            .into_iter()
            .map(|o| (o.id, o.name))
            .collect();
        named_lines(spread(&spans, |l| l.org_id, &bounds), |id| {
            names.get(&id).cloned()
        })
    } else {
        named_lines(spread(&spans, |l| l.project_id, &bounds), |id| {
            projects.get(&id).map(|p| p.name.clone())
        })
    };
    Ok(Json(UsageSeries {
        by,
        bucket,
        from,
        to,
        starts: bounds[..bounds.len() - 1].to_vec(),
        lines,
    }))
}

fn named_lines(
    spread: BTreeMap<i64, Spread>,
    name: impl Fn(i64) -> Option<String>,
) -> Vec<UsageLine> {
    let hours = |v: &[i64]| v.iter().map(|ms| *ms as f64 / MS_PER_HOUR).collect();
    spread
        .into_iter()
        .map(|(id, l)| UsageLine {
            id,
            name: name(id).unwrap_or_else(|| id.to_string()),
            gpu_hours: hours(&l.gpu_ms),
            charged_gpu_hours: hours(&l.charged_ms),
            charged_ms: l.charged_ms,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_policy_is_valid() {
        let p = AccountingPolicy::default();
        p.check().unwrap();
        assert!(p.is_restricted("CN") && p.is_restricted("MO") && !p.is_restricted("KR"));
        let parsed: AccountingPolicy = toml::from_str("warn_fraction = 0.5").unwrap();
        assert_eq!(parsed.warn_fraction, 0.5);
        assert_eq!(parsed.restricted_countries, p.restricted_countries);
        assert!(toml::from_str::<AccountingPolicy>("warn = 1").is_err());
        assert_eq!(p.time_zone.name(), "Asia/Seoul");
        let utc: AccountingPolicy = toml::from_str("time_zone = \"UTC\"").unwrap();
        assert_eq!(utc.time_zone.name(), "UTC");
        let bad = toml::from_str::<AccountingPolicy>("time_zone = \"Seoul\"").unwrap_err();
        assert!(bad.to_string().contains("not an IANA time zone"), "{bad}");
    }

    fn span(start: i64, end: i64, gpu_ms: i64, charged_ms: i64) -> st::LedgerSpan {
        st::LedgerSpan {
            entry: st::LedgerEntry {
                id: 1,
                at: end,
                kind: st::LedgerKind::Charge,
                attempt_id: 1,
                project_id: 5,
                org_id: 2,
                award_id: None,
                gpu_model: "H200".into(),
                gpu_ms,
                weight_milli: 1300,
                charged_ms,
            },
            started_at: start,
        }
    }

    #[test]
    fn a_charge_is_spread_by_time_and_adds_up_exactly() {
        const H: i64 = 3_600_000;
        // 10:30 to 12:15 on 8 GPUs, in hour buckets from 10:00: 30, 60 and 15 minutes.
        let gpu_ms = 8 * (105 * 60_000);
        let s = spread(
            &[span(
                10 * H + H / 2,
                12 * H + H / 4,
                gpu_ms,
                gpu_ms * 13 / 10,
            )],
            |l| l.project_id,
            &[10 * H, 11 * H, 12 * H, 13 * H, 14 * H],
        );
        let line = &s[&5];
        assert_eq!(line.gpu_ms, vec![4 * H, 8 * H, 2 * H, 0]);
        assert_eq!(line.charged_ms.iter().sum::<i64>(), gpu_ms * 13 / 10);
        // Amounts that do not divide evenly still add up, and a negative refund too.
        let tens: Vec<i64> = (0..=10).map(|i| i * 100).collect();
        let odd = spread(&[span(1, 1_000, 997, -997)], |l| l.org_id, &tens);
        assert_eq!(odd[&2].gpu_ms.iter().sum::<i64>(), 997);
        assert_eq!(odd[&2].charged_ms.iter().sum::<i64>(), -997);
        // Only the part inside the range counts; nothing at all leaves no line.
        let clipped = spread(
            &[span(0, 4 * H, 4 * H, 4 * H)],
            |l| l.org_id,
            &[H, 2 * H, 3 * H],
        );
        assert_eq!(clipped[&2].gpu_ms, vec![H, H]);
        assert!(spread(&[span(0, H, H, H)], |l| l.org_id, &[2 * H, 3 * H, 4 * H]).is_empty());
        // Buckets of unequal length (a 23-hour local day) share by time too.
        let uneven = spread(
            &[span(0, 47 * H, 47 * H, 0)],
            |l| l.org_id,
            &[0, 24 * H, 47 * H],
        );
        assert_eq!(uneven[&2].gpu_ms, vec![24 * H, 23 * H]);
    }
}
