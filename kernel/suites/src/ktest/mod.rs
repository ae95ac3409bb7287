//! The in-kernel test framework, reporting in KTAP version 1 (the format of
//! Linux's `Documentation/dev-tools/ktap.rst`) on the serial console.
//!
//! Each test module (in `crate`) declares one `pub static SUITE:
//! Suite` listing its cases; `crate::SUITES` is the one registry,
//! handed to [`run_all`], so this framework imports no subsystem. A case is a plain
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

use core::sync::atomic::{AtomicUsize, Ordering};

use contract::{
    glob,
    marker::{END_OF_RUN, EXPECT_LOG, KTAP_VERSION, PCS, RUNNING},
    params::{NoEffect, Why},
};

use kernel::{
    params::{Mode, Params},
    println,
};

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
    /// Every case is followed by the accounting check ([`Accounting`]):
    /// frames back, nothing left locked, under writeback, pinned or
    /// queued. A mismatch fails the case.
    pub accounted: bool,
    /// The `[ERROR`/`[WARN` console lines a case expects, by case name: a
    /// line of those levels logged while a case runs fails it unless it
    /// contains one of these texts (the watchdog's own tests, deliberate
    /// crashes, the stable-page checker's, known-bad variants caught).
    pub expect_log: &'static [(&'static str, &'static [&'static str])],
}

impl Suite {
    /// The defaults of the optional fields: `..Suite::DEFAULTS`.
    pub const DEFAULTS: Suite = Suite {
        name: "",
        cases: &[],
        accounted: false,
        expect_log: &[],
    };

    /// What `case` declared it expects in the log.
    pub fn expects(&self, case: &str) -> &'static [&'static str] {
        self.expect_log
            .iter()
            .find(|(c, _)| *c == case)
            .map_or(&[], |(_, e)| e)
    }
}

/// What runs around every case: the accounting check of an accounted
/// suite ([`Suite::accounted`]), and for any case that failed, the check
/// that it left nothing running that could wedge the next one. It lives
/// with the tests (it looks at the allocator, the frame array, the page
/// wait table and the threads), and is handed to [`run_all`], so this
/// framework stays free of subsystems.
pub trait Accounting {
    /// The state before a case.
    type Snapshot;
    /// Takes the snapshot (between cases: nothing else runs); `full`: the
    /// case's suite is accounted.
    fn take(full: bool) -> Self::Snapshot;
    /// After a case of an accounted suite that passed: fails it, with a
    /// diagnostic naming what was left behind, unless everything is as in
    /// `before`.
    fn check(before: &Self::Snapshot, case: &str) -> TestResult;
    /// After a case that failed: stops what it started (threads it spawned
    /// are asked to give up their waits and given a moment to exit) and
    /// returns what it left behind that the next cases would trip over
    /// (threads still running, pages still locked or under writeback,
    /// waiters still queued), if anything. The run then stops.
    fn after_failure(before: &Self::Snapshot, case: &str) -> Result<(), alloc::string::String>;
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
            ::kernel::println!("{}# {}:{}: assertion failed: {}", $crate::ktest::CASE_INDENT, file!(), line!(), format_args!($($msg)+));
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
                    ::kernel::println!(
                        "{i}# {}:{}: assertion failed: {} == {}",
                        file!(),
                        line!(),
                        stringify!($left),
                        stringify!($right)
                    );
                    ::kernel::println!("{i}#   expected: {:?}", r);
                    ::kernel::println!("{i}#     actual: {:?}", l);
                    return Err($crate::ktest::TestError::Fail);
                }
            }
        }
    };
}

/// (suite index + 1) << 32 | case index of the running case; 0 = none.
static CURRENT: AtomicUsize = AtomicUsize::new(0);

/// The suites of this run, registered by [`run_all`] (the registry itself
/// lives with the tests, in `crate`, so this framework imports none
/// of them).
static SUITES: spin::Once<&'static [&'static Suite]> = spin::Once::new();

fn suites() -> &'static [&'static Suite] {
    SUITES.get().copied().unwrap_or(&[])
}

/// `[ERROR`/`[WARN` lines logged during the running case that it did not
/// declare ([`Suite::expect_log`]), and the first one's text.
static UNEXPECTED: AtomicUsize = AtomicUsize::new(0);
static FIRST_UNEXPECTED: kernel::sync::IrqMutex<([u8; 160], usize)> =
    kernel::sync::IrqMutex::new(([0; 160], 0));

/// Sees every `[ERROR`/`[WARN` line the logger prints (registered with
/// `kernel::console::set_observer`): one a running case did not declare
/// is counted against it. May run in interrupt context: it only reads
/// statics and never waits for a lock.
pub fn observe_log(_level: log::Level, text: &str) {
    let Some((suite, case)) = current_entry() else {
        // Between cases or outside the test run: the host judges it.
        return;
    };
    if suite.expects(case.name).iter().any(|e| text.contains(e)) {
        return;
    }
    if UNEXPECTED.fetch_add(1, Ordering::Relaxed) == 0
        && let Some(mut first) = FIRST_UNEXPECTED.try_lock()
    {
        let n = text.len().min(first.0.len());
        first.0[..n].copy_from_slice(&text.as_bytes()[..n]);
        first.1 = n;
    }
}

/// The running case's suite and case.
fn current_entry() -> Option<(&'static Suite, &'static Case)> {
    let c = CURRENT.load(Ordering::Relaxed);
    if c == 0 {
        return None;
    }
    let suite = suites().get((c >> 32) - 1)?;
    Some((suite, suite.cases.get(c & 0xffff_ffff)?))
}

/// The case running right now, for the panic path.
pub fn current() -> Option<(&'static str, &'static str)> {
    current_entry().map(|(s, c)| (s.name, c.name))
}

