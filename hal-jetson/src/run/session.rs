//! One run: the platform, the engines (each model's on its unit: the CPU or the GPU), the LUT, the
//! manager, a thread per model, the machine's events on the main thread with the status line, then
//! the summary, the trace and the plot.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use dynofa_core::arch::NUM_CLASSES;
use dynofa_core::control::{Dynofa, DynofaParams, Goal, ModelSpec, Policy};
use dynofa_core::lut::{OperatingPoint, Unit};
use dynofa_core::runtime::{ModelSlot, Runtime, UnitIo};
use dynofa_core::{SubnetConfig, SubnetId, Supernet};
use dynofa_hal_sim::scenario::{Event, EventKind, ModelDef as SimModel, Scenario, TargetChange};
use dynofa_hal_sim::sim::{FrameRow, ModelSummary, PolicyKind, Run, SETTLE_FRAMES, Summary, summarize};
use dynofa_hal_sim::{SimError, plot, trace};
use dynofa_kernels::{DEFAULT_SEED, SupernetWeights};

use super::RunError;
use super::backend::{self, AnyEngine, Backend, Clocks, RunEngine, UnitEngine};
use super::console::Console;
use super::contend::{Contention, Work};
use super::frames::{FrameEngine, FrameSource};
use super::hostlut::{LutSource, prepare, unit_point};
use super::joint::{Joint, ModelView, SharedFreq, WallClock};
use super::schedule::{Amount, Ask, Levels, Script, World};
use crate::design::lutgen::{self, DesignLut};

/// What to run.
#[derive(Debug, Clone)]
pub struct Options {
    /// Models, targets, schedule and contention as asked.
    pub ask: Ask,
    /// The engine of the models whose files name no unit.
    pub backend: Backend,
    /// `--lut`.
    pub lut: Option<PathBuf>,
    /// Supernet weights (default: the seeded w1.2 weights).
    pub weights: Option<PathBuf>,
    /// An image folder (default: synthetic frames).
    pub images: Option<PathBuf>,
    /// Most images to load.
    pub max_images: usize,
    /// CPU engine threads per model (default: one per core).
    pub threads: Option<usize>,
    /// Where the trace CSV goes.
    pub trace: PathBuf,
    /// Where the SVG plot goes.
    pub plot: PathBuf,
    /// The root sysfs and procfs are looked up under (`/`; a fake tree in tests).
    pub root: PathBuf,
    /// Set (by Ctrl-C) to end the run early; what ran is still summarised and written.
    pub stop: Arc<AtomicBool>,
}

/// What a run did.
#[derive(Debug)]
pub struct Outcome {
    /// The run in the simulator's terms (what the trace and the plot show).
    pub run: Run,
    /// The cost of each switch of each model (its `activate`), ns.
    pub switch_ns: Vec<Vec<u64>>,
}

/// One model as the threads run it: its unit, period in ms, targets as asked.
#[derive(Debug, Clone)]
struct Model {
    name: String,
    unit: Unit,
    priority: f32,
    period_ms: f32,
    targets: Vec<(f64, Amount)>,
    /// The fastest sub-network's mean latency on its unit, which relative targets multiply.
    fastest_ms: f32,
}

impl Model {
    /// Target `i` in ms, with the manager's slowdown estimate of this model now.
    fn target_ms(&self, i: usize, slowdown: f32) -> f32 {
        self.targets[i].1.ms(self.fastest_ms, slowdown)
    }

    fn goal(&self, target_ms: f32) -> Goal {
        Goal { target_ms, period_ms: self.period_ms, floor_top1: 0.0, priority: self.priority }
    }
}

/// One frame as the trace records it: the simulator's row and what only a real run knows.
#[derive(Debug, Clone)]
struct Row {
    frame: FrameRow,
    index: u64,
    subnet: SubnetId,
    switch_ns: Option<u64>,
    class: usize,
    load_permille: Option<u16>,
    est_share: f32,
    contend: usize,
}

/// What the status line shows of a model.
#[derive(Debug, Clone, Default)]
struct Live {
    frames: u64,
    latency_ms: f64,
    target_ms: f32,
    entry: usize,
    done: bool,
}

type Manager<'l> = Dynofa<'l, { lutgen::LUT_CAPACITY }, { dynofa_core::lut::DEFAULT_POINTS }>;

/// What every model thread shares.
struct Ctx<'a> {
    lut: &'a DesignLut,
    joint: &'a Mutex<Joint<Manager<'a>>>,
    clocks: &'a Clocks,
    root: &'a Path,
    origin: Instant,
    end_ns: u64,
    stop: &'a AtomicBool,
    /// Bumped at every machine event: frames after one settle before deadlines count.
    epoch: &'a AtomicU64,
    /// Per unit ([`Unit::index`]): its contention and its models' lanes.
    units: [UnitCtx<'a>; 2],
    /// The unit of a schedule's `contend` that names none: the first model's.
    first_unit: Unit,
    live: &'a Mutex<Vec<Live>>,
}

