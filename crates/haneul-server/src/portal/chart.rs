//! Hand-written SVG bar charts: a few rectangles need no chart library, and the markup stays
//! small enough to inline in a page (no script, readable by screen readers through its title).

/// A horizontal bar chart of `(label, value)`, bars scaled to the largest value.
pub fn bars(rows: &[(String, f64)], unit: &str) -> String {
    let row_h = 28.0;
    let label_w = 140.0;
    let bar_w = 300.0;
    let height = row_h * rows.len().max(1) as f64 + 8.0;
    let max = rows.iter().map(|r| r.1).fold(0.0_f64, f64::max);
    let mut svg = format!(
        "<svg class=\"chart\" role=\"img\" viewBox=\"0 0 {w} {height}\" \
         preserveAspectRatio=\"xMinYMin meet\" aria-label=\"{unit}\"><title>{unit}</title>",
        w = label_w + bar_w + 90.0,
        unit = escape(unit),
    );
    for (i, (label, value)) in rows.iter().enumerate() {
        let y = 4.0 + row_h * i as f64;
        let w = if max > 0.0 { bar_w * value / max } else { 0.0 };
        svg.push_str(&format!(
            "<text x=\"0\" y=\"{ty}\" class=\"label\">{label}</text>\
             <rect x=\"{label_w}\" y=\"{y}\" width=\"{w:.1}\" height=\"{bh}\" class=\"bar\"/>\
             <text x=\"{vx:.1}\" y=\"{ty}\" class=\"value\">{shown}</text>",
            ty = y + row_h * 0.6,
            label = escape(label),
            bh = row_h - 8.0,
            vx = label_w + w + 6.0,
            shown = figure(*value),
        ));
    }
    svg.push_str("</svg>");
    svg
}

/// One bar of `used` against `granted`, in the style of [`bars`]: a track the width of the
/// grant and the used part over it (capped at the track; an overdrawn award shows full).
/// `label` names the bar for screen readers (the SVG's title and aria-label).
pub fn used_of_granted(used: f64, granted: f64, label: &str) -> String {
    let bar_w = 300.0;
    let fraction = if granted > 0.0 {
        (used / granted).clamp(0.0, 1.0)
    } else if used > 0.0 {
        1.0
    } else {
        0.0
    };
    format!(
        "<svg class=\"chart balance\" role=\"img\" viewBox=\"0 0 {w} 28\" \
         preserveAspectRatio=\"xMinYMin meet\" aria-label=\"{label}\"><title>{label}</title>\
         <rect x=\"0\" y=\"4\" width=\"{bar_w:.1}\" height=\"20\" class=\"track\"/>\
         <rect x=\"0\" y=\"4\" width=\"{used_w:.1}\" height=\"20\" class=\"bar\"/>\
         <text x=\"{vx:.1}\" y=\"{ty}\" class=\"value\">{pct:.0}%</text></svg>",
        w = bar_w + 60.0,
        label = escape(label),
        used_w = bar_w * fraction,
        vx = bar_w + 6.0,
        ty = 4.0 + 28.0 * 0.6,
        pct = fraction * 100.0,
    )
}

/// What a [`lines`] chart says about itself: its title (also the SVG's title and the start of
/// its aria-label) and its axes.
pub struct Axes<'a> {
    pub title: &'a str,
    pub x: &'a str,
    pub y: &'a str,
}

/// Line colours (Okabe and Ito's palette, told apart with colour blindness); past the seventh
/// series they repeat dashed.
const PALETTE: [&str; 7] = [
    "#0072b2", "#e69f00", "#009e73", "#cc79a7", "#56b4e9", "#d55e00", "#000000",
];

/// The smallest 1, 2 or 5 times a power of ten at or above `v`, so axis ticks are round.
fn round_up(v: f64) -> f64 {
    if v <= 0.0 {
        return 1.0;
    }
    let p = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * p)
        .find(|c| *c >= v * (1.0 - 1e-9))
        .unwrap_or(10.0 * p)
}

