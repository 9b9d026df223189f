//! dynofa's manager: per model a slowdown estimate against the LUT, per unit a joint plan.

use crate::control::plan::{Candidate, PlanModel, candidates, plan, shared_latency_ms};
use crate::control::power::MAX_POWER_POINTS;
use crate::control::{
    ControlError, Decision, EstimatorParams, Goal, MAX_MODELS, ModelSpec, Policy, PowerPoint, PowerTable, Slowdown,
    Step, specs_ok,
};
use crate::lut::{Lut, OperatingPoint, Unit};

/// Tuning of [`Dynofa`].
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct DynofaParams {
    /// How each model's slowdown estimate moves.
    pub estimator: EstimatorParams,
    /// A model's tail factor is `1 + sigmas * s`, with `s` the LUT's spread on its unit (the median
    /// over entries of std / mean): how far above the mean a frame may land and still fit.
    /// `sigmas` is this while the model's miss budget holds at least one miss...
    pub tail_sigmas: f32,
    /// ...plus this for each miss it owes beyond (in proportion).
    pub debt_sigmas: f32,
    /// Smallest relative margin over the mean, used too when the LUT carries no spread.
    pub min_margin: f32,
    /// Share of frames that may miss their target: each frame adds this much to the model's miss
    /// budget, each miss takes 1 (a step up of the estimate gives back the misses that revealed it).
    pub miss_rate: f32,
    /// Most misses the budget saves up (it starts with one, or this if less).
    pub miss_burst: f32,
    /// Most misses the budget owes, which bounds how cautious a model turns.
    pub max_debt: f32,
    /// Misses a model may owe before its running entry is given up for them (a new plan, when
    /// one is made, counts them all).
    pub stay_owed: f32,
    /// Extra relative margin an upgrade must clear, so that noise does not make choices flap.
    pub hysteresis: f32,
    /// Frames on a unit after a change before an upgrade is considered (unless an estimate steps
    /// or the share other applications take falls by more than `hysteresis`).
    pub dwell: u32,
    /// In energy mode, the smallest relative saving of energy worth a change.
    pub min_saving: f32,
}

impl Default for DynofaParams {
    fn default() -> Self {
        // On the Jetson's frame noise (5% spread and +20% spikes; see `dynofa-hal-sim`) the LUT's
        // spread is about 6.6%: 3.5 spreads above the mean is the noise's 98.8th percentile, where
        // a model plans while its misses stay within 0.75% of its frames (the entries it can run
        // rarely sit right at their margin, so it misses less than the percentile says). Each miss
        // it owes beyond its budget adds 0.7 spreads (99.3rd percentile at one, 99.7th at the
        // most, three), so that a run of bad luck is paid back before it costs the 99% goal.
        DynofaParams {
            estimator: EstimatorParams::default(),
            tail_sigmas: 3.5,
            debt_sigmas: 0.7,
            min_margin: 0.1,
            miss_rate: 0.0075,
            miss_burst: 2.0,
            max_debt: 2.0,
            stay_owed: 1.0,
            hysteresis: 0.01,
            dwell: 20,
            min_saving: 0.03,
        }
    }
}

