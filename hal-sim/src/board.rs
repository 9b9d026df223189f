//! The simulated board and its HAL: one virtual timeline per model, units with clocks and a
//! share taken by other applications, and the core's traits implemented on top.
//!
//! A frame of model `k` running entry `e` on a unit at clock `f` takes
//! `nominal(e, f) * noise / max(0.05, 1 - share - sum_j nominal(e_j, f) / slot_j)`, where the sum
//! runs over the other models on the unit (each demands its frame's work once per slot), `share`
//! is what other applications take, and `nominal` is the calibrated table latency
//! ([`crate::model::nominal_ms`]). The frame's own work (`nominal * noise`) is charged at the
//! unit's active power and pacing delays at its idle power.

use std::cell::RefCell;
use std::rc::Rc;

use dynofa_core::config::SubnetConfig;
use dynofa_core::control::{ModelSpec, PowerTable};
use dynofa_core::hal::{Clock, ErrorKind, ErrorType, FrequencyControl, InferenceEngine, LoadSensor};
use dynofa_core::lut::{LatencyPoint, Lut, LutEntry, Unit};
use dynofa_core::runtime::{ModelSlot, UnitIo};
use embedded_hal::delay::DelayNs;

use crate::model::{JETSON_NOISE, NoiseModel, Rng, nominal_ms, operating_points, power_point};

/// Most entries a simulated LUT holds.
pub const SIM_ENTRIES: usize = 64;
/// The LUT type of the simulator.
pub type SimLut = Lut<SIM_ENTRIES>;

/// The smallest share of a unit a frame gets, however loaded the unit is.
const MIN_FREE: f64 = 0.05;

/// One model's state on the board.
#[derive(Debug, Clone)]
pub struct ModelState {
    /// Its unit.
    pub unit: Unit,
    /// Its frame slot in ms: its period, or its target when frames run back to back.
    pub slot_ms: f64,
    /// Its timeline in ns.
    pub time_ns: u64,
    /// The entry its engine runs.
    pub active: Option<usize>,
    /// Energy charged to it so far.
    pub energy_j: f64,
}

/// The board: what every HAL handle of one simulation shares.
#[derive(Debug)]
pub struct Board {
    configs: Vec<SubnetConfig>,
    /// Per entry and unit: the table latency at the top clock, where the LUT has one.
    table_ms: Vec<[Option<f64>; 2]>,
    khz: [u32; 2],
    share: [f64; 2],
    models: Vec<ModelState>,
    rng: Rng,
    noise: NoiseModel,
}

/// The handle every HAL piece holds.
pub type SharedBoard = Rc<RefCell<Board>>;

/// The table latency of an entry on a unit: its point at the highest clock (an unpinned point
/// counts as the highest), as a search or a per-op table sum writes it.
fn table_latency<const P: usize>(e: &LutEntry<P>, unit: Unit) -> Option<f64> {
    e.latency
        .iter()
        .filter(|l| l.unit == unit)
        .max_by_key(|l| if l.freq_khz == 0 { u32::MAX } else { l.freq_khz })
        .map(|l| f64::from(l.mean_ms))
}

impl Board {
    /// A board for the LUT's entries (their table latencies are the truth) and models given as
    /// (unit, slot ms), the GPU at `gpu_khz`, every random draw from `seed`.
    pub fn new(lut: &SimLut, models: &[(Unit, f64)], gpu_khz: u32, seed: u64) -> Self {
        Board {
            configs: lut.entries().iter().map(|e| e.config).collect(),
            table_ms: lut
                .entries()
                .iter()
                .map(|e| [table_latency(e, Unit::Gpu), table_latency(e, Unit::Cpu)])
                .collect(),
            khz: [gpu_khz, operating_points(Unit::Cpu)[0]],
            share: [0.0; 2],
            models: models
                .iter()
                .map(|&(unit, slot_ms)| ModelState { unit, slot_ms, time_ns: 0, active: None, energy_j: 0.0 })
                .collect(),
            rng: Rng::new(seed),
            noise: JETSON_NOISE,
        }
    }

    /// Share the board among HAL handles.
    pub fn shared(self) -> SharedBoard {
        Rc::new(RefCell::new(self))
    }

    /// The noise model.
    pub fn noise(&self) -> NoiseModel {
        self.noise
    }

    /// The models.
    pub fn models(&self) -> &[ModelState] {
        &self.models
    }

    /// A unit's clock in kHz.
    pub fn clock_khz(&self, unit: Unit) -> u32 {
        self.khz[unit.index()]
    }

    /// The governor pins a unit's clock.
    pub fn set_clock_khz(&mut self, unit: Unit, khz: u32) {
        self.khz[unit.index()] = khz;
    }

    /// The share of a unit other applications take.
    pub fn share(&self, unit: Unit) -> f64 {
        self.share[unit.index()]
    }

