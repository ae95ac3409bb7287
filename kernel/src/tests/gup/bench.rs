//! Benchmarks placeholder (filled below).
use crate::bench::Bench;
pub static BENCHES: &[Bench] = &[];
