//! Race-window jitter: random short delays at pagesync's race points.
//!
//! Mental model: a protocol bug is usually a window a few instructions
//! wide between two accesses to a shared word; two vCPUs under TCG meet
//! inside it once in millions of tries. pagesync calls
//! [`pagesync::Platform::race_point`] after every access to a page's flags
//! and reference count and at the named steps of its waits and wake-ups
//! ([`pagesync::race`]). [`point`] then, one time in `jitter_rate`, spins
//! a random few to a few thousand TSC cycles (log-uniform between 4 and
//! 4096, so short and long delays are equally likely by order of
//! magnitude), and one delay in 16 a few thousand to a few hundred
//! thousand (log-uniform between 4096 and 262144: up to ~100 us). A window
//! that is a few instructions wide is then, now and then, microseconds
//! wide, whichever code it sits in: the correct protocol and a known-bad
//! variant get the same treatment, at the same rate, and so would a bug
//! nobody has thought of. The long tail is for windows that the other side
//! needs a long path to exploit: a truncation that must find a page clean,
//! lock it, remove it from the cache and drop the last reference between
//! two steps of an end of writeback takes tens of microseconds under TCG
//! (`pagecache.end_writeback_reuse_race` with `bug=end-writeback-no-ref`,
//! 2000 rounds: caught with the tail under each of seeds 1 to 4; with the
//! delays capped at 4096 cycles, under seed 2 but not seed 1; with
//! `jitter=off`, not under seed 1).
//!
//! Configured once at boot from `jitter=` and `jitter_rate=`, seeded from
//! `seed=` (each CPU its own xorshift stream). Debug builds only (the tests
//! and the torture): a release build (`cargo xtask bench`) compiles the
//! race points out, so the benchmarks measure the protocol, not the jitter.
//!
//! A point may be reached with interrupts off, under a spin lock, and in
//! interrupt context: [`point`] only reads the TSC and spins, touching
//! nothing but this CPU's own slot.

// Release builds compile the race points out (`KernelPlatform::race_point`),
// so the delay machinery below is unused there; it stays compiled so that
// both profiles type-check it.
#![cfg_attr(not(debug_assertions), allow(dead_code))]

use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use pagesync::RacePoint;

use crate::{
    arch::{percpu, time},
    config::MAX_CPUS,
};

/// Number of race points.
const POINTS: usize = RacePoint::ALL.len();
/// Delay bounds, as powers of two of TSC cycles: most delays are
/// log-uniform in `2^MIN_SHIFT..2^SHORT_SHIFT`, one in `LONG_ONE_IN` in
/// `2^SHORT_SHIFT..2^LONG_SHIFT` (module docs).
const MIN_SHIFT: u64 = 2;
const SHORT_SHIFT: u64 = 12;
const LONG_SHIFT: u64 = 18;
const LONG_ONE_IN: u64 = 16;
/// The long tail's bound at the page cache's own points
/// ([`RacePoint::CacheLookup`], [`RacePoint::CacheUpdate`]): the other
/// side of a page-cache window is a whole operation (a writer that
/// allocates, inserts, copies and dirties a page; an eviction), tens to
/// hundreds of microseconds under TCG, so the tail reaches ~1 ms
/// (2^21 cycles).
const CACHE_LONG_SHIFT: u64 = 21;

static ENABLED: AtomicBool = AtomicBool::new(false);
/// One point in `RATE` delays.
static RATE: AtomicU32 = AtomicU32::new(1);

/// One CPU's random stream and delay counts. Only its own CPU (a thread
/// or an interrupt handler on it) writes it; an interrupt landing between
/// a thread's load and store of `rng` just repeats a number, which costs
/// nothing but a little randomness.
#[repr(align(64))]
struct Slot {
    rng: AtomicU64,
    delays: [AtomicU64; POINTS],
}

static SLOTS: [Slot; MAX_CPUS] = [const {
    Slot {
        rng: AtomicU64::new(0),
        delays: [const { AtomicU64::new(0) }; POINTS],
    }
}; MAX_CPUS];

/// Whether this build has race points at all (debug builds).
pub const COMPILED_IN: bool = cfg!(debug_assertions);

