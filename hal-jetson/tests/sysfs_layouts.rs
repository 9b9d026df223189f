//! The Linux platform on fake trees of a Xavier NX (JetPack 5), an Orin Nano (JetPack 6), plain x86 Linux
//! and a container without sysfs: what is found, pinning, read-back, loads.

mod sysfs_support;

use std::fs;
use std::os::unix::fs::symlink;

use dynofa_core::hal::{Error as _, ErrorKind, FrequencyControl, LoadSensor};
use dynofa_hal_jetson::linux::fake::FakeBoard;
use dynofa_hal_jetson::linux::{BoardKind, CpuPinMode, Platform, SysfsError};
use sysfs_support::{read, tree, write};

const XAVIER_GPU: &str = "sys/class/devfreq/17000000.gv11b";

#[test]
fn xavier_nx_on_jetpack5() {
    let dir = tree(FakeBoard::XavierNxJetPack5);
    let root = dir.path();
    let mut p = Platform::probe(root);
    assert_eq!(p.board.kind, BoardKind::XavierNx);
    assert_eq!(p.board.l4t.as_ref().and_then(|l| l.jetpack()), Some(5));
    assert!(p.dvfs_ready());

    let gpu = p.gpu.as_mut().unwrap();
    assert_eq!(gpu.name(), "17000000.gv11b", "the GPU, not the VIC beside it");
    assert_eq!(gpu.operating_points().len(), 15);
    assert_eq!((gpu.operating_points()[0], *gpu.operating_points().last().unwrap()), (114_750, 1_109_250));
    assert_eq!(gpu.current_khz().unwrap(), 1_109_250);
    gpu.set_khz(510_000).unwrap();
    assert_eq!(read(root, &format!("{XAVIER_GPU}/min_freq")), "510000000");
    assert_eq!(read(root, &format!("{XAVIER_GPU}/max_freq")), "510000000");
    assert_eq!(gpu.current_khz().unwrap(), 510_000);
    gpu.set_khz(1_109_250).unwrap();
    assert_eq!(gpu.current_khz().unwrap(), 1_109_250);
    assert_eq!(gpu.pinned_khz(), Some(1_109_250));
    assert!(gpu.overrides().unwrap().is_empty());
    assert!(gpu.restore().unwrap().is_empty());
    assert_eq!(read(root, &format!("{XAVIER_GPU}/min_freq")), "114750000");
    assert_eq!(read(root, &format!("{XAVIER_GPU}/max_freq")), "1109250000");

    let cpu = p.cpu.as_mut().unwrap();
    assert_eq!(cpu.policies().len(), 3);
    assert_eq!(cpu.policies()[1].cpus(), "2 3");
    assert_eq!(cpu.mode(), CpuPinMode::Userspace);
    assert_eq!(cpu.operating_points().len(), 25);
    cpu.set_khz(1_190_400).unwrap();
    for policy in ["policy0", "policy2", "policy4"] {
        let dir = format!("sys/devices/system/cpu/cpufreq/{policy}");
        assert_eq!(read(root, &format!("{dir}/scaling_governor")), "userspace");
        assert_eq!(read(root, &format!("{dir}/scaling_setspeed")), "1190400");
    }
    assert_eq!(cpu.current_khz().unwrap(), 1_190_400);
    cpu.restore().unwrap();
    assert_eq!(read(root, "sys/devices/system/cpu/cpufreq/policy4/scaling_governor"), "schedutil");

    assert_eq!(p.gpu_load.as_mut().unwrap().load_permille().unwrap(), 137);
    assert!(p.gpu_load.as_ref().unwrap().path().ends_with("sys/devices/gpu.0/load"));
    let emc = p.emc.as_ref().unwrap().read().unwrap();
    assert_eq!((emc.rate_khz, emc.load_permille), (1_600_000, Some(250)));

    // 300 of 1000 new jiffies busy (user 100 + system 200, idle 700).
    let cpu_load = p.cpu_load.as_mut().unwrap();
    write(root, "proc/stat", "cpu  4805 356 784 3699876 23 23 0 0 0 0\n");
    assert_eq!(cpu_load.load_permille().unwrap(), 300);
    // No time passed: the previous load stands.
    assert_eq!(cpu_load.load_permille().unwrap(), 300);

    let report = p.report();
    for needle in [
        "Jetson Xavier NX",
        "L4T R35.4.1 (JetPack 5)",
        "17000000.gv11b",
        "3 policies",
        "ready",
        "1600000 kHz, 25.0% busy",
    ] {
        assert!(report.contains(needle), "{needle:?} missing from:\n{report}");
    }
}

