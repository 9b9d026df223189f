//! `dynofa calibrate-bn`, `dynofa eval` and `dynofa import-ofa` end to end on the committed
//! synthetic image folder and checkpoints (`kernels/tests/fixtures`, see its README): the BN
//! statistics are re-estimated from the images, and the measured top-1/top-5 must equal the
//! counts that `ofa` + torchvision give with their own statistics (the labels were chosen from
//! the reference's predictions, so the expected accuracy is known by construction).

use std::path::{Path, PathBuf};
use std::process::Command;

use dynofa_core::{SubnetConfig, Supernet};
use serde_json::Value;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../kernels/tests/fixtures")
}

fn dynofa(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_dynofa")).args(args).output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "dynofa {}: {stderr}", args.join(" "));
    stdout.into_owned()
}

fn json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

#[test]
fn calibrate_then_eval_measures_the_reference_accuracy() {
    let dir = tempfile::tempdir().unwrap();
    let (images, lut) = (fixtures().join("images"), fixtures().join("eval/lut.json"));
    let path = |p: &Path| p.to_str().unwrap().to_string();
    let bn = dir.path().join("bn");
    std::fs::create_dir(&bn).unwrap();
    // The reference ran on the seeded w1.0 weights: the default of `--lut` on a w1.0 LUT, but
    // `--config` has no width, so calibrate-bn gets them as a file.
    let weights = dir.path().join("w1.0.safetensors");
    dynofa(&["gen-weights", "--width", "1.0", "--out", &path(&weights)]);
    // Each case's statistics with its own image count, batch and seed, named as `--lut` names them.
    let cases = json(&fixtures().join("calib/cases.json"));
    for case in cases.as_array().unwrap() {
        let cfg_file = dir.path().join("config.json");
        std::fs::write(&cfg_file, case["config"].to_string()).unwrap();
        let cfg = SubnetConfig::from_json(case["config"].to_string().as_bytes(), &Supernet::W1_0).unwrap();
        let out = bn.join(format!("{}.safetensors", cfg.id()));
        let [count, batch, seed] = ["count", "batch", "seed"].map(|k| case[k].to_string());
        let stdout = dynofa(&[
            "calibrate-bn",
            "--images",
            &path(&images),
            "--config",
            &path(&cfg_file),
            "--weights",
            &path(&weights),
            "--count",
            &count,
            "--batch",
            &batch,
            "--seed",
            &seed,
            "--out",
            &path(&out),
            "--threads",
            "2",
        ]);
        assert!(stdout.contains(&format!("46 BN layers from {count} images")), "{stdout}");
    }
    let results = dir.path().join("results.json");
    let measured_lut = dir.path().join("lut.json");
    let stdout = dynofa(&[
        "eval",
        "--images",
        &path(&images),
        "--labels",
        &path(&fixtures().join("labels.json")),
        "--lut",
        &path(&lut),
        "--bn",
        &path(&bn),
        "--write-lut",
        &path(&measured_lut),
        "--json",
        &path(&results),
        "--threads",
        "2",
    ]);
    assert!(stdout.contains("images/s"), "{stdout}");
    let reference = json(&fixtures().join("eval/reference.json"));
    let results = json(&results);
    let measured = json(&measured_lut);
    let n = results["images"].as_u64().unwrap();
    assert_eq!(n, 8);
    for (k, case) in reference["cases"].as_array().unwrap().iter().enumerate() {
        let got = &results["subnets"][k];
        assert_eq!(
            (got["correct1"].as_u64(), got["correct5"].as_u64()),
            (case["top1"].as_u64(), case["top5"].as_u64()),
            "case {}: top-1/top-5 counts differ from ofa's",
            case["name"]
        );
        let entry = &measured["entries"][k];
        assert_eq!(entry["top1_source"], "measured");
        let want = 100.0 * case["top1"].as_f64().unwrap() / n as f64;
        assert!((entry["top1"].as_f64().unwrap() - want).abs() < 1e-3, "{entry}");
    }
}

#[test]
fn import_ofa_refuses_what_is_not_a_supernet_unless_asked() {
    let dir = tempfile::tempdir().unwrap();
    let small = fixtures().join("checkpoints/small.pt");
    let out = dir.path().join("small.safetensors");
    let run = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_dynofa"))
            .args(["import-ofa", small.to_str().unwrap(), out.to_str().unwrap()])
            .args(extra)
            .output()
            .unwrap()
    };
    let refused = run(&[]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success() && stderr.contains("--any writes it anyway"), "{stderr}");
    assert!(!out.exists(), "nothing is written when the check fails");
    let written = run(&["--any"]);
    assert!(written.status.success());
    let stdout = String::from_utf8_lossy(&written.stdout);
    assert!(stdout.contains("wrote 75 tensors") && stdout.contains("2 legacy"), "{stdout}");
}

/// The reference environment's Python, when it is set up.
fn reference_python() -> Option<PathBuf> {
    let py = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/ref/.venv/bin/python");
    py.exists().then_some(py)
}

#[test]
fn an_imported_ofa_checkpoint_runs_in_dynofa_infer() {
    let Some(py) = reference_python() else {
        println!(
            "skipped: scripts/ref/.venv is not set up (scripts/ref/setup-venv.sh); kernels' import tests cover the formats"
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    dynofa(&["gen-weights", "--width", "1.0", "--out", &p("w.safetensors")]);
    // An OFA checkpoint as released: torch's legacy format, legacy key names.
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/ref/ofa_ref.py");
    let status = Command::new(py)
        .arg(script)
        .args(["write-checkpoint", "--weights", &p("w.safetensors"), "--out", &p("ofa.pth")])
        .args(["--legacy-format", "--legacy-names"])
        .status()
        .unwrap();
    assert!(status.success());
    let stdout = dynofa(&["import-ofa", &p("ofa.pth"), &p("imported.safetensors")]);
    assert!(stdout.contains("OFA MobileNetV3 w1"), "{stdout}");
    let mut config = [0u8; 512];
    let len = SubnetConfig::uniform(5, 4, 3, 128).to_json(&mut config).unwrap();
    std::fs::write(p("config.json"), &config[..len]).unwrap();
    let input: Vec<u8> = (0..3 * 128 * 128).flat_map(|i| ((i % 255) as f32 / 100.0 - 1.2).to_le_bytes()).collect();
    let view = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![1, 3, 128, 128], &input).unwrap();
    std::fs::write(p("input.safetensors"), safetensors::serialize([("input", view)], None).unwrap()).unwrap();
    let logits = |weights: &str, out: &str| {
        let (w, c, i, o) = (p(weights), p("config.json"), p("input.safetensors"), p(out));
        dynofa(&["infer", "--weights", &w, "--config", &c, "--input", &i, "--output", &o, "--threads", "2"]);
        std::fs::read(o).unwrap()
    };
    assert_eq!(logits("imported.safetensors", "a.safetensors"), logits("w.safetensors", "b.safetensors"));
}
