//! The generic wait queue (Linux `kernel/sched/wait.c` shape).
//!
//! Mental model: a [`WaitQueueHead`] is a spin lock plus a doubly-linked
//! list of [`WaitEntry`]s. An entry lives on the *sleeping thread's stack*
//! (pinned), so linking it costs no allocation. A waker walks the list under
//! the lock and calls each entry's wake function, which decides whether the
//! entry is interested (key match), wakes the thread, and usually unlinks
//! the entry itself.
//!
//! The one subtle rule is the entry's lifetime. A sleeper may return (and
//! reuse its stack) only once nobody can touch its entry again. A waker that
//! unlinks an entry does so *last*, with [`LockedQueue::del_init_careful`]:
//! the entry's `next` pointer is set to point at the entry itself with a
//! Release store. The sleeper's [`WaitEntry::is_unlinked_careful`] loads
//! `next` with Acquire; when it sees the self-pointer it knows the waker is
//! done with the entry and may skip taking the lock (Linux
//! `list_del_init_careful` / `list_empty_careful`). If it does not see it,
//! [`WaitQueueHead::finish_wait`] takes the lock and unlinks itself.
//!
//! Keys are typed by the queue's [`WaitKind`]. A plain queue ([`Plain`])
//! carries no key: its entries take any wake-up, and only plain queues have
//! the safe [`WaitQueueHead::wake_up`] / [`WaitQueueHead::wait_event`] API.
//! The page wait table's queues are another kind (`crate::wait_table::PageKind`):
//! each entry names its (page, bit) and every walk passes a page key, so a
//! page queue cannot be woken or waited on as a plain one (its wake function
//! would have no key to read).
//!
//! An entry remembers the queue it was linked on; [`WaitQueueHead::finish_wait`]
//! on any other queue panics before it touches a list, so a mix-up cannot
//! unlink an entry under the wrong lock.
//!
//! Walk semantics ([`LockedQueue::wake_up_locked_key`]): a wake function
//! returns `< 0` to stop the walk, `> 0` on an exclusive entry to use up
//! one of `nr_exclusive` wake-ups (the walk stops at zero), `0` to go on.
//! Non-exclusive waiters are queued at the head and exclusive ones at the
//! tail, so a walk wakes every non-exclusive waiter before the first
//! exclusive one. The optional bookmark lets a very long walk drop the lock
//! every `break_after` entries (Linux 4.14–6.6; see `crate::wait_table`).

use core::marker::{PhantomData, PhantomPinned};
use core::pin::Pin;
use core::ptr;

use crate::platform::Platform;
use crate::race::RacePoint;
use crate::sync::{AtomicPtr, AtomicU32, AtomicUsize, Ordering, RawSpinLock, SpinGuard};

/// The entry takes part in exclusive wake-ups (wake one).
pub const WQ_FLAG_EXCLUSIVE: u32 = 0x01;
/// The wake function has chosen this entry (Release-published).
pub const WQ_FLAG_WOKEN: u32 = 0x02;
/// Per-user meaning; page waits use it for "hand the bit over to me".
pub const WQ_FLAG_CUSTOM: u32 = 0x04;
/// Per-user meaning; page waits use it for "you own the bit now".
pub const WQ_FLAG_DONE: u32 = 0x08;
/// The entry is a walker's bookmark, not a waiter: walks skip it.
/// (Linux 4.14–6.6 used 0x04; we keep CUSTOM/DONE at their current values.)
pub const WQ_FLAG_BOOKMARK: u32 = 0x10;

/// A wait was abandoned because [`Platform::cancel_pending`] said so
/// (Linux `-EINTR` from a killable wait).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interrupted;

/// What the entries and the walks of one kind of queue carry.
pub trait WaitKind: 'static {
    /// Each entry's own key, compared by its wake function with the walk's
    /// (the default value is used for bookmarks, which walks skip).
    type EntryKey: Copy + Default;
    /// What a walk hands to every wake function.
    type WalkKey;
}

/// A queue whose entries carry no key: every walk may wake every entry.
#[derive(Debug)]
pub struct Plain;

impl WaitKind for Plain {
    type EntryKey = ();
    type WalkKey = ();
}

