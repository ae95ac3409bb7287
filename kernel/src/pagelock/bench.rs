//! Page-lock benchmarks (`mode=bench`).

use crate::bench::Bench;

pub static BENCHES: &[Bench] = &[];
