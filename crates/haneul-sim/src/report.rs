//! Report renderings of `haneul sim` for scripts and people: CSV tables and SVG time charts
//! (hand-written SVG, byte-stable across machines, with round ticks). The terminal table lives in
//! the binary; the planner's charts are in [`crate::plan::report`].

use crate::metrics::{GroupStats, PolicyReport};
use std::fmt::Write;

/// One row per report with the headline figures.
pub fn summary_csv(reports: &[PolicyReport]) -> String {
    let mut s = String::from(
        "policy,fleet,fleet_gpus,jobs,completed,timed_out,rejected,unfinished,utilization,allocation,avg_jct_s,p50_jct_s,p99_jct_s,avg_wait_s,p50_wait_s,p99_wait_s,makespan_s,jain_fairness,preemptions,gpu_hours_lost,node_failures,fragmentation,delivered_gpu_hours,cost_usd,cost_per_delivered_gpu_hour,loaded_cost_per_delivered_gpu_hour,energy_mwh\n",
    );
    for r in reports {
        let _ = writeln!(
            s,
            "{},{},{},{},{},{},{},{},{:.6},{:.6},{:.3},{:.3},{:.3},{:.3},{:.3},{:.3},{:.3},{:.6},{},{:.3},{},{:.6},{:.3},{:.2},{:.4},{:.4},{:.4}",
            r.policy,
            r.fleet,
            r.fleet_gpus,
            r.jobs,
            r.completed,
            r.timed_out,
            r.rejected,
            r.unfinished,
            r.utilization,
            r.allocation,
            r.avg_jct_s,
            r.p50_jct_s,
            r.p99_jct_s,
            r.avg_wait_s,
            r.p50_wait_s,
            r.p99_wait_s,
            r.makespan_s,
            r.jain_fairness,
            r.preemptions,
            r.gpu_hours_lost,
            r.node_failures,
            r.fragmentation,
            r.delivered_gpu_hours,
            r.cost_usd,
            r.cost_per_delivered_gpu_hour,
            r.loaded_cost_per_delivered_gpu_hour,
            r.energy_mwh
        );
    }
    s
}

/// Per-group rows (tenant class or job size) of every report.
pub fn groups_csv(reports: &[PolicyReport], by_class: bool) -> String {
    let mut s = String::from(
        "policy,fleet,group,jobs,avg_jct_s,p50_jct_s,p99_jct_s,avg_wait_s,p50_wait_s,p99_wait_s,gpu_hours,share,entitlement,fair_share\n",
    );
    let opt = |v: Option<f64>| v.map(|x| format!("{x:.6}")).unwrap_or_default();
    for r in reports {
        let groups: &[GroupStats] = if by_class { &r.by_class } else { &r.by_size };
        for g in groups {
            let _ = writeln!(
                s,
                "{},{},{},{},{:.3},{:.3},{:.3},{:.3},{:.3},{:.3},{:.3},{},{},{}",
                r.policy,
                r.fleet,
                g.group,
                g.jobs,
                g.avg_jct_s,
                g.p50_jct_s,
                g.p99_jct_s,
                g.avg_wait_s,
                g.p50_wait_s,
                g.p99_wait_s,
                g.gpu_hours,
                opt(g.share),
                opt(g.entitlement),
                opt(g.fair_share)
            );
        }
    }
    s
}