/// A wake function, called with the queue lock held.
///
/// # Safety
///
/// Callers pass an entry linked in the locked queue and the walk's key. If
/// the function unlinks the entry it must do so last, with
/// [`LockedQueue::del_init_careful`], and not touch the entry afterwards.
pub type WakeFn<P, K> = unsafe fn(
    &mut LockedQueue<'_, P, K>,
    *const WaitEntry<P, K>,
    &mut <K as WaitKind>::WalkKey,
) -> i32;

#[repr(C)]
#[derive(Debug)]
struct Link {
    next: AtomicPtr<Link>,
    prev: AtomicPtr<Link>,
}

impl Link {
    fn new() -> Self {
        Self {
            next: AtomicPtr::new(ptr::null_mut()),
            prev: AtomicPtr::new(ptr::null_mut()),
        }
    }
}

/// One sleeping thread's place in a [`WaitQueueHead`].
///
/// Its flags word belongs to the wait and wake paths of this crate; safe
/// code elsewhere cannot reach it:
///
/// ```compile_fail,E0624
/// # struct Solo;
/// # impl pagesync::Platform for Solo {
/// #     type Thread = ();
/// #     type IrqState = bool;
/// #     fn current() {}
/// #     fn prepare_to_sleep() {}
/// #     fn sleep() {}
/// #     fn set_running() {}
/// #     fn wake(_: &()) {}
/// #     fn cancel_pending() -> bool { false }
/// #     fn irq_save() -> bool { false }
/// #     fn irq_restore(_: bool) {}
/// #     fn cpu_relax() {}
/// # }
/// let e = pagesync::WaitEntry::<Solo>::bookmark();
/// e.flags();
/// ```
#[repr(C)]
pub struct WaitEntry<P: Platform, K: WaitKind = Plain> {
    // First field: a `*mut Link` in the list is also the entry's address.
    link: Link,
    flags: AtomicU32,
    func: WakeFn<P, K>,
    thread: P::Thread,
    key: K::EntryKey,
    /// The queue this entry was last linked on (null: never linked). Only
    /// the entry's owner links it, so only the owner writes this, and only
    /// the owner reads it: program order suffices (Relaxed).
    queue: AtomicPtr<WaitQueueHead<P, K>>,
    /// When a waker handed this waiter the lock (`Platform::now_ns`, at
    /// least 1), or 0: statistics only (`crate::stats`), so a core atomic
    /// even under loom. Written by the waker before its Release store of
    /// the flags, read by the owner after it saw them.
    pub(crate) handed_at: core::sync::atomic::AtomicU64,
    _pinned: PhantomPinned,
}

impl<P: Platform, K: WaitKind> WaitEntry<P, K> {
    /// An unlinked entry for the calling thread; wake functions compare
    /// `key` with the walk's key.
    pub fn new(func: WakeFn<P, K>, key: K::EntryKey) -> Self {
        Self {
            link: Link::new(),
            flags: AtomicU32::new(0),
            func,
            thread: P::current(),
            key,
            queue: AtomicPtr::new(ptr::null_mut()),
            handed_at: core::sync::atomic::AtomicU64::new(0),
            _pinned: PhantomPinned,
        }
    }

    /// An unlinked bookmark for [`LockedQueue::wake_up_locked_key`].
    pub fn bookmark() -> Self {
        Self::new(noop_wake_function::<P, K>, K::EntryKey::default())
    }

    /// The `WQ_FLAG_*` word. The owner writes it while unlinked; wake
    /// functions write it under the queue lock. Private to this crate:
    /// with it, a caller holding a queue's lock could mark a sleeping
    /// exclusive waiter WOKEN|DONE (a second lock holder) or a bookmark (a
    /// waiter never woken) (see [`WaitEntry`]'s `compile_fail` example).
    pub(crate) fn flags(&self) -> &AtomicU32 {
        &self.flags
    }

    /// The key given to [`WaitEntry::new`].
    pub fn key(&self) -> K::EntryKey {
        self.key
    }

    /// The thread to wake.
    pub fn thread(&self) -> &P::Thread {
        &self.thread
    }

    fn link_ptr(&self) -> *mut Link {
        ptr::from_ref(&self.link).cast_mut()
    }