/// A line chart over time: one line per `(name, values)` against the bucket `ticks` (labels
/// of the buckets, in order), a y axis from zero with three round ticks, the first, middle and
/// last bucket labelled, axis titles, and a legend under the plot (one row per line, so long
/// names still fit a phone). The aria-label gives each line's total, for screen readers.
pub fn lines(ticks: &[String], series: &[(String, Vec<f64>)], axes: &Axes) -> String {
    let (left, width, top, height) = (64.0, 480.0, 12.0, 180.0);
    let n = ticks.len().max(1);
    let max = round_up(
        series
            .iter()
            .flat_map(|(_, v)| v.iter().copied())
            .fold(0.0_f64, f64::max),
    );
    let legend_y = top + height + 52.0;
    let total_h = legend_y + 20.0 * series.len() as f64 + 4.0;
    let totals: Vec<String> = series
        .iter()
        .map(|(name, v)| format!("{name} {}", figure(v.iter().sum())))
        .collect();
    let label = if totals.is_empty() {
        axes.title.to_string()
    } else {
        format!("{}: {}", axes.title, totals.join(", "))
    };
    let x_of = |i: usize| left + width * (i as f64 + 0.5) / n as f64;
    let y_of = |v: f64| top + height * (1.0 - v / max);
    let mut svg = format!(
        "<svg class=\"chart lines\" role=\"img\" viewBox=\"0 0 {w} {total_h}\" \
         preserveAspectRatio=\"xMinYMin meet\" aria-label=\"{label}\"><title>{title}</title>\
         <line x1=\"{left}\" y1=\"{top}\" x2=\"{left}\" y2=\"{bottom}\" class=\"axis\"/>\
         <line x1=\"{left}\" y1=\"{bottom}\" x2=\"{right}\" y2=\"{bottom}\" class=\"axis\"/>",
        w = left + width + 16.0,
        label = escape(&label),
        title = escape(axes.title),
        bottom = top + height,
        right = left + width,
    );
    for k in 0..=2 {
        let v = max * k as f64 / 2.0;
        let y = y_of(v);
        svg.push_str(&format!(
            "<line x1=\"{left}\" y1=\"{y:.1}\" x2=\"{right}\" y2=\"{y:.1}\" class=\"grid\"/>\
             <text x=\"{tx}\" y=\"{ty:.1}\" class=\"tick\" text-anchor=\"end\">{v}</text>",
            right = left + width,
            tx = left - 6.0,
            ty = y + 4.0,
            v = figure(v),
        ));
    }
    let mut shown: Vec<usize> = vec![0, n / 2, n - 1];
    shown.dedup();
    for i in shown.into_iter().filter(|i| *i < ticks.len()) {
        let anchor = if i == 0 {
            "start"
        } else if i == n - 1 {
            "end"
        } else {
            "middle"
        };
        svg.push_str(&format!(
            "<text x=\"{x:.1}\" y=\"{y}\" class=\"tick\" text-anchor=\"{anchor}\">{t}</text>",
            x = if i == 0 {
                left
            } else if i == n - 1 {
                left + width
            } else {
                x_of(i)
            },
            y = top + height + 18.0,
            t = escape(&ticks[i]),
        ));
    }
    svg.push_str(&format!(
        "<text x=\"{x}\" y=\"{y}\" class=\"axis-title\" text-anchor=\"middle\">{t}</text>\
         <text x=\"12\" y=\"{my}\" class=\"axis-title\" text-anchor=\"middle\" \
         transform=\"rotate(-90 12 {my})\">{yt}</text>",
        x = left + width / 2.0,
        y = top + height + 38.0,
        t = escape(axes.x),
        my = top + height / 2.0,
        yt = escape(axes.y),
    ));
    for (k, (name, values)) in series.iter().enumerate() {
        let colour = PALETTE[k % PALETTE.len()];
        let dash = if k >= PALETTE.len() {
            " stroke-dasharray=\"6 3\""
        } else {
            ""
        };
        let points: Vec<String> = values
            .iter()
            .enumerate()
            .map(|(i, v)| format!("{:.1},{:.1}", x_of(i), y_of(*v)))
            .collect();
        let ly = legend_y + 20.0 * k as f64;
        svg.push_str(&format!(
            "<polyline points=\"{points}\" fill=\"none\" stroke=\"{colour}\" \
             stroke-width=\"2\"{dash} class=\"series\" data-series=\"{name}\"/>\
             <line x1=\"{left}\" y1=\"{my:.1}\" x2=\"{lx}\" y2=\"{my:.1}\" stroke=\"{colour}\" \
             stroke-width=\"3\"{dash}/>\
             <text x=\"{tx}\" y=\"{ty:.1}\" class=\"legend\">{name} ({total})</text>",
            points = points.join(" "),
            name = escape(name),
            my = ly - 4.0,
            lx = left + 22.0,
            tx = left + 28.0,
            ty = ly,
            total = figure(values.iter().sum()),
        ));
    }
    svg.push_str("</svg>");
    svg
}

