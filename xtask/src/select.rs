//! Selecting the cargo tests of `cargo xtask test FILTER`.
//!
//! Mental model: a host test's full name is `<target>::<test path>`, where
//! the target is the test binary: an integration test file's stem
//! (`tests/tests/pagelock.rs` -> `pagelock`, `kernel/pagesync/tests/
//! loom_pagelock.rs` -> `loom_pagelock`) or the crate of its unit tests
//! (`pagesync::flags::tests::lock_bit_semantics`). FILTER selects the tests
//! whose full name contains it. Since every test file is named after its
//! subsystem, `cargo xtask test pagelock` selects all of the subsystem's
//! QEMU integration tests (`pagelock::*`) and loom models
//! (`loom_pagelock::*`, `loom_pagelock_waiters::*`), and the kernel stage
//! its in-kernel cases (`pagelock.*`), although none of those test
//! functions has "pagelock" in its own name.
//!
//! How: build the test binaries (`cargo test --no-run
//! --message-format=json` names each binary with its package and target),
//! list each binary's tests (`--list`), and run every target that has
//! selected tests once, with exactly those names. Doc tests, which have no
//! binary to list, are selected by their own name.

use std::{
    collections::BTreeMap,
    io::{BufRead, BufReader},
    path::PathBuf,
    process::{Command, Stdio},
};

use boot::ktap::Counts;

use crate::Result;

/// One test binary of the build.
#[derive(Debug, Clone)]
pub struct Binary {
    /// Package name.
    pub package: String,
    /// Target name (a test file's stem, or the crate name).
    pub target: String,
    /// How cargo selects it: `--lib`, `--test NAME`, `--bin NAME`.
    pub select: Vec<String>,
    pub executable: PathBuf,
}

/// Builds the test binaries of `build_args` (a `cargo test` argument list
/// without `--`) and returns them.
pub fn binaries(build_args: &[&str], envs: &[(&str, &str)]) -> Result<Vec<Binary>> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(boot::workspace_root())
        .args(build_args)
        .args(["--no-run", "--message-format=json-render-diagnostics"])
        .stdout(Stdio::piped());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn()?;
    let mut out = Vec::new();
    for line in BufReader::new(child.stdout.take().expect("piped")).lines() {
        let line = line?;
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        if msg["reason"] != "compiler-artifact" || msg["profile"]["test"] != true {
            continue;
        }
        let Some(exe) = msg["executable"].as_str() else {
            continue;
        };
        let target = msg["target"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let kinds: Vec<&str> = msg["target"]["kind"]
            .as_array()
            .map(|k| k.iter().filter_map(|v| v.as_str()).collect())
            .unwrap_or_default();
        let select = if kinds.contains(&"test") {
            vec!["--test".to_owned(), target.clone()]
        } else if kinds.contains(&"bin") {
            vec!["--bin".to_owned(), target.clone()]
        } else {
            vec!["--lib".to_owned()]
        };
        out.push(Binary {
            package: package_name(msg["package_id"].as_str().unwrap_or_default()),
            target: target.replace('-', "_"),
            select,
            executable: PathBuf::from(exe),
        });
    }
    let status = child.wait()?;
    if !status.success() {
        return Err(format!("building the test binaries failed ({status})").into());
    }
    Ok(out)
}

/// The package name in a cargo package id (`path+file:///.../pagesync#0.1.0`
/// or `registry+...#name@1.2.3`).
fn package_name(id: &str) -> String {
    let (url, frag) = id.rsplit_once('#').unwrap_or((id, ""));
    match frag.split_once('@') {
        Some((name, _)) => name.to_owned(),
        None => url
            .trim_end_matches('/')
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_owned(),
    }
}

/// The tests of one binary (`--list --format terse`), ignored ones too.
pub fn list(b: &Binary) -> Result<Vec<String>> {
    let out = Command::new(&b.executable)
        .args(["--list", "--format", "terse"])
        .stderr(Stdio::null())
        .output()?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.strip_suffix(": test"))
        .map(str::to_owned)
        .collect())
}

/// Runs the tests of `build_args` whose full name (module docs) contains
/// `filter`: one cargo run per target that has some, plus the doc tests
/// whose name contains it if `doc` is given (the `cargo test` arguments
/// that select them).
///
/// `run` runs one `cargo` command line (with its environment) and counts
/// its results, like an unfiltered stage does.
pub fn run_selected(
    label: &str,
    build_args: &[&str],
    envs: &[(&str, &str)],
    filter: &str,
    doc: Option<&[&str]>,
    run: &mut dyn FnMut(&[&str], &[(&str, &str)]) -> Result<Counts>,
) -> Result<Counts> {
    let mut total = Counts::default();
    let mut by_target: BTreeMap<(String, Vec<String>), Vec<String>> = BTreeMap::new();
    for b in binaries(build_args, envs)? {
        let names: Vec<String> = list(&b)?
            .into_iter()
            .filter(|n| format!("{}::{n}", b.target).contains(filter))
            .collect();
        if !names.is_empty() {
            by_target
                .entry((b.package.clone(), b.select.clone()))
                .or_default()
                .extend(names);
        }
    }
    // Flags that select packages or targets are replaced by ours; the rest
    // (profile, --no-fail-fast) are kept.
    let keep: Vec<&str> = {
        let mut keep = Vec::new();
        let mut it = build_args.iter().copied();
        while let Some(a) = it.next() {
            match a {
                "--workspace" | "--tests" | "--lib" | "--doc" => {}
                "--package" | "-p" | "--test" | "--bin" => {
                    it.next();
                }
                _ => keep.push(a),
            }
        }
        keep
    };
    if by_target.is_empty() {
        eprintln!("xtask: == {label}: no test's name contains '{filter}'");
    }
    for ((package, select), names) in &by_target {
        let mut args: Vec<&str> = keep.clone();
        args.extend(["--package", package.as_str()]);
        args.extend(select.iter().map(String::as_str));
        args.extend(["--", "--exact"]);
        args.extend(names.iter().map(String::as_str));
        total += run(&args, envs)?;
    }
    if let Some(doc) = doc {
        let mut args: Vec<&str> = doc.to_vec();
        args.extend(["--", filter]);
        total += run(&args, envs)?;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::package_name;

    #[test]
    fn package_ids() {
        assert_eq!(
            package_name("path+file:///work/x/kernel/pagesync#0.1.0"),
            "pagesync"
        );
        assert_eq!(
            package_name("path+file:///work/x/tests#tests@0.1.0"),
            "tests"
        );
        assert_eq!(
            package_name("registry+https://github.com/rust-lang/crates.io-index#serde@1.0.0"),
            "serde"
        );
    }
}