/// Turns jitter on or off for the rest of the boot, with one delay every
/// `rate` points (on average), each CPU's stream seeded from `seed`.
pub fn configure(on: bool, rate: u32, seed: u64) {
    for (cpu, slot) in SLOTS.iter().enumerate() {
        // splitmix64 of (seed, cpu): distinct, non-zero streams.
        let mut z = seed
            .wrapping_add(0x9E37_79B9_7F4A_7C15u64.wrapping_mul(cpu as u64 + 1))
            .wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        slot.rng.store((z ^ (z >> 31)) | 1, Ordering::Relaxed);
    }
    RATE.store(rate.max(1), Ordering::Relaxed);
    // Relaxed: the slots need no publication (a CPU that sees `ENABLED`
    // before its seed just starts from another random number).
    ENABLED.store(on && COMPILED_IN, Ordering::Relaxed);
}

/// Jitter off until the guard drops, then back as it was: for tests of
/// the hardware's own reordering (the litmus suite's store-buffering
/// shapes), where a delay between a store and the next load lets the store
/// drain from the store buffer and so hides exactly what they look for.
/// Also removes pagesync's race-point hook, so that a flags access is not
/// followed by an indirect call (under TCG a call through a pointer ends
/// the translation block, a trip through QEMU's dispatcher long enough to
/// drain the store buffer: with the hook installed and jitter off,
/// `gup-plain-stores` still showed 0 in a million trials). The caller runs
/// alone (one test case at a time); a point reached on another CPU in
/// between sees either state, which only changes whether it is delayed.
pub fn suspend() -> Suspended {
    Suspended {
        enabled: ENABLED.swap(false, Ordering::Relaxed),
        hooked: pagesync::race::uninstall(),
    }
}

/// Returned by [`suspend`].
#[must_use = "jitter comes back when this is dropped"]
pub struct Suspended {
    enabled: bool,
    hooked: bool,
}

impl Drop for Suspended {
    fn drop(&mut self) {
        if self.hooked {
            pagesync::race::install(<super::KernelPlatform as pagesync::Platform>::race_point);
        }
        ENABLED.store(self.enabled, Ordering::Relaxed);
    }
}

/// Whether delays are being injected.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// The configured rate (one delay in this many points).
pub fn rate() -> u32 {
    RATE.load(Ordering::Relaxed)
}

/// The race-point hook (module docs).
#[inline]
pub fn point(p: RacePoint) {
    if ENABLED.load(Ordering::Relaxed) {
        delay(p);
    }
}

#[inline(never)]
fn delay(p: RacePoint) {
    let slot = &SLOTS[percpu::cpu_index()];
    // The project's xorshift64* (`contract::rng`), its state in this
    // CPU's slot.
    let x = contract::rng::step(slot.rng.load(Ordering::Relaxed));
    slot.rng.store(x, Ordering::Relaxed);
    let r = contract::rng::output(x);
    if !(r >> 32).is_multiple_of(u64::from(RATE.load(Ordering::Relaxed))) {
        return;
    }
    // Log-uniform: a uniform exponent, then a uniform value below it.
    let long = match p {
        RacePoint::CacheLookup | RacePoint::CacheUpdate => CACHE_LONG_SHIFT,
        _ => LONG_SHIFT,
    };
    let (lo, hi) = if (r >> 16).is_multiple_of(LONG_ONE_IN) {
        (SHORT_SHIFT, long)
    } else {
        (MIN_SHIFT, SHORT_SHIFT)
    };
    let shift = lo + (r & 0xff) % (hi - lo + 1);
    let cycles = (1 << lo) + ((r >> 24) & ((1 << shift) - 1));
    let end = time::rdtsc() + cycles;
    while time::rdtsc() < end {
        core::hint::spin_loop();
    }
    slot.delays[p as usize].fetch_add(1, Ordering::Relaxed);
}

/// Delays injected so far at each point, all CPUs together, in
/// [`RacePoint::ALL`] order.
pub fn delays() -> [u64; POINTS] {
    let mut out = [0; POINTS];
    for slot in &SLOTS {
        for (o, d) in out.iter_mut().zip(&slot.delays) {
            *o += d.load(Ordering::Relaxed);
        }
    }
    out
}

/// Total delays injected so far.
pub fn total_delays() -> u64 {
    delays().iter().sum()
}

/// A one-line summary: `on (1 in N points), K delays` or why it is off.
pub struct Summary;

impl core::fmt::Display for Summary {
    fn fmt(&self, f: &mut core::fmt::Formatter) -> core::fmt::Result {
        if !COMPILED_IN {
            f.write_str("off (release build: race points compiled out)")
        } else if enabled() {
            write!(
                f,
                "on (1 in {} race points), {} delays so far",
                rate(),
                total_delays()
            )
        } else {
            f.write_str("off")
        }
    }
}
