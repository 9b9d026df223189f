//! The engines `dynofa run` drives: the CPU engine on the cores or the CUDA engine on the GPU, each
//! with its unit's clock control, load sensor and contention.
//!
//! The session is written once over [`RunEngine`]; what differs between the units is here.

use std::fmt::{Debug, Display};
use std::path::Path;
use std::sync::{Mutex, PoisonError};

use dynofa_core::SubnetConfig;
use dynofa_core::hal::{FrequencyControl, InferenceEngine, LoadSensor};
use dynofa_core::lut::Unit;
use dynofa_kernels::{CpuEngine, SupernetWeights};

use super::RunError;
use super::console::Console;
use super::contend::{Work, spin};
use crate::linux::{CpuFreq, CpuLoad, GpuDevfreq, GpuLoad, Platform, SysfsError};

/// Which engine runs sub-networks (`--backend` of `dynofa run` and `dynofa infer`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Backend {
    /// The CPU engine (dynofa-kernels); `dynofa run` plans it with the LUT's CPU latencies.
    #[default]
    Cpu,
    /// The CUDA engine (NVRTC kernels, one CUDA graph per sub-network); needs an NVIDIA driver and
    /// libnvrtc; `dynofa run` plans it with the LUT's GPU latencies.
    Cuda,
}

impl Backend {
    /// The processing unit it runs on.
    pub const fn unit(self) -> Unit {
        match self {
            Backend::Cpu => Unit::Cpu,
            Backend::Cuda => Unit::Gpu,
        }
    }

    /// The backend that runs on `unit`.
    pub const fn of(unit: Unit) -> Self {
        match unit {
            Unit::Cpu => Backend::Cpu,
            Unit::Gpu => Backend::Cuda,
        }
    }
}

/// The machine's clock controls (DVFS), where the platform has them: each model reads its unit's
/// every frame; a schedule's `cpu_khz` and `gpu_khz` events pin them.
#[derive(Debug, Default)]
pub struct Clocks {
    /// The CPU's (cpufreq).
    pub cpu: Option<Mutex<CpuFreq>>,
    /// The GPU's (devfreq).
    pub gpu: Option<Mutex<GpuDevfreq>>,
}

impl Clocks {
    /// Probe the platform under `root` and report, on `console`, the board and the clocks: the CPU's
    /// always, the GPU's when the run uses it or pins it (`gpu`).
    pub fn probe(root: &Path, gpu: bool, console: &mut Console) -> Self {
        let platform = Platform::probe(root);
        console.line(&format!("platform: {}", platform.board));
        let cpu = report(console, "cpu", "cpu_khz", platform.cpu, |c| c.policies()[0].governor(), CpuFreq::dvfs);
        let gpu = if gpu {
            report(console, "gpu", "gpu_khz", platform.gpu, GpuDevfreq::governor, GpuDevfreq::dvfs)
        } else {
            None
        };
        Clocks { cpu, gpu }
    }

    /// The GPU's load sensor under `root` (beside its devfreq node where one was found), where it
    /// has one.
    pub fn gpu_load(&self, root: &Path) -> Option<GpuLoad> {
        let dir = self.gpu.as_ref().map(|g| g.lock().unwrap_or_else(PoisonError::into_inner).dir().to_owned());
        GpuLoad::open(root, dir.as_deref()).ok()
    }

    /// Pin `unit`'s clock to `khz`; `None` where the unit has no clock control.
    pub fn pin(&self, unit: Unit, khz: u32) -> Option<Result<(), SysfsError>> {
        fn set<F: FrequencyControl<Error = SysfsError>>(f: &Mutex<F>, khz: u32) -> Result<(), SysfsError> {
            f.lock().unwrap_or_else(PoisonError::into_inner).set_khz(khz)
        }
        match unit {
            Unit::Cpu => self.cpu.as_ref().map(|c| set(c, khz)),
            Unit::Gpu => self.gpu.as_ref().map(|g| set(g, khz)),
        }
    }
}

/// Report a unit's clock control as found, and keep it (DVFS ready or not) where it exists.
fn report<F: FrequencyControl<Error = SysfsError>>(
    console: &mut Console,
    unit: &str,
    event: &str,
    found: Result<F, SysfsError>,
    governor: impl Fn(&F) -> Result<String, SysfsError>,
    dvfs: impl Fn(&F) -> Result<(), SysfsError>,
) -> Option<Mutex<F>> {
    match found {
        Ok(mut c) => {
            let now = c.current_khz().map_or_else(|e| format!("unreadable ({e})"), |k| format!("{k} kHz"));
            let governor = governor(&c).unwrap_or_else(|_| "unknown".into());
            let ready = match dvfs(&c) {
                Ok(()) => format!("dvfs ready (a schedule's {event} events pin it; restored at exit)"),
                Err(e) => format!("dvfs unavailable: {e}; the clocks stay as the system sets them"),
            };
            console.line(&format!("{unit} clock: {now}, governor {governor}; {ready}"));
            Some(Mutex::new(c))
        }
        Err(e) => {
            console.line(&format!("{unit} dvfs: unavailable: {e}; the run goes on at the clocks the system sets"));
            None
        }
    }
}

/// An engine on one unit, which makes sub-networks ready before it activates them: what timing a
/// LUT needs.
pub trait UnitEngine: InferenceEngine {
    /// The unit it runs on: the LUT latencies that plan it, the clock it reads.
    const UNIT: Unit;

