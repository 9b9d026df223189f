//! `dynofa infer --backend cuda` (and with `--tune`) and `dynofa run --backend cuda`: logits, and
//! a managed run, on a machine with an NVIDIA GPU; elsewhere (no driver, no GPU, a build without
//! CUDA) a non-zero exit with a one-line reason, never a panic.

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
        refused_in_one_line(&err);
    }
}

/// A refusal: one line, with the reason where there is no driver.
fn refused_in_one_line(err: &str) {
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    if !dynofa_hal_jetson::gpu::driver_present() {
        let why = if cfg!(feature = "cuda") { "no CUDA driver: libcuda.so was not found" } else { "without CUDA" };
        assert!(err.contains(why), "{err}");
    }
}

#[test]
fn cuda_eval_scores_the_images_or_refuses_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    // Two classes of one image each, solid colours.
    for (class, rgb) in [("a", [250, 10, 10]), ("b", [10, 10, 250])] {
        std::fs::create_dir(dir.path().join(class)).unwrap();
        image::RgbImage::from_pixel(64, 48, image::Rgb(rgb)).save(dir.path().join(class).join("x.png")).unwrap();
    }
    std::fs::write(dir.path().join("c.json"), MIN).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_dynofa"))
        .args(["eval", "--backend", "cuda", "--images"])
        .arg(dir.path())
        .arg("--config")
        .arg(dir.path().join("c.json"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).trim().to_string();
    assert!(!err.contains("panicked"), "{err}");
    if !out.status.success() {
        return refused_in_one_line(&err);
    }
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("2 images x 1 sub-networks") && text.contains("cuda engine"), "{text}");
}

#[test]
fn cuda_profile_writes_a_gpu_lut_or_refuses_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let subnets = dir.path().join("subnets.json");
    std::fs::write(&subnets, format!("[{MIN}]")).unwrap();
    let out_lut = dir.path().join("host-gpu.json");
    let profile = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_dynofa"))
            .args(["profile", "--backend", "cuda", "--reps", "3", "--subnets"])
            .arg(&subnets)
            .arg("--out")
            .arg(&out_lut)
            .args(extra)
            .output()
            .unwrap()
    };
    // Per-op tables are the CPU engine's, with or without a GPU.
    let ops = profile(&["--ops", dir.path().join("ops").to_str().unwrap()]);
    let err = String::from_utf8_lossy(&ops.stderr).trim().to_string();
    assert!(!ops.status.success() && err.lines().count() == 1 && err.contains("drop --backend cuda"), "{err}");
    let out = profile(&[]);
    let err = String::from_utf8_lossy(&out.stderr).trim().to_string();
    assert!(!err.contains("panicked"), "{err}");
    if !out.status.success() {
        return refused_in_one_line(&err);
    }
    let lut = std::fs::read_to_string(&out_lut).unwrap();
    assert!(lut.contains(r#""unit": "gpu""#) && lut.contains("cuda engine"), "{lut}");
}

#[test]
fn cuda_run_manages_the_gpu_or_refuses_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    // Two small sub-networks with CPU latencies only, so that the run times them on the GPU at
    // start-up; the first target fits both, the second neither; a GPU stream contends part-way.
    let entry = |k: u8, e: u8, d: u8, r: u16, top1: f32| {
        format!(
            r#"{{"ks":{:?},"e":{:?},"d":{:?},"r":{r},"top1":{top1},"top1_source":"predicted","latency":[{{"unit":"cpu","freq_khz":0,"mean_ms":1.0,"std_ms":0.1}}]}}"#,
            [k; 20], [e; 20], [d; 5]
        )
    };
    let lut = dir.path().join("small.json");
    // The smallest and the largest sub-network: a GPU frame is mostly launches, so the second has
    // more of them (depth 4) as well as more work, and timing cannot swap the two.
    let entries = [entry(3, 3, 2, 160, 70.0), entry(7, 6, 4, 224, 80.0)].join(",");
    std::fs::write(&lut, format!(r#"{{"version":1,"width":1.2,"source":"test","entries":[{entries}]}}"#)).unwrap();
    let schedule = dir.path().join("schedule.json");
    std::fs::write(
        &schedule,
        r#"{"duration_s": 3, "events": [{"at_s": 0, "target_ms": 1000}, {"at_s": 1, "contend": 1},
            {"at_s": 2, "target_ms": 0.0001}]}"#,
    )
    .unwrap();
    // A model file that names the GPU needs the CUDA engine as much as --backend cuda does.
    let on_gpu = dir.path().join("on-gpu.json");
    std::fs::write(&on_gpu, r#"{"name": "seer", "target_ms": 1000, "unit": "gpu"}"#).unwrap();
    let named = Command::new(env!("CARGO_BIN_EXE_dynofa"))
        .args(["run", "--duration-s", "1", "--model"])
        .arg(&on_gpu)
        .arg("--lut")
        .arg(&lut)
        .arg("--trace")
        .arg(dir.path().join("named.csv"))
        .arg("--plot")
        .arg(dir.path().join("named.svg"))
        .output()
        .unwrap();
    let named_err = String::from_utf8_lossy(&named.stderr).trim().to_string();
    assert!(!named_err.contains("panicked"), "{named_err}");
    if !named.status.success() {
        refused_in_one_line(&named_err);
    }
    let out = Command::new(env!("CARGO_BIN_EXE_dynofa"))
        .args(["run", "--backend", "cuda", "--lut"])
        .arg(&lut)
        .arg("--schedule")
        .arg(&schedule)
        .arg("--trace")
        .arg(dir.path().join("trace.csv"))
        .arg("--plot")
        .arg(dir.path().join("plot.svg"))
        .env("RUST_BACKTRACE", "1")
        .output()
        .unwrap();
    let (text, err) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr).trim().to_string());
    assert!(!err.contains("panicked"), "{err}");
    if !out.status.success() {
        return refused_in_one_line(&err);
    }
    println!("CUDA present: {text}");
    assert!(text.contains("engine: cuda engine") && text.contains("has no gpu latencies"), "{text}");
    assert!(text.contains("contention on: 1 stream of the largest sub-network"), "{text}");
    let trace = std::fs::read_to_string(dir.path().join("trace.csv")).unwrap();
    let entries: Vec<&str> = trace.lines().skip(1).map(|l| l.split(',').nth(7).unwrap()).collect();
    // The most accurate under the loose target, the fastest under the tight one.
    assert!(entries.len() > 100 && entries.first() == Some(&"1") && entries.last() == Some(&"0"), "{entries:?}");
}
