//! Scenarios: what the board runs and what happens to it, as JSON files in `hal-sim/scenarios/`.
//!
//! ```json
//! {
//!   "name": "fig7", "description": "...", "seed": 7, "duration_s": 60,
//!   "models": [{"name": "classifier", "unit": "gpu", "target_ms": 80, "period_ms": 0}],
//!   "events": [{"at_s": 2.5, "share": {"unit": "gpu", "value": 0.3}},
//!              {"at_s": 20, "target": {"model": "classifier", "target_ms": 60}},
//!              {"at_s": 30, "clock": {"unit": "gpu", "khz": 599250}}]
//! }
//! ```
//! `share`: another application takes that share of the unit from then on (0 ends it);
//! `target`: a model's goal changes (fields as in `models`, missing ones keep their value);
//! `clock`: the governor pins the unit's clock (an operating point).

use std::path::Path;

use dynofa_core::control::Goal;
use dynofa_core::lut::Unit;
use serde::Deserialize;

use crate::SimError;
use crate::model::operating_points;

/// The scenarios shipped with the simulator, by name.
pub const BUILT_IN: [(&str, &str); 8] = [
    ("fig6", include_str!("../scenarios/fig6.json")),
    ("fig7", include_str!("../scenarios/fig7.json")),
    ("fig8", include_str!("../scenarios/fig8.json")),
    ("dvfs-drop", include_str!("../scenarios/dvfs-drop.json")),
    ("bursty", include_str!("../scenarios/bursty.json")),
    ("gpu-cpu", include_str!("../scenarios/gpu-cpu.json")),
    ("rush-hour", include_str!("../scenarios/rush-hour.json")),
    ("patrol", include_str!("../scenarios/patrol.json")),
];

/// One model of a scenario.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelDef {
    /// Its name in summaries and plots.
    pub name: String,
    /// The unit it runs on.
    pub unit: Unit,
    /// Latency target in ms.
    pub target_ms: f32,
    /// Frame period in ms (0: back to back).
    #[serde(default)]
    pub period_ms: f32,
    /// Accuracy floor for the Dynamic-OFA policy (0: none).
    #[serde(default)]
    pub floor_top1: f32,
    /// Priority when models compete for a unit.
    #[serde(default = "one")]
    pub priority: f32,
}

fn one() -> f32 {
    1.0
}

impl ModelDef {
    /// Its goal.
    pub fn goal(&self) -> Goal {
        Goal {
            target_ms: self.target_ms,
            period_ms: self.period_ms,
            floor_top1: self.floor_top1,
            priority: self.priority,
        }
    }
}

/// A change of a model's goal; missing fields keep their value.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetChange {
    /// The model's name.
    pub model: String,
    /// New target in ms.
    pub target_ms: Option<f32>,
    /// New period in ms.
    pub period_ms: Option<f32>,
    /// New accuracy floor.
    pub floor_top1: Option<f32>,
}

/// Something that happens to the board.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventKind {
    /// Another application takes `value` of `unit` from now on.
    Share {
        /// The unit.
        unit: Unit,
        /// Its share, 0 to 0.9.
        value: f32,
    },
    /// A model's goal changes.
    Target(TargetChange),
    /// The governor pins `unit`'s clock to `khz`.
    Clock {
        /// The unit.
        unit: Unit,
        /// An operating point in kHz.
        khz: u32,
    },
}

/// An event at a time.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Event {
    /// Seconds from the start.
    pub at_s: f64,
    /// What happens.
    #[serde(flatten)]
    pub kind: EventKind,
}

/// A scenario.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Its name.
    pub name: String,
    /// What it shows.
    #[serde(default)]
    pub description: String,
    /// Seed of every random draw.
    pub seed: u64,
    /// Length in seconds.
    pub duration_s: f64,
    /// The GPU clock at the start in kHz (default: the highest).
    #[serde(default)]
    pub gpu_khz: Option<u32>,
    /// The models.
    pub models: Vec<ModelDef>,
    /// What happens, in time order.
    #[serde(default)]
    pub events: Vec<Event>,
}

impl Scenario {
    /// Parse and check a scenario; `origin` names it in errors.
    pub fn from_json(text: &str, origin: &str) -> Result<Self, SimError> {
        let s: Scenario = serde_json::from_str(text)
            .map_err(|e| SimError::Scenario { origin: origin.into(), reason: e.to_string() })?;
        s.check().map_err(|reason| SimError::Scenario { origin: origin.into(), reason })?;
        Ok(s)
    }

