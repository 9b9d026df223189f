//! `dynofa profile --ops`: per-op tables in OFA's YAML form with a provenance header, readable by
//! the per-op table reader, and its check mode.

use std::process::Command;

use dynofa_core::SubnetConfig;
use dynofa_core::predictor::SUPERNET;
use dynofa_hal_jetson::design::latency::OpTables;

fn profile(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_dynofa")).arg("profile").args(args).output().unwrap()
}

#[test]
fn per_op_tables_with_a_header_and_a_check() {
    let dir = tempfile::tempdir().unwrap();
    let ops = dir.path().join("ops");
    let ops_arg = ops.to_str().unwrap();
    let timing = ["--warmup", "0", "--reps", "1", "--threads", "1", "--note", "profile_cli test"];
    let run = profile(&[&["--ops", ops_arg, "--resolutions", "160"][..], &timing].concat());
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));

    let text = std::fs::read_to_string(ops.join("160_lookup_table.yaml")).unwrap();
    let header: Vec<&str> = text.lines().take_while(|l| l.starts_with('#')).collect();
    assert_eq!(header.len(), 3, "{text}");
    assert!(header[2].starts_with("# profile_cli test; cpu engine, 1 threads"), "{}", header[2]);
    let tables = OpTables::load_dir(&ops).unwrap();
    let l = tables.network(&SUPERNET, &SubnetConfig::uniform(3, 3, 2, 160)).unwrap();
    assert!(l.mean_ms > 0.0);

    let check = profile(&["--ops", ops_arg, "--resolutions", "160", "--check"]);
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stderr));
    let stale = profile(&["--ops", ops_arg, "--resolutions", "160,176", "--check"]);
    let stderr = String::from_utf8_lossy(&stale.stderr);
    assert!(!stale.status.success() && stderr.contains("no latency table for resolution 176"), "{stderr}");
    let none = profile(&["--ops", ops_arg]);
    assert!(String::from_utf8_lossy(&none.stderr).contains("--ops needs resolutions"));
}
