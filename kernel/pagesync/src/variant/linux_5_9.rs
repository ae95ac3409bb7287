//! Registers the default protocol, Linux 5.9+ (as 6.7+ has it): the waiter
//! decides "take the bit or queue" under the queue lock, the wake function
//! can hand the bit to the waiter it wakes (after `unfairness` lost
//! races), and the unlock is one XOR that reads `PG_WAITERS`. Its code is
//! `crate::page_lock`, since the other protocols reuse parts of it.

use crate::variant::LockProtocol;

/// Linux 5.9+ (`crate::page_lock`).
pub struct Linux59;

impl LockProtocol for Linux59 {
    const SUMMARY: &'static str = "Linux 5.9+ (2a9127fcf229, 5ef64cc8987a): the try under the queue lock; a waiter that lost `unfairness` races is handed the bit inside the wake walk; unlock is one XOR that reads PG_waiters";
}
