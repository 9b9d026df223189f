//! OFA's per-op latency tables: the op keys of a sub-network, reading and writing the tables
//! (one file per input resolution: `{r}_lookup_table.json` as Dynamic-OFA ships them, or
//! `{r}_lookup_table.yaml` as OFA writes them), a sub-network's latency as the sum over its ops, and
//! a compiled form for the search.
//!
//! Keys follow `ofa.tutorial.latency_table.LatencyEstimator`:
//! `expanded_conv-input:HxWxC-output:HxWxC-expand:M-kernel:k-stride:s-idskip:0|1-se:0|1-hs:0|1`
//! for every MBConv block (`blocks.0` too), and `Conv`, `Conv_1`, `AvgPool2D`, `Conv_2`, `Logits`
//! for the stem, the final expand layer, the pooling, the feature mix layer and the classifier.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use dynofa_core::arch::{EXPAND_RATIOS, KERNEL_SIZES, MAX_DEPTH, NUM_BLOCKS, NUM_CLASSES, NUM_UNITS};
use dynofa_core::{Activation, SubnetConfig, Supernet};
use serde::{Deserialize, Serialize};

use super::DesignError;

/// File name suffix of a per-resolution table in JSON.
pub const TABLE_SUFFIX: &str = "_lookup_table.json";
/// File name suffix of a per-resolution table in YAML.
pub const YAML_TABLE_SUFFIX: &str = "_lookup_table.yaml";

fn is_yaml(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "yaml" || e == "yml")
}

/// One op of a sub-network, as OFA's latency tables name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// `first_conv`: 3x3 stride-2 conv from RGB.
    Conv {
        /// Input resolution.
        size: usize,
        /// Output feature map size.
        out_size: usize,
        /// Output channels.
        out_ch: usize,
    },
    /// An MBConv block (the fixed `blocks.0` too, whose expand width is its input width).
    ExpandedConv {
        /// Input feature map size.
        in_size: usize,
        /// Input channels.
        in_ch: usize,
        /// Output feature map size.
        out_size: usize,
        /// Output channels.
        out_ch: usize,
        /// Middle (expanded) channels.
        mid: usize,
        /// Depthwise kernel size.
        kernel: usize,
        /// Depthwise stride.
        stride: usize,
        /// Identity shortcut.
        idskip: bool,
        /// Squeeze-and-excite.
        se: bool,
        /// h_swish activation (else ReLU).
        hs: bool,
    },
    /// `final_expand_layer`: 1x1 conv.
    Conv1 {
        /// Feature map size.
        size: usize,
        /// Input channels.
        in_ch: usize,
        /// Output channels.
        out_ch: usize,
    },
    /// Global average pooling.
    AvgPool2D {
        /// Input feature map size.
        size: usize,
        /// Channels.
        ch: usize,
    },
    /// `feature_mix_layer`: 1x1 conv on the pooled vector.
    Conv2 {
        /// Input channels.
        in_ch: usize,
        /// Output channels.
        out_ch: usize,
    },
    /// The classifier.
    Logits {
        /// Input features.
        in_ch: usize,
        /// Classes.
        classes: usize,
    },
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Op::Conv { size, out_size, out_ch } => {
                write!(f, "Conv-input:{size}x{size}x3-output:{out_size}x{out_size}x{out_ch}")
            }
            Op::ExpandedConv { in_size, in_ch, out_size, out_ch, mid, kernel, stride, idskip, se, hs } => write!(
                f,
                "expanded_conv-input:{in_size}x{in_size}x{in_ch}-output:{out_size}x{out_size}x{out_ch}-expand:{mid}-kernel:{kernel}-stride:{stride}-idskip:{}-se:{}-hs:{}",
                idskip as u8, se as u8, hs as u8
            ),
            Op::Conv1 { size, in_ch, out_ch } => {
                write!(f, "Conv_1-input:{size}x{size}x{in_ch}-output:{size}x{size}x{out_ch}")
            }
            Op::AvgPool2D { size, ch } => write!(f, "AvgPool2D-input:{size}x{size}x{ch}-output:1x1x{ch}"),
            Op::Conv2 { in_ch, out_ch } => write!(f, "Conv_2-input:1x1x{in_ch}-output:1x1x{out_ch}"),
            Op::Logits { in_ch, classes } => write!(f, "Logits-input:1x1x{in_ch}-output:{classes}"),
        }
    }
}

