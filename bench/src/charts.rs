//! Charts of a flood run (`--svg DIR`), drawn with plotters' SVG backend:
//! - `accepted.svg`: accepted and refused IssueCoupon per second over the run;
//! - `latency.svg`: accept and ticket-to-final latency by percentile, on the "nines"
//!   scale of HDR histogram plots (x = -log10(1 - q): 90 %, 99 %, 99.9 % equally apart);
//! - `refusals.svg`: refusals per second, one line per code (label).

use std::path::{Path, PathBuf};

use plotters::coord::Shift;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::stats::Curve;
use crate::timeline::Second;

/// The files [`write_all`] writes, in its order.
pub const FILES: [&str; 3] = ["accepted.svg", "latency.svg", "refusals.svg"];

const SIZE: (u32, u32) = (800, 480);
/// Refusal codes drawn as their own line; the rest are summed into "other".
const MAX_CODES: usize = 7;

/// What the charts of a run are drawn from.
#[derive(Debug, Clone, Default)]
pub struct RunSeries {
    /// The run in one line (mode, connections, duration, …), under each chart's title.
    pub subtitle: String,
    /// Length of the issue phase, seconds.
    pub elapsed_s: f64,
    /// The issue phase second by second.
    pub seconds: Vec<Second>,
    pub accept_latency: Curve,
    pub final_latency: Curve,
}

#[derive(Debug, thiserror::Error)]
pub enum ChartError {
    #[error("cannot create the chart directory {}: {source}", dir.display())]
    CreateDir {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot draw {chart}: {source}")]
    Draw {
        chart: &'static str,
        #[source]
        source: DrawError,
    },
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// What plotters' SVG backend fails with.
pub type DrawError = DrawingAreaErrorKind<std::io::Error>;

type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;
/// Draws one chart on the area.
type Draw = fn(&Area, &RunSeries) -> Result<(), DrawError>;

/// One labelled series of a chart.
struct Line<C> {
    label: String,
    color: C,
    points: Vec<(f64, f64)>,
}

/// Creates `dir` (and its parents) if missing: called before a run, so that a directory
/// that cannot be made fails it at once rather than after the load.
pub fn prepare(dir: &Path) -> Result<(), ChartError> {
    std::fs::create_dir_all(dir).map_err(|source| ChartError::CreateDir {
        dir: dir.to_owned(),
        source,
    })
}

/// Draws the three charts of `series` into `dir` (see [`FILES`]); returns their paths.
pub fn write_all(dir: &Path, series: &RunSeries) -> Result<Vec<PathBuf>, ChartError> {
    prepare(dir)?;
    let mut written = Vec::new();
    for (file, svg) in render_all(series)? {
        let path = dir.join(file);
        std::fs::write(&path, svg).map_err(|source| ChartError::Write {
            path: path.clone(),
            source,
        })?;
        written.push(path);
    }
    Ok(written)
}

/// The three charts as SVG text, with their file names.
pub fn render_all(series: &RunSeries) -> Result<Vec<(&'static str, String)>, ChartError> {
    let charts: [(&'static str, Draw); 3] = [
        (FILES[0], draw_accepted),
        (FILES[1], draw_latency),
        (FILES[2], draw_refusals),
    ];
    charts
        .into_iter()
        .map(|(file, draw)| {
            render(series, draw)
                .map(|svg| (file, svg))
                .map_err(|source| ChartError::Draw {
                    chart: file,
                    source,
                })
        })
        .collect()
}

fn render(series: &RunSeries, draw: Draw) -> Result<String, DrawError> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE)?;
        draw(&root, series)?;
        root.present()?;
    }
    Ok(svg)
}

/// The title, the run's line under it; the area left for the chart.
fn titled<'a>(root: &Area<'a>, title: &str, subtitle: &str) -> Result<Area<'a>, DrawError> {
    root.titled(title, ("sans-serif", 22))?.titled(
        subtitle,
        ("sans-serif", 13).into_font().color(&BLACK.mix(0.6)),
    )
}

