//! The joint choice of sub-networks for models that share processing units.
//!
//! Interference model: a unit is shared in proportion to demand. A model whose frame needs `w` ms
//! of a unit alone, with a share `phi` of the unit taken by other applications and co-located
//! models that each need `w_j` ms every `slot_j` ms, takes `w / (1 - phi - sum(w_j / slot_j))`.
//! A candidate fits when that latency times the unit's tail factor (the noise's 99th-percentile
//! ratio) is within the model's target. [`plan`] maximises the priority-weighted top-1 over all
//! models such that every model fits, by a depth-first search that prunes with the best top-1
//! still reachable; for one model it is a scan that stops at the first fit.

use crate::control::MAX_MODELS;
use crate::lut::{Lut, OperatingPoint, Unit};

/// Less than this share of a unit left over is treated as this much, so that an overloaded unit
/// predicts very long frames rather than a division by zero or a negative latency.
const MIN_FREE_SHARE: f32 = 0.05;

/// One choice for a model at one clock: a LUT entry with its top-1 and its latency alone on the unit.
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Candidate {
    /// Index of the entry in the LUT.
    pub entry: u16,
    /// Its top-1 in percent.
    pub top1: f32,
    /// Its mean latency in ms alone on the unit at the clock considered.
    pub mean_ms: f32,
}

/// The Pareto front of `lut` on `op` (no candidate is both slower and less accurate than
/// another), most accurate first, written into `out`.
pub fn candidates<const N: usize, const P: usize>(
    lut: &Lut<N, P>,
    op: OperatingPoint,
    out: &mut heapless::Vec<Candidate, N>,
) {
    out.clear();
    for (i, e) in lut.entries().iter().enumerate() {
        if let Some(mean_ms) = e.predict_ms(op) {
            // Cannot overflow: the LUT holds at most N entries.
            let _ = out.push(Candidate { entry: i as u16, top1: e.top1, mean_ms });
        }
    }
    // Fastest first, and among equal latencies the most accurate first so that it shadows the rest.
    out.sort_unstable_by(|a, b| a.mean_ms.total_cmp(&b.mean_ms).then(b.top1.total_cmp(&a.top1)));
    let mut kept = 0;
    let mut best = f32::NEG_INFINITY;
    for i in 0..out.len() {
        if out[i].top1 > best {
            best = out[i].top1;
            out[kept] = out[i];
            kept += 1;
        }
    }
    out.truncate(kept);
    out.reverse();
}

/// One model as [`plan`] sees it.
#[derive(Debug, Clone, Copy)]
pub struct PlanModel<'c> {
    /// Its choices, most accurate first (as [`candidates`] writes them), at the unit's clock.
    pub cands: &'c [Candidate],
    /// The unit it runs on.
    pub unit: Unit,
    /// Latency target in ms.
    pub target_ms: f32,
    /// Frame slot in ms (see [`crate::control::Goal::slot_ms`]): its demand on the unit is `mean / slot`.
    pub slot_ms: f32,
    /// Weight of its top-1 in the objective.
    pub priority: f32,
    /// Ratio of the frame latency it plans for to the mean: its margin against noise.
    pub tail: f32,
}

impl PlanModel<'_> {
    fn share(&self, pos: usize) -> f32 {
        self.cands[pos].mean_ms / self.slot_ms
    }
}

/// Latency in ms of a model needing `mean_ms` alone when co-located demand is `others` and other
/// applications take `external` of the unit (negative: the unit runs faster than profiled).
pub fn shared_latency_ms(mean_ms: f32, others: f32, external: f32) -> f32 {
    mean_ms / (1.0 - external - others).max(MIN_FREE_SHARE)
}

/// The outcome of [`plan`].
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Plan {
    /// Position in each model's `cands` of its choice.
    pub pos: [usize; MAX_MODELS],
    /// The priority-weighted top-1 sum.
    pub score: f32,
    /// Whether every model fits its target (otherwise the lowest-priority models that could not
    /// fit run their fastest candidate).
    pub all_fit: bool,
}