/// An op and where it sits: in elastic block `block` (1..=20), or in the fixed part of the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NetOp {
    /// The elastic block the op is, if any.
    pub block: Option<usize>,
    /// The op.
    pub op: Op,
}

/// Every op a sub-network runs, in order; shapes come from [`Supernet::blocks`].
pub fn network_ops(net: &Supernet, cfg: &SubnetConfig) -> Vec<NetOp> {
    let r = cfg.r as usize;
    let s0 = Supernet::stem_out(r);
    let fixed = |op| NetOp { block: None, op };
    let mut ops = vec![
        fixed(Op::Conv { size: r, out_size: s0, out_ch: net.stem }),
        fixed(Op::ExpandedConv {
            in_size: s0,
            in_ch: net.stem,
            out_size: s0,
            out_ch: net.first_block,
            mid: net.stem,
            kernel: 3,
            stride: 1,
            idskip: net.stem == net.first_block,
            se: false,
            hs: false,
        }),
    ];
    ops.extend(net.blocks(cfg).map(|b| NetOp {
        block: Some(b.index),
        op: Op::ExpandedConv {
            in_size: b.in_size,
            in_ch: b.in_ch,
            out_size: b.out_size,
            out_ch: b.out_ch,
            mid: b.mid,
            kernel: b.kernel,
            stride: b.stride,
            idskip: b.residual,
            se: b.se_mid.is_some(),
            hs: b.act == Activation::HSwish,
        },
    }));
    let sf = Supernet::final_size(r);
    let last = net.unit_out[NUM_UNITS - 1];
    ops.extend([
        fixed(Op::Conv1 { size: sf, in_ch: last, out_ch: net.final_expand }),
        fixed(Op::AvgPool2D { size: sf, ch: net.final_expand }),
        fixed(Op::Conv2 { in_ch: net.final_expand, out_ch: net.feature_mix }),
        fixed(Op::Logits { in_ch: net.feature_mix, classes: NUM_CLASSES }),
    ]);
    ops
}

/// One table value: OFA's `{count, mean, std}` in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct OpStats {
    /// Number of timed repetitions.
    pub count: u64,
    /// Mean latency in ms.
    pub mean: f64,
    /// Standard deviation in ms.
    pub std: f64,
}

/// A latency estimate: mean and standard deviation in ms.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Latency {
    /// Mean in ms.
    pub mean_ms: f64,
    /// Standard deviation in ms.
    pub std_ms: f64,
}

/// One per-op table: the ops of one input resolution.
#[derive(Debug, Clone, PartialEq)]
pub struct OpTable {
    /// The file it was read from or will be written to.
    pub path: PathBuf,
    /// Op key to its latency.
    pub ops: BTreeMap<String, OpStats>,
}

impl OpTable {
    /// Read a table: YAML if the file ends in `.yaml` or `.yml`, else JSON.
    pub fn load(path: &Path) -> Result<Self, DesignError> {
        let text = std::fs::read(path).map_err(|source| DesignError::Io { path: path.to_path_buf(), source })?;
        let ops = if is_yaml(path) {
            serde_yaml_ng::from_slice(&text).map_err(|source| DesignError::Yaml { path: path.to_path_buf(), source })?
        } else {
            serde_json::from_slice(&text).map_err(|source| DesignError::Json { path: path.to_path_buf(), source })?
        };
        Ok(OpTable { path: path.to_path_buf(), ops })
    }

    /// The table (keys sorted) as YAML or JSON, by the extension of `self.path`.
    pub fn to_text(&self) -> Result<String, DesignError> {
        let path = &self.path;
        Ok(if is_yaml(path) {
            serde_yaml_ng::to_string(&self.ops).map_err(|source| DesignError::Yaml { path: path.clone(), source })?
        } else {
            serde_json::to_string_pretty(&self.ops)
                .map_err(|source| DesignError::Json { path: path.clone(), source })?
                + "\n"
        })
    }

    /// Write the table to `self.path`, as YAML or JSON by its extension.
    pub fn write(&self) -> Result<(), DesignError> {
        std::fs::write(&self.path, self.to_text()?)
            .map_err(|source| DesignError::Io { path: self.path.clone(), source })
    }

    /// The latency of an op, or an error naming the key and this file.
    pub fn get(&self, op: &Op) -> Result<&OpStats, DesignError> {
        let key = op.to_string();
        self.ops.get(&key).ok_or_else(|| DesignError::MissingOp { key, file: self.path.clone() })
    }
}

