//! BatchNorm re-calibration of a sub-network, as OFA's `set_running_statistics` does it: run
//! batches of images through the sub-network with every BN layer normalising by the batch's own
//! statistics, and average each layer's per-batch mean and biased variance over the batches,
//! weighted by batch size (OFA's `AverageMeter`).
//!
//! The forward pass is NCHW per image with the portable reference kernels ([`crate::cpu::reference`])
//! and matrixmultiply's SGEMM for the 1x1 convolutions; images of a batch are spread over threads.
//! Exactness matters more than speed here: statistics accumulate in f64.

use std::collections::HashMap;
use std::path::Path;

use dynofa_core::arch::BN_EPS;
use dynofa_core::{BlockShape, ConfigError, SubnetConfig, Supernet};
use safetensors::SafeTensors;
use safetensors::tensor::{Dtype, TensorView};

use crate::cpu::Act;
use crate::cpu::reference::{conv2d, squeeze_excite};
use crate::seeded::seeded_safetensors;
use crate::statedict::{
    BN_FINAL, BN_FIRST_DW, BN_FIRST_PL, BN_STEM, BlockPart, NUM_BN, bn_block, bn_name, canonical_name,
};
use crate::weights::{SupernetWeights, WeightsError, transform_kernel};

/// The supernet for batch-statistics forwards: OFA's tensors as they are in the state dict, and
/// the engine's weights (which checked every shape when loading).
#[derive(Debug)]
pub struct BatchNet {
    weights: SupernetWeights,
    tensors: HashMap<String, Vec<f32>>,
}

impl BatchNet {
    /// Load OFA's state dict from safetensors bytes (checked as [`SupernetWeights::from_safetensors`]
    /// checks it); `path` names them in errors.
    pub fn from_safetensors(bytes: &[u8], path: &Path) -> Result<Self, WeightsError> {
        let weights = SupernetWeights::from_safetensors(bytes, path)?;
        let st = SafeTensors::deserialize(bytes).expect("parsed once already");
        let tensors = st
            .iter()
            .filter(|(_, v)| v.dtype() == Dtype::F32)
            .map(|(k, v)| {
                let data = v.data().chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes")));
                (canonical_name(k).into_owned(), data.collect())
            })
            .collect();
        Ok(BatchNet { weights, tensors })
    }

    /// Load OFA's state dict from a safetensors file.
    pub fn load(path: &Path) -> Result<Self, WeightsError> {
        let bytes = std::fs::read(path).map_err(|source| WeightsError::Io { path: path.into(), source })?;
        Self::from_safetensors(&bytes, path)
    }

    /// The seeded weights of `net` (see [`crate::seeded`]).
    pub fn seeded(net: Supernet, seed: u64) -> Self {
        Self::from_safetensors(&seeded_safetensors(net, seed), Path::new("<seeded weights>"))
            .expect("seeded weights follow the state-dict layout")
    }

    /// The engine's form of the same weights.
    pub fn weights(&self) -> &SupernetWeights {
        &self.weights
    }

    /// The engine's form of the same weights, by value.
    pub fn into_weights(self) -> SupernetWeights {
        self.weights
    }

    fn tensor(&self, name: &str) -> &[f32] {
        self.tensors.get(name).unwrap_or_else(|| panic!("`{name}` was checked at load"))
    }
}

/// The running averages of one BN layer (`AverageMeter` of the mean and of the variance).
#[derive(Debug, Clone)]
struct Meter {
    mean: Vec<f64>,
    var: Vec<f64>,
    count: usize,
}

/// Per-channel weights of an active depthwise layer, `[c][k * k]`.
#[derive(Debug)]
struct Depthwise {
    taps: Vec<f32>,
    k: usize,
}

/// A BN re-calibration in progress for one sub-network.
#[derive(Debug)]
pub struct Calibration<'a> {
    net: &'a BatchNet,
    cfg: SubnetConfig,
    blocks: Vec<(BlockShape, Depthwise)>,
    meters: Vec<Option<Meter>>,
    images: usize,
    threads: usize,
}

impl<'a> Calibration<'a> {
    /// Start calibrating `cfg`, which must be a sub-network of `net`'s supernet.
    pub fn new(net: &'a BatchNet, cfg: &SubnetConfig) -> Result<Self, ConfigError> {
        let supernet = net.weights.supernet();
        cfg.validate(supernet)?;
        let blocks = supernet
            .blocks(cfg)
            .map(|b| {
                let p = format!("blocks.{}.conv.depth_conv.conv", b.index);
                let (w7, m75, m53) = (
                    net.tensor(&format!("{p}.conv.weight")),
                    net.tensor(&format!("{p}.7to5_matrix")),
                    net.tensor(&format!("{p}.5to3_matrix")),
                );
                let taps = (0..b.mid)
                    .flat_map(|ch| {
                        let w = &w7[ch * 49..][..49];
                        match b.kernel {
                            7 => w.to_vec(),
                            5 => transform_kernel(w, m75, m53).0.to_vec(),
                            _ => transform_kernel(w, m75, m53).1.to_vec(),
                        }
                    })
                    .collect();
                (b, Depthwise { taps, k: b.kernel })
            })
            .collect();
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        Ok(Calibration { net, cfg: *cfg, blocks, meters: vec![None; NUM_BN], images: 0, threads })
    }

