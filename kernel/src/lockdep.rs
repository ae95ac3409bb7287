//! Lock-order check (debug builds): a small lockdep.
//!
//! Every spin lock of the kernel is a pagesync [`RawSpinLock`](pagesync::sync::RawSpinLock) underneath
//! (see [`crate::sync`] for the list), and in debug builds each one
//! remembers where it was made: its *class*, as Linux's lockdep keys a
//! class by its initialisation site. Each acquisition and release is
//! reported here (`pagesync::sync::install_lock_hooks`). For every CPU this
//! module keeps the stack of spin locks it holds; when a lock of class B is
//! taken while one of class A is held, the edge A -> B enters a global
//! graph, with both acquisition sites the first time it is seen. A new edge
//! that closes a cycle is a possible deadlock (CPU 1 holds A and spins on
//! B while CPU 2 holds B and spins on A), found even if the two orders
//! never ran at the same time: the kernel panics naming the sites of both
//! orders. Two locks of one class may nest only in ascending address
//! order (the rule `mm::pcp` follows to drain every CPU's stack); taking a
//! lock this CPU already holds panics too.
//!
//! What it does not see: the page lock and PG_writeback (sleeping bit
//! locks; their waits are checked by the tortures and loom), and a
//! try-lock orders nothing (it cannot deadlock), though it is held from
//! then on and orders what is taken under it. Release builds compile the
//! reports out (`pagesync` reports only under `debug_assertions`); the test
//! suite boots debug kernels, so every case runs under the check.
//!
//! Differences from Linux's lockdep: no interrupt-state tracking (a lock
//! taken in an interrupt handler with IF on elsewhere), no read/write
//! locks, and a fixed class table ([`MAX_CLASSES`]); a spin lock held
//! across a thread switch (the run queue's, handed to the next thread on
//! the same CPU) stays on the CPU's stack, which is where it is released.

use core::panic::Location;
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering};

use crate::arch::percpu;
use crate::config::MAX_CPUS;

/// Most distinct lock classes (creation sites) the graph holds.
pub const MAX_CLASSES: usize = 256;
/// Most spin locks one CPU holds at once (`mm::pcp::with_all_drained`
/// holds every CPU's stack lock and the buddy lists).
const MAX_HELD: usize = MAX_CPUS + 16;
/// Most distinct edges whose first sites are remembered.
const MAX_EDGES: usize = 1024;

const WORDS: usize = MAX_CLASSES / 64;

