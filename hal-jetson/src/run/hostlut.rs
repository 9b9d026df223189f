//! The LUT a run plans with: latencies of this machine, never another's.
//!
//! Latencies are the run's unit's: the CPU's for the CPU engine, the GPU's for the CUDA engine.
//!
//! - `--lut FILE`, or else a committed host LUT (`luts/host-cpu.json` or `luts/host-gpu.json`, else
//!   another `luts/host-*.json`, beside the binary or in the workspace, written by `cargo xtask
//!   profile`): used as it is after two of its entries are timed here; when they are more than 2x
//!   off, the run says so, says how to re-profile, and times the LUT's entries now instead. A LUT
//!   without latencies of the unit is timed now.
//! - Otherwise the unit's Pareto set of the searched Xavier NX LUT (`luts/xavier-nx.json`, embedded
//!   in the binary), with its predicted top-1, timed on this machine at start-up.
//! - When the run times the entries itself and the LUT was not given with `--lut`, it times a ladder
//!   below the fastest too (that sub-network at lower resolutions and the smallest sub-network,
//!   top-1 from OFA's predictor): the searched sets span only about 2x in latency, and contention
//!   can multiply frame times by more. A LUT used as it is gets nothing added: latencies from two
//!   sources would disagree, and the manager would read the difference as a change of speed.

use std::path::{Path, PathBuf};
use std::time::Instant;

use dynofa_core::lut::{LatencyPoint, OperatingPoint, SOURCE_LEN, Unit};
use dynofa_core::{SubnetConfig, Supernet, Top1Source};

use super::RunError;
use super::backend::UnitEngine;
use crate::design::lutgen::{self, DesignLut};
use crate::design::predictor::PredictorWeights;
use crate::design::profile::{ProfileParams, measure};
use crate::design::workspace_path;

/// The searched LUT whose Pareto set of the unit is the default set of sub-networks.
const EMBEDDED: &str = include_str!("../../../luts/xavier-nx.json");
/// Its name in messages.
const EMBEDDED_NAME: &str = "luts/xavier-nx.json (built in)";
/// Frames per entry when timing at start-up: a few warm, a few timed.
pub const STARTUP: ProfileParams = ProfileParams { warmup: 2, reps: 6 };
/// Frames per entry when checking a LUT against this machine.
const CHECK: ProfileParams = ProfileParams { warmup: 1, reps: 3 };
/// A LUT whose latencies are off by more than this factor was made on another kind of machine.
const TOO_DIFFERENT: f32 = 2.0;

/// Where the run's LUT comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LutSource {
    /// A file given with `--lut` (or named by the model files): used as it is.
    Given(PathBuf),
    /// A committed host LUT.
    Host(PathBuf),
    /// The built-in default set.
    Embedded,
}

impl LutSource {
    /// `--lut FILE` if given, else a committed host LUT for `unit`, else the built-in set.
    pub fn pick(given: Option<&Path>, unit: Unit) -> Self {
        match given {
            Some(p) => LutSource::Given(p.into()),
            None => host_lut(unit).map_or(LutSource::Embedded, LutSource::Host),
        }
    }
}

/// A committed host LUT for `unit`: `luts/host-<unit>.json`, else the first other
/// `luts/host-*.json` by name but the other unit's, in the binary's folder (a board the runtime was
/// installed on) or in the workspace.
pub fn host_lut(unit: Unit) -> Option<PathBuf> {
    let own = format!("host-{unit}.json");
    let others: Vec<String> = Unit::ALL.iter().filter(|&&u| u != unit).map(|u| format!("host-{u}.json")).collect();
    let beside_binary = std::env::current_exe().ok().and_then(|e| e.parent().map(|d| d.join("luts")));
    for dir in beside_binary.into_iter().chain([workspace_path("luts")]) {
        // Without the `..` that the workspace path carries, for messages.
        let dir = std::fs::canonicalize(&dir).unwrap_or(dir);
        let preferred = dir.join(&own);
        if preferred.is_file() {
            return Some(preferred);
        }
        let Ok(listing) = std::fs::read_dir(&dir) else { continue };
        let mut found: Vec<PathBuf> = listing
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
                name.starts_with("host-") && name.ends_with(".json") && !others.iter().any(|o| o == name)
            })
            .collect();
        found.sort();
        if let Some(first) = found.into_iter().next() {
            return Some(first);
        }
    }
    None
}

