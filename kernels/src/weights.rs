//! The supernet's weights: loaded from OFA's state dict (safetensors, original key names) and laid
//! out once for the kernels. Switching sub-networks later only slices what is prepared here.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use dynofa_core::arch::{BN_EPS, NUM_BLOCKS};
use dynofa_core::{SubnetConfig, Supernet};
use safetensors::tensor::{Dtype, TensorView};
use safetensors::{SafeTensorError, SafeTensors};

use crate::cpu::pointwise::PackedB;
use crate::statedict::{
    BN_FINAL, BN_FIRST_DW, BN_FIRST_PL, BN_STEM, NUM_BN, Role, TensorSpec, bn_channels, bn_name, canonical_name,
    tensor_specs,
};

/// Why a weights or BN-statistics file was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WeightsError {
    /// The file could not be read.
    #[error("{}: cannot read the file: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The bytes are not a safetensors file.
    #[error("{}: not a safetensors file ({reason}){hint}", path.display())]
    NotSafetensors {
        /// The file.
        path: PathBuf,
        /// What the parser found wrong.
        reason: String,
        /// A suggested fix, empty or starting with "; ".
        hint: &'static str,
    },
    /// The file ends before the data its header describes.
    #[error("{}: the file is truncated: {found} bytes, its header describes {expected}; copy or convert it again", path.display())]
    Truncated {
        /// The file.
        path: PathBuf,
        /// Bytes the header describes.
        expected: usize,
        /// Bytes present.
        found: usize,
    },
    /// `first_conv.conv.weight` does not name a released width.
    #[error(
        "{}: `first_conv.conv.weight` has shape {found:?}; expected [16, 3, 3, 3] (w1.0) or [24, 3, 3, 3] (w1.2)",
        path.display()
    )]
    UnknownWidth {
        /// The file.
        path: PathBuf,
        /// The shape found.
        found: Vec<usize>,
    },
    /// A tensor of the state dict is not in the file.
    #[error("{}: missing tensor `{key}` (shape {expected:?}); is this an OFA MobileNetV3 state dict?", path.display())]
    MissingKey {
        /// The file.
        path: PathBuf,
        /// The tensor's name.
        key: String,
        /// Its shape in the supernet.
        expected: Vec<usize>,
    },
    /// A tensor has the wrong shape.
    #[error("{}: tensor `{key}` has shape {found:?}, expected {expected:?}", path.display())]
    Shape {
        /// The file.
        path: PathBuf,
        /// The tensor's name.
        key: String,
        /// The shape required.
        expected: Vec<usize>,
        /// The shape found.
        found: Vec<usize>,
    },
    /// A tensor is not float32.
    #[error("{}: tensor `{key}` is {found:?}, expected F32; convert it to float32", path.display())]
    Dtype {
        /// The file.
        path: PathBuf,
        /// The tensor's name.
        key: String,
        /// The dtype found.
        found: Dtype,
    },
    /// The file holds a tensor the supernet does not have.
    #[error("{}: unexpected tensor `{key}`: OFA MobileNetV3 w{width} has no such tensor", path.display())]
    UnexpectedKey {
        /// The file.
        path: PathBuf,
        /// The tensor's name.
        key: String,
        /// The supernet's width multiplier.
        width: f64,
    },
    /// A BN-statistics file holds something other than a BN layer's running mean or variance.
    #[error(
        "{}: `{key}` is not a BN running statistic; keys are `<BN layer>.running_mean` or `.running_var`, \
         e.g. `blocks.5.conv.depth_conv.bn.bn.running_var`",
        path.display()
    )]
    NotBnStatistic {
        /// The file.
        path: PathBuf,
        /// The key.
        key: String,
    },
    /// A BN-statistics file has statistics of a block that the sub-network skips.
    #[error("{}: `{key}`: blocks.{block} is not run by this sub-network (its unit's depth is smaller)", path.display())]
    InactiveLayer {
        /// The file.
        path: PathBuf,
        /// The key.
        key: String,
        /// The block.
        block: usize,
    },
}

/// Per-channel BN scale and shift of every BN layer, flat (see [`SupernetWeights::bn_range`]).
#[derive(Debug, Clone, PartialEq)]
pub struct BnTable {
    pub(crate) scale: Vec<f32>,
    pub(crate) shift: Vec<f32>,
}