    /// Make `configs` ready, so that [`InferenceEngine::activate`] takes them without allocating.
    /// Allocates (the CUDA engine captures their graphs): call it at start-up.
    fn ready(&mut self, configs: &[SubnetConfig]) -> Result<(), RunError>;
}

/// What a run needs of an engine beyond [`UnitEngine`]: the unit's clock and load, and what
/// contends for the unit.
pub trait RunEngine: UnitEngine<Error: Display + Debug + Send> + Send + Sized {
    /// A contender for the unit, singular and plural, for messages.
    const CONTENDER: [&'static str; 2];
    /// The unit's clock control.
    type Freq: FrequencyControl<Error = SysfsError> + Send;
    /// The unit's load sensor.
    type Load: LoadSensor;

    /// What it is, for messages and the LUT's provenance.
    fn describe(&self) -> String;

    /// How many lanes of the unit one model's engine keeps busy (threads, streams): contention's
    /// share is the contenders' part of all lanes.
    fn lanes(&self) -> usize;

    /// The unit's clock control among `clocks`.
    fn clock(clocks: &Clocks) -> Option<&Mutex<Self::Freq>>;

    /// The unit's load sensor under `root`, where it has one.
    fn load(root: &Path, clocks: &Clocks) -> Option<Self::Load>;

    /// One contender's work, called over and over while it is on: busy threads for the CPU,
    /// another stream running the largest sub-network for the GPU.
    fn contender(&self, index: usize) -> Result<Work, RunError>;
}

impl UnitEngine for CpuEngine {
    const UNIT: Unit = Unit::Cpu;

    fn ready(&mut self, _: &[SubnetConfig]) -> Result<(), RunError> {
        Ok(())
    }
}

impl RunEngine for CpuEngine {
    const CONTENDER: [&'static str; 2] = ["busy thread", "busy threads"];
    type Freq = CpuFreq;
    type Load = CpuLoad;

    fn describe(&self) -> String {
        format!("cpu engine, {} threads, {:?}", self.threads(), self.isa())
    }

    fn lanes(&self) -> usize {
        self.threads()
    }

    fn clock(clocks: &Clocks) -> Option<&Mutex<CpuFreq>> {
        clocks.cpu.as_ref()
    }

    fn load(root: &Path, _: &Clocks) -> Option<CpuLoad> {
        CpuLoad::open(root).ok()
    }

    fn contender(&self, index: usize) -> Result<Work, RunError> {
        Ok(spin(index))
    }
}

#[cfg(feature = "cuda")]
impl UnitEngine for crate::gpu::GpuEngine {
    const UNIT: Unit = Unit::Gpu;

    fn ready(&mut self, configs: &[SubnetConfig]) -> Result<(), RunError> {
        Ok(self.prepare(configs)?)
    }
}

#[cfg(feature = "cuda")]
impl RunEngine for crate::gpu::GpuEngine {
    const CONTENDER: [&'static str; 2] = ["stream of the largest sub-network", "streams of the largest sub-network"];
    type Freq = GpuDevfreq;
    type Load = GpuLoad;

    fn describe(&self) -> String {
        let report = self.compile_report();
        format!("cuda engine, {}, {}", report.device, report.arch)
    }

    fn lanes(&self) -> usize {
        1
    }

    fn clock(clocks: &Clocks) -> Option<&Mutex<GpuDevfreq>> {
        clocks.gpu.as_ref()
    }

    fn load(root: &Path, clocks: &Clocks) -> Option<GpuLoad> {
        clocks.gpu_load(root)
    }

    fn contender(&self, _: usize) -> Result<Work, RunError> {
        let largest = SubnetConfig::uniform(7, 6, 4, dynofa_core::arch::MAX_RESOLUTION);
        let mut other = crate::gpu::GpuEngine::new(self.weights().clone())?;
        other.prepare(std::slice::from_ref(&largest))?;
        other.activate(&largest)?;
        let r = usize::from(largest.r);
        let (input, mut logits) = (vec![0.0f32; 3 * r * r], vec![0.0f32; dynofa_core::arch::NUM_CLASSES]);
        // A failed frame (the GPU gone) ends nothing, the contender only loads the GPU; it waits
        // before the next try rather than spin a core.
        Ok(Box::new(move || {
            if other.infer(&input, &mut logits).is_err() {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        }))
    }
}

/// An engine of `backend` on `weights` (a CPU engine with `threads`, default one per core).
pub fn build(backend: Backend, weights: &SupernetWeights, threads: Option<usize>) -> Result<AnyEngine, RunError> {
    match backend {
        Backend::Cpu => Ok(AnyEngine::Cpu(Box::new(match threads {
            Some(t) => CpuEngine::with_threads(weights.clone(), t),
            None => CpuEngine::new(weights.clone()),
        }))),
        #[cfg(feature = "cuda")]
        Backend::Cuda => Ok(AnyEngine::Cuda(Box::new(crate::gpu::GpuEngine::new(weights.clone())?))),
        #[cfg(not(feature = "cuda"))]
        Backend::Cuda => Err(crate::gpu::GpuError::NotBuilt.into()),
    }
}

/// An engine of either backend (boxed: both are large, and built once).
#[derive(Debug)]
pub enum AnyEngine {
    /// The CPU engine.
    Cpu(Box<CpuEngine>),
    /// The CUDA engine.
    #[cfg(feature = "cuda")]
    Cuda(Box<crate::gpu::GpuEngine>),
}
