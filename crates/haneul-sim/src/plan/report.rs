//! What a committee reads: `report.html`, one self-contained file (charts as inline SVG, styles
//! inline, no script, no external asset) in Korean and English with a language switch, and its
//! charts drawn with plotters (real axes, units and round ticks): the Pareto chart of cost
//! against p90 wait and one small panel per measure. Also the candidates as CSV.

use super::{CandidateResult, Plan, bn_krw, cost::SITE_SOURCES, eok, fmt_h, thousands};
use crate::error::SimError;
use plotters::prelude::*;
use std::fmt::Write;

const PALETTE: [RGBColor; 8] = [
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0xff, 0x7f, 0x0e),
    RGBColor(0x94, 0x67, 0xbd),
    RGBColor(0x8c, 0x56, 0x4b),
    RGBColor(0xe3, 0x77, 0xc2),
    RGBColor(0x17, 0xbe, 0xcf),
];
const GRID: RGBColor = RGBColor(225, 225, 225);
const FONT: &str = "sans-serif";

fn chart_err<E: std::fmt::Display>(e: E) -> SimError {
    SimError::Plan {
        field: "chart".into(),
        reason: e.to_string(),
    }
}

/// A tick label without trailing zeros (plotters picks round ticks; this keeps them short).
fn tick(v: f64) -> String {
    let a = v.abs();
    let s = if a >= 1000.0 {
        thousands(v)
    } else if a >= 10.0 || a == 0.0 {
        format!("{v:.0}")
    } else if a >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    };
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// The series (mixes, or fleet files) in first-seen order, each with its candidates by size.
fn series(plan: &Plan) -> Vec<(String, Vec<&CandidateResult>)> {
    let mut out: Vec<(String, Vec<&CandidateResult>)> = Vec::new();
    for c in &plan.candidates {
        match out.iter_mut().find(|s| s.0 == c.mix) {
            Some(s) => s.1.push(c),
            None => out.push((c.mix.clone(), vec![c])),
        }
    }
    for s in &mut out {
        s.1.sort_by_key(|c| c.total_servers);
    }
    out
}

fn upper(values: impl Iterator<Item = f64>, at_least: f64) -> f64 {
    let m = values.fold(at_least, f64::max);
    if m > 0.0 { m * 1.08 } else { 1.0 }
}

