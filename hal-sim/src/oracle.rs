//! The oracle: a policy that sees the simulated board. Before every frame it knows the true share
//! other applications take, the clocks and the noise-free latency of every entry, and plans all
//! models on the unit jointly (the core's [`plan`]) for the most accurate entries whose
//! 99th-percentile latency under the noise model fits: the upper bound for a policy that must
//! meet 99% of deadlines. It does not know the noise of the coming frame.

use dynofa_core::control::{
    Candidate, ControlError, Decision, Goal, MAX_MODELS, ModelSpec, PlanModel, Policy, candidates, plan,
};
use dynofa_core::lut::{OperatingPoint, Unit};

use crate::board::{SIM_ENTRIES, SharedBoard, SimLut};

/// The oracle policy.
#[derive(Debug)]
pub struct Oracle<'l> {
    board: SharedBoard,
    truth: &'l SimLut,
    specs: Vec<ModelSpec>,
    active: Vec<usize>,
    tail: f32,
    cands: heapless::Vec<Candidate, SIM_ENTRIES>,
}

impl<'l> Oracle<'l> {
    /// An oracle for `specs` on `board`, whose noise-free latencies are `truth` ([`crate::board::Board::truth`]).
    pub fn new(board: SharedBoard, truth: &'l SimLut, specs: &[ModelSpec]) -> Result<Self, ControlError> {
        if specs.is_empty() || specs.len() > MAX_MODELS {
            return Err(ControlError::ModelCount { found: specs.len() });
        }
        let tail = board.borrow().noise().quantile(0.99) as f32;
        let mut o = Oracle {
            board,
            truth,
            specs: specs.to_vec(),
            active: vec![0; specs.len()],
            tail,
            cands: heapless::Vec::new(),
        };
        for unit in Unit::ALL {
            let _ = o.decide(unit);
        }
        if let Some(model) =
            (0..specs.len()).find(|&k| o.truth.entries()[o.active[k]].predict_ms(o.op(specs[k].unit)).is_none())
        {
            return Err(ControlError::NoEntries { model });
        }
        Ok(o)
    }

    fn op(&self, unit: Unit) -> OperatingPoint {
        OperatingPoint { unit, freq_khz: self.board.borrow().clock_khz(unit) }
    }

    fn decide(&mut self, unit: Unit) -> Decision {
        candidates(self.truth, self.op(unit), &mut self.cands);
        let ids: heapless::Vec<usize, MAX_MODELS> =
            (0..self.specs.len()).filter(|&k| self.specs[k].unit == unit).collect();
        if ids.is_empty() || self.cands.is_empty() {
            return Decision::STAY;
        }
        let mut models =
            [PlanModel { cands: &self.cands, unit, target_ms: 1.0, slot_ms: 1.0, priority: 1.0, tail: self.tail };
                MAX_MODELS];
        for (m, &k) in models.iter_mut().zip(&ids) {
            let g = self.specs[k].goal;
            *m = PlanModel { target_ms: g.target_ms, slot_ms: g.slot_ms(), priority: g.priority, ..*m };
        }
        let share = self.board.borrow().share(unit) as f32;
        let Some(p) = plan(&models[..ids.len()], [share; 2]) else {
            return Decision::STAY;
        };
        let mut d = Decision::STAY;
        for (i, &k) in ids.iter().enumerate() {
            let entry = usize::from(self.cands[p.pos[i]].entry);
            if entry != self.active[k] {
                self.active[k] = entry;
                d = d.with_switch(k, entry);
            }
        }
        d
    }
}

impl Policy for Oracle<'_> {
    fn models(&self) -> usize {
        self.specs.len()
    }

    fn entry(&self, model: usize) -> usize {
        self.active.get(model).copied().unwrap_or(0)
    }

    fn observe(&mut self, _model: usize, _latency_ms: f32) -> Decision {
        Decision::STAY
    }

    fn set_goal(&mut self, model: usize, goal: Goal) -> Decision {
        if let Some(s) = self.specs.get_mut(model).filter(|_| goal.is_valid()) {
            s.goal = goal;
        }
        Decision::STAY
    }

    fn clock_changed(&mut self, _unit: Unit, _khz: u32) -> Decision {
        Decision::STAY
    }

    fn before_frame(&mut self, model: usize) -> Decision {
        match self.specs.get(model) {
            Some(s) => self.decide(s.unit),
            None => Decision::STAY,
        }
    }
}
