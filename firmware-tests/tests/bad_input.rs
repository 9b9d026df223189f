//! Every row of the README's "Bad input" table for files, sysfs states, a machine without a GPU and
//! missing permissions: the real loaders and the Linux platform are given the bad input, and the
//! message they give must be the row's (paths under the test's temp folder are written as the table
//! writes them: files by name, sysfs from `/`). The command-line rows are in
//! `hal-jetson/tests/bad_input_cli.rs`, which runs the `dynofa` binary.

mod bad_input_support;
#[path = "../../hal-jetson/tests/sysfs_support/mod.rs"]
mod sysfs_support;

use std::fs;
use std::path::Path;

use bad_input_support::{assert_every_row_tested, assert_row};
use dynofa_core::SubnetConfig;
use dynofa_hal_jetson::design::latency::OpTables;
use dynofa_hal_jetson::linux::Platform;
use dynofa_hal_jetson::linux::fake::FakeBoard;
use dynofa_hal_sim::{Scenario, load_lut};
use dynofa_kernels::SupernetWeights;
use sysfs_support::{CHILD_ROOT, child, is_root, tree};

const TESTS: [&str; 13] = [
    "lut_of_another_version",
    "lut_entry_outside_the_supernet",
    "lut_cut_short",
    "lut_missing",
    "weights_truncated",
    "weights_torch_checkpoint",
    "per_op_table_missing_an_op",
    "scenario_share_out_of_range",
    "scenario_unknown_field",
    "sysfs_no_gpu",
    "sysfs_unparsable_clock",
    "sysfs_missing_node",
    "sysfs_no_permission",
];

#[test]
fn every_row_has_a_test() {
    assert_every_row_tested("bad_input", &TESTS);
}

/// `message` with the temp folder `dir` taken out: a file in it by its name, a sysfs path from `/`.
fn relative(message: &str, dir: &Path) -> String {
    let dir = dir.to_str().expect("a UTF-8 temp path");
    message.replace(&format!("{dir}/sys"), "/sys").replace(&format!("{dir}/"), "").replace(dir, "/")
}

/// A temp folder holding `name` with `content`.
fn file(name: &str, content: &[u8]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join(name), content).unwrap();
    dir
}

fn check(test: &str, message: &str, dir: &Path) {
    assert_row(&format!("bad_input::{test}"), &relative(message, dir));
}

/// A one-entry LUT with `edit` applied to its text.
fn lut_text(edit: impl Fn(String) -> String) -> String {
    let ks = [3; 20].map(|v| v.to_string()).join(",");
    edit(format!(
        r#"{{"version":1,"width":1.2,"source":"","entries":[{{"ks":[{ks}],"e":[{ks}],"d":[2,2,2,2,2],"r":160,"top1":70.0,"top1_source":"measured","latency":[{{"unit":"gpu","freq_khz":0,"mean_ms":20.0,"std_ms":1.0}}]}}]}}"#
    ))
}

fn lut_error(text: &str) -> (String, tempfile::TempDir) {
    let dir = file("bad.json", text.as_bytes());
    let e = load_lut(&dir.path().join("bad.json")).unwrap_err();
    (e.to_string(), dir)
}

#[test]
fn a_valid_lut_text_loads() {
    // The edits below make this text bad in one way each.
    let dir = file("good.json", lut_text(|t| t).as_bytes());
    assert_eq!(load_lut(&dir.path().join("good.json")).unwrap().len(), 1);
}

#[test]
fn lut_of_another_version() {
    let (e, dir) = lut_error(&lut_text(|t| t.replace("\"version\":1", "\"version\":7")));
    check("lut_of_another_version", &e, dir.path());
}

#[test]
fn lut_entry_outside_the_supernet() {
    let (e, dir) = lut_error(&lut_text(|t| t.replacen("\"ks\":[3,", "\"ks\":[4,", 1)));
    check("lut_entry_outside_the_supernet", &e, dir.path());
}

#[test]
fn lut_cut_short() {
    let text = lut_text(|t| t);
    let (e, dir) = lut_error(&text[..text.len() / 2]);
    check("lut_cut_short", &e, dir.path());
}

#[test]
fn lut_missing() {
    let dir = tempfile::tempdir().unwrap();
    let e = load_lut(&dir.path().join("missing.json")).unwrap_err();
    check("lut_missing", &e.to_string(), dir.path());
}

