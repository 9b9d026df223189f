//! The CPU engine and its kernels: portable references in [`reference`](mod@reference), the fast
//! channel-blocked kernels beside them, and the engine that runs any sub-network on the shared
//! weights.

pub mod depthwise;
mod engine;
pub mod pointwise;
pub mod reference;
pub mod simd;
pub mod team;
pub mod vector;

#[cfg(test)]
mod tests;

pub use engine::{CpuEngine, EngineError, Layer};
pub use simd::Isa;

use dynofa_core::Activation;

/// Channels per vector chunk of [`Layout::blocked`] tensors.
pub const CHUNK: usize = 16;

/// Where channel `ch` of pixel `p` of a feature map lives: at `(ch / CHUNK) * chunk + p * pixel +
/// ch % CHUNK`. Both layouts the kernels use are of this form, so one addressing serves both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// Distance between chunks of [`CHUNK`] channels.
    pub chunk: usize,
    /// Distance between pixels.
    pub pixel: usize,
}

impl Layout {
    /// NHWC (row-major `[pixels][c]`).
    pub const fn nhwc(c: usize) -> Self {
        Layout { chunk: CHUNK, pixel: c }
    }

    /// Channel-blocked `[ceil(c / CHUNK)][pixels][CHUNK]` (NCHW16c): each chunk of channels is a
    /// plane of `pixels` vectors. A last half-full chunk keeps its full stride.
    pub const fn blocked(pixels: usize) -> Self {
        Layout { chunk: pixels * CHUNK, pixel: CHUNK }
    }

    /// Offset of channel `ch` of pixel `p`.
    #[inline(always)]
    pub const fn at(self, p: usize, ch: usize) -> usize {
        (ch / CHUNK) * self.chunk + p * self.pixel + ch % CHUNK
    }

    /// Floats spanned by channels `0..c` of pixels `0..pixels`.
    pub const fn len(self, pixels: usize, c: usize) -> usize {
        if pixels == 0 || c == 0 { 0 } else { self.at(pixels - 1, c - 1) + 1 }
    }
}

/// An elementwise activation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Act {
    /// No activation.
    Identity,
    /// `max(x, 0)`.
    Relu,
    /// `x * relu6(x + 3) / 6`.
    HSwish,
    /// `relu6(x + 3) / 6`.
    HSigmoid,
}

impl Act {
    /// Apply to one value (`ofa`'s `x * relu6(x + 3) / 6` and `relu6(x + 3) / 6`).
    #[inline(always)]
    pub fn apply(self, v: f32) -> f32 {
        match self {
            Act::Identity => v,
            Act::Relu => v.max(0.0),
            // A multiply by 1/6 instead of ofa's division: within an ulp, and a division would
            // dominate the cost of the depthwise epilogue.
            Act::HSwish => v * (v + 3.0).clamp(0.0, 6.0) * (1.0 / 6.0),
            Act::HSigmoid => (v + 3.0).clamp(0.0, 6.0) * (1.0 / 6.0),
        }
    }

    /// Apply to a register tile, with the branch outside the loop so that it vectorises.
    #[inline(always)]
    pub fn apply_all<const N: usize>(self, v: &mut [f32; N]) {
        match self {
            Act::Identity => {}
            Act::Relu => v.iter_mut().for_each(|x| *x = Act::Relu.apply(*x)),
            Act::HSwish => v.iter_mut().for_each(|x| *x = Act::HSwish.apply(*x)),
            Act::HSigmoid => v.iter_mut().for_each(|x| *x = Act::HSigmoid.apply(*x)),
        }
    }
}

impl From<Activation> for Act {
    fn from(a: Activation) -> Self {
        match a {
            Activation::Relu => Act::Relu,
            Activation::HSwish => Act::HSwish,
        }
    }
}

/// `first_conv`'s im2col: rows `pixels` of the `[o * o][27]` patch matrix of a 3x3, stride 2,
/// padding 1 convolution over the NCHW image `input` (`[3][r][r]`), into `out`.
pub fn stem_im2col(input: &[f32], r: usize, pixels: core::ops::Range<usize>, out: &mut [f32]) {
    let o = dynofa_core::arch::conv_out(r, 3, 2);
    for (row, p) in out.chunks_exact_mut(27).zip(pixels) {
        let (oy, ox) = (p / o, p % o);
        // Top-left tap; the patch is inside the image unless it touches the padding.
        let (iy, ix) = ((2 * oy).wrapping_sub(1), (2 * ox).wrapping_sub(1));
        if oy > 0 && ox > 0 && iy + 2 < r && ix + 2 < r {
            // Three runs of three per channel: no per-tap index arithmetic or bounds test.
            for (t, taps) in row.chunks_exact_mut(3).enumerate() {
                let (ci, dy) = (t / 3, t % 3);
                taps.copy_from_slice(&input[(ci * r + iy + dy) * r + ix..][..3]);
            }
            continue;
        }
        for (t, v) in row.iter_mut().enumerate() {
            let (ci, dy, dx) = (t / 9, t / 3 % 3, t % 3);
            let (iy, ix) = (iy.wrapping_add(dy), ix.wrapping_add(dx));
            *v = if iy < r && ix < r { input[(ci * r + iy) * r + ix] } else { 0.0 };
        }
    }
}