/// TCO a year against p90 wait, one colour per series, the 95% interval of the wait as an error
/// bar, the frontier as a line, the target as a dashed line and the recommendation ringed.
pub fn pareto_svg(plan: &Plan) -> Result<String, SimError> {
    let mut s = String::new();
    {
        let root = SVGBackend::with_string(&mut s, (860, 520)).into_drawing_area();
        root.fill(&WHITE).map_err(chart_err)?;
        let x_max = upper(
            plan.candidates
                .iter()
                .map(|c| c.tco_krw_per_year.mean / 1e9),
            0.0,
        );
        let y_max = upper(
            plan.candidates.iter().map(|c| c.p90_wait_h.hi),
            plan.target_p90_wait_h * 1.2,
        );
        let mut chart = ChartBuilder::on(&root)
            .caption("비용 대 대기 · Cost against wait (Pareto)", (FONT, 18))
            .margin(12)
            .x_label_area_size(48)
            .y_label_area_size(64)
            .build_cartesian_2d(0f64..x_max, 0f64..y_max)
            .map_err(chart_err)?;
        chart
            .configure_mesh()
            .bold_line_style(GRID)
            .light_line_style(TRANSPARENT)
            .x_desc("연간 TCO · TCO per year (billion KRW)")
            .y_desc("p90 대기 · p90 wait (h)")
            .x_labels(8)
            .y_labels(8)
            .x_label_formatter(&|v| tick(*v))
            .y_label_formatter(&|v| tick(*v))
            .axis_desc_style((FONT, 14))
            .label_style((FONT, 12))
            .draw()
            .map_err(chart_err)?;
        let target = plan.target_p90_wait_h;
        chart
            .draw_series(DashedLineSeries::new(
                vec![(0.0, target), (x_max, target)],
                6,
                4,
                BLACK.stroke_width(1),
            ))
            .map_err(chart_err)?
            .label(format!("목표 · target {} h", fmt_h(target)))
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], BLACK));
        let mut frontier: Vec<(f64, f64)> = plan
            .candidates
            .iter()
            .filter(|c| c.pareto)
            .map(|c| (c.tco_krw_per_year.mean / 1e9, c.p90_wait_h.mean))
            .collect();
        frontier.sort_by(|a, b| a.0.total_cmp(&b.0));
        chart
            .draw_series(LineSeries::new(
                frontier,
                RGBColor(120, 120, 120).stroke_width(2),
            ))
            .map_err(chart_err)?
            .label("파레토 경계 · Pareto frontier")
            .legend(|(x, y)| {
                PathElement::new(
                    vec![(x, y), (x + 18, y)],
                    RGBColor(120, 120, 120).stroke_width(2),
                )
            });
        for (i, (name, cs)) in series(plan).iter().enumerate() {
            let colour = PALETTE[i % PALETTE.len()];
            chart
                .draw_series(cs.iter().map(|c| {
                    let x = c.tco_krw_per_year.mean / 1e9;
                    ErrorBar::new_vertical(
                        x,
                        c.p90_wait_h.lo.max(0.0),
                        c.p90_wait_h.mean,
                        c.p90_wait_h.hi,
                        colour.stroke_width(1),
                        6,
                    )
                }))
                .map_err(chart_err)?;
            chart
                .draw_series(cs.iter().map(|c| {
                    Circle::new(
                        (c.tco_krw_per_year.mean / 1e9, c.p90_wait_h.mean),
                        4,
                        colour.filled(),
                    )
                }))
                .map_err(chart_err)?
                .label(name.clone())
                .legend(move |(x, y)| Circle::new((x + 9, y), 4, colour.filled()));
        }
        if let Some(i) = plan.recommendation.candidate {
            let c = &plan.candidates[i];
            let at = (c.tco_krw_per_year.mean / 1e9, c.p90_wait_h.mean);
            chart
                .draw_series([Circle::new(at, 9, BLACK.stroke_width(2))])
                .map_err(chart_err)?;
            chart
                .draw_series([EmptyElement::at(at)
                    + Text::new(
                        format!("권고 · recommended: {}", c.name),
                        (14, -18),
                        (FONT, 13).into_font().color(&BLACK),
                    )])
                .map_err(chart_err)?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.9))
            .border_style(RGBColor(180, 180, 180))
            .label_font((FONT, 12))
            .draw()
            .map_err(chart_err)?;
        root.present().map_err(chart_err)?;
    }
    Ok(s)
}

