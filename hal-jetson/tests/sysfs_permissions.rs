//! A tree this process may not write: DVFS is reported unavailable (which file, why, what to do) and
//! everything else still works; with the udev rule's group the same tree is writable.
//!
//! CI runs as root, and root writes files whatever their mode, so a root parent runs the check in a child
//! that it drops to an unprivileged user (`nobody`), where the kernel's permission check is real. A
//! non-root parent takes the write bits away instead.

mod sysfs_support;

use std::fs;
use std::os::unix::fs::{PermissionsExt, chown};
use std::path::{Path, PathBuf};

use dynofa_core::hal::{Error as _, ErrorKind, FrequencyControl, LoadSensor};
use dynofa_hal_jetson::linux::Platform;
use dynofa_hal_jetson::linux::fake::FakeBoard;
use sysfs_support::{CHILD_ROOT, child, is_root, read, tree};

const NOBODY: u32 = 65534;
/// The group the udev rule gives write access to (any group id serves in a fake tree).
const DVFS_GROUP: u32 = 4242;
const EXPECT: &str = "DYNOFA_SYSFS_TEST_EXPECT";

/// The files the Jetson controls write (what the udev rule opens up).
fn dvfs_files(root: &Path) -> Vec<PathBuf> {
    let mut files = vec![
        root.join("sys/class/devfreq/17000000.gv11b/min_freq"),
        root.join("sys/class/devfreq/17000000.gv11b/max_freq"),
    ];
    for policy in ["policy0", "policy2", "policy4"] {
        for f in ["scaling_governor", "scaling_setspeed", "scaling_min_freq", "scaling_max_freq"] {
            files.push(root.join(format!("sys/devices/system/cpu/cpufreq/{policy}/{f}")));
        }
    }
    files
}

/// In the child: probe the tree and check what the parent expects.
fn check_in_child(root: &Path, expect: &str) {
    let mut p = Platform::probe(root);
    let gpu = p.gpu.as_mut().expect("the GPU node is readable");
    let cpu = p.cpu.as_mut().expect("the policies are readable");
    match expect {
        "denied" => {
            for (unit, status, points) in
                [("gpu", gpu.dvfs(), gpu.operating_points().len()), ("cpu", cpu.dvfs(), cpu.operating_points().len())]
            {
                let e = status.expect_err("DVFS must be unavailable");
                assert_eq!(e.kind(), ErrorKind::PermissionDenied, "{unit}: {e}");
                let msg = e.to_string();
                assert!(msg.contains(root.to_str().unwrap()), "{unit}: the message names the file: {msg}");
                assert!(msg.contains("group dynofa") && msg.contains("99-dynofa-dvfs.rules"), "{unit}: the fix: {msg}");
                assert_eq!(points, 0, "{unit}: no operating points without write access, as the trait asks");
            }
            let e = gpu.set_khz(510_000).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::PermissionDenied);
            assert!(e.to_string().contains("min_freq"), "{e}");
            assert_eq!(cpu.set_khz(1_190_400).unwrap_err().kind(), ErrorKind::PermissionDenied);
            // Everything that only reads still works.
            assert_eq!(gpu.current_khz().unwrap(), 1_109_250);
            assert_eq!(gpu.available_khz().len(), 15);
            assert_eq!(cpu.current_khz().unwrap(), 1_907_200);
            assert_eq!(p.gpu_load.as_mut().unwrap().load_permille().unwrap(), 137);
            assert!(p.cpu_load.as_mut().unwrap().load_permille().is_ok());
            assert!(!p.dvfs_ready());
            let report = p.report();
            assert!(report.contains("gpu dvfs: unavailable: cannot write"), "{report}");
        }
        "allowed" => {
            gpu.set_khz(510_000).unwrap();
            cpu.set_khz(1_190_400).unwrap();
            assert_eq!(gpu.current_khz().unwrap(), 510_000);
            assert!(p.dvfs_ready());
        }
        other => panic!("unknown expectation {other}"),
    }
}

/// Run `check_in_child` in a child: as `nobody` (with `group` as its group) when this process is root,
/// else as this user.
fn run_child(root: &Path, expect: &str, group: u32) {
    let creds = is_root().then_some((NOBODY, group));
    let out = child("no_write_permission_makes_dvfs_unavailable_and_the_rest_runs", root, creds)
        .env(EXPECT, expect)
        .output()
        .expect("start the child");
    let log = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "child ({expect}) failed: {}\n{log}", out.status);
    assert!(log.contains("1 passed"), "the child ran the check: {log}");
}

#[test]
fn no_write_permission_makes_dvfs_unavailable_and_the_rest_runs() {
    if let Ok(root) = std::env::var(CHILD_ROOT) {
        return check_in_child(Path::new(&root), &std::env::var(EXPECT).unwrap());
    }
    let dir = tree(FakeBoard::XavierNxJetPack5);
    let root = dir.path();
    let files = dvfs_files(root);

    // As on a board without the udev rule: root's files, writable by root only.
    let mode = if is_root() { 0o644 } else { 0o444 };
    for f in &files {
        fs::set_permissions(f, fs::Permissions::from_mode(mode)).unwrap();
    }
    run_child(root, "denied", NOBODY);
    assert_eq!(read(root, "sys/class/devfreq/17000000.gv11b/max_freq"), "1109250000", "nothing written");

    // What the udev rule does: the files belong to the DVFS group, which may write them.
    for f in &files {
        if is_root() {
            chown(f, None, Some(DVFS_GROUP)).unwrap();
        }
        fs::set_permissions(f, fs::Permissions::from_mode(0o664)).unwrap();
    }
    run_child(root, "allowed", DVFS_GROUP);
    assert_eq!(read(root, "sys/class/devfreq/17000000.gv11b/min_freq"), "114750000", "restored when the child ended");
}