    /// `list_empty_careful`: true once no waker can touch the entry any
    /// more. The Acquire load pairs with the Release store of `next` in
    /// [`LockedQueue::del_init_careful`] (or [`LockedQueue::del_init`]);
    /// seeing it, we also see `prev` reset and every earlier write of the
    /// waker. A never-linked entry (null links) is unlinked too.
    pub fn is_unlinked_careful(&self) -> bool {
        let me = self.link_ptr();
        // Load-bearing: a waiter that finds its entry unlinked reads its
        // flags next and must see the waker's WOKEN (else a cancelled lock
        // waiter that was handed the wake-up does not pass it on);
        // Acquire -> Relaxed is caught by
        // `handoff_with_default_unfairness_races_a_cancel`. It also orders
        // the waker's last writes to the entry before the owner reuses the
        // entry's memory (a stack slot), which loom cannot see: a model's
        // entries are never reused.
        let next = self.link.next.load(Ordering::Acquire);
        (next.is_null() || next == me) && self.link.prev.load(Ordering::Relaxed) == next
    }

    /// Whether linked; only meaningful with the queue lock held.
    pub(crate) fn is_linked_locked(&self) -> bool {
        let next = self.link.next.load(Ordering::Relaxed);
        !next.is_null() && next != self.link_ptr()
    }

    /// Panics unless the entry was never linked or was last linked on `q`
    /// (or, with `unlinked_elsewhere_ok`, is no longer linked anywhere).
    /// Called before any list operation that trusts "linked here or
    /// nowhere", so a mix-up is caught before it corrupts a list.
    fn check_owner(&self, q: &WaitQueueHead<P, K>, what: &str, unlinked_elsewhere_ok: bool) {
        let owner = self.queue.load(Ordering::Relaxed);
        assert!(
            owner.is_null()
                || ptr::eq(owner, q)
                || (unlinked_elsewhere_ok && self.is_unlinked_careful()),
            "{what}: wait entry {:#x} belongs to queue {:#x}, not {:#x}",
            self.link_ptr() as usize,
            owner as usize,
            ptr::from_ref(q) as usize
        );
    }
}

/// A spin lock and a list of waiting entries.
pub struct WaitQueueHead<P: Platform, K: WaitKind = Plain> {
    lock: RawSpinLock,
    // Sentinel. Its self-pointers are (re)written whenever the lock is taken
    // with the list empty, so an empty head may be moved freely.
    head: Link,
    // Number of linked entries, bookmarks included; changed under the lock.
    len: AtomicUsize,
    _platform: PhantomData<fn() -> (P, K)>,
}

impl<P: Platform, K: WaitKind> WaitQueueHead<P, K> {
    /// An empty queue; its lock's class is where this is called
    /// ([`RawSpinLock`]).
    #[cfg(not(loom))]
    #[track_caller]
    pub const fn new() -> Self {
        Self {
            lock: RawSpinLock::new(),
            head: Link {
                next: AtomicPtr::new(ptr::null_mut()),
                prev: AtomicPtr::new(ptr::null_mut()),
            },
            len: AtomicUsize::new(0),
            _platform: PhantomData,
        }
    }

    /// An empty queue.
    #[cfg(loom)]
    pub fn new() -> Self {
        Self {
            lock: RawSpinLock::new(),
            head: Link::new(),
            len: AtomicUsize::new(0),
            _platform: PhantomData,
        }
    }

