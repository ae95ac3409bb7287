//! Run-time parameters: a `key=value ...` string the host hands to the kernel
//! through QEMU's fw_cfg file `opt/pcs/cmdline` (see `boot::qemu`).
//!
//! Every key is declared once in [`KEYS`] with its type and range. Unknown
//! keys, duplicates, malformed or out-of-range values are errors: the kernel
//! prints the error and [`USAGE`] and exits with `ExitCode::BadParams`. A
//! parameter is never silently ignored.

use core::{cell::UnsafeCell, fmt};

use crate::arch::x86_64::fw_cfg;

/// The fw_cfg file holding the parameter string.
pub const FW_CFG_NAME: &str = "opt/pcs/cmdline";
const MAX_LEN: usize = 4096;

pub const USAGE: &str = "parameters: mode=test|bench|idle filter=GLOB[,GLOB..] seed=U64 \
loglevel=off|error|warn|info|debug|trace fail=0|1 crash=none|panic|pagefault|divide|stackoverflow|hang|triplefault|appanic|doublefree hz=10..1000 pcp=0|1 ap_skip=APIC_ID \
bits=0..16 handoff=on|off unfairness=N bookmarks=on|off killable_fix=on|off \
bug=none|tas-outside-lock|clear-after-wake|clear-waiters-early|non-atomic-flags \
torture_threads=1..64 torture_pages=1..4096 torture_ms=100..600000";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Run the in-kernel test suites and exit with their verdict.
    Test,
    /// Run the benchmarks and print `BENCH` lines.
    Bench,
    /// Boot, report, and exit successfully.
    Idle,
}

/// A deliberate crash, used by the host tests to prove that each kind of
/// failure is detected. Runs inside the test case `boot.deliberate_crash`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Crash {
    None,
    Panic,
    PageFault,
    Divide,
    StackOverflow,
    Hang,
    /// Loads an empty IDT and raises an exception: a triple fault, which
    /// QEMU (`-no-reboot`) reports as exit status 0.
    TripleFault,
    /// A panic on the last application processor, via a function-call IPI.
    ApPanic,
    /// Frees one frame twice through the public free path: the frame
    /// allocator must panic with a dump of the descriptor.
    DoubleFree,
}

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
    /// The page-lock protocol: `bits=`, `handoff=`, `unfairness=`,
    /// `bookmarks=`, `killable_fix=`, `bug=` (forwarded to
    /// `pagesync::Config::set`, which rejects bad values).
    pub pagelock: pagesync::Config,
    /// Page-lock torture knobs (`None` = the test's own default).
    pub torture: TortureParams,
}

/// `torture_threads=` (per CPU), `torture_pages=`, `torture_ms=`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TortureParams {
    pub threads_per_cpu: Option<u32>,
    pub pages: Option<u32>,
    pub ms: Option<u64>,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            mode: Mode::Test,
            filter: None,
            seed: 1,
            loglevel: log::LevelFilter::Info,
            fail: false,
            crash: Crash::None,
            hz: 100,
            pcp: true,
            ap_skip: None,
            pagelock: pagesync::Config::DEFAULT,
            torture: TortureParams {
                threads_per_cpu: None,
                pages: None,
                ms: None,
            },
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum ParamError<'a> {
    TooLong(usize),
    NotUtf8,
    MissingEquals(&'a str),
    UnknownKey(&'a str),
    Duplicate(&'a str),
    BadValue {
        key: &'a str,
        value: &'a str,
        expected: &'static str,
    },
    /// A page-lock protocol key with a value it does not take.
    Protocol {
        key: &'a str,
        value: &'a str,
        err: &'static str,
    },
}

impl fmt::Display for ParamError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            ParamError::TooLong(n) => {
                write!(f, "parameter string is {n} bytes; the limit is {MAX_LEN}")
            }
            ParamError::NotUtf8 => write!(f, "parameter string is not UTF-8"),
            ParamError::MissingEquals(w) => write!(f, "'{w}' is not of the form key=value"),
            ParamError::UnknownKey(k) => write!(f, "unknown parameter '{k}'"),
            ParamError::Duplicate(k) => write!(f, "parameter '{k}' given twice"),
            ParamError::BadValue {
                key,
                value,
                expected,
            } => {
                write!(f, "bad value '{value}' for '{key}': expected {expected}")
            }
            ParamError::Protocol { key, value, err } => {
                write!(f, "bad page-lock parameter {key}={value}: {err}")
            }
        }
    }
}

