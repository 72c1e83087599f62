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
}