/// Class table: the creation site of each class, found by hashing the
/// `Location` pointer (open addressing). Entries only go from null to a
/// site, never back.
static CLASSES: [AtomicPtr<Location<'static>>; MAX_CLASSES] =
    [const { AtomicPtr::new(core::ptr::null_mut()) }; MAX_CLASSES];
/// `EDGES[a][w]` bit `b % 64` of word `b / 64`: class `b` was taken while
/// class `a` was held.
static EDGES: [[AtomicU64; WORDS]; MAX_CLASSES] =
    [const { [const { AtomicU64::new(0) }; WORDS] }; MAX_CLASSES];

/// Where an edge was first seen: the held lock's acquisition site and the
/// new one's.
#[derive(Clone, Copy)]
struct EdgeSites {
    from: u16,
    to: u16,
    from_site: &'static Location<'static>,
    to_site: &'static Location<'static>,
}

/// Edges are added and cycles searched under this flag, a bare
/// test-and-set: a `RawSpinLock` here would report to this very module.
/// Callers have interrupts masked (see [`acquired`]).
static GRAPH_BUSY: AtomicBool = AtomicBool::new(false);
/// Under `GRAPH_BUSY`: the first sites of each edge.
static mut SITES: [Option<EdgeSites>; MAX_EDGES] = [None; MAX_EDGES];
static SITES_USED: AtomicUsize = AtomicUsize::new(0);

/// Set once a report is being made (or the table overflowed): the check
/// stands down, so the panic path's own locks are not checked.
static OFF: AtomicBool = AtomicBool::new(false);

#[derive(Clone, Copy)]
struct Held {
    class: u16,
    addr: usize,
    site: &'static Location<'static>,
}

/// One CPU's held stack. Only its own CPU touches it, with interrupts
/// masked; `busy` refuses re-entry from an NMI that interrupted an update
/// (the NMI's own locks then go untracked: a release of an address not on
/// the stack is ignored).
struct CpuHeld {
    busy: AtomicBool,
    depth: core::cell::UnsafeCell<usize>,
    held: core::cell::UnsafeCell<[Option<Held>; MAX_HELD]>,
}

// SAFETY: each `CpuHeld` is only reached by its own CPU (indexed by
// `percpu::cpu_index`), with interrupts masked and `busy` set against NMIs.
unsafe impl Sync for CpuHeld {}

static HELD: [CpuHeld; MAX_CPUS] = [const {
    CpuHeld {
        busy: AtomicBool::new(false),
        depth: core::cell::UnsafeCell::new(0),
        held: core::cell::UnsafeCell::new([None; MAX_HELD]),
    }
}; MAX_CPUS];

/// Starts the check (debug builds): from now on every `RawSpinLock` reports
/// here. Called on the boot CPU once its per-CPU area is set (application
/// processors set theirs before they take any lock).
pub fn init() {
    pagesync::sync::install_lock_hooks(acquired, released);
}

/// Whether the check runs in this build.
pub const fn enabled() -> bool {
    cfg!(debug_assertions)
}

/// The class id of a creation site, adding it if new.
fn class_of(site: &'static Location<'static>) -> Option<u16> {
    let p = site as *const Location<'static> as *mut Location<'static>;
    let start = (p as usize >> 3).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 56;
    for i in 0..MAX_CLASSES {
        let slot = (start + i) % MAX_CLASSES;
        // Relaxed: the entry is the pointer itself, nothing is published
        // with it; a CAS that loses to another CPU's insert of the same
        // site sees it in `Err`.
        let cur = CLASSES[slot].load(Ordering::Relaxed);
        if cur == p {
            return Some(slot as u16);
        }
        if cur.is_null() {
            match CLASSES[slot].compare_exchange(
                core::ptr::null_mut(),
                p,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Some(slot as u16),
                Err(other) if other == p => return Some(slot as u16),
                Err(_) => continue,
            }
        }
    }
    None
}

fn site_of(class: u16) -> &'static Location<'static> {
    // SAFETY: a class id is only made by `class_of`, which stored a
    // `&'static Location` in that slot.
    unsafe { &*CLASSES[class as usize].load(Ordering::Relaxed) }
}

fn has_edge(a: u16, b: u16) -> bool {
    // Relaxed: an edge bit is a monotonic fact; a CPU that misses a fresh
    // one takes `GRAPH_BUSY` and looks again under it.
    EDGES[a as usize][b as usize / 64].load(Ordering::Relaxed) & (1 << (b % 64)) != 0
}

/// The acquisition hook (installed in [`init`]).
fn acquired(
    class_site: &'static Location<'static>,
    addr: usize,
    site: &'static Location<'static>,
    is_try: bool,
) {
    if OFF.load(Ordering::Relaxed) {
        return;
    }
    // The per-CPU stack needs this CPU for the whole update: mask
    // interrupts (IrqMutex and the queue locks already have; the space
    // lock is taken with interrupts on and preemption off).
    let g = percpu::CpuGuard::new();
    let cpu = percpu::cpu_index();
    let me = &HELD[cpu];
    if me.busy.swap(true, Ordering::Relaxed) {
        return; // an NMI inside an update: see `CpuHeld`
    }
    let Some(class) = class_of(class_site) else {
        overflow("lock classes", MAX_CLASSES);
        return;
    };
    // SAFETY: this CPU's stack, interrupts masked, `busy` held.
    let (depth, held) = unsafe { (&mut *me.depth.get(), &mut *me.held.get()) };
    if !is_try {
        for h in held[..*depth].iter().flatten() {
            if h.class == class {
                if h.addr == addr {
                    report_recursive(h, site);
                }
                if h.addr > addr {
                    report_descending(h, addr, site);
                }
                continue;
            }
            if !has_edge(h.class, class) {
                add_edge(h, class, site);
            }
        }
    }
    if *depth == MAX_HELD {
        overflow("locks held by one CPU", MAX_HELD);
        me.busy.store(false, Ordering::Relaxed);
        return;
    }
    held[*depth] = Some(Held { class, addr, site });
    *depth += 1;
    me.busy.store(false, Ordering::Relaxed);
    drop(g);
}

/// The release hook.
fn released(addr: usize) {
    if OFF.load(Ordering::Relaxed) {
        return;
    }
    let g = percpu::CpuGuard::new();
    let me = &HELD[percpu::cpu_index()];
    if me.busy.swap(true, Ordering::Relaxed) {
        return;
    }
    // SAFETY: as in `acquired`.
    let (depth, held) = unsafe { (&mut *me.depth.get(), &mut *me.held.get()) };
    // Locks need not be released in reverse order: remove the newest entry
    // with this address (an untracked one, taken inside an NMI, is absent).
    if let Some(i) = (0..*depth)
        .rev()
        .find(|&i| held[i].is_some_and(|h| h.addr == addr))
    {
        held.copy_within(i + 1..*depth, i);
        *depth -= 1;
        held[*depth] = None;
    }
    me.busy.store(false, Ordering::Relaxed);
    drop(g);
}

/// Adds the edge `from.class -> to` (taken at `site`), first checking that
/// `to` does not already reach `from.class`: if it does, the new edge closes
/// a cycle and the kernel stops with both orders' sites.
fn add_edge(from: &Held, to: u16, site: &'static Location<'static>) {
    // Acquire pairs with the Release below by the previous holder: its
    // edges and sites are visible to this search.
    while GRAPH_BUSY
        .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
        .is_err()
    {
        core::hint::spin_loop();
    }
    if !has_edge(from.class, to) {
        let mut path = [0u16; MAX_CLASSES];
        if let Some(len) = find_path(to, from.class, &mut path) {
            report_cycle(from, to, site, &path[..len]);
        }
        EDGES[from.class as usize][to as usize / 64].fetch_or(1 << (to % 64), Ordering::Relaxed);
        let n = SITES_USED.load(Ordering::Relaxed);
        if n < MAX_EDGES {
            // SAFETY: `SITES` is only touched under `GRAPH_BUSY`, held.
            unsafe {
                (*&raw mut SITES)[n] = Some(EdgeSites {
                    from: from.class,
                    to,
                    from_site: from.site,
                    to_site: site,
                })
            };
            SITES_USED.store(n + 1, Ordering::Relaxed);
        }
    }
    // Release: pairs with the Acquire above of the next CPU to add an edge.
    GRAPH_BUSY.store(false, Ordering::Release);
}

/// A path of classes from `start` to `goal` through the edges, if any
/// (depth-first; `path` receives it, `start` first).
fn find_path(start: u16, goal: u16, path: &mut [u16; MAX_CLASSES]) -> Option<usize> {
    let mut seen = [0u64; WORDS];
    // Each frame: the class and the next successor to try.
    let mut stack = [(0u16, 0u16); MAX_CLASSES];
    let mut top = 1;
    stack[0] = (start, 0);
    seen[start as usize / 64] |= 1 << (start % 64);
    while top > 0 {
        let (c, next) = stack[top - 1];
        if c == goal {
            for (i, f) in stack[..top].iter().enumerate() {
                path[i] = f.0;
            }
            return Some(top);
        }
        let succ = (next as usize..MAX_CLASSES)
            .find(|&b| has_edge(c, b as u16) && seen[b / 64] & (1 << (b % 64)) == 0);
        match succ {
            Some(b) => {
                stack[top - 1].1 = b as u16 + 1;
                seen[b / 64] |= 1 << (b % 64);
                stack[top] = (b as u16, 0);
                top += 1;
            }
            None => top -= 1,
        }
    }
    None
}

fn first_sites(a: u16, b: u16) -> Option<EdgeSites> {
    let n = SITES_USED.load(Ordering::Relaxed);
    // SAFETY: called under `GRAPH_BUSY` (from `add_edge`).
    unsafe {
        (&(*&raw const SITES))[..n]
            .iter()
            .flatten()
            .find(|e| e.from == a && e.to == b)
            .copied()
    }
}

fn stand_down() {
    OFF.store(true, Ordering::Relaxed);
}

fn report_cycle(from: &Held, to: u16, site: &'static Location<'static>, path: &[u16]) -> ! {
    stand_down();
    // Formatted without the heap: the heap's own lock may be the one held.
    struct Opposite<'a>(&'a [u16]);
    impl core::fmt::Display for Opposite<'_> {
        fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
            for w in self.0.windows(2) {
                match first_sites(w[0], w[1]) {
                    Some(e) => write!(
                        f,
                        " class {} taken at {}, then class {} taken at {};",
                        site_of(w[0]),
                        e.from_site,
                        site_of(w[1]),
                        e.to_site
                    )?,
                    None => write!(f, " class {} then class {};", site_of(w[0]), site_of(w[1]))?,
                }
            }
            Ok(())
        }
    }
    panic!(
        "lockdep: lock order inversion: taking lock class {} at {site} while holding class {} (taken at {}); the opposite order was seen before:{}",
        site_of(to),
        site_of(from.class),
        from.site,
        Opposite(path)
    );
}