#[test]
fn orin_nano_on_jetpack6() {
    let dir = tree(FakeBoard::OrinNanoJetPack6);
    let root = dir.path();
    let mut p = Platform::probe(root);
    assert_eq!(p.board.kind, BoardKind::OrinNano);
    assert_eq!(p.board.l4t.as_ref().and_then(|l| l.jetpack()), Some(6));

    let gpu = p.gpu.as_mut().unwrap();
    assert_eq!(gpu.name(), "17000000.gpu");
    assert_eq!(gpu.operating_points(), [306_000, 408_000, 510_000, 612_000, 624_750]);
    gpu.set_khz(306_000).unwrap();
    assert_eq!(gpu.current_khz().unwrap(), 306_000);
    gpu.set_khz(624_750).unwrap();
    assert_eq!(read(root, "sys/class/devfreq/17000000.gpu/min_freq"), "624750000");
    p.gpu = Err(SysfsError::NoGpu { dir: root.into() });
    assert_eq!(read(root, "sys/class/devfreq/17000000.gpu/min_freq"), "306000000", "restored on drop");

    let cpu = p.cpu.as_mut().unwrap();
    assert_eq!(cpu.policies().iter().map(|p| p.cpus()).collect::<Vec<_>>(), ["0 1 2 3", "4 5"]);
    assert_eq!(*cpu.operating_points().last().unwrap(), 1_510_400);
    cpu.set_khz(729_600).unwrap();
    assert_eq!(read(root, "sys/devices/system/cpu/cpufreq/policy4/scaling_setspeed"), "729600");

    // Orin's load file sits on the devfreq node's device.
    assert_eq!(p.gpu_load.as_mut().unwrap().load_permille().unwrap(), 250);
    // No debugfs: the EMC is not reported, and nothing else minds.
    let emc = p.emc.as_ref().unwrap_err();
    assert_eq!(emc.kind(), ErrorKind::Unsupported);
    assert!(emc.to_string().contains("debugfs"), "{emc}");
    assert!(p.report().contains("emc:      not reported"));
}

#[test]
fn plain_x86_with_acpi_cpufreq() {
    let dir = tree(FakeBoard::X86AcpiCpufreq);
    let root = dir.path();
    let mut p = Platform::probe(root);
    assert_eq!(p.board.kind, BoardKind::GenericLinux);
    assert_eq!(p.board.model, None);
    let gpu = p.gpu.as_ref().unwrap_err();
    assert!(matches!(gpu, SysfsError::NoGpu { .. }));
    assert_eq!(gpu.kind(), ErrorKind::Unsupported);
    assert!(p.gpu_load.is_err());
    assert!(!p.dvfs_ready());

    // Per-CPU cpufreq folders, no userspace governor: pinned through the limits.
    let cpu = p.cpu.as_mut().unwrap();
    assert_eq!(cpu.policies().len(), 4);
    assert_eq!(cpu.mode(), CpuPinMode::Limits);
    assert_eq!(cpu.operating_points(), [800_000, 1_600_000, 2_200_000, 2_800_000, 3_400_000, 3_401_000]);
    cpu.set_khz(1_600_000).unwrap();
    for n in 0..4 {
        assert_eq!(read(root, &format!("sys/devices/system/cpu/cpu{n}/cpufreq/scaling_min_freq")), "1600000");
        assert_eq!(read(root, &format!("sys/devices/system/cpu/cpu{n}/cpufreq/scaling_max_freq")), "1600000");
    }
    assert_eq!(cpu.current_khz().unwrap(), 1_600_000);
    cpu.set_khz(3_401_000).unwrap();
    cpu.restore().unwrap();
    assert_eq!(read(root, "sys/devices/system/cpu/cpu3/cpufreq/scaling_min_freq"), "800000");
    assert_eq!(read(root, "sys/devices/system/cpu/cpu3/cpufreq/scaling_max_freq"), "3401000");
    assert_eq!(read(root, "sys/devices/system/cpu/cpu3/cpufreq/scaling_governor"), "schedutil");

    assert!(p.cpu_load.is_ok());
    let report = p.report();
    assert!(
        report.contains("generic Linux") && report.contains("gpu:      unavailable: no GPU devfreq node"),
        "{report}"
    );
}

