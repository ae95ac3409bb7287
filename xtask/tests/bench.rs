//! `cargo xtask bench` as a user runs it, output piped as in CI:
//!
//! * a run writes its results as data: `results.json` (read back here, field
//!   by field, as `docs/bench-results.md` documents them), one CSV per
//!   benchmark and valid SVG plots, and its progress on stderr is plain
//!   lines (no carriage returns or escape codes) when not on a terminal;
//! * a correctness failure seen by a benchmark (here a lost wake-up, from
//!   the known-bad `bug=clear-after-wake`) fails the run;
//! * bad sweeps are rejected before anything is built or booted.
//!
//! The boots use `--dev` (the kernel the other tests build; its figures do
//! not matter here) and two rounds.

mod common;

use std::{fs, path::PathBuf};

use boot::bench::{Results, SCHEMA, SCHEMA_VERSION};
use common::{run_dirs_of, xtask};
use serde_json::Value;

/// A fresh output directory for one test.
fn out_dir(name: &str) -> PathBuf {
    let d = boot::target_dir()
        .join("bench-tests")
        .join(format!("{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&d);
    d
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn a_run_writes_json_csv_and_svg_and_plain_progress() {
    let dir = out_dir("uncontended");
    let (out, _, _) = xtask(&[
        "bench",
        "--dev",
        "--quiet",
        "--filter",
        "pagelock_uncontended",
        "--out",
        dir.to_str().unwrap(),
        "--",
        "bench_rounds=2",
    ]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    let what = format!("stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(out.status.success(), "{what}");
    // Not a terminal: plain progress lines.
    assert!(!stderr.contains('\r') && !stderr.contains('\x1b'), "{what}");
    assert!(
        stderr.contains("xtask: progress: [boot 1/1] benchmarks"),
        "{what}"
    );
    assert!(stderr.contains("running pagelock_uncontended"), "{what}");
    // The table on stdout.
    assert!(
        stdout.contains("pagelock_uncontended (2 rounds per variant"),
        "{what}"
    );
    assert!(stdout.contains("lock_unlock"), "{what}");

    let json: Value =
        serde_json::from_str(&fs::read_to_string(dir.join("results.json")).unwrap()).unwrap();
    assert_eq!(json["schema"], SCHEMA);
    assert_eq!(json["schema_version"], SCHEMA_VERSION);
    assert_eq!(
        json["line_format_version"],
        boot::contract::bench::FORMAT_VERSION
    );
    assert_eq!(json["smp"], 2);
    assert_eq!(json["mem"], "512M");
    assert_eq!(json["profile"], "dev");
    assert_eq!(json["rounds"], 2);
    assert_eq!(json["filter"], "pagelock_uncontended");
    assert_eq!(json["params"], serde_json::json!(["bench_rounds=2"]));
    let sha = json["kernel_commit"]["sha"].as_str().expect("a commit");
    assert_eq!(sha.len(), 40, "{sha}");
    assert!(json["kernel_commit"]["dirty"].is_boolean());
    assert!(json["host"]["qemu"].as_str().unwrap().contains("QEMU"));
    assert_eq!(json["boots"].as_array().unwrap().len(), 1);
    let b = &json["boots"][0];
    assert_eq!(b["passed"], true);
    assert!(b["params"].as_str().unwrap().contains("mode=bench"));
    let results = json["results"].as_array().unwrap();
    let variants: Vec<&str> = results
        .iter()
        .map(|g| g["variant"].as_str().unwrap())
        .collect();
    for v in ["rmw_floor", "floor", "lock_unlock"] {
        assert!(variants.contains(&v), "{variants:?}");
    }
    let lu = results
        .iter()
        .find(|g| g["variant"] == "lock_unlock")
        .unwrap();
    assert_eq!(lu["bench"], "pagelock_uncontended");
    let ratio = lu["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "vs_rmw_floor")
        .unwrap();
    assert_eq!(ratio["unit"], "ratio");
    assert_eq!(ratio["n"], 2);
    assert_eq!(ratio["samples"].as_array().unwrap().len(), 2);
    let (min, med, max) = (
        ratio["min"].as_f64().unwrap(),
        ratio["median"].as_f64().unwrap(),
        ratio["max"].as_f64().unwrap(),
    );
    assert!(min > 0.0 && min <= med && med <= max, "{ratio}");
    // The typed reader agrees.
    let r = Results::read(&dir.join("results.json")).unwrap();
    assert!(r.passed());
    assert_eq!(r.results.len(), results.len());

    let csv = fs::read_to_string(dir.join("pagelock_uncontended.csv")).unwrap();
    assert!(
        csv.starts_with("boot,variant,metric,unit,n,median,min,max,samples\n"),
        "{csv}"
    );
    assert!(
        csv.contains("\n0,lock_unlock,vs_rmw_floor,ratio,2,"),
        "{csv}"
    );
    let svg = fs::read_to_string(dir.join("pagelock_uncontended.svg")).unwrap();
    let doc = roxmltree::Document::parse(&svg).expect("valid SVG");
    assert_eq!(doc.root_element().tag_name().name(), "svg");
    assert!(
        doc.descendants()
            .any(|n| n.has_tag_name("text") && n.text().is_some_and(|t| t.trim() == "lock_unlock"))
    );
    // `cargo xtask plot` draws the same plots again from the file.
    let again = dir.join("again");
    let (out, _, _) = xtask(&[
        "plot",
        dir.join("results.json").to_str().unwrap(),
        "--out",
        again.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        fs::read_to_string(again.join("pagelock_uncontended.svg")).unwrap(),
        svg
    );
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn a_correctness_failure_fails_the_run() {
    let dir = out_dir("lost-wakeup");
    let (out, _, _) = xtask(&[
        "bench",
        "--dev",
        "--quiet",
        "--filter",
        "pagelock_fairness",
        "--out",
        dir.to_str().unwrap(),
        "--",
        "bench_rounds=1",
        "bug=clear-after-wake",
    ]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    let what = format!("stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(!out.status.success(), "the run must fail: {what}");
    assert!(stderr.contains("benchmark run FAILED"), "{what}");
    assert!(
        stderr.contains("correctness failure: pagelock_fairness: pagelock with"),
        "{what}"
    );
    let r = Results::read(&dir.join("results.json")).unwrap();
    assert!(!r.passed());
    let b = &r.boots[0];
    assert!(!b.passed);
    assert_eq!(b.failures.len(), 1, "{:?}", b.failures);
    assert!(
        b.failures[0].contains("lost wake-up") || b.failures[0].contains("still running"),
        "{:?}",
        b.failures
    );
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn bad_sweeps_are_rejected_before_qemu() {
    for (sweep, names) in [
        ("unfairnes=0,1", &["'unfairnes'", "'unfairness'"][..]),
        ("unfairness=0,x", &["'x'", "'unfairness'"][..]),
        ("bookmarks=on,on", &["given twice"][..]),
        ("mode=test,bench", &["cannot be swept"][..]),
        ("bookmarks", &["key=value1,value2"][..]),
    ] {
        let (out, _, pid) = xtask(&["bench", "--sweep", sweep, "--sweep", "seed=1,2"]);
        let stderr = text(&out.stderr);
        let what = format!("--sweep {sweep}: stderr:\n{stderr}");
        assert!(!out.status.success(), "{what}");
        assert!(stderr.contains("bad --sweep"), "{what}");
        for n in names {
            assert!(stderr.contains(n), "{n} not named; {what}");
        }
        assert!(
            !stderr.contains("kernel and image ready") && !stderr.contains("[boot "),
            "built or booted before rejecting; {what}"
        );
        assert_eq!(
            run_dirs_of(pid),
            Vec::<String>::new(),
            "QEMU was started; {what}"
        );
    }
    // A sweep over a key also given after `--`.
    let (out, _, _) = xtask(&["bench", "--sweep", "seed=1,2", "--", "seed=3"]);
    assert!(text(&out.stderr).contains("both swept and given"));
}
