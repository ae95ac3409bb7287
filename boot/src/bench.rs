//! Benchmark results as data: the kernel's `BENCH`/`BENCH_HIST` lines
//! (format: `contract::bench`) turned into one [`Results`] per `cargo xtask
//! bench` run, written as JSON (schema below), one CSV per benchmark, a
//! text table and SVG plots (`crate::plot`).
//!
//! Mental model: a run is one or more boots (one per combination of a
//! sweep, [`crate::sweep`]); each boot prints one line per variant per
//! round. [`parse_lines`] reads a boot's console; [`Results::add_boot`]
//! groups the lines of a boot by benchmark, variant and labels (all labels
//! but `round`), and summarises every metric over the rounds: median,
//! min, max, with the samples kept. Histograms are summarised per round
//! (p50, p99, max) and then over rounds the same way, and their buckets
//! merged.
//!
//! # The JSON schema (`schema: "pcs-bench-results"`, `schema_version: 1`)
//!
//! Documented field by field in `docs/bench-results.md`; [`Results`] is
//! the schema as Rust types (serde), read back by [`Results::read`].
//! Version 1 promises: fields are only ever added; a change that removes
//! or renames one bumps [`SCHEMA_VERSION`].

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    fs, io,
    path::{Path, PathBuf},
    process::Command,
    time::{SystemTime, UNIX_EPOCH},
};

use contract::bench::{self as line, FORMAT_VERSION, Field, Line, ROUND, Unit, bucket_bounds};
use serde::{Deserialize, Serialize};

/// The `schema` field of every results file.
pub const SCHEMA: &str = "pcs-bench-results";
/// The `schema_version` this code writes and reads.
pub const SCHEMA_VERSION: u32 = 1;

/// One `BENCH` line.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub bench: String,
    pub variant: String,
    /// Every label but `round`.
    pub labels: Vec<(String, String)>,
    pub round: Option<u32>,
    pub metrics: Vec<(String, Unit, f64)>,
}

/// One `BENCH_HIST` line.
#[derive(Clone, Debug, PartialEq)]
pub struct HistSample {
    pub bench: String,
    pub variant: String,
    pub labels: Vec<(String, String)>,
    pub round: Option<u32>,
    pub metric: String,
    pub unit: Unit,
    /// (bucket index, count).
    pub buckets: Vec<(usize, u64)>,
}

/// What one boot's console said about benchmarks.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Parsed {
    pub samples: Vec<Sample>,
    pub hists: Vec<HistSample>,
    /// (benchmark, what went wrong): correctness failures.
    pub failures: Vec<(String, String)>,
    /// Benchmark lines that break the format, with the reason.
    pub errors: Vec<String>,
}

fn split_labels<'a>(
    labels: impl Iterator<Item = (&'a str, &'a str)>,
) -> (Vec<(String, String)>, Option<u32>) {
    let mut round = None;
    let mut out = Vec::new();
    for (k, v) in labels {
        if k == ROUND {
            round = v.parse().ok();
        } else {
            out.push((k.to_string(), v.to_string()));
        }
    }
    (out, round)
}

/// Reads the benchmark lines of a console log (other lines are ignored).
pub fn parse_lines<S: AsRef<str>>(lines: &[S]) -> Parsed {
    let mut p = Parsed::default();
    for l in lines {
        let l = l.as_ref();
        match line::parse(l) {
            None => {}
            Some(Err(e)) => p.errors.push(format!("{e}: {}", l.trim())),
            Some(Ok(Line::Result(r))) => {
                let mut labels = Vec::new();
                let mut metrics = Vec::new();
                for f in r.fields() {
                    match f {
                        Field::Label { key, value } => labels.push((key, value)),
                        Field::Metric { key, unit, value } => {
                            metrics.push((key.to_string(), unit, value))
                        }
                    }
                }
                let (labels, round) = split_labels(labels.into_iter());
                p.samples.push(Sample {
                    bench: r.bench.into(),
                    variant: r.variant.into(),
                    labels,
                    round,
                    metrics,
                });
            }
            Some(Ok(Line::Hist(h))) => {
                let (labels, round) = split_labels(h.labels());
                p.hists.push(HistSample {
                    bench: h.bench.into(),
                    variant: h.variant.into(),
                    labels,
                    round,
                    metric: h.metric.into(),
                    unit: h.unit,
                    buckets: h.buckets().collect(),
                });
            }
            Some(Ok(Line::Failed { bench, why })) => p.failures.push((bench.into(), why.into())),
        }
    }
    p
}

