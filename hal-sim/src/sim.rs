//! Run a scenario under a policy: the core's runtime over the simulated board's HAL.

use dynofa_core::control::{DynamicOfa, Dynofa, DynofaParams, ModelSpec, Policy, StepParams};
use dynofa_core::lut::Unit;
use dynofa_core::runtime::Runtime;
use serde::Serialize;

use crate::SimError;
use crate::board::{Board, SimLut, runtime_io};
use crate::model::{GPU_KHZ, operating_points, power_table};
use crate::oracle::Oracle;
use crate::scenario::{EventKind, Scenario};

/// Frames profiled per entry and operating point before a run.
pub const PROFILE_FRAMES: usize = 200;
/// Frames after a goal or environment change that the deadline rate leaves out.
pub const SETTLE_FRAMES: u32 = 5;

/// The policies the simulator runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PolicyKind {
    /// dynofa's manager at the governor's clocks.
    Dynofa,
    /// dynofa's manager in energy mode: it also sets the clocks.
    DynofaEnergy,
    /// Dynamic-OFA's step policy.
    DynamicOfa,
    /// The oracle.
    Oracle,
}

impl PolicyKind {
    /// Every policy, in table order.
    pub const ALL: [PolicyKind; 4] =
        [PolicyKind::Dynofa, PolicyKind::DynofaEnergy, PolicyKind::DynamicOfa, PolicyKind::Oracle];

    /// Its command-line name.
    pub fn name(self) -> &'static str {
        match self {
            PolicyKind::Dynofa => "dynofa",
            PolicyKind::DynofaEnergy => "dynofa-energy",
            PolicyKind::DynamicOfa => "dynamic-ofa",
            PolicyKind::Oracle => "oracle",
        }
    }

    /// The policy called `name`.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.name() == name)
    }
}

/// One frame of a run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FrameRow {
    /// The model.
    pub model: usize,
    /// Start of the frame in ms.
    pub t_ms: f64,
    /// Its latency in ms.
    pub latency_ms: f64,
    /// The model's target then.
    pub target_ms: f32,
    /// The LUT entry that ran it.
    pub entry: usize,
    /// That entry's top-1.
    pub top1: f32,
    /// The clock of the model's unit in MHz.
    pub clock_mhz: f64,
    /// The share of the unit other applications took.
    pub share: f64,
    /// Whether the frame counts toward the deadline rate (not within the settling frames).
    pub counted: bool,
}

impl FrameRow {
    /// Whether the frame met its target.
    pub fn met(&self) -> bool {
        self.latency_ms <= f64::from(self.target_ms)
    }
}

/// One model's results, as `--summary-json` writes them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelSummary {
    /// The model's name.
    pub name: String,
    /// Frames run.
    pub frames: usize,
    /// Share of counted frames at or under target.
    pub deadline_met_frac: f64,
    /// Mean top-1 over all frames.
    pub mean_top1: f64,
    /// Switches of sub-network.
    pub switches: usize,
    /// 99th percentile over counted frames of latency minus target, in ms (negative: under).
    pub p99_over_target_ms: f64,
    /// Energy charged to the model's frames over the run.
    pub energy_j: f64,
}

/// The summary of a run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    /// One object per model.
    pub models: Vec<ModelSummary>,
}

/// A finished run.
#[derive(Debug, Clone)]
pub struct Run {
    /// The scenario.
    pub scenario: Scenario,
    /// The policy.
    pub policy: PolicyKind,
    /// Every frame, in the order run.
    pub frames: Vec<FrameRow>,
    /// The summary.
    pub summary: Summary,
}

