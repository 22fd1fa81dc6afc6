//! The report's figures, each as SVG and PNG: latency CDF per engine,
//! RTT p50/p99 per count, throughput per count, one set per testbed.
//!
//! Text needs a font: plotters draws glyphs with ab_glyph from a TrueType
//! file found on the host (DejaVu or Liberation, Debian's usual ones). On a
//! host without one the same figures are drawn without text and the report
//! says so.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::model::{Cell, Results};

/// Fonts tried, in order.
const FONT_PATHS: [&str; 4] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
];

/// Registers the first font found as "sans-serif"; `Some(path)` if any.
fn font() -> Option<&'static str> {
    static FONT: OnceLock<Option<&'static str>> = OnceLock::new();
    *FONT.get_or_init(|| {
        FONT_PATHS.iter().copied().find(|path| {
            std::fs::read(path).ok().is_some_and(|bytes| {
                // plotters keeps fonts for the life of the process.
                let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
                plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_ok()
            })
        })
    })
}

/// One line (or set of points) of a chart.
#[derive(Debug, Clone)]
pub struct Series {
    /// Legend.
    pub name: String,
    /// (x, y) in data units.
    pub points: Vec<(f64, f64)>,
    /// Points only (a tool's few printed percentiles), no line.
    pub points_only: bool,
}

/// A chart: axes in data units; a log axis is drawn as log10 of the data.
#[derive(Debug, Clone)]
pub struct Chart {
    /// File stem.
    pub stem: String,
    /// Caption.
    pub title: String,
    /// X axis description.
    pub x_desc: String,
    /// Y axis description.
    pub y_desc: String,
    /// X axis logarithmic.
    pub x_log: bool,
    /// Y axis logarithmic.
    pub y_log: bool,
    /// The series.
    pub series: Vec<Series>,
}

fn axis(v: f64, log: bool) -> f64 {
    if log {
        v.max(1e-3).log10()
    } else {
        v
    }
}

fn label(v: f64, log: bool) -> String {
    let x = if log { 10f64.powf(v) } else { v };
    if x >= 1e6 {
        format!("{:.1}M", x / 1e6)
    } else if x >= 1e3 {
        format!("{:.1}k", x / 1e3)
    } else if x >= 10.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.2}")
    }
}

fn bounds(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    if !lo.is_finite() || !hi.is_finite() {
        return (0.0, 1.0);
    }
    let pad = ((hi - lo) * 0.05).max(0.05);
    (lo - pad, hi + pad)
}

/// A plot that could not be drawn or written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("drawing {file}: {message}")]
pub struct PlotError {
    /// The plot's file.
    pub file: PathBuf,
    /// The drawing backend's message.
    pub message: String,
}

/// Draws `chart` on `area`; `text` false draws no caption, labels or legend.
/// The backend's error is returned as its message (the backends' error
/// types differ); [`write`] names the file it belongs to.
fn render<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    chart: &Chart,
    text: bool,
) -> Result<(), String>
where
    DB::ErrorType: 'static,
{
    let e = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    area.fill(&WHITE).map_err(e)?;
    let series: Vec<Vec<(f64, f64)>> = chart
        .series
        .iter()
        .map(|s| {
            s.points
                .iter()
                .filter(|(x, y)| x.is_finite() && y.is_finite())
                .map(|&(x, y)| (axis(x, chart.x_log), axis(y, chart.y_log)))
                .collect()
        })
        .collect();
    let (x0, x1) = bounds(series.iter().flatten().map(|p| p.0));
    let (y0, y1) = bounds(series.iter().flatten().map(|p| p.1));
    let mut builder = ChartBuilder::on(area);
    builder.margin(20);
    if text {
        builder
            .caption(&chart.title, ("sans-serif", 20))
            .x_label_area_size(50)
            .y_label_area_size(70);
    }
    let mut ctx = builder.build_cartesian_2d(x0..x1, y0..y1).map_err(e)?;
    let (x_log, y_log) = (chart.x_log, chart.y_log);
    let x_fmt = move |v: &f64| label(*v, x_log);
    let y_fmt = move |v: &f64| label(*v, y_log);
    let mut mesh = ctx.configure_mesh();
    if text {
        mesh.x_desc(chart.x_desc.as_str())
            .y_desc(chart.y_desc.as_str())
            .x_label_formatter(&x_fmt)
            .y_label_formatter(&y_fmt)
            .label_style(("sans-serif", 13));
    } else {
        mesh.x_labels(0).y_labels(0);
    }
    mesh.draw().map_err(e)?;
    for (i, (s, points)) in chart.series.iter().zip(series).enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let drawn = if s.points_only {
            ctx.draw_series(
                points
                    .into_iter()
                    .map(|p| Circle::new(p, 4, color.filled())),
            )
            .map_err(e)?
        } else {
            ctx.draw_series(LineSeries::new(points, color.stroke_width(2)))
                .map_err(e)?
        };
        if text {
            drawn.label(s.name.as_str()).legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(3))
            });
        }
    }
    if text && !chart.series.is_empty() {
        ctx.configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font(("sans-serif", 13))
            .position(SeriesLabelPosition::UpperLeft)
            .draw()
            .map_err(e)?;
    }
    area.present().map_err(e)?;
    Ok(())
}

