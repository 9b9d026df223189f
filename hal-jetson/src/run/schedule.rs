//! What a run does over time: its models (each with a target schedule, a priority and a frame
//! period) and what happens to the machine (contention on and off, CPU and GPU clock pins).
//!
//! A model file (`--model FILE`, or a built-in name: `detector`, `classifier`); `unit` (`gpu`: the
//! CUDA engine, `cpu`) defaults to `--backend`'s:
//! ```json
//! {"name": "detector", "priority": 2, "period_rel": 4, "target_rel": 2.6,
//!  "schedule": [{"at_s": 18, "target_rel": 2.0}], "lut": "luts/host-cpu.json", "unit": "gpu"}
//! ```
//! A schedule file (`--schedule FILE`); targets without `model` are the first model's:
//! ```json
//! {"duration_s": 36, "events": [{"at_s": 0, "target_ms": 90}, {"at_s": 8, "target_ms": 60},
//!   {"at_s": 16, "contend": 2}, {"at_s": 26, "contend": 0}, {"at_s": 30, "cpu_khz": 1190400},
//!   {"at_s": 32, "gpu_khz": 510000}, {"at_s": 34, "contend": 1, "unit": "gpu"}]}
//! ```
//! `contend` is on the first model's unit unless the event names another `unit`.
//! Times are `*_ms`, or `*_rel`: multiples of the fastest sub-network's mean latency on this machine,
//! so that one file suits a fast PC and a slow board alike.

use std::path::{Path, PathBuf};

use dynofa_core::control::MAX_MODELS;
use dynofa_core::lut::Unit;
use serde::Deserialize;

use super::RunError;

/// Model files shipped with `dynofa run`, by name: two models sharing the CPU as in Dynamic-OFA's
/// Figure 8 (a detector with priority 2 whose target tightens part-way, and a classifier).
pub const BUILT_IN_MODELS: [(&str, &str); 2] =
    [("detector", include_str!("models/detector.json")), ("classifier", include_str!("models/classifier.json"))];

/// A duration: milliseconds, or a multiple of the fastest sub-network's mean latency.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Amount {
    /// Milliseconds.
    Ms(f32),
    /// Times the fastest sub-network's mean latency on this machine.
    Rel(f32),
    /// Milliseconds of LUT time, scaled when the step applies by how fast frames run then (the
    /// manager's slowdown estimate): the demo's targets, so that they fall where they force a
    /// switch even where the LUT is off by its 2x tolerance or the machine's speed drifts.
    Live(f32),
}

impl Amount {
    /// In ms, given the fastest sub-network's mean latency and the manager's slowdown estimate now.
    pub fn ms(self, fastest_ms: f32, slowdown: f32) -> f32 {
        match self {
            Amount::Ms(ms) => ms,
            Amount::Rel(x) => x * fastest_ms,
            Amount::Live(ms) => ms * slowdown,
        }
    }

    /// From a pair of optional `*_ms`/`*_rel` fields: at most one may be given.
    fn from_fields(ms: Option<f32>, rel: Option<f32>, what: &str) -> Result<Option<Self>, String> {
        let amount = match (ms, rel) {
            (Some(_), Some(_)) => return Err(format!("give {what}_ms or {what}_rel, not both")),
            (Some(ms), None) => Amount::Ms(ms),
            (None, Some(rel)) => Amount::Rel(rel),
            (None, None) => return Ok(None),
        };
        let v = amount.ms(1.0, 1.0);
        if !(v.is_finite() && v >= 0.0) {
            return Err(format!("{what} must be a finite non-negative number"));
        }
        Ok(Some(amount))
    }
}

/// One model of a run.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelDef {
    /// Its name in the status line, the trace and the plot.
    pub name: String,
    /// Weight of its accuracy when models compete for the CPU.
    pub priority: f32,
    /// Frame period (zero: frames back to back).
    pub period: Amount,
    /// Its LUT, where it names one.
    pub lut: Option<PathBuf>,
    /// Its target from each time on (seconds from the start), in time order, the first at 0.
    pub targets: Vec<(f64, Amount)>,
    /// The unit it runs on, where it names one (else the run's `--backend`).
    pub unit: Option<Unit>,
}

