//! Depthwise kxk convolution on channel-blocked activations with BN, the activation and the SE
//! average pool fused into the store. Channels are the vector dimension (chunks of 16, a last one
//! of 8: every OFA width is a multiple of 8); several neighbouring output pixels share each weight
//! load.
//!
//! Input and output are [`Layout::blocked`]: each chunk of 16 channels is a plane of pixels 64
//! bytes apart, so every load and store of a pixel block is a constant offset from one pointer
//! (with NHWC the pixel stride is the channel count, and the address arithmetic alone limited the
//! kernel to one FMA per cycle).

use core::ops::Range;

use super::simd::{Madd, fma, multiversion};
use super::{Act, CHUNK as CW, Layout};

/// Shape and weights of one depthwise layer.
#[derive(Debug, Clone, Copy)]
pub struct DepthwiseLayer<'a> {
    /// Input feature map, [`Layout::blocked`] over `size * size` pixels.
    pub input: &'a [f32],
    /// Input height (= width).
    pub size: usize,
    /// Active channels (a multiple of 8).
    pub c: usize,
    /// Kernel taps `[k * k][ldw]`: tap `dy * k + dx` of channel `ch` at `tap * ldw + ch`.
    pub weights: &'a [f32],
    /// Row stride of `weights` (the supernet's channel count).
    pub ldw: usize,
    /// Kernel size (odd); padding is `k / 2`.
    pub k: usize,
    /// Stride (1 or 2).
    pub stride: usize,
    /// Output height (= width).
    pub out_size: usize,
    /// BN scale per channel.
    pub scale: &'a [f32],
    /// BN shift per channel.
    pub shift: &'a [f32],
    /// Activation after BN.
    pub act: Act,
}

multiversion! {
    /// Output rows `rows` and channels `chans` (whole chunks of 16, the last one may be 8) of a
    /// depthwise layer into `out` ([`Layout::blocked`] over `out_size²` pixels). With `pool`, the
    /// stored values are also added to `pool[ch]` (the SE average pool's sums).
    ///
    /// # Safety
    /// `out` must be valid for writes of `Layout::blocked(out_size²).len(out_size², c)` floats and
    /// no other thread may access rows `rows` x channels `chans` of it during the call.
    pub unsafe fn depthwise(
        layer: &DepthwiseLayer<'_>,
        rows: Range<usize>,
        chans: Range<usize>,
        out: *mut f32,
        pool: Option<&mut [f32]>,
    ) => depthwise_impl
    { avx512: 8, avx2: 4, neon: 4, baseline: 2 }
}

/// Range of kernel offsets `d` with `0 <= at + d < size` (`at` may be negative).
#[inline(always)]
fn taps(at: isize, k: usize, size: usize) -> Range<usize> {
    let lo = (-at).max(0) as usize;
    let hi = (size as isize - at).clamp(0, k as isize) as usize;
    lo.min(hi)..hi
}

#[inline(always)]
unsafe fn depthwise_impl<S: Madd, const XB: usize>(
    l: &DepthwiseLayer<'_>,
    rows: Range<usize>,
    chans: Range<usize>,
    out: *mut f32,
    pool: Option<&mut [f32]>,
) {
    let (size, c, k) = (l.size, l.c, l.k);
    assert!(
        l.input.len() >= Layout::blocked(size * size).len(size * size, c) && rows.end <= l.out_size && chans.end <= c
    );
    assert!(
        chans.start.is_multiple_of(CW)
            && (chans.end.is_multiple_of(CW) || chans.end == c)
            && c.is_multiple_of(8)
            && c <= l.ldw
            && l.weights.len() >= (k * k - 1) * l.ldw + c
    );
    assert!(l.scale.len() >= c && l.shift.len() >= c && pool.as_ref().is_none_or(|p| p.len() >= c));
    // Kernel size and stride as constants, so that each pixel block's column loop unrolls fully.
    // SAFETY (all arms): the asserts above.
    unsafe {
        match (k, l.stride) {
            (3, 1) => rows_of::<S, XB, 3, 1>(l, rows, chans, out, pool),
            (3, 2) => rows_of::<S, XB, 3, 2>(l, rows, chans, out, pool),
            (5, 1) => rows_of::<S, XB, 5, 1>(l, rows, chans, out, pool),
            (5, 2) => rows_of::<S, XB, 5, 2>(l, rows, chans, out, pool),
            (7, 1) => rows_of::<S, XB, 7, 1>(l, rows, chans, out, pool),
            (7, 2) => rows_of::<S, XB, 7, 2>(l, rows, chans, out, pool),
            _ => panic!("depthwise {k}x{k} stride {}: OFA's kernels are 3, 5 or 7, strides 1 or 2", l.stride),
        }
    }
}

