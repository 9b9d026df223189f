//! The OFA MobileNetV3 supernet's shape for any width multiplier.
//!
//! Everything here follows `ofa.imagenet_classification.elastic_nn.networks.OFAMobileNetV3`
//! (Cai et al., ICLR 2020): channel widths come from `make_divisible`, a block's middle width from
//! its input width and expand ratio, and costs are counted the way OFA's `count_net_flops` and
//! `count_parameters` count them for the extracted static sub-network.

use crate::config::SubnetConfig;

/// Number of elastic blocks (`blocks.1 ..= blocks.20`).
pub const NUM_BLOCKS: usize = 20;
/// Number of units (stages) of elastic blocks.
pub const NUM_UNITS: usize = 5;
/// Maximum depth of a unit.
pub const MAX_DEPTH: usize = 4;
/// Elastic kernel sizes.
pub const KERNEL_SIZES: [u8; 3] = [3, 5, 7];
/// Elastic expand ratios.
pub const EXPAND_RATIOS: [u8; 3] = [3, 4, 6];
/// Elastic depths.
pub const DEPTHS: [u8; 3] = [2, 3, 4];
/// Number of ImageNet classes.
pub const NUM_CLASSES: usize = 1000;
/// Input channels (RGB).
pub const IN_CHANNELS: usize = 3;
/// Largest allowed input resolution for every width.
pub const MAX_RESOLUTION: u16 = 224;
/// Resolutions move in steps of this many pixels.
pub const RESOLUTION_STEP: u16 = 4;
/// BatchNorm epsilon of every BN layer in the supernet.
pub const BN_EPS: f32 = 1e-5;
/// SE reduction factor.
const SE_REDUCTION: usize = 4;

/// Base widths of OFA MobileNetV3 before the width multiplier.
const BASE_WIDTHS: [f64; 9] = [16.0, 16.0, 24.0, 40.0, 80.0, 112.0, 160.0, 960.0, 1280.0];
/// Stride of each unit's first block.
const UNIT_STRIDE: [u8; NUM_UNITS] = [2, 2, 2, 1, 2];
/// Activation of each unit.
const UNIT_ACT: [Activation; NUM_UNITS] =
    [Activation::Relu, Activation::Relu, Activation::HSwish, Activation::HSwish, Activation::HSwish];
/// Whether each unit has squeeze-and-excite.
const UNIT_SE: [bool; NUM_UNITS] = [false, true, false, true, true];

/// Activation function of a layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Activation {
    /// max(x, 0).
    Relu,
    /// x * relu6(x + 3) / 6.
    HSwish,
}

/// OFA's `make_divisible`: round `v` to the nearest multiple of `divisor`, never below 90% of `v`.
pub const fn make_divisible(v: f64, divisor: usize) -> usize {
    let d = divisor as f64;
    // Python's `int(v + d / 2) // d * d`, with `v` non-negative so truncation is floor.
    let mut new_v = ((v + d / 2.0) as usize) / divisor * divisor;
    if new_v < divisor {
        new_v = divisor;
    }
    if (new_v as f64) < 0.9 * v {
        new_v += divisor;
    }
    new_v
}

/// Python's `round` (banker's rounding) for the non-negative products `in_channels * expand`.
const fn round_half_even(v: f64) -> usize {
    let floor = v as usize;
    let frac = v - floor as f64;
    if frac > 0.5 || (frac == 0.5 && floor % 2 == 1) { floor + 1 } else { floor }
}

/// Output size of a convolution with padding `k / 2`.
pub const fn conv_out(size: usize, kernel: usize, stride: usize) -> usize {
    (size + 2 * (kernel / 2) - kernel) / stride + 1
}

/// The supernet's widths for one width multiplier.
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Supernet {
    /// The width multiplier (1.0 and 1.2 have released checkpoints).
    pub width_mult: f64,
    /// Output channels of `first_conv` (and of `blocks.0`).
    pub stem: usize,
    /// Output channels of `blocks.0`.
    pub first_block: usize,
    /// Output channels of each unit.
    pub unit_out: [usize; NUM_UNITS],
    /// Output channels of `final_expand_layer`.
    pub final_expand: usize,
    /// Output channels of `feature_mix_layer`.
    pub feature_mix: usize,
}

