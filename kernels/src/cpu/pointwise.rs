//! Pointwise (1x1) convolution: a GEMM `[rows x k] x [k x n]` with BN, the activation and the
//! residual add fused into the store, on activations in any [`Layout`] (NHWC or channel-blocked).
//!
//! The weights are packed once at load into panels of [`NR`] output channels, each panel holding
//! all `k` input channels of the supernet in order. A sub-network's slice `W[:n, :k]` is then the
//! first `k` rows of the first `ceil(n / NR)` panels: nothing is copied to switch. Activations are
//! read in place, so only the weights are ever packed. A panel is one chunk of a blocked output,
//! so a tile's rows are stored as one contiguous run.

use core::ops::Range;

use super::simd::{Madd, fma, fma_splat, multiversion};
use super::{Act, CHUNK, Layout};

/// Output channels per weight panel (one AVX-512 register, two AVX2 registers, four NEON ones):
/// one chunk of [`Layout::blocked`].
pub const NR: usize = CHUNK;

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
    /// Tensor added after the activation, `[rows x n]` in the output's layout.
    pub residual: Option<&'a [f32]>,
}

multiversion! {
    /// `out[r][c] = epilogue(sum_i a[r][i] * W[c][i])` for `r` in `rows` and `c` in the columns of
    /// `panels`, with `a` `[m x k]` in layout `la` (`m` rows) and `out` `[m x n]` in layout `lo`.
    ///
    /// # Safety
    /// `out` must be valid for writes of `lo.len(m, n)` floats, and no other thread may access the
    /// rows `rows` x columns of `panels` of it during the call.
    pub unsafe fn pointwise(
        a: &[f32],
        la: Layout,
        m: usize,
        k: usize,
        b: &PackedB,
        n: usize,
        rows: Range<usize>,
        panels: Range<usize>,
        ep: &Epilogue<'_>,
        out: *mut f32,
        lo: Layout,
    ) => pointwise_impl
    { avx512: 8, avx2: 6, neon: 6, baseline: 4 }
}

#[inline(always)]
unsafe fn pointwise_impl<S: Madd, const MR: usize>(
    a: &[f32],
    la: Layout,
    m: usize,
    k: usize,
    b: &PackedB,
    n: usize,
    rows: Range<usize>,
    panels: Range<usize>,
    ep: &Epilogue<'_>,
    out: *mut f32,
    lo: Layout,
) {
    assert!(rows.end <= m && a.len() >= la.len(m, k) && k <= b.k && n <= b.n && panels.end <= PackedB::panels_for(n));
    assert!(ep.scale.len() >= n && ep.shift.len() >= n && ep.residual.is_none_or(|r| r.len() >= lo.len(m, n)));
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
            let t = Tile {
                a,
                la,
                panel: b.panel(p, k),
                at: lo.at(0, col),
                lo,
                width,
                scale: &scale,
                shift: &shift,
                act: ep.act,
            };
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
    la: Layout,
    panel: &'a [f32],
    /// Offset of the panel's first channel in row 0 of the output.
    at: usize,
    lo: Layout,
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
        let mut acc = [[0.0f32; NR]; R];
        // A chunk of input channels at a time: within one, each row's values are contiguous.
        for (q, panel) in self.panel.chunks(CHUNK * NR).enumerate() {
            // SAFETY: row + i < m and chunk q < ceil(k / CHUNK), inside `a` (checked by the caller).
            let arows: [*const f32; R] =
                core::array::from_fn(|i| unsafe { self.a.as_ptr().add(self.la.at(row + i, q * CHUNK)) });
            for (kk, bv) in panel.chunks_exact(NR).enumerate() {
                let bv: [f32; NR] = bv.try_into().expect("NR values");
                for i in 0..R {
                    // SAFETY: kk < CHUNK and q * CHUNK + kk < k.
                    let av = unsafe { *arows[i].add(kk) };
                    acc[i] = fma_splat::<S, NR>(av, bv, acc[i]);
                }
            }
        }
        // Row by row with constant indices: a loop over the tile here is left rolled, and LLVM
        // then moves the tile through the stack in pieces.
        unroll_rows!(i < R, {
            let mut v = fma::<S, NR>(acc[i], *self.scale, *self.shift);
            self.act.apply_all::<NR>(&mut v);
            let at = self.at + (row + i) * self.lo.pixel;
            // OFA's widths are multiples of 8, so a panel is either full or half full.
            // SAFETY: row + i < m and the panel's columns < n, inside the caller's exclusive region.
            unsafe {
                if self.width == NR {
                    store::<NR>(&mut v, residual.map(|r| &r[at..at + NR]), out.add(at));
                } else {
                    debug_assert_eq!(self.width, NR / 2);
                    let half: &mut [f32; NR / 2] = (&mut v[..NR / 2]).try_into().expect("half a panel");
                    store::<{ NR / 2 }>(half, residual.map(|r| &r[at..at + NR / 2]), out.add(at));
                }
            }
        });
    }
}

/// `for i in 0..n { body }` for a constant `n <= 8`, written out so that `i` is a constant in
/// each copy of `body`.
macro_rules! unroll_rows {
    ($i:ident < $n:expr, $body:block) => {
        unroll_rows!(@ $i, $n, $body, 0 1 2 3 4 5 6 7)
    };
    (@ $i:ident, $n:expr, $body:block, $($k:literal)*) => {
        const { assert!($n <= 8) };
        $(
            if $k < $n {
                let $i: usize = $k;
                $body
            }
        )*
    };
}
use unroll_rows;

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