/// Raw BN parameters and statistics, flat in the same order as [`BnTable`].
#[derive(Debug, Clone)]
struct BnParams {
    gamma: Vec<f32>,
    beta: Vec<f32>,
    mean: Vec<f32>,
    var: Vec<f32>,
}

impl BnParams {
    /// Fold into `x * scale + shift` (computed in f64 once, at load).
    fn fold(&self, mean: &[f32], var: &[f32]) -> BnTable {
        let n = self.gamma.len();
        let (mut scale, mut shift) = (Vec::with_capacity(n), Vec::with_capacity(n));
        for i in 0..n {
            let s = self.gamma[i] as f64 / (var[i] as f64 + BN_EPS as f64).sqrt();
            scale.push(s as f32);
            shift.push((self.beta[i] as f64 - mean[i] as f64 * s) as f32);
        }
        BnTable { scale, shift }
    }
}

/// Squeeze-and-excite weights of one block, in OFA's layout (rows are sliced, never copied).
#[derive(Debug, Clone)]
pub(crate) struct SeWeights {
    /// `[se_max][mid_max]`.
    pub reduce: Vec<f32>,
    pub reduce_bias: Vec<f32>,
    /// `[mid_max][se_max]`.
    pub expand: Vec<f32>,
    pub expand_bias: Vec<f32>,
    pub se_max: usize,
}

/// One elastic block's weights.
#[derive(Debug, Clone)]
pub(crate) struct BlockWeights {
    /// `inverted_bottleneck`: k = in, n = mid_max.
    pub expand: PackedB,
    /// Depthwise taps for k = 3, 5, 7 (the smaller ones through the transform matrices),
    /// each `[k * k][mid_max]`.
    pub depthwise: [Vec<f32>; 3],
    pub se: Option<SeWeights>,
    /// `point_linear`: k = mid_max, n = out.
    pub project: PackedB,
    pub mid_max: usize,
}

impl BlockWeights {
    /// Depthwise taps for kernel size `k`.
    pub fn taps(&self, k: usize) -> &[f32] {
        &self.depthwise[k / 2 - 1]
    }
}

/// The whole supernet, laid out for the CPU kernels.
#[derive(Debug, Clone)]
pub struct SupernetWeights {
    net: Supernet,
    /// `first_conv` as a GEMM over 27 = 3 x 3 x 3 im2col columns.
    pub(crate) stem: PackedB,
    /// `blocks.0` depthwise taps `[9][stem]`.
    pub(crate) first_dw: Vec<f32>,
    pub(crate) first_pw: PackedB,
    /// `blocks.1 ..= blocks.20` at indices 0..20.
    pub(crate) blocks: Vec<BlockWeights>,
    pub(crate) final_expand: PackedB,
    /// `[feature_mix][final_expand]`.
    pub(crate) feature_mix: Vec<f32>,
    /// `[1000][feature_mix]`.
    pub(crate) classifier: Vec<f32>,
    pub(crate) classifier_bias: Vec<f32>,
    bn_offsets: [usize; NUM_BN + 1],
    bn: BnParams,
    /// The supernet's own statistics, folded.
    pub(crate) bn_table: BnTable,
}

/// Decode a tensor that was checked to be F32.
fn f32s(view: &TensorView<'_>) -> Vec<f32> {
    view.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
}

/// Parse a safetensors buffer, telling a truncated file from one that is not safetensors at all.
fn parse<'a>(bytes: &'a [u8], path: &Path) -> Result<SafeTensors<'a>, WeightsError> {
    SafeTensors::deserialize(bytes).map_err(|e| {
        let header = bytes.get(..8).map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")) as usize);
        // The end of the data the header describes, when the header itself is intact JSON.
        let described = header.and_then(|n| {
            // Checked: a corrupt length near u64::MAX must not overflow (found by `cargo xtask fuzz`).
            let text = std::str::from_utf8(bytes.get(8..8usize.checked_add(n)?)?).ok()?;
            let json: serde_json::Value = serde_json::from_str(text).ok()?;
            let end = json.as_object()?.values().filter_map(|t| t.get("data_offsets")?.get(1)?.as_u64()).max();
            (8 + n).checked_add(end.unwrap_or(0) as usize)
        });
        let path = path.to_path_buf();
        match (e, header, described) {
            (SafeTensorError::MetadataIncompleteBuffer, _, Some(expected)) if expected > bytes.len() => {
                WeightsError::Truncated { path, expected, found: bytes.len() }
            }
            (SafeTensorError::InvalidHeaderLength, Some(n), _) if n < 100_000_000 && bytes.get(8) == Some(&b'{') => {
                WeightsError::Truncated { path, expected: 8 + n, found: bytes.len() }
            }
            (e, _, _) => {
                // torch.save writes a zip (PK) or a bare pickle (0x80).
                let hint = if bytes.starts_with(b"PK") || bytes.first() == Some(&0x80) {
                    "; this looks like a torch checkpoint: convert it with \
                     `dynofa import-ofa CHECKPOINT OUT.safetensors` (see dynofa import-ofa --help)"
                } else {
                    ""
                };
                WeightsError::NotSafetensors { path, reason: e.to_string(), hint }
            }
        }
    })
}