/// The operating point of `unit` that a LUT's latencies of it were measured at (the first one it
/// lists).
pub fn unit_point(lut: &DesignLut, unit: Unit) -> Option<OperatingPoint> {
    lut.entries().iter().flat_map(|e| e.latency.iter()).find(|l| l.unit == unit).map(|l| l.point())
}

/// The LUT to plan with, its latencies this machine's for `E::UNIT`. `engine` is the run's engine
/// (its threads as in the run); `clock_khz` the unit's clock if pinned (0: not). `say` gets what
/// happened, line by line.
pub fn prepare<E: UnitEngine>(
    engine: &mut E,
    engine_name: &str,
    net: &Supernet,
    source: &LutSource,
    clock_khz: u32,
    say: &mut dyn FnMut(String),
) -> Result<DesignLut, RunError> {
    let (lut, name) = match source {
        LutSource::Given(path) | LutSource::Host(path) => (lutgen::read_lut(path)?, path.display().to_string()),
        LutSource::Embedded => (
            DesignLut::from_json(EMBEDDED.as_bytes())
                .map_err(|e| RunError::Lut { name: EMBEDDED_NAME.into(), reason: e.to_string() })?,
            EMBEDDED_NAME.to_string(),
        ),
    };
    if (f64::from(lut.width) - net.width_mult).abs() > 1e-6 {
        return Err(RunError::Lut {
            name,
            reason: format!("it is for the w{} supernet but the weights are w{}", lut.width, net.width_mult),
        });
    }
    let unit = E::UNIT;
    let op = unit_point(&lut, unit);
    // How to make this unit's host LUT.
    let (profile, backend) = match unit {
        Unit::Cpu => ("`cargo xtask profile`", ""),
        Unit::Gpu => ("`cargo xtask profile --backend cuda`", " --backend cuda"),
    };
    let front: Vec<usize> = op.map(|op| lut.pareto(op).to_vec()).unwrap_or_default();
    let all: Vec<usize> = (0..lut.len()).collect();
    // The entries to plan with, and whether those of the LUT keep its latencies.
    let (picked, keep) = match (source, op) {
        (LutSource::Embedded, Some(_)) => {
            say(format!(
                "lut: no host lut (luts/host-{unit}.json; {profile} writes one): timing the {unit} Pareto set of {name} ({} of {} sub-networks) here",
                front.len(),
                lut.len(),
            ));
            (front.clone(), false)
        }
        (_, Some(op)) => {
            let mut ratios = Vec::new();
            let ends = [front[0], front[front.len() - 1]];
            engine.ready(&ends.map(|i| lut.entries()[i].config))?;
            for i in ends {
                let e = &lut.entries()[i];
                let m = measure(engine, &e.config, &CHECK, &|| {})?;
                ratios.push(m.latency.mean_ms as f32 / e.mean_ms(op).unwrap_or(f32::NAN));
            }
            let shown: Vec<String> = ratios.iter().map(|r| format!("{r:.2}")).collect();
            let agrees = ratios.iter().all(|r| r.is_finite() && (1.0 / TOO_DIFFERENT..=TOO_DIFFERENT).contains(r));
            if agrees {
                say(format!(
                    "lut: {name} ({} sub-networks); checked against this machine: measured / lut = {} on its fastest and most accurate",
                    lut.len(),
                    shown.join(" and ")
                ));
            } else {
                say(format!(
                    "lut: {name} was made on another kind of machine: measured / lut = {} (more than {TOO_DIFFERENT}x off)",
                    shown.join(" and ")
                ));
                say(format!(
                    "     re-profile it here with {profile} (or `dynofa profile{backend} --subnets FILE --out FILE`); timing its entries now instead"
                ));
            }
            (all, agrees)
        }
        (_, None) => {
            say(format!("lut: {name} has no {unit} latencies: timing its {} sub-networks here", lut.len()));
            (all, false)
        }
    };
    if keep {
        return Ok(lut);
    }
    let mut subnets: Vec<Subnet> =
        picked.iter().map(|&i| &lut.entries()[i]).map(|e| (e.config, e.top1, e.top1_source)).collect();
    if let (false, Some(&fastest)) = (matches!(source, LutSource::Given(_)), front.first()) {
        subnets.extend(ladder(&lut.entries()[fastest].config, net)?);
    }
    time_here(engine, engine_name, net, subnets, clock_khz, say)
}

/// A sub-network with its top-1 and where that comes from.
type Subnet = (SubnetConfig, f32, Top1Source);

