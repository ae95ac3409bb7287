//! The table and parser against their promises.

use super::{suggest::edit_distance, table::TORTURE_SCOPE, *};
use crate::PARAMS_MAX_LEN;
use std::{format, string::ToString, vec::Vec};

#[test]
fn table_is_well_formed() {
    for (i, s) in TABLE.iter().enumerate() {
        assert_eq!(s.key as usize, i);
        assert_eq!(Key::from_name(s.key.name()), Some(s.key));
        assert!(
            !s.help.is_empty() && !s.help.contains(['|', '\n']),
            "{}",
            s.key.name()
        );
        assert!(
            s.key
                .name()
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b == b'_')
        );
        if let Kind::UInt { min, max } = s.kind {
            assert!(min <= max, "{}", s.key.name());
        }
        if let Kind::Choice(names) = s.kind {
            assert!(!names.is_empty());
            for n in names {
                assert!(!n.contains(['|', ',', '=', ' ']), "{n}");
            }
        }
    }
}

#[test]
fn every_default_parses_under_its_own_kind_and_prints_back() {
    for s in &TABLE {
        match s.default {
            DefaultValue::Is(v) => {
                let d = v.to_string();
                assert_eq!(
                    s.kind.parse(&d),
                    Some(v),
                    "{}={d}: the default is not a value of the key's kind",
                    s.key.name()
                );
                // It also parses as a given parameter.
                let text = format!("{}={d}", s.key.name());
                let p = parse(&text).unwrap();
                assert_eq!(p.get(s.key), Some(v));
                assert_eq!(Parsed::EMPTY.get(s.key), Some(v));
            }
            DefaultValue::Unset(what) => {
                assert!(!what.is_empty());
                assert_eq!(Parsed::EMPTY.get(s.key), None);
            }
        }
    }
}

#[test]
fn the_kernels_keys_and_ranges() {
    // Carried over from the kernel's former table; ranges are the ones
    // pagesync enforces (MAX_TABLE_BITS = 16, DEFAULT_BOOKMARK_BATCH = 64).
    let names: Vec<&str> = TABLE.iter().map(|s| s.key.name()).collect();
    assert_eq!(
        names,
        [
            "mode",
            "filter",
            "seed",
            "loglevel",
            "fail",
            "crash",
            "hz",
            "pcp",
            "ap_skip",
            "bits",
            "protocol",
            "unfairness",
            "bookmarks",
            "bookmark_batch",
            "killable_fix",
            "gup",
            "bug",
            "jitter",
            "jitter_rate",
            "torture_threads",
            "torture_pages",
            "torture_ms",
            "gup_rounds",
            "litmus_trials",
            "ramdisk",
            "blk_persist",
            "readahead",
            "lockup_ms",
            "walk_waiters",
            "bench_rounds"
        ]
    );
    let range = |k: Key| match k.spec().kind {
        Kind::UInt { min, max } => (min, max),
        other => panic!("{other:?}"),
    };
    assert_eq!(range(Key::Bits), (0, 16));
    assert_eq!(range(Key::Hz), (10, 1000));
    assert_eq!(range(Key::Unfairness), (0, u32::MAX as u64));
    assert_eq!(range(Key::BookmarkBatch), (1, 1_000_000));
    assert_eq!(range(Key::TortureMs), (100, 600_000));
    let p = Parsed::EMPTY;
    assert_eq!(p.uint(Key::Bits), Some(8));
    assert_eq!(p.uint(Key::Unfairness), Some(5));
    assert_eq!(p.uint(Key::BookmarkBatch), Some(64));
    assert!(p.flag(Key::KillableFix) && !p.flag(Key::Bookmarks));
    assert_eq!(p.choice(Key::Protocol), "linux-5.9");
    assert_eq!(p.choice(Key::Bug), "none");
    assert_eq!(p.choice(Key::Mode), "test");
    assert_eq!(p.uint(Key::TortureMs), None);
    for k in [Key::TortureThreads, Key::TorturePages, Key::TortureMs] {
        assert_eq!(k.spec().scope, Some(TORTURE_SCOPE));
    }
}

#[test]
fn parses_valid_strings() {
    let p =
        parse("  mode=idle seed=0x10 filter=boot,params.* loglevel=debug\tfail=yes crash=panic\n")
            .unwrap();
    assert_eq!(p.choice(Key::Mode), "idle");
    assert_eq!(p.uint(Key::Seed), Some(16));
    assert_eq!(p.globs(Key::Filter), Some("boot,params.*"));
    assert_eq!(p.choice(Key::Loglevel), "debug");
    assert!(p.flag(Key::Fail));
    assert_eq!(p.raw(Key::Fail), Some("yes"));
    assert_eq!(p.given(Key::Hz), None);
    assert_eq!(p.uint(Key::Hz), Some(100));
    let keys: Vec<Key> = p.explicit().map(|(k, _)| k).collect();
    assert_eq!(
        keys,
        [
            Key::Mode,
            Key::Filter,
            Key::Seed,
            Key::Loglevel,
            Key::Fail,
            Key::Crash
        ]
    );
    assert_eq!(parse(""), Ok(Parsed::EMPTY));
    assert_eq!(parse("   \n "), Ok(Parsed::EMPTY));
    let p =
        parse("seed=18446744073709551615 hz=10 bits=16 unfairness=4294967295 bug=clear-after-wake")
            .unwrap();
    assert_eq!(p.uint(Key::Seed), Some(u64::MAX));
    assert_eq!(p.uint(Key::Unfairness), Some(u32::MAX as u64));
    assert_eq!(p.choice(Key::Bug), "clear-after-wake");
}