/// dynofa's runtime manager for up to [`MAX_MODELS`] models on the units of one board.
///
/// Each frame updates the model's slowdown estimate (measured latency over the active entry's LUT
/// latency at the unit's clock) and its miss budget. From the estimates it infers the share of
/// each unit that other applications take, and plans all models on the unit jointly ([`plan`]):
/// the most accurate entries such that every model's latency, inflated by its tail factor, fits
/// its target. A model's tail factor sits near the 99th percentile of the frame noise while its
/// misses stay within budget and grows as they eat into it, so the manager spends the misses a
/// 99% goal allows where they buy accuracy and turns cautious when bad luck or a change has spent
/// them. When the current choice no longer fits, or a goal or clock changes, it re-plans at once;
/// an upgrade needs the dwell to have passed and the hysteresis margin to be cleared. With a
/// [`PowerTable`] for a unit ([`Dynofa::with_power`]) it also picks the unit's clock: the lowest
/// energy among the clocks that reach the best plan's accuracy.
#[derive(Debug, Clone)]
pub struct Dynofa<'l, const N: usize, const P: usize> {
    lut: &'l Lut<N, P>,
    params: DynofaParams,
    n: usize,
    specs: [ModelSpec; MAX_MODELS],
    active: [usize; MAX_MODELS],
    /// The active entry's mean latency alone on its unit at the unit's clock.
    mean: [f32; MAX_MODELS],
    est: [Slowdown; MAX_MODELS],
    /// Misses each model may still spend (see [`DynofaParams::miss_rate`]).
    budget: [f32; MAX_MODELS],
    /// Misses among the frames of a step up of each model's estimate still being confirmed...
    unconfirmed: [u8; MAX_MODELS],
    /// ...and those of a step just confirmed, given back when the next frame keeps it: a margin
    /// does not guard against a change it has not yet seen.
    revealed: [u8; MAX_MODELS],
    /// Each unit's Pareto front at its clock, most accurate first (models share the LUT).
    cands: [heapless::Vec<Candidate, N>; 2],
    clock: [u32; 2],
    /// Each unit's relative spread in the LUT (the median over entries of std / mean).
    spread: [f32; 2],
    /// Frames on each unit since its last change or upgrade check.
    since_change: [u32; 2],
    /// Whether an estimate on the unit stepped or fell, so that an upgrade check is due at once.
    recheck: [bool; 2],
    /// Each model's slowdown estimate when its unit was last planned.
    planned: [f32; MAX_MODELS],
    power: [Option<Energy<N>>; 2],
}

/// A unit's power table and the LUT's front at each of its clocks, built once so that a decision
/// in energy mode does not sort the LUT at every clock.
#[derive(Debug, Clone)]
struct Energy<const N: usize> {
    table: PowerTable,
    /// The front at each of the table's points, in the table's order.
    fronts: [heapless::Vec<Candidate, N>; MAX_POWER_POINTS],
}

/// Samples since a step after which a fall of the estimate is worth an upgrade check.
const SETTLED: u16 = 8;

/// The models on one unit: their indices and how many.
type Group = ([usize; MAX_MODELS], usize);

/// A unit's chosen configuration.
#[derive(Clone, Copy)]
struct Choice {
    clock: u32,
    entries: [usize; MAX_MODELS],
    /// Each chosen entry's mean latency alone on the unit at `clock`.
    means: [f32; MAX_MODELS],
    score: f32,
    energy_w: f32,
    all_fit: bool,
}

impl<'l, const N: usize, const P: usize> Dynofa<'l, N, P> {
    /// A manager for `specs`, with each unit's clock in kHz (0 where not pinned), choosing the most
    /// accurate entries that fit as if nothing slowed the board.
    pub fn new(
        lut: &'l Lut<N, P>,
        specs: &[ModelSpec],
        clocks_khz: [u32; 2],
        params: DynofaParams,
    ) -> Result<Self, ControlError> {
        specs_ok(specs)?;
        let mut d = Dynofa {
            lut,
            params,
            n: specs.len(),
            specs: [specs[0]; MAX_MODELS],
            active: [0; MAX_MODELS],
            mean: [0.0; MAX_MODELS],
            est: [Slowdown::new(params.estimator); MAX_MODELS],
            budget: [params.miss_burst.clamp(0.0, 1.0); MAX_MODELS],
            unconfirmed: [0; MAX_MODELS],
            revealed: [0; MAX_MODELS],
            cands: core::array::from_fn(|_| heapless::Vec::new()),
            clock: clocks_khz,
            spread: [spread(lut, Unit::Gpu), spread(lut, Unit::Cpu)],
            since_change: [params.dwell; 2],
            recheck: [false; 2],
            planned: [1.0; MAX_MODELS],
            power: [None, None],
        };
        d.specs[..specs.len()].copy_from_slice(specs);
        for unit in Unit::ALL {
            d.refresh(unit);
        }
        for k in 0..d.n {
            let Some(fastest) = d.cands[d.specs[k].unit.index()].last() else {
                return Err(ControlError::NoEntries { model: k });
            };
            d.active[k] = usize::from(fastest.entry);
            d.mean[k] = fastest.mean_ms;
        }
        // Nothing else is known to take a share yet: start each estimate at what the co-located
        // models' demand alone implies.
        for unit in Unit::ALL {
            d.rescale(unit, &[0.0; MAX_MODELS]);
        }
        for unit in Unit::ALL {
            let _ = d.decide(unit, true);
        }
        Ok(d)
    }

