//! OFA's evolutionary search (`ofa.nas.search_algorithm.EvolutionFinder`, Cai et al., ICLR 2020):
//! regularised evolution that maximises predicted top-1 under a latency constraint, run over a list
//! of constraints in parallel to give a Pareto set.
//!
//! The algorithm is OFA's: a random population of feasible sub-networks; each generation keeps the
//! best quarter as parents and refills the population with mutations (resolution resampled with
//! probability 0.5, each block's kernel and expand ratio and each unit's depth with 0.1) and
//! crossovers (each field taken from either parent), every child redrawn until it meets the
//! constraint. Two things differ, neither changing what is searched: predictions are cached by
//! canonical sub-network (the population repeats itself), and the best of the final population is
//! considered too (OFA stops reading before the last children are ranked).

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use dynofa_core::arch::{DEPTHS, EXPAND_RATIOS, KERNEL_SIZES, NUM_BLOCKS, NUM_UNITS};
use dynofa_core::predictor::{PredictorError, SUPERNET, resolution_bucket};
use dynofa_core::{SubnetConfig, SubnetId};
use rand::rngs::ChaCha8Rng;
use rand::{RngExt, SeedableRng};

use super::DesignError;
use super::latency::LatencyModel;
use super::predictor::{BatchPredictor, PredictorWeights};

/// Random draws allowed for one feasible sub-network before the constraint is declared too tight.
const MAX_DRAWS: u64 = 1_000_000;
/// Random samples used to place automatic constraints.
const QUANTILE_SAMPLES: usize = 10_000;

/// The search's hyper-parameters (OFA's defaults).
#[derive(Debug, Clone, PartialEq)]
pub struct SearchParams {
    /// Population size.
    pub population: usize,
    /// Generations (OFA's `max_time_budget`).
    pub generations: usize,
    /// Fraction of the population kept as parents.
    pub parent_ratio: f64,
    /// Fraction of the children made by mutation (the rest by crossover).
    pub mutation_ratio: f64,
    /// Probability of resampling each block's kernel and expand ratio, and each unit's depth.
    pub mutate_prob: f64,
    /// Probability of resampling the resolution.
    pub resolution_mutate_prob: f64,
    /// Input resolutions to choose from.
    pub resolutions: Vec<u16>,
    /// Seed of every random draw.
    pub seed: u64,
    /// Independent searches per constraint, the best kept (1: OFA's single run). A population of
    /// 100 sometimes converges early; the best of a few runs is steadier than one run.
    pub restarts: usize,
}

impl Default for SearchParams {
    fn default() -> Self {
        SearchParams {
            population: 100,
            generations: 500,
            parent_ratio: 0.25,
            mutation_ratio: 0.5,
            mutate_prob: 0.1,
            resolution_mutate_prob: 0.5,
            resolutions: vec![160, 176, 192, 208, 224],
            seed: 0,
            restarts: 1,
        }
    }
}

/// A sub-network the search found, with its predicted top-1 (%) and table latency (ms).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Found {
    /// The sub-network.
    pub config: SubnetConfig,
    /// Predicted top-1 in percent.
    pub top1: f32,
    /// Latency in ms from the model the search was constrained by.
    pub latency_ms: f64,
}

/// One search to run: which latency model, under which constraint, on which random stream.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Job {
    /// Index into the models passed to [`search_all`].
    pub model: usize,
    /// Latency constraint in ms.
    pub constraint_ms: f64,
    /// Random stream of the seed this search draws from (give each search its own).
    pub stream: u64,
}

/// Progress of a running search: job index and generations done.
pub type Progress<'a> = &'a (dyn Fn(usize, usize) + Sync);

/// OFA's random draws over the search space (`MobileNetArchEncoder`'s sample and mutate, and
/// `EvolutionFinder`'s crossover).
struct Sampler<'a> {
    params: &'a SearchParams,
    rng: ChaCha8Rng,
}

impl<'a> Sampler<'a> {
    /// `stream` selects an independent random stream of `params.seed`, so that searches run in
    /// any order or on any thread give the same results.
    fn new(params: &'a SearchParams, stream: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(params.seed);
        rng.set_stream(stream);
        Sampler { params, rng }
    }

    fn pick<T: Copy>(&mut self, options: &[T]) -> T {
        options[self.rng.random_range(0..options.len())]
    }

    fn random_config(&mut self) -> SubnetConfig {
        let mut c = SubnetConfig::uniform(3, 3, 2, 0);
        for b in 0..NUM_BLOCKS {
            c.ks[b] = self.pick(&KERNEL_SIZES);
            c.e[b] = self.pick(&EXPAND_RATIOS);
        }
        for u in 0..NUM_UNITS {
            c.d[u] = self.pick(&DEPTHS);
        }
        c.r = self.pick(&self.params.resolutions);
        c
    }

