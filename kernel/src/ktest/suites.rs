//! The registry: every test suite of the kernel, in run order.

use super::Suite;

pub static ALL: &[&Suite] = &[
    &crate::selftest::SUITE,
    &super::SUITE,
    &crate::params::SUITE,
    &crate::smp::tests::SUITE,
    &crate::mm::tests::SUITE,
    &crate::sched::tests::SUITE,
    &crate::pagelock::tests::SUITE,
];