/// Run `scenario` under `policy` on a board whose entries and table latencies are `lut`'s.
///
/// Before the run the board profiles every entry ([`Board::profile`]); dynofa and the step policy
/// plan with that profile, the oracle with the truth.
pub fn simulate(scenario: &Scenario, kind: PolicyKind, lut: &SimLut) -> Result<Run, SimError> {
    scenario.check().map_err(|reason| SimError::Scenario { origin: scenario.name.clone(), reason })?;
    let gpu_khz = scenario.gpu_khz.unwrap_or(GPU_KHZ[GPU_KHZ.len() - 1]);
    let mut goals: Vec<_> = scenario.models.iter().map(|m| m.goal()).collect();
    let placement: Vec<_> = scenario.models.iter().zip(&goals).map(|(m, g)| (m.unit, f64::from(g.slot_ms()))).collect();
    let board = Board::new(lut, &placement, gpu_khz, scenario.seed);
    // The profile draws from its own stream so that it does not shift the run's draws.
    let profiled = board.profile(lut, PROFILE_FRAMES, scenario.seed ^ 0x0070_726f_6669_6c65);
    let truth = board.truth(lut);
    let board = board.shared();

    let specs: Vec<_> = scenario.models.iter().map(|m| ModelSpec { unit: m.unit, goal: m.goal() }).collect();
    let clocks = [gpu_khz, operating_points(Unit::Cpu)[0]];
    let control = |e: dynofa_core::control::ControlError| SimError::Policy(e.to_string());
    let params = DynofaParams::default();
    let mut policy: Box<dyn Policy + '_> = match kind {
        PolicyKind::Dynofa => Box::new(Dynofa::new(&profiled, &specs, clocks, params).map_err(control)?),
        PolicyKind::DynofaEnergy => Box::new(
            Dynofa::new(&profiled, &specs, clocks, params)
                .map_err(control)?
                .with_power(power_table(Unit::Gpu))
                .with_power(power_table(Unit::Cpu)),
        ),
        PolicyKind::DynamicOfa => {
            Box::new(DynamicOfa::new(&profiled, &specs, clocks, StepParams::default()).map_err(control)?)
        }
        PolicyKind::Oracle => Box::new(Oracle::new(board.clone(), &truth, &specs).map_err(control)?),
    };

    let (mut slots, mut units) = runtime_io(&board, &specs);
    let mut rt = Runtime::new(&profiled, &mut slots, &mut units, &mut *policy)?;

    let end_ns = (scenario.duration_s * 1e9) as u64;
    let mut next_event = 0;
    let mut since_change = vec![SETTLE_FRAMES; specs.len()];
    let mut frames = Vec::new();
    while let Some(m) = rt.next_model() {
        let due = rt.slots()[m].next_release_ns();
        if due >= end_ns {
            break;
        }
        while let Some(e) = scenario.events.get(next_event).filter(|e| (e.at_s * 1e9) as u64 <= due) {
            next_event += 1;
            match &e.kind {
                EventKind::Share { unit, value } => {
                    board.borrow_mut().set_share(*unit, f64::from(*value));
                    settle(&mut since_change, &specs, *unit);
                }
                EventKind::Clock { unit, khz } => {
                    board.borrow_mut().set_clock_khz(*unit, *khz);
                    settle(&mut since_change, &specs, *unit);
                }
                EventKind::Target(t) => {
                    // Checked on entry.
                    let k = scenario.model(&t.model).expect("scenario events name its models");
                    let g = &mut goals[k];
                    g.target_ms = t.target_ms.unwrap_or(g.target_ms);
                    g.period_ms = t.period_ms.unwrap_or(g.period_ms);
                    g.floor_top1 = t.floor_top1.unwrap_or(g.floor_top1);
                    board.borrow_mut().set_slot_ms(k, f64::from(g.slot_ms()));
                    let _ = rt.set_goal(k, *g)?;
                    since_change[k] = 0;
                }
            }
        }
        let r = rt.step(m, &[], &mut [])?;
        let unit = specs[m].unit;
        let b = board.borrow();
        frames.push(FrameRow {
            model: m,
            t_ms: r.start_ns as f64 * 1e-6,
            latency_ms: r.latency_ns as f64 * 1e-6,
            target_ms: goals[m].target_ms,
            entry: r.entry,
            top1: lut.entries()[r.entry].top1,
            clock_mhz: f64::from(r.freq_khz.unwrap_or_else(|| b.clock_khz(unit))) * 1e-3,
            share: b.share(unit),
            counted: since_change[m] >= SETTLE_FRAMES,
        });
        since_change[m] = since_change[m].saturating_add(1);
    }
    let b = board.borrow();
    let models = scenario
        .models
        .iter()
        .enumerate()
        .map(|(k, def)| summarize(&def.name, frames.iter().filter(|f| f.model == k), b.models()[k].energy_j))
        .collect();
    Ok(Run { scenario: scenario.clone(), policy: kind, frames, summary: Summary { models } })
}

/// An environment change on `unit`: its models' next frames settle.
fn settle(since_change: &mut [u32], specs: &[ModelSpec], unit: Unit) {
    for (s, spec) in since_change.iter_mut().zip(specs) {
        if spec.unit == unit {
            *s = 0;
        }
    }
}

/// The summary of one model's frames (`energy_j` as the caller measured it).
pub fn summarize<'a>(name: &str, rows: impl Iterator<Item = &'a FrameRow>, energy_j: f64) -> ModelSummary {
    let rows: Vec<&FrameRow> = rows.collect();
    let mut over: Vec<f64> = rows.iter().filter(|f| f.counted).map(|f| f.latency_ms - f64::from(f.target_ms)).collect();
    over.sort_by(f64::total_cmp);
    let counted = over.len();
    let met = over.iter().filter(|&&x| x <= 0.0).count();
    let p99 = if counted == 0 { 0.0 } else { over[((counted as f64 * 0.99).ceil() as usize).clamp(1, counted) - 1] };
    ModelSummary {
        name: name.to_string(),
        frames: rows.len(),
        deadline_met_frac: if counted == 0 { 1.0 } else { met as f64 / counted as f64 },
        mean_top1: rows.iter().map(|f| f64::from(f.top1)).sum::<f64>() / rows.len().max(1) as f64,
        switches: rows.windows(2).filter(|w| w[0].entry != w[1].entry).count(),
        p99_over_target_ms: p99,
        energy_j,
    }
}
