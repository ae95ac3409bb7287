//! The litmus runner: two threads on two CPUs run a two-thread test many
//! times over, klitmus7-style, and count the outcomes.
//!
//! Mental model (herdtools7's klitmus7, `-s size -r runs`): a *trial* is
//! one execution of the test on its own fresh locations (its *slot*); a
//! *run* is `size` trials that both threads go through in the same order,
//! between two heavyweight rendezvous. Per run:
//!
//! ```text
//! thread 0                               thread 1
//! rendezvous (spin, then sleep)          rendezvous
//! for i in 0..size:                      for i in 0..size:
//!   touch0(slot(i))                        touch1(slot(i))
//!   trial barrier i (lock xadd, spin)      trial barrier i
//!   jitter 0..JITTER spins                 jitter 0..JITTER spins
//!   r0[slot(i)] = P0(slot(i))              r1[slot(i)] = P1(slot(i))
//! rendezvous                             rendezvous
//! count r0/r1 of every slot, reset the   (waits at the next rendezvous)
//! slots, draw the next run's slot order
//! ```
//!
//! Why each piece (a test that just serialises the two threads observes
//! nothing):
//! * **per-trial barrier**: each trial starts with both threads leaving a
//!   barrier of their own cache line (`barrier[i]`, one line per trial, so
//!   no line is reused within a run and no later trial sees an earlier
//!   trial's count), so their accesses start within a few instructions of
//!   each other. The spin is bounded ([`SPIN_LIMIT`]): a partner vCPU that
//!   the host has descheduled costs one unsynchronised trial, not a hang.
//!   Neither it nor the jitter uses `pause`: under TCG a `pause` is a trip
//!   through QEMU's main loop, microseconds, far coarser than the window.
//!   The barrier is a `lock xadd`: it also drains this CPU's store buffer,
//!   so every trial starts from the same empty buffer (klitmus7 puts an
//!   `smp_mb` in its barrier for the same reason).
//! * **jitter**: the thread that arrives second leaves the barrier first;
//!   the other sees the count a cache-line transfer later. A random spin of
//!   0..[`JITTER`] on each side sweeps the two threads' relative offset
//!   over that lag, so some trials align exactly.
//! * **priming**: before its barrier each thread brings the trial's
//!   locations into its cache the way the test says ([`Litmus::touch0`],
//!   litmus7's `-prefetch`): how long a store waits in the store buffer
//!   depends on who holds the line, and without it every line would start
//!   in thread 0's cache (it reset them), so thread 0's stores would be
//!   visible almost at once and the outcome would rarely show (`SB+plain`:
//!   ~2,800 in 100,000 trials unprimed, 24,000-30,000 primed, `sb.rs`).
//! * **many trials per rendezvous**: the rendezvous may sleep (with more
//!   vCPUs than host cores a partner can be off its core for a host time
//!   slice); it costs once per run, not once per trial.
//! * **shuffled slots**: trial `i` of a run uses slot `perm[i]`, a new
//!   random permutation every run (litmus7's stride, `-st`, generalised),
//!   so consecutive trials touch unrelated cache lines and no trial's line
//!   is still hot in one CPU's cache from the trial before.
//!
//! The test's own code ([`Litmus::p0`], [`Litmus::p1`]) returns each
//! thread's register as 0 or 1, so every test has the same four final
//! states, counted in a [`Histogram`].

use alloc::{format, sync::Arc, vec::Vec};
use core::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering};

use crate::rendezvous::Rendezvous;
use crate::{pagelock::torture::Rng, sched::join_timeout};
use kernel::{arch::time, sched, smp::online_cpus};

/// Spins a thread waits at a trial barrier before it goes on without its
/// partner (module docs): milliseconds under TCG, about a host time slice,
/// so a partner vCPU that the host preempted is usually waited for.
pub const SPIN_LIMIT: u32 = 1 << 20;

/// Upper bound (exclusive) of the random spin after each trial barrier, in
/// iterations of a plain loop (a few ns each under TCG). The two threads
/// leave a barrier 200-500 TSC cycles apart under TCG (measured with
/// `rdtsc` before each side's code); with two-line store buffering (the
/// layout `sb.rs` measured and set aside) the outcome showed up five
/// times as often with 64 as with 16 (100,000 trials each).
pub const JITTER: u64 = 64;

