//! OFA's accuracy predictor on the std side: its weights loaded from safetensors, and a batched
//! evaluation (matrix-matrix through `matrixmultiply`) for the search, which scores many
//! sub-networks at a time. Single configs go through the core's allocation-free
//! [`AccuracyPredictor`]; both read the same weights.

use std::path::Path;

use dynofa_core::SubnetConfig;
use dynofa_core::predictor::{
    AccuracyPredictor, HIDDEN, INPUTS, LAYER_SHAPES, LAYERS, Linear, PERCENT, PredictorError, TENSOR_NAMES, encode,
};
use safetensors::{Dtype, SafeTensors};

use super::DesignError;

/// OFA's published predictor weights (MIT licence, copyright Han Cai; see `data/NOTICE.md`).
pub const EMBEDDED_WEIGHTS: &[u8] = include_bytes!("../../../data/acc_predictor.safetensors");
/// Where the embedded weights came from, for error messages and provenance notes.
pub const EMBEDDED_NAME: &str = "data/acc_predictor.safetensors (embedded)";

/// The predictor's weights, owned: four layers of (weight, bias).
#[derive(Debug, Clone)]
pub struct PredictorWeights {
    tensors: [[Vec<f32>; 2]; LAYERS],
}

impl PredictorWeights {
    /// OFA's published weights, embedded in the binary.
    pub fn embedded() -> Result<Self, DesignError> {
        Self::from_bytes(EMBEDDED_WEIGHTS, Path::new(EMBEDDED_NAME))
    }

    /// Load weights from a safetensors file with OFA's names (`0.weight` ... `6.bias`, f32).
    pub fn load(path: &Path) -> Result<Self, DesignError> {
        let bytes = std::fs::read(path).map_err(|source| DesignError::Io { path: path.to_path_buf(), source })?;
        Self::from_bytes(&bytes, path)
    }

    /// Parse safetensors bytes; `path` names the file in errors.
    pub fn from_bytes(bytes: &[u8], path: &Path) -> Result<Self, DesignError> {
        let file = || path.to_path_buf();
        let st = SafeTensors::deserialize(bytes)
            .map_err(|e| DesignError::Safetensors { path: file(), message: e.to_string() })?;
        let mut tensors: [[Vec<f32>; 2]; LAYERS] = Default::default();
        for (layer, (names, &(rows, cols))) in TENSOR_NAMES.iter().zip(&LAYER_SHAPES).enumerate() {
            for (slot, (name, shape)) in names.iter().zip([vec![rows, cols], vec![rows]]).enumerate() {
                let tensor = |expected: String, found: String| DesignError::Tensor {
                    path: file(),
                    key: (*name).to_string(),
                    expected,
                    found,
                };
                let view = st.tensor(name).map_err(|_| tensor("an f32 tensor".into(), "no such tensor".into()))?;
                if view.dtype() != Dtype::F32 {
                    return Err(tensor("dtype F32".into(), format!("dtype {:?}", view.dtype())));
                }
                if view.shape() != shape.as_slice() {
                    return Err(tensor(format!("shape {shape:?}"), format!("shape {:?}", view.shape())));
                }
                tensors[layer][slot] =
                    view.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
            }
        }
        Ok(PredictorWeights { tensors })
    }

    /// The core's predictor over these weights.
    pub fn predictor(&self) -> AccuracyPredictor<'_> {
        let l = |i: usize| Linear { weight: &self.tensors[i][0], bias: &self.tensors[i][1] };
        // The shapes were checked when loading.
        AccuracyPredictor::new([l(0), l(1), l(2), l(3)]).expect("shapes checked at load")
    }
}

/// Batched predictions: features of many configs as one matrix, each layer one matrix product.
#[derive(Debug)]
pub struct BatchPredictor<'a> {
    layers: [Linear<'a>; LAYERS],
    x: Vec<f32>,
    a: Vec<f32>,
    b: Vec<f32>,
}

impl<'a> BatchPredictor<'a> {
    /// A batched evaluator over a predictor's weights.
    pub fn new(predictor: &AccuracyPredictor<'a>) -> Self {
        BatchPredictor { layers: *predictor.layers(), x: Vec::new(), a: Vec::new(), b: Vec::new() }
    }

    /// Predicted top-1 in percent of each config, in order, into `out` (cleared first).
    pub fn predict(&mut self, cfgs: &[SubnetConfig], out: &mut Vec<f32>) -> Result<(), PredictorError> {
        let m = cfgs.len();
        out.clear();
        if m == 0 {
            return Ok(());
        }
        self.x.resize(m * INPUTS, 0.0);
        for (row, cfg) in self.x.chunks_exact_mut(INPUTS).zip(cfgs) {
            let row: &mut [f32; INPUTS] = row.try_into().expect("chunks of INPUTS");
            encode(cfg, row)?;
        }
        self.a.resize(m * HIDDEN, 0.0);
        self.b.resize(m * HIDDEN, 0.0);
        layer(&self.layers[0], &self.x, INPUTS, &mut self.a, true);
        layer(&self.layers[1], &self.a, HIDDEN, &mut self.b, true);
        layer(&self.layers[2], &self.b, HIDDEN, &mut self.a, true);
        out.resize(m, 0.0);
        layer(&self.layers[3], &self.a, HIDDEN, out, false);
        out.iter_mut().for_each(|y| *y *= PERCENT);
        Ok(())
    }
}