    /// A built-in scenario by name, or a JSON file by path.
    pub fn load(name_or_path: &str) -> Result<Self, SimError> {
        if let Some((name, text)) = BUILT_IN.iter().find(|(n, _)| *n == name_or_path) {
            return Scenario::from_json(text, name);
        }
        let path = Path::new(name_or_path);
        let text = std::fs::read_to_string(path).map_err(|source| SimError::Read { path: path.into(), source })?;
        Scenario::from_json(&text, name_or_path)
    }

    /// Index of the model called `name`.
    pub fn model(&self, name: &str) -> Option<usize> {
        self.models.iter().position(|m| m.name == name)
    }

    /// What is wrong with it, if anything (a scenario changed after loading is checked again by
    /// [`crate::simulate`], since its fields are public).
    pub(crate) fn check(&self) -> Result<(), String> {
        let max = dynofa_core::control::MAX_MODELS;
        if self.models.is_empty() || self.models.len() > max {
            return Err(format!("needs 1 to {max} models, has {}", self.models.len()));
        }
        if !(self.duration_s.is_finite() && self.duration_s > 0.0) {
            return Err("duration_s must be positive".into());
        }
        for m in &self.models {
            if !dynofa_core::control::Goal::is_valid(&m.goal()) {
                return Err(format!("model {:?}: target and priority must be positive, period non-negative", m.name));
            }
        }
        if let Some(khz) = self.gpu_khz {
            check_clock(Unit::Gpu, khz)?;
        }
        let mut last = 0.0;
        for (i, e) in self.events.iter().enumerate() {
            if !(e.at_s.is_finite() && e.at_s >= last) {
                return Err(format!("event {i}: at_s must be finite and events in time order"));
            }
            last = e.at_s;
            match &e.kind {
                EventKind::Share { value, .. } if !(0.0..=0.9).contains(value) => {
                    return Err(format!("event {i}: share must be within 0..=0.9"));
                }
                EventKind::Target(t) if self.model(&t.model).is_none() => {
                    return Err(format!("event {i}: no model called {:?}", t.model));
                }
                EventKind::Clock { unit, khz } => check_clock(*unit, *khz).map_err(|r| format!("event {i}: {r}"))?,
                _ => {}
            }
        }
        Ok(())
    }
}

fn check_clock(unit: Unit, khz: u32) -> Result<(), String> {
    let ops = operating_points(unit);
    if ops.contains(&khz) {
        Ok(())
    } else {
        Err(format!("{khz} kHz is not a {unit} operating point; use one of {ops:?}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{PolicyKind, SimError, dynamic_ofa_lut_path, load_lut, simulate};

    #[test]
    fn built_in_scenarios_parse() {
        for (name, _) in BUILT_IN {
            let s = Scenario::load(name).unwrap();
            assert_eq!(s.name, name);
        }
    }

    #[test]
    fn bad_scenarios_name_the_problem() {
        let bad = |text: &str| Scenario::from_json(text, "x").unwrap_err().to_string();
        let base = r#"{"name":"x","seed":1,"duration_s":1,"models":[{"name":"a","unit":"gpu","target_ms":50}]"#;
        assert!(
            bad(&format!("{base},\"events\":[{{\"at_s\":1,\"share\":{{\"unit\":\"gpu\",\"value\":2}}}}]}}"))
                .contains("share must be within")
        );
        assert!(
            bad(&format!("{base},\"events\":[{{\"at_s\":1,\"clock\":{{\"unit\":\"gpu\",\"khz\":5}}}}]}}"))
                .contains("not a gpu operating point")
        );
        assert!(
            bad(&format!("{base},\"events\":[{{\"at_s\":1,\"target\":{{\"model\":\"b\"}}}}]}}"))
                .contains("no model called")
        );
        assert!(bad(r#"{"name":"x"}"#).contains("missing field"));
        assert!(Scenario::load("no-such-scenario").unwrap_err().to_string().contains("no-such-scenario"));
    }

    #[test]
    fn a_scenario_changed_after_loading_is_checked_again() {
        let lut = load_lut(&dynamic_ofa_lut_path()).unwrap();
        let mut scenario = Scenario::load("fig6").unwrap();
        scenario.models[0].name = "renamed".into();
        let e = simulate(&scenario, PolicyKind::Dynofa, &lut).unwrap_err();
        assert!(matches!(e, SimError::Scenario { .. }), "{e}");
        assert!(e.to_string().starts_with("scenario fig6: event ") && e.to_string().contains("no model called"), "{e}");
        let mut scenario = Scenario::load("fig7").unwrap();
        scenario.duration_s = f64::NAN;
        let e = simulate(&scenario, PolicyKind::Dynofa, &lut).unwrap_err();
        assert_eq!(e.to_string(), "scenario fig7: duration_s must be positive");
    }
}
