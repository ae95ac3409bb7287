//! Page synchronisation for the kernel: page flags, reference counts, the
//! hashed page wait table and the page lock, ported from Linux (6.7+ flag
//! layout, 5.9+ wait/hand-off algorithm).
//!
//! # Mental model
//!
//! Every physical frame has a 64-byte [`Page`] descriptor. Its flags word
//! holds `PG_LOCKED`, `PG_WRITEBACK` and `PG_WAITERS` in the same byte.
//! Taking the page lock is one atomic test-and-set; releasing it is one
//! atomic XOR that also reports whether anybody might be asleep waiting
//! ([`flags`]). Only then does the unlocker visit the shared
//! [`PageWaitTable`]: `2^bits` wait queues, chosen by hashing the page
//! address ([`wait_table`]), each a spin lock plus a list of entries that
//! live on the sleepers' stacks ([`waitqueue`]).
//!
//! The protocol's correctness rests on two facts:
//! 1. a waiter sets `PG_WAITERS` and re-tests the bit it waits on inside
//!    the queue's critical section, and the unlocker clears the bit and
//!    reads `PG_WAITERS` in one RMW on the same word, so one of them always
//!    sees the other ([`page_lock`]);
//! 2. the waker decides for the waiter (hand-off, `WQ_FLAG_DONE`) under the
//!    queue lock and publishes it with a Release store before unlinking the
//!    entry last, so the waiter never re-queues after being given the lock
//!    and never returns while a waker still touches its stack.
//!
//! The scheduler is abstracted by [`Platform`]; the same code runs in the
//! kernel (x86_64-unknown-none) and under loom on the host, where
//! `loom_platform` (built with `--cfg loom`) maps sleeping to park/unpark.
//! Historical and deliberately broken variants are selected by a [`Config`]
//! ([`variant`]); the default is the correct protocol.
//!
//! # Checking it
//!
//! * `cargo test -p pagesync`: unit tests (flags, refcount rules, hash
//!   spread, variant names) and the misuse tests (`tests/misuse.rs`); the
//!   doc tests include a `compile_fail` one (a page queue cannot be woken
//!   as a plain queue).
//! * `RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom cargo test -p
//!   pagesync --release`: loom models in `tests/loom_*.rs`, including one
//!   model per known-bad [`Bug`] that must fail (run in a child process,
//!   because loom may abort on a deadlock). Preemption bound 3 by default
//!   (`LOOM_MAX_PREEMPTIONS` overrides); the suite took 2 min 2 s wall on
//!   the 2-core dev machine (measured with `time` around that command,
//!   build already done).

#![no_std]

extern crate alloc;

#[cfg(loom)]
extern crate std;

pub mod async_wait;
pub mod flags;
#[cfg(loom)]
pub mod loom_platform;
pub mod page;
pub mod page_lock;
pub mod pin;
pub mod platform;
pub mod race;
pub mod readahead;
pub mod refcount;
pub mod stats;
pub mod sync;
pub mod variant;
pub mod wait_table;
pub mod waitqueue;
pub mod writeback;

pub use async_wait::{AsyncCallback, AsyncWake, PageRef};
pub use flags::PageFlags;
pub use page::Page;
pub use pin::Pinned;
pub use platform::Platform;
pub use race::RacePoint;
pub use refcount::{GUP_PIN_COUNTING_BIAS, PutOutcome, RefError};
pub use variant::{Bug, Config, PinScheme, Protocol};
pub use wait_table::PageWaitTable;
pub use waitqueue::{Interrupted, WaitEntry, WaitQueueHead};
pub use writeback::{WriteResult, WritebackStart};
