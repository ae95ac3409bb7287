//! The in-kernel test framework, reporting in KTAP version 1 (the format of
//! Linux's `Documentation/dev-tools/ktap.rst`) on the serial console.
//!
//! Each module that has tests declares one `pub static SUITE: Suite` listing
//! its cases; [`suites::ALL`] is the one registry of suites. A case is a plain
//! function returning [`TestResult`]; the `kassert*!` macros print the
//! expected and actual values as KTAP diagnostics and return
//! `Err(TestError::Fail)`, so the run goes on with the next case. A panic or
//! exception inside a case ends the run (there is no unwinding); the panic
//! path names the case from [`current`], and the host parser counts the cases
//! never reached as crashed.
//!
//! Output shape (each suite is a KTAP subtest, indented four spaces):
//! ```text
//! KTAP version 1
//! 1..2
//!     KTAP version 1
//!     # Subtest: params
//!     1..3
//!     ok 1 accepts_valid
//!     ...
//! ok 1 params
//! ...
//! # pcs: 12 passed, 0 failed, 2 skipped
//! # pcs: end of run
//! ```

pub mod suites;

use core::sync::atomic::{AtomicUsize, Ordering};

use crate::{params::Params, println};

/// Why a case did not pass.
#[derive(Debug)]
pub enum TestError {
    /// An assertion failed; its diagnostics were already printed.
    Fail,
    /// The case does not apply to this run; the reason goes in `# SKIP`.
    Skip(&'static str),
}

pub type TestResult = Result<(), TestError>;

/// What a case gets to look at.
pub struct Ctx<'a> {
    pub params: &'a Params,
}

pub struct Case {
    pub name: &'static str,
    pub run: fn(&Ctx) -> TestResult,
}

pub struct Suite {
    pub name: &'static str,
    pub cases: &'static [Case],
}

/// Declares a case whose name is its function's name.
#[macro_export]
macro_rules! case {
    ($f:path) => {
        $crate::ktest::Case {
            name: stringify!($f),
            run: $f,
        }
    };
}

/// Indentation of diagnostics printed by a running case (suite level).
pub const CASE_INDENT: &str = "    ";

/// Fails the case unless `cond` holds.
#[macro_export]
macro_rules! kassert {
    ($cond:expr) => { $crate::kassert!($cond, "{}", stringify!($cond)) };
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            $crate::println!("{}# {}:{}: assertion failed: {}", $crate::ktest::CASE_INDENT, file!(), line!(), format_args!($($msg)+));
            return Err($crate::ktest::TestError::Fail);
        }
    };
}

/// Fails the case unless `left == right`, printing both values.
#[macro_export]
macro_rules! kassert_eq {
    ($left:expr, $right:expr $(,)?) => {
        match (&$left, &$right) {
            (l, r) => {
                if !(*l == *r) {
                    let i = $crate::ktest::CASE_INDENT;
                    $crate::println!(
                        "{i}# {}:{}: assertion failed: {} == {}",
                        file!(),
                        line!(),
                        stringify!($left),
                        stringify!($right)
                    );
                    $crate::println!("{i}#   expected: {:?}", r);
                    $crate::println!("{i}#     actual: {:?}", l);
                    return Err($crate::ktest::TestError::Fail);
                }
            }
        }
    };
}

/// (suite index + 1) << 32 | case index of the running case; 0 = none.
static CURRENT: AtomicUsize = AtomicUsize::new(0);

/// The case running right now, for the panic path.
pub fn current() -> Option<(&'static str, &'static str)> {
    let c = CURRENT.load(Ordering::Relaxed);
    if c == 0 {
        return None;
    }
    let suite = suites::ALL.get((c >> 32) - 1)?;
    Some((suite.name, suite.cases.get(c & 0xffff_ffff)?.name))
}

/// Matches `text` against a glob where `*` matches any run of characters.
pub fn glob(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ti));
            pi += 1;
        } else if pi < p.len() && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

fn selected(filter: Option<&str>, suite: &Suite, case: &Case) -> bool {
    let Some(filter) = filter else { return true };
    filter.split(',').any(|pat| {
        if glob(pat, suite.name) {
            return true;
        }
        // Match "suite.case" without building a string: split the pattern.
        match pat.split_once('.') {
            Some((sp, cp)) => glob(sp, suite.name) && glob(cp, case.name),
            None => false,
        }
    })
}

fn count_selected(filter: Option<&str>, suite: &Suite) -> usize {
    suite
        .cases
        .iter()
        .filter(|c| selected(filter, suite, c))
        .count()
}

/// Runs every selected case of every suite, printing KTAP. Returns whether
/// all ran cases passed. A filter that selects nothing is an error.
pub fn run_all(params: &Params) -> bool {
    let filter = params.filter;
    let nsuites = suites::ALL
        .iter()
        .filter(|s| count_selected(filter, s) > 0)
        .count();
    if nsuites == 0 {
        log::error!("filter '{}' selects no test case", filter.unwrap_or(""));
        return false;
    }
    println!("KTAP version 1");
    println!("1..{nsuites}");
    let (mut passed, mut failed, mut skipped) = (0usize, 0usize, 0usize);
    let ctx = Ctx { params };
    let mut suite_no = 0;
    for (si, suite) in suites::ALL.iter().enumerate() {
        let n = count_selected(filter, suite);
        if n == 0 {
            continue;
        }
        suite_no += 1;
        println!("{CASE_INDENT}KTAP version 1");
        println!("{CASE_INDENT}# Subtest: {}", suite.name);
        println!("{CASE_INDENT}1..{n}");
        let mut suite_ok = true;
        let mut case_no = 0;
        for (ci, case) in suite.cases.iter().enumerate() {
            if !selected(filter, suite, case) {
                continue;
            }
            case_no += 1;
            println!("{CASE_INDENT}# running: {}.{}", suite.name, case.name);
            CURRENT.store(((si + 1) << 32) | ci, Ordering::Relaxed);
            let r = (case.run)(&ctx);
            CURRENT.store(0, Ordering::Relaxed);
            match r {
                Ok(()) => {
                    passed += 1;
                    println!("{CASE_INDENT}ok {case_no} {}", case.name);
                }
                Err(TestError::Skip(why)) => {
                    skipped += 1;
                    println!("{CASE_INDENT}ok {case_no} {} # SKIP {why}", case.name);
                }
                Err(TestError::Fail) => {
                    failed += 1;
                    suite_ok = false;
                    println!("{CASE_INDENT}not ok {case_no} {}", case.name);
                }
            }
        }
        println!(
            "{} {suite_no} {}",
            if suite_ok { "ok" } else { "not ok" },
            suite.name
        );
    }
    println!("# pcs: {passed} passed, {failed} failed, {skipped} skipped");
    println!("# pcs: end of run");
    failed == 0
}

fn glob_matches() -> TestResult {
    kassert!(glob("*", "anything"));
    kassert!(glob("boot", "boot"));
    kassert!(!glob("boot", "booty"));
    kassert!(glob("b*t", "boot"));
    kassert!(glob("*lock*", "page_lock_torture"));
    kassert!(!glob("a*b", "acd"));
    kassert!(glob("", ""));
    Ok(())
}

fn glob_case(_: &Ctx) -> TestResult {
    glob_matches()
}

pub static SUITE: Suite = Suite {
    name: "ktest",
    cases: &[Case {
        name: "glob",
        run: glob_case,
    }],
};