/// `Y = act(X W^T + b)` for `X` of `rows x k` (row-major) and `W` of `n x k` (row-major).
fn layer(l: &Linear<'_>, x: &[f32], k: usize, y: &mut [f32], relu: bool) {
    let n = l.bias.len();
    let m = x.len() / k;
    debug_assert_eq!(y.len(), m * n);
    debug_assert_eq!(l.weight.len(), n * k);
    for row in y.chunks_exact_mut(n) {
        row.copy_from_slice(l.bias);
    }
    // SAFETY: `x` holds m*k values (row stride k), `W^T` is read through strides (1, k) over the
    // n*k values of `l.weight`, and `y` holds m*n values (row stride n); none of them alias.
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            1.0,
            x.as_ptr(),
            k as isize,
            1,
            l.weight.as_ptr(),
            1,
            k as isize,
            1.0,
            y.as_mut_ptr(),
            n as isize,
            1,
        );
    }
    if relu {
        y.iter_mut().for_each(|v| *v = v.max(0.0));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::design::testdata::{Level, nets_6};
    use crate::design::workspace_path;

    /// Dynamic-OFA's six stored levels, as the issue states them (to 0.01).
    const LEVELS_PREDICTED: [f32; 6] = [78.69, 79.90, 81.41, 82.24, 83.39, 84.79];

    #[test]
    fn dynamic_ofa_levels_predict_the_published_figures() {
        let weights = PredictorWeights::load(&workspace_path("data/acc_predictor.safetensors")).unwrap();
        let p = weights.predictor();
        let levels: Vec<Level> = nets_6();
        let cfgs: Vec<SubnetConfig> = levels.iter().map(|l| l.config).collect();
        let mut batch = Vec::new();
        BatchPredictor::new(&p).predict(&cfgs, &mut batch).unwrap();
        for ((cfg, want), got_batch) in cfgs.iter().zip(LEVELS_PREDICTED).zip(&batch) {
            let got = p.predict(cfg).unwrap();
            assert!((got - want).abs() < 0.01, "single: {got} vs {want}");
            assert!((got_batch - got).abs() < 1e-4, "batched {got_batch} vs single {got}");
        }
    }

    #[test]
    fn embedded_weights_equal_the_data_file() {
        let a = PredictorWeights::embedded().unwrap();
        let b = PredictorWeights::load(&workspace_path("data/acc_predictor.safetensors")).unwrap();
        assert_eq!(a.tensors, b.tensors);
    }

    #[test]
    fn bad_files_name_file_key_expected_and_found() {
        let path = Path::new("bad.safetensors");
        let err = PredictorWeights::from_bytes(b"not a safetensors file", path).unwrap_err();
        assert!(err.to_string().starts_with("bad.safetensors: not a safetensors file"), "{err}");

        // A file with every tensor but one of the wrong shape.
        let weights = PredictorWeights::embedded().unwrap();
        let mut data: Vec<(String, Vec<u8>, Vec<usize>)> = Vec::new();
        for (layer, names) in TENSOR_NAMES.iter().enumerate() {
            for (slot, name) in names.iter().enumerate() {
                let mut v = weights.tensors[layer][slot].clone();
                let mut shape =
                    if slot == 0 { vec![LAYER_SHAPES[layer].0, LAYER_SHAPES[layer].1] } else { vec![v.len()] };
                if *name == "2.bias" {
                    v.push(0.0);
                    shape = vec![v.len()];
                }
                data.push((name.to_string(), v.iter().flat_map(|f| f.to_le_bytes()).collect(), shape));
            }
        }
        let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = data
            .iter()
            .map(|(n, bytes, shape)| {
                (n.clone(), safetensors::tensor::TensorView::new(Dtype::F32, shape.clone(), bytes).unwrap())
            })
            .collect();
        let bytes = safetensors::serialize(views, None).unwrap();
        let err = PredictorWeights::from_bytes(&bytes, path).unwrap_err();
        assert_eq!(err.to_string(), "bad.safetensors: tensor \"2.bias\": expected shape [400], found shape [401]");
    }

    #[test]
    fn batched_matches_single_on_many_configs() {
        let weights = PredictorWeights::embedded().unwrap();
        let p = weights.predictor();
        let cfgs: Vec<SubnetConfig> = (0..37u32)
            .map(|i| {
                let mut c = SubnetConfig::uniform(3, 3, 2, 160 + 4 * (i % 17) as u16);
                for b in 0..20 {
                    c.ks[b] = [3, 5, 7][(i as usize * 7 + b) % 3];
                    c.e[b] = [3, 4, 6][(i as usize + b * b) % 3];
                }
                c.d = [2 + (i % 3) as u8, 2 + (i / 3 % 3) as u8, 4, 3, 2 + (i / 9 % 3) as u8];
                c
            })
            .collect();
        let mut out = Vec::new();
        BatchPredictor::new(&p).predict(&cfgs, &mut out).unwrap();
        for (c, got) in cfgs.iter().zip(&out) {
            assert!((p.predict(c).unwrap() - got).abs() < 1e-4);
        }
        let bad = SubnetConfig::uniform(3, 3, 2, 128);
        assert!(matches!(BatchPredictor::new(&p).predict(&[bad], &mut out), Err(PredictorError::Config(_))));
    }
}
