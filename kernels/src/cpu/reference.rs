//! Portable reference kernels: NCHW, straight loops, no tricks. The fast kernels are tested
//! against these (see the `against_reference!` tests in `cpu::tests`).

use super::Act;

/// A convolution with padding `k / 2` and no bias on a square NCHW image:
/// `x` is `[c_in][size][size]`, `w` is `[c_out][c_in / groups][k][k]`; returns `[c_out][o][o]`.
pub fn conv2d(
    x: &[f32],
    c_in: usize,
    size: usize,
    w: &[f32],
    c_out: usize,
    k: usize,
    stride: usize,
    groups: usize,
) -> Vec<f32> {
    let o = dynofa_core::arch::conv_out(size, k, stride);
    let (gin, gout) = (c_in / groups, c_out / groups);
    assert_eq!(x.len(), c_in * size * size);
    assert_eq!(w.len(), c_out * gin * k * k);
    let pad = (k / 2) as isize;
    let mut y = vec![0.0; c_out * o * o];
    for co in 0..c_out {
        let g = co / gout;
        for oy in 0..o {
            for ox in 0..o {
                let mut acc = 0.0f32;
                for ci in 0..gin {
                    for dy in 0..k {
                        for dx in 0..k {
                            let iy = (oy * stride + dy) as isize - pad;
                            let ix = (ox * stride + dx) as isize - pad;
                            if iy < 0 || ix < 0 || iy >= size as isize || ix >= size as isize {
                                continue;
                            }
                            let xv = x[((g * gin + ci) * size + iy as usize) * size + ix as usize];
                            acc += xv * w[((co * gin + ci) * k + dy) * k + dx];
                        }
                    }
                }
                y[(co * o + oy) * o + ox] = acc;
            }
        }
    }
    y
}

/// `x[c][i] = act(x[c][i] * scale[c] + shift[c])` over `[c][hw]`.
pub fn bn_act(x: &mut [f32], scale: &[f32], shift: &[f32], act: Act) {
    let hw = x.len() / scale.len();
    for (c, plane) in x.chunks_exact_mut(hw).enumerate() {
        for v in plane {
            *v = act.apply(*v * scale[c] + shift[c]);
        }
    }
}

/// Mean of each channel of `[c][hw]`.
pub fn channel_means(x: &[f32], c: usize) -> Vec<f32> {
    let hw = x.len() / c;
    x.chunks_exact(hw).map(|p| p.iter().sum::<f32>() / hw as f32).collect()
}

/// `y = act(w x + b)` with `w` row-major `[out][in]`.
pub fn linear(x: &[f32], w: &[f32], bias: Option<&[f32]>, act: Act) -> Vec<f32> {
    w.chunks_exact(x.len())
        .enumerate()
        .map(|(o, row)| {
            let dot: f32 = row.iter().zip(x).map(|(a, b)| a * b).sum();
            act.apply(dot + bias.map_or(0.0, |b| b[o]))
        })
        .collect()
}

/// Squeeze-and-excite on `[c][hw]` in place: pool, reduce (`[se][c]`, bias) + ReLU, expand
/// (`[c][se]`, bias) + h_sigmoid, multiply.
pub fn squeeze_excite(x: &mut [f32], c: usize, reduce: (&[f32], &[f32]), expand: (&[f32], &[f32])) {
    let pooled = channel_means(x, c);
    let hidden = linear(&pooled, reduce.0, Some(reduce.1), Act::Relu);
    let gate = linear(&hidden, expand.0, Some(expand.1), Act::HSigmoid);
    let hw = x.len() / c;
    for (plane, g) in x.chunks_exact_mut(hw).zip(gate) {
        for v in plane {
            *v *= g;
        }
    }
}

/// `[c][hw]` (NCHW) to `[hw][c]` (NHWC).
pub fn to_nhwc(x: &[f32], c: usize) -> Vec<f32> {
    let hw = x.len() / c;
    (0..hw * c).map(|i| x[(i % c) * hw + i / c]).collect()
}

/// `[hw][c]` (NHWC) to `[c][hw]` (NCHW).
pub fn to_nchw(x: &[f32], c: usize) -> Vec<f32> {
    let hw = x.len() / c;
    (0..hw * c).map(|i| x[(i % hw) * c + i / hw]).collect()
}