    /// Takes the queue lock (IRQs masked).
    #[track_caller]
    pub fn lock(&self) -> LockedQueue<'_, P, K> {
        let guard = self.lock.lock::<P>();
        let locked = LockedQueue {
            q: self,
            _guard: guard,
        };
        if self.len.load(Ordering::Relaxed) == 0 {
            let head = locked.head();
            self.head.next.store(head, Ordering::Relaxed);
            self.head.prev.store(head, Ordering::Relaxed);
        }
        locked
    }

    /// A racy "anybody queued?" hint (`waitqueue_active`). Only a hint: a
    /// waker that relies on it needs its own barrier pairing.
    pub fn has_waiters_hint(&self) -> bool {
        self.len.load(Ordering::Relaxed) != 0
    }

    /// `prepare_to_wait`: queue `entry` non-exclusively at the head if it is
    /// not queued, then [`Platform::prepare_to_sleep`], all under the lock.
    ///
    /// # Safety
    ///
    /// [`WaitQueueHead::finish_wait`] must be called on this queue before
    /// `entry` is dropped, and `entry` must not be queued on another queue.
    pub unsafe fn prepare_to_wait(&self, entry: Pin<&WaitEntry<P, K>>) {
        entry.check_owner(self, "prepare_to_wait", true);
        entry.flags.fetch_and(!WQ_FLAG_EXCLUSIVE, Ordering::Relaxed);
        let mut q = self.lock();
        if !entry.is_linked_locked() {
            // SAFETY: forwarded from our caller's contract.
            unsafe { q.add_head(entry) };
        }
        P::prepare_to_sleep();
    }

    /// `prepare_to_wait_exclusive`: like [`WaitQueueHead::prepare_to_wait`]
    /// but exclusive, queued at the tail.
    ///
    /// # Safety
    ///
    /// As for [`WaitQueueHead::prepare_to_wait`].
    pub unsafe fn prepare_to_wait_exclusive(&self, entry: Pin<&WaitEntry<P, K>>) {
        entry.check_owner(self, "prepare_to_wait_exclusive", true);
        entry.flags.fetch_or(WQ_FLAG_EXCLUSIVE, Ordering::Relaxed);
        let mut q = self.lock();
        if !entry.is_linked_locked() {
            // SAFETY: forwarded from our caller's contract.
            unsafe { q.add_tail(entry) };
        }
        P::prepare_to_sleep();
    }

    /// `finish_wait`: mark the thread running and make sure `entry` is
    /// unlinked; afterwards no waker can touch it. Takes the lock only if a
    /// waker has not already unlinked the entry (see module docs).
    ///
    /// # Panics
    ///
    /// If `entry` was linked on another queue (before touching any list).
    pub fn finish_wait(&self, entry: Pin<&WaitEntry<P, K>>) {
        P::set_running();
        entry.check_owner(self, "finish_wait", false);
        if !entry.is_unlinked_careful() {
            let mut q = self.lock();
            // SAFETY: `check_owner` showed that the entry was never linked
            // or was last linked here, so it is linked here or nowhere.
            unsafe { q.del_init(entry.get_ref()) };
        }
    }
}

/// The keyless API of plain queues: sleeping on a condition and waking
/// everybody. Page queues have none of it.
impl<P: Platform> WaitQueueHead<P, Plain> {
    /// Wakes all non-exclusive waiters and up to `nr_exclusive` exclusive
    /// ones (0 = all), passing a null key.
    pub fn wake_up(&self, nr_exclusive: i32) {
        let mut q = self.lock();
        // SAFETY: entries of a plain queue take the unit key.
        unsafe { q.wake_up_locked_key(&mut (), nr_exclusive, None, 0) };
    }

    /// Wakes everybody.
    pub fn wake_up_all(&self) {
        self.wake_up(0);
    }

    /// Sleeps until `cond()` is true. The waker must make the condition
    /// true *before* calling [`WaitQueueHead::wake_up`] (the queue lock then
    /// orders the waker's store before our re-check).
    pub fn wait_event(&self, cond: impl FnMut() -> bool) {
        let _ = self.wait_event_common(cond, false);
    }

    /// Like [`WaitQueueHead::wait_event`] but gives up when
    /// [`Platform::cancel_pending`] (the condition wins if both hold).
    pub fn wait_event_killable(&self, cond: impl FnMut() -> bool) -> Result<(), Interrupted> {
        self.wait_event_common(cond, true)
    }

    fn wait_event_common(
        &self,
        mut cond: impl FnMut() -> bool,
        killable: bool,
    ) -> Result<(), Interrupted> {
        if cond() {
            return Ok(());
        }
        let entry = core::pin::pin!(WaitEntry::<P>::new(
            autoremove_wake_function::<P, Plain>,
            ()
        ));
        let entry = entry.as_ref();
        let finish = FinishWait { q: self, entry };
        let result = loop {
            // SAFETY: `finish` calls `finish_wait` before `entry` drops,
            // even if `cond` panics.
            unsafe { self.prepare_to_wait(entry) };
            if cond() {
                break Ok(());
            }
            if killable && P::cancel_pending() {
                break Err(Interrupted);
            }
            P::sleep();
        };
        drop(finish);
        result
    }
}

