//! Single-thread throughput of the fast kernels on the layer shapes of the w1.2 max sub-network,
//! and of the `gemm` crate on the same pointwise products (with the BN + activation epilogue as a
//! second pass), which is the evidence for packing our own micro-kernel. `cargo bench -p
//! dynofa-kernels --bench kernels`.

use std::hint::black_box;

use dynofa_kernels::cpu::depthwise::{DepthwiseLayer, depthwise};
use dynofa_kernels::cpu::pointwise::{Epilogue, PackedB, pointwise};
use dynofa_kernels::cpu::{Act, Isa, Layout};
use dynofa_kernels::rng::SplitMix64;

/// This thread's CPU time in seconds: unlike wall time, it does not count time that other
/// processes on a busy machine take from the core.
fn cpu_time() -> f64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: a valid timespec to write into.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

/// Median CPU seconds of `f` over enough runs to fill about 0.2 s.
fn time(mut f: impl FnMut()) -> f64 {
    f();
    let once = {
        let t = cpu_time();
        f();
        cpu_time() - t
    };
    let runs = ((0.2 / once.max(1e-7)) as usize).clamp(5, 2000);
    let mut ts: Vec<f64> = (0..runs)
        .map(|_| {
            let t = cpu_time();
            f();
            cpu_time() - t
        })
        .collect();
    ts.sort_by(f64::total_cmp);
    ts[runs / 2]
}

/// A vector whose used part starts on a 64-byte boundary, as the engine's work buffers do.
struct Aligned {
    v: Vec<f32>,
    skip: usize,
    len: usize,
}

impl Aligned {
    fn new(data: Vec<f32>) -> Self {
        let len = data.len();
        let mut v = vec![0.0; len + 16];
        let skip = v.as_ptr().align_offset(64);
        v[skip..skip + len].copy_from_slice(&data);
        Aligned { v, skip, len }
    }

    fn get(&self) -> &[f32] {
        &self.v[self.skip..self.skip + self.len]
    }

    fn get_mut(&mut self) -> &mut [f32] {
        &mut self.v[self.skip..self.skip + self.len]
    }
}

fn random(n: usize, seed: u64) -> Vec<f32> {
    let mut r = SplitMix64::new(seed);
    (0..n).map(|_| r.centred(0.5) as f32).collect()
}

fn main() {
    let isa = Isa::detect();
    println!("instruction set {isa:?}, one thread, per CPU second; GMAC/s (higher is better)\n");
    println!("| pointwise m x k x n | dynofa | gemm crate + epilogue |");
    println!("|---|---|---|");
    let shapes = [
        (12544, 24, 144),
        (3136, 144, 32),
        (3136, 32, 192),
        (3136, 192, 32),
        (784, 48, 288),
        (784, 288, 48),
        (196, 96, 576),
        (196, 576, 96),
        (196, 136, 816),
        (196, 816, 136),
        (49, 192, 1152),
        (49, 1152, 192),
    ];
    for (m, k, n) in shapes {
        // The engine's maps are blocked and 64-byte aligned.
        let l = Layout::blocked(m);
        let a = Aligned::new(random(l.len(m, k), 1));
        let a_rows = random(m * k, 1);
        let w = random(n * k, 2);
        let scale = random(n, 3);
        let shift = random(n, 4);
        let b = PackedB::from_out_in(&w, n, k);
        let mut out = Aligned::new(vec![0.0f32; l.len(m, n).max(m * n)]);
        let ep = Epilogue { scale: &scale, shift: &shift, act: Act::HSwish, residual: None };
        let ours = time(|| {
            let panels = 0..PackedB::panels_for(n);
            // SAFETY: `out` holds l.len(m, n) values and is used by this thread only.
            unsafe { pointwise(isa, a.get(), l, m, k, &b, n, 0..m, panels, &ep, out.get_mut().as_mut_ptr(), l) };
            black_box(out.get());
        });
        let out = &mut out.get_mut()[..m * n];
        let theirs = time(|| {
            // SAFETY: dst m x n row-major, lhs m x k row-major, rhs(kk, j) = w[j * k + kk].
            unsafe {
                gemm::gemm(
                    m,
                    n,
                    k,
                    out.as_mut_ptr(),
                    1,
                    n as isize,
                    false,
                    a_rows.as_ptr(),
                    1,
                    k as isize,
                    w.as_ptr(),
                    k as isize,
                    1,
                    0.0,
                    1.0,
                    false,
                    false,
                    false,
                    gemm::Parallelism::None,
                )
            };
            for row in out.chunks_exact_mut(n) {
                for ((v, s), t) in row.iter_mut().zip(&scale).zip(&shift) {
                    *v = Act::HSwish.apply(*v * s + t);
                }
            }
            black_box(&out);
        });
        let macs = (m * k * n) as f64;
        println!("| {m} x {k} x {n} | {:.1} | {:.1} |", macs / ours / 1e9, macs / theirs / 1e9);
    }

    println!("\n| depthwise size, channels, k, stride | dynofa |");
    println!("|---|---|");
    for (size, c, k, stride) in [
        (112, 144, 7, 2),
        (56, 192, 7, 1),
        (56, 192, 3, 1),
        (28, 288, 7, 1),
        (14, 576, 7, 1),
        (14, 816, 5, 1),
        (7, 1152, 7, 1),
    ] {
        let o = dynofa_core::arch::conv_out(size, k, stride);
        let x = Aligned::new(random(Layout::blocked(size * size).len(size * size, c), 5));
        let taps = random(k * k * c, 6);
        let scale = random(c, 7);
        let shift = random(c, 8);
        let layer = DepthwiseLayer {
            input: x.get(),
            size,
            c,
            weights: &taps,
            ldw: c,
            k,
            stride,
            out_size: o,
            scale: &scale,
            shift: &shift,
            act: Act::HSwish,
        };
        let mut out = Aligned::new(vec![0.0f32; Layout::blocked(o * o).len(o * o, c)]);
        let mut pool = vec![0.0f32; c];
        let t = time(|| {
            // SAFETY: `out` holds the blocked o x o x c map and is used by this thread only.
            unsafe { depthwise(isa, &layer, 0..o, 0..c, out.get_mut().as_mut_ptr(), Some(&mut pool)) };
            black_box(out.get());
        });
        println!("| {size}, {c}, {k}, {stride} | {:.1} |", (o * o * c * k * k) as f64 / t / 1e9);
    }
}