    /// Use `threads` threads (default: one per core).
    pub fn with_threads(mut self, threads: usize) -> Self {
        self.threads = threads.max(1);
        self
    }

    /// Images seen so far.
    pub fn images(&self) -> usize {
        self.images
    }

    /// Run one batch (each image f32 `[3, r, r]`, as [`crate::preprocess::eval_input`] gives it)
    /// with batch statistics, adding each BN layer's batch mean and variance to its averages.
    ///
    /// # Panics
    /// If an image does not have `3 * r * r` values.
    pub fn add_batch(&mut self, images: &[Vec<f32>]) {
        let r = self.cfg.r as usize;
        assert!(images.iter().all(|x| x.len() == 3 * r * r), "calibration images are f32 [3, {r}, {r}]");
        if images.is_empty() {
            return;
        }
        let net = self.net;
        let supernet = *net.weights.supernet();
        let s0 = Supernet::stem_out(r);
        let stem = net.tensor("first_conv.conv.weight");
        let mut x = self.map(images, |img| conv2d(img, 3, r, stem, supernet.stem, 3, 2, 1));
        self.batch_norm(&mut x, supernet.stem, BN_STEM, Act::HSwish);

        // blocks.0: depthwise 3x3 + ReLU, projection, identity shortcut where the widths agree.
        let dw0 = net.tensor("blocks.0.conv.depth_conv.conv.weight");
        let mut h = self.map(&x, |v| depthwise(v, supernet.stem, s0, dw0, 3, 1));
        self.batch_norm(&mut h, supernet.stem, BN_FIRST_DW, Act::Relu);
        let pw0 = net.tensor("blocks.0.conv.point_linear.conv.weight");
        let mut y = self.map(&h, |v| pointwise(v, supernet.stem, s0 * s0, pw0, supernet.stem, supernet.first_block));
        self.batch_norm(&mut y, supernet.first_block, BN_FIRST_PL, Act::Identity);
        if supernet.stem == supernet.first_block {
            add(&mut y, &x);
        }
        x = y;

        // Taken out for the loop, which updates the meters.
        let blocks = std::mem::take(&mut self.blocks);
        for (b, dw) in &blocks {
            let p = format!("blocks.{}.conv", b.index);
            let (hw_in, hw_out) = (b.in_size * b.in_size, b.out_size * b.out_size);
            let expand = net.tensor(&format!("{p}.inverted_bottleneck.conv.conv.weight"));
            let mut h = self.map(&x, |v| pointwise(v, b.in_ch, hw_in, expand, b.in_ch, b.mid));
            self.batch_norm(&mut h, b.mid, bn_block(b.index, BlockPart::Expand), b.act.into());
            let mut d = self.map(&h, |v| depthwise(v, b.mid, b.in_size, &dw.taps, dw.k, b.stride));
            drop(h);
            self.batch_norm(&mut d, b.mid, bn_block(b.index, BlockPart::Depthwise), b.act.into());
            if let Some(se) = b.se_mid {
                let mid_max = supernet.block_mid_max(b.index);
                let se_max = Supernet::se_mid(mid_max);
                let f = |name: &str| net.tensor(&format!("{p}.depth_conv.se.fc.{name}"));
                // OFA slices reduce.weight[:se, :mid] and expand.weight[:mid, :se].
                let reduce = block(f("reduce.weight"), mid_max, se, b.mid);
                let expand = block(f("expand.weight"), se_max, b.mid, se);
                let (rb, eb) = (&f("reduce.bias")[..se], &f("expand.bias")[..b.mid]);
                self.for_each(&mut d, |v| squeeze_excite(v, b.mid, (&reduce, rb), (&expand, eb)));
            }
            let project = net.tensor(&format!("{p}.point_linear.conv.conv.weight"));
            let ld = supernet.block_mid_max(b.index);
            let mut y = self.map(&d, |v| pointwise(v, b.mid, hw_out, project, ld, b.out_ch));
            drop(d);
            self.batch_norm(&mut y, b.out_ch, bn_block(b.index, BlockPart::Project), Act::Identity);
            if b.residual {
                add(&mut y, &x);
            }
            x = y;
        }
        self.blocks = blocks;

        // final_expand_layer is the last BN; what follows it does not change any statistic.
        let fs = Supernet::final_size(r);
        let (c5, cf) = (supernet.unit_out[4], supernet.final_expand);
        let fe = net.tensor("final_expand_layer.conv.weight");
        let mut y = self.map(&x, |v| pointwise(v, c5, fs * fs, fe, c5, cf));
        self.batch_norm(&mut y, cf, BN_FINAL, Act::HSwish);
        self.images += images.len();
    }