const COLOURS: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
];

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A line chart of named series of (x, y) points.
pub fn line_chart(
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[(String, Vec<(f64, f64)>)],
    log_x: bool,
) -> String {
    let (w, h, l, r, t, b) = (760.0, 420.0, 70.0, 170.0, 40.0, 50.0);
    let tx = |x: f64| if log_x { (x.max(1.0)).log10() } else { x };
    let pts = series.iter().flat_map(|s| s.1.iter());
    let (mut x0, mut x1, mut y1) = (f64::MAX, f64::MIN, 0.0f64);
    for &(x, y) in pts {
        x0 = x0.min(tx(x));
        x1 = x1.max(tx(x));
        y1 = y1.max(y);
    }
    if x0 > x1 {
        (x0, x1) = (0.0, 1.0);
    }
    if x1 <= x0 {
        x1 = x0 + 1.0;
    }
    if y1 <= 0.0 {
        y1 = 1.0;
    }
    // The top of the y axis on a round tick.
    let st = nice_step(0.0, y1);
    y1 = (y1 / st - 1e-9).ceil() * st;
    let px = |x: f64| l + (tx(x) - x0) / (x1 - x0) * (w - l - r);
    let py = |y: f64| h - b - y / y1 * (h - t - b);
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="{w}" height="{h}" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="22" font-size="15" text-anchor="middle">{}</text>"#,
        (w - r + l) / 2.0,
        esc(title)
    );
    let _ = writeln!(
        s,
        r#"<line x1="{l}" y1="{}" x2="{}" y2="{}" stroke="black"/><line x1="{l}" y1="{t}" x2="{l}" y2="{}" stroke="black"/>"#,
        h - b,
        w - r,
        h - b,
        h - b
    );
    for yv in nice_ticks(0.0, y1) {
        let _ = writeln!(
            s,
            r##"<text x="{}" y="{}" text-anchor="end">{}</text><line x1="{l}" y1="{}" x2="{}" y2="{}" stroke="#ddd"/>"##,
            l - 6.0,
            py(yv) + 4.0,
            fmt_num(yv),
            py(yv),
            w - r,
            py(yv)
        );
    }
    // A log axis gets its decades; a linear one round steps.
    let x_ticks: Vec<f64> = if log_x {
        (x0.ceil() as i32..=x1.floor() as i32)
            .map(|e| e as f64)
            .collect()
    } else {
        nice_ticks(x0, x1)
    };
    for xv in x_ticks {
        let xl = if log_x { 10f64.powf(xv) } else { xv };
        let x = l + (xv - x0) / (x1 - x0) * (w - l - r);
        let _ = writeln!(
            s,
            r#"<text x="{x:.1}" y="{}" text-anchor="middle">{}</text><line x1="{x:.1}" y1="{}" x2="{x:.1}" y2="{}" stroke="black"/>"#,
            h - b + 18.0,
            fmt_num(xl),
            h - b,
            h - b + 4.0
        );
    }
    let _ = writeln!(
        s,
        r#"<text x="{}" y="{}" text-anchor="middle">{}</text>"#,
        (w - r + l) / 2.0,
        h - 10.0,
        esc(x_label)
    );
    let _ = writeln!(
        s,
        r#"<text x="16" y="{}" text-anchor="middle" transform="rotate(-90 16 {})">{}</text>"#,
        h / 2.0,
        h / 2.0,
        esc(y_label)
    );
    for (i, (name, points)) in series.iter().enumerate() {
        let c = COLOURS[i % COLOURS.len()];
        let mut d = String::new();
        for (k, &(x, y)) in points.iter().enumerate() {
            let _ = write!(
                d,
                "{}{:.1},{:.1}",
                if k == 0 { "M" } else { " L" },
                px(x),
                py(y)
            );
        }
        let _ = writeln!(
            s,
            r#"<path d="{d}" fill="none" stroke="{c}" stroke-width="1.5"/>"#
        );
        let ly = t + 16.0 * i as f64 + 10.0;
        let _ = writeln!(
            s,
            r#"<line x1="{}" y1="{ly}" x2="{}" y2="{ly}" stroke="{c}" stroke-width="3"/><text x="{}" y="{}">{}</text>"#,
            w - r + 10.0,
            w - r + 30.0,
            w - r + 36.0,
            ly + 4.0,
            esc(name)
        );
    }
    s.push_str("</svg>\n");
    s
}