/// A set of per-op tables, one per resolution, for one processing unit.
#[derive(Debug, Clone, PartialEq)]
pub struct OpTables {
    /// The folder they live in.
    pub dir: PathBuf,
    /// Resolution to its table.
    pub tables: BTreeMap<u16, OpTable>,
}

impl OpTables {
    /// Read every `{r}_lookup_table.json` or `{r}_lookup_table.yaml` of a folder.
    pub fn load_dir(dir: &Path) -> Result<Self, DesignError> {
        let io = |source| DesignError::Io { path: dir.to_path_buf(), source };
        let mut tables = BTreeMap::new();
        for entry in std::fs::read_dir(dir).map_err(io)? {
            let path = entry.map_err(io)?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            let r = [TABLE_SUFFIX, YAML_TABLE_SUFFIX].iter().find_map(|s| name.strip_suffix(s)?.parse::<u16>().ok());
            if let Some(r) = r
                && tables.insert(r, OpTable::load(&path)?).is_some()
            {
                return Err(DesignError::DuplicateTable { dir: dir.to_path_buf(), r });
            }
        }
        if tables.is_empty() {
            return Err(DesignError::NoTables { dir: dir.to_path_buf() });
        }
        Ok(OpTables { dir: dir.to_path_buf(), tables })
    }

    /// The resolutions that have a table, ascending.
    pub fn resolutions(&self) -> Vec<u16> {
        self.tables.keys().copied().collect()
    }

    fn table(&self, r: u16) -> Result<&OpTable, DesignError> {
        self.tables.get(&r).ok_or_else(|| DesignError::MissingResolution { dir: self.dir.clone(), r })
    }

    /// A sub-network's latency: the sum of its ops' means; the std assumes independent ops.
    pub fn network(&self, net: &Supernet, cfg: &SubnetConfig) -> Result<Latency, DesignError> {
        let table = self.table(cfg.r)?;
        let (mut mean, mut var) = (0.0, 0.0);
        for o in network_ops(net, cfg) {
            let s = table.get(&o.op)?;
            mean += s.mean;
            var += s.std * s.std;
        }
        Ok(Latency { mean_ms: mean, std_ms: var.sqrt() })
    }

    /// Sub-networks at resolution `r` that between them run every op any sub-network runs there:
    /// the full-depth uniform ones, kernel-major (kernel `KERNEL_SIZES[i / 3]`, expand ratio
    /// `EXPAND_RATIOS[i % 3]`). A block's shape depends on the resolution, its index, kernel and
    /// expand ratio only: the blocks a shallower unit skips are stride-1 and change no later size.
    pub fn covering_configs(r: u16) -> impl Iterator<Item = SubnetConfig> {
        KERNEL_SIZES
            .into_iter()
            .flat_map(move |k| EXPAND_RATIOS.map(|e| SubnetConfig::uniform(k, e, MAX_DEPTH as u8, r)))
    }

    /// Per-(resolution, block, kernel, expand) means for fast sums over the given resolutions.
    pub fn compile(&self, net: &Supernet, resolutions: &[u16]) -> Result<LatencyModel, DesignError> {
        let mut model = LatencyModel { resolutions: resolutions.to_vec(), fixed: Vec::new(), blocks: Vec::new() };
        for &r in resolutions {
            let table = self.table(r)?;
            let mut fixed = 0.0;
            let mut blocks = [[[0.0; 3]; 3]; NUM_BLOCKS];
            for (i, cfg) in Self::covering_configs(r).enumerate() {
                let (ki, ei) = (i / EXPAND_RATIOS.len(), i % EXPAND_RATIOS.len());
                for o in network_ops(net, &cfg) {
                    let mean = table.get(&o.op)?.mean;
                    match o.block {
                        Some(b) => blocks[b - 1][ki][ei] = mean,
                        None if i == 0 => fixed += mean,
                        None => {}
                    }
                }
            }
            model.fixed.push(fixed);
            model.blocks.push(blocks);
        }
        Ok(model)
    }
}

/// Table sums compiled for the search: a sub-network's latency in a few additions.
#[derive(Debug, Clone, PartialEq)]
pub struct LatencyModel {
    resolutions: Vec<u16>,
    /// Per resolution: the ops outside the elastic blocks.
    fixed: Vec<f64>,
    /// Per resolution, block, kernel index and expand index.
    blocks: Vec<[[[f64; 3]; 3]; NUM_BLOCKS]>,
}

