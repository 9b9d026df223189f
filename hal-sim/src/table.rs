//! The scenarios x policies table and the acceptance checks on it.

use std::fmt::Write as _;

use crate::scenario::{BUILT_IN, EventKind, Scenario};

use crate::model::Rng;
use crate::sim::{PolicyKind, Run, simulate};
use crate::{SimError, SimLut};

/// The scenario with slack below its target, where the energy mode must save energy.
pub const ENERGY_SCENARIO: &str = "patrol";
/// Share of counted frames each model of dynofa must meet.
pub const DEADLINE_BAR: f64 = 0.99;
/// Most points of mean top-1 dynofa may fall below the oracle's.
pub const TOP1_GAP: f64 = 0.3;

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
            if m.deadline_met_frac < DEADLINE_BAR {
                fails.push(format!(
                    "{name}/{}: dynofa met {:.2}% of deadlines, below 99%",
                    m.name,
                    100.0 * m.deadline_met_frac
                ));
            }
            let gap = o.summary.models[k].mean_top1 - m.mean_top1;
            if gap > TOP1_GAP {
                fails.push(format!("{name}/{}: dynofa's mean top-1 is {gap:.2} points below the oracle's", m.name));
            }
            let em = &e.summary.models[k];
            if em.deadline_met_frac < DEADLINE_BAR {
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

/// One model of a scenario over a seed sweep: in how many seeds each bar was met.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SweepRow {
    /// The scenario.
    pub scenario: String,
    /// The model.
    pub model: String,
    /// Seeds run.
    pub seeds: usize,
    /// Seeds where dynofa met [`DEADLINE_BAR`].
    pub deadlines: usize,
    /// Seeds where dynofa's mean top-1 was within [`TOP1_GAP`] of the oracle's.
    pub top1: usize,
    /// Seeds where it did both.
    pub both: usize,
    /// Seeds where the oracle met [`DEADLINE_BAR`].
    pub oracle_deadlines: usize,
}

impl SweepRow {
    fn add(&mut self, o: &SweepRow) {
        self.seeds += o.seeds;
        self.deadlines += o.deadlines;
        self.top1 += o.top1;
        self.both += o.both;
        self.oracle_deadlines += o.oracle_deadlines;
    }
}

/// Every built-in scenario under dynofa and the oracle with `seeds` seeds each (its own, then
/// ones drawn from it), to show how often the acceptance bars hold beyond the one committed draw.
pub fn seed_sweep(lut: &SimLut, seeds: usize) -> Result<Vec<SweepRow>, SimError> {
    let mut rows = Vec::new();
    for (name, _) in BUILT_IN {
        let base = Scenario::load(name)?;
        let first = rows.len();
        rows.extend(base.models.iter().map(|m| SweepRow {
            scenario: base.name.clone(),
            model: m.name.clone(),
            ..SweepRow::default()
        }));
        let mut draw = Rng::new(base.seed);
        for i in 0..seeds {
            let s = Scenario { seed: if i == 0 { base.seed } else { draw.next_u64() }, ..base.clone() };
            let (d, o) = (simulate(&s, PolicyKind::Dynofa, lut)?, simulate(&s, PolicyKind::Oracle, lut)?);
            for ((row, m), om) in rows[first..].iter_mut().zip(&d.summary.models).zip(&o.summary.models) {
                let met = m.deadline_met_frac >= DEADLINE_BAR;
                let near = om.mean_top1 - m.mean_top1 <= TOP1_GAP;
                row.add(&SweepRow {
                    seeds: 1,
                    deadlines: usize::from(met),
                    top1: usize::from(near),
                    both: usize::from(met && near),
                    oracle_deadlines: usize::from(om.deadline_met_frac >= DEADLINE_BAR),
                    ..SweepRow::default()
                });
            }
        }
    }
    Ok(rows)
}

/// The seed sweep as markdown, with a total row.
pub fn sweep_markdown(rows: &[SweepRow]) -> String {
    let mut out = String::from(
        "| scenario | model | seeds | dynofa >= 99% | dynofa within 0.3 of oracle | dynofa both | oracle >= 99% |\n\
         |---|---|---:|---:|---:|---:|---:|\n",
    );
    let mut total = SweepRow { scenario: "all".into(), ..SweepRow::default() };
    for r in rows {
        total.add(r);
    }
    for r in rows.iter().chain([&total]) {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} |",
            r.scenario, r.model, r.seeds, r.deadlines, r.top1, r.both, r.oracle_deadlines
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{dynamic_ofa_lut_path, load_lut};

    #[test]
    fn a_sweep_counts_every_model_over_its_seeds_from_the_committed_one() {
        let lut = load_lut(&dynamic_ofa_lut_path()).unwrap();
        let models: usize = BUILT_IN.iter().map(|(n, _)| Scenario::load(n).unwrap().models.len()).sum();
        let two = seed_sweep(&lut, 2).unwrap();
        assert_eq!(two.len(), models);
        assert!(two.iter().all(|r| r.seeds == 2 && r.both <= r.deadlines.min(r.top1)));
        // One seed is the committed run: the same verdicts as the table's.
        let runs = run_all(&lut).unwrap();
        let one = seed_sweep(&lut, 1).unwrap();
        for r in &one {
            let (d, o) = (find(&runs, &r.scenario, PolicyKind::Dynofa), find(&runs, &r.scenario, PolicyKind::Oracle));
            let k = d.unwrap().scenario.model(&r.model).unwrap();
            let (m, om) = (&d.unwrap().summary.models[k], &o.unwrap().summary.models[k]);
            assert_eq!(r.deadlines == 1, m.deadline_met_frac >= DEADLINE_BAR, "{}/{}", r.scenario, r.model);
            assert_eq!(r.top1 == 1, om.mean_top1 - m.mean_top1 <= TOP1_GAP, "{}/{}", r.scenario, r.model);
        }
        let md = sweep_markdown(&two);
        assert!(md.lines().last().unwrap().starts_with(&format!("| all |  | {} |", 2 * models)), "{md}");
    }
}
