//! Shared by the CPU-side benches.

use std::time::Instant;

/// Best of five timings of `f` run `reps` times, in ns per call.
pub fn best_ns(reps: usize, mut f: impl FnMut()) -> f64 {
    (0..5)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..reps {
                f();
            }
            start.elapsed().as_nanos() as f64 / reps as f64
        })
        .fold(f64::INFINITY, f64::min)
}
