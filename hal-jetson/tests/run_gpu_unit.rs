//! `dynofa run`'s GPU path without a GPU, beside a model on the CPU: `run_on` drives an engine that
//! says it runs on the GPU (the CPU engine underneath) and the CPU engine, over a fake Xavier NX
//! tree. What the CUDA backend shares with it is checked here on every machine: each unit's
//! latencies are timed and planned with, the GPU's devfreq clock is read every frame of the GPU
//! model and a `gpu_khz` event pins it (restored after), contention on the GPU takes a share of the
//! GPU's lanes and not of the CPU's, and the trace and scenario name each model's unit.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use dynofa_core::SubnetConfig;
use dynofa_core::hal::{ErrorType, InferenceEngine};
use dynofa_core::lut::Unit;
use dynofa_hal_jetson::linux::fake::{self, FakeBoard};
use dynofa_hal_jetson::linux::{GpuDevfreq, GpuLoad};
use dynofa_hal_jetson::run::backend::{Backend, Clocks, RunEngine, UnitEngine};
use dynofa_hal_jetson::run::console::Console;
use dynofa_hal_jetson::run::contend::{Work, spin};
use dynofa_hal_jetson::run::schedule::{Amount, Ask, ModelDef, ScheduleFile};
use dynofa_hal_jetson::run::{ModelEngine, Options, RunError, run_on};
use dynofa_hal_sim::scenario::EventKind;
use dynofa_kernels::{CpuEngine, DEFAULT_SEED, EngineError, SupernetWeights};

mod lut_support;

/// Two sub-networks, about three times apart in work so that timing them on a loaded machine
/// cannot swap them (k7 against k3 alone at one resolution once did), with CPU latencies only: the
/// run times their GPU latencies itself.
const SUBNETS: [(u8, u8, u8, u16, f32); 2] = [(3, 3, 2, 160, 70.0), (5, 6, 3, 192, 76.0)];

/// The CPU engine, one thread, standing in for a GPU engine.
struct StandIn(CpuEngine);

impl ErrorType for StandIn {
    type Error = EngineError;
}

impl InferenceEngine for StandIn {
    fn activate(&mut self, config: &SubnetConfig) -> Result<(), EngineError> {
        self.0.activate(config)
    }
    fn infer(&mut self, input: &[f32], output: &mut [f32]) -> Result<(), EngineError> {
        self.0.infer(input, output)
    }
}

impl UnitEngine for StandIn {
    const UNIT: Unit = Unit::Gpu;

    fn ready(&mut self, _: &[SubnetConfig]) -> Result<(), RunError> {
        Ok(())
    }
}

impl RunEngine for StandIn {
    const CONTENDER: [&'static str; 2] = ["stand-in stream", "stand-in streams"];
    type Freq = GpuDevfreq;
    type Load = GpuLoad;

    fn describe(&self) -> String {
        "stand-in gpu engine".into()
    }
    fn lanes(&self) -> usize {
        1
    }
    fn clock(clocks: &Clocks) -> Option<&std::sync::Mutex<GpuDevfreq>> {
        clocks.gpu.as_ref()
    }
    fn load(root: &Path, clocks: &Clocks) -> Option<GpuLoad> {
        clocks.gpu_load(root)
    }
    fn contender(&self, index: usize) -> Result<Work, RunError> {
        Ok(spin(index))
    }
}

#[test]
fn a_gpu_model_and_a_cpu_model_are_planned_clocked_and_contended_each_on_its_unit() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir(&root).unwrap();
    fake::create(FakeBoard::XavierNxJetPack5, &root).unwrap();
    let original = fake::gpu_limits(&root).unwrap();
    let schedule = ScheduleFile::from_json(
        r#"{"duration_s": 2.0, "events": [{"at_s": 0.5, "contend": 1, "unit": "gpu"},
            {"at_s": 1.0, "gpu_khz": 510000}, {"at_s": 1.5, "model": "seer", "target_ms": 0.001}]}"#,
        "schedule",
    )
    .unwrap();
    let model =
        |name: &str, unit: Unit| ModelDef { unit: Some(unit), ..ModelDef::new(name, vec![(0.0, Amount::Ms(1e5))]) };
    let models = vec![model("seer", Unit::Gpu), model("tagger", Unit::Cpu)];
    let opts = Options {
        ask: Ask { models, schedule: Some((schedule, "schedule".into())), ..Ask::default() },
        backend: Backend::Cuda,
        lut: Some(lut_support::write_lut(dir.path(), &SUBNETS, Unit::Cpu)),
        weights: None,
        images: None,
        max_images: 0,
        threads: None,
        trace: dir.path().join("trace.csv"),
        plot: dir.path().join("plot.svg"),
        root: root.clone(),
        stop: Arc::new(AtomicBool::new(false)),
    };
    let weights = SupernetWeights::seeded(dynofa_core::Supernet::W1_2, DEFAULT_SEED);
    let engines = vec![
        ModelEngine::new(StandIn(CpuEngine::with_threads(weights.clone(), 1))),
        ModelEngine::new(CpuEngine::with_threads(weights.clone(), 1)),
    ];
    let outcome = run_on(&opts, &mut Console::new(), &weights, engines).unwrap();
    let run = &outcome.run;

    let units: Vec<Unit> = run.scenario.models.iter().map(|m| m.unit).collect();
    assert_eq!(units, [Unit::Gpu, Unit::Cpu]);
    let about = &run.scenario.description;
    assert!(about.contains("stand-in gpu engine and cpu engine, 1 threads"), "{about}");
    let events: Vec<&EventKind> = run.scenario.events.iter().map(|e| &e.kind).collect();
    assert!(events.contains(&&EventKind::Clock { unit: Unit::Gpu, khz: 510_000 }), "{events:?}");
    assert!(events.contains(&&EventKind::Share { unit: Unit::Gpu, value: 0.5 }), "{events:?}");
    let (seer, tagger): (Vec<_>, Vec<_>) = run.frames.iter().partition(|f| f.model == 0);
    assert!(seer.len() > 5 && tagger.len() > 5, "{} and {} frames", seer.len(), tagger.len());
    // The GPU model reads the GPU's clock every frame: the fake board's top clock, then the pin;
    // the CPU model reads the CPU's.
    let clocks: Vec<f64> = seer.iter().map(|f| f.clock_mhz).collect();
    assert!(clocks.first().is_some_and(|&c| c > 510.0) && clocks.last() == Some(&510.0), "{clocks:?}");
    assert!(tagger.iter().all(|f| f.clock_mhz > 1000.0), "the cpu's clock");
    // One contender beside one model's stream takes half of the GPU while it is on, none of the CPU.
    assert!(seer.iter().any(|f| f.share == 0.5) && seer[0].share == 0.0);
    assert!(tagger.iter().all(|f| f.share == 0.0));
    // Each planned with its unit's latencies: the GPU model the most accurate under the loose
    // target, then the fastest under the impossible one; the CPU model the most accurate throughout.
    let entries: Vec<usize> = seer.iter().map(|f| f.entry).collect();
    assert!(entries.first() == Some(&1) && entries.last() == Some(&0), "{entries:?}");
    assert!(tagger.iter().all(|f| f.entry == 1), "{:?}", tagger.iter().map(|f| f.entry).collect::<Vec<_>>());
    let trace = std::fs::read_to_string(dir.path().join("trace.csv")).unwrap();
    assert!(trace.lines().next().unwrap().ends_with("load_pct,est_share,contenders"), "{trace}");
    // The pin ended with the run.
    assert_eq!(fake::gpu_limits(&root).unwrap(), original);
}
