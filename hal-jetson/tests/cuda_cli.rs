//! `dynofa infer --backend cuda` (and with `--tune`, `--persistent`) and `dynofa run --backend
//! cuda`: logits, and a managed run, on a machine with an NVIDIA GPU; elsewhere (no driver, no GPU,
//! a build without CUDA) a non-zero exit with a one-line reason, never a panic.

use std::process::Command;

use dynofa_core::lut::Unit;
use safetensors::tensor::{Dtype, TensorView};

mod lut_support;

const MIN: &str = r#"{"ks": [3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3], "e": [3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3], "d": [2,2,2,2,2], "r": [160]}"#;

#[test]
fn cuda_backend_runs_or_refuses_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let bytes: Vec<u8> = (0..3 * 160 * 160).flat_map(|i| ((i % 7) as f32 * 0.1).to_le_bytes()).collect();
    let view = TensorView::new(Dtype::F32, vec![1, 3, 160, 160], &bytes).unwrap();
    std::fs::write(dir.path().join("x.safetensors"), safetensors::serialize([("input", view)], None).unwrap()).unwrap();
    std::fs::write(dir.path().join("c.json"), MIN).unwrap();
    for extra in [&[][..], &["--tune"], &["--persistent"]] {
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
    // The smallest and the largest sub-network with CPU latencies only, so that the run times them
    // on the GPU at start-up (a GPU frame is mostly launches: the second has more of them, depth 4,
    // as well as more work, so timing cannot swap the two); the first target fits both, the second
    // neither; a GPU stream contends part-way.
    let lut = lut_support::write_lut(dir.path(), &[(3, 3, 2, 160, 70.0), (7, 6, 4, 224, 80.0)], Unit::Cpu);
    let schedule = dir.path().join("schedule.json");
    std::fs::write(
        &schedule,
        r#"{"duration_s": 3, "events": [{"at_s": 0, "target_ms": 1000}, {"at_s": 1, "contend": 1},
            {"at_s": 2, "target_ms": 0.0001}]}"#,
    )
    .unwrap();
    let on_gpu = dir.path().join("on-gpu.json");
    std::fs::write(&on_gpu, r#"{"name": "seer", "target_ms": 1000, "unit": "gpu"}"#).unwrap();
    // `dynofa run ARGS` with its trace and plot named NAME: its output, or (after checking the
    // refusal) nothing where the CUDA engine cannot start.
    let run = |name: &str, args: &[&std::ffi::OsStr]| {
        let out = Command::new(env!("CARGO_BIN_EXE_dynofa"))
            .arg("run")
            .args(args)
            .arg("--lut")
            .arg(&lut)
            .arg("--trace")
            .arg(dir.path().join(format!("{name}.csv")))
            .arg("--plot")
            .arg(dir.path().join(format!("{name}.svg")))
            .env("RUST_BACKTRACE", "1")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr).trim().to_string();
        assert!(!err.contains("panicked"), "{err}");
        if !out.status.success() {
            refused_in_one_line(&err);
            return None;
        }
        Some(String::from_utf8_lossy(&out.stdout).into_owned())
    };
    // A model file that names the GPU needs the CUDA engine as much as --backend cuda does.
    run("named", &["--duration-s".as_ref(), "1".as_ref(), "--model".as_ref(), on_gpu.as_os_str()]);
    let Some(text) =
        run("trace", &["--backend".as_ref(), "cuda".as_ref(), "--schedule".as_ref(), schedule.as_os_str()])
    else {
        return;
    };
    println!("CUDA present: {text}");
    assert!(text.contains("engine: cuda engine") && text.contains("has no gpu latencies"), "{text}");
    assert!(text.contains("contention on: 1 stream of the largest sub-network"), "{text}");
    let trace = std::fs::read_to_string(dir.path().join("trace.csv")).unwrap();
    let entries: Vec<&str> = trace.lines().skip(1).map(|l| l.split(',').nth(7).unwrap()).collect();
    // The most accurate under the loose target, the fastest under the tight one.
    assert!(entries.len() > 100 && entries.first() == Some(&"1") && entries.last() == Some(&"0"), "{entries:?}");
}