    /// Normalise `x` (each image `[c][hw]`, the layer's first `c` channels) by the batch's per-channel mean and biased variance
    /// (over images and pixels), scale and shift by the layer's gamma and beta, apply `act`, and
    /// add the statistics to layer `index`'s averages.
    fn batch_norm(&mut self, x: &mut [Vec<f32>], c: usize, index: usize, act: Act) {
        let name = bn_name(index);
        let gamma = self.net.tensor(&format!("{name}.weight"));
        let beta = self.net.tensor(&format!("{name}.bias"));
        let hw = x[0].len() / c;
        let n = (x.len() * hw) as f64;
        let sums =
            self.map(x, |v| v.chunks_exact(hw).map(|p| p.iter().map(|&a| a as f64).sum::<f64>()).collect::<Vec<_>>());
        let mean: Vec<f64> = (0..c).map(|ch| sums.iter().map(|s| s[ch]).sum::<f64>() / n).collect();
        let sq = self.map(x, |v| {
            v.chunks_exact(hw)
                .zip(&mean)
                .map(|(p, &m)| p.iter().map(|&a| (a as f64 - m).powi(2)).sum::<f64>())
                .collect::<Vec<_>>()
        });
        let var: Vec<f64> = (0..c).map(|ch| sq.iter().map(|s| s[ch]).sum::<f64>() / n).collect();
        let scale: Vec<f64> = (0..c).map(|ch| gamma[ch] as f64 / (var[ch] + BN_EPS as f64).sqrt()).collect();
        let shift: Vec<f32> = (0..c).map(|ch| (beta[ch] as f64 - mean[ch] * scale[ch]) as f32).collect();
        let scale: Vec<f32> = scale.iter().map(|&s| s as f32).collect();
        self.for_each(x, |v| crate::cpu::reference::bn_act(v, &scale, &shift, act));
        let meter = self.meters[index].get_or_insert_with(|| Meter { mean: vec![0.0; c], var: vec![0.0; c], count: 0 });
        let images = x.len() as f64;
        for ch in 0..c {
            meter.mean[ch] += mean[ch] * images;
            meter.var[ch] += var[ch] * images;
        }
        meter.count += x.len();
    }

    /// The averaged statistics: `<BN layer>.running_mean` and `.running_var` of every layer the
    /// sub-network runs, at its active widths, in state-dict order.
    pub fn statistics(&self) -> Vec<(String, Vec<f32>)> {
        let mut out = Vec::new();
        for (index, meter) in self.meters.iter().enumerate() {
            let Some(m) = meter.as_ref().filter(|m| m.count > 0) else { continue };
            let avg = |v: &[f64]| v.iter().map(|s| (s / m.count as f64) as f32).collect();
            out.push((format!("{}.running_mean", bn_name(index)), avg(&m.mean)));
            out.push((format!("{}.running_var", bn_name(index)), avg(&m.var)));
        }
        out
    }

    /// [`Calibration::statistics`] as a safetensors file in the format
    /// [`SupernetWeights::load_bn_statistics`] reads, with `metadata` in its header.
    pub fn to_safetensors(&self, metadata: HashMap<String, String>) -> Vec<u8> {
        let stats = self.statistics();
        let bytes: Vec<(String, Vec<u8>)> =
            stats.iter().map(|(k, v)| (k.clone(), v.iter().flat_map(|x| x.to_le_bytes()).collect())).collect();
        let views = bytes
            .iter()
            .zip(&stats)
            .map(|((k, b), (_, v))| (k.as_str(), TensorView::new(Dtype::F32, vec![v.len()], b).expect("sizes agree")));
        safetensors::serialize(views, Some(metadata)).expect("names are unique")
    }

    /// `f` of each image, the images spread over the threads.
    fn map<T: Sync, R: Send>(&self, items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
        let per = items.len().div_ceil(self.threads).max(1);
        std::thread::scope(|s| {
            let handles: Vec<_> =
                items.chunks(per).map(|chunk| s.spawn(|| chunk.iter().map(&f).collect::<Vec<_>>())).collect();
            handles.into_iter().flat_map(|h| h.join().expect("a calibration thread panicked")).collect()
        })
    }

