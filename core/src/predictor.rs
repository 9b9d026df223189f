//! OFA's accuracy predictor for the w1.2 supernet: an MLP 128-400-400-400-1 with ReLU that maps a
//! sub-network to its predicted ImageNet top-1.
//!
//! This follows `ofa.tutorial.accuracy_predictor.AccuracyPredictor` (Cai et al., ICLR 2020): the
//! feature vector is 60 one-hot kernel sizes (3 per block: 3, 5, 7), 60 one-hot expand ratios
//! (3, 4, 6), both all-zero for blocks beyond their unit's depth, then 8 one-hot resolution buckets
//! at `(r - 112) / 16`. Inference borrows the weights and allocates nothing; the network outputs a
//! fraction, reported here in percent.

use core::fmt;

use crate::arch::{EXPAND_RATIOS, KERNEL_SIZES, NUM_BLOCKS, Supernet};
use crate::config::{ConfigError, SubnetConfig};

/// Length of the feature vector.
pub const INPUTS: usize = 2 * 3 * NUM_BLOCKS + RESOLUTION_BUCKETS;
/// Width of the hidden layers.
pub const HIDDEN: usize = 400;
/// Number of resolution buckets of the encoding.
pub const RESOLUTION_BUCKETS: usize = 8;
/// Smallest resolution of the first bucket.
const RESOLUTION_BASE: u16 = 112;
/// Pixels per resolution bucket.
const RESOLUTION_BUCKET_WIDTH: u16 = 16;
/// The predictor outputs a fraction; dynofa reports top-1 in percent.
pub const PERCENT: f32 = 100.0;
/// Number of linear layers.
pub const LAYERS: usize = 4;
/// Shape `(out, in)` of each linear layer.
pub const LAYER_SHAPES: [(usize, usize); LAYERS] = [(HIDDEN, INPUTS), (HIDDEN, HIDDEN), (HIDDEN, HIDDEN), (1, HIDDEN)];
/// Names of each layer's weight and bias in OFA's state dict (an `nn.Sequential` with ReLUs between).
pub const TENSOR_NAMES: [[&str; 2]; LAYERS] =
    [["0.weight", "0.bias"], ["2.weight", "2.bias"], ["4.weight", "4.bias"], ["6.weight", "6.bias"]];

/// The supernet the published predictor was trained for.
pub const SUPERNET: Supernet = Supernet::W1_2;

/// One linear layer: a row-major `out x in` weight and an `out` bias.
#[derive(Debug, Clone, Copy)]
pub struct Linear<'a> {
    /// Row-major weight, `out * in` values.
    pub weight: &'a [f32],
    /// Bias, `out` values.
    pub bias: &'a [f32],
}

/// Why the predictor refused its weights or a sub-network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum PredictorError {
    /// A weight or bias has the wrong number of values.
    Shape {
        /// Index of the linear layer (0..4).
        layer: u8,
        /// Whether the bias (rather than the weight) is wrong.
        bias: bool,
        /// Values required.
        expected: usize,
        /// Values found.
        found: usize,
    },
    /// The config is not a sub-network of the w1.2 supernet.
    Config(ConfigError),
}

impl fmt::Display for PredictorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Shape { layer, bias, expected, found } => {
                let name = TENSOR_NAMES[layer as usize % LAYERS][bias as usize];
                write!(f, "predictor tensor \"{name}\" has {found} values, expected {expected}")
            }
            Self::Config(e) => write!(f, "the accuracy predictor covers w1.2 sub-networks only: {e}"),
        }
    }
}

impl core::error::Error for PredictorError {}

impl From<ConfigError> for PredictorError {
    fn from(e: ConfigError) -> Self {
        PredictorError::Config(e)
    }
}

/// The resolution bucket of the encoding for a resolution of the w1.2 supernet (160..=224).
pub const fn resolution_bucket(r: u16) -> usize {
    (r.saturating_sub(RESOLUTION_BASE) / RESOLUTION_BUCKET_WIDTH) as usize
}

fn choice(options: &[u8; 3], v: u8) -> usize {
    // Validated configs hold one of the options.
    options.iter().position(|&o| o == v).unwrap_or(0)
}