/// The keys, in the order [`Params::describe`] prints them.
const KEYS: &[&str] = &[
    "mode",
    "filter",
    "seed",
    "loglevel",
    "fail",
    "crash",
    "hz",
    "pcp",
    "ap_skip",
    // Page lock (kernel/src/pagelock): protocol, then torture knobs.
    "bits",
    "handoff",
    "unfairness",
    "bookmarks",
    "killable_fix",
    "bug",
    "torture_threads",
    "torture_pages",
    "torture_ms",
];

struct Buf(UnsafeCell<[u8; MAX_LEN]>);
// SAFETY: written once by the boot CPU in `load`, before any other CPU runs,
// and only read (through the `&'static str`s handed out) afterwards.
unsafe impl Sync for Buf {}
static CMDLINE: Buf = Buf(UnsafeCell::new([0; MAX_LEN]));

/// Reads the parameter string from fw_cfg (absent = empty) and parses it.
/// Call once, on the boot CPU.
pub fn load() -> Result<Params, ParamError<'static>> {
    // SAFETY: single call on the boot CPU before SMP; see `Buf`.
    let buf: &'static mut [u8; MAX_LEN] = unsafe { &mut *CMDLINE.0.get() };
    let len = match fw_cfg::read_file(FW_CFG_NAME, buf) {
        None => 0,
        Some(Ok(n)) => n,
        Some(Err(n)) => return Err(ParamError::TooLong(n)),
    };
    let s = core::str::from_utf8(&buf[..len]).map_err(|_| ParamError::NotUtf8)?;
    parse(s)
}