impl ModelDef {
    /// A model with frames back to back, priority 1 and the given targets.
    pub fn new(name: &str, targets: Vec<(f64, Amount)>) -> Self {
        ModelDef { name: name.into(), priority: 1.0, period: Amount::Ms(0.0), lut: None, targets, unit: None }
    }

    /// A built-in model file by name, or a model file by path.
    pub fn load(name_or_path: &str) -> Result<Self, RunError> {
        if let Some((name, text)) = BUILT_IN_MODELS.iter().find(|(n, _)| *n == name_or_path) {
            return Self::from_json(text, name, None);
        }
        let path = Path::new(name_or_path);
        let text = std::fs::read_to_string(path).map_err(|e| RunError::Spec {
            origin: name_or_path.into(),
            reason: format!("cannot read it ({e}); built-in models: detector, classifier"),
        })?;
        Self::from_json(&text, name_or_path, path.parent())
    }

    /// Parse a model file; `origin` names it in errors, a relative `lut` is taken from `dir`.
    pub fn from_json(text: &str, origin: &str, dir: Option<&Path>) -> Result<Self, RunError> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct File {
            name: String,
            target_ms: Option<f32>,
            target_rel: Option<f32>,
            #[serde(default)]
            schedule: Vec<Step>,
            #[serde(default = "one")]
            priority: f32,
            period_ms: Option<f32>,
            period_rel: Option<f32>,
            lut: Option<PathBuf>,
            unit: Option<Unit>,
        }
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Step {
            at_s: f64,
            target_ms: Option<f32>,
            target_rel: Option<f32>,
        }
        let bad = |reason: String| RunError::Spec { origin: origin.into(), reason };
        let f: File = serde_json::from_str(text).map_err(|e| bad(e.to_string()))?;
        let mut targets = Vec::new();
        if let Some(t) = Amount::from_fields(f.target_ms, f.target_rel, "target").map_err(bad)? {
            targets.push((0.0, t));
        }
        for (i, s) in f.schedule.iter().enumerate() {
            let t = Amount::from_fields(s.target_ms, s.target_rel, "target")
                .and_then(|t| t.ok_or_else(|| "give target_ms or target_rel".into()))
                .map_err(|r| bad(format!("schedule step {i}: {r}")))?;
            targets.push((s.at_s, t));
        }
        let period = Amount::from_fields(f.period_ms, f.period_rel, "period").map_err(bad)?;
        let lut = f.lut.map(|p| match dir {
            Some(dir) if p.is_relative() => dir.join(p),
            _ => p,
        });
        let period = period.unwrap_or(Amount::Ms(0.0));
        let def = ModelDef { name: f.name, priority: f.priority, period, lut, targets, unit: f.unit };
        def.check().map_err(bad)?;
        Ok(def)
    }

    fn check(&self) -> Result<(), String> {
        if self.name.is_empty() || self.name.contains([',', '\n', '"']) {
            return Err("name must be non-empty, without commas, quotes or newlines".into());
        }
        if !(self.priority.is_finite() && self.priority > 0.0) {
            return Err("priority must be a positive number".into());
        }
        if self.targets.first().is_none_or(|&(at, _)| at != 0.0) {
            return Err("needs a target from the start: target_ms or target_rel, or a schedule step at_s 0".into());
        }
        in_order(self.targets.iter().map(|t| t.0))?;
        if self.targets.iter().any(|&(_, t)| t.ms(1.0, 1.0) <= 0.0) {
            return Err("targets must be positive".into());
        }
        Ok(())
    }
}

fn one() -> f32 {
    1.0
}

fn in_order(times: impl Iterator<Item = f64>) -> Result<(), String> {
    let mut last = 0.0;
    for (i, at) in times.enumerate() {
        if !(at.is_finite() && at >= last) {
            return Err(format!("step {i}: at_s must be finite, non-negative and in time order"));
        }
        last = at;
    }
    Ok(())
}

