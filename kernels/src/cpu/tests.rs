//! Every fast kernel against its reference, on every instruction set this CPU has, through one
//! macro with a stated tolerance: max |fast - reference| / max |reference|.

use super::depthwise::{DepthwiseLayer, depthwise};
use super::pointwise::{Epilogue, NR, PackedB, pointwise};
use super::reference as r;
use super::vector::matvec;
use super::{Act, Isa, Layout, stem_im2col};
use crate::rng::SplitMix64;

/// Relative error of `got` against `want`.
fn rel_err(want: &[f32], got: &[f32]) -> f32 {
    assert_eq!(want.len(), got.len());
    let scale = want.iter().fold(0.0f32, |m, v| m.max(v.abs())).max(1e-30);
    want.iter().zip(got).fold(0.0f32, |m, (a, b)| m.max((a - b).abs())) / scale
}

fn random(rng: &mut SplitMix64, n: usize, std: f64) -> Vec<f32> {
    (0..n).map(|_| rng.centred(std) as f32).collect()
}

/// `#[test] fn $name`: for every instruction set and case, `$body` returns (reference, fast)
/// and their relative error must be at most `$tol`.
macro_rules! against_reference {
    ($name:ident, tol = $tol:expr, cases = $cases:expr, |$isa:ident, $rng:ident, $case:ident| $body:block) => {
        #[test]
        fn $name() {
            for $isa in Isa::available() {
                for (i, $case) in $cases.into_iter().enumerate() {
                    let mut $rng = SplitMix64::new(i as u64);
                    let (want, got): (Vec<f32>, Vec<f32>) = $body;
                    let err = rel_err(&want, &got);
                    assert!(
                        err <= $tol,
                        "{} on {:?}, case {:?}: relative error {err:e}",
                        stringify!($name),
                        $isa,
                        $case
                    );
                }
            }
        }
    };
}

const ACTS: [Act; 3] = [Act::Identity, Act::Relu, Act::HSwish];

against_reference!(
    pointwise_matches_conv1x1_on_sliced_weights,
    tol = 1e-5,
    // (rows, k, n, stored k, stored n, activation, residual, split by panels)
    cases = [
        (1, 8, 8, 8, 8, 0, false, false),
        (49, 192, 136, 192, 136, 2, false, true),
        (37, 24, 72, 32, 144, 1, false, false),
        (50, 96, 48, 144, 48, 0, true, false),
        (9, 27, 24, 27, 24, 2, false, true),
        (200, 40, 120, 40, 240, 2, false, false),
    ],
    |isa, rng, case| {
        let (m, k, n, k_max, n_max, act, residual, by_panels) = case;
        let act = ACTS[act];
        let a = random(&mut rng, m * k, 1.0);
        let w = random(&mut rng, n_max * k_max, 0.3);
        let scale = random(&mut rng, n_max, 1.0);
        let shift = random(&mut rng, n_max, 1.0);
        let res = residual.then(|| random(&mut rng, m * n, 1.0));
        // Reference: slice W[:n, :k] and run a 1x1 conv on the NCHW image (m pixels in a row).
        let sliced: Vec<f32> = (0..n * k).map(|i| w[(i / k) * k_max + i % k]).collect();
        let mut want = conv1x1_rows(&r::to_nchw(&a, k), k, m, &sliced, n);
        r::bn_act(&mut want, &scale[..n], &shift[..n], act);
        let mut want = r::to_nhwc(&want, n);
        if let Some(res) = &res {
            want.iter_mut().zip(res).for_each(|(v, r)| *v += r);
        }
        let b = PackedB::from_out_in(&w, n_max, k_max);
        let panels = PackedB::panels_for(n);
        // Two calls over disjoint parts, as two threads would make them.
        let parts = if by_panels {
            [(0..m, 0..panels / 2), (0..m, panels / 2..panels)]
        } else {
            [(0..m / 3, 0..panels), (m / 3..m, 0..panels)]
        };
        // NHWC in and out, then blocked in and out.
        let mut got = Vec::new();
        for is_blocked in [false, true] {
            let (la, lo) =
                if is_blocked { (Layout::blocked(m), Layout::blocked(m)) } else { (Layout::nhwc(k), Layout::nhwc(n)) };
            let lay = |x: &[f32], c| if is_blocked { blocked(x, m, c) } else { x.to_vec() };
            let res = res.as_deref().map(|r| lay(r, n));
            let ep = Epilogue { scale: &scale, shift: &shift, act, residual: res.as_deref() };
            let mut out = vec![f32::NAN; lo.len(m, n)];
            for (rows, cols) in parts.clone() {
                // SAFETY: `out` has lo.len(m, n) values and the calls run one after the other.
                unsafe { pointwise(isa, &lay(&a, k), la, m, k, &b, n, rows, cols, &ep, out.as_mut_ptr(), lo) };
            }
            got.extend(if is_blocked { nhwc(&out, m, n) } else { out });
        }
        (want.repeat(2), got)
    }
);

