//! `dynofa figures` end to end, with a small cloud: every SVG and CSV is written, Figure 3's Pareto
//! front is non-dominated (by its own points and by every random sub-network), the headline
//! comparison is printed, and `--check` passes on what a run wrote and fails on a changed file.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const FIGURES: [&str; 7] = ["fig1", "fig3", "fig4", "fig5", "fig6", "fig7", "fig8"];

fn dynofa(args: &[&str], out: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dynofa"))
        .args(["figures", "--cloud", "300", "--out"])
        .arg(out)
        .args(args)
        .output()
        .expect("dynofa runs")
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("dynofa-figures-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// (latency, top-1) of Figure 3's rows of one unit and kind.
fn rows(csv: &str, unit: &str, kind: &str) -> Vec<(f64, f64)> {
    csv.lines()
        .filter(|l| !l.starts_with('#'))
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f[0] == unit && f[1] == kind).then(|| (f[2].parse().unwrap(), f[3].parse().unwrap()))
        })
        .collect()
}

/// Whether `a` dominates `b`: no slower, no less accurate, better in one.
fn dominates(a: (f64, f64), b: (f64, f64)) -> bool {
    a.0 <= b.0 && a.1 >= b.1 && (a.0 < b.0 || a.1 > b.1)
}

#[test]
fn every_figure_is_written_and_the_front_is_non_dominated() {
    let out = scratch("all");
    let run = dynofa(&[], &out);
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(run.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&run.stderr));
    for name in FIGURES {
        let svg = std::fs::read_to_string(out.join(format!("{name}.svg"))).unwrap();
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"), "{name}.svg");
        assert!(svg.contains("Produced by") && svg.contains("dynofa figures --platform sim"), "{name}.svg caption");
        let csv = std::fs::read_to_string(out.join(format!("{name}.csv"))).unwrap();
        assert!(csv.starts_with("# ") && csv.contains("\n# produced by `dynofa figures"), "{name}.csv header");
        let data = csv.lines().filter(|l| !l.starts_with('#')).count();
        assert!(data > 2, "{name}.csv has {data} lines of data");
    }

    let fig3 = std::fs::read_to_string(out.join("fig3.csv")).unwrap();
    for unit in ["gpu", "cpu"] {
        let (front, cloud) = (rows(&fig3, unit, "front"), rows(&fig3, unit, "cloud"));
        assert!(front.len() >= 5 && cloud.len() == 300, "{unit}: {} front, {} cloud", front.len(), cloud.len());
        for (i, &f) in front.iter().enumerate() {
            for (j, &g) in front.iter().enumerate() {
                assert!(i == j || !dominates(g, f), "{unit}: front point {g:?} dominates front point {f:?}");
            }
            if let Some(c) = cloud.iter().find(|&&c| dominates(c, f)) {
                panic!("{unit}: random sub-network {c:?} dominates front point {f:?}");
            }
        }
    }
    assert!(stdout.contains("headline comparison with AutoSlim-MNasNet"), "{stdout}");
    assert!(stdout.contains("MACs: up to") && stdout.contains("x ("), "{stdout}");

    // --check: what a run wrote is up to date; a changed file is named.
    let check = dynofa(&["--check"], &out);
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stderr));
    let fig5 = out.join("fig5.csv");
    let text = std::fs::read_to_string(&fig5).unwrap();
    std::fs::write(&fig5, text.replacen("dynofa,", "dynofa-old,", 1)).unwrap();
    let check = dynofa(&["--check"], &out);
    let stderr = String::from_utf8_lossy(&check.stderr);
    assert!(!check.status.success() && stderr.contains("stale figures") && stderr.contains("fig5.csv"), "{stderr}");
    std::fs::remove_dir_all(&out).unwrap();
}

#[test]
fn missing_inputs_name_the_file_and_the_fix() {
    let out = scratch("bad");
    let run = dynofa(&["--lut", "/nonexistent/lut.json"], &out);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(!run.status.success() && stderr.contains("/nonexistent/lut.json"), "{stderr}");
    let bad = out.join("points.csv");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(&bad, "network,family\n").unwrap();
    let run = dynofa(&["--published", bad.to_str().unwrap()], &out);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(!run.status.success() && stderr.contains("points.csv:1: expected the header line"), "{stderr}");
    let run = dynofa(&["--check", "--platform", "host"], &out);
    assert!(!run.status.success() && String::from_utf8_lossy(&run.stderr).contains("--platform sim"));
    std::fs::remove_dir_all(&out).unwrap();
}