/// Something that happens to the machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum World {
    /// The contention generator of the unit (`None`: the first model's) runs this many
    /// contenders from now on (0: off): busy threads for the CPU, streams of the largest
    /// sub-network for the GPU.
    Contend(Option<Unit>, usize),
    /// The unit's clock is pinned to this operating point in kHz (needs the unit's DVFS).
    Pin(Unit, u32),
}

/// Most contenders a schedule may ask for.
pub const MAX_CONTEND: usize = 256;

/// A schedule file: its length, the machine's events and target changes of named models.
#[derive(Debug, Clone, PartialEq)]
pub struct ScheduleFile {
    /// Its length in seconds, if it gives one.
    pub duration_s: Option<f64>,
    /// The machine's events, in time order.
    pub world: Vec<(f64, World)>,
    /// Target changes: the model's name (`None`: the first model), when, and the target.
    pub targets: Vec<(Option<String>, f64, Amount)>,
}

impl ScheduleFile {
    /// Read a schedule file.
    pub fn load(path: &Path) -> Result<Self, RunError> {
        let text = std::fs::read_to_string(path).map_err(|e| RunError::Spec {
            origin: path.display().to_string(),
            reason: format!("cannot read it: {e}"),
        })?;
        Self::from_json(&text, &path.display().to_string())
    }

    /// Parse a schedule; `origin` names it in errors.
    pub fn from_json(text: &str, origin: &str) -> Result<Self, RunError> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct File {
            duration_s: Option<f64>,
            #[serde(default)]
            events: Vec<Event>,
        }
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Event {
            at_s: f64,
            model: Option<String>,
            target_ms: Option<f32>,
            target_rel: Option<f32>,
            contend: Option<usize>,
            unit: Option<Unit>,
            cpu_khz: Option<u32>,
            gpu_khz: Option<u32>,
        }
        let bad = |reason: String| RunError::Spec { origin: origin.into(), reason };
        let f: File = serde_json::from_str(text).map_err(|e| bad(e.to_string()))?;
        if let Some(d) = f.duration_s.filter(|d| !(d.is_finite() && *d > 0.0)) {
            return Err(bad(format!("duration_s must be positive, not {d}")));
        }
        in_order(f.events.iter().map(|e| e.at_s)).map_err(|r| bad(format!("events: {r}")))?;
        let mut s = ScheduleFile { duration_s: f.duration_s, world: Vec::new(), targets: Vec::new() };
        for (i, e) in f.events.into_iter().enumerate() {
            let what = |r: String| bad(format!("event {i}: {r}"));
            let target = Amount::from_fields(e.target_ms, e.target_rel, "target").map_err(what)?;
            let pin = match (e.cpu_khz, e.gpu_khz) {
                (Some(khz), None) => Some(World::Pin(Unit::Cpu, khz)),
                (None, Some(khz)) => Some(World::Pin(Unit::Gpu, khz)),
                (None, None) => None,
                (Some(_), Some(_)) => return Err(what("give cpu_khz and gpu_khz in separate events".into())),
            };
            let given = usize::from(target.is_some()) + usize::from(e.contend.is_some()) + usize::from(pin.is_some());
            if given != 1 {
                return Err(what("give exactly one of target_ms, target_rel, contend, cpu_khz and gpu_khz".into()));
            }
            if e.model.is_some() && target.is_none() {
                return Err(what("\"model\" goes with a target".into()));
            }
            if e.unit.is_some() && e.contend.is_none() {
                return Err(what("\"unit\" goes with contend (cpu_khz and gpu_khz name theirs)".into()));
            }
            match (target, e.contend, pin) {
                (Some(t), _, _) if t.ms(1.0, 1.0) > 0.0 => s.targets.push((e.model, e.at_s, t)),
                (Some(_), _, _) => return Err(what("targets must be positive".into())),
                (_, Some(n), _) if n > MAX_CONTEND => {
                    return Err(what(format!("contend is a number of contenders, at most {MAX_CONTEND}")));
                }
                (_, Some(n), _) => s.world.push((e.at_s, World::Contend(e.unit, n))),
                (_, _, Some(pin)) => s.world.push((e.at_s, pin)),
                _ => unreachable!("exactly one field was given"),
            }
        }
        Ok(s)
    }

    /// Move its target changes into `models` (by name; unnamed ones to the first model).
    pub fn apply_targets(&self, models: &mut [ModelDef], origin: &str) -> Result<(), RunError> {
        for (name, at, t) in &self.targets {
            let k = match name {
                None => 0,
                Some(n) => models.iter().position(|m| m.name == *n).ok_or_else(|| RunError::Spec {
                    origin: origin.into(),
                    reason: format!("a target names model {n:?}, which this run does not have"),
                })?,
            };
            let targets = &mut models[k].targets;
            // A target at the start replaces the model's own; later ones go in time order.
            targets.retain(|(a, _)| *a != *at);
            let pos = targets.partition_point(|(a, _)| *a <= *at);
            targets.insert(pos, (*at, *t));
        }
        Ok(())
    }
}