fn draw_accepted(root: &Area, series: &RunSeries) -> Result<(), DrawError> {
    let area = titled(root, "IssueCoupon answers per second", &series.subtitle)?;
    let lines = [
        Line {
            label: "accepted/s".into(),
            color: BLUE,
            points: rates(&series.seconds, series.elapsed_s, |s| s.accepted),
        },
        Line {
            label: "refused/s".into(),
            color: RED,
            points: rates(&series.seconds, series.elapsed_s, Second::refused_total),
        },
    ];
    let mut chart = frame(
        &area,
        Axes::per_second(series, &lines, "requests per second"),
    )?;
    draw_lines(&mut chart, lines)
}

fn draw_latency(root: &Area, series: &RunSeries) -> Result<(), DrawError> {
    let area = titled(root, "Latency by percentile", &series.subtitle)?;
    let curves = [
        ("IssueCoupon accept", BLUE, &series.accept_latency),
        ("ticket to final", MAGENTA, &series.final_latency),
    ];
    let samples = curves.iter().map(|c| c.2.samples).max().unwrap_or(0);
    // Up to the nines the samples can tell apart (with 10,000 samples: 99.99 %).
    let nines_end = (samples.max(1) as f64).log10().ceil().max(2.0);
    let lines: Vec<Line<RGBColor>> = curves
        .iter()
        .map(|(name, color, curve)| Line {
            label: format!("{name} ({} samples)", curve.samples),
            color: *color,
            points: curve
                .points
                .iter()
                .map(|p| (nines(p.quantile, curve.samples), p.ms))
                .collect(),
        })
        .collect();
    let axes = Axes {
        x_end: nines_end,
        y_end: y_end(&lines),
        x_desc: "percentile",
        y_desc: "latency (ms)",
        // One label per whole nine: 0 %, 90 %, 99 %, …
        x_labels: nines_end as usize + 1,
        x_format: percentile_label,
    };
    let mut chart = frame(&area, axes)?;
    if samples == 0 {
        note(&chart, "no latency samples")?;
    }
    draw_lines(&mut chart, lines)
}

fn draw_refusals(root: &Area, series: &RunSeries) -> Result<(), DrawError> {
    let area = titled(root, "Refusals per second by code", &series.subtitle)?;
    let lines: Vec<Line<PaletteColor<Palette99>>> = refusal_codes(&series.seconds)
        .iter()
        .enumerate()
        .map(|(i, code)| Line {
            label: code.label(),
            color: Palette99::pick(i),
            points: rates(&series.seconds, series.elapsed_s, |s| code.count(s)),
        })
        .collect();
    let mut chart = frame(
        &area,
        Axes::per_second(series, &lines, "refusals per second"),
    )?;
    if lines.is_empty() {
        return note(&chart, "no refusals");
    }
    draw_lines(&mut chart, lines)
}

type Chart<'a, 'b> = ChartContext<'a, SVGBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// The axes of a chart, from 0 to their ends.
struct Axes<'s> {
    x_end: f64,
    y_end: f64,
    x_desc: &'s str,
    y_desc: &'s str,
    x_labels: usize,
    x_format: fn(f64) -> String,
}

impl<'s> Axes<'s> {
    /// Over the seconds of the phase (its seconds when its length is unknown, at least
    /// one), `lines` with room above them.
    fn per_second<C>(series: &RunSeries, lines: &[Line<C>], y_desc: &'s str) -> Self {
        let x_end = if series.elapsed_s > 0.0 {
            series.elapsed_s
        } else {
            series.seconds.len() as f64
        };
        Self {
            x_end: x_end.max(1.0),
            y_end: y_end(lines),
            x_desc: "seconds since the issue phase started",
            y_desc,
            x_labels: 11,
            x_format: tick_label,
        }
    }
}

