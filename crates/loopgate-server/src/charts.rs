//! Charts of the analytics reports as SVG text: drawn on the server, so the
//! dashboard needs no script and the evidence pack is one self-contained
//! HTML file. Only numbers and fixed words go into the markup.

use std::fmt::Write as _;

use loopgate_proto as proto;

/// Submitted per day as bars, tasks open at the end of the day as a line.
pub fn daily(days: &[proto::DayCounts]) -> String {
    let max = days
        .iter()
        .map(|d| d.submitted.max(d.open_at_end))
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let width = 100.0 / days.len().max(1) as f64;
    let mut svg = String::from(
        r#"<svg viewBox="0 0 100 40" preserveAspectRatio="none" class="chart-svg" role="img" aria-labelledby="daily-title"><title id="daily-title">Proposals submitted per day (bars) and review tasks open at the end of each day (line)</title>"#,
    );
    let mut line = String::new();
    for (i, day) in days.iter().enumerate() {
        let h = day.submitted as f64 / max * 38.0;
        let x = i as f64 * width;
        let _ = write!(
            svg,
            r#"<rect x="{:.2}" y="{:.2}" width="{:.2}" height="{:.2}" class="bar"><title>{}: {} submitted, {} resolved, {} open</title></rect>"#,
            x + width * 0.1,
            40.0 - h,
            width * 0.8,
            h,
            day.day,
            day.submitted,
            day.resolved,
            day.open_at_end
        );
        let _ = write!(
            line,
            "{:.2},{:.2} ",
            x + width / 2.0,
            40.0 - day.open_at_end as f64 / max * 38.0
        );
    }
    let _ = write!(
        svg,
        r#"<polyline points="{}" class="line" vector-effect="non-scaling-stroke"/></svg>"#,
        line.trim_end()
    );
    svg
}

/// The reliability diagram: accuracy against mean confidence per bin, the
/// diagonal for perfect calibration.
pub fn reliability(bins: &[proto::CalibrationBin]) -> String {
    let mut svg = String::from(
        r#"<svg viewBox="-8 -4 112 112" class="chart-square" role="img" aria-labelledby="rel-title"><title id="rel-title">Reliability: share right (up) against stated confidence (across); on the diagonal the AI is calibrated</title><rect x="0" y="0" width="100" height="100" class="frame"/><line x1="0" y1="100" x2="100" y2="0" class="diagonal"/>"#,
    );
    let most = bins.iter().map(|b| b.n).max().unwrap_or(0).max(1) as f64;
    for bin in bins {
        if let (Some(c), Some(a)) = (bin.mean_confidence, bin.accuracy) {
            let r = 1.5 + 4.0 * (bin.n as f64 / most).sqrt();
            let _ = write!(
                svg,
                r#"<circle cx="{:.2}" cy="{:.2}" r="{r:.2}" class="dot"><title>confidence {c:.2}: right {:.0}% of {} items</title></circle>"#,
                c * 100.0,
                100.0 - a * 100.0,
                a * 100.0,
                bin.n
            );
        }
    }
    svg.push_str(r#"<text x="0" y="108" class="axis">0</text><text x="94" y="108" class="axis">1</text><text x="-7" y="3" class="axis">1</text></svg>"#);
    svg
}

/// The threshold curve: error rate and its upper bound against the
/// threshold, with the target as a dashed line.
pub fn threshold_curve(report: &proto::ThresholdReport) -> String {
    let mut svg = String::from(
        r#"<svg viewBox="-8 -4 112 112" class="chart-square" role="img" aria-labelledby="curve-title"><title id="curve-title">Error of auto-approval (line) and its upper bound (dashed) against the confidence threshold; the red line is the target</title><rect x="0" y="0" width="100" height="100" class="frame"/>"#,
    );
    let y = |v: f64| 100.0 - v.clamp(0.0, 1.0) * 100.0;
    let mut rate = String::new();
    let mut bound = String::new();
    for p in &report.curve {
        if let Some(e) = p.error_rate {
            let _ = write!(rate, "{:.2},{:.2} ", p.threshold * 100.0, y(e));
        }
        if let Some(u) = p.upper_bound {
            let _ = write!(bound, "{:.2},{:.2} ", p.threshold * 100.0, y(u));
        }
    }
    let _ = write!(
        svg,
        r#"<line x1="0" x2="100" y1="{t:.2}" y2="{t:.2}" class="target"/><polyline points="{}" class="line"/><polyline points="{}" class="line dashed"/>"#,
        rate.trim_end(),
        bound.trim_end(),
        t = y(report.target)
    );
    if let Some(best) = &report.recommended {
        let _ = write!(
            svg,
            r#"<line x1="{x:.2}" x2="{x:.2}" y1="0" y2="100" class="pick"><title>recommended threshold {:.2}</title></line>"#,
            best.threshold,
            x = best.threshold * 100.0
        );
    }
    svg.push_str(r#"<text x="0" y="108" class="axis">0</text><text x="94" y="108" class="axis">1</text></svg>"#);
    svg
}
