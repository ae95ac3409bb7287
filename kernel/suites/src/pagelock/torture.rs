//! Page-lock torture, in the style of Linux's locktorture.
//!
//! Mental model: `T` threads per CPU loop over `lock a random page; claim
//! its owner word; hold a random while; release the owner word; unlock`.
//! With `mixed_waits` (every torture case), every wait kind of pagesync
//! runs too: one iteration in 16 is a shared wait for the lock
//! (`wait_on_page_locked`), one a drop wait (`put_and_wait_on_page_locked`,
//! with a reference of its own), one a writeback wait
//! (`wait_on_page_writeback`), each in its killable form on killable
//! threads; and one hold in 8 starts writeback on the page (after waiting
//! for the previous one to end, under the lock, as flushers do) and ends
//! it after the unlock, so the writeback waiters have something to wait
//! for. Four independent detectors turn protocol bugs into a FAILURE:
//!
//! 1. **Mutual exclusion**: right after locking, a thread CASes the page's
//!    `lock_owner` from 0 to its id; a failed CAS means two holders.
//! 2. **Lost wake-ups at quiescence** ("stutter"): every `stutter_ms` the
//!    controller pauses the workers. Each finishes its iteration and parks.
//!    With a correct protocol every waiter is woken by the last unlock of
//!    its page, so all park within milliseconds; a waiter whose wake-up was
//!    lost sleeps on with the page unlocked, nobody left to wake it. (While
//!    traffic runs, a later unlock of the same page usually rescues such a
//!    waiter, which is why a pause is needed to see it.)
//!    Lockstep mode makes this check constant: every worker does a short
//!    burst of acquisitions, then waits at a barrier for all the others.
//!    Each round ends in quiescence, so a lost wake-up stalls the round
//!    counter, which the controller watches (thousands of rounds a second
//!    instead of one pause per `stutter_ms`).
//! 3. **Hung tasks**: the watchdog limit is scaled down to 2 s for the run;
//!    any new hung-task report fails the run. Threads that do not finish
//!    after the stop also fail it.
//! 4. **Lost wake-ups named, in any phase** (the lost wake-up watch):
//!    every `LOST_SCAN_NS` the controller looks at each worker that waits
//!    (any wait kind) without pausing anybody. A worker that stays asleep
//!    in the same wait for `LOST_NS` while the bit it waits on is clear at
//!    both looks and nothing at all happened to its page in between (no
//!    lock taken or released, no writeback started or ended: a per-page
//!    event counter) has lost its wake-up: the event that should have
//!    woken it is behind it and no later one will come. It is reported by
//!    name (worker, wait kind, page, bit) within `LOST_NS + LOST_SCAN_NS`,
//!    whatever the phase (lockstep, free-running, between or during
//!    pauses, or while the workers finish after the stop: the controller
//!    looks whenever it waits). The
//!    look is skipped for an interval in which some CPU took fewer than
//!    `MIN_TICKS` timer ticks (a vCPU the host did not run cannot wake
//!    anybody).
//!
//! A fraction of the threads lock with `lock_page_killable`, and the
//! controller cancels random ones of them (sets `Thread::cancel` and wakes
//! the thread); they count the cancellation and go on.
//!
//! After a failure the controller wakes every page's queue (a "rescue
//! kick") so that threads stranded by a broken protocol can finish; any that
//! still do not are left asleep, with their pages and table leaked, and the
//! run reports FAILURE rather than hanging the kernel.
//!
//! Everything random comes from a xorshift seeded with `seed=`, so a run is
//! reproducible up to scheduling. The same runner, without detectors 2 and
//! the cancellations, measures the fairness table in `super::bench`.

use alloc::{format, string::String, sync::Arc, vec::Vec};
use core::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, AtomicUsize, Ordering};

use contract::bench::{NUM_BUCKETS, bucket_of};
use pagesync::WriteResult;
use pagesync::flags::{PG_LOCKED, PG_WAITERS, PG_WRITEBACK};

use crate::bench::{self, Hist};
use kernel::pagelock::Table;
use kernel::sched::thread::WaitQueue;
use kernel::{
    arch::{percpu, time},
    mm::{AllocFlags, Frame, alloc_pages},
    println,
    sched::{self, ThreadRef, jitter, timer, watchdog},
    smp::online_cpus,
};

const MS: u64 = 1_000_000;
/// Hung-task limit during a run.
pub const HUNG_LIMIT_NS: u64 = 2_000 * MS;
/// How long the workers may take to park at a pause.
pub const QUIESCE_NS: u64 = 1_500 * MS;
/// How long the workers may take to finish after the stop.
pub const JOIN_NS: u64 = 2_500 * MS;
/// A waiter asleep this long on a clear bit of an idle page has lost its
/// wake-up (detector 4).
pub const LOST_NS: u64 = 400 * MS;
/// How often the lost wake-up watch looks.
pub const LOST_SCAN_NS: u64 = 50 * MS;
/// Timer ticks every CPU must take during a watched interval for it to
/// count (detector 4).
pub const MIN_TICKS: u64 = 4;

/// xorshift64*: small, seedable, good enough for hold times.
pub use contract::rng::Rng;

/// A plain FIFO ticket spin lock, the fairness table's baseline.
#[repr(align(64))]
#[derive(Default)]
pub struct TicketLock {
    next: AtomicU32,
    serving: AtomicU32,
}