/// Check a tensor's dtype and shape.
fn check(view: &TensorView<'_>, key: &str, shape: &[usize], path: &Path) -> Result<(), WeightsError> {
    if view.dtype() != Dtype::F32 {
        return Err(WeightsError::Dtype { path: path.into(), key: key.into(), found: view.dtype() });
    }
    if view.shape() != shape {
        return Err(WeightsError::Shape {
            path: path.into(),
            key: key.into(),
            expected: shape.to_vec(),
            found: view.shape().to_vec(),
        });
    }
    Ok(())
}

/// The 5x5 and 3x3 kernels from the 7x7 one as `ofa`'s `DynamicSeparableConv2d.get_active_filter`
/// computes them: centre crop, flatten row-major, `F.linear(v, M)` (= `v · Mᵀ`), 7 -> 5 -> 3.
pub(crate) fn transform_kernel(w7: &[f32], m75: &[f32], m53: &[f32]) -> ([f32; 25], [f32; 9]) {
    let linear = |v: &[f32], m: &[f32], out: &mut [f32]| {
        let n = v.len();
        for (i, o) in out.iter_mut().enumerate() {
            *o = (0..n).map(|j| v[j] as f64 * m[i * n + j] as f64).sum::<f64>() as f32;
        }
    };
    let centre = |src: &[f32], from: usize, to: usize| -> Vec<f32> {
        let off = (from - to) / 2;
        (0..to * to).map(|i| src[(i / to + off) * from + i % to + off]).collect()
    };
    let mut w5 = [0.0; 25];
    linear(&centre(w7, 7, 5), m75, &mut w5);
    let mut w3 = [0.0; 9];
    linear(&centre(&w5, 5, 3), m53, &mut w3);
    (w5, w3)
}

/// Taps `[c][k*k]` (OFA's depthwise layout) to `[k*k][c]`.
fn tap_major(w: &[f32], c: usize, taps: usize) -> Vec<f32> {
    (0..taps * c).map(|i| w[(i % c) * taps + i / c]).collect()
}