/// Write OFA's 128-value feature vector of `cfg` into `out`, after validating `cfg` for w1.2.
pub fn encode(cfg: &SubnetConfig, out: &mut [f32; INPUTS]) -> Result<(), ConfigError> {
    cfg.validate(&SUPERNET)?;
    out.fill(0.0);
    let e_base = 3 * NUM_BLOCKS;
    for b in 0..NUM_BLOCKS {
        if cfg.is_active(b + 1) {
            out[3 * b + choice(&KERNEL_SIZES, cfg.ks[b])] = 1.0;
            out[e_base + 3 * b + choice(&EXPAND_RATIOS, cfg.e[b])] = 1.0;
        }
    }
    out[2 * e_base + resolution_bucket(cfg.r)] = 1.0;
    Ok(())
}

/// `out = act(W x + b)` for one layer; the dot products use eight partial sums so that the
/// compiler can vectorise them without reassociating floats on its own.
fn linear(layer: &Linear<'_>, x: &[f32], out: &mut [f32], relu: bool) {
    let n = x.len();
    for (o, (row, &b)) in out.iter_mut().zip(layer.weight.chunks_exact(n).zip(layer.bias)) {
        let mut acc = [0.0f32; 8];
        let (wc, wr) = row.split_at(n - n % 8);
        let (xc, xr) = x.split_at(n - n % 8);
        for (w8, x8) in wc.chunks_exact(8).zip(xc.chunks_exact(8)) {
            for i in 0..8 {
                acc[i] += w8[i] * x8[i];
            }
        }
        let tail: f32 = wr.iter().zip(xr).map(|(w, v)| w * v).sum();
        let s = acc.iter().sum::<f32>() + tail + b;
        *o = if relu { s.max(0.0) } else { s };
    }
}

/// OFA's accuracy predictor over borrowed weights.
#[derive(Debug, Clone, Copy)]
pub struct AccuracyPredictor<'a> {
    layers: [Linear<'a>; LAYERS],
}

