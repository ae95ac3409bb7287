//! The page lock, as the kernel uses it: one global hashed page wait table
//! built from the boot parameters, and a thin API over it.
//!
//! Mental model: the protocol itself (flag bits, wait table, hand-off,
//! bounded unfairness, killable waits, the known-bad variants) is the
//! portable `pagesync` crate, model-checked with loom on the host. This
//! module only decides *which* protocol runs in this boot ([`init`], from
//! `bits=`, `protocol=`, `unfairness=`, `bookmarks=`, `bookmark_batch=`,
//! `killable_fix=`, `bug=`), whether its race points jitter (`jitter=`,
//! `jitter_rate=`, [`crate::sched::jitter`]) and runs it on the scheduler
//! ([`crate::sched::KernelPlatform`]). Its checks live in the `suites`
//! crate (`kernel/suites/src/pagelock`): the KTAP suite, the locktorture-style torture
//! (owner word per page, quiescence checks for lost wake-ups, the hung-task
//! watchdog), the thundering-herd walk and the benchmarks.
//!
//! Tests that need another protocol build their own table
//! ([`leak_table`]) from [`config`] with one knob changed, so a `bug=` given
//! at boot reaches them too.

use alloc::boxed::Box;

use pagesync::{Config, Interrupted, Page, PageWaitTable};

use crate::{
    mm::Frame,
    params::Params,
    sched::{KernelPlatform, jitter},
};

/// The page wait table type the kernel runs.
pub type Table = PageWaitTable<KernelPlatform>;

static TABLE: spin::Once<Table> = spin::Once::new();

/// Builds the global table from the boot parameters and prints the active
/// protocol. Call once, after `sched::init` (waiters need threads).
pub fn init(params: &Params) {
    let cfg = params.pagelock;
    let t = TABLE.call_once(|| Table::new(cfg));
    if let Some(bug) = cfg.bug {
        crate::println!("pagelock: RUNNING KNOWN-BAD VARIANT {bug}");
    }
    if cfg.protocol.is_known_bad() {
        crate::println!(
            "pagelock: RUNNING KNOWN-BAD VARIANT protocol={}",
            cfg.protocol
        );
    }
    log::info!("pagelock: {}", Describe(t.config()));
    // The race points of pagesync's non-generic code (flags, reference
    // counts) reach the scheduler's jitter through this hook (an indirect
    // call after every flags access, so only when jitter is on); the
    // generic ones call `KernelPlatform::race_point` directly.
    jitter::configure(params.jitter.on, params.jitter.rate, params.seed);
    if jitter::enabled() {
        pagesync::race::install(<KernelPlatform as pagesync::Platform>::race_point);
    }
    log::info!("pagelock: jitter {}", jitter::Summary);
}

/// The global table.
///
/// # Panics
///
/// Before [`init`].
pub fn table() -> &'static Table {
    TABLE.get().expect("pagelock::init not called")
}

/// The global table on the lock and unlock fast paths: [`table`] without
/// its "initialised yet?" load, so that an uncontended `lock_page` touches
/// nothing but the page (`pagelock_uncontended` measures it).
#[inline]
fn table_initialised() -> &'static Table {
    debug_assert!(TABLE.is_completed(), "pagelock::init not called");
    // SAFETY: `init` runs on the boot CPU before any thread or other CPU
    // runs kernel code that locks pages (the scheduler starts threads
    // after it, and nothing before it in `kernel_main` locks a page), and
    // the table is never torn down. Debug builds, which every test runs,
    // check it above.
    unsafe { TABLE.get_unchecked() }
}

/// The protocol configuration of this boot.
pub fn config() -> Config {
    *table().config()
}

/// A table that lives for the rest of the run. Tests use it: a broken
/// protocol may leave threads asleep on it forever, so it is never freed.
pub fn leak_table(cfg: Config) -> &'static Table {
    Box::leak(Box::new(Table::new(cfg)))
}

/// `folio_lock` on the global table.
#[inline]
pub fn lock_page(page: &Page) {
    table_initialised().lock_page(page)
}

/// `folio_lock_killable`: gives up when the thread's `cancel` is set.
pub fn lock_page_killable(page: &Page) -> Result<(), Interrupted> {
    table().lock_page_killable(page)
}

/// `folio_unlock`.
#[inline]
pub fn unlock_page(page: &Page) {
    table_initialised().unlock_page(page)
}

/// `folio_wait_locked_killable`.
pub fn wait_on_page_locked_killable(page: &Page) -> Result<(), Interrupted> {
    table().wait_on_page_locked_killable(page)
}

/// `folio_wait_writeback_killable`.
pub fn wait_on_page_writeback_killable(page: &Page) -> Result<(), Interrupted> {
    table().wait_on_page_writeback_killable(page)
}

/// `folio_put_wait_locked`: queue for the lock, give up `frame`'s
/// reference while asleep (freeing the frame if it was the last), and
/// return without touching the page again.
pub fn put_and_wait_on_page_locked(frame: Frame, killable: bool) -> Result<(), Interrupted> {
    frame.put_via(|page, free| table().put_and_wait_on_page_locked(page, killable, free))
}

/// Prints a [`Config`] as `key=value` boot parameters.
pub struct Describe<'a>(pub &'a Config);

impl core::fmt::Display for Describe<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter) -> core::fmt::Result {
        let c = self.0;
        let on = |b: bool| if b { "on" } else { "off" };
        write!(
            f,
            "bits={} ({} queues) protocol={} unfairness={} bookmarks={} bookmark_batch={} killable_fix={} gup={} bug={}",
            c.table_bits,
            1u32 << c.table_bits,
            c.protocol.name(),
            c.unfairness,
            on(c.bookmarks),
            c.bookmark_batch,
            on(c.killable_fix),
            c.gup.name(),
            c.bug.map_or("none", |b| b.name())
        )?;
        if c.is_known_bad() {
            f.write_str(" (KNOWN-BAD)")?;
        }
        Ok(())
    }
}
