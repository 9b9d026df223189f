//! Matrix-vector products (SE, `feature_mix_layer`, `classifier`) and the global average pool.

use core::ops::Range;

use super::simd::{Madd, multiversion};
use super::{Act, CHUNK, Layout};

/// Lanes per partial sum.
const LANES: usize = 16;

multiversion! {
    /// `out[i] = act(bias[i] + sum_j w[i * ldw + j] * x[j])` for `i` in `rows`, `j < x.len()`.
    ///
    /// # Safety
    /// `out` must be valid for writes at the indices `rows` and no other thread may access them
    /// during the call.
    pub unsafe fn matvec(
        w: &[f32],
        ldw: usize,
        x: &[f32],
        bias: Option<&[f32]>,
        act: Act,
        rows: Range<usize>,
        out: *mut f32,
    ) => matvec_impl
    { avx512: 4, avx2: 4, neon: 4, baseline: 2 }
}

#[inline(always)]
unsafe fn matvec_impl<S: Madd, const R: usize>(
    w: &[f32],
    ldw: usize,
    x: &[f32],
    bias: Option<&[f32]>,
    act: Act,
    rows: Range<usize>,
    out: *mut f32,
) {
    let k = x.len();
    assert!(k <= ldw && (rows.is_empty() || w.len() >= (rows.end - 1) * ldw + k));
    assert!(bias.is_none_or(|b| b.len() >= rows.end));
    let full = k / LANES * LANES;
    let mut i = rows.start;
    while i < rows.end {
        let r = R.min(rows.end - i);
        let mut acc = [[0.0f32; LANES]; R];
        let mut j = 0;
        while j < full {
            let xv: &[f32; LANES] = x[j..j + LANES].try_into().expect("LANES");
            for (q, acc) in acc.iter_mut().enumerate().take(r) {
                let wv: &[f32; LANES] = w[(i + q) * ldw + j..][..LANES].try_into().expect("LANES");
                for l in 0..LANES {
                    acc[l] = S::madd(wv[l], xv[l], acc[l]);
                }
            }
            j += LANES;
        }
        for (q, acc) in acc.iter().enumerate().take(r) {
            let row = &w[(i + q) * ldw..][..k];
            let tail: f32 = (full..k).map(|j| row[j] * x[j]).sum();
            let v = acc.iter().sum::<f32>() + tail + bias.map_or(0.0, |b| b[i + q]);
            // SAFETY: i + q is in `rows`, which the caller hands us exclusively.
            unsafe { *out.add(i + q) = act.apply(v) };
        }
        i += r;
    }
}

/// Means over the `m` pixels of a feature map in layout `l`, for the channels `cols` (a start
/// that is a multiple of [`CHUNK`]), into `out[cols]`.
///
/// # Safety
/// `out` must be valid for writes at `cols` and no other thread may access them during the call.
pub unsafe fn column_means(x: &[f32], m: usize, l: Layout, cols: Range<usize>, out: *mut f32) {
    assert!(cols.start.is_multiple_of(CHUNK) && x.len() >= l.len(m, cols.end));
    for c0 in cols.clone().step_by(CHUNK) {
        let w = CHUNK.min(cols.end - c0);
        let mut sum = [0.0f32; CHUNK];
        for p in 0..m {
            let v = &x[l.at(p, c0)..][..w];
            sum.iter_mut().zip(v).for_each(|(s, v)| *s += v);
        }
        for (j, s) in sum[..w].iter().enumerate() {
            // SAFETY: c0 + j is in `cols`, which the caller hands us exclusively.
            unsafe { *out.add(c0 + j) = s / m as f32 };
        }
    }
}