    /// `f` on each image in place, the images spread over the threads.
    fn for_each<T: Send>(&self, items: &mut [T], f: impl Fn(&mut T) + Sync) {
        let per = items.len().div_ceil(self.threads).max(1);
        std::thread::scope(|s| {
            for chunk in items.chunks_mut(per) {
                s.spawn(|| chunk.iter_mut().for_each(&f));
            }
        });
    }
}

/// A 1x1 convolution of one image: `x` is `[cin][hw]`, `w` holds `cout` rows of which the first
/// `cin` columns are used, `ldw` apart (OFA's elastic layers use the top-left block of the
/// stored weight); returns `[cout][hw]`.
fn pointwise(x: &[f32], cin: usize, hw: usize, w: &[f32], ldw: usize, cout: usize) -> Vec<f32> {
    assert!(x.len() == cin * hw && cin <= ldw && w.len() >= (cout - 1) * ldw + cin, "pointwise operands");
    let mut out = vec![0.0; cout * hw];
    // SAFETY: the assert above keeps every index of the three strided matrices in bounds:
    // w[i * ldw + p] for i < cout, p < cin; x[p * hw + j]; out[i * hw + j] for j < hw.
    unsafe {
        matrixmultiply::sgemm(
            cout,
            cin,
            hw,
            1.0,
            w.as_ptr(),
            ldw as isize,
            1,
            x.as_ptr(),
            hw as isize,
            1,
            0.0,
            out.as_mut_ptr(),
            hw as isize,
            1,
        );
    }
    out
}

/// A depthwise convolution with padding `k / 2` of `[c][size][size]` by `[c][k][k]`: what
/// [`conv2d`] with `groups = c` computes, adding the same products in the same order (so the
/// result is bit-identical), with the border tests hoisted out of the inner loop over a row.
fn depthwise(x: &[f32], c: usize, size: usize, w: &[f32], k: usize, stride: usize) -> Vec<f32> {
    let o = dynofa_core::arch::conv_out(size, k, stride);
    let pad = k / 2;
    assert!(x.len() == c * size * size && w.len() == c * k * k, "depthwise operands");
    let mut y = vec![0.0f32; c * o * o];
    // Output columns whose input column ox * stride + dx - pad lies in the image.
    let cols = |dx: usize| {
        let first = pad.saturating_sub(dx).div_ceil(stride);
        // The last valid input column is size - 1, i.e. ox * stride <= size - 1 + pad - dx.
        let end = (size + pad).checked_sub(dx + 1).map_or(0, |last| (last / stride + 1).min(o));
        first..end.max(first)
    };
    for ch in 0..c {
        let (plane, taps) = (&x[ch * size * size..][..size * size], &w[ch * k * k..][..k * k]);
        let out = &mut y[ch * o * o..][..o * o];
        for oy in 0..o {
            let row = &mut out[oy * o..][..o];
            for dy in 0..k {
                let Some(iy) = (oy * stride + dy).checked_sub(pad).filter(|&iy| iy < size) else { continue };
                let line = &plane[iy * size..][..size];
                for dx in 0..k {
                    let t = taps[dy * k + dx];
                    for ox in cols(dx) {
                        row[ox] += line[ox * stride + dx - pad] * t;
                    }
                }
            }
        }
    }
    y
}

/// The top-left `rows x cols` block of a row-major matrix with `ld` columns.
fn block(w: &[f32], ld: usize, rows: usize, cols: usize) -> Vec<f32> {
    w.chunks_exact(ld).take(rows).flat_map(|row| &row[..cols]).copied().collect()
}

/// `y += x`, image by image (identity shortcuts).
fn add(y: &mut [Vec<f32>], x: &[Vec<f32>]) {
    for (a, b) in y.iter_mut().zip(x) {
        a.iter_mut().zip(b).for_each(|(a, b)| *a += b);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::SplitMix64;

    #[test]
    fn depthwise_is_the_reference_convolution_bit_for_bit() {
        let mut rng = SplitMix64::new(9);
        for (c, size, k, stride) in
            [(3, 9, 3, 1), (2, 10, 5, 2), (4, 7, 7, 1), (3, 13, 7, 2), (1, 2, 7, 1), (2, 5, 3, 2)]
        {
            let x: Vec<f32> = (0..c * size * size).map(|_| rng.centred(1.0) as f32).collect();
            let w: Vec<f32> = (0..c * k * k).map(|_| rng.centred(1.0) as f32).collect();
            let want = conv2d(&x, c, size, &w, c, k, stride, c);
            let got = depthwise(&x, c, size, &w, k, stride);
            assert_eq!(
                got.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                want.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                "c {c} size {size} k {k} stride {stride}"
            );
        }
    }
}
