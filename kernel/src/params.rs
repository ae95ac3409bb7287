//! Run-time parameters: the `key=value ...` string the host hands to the
//! kernel through QEMU's fw_cfg file [`contract::FW_CFG_NAME`].
//!
//! Mental model: the keys, their types, ranges, defaults and help are the
//! host-kernel contract's table (`kernel/contract/src/params.rs`), and the
//! string is parsed by the contract's one parser, exactly as the host checks
//! it before booting. This module only reads the fw_cfg file and turns the
//! parsed values into [`Params`], the typed view the rest of the kernel
//! uses. A bad string is reported by `kernel_main` with the contract's error
//! and the offending key's help, and the run ends with
//! `ExitCode::BadParams`: a parameter is never silently ignored. A valid key
//! that no selected test case reads is reported as a note
//! (the suites' `ktest::note_params_without_effect`).

use core::cell::UnsafeCell;

use contract::{
    PARAMS_MAX_LEN,
    params::{Key, ParamError, Parsed},
};

use crate::arch::fw_cfg;

pub use contract::params::{Crash, LogLevel, Mode, Persist};

/// The logger's filter for a `loglevel=` choice.
pub fn level_filter(l: LogLevel) -> log::LevelFilter {
    match l {
        LogLevel::Off => log::LevelFilter::Off,
        LogLevel::Error => log::LevelFilter::Error,
        LogLevel::Warn => log::LevelFilter::Warn,
        LogLevel::Info => log::LevelFilter::Info,
        LogLevel::Debug => log::LevelFilter::Debug,
        LogLevel::Trace => log::LevelFilter::Trace,
    }
}

/// The parameters of this boot, typed. Built from the contract's parse
/// ([`Params::from_parsed`]), which it keeps in [`Params::given`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Params {
    pub mode: Mode,
    /// Comma-separated glob patterns over `suite` or `suite.case`.
    pub filter: Option<&'static str>,
    pub seed: u64,
    pub loglevel: log::LevelFilter,
    /// Enables the deliberately failing test case `boot.deliberate_failure`.
    pub fail: bool,
    pub crash: Crash,
    /// Local APIC timer tick rate on every CPU.
    pub hz: u64,
    /// Fault injection: never send INIT/SIPI to the CPU with this APIC id,
    /// to show that a CPU that does not come up is reported.
    pub ap_skip: Option<u32>,
    /// Per-CPU caches of free single frames in the frame allocator.
    pub pcp: bool,
    /// The page-lock protocol: `bits=`, `protocol=`, `unfairness=`,
    /// `bookmarks=`, `bookmark_batch=`, `killable_fix=`, `bug=`.
    pub pagelock: pagesync::Config,
    /// `gup_rounds=`: pin/writeback race rounds per pair of CPUs.
    pub gup_rounds: u64,
    /// `litmus_trials=`: trials of each litmus test.
    pub litmus_trials: u64,

    /// `jitter=`, `jitter_rate=`: random delays at pagesync's race points
    /// (`crate::sched::jitter`).
    pub jitter: JitterParams,
    /// Page-lock torture knobs (`None` = the test's own default).
    pub torture: TortureParams,
    /// `ramdisk=`: MiB of RAM-backed block device (0 = none).
    pub ramdisk_mb: u64,
    /// `blk_persist=`: what `block.persist` does with the virtio disk.
    pub blk_persist: Persist,
    /// `readahead=`: the page cache reads ahead.
    pub readahead: bool,
    /// `lockup_ms=`: the watchdog's soft- and hard-lockup threshold.
    pub lockup_ms: u64,
    /// `walk_waiters=`: the herd of `pagelock.walk_lockup`.
    pub walk_waiters: u64,
    /// `bench_rounds=`: rounds per benchmark in `mode=bench`.
    pub bench_rounds: u32,
    /// The parsed string: which keys were given, as written.
    pub given: Parsed<'static>,
}

/// `jitter=` and `jitter_rate=`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JitterParams {
    pub on: bool,
    /// One delay in this many race points.
    pub rate: u32,
}

/// `torture_threads=` (per CPU), `torture_pages=`, `torture_ms=`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TortureParams {
    pub threads_per_cpu: Option<u32>,
    pub pages: Option<u32>,
    pub ms: Option<u64>,
}