impl TicketLock {
    pub fn lock(&self) {
        let me = self.next.fetch_add(1, Ordering::Relaxed);
        // Acquire pairs with the Release in `unlock` of the previous holder.
        while self.serving.load(Ordering::Acquire) != me {
            core::hint::spin_loop();
        }
    }
    pub fn unlock(&self) {
        // Only the holder writes `serving`. Release pairs with the Acquire
        // spin of the next ticket holder.
        let s = self.serving.load(Ordering::Relaxed);
        self.serving.store(s.wrapping_add(1), Ordering::Release);
    }
}

/// What the workers lock.
#[derive(Clone, Copy)]
pub enum Target {
    /// Page locks of real frames through this wait table.
    Pages(&'static Table),
    /// One ticket spin lock per "page" instead.
    Ticket,
}

/// One run's shape.
#[derive(Clone, Copy)]
pub struct Options {
    pub name: &'static str,
    pub threads_per_cpu: usize,
    /// Use only the first `cpus` CPUs (0 = all online).
    pub cpus: usize,
    pub pages: usize,
    pub duration_ms: u64,
    /// Every `killable_one_in`-th thread uses `lock_page_killable` (0: none).
    pub killable_one_in: usize,
    /// Cancel this many random killable threads per controller tick.
    pub cancels_per_tick: usize,
    /// Pause and check for lost wake-ups this often (0: never).
    pub stutter_ms: u64,
    /// Critical section: 0..max_hold_spins `pause` instructions.
    pub max_hold_spins: u64,
    /// One in this many critical sections yields the CPU while holding the
    /// lock, so waiters queue and sleep (0: never).
    pub hold_yield_one_in: u64,
    /// Barrier after every burst of 1..=4 acquisitions (module docs).
    pub lockstep: bool,
    /// Every wait kind, and writeback started by lock holders (module
    /// docs); off: page locks only.
    pub mixed_waits: bool,
    /// Print the periodic stats lines.
    pub verbose: bool,
    /// Keep a histogram of every wait for a lock (`Report::waits`): the
    /// fairness benchmark's wait-time distribution.
    pub wait_hist: bool,
    pub seed: u64,
}

impl Options {
    pub const DEFAULT: Options = Options {
        name: "torture",
        threads_per_cpu: 4,
        cpus: 0,
        pages: 16,
        duration_ms: 3000,
        killable_one_in: 4,
        cancels_per_tick: 1,
        stutter_ms: 150,
        max_hold_spins: 200,
        hold_yield_one_in: 16,
        lockstep: false,
        mixed_waits: true,
        verbose: true,
        wait_hist: false,
        seed: 1,
    };
}

/// What a run found.
#[derive(Default, Debug)]
pub struct Report {
    pub threads: usize,
    pub total: u64,
    pub per_thread: Vec<u64>,
    /// Longest time one thread waited for one lock.
    pub max_wait_ns: u64,
    pub owner_failures: u64,
    pub cancelled: u64,
    pub quiesced: u64,
    pub lost_wakeups: u64,
    pub hung_reports: u64,
    pub unfinished: usize,
    /// Longest `unlock_page` call that found waiters (the wake walk, queue
    /// lock wait included).
    pub max_wake_walk_ns: u64,
    pub elapsed_ns: u64,
    /// Every wait for a lock, in ns, with `Options::wait_hist`.
    pub waits: Option<Hist>,
    /// Waits other than lock acquisitions (shared, drop, writeback) and
    /// writebacks started, with `mixed_waits`.
    pub other_waits: u64,
    pub writebacks: u64,
    /// Jitter delays injected during the run (`kernel::sched::jitter`).
    pub jitter_delays: u64,
    pub failures: Vec<String>,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.failures.is_empty()
    }
    pub fn max_min(&self) -> (u64, u64) {
        (
            self.per_thread.iter().copied().max().unwrap_or(0),
            self.per_thread.iter().copied().min().unwrap_or(0),
        )
    }
    /// Jain's fairness index of the per-thread acquisition counts:
    /// (sum x)^2 / (n sum x^2); 1 = perfectly even, 1/n = one thread got all.
    pub fn jain(&self) -> f64 {
        let n = self.per_thread.len() as f64;
        let s: f64 = self.per_thread.iter().map(|&x| x as f64).sum();
        let s2: f64 = self
            .per_thread
            .iter()
            .map(|&x| (x as f64) * (x as f64))
            .sum();
        if s2 == 0.0 { 0.0 } else { s * s / (n * s2) }
    }
}

/// Worker phases, for the lost wake-up diagnosis.
const RUNNING: u8 = 0;
const WAITING: u8 = 1;
const HOLDING: u8 = 2;
const PARKED: u8 = 3;
const EXITED: u8 = 4;

/// What a waiting worker waits in: every wait kind of pagesync.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
enum Kind {
    Lock = 0,
    LockKillable,
    WaitLocked,
    WaitLockedKillable,
    PutAndWait,
    PutAndWaitKillable,
    WaitWriteback,
    WaitWritebackKillable,
    Ticket,
}

impl Kind {
    const ALL: [Kind; 9] = [
        Kind::Lock,
        Kind::LockKillable,
        Kind::WaitLocked,
        Kind::WaitLockedKillable,
        Kind::PutAndWait,
        Kind::PutAndWaitKillable,
        Kind::WaitWriteback,
        Kind::WaitWritebackKillable,
        Kind::Ticket,
    ];

