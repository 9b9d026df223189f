//! Depthwise kxk convolution on NHWC activations with BN, the activation and the SE average pool
//! fused into the store. Channels are the vector dimension (chunks of 16, a last one of 8: every
//! OFA width is a multiple of 8); several neighbouring output pixels share each weight load.

use core::ops::Range;

use super::Act;
use super::simd::{Madd, fma, multiversion};

/// Channels per vector chunk.
const CW: usize = 16;

/// Shape and weights of one depthwise layer.
#[derive(Debug, Clone, Copy)]
pub struct DepthwiseLayer<'a> {
    /// Input feature map, row-major `[size][size][c]`.
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
    /// Output rows `rows` and channels `chans` (multiples of 8) of a depthwise layer into `out`
    /// (`[out_size][out_size][c]`). With `pool`, the stored values are also added to
    /// `pool[ch]` (the SE average pool's sums).
    ///
    /// # Safety
    /// `out` must be valid for writes of `out_size² * c` floats and no other thread may access
    /// rows `rows` x channels `chans` of it during the call.
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
    mut pool: Option<&mut [f32]>,
) {
    let (size, c, k, s) = (l.size, l.c, l.k, l.stride);
    assert!(l.input.len() >= size * size * c && rows.end <= l.out_size && chans.end <= c);
    assert!(
        chans.start.is_multiple_of(8)
            && chans.end.is_multiple_of(8)
            && c <= l.ldw
            && l.weights.len() >= (k * k - 1) * l.ldw + c
    );
    assert!(l.scale.len() >= c && l.shift.len() >= c && pool.as_ref().is_none_or(|p| p.len() >= c));
    let pad = (k / 2) as isize;
    // Output columns whose taps all fall inside the input.
    let x_lo = (k / 2).div_ceil(s).min(l.out_size);
    let x_hi = if size + k / 2 >= k { (size + k / 2 - k) / s + 1 } else { 0 }.clamp(x_lo, l.out_size);
    for oy in rows {
        let iy = (oy * s) as isize - pad;
        let row = Row { l, iy, dys: taps(iy, k, size), oy, out };
        let pool = &mut pool;
        // Pixel blocks outside, channels inside: each block writes whole pixels (full cache lines).
        // Blocks that reach into the padding take clipped taps; a pixel alone is latency-bound,
        // so the end of the row goes in blocks of 4, 2 and then 1.
        let mut ox = 0;
        for width in [XB, 4, 2, 1] {
            while ox + width <= l.out_size && (width == XB || width == 1 || ox + width * 2 > l.out_size) {
                let interior = ox >= x_lo && ox + width <= x_hi;
                // SAFETY: the pixels and channels are within the caller's exclusive region.
                unsafe {
                    match width {
                        1 => row.block::<S, 1>(ox, interior, chans.clone(), pool),
                        2 => row.block::<S, 2>(ox, interior, chans.clone(), pool),
                        4 if XB > 4 => row.block::<S, 4>(ox, interior, chans.clone(), pool),
                        _ => row.block::<S, XB>(ox, interior, chans.clone(), pool),
                    }
                }
                ox += width;
            }
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
    /// `X` pixels from `ox`, every channel of `chans`, in chunks of 16 (and a last one of 8).
    ///
    /// # Safety
    /// The pixels and channels are within the caller's exclusive region of the output.
    #[inline(always)]
    unsafe fn block<S: Madd, const X: usize>(
        &self,
        ox: usize,
        interior: bool,
        chans: Range<usize>,
        pool: &mut Option<&mut [f32]>,
    ) {
        let mut c0 = chans.start;
        while c0 + CW <= chans.end {
            // SAFETY: forwarded.
            unsafe { self.pixels::<S, X, CW>(ox, c0, interior, pool) };
            c0 += CW;
        }
        if c0 < chans.end {
            // SAFETY: forwarded.
            unsafe { self.pixels::<S, X, 8>(ox, c0, interior, pool) };
        }
    }

    /// `W` channels from `c0` at flat offset `at` of `data`.
    ///
    /// # Safety
    /// `at + c0 + W <= data.len()`.
    #[inline(always)]
    unsafe fn load<const W: usize>(data: &[f32], at: usize) -> [f32; W] {
        debug_assert!(at + W <= data.len());
        // SAFETY: in bounds by the caller's contract.
        unsafe { data.as_ptr().add(at).cast::<[f32; W]>().read_unaligned() }
    }

    /// One pixel with input column `ix` (may be negative) and valid kernel columns `dxs`: four
    /// kernel rows at a time into four partial sums, so that the FMAs do not wait on each other.
    ///
    /// # Safety
    /// `dxs` and `self.dys` are clipped to the input.
    #[inline(always)]
    unsafe fn one_pixel<S: Madd, const W: usize>(&self, ix: isize, c0: usize, dxs: Range<usize>) -> [f32; W] {
        let l = self.l;
        let (size, c, k) = (l.size, l.c, l.k);
        let mut acc = [[0.0f32; W]; 4];
        let mut dy = self.dys.start;
        while dy < self.dys.end {
            let rows = (self.dys.end - dy).min(4);
            for dx in dxs.clone() {
                let col = (ix + dx as isize) as usize;
                for q in 0..4 {
                    if q < rows {
                        let y = (self.iy + (dy + q) as isize) as usize;
                        // SAFETY: row dy + q and column col are inside the input and the kernel.
                        let (xv, wv) = unsafe {
                            (
                                Self::load(l.input, (y * size + col) * c + c0),
                                Self::load(l.weights, ((dy + q) * k + dx) * l.ldw + c0),
                            )
                        };
                        acc[q] = fma::<S, W>(xv, wv, acc[q]);
                    }
                }
            }
            dy += rows;
        }
        core::array::from_fn(|j| (acc[0][j] + acc[1][j]) + (acc[2][j] + acc[3][j]))
    }

    /// `X` neighbouring output pixels from `ox`, channels `c0..c0 + W`; `interior` means every
    /// tap is inside the input.
    ///
    /// # Safety
    /// As [`Row::block`].
    #[inline(always)]
    unsafe fn pixels<S: Madd, const X: usize, const W: usize>(
        &self,
        ox: usize,
        c0: usize,
        interior: bool,
        pool: &mut Option<&mut [f32]>,
    ) {
        let l = self.l;
        let (size, c, k, s) = (l.size, l.c, l.k, l.stride);
        let ix = (ox * s) as isize - (k / 2) as isize;
        let dxs = if interior { 0..k } else { taps(ix, k, size) };
        let mut acc = [[0.0f32; W]; X];
        if X == 1 {
            // SAFETY: forwarded.
            acc[0] = unsafe { self.one_pixel::<S, W>(ix, c0, dxs) };
        } else if interior {
            for dy in self.dys.clone() {
                let in_row = (self.iy + dy as isize) as usize * size;
                for dx in 0..k {
                    // SAFETY: tap (dy, dx) is inside the kernel and c0 + W <= c <= ldw.
                    let wv: [f32; W] = unsafe { Self::load(l.weights, (dy * k + dx) * l.ldw + c0) };
                    let base = (in_row as isize + ix + dx as isize) as usize;
                    for x in 0..X {
                        // SAFETY: the row and column lie inside the input (interior pixels).
                        let xv: [f32; W] = unsafe { Self::load(l.input, (base + x * s) * c + c0) };
                        acc[x] = fma::<S, W>(xv, wv, acc[x]);
                    }
                }
            }
        } else {
            // Taps in the padding read zeros.
            for dy in self.dys.clone() {
                let in_row = (self.iy + dy as isize) as usize * size;
                for dx in 0..k {
                    // SAFETY: tap (dy, dx) is inside the kernel and c0 + W <= c <= ldw.
                    let wv: [f32; W] = unsafe { Self::load(l.weights, (dy * k + dx) * l.ldw + c0) };
                    for x in 0..X {
                        // Branch-free, so that the accumulators stay in registers: read a valid
                        // column and multiply by 0 where the tap is in the padding.
                        let col = ix + (x * s + dx) as isize;
                        let inside = if col >= 0 && (col as usize) < size { 1.0 } else { 0.0 };
                        let col = col.clamp(0, size as isize - 1) as usize;
                        // SAFETY: the row is inside the input and the column clamped into it.
                        let xv: [f32; W] = unsafe { Self::load(l.input, (in_row + col) * c + c0) };
                        acc[x] = fma::<S, W>(xv.map(|v| v * inside), wv, acc[x]);
                    }
                }
            }
        }
        let scale: [f32; W] = l.scale[c0..c0 + W].try_into().expect("W channels");
        let shift: [f32; W] = l.shift[c0..c0 + W].try_into().expect("W channels");
        let mut sums = [0.0f32; W];
        for (x, acc) in acc.iter_mut().enumerate() {
            *acc = fma::<S, W>(*acc, scale, shift);
            l.act.apply_all::<W>(acc);
            sums = core::array::from_fn(|j| sums[j] + acc[j]);
            let at = ((self.oy * l.out_size) + ox + x) * c + c0;
            // SAFETY: pixel (oy, ox + x), channels c0..c0 + W are in the caller's exclusive region.
            unsafe { self.out.add(at).cast::<[f32; W]>().write_unaligned(*acc) };
        }
        if let Some(pool) = pool.as_deref_mut() {
            for (p, s) in pool[c0..c0 + W].iter_mut().zip(sums) {
                *p += s;
            }
        }
    }
}