/// What the run does: its length, its models and the machine's events, in time order.
#[derive(Debug, Clone, PartialEq)]
pub struct Script {
    /// Length in seconds.
    pub duration_s: f64,
    /// The models (1 to [`MAX_MODELS`]).
    pub models: Vec<ModelDef>,
    /// The machine's events.
    pub world: Vec<(f64, World)>,
}

/// The demo's shape, as shares of its length: the target tightens at 22%, contention runs from 44%
/// to 72%, the target loosens again at 83%.
const DEMO_TIGHTEN: f64 = 0.22;
const DEMO_CONTEND: (f64, f64) = (0.44, 0.72);
const DEMO_LOOSEN: f64 = 0.83;
/// The demo's length in seconds.
pub const DEMO_SECONDS: f64 = 36.0;

/// Where a default target sits, known once the LUT is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Levels {
    /// Mean latency of the fastest sub-network on the front, ms.
    pub fastest_ms: f32,
    /// Mean latency of the most accurate one, ms.
    pub slowest_ms: f32,
    /// The manager's margin for noise: the smallest target at which it runs the most accurate
    /// sub-network, over that sub-network's mean latency.
    pub tail: f32,
}

impl Levels {
    /// A target the most accurate sub-network meets even where the LUT is off by its 2x tolerance.
    pub fn loose_ms(&self) -> f32 {
        self.slowest_ms * self.tail * 2.0
    }

    /// A target in the middle of the front (geometric mean): only faster sub-networks meet it, and
    /// contention that doubles frame times pushes the choice further down.
    pub fn tight_ms(&self) -> f32 {
        (self.fastest_ms * self.slowest_ms).sqrt() * self.tail
    }
}

/// How the run was asked for, before the LUT is known.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Ask {
    /// `--model` files (empty: one model, "classifier").
    pub models: Vec<ModelDef>,
    /// `--target-ms`: one target for the whole run.
    pub target_ms: Option<f32>,
    /// `--schedule`, with its origin.
    pub schedule: Option<(ScheduleFile, String)>,
    /// `--duration-s`.
    pub duration_s: Option<f64>,
    /// Busy threads of the demo's contention (0: none).
    pub contend: usize,
}