    /// Energy mode on `table`'s unit: the manager also sets that unit's clock, to one of the
    /// table's operating points.
    pub fn with_power(mut self, table: PowerTable) -> Self {
        let unit = table.unit();
        let lut = self.lut;
        let energy =
            self.power[unit.index()].insert(Energy { table, fronts: core::array::from_fn(|_| heapless::Vec::new()) });
        for (point, front) in energy.table.points().iter().zip(&mut energy.fronts) {
            candidates(lut, OperatingPoint { unit, freq_khz: point.freq_khz }, front);
        }
        self.since_change[unit.index()] = self.params.dwell;
        self
    }

    /// The slowdown estimate of `model` (1.0: as the LUT says).
    pub fn slowdown(&self, model: usize) -> Option<f32> {
        (model < self.n).then(|| self.est[model].value())
    }

    /// The factor by which `model`'s plans inflate its mean latency against noise (see
    /// [`DynofaParams::tail_sigmas`]).
    pub fn tail(&self, model: usize) -> Option<f32> {
        (model < self.n).then(|| self.tail_of(model))
    }

    /// The share of `unit` the manager believes other applications take.
    pub fn external_share(&self, unit: Unit) -> f32 {
        self.phi(unit)
    }

    /// The clock in kHz the manager believes `unit` runs at.
    pub fn clock_khz(&self, unit: Unit) -> u32 {
        self.clock[unit.index()]
    }

    fn op(&self, unit: Unit) -> OperatingPoint {
        OperatingPoint { unit, freq_khz: self.clock[unit.index()] }
    }

    fn group(&self, unit: Unit) -> Group {
        let mut g = ([0; MAX_MODELS], 0);
        for k in (0..self.n).filter(|&k| self.specs[k].unit == unit) {
            g.0[g.1] = k;
            g.1 += 1;
        }
        g
    }

    fn tail_of(&self, k: usize) -> f32 {
        self.tail_owing(k, self.owed(k))
    }

    /// Misses model `k` owes beyond the last it can afford (0 while it can afford one).
    fn owed(&self, k: usize) -> f32 {
        (1.0 - self.budget[k]).max(0.0)
    }

    /// Model `k`'s tail factor when it owes `owed` misses: bold while it can afford one, more
    /// cautious with every miss beyond.
    fn tail_owing(&self, k: usize, owed: f32) -> f32 {
        let p = &self.params;
        let sigmas = p.tail_sigmas + p.debt_sigmas * owed;
        1.0 + (sigmas * self.spread[self.specs[k].unit.index()]).max(p.min_margin)
    }

    /// Recompute `unit`'s front and its models' means at its clock.
    fn refresh(&mut self, unit: Unit) {
        let op = self.op(unit);
        candidates(self.lut, op, &mut self.cands[unit.index()]);
        for k in (0..self.n).filter(|&k| self.specs[k].unit == unit) {
            if let Some(m) = self.lut.entries().get(self.active[k]).and_then(|e| e.predict_ms(op)) {
                self.mean[k] = m;
            }
        }
    }

    /// Demand on `k`'s unit of the other models on it, with their active entries.
    fn others(&self, k: usize) -> f32 {
        let unit = self.specs[k].unit;
        (0..self.n)
            .filter(|&j| j != k && self.specs[j].unit == unit)
            .map(|j| self.mean[j] / self.specs[j].goal.slot_ms())
            .sum()
    }

    /// The external share model `k`'s estimate implies.
    fn phi_of(&self, k: usize) -> f32 {
        1.0 - self.others(k) - 1.0 / self.est[k].value()
    }

    /// The external share of `unit`: the mean of what its models' estimates imply.
    fn phi(&self, unit: Unit) -> f32 {
        let (ids, n) = self.group(unit);
        if n == 0 {
            return 0.0;
        }
        let sum: f32 = ids[..n].iter().map(|&k| self.phi_of(k)).sum();
        (sum / n as f32).clamp(-1.0, 0.95)
    }