/// A two-thread test, run once per trial on slot `s` (`s < size`). Both
/// code functions return the thread's register, 0 or 1.
pub trait Litmus: Send + Sync + 'static {
    /// Thread 0's code on slot `s`.
    fn p0(&self, s: usize) -> u8;
    /// Thread 1's code on slot `s`.
    fn p1(&self, s: usize) -> u8;
    /// Thread 0 reads, before the trial's barrier, the locations of slot
    /// `s` that it will read in the trial (litmus7's `-prefetch 0:y=T`).
    fn touch0(&self, s: usize);
    /// Thread 1's [`Litmus::touch0`].
    fn touch1(&self, s: usize);
    /// Puts slot `s` back in its initial state after a run that ended
    /// with registers `r0`, `r1`. Called by thread 0 while thread 1 waits
    /// at a rendezvous, so nothing else touches the slot.
    fn reset(&self, s: usize, r0: u8, r1: u8);
}

/// A shared test runs as itself (so one test can be run several times).
impl<T: Litmus> Litmus for Arc<T> {
    fn p0(&self, s: usize) -> u8 {
        (**self).p0(s)
    }
    fn p1(&self, s: usize) -> u8 {
        (**self).p1(s)
    }
    fn touch0(&self, s: usize) {
        (**self).touch0(s)
    }
    fn touch1(&self, s: usize) {
        (**self).touch1(s)
    }
    fn reset(&self, s: usize, r0: u8, r1: u8) {
        (**self).reset(s, r0, r1)
    }
}

/// The final states of the trials: `counts[r0][r1]`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Histogram {
    pub counts: [[u64; 2]; 2],
    /// Wall time of the whole test, in nanoseconds.
    pub ns: u64,
    /// Trial barriers left at [`SPIN_LIMIT`] without the partner.
    pub lonely: u64,
}

impl Histogram {
    /// Trials counted.
    pub fn total(&self) -> u64 {
        self.counts.iter().flatten().sum()
    }
}

/// Why a test could not run to its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunError {
    /// Fewer than two CPUs online.
    OneCpu,
    /// A thread did not finish within the deadline.
    Stuck,
}

/// One cache line holding a counter (the trial barriers).
#[repr(C, align(64))]
#[derive(Default)]
pub struct Line(pub AtomicU32);

/// What both threads share for one test.
struct Shared<T> {
    test: T,
    size: usize,
    runs: u64,
    /// `perm[i]`: the slot of trial `i` in this run (thread 0 writes it
    /// between runs; the rendezvous orders it before thread 1's reads).
    perm: Vec<AtomicU32>,
    /// One barrier line per trial of a run.
    barrier: Vec<Line>,
    /// Registers per slot (each array written by one thread only).
    r0: Vec<AtomicU8>,
    r1: Vec<AtomicU8>,
    rendezvous: Rendezvous,
    /// Filled in by thread 0: `counts[r0][r1]`, flattened, then lonely.
    counts: [AtomicU64; 5],
    /// Trials counted so far (thread 0, after each run), for the progress
    /// lines.
    done: AtomicU64,
}

/// Waits at trial barrier `b`: one `lock xadd`, then up to [`SPIN_LIMIT`]
/// spins until the partner has arrived too. Returns false if it gave up.
#[inline(always)]
fn trial_barrier(b: &Line) -> bool {
    // Relaxed: the barrier only aligns the threads in time; no data is
    // handed over through it (the trial's locations are in their initial
    // state since the last rendezvous, which ordered the resets). On x86
    // the `lock xadd` drains the store buffer (module docs).
    if b.0.fetch_add(1, Ordering::Relaxed) == 1 {
        return true;
    }
    // No `pause` (`spin_loop`) in this loop or in `delay`: under TCG a
    // `pause` leaves the translated code for QEMU's main loop (its x86
    // helper raises EXCP_INTERRUPT "to let another CPU run"), which costs
    // microseconds, far more than the store-buffer window the trials aim at.
    for _ in 0..SPIN_LIMIT {
        if b.0.load(Ordering::Relaxed) == 2 {
            return true;
        }
    }
    false
}

/// Spins `n` iterations of a plain loop (see `trial_barrier` on `pause`).
#[inline(always)]
fn delay(n: u64) {
    for i in 0..n {
        core::hint::black_box(i);
    }
}