    fn mutate(&mut self, parent: &SubnetConfig) -> SubnetConfig {
        let mut c = *parent;
        let p = self.params.mutate_prob;
        if self.rng.random_bool(self.params.resolution_mutate_prob) {
            c.r = self.pick(&self.params.resolutions);
        }
        for b in 0..NUM_BLOCKS {
            if self.rng.random_bool(p) {
                c.ks[b] = self.pick(&KERNEL_SIZES);
                c.e[b] = self.pick(&EXPAND_RATIOS);
            }
        }
        for u in 0..NUM_UNITS {
            if self.rng.random_bool(p) {
                c.d[u] = self.pick(&DEPTHS);
            }
        }
        c
    }

    fn crossover(&mut self, a: &SubnetConfig, b: &SubnetConfig) -> SubnetConfig {
        let mut c = *a;
        for i in 0..NUM_BLOCKS {
            c.ks[i] = if self.rng.random_bool(0.5) { a.ks[i] } else { b.ks[i] };
            c.e[i] = if self.rng.random_bool(0.5) { a.e[i] } else { b.e[i] };
        }
        for u in 0..NUM_UNITS {
            c.d[u] = if self.rng.random_bool(0.5) { a.d[u] } else { b.d[u] };
        }
        c.r = if self.rng.random_bool(0.5) { a.r } else { b.r };
        c
    }
}

struct Evolution<'m, 'p> {
    model: &'m LatencyModel,
    predictor: BatchPredictor<'p>,
    sampler: Sampler<'m>,
    constraint_ms: f64,
    cache: HashMap<SubnetId, f32>,
}

impl<'m> Evolution<'m, '_> {
    /// Draw with `make` until the sub-network meets the constraint (OFA's `while True` loops).
    fn feasible(
        &mut self,
        mut make: impl FnMut(&mut Sampler<'m>) -> SubnetConfig,
    ) -> Result<(SubnetConfig, f64), DesignError> {
        for _ in 0..MAX_DRAWS {
            let c = make(&mut self.sampler);
            let l = self.model.latency(&c).ok_or(DesignError::ResolutionNotCovered { r: c.r })?;
            if l <= self.constraint_ms {
                return Ok((c, l));
            }
        }
        Err(DesignError::Infeasible {
            constraint_ms: self.constraint_ms,
            draws: MAX_DRAWS,
            fastest_ms: self.model.range().0,
        })
    }

    /// Score children, predicting only those not seen before.
    fn score(&mut self, children: &[(SubnetConfig, f64)]) -> Result<Vec<Found>, DesignError> {
        let ids: Vec<SubnetId> = children.iter().map(|(c, _)| c.id()).collect();
        let (mut fresh, mut fresh_ids) = (Vec::new(), Vec::new());
        for (&(c, _), &id) in children.iter().zip(&ids) {
            if !self.cache.contains_key(&id) && !fresh_ids.contains(&id) {
                fresh.push(c);
                fresh_ids.push(id);
            }
        }
        let mut top1 = Vec::with_capacity(fresh.len());
        self.predictor.predict(&fresh, &mut top1)?;
        self.cache.extend(fresh_ids.into_iter().zip(top1));
        Ok(children
            .iter()
            .zip(&ids)
            .map(|(&(config, latency_ms), id)| Found { config, top1: self.cache[id], latency_ms })
            .collect())
    }

    fn run(mut self, progress: &dyn Fn(usize)) -> Result<Found, DesignError> {
        let p = self.sampler.params;
        // Python's round() of these products: the ratios are exact quarters and halves by default.
        let mutations = (p.mutation_ratio * p.population as f64).round() as usize;
        let parents_size = ((p.parent_ratio * p.population as f64).round() as usize).max(1);
        let mut children = Vec::with_capacity(p.population);
        for _ in 0..p.population {
            children.push(self.feasible(Sampler::random_config)?);
        }
        let mut population = self.score(&children)?;
        let by_top1 = |a: &Found, b: &Found| b.top1.total_cmp(&a.top1);
        for generation in 0..p.generations {
            population.sort_by(by_top1);
            population.truncate(parents_size);
            children.clear();
            for _ in 0..mutations {
                let parent = population[self.sampler.rng.random_range(0..parents_size)].config;
                children.push(self.feasible(|s| s.mutate(&parent))?);
            }
            for _ in mutations..p.population {
                let a = population[self.sampler.rng.random_range(0..parents_size)].config;
                let b = population[self.sampler.rng.random_range(0..parents_size)].config;
                children.push(self.feasible(|s| s.crossover(&a, &b))?);
            }
            population.extend(self.score(&children)?);
            progress(generation + 1);
        }
        population.sort_by(by_top1);
        Ok(population[0])
    }
}