pub fn parse(s: &'static str) -> Result<Params, ParamError<'static>> {
    let mut p = Params::default();
    let mut seen = [false; KEYS.len()];
    for word in s.split_ascii_whitespace() {
        let (key, value) = word
            .split_once('=')
            .ok_or(ParamError::MissingEquals(word))?;
        let idx = KEYS
            .iter()
            .position(|k| *k == key)
            .ok_or(ParamError::UnknownKey(key))?;
        if core::mem::replace(&mut seen[idx], true) {
            return Err(ParamError::Duplicate(key));
        }
        let bad = |expected| ParamError::BadValue {
            key,
            value,
            expected,
        };
        match key {
            "mode" => {
                p.mode = match value {
                    "test" => Mode::Test,
                    "idle" => Mode::Idle,
                    "bench" => Mode::Bench,
                    _ => return Err(bad("test, bench or idle")),
                }
            }
            "filter" => {
                if value.is_empty() || value.split(',').any(str::is_empty) {
                    return Err(bad("comma-separated non-empty globs"));
                }
                p.filter = Some(value);
            }
            "seed" => {
                p.seed =
                    parse_u64(value, 0, u64::MAX).ok_or(bad("an integer (decimal or 0x hex)"))?
            }
            "loglevel" => {
                p.loglevel = match value {
                    "off" => log::LevelFilter::Off,
                    "error" => log::LevelFilter::Error,
                    "warn" => log::LevelFilter::Warn,
                    "info" => log::LevelFilter::Info,
                    "debug" => log::LevelFilter::Debug,
                    "trace" => log::LevelFilter::Trace,
                    _ => return Err(bad("off, error, warn, info, debug or trace")),
                }
            }
            "ap_skip" => {
                p.ap_skip =
                    Some(parse_u64(value, 0, 255).ok_or(bad("an APIC id in 0..=255"))? as u32)
            }
            "hz" => p.hz = parse_u64(value, 10, 1000).ok_or(bad("a tick rate in 10..=1000 Hz"))?,
            "fail" => p.fail = parse_bool(value).ok_or(bad("0 or 1"))?,
            "pcp" => p.pcp = parse_bool(value).ok_or(bad("0 or 1"))?,
            "bits" | "handoff" | "unfairness" | "bookmarks" | "killable_fix" | "bug" => {
                let proto = |err| ParamError::Protocol { key, value, err };
                let flag = || match value {
                    "1" | "on" | "true" | "yes" => Ok(true),
                    "0" | "off" | "false" | "no" => Ok(false),
                    _ => Err(proto("expected on or off")),
                };
                let c = &mut p.pagelock;
                match key {
                    "bits" => {
                        c.table_bits =
                            parse_u64(value, 0, 16).ok_or(proto("expected 0..=16"))? as u32
                    }
                    "handoff" => c.handoff = flag()?,
                    "unfairness" => {
                        c.unfairness = parse_u64(value, 0, u32::MAX.into())
                            .ok_or(proto("expected a u32"))?
                            as u32
                    }
                    "bookmarks" => c.bookmarks = flag()?,
                    "killable_fix" => c.killable_fix = flag()?,
                    _ => {
                        c.bug = match value {
                            "none" => None,
                            name => Some(
                                *pagesync::Bug::ALL
                                    .iter()
                                    .find(|b| b.name() == name)
                                    .ok_or(proto("unknown bug variant"))?,
                            ),
                        }
                    }
                }
            }
            "torture_threads" => {
                p.torture.threads_per_cpu =
                    Some(parse_u64(value, 1, 64).ok_or(bad("threads per CPU in 1..=64"))? as u32)
            }
            "torture_pages" => {
                p.torture.pages =
                    Some(parse_u64(value, 1, 4096).ok_or(bad("pages in 1..=4096"))? as u32)
            }
            "torture_ms" => {
                p.torture.ms = Some(
                    parse_u64(value, 100, 600_000).ok_or(bad("milliseconds in 100..=600000"))?,
                )
            }
            "crash" => {
                p.crash = match value {
                    "none" => Crash::None,
                    "panic" => Crash::Panic,
                    "pagefault" => Crash::PageFault,
                    "divide" => Crash::Divide,
                    "stackoverflow" => Crash::StackOverflow,
                    "hang" => Crash::Hang,
                    "triplefault" => Crash::TripleFault,
                    "appanic" => Crash::ApPanic,
                    "doublefree" => Crash::DoubleFree,
                    _ => {
                        return Err(bad(
                            "none, panic, pagefault, divide, stackoverflow, hang, triplefault, appanic or doublefree",
                        ));
                    }
                }
            }
            _ => unreachable!("every entry of KEYS has a case"),
        }
    }
    Ok(p)
}

/// Parses a decimal or `0x` hexadecimal integer in `min..=max`.
pub fn parse_u64(s: &str, min: u64, max: u64) -> Option<u64> {
    let v = match s.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok()?,
        None => s.parse().ok()?,
    };
    (min..=max).contains(&v).then_some(v)
}

fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "0" | "false" | "off" => Some(false),
        "1" | "true" | "on" => Some(true),
        _ => None,
    }
}

struct ApSkip(Option<u32>);
impl fmt::Display for ApSkip {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self.0 {
            Some(id) => write!(f, " ap_skip={id}"),
            None => Ok(()),
        }
    }
}

