//! The scenario suite: golden traces of dynofa on every built-in scenario, and the acceptance
//! checks of the runtime-manager issue on the scenarios x policies table.
//!
//! Goldens run on `luts/dynamic-ofa-nx.json` (derived once from the reference data, so they do
//! not move when the searched LUT is regenerated). Refresh them only with
//! `cargo xtask golden-traces` (which runs this test with `DYNOFA_BLESS=1`).

use std::path::PathBuf;

use dynofa_hal_sim::scenario::BUILT_IN;
use dynofa_hal_sim::sim::{PolicyKind, Run};
use dynofa_hal_sim::{Scenario, SimLut, default_lut_path, dynamic_ofa_lut_path, load_lut, simulate, table};

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

fn table_runs() -> (SimLut, Vec<Run>) {
    let lut = load_lut(&default_lut_path()).unwrap();
    let runs = table::run_all(&lut).unwrap();
    (lut, runs)
}

fn run<'a>(runs: &'a [Run], scenario: &str, policy: PolicyKind) -> &'a Run {
    runs.iter().find(|r| r.scenario.name == scenario && r.policy == policy).unwrap()
}

#[test]
fn dynofa_meets_99_percent_of_deadlines_everywhere() {
    let (_, runs) = table_runs();
    for r in runs.iter().filter(|r| r.policy == PolicyKind::Dynofa) {
        for m in &r.summary.models {
            assert!(m.deadline_met_frac >= 0.99, "{}/{}: {:.4}", r.scenario.name, m.name, m.deadline_met_frac);
        }
    }
}

#[test]
fn fig7_dynofa_misses_3x_fewer_than_dynamic_ofa_and_fig8_keeps_both_on_target() {
    let (_, runs) = table_runs();
    let (d, s) = (run(&runs, "fig7", PolicyKind::Dynofa), run(&runs, "fig7", PolicyKind::DynamicOfa));
    let (dm, sm) = (table::misses(d, 0), table::misses(s, 0));
    assert!(3 * dm <= sm, "fig7: dynofa {dm} misses, dynamic-ofa {sm}");
    let f8 = run(&runs, "fig8", PolicyKind::Dynofa);
    assert_eq!(f8.summary.models.len(), 2);
    assert!(f8.summary.models.iter().all(|m| m.deadline_met_frac >= 0.99), "{:?}", f8.summary);
}

#[test]
fn energy_mode_saves_energy_at_the_same_deadline_rate() {
    let (_, runs) = table_runs();
    let (d, e) = (
        run(&runs, table::ENERGY_SCENARIO, PolicyKind::Dynofa),
        run(&runs, table::ENERGY_SCENARIO, PolicyKind::DynofaEnergy),
    );
    let (dm, em) = (&d.summary.models[0], &e.summary.models[0]);
    assert!(em.energy_j < dm.energy_j, "energy mode {} J, maximum clocks {} J", em.energy_j, dm.energy_j);
    assert!(em.deadline_met_frac >= 0.99 && dm.deadline_met_frac >= 0.99);
}

#[test]
fn dynofa_stays_near_the_oracle_on_single_model_scenarios() {
    let (_, runs) = table_runs();
    for r in runs.iter().filter(|r| r.policy == PolicyKind::Dynofa && r.scenario.models.len() == 1) {
        let o = run(&runs, &r.scenario.name, PolicyKind::Oracle);
        let gap = o.summary.models[0].mean_top1 - r.summary.models[0].mean_top1;
        assert!(gap <= 0.3, "{}: {gap:.3} points below the oracle", r.scenario.name);
    }
}