/// Run one search: the most accurate sub-network under `constraint_ms` on `model`, drawing from
/// random stream `stream` of `params.seed`.
pub fn evolve(
    model: &LatencyModel,
    weights: &PredictorWeights,
    constraint_ms: f64,
    params: &SearchParams,
    stream: u64,
    progress: &dyn Fn(usize),
) -> Result<Found, DesignError> {
    for &r in &params.resolutions {
        SubnetConfig::uniform(3, 3, 2, r).validate(&SUPERNET).map_err(PredictorError::Config)?;
    }
    let predictor = weights.predictor();
    let evolution = Evolution {
        model,
        predictor: BatchPredictor::new(&predictor),
        sampler: Sampler::new(params, stream),
        constraint_ms,
        cache: HashMap::new(),
    };
    evolution.run(progress)
}

/// Run every job `params.restarts` times on `threads` threads and keep each job's best (ties: the
/// faster); results come back in job order, whatever the threads did. Restart `j` of a job draws
/// from stream `job.stream + (j << 48)`.
pub fn search_all(
    models: &[&LatencyModel],
    jobs: &[Job],
    weights: &PredictorWeights,
    params: &SearchParams,
    threads: usize,
    progress: Progress<'_>,
) -> Result<Vec<Found>, DesignError> {
    let restarts = params.restarts.max(1);
    let runs: Vec<(usize, u64)> =
        (0..jobs.len()).flat_map(|i| (0..restarts as u64).map(move |j| (i, jobs[i].stream + (j << 48)))).collect();
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<Result<Found, DesignError>>>> = Mutex::new(runs.iter().map(|_| None).collect());
    std::thread::scope(|s| {
        for _ in 0..threads.clamp(1, runs.len().max(1)) {
            s.spawn(|| {
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    let Some(&(i, stream)) = runs.get(n) else { break };
                    let job = &jobs[i];
                    let r = evolve(models[job.model], weights, job.constraint_ms, params, stream, &|g| progress(i, g));
                    results.lock().expect("no search thread panics while holding the lock")[n] = Some(r);
                }
            });
        }
    });
    let all: Vec<Found> = results
        .into_inner()
        .expect("threads joined")
        .into_iter()
        .map(|r| r.expect("every run ran"))
        .collect::<Result<_, _>>()?;
    let better = |a: &&Found, b: &&Found| a.top1.total_cmp(&b.top1).then(b.latency_ms.total_cmp(&a.latency_ms));
    Ok(all.chunks(restarts).map(|runs| *runs.iter().max_by(better).expect("at least one run")).collect())
}

/// How a unit's latency constraints are chosen.
#[derive(Debug, Clone, PartialEq)]
pub enum Constraints {
    /// `n` constraints spanning the unit's range: the first at the 1% quantile of OFA's random
    /// samples (lower ones starve its rejection sampling), the last at the latency of the most
    /// accurate sub-network found without a constraint, evenly spaced between.
    Auto(usize),
    /// These constraints in ms.
    List(Vec<f64>),
}

/// Quantile of random samples where automatic constraint lists start.
const AUTO_LOW_QUANTILE: f64 = 0.01;

/// The search of one processing unit.
#[derive(Debug, Clone)]
pub struct UnitSearch<'a> {
    /// The unit's latency model.
    pub model: &'a LatencyModel,
    /// Its constraints.
    pub constraints: Constraints,
}

/// What the searches of one unit found.
#[derive(Debug, Clone, PartialEq)]
pub struct UnitResult {
    /// The constraints searched, in ms.
    pub constraints: Vec<f64>,
    /// The best sub-network under each constraint.
    pub found: Vec<Found>,
}

