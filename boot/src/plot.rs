//! SVG plots of [`Results`], drawn with `plotters` (its SVG backend only:
//! no fonts or system libraries, text is left to the SVG viewer).
//!
//! Every point is a median over rounds with a bar from the smallest to the
//! largest round, so the plots show how far a figure can be trusted. What
//! is drawn:
//!
//! * `pagelock_fairness.svg`: acquisitions per second and Jain's index per
//!   shape (threads, pages), against the first swept parameter (e.g.
//!   `unfairness`), one series per variant and value of the other swept
//!   parameters (`pagelock protocol=linux-5.8`, `ticket ...`: the baseline);
//!   without a sweep, against the variant.
//! * `pagelock_fairness_wait.svg`: the wait-time distribution (p50, p99,
//!   max) per variant, per shape (log scale).
//! * `pagelock_fairness_handoff.svg`: the hand-off's idle time (p50, p99:
//!   the lock handed to a waiter that is not yet running), per shape.
//! * `pagelock_herd.svg`: wake-walk time and queue-lock hold against the
//!   number of waiters, bookmarks off and on.
//! * `mm_frame_alloc.svg`: allocate+free p50 and p99 against the number of
//!   CPUs, per-CPU caches on and off.
//! * every other benchmark: `<bench>.svg`, one panel per metric, one point
//!   per variant and labels.

use std::{
    collections::BTreeMap,
    io,
    path::{Path, PathBuf},
};

use contract::bench::Unit;
use plotters::prelude::*;

use crate::bench::{Group, Metric, Results, short};

/// One point: where on the x axis (a category index), median, min, max.
#[derive(Clone, Debug, PartialEq)]
pub struct Point {
    pub x: usize,
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Point {
    fn of(x: usize, m: &Metric) -> Point {
        Point {
            x,
            median: m.median,
            min: m.min,
            max: m.max,
        }
    }
}

/// A named line of points.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    pub name: String,
    pub points: Vec<Point>,
}

/// One chart.
#[derive(Clone, Debug, PartialEq)]
pub struct Panel {
    pub title: String,
    pub x_label: String,
    /// The x axis: one category per tick, in order.
    pub x: Vec<String>,
    pub y_label: String,
    pub log_y: bool,
    /// Join a series' points with a line (an ordered x axis); unordered
    /// categories get points and bars only.
    pub connect: bool,
    pub series: Vec<Series>,
}

/// One SVG file: a title and panels on a grid.
#[derive(Clone, Debug, PartialEq)]
pub struct Figure {
    /// The file name (`<name>.svg`).
    pub name: String,
    pub title: String,
    pub panels: Vec<Panel>,
    pub columns: usize,
}

const COLORS: [RGBColor; 8] = [
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0xff, 0x7f, 0x0e),
    RGBColor(0x94, 0x67, 0xbd),
    RGBColor(0x8c, 0x56, 0x4b),
    RGBColor(0xe3, 0x77, 0xc2),
    RGBColor(0x7f, 0x7f, 0x7f),
];

fn unit_label(name: &str, unit: &str) -> String {
    match Unit::from_name(unit).map(|u| u.symbol()) {
        Some("") | None => name.to_string(),
        Some(s) if s == name || unit == name => name.to_string(),
        Some(s) => format!("{name} ({s})"),
    }
}

