//! One run: the platform, the engines, the LUT, the manager, a thread per model, the machine's events
//! on the main thread with the status line, then the summary, the trace and the plot.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use dynofa_core::arch::NUM_CLASSES;
use dynofa_core::control::{Dynofa, DynofaParams, Goal, ModelSpec, Policy};
use dynofa_core::hal::FrequencyControl;
use dynofa_core::lut::{OperatingPoint, Unit};
use dynofa_core::runtime::{ModelSlot, Runtime, UnitIo};
use dynofa_core::{SubnetId, Supernet};
use dynofa_hal_sim::scenario::{Event, EventKind, ModelDef as SimModel, Scenario, TargetChange};
use dynofa_hal_sim::sim::{FrameRow, ModelSummary, PolicyKind, Run, SETTLE_FRAMES, Summary, summarize};
use dynofa_hal_sim::{SimError, plot, trace};
use dynofa_kernels::{CpuEngine, DEFAULT_SEED, SupernetWeights};

use super::RunError;
use super::console::Console;
use super::contend::Contention;
use super::frames::{FrameEngine, FrameSource};
use super::hostlut::{LutSource, cpu_point, prepare};
use super::joint::{Joint, ModelView, SharedFreq, WallClock};
use super::schedule::{Amount, Ask, Levels, Script, World};
use crate::design::lutgen::{self, DesignLut};
use crate::linux::{CpuFreq, CpuLoad, Platform};

/// What to run.
#[derive(Debug, Clone)]
pub struct Options {
    /// Models, targets, schedule and contention as asked.
    pub ask: Ask,
    /// `--lut`.
    pub lut: Option<PathBuf>,
    /// Supernet weights (default: the seeded w1.2 weights).
    pub weights: Option<PathBuf>,
    /// An image folder (default: synthetic frames).
    pub images: Option<PathBuf>,
    /// Most images to load.
    pub max_images: usize,
    /// Engine threads per model (default: one per core).
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

/// One model as the threads run it: period in ms, targets as asked.
#[derive(Debug, Clone)]
struct Model {
    name: String,
    priority: f32,
    period_ms: f32,
    targets: Vec<(f64, Amount)>,
    /// The fastest sub-network's mean latency, which relative targets multiply.
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
    freq: Option<&'a Mutex<CpuFreq>>,
    root: &'a Path,
    origin: Instant,
    end_ns: u64,
    stop: &'a AtomicBool,
    /// Bumped at every machine event: frames after one settle before deadlines count.
    epoch: &'a AtomicU64,
    contention: Option<&'a Contention>,
    /// Engine threads of all models, to express contention as a share.
    engine_threads: usize,
    live: &'a Mutex<Vec<Live>>,
}

impl Ctx<'_> {
    fn contend(&self) -> usize {
        self.contention.map_or(0, Contention::active)
    }

    fn share(&self) -> f64 {
        share(self.contend(), self.engine_threads)
    }

