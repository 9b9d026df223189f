//! The scenarios x policies table and the acceptance checks on it.

use std::fmt::Write as _;

use crate::scenario::{BUILT_IN, EventKind, Scenario};

/// The scenario with slack below its target, where the energy mode must save energy.
pub const ENERGY_SCENARIO: &str = "patrol";
use crate::sim::{PolicyKind, Run, simulate};
use crate::{SimError, SimLut};

/// Every built-in scenario under every policy.
pub fn run_all(lut: &SimLut) -> Result<Vec<Run>, SimError> {
    let mut runs = Vec::new();
    for (name, _) in BUILT_IN {
        let s = Scenario::load(name)?;
        for p in PolicyKind::ALL {
            runs.push(simulate(&s, p, lut)?);
        }
    }
    Ok(runs)
}

/// Deadline misses of model `k` over counted frames.
pub fn misses(run: &Run, k: usize) -> usize {
    run.frames.iter().filter(|f| f.model == k && f.counted && !f.met()).count()
}

fn find<'a>(runs: &'a [Run], scenario: &str, policy: PolicyKind) -> Option<&'a Run> {
    runs.iter().find(|r| r.scenario.name == scenario && r.policy == policy)
}

/// The table as markdown: one row per scenario, policy and model.
pub fn markdown(runs: &[Run]) -> String {
    let mut out = String::from(
        "| scenario | policy | model | frames | deadlines met | misses | mean top-1 | vs oracle | switches | p99 - target (ms) | energy (J) |\n\
         |---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for run in runs {
        let oracle = find(runs, &run.scenario.name, PolicyKind::Oracle);
        for (k, m) in run.summary.models.iter().enumerate() {
            let delta = oracle.map_or(0.0, |o| m.mean_top1 - o.summary.models[k].mean_top1);
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {:.2}% | {} | {:.2} | {:+.2} | {} | {:+.1} | {:.1} |",
                run.scenario.name,
                run.policy.name(),
                m.name,
                m.frames,
                100.0 * m.deadline_met_frac,
                misses(run, k),
                m.mean_top1,
                delta,
                m.switches,
                m.p99_over_target_ms,
                m.energy_j,
            );
        }
    }
    out
}

/// The acceptance checks; each failure as a sentence.
pub fn acceptance(runs: &[Run]) -> Vec<String> {
    let mut fails = Vec::new();
    for (name, _) in BUILT_IN {
        let (Some(d), Some(o), Some(e), Some(s)) = (
            find(runs, name, PolicyKind::Dynofa),
            find(runs, name, PolicyKind::Oracle),
            find(runs, name, PolicyKind::DynofaEnergy),
            find(runs, name, PolicyKind::DynamicOfa),
        ) else {
            fails.push(format!("{name}: not every policy was run"));
            continue;
        };
        for (k, m) in d.summary.models.iter().enumerate() {
            if m.deadline_met_frac < 0.99 {
                fails.push(format!(
                    "{name}/{}: dynofa met {:.2}% of deadlines, below 99%",
                    m.name,
                    100.0 * m.deadline_met_frac
                ));
            }
            let gap = o.summary.models[k].mean_top1 - m.mean_top1;
            if gap > 0.3 {
                fails.push(format!("{name}/{}: dynofa's mean top-1 is {gap:.2} points below the oracle's", m.name));
            }
            let em = &e.summary.models[k];
            if em.deadline_met_frac < 0.99 {
                fails.push(format!(
                    "{name}/{}: energy mode met {:.2}% of deadlines",
                    m.name,
                    100.0 * em.deadline_met_frac
                ));
            }
        }
        // Where the governor pins clocks, the baseline does not run at maximum clocks and the
        // energy mode (which owns the clock) is not comparable with it.
        let governed = d.scenario.events.iter().any(|e| matches!(e.kind, EventKind::Clock { .. }));
        let energy = |r: &Run| r.summary.models.iter().map(|m| m.energy_j).sum::<f64>();
        if !governed && energy(e) > energy(d) {
            fails.push(format!(
                "{name}: energy mode used {:.1} J, more than {:.1} J at maximum clocks",
                energy(e),
                energy(d)
            ));
        }
        if name == ENERGY_SCENARIO && energy(e) >= energy(d) {
            fails.push(format!("{name}: energy mode saved nothing ({:.1} J against {:.1} J)", energy(e), energy(d)));
        }
        if name == "fig7" {
            let (dm, sm) = (misses(d, 0), misses(s, 0));
            if 3 * dm > sm {
                fails.push(format!("fig7: dynofa missed {dm} deadlines, not 3x fewer than dynamic-ofa's {sm}"));
            }
        }
    }
    fails
}
