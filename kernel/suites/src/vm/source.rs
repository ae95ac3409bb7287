//! The `vm` suite's helpers: [`TestSource`], a [`MapSource`] backed by
//! frames in a `Vec` (what the page cache will be, minus the cache), and
//! [`Worker`], a thread that runs in a space on one CPU and does reads and
//! writes on command, spinning in between so it keeps its CPU, its CR3 and
//! its TLB entries.

use alloc::{sync::Arc, vec::Vec};
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use pagesync::flags::PG_LOCKED;

use kernel::{
    mm::{AllocFlags, Frame, alloc_pages},
    pagelock,
    sched::{self, ThreadRef},
    sync::IrqMutex,
    vm::{AddressSpace, MapSource, Mapping, VmError},
};

/// The 64-bit word each test page starts with: its index, tagged.
pub fn pattern(index: u64) -> u64 {
    0x5eed_0000_0000_0000 | index
}

/// Pages in frames; counts what the VM asks of it.
pub struct TestSource {
    pages: Vec<Frame>,
    /// Indices passed to `page_mkwrite`, in call order.
    pub mkwrites: IrqMutex<Vec<u64>>,
    /// Whether every `page_mkwrite` found its page locked.
    pub mkwrite_saw_lock: AtomicBool,
    /// The mappings the VM told us of and has not taken back.
    pub mappings: IrqMutex<Vec<Mapping>>,
    /// `unmapped` calls.
    pub unmaps: AtomicU64,
    /// `read_page` calls.
    pub gets: AtomicU64,
    /// The next `read_page` answers `Retry` (as if the page had just been
    /// truncated and replaced).
    pub retry_next_get: AtomicBool,
}

impl TestSource {
    /// `n` pages, page `i` starting with [`pattern`]`(i)`.
    pub fn new(n: u64) -> Arc<TestSource> {
        let pages = (0..n)
            .map(|i| {
                let f = alloc_pages(0, AllocFlags::ZERO).expect("a frame for a test page");
                // SAFETY: the frame is ours and mapped in the physical map.
                unsafe { f.virt().cast::<u64>().write(pattern(i)) };
                f
            })
            .collect();
        Arc::new(TestSource {
            pages,
            mkwrites: IrqMutex::new(Vec::new()),
            mkwrite_saw_lock: AtomicBool::new(true),
            mappings: IrqMutex::new(Vec::new()),
            unmaps: AtomicU64::new(0),
            gets: AtomicU64::new(0),
            retry_next_get: AtomicBool::new(false),
        })
    }

    /// Page `i`'s frame (the source's own reference).
    pub fn frame(&self, i: u64) -> &Frame {
        &self.pages[i as usize]
    }

    /// The first word of page `i`, read through the physical map.
    pub fn word(&self, i: u64) -> u64 {
        // SAFETY: our frame, mapped in the physical map.
        unsafe { self.frame(i).virt().cast::<u64>().read_volatile() }
    }
}

impl MapSource for TestSource {
    fn read_page(&self, index: u64) -> Result<Frame, VmError> {
        self.gets.fetch_add(1, Ordering::Relaxed);
        if self.retry_next_get.swap(false, Ordering::Relaxed) {
            return Err(VmError::Retry);
        }
        self.pages
            .get(index as usize)
            .cloned()
            .ok_or(VmError::Io { index })
    }

    fn page_mkwrite(&self, index: u64, page: &Frame) -> Result<(), VmError> {
        if !page.flags().test(PG_LOCKED) {
            self.mkwrite_saw_lock.store(false, Ordering::Relaxed);
        }
        // What the page cache does: wait for a stable page, then dirty it.
        // (wait_for_stable_page asserts the page is locked.)
        pagelock::table().wait_for_stable_page(page);
        pagelock::table().set_page_dirty(page);
        self.mkwrites.lock().push(index);
        Ok(())
    }

    fn mapped(&self, m: Mapping) {
        self.mappings.lock().push(m);
    }

