//! The command-line rows of the README's "Bad input" table: `dynofa` runs with each bad value, must
//! fail, and what it prints on stderr (its lines joined by spaces) must be the row's message. The
//! other rows are checked in `firmware-tests/tests/bad_input.rs`.

#[path = "../../firmware-tests/tests/bad_input_support/mod.rs"]
mod bad_input_support;
mod sysfs_support;

use std::path::Path;
use std::process::Command;

use bad_input_support::{assert_every_row_tested, assert_row};
use dynofa_hal_jetson::linux::fake::FakeBoard;
use sysfs_support::tree;

const TESTS: [&str; 4] = ["value_not_a_number", "pin_not_an_operating_point", "config_list_too_short", "file_missing"];

#[test]
fn every_row_has_a_test() {
    assert_every_row_tested("bad_input_cli", &TESTS);
}

/// Run `dynofa args` in `dir`; it must fail. Its stderr, lines trimmed and joined by spaces.
fn dynofa(dir: &Path, args: &[&str]) -> String {
    // A user's shell does not ask for backtraces (anyhow would print one).
    let out = Command::new(env!("CARGO_BIN_EXE_dynofa"))
        .args(args)
        .current_dir(dir)
        .env_remove("RUST_BACKTRACE")
        .env_remove("RUST_LIB_BACKTRACE")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "dynofa {args:?} succeeded: {stderr}");
    stderr.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(" ")
}

fn check(test: &str, dir: &Path, args: &[&str]) {
    assert_row(&format!("bad_input_cli::{test}"), &dynofa(dir, args));
}

#[test]
fn value_not_a_number() {
    let dir = tempfile::tempdir().unwrap();
    check("value_not_a_number", dir.path(), &["platform", "--sample-ms", "soon"]);
}

#[test]
fn pin_not_an_operating_point() {
    let dir = tree(FakeBoard::OrinNanoJetPack6);
    check(
        "pin_not_an_operating_point",
        dir.path(),
        &["platform", "--root", ".", "--sample-ms", "0", "--pin-gpu", "500000"],
    );
}

#[test]
fn config_list_too_short() {
    let dir = tempfile::tempdir().unwrap();
    let ks = [3; 20].map(|v| v.to_string()).join(",");
    let config = format!(r#"{{"ks": [{ks}], "e": [{ks}], "d": [2, 2, 2, 2], "r": 160}}"#);
    std::fs::write(dir.path().join("net.json"), config).unwrap();
    check("config_list_too_short", dir.path(), &["predict", "--config", "net.json"]);
}

#[test]
fn file_missing() {
    let dir = tempfile::tempdir().unwrap();
    check("file_missing", dir.path(), &["predict", "--config", "net.json"]);
}
