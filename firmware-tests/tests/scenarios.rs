//! The scenario suite: golden traces of dynofa on every built-in scenario, and the acceptance
//! checks of the runtime-manager issue on the scenarios x policies table.
//!
//! Goldens run on `luts/dynamic-ofa-nx.json` (derived once from the reference data, so they do
//! not move when the searched LUT is regenerated). Refresh them only with
//! `cargo xtask golden-traces` (which runs this test with `DYNOFA_BLESS=1`).

use std::path::PathBuf;
use std::sync::OnceLock;

use dynofa_hal_sim::scenario::BUILT_IN;
use dynofa_hal_sim::sim::{PolicyKind, Run};
use dynofa_hal_sim::{Scenario, default_lut_path, dynamic_ofa_lut_path, load_lut, simulate, table};

/// Every this many frames a golden also records a frame without a decision.
const SAMPLE_EVERY: usize = 50;

fn golden_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("golden").join(format!("{name}.trace"))
}

/// The golden text of a run: a header, the summary, and the frames where a decision took effect
/// (a switch or a clock change), the first frame and every [`SAMPLE_EVERY`]th.
fn golden_text(run: &Run) -> String {
    let mut out = format!(
        "# golden trace: dynofa-sim --scenario {} --policy dynofa --lut luts/dynamic-ofa-nx.json\n\
         # refresh only with `cargo xtask golden-traces` (DYNOFA_BLESS=1 cargo test -p dynofa-firmware-tests --test scenarios)\n\
         summary {}\nmodel,frame,t_ms,latency_ms,entry,clock_mhz\n",
        run.scenario.name,
        serde_json::to_string(&run.summary).unwrap(),
    );
    let mut frame = vec![0usize; run.scenario.models.len()];
    let mut last: Vec<Option<(usize, f64)>> = vec![None; run.scenario.models.len()];
    for f in &run.frames {
        let i = frame[f.model];
        frame[f.model] += 1;
        let now = Some((f.entry, f.clock_mhz));
        if last[f.model] != now || i.is_multiple_of(SAMPLE_EVERY) {
            out += &format!("{},{i},{:.3},{:.3},{},{}\n", f.model, f.t_ms, f.latency_ms, f.entry, f.clock_mhz);
        }
        last[f.model] = now;
    }
    out
}

#[test]
fn scenario_traces_match_their_goldens() {
    let lut = load_lut(&dynamic_ofa_lut_path()).unwrap();
    let bless = std::env::var_os("DYNOFA_BLESS").is_some();
    let mut stale = Vec::new();
    for (name, _) in BUILT_IN {
        let run = simulate(&Scenario::load(name).unwrap(), PolicyKind::Dynofa, &lut).unwrap();
        let text = golden_text(&run);
        let path = golden_path(name);
        if bless {
            std::fs::write(&path, &text).unwrap();
        } else if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
            stale.push(name);
        }
    }
    assert!(
        stale.is_empty(),
        "traces differ from their goldens: {stale:?}; if intended, run `cargo xtask golden-traces`"
    );
}

#[test]
fn a_scenario_gives_the_same_trace_twice() {
    let lut = load_lut(&dynamic_ofa_lut_path()).unwrap();
    let s = Scenario::load("bursty").unwrap();
    let a = simulate(&s, PolicyKind::Dynofa, &lut).unwrap();
    let b = simulate(&s, PolicyKind::Dynofa, &lut).unwrap();
    assert_eq!(a.frames, b.frames);
}

/// Every built-in scenario under every policy on the default LUT, run once for all the tests.
fn table_runs() -> &'static [Run] {
    static RUNS: OnceLock<Vec<Run>> = OnceLock::new();
    RUNS.get_or_init(|| table::run_all(&load_lut(&default_lut_path()).unwrap()).unwrap())
}

/// The acceptance checks on every scenario and model: dynofa meets 99% of deadlines with
/// a mean top-1 within 0.3 points of the oracle's, misses 3x fewer than Dynamic-OFA on `fig7`,
/// keeps both `fig8` models on target, and its energy mode meets 99% without spending more than
/// maximum clocks (and saves on `patrol`).
#[test]
fn the_table_passes_every_acceptance_check() {
    let fails = table::acceptance(table_runs());
    assert!(fails.is_empty(), "{fails:#?}");
}

#[test]
fn the_acceptance_checks_catch_a_policy_below_the_bar() {
    let mut runs = table_runs().to_vec();
    let rush = |p| move |r: &&mut Run| r.scenario.name == "rush-hour" && r.policy == p;
    let oracle = runs.iter_mut().find(rush(PolicyKind::Oracle)).unwrap().summary.models[2].mean_top1;
    let r = runs.iter_mut().find(rush(PolicyKind::Dynofa)).unwrap();
    r.summary.models[2].mean_top1 = oracle - 0.31;
    r.summary.models[1].deadline_met_frac = 0.989;
    let fails = table::acceptance(&runs);
    assert!(fails.iter().any(|f| f.starts_with("rush-hour/tagger") && f.contains("below the oracle")), "{fails:?}");
    assert!(fails.iter().any(|f| f.starts_with("rush-hour/detector") && f.contains("below 99%")), "{fails:?}");
}
