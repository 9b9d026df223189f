//! Original clock settings come back: on drop, on an explicit restore (once), and when the process gets
//! SIGINT or SIGTERM (the second one under `stop_on_signal`, whose first only sets the program's flag);
//! settings another tool (nvpmodel, jetson_clocks) changed meanwhile are reported and left to that tool.

mod sysfs_support;

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use dynofa_core::hal::FrequencyControl;
use dynofa_hal_jetson::linux::fake::FakeBoard;
use dynofa_hal_jetson::linux::{ClockOverride, Platform, restore};
use sysfs_support::{CHILD_ROOT, Running, child, read, signal_once_ready, tree, write};

const GPU: &str = "sys/class/devfreq/17000000.gv11b";
const POLICY2: &str = "sys/devices/system/cpu/cpufreq/policy2";
/// What the signal test's child prints once pinned.
const PINNED: &str = "dynofa-test-child-pinned";
/// What the graceful child prints once its stop flag is set.
const STOPPING: &str = "dynofa-test-child-stopping";

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

#[test]
fn under_stop_on_signal_the_first_signal_sets_the_flag_and_the_second_restores() {
    if let Ok(root) = std::env::var(CHILD_ROOT) {
        // In the child: ask for the flag, pin, and wait for the first signal, then for the second.
        let stop = Arc::new(AtomicBool::new(false));
        restore::stop_on_signal(Arc::clone(&stop)).unwrap();
        let _platform = pinned(Path::new(&root));
        println!("{PINNED}");
        let deadline = Instant::now() + Duration::from_secs(20);
        while !stop.load(Ordering::SeqCst) {
            assert!(Instant::now() < deadline, "no signal within 20 s");
            std::thread::sleep(Duration::from_millis(5));
        }
        println!("{STOPPING}");
        std::thread::sleep(Duration::from_secs(20));
        panic!("no second signal within 20 s");
    }
    let dir = tree(FakeBoard::XavierNxJetPack5);
    let root = dir.path();
    let mut running = Running::start(child(
        "under_stop_on_signal_the_first_signal_sets_the_flag_and_the_second_restores",
        root,
        None,
    ));
    running.wait_for(PINNED);
    running.signal("INT");
    running.wait_for(STOPPING);
    // The first signal is the program's to act on: the clocks are still pinned.
    assert_eq!(read(root, &format!("{GPU}/max_freq")), "510000000");
    assert_eq!(read(root, &format!("{POLICY2}/scaling_governor")), "userspace");
    running.signal("INT");
    let status = running.wait();
    assert_eq!(status.signal(), Some(2), "the second signal ends the child as SIGINT would: {status}");
    assert_original(root);
}