impl<P: Platform, K: WaitKind> Default for WaitQueueHead<P, K> {
    fn default() -> Self {
        Self::new()
    }
}

/// Calls [`WaitQueueHead::finish_wait`] when dropped: keeps a stack entry
/// from outliving its queue link on every exit path.
pub(crate) struct FinishWait<'a, P: Platform, K: WaitKind = Plain> {
    pub(crate) q: &'a WaitQueueHead<P, K>,
    pub(crate) entry: Pin<&'a WaitEntry<P, K>>,
}

impl<P: Platform, K: WaitKind> Drop for FinishWait<'_, P, K> {
    fn drop(&mut self) {
        self.q.finish_wait(self.entry);
    }
}

/// A [`WaitQueueHead`] with its lock held: the list operations. Not
/// `Send`, as its [`crate::sync::SpinGuard`]:
///
/// ```compile_fail,E0277
/// # struct Solo;
/// # impl pagesync::Platform for Solo {
/// #     type Thread = ();
/// #     type IrqState = bool;
/// #     fn current() {}
/// #     fn prepare_to_sleep() {}
/// #     fn sleep() {}
/// #     fn set_running() {}
/// #     fn wake(_: &()) {}
/// #     fn cancel_pending() -> bool { false }
/// #     fn irq_save() -> bool { false }
/// #     fn irq_restore(_: bool) {}
/// #     fn cpu_relax() {}
/// # }
/// fn needs_send<T: Send>(_: T) {}
/// let q = pagesync::WaitQueueHead::<Solo>::new();
/// needs_send(q.lock());
/// ```
pub struct LockedQueue<'a, P: Platform, K: WaitKind = Plain> {
    q: &'a WaitQueueHead<P, K>,
    _guard: SpinGuard<'a, P>,
}