    fn from_u8(v: u8) -> Kind {
        Kind::ALL[usize::from(v).min(Kind::ALL.len() - 1)]
    }

    fn name(self) -> &'static str {
        match self {
            Kind::Lock => "lock_page",
            Kind::LockKillable => "lock_page_killable",
            Kind::WaitLocked => "wait_on_page_locked",
            Kind::WaitLockedKillable => "wait_on_page_locked_killable",
            Kind::PutAndWait => "put_and_wait_on_page_locked",
            Kind::PutAndWaitKillable => "put_and_wait_on_page_locked (killable)",
            Kind::WaitWriteback => "wait_on_page_writeback",
            Kind::WaitWritebackKillable => "wait_on_page_writeback_killable",
            Kind::Ticket => "ticket lock",
        }
    }

    /// The page bit the wait waits on.
    fn bit(self) -> u32 {
        match self {
            Kind::WaitWriteback | Kind::WaitWritebackKillable => PG_WRITEBACK,
            _ => PG_LOCKED,
        }
    }
}

#[repr(align(64))]
#[derive(Default)]
struct PerThread {
    acquisitions: AtomicU64,
    max_wait: AtomicU64,
    phase: AtomicU8,
    page: AtomicUsize,
    /// Wait times (ns) per contract bucket, with `Options::wait_hist`;
    /// written by the worker only (plain load + store), read after it
    /// stopped.
    waits: Vec<AtomicU32>,
    /// The wait kind while `phase == WAITING`.
    kind: AtomicU8,
    /// Bumped at the start of every wait: a watched waiter whose `seq`
    /// changed has been in another wait since.
    seq: AtomicU64,
}

/// One worker's wait as the lost wake-up watch last saw it: asleep on a
/// clear bit since `at_ns`, with the page's event count and every CPU's
/// tick count of then.
#[derive(Clone, Default)]
struct Sighting {
    /// `PerThread::seq + 1` of the wait, 0 if none is watched.
    seq: u64,
    events: u64,
    at_ns: u64,
    ticks: Vec<u64>,
}

struct Shared {
    target: Target,
    /// The frames the workers lock; each worker reaches them through the
    /// shared `Arc`, so they stay allocated while any worker lives.
    pages: Vec<Frame>,
    tickets: Vec<TicketLock>,
    per: Vec<PerThread>,
    stop: AtomicBool,
    pause: AtomicBool,
    parked: AtomicUsize,
    owner_failures: AtomicU64,
    cancelled: AtomicU64,
    max_walk: AtomicU64,
    /// Per page: locks taken and released, writebacks started and ended
    /// (detector 4).
    events: Vec<AtomicU64>,
    other_waits: AtomicU64,
    writebacks: AtomicU64,
    /// Lockstep barrier: completed rounds, arrivals in this round.
    round: AtomicU64,
    arrived: AtomicUsize,
    barrier: WaitQueue,
}

static BARRIER_WAIT: &str = "the pagelock torture barrier";

/// Lockstep barrier. The last arriver resets `arrived` before it publishes
/// the new round with Release; the others leave only after an Acquire load
/// of the new round, so their next `fetch_add` follows the reset.
fn barrier(s: &Shared, me: &ThreadRef) {
    let r = s.round.load(Ordering::Acquire);
    if s.arrived.fetch_add(1, Ordering::AcqRel) + 1 == s.per.len() {
        s.arrived.store(0, Ordering::Relaxed);
        s.round.store(r + 1, Ordering::Release);
        s.barrier.wake_up_all();
    } else {
        sched::thread::set_wait_desc(me, &BARRIER_WAIT);
        s.barrier
            .wait_event(|| s.round.load(Ordering::Acquire) != r || s.stop.load(Ordering::Acquire));
        sched::thread::set_wait_desc(me, &TORTURE_WAIT);
    }
}

static TORTURE_WAIT: &str = "a page lock (pagelock torture)";

/// Marks the start of a wait of `kind` on page `i` (detector 4, and the
/// stuck-worker diagnosis).
fn begin_wait(per: &PerThread, i: usize, kind: Kind) {
    per.page.store(i, Ordering::Relaxed);
    per.kind.store(kind as u8, Ordering::Relaxed);
    per.seq.fetch_add(1, Ordering::Relaxed);
    per.phase.store(WAITING, Ordering::Relaxed);
}

/// Counts an event on page `i` (detector 4).
fn event(s: &Shared, i: usize) {
    if let Some(e) = s.events.get(i) {
        e.fetch_add(1, Ordering::Relaxed);
    }
}

/// One shared, drop or writeback wait on page `i` (`mixed_waits`).
fn other_wait(s: &Shared, t: &Table, per: &PerThread, i: usize, killable: bool, which: u64) {
    let frame = &s.pages[i];
    let r = match which {
        0 => {
            let kind = if killable {
                Kind::WaitLockedKillable
            } else {
                Kind::WaitLocked
            };
            begin_wait(per, i, kind);
            if killable {
                t.wait_on_page_locked_killable(frame)
            } else {
                t.wait_on_page_locked(frame);
                Ok(())
            }
        }
        1 => {
            let kind = if killable {
                Kind::PutAndWaitKillable
            } else {
                Kind::PutAndWait
            };
            begin_wait(per, i, kind);
            // A reference of our own, given up while we sleep.
            frame
                .clone()
                .put_via(|page, free| t.put_and_wait_on_page_locked(page, killable, free))
        }
        _ => {
            let kind = if killable {
                Kind::WaitWritebackKillable
            } else {
                Kind::WaitWriteback
            };
            begin_wait(per, i, kind);
            if killable {
                t.wait_on_page_writeback_killable(frame)
            } else {
                t.wait_on_page_writeback(frame);
                Ok(())
            }
        }
    };
    if r.is_err() {
        s.cancelled.fetch_add(1, Ordering::Relaxed);
        sched::current().cancel.store(false, Ordering::Relaxed);
    }
    s.other_waits.fetch_add(1, Ordering::Relaxed);
    per.phase.store(RUNNING, Ordering::Relaxed);
}