impl<'a> AccuracyPredictor<'a> {
    /// A predictor over the four layers' weights, checked against [`LAYER_SHAPES`].
    pub fn new(layers: [Linear<'a>; LAYERS]) -> Result<Self, PredictorError> {
        for (i, (l, &(rows, cols))) in layers.iter().zip(&LAYER_SHAPES).enumerate() {
            let layer = i as u8;
            if l.weight.len() != rows * cols {
                return Err(PredictorError::Shape { layer, bias: false, expected: rows * cols, found: l.weight.len() });
            }
            if l.bias.len() != rows {
                return Err(PredictorError::Shape { layer, bias: true, expected: rows, found: l.bias.len() });
            }
        }
        Ok(AccuracyPredictor { layers })
    }

    /// The layers (for batched implementations that share these weights).
    pub fn layers(&self) -> &[Linear<'a>; LAYERS] {
        &self.layers
    }

    /// Predicted top-1 in percent for an encoded feature vector.
    pub fn predict_features(&self, x: &[f32; INPUTS]) -> f32 {
        let mut a = [0.0f32; HIDDEN];
        let mut b = [0.0f32; HIDDEN];
        linear(&self.layers[0], x, &mut a, true);
        linear(&self.layers[1], &a, &mut b, true);
        linear(&self.layers[2], &b, &mut a, true);
        let mut y = [0.0f32; 1];
        linear(&self.layers[3], &a, &mut y, false);
        y[0] * PERCENT
    }

    /// Predicted top-1 in percent of a w1.2 sub-network.
    pub fn predict(&self, cfg: &SubnetConfig) -> Result<f32, PredictorError> {
        let mut x = [0.0f32; INPUTS];
        encode(cfg, &mut x)?;
        Ok(self.predict_features(&x))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_follows_ofa() {
        // Depth 2 everywhere: blocks 3, 4, 7, 8, ... are skipped and stay all-zero.
        let mut cfg = SubnetConfig::uniform(5, 6, 2, 176);
        cfg.ks[0] = 7;
        cfg.e[1] = 3;
        cfg.ks[2] = 3; // skipped
        let mut x = [9.0f32; INPUTS];
        encode(&cfg, &mut x).unwrap();
        assert_eq!(x.iter().sum::<f32>(), 10.0 + 10.0 + 1.0);
        assert_eq!(&x[0..3], &[0.0, 0.0, 1.0]); // block 1: ks 7
        assert_eq!(&x[3..6], &[0.0, 1.0, 0.0]); // block 2: ks 5
        assert_eq!(&x[6..12], &[0.0; 6]); // blocks 3 and 4 skipped
        assert_eq!(&x[60..63], &[0.0, 0.0, 1.0]); // block 1: e 6
        assert_eq!(&x[63..66], &[1.0, 0.0, 0.0]); // block 2: e 3
        assert_eq!(&x[120..128], &[0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0]); // (176 - 112) / 16 = 4
        assert_eq!(resolution_bucket(160), 3);
        assert_eq!(resolution_bucket(172), 3);
        assert_eq!(resolution_bucket(224), 7);
    }

    #[test]
    fn encoding_refuses_configs_outside_w12() {
        let mut x = [0.0f32; INPUTS];
        let r128 = SubnetConfig::uniform(3, 3, 2, 128);
        assert!(matches!(encode(&r128, &mut x), Err(ConfigError::ResolutionRange { value: 128, .. })));
        let mut bad = SubnetConfig::uniform(3, 3, 2, 160);
        bad.ks[4] = 9;
        assert_eq!(encode(&bad, &mut x), Err(ConfigError::KernelSize { block: 4, value: 9 }));
    }

    /// A predictor whose layers pass chosen features through: the output is a known sum.
    #[test]
    fn mlp_arithmetic_and_relu() {
        let mut w0 = vec![0.0f32; HIDDEN * INPUTS];
        let mut w1 = vec![0.0f32; HIDDEN * HIDDEN];
        let mut w3 = vec![0.0f32; HIDDEN];
        // Hidden unit 0 reads the ks-7 feature of block 1 (weight 2) and resolution bucket 3 (0.5);
        // hidden unit 1 goes negative and must be cut by ReLU.
        w0[2] = 2.0;
        w0[120 + 3] = 0.5;
        w0[INPUTS + 2] = -4.0;
        let b0 = vec![0.25f32; HIDDEN];
        for i in 0..HIDDEN {
            w1[i * HIDDEN + i] = 1.0;
        }
        w3[0] = 0.1;
        w3[1] = 1.0;
        let zero = vec![0.0f32; HIDDEN];
        let p = AccuracyPredictor::new([
            Linear { weight: &w0, bias: &b0 },
            Linear { weight: &w1, bias: &zero },
            Linear { weight: &w1, bias: &zero },
            Linear { weight: &w3, bias: &[0.5] },
        ])
        .unwrap();
        let mut cfg = SubnetConfig::uniform(3, 3, 2, 160);
        cfg.ks[0] = 7;
        // Unit 0 carries 2 + 0.5 + 0.25; unit 1 carries relu(-4 + 0.25) = 0; the output bias is 0.5.
        let expected = (0.1 * 2.75 + 0.5) * PERCENT;
        assert!((p.predict(&cfg).unwrap() - expected).abs() < 1e-4);
    }

    #[test]
    fn wrong_shapes_name_the_tensor() {
        let w = vec![0.0f32; HIDDEN * HIDDEN];
        let b = vec![0.0f32; HIDDEN];
        let ok = |n| Linear { weight: &w[..n], bias: &b };
        let err = AccuracyPredictor::new([ok(HIDDEN * INPUTS), ok(HIDDEN * HIDDEN), ok(7), ok(HIDDEN)]).unwrap_err();
        assert_eq!(err, PredictorError::Shape { layer: 2, bias: false, expected: HIDDEN * HIDDEN, found: 7 });
        let text = format!("{err}");
        assert_eq!(text, "predictor tensor \"4.weight\" has 7 values, expected 160000");
        let last = Linear { weight: &w[..HIDDEN], bias: &b[..2] };
        let err = AccuracyPredictor::new([ok(HIDDEN * INPUTS), ok(HIDDEN * HIDDEN), ok(HIDDEN * HIDDEN), last]);
        assert_eq!(err.unwrap_err(), PredictorError::Shape { layer: 3, bias: true, expected: 1, found: 2 });
    }
}
