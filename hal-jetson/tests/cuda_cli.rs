//! `dynofa infer --backend cuda` (and with `--tune`): logits on a machine with an NVIDIA GPU;
//! elsewhere (no driver, no GPU, a build without CUDA) a non-zero exit with a one-line reason,
//! never a panic.

use std::process::Command;

use safetensors::tensor::{Dtype, TensorView};

const MIN: &str = r#"{"ks": [3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3], "e": [3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3], "d": [2,2,2,2,2], "r": [160]}"#;

#[test]
fn cuda_backend_runs_or_refuses_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let bytes: Vec<u8> = (0..3 * 160 * 160).flat_map(|i| ((i % 7) as f32 * 0.1).to_le_bytes()).collect();
    let view = TensorView::new(Dtype::F32, vec![1, 3, 160, 160], &bytes).unwrap();
    std::fs::write(dir.path().join("x.safetensors"), safetensors::serialize([("input", view)], None).unwrap()).unwrap();
    std::fs::write(dir.path().join("c.json"), MIN).unwrap();
    for extra in [&[][..], &["--tune"]] {
        let out = Command::new(env!("CARGO_BIN_EXE_dynofa"))
            .args(["infer", "--backend", "cuda", "--config"])
            .arg(dir.path().join("c.json"))
            .arg("--input")
            .arg(dir.path().join("x.safetensors"))
            .arg("--output")
            .arg(dir.path().join("y.safetensors"))
            .args(extra)
            .env("RUST_BACKTRACE", "1")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr).trim().to_string();
        assert!(!err.contains("panicked"), "{extra:?}: {err}");
        if out.status.success() {
            println!("CUDA present ({extra:?}): {err}");
            let y = std::fs::read(dir.path().join("y.safetensors")).unwrap();
            let y = safetensors::SafeTensors::deserialize(&y).unwrap();
            assert_eq!(y.tensor("logits").unwrap().shape(), &[1, 1000]);
            continue;
        }
        assert_eq!(err.lines().count(), 1, "{extra:?}: one line: {err}");
        if !dynofa_hal_jetson::gpu::driver_present() {
            let why = if cfg!(feature = "cuda") { "no CUDA driver: libcuda.so was not found" } else { "without CUDA" };
            assert!(err.contains(why), "{extra:?}: {err}");
        }
    }
}
