//! The `ktest` suite: the framework's own selection rules (globs, and the
//! parameters reported as without effect).

use contract::{glob, params::Why};

use crate::{
    kassert, kassert_eq,
    ktest::{Case, Ctx, Suite, TestResult, params_without_effect, selected},
};

/// Which explicit parameters are reported as without effect.
fn without_effect_case(_: &Ctx) -> TestResult {
    use contract::params::Key;
    let unread = |s: &'static str| {
        let p = kernel::params::parse(s).expect("valid parameters");
        let mut keys = [None; 4];
        for (slot, n) in keys
            .iter_mut()
            .zip(params_without_effect(super::SUITES, &p))
        {
            *slot = Some((n.key, n.why));
        }
        keys
    };
    // The torture knobs are read by every pagelock.torture* case only.
    kassert_eq!(
        unread("filter=pagelock.herd_wake_walk torture_ms=500 seed=3"),
        [
            Some((Key::TortureMs, Why::NoSelectedCase)),
            None,
            None,
            None
        ]
    );
    kassert_eq!(
        unread("filter=pagelock.torture_killable torture_ms=500 torture_pages=2"),
        [None; 4]
    );
    kassert_eq!(unread("filter=pagelock torture_threads=2"), [None; 4]);
    kassert_eq!(unread("torture_threads=2 fail=0"), [None; 4]);
    kassert_eq!(
        unread("filter=mm,ktest fail=1 crash=none hz=200"),
        [
            Some((Key::Fail, Why::NoSelectedCase)),
            Some((Key::Crash, Why::NoSelectedCase)),
            None,
            None
        ]
    );
    kassert_eq!(
        unread("mode=bench torture_ms=500"),
        [
            Some((Key::TortureMs, Why::NoTestCases("bench"))),
            None,
            None,
            None
        ]
    );
    Ok(())
}

/// The contract's glob syntax, as the kernel's filter and scopes use it.
fn glob_case(_: &Ctx) -> TestResult {
    kassert!(glob::matches("*", "anything"));
    kassert!(glob::matches("boot", "boot"));
    kassert!(!glob::matches("boot", "booty"));
    kassert!(glob::matches("b*t", "boot"));
    kassert!(glob::matches("*lock*", "page_lock_torture"));
    kassert!(!glob::matches("a*b", "acd"));
    kassert!(glob::matches("", ""));
    let (suite, case) = (&SUITE, &SUITE.cases[0]);
    kassert!(selected(None, suite, case));
    kassert!(selected(Some("ktest"), suite, case));
    kassert!(selected(Some("nope,kt*.gl*"), suite, case));
    kassert!(!selected(Some("ktest.other"), suite, case));
    Ok(())
}

pub static SUITE: Suite = Suite {
    name: "ktest",
    cases: &[
        Case {
            name: "glob",
            run: glob_case,
        },
        Case {
            name: "params_without_effect",
            run: without_effect_case,
        },
    ],
    ..Suite::DEFAULTS
};