    /// Re-express the estimates of `unit`'s models after a known change of demand (a switch, a
    /// clock or a period), keeping the external share each implied, so that the change is not
    /// mistaken for the environment's.
    fn rescale(&mut self, unit: Unit, phis: &[f32; MAX_MODELS]) {
        let (ids, n) = self.group(unit);
        for &k in &ids[..n] {
            let free = (1.0 - phis[k] - self.others(k)).max(0.05);
            self.est[k].set(1.0 / free);
        }
    }

    fn phis(&self) -> [f32; MAX_MODELS] {
        let mut p = [0.0; MAX_MODELS];
        for (k, v) in p.iter_mut().enumerate().take(self.n) {
            *v = self.phi_of(k);
        }
        p
    }

    /// Energy per second of the group's frames running `means` at `point` (none: unknown, infinite).
    fn energy_w(&self, point: Option<&PowerPoint>, g: &Group, means: &[f32; MAX_MODELS], phi: f32) -> f32 {
        let Some(point) = point else {
            return f32::INFINITY;
        };
        let (ids, n) = g;
        let mut watts = 0.0;
        for &k in &ids[..*n] {
            let others: f32 =
                ids[..*n].iter().filter(|&&j| j != k).map(|&j| means[j] / self.specs[j].goal.slot_ms()).sum();
            let slot = self.specs[k].goal.slot_ms();
            let wall = shared_latency_ms(means[k], others, phi);
            watts += PowerTable::frame_energy_j(point, means[k], slot - wall) / (slot * 1e-3);
        }
        watts
    }

    /// The best configuration of `unit`'s group at `point`'s clock (none: at the unit's clock),
    /// whose front there is `cands`, with each model `k` planned with tail factor `tails[k]`.
    fn best_at(
        &self,
        unit: Unit,
        point: Option<&PowerPoint>,
        g: &Group,
        cands: &[Candidate],
        phi: f32,
        tails: &[f32; MAX_MODELS],
    ) -> Option<Choice> {
        let (ids, n) = g;
        let mut models =
            [PlanModel { cands, unit, target_ms: 0.0, slot_ms: 1.0, priority: 1.0, tail: 1.0 }; MAX_MODELS];
        for (i, &k) in ids[..*n].iter().enumerate() {
            let goal = self.specs[k].goal;
            models[i] = PlanModel {
                target_ms: goal.target_ms,
                slot_ms: goal.slot_ms(),
                priority: goal.priority,
                tail: tails[k],
                ..models[i]
            };
        }
        let mut external = [0.0; 2];
        external[unit.index()] = phi;
        let p = plan(&models[..*n], external)?;
        let mut c = Choice {
            clock: point.map_or(self.clock[unit.index()], |p| p.freq_khz),
            entries: [0; MAX_MODELS],
            means: [0.0; MAX_MODELS],
            score: p.score,
            energy_w: 0.0,
            all_fit: p.all_fit,
        };
        for (i, &k) in ids[..*n].iter().enumerate() {
            let cand = cands[p.pos[i]];
            c.entries[k] = usize::from(cand.entry);
            c.means[k] = cand.mean_ms;
        }
        c.energy_w = self.energy_w(point, g, &c.means, phi);
        Some(c)
    }

    /// The best configuration of `unit`'s group: at its clock, or in energy mode at the clock of
    /// least energy among those reaching the best accuracy.
    fn best(&self, unit: Unit, g: &Group, phi: f32, tails: &[f32; MAX_MODELS]) -> Option<Choice> {
        let u = unit.index();
        let Some(energy) = &self.power[u] else {
            return self.best_at(unit, None, g, &self.cands[u], phi, tails);
        };
        let mut best: Option<Choice> = None;
        let mut fallback: Option<Choice> = None;
        for (point, front) in energy.table.points().iter().zip(&energy.fronts) {
            let Some(c) = self.best_at(unit, Some(point), g, front, phi, tails) else { continue };
            if !c.all_fit {
                // Points ascend: the last one that fails is the fastest, the one to fall back on.
                fallback = Some(c);
                continue;
            }
            let better = match best {
                None => true,
                Some(b) => c.score > b.score + 1e-3 || (c.score > b.score - 1e-3 && c.energy_w < b.energy_w),
            };
            if better {
                best = Some(c);
            }
        }
        best.or(fallback)
    }