/// Median, min and max of samples (which are kept, in round order).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Metric {
    pub name: String,
    /// A `contract::bench::Unit` name (`ns`, `per_s`, `ratio`, ...).
    pub unit: String,
    /// Number of samples (rounds).
    pub n: usize,
    pub median: f64,
    pub min: f64,
    pub max: f64,
    /// One per round, in round order.
    pub samples: Vec<f64>,
}

impl Metric {
    pub fn of(name: &str, unit: Unit, samples: Vec<f64>) -> Metric {
        let mut s = samples.clone();
        s.sort_by(f64::total_cmp);
        let n = s.len();
        let median = match n {
            0 => f64::NAN,
            _ if n % 2 == 1 => s[n / 2],
            _ => (s[n / 2 - 1] + s[n / 2]) / 2.0,
        };
        Metric {
            name: name.into(),
            unit: unit.name().into(),
            n,
            median,
            min: s.first().copied().unwrap_or(f64::NAN),
            max: s.last().copied().unwrap_or(f64::NAN),
            samples,
        }
    }

    /// The unit as a contract `Unit` (`None` for a file with a unit this
    /// version does not know).
    pub fn unit(&self) -> Option<Unit> {
        Unit::from_name(&self.unit)
    }

    /// `max / min`: how far apart the rounds are (1 = identical).
    pub fn spread(&self) -> f64 {
        if self.min > 0.0 {
            self.max / self.min
        } else {
            f64::NAN
        }
    }
}

/// One histogram bucket: `count` samples in `[lo, hi)`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bucket {
    pub lo: u64,
    pub hi: u64,
    pub count: u64,
}

/// A distribution: per-round percentiles summarised over rounds, and the
/// buckets of all rounds merged. A percentile is the lower bound of the
/// bucket that holds it (within 12.5 % below the true value).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Histogram {
    pub name: String,
    pub unit: String,
    /// Samples over all rounds.
    pub count: u64,
    /// `p50`, `p90`, `p99` and `max` (the highest non-empty bucket), each
    /// over the rounds.
    pub percentiles: Vec<Metric>,
    pub buckets: Vec<Bucket>,
}

impl Histogram {
    /// The percentile called `name` (`p50`, `p99`, `max`).
    pub fn percentile(&self, name: &str) -> Option<&Metric> {
        self.percentiles.iter().find(|m| m.name == name)
    }
}

/// The lower bound of the bucket holding percentile `p` of `buckets`.
fn percentile(buckets: &[(usize, u64)], p: u64) -> Option<f64> {
    let n: u64 = buckets.iter().map(|b| b.1).sum();
    if n == 0 {
        return None;
    }
    let rank = (n - 1) * p / 100;
    let mut seen = 0;
    for &(i, c) in buckets {
        seen += c;
        if seen > rank {
            return Some(bucket_bounds(i).0 as f64);
        }
    }
    None
}

/// One variant of one benchmark in one boot, over its rounds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Group {
    pub bench: String,
    pub variant: String,
    /// Index into [`Results::boots`].
    pub boot: usize,
    /// The boot's sweep values (empty without a sweep).
    pub sweep: BTreeMap<String, String>,
    /// Labels (all but `round`), in the kernel's order.
    pub labels: Vec<(String, String)>,
    pub metrics: Vec<Metric>,
    pub histograms: Vec<Histogram>,
}

impl Group {
    pub fn metric(&self, name: &str) -> Option<&Metric> {
        self.metrics.iter().find(|m| m.name == name)
    }