/// `key=value` pairs of a sweep, space-separated.
fn sweep_text(s: &BTreeMap<String, String>, skip: Option<&str>) -> String {
    s.iter()
        .filter(|(k, _)| Some(k.as_str()) != skip)
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Shapes (the values of `keys`) in order of first appearance.
fn facets(groups: &[&Group], keys: &[&str]) -> Vec<Vec<(String, String)>> {
    let mut v: Vec<Vec<(String, String)>> = Vec::new();
    for g in groups {
        let f: Vec<(String, String)> = keys
            .iter()
            .filter_map(|k| Some((k.to_string(), g.label(k)?.to_string())))
            .collect();
        if !v.contains(&f) {
            v.push(f);
        }
    }
    v
}

fn facet_title(f: &[(String, String)]) -> String {
    f.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn in_facet(g: &Group, f: &[(String, String)]) -> bool {
    f.iter().all(|(k, v)| g.label(k) == Some(v.as_str()))
}

/// Picks a figure from a group.
type Pick = fn(&Group) -> Option<&Metric>;
/// A panel's metric: its name, the y axis label, log scale, and the pick.
type PanelMetric = (&'static str, &'static str, bool, Pick);

fn acq_per_s(g: &Group) -> Option<&Metric> {
    g.metric("acq_per_s")
}
fn jain(g: &Group) -> Option<&Metric> {
    g.metric("jain")
}
fn wait_p50(g: &Group) -> Option<&Metric> {
    g.histogram("wait")?.percentile("p50")
}
fn wait_p99(g: &Group) -> Option<&Metric> {
    g.histogram("wait")?.percentile("p99")
}
fn wait_max(g: &Group) -> Option<&Metric> {
    g.histogram("wait")?.percentile("max")
}
fn handoff_idle_p50(g: &Group) -> Option<&Metric> {
    g.metric("handoff_idle_p50")
}
fn handoff_idle_p99(g: &Group) -> Option<&Metric> {
    g.metric("handoff_idle_p99")
}

/// Panels of `metrics` (name, picks the figure from a group) per facet,
/// against the first swept key if there is one, else against the variant.
fn against_sweep_or_variant(
    r: &Results,
    bench: &str,
    facet_keys: &[&str],
    metrics: &[(&str, &str, bool, Pick)],
) -> Vec<Panel> {
    let groups: Vec<&Group> = r.of(bench).collect();
    let mut panels = Vec::new();
    let axis = r.sweep.first();
    for &(name, y_label, log_y, pick) in metrics {
        for f in facets(&groups, facet_keys) {
            let mut series: Vec<Series> = Vec::new();
            let x: Vec<String> = match axis {
                Some(a) => a.values.clone(),
                None => {
                    let mut v: Vec<String> = Vec::new();
                    for g in groups.iter().filter(|g| in_facet(g, &f)) {
                        if !v.contains(&g.variant) {
                            v.push(g.variant.clone());
                        }
                    }
                    v
                }
            };
            for g in groups.iter().filter(|g| in_facet(g, &f)) {
                let Some(m) = pick(g) else { continue };
                let (sname, xi) = match axis {
                    Some(a) => {
                        let rest = sweep_text(&g.sweep, Some(&a.key));
                        let name = if rest.is_empty() {
                            g.variant.clone()
                        } else {
                            format!("{} {rest}", g.variant)
                        };
                        let xi = g
                            .sweep
                            .get(&a.key)
                            .and_then(|v| a.values.iter().position(|w| w == v));
                        (name, xi)
                    }
                    None => (name.to_string(), x.iter().position(|v| v == &g.variant)),
                };
                let Some(xi) = xi else { continue };
                match series.iter_mut().find(|s| s.name == sname) {
                    Some(s) => s.points.push(Point::of(xi, m)),
                    None => series.push(Series {
                        name: sname,
                        points: vec![Point::of(xi, m)],
                    }),
                }
            }
            if series.is_empty() {
                continue;
            }
            panels.push(Panel {
                title: format!("{name}, {}", facet_title(&f)),
                x_label: axis.map_or("variant".to_string(), |a| a.key.clone()),
                x,
                y_label: y_label.to_string(),
                log_y,
                connect: axis.is_some(),
                series,
            });
        }
    }
    panels
}

/// Panels of `metrics` against a numeric label `x_key` (categories in
/// numeric order), one series per variant and sweep combination.
fn against_label(r: &Results, bench: &str, x_key: &str, metrics: &[(&str, bool)]) -> Vec<Panel> {
    let groups: Vec<&Group> = r.of(bench).collect();
    let mut xs: Vec<String> = Vec::new();
    for g in &groups {
        if let Some(v) = g.label(x_key)
            && !xs.iter().any(|x| x == v)
        {
            xs.push(v.to_string());
        }
    }
    xs.sort_by(|a, b| {
        a.parse::<f64>()
            .unwrap_or(f64::MAX)
            .total_cmp(&b.parse::<f64>().unwrap_or(f64::MAX))
    });
    let mut panels = Vec::new();
    for &(metric, log_y) in metrics {
        let mut series: Vec<Series> = Vec::new();
        let mut unit = String::new();
        for g in &groups {
            let (Some(m), Some(xv)) = (g.metric(metric), g.label(x_key)) else {
                continue;
            };
            unit = m.unit.clone();
            let xi = xs.iter().position(|x| x == xv).expect("collected above");
            let sweep = sweep_text(&g.sweep, None);
            let name = if sweep.is_empty() {
                g.variant.clone()
            } else {
                format!("{} {sweep}", g.variant)
            };
            match series.iter_mut().find(|s| s.name == name) {
                Some(s) => s.points.push(Point::of(xi, m)),
                None => series.push(Series {
                    name,
                    points: vec![Point::of(xi, m)],
                }),
            }
        }
        if series.is_empty() {
            continue;
        }
        panels.push(Panel {
            title: format!("{bench}: {metric}"),
            x_label: x_key.to_string(),
            x: xs.clone(),
            y_label: unit_label(metric, &unit),
            log_y,
            connect: true,
            series,
        });
    }
    panels
}

/// Every metric of a benchmark, one panel each, against its groups.
fn generic(r: &Results, bench: &str) -> Vec<Panel> {
    let groups: Vec<&Group> = r.of(bench).collect();
    let mut names: Vec<(String, String)> = Vec::new();
    for g in &groups {
        for m in &g.metrics {
            if !names.iter().any(|(n, _)| n == &m.name) {
                names.push((m.name.clone(), m.unit.clone()));
            }
        }
    }
    let cat = |g: &Group| {
        let mut s = g.variant.clone();
        for (k, v) in &g.labels {
            s.push_str(&format!(" {k}={v}"));
        }
        s
    };
    let mut x: Vec<String> = Vec::new();
    for g in &groups {
        let c = cat(g);
        if !x.contains(&c) {
            x.push(c);
        }
    }
    names
        .into_iter()
        .take(6)
        .filter_map(|(name, unit)| {
            let mut series: Vec<Series> = Vec::new();
            for g in &groups {
                let Some(m) = g.metric(&name) else { continue };
                let xi = x
                    .iter()
                    .position(|c| *c == cat(g))
                    .expect("collected above");
                let sname = match sweep_text(&g.sweep, None) {
                    s if s.is_empty() => "median".to_string(),
                    s => s,
                };
                match series.iter_mut().find(|s| s.name == sname) {
                    Some(s) => s.points.push(Point::of(xi, m)),
                    None => series.push(Series {
                        name: sname,
                        points: vec![Point::of(xi, m)],
                    }),
                }
            }
            (!series.is_empty()).then(|| Panel {
                title: format!("{bench}: {name}"),
                x_label: String::new(),
                x: x.clone(),
                y_label: unit_label(&name, &unit),
                log_y: false,
                connect: false,
                series,
            })
        })
        .collect()
}

/// The figures of a run (see the module docs).
pub fn figures(r: &Results) -> Vec<Figure> {
    let mut out = Vec::new();
    let title = |what: &str| {
        format!(
            "{what} ({} rounds per point: median and min-max; -smp {}, {})",
            r.rounds,
            r.smp,
            r.kernel_commit
                .sha
                .as_deref()
                .map_or("unknown commit".to_string(), |s| format!(
                    "kernel {}{}",
                    &s[..s.len().min(10)],
                    if r.kernel_commit.dirty { "+" } else { "" }
                ))
        )
    };
    for bench in r.benches() {
        match bench {
            "pagelock_fairness" => {
                // One figure per group of metrics, panels per shape, `per_row`
                // panels a row; a figure none of whose metrics the run has
                // (results from before the hand-off was timed) is left out.
                let mut figure =
                    |name: String, what: &str, per_row: usize, metrics: &[PanelMetric]| {
                        let panels =
                            against_sweep_or_variant(r, bench, &["threads", "pages"], metrics);
                        if !panels.is_empty() {
                            let columns = panels.len().div_ceil(per_row).max(1);
                            out.push(Figure {
                                name,
                                title: title(what),
                                panels,
                                columns,
                            });
                        }
                    };
                figure(
                    bench.into(),
                    "page-lock throughput and fairness",
                    2,
                    &[
                        (
                            "acquisitions/s",
                            "acquisitions per second",
                            false,
                            acq_per_s,
                        ),
                        ("Jain's fairness", "Jain's index (1 = fair)", false, jain),
                    ],
                );
                figure(
                    format!("{bench}_wait"),
                    "page-lock wait-time distribution",
                    3,
                    &[
                        ("wait p50", "wait for the lock (ns, log)", true, wait_p50),
                        ("wait p99", "wait for the lock (ns, log)", true, wait_p99),
                        ("wait max", "wait for the lock (ns, log)", true, wait_max),
                    ],
                );
                const IDLE: &str = "handed-off lock owned, owner not running (ns, log)";
                figure(
                    format!("{bench}_handoff"),
                    "page-lock hand-off idle time",
                    2,
                    &[
                        ("hand-off idle p50", IDLE, true, handoff_idle_p50),
                        ("hand-off idle p99", IDLE, true, handoff_idle_p99),
                    ],
                );
            }
            "pagelock_herd" => {
                let panels =
                    against_label(r, bench, "waiters", &[("walk", true), ("lock_hold", true)]);
                out.push(Figure {
                    name: bench.into(),
                    title: title("wake walk over N waiters in one queue"),
                    columns: panels.len().max(1),
                    panels,
                });
            }
            "mm_frame_alloc" => {
                let panels = against_label(r, bench, "cpus", &[("p50", false), ("p99", false)]);
                out.push(Figure {
                    name: bench.into(),
                    title: title("single-frame alloc+free"),
                    columns: panels.len().max(1),
                    panels,
                });
            }
            _ => {
                let panels = generic(r, bench);
                out.push(Figure {
                    name: bench.into(),
                    title: title(bench),
                    columns: panels.len().clamp(1, 3),
                    panels,
                });
            }
        }
    }
    out.retain(|f| !f.panels.is_empty());
    out
}

/// Draws every figure of `r` into `dir`; returns the files written.
pub fn write_plots(r: &Results, dir: &Path) -> io::Result<Vec<PathBuf>> {
    let figs = figures(r);
    let colors = Palette::of(&figs);
    let mut paths = Vec::new();
    for f in &figs {
        let path = dir.join(format!("{}.svg", f.name));
        draw(f, &path, &colors)
            .map_err(|e| io::Error::other(format!("{}: {e}", path.display())))?;
        paths.push(path);
    }
    Ok(paths)
}

/// One colour per series name across every panel of every figure of a run,
/// in order of first appearance, so a series (a variant, a configuration)
/// keeps its colour from panel to panel and plot to plot.
pub struct Palette(Vec<String>);

impl Palette {
    pub fn of(figs: &[Figure]) -> Palette {
        let mut names: Vec<String> = Vec::new();
        for s in figs.iter().flat_map(|f| &f.panels).flat_map(|p| &p.series) {
            if !names.contains(&s.name) {
                names.push(s.name.clone());
            }
        }
        Palette(names)
    }

    /// The colour index of a series (past the palette's size, colours
    /// repeat).
    pub fn index(&self, name: &str) -> usize {
        self.0
            .iter()
            .position(|n| n == name)
            .unwrap_or(self.0.len())
            % COLORS.len()
    }

    fn color(&self, name: &str) -> RGBColor {
        COLORS[self.index(name)]
    }
}

type DrawResult<T> = Result<T, Box<dyn std::error::Error>>;

/// Draws one figure as an SVG file.
pub fn draw(f: &Figure, path: &Path, colors: &Palette) -> DrawResult<()> {
    const W: u32 = 560;
    const H: u32 = 380;
    let cols = f.columns.max(1);
    let rows = f.panels.len().div_ceil(cols).max(1);
    let root = SVGBackend::new(path, (W * cols as u32, H * rows as u32 + 40)).into_drawing_area();
    root.fill(&WHITE)?;
    let (top, body) = root.split_vertically(40);
    top.titled(&f.title, ("sans-serif", 18))?;
    let areas = body.split_evenly((rows, cols));
    for (panel, area) in f.panels.iter().zip(areas.iter()) {
        draw_panel(panel, area, colors)?;
    }
    root.present()?;
    Ok(())
}

fn draw_panel<DB: DrawingBackend>(
    p: &Panel,
    area: &DrawingArea<DB, plotters::coord::Shift>,
    colors: &Palette,
) -> DrawResult<()>
where
    DB::ErrorType: 'static,
{
    let tf = |v: f64| if p.log_y { v.max(1e-9).log10() } else { v };
    let values = p
        .series
        .iter()
        .flat_map(|s| s.points.iter())
        .flat_map(|pt| [pt.min, pt.max, pt.median])
        .filter(|v| v.is_finite() && (!p.log_y || *v > 0.0))
        .map(tf);
    let (lo, hi) = values.fold((f64::MAX, f64::MIN), |(a, b), v| (a.min(v), b.max(v)));
    let (lo, hi) = if lo > hi {
        (0.0, 1.0)
    } else if p.log_y {
        (lo - 0.1, hi + 0.1)
    } else {
        let pad = ((hi - lo) * 0.1).max(hi.abs() * 0.05).max(1e-9);
        (
            (lo - pad).min(if lo >= 0.0 { 0.0 } else { lo - pad }),
            hi + pad,
        )
    };
    let n = p.x.len().max(1);
    let mut chart = ChartBuilder::on(area)
        .caption(&p.title, ("sans-serif", 15))
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(-0.5f64..(n as f64 - 0.5), lo..hi)?;
    let cats = p.x.clone();
    let log_y = p.log_y;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(n + 1)
        .x_label_formatter(&|v: &f64| {
            let i = v.round();
            if (v - i).abs() < 0.01 && i >= 0.0 && (i as usize) < cats.len() {
                cats[i as usize].clone()
            } else {
                String::new()
            }
        })
        .y_label_formatter(&|v: &f64| {
            if log_y {
                short(10f64.powf(*v))
            } else {
                short(*v)
            }
        })
        .x_desc(&p.x_label)
        .y_desc(&p.y_label)
        .draw()?;
    let ns = p.series.len();
    for (si, s) in p.series.iter().enumerate() {
        let color = colors.color(&s.name);
        // Spread the series a little so that their bars do not overlap.
        let dx = if ns > 1 {
            (si as f64 - (ns as f64 - 1.0) / 2.0) * (0.3 / ns as f64)
        } else {
            0.0
        };
        let mut pts: Vec<&Point> = s.points.iter().filter(|pt| pt.median.is_finite()).collect();
        pts.sort_by_key(|pt| pt.x);
        let line: Vec<(f64, f64)> = if p.connect {
            pts.iter()
                .map(|pt| (pt.x as f64 + dx, tf(pt.median)))
                .collect()
        } else {
            Vec::new()
        };
        chart
            .draw_series(LineSeries::new(line, color.stroke_width(2)))?
            .label(&s.name)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
            });
        chart.draw_series(pts.iter().map(|pt| {
            ErrorBar::new_vertical(
                pt.x as f64 + dx,
                tf(pt.min),
                tf(pt.median),
                tf(pt.max),
                color.filled(),
                8,
            )
        }))?;
        chart.draw_series(
            pts.iter()
                .map(|pt| Circle::new((pt.x as f64 + dx, tf(pt.median)), 3, color.filled())),
        )?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperRight)
        .label_font(("sans-serif", 12))
        .draw()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use contract::marker::{BENCH, BENCH_HIST};

    use super::*;
    use crate::bench::{Boot, RunInfo, parse_lines};

    fn fairness_results() -> Results {
        let mut r = Results::new(
            "t",
            RunInfo {
                smp: 2,
                rounds: 2,
                sweep: vec![crate::bench::Axis {
                    key: "unfairness".into(),
                    values: vec!["0".into(), "5".into()],
                }],
                ..RunInfo::default()
            },
        );
        for (i, u) in ["0", "5"].into_iter().enumerate() {
            let mut lines = Vec::new();
            for round in 0..2 {
                for (v, acq) in [
                    ("pagelock", 5000 + 1000 * i + round),
                    ("ticket", 3000 + round),
                ] {
                    // Only the page lock hands off (and times it).
                    let handoff = if v == "pagelock" {
                        format!(
                            " handoff_idle_p50:ns={} handoff_idle_p99:ns=9000",
                            100 + round
                        )
                    } else {
                        String::new()
                    };
                    lines.push(format!(
                        "{BENCH}pagelock_fairness {v} cpus=2 threads=8 pages=1 round={round} acq_per_s:per_s={acq} jain:index=0.9{round}{handoff}"
                    ));
                    lines.push(format!(
                        "{BENCH_HIST}pagelock_fairness {v} cpus=2 threads=8 pages=1 round={round} wait:ns 100={} 200=1",
                        3 + i
                    ));
                }
            }
            let mut sweep = BTreeMap::new();
            sweep.insert("unfairness".to_string(), u.to_string());
            r.add_boot(
                Boot {
                    index: 0,
                    sweep,
                    params: format!("unfairness={u}"),
                    passed: true,
                    exit: "success".into(),
                    elapsed_s: 1.0,
                    serial_log: String::new(),
                    failures: vec![],
                    line_errors: vec![],
                },
                &parse_lines(&lines),
            );
        }
        r
    }

    #[test]
    fn fairness_figures_against_the_sweep() {
        let r = fairness_results();
        let f = figures(&r);
        let names: Vec<&str> = f.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "pagelock_fairness",
                "pagelock_fairness_wait",
                "pagelock_fairness_handoff"
            ]
        );
        let acq = &f[0].panels[0];
        assert_eq!(acq.x, ["0", "5"]);
        assert_eq!(acq.x_label, "unfairness");
        let series: Vec<&str> = acq.series.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(series, ["pagelock", "ticket"]);
        let pl = &acq.series[0].points;
        assert_eq!(pl.len(), 2);
        assert_eq!((pl[1].x, pl[1].min, pl[1].max), (1, 6000.0, 6001.0));
        assert_eq!(f[1].panels.len(), 3, "p50, p99, max");
        assert!(f[1].panels.iter().all(|p| p.log_y));
        let handoff = &f[2].panels;
        assert_eq!(handoff.len(), 2, "p50, p99");
        let series: Vec<&str> = handoff[0].series.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(series, ["pagelock"], "only the page lock hands off");
        assert_eq!(
            (
                handoff[0].series[0].points[0].min,
                handoff[0].series[0].points[0].max
            ),
            (100.0, 101.0)
        );
    }

    /// A series keeps its colour in every panel of every figure, whatever
    /// its position in a panel (the committed fairness plot once drew the
    /// page lock blue in one panel and red in the next).
    #[test]
    fn a_series_has_one_colour_across_panels() {
        let series = |names: &[&str]| {
            names
                .iter()
                .map(|n| Series {
                    name: n.to_string(),
                    points: vec![],
                })
                .collect()
        };
        let panel = |names: &[&str]| Panel {
            title: String::new(),
            x_label: String::new(),
            x: vec![],
            y_label: String::new(),
            log_y: false,
            connect: false,
            series: series(names),
        };
        let figs = [
            Figure {
                name: "a".into(),
                title: String::new(),
                panels: vec![panel(&["pagelock", "ticket"]), panel(&["ticket"])],
                columns: 2,
            },
            Figure {
                name: "b".into(),
                title: String::new(),
                panels: vec![panel(&["other", "ticket", "pagelock"])],
                columns: 1,
            },
        ];
        let p = Palette::of(&figs);
        assert_eq!(p.index("pagelock"), 0);
        assert_eq!(p.index("ticket"), 1);
        assert_eq!(p.index("other"), 2);
        // The real fairness figures: two series, two colours.
        let p = Palette::of(&figures(&fairness_results()));
        assert_ne!(p.index("pagelock"), p.index("ticket"));
    }

    #[test]
    fn plots_are_valid_svg_with_their_series() {
        let r = fairness_results();
        let dir = std::env::temp_dir().join(format!("pcs-plot-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let paths = write_plots(&r, &dir).unwrap();
        let names: Vec<String> = paths
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            [
                "pagelock_fairness.svg",
                "pagelock_fairness_wait.svg",
                "pagelock_fairness_handoff.svg"
            ]
        );
        for p in &paths {
            let text = std::fs::read_to_string(p).unwrap();
            let doc = roxmltree::Document::parse(&text)
                .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            assert_eq!(doc.root_element().tag_name().name(), "svg");
            let texts: Vec<&str> = doc
                .descendants()
                .filter(|n| n.has_tag_name("text"))
                .filter_map(|n| n.text())
                .map(str::trim)
                .collect();
            // The legend names the series (both, but only the page lock
            // hands off); the axis names the sweep.
            let handoff = p.ends_with("pagelock_fairness_handoff.svg");
            let series: &[&str] = if handoff {
                &["pagelock", "unfairness"]
            } else {
                &["pagelock", "ticket", "unfairness"]
            };
            for &want in series {
                assert!(
                    texts.contains(&want),
                    "{}: no text {want:?} in {texts:?}",
                    p.display()
                );
            }
            // Error bars and points: more than one line and circle each.
            assert!(
                doc.descendants()
                    .filter(|n| n.has_tag_name("circle"))
                    .count()
                    >= 4
            );
        }
        let texts = std::fs::read_to_string(&paths[0]).unwrap();
        assert!(
            texts.contains("acquisitions/s, threads=8 pages=1"),
            "panel title missing"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