    /// Another application takes `share` of `unit` from now on.
    pub fn set_share(&mut self, unit: Unit, share: f64) {
        self.share[unit.index()] = share;
    }

    /// A model's frame slot changed (its period or target did).
    pub fn set_slot_ms(&mut self, model: usize, slot_ms: f64) {
        if let Some(m) = self.models.get_mut(model) {
            m.slot_ms = slot_ms;
        }
    }

    /// Noise-free latency of `entry` alone on `unit` at `khz`, where the LUT has a table latency.
    pub fn nominal_ms(&self, entry: usize, unit: Unit, khz: u32) -> Option<f64> {
        let t = self.table_ms.get(entry)?[unit.index()]?;
        Some(nominal_ms(unit, t, khz))
    }

    /// The demand on model `k`'s unit of the other models there.
    pub fn others_demand(&self, k: usize) -> f64 {
        let unit = self.models[k].unit;
        let khz = self.khz[unit.index()];
        (0..self.models.len())
            .filter(|&j| j != k && self.models[j].unit == unit)
            .filter_map(|j| {
                let m = &self.models[j];
                Some(self.nominal_ms(m.active?, unit, khz)? / m.slot_ms)
            })
            .sum()
    }

    /// The factor by which other applications and co-located models stretch model `k`'s frames.
    pub fn stretch(&self, k: usize) -> f64 {
        let unit = self.models[k].unit;
        1.0 / (1.0 - self.share[unit.index()] - self.others_demand(k)).max(MIN_FREE)
    }

    /// `lut` with every entry's latency replaced by what `frames` noisy frames at each operating
    /// point of each unit it has a table latency for give (mean and standard deviation), the way
    /// `cargo xtask profile` measures a board: alone on the unit, clocks pinned.
    pub fn profile(&self, lut: &SimLut, frames: usize, seed: u64) -> SimLut {
        let mut rng = Rng::new(seed);
        self.relatency(lut, |nominal| {
            let (mut sum, mut sq) = (0.0, 0.0);
            for _ in 0..frames {
                let x = nominal * self.noise.draw(&mut rng);
                sum += x;
                sq += x * x;
            }
            let mean = sum / frames as f64;
            (mean, (sq / frames as f64 - mean * mean).max(0.0).sqrt())
        })
    }

    /// `lut` with every entry's latency replaced by its noise-free latency at each operating point:
    /// the truth the oracle plans with.
    pub fn truth(&self, lut: &SimLut) -> SimLut {
        self.relatency(lut, |nominal| (nominal, 0.0))
    }

    fn relatency(&self, lut: &SimLut, mut measure: impl FnMut(f64) -> (f64, f64)) -> SimLut {
        let mut out = lut.clone();
        for (i, e) in out.entries_mut().iter_mut().enumerate() {
            e.latency.clear();
            for unit in Unit::ALL {
                for &khz in operating_points(unit) {
                    let Some(nominal) = self.nominal_ms(i, unit, khz) else { continue };
                    let (mean, std) = measure(nominal);
                    let point = LatencyPoint { unit, freq_khz: khz, mean_ms: mean as f32, std_ms: std as f32 };
                    // Cannot fail: 11 GPU and 1 CPU points fit the 16 an entry holds.
                    let _ = e.set_latency(point);
                }
            }
        }
        out
    }

    /// Run one frame of model `k`: advance its timeline and charge its energy.
    fn run_frame(&mut self, k: usize) -> Result<(), ErrorKind> {
        let m = self.models.get(k).ok_or(ErrorKind::InvalidInput)?;
        let (unit, entry) = (m.unit, m.active.ok_or(ErrorKind::NotPrepared)?);
        let khz = self.khz[unit.index()];
        let nominal = self.nominal_ms(entry, unit, khz).ok_or(ErrorKind::NotPrepared)?;
        let busy = nominal * self.noise.draw(&mut self.rng);
        let wall = busy * self.stretch(k);
        let m = &mut self.models[k];
        m.time_ns += (wall * 1e6) as u64;
        m.energy_j += f64::from(PowerTable::frame_energy_j(&power_point(unit, khz), busy as f32, 0.0));
        Ok(())
    }

    /// Model `k` idles for `ns`.
    fn idle(&mut self, k: usize, ns: u64) {
        let Some(m) = self.models.get_mut(k) else { return };
        let point = power_point(m.unit, self.khz[m.unit.index()]);
        m.time_ns += ns;
        m.energy_j += f64::from(PowerTable::frame_energy_j(&point, 0.0, ns as f32 * 1e-6));
    }
}

/// Model `k`'s clock: its virtual timeline.
#[derive(Debug, Clone)]
pub struct SimClock {
    board: SharedBoard,
    model: usize,
}

/// Model `k`'s engine: activation looks the config up among the LUT's, a frame advances time.
#[derive(Debug, Clone)]
pub struct SimEngine {
    board: SharedBoard,
    model: usize,
}