/// `x` (NHWC, `pixels` x `c`) in [`Layout::blocked`].
fn blocked(x: &[f32], pixels: usize, c: usize) -> Vec<f32> {
    let l = Layout::blocked(pixels);
    let mut out = vec![f32::NAN; l.len(pixels, c)];
    for (i, v) in x.iter().enumerate() {
        out[l.at(i / c, i % c)] = *v;
    }
    out
}

/// `x` in [`Layout::blocked`] back to NHWC.
fn nhwc(x: &[f32], pixels: usize, c: usize) -> Vec<f32> {
    let l = Layout::blocked(pixels);
    (0..pixels * c).map(|i| x[l.at(i / c, i % c)]).collect()
}

/// 1x1 convolution of `[k][m]` by `[n][k]` through the reference conv on an `m`-pixel row.
fn conv1x1_rows(x: &[f32], k: usize, m: usize, w: &[f32], n: usize) -> Vec<f32> {
    // conv2d wants a square image: pad the m pixels to s x s, convolve, keep the first m.
    let s = (1..).find(|s| s * s >= m).expect("a square holds m pixels");
    let mut img = vec![0.0; k * s * s];
    for c in 0..k {
        img[c * s * s..][..m].copy_from_slice(&x[c * m..][..m]);
    }
    let y = r::conv2d(&img, k, s, w, n, 1, 1, 1);
    (0..n).flat_map(|c| y[c * s * s..][..m].to_vec()).collect()
}

against_reference!(
    depthwise_matches_grouped_conv_with_pool,
    tol = 1e-5,
    // (size, channels, stored channels, kernel, stride, activation, split by channels)
    cases = [
        (7, 24, 24, 3, 1, 1, false),
        (14, 72, 144, 5, 2, 2, true),
        (15, 40, 48, 7, 2, 1, false),
        (5, 136, 136, 7, 1, 2, true),
        (28, 32, 32, 3, 2, 0, false),
        (9, 16, 24, 5, 1, 2, false),
    ],
    |isa, rng, case| {
        let (size, c, ldw, k, stride, act, by_chans) = case;
        let act = ACTS[act];
        let o = dynofa_core::arch::conv_out(size, k, stride);
        let x = random(&mut rng, size * size * c, 1.0);
        let taps = random(&mut rng, k * k * ldw, 0.3);
        let scale = random(&mut rng, ldw, 1.0);
        let shift = random(&mut rng, ldw, 1.0);
        let w_nchw: Vec<f32> = (0..c * k * k).map(|i| taps[(i % (k * k)) * ldw + i / (k * k)]).collect();
        let mut want = r::conv2d(&r::to_nchw(&x, c), c, size, &w_nchw, c, k, stride, c);
        r::bn_act(&mut want, &scale[..c], &shift[..c], act);
        let sums: Vec<f32> = r::channel_means(&want, c).iter().map(|m| m * (o * o) as f32).collect();
        let want = [r::to_nhwc(&want, c), sums].concat();

        let xb = blocked(&x, size * size, c);
        let layer = DepthwiseLayer {
            input: &xb,
            size,
            c,
            weights: &taps,
            ldw,
            k,
            stride,
            out_size: o,
            scale: &scale,
            shift: &shift,
            act,
        };
        let mut got = vec![f32::NAN; Layout::blocked(o * o).len(o * o, c)];
        let mut pool = vec![0.0; c];
        let parts = if by_chans {
            [(0..o, 0..c / 32 * 16), (0..o, c / 32 * 16..c)]
        } else {
            [(0..o / 2, 0..c), (o / 2..o, 0..c)]
        };
        for (rows, chans) in parts {
            // SAFETY: `got` has o * o * c values and the calls run one after the other.
            unsafe { depthwise(isa, &layer, rows, chans, got.as_mut_ptr(), Some(&mut pool)) };
        }
        (want, [nhwc(&got, o * o, c), pool].concat())
    }
);