fn worker(s: &Shared, idx: usize, killable: bool, o: &Options) {
    let me = sched::current();
    sched::thread::set_wait_desc(&me, &TORTURE_WAIT);
    let tid = me.id;
    let per = &s.per[idx];
    let mut rng = Rng::new(o.seed ^ ((idx as u64 + 1) << 20));
    let n = s.pages.len().max(s.tickets.len()) as u64;
    let mut burst = 0;
    while !s.stop.load(Ordering::Acquire) {
        if o.lockstep {
            if burst == 0 {
                barrier(s, &me);
                burst = 1 + rng.below(4);
                continue;
            }
            burst -= 1;
        }
        if s.pause.load(Ordering::Acquire) {
            per.phase.store(PARKED, Ordering::Relaxed);
            s.parked.fetch_add(1, Ordering::AcqRel);
            while s.pause.load(Ordering::Acquire) && !s.stop.load(Ordering::Acquire) {
                timer::sleep_ns(MS);
            }
            s.parked.fetch_sub(1, Ordering::AcqRel);
            per.phase.store(RUNNING, Ordering::Relaxed);
            continue;
        }
        let i = rng.below(n) as usize;
        let table = match s.target {
            Target::Pages(t) => Some(t),
            Target::Ticket => None,
        };
        if let Some(t) = table
            && o.mixed_waits
        {
            let which = rng.below(16);
            if which < 3 {
                other_wait(s, t, per, i, killable, which);
                continue;
            }
        }
        begin_wait(
            per,
            i,
            match (table, killable) {
                (None, _) => Kind::Ticket,
                (Some(_), true) => Kind::LockKillable,
                (Some(_), false) => Kind::Lock,
            },
        );
        let t0 = time::rdtsc();
        match s.target {
            Target::Ticket => s.tickets[i].lock(),
            Target::Pages(t) if killable => {
                if t.lock_page_killable(&s.pages[i]).is_err() {
                    s.cancelled.fetch_add(1, Ordering::Relaxed);
                    me.cancel.store(false, Ordering::Relaxed);
                    per.phase.store(RUNNING, Ordering::Relaxed);
                    continue;
                }
            }
            Target::Pages(t) => t.lock_page(&s.pages[i]),
        }
        event(s, i);
        let waited = time::rdtsc() - t0;
        per.max_wait.fetch_max(waited, Ordering::Relaxed);
        if !per.waits.is_empty() {
            let b = &per.waits[bucket_of(time::cycles_to_ns(waited))];
            b.store(b.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
        }
        per.phase.store(HOLDING, Ordering::Relaxed);
        // Detector 1. Relaxed suffices: two holders at once would both see
        // the word in one coherence order, and one CAS must fail.
        let owner = s.pages.get(i).map(|p| p.lock_owner());
        let claimed = owner.is_some_and(|w| {
            w.compare_exchange(0, tid, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        });
        if let Some(w) = owner
            && !claimed
            && s.owner_failures.fetch_add(1, Ordering::Relaxed) < 3
        {
            log::error!(
                "pagelock-torture: MUTUAL EXCLUSION BROKEN: tid {tid} locked page {i} held by tid {}",
                w.load(Ordering::Relaxed)
            );
        }
        // One hold in 8 starts writeback (flusher style: wait for the last
        // one to end first, under the lock), ended after the unlock.
        let writeback = table.filter(|_| o.mixed_waits && rng.below(8) == 0);
        if let Some(t) = writeback {
            begin_wait(per, i, Kind::WaitWriteback);
            t.wait_on_page_writeback(&s.pages[i]);
            per.phase.store(HOLDING, Ordering::Relaxed);
            let _ = t.start_page_writeback(&s.pages[i]);
            event(s, i);
            s.writebacks.fetch_add(1, Ordering::Relaxed);
        }
        for _ in 0..rng.below(o.max_hold_spins + 1) {
            core::hint::spin_loop();
        }
        if o.hold_yield_one_in != 0 && rng.below(o.hold_yield_one_in) == 0 {
            sched::yield_now();
        }
        if let Some(w) = owner
            && claimed
            && w.compare_exchange(tid, 0, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            s.owner_failures.fetch_add(1, Ordering::Relaxed);
        }
        match s.target {
            Target::Ticket => s.tickets[i].unlock(),
            Target::Pages(t) => {
                let page = &s.pages[i];
                let slow = page.flags().test(PG_WAITERS);
                let t0 = time::rdtsc();
                t.unlock_page(page);
                if slow {
                    s.max_walk.fetch_max(time::rdtsc() - t0, Ordering::Relaxed);
                }
                event(s, i);
            }
        }
        per.phase.store(RUNNING, Ordering::Relaxed);
        per.acquisitions.fetch_add(1, Ordering::Relaxed);
        for _ in 0..rng.below(o.max_hold_spins + 1) {
            core::hint::spin_loop();
        }
        if let Some(t) = writeback {
            // The page's own reference (ours, through `s.pages`) is held
            // across the end, as the page cache's is.
            let _ = t.end_page_writeback(&s.pages[i], WriteResult::Written);
            event(s, i);
        }
    }
    me.cancel.store(false, Ordering::Relaxed);
    per.phase.store(EXITED, Ordering::Release);
}

fn stats_line(s: &Shared, o: &Options, quiesced: u64) {
    let counts: Vec<u64> = s
        .per
        .iter()
        .map(|p| p.acquisitions.load(Ordering::Relaxed))
        .collect();
    let total: u64 = counts.iter().sum();
    let (max, min) = (
        counts.iter().copied().max().unwrap_or(0),
        counts.iter().copied().min().unwrap_or(0),
    );
    let fail = s.owner_failures.load(Ordering::Relaxed);
    if o.verbose {
        println!(
            "    # pagelock-torture: Acquisitions: Total {total} Max/Min {max}/{min}{} Fail {fail}{} Cancelled {} Quiesced {quiesced}",
            if max / 2 > min { " ???" } else { "" },
            if fail > 0 { " !!!" } else { "" },
            s.cancelled.load(Ordering::Relaxed),
        );
    }
}

/// Names the workers still waiting after `QUIESCE_NS` without progress,
/// and whether the bit each one waits on is clear (a lost wake-up).
fn diagnose_stuck(s: &Shared, table: Option<&Table>, r: &mut Report) {
    let mut lost = 0;
    let mut waiting = 0;
    for (k, p) in s.per.iter().enumerate() {
        if p.phase.load(Ordering::Relaxed) != WAITING {
            continue;
        }
        waiting += 1;
        let i = p.page.load(Ordering::Relaxed);
        let kind = Kind::from_u8(p.kind.load(Ordering::Relaxed));
        let Some(page) = s.pages.get(i) else { continue };
        let set = page.flags().test(kind.bit());
        let queued = table.map_or(0, |t| t.waiters_queued(page));
        if !set {
            lost += 1;
        }
        if waiting <= 4 {
            log::error!(
                "pagelock-torture: worker {k} still waits in {} for page {i} after {} ms: PG_locked={} PG_writeback={} PG_waiters={} queued={queued}{}",
                kind.name(),
                QUIESCE_NS / MS,
                page.flags().test(PG_LOCKED) as u8,
                page.flags().test(PG_WRITEBACK) as u8,
                page.flags().test(PG_WAITERS) as u8,
                if set {
                    ""
                } else {
                    " -> LOST WAKE-UP (bit clear, waiter asleep)"
                }
            );
        }
    }
    r.lost_wakeups += lost;
    r.failures.push(format!("no progress for {} ms: {waiting} of {} workers stuck waiting on a page, {lost} of them on a clear bit (lost wake-up)", QUIESCE_NS / MS, s.per.len()));
}

/// Detector 4's state between looks: when the next look is due and what
/// the last one saw of each worker.
struct Watch {
    next: u64,
    seen: Vec<Sighting>,
}

impl Watch {
    /// Looks if a look is due (every `LOST_SCAN_NS`; only with a table to
    /// look at).
    fn maybe_look(&mut self, run: &Run, now: u64, r: &mut Report) {
        if run.table.is_some() && now >= self.next {
            watch_lost_wakeups(run, &mut self.seen, r);
            self.next = now + LOST_SCAN_NS;
        }
    }
}

/// Detector 4, one look (module docs). `seen[k]` is what the watch last
/// saw of worker `k`.
fn watch_lost_wakeups(run: &Run, seen: &mut [Sighting], r: &mut Report) {
    let s = &run.s;
    let now = time::now_ns();
    let ticks: Vec<u64> = (0..run.cpus)
        .map(|c| percpu::cpu(c).ticks.load(Ordering::Relaxed))
        .collect();
    for (k, per) in s.per.iter().enumerate() {
        let Some(thread) = run.threads.get(k) else {
            continue;
        };
        let seq = per.seq.load(Ordering::Relaxed) + 1;
        let i = per.page.load(Ordering::Relaxed);
        let kind = Kind::from_u8(per.kind.load(Ordering::Relaxed));
        let (Some(page), Some(events)) = (s.pages.get(i), s.events.get(i)) else {
            continue;
        };
        let asleep_on_clear_bit = per.phase.load(Ordering::Relaxed) == WAITING
            && thread.state.load(Ordering::Acquire) == sched::SLEEPING
            && !page.flags().test(kind.bit());
        let ev = events.load(Ordering::Relaxed);
        let last = &seen[k];
        if !asleep_on_clear_bit || last.seq != seq || last.events != ev {
            // Not (or no longer) a candidate, or a new one: watch anew.
            seen[k] = if asleep_on_clear_bit {
                Sighting {
                    seq,
                    events: ev,
                    at_ns: now,
                    ticks: ticks.clone(),
                }
            } else {
                Sighting::default()
            };
            continue;
        }
        if now - last.at_ns < LOST_NS {
            continue;
        }
        if ticks
            .iter()
            .zip(&last.ticks)
            .any(|(t, t0)| t - t0 < MIN_TICKS)
        {
            // Some vCPU barely ran: a wake-up may just be late. Watch on
            // from here.
            seen[k].at_ns = now;
            seen[k].ticks = ticks.clone();
            continue;
        }
        let ms = (now - last.at_ns) / MS;
        let bit = if kind.bit() == PG_WRITEBACK {
            "PG_writeback"
        } else {
            "PG_locked"
        };
        log::error!(
            "pagelock-torture: LOST WAKE-UP: worker {k} asleep in {} on page {i} for {ms} ms with {bit} clear and no lock, unlock or writeback of the page meanwhile",
            kind.name(),
        );
        r.lost_wakeups += 1;
        r.failures.push(format!(
            "lost wake-up: worker {k} asleep in {} on page {i} for {ms} ms, {bit} clear, page idle",
            kind.name()
        ));
        seen[k] = Sighting::default();
    }
}

/// Pauses the workers and waits for all to park. On a timeout, names the
/// stuck waiters and whether each one's page is free (a lost wake-up).
/// The lost wake-up watch (detector 4) goes on while it waits: a waiter
/// stranded just before the pause is named by the watch within `LOST_NS`,
/// not only classified by `diagnose_stuck` after `QUIESCE_NS`.
fn quiesce(run: &Run, watch: &mut Watch, r: &mut Report) -> bool {
    let (s, table) = (&*run.s, run.table);
    s.pause.store(true, Ordering::SeqCst);
    let t0 = time::now_ns();
    let n = s.per.len();
    while s.parked.load(Ordering::Acquire) < n {
        let now = time::now_ns();
        if now - t0 > QUIESCE_NS {
            diagnose_stuck(s, table, r);
            return false;
        }
        watch.maybe_look(run, now, r);
        if !r.ok() {
            return false;
        }
        timer::sleep_ns(MS);
    }
    // Everybody parked: no page may be locked, claimed or have a queued
    // waiter left.
    if let Some(t) = table {
        for (i, page) in s.pages.iter().enumerate() {
            let queued = t.waiters_queued(page);
            if page.flags().test(PG_LOCKED)
                || page.flags().test(PG_WRITEBACK)
                || page.lock_owner().load(Ordering::Relaxed) != 0
                || queued != 0
            {
                r.failures.push(format!(
                    "page {i} at quiescence: PG_locked={} PG_writeback={} owner={} queued={queued}",
                    page.flags().test(PG_LOCKED) as u8,
                    page.flags().test(PG_WRITEBACK) as u8,
                    page.lock_owner().load(Ordering::Relaxed)
                ));
                return false;
            }
        }
    }
    r.quiesced += 1;
    s.pause.store(false, Ordering::SeqCst);
    true
}

/// Runs one torture (or measurement) and prints its verdict.
/// One run in progress: what the phases of [`run`] share.
struct Run<'o> {
    o: &'o Options,
    s: Arc<Shared>,
    table: Option<&'static Table>,
    cpus: usize,
    threads: Vec<ThreadRef>,
    /// Indices into `threads` of the workers that lock killably.
    killables: Vec<usize>,
    hung0: u64,
    old_hung_limit: u64,
    jitter0: u64,
}

/// Runs one torture: set up, spawn the workers, drive them (cancelling,
/// stuttering, watching the lockstep rounds and the watchdog) until the
/// time is up or a detector fires, stop and join them, collect the
/// numbers, and report. Each phase is one function below.
pub fn run(target: Target, o: &Options) -> Report {
    let mut r = Report::default();
    let Some(mut run) = set_up(target, o, &mut r) else {
        return r;
    };
    announce(&run);
    spawn_workers(&mut run, &mut r);
    let mut watch = drive(&run, &mut r);
    stop_and_join(&run, &mut watch, &mut r);
    collect(&run, &mut r);
    report(&run, &r);
    if r.unfinished != 0 || r.failures.iter().any(|f| f.contains("left locked")) {
        // Sleeping threads hold the shared state (and its frames) anyway; a
        // page left locked must not reach the allocator's free checks
        // either: keep it all for the rest of the run.
        core::mem::forget(run.s);
    }
    r
}

/// Phase 1: the frames (or ticket locks) and the shared state; the
/// hung-task limit scaled down for the run.
fn set_up<'o>(target: Target, o: &'o Options, r: &mut Report) -> Option<Run<'o>> {
    let cpus = if o.cpus == 0 {
        online_cpus()
    } else {
        o.cpus.min(online_cpus())
    };
    let nthreads = o.threads_per_cpu * cpus;
    r.threads = nthreads;
    let table = match target {
        Target::Pages(t) => Some(t),
        Target::Ticket => None,
    };
    let mut frames: Vec<Frame> = Vec::new();
    if table.is_some() {
        for _ in 0..o.pages {
            match alloc_pages(0, AllocFlags::ZERO) {
                Some(p) => frames.push(p),
                None => {
                    r.failures.push(String::from("out of frames"));
                    return None;
                }
            }
        }
    }
    let s = Arc::new(Shared {
        target,
        pages: frames,
        tickets: if table.is_none() {
            (0..o.pages).map(|_| TicketLock::default()).collect()
        } else {
            Vec::new()
        },
        per: (0..nthreads)
            .map(|_| PerThread {
                waits: if o.wait_hist {
                    (0..NUM_BUCKETS).map(|_| AtomicU32::new(0)).collect()
                } else {
                    Vec::new()
                },
                ..PerThread::default()
            })
            .collect(),
        stop: AtomicBool::new(false),
        pause: AtomicBool::new(false),
        parked: AtomicUsize::new(0),
        owner_failures: AtomicU64::new(0),
        cancelled: AtomicU64::new(0),
        max_walk: AtomicU64::new(0),
        events: (0..o.pages).map(|_| AtomicU64::new(0)).collect(),
        other_waits: AtomicU64::new(0),
        writebacks: AtomicU64::new(0),
        round: AtomicU64::new(0),
        arrived: AtomicUsize::new(0),
        barrier: WaitQueue::new(),
    });
    let killables = (0..nthreads)
        .filter(|&k| {
            table.is_some()
                && o.killable_one_in != 0
                && k % o.killable_one_in == o.killable_one_in - 1
        })
        .collect();
    Some(Run {
        o,
        s,
        table,
        cpus,
        threads: Vec::new(),
        killables,
        hung0: watchdog::HUNG_REPORTS.load(Ordering::Relaxed),
        jitter0: jitter::total_delays(),
        old_hung_limit: watchdog::HUNG_LIMIT_NS.swap(HUNG_LIMIT_NS, Ordering::Relaxed),
    })
}