    /// Re-plan `unit`. `forced`: a goal or clock changed, so the plan may change at once.
    fn decide(&mut self, unit: Unit, forced: bool) -> Decision {
        let g = self.group(unit);
        let (ids, n) = g;
        if n == 0 {
            return Decision::STAY;
        }
        let u = unit.index();
        let phi = self.phi(unit);
        let h = self.params.hysteresis;
        let mut tails = [1.0; MAX_MODELS];
        let mut fits = true;
        for &k in &ids[..n] {
            let owed = self.owed(k);
            tails[k] = self.tail_owing(k, owed);
            // The running entries stay while they fit within the hysteresis below the margin and
            // their models owe less than `stay_owed` misses: a flicker of the estimate or one
            // miss does not make them flap.
            let stay = self.tail_owing(k, (owed - self.params.stay_owed).max(0.0)) * (1.0 - h);
            fits &= shared_latency_ms(self.mean[k], self.others(k), phi) * stay <= self.specs[k].goal.target_ms;
        }
        let upgrade_only = fits && !forced;
        if upgrade_only && self.since_change[u] < self.params.dwell && !self.recheck[u] {
            return Decision::STAY;
        }
        self.recheck[u] = false;
        for &k in &ids[..n] {
            self.planned[k] = self.est[k].value();
        }
        if upgrade_only {
            // Whatever this check finds, the next one is a dwell away (or at the next step of an
            // estimate): checking every frame would cost a plan per frame for nothing.
            self.since_change[u] = 0;
            for t in &mut tails {
                *t *= 1.0 + h;
            }
        }
        let Some(choice) = self.best(unit, &g, phi, &tails) else {
            return Decision::STAY;
        };
        let clock = self.clock[u];
        let unchanged = choice.clock == clock && ids[..n].iter().all(|&k| choice.entries[k] == self.active[k]);
        if unchanged {
            return Decision::STAY;
        }
        if upgrade_only {
            let score: f32 = ids[..n].iter().map(|&k| self.specs[k].goal.priority * self.top1(self.active[k])).sum();
            let mut means = [0.0; MAX_MODELS];
            means[..self.n].copy_from_slice(&self.mean[..self.n]);
            let point = self.power[u].as_ref().and_then(|e| e.table.at(clock));
            let energy = self.energy_w(point, &g, &means, phi);
            let more_accurate = choice.score > score + 1e-3;
            let cheaper = choice.score > score - 1e-3 && choice.energy_w < energy * (1.0 - self.params.min_saving);
            if !(more_accurate || cheaper) {
                return Decision::STAY;
            }
        }
        self.apply(unit, &g, &choice)
    }

    fn top1(&self, entry: usize) -> f32 {
        self.lut.entries().get(entry).map_or(0.0, |e| e.top1)
    }

    fn apply(&mut self, unit: Unit, g: &Group, choice: &Choice) -> Decision {
        let phis = self.phis();
        let (ids, n) = g;
        let u = unit.index();
        let mut d = Decision::STAY;
        for &k in &ids[..*n] {
            if choice.entries[k] != self.active[k] {
                debug!("dynofa: model {=usize} entry {=usize} -> {=usize}", k, self.active[k], choice.entries[k]);
                self.active[k] = choice.entries[k];
                d = d.with_switch(k, choice.entries[k]);
            }
            self.mean[k] = choice.means[k];
        }
        if choice.clock != self.clock[u] {
            debug!("dynofa: {} clock {=u32} -> {=u32} kHz", unit, self.clock[u], choice.clock);
            self.clock[u] = choice.clock;
            d = d.with_clock(unit, choice.clock);
            self.refresh(unit);
        }
        self.rescale(unit, &phis);
        for &k in &ids[..*n] {
            self.planned[k] = self.est[k].value();
        }
        self.since_change[u] = 0;
        d
    }
}

/// The relative spread of `unit` in `lut`: the median over entries of their std / mean there.
fn spread<const N: usize, const P: usize>(lut: &Lut<N, P>, unit: Unit) -> f32 {
    let mut spread: heapless::Vec<f32, N> = heapless::Vec::new();
    for e in lut.entries() {
        let (mut sum, mut count) = (0.0, 0);
        for l in e.latency.iter().filter(|l| l.unit == unit && l.mean_ms > 0.0) {
            sum += l.std_ms / l.mean_ms;
            count += 1;
        }
        if count > 0 {
            // Cannot overflow: one value per entry.
            let _ = spread.push(sum / count as f32);
        }
    }
    spread.sort_unstable_by(f32::total_cmp);
    spread.get(spread.len() / 2).copied().unwrap_or(0.0)
}