/// What the models of one unit share.
#[derive(Default)]
struct UnitCtx<'a> {
    /// Its contention generator, where the schedule contends for it.
    contention: Option<&'a Contention>,
    /// A contender, singular and plural, for messages.
    contender: [&'static str; 2],
    /// Lanes of the unit its models' engines keep busy (threads, streams), to express contention
    /// as a share.
    lanes: usize,
}

impl Ctx<'_> {
    /// Contenders on `unit` now.
    fn contend(&self, unit: Unit) -> usize {
        self.units[unit.index()].contention.map_or(0, Contention::active)
    }

    /// The share of `unit` its contenders take now.
    fn share(&self, unit: Unit) -> f64 {
        share(self.contend(unit), self.units[unit.index()].lanes)
    }

    /// The unit a `contend` event acts on.
    fn contended(&self, unit: Option<Unit>) -> Unit {
        unit.unwrap_or(self.first_unit)
    }

    fn now_s(&self) -> f64 {
        self.origin.elapsed().as_secs_f64()
    }
}

/// `n` contenders, in words (`noun`: singular and plural).
fn contenders(n: usize, noun: [&str; 2]) -> String {
    format!("{n} {}", noun[usize::from(n != 1)])
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A sub-network in a message: its short id, resolution and top-1.
fn describe(lut: &DesignLut, entry: usize) -> String {
    let e = &lut.entries()[entry];
    format!("{} (r{}, top-1 {:.1}%)", &e.config.id().to_string()[..8], e.config.r, e.top1)
}

/// A model's engine as the session holds it, whatever its type ([`ModelEngine`]).
trait Engine: Send {
    fn unit(&self) -> Unit;
    fn contender_noun(&self) -> [&'static str; 2];
    fn describe(&self) -> String;
    fn lanes(&self) -> usize;
    fn ready(&mut self, configs: &[SubnetConfig]) -> Result<(), RunError>;
    /// [`prepare`] on this engine.
    fn lut(&mut self, net: &Supernet, source: &LutSource, say: &mut dyn FnMut(String)) -> Result<DesignLut, RunError>;
    fn contender(&self, index: usize) -> Result<Work, RunError>;
    /// The model's thread: [`model_loop`] over this engine.
    fn run(
        self: Box<Self>,
        k: usize,
        model: &Model,
        ctx: &Ctx<'_>,
        frames: FrameSource,
        tx: &Sender<String>,
    ) -> Result<Vec<Row>, RunError>;
}

impl<E: RunEngine + 'static> Engine for E {
    fn unit(&self) -> Unit {
        E::UNIT
    }
    fn contender_noun(&self) -> [&'static str; 2] {
        E::CONTENDER
    }
    fn describe(&self) -> String {
        RunEngine::describe(self)
    }
    fn lanes(&self) -> usize {
        RunEngine::lanes(self)
    }
    fn ready(&mut self, configs: &[SubnetConfig]) -> Result<(), RunError> {
        UnitEngine::ready(self, configs)
    }
    fn lut(&mut self, net: &Supernet, source: &LutSource, say: &mut dyn FnMut(String)) -> Result<DesignLut, RunError> {
        let name = RunEngine::describe(self);
        prepare(self, &name, net, source, 0, say)
    }
    fn contender(&self, index: usize) -> Result<Work, RunError> {
        RunEngine::contender(self, index)
    }
    fn run(
        self: Box<Self>,
        k: usize,
        model: &Model,
        ctx: &Ctx<'_>,
        frames: FrameSource,
        tx: &Sender<String>,
    ) -> Result<Vec<Row>, RunError> {
        model_loop(k, model, ctx, FrameEngine::new(*self), frames, tx)
    }
}

/// One model's engine, of any [`RunEngine`] type: a run may hold CPU and CUDA engines together.
pub struct ModelEngine(Box<dyn Engine>);

impl ModelEngine {
    /// Hold `engine`.
    pub fn new<E: RunEngine + 'static>(engine: E) -> Self {
        ModelEngine(Box::new(engine))
    }
}

impl std::fmt::Debug for ModelEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.describe())
    }
}

/// Each model's unit: its own, else `--backend`'s (one model, the demo's, when none is given).
fn model_units(opts: &Options) -> Vec<Unit> {
    match opts.ask.models.as_slice() {
        [] => vec![opts.backend.unit()],
        models => models.iter().map(|m| m.unit.unwrap_or(opts.backend.unit())).collect(),
    }
}

/// Run as `opts` asks, printing through `console`.
pub fn run(opts: &Options, console: &mut Console) -> Result<Outcome, RunError> {
    let weights = match &opts.weights {
        Some(path) => SupernetWeights::load(path)?,
        None => SupernetWeights::seeded(Supernet::W1_2, DEFAULT_SEED),
    };
    // The engines first: a machine without CUDA gets its one-line reason before anything else.
    let engines = model_units(opts)
        .into_iter()
        .map(|unit| {
            Ok(match backend::build(Backend::of(unit), &weights, opts.threads)? {
                AnyEngine::Cpu(e) => ModelEngine::new(*e),
                #[cfg(feature = "cuda")]
                AnyEngine::Cuda(e) => ModelEngine::new(*e),
            })
        })
        .collect::<Result<_, RunError>>()?;
    run_on(opts, console, &weights, engines)
}