/// Round tick values (1, 2 or 5 times a power of ten apart, about five of them) from `lo` to
/// `hi`, so axes read 0, 50, 100, 150 rather than 0, 45.2, 90.3.
pub fn nice_ticks(lo: f64, hi: f64) -> Vec<f64> {
    if !(lo.is_finite() && hi.is_finite()) || hi <= lo {
        return vec![lo];
    }
    let step = nice_step(lo, hi);
    let first = (lo / step).ceil() as i64;
    let last = (hi / step + 1e-9).floor() as i64;
    (first..=last).map(|k| k as f64 * step).collect()
}

/// The tick spacing of [`nice_ticks`].
fn nice_step(lo: f64, hi: f64) -> f64 {
    let raw = ((hi - lo) / 5.0).max(f64::MIN_POSITIVE);
    let mag = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag)
}

fn fmt_num(v: f64) -> String {
    let a = v.abs();
    if a >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if a >= 1e4 {
        format!("{:.0}k", v / 1e3)
    } else if a >= 100.0 || v.fract() == 0.0 {
        format!("{v:.0}")
    } else if a >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// Empirical CDF points of sorted values, thinned to at most `max` points.
pub fn cdf(sorted: &[f64], max: usize) -> Vec<(f64, f64)> {
    let n = sorted.len();
    if n == 0 {
        return Vec::new();
    }
    let step = n.div_ceil(max.max(1)).max(1);
    let mut out: Vec<(f64, f64)> = (0..n)
        .step_by(step)
        .map(|i| (sorted[i], (i + 1) as f64 / n as f64))
        .collect();
    out.push((sorted[n - 1], 1.0));
    out
}

/// The charts of a `haneul sim` run: (file name, SVG).
pub fn sim_charts(reports: &[PolicyReport]) -> Vec<(String, String)> {
    let label = |r: &PolicyReport| {
        if reports.iter().any(|o| o.fleet != r.fleet) {
            format!("{} / {}", r.policy, r.fleet)
        } else {
            r.policy.clone()
        }
    };
    let hours = |pts: &[(f64, f64)], scale: f64| -> Vec<(f64, f64)> {
        pts.iter().map(|&(x, y)| (x / 3600.0, y * scale)).collect()
    };
    let util: Vec<(String, Vec<(f64, f64)>)> = reports
        .iter()
        .map(|r| (label(r), hours(&r.charts.utilization, 100.0)))
        .collect();
    let queue: Vec<(String, Vec<(f64, f64)>)> = reports
        .iter()
        .map(|r| (label(r), hours(&r.charts.queue, 1.0)))
        .collect();
    let mut out = vec![
        (
            "utilization.svg".to_string(),
            line_chart(
                "GPU allocation over time",
                "hours",
                "% of fleet GPUs",
                &util,
                false,
            ),
        ),
        (
            "queue.svg".to_string(),
            line_chart("Queued jobs over time", "hours", "jobs", &queue, false),
        ),
    ];
    for r in reports {
        let series: Vec<(String, Vec<(f64, f64)>)> = r
            .charts
            .waits_by_class
            .iter()
            .map(|(c, w)| (c.clone(), cdf(w, 400)))
            .collect();
        let name = label(r).replace(" / ", "-").replace(['/', ' '], "_");
        out.push((
            format!("wait_cdf_{name}.svg"),
            line_chart(
                &format!("Queue wait CDF by tenant class ({})", label(r)),
                "wait (s, log scale)",
                "fraction of jobs",
                &series,
                true,
            ),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round() {
        assert_eq!(nice_ticks(0.0, 181.0), vec![0.0, 50.0, 100.0, 150.0]);
        let t = nice_ticks(0.0, 1.0);
        assert_eq!(t.len(), 6);
        assert!((t[3] - 0.6).abs() < 1e-12 && t[5] == 1.0);
        assert_eq!(nice_ticks(3.0, 99.3), vec![20.0, 40.0, 60.0, 80.0]);
        let svg = line_chart(
            "t",
            "hours",
            "jobs",
            &[("a".into(), vec![(0.0, 0.0), (181.0, 90.3)])],
            false,
        );
        assert!(svg.contains(">150</text>") && !svg.contains("181"), "{svg}");
    }
}