    fn now_s(&self) -> f64 {
        self.origin.elapsed().as_secs_f64()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A sub-network in a message: its short id, resolution and top-1.
fn describe(lut: &DesignLut, entry: usize) -> String {
    let e = &lut.entries()[entry];
    format!("{} (r{}, top-1 {:.1}%)", &e.config.id().to_string()[..8], e.config.r, e.top1)
}

/// Run as `opts` asks, printing through `console`.
pub fn run(opts: &Options, console: &mut Console) -> Result<Outcome, RunError> {
    let freq = cpu_control(&opts.root, console);
    let weights = match &opts.weights {
        Some(path) => SupernetWeights::load(path)?,
        None => SupernetWeights::seeded(Supernet::W1_2, DEFAULT_SEED),
    };
    let net = *weights.supernet();
    let frames = match &opts.images {
        Some(dir) => FrameSource::images(dir, opts.max_images, &mut |w| console.line(&format!("images: {w}")))?,
        None => FrameSource::synthetic(),
    };
    let models = opts.ask.models.len().max(1);
    let threads = opts.threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let mut engines: Vec<CpuEngine> = (0..models).map(|_| CpuEngine::with_threads(weights.clone(), threads)).collect();
    let engine_name = format!("cpu engine, {} threads, {:?}", engines[0].threads(), engines[0].isa());
    let weights_name = match &opts.weights {
        Some(path) => path.display().to_string(),
        None => format!("seeded OFA MobileNetV3 w{} (seed {DEFAULT_SEED:#x})", net.width_mult),
    };
    console
        .line(&format!("engine: {engine_name} per model (the gpu engine is not built yet); weights: {weights_name}"));
    console.line(&format!("frames: {}", frames.describe()));

    let source = LutSource::pick(lut_file(opts)?.as_deref());
    let lut = prepare(&mut engines[0], &engine_name, &net, &source, 0, &mut |s| console.line(&s))?;
    let op = cpu_point(&lut).unwrap_or(OperatingPoint { unit: Unit::Cpu, freq_khz: 0 });
    let front = lut.pareto(op);
    let point = |i: usize| {
        let e = &lut.entries()[i];
        (e.predict_ms(op).unwrap_or(f32::NAN), e.top1)
    };
    let (Some(&fast), Some(&slow)) = (front.first(), front.last()) else {
        return Err(RunError::Lut { name: lut.source.to_string(), reason: "no entry has a cpu latency".into() });
    };
    let ((fastest_ms, fastest_top1), (slowest_ms, best_top1)) = (point(fast), point(slow));
    console.line(&format!(
        "sub-networks: {} on the cpu front, {fastest_ms:.1} ms at top-1 {fastest_top1:.1}% to {slowest_ms:.1} ms at {best_top1:.1}%",
        front.len(),
    ));

    if opts.stop.load(Ordering::Relaxed) {
        return Err(RunError::Stopped);
    }
    let tail = margin(&lut, op, slow, slowest_ms)?;
    let levels = Levels { fastest_ms, slowest_ms, tail };
    let script = opts.ask.script(&levels)?;
    let plan: Vec<Model> = script
        .models
        .iter()
        .map(|m| Model {
            name: m.name.clone(),
            priority: m.priority,
            period_ms: m.period.ms(fastest_ms, 1.0),
            targets: m.targets.clone(),
            fastest_ms,
        })
        .collect();
    say_script(console, &script, &plan);

    let specs: Vec<ModelSpec> =
        plan.iter().map(|m| ModelSpec { unit: Unit::Cpu, goal: m.goal(m.target_ms(0, 1.0)) }).collect();
    let manager = Manager::new(&lut, &specs, [0, op.freq_khz], DynofaParams::default()).map_err(RunError::Control)?;
    let live: Vec<Live> = plan
        .iter()
        .enumerate()
        .map(|(k, m)| Live { target_ms: m.target_ms(0, 1.0), entry: manager.entry(k), ..Live::default() })
        .collect();
    let joint = Joint::new(manager);
    let most = script.world.iter().map(|(_, w)| if let World::Contend(n) = w { *n } else { 0 }).max().unwrap_or(0);
    let contention = if most > 0 {
        Some(Contention::new(most).map_err(|e| RunError::Thread(format!("cannot start the contention threads: {e}")))?)
    } else {
        None
    };
    let stop = &*opts.stop;
    let epoch = AtomicU64::new(0);
    let live = Mutex::new(live);
    let ctx = Ctx {
        lut: &lut,
        joint: &joint,
        freq: freq.as_ref(),
        root: &opts.root,
        origin: Instant::now(),
        end_ns: (script.duration_s * 1e9) as u64,
        stop,
        epoch: &epoch,
        contention: contention.as_ref(),
        engine_threads: threads * plan.len(),
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
                    let result = model_loop(k, model, ctx, FrameEngine::new(engine), frames, &tx);
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
    if let Some(c) = ctx.contention {
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
    let outcome =
        outcome(&script, &plan, rows, &lut, elapsed_s.min(script.duration_s).max(1e-3), ctx.engine_threads, opts)?;
    say_summary(console, &outcome, &plan, opts);
    Ok(outcome)
}

/// The CPU's clock control where cpufreq exists (DVFS ready or not), reported.
fn cpu_control(root: &Path, console: &mut Console) -> Option<Mutex<CpuFreq>> {
    let Platform { board, cpu, .. } = Platform::probe(root);
    console.line(&format!("platform: {board}"));
    match cpu {
        Ok(mut c) => {
            let now = c.current_khz().map_or_else(|e| format!("unreadable ({e})"), |k| format!("{k} kHz"));
            let governor = c.policies()[0].governor().unwrap_or_else(|_| "unknown".into());
            let dvfs = match c.dvfs() {
                Ok(()) => "dvfs ready (a schedule's cpu_khz events pin it; restored at exit)".to_string(),
                Err(e) => format!("dvfs unavailable: {e}; the clocks stay as the system sets them"),
            };
            console.line(&format!("cpu clock: {now}, governor {governor}; {dvfs}"));
            Some(Mutex::new(c))
        }
        Err(e) => {
            console.line(&format!("cpu dvfs: unavailable: {e}; the run goes on at the clocks the system sets"));
            None
        }
    }
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
        let spec = [ModelSpec { unit: Unit::Cpu, goal: Goal::target(target_ms) }];
        let m = Manager::new(lut, &spec, [0, op.freq_khz], DynofaParams::default()).map_err(RunError::Control)?;
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
fn say_script(console: &mut Console, script: &Script, plan: &[Model]) {
    for m in plan {
        let steps: Vec<String> = (0..m.targets.len())
            .map(|i| {
                let (at, ms) = (m.targets[i].0, m.target_ms(i, 1.0));
                match m.targets[i].1 {
                    Amount::Live(_) => format!("{ms:.1} ms x the speed frames show then, from {at:.1} s"),
                    _ => format!("{ms:.1} ms from {at:.1} s"),
                }
            })
            .collect();
        let period = if m.period_ms > 0.0 {
            format!("a frame every {:.1} ms", m.period_ms)
        } else {
            "frames back to back".into()
        };
        console.line(&format!("model {}: priority {}, {period}; target {}", m.name, m.priority, steps.join(", ")));
    }
    let events: Vec<String> = script
        .world
        .iter()
        .map(|(at, w)| match w {
            World::Contend(0) => format!("contention off at {at:.1} s"),
            World::Contend(1) => format!("1 busy thread from {at:.1} s"),
            World::Contend(n) => format!("{n} busy threads from {at:.1} s"),
            World::CpuKhz(k) => format!("cpu pinned to {k} kHz at {at:.1} s"),
        })
        .collect();
    let machine = if events.is_empty() { "no events".to_string() } else { events.join(", ") };
    console.line(&format!("run: {:.1} s; machine: {machine}", script.duration_s));
}

/// One model's thread: its runtime over the shared manager, frame after frame until the end.
fn model_loop(
    k: usize,
    model: &Model,
    ctx: &Ctx<'_>,
    engine: FrameEngine<CpuEngine>,
    mut frames: FrameSource,
    tx: &Sender<String>,
) -> Result<Vec<Row>, RunError> {
    let err = |source| RunError::Runtime { model: model.name.clone(), source };
    let clock = WallClock::new(ctx.origin);
    let period_ns = (f64::from(model.period_ms) * 1e6) as u64;
    let mut slots = [ModelSlot::new(clock, engine, clock, Unit::Cpu, period_ns)];
    let mut units = [UnitIo::new(Unit::Cpu, ctx.freq.map(SharedFreq::new), CpuLoad::open(ctx.root).ok())];
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
            let _ = tx.send(format!("{at:6.2} s  {}: target {t:.1} ms{switched}", model.name));
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
            (j.policy().external_share(Unit::Cpu), j.policy().slowdown(k).unwrap_or(1.0))
        };
        let us = switch_ns.unwrap_or(0) as f64 * 1e-3;
        let at = |ns: u64| ns as f64 * 1e-9;
        if r.entry != entry_before {
            // Switched before its frame: another model's frame or a clock change re-planned the CPU.
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
                share: ctx.share(),
                counted: since_change >= SETTLE_FRAMES,
            },
            index,
            subnet: ctx.lut.entries()[r.entry].config.id(),
            switch_ns,
            class: logits.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map_or(0, |(i, _)| i),
            load_permille: r.load_permille,
            est_share,
            contend: ctx.contend(),
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
                World::Contend(n) => {
                    if let Some(c) = ctx.contention {
                        c.set(n);
                    }
                    match n {
                        0 => "contention off".to_string(),
                        1 => "contention on: 1 busy thread".into(),
                        n => format!("contention on: {n} busy threads"),
                    }
                }
                World::CpuKhz(khz) => match ctx.freq.map(|f| lock(f).set_khz(khz)) {
                    Some(Ok(())) => format!("cpu pinned to {khz} kHz"),
                    Some(Err(e)) => format!("cpu clock event skipped: {e}"),
                    None => "cpu clock event skipped: cpu dvfs unavailable".into(),
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
    let contend = match ctx.contend() {
        0 => String::new(),
        n => format!("  contention {n}"),
    };
    let top1 = |l: &Live| ctx.lut.entries()[l.entry].top1;
    if let [l] = live {
        let subnet = describe(ctx.lut, l.entry);
        return format!(
            "{now:6.1} s  frame {:>5}  latency {:6.1} ms  target {:5.1} ms  sub-net {subnet}{contend}",
            l.frames, l.latency_ms, l.target_ms
        );
    }
    let parts: Vec<String> = plan
        .iter()
        .zip(live)
        .map(|(m, l)| format!("{} #{} {:.1}/{:.1} ms {:.1}%", m.name, l.frames, l.latency_ms, l.target_ms, top1(l)))
        .collect();
    format!("{now:6.1} s  {}{contend}", parts.join(" | "))
}

/// The run in the simulator's terms, its trace and its plot.
fn outcome(
    script: &Script,
    plan: &[Model],
    rows: Vec<Row>,
    lut: &DesignLut,
    duration_s: f64,
    engine_threads: usize,
    opts: &Options,
) -> Result<Outcome, RunError> {
    let models: Vec<SimModel> = plan
        .iter()
        .map(|m| SimModel {
            name: m.name.clone(),
            unit: Unit::Cpu,
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
            World::Contend(n) => EventKind::Share { unit: Unit::Cpu, value: share(n, engine_threads) as f32 },
            World::CpuKhz(khz) => EventKind::Clock { unit: Unit::Cpu, khz },
        };
        events.push(Event { at_s, kind });
    }
    events.sort_by(|a, b| a.at_s.total_cmp(&b.at_s));
    let scenario = Scenario {
        name: format!("dynofa run ({})", lutgen::machine()),
        description: format!("real inference on the cpu engine; lut: {}", lut.source),
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
    let extra =
        trace::Extra { header: "frame,subnet,switch_us,class,cpu_load_pct,est_share,contend_threads", values: &values };
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

/// The share of CPU time `n` busy threads take beside `engine_threads` when every thread is runnable
/// (the scheduler shares the cores fairly).
fn share(n: usize, engine_threads: usize) -> f64 {
    if n == 0 { 0.0 } else { n as f64 / (n + engine_threads) as f64 }
}

fn say_summary(console: &mut Console, outcome: &Outcome, plan: &[Model], opts: &Options) {
    let run = &outcome.run;
    console.line(&format!(
        "summary: {:.1} s, {} model{} on the cpu engine, dynofa's manager",
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
            "  {}: {} frames, deadlines met {:.1}% (of {counted} counted: all but the {SETTLE_FRAMES} after each change; {met_time:.1}% of their time), mean top-1 {:.2}%, {} switches, {cost}, mean latency {mean_ms:.1} ms",
            m.name,
            s.frames,
            100.0 * s.deadline_met_frac,
            s.mean_top1,
            s.switches
        ));
    }
    console.line(&format!(
        "trace: {} ({} frames; columns in README \"Run it\")",
        opts.trace.display(),
        run.frames.len()
    ));
    console.line(&format!("plot:  {}", opts.plot.display()));
}