impl Params {
    pub fn describe(&self) -> impl fmt::Display + '_ {
        struct D<'a>(&'a Params);
        impl fmt::Display for D<'_> {
            fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
                let p = self.0;
                write!(
                    f,
                    "mode={:?} filter={} seed={} loglevel={} fail={} crash={:?} hz={} pcp={}{}",
                    p.mode,
                    p.filter.unwrap_or("*"),
                    p.seed,
                    p.loglevel,
                    p.fail as u8,
                    p.crash,
                    p.hz,
                    p.pcp as u8,
                    ApSkip(p.ap_skip)
                )
            }
        }
        D(self)
    }
}

mod tests {
    use super::*;
    use crate::{
        kassert, kassert_eq,
        ktest::{Case, Ctx, Suite, TestResult},
    };

    fn accepts_valid(_: &Ctx) -> TestResult {
        let p =
            parse("  mode=idle seed=0x10 filter=boot,params.* loglevel=debug fail=1 crash=panic ");
        kassert!(p.is_ok(), "parse failed: {:?}", p.err());
        let p = p.unwrap();
        kassert_eq!(p.mode, Mode::Idle);
        kassert_eq!(p.seed, 16);
        kassert_eq!(p.filter, Some("boot,params.*"));
        kassert_eq!(p.loglevel, log::LevelFilter::Debug);
        kassert!(p.fail);
        kassert_eq!(p.crash, Crash::Panic);
        kassert!(parse("").is_ok());
        Ok(())
    }

    fn rejects_malformed(_: &Ctx) -> TestResult {
        kassert_eq!(parse("seed"), Err(ParamError::MissingEquals("seed")));
        kassert_eq!(parse("speed=3"), Err(ParamError::UnknownKey("speed")));
        kassert_eq!(parse("seed=1 seed=2"), Err(ParamError::Duplicate("seed")));
        kassert!(matches!(
            parse("seed=12x"),
            Err(ParamError::BadValue { key: "seed", .. })
        ));
        kassert!(matches!(
            parse("seed=18446744073709551616"),
            Err(ParamError::BadValue { .. })
        ));
        kassert!(matches!(
            parse("mode=fast"),
            Err(ParamError::BadValue { key: "mode", .. })
        ));
        kassert!(matches!(
            parse("filter=a,,b"),
            Err(ParamError::BadValue { key: "filter", .. })
        ));
        kassert!(matches!(
            parse("fail=yes"),
            Err(ParamError::BadValue { key: "fail", .. })
        ));
        kassert!(matches!(
            parse("bug=nope"),
            Err(ParamError::Protocol { key: "bug", .. })
        ));
        kassert!(matches!(
            parse("bits=17"),
            Err(ParamError::Protocol { key: "bits", .. })
        ));
        kassert!(matches!(
            parse("handoff=maybe"),
            Err(ParamError::Protocol { key: "handoff", .. })
        ));
        kassert!(matches!(
            parse("torture_threads=0"),
            Err(ParamError::BadValue {
                key: "torture_threads",
                ..
            })
        ));
        let p = parse("bits=0 unfairness=0 bug=clear-after-wake torture_ms=500");
        kassert!(p.is_ok(), "parse failed: {:?}", p.err());
        let p = p.unwrap();
        kassert_eq!((p.pagelock.table_bits, p.pagelock.unfairness), (0, 0));
        kassert_eq!(p.pagelock.bug, Some(pagesync::Bug::ClearAfterWake));
        kassert_eq!(p.torture.ms, Some(500));
        Ok(())
    }

    fn numbers_in_range(_: &Ctx) -> TestResult {
        kassert_eq!(parse_u64("0", 0, 10), Some(0));
        kassert_eq!(parse_u64("10", 0, 10), Some(10));
        kassert_eq!(parse_u64("11", 0, 10), None);
        kassert_eq!(parse_u64("0xff", 0, 1000), Some(255));
        kassert_eq!(parse_u64("-1", 0, 10), None);
        kassert_eq!(parse_u64("", 0, 10), None);
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
                name: "numbers_in_range",
                run: numbers_in_range,
            },
        ],
    };
}

pub use tests::SUITE;