/// Run as `opts` asks over `engines`, one per model in order (built on `weights`), each on its
/// engine's unit whatever the model files and `opts.backend` say: how `run` drives the backends,
/// and how a test drives an engine of its own.
pub fn run_on(
    opts: &Options,
    console: &mut Console,
    weights: &SupernetWeights,
    engines: Vec<ModelEngine>,
) -> Result<Outcome, RunError> {
    let mut engines: Vec<Box<dyn Engine>> = engines.into_iter().map(|e| e.0).collect();
    if engines.len() != model_units(opts).len() {
        return Err(RunError::Spec {
            origin: "run_on".into(),
            reason: format!("{} engines for {} models", engines.len(), model_units(opts).len()),
        });
    }
    let units: Vec<Unit> = engines.iter().map(|e| e.unit()).collect();
    // The units in use, in the order the models first name them, each with its first model (whose
    // engine times its LUT and makes its contenders); and each model's place among them.
    let mut used: Vec<(Unit, usize)> = Vec::new();
    let slot: Vec<usize> = units
        .iter()
        .enumerate()
        .map(|(k, &unit)| match used.iter().position(|&(u, _)| u == unit) {
            Some(i) => i,
            None => {
                used.push((unit, k));
                used.len() - 1
            }
        })
        .collect();
    let first_of = |unit: Unit| used.iter().find(|&&(u, _)| u == unit).map(|&(_, k)| k);
    let pins_gpu = opts
        .ask
        .schedule
        .as_ref()
        .is_some_and(|(f, _)| f.world.iter().any(|(_, w)| matches!(w, World::Pin(Unit::Gpu, _))));
    let clocks = &Clocks::probe(&opts.root, first_of(Unit::Gpu).is_some() || pins_gpu, console);
    let net = *weights.supernet();
    let frames = match &opts.images {
        Some(dir) => FrameSource::images(dir, opts.max_images, &mut |w| console.line(&format!("images: {w}")))?,
        None => FrameSource::synthetic(),
    };
    let weights_name = match &opts.weights {
        Some(path) => path.display().to_string(),
        None => format!("seeded OFA MobileNetV3 w{} (seed {DEFAULT_SEED:#x})", net.width_mult),
    };
    let engine_names: Vec<String> = used.iter().map(|&(_, first)| engines[first].describe()).collect();
    console.line(&format!("engine: {} per model; weights: {weights_name}", engine_names.join(" and ")));
    console.line(&format!("frames: {}", frames.describe()));

    // One LUT for the joint plan: each unit's latencies timed on (or checked against) its engine.
    let lut_given = lut_file(opts)?;
    let mut time_lut = |&(unit, first): &(Unit, usize)| {
        let source = LutSource::pick(lut_given.as_deref(), unit);
        engines[first].lut(&net, &source, &mut |s| console.line(&s))
    };
    // Not empty: there is an engine per model, and at least one model.
    let mut lut = time_lut(&used[0])?;
    for u in &used[1..] {
        lut = merge(lut, &time_lut(u)?)?;
    }
    // Per unit in use: where it plans, and its front's fastest and most accurate sub-networks.
    let mut fronts = Vec::new();
    for &(unit, _) in &used {
        let op = unit_point(&lut, unit).unwrap_or(OperatingPoint { unit, freq_khz: 0 });
        let front = lut.pareto(op);
        let point = |i: usize| {
            let e = &lut.entries()[i];
            (e.predict_ms(op).unwrap_or(f32::NAN), e.top1)
        };
        let (Some(&fast), Some(&slow)) = (front.first(), front.last()) else {
            return Err(RunError::Lut {
                name: lut.source.to_string(),
                reason: format!("no entry has a {unit} latency"),
            });
        };
        let ((fastest_ms, fastest_top1), (slowest_ms, best_top1)) = (point(fast), point(slow));
        console.line(&format!(
            "sub-networks: {} on the {unit} front, {} at top-1 {fastest_top1:.1}% to {} at {best_top1:.1}%",
            front.len(),
            ms(fastest_ms.into()),
            ms(slowest_ms.into()),
        ));
        fronts.push(UnitFront { op, slow, fastest_ms, slowest_ms });
    }
    // Every model may switch to every entry of its unit: make them all ready now (the CUDA engine
    // captures a graph per entry), so that a switch allocates nothing.
    let start = Instant::now();
    for engine in &mut engines {
        let unit = engine.unit();
        let configs: Vec<SubnetConfig> =
            lut.entries().iter().filter(|e| e.latency.iter().any(|l| l.unit == unit)).map(|e| e.config).collect();
        engine.ready(&configs)?;
    }
    if start.elapsed() > Duration::from_millis(100) {
        console.line(&format!(
            "engines: the lut's sub-networks ready on {} engine{} in {:.1} s",
            engines.len(),
            if engines.len() == 1 { "" } else { "s" },
            start.elapsed().as_secs_f64()
        ));
    }

    if opts.stop.load(Ordering::Relaxed) {
        return Err(RunError::Stopped);
    }
    // The demo's levels are the first model's unit's.
    let first = &fronts[slot[0]];
    let tail = margin(&lut, first.op, first.slow, first.slowest_ms)?;
    let script = opts.ask.script(&Levels { fastest_ms: first.fastest_ms, slowest_ms: first.slowest_ms, tail })?;
    let plan: Vec<Model> = script
        .models
        .iter()
        .zip(units.iter().zip(&slot))
        .map(|(m, (&unit, &i))| {
            let fastest_ms = fronts[i].fastest_ms;
            Model {
                name: m.name.clone(),
                unit,
                priority: m.priority,
                period_ms: m.period.ms(fastest_ms, 1.0),
                targets: m.targets.clone(),
                fastest_ms,
            }
        })
        .collect();
    let nouns: [[&'static str; 2]; 2] =
        Unit::ALL.map(|u| first_of(u).map_or(["contender", "contenders"], |k| engines[k].contender_noun()));
    say_script(console, &script, &plan, &|u| nouns[u.unwrap_or(units[0]).index()]);

    let specs: Vec<ModelSpec> =
        plan.iter().map(|m| ModelSpec { unit: m.unit, goal: m.goal(m.target_ms(0, 1.0)) }).collect();
    let mut khz = [0; 2];
    for (&(unit, _), front) in used.iter().zip(&fronts) {
        khz[unit.index()] = front.op.freq_khz;
    }
    let manager = Manager::new(&lut, &specs, khz, DynofaParams::default()).map_err(RunError::Control)?;
    let live: Vec<Live> = plan
        .iter()
        .enumerate()
        .map(|(k, m)| Live { target_ms: m.target_ms(0, 1.0), entry: manager.entry(k), ..Live::default() })
        .collect();
    let joint = Joint::new(manager);
    // A contention generator per contended unit, its contenders made by that unit's first engine.
    let mut contention: [Option<Contention>; 2] = [None, None];
    for unit in Unit::ALL {
        let most = script
            .world
            .iter()
            .filter_map(|(_, w)| match *w {
                World::Contend(u, n) if u.unwrap_or(units[0]) == unit => Some(n),
                _ => None,
            })
            .max()
            .unwrap_or(0);
        if most == 0 {
            continue;
        }
        let Some(first) = first_of(unit) else {
            return Err(RunError::Spec {
                origin: "contend".into(),
                reason: format!("contention on the {unit} needs a model on it (a model file's \"unit\")"),
            });
        };
        let workers = (0..most).map(|i| engines[first].contender(i)).collect::<Result<Vec<_>, _>>()?;
        let generator = Contention::new(workers)
            .map_err(|e| RunError::Thread(format!("cannot start the contention threads: {e}")))?;
        contention[unit.index()] = Some(generator);
    }
    let stop = &*opts.stop;
    let epoch = AtomicU64::new(0);
    let live = Mutex::new(live);
    let ctx = Ctx {
        lut: &lut,
        joint: &joint,
        clocks,
        root: &opts.root,
        origin: Instant::now(),
        end_ns: (script.duration_s * 1e9) as u64,
        stop,
        epoch: &epoch,
        units: Unit::ALL.map(|u| UnitCtx {
            contention: contention[u.index()].as_ref(),
            contender: nouns[u.index()],
            lanes: engines.iter().filter(|e| e.unit() == u).map(|e| e.lanes()).sum(),
        }),
        first_unit: units[0],
        live: &live,
    };
    let (tx, rx) = mpsc::channel::<String>();
    let results: Vec<Result<Vec<Row>, RunError>> = std::thread::scope(|s| {
        let handles: Vec<_> = engines
            .into_iter()
            .enumerate()
            .map(|(k, engine)| {
                let (ctx, model, frames, tx) = (&ctx, &plan[k], frames.clone(), tx.clone());
                std::thread::Builder::new().name(format!("model-{k}")).spawn_scoped(s, move || {
                    let result = engine.run(k, model, ctx, frames, &tx);
                    if result.is_err() {
                        ctx.stop.store(true, Ordering::Relaxed);
                    }
                    lock(ctx.live)[k].done = true;
                    result
                })
            })
            .collect();
        drop(tx);
        timeline(&ctx, &script, &plan, console, &rx);
        handles
            .into_iter()
            .enumerate()
            .map(|(k, h)| match h {
                Ok(h) => h.join().unwrap_or_else(|_| Err(RunError::Thread(format!("model {} panicked", plan[k].name)))),
                Err(e) => Err(RunError::Thread(format!("cannot start model {}'s thread: {e}", plan[k].name))),
            })
            .collect()
    });
    for msg in rx.try_iter() {
        console.line(&msg);
    }
    console.finish();
    let elapsed_s = ctx.now_s();
    for c in ctx.units.iter().filter_map(|u| u.contention) {
        c.set(0);
    }
    let mut rows = Vec::new();
    for r in results {
        rows.extend(r?);
    }
    if stop.load(Ordering::Relaxed) {
        console.line(&format!("stopped at {elapsed_s:.1} s; summarising what ran"));
    }
    rows.sort_by(|a, b| a.frame.t_ms.total_cmp(&b.frame.t_ms).then(a.frame.model.cmp(&b.frame.model)));
    let duration_s = elapsed_s.min(script.duration_s).max(1e-3);
    let engines = engine_names.join(" and ");
    let outcome = outcome(&ctx, &script, &plan, rows, duration_s, &engines, opts)?;
    say_summary(console, &outcome, &plan, &engines, opts);
    Ok(outcome)
}

/// Where a unit in use plans: its operating point, and its front's most accurate entry (`slow`),
/// fastest and slowest mean latencies.
#[derive(Debug, Clone, Copy)]
struct UnitFront {
    op: OperatingPoint,
    slow: usize,
    fastest_ms: f32,
    slowest_ms: f32,
}

/// `a` with `b`'s entries: latencies of a sub-network in both are joined, the others added.
fn merge(mut a: DesignLut, b: &DesignLut) -> Result<DesignLut, RunError> {
    let full = |name: &str| RunError::Lut { name: name.into(), reason: "the units' luts do not fit in one".into() };
    for e in b.entries() {
        match a.find(&e.config) {
            Some(i) => {
                for &l in &e.latency {
                    a.entries_mut()[i].set_latency(l).map_err(|_| full(&b.source))?;
                }
            }
            None => a.push(e.clone()).map_err(|_| full(&b.source))?,
        }
    }
    Ok(a)
}

/// The clocks to plan at first, per unit ([`Unit::index`]): `op`'s for its unit.
fn unit_clocks(op: OperatingPoint) -> [u32; 2] {
    let mut khz = [0; 2];
    khz[op.unit.index()] = op.freq_khz;
    khz
}

/// The LUT file asked for: `--lut`, else the one the model files name (one for all: the manager
/// plans every model over one LUT).
fn lut_file(opts: &Options) -> Result<Option<PathBuf>, RunError> {
    let named: Vec<&PathBuf> = opts.ask.models.iter().filter_map(|m| m.lut.as_ref()).collect();
    match (opts.lut.as_ref(), named.first()) {
        (Some(given), _) => Ok(Some(given.clone())),
        (None, Some(&first)) if named.iter().any(|p| *p != first) => Err(RunError::Spec {
            origin: "--model".into(),
            reason: "the models name different luts; the manager plans them jointly over one lut".into(),
        }),
        (None, first) => Ok(first.map(|p| (*p).clone())),
    }
}

/// The manager's margin for noise as it acts: the smallest target at which it runs the most
/// accurate sub-network `best` (mean `best_ms`), over `best_ms`. Found by bisection over targets, so
/// that the demo's targets follow whatever margin the manager keeps.
fn margin(lut: &DesignLut, op: OperatingPoint, best: usize, best_ms: f32) -> Result<f32, RunError> {
    const MOST: f32 = 8.0;
    let picks_best = |target_ms: f32| {
        let spec = [ModelSpec { unit: op.unit, goal: Goal::target(target_ms) }];
        let m = Manager::new(lut, &spec, unit_clocks(op), DynofaParams::default()).map_err(RunError::Control)?;
        Ok::<bool, RunError>(m.entry(0) == best)
    };
    let (mut lo, mut hi) = (best_ms, best_ms * MOST);
    if !picks_best(hi)? {
        return Ok(MOST);
    }
    for _ in 0..24 {
        let mid = 0.5 * (lo + hi);
        if picks_best(mid)? { hi = mid } else { lo = mid }
    }
    Ok(hi / best_ms)
}

/// Print what the run will do.
/// Print what the run will do; `contender` names a contender of the unit a `contend` event acts on.
fn say_script(
    console: &mut Console,
    script: &Script,
    plan: &[Model],
    contender: &dyn Fn(Option<Unit>) -> [&'static str; 2],
) {
    for m in plan {
        let steps: Vec<String> = (0..m.targets.len())
            .map(|i| {
                let (at, target) = (m.targets[i].0, ms(m.target_ms(i, 1.0).into()));
                match m.targets[i].1 {
                    Amount::Live(_) => format!("{target} x the speed frames show then, from {at:.1} s"),
                    _ => format!("{target} from {at:.1} s"),
                }
            })
            .collect();
        let period = if m.period_ms > 0.0 {
            format!("a frame every {}", ms(m.period_ms.into()))
        } else {
            "frames back to back".into()
        };
        console.line(&format!(
            "model {} on the {}: priority {}, {period}; target {}",
            m.name,
            m.unit,
            m.priority,
            steps.join(", ")
        ));
    }
    let events: Vec<String> = script
        .world
        .iter()
        .map(|(at, w)| match w {
            World::Contend(_, 0) => format!("contention off at {at:.1} s"),
            World::Contend(u, n) => format!("{} from {at:.1} s", contenders(*n, contender(*u))),
            World::Pin(unit, k) => format!("{unit} pinned to {k} kHz at {at:.1} s"),
        })
        .collect();
    let machine = if events.is_empty() { "no events".to_string() } else { events.join(", ") };
    console.line(&format!("run: {:.1} s; machine: {machine}", script.duration_s));
}

/// One model's thread: its runtime over the shared manager, frame after frame until the end.
fn model_loop<E: RunEngine>(
    k: usize,
    model: &Model,
    ctx: &Ctx<'_>,
    engine: FrameEngine<E>,
    mut frames: FrameSource,
    tx: &Sender<String>,
) -> Result<Vec<Row>, RunError> {
    let err = |source| RunError::Runtime { model: model.name.clone(), source };
    let clock = WallClock::new(ctx.origin);
    let period_ns = (f64::from(model.period_ms) * 1e6) as u64;
    let mut slots = [ModelSlot::new(clock, engine, clock, E::UNIT, period_ns)];
    let mut units = [UnitIo::new(E::UNIT, E::clock(ctx.clocks).map(SharedFreq::new), E::load(ctx.root, ctx.clocks))];
    let mut rt = Runtime::new(ctx.lut, &mut slots, &mut units, ModelView::new(ctx.joint, k)).map_err(err)?;
    let mut logits = vec![0.0f32; NUM_CLASSES];
    let mut rows = Vec::with_capacity(4096);
    let (mut next_target, mut target_ms) = (1, model.target_ms(0, 1.0));
    let (mut seen_epoch, mut since_change) = (0, SETTLE_FRAMES);
    let mut index = 0u64;
    while !ctx.stop.load(Ordering::Relaxed) {
        let due = rt.slots()[0].next_release_ns();
        if due >= ctx.end_ns {
            break;
        }
        let before = rt.slots()[0].engine.activations();
        while let Some(&(at, _)) = model.targets.get(next_target).filter(|(at, _)| (at * 1e9) as u64 <= due) {
            let slowdown = lock(ctx.joint).policy().slowdown(k).unwrap_or(1.0);
            let t = model.target_ms(next_target, slowdown);
            next_target += 1;
            target_ms = t;
            let d = rt.set_goal(0, model.goal(t)).map_err(err)?;
            since_change = 0;
            let switched = d.switch(0).map_or(String::new(), |e| format!(": switch to {}", describe(ctx.lut, e)));
            let _ = tx.send(format!("{at:6.2} s  {}: target {}{switched}", model.name, ms(t.into())));
        }
        let entry_before = rt.slots()[0].active();
        let epoch = ctx.epoch.load(Ordering::Relaxed);
        if epoch != seen_epoch {
            (seen_epoch, since_change) = (epoch, 0);
        }
        let r = rt.step(0, frames.frame(index), &mut logits).map_err(err)?;
        let after = rt.slots()[0].engine.activations();
        let active = rt.slots()[0].active();
        let switch_ns = (after.0 > before.0).then(|| after.1 - before.1);
        let (est_share, slowdown) = {
            let j = lock(ctx.joint);
            (j.policy().external_share(E::UNIT), j.policy().slowdown(k).unwrap_or(1.0))
        };
        let us = switch_ns.unwrap_or(0) as f64 * 1e-3;
        let at = |ns: u64| ns as f64 * 1e-9;
        if r.entry != entry_before {
            // Switched before its frame: another model's frame or a clock change re-planned the unit.
            let to = describe(ctx.lut, r.entry);
            let _ = tx.send(format!(
                "{:6.2} s  {}: re-planned with the others: switch to {to}",
                at(r.start_ns),
                model.name
            ));
        }
        if active != r.entry {
            let _ = tx.send(format!(
                "{:6.2} s  {}: frames take {slowdown:.2}x the lut's time: switch to {} in {us:.1} us",
                at(r.start_ns + r.latency_ns),
                model.name,
                describe(ctx.lut, active),
            ));
        }
        let latency_ms = r.latency_ns as f64 * 1e-6;
        rows.push(Row {
            frame: FrameRow {
                model: k,
                t_ms: r.start_ns as f64 * 1e-6,
                latency_ms,
                target_ms,
                entry: r.entry,
                top1: ctx.lut.entries()[r.entry].top1,
                clock_mhz: r.freq_khz.map_or(0.0, |khz| f64::from(khz) * 1e-3),
                share: ctx.share(E::UNIT),
                counted: since_change >= SETTLE_FRAMES,
            },
            index,
            subnet: ctx.lut.entries()[r.entry].config.id(),
            switch_ns,
            class: logits.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map_or(0, |(i, _)| i),
            load_permille: r.load_permille,
            est_share,
            contend: ctx.contend(E::UNIT),
        });
        since_change = since_change.saturating_add(1);
        index += 1;
        *lock(ctx.live).get_mut(k).expect("one status per model") =
            Live { frames: index, latency_ms, target_ms, entry: r.entry, done: false };
    }
    Ok(rows)
}

/// The main thread during the run: the machine's events at their times, messages and the status line.
fn timeline(ctx: &Ctx<'_>, script: &Script, plan: &[Model], console: &mut Console, rx: &mpsc::Receiver<String>) {
    let tick = if console.is_tty() { Duration::from_millis(100) } else { Duration::from_millis(250) };
    let mut next = 0;
    loop {
        let now = ctx.now_s();
        while let Some(&(at, w)) = script.world.get(next).filter(|(at, _)| *at <= now) {
            next += 1;
            let msg = match w {
                World::Contend(unit, n) => {
                    let unit = &ctx.units[ctx.contended(unit).index()];
                    if let Some(c) = unit.contention {
                        c.set(n);
                    }
                    match n {
                        0 => "contention off".to_string(),
                        n => format!("contention on: {}", contenders(n, unit.contender)),
                    }
                }
                World::Pin(unit, khz) => match ctx.clocks.pin(unit, khz) {
                    Some(Ok(())) => format!("{unit} pinned to {khz} kHz"),
                    Some(Err(e)) => format!("{unit} clock event skipped: {e}"),
                    None => format!("{unit} clock event skipped: {unit} dvfs unavailable"),
                },
            };
            ctx.epoch.fetch_add(1, Ordering::Relaxed);
            console.line(&format!("{at:6.2} s  {msg}"));
        }
        for msg in rx.try_iter() {
            console.line(&msg);
        }
        let live = lock(ctx.live).clone();
        if live.iter().all(|l| l.done) {
            return;
        }
        console.status(&status_line(ctx, now, plan, &live));
        let until_event = script.world.get(next).map_or(tick, |(at, _)| Duration::from_secs_f64((at - now).max(0.0)));
        std::thread::sleep(tick.min(until_event));
    }
}

fn status_line(ctx: &Ctx<'_>, now: f64, plan: &[Model], live: &[Live]) -> String {
    let contend = match Unit::ALL.map(|u| ctx.contend(u)).iter().sum() {
        0 => String::new(),
        n => format!("  contention {n}"),
    };
    let top1 = |l: &Live| ctx.lut.entries()[l.entry].top1;
    if let [l] = live {
        let subnet = describe(ctx.lut, l.entry);
        return format!(
            "{now:6.1} s  frame {:>5}  latency {:>9}  target {:>9}  sub-net {subnet}{contend}",
            l.frames,
            ms(l.latency_ms),
            ms(l.target_ms.into())
        );
    }
    let parts: Vec<String> = plan
        .iter()
        .zip(live)
        .map(|(m, l)| {
            format!("{} #{} {}/{} {:.1}%", m.name, l.frames, ms(l.latency_ms), ms(l.target_ms.into()), top1(l))
        })
        .collect();
    format!("{now:6.1} s  {}{contend}", parts.join(" | "))
}

/// The run in the simulator's terms, its trace and its plot.
fn outcome(
    ctx: &Ctx<'_>,
    script: &Script,
    plan: &[Model],
    rows: Vec<Row>,
    duration_s: f64,
    engine_name: &str,
    opts: &Options,
) -> Result<Outcome, RunError> {
    let models: Vec<SimModel> = plan
        .iter()
        .map(|m| SimModel {
            name: m.name.clone(),
            unit: m.unit,
            target_ms: m.target_ms(0, 1.0),
            period_ms: m.period_ms,
            floor_top1: 0.0,
            priority: m.priority,
        })
        .collect();
    // Target changes as they applied (a live target's value is known only then).
    let mut events = Vec::new();
    for (k, m) in plan.iter().enumerate() {
        let mut last = None;
        for r in rows.iter().filter(|r| r.frame.model == k) {
            let t = r.frame.target_ms;
            if last.is_some_and(|l| l != t) {
                let change =
                    TargetChange { model: m.name.clone(), target_ms: Some(t), period_ms: None, floor_top1: None };
                events.push(Event { at_s: r.frame.t_ms * 1e-3, kind: EventKind::Target(change) });
            }
            last = Some(t);
        }
    }
    for &(at_s, w) in &script.world {
        let kind = match w {
            World::Contend(unit, n) => {
                let unit = ctx.contended(unit);
                EventKind::Share { unit, value: share(n, ctx.units[unit.index()].lanes) as f32 }
            }
            World::Pin(unit, khz) => EventKind::Clock { unit, khz },
        };
        events.push(Event { at_s, kind });
    }
    events.sort_by(|a, b| a.at_s.total_cmp(&b.at_s));
    let scenario = Scenario {
        name: format!("dynofa run ({})", lutgen::machine()),
        description: format!("real inference on the {engine_name}; lut: {}", ctx.lut.source),
        seed: DEFAULT_SEED,
        duration_s,
        gpu_khz: None,
        models,
        events,
    };
    let summary = Summary {
        models: plan
            .iter()
            .enumerate()
            .map(|(k, m)| summarize(&m.name, rows.iter().filter(|r| r.frame.model == k).map(|r| &r.frame), 0.0))
            .collect::<Vec<ModelSummary>>(),
    };
    let switch_ns = (0..plan.len())
        .map(|k| rows.iter().filter(|r| r.frame.model == k).filter_map(|r| r.switch_ns).collect())
        .collect();
    let run =
        Run { scenario, policy: PolicyKind::Dynofa, frames: rows.iter().map(|r| r.frame.clone()).collect(), summary };

    let values = |i: usize| {
        let r = &rows[i];
        format!(
            "{},{},{},{},{},{:.3},{}",
            r.index,
            r.subnet,
            r.switch_ns.map_or(String::new(), |ns| format!("{:.3}", ns as f64 * 1e-3)),
            r.class,
            r.load_permille.map_or(String::new(), |p| format!("{:.1}", f64::from(p) / 10.0)),
            r.est_share,
            r.contend
        )
    };
    let extra = trace::Extra { header: "frame,subnet,switch_us,class,load_pct,est_share,contenders", values: &values };
    let mut csv = Vec::new();
    trace::write_csv(&run, Some(extra), &mut csv)
        .map_err(|source| SimError::Write { path: opts.trace.clone(), source })?;
    std::fs::write(&opts.trace, csv).map_err(|source| SimError::Write { path: opts.trace.clone(), source })?;
    plot::plot(&run, &opts.plot)?;
    provenance(&opts.plot, &run.scenario)?;
    Ok(Outcome { run, switch_ns })
}

/// Say inside the plot what made it, from what and when (an XML comment after the opening tag).
fn provenance(path: &Path, scenario: &Scenario) -> Result<(), RunError> {
    let err = |source| SimError::Write { path: path.into(), source };
    let svg = std::fs::read_to_string(path).map_err(err)?;
    let (machine, today) = (lutgen::machine(), lutgen::today());
    // "--" may not appear inside an XML comment.
    let note = format!("made by `dynofa run` on {machine}, {today}: {}", scenario.description).replace("--", "-");
    let svg = match svg.split_once('\n') {
        Some((open, rest)) => format!("{open}\n<!-- {note} -->\n{rest}"),
        None => svg,
    };
    std::fs::write(path, svg).map_err(err)?;
    Ok(())
}

/// The share of the unit that `n` contenders take beside the models' `lanes` when all are runnable
/// and the unit is shared fairly (the scheduler's threads on the cores; streams on the GPU).
fn share(n: usize, lanes: usize) -> f64 {
    if n == 0 { 0.0 } else { n as f64 / (n + lanes) as f64 }
}

/// A time in ms with three significant digits or more: a GPU frame takes a fraction of one.
fn ms(v: f64) -> String {
    let decimals = if v.abs() >= 10.0 {
        1
    } else if v.abs() >= 1.0 {
        2
    } else {
        3
    };
    format!("{v:.decimals$} ms")
}

fn say_summary(console: &mut Console, outcome: &Outcome, plan: &[Model], engine_name: &str, opts: &Options) {
    let run = &outcome.run;
    console.line(&format!(
        "summary: {:.1} s, {} model{} on the {engine_name}, dynofa's manager",
        run.scenario.duration_s,
        plan.len(),
        if plan.len() == 1 { "" } else { "s" }
    ));
    for (k, (m, s)) in plan.iter().zip(&run.summary.models).enumerate() {
        let frames: Vec<&FrameRow> = run.frames.iter().filter(|f| f.model == k).collect();
        let counted = frames.iter().filter(|f| f.counted).count();
        // By time as well: when contention makes frames slow, fewer of them run, so the per-frame
        // share alone understates how long deadlines were missed.
        let time =
            |met: bool| frames.iter().filter(|f| f.counted && (!met || f.met())).map(|f| f.latency_ms).sum::<f64>();
        let total = time(false);
        let met_time = if total > 0.0 { 100.0 * time(true) / total } else { 100.0 };
        let mean_ms = frames.iter().map(|f| f.latency_ms).sum::<f64>() / frames.len().max(1) as f64;
        let costs = &outcome.switch_ns[k];
        let cost = if costs.is_empty() {
            "no switch".to_string()
        } else {
            let mean = costs.iter().sum::<u64>() as f64 / costs.len() as f64;
            let max = costs.iter().copied().max().unwrap_or(0);
            format!("switch cost (activate) {:.1} us mean, {:.1} us max", mean * 1e-3, max as f64 * 1e-3)
        };
        console.line(&format!(
            "  {}: {} frames, deadlines met {:.1}% (of {counted} counted: all but the {SETTLE_FRAMES} after each change; {met_time:.1}% of their time), mean top-1 {:.2}%, {} switches, {cost}, mean latency {}",
            m.name,
            s.frames,
            100.0 * s.deadline_met_frac,
            s.mean_top1,
            s.switches,
            ms(mean_ms)
        ));
    }
    console.line(&format!(
        "trace: {} ({} frames; columns in README \"Run it\")",
        opts.trace.display(),
        run.frames.len()
    ));
    console.line(&format!("plot:  {}", opts.plot.display()));
}