    pub fn histogram(&self, name: &str) -> Option<&Histogram> {
        self.histograms.iter().find(|h| h.name == name)
    }

    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// The commit the kernel was built from.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Commit {
    /// `git rev-parse HEAD`; `None` outside a git checkout.
    pub sha: Option<String>,
    /// Tracked files differed from the commit.
    pub dirty: bool,
}

impl Commit {
    /// The commit of the workspace now.
    pub fn current() -> Commit {
        let git = |args: &[&str]| {
            Command::new("git")
                .args(args)
                .current_dir(crate::workspace_root())
                .output()
                .ok()
                .filter(|o| o.status.success())
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        };
        Commit {
            sha: git(&["rev-parse", "HEAD"]),
            dirty: git(&["status", "--porcelain", "--untracked-files=no"])
                .is_some_and(|s| !s.is_empty()),
        }
    }
}

/// Where and how the run was made.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Host {
    /// `qemu-system-x86_64 --version`, first line.
    pub qemu: Option<String>,
    /// Host CPUs available to this process.
    pub cores: usize,
    /// `tcg` or `kvm`.
    pub accel: String,
}

impl Host {
    pub fn current(kvm: bool) -> Host {
        Host {
            qemu: Command::new(crate::qemu::QEMU)
                .arg("--version")
                .output()
                .ok()
                .and_then(|o| {
                    String::from_utf8_lossy(&o.stdout)
                        .lines()
                        .next()
                        .map(str::to_string)
                }),
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            accel: if kvm { "kvm" } else { "tcg" }.into(),
        }
    }
}

/// One swept key and its values, in boot order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Axis {
    pub key: String,
    pub values: Vec<String>,
}

/// One boot of the run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Boot {
    pub index: usize,
    /// The sweep values of this boot.
    pub sweep: BTreeMap<String, String>,
    /// The whole parameter string the kernel got.
    pub params: String,
    /// QEMU exited with the kernel's success status after the end-of-run
    /// line and no benchmark reported a failure.
    pub passed: bool,
    /// How QEMU ended, in words.
    pub exit: String,
    pub elapsed_s: f64,
    pub serial_log: String,
    /// Correctness failures: `<bench>: <why>`.
    pub failures: Vec<String>,
    /// Benchmark lines that broke the format.
    pub line_errors: Vec<String>,
}

/// Everything one `cargo xtask bench` run measured (see the module docs
/// for the schema).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Results {
    pub schema: String,
    pub schema_version: u32,
    /// `contract::bench::FORMAT_VERSION` of the lines this was read from.
    pub line_format_version: u32,
    /// Names the run's directory under `target/bench/`.
    pub run_id: String,
    pub created_unix_s: u64,
    /// The command line, for the record.
    pub command: String,
    pub kernel_commit: Commit,
    pub host: Host,
    pub smp: u32,
    pub mem: String,
    /// The kernel's build profile: `release` (or `dev`, whose figures are
    /// not comparable).
    pub profile: String,
    pub filter: Option<String>,
    /// Parameters given after `--` (in every boot).
    pub params: Vec<String>,
    /// `bench_rounds=` of the run.
    pub rounds: u32,
    pub sweep: Vec<Axis>,
    pub boots: Vec<Boot>,
    pub results: Vec<Group>,
}

/// What a [`Results`] run is, before any boot.
#[derive(Clone, Debug, Default)]
pub struct RunInfo {
    pub command: String,
    pub smp: u32,
    pub mem: String,
    pub filter: Option<String>,
    pub params: Vec<String>,
    pub rounds: u32,
    pub sweep: Vec<Axis>,
    pub kvm: bool,
    /// `release` or `dev`.
    pub profile: String,
}

impl Results {
    /// An empty run; `run_id` names its directory.
    pub fn new(run_id: &str, info: RunInfo) -> Results {
        Results {
            schema: SCHEMA.into(),
            schema_version: SCHEMA_VERSION,
            line_format_version: FORMAT_VERSION,
            run_id: run_id.into(),
            created_unix_s: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            command: info.command,
            kernel_commit: Commit::current(),
            host: Host::current(info.kvm),
            smp: info.smp,
            mem: info.mem,
            profile: info.profile,
            filter: info.filter,
            params: info.params,
            rounds: info.rounds,
            sweep: info.sweep,
            boots: Vec::new(),
            results: Vec::new(),
        }
    }

