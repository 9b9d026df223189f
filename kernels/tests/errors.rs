//! Bad weights files, BN files, configs and inputs: each is refused with a message that names the
//! problem (and the file), never a panic.

use std::collections::HashMap;
use std::path::Path;

use dynofa_core::hal::{Error as _, ErrorKind, InferenceEngine};
use dynofa_core::{SubnetConfig, Supernet};
use dynofa_kernels::{CpuEngine, EngineError, SupernetWeights, WeightsError, seeded_safetensors};
use safetensors::SafeTensors;
use safetensors::tensor::{Dtype, TensorView};

const FILE: &str = "w10.safetensors";

/// The seeded w1.0 state dict, as (name -> (dtype, shape, bytes)), for editing.
fn state_dict() -> HashMap<String, (Dtype, Vec<usize>, Vec<u8>)> {
    let bytes = seeded_safetensors(Supernet::W1_0, 3);
    let st = SafeTensors::deserialize(&bytes).unwrap();
    st.iter().map(|(n, v)| (n.to_string(), (v.dtype(), v.shape().to_vec(), v.data().to_vec()))).collect()
}

fn serialize(sd: &HashMap<String, (Dtype, Vec<usize>, Vec<u8>)>) -> Vec<u8> {
    let views = sd.iter().map(|(n, (d, s, b))| (n.as_str(), TensorView::new(*d, s.clone(), b).unwrap()));
    safetensors::serialize(views, None).unwrap()
}

fn load_err(bytes: &[u8]) -> (WeightsError, String) {
    let e = SupernetWeights::from_safetensors(bytes, Path::new(FILE)).expect_err("must be refused");
    let msg = e.to_string();
    assert!(msg.starts_with(FILE), "message names the file: {msg}");
    assert!(!msg.ends_with('.') && !msg.contains('\n'), "one line, no trailing period: {msg}");
    (e, msg)
}

const KEY: &str = "blocks.7.conv.depth_conv.conv.conv.weight";

#[test]
fn missing_key() {
    let mut sd = state_dict();
    sd.remove(KEY);
    let (e, msg) = load_err(&serialize(&sd));
    assert!(matches!(e, WeightsError::MissingKey { .. }));
    assert!(msg.contains(KEY) && msg.contains("[240, 1, 7, 7]"), "{msg}");
}

#[test]
fn wrong_shape() {
    let mut sd = state_dict();
    sd.insert(KEY.into(), (Dtype::F32, vec![240, 1, 5, 5], vec![0; 240 * 25 * 4]));
    let (e, msg) = load_err(&serialize(&sd));
    assert!(matches!(e, WeightsError::Shape { .. }));
    assert!(msg.contains(KEY) && msg.contains("[240, 1, 5, 5]") && msg.contains("expected [240, 1, 7, 7]"), "{msg}");
}

#[test]
fn wrong_dtype() {
    let mut sd = state_dict();
    sd.insert(KEY.into(), (Dtype::F16, vec![240, 1, 7, 7], vec![0; 240 * 49 * 2]));
    let (e, msg) = load_err(&serialize(&sd));
    assert!(matches!(e, WeightsError::Dtype { .. }));
    assert!(msg.contains(KEY) && msg.contains("F16") && msg.contains("float32"), "{msg}");
}

#[test]
fn truncated_file() {
    let bytes = serialize(&state_dict());
    for cut in [bytes.len() - 1000, 20] {
        let (e, msg) = load_err(&bytes[..cut]);
        assert!(matches!(e, WeightsError::Truncated { .. }), "cut at {cut}: {msg}");
        assert!(msg.contains("truncated") && msg.contains(&format!("{cut} bytes")), "{msg}");
    }
}

#[test]
fn not_safetensors() {
    let (e, msg) = load_err(b"PK\x03\x04 a torch zip checkpoint, not safetensors at all");
    assert!(matches!(e, WeightsError::NotSafetensors { .. }));
    assert!(msg.contains("not a safetensors file") && msg.contains("torch checkpoint"), "{msg}");
    assert!(msg.contains("dynofa import-ofa CHECKPOINT OUT.safetensors"), "{msg}");
    let (_, msg) = load_err(b"hello");
    assert!(msg.contains("not a safetensors file"), "{msg}");
}

#[test]
fn unexpected_key_and_unknown_width() {
    let mut sd = state_dict();
    sd.insert("blocks.21.conv.extra".into(), (Dtype::F32, vec![1], vec![0; 4]));
    let (e, msg) = load_err(&serialize(&sd));
    assert!(matches!(e, WeightsError::UnexpectedKey { .. }) && msg.contains("blocks.21.conv.extra"), "{msg}");

    let mut sd = state_dict();
    sd.insert("first_conv.conv.weight".into(), (Dtype::F32, vec![32, 3, 3, 3], vec![0; 32 * 27 * 4]));
    let (e, msg) = load_err(&serialize(&sd));
    assert!(matches!(e, WeightsError::UnknownWidth { .. }) && msg.contains("[32, 3, 3, 3]"), "{msg}");
}