impl<P: Platform, K: WaitKind> LockedQueue<'_, P, K> {
    fn head(&self) -> *mut Link {
        ptr::from_ref(&self.q.head).cast_mut()
    }

    /// No entry is linked.
    pub fn is_empty(&self) -> bool {
        self.q.len.load(Ordering::Relaxed) == 0
    }

    /// Number of linked entries.
    pub fn len(&self) -> usize {
        self.q.len.load(Ordering::Relaxed)
    }

    /// Links `new` between `prev` and `next`.
    ///
    /// # Safety
    ///
    /// `prev` and `next` are adjacent in this list; `new` is unlinked and
    /// stays valid until unlinked.
    unsafe fn link_between(&mut self, new: *mut Link, prev: *mut Link, next: *mut Link) {
        // SAFETY: all three point to live links of this list (caller); we
        // hold the lock, so Relaxed suffices: the lock orders these stores
        // before any other list access.
        unsafe {
            (*new).next.store(next, Ordering::Relaxed);
            (*new).prev.store(prev, Ordering::Relaxed);
            (*prev).next.store(new, Ordering::Relaxed);
            (*next).prev.store(new, Ordering::Relaxed);
        }
        self.q.len.fetch_add(1, Ordering::Relaxed);
    }

    /// `__add_wait_queue_entry_tail`.
    ///
    /// # Safety
    ///
    /// `entry` is not linked anywhere and is unlinked from this queue
    /// before it is dropped.
    pub unsafe fn add_tail(&mut self, entry: Pin<&WaitEntry<P, K>>) {
        entry
            .queue
            .store(ptr::from_ref(self.q).cast_mut(), Ordering::Relaxed);
        let head = self.head();
        // SAFETY: the head is live; the caller vouches for `entry`.
        unsafe { self.link_between(entry.link_ptr(), (*head).prev.load(Ordering::Relaxed), head) };
    }

    /// `__add_wait_queue`: link at the head.
    ///
    /// # Safety
    ///
    /// As for [`LockedQueue::add_tail`].
    pub unsafe fn add_head(&mut self, entry: Pin<&WaitEntry<P, K>>) {
        entry
            .queue
            .store(ptr::from_ref(self.q).cast_mut(), Ordering::Relaxed);
        let head = self.head();
        // SAFETY: the head is live; the caller vouches for `entry`.
        unsafe { self.link_between(entry.link_ptr(), head, (*head).next.load(Ordering::Relaxed)) };
    }

    /// Unlinks `link` (`__list_del_entry`); its own pointers are left stale.
    ///
    /// # Safety
    ///
    /// `link` is linked in this queue.
    unsafe fn unlink(&mut self, link: *mut Link) {
        // SAFETY: a linked entry's neighbours are live links of this list.
        unsafe {
            let next = (*link).next.load(Ordering::Relaxed);
            let prev = (*link).prev.load(Ordering::Relaxed);
            (*next).prev.store(prev, Ordering::Relaxed);
            (*prev).next.store(next, Ordering::Relaxed);
        }
        self.q.len.fetch_sub(1, Ordering::Relaxed);
    }

    /// `list_del_init` by the entry's owner, if linked.
    ///
    /// # Safety
    ///
    /// `entry` is linked in this queue or not at all.
    pub unsafe fn del_init(&mut self, entry: &WaitEntry<P, K>) {
        if entry.is_linked_locked() {
            let me = entry.link_ptr();
            // SAFETY: linked here (caller).
            unsafe { self.unlink(me) };
            entry.link.prev.store(me, Ordering::Relaxed);
            // Release pairs with the Acquire in `is_unlinked_careful`.
            // Redundant: `del_init` runs only in the thread that tests the
            // entry next (its owner in `finish_wait`, a walker on its own
            // bookmark), under the queue lock; program order gives that
            // thread what the Release would. Kept so that every store of
            // `next` pairs the same way.
            entry.link.next.store(me, Ordering::Release);
        }
    }

    /// `list_del_init_careful`, for wake functions: unlink, then publish
    /// "done with this entry" with a Release store of `next`, which pairs
    /// with the Acquire load in [`WaitEntry::is_unlinked_careful`]. After
    /// the store the owner may return and reuse the entry's memory, so this
    /// must be the waker's last access to the entry.
    ///
    /// # Safety
    ///
    /// `entry` is live and linked in this queue.
    pub unsafe fn del_init_careful(&mut self, entry: *const WaitEntry<P, K>) {
        // SAFETY: live and linked (caller); the link is the first field.
        unsafe {
            let me = (*entry).link_ptr();
            self.unlink(me);
            (*me).prev.store(me, Ordering::Relaxed);
            // Release: the waker's last word on the entry, for the
            // Acquire in `is_unlinked_careful`. Redundant: every wake
            // function calls `P::wake` just before this, which the
            // `Platform` contract makes a full barrier (the kernel's locked
            // RMW on the run-queue lock, a SeqCst fence under loom); as a
            // fence it already orders the waker's earlier writes before
            // this store for a waiter whose Acquire load reads it. `cargo
            // xtask orderings` finds the weakening passing every model.
            // Kept, as Linux's `list_del_init_careful` keeps its
            // `smp_store_release`, for a wake function that does not wake.
            (*me).next.store(me, Ordering::Release);
        }
    }

    /// Calls `f` on every linked entry, bookmarks included, head to tail.
    pub fn for_each(&self, mut f: impl FnMut(&WaitEntry<P, K>)) {
        let head = self.head();
        let mut curr = self.q.head.next.load(Ordering::Relaxed);
        while curr != head {
            // SAFETY: linked entries stay alive while linked, and nobody can
            // unlink them while we hold the lock; `Link` is the first field
            // of the `repr(C)` entry, so the cast recovers the entry.
            let entry = unsafe { &*curr.cast::<WaitEntry<P, K>>() };
            f(entry);
            curr = entry.link.next.load(Ordering::Relaxed);
        }
    }

    /// `__wake_up_common`: walks from the head (or from `bookmark`, if it is
    /// parked in the list) calling wake functions; returns the unused
    /// exclusive budget. With a bookmark, after `break_after` woken or
    /// skipped-by-key entries it parks the bookmark before the next entry and stops, so
    /// the caller can drop the lock and call again.
    ///
    /// # Safety
    ///
    /// The bookmark, if any, is owned by the caller and, if parked here,
    /// must be resumed (unlinked) before it is dropped. Every linked entry's
    /// wake function keeps the [`WakeFn`] contract.
    pub unsafe fn wake_up_locked_key(
        &mut self,
        key: &mut K::WalkKey,
        mut nr_exclusive: i32,
        bookmark: Option<Pin<&WaitEntry<P, K>>>,
        break_after: usize,
    ) -> i32 {
        let head = self.head();
        let mut curr = match bookmark {
            Some(bm) if bm.flags.load(Ordering::Relaxed) & WQ_FLAG_BOOKMARK != 0 => {
                let next = bm.link.next.load(Ordering::Relaxed);
                // SAFETY: a flagged bookmark is parked in this queue.
                unsafe { self.del_init(bm.get_ref()) };
                bm.flags.store(0, Ordering::Relaxed);
                next
            }
            _ => self.q.head.next.load(Ordering::Relaxed),
        };
        let mut count = 0usize;
        while curr != head {
            let entry = curr.cast::<WaitEntry<P, K>>().cast_const();
            // Read `next` first: the wake function may unlink (and thereby
            // hand back) `entry`. `next` itself stays linked: only its owner
            // (under this lock) or our walk can unlink it.
            // SAFETY: `entry` is linked, hence live (see `for_each`).
            let (next, flags, func) = unsafe {
                (
                    (*entry).link.next.load(Ordering::Relaxed),
                    (*entry).flags.load(Ordering::Relaxed),
                    (*entry).func,
                )
            };
            if flags & WQ_FLAG_BOOKMARK != 0 {
                curr = next;
                continue;
            }
            // SAFETY: `entry` is linked here and `key` is what it expects.
            let ret = unsafe { func(self, entry, &mut *key) };
            if ret < 0 {
                break;
            }
            if ret > 0 && flags & WQ_FLAG_EXCLUSIVE != 0 {
                nr_exclusive -= 1;
                if nr_exclusive == 0 {
                    break;
                }
            }
            count += 1;
            if let Some(bm) = bookmark
                && count >= break_after
                && next != head
            {
                bm.flags.store(WQ_FLAG_BOOKMARK, Ordering::Relaxed);
                // SAFETY: `next` is linked here and so is its `prev`; the
                // caller resumes (unlinks) the bookmark later.
                unsafe {
                    let prev = (*next).prev.load(Ordering::Relaxed);
                    self.link_between(bm.link_ptr(), prev, next);
                }
                break;
            }
            curr = next;
        }
        nr_exclusive
    }
}