against_reference!(
    matvec_matches_linear,
    tol = 1e-5,
    // (rows, k, row stride, bias, activation)
    cases = [
        (1, 8, 8, false, Act::Identity),
        (48, 192, 192, true, Act::Relu),
        (192, 40, 48, true, Act::HSigmoid),
        (1000, 1536, 1536, true, Act::Identity),
        (37, 100, 130, false, Act::HSwish)
    ],
    |isa, rng, case| {
        let (rows, k, ldw, bias, act) = case;
        let w = random(&mut rng, rows * ldw, 0.2);
        let x = random(&mut rng, k, 1.0);
        let b = bias.then(|| random(&mut rng, rows, 1.0));
        let sliced: Vec<f32> = (0..rows * k).map(|i| w[(i / k) * ldw + i % k]).collect();
        let want = r::linear(&x, &sliced, b.as_deref(), act);
        let mut got = vec![f32::NAN; rows];
        for part in [0..rows / 2, rows / 2..rows] {
            // SAFETY: `got` has `rows` values and the calls run one after the other.
            unsafe { matvec(isa, &w, ldw, &x, b.as_deref(), act, part, got.as_mut_ptr()) };
        }
        (want, got)
    }
);

against_reference!(
    stem_im2col_and_gemm_match_conv3x3_stride2,
    tol = 1e-5,
    cases = [(16, 24), (17, 16), (64, 24)],
    |isa, rng, case| {
        let (res, c0) = case;
        let o = dynofa_core::arch::conv_out(res, 3, 2);
        let x = random(&mut rng, 3 * res * res, 1.0);
        let w = random(&mut rng, c0 * 27, 0.3);
        let scale = random(&mut rng, c0, 1.0);
        let shift = random(&mut rng, c0, 1.0);
        let mut want = r::conv2d(&x, 3, res, &w, c0, 3, 2, 1);
        r::bn_act(&mut want, &scale, &shift, Act::HSwish);
        let want = r::to_nhwc(&want, c0);
        let mut cols = vec![0.0; o * o * 27];
        stem_im2col(&x, res, 0..o * o, &mut cols);
        let ep = Epilogue { scale: &scale, shift: &shift, act: Act::HSwish, residual: None };
        let (m, lo) = (o * o, Layout::blocked(o * o));
        let mut got = vec![f32::NAN; lo.len(m, c0)];
        let b = PackedB::from_out_in(&w, c0, 27);
        // SAFETY: `got` has lo.len(m, c0) values.
        unsafe {
            pointwise(isa, &cols, Layout::nhwc(27), m, 27, &b, c0, 0..m, 0..c0.div_ceil(NR), &ep, got.as_mut_ptr(), lo)
        };
        (want, nhwc(&got, m, c0))
    }
);

#[test]
fn activations_follow_ofa() {
    assert_eq!(Act::HSwish.apply(-4.0), 0.0);
    assert_eq!(Act::HSwish.apply(1.0), 1.0 * 4.0 / 6.0);
    assert_eq!(Act::HSwish.apply(5.0), 5.0);
    assert_eq!(Act::HSigmoid.apply(0.0), 0.5);
    assert_eq!(Act::HSigmoid.apply(9.0), 1.0);
    assert_eq!(Act::Relu.apply(-1.0), 0.0);
}