type Measure = (&'static str, fn(&CandidateResult) -> (f64, f64, f64));

/// One panel per measure against the number of servers, a line per series, the 95% interval as
/// error bars.
pub fn measures_svg(plan: &Plan) -> Result<String, SimError> {
    let measures: [Measure; 6] = [
        ("p90 대기 · p90 wait (h)", |c| {
            (c.p90_wait_h.lo, c.p90_wait_h.mean, c.p90_wait_h.hi)
        }),
        ("p50 대기 · p50 wait (h)", |c| {
            (c.p50_wait_h.lo, c.p50_wait_h.mean, c.p50_wait_h.hi)
        }),
        ("가동률 · utilisation (%)", |c| {
            let u = &c.utilization;
            (u.lo * 100.0, u.mean * 100.0, u.hi * 100.0)
        }),
        ("연간 TCO · TCO per year (billion KRW)", |c| {
            let t = &c.tco_krw_per_year;
            (t.lo / 1e9, t.mean / 1e9, t.hi / 1e9)
        }),
        ("GPU시간당 비용 · KRW per delivered GPU-hour", |c| {
            let k = &c.krw_per_delivered_gpu_hour;
            (k.lo, k.mean, k.hi)
        }),
        ("연간 전력량 · energy per year (GWh)", |c| {
            let e = &c.energy_mwh_per_year;
            (e.lo / 1e3, e.mean / 1e3, e.hi / 1e3)
        }),
    ];
    let groups = series(plan);
    let x_max = plan
        .candidates
        .iter()
        .map(|c| c.total_servers as f64)
        .fold(1.0, f64::max)
        * 1.08;
    let mut s = String::new();
    {
        let root = SVGBackend::with_string(&mut s, (1080, 640)).into_drawing_area();
        root.fill(&WHITE).map_err(chart_err)?;
        let panels = root.split_evenly((2, 3));
        for (k, ((title, f), area)) in measures.iter().zip(panels.iter()).enumerate() {
            let y_max = upper(
                plan.candidates.iter().map(|c| f(c).2),
                if k == 0 {
                    plan.target_p90_wait_h * 1.2
                } else {
                    0.0
                },
            );
            let mut chart = ChartBuilder::on(area)
                .caption(*title, (FONT, 14))
                .margin(8)
                .x_label_area_size(36)
                .y_label_area_size(56)
                .build_cartesian_2d(0f64..x_max, 0f64..y_max)
                .map_err(chart_err)?;
            chart
                .configure_mesh()
                .bold_line_style(GRID)
                .light_line_style(TRANSPARENT)
                .x_desc("서버 · servers")
                .x_labels(6)
                .y_labels(6)
                .x_label_formatter(&|v| tick(*v))
                .y_label_formatter(&|v| tick(*v))
                .axis_desc_style((FONT, 12))
                .label_style((FONT, 11))
                .draw()
                .map_err(chart_err)?;
            if k == 0 {
                chart
                    .draw_series(DashedLineSeries::new(
                        vec![
                            (0.0, plan.target_p90_wait_h),
                            (x_max, plan.target_p90_wait_h),
                        ],
                        5,
                        4,
                        BLACK.stroke_width(1),
                    ))
                    .map_err(chart_err)?;
            }
            for (i, (name, cs)) in groups.iter().enumerate() {
                let colour = PALETTE[i % PALETTE.len()];
                let pts: Vec<(f64, (f64, f64, f64))> =
                    cs.iter().map(|c| (c.total_servers as f64, f(c))).collect();
                chart
                    .draw_series(LineSeries::new(
                        pts.iter().map(|p| (p.0, p.1.1)),
                        colour.stroke_width(2),
                    ))
                    .map_err(chart_err)?;
                chart
                    .draw_series(pts.iter().map(|p| {
                        ErrorBar::new_vertical(
                            p.0,
                            p.1.0.max(0.0),
                            p.1.1,
                            p.1.2,
                            colour.stroke_width(1),
                            5,
                        )
                    }))
                    .map_err(chart_err)?;
                let series = chart
                    .draw_series(
                        pts.iter()
                            .map(|p| Circle::new((p.0, p.1.1), 3, colour.filled())),
                    )
                    .map_err(chart_err)?;
                if k == 0 {
                    series
                        .label(name.clone())
                        .legend(move |(x, y)| Circle::new((x + 9, y), 4, colour.filled()));
                }
            }
            if k == 0 {
                chart
                    .configure_series_labels()
                    .position(SeriesLabelPosition::UpperRight)
                    .background_style(WHITE.mix(0.9))
                    .border_style(RGBColor(180, 180, 180))
                    .label_font((FONT, 11))
                    .draw()
                    .map_err(chart_err)?;
            }
        }
        root.present().map_err(chart_err)?;
    }
    Ok(s)
}

/// One row per candidate: the means and 95% intervals.
pub fn candidates_csv(plan: &Plan) -> String {
    let mut s = String::from(
        "candidate,mix,servers,accelerators,capex_krw,tco_krw_per_year,tco_krw_per_year_lo,tco_krw_per_year_hi,tco_usd_per_year,krw_per_delivered_gpu_hour,usd_per_delivered_gpu_hour,p50_wait_h,p90_wait_h,p90_wait_h_lo,p90_wait_h_hi,p99_wait_h,utilization,completed_share,delivered_gpu_hours_per_year,energy_mwh_per_year,meets_target,pareto\n",
    );
    for c in &plan.candidates {
        let _ = writeln!(
            s,
            "\"{}\",\"{}\",{},{},{:.0},{:.0},{:.0},{:.0},{:.0},{:.1},{:.3},{:.3},{:.3},{:.3},{:.3},{:.3},{:.4},{:.4},{:.0},{:.1},{},{}",
            c.name,
            c.mix,
            c.total_servers,
            c.accelerators,
            c.capex_krw,
            c.tco_krw_per_year.mean,
            c.tco_krw_per_year.lo,
            c.tco_krw_per_year.hi,
            c.tco_usd_per_year.mean,
            c.krw_per_delivered_gpu_hour.mean,
            c.usd_per_delivered_gpu_hour.mean,
            c.p50_wait_h.mean,
            c.p90_wait_h.mean,
            c.p90_wait_h.lo,
            c.p90_wait_h.hi,
            c.p99_wait_h.mean,
            c.utilization.mean,
            c.completed_share.mean,
            c.delivered_gpu_hours_per_year.mean,
            c.energy_mwh_per_year.mean,
            c.meets_target,
            c.pareto
        );
    }
    s
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Korean and English side by side; the stylesheet shows one.
fn both(ko: &str, en: &str) -> String {
    format!(
        "<span lang=\"ko\">{}</span><span lang=\"en\">{}</span>",
        esc(ko),
        esc(en)
    )
}

const STYLE: &str = r#"
body { font-family: "Noto Sans KR", "NanumGothic", "Malgun Gothic", sans-serif; margin: 0; color: #222; background: #fff; }
main, nav { max-width: 1120px; margin: 0 auto; padding: 0 20px; }
nav { padding-top: 14px; text-align: right; font-size: 14px; }
nav label { cursor: pointer; padding: 2px 8px; border: 1px solid #bbb; border-radius: 4px; }
input[name=lang] { position: absolute; opacity: 0; }
#lang-ko:checked ~ main [lang=en], #lang-en:checked ~ main [lang=ko] { display: none; }
#lang-ko:checked ~ nav label[for=lang-ko], #lang-en:checked ~ nav label[for=lang-en] { background: #1f77b4; color: #fff; border-color: #1f77b4; }
h1 { font-size: 26px; margin: 8px 0 4px; }
h2 { font-size: 19px; margin: 28px 0 8px; border-bottom: 1px solid #ddd; padding-bottom: 4px; }
.sub { color: #555; font-size: 14px; margin: 0 0 8px; }
#recommendation p { font-size: 17px; line-height: 1.6; background: #f3f8fc; border-left: 4px solid #1f77b4; padding: 12px 16px; margin: 8px 0; }
table { border-collapse: collapse; font-size: 13px; margin: 8px 0; width: 100%; }
th, td { border: 1px solid #ddd; padding: 4px 6px; text-align: left; vertical-align: top; }
td.n { text-align: right; white-space: nowrap; font-variant-numeric: tabular-nums; }
th { background: #f4f4f4; }
tr.pick td { background: #fff7d6; }
.note { color: #555; font-size: 13px; }
.chart svg { max-width: 100%; height: auto; }
"#;

fn interval(s: &super::stats::Spread, f: &dyn Fn(f64) -> String) -> String {
    format!("{} [{}–{}]", f(s.mean), f(s.lo), f(s.hi))
}

/// `report.html`: the recommendation, the Pareto chart, the small multiples, the candidates
/// with their intervals, the seed spread and the assumptions, in Korean and English.
pub fn html(plan: &Plan) -> Result<String, SimError> {
    let pareto = pareto_svg(plan)?;
    let measures = measures_svg(plan)?;
    let mut h = String::new();
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"ko\">\n<head>\n<meta charset=\"utf-8\">\n<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>{} · 용량 계획 · capacity plan</title>\n<style>{STYLE}</style>\n</head>\n<body>\n",
        esc(&plan.scenario)
    );
    h.push_str("<input type=\"radio\" name=\"lang\" id=\"lang-ko\" checked><input type=\"radio\" name=\"lang\" id=\"lang-en\">\n");
    h.push_str("<nav><label for=\"lang-ko\">한국어</label> <label for=\"lang-en\">English</label></nav>\n<main>\n");
    let seeds = plan.seeds.len();
    let _ = writeln!(
        h,
        "<h1>{}</h1>\n<p class=\"sub\">{}</p>",
        both(
            &format!("GPU 용량 계획: {}", plan.scenario),
            &format!("GPU capacity plan: {}", plan.scenario)
        ),
        both(
            &format!(
                "후보 {}개 × 시드 {}개, 실행마다 작업 {}개, 정책 {}; 모든 수치는 시드 평균과 95% 신뢰구간입니다.",
                plan.candidates.len(),
                seeds,
                thousands(plan.jobs_per_run as f64),
                plan.policy
            ),
            &format!(
                "{} candidates × {} seeds, {} jobs a run, policy {}; every figure is the mean over seeds with its 95% confidence interval.",
                plan.candidates.len(),
                seeds,
                thousands(plan.jobs_per_run as f64),
                plan.policy
            )
        )
    );

    let _ = writeln!(
        h,
        "<section id=\"recommendation\">\n<h2>{}</h2>\n<p lang=\"ko\">{}</p>\n<p lang=\"en\">{}</p>\n</section>",
        both("권고", "Recommendation"),
        esc(&plan.recommendation.ko),
        esc(&plan.recommendation.en)
    );

    let _ = writeln!(
        h,
        "<section id=\"pareto\">\n<h2>{}</h2>\n<p class=\"note\">{}</p>\n<div class=\"chart\">{pareto}</div>\n</section>",
        both(
            "연간 총소유비용 대 p90 대기시간",
            "Total cost of ownership per year against p90 wait"
        ),
        both(
            "점은 시드 평균, 세로 막대는 p90 대기시간의 95% 신뢰구간입니다. 회색 선은 파레토 경계(더 싸면서 덜 기다리는 후보가 없는 후보), 점선은 목표입니다.",
            "Dots are means over seeds, bars the 95% interval of the p90 wait. The grey line is the Pareto frontier (no other candidate is both cheaper and quicker); the dashed line is the target."
        )
    );

    let _ = writeln!(
        h,
        "<section id=\"measures\">\n<h2>{}</h2>\n<div class=\"chart\">{measures}</div>\n</section>",
        both(
            "측정값별 비교 (서버 수 기준)",
            "Each measure against the number of servers"
        )
    );

    // Candidates.
    let _ = writeln!(
        h,
        "<section id=\"candidates\">\n<h2>{}</h2>\n<table>\n<tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr>",
        both("후보", "Candidates"),
        both("후보", "candidate"),
        both("가속기", "accelerators"),
        both("구매가 (억 원)", "capex (billion KRW)"),
        both("연간 TCO (억 원)", "TCO a year (billion KRW)"),
        both("GPU시간당 원", "KRW per GPU-hour"),
        both("p50 대기 (h)", "p50 wait (h)"),
        both("p90 대기 (h)", "p90 wait (h)"),
        both("가동률", "utilisation"),
        both("목표 충족", "meets target"),
        both("파레토", "Pareto"),
    );
    for (i, c) in plan.candidates.iter().enumerate() {
        let pick = plan.recommendation.candidate == Some(i);
        let eok_n = |x: f64| thousands(x / 1e8);
        let bn = |x: f64| format!("{:.1}", x / 1e9);
        let _ = writeln!(
            h,
            "<tr{}><td>{}</td><td class=\"n\">{}</td><td class=\"n\"><span lang=\"ko\">{}</span><span lang=\"en\">{}</span></td><td class=\"n\"><span lang=\"ko\">{}</span><span lang=\"en\">{}</span></td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{:.1}%</td><td>{}</td><td>{}</td></tr>",
            if pick { " class=\"pick\"" } else { "" },
            esc(&c.name),
            thousands(c.accelerators as f64),
            eok_n(c.capex_krw),
            bn(c.capex_krw),
            interval(&c.tco_krw_per_year, &eok_n),
            interval(&c.tco_krw_per_year, &bn),
            interval(&c.krw_per_delivered_gpu_hour, &thousands),
            interval(&c.p50_wait_h, &fmt_h),
            interval(&c.p90_wait_h, &fmt_h),
            c.utilization.mean * 100.0,
            if c.meets_target {
                both("예", "yes")
            } else {
                both("아니오", "no")
            },
            if c.pareto { "●" } else { "" },
        );
    }
    h.push_str("</table>\n");
    let _ = writeln!(
        h,
        "<p class=\"note\">{}</p>\n</section>",
        both(
            "괄호 안은 시드 간 평균의 95% 신뢰구간(스튜던트 t)입니다. 억 원 = 1억 원(10⁸ 원); 영어판은 십억 원(billion KRW) 단위입니다. GPU시간은 기준 등급(H100) 환산입니다.",
            "Brackets hold the 95% confidence interval of the mean over seeds (Student's t). GPU-hours are in reference-class (H100) equivalents; the Korean view counts won in 억 (10⁸)."
        )
    );

    // Seed spread.
    let _ = write!(
        h,
        "<section id=\"seed-spread\">\n<h2>{}</h2>\n<p class=\"note\">{}</p>\n<table>\n<tr><th>{}</th>",
        both("시드별 편차", "Spread over seeds"),
        both(
            "시드마다 다른 작업 도착(같은 분포)으로 실행한 각 후보의 p90 대기시간(시간)과 최소·최대입니다.",
            "Each candidate's p90 wait (hours) on every seed (other job arrivals from the same distributions), with the least and the most."
        ),
        both("후보", "candidate")
    );
    for s in &plan.seeds {
        let _ = write!(h, "<th>{s}</th>");
    }
    let _ = writeln!(h, "<th>{}</th></tr>", both("최소–최대", "min–max"));
    for c in &plan.candidates {
        let _ = write!(h, "<tr><td>{}</td>", esc(&c.name));
        for r in &c.runs {
            let _ = write!(h, "<td class=\"n\">{}</td>", fmt_h(r.p90_wait_h));
        }
        let _ = writeln!(
            h,
            "<td class=\"n\">{}–{}</td></tr>",
            fmt_h(c.p90_wait_h.min),
            fmt_h(c.p90_wait_h.max)
        );
    }
    h.push_str("</table>\n</section>\n");

    // Assumptions.
    let _ = writeln!(
        h,
        "<section id=\"assumptions\">\n<h2>{}</h2>\n<table>\n<tr><th>{}</th><th>{}</th><th>{}</th></tr>",
        both("가정", "Assumptions"),
        both("항목", "item"),
        both("값", "value"),
        both("출처", "source")
    );
    let row = |h: &mut String, item: String, value: String, source: &str| {
        let _ = writeln!(
            h,
            "<tr><td>{item}</td><td class=\"n\">{}</td><td>{}</td></tr>",
            esc(&value),
            esc(source)
        );
    };
    let site = &plan.site;
    let site_rows: [(&str, &str, &str, String); 5] = [
        (
            "pue",
            "PUE (전력 사용 효율)",
            "PUE",
            format!("{}", site.pue),
        ),
        (
            "krw_per_kwh",
            "전기 요금",
            "electricity",
            format!("{} KRW/kWh", site.krw_per_kwh),
        ),
        (
            "depreciation_years",
            "감가상각 기간",
            "depreciation",
            format!("{} y", site.depreciation_years),
        ),
        (
            "ops_krw_per_server_year",
            "운영비 (서버·년)",
            "operations per server-year",
            format!("{} KRW", thousands(site.ops_krw_per_server_year)),
        ),
        (
            "krw_per_usd",
            "환율",
            "exchange rate",
            format!("{} KRW/USD", thousands(site.krw_per_usd)),
        ),
    ];
    for (key, ko, en, value) in site_rows {
        let source = SITE_SOURCES.iter().find(|s| s.0 == key).map_or("", |s| s.1);
        row(
            &mut h,
            format!("{} <code>site.{key}</code>", both(ko, en)),
            value,
            source,
        );
    }
    match &plan.demand {
        Some(d) => {
            row(
                &mut h,
                both("수요 (계획 연도)", "demand (planned year)"),
                format!(
                    "year {}, ×{:.2} ({:+.0}%/y)",
                    d.year,
                    d.growth_factor,
                    d.growth_per_year * 100.0
                ),
                "scenario [demand]",
            );
            row(
                &mut h,
                both(
                    "신청 / 요청 / 배정 GPU",
                    "applications / GPUs asked / granted",
                ),
                format!(
                    "{} / {} / {} ({:.0}%)",
                    d.applications,
                    thousands(d.asked_gpus),
                    thousands(d.granted_gpus),
                    d.grant_share * 100.0
                ),
                "scenario [demand]; GPUs of the reference class held on average over the year",
            );
            for t in &d.tracks {
                row(
                    &mut h,
                    format!("{} <code>{}</code>", both("트랙", "track"), esc(&t.name)),
                    format!(
                        "{:?}: {} × {} asked, {} granted",
                        t.work, t.applications, t.gpus_asked, t.gpus_granted
                    ),
                    "scenario [[demand.tracks]]",
                );
            }
            row(
                &mut h,
                both("작업 구성", "mix of work"),
                format!(
                    "training {:.0}%, fine-tuning {:.0}%, inference {:.0}%",
                    d.mix[0] * 100.0,
                    d.mix[1] * 100.0,
                    d.mix[2] * 100.0
                ),
                "granted GPU-hours by track; blends each accelerator's speeds (weighted harmonic mean)",
            );
        }
        None => row(
            &mut h,
            both("수요", "demand"),
            "workload.load".into(),
            "the scenario's synthetic load on its own fleet; no [demand] table",
        ),
    }
    if let Some(b) = plan.budget_krw {
        row(
            &mut h,
            both("예산", "budget"),
            format!("{} / {}", eok(b), bn_krw(b)),
            "--budget-krw: servers, power at full load and operations over the depreciation life",
        );
    }
    row(
        &mut h,
        both("목표 p90 대기", "target p90 wait"),
        format!("{} h", fmt_h(plan.target_p90_wait_h)),
        "--max-p90-wait-h; met when the upper end of the 95% interval is under it",
    );
    for a in &plan.accelerators {
        let src = |k: &str| a.sources.get(k).map(String::as_str).unwrap_or("");
        let label = if a.illustrative {
            format!(
                "<b>{}</b> {}",
                esc(&a.model),
                both("(예시용 가정)", "(illustrative)")
            )
        } else {
            format!("<b>{}</b>", esc(&a.model))
        };
        if a.illustrative {
            row(
                &mut h,
                label.clone(),
                "illustrative".into(),
                src("illustrative"),
            );
        }
        let opt = |v: Option<f64>, unit: &str| {
            v.map_or("-".to_string(), |x| format!("{} {unit}", thousands(x)))
        };
        let fields: [(&str, &str, &str, String); 7] = [
            (
                "server_price_usd",
                "서버 가격",
                "server price",
                format!(
                    "{} ({} accelerators)",
                    opt(a.server_price_usd, "USD"),
                    a.gpus_per_server
                ),
            ),
            (
                "server_power_kw",
                "서버 전력 (최대 / 유휴)",
                "server power (max / idle)",
                format!(
                    "{} / {} kW",
                    a.server_power_kw.map_or("-".into(), |x| format!("{x}")),
                    a.server_idle_kw.map_or("-".into(), |x| format!("{x}"))
                ),
            ),
            (
                "peak_bf16_tflops",
                "최대 BF16",
                "peak BF16",
                opt(a.peak_bf16_tflops, "TFLOPS"),
            ),
            (
                "peak_fp8_tflops",
                "최대 FP8",
                "peak FP8",
                opt(a.peak_fp8_tflops, "TFLOPS"),
            ),
            ("memory_gib", "메모리", "memory", opt(a.memory_gib, "GB")),
            (
                "speed",
                "상대 속도 (학습 / 미세조정 / 추론)",
                "relative speed (training / fine-tuning / inference)",
                a.speed.map_or("-".into(), |s| {
                    format!("{} / {} / {}", s.training, s.fine_tuning, s.inference)
                }),
            ),
            (
                "throughput",
                "이 수요에서의 속도",
                "speed on this demand",
                format!("{:.3} × H100", a.throughput),
            ),
        ];
        for (key, ko, en, value) in fields {
            let source = if key == "server_power_kw" {
                format!("{} {}", src("server_power_kw"), src("server_idle_kw"))
            } else if key == "throughput" && plan.demand.is_some() {
                "blended from the speeds by the mix of work".to_string()
            } else {
                src(key).to_string()
            };
            row(&mut h, format!("{label} {}", both(ko, en)), value, &source);
        }
    }
    h.push_str("</table>\n");
    let _ = writeln!(
        h,
        "<p class=\"note\">{}</p>\n</section>",
        both(
            "총소유비용 = 서버 구매가 ÷ 감가상각 기간 + 전력(서버 전력 × 실제 가동률 × 8,760시간 × PUE × 전기 요금) + 운영비. 잔존가치와 금융비용은 넣지 않았습니다.",
            "TCO a year = server price ÷ depreciation years + power (server power at the simulated utilisation × 8,760 h × PUE × electricity price) + operations. No residual value or financing cost."
        )
    );
    if !plan.over_budget.is_empty() {
        let _ = writeln!(
            h,
            "<section id=\"over-budget\">\n<h2>{}</h2>\n<p class=\"note\">{}</p>\n</section>",
            both("예산 초과로 제외된 후보", "Left out: over the budget"),
            esc(&plan
                .over_budget
                .iter()
                .map(|o| format!("{} ({})", o.name, bn_krw(o.lifetime_krw_at_full_power)))
                .collect::<Vec<_>>()
                .join(", "))
        );
    }
    h.push_str("</main>\n</body>\n</html>\n");
    Ok(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_short() {
        assert_eq!(tick(20.0), "20");
        assert_eq!(tick(2.5), "2.5");
        assert_eq!(tick(0.25), "0.25");
        assert_eq!(tick(12000.0), "12,000");
        assert_eq!(tick(0.0), "0");
    }
}