/// Shape of one elastic block as a sub-network runs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct BlockShape {
    /// Index of the block in `blocks.N` (1..=20).
    pub index: usize,
    /// Unit the block belongs to (0..5).
    pub unit: usize,
    /// Input channels.
    pub in_ch: usize,
    /// Middle (expanded) channels for the chosen expand ratio.
    pub mid: usize,
    /// Output channels.
    pub out_ch: usize,
    /// SE hidden channels for the chosen middle width, when the unit has SE.
    pub se_mid: Option<usize>,
    /// Depthwise kernel size.
    pub kernel: usize,
    /// Depthwise stride.
    pub stride: usize,
    /// Activation after the expand and depthwise convolutions.
    pub act: Activation,
    /// Whether the block adds its input (identity shortcut).
    pub residual: bool,
    /// Input feature map height (= width).
    pub in_size: usize,
    /// Output feature map height (= width).
    pub out_size: usize,
}

impl BlockShape {
    /// Multiply-accumulates of this block, counted as OFA's `count_net_flops` counts them.
    pub const fn macs(&self) -> u64 {
        let in_hw = (self.in_size * self.in_size) as u64;
        let out_hw = (self.out_size * self.out_size) as u64;
        let (cin, mid, out) = (self.in_ch as u64, self.mid as u64, self.out_ch as u64);
        let k2 = (self.kernel * self.kernel) as u64;
        let se = match self.se_mid {
            Some(s) => 2 * mid * s as u64,
            None => 0,
        };
        cin * mid * in_hw + k2 * mid * out_hw + se + mid * out * out_hw
    }

    /// Learnable parameters of this block in the extracted static sub-network.
    pub const fn params(&self) -> u64 {
        let (cin, mid, out) = (self.in_ch as u64, self.mid as u64, self.out_ch as u64);
        let k2 = (self.kernel * self.kernel) as u64;
        let se = match self.se_mid {
            Some(s) => 2 * mid * s as u64 + s as u64 + mid,
            None => 0,
        };
        // Each BN layer carries a weight and a bias per channel.
        cin * mid + 2 * mid + k2 * mid + 2 * mid + se + mid * out + 2 * out
    }
}

/// Parameters and multiply-accumulates of a sub-network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Cost {
    /// Learnable parameters of the extracted static network.
    pub params: u64,
    /// Multiply-accumulates for one image.
    pub macs: u64,
}

impl Supernet {
    /// OFA MobileNetV3 with width multiplier 1.0.
    pub const W1_0: Supernet = Supernet::new(1.0);
    /// OFA MobileNetV3 with width multiplier 1.2 (Dynamic-OFA's supernet).
    pub const W1_2: Supernet = Supernet::new(1.2);

    /// The supernet for width multiplier `width_mult`.
    pub const fn new(width_mult: f64) -> Self {
        let mut w = [0usize; 9];
        let mut i = 0;
        while i < 9 {
            w[i] = make_divisible(BASE_WIDTHS[i] * width_mult, 8);
            i += 1;
        }
        Supernet {
            width_mult,
            stem: w[0],
            first_block: w[1],
            unit_out: [w[2], w[3], w[4], w[5], w[6]],
            final_expand: w[7],
            feature_mix: w[8],
        }
    }

    /// Identify a released width from the stem width stored in a checkpoint.
    pub fn from_stem_width(stem: usize) -> Option<Self> {
        [Self::W1_0, Self::W1_2].into_iter().find(|n| n.stem == stem)
    }

    /// Smallest allowed input resolution: OFA trains w1.0 from 128 and w1.2 from 160 pixels.
    pub fn min_resolution(&self) -> u16 {
        if self.width_mult > 1.0 { 160 } else { 128 }
    }

    /// Unit of an elastic block (1..=20).
    pub const fn unit_of(block: usize) -> usize {
        (block - 1) / MAX_DEPTH
    }

    /// Input channels of elastic block `block` (1..=20).
    pub const fn block_in(&self, block: usize) -> usize {
        let unit = Self::unit_of(block);
        let first = unit * MAX_DEPTH + 1;
        match (block == first, unit) {
            (true, 0) => self.first_block,
            (true, u) => self.unit_out[u - 1],
            (false, u) => self.unit_out[u],
        }
    }

    /// Middle width of `block` at expand ratio `e`: `make_divisible(round(in * e), 8)`.
    pub const fn block_mid(&self, block: usize, e: u8) -> usize {
        make_divisible(round_half_even(self.block_in(block) as f64 * e as f64) as f64, 8)
    }

