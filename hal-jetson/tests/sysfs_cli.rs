//! `dynofa platform` on fake trees: the report, a pin that is restored, a refused pin, and a held pin
//! restored by Ctrl-C.

mod sysfs_support;

use std::os::unix::process::ExitStatusExt;
use std::process::Command;

use dynofa_hal_jetson::linux::fake::FakeBoard;
use sysfs_support::{read, signal_once_ready, tree};

const GPU_MAX: &str = "sys/class/devfreq/17000000.gv11b/max_freq";

fn dynofa(root: &std::path::Path, extra: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_dynofa"));
    cmd.args(["platform", "--sample-ms", "0", "--root"]).arg(root).args(extra);
    cmd
}

#[test]
fn platform_reports_and_pins_then_restores() {
    let dir = tree(FakeBoard::XavierNxJetPack5);
    let out = dynofa(dir.path(), &["--pin-gpu", "510000", "--pin-cpu", "1190400"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    for needle in [
        "board:    Jetson Xavier NX (NVIDIA Jetson Xavier NX Developer Kit), L4T R35.4.1 (JetPack 5)",
        "gpu dvfs: ready",
        "gpu pinned to 510000 kHz (reads back 510000 kHz)",
        "cpu pinned to 1190400 kHz",
        "restored the original clock settings",
    ] {
        assert!(stdout.contains(needle), "{needle:?} missing from:\n{stdout}");
    }
    assert_eq!(read(dir.path(), GPU_MAX), "1109250000");
}

#[test]
fn platform_refuses_a_frequency_that_is_not_an_operating_point() {
    let dir = tree(FakeBoard::OrinNanoJetPack6);
    let out = dynofa(dir.path(), &["--pin-gpu", "500000"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("500000 kHz is not an operating point of the gpu"), "{stderr}");
}

#[test]
fn platform_on_plain_linux_says_why_there_is_no_gpu_dvfs() {
    let dir = tree(FakeBoard::X86AcpiCpufreq);
    let out = dynofa(dir.path(), &[]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(stdout.contains("gpu:      unavailable: no GPU devfreq node"), "{stdout}");
    assert!(stdout.contains("cpu:      cpufreq acpi-cpufreq (4 policies"), "{stdout}");
    // What the CUDA engine would find, whatever the fake tree says: the GPU, or why not.
    let cuda = stdout.lines().find(|l| l.starts_with("cuda:     ")).unwrap_or_else(|| panic!("no cuda line: {stdout}"));
    if !dynofa_hal_jetson::gpu::driver_present() {
        assert!(cuda.contains("unavailable: ") && cuda.contains("CUDA"), "{cuda}");
    } else {
        println!("{cuda}");
    }
}

#[test]
fn a_held_pin_is_restored_by_ctrl_c() {
    let dir = tree(FakeBoard::XavierNxJetPack5);
    let status = signal_once_ready(dynofa(dir.path(), &["--pin-gpu", "306000", "--hold"]), "holding the clocks", "INT");
    assert_eq!(status.signal(), Some(2), "{status}");
    assert_eq!(read(dir.path(), GPU_MAX), "1109250000");
}