#[test]
fn one_boolean_syntax_for_every_boolean_key() {
    let bools: Vec<Key> = Key::ALL
        .into_iter()
        .filter(|k| k.spec().kind == Kind::Bool)
        .collect();
    assert!(bools.len() >= 5, "{bools:?}");
    for k in bools {
        for (words, want) in [(BOOL_TRUE, true), (BOOL_FALSE, false)] {
            for w in words {
                let text = format!("{k}={w}");
                let p = parse(&text).unwrap();
                assert_eq!(p.flag(k), want, "{text}");
                assert_eq!(
                    p.get(k).unwrap().to_string(),
                    if want { "on" } else { "off" }
                );
            }
        }
        for w in ["2", "On", "maybe", "", "y"] {
            let text = format!("{k}={w}");
            assert_eq!(
                parse(&text),
                Err(ParamError::BadValue { key: k, value: w }),
                "{text}"
            );
        }
    }
}

#[test]
fn integers() {
    fn hz(v: &str) -> Option<Value<'_>> {
        Kind::UInt { min: 10, max: 1000 }.parse(v)
    }
    assert_eq!(hz("10"), Some(Value::UInt(10)));
    assert_eq!(hz("1000"), Some(Value::UInt(1000)));
    assert_eq!(hz("0x3e8"), Some(Value::UInt(1000)));
    for bad in [
        "9", "1001", "", "+100", "-1", " 100", "1e2", "0x", "0xg", "100hz",
    ] {
        assert_eq!(hz(bad), None, "{bad}");
    }
    let any = Kind::UInt {
        min: 0,
        max: u64::MAX,
    };
    assert_eq!(any.parse("18446744073709551616"), None);
    assert_eq!(any.parse("0xffffffffffffffff"), Some(Value::UInt(u64::MAX)));
}

#[test]
fn each_error_kind() {
    assert_eq!(
        parse("seed"),
        Err(ParamError::MissingEquals { word: "seed" })
    );
    assert_eq!(
        ParamError::MissingEquals { word: "seed" }.key(),
        Some(Key::Seed)
    );
    assert_eq!(
        parse("fial=1"),
        Err(ParamError::UnknownKey {
            key: "fial",
            closest: Some(Key::Fail)
        })
    );
    assert_eq!(
        parse("bogus=1"),
        Err(ParamError::UnknownKey {
            key: "bogus",
            closest: None
        })
    );
    assert_eq!(
        parse("fail=1 fail=0"),
        Err(ParamError::Duplicate { key: Key::Fail })
    );
    assert_eq!(
        parse("hz=5"),
        Err(ParamError::BadValue {
            key: Key::Hz,
            value: "5"
        })
    );
    assert_eq!(
        parse("mode=fast"),
        Err(ParamError::BadValue {
            key: Key::Mode,
            value: "fast"
        })
    );
    assert_eq!(
        parse("filter=a,,b"),
        Err(ParamError::BadValue {
            key: Key::Filter,
            value: "a,,b"
        })
    );
    assert_eq!(
        parse("filter="),
        Err(ParamError::BadValue {
            key: Key::Filter,
            value: ""
        })
    );
    assert_eq!(
        parse("bug=nope"),
        Err(ParamError::BadValue {
            key: Key::Bug,
            value: "nope"
        })
    );
    assert_eq!(
        parse("bits=17"),
        Err(ParamError::BadValue {
            key: Key::Bits,
            value: "17"
        })
    );
    assert_eq!(
        parse("bookmark_batch=0"),
        Err(ParamError::BadValue {
            key: Key::BookmarkBatch,
            value: "0"
        })
    );
    // The first error wins.
    assert_eq!(
        parse("hz=1 nope=2"),
        Err(ParamError::BadValue {
            key: Key::Hz,
            value: "1"
        })
    );
    let long = "seed=1 ".repeat(PARAMS_MAX_LEN / 7 + 1);
    assert_eq!(parse(&long), Err(ParamError::TooLong { len: long.len() }));
    assert_eq!(parse_bytes(b"seed=\xff"), Err(ParamError::NotUtf8));
    assert_eq!(parse_bytes(b"seed=2").unwrap().uint(Key::Seed), Some(2));
}

