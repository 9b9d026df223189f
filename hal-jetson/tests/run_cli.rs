//! `dynofa run` end to end on small sub-networks: a target change switches, the trace and the plot are
//! written, two models share the CPU, clock events pin the CPU through the Linux platform (a fake tree)
//! and restore it, and Ctrl-C still ends with the summary and the files (and the clock restored).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use dynofa_core::lut::Unit;
use dynofa_hal_jetson::linux::fake::{self, FakeBoard};

mod lut_support;

/// Small sub-networks as a LUT with GPU latencies only, so that the run times them here at start-up:
/// (kernel, expand, depth, resolution, top-1).
const SUBNETS: [(u8, u8, u8, u16, f32); 3] = [(3, 3, 2, 160, 70.0), (5, 4, 2, 176, 74.0), (7, 6, 3, 192, 78.0)];

fn dynofa(dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_dynofa"));
    cmd.arg("run").arg("--lut").arg(lut_support::write_lut(dir, &SUBNETS, Unit::Gpu)).args(["--threads", "1"]);
    cmd.arg("--trace").arg(dir.join("trace.csv")).arg("--plot").arg(dir.join("plot.svg")).args(args);
    cmd.stdin(Stdio::null());
    cmd
}

fn ok(out: &Output) -> String {
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "dynofa run failed:\n{text}");
    text
}

/// The trace as rows of named columns.
fn trace(dir: &Path) -> Vec<std::collections::HashMap<String, String>> {
    let text = std::fs::read_to_string(dir.join("trace.csv")).unwrap();
    let mut lines = text.lines();
    let header: Vec<String> = lines.next().unwrap().split(',').map(String::from).collect();
    lines.map(|l| header.iter().cloned().zip(l.split(',').map(String::from)).collect()).collect()
}

fn plot_written(dir: &Path) {
    let svg = std::fs::read_to_string(dir.join("plot.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>") && svg.contains("latency (ms)"));
    assert!(svg.contains("<!-- made by `dynofa run` on "), "no provenance in the plot");
}