/// Phase 2: one line saying what runs.
fn announce(run: &Run) {
    let o = run.o;
    if !o.verbose {
        return;
    }
    println!(
        "    # pagelock-torture: {}: {} threads ({} per CPU x {} CPUs), {} pages, {} ms{}, 1 in {} killable, seed {}, protocol: {}",
        o.name,
        run.s.per.len(),
        o.threads_per_cpu,
        run.cpus,
        o.pages,
        o.duration_ms,
        if o.lockstep { ", lockstep" } else { "" },
        o.killable_one_in,
        o.seed,
        run.table
            .map_or(String::from("ticket spin lock"), |t| format!(
                "{}",
                kernel::pagelock::Describe(t.config())
            ))
    );
}

/// Phase 3: the workers, spread over the CPUs.
fn spawn_workers(run: &mut Run, r: &mut Report) {
    for k in 0..run.s.per.len() {
        let (s, o, kill) = (run.s.clone(), *run.o, run.killables.contains(&k));
        match sched::spawn(&format!("pltort{k}"), Some(k % run.cpus), move || {
            worker(&s, k, kill, &o)
        }) {
            Ok(t) => run.threads.push(t),
            Err(e) => {
                r.failures.push(format!("spawn {k}: {e:?}"));
                break;
            }
        }
    }
}