pub fn selected(filter: Option<&str>, suite: &Suite, case: &Case) -> bool {
    filter.is_none_or(|f| glob::list_selects(f, suite.name, case.name))
}

fn count_selected(filter: Option<&str>, suite: &Suite) -> usize {
    suite
        .cases
        .iter()
        .filter(|c| selected(filter, suite, c))
        .count()
}

/// Runs every selected case of `all` (the suites, in run order), printing
/// KTAP; the cases of an accounted suite each between two `A` snapshots.
/// Returns whether all ran cases passed. A filter that selects nothing is
/// an error.
pub fn run_all<A: Accounting>(all: &'static [&'static Suite], params: &Params) -> bool {
    let all = *SUITES.call_once(|| all);
    let filter = params.filter;
    let nsuites = all.iter().filter(|s| count_selected(filter, s) > 0).count();
    if nsuites == 0 {
        log::error!("filter '{}' selects no test case", filter.unwrap_or(""));
        return false;
    }
    println!("{KTAP_VERSION}");
    println!("1..{nsuites}");
    let (mut passed, mut failed, mut skipped) = (0usize, 0usize, 0usize);
    let mut stopped: Option<alloc::string::String> = None;
    let ctx = Ctx { params };
    let mut suite_no = 0;
    for (si, suite) in all.iter().enumerate() {
        let n = count_selected(filter, suite);
        if n == 0 {
            continue;
        }
        suite_no += 1;
        println!("{CASE_INDENT}{KTAP_VERSION}");
        println!("{CASE_INDENT}# Subtest: {}", suite.name);
        println!("{CASE_INDENT}1..{n}");
        let mut suite_ok = true;
        let mut case_no = 0;
        for (ci, case) in suite.cases.iter().enumerate() {
            if !selected(filter, suite, case) {
                continue;
            }
            case_no += 1;
            if let Some(why) = &stopped {
                skipped += 1;
                println!("{CASE_INDENT}ok {case_no} {} # SKIP {why}", case.name);
                continue;
            }
            let (r, left) = run_case::<A>(si, suite, ci, case, &ctx);
            if let Err(left) = left {
                println!(
                    "{CASE_INDENT}{PCS}{}.{} failed and left behind: {left}; the cases after it are skipped (they would run on a kernel in an unknown state)",
                    suite.name, case.name
                );
                stopped = Some(alloc::format!(
                    "the run stopped after {}.{} failed and left state behind",
                    suite.name,
                    case.name
                ));
            }
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
    crate::report_lock_order();
    println!("{PCS}{passed} passed, {failed} failed, {skipped} skipped");
    println!("{END_OF_RUN}");
    failed == 0
}

/// One case: its `RUNNING` line and declared log lines, the case, the log
/// check, and the accounting check of an accounted suite. A case that
/// failed is not checked further (what it left behind may be why).
/// Returns the case's result, and for a failed case whether it left
/// state behind that stops the run ([`Accounting::after_failure`]).
fn run_case<A: Accounting>(
    si: usize,
    suite: &'static Suite,
    ci: usize,
    case: &'static Case,
    ctx: &Ctx,
) -> (TestResult, Result<(), alloc::string::String>) {
    println!("{CASE_INDENT}{RUNNING}{}.{}", suite.name, case.name);
    for e in suite.expects(case.name) {
        println!("{CASE_INDENT}{EXPECT_LOG}{e}");
    }
    let before = A::take(suite.accounted);
    let name = alloc::format!("{}.{}", suite.name, case.name);
    UNEXPECTED.store(0, Ordering::Relaxed);
    CURRENT.store(((si + 1) << 32) | ci, Ordering::Relaxed);
    let r = (case.run)(ctx);
    CURRENT.store(0, Ordering::Relaxed);
    let r = r.and_then(|()| checks_after::<A>(suite, &before, &name));
    let left = match r {
        Err(TestError::Fail) => A::after_failure(&before, &name),
        _ => Ok(()),
    };
    (r, left)
}

/// The log and accounting checks of a case that passed.
fn checks_after<A: Accounting>(suite: &Suite, before: &A::Snapshot, name: &str) -> TestResult {
    let unexpected = UNEXPECTED.swap(0, Ordering::Relaxed);
    if unexpected > 0 {
        let first = FIRST_UNEXPECTED.lock();
        println!(
            "{CASE_INDENT}# {unexpected} [ERROR/[WARN line(s) the case does not expect; the first: {}",
            core::str::from_utf8(&first.0[..first.1]).unwrap_or("?")
        );
        return Err(TestError::Fail);
    }
    if suite.accounted {
        A::check(before, name)?;
    }
    Ok(())
}

/// The parameters given explicitly that no test case of this run reads:
/// their table entry has a scope, and the filter selected no case in it, or
/// the mode runs no test cases at all.
pub fn params_without_effect<'a>(
    all: &'static [&'static Suite],
    params: &'a Params,
) -> impl Iterator<Item = NoEffect<'static>> + use<'a> {
    let testing = params.mode == Mode::Test;
    let why = if testing {
        Why::NoSelectedCase
    } else {
        Why::NoTestCases(params.mode.name())
    };
    let reads = move |scope_glob: &str| {
        testing
            && all.iter().any(|s| {
                s.cases.iter().any(|c| {
                    selected(params.filter, s, c) && glob::selects(scope_glob, s.name, c.name)
                })
            })
    };
    params
        .given
        .without_effect(reads)
        .map(move |(key, value)| NoEffect { key, value, why })
}

/// Prints a note for each of [`params_without_effect`], so that a parameter
/// is never silently without effect. Call before the run starts.
pub fn note_params_without_effect(all: &'static [&'static Suite], params: &Params) {
    for note in params_without_effect(all, params) {
        println!("{note}");
    }
}