impl<const N: usize, const P: usize> Policy for Dynofa<'_, N, P> {
    fn models(&self) -> usize {
        self.n
    }

    fn entry(&self, model: usize) -> usize {
        self.active.get(model).copied().unwrap_or(0)
    }

    fn observe(&mut self, model: usize, latency_ms: f32) -> Decision {
        if model >= self.n || !(latency_ms.is_finite() && latency_ms > 0.0) || self.mean[model] <= 0.0 {
            return Decision::STAY;
        }
        let p = &self.params;
        let missed = latency_ms > self.specs[model].goal.target_ms;
        let step = self.est[model].update(latency_ms / self.mean[model]);
        let mut budget = self.budget[model] + p.miss_rate - f32::from(u8::from(missed));
        let run = self.unconfirmed[model].saturating_add(u8::from(missed));
        match step {
            // The misses that revealed a step are given back once the next frame keeps it.
            Step::Up => self.revealed[model] = run,
            // Spikes, not a step: their misses stand.
            Step::Undone => self.revealed[model] = 0,
            Step::None | Step::Down => budget += f32::from(core::mem::take(&mut self.revealed[model])),
        }
        self.unconfirmed[model] = if self.est[model].rising() { run } else { 0 };
        self.budget[model] = budget.clamp(-p.max_debt.max(0.0), p.miss_burst.max(0.0));
        let unit = self.specs[model].unit;
        let u = unit.index();
        // A step, or a fall of the estimate since the last plan, may leave room to upgrade; a fall
        // just after a step waits until the fresh average has settled, so that it is followed in
        // one switch rather than one per frame.
        let est = &self.est[model];
        let fell = est.samples() >= SETTLED && est.value() < self.planned[model] * (1.0 - p.hysteresis);
        self.recheck[u] |= step != Step::None || fell;
        self.since_change[u] = self.since_change[u].saturating_add(1);
        self.decide(unit, false)
    }

    fn set_goal(&mut self, model: usize, goal: Goal) -> Decision {
        if model >= self.n || !goal.is_valid() {
            return Decision::STAY;
        }
        let phis = self.phis();
        self.specs[model].goal = goal;
        let unit = self.specs[model].unit;
        self.rescale(unit, &phis);
        self.decide(unit, true)
    }

    fn clock_changed(&mut self, unit: Unit, khz: u32) -> Decision {
        let u = unit.index();
        if self.clock[u] == khz {
            return Decision::STAY;
        }
        let phis = self.phis();
        self.clock[u] = khz;
        self.refresh(unit);
        self.rescale(unit, &phis);
        self.decide(unit, true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::testing::{GPU, GPU_LOW, lut, lut_dvfs, noise};
    use crate::control::{PowerPoint, PowerTable};

    fn one(target: f32) -> [ModelSpec; 1] {
        [ModelSpec { unit: Unit::Gpu, goal: Goal::target(target) }]
    }

    /// (top1, mean ms at GPU), std 5% of the mean.
    const LEVELS: [(f32, f32); 6] =
        [(73.0, 40.0), (74.5, 44.0), (76.0, 48.0), (77.0, 52.0), (78.5, 56.0), (79.5, 60.0)];

    #[test]
    fn starts_on_the_most_accurate_fit_and_follows_a_slowdown() {
        let lut = lut(&LEVELS);
        let mut d = Dynofa::new(&lut, &one(70.0), [GPU.freq_khz, 0], DynofaParams::default()).unwrap();
        // Tail 1 + 3.5 * 0.05 = 1.175: 56 * 1.175 = 65.8 fits 70, 60 * 1.175 = 70.5 does not.
        assert_eq!(d.entry(0), 4);
        let mut rng = noise(1);
        for _ in 0..50 {
            let lat = LUT_MEAN[d.entry(0)] * rng();
            let _ = d.observe(0, lat);
        }
        assert_eq!(d.entry(0), 4);
        // Another application takes 30% of the GPU: 1.43x. Three frames confirm it.
        let mut switched_at = None;
        for i in 0..20 {
            let lat = LUT_MEAN[d.entry(0)] / 0.7 * rng();
            if d.observe(0, lat).switch(0).is_some() && switched_at.is_none() {
                switched_at = Some(i);
            }
        }
        assert_eq!(switched_at, Some(2));
        // 40 / 0.7 * 1.175 = 67.1 fits; 44 / 0.7 * 1.175 = 73.9 does not.
        assert_eq!(d.entry(0), 0);
        assert!((d.external_share(Unit::Gpu) - 0.3).abs() < 0.05, "{}", d.external_share(Unit::Gpu));
        // It leaves: back up as soon as the estimate steps down (three frames below the band).
        let mut back_at = None;
        for i in 0..20 {
            let lat = LUT_MEAN[d.entry(0)] * rng();
            let _ = d.observe(0, lat);
            if d.entry(0) >= 3 && back_at.is_none() {
                back_at = Some(i);
            }
        }
        assert_eq!(back_at, Some(2));
    }

    #[test]
    fn misses_beyond_the_budget_make_a_model_cautious_until_paid_back() {
        let lut = lut(&LEVELS);
        let p = DynofaParams::default();
        let mut d = Dynofa::new(&lut, &one(70.0), [GPU.freq_khz, 0], p).unwrap();
        let bold = d.tail(0).unwrap();
        assert!((bold - (1.0 + p.tail_sigmas * 0.05)).abs() < 1e-5, "{bold}");
        assert_eq!(d.entry(0), 4);
        // Five misses without a step (80 ms, between frames on time): the budget of one is spent
        // and the most it may owe is owed, so the margin grows by that many debt steps plus one
        // (counted from the last affordable miss) and a faster entry runs.
        for lat in [80.0, 55.0, 80.0, 55.0, 80.0, 55.0, 80.0, 55.0, 80.0] {
            let _ = d.observe(0, lat);
        }
        let budget = -p.max_debt;
        let cautious = 1.0 + (p.tail_sigmas + p.debt_sigmas * (1.0 - budget)) * 0.05;
        assert!((d.tail(0).unwrap() - cautious).abs() < 1e-4, "{:?} {cautious}", d.tail(0));
        assert!(d.entry(0) < 4);
        // Frames on time pay the debt back at `miss_rate` each: then the margin is bold again.
        let frames = ((1.0 - budget) / p.miss_rate).ceil() as usize;
        for _ in 0..frames {
            let lat = LUT_MEAN[d.entry(0)];
            let _ = d.observe(0, lat);
        }
        assert!((d.tail(0).unwrap() - bold).abs() < 1e-5);
        assert_eq!(d.entry(0), 4);
    }

    #[test]
    fn misses_that_reveal_a_step_cost_no_budget() {
        let lut = lut(&LEVELS);
        let mut d = Dynofa::new(&lut, &one(70.0), [GPU.freq_khz, 0], DynofaParams::default()).unwrap();
        let bold = d.tail(0).unwrap();
        // The three frames over the target are the step that the estimate then takes: charged
        // while it is unconfirmed...
        for _ in 0..2 {
            let _ = d.observe(0, 80.0);
        }
        assert!(d.tail(0).unwrap() > bold);
        let _ = d.observe(0, 80.0);
        assert!(d.entry(0) < 4);
        // ...and given back when the next frame, as slow, keeps the step.
        let _ = d.observe(0, LUT_MEAN[d.entry(0)] * 80.0 / 56.0);
        assert!((d.tail(0).unwrap() - bold).abs() < 1e-5);
    }

    const LUT_MEAN: [f32; 6] = [40.0, 44.0, 48.0, 52.0, 56.0, 60.0];

    #[test]
    fn a_new_target_is_followed_at_once_and_noise_does_not_flap() {
        let lut = lut(&LEVELS);
        let mut d = Dynofa::new(&lut, &one(70.0), [GPU.freq_khz, 0], DynofaParams::default()).unwrap();
        assert_eq!(d.set_goal(0, Goal::target(55.0)).switch(0), Some(1));
        assert_eq!(d.set_goal(0, Goal::target(80.0)).switch(0), Some(5));
        // Refused goals change nothing.
        assert!(d.set_goal(0, Goal::target(f32::NAN)).is_stay());
        assert!(d.set_goal(3, Goal::target(50.0)).is_stay());
        let mut rng = noise(2);
        let mut switches = 0;
        for _ in 0..2000 {
            let lat = LUT_MEAN[d.entry(0)] * rng();
            switches += usize::from(d.observe(0, lat).switch(0).is_some());
        }
        assert!(switches <= 4, "{switches} switches under stationary noise");
    }

    #[test]
    fn two_models_on_one_unit_are_planned_jointly() {
        let lut = lut(&LEVELS);
        let slot = |t, p, prio| ModelSpec {
            unit: Unit::Gpu,
            goal: Goal { target_ms: t, period_ms: p, floor_top1: 0.0, priority: prio },
        };
        // Alone, each would run entry 4 or 5; together their demands slow each other.
        let specs = [slot(90.0, 200.0, 2.0), slot(120.0, 200.0, 1.0)];
        let d = Dynofa::new(&lut, &specs, [GPU.freq_khz, 0], DynofaParams::default()).unwrap();
        let (a, b) = (d.entry(0), d.entry(1));
        let lat = |me: usize, other: usize| LUT_MEAN[me] / (1.0 - LUT_MEAN[other] / 200.0) * d.tail(0).unwrap();
        assert!(lat(a, b) <= 90.0 && lat(b, a) <= 120.0, "{a} {b} {} {}", lat(a, b), lat(b, a));
        // The higher-priority model gets at least as accurate an entry, and no joint choice is better.
        assert!(a >= 3, "{a} {b}");
        for x in 0..6 {
            for y in 0..6 {
                if lat(x, y) <= 90.0 && lat(y, x) <= 120.0 {
                    assert!(2.0 * LEVELS[x].0 + LEVELS[y].0 <= 2.0 * LEVELS[a].0 + LEVELS[b].0 + 1e-3);
                }
            }
        }
    }

    #[test]
    fn a_clock_drop_is_followed_and_energy_mode_lowers_the_clock() {
        let lut = lut_dvfs(&LEVELS);
        let mut d = Dynofa::new(&lut, &one(80.0), [GPU.freq_khz, 0], DynofaParams::default()).unwrap();
        assert_eq!(d.entry(0), 5);
        // Half the clock: latencies double in this LUT, only entry 0 (80 ms) is near; nothing fits.
        let dec = d.clock_changed(Unit::Gpu, GPU_LOW.freq_khz);
        assert_eq!(dec.switch(0), Some(0));
        assert!(d.clock_changed(Unit::Gpu, GPU_LOW.freq_khz).is_stay());

        let p = |f, a| PowerPoint { freq_khz: f, active_w: a, idle_w: 0.5 };
        let table = PowerTable::new(Unit::Gpu, &[p(GPU_LOW.freq_khz, 2.0), p(GPU.freq_khz, 6.0)]).unwrap();
        let goal = Goal { target_ms: 150.0, period_ms: 200.0, floor_top1: 0.0, priority: 1.0 };
        let specs = [ModelSpec { unit: Unit::Gpu, goal }];
        let mut e = Dynofa::new(&lut, &specs, [GPU.freq_khz, 0], DynofaParams::default()).unwrap().with_power(table);
        // 60 ms at the low clock is 120 ms and fits 150 with the tail: same accuracy, less energy.
        let dec = e.observe(0, 60.0);
        assert_eq!(dec.clock(Unit::Gpu), Some(GPU_LOW.freq_khz));
        assert_eq!(e.entry(0), 5);
    }

    #[test]
    fn bad_input_is_refused_without_panic() {
        let lut = lut(&LEVELS);
        assert_eq!(
            Dynofa::new(&lut, &[], [0, 0], DynofaParams::default()).unwrap_err(),
            ControlError::ModelCount { found: 0 }
        );
        let cpu = [ModelSpec { unit: Unit::Cpu, goal: Goal::target(10.0) }];
        assert_eq!(
            Dynofa::new(&lut, &cpu, [0, 0], DynofaParams::default()).unwrap_err(),
            ControlError::NoEntries { model: 0 }
        );
        let mut d = Dynofa::new(&lut, &one(70.0), [GPU.freq_khz, 0], DynofaParams::default()).unwrap();
        for x in [f32::NAN, -1.0, 0.0, f32::INFINITY] {
            assert!(d.observe(0, x).is_stay());
        }
        assert!(d.observe(7, 50.0).is_stay());
    }
}