impl SupernetWeights {
    /// Load OFA's state dict from a safetensors file; the width comes from
    /// `first_conv.conv.weight`. Every tensor's shape and dtype is checked.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, WeightsError> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|source| WeightsError::Io { path: path.into(), source })?;
        Self::from_safetensors(&bytes, path)
    }

    /// Load OFA's state dict from safetensors bytes; `path` names them in errors.
    pub fn from_safetensors(bytes: &[u8], path: &Path) -> Result<Self, WeightsError> {
        let st = parse(bytes, path)?;
        const STEM: &str = "first_conv.conv.weight";
        let stem = st.iter().find(|(n, _)| canonical_name(n) == STEM).map(|(_, v)| v).ok_or_else(|| {
            WeightsError::MissingKey { path: path.into(), key: STEM.into(), expected: vec![24, 3, 3, 3] }
        })?;
        let net = match stem.shape() {
            [c, 3, 3, 3] => Supernet::from_stem_width(*c),
            _ => None,
        }
        .ok_or_else(|| WeightsError::UnknownWidth { path: path.into(), found: stem.shape().to_vec() })?;
        let specs = tensor_specs(&net);
        let known: HashMap<&str, &TensorSpec> = specs.iter().map(|s| (s.name.as_str(), s)).collect();
        let mut tensors: HashMap<&str, TensorView<'_>> = HashMap::new();
        for (key, view) in st.iter() {
            let unexpected =
                || WeightsError::UnexpectedKey { path: path.into(), key: key.into(), width: net.width_mult };
            let (&name, _) = known.get_key_value(canonical_name(key).as_ref()).ok_or_else(unexpected)?;
            if tensors.insert(name, view).is_some() {
                return Err(unexpected());
            }
        }
        let specs = tensor_specs(&net);
        for spec in specs.iter().filter(|s| s.role != Role::Tracked) {
            let view = tensors.get(spec.name.as_str()).ok_or_else(|| WeightsError::MissingKey {
                path: path.into(),
                key: spec.name.clone(),
                expected: spec.shape.clone(),
            })?;
            check(view, &spec.name, &spec.shape, path)?;
        }
        Ok(Self::build(net, &|name| f32s(&tensors[name])))
    }

    /// Lay out checked tensors for the kernels; `get` returns a tensor of the state dict by name.
    pub(crate) fn build(net: Supernet, get: &dyn Fn(&str) -> Vec<f32>) -> Self {
        let (c0, c1) = (net.stem, net.first_block);
        let first_dw = tap_major(&get("blocks.0.conv.depth_conv.conv.weight"), c0, 9);
        let blocks = (1..=NUM_BLOCKS)
            .map(|b| {
                let (cin, mid, cout) = (net.block_in(b), net.block_mid_max(b), net.unit_out[Supernet::unit_of(b)]);
                let p = format!("blocks.{b}.conv");
                let w7 = get(&format!("{p}.depth_conv.conv.conv.weight"));
                let m75 = get(&format!("{p}.depth_conv.conv.7to5_matrix"));
                let m53 = get(&format!("{p}.depth_conv.conv.5to3_matrix"));
                let (mut w5, mut w3) = (vec![0.0; mid * 25], vec![0.0; mid * 9]);
                for ch in 0..mid {
                    let (k5, k3) = transform_kernel(&w7[ch * 49..][..49], &m75, &m53);
                    w5[ch * 25..][..25].copy_from_slice(&k5);
                    w3[ch * 9..][..9].copy_from_slice(&k3);
                }
                let se = Supernet::block_has_se(b).then(|| SeWeights {
                    reduce: get(&format!("{p}.depth_conv.se.fc.reduce.weight")),
                    reduce_bias: get(&format!("{p}.depth_conv.se.fc.reduce.bias")),
                    expand: get(&format!("{p}.depth_conv.se.fc.expand.weight")),
                    expand_bias: get(&format!("{p}.depth_conv.se.fc.expand.bias")),
                    se_max: Supernet::se_mid(mid),
                });
                BlockWeights {
                    expand: PackedB::from_out_in(&get(&format!("{p}.inverted_bottleneck.conv.conv.weight")), mid, cin),
                    depthwise: [tap_major(&w3, mid, 9), tap_major(&w5, mid, 25), tap_major(&w7, mid, 49)],
                    se,
                    project: PackedB::from_out_in(&get(&format!("{p}.point_linear.conv.conv.weight")), cout, mid),
                    mid_max: mid,
                }
            })
            .collect();

        let mut bn_offsets = [0; NUM_BN + 1];
        for i in 0..NUM_BN {
            bn_offsets[i + 1] = bn_offsets[i] + bn_channels(&net, i);
        }
        let gather =
            |stat: &str| -> Vec<f32> { (0..NUM_BN).flat_map(|i| get(&format!("{}.{stat}", bn_name(i)))).collect() };
        let bn = BnParams {
            gamma: gather("weight"),
            beta: gather("bias"),
            mean: gather("running_mean"),
            var: gather("running_var"),
        };
        let bn_table = bn.fold(&bn.mean, &bn.var);
        SupernetWeights {
            net,
            stem: PackedB::from_out_in(&get("first_conv.conv.weight"), c0, 27),
            first_dw,
            first_pw: PackedB::from_out_in(&get("blocks.0.conv.point_linear.conv.weight"), c1, c0),
            blocks,
            final_expand: PackedB::from_out_in(
                &get("final_expand_layer.conv.weight"),
                net.final_expand,
                net.unit_out[4],
            ),
            feature_mix: get("feature_mix_layer.conv.weight"),
            classifier: get("classifier.linear.weight"),
            classifier_bias: get("classifier.linear.bias"),
            bn_offsets,
            bn,
            bn_table,
        }
    }

    /// The supernet these weights belong to.
    pub fn supernet(&self) -> &Supernet {
        &self.net
    }

    /// Where BN layer `index` (see [`crate::statedict`]) lies in a [`BnTable`].
    pub fn bn_range(&self, index: usize) -> std::ops::Range<usize> {
        self.bn_offsets[index]..self.bn_offsets[index + 1]
    }

    /// Channels of BN layer `index` that sub-network `cfg` uses, or `None` when it skips the block.
    fn bn_active(&self, cfg: &SubnetConfig, index: usize) -> Option<usize> {
        match index {
            BN_STEM | BN_FIRST_DW | BN_FIRST_PL | BN_FINAL => Some(bn_channels(&self.net, index)),
            i => {
                let (block, part) = ((i - 3) / 3 + 1, (i - 3) % 3);
                let mid = self.net.block_mid(block, cfg.e[block - 1]);
                cfg.is_active(block).then_some(if part == 2 { bn_channels(&self.net, i) } else { mid })
            }
        }
    }

    /// Load a sub-network's own BN statistics (as Dynamic-OFA stores per level) from safetensors:
    /// keys `<BN layer>.running_mean` / `.running_var` with the sub-network's active widths. Layers
    /// the file leaves out keep the supernet's statistics. `cfg` must be valid for this supernet.
    pub fn load_bn_statistics(&self, path: impl AsRef<Path>, cfg: &SubnetConfig) -> Result<BnTable, WeightsError> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|source| WeightsError::Io { path: path.into(), source })?;
        self.bn_statistics_from_safetensors(&bytes, path, cfg)
    }

    /// [`SupernetWeights::load_bn_statistics`] from bytes; `path` names them in errors.
    pub fn bn_statistics_from_safetensors(
        &self,
        bytes: &[u8],
        path: &Path,
        cfg: &SubnetConfig,
    ) -> Result<BnTable, WeightsError> {
        let st = parse(bytes, path)?;
        let (mut mean, mut var) = (self.bn.mean.clone(), self.bn.var.clone());
        for (key, view) in st.iter() {
            let name = canonical_name(key);
            let not_stat = || WeightsError::NotBnStatistic { path: path.into(), key: key.into() };
            let (layer, target) = match name.rsplit_once('.') {
                Some((layer, "running_mean")) => (layer, &mut mean),
                Some((layer, "running_var")) => (layer, &mut var),
                _ => return Err(not_stat()),
            };
            let index = (0..NUM_BN).find(|&i| bn_name(i) == layer).ok_or_else(not_stat)?;
            let Some(len) = self.bn_active(cfg, index) else {
                return Err(WeightsError::InactiveLayer {
                    path: path.into(),
                    key: key.into(),
                    block: (index - 3) / 3 + 1,
                });
            };
            check(&view, key, &[len], path)?;
            let at = self.bn_offsets[index];
            target[at..at + len].copy_from_slice(&f32s(&view));
        }
        Ok(self.bn.fold(&mean, &var))
    }
}

/// Read tensor `name` of a safetensors file, which must be f32 with shape `shape`.
pub fn load_tensor(path: impl AsRef<Path>, name: &str, shape: &[usize]) -> Result<Vec<f32>, WeightsError> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|source| WeightsError::Io { path: path.into(), source })?;
    let st = parse(&bytes, path)?;
    let view = st.tensor(name).map_err(|_| WeightsError::MissingKey {
        path: path.into(),
        key: name.into(),
        expected: shape.to_vec(),
    })?;
    check(&view, name, shape, path)?;
    Ok(f32s(&view))
}

/// Write one f32 tensor `name` with shape `shape` to a safetensors file.
pub fn save_tensor(path: impl AsRef<Path>, name: &str, shape: &[usize], data: &[f32]) -> Result<(), WeightsError> {
    let path = path.as_ref();
    let bytes: Vec<u8> = data.iter().flat_map(|v| v.to_le_bytes()).collect();
    let view = TensorView::new(Dtype::F32, shape.to_vec(), &bytes).expect("data has the shape's size");
    let out = safetensors::serialize([(name, view)], None).expect("one small tensor");
    std::fs::write(path, out).map_err(|source| WeightsError::Io { path: path.into(), source })
}