const SIZE: (u32, u32) = (960, 600);

/// Writes `chart` as DIR/stem.svg and DIR/stem.png.
///
/// # Errors
/// Drawing or writing failed.
pub fn write(chart: &Chart, dir: &Path, text: bool) -> Result<Vec<String>, PlotError> {
    let svg = dir.join(format!("{}.svg", chart.stem));
    let png = dir.join(format!("{}.png", chart.stem));
    let failed = |file: &Path| {
        let file = file.to_owned();
        move |message| PlotError { file, message }
    };
    {
        let area = SVGBackend::new(&svg, SIZE).into_drawing_area();
        render(&area, chart, text).map_err(failed(&svg))?;
    }
    {
        let area = BitMapBackend::new(&png, SIZE).into_drawing_area();
        render(&area, chart, text).map_err(failed(&png))?;
    }
    Ok(vec![
        format!("plots/{}.svg", chart.stem),
        format!("plots/{}.png", chart.stem),
    ])
}

/// What [`draw_all`] wrote, and notes for the report.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Files, relative to the output directory.
    pub files: Vec<String>,
    /// E.g. drawn without text for lack of a font.
    pub notes: Vec<String>,
}

fn legend(c: &Cell) -> String {
    format!("{} {}", c.subject, c.test)
}

/// The charts of one testbed.
#[must_use]
pub fn charts(results: &Results, impairment: &str) -> Vec<Chart> {
    let cells: Vec<&Cell> = results
        .cells
        .iter()
        .filter(|c| c.impairment == impairment && !c.runs.is_empty() && c.key().is_original_shape())
        .collect();
    let mut subjects: Vec<(String, String)> = cells
        .iter()
        .map(|c| (c.subject.clone(), c.test.clone()))
        .collect();
    subjects.sort();
    subjects.dedup();
    let per_count = |get: fn(&Cell) -> Option<f64>, closed_only: bool| -> Vec<Series> {
        subjects
            .iter()
            .filter(|(_, t)| !closed_only || crate::model::family(t) == "closed")
            .filter_map(|(s, t)| {
                let mut points: Vec<(f64, f64)> = cells
                    .iter()
                    .filter(|c| &c.subject == s && &c.test == t)
                    .filter_map(|c| {
                        #[allow(clippy::cast_precision_loss)]
                        let x = c.packets as f64;
                        get(c).filter(|v| *v > 0.0).map(|y| (x, y))
                    })
                    .collect();
                points.sort_by(|a, b| a.0.total_cmp(&b.0));
                (!points.is_empty()).then(|| Series {
                    name: format!("{s} {t}"),
                    points,
                    points_only: false,
                })
            })
            .collect()
    };
    let mut charts = Vec::new();
    // CDF: the median run of each engine's closed loop and sockperf's
    // ping-pong, at the largest count measured.
    let largest = cells.iter().map(|c| c.packets).max().unwrap_or(0);
    let cdf: Vec<Series> = cells
        .iter()
        .filter(|c| c.packets == largest && (c.test == "closed" || c.test == "ping-pong"))
        .filter_map(|c| {
            let run = c.median_run()?;
            let points: Vec<(f64, f64)> = run
                .cdf
                .iter()
                .filter(|(_, us)| *us > 0.0)
                .map(|&(q, us)| (us, q))
                .collect();
            (!points.is_empty()).then(|| Series {
                name: legend(c),
                points,
                points_only: c.kind == "peer",
            })
        })
        .collect();
    charts.push(Chart {
        stem: format!("latency-cdf-{impairment}"),
        title: format!("RTT CDF, closed loop, {largest} messages, impairment {impairment}"),
        x_desc: "RTT (µs, log)".into(),
        y_desc: "fraction of messages".into(),
        x_log: true,
        y_log: false,
        series: cdf,
    });
    let mut latency = per_count(|c| c.aggregate.median.rtt_p50_us, true);
    for s in &mut latency {
        s.name.push_str(" p50");
    }
    let mut p99 = per_count(|c| c.aggregate.median.rtt_p99_us, true);
    for s in &mut p99 {
        s.name.push_str(" p99");
    }
    latency.extend(p99);
    charts.push(Chart {
        stem: format!("latency-per-count-{impairment}"),
        title: format!("RTT p50 and p99 per count (median of runs), impairment {impairment}"),
        x_desc: "messages (log)".into(),
        y_desc: "RTT (µs, log)".into(),
        x_log: true,
        y_log: true,
        series: latency,
    });
    charts.push(Chart {
        stem: format!("throughput-per-count-{impairment}"),
        title: format!("Messages per second per count (median of runs), impairment {impairment}"),
        x_desc: "messages (log)".into(),
        y_desc: "messages/s (log)".into(),
        x_log: true,
        y_log: true,
        series: per_count(|c| c.aggregate.median.messages_per_s, false),
    });
    charts.extend(scaling_charts(results, impairment));
    charts
}