#[test]
fn a_short_run_switches_on_a_target_change_and_writes_trace_and_plot() {
    let dir = tempfile::tempdir().unwrap();
    // Everything fits the first target and nothing the second: the most accurate, then the fastest.
    let schedule = dir.path().join("schedule.json");
    std::fs::write(
        &schedule,
        r#"{"duration_s": 2.0, "events": [{"at_s": 0, "target_ms": 100000}, {"at_s": 1.0, "target_ms": 0.001}]}"#,
    )
    .unwrap();
    let out = dynofa(dir.path(), &["--schedule", schedule.to_str().unwrap()]).output().unwrap();
    let text = ok(&out);
    assert!(text.contains("has no cpu latencies: timing its 3 sub-networks here"), "{text}");
    assert!(text.contains("classifier: target 0.001 ms: switch to"), "{text}");
    assert!(text.contains("summary: 2.0 s, 1 model") && text.contains("trace: ") && text.contains("plot:  "), "{text}");

    let rows = trace(dir.path());
    assert!(rows.len() >= 4, "{} frames", rows.len());
    let t = |r: &&std::collections::HashMap<String, String>| r["t_ms"].parse::<f64>().unwrap();
    // Split by the target each frame ran under: a frame's time stamp can fall a fraction of a
    // millisecond after the 1.0 s change that it was planned before (measured: 1000.124 ms).
    let (before, after): (Vec<_>, Vec<_>) = rows.iter().partition(|r| r["target_ms"] == "100000");
    assert!(!before.is_empty() && !after.is_empty());
    assert!(after.iter().all(|r| r["target_ms"] == "0.001"), "{after:?}");
    // The new target took effect at the schedule's 1.0 s, within a frame or two.
    let first_after = after.iter().map(t).fold(f64::INFINITY, f64::min);
    assert!((first_after - 1000.0).abs() < 100.0, "first frame under the new target at {first_after} ms");
    // Entries are in LUT order: 2 is the most accurate, 0 the fastest.
    assert!(before.iter().all(|r| r["entry"] == "2" && r["top1"] == "78"), "{before:?}");
    assert!(after.iter().all(|r| r["entry"] == "0" && r["met"] == "0"), "{after:?}");
    // The switch was timed (activate), and the extra columns are there.
    let switch: f64 = after[0]["switch_us"].parse().unwrap();
    assert!(switch > 0.0 && switch < 10_000.0, "{switch} us");
    assert_eq!(rows[0]["frame"], "0");
    assert_eq!(rows[0]["contenders"], "0");
    plot_written(dir.path());

    // Bad input is a message, not a panic.
    std::fs::write(&schedule, r#"{"events": [{"at_s": 1}]}"#).unwrap();
    let out = dynofa(dir.path(), &["--schedule", schedule.to_str().unwrap()]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("give exactly one of"));
    // Contention on a unit no model runs on is refused, naming the fix.
    std::fs::write(&schedule, r#"{"events": [{"at_s": 1, "contend": 1, "unit": "gpu"}]}"#).unwrap();
    let out = dynofa(dir.path(), &["--schedule", schedule.to_str().unwrap()]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("contention on the gpu needs a model on it"), "{err}");
}

#[test]
fn two_models_share_the_cpu_under_one_plan_and_contention_is_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let model = |name: &str, prio: u8| {
        let path = dir.path().join(format!("{name}.json"));
        std::fs::write(
            &path,
            format!(r#"{{"name": "{name}", "priority": {prio}, "period_ms": 40, "target_ms": 100000}}"#),
        )
        .unwrap();
        path.display().to_string()
    };
    let (a, b) = (model("tracker", 2), model("tagger", 1));
    let schedule = dir.path().join("schedule.json");
    std::fs::write(&schedule, r#"{"duration_s": 1.5, "events": [{"at_s": 0.5, "contend": 1}]}"#).unwrap();
    let out =
        dynofa(dir.path(), &["--model", &a, "--model", &b, "--schedule", schedule.to_str().unwrap()]).output().unwrap();
    let text = ok(&out);
    assert!(text.contains("summary: 1.5 s, 2 models") && text.contains("contention on: 1 busy thread"), "{text}");
    let rows = trace(dir.path());
    for (k, name) in [(0, "tracker"), (1, "tagger")] {
        let mine: Vec<_> = rows.iter().filter(|r| r["model"] == k.to_string()).collect();
        assert!(mine.len() >= 3 && mine.iter().all(|r| r["name"] == name), "{name}: {} frames", mine.len());
    }
    let contended = rows.iter().find(|r| r["contenders"] == "1").expect("frames under contention");
    // One busy thread beside two engine threads takes a third of the CPU when all are runnable.
    assert!((contended["share"].parse::<f64>().unwrap() - 1.0 / 3.0).abs() < 1e-6);
    plot_written(dir.path());
}

/// A fake Xavier NX tree at `dir/root` and the schedule `json` at `dir/schedule.json`: (root, schedule).
fn fake_board(dir: &Path, json: &str) -> (PathBuf, PathBuf) {
    let root = dir.join("root");
    std::fs::create_dir(&root).unwrap();
    fake::create(FakeBoard::XavierNxJetPack5, &root).unwrap();
    let schedule = dir.join("schedule.json");
    std::fs::write(&schedule, json).unwrap();
    (root, schedule)
}

/// The first CPU policy's governor in the tree at `root`.
fn governor(root: &Path) -> String {
    let path = root.join("sys/devices/system/cpu/cpufreq/policy0/scaling_governor");
    std::fs::read_to_string(path).unwrap().trim().to_owned()
}

#[test]
fn clock_events_pin_the_cpu_through_the_platform_and_it_is_restored() {
    let dir = tempfile::tempdir().unwrap();
    let (root, schedule) = fake_board(
        dir.path(),
        r#"{"duration_s": 1.2, "events": [{"at_s": 0, "target_ms": 100000}, {"at_s": 0.4, "cpu_khz": 1190400},
            {"at_s": 0.5, "gpu_khz": 510000}]}"#,
    );
    let (original, original_gpu) = (governor(&root), fake::gpu_limits(&root).unwrap());
    let out = dynofa(dir.path(), &["--root", root.to_str().unwrap(), "--schedule", schedule.to_str().unwrap()])
        .output()
        .unwrap();
    let text = ok(&out);
    assert!(text.contains("platform: Jetson Xavier NX") && text.contains("dvfs ready"), "{text}");
    assert!(text.contains("cpu pinned to 1190400 kHz"), "{text}");
    // A schedule that pins the GPU has its clock probed and pinned, even with the CPU engine.
    assert!(text.contains("gpu clock: ") && text.contains("gpu pinned to 510000 kHz"), "{text}");
    let rows = trace(dir.path());
    let clocks: Vec<&str> = rows.iter().map(|r| r["clock_mhz"].as_str()).collect();
    assert!(clocks.first().is_some_and(|c| *c != "1190.4") && clocks.last() == Some(&"1190.4"), "{clocks:?}");
    // The pins ended with the run.
    assert_eq!(governor(&root), original);
    assert_eq!(fake::gpu_limits(&root).unwrap(), original_gpu);

    // Without cpufreq the event is skipped with the reason and the run goes on.
    let bare = dir.path().join("bare");
    std::fs::create_dir(&bare).unwrap();
    let out = dynofa(dir.path(), &["--root", bare.to_str().unwrap(), "--schedule", schedule.to_str().unwrap()])
        .output()
        .unwrap();
    let text = ok(&out);
    assert!(text.contains("cpu dvfs: unavailable") && text.contains("cpu clock event skipped"), "{text}");
    assert!(text.contains("gpu dvfs: unavailable") && text.contains("gpu clock event skipped"), "{text}");
}

/// Start `cmd`, wait for a line that is `ready` and a little more, send Ctrl-C, and return what it printed
/// after that; it must end well and soon.
fn ctrl_c_after(mut cmd: Command, ready: impl Fn(&str) -> bool) -> String {
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines().map_while(Result::ok);
    let mut seen = Vec::new();
    for line in lines.by_ref() {
        let started = ready(&line);
        seen.push(line);
        if started {
            break;
        }
    }
    assert!(seen.last().is_some_and(|l| ready(l)), "{seen:?}");
    std::thread::sleep(Duration::from_millis(700));
    let sent = Instant::now();
    assert!(Command::new("kill").args(["-s", "INT", &child.id().to_string()]).status().unwrap().success());
    let rest: Vec<String> = lines.collect();
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}: {rest:?}");
    assert!(sent.elapsed() < Duration::from_secs(10));
    let text = rest.join("\n");
    assert!(text.contains("stopped at") && text.contains("summary: "), "{text}");
    text
}