#[test]
fn intel_pstate_lists_no_operating_points() {
    let dir = tree(FakeBoard::X86IntelPstate);
    let p = Platform::probe(dir.path());
    let e = p.cpu.as_ref().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unsupported);
    assert!(e.to_string().contains("intel_pstate") && e.to_string().contains("scaling_available_frequencies"), "{e}");
}

#[test]
fn a_container_without_sysfs_reports_every_reason_and_keeps_running() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = Platform::probe(dir.path());
    assert_eq!(p.board.kind, BoardKind::GenericLinux);
    for e in [p.gpu.as_ref().err(), p.cpu.as_ref().err(), p.gpu_load.as_ref().err(), p.emc.as_ref().err()] {
        let e = e.expect("nothing to find");
        assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}");
        assert!(e.path().is_some_and(|p| p.starts_with(dir.path())), "{e} names a file under the root");
    }
    assert!(p.cpu_load.as_ref().unwrap_err().to_string().contains("proc/stat"));
    assert!(p.report().contains("cpu:      unavailable: "));
}

#[test]
fn refused_frequencies_and_failed_read_back_leave_the_clock_as_it_was() {
    let dir = tree(FakeBoard::XavierNxJetPack5);
    let root = dir.path();
    let mut p = Platform::probe(root);
    let gpu = p.gpu.as_mut().unwrap();
    let e = gpu.set_khz(500_000).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    assert_eq!(read(root, &format!("{XAVIER_GPU}/max_freq")), "1109250000", "nothing written");

    // A clock stuck at its maximum (jetson_clocks or nvpmodel holding it): the pin does not read back.
    let cur = root.join(format!("{XAVIER_GPU}/cur_freq"));
    fs::remove_file(&cur).unwrap();
    fs::write(&cur, "1109250000\n").unwrap();
    let e = gpu.set_khz(510_000).unwrap_err();
    assert!(matches!(e, SysfsError::ReadBack { pinned_khz: 510_000, found_khz: 1_109_250, .. }), "{e}");
    assert_eq!(e.kind(), ErrorKind::Device);
    assert!(e.to_string().contains("nvpmodel"), "{e}");
    assert_eq!(read(root, &format!("{XAVIER_GPU}/min_freq")), "114750000", "original limits back");
    assert_eq!(read(root, &format!("{XAVIER_GPU}/max_freq")), "1109250000");
    assert_eq!(gpu.pinned_khz(), None);

    // After a good pin, a failed one goes back to the previous pin.
    fs::remove_file(&cur).unwrap();
    symlink("max_freq", &cur).unwrap();
    gpu.set_khz(854_250).unwrap();
    fs::remove_file(&cur).unwrap();
    fs::write(&cur, "854250000\n").unwrap();
    assert!(gpu.set_khz(306_000).is_err());
    assert_eq!(read(root, &format!("{XAVIER_GPU}/min_freq")), "854250000");
    assert_eq!(read(root, &format!("{XAVIER_GPU}/max_freq")), "854250000");
    assert_eq!(gpu.pinned_khz(), Some(854_250));
}