/// Phase 4: the controller loop, until the time is up or a detector
/// fires: random cancellations, stutter pauses, the lockstep round
/// watch, the owner-word and hung-task detectors, periodic stats.
fn drive(run: &Run, r: &mut Report) -> Watch {
    let (o, s) = (run.o, &run.s);
    let start = time::now_ns();
    let end = start + o.duration_ms * MS;
    let (mut next_stats, mut next_stutter) = (start + 1000 * MS, start + o.stutter_ms * MS);
    let (mut last_round, mut last_round_at) = (0, start);
    let mut watch = Watch {
        next: start + LOST_SCAN_NS,
        seen: alloc::vec![Sighting::default(); s.per.len()],
    };
    let mut rng = Rng::new(o.seed);
    // Indices into `run.threads`: the spawn may have stopped early.
    let killables: Vec<&ThreadRef> = run
        .killables
        .iter()
        .filter_map(|&k| run.threads.get(k))
        .collect();
    while r.ok() && time::now_ns() < end {
        timer::sleep_ns(MS);
        if !killables.is_empty() {
            for _ in 0..o.cancels_per_tick {
                let t = killables[rng.below(killables.len() as u64) as usize];
                t.cancel.store(true, Ordering::SeqCst);
                sched::wake(t);
            }
        }
        let now = time::now_ns();
        if o.stutter_ms != 0 && now >= next_stutter {
            quiesce(run, &mut watch, r);
            next_stutter = time::now_ns() + o.stutter_ms * MS;
        }
        if o.lockstep {
            let round = s.round.load(Ordering::Acquire);
            if round != last_round {
                (last_round, last_round_at) = (round, now);
            } else if now - last_round_at > QUIESCE_NS {
                diagnose_stuck(s, run.table, r);
            }
            r.quiesced = round;
        }
        watch.maybe_look(run, now, r);
        if now >= next_stats {
            stats_line(s, o, r.quiesced);
            let total = s
                .per
                .iter()
                .map(|p| p.acquisitions.load(Ordering::Relaxed))
                .sum();
            bench::progress(
                o.name,
                total,
                "acquisitions",
                (now - start) / MS,
                o.duration_ms,
            );
            next_stats = now + 1000 * MS;
        }
        let owner_failures = s.owner_failures.load(Ordering::Relaxed);
        if owner_failures > 0 {
            r.failures
                .push(format!("mutual exclusion broken {owner_failures} times"));
        }
        if watchdog::HUNG_REPORTS.load(Ordering::Relaxed) != run.hung0 {
            r.failures.push(String::from("hung task reported"));
        }
    }
    r.elapsed_ns = time::now_ns() - start;
    watch
}