    /// Adds a boot and its grouped results; returns its index.
    pub fn add_boot(&mut self, mut boot: Boot, parsed: &Parsed) -> usize {
        let index = self.boots.len();
        boot.index = index;
        boot.failures = parsed
            .failures
            .iter()
            .map(|(b, w)| format!("{b}: {w}"))
            .collect();
        boot.line_errors = parsed.errors.clone();
        boot.passed = boot.passed && parsed.failures.is_empty() && parsed.errors.is_empty();
        let sweep = boot.sweep.clone();
        self.boots.push(boot);
        self.results.extend(group(index, &sweep, parsed));
        index
    }

    /// Whether every boot passed.
    pub fn passed(&self) -> bool {
        !self.boots.is_empty() && self.boots.iter().all(|b| b.passed)
    }

    /// Benchmarks in order of first appearance.
    pub fn benches(&self) -> Vec<&str> {
        let mut v: Vec<&str> = Vec::new();
        for g in &self.results {
            if !v.contains(&g.bench.as_str()) {
                v.push(&g.bench);
            }
        }
        v
    }

    /// The groups of one benchmark.
    pub fn of<'a>(&'a self, bench: &'a str) -> impl Iterator<Item = &'a Group> + 'a {
        self.results.iter().filter(move |g| g.bench == bench)
    }

    /// Writes the JSON file.
    pub fn write(&self, path: &Path) -> io::Result<()> {
        let s = serde_json::to_string_pretty(self).map_err(io::Error::other)?;
        fs::write(path, s + "\n")
    }

    /// Reads a JSON file written by [`Results::write`], checking its schema
    /// and version.
    pub fn read(path: &Path) -> io::Result<Results> {
        let text = fs::read_to_string(path)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
        let head: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| io::Error::other(format!("{}: not JSON: {e}", path.display())))?;
        let schema = head.get("schema").and_then(|s| s.as_str());
        let version = head.get("schema_version").and_then(|v| v.as_u64());
        if schema != Some(SCHEMA) || version != Some(u64::from(SCHEMA_VERSION)) {
            return Err(io::Error::other(format!(
                "{}: schema {schema:?} version {version:?}; this tool reads {SCHEMA} version {SCHEMA_VERSION}",
                path.display()
            )));
        }
        serde_json::from_value(head)
            .map_err(|e| io::Error::other(format!("{}: {e}", path.display())))
    }

    /// Writes one CSV file per benchmark into `dir`; returns their paths.
    pub fn write_csvs(&self, dir: &Path) -> io::Result<Vec<PathBuf>> {
        let mut paths = Vec::new();
        for bench in self.benches() {
            let path = dir.join(format!("{bench}.csv"));
            fs::write(&path, self.csv(bench))?;
            paths.push(path);
        }
        Ok(paths)
    }

    /// The CSV of one benchmark: one row per metric (and histogram
    /// percentile) per group, long format:
    /// `boot,<sweep keys>,variant,<label keys>,metric,unit,n,median,min,max,samples`
    /// (samples space-separated, in round order).
    pub fn csv(&self, bench: &str) -> String {
        let sweep_keys: Vec<&str> = self.sweep.iter().map(|a| a.key.as_str()).collect();
        let mut label_keys: Vec<&str> = Vec::new();
        for g in self.of(bench) {
            for (k, _) in &g.labels {
                if !label_keys.contains(&k.as_str()) {
                    label_keys.push(k);
                }
            }
        }
        let mut out = String::new();
        let mut header = vec!["boot"];
        header.extend(&sweep_keys);
        header.push("variant");
        header.extend(&label_keys);
        header.extend(["metric", "unit", "n", "median", "min", "max", "samples"]);
        out.push_str(
            &header
                .iter()
                .map(|h| csv_field(h))
                .collect::<Vec<_>>()
                .join(","),
        );
        out.push('\n');
        for g in self.of(bench) {
            let mut lead = vec![g.boot.to_string()];
            lead.extend(
                sweep_keys
                    .iter()
                    .map(|k| g.sweep.get(*k).cloned().unwrap_or_default()),
            );
            lead.push(g.variant.clone());
            lead.extend(
                label_keys
                    .iter()
                    .map(|k| g.label(k).unwrap_or("").to_string()),
            );
            let rows =
                g.metrics
                    .iter()
                    .map(|m| (m.name.clone(), m))
                    .chain(g.histograms.iter().flat_map(|h| {
                        h.percentiles
                            .iter()
                            .map(move |m| (format!("{}.{}", h.name, m.name), m))
                    }));
            for (name, m) in rows {
                let mut row = lead.clone();
                row.extend([
                    name,
                    m.unit.clone(),
                    m.n.to_string(),
                    num(m.median),
                    num(m.min),
                    num(m.max),
                    m.samples
                        .iter()
                        .map(|v| num(*v))
                        .collect::<Vec<_>>()
                        .join(" "),
                ]);
                out.push_str(
                    &row.iter()
                        .map(|f| csv_field(f))
                        .collect::<Vec<_>>()
                        .join(","),
                );
                out.push('\n');
            }
        }
        out
    }

    /// A text table per benchmark: one row per group, one column per
    /// metric, each cell `median (min-max)`.
    pub fn table(&self) -> String {
        let mut out = String::new();
        for bench in self.benches() {
            let groups: Vec<&Group> = self.of(bench).collect();
            let sweep_keys: Vec<&str> = self.sweep.iter().map(|a| a.key.as_str()).collect();
            let mut label_keys: Vec<&str> = Vec::new();
            let mut metric_cols: Vec<(String, String)> = Vec::new();
            for g in &groups {
                for (k, _) in &g.labels {
                    if !label_keys.contains(&k.as_str()) {
                        label_keys.push(k);
                    }
                }
                for m in &g.metrics {
                    if !metric_cols.iter().any(|(n, _)| n == &m.name) {
                        metric_cols.push((m.name.clone(), m.unit.clone()));
                    }
                }
                for h in &g.histograms {
                    for p in ["p50", "p99"] {
                        let n = format!("{}.{p}", h.name);
                        if !metric_cols.iter().any(|(c, _)| c == &n) {
                            metric_cols.push((n, h.unit.clone()));
                        }
                    }
                }
            }
            let mut header: Vec<String> = sweep_keys.iter().map(|s| s.to_string()).collect();
            header.push("variant".into());
            header.extend(label_keys.iter().map(|s| s.to_string()));
            header.extend(metric_cols.iter().map(|(n, u)| {
                let sym = Unit::from_name(u).map_or(u.as_str(), |u| u.symbol());
                if sym.is_empty() {
                    n.clone()
                } else {
                    format!("{n} ({sym})")
                }
            }));
            let mut rows = vec![header];
            for g in &groups {
                let mut row: Vec<String> = sweep_keys
                    .iter()
                    .map(|k| g.sweep.get(*k).cloned().unwrap_or_default())
                    .collect();
                row.push(g.variant.clone());
                row.extend(
                    label_keys
                        .iter()
                        .map(|k| g.label(k).unwrap_or("").to_string()),
                );
                for (name, _) in &metric_cols {
                    let m = g.metric(name).or_else(|| {
                        let (h, p) = name.split_once('.')?;
                        g.histogram(h)?.percentile(p)
                    });
                    row.push(m.map_or(String::new(), cell));
                }
                rows.push(row);
            }
            let _ = writeln!(
                out,
                "{bench} ({} rounds per variant; median (min-max)):",
                self.rounds
            );
            out.push_str(&render(&rows));
            out.push('\n');
        }
        out
    }
}