#[test]
fn messages_name_the_key_and_what_it_takes() {
    let msg = |s: &str| parse(s).unwrap_err().to_string();
    assert_eq!(
        msg("seed=banana"),
        "bad value 'banana' for 'seed': expected a 64-bit unsigned integer (decimal or 0x hex)"
    );
    assert_eq!(
        msg("hz=5"),
        "bad value '5' for 'hz': expected an integer in 10..=1000 (decimal or 0x hex)"
    );
    assert_eq!(
        msg("pcp=maybe"),
        "bad value 'maybe' for 'pcp': expected on or off (also accepted: 1/0 true/false yes/no)"
    );
    assert_eq!(
        msg("mode=x"),
        "bad value 'x' for 'mode': expected one of test, bench, idle"
    );
    assert_eq!(
        msg("fial=1"),
        "unknown parameter 'fial'; did you mean 'fail'?"
    );
    assert_eq!(msg("bogus=1"), "unknown parameter 'bogus'");
    assert_eq!(msg("loglevel"), "'loglevel' is not of the form key=value");
    assert_eq!(msg("fail=1 fail=0"), "parameter 'fail' given twice");
    let help = Key::Hz.help().to_string();
    assert_eq!(
        help,
        "hz=10..=1000 (default 100): local APIC timer tick rate on every CPU, in Hz"
    );
    assert!(
        Key::TortureMs
            .help()
            .to_string()
            .ends_with("[read only by pagelock.torture*, pagecache.torture*, gup.torture_dma]")
    );
    assert!(
        Key::ApSkip
            .help()
            .to_string()
            .contains("(default: start every CPU)")
    );
}

#[test]
fn closest_keys() {
    assert_eq!(Key::closest("fial"), Some(Key::Fail));
    assert_eq!(Key::closest("HZ"), Some(Key::Hz));
    assert_eq!(Key::closest("bookmark"), Some(Key::Bookmarks));
    assert_eq!(Key::closest("torture_m"), Some(Key::TortureMs));
    assert_eq!(Key::closest("sead"), Some(Key::Seed));
    assert_eq!(Key::closest("table_bits"), None);
    assert_eq!(Key::closest("x"), None);
    assert_eq!(Key::closest(&"y".repeat(100)), None);
    assert_eq!(edit_distance(b"fial", b"fail"), Some(1));
    assert_eq!(edit_distance(b"", b"abc"), Some(3));
    assert_eq!(edit_distance(b"kitten", b"sitting"), Some(3));
}

#[test]
fn parameters_without_effect() {
    let p = parse("torture_ms=120000 seed=3 fail=1 crash=panic").unwrap();
    // Only pagelock.torture_killable selected: every scoped key unread.
    let reads = |g: &str| crate::glob::selects(g, "pagelock", "torture_killable");
    let unread: Vec<(Key, &str)> = p.without_effect(reads).collect();
    assert_eq!(unread, [(Key::Fail, "1"), (Key::Crash, "panic")]);
    let none: Vec<(Key, &str)> = p.without_effect(|_| false).collect();
    assert_eq!(none.len(), 3);
    let all: Vec<(Key, &str)> = p.without_effect(|_| true).collect();
    assert!(all.is_empty());
    let note = NoEffect {
        key: Key::TortureMs,
        value: "120000",
        why: Why::NoSelectedCase,
    };
    assert_eq!(
        note.to_string(),
        "# pcs: note: parameter torture_ms=120000 has no effect: it is read only by pagelock.torture*, pagecache.torture*, gup.torture_dma, and no selected case matches"
    );
    let note = NoEffect {
        why: Why::NoTestCases("bench"),
        ..note
    };
    assert!(
        note.to_string()
            .ends_with(", and mode=bench runs no test cases")
    );
}

#[test]
fn effective_lists_values_in_use() {
    let p = parse("pcp=0 torture_ms=500").unwrap();
    let e = p.effective().to_string();
    assert!(
        e.starts_with("mode=test seed=1 loglevel=info fail=off crash=none hz=100 pcp=off "),
        "{e}"
    );
    assert!(
        e.ends_with(
            "bug=none jitter=on jitter_rate=4 torture_ms=500 gup_rounds=5000 litmus_trials=1000000 ramdisk=16 blk_persist=off readahead=on lockup_ms=5000 walk_waiters=1000 bench_rounds=5"
        ),
        "{e}"
    );
    assert!(!e.contains("filter") && !e.contains("ap_skip"), "{e}");
}

#[test]
fn tables() {
    let text = TextTable.to_string();
    assert_eq!(text.lines().count(), Key::COUNT);
    for k in Key::ALL {
        assert!(text.contains(k.spec().help));
    }
    let md = MarkdownTable.to_string();
    let lines: Vec<&str> = md.lines().collect();
    assert_eq!(lines.len(), Key::COUNT + 2);
    assert!(lines.contains(&"| `pcp` | `on\\|off` | `on` | per-CPU caches of free single frames in the frame allocator |"));
    assert!(lines.contains(&"| `torture_ms` | `100..=600000` | unset: each case's own | length of a torture run, in milliseconds; read only by `pagelock.torture*`, `pagecache.torture*`, `gup.torture_dma` |"));
    for l in &lines[2..] {
        // Four columns: five unescaped pipes.
        assert_eq!(l.replace("\\|", "").matches('|').count(), 5, "{l}");
    }
}