/// One decimal for sizeable values; small ones (a short test job) keep three, so a bar drawn
/// at full length is never labelled 0.0.
pub fn figure(v: f64) -> String {
    if v.abs() >= 10.0 || v == 0.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longest_bar_is_the_largest_value_and_labels_are_escaped() {
        let svg = bars(&[("a<b".into(), 2.0), ("c".into(), 4.0)], "GPU-hours");
        assert!(svg.contains("a&lt;b"));
        assert!(svg.contains("width=\"150.0\""), "{svg}");
        assert!(svg.contains("width=\"300.0\""), "{svg}");
        assert!(svg.contains(">4.000</text>"));
        assert!(bars(&[("x".into(), 12.0)], "h").contains(">12.0</text>"));
    }

    #[test]
    fn balance_bar_is_the_used_share_of_the_grant_and_caps_at_full() {
        let svg = used_of_granted(25.0, 100.0, "H200 <1>");
        assert!(svg.contains("aria-label=\"H200 &lt;1&gt;\""), "{svg}");
        assert!(
            svg.contains("width=\"75.0\" height=\"20\" class=\"bar\""),
            "{svg}"
        );
        assert!(svg.contains(">25%</text>"), "{svg}");
        let over = used_of_granted(150.0, 100.0, "x");
        assert!(
            over.contains("width=\"300.0\" height=\"20\" class=\"bar\""),
            "{over}"
        );
        assert!(used_of_granted(0.0, 0.0, "x").contains(">0%</text>"));
    }
    #[test]
    fn line_chart_has_a_line_and_legend_entry_per_series_on_round_axes() {
        let ticks: Vec<String> = ["01", "02", "03"].iter().map(|s| s.to_string()).collect();
        let svg = lines(
            &ticks,
            &[
                ("org <a>".into(), vec![1.0, 3.0, 0.0]),
                ("org-b".into(), vec![0.0, 0.5, 0.5]),
            ],
            &Axes {
                title: "GPU-hours over time",
                x: "Day (UTC)",
                y: "GPU-hours",
            },
        );
        assert_eq!(svg.matches("<polyline").count(), 2, "{svg}");
        assert!(svg.contains("data-series=\"org &lt;a&gt;\""), "{svg}");
        assert!(
            svg.contains(">org &lt;a&gt; (4.000)</text>"),
            "legend with total: {svg}"
        );
        assert!(
            svg.contains("aria-label=\"GPU-hours over time: org &lt;a&gt; 4.000, org-b 1.000\""),
            "{svg}"
        );
        assert!(svg.contains("<title>GPU-hours over time</title>"));
        // The largest value, 3, is drawn against an axis of 5 with ticks 0, 2.5 and 5.
        assert!(
            svg.contains(">5.000</text>") && svg.contains(">2.500</text>"),
            "{svg}"
        );
        assert!(svg.contains(">Day (UTC)</text>") && svg.contains(">GPU-hours</text>"));
        assert_eq!(round_up(0.0), 1.0);
        assert_eq!(round_up(11.0), 20.0);
        assert!((round_up(0.03) - 0.05).abs() < 1e-12);
    }
}