impl Ask {
    /// The script: the given models and schedule; where they leave something open, the demo's
    /// (targets stepping between `levels`' loose and tight ones, contention part-way).
    pub fn script(&self, levels: &Levels) -> Result<Script, RunError> {
        let mut models = self.models.clone();
        let duration_s =
            self.duration_s.or(self.schedule.as_ref().and_then(|s| s.0.duration_s)).unwrap_or(DEMO_SECONDS);
        let at = |share: f64| share * duration_s;
        if models.is_empty() {
            let targets = match self.target_ms {
                Some(ms) => vec![(0.0, Amount::Ms(ms))],
                None if self.schedule.as_ref().is_some_and(|s| s.0.targets.iter().any(|t| t.1 == 0.0)) => Vec::new(),
                None => {
                    // The tight target follows the speed frames show so that it bites on any machine.
                    let (loose, tight) = (Amount::Ms(levels.loose_ms()), Amount::Live(levels.tight_ms()));
                    vec![(0.0, loose), (at(DEMO_TIGHTEN), tight), (at(DEMO_LOOSEN), loose)]
                }
            };
            models.push(ModelDef::new("classifier", targets));
        } else if let Some(ms) = self.target_ms {
            for m in &mut models {
                m.targets = vec![(0.0, Amount::Ms(ms))];
            }
        }
        let world = match &self.schedule {
            Some((s, origin)) => {
                s.apply_targets(&mut models, origin)?;
                s.world.clone()
            }
            None if self.contend > 0 => {
                let (on, off) = (World::Contend(None, self.contend), World::Contend(None, 0));
                vec![(at(DEMO_CONTEND.0), on), (at(DEMO_CONTEND.1), off)]
            }
            None => Vec::new(),
        };
        if models.len() > MAX_MODELS {
            return Err(RunError::Spec {
                origin: "--model".into(),
                reason: format!("{} models given; the manager plans at most {MAX_MODELS} jointly", models.len()),
            });
        }
        for (i, m) in models.iter().enumerate() {
            if models[..i].iter().any(|o| o.name == m.name) {
                return Err(RunError::Spec { origin: m.name.clone(), reason: "two models have this name".into() });
            }
            m.check().map_err(|reason| RunError::Spec { origin: m.name.clone(), reason })?;
        }
        Ok(Script { duration_s, models, world })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LEVELS: Levels = Levels { fastest_ms: 40.0, slowest_ms: 90.0, tail: 1.1 };

    #[test]
    fn the_demo_steps_the_target_and_contends_part_way() {
        let ask = Ask { contend: 2, ..Ask::default() };
        let s = ask.script(&LEVELS).unwrap();
        assert_eq!(s.duration_s, DEMO_SECONDS);
        let m = &s.models[0];
        assert_eq!(m.name, "classifier");
        // Loose fits the most accurate (90 ms with its margin) twice over; tight is the front's
        // geometric middle at the speed the frames show when it applies.
        let ms: Vec<(f64, f32)> = m.targets.iter().map(|&(at, t)| (at, t.ms(40.0, 1.5))).collect();
        assert!((ms[0].1 - 90.0 * 1.1 * 2.0).abs() < 1e-3 && (ms[1].1 - 1.5 * 60.0 * 1.1).abs() < 1e-3);
        assert_eq!(ms[2].1, ms[0].1);
        assert_eq!(ms.iter().map(|t| t.0).collect::<Vec<_>>(), vec![0.0, 0.22 * 36.0, 0.83 * 36.0]);
        assert_eq!(s.world, vec![(0.44 * 36.0, World::Contend(None, 2)), (0.72 * 36.0, World::Contend(None, 0))]);
        // --target-ms holds one target; --contend 0 leaves the machine alone.
        let s = Ask { target_ms: Some(70.0), duration_s: Some(5.0), ..Ask::default() }.script(&LEVELS).unwrap();
        assert_eq!((s.duration_s, s.models[0].targets.clone(), s.world), (5.0, vec![(0.0, Amount::Ms(70.0))], vec![]));
    }

    #[test]
    fn model_and_schedule_files_parse_and_combine() {
        let det = ModelDef::load("detector").unwrap();
        let cls = ModelDef::load("classifier").unwrap();
        assert_eq!((det.name.as_str(), det.priority), ("detector", 2.0));
        assert!(det.targets.len() >= 2 && matches!(det.period, Amount::Rel(_)));
        assert_eq!(det.unit, None);
        let gpu = ModelDef::from_json(r#"{"name": "g", "target_ms": 5, "unit": "gpu"}"#, "g.json", None).unwrap();
        assert_eq!(gpu.unit, Some(Unit::Gpu));
        let text = r#"{"duration_s": 10, "events": [
            {"at_s": 0, "target_ms": 90}, {"at_s": 2, "model": "detector", "target_rel": 1.5},
            {"at_s": 3, "contend": 2}, {"at_s": 5, "cpu_khz": 1190400}, {"at_s": 6, "contend": 0},
            {"at_s": 7, "gpu_khz": 510000}, {"at_s": 8, "contend": 1, "unit": "gpu"}]}"#;
        let sched = ScheduleFile::from_json(text, "s.json").unwrap();
        let ask = Ask { models: vec![det, cls], schedule: Some((sched, "s.json".into())), ..Ask::default() };
        let s = ask.script(&LEVELS).unwrap();
        assert_eq!(s.duration_s, 10.0);
        let pins = [(5.0, World::Pin(Unit::Cpu, 1_190_400)), (7.0, World::Pin(Unit::Gpu, 510_000))];
        let (on, off, gpu) = (World::Contend(None, 2), World::Contend(None, 0), World::Contend(Some(Unit::Gpu), 1));
        assert_eq!(s.world, vec![(3.0, on), pins[0], (6.0, off), pins[1], (8.0, gpu)]);
        let det = &s.models[0];
        assert_eq!(det.targets[0], (0.0, Amount::Ms(90.0)));
        assert_eq!(det.targets[1], (2.0, Amount::Rel(1.5)));
        assert!(det.targets.windows(2).all(|w| w[0].0 <= w[1].0));
    }