#[test]
fn ctrl_c_ends_the_run_with_its_summary_trace_and_plot() {
    let dir = tempfile::tempdir().unwrap();
    ctrl_c_after(dynofa(dir.path(), &["--duration-s", "60", "--contend", "0"]), |l| l.starts_with("run: "));
    assert!(!trace(dir.path()).is_empty());
    plot_written(dir.path());
}

#[test]
fn ctrl_c_on_a_pinned_cpu_still_writes_the_trace_and_restores_the_clock() {
    let dir = tempfile::tempdir().unwrap();
    let (root, schedule) = fake_board(
        dir.path(),
        r#"{"duration_s": 60, "events": [{"at_s": 0, "target_ms": 100000}, {"at_s": 0, "cpu_khz": 1190400}]}"#,
    );
    let original = governor(&root);
    let cmd = dynofa(
        dir.path(),
        &["--root", root.to_str().unwrap(), "--schedule", schedule.to_str().unwrap(), "--contend", "0"],
    );
    ctrl_c_after(cmd, |l| l.ends_with("cpu pinned to 1190400 kHz"));
    let rows = trace(dir.path());
    assert!(rows.last().is_some_and(|r| r["clock_mhz"] == "1190.4"), "the trace ran pinned");
    plot_written(dir.path());
    assert_eq!(governor(&root), original, "the pin ended with the run");
}