/// The chart's plotting area, axes and grid.
fn frame<'a, 'b>(area: &'a Area<'b>, axes: Axes) -> Result<Chart<'a, 'b>, DrawError> {
    let mut chart = ChartBuilder::on(area)
        .margin(12)
        .margin_right(32)
        .x_label_area_size(40)
        .y_label_area_size(64)
        .build_cartesian_2d(0.0..axes.x_end, 0.0..axes.y_end)?;
    chart
        .configure_mesh()
        .x_labels(axes.x_labels)
        .x_desc(axes.x_desc)
        .y_desc(axes.y_desc)
        .x_label_formatter(&|x| (axes.x_format)(*x))
        .y_label_formatter(&|y| tick_label(*y))
        .draw()?;
    Ok(chart)
}

/// The lines and their legend (a lone point is marked, or it would not show).
fn draw_lines<'a, 'b: 'a, C: Color>(
    chart: &mut Chart<'a, 'b>,
    lines: impl IntoIterator<Item = Line<C>>,
) -> Result<(), DrawError> {
    for line in lines {
        let style = line.color.stroke_width(2);
        let marker = if line.points.len() == 1 { 3 } else { 0 };
        chart
            .draw_series(LineSeries::new(line.points, style).point_size(marker))?
            .label(line.label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.4))
        .draw()
}

/// A caption in the middle of the plotting area, for a chart with nothing to draw.
fn note(chart: &Chart, text: &str) -> Result<(), DrawError> {
    let area = chart.plotting_area();
    let (width, height) = area.dim_in_pixel();
    let style = ("sans-serif", 24)
        .into_font()
        .color(&BLACK.mix(0.6))
        .pos(Pos::new(HPos::Center, VPos::Center));
    area.strip_coord_spec()
        .draw_text(text, &style, (width as i32 / 2, height as i32 / 2))
}

/// Room above the highest point of `lines` for the legend.
fn y_end<C>(lines: &[Line<C>]) -> f64 {
    let top = lines
        .iter()
        .flat_map(|line| &line.points)
        .map(|p| p.1)
        .fold(0.0, f64::max);
    if top > 0.0 { top * 1.3 } else { 1.0 }
}

/// Per-second rates of `count` as a step line: each second flat at its rate, from its
/// start to its end. The last, partial second is divided by the time it covers; one
/// shorter than half a second is joined to the second before it (a few milliseconds of
/// stragglers would be a spike).
pub fn rates(
    seconds: &[Second],
    elapsed_s: f64,
    count: impl Fn(&Second) -> u64,
) -> Vec<(f64, f64)> {
    let covered = |i: usize| (elapsed_s - i as f64).clamp(0.0, 1.0);
    let mut points = Vec::with_capacity(2 * seconds.len());
    let mut i = 0;
    while i < seconds.len() {
        let start = i as f64;
        let mut width = covered(i);
        let mut total = count(&seconds[i]);
        if i + 2 == seconds.len() && covered(i + 1) < 0.5 {
            width += covered(i + 1);
            total += count(&seconds[i + 1]);
            i += 1;
        }
        // A phase whose length is unknown (or shorter than its answers): whole seconds.
        if width <= 0.0 {
            width = 1.0;
        }
        let rate = total as f64 / width;
        points.extend([(start, rate), (start + width, rate)]);
        i += 1;
    }
    points
}