/// [`depthwise_impl`] for a `K`x`K` kernel with stride `ST`.
///
/// # Safety
/// As [`depthwise`], with the layer checked by [`depthwise_impl`].
#[inline(always)]
unsafe fn rows_of<S: Madd, const XB: usize, const K: usize, const ST: usize>(
    l: &DepthwiseLayer<'_>,
    rows: Range<usize>,
    chans: Range<usize>,
    out: *mut f32,
    mut pool: Option<&mut [f32]>,
) {
    let size = l.size;
    let pad = (K / 2) as isize;
    // Output columns whose taps all fall inside the input.
    let x_lo = (K / 2).div_ceil(ST).min(l.out_size);
    let x_hi = if size + K / 2 >= K { (size + K / 2 - K) / ST + 1 } else { 0 }.clamp(x_lo, l.out_size);
    for oy in rows {
        let iy = (oy * ST) as isize - pad;
        let row = Row { l, iy, dys: taps(iy, K, size), oy, out };
        // Channel chunks outside, pixels inside: a chunk's input rows (K x size x 16 floats) stay
        // in L1 while the pixel blocks slide along them.
        let mut c0 = chans.start;
        while c0 < chans.end {
            // SAFETY: the row and channels are within the caller's exclusive region.
            unsafe {
                if c0 + CW <= chans.end {
                    row.chunk::<S, K, ST, XB, CW>(c0, x_lo..x_hi, &mut pool);
                } else {
                    row.chunk::<S, K, ST, XB, 8>(c0, x_lo..x_hi, &mut pool);
                }
            }
            c0 += CW;
        }
    }
}

/// One output row.
struct Row<'a, 'l> {
    l: &'a DepthwiseLayer<'l>,
    iy: isize,
    dys: Range<usize>,
    oy: usize,
    out: *mut f32,
}

impl Row<'_, '_> {
    /// Channels `c0..c0 + W` of every pixel of the row, in blocks of `XB` pixels; `interior`
    /// holds the output columns whose taps all fall inside the input.
    ///
    /// # Safety
    /// The row and channels are within the caller's exclusive region of the output.
    #[inline(always)]
    unsafe fn chunk<S: Madd, const K: usize, const ST: usize, const XB: usize, const W: usize>(
        &self,
        c0: usize,
        interior: Range<usize>,
        pool: &mut Option<&mut [f32]>,
    ) {
        let n = self.l.out_size;
        // The end of the row goes in blocks of 4, 2 and then 1.
        let mut ox = 0;
        for width in [XB, 4, 2, 1] {
            while ox + width <= n && (width == XB || width == 1 || ox + width * 2 > n) {
                let inside = ox >= interior.start && ox + width <= interior.end;
                // SAFETY: the pixels are within the caller's exclusive region.
                unsafe {
                    match (width, inside) {
                        (1, true) => self.pixels::<S, K, ST, 1, W, true>(ox, c0, pool),
                        (1, false) => self.pixels::<S, K, ST, 1, W, false>(ox, c0, pool),
                        (2, true) => self.pixels::<S, K, ST, 2, W, true>(ox, c0, pool),
                        (2, false) => self.pixels::<S, K, ST, 2, W, false>(ox, c0, pool),
                        (4, true) if XB > 4 => self.pixels::<S, K, ST, 4, W, true>(ox, c0, pool),
                        (4, false) if XB > 4 => self.pixels::<S, K, ST, 4, W, false>(ox, c0, pool),
                        (_, true) => self.pixels::<S, K, ST, XB, W, true>(ox, c0, pool),
                        (_, false) => self.pixels::<S, K, ST, XB, W, false>(ox, c0, pool),
                    }
                }
                ox += width;
            }
        }
    }

    /// `W` floats at flat offset `at` of `data`.
    ///
    /// # Safety
    /// `at + W <= data.len()`.
    #[inline(always)]
    unsafe fn load<const W: usize>(data: &[f32], at: usize) -> [f32; W] {
        debug_assert!(at + W <= data.len());
        // SAFETY: in bounds by the caller's contract.
        unsafe { data.as_ptr().add(at).cast::<[f32; W]>().read_unaligned() }
    }

