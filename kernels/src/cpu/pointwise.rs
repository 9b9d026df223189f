//! Pointwise (1x1) convolution on NHWC activations: a GEMM `[rows x k] x [k x n]` with BN, the
//! activation and the residual add fused into the store.
//!
//! The weights are packed once at load into panels of [`NR`] output channels, each panel holding
//! all `k` input channels of the supernet in order. A sub-network's slice `W[:n, :k]` is then the
//! first `k` rows of the first `ceil(n / NR)` panels: nothing is copied to switch. Activations are
//! read in place (row-major, `k` per row), so only the weights are ever packed.

use core::ops::Range;

use super::Act;
use super::simd::{Madd, fma, fma_splat, multiversion};

/// Output channels per weight panel (one AVX-512 register, two AVX2 registers, four NEON ones).
pub const NR: usize = 16;

/// A 1x1 convolution weight `W[n][k]` packed into panels of [`NR`] output channels.
#[derive(Debug, Clone, PartialEq)]
pub struct PackedB {
    k: usize,
    n: usize,
    panels: Vec<f32>,
}

impl PackedB {
    /// Pack a row-major `w[n][k]` (OFA's `[out, in, 1, 1]` layout).
    pub fn from_out_in(w: &[f32], n: usize, k: usize) -> Self {
        assert_eq!(w.len(), n * k, "weight of {n} x {k}");
        let mut panels = vec![0.0; n.div_ceil(NR) * k * NR];
        for (o, row) in w.chunks_exact(k).enumerate() {
            let panel = &mut panels[(o / NR) * k * NR..][..k * NR];
            for (i, &v) in row.iter().enumerate() {
                panel[i * NR + o % NR] = v;
            }
        }
        PackedB { k, n, panels }
    }

    /// Input channels stored.
    pub fn k(&self) -> usize {
        self.k
    }

    /// Output channels stored.
    pub fn n(&self) -> usize {
        self.n
    }

    /// Number of panels that cover the first `n` output channels.
    pub fn panels_for(n: usize) -> usize {
        n.div_ceil(NR)
    }

    /// `W[o][i]` (the GPU image lays the weights out again from here).
    pub(crate) fn get(&self, o: usize, i: usize) -> f32 {
        self.panels[(o / NR) * self.k * NR + i * NR + o % NR]
    }

    /// The first `k` input channels of panel `p`.
    fn panel(&self, p: usize, k: usize) -> &[f32] {
        &self.panels[p * self.k * NR..][..k * NR]
    }
}

/// What happens to each accumulated value before it is stored: `act(v * scale + shift)`, then
/// `+ residual` (the activation and the residual never occur together in MobileNetV3).
#[derive(Debug, Clone, Copy)]
pub struct Epilogue<'a> {
    /// BN scale per output channel (at least `n` entries).
    pub scale: &'a [f32],
    /// BN shift per output channel.
    pub shift: &'a [f32],
    /// Activation after BN.
    pub act: Act,
    /// Tensor added after the activation, `[rows x n]` like the output.
    pub residual: Option<&'a [f32]>,
}

multiversion! {
    /// `out[r][c] = epilogue(sum_i a[r][i] * W[c][i])` for `r` in `rows` and `c` in the columns of
    /// `panels`, with `a` row-major `[m x k]` and `out` row-major `[m x n]`.
    ///
    /// # Safety
    /// `out` must be valid for writes of `m * n` floats, and no other thread may access the rows
    /// `rows` x columns of `panels` of it during the call.
    pub unsafe fn pointwise(
        a: &[f32],
        k: usize,
        b: &PackedB,
        n: usize,
        rows: Range<usize>,
        panels: Range<usize>,
        ep: &Epilogue<'_>,
        out: *mut f32,
    ) => pointwise_impl
    { avx512: 8, avx2: 6, neon: 6, baseline: 4 }
}