fn index_of(options: &[u8; 3], v: u8) -> usize {
    options.iter().position(|&o| o == v).unwrap_or(0)
}

impl LatencyModel {
    /// The resolutions this model covers.
    pub fn resolutions(&self) -> &[u16] {
        &self.resolutions
    }

    /// Mean latency in ms of a valid config, `None` when its resolution is not covered.
    pub fn latency(&self, cfg: &SubnetConfig) -> Option<f64> {
        let ri = self.resolutions.iter().position(|&r| r == cfg.r)?;
        let blocks = &self.blocks[ri];
        let mut sum = self.fixed[ri];
        for b in (1..=NUM_BLOCKS).filter(|&b| cfg.is_active(b)) {
            sum += blocks[b - 1][index_of(&KERNEL_SIZES, cfg.ks[b - 1])][index_of(&EXPAND_RATIOS, cfg.e[b - 1])];
        }
        Some(sum)
    }

    /// The smallest and largest latency of any sub-network the model covers.
    pub fn range(&self) -> (f64, f64) {
        let extreme = |pick: fn(f64, f64) -> f64| {
            self.fixed
                .iter()
                .zip(&self.blocks)
                .map(|(&fixed, blocks)| {
                    let unit = |u: usize| {
                        let best = |b: usize| blocks[b].iter().flatten().copied().reduce(pick).unwrap_or(0.0);
                        // Depth d runs the unit's first d blocks.
                        (2..=MAX_DEPTH)
                            .map(|d| (0..d).map(|i| best(u * MAX_DEPTH + i)).sum::<f64>())
                            .reduce(pick)
                            .unwrap_or(0.0)
                    };
                    fixed + (0..NUM_UNITS).map(unit).sum::<f64>()
                })
                .reduce(pick)
                .unwrap_or(0.0)
        };
        (extreme(f64::min), extreme(f64::max))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::design::testdata::{gpu_tables, nets_6, nets_7, shared_path};

    #[test]
    fn op_keys_match_the_xavier_nx_tables() {
        let net = Supernet::W1_2;
        let ops = network_ops(&net, &SubnetConfig::uniform(7, 6, 4, 160));
        let keys: Vec<String> = ops.iter().map(|o| o.op.to_string()).collect();
        assert_eq!(keys.len(), 2 + 20 + 4);
        assert_eq!(keys[0], "Conv-input:160x160x3-output:80x80x24");
        assert_eq!(
            keys[1],
            "expanded_conv-input:80x80x24-output:80x80x24-expand:24-kernel:3-stride:1-idskip:1-se:0-hs:0"
        );
        assert_eq!(
            keys[2],
            "expanded_conv-input:80x80x24-output:40x40x32-expand:144-kernel:7-stride:2-idskip:0-se:0-hs:0"
        );
        assert_eq!(
            keys[14],
            "expanded_conv-input:10x10x96-output:10x10x136-expand:576-kernel:7-stride:1-idskip:0-se:1-hs:1"
        );
        assert_eq!(keys[22], "Conv_1-input:5x5x192-output:5x5x1152");
        assert_eq!(keys[23], "AvgPool2D-input:5x5x1152-output:1x1x1152");
        assert_eq!(keys[24], "Conv_2-input:1x1x1152-output:1x1x1536");
        assert_eq!(keys[25], "Logits-input:1x1x1536-output:1000");
        // Every op of every config at every resolution is in both Xavier NX table sets.
        for dir in ["latency_table@jetson_GPU", "latency_table@jetson"] {
            let tables = OpTables::load_dir(&shared_path(dir)).unwrap();
            assert_eq!(tables.resolutions(), (160..=224).step_by(4).collect::<Vec<u16>>());
            tables.compile(&net, &tables.resolutions()).unwrap();
        }
    }

    #[test]
    fn sums_reproduce_the_stored_levels() {
        let net = Supernet::W1_2;
        let gpu = gpu_tables();
        let cpu = OpTables::load_dir(&shared_path("latency_table@jetson")).unwrap();
        let model = gpu.compile(&net, &gpu.resolutions()).unwrap();
        for level in nets_6().iter().chain(&nets_7()) {
            let g = gpu.network(&net, &level.config).unwrap().mean_ms;
            let c = cpu.network(&net, &level.config).unwrap().mean_ms;
            // subnets_extracted.json rounds to 3 and 2 decimals.
            assert!((g - level.lut_gpu_ms).abs() < 5e-4, "gpu {g} vs {}", level.lut_gpu_ms);
            assert!((c - level.lut_cpu_ms).abs() < 5e-3, "cpu {c} vs {}", level.lut_cpu_ms);
            assert!((model.latency(&level.config).unwrap() - g).abs() < 1e-9);
        }
    }

    #[test]
    fn compiled_range_is_the_extreme_networks() {
        let net = Supernet::W1_2;
        let gpu = gpu_tables();
        let model = gpu.compile(&net, &[160, 224]).unwrap();
        let (lo, hi) = model.range();
        // Exhaustive over uniform configs: none lies outside, and the range is attained by some config.
        let mut seen = (f64::MAX, f64::MIN);
        for r in [160, 224] {
            for k in KERNEL_SIZES {
                for e in EXPAND_RATIOS {
                    for d in [2, 3, 4] {
                        let l = model.latency(&SubnetConfig::uniform(k, e, d, r)).unwrap();
                        seen = (seen.0.min(l), seen.1.max(l));
                    }
                }
            }
        }
        assert!(lo <= seen.0 && hi >= seen.1 && lo > 0.0);
        assert_eq!(model.latency(&SubnetConfig::uniform(3, 3, 2, 176)), None);
    }

    #[test]
    fn missing_ops_and_resolutions_name_key_and_file() {
        let net = Supernet::W1_2;
        let mut gpu = gpu_tables();
        let t = gpu.tables.get_mut(&160).unwrap();
        let key = "Conv_2-input:1x1x1152-output:1x1x1536";
        t.ops.remove(key);
        let err = gpu.network(&net, &SubnetConfig::uniform(3, 3, 2, 160)).unwrap_err();
        let file = shared_path("latency_table@jetson_GPU/160_lookup_table.json");
        assert!(err.to_string().starts_with(&format!("{}: no latency for op \"{key}\"", file.display())), "{err}");
        assert!(matches!(gpu.compile(&net, &[160]), Err(DesignError::MissingOp { .. })));
        let err = gpu.network(&net, &SubnetConfig::uniform(3, 3, 2, 128)).unwrap_err();
        assert!(matches!(err, DesignError::MissingResolution { r: 128, .. }), "{err}");
    }

    #[test]
    fn tables_round_trip_through_ofa_json_and_yaml() {
        let dir = std::env::temp_dir().join(format!("dynofa-optable-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let gpu = gpu_tables();
        let mut t = gpu.tables[&176].clone();
        t.path = dir.join(format!("176{TABLE_SUFFIX}"));
        t.write().unwrap();
        let mut y = gpu.tables[&160].clone();
        y.path = dir.join(format!("160{YAML_TABLE_SUFFIX}"));
        y.write().unwrap();
        let back = OpTables::load_dir(&dir).unwrap();
        assert_eq!((&back.tables[&176], &back.tables[&160]), (&t, &y));
        // A second table for one resolution is refused rather than silently chosen.
        let mut dup = y.clone();
        dup.path = dir.join(format!("160{TABLE_SUFFIX}"));
        dup.write().unwrap();
        assert!(matches!(OpTables::load_dir(&dir), Err(DesignError::DuplicateTable { r: 160, .. })));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// YAML exactly as PyYAML's `yaml.dump` writes OFA's tables.
    #[test]
    fn reads_pyyaml_output() {
        let dir = std::env::temp_dir().join(format!("dynofa-optable-yaml-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("160_lookup_table.yaml");
        std::fs::write(
            &path,
            "AvgPool2D-input:5x5x1152-output:1x1x1152:\n  count: 491\n  mean: 0.008482688391038698\n  std: 0.0006733248071883371\n\
             expanded_conv-input:80x80x24-output:80x80x24-expand:24-kernel:3-stride:1-idskip:1-se:0-hs:0:\n  count: 499\n  mean: 0.8487194388777555\n  std: 0.021209080439092955\n",
        )
        .unwrap();
        let t = OpTable::load(&path).unwrap();
        let gpu = gpu_tables();
        assert_eq!(t.ops.len(), 2);
        for (k, v) in &t.ops {
            assert_eq!(v, &gpu.tables[&160].ops[k]);
        }
        std::fs::write(&path, "AvgPool2D: [1, 2").unwrap();
        let err = OpTable::load(&path).unwrap_err();
        assert!(matches!(err, DesignError::Yaml { .. }) && err.to_string().starts_with(&path.display().to_string()));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
