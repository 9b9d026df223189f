//! Original clock settings come back: on drop, on an explicit restore (once), and when the process gets
//! SIGINT or SIGTERM; settings another tool (nvpmodel, jetson_clocks) changed meanwhile are reported and
//! left to that tool.

mod sysfs_support;

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::time::Duration;

use dynofa_core::hal::FrequencyControl;
use dynofa_hal_jetson::linux::fake::FakeBoard;
use dynofa_hal_jetson::linux::{ClockOverride, Platform};
use sysfs_support::{CHILD_ROOT, child, read, signal_once_ready, tree, write};

const GPU: &str = "sys/class/devfreq/17000000.gv11b";
const POLICY2: &str = "sys/devices/system/cpu/cpufreq/policy2";
/// What the signal test's child prints once pinned.
const PINNED: &str = "dynofa-test-child-pinned";

/// Pin both units of a Xavier NX tree.
fn pinned(root: &Path) -> Platform {
    let mut p = Platform::probe(root);
    p.gpu.as_mut().unwrap().set_khz(510_000).unwrap();
    p.cpu.as_mut().unwrap().set_khz(1_190_400).unwrap();
    assert_eq!(read(root, &format!("{GPU}/max_freq")), "510000000");
    assert_eq!(read(root, &format!("{POLICY2}/scaling_governor")), "userspace");
    p
}

fn assert_original(root: &Path) {
    assert_eq!(read(root, &format!("{GPU}/min_freq")), "114750000");
    assert_eq!(read(root, &format!("{GPU}/max_freq")), "1109250000");
    for policy in ["policy0", "policy2", "policy4"] {
        assert_eq!(read(root, &format!("sys/devices/system/cpu/cpufreq/{policy}/scaling_governor")), "schedutil");
    }
}

#[test]
fn dropping_the_controls_restores_the_original_settings() {
    let dir = tree(FakeBoard::XavierNxJetPack5);
    drop(pinned(dir.path()));
    assert_original(dir.path());
}

#[test]
fn restore_happens_once() {
    let dir = tree(FakeBoard::XavierNxJetPack5);
    let root = dir.path();
    let mut p = pinned(root);
    let gpu = p.gpu.as_mut().unwrap();
    assert!(gpu.restore().unwrap().is_empty());
    assert_eq!(read(root, &format!("{GPU}/min_freq")), "114750000");
    assert_eq!(read(root, &format!("{GPU}/max_freq")), "1109250000");
    // The user sets a limit after dynofa let go: neither a second restore nor the drop touches it.
    write(root, &format!("{GPU}/max_freq"), "854250000");
    assert!(gpu.restore().unwrap().is_empty());
    drop(p);
    assert_eq!(read(root, &format!("{GPU}/max_freq")), "854250000");
}

#[test]
fn nvpmodel_changing_clocks_underneath_is_reported_and_left_alone() {
    let dir = tree(FakeBoard::XavierNxJetPack5);
    let root = dir.path();
    let mut p = pinned(root);

    // nvpmodel switches power mode: it rewrites the GPU's max_freq and a CPU governor.
    write(root, &format!("{GPU}/max_freq"), "854250000");
    write(root, &format!("{POLICY2}/scaling_governor"), "schedutil");

    let gpu = p.gpu.as_mut().unwrap();
    let found = gpu.overrides().unwrap();
    let max = root.join(format!("{GPU}/max_freq"));
    assert!(
        found.contains(&ClockOverride {
            unit: gpu.unit(),
            path: max,
            wrote: "510000000".into(),
            found: "854250000".into()
        }),
        "{found:?}"
    );
    assert!(
        found.iter().any(|o| o.path.ends_with("cur_freq") && o.found == "854250 kHz"),
        "the clock moved: {found:?}"
    );
    assert!(found[0].to_string().contains("nvpmodel"));

    let cpu = p.cpu.as_mut().unwrap();
    let found = cpu.overrides().unwrap();
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].path.ends_with("policy2/scaling_governor") && found[0].found == "schedutil");

    // Restoring puts back only what is still dynofa's.
    let left = p.gpu.as_mut().unwrap().restore().unwrap();
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(read(root, &format!("{GPU}/min_freq")), "114750000", "min was dynofa's");
    assert_eq!(read(root, &format!("{GPU}/max_freq")), "854250000", "max is nvpmodel's");
    drop(p);
    assert_eq!(read(root, "sys/devices/system/cpu/cpufreq/policy0/scaling_governor"), "schedutil");
}

/// Run the child that pins and waits, signal it with `signal`, and check the tree afterwards.
fn signal_restores(signal: &str, number: i32) {
    let dir = tree(FakeBoard::XavierNxJetPack5);
    let root = dir.path();
    let status = signal_once_ready(child("a_signal_restores_the_original_settings", root, None), PINNED, signal);
    assert_eq!(status.signal(), Some(number), "the child ends as the signal would: {status}");
    assert_original(root);
}

#[test]
fn a_signal_restores_the_original_settings() {
    if let Ok(root) = std::env::var(CHILD_ROOT) {
        // In the child: pin, say so, and wait for the parent's signal.
        let _platform = pinned(Path::new(&root));
        println!("{PINNED}");
        std::thread::sleep(Duration::from_secs(20));
        panic!("no signal within 20 s");
    }
    signal_restores("INT", 2);
    signal_restores("TERM", 15);
}