/// Model `k`'s pacing: idles its timeline.
#[derive(Debug, Clone)]
pub struct SimDelay {
    board: SharedBoard,
    model: usize,
}

/// A unit's clock control: any operating point may be pinned.
#[derive(Debug, Clone)]
pub struct SimFrequency {
    board: SharedBoard,
    unit: Unit,
}

/// A unit's load: the share other applications take plus the models' demand, at the time read.
#[derive(Debug, Clone)]
pub struct SimLoad {
    board: SharedBoard,
    unit: Unit,
}

/// Model `k`'s HAL pieces.
pub fn model_hal(board: &SharedBoard, model: usize) -> (SimClock, SimEngine, SimDelay) {
    (
        SimClock { board: board.clone(), model },
        SimEngine { board: board.clone(), model },
        SimDelay { board: board.clone(), model },
    )
}

/// A unit's HAL pieces.
pub fn unit_hal(board: &SharedBoard, unit: Unit) -> (SimFrequency, SimLoad) {
    (SimFrequency { board: board.clone(), unit }, SimLoad { board: board.clone(), unit })
}

/// A model's runtime slot on the simulated board.
pub type SimSlot = ModelSlot<SimClock, SimEngine, SimDelay>;

/// A unit's runtime I/O on the simulated board.
pub type SimUnitIo = UnitIo<SimFrequency, SimLoad>;

/// The runtime's slots for `specs` (model `k` on `specs[k].unit`, released every goal period) and
/// the I/O of every unit, all over `board`: what [`crate::simulate`] and the soak tests hand to
/// `Runtime::new`.
pub fn runtime_io(board: &SharedBoard, specs: &[ModelSpec]) -> (Vec<SimSlot>, Vec<SimUnitIo>) {
    let slots = specs
        .iter()
        .enumerate()
        .map(|(k, m)| {
            let (clock, engine, delay) = model_hal(board, k);
            ModelSlot::new(clock, engine, delay, m.unit, (f64::from(m.goal.period_ms) * 1e6) as u64)
        })
        .collect();
    let units = Unit::ALL
        .into_iter()
        .map(|u| {
            let (f, l) = unit_hal(board, u);
            UnitIo::new(u, Some(f), Some(l))
        })
        .collect();
    (slots, units)
}

macro_rules! infallible_kind {
    ($($t:ty),*) => {$(impl ErrorType for $t { type Error = ErrorKind; })*};
}
infallible_kind!(SimClock, SimEngine, SimFrequency, SimLoad);

impl Clock for SimClock {
    fn now_ns(&mut self) -> Result<u64, ErrorKind> {
        self.board.borrow().models.get(self.model).map(|m| m.time_ns).ok_or(ErrorKind::InvalidInput)
    }
}

impl DelayNs for SimDelay {
    fn delay_ns(&mut self, ns: u32) {
        self.board.borrow_mut().idle(self.model, u64::from(ns));
    }
}

impl InferenceEngine for SimEngine {
    fn activate(&mut self, config: &SubnetConfig) -> Result<(), ErrorKind> {
        let mut b = self.board.borrow_mut();
        let entry = b.configs.iter().position(|c| c == config).ok_or(ErrorKind::NotPrepared)?;
        let unit = b.models.get(self.model).ok_or(ErrorKind::InvalidInput)?.unit;
        if b.table_ms[entry][unit.index()].is_none() {
            return Err(ErrorKind::NotPrepared);
        }
        b.models[self.model].active = Some(entry);
        Ok(())
    }

    fn infer(&mut self, _input: &[f32], _output: &mut [f32]) -> Result<(), ErrorKind> {
        self.board.borrow_mut().run_frame(self.model)
    }
}

impl FrequencyControl for SimFrequency {
    fn unit(&self) -> Unit {
        self.unit
    }

    fn operating_points(&self) -> &[u32] {
        operating_points(self.unit)
    }

    fn current_khz(&mut self) -> Result<u32, ErrorKind> {
        Ok(self.board.borrow().clock_khz(self.unit))
    }

    fn set_khz(&mut self, khz: u32) -> Result<(), ErrorKind> {
        if !operating_points(self.unit).contains(&khz) {
            return Err(ErrorKind::InvalidInput);
        }
        self.board.borrow_mut().set_clock_khz(self.unit, khz);
        Ok(())
    }
}

impl LoadSensor for SimLoad {
    fn unit(&self) -> Unit {
        self.unit
    }

    fn load_permille(&mut self) -> Result<u16, ErrorKind> {
        let b = self.board.borrow();
        let khz = b.clock_khz(self.unit);
        let demand: f64 = b
            .models
            .iter()
            .filter(|m| m.unit == self.unit)
            .filter_map(|m| Some(b.nominal_ms(m.active?, self.unit, khz)? / m.slot_ms))
            .sum();
        Ok(((b.share(self.unit) + demand).clamp(0.0, 1.0) * 1000.0).round() as u16)
    }
}