/// `median (min-max)`, or just the value for one sample.
fn cell(m: &Metric) -> String {
    if m.n <= 1 || m.min == m.max {
        short(m.median)
    } else {
        format!("{} ({}-{})", short(m.median), short(m.min), short(m.max))
    }
}

/// Three significant digits, `k`/`M` above 10^4.
pub fn short(v: f64) -> String {
    let a = v.abs();
    if !v.is_finite() {
        "-".into()
    } else if a >= 1e7 {
        format!("{:.1}M", v / 1e6)
    } else if a >= 1e4 {
        format!("{:.1}k", v / 1e3)
    } else if a >= 100.0 || v == v.trunc() {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

fn render(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for (i, r) in rows.iter().enumerate() {
        let line: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(c, s)| format!("{s:<w$}", w = widths[c]))
            .collect();
        let _ = writeln!(out, "  {}", line.join("  ").trim_end());
        if i == 0 {
            let total: usize = widths.iter().sum::<usize>() + 2 * widths.len().saturating_sub(1);
            let _ = writeln!(out, "  {}", "-".repeat(total));
        }
    }
    out
}

fn num(v: f64) -> String {
    if v.is_finite() {
        format!("{v}")
    } else {
        String::new()
    }
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// Groups one boot's lines (module docs).
fn group(boot: usize, sweep: &BTreeMap<String, String>, p: &Parsed) -> Vec<Group> {
    type Key = (String, String, Vec<(String, String)>);
    let mut order: Vec<Key> = Vec::new();
    let mut samples: BTreeMap<Key, Vec<&Sample>> = BTreeMap::new();
    let mut hists: BTreeMap<Key, Vec<&HistSample>> = BTreeMap::new();
    for s in &p.samples {
        let k = (s.bench.clone(), s.variant.clone(), s.labels.clone());
        if !samples.contains_key(&k) && !hists.contains_key(&k) {
            order.push(k.clone());
        }
        samples.entry(k).or_default().push(s);
    }
    for h in &p.hists {
        let k = (h.bench.clone(), h.variant.clone(), h.labels.clone());
        if !samples.contains_key(&k) && !hists.contains_key(&k) {
            order.push(k.clone());
        }
        hists.entry(k).or_default().push(h);
    }
    order
        .into_iter()
        .map(|k| {
            let mut metrics: Vec<(String, Unit, Vec<f64>)> = Vec::new();
            for s in samples.get(&k).into_iter().flatten() {
                for (name, unit, v) in &s.metrics {
                    match metrics.iter_mut().find(|(n, u, _)| n == name && u == unit) {
                        Some((_, _, vs)) => vs.push(*v),
                        None => metrics.push((name.clone(), *unit, vec![*v])),
                    }
                }
            }
            let mut by_metric: Vec<(String, Unit, Vec<&HistSample>)> = Vec::new();
            for h in hists.get(&k).into_iter().flatten() {
                match by_metric
                    .iter_mut()
                    .find(|(n, u, _)| n == &h.metric && *u == h.unit)
                {
                    Some((_, _, v)) => v.push(h),
                    None => by_metric.push((h.metric.clone(), h.unit, vec![h])),
                }
            }
            let histograms = by_metric
                .into_iter()
                .map(|(name, unit, rounds)| histogram(&name, unit, &rounds))
                .collect();
            Group {
                bench: k.0,
                variant: k.1,
                boot,
                sweep: sweep.clone(),
                labels: k.2,
                metrics: metrics
                    .into_iter()
                    .map(|(n, u, v)| Metric::of(&n, u, v))
                    .collect(),
                histograms,
            }
        })
        .collect()
}

fn histogram(name: &str, unit: Unit, rounds: &[&HistSample]) -> Histogram {
    let mut merged: BTreeMap<usize, u64> = BTreeMap::new();
    let mut per: [(&str, u64, Vec<f64>); 3] = [
        ("p50", 50, vec![]),
        ("p90", 90, vec![]),
        ("p99", 99, vec![]),
    ];
    let mut max = Vec::new();
    for r in rounds {
        for &(i, c) in &r.buckets {
            *merged.entry(i).or_default() += c;
        }
        let mut b = r.buckets.clone();
        b.sort();
        for (_, p, v) in per.iter_mut() {
            if let Some(x) = percentile(&b, *p) {
                v.push(x);
            }
        }
        if let Some(&(i, _)) = b.iter().rev().find(|(_, c)| *c > 0) {
            max.push(bucket_bounds(i).0 as f64);
        }
    }
    // An empty distribution (no hand-off on 64 pages, say) has no
    // percentiles: a metric with no samples would have no median (NaN,
    // which JSON cannot hold: the results file would not read back).
    let mut percentiles: Vec<Metric> = per
        .into_iter()
        .filter(|(_, _, v)| !v.is_empty())
        .map(|(n, _, v)| Metric::of(n, unit, v))
        .collect();
    if !max.is_empty() {
        percentiles.push(Metric::of("max", unit, max));
    }
    Histogram {
        name: name.into(),
        unit: unit.name().into(),
        count: merged.values().sum(),
        percentiles,
        buckets: merged
            .into_iter()
            .filter(|(_, c)| *c > 0)
            .map(|(i, count)| {
                let (lo, hi) = bucket_bounds(i);
                Bucket { lo, hi, count }
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use contract::marker::{BENCH, BENCH_FAILED, BENCH_HIST};

    /// A console with benchmark lines (built from the contract's markers).
    fn console() -> Vec<String> {
        let b = |s: &str| format!("{BENCH}{s}");
        vec![
            "[INFO  cpu0] boot".to_string(),
            b("pagelock_herd bookmarks=off waiters=100 round=0 walk:us=10 lock_hold:us=9"),
            b("pagelock_herd bookmarks=on waiters=100 round=0 walk:us=20 lock_hold:us=1"),
            b("pagelock_herd bookmarks=off waiters=100 round=1 walk:us=30 lock_hold:us=11"),
            b("pagelock_herd bookmarks=on waiters=100 round=1 walk:us=22 lock_hold:us=2"),
            b("pagelock_herd bookmarks=off waiters=100 round=2 walk:us=20 lock_hold:us=10"),
            format!("{BENCH_HIST}ipi cpu0 round=0 rt:ns 100=3 101=1"),
            format!("{BENCH_HIST}ipi cpu0 round=1 rt:ns 101=4"),
            b("ipi cpu0 round=0 p50:ns=1000"),
            b("bad line x"),
            format!("{BENCH_FAILED}ipi: IPI lost in round 2"),
        ]
    }

    #[test]
    fn lines_group_into_medians_and_spreads() {
        let p = parse_lines(&console());
        assert_eq!(p.samples.len(), 6);
        assert_eq!(p.hists.len(), 2);
        assert_eq!(
            p.failures,
            [("ipi".to_string(), "IPI lost in round 2".to_string())]
        );
        assert_eq!(p.errors.len(), 1, "{:?}", p.errors);
        assert!(p.errors[0].contains("bad line x"));
        let mut r = Results::new("t", RunInfo::default());
        r.add_boot(
            Boot {
                serial_log: String::new(),
                ..passed_boot()
            },
            &p,
        );
        assert!(!r.passed(), "a failure and a bad line fail the boot");
        assert_eq!(r.benches(), ["pagelock_herd", "ipi"]);
        let off = &r.results[0];
        assert_eq!(
            (off.variant.as_str(), off.label("waiters")),
            ("bookmarks=off", Some("100"))
        );
        let walk = off.metric("walk").unwrap();
        assert_eq!(
            (walk.n, walk.median, walk.min, walk.max),
            (3, 20.0, 10.0, 30.0)
        );
        assert_eq!(walk.samples, [10.0, 30.0, 20.0]);
        assert_eq!(walk.unit(), Some(Unit::Us));
        assert_eq!(walk.spread(), 3.0);
        let on = &r.results[1];
        assert_eq!(
            on.metric("walk").unwrap().median,
            21.0,
            "even count: mean of the middle two"
        );
        let ipi = &r.results[2];
        assert_eq!(ipi.metric("p50").unwrap().median, 1000.0);
        let h = ipi.histogram("rt").unwrap();
        assert_eq!(h.count, 8);
        assert_eq!(
            h.buckets,
            [
                Bucket {
                    lo: bucket_bounds(100).0,
                    hi: bucket_bounds(100).1,
                    count: 3
                },
                Bucket {
                    lo: bucket_bounds(101).0,
                    hi: bucket_bounds(101).1,
                    count: 5
                },
            ]
        );
        // Round 0: p50 in bucket 100; round 1: in 101.
        let p50 = h.percentile("p50").unwrap();
        assert_eq!(
            p50.samples,
            [bucket_bounds(100).0 as f64, bucket_bounds(101).0 as f64]
        );
        assert_eq!(h.percentile("max").unwrap().n, 2);
    }

    /// A boot that passed, with no sweep and no parameters.
    fn passed_boot() -> Boot {
        Boot {
            index: 0,
            sweep: BTreeMap::new(),
            params: String::new(),
            passed: true,
            exit: "success".into(),
            elapsed_s: 1.0,
            serial_log: "x".into(),
            failures: vec![],
            line_errors: vec![],
        }
    }

    /// A distribution with nothing in it (the kernel's empty hand-off
    /// histogram on 64 pages) reads back: the compare of two revisions
    /// found no metric because every results file of the new one failed
    /// to read (a NaN median written as null).
    #[test]
    fn an_empty_histogram_reads_back() {
        let p = parse_lines(&[
            format!("{BENCH}fair pagelock pages=64 round=0 acq:per_s=10"),
            format!("{BENCH_HIST}fair pagelock pages=64 round=0 handoff_idle:ns"),
        ]);
        let mut r = Results::new("t", RunInfo::default());
        r.add_boot(passed_boot(), &p);
        let h = r.results[0]
            .histogram("handoff_idle")
            .expect("the histogram");
        assert_eq!((h.count, h.percentile("p50")), (0, None));
        let dir = std::env::temp_dir().join(format!("pcs-bench-empty-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("results.json");
        r.write(&path).unwrap();
        assert_eq!(Results::read(&path).unwrap(), r);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn json_round_trips_and_csv_and_table_carry_the_figures() {
        let p = parse_lines(&console()[..6]);
        let mut r = Results::new(
            "t",
            RunInfo {
                smp: 2,
                mem: "512M".into(),
                rounds: 3,
                sweep: vec![Axis {
                    key: "unfairness".into(),
                    values: vec!["5".into()],
                }],
                ..RunInfo::default()
            },
        );
        let mut sweep = BTreeMap::new();
        sweep.insert("unfairness".to_string(), "5".to_string());
        r.add_boot(
            Boot {
                sweep,
                params: "mode=bench unfairness=5".into(),
                ..passed_boot()
            },
            &p,
        );
        assert!(r.passed());
        let dir = std::env::temp_dir().join(format!("pcs-bench-test-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("results.json");
        r.write(&path).unwrap();
        assert_eq!(Results::read(&path).unwrap(), r);
        let csv = r.csv("pagelock_herd");
        let mut lines = csv.lines();
        assert_eq!(
            lines.next(),
            Some("boot,unfairness,variant,waiters,metric,unit,n,median,min,max,samples")
        );
        assert_eq!(
            lines.next(),
            Some("0,5,bookmarks=off,100,walk,us,3,20,10,30,10 30 20")
        );
        let table = r.table();
        assert!(table.contains("walk (µs)"), "{table}");
        assert!(table.contains("20 (10-30)"), "{table}");
        // Another schema version is refused with a clear error.
        fs::write(
            &path,
            r#"{"schema": "pcs-bench-results", "schema_version": 99}"#,
        )
        .unwrap();
        let e = Results::read(&path).unwrap_err().to_string();
        assert!(
            e.contains("version Some(99)") && e.contains("reads pcs-bench-results version 1"),
            "{e}"
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn short_numbers() {
        assert_eq!(short(12345.0), "12.3k");
        assert_eq!(short(0.98765), "0.988");
        assert_eq!(short(1.2345), "1.23");
        assert_eq!(short(42.0), "42");
        assert_eq!(short(42.25), "42.2");
        assert_eq!(short(12_345_678.0), "12.3M");
    }
}
