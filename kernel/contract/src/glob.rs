//! The glob syntax of `filter=` and of a parameter's scope.
//!
//! A glob is matched against a whole name; `*` matches any run of
//! characters (including none), every other character itself. A test case
//! is named `suite.case`; a glob *selects* a case when it matches the
//! suite's name (the whole suite) or, split at its first `.`, matches the
//! suite with the part before and the case with the part after. A list is
//! comma-separated and selects what any of its globs selects.

/// Whether `pattern` matches all of `text`.
pub fn matches(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let (mut pi, mut ti) = (0, 0);
    // Where the last `*` was, and the text position it is retried from.
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

/// Whether one glob selects case `case` of suite `suite`.
pub fn selects(pattern: &str, suite: &str, case: &str) -> bool {
    if matches(pattern, suite) {
        return true;
    }
    match pattern.split_once('.') {
        Some((sp, cp)) => matches(sp, suite) && matches(cp, case),
        None => false,
    }
}

/// Whether a comma-separated list of globs selects `suite.case`.
pub fn list_selects(list: &str, suite: &str, case: &str) -> bool {
    list.split(',').any(|p| selects(p, suite, case))
}

/// Whether a comma-separated list of globs matches `name` (a benchmark).
pub fn list_matches(list: &str, name: &str) -> bool {
    list.split(',').any(|p| matches(p, name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(matches("*", "anything"));
        assert!(matches("boot", "boot"));
        assert!(!matches("boot", "booty"));
        assert!(matches("b*t", "boot"));
        assert!(matches("*lock*", "page_lock_torture"));
        assert!(!matches("a*b", "acd"));
        assert!(matches("", ""));
        assert!(!matches("", "x"));
    }

    #[test]
    fn selection() {
        assert!(selects("pagelock", "pagelock", "torture"));
        assert!(selects("pagelock.torture*", "pagelock", "torture_killable"));
        assert!(selects("pagelock.torture*", "pagelock", "torture"));
        assert!(!selects("pagelock.torture*", "pagelock", "herd_wake_walk"));
        assert!(!selects("pagelock.torture", "pagelock", "torture_fifo"));
        assert!(selects("*params*", "params", "accepts_valid"));
        assert!(list_selects(
            "mm,boot.deliberate_*",
            "boot",
            "deliberate_crash"
        ));
        assert!(!list_selects(
            "mm,boot.deliberate_*",
            "boot",
            "descriptor_tables"
        ));
        assert!(list_matches("ipi*,mm_*", "mm_frame_alloc"));
    }
}