/// A value of the y axis: whole numbers bare, others with what decimals they need.
fn tick_label(y: f64) -> String {
    let text = format!("{y:.3}");
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// Where quantile `q` of `samples` samples falls on the nines scale: -log10(1 - q),
/// at most log10(samples) (beyond it every quantile is the maximum).
pub fn nines(q: f64, samples: u64) -> f64 {
    let floor = 1.0 / samples.max(1) as f64;
    -(1.0 - q).max(floor).log10()
}

/// The percentile at `x` on the nines scale: 0 → "0%", 1 → "90%", 2 → "99%",
/// 3 → "99.9%"; between whole nines, as many decimals as the next whole nine has.
pub fn percentile_label(x: f64) -> String {
    if x <= 0.0 {
        return "0%".into();
    }
    let percent = 100.0 * (1.0 - 10f64.powf(-x));
    let decimals = (x.ceil() as usize).saturating_sub(2);
    format!("{percent:.decimals$}%")
}

/// A line of the refusals chart: one code, or the sum of the codes beyond the first few.
enum Code {
    One(String),
    Other(Vec<String>),
}

impl Code {
    fn count(&self, second: &Second) -> u64 {
        let of = |label: &String| second.refused.get(label).copied().unwrap_or(0);
        match self {
            Code::One(label) => of(label),
            Code::Other(labels) => labels.iter().map(of).sum(),
        }
    }

    fn label(&self) -> String {
        match self {
            Code::One(label) => label.clone(),
            Code::Other(labels) => format!("other ({} codes)", labels.len()),
        }
    }
}

/// The codes refused in the phase, most frequent first; past [`MAX_CODES`] they are one
/// "other" line.
fn refusal_codes(seconds: &[Second]) -> Vec<Code> {
    let mut totals = std::collections::BTreeMap::<&String, u64>::new();
    for second in seconds {
        for (label, n) in &second.refused {
            *totals.entry(label).or_default() += n;
        }
    }
    let mut ranked: Vec<(&String, u64)> = totals.into_iter().collect();
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
    let mut labels = ranked.into_iter().map(|(label, _)| label.clone());
    let mut codes: Vec<Code> = labels.by_ref().take(MAX_CODES).map(Code::One).collect();
    let rest: Vec<String> = labels.collect();
    if !rest.is_empty() {
        codes.push(Code::Other(rest));
    }
    codes
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::stats::Latency;

    fn second(accepted: u64, refused: &[(&str, u64)]) -> Second {
        Second {
            accepted,
            refused: refused
                .iter()
                .map(|(label, n)| (label.to_string(), *n))
                .collect::<BTreeMap<_, _>>(),
        }
    }

    fn curve(values_ms: impl Iterator<Item = u64>) -> Curve {
        let latency = Latency::default();
        for ms in values_ms {
            latency.record(std::time::Duration::from_micros(ms * 1000 + 1));
        }
        latency.curve(10)
    }

    fn synthetic() -> RunSeries {
        const NOT_STARTED: &str = "failed_precondition/CAMPAIGN_NOT_STARTED";
        RunSeries {
            subtitle: "Closed loop, 128 connection(s) (HTTP/1.1), 3.2 s".into(),
            elapsed_s: 3.2,
            seconds: vec![
                second(0, &[(NOT_STARTED, 900)]),
                second(18_000, &[(NOT_STARTED, 100), ("unavailable/OVERLOADED", 5)]),
                second(20_000, &[]),
                second(3_000, &[]),
            ],
            accept_latency: curve(1..=10_000),
            final_latency: curve((1..=1_000).map(|n| n * 3)),
        }
    }

    fn read_charts(dir: &Path) -> Vec<String> {
        FILES
            .iter()
            .map(|file| std::fs::read_to_string(dir.join(file)).unwrap_or_default())
            .collect()
    }

    #[test]
    fn the_three_charts_of_a_run_are_svg_with_their_series() {
        let dir = tempfile::tempdir().expect("dir");
        let out = dir.path().join("charts/run1");
        let written = write_all(&out, &synthetic()).expect("charts");
        assert_eq!(written.len(), 3);
        let charts = read_charts(&out);
        let (accepted, latency, refusals) = (&charts[0], &charts[1], &charts[2]);
        for (svg, expected) in [
            (
                accepted,
                &["accepted/s", "refused/s", "seconds since the issue phase"][..],
            ),
            (
                latency,
                &[
                    "IssueCoupon accept (10000 samples)",
                    "ticket to final (1000 samples)",
                    "99.9%",
                    "99.99%",
                ][..],
            ),
            (
                refusals,
                &[
                    "failed_precondition/CAMPAIGN_NOT_STARTED",
                    "unavailable/OVERLOADED",
                ][..],
            ),
        ] {
            assert!(svg.starts_with("<svg"), "{svg}");
            assert!(svg.trim_end().ends_with("</svg>"));
            assert!(svg.contains("Closed loop, 128 connection(s)"));
            for text in expected {
                assert!(svg.contains(text), "{text} missing from\n{svg}");
            }
            assert!(svg.len() < 200_000, "{} bytes", svg.len());
        }
    }

    #[test]
    fn a_run_without_refusals_or_samples_still_draws_every_chart() {
        let dir = tempfile::tempdir().expect("dir");
        let series = RunSeries {
            subtitle: "empty".into(),
            ..RunSeries::default()
        };
        write_all(dir.path(), &series).expect("charts");
        let charts = read_charts(dir.path());
        assert!(charts.iter().all(|svg| svg.starts_with("<svg")));
        assert!(charts[1].contains("no latency samples"));
        assert!(charts[2].contains("no refusals"));
    }

    #[test]
    fn a_directory_that_cannot_be_made_is_a_clear_error() {
        let dir = tempfile::tempdir().expect("dir");
        let file = dir.path().join("a-file");
        std::fs::write(&file, "").expect("file");
        let error = prepare(&file.join("charts")).expect_err("under a file");
        assert!(matches!(error, ChartError::CreateDir { .. }));
        assert!(
            error.to_string().starts_with(&format!(
                "cannot create the chart directory {}",
                file.join("charts").display()
            )),
            "{error}"
        );
    }

    #[test]
    fn rates_divide_the_partial_last_second_and_join_a_short_one() {
        let seconds = [second(10, &[]), second(20, &[]), second(5, &[])];
        // 2.5 s: the last second covers half a second, 5 in it is 10/s.
        assert_eq!(
            rates(&seconds, 2.5, |s| s.accepted),
            [
                (0.0, 10.0),
                (1.0, 10.0),
                (1.0, 20.0),
                (2.0, 20.0),
                (2.0, 10.0),
                (2.5, 10.0)
            ]
        );
        // 2.2 s: its 0.2 s are joined to the second before, 25 in 1.2 s.
        let joined = rates(&seconds, 2.2, |s| s.accepted);
        assert_eq!(joined.len(), 4);
        assert_eq!(joined[2].0, 1.0);
        assert!((joined[3].0 - 2.2).abs() < 1e-9);
        assert!((joined[2].1 - 25.0 / 1.2).abs() < 1e-9 && joined[2].1 == joined[3].1);
        // The length unknown: whole seconds.
        assert_eq!(
            rates(&seconds[..1], 0.0, |s| s.accepted),
            [(0.0, 10.0), (1.0, 10.0)]
        );
    }

    #[test]
    fn the_nines_scale() {
        assert_eq!(nines(0.0, 1_000), 0.0);
        assert!((nines(0.99, 1_000) - 2.0).abs() < 1e-9);
        // Beyond what 1,000 samples tell apart: the maximum, at 99.9 %.
        assert!((nines(1.0, 1_000) - 3.0).abs() < 1e-9);
        let labels: Vec<String> = (0..5).map(|x| percentile_label(f64::from(x))).collect();
        assert_eq!(labels, ["0%", "90%", "99%", "99.9%", "99.99%"]);
        let ticks: Vec<String> = [0.0, 0.2, 2.5, 160.0, 20_000.0].map(tick_label).into();
        assert_eq!(ticks, ["0", "0.2", "2.5", "160", "20000"]);
    }

    #[test]
    fn refusal_codes_past_the_first_few_are_one_line() {
        let many: Vec<(String, u64)> = (0..10).map(|i| (format!("code{i}"), 10 + i)).collect();
        let refused: Vec<(&str, u64)> = many.iter().map(|(l, n)| (l.as_str(), *n)).collect();
        let codes = refusal_codes(&[second(0, &refused)]);
        assert_eq!(codes.len(), MAX_CODES + 1);
        assert_eq!(codes[0].label(), "code9");
        assert_eq!(codes[MAX_CODES].label(), "other (3 codes)");
        assert_eq!(codes[MAX_CODES].count(&second(0, &refused)), 10 + 11 + 12);
    }
}