#[test]
fn old_checkpoint_names_are_accepted() {
    let sd: HashMap<_, _> = state_dict()
        .into_iter()
        .map(|(k, v)| (k.replace("blocks.3.conv.", "blocks.3.mobile_inverted_conv."), v))
        .collect();
    let w = SupernetWeights::from_safetensors(&serialize(&sd), Path::new(FILE)).unwrap();
    assert_eq!(w.supernet(), &Supernet::W1_0);
}

#[test]
fn missing_file() {
    let e = SupernetWeights::load("/nonexistent/w.safetensors").unwrap_err();
    assert!(e.to_string().starts_with("/nonexistent/w.safetensors: cannot read the file"), "{e}");
}

fn bn_err(weights: &SupernetWeights, cfg: &SubnetConfig, tensors: &[(&str, Dtype, Vec<usize>)]) -> String {
    let data: Vec<Vec<u8>> =
        tensors.iter().map(|(_, d, s)| vec![0; s.iter().product::<usize>() * d.bitsize() / 8]).collect();
    let views = tensors.iter().zip(&data).map(|((n, d, s), b)| (*n, TensorView::new(*d, s.clone(), b).unwrap()));
    let bytes = safetensors::serialize(views, None).unwrap();
    let e = weights.bn_statistics_from_safetensors(&bytes, Path::new("bn.safetensors"), cfg).unwrap_err();
    let msg = e.to_string();
    assert!(msg.starts_with("bn.safetensors: "), "{msg}");
    msg
}

#[test]
fn bad_bn_statistics() {
    let weights = SupernetWeights::seeded(Supernet::W1_0, 3);
    let cfg = SubnetConfig::uniform(5, 4, 2, 160);
    // e = 4 on blocks.2 (in 24): mid 96, not the stored 144.
    let msg = bn_err(&weights, &cfg, &[("blocks.2.conv.depth_conv.bn.bn.running_var", Dtype::F32, vec![144])]);
    assert!(msg.contains("shape [144], expected [96]"), "{msg}");
    let msg = bn_err(&weights, &cfg, &[("blocks.2.conv.depth_conv.bn.bn.weight", Dtype::F32, vec![96])]);
    assert!(msg.contains("not a BN running statistic"), "{msg}");
    let msg = bn_err(&weights, &cfg, &[("blocks.3.conv.depth_conv.bn.bn.running_mean", Dtype::F32, vec![96])]);
    assert!(msg.contains("blocks.3 is not run by this sub-network"), "{msg}");
    let msg = bn_err(&weights, &cfg, &[("first_conv.bn.running_mean", Dtype::F64, vec![16])]);
    assert!(msg.contains("F64"), "{msg}");
}

#[test]
fn bad_configs_and_inputs() {
    let mut engine = CpuEngine::with_threads(SupernetWeights::seeded(Supernet::W1_0, 3), 1);
    let mut out = vec![0.0; 1000];
    let e = engine.infer(&[0.0; 3 * 128 * 128], &mut out).unwrap_err();
    assert_eq!(
        (e.kind(), e.to_string().as_str()),
        (ErrorKind::NotPrepared, "no sub-network is active: call activate first")
    );

    let mut cfg = SubnetConfig::uniform(3, 3, 2, 128);
    cfg.ks[4] = 4;
    let e = engine.activate(&cfg).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    assert!(e.to_string().contains("ks[4] = 4: kernel size must be 3, 5 or 7"), "{e}");
    let e = engine.activate(&SubnetConfig::uniform(3, 3, 2, 130)).unwrap_err();
    assert!(e.to_string().contains("multiple of 4"), "{e}");
    // 128 is fine for w1.0, not for w1.2.
    engine.activate(&SubnetConfig::uniform(3, 3, 2, 128)).unwrap();
    let mut w12 = CpuEngine::with_threads(SupernetWeights::seeded(Supernet::W1_2, 3), 1);
    let e = w12.activate(&SubnetConfig::uniform(3, 3, 2, 128)).unwrap_err();
    assert!(e.to_string().contains("r = 128: resolution must be within 160..=224"), "{e}");

    let e = engine.infer(&[0.0; 3 * 160 * 160], &mut out).unwrap_err();
    assert_eq!(e, EngineError::InputSize { found: 3 * 160 * 160, expected: 3 * 128 * 128, r: 128 });
    assert!(e.to_string().contains("f32 [1, 3, 128, 128]"), "{e}");
    let e = engine.infer(&[0.0; 3 * 128 * 128], &mut out[..10]).unwrap_err();
    assert_eq!(e.to_string(), "output has 10 values; logits are f32 [1, 1000]");
    engine.infer(&[0.0; 3 * 128 * 128], &mut out).unwrap();
}

#[test]
fn a_header_length_near_the_largest_integer_is_refused_without_overflow() {
    // Regression (cargo xtask fuzz, weights_safetensors): the length 2^64 - 1 overflowed `8 + n`.
    let e = SupernetWeights::from_safetensors(&[0xff; 64], Path::new(FILE)).unwrap_err();
    assert!(matches!(e, WeightsError::NotSafetensors { .. }), "{e}");
    assert!(e.to_string().starts_with("w10.safetensors: not a safetensors file"), "{e}");
}
