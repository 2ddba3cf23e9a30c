//! Server-rendered SVG charts: no chart library, no JavaScript, readable by screen readers
//! (each chart has a title and a text summary).

use std::fmt::Write as _;

use platform_runtime::traffic::TrafficPoint;

/// One line of a chart.
pub struct Line<'a> {
    /// Legend label.
    pub label: &'a str,
    /// CSS color.
    pub color: &'a str,
    /// Values, oldest first.
    pub values: Vec<f64>,
}

/// Renders a line chart of `lines` (all the same length) as an SVG string.
pub fn line_chart(title: &str, unit: &str, lines: &[Line<'_>]) -> String {
    const W: f64 = 480.0;
    const H: f64 = 120.0;
    const PAD_L: f64 = 44.0;
    const PAD_B: f64 = 18.0;
    let max = lines
        .iter()
        .flat_map(|l| l.values.iter().copied())
        .fold(0.0_f64, f64::max);
    let top = nice_ceiling(max);
    let n = lines.first().map_or(0, |l| l.values.len()).max(2);
    let x = |i: usize| PAD_L + (W - PAD_L - 4.0) * i as f64 / (n - 1) as f64;
    let y = |v: f64| 4.0 + (H - PAD_B - 8.0) * (1.0 - if top > 0.0 { v / top } else { 0.0 });
    let latest: Vec<String> = lines
        .iter()
        .map(|l| {
            format!(
                "{} {}",
                l.label,
                fmt_value(l.values.last().copied().unwrap_or(0.0), unit)
            )
        })
        .collect();
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg viewBox="0 0 {W} {H}" class="w-full h-auto" role="img" aria-label="{t}: latest {latest}" xmlns="http://www.w3.org/2000/svg"><title>{t}</title>"#,
        t = escape(title),
        latest = escape(&latest.join(", ")),
    );
    // Grid and y labels.
    for frac in [0.0, 0.5, 1.0] {
        let v = top * frac;
        let yy = y(v);
        let _ = write!(
            s,
            r##"<line x1="{PAD_L}" x2="{W}" y1="{yy:.1}" y2="{yy:.1}" stroke="#e5e7eb" stroke-width="1"/><text x="{lx:.1}" y="{ty:.1}" font-size="10" text-anchor="end" fill="#6b7280">{label}</text>"##,
            lx = PAD_L - 4.0,
            ty = yy + 3.0,
            label = escape(&fmt_value(v, unit)),
        );
    }
    let _ = write!(
        s,
        r##"<text x="{PAD_L}" y="{yb}" font-size="10" fill="#6b7280">-60 min</text><text x="{W}" y="{yb}" font-size="10" text-anchor="end" fill="#6b7280">now</text>"##,
        yb = H - 4.0
    );
    for l in lines {
        let mut pts = String::new();
        for (i, v) in l.values.iter().enumerate() {
            let _ = write!(pts, "{:.1},{:.1} ", x(i), y(*v));
        }
        let _ = write!(
            s,
            r#"<polyline fill="none" stroke="{}" stroke-width="1.5" points="{}"/>"#,
            escape(l.color),
            pts.trim_end()
        );
    }
    s.push_str("</svg>");
    s
}

/// The four traffic charts of an app: requests/s, latency, errors, cold starts.
pub fn traffic_charts(points: &[TrafficPoint]) -> Vec<(String, String)> {
    let col = |f: fn(&TrafficPoint) -> f64| points.iter().map(f).collect::<Vec<_>>();
    vec![
        (
            "Requests per second".into(),
            line_chart(
                "Requests per second",
                "/s",
                &[Line {
                    label: "req/s",
                    color: "#4f46e5",
                    values: col(|p| p.rps),
                }],
            ),
        ),
        (
            "Latency".into(),
            line_chart(
                "Latency",
                "ms",
                &[
                    Line {
                        label: "p50",
                        color: "#059669",
                        values: col(|p| p.p50_ms),
                    },
                    Line {
                        label: "p99",
                        color: "#d97706",
                        values: col(|p| p.p99_ms),
                    },
                ],
            ),
        ),
        (
            "Errors (5xx) per 10 s".into(),
            line_chart(
                "Errors (5xx) per 10 s",
                "",
                &[Line {
                    label: "errors",
                    color: "#dc2626",
                    values: col(|p| f64::from(p.errors)),
                }],
            ),
        ),
        (
            "Cold starts per 10 s".into(),
            line_chart(
                "Cold starts per 10 s",
                "",
                &[Line {
                    label: "cold",
                    color: "#0284c7",
                    values: col(|p| f64::from(p.cold)),
                }],
            ),
        ),
    ]
}

fn nice_ceiling(v: f64) -> f64 {
    if v <= 0.0 {
        return 1.0;
    }
    let mag = 10f64.powf(v.log10().floor());
    for m in [1.0, 2.0, 5.0, 10.0] {
        if v <= m * mag {
            return m * mag;
        }
    }
    10.0 * mag
}

fn fmt_value(v: f64, unit: &str) -> String {
    let num = if v >= 100.0 || v == v.trunc() {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    };
    format!("{num}{unit}")
}

/// Escapes text for SVG/HTML.
pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_svg_with_accessible_text() {
        let svg = line_chart(
            "Latency <ms>",
            "ms",
            &[Line {
                label: "p50",
                color: "#000",
                values: vec![0.0, 1.5, 3.0],
            }],
        );
        assert!(svg.starts_with("<svg"));
        assert!(svg.contains("<title>Latency &lt;ms&gt;</title>"));
        assert!(svg.contains("latest p50 3ms"));
        assert!(svg.contains("<polyline"));
        assert_eq!(nice_ceiling(3.0), 5.0);
        assert_eq!(nice_ceiling(0.0), 1.0);
        assert_eq!(nice_ceiling(120.0), 200.0);
    }
}
