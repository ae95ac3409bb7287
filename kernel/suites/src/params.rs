//! The `params` suite: the kernel's side of the parameter contract.

use contract::params::{Key, Kind, ParamError, Parsed, TABLE};

use crate::{
    kassert, kassert_eq,
    ktest::{Case, Ctx, Suite, TestError, TestResult},
};
use kernel::params::*;

fn accepts_valid(_: &Ctx) -> TestResult {
    let p = parse(
        "  mode=idle seed=0x10 filter=boot,params.* loglevel=debug fail=yes crash=panic pcp=off ap_skip=3 ",
    );
    kassert!(p.is_ok(), "parse failed: {:?}", p.err());
    let p = p.unwrap();
    kassert_eq!(p.mode, Mode::Idle);
    kassert_eq!(p.seed, 16);
    kassert_eq!(p.filter, Some("boot,params.*"));
    kassert_eq!(p.loglevel, log::LevelFilter::Debug);
    kassert!(p.fail);
    kassert_eq!(p.crash, Crash::Panic);
    kassert!(!p.pcp);
    kassert_eq!(p.ap_skip, Some(3));
    let p = parse("");
    kassert!(p.is_ok(), "empty string rejected: {:?}", p.err());
    let p = p.unwrap();
    kassert_eq!(p.mode, Mode::Test);
    kassert_eq!((p.seed, p.hz, p.pcp, p.fail), (1, 100, true, false));
    kassert_eq!(p.filter, None);
    kassert_eq!(p.ap_skip, None);
    kassert_eq!(p.pagelock, pagesync::Config::DEFAULT);
    kassert_eq!(p.torture, TortureParams::default());
    Ok(())
}

fn rejects_malformed(_: &Ctx) -> TestResult {
    kassert_eq!(
        parse("seed"),
        Err(ParamError::MissingEquals { word: "seed" })
    );
    kassert!(matches!(
        parse("speed=3"),
        Err(ParamError::UnknownKey {
            key: "speed",
            closest: Some(Key::Seed)
        })
    ));
    kassert_eq!(
        parse("seed=1 seed=2"),
        Err(ParamError::Duplicate { key: Key::Seed })
    );
    for (s, key) in [
        ("seed=12x", Key::Seed),
        ("seed=18446744073709551616", Key::Seed),
        ("mode=fast", Key::Mode),
        ("filter=a,,b", Key::Filter),
        ("fail=maybe", Key::Fail),
        ("hz=9", Key::Hz),
        ("hz=1001", Key::Hz),
        ("bug=nope", Key::Bug),
        ("bits=17", Key::Bits),
        ("protocol=linux-5.10", Key::Protocol),
        ("bookmark_batch=0", Key::BookmarkBatch),
        ("torture_threads=0", Key::TortureThreads),
    ] {
        let r = parse(s);
        kassert!(
            matches!(r, Err(ParamError::BadValue { key: k, .. }) if k == key),
            "{s}: {:?}",
            r
        );
    }
    Ok(())
}

/// The page-lock keys fill `pagesync::Config` field by field.
fn pagelock_config(_: &Ctx) -> TestResult {
    let p = parse(
        "bits=0 protocol=linux-5.8 unfairness=0 bookmarks=on bookmark_batch=7 killable_fix=0 gup=barrier bug=clear-after-wake torture_ms=500 torture_pages=9",
    );
    kassert!(p.is_ok(), "parse failed: {:?}", p.err());
    let p = p.unwrap();
    kassert_eq!(
        p.pagelock,
        pagesync::Config {
            table_bits: 0,
            protocol: pagesync::Protocol::Linux58,
            unfairness: 0,
            bookmarks: true,
            bookmark_batch: 7,
            killable_fix: false,
            gup: pagesync::PinScheme::Barrier,
            bug: Some(pagesync::Bug::ClearAfterWake),
        }
    );
    kassert_eq!(
        p.torture,
        TortureParams {
            threads_per_cpu: None,
            pages: Some(9),
            ms: Some(500),
        }
    );
    kassert_eq!(contract::params::bug("none"), None);
    for b in pagesync::Bug::ALL {
        let text = alloc::format!("bug={}", b.name());
        let p = contract::params::parse(&text);
        kassert!(
            matches!(p, Ok(ref p) if contract::params::bug(p.choice(Key::Bug)) == Some(b)),
            "{text}: {:?}",
            p
        );
    }
    Ok(())
}