/// A safetensors file of one f32 tensor `name` of `n` values, as written by `safetensors`.
fn safetensors(name: &str, n: usize) -> Vec<u8> {
    let header = format!(r#"{{"{name}":{{"dtype":"F32","shape":[{n}],"data_offsets":[0,{}]}}}}"#, 4 * n);
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend(header.bytes());
    out.extend(std::iter::repeat_n(0u8, 4 * n));
    out
}

#[test]
fn weights_truncated() {
    let bytes = safetensors("first_conv.conv.weight", 648);
    let dir = file("w.safetensors", &bytes[..bytes.len() - 1000]);
    let e = SupernetWeights::load(dir.path().join("w.safetensors")).unwrap_err();
    check("weights_truncated", &e.to_string(), dir.path());
}

#[test]
fn weights_torch_checkpoint() {
    // torch.save writes a zip archive.
    let dir = file("ofa.pth", b"PK\x03\x04\x14\x00\x00\x00\x08\x00archive/data.pkl");
    let e = SupernetWeights::load(dir.path().join("ofa.pth")).unwrap_err();
    check("weights_torch_checkpoint", &e.to_string(), dir.path());
}

#[test]
fn per_op_table_missing_an_op() {
    let dir = file(
        "160_lookup_table.json",
        br#"{"Logits-input:1x1x1536-output:1000": {"count": 10, "mean": 0.1, "std": 0.01}}"#,
    );
    let tables = OpTables::load_dir(dir.path()).unwrap();
    let e = tables.network(&dynofa_core::Supernet::W1_2, &SubnetConfig::uniform(3, 3, 2, 160)).unwrap_err();
    check("per_op_table_missing_an_op", &e.to_string(), dir.path());
}

fn scenario_error(text: &str) -> (String, tempfile::TempDir) {
    let dir = file("s.json", text.as_bytes());
    let e = Scenario::load(dir.path().join("s.json").to_str().unwrap()).unwrap_err();
    (e.to_string(), dir)
}

const SCENARIO: &str = r#"{"name":"s","seed":1,"duration_s":10,"models":[{"name":"a","unit":"gpu","target_ms":50}]"#;

#[test]
fn scenario_share_out_of_range() {
    let (e, dir) =
        scenario_error(&format!(r#"{SCENARIO},"events":[{{"at_s":1,"share":{{"unit":"gpu","value":1.5}}}}]}}"#));
    check("scenario_share_out_of_range", &e, dir.path());
}

#[test]
fn scenario_unknown_field() {
    let (e, dir) = scenario_error(&format!(r#"{SCENARIO},"duration":5}}"#));
    check("scenario_unknown_field", &e, dir.path());
}

/// The line of `dynofa platform`'s report on `root` that starts with `prefix`.
fn report_line(root: &Path, prefix: &str) -> String {
    let report = Platform::probe(root).report();
    report.lines().find(|l| l.starts_with(prefix)).unwrap_or_else(|| panic!("no {prefix:?} in:\n{report}")).into()
}

#[test]
fn sysfs_no_gpu() {
    let dir = tree(FakeBoard::X86AcpiCpufreq);
    check("sysfs_no_gpu", &report_line(dir.path(), "gpu:"), dir.path());
}

const GPU_NODE: &str = "sys/devices/17000000.gv11b/devfreq/17000000.gv11b";

#[test]
fn sysfs_unparsable_clock() {
    let dir = tree(FakeBoard::XavierNxJetPack5);
    fs::write(dir.path().join(GPU_NODE).join("max_freq"), "fast\n").unwrap();
    check("sysfs_unparsable_clock", &report_line(dir.path(), "gpu:"), dir.path());
}

#[test]
fn sysfs_missing_node() {
    let dir = tree(FakeBoard::XavierNxJetPack5);
    fs::remove_file(dir.path().join(GPU_NODE).join("available_frequencies")).unwrap();
    check("sysfs_missing_node", &report_line(dir.path(), "gpu:"), dir.path());
}

/// Without write access to the DVFS files (and not root), DVFS is unavailable and says why. As root,
/// the check runs in a child that drops to `nobody`, where the kernel's permission check is real.
#[test]
fn sysfs_no_permission() {
    if let Some(root) = std::env::var_os(CHILD_ROOT) {
        let root = Path::new(&root);
        check("sysfs_no_permission", &report_line(root, "gpu dvfs:"), root);
        return;
    }
    let dir = tree(FakeBoard::XavierNxJetPack5);
    if is_root() {
        let out = child("sysfs_no_permission", dir.path(), Some((65534, 65534))).output().unwrap();
        let log = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success() && log.contains("1 passed"), "the child as nobody failed:\n{log}");
    } else {
        for f in ["min_freq", "max_freq"] {
            let path = dir.path().join(GPU_NODE).join(f);
            let mut mode = fs::metadata(&path).unwrap().permissions();
            mode.set_readonly(true);
            fs::set_permissions(&path, mode).unwrap();
        }
        let out = child("sysfs_no_permission", dir.path(), None).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    }
}