/// Phase 5: stop the workers (resume parked ones, cancel killable ones)
/// and wait for them; after a failure, kick every page's queue so that
/// threads stranded by a broken protocol can finish (module docs).
fn stop_and_join(run: &Run, watch: &mut Watch, r: &mut Report) {
    let s = &run.s;
    s.stop.store(true, Ordering::SeqCst);
    s.pause.store(false, Ordering::SeqCst);
    s.barrier.wake_up_all();
    for t in run.killables.iter().filter_map(|&k| run.threads.get(k)) {
        t.cancel.store(true, Ordering::SeqCst);
        sched::wake(t);
    }
    let t0 = time::now_ns();
    let mut kicked = false;
    loop {
        let live = run
            .threads
            .iter()
            .filter(|t| !t.exited.load(Ordering::Acquire))
            .count();
        if live == 0 {
            break;
        }
        let now = time::now_ns();
        let waited = now - t0;
        if !kicked {
            // A wake-up lost just before the stop is still named as one
            // (the watch needs `LOST_NS`, well within `JOIN_NS / 2`).
            watch.maybe_look(run, now, r);
        }
        if !kicked && (waited > JOIN_NS / 2 || !r.ok()) {
            if r.ok() {
                r.failures.push(format!(
                    "{live} workers still running {} ms after the stop",
                    waited / MS
                ));
                diagnose_stuck(s, run.table, r);
            }
            kicked = true;
        }
        if kicked && let Some(t) = run.table {
            // Rescue kick (module docs): never reached by a correct run.
            // PG_WAITERS first, so a broken protocol's stale clear does
            // not trip pagesync's debug invariant check in the walk.
            for p in &s.pages {
                t.mark_waiters_stale(p);
                t.wake_page_bit(p, PG_LOCKED);
                t.mark_waiters_stale(p);
                t.wake_page_bit(p, PG_WRITEBACK);
            }
        }
        if waited > JOIN_NS {
            r.unfinished = live;
            break;
        }
        timer::sleep_ns(5 * MS);
    }
}