    fn unmapped(&self, m: &Mapping) {
        let mut list = self.mappings.lock();
        let i = list
            .iter()
            .position(|x| x == m)
            .expect("unmapped a mapping that was never mapped");
        list.swap_remove(i);
        self.unmaps.fetch_add(1, Ordering::Relaxed);
    }
}

/// Runs `f` in a new thread on `cpu` inside `space` and returns its result.
pub fn run_in<R: Send + 'static>(
    space: &Arc<AddressSpace>,
    cpu: usize,
    f: impl FnOnce() -> R + Send + 'static,
) -> R {
    let out = Arc::new(kernel::sync::IrqMutex::new(None));
    let o = out.clone();
    let t = sched::spawn_in(
        "vm-test",
        Some(cpu),
        Some(space.thread_space()),
        move || {
            *o.lock() = Some(f());
        },
    )
    .expect("spawn a thread in the space");
    sched::join(&t);
    out.lock().take().expect("the thread's result")
}

/// A 64-bit load from a user address of the running thread's space.
pub fn read(va: u64) -> u64 {
    // SAFETY: the caller runs in a space where `va` is in a region (it may
    // fault, which the handler resolves).
    unsafe { (va as *const u64).read_volatile() }
}

/// A 64-bit store to a user address of the running thread's space.
pub fn write(va: u64, v: u64) {
    // SAFETY: as in `read`, in a writable region.
    unsafe { (va as *mut u64).write_volatile(v) }
}

const IDLE: u64 = 0;
const READ: u64 = 1;
const WRITE: u64 = 2;
const EXIT: u64 = 3;

struct Shared {
    /// The command; the worker sets it back to IDLE when done.
    cmd: AtomicU64,
    va: AtomicU64,
    value: AtomicU64,
}

/// A thread running in a space on one CPU, taking commands (module docs).
pub struct Worker {
    shared: Arc<Shared>,
    thread: ThreadRef,
}

impl Worker {
    pub fn start(space: &Arc<AddressSpace>, cpu: usize) -> Worker {
        let shared = Arc::new(Shared {
            cmd: AtomicU64::new(IDLE),
            va: AtomicU64::new(0),
            value: AtomicU64::new(0),
        });
        let s = shared.clone();
        let thread = sched::spawn_in(
            "vm-worker",
            Some(cpu),
            Some(space.thread_space()),
            move || {
                loop {
                    // Acquire pairs with the Release in `command`: the
                    // arguments are visible.
                    match s.cmd.load(Ordering::Acquire) {
                        IDLE => core::hint::spin_loop(),
                        READ => {
                            s.value
                                .store(read(s.va.load(Ordering::Relaxed)), Ordering::Relaxed);
                            // Release pairs with the Acquire wait in `command`.
                            s.cmd.store(IDLE, Ordering::Release);
                        }
                        WRITE => {
                            write(
                                s.va.load(Ordering::Relaxed),
                                s.value.load(Ordering::Relaxed),
                            );
                            s.cmd.store(IDLE, Ordering::Release);
                        }
                        _ => {
                            s.cmd.store(IDLE, Ordering::Release);
                            return;
                        }
                    }
                }
            },
        )
        .expect("spawn the worker");
        Worker { shared, thread }
    }

    fn command(&self, cmd: u64, va: u64, value: u64) -> u64 {
        self.shared.va.store(va, Ordering::Relaxed);
        self.shared.value.store(value, Ordering::Relaxed);
        // Release pairs with the worker's Acquire load of the command.
        self.shared.cmd.store(cmd, Ordering::Release);
        // Acquire pairs with the worker's Release store of IDLE.
        while self.shared.cmd.load(Ordering::Acquire) != IDLE {
            core::hint::spin_loop();
        }
        self.shared.value.load(Ordering::Relaxed)
    }

    /// The worker loads `va` and returns the value.
    pub fn read(&self, va: u64) -> u64 {
        self.command(READ, va, 0)
    }

    /// The worker stores `value` at `va`.
    pub fn write(&self, va: u64, value: u64) {
        self.command(WRITE, va, value);
    }

    /// Ends the worker and waits for it.
    pub fn stop(self) {
        self.command(EXIT, 0, 0);
        sched::join(&self.thread);
    }
}
