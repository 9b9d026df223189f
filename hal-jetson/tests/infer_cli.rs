//! `dynofa infer` end to end: a run on the built-in weights, `--repeat`, and one-line refusals with
//! a non-zero exit for bad configs, inputs and weight files.

use std::path::Path;
use std::process::{Command, Output};

use safetensors::tensor::{Dtype, TensorView};

fn write_input(path: &Path, shape: &[usize]) {
    let bytes: Vec<u8> =
        (0..shape.iter().product::<usize>()).flat_map(|i| ((i % 7) as f32 * 0.1).to_le_bytes()).collect();
    let view = TensorView::new(Dtype::F32, shape.to_vec(), &bytes).unwrap();
    std::fs::write(path, safetensors::serialize([("input", view)], None).unwrap()).unwrap();
}

const MIN: &str = r#"{"ks": [3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3], "e": [3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3], "d": [2,2,2,2,2], "r": [160]}"#;

fn infer(dir: &Path, config: &str, extra: &[&str]) -> Output {
    std::fs::write(dir.join("c.json"), config).unwrap();
    Command::new(env!("CARGO_BIN_EXE_dynofa"))
        .arg("infer")
        .arg("--config")
        .arg(dir.join("c.json"))
        .arg("--input")
        .arg(dir.join("x.safetensors"))
        .arg("--output")
        .arg(dir.join("y.safetensors"))
        .args(extra)
        .output()
        .unwrap()
}

/// The refusal: non-zero exit and a single line on stderr.
fn refusal(out: &Output) -> String {
    assert!(!out.status.success(), "must fail");
    let err = String::from_utf8_lossy(&out.stderr).trim().to_string();
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    err
}

#[test]
fn runs_the_default_weights_and_times_with_repeat() {
    let dir = tempfile::tempdir().unwrap();
    write_input(&dir.path().join("x.safetensors"), &[1, 3, 160, 160]);
    let out = infer(dir.path(), MIN, &["--repeat", "3", "--threads", "2"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout.lines().last().unwrap();
    let ms: f64 = last.strip_prefix("median_ms=").unwrap().parse().unwrap();
    assert!(ms > 0.0);
    let bytes = std::fs::read(dir.path().join("y.safetensors")).unwrap();
    let y = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let logits = y.tensor("logits").unwrap();
    assert_eq!((logits.dtype(), logits.shape()), (Dtype::F32, &[1, 1000][..]));
}

#[test]
fn bad_configs_inputs_and_weights_are_refused_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    write_input(&dir.path().join("x.safetensors"), &[1, 3, 160, 160]);

    let err = refusal(&infer(dir.path(), &MIN.replacen("3,", "4,", 1), &[]));
    assert!(err.contains("c.json") && err.contains("ks[0] = 4: kernel size must be 3, 5 or 7"), "{err}");
    let err = refusal(&infer(dir.path(), r#"{"ks": [3], "e": 3}"#, &[]));
    assert!(err.contains("c.json"), "{err}");

    // The input does not match the config's resolution.
    let err = refusal(&infer(dir.path(), &MIN.replace("[160]", "[192]"), &[]));
    assert!(err.contains("x.safetensors") && err.contains("expected [1, 3, 192, 192]"), "{err}");

    let err = refusal(&infer(dir.path(), MIN, &["--weights", "/nonexistent/w.safetensors"]));
    assert!(err.contains("/nonexistent/w.safetensors: cannot read the file"), "{err}");
    std::fs::write(dir.path().join("w.safetensors"), b"not weights").unwrap();
    let w = dir.path().join("w.safetensors");
    let err = refusal(&infer(dir.path(), MIN, &["--weights", w.to_str().unwrap()]));
    assert!(err.contains("not a safetensors file"), "{err}");
}
