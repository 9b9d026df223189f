//! `dynofa search` with one unit's latency from per-op tables and the other's from a LUT of
//! measured sub-networks (through a model fitted on it): the written LUT carries both, its check
//! mode agrees, and a LUT without measurements at the asked point is refused with the points it has.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use dynofa_core::lut::{OperatingPoint, Unit};
use dynofa_core::predictor::SUPERNET;
use dynofa_hal_jetson::design::fit::FittedModel;
use dynofa_hal_jetson::design::latency::OpTables;
use dynofa_hal_jetson::design::lutgen::read_lut;
use dynofa_hal_jetson::design::workspace_path;

const GPU_KHZ: u32 = 1_109_250;
const CPU_KHZ: u32 = 1_907_200;

fn gpu_tables() -> PathBuf {
    workspace_path("../shared/data/dynamic-ofa/latency_table@jetson_GPU")
}

/// The committed Xavier NX LUT: 20 sub-networks with (table-derived) CPU latencies to fit on.
fn measured_lut() -> PathBuf {
    workspace_path("luts/xavier-nx.json")
}

fn search(out: &Path, cpu_khz: u32, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dynofa"))
        .arg("search")
        .arg("--unit")
        .arg(format!("gpu={}@{GPU_KHZ}", gpu_tables().display()))
        .arg("--unit")
        .arg(format!("cpu={}@{cpu_khz}", measured_lut().display()))
        .args(["--population", "20", "--generations", "4", "--constraints", "3", "--threads", "1", "--out"])
        .arg(out)
        .args(extra)
        .output()
        .unwrap()
}

#[test]
fn search_constrained_by_a_measured_lut() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("lut.json");
    let run = search(&out, CPU_KHZ, &[]);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stderr}");
    assert!(stderr.contains("cpu: latency model fitted on 20 sub-networks"), "{stderr}");
    assert!(stderr.contains("held out (leave-one-out)"), "{stderr}");

    let cpu = OperatingPoint { unit: Unit::Cpu, freq_khz: CPU_KHZ };
    let gpu = OperatingPoint { unit: Unit::Gpu, freq_khz: GPU_KHZ };
    let model = FittedModel::from_lut(&measured_lut(), cpu).unwrap();
    let tables = OpTables::load_dir(&gpu_tables()).unwrap();
    let lut = read_lut(&out).unwrap();
    assert!(lut.source.contains("cpu latency fitted on xavier-nx.json"), "{}", lut.source);
    assert!(!lut.pareto(cpu).is_empty() && !lut.pareto(gpu).is_empty());
    for e in lut.entries() {
        // CPU: the fitted model's mean with the LUT's relative spread; GPU: the table sum.
        let c = e.latency_at(cpu).unwrap();
        let want = model.mean_ms(&SUPERNET, &e.config);
        assert!((f64::from(c.mean_ms) - want).abs() < 1e-4 * want, "{c:?} vs {want}");
        assert!((f64::from(c.std_ms) - model.spread * want).abs() < 1e-4 * want);
        let g = e.latency_at(gpu).unwrap().mean_ms;
        assert!((f64::from(g) - tables.network(&SUPERNET, &e.config).unwrap().mean_ms).abs() < 1e-3);
    }
    let check = search(&out, CPU_KHZ, &["--check"]);
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stderr));
}

#[test]
fn a_lut_without_the_operating_point_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("lut.json");
    let run = search(&out, 1, &[]);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(!run.status.success() && !out.exists());
    assert!(stderr.contains("0 sub-networks measured at cpu@1"), "{stderr}");
    assert!(stderr.contains(&format!("(cpu@{CPU_KHZ}, gpu@{GPU_KHZ})")), "{stderr}");
}