    /// Widest middle width of `block` (the stored weight's row count).
    pub const fn block_mid_max(&self, block: usize) -> usize {
        self.block_mid(block, EXPAND_RATIOS[2])
    }

    /// SE hidden width for a middle width: `make_divisible(mid // 4, 8)`.
    pub const fn se_mid(mid: usize) -> usize {
        make_divisible((mid / SE_REDUCTION) as f64, 8)
    }

    /// Whether `block`'s unit has squeeze-and-excite.
    pub const fn block_has_se(block: usize) -> bool {
        UNIT_SE[Self::unit_of(block)]
    }

    /// Activation of `block`'s unit.
    pub const fn block_act(block: usize) -> Activation {
        UNIT_ACT[Self::unit_of(block)]
    }

    /// Depthwise stride of `block`.
    pub const fn block_stride(block: usize) -> usize {
        let unit = Self::unit_of(block);
        if block == unit * MAX_DEPTH + 1 { UNIT_STRIDE[unit] as usize } else { 1 }
    }

    /// Feature map size after `first_conv` for an input resolution.
    pub const fn stem_out(resolution: usize) -> usize {
        conv_out(resolution, 3, 2)
    }

    /// The blocks a sub-network runs, in order, with their shapes.
    ///
    /// The config is taken as given; validate it first (entries of skipped blocks are ignored).
    pub fn blocks<'a>(&'a self, cfg: &'a SubnetConfig) -> impl Iterator<Item = BlockShape> + 'a {
        let mut size = Self::stem_out(cfg.r as usize);
        (1..=NUM_BLOCKS).filter(move |&b| cfg.is_active(b)).map(move |b| {
            let stride = Self::block_stride(b);
            let kernel = cfg.ks[b - 1] as usize;
            let in_ch = self.block_in(b);
            let mid = self.block_mid(b, cfg.e[b - 1]);
            let out_ch = self.unit_out[Self::unit_of(b)];
            let out_size = conv_out(size, kernel, stride);
            let shape = BlockShape {
                index: b,
                unit: Self::unit_of(b),
                in_ch,
                mid,
                out_ch,
                se_mid: if Self::block_has_se(b) { Some(Self::se_mid(mid)) } else { None },
                kernel,
                stride,
                act: Self::block_act(b),
                residual: stride == 1 && in_ch == out_ch,
                in_size: size,
                out_size,
            };
            size = out_size;
            shape
        })
    }

    /// Feature map size that enters `final_expand_layer` for a resolution.
    pub const fn final_size(resolution: usize) -> usize {
        let mut size = Self::stem_out(resolution);
        let mut u = 0;
        while u < NUM_UNITS {
            size = conv_out(size, 3, UNIT_STRIDE[u] as usize);
            u += 1;
        }
        size
    }

    /// Parameters and MACs of a sub-network, as OFA counts them for the extracted static network.
    pub fn cost(&self, cfg: &SubnetConfig) -> Cost {
        let r = cfg.r as usize;
        let s0 = Self::stem_out(r) as u64;
        let (c0, c1) = (self.stem as u64, self.first_block as u64);
        let (c5, cf, cm) = (self.unit_out[NUM_UNITS - 1] as u64, self.final_expand as u64, self.feature_mix as u64);
        let sf = Self::final_size(r) as u64;
        let classes = NUM_CLASSES as u64;

        // first_conv, then blocks.0 (3x3 depthwise + pointwise, each with BN).
        let mut params = 27 * c0 + 2 * c0 + 9 * c0 + 2 * c0 + c0 * c1 + 2 * c1;
        let mut macs = 27 * c0 * s0 * s0 + 9 * c0 * s0 * s0 + c0 * c1 * s0 * s0;
        for b in self.blocks(cfg) {
            params += b.params();
            macs += b.macs();
        }
        // final_expand_layer (BN), feature_mix_layer (no bias, no BN), classifier (bias).
        params += c5 * cf + 2 * cf + cf * cm + cm * classes + classes;
        macs += c5 * cf * sf * sf + cf * cm + cm * classes;
        Cost { params, macs }
    }