#[inline(always)]
unsafe fn pointwise_impl<S: Madd, const MR: usize>(
    a: &[f32],
    k: usize,
    b: &PackedB,
    n: usize,
    rows: Range<usize>,
    panels: Range<usize>,
    ep: &Epilogue<'_>,
    out: *mut f32,
) {
    let m = a.len() / k;
    assert!(rows.end <= m && a.len() == m * k && k <= b.k && n <= b.n && panels.end <= PackedB::panels_for(n));
    assert!(ep.scale.len() >= n && ep.shift.len() >= n && ep.residual.is_none_or(|r| r.len() >= m * n));
    // Rows per block: a block of `a` stays in L1 while every panel passes over it. With a long
    // reduction the panels (k x NR) are the larger operand and one block spans all rows instead.
    let block = if k <= 256 { (16 * 1024 / (4 * k)).max(MR) / MR * MR } else { rows.len() };
    let mut r0 = rows.start;
    while r0 < rows.end {
        let r1 = (r0 + block).min(rows.end);
        for p in panels.clone() {
            let col = p * NR;
            let width = NR.min(n - col);
            let mut scale = [0.0; NR];
            let mut shift = [0.0; NR];
            scale[..width].copy_from_slice(&ep.scale[col..col + width]);
            shift[..width].copy_from_slice(&ep.shift[col..col + width]);
            let t = Tile { a, k, panel: b.panel(p, k), n, col, width, scale: &scale, shift: &shift, act: ep.act };
            let mut r = r0;
            while r + MR <= r1 {
                // SAFETY: rows r..r+MR lie within `rows`, which the caller hands us exclusively.
                unsafe { t.run::<S, MR>(r, ep.residual, out) };
                r += MR;
            }
            // SAFETY: as above, for the last rows.
            unsafe {
                match r1 - r {
                    0 => {}
                    1 => t.run::<S, 1>(r, ep.residual, out),
                    2 => t.run::<S, 2>(r, ep.residual, out),
                    3 => t.run::<S, 3>(r, ep.residual, out),
                    4 => t.run::<S, 4>(r, ep.residual, out),
                    5 => t.run::<S, 5>(r, ep.residual, out),
                    6 => t.run::<S, 6>(r, ep.residual, out),
                    rest => {
                        debug_assert_eq!(rest, 7);
                        t.run::<S, 4>(r, ep.residual, out);
                        t.run::<S, 3>(r + 4, ep.residual, out);
                    }
                }
            }
        }
        r0 = r1;
    }
}

/// One panel of output channels with its epilogue constants.
struct Tile<'a> {
    a: &'a [f32],
    k: usize,
    panel: &'a [f32],
    n: usize,
    col: usize,
    width: usize,
    scale: &'a [f32; NR],
    shift: &'a [f32; NR],
    act: Act,
}

impl Tile<'_> {
    /// Compute and store rows `row..row + R` of this panel.
    ///
    /// # Safety
    /// Those rows exist (checked by the caller) and `out` may be written there.
    #[inline(always)]
    unsafe fn run<S: Madd, const R: usize>(&self, row: usize, residual: Option<&[f32]>, out: *mut f32) {
        let k = self.k;
        let arows: [&[f32]; R] = core::array::from_fn(|i| &self.a[(row + i) * k..][..k]);
        let mut acc = [[0.0f32; NR]; R];
        for (kk, bv) in self.panel.chunks_exact(NR).enumerate() {
            let bv: [f32; NR] = bv.try_into().expect("NR values");
            for i in 0..R {
                // SAFETY: kk < k because the panel holds exactly k rows of NR.
                let av = unsafe { *arows[i].get_unchecked(kk) };
                acc[i] = fma_splat::<S, NR>(av, bv, acc[i]);
            }
        }
        for (i, acc) in acc.iter_mut().enumerate() {
            *acc = fma::<S, NR>(*acc, *self.scale, *self.shift);
            self.act.apply_all::<NR>(acc);
            let at = (row + i) * self.n + self.col;
            // OFA's widths are multiples of 8, so a panel is either full or half full.
            // SAFETY: row + i < m and col + width <= n, inside the caller's exclusive region.
            unsafe {
                if self.width == NR {
                    store::<NR>(acc, residual.map(|r| &r[at..at + NR]), out.add(at));
                } else {
                    debug_assert_eq!(self.width, NR / 2);
                    let half: &mut [f32; NR / 2] = (&mut acc[..NR / 2]).try_into().expect("half a panel");
                    store::<{ NR / 2 }>(half, residual.map(|r| &r[at..at + NR / 2]), out.add(at));
                }
            }
        }
    }
}

/// Add the residual (if any) to `v` and write it to `out`.
///
/// # Safety
/// `out` is valid for writing `W` floats.
#[inline(always)]
unsafe fn store<const W: usize>(v: &mut [f32; W], residual: Option<&[f32]>, out: *mut f32) {
    if let Some(res) = residual {
        let res: &[f32; W] = res.try_into().expect("W values");
        for j in 0..W {
            v[j] += res[j];
        }
    }
    // SAFETY: forwarded from the caller.
    unsafe { out.cast::<[f32; W]>().write_unaligned(*v) };
}