fn choices(key: Key) -> &'static [&'static str] {
    match key.spec().kind {
        Kind::Choice(c) => c,
        _ => &[],
    }
}

/// Every choice the contract offers reaches the kernel as its own value:
/// the lists are the owning types' (`bug=` is `none` plus the names of
/// `pagesync::Bug::ALL`; `mode=`, `crash=`, `loglevel=`, `blk_persist=`
/// are `contract::params`' enums), and each parses to that value.
fn choices_match_the_kernel(_: &Ctx) -> TestResult {
    let bugs = choices(Key::Bug);
    kassert_eq!(bugs.len(), 1 + pagesync::Bug::ALL.len());
    kassert_eq!(bugs[0], "none");
    for (i, b) in pagesync::Bug::ALL.iter().enumerate() {
        kassert_eq!(bugs[i + 1], b.name());
    }
    let schemes = choices(Key::Gup);
    kassert_eq!(schemes.len(), pagesync::PinScheme::ALL.len());
    for (c, g) in schemes.iter().zip(pagesync::PinScheme::ALL) {
        kassert_eq!(*c, g.name());
    }
    let modes = choices(Key::Mode);
    kassert_eq!(modes.len(), Mode::ALL.len());
    for (c, m) in modes.iter().zip(Mode::ALL) {
        kassert_eq!(*c, m.name());
    }
    let crashes = choices(Key::Crash);
    kassert_eq!(crashes.len(), Crash::ALL.len());
    for (c, k) in crashes.iter().zip(Crash::ALL) {
        kassert_eq!(*c, k.name());
    }
    let persist = choices(Key::BlkPersist);
    kassert_eq!(persist.len(), Persist::ALL.len());
    for (c, k) in persist.iter().zip(Persist::ALL) {
        kassert_eq!(*c, k.name());
    }
    let levels = choices(Key::Loglevel);
    kassert_eq!(levels.len(), LogLevel::ALL.len());
    for (c, l) in levels.iter().zip(LogLevel::ALL) {
        kassert_eq!(*c, l.name());
        let p = parse(alloc::format!("loglevel={c}").leak()).map_err(|_| TestError::Fail)?;
        kassert_eq!(p.loglevel, level_filter(l));
    }
    // The protocol's own limits.
    kassert_eq!(
        Key::Bits.spec().kind,
        Kind::UInt {
            min: 0,
            max: pagesync::wait_table::MAX_TABLE_BITS as u64
        }
    );
    kassert_eq!(
        Parsed::EMPTY.uint(Key::BookmarkBatch),
        Some(pagesync::variant::DEFAULT_BOOKMARK_BATCH as u64)
    );
    kassert_eq!(
        Params::from_parsed(Parsed::EMPTY).pagelock,
        pagesync::Config::DEFAULT
    );
    kassert_eq!(TABLE.len(), Key::COUNT);
    Ok(())
}

pub static SUITE: Suite = Suite {
    name: "params",
    cases: &[
        Case {
            name: "accepts_valid",
            run: accepts_valid,
        },
        Case {
            name: "rejects_malformed",
            run: rejects_malformed,
        },
        Case {
            name: "pagelock_config",
            run: pagelock_config,
        },
        Case {
            name: "choices_match_the_kernel",
            run: choices_match_the_kernel,
        },
    ],
    ..Suite::DEFAULTS
};