struct Search<'a, 'c> {
    models: &'a [PlanModel<'c>],
    /// Share of each unit other applications take.
    external: [f32; 2],
    /// Models whose target is given up: they run their fastest candidate.
    relaxed: [bool; MAX_MODELS],
    pos: [usize; MAX_MODELS],
    best: Option<([usize; MAX_MODELS], f32)>,
}

impl Search<'_, '_> {
    /// Demand of model `j` when models up to `depth` are placed and the rest run their fastest.
    fn demand(&self, j: usize, depth: usize) -> f32 {
        let m = &self.models[j];
        if j <= depth { m.share(self.pos[j]) } else { m.share(m.cands.len() - 1) }
    }

    /// Whether model `k` fits with models up to `depth` placed.
    fn fits(&self, k: usize, depth: usize) -> bool {
        let m = &self.models[k];
        let mut others = 0.0;
        for j in 0..self.models.len() {
            if j != k && self.models[j].unit == m.unit {
                others += self.demand(j, depth);
            }
        }
        shared_latency_ms(m.cands[self.pos[k]].mean_ms, others, self.external[m.unit.index()]) * m.tail <= m.target_ms
    }

    fn go(&mut self, depth: usize, score: f32) {
        let n = self.models.len();
        if depth == n {
            if self.best.is_none_or(|(_, s)| score > s) {
                self.best = Some((self.pos, score));
            }
            return;
        }
        let rest: f32 = self.models[depth + 1..].iter().map(|m| m.priority * m.cands[0].top1).sum();
        let m = self.models[depth];
        let alone = !self.models.iter().enumerate().any(|(j, o)| j != depth && o.unit == m.unit);
        if alone && !self.relaxed[depth] {
            // Nothing else on the unit: along the front latency falls as accuracy falls, so the
            // first candidate that fits is the best, found by bisection.
            let external = self.external[m.unit.index()];
            let p = m.cands.partition_point(|c| shared_latency_ms(c.mean_ms, 0.0, external) * m.tail > m.target_ms);
            if p < m.cands.len() {
                self.pos[depth] = p;
                self.go(depth + 1, score + m.priority * m.cands[p].top1);
            }
            return;
        }
        let first = if self.relaxed[depth] { m.cands.len() - 1 } else { 0 };
        for p in first..m.cands.len() {
            let s = score + m.priority * m.cands[p].top1;
            // Candidates are most accurate first: once this one cannot beat the best, none can.
            if self.best.is_some_and(|(_, b)| s + rest <= b) {
                break;
            }
            self.pos[depth] = p;
            let unit = m.unit;
            let ok = (0..=depth).all(|k| self.relaxed[k] || self.models[k].unit != unit || self.fits(k, depth));
            if ok {
                self.go(depth + 1, s);
            }
        }
    }
}