/// Number of single evolutions [`pareto_sets`] runs, restarts included (for progress reports).
pub fn search_count(units: &[UnitSearch<'_>], params: &SearchParams) -> usize {
    let constraints: usize = units
        .iter()
        .map(|u| match &u.constraints {
            Constraints::Auto(n) => (*n).max(1),
            Constraints::List(l) => l.len(),
        })
        .sum();
    constraints * params.restarts.max(1)
}

/// Search every unit over its constraints, on `threads` threads. Every search draws from its own
/// random stream of `params.seed`, so the results do not depend on the thread count.
/// `progress` is called after every generation of every search.
pub fn pareto_sets(
    units: &[UnitSearch<'_>],
    weights: &PredictorWeights,
    params: &SearchParams,
    threads: usize,
    progress: &(dyn Fn() + Sync),
) -> Result<Vec<UnitResult>, DesignError> {
    let models: Vec<&LatencyModel> = units.iter().map(|u| u.model).collect();
    // Streams: unit u's k-th search uses 1024 * u + k; its quantile draws use 1024 * u + 1023.
    let stream = |u: usize, k: usize| (1024 * u + k) as u64;
    let tick = |_: usize, _: usize| progress();
    // Phase 1: the unconstrained searches that end automatic ranges.
    let auto: Vec<usize> = (0..units.len()).filter(|&u| matches!(units[u].constraints, Constraints::Auto(_))).collect();
    let top_jobs: Vec<Job> =
        auto.iter().map(|&u| Job { model: u, constraint_ms: units[u].model.range().1, stream: stream(u, 0) }).collect();
    let tops = search_all(&models, &top_jobs, weights, params, threads, &tick)?;
    // Phase 2: everything else.
    let mut results: Vec<UnitResult> = Vec::new();
    let mut jobs = Vec::new();
    for (u, unit) in units.iter().enumerate() {
        let constraints = match &unit.constraints {
            Constraints::List(list) => list.clone(),
            Constraints::Auto(n) => {
                let top = tops[auto.iter().position(|&a| a == u).expect("auto units were searched")];
                let lo = random_quantile(unit.model, params, AUTO_LOW_QUANTILE, stream(u, 1023))?.min(top.latency_ms);
                let n = (*n).max(1);
                let step = if n > 1 { (top.latency_ms - lo) / (n - 1) as f64 } else { 0.0 };
                (0..n).map(|i| if i + 1 == n { top.latency_ms } else { lo + step * i as f64 }).collect()
            }
        };
        for (k, &c) in constraints.iter().enumerate() {
            // The last automatic constraint is the unconstrained search's own result.
            let is_top = matches!(unit.constraints, Constraints::Auto(_)) && k + 1 == constraints.len();
            if !is_top {
                jobs.push((u, Job { model: u, constraint_ms: c, stream: stream(u, k + 1) }));
            }
        }
        results.push(UnitResult { constraints, found: Vec::new() });
    }
    let plain: Vec<Job> = jobs.iter().map(|&(_, j)| j).collect();
    let found = search_all(&models, &plain, weights, params, threads, &tick)?;
    for ((u, _), f) in jobs.iter().zip(found) {
        results[*u].found.push(f);
    }
    for (i, &u) in auto.iter().enumerate() {
        results[u].found.push(tops[i]);
    }
    Ok(results)
}

/// The resolutions worth searching among `available`: the smallest of each of the predictor's
/// resolution buckets. The predictor cannot tell resolutions of one bucket apart, and a larger
/// input never runs faster, so the others can only lose.
pub fn predictor_resolutions(available: &[u16]) -> Vec<u16> {
    let mut sorted = available.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut out: Vec<u16> = Vec::new();
    for r in sorted {
        if out.last().is_none_or(|&last| resolution_bucket(last) != resolution_bucket(r)) {
            out.push(r);
        }
    }
    out
}

/// The latency below which a fraction `q` of OFA's random samples fall (deterministic in `seed`).
///
/// Automatic constraint lists start here: lower constraints starve OFA's rejection sampling.
pub fn random_quantile(model: &LatencyModel, params: &SearchParams, q: f64, stream: u64) -> Result<f64, DesignError> {
    let mut sampler = Sampler::new(params, stream);
    let mut lat = (0..QUANTILE_SAMPLES)
        .map(|_| {
            let c = sampler.random_config();
            model.latency(&c).ok_or(DesignError::ResolutionNotCovered { r: c.r })
        })
        .collect::<Result<Vec<f64>, _>>()?;
    lat.sort_by(f64::total_cmp);
    Ok(lat[((q * QUANTILE_SAMPLES as f64) as usize).min(QUANTILE_SAMPLES - 1)])
}

/// `n` sub-networks drawn the way OFA's search draws its first population (uniform over every
/// kernel, expand ratio, depth and `params.resolutions`), from random stream `stream` of `params.seed`.
pub fn random_configs(params: &SearchParams, stream: u64, n: usize) -> Vec<SubnetConfig> {
    let mut sampler = Sampler::new(params, stream);
    (0..n).map(|_| sampler.random_config()).collect()
}

/// The Pareto front of a set of found sub-networks: none is both slower and no more accurate than
/// another; duplicates are dropped. Fastest first.
pub fn pareto(found: &[Found]) -> Vec<Found> {
    let mut order = found.to_vec();
    order.sort_by(|a, b| a.latency_ms.total_cmp(&b.latency_ms).then(b.top1.total_cmp(&a.top1)));
    let mut front: Vec<Found> = Vec::new();
    for f in order {
        if front.last().is_none_or(|last| f.top1 > last.top1) {
            front.push(f);
        }
    }
    front
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::design::testdata::{gpu_tables, nets_6};
    use dynofa_core::Supernet;

    fn gpu_model(params: &SearchParams) -> LatencyModel {
        gpu_tables().compile(&Supernet::W1_2, &params.resolutions).unwrap()
    }

    /// The bar: on the Xavier NX GPU tables, the search's set matches or beats each of
    /// Dynamic-OFA's six stored levels (at least their predicted top-1 at no more table latency).
    /// OFA's settings (population 100, 500 generations), one constraint per level's latency, best of
    /// 4 runs each: a single run misses level 5 (84.79 % at 30.171 ms) for about one seed in three.
    #[test]
    fn search_dominates_dynamic_ofa_levels_on_xavier_nx_gpu() {
        let params = SearchParams { restarts: 4, ..SearchParams::default() };
        let model = gpu_model(&params);
        let weights = PredictorWeights::embedded().unwrap();
        let p = weights.predictor();
        let levels = nets_6();
        let jobs: Vec<Job> = levels
            .iter()
            .enumerate()
            .map(|(i, l)| Job { model: 0, constraint_ms: l.lut_gpu_ms, stream: i as u64 })
            .collect();
        let found = search_all(&[&model], &jobs, &weights, &params, 2, &|_, _| {}).unwrap();
        let front = pareto(&found);
        for level in &levels {
            let level_top1 = p.predict(&level.config).unwrap();
            let level_ms = model.latency(&level.config).unwrap();
            let best =
                front.iter().filter(|f| f.latency_ms <= level_ms + 1e-9).map(|f| f.top1).fold(f32::MIN, f32::max);
            assert!(best >= level_top1, "level {}: {level_top1} % at {level_ms} ms, best found {best} %", level.level);
        }
    }

    #[test]
    fn searches_are_deterministic_and_meet_their_constraint() {
        let params = SearchParams { generations: 30, population: 40, ..SearchParams::default() };
        let model = gpu_model(&params);
        let weights = PredictorWeights::embedded().unwrap();
        let jobs = [Job { model: 0, constraint_ms: 20.0, stream: 0 }, Job { model: 0, constraint_ms: 24.0, stream: 1 }];
        let a = search_all(&[&model], &jobs, &weights, &params, 2, &|_, _| {}).unwrap();
        let b = search_all(&[&model], &jobs, &weights, &params, 1, &|_, _| {}).unwrap();
        assert_eq!(a, b);
        for (f, j) in a.iter().zip(&jobs) {
            assert!(f.latency_ms <= j.constraint_ms);
            assert_eq!(model.latency(&f.config), Some(f.latency_ms));
        }
        let other = SearchParams { seed: 1, ..params.clone() };
        assert_ne!(search_all(&[&model], &jobs, &weights, &other, 2, &|_, _| {}).unwrap(), a);
    }

    #[test]
    fn too_tight_constraints_fail_with_the_fastest_latency() {
        let params = SearchParams { generations: 1, ..SearchParams::default() };
        let model = gpu_model(&params);
        let weights = PredictorWeights::embedded().unwrap();
        let err = evolve(&model, &weights, 5.0, &params, 0, &|_| {}).unwrap_err();
        assert!(matches!(err, DesignError::Infeasible { .. }), "{err}");
        assert!(err.to_string().contains("5.000 ms"), "{err}");
    }

    #[test]
    fn one_resolution_per_predictor_bucket() {
        let all: Vec<u16> = (160..=224).step_by(4).collect();
        assert_eq!(predictor_resolutions(&all), vec![160, 176, 192, 208, 224]);
        assert_eq!(predictor_resolutions(&[200, 164, 168, 224]), vec![164, 200, 224]);
    }

    #[test]
    fn pareto_drops_dominated_and_duplicates() {
        let c = SubnetConfig::uniform(3, 3, 2, 160);
        let f = |top1, latency_ms| Found { config: c, top1, latency_ms };
        let front = pareto(&[f(80.0, 20.0), f(79.0, 21.0), f(82.0, 25.0), f(80.0, 20.0), f(78.0, 15.0)]);
        assert_eq!(front, vec![f(78.0, 15.0), f(80.0, 20.0), f(82.0, 25.0)]);
    }
}