/// A choice key's value, by the name the parser accepted (the parser
/// takes its list from the same type, so it is always there).
fn chosen<T>(p: &Parsed, key: Key, from_name: fn(&str) -> Option<T>) -> T {
    from_name(p.choice(key)).expect("the table's choices are the type's own names")
}

/// An integer key whose range (in the contract's table) fits a `u32`.
fn u32_of(p: &Parsed, key: Key) -> Option<u32> {
    p.uint(key)
        .map(|v| u32::try_from(v).expect("the table's range fits u32"))
}

impl Params {
    /// The typed view of a parse. Every key with a default has a value;
    /// the others are `None` when not given.
    pub fn from_parsed(p: Parsed<'static>) -> Params {
        let with_default = |k: Key| p.uint(k).expect("key has a default");
        Params {
            mode: chosen(&p, Key::Mode, Mode::from_name),
            filter: p.globs(Key::Filter),
            seed: with_default(Key::Seed),
            loglevel: level_filter(chosen(&p, Key::Loglevel, LogLevel::from_name)),
            fail: p.flag(Key::Fail),
            crash: chosen(&p, Key::Crash, Crash::from_name),
            hz: with_default(Key::Hz),
            ap_skip: u32_of(&p, Key::ApSkip),
            pcp: p.flag(Key::Pcp),
            pagelock: pagesync::Config {
                table_bits: u32_of(&p, Key::Bits).expect("key has a default"),
                protocol: chosen(&p, Key::Protocol, contract::params::protocol),
                unfairness: u32_of(&p, Key::Unfairness).expect("key has a default"),
                bookmarks: p.flag(Key::Bookmarks),
                bookmark_batch: u32_of(&p, Key::BookmarkBatch).expect("key has a default"),
                killable_fix: p.flag(Key::KillableFix),
                gup: chosen(&p, Key::Gup, contract::params::pin_scheme),
                bug: contract::params::bug(p.choice(Key::Bug)),
            },
            gup_rounds: p.uint(Key::GupRounds).expect("key has a default"),
            litmus_trials: p.uint(Key::LitmusTrials).expect("key has a default"),

            jitter: JitterParams {
                on: p.flag(Key::Jitter),
                rate: u32_of(&p, Key::JitterRate).expect("key has a default"),
            },
            torture: TortureParams {
                threads_per_cpu: u32_of(&p, Key::TortureThreads),
                pages: u32_of(&p, Key::TorturePages),
                ms: p.uint(Key::TortureMs),
            },
            ramdisk_mb: with_default(Key::Ramdisk),
            blk_persist: chosen(&p, Key::BlkPersist, Persist::from_name),
            readahead: p.flag(Key::Readahead),
            lockup_ms: with_default(Key::LockupMs),
            walk_waiters: with_default(Key::WalkWaiters),
            bench_rounds: u32_of(&p, Key::BenchRounds).expect("key has a default"),
            given: p,
        }
    }
}

/// Parses a parameter string with the contract's parser.
pub fn parse(s: &'static str) -> Result<Params, ParamError<'static>> {
    contract::params::parse(s).map(Params::from_parsed)
}

struct Buf(UnsafeCell<[u8; PARAMS_MAX_LEN]>);
// SAFETY: written once by the boot CPU in `load`, before any other CPU runs,
// and only read (through the `&'static str`s handed out) afterwards.
unsafe impl Sync for Buf {}
static CMDLINE: Buf = Buf(UnsafeCell::new([0; PARAMS_MAX_LEN]));

/// Reads the parameter string from fw_cfg (absent = empty) and parses it.
/// Call once, on the boot CPU.
pub fn load() -> Result<Params, ParamError<'static>> {
    // SAFETY: single call on the boot CPU before SMP; see `Buf`.
    let buf: &'static mut [u8; PARAMS_MAX_LEN] = unsafe { &mut *CMDLINE.0.get() };
    let len = match fw_cfg::read_file(contract::FW_CFG_NAME, buf) {
        None => 0,
        Some(Ok(n)) => n,
        Some(Err(len)) => return Err(ParamError::TooLong { len }),
    };
    let buf: &'static [u8] = buf;
    contract::params::parse_bytes(&buf[..len]).map(Params::from_parsed)
}