/// Choose one candidate per model, maximising the priority-weighted top-1 such that every model
/// fits; when that is impossible, give up the targets of the lowest-priority models one by one
/// (they run their fastest candidate) until the rest fit. `None` only when a model has no
/// candidate or there are more than [`MAX_MODELS`] models. `external` is the share of each unit
/// (by [`Unit::index`]) that other applications take.
pub fn plan(models: &[PlanModel<'_>], external: [f32; 2]) -> Option<Plan> {
    if models.len() > MAX_MODELS || models.iter().any(|m| m.cands.is_empty()) {
        return None;
    }
    let mut search = Search { models, external, relaxed: [false; MAX_MODELS], pos: [0; MAX_MODELS], best: None };
    loop {
        search.go(0, 0.0);
        if let Some((pos, score)) = search.best {
            let all_fit = !search.relaxed.iter().any(|&r| r);
            return Some(Plan { pos, score, all_fit });
        }
        // Give up the lowest-priority target still held (the later model among equals).
        let k = (0..models.len())
            .filter(|&k| !search.relaxed[k])
            .min_by(|&a, &b| models[a].priority.total_cmp(&models[b].priority).then(b.cmp(&a)))?;
        search.relaxed[k] = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::testing::{GPU, lut};

    #[test]
    fn candidates_are_the_front_most_accurate_first() {
        // (top1, ms): entry 2 is dominated by entry 1.
        let lut = lut(&[(75.0, 10.0), (78.0, 15.0), (77.0, 20.0), (80.0, 25.0)]);
        let mut c = heapless::Vec::new();
        candidates(&lut, GPU, &mut c);
        let order: heapless::Vec<u16, 8> = c.iter().map(|c| c.entry).collect();
        assert_eq!(&order[..], &[3, 1, 0]);
    }

    fn view(share: f32) -> [f32; 2] {
        [share, 0.0]
    }

    #[test]
    fn one_model_takes_the_most_accurate_fit() {
        let lut = lut(&[(75.0, 10.0), (78.0, 15.0), (80.0, 25.0)]);
        let mut c = heapless::Vec::<_, 16>::new();
        candidates(&lut, GPU, &mut c);
        let m = PlanModel { cands: &c, unit: Unit::Gpu, target_ms: 20.0, slot_ms: 20.0, priority: 1.0, tail: 1.25 };
        let p = plan(&[m], view(0.0)).unwrap();
        assert!(p.all_fit);
        assert_eq!(c[p.pos[0]].entry, 1);
        // A third of the unit taken: 15 ms becomes 22.5 ms, only the 10 ms entry fits.
        let p = plan(&[m], view(1.0 / 3.0)).unwrap();
        assert_eq!(c[p.pos[0]].entry, 0);
        // Nothing fits: the fastest runs and the plan says so.
        let p = plan(&[PlanModel { target_ms: 5.0, ..m }], view(0.0)).unwrap();
        assert!(!p.all_fit);
        assert_eq!(c[p.pos[0]].entry, 0);
    }

    /// Every joint choice of two models, for comparison with the search.
    fn brute(models: &[PlanModel<'_>; 2], external: [f32; 2]) -> Option<f32> {
        let mut best: Option<f32> = None;
        for a in 0..models[0].cands.len() {
            for b in 0..models[1].cands.len() {
                let pos = [a, b];
                let fit = (0..2).all(|k| {
                    let o = 1 - k;
                    let others = if models[o].unit == models[k].unit { models[o].share(pos[o]) } else { 0.0 };
                    let m = &models[k];
                    shared_latency_ms(m.cands[pos[k]].mean_ms, others, external[m.unit.index()]) * m.tail <= m.target_ms
                });
                if fit {
                    let s = models[0].priority * models[0].cands[a].top1 + models[1].priority * models[1].cands[b].top1;
                    best = Some(best.map_or(s, |x: f32| x.max(s)));
                }
            }
        }
        best
    }

    proptest::proptest! {
        #[test]
        fn two_models_match_brute_force(
            targets in (20.0f32..120.0, 20.0f32..120.0),
            slots in (30.0f32..200.0, 30.0f32..200.0),
            prio in (0.5f32..3.0, 0.5f32..3.0),
            tails in (1.1f32..1.4, 1.1f32..1.4),
            share in 0.0f32..0.5,
        ) {
            let lut = lut(&[(73.0, 9.0), (74.5, 11.0), (76.0, 14.0), (77.0, 17.0), (78.5, 22.0), (79.5, 30.0)]);
            let mut c = heapless::Vec::<_, 16>::new();
            candidates(&lut, GPU, &mut c);
            let models = [
                PlanModel { cands: &c, unit: Unit::Gpu, target_ms: targets.0, slot_ms: slots.0, priority: prio.0, tail: tails.0 },
                PlanModel { cands: &c, unit: Unit::Gpu, target_ms: targets.1, slot_ms: slots.1, priority: prio.1, tail: tails.1 },
            ];
            let p = plan(&models, view(share)).unwrap();
            match brute(&models, view(share)) {
                Some(best) => {
                    proptest::prop_assert!(p.all_fit);
                    proptest::prop_assert!((p.score - best).abs() < 1e-3, "search {} brute {}", p.score, best);
                }
                None => proptest::prop_assert!(!p.all_fit),
            }
        }
    }
}
