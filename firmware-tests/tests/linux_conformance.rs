//! The HAL conformance suite on the Linux platform (`dynofa-hal-jetson`): the wall clock, clock
//! control and load sensor over a fake Xavier NX sysfs and procfs tree, with the CPU engine on the
//! CPU and, where a GPU is present, the CUDA engine on the GPU (elsewhere its tests say they
//! skipped). The LUT is three sub-networks at r 160, timed on the engine when the platform is made.

use std::path::Path;
use std::time::Instant;

use dynofa_core::SubnetConfig;
use dynofa_core::Top1Source;
use dynofa_core::arch::NUM_CLASSES;
use dynofa_core::hal::{FrequencyControl, InferenceEngine, LoadSensor};
use dynofa_core::lut::{LatencyPoint, Lut, LutEntry, Unit};
use dynofa_firmware_tests::conformance::{ENTRIES, Platform};
use dynofa_hal_jetson::linux::fake::{self, FakeBoard};
use dynofa_hal_jetson::run::joint::WallClock;
use dynofa_kernels::{DEFAULT_SEED, SupernetWeights};

/// The LUT's sub-networks, fastest first: (kernel, expand, depth, top-1).
const SUBNETS: [(u8, u8, u8, f32); 3] = [(3, 3, 2, 70.0), (5, 4, 2, 74.0), (7, 6, 3, 78.0)];
/// Their one resolution.
const R: u16 = 160;

fn configs() -> Vec<SubnetConfig> {
    SUBNETS.iter().map(|&(k, e, d, _)| SubnetConfig::uniform(k, e, d, R)).collect()
}

fn weights() -> SupernetWeights {
    SupernetWeights::seeded(dynofa_core::Supernet::W1_2, DEFAULT_SEED)
}

/// A fake Xavier NX tree in a temporary folder.
fn board() -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    fake::create(FakeBoard::XavierNxJetPack5, root.path()).unwrap();
    root
}

/// The LUT of [`SUBNETS`] with `engine`'s latencies on `unit` at `khz` (the top operating point,
/// where the suite plans): the mean of 3 frames after one.
fn timed_lut<E: InferenceEngine>(engine: &mut E, unit: Unit, khz: u32) -> Lut<ENTRIES>
where
    E::Error: std::fmt::Debug,
{
    let r = usize::from(R);
    let (input, mut logits) = (vec![0.1; 3 * r * r], vec![0.0; NUM_CLASSES]);
    let mut lut = Lut::new(1.2);
    for (config, &(.., top1)) in configs().into_iter().zip(&SUBNETS) {
        engine.activate(&config).unwrap();
        engine.infer(&input, &mut logits).unwrap();
        let start = Instant::now();
        for _ in 0..3 {
            engine.infer(&input, &mut logits).unwrap();
        }
        let mean_ms = start.elapsed().as_secs_f32() * 1e3 / 3.0;
        let mut entry = LutEntry::new(config, top1, Top1Source::Measured);
        entry.set_latency(LatencyPoint { unit, freq_khz: khz, mean_ms, std_ms: 0.0 }).unwrap();
        lut.push(entry).unwrap();
    }
    lut
}

/// The Linux platform over a fake Xavier NX tree, for the engine `make` builds on `unit`, whose
/// clock control and load sensor `io` opens under the tree.
struct Host<E, F, L> {
    root: tempfile::TempDir,
    weights: SupernetWeights,
    lut: Lut<ENTRIES>,
    unit: Unit,
    make: fn(&SupernetWeights) -> E,
    io: fn(&Path) -> (Option<F>, Option<L>),
}

impl<E, F, L> Host<E, F, L>
where
    E: InferenceEngine<Error: std::fmt::Debug>,
    F: FrequencyControl,
{
    fn new(unit: Unit, make: fn(&SupernetWeights) -> E, io: fn(&Path) -> (Option<F>, Option<L>)) -> Self {
        let (root, weights) = (board(), weights());
        // Planned at the top operating point, where the suite plans.
        let khz = io(root.path()).0.and_then(|f| f.operating_points().last().copied()).unwrap_or(0);
        let lut = timed_lut(&mut make(&weights), unit, khz);
        Host { root, weights, lut, unit, make, io }
    }
}

impl<E: InferenceEngine, F: FrequencyControl, L: LoadSensor> Platform for Host<E, F, L> {
    type Clock = WallClock;
    type Engine = E;
    type Delay = WallClock;
    type Frequency = F;
    type Load = L;

    fn lut(&self) -> &Lut<ENTRIES> {
        &self.lut
    }
    fn unit(&self) -> Unit {
        self.unit
    }
    fn model(&mut self) -> (WallClock, E, WallClock) {
        // The engine first: the clock's origin is the first frame's release, and making a CUDA
        // engine (compiling, uploading, capturing) took 170 ms on an H100.
        let engine = (self.make)(&self.weights);
        let clock = WallClock::new(Instant::now());
        (clock, engine, clock)
    }
    fn unit_io(&mut self) -> (Option<F>, Option<L>) {
        (self.io)(self.root.path())
    }
    fn input_len(&self) -> usize {
        3 * usize::from(R) * usize::from(R)
    }
    fn release_slack_ns(&self) -> u64 {
        // A loaded 2-core machine may run a woken thread tens of milliseconds late.
        100_000_000
    }
}

mod cpu {
    use dynofa_firmware_tests::hal_conformance;
    use dynofa_hal_jetson::linux::{CpuFreq, CpuLoad};
    use dynofa_kernels::CpuEngine;

    use super::*;

    /// The CPU engine (one thread: the tests run side by side) on the fake board's CPU.
    fn host() -> Host<CpuEngine, CpuFreq, CpuLoad> {
        Host::new(
            Unit::Cpu,
            |w| CpuEngine::with_threads(w.clone(), 1),
            |root| (CpuFreq::open(root).ok(), CpuLoad::open(root).ok()),
        )
    }

    hal_conformance!(host());

    #[test]
    fn the_fake_board_has_cpu_clock_control_and_load() {
        let (f, l) = host().unit_io();
        assert!(f.is_some_and(|f| f.operating_points().len() > 2) && l.is_some(), "the suite would skip");
    }
}

#[cfg(feature = "cuda")]
mod cuda {
    use dynofa_firmware_tests::hal_conformance;
    use dynofa_hal_jetson::gpu::{GpuEngine, driver_present};
    use dynofa_hal_jetson::linux::{GpuDevfreq, GpuLoad};

    use super::*;

    /// The CUDA engine with the LUT's graphs captured, on the fake board's GPU clock and load; `None`
    /// (said) where the engine cannot start.
    fn host() -> Option<Host<GpuEngine, GpuDevfreq, GpuLoad>> {
        if !driver_present() {
            println!("skipped: no CUDA driver (libcuda.so) on this machine");
            return None;
        }
        if let Err(e) = GpuEngine::new(weights()) {
            println!("skipped: the CUDA engine cannot start here: {e}");
            return None;
        }
        Some(Host::new(
            Unit::Gpu,
            |w| {
                let mut e = GpuEngine::new(w.clone()).unwrap();
                e.prepare(&configs()).unwrap();
                e
            },
            |root| {
                let f = GpuDevfreq::open(root).ok();
                let l = GpuLoad::open(root, f.as_ref().map(GpuDevfreq::dir)).ok();
                (f, l)
            },
        ))
    }

    hal_conformance!(maybe host());
}