/// Below `fastest`: it at each lower resolution in steps of 16, and the smallest sub-network, with
/// top-1 from OFA's accuracy predictor.
fn ladder(fastest: &SubnetConfig, net: &Supernet) -> Result<Vec<Subnet>, RunError> {
    let weights = PredictorWeights::embedded()?;
    let predictor = weights.predictor();
    let min = net.min_resolution();
    let lower = (1..).map_while(|i: u16| fastest.r.checked_sub(16 * i).filter(|&r| r >= min));
    let mut configs: Vec<SubnetConfig> = lower.map(|r| SubnetConfig { r, ..*fastest }).collect();
    configs.push(SubnetConfig::uniform(3, 3, 2, min));
    configs
        .into_iter()
        .map(|c| {
            let top1 = predictor.predict(&c).map_err(crate::design::DesignError::from)?;
            Ok((c, top1, Top1Source::Predicted))
        })
        .collect()
}

/// A LUT of `subnets` with this machine's latencies of `E::UNIT`, timed on `engine` now.
fn time_here<E: UnitEngine>(
    engine: &mut E,
    engine_name: &str,
    net: &Supernet,
    subnets: Vec<Subnet>,
    clock_khz: u32,
    say: &mut dyn FnMut(String),
) -> Result<DesignLut, RunError> {
    let start = Instant::now();
    engine.ready(&subnets.iter().map(|s| s.0).collect::<Vec<_>>())?;
    let mut note = format!(
        "dynofa run: timed at start-up ({} warm-up, {} timed frames each); {engine_name}; {}; {}",
        STARTUP.warmup,
        STARTUP.reps,
        lutgen::machine(),
        lutgen::today()
    );
    if note.len() > SOURCE_LEN {
        let cut = (0..=SOURCE_LEN).rev().find(|&i| note.is_char_boundary(i)).unwrap_or(0);
        note.truncate(cut);
    }
    let lut = lutgen::lut_of(net, subnets, &note, |cfg: &SubnetConfig| {
        let m = measure(engine, cfg, &STARTUP, &|| {})?;
        Ok(vec![LatencyPoint {
            unit: E::UNIT,
            freq_khz: clock_khz,
            mean_ms: m.latency.mean_ms as f32,
            std_ms: m.latency.std_ms as f32,
        }])
    })?;
    say(format!(
        "lut: timed {} sub-networks here in {:.1} s ({} warm-up and {} timed frames each)",
        lut.len(),
        start.elapsed().as_secs_f64(),
        STARTUP.warmup,
        STARTUP.reps
    ));
    Ok(lut)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use dynofa_core::hal::{ErrorKind, ErrorType, InferenceEngine};

    use super::*;

    /// An engine whose frame takes 0.1 ms per block, times `scale`.
    /// Sleep per block of the stand-in engine: long enough that a loaded machine's oversleep
    /// (milliseconds at worst) stays well inside the 2x check.
    const MS_PER_BLOCK: f64 = 1.0;

    struct Blocks {
        depth: u32,
        scale: f64,
    }

    impl ErrorType for Blocks {
        type Error = ErrorKind;
    }

    impl UnitEngine for Blocks {
        const UNIT: Unit = Unit::Cpu;

        fn ready(&mut self, _: &[SubnetConfig]) -> Result<(), RunError> {
            Ok(())
        }
    }

    impl InferenceEngine for Blocks {
        fn activate(&mut self, config: &SubnetConfig) -> Result<(), ErrorKind> {
            self.depth = config.d.iter().map(|&d| u32::from(d)).sum();
            Ok(())
        }
        fn infer(&mut self, _: &[f32], _: &mut [f32]) -> Result<(), ErrorKind> {
            std::thread::sleep(Duration::from_secs_f64(MS_PER_BLOCK * 1e-3 * f64::from(self.depth) * self.scale));
            Ok(())
        }
    }

    fn lines(f: impl FnOnce(&mut dyn FnMut(String)) -> DesignLut) -> (DesignLut, String) {
        let mut said = Vec::new();
        let lut = f(&mut |s| said.push(s));
        (lut, said.join("\n"))
    }

    #[test]
    fn the_default_set_is_timed_here() {
        let mut e = Blocks { depth: 0, scale: 1.0 };
        let net = Supernet::W1_2;
        let (lut, said) = lines(|say| prepare(&mut e, "blocks", &net, &LutSource::Embedded, 0, say).unwrap());
        let embedded = DesignLut::from_json(EMBEDDED.as_bytes()).unwrap();
        let front = embedded.pareto(unit_point(&embedded, Unit::Cpu).unwrap());
        // The front, then its fastest at r 192, 176, 160 (it is at 208), then the smallest sub-network.
        let fastest = embedded.entries()[front[0]].config;
        assert_eq!(fastest.r, 208);
        assert_eq!(lut.len(), front.len() + 4);
        assert!(said.contains("timing the cpu Pareto set"), "{said}");
        assert!(said.contains(&format!("lut: timed {} sub-networks here", front.len() + 4)), "{said}");
        for (entry, &i) in lut.entries().iter().zip(front.iter()) {
            assert_eq!((entry.config, entry.top1), (embedded.entries()[i].config, embedded.entries()[i].top1));
        }
        let below: Vec<u16> = lut.entries()[front.len()..].iter().map(|e| e.config.r).collect();
        assert_eq!(below, vec![192, 176, 160, 160]);
        assert_eq!(lut.entries()[front.len() + 3].config, SubnetConfig::uniform(3, 3, 2, 160));
        // Predicted top-1 falls with resolution.
        assert!(lut.entries()[front.len()..].windows(2).all(|w| w[0].top1 > w[1].top1));
        let op = OperatingPoint { unit: Unit::Cpu, freq_khz: 0 };
        for entry in lut.entries() {
            let blocks: u32 = entry.config.d.iter().map(|&d| u32::from(d)).sum();
            let ms = entry.mean_ms(op).unwrap();
            // Sleeping never undershoots and rarely overshoots by much.
            let floor = (MS_PER_BLOCK * f64::from(blocks)) as f32;
            assert!(ms >= floor && ms < floor + 5.0, "{ms} for {blocks} blocks");
        }
        assert!(lut.source.starts_with("dynofa run: timed at start-up"));
    }

    #[test]
    fn a_host_lut_is_checked_and_retimed_when_far_off() {
        let net = Supernet::W1_2;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("host-cpu.json");
        let mut e = Blocks { depth: 0, scale: 1.0 };
        let (all, _) = lines(|say| prepare(&mut e, "blocks", &net, &LutSource::Embedded, 0, say).unwrap());
        // The fastest, a middle and the most accurate of the front (ahead of the ladder), so that
        // timing it again takes little time.
        let front = all.len() - 4;
        let mut timed = DesignLut::new(all.width);
        for i in [0, front / 2, front - 1] {
            timed.push(all.entries()[i].clone()).unwrap();
        }
        std::fs::write(&path, lutgen::to_json(&timed)).unwrap();
        let given = LutSource::Given(path.clone());
        // The same machine: used as it is.
        let (lut, said) = lines(|say| prepare(&mut e, "blocks", &net, &given, 0, say).unwrap());
        assert_eq!(lut, timed);
        assert!(said.contains("checked against this machine"), "{said}");
        // As the committed host LUT too: nothing added to a LUT used as it is.
        let (lut, _) = lines(|say| prepare(&mut e, "blocks", &net, &LutSource::Host(path.clone()), 0, say).unwrap());
        assert_eq!(lut, timed);
        // A machine 20x slower: said so, with how to re-profile, and timed again.
        let mut slow = Blocks { depth: 0, scale: 20.0 };
        let (lut, said) = lines(|say| prepare(&mut slow, "blocks", &net, &given, 0, say).unwrap());
        assert!(said.contains("another kind of machine") && said.contains("cargo xtask profile"), "{said}");
        assert_eq!(lut.len(), timed.len());
        let op = OperatingPoint { unit: Unit::Cpu, freq_khz: 0 };
        for (new, old) in lut.entries().iter().zip(timed.entries()) {
            // Sleeps overshoot under load, so the ratio is not 20: only clearly more than 2.
            assert!(new.mean_ms(op).unwrap() > 3.0 * old.mean_ms(op).unwrap(), "{new:?} vs {old:?}");
        }
        // Timed again as the committed host LUT, it gets the ladder below its fastest.
        let (lut, _) = lines(|say| prepare(&mut slow, "blocks", &net, &LutSource::Host(path.clone()), 0, say).unwrap());
        assert_eq!(lut.entries()[3..].iter().map(|e| e.config.r).collect::<Vec<_>>(), vec![192, 176, 160, 160]);
        // A LUT for another supernet is refused, naming both widths.
        let mut w10 = timed.clone();
        w10.width = 1.0;
        std::fs::write(&path, lutgen::to_json(&w10)).unwrap();
        let mut said = |_| {};
        let err = prepare(&mut e, "blocks", &net, &LutSource::Given(path), 0, &mut said).unwrap_err().to_string();
        assert!(err.contains("w1 supernet but the weights are w1.2"), "{err}");
    }
}