/// Phase 6: the numbers and the end-of-run checks (hung tasks, workers
/// that never finished, pages left locked).
fn collect(run: &Run, r: &mut Report) {
    let s = &run.s;
    let hung = watchdog::HUNG_REPORTS.load(Ordering::Relaxed) - run.hung0;
    watchdog::HUNG_LIMIT_NS.store(run.old_hung_limit, Ordering::Relaxed);
    r.hung_reports = hung;
    if hung > 0 && !r.failures.iter().any(|f| f.starts_with("hung")) {
        r.failures.push(format!("{hung} hung task reports"));
    }
    if r.unfinished > 0 {
        r.failures.push(format!(
            "{} workers never finished (left asleep; their pages are leaked)",
            r.unfinished
        ));
    }
    r.owner_failures = s.owner_failures.load(Ordering::Relaxed);
    r.cancelled = s.cancelled.load(Ordering::Relaxed);
    r.per_thread = s
        .per
        .iter()
        .map(|p| p.acquisitions.load(Ordering::Relaxed))
        .collect();
    r.total = r.per_thread.iter().sum();
    r.max_wait_ns = time::cycles_to_ns(
        s.per
            .iter()
            .map(|p| p.max_wait.load(Ordering::Relaxed))
            .max()
            .unwrap_or(0),
    );
    r.max_wake_walk_ns = time::cycles_to_ns(s.max_walk.load(Ordering::Relaxed));
    if run.o.wait_hist {
        let mut h = Hist::new();
        for p in &s.per {
            h.add_counts(p.waits.iter().map(|b| u64::from(b.load(Ordering::Relaxed))));
        }
        r.waits = Some(h);
    }
    r.other_waits = s.other_waits.load(Ordering::Relaxed);
    r.writebacks = s.writebacks.load(Ordering::Relaxed);
    r.jitter_delays = jitter::total_delays() - run.jitter0;
    if r.unfinished == 0 {
        for (i, p) in s.pages.iter().enumerate() {
            if p.flags().test(PG_LOCKED) || p.lock_owner().load(Ordering::Relaxed) != 0 {
                r.failures
                    .push(format!("page {i} left locked after the run"));
            }
            if p.flags().test(PG_WRITEBACK) {
                r.failures
                    .push(format!("page {i} left under writeback after the run"));
            }
        }
    }
}

/// Phase 7: the final stats line and the locktorture-style verdict.
fn report(run: &Run, r: &Report) {
    let o = run.o;
    stats_line(&run.s, o, r.quiesced);
    if !o.verbose {
        return;
    }
    let (max, min) = r.max_min();
    println!(
        "    # pagelock-torture: {}: {} acquisitions in {} ms, per thread max/min {max}/{min}, Jain {:.3}, max wait {} us, longest wake walk {} us, {} cancellations, {} quiescence checks",
        o.name,
        r.total,
        r.elapsed_ns / MS,
        r.jain(),
        r.max_wait_ns / 1000,
        r.max_wake_walk_ns / 1000,
        r.cancelled,
        r.quiesced
    );
    println!(
        "    # pagelock-torture: {}: {} shared/drop/writeback waits, {} writebacks; jitter: {}, {} delays in this run",
        o.name,
        r.other_waits,
        r.writebacks,
        jitter::Summary,
        r.jitter_delays
    );
    if r.ok() {
        println!("    # pagelock-torture: SUCCESS");
    } else {
        println!(
            "    # pagelock-torture: FAILURE {} ms into {}: {}",
            r.elapsed_ns / MS,
            o.name,
            r.failures.join("; ")
        );
    }
}