    /// Largest activation (elements of one feature map) any sub-network at resolution `r` needs.
    pub fn max_activation(&self, r: usize) -> usize {
        let full = SubnetConfig::uniform(7, 6, 4, r as u16);
        let s0 = Self::stem_out(r);
        let stem = s0 * s0 * self.stem.max(self.first_block);
        self.blocks(&full)
            .map(|b| (b.in_size * b.in_size * b.mid).max(b.in_size * b.in_size * b.in_ch))
            .fold(stem, usize::max)
            .max(Self::final_size(r).pow(2) * self.final_expand)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The eight rows of `shared/docs/ofa-mbv3.md` (measured with the `ofa` package).
    const FIGURES: [(f64, u8, u8, u8, u16, u64, f64); 8] = [
        (1.0, 7, 6, 4, 224, 7_664_760, 566.171),
        (1.0, 5, 4, 3, 192, 4_551_792, 185.098),
        (1.0, 3, 3, 2, 160, 3_410_792, 63.241),
        (1.0, 3, 3, 2, 128, 3_410_792, 41.476),
        (1.2, 7, 6, 4, 224, 10_701_632, 843.101),
        (1.2, 5, 4, 3, 192, 6_245_312, 284.524),
        (1.2, 3, 3, 2, 160, 4_602_456, 100.321),
        (1.2, 3, 3, 2, 128, 4_602_456, 65.537),
    ];

    #[test]
    fn parameters_and_macs_match_ofa_for_all_eight_rows() {
        for (w, k, e, d, r, params, mmacs) in FIGURES {
            let net = Supernet::new(w);
            let cost = net.cost(&SubnetConfig::uniform(k, e, d, r));
            assert_eq!(cost.params, params, "params of w{w} k{k} e{e} d{d} r{r}");
            // The document gives MACs in millions to three decimals.
            let got = (cost.macs as f64 / 1e3).round() / 1e3;
            assert_eq!(got, mmacs, "MACs of w{w} k{k} e{e} d{d} r{r}: {}", cost.macs);
        }
    }

    #[test]
    fn widths_of_w12_match_the_released_checkpoint() {
        let n = Supernet::W1_2;
        assert_eq!((n.stem, n.first_block), (24, 24));
        assert_eq!(n.unit_out, [32, 48, 96, 136, 192]);
        assert_eq!((n.final_expand, n.feature_mix), (1152, 1536));
        let n = Supernet::W1_0;
        assert_eq!(n.unit_out, [24, 40, 80, 112, 160]);
        assert_eq!((n.final_expand, n.feature_mix), (960, 1280));
    }

    #[test]
    fn block_shapes_follow_ofa() {
        let n = Supernet::W1_2;
        // blocks.1: in 24, e6 -> 144 (stored rows), stride 2, ReLU, no SE.
        assert_eq!((n.block_in(1), n.block_mid_max(1), Supernet::block_stride(1)), (24, 144, 2));
        // blocks.5 opens unit 2 (SE): in 32, mid_max 192, SE 48.
        assert_eq!((n.block_in(5), n.block_mid_max(5), Supernet::se_mid(192)), (32, 192, 48));
        assert!(Supernet::block_has_se(5) && !Supernet::block_has_se(9));
        // blocks.13 opens unit 4: stride 1 but channels change, so no residual.
        let cfg = SubnetConfig::uniform(7, 6, 4, 224);
        let b13 = n.blocks(&cfg).find(|b| b.index == 13).unwrap();
        assert_eq!((b13.stride, b13.residual, b13.in_ch, b13.out_ch), (1, false, 96, 136));
        let b14 = n.blocks(&cfg).find(|b| b.index == 14).unwrap();
        assert!(b14.residual && b14.act == Activation::HSwish);
        assert_eq!(Supernet::final_size(224), 7);
        assert_eq!(Supernet::final_size(164), 6);
        // Python rounds half to even: 40 * 3 etc. are exact, but make_divisible(round(x)) must match.
        assert_eq!(make_divisible(19.2, 8), 24);
        assert_eq!(make_divisible(4.0, 8), 8);
    }

    #[test]
    fn skipped_blocks_do_not_count() {
        let n = Supernet::W1_2;
        let mut a = SubnetConfig::uniform(3, 3, 2, 160);
        let base = n.cost(&a);
        a.ks[3] = 7; // block 4 is beyond depth 2 of unit 1
        a.e[3] = 6;
        assert_eq!(n.cost(&a), base);
        assert_eq!(n.blocks(&a).count(), 10);
    }
}