/// Wakes the thread and leaves the entry queued (the sleeper's
/// `finish_wait` unlinks it). Returns 1.
///
/// # Safety
///
/// See [`WakeFn`].
pub unsafe fn default_wake_function<P: Platform, K: WaitKind>(
    _q: &mut LockedQueue<'_, P, K>,
    entry: *const WaitEntry<P, K>,
    _key: &mut K::WalkKey,
) -> i32 {
    // SAFETY: the entry is linked, hence live (caller).
    P::wake(unsafe { &(*entry).thread });
    1
}

/// Marks the entry WOKEN, wakes the thread, then unlinks the entry
/// carefully, last. Returns 1.
///
/// # Safety
///
/// See [`WakeFn`].
pub unsafe fn autoremove_wake_function<P: Platform, K: WaitKind>(
    q: &mut LockedQueue<'_, P, K>,
    entry: *const WaitEntry<P, K>,
    _key: &mut K::WalkKey,
) -> i32 {
    // SAFETY: the entry is linked, hence live, until `del_init_careful`.
    unsafe {
        // Release pairs with an Acquire load of the flags by the sleeper.
        // Redundant: the sleepers that read WOKEN (the pre-5.9 page wait,
        // after `finish_wait`) are already ordered after us by
        // `finish_wait` (the careful unlink below or the queue lock), and
        // `wait_event` sleepers test their own condition; `cargo xtask
        // orderings` finds the weakening passing every model.
        (*entry).flags.fetch_or(WQ_FLAG_WOKEN, Ordering::Release);
        P::race_point(RacePoint::WakeChosen);
        P::wake(&(*entry).thread);
        P::race_point(RacePoint::WakeBeforeUnlink);
        q.del_init_careful(entry);
    }
    1
}

/// For bookmarks, which walks skip. Returns 0.
///
/// # Safety
///
/// See [`WakeFn`].
pub unsafe fn noop_wake_function<P: Platform, K: WaitKind>(
    _q: &mut LockedQueue<'_, P, K>,
    _entry: *const WaitEntry<P, K>,
    _key: &mut K::WalkKey,
) -> i32 {
    0
}