fn thread<T: Litmus>(sh: &Shared<T>, me: usize, seed: u64) {
    let mut rng = Rng::new(seed);
    let mut lonely = 0u64;
    for run in 0..sh.runs {
        sh.rendezvous.meet(2 * run + 1);
        for i in 0..sh.size {
            // Relaxed, as every access to `perm`, `r0`, `r1`, `barrier`
            // and the slots outside the trials: the rendezvous (AcqRel and
            // Acquire) orders thread 0's writes between runs before thread
            // 1's reads in the next run, and both threads' registers before
            // thread 0's count.
            let s = sh.perm[i].load(Ordering::Relaxed) as usize;
            if me == 0 {
                sh.test.touch0(s);
            } else {
                sh.test.touch1(s);
            }
            if !trial_barrier(&sh.barrier[i]) {
                lonely += 1;
            }
            delay(rng.below(JITTER));
            if me == 0 {
                let r = sh.test.p0(s);
                sh.r0[s].store(r, Ordering::Relaxed);
            } else {
                let r = sh.test.p1(s);
                sh.r1[s].store(r, Ordering::Relaxed);
            }
        }
        sh.rendezvous.meet(2 * run + 2);
        if me == 0 {
            // Thread 1 waits at the next rendezvous meanwhile.
            for s in 0..sh.size {
                let (a, b) = (
                    sh.r0[s].load(Ordering::Relaxed),
                    sh.r1[s].load(Ordering::Relaxed),
                );
                sh.counts[usize::from(a) * 2 + usize::from(b)].fetch_add(1, Ordering::Relaxed);
                sh.test.reset(s, a, b);
                sh.barrier[s].0.store(0, Ordering::Relaxed);
            }
            shuffle(&sh.perm, &mut rng);
            // Relaxed: a progress figure, read by nobody who needs more.
            sh.done.fetch_add(sh.size as u64, Ordering::Relaxed);
        }
    }
    // Relaxed: read after `join`, whose Acquire orders our exit after it.
    sh.counts[4].fetch_add(lonely, Ordering::Relaxed);
}

/// A new random order of the slots (Fisher-Yates). Relaxed: only thread 0
/// writes `perm`, while thread 1 waits at a rendezvous (see `thread`).
fn shuffle(perm: &[AtomicU32], rng: &mut Rng) {
    for i in (1..perm.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        let (a, b) = (
            perm[i].load(Ordering::Relaxed),
            perm[j].load(Ordering::Relaxed),
        );
        perm[i].store(b, Ordering::Relaxed);
        perm[j].store(a, Ordering::Relaxed);
    }
}

/// The two CPUs a test runs on: the last two online (the boot CPU, where
/// the test framework's thread waits, only when there are two).
pub fn cpus() -> Option<(usize, usize)> {
    let n = online_cpus();
    (n >= 2).then(|| (n - 2, n - 1))
}

/// How long `run` waits for its threads between progress lines.
const PROGRESS_MS: u64 = 5_000;

/// Runs `test` for at least `trials` trials in runs of `size` (slots
/// `0..size` of the test), on the CPUs of [`cpus`].
pub fn run<T: Litmus>(test: T, trials: u64, size: usize, seed: u64) -> Result<Histogram, RunError> {
    let (c0, c1) = cpus().ok_or(RunError::OneCpu)?;
    let runs = trials.div_ceil(size as u64).max(1);
    let mut rng = Rng::new(seed);
    let perm: Vec<AtomicU32> = (0..size as u32).map(AtomicU32::new).collect();
    shuffle(&perm, &mut rng);
    let sh = Arc::new(Shared {
        test,
        size,
        runs,
        perm,
        barrier: (0..size).map(|_| Line::default()).collect(),
        r0: (0..size).map(|_| AtomicU8::new(0)).collect(),
        r1: (0..size).map(|_| AtomicU8::new(0)).collect(),
        rendezvous: Rendezvous::new(),
        counts: Default::default(),
        done: AtomicU64::new(0),
    });
    let t0 = time::now_ns();
    let threads: Vec<_> = [(0usize, c0), (1, c1)]
        .into_iter()
        .map(|(me, cpu)| {
            let sh = sh.clone();
            let seed = rng.next();
            sched::spawn(&format!("litmus-p{me}"), Some(cpu), move || {
                thread(&sh, me, seed)
            })
            .expect("spawn a litmus thread")
        })
        .collect();
    // Generous: under TCG on a loaded host a trial can take tens of µs.
    let limit_ms = 120_000 + trials / 10;
    let mut stuck = false;
    for t in &threads {
        // In slices, with a progress line after each: a slow case (the
        // lock scheme's sleeping trials on a busy host) must not leave the
        // console silent, which the host takes for every CPU stuck after
        // 30 s.
        while !stuck && !join_timeout(t, PROGRESS_MS) {
            let elapsed_ms = (time::now_ns() - t0) / 1_000_000;
            stuck = elapsed_ms >= limit_ms;
            crate::bench::progress(
                "litmus",
                sh.done.load(Ordering::Relaxed),
                "trials",
                elapsed_ms,
                limit_ms,
            );
        }
    }
    if stuck {
        // The threads still use `sh`: keep it for ever.
        core::mem::forget(sh);
        return Err(RunError::Stuck);
    }
    // Relaxed: both threads have exited (`join_timeout`'s Acquire).
    let c = |k: usize| sh.counts[k].load(Ordering::Relaxed);
    Ok(Histogram {
        counts: [[c(0), c(1)], [c(2), c(3)]],
        ns: time::now_ns() - t0,
        lonely: c(4),
    })
}