/// Against connections, one line per engine, client stack and minimum RTO
/// at the largest count: msgs/s (conns/s for short connections) and RTT p99.
fn scaling_charts(results: &Results, impairment: &str) -> Vec<Chart> {
    let mut charts = Vec::new();
    for family in ["closed", "open", "short"] {
        let cells: Vec<&Cell> = results
            .cells
            .iter()
            .filter(|c| {
                c.kind == "engine"
                    && c.impairment == impairment
                    && c.family() == family
                    && !c.runs.is_empty()
            })
            .collect();
        let largest = cells.iter().map(|c| c.packets).max().unwrap_or(0);
        let cells: Vec<&Cell> = cells.into_iter().filter(|c| c.packets == largest).collect();
        let mut connections: Vec<u32> = cells.iter().map(|c| c.connections).collect();
        connections.sort_unstable();
        connections.dedup();
        if connections.len() < 2 {
            continue;
        }
        let mut lines: Vec<(String, String, Option<u32>)> = cells
            .iter()
            .map(|c| (c.subject.clone(), c.client.clone(), c.rto_min_ms))
            .collect();
        lines.sort();
        lines.dedup();
        let series = |get: fn(&Cell) -> Option<f64>| -> Vec<Series> {
            lines
                .iter()
                .filter_map(|(subject, client, rto)| {
                    let mut points: Vec<(f64, f64)> = cells
                        .iter()
                        .filter(|c| {
                            &c.subject == subject && &c.client == client && c.rto_min_ms == *rto
                        })
                        .filter_map(|c| {
                            get(c)
                                .filter(|v| *v > 0.0)
                                .map(|y| (f64::from(c.connections), y))
                        })
                        .collect();
                    points.sort_by(|a, b| a.0.total_cmp(&b.0));
                    let mut name = format!("{client}→{subject}");
                    if let Some(rto) = rto {
                        name.push_str(&format!(" RTO≥{rto}ms"));
                    }
                    (!points.is_empty()).then_some(Series {
                        name,
                        points,
                        points_only: false,
                    })
                })
                .collect()
        };
        let (rate, rate_desc): (fn(&Cell) -> Option<f64>, &str) = if family == "short" {
            (
                |c| c.aggregate.median.connections_per_s,
                "connections/s (log)",
            )
        } else {
            (|c| c.aggregate.median.messages_per_s, "messages/s (log)")
        };
        charts.push(Chart {
            stem: format!("rate-per-connections-{family}-{impairment}"),
            title: format!("{rate_desc} against connections, {family}, {largest} messages, impairment {impairment}"),
            x_desc: "connections (log)".into(),
            y_desc: rate_desc.into(),
            x_log: true,
            y_log: true,
            series: series(rate),
        });
        charts.push(Chart {
            stem: format!("p99-per-connections-{family}-{impairment}"),
            title: format!("RTT p99 against connections, {family}, {largest} messages, impairment {impairment}"),
            x_desc: "connections (log)".into(),
            y_desc: "RTT p99 (µs, log)".into(),
            x_log: true,
            y_log: true,
            series: series(|c| c.aggregate.median.rtt_p99_us),
        });
    }
    charts
}

/// Draws every chart of every testbed into `dir`.
///
/// # Errors
/// A chart could not be drawn or written.
pub fn draw_all(results: &Results, dir: &Path) -> Result<Outcome, PlotError> {
    let mut outcome = Outcome::default();
    let text = font().is_some();
    if !text {
        outcome.notes.push(format!(
            "plots drawn without text: no TrueType font found (looked for {}; Debian package fonts-dejavu-core)",
            FONT_PATHS.join(", ")
        ));
    }
    for impairment in results.impairments() {
        for chart in charts(results, &impairment) {
            outcome.files.extend(write(&chart, dir, text)?);
        }
    }
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chart() -> Chart {
        Chart {
            stem: "t".into(),
            title: "test".into(),
            x_desc: "x".into(),
            y_desc: "y".into(),
            x_log: true,
            y_log: false,
            series: vec![
                Series {
                    name: "a".into(),
                    points: vec![(10.0, 0.1), (100.0, 0.5), (1000.0, 1.0)],
                    points_only: false,
                },
                Series {
                    name: "b".into(),
                    points: vec![(20.0, 0.5)],
                    points_only: true,
                },
            ],
        }
    }

    #[test]
    fn draws_with_and_without_text() {
        let dir = std::env::temp_dir().join(format!("bench-plot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // Without a font: nothing may need text.
        let files = write(&chart(), &dir, false).unwrap();
        assert_eq!(files.len(), 2);
        let png = std::fs::read(dir.join("t.png")).unwrap();
        assert_eq!(&png[1..4], b"PNG");
        if font().is_some() {
            write(&chart(), &dir, true).unwrap();
            let svg = std::fs::read_to_string(dir.join("t.svg")).unwrap();
            assert!(svg.contains("<svg") && svg.contains("test"));
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