    #[test]
    fn bad_files_name_the_problem() {
        let model = |t: &str| ModelDef::from_json(t, "m.json", None).unwrap_err().to_string();
        assert!(model(r#"{"name": "a"}"#).contains("needs a target from the start"));
        assert!(model(r#"{"name": "a", "target_ms": 5, "target_rel": 2}"#).contains("not both"));
        assert!(model(r#"{"name": "a", "target_ms": 5, "priority": 0}"#).contains("priority"));
        assert!(model(r#"{"name": "a", "target_ms": 5, "colour": 1}"#).contains("unknown field"));
        assert!(
            model(r#"{"name": "a", "target_ms": 5, "schedule": [{"at_s": 3, "target_ms": 4}, {"at_s": 1, "target_ms": 4}]}"#)
                .contains("time order")
        );
        assert!(ModelDef::load("no-such-model").unwrap_err().to_string().contains("built-in models"));
        let sched = |t: &str| ScheduleFile::from_json(t, "s.json").unwrap_err().to_string();
        assert!(sched(r#"{"events": [{"at_s": 1}]}"#).contains("exactly one"));
        assert!(sched(r#"{"events": [{"at_s": 1, "contend": 2, "cpu_khz": 5}]}"#).contains("exactly one"));
        assert!(sched(r#"{"events": [{"at_s": 1, "cpu_khz": 5, "gpu_khz": 5}]}"#).contains("separate events"));
        assert!(sched(r#"{"events": [{"at_s": 1, "cpu_khz": 5, "unit": "gpu"}]}"#).contains("goes with contend"));
        assert!(model(r#"{"name": "a", "target_ms": 5, "unit": "npu"}"#).contains("unknown variant"));
        assert!(sched(r#"{"events": [{"at_s": 1, "model": "a", "contend": 2}]}"#).contains("goes with a target"));
        assert!(sched(r#"{"duration_s": -1}"#).contains("duration_s"));
        let named = ScheduleFile::from_json(r#"{"events": [{"at_s": 0, "model": "x", "target_ms": 5}]}"#, "s").unwrap();
        let ask = Ask { schedule: Some((named, "s".into())), target_ms: Some(9.0), ..Ask::default() };
        assert!(ask.script(&LEVELS).unwrap_err().to_string().contains("does not have"));
        let five = Ask { models: vec![ModelDef::new("a", vec![(0.0, Amount::Ms(1.0))]); 5], ..Ask::default() };
        assert!(five.script(&LEVELS).unwrap_err().to_string().contains("at most 4"));
    }
}