fn report_recursive(h: &Held, site: &'static Location<'static>) -> ! {
    stand_down();
    panic!(
        "lockdep: lock of class {} taken at {site} is already held by this CPU (taken at {}): it would spin for ever",
        site_of(h.class),
        h.site
    );
}

fn report_descending(h: &Held, addr: usize, site: &'static Location<'static>) -> ! {
    stand_down();
    panic!(
        "lockdep: two locks of class {} nested in descending address order: {:#x} taken at {site} while {:#x} is held (taken at {}); same-class locks nest in ascending order only",
        site_of(h.class),
        addr,
        h.addr,
        h.site
    );
}

fn overflow(what: &str, max: usize) {
    stand_down();
    panic!("lockdep: more than {max} {what}; raise the bound in kernel/src/lockdep.rs");
}

/// The graph seen so far, for the log: `(held class, taken class, first
/// held site, first taken site)`, each in the order first seen.
pub fn for_each_edge(
    mut f: impl FnMut(&Location<'static>, &Location<'static>, &Location<'static>, &Location<'static>),
) {
    let _g = percpu::CpuGuard::new();
    while GRAPH_BUSY
        .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
        .is_err()
    {
        core::hint::spin_loop();
    }
    let n = SITES_USED.load(Ordering::Relaxed);
    for i in 0..n {
        // SAFETY: under `GRAPH_BUSY`.
        if let Some(e) = unsafe { (*&raw const SITES)[i] } {
            f(site_of(e.from), site_of(e.to), e.from_site, e.to_site);
        }
    }
    GRAPH_BUSY.store(false, Ordering::Release);
}

/// How many lock classes have been seen.
pub fn classes() -> usize {
    CLASSES
        .iter()
        .filter(|c| !c.load(Ordering::Relaxed).is_null())
        .count()
}

/// How many spin locks this CPU holds, as the check sees them (0 in
/// release builds).
pub fn held_here() -> usize {
    let _g = percpu::CpuGuard::new();
    // SAFETY: this CPU's own counter, read with interrupts masked.
    unsafe { *HELD[percpu::cpu_index()].depth.get() }
}