    /// Kernel row `dy` of `X` neighbouring output pixels, channels `c0..c0 + W`, into `acc`.
    ///
    /// `K`, `ST` and `X` are constants, so the pixel loop unrolls and each load is a constant
    /// offset from one pointer.
    ///
    /// # Safety
    /// Row `dy` is inside the input (one of `self.dys`), `c0 + W <= c`, and with `INTERIOR`
    /// every column of the block is inside the input.
    #[inline(always)]
    unsafe fn kernel_row<
        S: Madd,
        const K: usize,
        const ST: usize,
        const X: usize,
        const W: usize,
        const INTERIOR: bool,
    >(
        &self,
        ix: isize,
        dy: usize,
        c0: usize,
        acc: &mut [[f32; W]; X],
    ) {
        let l = self.l;
        let size = l.size;
        let plane = Layout::blocked(size * size).at(0, c0);
        let in_row = (self.iy + dy as isize) as usize * size;
        for dx in 0..K {
            // SAFETY: tap (dy, dx) is inside the kernel and c0 + W <= c <= ldw.
            let wv: [f32; W] = unsafe { Self::load(l.weights, (dy * K + dx) * l.ldw + c0) };
            for (x, acc) in acc.iter_mut().enumerate() {
                let col = ix + (x * ST + dx) as isize;
                // Taps in the padding are skipped (a negative column wraps to a large one).
                if INTERIOR || (col as usize) < size {
                    // SAFETY: the row is inside the input and so is the column (checked, or interior).
                    let xv: [f32; W] = unsafe { Self::load(l.input, plane + (in_row + col as usize) * CW) };
                    *acc = fma::<S, W>(xv, wv, *acc);
                }
            }
        }
    }

    /// `X` neighbouring output pixels from `ox`, channels `c0..c0 + W`; `INTERIOR` means every
    /// tap is inside the input.
    ///
    /// # Safety
    /// As [`Row::chunk`].
    #[inline(always)]
    unsafe fn pixels<S: Madd, const K: usize, const ST: usize, const X: usize, const W: usize, const INTERIOR: bool>(
        &self,
        ox: usize,
        c0: usize,
        pool: &mut Option<&mut [f32]>,
    ) {
        let l = self.l;
        let ix = (ox * ST) as isize - (K / 2) as isize;
        let mut acc = [[0.0f32; W]; X];
        // With few pixels the FMAs into one accumulator wait on each other: odd kernel rows then
        // go to a second set.
        let mut odd = [[0.0f32; W]; X];
        let mut dy = self.dys.start;
        while dy < self.dys.end {
            // SAFETY: dy (and dy + 1 when used) are in `self.dys`; the rest is forwarded.
            unsafe { self.kernel_row::<S, K, ST, X, W, INTERIOR>(ix, dy, c0, &mut acc) };
            if X < 4 && dy + 1 < self.dys.end {
                // SAFETY: as above.
                unsafe { self.kernel_row::<S, K, ST, X, W, INTERIOR>(ix, dy + 1, c0, &mut odd) };
                dy += 1;
            }
            dy += 1;
        }
        let scale: [f32; W] = l.scale[c0..c0 + W].try_into().expect("W channels");
        let shift: [f32; W] = l.shift[c0..c0 + W].try_into().expect("W channels");
        let mut sums = [0.0f32; W];
        let plane = Layout::blocked(l.out_size * l.out_size).at(self.oy * l.out_size + ox, c0);
        for x in 0..X {
            let mut v = if X < 4 { core::array::from_fn(|j| acc[x][j] + odd[x][j]) } else { acc[x] };
            v = fma::<S, W>(v, scale, shift);
            l.act.apply_all(&mut v);
            sums = core::array::from_fn(|j| sums[j] + v[j]);
            // SAFETY: pixel (oy, ox + x), channels c0..c0 + W are in the caller's exclusive region.
            unsafe { self.out.add(plane + x * CW).cast::<[f32; W]>().write_unaligned(v) };
        }
        if let Some(pool) = pool.as_deref_mut() {
            for (p, s) in pool[c0..c0 + W].iter_mut().zip(sums) {
                *p += s;
            }
        }
    }
}
